/* The host API table: everything a plugin may ask of the engine.
 *
 * Plugins never see the event loop itself; they reach logging, their
 * configuration, secrets, child processes, the worker pool and timing through
 * this table, so the ABI does not depend on libuv's. One table is created
 * per plugin instance and outlives it; `ctx` is the host's, opaque.
 */
#ifndef ENGINE_HOST_H
#define ENGINE_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes shared by every callback. */
enum engine_rc {
  ENGINE_OK = 0,
  ENGINE_RETRY = 1,       /* transient failure; the caller may retry */
  ENGINE_ERROR = -1,      /* failure; message set through host->set_error */
  ENGINE_NOT_FOUND = -2,  /* object / item does not exist */
  ENGINE_EXISTS = -3      /* would overwrite existing data */
};

enum engine_log_level { ENGINE_LOG_ERROR = 0, ENGINE_LOG_WARN = 1, ENGINE_LOG_INFO = 2, ENGINE_LOG_DEBUG = 3 };

enum engine_stdio { ENGINE_STDIO_NULL = 0, ENGINE_STDIO_PIPE = 1, ENGINE_STDIO_INHERIT = 2 };

struct engine_spawn_opts {
  uint32_t struct_size;
  const char *file;          /* program; searched in PATH if it has no '/' */
  const char *const *argv;   /* NULL-terminated; never put secrets here */
  const char *const *env;    /* NULL-terminated "NAME=VALUE" added to the environment (secrets go here) */
  enum engine_stdio stdin_mode, stdout_mode, stderr_mode; /* stderr PIPE is captured for messages */
};

struct engine_child {
  pid_t pid;
  int stdin_fd;  /* -1 unless ENGINE_STDIO_PIPE */
  int stdout_fd; /* -1 unless ENGINE_STDIO_PIPE */
  int stderr_fd; /* always -1: a piped stderr is drained by the host, read it with child_stderr */
};

struct engine_work; /* opaque handle for work queued on the pool */

struct engine_host {
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t struct_size;
  void *ctx;

  /* Logging: goes to the engine's log with the plugin instance's name. */
  void (*log)(const struct engine_host *h, enum engine_log_level lvl, const char *fmt, ...)
#if defined(__GNUC__)
      __attribute__((format(printf, 3, 4)))
#endif
      ;
  /* Set the message that accompanies an ENGINE_ERROR return. */
  void (*set_error)(const struct engine_host *h, const char *fmt, ...)
#if defined(__GNUC__)
      __attribute__((format(printf, 2, 3)))
#endif
      ;

  /* Configuration of this instance (validated, defaults applied).
   * Strings are owned by the host. SIZE options are bytes, DURATION ms. */
  const char *(*cfg_string)(const struct engine_host *h, const char *option);
  int64_t (*cfg_int)(const struct engine_host *h, const char *option, int64_t dflt);
  int (*cfg_bool)(const struct engine_host *h, const char *option, int dflt);
  size_t (*cfg_list_count)(const struct engine_host *h, const char *option);
  const char *(*cfg_list_item)(const struct engine_host *h, const char *option, size_t i);

  /* Resolve a SECRET option ("env:NAME" / "file:/path"). The buffer is
   * NUL-terminated, must be released with secret_free (which wipes it) and
   * must never be logged or passed in argv. */
  int (*secret)(const struct engine_host *h, const char *option, char **out, size_t *out_len);
  void (*secret_free)(char *buf, size_t len);

  /* Child processes. spawn fills *child; child_wait reaps it and returns
   * the exit status as from waitpid (use WIFEXITED ...), or -1. Captured
   * stderr (if PIPE) is available through child_stderr until child_free. */
  int (*spawn)(const struct engine_host *h, const struct engine_spawn_opts *o, struct engine_child **child);
  int (*child_wait)(const struct engine_host *h, struct engine_child *child, int *status);
  const char *(*child_stderr)(const struct engine_host *h, struct engine_child *child);
  void (*child_kill)(const struct engine_host *h, struct engine_child *child, int sig);
  void (*child_free)(const struct engine_host *h, struct engine_child *child);

  /* Run fn(arg) on the engine's worker pool; work_wait blocks until it ran
   * and frees the handle. */
  int (*work_submit)(const struct engine_host *h, void (*fn)(void *arg), void *arg, struct engine_work **w);
  void (*work_wait)(const struct engine_host *h, struct engine_work *w);

  /* Time and cancellation. sleep_ms returns early (ENGINE_ERROR) when the
   * run is cancelled (SIGINT/SIGTERM). */
  int64_t (*now_ms)(const struct engine_host *h);
  int (*sleep_ms)(const struct engine_host *h, int64_t ms);
  int (*cancelled)(const struct engine_host *h);

  /* Progress hint: total bytes the source expects to emit (0 = unknown). */
  void (*progress_total)(const struct engine_host *h, uint64_t bytes);
};

#ifdef __cplusplus
}
#endif
#endif
