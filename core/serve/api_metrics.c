/* engine serve: GET /metrics (Prometheus text format 0.0.4; docs/SERVE.md).
 * The server's own series, each pipeline's runs and jobs since start, and
 * the series of each pipeline's status from its repository (the same as
 * `engine run --metrics-file` writes: ops/status.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/metrics.h"
#include "ops/status.h"
#include "serve/serve_int.h"

static void families(struct metrics *m) {
  metrics_family(m, "engine_up", "gauge", "1 while engine serve is running.");
  metrics_family(m, "engine_build_info", "gauge", "The engine version.");
  metrics_family(m, "engine_start_time_seconds", "gauge", "When the server started (unix time).");
  metrics_family(m, "engine_pipelines", "gauge", "Pipelines in the config directory, by validity.");
  metrics_family(m, "engine_jobs_running", "gauge", "Jobs running now.");
  metrics_family(m, "engine_jobs_queued", "gauge", "Jobs waiting for a free slot.");
  status_run_families(m);
  metrics_family(m, "engine_scheduled_runs_skipped_total", "counter",
                 "Scheduled runs skipped because the pipeline's previous job was still active.");
  metrics_family(m, "engine_jobs_cancelled_total", "counter", "Jobs cancelled over the API.");
  metrics_family(m, "engine_jobs_timed_out_total", "counter",
                 "Jobs stopped because they ran longer than the pipeline's limits.timeout.");
  metrics_family(m, "engine_schedule_paused", "gauge",
                 "1 while the pipeline's schedule is paused (PUT .../schedule).");
  status_metrics_families(m);
  metrics_family(m, "engine_recovery_point_age_seconds", "gauge",
                 "Age of the pipeline's newest complete snapshot (from its start time).");
  metrics_family(m, "engine_stale", "gauge",
                 "1 while the pipeline's newest complete snapshot is older than its RPO.");
  metrics_family(m, "engine_stale_events_total", "counter",
                 "Times the pipeline became stale (each raised the stale notification).");
}

/* engine_last_run_* from the pipeline's last run as its repository
 * recorded it (a run before this server started, or by a timer). */
static void last_run_from_status(struct metrics *m, const char *p, json_t *st) {
  json_t *run = json_object_get(st, "last_run");
  if (!json_is_object(run))
    return;
  metrics_set(m, "engine_last_run_timestamp_seconds", (double)status_time(run, "time_end"),
              "pipeline", p, NULL);
  metrics_set(m, "engine_last_run_duration_seconds",
              json_number_value(json_object_get(run, "duration_seconds")), "pipeline", p, NULL);
  metrics_set(m, "engine_last_run_exit_code",
              (double)json_integer_value(json_object_get(run, "exit_code")), "pipeline", p, NULL);
}

void serve_metrics(struct serve *s, struct httpd_req *req) {
  struct metrics *m = metrics_new();
  families(m);
  size_t invalid = 0;
  for (size_t i = 0; i < s->n_pipelines; i++)
    invalid += !s->pipelines[i].valid;
  metrics_set(m, "engine_up", 1, NULL);
  metrics_set(m, "engine_build_info", 1, "version", ENGINE_VERSION, NULL);
  metrics_set(m, "engine_start_time_seconds", s->started_at, NULL);
  metrics_set(m, "engine_pipelines", (double)(s->n_pipelines - invalid), "valid", "true", NULL);
  metrics_set(m, "engine_pipelines", (double)invalid, "valid", "false", NULL);
  metrics_set(m, "engine_jobs_running", s->running, NULL);
  metrics_set(m, "engine_jobs_queued", s->queued, NULL);
  double now = serve_now();
  for (struct serve_stats *st = s->stats; st; st = st->next) {
    const char *p = st->name;
    const struct serve_pipeline *sp = serve_find_pipeline(s, p);
    if (!sp || !sp->valid) {
      /* a pipeline seen only in the state file, or removed: its counters
       * stay until the server restarts, if it ever ran here */
      if (!st->has_last && !st->succeeded && !st->failed && !st->partial)
        continue;
    }
    metrics_set(m, "engine_runs_total", (double)st->succeeded, "pipeline", p, "result", "succeeded",
                NULL);
    metrics_set(m, "engine_runs_total", (double)st->partial, "pipeline", p, "result", "partial",
                NULL);
    metrics_set(m, "engine_runs_total", (double)st->failed, "pipeline", p, "result", "failed",
                NULL);
    metrics_set(m, "engine_runs_waited_total", (double)st->waited, "pipeline", p, NULL);
    metrics_set(m, "engine_scheduled_runs_skipped_total", (double)st->skipped, "pipeline", p, NULL);
    metrics_set(m, "engine_jobs_cancelled_total", (double)st->cancelled, "pipeline", p, NULL);
    metrics_set(m, "engine_jobs_timed_out_total", (double)st->timed_out, "pipeline", p, NULL);
    if (st->has_last) {
      metrics_set(m, "engine_last_run_timestamp_seconds", st->last_finished, "pipeline", p, NULL);
      metrics_set(m, "engine_last_run_duration_seconds", st->last_duration, "pipeline", p, NULL);
      metrics_set(m, "engine_last_run_exit_code", st->last_exit_code, "pipeline", p, NULL);
      metrics_set(m, "engine_last_run_bytes_read", (double)st->last_bytes_read, "pipeline", p,
                  NULL);
      metrics_set(m, "engine_last_run_stored_bytes", (double)st->last_stored_bytes, "pipeline", p,
                  NULL);
    } else if (st->status) {
      last_run_from_status(m, p, st->status);
    }
    if (!sp || !sp->valid)
      continue;
    metrics_set(m, "engine_schedule_paused", st->paused, "pipeline", p, NULL);
    metrics_set(m, "engine_rpo_seconds", (double)(sp->rpo_ms / 1000), "pipeline", p, NULL);
    if (sp->rto_ms > 0)
      metrics_set(m, "engine_rto_seconds", (double)(sp->rto_ms / 1000), "pipeline", p, NULL);
    if (st->status) {
      status_metrics_add(m, st->status);
      int64_t t = status_time(json_object_get(st->status, "newest_complete_snapshot"), "time");
      if (t > 0)
        metrics_set(m, "engine_recovery_point_age_seconds", now - (double)t, "pipeline", p, NULL);
    }
    if (st->has_last)
      metrics_set(m, "engine_last_run_lock_wait_seconds", st->last_lock_wait, "pipeline", p, NULL);
    metrics_set(m, "engine_stale", st->stale, "pipeline", p, NULL);
    metrics_set(m, "engine_stale_events_total", (double)st->stale_events, "pipeline", p, NULL);
  }
  size_t len;
  char *text = metrics_text(m, &len);
  metrics_free(m);
  httpd_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
  free(text);
}
