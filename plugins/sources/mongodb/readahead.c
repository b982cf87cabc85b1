/* Reading a collection one batch ahead of the pipeline.
 *
 * The cursor is driven here, not by libmongoc's cursor: a cursor asks for
 * the next batch only when the caller has taken every document of the
 * current one, so the server would wait while the documents are hashed and
 * chunked. Instead a thread of its own sends each getMore as soon as the
 * previous reply has arrived and queues the whole reply (at most RA_REPLIES
 * waiting, each about batch_bytes, so the memory stays bounded); the
 * consumer (the backup thread) takes the documents out of the queued
 * replies, counts them, adds them to the digest and copies them into blocks
 * of about MG_IO_BLOCK bytes for the emitter. The server prepares batch N+1
 * while the engine works on batch N.
 *
 * The getMore commands are those libmongoc's cursor sends (same server,
 * same session, no read preference, not retried); a reader stopped before
 * the end kills the server's cursor. The connection's client is used by
 * the reader thread alone until mg_readahead_finish returns. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mongo.h"

#define RA_REPLIES 2

/* A command's reply moved to the heap (bson_t wants 128-byte alignment,
 * which plain malloc does not give), or NULL; reply is left empty. */
static bson_t *take(bson_t *reply) {
  bson_t *b = BSON_ALIGNED_ALLOC(bson_t);
  if (b != NULL && !bson_steal(b, reply)) {
    bson_free(b); /* a read-only reply: libmongoc leaves none */
    bson_destroy(reply);
    b = NULL;
  }
  return b;
}

static void reply_free(bson_t *b) {
  if (b != NULL) {
    bson_destroy(b); /* the buffer: b itself is marked static by bson_steal */
    bson_free(b);
  }
}

struct mg_readahead {
  struct mg_conn *c;
  const struct engine_host *h;
  char *db, *coll; /* the cursor's namespace, from the find's reply */
  int64_t id;      /* the server's cursor, 0 once exhausted */
  uint64_t batch_bytes, max_docs;
  uint64_t seen_docs, seen_bytes; /* the reader's view, for batch sizes */
  struct mg_digest *dg;
  pthread_t th;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bson_t *q[RA_REPLIES];
  size_t head, n;
  int done, stop, failed, cancelled, oom; /* under mu */
  bson_error_t err;
  /* the consumer's */
  bson_t *held; /* the reply being taken apart */
  bson_iter_t batch;
  int broken;             /* a reply was not understood: no more documents */
  const uint8_t *pending; /* a document read but not yet handed out */
  uint32_t pending_len;
  uint8_t *block;
  size_t block_len;
  uint64_t count, bytes;
};

/* The cursor document of a find or getMore reply: its id and batch. 0, or
 * -1 with e set when the reply is not a cursor's. */
static int parse_reply(const bson_t *reply, int first, int64_t *id, bson_iter_t *batch,
                       const char **ns, bson_error_t *e) {
  bson_iter_t it, cur;
  const char *key = first ? "firstBatch" : "nextBatch";
  *ns = NULL;
  if (!bson_iter_init_find(&it, reply, "cursor") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
      !bson_iter_recurse(&it, &cur))
    goto bad;
  int have_id = 0, have_batch = 0;
  while (bson_iter_next(&cur)) {
    const char *k = bson_iter_key(&cur);
    if (strcmp(k, "id") == 0 && (BSON_ITER_HOLDS_INT64(&cur) || BSON_ITER_HOLDS_INT32(&cur))) {
      *id = bson_iter_as_int64(&cur);
      have_id = 1;
    } else if (strcmp(k, key) == 0 && BSON_ITER_HOLDS_ARRAY(&cur)) {
      have_batch = bson_iter_recurse(&cur, batch);
    } else if (strcmp(k, "ns") == 0 && BSON_ITER_HOLDS_UTF8(&cur)) {
      *ns = bson_iter_utf8(&cur, NULL);
    }
  }
  if (have_id && have_batch)
    return 0;
bad:
  bson_set_error(e, MONGOC_ERROR_CURSOR, MONGOC_ERROR_CURSOR_INVALID_CURSOR,
                 "the server's reply to %s holds no cursor with an id and a %s",
                 first ? "find" : "getMore", key);
  return -1;
}

/* Documents and bytes of a batch, for the size of the next one. n: the
 * documents asked for, which a server sends unless the collection ends or
 * the reply would pass 16 MiB (then the average comes out smaller, and the
 * server cuts the next batch again); counting them here would take the
 * reader's time between a reply and the next getMore. */
static void tally(struct mg_readahead *ra, const bson_t *reply, uint64_t n) {
  ra->seen_docs += n;
  ra->seen_bytes += reply->len;
}

/* Queue a reply; waits while the queue is full. 0, or -1 when the consumer
 * stopped (the reply is then destroyed). */
static int push(struct mg_readahead *ra, bson_t *reply) {
  pthread_mutex_lock(&ra->mu);
  while (ra->n == RA_REPLIES && !ra->stop)
    pthread_cond_wait(&ra->cv, &ra->mu);
  int stopped = ra->stop;
  if (!stopped) {
    ra->q[(ra->head + ra->n) % RA_REPLIES] = reply;
    ra->n++;
    pthread_cond_broadcast(&ra->cv);
  }
  pthread_mutex_unlock(&ra->mu);
  if (stopped)
    reply_free(reply);
  return stopped ? -1 : 0;
}

static int is_stopped(struct mg_readahead *ra) {
  pthread_mutex_lock(&ra->mu);
  int s = ra->stop;
  pthread_mutex_unlock(&ra->mu);
  return s;
}

/* The reply to the next getMore (asking for *docs documents), or NULL with
 * e set. */
static bson_t *get_more(struct mg_readahead *ra, uint64_t *docs_out, bson_error_t *e) {
  /* nothing seen yet: a few documents, as the find's first batch */
  uint64_t avg = ra->seen_docs ? ra->seen_bytes / ra->seen_docs : 0;
  uint64_t docs = avg ? ra->batch_bytes / avg : 16;
  docs = docs < 1 ? 1 : docs > ra->max_docs ? ra->max_docs : docs;
  *docs_out = docs;
  bson_t cmd = BSON_INITIALIZER, opts = BSON_INITIALIZER;
  BSON_APPEND_INT64(&cmd, "getMore", ra->id);
  BSON_APPEND_UTF8(&cmd, "collection", ra->coll);
  BSON_APPEND_INT64(&cmd, "batchSize", (int64_t)docs);
  bson_t reply;
  int ok = mg_append_opts(ra->c, &opts, e);
  if (ok)
    ok = mongoc_client_command_with_opts(ra->c->client, ra->db, &cmd, NULL, &opts, &reply, e);
  else
    bson_init(&reply);
  bson_destroy(&cmd);
  bson_destroy(&opts);
  if (!ok) {
    bson_destroy(&reply);
    return NULL;
  }
  bson_t *b = take(&reply);
  if (b == NULL)
    bson_set_error(e, MONGOC_ERROR_BSON, MONGOC_ERROR_BSON_INVALID, "out of memory");
  return b;
}

static void kill_cursor(struct mg_readahead *ra) {
  bson_t cmd = BSON_INITIALIZER, ids, opts = BSON_INITIALIZER, reply;
  bson_error_t e;
  BSON_APPEND_UTF8(&cmd, "killCursors", ra->coll);
  BSON_APPEND_ARRAY_BEGIN(&cmd, "cursors", &ids);
  BSON_APPEND_INT64(&ids, "0", ra->id);
  bson_append_array_end(&cmd, &ids);
  if (mg_append_opts(ra->c, &opts, &e) &&
      !mongoc_client_command_with_opts(ra->c->client, ra->db, &cmd, NULL, &opts, &reply, &e))
    ra->h->log(ra->h, ENGINE_LOG_DEBUG, "killing the cursor of %s.%s failed: %s", ra->db, ra->coll,
               e.message);
  else
    bson_destroy(&reply);
  bson_destroy(&cmd);
  bson_destroy(&opts);
}

static void *reader(void *arg) {
  struct mg_readahead *ra = arg;
  int failed = 0, cancelled = 0, stopped = 0;
  bson_error_t e;
  memset(&e, 0, sizeof(e));
  while (ra->id != 0) {
    if (ra->h->cancelled(ra->h)) {
      cancelled = 1;
      break;
    }
    if (is_stopped(ra)) {
      stopped = 1;
      break;
    }
    uint64_t asked;
    bson_t *reply = get_more(ra, &asked, &e);
    int64_t id = 0;
    bson_iter_t batch;
    const char *ns;
    if (reply == NULL || parse_reply(reply, 0, &id, &batch, &ns, &e) != 0) {
      reply_free(reply);
      failed = 1;
      ra->id = 0; /* a server that failed a getMore has ended the cursor */
      break;
    }
    ra->id = id;
    tally(ra, reply, asked);
    if (push(ra, reply) != 0) {
      stopped = 1;
      break;
    }
  }
  if (ra->id != 0 && (stopped || cancelled))
    kill_cursor(ra);
  pthread_mutex_lock(&ra->mu);
  if (failed && !ra->failed) {
    ra->failed = 1;
    ra->err = e;
  }
  ra->cancelled |= cancelled;
  ra->done = 1;
  pthread_cond_broadcast(&ra->cv);
  pthread_mutex_unlock(&ra->mu);
  return NULL;
}

static void ra_free(struct mg_readahead *ra) {
  reply_free(ra->held);
  for (size_t i = 0; i < ra->n; i++)
    reply_free(ra->q[(ra->head + i) % RA_REPLIES]);
  pthread_mutex_destroy(&ra->mu);
  pthread_cond_destroy(&ra->cv);
  free(ra->block);
  free(ra->db);
  free(ra->coll);
  free(ra);
}

struct mg_readahead *mg_readahead_start(struct mg_conn *c, const char *db, bson_t *first,
                                        uint64_t batch_bytes, uint64_t max_docs,
                                        struct mg_digest *dg, bson_error_t *e) {
  struct mg_readahead *ra = calloc(1, sizeof(*ra));
  if (ra == NULL)
    bson_destroy(first);
  bson_t *held = ra ? take(first) : NULL;
  if (held == NULL) {
    free(ra);
    bson_set_error(e, MONGOC_ERROR_BSON, MONGOC_ERROR_BSON_INVALID, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&ra->mu, NULL);
  pthread_cond_init(&ra->cv, NULL);
  ra->c = c;
  ra->h = c->in->host;
  ra->batch_bytes = batch_bytes;
  ra->max_docs = max_docs;
  ra->dg = dg;
  ra->held = held;
  const char *ns = NULL;
  if (parse_reply(held, 1, &ra->id, &ra->batch, &ns, e) != 0) {
    ra_free(ra);
    return NULL;
  }
  /* getMore names the collection of the cursor's namespace */
  const char *dot = ns ? strchr(ns, '.') : NULL;
  if (ra->id != 0 && dot == NULL) {
    bson_set_error(e, MONGOC_ERROR_CURSOR, MONGOC_ERROR_CURSOR_INVALID_CURSOR,
                   "the server's reply to find holds no cursor namespace (ns)");
    ra_free(ra);
    return NULL;
  }
  ra->db = strdup(db);
  ra->coll = strdup(dot ? dot + 1 : "");
  ra->block = malloc(MG_IO_BLOCK);
  if (ra->db == NULL || ra->coll == NULL || ra->block == NULL) {
    bson_set_error(e, MONGOC_ERROR_BSON, MONGOC_ERROR_BSON_INVALID, "out of memory");
    ra_free(ra);
    return NULL;
  }
  uint64_t n = 0;
  for (bson_iter_t it = ra->batch; bson_iter_next(&it);)
    n++;
  if (n > 0)
    tally(ra, held, n);
  if (ra->id != 0) {
    if (pthread_create(&ra->th, NULL, reader, ra) != 0) {
      bson_set_error(e, MONGOC_ERROR_BSON, MONGOC_ERROR_BSON_INVALID,
                     "unable to start a thread to read with");
      ra_free(ra);
      return NULL;
    }
    ra->started = 1;
  } else {
    ra->done = 1;
  }
  return ra;
}

/* The next document of the queued replies: 1, 0 at the end, -1 when the
 * consumer found something wrong (recorded in ra). */
static int next_doc(struct mg_readahead *ra, const uint8_t **doc, uint32_t *len) {
  if (ra->broken)
    return -1;
  for (;;) {
    if (ra->held != NULL && bson_iter_next(&ra->batch)) {
      if (!BSON_ITER_HOLDS_DOCUMENT(&ra->batch)) {
        pthread_mutex_lock(&ra->mu);
        ra->failed = 1;
        bson_set_error(&ra->err, MONGOC_ERROR_CURSOR, MONGOC_ERROR_CURSOR_INVALID_CURSOR,
                       "the server sent a batch element that is not a document");
        pthread_mutex_unlock(&ra->mu);
        ra->broken = 1;
        return -1;
      }
      bson_iter_document(&ra->batch, len, doc);
      return 1;
    }
    reply_free(ra->held);
    ra->held = NULL;
    pthread_mutex_lock(&ra->mu);
    while (ra->n == 0 && !ra->done)
      pthread_cond_wait(&ra->cv, &ra->mu);
    if (ra->n > 0) {
      ra->held = ra->q[ra->head];
      ra->head = (ra->head + 1) % RA_REPLIES;
      ra->n--;
      pthread_cond_broadcast(&ra->cv);
    }
    pthread_mutex_unlock(&ra->mu);
    if (ra->held == NULL)
      return 0;
    int64_t id;
    const char *ns;
    bson_error_t e;
    /* parsed by the reader already */
    if (parse_reply(ra->held, 0, &id, &ra->batch, &ns, &e) != 0) {
      ra->broken = 1;
      return -1;
    }
  }
}

int mg_readahead_next(struct mg_readahead *ra, const uint8_t **data, size_t *len) {
  ra->block_len = 0;
  for (;;) {
    const uint8_t *doc;
    uint32_t dlen;
    if (ra->pending != NULL) {
      doc = ra->pending;
      dlen = ra->pending_len;
      ra->pending = NULL;
    } else {
      int r = next_doc(ra, &doc, &dlen);
      if (r <= 0)
        break;
      if (ra->dg != NULL && mg_digest_add(ra->dg, doc, dlen) != 0) {
        pthread_mutex_lock(&ra->mu);
        ra->oom = 1;
        pthread_mutex_unlock(&ra->mu);
        ra->broken = 1;
        return 0;
      }
      ra->count++;
      ra->bytes += dlen;
    }
    if (ra->block_len + dlen > MG_IO_BLOCK) {
      if (ra->block_len > 0) {
        /* handed out with the next call */
        ra->pending = doc;
        ra->pending_len = dlen;
        break;
      }
      /* larger than a block: straight from the reply, which stays held
       * until the next call */
      *data = doc;
      *len = dlen;
      return 1;
    }
    memcpy(ra->block + ra->block_len, doc, dlen);
    ra->block_len += dlen;
    if (ra->block_len == MG_IO_BLOCK)
      break;
  }
  if (ra->block_len == 0)
    return 0;
  *data = ra->block;
  *len = ra->block_len;
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
  ra_free(ra);
  return res->failed || res->cancelled || res->oom ? -1 : 0;
}
