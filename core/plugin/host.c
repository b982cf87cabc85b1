/* The host API table handed to plugin instances: logging, error messages,
 * configuration accessors over the validated `with:` object, secret
 * resolution, the worker pool, time and cancellation, and HTTP; child
 * processes are in spawn.c. Everything a plugin may ask of the engine goes
 * through here, so the ABI never exposes libuv or any other core structure. */
#include "plugin/host.h"
#include "net/http.h"

#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin/host_progress.h"
#include "plugin/loader.h"
#include "plugin/spawn.h"
#include "util/log.h"
#include "util/cancel.h"
#include "util/pool.h"
#include "util/secret.h"

#define HOST_ERR_MAX 4096
#define SLEEP_SLICE_MS 100

/* engine_http_request and engine_http_response as ABI 1.1 defined them. */
#define HTTP_REQUEST_V1_1_SIZE ENGINE_FIELD_END(struct engine_http_request, max_body)
#define HTTP_RESPONSE_V1_1_SIZE ENGINE_FIELD_END(struct engine_http_response, error)

struct host_ctx {
  struct engine_host table;
  char *name;
  json_t *config;
  pthread_mutex_t err_lock;
  uint64_t serial; /* unique per host, see tl_err_serial */
  char err[HOST_ERR_MAX];
  uint64_t progress_total;   /* accessed with __atomic builtins */
  uint32_t plugin_abi_minor; /* the instance's plugin's: the layout of what it hands over */
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

/* The request must be at least the 1.1 structure. The response is filled
 * as far as both sides know it: a plugin of ABI 1.5 or later says how far in
 * resp->struct_size, an older one has exactly the 1.1 fields. */
static int host_http_request(const struct engine_host *h, const struct engine_http_request *req,
                             struct engine_http_response *resp) {
  size_t size = HTTP_RESPONSE_V1_1_SIZE;
  if (ctx_of(h)->plugin_abi_minor >= 5) {
    if (resp->struct_size < ENGINE_FIELD_END(struct engine_http_response, struct_size)) {
      host_set_error(h,
                     "http_request: the response's struct_size (%u) is not set; set it to "
                     "sizeof(struct engine_http_response)",
                     resp->struct_size);
      memset(resp, 0, HTTP_RESPONSE_V1_1_SIZE);
      snprintf(resp->error, sizeof resp->error, "the response's struct_size is not set");
      return ENGINE_ERROR;
    }
    size = resp->struct_size < sizeof *resp ? resp->struct_size : sizeof *resp;
  }
  struct engine_http_response full;
  int rc;
  if (req == NULL || req->struct_size < HTTP_REQUEST_V1_1_SIZE) {
    memset(&full, 0, sizeof full);
    snprintf(full.error, sizeof full.error,
             "the request structure (%u bytes) is smaller than the %zu bytes of ABI 1.1",
             req != NULL ? req->struct_size : 0, (size_t)HTTP_REQUEST_V1_1_SIZE);
    host_set_error(h, "http_request: %s", full.error);
    rc = ENGINE_ERROR;
  } else {
    /* fields a plugin of an older minor does not have are zero here (ABI
     * 1.7 added client_cert, client_key and insecure) */
    struct engine_http_request full_req;
    memset(&full_req, 0, sizeof full_req);
    memcpy(&full_req, req, req->struct_size < sizeof full_req ? req->struct_size : sizeof full_req);
    full_req.struct_size = (uint32_t)sizeof full_req;
    rc = http_request(&full_req, &full);
  }
  full.struct_size = (uint32_t)size;
  memcpy(resp, &full, size);
  return rc;
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
  c->plugin_abi_minor = ENGINE_ABI_MINOR;
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
  t->spawn = spawn_child;
  t->child_wait = spawn_wait;
  t->child_stderr = spawn_stderr;
  t->child_kill = spawn_kill;
  t->child_free = spawn_free;
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
  ctx_of(h)->plugin_abi_minor = p->abi_minor;
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
