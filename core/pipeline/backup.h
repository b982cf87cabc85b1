/* The backup pipeline: sources -> chunker -> (id, dedup, compress, encrypt
 * on the thread pool) -> packer -> sinks; then index, then the snapshot
 * manifest. See docs/internals/pipeline.md. */
#ifndef CORE_PIPELINE_BACKUP_H
#define CORE_PIPELINE_BACKUP_H

#include <jansson.h>
#include <stdint.h>

#include "config/pipeline.h"
#include "plugin/host.h"
#include "repo/repo.h"
#include "repo/snapshot.h"

struct backup_opts {
  const struct pipeline *pipeline;
  struct repo *repo;
  struct plugin_instance **sources; /* one per pipeline source */
  int dry_run;                      /* read and chunk, store nothing */
  int progress;                     /* draw progress on stderr */
  int64_t time_override;            /* unix seconds, 0 = now */
  uint64_t max_inflight;            /* bytes; 0 = default */
  const struct snapshot *parent;    /* the parent snapshot (incremental), or NULL */
  json_t *skipped_sinks;            /* optional sinks left out of this run (names), or NULL */
  /* --only SOURCE[/ITEM-GLOB]...: back up only these (n_only 0: everything).
   * The snapshot records them in its manifest ("only"). */
  const char *const *only;
  size_t n_only;
};

struct backup_result {
  char snapshot_id[65];
  int partial;
  uint64_t items, bytes_read, chunks, new_chunks, new_bytes, stored_bytes, packs;
  uint64_t reused_items, reused_bytes; /* unchanged items taken from the parent */
  double seconds;
  json_t *warnings; /* array of {"source","item","message"} */
};

/* Returns 0 (complete or partial: see res->partial) or -1 with *err. */
int backup_run(const struct backup_opts *o, struct backup_result *res, char **err);

#endif
