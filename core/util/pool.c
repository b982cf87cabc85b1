/* The engine's worker pool over libuv's thread pool.
 *
 * uv_queue_work may only be called on the loop thread, but work is produced
 * by source threads too. Submissions go into a mutex-protected list and a
 * uv_async wakes the loop, which queues them. Blocking waiters (plugins via
 * host->work_wait) sleep on a condition variable signalled from after_work.
 */
#include "util/pool.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "util/log.h"

struct pool_req {
  uv_work_t work;
  void (*fn)(void *);
  void (*done)(void *);
  void *arg;
  struct pool_req *next;
};

struct pool_job {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int finished;
  void (*fn)(void *);
  void *arg;
};

static uv_loop_t *g_loop;
static uv_async_t g_async;
static uv_thread_t g_loop_thread;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pool_req *g_head, *g_tail;
static int g_ready;

static void req_work(uv_work_t *w) {
  struct pool_req *r = w->data;
  r->fn(r->arg);
}

static void req_after(uv_work_t *w, int status) {
  struct pool_req *r = w->data;
  (void)status; /* we never cancel queued work */
  if (r->done)
    r->done(r->arg);
  free(r);
}

static void queue_one(struct pool_req *r) {
  r->work.data = r;
  int rc = uv_queue_work(g_loop, &r->work, req_work, req_after);
  if (rc != 0) {
    /* Cannot happen with a live loop; run inline rather than lose work. */
    log_error("unable to queue work on the thread pool: %s", uv_strerror(rc));
    r->fn(r->arg);
    if (r->done)
      r->done(r->arg);
    free(r);
  }
}

static void on_async(uv_async_t *a) {
  (void)a;
  pthread_mutex_lock(&g_lock);
  struct pool_req *r = g_head;
  g_head = g_tail = NULL;
  pthread_mutex_unlock(&g_lock);
  while (r) {
    struct pool_req *next = r->next;
    queue_one(r);
    r = next;
  }
}

int pool_init(uv_loop_t *loop) {
  int rc = uv_async_init(loop, &g_async, on_async);
  if (rc != 0)
    return rc;
  g_loop = loop;
  g_loop_thread = uv_thread_self();
  g_ready = 1;
  return 0;
}

void pool_shutdown(void) {
  if (!g_ready)
    return;
  g_ready = 0;
  uv_close((uv_handle_t *)&g_async, NULL);
}

static int on_loop_thread(void) {
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&self, &g_loop_thread);
}

int pool_submit(void (*fn)(void *), void (*done)(void *), void *arg) {
  struct pool_req *r = xcalloc(1, sizeof(*r));
  r->fn = fn;
  r->done = done;
  r->arg = arg;
  if (!g_ready) {
    fn(arg);
    if (done)
      done(arg);
    free(r);
    return 0;
  }
  if (on_loop_thread()) {
    queue_one(r);
    return 0;
  }
  pthread_mutex_lock(&g_lock);
  if (g_tail)
    g_tail->next = r;
  else
    g_head = r;
  g_tail = r;
  pthread_mutex_unlock(&g_lock);
  uv_async_send(&g_async);
  return 0;
}

static void job_run(void *arg) {
  struct pool_job *j = arg;
  j->fn(j->arg);
}

static void job_done(void *arg) {
  struct pool_job *j = arg;
  pthread_mutex_lock(&j->lock);
  j->finished = 1;
  pthread_cond_signal(&j->cond);
  pthread_mutex_unlock(&j->lock);
}

struct pool_job *pool_job_submit(void (*fn)(void *), void *arg) {
  struct pool_job *j = xcalloc(1, sizeof(*j));
  pthread_mutex_init(&j->lock, NULL);
  pthread_cond_init(&j->cond, NULL);
  j->fn = fn;
  j->arg = arg;
  if (!g_ready || on_loop_thread()) {
    fn(arg);
    j->finished = 1;
    return j;
  }
  pool_submit(job_run, job_done, j);
  return j;
}

void pool_job_wait(struct pool_job *j) {
  pthread_mutex_lock(&j->lock);
  while (!j->finished)
    pthread_cond_wait(&j->cond, &j->lock);
  pthread_mutex_unlock(&j->lock);
  pthread_mutex_destroy(&j->lock);
  pthread_cond_destroy(&j->cond);
  free(j);
}

/* Each cleanup job holds its thread until all have arrived (or 2 s passed),
 * so no thread can take two jobs and every pool thread runs one. */
static pthread_mutex_t g_clean_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_clean_cv = PTHREAD_COND_INITIALIZER;
static int g_clean_arrived, g_clean_total;

static void clean_work(uv_work_t *w) {
  (void)w;
  OPENSSL_thread_stop();
  pthread_mutex_lock(&g_clean_mu);
  g_clean_arrived++;
  pthread_cond_broadcast(&g_clean_cv);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 2;
  while (g_clean_arrived < g_clean_total)
    if (pthread_cond_timedwait(&g_clean_cv, &g_clean_mu, &until) != 0)
      break;
  pthread_mutex_unlock(&g_clean_mu);
}

static void clean_after(uv_work_t *w, int status) {
  (void)status;
  free(w);
}

void pool_thread_cleanup(void) {
  const char *env = getenv("UV_THREADPOOL_SIZE");
  int n = env ? atoi(env) : 4;
  if (n < 1)
    n = 4;
  if (n > 1024)
    n = 1024;
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0)
    return;
  g_clean_arrived = 0;
  g_clean_total = n;
  for (int i = 0; i < n; i++) {
    uv_work_t *w = xcalloc(1, sizeof(*w));
    uv_queue_work(&loop, w, clean_work, clean_after);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}
