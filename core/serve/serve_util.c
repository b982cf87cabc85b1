/* engine serve: what every part uses — the clock, lifecycle lines, text
 * and JSON helpers, JSON responses, the pipelines and their statistics,
 * child argv, and the end of an orderly stop. It calls no other part of
 * serve: each part above it (state, status, jobs, the endpoints, the
 * scheduler, the server) calls down, never up (serve_int.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"
#include "util/encoding.h"
#include "util/log.h"

/* ---- the clock and lifecycle lines --------------------------------------------------- */

static int g_quiet;

void serve_set_quiet(int quiet) {
  g_quiet = quiet;
}

void serve_say(const char *fmt, ...) {
  if (g_quiet)
    return;
  va_list ap;
  va_start(ap, fmt);
  char *text = NULL;
  int n = vasprintf(&text, fmt, ap);
  va_end(ap);
  if (n < 0)
    die_oom();
  /* as every other line: a timestamp in a file, a priority in the journal */
  log_emit(ENGINE_LOG_INFO, "serve: %s", text);
  free(text);
}

double serve_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- text and JSON --------------------------------------------------------------------- */

/* Bytes that are not UTF-8 (a tail cut mid-character, binary output) become
 * '?', so the text can be a JSON string. */
char *serve_utf8_clean(const char *in, size_t len) {
  char *out = xmalloc(len + 1);
  size_t i = 0;
  while (i < len) {
    unsigned char c = (unsigned char)in[i];
    size_t n = c < 0x80             ? 1
               : (c & 0xe0) == 0xc0 ? 2
               : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4
                                    : 0;
    int ok = n > 0 && c != 0 && i + n <= len && !(n == 2 && c < 0xc2) && !(n == 4 && c > 0xf4);
    for (size_t k = 1; ok && k < n; k++)
      ok = ((unsigned char)in[i + k] & 0xc0) == 0x80;
    if (ok && n == 3) {
      unsigned char c1 = (unsigned char)in[i + 1];
      ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
    }
    if (ok && n == 4) {
      unsigned char c1 = (unsigned char)in[i + 1];
      ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
    }
    if (!ok) {
      out[i++] = '?';
      continue;
    }
    memcpy(out + i, in + i, n);
    i += n;
  }
  out[len] = '\0';
  return out;
}

char *serve_iso(double t) {
  return iso_time((int64_t)t);
}

json_t *serve_jstr(const char *t) {
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

json_t *serve_iso_or_null(double t) {
  if (t <= 0)
    return json_null();
  char *s = serve_iso(t);
  json_t *j = json_string(s);
  free(s);
  return j;
}

/* ---- responses ------------------------------------------------------------------------- */

void serve_respond_json(struct httpd_req *req, int status, json_t *j, const char *extra) {
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

void serve_respond_error(struct httpd_req *req, int status, const char *extra, const char *fmt,
                         ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  json_t *j = json_object();
  json_object_set_new(j, "error", msg ? serve_jstr(msg) : json_string("request failed"));
  free(msg);
  serve_respond_json(req, status, j, extra);
}

/* ---- pipelines, statistics, children --------------------------------------------------- */

const struct serve_pipeline *serve_find_pipeline(const struct serve *s, const char *name) {
  /* a valid pipeline wins over an invalid file of the same stem */
  for (int want_valid = 1; want_valid >= 0; want_valid--)
    for (size_t i = 0; i < s->n_pipelines; i++)
      if (s->pipelines[i].valid == want_valid && strcmp(s->pipelines[i].name, name) == 0)
        return &s->pipelines[i];
  return NULL;
}

struct serve_stats *serve_stats_get(struct serve *s, const char *name) {
  struct serve_stats **pp = &s->stats;
  for (; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->name, name) == 0)
      return *pp;
  /* appended: /metrics lists pipelines in the order they were first seen */
  struct serve_stats *st = xcalloc(1, sizeof(*st));
  st->name = xstrdup(name);
  st->first_seen = serve_now();
  *pp = st;
  return st;
}

char **serve_child_argv(const struct serve *s, const char *const *args) {
  size_t n = 0;
  while (args[n])
    n++;
  char **argv = xcalloc(1 + 2 * s->opts->n_plugin_dirs + n + 1, sizeof(char *));
  size_t k = 0;
  argv[k++] = xstrdup(s->exe);
  for (size_t i = 0; i < s->opts->n_plugin_dirs; i++) {
    argv[k++] = xstrdup("--plugin-dir");
    argv[k++] = xstrdup(s->opts->plugin_dirs[i]);
  }
  for (size_t i = 0; i < n; i++)
    argv[k++] = xstrdup(args[i]);
  argv[k] = NULL;
  return argv;
}

void serve_free_argv(char **argv) {
  for (size_t i = 0; argv && argv[i]; i++)
    free(argv[i]);
  free(argv);
}

/* ---- the end of a stop ----------------------------------------------------------------- */

static void on_closed(uv_handle_t *h) {
  (void)h;
}

/* Called whenever a job, a child-answered request, a status child or a
 * notification ends: once a stop has begun and none is left, the loop's
 * handles are closed and serve_run returns. */
void serve_maybe_stopped(struct serve *s) {
  if (!s->stopping || s->running > 0 || s->n_listings > 0 || s->status_children > 0 ||
      s->notifying > 0 || s->stop_stage == 3)
    return;
  s->stop_stage = 3;
  serve_say("stopped");
  uv_close((uv_handle_t *)&s->sig_term, on_closed);
  uv_close((uv_handle_t *)&s->sig_int, on_closed);
  uv_close((uv_handle_t *)&s->sig_hup, on_closed);
  uv_close((uv_handle_t *)&s->tick, on_closed);
  uv_close((uv_handle_t *)&s->watchdog, on_closed);
  uv_close((uv_handle_t *)&s->stop_timer, on_closed);
}
