/* engine check [--read-data] */
#include "pipeline/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/index.h"
#include "repo/pack.h"
#include "repo/snapshot.h"
#include "repo/tree.h"
#include "util/log.h"

struct ck {
  struct repo *r;
  struct check_result *res;
  int quiet;
  json_t *packs_present; /* object: pack hex -> size */
  json_t *bad_blobs;     /* object: blob hex -> reason */
  json_t *snap;          /* current snapshot */
  const char *source;
  int structure; /* pass: structure checks (1) or damage tracing (0) */
};

static void problem(struct ck *c, json_t *p) {
  c->res->errors++;
  if (!c->quiet) {
    const char *snap = json_string_value(json_object_get(p, "snapshot"));
    const char *src = json_string_value(json_object_get(p, "source"));
    const char *item = json_string_value(json_object_get(p, "item"));
    const char *obj = json_string_value(json_object_get(p, "object"));
    fprintf(stderr, "error: %s%s%s%s%s%s%s%s%s\n", snap ? "snapshot " : "", snap ? snap : "",
            snap ? ": " : "", src ? "source '" : "", src ? src : "", src ? "': " : "",
            item ? item : "", item ? ": " : "", json_string_value(json_object_get(p, "message")));
    (void)obj;
  }
  json_array_append_new(c->res->problems, p);
}

static int pack_present(struct ck *c, const struct index_entry *e) {
  char hex[65];
  hex_encode(c->r->index->packs[e->pack], 32, hex);
  return json_object_get(c->packs_present, hex) != NULL;
}

/* Check one list of blob ids; returns the first problem message or NULL. */
static char *check_ids(struct ck *c, json_t *ids) {
  size_t i;
  json_t *v;
  json_array_foreach(ids, i, v) {
    const char *hex = json_string_value(v);
    unsigned char id[32];
    struct index_entry e;
    if (!hex || hex_decode(hex, id, 32) != 0)
      return xasprintf("malformed blob id at position %zu", i);
    if (c->structure) {
      if (!index_get(c->r->index, id, &e) || e.pack == UINT32_MAX)
        return xasprintf("blob %.16s is not in the index", hex);
      if (!pack_present(c, &e)) {
        char ph[65];
        hex_encode(c->r->index->packs[e.pack], 32, ph);
        return xasprintf("blob %.16s: its pack %.16s is missing", hex, ph);
      }
    } else {
      json_t *why = json_object_get(c->bad_blobs, hex);
      if (why)
        return xasprintf("blob %.16s is damaged: %s", hex, json_string_value(why));
    }
  }
  return NULL;
}

static int item_cb(void *ud, json_t *item) {
  struct ck *c = ud;
  char *msg = check_ids(c, json_object_get(item, "chunks"));
  if (msg) {
    size_t nl;
    char *name = json_get_bytes(item, "name", &nl);
    char *pn = name ? printable_name(name, nl) : xstrdup("?");
    problem(c, json_pack("{s:s, s:s, s:s, s:s}", "snapshot",
                         json_string_value(json_object_get(c->snap, "id")), "source", c->source,
                         "item", pn, "message", msg));
    free(pn);
    free(name);
    free(msg);
  }
  return 0;
}

static void walk_snapshots(struct ck *c, json_t *snaps) {
  size_t i, j;
  json_t *m, *s;
  json_array_foreach(snaps, i, m) {
    c->snap = m;
    json_array_foreach(json_object_get(m, "sources"), j, s) {
      c->source = json_string_value(json_object_get(s, "name"));
      json_t *tree = json_object_get(s, "tree");
      char *msg = check_ids(c, tree);
      if (msg) {
        char *full =
            xasprintf("item tree unreadable (%s): every item of this source is affected", msg);
        problem(c, json_pack("{s:s, s:s, s:s}", "snapshot",
                             json_string_value(json_object_get(m, "id")), "source", c->source,
                             "message", full));
        free(full);
        free(msg);
        continue;
      }
      char *err = NULL;
      if (tree_foreach(c->r, tree, item_cb, c, &err) != 0) {
        if (c->structure)
          problem(c, json_pack("{s:s, s:s, s:s}", "snapshot",
                               json_string_value(json_object_get(m, "id")), "source", c->source,
                               "message", err));
        free(err);
      }
    }
  }
}

static void read_pack(struct ck *c, const char *name, const char *hex) {
  void *buf;
  size_t len;
  char *err = NULL;
  if (repo_get(c->r, name, 0, 0, &buf, &len, &err) != 0) {
    problem(c, json_pack("{s:s, s:s}", "object", name, "message", err));
    free(err);
    return;
  }
  char got[65];
  sha256_hex(buf, len, got);
  int hash_ok = strcmp(got, hex) == 0;
  if (!hash_ok) {
    char *m = xasprintf("pack %s is corrupted: content hash is %.16s…", name, got);
    problem(c, json_pack("{s:s, s:s}", "object", name, "message", m));
    free(m);
  }
  struct pack_entry *es = NULL;
  size_t n = 0;
  if (pack_parse(c->r, buf, len, &es, &n, &err) != 0) {
    char *m = xasprintf("pack %s: %s", name, err);
    problem(c, json_pack("{s:s, s:s}", "object", name, "message", m));
    free(m);
    free(err);
    /* every blob the index places in this pack is damaged */
    struct index *ix = c->r->index;
    unsigned char pid[32];
    hex_decode(hex, pid, 32);
    pthread_mutex_lock(&ix->lock);
    for (size_t i = 0; i < ix->n_slots; i++) {
      struct index_entry *e = &ix->slots[i];
      if (e->used && e->pack != UINT32_MAX && memcmp(ix->packs[e->pack], pid, 32) == 0) {
        char bh[65];
        hex_encode(e->id, 32, bh);
        json_object_set_new(c->bad_blobs, bh, json_string("its pack header is unreadable"));
      }
    }
    pthread_mutex_unlock(&ix->lock);
    free(buf);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    void *raw;
    size_t rl;
    char *e = NULL;
    c->res->blobs++;
    char bh[65];
    hex_encode(es[i].id, 32, bh);
    if (repo_blob_decode(c->r, es[i].id, es[i].type, (char *)buf + es[i].offset, es[i].length, &raw,
                         &rl, &e) != 0) {
      char *m = xasprintf("pack %s: %s", name, e);
      problem(c, json_pack("{s:s, s:s}", "object", name, "message", m));
      json_object_set_new(c->bad_blobs, bh, json_string(e));
      free(m);
      free(e);
      continue;
    }
    if (rl != es[i].raw_length) {
      json_object_set_new(c->bad_blobs, bh,
                          json_string("decoded size differs from the pack header"));
      problem(c, json_pack("{s:s, s:s}", "object", name, "message",
                           "a blob's decoded size differs from the header"));
    }
    free(raw);
  }
  free(es);
  free(buf);
}

int check_run(struct repo *r, int read_data, int quiet, struct check_result *res, char **err) {
  memset(res, 0, sizeof(*res));
  res->problems = json_array();
  struct ck c = {r, res, quiet, json_object(), json_object(), NULL, NULL, 1};
  int rc = -1;
  json_t *snaps = NULL, *packs = NULL;
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
  /* every indexed pack must exist */
  for (size_t k = 0; k < r->index->n_packs; k++) {
    char hex[65];
    hex_encode(r->index->packs[k], 32, hex);
    if (!json_object_get(c.packs_present, hex)) {
      char *m = xasprintf("pack %s is listed in the index but missing from the repository", hex);
      problem(&c, json_pack("{s:s, s:s}", "object", hex, "message", m));
      free(m);
    }
  }
  if (snapshot_list(r, &snaps, err) != 0)
    goto out;
  res->snapshots = json_array_size(snaps);
  walk_snapshots(&c, snaps);
  if (read_data) {
    json_array_foreach(packs, i, p) {
      const char *name = json_string_value(json_object_get(p, "name"));
      const char *slash = strrchr(name, '/');
      read_pack(&c, name, slash ? slash + 1 : name);
    }
    if (json_object_size(c.bad_blobs) > 0) {
      c.structure = 0;
      walk_snapshots(&c, snaps);
    }
  }
  rc = res->errors ? 1 : 0;
out:
  json_decref(snaps);
  json_decref(packs);
  json_decref(c.packs_present);
  json_decref(c.bad_blobs);
  return rc;
}
