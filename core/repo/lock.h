/* Repository locks: locks/<random id>, sealed JSON
 *   {"exclusive":bool,"hostname":..,"pid":N,"username":..,"time":ISO,"refreshed_unix":N}
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
/* Stop refreshing and delete the lock object. */
void repo_lock_release(struct repo_lock *l);

#endif
