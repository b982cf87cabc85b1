/* engine repair index|snapshots: put a damaged repository back into a state
 * every command can work with, without ever deleting what could still be
 * read. Both run under the exclusive lock (the caller takes it) and write
 * new objects before removing old ones, so a killed repair leaves the
 * repository as it was or repaired. */
#ifndef CORE_PIPELINE_REPAIR_H
#define CORE_PIPELINE_REPAIR_H

#include <jansson.h>

#include "repo/repo.h"

struct repair_opts {
  int dry_run;
  int read_data;   /* snapshots: decode every blob the snapshots use */
  json_t *targets; /* snapshots: ids or prefixes to repair; NULL or empty: all */
  int quiet;
};

/* Rebuild the index from the packs' headers. The caller loaded the index
 * (r->index holds every readable index object, r->index->damaged the
 * others). *report: {"changed", "packs", "blobs", "packs_unindexed",
 * "packs_missing", "packs_header_damaged", "index_damaged", "index_written",
 * "index_deleted", "problems":[text]}. Returns 0, or -1 with *err. */
int repair_index(struct repo *r, const struct repair_opts *o, json_t **report, char **err);

/* For each snapshot whose data is partly lost (blobs missing from the index
 * or their pack; with read_data also blobs that fail to decode), write a new
 * snapshot with the surviving items (docs/FORMAT.md: repaired_from,
 * lost_items). *report: {"snapshots":[{"id","result","repaired_as",
 * "items_lost","items_kept"}], "lost": N}. Returns 0 (nothing lost), 3 (new
 * snapshots written or, dry run, needed) or -1 with *err. */
int repair_snapshots(struct repo *r, const struct repair_opts *o, json_t **report, char **err);

#endif
