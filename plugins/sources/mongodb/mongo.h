/* Internal interface of the `mongodb` source plugin: the instance
 * configuration, connections through the official C driver (libmongoc),
 * mongodump's naming and metadata layout, and the backup and restore entry
 * points.
 *
 * Items (docs/sources/mongodb.md): per collection `DB/COLL.metadata.json`
 * (mongodump's metadata file, canonical extended JSON) followed by
 * `DB/COLL.bson` (the documents back to back, exactly as the server sent
 * them); a view has its metadata item only; a time-series collection's data
 * is `DB/system.buckets.COLL.bson`. COLL is escaped as mongodump escapes it
 * (Go's url.PathEscape), so an item name is the file's path in a mongodump
 * directory. */
#ifndef MONGODB_MONGO_H
#define MONGODB_MONGO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <mongoc/mongoc.h>

#include "engine/plugin.h"

/* Documents are handed to the emitter (and files are written) in blocks of
 * this size. */
#define MG_IO_BLOCK (1024u * 1024u)
/* Largest document a server stores (BSONObjMaxUserSize) and the largest a
 * stream may hold (BSONObjMaxInternalSize: 16 MiB + 16 KiB). */
#define MG_MAX_DOC (16u * 1024u * 1024u)
#define MG_MAX_STREAM_DOC (MG_MAX_DOC + 16u * 1024u)
/* A mongodump metadata file is small; anything larger is not one. */
#define MG_MAX_METADATA (16u * 1024u * 1024u)

struct mg_inst {
  const struct engine_host *host;
  char *uri;         /* as configured, or the resolved secret (may hold a password; wiped) */
  int uri_is_secret; /* the uri came from env:/file: */
  int have_password; /* the `password` option is set */
  char *tls_ca_file;
  char *tls_cert_key_file;
  char **databases;
  size_t n_databases;
  char **exclude_databases;
  size_t n_exclude_databases;
  char **collections;
  size_t n_collections;
  char **exclude_collections;
  size_t n_exclude_collections;
  mongoc_read_mode_t read_mode;
  const char *read_mode_name;
  int users_and_roles;
  int64_t batch_size; /* bytes */
  int64_t timeout_ms; /* connecting and selecting a server */
};

enum mg_topology { MG_STANDALONE = 0, MG_REPLICA_SET = 1, MG_SHARDED = 2 };

/* One connection: a single-threaded client pinned to one server. */
struct mg_conn {
  struct mg_inst *in;
  mongoc_uri_t *uri;
  mongoc_client_t *client;
  mongoc_read_prefs_t *rp;
  mongoc_client_session_t *session; /* explicit, not causally consistent; NULL if unsupported */
  uint32_t server_id;
  enum mg_topology topology;
  char *describe;          /* "MongoDB 7.0.4 at 127.0.0.1:27017 (replica set rs0)" */
  char *hosts;             /* "h1:27017,h2:27017" */
  char server_version[64]; /* buildInfo.version */
  char set_name[128];
};

/* ---- conn.c ---- */

/* Connect to the configured uri, or to override (a mongodb:// uri given as
 * --target) with the configured credentials when it has none. for_restore:
 * no socket timeout (index builds take long), primary read preference,
 * write concern majority unless the uri sets one. On failure sets a message
 * that names the server and the cause (unreachable within the timeout, TLS,
 * authentication) and returns ENGINE_ERROR. */
int mg_connect(struct mg_inst *in, const char *override, int for_restore, struct mg_conn *c);
void mg_conn_close(struct mg_conn *c);
/* A sentence for a driver error on connection c (classified as above);
 * malloc'd. */
char *mg_error_text(const struct mg_conn *c, const bson_error_t *e);
/* Whether an error is the server answering a command (as opposed to the
 * connection or the driver failing). */
int mg_is_server_error(const bson_error_t *e);
/* Run a command on the pinned server (read: with the read preference).
 * reply is always initialised; destroy it. */
int mg_command(struct mg_conn *c, const char *db, const bson_t *cmd, int read, bson_t *reply,
               bson_error_t *e);
/* The options every command and cursor of c needs (serverId, sessionId):
 * appended to opts. */
int mg_append_opts(struct mg_conn *c, bson_t *opts, bson_error_t *e);

/* mongodump's escaping of a collection name in file names (Go's
 * url.PathEscape: everything but [A-Za-z0-9-_.~$&+:=@] as %XX). malloc'd. */
char *mg_escape(const char *name);
/* The reverse; NULL when the text is not a valid escape. malloc'd. */
char *mg_unescape(const char *s);
/* mongodump's file name stem for an escaped collection name: names over
 * 238 bytes become their first 208 bytes, "%24" and the base64url SHA-1 of
 * the collection name. malloc'd. */
char *mg_dir_stem(const char *escaped, const char *coll);
/* A database name MongoDB accepts and a path component can hold. */
int mg_valid_db_name(const char *db);
/* A collection name MongoDB accepts (not empty, no NUL, no '$' except the
 * oplog's, not starting with '.'). */
int mg_valid_coll_name(const char *coll);

/* Order-independent digest of a collection's documents: the sum modulo
 * 2^256 of the SHA-256 of each document. */
struct mg_digest {
  uint64_t limb[4]; /* little-endian limbs */
  void *md;         /* EVP_MD * */
  void *ctx;        /* EVP_MD_CTX * */
};
int mg_digest_init(struct mg_digest *d);
int mg_digest_add(struct mg_digest *d, const uint8_t *doc, size_t len);
/* "sha256-sum:" and 64 hex digits. */
void mg_digest_text(const struct mg_digest *d, char out[80]);
void mg_digest_free(struct mg_digest *d);

/* Serialise compactly (keys in insertion order). malloc'd or NULL. */
char *mg_json_dump(json_t *j);
/* A bson_t as canonical extended JSON (bson_free it). */
char *mg_ext_json(const bson_t *b);
/* Printable copy of a name for messages (control bytes escaped). malloc'd. */
char *mg_printable(const char *s);
/* asprintf or NULL. */
char *mg_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* write() all of buf, retrying on EINTR and short writes. 0 / -1 (errno). */
int mg_write_all(int fd, const void *buf, size_t len);

/* ---- readahead.c ---- */

/* A collection read one batch ahead of the consumer: a thread of its own
 * sends each getMore as soon as the previous reply arrived (at most a few
 * replies waiting); the consumer gets whole documents in blocks of about
 * MG_IO_BLOCK bytes, counted and added to dg (may be NULL). Every getMore
 * asks for about batch_bytes (at most max_docs documents), estimated from
 * the average document size so far. first is the find's reply (taken, left
 * empty). The connection's client is the thread's until finish. NULL with
 * e set on failure. */
struct mg_readahead;
struct mg_readahead_result {
  uint64_t count, bytes;
  int failed;    /* the cursor failed: err */
  int cancelled; /* the run is being cancelled */
  int oom;
  bson_error_t err;
};
struct mg_readahead *mg_readahead_start(struct mg_conn *c, const char *db, bson_t *first,
                                        uint64_t batch_bytes, uint64_t max_docs,
                                        struct mg_digest *dg, bson_error_t *e);
/* The next block (valid until the next call): 1, or 0 at the end. */
int mg_readahead_next(struct mg_readahead *ra, const uint8_t **data, size_t *len);
/* Stops the thread (also early: the server's cursor is killed), frees
 * everything; 0 when every document was read, -1 otherwise (see res). */
int mg_readahead_finish(struct mg_readahead *ra, struct mg_readahead_result *res);

/* ---- backup.c ---- */
int mg_backup(void *inst, const struct engine_emitter *em);

/* ---- restore.c ---- */
int mg_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx);
int mg_restore_item(void *rctx, const struct engine_item *item, const struct engine_reader *data);
int mg_restore_end(void *rctx, int status);

/* ---- select.c ---- */
/* engine_source_ops.select_globs: "DB-GLOB" -> everything below the
 * databases; "DB-GLOB.COLL-GLOB" -> the collections' metadata, data and
 * time-series bucket items, the collection glob escaped as item names are. */
int mg_select_globs(const char *glob, int (*add)(void *ud, const char *item_glob), void *ud);

#endif
