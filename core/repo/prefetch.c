/* Restore read-ahead (see prefetch.h).
 *
 * Reads are planned per pack. Walking the sequence, each blob joins the
 * unit already open for its pack when that unit began less than a window
 * ago (in blobs and in decoded bytes) and the unit's range of the pack
 * stays within range_max and at least `density` % wanted blobs; otherwise it
 * opens a new unit. A unit is read with one ranged request and decoded by
 * the worker that read it; a blob wanted several times in one unit (a
 * duplicate file, a repeated chunk) is read and decoded once and copied.
 * An object store then sees a few large GETs per pack instead of one per
 * blob, and reads the bytes it serves about once.
 *
 * Units are claimed in the order of their first blob, so the unit holding
 * the consumer's next blob is always among the first claimed. Memory is
 * bounded by the window: the decoded bytes of claimed units the consumer
 * has not taken yet, plus one unit.
 *
 * Hand-offs between the workers and the consumer are where a restore of
 * many small files loses its time: a wake-up costs a context switch, and
 * the woken thread usually preempts the one that woke it. So nobody is
 * woken who has nothing to do: a worker signals the consumer only when it
 * finished the very blob the consumer waits for, and sleeping workers are
 * woken only once half the window is free again, so they fetch a batch per
 * wake-up instead of one blob. */
#include "repo/prefetch.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/index.h"
#include "repo/keys2.h"
#include "util/log.h"

#define DEFAULT_BUDGET (24u * 1024u * 1024u)
#define DEFAULT_MAX_AHEAD 256u

enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY, SLOT_DONE };

struct slot {
  int state;
  void *data;
  size_t len;
  char *err;
  /* the same blob is wanted again at slot `again` and is kept for it: when
   * this slot is taken, its data is copied there (0: no) */
  size_t again;
  int copied; /* filled from an earlier slot, never fetched */
};

/* Slots list[first_pos .. first_pos + count) of the plan (in sequence
 * order, not necessarily consecutive) read as one range [off, end) of a
 * pack; pack UINT32_MAX: a blob the index does not hold (read alone, for
 * the error). */
struct unit {
  size_t first_pos, count;
  size_t first, last; /* first and last slot */
  uint32_t pack;
  uint64_t off, end;
  uint64_t raw;    /* decoded bytes of its slots */
  uint64_t wanted; /* sealed bytes of its distinct blobs */
};

struct prefetch {
  struct repo *r;
  unsigned char (*ids)[32];
  uint32_t *sizes;         /* decoded length of each blob, from the index (0: unknown) */
  struct index_entry *loc; /* where each blob is */
  struct unit *units;
  size_t *list; /* slots of every unit, unit after unit */
  size_t n_units, next_unit;
  enum blob_type type;
  size_t n, next_take;
  size_t budget, max_ahead, ahead_bytes; /* decoded bytes of claimed, untaken slots */
  size_t keep_budget;                    /* decoded bytes kept for later slots */
  int stream;                            /* read ranges with repo_get_stream */
  unsigned density;                      /* a unit's range is at least this % wanted blobs */
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
 * next blob is always allowed, however large. */
static int can_fetch(const struct prefetch *p) {
  if (p->next_unit >= p->n_units)
    return 0;
  const struct unit *u = &p->units[p->next_unit];
  if (u->first <= p->next_take)
    return 1;
  return u->last - p->next_take < p->max_ahead && p->ahead_bytes + u->raw <= p->budget;
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

static int by_offset(const void *a, const void *b, void *ud) {
  const struct index_entry *loc = ud;
  uint32_t x = loc[*(const size_t *)a].offset, y = loc[*(const size_t *)b].offset;
  if (x != y)
    return x < y ? -1 : 1;
  size_t i = *(const size_t *)a, j = *(const size_t *)b;
  return i < j ? -1 : i > j;
}

/* A unit's range as it arrives (streamed reads). Bytes below `got` are
 * never written again: after a restart the bytes already held are skipped
 * (objects are immutable, so they come again unchanged), which lets the
 * decoder read them without the lock. */
struct stream {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned char *buf;
  size_t cap, got, skip;
  int done, rc;
  char *err;
  struct prefetch *p;
  const struct unit *u;
};

static int stream_data(void *ud, const void *data, size_t n) {
  struct stream *st = ud;
  pthread_mutex_lock(&st->mu);
  if (data == NULL) {
    st->skip = st->got;
  } else {
    size_t drop = n < st->skip ? n : st->skip;
    st->skip -= drop;
    n -= drop;
    data = (const char *)data + drop;
    if (n > st->cap - st->got)
      n = st->cap - st->got;
    memcpy(st->buf + st->got, data, n);
    st->got += n;
    pthread_cond_signal(&st->cv);
  }
  pthread_mutex_unlock(&st->mu);
  return 0;
}

static void *stream_main(void *arg) {
  struct stream *st = arg;
  char hex[65], name[80], *err = NULL;
  hex_encode(st->p->r->index->packs[st->u->pack], 32, hex);
  snprintf(name, sizeof(name), "data/%.2s/%s", hex, hex);
  int rc =
      repo_get_stream(st->p->r, name, st->u->off, st->u->end - st->u->off, stream_data, st, &err);
  pthread_mutex_lock(&st->mu);
  st->rc = rc;
  st->err = err;
  st->done = 1;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
  return NULL;
}

/* Wait until [0, need) of the range has arrived: 1, or 0 if it never will. */
static int stream_wait(struct stream *st, size_t need) {
  pthread_mutex_lock(&st->mu);
  while (st->got < need && !st->done)
    pthread_cond_wait(&st->cv, &st->mu);
  int ok = st->got >= need;
  pthread_mutex_unlock(&st->mu);
  return ok;
}

/* Publish slot i and its duplicates order[1..same) (copies first: the
 * consumer may take and free `data` at once). */
static void publish_group(struct prefetch *p, const size_t *order, size_t same, void *data,
                          size_t len, char *e) {
  for (size_t c = 1; c < same; c++) {
    void *copy = NULL;
    if (!e) {
      copy = xmalloc(len ? len : 1);
      memcpy(copy, data, len);
    }
    publish(p, order[c], copy, len, e ? xstrdup(e) : NULL);
  }
  publish(p, order[0], data, len, e);
}

/* Read a unit's range and decode its blobs, each distinct one once, in
 * offset order, publishing each slot as it is ready; with streaming, a blob
 * is decoded as soon as its bytes have arrived. A blob the range does not
 * give (the read failed or ended early, or it does not decode) is read
 * again on its own, so each blob gets its own result (and the sinks'
 * fallback its chance). */
static void fetch_unit(struct prefetch *p, const struct unit *u) {
  const unsigned char *buf = NULL;
  void *whole = NULL;
  size_t got = 0;
  char *err = NULL;
  struct stream st = {.p = p, .u = u};
  pthread_t th;
  int streaming = 0;
  if (u->pack != UINT32_MAX && u->count > 1) {
    if (p->stream) {
      pthread_mutex_init(&st.mu, NULL);
      pthread_cond_init(&st.cv, NULL);
      st.cap = (size_t)(u->end - u->off);
      st.buf = xmalloc(st.cap);
      streaming = pthread_create(&th, NULL, stream_main, &st) == 0;
      if (!streaming) {
        free(st.buf);
        pthread_mutex_destroy(&st.mu);
        pthread_cond_destroy(&st.cv);
      }
    }
    if (!streaming) {
      char hex[65], name[80];
      hex_encode(p->r->index->packs[u->pack], 32, hex);
      snprintf(name, sizeof(name), "data/%.2s/%s", hex, hex);
      if (repo_get(p->r, name, u->off, u->end - u->off, &whole, &got, &err) != 0) {
        log_debug("restore: reading %llu bytes of pack %.16s failed (%s); reading its blobs one "
                  "by one",
                  (unsigned long long)(u->end - u->off), hex, err);
        free(err);
        err = NULL;
        whole = NULL;
      }
      buf = whole;
    }
  }
  size_t *order = xmalloc(u->count * sizeof(*order));
  memcpy(order, p->list + u->first_pos, u->count * sizeof(*order));
  qsort_r(order, u->count, sizeof(*order), by_offset, p->loc);
  size_t *retry = xmalloc(u->count * sizeof(*retry)), n_retry = 0;
  /* format 2: the unit's pack's data key (a failure leaves every blob to
   * the retry, which reports it) */
  unsigned char dk[32];
  int keyed = p->r->format < 2 || (u->pack != UINT32_MAX &&
                                   repo_pack_key(p->r, p->r->index->packs[u->pack], dk, &err) == 0);
  free(err);
  err = NULL;
  for (size_t k = 0; k < u->count;) {
    size_t i = order[k], same = 1;
    while (k + same < u->count && p->loc[order[k + same]].offset == p->loc[i].offset &&
           memcmp(p->ids[order[k + same]], p->ids[i], 32) == 0)
      same++;
    const struct index_entry *l = &p->loc[i];
    size_t from = (size_t)(l->offset - u->off), to = from + l->length;
    int have = streaming ? stream_wait(&st, to) : buf && to <= got;
    const unsigned char *src = streaming ? st.buf : buf;
    void *data = NULL;
    size_t len = 0;
    if (have && keyed &&
        repo_blob_decode(p->r, p->r->format >= 2 ? dk : NULL, p->ids[i], p->type, src + from,
                         l->length, &data, &len, &err) == 0) {
      publish_group(p, order + k, same, data, len, NULL);
    } else {
      free(err);
      err = NULL;
      for (size_t c = 0; c < same; c++)
        retry[n_retry++] = order[k + c];
    }
    k += same;
  }
  if (streaming) {
    pthread_join(th, NULL);
    if (st.rc != 0 && n_retry > 0)
      log_debug("restore: streamed read failed (%s); reading %zu blob(s) one by one", st.err,
                n_retry);
    free(st.err);
    free(st.buf);
    pthread_mutex_destroy(&st.mu);
    pthread_cond_destroy(&st.cv);
  }
  for (size_t k = 0; k < n_retry; k++) {
    void *data = NULL;
    size_t len = 0;
    char *e = NULL;
    repo_read_blob(p->r, p->ids[retry[k]], p->type, &data, &len, &e);
    publish(p, retry[k], data, len, e);
  }
  free(retry);
  free(order);
  free(whole);
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
    p->ahead_bytes += u->raw;
    for (size_t k = 0; k < u->count; k++)
      p->slots[p->list[u->first_pos + k]].state = SLOT_BUSY;
    pthread_mutex_unlock(&p->mu);
    fetch_unit(p, u);
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* A blob the sequence wants again later (a duplicate file, a chunk that
 * repeats) is kept from the moment the consumer takes it until the next
 * time it is wanted, instead of being read and decoded again, as long as
 * what is kept at once stays within keep_budget (a forward sweep admits
 * each interval while there is room). Marks slots[j].copied and
 * slots[i].again = j. */
static void plan_keep(struct prefetch *p) {
  if (p->keep_budget == 0 || p->n < 2)
    return;
  /* next occurrence of each slot's id: a hash table of ids -> last slot seen,
   * walking backwards */
  size_t nt = 16;
  while (nt < p->n * 2)
    nt *= 2;
  size_t *tab = xcalloc(nt, sizeof(size_t)); /* slot + 1 */
  size_t *next = xcalloc(p->n, sizeof(size_t));
  for (size_t i = p->n; i-- > 0;) {
    uint64_t h;
    memcpy(&h, p->ids[i], sizeof(h));
    size_t k = (size_t)h & (nt - 1);
    while (tab[k] && memcmp(p->ids[tab[k] - 1], p->ids[i], 32) != 0)
      k = (k + 1) & (nt - 1);
    next[i] = tab[k];
    tab[k] = i + 1;
  }
  free(tab);
  /* sweep: `kept` bytes are held at each position; a slot copied from an
   * earlier one releases it, and may hold it again for its own next use */
  uint64_t kept = 0;
  for (size_t i = 0; i < p->n; i++) {
    if (p->slots[i].copied)
      kept -= p->sizes[i];
    size_t j = next[i];
    if (j && p->loc[i].pack != UINT32_MAX && kept + p->sizes[i] <= p->keep_budget) {
      p->slots[i].again = j - 1;
      p->slots[j - 1].copied = 1;
      kept += p->sizes[i];
    }
  }
  free(next);
}

/* Build the units (see the top of the file). A unit stays open for its
 * pack while it began less than max_ahead / 2 blobs and budget / 2 decoded
 * bytes ago; a blob joins it when the range stays within range_max and at
 * least `density` % of it are blobs the restore wants. */
static void plan(struct prefetch *p, size_t range_max) {
  size_t *unit_of = xcalloc(p->n ? p->n : 1, sizeof(size_t));
  size_t n_packs = p->r->index->n_packs;
  size_t *open = xcalloc(n_packs + 1, sizeof(size_t)); /* pack -> unit + 1 */
  uint64_t *start_raw = NULL;                          /* per unit: raw bytes before its first */
  p->units = xcalloc(p->n ? p->n : 1, sizeof(*p->units));
  start_raw = xcalloc(p->n ? p->n : 1, sizeof(*start_raw));
  uint64_t cum = 0;
  for (size_t i = 0; i < p->n; i++) {
    if (p->slots[i].copied)
      continue;
    const struct index_entry *l = &p->loc[i];
    uint64_t off = l->offset, end = (uint64_t)l->offset + l->length;
    struct unit *u = NULL;
    if (l->pack != UINT32_MAX && open[l->pack]) {
      size_t ui = open[l->pack] - 1;
      u = &p->units[ui];
      uint64_t no = off < u->off ? off : u->off, ne = end > u->end ? end : u->end;
      uint64_t wanted = u->wanted + l->length;
      if (i - u->first < p->max_ahead / 2 && cum - start_raw[ui] < p->budget / 2 &&
          ne - no <= range_max && wanted * 100 >= (ne - no) * p->density) {
        u->off = no;
        u->end = ne;
        u->wanted = wanted;
      } else {
        u = NULL;
      }
    }
    if (!u) {
      size_t ui = p->n_units++;
      u = &p->units[ui];
      *u = (struct unit){0, 0, i, i, l->pack, off, end, 0, l->length};
      start_raw[ui] = cum;
      if (l->pack != UINT32_MAX)
        open[l->pack] = ui + 1;
    }
    u->count++;
    u->last = i;
    u->raw += p->sizes[i];
    unit_of[i] = (size_t)(u - p->units);
    cum += p->sizes[i];
  }
  /* the slots of each unit, unit after unit (sequence order within) */
  size_t pos = 0;
  for (size_t k = 0; k < p->n_units; k++) {
    p->units[k].first_pos = pos;
    pos += p->units[k].count;
    p->units[k].count = 0;
  }
  p->list = xcalloc(p->n ? p->n : 1, sizeof(*p->list));
  for (size_t i = 0; i < p->n; i++) {
    if (p->slots[i].copied)
      continue;
    struct unit *u = &p->units[unit_of[i]];
    p->list[u->first_pos + u->count++] = i;
  }
  free(unit_of);
  free(open);
  free(start_raw);
}

struct prefetch *prefetch_start(struct repo *r, const unsigned char (*ids)[32], size_t n,
                                enum blob_type type, const struct prefetch_opts *o) {
  struct prefetch *p = xcalloc(1, sizeof(*p));
  p->r = r;
  p->n = n;
  p->type = type;
  p->budget = o && o->budget ? o->budget : DEFAULT_BUDGET;
  p->max_ahead = o && o->max_ahead ? o->max_ahead : DEFAULT_MAX_AHEAD;
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
  p->slots = xcalloc(n ? n : 1, sizeof(*p->slots));
  p->keep_budget = o ? o->keep_budget : 0;
  p->stream = o ? o->stream : 0;
  p->density = o && o->density ? o->density : 75;
  plan_keep(p);
  plan(p, o && o->range_max ? o->range_max : 1);
  if (log_get_level() >= ENGINE_LOG_DEBUG) {
    uint64_t span = 0, sealed = 0;
    for (size_t k = 0; k < p->n_units; k++)
      span += p->units[k].end - p->units[k].off;
    for (size_t i = 0; i < n; i++)
      sealed += p->loc[i].length;
    log_debug("restore: %zu blob(s) (%llu sealed bytes) read in %zu request(s) of %llu bytes in "
              "all",
              n, (unsigned long long)sealed, p->n_units, (unsigned long long)span);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  pthread_cond_init(&p->space, NULL);
  p->nth = o && o->threads > 0 ? o->threads : 1;
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
    pthread_cond_broadcast(&p->space); /* nobody works on k's unit yet */
  while (p->slots[k].state != SLOT_READY) {
    p->want = k;
    pthread_cond_wait(&p->cv, &p->mu);
  }
  p->want = SIZE_MAX;
}

/* Slot k's result is wanted again later: copy it there (the mutex is
 * held; the copy is what the plan counted as kept). */
static void pass_on(struct prefetch *p, size_t k) {
  struct slot *s = &p->slots[k], *t;
  if (!s->again)
    return;
  t = &p->slots[s->again];
  if (s->err) {
    t->err = xstrdup(s->err);
  } else {
    t->data = xmalloc(s->len ? s->len : 1);
    memcpy(t->data, s->data, s->len);
    t->len = s->len;
  }
  t->state = SLOT_READY;
}

/* Slot k leaves the window (the mutex is held). */
static void consumed(struct prefetch *p, size_t k) {
  if (!p->slots[k].copied)
    p->ahead_bytes -= p->sizes[k];
  p->slots[k].state = SLOT_DONE;
  p->next_take = k + 1;
  if (p->sleepers > 0 && can_fetch(p) && p->ahead_bytes <= p->budget / 2)
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
    pass_on(p, j);
    drop_slot(&p->slots[j]);
    consumed(p, j);
  }
  wait_ready(p, k);
  pass_on(p, k);
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
  free(p->list);
  free(p->ids);
  free(p->th);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_cond_destroy(&p->space);
  free(p);
}
