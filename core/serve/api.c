/* engine serve: the HTTP endpoints (docs/SERVE.md) — authentication,
 * routing and the JSON documents. Endpoints answered by a child `engine`
 * are in api_children.c, /metrics in api_metrics.c. */
#include <ctype.h>
#include <http_parser.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve/serve_int.h"
#include "util/encoding.h"
#include "util/log.h"

/* ---- authentication --------------------------------------------------------- */

/* Does the Authorization header carry the token whose SHA-256 is hash? */
static int bearer_is(const char *header, const unsigned char hash[32]) {
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
  int ok = CRYPTO_memcmp(h, hash, sizeof(h)) == 0;
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
    serve_respond_error(req, 403, NULL,
                        "the request has no Host header: without --token-file every request must "
                        "name this server (%s)",
                        list);
    free(list);
    return -1;
  }
  trim(req->host, &v, &len);
  if (!names_server(s, v, len)) {
    char *list = host_list(s, "");
    serve_respond_error(
        req, 403, NULL,
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
    serve_respond_error(
        req, 403, NULL,
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

static json_t *job_brief(const struct serve_job *j) {
  if (!j)
    return json_null();
  json_t *snap = json_object_get(j->summary, "snapshot");
  return json_pack("{s:I, s:s, s:s, s:o, s:o, s:o, s:o, s:O}", "id", (json_int_t)j->id, "kind",
                   serve_job_kind_name(j->kind), "state", serve_job_state_name(j->state), "trigger",
                   serve_jstr(j->trigger), "started_at", serve_iso_or_null(j->started_at),
                   "finished_at", serve_iso_or_null(j->finished_at), "exit_code",
                   j->exit_code >= 0 ? json_integer(j->exit_code) : json_null(), "snapshot",
                   j->kind == JOB_RUN && snap ? snap : json_null());
}

static json_t *pipeline_json(struct serve *s, const struct serve_pipeline *p) {
  json_t *o = json_object();
  json_object_set_new(o, "name", serve_jstr(p->name));
  json_object_set_new(o, "path", serve_jstr(p->path));
  json_object_set_new(o, "valid", json_boolean(p->valid));
  json_object_set_new(o, "error", serve_jstr(p->error));
  json_object_set_new(o, "warnings", p->warnings ? json_incref(p->warnings) : json_array());
  json_object_set_new(o, "schedule", serve_jstr(p->schedule));
  struct serve_stats *st = p->valid ? serve_stats_get(s, p->name) : NULL;
  json_object_set_new(o, "schedule_enabled", json_boolean(p->valid && p->schedule && !st->paused));
  time_t next = 0;
  if (p->valid && p->schedule && !st->paused && cron_next(&p->cron, time(NULL), &next) == 0)
    json_object_set_new(o, "next_run", serve_iso_or_null((double)next));
  else
    json_object_set_new(o, "next_run", json_null());
  json_object_set_new(o, "timeout_seconds",
                      p->valid && p->timeout_ms > 0 ? json_real((double)p->timeout_ms / 1000.0)
                                                    : json_null());
  struct serve_job *active = p->valid ? serve_active_job(s, p->name) : NULL;
  json_object_set_new(o, "active_job", active ? json_integer(active->id) : json_null());
  json_object_set_new(o, "last_job",
                      job_brief(p->valid ? serve_last_job(s, p->name, JOB_RUN) : NULL));
  json_object_set_new(o, "status", serve_status_json(s, p));
  return o;
}

static json_t *status_json(struct serve *s) {
  size_t invalid = 0;
  json_t *pipes = json_array(), *stale = json_array();
  for (size_t i = 0; i < s->n_pipelines; i++) {
    const struct serve_pipeline *p = &s->pipelines[i];
    invalid += !p->valid;
    if (!p->valid)
      continue;
    json_array_append_new(pipes, serve_status_json(s, p));
    if (serve_stats_get(s, p->name)->stale)
      json_array_append_new(stale, serve_jstr(p->name));
  }
  json_t *o = json_pack(
      "{s:s, s:o, s:I, s:s, s:o, s:b, s:I, s:I, s:I, s:I, s:I, s:o, s:s, s:b, s:o, s:o}", "version",
      ENGINE_VERSION, "started_at", serve_iso_or_null(s->started_at), "uptime_seconds",
      (json_int_t)((uv_hrtime() - s->started_ns) / 1000000000u), "listen", s->address, "config_dir",
      serve_jstr(s->config_dir), "auth", s->have_token, "pipelines",
      (json_int_t)(s->n_pipelines - invalid), "pipelines_invalid", (json_int_t)invalid,
      "jobs_running", (json_int_t)s->running, "jobs_queued", (json_int_t)s->queued,
      "max_running_jobs", (json_int_t)SERVE_MAX_RUNNING, "state_dir", serve_jstr(s->state_dir),
      "scheduler", "active", "restores_enabled", s->have_restore_token, "pipeline_status", pipes,
      "stale", stale);
  return o;
}

/* ---- request bodies -------------------------------------------------------------------- */

/* The body as a JSON object ({} when empty). NULL after answering 400. */
static json_t *body_object(struct httpd_req *req, const char *const *keys, size_t n_keys) {
  if (!req->body || req->body_len == 0)
    return json_object();
  json_error_t je;
  json_t *o = json_loadb(req->body, req->body_len, 0, &je);
  if (!json_is_object(o)) {
    serve_respond_error(req, 400, NULL, "the request body is not a JSON object%s%s", o ? "" : ": ",
                        o ? "" : je.text);
    json_decref(o);
    return NULL;
  }
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    int known = 0;
    for (size_t i = 0; i < n_keys; i++)
      known |= strcmp(k, keys[i]) == 0;
    if (!known) {
      char *list = xstrdup("");
      for (size_t i = 0; i < n_keys; i++) {
        char *x = xasprintf("%s%s%s", list, i ? ", " : "", keys[i]);
        free(list);
        list = x;
      }
      serve_respond_error(req, 400, NULL, "unknown key '%s' in the request body (expected %s)", k,
                          n_keys ? list : "no keys");
      free(list);
      json_decref(o);
      return NULL;
    }
  }
  return o;
}

/* o[key]: absent or a boolean (*out); -1 after answering 400. */
static int get_bool(struct httpd_req *req, json_t *o, const char *key, int *out) {
  json_t *v = json_object_get(o, key);
  *out = 0;
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_boolean(v)) {
    serve_respond_error(req, 400, NULL, "'%s' must be true or false", key);
    return -1;
  }
  *out = json_is_true(v);
  return 0;
}

/* o[key]: absent or a non-empty string without control characters. */
static int get_string(struct httpd_req *req, json_t *o, const char *key, const char **out) {
  json_t *v = json_object_get(o, key);
  *out = NULL;
  if (!v || json_is_null(v))
    return 0;
  const char *t = json_string_value(v);
  int ok = t && *t && t[0] != '-';
  for (const char *c = t; ok && *c; c++)
    ok = (unsigned char)*c >= 0x20 && *c != 0x7f;
  if (!ok) {
    serve_respond_error(req, 400, NULL,
                        "'%s' must be a non-empty string (not starting with '-', no control "
                        "characters)",
                        key);
    return -1;
  }
  *out = t;
  return 0;
}

/* ---- jobs ---------------------------------------------------------------------------------- */

/* A job started: 202 with Location. */
static void job_started(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p,
                        enum job_kind kind, const char *const *args, json_t *request) {
  struct serve_job *j = NULL;
  int busy = 0;
  char *err = NULL;
  if (serve_start_job(s, p, kind, "api", args, request, &j, &busy, &err) != 0) {
    serve_respond_error(req, busy ? 409 : 503, NULL, "%s", err);
    free(err);
    return;
  }
  char *loc = xasprintf("Location: /v1/jobs/%lld\r\n", (long long)j->id);
  serve_respond_json(req, 202,
                     json_pack("{s:I, s:s, s:s, s:o}", "job", (json_int_t)j->id, "kind",
                               serve_job_kind_name(kind), "state", serve_job_state_name(j->state),
                               "pid", j->state == JOB_RUNNING ? json_integer(j->pid) : json_null()),
                     loc);
  free(loc);
}

/* POST .../run {"only": ["SOURCE[/ITEM-GLOB]", ...]} */
static void start_run(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p,
                      json_t *body) {
  json_t *only = json_object_get(body, "only");
  if (only && !json_is_null(only) && !json_is_array(only)) {
    serve_respond_error(req, 400, NULL, "'only' must be a list of SOURCE or SOURCE/ITEM-GLOB");
    json_decref(body);
    return;
  }
  size_t n = json_array_size(only);
  const char **args = xcalloc(6 + 2 * n + 1, sizeof(char *));
  size_t k = 0;
  args[k++] = "run";
  args[k++] = p->path;
  args[k++] = "--json";
  args[k++] = "--progress";
  args[k++] = "never";
  for (size_t i = 0; i < n; i++) {
    const char *v = json_string_value(json_array_get(only, i));
    if (!v || !*v || v[0] == '-' || v[0] == '/' || strchr(v, '\n')) {
      serve_respond_error(req, 400, NULL,
                          "'only'[%zu] must be SOURCE or SOURCE/ITEM-GLOB (a non-empty string)", i);
      free(args);
      json_decref(body);
      return;
    }
    args[k++] = "--only";
    args[k++] = v;
  }
  json_t *request = n ? json_pack("{s:O}", "only", only) : json_object();
  job_started(s, req, p, JOB_RUN, args, request);
  free(args);
  json_decref(body);
}

/* POST .../check {"read_data", "restore_test", "allow_untested"} */
static void start_check(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p,
                        json_t *body) {
  int rd, rt, au;
  if (get_bool(req, body, "read_data", &rd) || get_bool(req, body, "restore_test", &rt) ||
      get_bool(req, body, "allow_untested", &au)) {
    json_decref(body);
    return;
  }
  if (au && !rt) {
    serve_respond_error(req, 400, NULL, "'allow_untested' only works with 'restore_test'");
    json_decref(body);
    return;
  }
  const char *args[8] = {"check", p->path, "--json"};
  size_t k = 3;
  if (rd)
    args[k++] = "--read-data";
  if (rt)
    args[k++] = "--restore-test";
  if (au)
    args[k++] = "--allow-untested";
  args[k] = NULL;
  job_started(
      s, req, p, JOB_CHECK, args,
      json_pack("{s:b, s:b, s:b}", "read_data", rd, "restore_test", rt, "allow_untested", au));
  json_decref(body);
}

/* DELETE .../snapshots/ID: forget that snapshot (no prune). */
static void start_forget(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p,
                         const char *id) {
  int hex = strlen(id) >= 8;
  for (const char *c = id; *c && hex; c++)
    hex = isxdigit((unsigned char)*c) && !isupper((unsigned char)*c);
  if (!hex) {
    serve_respond_error(req, 400, NULL,
                        "'%s' is not a snapshot id: give the id or at least 8 of its hex digits",
                        id);
    return;
  }
  const char *args[] = {"forget", p->path, id, "--json", NULL};
  job_started(s, req, p, JOB_FORGET, args, json_pack("{s:s}", "snapshot", id));
}

/* POST .../restore {"snapshot", "target", "only", "overwrite", "as",
 * "drop_existing"}: only with --allow-restore and the restore token. */
static void start_restore(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p,
                          json_t *body) {
  const char *snap, *target, *only, *as;
  int overwrite, drop;
  if (get_string(req, body, "snapshot", &snap) || get_string(req, body, "target", &target) ||
      get_string(req, body, "only", &only) || get_string(req, body, "as", &as) ||
      get_bool(req, body, "overwrite", &overwrite) || get_bool(req, body, "drop_existing", &drop)) {
    json_decref(body);
    return;
  }
  const char *why =
      !snap                   ? "'snapshot' is required ('latest' or an id)"
      : !target && !overwrite ? "'target' is required (a restore to the original location replaces "
                                "data: it needs \"overwrite\": true)"
      : drop && !overwrite    ? "'drop_existing' needs \"overwrite\": true"
      : as && (!only || !strchr(only, '/')) ? "'as' restores one item: give 'only' as SOURCE/ITEM"
                                            : NULL;
  if (why) {
    serve_respond_error(req, 400, NULL, "%s", why);
    json_decref(body);
    return;
  }
  const char *args[16] = {"restore", p->path, snap, "--progress", "always"};
  size_t k = 5;
  if (target) {
    args[k++] = "--target";
    args[k++] = target;
  }
  if (only) {
    args[k++] = "--only";
    args[k++] = only;
  }
  if (as) {
    args[k++] = "--as";
    args[k++] = as;
  }
  if (overwrite)
    args[k++] = "--yes";
  if (drop)
    args[k++] = "--drop-existing";
  args[k] = NULL;
  json_t *request =
      json_pack("{s:s, s:s?, s:s?, s:s?, s:b, s:b}", "snapshot", snap, "target", target, "only",
                only, "as", as, "overwrite", overwrite, "drop_existing", drop);
  job_started(s, req, p, JOB_RESTORE, args, request);
  json_decref(body);
}

/* GET /v1/jobs?pipeline=&kind=&state= */
static int query_is(const char *query, const char *key, const char *value) {
  size_t kl = strlen(key);
  for (const char *p = query; p && *p;) {
    size_t len = strcspn(p, "&");
    if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=')
      return strlen(value) == len - kl - 1 && strncmp(p + kl + 1, value, len - kl - 1) == 0;
    p += len + (p[len] == '&');
  }
  return 1; /* not given: anything passes */
}

static void list_jobs(struct serve *s, struct httpd_req *req) {
  json_t *arr = json_array();
  for (const struct serve_job *j = s->jobs_tail; j; j = j->prev)
    if (query_is(req->query, "pipeline", j->pipeline) &&
        query_is(req->query, "kind", serve_job_kind_name(j->kind)) &&
        query_is(req->query, "state", serve_job_state_name(j->state)))
      json_array_append_new(arr, serve_job_json(j, 0));
  serve_respond_json(req, 200, json_pack("{s:o}", "jobs", arr), NULL);
}

/* ---- routing ----------------------------------------------------------------------- */

enum route {
  R_NONE,
  R_STATUS,
  R_PIPELINES,
  R_PIPELINE,
  R_SNAPSHOTS,
  R_SNAPSHOT,
  R_RUN,
  R_CHECK,
  R_RESTORE,
  R_RESTORES,
  R_SCHEDULE,
  R_ALL_SNAPSHOTS,
  R_JOBS,
  R_JOB,
  R_CANCEL,
  R_BACKUPS, /* /api/v1/system/backups */
  R_METRICS
};

/* The methods a route takes (GET also means HEAD). */
static const char *route_methods(enum route r) {
  switch (r) {
  case R_RUN:
  case R_CHECK:
  case R_RESTORE:
  case R_CANCEL:
    return "POST";
  case R_SNAPSHOT:
    return "GET, HEAD, DELETE";
  case R_SCHEDULE:
    return "GET, HEAD, PUT";
  case R_BACKUPS:
    return "GET, HEAD, POST";
  default:
    return "GET, HEAD";
  }
}

static int method_allowed(enum route r, int method) {
  const char *m = route_methods(r);
  const char *name = method == HTTP_HEAD ? "HEAD" : http_method_str((enum http_method)method);
  size_t nl = strlen(name);
  for (const char *p = m; *p;) {
    size_t len = strcspn(p, ",");
    if (len == nl && strncmp(p, name, nl) == 0)
      return 1;
    p += len;
    p += strspn(p, ", ");
  }
  return 0;
}

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

static enum route match(const char *path, char *name, size_t name_size, char *id, size_t id_size) {
  char seg[5][256];
  int n = split(path, seg, 5);
  if (n == 1 && strcmp(seg[0], "metrics") == 0)
    return R_METRICS;
  if (n == 4 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "v1") == 0 &&
      strcmp(seg[2], "system") == 0 && strcmp(seg[3], "backups") == 0)
    return R_BACKUPS;
  if (n < 2 || strcmp(seg[0], "v1") != 0)
    return R_NONE;
  if (n == 2 && strcmp(seg[1], "status") == 0)
    return R_STATUS;
  if (n == 2 && strcmp(seg[1], "pipelines") == 0)
    return R_PIPELINES;
  if (n == 2 && strcmp(seg[1], "jobs") == 0)
    return R_JOBS;
  if (n == 2 && strcmp(seg[1], "snapshots") == 0)
    return R_ALL_SNAPSHOTS;
  if (n >= 3)
    snprintf(name, name_size, "%s", seg[2]);
  if (n == 5)
    snprintf(id, id_size, "%s", seg[4]);
  if (strcmp(seg[1], "jobs") == 0) {
    if (n == 3)
      return R_JOB;
    if (n == 4 && strcmp(seg[3], "cancel") == 0)
      return R_CANCEL;
    return R_NONE;
  }
  if (strcmp(seg[1], "pipelines") != 0)
    return R_NONE;
  if (n == 3)
    return R_PIPELINE;
  if (n == 5 && strcmp(seg[3], "snapshots") == 0)
    return R_SNAPSHOT;
  if (n != 4)
    return R_NONE;
  static const struct {
    const char *name;
    enum route r;
  } sub[] = {{"snapshots", R_SNAPSHOTS}, {"run", R_RUN},           {"check", R_CHECK},
             {"restore", R_RESTORE},     {"restores", R_RESTORES}, {"schedule", R_SCHEDULE}};
  for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++)
    if (strcmp(seg[3], sub[i].name) == 0)
      return sub[i].r;
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

/* The routes under /v1/pipelines/NAME. */
static int pipeline_route(enum route r) {
  return r == R_PIPELINE || r == R_SNAPSHOTS || r == R_SNAPSHOT || r == R_RUN || r == R_CHECK ||
         r == R_RESTORE || r == R_RESTORES || r == R_SCHEDULE;
}

/* GET/PUT .../schedule {"enabled": bool} */
static void schedule(struct serve *s, struct httpd_req *req, const struct serve_pipeline *p) {
  struct serve_stats *st = serve_stats_get(s, p->name);
  if (req->method == HTTP_PUT) {
    static const char *const keys[] = {"enabled"};
    json_t *body = body_object(req, keys, 1);
    if (!body)
      return;
    json_t *e = json_object_get(body, "enabled");
    if (!json_is_boolean(e)) {
      serve_respond_error(req, 400, NULL,
                          "the body must be {\"enabled\": true} or {\"enabled\": "
                          "false}");
      json_decref(body);
      return;
    }
    int paused = !json_is_true(e);
    json_decref(body);
    if (!p->schedule) {
      serve_respond_error(req, 409, NULL, "pipeline '%s' has no schedule: to pause", p->name);
      return;
    }
    if (paused != st->paused) {
      st->paused = paused;
      serve_state_save(s);
      serve_say("the schedule of pipeline %s is %s", p->name, paused ? "paused" : "resumed");
    }
  }
  time_t next = 0;
  json_t *o = json_pack("{s:s, s:o, s:b}", "pipeline", p->name, "schedule", serve_jstr(p->schedule),
                        "enabled", p->schedule && !st->paused);
  if (p->schedule && !st->paused && cron_next(&p->cron, time(NULL), &next) == 0)
    json_object_set_new(o, "next_run", serve_iso_or_null((double)next));
  else
    json_object_set_new(o, "next_run", json_null());
  serve_respond_json(req, 200, o, NULL);
}

/* POST /api/v1/system/backups {"pipeline": NAME, "only": [...]}: a run
 * (the pipeline may be left out when the directory has one). */
static void backups_post(struct serve *s, struct httpd_req *req) {
  static const char *const keys[] = {"pipeline", "only"};
  json_t *body = body_object(req, keys, 2);
  if (!body)
    return;
  const char *name;
  if (get_string(req, body, "pipeline", &name)) {
    json_decref(body);
    return;
  }
  const struct serve_pipeline *p = NULL;
  if (name) {
    p = serve_find_pipeline(s, name);
  } else {
    size_t valid = 0;
    for (size_t i = 0; i < s->n_pipelines; i++)
      if (s->pipelines[i].valid) {
        valid++;
        p = &s->pipelines[i];
      }
    if (valid != 1) {
      serve_respond_error(req, 400, NULL,
                          "'pipeline' is required: the config directory has %zu valid pipelines",
                          valid);
      json_decref(body);
      return;
    }
  }
  if (!p) {
    serve_respond_error(req, 404, NULL, "no pipeline named '%s' in %s", name, s->config_dir);
    json_decref(body);
    return;
  }
  if (!p->valid) {
    serve_respond_error(req, 422, NULL, "pipeline '%s' is invalid: %s", p->name, p->error);
    json_decref(body);
    return;
  }
  json_object_del(body, "pipeline");
  start_run(s, req, p, body);
}

static void handle(struct serve *s, struct httpd_req *req, enum route r,
                   const struct serve_pipeline *p, const char *name, const char *id) {
  switch (r) {
  case R_STATUS:
    serve_respond_json(req, 200, status_json(s), NULL);
    return;
  case R_PIPELINES: {
    json_t *arr = json_array();
    for (size_t i = 0; i < s->n_pipelines; i++)
      json_array_append_new(arr, pipeline_json(s, &s->pipelines[i]));
    serve_respond_json(req, 200, json_pack("{s:o}", "pipelines", arr), NULL);
    return;
  }
  case R_PIPELINE:
    serve_respond_json(req, 200, pipeline_json(s, p), NULL);
    return;
  case R_SNAPSHOTS:
    serve_list_snapshots(s, req, p);
    return;
  case R_SNAPSHOT:
    if (req->method == HTTP_DELETE)
      start_forget(s, req, p, id);
    else
      serve_show_snapshot(s, req, p, id);
    return;
  case R_RUN: {
    static const char *const keys[] = {"only"};
    json_t *body = body_object(req, keys, 1);
    if (body)
      start_run(s, req, p, body);
    return;
  }
  case R_CHECK: {
    static const char *const keys[] = {"read_data", "restore_test", "allow_untested"};
    json_t *body = body_object(req, keys, 3);
    if (body)
      start_check(s, req, p, body);
    return;
  }
  case R_RESTORE: {
    static const char *const keys[] = {"snapshot",  "target", "only",
                                       "overwrite", "as",     "drop_existing"};
    json_t *body = body_object(req, keys, 6);
    if (body)
      start_restore(s, req, p, body);
    return;
  }
  case R_RESTORES:
    serve_respond_json(
        req, 200, json_pack("{s:o}", "restores", serve_job_history(s, p->name, JOB_RESTORE)), NULL);
    return;
  case R_SCHEDULE:
    schedule(s, req, p);
    return;
  case R_ALL_SNAPSHOTS:
    serve_list_all_snapshots(s, req);
    return;
  case R_BACKUPS:
    if (req->method == HTTP_POST)
      backups_post(s, req);
    else
      serve_list_all_snapshots(s, req);
    return;
  case R_JOBS:
    list_jobs(s, req);
    return;
  case R_JOB:
  case R_CANCEL: {
    int64_t jid;
    struct serve_job *j = parse_id(name, &jid) == 0 ? serve_find_job(s, jid) : NULL;
    if (!j) {
      serve_respond_error(req, 404, NULL, "no job %s (the last %d jobs are kept)", name,
                          SERVE_KEEP_JOBS);
      return;
    }
    if (r == R_JOB) {
      serve_respond_json(req, 200, serve_job_json(j, 1), NULL);
      return;
    }
    char *err = NULL;
    if (serve_cancel_job(s, j, &err) != 0) {
      serve_respond_error(req, 409, NULL, "%s", err);
      free(err);
      return;
    }
    serve_respond_json(req, 202, serve_job_json(j, 0), NULL);
    return;
  }
  case R_METRICS:
    serve_metrics(s, req);
    return;
  case R_NONE:
    break;
  }
}

void serve_handle_request(void *ud, struct httpd_req *req) {
  struct serve *s = ud;
  int restore_auth = s->have_restore_token && bearer_is(req->authorization, s->restore_token_hash);
  if (s->have_token && !restore_auth && !bearer_is(req->authorization, s->token_hash)) {
    serve_respond_error(req, 401, "WWW-Authenticate: Bearer realm=\"engine\"\r\n",
                        "missing or wrong bearer token (Authorization: Bearer TOKEN)");
    return;
  }
  if (!s->have_token && check_site(s, req) != 0)
    return;
  /* the client may use the server: its connection is no longer one that
   * may be closed to make room for others */
  httpd_trust(req);
  char name[256] = "", id[256] = "";
  enum route r = match(req->path, name, sizeof(name), id, sizeof(id));
  if (r == R_NONE) {
    serve_respond_error(req, 404, NULL, "no such endpoint: %s", req->path);
    return;
  }
  if (!method_allowed(r, req->method)) {
    char *allow = xasprintf("Allow: %s\r\n", route_methods(r));
    serve_respond_error(req, 405, allow, "method %s is not allowed on %s (use %s)",
                        req->method_name, req->path, route_methods(r));
    free(allow);
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
    serve_respond_error(
        req, 415, NULL,
        "%s %s needs the header 'Content-Type: application/json' (the request has %s%.*s%s)",
        req->method_name, req->path, req->content_type ? "'" : "none", (int)len, v,
        req->content_type ? "'" : "");
    return;
  }
  if (r == R_RESTORE) {
    /* restores are off unless asked for, and need their own token */
    if (!s->have_restore_token) {
      serve_respond_error(req, 403, NULL,
                          "restores through the API are disabled: start engine serve with "
                          "--allow-restore and --restore-token-file (docs/SERVE.md)");
      return;
    }
    if (!restore_auth) {
      serve_respond_error(req, 401, "WWW-Authenticate: Bearer realm=\"engine-restore\"\r\n",
                          "a restore needs the restore token (Authorization: Bearer "
                          "RESTORE-TOKEN), not the API token");
      return;
    }
  }
  const struct serve_pipeline *p = NULL;
  if (pipeline_route(r)) {
    p = serve_find_pipeline(s, name);
    if (!p) {
      serve_respond_error(req, 404, NULL, "no pipeline named '%s' in %s", name, s->config_dir);
      return;
    }
    if (!p->valid && r != R_PIPELINE) {
      serve_respond_error(req, 422, NULL, "pipeline '%s' is invalid: %s", p->name, p->error);
      return;
    }
  }
  handle(s, req, r, p, name, id);
}
