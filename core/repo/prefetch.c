/* Restore read-ahead (see prefetch.h).
 *
 * Hand-offs between the workers and the consumer are where a restore of
 * many small files loses its time: a wake-up costs a context switch, and
 * the woken thread usually preempts the one that woke it. So nobody is
 * woken who has nothing to do: a worker signals the consumer only when it
 * finished the very blob the consumer waits for, and sleeping workers are
 * woken only once half the window is free again, so they fetch a batch per
 * wake-up instead of one blob (a window kept exactly full wakes a worker
 * per blob). */
#include "repo/prefetch.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "repo/index.h"
#include "util/log.h"

/* Decoded bytes ahead of the consumer, and blobs ahead (many small files). */
#define DEFAULT_BUDGET (24u * 1024u * 1024u)
#define MAX_AHEAD 256u

enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY };

struct slot {
  int state;
  void *data;
  size_t len;
  char *err;
};

struct prefetch {
  struct repo *r;
  unsigned char (*ids)[32];
  uint32_t *sizes; /* decoded length of each blob, from the index (0: unknown) */
  enum blob_type type;
  size_t n, next_fetch, next_take;
  size_t budget, ahead_bytes; /* decoded bytes of slots [next_take, next_fetch) */
  struct slot *slots;
  pthread_mutex_t mu;
  pthread_cond_t cv;    /* the consumer waits for slot `want` */
  pthread_cond_t space; /* workers wait for work within the window */
  size_t want;          /* SIZE_MAX: the consumer is not waiting */
  int sleepers;         /* workers waiting on `space` */
  int stop;
  pthread_t *th;
  int nth;
};

/* May a worker start on next_fetch? The blob right after the consumer's
 * position is always allowed, however large. */
static int can_fetch(const struct prefetch *p) {
  if (p->next_fetch >= p->n)
    return 0;
  if (p->next_fetch == p->next_take)
    return 1;
  return p->next_fetch - p->next_take < MAX_AHEAD &&
         p->ahead_bytes + p->sizes[p->next_fetch] <= p->budget;
}

static void *worker(void *arg) {
  struct prefetch *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && !can_fetch(p)) {
      p->sleepers++;
      pthread_cond_wait(&p->space, &p->mu);
      p->sleepers--;
    }
    if (p->stop)
      break;
    size_t i = p->next_fetch++;
    p->ahead_bytes += p->sizes[i];
    p->slots[i].state = SLOT_BUSY;
    pthread_mutex_unlock(&p->mu);
    void *data = NULL;
    size_t len = 0;
    char *err = NULL;
    repo_read_blob(p->r, p->ids[i], p->type, &data, &len, &err);
    pthread_mutex_lock(&p->mu);
    p->slots[i].data = data;
    p->slots[i].len = len;
    p->slots[i].err = err;
    p->slots[i].state = SLOT_READY;
    if (p->want == i)
      pthread_cond_signal(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

struct prefetch *prefetch_start(struct repo *r, const unsigned char (*ids)[32], size_t n,
                                enum blob_type type, int threads, size_t budget) {
  struct prefetch *p = xcalloc(1, sizeof(*p));
  p->r = r;
  p->n = n;
  p->type = type;
  p->budget = budget ? budget : DEFAULT_BUDGET;
  p->want = SIZE_MAX;
  p->ids = xcalloc(n ? n : 1, 32);
  if (n > 0)
    memcpy(p->ids, ids, n * 32);
  p->sizes = xcalloc(n ? n : 1, sizeof(*p->sizes));
  for (size_t i = 0; i < n; i++) {
    struct index_entry e;
    if (index_get(r->index, ids[i], &e))
      p->sizes[i] = e.raw_length;
  }
  p->slots = xcalloc(n ? n : 1, sizeof(*p->slots));
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  pthread_cond_init(&p->space, NULL);
  p->nth = threads > 0 ? threads : 1;
  p->th = xcalloc((size_t)p->nth, sizeof(*p->th));
  for (int i = 0; i < p->nth; i++)
    pthread_create(&p->th[i], NULL, worker, p);
  return p;
}

static void drop_slot(struct slot *s) {
  free(s->data);
  free(s->err);
  s->data = NULL;
  s->err = NULL;
}

/* Wait until a worker has finished slot k (the mutex is held). */
static void wait_ready(struct prefetch *p, size_t k) {
  if (p->slots[k].state == SLOT_EMPTY && p->sleepers > 0)
    pthread_cond_broadcast(&p->space); /* k is next_fetch: nobody works on it yet */
  while (p->slots[k].state != SLOT_READY) {
    p->want = k;
    pthread_cond_wait(&p->cv, &p->mu);
  }
  p->want = SIZE_MAX;
}

/* Slot k leaves the window (the mutex is held). */
static void consumed(struct prefetch *p, size_t k) {
  p->ahead_bytes -= p->sizes[k];
  p->next_take = k + 1;
  if (p->sleepers > 0 && can_fetch(p) && p->ahead_bytes <= p->budget / 2 &&
      p->next_fetch - p->next_take <= MAX_AHEAD / 2)
    pthread_cond_broadcast(&p->space);
}

int prefetch_take(struct prefetch *p, const unsigned char id[32], void **out, size_t *n,
                  char **err) {
  pthread_mutex_lock(&p->mu);
  /* is it ahead at all? (never skip past the whole sequence for a stray id) */
  size_t k = p->next_take;
  while (k < p->n && memcmp(p->ids[k], id, 32) != 0)
    k++;
  if (k >= p->n) {
    pthread_mutex_unlock(&p->mu);
    return 0;
  }
  while (p->next_take < k) { /* the consumer skipped these: drop them */
    size_t j = p->next_take;
    if (j < p->next_fetch) {
      wait_ready(p, j);
      drop_slot(&p->slots[j]);
      consumed(p, j);
    } else { /* never fetched: nobody will */
      p->next_take = p->next_fetch = j + 1;
    }
  }
  wait_ready(p, k);
  struct slot *s = &p->slots[k];
  int rc = 1;
  if (s->err) {
    *err = s->err;
    s->err = NULL;
    rc = -1;
  } else {
    *out = s->data;
    *n = s->len;
    s->data = NULL;
  }
  consumed(p, k);
  pthread_mutex_unlock(&p->mu);
  return rc;
}

void prefetch_stop(struct prefetch *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_cond_broadcast(&p->space);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nth; i++)
    pthread_join(p->th[i], NULL);
  for (size_t i = 0; i < p->n; i++)
    drop_slot(&p->slots[i]);
  free(p->slots);
  free(p->sizes);
  free(p->ids);
  free(p->th);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_cond_destroy(&p->space);
  free(p);
}
