/* Core logging to stderr: "engine: <level>: message". Thread-safe. */
#ifndef CORE_UTIL_LOG_H
#define CORE_UTIL_LOG_H

#include "engine/host.h"

void log_set_level(enum engine_log_level lvl);
enum engine_log_level log_get_level(void);
void log_msg(enum engine_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(ENGINE_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(ENGINE_LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(ENGINE_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(ENGINE_LOG_DEBUG, __VA_ARGS__)

/* printf into a malloc'd string (aborts on OOM). */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports "out of memory" and aborts (what the x* allocators do on failure). */
void die_oom(void) __attribute__((noreturn));
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
