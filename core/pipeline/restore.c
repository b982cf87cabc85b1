/* Restore driver. A manifest's trees are untrusted input: every selected
 * item is checked (tree_item_problem) before anything is written; an item
 * with a "../" or absolute name, an unknown type or a malformed chunk list
 * fails on its own (reported, counted, exit 3) and the others are
 * restored. */
#include "pipeline/restore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repo/keys2.h"
#include "repo/prefetch.h"
#include "repo/tree.h"
#include "pipeline/selection.h"
#include "pipeline/tree_feed.h"
#include "util/cancel.h"
#include "util/log.h"
#include "util/progress.h"

struct sel {
  const struct selection *s; /* NULL: all */
};

static int selected(const struct sel *s, const char *name) {
  return selection_match(s->s, name);
}

struct pass_ctx {
  const struct restore_opts *o;
  struct sel sel;
  struct plugin_instance *pi;
  void *rctx;
  const char *source;
  int validate_only;
  int collect; /* while validating: gather the chunk ids of selected items, in order */
  unsigned char (*ids)[32];
  size_t n_ids, cap_ids;
  struct prefetch *pf;
  uint64_t n_selected; /* while validating: items the selection matches */
  char *first_name;    /* while validating: a name for messages (printable) */
  int first_is_leaf;
  /* while validating: what pass 2 needs of each selected item, so it does
   * not read and parse the tree again (see keep_item) */
  int keep;
  struct kept_item *kept;
  size_t n_kept, cap_kept, kept_bytes, keep_budget;
  uint64_t count, bytes, failed;
  struct progress *progress;
  int list_only;   /* --dry-run for a source that does not check it itself: list the items */
  int interrupted; /* SIGINT/SIGTERM: the walk stopped before this item */
};

/* The walks stop between items once SIGINT or SIGTERM arrived (the
 * callbacks return STOPPED); the item being written is finished or
 * abandoned by its plugin as on any error, never left under its name
 * half-written by the files source. */
#define STOPPED 1

struct rd_ctx {
  struct blob_stream bs;
  struct pass_ctx *pc;
};

static ssize_t rd_read(const struct engine_reader *rd, void *buf, size_t len) {
  struct rd_ctx *c = rd->ctx;
  ssize_t n = blob_stream_read(&c->bs, buf, len);
  if (n < 0)
    log_error("restore: %s", c->bs.err);
  return n;
}

/* Appends the item's chunk ids to pc->ids; returns how many were malformed
 * (those are skipped: pass 2 reports them when it reads the item). */
static size_t collect_ids(struct pass_ctx *pc, json_t *chunks) {
  size_t i, bad = 0;
  json_t *v;
  json_array_foreach(chunks, i, v) {
    if (pc->n_ids == pc->cap_ids) {
      pc->cap_ids = pc->cap_ids ? pc->cap_ids * 2 : 256;
      pc->ids = xrealloc(pc->ids, pc->cap_ids * 32);
    }
    const char *hex = json_string_value(v);
    if (hex && hex_decode(hex, pc->ids[pc->n_ids], 32) == 0)
      pc->n_ids++;
    else
      bad++;
  }
  return bad;
}

/* An item as pass 2 needs it: its chunks are ids[first_id, first_id + n_ids)
 * of the pass's collected ids. */
struct kept_item {
  char *name;
  size_t nlen;
  int type;
  uint64_t size;
  char *meta; /* compact JSON, sorted keys */
  size_t first_id, n_ids;
};

/* Pass 1 keeps the selected items while they take less than this (~300
 * bytes each for the files source: ~80,000 files); a larger tree is read and
 * parsed again in pass 2, on a thread of its own. ENGINE_RESTORE_KEEP_BUDGET
 * (bytes) overrides it, for tests of both ways. */
#define KEEP_BUDGET (24u * 1024 * 1024)

static size_t keep_budget(void) {
  const char *e = getenv("ENGINE_RESTORE_KEEP_BUDGET");
  return e && *e ? (size_t)strtoull(e, NULL, 10) : KEEP_BUDGET;
}

static void drop_kept(struct pass_ctx *pc) {
  for (size_t i = 0; i < pc->n_kept; i++) {
    free(pc->kept[i].name);
    free(pc->kept[i].meta);
  }
  free(pc->kept);
  pc->kept = NULL;
  pc->n_kept = pc->cap_kept = pc->kept_bytes = 0;
  pc->keep = 0;
}

/* The item's metadata as the plugin gets it. Tree lines are written with
 * sorted keys and jansson keeps the order it parsed, so the text comes out
 * sorted without sorting it again. */
static char *meta_text(json_t *item) {
  json_t *m = json_object_get(item, "meta");
  return m ? json_dumps(m, JSON_COMPACT) : xstrdup("{}");
}

/* Takes over name; ids of the item were collected from first_id on. */
static void keep_item(struct pass_ctx *pc, json_t *item, char *name, size_t nlen, size_t first_id) {
  char *meta = meta_text(item);
  size_t est = sizeof(struct kept_item) + nlen + (meta ? strlen(meta) : 0) + 64;
  if (!meta || pc->kept_bytes + est > pc->keep_budget) {
    free(meta);
    free(name);
    drop_kept(pc);
    return;
  }
  if (pc->n_kept == pc->cap_kept) {
    pc->cap_kept = pc->cap_kept ? pc->cap_kept * 2 : 1024;
    pc->kept = xrealloc(pc->kept, pc->cap_kept * sizeof(*pc->kept));
  }
  pc->kept[pc->n_kept++] =
      (struct kept_item){name,
                         nlen,
                         item_type_from_name(json_string_value(json_object_get(item, "type"))),
                         (uint64_t)json_integer_value(json_object_get(item, "size")),
                         meta,
                         first_id,
                         pc->n_ids - first_id};
  pc->kept_bytes += est;
}

static void dry_run_item(struct pass_ctx *pc, const char *name, size_t nlen, int type,
                         uint64_t size) {
  char *pn = printable_name(name, nlen);
  if (pc->o->json) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "source", pc->source, "name", pn, "type",
                          item_type_name(type), "size", (json_int_t)size);
    char *t = json_dumps(o, JSON_COMPACT);
    printf("%s\n", t);
    free(t);
    json_decref(o);
  } else {
    printf("would restore %-8s %s/%s (%llu bytes)\n", item_type_name(type), pc->source, pn,
           (unsigned long long)size);
  }
  free(pn);
  pc->count++;
  pc->bytes += size;
}

/* Hands one item to the source plugin; rc_ctx's stream is initialised with
 * the item's chunks and freed here. */
static void restore_one(struct pass_ctx *pc, const char *name, size_t nlen, int type, uint64_t size,
                        const char *meta, int has_chunks, struct rd_ctx *rc_ctx) {
  struct engine_item ei = {name, nlen, (enum engine_item_type)type, meta, size};
  rc_ctx->bs.pf = pc->pf;
  rc_ctx->pc = pc;
  struct engine_reader rd = {sizeof(rd), rc_ctx, size, rd_read};
  int has_data = has_chunks || type == ENGINE_ITEM_FILE || type == ENGINE_ITEM_STREAM;
  host_clear_error(pc->pi->host);
  int prc = pc->pi->plugin->source->restore_item(pc->rctx, &ei, has_data ? &rd : NULL);
  if (prc != ENGINE_OK) {
    char *pn = printable_name(name, nlen);
    const char *msg = host_last_error(pc->pi->host);
    log_error("restore of %s/%s failed: %s%s%s", pc->source, pn, msg[0] ? msg : "failed",
              rc_ctx->bs.err ? ": " : "", rc_ctx->bs.err ? rc_ctx->bs.err : "");
    free(pn);
    pc->failed++;
  } else {
    pc->count++;
    pc->bytes += size;
    progress_update(pc->progress, pc->bytes, 0, pc->count, 0);
  }
  blob_stream_free(&rc_ctx->bs);
}

/* engine check --restore-test (the plugin flag restore_test=1)? */
static int restore_test(const struct restore_opts *o) {
  for (const char *const *e = o->extra; e && *e; e++)
    if (strcmp(*e, "restore_test=1") == 0)
      return 1;
  return 0;
}

static int item_cb(void *ud, json_t *item) {
  struct pass_ctx *pc = ud;
  if (cancel_requested()) {
    pc->interrupted = 1;
    return STOPPED;
  }
  size_t nlen = 0;
  char *name = json_get_bytes(item, "name", &nlen);
  /* An item the core cannot restore (no or unsafe name, unknown type, bad
   * chunk list) fails on its own: pass 1 reports and counts it, pass 2
   * skips it, and the other items are restored. */
  char *pn = NULL;
  char *why = tree_item_problem(item, NULL, &pn);
  int sel = name ? selected(&pc->sel, name) : !pc->sel.s || !pc->sel.s->glob;
  const struct repo_tenant *t =
      why || pc->o->repo->format < 2 ? NULL : keys2_item_tenant(pc->o->repo, item);
  if (t && t->shredded)
    why = xasprintf("it belongs to tenant '%s', whose key was shredded on %s: its data can no "
                    "longer be decrypted by anyone",
                    t->name, t->shredded);
  if (why) {
    if (pc->validate_only && sel && t && restore_test(pc->o)) {
      /* gone by design: a restore test verifies what can be restored */
      log_info("restore test: %s/%s skipped: %s", pc->source, pn, why);
    } else if (pc->validate_only && sel) {
      log_error("restore of %s/%s failed: %s%s", pc->source, pn,
                t ? "" : "the snapshot's item is damaged: ", why);
      pc->failed++;
    }
    free(why);
    free(pn);
    free(name);
    return 0;
  }
  free(pn);
  if (pc->validate_only) {
    int keep = 0;
    size_t first_id = 0;
    if (sel) {
      pc->n_selected++;
      first_id = pc->n_ids;
      size_t bad = 0;
      if (pc->collect)
        bad = collect_ids(pc, json_object_get(item, "chunks"));
      if (bad)
        drop_kept(pc); /* pass 2 reads the tree again and reports them */
      keep = pc->keep;
    }
    /* for the hint of an --only that matches nothing: the first item that
     * is not a directory shows the shape of the names best */
    const char *ty = json_string_value(json_object_get(item, "type"));
    int leaf = !ty || strcmp(ty, "dir") != 0;
    if (!pc->first_name || (leaf && !pc->first_is_leaf)) {
      free(pc->first_name);
      pc->first_name = printable_name(name, nlen);
      pc->first_is_leaf = leaf;
    }
    if (keep)
      keep_item(pc, item, name, nlen, first_id); /* takes name */
    else
      free(name);
    return 0;
  }
  if (!selected(&pc->sel, name)) {
    free(name);
    return 0;
  }
  int type = item_type_from_name(json_string_value(json_object_get(item, "type")));
  uint64_t size = (uint64_t)json_integer_value(json_object_get(item, "size"));
  json_t *chunks = json_object_get(item, "chunks");
  if (pc->list_only) {
    dry_run_item(pc, name, nlen, type, size);
    free(name);
    return 0;
  }
  char *meta = meta_text(item);
  struct rd_ctx rc_ctx;
  blob_stream_init(&rc_ctx.bs, pc->o->repo, chunks, BLOB_DATA);
  restore_one(pc, name, nlen, type, size, meta, json_array_size(chunks) > 0, &rc_ctx);
  free(meta);
  free(name);
  return 0;
}

/* Pass 2 over the items pass 1 kept: the same as item_cb without parsing. */
static int restore_kept(struct pass_ctx *pc, const struct pass_ctx *p1) {
  for (size_t k = 0; k < p1->n_kept; k++) {
    if (cancel_requested()) {
      pc->interrupted = 1;
      return STOPPED;
    }
    const struct kept_item *ki = &p1->kept[k];
    struct rd_ctx rc_ctx;
    blob_stream_init_ids(&rc_ctx.bs, pc->o->repo,
                         (const unsigned char(*)[32])p1->ids + ki->first_id, ki->n_ids, BLOB_DATA);
    restore_one(pc, ki->name, ki->nlen, ki->type, ki->size, ki->meta, ki->n_ids > 0, &rc_ctx);
  }
  return 0;
}

static int ask_yes(const char *question) {
  fprintf(stderr, "%s [y/N] ", question);
  fflush(stderr);
  char line[16];
  if (!fgets(line, sizeof(line), stdin))
    return 0;
  return line[0] == 'y' || line[0] == 'Y';
}

/* Does the source check a --dry-run against its target itself (ABI 1.7,
 * ENGINE_SOURCE_CAP_DRY_RUN: a server-side dry run)? Then it is called as for
 * a restore, with opts->dry_run set; the items of other sources are listed. */
static int source_dry_runs(const struct restore_opts *o, const struct snapshot_source *src) {
  for (size_t i = 0; o->dry_run && i < o->n_sources; i++) {
    const struct plugin_instance *pi = o->sources[i];
    if (strcmp(pi->name, src->name) != 0 || strcmp(pi->plugin->name, src->type) != 0)
      continue;
    const struct engine_source_ops *ops = pi->plugin->source;
    return ENGINE_HAS_FIELD(ops, struct engine_source_ops, capabilities) &&
           (ops->capabilities & ENGINE_SOURCE_CAP_DRY_RUN);
  }
  return 0;
}

/* The pipeline's plugin for the snapshot's source src, for reading an --only
 * glob in its terms; NULL when the pipeline has no such source. */
static const struct engine_source_ops *source_ops(const struct restore_opts *o,
                                                  const struct snapshot_source *src) {
  for (size_t i = 0; i < o->n_sources; i++)
    if (strcmp(o->sources[i]->name, src->name) == 0 &&
        strcmp(o->sources[i]->plugin->name, src->type) == 0)
      return o->sources[i]->plugin->source;
  return NULL;
}

static struct plugin_instance *find_instance(const struct restore_opts *o, const char *name,
                                             const char *type, char **err) {
  for (size_t i = 0; i < o->n_sources; i++)
    if (strcmp(o->sources[i]->name, name) == 0) {
      if (strcmp(o->sources[i]->plugin->name, type) != 0) {
        *err = xasprintf("source '%s' is of type '%s' in the snapshot but '%s' in the pipeline",
                         name, type, o->sources[i]->plugin->name);
        return NULL;
      }
      return o->sources[i];
    }
  *err = xasprintf("the snapshot's source '%s' (type %s) is not in the pipeline any more; add it "
                   "back to restore it",
                   name, type);
  return NULL;
}

/* How a restore reads: from a local disk a read costs little, so ranges stay
 * small (a blob or a few) and the cores decode in parallel; from an object
 * store every request costs latency (and money), so the blobs of each pack
 * that the next 32 MiB of the restore needs are read in ranges of up to
 * 64 MiB (at least half of each wanted; a whole pack in one), 6 at once
 * whatever the number of cores, streamed so that each blob is decoded as
 * soon as it is in, with a 64 MiB window of decoded blobs and 16 MiB kept
 * for duplicates (docs/internals/pipeline.md has the memory bound).
 * ENGINE_RESTORE_THREADS / _BUDGET / _RANGE_MAX / _KEEP / _STREAM / _DENSITY
 * override (bench/). */
static size_t env_size(const char *name, size_t dflt) {
  const char *e = getenv(name);
  return e && *e ? (size_t)strtoull(e, NULL, 10) : dflt;
}

static struct prefetch_opts restore_read_plan(const struct repo *r) {
  int local = 1; /* reads go to the first sink that answers */
  for (size_t i = 0; i < r->n_sinks; i++)
    if (!r->sinks[i].failed) {
      local = strcmp(r->sinks[i].pi->plugin->name, "local") == 0;
      break;
    }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  struct prefetch_opts p;
  if (local)
    p = (struct prefetch_opts){.threads = (int)(ncpu < 1   ? 1
                                                : ncpu > 8 ? 8
                                                           : ncpu),
                               .budget = 24u << 20,
                               .range_max = 2u << 20,
                               .max_ahead = 256,
                               .keep_budget = 16u << 20,
                               .stream = 0,
                               .density = 75};
  else
    p = (struct prefetch_opts){.threads = 6,
                               .budget = 64u << 20,
                               .range_max = 64u << 20,
                               .max_ahead = 8192,
                               .keep_budget = 16u << 20,
                               .stream = 1,
                               .density = 50};
  p.threads = (int)env_size("ENGINE_RESTORE_THREADS", (size_t)p.threads);
  p.budget = env_size("ENGINE_RESTORE_BUDGET", p.budget);
  p.range_max = env_size("ENGINE_RESTORE_RANGE_MAX", p.range_max);
  p.keep_budget = env_size("ENGINE_RESTORE_KEEP", p.keep_budget);
  p.stream = (int)env_size("ENGINE_RESTORE_STREAM", (size_t)p.stream);
  p.density = (unsigned)env_size("ENGINE_RESTORE_DENSITY", p.density);
  return p;
}

/* Pass 1 over source src: validate every name, and gather the chunk ids of
 * the selected items for the read-ahead of pass 2. */
static int validate_source(const struct restore_opts *o, const struct snapshot_source *src,
                           const struct selection *sel, struct pass_ctx *pc, char **err) {
  const char *sn = src->name;
  const char *glob = sel ? sel->glob : NULL;
  *pc = (struct pass_ctx){.o = o,
                          .source = sn,
                          .sel = {sel},
                          .validate_only = 1,
                          .list_only = o->dry_run && !source_dry_runs(o, src),
                          .collect = !o->dry_run || source_dry_runs(o, src),
                          .keep = !o->dry_run || source_dry_runs(o, src),
                          .keep_budget = keep_budget()};
  int r = tree_foreach_ids(o->repo, (const unsigned char(*)[32])src->tree, src->n_tree, item_cb, pc,
                           err);
  if (r < 0)
    return -1;
  if (pc->interrupted) {
    *err = xstrdup("interrupted by SIGINT/SIGTERM before anything was written");
    return -1;
  }
  if (glob && pc->n_selected == 0 && pc->failed == 0) {
    /* a typo in --only must not end in "restored 0 items" and exit 0 */
    char *reading = selection_reading(sel);
    *err = pc->first_name
               ? xasprintf("--only %s/%s: no item of source '%s' matches '%s' (%s%sitem names are "
                           "relative paths as stored, e.g. '%s')",
                           sn, glob, sn, glob, reading, reading[0] ? "; " : "", pc->first_name)
               : xasprintf("--only %s/%s: source '%s' has no items in this snapshot", sn, glob, sn);
    free(reading);
    return -1;
  }
  return 0;
}

/* The source plugin's restore_begin for pc->source, asking before it
 * overwrites what the target holds (or refusing without --yes). */
static int begin_source(const struct restore_opts *o, struct pass_ctx *pc, char **err) {
  const char *sn = pc->source;
  struct engine_restore_opts ro = {sizeof(ro), o->target, o->dry_run, o->yes, o->extra};
  host_clear_error(pc->pi->host);
  int b = pc->pi->plugin->source->restore_begin(pc->pi->inst, &ro, &pc->rctx);
  if (b == ENGINE_EXISTS) {
    const char *why = host_last_error(pc->pi->host);
    char *q = xasprintf("source '%s': %s. Overwrite?", sn, why[0] ? why : "the target holds data");
    int yes = o->interactive && ask_yes(q);
    free(q);
    if (!yes) {
      *err = o->interactive ? xasprintf("source '%s': not confirmed; nothing was written", sn)
                            : xasprintf("source '%s': %s; pass --yes to confirm (nothing was "
                                        "written)",
                                        sn, why[0] ? why : "the target holds data");
      return -1;
    }
    ro.yes = 1;
    host_clear_error(pc->pi->host);
    b = pc->pi->plugin->source->restore_begin(pc->pi->inst, &ro, &pc->rctx);
  }
  if (b != ENGINE_OK) {
    const char *why = host_last_error(pc->pi->host);
    *err = xasprintf("source '%s': unable to start the restore: %s", sn, why[0] ? why : "failed");
    return -1;
  }
  return 0;
}

/* Pass 2 over source src: hand its selected items to the plugin. p1 is what
 * pass 1 found. -1: the restore stops (*err); otherwise the counts are in
 * res. */
static int restore_source(const struct restore_opts *o, const struct snapshot_source *src,
                          const struct selection *sel, struct pass_ctx *p1, struct progress *prog,
                          struct restore_result *res, char **err) {
  const char *sn = src->name;
  struct pass_ctx pc = {.o = o, .source = sn, .sel = {sel}, .progress = prog};
  pc.list_only = o->dry_run && !source_dry_runs(o, src);
  if (!pc.list_only) {
    pc.pi = find_instance(o, sn, src->type, err);
    if (!pc.pi || begin_source(o, &pc, err) != 0)
      return -1;
    /* read ahead: decrypt and decompress on all cores while the plugin writes */
    struct prefetch_opts rp = restore_read_plan(o->repo);
    pc.pf = prefetch_start(o->repo, (const unsigned char(*)[32])p1->ids, p1->n_ids, BLOB_DATA, &rp);
  }
  int r;
  if (p1->keep) { /* the items as pass 1 found them */
    log_debug("restore: source '%s': %zu items kept from the validation pass", sn, p1->n_kept);
    r = restore_kept(&pc, p1);
  } else { /* the tree is parsed again, ahead on another thread while items are written */
    log_debug("restore: source '%s': reading the tree again", sn);
    r = tree_feed_foreach(o->repo, (const unsigned char(*)[32])src->tree, src->n_tree, item_cb, &pc,
                          err);
  }
  drop_kept(p1);
  prefetch_stop(pc.pf);
  if (!pc.list_only) {
    int st = (r == 0 && pc.failed == 0 && !pc.interrupted) ? ENGINE_OK : ENGINE_ERROR;
    host_clear_error(pc.pi->host);
    if (pc.pi->plugin->source->restore_end(pc.rctx, st) != ENGINE_OK) {
      const char *why = host_last_error(pc.pi->host);
      log_error("source '%s': finishing the restore failed: %s", sn, why[0] ? why : "failed");
      pc.failed++;
    }
  }
  res->items += pc.count;
  res->bytes += pc.bytes;
  res->failed += pc.failed + p1->failed;
  if (pc.interrupted) {
    *err = xasprintf("interrupted by SIGINT/SIGTERM: the restore stopped part-way: %llu items "
                     "were restored and the target is incomplete",
                     (unsigned long long)res->items);
    return -1;
  }
  if (r < 0) {
    char *e = *err;
    *err = xasprintf(
        "%s; the restore stopped part-way: %llu items were restored and the target is incomplete",
        e, (unsigned long long)res->items);
    free(e);
    return -1;
  }
  return 0;
}

int restore_run(const struct restore_opts *o, struct restore_result *res, char **err) {
  memset(res, 0, sizeof(*res));
  const struct snapshot *snap = o->snapshot;
  /* --only SOURCE[/GLOB], GLOB in the source's own terms when its plugin
   * reads them (ABI 1.8 select_globs) */
  struct selection only = {0};
  const char *only_src = NULL;
  if (o->only) {
    char *spec = xstrdup(o->only);
    char *slash = strchr(spec, '/');
    if (slash && !slash[1])
      *slash = '\0'; /* "SOURCE/": the whole source */
    int bad = selection_parse(spec, &only, err);
    free(spec);
    if (bad)
      return -1;
    only_src = only.source;
    for (size_t i = 0; i < snap->n_sources; i++)
      if (strcmp(snap->sources[i].name, only_src) == 0)
        selection_translate(&only, source_ops(o, &snap->sources[i]));
  }
  size_t n = snap->n_sources;
  int any = 0;
  for (size_t i = 0; i < n; i++)
    any |= !only_src || strcmp(snap->sources[i].name, only_src) == 0;
  if (!any) {
    *err = only_src ? xasprintf("the snapshot has no source named '%s'", only_src)
                    : xstrdup("the snapshot has no sources");
    selection_free(&only);
    return -1;
  }
  int rc = 0;
  struct pass_ctx *ids_of = xcalloc(n ? n : 1, sizeof(*ids_of));
  for (size_t i = 0; i < n && rc == 0; i++)
    if (!only_src || strcmp(snap->sources[i].name, only_src) == 0)
      rc = validate_source(o, &snap->sources[i], &only, &ids_of[i], err);
  struct progress *prog =
      progress_new(!o->dry_run && (o->progress > 0 || (o->progress < 0 && o->interactive)));
  for (size_t i = 0; i < n && rc == 0; i++)
    if (!only_src || strcmp(snap->sources[i].name, only_src) == 0)
      rc = restore_source(o, &snap->sources[i], &only, &ids_of[i], prog, res, err);
  progress_finish(prog);
  progress_free(prog);
  for (size_t i = 0; i < n; i++) {
    free(ids_of[i].ids);
    free(ids_of[i].first_name);
    drop_kept(&ids_of[i]);
  }
  free(ids_of);
  selection_free(&only);
  if (rc == 0 && res->failed > 0)
    return 3;
  return rc;
}
