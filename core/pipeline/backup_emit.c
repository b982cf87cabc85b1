/* The emitter of the backup pipeline: what a source plugin calls for each
 * item (begin, write, end, warn, mark) and, in an incremental run, the
 * parent snapshot's tree read in step with the walk (previous, item_reuse,
 * previous_mark), and chunk cuts at the item's structure (item_cut). Runs on
 * the source thread. */
#include <stdlib.h>
#include <string.h>

#include <fnmatch.h>

#include "chunker/fastcdc.h"
#include "repo/keys2.h"
#include "pipeline/backup_int.h"
#include "repo/tree.h"
#include "util/log.h"

/* ---- the emitter -------------------------------------------------------- */

int bk_wanted(struct bk_source *s, const char *name, size_t name_len) {
  if (!s->globs)
    return 1;
  char *n = xmalloc(name_len + 1);
  memcpy(n, name, name_len);
  n[name_len] = '\0';
  int any = 0;
  for (size_t i = 0; i < s->n_globs; i++)
    if (selection_match(s->globs[i], n)) {
      s->matched[i]++;
      any = 1;
    }
  free(n);
  return any;
}

static struct bk *em_bk(const struct engine_emitter *em) {
  return em->ctx;
}

static void add_warning(struct bk *b, struct bk_source *s, const char *name, size_t name_len,
                        const char *msg) {
  char *pn = name ? printable_name(name, name_len) : xstrdup("");
  log_warn("source '%s': %s%s%s", s->pi->name, pn, name ? ": " : "", msg ? msg : "failed");
  free(pn);
  pthread_mutex_lock(&b->lock);
  snapshot_note_add(&s->warnings, &s->n_warnings, NULL, name, name_len, msg ? msg : "failed");
  pthread_mutex_unlock(&b->lock);
}

struct bk_item *bk_item_begin(struct bk *b, const char *name, size_t name_len, int type,
                              int is_tree) {
  struct bk_item *it = xcalloc(1, sizeof(*it));
  it->name = xmalloc(name_len + 1);
  memcpy(it->name, name, name_len);
  it->name[name_len] = '\0';
  it->name_len = name_len;
  it->type = type;
  it->source = (int)b->cur_source;
  it->is_tree = is_tree;
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
  return it;
}

/* The source gives its metadata in the tree's canonical form (ABI 1.9). */
static int canonical_meta(const struct bk_source *s) {
  const struct engine_source_ops *ops = s->pi->plugin->source;
  return ENGINE_HAS_FIELD(ops, struct engine_source_ops, capabilities) &&
         (ops->capabilities & ENGINE_SOURCE_CAP_CANONICAL_META);
}

static int em_item_begin(const struct engine_emitter *em, const struct engine_item *item) {
  struct bk *b = em_bk(em);
  struct bk_source *s = &b->sources[b->cur_source];
  if (bk_is_stopping(b))
    return ENGINE_ERROR;
  if (b->cur) {
    add_warning(b, s, b->cur->name, b->cur->name_len,
                "item_begin before item_end (plugin bug); item dropped");
    return ENGINE_ERROR;
  }
  b->refusing = b->skipping = 0;
  if (s->globs && !bk_wanted(s, item->name, item->name_len)) {
    /* not selected by --only: not stored, not a failure */
    b->refusing = b->skipping = 1;
    return ENGINE_OK;
  }
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
  struct bk_item *it = bk_item_begin(b, item->name, item->name_len, item->type, 0);
  it->meta = meta;
  it->meta_from_parent = from_parent;
  if (item->meta_json && canonical_meta(s))
    it->meta_text = bk_meta_text(item->meta_json);
  return bk_item_tenant(b, s, it) == 0 ? ENGINE_OK : ENGINE_ERROR;
}

/* Does glob match name or one of the directories above it? */
static int glob_covers(const char *glob, const char *name) {
  if (fnmatch(glob, name, 0) == 0)
    return 1;
  char *p = xstrdup(name);
  int hit = 0;
  for (char *s = strrchr(p, '/'); s && !hit; s = strrchr(p, '/')) {
    *s = '\0';
    hit = fnmatch(glob, p, 0) == 0;
  }
  free(p);
  return hit;
}

/* The tenant name of an item: its metadata's "tenant" (a source that
 * declares tenants), else the first tenant_of rule matching SOURCE/NAME
 * (the glob matches the name or a directory above it, as --only does). */
static const char *tenant_name(const struct bk *b, const struct bk_source *s,
                               const struct bk_item *it, char **err) {
  json_t *t = it->meta ? json_object_get(it->meta, "tenant") : NULL;
  if (t) {
    const char *v = json_string_value(t);
    if (!v || !v[0] || strlen(v) > 128 || strchr(v, '/') || strchr(v, '\n')) {
      *err = xasprintf("plugin '%s' gave item '%s' a tenant that is not a name (1 to 128 "
                       "characters, no '/')",
                       s->pi->plugin->name, it->name);
      return NULL;
    }
    return v;
  }
  const struct pipeline *p = b->o->pipeline;
  for (size_t i = 0; i < p->n_tenant_of; i++) {
    const struct pipeline_tenant_rule *r = &p->tenant_of[i];
    if (strcmp(r->source, s->pi->name) != 0)
      continue;
    if (glob_covers(r->glob, it->name))
      return r->tenant;
  }
  return NULL;
}

int bk_item_tenant(struct bk *b, struct bk_source *s, struct bk_item *it) {
  if (!b->o->pipeline->encrypt_per_tenant)
    return 0;
  char *err = NULL;
  const char *name = tenant_name(b, s, it, &err);
  if (!name && !err)
    return 0; /* shared: the repository's keys */
  it->tenant = name ? keys2_tenant_get(b->repo, name, !b->o->dry_run, &err) : NULL;
  if (!it->tenant) {
    bk_set_fatal(b, xasprintf("tenant '%s': %s", name ? name : "?", err));
    free(err);
    return -1;
  }
  if (!s->tenants)
    s->tenants = json_array();
  size_t i;
  json_t *v;
  int seen = 0;
  json_array_foreach(s->tenants, i, v) seen |= strcmp(json_string_value(v), name) == 0;
  if (!seen)
    json_array_append_new(s->tenants, json_string(name));
  return 0;
}

int bk_item_write(struct bk *b, const void *buf, size_t len) {
  if (!b->cur)
    return b->refusing && !bk_is_stopping(b) ? ENGINE_OK : ENGINE_ERROR;
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
      if (bk_submit_chunk(b) != 0)
        return ENGINE_ERROR;
    }
  }
  return bk_is_stopping(b) ? ENGINE_ERROR : ENGINE_OK;
}

static int em_item_write(const struct engine_emitter *em, const void *buf, size_t len) {
  return bk_item_write(em_bk(em), buf, len);
}

/* ABI 1.6: the plugin ends the current chunk here (at a boundary of the
 * item's structure); the chunker starts afresh with the next byte, as at the
 * start of a stream, so what follows is cut the same way whatever came
 * before it. */
static int em_item_cut(const struct engine_emitter *em) {
  struct bk *b = em_bk(em);
  if (!b->cur)
    return b->refusing && !bk_is_stopping(b) ? ENGINE_OK : ENGINE_ERROR;
  if (b->chunk_len > 0) {
    chunker_reset(b->chunker);
    if (bk_submit_chunk(b) != 0)
      return ENGINE_ERROR;
  }
  return bk_is_stopping(b) ? ENGINE_ERROR : ENGINE_OK;
}

static int em_item_end(const struct engine_emitter *em, int status, const char *final_meta,
                       const char *message) {
  struct bk *b = em_bk(em);
  struct bk_item *it = b->cur;
  struct bk_source *s = &b->sources[b->cur_source];
  if (!it) {
    int refused = b->refusing;
    b->refusing = 0;
    return refused && !bk_is_stopping(b) ? ENGINE_OK : ENGINE_ERROR;
  }
  int rc = ENGINE_OK;
  if (status == ENGINE_OK && bk_submit_chunk(b) != 0)
    rc = ENGINE_ERROR;
  if (final_meta && status == ENGINE_OK) {
    json_error_t je;
    json_t *m = json_loads(final_meta, 0, &je);
    if (json_is_object(m)) {
      json_decref(it->meta);
      it->meta = m;
      it->meta_from_parent = 0;
      free(it->meta_text);
      it->meta_text = canonical_meta(s) ? bk_meta_text(final_meta) : NULL;
      free(it->line);
      it->line = NULL;
    } else {
      json_decref(m);
    }
  }
  if (status != ENGINE_OK || rc != ENGINE_OK) {
    if (!bk_is_stopping(b)) {
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
  bk_finalize_ready(b, s);
  pthread_mutex_unlock(&b->lock);
  return bk_is_stopping(b) ? ENGINE_ERROR : rc;
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

void bk_parent_drop(struct bk_source *s) {
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
      bk_parent_drop(s);
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
  if (!it && b->skipping)
    return ENGINE_OK; /* not selected: its content is not needed */
  if (!it || !s->pe.item || it->n_submitted > 0 || b->chunk_len > 0 ||
      tree_name_cmp(s->pe.name, s->pe.name_len, it->name, it->name_len) != 0)
    return ENGINE_NOT_FOUND;
  /* per_tenant: the parent's chunks are reused only under a live key of
   * the item's tenant (a shredded key's data is gone; an item that moved
   * between tenants, or into one, is stored again under its tenant's key) */
  const char *pk = json_string_value(json_object_get(s->pe.item, "tenant_key"));
  const struct repo_tenant *pt = keys2_item_tenant(b->repo, s->pe.item);
  if (pk && (!pt || pt->shredded))
    return ENGINE_NOT_FOUND;
  if ((pt == NULL) != (it->tenant == NULL) || (pt && strcmp(pt->name, it->tenant->name) != 0))
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
  it->tenant = pt; /* the key its chunks are under, maybe an older one of the tenant */
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

void bk_emitter(struct bk *b, struct engine_emitter *em) {
  *em = (struct engine_emitter){
      sizeof(*em), b,           em_item_begin, em_item_write,    em_item_end, em_warn,
      em_mark,     em_previous, em_item_reuse, em_previous_mark, em_item_cut};
}
