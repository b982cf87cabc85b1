/* Restore read-ahead (see prefetch.h). */
#include "repo/prefetch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

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
  enum blob_type type;
  size_t n, next_fetch, next_take, window;
  struct slot *slots;
  pthread_mutex_t mu;
  pthread_cond_t cv;    /* the consumer waits for a slot to be ready */
  pthread_cond_t space; /* workers wait for work within the window */
  int stop;
  pthread_t *th;
  int nth;
};

static void *worker(void *arg) {
  struct prefetch *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && (p->next_fetch >= p->n || p->next_fetch >= p->next_take + p->window))
      pthread_cond_wait(&p->space, &p->mu);
    if (p->stop)
      break;
    size_t i = p->next_fetch++;
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
    pthread_cond_broadcast(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

struct prefetch *prefetch_start(struct repo *r, const unsigned char (*ids)[32], size_t n,
                                enum blob_type type, int threads, size_t window) {
  struct prefetch *p = xcalloc(1, sizeof(*p));
  p->r = r;
  p->n = n;
  p->type = type;
  p->window = window ? window : 8;
  p->ids = xcalloc(n ? n : 1, 32);
  memcpy(p->ids, ids, n * 32);
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
  if (p->next_fetch < k) /* nobody fetches what the consumer skips */
    p->next_fetch = k;
  while (p->next_take < k) { /* the consumer skipped these: drop them */
    struct slot *s = &p->slots[p->next_take];
    while (s->state == SLOT_BUSY)
      pthread_cond_wait(&p->cv, &p->mu);
    drop_slot(s);
    s->state = SLOT_READY;
    p->next_take++;
    pthread_cond_broadcast(&p->space);
  }
  struct slot *s = &p->slots[k];
  while (s->state != SLOT_READY)
    pthread_cond_wait(&p->cv, &p->mu);
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
  p->next_take = k + 1;
  pthread_cond_signal(&p->space); /* one more slot in the window: one worker */
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
  free(p->ids);
  free(p->th);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_cond_destroy(&p->space);
  free(p);
}
