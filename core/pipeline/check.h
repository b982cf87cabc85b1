/* Repository verification. Structure: every index entry's pack exists, and
 * every blob each snapshot references (trees and content) is in the index
 * and its pack exists. With read_data: every pack is downloaded, its hash
 * checked against its name, its header authenticated and every blob
 * decrypted, decompressed and checked against its id; damaged blobs are
 * traced back to the snapshots and items that use them. */
#ifndef CORE_PIPELINE_CHECK_H
#define CORE_PIPELINE_CHECK_H

#include <jansson.h>

#include "repo/repo.h"

struct check_result {
  uint64_t snapshots, packs, blobs, errors;
  /* per_tenant: items and packs of shredded tenants (unreadable by design,
   * not problems; prune removes the packs) */
  uint64_t shredded_items, shredded_packs;
  json_t *problems; /* array of {"object","message"[,"snapshot","source","item"]} */
};

/* The caller has read the index (under the shared lock). Returns 0 when the repository is sound, 1
 * when problems were found, -1 when the check could not run (*err). Problems are printed as found
 * unless quiet. */
int check_run(struct repo *r, int read_data, int quiet, struct check_result *res, char **err);

#endif
