/* The host API table handed to plugin instances: logging, error messages,
 * configuration accessors over the validated `with:` object, secret
 * resolution, child processes, the worker pool, time and cancellation.
 * Everything a plugin may ask of the engine goes through here, so the ABI
 * never exposes libuv or any other core structure. */
#include "plugin/host.h"
#include "net/http.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plugin/host_progress.h"
#include "plugin/loader.h"
#include "util/log.h"
#include "util/cancel.h"
#include "util/pool.h"
#include "util/secret.h"

extern char **environ;

#define HOST_ERR_MAX 4096
#define STDERR_CAPTURE_MAX (64 * 1024)
/* After the child exits, a grandchild may keep its stderr open and keep
 * writing; the final drain takes at most this much more. */
#define STDERR_FINAL_DRAIN_MAX (1024 * 1024)
#define SLEEP_SLICE_MS 100

/* Size of struct engine_spawn_opts as ABI 1.0 defined it. */
#define SPAWN_OPTS_V1_0_SIZE                                                                       \
  (offsetof(struct engine_spawn_opts, stderr_mode) + sizeof(enum engine_stdio))
/* ... and as ABI 1.2 extended it (pass_fds). */
#define SPAWN_OPTS_V1_2_SIZE (offsetof(struct engine_spawn_opts, n_pass_fds) + sizeof(size_t))
/* More descriptors than this for one child is a plugin bug. */
#define SPAWN_PASS_FDS_MAX 64

struct host_ctx {
  struct engine_host table;
  char *name;
  json_t *config;
  pthread_mutex_t err_lock;
  uint64_t serial; /* unique per host, see tl_err_serial */
  char err[HOST_ERR_MAX];
  uint64_t progress_total; /* accessed with __atomic builtins */
};

/* Process-wide: written from signal handlers, read from any thread. */

static struct host_ctx *ctx_of(const struct engine_host *h) {
  return (struct host_ctx *)h->ctx;
}

/* ---- logging and errors ----------------------------------------------- */

static void host_log(const struct engine_host *h, enum engine_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void host_set_error(const struct engine_host *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void host_log(const struct engine_host *h, enum engine_log_level lvl, const char *fmt, ...) {
  int l = (int)lvl;
  if (l < (int)ENGINE_LOG_ERROR)
    l = ENGINE_LOG_ERROR;
  if (l > (int)ENGINE_LOG_DEBUG)
    l = ENGINE_LOG_DEBUG;
  if (l > (int)log_get_level())
    return;
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&msg, fmt, ap);
  va_end(ap);
  if (n < 0) {
    log_msg((enum engine_log_level)l, "%s: (log message lost: out of memory)", ctx_of(h)->name);
    return;
  }
  log_msg((enum engine_log_level)l, "%s: %s", ctx_of(h)->name, msg);
  free(msg);
}

/* The thread-local copy names its host by pointer and serial number: a host
 * freed and another allocated at the same address never share messages. */
static __thread const struct engine_host *tl_err_host;
static __thread uint64_t tl_err_serial;
static __thread char tl_err[HOST_ERR_MAX];
static uint64_t g_host_serial;

static void set_error_v(const struct engine_host *h, const char *fmt, va_list ap) {
  struct host_ctx *c = ctx_of(h);
  char buf[HOST_ERR_MAX];
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  if (n < 0)
    snprintf(buf, sizeof buf, "(error message could not be formatted)");
  else if ((size_t)n >= sizeof buf)
    memcpy(buf + sizeof buf - 4, "...", 4);
  pthread_mutex_lock(&c->err_lock);
  memcpy(c->err, buf, sizeof buf);
  pthread_mutex_unlock(&c->err_lock);
  /* the thread that failed is the one that asks why: keep its own copy, so
   * concurrent calls on one instance cannot swap their messages */
  tl_err_host = h;
  tl_err_serial = c->serial;
  memcpy(tl_err, buf, sizeof buf);
}

static void host_set_error(const struct engine_host *h, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_error_v(h, fmt, ap);
  va_end(ap);
}

/* Copied out under the lock into a per-thread buffer, so a concurrent
 * set_error from a worker thread cannot tear the string being read. The
 * result is valid until the calling thread's next host_last_error. */
const char *host_last_error(const struct engine_host *h) {
  static __thread char copy[HOST_ERR_MAX];
  if (!h)
    return "";
  struct host_ctx *c = ctx_of(h);
  if (tl_err_host == h && tl_err_serial == c->serial)
    return tl_err;
  pthread_mutex_lock(&c->err_lock);
  memcpy(copy, c->err, sizeof copy);
  pthread_mutex_unlock(&c->err_lock);
  return copy;
}

void host_clear_error(struct engine_host *h) {
  if (!h)
    return;
  struct host_ctx *c = ctx_of(h);
  pthread_mutex_lock(&c->err_lock);
  c->err[0] = '\0';
  pthread_mutex_unlock(&c->err_lock);
  if (tl_err_host == h) {
    tl_err_host = NULL;
    tl_err[0] = '\0';
  }
}

/* ---- configuration ---------------------------------------------------- */

static const char *json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "a mapping";
  case JSON_ARRAY:
    return "a list";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  case JSON_NULL:
    return "null";
  }
  return "a value";
}

/* A plugin reading an option with the wrong accessor is a bug in the plugin
 * (its schema and its code disagree); say so instead of silently using the
 * default. */
static json_t *cfg_get(const struct engine_host *h, const char *option, int want, const char *as) {
  if (!option)
    return NULL;
  json_t *v = json_object_get(ctx_of(h)->config, option);
  if (!v || json_is_null(v))
    return NULL;
  if ((int)json_typeof(v) == want || (want == JSON_TRUE && json_is_boolean(v)))
    return v;
  host_log(h, ENGINE_LOG_WARN, "option '%s' is %s, but the plugin reads it as %s; ignoring it",
           option, json_type_name(v), as);
  return NULL;
}

static const char *host_cfg_string(const struct engine_host *h, const char *option) {
  json_t *v = cfg_get(h, option, JSON_STRING, "a string");
  return v ? json_string_value(v) : NULL;
}

static int64_t host_cfg_int(const struct engine_host *h, const char *option, int64_t dflt) {
  json_t *v = cfg_get(h, option, JSON_INTEGER, "an integer");
  return v ? (int64_t)json_integer_value(v) : dflt;
}

static int host_cfg_bool(const struct engine_host *h, const char *option, int dflt) {
  json_t *v = cfg_get(h, option, JSON_TRUE, "a boolean");
  return v ? json_is_true(v) : dflt;
}

/* STRING_LIST options are arrays after normalisation, but a plain string
 * option read as a list is a one-element list (what YAML authors expect). */
static json_t *cfg_list(const struct engine_host *h, const char *option) {
  if (!option)
    return NULL;
  json_t *v = json_object_get(ctx_of(h)->config, option);
  if (!v || json_is_null(v))
    return NULL;
  if (json_is_array(v) || json_is_string(v))
    return v;
  host_log(h, ENGINE_LOG_WARN, "option '%s' is %s, but the plugin reads it as a list; ignoring it",
           option, json_type_name(v));
  return NULL;
}

static size_t host_cfg_list_count(const struct engine_host *h, const char *option) {
  json_t *v = cfg_list(h, option);
  if (!v)
    return 0;
  return json_is_string(v) ? 1 : json_array_size(v);
}

static const char *host_cfg_list_item(const struct engine_host *h, const char *option, size_t i) {
  json_t *v = cfg_list(h, option);
  if (!v)
    return NULL;
  if (json_is_string(v))
    return i == 0 ? json_string_value(v) : NULL;
  json_t *item = json_array_get(v, i);
  if (item && !json_is_string(item)) {
    host_log(h, ENGINE_LOG_WARN, "option '%s' item %zu is %s, expected a string", option, i,
             json_type_name(item));
    return NULL;
  }
  return item ? json_string_value(item) : NULL;
}

/* ---- secrets ---------------------------------------------------------- */

/* Secret buffers are wiped over their whole allocation, whatever length the
 * caller passes back, so a wrong len can never leave secret bytes behind. */
static void host_secret_free(char *buf, size_t len) {
  (void)len;
  if (buf)
    secret_wipe_free(buf, malloc_usable_size(buf));
}

/* Resolution itself is shared with the core (util/secret.c); the host adds
 * the option name. Messages name the option, the variable or the file, never
 * the value: a literal written where a reference was expected may well be
 * the secret. */
static int host_secret(const struct engine_host *h, const char *option, char **out,
                       size_t *out_len) {
  if (!out || !out_len || !option) {
    host_set_error(h, "secret: called without an option name or output buffer");
    return ENGINE_ERROR;
  }
  *out = NULL;
  *out_len = 0;
  json_t *v = json_object_get(ctx_of(h)->config, option);
  if (!v || json_is_null(v)) {
    host_set_error(h, "option '%s' is not set (expected a reference 'env:NAME' or 'file:/path')",
                   option);
    return ENGINE_ERROR;
  }
  if (!json_is_string(v)) {
    host_set_error(h, "option '%s' is %s, expected a reference 'env:NAME' or 'file:/path'", option,
                   json_type_name(v));
    return ENGINE_ERROR;
  }
  char *err = NULL;
  if (secret_resolve(json_string_value(v), out, out_len, &err) != 0) {
    host_set_error(h, "option '%s': %s", option, err ? err : "unable to resolve the secret");
    free(err);
    *out = NULL;
    *out_len = 0;
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

/* ---- child processes -------------------------------------------------- */

struct host_child {
  struct engine_child pub; /* first: the plugin's pointer is ours */
  char *file;              /* for messages */
  pthread_mutex_t lock;    /* reaped/status vs. child_kill, and stderr finishing */
  int reaped;
  int status;
  /* stderr capture: the tail of the output, in a ring */
  int err_fd;  /* parent end of the stderr pipe, owned by the drain thread */
  int stop_fd; /* eventfd: "the child was reaped, finish up" */
  int drain_running;
  pthread_t drain;
  char *ring;
  size_t ring_pos;     /* next write position */
  uint64_t ring_total; /* bytes seen */
  char *err_text;      /* finalised capture */
};

static void ring_append(struct host_child *c, const char *buf, size_t n) {
  c->ring_total += n;
  /* callers read at most a 4 KiB buffer at a time, far below the ring size;
   * keep only the tail should that ever change */
  if (n > STDERR_CAPTURE_MAX) {
    buf += n - STDERR_CAPTURE_MAX;
    n = STDERR_CAPTURE_MAX;
  }
  size_t first = STDERR_CAPTURE_MAX - c->ring_pos;
  if (first > n)
    first = n;
  memcpy(c->ring + c->ring_pos, buf, first);
  memcpy(c->ring, buf + first, n - first);
  c->ring_pos = (c->ring_pos + n) % STDERR_CAPTURE_MAX;
}

/* Read whatever is already in the pipe without waiting for writers that
 * outlive the child (a daemonised grandchild holding stderr open). */
static void drain_remaining(struct host_child *c, char *buf, size_t size) {
  int fl = fcntl(c->err_fd, F_GETFL);
  if (fl < 0 || fcntl(c->err_fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return;
  size_t taken = 0;
  while (taken < STDERR_FINAL_DRAIN_MAX) {
    ssize_t r = read(c->err_fd, buf, size);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return;
    ring_append(c, buf, (size_t)r);
    taken += (size_t)r;
  }
}

/* Keeps reading the child's stderr so it can never block on a full pipe,
 * however much it writes; only the last STDERR_CAPTURE_MAX bytes are kept. */
static void *drain_main(void *arg) {
  struct host_child *c = arg;
  char buf[4096];
  struct pollfd pfd[2] = {{.fd = c->err_fd, .events = POLLIN},
                          {.fd = c->stop_fd, .events = POLLIN}};
  for (;;) {
    int n = poll(pfd, 2, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (pfd[1].revents) {
      drain_remaining(c, buf, sizeof buf);
      break;
    }
    if (pfd[0].revents) {
      ssize_t r = read(c->err_fd, buf, sizeof buf);
      if (r < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (r <= 0)
        break;
      ring_append(c, buf, (size_t)r);
    }
  }
  return NULL;
}

/* Stops the drain thread (the child is gone) and turns the ring into the
 * message text. Called with c->lock held. */
static void finish_stderr(struct host_child *c) {
  if (c->err_text)
    return;
  if (c->drain_running) {
    uint64_t one = 1;
    ssize_t w;
    do
      w = write(c->stop_fd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    pthread_join(c->drain, NULL);
    c->drain_running = 0;
  }
  if (!c->ring) {
    c->err_text = xstrdup("");
    return;
  }
  static const char cut[] = "[...] ";
  size_t kept = c->ring_total < STDERR_CAPTURE_MAX ? (size_t)c->ring_total : STDERR_CAPTURE_MAX;
  int truncated = c->ring_total > STDERR_CAPTURE_MAX;
  char *t = xmalloc(kept + sizeof cut);
  size_t len = 0;
  if (truncated) {
    memcpy(t, cut, sizeof cut - 1);
    len = sizeof cut - 1;
    memcpy(t + len, c->ring + c->ring_pos, STDERR_CAPTURE_MAX - c->ring_pos);
    len += STDERR_CAPTURE_MAX - c->ring_pos;
    memcpy(t + len, c->ring, c->ring_pos);
    len += c->ring_pos;
  } else {
    memcpy(t, c->ring, kept);
    len = kept;
  }
  /* Callers embed this in a sentence; trailing newlines only get in the way. */
  while (len > 0 &&
         (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' ' || t[len - 1] == '\t'))
    len--;
  t[len] = '\0';
  c->err_text = t;
  free(c->ring);
  c->ring = NULL;
}

static void close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

static int stdio_valid(enum engine_stdio m) {
  return m == ENGINE_STDIO_NULL || m == ENGINE_STDIO_PIPE || m == ENGINE_STDIO_INHERIT;
}

static size_t env_name_len(const char *entry) {
  const char *eq = strchr(entry, '=');
  return eq ? (size_t)(eq - entry) : 0;
}

/* What a child gets of the engine's own environment: what programs need to
 * find things, speak the user's language and write temporary files. The
 * engine's environment also holds secrets (the repository passphrase and
 * sink credentials as env: references, PGPASSWORD, tokens); none of it goes
 * to a child unless the plugin passes it in the spawn's env. */
static const char *const env_allowed[] = {"PATH",   "HOME", "USER",     "LOGNAME", "LANG",
                                          "TMPDIR", "TZ",   "LANGUAGE", NULL};

static int env_is_allowed(const char *entry) {
  size_t nl = env_name_len(entry);
  if (nl == 0)
    return 0;
  if (nl > 3 && strncmp(entry, "LC_", 3) == 0)
    return 1;
  for (size_t i = 0; env_allowed[i]; i++)
    if (strlen(env_allowed[i]) == nl && strncmp(entry, env_allowed[i], nl) == 0)
      return 1;
  return 0;
}

/* The allowed part of the current environment with the spawn's entries
 * overriding variables of the same name (a later spawn entry overrides an
 * earlier one). Only the pointer array is allocated; the strings stay the
 * caller's. */
static char **build_env(const char *const *extra) {
  size_t n_env = 0, n_extra = 0;
  while (environ && environ[n_env])
    n_env++;
  while (extra && extra[n_extra])
    n_extra++;
  char **env = xcalloc(n_env + n_extra + 1, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < n_env; i++) {
    if (!env_is_allowed(environ[i]))
      continue;
    size_t nl = env_name_len(environ[i]);
    int overridden = 0;
    for (size_t j = 0; j < n_extra && !overridden; j++)
      overridden = env_name_len(extra[j]) == nl && strncmp(extra[j], environ[i], nl) == 0;
    if (!overridden)
      env[k++] = environ[i];
  }
  for (size_t j = 0; j < n_extra; j++) {
    size_t nl = env_name_len(extra[j]);
    int later = 0;
    for (size_t l = j + 1; l < n_extra && !later; l++)
      later = env_name_len(extra[l]) == nl && strncmp(extra[l], extra[j], nl) == 0;
    if (!later)
      env[k++] = (char *)extra[j];
  }
  env[k] = NULL;
  return env;
}

static int spawn_fail(const struct engine_host *h, const char *file, const char *what, int err) {
  host_set_error(h, "unable to start '%s': %s: %s", file, what, strerror(err));
  return ENGINE_ERROR;
}

/* Sets up the child's end of one standard stream. pipefd[0] is the read
 * end; the child reads stdin from it and writes stdout/stderr to pipefd[1]. */
static int setup_stdio(posix_spawn_file_actions_t *fa, int fd, enum engine_stdio mode,
                       int pipefd[2]) {
  if (mode == ENGINE_STDIO_INHERIT)
    return 0;
  if (mode == ENGINE_STDIO_NULL)
    return posix_spawn_file_actions_addopen(fa, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
  if (pipe2(pipefd, O_CLOEXEC) != 0)
    return errno;
  /* dup2 clears FD_CLOEXEC on the child's copy; the originals close on exec. */
  return posix_spawn_file_actions_adddup2(fa, fd == 0 ? pipefd[0] : pipefd[1], fd);
}

/* Hands pass_fds[i] to the child as descriptor 3 + i and closes every
 * other descriptor above 2 there (with a glibc older than 2.34, only those
 * with FD_CLOEXEC are). The descriptors are first copied above both every
 * source and every target, so that no dup2 overwrites a source still to be
 * moved; the copies are closed again. */
static int setup_pass_fds(posix_spawn_file_actions_t *fa, const int *fds, size_t n) {
  int base = 3 + (int)n;
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= base)
      base = fds[i] + 1;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++)
    rc = posix_spawn_file_actions_adddup2(fa, fds[i], base + (int)i);
  for (size_t i = 0; i < n && !rc; i++)
    rc = posix_spawn_file_actions_adddup2(fa, base + (int)i, 3 + (int)i);
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
  if (!rc)
    rc = posix_spawn_file_actions_addclosefrom_np(fa, 3 + (int)n);
#else
  for (size_t i = 0; i < n && !rc; i++)
    rc = posix_spawn_file_actions_addclose(fa, base + (int)i);
#endif
  return rc;
}

/* pass_fds as the plugin filled them, or NULL/0 for a pre-1.2 structure.
 * Returns -1 (with the error set) when they are unusable. */
static int pass_fds_of(const struct engine_host *h, const struct engine_spawn_opts *o,
                       const int **fds, size_t *n) {
  *fds = NULL;
  *n = 0;
  if (o->struct_size < SPAWN_OPTS_V1_2_SIZE || o->n_pass_fds == 0)
    return 0;
  if (!o->pass_fds || o->n_pass_fds > SPAWN_PASS_FDS_MAX) {
    host_set_error(h, "spawn of '%s': pass_fds must list between 1 and %d descriptors (got %zu%s)",
                   o->file, SPAWN_PASS_FDS_MAX, o->n_pass_fds, o->pass_fds ? "" : " and no array");
    return -1;
  }
  for (size_t i = 0; i < o->n_pass_fds; i++) {
    int fd = o->pass_fds[i];
    if (fd < 3) {
      host_set_error(h,
                     "spawn of '%s': pass_fds[%zu] is %d; standard streams are set with the "
                     "stdio modes, pass_fds takes descriptors above 2",
                     o->file, i, fd);
      return -1;
    }
    if (fcntl(fd, F_GETFD) < 0) {
      host_set_error(h, "spawn of '%s': pass_fds[%zu] (descriptor %d) is not open: %s", o->file, i,
                     fd, strerror(errno));
      return -1;
    }
  }
  *fds = o->pass_fds;
  *n = o->n_pass_fds;
  return 0;
}

static int host_spawn(const struct engine_host *h, const struct engine_spawn_opts *o,
                      struct engine_child **out) {
  if (out)
    *out = NULL;
  if (!o || !out) {
    host_set_error(h, "spawn: called without options or output pointer");
    return ENGINE_ERROR;
  }
  if (o->struct_size < SPAWN_OPTS_V1_0_SIZE) {
    host_set_error(h,
                   "spawn: options structure of %u bytes is smaller than the %zu bytes of ABI 1.0",
                   o->struct_size, (size_t)SPAWN_OPTS_V1_0_SIZE);
    return ENGINE_ERROR;
  }
  if (!o->file || !o->file[0] || !o->argv || !o->argv[0]) {
    host_set_error(h, "spawn: a program name and a non-empty argv are required");
    return ENGINE_ERROR;
  }
  if (!stdio_valid(o->stdin_mode) || !stdio_valid(o->stdout_mode) || !stdio_valid(o->stderr_mode)) {
    host_set_error(h, "spawn of '%s': unknown stdio mode (expected NULL, PIPE or INHERIT)",
                   o->file);
    return ENGINE_ERROR;
  }
  for (size_t i = 0; o->env && o->env[i]; i++)
    if (env_name_len(o->env[i]) == 0) {
      /* The entry itself is not shown: env is where secrets travel. */
      host_set_error(h, "spawn of '%s': environment entry %zu is not of the form NAME=VALUE",
                     o->file, i);
      return ENGINE_ERROR;
    }
  const int *pass_fds;
  size_t n_pass_fds;
  if (pass_fds_of(h, o, &pass_fds, &n_pass_fds) != 0)
    return ENGINE_ERROR;
  /* A plugin that knows ABI 1.2 knows that only pass_fds reach the child;
   * an older one may rely on inheriting descriptors without FD_CLOEXEC. */
  int close_others = o->struct_size >= SPAWN_OPTS_V1_2_SIZE;

  struct host_child *c = xcalloc(1, sizeof *c);
  c->pub.pid = -1;
  c->pub.stdin_fd = c->pub.stdout_fd = c->pub.stderr_fd = -1;
  c->err_fd = c->stop_fd = -1;
  c->file = xstrdup(o->file);
  pthread_mutex_init(&c->lock, NULL);

  int in_p[2] = {-1, -1}, out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int rc = posix_spawn_file_actions_init(&fa);
  if (rc) {
    spawn_fail(h, o->file, "posix_spawn_file_actions_init", rc);
    goto fail_early;
  }
  rc = posix_spawnattr_init(&attr);
  if (rc) {
    posix_spawn_file_actions_destroy(&fa);
    spawn_fail(h, o->file, "posix_spawnattr_init", rc);
    goto fail_early;
  }

  const char *step = "setting up standard input";
  rc = setup_stdio(&fa, 0, o->stdin_mode, in_p);
  if (!rc) {
    step = "setting up standard output";
    rc = setup_stdio(&fa, 1, o->stdout_mode, out_p);
  }
  if (!rc) {
    step = "setting up standard error";
    rc = setup_stdio(&fa, 2, o->stderr_mode, err_p);
  }
  if (!rc && close_others) {
    step = "handing descriptors to the child";
    rc = setup_pass_fds(&fa, pass_fds, n_pass_fds);
  }
  if (!rc && o->stderr_mode == ENGINE_STDIO_PIPE) {
    step = "creating the stderr capture";
    c->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (c->stop_fd < 0)
      rc = errno;
    else
      c->ring = xmalloc(STDERR_CAPTURE_MAX);
  }
  /* The child must not inherit the engine's blocked signals or ignored
   * dispositions (SIGPIPE is commonly ignored by servers, and ignored
   * dispositions survive exec). */
  if (!rc) {
    step = "setting the child's signal state";
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    rc = posix_spawnattr_setsigmask(&attr, &none);
    if (!rc)
      rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (!rc)
      rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  if (!rc) {
    step = NULL;
    char **env = build_env(o->env);
    pid_t pid;
    rc = posix_spawnp(&pid, o->file, &fa, &attr, (char *const *)o->argv, env);
    free(env);
    if (!rc)
      c->pub.pid = pid;
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  /* The child's ends belong to the child now (or to nobody on failure). */
  close_fd(&in_p[0]);
  close_fd(&out_p[1]);
  close_fd(&err_p[1]);
  if (rc) {
    if (step)
      spawn_fail(h, o->file, step, rc);
    else
      host_set_error(h, "unable to start '%s': %s", o->file, strerror(rc));
    close_fd(&in_p[1]);
    close_fd(&out_p[0]);
    close_fd(&err_p[0]);
    goto fail_early;
  }
  c->pub.stdin_fd = in_p[1];
  c->pub.stdout_fd = out_p[0];
  if (o->stderr_mode == ENGINE_STDIO_PIPE) {
    c->err_fd = err_p[0];
    rc = pthread_create(&c->drain, NULL, drain_main, c);
    if (rc) {
      /* Without a reader the child could block forever on stderr; do not
       * leave it running unsupervised. */
      host_set_error(h, "unable to start the stderr reader for '%s': %s", o->file, strerror(rc));
      kill(c->pub.pid, SIGKILL);
      pid_t r;
      do
        r = waitpid(c->pub.pid, NULL, 0);
      while (r < 0 && errno == EINTR);
      close_fd(&c->pub.stdin_fd);
      close_fd(&c->pub.stdout_fd);
      goto fail_early;
    }
    c->drain_running = 1;
  }
  *out = &c->pub;
  return ENGINE_OK;

fail_early:
  close_fd(&c->err_fd);
  close_fd(&c->stop_fd);
  free(c->ring);
  free(c->file);
  pthread_mutex_destroy(&c->lock);
  free(c);
  return ENGINE_ERROR;
}

/* Reaping is split in two so child_kill can never signal a recycled pid:
 * waitid(WNOWAIT) waits without reaping, then the reap happens under the
 * lock that child_kill also takes. */
static int host_child_wait(const struct engine_host *h, struct engine_child *child, int *status) {
  struct host_child *c = (struct host_child *)child;
  if (!c) {
    host_set_error(h, "child_wait: no child given");
    return ENGINE_ERROR;
  }
  pthread_mutex_lock(&c->lock);
  int reaped = c->reaped;
  pthread_mutex_unlock(&c->lock);
  if (!reaped) {
    siginfo_t si;
    for (;;) {
      memset(&si, 0, sizeof si);
      if (waitid(P_PID, (id_t)c->pub.pid, &si, WEXITED | WNOWAIT) == 0)
        break;
      if (errno == EINTR)
        continue;
      host_set_error(h, "unable to wait for '%s' (pid %d): %s", c->file, (int)c->pub.pid,
                     strerror(errno));
      return ENGINE_ERROR;
    }
  }
  pthread_mutex_lock(&c->lock);
  if (!c->reaped) {
    int st;
    pid_t r;
    do
      r = waitpid(c->pub.pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      int e = errno;
      pthread_mutex_unlock(&c->lock);
      host_set_error(h, "unable to reap '%s' (pid %d): %s", c->file, (int)c->pub.pid, strerror(e));
      return ENGINE_ERROR;
    }
    c->reaped = 1;
    c->status = st;
  }
  finish_stderr(c);
  if (status)
    *status = c->status;
  pthread_mutex_unlock(&c->lock);
  return ENGINE_OK;
}

static const char *host_child_stderr(const struct engine_host *h, struct engine_child *child) {
  (void)h;
  struct host_child *c = (struct host_child *)child;
  if (!c)
    return "";
  pthread_mutex_lock(&c->lock);
  const char *t = c->err_text ? c->err_text : "";
  pthread_mutex_unlock(&c->lock);
  return t;
}

static void host_child_kill(const struct engine_host *h, struct engine_child *child, int sig) {
  struct host_child *c = (struct host_child *)child;
  if (!c)
    return;
  pthread_mutex_lock(&c->lock);
  if (!c->reaped && kill(c->pub.pid, sig) != 0 && errno != ESRCH)
    host_log(h, ENGINE_LOG_WARN, "unable to send signal %d to '%s' (pid %d): %s", sig, c->file,
             (int)c->pub.pid, strerror(errno));
  pthread_mutex_unlock(&c->lock);
}

static void host_child_free(const struct engine_host *h, struct engine_child *child) {
  struct host_child *c = (struct host_child *)child;
  if (!c)
    return;
  pthread_mutex_lock(&c->lock);
  if (!c->reaped) {
    /* A zombie or an orphan is worse than a killed child: the plugin gave
     * up on it. */
    host_log(h, ENGINE_LOG_WARN, "'%s' (pid %d) was still running when released; killing it",
             c->file, (int)c->pub.pid);
    kill(c->pub.pid, SIGKILL);
    pid_t r;
    do
      r = waitpid(c->pub.pid, &c->status, 0);
    while (r < 0 && errno == EINTR);
    c->reaped = 1;
  }
  finish_stderr(c);
  pthread_mutex_unlock(&c->lock);
  close_fd(&c->pub.stdin_fd);
  close_fd(&c->pub.stdout_fd);
  close_fd(&c->err_fd);
  close_fd(&c->stop_fd);
  free(c->err_text);
  free(c->ring);
  free(c->file);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* ---- worker pool, time, cancellation, progress ------------------------ */

static int host_work_submit(const struct engine_host *h, void (*fn)(void *arg), void *arg,
                            struct engine_work **w) {
  if (!fn || !w) {
    host_set_error(h, "work_submit: called without a function or handle pointer");
    return ENGINE_ERROR;
  }
  struct pool_job *job = pool_job_submit(fn, arg);
  if (!job) {
    host_set_error(h, "unable to queue work on the engine's worker pool");
    return ENGINE_ERROR;
  }
  *w = (struct engine_work *)job;
  return ENGINE_OK;
}

static void host_work_wait(const struct engine_host *h, struct engine_work *w) {
  (void)h;
  if (w)
    pool_job_wait((struct pool_job *)w);
}

static int64_t host_now_ms(const struct engine_host *h) {
  (void)h;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int host_cancelled(const struct engine_host *h) {
  (void)h;
  return cancel_requested();
}

/* Sleeps in short slices so a cancellation is noticed within 100 ms. */
static int host_sleep_ms(const struct engine_host *h, int64_t ms) {
  int64_t deadline = host_now_ms(h) + (ms > 0 ? ms : 0);
  for (;;) {
    if (cancel_requested()) {
      host_set_error(h, "interrupted: the run is being cancelled");
      return ENGINE_ERROR;
    }
    int64_t left = deadline - host_now_ms(h);
    if (left <= 0)
      return ENGINE_OK;
    if (left > SLEEP_SLICE_MS)
      left = SLEEP_SLICE_MS;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* ---- HTTP: the shared client in core/net ---- */

static int host_http_request(const struct engine_host *h, const struct engine_http_request *req,
                             struct engine_http_response *resp) {
  (void)h;
  return http_request(req, resp);
}

static void host_http_response_free(struct engine_http_response *resp) {
  http_response_free(resp);
}

static char *host_http_header(const struct engine_http_response *resp, const char *name) {
  return http_header(resp, name);
}

static void host_progress_total_set(const struct engine_host *h, uint64_t bytes) {
  __atomic_store_n(&ctx_of(h)->progress_total, bytes, __ATOMIC_RELAXED);
}

uint64_t host_progress_total(const struct engine_host *h) {
  if (!h)
    return 0;
  return __atomic_load_n(&ctx_of(h)->progress_total, __ATOMIC_RELAXED);
}

/* ---- construction ----------------------------------------------------- */

struct engine_host *host_new(const char *instance_name, json_t *config) {
  struct host_ctx *c = xcalloc(1, sizeof *c);
  c->serial = __atomic_add_fetch(&g_host_serial, 1, __ATOMIC_RELAXED);
  c->name = xstrdup(instance_name ? instance_name : "plugin");
  c->config = config ? json_incref(config) : json_object();
  if (!c->config) {
    log_error("out of memory creating the configuration of '%s'", c->name);
    abort();
  }
  pthread_mutex_init(&c->err_lock, NULL);
  struct engine_host *t = &c->table;
  t->abi_major = ENGINE_ABI_MAJOR;
  t->abi_minor = ENGINE_ABI_MINOR;
  t->struct_size = sizeof *t;
  t->ctx = c;
  t->log = host_log;
  t->set_error = host_set_error;
  t->cfg_string = host_cfg_string;
  t->cfg_int = host_cfg_int;
  t->cfg_bool = host_cfg_bool;
  t->cfg_list_count = host_cfg_list_count;
  t->cfg_list_item = host_cfg_list_item;
  t->secret = host_secret;
  t->secret_free = host_secret_free;
  t->spawn = host_spawn;
  t->child_wait = host_child_wait;
  t->child_stderr = host_child_stderr;
  t->child_kill = host_child_kill;
  t->child_free = host_child_free;
  t->work_submit = host_work_submit;
  t->work_wait = host_work_wait;
  t->now_ms = host_now_ms;
  t->sleep_ms = host_sleep_ms;
  t->cancelled = host_cancelled;
  t->progress_total = host_progress_total_set;
  t->http_request = host_http_request;
  t->http_response_free = host_http_response_free;
  t->http_header = host_http_header;
  return t;
}

void host_free(struct engine_host *h) {
  if (!h)
    return;
  if (tl_err_host == h) /* a later host at the same address must not inherit it */
    tl_err_host = NULL;
  struct host_ctx *c = ctx_of(h);
  json_decref(c->config);
  pthread_mutex_destroy(&c->err_lock);
  free(c->name);
  free(c);
}

int plugin_instance_new(const struct engine_plugin *p, const char *name, json_t *config,
                        struct plugin_instance **out, char **err) {
  *out = NULL;
  if (err)
    *err = NULL;
  const char *kind = plugin_kind_name(p->kind);
  char *label = xasprintf("%s %s", kind, name);
  struct engine_host *h = host_new(label, config);
  free(label);
  void *inst = NULL;
  int rc = p->create(h, &inst);
  if (rc != ENGINE_OK) {
    const char *msg = host_last_error(h);
    if (err)
      *err =
          xasprintf("%s '%s' (type %s): %s", kind, name, p->name, msg[0] ? msg : "create failed");
    host_free(h);
    return -1;
  }
  struct plugin_instance *pi = xcalloc(1, sizeof *pi);
  pi->plugin = p;
  pi->host = h;
  pi->inst = inst;
  pi->name = xstrdup(name);
  *out = pi;
  return 0;
}

void plugin_instance_free(struct plugin_instance *pi) {
  if (!pi)
    return;
  if (pi->plugin->destroy)
    pi->plugin->destroy(pi->inst);
  host_free(pi->host);
  free(pi->name);
  free(pi);
}

void host_set_log_level(int lvl) {
  if (lvl < (int)ENGINE_LOG_ERROR)
    lvl = ENGINE_LOG_ERROR;
  if (lvl > (int)ENGINE_LOG_DEBUG)
    lvl = ENGINE_LOG_DEBUG;
  log_set_level((enum engine_log_level)lvl);
}

int host_get_log_level(void) {
  return (int)log_get_level();
}
