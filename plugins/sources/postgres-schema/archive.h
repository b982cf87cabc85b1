/* pg_dump's custom archive format (pg_dump -Fc), as far as the plugin needs
 * it: read an archive's header and table of contents from a stream, split
 * the entries by schema, write a table of contents of some of them (dump
 * ids renumbered), walk the data blocks, and hash COPY rows.
 *
 * The layout is PostgreSQL's (src/bin/pg_dump/pg_backup_archiver.c,
 * WriteHead/WriteToc, and pg_backup_custom.c): versions 1.12 to 1.16
 * (PostgreSQL 9.x to 18) are understood. An archive written to a pipe has
 * no data offsets in its table of contents (pg_restore then reads the data
 * blocks in order), so a table of contents of a subset of the entries,
 * followed by their data blocks in the same order, is an archive of its
 * own that pg_restore reads like one pg_dump wrote. */
#ifndef PGSCHEMA_ARCHIVE_H
#define PGSCHEMA_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xxhash.h>

#define PGS_VERS(a, b, c) (((a)*256 + (b)) * 256 + (c))
#define PGS_VERS_MIN PGS_VERS(1, 12, 0)
#define PGS_VERS_MAX PGS_VERS(1, 16, 255)

#define PGS_BLK_DATA 1
#define PGS_BLK_BLOBS 3
#define PGS_SECTION_DATA 3

/* A pull reader over a byte source with a buffer; every byte it hands out
 * can also be recorded (rec) for a verbatim copy. */
struct pgs_in {
  ssize_t (*read)(void *ctx, void *buf, size_t len); /* -1 + errno, 0 at end */
  void *ctx;
  unsigned char *buf;
  size_t cap, pos, len;
  uint64_t offset; /* bytes handed out so far */
  int eof;
  int err; /* errno of a failed read */
  /* recording */
  unsigned char *rec;
  size_t rec_len, rec_cap;
  int recording;
};

void pgs_in_init(struct pgs_in *in, ssize_t (*read)(void *, void *, size_t), void *ctx,
                 size_t bufsize);
/* An in-memory reader (no copy; data must outlive it). */
void pgs_in_mem(struct pgs_in *in, const void *data, size_t len);
void pgs_in_free(struct pgs_in *in);
/* Up to len buffered bytes without consuming them: refills as needed; fewer
 * only at the end of the stream or on an error. */
size_t pgs_in_peek(struct pgs_in *in, const unsigned char **p, size_t want);
void pgs_in_consume(struct pgs_in *in, size_t n);
/* What is buffered, reading once when nothing is: 0 only at the end of the
 * stream or on an error. */
size_t pgs_in_avail(struct pgs_in *in, const unsigned char **p);

struct pgs_arc_head {
  int version; /* PGS_VERS(maj, min, rev) */
  int int_size, off_size, format;
  int compression; /* 1.14 and older: zlib level (0 none); 1.15+: 0 none, 1 gzip, 2 lz4, 3 zstd */
  int gzip;        /* data blocks are zlib streams */
  char *dbname;
  unsigned char *raw; /* the header's bytes as read */
  size_t raw_len;
  size_t time_off, time_len; /* where pg_dump's creation time is in raw */
};

/* Set the creation time in h->raw to 2000-01-01 00:00:00: pg_dump's own
 * time changes every run, and with it a chunk of every schema's archive and
 * that schema's line of the item tree (the snapshot records when it was
 * taken). */
void pgs_arc_head_fix_time(struct pgs_arc_head *h);

struct pgs_toc_entry {
  int dump_id;
  int had_dumper;
  char *tableoid, *oid, *tag, *desc;
  int section;
  char *defn, *drop_stmt, *copy_stmt, *nspname, *tablespace, *tableam;
  int relkind; /* 1.16+ */
  char *owner, *with_oids;
  int *deps;
  size_t n_deps;
  unsigned char extra[1 + 32]; /* the offset: flag byte and off_size bytes, as read */
  size_t extra_len;
  int group; /* which schema it belongs to: index given by pgs_toc_assign, -1 shared */
};

struct pgs_toc {
  struct pgs_toc_entry *e;
  size_t n;
};

/* Read the header (recorded verbatim in h->raw) and the table of contents.
 * 0, or -1 with a message in err (malloc'd): not an archive, a version not
 * understood, the stream ended or failed. */
int pgs_arc_read_head(struct pgs_in *in, struct pgs_arc_head *h, char **err);
int pgs_arc_read_toc(struct pgs_in *in, const struct pgs_arc_head *h, struct pgs_toc *toc,
                     char **err);
void pgs_arc_head_free(struct pgs_arc_head *h);
void pgs_toc_free(struct pgs_toc *toc);

/* Which schema each entry belongs to: the entry's namespace, else the
 * schema (a SCHEMA entry's tag) or schema-bound entry it depends on (a
 * comment or grant on the schema); entries of no schema (ENCODING,
 * STDSTRINGS, SEARCHPATH) are shared (-1). lookup maps a schema name to a
 * group index or -1. Entries of a schema lookup does not know are shared
 * too. */
void pgs_toc_assign(struct pgs_toc *toc, int (*lookup)(void *ud, const char *schema), void *ud);

/* A growable byte buffer. */
struct pgs_buf {
  unsigned char *p;
  size_t len, cap;
  int oom;
};
void pgs_buf_add(struct pgs_buf *b, const void *p, size_t n);
void pgs_buf_free(struct pgs_buf *b);
void pgs_arc_put_int(struct pgs_buf *b, int int_size, int v);

/* dump id -> entry index (-1: none), for dependencies; NULL on OOM. */
int *pgs_toc_id_map(const struct pgs_toc *toc, int *max_id);

/* A table of contents of the entries list[0..n) (entry indexes, in archive
 * order), dump ids renumbered 1..n in that order and dependencies on
 * entries not in the list dropped. pos is scratch of toc->n ints, all -1,
 * left so; map and max_id from pgs_toc_id_map. */
void pgs_toc_write(const struct pgs_toc *toc, const struct pgs_arc_head *h, const size_t *list,
                   size_t n, int *pos, const int *map, int max_id, struct pgs_buf *out);

/* Order-independent digest of COPY rows: the number of lines and the sum of
 * the XXH3-128 hashes of each line (without its newline) in two 64-bit
 * lanes. Feed the COPY text in pieces of any size. A line "\." ends the
 * rows (pg_dump writes it, and blank lines, after a table's rows; COPY
 * escapes a backslash in data, so no row is "\."): what follows is not
 * hashed. */
struct pgs_rows {
  uint64_t rows;
  uint64_t lo, hi;
  XXH3_state_t *st; /* the line being read, when it spans pieces */
  int partial;
  size_t plen;  /* bytes of that line so far */
  char head[2]; /* its first two */
  int ended;    /* "\." was seen */
};
void pgs_rows_init(struct pgs_rows *r);
int pgs_rows_feed(struct pgs_rows *r, const void *p, size_t n);
/* Rows in a COPY stream must end with a newline: 0, or -1 when a partial
 * line is left. */
int pgs_rows_done(struct pgs_rows *r);
void pgs_rows_free(struct pgs_rows *r);
/* "xxh3-128-sum:" and 32 hex digits (hi then lo) into out (at least 48). */
void pgs_rows_text(const struct pgs_rows *r, char *out, size_t len);

/* The schema definition of group g as a digest: every entry of the group
 * that pg_dump -s also writes (not table data, sequence values or
 * materialized view contents), hashed from its type, name, schema,
 * tablespace, access method and definition, summed (order-independent).
 * Ownership (owners, grants, default privileges) goes to a second digest,
 * so a restore without the roles can still be compared. Either out may be
 * NULL. count receives the number of definition entries. */
void pgs_toc_digests(const struct pgs_toc *toc, int g, char *def, char *own, size_t len,
                     size_t *count);
/* One entry's hash in the definition digest (ownership 0) or the
 * ownership digest (1), for naming what differs; 0 when the entry is not
 * part of that digest. */
int pgs_toc_entry_hash(const struct pgs_toc_entry *e, int ownership, XXH128_hash_t *out);

#endif
