/* engine run | validate */
#include "cli/commands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cmd_common.h"
#include "cli/dispatch.h"
#include "ops/status.h"
#include "pipeline/prune.h"
#include "util/cancel.h"
#include "util/cron.h"
#include "util/log.h"
#include "util/progress.h"
#include "util/sysinfo.h"

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

/* The end of a run, on every path: its runs/ record in the repository (when
 * it was opened) and the --metrics-file (ops/status.h), then the context is
 * closed. err (taken; NULL: none) is the failure, logged first. */
static int run_end(struct cli_ctx *c, const struct cli_args *a, struct status_run *sr, double t0,
                   int rc, char *err) {
  if (err && rc != EXIT_INTERRUPTED)
    log_error("%s", err);
  sr->exit_code = rc;
  sr->seconds = cli_mono_now() - t0;
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

/* A run's first steps: load the pipeline, run its before hooks, open the
 * repository (creating it on a first run), take the lock (a dry run takes
 * none) and read the index. Returns EXIT_OK, or the exit code with *err
 * for run_end. */
static int run_open(const struct cli_globals *g, const struct cli_args *a, struct cli_ctx *c,
                    struct status_run *sr, char **err) {
  double hooks_wait = 0; /* waited for another run's hooks (ops/hooks.h) */
  int gave_up = 0;
  if (cli_load_pipeline(g, a->pos[0], c, err) != 0 ||
      cli_before_hooks(c->p, &hooks_wait, &gave_up, err) != 0) {
    sr->lock_wait_seconds = hooks_wait;
    sr->outcome = gave_up ? "skipped" : NULL;
    return cancel_requested() ? EXIT_INTERRUPTED : EXIT_ERROR;
  }
  if (cli_open(c, 1, 1, a->dry_run, err) != 0)
    return EXIT_ERROR;
  if (c->repo->created && !a->dry_run && !g->quiet)
    fprintf(stderr, "engine: initialised a new repository %.8s on %zu sink(s)\n", c->repo->id,
            c->p->n_sinks);
  c->repo->use_index_cache = 1;
  if (!a->dry_run) {
    /* a shared lock that also waits for another run of this pipeline on
     * this host (engine serve's job, a timer), as long as it takes unless
     * --lock-wait says otherwise */
    struct repo_lock_opts lo = {.wait_ms = a->lock_wait_ms,
                                .pipeline = c->p->name,
                                .run_wait_ms = a->lock_wait ? a->lock_wait_ms : -1};
    int lrc = repo_lock_acquire_opts(c->repo, &lo, &c->lock, err);
    sr->lock_wait_seconds = hooks_wait + lo.waited_s;
    if (lrc != 0 && cancel_requested())
      return EXIT_INTERRUPTED;
    if (lrc != 0) {
      sr->outcome = lo.run_conflict ? "skipped" : NULL;
      return EXIT_ERROR;
    }
    if (lo.waited_s >= 1.0)
      log_info("waited %.0f s for the repository lock", lo.waited_s);
  }
  if (cli_load_index(c, err) != 0)
    return EXIT_ERROR;
  return EXIT_OK;
}

/* The sinks that do not hold the snapshot: failed during the run, or could
 * not even be set up. */
static json_t *run_missed_sinks(const struct cli_ctx *c) {
  json_t *missed = json_array();
  for (size_t i = 0; i < c->repo->n_sinks; i++)
    if (c->repo->sinks[i].failed)
      json_array_append_new(missed, json_string(c->repo->sinks[i].pi->name));
  size_t k;
  json_t *v;
  json_array_foreach(c->skipped_sinks, k, v) json_array_append(missed, v);
  return missed;
}

/* run --json: one object. */
static void run_print_json(const struct cli_args *a, const struct cli_ctx *c,
                           const struct backup_result *r, const char *status, double rate,
                           json_t *missed, double lock_wait_seconds) {
  json_t *j =
      json_pack("{s:s?, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:O}",
                "snapshot", a->dry_run ? NULL : r->snapshot_id, "status", status, "pipeline",
                c->p->name, "items", (json_int_t)r->items, "bytes_read", (json_int_t)r->bytes_read,
                "chunks", (json_int_t)r->chunks, "new_chunks", (json_int_t)r->new_chunks,
                "new_bytes", (json_int_t)r->new_bytes, "stored_bytes", (json_int_t)r->stored_bytes,
                "packs", (json_int_t)r->packs, "reused_items", (json_int_t)r->reused_items,
                "reused_bytes", (json_int_t)r->reused_bytes, "duration_seconds", r->seconds,
                "bytes_per_second", rate, "warnings", r->warnings);
  json_object_set(j, "sinks_missed", missed);
  json_object_set_new(j, "lock_wait_seconds", json_real(lock_wait_seconds));
  if (a->n_only) {
    json_t *only = json_array();
    for (size_t i = 0; i < a->n_only; i++)
      json_array_append_new(only, json_string(a->only[i]));
    json_object_set_new(j, "only", only);
  }
  cli_print_json(j);
  json_decref(j);
}

/* run without --json: the summary in words. */
static void run_print_text(const struct cli_args *a, const struct cli_ctx *c,
                           const struct backup_result *r, const char *status, double rate,
                           json_t *missed) {
  char b1[32], b2[32], b3[32], b4[32];
  if (a->dry_run)
    printf("dry run: nothing was stored\n");
  else
    printf("snapshot %.8s saved (%s)\n", r->snapshot_id, status);
  printf("  items     %llu (%llu unchanged since the parent snapshot, not read)\n",
         (unsigned long long)r->items, (unsigned long long)r->reused_items);
  printf("  read      %s\n", format_bytes(r->bytes_read, b1, sizeof(b1)));
  printf("  new       %s in %llu of %llu chunks (after dedup, before compression)\n",
         format_bytes(r->new_bytes, b2, sizeof(b2)), (unsigned long long)r->new_chunks,
         (unsigned long long)r->chunks);
  const char *zalg = c->p->compress_algorithm ? c->p->compress_algorithm : "zstd";
  int zip = strcmp(zalg, "none") != 0;
  printf("  stored    %s in %llu pack(s) (%s%s, %s%s)\n",
         format_bytes(r->stored_bytes, b3, sizeof(b3)), (unsigned long long)r->packs,
         zip ? "compressed with " : "not compressed", zip ? zalg : "",
         c->repo->crypto ? "encrypted with " : "not encrypted",
         c->repo->crypto ? c->repo->crypto->name : "");
  printf("  duration  %.2f s (%s/s)\n", r->seconds, format_bytes((uint64_t)rate, b4, sizeof(b4)));
  if (r->partial)
    printf("  warnings  %zu (the snapshot is partial; see the messages above)\n",
           json_array_size(r->warnings));
  size_t k;
  json_t *v;
  json_array_foreach(missed, k, v) printf(
      "  MISSED    sink '%s' does not hold snapshot %.8s; run 'engine sync' when it is back\n",
      json_string_value(v), a->dry_run ? "" : r->snapshot_id);
}

/* retention: { apply: after-run }: forget under the exclusive lock. Returns
 * EXIT_ERROR with *err when that failed (the snapshot is saved: sr's
 * outcome says which), else exit_code. */
static int run_retention(const struct cli_globals *g, const struct cli_args *a, struct cli_ctx *c,
                         struct status_run *sr, int partial, int exit_code, char **err) {
  cli_unlock(c);
  json_t *report = NULL;
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  if (cli_lock(c, 1, a->lock_wait_ms, 0, err) != 0 ||
      forget_run(c->repo, &c->p->retention, c->p->name, host, 0, NULL, &report, err) != 0) {
    char *msg = xasprintf("the snapshot was saved, but applying retention failed: %s", *err);
    free(*err);
    *err = msg;
    exit_code = EXIT_ERROR;
    sr->outcome = partial ? "partial" : "complete";
  } else if (!g->quiet && !a->json) {
    printf("  retention removed %lld snapshot(s)\n",
           (long long)json_integer_value(json_object_get(report, "removed")));
  }
  json_decref(report);
  return exit_code;
}

int cmd_run(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  char *err = NULL;
  int64_t when = a->time ? a->time_s : 0; /* checked by the parser */
  double t0 = cli_mono_now();
  struct status_run sr = {.started = (int64_t)time(NULL)};
  int orc = run_open(g, a, &c, &sr, &err);
  if (orc != EXIT_OK)
    return run_end(&c, a, &sr, t0, orc, err);
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
  json_t *missed = run_missed_sinks(&c);
  if (!a->dry_run)
    cli_note_run(&r, status, missed);
  if (a->json)
    run_print_json(a, &c, &r, status, rate, missed, sr.lock_wait_seconds);
  else if (!g->quiet)
    run_print_text(a, &c, &r, status, rate, missed);
  json_decref(missed);
  json_decref(r.warnings);
  int exit_code = r.partial ? EXIT_PARTIAL : EXIT_OK;
  if (!a->dry_run && c.p->retention.set && c.p->retention.apply &&
      strcmp(c.p->retention.apply, "after-run") == 0)
    exit_code = run_retention(g, a, &c, &sr, r.partial, exit_code, &err);
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
    cli_print_json(j);
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
