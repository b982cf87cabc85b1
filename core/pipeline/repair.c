/* engine repair index|snapshots (see repair.h). */
#include "pipeline/repair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chunker/fastcdc.h"
#include "repo/index.h"
#include "repo/pack.h"
#include "repo/snapshot.h"
#include "repo/tree.h"
#include "util/log.h"

/* ---- repair index --------------------------------------------------------- */

/* Index objects are written in batches of about this many blobs, so none
 * grows without bound on a large repository. */
#define REPAIR_INDEX_BATCH 100000

struct rebuilt_pack {
  struct index_pack_entries p;
  struct pack_entry *owned;
};

static void note(json_t *problems, int quiet, char *msg) {
  if (!quiet)
    log_warn("%s", msg);
  json_array_append_new(problems, json_string(msg));
  free(msg);
}

/* Entries the loaded index places in pack number num (a pack whose header
 * is damaged keeps them: its blobs may still decode). */
struct of_pack {
  uint32_t num;
  struct pack_entry *es;
  size_t n, cap;
};

static void take_of_pack(void *ud, const struct index_entry *e) {
  struct of_pack *o = ud;
  if (e->pack != o->num)
    return;
  if (o->n == o->cap) {
    o->cap = o->cap ? o->cap * 2 : 16;
    o->es = xrealloc(o->es, o->cap * sizeof(*o->es));
  }
  o->es[o->n] = (struct pack_entry){e->type, {0}, e->offset, e->length, e->raw_length};
  memcpy(o->es[o->n++].id, e->id, 32);
}

static struct pack_entry *entries_of(struct index *ix, uint32_t num, size_t *n) {
  struct of_pack o = {num, NULL, 0, 0};
  index_foreach(ix, take_of_pack, &o);
  *n = o.n;
  return o.es;
}

static void count_per_pack(void *ud, const struct index_entry *e) {
  ((size_t *)ud)[e->pack]++;
}

/* Does the loaded index place every blob of this header where the header
 * does, and nothing else in this pack (n_in_pack: index entries naming the
 * pack)? A blob the index places in another pack is fine if that pack's
 * own header agrees (checked when it is read). */
static int header_indexed(struct index *ix, uint32_t num, const struct pack_entry *es, size_t n,
                          size_t n_in_pack) {
  size_t matched = 0;
  for (size_t i = 0; i < n; i++) {
    struct index_entry e;
    if (!index_get(ix, es[i].id, &e))
      return 0;
    if (e.pack == num) {
      if (e.offset != es[i].offset || e.length != es[i].length || e.type != es[i].type)
        return 0;
      matched++;
    }
  }
  return matched == n_in_pack;
}

/* Write the rebuilt index in batches of REPAIR_INDEX_BATCH blobs, then
 * delete the index objects (names) it replaces: new objects first, then the
 * old ones, so a repair killed in between leaves a valid index (the union
 * of both). */
static int write_index(struct repo *r, const struct rebuilt_pack *rb, size_t n_rb, json_t *names,
                       json_t *written, size_t *deleted, char **err) {
  size_t from = 0, count = 0;
  for (size_t k = 0; k <= n_rb; k++) {
    if (k < n_rb && (count == 0 || count + rb[k].p.n <= REPAIR_INDEX_BATCH)) {
      count += rb[k].p.n;
      continue;
    }
    if (k > from) {
      struct index_pack_entries *batch = xcalloc(k - from, sizeof(*batch));
      for (size_t x = from; x < k; x++)
        batch[x - from] = rb[x].p;
      char id[65];
      int s = index_save_entries(r, batch, k - from, id, err);
      free(batch);
      if (s != 0)
        return -1;
      json_array_append_new(written, json_string(id));
    }
    from = k;
    count = k < n_rb ? rb[k].p.n : 0;
  }
  size_t i, k;
  json_t *v, *w;
  json_array_foreach(names, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    int keep = 0;
    json_array_foreach(written, k, w) keep |=
        strcmp(name + strlen("index/"), json_string_value(w)) == 0;
    if (keep)
      continue;
    if (repo_delete(r, name, err) != 0)
      return -1;
    (*deleted)++;
  }
  return 0;
}

int repair_index(struct repo *r, const struct repair_opts *o, json_t **report, char **err) {
  struct index *ix = r->index;
  json_t *packs = NULL, *names = NULL, *problems = json_array(), *written = json_array();
  struct rebuilt_pack *rb = NULL;
  size_t n_rb = 0, unindexed = 0, header_damaged = 0, missing = 0, deleted = 0;
  uint64_t blobs = 0;
  int rc = -1, changed = json_array_size(ix->damaged) > 0;
  if (repo_list(r, "data/", &packs, err) != 0 || repo_list(r, "index/", &names, err) != 0)
    goto out;
  size_t np = json_array_size(packs), i;
  json_t *v;
  rb = xcalloc(np ? np : 1, sizeof(*rb));
  unsigned char *present = xcalloc(ix->n_packs ? ix->n_packs : 1, 1);
  size_t *in_pack = xcalloc(ix->n_packs ? ix->n_packs : 1, sizeof(size_t));
  index_foreach(ix, count_per_pack, in_pack);
  json_array_foreach(packs, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *hex = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    unsigned char pid[32];
    if (strlen(hex) != 64 || hex_decode(hex, pid, 32) != 0)
      continue; /* not a pack name */
    uint32_t num = 0;
    int indexed = index_find_pack(ix, pid, &num);
    if (indexed)
      present[num] = 1;
    struct pack_entry *es = NULL;
    size_t n = 0;
    char *e = NULL;
    if (pack_read_header(r, name, (uint64_t)json_integer_value(json_object_get(v, "size")), &es, &n,
                         NULL, &e) != 0) {
      header_damaged++;
      size_t kept = 0;
      if (indexed)
        es = entries_of(ix, num, &kept);
      n = kept;
      note(problems, o->quiet,
           kept ? xasprintf("%s; its %zu blob(s) stay where the readable index objects place them",
                            e, kept)
                : xasprintf("%s; no readable index object lists it, so its blobs cannot be "
                            "located (lost unless the pack is restored from another copy)",
                            e));
      free(e);
      if (!kept) {
        free(es);
        continue;
      }
    } else if (!indexed || !header_indexed(ix, num, es, n, in_pack[num])) {
      unindexed++;
      changed = 1;
    }
    memcpy(rb[n_rb].p.pack_id, pid, 32);
    rb[n_rb].p.entries = es;
    rb[n_rb].p.n = n;
    rb[n_rb].owned = es;
    n_rb++;
    blobs += n;
  }
  for (size_t k = 0; k < ix->n_packs; k++)
    if (!present[k]) {
      char hex[65];
      hex_encode(ix->packs[k], 32, hex);
      missing++;
      changed = 1;
      note(problems, o->quiet,
           xasprintf("pack %s is in the index but not in the repository: its entries are dropped "
                     "(the snapshots using them are damaged: see 'engine repair snapshots')",
                     hex));
    }
  free(present);
  free(in_pack);
  if (changed && !o->dry_run && write_index(r, rb, n_rb, names, written, &deleted, err) != 0)
    goto out;
  *report = json_pack("{s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:O}", "changed", changed,
                      "dry_run", o->dry_run, "packs", (json_int_t)n_rb, "blobs", (json_int_t)blobs,
                      "packs_unindexed", (json_int_t)unindexed, "packs_missing",
                      (json_int_t)missing, "packs_header_damaged", (json_int_t)header_damaged,
                      "index_damaged", (json_int_t)json_array_size(ix->damaged), "index_written",
                      (json_int_t)json_array_size(written), "index_deleted", (json_int_t)deleted,
                      "problems", problems);
  rc = 0;
out:
  for (size_t k = 0; k < n_rb; k++)
    free(rb[k].owned);
  free(rb);
  json_decref(packs);
  json_decref(names);
  json_decref(problems);
  json_decref(written);
  return rc;
}

/* ---- repair snapshots: a small writer for tree blobs ------------------------ */

struct tree_writer {
  struct repo *r;
  struct chunker *ck;
  unsigned char *chunk;
  size_t chunk_len;
  struct packer pk;
  uint32_t *packs; /* pack numbers written */
  size_t n_packs;
  unsigned char (*ids)[32]; /* tree blob ids of the current stream */
  size_t n_ids, cap_ids;
  uint64_t size;
};

static int tw_flush_pack(struct tree_writer *w, char **err) {
  if (w->pk.n == 0)
    return 0;
  unsigned char pid[32];
  if (packer_finish(&w->pk, w->r, pid) != 0) {
    *err = xstrdup("unable to seal a pack header");
    return -1;
  }
  char name[80];
  pack_object_name(pid, name);
  int rc = repo_put(w->r, name, w->pk.buf, w->pk.len, ENGINE_PUT_NO_OVERWRITE, err);
  if (rc == ENGINE_EXISTS) {
    free(*err);
    *err = NULL;
  } else if (rc != 0) {
    return -1;
  }
  uint32_t num = index_add_pack(w->r->index, pid);
  for (size_t i = 0; i < w->pk.n; i++) {
    const struct pack_entry *e = &w->pk.entries[i];
    index_put(w->r->index, e->id, num, e->offset, e->length, e->raw_length, e->type);
  }
  w->packs = xrealloc(w->packs, (w->n_packs + 1) * sizeof(*w->packs));
  w->packs[w->n_packs++] = num;
  packer_free(&w->pk);
  packer_init(&w->pk);
  return 0;
}

static int tw_emit_chunk(struct tree_writer *w, char **err) {
  if (w->chunk_len == 0)
    return 0;
  unsigned char id[32];
  repo_blob_id(w->r, w->chunk, w->chunk_len, id);
  if (w->n_ids == w->cap_ids) {
    w->cap_ids = w->cap_ids ? 2 * w->cap_ids : 8;
    w->ids = xrealloc(w->ids, w->cap_ids * 32);
  }
  memcpy(w->ids[w->n_ids++], id, 32);
  struct index_entry e;
  int have = index_get(w->r->index, id, &e) && e.pack != UINT32_MAX && e.type == BLOB_TREE;
  if (!have) {
    void *enc;
    size_t enc_len;
    if (w->pk.len == 0 && packer_init_key(&w->pk, w->r) != 0) {
      *err = xstrdup("unable to make a pack's data key");
      return -1;
    }
    if (repo_blob_encode(w->r, packer_key(&w->pk, w->r), id, BLOB_TREE, w->chunk, w->chunk_len,
                         &enc, &enc_len) != 0) {
      *err = xstrdup("unable to encode a tree blob");
      return -1;
    }
    packer_add(&w->pk, id, BLOB_TREE, enc, enc_len, (uint32_t)w->chunk_len);
    free(enc);
    if (w->pk.len >= w->r->pack_size && tw_flush_pack(w, err) != 0)
      return -1;
  }
  w->chunk_len = 0;
  return 0;
}

/* Cut the stream the way backups cut trees, so unchanged stretches of the
 * tree deduplicate against the original's blobs. */
static int tw_write(struct tree_writer *w, const unsigned char *p, size_t len, char **err) {
  size_t max = w->r->chunker.max_size;
  w->size += len;
  while (len > 0) {
    size_t room = max - w->chunk_len, take = len < room ? len : room;
    int boundary = 0;
    size_t used = chunker_scan(w->ck, p, take, &boundary);
    memcpy(w->chunk + w->chunk_len, p, used);
    w->chunk_len += used;
    p += used;
    len -= used;
    if (boundary || w->chunk_len == max) {
      if (!boundary)
        chunker_reset(w->ck);
      if (tw_emit_chunk(w, err) != 0)
        return -1;
    }
  }
  return 0;
}

/* ---- repair snapshots: salvaging a tree ------------------------------------ */

struct salvage {
  struct repo *r;
  const struct repair_opts *o;
  json_t *blob_state;  /* blob hex -> reason it is lost, or true when it reads */
  json_t *packs_there; /* pack hex -> true */
  FILE *spool;         /* surviving lines */
  json_t *lost;        /* [{"item"|"item_b64", "reason"}] */
  uint64_t kept, kept_bytes, lost_unnamed_bytes, lost_count, tree_blobs_lost;
};

/* NULL when a restore can read the blob, else why not (malloc'd). */
static char *blob_lost(struct salvage *s, const char *hex, enum blob_type type) {
  json_t *st = json_object_get(s->blob_state, hex);
  if (st)
    return json_is_string(st) ? xstrdup(json_string_value(st)) : NULL;
  unsigned char id[32];
  struct index_entry e;
  char *why = NULL;
  if (hex_decode(hex, id, 32) != 0) {
    why = xstrdup("malformed blob id");
  } else if (!index_get(s->r->index, id, &e) || e.pack == UINT32_MAX) {
    why = xasprintf("blob %.16s is not in the index", hex);
  } else if (e.type != type) {
    why = xasprintf("blob %.16s has the wrong type", hex);
  } else {
    char ph[65];
    hex_encode(s->r->index->packs[e.pack], 32, ph);
    if (!json_object_get(s->packs_there, ph)) {
      why = xasprintf("blob %.16s: its pack %.16s is missing", hex, ph);
    } else if (s->o->read_data && type == BLOB_DATA) {
      void *raw;
      size_t n;
      char *e2 = NULL;
      if (repo_read_blob(s->r, id, type, &raw, &n, &e2) != 0) {
        why = xasprintf("blob %.16s is damaged: %s", hex, e2);
        free(e2);
      } else {
        free(raw);
      }
    }
  }
  json_object_set_new(s->blob_state, hex, why ? json_string(why) : json_true());
  return why;
}

static void lose(struct salvage *s, json_t *item, const char *reason) {
  json_t *l = json_object();
  size_t nl = 0;
  char *name = item ? json_get_bytes(item, "name", &nl) : NULL;
  if (name)
    json_set_bytes(l, "item", name, nl);
  free(name);
  json_object_set_new(l, "reason", json_string(reason));
  json_array_append_new(s->lost, l);
  s->lost_count++;
}

/* One complete tree line: keep it (written to the spool as it was) or
 * record it as lost. first_after_gap: the line may be the tail of a line
 * whose start was in a lost blob; it is kept only if it is a whole item. */
static int salvage_line(struct salvage *s, const char *line, size_t len, int first_after_gap,
                        char **err) {
  json_error_t je;
  json_t *item = json_loadb(line, len, 0, &je);
  if (!json_is_object(item)) {
    json_decref(item);
    if (first_after_gap)
      s->lost_unnamed_bytes += len + 1;
    else
      lose(s, NULL, "the item's tree line is not valid JSON");
    return 0;
  }
  char *why = tree_item_problem(item, s->r->index, NULL);
  size_t i;
  json_t *v;
  if (!why)
    json_array_foreach(json_object_get(item, "chunks"), i, v) {
      why = blob_lost(s, json_string_value(v), BLOB_DATA);
      if (why)
        break;
    }
  if (why) {
    lose(s, item, why);
    free(why);
  } else {
    if (fwrite(line, 1, len, s->spool) != len || fputc('\n', s->spool) == EOF) {
      *err = xstrdup("unable to write the repair's spool file");
      json_decref(item);
      return -1;
    }
    s->kept++;
    s->kept_bytes += (uint64_t)json_integer_value(json_object_get(item, "size"));
  }
  json_decref(item);
  return 0;
}

/* Read a source's tree blob by blob; a blob that cannot be read loses the
 * lines it held (and the partial lines around it), the rest is kept. */
static int salvage_tree(struct salvage *s, const struct snapshot_source *src, char **err) {
  char *cur = NULL;
  size_t cur_len = 0, cur_cap = 0;
  int after_gap = 0, rc = 0;
  for (size_t i = 0; i < src->n_tree; i++) {
    char hex[65];
    hex_encode(src->tree[i], 32, hex);
    char *why = blob_lost(s, hex, BLOB_TREE);
    void *data = NULL;
    size_t n = 0;
    if (!why) {
      char *e = NULL;
      if (repo_read_blob(s->r, src->tree[i], BLOB_TREE, &data, &n, &e) != 0) {
        why = e;
        json_object_set_new(s->blob_state, hex, json_string(why));
      }
    }
    if (why) {
      log_warn("tree blob %.16s cannot be read (%s); the items it described are lost", hex, why);
      free(why);
      s->tree_blobs_lost++;
      s->lost_unnamed_bytes += cur_len;
      cur_len = 0;
      after_gap = 1;
      continue;
    }
    const char *p = data, *end = p + n;
    while (p < end && rc == 0) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      size_t take = nl ? (size_t)(nl - p) : (size_t)(end - p);
      if (cur_len + take > cur_cap) {
        cur_cap = (cur_len + take) * 2 + 256;
        cur = xrealloc(cur, cur_cap);
      }
      memcpy(cur + cur_len, p, take);
      cur_len += take;
      p += take;
      if (nl) {
        p++;
        rc = salvage_line(s, cur, cur_len, after_gap, err);
        after_gap = 0;
        cur_len = 0;
      }
    }
    free(data);
    if (rc != 0)
      break;
  }
  if (rc == 0 && cur_len > 0) /* a stream that does not end with a newline */
    s->lost_unnamed_bytes += cur_len;
  free(cur);
  return rc;
}

/* ---- repair snapshots: the driver ------------------------------------------ */

static int selected(const struct repair_opts *o, const char *id) {
  if (!o->targets || json_array_size(o->targets) == 0)
    return 1;
  size_t i;
  json_t *t;
  json_array_foreach(o->targets, i, t) {
    const char *ref = json_string_value(t);
    if (ref && strncmp(id, ref, strlen(ref)) == 0)
      return 1;
  }
  return 0;
}

/* What salvaging one source kept and lost, and its new tree. */
struct salvaged {
  json_t *lost; /* [{"item"|"item_b64", "reason"}] */
  uint64_t kept, kept_bytes, lost_unnamed_bytes, tree_blobs_lost;
  unsigned char (*tree)[32];
  size_t n_tree;
  uint64_t tree_size;
};

/* A source warning and a snapshot warning about something repair lost. */
static void warn_lost(struct snapshot *nm, struct snapshot_source *ns, const char *item,
                      size_t item_len, const char *msg) {
  snapshot_note_add(&ns->warnings, &ns->n_warnings, NULL, item, item_len, msg);
  snapshot_note_add(&nm->warnings, &nm->n_warnings, ns->name, item, item_len, msg);
}

/* The salvaged source i of nm: its new tree, what it kept and lost. */
static void repaired_source(struct snapshot *nm, size_t i, struct salvaged *sv) {
  struct snapshot_source *ns = &nm->sources[i];
  free(ns->tree);
  ns->tree = sv->tree;
  ns->n_tree = sv->n_tree;
  sv->tree = NULL;
  ns->tree_size = sv->tree_size;
  ns->items = sv->kept;
  ns->bytes = sv->kept_bytes;
  ns->failed_items += json_array_size(sv->lost);
  snapshot_notes_free(ns->lost_items, ns->n_lost_items);
  ns->lost_items = NULL;
  ns->n_lost_items = 0;
  if (sv->tree_blobs_lost)
    ns->lost_tree_blobs = sv->tree_blobs_lost;
  size_t k;
  json_t *l;
  json_array_foreach(sv->lost, k, l) {
    size_t len = 0;
    char *item = json_get_bytes(l, "item", &len);
    const char *reason = json_string_value(json_object_get(l, "reason"));
    snapshot_note_add(&ns->lost_items, &ns->n_lost_items, NULL, item, len, reason);
    char *msg = xasprintf("lost, removed by repair: %s", reason);
    warn_lost(nm, ns, item, len, msg);
    free(msg);
    free(item);
  }
  if (sv->tree_blobs_lost)
    warn_lost(nm, ns, NULL, 0,
              "part of the item tree was lost: the items it described cannot be named");
}

/* A new snapshot of what survives of m, with the same time: a later
 * created_ns, status partial, tag repaired, repaired_from m (docs/FORMAT.md
 * §9). */
static int write_repaired(struct repo *r, const struct snapshot *m, const char *index_id,
                          struct salvaged *sv, char out_id[65], char **err) {
  struct snapshot *nm = snapshot_dup(m);
  if (!nm) {
    *err = xasprintf("snapshot %.8s: unable to copy its manifest", m->id);
    return -1;
  }
  free(nm->index);
  nm->index = xstrdup(index_id);
  uint64_t items = 0;
  for (size_t i = 0; i < nm->n_sources; i++) {
    repaired_source(nm, i, &sv[i]);
    items += sv[i].kept;
  }
  nm->stats.items = items;
  free(nm->status);
  nm->status = xstrdup("partial");
  free(nm->repaired_from);
  nm->repaired_from = xstrdup(m->id);
  nm->tags = xrealloc(nm->tags, (nm->n_tags + 1) * sizeof(char *));
  nm->tags[nm->n_tags++] = xstrdup("repaired");
  free(nm->engine_version);
  nm->engine_version = xstrdup(ENGINE_VERSION);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  nm->created_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
  int rc = snapshot_save(r, nm, err);
  memcpy(out_id, nm->id, 65);
  snapshot_free(nm);
  return rc;
}

/* Salvage the tree of every source of m into sv[] (the surviving lines in
 * spools[]). */
static int salvage_sources(const struct snapshot *m, struct salvage *s, FILE **spools,
                           struct salvaged *sv, char **err) {
  for (size_t i = 0; i < m->n_sources; i++) {
    spools[i] = tmpfile();
    if (!spools[i]) {
      *err = xstrdup("unable to create a spool file for the repair");
      return -1;
    }
    s->spool = spools[i];
    s->lost = json_array();
    s->kept = s->kept_bytes = s->lost_unnamed_bytes = s->lost_count = s->tree_blobs_lost = 0;
    int rc = salvage_tree(s, &m->sources[i], err);
    sv[i].lost = s->lost;
    sv[i].kept = s->kept;
    sv[i].kept_bytes = s->kept_bytes;
    sv[i].lost_unnamed_bytes = s->lost_unnamed_bytes;
    sv[i].tree_blobs_lost = s->tree_blobs_lost;
    if (rc != 0)
      return -1;
  }
  return 0;
}

/* Write each source's surviving tree (from spools[]) as tree blobs, then
 * the index of the new packs (index_id, "" when no pack was needed). */
static int write_trees(struct repo *r, size_t n, FILE **spools, struct salvaged *sv,
                       char index_id[65], char **err) {
  struct tree_writer w = {.r = r};
  struct chunker_params cp = r->chunker;
  cp.seed = r->chunker_seed;
  if (chunker_new(&cp, &w.ck) != 0) {
    *err = xstrdup("unable to set up the chunker");
    return -1;
  }
  w.chunk = xmalloc(r->chunker.max_size);
  packer_init(&w.pk);
  int wrc = 0;
  for (size_t i = 0; i < n && wrc == 0; i++) {
    w.ids = NULL;
    w.n_ids = w.cap_ids = 0;
    w.size = 0;
    chunker_reset(w.ck);
    w.chunk_len = 0;
    rewind(spools[i]);
    unsigned char buf[65536];
    size_t got;
    while (wrc == 0 && (got = fread(buf, 1, sizeof(buf), spools[i])) > 0)
      wrc = tw_write(&w, buf, got, err);
    if (wrc == 0)
      wrc = tw_emit_chunk(&w, err);
    sv[i].tree = w.ids;
    sv[i].n_tree = w.n_ids;
    sv[i].tree_size = w.size;
  }
  if (wrc == 0)
    wrc = tw_flush_pack(&w, err);
  index_id[0] = '\0';
  if (wrc == 0 && w.n_packs > 0)
    wrc = index_save_packs(r, w.packs, w.n_packs, index_id, err);
  packer_free(&w.pk);
  free(w.chunk);
  free(w.packs);
  chunker_free(w.ck);
  return wrc;
}

/* Salvage every source of one snapshot; 1 when something is lost. */
static int repair_one(struct repo *r, const struct repair_opts *o, const struct snapshot *m,
                      struct salvage *s, json_t *entry, char **err) {
  size_t n = m->n_sources;
  FILE **spools = xcalloc(n + 1, sizeof(FILE *));
  struct salvaged *sv = xcalloc(n + 1, sizeof(*sv));
  uint64_t lost_total = 0, kept_total = 0, unnamed_total = 0, tree_lost = 0;
  int rc = -1;
  if (salvage_sources(m, s, spools, sv, err) != 0)
    goto out;
  json_t *lost_by_source = json_array();
  for (size_t i = 0; i < n; i++) {
    json_array_append(lost_by_source, sv[i].lost);
    lost_total += json_array_size(sv[i].lost);
    kept_total += sv[i].kept;
    unnamed_total += sv[i].lost_unnamed_bytes;
    tree_lost += sv[i].tree_blobs_lost;
  }
  json_object_set_new(entry, "items_lost", json_integer((json_int_t)lost_total));
  json_object_set_new(entry, "items_kept", json_integer((json_int_t)kept_total));
  json_object_set_new(entry, "tree_blobs_lost", json_integer((json_int_t)tree_lost));
  json_object_set_new(entry, "lost", lost_by_source);
  if (lost_total == 0 && tree_lost == 0 && unnamed_total == 0) {
    json_object_set_new(entry, "result", json_string("sound"));
    rc = 0;
    goto out;
  }
  if (o->dry_run) {
    json_object_set_new(entry, "result", json_string("would repair"));
    rc = 1;
    goto out;
  }
  /* write each surviving tree, then the index of the new packs, then the
   * manifest: killed before the manifest, nothing refers to the new packs */
  char index_id[65], new_id[65];
  if (write_trees(r, n, spools, sv, index_id, err) != 0 ||
      write_repaired(r, m, index_id, sv, new_id, err) != 0)
    goto out;
  json_object_set_new(entry, "result", json_string("repaired"));
  json_object_set_new(entry, "repaired_as", json_string(new_id));
  rc = 1;
out:
  for (size_t k = 0; k < n; k++) {
    if (spools[k])
      fclose(spools[k]);
    json_decref(sv[k].lost);
    free(sv[k].tree);
  }
  free(spools);
  free(sv);
  return rc;
}

int repair_snapshots(struct repo *r, const struct repair_opts *o, json_t **report, char **err) {
  json_t *unreadable = NULL, *packs = NULL, *out = json_array();
  struct snapshot_list all = {NULL, 0};
  struct salvage sv = {.r = r, .o = o, .blob_state = json_object(), .packs_there = json_object()};
  int rc = -1, any = 0;
  size_t i;
  json_t *v;
  if (json_array_size(r->index->damaged) > 0) {
    *err =
        xasprintf("%zu index object(s) cannot be read, so blobs they list look lost; run 'engine "
                  "repair index' first",
                  json_array_size(r->index->damaged));
    goto done;
  }
  if (repo_list(r, "data/", &packs, err) != 0 || snapshot_list(r, &all, &unreadable, err) != 0)
    goto done;
  json_array_foreach(packs, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    json_object_set_new(sv.packs_there, strrchr(name, '/') ? strrchr(name, '/') + 1 : name,
                        json_true());
  }
  json_array_foreach(unreadable, i, v) {
    if (!selected(o, json_string_value(json_object_get(v, "id"))))
      continue;
    json_array_append_new(out,
                          json_pack("{s:O, s:s, s:O}", "id", json_object_get(v, "id"), "result",
                                    "unreadable", "error", json_object_get(v, "error")));
    if (!o->quiet)
      log_warn("snapshot %s: its manifest cannot be read (%s); nothing of it can be salvaged",
               json_string_value(json_object_get(v, "id")),
               json_string_value(json_object_get(v, "error")));
  }
  /* already repaired: a readable snapshot names it in repaired_from */
  json_t *done_from = json_object();
  for (size_t k = 0; k < all.n; k++)
    if (all.v[k]->repaired_from)
      json_object_set_new(done_from, all.v[k]->repaired_from, json_string(all.v[k]->id));
  for (size_t k = 0; k < all.n; k++) {
    const char *id = all.v[k]->id;
    if (!selected(o, id))
      continue;
    json_t *entry = json_pack("{s:s}", "id", id);
    json_array_append_new(out, entry);
    json_t *as = json_object_get(done_from, id);
    if (as) {
      json_object_set_new(entry, "result", json_string("already repaired"));
      json_object_set(entry, "repaired_as", as);
      continue;
    }
    int one = repair_one(r, o, all.v[k], &sv, entry, err);
    if (one < 0) {
      json_decref(done_from);
      goto done;
    }
    any |= one;
  }
  json_decref(done_from);
  rc = any ? 3 : 0;
done:
  if (rc >= 0)
    *report = json_pack("{s:O, s:b}", "snapshots", out, "dry_run", o->dry_run);
  json_decref(out);
  snapshot_list_free(&all);
  json_decref(unreadable);
  json_decref(packs);
  json_decref(sv.blob_state);
  json_decref(sv.packs_there);
  return rc;
}
