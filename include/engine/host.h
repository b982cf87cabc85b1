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

/* Where `field` of `type` ends: the smallest struct_size that covers it. */
#define ENGINE_FIELD_END(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
/* Whether a versioned structure (one with a uint32_t struct_size: the host
 * table, the ops tables, the emitter ...) was built with `field`: check it
 * before reading a field appended after ABI 1.0, e.g.
 * ENGINE_HAS_FIELD(host, struct engine_host, http_request). */
#define ENGINE_HAS_FIELD(ptr, type, field)                                                         \
  ((size_t)(ptr)->struct_size >= ENGINE_FIELD_END(type, field))

/* Return codes shared by every callback. */
enum engine_rc {
  ENGINE_OK = 0,
  ENGINE_RETRY = 1,      /* reserved: no caller retries on it; treated as ENGINE_ERROR */
  ENGINE_ERROR = -1,     /* failure; message set through host->set_error */
  ENGINE_NOT_FOUND = -2, /* object / item does not exist */
  ENGINE_EXISTS = -3     /* would overwrite existing data */
};

enum engine_log_level {
  ENGINE_LOG_ERROR = 0,
  ENGINE_LOG_WARN = 1,
  ENGINE_LOG_INFO = 2,
  ENGINE_LOG_DEBUG = 3
};

enum engine_stdio { ENGINE_STDIO_NULL = 0, ENGINE_STDIO_PIPE = 1, ENGINE_STDIO_INHERIT = 2 };

struct engine_spawn_opts {
  uint32_t struct_size;
  const char *file;        /* program; searched in PATH if it has no '/' */
  const char *const *argv; /* NULL-terminated; never put secrets here */
  /* NULL-terminated "NAME=VALUE". The child's environment is these plus a
   * short allow-list of the engine's (PATH, HOME, LANG, LC_*, TZ, TMPDIR,
   * USER, LOGNAME; docs/PLUGINS.md 4.1), nothing else of the engine's. */
  const char *const *env;
  enum engine_stdio stdin_mode, stdout_mode, stderr_mode; /* stderr PIPE is captured for messages */
  /* ---- ABI 1.2 (the host reads these only if struct_size covers them) ---- */
  /* Descriptors handed to the child: pass_fds[i] is descriptor 3 + i in the
   * child (e.g. a memfd holding a secret, read as /proc/self/fd/3). The
   * child gets no other descriptor of the engine's above 2. */
  const int *pass_fds;
  size_t n_pass_fds;
};

struct engine_child {
  pid_t pid;
  int stdin_fd;  /* -1 unless ENGINE_STDIO_PIPE */
  int stdout_fd; /* -1 unless ENGINE_STDIO_PIPE */
  int stderr_fd; /* always -1: a piped stderr is drained by the host, read it with child_stderr */
};

struct engine_work; /* opaque handle for work queued on the pool */

/* ---- HTTP (ABI 1.1) ---------------------------------------------------- */

/* One HTTP request, executed by the engine's shared HTTP client: libcurl's
 * multi interface driven by a libuv loop, with connection reuse across all
 * plugins and a bounded number of parallel transfers. */
struct engine_http_request {
  uint32_t struct_size;
  const char *method;         /* "GET", "PUT", "POST", "DELETE", "HEAD" */
  const char *url;            /* complete, percent-encoded (query parameters sorted for SigV4) */
  const char *const *headers; /* NULL-terminated "Name: value" lines, may be NULL */
  const void *body;           /* request body sent from this buffer (not copied), may be NULL */
  size_t body_len;
  /* AWS Signature V4 by libcurl (CURLOPT_AWS_SIGV4), e.g. "aws:amz:eu-west-1:s3";
   * NULL: unsigned. username/password are the access key and secret; they
   * are never logged. Remember x-amz-content-sha256 in headers. */
  const char *aws_sigv4;
  const char *username;
  const char *password;
  const char *bearer_token;   /* "Authorization: Bearer" (OAuth2), never logged; may be NULL */
  const char *ca_bundle;      /* CA file, NULL: system default */
  int64_t timeout_ms;         /* whole transfer; 0: 600000 */
  int64_t connect_timeout_ms; /* 0: 30000 */
  /* Retries with exponential backoff and jitter on transport errors,
   * timeouts and the statuses engine_http_retryable() names; never on other
   * 4xx. max_retries 0: no retry. */
  int max_retries;
  int64_t retry_base_ms; /* first backoff, doubled each time (0: 200 ms), capped at 30 s */
  /* Optional: receive the body as it arrives instead of collecting it.
   * Return 0 to continue, non-zero to abort. Called with data == NULL and
   * len == 0 before a retry: discard what was received so far. */
  int (*on_body)(void *ud, const void *data, size_t len);
  void *ud;
  uint64_t max_body; /* cap on a collected body; 0: 256 MiB */
  /* ---- ABI 1.7 (ENGINE_HTTP_EXT_MINOR; the host reads these only if
   * struct_size covers them) ---- */
  /* TLS client certificate: PEM files (a /proc/self/fd/N of a memfd keeps
   * them off the disk); client_key NULL: the key is in client_cert. Never
   * logged. */
  const char *client_cert;
  const char *client_key;
  int insecure; /* 1: do not verify the server's certificate and name (insecure-skip-tls-verify) */
};

/* The ABI minor from which http_request takes client_cert, client_key and
 * insecure, and sends `body` with every method that has one (PATCH, DELETE
 * ...; before it, only PUT and POST sent their body). Check
 * host->abi_minor >= ENGINE_HTTP_EXT_MINOR before relying on them. */
#define ENGINE_HTTP_EXT_MINOR 7

/* Filled by http_request. Set struct_size to sizeof before the call (ABI
 * 1.5): the host fills what both sides know and sets struct_size to that. A
 * plugin of ABI 1.1-1.4 has none; the host then fills the 1.1 fields. */
struct engine_http_response {
  long status; /* final HTTP status, 0 when no response arrived */
  char *body;  /* collected body (NUL-terminated), or NULL with on_body */
  size_t body_len;
  char *headers;   /* the final response's header block, NUL-terminated */
  int attempts;    /* how many times the request was sent */
  char error[256]; /* transport error of the last attempt ("" if a response arrived) */
  /* ---- ABI 1.5 ---- */
  uint32_t struct_size;
};

/* The HTTP statuses http_request retries (when max_retries allows): 408,
 * 429, 500, 502, 503 and 504. For plugins that retry on their own (a
 * resumable upload that must ask where to resume first). */
static inline int engine_http_retryable(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

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
  int (*spawn)(const struct engine_host *h, const struct engine_spawn_opts *o,
               struct engine_child **child);
  int (*child_wait)(const struct engine_host *h, struct engine_child *child, int *status);
  const char *(*child_stderr)(const struct engine_host *h, struct engine_child *child);
  void (*child_kill)(const struct engine_host *h, struct engine_child *child, int sig);
  void (*child_free)(const struct engine_host *h, struct engine_child *child);

  /* Run fn(arg) on the engine's worker pool; work_wait blocks until it ran
   * and frees the handle. */
  int (*work_submit)(const struct engine_host *h, void (*fn)(void *arg), void *arg,
                     struct engine_work **w);
  void (*work_wait)(const struct engine_host *h, struct engine_work *w);

  /* Time and cancellation. sleep_ms returns early (ENGINE_ERROR) when the
   * run is cancelled (SIGINT/SIGTERM). */
  int64_t (*now_ms)(const struct engine_host *h);
  int (*sleep_ms)(const struct engine_host *h, int64_t ms);
  int (*cancelled)(const struct engine_host *h);

  /* Progress hint: total bytes the source expects to emit (0 = unknown). */
  void (*progress_total)(const struct engine_host *h, uint64_t bytes);

  /* ---- ABI 1.1 (check struct_size before use) ---- */
  /* Perform an HTTP request (blocking the calling thread; any thread).
   * Returns ENGINE_OK when a response arrived (whatever its status) and
   * ENGINE_ERROR when none did after the retries (resp->error says why).
   * Free the response with http_response_free. */
  int (*http_request)(const struct engine_host *h, const struct engine_http_request *req,
                      struct engine_http_response *resp);
  void (*http_response_free)(struct engine_http_response *resp);
  /* Value of a response header (case-insensitive name), malloc'd, or NULL. */
  char *(*http_header)(const struct engine_http_response *resp, const char *name);
};

#ifdef __cplusplus
}
#endif
#endif
