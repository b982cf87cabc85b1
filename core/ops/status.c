/* A pipeline's operational status (status.h). */
#include "ops/status.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/audit.h"
#include "repo/records.h"
#include "util/encoding.h"
#include "util/log.h"

int64_t status_time(json_t *o, const char *key) {
  int64_t t = 0;
  const char *s = json_string_value(json_object_get(o, key));
  if (!s || parse_iso_time(s, &t) != 0)
    return 0;
  return t;
}

json_t *status_snapshot_only(const struct snapshot *m) {
  json_t *only = json_object_get(m->extra, "only");
  return json_is_array(only) && json_array_size(only) > 0 ? only : NULL;
}

static json_t *iso_or_null(int64_t t) {
  if (t <= 0)
    return json_null();
  char *s = iso_time(t);
  json_t *j = json_string(s);
  free(s);
  return j;
}

static json_t *snapshot_brief(const struct snapshot *m) {
  if (!m)
    return json_null();
  json_t *o =
      json_pack("{s:s, s:o, s:o, s:s?}", "id", m->id, "time", iso_or_null(m->time), "time_end",
                iso_or_null(m->time_end ? m->time_end : m->time), "status", m->status);
  json_t *only = status_snapshot_only(m);
  if (only)
    json_object_set(o, "only", only);
  return o;
}

/* The fields of a runs/ record that status shows. */
static json_t *run_brief(json_t *rec) {
  if (!rec)
    return json_null();
  static const char *const keys[] = {
      "time",     "time_end", "duration_seconds",  "outcome", "exit_code", "error",
      "snapshot", "hostname", "lock_wait_seconds", "only",    "recorded"};
  json_t *o = json_object();
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    json_t *v = json_object_get(rec, keys[i]);
    if (v)
      json_object_set(o, keys[i], v);
  }
  return o;
}

/* A verify/ record as status shows it; rto_ms > 0: judge the restore
 * time against it. */
static json_t *verify_brief(json_t *rec, int64_t rto_ms) {
  if (!rec)
    return json_null();
  static const char *const keys[] = {"time",     "time_end", "duration_seconds", "check",
                                     "result",   "problems", "restore_seconds",  "snapshot",
                                     "hostname", "error",    "sources"};
  json_t *o = json_object();
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    json_t *v = json_object_get(rec, keys[i]);
    if (v)
      json_object_set(o, keys[i], v);
  }
  json_t *rs = json_object_get(rec, "restore_seconds");
  json_object_set_new(o, "rto_met",
                      rto_ms > 0 && json_is_number(rs)
                          ? json_boolean(json_number_value(rs) * 1000.0 <= (double)rto_ms)
                          : json_null());
  return o;
}

/* Runs of the last 24 hours by outcome. */
static json_t *runs_last_day(json_t *runs, int64_t now) {
  json_t *o =
      json_pack("{s:i, s:i, s:i, s:i}", "complete", 0, "partial", 0, "failed", 0, "skipped", 0);
  size_t i;
  json_t *r;
  json_array_foreach(runs, i, r) {
    if (status_time(r, "time") < now - 86400)
      break; /* newest first */
    const char *out = json_string_value(json_object_get(r, "outcome"));
    const char *k = !out                              ? "failed"
                    : strcmp(out, "interrupted") == 0 ? "failed"
                    : json_object_get(o, out) != NULL ? out
                                                      : "failed";
    json_object_set_new(o, k, json_integer(json_integer_value(json_object_get(o, k)) + 1));
  }
  return o;
}

/* A run the local audit log holds but no repository does (it failed before
 * one was opened), in the shape of a runs/ record. */
static json_t *run_from_audit(json_t *rec) {
  int64_t end = status_time(rec, "time");
  double secs = json_number_value(json_object_get(rec, "duration_seconds"));
  json_int_t code = json_integer_value(json_object_get(rec, "exit_code"));
  json_t *o = json_object();
  json_object_set_new(o, "time", iso_or_null(end - (int64_t)(secs + 0.5)));
  json_object_set_new(o, "time_end", iso_or_null(end));
  json_object_set_new(o, "duration_seconds", json_real(secs));
  json_object_set_new(o, "outcome", json_string(code == 130 ? "interrupted" : "failed"));
  json_object_set_new(o, "exit_code", json_integer(code));
  json_t *e = json_object_get(rec, "error");
  json_object_set_new(o, "error", json_is_string(e) ? json_incref(e) : json_null());
  json_object_set_new(o, "snapshot", json_null());
  json_object_set(o, "hostname", json_object_get(rec, "host"));
  json_object_set_new(o, "recorded", json_string("local audit log"));
  return o;
}

/* Adds to runs (newest first) the failed runs of this host that never
 * reached the repository, so a before hook that fails every night is not
 * hidden behind the last run that got through. */
static void add_unrecorded_runs(json_t *runs, const char *pipeline) {
  json_t *local = audit_local_unrecorded_runs(pipeline);
  size_t i;
  json_t *rec;
  json_array_foreach(local, i, rec) {
    const char *out = json_string_value(json_object_get(rec, "outcome"));
    if (!out || strcmp(out, "failure") != 0 || status_time(rec, "time") <= 0)
      continue;
    json_t *run = run_from_audit(rec);
    int64_t t = status_time(run, "time");
    size_t at = 0;
    while (at < json_array_size(runs) && status_time(json_array_get(runs, at), "time") > t)
      at++;
    json_array_insert_new(runs, at, run);
  }
  json_decref(local);
}

json_t *status_collect(struct repo *r, const struct pipeline *p, int64_t now, char **err) {
  struct snapshot_list all;
  json_t *unreadable;
  if (snapshot_list(r, &all, &unreadable, err) != 0)
    return NULL;
  const struct snapshot *newest = NULL, *complete = NULL, *newest_only = NULL;
  size_t count = 0, count_only = 0;
  for (size_t i = 0; i < all.n; i++) {
    const struct snapshot *m = all.v[i];
    if (!m->pipeline || strcmp(m->pipeline, p->name) != 0)
      continue;
    if (status_snapshot_only(m)) {
      count_only++;
      newest_only = m;
      continue;
    }
    count++;
    newest = m;
    if (m->status && strcmp(m->status, "complete") == 0)
      complete = m;
  }
  json_t *runs = NULL, *verifies = NULL;
  size_t bad_runs = 0, bad_verifies = 0;
  char *e = NULL;
  if (record_list(r, RECORD_RUN, p->name, &runs, &bad_runs, &e) != 0) {
    log_warn("unable to read the run records: %s", e);
    free(e);
    e = NULL;
    runs = json_array();
  }
  add_unrecorded_runs(runs, p->name);
  if (record_list(r, RECORD_VERIFY, p->name, &verifies, &bad_verifies, &e) != 0) {
    log_warn("unable to read the verification records: %s", e);
    free(e);
    verifies = json_array();
  }
  json_t *last_rt = NULL;
  size_t i;
  json_t *v;
  json_array_foreach(verifies, i, v) if (json_is_true(json_object_get(v, "restore_test"))) {
    last_rt = v;
    break;
  }
  int64_t rpo_s = p->rpo_ms / 1000, age = complete ? now - complete->time : -1;
  int rpo_met = complete && age <= rpo_s;
  json_t *last_verify = verify_brief(json_array_get(verifies, 0), p->rto_ms);
  json_t *last_restore = verify_brief(last_rt, p->rto_ms);
  const char *vres = json_string_value(json_object_get(last_verify, "result"));
  int verify_ok = !vres || strcmp(vres, "failed") != 0;
  int rto_ok = !json_is_false(json_object_get(last_restore, "rto_met"));
  json_t *o = json_object();
  json_object_set_new(o, "pipeline", json_string(p->name));
  json_object_set_new(o, "path", json_string(p->path));
  json_object_set_new(o, "repository", json_string(r->id));
  json_object_set_new(o, "checked_at", iso_or_null(now));
  json_object_set_new(o, "ok", json_boolean(rpo_met && verify_ok && rto_ok));
  json_object_set_new(o, "state",
                      json_string(!complete  ? "no_recovery_point"
                                  : !rpo_met ? "stale"
                                             : "ok"));
  json_object_set_new(o, "rpo_seconds", json_integer(rpo_s));
  json_object_set_new(o, "rto_seconds",
                      p->rto_ms > 0 ? json_integer(p->rto_ms / 1000) : json_null());
  json_object_set_new(o, "rpo_met", json_boolean(rpo_met));
  json_object_set_new(o, "recovery_point_age_seconds", complete ? json_integer(age) : json_null());
  json_object_set_new(o, "newest_complete_snapshot", snapshot_brief(complete));
  json_object_set_new(o, "newest_snapshot", snapshot_brief(newest));
  json_object_set_new(o, "last_success",
                      complete
                          ? iso_or_null(complete->time_end ? complete->time_end : complete->time)
                          : json_null());
  json_object_set_new(o, "snapshots", json_integer((json_int_t)count));
  json_object_set_new(o, "only_snapshots", json_integer((json_int_t)count_only));
  json_object_set_new(o, "newest_only_snapshot", snapshot_brief(newest_only));
  json_object_set_new(o, "unreadable_snapshots",
                      json_integer((json_int_t)json_array_size(unreadable)));
  json_object_set_new(o, "last_run", run_brief(json_array_get(runs, 0)));
  json_object_set_new(o, "runs_last_24h", runs_last_day(runs, now));
  json_object_set_new(o, "last_verify", last_verify);
  json_object_set_new(o, "last_restore_test", last_restore);
  json_object_set_new(o, "unreadable_records", json_integer((json_int_t)(bad_runs + bad_verifies)));
  json_decref(runs);
  json_decref(verifies);
  json_decref(unreadable);
  snapshot_list_free(&all);
  return o;
}

/* ---- metrics ------------------------------------------------------------------ */

void status_metrics_families(struct metrics *m) {
  metrics_family(m, "engine_rpo_seconds", "gauge",
                 "The pipeline's recovery-point objective (objectives.rpo).");
  metrics_family(m, "engine_rto_seconds", "gauge",
                 "The pipeline's recovery-time objective (objectives.rto), when it has one.");
  metrics_family(m, "engine_newest_snapshot_timestamp_seconds", "gauge",
                 "Start time of the newest complete snapshot of the pipeline (unix time).");
  metrics_family(m, "engine_last_success_timestamp_seconds", "gauge",
                 "When the newest complete snapshot of the pipeline was finished (unix time).");
  metrics_family(m, "engine_last_verify_timestamp_seconds", "gauge",
                 "When the last verification (engine check) of the pipeline's repository ended.");
  metrics_family(m, "engine_last_verify_success", "gauge",
                 "1 when the last verification (check, read-data or restore test) found no "
                 "problem, else 0.");
  metrics_family(m, "engine_last_verify_problems", "gauge",
                 "Problems the last verification found.");
  metrics_family(m, "engine_restore_test_duration_seconds", "gauge",
                 "How long the last restore test took to restore (the measured recovery time).");
  metrics_family(m, "engine_restore_test_timestamp_seconds", "gauge",
                 "When the last restore test ended (unix time).");
  metrics_family(m, "engine_last_run_lock_wait_seconds", "gauge",
                 "How long the last run waited for another run of the pipeline on its host.");
}

void status_metrics_add(struct metrics *m, json_t *st) {
  const char *p = json_string_value(json_object_get(st, "pipeline"));
  if (!p)
    return;
  json_t *v = json_object_get(st, "rpo_seconds");
  if (json_is_integer(v))
    metrics_set(m, "engine_rpo_seconds", (double)json_integer_value(v), "pipeline", p, NULL);
  v = json_object_get(st, "rto_seconds");
  if (json_is_integer(v))
    metrics_set(m, "engine_rto_seconds", (double)json_integer_value(v), "pipeline", p, NULL);
  json_t *nc = json_object_get(st, "newest_complete_snapshot");
  if (json_is_object(nc)) {
    metrics_set(m, "engine_newest_snapshot_timestamp_seconds", (double)status_time(nc, "time"),
                "pipeline", p, NULL);
    metrics_set(m, "engine_last_success_timestamp_seconds", (double)status_time(st, "last_success"),
                "pipeline", p, NULL);
  }
  json_t *lv = json_object_get(st, "last_verify");
  if (json_is_object(lv)) {
    const char *res = json_string_value(json_object_get(lv, "result"));
    int64_t t = status_time(lv, "time_end");
    metrics_set(m, "engine_last_verify_timestamp_seconds",
                (double)(t ? t : status_time(lv, "time")), "pipeline", p, NULL);
    metrics_set(m, "engine_last_verify_success", res && strcmp(res, "failed") != 0 ? 1 : 0,
                "pipeline", p, NULL);
    metrics_set(m, "engine_last_verify_problems",
                (double)json_integer_value(json_object_get(lv, "problems")), "pipeline", p, NULL);
  }
  json_t *rt = json_object_get(st, "last_restore_test");
  v = json_object_get(rt, "restore_seconds");
  if (json_is_number(v)) {
    metrics_set(m, "engine_restore_test_duration_seconds", json_number_value(v), "pipeline", p,
                NULL);
    int64_t t = status_time(rt, "time_end");
    metrics_set(m, "engine_restore_test_timestamp_seconds",
                (double)(t ? t : status_time(rt, "time")), "pipeline", p, NULL);
  }
  v = json_object_get(json_object_get(st, "last_run"), "lock_wait_seconds");
  if (json_is_number(v))
    metrics_set(m, "engine_last_run_lock_wait_seconds", json_number_value(v), "pipeline", p, NULL);
}

/* ---- one run ------------------------------------------------------------------ */

int status_record_run(struct repo *r, const char *pipeline, const struct status_run *run,
                      char **err) {
  int64_t end = run->started + (int64_t)(run->seconds + 0.5);
  json_t *o = json_object();
  json_object_set_new(o, "pipeline", json_string(pipeline));
  json_object_set_new(o, "time", iso_or_null(run->started));
  json_object_set_new(o, "time_end", iso_or_null(end));
  json_object_set_new(o, "duration_seconds", json_real(run->seconds));
  json_object_set_new(o, "outcome", json_string(run->outcome));
  json_object_set_new(o, "exit_code", json_integer(run->exit_code));
  json_object_set_new(o, "error", run->error ? json_string(run->error) : json_null());
  json_object_set_new(o, "snapshot", run->snapshot ? json_string(run->snapshot) : json_null());
  json_object_set_new(o, "lock_wait_seconds", json_real(run->lock_wait_seconds));
  json_object_set_new(o, "items", json_integer((json_int_t)run->items));
  json_object_set_new(o, "bytes_read", json_integer((json_int_t)run->bytes_read));
  json_object_set_new(o, "new_bytes", json_integer((json_int_t)run->new_bytes));
  json_object_set_new(o, "stored_bytes", json_integer((json_int_t)run->stored_bytes));
  if (run->n_only) {
    json_t *only = json_array();
    for (size_t i = 0; i < run->n_only; i++)
      json_array_append_new(only, json_string(run->only[i]));
    json_object_set_new(o, "only", only);
  }
  if (!json_is_string(json_object_get(o, "error")) && run->error)
    json_object_set_new(o, "error", json_string("(not UTF-8)"));
  int rc = record_save(r, RECORD_RUN, o, NULL, err);
  json_decref(o);
  return rc;
}

void status_run_families(struct metrics *m) {
  metrics_family(m, "engine_runs_total", "counter",
                 "Finished backup runs, by pipeline and result (succeeded, partial, failed).");
  metrics_family(m, "engine_runs_skipped_total", "counter",
                 "Runs that gave up waiting for another run of the pipeline on this host.");
  metrics_family(m, "engine_runs_waited_total", "counter",
                 "Runs that waited for another run of the pipeline on this host, then ran.");
  metrics_family(m, "engine_last_run_timestamp_seconds", "gauge",
                 "When the last run finished (unix time).");
  metrics_family(m, "engine_last_run_duration_seconds", "gauge", "How long the last run took.");
  metrics_family(m, "engine_last_run_exit_code", "gauge",
                 "Exit status of the last run (0 complete, 3 partial, 1 error, 130 interrupted).");
  metrics_family(m, "engine_last_run_bytes_read", "gauge",
                 "Bytes the last run read from its sources.");
  metrics_family(m, "engine_last_run_stored_bytes", "gauge",
                 "Bytes the last run wrote to the repository.");
}

/* A counter of the previous file plus add. */
static void carry_counter(struct metrics *m, const struct metrics *prev, const char *name,
                          const char *pipeline, const char *result, double add) {
  int found;
  double v = result ? metrics_get(prev, name, &found, "pipeline", pipeline, "result", result, NULL)
                    : metrics_get(prev, name, &found, "pipeline", pipeline, NULL);
  if (result)
    metrics_set(m, name, v + add, "pipeline", pipeline, "result", result, NULL);
  else
    metrics_set(m, name, v + add, "pipeline", pipeline, NULL);
}

/* A gauge of the previous file, when it has one (what this run cannot
 * measure: the repository was not reachable). */
static void carry_gauge(struct metrics *m, const struct metrics *prev, const char *name,
                        const char *pipeline) {
  int found;
  double v = metrics_get(prev, name, &found, "pipeline", pipeline, NULL);
  if (found)
    metrics_set(m, name, v, "pipeline", pipeline, NULL);
}

int status_write_metrics_file(const char *path, struct repo *r, const struct pipeline *p,
                              const char *pipeline, const struct status_run *run, char **err) {
  struct metrics *prev = metrics_read_file(path);
  struct metrics *m = metrics_new();
  status_run_families(m);
  status_metrics_families(m);
  const char *result = strcmp(run->outcome, "complete") == 0  ? "succeeded"
                       : strcmp(run->outcome, "partial") == 0 ? "partial"
                                                              : "failed";
  int skipped = strcmp(run->outcome, "skipped") == 0;
  static const char *const results[] = {"succeeded", "partial", "failed"};
  for (size_t i = 0; i < 3; i++)
    carry_counter(m, prev, "engine_runs_total", pipeline, results[i],
                  !skipped && strcmp(results[i], result) == 0 ? 1 : 0);
  carry_counter(m, prev, "engine_runs_skipped_total", pipeline, NULL, skipped ? 1 : 0);
  carry_counter(m, prev, "engine_runs_waited_total", pipeline, NULL,
                !skipped && run->lock_wait_seconds >= 1.0 ? 1 : 0);
  double end = (double)run->started + run->seconds;
  metrics_set(m, "engine_last_run_timestamp_seconds", end, "pipeline", pipeline, NULL);
  metrics_set(m, "engine_last_run_duration_seconds", run->seconds, "pipeline", pipeline, NULL);
  metrics_set(m, "engine_last_run_exit_code", run->exit_code, "pipeline", pipeline, NULL);
  metrics_set(m, "engine_last_run_bytes_read", (double)run->bytes_read, "pipeline", pipeline, NULL);
  metrics_set(m, "engine_last_run_stored_bytes", (double)run->stored_bytes, "pipeline", pipeline,
              NULL);
  json_t *st = NULL;
  if (r && p) {
    char *e = NULL;
    st = status_collect(r, p, (int64_t)time(NULL), &e);
    if (!st) {
      log_warn("the metrics file keeps the previous status series: %s", e);
      free(e);
    }
  }
  if (st) {
    status_metrics_add(m, st);
  } else {
    static const char *const kept[] = {"engine_rpo_seconds",
                                       "engine_rto_seconds",
                                       "engine_newest_snapshot_timestamp_seconds",
                                       "engine_last_success_timestamp_seconds",
                                       "engine_last_verify_timestamp_seconds",
                                       "engine_last_verify_success",
                                       "engine_last_verify_problems",
                                       "engine_restore_test_duration_seconds",
                                       "engine_restore_test_timestamp_seconds"};
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
      carry_gauge(m, prev, kept[i], pipeline);
    if (p) {
      metrics_set(m, "engine_rpo_seconds", (double)(p->rpo_ms / 1000), "pipeline", pipeline, NULL);
      if (p->rto_ms > 0)
        metrics_set(m, "engine_rto_seconds", (double)(p->rto_ms / 1000), "pipeline", pipeline,
                    NULL);
    }
  }
  metrics_set(m, "engine_last_run_lock_wait_seconds", run->lock_wait_seconds, "pipeline", pipeline,
              NULL);
  int rc = metrics_write_file(m, path, err);
  json_decref(st);
  metrics_free(m);
  metrics_free(prev);
  return rc;
}
