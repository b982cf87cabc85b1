/* Backup: the selected databases and collections, in byte order of their
 * names, each as a metadata item and a stream of its documents exactly as
 * the server sent them.
 *
 * On a replica set or through mongos, every collection is read with read
 * concern "snapshot" at one cluster time: the first read lets the server
 * choose it (cursor.atClusterTime), every later read names it, so all the
 * collections of a snapshot show the database as of one instant. A server
 * that refuses (older than 5.0, snapshot history shorter than the dump)
 * makes the rest of the run fall back to plain reads, which is recorded in
 * the manifest (consistency "none") and as a warning. A standalone server
 * has no snapshot reads: consistency "none". */
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mongo.h"

/* MongoDB error codes the backup tells apart. */
#define ERR_NAMESPACE_NOT_FOUND 26
#define ERR_QUERY_PLAN_KILLED 175
#define ERR_SNAPSHOT_TOO_OLD 239
#define ERR_SNAPSHOT_UNAVAILABLE 246

/* Batches: the first is small (the average document size is not known
 * yet), the next ones hold about batch_size bytes (readahead.c). */
#define FIRST_BATCH 16
#define MAX_BATCH_DOCS 100000
/* A server sends at most 16 MiB per batch. The batch size is a number of
 * documents, estimated from the average size so far: asking for at most
 * 8 MiB leaves room for documents larger than that average, so that a
 * server that does not cut batches itself never sends more than 16 MiB. */
#define MAX_BATCH_BYTES (8u * 1024u * 1024u)

struct coll {
  char *name;
  char *type; /* collection, view, timeseries */
  bson_t *options;
  char uuid[33];
};

struct bk {
  struct mg_inst *in;
  const struct engine_host *h;
  const struct engine_emitter *em;
  struct mg_conn c;
  int snapshot; /* reads ask for read concern snapshot */
  int have_time;
  uint32_t ct_t, ct_i;
  char *none_reason; /* why consistency is "none" */
  int fell_back;     /* snapshot reads were given up during the run */
  size_t *db_hits, *coll_hits;
  json_t *dbs; /* names of the databases backed up */
  uint64_t n_items, n_docs, n_bytes;
};

static int oom(struct bk *b) {
  b->h->set_error(b->h, "out of memory");
  return ENGINE_ERROR;
}

static void coll_free(struct coll *c) {
  free(c->name);
  free(c->type);
  if (c->options)
    bson_destroy(c->options);
}

static int coll_cmp(const void *a, const void *b) {
  return strcmp(((const struct coll *)a)->name, ((const struct coll *)b)->name);
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void warnf(struct bk *b, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warnf(struct bk *b, const char *name, const char *fmt, ...) {
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  b->em->warn(b->em, name, msg ? msg : "(out of memory describing the problem)");
  free(msg);
}

static int has_wildcard(const char *g) {
  return strpbrk(g, "*?[") != NULL;
}

/* ---- cursors ------------------------------------------------------------------- */

/* A cursor over the reply of a listing command run on the pinned server.
 * NULL with *e set on failure. (A collection's documents are read by
 * readahead.c.) */
static mongoc_cursor_t *command_cursor(struct mg_conn *c, const char *db, const bson_t *cmd,
                                       bson_error_t *e) {
  bson_t reply;
  if (!mg_command(c, db, cmd, 1, &reply, e)) {
    bson_destroy(&reply);
    return NULL;
  }
  bson_t opts = BSON_INITIALIZER;
  if (!mg_append_opts(c, &opts, e)) {
    bson_destroy(&opts);
    bson_destroy(&reply);
    return NULL;
  }
  mongoc_cursor_t *cur = mongoc_cursor_new_from_command_reply_with_opts(c->client, &reply, &opts);
  bson_destroy(&opts);
  return cur;
}

/* ---- databases and collections ----------------------------------------------- */

static int db_wanted(struct bk *b, const char *db) {
  struct mg_inst *in = b->in;
  int system = strcmp(db, "local") == 0 || strcmp(db, "config") == 0;
  int match = in->n_databases == 0 && !system;
  for (size_t i = 0; i < in->n_databases; i++) {
    int m = system ? strcmp(in->databases[i], db) == 0 && !has_wildcard(in->databases[i])
                   : fnmatch(in->databases[i], db, 0) == 0;
    if (m) {
      b->db_hits[i]++;
      match = 1;
    }
  }
  for (size_t i = 0; match && i < in->n_exclude_databases; i++)
    if (fnmatch(in->exclude_databases[i], db, 0) == 0)
      match = 0;
  return match;
}

static int list_databases(struct bk *b, char ***out, size_t *n_out) {
  bson_t cmd = BSON_INITIALIZER, reply;
  BSON_APPEND_INT32(&cmd, "listDatabases", 1);
  BSON_APPEND_BOOL(&cmd, "nameOnly", true);
  BSON_APPEND_BOOL(&cmd, "authorizedDatabases", true);
  bson_error_t e;
  int ok = mg_command(&b->c, "admin", &cmd, 1, &reply, &e);
  bson_destroy(&cmd);
  if (!ok) {
    char *m = mg_error_text(&b->c, &e);
    b->h->set_error(b->h, "listing the databases of %s failed: %s", b->c.describe, m ? m : "?");
    free(m);
    bson_destroy(&reply);
    return ENGINE_ERROR;
  }
  bson_iter_t it, arr, d;
  size_t n = 0, cap = 0;
  char **v = NULL;
  if (bson_iter_init_find(&it, &reply, "databases") && BSON_ITER_HOLDS_ARRAY(&it) &&
      bson_iter_recurse(&it, &arr)) {
    while (bson_iter_next(&arr)) {
      if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &d) ||
          !bson_iter_find(&d, "name") || !BSON_ITER_HOLDS_UTF8(&d))
        continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 16;
        char **nv = realloc(v, cap * sizeof(*v));
        if (nv == NULL) {
          ok = 0;
          break;
        }
        v = nv;
      }
      v[n] = strdup(bson_iter_utf8(&d, NULL));
      if (v[n] == NULL) {
        ok = 0;
        break;
      }
      n++;
    }
  }
  bson_destroy(&reply);
  if (!ok) {
    for (size_t i = 0; i < n; i++)
      free(v[i]);
    free(v);
    return oom(b);
  }
  if (n > 1)
    qsort(v, n, sizeof(*v), str_cmp);
  *out = v;
  *n_out = n;
  return ENGINE_OK;
}

/* Users, roles and the auth schema version mongorestore checks them
 * against (admin.system.version): what include_users_and_roles adds. */
static int is_auth_coll(const char *db, const char *name) {
  return strcmp(db, "admin") == 0 &&
         (strcmp(name, "system.users") == 0 || strcmp(name, "system.roles") == 0 ||
          strcmp(name, "system.version") == 0);
}

/* mongodump's rule (shouldSkipSystemNamespace), users and roles apart. */
static int skip_system(struct bk *b, const char *db, const char *name) {
  if (strchr(name, '$') != NULL)
    return 1;
  if (strcmp(db, "admin") == 0) {
    if (is_auth_coll(db, name))
      return !b->in->users_and_roles;
    return strcmp(name, "system.keys") == 0;
  }
  if (strcmp(db, "config") == 0) {
    static const char *const skip[] = {
        "transactions",     "system.sessions", "transaction_coordinators", "system.indexBuilds",
        "image_collection", "mongos",          "system.preimages"};
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
      if (strcmp(name, skip[i]) == 0)
        return 1;
    return strncmp(name, "cache.", 6) == 0;
  }
  if (strcmp(name, "system.js") == 0)
    return 0;
  return strncmp(name, "system.", 7) == 0;
}

/* auth_only: the database is listed for users and roles alone. */
static int coll_wanted(struct bk *b, const char *db, const char *name, int auth_only) {
  if (skip_system(b, db, name))
    return 0;
  if (is_auth_coll(db, name))
    return 1; /* include_users_and_roles decides, not the globs */
  if (auth_only)
    return 0;
  struct mg_inst *in = b->in;
  char *ns = mg_strdupf("%s.%s", db, name);
  if (ns == NULL)
    return -1;
  int match = in->n_collections == 0;
  for (size_t i = 0; i < in->n_collections; i++)
    if (fnmatch(in->collections[i], ns, 0) == 0) {
      b->coll_hits[i]++;
      match = 1;
    }
  for (size_t i = 0; match && i < in->n_exclude_collections; i++)
    if (fnmatch(in->exclude_collections[i], ns, 0) == 0)
      match = 0;
  free(ns);
  return match;
}

static void uuid_hex(const bson_iter_t *it, char out[33]) {
  out[0] = '\0';
  bson_subtype_t st;
  uint32_t len = 0;
  const uint8_t *data = NULL;
  if (!BSON_ITER_HOLDS_BINARY(it))
    return;
  bson_iter_binary(it, &st, &len, &data);
  if (len != 16)
    return;
  for (int i = 0; i < 16; i++)
    snprintf(out + 2 * i, 3, "%02x", data[i]);
}

/* Fill c from one listCollections entry. 0, or -1 when it is not usable. */
static int coll_from_info(const bson_t *info, struct coll *c) {
  bson_iter_t it, sub;
  memset(c, 0, sizeof(*c));
  if (!bson_iter_init_find(&it, info, "name") || !BSON_ITER_HOLDS_UTF8(&it))
    return -1;
  c->name = strdup(bson_iter_utf8(&it, NULL));
  c->type = strdup(bson_iter_init_find(&it, info, "type") && BSON_ITER_HOLDS_UTF8(&it)
                       ? bson_iter_utf8(&it, NULL)
                       : "collection");
  c->options = bson_new();
  if (bson_iter_init_find(&it, info, "options") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t opt;
    if (bson_init_static(&opt, data, len)) {
      bson_destroy(c->options);
      c->options = bson_copy(&opt);
    }
  }
  if (bson_iter_init_find(&it, info, "info") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
      bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, "uuid"))
    uuid_hex(&sub, c->uuid);
  if (c->name == NULL || c->type == NULL || c->options == NULL) {
    coll_free(c);
    return -2;
  }
  return 0;
}

/* listCollections of db, filtered (by name when only is non-NULL). */
static int list_collections(struct bk *b, const char *db, const char *only, int auth_only,
                            struct coll **out, size_t *n_out, bson_error_t *e) {
  bson_t cmd = BSON_INITIALIZER, filter;
  BSON_APPEND_INT32(&cmd, "listCollections", 1);
  BSON_APPEND_DOCUMENT_BEGIN(&cmd, "filter", &filter);
  if (only != NULL)
    BSON_APPEND_UTF8(&filter, "name", only);
  bson_append_document_end(&cmd, &filter);
  BSON_APPEND_BOOL(&cmd, "authorizedCollections", true);
  mongoc_cursor_t *cur = command_cursor(&b->c, db, &cmd, e);
  bson_destroy(&cmd);
  if (cur == NULL)
    return -1;
  struct coll *v = NULL;
  size_t n = 0, cap = 0;
  const bson_t *info;
  int rc = 0;
  while (rc == 0 && mongoc_cursor_next(cur, &info)) {
    struct coll c;
    int r = coll_from_info(info, &c);
    if (r == -1)
      continue;
    if (r != 0) {
      rc = -2;
      break;
    }
    int want = only != NULL ? 1 : coll_wanted(b, db, c.name, auth_only);
    if (want <= 0) {
      coll_free(&c);
      if (want < 0)
        rc = -2;
      continue;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      struct coll *nv = realloc(v, cap * sizeof(*v));
      if (nv == NULL) {
        coll_free(&c);
        rc = -2;
        break;
      }
      v = nv;
    }
    v[n++] = c;
  }
  if (rc == 0 && mongoc_cursor_error(cur, e))
    rc = -1;
  mongoc_cursor_destroy(cur);
  if (rc != 0) {
    for (size_t i = 0; i < n; i++)
      coll_free(&v[i]);
    free(v);
    if (rc == -2)
      bson_set_error(e, MONGOC_ERROR_BSON, MONGOC_ERROR_BSON_INVALID, "out of memory");
    return -1;
  }
  if (n > 1)
    qsort(v, n, sizeof(*v), coll_cmp);
  *out = v;
  *n_out = n;
  return 0;
}

/* ---- metadata -------------------------------------------------------------------- */

/* mongodump's metadata document: options (when any), indexes, uuid (when
 * known), collectionName, type. *gone: the collection vanished. */
static bson_t *build_metadata(struct bk *b, const char *db, const struct coll *c, int *gone,
                              bson_error_t *e) {
  *gone = 0;
  bson_t *m = bson_new();
  if (!bson_empty(c->options))
    BSON_APPEND_DOCUMENT(m, "options", c->options);
  bson_t idx;
  BSON_APPEND_ARRAY_BEGIN(m, "indexes", &idx);
  if (strcmp(c->type, "view") != 0) {
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&cmd, "listIndexes", c->name);
    mongoc_cursor_t *cur = command_cursor(&b->c, db, &cmd, e);
    bson_destroy(&cmd);
    if (cur == NULL) {
      *gone = mg_is_server_error(e) && e->code == ERR_NAMESPACE_NOT_FOUND;
      bson_destroy(m);
      return NULL;
    }
    const bson_t *doc;
    uint32_t i = 0;
    while (mongoc_cursor_next(cur, &doc)) {
      char key[16];
      const char *k;
      bson_uint32_to_string(i++, &k, key, sizeof(key));
      BSON_APPEND_DOCUMENT(&idx, k, doc);
    }
    int failed = mongoc_cursor_error(cur, e);
    mongoc_cursor_destroy(cur);
    if (failed) {
      *gone = mg_is_server_error(e) && e->code == ERR_NAMESPACE_NOT_FOUND;
      bson_destroy(m);
      return NULL;
    }
  }
  bson_append_array_end(m, &idx);
  if (c->uuid[0])
    BSON_APPEND_UTF8(m, "uuid", c->uuid);
  BSON_APPEND_UTF8(m, "collectionName", c->name);
  BSON_APPEND_UTF8(m, "type", c->type);
  return m;
}

/* ---- items -------------------------------------------------------------------------- */

static int emit_small(struct bk *b, const char *name, const char *meta, const char *data,
                      size_t len) {
  const struct engine_emitter *em = b->em;
  struct engine_item it = {name, strlen(name), ENGINE_ITEM_STREAM, meta, len};
  if (em->item_begin(em, &it) != ENGINE_OK)
    return ENGINE_ERROR;
  if (len > 0 && em->item_write(em, data, len) != ENGINE_OK)
    return ENGINE_ERROR;
  if (em->item_end(em, ENGINE_OK, NULL, NULL) != ENGINE_OK)
    return ENGINE_ERROR;
  b->n_items++;
  return ENGINE_OK;
}

static json_t *item_meta(struct bk *b, const char *db, const struct coll *c, const char *data_coll,
                         const char *metadata_json, int snap) {
  /* "tenant": the database (stages.encrypt.per_tenant keys each database
   * apart) */
  json_t *m = json_pack("{s:s, s:s, s:s, s:s}", "db", db, "tenant", db, "collection", c->name,
                        "type", c->type);
  if (m == NULL)
    return NULL;
  if (data_coll != NULL)
    json_object_set_new(m, "data_collection", json_string(data_coll));
  if (c->uuid[0])
    json_object_set_new(m, "uuid", json_string(c->uuid));
  json_object_set_new(m, "server_version", json_string(b->c.server_version));
  json_object_set_new(m, "driver_version", json_string(mongoc_get_version()));
  if (data_coll != NULL) {
    json_object_set_new(m, "consistency", json_string(snap ? "cluster_time" : "none"));
    if (snap && b->have_time)
      json_object_set_new(
          m, "cluster_time",
          json_pack("{s:I, s:I}", "t", (json_int_t)b->ct_t, "i", (json_int_t)b->ct_i));
  }
  /* a string, not an object: the manifest's JSON is written with sorted
   * keys, and an index's key order matters */
  if (metadata_json != NULL)
    json_object_set_new(m, "metadata_json", json_string(metadata_json));
  return m;
}

/* Snapshot reads are given up for the rest of the run. */
static void fall_back(struct bk *b, const char *ns, const char *why) {
  if (!b->snapshot)
    return;
  b->snapshot = 0;
  b->fell_back = 1;
  free(b->none_reason);
  b->none_reason = mg_strdupf("snapshot reads refused from %s on: %s", ns, why);
  warnf(b, NULL,
        "%s refused reading %s at one cluster time (%s); it and the collections after it were read "
        "without read concern snapshot, so this snapshot is not consistent across collections "
        "(consistency: none)",
        b->c.describe, ns, why);
}

static int fail_item(struct bk *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_item(struct bk *b, const char *fmt, ...) {
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  int rc = b->em->item_end(b->em, ENGINE_ERROR, NULL, msg ? msg : "reading the collection failed");
  free(msg);
  return rc;
}

static int collection_gone(struct bk *b, const char *db, const char *name) {
  struct coll *v = NULL;
  size_t n = 0;
  bson_error_t e;
  if (list_collections(b, db, name, 0, &v, &n, &e) != 0)
    return 0; /* unknown: not gone */
  for (size_t i = 0; i < n; i++)
    coll_free(&v[i]);
  free(v);
  return n == 0;
}

/* The find of one collection: 1 with its reply (the first batch) in first,
 * or 0 with e set. first is initialised either way. */
static int open_find(struct bk *b, const char *db, const char *data_coll, bson_t *first,
                     bson_error_t *e) {
  bson_t cmd = BSON_INITIALIZER, filter, rc;
  BSON_APPEND_UTF8(&cmd, "find", data_coll);
  BSON_APPEND_DOCUMENT_BEGIN(&cmd, "filter", &filter);
  bson_append_document_end(&cmd, &filter);
  BSON_APPEND_INT32(&cmd, "batchSize", FIRST_BATCH);
  if (b->snapshot) {
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "readConcern", &rc);
    BSON_APPEND_UTF8(&rc, "level", "snapshot");
    if (b->have_time)
      BSON_APPEND_TIMESTAMP(&rc, "atClusterTime", b->ct_t, b->ct_i);
    bson_append_document_end(&cmd, &rc);
  }
  int ok = mg_command(&b->c, db, &cmd, 1, first, e);
  bson_destroy(&cmd);
  return ok;
}

/* A server error that says no to the snapshot read itself (too old a
 * server, not enough history, not supported here), as opposed to the
 * collection or the user. */
static int snapshot_refusal(const bson_error_t *e) {
  return mg_is_server_error(e) && e->code != 13 && e->code != 18 &&
         e->code != ERR_NAMESPACE_NOT_FOUND;
}

/* The cluster time the server chose for the first snapshot read. */
static int take_cluster_time(struct bk *b, const bson_t *first) {
  bson_iter_t it;
  if (bson_iter_init(&it, first) && bson_iter_find_descendant(&it, "cursor.atClusterTime", &it) &&
      BSON_ITER_HOLDS_TIMESTAMP(&it)) {
    bson_iter_timestamp(&it, &b->ct_t, &b->ct_i);
    b->have_time = 1;
    b->h->log(b->h, ENGINE_LOG_INFO, "reading every collection at cluster time %u.%u", b->ct_t,
              b->ct_i);
    return 1;
  }
  return 0;
}

/* Returns ENGINE_OK to go on (also after this collection failed),
 * ENGINE_ERROR when the run must stop (cancelled, emitter failed). */
static int dump_data(struct bk *b, const char *db, const struct coll *c, const char *data_coll,
                     const char *metadata_json) {
  const struct engine_host *h = b->h;
  const struct engine_emitter *em = b->em;
  char *ns = mg_strdupf("%s.%s", db, c->name);
  char *esc = mg_escape(data_coll);
  char *name = esc ? mg_strdupf("%s/%s.bson", db, esc) : NULL;
  free(esc);
  struct mg_digest dg;
  int have_dg = 0;
  int rc = ENGINE_OK;
  if (ns == NULL || name == NULL || mg_digest_init(&dg) != 0) {
    rc = oom(b);
    goto out;
  }
  have_dg = 1;
  for (int attempt = 0; attempt < 2; attempt++) {
    int snap = b->snapshot;
    bson_error_t e;
    bson_t first;
    int found = open_find(b, db, data_coll, &first, &e);
    if (!found && snap && snapshot_refusal(&e)) {
      char *why = mg_error_text(&b->c, &e);
      fall_back(b, ns, why ? why : e.message);
      free(why);
      snap = 0;
      bson_destroy(&first);
      found = open_find(b, db, data_coll, &first, &e);
    }
    if (!found) {
      bson_destroy(&first);
      if (mg_is_server_error(&e) && e.code == ERR_NAMESPACE_NOT_FOUND) {
        warnf(b, name, "collection %s was dropped during the backup; it is not in this snapshot",
              ns);
        goto out;
      }
      char *m = mg_error_text(&b->c, &e);
      warnf(b, name, "reading collection %s failed: %s", ns, m ? m : e.message);
      free(m);
      goto out;
    }
    if (snap && !b->have_time && !take_cluster_time(b, &first))
      fall_back(b, ns, "the server did not report the snapshot's cluster time (atClusterTime)");
    snap = snap && b->snapshot;
    json_t *meta = item_meta(b, db, c, data_coll, metadata_json, snap);
    char *meta_text = meta ? mg_json_dump(meta) : NULL;
    struct engine_item item = {name, strlen(name), ENGINE_ITEM_STREAM, meta_text, 0};
    if (meta_text == NULL || em->item_begin(em, &item) != ENGINE_OK) {
      bson_destroy(&first);
      json_decref(meta);
      free(meta_text);
      rc = meta_text == NULL ? oom(b) : ENGINE_ERROR;
      goto out;
    }
    free(meta_text);
    h->log(h, ENGINE_LOG_DEBUG, "reading %s", ns);
    memset(dg.limb, 0, sizeof(dg.limb));
    uint64_t want = (uint64_t)b->in->batch_size < MAX_BATCH_BYTES ? (uint64_t)b->in->batch_size
                                                                  : MAX_BATCH_BYTES;
    struct mg_readahead_result res = {0};
    struct mg_readahead *ra =
        mg_readahead_start(&b->c, db, &first, want, MAX_BATCH_DOCS, &dg, &res.err);
    int stop = 0;
    const uint8_t *blk;
    size_t blen;
    while (ra != NULL && !stop && mg_readahead_next(ra, &blk, &blen) == 1)
      if (em->item_write(em, blk, blen) != ENGINE_OK)
        stop = 1;
    if (ra != NULL)
      mg_readahead_finish(ra, &res);
    else
      res.failed = 1; /* res.err says why (also when it is memory) */
    uint64_t count = res.count, bytes = res.bytes;
    int failed = res.failed;
    e = res.err;
    if (stop && !res.oom) {
      em->item_end(em, ENGINE_ERROR, NULL, "cancelled");
      json_decref(meta);
      rc = ENGINE_ERROR;
      goto out;
    }
    if (res.cancelled) {
      em->item_end(em, ENGINE_ERROR, NULL, "cancelled");
      json_decref(meta);
      rc = ENGINE_ERROR;
      goto out;
    }
    if (res.oom) {
      json_decref(meta);
      rc = fail_item(b, "reading %s failed: out of memory", ns) == ENGINE_OK ? ENGINE_OK
                                                                             : ENGINE_ERROR;
      goto out;
    }
    if (failed) {
      json_decref(meta);
      char *m = mg_error_text(&b->c, &e);
      int too_old = snap && mg_is_server_error(&e) &&
                    (e.code == ERR_SNAPSHOT_TOO_OLD || e.code == ERR_SNAPSHOT_UNAVAILABLE);
      int gone = mg_is_server_error(&e) &&
                 (e.code == ERR_QUERY_PLAN_KILLED || e.code == ERR_NAMESPACE_NOT_FOUND) &&
                 collection_gone(b, db, c->name);
      int r;
      if (too_old)
        r = fail_item(b,
                      "reading %s at cluster time %u.%u failed after %llu documents: %s; the "
                      "server keeps snapshot history for minSnapshotHistoryWindowInSeconds (raise "
                      "it for long backups); read again without a snapshot",
                      ns, b->ct_t, b->ct_i, (unsigned long long)count, m ? m : e.message);
      else if (gone)
        r = fail_item(b,
                      "collection %s was dropped during the backup (after %llu documents); it is "
                      "not in this snapshot",
                      ns, (unsigned long long)count);
      else
        r = fail_item(b,
                      "reading collection %s failed after %llu documents (%llu bytes): %s; what "
                      "was read is not kept",
                      ns, (unsigned long long)count, (unsigned long long)bytes, m ? m : e.message);
      free(m);
      if (r != ENGINE_OK) {
        rc = ENGINE_ERROR;
        goto out;
      }
      if (too_old) {
        fall_back(b, ns, "snapshot too old");
        continue; /* once more, without a snapshot */
      }
      goto out;
    }
    char dtext[80];
    mg_digest_text(&dg, dtext);
    json_object_set_new(meta, "count", json_integer((json_int_t)count));
    json_object_set_new(meta, "size", json_integer((json_int_t)bytes));
    json_object_set_new(meta, "digest", json_string(dtext));
    char *final = mg_json_dump(meta);
    json_decref(meta);
    if (final == NULL) {
      em->item_end(em, ENGINE_ERROR, NULL, "out of memory");
      rc = oom(b);
      goto out;
    }
    rc = em->item_end(em, ENGINE_OK, final, NULL);
    free(final);
    if (rc == ENGINE_OK) {
      b->n_items++;
      b->n_docs += count;
      b->n_bytes += bytes;
      h->log(h, ENGINE_LOG_DEBUG, "%s: %llu documents, %llu bytes", ns, (unsigned long long)count,
             (unsigned long long)bytes);
    }
    goto out;
  }
out:
  if (have_dg)
    mg_digest_free(&dg);
  free(ns);
  free(name);
  return rc;
}

static int backup_collection(struct bk *b, const char *db, const struct coll *listed) {
  const struct engine_host *h = b->h;
  char *ns = mg_strdupf("%s.%s", db, listed->name);
  if (ns == NULL)
    return oom(b);
  if (!mg_valid_coll_name(listed->name)) {
    char *p = mg_printable(ns);
    warnf(b, NULL, "collection '%s' skipped: its name cannot be stored as an item", p ? p : "?");
    free(p);
    free(ns);
    return ENGINE_OK;
  }
  /* as it is now: it may have been dropped since the listing */
  struct coll *now = NULL;
  size_t n_now = 0;
  bson_error_t e;
  if (list_collections(b, db, listed->name, 0, &now, &n_now, &e) != 0) {
    char *m = mg_error_text(&b->c, &e);
    warnf(b, NULL, "collection %s skipped: looking it up failed: %s", ns, m ? m : e.message);
    free(m);
    free(ns);
    return ENGINE_OK;
  }
  if (n_now == 0) {
    warnf(b, NULL, "collection %s was dropped during the backup; it is not in this snapshot", ns);
    free(now);
    free(ns);
    return ENGINE_OK;
  }
  const struct coll *c = &now[0];
  int gone = 0;
  bson_t *md = build_metadata(b, db, c, &gone, &e);
  int rc = ENGINE_OK;
  char *mtext = NULL, *esc = NULL, *mname = NULL, *meta_text = NULL, *data_coll = NULL;
  json_t *meta = NULL;
  if (md == NULL) {
    if (gone) {
      warnf(b, NULL, "collection %s was dropped during the backup; it is not in this snapshot", ns);
    } else {
      char *m = mg_error_text(&b->c, &e);
      warnf(b, NULL, "collection %s skipped: listing its indexes failed: %s", ns,
            m ? m : e.message);
      free(m);
    }
    goto out;
  }
  mtext = mg_ext_json(md);
  esc = mg_escape(c->name);
  mname = esc ? mg_strdupf("%s/%s.metadata.json", db, esc) : NULL;
  meta = mtext ? item_meta(b, db, c, NULL, NULL, 0) : NULL;
  meta_text = meta ? mg_json_dump(meta) : NULL;
  if (mtext == NULL || mname == NULL || meta_text == NULL) {
    rc = oom(b);
    goto out;
  }
  rc = emit_small(b, mname, meta_text, mtext, strlen(mtext));
  if (rc != ENGINE_OK || strcmp(c->type, "view") == 0)
    goto out;
  data_coll = strcmp(c->type, "timeseries") == 0 ? mg_strdupf("system.buckets.%s", c->name)
                                                 : strdup(c->name);
  if (data_coll == NULL) {
    rc = oom(b);
    goto out;
  }
  rc = dump_data(b, db, c, data_coll, mtext);
  if (rc == ENGINE_OK)
    h->log(h, ENGINE_LOG_DEBUG, "collection %s done", ns);
out:
  if (md)
    bson_destroy(md);
  bson_free(mtext);
  free(esc);
  free(mname);
  free(meta_text);
  free(data_coll);
  json_decref(meta);
  for (size_t i = 0; i < n_now; i++)
    coll_free(&now[i]);
  free(now);
  free(ns);
  return rc;
}

/* ---- the run ----------------------------------------------------------------------- */

static int backup_database(struct bk *b, const char *db, int auth_only) {
  struct coll *v = NULL;
  size_t n = 0;
  bson_error_t e;
  if (!mg_valid_db_name(db)) {
    char *p = mg_printable(db);
    warnf(b, NULL, "database '%s' skipped: its name cannot be stored as an item", p ? p : "?");
    free(p);
    return ENGINE_OK;
  }
  if (list_collections(b, db, NULL, auth_only, &v, &n, &e) != 0) {
    char *m = mg_error_text(&b->c, &e);
    warnf(b, NULL, "database %s skipped: listing its collections failed: %s", db,
          m ? m : e.message);
    free(m);
    return ENGINE_OK;
  }
  if (!auth_only)
    json_array_append_new(b->dbs, json_string(db));
  int rc = ENGINE_OK;
  for (size_t i = 0; i < n && rc == ENGINE_OK; i++) {
    if (b->h->cancelled(b->h)) {
      rc = ENGINE_ERROR;
      break;
    }
    rc = backup_collection(b, db, &v[i]);
  }
  for (size_t i = 0; i < n; i++)
    coll_free(&v[i]);
  free(v);
  return rc;
}

static void set_marks(struct bk *b) {
  const struct engine_emitter *em = b->em;
  int consistent = !b->fell_back && b->c.topology != MG_STANDALONE && b->have_time;
  em->mark(em, "consistency", consistent ? "\"cluster_time\"" : "\"none\"");
  if (b->have_time) {
    char t[96];
    snprintf(t, sizeof(t), "{\"t\":%u,\"i\":%u}", b->ct_t, b->ct_i);
    em->mark(em, "cluster_time", t);
  }
  json_t *j = json_string(b->none_reason ? b->none_reason : "");
  char *s = json_dumps(j, JSON_ENCODE_ANY);
  if (!consistent && s != NULL)
    em->mark(em, "consistency_note", s);
  free(s);
  json_decref(j);
  j = json_string(b->c.server_version);
  s = json_dumps(j, JSON_ENCODE_ANY);
  if (s)
    em->mark(em, "server_version", s);
  free(s);
  json_decref(j);
  j = json_string(b->c.hosts ? b->c.hosts : "");
  s = json_dumps(j, JSON_ENCODE_ANY);
  if (s)
    em->mark(em, "server", s);
  free(s);
  json_decref(j);
  em->mark(em, "topology",
           b->c.topology == MG_SHARDED       ? "\"sharded\""
           : b->c.topology == MG_REPLICA_SET ? "\"replica_set\""
                                             : "\"standalone\"");
  j = json_string(mongoc_get_version());
  s = json_dumps(j, JSON_ENCODE_ANY);
  if (s)
    em->mark(em, "driver_version", s);
  free(s);
  json_decref(j);
  s = json_dumps(b->dbs, JSON_COMPACT);
  if (s)
    em->mark(em, "databases", s);
  free(s);
}

int mg_backup(void *inst, const struct engine_emitter *em) {
  struct mg_inst *in = inst;
  const struct engine_host *h = in->host;
  struct bk b = {.in = in, .h = h, .em = em};
  if (mg_connect(in, NULL, 0, &b.c) != ENGINE_OK)
    return ENGINE_ERROR;
  h->log(h, ENGINE_LOG_INFO, "backing up %s (read preference %s)", b.c.describe,
         in->read_mode_name);
  int rc = ENGINE_OK;
  char **dbs = NULL;
  size_t n_dbs = 0;
  b.db_hits = calloc(in->n_databases + 1, sizeof(size_t));
  b.coll_hits = calloc(in->n_collections + 1, sizeof(size_t));
  b.dbs = json_array();
  if (b.db_hits == NULL || b.coll_hits == NULL || b.dbs == NULL) {
    rc = oom(&b);
    goto out;
  }
  if (b.c.topology == MG_STANDALONE) {
    b.none_reason = strdup("a standalone server has no snapshot reads");
    h->log(h, ENGINE_LOG_INFO,
           "%s is a standalone server: collections are read one after the "
           "other, not at one cluster time (consistency: none)",
           b.c.hosts);
  } else {
    b.snapshot = 1;
  }
  if (list_databases(&b, &dbs, &n_dbs) != ENGINE_OK) {
    rc = ENGINE_ERROR;
    goto out;
  }
  int admin_listed = 0;
  for (size_t i = 0; i < n_dbs && rc == ENGINE_OK; i++) {
    int want = db_wanted(&b, dbs[i]);
    int is_admin = strcmp(dbs[i], "admin") == 0;
    if (is_admin)
      admin_listed = 1;
    if (want || (is_admin && in->users_and_roles))
      rc = backup_database(&b, dbs[i], !want);
  }
  if (rc == ENGINE_OK && in->users_and_roles && !admin_listed)
    rc = backup_database(&b, "admin", 1);
  if (rc != ENGINE_OK)
    goto out;
  for (size_t i = 0; i < in->n_databases; i++)
    if (b.db_hits[i] == 0)
      warnf(&b, NULL, "database glob '%s' matches no database on %s", in->databases[i], b.c.hosts);
  for (size_t i = 0; i < in->n_collections; i++)
    if (b.coll_hits[i] == 0)
      warnf(&b, NULL, "collection glob '%s' matches no collection of the selected databases on %s",
            in->collections[i], b.c.hosts);
  set_marks(&b);
  h->log(h, ENGINE_LOG_INFO, "%llu item(s), %llu documents, %llu bytes of BSON from %s",
         (unsigned long long)b.n_items, (unsigned long long)b.n_docs, (unsigned long long)b.n_bytes,
         b.c.hosts);
out:
  for (size_t i = 0; i < n_dbs; i++)
    free(dbs[i]);
  free(dbs);
  free(b.db_hits);
  free(b.coll_hits);
  json_decref(b.dbs);
  free(b.none_reason);
  mg_conn_close(&b.c);
  return rc;
}
