/* engine prune: remove data no snapshot references.
 *
 * Steps (each leaves a repository that passes check if killed):
 *  1. plan_load: list the packs and index objects, read every snapshot (an
 *     unreadable one stops prune unless the operator dropped it) and mark
 *     every blob they reference (trees and content); read every index
 *     object and give each used blob its canonical copy: the first existing
 *     pack that holds it;
 *  2. prune_decide: keep, delete or repack each pack (pure, unit-tested);
 *  3. repack: read each pack to repack once, verify and copy its used blobs,
 *     sealed as they are, into new packs;
 *  4. rewrite_index: new index objects for every pack that stays, then the
 *     old index objects are deleted;
 *  5. delete the packs nothing references any more (unused, repacked, or
 *     left unindexed by killed backups).
 * The caller holds the exclusive lock, so no backup can be about to
 * reference data this deletes. Memory: two in-memory indexes (blobs the
 * snapshots use; their canonical copies), ~70 bytes a blob each. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/prune.h"
#include "repo/index.h"
#include "repo/keys2.h"
#include "repo/pack.h"
#include "repo/snapshot.h"
#include "repo/tree.h"
#include "util/log.h"

/* Index objects written by prune hold about this much text each. */
#define PRUNE_INDEX_BATCH (4u * 1024 * 1024)

void prune_decide(struct prune_pack *packs, size_t n, double threshold, struct prune_result *res) {
  for (size_t k = 0; k < n; k++) {
    struct prune_pack *x = &packs[k];
    if (!x->exists) {
      x->action = PACK_KEEP; /* nothing to delete; its index entries are dropped */
      continue;
    }
    uint64_t unused = x->size > x->used ? x->size - x->used : 0;
    if (x->used == 0)
      x->action = PACK_DELETE;
    else if ((double)unused > threshold * (double)x->size)
      x->action = PACK_REPACK;
    else
      x->action = PACK_KEEP;
    if (x->action == PACK_DELETE)
      res->packs_deleted++;
    else if (x->action == PACK_REPACK)
      res->packs_repacked++;
    else
      res->bytes_after += x->size;
  }
}

struct plan {
  struct repo *r;
  struct index *used;  /* blobs the snapshots reference (pack field unused) */
  struct index *canon; /* their canonical copies; pack numbers index `packs` */
  struct prune_pack *packs;
  size_t n_packs, cap_packs;
  json_t *index_names;
  struct prune_result *res;
  int rewrite; /* prune_opts.rewrite */
};

/* The plan's pack number of a pack id (the canonical index numbers them). */
static uint32_t pack_num(struct plan *p, const unsigned char id[32]) {
  uint32_t num = index_add_pack(p->canon, id);
  if (num >= p->n_packs) {
    if (num >= p->cap_packs) {
      p->cap_packs = (num + 1) * 2;
      p->packs = xrealloc(p->packs, p->cap_packs * sizeof(*p->packs));
    }
    memset(&p->packs[p->n_packs], 0, (num + 1 - p->n_packs) * sizeof(*p->packs));
    p->n_packs = num + 1;
    memcpy(p->packs[num].id, id, 32);
  }
  return num;
}

static void mark(struct plan *p, const char *hex, enum blob_type type) {
  unsigned char id[32];
  if (hex && hex_decode(hex, id, 32) == 0)
    index_put(p->used, id, 0, 0, 0, 0, (uint8_t)type);
}

static int mark_item(void *ud, json_t *item) {
  struct plan *p = ud;
  const struct repo_tenant *t = p->r->format >= 2 ? keys2_item_tenant(p->r, item) : NULL;
  if (t && t->shredded) /* no one can read it: its packs go */
    return 0;
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(item, "chunks"), i, v)
      mark(ud, json_string_value(v), BLOB_DATA);
  return 0;
}

/* Every blob snapshot m uses: its tree blobs and its items' chunks. */
static int mark_snapshot(struct plan *p, const struct snapshot *m, char **err) {
  for (size_t k = 0; k < m->n_sources; k++) {
    const struct snapshot_source *src = &m->sources[k];
    for (size_t t = 0; t < src->n_tree; t++)
      index_put(p->used, src->tree[t], 0, 0, 0, 0, BLOB_TREE);
    if (tree_foreach_ids(p->r, (const unsigned char(*)[32])src->tree, src->n_tree, mark_item, p,
                         err) != 0) {
      char *e = *err;
      *err = xasprintf("snapshot %.8s: %s; prune stops without deleting anything (run 'engine "
                       "check')",
                       m->id, e);
      free(e);
      return -1;
    }
  }
  return 0;
}

static void take_entry(void *ud, const unsigned char pack_id[32], const struct pack_entry *e) {
  struct plan *p = ud;
  uint32_t num = pack_num(p, pack_id);
  if (p->packs[num].exists && index_get(p->used, e->id, NULL) &&
      !index_get(p->canon, e->id, NULL)) {
    index_put(p->canon, e->id, num, e->offset, e->length, e->raw_length, e->type);
    p->packs[num].used += e->length;
  } else {
    p->res->blobs_dropped++;
  }
}

struct homeless {
  struct index *canon;
  char hex[65];
};

static void find_homeless(void *ud, const struct index_entry *e) {
  struct homeless *h = ud;
  if (!h->hex[0] && !index_get(h->canon, e->id, NULL))
    hex_encode(e->id, 32, h->hex);
}

static int plan_load(struct plan *p, const struct prune_opts *o, json_t *dropped, char **err) {
  struct repo *r = p->r;
  json_t *data = NULL, *unreadable = NULL;
  struct snapshot_list snaps = {NULL, 0};
  int rc = -1;
  size_t i;
  json_t *v;
  if (repo_list(r, "data/", &data, err) != 0 || repo_list(r, "index/", &p->index_names, err) != 0 ||
      snapshot_list(r, &snaps, &unreadable, err) != 0)
    goto out;
  /* what an unreadable snapshot references is unknown: deleting anything
   * could destroy it, so prune refuses unless the operator drops it */
  if (snapshot_forget_unreadable(r, unreadable, o->forget_unreadable, o->dry_run, "prune", dropped,
                                 err) != 0)
    goto out;
  json_array_foreach(data, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *hex = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    unsigned char id[32];
    if (strlen(hex) != 64 || hex_decode(hex, id, 32) != 0)
      continue;
    uint32_t num = pack_num(p, id);
    p->packs[num].exists = 1;
    p->packs[num].size = (uint64_t)json_integer_value(json_object_get(v, "size"));
    p->res->bytes_before += p->packs[num].size;
    p->res->packs_before++;
  }
  p->res->index_before = json_array_size(p->index_names);
  for (size_t k = 0; k < snaps.n; k++)
    if (mark_snapshot(p, snaps.v[k], err) != 0)
      goto out;
  json_array_foreach(p->index_names, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    char *e = NULL;
    if (index_read_object(r, name + strlen("index/"), take_entry, p, &e) != 0) {
      *err = xasprintf("%s; prune stops without deleting anything: the packs that index lists "
                       "could still hold data snapshots need (run 'engine repair index')",
                       e);
      free(e);
      goto out;
    }
  }
  /* every used blob must have a home, or deleting anything could make it worse */
  struct homeless h = {p->canon, ""};
  index_foreach(p->used, find_homeless, &h);
  if (h.hex[0]) {
    *err = xasprintf("blob %.16s is referenced by a snapshot but is in no existing pack; prune "
                     "stops without deleting anything (run 'engine check')",
                     h.hex);
    goto out;
  }
  p->res->blobs_used = index_size(p->canon);
  rc = 0;
out:
  json_decref(data);
  snapshot_list_free(&snaps);
  json_decref(unreadable);
  return rc;
}

/* Canonical entries grouped by pack: first[k] .. first[k + 1]. */
struct grouped {
  struct index_entry *e;
  size_t *first;
};

static void count_canon(void *ud, const struct index_entry *e) {
  ((struct grouped *)ud)->first[e->pack + 2]++;
}

static void place_canon(void *ud, const struct index_entry *e) {
  struct grouped *g = ud;
  g->e[g->first[e->pack + 1]++] = *e;
}

static void group(struct plan *p, struct grouped *g) {
  g->first = xcalloc(p->n_packs + 2, sizeof(size_t));
  index_foreach(p->canon, count_canon, g);
  for (size_t k = 2; k < p->n_packs + 2; k++)
    g->first[k] += g->first[k - 1];
  g->e = xcalloc(g->first[p->n_packs + 1] + 1, sizeof(*g->e));
  index_foreach(p->canon, place_canon, g);
}

static int write_pack(struct plan *p, struct packer *pk, char **err) {
  if (pk->n == 0)
    return 0;
  unsigned char id[32];
  if (packer_finish(pk, p->r, id) != 0) {
    *err = xstrdup("unable to seal a pack header");
    return -1;
  }
  char name[80];
  pack_object_name(id, name);
  int rc = repo_put(p->r, name, pk->buf, pk->len, ENGINE_PUT_NO_OVERWRITE, err);
  if (rc == ENGINE_EXISTS) {
    free(*err);
    *err = NULL;
  } else if (rc != 0) {
    return -1;
  }
  uint32_t num = pack_num(p, id);
  p->packs[num].exists = 1;
  p->packs[num].size = pk->len;
  p->packs[num].action = PACK_KEEP;
  p->packs[num].fresh = 1;
  for (size_t i = 0; i < pk->n; i++) {
    const struct pack_entry *e = &pk->entries[i];
    index_put(p->canon, e->id, num, e->offset, e->length, e->raw_length, e->type);
  }
  p->res->packs_written++;
  p->res->bytes_after += pk->len;
  packer_free(pk);
  packer_init(pk);
  return 0;
}

/* Read each pack to repack once (its used span, one request), verify each
 * used blob and copy it, sealed as it is, into new packs. */
static int repack(struct plan *p, char **err) {
  struct grouped g;
  group(p, &g);
  struct packer pk;
  packer_init(&pk);
  const struct repo_tenant *pk_tenant = NULL; /* whose blobs pk holds */
  int rc = -1;
  size_t n_packs = p->n_packs; /* new packs are appended and never repacked */
  for (size_t k = 0; k < n_packs; k++) {
    if (p->packs[k].action != PACK_REPACK || g.first[k] == g.first[k + 1])
      continue;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = g.first[k]; i < g.first[k + 1]; i++) {
      if (g.e[i].offset < lo)
        lo = g.e[i].offset;
      if ((uint64_t)g.e[i].offset + g.e[i].length > hi)
        hi = (uint64_t)g.e[i].offset + g.e[i].length;
    }
    char name[80], hex[65];
    pack_object_name(p->packs[k].id, name);
    hex_encode(p->packs[k].id, 32, hex);
    void *buf;
    size_t got;
    unsigned char dk[32];
    int v2 = p->r->format >= 2;
    const struct repo_tenant *t = NULL;
    if (v2 && repo_pack_key_t(p->r, p->packs[k].id, dk, &t, err) != 0)
      goto out;
    const struct repo_tenant *from = t; /* the key its blobs open with */
    /* a tenant's blobs move into packs of that tenant only */
    if (p->rewrite && t && keys2_tenant_successor(p->r, t))
      t = keys2_tenant_successor(p->r, t); /* same chunk-id key, a new secret */
    if (v2 && pk.len > 0 && t != pk_tenant && write_pack(p, &pk, err) != 0)
      goto out;
    pk_tenant = t;
    if (repo_get(p->r, name, lo, hi - lo, &buf, &got, err) != 0)
      goto out;
    for (size_t i = g.first[k]; i < g.first[k + 1]; i++) {
      const struct index_entry *e = &g.e[i];
      void *raw;
      size_t rl;
      char *derr = NULL;
      if (e->offset - lo + e->length > got ||
          repo_blob_decode_idk(p->r, v2 ? dk : NULL, repo_tenant_idk(p->r, from), e->id,
                               (enum blob_type)e->type, (char *)buf + (e->offset - lo), e->length,
                               &raw, &rl, &derr) != 0) {
        *err = xasprintf("pack %.16s: %s; prune stops before deleting anything", hex,
                         derr ? derr : "short read");
        free(derr);
        free(buf);
        goto out;
      }
      if (!v2) {
        packer_add(&pk, e->id, e->type, (char *)buf + (e->offset - lo), e->length, (uint32_t)rl);
      } else {
        /* format 2: each pack has its own data key, so a blob moves by
         * being sealed again under the new pack's */
        void *enc = NULL;
        size_t el = 0;
        if ((pk.len == 0 && packer_init_key_tenant(&pk, p->r, t) != 0) ||
            repo_blob_encode(p->r, packer_key(&pk, p->r), e->id, (enum blob_type)e->type, raw, rl,
                             &enc, &el) != 0) {
          *err = xstrdup("unable to seal a blob for a repacked pack; prune stops before deleting "
                         "anything");
          free(raw);
          free(buf);
          goto out;
        }
        packer_add(&pk, e->id, e->type, enc, el, (uint32_t)rl);
        free(enc);
      }
      free(raw);
      if (pk.len >= p->r->pack_size && write_pack(p, &pk, err) != 0) {
        free(buf);
        goto out;
      }
    }
    free(buf);
  }
  rc = write_pack(p, &pk, err);
out:
  packer_free(&pk);
  free(g.e);
  free(g.first);
  return rc;
}

/* New index objects for every pack that stays, then the old ones go. */
static int rewrite_index(struct plan *p, char **err) {
  struct grouped g;
  group(p, &g);
  struct index_text t = {0};
  json_t *written = json_array();
  int rc = -1;
  for (size_t k = 0; k <= p->n_packs; k++) {
    if (k < p->n_packs && p->packs[k].exists && p->packs[k].action == PACK_KEEP &&
        g.first[k] < g.first[k + 1]) {
      size_t n = g.first[k + 1] - g.first[k];
      struct pack_entry *es = xcalloc(n, sizeof(*es));
      for (size_t i = 0; i < n; i++) {
        const struct index_entry *e = &g.e[g.first[k] + i];
        es[i] = (struct pack_entry){e->type, {0}, e->offset, e->length, e->raw_length};
        memcpy(es[i].id, e->id, 32);
      }
      index_text_add_pack(&t, p->packs[k].id, es, n);
      free(es);
    }
    if (t.packs > 0 && (t.len >= PRUNE_INDEX_BATCH || k == p->n_packs)) {
      size_t len;
      char *text = index_text_finish(&t, &len), id[65];
      int s = repo_save_text(p->r, "index", text, len, id, err);
      free(text);
      if (s != 0)
        goto out;
      json_array_append_new(written, json_string(id));
      p->res->index_written++;
    }
  }
  size_t i, k;
  json_t *v, *w;
  json_array_foreach(p->index_names, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    int keep = 0;
    json_array_foreach(written, k, w) keep |=
        strcmp(name + strlen("index/"), json_string_value(w)) == 0;
    if (!keep && repo_delete(p->r, name, err) != 0)
      goto out;
  }
  rc = 0;
out:
  free(t.p);
  free(g.e);
  free(g.first);
  json_decref(written);
  return rc;
}

static int delete_packs(struct plan *p, char **err) {
  char **names = xcalloc(p->n_packs + 1, sizeof(char *));
  size_t nn = 0;
  for (size_t k = 0; k < p->n_packs; k++)
    if (p->packs[k].exists && p->packs[k].action != PACK_KEEP) {
      names[nn] = xmalloc(80);
      pack_object_name(p->packs[k].id, names[nn++]);
    }
  int d = repo_delete_many(p->r, (const char *const *)names, nn, err);
  for (size_t k = 0; k < nn; k++)
    free(names[k]);
  free(names);
  return d;
}

/* The sinks' own housekeeping (engine_sink_ops.cleanup, ABI 1.3): a failure
 * is a warning, prune's result stands. */
static void sink_cleanup(struct repo *r, int dry_run) {
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    const struct engine_sink_ops *ops = s->pi->plugin->sink;
    if (s->failed || !ENGINE_HAS_FIELD(ops, struct engine_sink_ops, cleanup) ||
        ops->cleanup == NULL)
      continue;
    host_clear_error(s->pi->host);
    if (ops->cleanup(s->pi->inst, dry_run ? ENGINE_CLEANUP_DRY_RUN : 0) != ENGINE_OK)
      log_warn("sink '%s' (%s): cleanup after prune failed: %s", s->pi->name,
               ops->describe(s->pi->inst), host_last_error(s->pi->host));
  }
}

/* key rotate --rewrite: every kept pack sealed under a retired key is
 * repacked (one ranged read of its first 8 bytes, the key id). */
static int retired_packs(struct plan *p, char **err) {
  for (size_t k = 0; k < p->n_packs; k++) {
    struct prune_pack *x = &p->packs[k];
    if (!x->exists || x->action != PACK_KEEP)
      continue;
    char name[80];
    pack_object_name(x->id, name);
    void *head = NULL;
    size_t got = 0;
    if (repo_get(p->r, name, 0, 8, &head, &got, err) != 0)
      return -1;
    int retired = got == 8 && keys2_kid_retired(p->r, head);
    free(head);
    if (retired) {
      x->action = PACK_REPACK;
      p->res->packs_repacked++;
      p->res->bytes_after -= x->size;
    }
  }
  return 0;
}

int prune_run(struct repo *r, const struct prune_opts *o, struct prune_result *res, char **err) {
  memset(res, 0, sizeof(*res));
  struct plan p = {.r = r, .used = index_new(), .canon = index_new(), .res = res};
  json_t *dropped = json_array();
  int rc = -1;
  if (plan_load(&p, o, dropped, err) != 0)
    goto out;
  prune_decide(p.packs, p.n_packs, o->repack_threshold, res);
  p.rewrite = o->rewrite;
  if (o->rewrite && retired_packs(&p, err) != 0)
    goto out;
  if (o->dry_run) {
    /* repacked data lands in new packs of about its used size */
    for (size_t k = 0; k < p.n_packs; k++)
      if (p.packs[k].action == PACK_REPACK)
        res->bytes_after += p.packs[k].used;
    sink_cleanup(r, 1);
    rc = 0;
    goto out;
  }
  if (repack(&p, err) != 0 || rewrite_index(&p, err) != 0 || delete_packs(&p, err) != 0)
    goto out;
  sink_cleanup(r, 0);
  rc = 0;
out:
  index_free(p.used);
  index_free(p.canon);
  free(p.packs);
  json_decref(p.index_names);
  json_decref(dropped);
  return rc;
}
