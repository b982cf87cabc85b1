/* Read-ahead of an item tree (see tree_feed.h). */
#include "pipeline/tree_feed.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "repo/tree.h"
#include "util/log.h"

/* Parsed entries waiting for the source thread. Lines are a few hundred
 * bytes: this bounds the feed to well under a megabyte. A full feed wakes
 * the feeder only once it is half empty again, and an empty one wakes the
 * consumer once a batch is in: waking the other side per entry costs a
 * context switch per entry (the feed is kept exactly full or exactly
 * empty, and the woken thread preempts the one that woke it). */
#define FEED_CAP 512
#define FEED_BATCH 16
/* Entries the consumer is done with go back to the feeder, which frees
 * them: they were allocated on its thread, and glibc frees a block from
 * another thread's arena under that arena's lock, which the feeder holds
 * while it allocates. An unchanged re-run's walk spent ~38 % of its thread
 * in those frees (futex waits and wakes included). */
#define GARBAGE_CAP (2 * FEED_CAP)

struct tree_feed {
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct tree_entry q[FEED_CAP];
  size_t head, count;
  struct tree_entry garbage[GARBAGE_CAP]; /* released, not yet freed */
  size_t n_garbage;
  int feeder_waits, consumer_waits;
  int done, stop, started, full;
  char *err;
  struct tree_reader tr;
};

void tree_entry_clear(struct tree_entry *e) {
  json_decref(e->item);
  free(e->name);
  free(e->line);
  free(e->meta_text);
  memset(e, 0, sizeof(*e));
}

static void free_garbage(struct tree_entry *g, size_t n) {
  for (size_t i = 0; i < n; i++)
    tree_entry_clear(&g[i]);
}

static void *feed_thread(void *arg) {
  struct tree_feed *f = arg;
  struct tree_entry *mine = xmalloc(GARBAGE_CAP * sizeof(*mine));
  size_t n_mine = 0;
  for (;;) {
    free_garbage(mine, n_mine);
    n_mine = 0;
    struct tree_entry e;
    memset(&e, 0, sizeof(e));
    char *err = NULL;
    int rc = tree_reader_next(&f->tr, &e.item, &err);
    if (rc > 0 && f->full) {
      e.name = json_get_bytes(e.item, "name", &e.name_len);
      if (!e.name) { /* not an item line: skip it, as the walk would */
        tree_entry_clear(&e);
        continue;
      }
      e.line = xmalloc(f->tr.line_len + 1);
      memcpy(e.line, f->tr.line, f->tr.line_len);
      e.line[f->tr.line_len] = '\0';
      e.line_len = f->tr.line_len;
      json_t *meta = json_object_get(e.item, "meta");
      e.meta_text = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("{}");
    }
    pthread_mutex_lock(&f->mu);
    if (rc <= 0) {
      f->done = 1;
      f->err = err;
      pthread_cond_broadcast(&f->cv);
      pthread_mutex_unlock(&f->mu);
      free(mine);
      return NULL;
    }
    while (f->count == FEED_CAP && !f->stop) {
      f->feeder_waits = 1;
      pthread_cond_wait(&f->cv, &f->mu);
    }
    f->feeder_waits = 0;
    if (f->stop) {
      pthread_mutex_unlock(&f->mu);
      tree_entry_clear(&e);
      free(mine);
      return NULL;
    }
    f->q[(f->head + f->count) % FEED_CAP] = e;
    if (++f->count >= FEED_BATCH && f->consumer_waits)
      pthread_cond_signal(&f->cv);
    if (f->n_garbage >= FEED_BATCH) { /* freed at the top of the loop */
      n_mine = f->n_garbage;
      memcpy(mine, f->garbage, n_mine * sizeof(*mine));
      f->n_garbage = 0;
    }
    pthread_mutex_unlock(&f->mu);
  }
}

struct tree_feed *tree_feed_start(struct repo *r, const unsigned char (*ids)[32], size_t n,
                                  int flags) {
  struct tree_feed *f = xcalloc(1, sizeof(*f));
  f->full = (flags & TREE_FEED_FULL) != 0;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cv, NULL);
  tree_reader_init_ids(&f->tr, r, ids, n);
  if (pthread_create(&f->th, NULL, feed_thread, f) == 0) {
    f->started = 1;
  } else {
    /* no thread: report the tree as unreadable, so every item is read in full */
    f->done = 1;
    f->err = xstrdup("unable to start a thread to read it");
  }
  return f;
}

int tree_feed_next(struct tree_feed *f, struct tree_entry *e, char **err) {
  pthread_mutex_lock(&f->mu);
  if (f->count == 0 && !f->done) {
    f->consumer_waits = 1;
    while (f->count < FEED_BATCH && !f->done)
      pthread_cond_wait(&f->cv, &f->mu);
    f->consumer_waits = 0;
  }
  int rc;
  if (f->count > 0) {
    *e = f->q[f->head];
    f->head = (f->head + 1) % FEED_CAP;
    if (--f->count <= FEED_CAP / 2 && f->feeder_waits)
      pthread_cond_signal(&f->cv);
    rc = 1;
  } else if (f->err) {
    *err = f->err;
    f->err = NULL;
    rc = -1;
  } else {
    rc = 0;
  }
  pthread_mutex_unlock(&f->mu);
  return rc;
}

void tree_feed_release(struct tree_feed *f, struct tree_entry *e) {
  if (!e->item && !e->name && !e->line && !e->meta_text)
    return;
  pthread_mutex_lock(&f->mu);
  /* the feeder frees it unless it has finished (or is far behind) */
  int keep = !f->done && !f->stop && f->n_garbage < GARBAGE_CAP;
  if (keep)
    f->garbage[f->n_garbage++] = *e;
  pthread_mutex_unlock(&f->mu);
  if (!keep)
    tree_entry_clear(e);
  memset(e, 0, sizeof(*e));
}

void tree_feed_free(struct tree_feed *f) {
  if (!f)
    return;
  pthread_mutex_lock(&f->mu);
  f->stop = 1;
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
  if (f->started)
    pthread_join(f->th, NULL);
  free_garbage(f->garbage, f->n_garbage);
  f->n_garbage = 0;
  while (f->count > 0) {
    tree_entry_clear(&f->q[f->head]);
    f->head = (f->head + 1) % FEED_CAP;
    f->count--;
  }
  free(f->err);
  tree_reader_free(&f->tr);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cv);
  free(f);
}

int tree_feed_foreach(struct repo *r, const unsigned char (*ids)[32], size_t n,
                      int (*cb)(void *ud, json_t *item), void *ud, char **err) {
  struct tree_feed *f = tree_feed_start(r, ids, n, 0);
  int rc;
  for (;;) {
    struct tree_entry e;
    memset(&e, 0, sizeof(e));
    int got = tree_feed_next(f, &e, err);
    if (got <= 0) {
      rc = got; /* 0 at the end, -1 on error */
      break;
    }
    rc = cb(ud, e.item);
    tree_feed_release(f, &e);
    if (rc != 0)
      break;
  }
  tree_feed_free(f);
  return rc;
}
