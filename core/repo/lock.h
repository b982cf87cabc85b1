/* Repository locks: locks/<random id>, sealed JSON
 *   {"exclusive":bool,"hostname":..,"pid":N,"username":..,"time":ISO,"refreshed_unix":N,
 *    "pipeline":.. (backups only)}
 * Backups take shared locks (many hosts may write at once), forget/prune an
 * exclusive one. A lock is refreshed (a new object written, the old one
 * deleted: nothing is overwritten) every LOCK_REFRESH seconds while held. A
 * lock is stale when its process is gone (same host, the PID no longer
 * exists) or it was not refreshed for LOCK_STALE seconds (any host); stale
 * locks are removed with a message. */
#ifndef CORE_REPO_LOCK_H
#define CORE_REPO_LOCK_H

#include <stdint.h>

#include "repo/repo.h"

#define LOCK_REFRESH_S 300
#define LOCK_STALE_S 1800

struct repo_lock;

/* Wait up to wait_ms (0: do not wait) for conflicting locks to go away. */
int repo_lock_acquire(struct repo *r, int exclusive, int64_t wait_ms, struct repo_lock **out,
                      char **err);

/* A lock with more to it. A backup's lock names its pipeline ("pipeline"
 * in the lock object) and also conflicts with the lock of another backup
 * of the same pipeline on the same host (a timer's run while engine serve
 * runs it): runs of one pipeline never overlap on a host, while other
 * hosts (a fleet writing one repository) and other pipelines go on. */
struct repo_lock_opts {
  int exclusive;
  int64_t wait_ms;      /* for the other conflicts (0: do not wait) */
  const char *pipeline; /* a backup of this pipeline, or NULL */
  int64_t run_wait_ms;  /* how long to wait for that backup; -1: as long as it takes */
  double waited_s;      /* out: how long the call waited */
  int run_conflict;     /* out: it gave up because of another backup of the pipeline */
};
int repo_lock_acquire_opts(struct repo *r, struct repo_lock_opts *o, struct repo_lock **out,
                           char **err);
/* Stop refreshing and delete the lock object. */
void repo_lock_release(struct repo_lock *l);

#endif
