/* Core logging to stderr: "engine: <level>: message", one line per line of
 * the message, with a journald priority prefix (<3>) when stderr is the
 * journal and a UTC timestamp when it is a file or a pipe (see log.c).
 * Thread-safe. */
#ifndef CORE_UTIL_LOG_H
#define CORE_UTIL_LOG_H

#include "engine/host.h"

enum log_style {
  LOG_STYLE_PLAIN = 0, /* a terminal: "engine: error: ..." */
  LOG_STYLE_TIMESTAMP, /* a file or a pipe: "2026-01-02T03:04:05.123Z engine: error: ..." */
  LOG_STYLE_JOURNAL    /* the systemd journal: "<3>engine: error: ..." */
};

void log_set_level(enum engine_log_level lvl);
enum engine_log_level log_get_level(void);
/* The style is chosen from stderr at the first message; tests set it. */
void log_set_style(enum log_style s);
enum log_style log_get_style(void);
void log_msg(enum engine_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A message printed whatever the level (the lifecycle lines of a long
 * running command, which it leaves out itself under -q), in the style and
 * with the priority of lvl. */
void log_emit(enum engine_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(ENGINE_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(ENGINE_LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(ENGINE_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(ENGINE_LOG_DEBUG, __VA_ARGS__)

/* The text of the last error message (logged, or noted without printing
 * by log_note_error), malloc'd, or NULL: what a failed command reports in
 * its JSON error object, its audit record and its notifications. */
char *log_last_error(void);
void log_note_error(const char *msg);

/* printf into a malloc'd string (aborts on OOM). */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports "out of memory" and aborts (what the x* allocators do on failure). */
void die_oom(void) __attribute__((noreturn));
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
