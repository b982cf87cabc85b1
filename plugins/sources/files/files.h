/* Internal interface of the `files` source plugin: the instance
 * configuration, the backup walk, the restore writer and the small helpers
 * they share (metadata JSON, byte-string encoding, a (dev, ino) keyed map). */
#ifndef FILES_FILES_H
#define FILES_FILES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <jansson.h>

#include "engine/plugin.h"

/* Content is moved in blocks of this size in both directions. */
#define FILES_IO_BLOCK (1024u * 1024u)

enum files_exclude_mode {
  FILES_EXCLUDE_BASENAME = 1, /* no '/': matches the last component */
  FILES_EXCLUDE_ANCHORED = 2, /* starts with '/': matches the absolute path */
  FILES_EXCLUDE_SUFFIX = 3    /* has '/' inside: matches any trailing run of components */
};

struct files_exclude {
  char *glob; /* without the trailing '/' of a directory-only pattern */
  enum files_exclude_mode mode;
  int dir_only;
};

struct files_inst {
  const struct engine_host *host;
  char **paths; /* configured paths, as given (absolute) */
  size_t n_paths;
  struct files_exclude *exclude;
  size_t n_exclude;
  int one_file_system;
};

/* backup (walk.c) */
int files_backup(void *inst, const struct engine_emitter *em);

/* restore (restore.c) */
int files_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx);
int files_restore_item(void *rctx, const struct engine_item *item,
                       const struct engine_reader *data);
int files_restore_end(void *rctx, int status);

/* ---- map.c: open-addressing hash map keyed by two 64-bit integers ---- */

struct files_map_slot {
  uint64_t a, b;
  void *value; /* owned by the caller; may be NULL */
  int used;
};

struct files_map {
  struct files_map_slot *slots;
  size_t cap; /* power of two, or 0 */
  size_t count;
};

/* Returns the slot holding (a, b), or NULL. */
struct files_map_slot *files_map_get(struct files_map *m, uint64_t a, uint64_t b);
/* Insert (a, b) -> value; the key must not be present. Returns 0, or -1 on OOM. */
int files_map_put(struct files_map *m, uint64_t a, uint64_t b, void *value);
/* Free the table; free_value (may be NULL) is called for every value. */
void files_map_free(struct files_map *m, void (*free_value)(void *));

/* ---- meta.c: metadata JSON and byte strings ---- */

/* Set obj[key] to the byte string (buf, len) when it is valid UTF-8 without
 * NUL, otherwise obj[key + "_b64"] to its base64 encoding. Returns 0 / -1. */
int files_meta_set_bytes(json_t *obj, const char *key, const char *buf, size_t len);
/* Read what files_meta_set_bytes stored under key. *out is malloc'd and
 * NUL-terminated. Returns 0, or -1 when absent or malformed. */
int files_meta_get_bytes(json_t *obj, const char *key, char **out, size_t *out_len);

/* Base64 (RFC 4648, with padding). encode returns a malloc'd string or NULL on
 * OOM; decode returns 0, or -1 for invalid input / OOM. */
char *files_b64_encode(const unsigned char *in, size_t len);
int files_b64_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len);

/* A printable rendering of a byte string for messages: control bytes,
 * backslashes and invalid UTF-8 become C escapes (\n, \xff ...). Never NULL:
 * falls back to a static "<out of memory>". Free with files_display_free. */
char *files_display(const char *s, size_t len);
void files_display_free(char *d);

/* uid/gid to name cache for one backup run. */
struct files_idcache {
  struct files_map users;
  struct files_map groups;
};
void files_idcache_free(struct files_idcache *c);

/* Build the metadata object common to every item from a stat buffer.
 * Returns a new reference or NULL on OOM. */
json_t *files_meta_from_stat(struct files_idcache *c, const struct stat *st);
/* Nanoseconds since the epoch; *ok is 0 when they do not fit in 64 bits. */
int64_t files_ts_ns(const struct timespec *ts, int *ok);

/* Serialise compactly with the insertion order of keys. malloc'd, or NULL. */
char *files_meta_dump(json_t *obj);

#endif
