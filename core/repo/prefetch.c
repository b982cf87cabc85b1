/* Restore read-ahead (see prefetch.h).
 *
 * Reads are planned per pack. Walking the sequence, each blob joins the
 * unit already open for its pack when the unit's blobs stay within half the
 * window (in blobs and in decoded bytes), its range of the pack within
 * range_max and at least `density` % of that range wanted blobs; otherwise
 * it opens a new unit. A unit is read with one ranged request and decoded
 * by the worker that read it; a blob wanted several times in one unit (a
 * duplicate file, a repeated chunk) is read and decoded once and copied.
 * An object store then sees a few large GETs per pack instead of one per
 * blob, and reads the bytes it serves about once.
 *
 * Memory. Decoded blobs wait for the consumer in the window, one buffer of
 * `budget` bytes (at least four times the largest blob) allocated once: each
 * blob of the sequence has its place in it, given by the decoded lengths of
 * the blobs before it (the index knows them), wrapping around, a blob that
 * would straddle the end starting over at the beginning. A unit is claimed
 * only when all its blobs' places are free, i.e. lie less than a window
 * ahead of the oldest blob the consumer still holds. So the decoded bytes
 * ahead never exceed the window, and the same pages are reused from blob to
 * blob: no allocation per blob, nothing for the allocator to scatter over
 * its per-thread arenas, no page faults after the first round. Besides the
 * window: the blobs kept for a later duplicate (keep_budget), per worker a
 * streamed range's buffer (about a blob, see struct stream), and a
 * scratch buffer per decoding core (struct scratch).
 *
 * Units are claimed in the order of their first blob, so the unit holding
 * the consumer's next blob is always among the first claimed, and it always
 * fits: a unit spans at most half the window, the blob the consumer holds
 * and a wrap at most two more of the largest blob.
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
#include <unistd.h>

#include "repo/index.h"
#include "repo/keys2.h"
#include "net/http.h"
#include "util/log.h"

#define DEFAULT_BUDGET (24u * 1024u * 1024u)
#define DEFAULT_MAX_AHEAD 256u
/* A streamed range's buffer starts at RING_INIT bytes and grows in
 * RING_STEP steps to hold the largest blob; its transfer is paused once
 * more than SPILL_MAX bytes have arrived that the buffer cannot take yet,
 * and resumed when half of them have moved in. */
#define RING_INIT (1u << 20)
#define RING_STEP (1u << 20)
#define SPILL_MAX (1u << 20)

enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY, SLOT_DONE };

struct slot {
  int state;
  /* in the window, or malloc'd (owned: a kept duplicate, or a blob whose
   * decoded length is not the index's) */
  void *data;
  size_t len;
  char *err;
  /* the same blob is wanted again at slot `again` and is kept for it: when
   * this slot is taken, its data is copied there (0: no) */
  size_t again;
  int copied; /* filled from an earlier slot, never fetched */
  int owned;
};

/* A worker's buffer for streamed ranges, reused from unit to unit (its
 * pages stay mapped: no page faults per unit). It holds the bytes of the
 * current range from the blob being decoded on, about one blob, not the
 * whole range (see struct stream). */
struct ring {
  unsigned char *buf;
  size_t cap;
};

/* The decoders' scratch buffers for a blob's plaintext (each as large as
 * the largest sealed blob it held so far): at most `max` at once, so a
 * worker waits for one while that many blobs are being decoded. The cores
 * decode no faster with more, and each costs up to a blob of memory. */
struct scratch {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct ring *free; /* free[0 .. n_free) */
  size_t n_free, made, max;
};

static struct ring scratch_take(struct scratch *s, size_t need) {
  pthread_mutex_lock(&s->mu);
  while (s->n_free == 0 && s->made >= s->max)
    pthread_cond_wait(&s->cv, &s->mu);
  struct ring b = {NULL, 0};
  if (s->n_free > 0)
    b = s->free[--s->n_free];
  else
    s->made++;
  pthread_mutex_unlock(&s->mu);
  if (b.cap < need) {
    free(b.buf);
    b.buf = xmalloc(need);
    b.cap = need;
  }
  return b;
}

static void scratch_give(struct scratch *s, struct ring b) {
  pthread_mutex_lock(&s->mu);
  s->free[s->n_free++] = b;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* Slots list[first_pos .. first_pos + count) of the plan (in sequence
 * order, not necessarily consecutive) read as one range [off, end) of a
 * pack; pack UINT32_MAX: a blob the index does not hold (read alone, for
 * the error). */
struct unit {
  size_t first_pos, count;
  size_t first, last; /* first and last slot */
  uint32_t pack;
  uint64_t off, end;
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
  size_t max_ahead;
  size_t keep_budget; /* decoded bytes kept for later slots */
  int stream;         /* read ranges with repo_get_stream */
  unsigned density;   /* a unit's range is at least this % wanted blobs */
  /* the window (see the top of the file): slot i's place is
   * [pos[i], pos[i] + sizes[i]) modulo win_len (pos[n]: the end); copied
   * slots have none (their pos is the next slot's) */
  unsigned char *win;
  uint64_t win_len;
  uint64_t *pos;
  uint64_t win_start; /* place of the oldest slot the consumer holds or waits for */
  uint64_t claimed;   /* end of the places of the units claimed so far */
  size_t held;        /* the slot whose data the consumer holds (SIZE_MAX: none) */
  struct scratch scratch;
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

/* Does slot i have a place in the window? */
static int placed(const struct prefetch *p, size_t i) {
  return !p->slots[i].copied && p->sizes[i] > 0;
}

static uint64_t place_end(const struct prefetch *p, size_t i) {
  return p->pos[i] + (placed(p, i) ? p->sizes[i] : 0);
}

/* May a worker start on the next unit? The unit holding the consumer's
 * next blob always may (and always fits, see the top of the file). */
static int can_fetch(const struct prefetch *p) {
  if (p->next_unit >= p->n_units)
    return 0;
  const struct unit *u = &p->units[p->next_unit];
  if (u->first <= p->next_take)
    return 1;
  return u->last - p->next_take < p->max_ahead &&
         place_end(p, u->last) - p->win_start <= p->win_len;
}

static void publish(struct prefetch *p, size_t i, void *data, size_t len, int owned, char *err) {
  pthread_mutex_lock(&p->mu);
  p->slots[i].data = data;
  p->slots[i].len = len;
  p->slots[i].owned = owned;
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

/* What a worker keeps from unit to unit: the ring and the spill buffer. */
struct wbuf {
  struct ring ring;
  unsigned char *spill;
  size_t spill_cap;
};

/* A unit's range as it arrives (streamed reads). The HTTP client's thread
 * appends to the worker's ring while there is room and spills to the
 * worker's spill buffer when there is not; it never waits (it serves every
 * transfer): once more than SPILL_MAX bytes are spilled, this transfer is
 * paused (http_pause_current) until the decoder has moved half of them
 * in. The decoder (the worker) alone moves bytes: before each blob it drops
 * the bytes below it, moves spilled bytes into the ring and grows the ring
 * to hold the whole blob, then reads the blob without the lock (the client
 * writes only past `filled`). So a range costs the ring (about a blob) and
 * at most SPILL_MAX (and a last chunk) of spill, however large it is and
 * however slow the decoding. After a restart the bytes already received
 * are skipped (objects are immutable, so they come again unchanged). */
struct stream {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* the decoder waits for bytes */
  struct ring *ring;
  uint64_t len;                /* the range's length */
  uint64_t base;               /* offset in the range of ring->buf[0] */
  uint64_t filled;             /* offset in the range up to which bytes are in the ring */
  uint64_t got;                /* bytes received: the ring's, then the spilled ones */
  uint64_t need;               /* the decoder sleeps until got >= need (0: not waiting) */
  uint64_t skip;               /* bytes of a restarted transfer already received */
  struct wbuf *w;              /* its spill buffer: bytes [filled, got) */
  size_t spill_off, spill_len; /* in w->spill */
  uint64_t paused;             /* the transfer waits for the decoder (http_resume) */
  int done, rc, closed;
  char *err;
  struct prefetch *p;
  const struct unit *u;
};

static int stream_data(void *ud, const void *data, size_t n) {
  struct stream *st = ud;
  pthread_mutex_lock(&st->mu);
  if (data == NULL) { /* a new transfer: not paused */
    st->skip = st->got;
    st->paused = 0;
    pthread_mutex_unlock(&st->mu);
    return 0;
  }
  size_t drop = n < st->skip ? n : (size_t)st->skip;
  st->skip -= drop;
  n -= drop;
  data = (const char *)data + drop;
  if (n > st->len - st->got)
    n = (size_t)(st->len - st->got);
  if (n > 0 && !st->closed) {
    if (st->spill_len == 0 && st->filled - st->base + n <= st->ring->cap) {
      memcpy(st->ring->buf + (st->filled - st->base), data, n);
      st->filled += n;
    } else {
      struct wbuf *w = st->w;
      if (n > w->spill_cap - st->spill_len && st->spill_off > 0) {
        memmove(w->spill, w->spill + st->spill_off, st->spill_len - st->spill_off);
        st->spill_len -= st->spill_off;
        st->spill_off = 0;
      }
      if (n > w->spill_cap - st->spill_len) { /* in 64 KiB steps: it stays near SPILL_MAX */
        size_t c = (st->spill_len + n + (64u << 10) - 1) & ~(size_t)((64u << 10) - 1);
        w->spill = xrealloc(w->spill, c);
        w->spill_cap = c;
      }
      memcpy(w->spill + st->spill_len, data, n);
      st->spill_len += n;
    }
  }
  st->got += n;
  if (st->need && st->got >= st->need)
    pthread_cond_signal(&st->cv);
  /* the decoder is behind: this transfer waits until it has caught up
   * (the network waits, not memory) */
  if (st->spill_len - st->spill_off > SPILL_MAX && !st->paused && !st->closed)
    st->paused = http_pause_current();
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

/* Make the ring hold [from, to) of the range (the decoder is done with
 * everything below `from`): 1 and *src set, or 0 if those bytes never come.
 * The caller reads *src without the lock. */
static int stream_wait(struct stream *st, uint64_t from, uint64_t to, const unsigned char **src) {
  struct ring *g = st->ring;
  int ok;
  pthread_mutex_lock(&st->mu);
  for (;;) {
    /* the bytes below `from` go once they are half the ring or the blob
     * needs their room (each byte is moved about once) */
    uint64_t keep = from < st->filled ? from : st->filled;
    if (keep > st->base && (keep - st->base >= g->cap / 2 || to - st->base > g->cap)) {
      memmove(g->buf, g->buf + (keep - st->base), (size_t)(st->filled - keep));
      st->base = keep;
    }
    if (to - st->base > g->cap) {
      size_t c = (size_t)(to - st->base);
      c = (c + RING_STEP - 1) / RING_STEP * RING_STEP;
      g->buf = xrealloc(g->buf, c);
      g->cap = c;
    }
    size_t room = g->cap - (size_t)(st->filled - st->base), m = st->spill_len - st->spill_off;
    if (m > room)
      m = room;
    if (m > 0) {
      memcpy(g->buf + (st->filled - st->base), st->w->spill + st->spill_off, m);
      st->filled += m;
      st->spill_off += m;
      if (st->spill_off == st->spill_len)
        st->spill_off = st->spill_len = 0;
    }
    if (st->paused && st->spill_len - st->spill_off <= SPILL_MAX / 2) {
      http_resume(st->paused);
      st->paused = 0;
    }
    if (st->filled >= to || st->done) {
      ok = st->filled >= to;
      break;
    }
    st->need = to;
    pthread_cond_wait(&st->cv, &st->mu);
    st->need = 0;
  }
  pthread_mutex_unlock(&st->mu);
  *src = g->buf + (from - st->base);
  return ok;
}

/* The decoder reads no more of the range: what still arrives is dropped. */
static void stream_close(struct stream *st) {
  pthread_mutex_lock(&st->mu);
  st->closed = 1;
  st->spill_off = st->spill_len = 0;
  http_resume(st->paused); /* to its end; what still comes is dropped */
  st->paused = 0;
  pthread_mutex_unlock(&st->mu);
}

/* Publish a decoded blob (data: malloc'd, taken over; NULL with err) to
 * slot order[0] and its duplicates order[1..same): each gets a copy in its
 * place in the window, or, when the blob does not fit there (the index
 * gave another length), a malloc'd copy of its own. Copies first, the
 * first slot last: the consumer may take it at once. */
static void publish_group(struct prefetch *p, const size_t *order, size_t same, void *data,
                          size_t len, char *e) {
  for (size_t c = same; c-- > 0;) {
    size_t i = order[c];
    if (e) {
      publish(p, i, NULL, 0, 0, c ? xstrdup(e) : e);
    } else if (placed(p, i) && len == p->sizes[i]) {
      void *dst = p->win + p->pos[i] % p->win_len;
      memcpy(dst, data, len);
      publish(p, i, dst, len, 0, NULL);
    } else if (c == 0) {
      publish(p, i, data, len, 1, NULL);
      data = NULL;
    } else {
      void *copy = xmalloc(len ? len : 1);
      memcpy(copy, data, len);
      publish(p, i, copy, len, 1, NULL);
    }
  }
  free(data);
}

/* Slot order[0] holds its blob in its place in the window (data, len):
 * copy it to its duplicates order[1..same), then publish them all, the
 * first last. */
static void publish_copies(struct prefetch *p, const size_t *order, size_t same, const void *data,
                           size_t len) {
  for (size_t c = same; c-- > 1;) {
    size_t i = order[c];
    int in_place = placed(p, i) && len == p->sizes[i];
    void *dst = in_place ? p->win + p->pos[i] % p->win_len : xmalloc(len ? len : 1);
    memcpy(dst, data, len);
    publish(p, i, dst, len, !in_place, NULL);
  }
  publish(p, order[0], (void *)data, len, 0, NULL);
}

/* Read a unit's range and decode its blobs, each distinct one once, in
 * offset order, publishing each slot as it is ready; with streaming, a blob
 * is decoded as soon as its bytes have arrived. A blob the range does not
 * give (the read failed or ended early, or it does not decode) is read
 * again on its own, so each blob gets its own result (and the sinks'
 * fallback its chance). */
static void fetch_unit(struct prefetch *p, const struct unit *u, struct wbuf *w) {
  struct ring *ring = &w->ring;
  const unsigned char *buf = NULL;
  void *whole = NULL;
  size_t got = 0;
  char *err = NULL;
  struct stream st = {.p = p, .u = u, .ring = ring, .w = w, .len = u->end - u->off};
  pthread_t th;
  int streaming = 0;
  /* format 2: the unit's pack's data key (a failure leaves every blob to
   * the retry, which reports it). Before the range is read: it may read
   * the pack's header, which a transfer held for this decoder would block */
  unsigned char dk[32];
  const struct repo_tenant *tenant = NULL;
  int keyed = p->r->format < 2 ||
              (u->pack != UINT32_MAX &&
               repo_pack_key_t(p->r, p->r->index->packs[u->pack], dk, &tenant, &err) == 0);
  const unsigned char *key = p->r->format >= 2 ? dk : NULL;
  const unsigned char *idk = repo_tenant_idk(p->r, tenant);
  free(err);
  err = NULL;
  if (u->pack != UINT32_MAX && u->count > 1) {
    if (p->stream) {
      pthread_mutex_init(&st.mu, NULL);
      pthread_cond_init(&st.cv, NULL);
      size_t want = st.len < RING_INIT ? (size_t)st.len : RING_INIT;
      if (ring->cap < want) {
        free(ring->buf);
        ring->buf = xmalloc(want);
        ring->cap = want;
      }
      streaming = pthread_create(&th, NULL, stream_main, &st) == 0;
      if (!streaming) {
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
  for (size_t k = 0; k < u->count;) {
    size_t i = order[k], same = 1;
    while (k + same < u->count && p->loc[order[k + same]].offset == p->loc[i].offset &&
           memcmp(p->ids[order[k + same]], p->ids[i], 32) == 0)
      same++;
    const struct index_entry *l = &p->loc[i];
    uint64_t from = l->offset - u->off, to = from + l->length;
    const unsigned char *src = buf ? buf + from : NULL;
    int have = streaming ? stream_wait(&st, from, to, &src) : buf && to <= got;
    void *data = NULL;
    size_t len = 0;
    int ok = 0;
    if (have && keyed && placed(p, i)) {
      /* straight into its place in the window */
      struct ring sc = scratch_take(&p->scratch, l->length);
      void *dst = p->win + p->pos[i] % p->win_len;
      ok = repo_blob_decode_into(p->r, key, idk, p->ids[i], p->type, src, l->length, sc.buf, dst,
                                 p->sizes[i], &err) == 0;
      scratch_give(&p->scratch, sc);
      if (ok)
        publish_copies(p, order + k, same, dst, p->sizes[i]);
    } else if (have && keyed) {
      ok = repo_blob_decode_idk(p->r, key, idk, p->ids[i], p->type, src, l->length, &data, &len,
                                &err) == 0;
      if (ok)
        publish_group(p, order + k, same, data, len, NULL);
    }
    if (!ok) {
      free(err);
      err = NULL;
      for (size_t c = 0; c < same; c++)
        retry[n_retry++] = order[k + c];
    }
    k += same;
  }
  if (streaming) {
    stream_close(&st);
    pthread_join(th, NULL);
    if (st.rc != 0 && n_retry > 0)
      log_debug("restore: streamed read failed (%s); reading %zu blob(s) one by one", st.err,
                n_retry);
    free(st.err);
    pthread_mutex_destroy(&st.mu);
    pthread_cond_destroy(&st.cv);
  }
  for (size_t k = 0; k < n_retry; k++) {
    void *data = NULL;
    size_t len = 0;
    char *e = NULL;
    repo_read_blob(p->r, p->ids[retry[k]], p->type, &data, &len, &e);
    publish_group(p, retry + k, 1, data, len, e);
  }
  free(retry);
  free(order);
  free(whole);
}

static void *worker(void *arg) {
  struct prefetch *p = arg;
  struct wbuf w = {{NULL, 0}, NULL, 0};
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
    if (place_end(p, u->last) > p->claimed)
      p->claimed = place_end(p, u->last);
    for (size_t k = 0; k < u->count; k++)
      p->slots[p->list[u->first_pos + k]].state = SLOT_BUSY;
    pthread_mutex_unlock(&p->mu);
    fetch_unit(p, u, &w);
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  free(w.ring.buf);
  free(w.spill);
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

/* Each slot's place in the window (see the top of the file). The window is
 * `budget` bytes, or four times the largest blob if that is more. */
static void plan_places(struct prefetch *p, size_t budget) {
  uint64_t largest = 0, at = 0;
  for (size_t i = 0; i < p->n; i++)
    if (placed(p, i) && p->sizes[i] > largest)
      largest = p->sizes[i];
  p->win_len = budget > 4 * largest ? budget : 4 * largest;
  if (p->win_len == 0)
    p->win_len = 1;
  p->pos = xcalloc(p->n + 1, sizeof(*p->pos));
  for (size_t i = 0; i < p->n; i++) {
    if (placed(p, i) && at % p->win_len + p->sizes[i] > p->win_len)
      at += p->win_len - at % p->win_len;
    p->pos[i] = at;
    if (placed(p, i))
      at += p->sizes[i];
  }
  p->pos[p->n] = at;
}

/* Build the units (see the top of the file). A unit stays open for its
 * pack while its blobs span less than max_ahead / 2 slots and half the
 * window; a blob joins it when the range stays within range_max and at
 * least `density` % of it are blobs the restore wants. */
static void plan(struct prefetch *p, size_t range_max) {
  size_t *unit_of = xcalloc(p->n ? p->n : 1, sizeof(size_t));
  size_t n_packs = p->r->index->n_packs;
  size_t *open = xcalloc(n_packs + 1, sizeof(size_t)); /* pack -> unit + 1 */
  p->units = xcalloc(p->n ? p->n : 1, sizeof(*p->units));
  for (size_t i = 0; i < p->n; i++) {
    if (p->slots[i].copied)
      continue;
    const struct index_entry *l = &p->loc[i];
    uint64_t off = l->offset, end = (uint64_t)l->offset + l->length;
    struct unit *u = NULL;
    if (l->pack != UINT32_MAX && open[l->pack]) {
      u = &p->units[open[l->pack] - 1];
      uint64_t no = off < u->off ? off : u->off, ne = end > u->end ? end : u->end;
      uint64_t wanted = u->wanted + l->length;
      if (i - u->first < p->max_ahead / 2 && place_end(p, i) - p->pos[u->first] <= p->win_len / 2 &&
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
      *u = (struct unit){0, 0, i, i, l->pack, off, end, l->length};
      if (l->pack != UINT32_MAX)
        open[l->pack] = ui + 1;
    }
    u->count++;
    u->last = i;
    unit_of[i] = (size_t)(u - p->units);
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
}

struct prefetch *prefetch_start(struct repo *r, const unsigned char (*ids)[32], size_t n,
                                enum blob_type type, const struct prefetch_opts *o) {
  struct prefetch *p = xcalloc(1, sizeof(*p));
  p->r = r;
  p->n = n;
  p->type = type;
  size_t budget = o && o->budget ? o->budget : DEFAULT_BUDGET;
  p->max_ahead = o && o->max_ahead ? o->max_ahead : DEFAULT_MAX_AHEAD;
  p->want = SIZE_MAX;
  p->held = SIZE_MAX;
  p->ids = xcalloc(n ? n : 1, 32);
  if (n > 0)
    memcpy(p->ids, ids, n * 32);
  p->sizes = xcalloc(n ? n : 1, sizeof(*p->sizes));
  p->loc = xcalloc(n ? n : 1, sizeof(*p->loc));
  for (size_t i = 0; i < n; i++) {
    /* a length beyond any blob's (a damaged index) gets no place: the blob
     * is then kept in memory of its own */
    if (index_get(r->index, ids[i], &p->loc[i]) && p->loc[i].pack != UINT32_MAX)
      p->sizes[i] = p->loc[i].raw_length <= REPO_MAX_BLOB ? p->loc[i].raw_length : 0;
    else
      p->loc[i].pack = UINT32_MAX;
  }
  p->slots = xcalloc(n ? n : 1, sizeof(*p->slots));
  p->keep_budget = o ? o->keep_budget : 0;
  p->stream = o ? o->stream : 0;
  p->density = o && o->density ? o->density : 75;
  plan_keep(p);
  plan_places(p, budget);
  plan(p, o && o->range_max ? o->range_max : 1);
  p->win = xmalloc(p->win_len < p->pos[n] ? p->win_len : p->pos[n] ? p->pos[n] : 1);
  if (log_get_level() >= ENGINE_LOG_DEBUG) {
    uint64_t span = 0, sealed = 0;
    for (size_t k = 0; k < p->n_units; k++)
      span += p->units[k].end - p->units[k].off;
    for (size_t i = 0; i < n; i++)
      sealed += p->loc[i].length;
    log_debug("restore: %zu blob(s) (%llu sealed bytes) read in %zu request(s) of %llu bytes in "
              "all; a window of %llu bytes",
              n, (unsigned long long)sealed, p->n_units, (unsigned long long)span,
              (unsigned long long)p->win_len);
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  pthread_cond_init(&p->space, NULL);
  p->nth = o && o->threads > 0 ? o->threads : 1;
  p->th = xcalloc((size_t)p->nth, sizeof(*p->th));
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  pthread_mutex_init(&p->scratch.mu, NULL);
  pthread_cond_init(&p->scratch.cv, NULL);
  p->scratch.max =
      ncpu >= 1 && (size_t)ncpu + 1 < (size_t)p->nth ? (size_t)ncpu + 1 : (size_t)p->nth;
  p->scratch.free = xcalloc(p->scratch.max, sizeof(*p->scratch.free));
  for (int i = 0; i < p->nth; i++)
    pthread_create(&p->th[i], NULL, worker, p);
  return p;
}

static void drop_slot(struct slot *s) {
  if (s->owned)
    free(s->data);
  free(s->err);
  s->data = NULL;
  s->err = NULL;
  s->owned = 0;
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
    t->owned = 1;
  }
  t->state = SLOT_READY;
}

/* The consumer is done with the slot it held and moves on to slot k (the
 * mutex is held): k's place and everything after it is still wanted. */
static void move_on(struct prefetch *p, size_t k) {
  if (p->held != SIZE_MAX) {
    drop_slot(&p->slots[p->held]);
    p->slots[p->held].state = SLOT_DONE;
    p->held = SIZE_MAX;
  }
  p->win_start = p->pos[k];
}

/* Slot k leaves the window (the mutex is held): the consumer took it (and
 * holds its data until its next take) or skipped it. */
static void consumed(struct prefetch *p, size_t k, int taken) {
  if (taken) {
    p->held = k;
  } else {
    drop_slot(&p->slots[k]);
    p->slots[k].state = SLOT_DONE;
  }
  p->next_take = k + 1;
  if (p->sleepers > 0 && can_fetch(p) && p->claimed - p->win_start <= p->win_len / 2)
    pthread_cond_broadcast(&p->space);
}

int prefetch_take(struct prefetch *p, const unsigned char id[32], const void **out, size_t *n,
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
  move_on(p, p->next_take);
  while (p->next_take < k) { /* the consumer skipped these: drop them */
    size_t j = p->next_take;
    wait_ready(p, j); /* a unit not started yet is started: j is the consumer's next */
    pass_on(p, j);
    consumed(p, j, 0);
    p->win_start = p->pos[j + 1];
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
  }
  consumed(p, k, 1);
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
  free(p->pos);
  free(p->win);
  free(p->th);
  for (size_t i = 0; i < p->scratch.n_free; i++)
    free(p->scratch.free[i].buf);
  free(p->scratch.free);
  pthread_mutex_destroy(&p->scratch.mu);
  pthread_cond_destroy(&p->scratch.cv);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_cond_destroy(&p->space);
  free(p);
}
