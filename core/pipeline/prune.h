/* forget (apply retention) and prune (remove unreferenced data). */
#ifndef CORE_PIPELINE_PRUNE_H
#define CORE_PIPELINE_PRUNE_H

#include <jansson.h>

#include "config/pipeline.h"
#include "repo/repo.h"

struct prune_opts {
  int dry_run;
  double repack_threshold; /* repack a pack when more than this fraction of its bytes is unused */
  int quiet;
  /* ids (or prefixes) of unreadable snapshots the operator drops first
   * (--forget-unreadable); any other unreadable snapshot makes prune refuse */
  json_t *forget_unreadable;
  /* key rotate --rewrite: also repack every pack whose data key is sealed
   * under a key the rewrite retires (keys2_kid_retired), a tenant's blobs
   * under that tenant key's successor */
  int rewrite;
};

struct prune_result {
  uint64_t packs_before, packs_deleted, packs_repacked, packs_written;
  uint64_t bytes_before, bytes_after, blobs_used, blobs_dropped;
  uint64_t index_before, index_written;
};

/* Caller holds the exclusive lock. Returns 0 or -1 with *err. */
int prune_run(struct repo *r, const struct prune_opts *o, struct prune_result *res, char **err);

/* One pack as prune sees it. */
enum pack_action { PACK_KEEP, PACK_DELETE, PACK_REPACK };
struct prune_pack {
  unsigned char id[32];
  uint64_t size; /* stored object size (0 if missing) */
  int exists;    /* listed in data/ */
  int fresh;     /* written by this prune (repacked data) */
  uint64_t used; /* bytes of the canonical copies of used blobs it holds */
  enum pack_action action;
};
/* The plan, for each pack that exists: delete it when nothing in it is
 * used, repack it when more than `threshold` of its bytes are unused
 * (header and trailer count as unused), else keep it. Adds to
 * res->packs_deleted, packs_repacked and bytes_after (kept packs). */
void prune_decide(struct prune_pack *packs, size_t n, double threshold, struct prune_result *res);

/* Decide, per group of (hostname, pipeline), which snapshots the retention
 * policy keeps — only among the snapshots of `pipeline` (a pipeline's policy
 * never touches another pipeline's history in a shared repository) and, if
 * hostname is non-NULL, of that host; remove the others unless dry_run. *report receives
 * {"groups":[{"hostname","pipeline","keep":[{"id","time","reasons"}],"remove":[{"id","time"}]}],
 *  "removed":N, "unreadable_forgotten":[ids]}. Unreadable snapshots make it refuse
 * unless every one is named in forget_unreadable (snapshot_forget_unreadable).
 * Caller holds the exclusive lock. */
int forget_run(struct repo *r, const struct pipeline_retention *pol, const char *pipeline,
               const char *hostname, int dry_run, json_t *forget_unreadable, json_t **report,
               char **err);

/* Remove the named snapshots (ids or unique prefixes of at least 8 hex
 * digits) regardless of retention. *report as forget_run's, plus
 * "forgotten":[{"id","time"}]. Caller holds the exclusive lock. */
int forget_ids(struct repo *r, const char *const *ids, size_t n, int dry_run, json_t **report,
               char **err);

#endif
