/* engine check [--read-data]
 *
 * The structure pass reads every snapshot manifest and every index object
 * and walks every item tree; each item is checked as a restore would need
 * it (tree_item_problem: safe name, known type, chunk ids in the index as
 * data blobs whose pack exists, sizes that add up). --read-data first reads
 * every pack and decodes every blob at the place the index names (pack,
 * offset, length, type), which is where a restore reads it; blobs that fail
 * are traced to the snapshots and items using them in the same walk. So the
 * items a restore would fail on are among the items check names. */
#include "pipeline/check.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/index.h"
#include "repo/keys2.h"
#include "repo/pack.h"
#include "repo/snapshot.h"
#include "repo/tree.h"
#include "util/cancel.h"
#include "util/log.h"

struct ck {
  struct repo *r;
  struct check_result *res;
  int quiet;
  json_t *packs_present;       /* object: pack hex -> size */
  json_t *bad_blobs;           /* object: blob hex -> reason (read-data) */
  const struct snapshot *snap; /* current snapshot */
  const char *source;
  uint64_t items_affected; /* in the current snapshot */
  /* --read-data reads packs on several threads: problems, bad_blobs and
   * the counters are shared */
  pthread_mutex_t mu;
};

static void problem(struct ck *c, json_t *p) {
  pthread_mutex_lock(&c->mu);
  c->res->errors++;
  if (!c->quiet) {
    const char *snap = json_string_value(json_object_get(p, "snapshot"));
    const char *src = json_string_value(json_object_get(p, "source"));
    const char *item = json_string_value(json_object_get(p, "item"));
    fprintf(stderr, "error: %s%s%s%s%s%s%s%s%s\n", snap ? "snapshot " : "", snap ? snap : "",
            snap ? ": " : "", src ? "source '" : "", src ? src : "", src ? "': " : "",
            item ? item : "", item ? ": " : "", json_string_value(json_object_get(p, "message")));
  }
  json_array_append_new(c->res->problems, p);
  pthread_mutex_unlock(&c->mu);
}

/* A JSON string of any message: one that quotes a damaged object's bytes
 * (a parser's error) may not be UTF-8, and json_pack would then give NULL
 * and the problem would lose its text; such bytes are escaped (\xNN). */
static json_t *text(const char *s) {
  json_t *v = json_string(s ? s : "");
  if (v)
    return v;
  char *p = printable_name(s, strlen(s));
  v = json_string(p);
  free(p);
  return v;
}

static void object_problem(struct ck *c, const char *object, const char *msg) {
  problem(c, json_pack("{s:o, s:o}", "object", text(object), "message", text(msg)));
}

static const char *pack_hex_of(struct ck *c, const struct index_entry *e, char hex[65]) {
  hex_encode(c->r->index->packs[e->pack], 32, hex);
  return hex;
}

/* Where a blob the snapshots use stands: NULL when a restore can read it. */
static char *blob_problem(struct ck *c, const char *hex, enum blob_type want) {
  unsigned char id[32];
  struct index_entry e;
  char ph[65];
  if (hex_decode(hex, id, 32) != 0)
    return xasprintf("malformed blob id %.16s", hex);
  if (!index_get(c->r->index, id, &e) || e.pack == UINT32_MAX)
    return xasprintf("blob %.16s is not in the index", hex);
  if (e.type != want)
    return xasprintf("blob %.16s is a %s blob where a %s blob is expected", hex,
                     e.type == BLOB_TREE ? "tree" : "data", want == BLOB_TREE ? "tree" : "data");
  if (!json_object_get(c->packs_present, pack_hex_of(c, &e, ph)))
    return xasprintf("blob %.16s: its pack %.16s is missing", hex, ph);
  json_t *why = json_object_get(c->bad_blobs, hex);
  if (why)
    return xasprintf("blob %.16s is damaged: %s", hex, json_string_value(why));
  return NULL;
}

static void item_problem(struct ck *c, const char *item, const char *msg) {
  c->items_affected++;
  problem(c, json_pack("{s:s, s:o, s:o, s:o}", "snapshot", c->snap->id, "source", text(c->source),
                       "item", text(item), "message", text(msg)));
}

static int item_cb(void *ud, json_t *item) {
  struct ck *c = ud;
  const struct repo_tenant *t = c->r->format >= 2 ? keys2_item_tenant(c->r, item) : NULL;
  if (t && t->shredded) { /* its data is gone by design */
    pthread_mutex_lock(&c->mu);
    c->res->shredded_items++;
    pthread_mutex_unlock(&c->mu);
    return 0;
  }
  char *pn = NULL;
  char *msg = tree_item_problem(item, c->r->index, &pn);
  if (!msg) {
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(item, "chunks"), i, v) {
      msg = blob_problem(c, json_string_value(v), BLOB_DATA);
      if (msg)
        break;
    }
  }
  if (msg)
    item_problem(c, pn, msg);
  free(msg);
  free(pn);
  return 0;
}

static void source_problem(struct ck *c, const char *msg) {
  problem(c, json_pack("{s:s, s:o, s:o}", "snapshot", c->snap->id, "source", text(c->source),
                       "message", text(msg)));
}

/* The first tree blob of src a restore could not read, or NULL. */
static char *tree_blob_problem(struct ck *c, const struct snapshot_source *src) {
  for (size_t k = 0; k < src->n_tree; k++) {
    char hex[65];
    hex_encode(src->tree[k], 32, hex);
    char *msg = blob_problem(c, hex, BLOB_TREE);
    if (msg)
      return msg;
  }
  return NULL;
}

static void walk_snapshots(struct ck *c, const struct snapshot_list *snaps) {
  for (size_t i = 0; i < snaps->n; i++) {
    c->snap = snaps->v[i];
    c->items_affected = 0;
    for (size_t j = 0; j < c->snap->n_sources; j++) {
      const struct snapshot_source *src = &c->snap->sources[j];
      c->source = src->name;
      char *msg = tree_blob_problem(c, src);
      if (msg) {
        char *full = xasprintf("item tree unreadable (%s): every item of this source is affected "
                               "('engine repair snapshots' salvages what is left)",
                               msg);
        source_problem(c, full);
        free(full);
        free(msg);
        continue;
      }
      char *err = NULL;
      if (tree_foreach_ids(c->r, (const unsigned char(*)[32])src->tree, src->n_tree, item_cb, c,
                           &err) != 0) {
        char *full = xasprintf("item tree unreadable: %s", err);
        source_problem(c, full);
        free(full);
        free(err);
      }
    }
  }
}

/* index entries grouped by pack number: first[p] .. first[p + 1] in order */
struct by_pack {
  struct index_entry *e;
  size_t *first;
};

static void count_in_pack(void *ud, const struct index_entry *e) {
  ((struct by_pack *)ud)->first[e->pack + 2]++;
}

static void place_in_pack(void *ud, const struct index_entry *e) {
  struct by_pack *g = ud;
  g->e[g->first[e->pack + 1]++] = *e;
}

static void group_by_pack(struct index *ix, struct by_pack *g) {
  g->first = xcalloc(ix->n_packs + 2, sizeof(size_t));
  index_foreach(ix, count_in_pack, g);
  for (size_t p = 2; p < ix->n_packs + 2; p++)
    g->first[p] += g->first[p - 1];
  g->e = xcalloc(g->first[ix->n_packs + 1] ? g->first[ix->n_packs + 1] : 1, sizeof(*g->e));
  index_foreach(ix, place_in_pack, g);
}

static int find_pack(struct index *ix, const char *hex, uint32_t *num) {
  unsigned char id[32];
  return hex_decode(hex, id, 32) == 0 && index_find_pack(ix, id, num);
}

static void bad_blob(struct ck *c, const unsigned char id[32], const char *why) {
  char bh[65];
  hex_encode(id, 32, bh);
  pthread_mutex_lock(&c->mu);
  json_object_set_new(c->bad_blobs, bh, json_string(why));
  pthread_mutex_unlock(&c->mu);
}

static void count_blob(struct ck *c) {
  pthread_mutex_lock(&c->mu);
  c->res->blobs++;
  pthread_mutex_unlock(&c->mu);
}

/* Decode every blob the index places in this pack, where the index places
 * it; then the pack's own header and the blobs only it lists. */
static void read_pack(struct ck *c, const struct by_pack *g, uint32_t num, int indexed,
                      const char *name, const char *hex) {
  void *buf;
  size_t len;
  char *err = NULL;
  size_t from = indexed ? g->first[num] : 0, to = indexed ? g->first[num + 1] : 0;
  if (repo_get(c->r, name, 0, 0, &buf, &len, &err) != 0) {
    object_problem(c, name, err);
    for (size_t i = from; i < to; i++)
      bad_blob(c, g->e[i].id, "its pack cannot be read");
    free(err);
    return;
  }
  char got[65];
  sha256_hex(buf, len, got);
  if (strcmp(got, hex) != 0) {
    char *m = xasprintf("pack %s is corrupted or misnamed: its content hash is %.16s", name, got);
    object_problem(c, name, m);
    free(m);
  }
  /* format 2: the pack's own data key, sealed at its start */
  unsigned char dk[32];
  const unsigned char *key = NULL, *idk = NULL;
  if (c->r->format >= 2) {
    const struct repo_tenant *t = NULL;
    int o = len >= KEYS2_SEALED_DK_LEN ? keys2_head_open(c->r, buf, dk, &t) : -1;
    if (o == -3) { /* a shredded tenant's: no one can read it, prune removes it */
      pthread_mutex_lock(&c->mu);
      c->res->shredded_packs++;
      pthread_mutex_unlock(&c->mu);
      free(buf);
      return;
    }
    idk = repo_tenant_idk(c->r, t);
    if (o != 0) {
      char *m = xasprintf("pack %s: its data key %s", name,
                          o == -2 ? "is sealed to a key pair the keyring does not hold"
                                  : "does not authenticate (damaged)");
      object_problem(c, name, m);
      free(m);
      for (size_t i = from; i < to; i++)
        bad_blob(c, g->e[i].id, "its pack's data key cannot be opened");
      free(buf);
      return;
    }
    key = dk;
  }
  size_t data_end = len >= 8 ? len - 8 : 0;
  if (len >= 8) {
    uint32_t hl = le32_get((unsigned char *)buf + len - 8);
    data_end = hl <= len - 8 ? len - 8 - hl : 0;
  }
  for (size_t i = from; i < to; i++) {
    const struct index_entry *e = &g->e[i];
    count_blob(c);
    if ((uint64_t)e->offset + e->length > data_end) {
      bad_blob(c, e->id, "the index places it beyond the pack's data");
      continue;
    }
    void *raw;
    size_t rl;
    char *de = NULL;
    if (repo_blob_decode_idk(c->r, key, idk, e->id, (enum blob_type)e->type,
                             (char *)buf + e->offset, e->length, &raw, &rl, &de) != 0) {
      char *why = xasprintf("in pack %.16s at offset %u: %s", hex, e->offset, de);
      bad_blob(c, e->id, why);
      free(why);
      free(de);
      continue;
    }
    free(raw);
    if (rl != e->raw_length)
      bad_blob(c, e->id, "its decoded size differs from the index");
  }
  struct pack_entry *es = NULL;
  size_t n = 0;
  if (pack_parse(c->r, buf, len, &es, &n, NULL, &err) != 0) {
    char *m = xasprintf("pack %s: %s", name, err);
    object_problem(c, name, m);
    free(m);
    free(err);
    free(buf);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    int seen = 0; /* already decoded at this place through the index */
    for (size_t k = from; k < to && !seen; k++)
      seen = g->e[k].offset == es[i].offset && memcmp(g->e[k].id, es[i].id, 32) == 0;
    if (seen)
      continue;
    count_blob(c);
    void *raw;
    size_t rl;
    char *de = NULL;
    if (repo_blob_decode_idk(c->r, key, idk, es[i].id, es[i].type, (char *)buf + es[i].offset,
                             es[i].length, &raw, &rl, &de) != 0) {
      char *m = xasprintf("pack %s: a blob no index uses is damaged: %s", name, de);
      object_problem(c, name, m);
      free(m);
      free(de);
      continue;
    }
    free(raw);
  }
  free(es);
  free(buf);
}

/* Packs are read by a few threads at once: from an object store each is a
 * request whose latency the others hide; locally the decoding runs on the
 * cores. Each pack is read whole, one request. */
#define CHECK_READERS 4

struct reader_ctx {
  struct ck *c;
  const struct by_pack *g;
  json_t *packs;
  size_t next;
};

static void *reader(void *arg) {
  struct reader_ctx *x = arg;
  for (;;) {
    pthread_mutex_lock(&x->c->mu);
    size_t i = x->next++;
    pthread_mutex_unlock(&x->c->mu);
    if (i >= json_array_size(x->packs) || cancel_requested())
      return NULL;
    json_t *p = json_array_get(x->packs, i);
    const char *name = json_string_value(json_object_get(p, "name"));
    const char *slash = strrchr(name, '/');
    const char *hex = slash ? slash + 1 : name;
    uint32_t num = 0;
    int indexed = find_pack(x->c->r->index, hex, &num);
    read_pack(x->c, x->g, num, indexed, name, hex);
  }
}

static void read_data(struct ck *c, json_t *packs) {
  struct by_pack g;
  group_by_pack(c->r->index, &g);
  struct reader_ctx x = {c, &g, packs, 0};
  pthread_t th[CHECK_READERS];
  int started = 0;
  for (; started < CHECK_READERS; started++)
    if (pthread_create(&th[started], NULL, reader, &x) != 0)
      break;
  if (started == 0)
    reader(&x);
  for (int i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  free(g.e);
  free(g.first);
}

int check_run(struct repo *r, int read_data_too, int quiet, struct check_result *res, char **err) {
  memset(res, 0, sizeof(*res));
  res->problems = json_array();
  struct ck c = {
      r, res, quiet, json_object(), json_object(), NULL, NULL, 0, PTHREAD_MUTEX_INITIALIZER};
  int rc = -1;
  struct snapshot_list snaps = {NULL, 0};
  json_t *packs = NULL, *unreadable = NULL;
  if (repo_list(r, "data/", &packs, err) != 0)
    goto out;
  size_t i;
  json_t *p;
  json_array_foreach(packs, i, p) {
    const char *name = json_string_value(json_object_get(p, "name"));
    const char *slash = strrchr(name, '/');
    json_object_set(c.packs_present, slash ? slash + 1 : name, json_object_get(p, "size"));
  }
  res->packs = json_array_size(packs);
  /* index objects that could not be read: the blobs they list are unknown,
   * and the walk below names the items that need them */
  json_array_foreach(r->index->damaged, i, p) {
    char *m = xasprintf("%s (run 'engine repair index' to rebuild the index from the packs)",
                        json_string_value(json_object_get(p, "error")));
    object_problem(&c, json_string_value(json_object_get(p, "name")), m);
    free(m);
  }
  /* every indexed pack must exist */
  for (size_t k = 0; k < r->index->n_packs; k++) {
    char hex[65];
    hex_encode(r->index->packs[k], 32, hex);
    if (!json_object_get(c.packs_present, hex)) {
      char *m = xasprintf("pack %s is listed in the index but missing from the repository; run "
                          "'engine repair index' (until then new backups take its blobs as "
                          "stored) and 'engine repair snapshots'",
                          hex);
      object_problem(&c, hex, m);
      free(m);
    }
  }
  if (snapshot_list(r, &snaps, &unreadable, err) != 0)
    goto out;
  res->snapshots = snaps.n + json_array_size(unreadable);
  json_array_foreach(unreadable, i, p) {
    char *obj = xasprintf("snapshots/%s", json_string_value(json_object_get(p, "id")));
    char *m = xasprintf("%s; this recovery point cannot be listed or restored (once it is known to "
                        "be lost: 'engine forget --forget-unreadable %.8s')",
                        json_string_value(json_object_get(p, "error")),
                        json_string_value(json_object_get(p, "id")));
    problem(&c, json_pack("{s:s, s:O, s:o}", "object", obj, "snapshot", json_object_get(p, "id"),
                          "message", text(m)));
    free(m);
    free(obj);
  }
  if (read_data_too)
    read_data(&c, packs);
  walk_snapshots(&c, &snaps);
  rc = res->errors ? 1 : 0;
out:
  snapshot_list_free(&snaps);
  json_decref(unreadable);
  json_decref(packs);
  json_decref(c.packs_present);
  json_decref(c.bad_blobs);
  pthread_mutex_destroy(&c.mu);
  return rc;
}
