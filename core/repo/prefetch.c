/* Restore read-ahead (see prefetch.h).
 *
 * Reads are planned per pack: consecutive blobs of the sequence that lie
 * close together in one pack form a unit, read with one ranged request and
 * decoded by the worker that read it. An object store then sees a few large
 * GETs per pack instead of one per blob (each request costs latency, and
 * money on a real object store).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/index.h"
#include "util/log.h"

/* Decoded bytes ahead of the consumer, and blobs ahead (many small files). */
#define DEFAULT_BUDGET (24u * 1024u * 1024u)
#define MAX_AHEAD 256u

enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY, SLOT_DONE };

struct slot {
  int state;
  void *data;
  size_t len;
  char *err;
};

/* Consecutive slots [first, last] read as one range [off, end) of a pack;
 * pack UINT32_MAX: a blob the index does not hold (read alone, for the
 * error). */
struct unit {
  size_t first, last;
  uint32_t pack;
  uint64_t off, end;
  uint64_t raw; /* decoded bytes of its blobs */
};

struct prefetch {
  struct repo *r;
  unsigned char (*ids)[32];
  uint32_t *sizes; /* decoded length of each blob, from the index (0: unknown) */
  struct index_entry *loc; /* where each blob is */
  struct unit *units;
  size_t n_units, next_unit;
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

/* May a worker start on the next unit? The unit holding the consumer's
 * next blob is always allowed, however large. next_fetch is the first slot
 * of the next unit. */
static int can_fetch(const struct prefetch *p) {
  if (p->next_unit >= p->n_units)
    return 0;
  const struct unit *u = &p->units[p->next_unit];
  if (u->first <= p->next_take)
    return 1;
  return u->last - p->next_take < MAX_AHEAD && p->ahead_bytes + u->raw <= p->budget;
}

static void publish(struct prefetch *p, size_t i, void *data, size_t len, char *err) {
  pthread_mutex_lock(&p->mu);
  p->slots[i].data = data;
  p->slots[i].len = len;
  p->slots[i].err = err;
  p->slots[i].state = SLOT_READY;
  if (p->want == i)
    pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Read a unit's range and decode its blobs in order, publishing each as it
 * is ready. A range that cannot be read is read again blob by blob, so each
 * blob gets its own result (and the sinks' fallback its chance). */
static void fetch_unit(struct prefetch *p, const struct unit *u) {
  void *buf = NULL;
  size_t got = 0;
  char *err = NULL;
  if (u->pack != UINT32_MAX && u->last > u->first) {
    char hex[65], name[80];
    hex_encode(p->r->index->packs[u->pack], 32, hex);
    snprintf(name, sizeof(name), "data/%.2s/%s", hex, hex);
    if (repo_get(p->r, name, u->off, u->end - u->off, &buf, &got, &err) != 0) {
      log_debug("restore: reading %llu bytes of pack %.16s failed (%s); reading its blobs one "
                "by one",
                (unsigned long long)(u->end - u->off), hex, err);
      free(err);
      err = NULL;
      buf = NULL;
    }
  }
  for (size_t i = u->first; i <= u->last; i++) {
    void *data = NULL;
    size_t len = 0;
    char *e = NULL;
    const struct index_entry *l = &p->loc[i];
    if (buf && (uint64_t)l->offset + l->length <= u->off + got) {
      char *de = NULL;
      if (repo_blob_decode(p->r, p->ids[i], p->type, (char *)buf + (l->offset - u->off), l->length,
                           &data, &len, &de) != 0) {
        char hex[65];
        hex_encode(p->r->index->packs[u->pack], 32, hex);
        e = xasprintf("pack %s: %s", hex, de);
        free(de);
      }
    } else {
      repo_read_blob(p->r, p->ids[i], p->type, &data, &len, &e);
    }
    publish(p, i, data, len, e);
  }
  free(buf);
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
    const struct unit *u = &p->units[p->next_unit++];
    p->next_fetch = u->last + 1;
    p->ahead_bytes += u->raw;
    for (size_t i = u->first; i <= u->last; i++)
      p->slots[i].state = SLOT_BUSY;
    pthread_mutex_unlock(&p->mu);
    fetch_unit(p, u);
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* Group the sequence into units: a blob joins the current unit when it is
 * in the same pack and within gap bytes of the unit's range, and the range
 * stays within range_max. */
static void plan(struct prefetch *p, size_t range_max) {
  const uint64_t gap = range_max / 4;
  p->units = xcalloc(p->n ? p->n : 1, sizeof(*p->units));
  struct unit *u = NULL;
  for (size_t i = 0; i < p->n; i++) {
    const struct index_entry *l = &p->loc[i];
    uint64_t off = l->offset, end = (uint64_t)l->offset + l->length;
    if (u && l->pack != UINT32_MAX && u->pack == l->pack && off + gap >= u->off &&
        off <= u->end + gap && i - u->first < MAX_AHEAD / 2) {
      uint64_t no = off < u->off ? off : u->off, ne = end > u->end ? end : u->end;
      if (ne - no <= range_max) {
        u->off = no;
        u->end = ne;
        u->last = i;
        u->raw += p->sizes[i];
        continue;
      }
    }
    u = &p->units[p->n_units++];
    *u = (struct unit){i, i, l->pack, off, end, p->sizes[i]};
  }
}

struct prefetch *prefetch_start(struct repo *r, const unsigned char (*ids)[32], size_t n,
                                enum blob_type type, int threads, size_t budget,
                                size_t range_max) {
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
  p->loc = xcalloc(n ? n : 1, sizeof(*p->loc));
  for (size_t i = 0; i < n; i++) {
    if (index_get(r->index, ids[i], &p->loc[i]) && p->loc[i].pack != UINT32_MAX)
      p->sizes[i] = p->loc[i].raw_length;
    else
      p->loc[i].pack = UINT32_MAX;
  }
  plan(p, range_max ? range_max : 1);
  log_debug("restore: %zu blob(s) read in %zu request(s)", n, p->n_units);
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
  p->slots[k].state = SLOT_DONE;
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
    wait_ready(p, j); /* a unit not started yet is started: j is the consumer's next */
    drop_slot(&p->slots[j]);
    consumed(p, j);
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
  free(p->loc);
  free(p->units);
  free(p->ids);
  free(p->th);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_cond_destroy(&p->space);
  free(p);
}
