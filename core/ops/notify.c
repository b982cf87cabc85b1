/* Webhook notifications (see notify.h). */
#include "ops/notify.h"

#include <errno.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "net/http.h"
#include "util/encoding.h"
#include "util/log.h"
#include "util/secret.h"
#include "util/sysinfo.h"

#define NOTIFY_FIRST_BACKOFF_MS 500
#define NOTIFY_CONNECT_TIMEOUT_MS 10000
/* An answer's body is not used; only so much of it is read. */
#define NOTIFY_MAX_BODY (64 * 1024)

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms) {
  if (ms <= 0)
    return;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

json_t *notify_body(const struct pipeline *p, const char *event) {
  char host[SYS_NAME_MAX];
  sys_hostname(host);
  char *t = iso_time((int64_t)time(NULL));
  json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:s}", "event", event, "pipeline", p->name, "host",
                        host, "time", t, "engine_version", ENGINE_VERSION);
  free(t);
  return b;
}

static int entry_wants(const struct pipeline_notify *n, const char *event) {
  for (size_t i = 0; i < n->n_on; i++)
    if (strcmp(n->on[i], event) == 0)
      return 1;
  return 0;
}

int notify_wanted(const struct pipeline *p, const char *event) {
  for (size_t i = 0; i < p->n_notify; i++)
    if (entry_wants(&p->notify[i], event))
      return 1;
  return 0;
}

/* The webhook without its path and query, which may hold a token (Slack's
 * and others' URLs are credentials): what messages show. */
static char *url_shown(const char *url) {
  const char *sep = strstr(url, "://");
  size_t scheme = sep ? (size_t)(sep + 3 - url) : 0;
  const char *h = url + scheme;
  size_t n = strcspn(h, "/?#");
  const char *at = memchr(h, '@', n); /* user:password@ */
  if (at) {
    n -= (size_t)(at + 1 - h);
    h = at + 1;
  }
  return xasprintf("%.*s%.*s", (int)scheme, url, (int)n, h);
}

/* "Name: value" lines of the entry's headers, secrets resolved; NULL on
 * failure with *err. Free with free_headers (wipes them). */
static char **build_headers(const struct pipeline_notify *n, char **err) {
  char **v = xcalloc(n->n_headers + 3, sizeof(char *));
  size_t k = 0;
  v[k++] = xstrdup("Content-Type: application/json");
  v[k++] = xstrdup("User-Agent: engine/" ENGINE_VERSION);
  for (size_t i = 0; i < n->n_headers; i++) {
    const struct pipeline_notify_header *h = &n->headers[i];
    if (!h->secret || (strncmp(h->value, "env:", 4) != 0 && strncmp(h->value, "file:", 5) != 0)) {
      v[k++] = xasprintf("%s: %s", h->name, h->value);
      continue;
    }
    char *val = NULL, *e = NULL;
    size_t len = 0;
    if (secret_resolve(h->value, &val, &len, &e) != 0) {
      *err = xasprintf("header %s: %s", h->name, e);
      free(e);
      v[k] = NULL;
      for (size_t j = 0; j < k; j++)
        free(v[j]);
      free(v);
      return NULL;
    }
    if (strpbrk(val, "\r\n")) {
      *err = xasprintf("header %s: the value of %s holds a line break", h->name, h->value);
      secret_wipe_free(val, len);
      for (size_t j = 0; j < k; j++)
        free(v[j]);
      free(v);
      return NULL;
    }
    v[k++] = xasprintf("%s: %s", h->name, val);
    secret_wipe_free(val, len);
  }
  v[k] = NULL;
  return v;
}

static void free_headers(char **v) {
  for (size_t i = 0; v && v[i]; i++)
    secret_wipe_free(v[i], strlen(v[i]));
  free(v);
}

/* One webhook: POST text, retried with backoff within the entry's timeout.
 * Returns 1 when accepted (2xx). */
static int send_one(const struct pipeline *p, size_t idx, const char *event, const char *text) {
  const struct pipeline_notify *n = &p->notify[idx];
  char *shown = url_shown(n->webhook);
  char *err = NULL;
  char **headers = build_headers(n, &err);
  if (!headers) {
    log_warn("notify[%zu] (%s): '%s' not sent: %s", idx, shown, event, err);
    free(err);
    free(shown);
    return 0;
  }
  int64_t deadline = now_ms() + n->timeout_ms, backoff = NOTIFY_FIRST_BACKOFF_MS;
  int accepted = 0;
  char last[300] = "no attempt within the timeout";
  for (int attempt = 0; attempt <= n->retries; attempt++) {
    int64_t left = deadline - now_ms();
    if (left < 100)
      break;
    struct engine_http_request req = {
        .struct_size = sizeof(req),
        .method = "POST",
        .url = n->webhook,
        .headers = (const char *const *)headers,
        .body = text,
        .body_len = strlen(text),
        .timeout_ms = left,
        .connect_timeout_ms = left < NOTIFY_CONNECT_TIMEOUT_MS ? left : NOTIFY_CONNECT_TIMEOUT_MS,
        .max_retries = 0,
        .max_body = NOTIFY_MAX_BODY};
    struct engine_http_response resp;
    memset(&resp, 0, sizeof(resp));
    resp.struct_size = sizeof(resp);
    int rc = http_request(&req, &resp);
    long status = resp.status;
    if (rc == ENGINE_OK && status >= 200 && status < 300) {
      accepted = 1;
      log_info("notify[%zu] (%s): '%s' sent (HTTP %ld, attempt %d)", idx, shown, event, status,
               attempt + 1);
    } else if (rc == ENGINE_OK) {
      snprintf(last, sizeof(last), "HTTP status %ld", status);
    } else {
      snprintf(last, sizeof(last), "%s", resp.error[0] ? resp.error : "no response");
    }
    http_response_free(&resp);
    if (accepted || (rc == ENGINE_OK && !engine_http_retryable(status)))
      break;
    if (attempt == n->retries)
      break;
    /* full jitter between half the backoff and the backoff */
    uint32_t rnd = 0;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    int64_t pause = backoff / 2 + (int64_t)(rnd % (uint32_t)(backoff / 2 + 1));
    left = deadline - now_ms();
    sleep_ms(pause < left ? pause : left);
    backoff *= 2;
  }
  if (!accepted)
    log_warn("notify[%zu] (%s): '%s' not delivered: %s (retries and timeout: notify[%zu].retries, "
             ".timeout)",
             idx, shown, event, last, idx);
  free_headers(headers);
  free(shown);
  return accepted;
}

static int send_where(const struct pipeline *p, const char *event, json_t *body,
                      int (*want)(const struct pipeline_notify *n, void *ud), void *ud) {
  int accepted = 0;
  char *text = NULL;
  for (size_t i = 0; i < p->n_notify; i++) {
    if (!entry_wants(&p->notify[i], event) || (want && !want(&p->notify[i], ud)))
      continue;
    if (!text) {
      json_object_set_new(body, "event", json_string(event));
      text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
      if (!text)
        die_oom();
    }
    accepted += send_one(p, i, event, text);
  }
  free(text);
  return accepted;
}

int notify_send(const struct pipeline *p, const char *event, json_t *body) {
  return send_where(p, event, body, NULL, NULL);
}

static int want_streak(const struct pipeline_notify *n, void *ud) {
  return n->consecutive_failures == *(int *)ud;
}

int notify_consecutive_failures(const struct pipeline *p, int failures, json_t *body) {
  json_object_set_new(body, "consecutive_failures", json_integer(failures));
  return send_where(p, "consecutive_failures", body, want_streak, &failures);
}

struct storage_want {
  int used;
  int threshold; /* the entry being matched, for its body */
};

static int want_exact_threshold(const struct pipeline_notify *n, void *ud) {
  struct storage_want *w = ud;
  return n->storage_threshold == w->threshold;
}

/* statvfs of path, or of its nearest existing parent (a sink whose
 * directory the first run creates). */
static int fs_usage(const char *path, struct statvfs *st) {
  char *p = xstrdup(path);
  int rc = -1;
  for (;;) {
    if (statvfs(p, st) == 0) {
      rc = 0;
      break;
    }
    char *slash = strrchr(p, '/');
    if (!slash || slash == p) {
      rc = statvfs("/", st);
      break;
    }
    *slash = '\0';
  }
  free(p);
  return rc;
}

int notify_storage_low(const struct pipeline *p, json_t *body) {
  if (!notify_wanted(p, "storage_low"))
    return 0;
  int accepted = 0;
  for (size_t i = 0; i < p->n_sinks; i++) {
    const struct pipeline_plugin_cfg *s = &p->sinks[i];
    const char *path = s->type && strcmp(s->type, "local") == 0
                           ? json_string_value(json_object_get(s->with, "path"))
                           : NULL;
    struct statvfs st;
    if (!path || fs_usage(path, &st) != 0 || st.f_blocks == 0)
      continue;
    /* as df(1): used / (used + available to unprivileged users), rounded up */
    unsigned long long used = (unsigned long long)(st.f_blocks - st.f_bfree) * st.f_frsize;
    unsigned long long avail = (unsigned long long)st.f_bavail * st.f_frsize;
    int pct = used + avail ? (int)((used * 100 + used + avail - 1) / (used + avail)) : 0;
    /* each distinct threshold reached gets its own body */
    for (size_t k = 0; k < p->n_notify; k++) {
      const struct pipeline_notify *n = &p->notify[k];
      if (!entry_wants(n, "storage_low") || pct < n->storage_threshold)
        continue;
      int seen = 0;
      for (size_t j = 0; j < k && !seen; j++)
        seen = entry_wants(&p->notify[j], "storage_low") &&
               p->notify[j].storage_threshold == n->storage_threshold;
      if (seen)
        continue;
      json_t *b = json_deep_copy(body);
      json_object_set_new(b, "sink", json_string(s->name));
      json_object_set_new(b, "path", json_string(path));
      json_object_set_new(b, "used_percent", json_integer(pct));
      json_object_set_new(b, "threshold_percent", json_integer(n->storage_threshold));
      json_object_set_new(b, "free_bytes", json_integer((json_int_t)avail));
      json_object_set_new(
          b, "total_bytes",
          json_integer((json_int_t)((unsigned long long)st.f_blocks * st.f_frsize)));
      log_warn("sink '%s' (%s): its file system is %d%% full (notify storage_threshold %d%%)",
               s->name, path, pct, n->storage_threshold);
      struct storage_want w = {pct, n->storage_threshold};
      accepted += send_where(p, "storage_low", b, want_exact_threshold, &w);
      json_decref(b);
    }
  }
  return accepted;
}
