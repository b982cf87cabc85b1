/* Snapshot manifests (snapshot.h): the struct and its JSON both ways, then
 * the snapshots/ objects: save, load with validation, list, find. Manifests
 * are small; listing loads them all (a repository holds thousands, not
 * millions). */
#include "repo/snapshot.h"

#include "repo/journal.h"

#include <stdlib.h>
#include <string.h>

#include "repo/tree.h"
#include "util/log.h"

/* ---- the struct ---------------------------------------------------------- */

struct snapshot *snapshot_new(void) {
  struct snapshot *s = xcalloc(1, sizeof(*s));
  s->version = REPO_FORMAT_VERSION;
  return s;
}

void snapshot_notes_free(struct snapshot_note *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].source);
    free(v[i].item);
    free(v[i].text);
  }
  free(v);
}

static void strings_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static void source_free(struct snapshot_source *src) {
  free(src->name);
  free(src->type);
  free(src->plugin_version);
  free(src->tree);
  json_decref(src->marks);
  snapshot_notes_free(src->warnings, src->n_warnings);
  free(src->error);
  snapshot_notes_free(src->lost_items, src->n_lost_items);
  json_decref(src->extra);
  json_decref(src->tenants);
}

void snapshot_free(struct snapshot *s) {
  if (!s)
    return;
  free(s->repository);
  free(s->pipeline);
  free(s->hostname);
  free(s->username);
  free(s->engine_version);
  free(s->status);
  free(s->parent);
  strings_free(s->tags, s->n_tags);
  free(s->compression);
  free(s->index);
  strings_free(s->indexes, s->n_indexes);
  snapshot_notes_free(s->warnings, s->n_warnings);
  strings_free(s->sinks_missed, s->n_sinks_missed);
  free(s->repaired_from);
  for (size_t i = 0; i < s->n_sources; i++)
    source_free(&s->sources[i]);
  free(s->sources);
  json_decref(s->extra);
  json_decref(s->raw);
  free(s);
}

struct snapshot_source *snapshot_add_source(struct snapshot *s) {
  s->sources = xrealloc(s->sources, (s->n_sources + 1) * sizeof(*s->sources));
  struct snapshot_source *src = &s->sources[s->n_sources++];
  memset(src, 0, sizeof(*src));
  return src;
}

static char *dup_or_null(const char *s) {
  return s ? xstrdup(s) : NULL;
}

void snapshot_note_add(struct snapshot_note **v, size_t *n, const char *source, const char *item,
                       size_t item_len, const char *text) {
  *v = xrealloc(*v, (*n + 1) * sizeof(**v));
  struct snapshot_note *w = &(*v)[(*n)++];
  w->source = dup_or_null(source);
  w->item = NULL;
  w->item_len = item ? item_len : 0;
  if (item) {
    w->item = xmalloc(item_len + 1);
    memcpy(w->item, item, item_len);
    w->item[item_len] = '\0';
  }
  w->text = dup_or_null(text);
}

/* ---- to JSON ------------------------------------------------------------- */

static json_t *string_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

static void set_string(json_t *o, const char *key, const char *s) {
  if (s)
    json_object_set_new(o, key, json_string(s));
}

static void set_uint(json_t *o, const char *key, uint64_t v) {
  json_object_set_new(o, key, json_integer((json_int_t)v));
}

static json_t *strings_json(char *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

/* [{"source"?, "item" or "item_b64"?, text_key?}] */
static json_t *notes_json(const struct snapshot_note *v, size_t n, const char *text_key) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_object();
    set_string(o, "source", v[i].source);
    if (v[i].item)
      json_set_bytes(o, "item", v[i].item, v[i].item_len);
    set_string(o, text_key, v[i].text);
    json_array_append_new(a, o);
  }
  return a;
}

/* Start from the fields this engine does not know, so they are kept. */
static json_t *with_extra(json_t *extra) {
  return extra ? json_deep_copy(extra) : json_object();
}

static json_t *source_json(const struct snapshot_source *src, int repaired) {
  json_t *o = with_extra(src->extra);
  set_string(o, "name", src->name);
  set_string(o, "type", src->type);
  set_string(o, "plugin_version", src->plugin_version);
  json_object_set_new(o, "tree", blob_ids_json((const unsigned char(*)[32])src->tree, src->n_tree));
  set_uint(o, "tree_size", src->tree_size);
  set_uint(o, "items", src->items);
  set_uint(o, "bytes", src->bytes);
  set_uint(o, "failed_items", src->failed_items);
  if (src->marks)
    json_object_set(o, "marks", src->marks);
  if (src->tenants)
    json_object_set(o, "tenants", src->tenants);
  json_object_set_new(o, "warnings", notes_json(src->warnings, src->n_warnings, "message"));
  json_object_set_new(o, "error", string_or_null(src->error));
  if (repaired)
    json_object_set_new(o, "lost_items", notes_json(src->lost_items, src->n_lost_items, "reason"));
  if (src->lost_tree_blobs)
    set_uint(o, "lost_tree_blobs", src->lost_tree_blobs);
  return o;
}

static json_t *stats_json(const struct snapshot_stats *st) {
  json_t *o = json_object();
  set_uint(o, "items", st->items);
  set_uint(o, "bytes_read", st->bytes_read);
  set_uint(o, "chunks", st->chunks);
  set_uint(o, "new_chunks", st->new_chunks);
  set_uint(o, "new_bytes", st->new_bytes);
  set_uint(o, "stored_bytes", st->stored_bytes);
  set_uint(o, "packs", st->packs);
  set_uint(o, "reused_items", st->reused_items);
  set_uint(o, "reused_bytes", st->reused_bytes);
  return o;
}

static void set_time(json_t *o, const char *key, int64_t t) {
  char *text = iso_time(t);
  json_object_set_new(o, key, json_string(text));
  free(text);
}

json_t *snapshot_warnings_json(const struct snapshot *s) {
  return notes_json(s->warnings, s->n_warnings, "message");
}

json_t *snapshot_json(const struct snapshot *s) {
  json_t *m = with_extra(s->extra);
  json_object_set_new(m, "version", json_integer(s->version));
  set_string(m, "repository", s->repository);
  set_string(m, "pipeline", s->pipeline);
  set_string(m, "hostname", s->hostname);
  set_string(m, "username", s->username);
  set_time(m, "time", s->time);
  if (s->time_end)
    set_time(m, "time_end", s->time_end);
  if (s->created_ns)
    json_object_set_new(m, "created_ns", json_integer((json_int_t)s->created_ns));
  json_object_set_new(m, "duration_seconds", json_real(s->duration));
  set_string(m, "engine_version", s->engine_version);
  set_string(m, "status", s->status);
  json_object_set_new(m, "parent", string_or_null(s->parent));
  json_object_set_new(m, "tags", strings_json(s->tags, s->n_tags));
  if (s->compression)
    json_object_set_new(
        m, "compression",
        json_pack("{s:s, s:i}", "algorithm", s->compression, "level", s->compression_level));
  set_string(m, "index", s->index);
  if (s->has_indexes)
    json_object_set_new(m, "indexes", strings_json(s->indexes, s->n_indexes));
  set_string(m, "repaired_from", s->repaired_from);
  json_t *srcs = json_array();
  for (size_t i = 0; i < s->n_sources; i++)
    json_array_append_new(srcs, source_json(&s->sources[i], s->repaired_from != NULL));
  json_object_set_new(m, "sources", srcs);
  json_object_set_new(m, "stats", stats_json(&s->stats));
  json_object_set_new(m, "warnings", snapshot_warnings_json(s));
  json_object_set_new(m, "sinks_missed", strings_json(s->sinks_missed, s->n_sinks_missed));
  return m;
}

/* ---- from JSON ----------------------------------------------------------- */

static int is_hex64(const char *s) {
  return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* What restore, check and prune rely on; anything else is informational. */
static const char *manifest_problem(json_t *m, const char *repo_id) {
  if (!json_is_object(m))
    return "the manifest is not a JSON object";
  json_t *v = json_object_get(m, "version");
  if (!json_is_integer(v))
    return "the manifest has no format version";
  if (json_integer_value(v) != REPO_FORMAT_VERSION)
    return "the manifest has a format version this engine does not read";
  const char *repo = json_string_value(json_object_get(m, "repository"));
  if (!repo || strcmp(repo, repo_id) != 0)
    return "the manifest belongs to another repository";
  int64_t t;
  const char *time = json_string_value(json_object_get(m, "time"));
  if (!time || parse_iso_time(time, &t) != 0)
    return "the manifest has no valid time";
  json_t *srcs = json_object_get(m, "sources");
  if (!json_is_array(srcs))
    return "the manifest has no sources array";
  size_t i, k;
  json_t *s, *id;
  json_array_foreach(srcs, i, s) {
    if (!json_is_string(json_object_get(s, "name")) || !json_is_string(json_object_get(s, "type")))
      return "a source of the manifest has no name or type";
    json_t *tree = json_object_get(s, "tree");
    if (!json_is_array(tree))
      return "a source of the manifest has no tree";
    json_array_foreach(tree, k, id) {
      if (!is_hex64(json_string_value(id)))
        return "a source's tree holds a malformed blob id";
    }
  }
  return NULL;
}

static const char *const MANIFEST_FIELDS[] = {"version",
                                              "repository",
                                              "pipeline",
                                              "hostname",
                                              "username",
                                              "time",
                                              "time_end",
                                              "created_ns",
                                              "duration_seconds",
                                              "engine_version",
                                              "status",
                                              "parent",
                                              "tags",
                                              "compression",
                                              "index",
                                              "indexes",
                                              "repaired_from",
                                              "sources",
                                              "stats",
                                              "warnings",
                                              "sinks_missed",
                                              "id",
                                              NULL};
static const char *const SOURCE_FIELDS[] = {
    "name",  "type",       "plugin_version",  "tree",    "tree_size",
    "items", "bytes",      "failed_items",    "marks",   "warnings",
    "error", "lost_items", "lost_tree_blobs", "tenants", NULL};

/* The fields of o that are not in known, or NULL when there are none. */
static json_t *unknown_fields(json_t *o, const char *const *known) {
  json_t *extra = NULL;
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    size_t k = 0;
    while (known[k] && strcmp(known[k], key) != 0)
      k++;
    if (known[k])
      continue;
    if (!extra)
      extra = json_object();
    json_object_set(extra, key, v);
  }
  return extra;
}

static char *get_string(json_t *o, const char *key) {
  return dup_or_null(json_string_value(json_object_get(o, key)));
}

static uint64_t get_uint(json_t *o, const char *key) {
  return (uint64_t)json_integer_value(json_object_get(o, key));
}

/* The strings of a JSON array (anything else in it is skipped). */
static char **get_strings(json_t *o, const char *key, size_t *n) {
  json_t *a = json_object_get(o, key);
  char **v = xcalloc(json_array_size(a) + 1, sizeof(*v));
  size_t i;
  json_t *e;
  *n = 0;
  json_array_foreach(a, i, e) {
    if (json_is_string(e))
      v[(*n)++] = xstrdup(json_string_value(e));
  }
  return v;
}

static void get_notes(json_t *o, const char *key, const char *text_key, struct snapshot_note **v,
                      size_t *n) {
  size_t i;
  json_t *w;
  json_array_foreach(json_object_get(o, key), i, w) {
    size_t len = 0;
    char *item = json_get_bytes(w, "item", &len);
    snapshot_note_add(v, n, json_string_value(json_object_get(w, "source")), item, len,
                      json_string_value(json_object_get(w, text_key)));
    free(item);
  }
}

/* A source manifest_problem accepted. */
static void parse_source(json_t *o, struct snapshot_source *src) {
  src->name = get_string(o, "name");
  src->type = get_string(o, "type");
  src->plugin_version = get_string(o, "plugin_version");
  json_t *tree = json_object_get(o, "tree");
  src->n_tree = json_array_size(tree);
  src->tree = xcalloc(src->n_tree ? src->n_tree : 1, 32);
  for (size_t i = 0; i < src->n_tree; i++)
    hex_decode(json_string_value(json_array_get(tree, i)), src->tree[i], 32);
  src->tree_size = get_uint(o, "tree_size");
  src->items = get_uint(o, "items");
  src->bytes = get_uint(o, "bytes");
  src->failed_items = get_uint(o, "failed_items");
  json_t *marks = json_object_get(o, "marks");
  src->marks = marks ? json_incref(marks) : NULL;
  json_t *tenants = json_object_get(o, "tenants");
  src->tenants = json_is_array(tenants) ? json_incref(tenants) : NULL;
  get_notes(o, "warnings", "message", &src->warnings, &src->n_warnings);
  src->error = get_string(o, "error");
  get_notes(o, "lost_items", "reason", &src->lost_items, &src->n_lost_items);
  src->lost_tree_blobs = get_uint(o, "lost_tree_blobs");
  src->extra = unknown_fields(o, SOURCE_FIELDS);
}

static void parse_stats(json_t *o, struct snapshot_stats *st) {
  st->items = get_uint(o, "items");
  st->bytes_read = get_uint(o, "bytes_read");
  st->chunks = get_uint(o, "chunks");
  st->new_chunks = get_uint(o, "new_chunks");
  st->new_bytes = get_uint(o, "new_bytes");
  st->stored_bytes = get_uint(o, "stored_bytes");
  st->packs = get_uint(o, "packs");
  st->reused_items = get_uint(o, "reused_items");
  st->reused_bytes = get_uint(o, "reused_bytes");
}

struct snapshot *snapshot_parse(json_t *m, const char *repo_id, const char **why) {
  *why = manifest_problem(m, repo_id);
  if (*why)
    return NULL;
  struct snapshot *s = snapshot_new();
  s->version = (int)json_integer_value(json_object_get(m, "version"));
  s->repository = get_string(m, "repository");
  s->pipeline = get_string(m, "pipeline");
  s->hostname = get_string(m, "hostname");
  s->username = get_string(m, "username");
  parse_iso_time(json_string_value(json_object_get(m, "time")), &s->time);
  const char *te = json_string_value(json_object_get(m, "time_end"));
  if (!te || parse_iso_time(te, &s->time_end) != 0)
    s->time_end = 0;
  s->created_ns = (int64_t)json_integer_value(json_object_get(m, "created_ns"));
  s->duration = json_number_value(json_object_get(m, "duration_seconds"));
  s->engine_version = get_string(m, "engine_version");
  s->status = get_string(m, "status");
  s->parent = get_string(m, "parent");
  s->tags = get_strings(m, "tags", &s->n_tags);
  json_t *comp = json_object_get(m, "compression");
  s->compression = get_string(comp, "algorithm");
  s->compression_level = (int)json_integer_value(json_object_get(comp, "level"));
  s->index = get_string(m, "index");
  s->has_indexes = json_is_array(json_object_get(m, "indexes"));
  s->indexes = get_strings(m, "indexes", &s->n_indexes);
  parse_stats(json_object_get(m, "stats"), &s->stats);
  get_notes(m, "warnings", "message", &s->warnings, &s->n_warnings);
  s->sinks_missed = get_strings(m, "sinks_missed", &s->n_sinks_missed);
  s->repaired_from = get_string(m, "repaired_from");
  size_t i;
  json_t *src;
  json_array_foreach(json_object_get(m, "sources"), i, src)
      parse_source(src, snapshot_add_source(s));
  s->extra = unknown_fields(m, MANIFEST_FIELDS);
  return s;
}

struct snapshot *snapshot_dup(const struct snapshot *s) {
  json_t *m = snapshot_json(s);
  const char *why = NULL;
  struct snapshot *d = snapshot_parse(m, s->repository ? s->repository : "", &why);
  json_decref(m);
  if (d)
    memcpy(d->id, s->id, sizeof(d->id));
  return d;
}

/* ---- snapshots/ objects -------------------------------------------------- */

int snapshot_save(struct repo *r, struct snapshot *s, char **err) {
  json_t *m = snapshot_json(s);
  int rc = repo_save_json(r, "snapshot", m, s->id, err);
  if (rc == 0 && r->write_only)
    journal_put_snapshot(r, s->id, m);
  json_decref(m);
  return rc;
}

int snapshot_load(struct repo *r, const char *id, struct snapshot **out, char **err) {
  json_t *m;
  if (repo_load_json(r, "snapshot", id, &m, err) != 0)
    return -1;
  const char *why = NULL;
  struct snapshot *s = snapshot_parse(m, r->id, &why);
  if (!s) {
    json_decref(m);
    *err = xasprintf("snapshot 'snapshots/%s': %s", id, why);
    return -1;
  }
  snprintf(s->id, sizeof(s->id), "%s", id);
  json_object_set_new(m, "id", json_string(id));
  s->raw = m;
  *out = s;
  return 0;
}

static int by_time(const void *a, const void *b) {
  const struct snapshot *x = *(struct snapshot *const *)a, *y = *(struct snapshot *const *)b;
  if (x->time != y->time)
    return x->time < y->time ? -1 : 1;
  if (x->created_ns != y->created_ns)
    return x->created_ns < y->created_ns ? -1 : 1;
  return strcmp(x->id, y->id);
}

/* The ids of snapshots/ objects (other names are not snapshots). */
static int list_ids(struct repo *r, json_t **ids, char **err) {
  json_t *names;
  if (repo_list(r, "snapshots/", &names, err) != 0)
    return -1;
  *ids = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(names, i, v) {
    const char *id = json_string_value(json_object_get(v, "name")) + strlen("snapshots/");
    if (is_hex64(id))
      json_array_append_new(*ids, json_string(id));
  }
  json_decref(names);
  return 0;
}

char *snapshot_unreadable_text(json_t *unreadable) {
  char *text = xstrdup("");
  size_t i;
  json_t *u;
  json_array_foreach(unreadable, i, u) {
    /* the error names the object (snapshots/<id>) */
    char *t =
        xasprintf("%s%s  %s", text, i ? "\n" : "", json_string_value(json_object_get(u, "error")));
    free(text);
    text = t;
  }
  return text;
}

void snapshot_list_free(struct snapshot_list *l) {
  for (size_t i = 0; i < l->n; i++)
    snapshot_free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

struct snapshot *snapshot_list_take(struct snapshot_list *l, size_t i) {
  struct snapshot *s = l->v[i];
  l->v[i] = NULL;
  return s;
}

/* A write-only host lists the snapshots of its journal that still exist:
 * the others are sealed to the public key, neither readable nor damaged. */
static int list_write_only(struct repo *r, struct snapshot_list *out, json_t **unreadable,
                           char **err) {
  json_t *ids;
  if (list_ids(r, &ids, err) != 0)
    return -1;
  json_t *ms = journal_snapshots(r, ids);
  json_decref(ids);
  size_t n = json_array_size(ms), i;
  struct snapshot_list l = {xcalloc(n ? n : 1, sizeof(struct snapshot *)), 0};
  json_t *e;
  json_array_foreach(ms, i, e) {
    json_t *m = json_object_get(e, "manifest");
    const char *why = NULL;
    struct snapshot *s = snapshot_parse(m, r->id, &why);
    if (!s)
      continue;
    snprintf(s->id, sizeof(s->id), "%s", json_string_value(json_object_get(e, "id")));
    s->raw = json_incref(m);
    json_object_set(m, "id", json_object_get(e, "id"));
    l.v[l.n++] = s;
  }
  json_decref(ms);
  qsort(l.v, l.n, sizeof(*l.v), by_time);
  if (unreadable)
    *unreadable = json_array();
  *out = l;
  return 0;
}

int snapshot_list(struct repo *r, struct snapshot_list *out, json_t **unreadable, char **err) {
  if (r->write_only)
    return list_write_only(r, out, unreadable, err);
  json_t *ids;
  if (list_ids(r, &ids, err) != 0)
    return -1;
  size_t n = json_array_size(ids);
  struct snapshot_list l = {xcalloc(n ? n : 1, sizeof(struct snapshot *)), 0};
  json_t *bad = json_array();
  for (size_t i = 0; i < n; i++) {
    const char *id = json_string_value(json_array_get(ids, i));
    char *e = NULL;
    if (snapshot_load(r, id, &l.v[l.n], &e) == 0) {
      l.n++;
      continue;
    }
    json_array_append_new(bad, json_pack("{s:s, s:s}", "id", id, "error", e ? e : "unreadable"));
    free(e);
  }
  json_decref(ids);
  qsort(l.v, l.n, sizeof(*l.v), by_time);
  if (!unreadable && json_array_size(bad) > 0) {
    char *text = snapshot_unreadable_text(bad);
    *err = xasprintf("%zu snapshot(s) exist but cannot be read:\n%s\n(run 'engine check'; a "
                     "snapshot that stays unreadable can be dropped with --forget-unreadable)",
                     json_array_size(bad), text);
    free(text);
    json_decref(bad);
    snapshot_list_free(&l);
    return -1;
  }
  if (unreadable)
    *unreadable = bad;
  else
    json_decref(bad);
  *out = l;
  return 0;
}

static int find_latest(struct repo *r, struct snapshot **out, char **err) {
  struct snapshot_list all;
  json_t *bad;
  if (snapshot_list(r, &all, &bad, err) != 0)
    return -1;
  int rc = -1;
  if (json_array_size(bad) > 0) {
    char *text = snapshot_unreadable_text(bad);
    const struct snapshot *newest = all.n ? all.v[all.n - 1] : NULL;
    char *when = newest ? iso_time(newest->time) : NULL;
    char *hint = newest ? xasprintf("the newest readable snapshot is %.8s of %s; restore it by id "
                                    "if that is what you want, ",
                                    newest->id, when)
                        : xstrdup("");
    *err = xasprintf("'latest' cannot be decided: %zu snapshot(s) cannot be read, and any of them "
                     "may be the newest:\n%s\n(%sor run 'engine check')",
                     json_array_size(bad), text, hint);
    free(when);
    free(hint);
    free(text);
  } else if (all.n == 0) {
    *err = xstrdup("the repository has no snapshots yet");
  } else {
    *out = snapshot_list_take(&all, all.n - 1);
    rc = 0;
  }
  snapshot_list_free(&all);
  json_decref(bad);
  return rc;
}

int snapshot_find(struct repo *r, const char *ref, struct snapshot **out, char **err) {
  if (strcmp(ref, "latest") == 0)
    return find_latest(r, out, err);
  size_t rl = strlen(ref);
  if (rl < 4 || rl > 64 || strspn(ref, "0123456789abcdef") != rl) {
    *err = xasprintf("'%s' is not a snapshot id: give 'latest' or at least 4 hex digits of an id",
                     ref);
    return -1;
  }
  json_t *ids;
  if (list_ids(r, &ids, err) != 0)
    return -1;
  size_t matches = 0, i;
  json_t *v;
  const char *found = NULL;
  json_array_foreach(ids, i, v) {
    if (strncmp(json_string_value(v), ref, rl) == 0) {
      matches++;
      found = json_string_value(v);
    }
  }
  int rc = -1;
  if (matches == 1) {
    rc = snapshot_load(r, found, out, err);
  } else if (matches > 1) {
    *err = xasprintf("snapshot id prefix '%s' is ambiguous (%zu snapshots match); give more digits",
                     ref, matches);
  } else {
    *err = xasprintf("no snapshot '%s' in the repository", ref);
  }
  json_decref(ids);
  return rc;
}

int snapshot_forget_unreadable(struct repo *r, json_t *unreadable, json_t *named, int dry_run,
                               const char *command, json_t *dropped, char **err) {
  size_t nu = json_array_size(unreadable), i, k;
  json_t *v, *u;
  int *chosen = xcalloc(nu ? nu : 1, sizeof(int));
  int rc = -1;
  json_array_foreach(named, i, v) {
    const char *ref = json_string_value(v);
    size_t rl = ref ? strlen(ref) : 0;
    size_t matches = 0, at = 0;
    if (rl < 8 || rl > 64 || strspn(ref, "0123456789abcdef") != rl) {
      *err = xasprintf("--forget-unreadable '%s': expected a snapshot id (at least 8 hex digits)",
                       ref ? ref : "");
      goto out;
    }
    json_array_foreach(unreadable, k, u) {
      if (strncmp(json_string_value(json_object_get(u, "id")), ref, rl) == 0) {
        matches++;
        at = k;
      }
    }
    if (matches != 1) {
      *err = matches ? xasprintf("--forget-unreadable '%s' is ambiguous; give more digits", ref)
                     : xasprintf("--forget-unreadable '%s': no unreadable snapshot has this id "
                                 "(it is readable, or does not exist); it only drops snapshots "
                                 "that cannot be read",
                                 ref);
      goto out;
    }
    chosen[at] = 1;
  }
  json_t *left = json_array();
  json_array_foreach(unreadable, k, u) if (!chosen[k]) json_array_append(left, u);
  if (json_array_size(left) > 0) {
    char *text = snapshot_unreadable_text(left);
    *err = xasprintf(
        "%s refuses to run: %zu snapshot(s) exist but cannot be read, so what they reference is "
        "unknown and could be deleted:\n%s\nNothing was changed. If the sink was failing, run "
        "again once it answers; run 'engine check' to see the damage; to drop snapshots that are "
        "lost for good, name them with --forget-unreadable ID",
        command, json_array_size(left), text);
    free(text);
    json_decref(left);
    goto out;
  }
  json_decref(left);
  json_array_foreach(unreadable, k, u) {
    const char *id = json_string_value(json_object_get(u, "id"));
    if (!dry_run) {
      char *name = xasprintf("snapshots/%s", id);
      int d = repo_delete(r, name, err);
      free(name);
      if (d != 0)
        goto out;
      log_warn("forgot unreadable snapshot %s (%s)", id,
               json_string_value(json_object_get(u, "error")));
    }
    json_array_append_new(dropped, json_string(id));
  }
  rc = 0;
out:
  free(chosen);
  return rc;
}
