/* The backup pipeline.
 *
 * Threads:
 *  - the source thread runs each source's backup callback in turn. Its
 *    emitter feeds the content-defined chunker; every finished chunk becomes
 *    a job on the worker pool. It blocks while too many bytes are in flight,
 *    which keeps memory flat whatever the input size.
 *  - pool threads compute the keyed chunk id, claim it in the index (dedup),
 *    and compress + encrypt new chunks; finished packs are sealed and
 *    written to every sink from the pool as well.
 *  - the loop thread (libuv) collects finished jobs in order: records chunk
 *    ids into their items, appends new blobs to the packer, hands full packs
 *    to upload jobs, and draws progress.
 *
 * Items are finalised (written to the source's item tree) in emission
 * order once all their chunks are done. When every source is finished, the
 * tree of each source is chunked like data; then the last pack is flushed,
 * the index of this run's packs is written, and only then the snapshot
 * manifest: a snapshot never references data that is not durable.
 */
#include "pipeline/backup.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "chunker/fastcdc.h"
#include "pipeline/backup_int.h"
#include "plugin/host_progress.h"
#include "repo/tree.h"
#include "stage/compress.h"
#include "util/cancel.h"
#include "util/log.h"
#include "util/pool.h"
#include "util/sysinfo.h"

/* Raw bytes of chunks being processed. A few chunks per worker keep every
 * core busy; more only costs memory. */
#define DEFAULT_INFLIGHT (16u * 1024u * 1024u)
/* Finished packs being written to the sinks at once, per run. */
#define MAX_UPLOADS 2
/* The run's index is saved as an object whenever its text passes this
 * (~25,000 blobs): memory stays flat however many blobs a run stores. */
#define INDEX_BATCH_BYTES (4u * 1024 * 1024)
/* A chunk up to this size (a small file, a file's tail) is copied into a
 * buffer of its own size, and the max-size chunk buffer stays with the
 * emitter: a tree of small files would otherwise keep a max-size buffer
 * per chunk in flight, allocated on the walk's thread and freed on the
 * loop's, which had glibc create, grow and trim arena heaps all the time. */
#define SMALL_CHUNK_COPY (128u * 1024u)
/* What a chunk counts against the in-flight limit at least (its job and
 * buffer cost memory too): a tree of tiny files cannot queue more than
 * limit / 4 KiB jobs. */
#define JOB_MIN_CHARGE 4096u
/* A pack also closes at this many blobs: tiny, well-compressed files would
 * otherwise put 100,000+ blobs in one 16 MiB pack, and its header and index
 * text (45 and ~150 bytes a blob) grow with that. */
#define PACK_MAX_BLOBS 20000u

struct bk_job {
  struct bk *bk;
  struct bk_item *item;
  size_t idx;
  uint8_t type;
  unsigned char *data;
  size_t len;
  unsigned char id[32];
  int is_new;
  int failed;
  int own_buf;   /* data is a copy of its own size, not a chunk buffer */
  size_t charge; /* counted in bk.inflight */
};

void bk_set_fatal(struct bk *b, char *msg) {
  pthread_mutex_lock(&b->lock);
  if (!b->fatal)
    b->fatal = msg;
  else
    free(msg);
  pthread_cond_broadcast(&b->cond);
  pthread_mutex_unlock(&b->lock);
}

int bk_is_stopping(struct bk *b) {
  pthread_mutex_lock(&b->lock);
  int s = b->fatal != NULL;
  pthread_mutex_unlock(&b->lock);
  return s || cancel_requested();
}

/* ---- item finalisation (called with b->lock held) --------------------- */

/* The item's line in the source's tree spool: for an item reused unchanged,
 * its parent's line as it was; otherwise built from the item. */
static void write_tree_line(struct bk *b, struct bk_source *s, struct bk_item *it) {
  char *line = it->line;
  if (!line) {
    json_t *o = json_object();
    json_set_bytes(o, "name", it->name, it->name_len);
    json_object_set_new(o, "type", json_string(item_type_name(it->type)));
    json_object_set_new(o, "size", json_integer((json_int_t)it->size));
    json_object_set_new(o, "meta", it->meta ? json_incref(it->meta) : json_object());
    json_t *chunks = json_array();
    for (size_t i = 0; i < it->n_submitted; i++) {
      char hex[65];
      hex_encode(it->ids[i], 32, hex);
      json_array_append_new(chunks, json_string(hex));
    }
    json_object_set_new(o, "chunks", chunks);
    line = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
  }
  if (!line || fputs(line, s->tree) == EOF || fputc('\n', s->tree) == EOF) {
    if (!b->fatal)
      b->fatal = xasprintf("unable to write the item tree spool file: %s", strerror(errno));
  }
  if (line != it->line)
    free(line);
}

void bk_finalize_ready(struct bk *b, struct bk_source *s) {
  while (s->head && s->head->closed && s->head->n_done == s->head->n_submitted) {
    struct bk_item *it = s->head;
    s->head = it->next;
    if (!s->head)
      s->tail = NULL;
    if (it->is_tree) {
      s->tree_ids = it->ids;
      s->n_tree_ids = it->n_submitted;
      it->ids = NULL;
      s->tree_size = it->size;
    } else if (!it->failed) {
      write_tree_line(b, s, it);
      s->items++;
      s->bytes += it->size;
      b->items++;
    }
    bk_item_free(it);
  }
  pthread_cond_broadcast(&b->cond);
}

/* ---- uploads ------------------------------------------------------------ */

static void upload_work(void *arg) {
  struct bk_upload *u = arg;
  struct repo *r = u->bk->repo;
  if (u->failed) { /* the backup fails with the chunk's error; this pack is not needed */
    u->err = xstrdup("a pack was not stored: one of its chunks could not be encrypted");
    return;
  }
  if (packer_finish(&u->pk, r, u->pack_id) != 0) {
    u->err = xstrdup("unable to seal a pack header");
    return;
  }
  char name[80];
  pack_object_name(u->pack_id, name);
  int rc = repo_put(r, name, u->pk.buf, u->pk.len, ENGINE_PUT_NO_OVERWRITE, &u->err);
  if (rc == ENGINE_EXISTS) { /* identical content already stored */
    free(u->err);
    u->err = NULL;
  }
}

/* An index object of this run's packs so far, saved on the pool so that
 * memory stays bounded whatever the number of blobs (docs/FORMAT.md §14:
 * an index object may name packs of a run that never made a snapshot). */
struct bk_index_job {
  struct bk *bk;
  char *text;
  size_t len;
  char id[65];
  char *err;
};

static void index_work(void *arg) {
  struct bk_index_job *j = arg;
  if (repo_save_text(j->bk->repo, "index", j->text, j->len, j->id, &j->err) != 0 && !j->err)
    j->err = xstrdup("unable to save an index object");
}

static void index_done(void *arg) {
  struct bk_index_job *j = arg;
  struct bk *b = j->bk;
  if (j->err) {
    bk_set_fatal(b, j->err);
  } else {
    json_array_append_new(b->index_ids, json_string(j->id));
    index_note_saved(b->repo, j->id);
  }
  free(j->text);
  free(j);
  pthread_mutex_lock(&b->lock);
  b->uploads_outstanding--;
  pthread_cond_broadcast(&b->cond);
  pthread_mutex_unlock(&b->lock);
}

static void save_index_batch(struct bk *b) {
  struct bk_index_job *j = xcalloc(1, sizeof(*j));
  j->bk = b;
  j->text = index_text_finish(&b->itext, &j->len);
  pthread_mutex_lock(&b->lock);
  b->uploads_outstanding++;
  pthread_mutex_unlock(&b->lock);
  pool_submit(index_work, index_done, j);
}

static void upload_done(void *arg) {
  struct bk_upload *u = arg;
  struct bk *b = u->bk;
  if (u->err) {
    bk_set_fatal(b, u->err);
    u->err = NULL;
  } else {
    uint32_t pk = index_add_pack(b->repo->index, u->pack_id);
    for (size_t i = 0; i < u->pk.n; i++) {
      struct pack_entry *e = &u->pk.entries[i];
      index_put(b->repo->index, e->id, pk, e->offset, e->length, e->raw_length, e->type);
    }
    index_text_add_pack(&b->itext, u->pack_id, u->pk.entries, u->pk.n);
    if (b->itext.len >= INDEX_BATCH_BYTES)
      save_index_batch(b);
  }
  pthread_mutex_lock(&b->lock);
  if (!u->err) {
    b->stored_bytes += u->pk.len;
    b->packs++;
  }
  b->uploads_outstanding--;
  pthread_cond_broadcast(&b->cond);
  pthread_mutex_unlock(&b->lock);
  packer_free(&u->pk);
  free(u);
}

/* A pack closes once it reaches pack_size, so it holds at most one more
 * sealed chunk (plus its header). */
static size_t pack_capacity(const struct repo *r) {
  return (size_t)r->pack_size + r->chunker.max_size + 64 * 1024;
}

static struct bk_upload *new_pack(struct bk *b) {
  struct bk_upload *u = xcalloc(1, sizeof(*u));
  u->bk = b;
  packer_init(&u->pk);
  packer_reserve(&u->pk, pack_capacity(b->repo));
  return u;
}

/* Store a pack that takes no more blobs and has none being sealed. */
static void submit_pack(struct bk_upload *u) {
  pool_submit(upload_work, upload_done, u);
}

/* No more reservations in u (under pack_mu); it counts as an upload from
 * now on, so the source waits while MAX_UPLOADS packs are on their way. */
static void close_pack(struct bk *b, struct bk_upload *u) {
  u->closed = 1;
  if (b->filling == u)
    b->filling = NULL;
  pthread_mutex_lock(&b->lock);
  b->uploads_outstanding++;
  pthread_mutex_unlock(&b->lock);
}

/* ---- chunk jobs --------------------------------------------------------- */

/* Pool thread: compress a new chunk and seal it straight into the place it
 * reserves in the pack being filled (no sealed copy, no copy into the pack
 * on the loop thread). Whoever seals a full pack's last blob submits it. */
static int store_blob(struct bk *b, struct bk_job *j) {
  struct repo *r = b->repo;
  const void *plain;
  size_t plain_len;
  if (repo_blob_compress(r, j->data, j->len, &plain, &plain_len) != 0)
    return -1;
  size_t sl = repo_sealed_len(r, plain_len);
  pthread_mutex_lock(&b->pack_mu);
  struct bk_upload *u = b->filling ? b->filling : (b->filling = new_pack(b));
  /* a pack takes blobs while below pack_size and was sized for one more */
  unsigned char *slot = packer_reserve_blob(&u->pk, j->id, j->type, sl, (uint32_t)j->len);
  u->writers++;
  if (u->pk.len >= r->pack_size || u->pk.n >= PACK_MAX_BLOBS)
    close_pack(b, u);
  pthread_mutex_unlock(&b->pack_mu);
  int rc = slot ? repo_blob_seal(r, j->id, j->type, plain, plain_len, slot) : -1;
  pthread_mutex_lock(&b->pack_mu);
  if (rc != 0)
    u->failed = 1;
  int ready = --u->writers == 0 && u->closed;
  pthread_mutex_unlock(&b->pack_mu);
  if (ready)
    submit_pack(u);
  return rc;
}

static void job_work(void *arg) {
  struct bk_job *j = arg;
  struct repo *r = j->bk->repo;
  repo_blob_id(r, j->data, j->len, j->id);
  j->is_new = index_claim(r->index, j->id, j->type);
  if (j->is_new && !j->bk->o->dry_run && store_blob(j->bk, j) != 0)
    j->failed = 1;
}

static void job_done(void *arg) {
  struct bk_job *j = arg;
  struct bk *b = j->bk;
  if (j->failed)
    bk_set_fatal(b, xstrdup("unable to compress or encrypt a chunk"));
  pthread_mutex_lock(&b->lock);
  struct bk_item *it = j->item;
  memcpy(it->ids[j->idx], j->id, 32);
  it->n_done++;
  if (j->type == BLOB_DATA) {
    b->chunks++;
    if (j->is_new) {
      b->new_chunks++;
      b->new_bytes += j->len;
    }
  }
  b->inflight -= j->charge;
  b->jobs_outstanding--;
  if (j->own_buf)
    free(j->data);
  else if (b->n_spare < SPARE_BUFFERS)
    b->spare[b->n_spare++] = j->data;
  else
    free(j->data);
  j->data = NULL;
  bk_finalize_ready(b, &b->sources[it->source]);
  pthread_mutex_unlock(&b->lock);
  free(j);
}

/* Source thread: hand the buffered chunk to the pool. */
int bk_submit_chunk(struct bk *b) {
  struct bk_item *it = b->cur;
  size_t len = b->chunk_len;
  if (len == 0)
    return 0;
  pthread_mutex_lock(&b->lock);
  /* chunks being processed are bounded by the limit; finished packs by
   * MAX_UPLOADS (one uploading while the next fills is enough to keep the
   * sink busy; more would only hold more packs in memory) */
  /* a chunk counts for the memory it holds: small ones are copied into a
   * buffer of their own size, larger ones keep the max-size chunk buffer */
  size_t charge = len <= SMALL_CHUNK_COPY ? (len < JOB_MIN_CHARGE ? JOB_MIN_CHARGE : len)
                                          : b->repo->chunker.max_size;
  while (((b->inflight > 0 && b->inflight + charge > b->limit) ||
          b->uploads_outstanding >= MAX_UPLOADS) &&
         !b->fatal && !cancel_requested())
    pthread_cond_wait(&b->cond, &b->lock);
  if (b->fatal || cancel_requested()) {
    pthread_mutex_unlock(&b->lock);
    return -1;
  }
  if (it->n_submitted == it->ids_cap) {
    it->ids_cap = it->ids_cap ? it->ids_cap * 2 : 4;
    it->ids = xrealloc(it->ids, it->ids_cap * sizeof(*it->ids));
  }
  size_t idx = it->n_submitted++;
  b->inflight += charge;
  b->jobs_outstanding++;
  pthread_mutex_unlock(&b->lock);

  struct bk_job *j = xcalloc(1, sizeof(*j));
  j->bk = b;
  j->item = it;
  j->idx = idx;
  j->type = it->is_tree ? BLOB_TREE : BLOB_DATA;
  j->len = len;
  j->charge = charge;
  if (len <= SMALL_CHUNK_COPY) {
    j->data = xmalloc(len);
    memcpy(j->data, b->chunk_buf, len);
    j->own_buf = 1;
  } else {
    j->data = b->chunk_buf;
    pthread_mutex_lock(&b->lock);
    b->chunk_buf = b->n_spare ? b->spare[--b->n_spare] : NULL;
    pthread_mutex_unlock(&b->lock);
    if (!b->chunk_buf)
      b->chunk_buf = xmalloc(b->repo->chunker.max_size);
  }
  b->chunk_len = 0;
  pool_submit(job_work, job_done, j);
  return 0;
}

/* ---- the source thread -------------------------------------------------- */

static void wait_until(struct bk *b, int (*pred)(struct bk *, void *), void *arg) {
  pthread_mutex_lock(&b->lock);
  while (!pred(b, arg))
    pthread_cond_wait(&b->cond, &b->lock);
  pthread_mutex_unlock(&b->lock);
}

static int source_drained(struct bk *b, void *arg) {
  return ((struct bk_source *)arg)->head == NULL || b->fatal;
}
static int jobs_drained(struct bk *b, void *arg) {
  (void)arg;
  return b->jobs_outstanding == 0;
}
static int uploads_drained(struct bk *b, void *arg) {
  (void)arg;
  return b->flushed && b->uploads_outstanding == 0;
}

static int spool_tree(struct bk *b, struct bk_source *s) {
  if (fflush(s->tree) != 0 || fseek(s->tree, 0, SEEK_SET) != 0) {
    bk_set_fatal(b, xasprintf("unable to read back the item tree spool file: %s", strerror(errno)));
    return -1;
  }
  struct bk_item *it = bk_item_begin(b, "(tree)", 6, ENGINE_ITEM_STREAM, 1);
  static const size_t bufsz = 1024 * 1024;
  unsigned char *buf = xmalloc(bufsz);
  size_t n;
  int rc = 0;
  while ((n = fread(buf, 1, bufsz, s->tree)) > 0)
    if (bk_item_write(b, buf, n) != ENGINE_OK) {
      rc = -1;
      break;
    }
  free(buf);
  if (rc == 0 && ferror(s->tree)) {
    bk_set_fatal(b, xasprintf("unable to read the item tree spool file: %s", strerror(errno)));
    rc = -1;
  }
  if (rc == 0 && bk_submit_chunk(b) != 0)
    rc = -1;
  pthread_mutex_lock(&b->lock);
  it->closed = 1;
  b->cur = NULL;
  bk_finalize_ready(b, s);
  pthread_mutex_unlock(&b->lock);
  return rc;
}

static void noop_work(void *arg) {
  (void)arg;
}

static void flush_done(void *arg) {
  struct bk *b = arg;
  pthread_mutex_lock(&b->lock);
  int fatal = b->fatal != NULL;
  pthread_mutex_unlock(&b->lock);
  if (!fatal) { /* after a fatal error nothing will reference the last pack */
    /* every job is done: nothing is being sealed into the last pack */
    pthread_mutex_lock(&b->pack_mu);
    struct bk_upload *u = b->filling;
    if (u && u->pk.n > 0)
      close_pack(b, u);
    else
      u = NULL;
    pthread_mutex_unlock(&b->pack_mu);
    if (u)
      submit_pack(u);
  }
  pthread_mutex_lock(&b->lock);
  b->flushed = 1;
  pthread_cond_broadcast(&b->cond);
  pthread_mutex_unlock(&b->lock);
}

static void source_thread(void *arg) {
  struct bk *b = arg;
  struct engine_emitter em;
  bk_emitter(b, &em);
  for (size_t i = 0; i < b->n_sources && !bk_is_stopping(b); i++) {
    struct bk_source *s = &b->sources[i];
    b->cur_source = i;
    host_clear_error(s->pi->host);
    int rc = s->pi->plugin->source->backup(s->pi->inst, &em);
    if (b->cur) { /* the plugin returned in the middle of an item */
      em.item_end(&em, ENGINE_ERROR, NULL, "source returned without ending the item");
    }
    if (rc != ENGINE_OK && !bk_is_stopping(b)) {
      const char *msg = host_last_error(s->pi->host);
      s->source_error = 1;
      s->error = xstrdup(msg[0] ? msg : "the source failed");
      log_error("source '%s' failed: %s", s->pi->name, s->error);
    }
    wait_until(b, source_drained, s);
    if (bk_is_stopping(b))
      break;
    spool_tree(b, s);
    wait_until(b, source_drained, s);
  }
  wait_until(b, jobs_drained, NULL);
  pool_submit(noop_work, flush_done, b);
  wait_until(b, uploads_drained, NULL);
  uv_async_send(&b->finish);
}

/* ---- loop side ---------------------------------------------------------- */

static void on_finish(uv_async_t *a) {
  struct bk *b = a->data;
  uv_close((uv_handle_t *)&b->finish, NULL);
  if (b->timer_on) {
    uv_timer_stop(&b->timer);
    uv_close((uv_handle_t *)&b->timer, NULL);
  }
  pool_shutdown();
}

static void on_timer(uv_timer_t *t) {
  struct bk *b = t->data;
  uint64_t total = 0;
  for (size_t i = 0; i < b->n_sources; i++) {
    uint64_t t = host_progress_total(b->sources[i].pi->host);
    /* no announced total: the parent snapshot's size is a good estimate */
    total += t ? t : b->sources[i].parent_bytes;
  }
  pthread_mutex_lock(&b->lock);
  uint64_t done = b->bytes_read + b->reused_bytes, items = b->items, newb = b->new_bytes;
  pthread_mutex_unlock(&b->lock);
  progress_update(b->progress, done, total, items, newb);
}

/* ---- setup and teardown -------------------------------------------------- */

/* The parent snapshot's tree of source s, to be read in step with the walk
 * (a source of the same name and plugin with a tree). */
static void find_parent_tree(struct bk_source *s, const struct snapshot *parent, struct repo *r) {
  for (size_t k = 0; parent && k < parent->n_sources; k++) {
    const struct snapshot_source *ps = &parent->sources[k];
    if (strcmp(ps->name, s->pi->name) != 0 || strcmp(ps->type, s->pi->plugin->name) != 0 ||
        ps->n_tree == 0)
      continue;
    s->parent =
        tree_feed_start(r, (const unsigned char(*)[32])ps->tree, ps->n_tree, TREE_FEED_FULL);
    s->has_parent = 1;
    s->parent_bytes = ps->bytes;
    s->parent_marks = ps->marks;
    return;
  }
}

static void bk_free(struct bk *b) {
  for (size_t i = 0; i < b->n_sources; i++) {
    struct bk_source *s = &b->sources[i];
    if (s->tree)
      fclose(s->tree);
    while (s->head) {
      struct bk_item *n = s->head->next;
      bk_item_free(s->head);
      s->head = n;
    }
    snapshot_notes_free(s->warnings, s->n_warnings);
    json_decref(s->marks);
    free(s->tree_ids);
    free(s->error);
    bk_parent_drop(s);
    tree_feed_free(s->parent);
    free(s->pmark);
  }
  free(b->sources);
  chunker_free(b->chunker);
  free(b->chunk_buf);
  for (size_t i = 0; i < b->n_spare; i++)
    free(b->spare[i]);
  if (b->filling) { /* a run that failed: its last pack was never stored */
    packer_free(&b->filling->pk);
    free(b->filling);
  }
  free(b->itext.p);
  json_decref(b->index_ids);
  free(b->fatal);
  progress_free(b->progress);
  pthread_mutex_destroy(&b->lock);
  pthread_mutex_destroy(&b->pack_mu);
  pthread_cond_destroy(&b->cond);
  free(b);
}

static struct bk *bk_new(const struct backup_opts *o, char **err) {
  struct bk *b = xcalloc(1, sizeof(*b));
  b->o = o;
  b->repo = o->repo;
  b->limit = o->max_inflight ? o->max_inflight : DEFAULT_INFLIGHT;
  if (b->limit < 2ull * o->repo->chunker.max_size)
    b->limit = 2ull * o->repo->chunker.max_size;
  pthread_mutex_init(&b->lock, NULL);
  pthread_cond_init(&b->cond, NULL);
  pthread_mutex_init(&b->pack_mu, NULL);
  b->index_ids = json_array();
  b->n_sources = o->pipeline->n_sources;
  b->sources = xcalloc(b->n_sources, sizeof(*b->sources));
  for (size_t i = 0; i < b->n_sources; i++) {
    struct bk_source *s = &b->sources[i];
    s->pi = o->sources[i];
    s->marks = json_object();
    s->tree = tmpfile();
    find_parent_tree(s, o->parent, o->repo);
    if (!s->tree) {
      *err = xasprintf("unable to create a temporary file for the item tree: %s", strerror(errno));
      bk_free(b);
      return NULL;
    }
  }
  struct chunker_params cp = o->repo->chunker;
  cp.seed = o->repo->chunker_seed;
  if (chunker_new(&cp, &b->chunker) != 0) {
    *err = xstrdup("invalid chunker parameters");
    bk_free(b);
    return NULL;
  }
  b->chunk_buf = xmalloc(o->repo->chunker.max_size);
  return b;
}

/* ---- the run ------------------------------------------------------------- */

/* Run the sources through the pipeline: the source thread, the pool and the
 * loop, until every source is done or the run stops. */
static void bk_run(struct bk *b) {
  b->started_ms = (int64_t)uv_hrtime() / 1000000;
  uv_loop_init(&b->loop);
  pool_init(&b->loop);
  uv_async_init(&b->loop, &b->finish, on_finish);
  b->finish.data = b;
  b->progress = progress_new(b->o->progress);
  if (b->o->progress) {
    uv_timer_init(&b->loop, &b->timer);
    b->timer.data = b;
    uv_timer_start(&b->timer, on_timer, 250, 250);
    b->timer_on = 1;
  }
  uv_thread_t th;
  uv_thread_create(&th, source_thread, b);
  uv_run(&b->loop, UV_RUN_DEFAULT);
  uv_thread_join(&th);
  uv_loop_close(&b->loop);
  pool_thread_cleanup();
  progress_finish(b->progress);
}

/* ---- the snapshot -------------------------------------------------------- */

/* Partial: a source warned, lost items or failed, or a sink missed data. */
static int bk_partial(const struct bk *b) {
  for (size_t i = 0; i < b->n_sources; i++) {
    const struct bk_source *s = &b->sources[i];
    if (s->n_warnings > 0 || s->source_error || s->failed_items)
      return 1;
  }
  for (size_t i = 0; i < b->repo->n_sinks; i++)
    if (b->repo->sinks[i].failed)
      return 1;
  return json_array_size(b->o->skipped_sinks) > 0;
}

/* Source s's part of the manifest; its warnings move there. */
static void manifest_source(struct snapshot *m, struct bk_source *s) {
  const struct engine_plugin *p = s->pi->plugin;
  struct snapshot_source *ms = snapshot_add_source(m);
  ms->name = xstrdup(s->pi->name);
  ms->type = xstrdup(p->name);
  ms->plugin_version = xstrdup(p->version);
  ms->tree = s->tree_ids;
  ms->n_tree = s->n_tree_ids;
  s->tree_ids = NULL;
  ms->tree_size = s->tree_size;
  ms->items = s->items;
  ms->bytes = s->bytes;
  ms->failed_items = s->failed_items;
  ms->marks = json_incref(s->marks);
  ms->error = s->error ? xstrdup(s->error) : NULL;
  for (size_t k = 0; k < s->n_warnings; k++) {
    const struct snapshot_note *w = &s->warnings[k];
    snapshot_note_add(&m->warnings, &m->n_warnings, s->pi->name, w->item, w->item_len, w->text);
  }
  ms->warnings = s->warnings;
  ms->n_warnings = s->n_warnings;
  s->warnings = NULL;
  s->n_warnings = 0;
}

/* The manifest of this run (everything but the index objects and
 * created_ns, which are known once the index is saved). t0, t1: when the
 * run started and ended. */
static struct snapshot *bk_manifest(struct bk *b, int64_t t0, int64_t t1, double seconds) {
  const struct backup_opts *o = b->o;
  struct snapshot *m = snapshot_new();
  char host[SYS_NAME_MAX], user[SYS_NAME_MAX];
  sys_hostname(host);
  sys_username(user);
  m->repository = xstrdup(o->repo->id);
  m->pipeline = xstrdup(o->pipeline->name);
  m->hostname = xstrdup(host);
  m->username = xstrdup(user);
  m->time = o->time_override ? o->time_override : t0;
  m->time_end = o->time_override ? o->time_override + (t1 - t0) : t1;
  m->duration = seconds;
  m->engine_version = xstrdup(ENGINE_VERSION);
  m->status = xstrdup(bk_partial(b) ? "partial" : "complete");
  m->parent = o->parent ? xstrdup(o->parent->id) : NULL;
  m->tags = xcalloc(o->pipeline->n_tags + 1, sizeof(char *));
  for (size_t i = 0; i < o->pipeline->n_tags; i++)
    m->tags[m->n_tags++] = xstrdup(o->pipeline->tags[i]);
  m->compression = xstrdup(compress_algo_name(o->repo->compress_algo));
  m->compression_level = o->repo->compress_level;
  m->stats = (struct snapshot_stats){b->items,      b->bytes_read,   b->chunks,
                                     b->new_chunks, b->new_bytes,    b->stored_bytes,
                                     b->packs,      b->reused_items, b->reused_bytes};
  size_t n_skipped = json_array_size(o->skipped_sinks);
  m->sinks_missed = xcalloc(n_skipped + o->repo->n_sinks + 1, sizeof(char *));
  for (size_t i = 0; i < n_skipped; i++)
    m->sinks_missed[m->n_sinks_missed++] =
        xstrdup(json_string_value(json_array_get(o->skipped_sinks, i)));
  for (size_t i = 0; i < o->repo->n_sinks; i++)
    if (o->repo->sinks[i].failed)
      m->sinks_missed[m->n_sinks_missed++] = xstrdup(o->repo->sinks[i].pi->name);
  for (size_t i = 0; i < b->n_sources; i++)
    manifest_source(m, &b->sources[i]);
  return m;
}

/* After every pack: the rest of the run's index, then the manifest, which
 * names every index object of the run (a snapshot never references data
 * that is not durable). */
static int bk_write_snapshot(struct bk *b, struct snapshot *m, char **err) {
  struct repo *r = b->repo;
  if (b->itext.packs > 0) {
    size_t len;
    char id[65];
    char *text = index_text_finish(&b->itext, &len);
    int rc = repo_save_text(r, "index", text, len, id, err);
    free(text);
    if (rc != 0)
      return -1;
    json_array_append_new(b->index_ids, json_string(id));
    index_note_saved(r, id);
  }
  index_cache_refresh(r);
  size_t n = json_array_size(b->index_ids);
  m->has_indexes = 1;
  m->indexes = xcalloc(n + 1, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    m->indexes[m->n_indexes++] = xstrdup(json_string_value(json_array_get(b->index_ids, i)));
  m->index = xstrdup(n ? m->indexes[n - 1] : "");
  /* wall-clock creation time in ns: orders snapshots made within one second */
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  m->created_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
  return snapshot_save(r, m, err);
}

static void bk_result(const struct bk *b, const struct snapshot *m, struct backup_result *res) {
  res->partial = strcmp(m->status, "partial") == 0;
  res->warnings = snapshot_warnings_json(m);
  res->items = b->items;
  res->bytes_read = b->bytes_read;
  res->chunks = b->chunks;
  res->new_chunks = b->new_chunks;
  res->new_bytes = b->new_bytes;
  res->stored_bytes = b->stored_bytes;
  res->packs = b->packs;
  res->reused_items = b->reused_items;
  res->reused_bytes = b->reused_bytes;
  memcpy(res->snapshot_id, m->id, sizeof(res->snapshot_id));
}

int backup_run(const struct backup_opts *o, struct backup_result *res, char **err) {
  memset(res, 0, sizeof(*res));
  struct bk *b = bk_new(o, err);
  if (!b)
    return -1;
  int64_t t0 = (int64_t)time(NULL);
  bk_run(b);
  int64_t t1 = (int64_t)time(NULL);
  res->seconds = ((double)((int64_t)uv_hrtime() / 1000000 - b->started_ms)) / 1000.0;
  int rc = -1;
  size_t failed_sources = 0;
  for (size_t i = 0; i < b->n_sources; i++)
    failed_sources += b->sources[i].source_error;
  if (b->fatal || cancel_requested()) {
    *err = b->fatal ? xstrdup(b->fatal)
                    : xstrdup("interrupted; no snapshot was written (the repository is unchanged "
                              "apart from unreferenced data)");
  } else if (failed_sources == b->n_sources) {
    /* every source failed as a whole: nothing worth a snapshot */
    *err = xasprintf("every source failed (%s); no snapshot was written", b->sources[0].error);
  } else {
    struct snapshot *m = bk_manifest(b, t0, t1, res->seconds);
    if (o->dry_run || bk_write_snapshot(b, m, err) == 0) {
      bk_result(b, m, res);
      rc = 0;
    }
    snapshot_free(m);
  }
  bk_free(b);
  return rc;
}
