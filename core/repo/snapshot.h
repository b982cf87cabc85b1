/* Snapshot manifests (docs/FORMAT.md §9): this module is their one owner.
 * It builds the manifest's JSON from a struct snapshot (snapshot_save),
 * reads and validates stored manifests into one (snapshot_load, _list,
 * _find), and nothing else picks fields out of a manifest's JSON.
 *
 * A snapshot object that exists but cannot be read (the sink fails after its
 * retries, the object's hash or authentication fails, the manifest is not a
 * valid version-1 manifest of this repository) is never skipped silently:
 * snapshot_list hands it back as "unreadable" for the caller to decide, and
 * every caller that decides from the list (forget, prune, check, restore
 * latest) refuses or reports it. */
#ifndef CORE_REPO_SNAPSHOT_H
#define CORE_REPO_SNAPSHOT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "repo/repo.h"

/* A warning (of a source, or of the whole snapshot) or a lost item. */
struct snapshot_note {
  char *source;    /* the snapshot's warnings only: the source's name */
  char *item;      /* the item's name bytes (NUL-terminated); NULL: not about one item */
  size_t item_len; /* stored as "item", or "item_b64" when not UTF-8 */
  char *text;      /* a warning's "message", a lost item's "reason" */
};

struct snapshot_source {
  char *name, *type, *plugin_version;
  unsigned char (*tree)[32]; /* the tree blobs, in order */
  size_t n_tree;
  uint64_t tree_size, items, bytes, failed_items;
  json_t *marks;   /* object: the plugin's consistency marks (free-form values) */
  json_t *tenants; /* per_tenant: array of the tenant names its items belong to, or NULL */
  struct snapshot_note *warnings;
  size_t n_warnings;
  char *error; /* why the source failed as a whole; NULL: it did not (null) */
  /* repaired snapshots (written when the snapshot has repaired_from): */
  struct snapshot_note *lost_items;
  size_t n_lost_items;
  uint64_t lost_tree_blobs; /* written when not 0 */
  json_t *extra;            /* fields this engine does not know, kept as they were */
};

struct snapshot_stats {
  uint64_t items, bytes_read, chunks, new_chunks, new_bytes, stored_bytes, packs;
  uint64_t reused_items, reused_bytes;
};

/* One manifest. Strings are owned (snapshot_free frees them); a NULL string
 * is not written, except parent and a source's error, written as null. */
struct snapshot {
  char id[65]; /* the object's id: set by snapshot_load and snapshot_save */
  int version;
  char *repository, *pipeline, *hostname, *username;
  int64_t time;       /* unix seconds: start of the run */
  int64_t time_end;   /* 0: unknown (not written) */
  int64_t created_ns; /* orders snapshots of the same second; 0: unknown (not written) */
  double duration;    /* duration_seconds */
  char *engine_version;
  char *status; /* "complete" or "partial" */
  char *parent; /* the snapshot this run compared against; NULL on a first run */
  char **tags;
  size_t n_tags;
  char *compression; /* compression.algorithm (NULL: no compression object) */
  int compression_level;
  char *index; /* the run's last index object, "" when it stored no pack */
  char **indexes;
  size_t n_indexes;
  int has_indexes; /* manifests of older engines have no "indexes" */
  struct snapshot_stats stats;
  struct snapshot_note *warnings; /* every source's warnings, with the source */
  size_t n_warnings;
  char **sinks_missed;
  size_t n_sinks_missed;
  char *repaired_from; /* written by engine repair snapshots */
  struct snapshot_source *sources;
  size_t n_sources;
  json_t *extra; /* fields this engine does not know, kept as they were */
  /* snapshot_load: the manifest as stored, with "id" added (show --json) */
  json_t *raw;
};

struct snapshot *snapshot_new(void);
void snapshot_free(struct snapshot *s);
/* A new empty source at the end of s->sources (the pointer is valid until
 * the next call). */
struct snapshot_source *snapshot_add_source(struct snapshot *s);
/* Append a note (strings copied; item may be NULL, source and text too). */
void snapshot_note_add(struct snapshot_note **v, size_t *n, const char *source, const char *item,
                       size_t item_len, const char *text);
void snapshot_notes_free(struct snapshot_note *v, size_t n);
/* A copy of s (without raw). */
struct snapshot *snapshot_dup(const struct snapshot *s);

/* The manifest's JSON (docs/FORMAT.md §9); stored compact with sorted keys.
 * The same content gives the same bytes. */
json_t *snapshot_json(const struct snapshot *s);
/* The "warnings" array of snapshot_json: [{"source","message","item"}]. */
json_t *snapshot_warnings_json(const struct snapshot *s);
/* Validate a manifest of repository repo_id and read it into a struct
 * (raw not set). NULL, or *why says what is wrong. */
struct snapshot *snapshot_parse(json_t *m, const char *repo_id, const char **why);

/* Seal and store s as a new snapshots/ object; s->id gets its id. */
int snapshot_save(struct repo *r, struct snapshot *s, char **err);

/* Read, authenticate and validate snapshots/<id>. On failure *err says why,
 * naming the object. */
int snapshot_load(struct repo *r, const char *id, struct snapshot **out, char **err);

/* Snapshots, oldest first (time, then created_ns, then id). */
struct snapshot_list {
  struct snapshot **v;
  size_t n;
};
/* All snapshots. Snapshots that exist but cannot be read go to *unreadable
 * as {"id","error"} (sorted by id). With unreadable == NULL an unreadable
 * snapshot is an error (-1, *err names every one). */
int snapshot_list(struct repo *r, struct snapshot_list *out, json_t **unreadable, char **err);
void snapshot_list_free(struct snapshot_list *l);
/* Take list entry i out of the list (the caller frees it). */
struct snapshot *snapshot_list_take(struct snapshot_list *l, size_t i);

/* "latest", a full id, or a unique prefix of at least 4 hex digits. An id
 * that names an unreadable snapshot is an error saying why; so is "latest"
 * while any snapshot is unreadable (it might be the newest one). */
int snapshot_find(struct repo *r, const char *ref, struct snapshot **out, char **err);

/* Before forget or prune decide from the snapshot list, every unreadable
 * snapshot must be named by the operator in `named` (an array of ids or
 * unique prefixes of at least 8 hex digits: --forget-unreadable), and
 * every name must be an unreadable snapshot. Named ones are deleted (unless
 * dry_run) and their ids appended to `dropped`. Returns 0, or -1 with *err
 * naming what is unreadable and why, and nothing deleted. */
int snapshot_forget_unreadable(struct repo *r, json_t *unreadable, json_t *named, int dry_run,
                               const char *command, json_t *dropped, char **err);

/* One line per unreadable snapshot ("snapshot ID: why"), for messages;
 * malloc'd. */
char *snapshot_unreadable_text(json_t *unreadable);

#endif
