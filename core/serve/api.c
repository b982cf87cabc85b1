/* engine serve: the HTTP endpoints (docs/SERVE.md) — authentication,
 * routing, the JSON documents, Prometheus metrics, and snapshot listings run
 * as `engine snapshots PATH --json` children. */
#include <ctype.h>
#include <http_parser.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/encoding.h"
#include "serve/serve_int.h"
#include "util/log.h"

#define LISTING_OUT_CAP (32u << 20)
#define LISTING_ERR_TAIL 4096
#define LISTING_TIMEOUT_MS 120000

struct serve_listing {
  struct serve *srv;
  struct httpd_req *req;
  struct proc *proc;
  uv_timer_t timer;
  int timed_out, cancelled;
  char *pipeline;
  struct serve_listing *prev, *next;
};

char *serve_iso(double t) {
  return iso_time((int64_t)t);
}

/* A JSON string of text from outside (file names, child output), or null. */
static json_t *jstr(const char *t) {
  if (!t)
    return json_null();
  json_t *j = json_string(t);
  if (!j) {
    char *c = serve_utf8_clean(t, strlen(t));
    j = json_string(c);
    free(c);
  }
  return j ? j : json_null();
}

static json_t *iso_or_null(double t) {
  if (t <= 0)
    return json_null();
  char *s = serve_iso(t);
  json_t *j = json_string(s);
  free(s);
  return j;
}

static void respond_json(struct httpd_req *req, int status, json_t *j, const char *extra) {
  char *body = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
  json_decref(j);
  if (!body) {
    static const char oops[] = "{\"error\": \"unable to encode the response\"}\n";
    httpd_respond(req, 500, "application/json", NULL, oops, sizeof(oops) - 1);
    return;
  }
  size_t len = strlen(body);
  body = xrealloc(body, len + 2);
  body[len++] = '\n';
  body[len] = '\0';
  httpd_respond(req, status, "application/json", extra, body, len);
  free(body);
}

static void respond_error(struct httpd_req *req, int status, const char *extra, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
static void respond_error(struct httpd_req *req, int status, const char *extra, const char *fmt,
                          ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  json_t *j = json_object();
  json_object_set_new(j, "error", msg ? jstr(msg) : json_string("request failed"));
  free(msg);
  respond_json(req, status, j, extra);
}

/* ---- authentication --------------------------------------------------------- */

static int authorized(const struct serve *s, const char *header) {
  if (!header || strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
    return 0;
  const char *tok = header + 6;
  while (*tok == ' ' || *tok == '\t')
    tok++;
  size_t len = strlen(tok);
  while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
    len--;
  /* comparing digests keeps the time independent of where the tokens
   * differ and of the token's length */
  unsigned char h[32];
  unsigned int hl = 0;
  if (EVP_Digest(tok, len, h, &hl, EVP_sha256(), NULL) != 1 || hl != sizeof(h))
    return 0;
  int ok = CRYPTO_memcmp(h, s->token_hash, sizeof(h)) == 0;
  OPENSSL_cleanse(h, sizeof(h));
  return ok;
}

/* ---- requests from web pages ------------------------------------------------- */

/* v without surrounding spaces and tabs, as [*start, *start + *len). */
static void trim(const char *v, const char **start, size_t *len) {
  size_t n = strlen(v);
  while (n && (*v == ' ' || *v == '\t')) {
    v++;
    n--;
  }
  while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  *start = v;
  *len = n;
}

static int names_server(const struct serve *s, const char *v, size_t len) {
  for (size_t i = 0; i < s->n_hosts; i++)
    if (strlen(s->hosts[i]) == len && strncasecmp(s->hosts[i], v, len) == 0)
      return 1;
  return 0;
}

/* "P127.0.0.1:5036, Plocalhost:5036, ..." for the error messages. */
static char *host_list(const struct serve *s, const char *prefix) {
  char *out = xstrdup("");
  for (size_t i = 0; i < s->n_hosts; i++) {
    char *n = xasprintf("%s%s%s%s", out, i ? ", " : "", prefix, s->hosts[i]);
    free(out);
    out = n;
  }
  return out;
}

/* Without a token any local program may use the API, but a web page the
 * operator visits must not: a page on another site can send requests to
 * 127.0.0.1 (cross-site request forgery: the browser adds its Origin), or
 * make its own host name resolve to 127.0.0.1 and read the answers (DNS
 * rebinding: the browser sends that name as Host). So Host must name this
 * server and Origin, if sent, must be this server. Returns 0, or answers 403
 * and returns -1. */
static int check_site(struct serve *s, struct httpd_req *req) {
  const char *v;
  size_t len;
  if (!req->host) {
    char *list = host_list(s, "");
    respond_error(req, 403, NULL,
                  "the request has no Host header: without --token-file every request must "
                  "name this server (%s)",
                  list);
    free(list);
    return -1;
  }
  trim(req->host, &v, &len);
  if (!names_server(s, v, len)) {
    char *list = host_list(s, "");
    respond_error(req, 403, NULL,
                  "Host '%.*s' does not name this server (%s): without --token-file requests for "
                  "other host names are refused (a web page could make its own name resolve to "
                  "this address: DNS rebinding)",
                  (int)len, v, list);
    free(list);
    return -1;
  }
  if (!req->origin)
    return 0;
  trim(req->origin, &v, &len);
  if (len < 7 || strncasecmp(v, "http://", 7) != 0 || !names_server(s, v + 7, len - 7)) {
    char *list = host_list(s, "http://");
    respond_error(req, 403, NULL,
                  "Origin '%.*s' is not this server (%s): without --token-file requests from web "
                  "pages of other origins are refused (cross-site request forgery)",
                  (int)len, v, list);
    free(list);
    return -1;
  }
  return 0;
}

/* The media type of a Content-Type value is application/json (parameters
 * such as charset may follow). */
static int is_json(const char *content_type) {
  if (!content_type)
    return 0;
  const char *v;
  size_t len;
  trim(content_type, &v, &len);
  const char *semi = memchr(v, ';', len);
  if (semi)
    len = (size_t)(semi - v);
  while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
    len--;
  return len == 16 && strncasecmp(v, "application/json", 16) == 0;
}

/* ---- JSON documents ------------------------------------------------------------ */

static json_t *job_json(const struct serve_job *j, int with_tail) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_integer(j->id));
  json_object_set_new(o, "pipeline", jstr(j->pipeline));
  json_object_set_new(o, "path", jstr(j->path));
  json_object_set_new(o, "trigger", json_string(j->trigger));
  json_object_set_new(o, "state", json_string(serve_job_state_name(j->state)));
  json_object_set_new(o, "queued_at", iso_or_null(j->queued_at));
  json_object_set_new(o, "started_at", iso_or_null(j->started_at));
  json_object_set_new(o, "finished_at", iso_or_null(j->finished_at));
  json_object_set_new(o, "duration_seconds",
                      j->finished_at > 0 && j->started_at > 0 ? json_real(j->duration)
                      : j->state == JOB_RUNNING
                          ? json_real((double)(uv_hrtime() - j->started_ns) / 1e9)
                          : json_null());
  json_object_set_new(o, "pid", j->state == JOB_RUNNING ? json_integer(j->pid) : json_null());
  json_object_set_new(o, "exit_code", j->exit_code >= 0 ? json_integer(j->exit_code) : json_null());
  json_object_set_new(o, "signal", j->term_signal ? json_integer(j->term_signal) : json_null());
  json_object_set_new(o, "summary", j->summary ? json_incref(j->summary) : json_null());
  json_object_set_new(o, "error", jstr(j->error));
  if (with_tail)
    json_object_set_new(o, "stderr_tail", jstr(j->stderr_tail));
  return o;
}

static json_t *job_brief(const struct serve_job *j) {
  if (!j)
    return json_null();
  json_t *snap = json_object_get(j->summary, "snapshot");
  return json_pack("{s:I, s:s, s:s, s:o, s:o, s:o, s:O}", "id", (json_int_t)j->id, "state",
                   serve_job_state_name(j->state), "trigger", j->trigger, "started_at",
                   iso_or_null(j->started_at), "finished_at", iso_or_null(j->finished_at),
                   "exit_code", j->exit_code >= 0 ? json_integer(j->exit_code) : json_null(),
                   "snapshot", snap ? snap : json_null());
}

static json_t *pipeline_json(const struct serve *s, const struct serve_pipeline *p) {
  json_t *o = json_object();
  json_object_set_new(o, "name", jstr(p->name));
  json_object_set_new(o, "path", jstr(p->path));
  json_object_set_new(o, "valid", json_boolean(p->valid));
  json_object_set_new(o, "error", jstr(p->error));
  json_object_set_new(o, "schedule", jstr(p->schedule));
  time_t next = 0;
  if (p->valid && p->schedule && cron_next(&p->cron, time(NULL), &next) == 0)
    json_object_set_new(o, "next_run", iso_or_null((double)next));
  else
    json_object_set_new(o, "next_run", json_null());
  struct serve_job *active = p->valid ? serve_active_job(s, p->name) : NULL;
  json_object_set_new(o, "active_job", active ? json_integer(active->id) : json_null());
  json_object_set_new(o, "last_job", job_brief(p->valid ? serve_last_job(s, p->name) : NULL));
  return o;
}

static json_t *status_json(const struct serve *s) {
  size_t invalid = 0;
  for (size_t i = 0; i < s->n_pipelines; i++)
    invalid += !s->pipelines[i].valid;
  return json_pack("{s:s, s:o, s:I, s:s, s:o, s:b, s:I, s:I, s:I, s:I, s:I}", "version",
                   ENGINE_VERSION, "started_at", iso_or_null(s->started_at), "uptime_seconds",
                   (json_int_t)((uv_hrtime() - s->started_ns) / 1000000000u), "listen", s->address,
                   "config_dir", jstr(s->config_dir), "auth", s->have_token, "pipelines",
                   (json_int_t)(s->n_pipelines - invalid), "pipelines_invalid", (json_int_t)invalid,
                   "jobs_running", (json_int_t)s->running, "jobs_queued", (json_int_t)s->queued,
                   "max_running_jobs", (json_int_t)SERVE_MAX_RUNNING);
}

/* ---- metrics ------------------------------------------------------------------- */

static void label(FILE *f, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"')
      fprintf(f, "\\%c", *v);
    else if (*v == '\n')
      fputs("\\n", f);
    else
      fputc(*v, f);
  }
}

static void family(FILE *f, const char *name, const char *type, const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics(struct serve *s, struct httpd_req *req) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) {
    respond_error(req, 500, NULL, "unable to build the metrics");
    return;
  }
  size_t invalid = 0;
  for (size_t i = 0; i < s->n_pipelines; i++)
    invalid += !s->pipelines[i].valid;
  family(f, "engine_up", "gauge", "1 while engine serve is running.");
  fputs("engine_up 1\n", f);
  family(f, "engine_build_info", "gauge", "The engine version.");
  fprintf(f, "engine_build_info{version=\"%s\"} 1\n", ENGINE_VERSION);
  family(f, "engine_start_time_seconds", "gauge", "When the server started (unix time).");
  fprintf(f, "engine_start_time_seconds %.3f\n", s->started_at);
  family(f, "engine_pipelines", "gauge", "Pipelines in the config directory, by validity.");
  fprintf(f, "engine_pipelines{valid=\"true\"} %zu\nengine_pipelines{valid=\"false\"} %zu\n",
          s->n_pipelines - invalid, invalid);
  family(f, "engine_jobs_running", "gauge", "Backup jobs running now.");
  fprintf(f, "engine_jobs_running %d\n", s->running);
  family(f, "engine_jobs_queued", "gauge", "Backup jobs waiting for a free slot.");
  fprintf(f, "engine_jobs_queued %d\n", s->queued);

  family(f, "engine_runs_total", "counter", "Finished backup runs, by pipeline and result.");
  for (const struct serve_stats *st = s->stats; st; st = st->next) {
    static const char *const results[] = {"succeeded", "partial", "failed"};
    const uint64_t counts[] = {st->succeeded, st->partial, st->failed};
    for (int i = 0; i < 3; i++) {
      fputs("engine_runs_total{pipeline=\"", f);
      label(f, st->name);
      fprintf(f, "\",result=\"%s\"} %llu\n", results[i], (unsigned long long)counts[i]);
    }
  }
  family(f, "engine_scheduled_runs_skipped_total", "counter",
         "Scheduled runs skipped because the pipeline's previous job was still running.");
  for (const struct serve_stats *st = s->stats; st; st = st->next) {
    fputs("engine_scheduled_runs_skipped_total{pipeline=\"", f);
    label(f, st->name);
    fprintf(f, "\"} %llu\n", (unsigned long long)st->skipped);
  }
  static const char *const last[][3] = {
      {"engine_last_run_timestamp_seconds", "gauge", "When the last run finished (unix time)."},
      {"engine_last_run_duration_seconds", "gauge", "How long the last run took."},
      {"engine_last_run_exit_code", "gauge",
       "Exit status of the last run (0 complete, 3 partial, 1 error, -1 killed by a signal)."},
      {"engine_last_run_bytes_read", "gauge", "Bytes the last run read from its sources."},
      {"engine_last_run_stored_bytes", "gauge", "Bytes the last run wrote to the repository."}};
  for (int m = 0; m < 5; m++) {
    family(f, last[m][0], last[m][1], last[m][2]);
    for (const struct serve_stats *st = s->stats; st; st = st->next) {
      if (!st->has_last)
        continue;
      fprintf(f, "%s{pipeline=\"", last[m][0]);
      label(f, st->name);
      fputs("\"} ", f);
      switch (m) {
      case 0:
        fprintf(f, "%.3f\n", st->last_finished);
        break;
      case 1:
        fprintf(f, "%.3f\n", st->last_duration);
        break;
      case 2:
        fprintf(f, "%d\n", st->last_exit_code);
        break;
      case 3:
        fprintf(f, "%llu\n", (unsigned long long)st->last_bytes_read);
        break;
      default:
        fprintf(f, "%llu\n", (unsigned long long)st->last_stored_bytes);
      }
    }
  }
  if (fclose(f) != 0 || !text) {
    free(text);
    respond_error(req, 500, NULL, "unable to build the metrics");
    return;
  }
  httpd_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
  free(text);
}

/* ---- snapshot listings ---------------------------------------------------------- */

static void on_listing_closed(uv_handle_t *h) {
  struct serve_listing *l = h->data;
  free(l->pipeline);
  free(l);
}

/* The last non-empty line of a child's stderr: its error message. */
static char *last_line(const char *err) {
  const char *end = err + strlen(err);
  while (end > err && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
    end--;
  const char *start = end;
  while (start > err && start[-1] != '\n')
    start--;
  return xasprintf("%.*s", (int)(end - start), start);
}

static void on_listing_done(void *ud, const struct proc_result *r) {
  struct serve_listing *l = ud;
  struct serve *s = l->srv;
  if (l->prev)
    l->prev->next = l->next;
  else
    s->listings = l->next;
  if (l->next)
    l->next->prev = l->prev;
  s->n_listings--;
  uv_close((uv_handle_t *)&l->timer, on_listing_closed);
  struct httpd_req *req = l->req;
  if (l->timed_out) {
    respond_error(req, 504, NULL, "engine snapshots for pipeline '%s' did not finish within %d s",
                  l->pipeline, LISTING_TIMEOUT_MS / 1000);
  } else if (l->cancelled) {
    respond_error(req, 503, NULL, "the server is stopping");
  } else if (r->term_signal) {
    respond_error(req, 502, NULL, "engine snapshots for pipeline '%s' was killed by signal %d",
                  l->pipeline, r->term_signal);
  } else if (r->exit_status != 0) {
    char *msg = last_line(r->err);
    respond_error(req, 502, NULL, "engine snapshots for pipeline '%s' failed (exit status %d): %s",
                  l->pipeline, (int)r->exit_status, msg);
    free(msg);
  } else if (r->out_truncated) {
    respond_error(req, 502, NULL, "the snapshot list of pipeline '%s' is larger than %u bytes",
                  l->pipeline, LISTING_OUT_CAP);
  } else {
    json_error_t je;
    json_t *j = json_loadb(r->out, r->out_len, 0, &je);
    if (json_is_array(j))
      respond_json(req, 200, j, NULL);
    else {
      json_decref(j);
      respond_error(req, 502, NULL,
                    "unable to parse the output of engine snapshots for pipeline '%s': %s",
                    l->pipeline, je.text);
    }
  }
  serve_maybe_stopped(s);
}

static void on_listing_timeout(uv_timer_t *t) {
  struct serve_listing *l = t->data;
  l->timed_out = 1;
  proc_kill(l->proc, SIGTERM);
}

static void list_snapshots(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p) {
  if (s->n_listings >= SERVE_MAX_LISTINGS) {
    respond_error(req, 503, "Retry-After: 5\r\n",
                  "%d snapshot listings are already running; try again shortly", s->n_listings);
    return;
  }
  const char *args[] = {"snapshots", p->path, "--json", NULL};
  char **argv = serve_child_argv(s, args);
  struct serve_listing *l = xcalloc(1, sizeof(*l));
  l->srv = s;
  l->req = req;
  l->pipeline = xstrdup(p->name);
  char *err = NULL;
  int pid;
  int rc = proc_spawn(&s->loop, "/proc/self/exe", argv, LISTING_OUT_CAP, LISTING_ERR_TAIL,
                      on_listing_done, l, &l->proc, &pid, &err);
  serve_free_argv(argv);
  if (rc != 0) {
    respond_error(req, 500, NULL, "%s", err);
    free(err);
    free(l->pipeline);
    free(l);
    return;
  }
  uv_timer_init(&s->loop, &l->timer);
  l->timer.data = l;
  uv_timer_start(&l->timer, on_listing_timeout, LISTING_TIMEOUT_MS, 0);
  l->next = s->listings;
  if (s->listings)
    s->listings->prev = l;
  s->listings = l;
  s->n_listings++;
}

void serve_cancel_listings(struct serve *s) {
  for (struct serve_listing *l = s->listings; l; l = l->next) {
    l->cancelled = 1;
    proc_kill(l->proc, SIGTERM);
  }
}

/* ---- routing ----------------------------------------------------------------------- */

enum route {
  R_NONE,
  R_STATUS,
  R_PIPELINES,
  R_PIPELINE,
  R_SNAPSHOTS,
  R_RUN,
  R_JOBS,
  R_JOB,
  R_METRICS
};

/* Split "/a/b/c" into at most 5 segments; empty segments (//, a trailing /)
 * make the path unknown. */
static int split(const char *path, char seg[][256], int max) {
  if (path[0] != '/')
    return -1;
  int n = 0;
  const char *p = path + 1;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 0 || len >= 256 || n == max)
      return -1;
    memcpy(seg[n], p, len);
    seg[n][len] = '\0';
    n++;
    if (!e)
      break;
    p = e + 1;
    if (!*p)
      return -1;
  }
  return n;
}

static enum route match(const char *path, char *name, size_t name_size) {
  char seg[5][256];
  int n = split(path, seg, 5);
  if (n == 1 && strcmp(seg[0], "metrics") == 0)
    return R_METRICS;
  if (n < 2 || strcmp(seg[0], "v1") != 0)
    return R_NONE;
  if (n == 2 && strcmp(seg[1], "status") == 0)
    return R_STATUS;
  if (n == 2 && strcmp(seg[1], "pipelines") == 0)
    return R_PIPELINES;
  if (n == 2 && strcmp(seg[1], "jobs") == 0)
    return R_JOBS;
  if (n >= 3 && n <= 4)
    snprintf(name, name_size, "%s", seg[2]);
  if (n == 3 && strcmp(seg[1], "jobs") == 0)
    return R_JOB;
  if (n == 3 && strcmp(seg[1], "pipelines") == 0)
    return R_PIPELINE;
  if (n == 4 && strcmp(seg[1], "pipelines") == 0 && strcmp(seg[3], "snapshots") == 0)
    return R_SNAPSHOTS;
  if (n == 4 && strcmp(seg[1], "pipelines") == 0 && strcmp(seg[3], "run") == 0)
    return R_RUN;
  return R_NONE;
}

static int parse_id(const char *s, int64_t *out) {
  if (!*s || strlen(s) > 18)
    return -1;
  int64_t v = 0;
  for (; *s; s++) {
    if (!isdigit((unsigned char)*s))
      return -1;
    v = v * 10 + (*s - '0');
  }
  *out = v;
  return 0;
}

void serve_handle_request(void *ud, struct httpd_req *req) {
  struct serve *s = ud;
  if (s->have_token && !authorized(s, req->authorization)) {
    respond_error(req, 401, "WWW-Authenticate: Bearer realm=\"engine\"\r\n",
                  "missing or wrong bearer token (Authorization: Bearer TOKEN)");
    return;
  }
  if (!s->have_token && check_site(s, req) != 0)
    return;
  /* the client may use the server: its connection is no longer one that
   * may be closed to make room for others */
  httpd_trust(req);
  char name[256] = "";
  enum route r = match(req->path, name, sizeof(name));
  if (r == R_NONE) {
    respond_error(req, 404, NULL, "no such endpoint: %s", req->path);
    return;
  }
  int is_get = req->method == HTTP_GET || req->method == HTTP_HEAD;
  if (r == R_RUN ? req->method != HTTP_POST : !is_get) {
    respond_error(req, 405, r == R_RUN ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n",
                  "method %s is not allowed on %s (use %s)", req->method_name, req->path,
                  r == R_RUN ? "POST" : "GET");
    return;
  }
  /* A web page can send a form (urlencoded, multipart, text/plain) or a
   * body-less request anywhere without asking; application/json needs the
   * server's consent (a CORS preflight, which this server never gives). */
  int changes = req->method == HTTP_POST || req->method == HTTP_PUT || req->method == HTTP_DELETE ||
                req->method == HTTP_PATCH;
  if (changes && !is_json(req->content_type)) {
    const char *v = "";
    size_t len = 0;
    if (req->content_type)
      trim(req->content_type, &v, &len);
    respond_error(
        req, 415, NULL,
        "%s %s needs the header 'Content-Type: application/json' (the request has %s%.*s%s)",
        req->method_name, req->path, req->content_type ? "'" : "none", (int)len, v,
        req->content_type ? "'" : "");
    return;
  }
  const struct serve_pipeline *p = NULL;
  if (r == R_PIPELINE || r == R_SNAPSHOTS || r == R_RUN) {
    p = serve_find_pipeline(s, name);
    if (!p) {
      respond_error(req, 404, NULL, "no pipeline named '%s' in %s", name, s->config_dir);
      return;
    }
    if (!p->valid && r != R_PIPELINE) {
      respond_error(req, 422, NULL, "pipeline '%s' is invalid: %s", p->name, p->error);
      return;
    }
  }
  switch (r) {
  case R_STATUS:
    respond_json(req, 200, status_json(s), NULL);
    return;
  case R_PIPELINES: {
    json_t *arr = json_array();
    for (size_t i = 0; i < s->n_pipelines; i++)
      json_array_append_new(arr, pipeline_json(s, &s->pipelines[i]));
    respond_json(req, 200, json_pack("{s:o}", "pipelines", arr), NULL);
    return;
  }
  case R_PIPELINE:
    respond_json(req, 200, pipeline_json(s, p), NULL);
    return;
  case R_SNAPSHOTS:
    list_snapshots(s, req, p);
    return;
  case R_RUN: {
    struct serve_job *j = NULL;
    int busy = 0;
    char *err = NULL;
    if (serve_start_job(s, p, "api", &j, &busy, &err) != 0) {
      respond_error(req, busy ? 409 : 503, NULL, "%s", err);
      free(err);
      return;
    }
    char *loc = xasprintf("Location: /v1/jobs/%lld\r\n", (long long)j->id);
    respond_json(req, 202,
                 json_pack("{s:I, s:s, s:o}", "job", (json_int_t)j->id, "state",
                           serve_job_state_name(j->state), "pid",
                           j->state == JOB_RUNNING ? json_integer(j->pid) : json_null()),
                 loc);
    free(loc);
    return;
  }
  case R_JOBS: {
    json_t *arr = json_array();
    for (const struct serve_job *j = s->jobs_tail; j; j = j->prev)
      json_array_append_new(arr, job_json(j, 0));
    respond_json(req, 200, json_pack("{s:o}", "jobs", arr), NULL);
    return;
  }
  case R_JOB: {
    int64_t id;
    const struct serve_job *j = parse_id(name, &id) == 0 ? serve_find_job(s, id) : NULL;
    if (!j) {
      respond_error(req, 404, NULL, "no job %s (the last %d jobs are kept)", name, SERVE_KEEP_JOBS);
      return;
    }
    respond_json(req, 200, job_json(j, 1), NULL);
    return;
  }
  case R_METRICS:
    metrics(s, req);
    return;
  case R_NONE:
    break;
  }
}
