/* engine run | validate | snapshots | show | restore | check | plugins */
#include "cli/commands.h"

#include <fnmatch.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/dispatch.h"
#include "ops/status.h"
#include "pipeline/backup.h"
#include "pipeline/check.h"
#include "pipeline/prune.h"
#include "pipeline/repair.h"
#include "pipeline/restore.h"
#include "pipeline/selection.h"
#include "repo/records.h"
#include "repo/snapshot.h"
#include "repo/tree.h"
#include "util/cron.h"
#include "util/log.h"
#include "util/cancel.h"
#include "util/sysinfo.h"
#include "util/progress.h"

static void print_json(json_t *j) {
  cli_print_json(j);
}

/* ---- run ------------------------------------------------------------------ */

/* The parent of a run: the newest snapshot of this pipeline from this host
 * (NULL: every item is read in full). An unreadable snapshot cannot be a
 * parent; the run goes on (a new recovery point is what a damaged
 * repository needs most) but says so. */
static struct snapshot *find_parent(struct repo *r, const char *pipeline) {
  struct snapshot_list all;
  json_t *unreadable;
  char *err = NULL;
  if (snapshot_list(r, &all, &unreadable, &err) != 0) {
    free(err);
    return NULL;
  }
  size_t k;
  json_t *u;
  json_array_foreach(unreadable, k, u) log_warn(
      "snapshot %s cannot be read (%s); it is not used as a parent. Run 'engine check'",
      json_string_value(json_object_get(u, "id")), json_string_value(json_object_get(u, "error")));
  json_decref(unreadable);
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  struct snapshot *parent = NULL;
  for (size_t i = all.n; i-- > 0 && !parent;) {
    const struct snapshot *m = all.v[i];
    /* a snapshot of a selection (run --only) lacks the rest: never a parent */
    if (m->pipeline && m->hostname && strcmp(m->pipeline, pipeline) == 0 &&
        strcmp(m->hostname, host) == 0 && !status_snapshot_only(m))
      parent = snapshot_list_take(&all, i);
  }
  snapshot_list_free(&all);
  return parent;
}

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The end of a run, on every path: its runs/ record in the repository (when
 * it was opened) and the --metrics-file (ops/status.h), then the context is
 * closed. err (taken; NULL: none) is the failure, logged first. */
static int run_end(struct cli_ctx *c, const struct cli_args *a, struct status_run *sr, double t0,
                   int rc, char *err) {
  if (err && rc != EXIT_INTERRUPTED)
    log_error("%s", err);
  sr->exit_code = rc;
  sr->seconds = mono_now() - t0;
  sr->error = err;
  if (!sr->outcome)
    sr->outcome = rc == EXIT_OK            ? "complete"
                  : rc == EXIT_PARTIAL     ? "partial"
                  : rc == EXIT_INTERRUPTED ? "interrupted"
                                           : "failed";
  sr->only = a->only;
  sr->n_only = a->n_only;
  char *e = NULL;
  if (!a->dry_run && c->repo && c->p && status_record_run(c->repo, c->p->name, sr, &e) != 0) {
    log_warn("the outcome of this run was not recorded in the repository: %s", e);
    free(e);
    e = NULL;
  }
  if (a->metrics_file && !a->dry_run) {
    /* the pipeline's name, or its file's when it could not be read */
    const char *base = strrchr(a->pos[0], '/') ? strrchr(a->pos[0], '/') + 1 : a->pos[0];
    char *stem = xasprintf("%.*s", (int)strcspn(base, "."), base);
    if (status_write_metrics_file(a->metrics_file, c->repo, c->p, c->p ? c->p->name : stem, sr,
                                  &e) != 0) {
      log_warn("%s", e);
      free(e);
    }
    free(stem);
  }
  cli_close(c);
  free(err);
  return rc;
}

int cmd_run(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  char *err = NULL;
  int64_t when = a->time ? a->time_s : 0; /* checked by the parser */
  double t0 = mono_now();
  struct status_run sr = {.started = (int64_t)time(NULL)};
  if (cli_load_pipeline(g, a->pos[0], &c, &err) != 0 || cli_before_hooks(c.p, &err) != 0)
    return run_end(&c, a, &sr, t0, cancel_requested() ? EXIT_INTERRUPTED : EXIT_ERROR, err);
  if (cli_open(&c, 1, 1, a->dry_run, &err) != 0)
    return run_end(&c, a, &sr, t0, EXIT_ERROR, err);
  if (c.repo->created && !a->dry_run && !g->quiet)
    fprintf(stderr, "engine: initialised a new repository %.8s on %zu sink(s)\n", c.repo->id,
            c.p->n_sinks);
  c.repo->use_index_cache = 1;
  if (a->dry_run) {
    if (cli_load_index(&c, &err) != 0)
      return run_end(&c, a, &sr, t0, EXIT_ERROR, err);
  } else {
    /* a shared lock that also waits for another run of this pipeline on
     * this host (engine serve's job, a timer), as long as it takes unless
     * --lock-wait says otherwise */
    struct repo_lock_opts lo = {.wait_ms = a->lock_wait_ms,
                                .pipeline = c.p->name,
                                .run_wait_ms = a->lock_wait ? a->lock_wait_ms : -1};
    int lrc = repo_lock_acquire_opts(c.repo, &lo, &c.lock, &err);
    sr.lock_wait_seconds = lo.waited_s;
    if (lrc != 0 && cancel_requested())
      return run_end(&c, a, &sr, t0, EXIT_INTERRUPTED, err);
    if (lrc != 0) {
      sr.outcome = lo.run_conflict ? "skipped" : NULL;
      return run_end(&c, a, &sr, t0, EXIT_ERROR, err);
    }
    if (lo.waited_s >= 1.0)
      log_info("waited %.0f s for the repository lock", lo.waited_s);
    if (cli_load_index(&c, &err) != 0)
      return run_end(&c, a, &sr, t0, EXIT_ERROR, err);
  }
  int progress = a->progress && strcmp(a->progress, "always") == 0 ? 1
                 : a->progress && strcmp(a->progress, "never") == 0
                     ? 0
                     : isatty(STDERR_FILENO) && !g->quiet;
  /* the parent: the newest snapshot of this pipeline from this host */
  struct snapshot *parent = c.repo->created ? NULL : find_parent(c.repo, c.p->name);
  struct backup_opts bo = {c.p,
                           c.repo,
                           c.sources,
                           a->dry_run,
                           progress,
                           when,
                           c.p->max_inflight,
                           parent,
                           c.skipped_sinks,
                           (const char *const *)a->only,
                           a->n_only};
  struct backup_result r;
  int rc = backup_run(&bo, &r, &err);
  snapshot_free(parent);
  if (rc != 0) {
    if (cancel_requested()) {
      fprintf(stderr, "engine: %s\n", err ? err : "interrupted");
      return run_end(&c, a, &sr, t0, EXIT_INTERRUPTED, err);
    }
    return run_end(&c, a, &sr, t0, EXIT_ERROR, err);
  }
  sr.snapshot = a->dry_run ? NULL : r.snapshot_id;
  sr.items = r.items;
  sr.bytes_read = r.bytes_read;
  sr.new_bytes = r.new_bytes;
  sr.stored_bytes = r.stored_bytes;
  double rate = r.seconds > 0 ? (double)r.bytes_read / r.seconds : 0;
  const char *status = a->dry_run ? "dry-run" : r.partial ? "partial" : "complete";
  /* sinks that do not hold the snapshot: failed during the run, or could
   * not even be set up */
  json_t *missed = json_array();
  for (size_t i = 0; i < c.repo->n_sinks; i++)
    if (c.repo->sinks[i].failed)
      json_array_append_new(missed, json_string(c.repo->sinks[i].pi->name));
  size_t k;
  json_t *v;
  json_array_foreach(c.skipped_sinks, k, v) json_array_append(missed, v);
  if (!a->dry_run)
    cli_note_run(&r, status, missed);
  if (a->json) {
    json_t *j = json_pack(
        "{s:s?, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:O}", "snapshot",
        a->dry_run ? NULL : r.snapshot_id, "status", status, "pipeline", c.p->name, "items",
        (json_int_t)r.items, "bytes_read", (json_int_t)r.bytes_read, "chunks", (json_int_t)r.chunks,
        "new_chunks", (json_int_t)r.new_chunks, "new_bytes", (json_int_t)r.new_bytes,
        "stored_bytes", (json_int_t)r.stored_bytes, "packs", (json_int_t)r.packs, "reused_items",
        (json_int_t)r.reused_items, "reused_bytes", (json_int_t)r.reused_bytes, "duration_seconds",
        r.seconds, "bytes_per_second", rate, "warnings", r.warnings);
    json_object_set(j, "sinks_missed", missed);
    json_object_set_new(j, "lock_wait_seconds", json_real(sr.lock_wait_seconds));
    if (a->n_only) {
      json_t *only = json_array();
      for (size_t i = 0; i < a->n_only; i++)
        json_array_append_new(only, json_string(a->only[i]));
      json_object_set_new(j, "only", only);
    }
    print_json(j);
    json_decref(j);
  } else if (!g->quiet) {
    char b1[32], b2[32], b3[32], b4[32];
    if (a->dry_run)
      printf("dry run: nothing was stored\n");
    else
      printf("snapshot %.8s saved (%s)\n", r.snapshot_id, status);
    printf("  items     %llu (%llu unchanged since the parent snapshot, not read)\n",
           (unsigned long long)r.items, (unsigned long long)r.reused_items);
    printf("  read      %s\n", format_bytes(r.bytes_read, b1, sizeof(b1)));
    printf("  new       %s in %llu of %llu chunks (after dedup, before compression)\n",
           format_bytes(r.new_bytes, b2, sizeof(b2)), (unsigned long long)r.new_chunks,
           (unsigned long long)r.chunks);
    const char *zalg = c.p->compress_algorithm ? c.p->compress_algorithm : "zstd";
    int zip = strcmp(zalg, "none") != 0;
    printf("  stored    %s in %llu pack(s) (%s%s, %s%s)\n",
           format_bytes(r.stored_bytes, b3, sizeof(b3)), (unsigned long long)r.packs,
           zip ? "compressed with " : "not compressed", zip ? zalg : "",
           c.repo->crypto ? "encrypted with " : "not encrypted",
           c.repo->crypto ? c.repo->crypto->name : "");
    printf("  duration  %.2f s (%s/s)\n", r.seconds, format_bytes((uint64_t)rate, b4, sizeof(b4)));
    if (r.partial)
      printf("  warnings  %zu (the snapshot is partial; see the messages above)\n",
             json_array_size(r.warnings));
    json_array_foreach(missed, k, v) printf(
        "  MISSED    sink '%s' does not hold snapshot %.8s; run 'engine sync' when it is back\n",
        json_string_value(v), a->dry_run ? "" : r.snapshot_id);
  }
  json_decref(missed);
  json_decref(r.warnings);
  int exit_code = r.partial ? EXIT_PARTIAL : EXIT_OK;
  if (!a->dry_run && c.p->retention.set && c.p->retention.apply &&
      strcmp(c.p->retention.apply, "after-run") == 0) {
    /* retention: { apply: after-run }: forget under the exclusive lock */
    cli_unlock(&c);
    json_t *report = NULL;
    char host[SYS_NAME_MAX];
    sys_hostname(host);
    if (cli_lock(&c, 1, a->lock_wait_ms, 0, &err) != 0 ||
        forget_run(c.repo, &c.p->retention, c.p->name, host, 0, NULL, &report, &err) != 0) {
      char *msg = xasprintf("the snapshot was saved, but applying retention failed: %s", err);
      free(err);
      err = msg;
      exit_code = EXIT_ERROR;
      sr.outcome = r.partial ? "partial" : "complete";
    } else if (!g->quiet && !a->json) {
      printf("  retention removed %lld snapshot(s)\n",
             (long long)json_integer_value(json_object_get(report, "removed")));
    }
    json_decref(report);
  }
  return run_end(&c, a, &sr, t0, exit_code, err);
}

/* ---- validate --------------------------------------------------------------- */

int cmd_validate(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  char *err = NULL;
  if (cli_load_pipeline(g, a->pos[0], &c, &err) != 0) {
    fprintf(stderr, "%s\n", err ? err : "invalid pipeline");
    log_note_error(err ? err : "invalid pipeline"); /* for --json */
    free(err);
    cli_close(&c);
    return EXIT_ERROR;
  }
  if (c.p->schedule) {
    char *cal = NULL;
    if (cron_to_oncalendar(c.p->schedule, &cal, &err) != 0) {
      fprintf(stderr, "%s: %s\n", a->pos[0], err);
      free(err);
      cli_close(&c);
      return EXIT_ERROR;
    }
    free(cal);
  }
  /* secrets a run could not read: reported, not fatal (the file is valid;
   * the environment validate runs in may not be the run's) */
  json_t *warnings = json_array(), *refs = pipeline_secret_refs(c.p);
  size_t k;
  json_t *ref;
  json_array_foreach(refs, k, ref) {
    const char *r = json_string_value(json_object_get(ref, "ref"));
    const char *opt = json_string_value(json_object_get(ref, "option"));
    char *w = NULL;
    if (strncmp(r, "env:", 4) == 0 && !getenv(r + 4))
      w = xasprintf("%s: environment variable %s is not set; a run would fail", opt, r + 4);
    else if (strncmp(r, "file:", 5) == 0 && access(r + 5, R_OK) != 0)
      w = xasprintf("%s: file %s cannot be read (%s); a run would fail", opt, r + 5,
                    strerror(errno));
    if (w) {
      log_warn("%s: %s", a->pos[0], w);
      json_array_append_new(warnings, json_string(w));
      free(w);
    }
  }
  json_decref(refs);
  if (a->json) {
    json_t *j = json_pack("{s:b, s:s, s:s, s:I, s:I, s:o}", "valid", 1, "path", a->pos[0], "name",
                          c.p->name, "sources", (json_int_t)c.p->n_sources, "sinks",
                          (json_int_t)c.p->n_sinks, "warnings", warnings);
    print_json(j);
    json_decref(j);
  } else {
    printf("%s: valid pipeline '%s' (%zu source(s), %zu sink(s), compression %s, encryption %s)\n",
           a->pos[0], c.p->name, c.p->n_sources, c.p->n_sinks,
           c.p->compress_algorithm ? c.p->compress_algorithm : "zstd",
           c.p->encrypt_algorithm ? c.p->encrypt_algorithm : "none");
    json_decref(warnings);
  }
  cli_close(&c);
  return EXIT_OK;
}

/* ---- snapshots / show ----------------------------------------------------- */

static int open_existing(const struct cli_globals *g, const char *path, struct cli_ctx *c,
                         int with_sources, int read_only) {
  char *err = NULL;
  int lrc = cli_load_pipeline(g, path, c, &err);
  c->read_only = read_only;
  if (lrc != 0 || cli_open(c, with_sources, 0, 0, &err) != 0) {
    cli_close(c);
    return cli_fail(err);
  }
  return EXIT_OK;
}

/* Open and lock: lock = 1 shared, 2 exclusive; then read the index if
 * the command reads blobs. */
static int open_locked(const struct cli_globals *g, const struct cli_args *a, struct cli_ctx *c,
                       int with_sources, int lock, int load_index) {
  int rc = open_existing(g, a->pos[0], c, with_sources, lock != 2);
  if (rc)
    return rc;
  char *err = NULL;
  if (cli_lock(c, lock == 2, a->lock_wait_ms, load_index, &err) != 0) {
    cli_close(c);
    return cli_fail(err);
  }
  return EXIT_OK;
}

static json_t *strings_array(char *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

/* engine snapshots --json: one object per snapshot, then the unreadable. */
static void print_snapshots_json(const struct snapshot_list *all, json_t *unreadable) {
  json_t *out = json_array();
  for (size_t i = 0; i < all->n; i++) {
    const struct snapshot *m = all->v[i];
    json_t *names = json_array();
    for (size_t k = 0; k < m->n_sources; k++)
      json_array_append_new(names, json_string(m->sources[k].name));
    char *t = iso_time(m->time);
    json_t *o = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:o, s:o, s:s?}", "id",
                          m->id, "time", t, "hostname", m->hostname, "username", m->username,
                          "status", m->status, "items", (json_int_t)m->stats.items, "bytes_read",
                          (json_int_t)m->stats.bytes_read, "stored_bytes",
                          (json_int_t)m->stats.stored_bytes, "sources", names, "tags",
                          strings_array(m->tags, m->n_tags), "pipeline", m->pipeline);
    /* a snapshot of a selection (run --only) says which */
    json_t *only = status_snapshot_only(m);
    if (only)
      json_object_set(o, "only", only);
    json_array_append_new(out, o);
    free(t);
  }
  size_t i;
  json_t *u;
  json_array_foreach(unreadable, i, u) {
    json_array_append_new(out,
                          json_pack("{s:O, s:s, s:O}", "id", json_object_get(u, "id"), "status",
                                    "unreadable", "error", json_object_get(u, "error")));
  }
  print_json(out);
  json_decref(out);
}

/* engine snapshots: a table, then the unreadable ones, then the count. */
static void print_snapshots_table(const struct snapshot_list *all, json_t *unreadable) {
  printf("%-10s %-20s %-16s %-9s %8s %12s  %s\n", "ID", "TIME", "HOST", "STATUS", "ITEMS", "SIZE",
         "SOURCES");
  for (size_t i = 0; i < all->n; i++) {
    const struct snapshot *m = all->v[i];
    char b[32], srcs[256] = "";
    uint64_t total = 0;
    for (size_t k = 0; k < m->n_sources; k++) {
      total += m->sources[k].bytes;
      if (k)
        strncat(srcs, ",", sizeof(srcs) - strlen(srcs) - 1);
      strncat(srcs, m->sources[k].name, sizeof(srcs) - strlen(srcs) - 1);
    }
    char *t = iso_time(m->time);
    printf("%-10.8s %-20s %-16.16s %-9s %8lld %12s  %s\n", m->id, t,
           m->hostname ? m->hostname : "?", m->status ? m->status : "?", (long long)m->stats.items,
           format_bytes(total, b, sizeof(b)), srcs);
    free(t);
  }
  size_t i;
  json_t *u;
  json_array_foreach(unreadable, i, u) {
    printf("%-10.8s %-20s %-16s %-9s  %s\n", json_string_value(json_object_get(u, "id")), "?", "?",
           "UNREADABLE", json_string_value(json_object_get(u, "error")));
  }
  printf("%zu snapshot(s)", all->n + json_array_size(unreadable));
  if (json_array_size(unreadable))
    printf(", %zu UNREADABLE (run 'engine check')", json_array_size(unreadable));
  printf("\n");
}

/* snapshots --contains SOURCE/ITEM-GLOB: does an item name match? */
struct contains {
  const char *glob;
};

static int contains_cb(void *ud, json_t *item) {
  const struct contains *k = ud;
  size_t n;
  char *name = json_get_bytes(item, "name", &n);
  int hit = 0;
  if (name) {
    size_t gl = strlen(k->glob);
    hit = fnmatch(k->glob, name, 0) == 0 || (strncmp(name, k->glob, gl) == 0 && name[gl] == '/');
  }
  free(name);
  return hit;
}

/* Keep the snapshots holding an item the selection matches (a selection
 * without a glob: the snapshots that have the source). */
static int filter_contains(struct cli_ctx *c, const char *spec, struct snapshot_list *all,
                           char **err) {
  struct selection sel;
  if (selection_parse(spec, &sel, err) != 0)
    return -1;
  if (sel.glob && cli_load_index(c, err) != 0) {
    selection_free(&sel);
    return -1;
  }
  size_t kept = 0;
  int rc = 0;
  for (size_t i = 0; i < all->n; i++) {
    struct snapshot *m = all->v[i];
    int hit = 0;
    for (size_t k = 0; k < m->n_sources && !hit && rc == 0; k++) {
      const struct snapshot_source *ss = &m->sources[k];
      if (strcmp(sel.source, "*") != 0 && strcmp(ss->name, sel.source) != 0)
        continue; /* "*": any source */
      struct contains ct = {sel.glob};
      char *e = NULL;
      int r = sel.glob ? tree_foreach_ids(c->repo, (const unsigned char(*)[32])ss->tree, ss->n_tree,
                                          contains_cb, &ct, &e)
                       : 1;
      if (r < 0) {
        *err = xasprintf("snapshot %.8s: %s", m->id, e);
        free(e);
        rc = -1;
      }
      hit = r > 0;
    }
    if (hit)
      all->v[kept++] = m;
    else
      snapshot_free(m);
  }
  all->n = kept;
  selection_free(&sel);
  return rc;
}

int cmd_snapshots(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  int rc = open_existing(g, a->pos[0], &c, 0, 1);
  if (rc)
    return rc;
  struct snapshot_list all;
  json_t *unreadable;
  char *err = NULL;
  if (snapshot_list(c.repo, &all, &unreadable, &err) != 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  if (a->contains && filter_contains(&c, a->contains, &all, &err) != 0) {
    snapshot_list_free(&all);
    json_decref(unreadable);
    cli_close(&c);
    return cli_fail(err);
  }
  size_t n_bad = json_array_size(unreadable);
  if (a->json)
    print_snapshots_json(&all, unreadable);
  else
    print_snapshots_table(&all, unreadable);
  if (n_bad)
    log_error("%zu snapshot(s) exist but cannot be read; the repository is damaged or a sink is "
              "failing (run 'engine check')",
              n_bad);
  snapshot_list_free(&all);
  json_decref(unreadable);
  cli_close(&c);
  return n_bad ? EXIT_ERROR : EXIT_OK;
}

/* engine show: the manifest in words. */
static void print_snapshot(const struct snapshot *m) {
  char b1[32], b2[32];
  char *t0 = iso_time(m->time), *t1 = m->time_end ? iso_time(m->time_end) : xstrdup("?");
  printf("snapshot   %s\n", m->id);
  printf("pipeline   %s\n", m->pipeline ? m->pipeline : "?");
  printf("time       %s .. %s\n", t0, t1);
  printf("host/user  %s / %s\n", m->hostname ? m->hostname : "?", m->username ? m->username : "?");
  printf("status     %s\n", m->status ? m->status : "?");
  printf("engine     %s\n", m->engine_version ? m->engine_version : "?");
  printf("items      %lld, %s read, %s stored\n", (long long)m->stats.items,
         format_bytes(m->stats.bytes_read, b1, sizeof(b1)),
         format_bytes(m->stats.stored_bytes, b2, sizeof(b2)));
  free(t0);
  free(t1);
  for (size_t i = 0; i < m->n_sources; i++) {
    const struct snapshot_source *s = &m->sources[i];
    printf("source     %s (%s %s): %lld items, %lld failed\n", s->name, s->type,
           s->plugin_version ? s->plugin_version : "?", (long long)s->items,
           (long long)s->failed_items);
    for (size_t k = 0; k < s->n_warnings; k++) {
      const struct snapshot_note *w = &s->warnings[k];
      /* only a name stored as "item" (UTF-8), not as "item_b64" */
      json_t *probe = w->item ? json_stringn(w->item, w->item_len) : NULL;
      const char *item = probe ? w->item : NULL;
      printf("  warning  %s%s%s\n", item ? item : "", item ? ": " : "", w->text ? w->text : "");
      json_decref(probe);
    }
  }
}

int cmd_show(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  int rc = open_existing(g, a->pos[0], &c, 0, 1);
  if (rc)
    return rc;
  struct snapshot *m;
  char *err = NULL;
  if (snapshot_find(c.repo, a->pos[1], &m, &err) != 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  if (a->json)
    print_json(m->raw);
  else
    print_snapshot(m);
  snapshot_free(m);
  cli_close(&c);
  return EXIT_OK;
}

/* ---- restore ---------------------------------------------------------------- */

/* --progress: 1 always, 0 never, -1 auto (on a terminal) */
static int progress_choice(const struct cli_args *a) {
  if (!a->progress || strcmp(a->progress, "auto") == 0)
    return -1;
  return strcmp(a->progress, "always") == 0;
}

/* A restore allocates and frees a decoded blob (up to a chunk, 4 MiB) per
 * chunk on the read-ahead workers and the writers. With the default 128 KiB
 * of padding, each arena gives that memory back after nearly every blob
 * and faults it in again for the next: ~125,000 page faults per GiB
 * restored, ~0.5 CPU-s here. Keeping 16 MiB at the top of each arena cuts
 * them to ~25,000 for a few MiB more peak RSS (docs/PERFORMANCE.md). A
 * process-wide allocator setting, so it is made here, for this command's
 * process only (main sets the others), not in the restore pipeline, which
 * `engine serve` runs next to backups. */
#define RESTORE_MALLOC_TOP_PAD (16 * 1024 * 1024)

struct find_job {
  struct repo *repo;
  const char *ref;
  struct snapshot *m;
  char *err;
  int rc;
};

static void *find_snapshot_thread(void *arg) {
  struct find_job *j = arg;
  j->rc = snapshot_find(j->repo, j->ref, &j->m, &j->err);
  return NULL;
}

int cmd_restore(const struct cli_globals *g, const struct cli_args *a) {
  if (!getenv("MALLOC_TOP_PAD_"))
    mallopt(M_TOP_PAD, RESTORE_MALLOC_TOP_PAD);
  struct cli_ctx c;
  int rc = a->dry_run ? open_existing(g, a->pos[0], &c, 1, 1) : open_locked(g, a, &c, 1, 1, 0);
  if (rc)
    return rc;
  /* The snapshot is looked up while the index loads (both read and decrypt
   * objects, neither needs the other). */
  struct find_job fj = {.repo = c.repo, .ref = a->pos[1]};
  pthread_t th;
  int threaded = pthread_create(&th, NULL, find_snapshot_thread, &fj) == 0;
  char *ierr = NULL;
  c.repo->use_index_cache = 1;
  int irc = cli_load_index(&c, &ierr);
  if (threaded)
    pthread_join(th, NULL);
  else
    find_snapshot_thread(&fj);
  struct snapshot *m = fj.m;
  char *err = NULL;
  if (irc != 0 || fj.rc != 0) {
    snapshot_free(m);
    free(irc != 0 ? fj.err : ierr);
    cli_close(&c);
    return cli_fail(irc != 0 ? ierr : fj.err);
  }
  const char **extra = xcalloc(4 + a->n_namespace_map, sizeof(*extra));
  char **maps = xcalloc(a->n_namespace_map + 1, sizeof(*maps));
  size_t ne = 0;
  char *as_flag = a->as_name ? xasprintf("as=%s", a->as_name) : NULL;
  if (as_flag)
    extra[ne++] = as_flag;
  if (a->drop_existing)
    extra[ne++] = "drop_existing=1";
  if (a->to_stdout)
    extra[ne++] = "to_stdout=1";
  for (size_t i = 0; i < a->n_namespace_map; i++)
    extra[ne++] = maps[i] = xasprintf("namespace_map=%s", a->namespace_map[i]);
  extra[ne] = NULL;
  const char *only = a->n_only ? a->only[0] : NULL;
  if ((a->as_name || a->to_stdout) && (!only || !strchr(only, '/'))) {
    free(as_flag);
    for (size_t i = 0; i < a->n_namespace_map; i++)
      free(maps[i]);
    free(maps);
    free(extra);
    snapshot_free(m);
    cli_close(&c);
    return cli_usage_error("restore",
                           "--as and --to-stdout act on one item: give --only SOURCE/ITEM");
  }
  c.repo->trust_aead_ids = 1;
  struct restore_opts ro = {c.repo,         m,      c.sources,
                            c.p->n_sources, only,   a->target,
                            a->dry_run,     a->yes, isatty(STDIN_FILENO) && isatty(STDERR_FILENO),
                            a->json,        extra,  progress_choice(a)};
  struct restore_result res;
  rc = restore_run(&ro, &res, &err);
  free(as_flag);
  for (size_t i = 0; i < a->n_namespace_map; i++)
    free(maps[i]);
  free(maps);
  free(extra);
  /* with --to-stdout the data owns stdout: the summary goes to stderr */
  FILE *out = a->to_stdout || a->json ? stderr : stdout;
  char b[32];
  if (rc < 0) {
    snapshot_free(m);
    cli_close(&c);
    return cli_fail(err);
  }
  cli_note_snapshot(m->id);
  cli_note_detail("restore", json_pack("{s:s?, s:I, s:I, s:I}", "target", a->target, "items",
                                       (json_int_t)res.items, "bytes", (json_int_t)res.bytes,
                                       "failed", (json_int_t)res.failed));
  if (!g->quiet) {
    if (a->dry_run)
      fprintf(out, "dry run: %llu item(s), %s would be restored\n", (unsigned long long)res.items,
              format_bytes(res.bytes, b, sizeof(b)));
    else if (rc == 3)
      fprintf(out,
              "restore INCOMPLETE: %llu item(s) restored, %llu FAILED (see the errors above); the "
              "target holds a "
              "partial restore\n",
              (unsigned long long)res.items, (unsigned long long)res.failed);
    else
      fprintf(out, "restored %llu item(s), %s from snapshot %.8s\n", (unsigned long long)res.items,
              format_bytes(res.bytes, b, sizeof(b)), m->id);
  }
  snapshot_free(m);
  cli_close(&c);
  return rc == 3 ? EXIT_PARTIAL : EXIT_OK;
}

/* ---- check ------------------------------------------------------------------ */

static uint32_t source_caps(const struct engine_plugin *p) {
  const struct engine_source_ops *ops = p->source;
  if (!ENGINE_HAS_FIELD(ops, struct engine_source_ops, capabilities))
    return 0;
  return ops->capabilities;
}

/* What check --restore-test did. */
struct rt_result {
  const char *result; /* "ok", "failed" or "untested" */
  int failures, tested;
  char snapshot[65]; /* the snapshot tested ("" when none) */
  double seconds;    /* restoring (and verifying) the sources that were tested */
  json_t *sources;   /* [{"source","result","items","seconds","error"}] */
  char *error;       /* why it failed as a whole, or NULL */
};

/* The pipeline's newest snapshot of everything (not of a run --only
 * selection). */
static int newest_of_pipeline(struct cli_ctx *c, struct snapshot **out, char **err) {
  struct snapshot_list all;
  json_t *bad;
  if (snapshot_list(c->repo, &all, &bad, err) != 0)
    return -1;
  if (json_array_size(bad) > 0)
    log_warn("%zu snapshot(s) cannot be read (see the problems below); the restore test takes "
             "the newest readable one of the pipeline",
             json_array_size(bad));
  json_decref(bad);
  *out = NULL;
  for (size_t i = all.n; i-- > 0 && !*out;) {
    const struct snapshot *m = all.v[i];
    if (m->pipeline && strcmp(m->pipeline, c->p->name) == 0 && !status_snapshot_only(m))
      *out = snapshot_list_take(&all, i);
  }
  snapshot_list_free(&all);
  if (!*out) {
    *err = xasprintf("the repository has no snapshot of pipeline '%s' to restore-test", c->p->name);
    return -1;
  }
  return 0;
}

static double mono_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* check --restore-test: every source of the pipeline's newest snapshot
 * whose plugin can restore into a scratch location of its own and verify
 * it; the time the restores took is the measured recovery time. A test in
 * which no source could take part fails, unless --allow-untested. */
static void restore_test(struct cli_ctx *c, const struct cli_args *a, struct rt_result *out) {
  memset(out, 0, sizeof(*out));
  out->sources = json_array();
  struct snapshot *m;
  char *err = NULL;
  if (newest_of_pipeline(c, &m, &err) != 0) {
    out->error = err;
    out->result = "failed";
    out->failures = 1;
    log_error("restore test: %s", err);
    return;
  }
  memcpy(out->snapshot, m->id, sizeof(out->snapshot));
  char *unsupported = xstrdup("");
  for (size_t i = 0; i < m->n_sources; i++) {
    const char *sn = m->sources[i].name;
    struct plugin_instance *pi = NULL;
    for (size_t k = 0; k < c->p->n_sources; k++)
      if (strcmp(c->sources[k]->name, sn) == 0)
        pi = c->sources[k];
    if (!pi || !(source_caps(pi->plugin) & ENGINE_SOURCE_CAP_RESTORE_TEST)) {
      const char *why = pi ? "not supported by its plugin" : "no longer in the pipeline";
      json_array_append_new(out->sources, json_pack("{s:s, s:s, s:s}", "source", sn, "result",
                                                    "not supported", "error", why));
      char *u = xasprintf("%s%s'%s' (%s)", unsupported, *unsupported ? ", " : "", sn,
                          pi ? pi->plugin->name : "?");
      free(unsupported);
      unsupported = u;
      if (!a->json)
        printf("restore test: source '%s': %s, skipped\n", sn, why);
      continue;
    }
    const char *extra[] = {"restore_test=1", NULL};
    struct restore_opts ro = {c->repo, m, c->sources, c->p->n_sources, sn, NULL, 0,
                              1,       0, 0,          extra,           0};
    struct restore_result res;
    double t0 = mono_seconds();
    int rc = restore_run(&ro, &res, &err);
    double took = mono_seconds() - t0;
    out->seconds += took;
    out->tested++;
    if (rc != 0) {
      out->failures++;
      /* the plugin's own last word (restore_end: what differs) */
      const char *last = host_last_error(pi->host);
      const char *msg = err ? err
                        : last && last[0]
                            ? last
                            : "some items failed or differ from the snapshot (see above)";
      json_array_append_new(
          out->sources, json_pack("{s:s, s:s, s:I, s:f, s:s}", "source", sn, "result", "failed",
                                  "items", (json_int_t)res.items, "seconds", took, "error", msg));
      log_error("restore test of source '%s' FAILED: %s", sn, msg);
    } else {
      json_array_append_new(out->sources,
                            json_pack("{s:s, s:s, s:I, s:f}", "source", sn, "result", "ok", "items",
                                      (json_int_t)res.items, "seconds", took));
      if (!a->json)
        printf("restore test: source '%s': %llu item(s) restored into scratch space and verified "
               "in %.1f s\n",
               sn, (unsigned long long)res.items, took);
    }
    free(err);
    err = NULL;
  }
  if (out->tested == 0) {
    out->error = xasprintf("no source of snapshot %.8s can be restore-tested (%s): nothing was "
                           "verified%s",
                           m->id, unsupported,
                           a->allow_untested ? "" : "; pass --allow-untested to accept that");
    if (a->allow_untested) {
      log_warn("restore test: %s", out->error);
      out->result = "untested";
    } else {
      log_error("restore test: %s", out->error);
      out->result = "failed";
      out->failures = 1;
    }
  } else {
    out->result = out->failures ? "failed" : "ok";
  }
  free(unsupported);
  snapshot_free(m);
}

/* The verify/ record of this check (docs/FORMAT.md §14c), so status and
 * the metrics know the last verification after a restart. */
static void record_verify(struct cli_ctx *c, const struct cli_args *a, int64_t started,
                          double seconds, const struct check_result *res, int check_rc,
                          const char *check_err, const struct rt_result *rt) {
  if (!c->repo || !c->p)
    return;
  int failed = check_rc != 0 || (a->restore_test && rt->failures);
  const char *result = failed ? "failed" : a->restore_test ? rt->result : "ok";
  char *t0 = iso_time(started), *t1 = iso_time(started + (int64_t)(seconds + 0.5));
  json_t *o = json_pack("{s:s, s:s, s:s, s:f, s:s, s:b, s:b, s:s, s:I}", "pipeline", c->p->name,
                        "time", t0, "time_end", t1, "duration_seconds", seconds, "check",
                        a->restore_test ? "restore-test"
                        : a->read_data  ? "read-data"
                                        : "check",
                        "read_data", a->read_data, "restore_test", a->restore_test, "result",
                        result, "problems", (json_int_t)(check_rc < 0 ? 0 : res->errors));
  free(t0);
  free(t1);
  if (check_rc >= 0) {
    json_object_set_new(o, "snapshots", json_integer((json_int_t)res->snapshots));
    json_object_set_new(o, "packs", json_integer((json_int_t)res->packs));
    json_object_set_new(o, "blobs_verified", json_integer((json_int_t)res->blobs));
  }
  const char *error = check_err ? check_err : rt && rt->error ? rt->error : NULL;
  if (!error && check_rc > 0)
    error = "the check found problems in the repository";
  if (!error && rt && rt->failures)
    error = "the restore test failed";
  json_object_set_new(o, "error", error ? json_string(error) : json_null());
  if (a->restore_test && rt) {
    json_object_set_new(o, "snapshot", rt->snapshot[0] ? json_string(rt->snapshot) : json_null());
    json_object_set_new(o, "restore_seconds", rt->tested ? json_real(rt->seconds) : json_null());
    json_object_set(o, "sources", rt->sources);
  }
  char *err = NULL;
  if (record_save(c->repo, RECORD_VERIFY, o, NULL, &err) != 0) {
    log_warn("the result of this check was not recorded in the repository: %s", err);
    free(err);
  }
  json_decref(o);
}

int cmd_check(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  int64_t started = (int64_t)time(NULL);
  double t0 = mono_seconds();
  int rc = open_locked(g, a, &c, a->restore_test, 1, 1);
  if (rc)
    return rc;
  struct check_result res;
  char *err = NULL;
  rc = check_run(c.repo, a->read_data, a->json, &res, &err);
  struct rt_result rt = {0};
  if (rc < 0) {
    log_error("%s", err);
    record_verify(&c, a, started, mono_seconds() - t0, &res, rc, err, NULL);
    json_decref(res.problems);
    cli_close(&c);
    free(err);
    return EXIT_ERROR;
  }
  if (a->restore_test)
    restore_test(&c, a, &rt);
  int rt_failed = a->restore_test && rt.failures > 0;
  json_t *rt_sources = rt.sources ? rt.sources : json_array();
  cli_note_detail("read_data", json_boolean(a->read_data));
  cli_note_detail("problems_count", json_integer((json_int_t)res.errors));
  cli_note_detail("problems", json_incref(res.problems));
  if (a->restore_test) {
    cli_note_detail("restore_test", json_incref(rt_sources));
    cli_note_detail("restore_test_failed", json_boolean(rt_failed));
  }
  /* the measured recovery time against the objective */
  int64_t rto = c.p->rto_ms / 1000;
  int rto_known = a->restore_test && rt.tested > 0 && c.p->rto_ms > 0;
  int rto_met = rto_known && rt.seconds * 1000.0 <= (double)c.p->rto_ms;
  if (rto_known && !rto_met)
    log_warn("the restore test took %.1f s, longer than the pipeline's recovery-time objective "
             "(objectives.rto: %lld s)",
             rt.seconds, (long long)rto);
  if (a->json) {
    json_t *j = json_pack("{s:b, s:b, s:I, s:I, s:I, s:O}", "ok", rc == 0 && !rt_failed,
                          "read_data", a->read_data, "snapshots", (json_int_t)res.snapshots,
                          "packs", (json_int_t)res.packs, "blobs_verified", (json_int_t)res.blobs,
                          "problems", res.problems);
    if (a->restore_test) {
      json_object_set(j, "restore_test", rt_sources);
      json_object_set_new(j, "restore_test_result", json_string(rt.result));
      json_object_set_new(j, "restore_test_snapshot",
                          rt.snapshot[0] ? json_string(rt.snapshot) : json_null());
      json_object_set_new(j, "restore_seconds", rt.tested ? json_real(rt.seconds) : json_null());
      json_object_set_new(j, "rto_seconds", c.p->rto_ms > 0 ? json_integer(rto) : json_null());
      json_object_set_new(j, "rto_met", rto_known ? json_boolean(rto_met) : json_null());
      json_object_set_new(j, "restore_test_error", rt.error ? json_string(rt.error) : json_null());
    }
    print_json(j);
    json_decref(j);
  } else {
    if (rc == 0) {
      if (!g->quiet)
        printf("no problems found: %llu snapshot(s), %llu pack(s)%s\n",
               (unsigned long long)res.snapshots, (unsigned long long)res.packs,
               a->read_data ? ", every blob decrypted and verified" : "");
    } else {
      printf("%llu problem(s) found in %llu snapshot(s), %llu pack(s)\n",
             (unsigned long long)res.errors, (unsigned long long)res.snapshots,
             (unsigned long long)res.packs);
    }
    if (a->restore_test && rt.tested && !g->quiet)
      printf("restore test of snapshot %.8s: %s; restored in %.1f s%s%s\n", rt.snapshot, rt.result,
             rt.seconds, rto_known ? (rto_met ? " (within" : " (LONGER than") : "",
             rto_known ? " the recovery-time objective)" : "");
  }
  record_verify(&c, a, started, mono_seconds() - t0, &res, rc, NULL, &rt);
  json_decref(rt_sources);
  free(rt.error);
  json_decref(res.problems);
  cli_close(&c);
  return rc == 0 && !rt_failed ? EXIT_OK : EXIT_ERROR;
}

/* ---- forget / prune ---------------------------------------------------------- */

/* --forget-unreadable ID[,ID...] (repeatable) as a JSON array of ids */
static json_t *forget_unreadable_ids(const struct cli_args *a) {
  json_t *ids = json_array();
  for (size_t i = 0; i < a->n_forget_unreadable; i++) {
    char *copy = xstrdup(a->forget_unreadable[i]), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
      json_array_append_new(ids, json_string(t));
    free(copy);
  }
  return ids;
}

static int do_prune(const struct cli_globals *g, const struct cli_args *a, struct cli_ctx *c,
                    json_t *forget_unreadable, json_t *out) {
  /* --repack-threshold was checked by the parser */
  struct prune_opts po = {a->dry_run, a->repack_threshold ? a->repack_fraction : 0.5, g->quiet,
                          forget_unreadable};
  struct prune_result r;
  char *err = NULL;
  if (prune_run(c->repo, &po, &r, &err) != 0)
    return cli_fail(err);
  json_t *pj = json_pack(
      "{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "dry_run", a->dry_run, "packs_before",
      (json_int_t)r.packs_before, "packs_deleted", (json_int_t)r.packs_deleted, "packs_repacked",
      (json_int_t)r.packs_repacked, "packs_written", (json_int_t)r.packs_written, "bytes_before",
      (json_int_t)r.bytes_before, "bytes_after", (json_int_t)r.bytes_after, "blobs_used",
      (json_int_t)r.blobs_used, "blobs_dropped", (json_int_t)r.blobs_dropped);
  cli_note_detail("prune", json_incref(pj));
  if (out) {
    json_object_set(out, "prune", pj);
  } else if (!g->quiet) {
    char b1[32], b2[32];
    printf("%s%llu of %llu pack(s) deleted, %llu repacked into %llu new pack(s); %s -> %s\n",
           a->dry_run ? "would prune: " : "pruned: ", (unsigned long long)r.packs_deleted,
           (unsigned long long)r.packs_before, (unsigned long long)r.packs_repacked,
           (unsigned long long)r.packs_written, format_bytes(r.bytes_before, b1, sizeof(b1)),
           format_bytes(r.bytes_after, b2, sizeof(b2)));
  }
  json_decref(pj);
  return EXIT_OK;
}

int cmd_forget(const struct cli_globals *g, const struct cli_args *a) {
  if (a->n_pos > 1 && a->n_forget_unreadable) {
    return cli_usage_error("forget", "name snapshots either as arguments (readable ones) or with "
                                     "--forget-unreadable (unreadable ones), not both in one run");
  }
  struct cli_ctx c;
  /* forget reads manifests only; with --prune the blobs too */
  int rc =
      a->dry_run ? open_existing(g, a->pos[0], &c, 0, 0) : open_locked(g, a, &c, 0, 2, a->prune);
  if (rc)
    return rc;
  char *ierr = NULL;
  if (a->dry_run && a->prune && cli_load_index(&c, &ierr) != 0) {
    cli_close(&c);
    return cli_fail(ierr);
  }
  json_t *report, *named = forget_unreadable_ids(a);
  char *err = NULL;
  /* snapshots named on the command line are removed whatever the policy */
  int frc = a->n_pos > 1 ? forget_ids(c.repo, a->pos + 1, a->n_pos - 1, a->dry_run, &report, &err)
                         : forget_run(c.repo, &c.p->retention, c.p->name, NULL, a->dry_run, named,
                                      &report, &err);
  if (frc != 0) {
    json_decref(named);
    cli_close(&c);
    return cli_fail(err);
  }
  if (!a->json && !g->quiet) {
    size_t i;
    json_t *gr;
    json_array_foreach(json_object_get(report, "groups"), i, gr) {
      printf("host %s, pipeline %s:\n", json_string_value(json_object_get(gr, "hostname")),
             json_string_value(json_object_get(gr, "pipeline")));
      size_t k;
      json_t *s;
      json_array_foreach(json_object_get(gr, "keep"), k, s) {
        printf("  keep   %.8s  %s  ", json_string_value(json_object_get(s, "id")),
               json_string_value(json_object_get(s, "time")));
        size_t x;
        json_t *why;
        json_array_foreach(json_object_get(s, "reasons"), x, why)
            printf("%s%s", x ? ", " : "", json_string_value(why));
        printf("\n");
      }
      json_array_foreach(json_object_get(gr, "remove"), k, s)
          printf("  remove %.8s  %s\n", json_string_value(json_object_get(s, "id")),
                 json_string_value(json_object_get(s, "time")));
    }
    long long would = 0;
    json_array_foreach(json_object_get(report, "groups"), i, gr) would +=
        (long long)json_array_size(json_object_get(gr, "remove"));
    json_array_foreach(json_object_get(report, "forgotten"), i, gr) {
      printf("%s %.8s  %s\n", a->dry_run ? "would remove" : "remove",
             json_string_value(json_object_get(gr, "id")),
             json_string_value(json_object_get(gr, "time")));
      would++;
    }
    json_array_foreach(json_object_get(report, "unreadable_forgotten"), i, gr) {
      printf("%s unreadable snapshot %s\n", a->dry_run ? "would remove" : "removed",
             json_string_value(gr));
      would++;
    }
    printf("%s %lld snapshot(s)\n", a->dry_run ? "would remove" : "removed", would);
  }
  cli_note_detail("report", json_incref(report));
  /* the unreadable snapshots forget removed are gone; a dry run still has them */
  if (a->prune)
    rc = do_prune(g, a, &c, a->dry_run ? named : NULL, a->json ? report : NULL);
  json_decref(named);
  if (a->json)
    print_json(report);
  json_decref(report);
  cli_close(&c);
  return rc;
}

int cmd_prune(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  int rc = open_locked(g, a, &c, 0, 2, 1);
  if (rc)
    return rc;
  json_t *out = a->json ? json_object() : NULL, *named = forget_unreadable_ids(a);
  rc = do_prune(g, a, &c, named, out);
  json_decref(named);
  if (out && rc == EXIT_OK)
    print_json(json_object_get(out, "prune"));
  json_decref(out);
  cli_close(&c);
  return rc;
}

/* ---- plugins ---------------------------------------------------------------- */

static const char *opt_type_name(enum engine_opt_type t) {
  switch (t) {
  case ENGINE_OPT_STRING:
    return "string";
  case ENGINE_OPT_INT:
    return "integer";
  case ENGINE_OPT_BOOL:
    return "boolean";
  case ENGINE_OPT_SIZE:
    return "size";
  case ENGINE_OPT_DURATION:
    return "duration";
  case ENGINE_OPT_STRING_LIST:
    return "list of strings";
  case ENGINE_OPT_SECRET:
    return "secret reference";
  case ENGINE_OPT_ENUM:
    return "one of";
  }
  return "?";
}

int cmd_plugins(const struct cli_globals *g, const struct cli_args *a) {
  struct plugin_registry *reg;
  if (cli_registry(g, &reg) != 0)
    return cli_fail(xstrdup("unable to scan the plugin search path"));
  if (a->json) {
    json_t *arr = json_array();
    for (size_t i = 0; i < reg->n_entries; i++) {
      struct plugin_entry *e = &reg->entries[i];
      const struct engine_plugin *p = e->plugin;
      json_t *o =
          json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:b}", "path", e->path, "name",
                    p ? p->name : NULL, "kind", p ? plugin_kind_name(p->kind) : NULL, "version",
                    p ? p->version : NULL, "license", p ? p->license : NULL, "description",
                    p ? p->description : NULL, "error", e->error, "shadowed", e->shadowed);
      if (p) {
        json_t *opts = json_array();
        for (const struct engine_option *op = p->options; op && op->name; op++)
          json_array_append_new(opts,
                                json_pack("{s:s, s:s, s:b, s:s?, s:s?, s:s?}", "name", op->name,
                                          "type", opt_type_name(op->type), "required", op->required,
                                          "default", op->default_value, "values", op->enum_values,
                                          "description", op->description));
        json_object_set_new(o, "options", opts);
        json_object_set_new(o, "abi", json_sprintf("%u.%u", p->abi_major, p->abi_minor));
      }
      json_array_append_new(arr, o);
    }
    print_json(arr);
    json_decref(arr);
  } else {
    printf("plugin search path:\n");
    for (size_t i = 0; i < reg->n_dirs; i++)
      printf("  %s\n", reg->dirs[i]);
    printf("\n");
    for (size_t i = 0; i < reg->n_entries; i++) {
      struct plugin_entry *e = &reg->entries[i];
      const struct engine_plugin *p = e->plugin;
      if (!p) {
        printf("REFUSED %s\n  %s\n\n", e->path, e->error ? e->error : "");
        continue;
      }
      printf("%-7s %-16s %-8s %s%s\n  %s\n", plugin_kind_name(p->kind), p->name, p->version,
             e->path, e->shadowed ? " (shadowed by an earlier plugin of the same name)" : "",
             p->description);
      for (const struct engine_option *op = p->options; op && op->name; op++)
        printf("    %-18s %s%s%s%s%s%s — %s\n", op->name, opt_type_name(op->type),
               op->enum_values ? " " : "", op->enum_values ? op->enum_values : "",
               op->required ? ", required" : "", op->default_value ? ", default " : "",
               op->default_value ? op->default_value : "", op->description ? op->description : "");
      printf("\n");
    }
  }
  registry_free(reg);
  return EXIT_OK;
}

/* ---- repair ------------------------------------------------------------------ */

int cmd_repair(const struct cli_globals *g, const struct cli_args *a) {
  /* the parser checked the action (index|snapshots) and what it takes */
  int is_index = strcmp(a->pos[0], "index") == 0;
  struct cli_ctx c;
  int rc = open_existing(g, a->pos[1], &c, 0, 0);
  if (rc)
    return rc;
  char *err = NULL;
  if (cli_lock(&c, 1, a->lock_wait_ms, 1, &err) != 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  json_t *targets = json_array();
  for (size_t i = 2; i < a->n_pos; i++)
    json_array_append_new(targets, json_string(a->pos[i]));
  struct repair_opts ro = {a->dry_run, a->read_data, targets, g->quiet || a->json};
  json_t *report = NULL;
  int r = is_index ? repair_index(c.repo, &ro, &report, &err)
                   : repair_snapshots(c.repo, &ro, &report, &err);
  json_decref(targets);
  if (r < 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  cli_note_detail("report", json_incref(report));
  if (a->json) {
    print_json(report);
  } else if (!g->quiet && is_index) {
    json_int_t w = json_integer_value(json_object_get(report, "index_written"));
    if (!json_is_true(json_object_get(report, "changed")))
      printf("index is sound: %lld pack(s), %lld blob(s); nothing written\n",
             (long long)json_integer_value(json_object_get(report, "packs")),
             (long long)json_integer_value(json_object_get(report, "blobs")));
    else
      printf("%s: %lld pack(s), %lld blob(s) (%lld pack(s) not indexed before, %lld index "
             "object(s) unreadable, %lld indexed pack(s) missing); %lld index object(s) written, "
             "%lld removed\n",
             a->dry_run ? "would rebuild the index" : "index rebuilt",
             (long long)json_integer_value(json_object_get(report, "packs")),
             (long long)json_integer_value(json_object_get(report, "blobs")),
             (long long)json_integer_value(json_object_get(report, "packs_unindexed")),
             (long long)json_integer_value(json_object_get(report, "index_damaged")),
             (long long)json_integer_value(json_object_get(report, "packs_missing")), (long long)w,
             (long long)json_integer_value(json_object_get(report, "index_deleted")));
  } else if (!g->quiet) {
    size_t i, k;
    json_t *s, *src, *l;
    json_array_foreach(json_object_get(report, "snapshots"), i, s) {
      const char *res = json_string_value(json_object_get(s, "result"));
      printf("snapshot %.8s: %s", json_string_value(json_object_get(s, "id")), res);
      if (json_object_get(s, "repaired_as"))
        printf(" as %.8s", json_string_value(json_object_get(s, "repaired_as")));
      if (json_object_get(s, "items_lost"))
        printf(" (%lld item(s) kept, %lld lost%s)",
               (long long)json_integer_value(json_object_get(s, "items_kept")),
               (long long)json_integer_value(json_object_get(s, "items_lost")),
               json_integer_value(json_object_get(s, "tree_blobs_lost"))
                   ? ", part of the item tree lost"
                   : "");
      if (json_object_get(s, "error"))
        printf(": %s", json_string_value(json_object_get(s, "error")));
      printf("\n");
      json_array_foreach(json_object_get(s, "lost"), k, src) {
        size_t x;
        json_array_foreach(src, x, l) {
          size_t nl;
          char *name = json_get_bytes(l, "item", &nl);
          char *pn = name ? printable_name(name, nl) : xstrdup("?");
          printf("  lost %s: %s\n", pn, json_string_value(json_object_get(l, "reason")));
          free(pn);
          free(name);
        }
      }
    }
    if (r == 3 && !a->dry_run)
      printf("the damaged originals are kept; 'engine forget' them once the repaired snapshots "
             "are checked\n");
  }
  json_decref(report);
  cli_close(&c);
  return r == 3 ? EXIT_PARTIAL : EXIT_OK;
}
