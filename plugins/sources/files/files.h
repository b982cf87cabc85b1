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
  int xattrs;     /* back up and restore extended attributes (ACLs, capabilities) */
  int file_flags; /* back up and restore inode flags (chattr) */
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

/* ---- xattr.c: extended attributes and inode flags ---- */

/* Devices found without support for one kind: not asked again. */
struct files_devset {
  dev_t *v;
  size_t n, cap;
};

/* Buffers and per-device knowledge for one backup run. */
struct files_xread {
  char *list, *val;
  size_t list_cap, val_cap;
  struct files_devset no_xattrs, no_flags;
};
void files_xread_free(struct files_xread *x);

/* Read the extended attributes of an item through fd, or (fd < 0) at path
 * without following a symlink. Returns 0 with *out a new JSON array of
 * {"name"|"name_b64", "value"|"value_b64"} sorted by name, or NULL when
 * there are none or the file system (device dev) has no extended
 * attributes; 1 when reading failed (*err is the errno); -1 on OOM. */
int files_xattrs_read(struct files_xread *x, dev_t dev, int fd, const char *path, json_t **out,
                      int *err);
/* Read the kept inode flags (files_flags_mask) of an open regular file or
 * directory. 0 (flags 0 when the file system has none), 1 on failure. */
int files_flags_read(struct files_xread *x, dev_t dev, int fd, unsigned *flags, int *err);

/* The inode flags kept, and their chattr letters (at most FILES_FLAGS_MAX). */
#define FILES_FLAGS_MAX 16
unsigned files_flags_mask(void);
void files_flags_letters(unsigned flags, char out[FILES_FLAGS_MAX + 1]);
/* Letters to flags; -1 (with the first unknown letter in *unknown) when a
 * letter is not one of ours. The known ones are in *out either way. */
int files_flags_parse(const char *letters, unsigned *out, char *unknown);

/* What a restore could not set is reported once per kind. */
enum files_xkind {
  FILES_XK_USER,
  FILES_XK_TRUSTED,
  FILES_XK_SECURITY,
  FILES_XK_CAPS,
  FILES_XK_ACL,
  FILES_XK_OTHER,
  FILES_XK_FLAGS,
  FILES_XK_N
};
enum files_xkind files_xattr_kind(const char *name);
const char *files_xkind_word(enum files_xkind k);

struct files_xattr {
  char *name;
  char *value;
  size_t len;
};
struct files_xattrs {
  struct files_xattr *v;
  size_t n;
};
/* Parse an item's "xattrs" array. 0 with *out (NULL for an empty array),
 * or -1 with a reason in why. */
int files_xattrs_parse(json_t *arr, struct files_xattrs **out, char *why, size_t why_len);
void files_xattrs_free(struct files_xattrs *x);
/* Set every attribute through fd, or (fd < 0) at path without following a
 * symlink; failed() is called once per kind that failed on this item.
 * Returns the number of attributes not set. */
int files_xattrs_set(const struct files_xattrs *x, int fd, const char *path,
                     void (*failed)(void *ud, enum files_xkind kind, const char *xname, int err),
                     void *ud);
/* Replace the kept flags of an open file with `flags` (the others stay).
 * 0, or -1 with *err. */
int files_flags_set(int fd, unsigned flags, int *err);

#endif
