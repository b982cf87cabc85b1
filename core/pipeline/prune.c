/* engine prune: remove data no snapshot references.
 *
 * Order (each step leaves a repository that passes check if killed):
 *  1. read every index object, list the packs, and mark every blob the
 *     snapshots reference (trees and content);
 *  2. write repacked packs: the used blobs of packs that are mostly unused,
 *     copied sealed as they are (after verifying them);
 *  3. write one new index covering every pack that stays;
 *  4. delete the old index objects;
 *  5. delete packs nothing references any more (unused, repacked, or left
 *     unindexed by killed backups).
 * The caller holds the exclusive lock, so no backup can be about to
 * reference data this deletes. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/prune.h"
#include "repo/index.h"
#include "repo/pack.h"
#include "repo/snapshot.h"
#include "repo/tree.h"
#include "util/log.h"

struct pk {
  char hex[65];
  uint64_t size; /* stored object size; 0 if missing */
  int exists;
  uint64_t used, unused; /* blob bytes */
  int action;            /* 0 keep, 1 delete, 2 repack */
};

struct pr {
  struct repo *r;
  json_t *used;  /* blob hex -> true */
  json_t *packs; /* pack hex -> index into pk array */
  struct pk *pk;
  size_t n_pk;
  json_t *canon; /* blob hex -> [pack hex, type, offset, length, raw] canonical location */
};

static int mark_ids(struct pr *p, json_t *ids) {
  size_t i;
  json_t *v;
  json_array_foreach(ids, i, v) json_object_set(p->used, json_string_value(v), json_true());
  return 0;
}

static int mark_item(void *ud, json_t *item) {
  mark_ids(ud, json_object_get(item, "chunks"));
  return 0;
}

static size_t pack_slot(struct pr *p, const char *hex) {
  json_t *v = json_object_get(p->packs, hex);
  if (v)
    return (size_t)json_integer_value(v);
  p->pk = xrealloc(p->pk, (p->n_pk + 1) * sizeof(*p->pk));
  memset(&p->pk[p->n_pk], 0, sizeof(*p->pk));
  snprintf(p->pk[p->n_pk].hex, 65, "%s", hex);
  json_object_set_new(p->packs, hex, json_integer((json_int_t)p->n_pk));
  return p->n_pk++;
}

/* Flush the packer as a new pack; records its blobs as canonical. */
static int write_pack(struct pr *p, struct packer *pk, json_t *new_packs, struct prune_result *res,
                      char **err) {
  if (pk->n == 0)
    return 0;
  unsigned char id[32];
  if (packer_finish(pk, p->r, id) != 0) {
    *err = xstrdup("unable to seal a pack header");
    return -1;
  }
  char name[80], hex[65];
  pack_object_name(id, name);
  hex_encode(id, 32, hex);
  int rc = repo_put(p->r, name, pk->buf, pk->len, ENGINE_PUT_NO_OVERWRITE, err);
  if (rc == ENGINE_EXISTS) {
    free(*err);
    *err = NULL;
  } else if (rc != 0) {
    return -1;
  }
  json_t *blobs = json_array();
  for (size_t i = 0; i < pk->n; i++) {
    char bh[65];
    hex_encode(pk->entries[i].id, 32, bh);
    json_array_append_new(blobs, json_pack("{s:s, s:s, s:I, s:I, s:I}", "id", bh, "type",
                                           pk->entries[i].type == BLOB_TREE ? "tree" : "data",
                                           "offset", (json_int_t)pk->entries[i].offset, "length",
                                           (json_int_t)pk->entries[i].length, "raw_length",
                                           (json_int_t)pk->entries[i].raw_length));
  }
  json_array_append_new(new_packs, json_pack("{s:s, s:o}", "id", hex, "blobs", blobs));
  res->packs_written++;
  res->bytes_after += pk->len;
  packer_free(pk);
  packer_init(pk);
  return 0;
}

/* The sinks' own housekeeping (engine_sink_ops.cleanup, ABI 1.3): a failure
 * is a warning, prune's result stands. */
static void sink_cleanup(struct repo *r, int dry_run) {
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    const struct engine_sink_ops *ops = s->pi->plugin->sink;
    if (s->failed ||
        ops->struct_size < offsetof(struct engine_sink_ops, cleanup) + sizeof(ops->cleanup) ||
        ops->cleanup == NULL)
      continue;
    host_clear_error(s->pi->host);
    if (ops->cleanup(s->pi->inst, dry_run ? ENGINE_CLEANUP_DRY_RUN : 0) != ENGINE_OK)
      log_warn("sink '%s' (%s): cleanup after prune failed: %s", s->pi->name,
               ops->describe(s->pi->inst), host_last_error(s->pi->host));
  }
}

int prune_run(struct repo *r, const struct prune_opts *o, struct prune_result *res, char **err) {
  memset(res, 0, sizeof(*res));
  struct pr p = {r, json_object(), json_object(), NULL, 0, json_object()};
  json_t *index_names = NULL, *data = NULL, *snaps = NULL, *kept_packs = json_array();
  json_t **loaded = NULL;
  int rc = -1;
  size_t i;
  json_t *v;

  /* 1. what exists, what is indexed, what is used */
  json_t *unreadable = NULL, *dropped = json_array();
  if (repo_list(r, "data/", &data, err) != 0 || repo_list(r, "index/", &index_names, err) != 0 ||
      snapshot_list(r, &snaps, &unreadable, err) != 0)
    goto out;
  /* what an unreadable snapshot references is unknown: deleting anything
   * could destroy it, so prune refuses unless the operator drops it */
  if (snapshot_forget_unreadable(r, unreadable, o->forget_unreadable, o->dry_run, "prune", dropped,
                                 err) != 0)
    goto out;
  json_array_foreach(data, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *slash = strrchr(name, '/');
    size_t k = pack_slot(&p, slash ? slash + 1 : name);
    p.pk[k].exists = 1;
    p.pk[k].size = (uint64_t)json_integer_value(json_object_get(v, "size"));
    res->bytes_before += p.pk[k].size;
  }
  res->packs_before = json_array_size(data);
  res->index_before = json_array_size(index_names);
  loaded = xcalloc(json_array_size(index_names) + 1, sizeof(*loaded));
  json_array_foreach(index_names, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    char *e = NULL;
    if (repo_load_json(r, "index", name + strlen("index/"), &loaded[i], &e) != 0) {
      *err = xasprintf("%s; prune stops without deleting anything: the packs that index lists "
                       "could still hold data snapshots need (run 'engine repair index')",
                       e);
      free(e);
      goto out;
    }
  }
  json_array_foreach(snaps, i, v) {
    size_t k;
    json_t *s;
    json_array_foreach(json_object_get(v, "sources"), k, s) {
      mark_ids(&p, json_object_get(s, "tree"));
      if (tree_foreach(r, json_object_get(s, "tree"), mark_item, &p, err) != 0) {
        char *e = *err;
        *err = xasprintf("snapshot %.8s: %s; prune stops without deleting anything (run check)",
                         json_string_value(json_object_get(v, "id")), e);
        free(e);
        goto out;
      }
    }
  }
  /* canonical location of each used blob: the first existing pack holding it */
  for (size_t x = 0; loaded[x]; x++) {
    size_t k;
    json_t *pe;
    json_array_foreach(json_object_get(loaded[x], "packs"), k, pe) {
      const char *ph = json_string_value(json_object_get(pe, "id"));
      size_t slot = pack_slot(&p, ph);
      size_t b;
      json_t *be;
      json_array_foreach(json_object_get(pe, "blobs"), b, be) {
        const char *bh = json_string_value(json_object_get(be, "id"));
        uint64_t len = (uint64_t)json_integer_value(json_object_get(be, "length"));
        if (p.pk[slot].exists && json_object_get(p.used, bh) && !json_object_get(p.canon, bh)) {
          json_object_set_new(p.canon, bh,
                              json_pack("{s:s, s:O, s:O, s:O, s:O}", "pack", ph, "type",
                                        json_object_get(be, "type"), "offset",
                                        json_object_get(be, "offset"), "length",
                                        json_object_get(be, "length"), "raw_length",
                                        json_object_get(be, "raw_length")));
          p.pk[slot].used += len;
        } else {
          p.pk[slot].unused += len;
          res->blobs_dropped++;
        }
      }
    }
  }
  /* every used blob must have a home, or deleting anything could make it worse */
  {
    const char *bh;
    json_object_foreach(p.used, bh, v) {
      if (!json_object_get(p.canon, bh)) {
        *err = xasprintf("blob %.16s is referenced by a snapshot but is in no existing pack; prune "
                         "stops without "
                         "deleting anything (run 'engine check')",
                         bh);
        goto out;
      }
    }
  }
  res->blobs_used = json_object_size(p.canon);
  /* Unused space is what the pack holds beyond its used blobs: that also
   * counts blobs an earlier prune dropped from the index but kept in a pack
   * it did not repack (the small header and trailer count as unused). */
  for (size_t k = 0; k < p.n_pk; k++)
    if (p.pk[k].exists)
      p.pk[k].unused = p.pk[k].size > p.pk[k].used ? p.pk[k].size - p.pk[k].used : 0;
  /* decide per pack */
  for (size_t k = 0; k < p.n_pk; k++) {
    struct pk *x = &p.pk[k];
    if (!x->exists)
      continue;
    if (x->used == 0)
      x->action = 1;
    else if ((double)x->unused > o->repack_threshold * (double)(x->used + x->unused))
      x->action = 2;
    if (x->action == 1)
      res->packs_deleted++;
    else if (x->action == 2)
      res->packs_repacked++;
    else
      res->bytes_after += x->size;
  }
  if (o->dry_run) {
    /* repacked data lands in new packs of about its used size */
    for (size_t k = 0; k < p.n_pk; k++)
      if (p.pk[k].action == 2)
        res->bytes_after += p.pk[k].used;
    sink_cleanup(r, 1);
    rc = 0;
    goto out;
  }

  /* 2. repack */
  struct packer pkr;
  packer_init(&pkr);
  {
    const char *bh;
    json_object_foreach(p.canon, bh, v) {
      const char *ph = json_string_value(json_object_get(v, "pack"));
      struct pk *x = &p.pk[pack_slot(&p, ph)];
      if (x->action != 2)
        continue;
      char name[80];
      snprintf(name, sizeof(name), "data/%.2s/%s", ph, ph);
      uint64_t off = (uint64_t)json_integer_value(json_object_get(v, "offset"));
      uint64_t len = (uint64_t)json_integer_value(json_object_get(v, "length"));
      void *buf, *raw;
      size_t n, rl;
      if (repo_get(r, name, off, len, &buf, &n, err) != 0) {
        packer_free(&pkr);
        goto out;
      }
      unsigned char id[32];
      hex_decode(bh, id, 32);
      int type = strcmp(json_string_value(json_object_get(v, "type")), "tree") == 0 ? BLOB_TREE
                                                                                    : BLOB_DATA;
      char *derr = NULL;
      if (repo_blob_decode(r, id, type, buf, n, &raw, &rl, &derr) != 0) {
        *err = xasprintf("pack %.16s: %s; prune stops before deleting anything", ph, derr);
        free(derr);
        free(buf);
        packer_free(&pkr);
        goto out;
      }
      free(raw);
      packer_add(&pkr, id, (uint8_t)type, buf, n, (uint32_t)rl);
      free(buf);
      json_object_set_new(v, "pack", json_null()); /* moved: its new home is recorded below */
      if (pkr.len >= r->pack_size && write_pack(&p, &pkr, kept_packs, res, err) != 0) {
        packer_free(&pkr);
        goto out;
      }
    }
  }
  if (write_pack(&p, &pkr, kept_packs, res, err) != 0) {
    packer_free(&pkr);
    goto out;
  }
  packer_free(&pkr);

  /* 3. one new index for everything that stays */
  {
    json_t *by_pack = json_object();
    const char *bh;
    json_object_foreach(p.canon, bh, v) {
      const char *ph = json_string_value(json_object_get(v, "pack"));
      if (!ph)
        continue; /* repacked: listed with its new pack */
      json_t *arr = json_object_get(by_pack, ph);
      if (!arr) {
        arr = json_array();
        json_object_set_new(by_pack, ph, arr);
      }
      json_array_append_new(arr, json_pack("{s:s, s:O, s:O, s:O, s:O}", "id", bh, "type",
                                           json_object_get(v, "type"), "offset",
                                           json_object_get(v, "offset"), "length",
                                           json_object_get(v, "length"), "raw_length",
                                           json_object_get(v, "raw_length")));
    }
    const char *ph;
    json_t *arr;
    json_object_foreach(by_pack, ph, arr) {
      json_array_append_new(kept_packs, json_pack("{s:s, s:O}", "id", ph, "blobs", arr));
    }
    json_decref(by_pack);
    if (json_array_size(kept_packs) > 0) {
      json_t *idx = json_pack("{s:i, s:O}", "version", 1, "packs", kept_packs);
      char id[65];
      int s = repo_save_json(r, "index", idx, id, err);
      json_decref(idx);
      if (s != 0)
        goto out;
      res->index_written = 1;
      /* 4. the old index objects (never the one just written) */
      json_array_foreach(index_names, i, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        if (strcmp(name + strlen("index/"), id) != 0 && repo_delete(r, name, err) != 0)
          goto out;
      }
    } else {
      json_array_foreach(index_names, i, v) {
        if (repo_delete(r, json_string_value(json_object_get(v, "name")), err) != 0)
          goto out;
      }
    }
  }
  /* 5. packs nothing references (in batches where the sink can) */
  {
    char **names = xcalloc(p.n_pk ? p.n_pk : 1, sizeof(char *));
    size_t nn = 0;
    for (size_t k = 0; k < p.n_pk; k++)
      if (p.pk[k].exists && p.pk[k].action != 0)
        names[nn++] = xasprintf("data/%.2s/%s", p.pk[k].hex, p.pk[k].hex);
    int d = repo_delete_many(r, (const char *const *)names, nn, err);
    for (size_t k = 0; k < nn; k++)
      free(names[k]);
    free(names);
    if (d != 0)
      goto out;
  }
  sink_cleanup(r, 0);
  rc = 0;
out:
  if (loaded) {
    for (size_t x = 0; loaded[x]; x++)
      json_decref(loaded[x]);
    free(loaded);
  }
  json_decref(index_names);
  json_decref(data);
  json_decref(snaps);
  json_decref(unreadable);
  json_decref(dropped);
  json_decref(kept_packs);
  json_decref(p.used);
  json_decref(p.packs);
  json_decref(p.canon);
  free(p.pk);
  return rc;
}
