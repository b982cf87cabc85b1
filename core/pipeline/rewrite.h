/* engine key rotate --rewrite: every pack, index object, snapshot and
 * record sealed again under new keys, and the old keys retired
 * (docs/FORMAT.md §3.6 "Rewrite"). */
#ifndef CORE_PIPELINE_REWRITE_H
#define CORE_PIPELINE_REWRITE_H

#include <jansson.h>
#include <stdint.h>

#include "repo/repo.h"

struct rewrite_result {
  int resumed;          /* a killed rewrite was taken up again */
  json_t *removed_keys; /* ids of other passphrases' key objects, now gone */
  uint64_t packs_before, packs_written, packs_deleted, bytes_before, bytes_after;
  uint64_t objects_resealed; /* snapshots, audits, runs, verification records */
  double seconds;
};

/* The caller holds the exclusive lock and has read the index. pass opens
 * the new master secret's key object. Every step leaves a repository that
 * opens with pass and passes check --read-data; run again after a kill, it
 * goes on where it stopped. 0, or -1 with *err. */
int rewrite_run(struct repo *r, const char *pass, size_t pass_len, struct rewrite_result *res,
                char **err);

#endif
