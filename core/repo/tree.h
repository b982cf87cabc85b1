/* Item trees: per source, a stream of JSON lines (one item per line) stored
 * as TREE blobs through the same chunker as data, so large trees are
 * chunked and deduplicated like everything else:
 *
 *   {"name":"srv/a.txt","type":"file","size":12,"meta":{...},"chunks":["<hex>",...]}
 *
 * A name that is not valid UTF-8 is written as "name_b64" instead. */
#ifndef CORE_REPO_TREE_H
#define CORE_REPO_TREE_H

#include <jansson.h>
#include <stdio.h>

#include "engine/item.h"
#include "repo/repo.h"

const char *item_type_name(enum engine_item_type t);
int item_type_from_name(const char *s); /* -1 if unknown */

/* Set obj[key] to the bytes as a string, or obj[key_b64] when not UTF-8. */
void json_set_bytes(json_t *obj, const char *key, const char *bytes, size_t len);
/* Get bytes set by json_set_bytes; malloc'd, NUL-terminated; NULL if absent. */
char *json_get_bytes(json_t *obj, const char *key, size_t *len);

/* Reject item names that could escape a restore target: empty, absolute,
 * "." / ".." / empty components, NUL bytes. Returns NULL if fine, else a
 * static reason. Backups refuse such names from a source; restore and check
 * treat an item holding one as damaged. */
const char *item_name_problem(const char *name, size_t len);

/* What the core needs of one tree line before an item can be restored: a
 * safe name (name or name_b64), a known type, a non-negative size, chunk ids
 * that are 64 hex digits, metadata that is an object when present. With an
 * index (ix non-NULL) also: every chunk is a data blob of the index and
 * their raw lengths add up to the size. Returns NULL when the item is sound,
 * else a malloc'd reason; *name_out (if non-NULL) gets the printable name,
 * or "?" when there is none. */
struct index;
char *tree_item_problem(json_t *item, struct index *ix, char **name_out);

/* Blob ids as a JSON array of hex strings (an item's "chunks", a source's
 * "tree"). */
json_t *blob_ids_json(const unsigned char (*ids)[32], size_t n);

/* Sequential reader over a list of blob ids (item content or a tree). */
struct prefetch;
struct blob_stream {
  struct repo *repo;
  struct prefetch *pf;            /* optional read-ahead */
  json_t *ids;                    /* array of hex ids (borrowed), or: */
  const unsigned char (*bin)[32]; /* binary ids (borrowed), n_bin of them */
  size_t n_bin;
  enum blob_type type;
  size_t next;
  void *cur;
  size_t cur_len, cur_off;
  const void *lent; /* cur comes from pf (owned by it), not malloc'd */
  char *err;
  uint64_t total;
};
void blob_stream_init(struct blob_stream *s, struct repo *r, json_t *ids, enum blob_type type);
void blob_stream_init_ids(struct blob_stream *s, struct repo *r, const unsigned char (*ids)[32],
                          size_t n, enum blob_type type);
/* Returns bytes read, 0 at end, -1 on error (message in s->err). */
ssize_t blob_stream_read(struct blob_stream *s, void *buf, size_t len);
void blob_stream_free(struct blob_stream *s);

/* Pull-style reader over a tree's JSON lines. */
struct tree_reader {
  struct blob_stream bs;
  char *buf;
  size_t len, off, cap;
  int eof;
  size_t lineno;
  /* the text of the line last returned by tree_reader_next (no newline);
   * valid until the next call */
  const char *line;
  size_t line_len;
};
void tree_reader_init(struct tree_reader *t, struct repo *r, json_t *tree_ids);
/* The same over binary tree blob ids (a manifest's, struct snapshot_source). */
void tree_reader_init_ids(struct tree_reader *t, struct repo *r, const unsigned char (*ids)[32],
                          size_t n);
/* 1: *item set (caller decrefs); 0: end; -1: error (*err). */
int tree_reader_next(struct tree_reader *t, json_t **item, char **err);
void tree_reader_free(struct tree_reader *t);

/* Order in which sources emit items: component by component, each
 * component compared bytewise, a parent before its children. */
int tree_name_cmp(const char *a, size_t al, const char *b, size_t bl);

/* Iterate a tree: calls cb for each item object; cb returns non-zero to stop
 * (that value is returned). Returns -1 on a read/parse error with *err. */
int tree_foreach(struct repo *r, json_t *tree_ids, int (*cb)(void *ud, json_t *item), void *ud,
                 char **err);
int tree_foreach_ids(struct repo *r, const unsigned char (*ids)[32], size_t n,
                     int (*cb)(void *ud, json_t *item), void *ud, char **err);

#endif
