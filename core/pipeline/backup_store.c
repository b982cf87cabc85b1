/* The backup pipeline's storing side (backup_int.h): chunk jobs on the pool
 * (keyed id, dedup claim, compress, seal straight into the pack being
 * filled), packs stored by upload jobs, the run's index written in batches
 * as packs are stored, and items finalised into the source's tree spool once
 * all their chunks are done. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/backup_int.h"
#include "repo/journal.h"
#include "repo/keys2.h"
#include "repo/tree.h"
#include "util/cancel.h"
#include "util/log.h"
#include "util/pool.h"

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

void bk_item_free(struct bk_item *it) {
  free(it->name);
  free(it->line);
  free(it->meta_text);
  json_decref(it->meta);
  free(it->ids);
  free(it);
}

char *bk_meta_text(const char *text) {
  /* a line of the tree holds it: no line breaks (JSON allows them between
   * tokens; such text is written as jansson formats the parsed object) */
  return strpbrk(text, "\r\n") ? NULL : xstrdup(text);
}

/* The item's line as jansson writes the whole object (compact, keys
 * sorted); the way for metadata given without its text. */
static char *tree_line_json(const struct bk_item *it, int with_meta) {
  json_t *o = json_object();
  json_set_bytes(o, "name", it->name, it->name_len);
  json_object_set_new(o, "type", json_string(item_type_name(it->type)));
  json_object_set_new(o, "size", json_integer((json_int_t)it->size));
  if (with_meta)
    json_object_set_new(o, "meta", it->meta ? json_incref(it->meta) : json_object());
  if (it->tenant) {
    char kid[17];
    hex_encode(it->tenant->kid, 8, kid);
    json_object_set_new(o, "tenant", json_string(it->tenant->name));
    json_object_set_new(o, "tenant_key", json_string(kid));
  }
  if (with_meta)
    json_object_set_new(o, "chunks",
                        blob_ids_json((const unsigned char(*)[32])it->ids, it->n_submitted));
  char *line = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  return line;
}

/* The same line with the source's metadata text in place, for a source
 * whose text is in the tree's form already (ENGINE_SOURCE_CAP_CANONICAL_META:
 * jansson's compact sorted output): "chunks" and "meta" sort before every
 * other key, so the line is {"chunks":[...],"meta":TEXT, then the rest of
 * the object as jansson writes it, the bytes tree_line_json would give.
 * Writing each item's parsed metadata out again was an eighth of the CPU
 * time of a backup of small files (docs/PERFORMANCE.md). */
static char *tree_line_spliced(const struct bk_item *it) {
  char *rest = tree_line_json(it, 0); /* {"name":..., ...} */
  if (!rest || rest[0] != '{' || rest[1] == '}') {
    free(rest);
    return NULL;
  }
  size_t mlen = strlen(it->meta_text), rlen = strlen(rest);
  size_t cap = 16 + it->n_submitted * 67 + 9 + mlen + 1 + rlen + 1;
  char *line = xmalloc(cap), *p = line;
  memcpy(p, "{\"chunks\":[", 11);
  p += 11;
  for (size_t i = 0; i < it->n_submitted; i++) {
    if (i)
      *p++ = ',';
    *p++ = '"';
    hex_encode(it->ids[i], 32, p);
    p += 64;
    *p++ = '"';
  }
  memcpy(p, "],\"meta\":", 9);
  p += 9;
  memcpy(p, it->meta_text, mlen);
  p += mlen;
  *p++ = ',';
  memcpy(p, rest + 1, rlen); /* with its closing brace and NUL */
  free(rest);
  return line;
}

/* The item's line in the source's tree spool: for an item reused unchanged,
 * its parent's line as it was; otherwise built from the item. */
static void write_tree_line(struct bk *b, struct bk_source *s, struct bk_item *it) {
  char *line = it->line;
  if (!line && it->meta_text)
    line = tree_line_spliced(it);
  if (!line)
    line = tree_line_json(it, 1);
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
  /* a new tenant's key is in a stored keyring before any of its packs */
  if (u->tenant && u->tenant->unsaved && keys2_tenants_flush(r, &u->err) != 0)
    return;
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

static struct bk_upload *new_pack(struct bk *b, const struct repo_tenant *t) {
  struct bk_upload *u = xcalloc(1, sizeof(*u));
  u->bk = b;
  packer_init(&u->pk);
  packer_reserve(&u->pk, pack_capacity(b->repo));
  u->tenant = t;
  if (packer_init_key_tenant(&u->pk, b->repo, t) != 0)
    u->failed = 1; /* its blobs are not sealed: the run fails when it is stored */
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
  for (size_t i = 0; i < BK_TENANT_PACKS; i++)
    if (b->tfill[i].u == u)
      b->tfill[i] = (struct bk_tenant_pack){0};
  pthread_mutex_lock(&b->lock);
  b->uploads_outstanding++;
  pthread_mutex_unlock(&b->lock);
}

/* The pack that takes tenant t's next blob (under pack_mu). With every
 * place taken by other tenants, the least recently used pack is closed
 * (*evicted: store it once its writers are done, as the caller does). */
static struct bk_upload *tenant_pack(struct bk *b, const struct repo_tenant *t,
                                     struct bk_upload **evicted) {
  size_t slot = 0;
  for (size_t i = 0; i < BK_TENANT_PACKS; i++) {
    if (b->tfill[i].u && b->tfill[i].tenant == t) {
      b->tfill[i].used = ++b->tfill_clock;
      return b->tfill[i].u;
    }
    if (!b->tfill[i].u || (b->tfill[slot].u && b->tfill[i].used < b->tfill[slot].used))
      slot = i;
  }
  if (b->tfill[slot].u) {
    struct bk_upload *old = b->tfill[slot].u;
    close_pack(b, old);
    if (old->writers == 0)
      *evicted = old;
  }
  b->tfill[slot] = (struct bk_tenant_pack){t, new_pack(b, t), ++b->tfill_clock};
  return b->tfill[slot].u;
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
  const struct repo_tenant *t = j->item->tenant;
  struct bk_upload *evicted = NULL;
  pthread_mutex_lock(&b->pack_mu);
  struct bk_upload *u = t            ? tenant_pack(b, t, &evicted)
                        : b->filling ? b->filling
                                     : (b->filling = new_pack(b, NULL));
  /* a pack takes blobs while below pack_size and was sized for one more */
  unsigned char *slot = packer_reserve_blob(&u->pk, j->id, j->type, sl, (uint32_t)j->len);
  u->writers++;
  if (u->pk.len >= r->pack_size || u->pk.n >= PACK_MAX_BLOBS)
    close_pack(b, u);
  pthread_mutex_unlock(&b->pack_mu);
  if (evicted)
    submit_pack(evicted);
  int rc =
      slot ? repo_blob_seal(r, packer_key(&u->pk, r), j->id, j->type, plain, plain_len, slot) : -1;
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
  repo_blob_id_key(r, j->item->tenant ? j->item->tenant->idk : NULL, j->data, j->len, j->id);
  /* a write-only host keeps its trees for its next run's parent */
  if (r->write_only && j->type == BLOB_TREE && !j->bk->o->dry_run)
    journal_put_tree(r, j->id, j->data, j->len);
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
    struct bk_upload *last[BK_TENANT_PACKS + 1];
    size_t n = 0;
    if (b->filling)
      last[n++] = b->filling;
    for (size_t i = 0; i < BK_TENANT_PACKS; i++)
      if (b->tfill[i].u)
        last[n++] = b->tfill[i].u;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
      if (last[i]->pk.n > 0) {
        close_pack(b, last[i]);
        last[k++] = last[i];
      } else { /* never took a blob */
        close_pack(b, last[i]);
        pthread_mutex_lock(&b->lock);
        b->uploads_outstanding--;
        pthread_mutex_unlock(&b->lock);
        packer_free(&last[i]->pk);
        free(last[i]);
      }
    }
    pthread_mutex_unlock(&b->pack_mu);
    for (size_t i = 0; i < k; i++)
      submit_pack(last[i]);
  }
  pthread_mutex_lock(&b->lock);
  b->flushed = 1;
  pthread_cond_broadcast(&b->cond);
  pthread_mutex_unlock(&b->lock);
}

void bk_flush(struct bk *b) {
  pool_submit(noop_work, flush_done, b);
}
