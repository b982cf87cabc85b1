/* Core logging and allocation helpers. */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum engine_log_level g_level = ENGINE_LOG_WARN;
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(enum engine_log_level lvl) {
  g_level = lvl;
}
enum engine_log_level log_get_level(void) {
  return g_level;
}

static const char *level_name(enum engine_log_level l) {
  switch (l) {
  case ENGINE_LOG_ERROR:
    return "error";
  case ENGINE_LOG_WARN:
    return "warning";
  case ENGINE_LOG_INFO:
    return "info";
  default:
    return "debug";
  }
}

void log_msg(enum engine_log_level lvl, const char *fmt, ...) {
  if (lvl > g_level)
    return;
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&g_log_lock);
  fprintf(stderr, "engine: %s: ", level_name(lvl));
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  pthread_mutex_unlock(&g_log_lock);
  va_end(ap);
}

void die_oom(void) {
  fputs("engine: error: out of memory\n", stderr);
  abort();
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    die_oom();
  return p;
}
void *xcalloc(size_t n, size_t m) {
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p)
    die_oom();
  return p;
}
void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q)
    die_oom();
  return q;
}
char *xstrdup(const char *s) {
  char *p = strdup(s ? s : "");
  if (!p)
    die_oom();
  return p;
}
char *xasprintf(const char *fmt, ...) {
  va_list ap;
  char *out = NULL;
  va_start(ap, fmt);
  int n = vasprintf(&out, fmt, ap);
  va_end(ap);
  if (n < 0)
    die_oom();
  return out;
}
