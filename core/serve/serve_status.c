/* engine serve: each pipeline's status and the recovery-point watch.
 *
 * The status is read from the pipeline's repository by a child
 * `engine status PATH --json` (at start, after each of its jobs, and every
 * SERVE_STATUS_REFRESH_S), so it survives restarts and sees runs from
 * timers and other hosts.
 *
 * The watch: a pipeline is stale when its newest complete snapshot is older
 * than its RPO (objectives.rpo, 24 h by default); one without any counts
 * from when this server first saw it. Entering that state raises `stale`
 * once (a webhook through the pipeline's notify: entries and
 * engine_stale{pipeline} 1), leaving it raises `recovered`; the state is
 * kept in state.json, so a restart does not raise it again. Webhooks are
 * called on the thread pool (notify_send blocks). */
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/pipeline.h"
#include "ops/notify.h"
#include "serve/serve_int.h"
#include "util/encoding.h"
#include "util/log.h"

#define STATUS_OUT_CAP (1u << 20)
#define STATUS_ERR_TAIL 4096

/* ---- notifications ------------------------------------------------------------------ */

struct notice {
  uv_work_t w;
  struct serve *s;
  char *path, *pipeline, *event;
  json_t *fields; /* owned by the work until it is done */
  int sent, wanted;
  char *err;
};

static void notice_work(uv_work_t *w) {
  struct notice *n = w->data;
  struct pipeline *p = NULL;
  /* the structure is enough: notify: entries need no plugin */
  if (pipeline_load(n->path, NULL, NULL, &p, &n->err) != 0)
    return;
  n->wanted = notify_wanted(p, n->event);
  if (n->wanted) {
    json_t *body = notify_body(p, n->event);
    json_object_update(body, n->fields);
    n->sent = notify_send(p, n->event, body);
    json_decref(body);
  }
  pipeline_free(p);
  /* libcrypto's state of this pool thread (the HTTP client's TLS): the
   * thread outlives the loop and is never joined */
  OPENSSL_thread_stop();
}

static void notice_done(uv_work_t *w, int status) {
  struct notice *n = w->data;
  struct serve *s = n->s;
  if (status != 0)
    log_warn("serve: the %s notification of pipeline '%s' was not sent: %s", n->event, n->pipeline,
             uv_strerror(status));
  else if (n->err)
    log_warn("serve: the %s notification of pipeline '%s' was not sent: %s", n->event, n->pipeline,
             n->err);
  else if (n->wanted)
    serve_say("%s notification of pipeline %s: %d webhook(s) accepted it", n->event, n->pipeline,
              n->sent);
  s->notifying--;
  free(n->path);
  free(n->pipeline);
  free(n->event);
  free(n->err);
  json_decref(n->fields);
  free(n);
  serve_maybe_stopped(s);
}

/* Send event with fields (taken) to the pipeline's webhooks that want it. */
void serve_notify(struct serve *s, const struct serve_pipeline *p, const char *event,
                  json_t *fields) {
  struct notice *n = xcalloc(1, sizeof(*n));
  n->s = s;
  n->path = xstrdup(p->path);
  n->pipeline = xstrdup(p->name);
  n->event = xstrdup(event);
  n->fields = fields;
  n->w.data = n;
  s->notifying++;
  int rc = uv_queue_work(&s->loop, &n->w, notice_work, notice_done);
  if (rc != 0)
    notice_done(&n->w, rc);
}

/* ---- each pipeline's status ------------------------------------------------------------ */

struct status_child {
  struct serve *s;
  char *pipeline;
  struct proc *proc;
  struct status_child *next;
};
static struct status_child *g_status_children;

static void on_status_done(void *ud, const struct proc_result *r) {
  struct status_child *c = ud;
  struct serve *s = c->s;
  for (struct status_child **pp = &g_status_children; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  s->status_children--;
  struct serve_stats *st = serve_stats_get(s, c->pipeline);
  st->status_busy = 0;
  st->status_due = serve_now() + SERVE_STATUS_REFRESH_S;
  json_error_t je;
  json_t *arr = r->term_signal || r->out_truncated
                    ? NULL
                    : json_loadb(r->out, r->out_len, JSON_DISABLE_EOF_CHECK, &je);
  json_t *one = json_array_get(arr, 0);
  free(st->status_error);
  st->status_error = NULL;
  if (json_is_object(one) && !json_object_get(one, "error")) {
    json_decref(st->status);
    st->status = json_incref(one);
    st->status_at = serve_now();
  } else {
    const char *e = json_string_value(json_object_get(one, "error"));
    st->status_error =
        e ? xstrdup(e)
        : r->term_signal
            ? xasprintf("engine status was killed by signal %d", r->term_signal)
            : xasprintf("engine status exited with status %d and no status", (int)r->exit_status);
    log_warn("serve: the status of pipeline '%s' could not be read: %s", c->pipeline,
             st->status_error);
  }
  json_decref(arr);
  const struct serve_pipeline *p = serve_find_pipeline(s, c->pipeline);
  if (p && p->valid && !s->stopping)
    serve_rpo_evaluate(s, p, serve_now());
  free(c->pipeline);
  free(c);
  serve_status_refresh(s, NULL);
  serve_maybe_stopped(s);
}

static void start_status(struct serve *s, const struct serve_pipeline *p) {
  struct serve_stats *st = serve_stats_get(s, p->name);
  const char *args[] = {"status", p->path, "--json", NULL};
  char **argv = serve_child_argv(s, args);
  struct status_child *c = xcalloc(1, sizeof(*c));
  c->s = s;
  c->pipeline = xstrdup(p->name);
  char *err = NULL;
  int pid;
  int rc = proc_spawn(&s->loop, "/proc/self/exe", argv, STATUS_OUT_CAP, STATUS_ERR_TAIL,
                      on_status_done, c, &c->proc, &pid, &err);
  serve_free_argv(argv);
  if (rc != 0) {
    log_warn("serve: unable to read the status of pipeline '%s': %s", p->name, err);
    free(err);
    free(c->pipeline);
    free(c);
    st->status_due = serve_now() + SERVE_STATUS_REFRESH_S;
    return;
  }
  st->status_busy = 1;
  s->status_children++;
  c->next = g_status_children;
  g_status_children = c;
}

void serve_status_refresh(struct serve *s, const char *pipeline) {
  if (pipeline)
    serve_stats_get(s, pipeline)->status_due = 0;
  double now = serve_now();
  for (size_t i = 0; i < s->n_pipelines && !s->stopping; i++) {
    const struct serve_pipeline *p = &s->pipelines[i];
    if (!p->valid || s->status_children >= SERVE_MAX_STATUS_CHILDREN)
      continue;
    struct serve_stats *st = serve_stats_get(s, p->name);
    if (!st->status_busy && st->status_due <= now)
      start_status(s, p);
  }
}

void serve_status_stop(void) {
  for (struct status_child *c = g_status_children; c; c = c->next)
    proc_kill(c->proc, SIGTERM);
}

json_t *serve_status_json(struct serve *s, const struct serve_pipeline *p) {
  if (!p->valid)
    return json_null();
  struct serve_stats *st = serve_stats_get(s, p->name);
  json_t *o = st->status ? json_deep_copy(st->status) : json_object();
  if (!st->status) {
    json_object_set_new(o, "pipeline", serve_jstr(p->name));
    json_object_set_new(o, "rpo_seconds", json_integer(p->rpo_ms / 1000));
    json_object_set_new(o, "rto_seconds",
                        p->rto_ms > 0 ? json_integer(p->rto_ms / 1000) : json_null());
  }
  /* the age now, not when it was read */
  int64_t t = 0;
  const char *newest =
      json_string_value(json_object_get(json_object_get(o, "newest_complete_snapshot"), "time"));
  if (newest && parse_iso_time(newest, &t) == 0) {
    int64_t age = (int64_t)serve_now() - t;
    json_object_set_new(o, "recovery_point_age_seconds", json_integer(age));
    json_object_set_new(o, "rpo_met", json_boolean(age * 1000 <= p->rpo_ms));
  }
  json_object_set_new(o, "status_read_at", serve_iso_or_null(st->status_at));
  json_object_set_new(o, "status_error", serve_jstr(st->status_error));
  json_object_set_new(o, "stale", json_boolean(st->stale));
  json_object_set_new(o, "stale_since",
                      st->stale ? serve_iso_or_null(st->stale_since) : json_null());
  json_object_set_new(o, "schedule_paused", json_boolean(st->paused));
  return o;
}

/* ---- the recovery-point watch -------------------------------------------------------- */

/* The fields of a stale / recovered / daily_summary body. */
json_t *serve_watch_fields(struct serve *s, const struct serve_pipeline *p) {
  json_t *st = serve_status_json(s, p);
  json_t *o = json_object();
  static const char *const keys[] = {"newest_complete_snapshot",
                                     "recovery_point_age_seconds",
                                     "rpo_seconds",
                                     "rpo_met",
                                     "last_run",
                                     "last_verify",
                                     "last_restore_test",
                                     "rto_seconds",
                                     "runs_last_24h",
                                     "status_error"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    json_t *v = json_object_get(st, keys[i]);
    json_object_set(o, keys[i], v ? v : json_null());
  }
  json_decref(st);
  return o;
}

void serve_rpo_evaluate(struct serve *s, const struct serve_pipeline *p, double now) {
  struct serve_stats *st = serve_stats_get(s, p->name);
  /* a stale episode from before a restart ends only on a status read */
  if (!st->status && st->stale)
    return;
  int64_t newest = 0;
  const char *t = json_string_value(
      json_object_get(json_object_get(st->status, "newest_complete_snapshot"), "time"));
  if (t)
    parse_iso_time(t, &newest);
  /* without a recovery point the clock starts when this server first saw
   * the pipeline */
  double since = newest > 0 ? (double)newest : st->first_seen;
  int stale = now - since > (double)p->rpo_ms / 1000.0;
  if (stale == st->stale)
    return;
  st->stale = stale;
  json_t *f = serve_watch_fields(s, p);
  if (stale) {
    st->stale_since = now;
    st->stale_events++;
    char *msg = newest > 0
                    ? xasprintf("the newest complete snapshot of pipeline '%s' is %.0f s old, "
                                "more than its recovery-point objective of %lld s",
                                p->name, now - since, (long long)(p->rpo_ms / 1000))
                    : xasprintf("pipeline '%s' has no complete snapshot, %.0f s after this server "
                                "started watching it (recovery-point objective %lld s)",
                                p->name, now - since, (long long)(p->rpo_ms / 1000));
    log_warn("serve: STALE: %s", msg);
    json_object_set_new(f, "message", json_string(msg));
    json_object_set_new(f, "stale_since", serve_iso_or_null(now));
    free(msg);
    serve_notify(s, p, "stale", f);
  } else {
    double was = st->stale_since;
    st->stale_since = 0;
    char *msg = xasprintf("pipeline '%s' has a complete snapshot within its recovery-point "
                          "objective again (it was stale for %.0f s)",
                          p->name, was > 0 ? now - was : 0);
    serve_say("recovered: %s", msg);
    json_object_set_new(f, "message", json_string(msg));
    json_object_set_new(f, "stale_since", serve_iso_or_null(was));
    json_object_set_new(f, "stale_seconds", json_real(was > 0 ? now - was : 0));
    free(msg);
    serve_notify(s, p, "recovered", f);
  }
  serve_state_save(s);
}
