/* engine check | repair */
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cmd_common.h"
#include "cli/dispatch.h"
#include "ops/status.h"
#include "pipeline/check.h"
#include "pipeline/repair.h"
#include "pipeline/restore.h"
#include "repo/records.h"
#include "repo/tree.h"
#include "util/log.h"

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
    double t0 = cli_mono_now();
    int rc = restore_run(&ro, &res, &err);
    double took = cli_mono_now() - t0;
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
  double t0 = cli_mono_now();
  int rc = cli_open_locked(g, a, &c, a->restore_test, 1, 1);
  if (rc)
    return rc;
  struct check_result res;
  char *err = NULL;
  rc = check_run(c.repo, a->read_data, a->json, &res, &err);
  struct rt_result rt = {0};
  if (rc < 0) {
    log_error("%s", err);
    record_verify(&c, a, started, cli_mono_now() - t0, &res, rc, err, NULL);
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
    if (res.shredded_items || res.shredded_packs) {
      json_object_set_new(j, "shredded_items", json_integer((json_int_t)res.shredded_items));
      json_object_set_new(j, "shredded_packs", json_integer((json_int_t)res.shredded_packs));
    }
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
    cli_print_json(j);
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
    if ((res.shredded_items || res.shredded_packs) && !g->quiet)
      printf("shredded tenants: %llu item(s) and %llu pack(s) of theirs cannot be read by anyone "
             "(by design; 'engine prune' removes the packs)\n",
             (unsigned long long)res.shredded_items, (unsigned long long)res.shredded_packs);
    if (a->restore_test && rt.tested && !g->quiet)
      printf("restore test of snapshot %.8s: %s; restored in %.1f s%s%s\n", rt.snapshot, rt.result,
             rt.seconds, rto_known ? (rto_met ? " (within" : " (LONGER than") : "",
             rto_known ? " the recovery-time objective)" : "");
  }
  record_verify(&c, a, started, cli_mono_now() - t0, &res, rc, NULL, &rt);
  json_decref(rt_sources);
  free(rt.error);
  json_decref(res.problems);
  cli_close(&c);
  return rc == 0 && !rt_failed ? EXIT_OK : EXIT_ERROR;
}

/* ---- repair ------------------------------------------------------------------ */

int cmd_repair(const struct cli_globals *g, const struct cli_args *a) {
  /* the parser checked the action (index|snapshots) and what it takes */
  int is_index = strcmp(a->pos[0], "index") == 0;
  struct cli_ctx c;
  int rc = cli_open_existing(g, a->pos[1], &c, 0, 0);
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
    cli_print_json(report);
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
