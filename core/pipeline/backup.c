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
 *
 * This file sets the run up, runs the source thread and the loop, and
 * writes the manifest; the emitter is in backup_emit.c, the chunk jobs,
 * packs and index batches in backup_store.c (state: backup_int.h).
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
#include "repo/keys2.h"
#include "repo/tree.h"
#include "compress/compress.h"
#include "util/cancel.h"
#include "util/log.h"
#include "util/pool.h"
#include "util/sysinfo.h"

/* Raw bytes of chunks being processed. A few chunks per worker keep every
 * core busy; more only costs memory. */
#define DEFAULT_INFLIGHT (16u * 1024u * 1024u)
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

static void source_thread(void *arg) {
  struct bk *b = arg;
  struct engine_emitter em;
  bk_emitter(b, &em);
  for (size_t i = 0; i < b->n_sources && !bk_is_stopping(b); i++) {
    struct bk_source *s = &b->sources[i];
    if (!s->selected)
      continue;
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
  bk_flush(b);
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
    if (!b->sources[i].selected)
      continue;
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
    json_decref(s->tenants);
    free(s->globs);
    free(s->matched);
  }
  free(b->sources);
  for (size_t i = 0; i < b->n_only; i++)
    selection_free(&b->only[i]);
  free(b->only);
  chunker_free(b->chunker);
  free(b->chunk_buf);
  for (size_t i = 0; i < b->n_spare; i++)
    free(b->spare[i]);
  if (b->filling) { /* a run that failed: its last pack was never stored */
    packer_free(&b->filling->pk);
    free(b->filling);
  }
  for (size_t i = 0; i < BK_TENANT_PACKS; i++)
    if (b->tfill[i].u) { /* the same, one tenant's */
      packer_free(&b->tfill[i].u->pk);
      free(b->tfill[i].u);
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

/* --only: which sources run and which of their items are stored. Every
 * selection must name a source of the pipeline. */
static int bk_select(struct bk *b, char **err) {
  const struct backup_opts *o = b->o;
  for (size_t i = 0; i < b->n_sources; i++)
    b->sources[i].selected = o->n_only == 0;
  if (o->n_only == 0)
    return 0;
  b->only = xcalloc(o->n_only, sizeof(*b->only));
  for (size_t k = 0; k < o->n_only; k++) {
    if (selection_parse(o->only[k], &b->only[k], err) != 0)
      return -1;
    b->n_only++;
    struct bk_source *s = NULL;
    for (size_t i = 0; i < b->n_sources && !s; i++)
      if (strcmp(b->sources[i].pi->name, b->only[k].source) == 0)
        s = &b->sources[i];
    if (!s) {
      char *names = xstrdup("");
      for (size_t i = 0; i < b->n_sources; i++) {
        char *n = xasprintf("%s%s%s", names, i ? ", " : "", b->sources[i].pi->name);
        free(names);
        names = n;
      }
      *err = xasprintf("--only '%s': the pipeline has no source named '%s' (its sources: %s)",
                       o->only[k], b->only[k].source, names);
      free(names);
      return -1;
    }
    /* a glob in the source's own terms (ABI 1.8 select_globs) */
    selection_translate(&b->only[k], s->pi->plugin->source);
    int had_all = s->selected && !s->globs;
    s->selected = 1;
    if (had_all)
      continue;             /* the whole source is selected already */
    if (!b->only[k].glob) { /* the whole source: forget its globs */
      free(s->globs);
      free(s->matched);
      s->globs = NULL;
      s->matched = NULL;
      s->n_globs = 0;
      continue;
    }
    s->globs = xrealloc(s->globs, (s->n_globs + 1) * sizeof(*s->globs));
    s->matched = xrealloc(s->matched, (s->n_globs + 1) * sizeof(*s->matched));
    s->globs[s->n_globs] = &b->only[k];
    s->matched[s->n_globs++] = 0;
  }
  return 0;
}

/* After the run: a glob that selected nothing is an error (a typo must not
 * end in an empty snapshot that looks like a backup). */
static char *bk_unmatched(const struct bk *b) {
  for (size_t i = 0; i < b->n_sources; i++) {
    const struct bk_source *s = &b->sources[i];
    for (size_t k = 0; k < s->n_globs; k++)
      if (s->matched[k] == 0 && !s->source_error) {
        const char *g = s->globs[k]->glob;
        char *reading = selection_reading(s->globs[k]);
        char *e = xasprintf("--only '%s/%s': no item of source '%s' matches '%s'%s%s%s; no "
                            "snapshot was written",
                            s->pi->name, g, s->pi->name, g, reading[0] ? " (" : "", reading,
                            reading[0] ? ")" : "");
        free(reading);
        return e;
      }
  }
  return NULL;
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
  for (size_t i = 0; i < b->n_sources; i++)
    b->sources[i].pi = o->sources[i];
  if (bk_select(b, err) != 0) {
    bk_free(b);
    return NULL;
  }
  for (size_t i = 0; i < b->n_sources; i++) {
    struct bk_source *s = &b->sources[i];
    s->marks = json_object();
    if (!s->selected)
      continue;
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
  ms->tenants = s->tenants ? json_incref(s->tenants) : NULL;
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
    if (b->sources[i].selected)
      manifest_source(m, &b->sources[i]);
  if (o->n_only) {
    json_t *only = json_array();
    for (size_t i = 0; i < o->n_only; i++)
      json_array_append_new(only, json_string(o->only[i]));
    if (!m->extra)
      m->extra = json_object();
    json_object_set_new(m->extra, "only", only);
  }
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
  /* tenants whose items stored no pack (empty files, directories) are in
   * the keyring too before the snapshot names their keys */
  if (r->format >= 2 && !r->write_only && keys2_tenants_flush(r, err) != 0)
    return -1;
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
  size_t failed_sources = 0, n_selected = 0;
  for (size_t i = 0; i < b->n_sources; i++) {
    failed_sources += b->sources[i].source_error;
    n_selected += b->sources[i].selected;
  }
  /* a selection (--only) that matched nothing (only known after the run) */
  char *unmatched = b->fatal || cancel_requested() ? NULL : bk_unmatched(b);
  if (b->fatal || cancel_requested()) {
    *err = b->fatal ? xstrdup(b->fatal)
                    : xstrdup("interrupted; no snapshot was written (the repository is unchanged "
                              "apart from unreferenced data)");
  } else if (failed_sources == n_selected) {
    /* every source failed as a whole: nothing worth a snapshot */
    const char *first = "the source failed";
    for (size_t i = 0; i < b->n_sources; i++)
      if (b->sources[i].source_error) {
        first = b->sources[i].error;
        break;
      }
    *err = xasprintf("every source failed (%s); no snapshot was written", first);
  } else if (unmatched) {
    *err = unmatched;
    unmatched = NULL;
  } else {
    struct snapshot *m = bk_manifest(b, t0, t1, res->seconds);
    if (o->dry_run || bk_write_snapshot(b, m, err) == 0) {
      bk_result(b, m, res);
      rc = 0;
    }
    snapshot_free(m);
  }
  free(unmatched);
  bk_free(b);
  return rc;
}
