/* Core logging and allocation helpers. Every message goes to stderr as whole
 * lines, each carrying its level: "<3>engine: error: ..." when stderr is
 * the systemd journal (JOURNAL_STREAM names it; journald reads the <N>
 * prefix as the priority and stamps the time itself), "2026-01-02T03:04:05.123Z
 * engine: error: ..." when stderr is a file or a pipe (a log someone reads
 * later), and "engine: error: ..." on a terminal. A message with newlines
 * becomes one such line per line of text, so no line of a log is without
 * its level. */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum engine_log_level g_level = ENGINE_LOG_WARN;
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_style = -1;   /* enum log_style, decided at the first message */
static char *g_last_error; /* the text of the last error message */

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

/* syslog priorities (sd-daemon.h's SD_ERR ... SD_DEBUG) */
static int journal_priority(enum engine_log_level l) {
  switch (l) {
  case ENGINE_LOG_ERROR:
    return 3;
  case ENGINE_LOG_WARN:
    return 4;
  case ENGINE_LOG_INFO:
    return 6;
  default:
    return 7;
  }
}

/* Is stderr the journal? systemd sets JOURNAL_STREAM=DEVICE:INODE for the
 * stream it connects; a child whose stderr was redirected elsewhere
 * inherits the variable, so the descriptor itself must match. */
static int stderr_is_journal(void) {
  const char *js = getenv("JOURNAL_STREAM");
  if (!js || !*js)
    return 0;
  unsigned long long dev, ino;
  if (sscanf(js, "%llu:%llu", &dev, &ino) != 2)
    return 0;
  struct stat st;
  if (fstat(STDERR_FILENO, &st) != 0)
    return 0;
  return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static int style(void) {
  if (g_style < 0)
    g_style = stderr_is_journal()     ? LOG_STYLE_JOURNAL
              : isatty(STDERR_FILENO) ? LOG_STYLE_PLAIN
                                      : LOG_STYLE_TIMESTAMP;
  return g_style;
}

void log_set_style(enum log_style s) {
  pthread_mutex_lock(&g_log_lock);
  g_style = (int)s;
  pthread_mutex_unlock(&g_log_lock);
}

enum log_style log_get_style(void) {
  pthread_mutex_lock(&g_log_lock);
  enum log_style s = (enum log_style)style();
  pthread_mutex_unlock(&g_log_lock);
  return s;
}

/* "2026-01-02T03:04:05.123Z " */
static void timestamp(char buf[32]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 32 - n, ".%03ldZ ", ts.tv_nsec / 1000000);
}

/* Called with g_log_lock held. */
static void emit_lines(enum engine_log_level lvl, const char *text) {
  int st = style();
  char ts[32] = "";
  if (st == LOG_STYLE_TIMESTAMP)
    timestamp(ts);
  const char *p = text;
  do {
    size_t l = strcspn(p, "\n");
    /* a trailing newline does not make an empty line */
    if (l == 0 && p[0] == '\n' && p[1] == '\0')
      break;
    if (st == LOG_STYLE_JOURNAL)
      fprintf(stderr, "<%d>engine: %s: %.*s\n", journal_priority(lvl), level_name(lvl), (int)l, p);
    else
      fprintf(stderr, "%sengine: %s: %.*s\n", ts, level_name(lvl), (int)l, p);
    p += l;
    if (*p == '\n')
      p++;
  } while (*p);
}

void log_msg(enum engine_log_level lvl, const char *fmt, ...) {
  if (lvl > g_level && lvl != ENGINE_LOG_ERROR)
    return;
  va_list ap;
  va_start(ap, fmt);
  char *text = NULL;
  int n = vasprintf(&text, fmt, ap);
  va_end(ap);
  if (n < 0)
    die_oom();
  pthread_mutex_lock(&g_log_lock);
  if (lvl == ENGINE_LOG_ERROR) {
    free(g_last_error);
    g_last_error = text;
  }
  if (lvl <= g_level)
    emit_lines(lvl, text);
  pthread_mutex_unlock(&g_log_lock);
  if (lvl != ENGINE_LOG_ERROR)
    free(text);
}

void log_emit(enum engine_log_level lvl, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *text = NULL;
  int n = vasprintf(&text, fmt, ap);
  va_end(ap);
  if (n < 0)
    die_oom();
  pthread_mutex_lock(&g_log_lock);
  emit_lines(lvl, text);
  pthread_mutex_unlock(&g_log_lock);
  free(text);
}

void log_note_error(const char *msg) {
  char *copy = msg ? xstrdup(msg) : NULL;
  pthread_mutex_lock(&g_log_lock);
  free(g_last_error);
  g_last_error = copy;
  pthread_mutex_unlock(&g_log_lock);
}

char *log_last_error(void) {
  pthread_mutex_lock(&g_log_lock);
  char *copy = g_last_error ? xstrdup(g_last_error) : NULL;
  pthread_mutex_unlock(&g_log_lock);
  return copy;
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
