/* engine plugin ABI, version 1.
 *
 * A plugin is a shared object that exports exactly one symbol:
 *
 *     const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major);
 *
 * The host calls it with its ABI major version; the plugin returns its
 * descriptor (or NULL if it cannot serve that major). Compatibility rule:
 * abi_major must equal the host's; abi_minor may be lower than the host's
 * (structures only ever grow by appending fields, and the host checks
 * struct_size before touching a field). See docs/PLUGINS.md.
 */
#ifndef ENGINE_PLUGIN_H
#define ENGINE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/host.h"
#include "engine/item.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ENGINE_ABI_MAJOR 1
#define ENGINE_ABI_MINOR 9

#define ENGINE_PLUGIN_QUERY_SYMBOL "engine_plugin_query"

#if defined(__GNUC__)
#define ENGINE_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define ENGINE_PLUGIN_EXPORT
#endif

enum engine_plugin_kind {
  ENGINE_PLUGIN_SOURCE = 1,
  ENGINE_PLUGIN_SINK = 2,
  ENGINE_PLUGIN_CRYPTO = 3
};

/* Typed configuration schema. The core validates a pipeline's `with:` block
 * against it (engine validate), applies defaults, normalises values (sizes to
 * bytes, durations to milliseconds) and documents it (engine plugins). */
enum engine_opt_type {
  ENGINE_OPT_STRING = 1,
  ENGINE_OPT_INT = 2,
  ENGINE_OPT_BOOL = 3,
  ENGINE_OPT_SIZE = 4,        /* "64MiB", "1G", 4096 -> bytes */
  ENGINE_OPT_DURATION = 5,    /* "30s", "5m", "2h", "7d" -> milliseconds */
  ENGINE_OPT_STRING_LIST = 6, /* a YAML sequence of strings (a single string is accepted) */
  ENGINE_OPT_SECRET = 7,      /* a reference "env:NAME" or "file:/path"; never a literal */
  ENGINE_OPT_ENUM = 8         /* one of enum_values ("a|b|c") */
};

struct engine_option {
  const char *name;
  enum engine_opt_type type;
  int required;              /* non-zero: must be given */
  const char *default_value; /* textual default, as it would be written in YAML, or NULL */
  const char *enum_values;   /* for ENGINE_OPT_ENUM: "a|b|c" */
  const char *description;   /* one sentence for `engine plugins` */
};
/* An options array ends with an entry whose name is NULL. */

/* ABI 1.5: the bounds of an INT, SIZE or DURATION option, each written as
 * its values are ("0", "64KiB", "1s"), or NULL for none. The engine refuses
 * a value outside them when it checks the pipeline, so create() need not.
 * A table apart from `options`, so that engines of ABI 1.0-1.4 (which walk
 * `options` with their own entry size) still read those; they do not
 * enforce bounds (see host->abi_minor). Ends with an entry whose name is
 * NULL. */
struct engine_option_bounds {
  const char *name; /* an option of `options` */
  const char *min;
  const char *max;
};

/* ---- source plugins --------------------------------------------------- */

struct engine_restore_opts {
  uint32_t struct_size;
  const char *target;       /* --target as given (a directory, a DSN ...), or NULL */
  int dry_run;              /* list what would be written, write nothing */
  int yes;                  /* overwriting existing data was confirmed */
  const char *const *extra; /* NULL-terminated "key=value" restore flags, may be NULL */
};

struct engine_source_ops {
  uint32_t struct_size;
  /* Back up: called on a dedicated thread; emit items through `em`, which
   * blocks while the pipeline is saturated (bounded memory). Return ENGINE_OK
   * when all items were visited (failed items are reported through
   * em->item_end / em->warn and make the snapshot "partial"), ENGINE_ERROR
   * (after host->set_error) when the source as a whole failed. */
  int (*backup)(void *inst, const struct engine_emitter *em);

  /* Restore: begin returns ENGINE_EXISTS when the target already holds data
   * that would be overwritten and opts->yes is 0 (the core then asks the
   * operator and calls begin again with yes=1). */
  int (*restore_begin)(void *inst, const struct engine_restore_opts *opts, void **rctx);
  /* Called for each selected item in manifest order. `data` is NULL for
   * items without content. */
  int (*restore_item)(void *rctx, const struct engine_item *item, const struct engine_reader *data);
  /* status is ENGINE_OK when every item was restored. Finish metadata
   * (directory mtimes ...) and free rctx. */
  int (*restore_end)(void *rctx, int status);

  /* ---- ABI 1.1 (the host reads these only if struct_size covers them) ---- */
  uint32_t capabilities; /* ENGINE_SOURCE_CAP_* */

  /* ---- ABI 1.8 ---- */
  /* Optional: the GLOB of `--only SOURCE/GLOB` (restore, run, snapshots
   * --contains) written in the source's own terms (mongodb: "DB.COLL"),
   * turned into item-name globs. Called only for a GLOB without '/' (one
   * with '/' is an item-name glob). Call add(ud, item_glob) for each
   * item-name glob (fnmatch(3) without flags, over the whole name; the core
   * also selects what is below a match and its parents) and return
   * ENGINE_OK: an item is selected when any of them selects it. Stop when
   * add returns non-ENGINE_OK and return that. Return ENGINE_NOT_FOUND,
   * having added nothing, when GLOB is not in the source's terms: it is then
   * an item-name glob. Called without an instance (before create() or with
   * none: `snapshots --contains`), on any thread: it must depend on GLOB
   * alone. NULL: every GLOB is an item-name glob. */
  int (*select_globs)(const char *glob, int (*add)(void *ud, const char *item_glob), void *ud);
};

/* The source understands the restore flag "restore_test=1": restore into a
 * scratch location of its own choosing, verify, clean up (engine check
 * --restore-test). Sources without it are never asked. */
#define ENGINE_SOURCE_CAP_RESTORE_TEST 0x1u
/* The source uses engine_emitter.previous/item_reuse (incremental backups). */
#define ENGINE_SOURCE_CAP_INCREMENTAL 0x2u
/* ABI 1.7: `engine restore --dry-run` calls the source with opts->dry_run = 1
 * (it checks what it would do against its target and changes nothing, e.g.
 * a server-side dry run) instead of only listing the items. */
#define ENGINE_SOURCE_CAP_DRY_RUN 0x4u
/* ABI 1.9: every meta_json the source gives (item_begin, item_end's
 * final_meta) is a JSON object in jansson's compact form with sorted keys,
 * json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS): the core then puts the
 * text into the item tree as it is instead of writing the parsed object
 * again (the tree's canonical form, docs/FORMAT.md §10). */
#define ENGINE_SOURCE_CAP_CANONICAL_META 0x8u

/* Size of the v1.0 source ops, for struct_size checks. */
#define ENGINE_SOURCE_OPS_V1_0_SIZE offsetof(struct engine_source_ops, capabilities)

/* ---- sink plugins ----------------------------------------------------- */

#define ENGINE_PUT_NO_OVERWRITE 0x1u /* fail with ENGINE_EXISTS if the object exists */

/* A sink is a dumb object store keyed by path-like names ("data/ab/ab12..").
 * Every call is synchronous and may be made concurrently from several worker
 * threads on the same instance; implementations must be thread-safe.
 * A successful put is durable (local: written, fsynced and renamed into
 * place). Objects are never modified in place. */
struct engine_sink_ops {
  uint32_t struct_size;
  int (*put)(void *inst, const char *name, const void *buf, size_t len, unsigned flags);
  /* Read `len` bytes at `off` (len 0: to the end). *buf is allocated with
   * malloc() and freed by the caller with free(). ENGINE_NOT_FOUND if absent. */
  int (*get)(void *inst, const char *name, uint64_t off, uint64_t len, void **buf, size_t *out_len);
  int (*stat)(void *inst, const char *name, uint64_t *size);
  /* Call cb for each object whose name starts with prefix; cb returns non-zero to stop. */
  int (*list)(void *inst, const char *prefix, int (*cb)(void *ud, const char *name, uint64_t size),
              void *ud);
  int (*del)(void *inst, const char *name);
  /* Human-readable location ("/var/backups/x", "s3://bucket/prefix"); static or instance-owned. */
  const char *(*describe)(void *inst);

  /* ---- ABI 1.1 (the host reads these only if struct_size covers them) ---- */
  /* Optional: delete several objects in one request (S3 DeleteObjects).
   * Objects already absent are not an error. NULL: the host calls del for
   * each. */
  int (*del_many)(void *inst, const char *const *names, size_t n);

  /* ---- ABI 1.3 ---- */
  /* Optional: remove what the sink itself left outside the repository's
   * objects (the s3 sink: incomplete multipart uploads under its prefix older
   * than its `stale_upload_age`). Called by `engine prune` under the
   * exclusive lock once it has finished (also with --dry-run, flags then
   * holding ENGINE_CLEANUP_DRY_RUN: report, change nothing); report what was
   * done through host->log. A failure (after host->set_error) is a warning:
   * prune's own result stands. NULL: nothing to clean. */
  int (*cleanup)(void *inst, unsigned flags);

  /* ---- ABI 1.4 ---- */
  /* Optional: get, with the bytes handed to on_data in order as they
   * arrive instead of collected (a restore decodes the first blobs of a
   * large range while the rest is on its way). on_data(ud, NULL, 0) means
   * the transfer starts over (a retry): forget what was handed so far. A
   * non-zero return from on_data aborts (ENGINE_ERROR). Returns like get;
   * only ENGINE_OK means every requested byte was handed over. NULL: the
   * host calls get and hands the whole buffer at once. */
  int (*get_stream)(void *inst, const char *name, uint64_t off, uint64_t len,
                    int (*on_data)(void *ud, const void *buf, size_t n), void *ud);
};

#define ENGINE_CLEANUP_DRY_RUN 0x1u /* say what cleanup would remove, remove nothing */

/* ---- crypto plugins --------------------------------------------------- */

/* An AEAD. Thread-safe, stateless between calls. Output of seal is
 * ciphertext || tag (in_len + tag_len bytes); open takes the same layout and
 * returns ENGINE_ERROR if authentication fails (writing nothing usable). */
struct engine_crypto_ops {
  uint32_t struct_size;
  size_t key_len;
  size_t nonce_len;
  size_t tag_len;
  int (*seal)(const unsigned char *key, const unsigned char *nonce, const void *aad, size_t aad_len,
              const void *in, size_t in_len, void *out);
  int (*open)(const unsigned char *key, const unsigned char *nonce, const void *aad, size_t aad_len,
              const void *in, size_t in_len, void *out);
};

/* ---- the descriptor --------------------------------------------------- */

struct engine_plugin {
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t struct_size; /* sizeof(struct engine_plugin) as the plugin was built */
  enum engine_plugin_kind kind;
  const char *name;    /* the `type:` operators write, e.g. "files", "local", "aes-256-gcm" */
  const char *version; /* the plugin's own version, recorded in manifests */
  const char *license;
  const char *description;
  const struct engine_option *options; /* schema of `with:`; may be NULL (no options) */

  /* create an instance; configuration is read through host->cfg_* (already
   * validated against `options`). The host table outlives the instance. */
  int (*create)(const struct engine_host *host, void **inst);
  void (*destroy)(void *inst);

  /* exactly one of these is set, matching kind */
  const struct engine_source_ops *source;
  const struct engine_sink_ops *sink;
  const struct engine_crypto_ops *crypto;

  /* ---- ABI 1.5 (the host reads these only if struct_size covers them) ---- */
  const struct engine_option_bounds *option_bounds; /* may be NULL */
};

typedef const struct engine_plugin *(*engine_plugin_query_fn)(uint32_t host_abi_major);

/* Convenience for plugin authors: fill the fixed header fields. */
#define ENGINE_PLUGIN_HEADER                                                                       \
  .abi_major = ENGINE_ABI_MAJOR, .abi_minor = ENGINE_ABI_MINOR,                                    \
  .struct_size = sizeof(struct engine_plugin)

#ifdef __cplusplus
}
#endif
#endif
