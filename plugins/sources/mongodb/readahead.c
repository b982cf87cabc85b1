/* Reading a collection one step ahead of the pipeline: a thread of its own
 * iterates the cursor (each getMore waits for the server), copies whole
 * documents into blocks of about MG_IO_BLOCK bytes, counts them and adds
 * them to the digest, while the backup thread hands the previous blocks to
 * the emitter (chunking, hashing). At most RA_BLOCKS blocks wait, so the
 * memory stays bounded; the client is used by this thread alone until
 * mg_readahead_finish returns. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mongo.h"

#define RA_BLOCKS 4

struct block {
  uint8_t *data;
  size_t len, cap;
};

struct mg_readahead {
  mongoc_cursor_t *cur;
  const struct engine_host *h;
  uint64_t batch_bytes, max_docs, first_batch;
  struct mg_digest *dg;
  pthread_t th;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct block q[RA_BLOCKS];
  size_t head, n;
  struct block held; /* the consumer's current block */
  int done, stop, failed, cancelled, oom;
  bson_error_t err;
  uint64_t count, bytes;
};

static void block_free(struct block *b) {
  free(b->data);
  memset(b, 0, sizeof(*b));
}

/* Queue a full block; waits while the queue is full. 0, or -1 when the
 * consumer stopped. */
static int push(struct mg_readahead *ra, struct block *b) {
  pthread_mutex_lock(&ra->mu);
  while (ra->n == RA_BLOCKS && !ra->stop)
    pthread_cond_wait(&ra->cv, &ra->mu);
  int stopped = ra->stop;
  if (!stopped) {
    ra->q[(ra->head + ra->n) % RA_BLOCKS] = *b;
    ra->n++;
    memset(b, 0, sizeof(*b));
    pthread_cond_broadcast(&ra->cv);
  }
  pthread_mutex_unlock(&ra->mu);
  return stopped ? -1 : 0;
}

static int room(struct block *b, size_t need) {
  if (b->len + need <= b->cap)
    return 0;
  size_t cap = need > MG_IO_BLOCK ? need : MG_IO_BLOCK;
  if (b->data == NULL) {
    b->data = malloc(cap);
    b->cap = b->data ? cap : 0;
    return b->data ? 0 : -1;
  }
  return -1; /* full: push it first */
}

static void *reader(void *arg) {
  struct mg_readahead *ra = arg;
  struct block b = {0};
  const bson_t *doc;
  uint64_t next_adjust = ra->first_batch;
  int stopped = 0;
  while (!stopped && mongoc_cursor_next(ra->cur, &doc)) {
    const uint8_t *p = bson_get_data(doc);
    size_t len = doc->len;
    if (b.data != NULL && b.len + len > b.cap) {
      if (push(ra, &b) != 0) {
        stopped = 1;
        break;
      }
    }
    if (room(&b, len) != 0) {
      ra->oom = 1;
      stopped = 1;
      break;
    }
    memcpy(b.data + b.len, p, len);
    b.len += len;
    if (ra->dg != NULL && mg_digest_add(ra->dg, p, len) != 0) {
      ra->oom = 1;
      stopped = 1;
      break;
    }
    ra->count++;
    ra->bytes += len;
    if (ra->count == next_adjust) {
      /* the next batches hold about batch_bytes */
      uint64_t avg = ra->bytes / ra->count ? ra->bytes / ra->count : 1;
      uint64_t docs = ra->batch_bytes / avg;
      docs = docs < 1 ? 1 : docs > ra->max_docs ? ra->max_docs : docs;
      mongoc_cursor_set_batch_size(ra->cur, (uint32_t)docs);
      next_adjust = ra->count + docs;
    }
    if ((ra->count & 4095) == 0 && ra->h->cancelled(ra->h)) {
      ra->cancelled = 1;
      stopped = 1;
    }
  }
  if (!stopped && b.len > 0 && push(ra, &b) != 0)
    stopped = 1;
  block_free(&b);
  pthread_mutex_lock(&ra->mu);
  if (!stopped && mongoc_cursor_error(ra->cur, &ra->err))
    ra->failed = 1;
  ra->done = 1;
  pthread_cond_broadcast(&ra->cv);
  pthread_mutex_unlock(&ra->mu);
  return NULL;
}

struct mg_readahead *mg_readahead_start(mongoc_cursor_t *cur, const struct engine_host *h,
                                        uint64_t batch_bytes, uint64_t max_docs,
                                        uint64_t first_batch, struct mg_digest *dg) {
  struct mg_readahead *ra = calloc(1, sizeof(*ra));
  if (ra == NULL)
    return NULL;
  ra->cur = cur;
  ra->h = h;
  ra->batch_bytes = batch_bytes;
  ra->max_docs = max_docs;
  ra->first_batch = first_batch;
  ra->dg = dg;
  pthread_mutex_init(&ra->mu, NULL);
  pthread_cond_init(&ra->cv, NULL);
  if (pthread_create(&ra->th, NULL, reader, ra) != 0) {
    pthread_mutex_destroy(&ra->mu);
    pthread_cond_destroy(&ra->cv);
    free(ra);
    return NULL;
  }
  ra->started = 1;
  return ra;
}

int mg_readahead_next(struct mg_readahead *ra, const uint8_t **data, size_t *len) {
  block_free(&ra->held);
  pthread_mutex_lock(&ra->mu);
  while (ra->n == 0 && !ra->done)
    pthread_cond_wait(&ra->cv, &ra->mu);
  int got = ra->n > 0;
  if (got) {
    ra->held = ra->q[ra->head];
    ra->head = (ra->head + 1) % RA_BLOCKS;
    ra->n--;
    pthread_cond_broadcast(&ra->cv);
  }
  pthread_mutex_unlock(&ra->mu);
  if (!got)
    return 0;
  *data = ra->held.data;
  *len = ra->held.len;
  return 1;
}

int mg_readahead_finish(struct mg_readahead *ra, struct mg_readahead_result *res) {
  pthread_mutex_lock(&ra->mu);
  ra->stop = 1;
  pthread_cond_broadcast(&ra->cv);
  pthread_mutex_unlock(&ra->mu);
  if (ra->started)
    pthread_join(ra->th, NULL);
  res->count = ra->count;
  res->bytes = ra->bytes;
  res->failed = ra->failed;
  res->cancelled = ra->cancelled;
  res->oom = ra->oom;
  res->err = ra->err;
  block_free(&ra->held);
  for (size_t i = 0; i < ra->n; i++)
    block_free(&ra->q[(ra->head + i) % RA_BLOCKS]);
  pthread_mutex_destroy(&ra->mu);
  pthread_cond_destroy(&ra->cv);
  free(ra);
  return res->failed || res->cancelled || res->oom ? -1 : 0;
}
