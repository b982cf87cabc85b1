/* Items: what a source emits and what a restore receives.
 *
 * An item has a name (a path-like byte string; any byte but NUL, need not be
 * UTF-8), a type, typed metadata (a JSON object the plugin defines and the
 * core stores verbatim), and optionally a byte stream (file content, a dump).
 */
#ifndef ENGINE_ITEM_H
#define ENGINE_ITEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum engine_item_type {
  ENGINE_ITEM_FILE = 1, /* regular file; has data */
  ENGINE_ITEM_DIR = 2,
  ENGINE_ITEM_SYMLINK = 3,  /* target in metadata */
  ENGINE_ITEM_HARDLINK = 4, /* another name of an earlier FILE item; target in metadata */
  ENGINE_ITEM_STREAM = 5,   /* opaque byte stream (a database dump, a YAML document) */
  ENGINE_ITEM_SPECIAL = 6   /* fifo, device, socket: metadata only */
};

struct engine_item {
  const char *name; /* not NUL-terminated necessarily within name_len; core always adds a NUL */
  size_t name_len;
  enum engine_item_type type;
  const char *meta_json; /* JSON object text, or NULL for {} */
  uint64_t size;         /* content size: known at restore; a hint (or 0) at backup */
};

/* Handed to sources during backup. All calls come from the thread that runs
 * the source's backup callback. Calls block while the pipeline is full. */
struct engine_emitter {
  uint32_t struct_size;
  void *ctx;
  /* Start an item. Returns ENGINE_OK, or ENGINE_ERROR when the run is being
   * cancelled (stop emitting and return). An item the core refuses (an
   * empty name, a name a restore could not place safely: absolute, with
   * "." / ".." / empty components or a NUL byte; an unknown type) still
   * gets ENGINE_OK: its content is discarded, it is recorded as a failed
   * item with a warning naming the plugin, and the source goes on. */
  int (*item_begin)(const struct engine_emitter *em, const struct engine_item *item);
  /* Content of the current item. */
  int (*item_write)(const struct engine_emitter *em, const void *buf, size_t len);
  /* End the current item. status ENGINE_OK: stored. ENGINE_ERROR: the item
   * failed (message says why); what was written is discarded and the snapshot
   * becomes partial. final_meta_json, if non-NULL, replaces the metadata given
   * at begin (e.g. the size actually read). */
  int (*item_end)(const struct engine_emitter *em, int status, const char *final_meta_json,
                  const char *message);
  /* Report a problem with something that is not (fully) in the snapshot, e.g.
   * a file that vanished: the snapshot becomes partial, the message is kept
   * in the manifest. */
  void (*warn)(const struct engine_emitter *em, const char *name, const char *message);
  /* Record a consistency mark in the manifest (key -> JSON value text),
   * e.g. ("snapshot_id", "\"00000003-1\""). */
  int (*mark)(const struct engine_emitter *em, const char *key, const char *json_value);

  /* ---- ABI 1.1: incremental backups (check em->struct_size first) ---- */
  /* Look up `name` in this source's part of the parent snapshot (the latest
   * complete or partial snapshot of the same pipeline and host). Returns
   * ENGINE_OK and its metadata JSON (valid until the next call on this
   * emitter), or ENGINE_NOT_FOUND. */
  int (*previous)(const struct engine_emitter *em, const char *name, size_t name_len,
                  const char **meta_json);
  /* After item_begin: take the content of the parent's item of the same name
   * instead of writing it (the plugin decided, e.g. from size, mtime, ctime
   * and inode, that it is unchanged). Then call item_end as usual. Returns
   * ENGINE_NOT_FOUND if the parent has no such item (write it instead). */
  int (*item_reuse)(const struct engine_emitter *em);
  /* A consistency mark this source recorded in the parent snapshot (see
   * mark): ENGINE_OK and its JSON text (valid until the next call on this
   * emitter), or ENGINE_NOT_FOUND. Lets a source report what vanished since. */
  int (*previous_mark)(const struct engine_emitter *em, const char *key, const char **json_value);

  /* ---- ABI 1.6: structure-following chunk boundaries ---- */
  /* End the current chunk of the current item here: the next byte written
   * starts a new chunk (the content-defined chunker starts afresh there, as
   * at the start of a stream). Call it where the item's structure changes
   * (a dump's header, table of contents, each table's data) so that an
   * unchanged part deduplicates whatever changed before it. The bytes
   * stored and restored are the same with or without cuts. A cut at the
   * start of the item or right after another cut does nothing. Returns
   * ENGINE_OK, or ENGINE_ERROR when the run is being cancelled (as
   * item_write). Check ENGINE_HAS_FIELD(em, struct engine_emitter, item_cut)
   * first: an older engine does not have it (then just go on writing). */
  int (*item_cut)(const struct engine_emitter *em);
};

#define ENGINE_EMITTER_V1_0_SIZE offsetof(struct engine_emitter, previous)

/* Handed to sources during restore: the item's content, in order. */
struct engine_reader {
  uint32_t struct_size;
  void *ctx;
  uint64_t size; /* total content size */
  /* Read up to len bytes; returns bytes read, 0 at end, -1 on error
   * (message through the host log). */
  ssize_t (*read)(const struct engine_reader *rd, void *buf, size_t len);
};

#ifdef __cplusplus
}
#endif
#endif
