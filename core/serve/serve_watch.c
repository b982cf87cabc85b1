/* engine serve: what happens by the clock. Once a minute, just after the
 * minute starts: scheduled runs (cron, like cron: in local time, each
 * pipeline at most once per tick, paused schedules skipped), the daily
 * summary and the refresh of statuses that are due; every second the jobs'
 * timeouts and kills; every few seconds the recovery-point watch
 * (serve_status.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve_int.h"
#include "util/log.h"

/* ---- the daily summary ------------------------------------------------------------------ */

static void local_day(time_t t, char out[16]) {
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(out, 16, "%Y-%m-%d", &tm);
}

static int minute_of_day(time_t t) {
  struct tm tm;
  localtime_r(&t, &tm);
  return tm.tm_hour * 60 + tm.tm_min;
}

/* The jobs of the last 24 hours of this pipeline, by kind and state. */
static json_t *jobs_last_day(struct serve *s, const char *pipeline, double now) {
  json_t *o = json_object();
  for (const struct serve_job *j = s->jobs; j; j = j->next) {
    if (strcmp(j->pipeline, pipeline) != 0 || j->finished_at < now - 86400)
      continue;
    const char *k = serve_job_kind_name(j->kind);
    json_t *byk = json_object_get(o, k);
    if (!byk) {
      byk = json_object();
      json_object_set_new(o, k, byk);
    }
    const char *state = serve_job_state_name(j->state);
    json_object_set_new(byk, state,
                        json_integer(json_integer_value(json_object_get(byk, state)) + 1));
  }
  return o;
}

static void daily_summary(struct serve *s, time_t now) {
  char today[16];
  local_day(now, today);
  if (strcmp(today, s->summary_day) == 0 || minute_of_day(now) < s->summary_minute)
    return;
  snprintf(s->summary_day, sizeof(s->summary_day), "%s", today);
  serve_state_save(s);
  serve_say("daily summary of %s", today);
  for (size_t i = 0; i < s->n_pipelines; i++) {
    const struct serve_pipeline *p = &s->pipelines[i];
    if (!p->valid)
      continue;
    struct serve_stats *st = serve_stats_get(s, p->name);
    json_t *f = serve_watch_fields(s, p);
    json_object_set_new(f, "day", json_string(today));
    json_object_set_new(f, "jobs_last_24h", jobs_last_day(s, p->name, (double)now));
    json_object_set_new(f, "stale", json_boolean(st->stale));
    json_object_set_new(f, "schedule_paused", json_boolean(st->paused));
    serve_notify(s, p, "daily_summary", f);
  }
}

/* ---- the minute tick -------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t);

static void arm_tick(struct serve *s) {
  /* just after the next minute starts, whatever drift the last tick had */
  uint64_t now_ms = (uint64_t)(serve_now() * 1000.0);
  uint64_t delay = 60000 - now_ms % 60000 + 200;
  uv_timer_start(&s->tick, on_tick, delay, 0);
}

static void run_scheduled(struct serve *s, const struct serve_pipeline *p) {
  struct serve_stats *st = serve_stats_get(s, p->name);
  if (st->paused) {
    log_debug("serve: the schedule of pipeline '%s' is paused", p->name);
    return;
  }
  struct serve_job *a = serve_active_job(s, p->name);
  if (a) {
    st->skipped++;
    log_warn("serve: scheduled run of pipeline '%s' skipped: job %lld (%s) is still %s", p->name,
             (long long)a->id, serve_job_kind_name(a->kind), serve_job_state_name(a->state));
    return;
  }
  struct serve_job *j;
  int busy;
  char *err = NULL;
  const char *args[] = {"run", p->path, "--json", "--progress", "never", NULL};
  if (serve_start_job(s, p, JOB_RUN, "schedule", args, NULL, &j, &busy, &err) != 0) {
    log_warn("serve: scheduled run of pipeline '%s' not started: %s", p->name, err);
    free(err);
  }
}

static void on_tick(uv_timer_t *t) {
  struct serve *s = t->data;
  time_t now = time(NULL);
  time_t minute = now - now % 60;
  /* every minute since the last look (a late tick still sees the minutes it
   * missed), but each pipeline starts at most once; after a clock jump only
   * the current minute counts */
  time_t from = s->last_minute + 60;
  if (s->last_minute == 0 || minute < s->last_minute || minute - s->last_minute > 3600)
    from = minute;
  for (size_t i = 0; i < s->n_pipelines; i++) {
    const struct serve_pipeline *p = &s->pipelines[i];
    if (!p->valid || !p->schedule)
      continue;
    for (time_t m = from; m <= minute; m += 60) {
      struct tm tm;
      if (localtime_r(&m, &tm) && cron_matches(&p->cron, &tm)) {
        run_scheduled(s, p);
        break;
      }
    }
  }
  s->last_minute = minute;
  daily_summary(s, now);
  serve_status_refresh(s, NULL);
  arm_tick(s);
}

/* Every second: job timeouts and kills; every WATCH_EVERY_S the RPO of
 * each pipeline (cheap: the newest snapshot's time is in the cached status),
 * so stale is raised within seconds of the objective passing. */
#define WATCH_EVERY_S 5
static void on_watchdog(uv_timer_t *t) {
  struct serve *s = t->data;
  static unsigned beat;
  serve_jobs_watchdog(s);
  if (++beat % WATCH_EVERY_S != 0 || s->stopping)
    return;
  for (size_t i = 0; i < s->n_pipelines; i++)
    if (s->pipelines[i].valid)
      serve_rpo_evaluate(s, &s->pipelines[i], serve_now());
}

void serve_watch_start(struct serve *s) {
  time_t now = time(NULL);
  s->last_minute = now - now % 60; /* the current minute has begun: it is not caught up */
  /* a first start after today's summary time sends the first one tomorrow */
  if (!s->summary_day[0] && minute_of_day(now) >= s->summary_minute)
    local_day(now, s->summary_day);
  arm_tick(s);
  uv_timer_start(&s->watchdog, on_watchdog, 1000, 1000);
  serve_status_refresh(s, NULL);
}

void serve_watch_stop(struct serve *s) {
  /* the watchdog goes on: cancelled jobs still get their SIGKILL */
  uv_timer_stop(&s->tick);
  serve_status_stop();
}
