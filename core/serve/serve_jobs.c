/* engine serve: jobs. Each job is a child `engine` (run, check, forget or
 * restore of one pipeline) spawned on the serve loop, at most one per
 * pipeline and SERVE_MAX_RUNNING at once; a job can be cancelled and is
 * stopped when the pipeline's limits.timeout passes (SIGCONT and SIGTERM to
 * its process group, SIGKILL SERVE_KILL_GRACE_S later: a stopped or hung
 * child goes too). Every job is written to the state directory when it is
 * queued, started and finished, so the history survives a restart. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"
#include "util/encoding.h"
#include "util/log.h"

#define JOB_OUT_CAP (4u << 20) /* the child's --json document (warnings included) */
#define JOB_ERR_TAIL 8192

const char *serve_job_state_name(enum job_state st) {
  static const char *const names[] = {"queued",  "running", "succeeded",
                                      "partial", "failed",  "cancelled"};
  return names[st];
}

const char *serve_job_kind_name(enum job_kind k) {
  static const char *const names[] = {"run", "check", "forget", "restore"};
  return names[k];
}

static int parse_state(const char *s, enum job_state *out) {
  for (int i = JOB_QUEUED; i <= JOB_CANCELLED; i++)
    if (s && strcmp(s, serve_job_state_name((enum job_state)i)) == 0) {
      *out = (enum job_state)i;
      return 0;
    }
  return -1;
}

static int parse_kind(const char *s, enum job_kind *out) {
  for (int i = JOB_RUN; i <= JOB_RESTORE; i++)
    if (s && strcmp(s, serve_job_kind_name((enum job_kind)i)) == 0) {
      *out = (enum job_kind)i;
      return 0;
    }
  return -1;
}

struct serve_job *serve_active_job(const struct serve *s, const char *pipeline) {
  for (struct serve_job *j = s->jobs; j; j = j->next)
    if ((j->state == JOB_QUEUED || j->state == JOB_RUNNING) && strcmp(j->pipeline, pipeline) == 0)
      return j;
  return NULL;
}

struct serve_job *serve_last_job(const struct serve *s, const char *pipeline, int kind) {
  for (struct serve_job *j = s->jobs_tail; j; j = j->prev)
    if (strcmp(j->pipeline, pipeline) == 0 && (kind < 0 || (int)j->kind == kind))
      return j;
  return NULL;
}

struct serve_job *serve_find_job(const struct serve *s, int64_t id) {
  for (struct serve_job *j = s->jobs; j; j = j->next)
    if (j->id == id)
      return j;
  return NULL;
}

void serve_job_free(struct serve_job *j) {
  free(j->pipeline);
  free(j->path);
  free(j->trigger);
  json_decref(j->request);
  serve_free_argv(j->args);
  json_decref(j->summary);
  free(j->stderr_tail);
  free(j->error);
  free(j->progress);
  free(j);
}

static void job_unlink(struct serve *s, struct serve_job *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    s->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    s->jobs_tail = j->prev;
  s->n_jobs--;
}

void serve_jobs_free(struct serve *s) {
  while (s->jobs) {
    struct serve_job *j = s->jobs;
    job_unlink(s, j);
    serve_job_free(j);
  }
}

/* Forget the oldest finished jobs beyond SERVE_KEEP_JOBS. */
static void evict_jobs(struct serve *s) {
  struct serve_job *j = s->jobs;
  while (s->n_jobs > SERVE_KEEP_JOBS && j) {
    struct serve_job *next = j->next;
    if (j->state != JOB_QUEUED && j->state != JOB_RUNNING) {
      job_unlink(s, j);
      serve_job_free(j);
    }
    j = next;
  }
}

/* In id order (the history is read back unordered). */
static void insert_sorted(struct serve *s, struct serve_job *j) {
  struct serve_job *after = s->jobs_tail;
  while (after && after->id > j->id)
    after = after->prev;
  j->prev = after;
  j->next = after ? after->next : s->jobs;
  if (j->next)
    j->next->prev = j;
  else
    s->jobs_tail = j;
  if (after)
    after->next = j;
  else
    s->jobs = j;
  s->n_jobs++;
}

/* The job's file in the history (docs/SERVE.md, "State"). */
static void persist(struct serve *s, const struct serve_job *j) {
  json_t *o = serve_job_json(j, 1);
  serve_state_write_job(s, j->pipeline, serve_job_kind_name(j->kind), j->id, o,
                        j->state != JOB_QUEUED && j->state != JOB_RUNNING);
  json_decref(o);
}

/* A job read from the history of an earlier server. */
static void adopt(struct serve *s, struct serve_job *j) {
  j->srv = s;
  j->from_disk = 1;
  if (j->state == JOB_QUEUED || j->state == JOB_RUNNING) {
    /* it was queued or running when the previous server went away */
    char *why = xasprintf("%s when the server that ran it stopped (pid %d); its outcome is "
                          "unknown: see the pipeline's status",
                          j->state == JOB_QUEUED ? "not started" : "still running", j->pid);
    free(j->error);
    j->error = why;
    j->state = JOB_FAILED;
    if (j->finished_at <= 0)
      j->finished_at = serve_now();
    persist(s, j);
  }
  if (j->id >= s->next_job_id)
    s->next_job_id = j->id;
  insert_sorted(s, j);
  evict_jobs(s);
}

/* ---- JSON ------------------------------------------------------------------------- */

/* The last progress line a child drew on stderr ("\r\033[K..."), and the
 * tail without progress lines. */
static void split_progress(const char *tail, char **progress, char **rest) {
  size_t n = strlen(tail);
  char *out = xmalloc(n + 1);
  size_t k = 0;
  const char *last = NULL;
  size_t last_len = 0;
  for (size_t i = 0; i < n;) {
    if (tail[i] == '\r') {
      size_t e = i + 1;
      if (e + 2 < n + 1 && strncmp(tail + e, "\033[K", 3) == 0)
        e += 3;
      size_t end = e;
      while (end < n && tail[end] != '\r' && tail[end] != '\n')
        end++;
      if (end > e) {
        last = tail + e;
        last_len = end - e;
      }
      i = end;
      continue;
    }
    out[k++] = tail[i++];
  }
  out[k] = '\0';
  *rest = out;
  *progress = last ? xasprintf("%.*s", (int)last_len, last) : NULL;
}

static json_t *args_json(char **args) {
  json_t *a = json_array();
  for (size_t i = 0; args && args[i]; i++)
    json_array_append_new(a, serve_jstr(args[i]));
  return a;
}

json_t *serve_job_json(const struct serve_job *j, int with_tail) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_integer(j->id));
  json_object_set_new(o, "kind", json_string(serve_job_kind_name(j->kind)));
  json_object_set_new(o, "pipeline", serve_jstr(j->pipeline));
  json_object_set_new(o, "path", serve_jstr(j->path));
  json_object_set_new(o, "trigger", serve_jstr(j->trigger));
  json_object_set_new(o, "request", j->request ? json_incref(j->request) : json_object());
  json_object_set_new(o, "args", args_json(j->args));
  json_object_set_new(o, "state", json_string(serve_job_state_name(j->state)));
  json_object_set_new(o, "queued_at", serve_iso_or_null(j->queued_at));
  json_object_set_new(o, "started_at", serve_iso_or_null(j->started_at));
  json_object_set_new(o, "finished_at", serve_iso_or_null(j->finished_at));
  json_object_set_new(o, "duration_seconds",
                      j->finished_at > 0 && j->started_at > 0 ? json_real(j->duration)
                      : j->state == JOB_RUNNING
                          ? json_real((double)(uv_hrtime() - j->started_ns) / 1e9)
                          : json_null());
  json_object_set_new(o, "pid", j->state == JOB_RUNNING ? json_integer(j->pid) : json_null());
  json_object_set_new(o, "exit_code", j->exit_code >= 0 ? json_integer(j->exit_code) : json_null());
  json_object_set_new(o, "signal", j->term_signal ? json_integer(j->term_signal) : json_null());
  json_object_set_new(o, "timed_out", json_boolean(j->timed_out));
  json_object_set_new(o, "timeout_seconds",
                      j->timeout_ms > 0 ? json_real((double)j->timeout_ms / 1000.0) : json_null());
  json_object_set_new(o, "summary", j->summary ? json_incref(j->summary) : json_null());
  char *live = NULL;
  if (j->state == JOB_RUNNING && j->proc) {
    /* what the child draws now */
    size_t n;
    const char *tail = proc_stderr(j->proc, &n);
    char *clean = serve_utf8_clean(tail, n), *rest = NULL;
    split_progress(clean, &live, &rest);
    free(clean);
    free(rest);
  }
  json_object_set_new(o, "progress", serve_jstr(live ? live : j->progress));
  free(live);
  json_object_set_new(o, "error", serve_jstr(j->error));
  if (with_tail)
    json_object_set_new(o, "stderr_tail", serve_jstr(j->stderr_tail));
  return o;
}

static double time_of(json_t *o, const char *key) {
  int64_t t = 0;
  const char *v = json_string_value(json_object_get(o, key));
  return v && parse_iso_time(v, &t) == 0 ? (double)t : 0;
}

/* o[key] (o itself when key is NULL) as a copy, or NULL */
static char *str_or_null(json_t *o, const char *key) {
  const char *v = json_string_value(key ? json_object_get(o, key) : o);
  return v ? xstrdup(v) : NULL;
}

static struct serve_job *job_from_json(json_t *o) {
  json_t *id = json_object_get(o, "id");
  const char *pipeline = json_string_value(json_object_get(o, "pipeline"));
  struct serve_job *j = xcalloc(1, sizeof(*j));
  if (!json_is_integer(id) || json_integer_value(id) <= 0 || !pipeline ||
      parse_kind(json_string_value(json_object_get(o, "kind")), &j->kind) != 0 ||
      parse_state(json_string_value(json_object_get(o, "state")), &j->state) != 0) {
    free(j);
    return NULL;
  }
  j->id = json_integer_value(id);
  j->pipeline = xstrdup(pipeline);
  j->path = str_or_null(o, "path");
  j->trigger = str_or_null(o, "trigger");
  json_t *req = json_object_get(o, "request");
  j->request = json_is_object(req) ? json_incref(req) : json_object();
  json_t *args = json_object_get(o, "args");
  size_t n = json_array_size(args);
  j->args = xcalloc(n + 1, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    j->args[i] = str_or_null(json_array_get(args, i), NULL);
  j->queued_at = time_of(o, "queued_at");
  j->started_at = time_of(o, "started_at");
  j->finished_at = time_of(o, "finished_at");
  j->duration = json_number_value(json_object_get(o, "duration_seconds"));
  j->pid = (int)json_integer_value(json_object_get(o, "pid"));
  json_t *ec = json_object_get(o, "exit_code");
  j->exit_code = json_is_integer(ec) ? (int)json_integer_value(ec) : -1;
  j->term_signal = (int)json_integer_value(json_object_get(o, "signal"));
  j->timed_out = json_is_true(json_object_get(o, "timed_out"));
  j->timeout_ms = (int64_t)(json_number_value(json_object_get(o, "timeout_seconds")) * 1000.0);
  json_t *sum = json_object_get(o, "summary");
  j->summary = json_is_null(sum) || !sum ? NULL : json_incref(sum);
  j->progress = str_or_null(o, "progress");
  j->error = str_or_null(o, "error");
  j->stderr_tail = str_or_null(o, "stderr_tail");
  if (!j->path)
    j->path = xstrdup("");
  if (!j->trigger)
    j->trigger = xstrdup("api");
  return j;
}

void serve_jobs_load(struct serve *s) {
  json_t *docs = serve_state_read_jobs(s, NULL, NULL);
  size_t i, count = 0;
  json_t *o;
  json_array_foreach(docs, i, o) {
    struct serve_job *j = job_from_json(o);
    if (!j) {
      log_warn("serve: job %lld of the history is not a job record; ignored",
               (long long)json_integer_value(json_object_get(o, "id")));
      continue;
    }
    adopt(s, j);
    count++;
  }
  json_decref(docs);
  if (count)
    serve_say("%zu job(s) read from the history in %s/jobs; new jobs start at id %lld", count,
              s->state_dir, (long long)s->next_job_id + 1);
}

json_t *serve_job_history(struct serve *s, const char *pipeline, enum job_kind kind) {
  json_t *docs = serve_state_read_jobs(s, pipeline, serve_job_kind_name(kind));
  json_t *out = json_array();
  size_t i;
  json_t *o;
  json_array_foreach(docs, i, o) {
    /* the job in memory is newer than its file while it runs */
    struct serve_job *mem = serve_find_job(s, json_integer_value(json_object_get(o, "id")));
    if (mem) {
      json_array_append_new(out, serve_job_json(mem, 0));
      continue;
    }
    struct serve_job *j = job_from_json(o);
    if (j) {
      json_array_append_new(out, serve_job_json(j, 0));
      serve_job_free(j);
    }
  }
  json_decref(docs);
  return out;
}

/* ---- running ---------------------------------------------------------------------- */

static void pump_queue(struct serve *s);

/* The child's --json document (its report, or its JSON error object). */
static void parse_summary(struct serve_job *j, const struct proc_result *r) {
  if (r->out_truncated) {
    if (!j->error)
      j->error = xasprintf("the output was longer than %u bytes and is not shown", JOB_OUT_CAP);
  } else if (r->out_len) {
    json_error_t je;
    json_t *sum = json_loadb(r->out, r->out_len, 0, &je);
    if (json_is_object(sum))
      j->summary = sum;
    else {
      json_decref(sum);
      if (!j->error)
        j->error = xasprintf("unable to parse the output of engine %s: %s",
                             serve_job_kind_name(j->kind), je.text);
    }
  }
}

static void on_job_done(void *ud, const struct proc_result *r) {
  struct serve_job *j = ud;
  struct serve *s = j->srv;
  j->proc = NULL;
  j->finished_at = serve_now();
  j->duration = (double)(uv_hrtime() - j->started_ns) / 1e9;
  char *clean = serve_utf8_clean(r->err, r->err_len), *progress = NULL;
  split_progress(clean, &progress, &j->stderr_tail);
  free(clean);
  if (progress) {
    free(j->progress);
    j->progress = progress;
  }
  parse_summary(j, r);
  if (r->term_signal) {
    j->term_signal = r->term_signal;
    j->state = JOB_FAILED;
    if (!j->error)
      j->error = xasprintf("killed by signal %d (%s)", r->term_signal, strsignal(r->term_signal));
  } else {
    j->exit_code = (int)r->exit_status;
    j->state = j->exit_code == 0 ? JOB_SUCCEEDED : j->exit_code == 3 ? JOB_PARTIAL : JOB_FAILED;
    if (j->state == JOB_FAILED && !j->error) {
      /* the JSON error object a --json command prints when it fails */
      const char *msg =
          json_string_value(json_object_get(json_object_get(j->summary, "error"), "message"));
      j->error = msg ? xasprintf("engine %s exited with status %d: %s",
                                 serve_job_kind_name(j->kind), j->exit_code, msg)
                     : xasprintf("engine %s exited with status %d%s", serve_job_kind_name(j->kind),
                                 j->exit_code,
                                 j->exit_code == 130 ? " (interrupted)" : "; see stderr_tail");
    }
  }
  /* a job that ended on its own as it was being stopped keeps its result */
  if (j->state != JOB_FAILED)
    j->timed_out = 0;
  if (j->timed_out) {
    char *e =
        xasprintf("timed out after %.0f s (limits.timeout) and was stopped%s%s",
                  (double)j->timeout_ms / 1000.0, j->error ? ": " : "", j->error ? j->error : "");
    free(j->error);
    j->error = e;
    j->state = JOB_FAILED;
  } else if (j->cancel_requested && j->state == JOB_FAILED) {
    char *e = xasprintf("cancelled%s%s", j->error ? ": " : "", j->error ? j->error : "");
    free(j->error);
    j->error = e;
    j->state = JOB_CANCELLED;
  }
  struct serve_stats *st = serve_stats_get(s, j->pipeline);
  if (j->timed_out)
    st->timed_out++;
  if (j->state == JOB_CANCELLED)
    st->cancelled++;
  if (j->kind == JOB_RUN) {
    if (j->state == JOB_SUCCEEDED)
      st->succeeded++;
    else if (j->state == JOB_PARTIAL)
      st->partial++;
    else
      st->failed++;
    double wait = json_number_value(json_object_get(j->summary, "lock_wait_seconds"));
    if (wait >= 1.0)
      st->waited++;
    st->has_last = 1;
    st->last_finished = j->finished_at;
    st->last_duration = j->duration;
    st->last_exit_code = j->term_signal ? -1 : j->exit_code;
    st->last_bytes_read = (uint64_t)json_integer_value(json_object_get(j->summary, "bytes_read"));
    st->last_stored_bytes =
        (uint64_t)json_integer_value(json_object_get(j->summary, "stored_bytes"));
    st->last_lock_wait = wait;
  }
  s->running--;
  serve_say("job %lld (%s of pipeline %s) %s after %.1f s%s%s", (long long)j->id,
            serve_job_kind_name(j->kind), j->pipeline, serve_job_state_name(j->state), j->duration,
            j->error ? ": " : "", j->error ? j->error : "");
  persist(s, j);
  serve_status_refresh(s, j->pipeline);
  pump_queue(s);
  serve_maybe_stopped(s);
}

/* The child's arguments: a run's with -v, so its hooks' output and info
 * lines (notifications sent, lock waits) are in its stderr_tail. */
static char **job_argv(struct serve *s, const struct serve_job *j) {
  if (j->kind != JOB_RUN)
    return serve_child_argv(s, (const char *const *)j->args);
  size_t n = 0;
  while (j->args[n])
    n++;
  const char **args = xcalloc(n + 2, sizeof(char *));
  args[0] = "-v";
  for (size_t i = 0; i < n; i++)
    args[i + 1] = j->args[i];
  char **argv = serve_child_argv(s, args);
  free(args);
  return argv;
}

static void start_job_process(struct serve *s, struct serve_job *j) {
  char **argv = job_argv(s, j);
  char *err = NULL;
  j->state = JOB_RUNNING;
  j->started_at = serve_now();
  j->started_ns = uv_hrtime();
  s->queued--;
  s->running++;
  /* /proc/self/exe: the very binary serving, even if it was replaced on disk */
  int rc = proc_spawn(&s->loop, "/proc/self/exe", argv, JOB_OUT_CAP, JOB_ERR_TAIL, on_job_done, j,
                      &j->proc, &j->pid, &err);
  serve_free_argv(argv);
  if (rc != 0) {
    struct proc_result r = {1, 0, "", 0, 0, "", 0};
    j->error = err;
    on_job_done(j, &r);
    return;
  }
  serve_say("job %lld (%s of pipeline %s, %s) started, pid %d", (long long)j->id,
            serve_job_kind_name(j->kind), j->pipeline, j->trigger, j->pid);
  persist(s, j);
}

static void pump_queue(struct serve *s) {
  for (struct serve_job *j = s->jobs; j && !s->stopping; j = j->next)
    if (j->state == JOB_QUEUED && s->running < SERVE_MAX_RUNNING)
      start_job_process(s, j);
}

static char **copy_args(const char *const *args) {
  size_t n = 0;
  while (args[n])
    n++;
  char **v = xcalloc(n + 1, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    v[i] = xstrdup(args[i]);
  return v;
}

int serve_start_job(struct serve *s, const struct serve_pipeline *p, enum job_kind kind,
                    const char *trigger, const char *const *args, json_t *request,
                    struct serve_job **out, int *busy, char **err) {
  *busy = 0;
  if (!p->valid) {
    *err = xasprintf("pipeline '%s' is invalid: %s", p->name, p->error);
    json_decref(request);
    return -1;
  }
  if (s->stopping) {
    *err = xstrdup("the server is stopping");
    json_decref(request);
    return -1;
  }
  struct serve_job *a = serve_active_job(s, p->name);
  if (a) {
    *busy = 1;
    *err = xasprintf("pipeline '%s' already has job %lld (%s, %s)", p->name, (long long)a->id,
                     serve_job_kind_name(a->kind), serve_job_state_name(a->state));
    json_decref(request);
    return -1;
  }
  struct serve_job *j = xcalloc(1, sizeof(*j));
  j->id = ++s->next_job_id;
  j->kind = kind;
  j->pipeline = xstrdup(p->name);
  j->path = xstrdup(p->path);
  j->trigger = xstrdup(trigger);
  j->request = request ? request : json_object();
  j->args = copy_args(args);
  j->state = JOB_QUEUED;
  j->queued_at = serve_now();
  j->exit_code = -1;
  j->timeout_ms = p->timeout_ms;
  j->srv = s;
  j->prev = s->jobs_tail;
  if (s->jobs_tail)
    s->jobs_tail->next = j;
  else
    s->jobs = j;
  s->jobs_tail = j;
  s->n_jobs++;
  s->queued++;
  evict_jobs(s);
  if (s->running >= SERVE_MAX_RUNNING) {
    serve_say("job %lld (%s of pipeline %s, %s) queued: %d job(s) are running", (long long)j->id,
              serve_job_kind_name(kind), j->pipeline, trigger, s->running);
    persist(s, j);
  }
  pump_queue(s);
  *out = j;
  return 0;
}

/* SIGCONT (a stopped child could not act on the rest) and sig to the job's
 * process group: its session, which holds what it started (hooks). */
static void signal_job(struct serve_job *j, int sig) {
  if (!j->proc || j->pid <= 0)
    return;
  if (kill(-j->pid, SIGCONT) != 0 && errno == ESRCH)
    return;
  if (kill(-j->pid, sig) != 0 && errno != ESRCH) {
    int rc = proc_kill(j->proc, sig);
    if (rc < 0)
      log_warn("serve: unable to signal job %lld (pid %d): %s", (long long)j->id, j->pid,
               uv_strerror(rc));
  }
}

static void stop_job(struct serve_job *j) {
  signal_job(j, SIGTERM);
  j->term_sent_ns = uv_hrtime();
}

int serve_cancel_job(struct serve *s, struct serve_job *j, char **err) {
  if (j->state == JOB_QUEUED) {
    j->state = JOB_CANCELLED;
    j->cancel_requested = 1;
    j->finished_at = serve_now();
    j->error = xstrdup("cancelled before it started");
    s->queued--;
    serve_say("job %lld (%s of pipeline %s) cancelled before it started", (long long)j->id,
              serve_job_kind_name(j->kind), j->pipeline);
    persist(s, j);
    return 0;
  }
  if (j->state != JOB_RUNNING) {
    *err = xasprintf("job %lld has already finished (%s)", (long long)j->id,
                     serve_job_state_name(j->state));
    return -1;
  }
  if (!j->cancel_requested) {
    j->cancel_requested = 1;
    serve_say("job %lld (%s of pipeline %s): cancelling (SIGTERM, SIGKILL after %d s)",
              (long long)j->id, serve_job_kind_name(j->kind), j->pipeline, SERVE_KILL_GRACE_S);
    stop_job(j);
  }
  return 0;
}

void serve_jobs_watchdog(struct serve *s) {
  uint64_t now = uv_hrtime();
  for (struct serve_job *j = s->jobs; j; j = j->next) {
    if (j->state != JOB_RUNNING || !j->proc)
      continue;
    if (j->term_sent_ns && now - j->term_sent_ns >= (uint64_t)SERVE_KILL_GRACE_S * 1000000000u) {
      log_warn("serve: job %lld (pipeline %s, pid %d) did not stop within %d s of SIGTERM: "
               "sending SIGKILL",
               (long long)j->id, j->pipeline, j->pid, SERVE_KILL_GRACE_S);
      signal_job(j, SIGKILL);
      j->term_sent_ns = 0;
      continue;
    }
    if (j->timeout_ms > 0 && !j->timed_out &&
        now - j->started_ns >= (uint64_t)j->timeout_ms * 1000000u) {
      j->timed_out = 1;
      log_warn("serve: job %lld (%s of pipeline %s) has run longer than its limits.timeout of "
               "%.0f s: stopping it",
               (long long)j->id, serve_job_kind_name(j->kind), j->pipeline,
               (double)j->timeout_ms / 1000.0);
      stop_job(j);
    }
  }
}

void serve_jobs_fail_queued(struct serve *s, const char *why) {
  for (struct serve_job *j = s->jobs; j; j = j->next)
    if (j->state == JOB_QUEUED) {
      j->state = JOB_FAILED;
      j->finished_at = serve_now();
      j->error = xstrdup(why);
      s->queued--;
      persist(s, j);
    }
}

void serve_jobs_kill(struct serve *s, int sig) {
  for (struct serve_job *j = s->jobs; j; j = j->next)
    if (j->state == JOB_RUNNING && j->proc)
      signal_job(j, sig);
}
