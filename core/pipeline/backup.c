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
#include "plugin/host_progress.h"
#include "repo/index.h"
#include "repo/pack.h"
#include "repo/tree.h"
#include "pipeline/tree_feed.h"
#include "stage/compress.h"
#include "util/log.h"
#include "util/cancel.h"
#include "util/pool.h"
#include "util/sysinfo.h"
#include "util/progress.h"

/* Raw bytes of chunks being processed. A few chunks per worker keep every
 * core busy; more only costs memory. */
#define DEFAULT_INFLIGHT (16u * 1024u * 1024u)
/* Finished packs being written to the sinks at once, per run. */
#define MAX_UPLOADS 2
/* The run's index is saved as an object whenever its text passes this
 * (~25,000 blobs): memory stays flat however many blobs a run stores. */
#define INDEX_BATCH_BYTES (4u * 1024 * 1024)
/* Chunk buffers kept for reuse: allocating a fresh max-size buffer per chunk
 * costs page faults on every chunk. */
#define SPARE_BUFFERS 4
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

struct bk;

struct bk_item {
  struct bk_item *next;
  char *name;
  size_t name_len;
  int type;
  json_t *meta;
  uint64_t size;
  unsigned char (*ids)[32];
  size_t ids_cap;
  size_t n_submitted; /* chunks handed to the pool */
  size_t n_done;      /* chunks whose job finished */
  int closed;
  int failed;
  int is_tree;
  int source;
  int meta_from_parent; /* meta is the parent item's (same text) */
  char *line;           /* reused unchanged: the parent's tree line, written verbatim */
};

struct bk_source {
  struct plugin_instance *pi;
  FILE *tree;
  struct bk_item *head, *tail;
  json_t *warnings;
  json_t *marks;
  json_t *tree_ids;
  uint64_t tree_size;
  uint64_t items, bytes, failed_items;
  int source_error;
  char *error;
  /* the parent snapshot's tree of this source, read in step with the walk */
  int has_parent, parent_done;
  uint64_t parent_bytes; /* size of this source in the parent snapshot (progress estimate) */
  json_t *parent_marks;  /* marks of this source in the parent snapshot (borrowed) */
  char *pmark;
  struct tree_feed *parent;
  struct tree_entry pe; /* the parent's item at the cursor (pe.item NULL: none) */
};

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

/* A pack: filled by the pool threads, each sealing its blob straight into
 * the place it reserved, then stored by an upload job. */
struct bk_upload {
  struct bk *bk;
  struct packer pk;
  size_t writers; /* blobs being sealed into pk (under pack_mu) */
  int closed;     /* full: no more reservations; stored once writers is 0 */
  int failed;     /* a blob could not be sealed: the pack is not stored */
  unsigned char pack_id[32];
  char *err;
};

struct bk {
  const struct backup_opts *o;
  struct repo *repo;
  uv_loop_t loop;
  uv_async_t finish;
  uv_timer_t timer;
  int timer_on;

  pthread_mutex_t lock;
  pthread_cond_t cond;
  uint64_t inflight, limit;
  size_t jobs_outstanding, uploads_outstanding;
  int flushed;
  char *fatal;

  pthread_mutex_t pack_mu;   /* guards `filling` and every pack's writers/closed/failed */
  struct bk_upload *filling; /* the pack taking blobs, NULL until the next one */
  /* the index of this run's packs, written as they are stored; saved as an
   * index object whenever it grows past INDEX_BATCH_BYTES (loop thread) */
  struct index_text itext;
  json_t *index_ids; /* index objects saved by this run, in order (loop thread) */

  struct bk_source *sources;
  size_t n_sources;

  /* emitter state (source thread only) */
  struct chunker *chunker;
  unsigned char *chunk_buf;
  unsigned char *spare[SPARE_BUFFERS]; /* reusable chunk buffers (under lock) */
  size_t n_spare;
  size_t chunk_len;
  struct bk_item *cur;
  /* the plugin's current item was refused (invalid name or type): its
   * content is discarded and its end accepted, so the source goes on with
   * the next item */
  int refusing;
  size_t cur_source;

  /* statistics (under lock) */
  uint64_t items, bytes_read, chunks, new_chunks, new_bytes, stored_bytes, packs;
  uint64_t reused_items, reused_bytes;
  int64_t started_ms;
  struct progress *progress;
};

static void set_fatal(struct bk *b, char *msg) {
  pthread_mutex_lock(&b->lock);
  if (!b->fatal)
    b->fatal = msg;
  else
    free(msg);
  pthread_cond_broadcast(&b->cond);
  pthread_mutex_unlock(&b->lock);
}

static int is_stopping(struct bk *b) {
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

static void item_free(struct bk_item *it) {
  free(it->name);
  free(it->line);
  json_decref(it->meta);
  free(it->ids);
  free(it);
}

static void finalize_ready(struct bk *b, struct bk_source *s) {
  while (s->head && s->head->closed && s->head->n_done == s->head->n_submitted) {
    struct bk_item *it = s->head;
    s->head = it->next;
    if (!s->head)
      s->tail = NULL;
    if (it->is_tree) {
      s->tree_ids = json_array();
      for (size_t i = 0; i < it->n_submitted; i++) {
        char hex[65];
        hex_encode(it->ids[i], 32, hex);
        json_array_append_new(s->tree_ids, json_string(hex));
      }
      s->tree_size = it->size;
    } else if (!it->failed) {
      write_tree_line(b, s, it);
      s->items++;
      s->bytes += it->size;
      b->items++;
    }
    item_free(it);
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
    set_fatal(b, j->err);
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
    set_fatal(b, u->err);
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
    set_fatal(b, xstrdup("unable to compress or encrypt a chunk"));
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
  finalize_ready(b, &b->sources[it->source]);
  pthread_mutex_unlock(&b->lock);
  free(j);
}

/* Source thread: hand the buffered chunk to the pool. */
static int submit_chunk(struct bk *b) {
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

/* ---- the emitter -------------------------------------------------------- */

static struct bk *em_bk(const struct engine_emitter *em) {
  return em->ctx;
}

static void add_warning(struct bk *b, struct bk_source *s, const char *name, size_t name_len,
                        const char *msg) {
  json_t *w = json_object();
  if (name)
    json_set_bytes(w, "item", name, name_len);
  json_object_set_new(w, "message", json_string(msg ? msg : "failed"));
  char *pn = name ? printable_name(name, name_len) : xstrdup("");
  log_warn("source '%s': %s%s%s", s->pi->name, pn, name ? ": " : "", msg ? msg : "failed");
  free(pn);
  pthread_mutex_lock(&b->lock);
  json_array_append_new(s->warnings, w);
  pthread_mutex_unlock(&b->lock);
}

static struct bk_item *new_item(struct bk *b, const char *name, size_t name_len, int type) {
  struct bk_item *it = xcalloc(1, sizeof(*it));
  it->name = xmalloc(name_len + 1);
  memcpy(it->name, name, name_len);
  it->name[name_len] = '\0';
  it->name_len = name_len;
  it->type = type;
  it->source = (int)b->cur_source;
  return it;
}

static void enqueue_item(struct bk *b, struct bk_item *it) {
  struct bk_source *s = &b->sources[b->cur_source];
  pthread_mutex_lock(&b->lock);
  if (s->tail)
    s->tail->next = it;
  else
    s->head = it;
  s->tail = it;
  pthread_mutex_unlock(&b->lock);
  b->cur = it;
  chunker_reset(b->chunker);
  b->chunk_len = 0;
}

static int em_item_begin(const struct engine_emitter *em, const struct engine_item *item) {
  struct bk *b = em_bk(em);
  struct bk_source *s = &b->sources[b->cur_source];
  if (is_stopping(b))
    return ENGINE_ERROR;
  if (b->cur) {
    add_warning(b, s, b->cur->name, b->cur->name_len,
                "item_begin before item_end (plugin bug); item dropped");
    return ENGINE_ERROR;
  }
  b->refusing = 0;
  const char *why = !item->name ? "no name"
                    : item_type_name(item->type)[0] == 'u'
                        ? "unknown item type"
                        : item_name_problem(item->name, item->name_len);
  if (why) {
    /* a name a restore could not place safely ('..', absolute, ...) would
     * make the item unrestorable: it fails here, where it can be fixed */
    char *msg = xasprintf("plugin '%s' gave an invalid item (%s); the item is not stored",
                          s->pi->plugin->name, why);
    add_warning(b, s, item->name, item->name ? item->name_len : 0, msg);
    free(msg);
    pthread_mutex_lock(&b->lock);
    s->failed_items++;
    pthread_mutex_unlock(&b->lock);
    b->refusing = 1;
    return ENGINE_OK;
  }
  json_t *meta = NULL;
  int from_parent = 0;
  if (item->meta_json && s->pe.item && strcmp(item->meta_json, s->pe.meta_text) == 0 &&
      tree_name_cmp(s->pe.name, s->pe.name_len, item->name, item->name_len) == 0) {
    /* the same text as the parent item's metadata (an unchanged item of an
     * incremental run): share the parent's parsed object */
    meta = json_incref(json_object_get(s->pe.item, "meta"));
    from_parent = meta != NULL;
  }
  if (item->meta_json && !meta) {
    json_error_t je;
    meta = json_loads(item->meta_json, 0, &je);
    if (!json_is_object(meta)) {
      json_decref(meta);
      add_warning(b, s, item->name, item->name_len,
                  "plugin gave metadata that is not a JSON object");
      return ENGINE_ERROR;
    }
  }
  struct bk_item *it = new_item(b, item->name, item->name_len, item->type);
  it->meta = meta;
  it->meta_from_parent = from_parent;
  enqueue_item(b, it);
  return ENGINE_OK;
}

static int em_item_write(const struct engine_emitter *em, const void *buf, size_t len) {
  struct bk *b = em_bk(em);
  if (!b->cur)
    return b->refusing && !is_stopping(b) ? ENGINE_OK : ENGINE_ERROR;
  const unsigned char *p = buf;
  size_t max = b->repo->chunker.max_size;
  b->cur->size += len;
  if (!b->cur->is_tree) {
    pthread_mutex_lock(&b->lock);
    b->bytes_read += len;
    pthread_mutex_unlock(&b->lock);
  }
  while (len > 0) {
    size_t room = max - b->chunk_len;
    size_t take = len < room ? len : room;
    int boundary = 0;
    size_t used = chunker_scan(b->chunker, p, take, &boundary);
    memcpy(b->chunk_buf + b->chunk_len, p, used);
    b->chunk_len += used;
    p += used;
    len -= used;
    if (boundary || b->chunk_len == max) {
      if (!boundary)
        chunker_reset(b->chunker);
      if (submit_chunk(b) != 0)
        return ENGINE_ERROR;
    }
  }
  return is_stopping(b) ? ENGINE_ERROR : ENGINE_OK;
}

static int em_item_end(const struct engine_emitter *em, int status, const char *final_meta,
                       const char *message) {
  struct bk *b = em_bk(em);
  struct bk_item *it = b->cur;
  struct bk_source *s = &b->sources[b->cur_source];
  if (!it) {
    int refused = b->refusing;
    b->refusing = 0;
    return refused && !is_stopping(b) ? ENGINE_OK : ENGINE_ERROR;
  }
  int rc = ENGINE_OK;
  if (status == ENGINE_OK && submit_chunk(b) != 0)
    rc = ENGINE_ERROR;
  if (final_meta && status == ENGINE_OK) {
    json_error_t je;
    json_t *m = json_loads(final_meta, 0, &je);
    if (json_is_object(m)) {
      json_decref(it->meta);
      it->meta = m;
      it->meta_from_parent = 0;
      free(it->line);
      it->line = NULL;
    } else {
      json_decref(m);
    }
  }
  if (status != ENGINE_OK || rc != ENGINE_OK) {
    if (!is_stopping(b)) {
      add_warning(b, s, it->name, it->name_len, message ? message : "failed");
      pthread_mutex_lock(&b->lock);
      s->failed_items++;
      pthread_mutex_unlock(&b->lock);
    }
    b->chunk_len = 0;
  }
  pthread_mutex_lock(&b->lock);
  it->failed = status != ENGINE_OK || rc != ENGINE_OK;
  it->closed = 1;
  b->cur = NULL;
  finalize_ready(b, s);
  pthread_mutex_unlock(&b->lock);
  return is_stopping(b) ? ENGINE_ERROR : rc;
}

static void em_warn(const struct engine_emitter *em, const char *name, const char *message) {
  struct bk *b = em_bk(em);
  add_warning(b, &b->sources[b->cur_source], name, name ? strlen(name) : 0, message);
}

static int em_mark(const struct engine_emitter *em, const char *key, const char *json_value) {
  struct bk *b = em_bk(em);
  json_error_t je;
  json_t *v = json_loads(json_value ? json_value : "null", JSON_DECODE_ANY, &je);
  if (!v || !key)
    return ENGINE_ERROR;
  pthread_mutex_lock(&b->lock);
  json_object_set_new(b->sources[b->cur_source].marks, key, v);
  pthread_mutex_unlock(&b->lock);
  return ENGINE_OK;
}

/* ---- incremental: the parent snapshot ---------------------------------- */

static void parent_drop_cur(struct bk_source *s) {
  if (s->parent)
    tree_feed_release(s->parent, &s->pe);
  else
    tree_entry_clear(&s->pe);
}

static int em_previous(const struct engine_emitter *em, const char *name, size_t name_len,
                       const char **meta_json) {
  struct bk *b = em_bk(em);
  struct bk_source *s = &b->sources[b->cur_source];
  *meta_json = NULL;
  while (s->has_parent && !s->parent_done) {
    if (!s->pe.item) {
      char *err = NULL;
      int rc = tree_feed_next(s->parent, &s->pe, &err);
      if (rc <= 0) {
        if (rc < 0) {
          log_warn("source '%s': the parent snapshot's tree is unreadable (%s); reading every item "
                   "in full",
                   s->pi->name, err);
          free(err);
        }
        s->parent_done = 1;
        break;
      }
    }
    int c = tree_name_cmp(s->pe.name, s->pe.name_len, name, name_len);
    if (c < 0) {
      parent_drop_cur(s);
      continue;
    }
    if (c > 0)
      return ENGINE_NOT_FOUND; /* the parent's cursor is ahead: keep it */
    *meta_json = s->pe.meta_text;
    return ENGINE_OK;
  }
  return ENGINE_NOT_FOUND;
}

static int em_item_reuse(const struct engine_emitter *em) {
  struct bk *b = em_bk(em);
  struct bk_source *s = &b->sources[b->cur_source];
  struct bk_item *it = b->cur;
  if (!it || !s->pe.item || it->n_submitted > 0 || b->chunk_len > 0 ||
      tree_name_cmp(s->pe.name, s->pe.name_len, it->name, it->name_len) != 0)
    return ENGINE_NOT_FOUND;
  json_t *chunks = json_object_get(s->pe.item, "chunks");
  size_t n = json_array_size(chunks);
  unsigned char(*ids)[32] = xcalloc(n ? n : 1, 32);
  for (size_t i = 0; i < n; i++) {
    const char *hex = json_string_value(json_array_get(chunks, i));
    struct index_entry e;
    /* every chunk must still be in the repository, or the item is read again */
    if (!hex || hex_decode(hex, ids[i], 32) != 0 || !index_get(b->repo->index, ids[i], &e)) {
      free(ids);
      return ENGINE_NOT_FOUND;
    }
  }
  uint64_t size = (uint64_t)json_integer_value(json_object_get(s->pe.item, "size"));
  pthread_mutex_lock(&b->lock);
  free(it->ids);
  it->ids = ids;
  it->ids_cap = n;
  it->n_submitted = it->n_done = n;
  it->size = size;
  const char *ptype = json_string_value(json_object_get(s->pe.item, "type"));
  if (it->meta_from_parent && ptype && strcmp(ptype, item_type_name(it->type)) == 0)
    it->line = xstrdup(s->pe.line);
  b->chunks += n;
  b->reused_items++;
  b->reused_bytes += size;
  pthread_mutex_unlock(&b->lock);
  return ENGINE_OK;
}

static int em_previous_mark(const struct engine_emitter *em, const char *key,
                            const char **json_value) {
  struct bk *b = em_bk(em);
  struct bk_source *s = &b->sources[b->cur_source];
  *json_value = NULL;
  json_t *v = key ? json_object_get(s->parent_marks, key) : NULL;
  if (!v)
    return ENGINE_NOT_FOUND;
  free(s->pmark);
  s->pmark = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  *json_value = s->pmark;
  return s->pmark ? ENGINE_OK : ENGINE_ERROR;
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
    set_fatal(b, xasprintf("unable to read back the item tree spool file: %s", strerror(errno)));
    return -1;
  }
  struct bk_item *it = new_item(b, "(tree)", 6, ENGINE_ITEM_STREAM);
  it->is_tree = 1;
  enqueue_item(b, it);
  struct engine_emitter em = {sizeof(em), b, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  static const size_t bufsz = 1024 * 1024;
  unsigned char *buf = xmalloc(bufsz);
  size_t n;
  int rc = 0;
  while ((n = fread(buf, 1, bufsz, s->tree)) > 0)
    if (em_item_write(&em, buf, n) != ENGINE_OK) {
      rc = -1;
      break;
    }
  free(buf);
  if (rc == 0 && ferror(s->tree)) {
    set_fatal(b, xasprintf("unable to read the item tree spool file: %s", strerror(errno)));
    rc = -1;
  }
  if (rc == 0 && submit_chunk(b) != 0)
    rc = -1;
  pthread_mutex_lock(&b->lock);
  it->closed = 1;
  b->cur = NULL;
  finalize_ready(b, s);
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
  struct engine_emitter em = {sizeof(em), b,       em_item_begin, em_item_write, em_item_end,
                              em_warn,    em_mark, em_previous,   em_item_reuse, em_previous_mark};
  for (size_t i = 0; i < b->n_sources && !is_stopping(b); i++) {
    struct bk_source *s = &b->sources[i];
    b->cur_source = i;
    host_clear_error(s->pi->host);
    int rc = s->pi->plugin->source->backup(s->pi->inst, &em);
    if (b->cur) { /* the plugin returned in the middle of an item */
      em_item_end(&em, ENGINE_ERROR, NULL, "source returned without ending the item");
    }
    if (rc != ENGINE_OK && !is_stopping(b)) {
      const char *msg = host_last_error(s->pi->host);
      s->source_error = 1;
      s->error = xstrdup(msg[0] ? msg : "the source failed");
      log_error("source '%s' failed: %s", s->pi->name, s->error);
    }
    wait_until(b, source_drained, s);
    if (is_stopping(b))
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

static json_t *source_manifest(struct bk_source *s) {
  const struct engine_plugin *p = s->pi->plugin;
  return json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:O, s:O, s:s?}", "name", s->pi->name,
                   "type", p->name, "plugin_version", p->version, "tree",
                   s->tree_ids ? json_incref(s->tree_ids) : json_array(), "tree_size",
                   (json_int_t)s->tree_size, "items", (json_int_t)s->items, "bytes",
                   (json_int_t)s->bytes, "failed_items", (json_int_t)s->failed_items, "marks",
                   s->marks, "warnings", s->warnings, "error", s->error);
}

int backup_run(const struct backup_opts *o, struct backup_result *res, char **err) {
  memset(res, 0, sizeof(*res));
  struct bk *b = xcalloc(1, sizeof(*b));
  b->o = o;
  b->repo = o->repo;
  b->limit = o->max_inflight ? o->max_inflight : DEFAULT_INFLIGHT;
  if (b->limit < 2ull * o->repo->chunker.max_size)
    b->limit = 2ull * o->repo->chunker.max_size;
  pthread_mutex_init(&b->lock, NULL);
  b->index_ids = json_array();
  pthread_cond_init(&b->cond, NULL);
  pthread_mutex_init(&b->pack_mu, NULL);
  b->n_sources = o->pipeline->n_sources;
  b->sources = xcalloc(b->n_sources, sizeof(*b->sources));
  int rc = -1;
  for (size_t i = 0; i < b->n_sources; i++) {
    b->sources[i].pi = o->sources[i];
    b->sources[i].warnings = json_array();
    b->sources[i].marks = json_object();
    b->sources[i].tree = tmpfile();
    size_t k;
    json_t *ps;
    json_array_foreach(o->parent ? json_object_get(o->parent, "sources") : NULL, k, ps) {
      if (strcmp(json_string_value(json_object_get(ps, "name")), o->sources[i]->name) == 0 &&
          strcmp(json_string_value(json_object_get(ps, "type")), o->sources[i]->plugin->name) ==
              0 &&
          json_array_size(json_object_get(ps, "tree")) > 0) {
        b->sources[i].parent =
            tree_feed_start(o->repo, json_object_get(ps, "tree"), TREE_FEED_FULL);
        b->sources[i].has_parent = 1;
        b->sources[i].parent_bytes = (uint64_t)json_integer_value(json_object_get(ps, "bytes"));
        b->sources[i].parent_marks = json_object_get(ps, "marks");
      }
    }
    if (!b->sources[i].tree) {
      *err = xasprintf("unable to create a temporary file for the item tree: %s", strerror(errno));
      goto out;
    }
  }
  if (chunker_new(&o->repo->chunker, &b->chunker) != 0) {
    *err = xstrdup("invalid chunker parameters");
    goto out;
  }
  {
    struct chunker_params cp = o->repo->chunker;
    cp.seed = o->repo->chunker_seed;
    chunker_free(b->chunker);
    b->chunker = NULL;
    if (chunker_new(&cp, &b->chunker) != 0) {
      *err = xstrdup("invalid chunker parameters");
      goto out;
    }
  }
  b->chunk_buf = xmalloc(o->repo->chunker.max_size);

  int64_t t0 = (int64_t)time(NULL);
  b->started_ms = (int64_t)uv_hrtime() / 1000000;
  uv_loop_init(&b->loop);
  pool_init(&b->loop);
  uv_async_init(&b->loop, &b->finish, on_finish);
  b->finish.data = b;
  b->progress = progress_new(o->progress);
  if (o->progress) {
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
  int64_t t1 = (int64_t)time(NULL);

  res->seconds = ((double)((int64_t)uv_hrtime() / 1000000 - b->started_ms)) / 1000.0;
  if (b->fatal || cancel_requested()) {
    *err = b->fatal ? xstrdup(b->fatal)
                    : xstrdup("interrupted; no snapshot was written (the repository is unchanged "
                              "apart from unreferenced data)");
    goto out;
  }
  /* Every source failed as a whole: nothing worth a snapshot. */
  size_t failed_sources = 0;
  for (size_t i = 0; i < b->n_sources; i++)
    failed_sources += b->sources[i].source_error;
  if (failed_sources == b->n_sources) {
    *err = xasprintf("every source failed (%s); no snapshot was written", b->sources[0].error);
    goto out;
  }

  int partial = 0;
  json_t *warnings = json_array();
  json_t *srcs = json_array();
  for (size_t i = 0; i < b->n_sources; i++) {
    struct bk_source *s = &b->sources[i];
    if (json_array_size(s->warnings) > 0 || s->source_error || s->failed_items)
      partial = 1;
    size_t k;
    json_t *w;
    json_array_foreach(s->warnings, k, w) {
      json_t *c = json_deep_copy(w);
      json_object_set_new(c, "source", json_string(s->pi->name));
      json_array_append_new(warnings, c);
    }
    json_array_append_new(srcs, source_manifest(s));
  }
  for (size_t i = 0; i < o->repo->n_sinks; i++)
    if (o->repo->sinks[i].failed)
      partial = 1;
  if (json_array_size(o->skipped_sinks) > 0)
    partial = 1;

  if (!o->dry_run) {
    char index_id[65] = "";
    if (b->itext.packs > 0) { /* the rest of the run's index, after every pack */
      size_t len;
      char *text = index_text_finish(&b->itext, &len);
      int irc = repo_save_text(o->repo, "index", text, len, index_id, err);
      free(text);
      if (irc != 0) {
        json_decref(warnings);
        json_decref(srcs);
        goto out;
      }
      json_array_append_new(b->index_ids, json_string(index_id));
      index_note_saved(o->repo, index_id);
    }
    index_cache_refresh(o->repo);
    size_t n_ids = json_array_size(b->index_ids);
    if (n_ids > 0)
      snprintf(index_id, sizeof(index_id), "%s",
               json_string_value(json_array_get(b->index_ids, n_ids - 1)));
    char host[SYS_NAME_MAX], user[SYS_NAME_MAX];
    sys_hostname(host);
    sys_username(user);
    char *ts = iso_time(o->time_override ? o->time_override : t0);
    char *te = iso_time(o->time_override ? o->time_override + (t1 - t0) : t1);
    json_t *tags = json_array();
    for (size_t i = 0; i < o->pipeline->n_tags; i++)
      json_array_append_new(tags, json_string(o->pipeline->tags[i]));
    json_t *missed = o->skipped_sinks ? json_deep_copy(o->skipped_sinks) : json_array();
    for (size_t i = 0; i < o->repo->n_sinks; i++)
      if (o->repo->sinks[i].failed)
        json_array_append_new(missed, json_string(o->repo->sinks[i].pi->name));
    json_t *m = json_pack(
        "{s:i, s:s, s:s, s:s, s:s, s:s, s:f, s:s, s:s, s:s, s:o, s:o, s:{s:s, s:i}, s:o, s:{s:I, "
        "s:I, s:I, s:I, "
        "s:I, s:I, s:I, s:I, s:I}, s:O, s:o, s:s?}",
        "version", 1, "pipeline", o->pipeline->name, "hostname", host, "username", user, "time", ts,
        "time_end", te, "duration_seconds", res->seconds, "engine_version", ENGINE_VERSION,
        "status", partial ? "partial" : "complete", "repository", o->repo->id, "tags", tags,
        "sources", srcs, "compression", "algorithm", compress_algo_name(o->repo->compress_algo),
        "level", o->repo->compress_level, "index", json_string(index_id), "stats", "items",
        (json_int_t)b->items, "bytes_read", (json_int_t)b->bytes_read, "chunks",
        (json_int_t)b->chunks, "new_chunks", (json_int_t)b->new_chunks, "new_bytes",
        (json_int_t)b->new_bytes, "stored_bytes", (json_int_t)b->stored_bytes, "packs",
        (json_int_t)b->packs, "reused_items", (json_int_t)b->reused_items, "reused_bytes",
        (json_int_t)b->reused_bytes, "warnings", warnings, "sinks_missed", missed, "parent",
        o->parent ? json_string_value(json_object_get(o->parent, "id")) : NULL);
    free(ts);
    free(te);
    if (!m) {
      *err = xstrdup("unable to build the snapshot manifest");
      json_decref(warnings);
      goto out;
    }
    /* wall-clock creation time in ns: orders snapshots made within one second */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    json_object_set_new(m, "created_ns",
                        json_integer((json_int_t)now.tv_sec * 1000000000 + now.tv_nsec));
    json_object_set(m, "indexes", b->index_ids);
    int src = repo_save_json(o->repo, "snapshot", m, res->snapshot_id, err);
    json_decref(m);
    if (src != 0) {
      json_decref(warnings);
      goto out;
    }
  } else {
    json_decref(srcs);
  }
  res->partial = partial;
  res->warnings = warnings;
  res->items = b->items;
  res->bytes_read = b->bytes_read;
  res->chunks = b->chunks;
  res->new_chunks = b->new_chunks;
  res->new_bytes = b->new_bytes;
  res->stored_bytes = b->stored_bytes;
  res->packs = b->packs;
  res->reused_items = b->reused_items;
  res->reused_bytes = b->reused_bytes;
  rc = 0;
out:
  for (size_t i = 0; i < b->n_sources; i++) {
    struct bk_source *s = &b->sources[i];
    if (s->tree)
      fclose(s->tree);
    while (s->head) {
      struct bk_item *n = s->head->next;
      item_free(s->head);
      s->head = n;
    }
    json_decref(s->warnings);
    json_decref(s->marks);
    json_decref(s->tree_ids);
    free(s->error);
    parent_drop_cur(s);
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
  return rc;
}
