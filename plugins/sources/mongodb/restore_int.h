/* What restore.c (begin, end, the items, mongodump directories, stdout) and
 * restore_server.c (collections, indexes, views, users into a server; the
 * restore test) share. */
#ifndef MONGODB_RESTORE_INT_H
#define MONGODB_RESTORE_INT_H

#include "mongo.h"

enum rs_mode { RS_SERVER = 0, RS_DIR = 1, RS_STDOUT = 2, RS_TEST = 3 };

/* A collection or view whose metadata item was restored and which still
 * needs its data (collections) or its creation at the end (views). */
struct rs_pending {
  char *db, *coll; /* as restored */
  char *src_ns;    /* as backed up, for messages */
  bson_t *md;      /* mongodump's metadata document */
  int is_view;
  int done;
};

struct rs {
  struct mg_inst *in;
  const struct engine_host *h;
  enum rs_mode mode;
  int yes;
  int drop_existing;
  char *as_db, *as_coll; /* --as NEWDB[.NEWCOLL] */
  char *as_src_db;       /* the database --as applies to (the first restored) */
  char *as_src_ns;       /* the collection --as NEWDB.NEWCOLL applies to */
  char *dir;             /* RS_DIR: the target directory */
  int dirfd;
  unsigned n_tmp; /* RS_DIR: temporary files made so far */
  struct mg_conn c;
  int connected;
  char *scratch; /* RS_TEST: the scratch database */
  int wrote_stdout;
  struct rs_pending *pend;
  size_t n_pend, cap_pend;
  int have_users, have_roles; /* loaded into admin.tempusers / admin.temproles */
  unsigned char *buf;         /* MG_IO_BLOCK */
};

/* One item as the manifest describes it. */
struct rs_item {
  const char *name;
  char *db, *coll, *type, *data_coll; /* as backed up */
  char *metadata_json;                /* .bson items: mongodump's metadata */
  char *digest;
  int64_t count, size;
  int has_count;
  int is_meta;                 /* DB/COLL.metadata.json */
  int is_auth;                 /* admin.system.users / system.roles / system.version */
  char *final_db, *final_coll; /* where it goes */
};

/* ---- restore_server.c ---- */

/* Restore the data of one collection (and create it with its options
 * first, build its indexes after): into a server, or into the scratch
 * database of the restore test (then verified). */
int rs_server_collection(struct rs *r, const struct rs_item *it, const bson_t *md,
                         const struct engine_reader *data);
/* Load admin.system.users / system.roles into their temporary collection. */
int rs_server_auth(struct rs *r, const struct rs_item *it, const struct engine_reader *data);
/* At the end: collections whose data was not selected (created empty with
 * their indexes), views, users and roles; the restore test's scratch
 * database is dropped. ENGINE_ERROR names what failed. */
int rs_server_finish(struct rs *r, int status);

/* A reader over an item's content for bson_reader_t. */
struct rs_stream {
  const struct engine_reader *data;
  uint64_t got;
  int failed;
};
bson_reader_t *rs_bson_reader(struct rs_stream *s, const struct engine_reader *data);

#endif
