/* The engine's worker pool: libuv's thread pool, reachable from any thread.
 * pool_init binds it to the loop (call on the loop thread). Work submitted
 * from another thread is handed to the loop through a uv_async and queued
 * with uv_queue_work there. */
#ifndef CORE_UTIL_POOL_H
#define CORE_UTIL_POOL_H

#include <uv.h>

int pool_init(uv_loop_t *loop);
void pool_shutdown(void); /* close the async handle (loop thread) */

/* fn runs on a pool thread; done (may be NULL) then runs on the loop thread. */
int pool_submit(void (*fn)(void *arg), void (*done)(void *arg), void *arg);

/* Free per-thread library state (OpenSSL's error queue and DRBGs) on every
 * libuv pool thread: they live until the process exits, so LeakSanitizer
 * would report that state. Runs its own loop; call when no work is queued. */
void pool_thread_cleanup(void);

/* For threads other than the loop's: submit and wait. When the pool is not
 * initialised, or the caller is the loop thread, fn runs inline. */
struct pool_job;
struct pool_job *pool_job_submit(void (*fn)(void *arg), void *arg);
void pool_job_wait(struct pool_job *job);

#endif
