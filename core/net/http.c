/* Shared HTTP client (see http.h).
 *
 * Threads: callers (pool threads running sink calls, or the main thread)
 * build a transfer, queue it and sleep on its condition variable. The HTTP
 * thread owns the uv loop and the curl multi handle: it adds queued easy
 * handles, reacts to socket readiness and timeouts, and completes transfers.
 * Retries happen in the caller's thread (backoff sleeps never block the
 * loop), each attempt a fresh transfer on the shared connection cache. */
#include "net/http.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "util/log.h"
#include "util/cancel.h"

#define DEFAULT_MAX_BODY (256ull * 1024 * 1024)

struct xfer {
  CURL *easy;
  struct curl_slist *hdrs;
  const struct engine_http_request *req;
  /* request body */
  const char *up;
  size_t up_len, up_off;
  /* response */
  char *body;
  size_t body_len, body_cap;
  char *headers;
  size_t headers_len, headers_cap;
  int too_big, aborted;
  /* receiving paused (http_pause_current); serial names it to http_resume */
  uint64_t serial;
  int pause_req;
  /* completion */
  CURLcode result;
  long status;
  int done;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct xfer *next;
};

struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static uv_loop_t g_loop;
static uv_async_t g_wakeup;
static uv_timer_t g_timer;
static uv_thread_t g_thread;
static CURLM *g_multi;
static pthread_mutex_t g_qlock = PTHREAD_MUTEX_INITIALIZER;
static struct xfer *g_queue;
static int g_stopping, g_started, g_max_parallel = 8;
/* Paused transfers: the HTTP thread's own list; resumes asked for by other
 * threads wait in g_resume (under g_qlock) for it. */
static struct xfer **g_paused;
static size_t g_n_paused, g_cap_paused;
static uint64_t *g_resume;
static size_t g_n_resume, g_cap_resume;
static uint64_t g_serial;
static _Thread_local struct xfer *t_current; /* whose body the HTTP thread is handing over */

void http_set_max_parallel(int n) {
  if (n > 0)
    g_max_parallel = n;
}

static void finish(struct xfer *x, CURLcode rc) {
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
  pthread_mutex_lock(&x->mu);
  x->result = rc;
  x->done = 1;
  pthread_cond_signal(&x->cv);
  pthread_mutex_unlock(&x->mu);
}

static void unlist_paused(const struct xfer *x) {
  for (size_t i = 0; i < g_n_paused; i++)
    if (g_paused[i] == x) {
      g_paused[i] = g_paused[--g_n_paused];
      return;
    }
}

static void check_done(void) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(g_multi, &left))) {
    if (m->msg != CURLMSG_DONE)
      continue;
    struct xfer *x = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    CURLcode rc = m->data.result;
    curl_multi_remove_handle(g_multi, m->easy_handle);
    unlist_paused(x);
    finish(x, rc);
  }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  struct sock_ctx *s = p->data;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  int running;
  curl_multi_socket_action(g_multi, s->fd, flags, &running);
  /* Acknowledge what was just read at once. A server that sends a reply's
   * headers and body in two writes with Nagle's algorithm on (radosgw's
   * default) holds the body until the headers are acknowledged, and Linux
   * delays that acknowledgement by up to 40 ms in request/response
   * traffic: every small GET took ~44 ms (a restore's first dozen requests
   * one after another, 0.45 s). TCP_QUICKACK is not sticky, hence once per
   * read (a system call per readiness, a few thousand per GiB). */
  if (status >= 0 && (events & UV_READABLE)) {
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
  }
  check_done();
}

static void on_poll_close(uv_handle_t *h) {
  free(h->data);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)e;
  (void)userp;
  struct sock_ctx *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      uv_poll_stop(&s->poll);
      uv_close((uv_handle_t *)&s->poll, on_poll_close);
      curl_multi_assign(g_multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = xcalloc(1, sizeof(*s));
    s->fd = fd;
    uv_poll_init_socket(&g_loop, &s->poll, fd);
    s->poll.data = s;
    curl_multi_assign(g_multi, fd, s);
  }
  int ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
    ev |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
    ev |= UV_WRITABLE;
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *t) {
  (void)t;
  int running;
  curl_multi_socket_action(g_multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done();
}

static int timer_cb(CURLM *m, long ms, void *userp) {
  (void)m;
  (void)userp;
  if (ms < 0)
    uv_timer_stop(&g_timer);
  else
    uv_timer_start(&g_timer, on_timeout, (uint64_t)ms, 0);
  return 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, h->type == UV_POLL ? on_poll_close : NULL);
}

/* Resume the paused transfers named in g_resume (the HTTP thread). A
 * transfer that ended meanwhile is no longer listed: nothing to do. */
static void resume_asked(void) {
  pthread_mutex_lock(&g_qlock);
  uint64_t *ids = g_resume;
  size_t n = g_n_resume;
  g_resume = NULL;
  g_n_resume = g_cap_resume = 0;
  pthread_mutex_unlock(&g_qlock);
  for (size_t k = 0; k < n; k++)
    for (size_t i = 0; i < g_n_paused; i++)
      if (g_paused[i]->serial == ids[k]) {
        struct xfer *x = g_paused[i];
        g_paused[i] = g_paused[--g_n_paused];
        /* may hand over what curl held back at once (write_cb) */
        curl_easy_pause(x->easy, CURLPAUSE_CONT);
        break;
      }
  free(ids);
  if (n > 0)
    check_done();
}

static void on_wakeup(uv_async_t *a) {
  (void)a;
  resume_asked();
  pthread_mutex_lock(&g_qlock);
  struct xfer *q = g_queue;
  g_queue = NULL;
  int stopping = g_stopping;
  pthread_mutex_unlock(&g_qlock);
  while (q) {
    struct xfer *next = q->next;
    CURLMcode mc = curl_multi_add_handle(g_multi, q->easy);
    if (mc != CURLM_OK)
      finish(q, CURLE_FAILED_INIT);
    q = next;
  }
  if (stopping)
    uv_walk(&g_loop, close_walk, NULL);
}

static void loop_main(void *arg) {
  (void)arg;
  uv_run(&g_loop, UV_RUN_DEFAULT);
}

static void start(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  uv_loop_init(&g_loop);
  uv_async_init(&g_loop, &g_wakeup, on_wakeup);
  uv_timer_init(&g_loop, &g_timer);
  g_multi = curl_multi_init();
  curl_multi_setopt(g_multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(g_multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(g_multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)g_max_parallel);
  curl_multi_setopt(g_multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)g_max_parallel);
  uv_thread_create(&g_thread, loop_main, NULL);
  g_started = 1;
}

void http_shutdown(void) {
  if (!g_started)
    return;
  pthread_mutex_lock(&g_qlock);
  g_stopping = 1;
  pthread_mutex_unlock(&g_qlock);
  uv_async_send(&g_wakeup);
  uv_thread_join(&g_thread);
  uv_loop_close(&g_loop);
  curl_multi_cleanup(g_multi);
  curl_global_cleanup();
  g_started = 0;
}

/* ---- one attempt ------------------------------------------------------- */

static size_t read_cb(char *buf, size_t size, size_t n, void *ud) {
  struct xfer *x = ud;
  size_t want = size * n, left = x->up_len - x->up_off;
  if (want > left)
    want = left;
  memcpy(buf, x->up + x->up_off, want);
  x->up_off += want;
  return want;
}

static int seek_cb(void *ud, curl_off_t off, int origin) {
  struct xfer *x = ud;
  if (origin != SEEK_SET || off < 0 || (size_t)off > x->up_len)
    return CURL_SEEKFUNC_FAIL;
  x->up_off = (size_t)off;
  return CURL_SEEKFUNC_OK;
}

static int append(char **buf, size_t *len, size_t *cap, const char *data, size_t n, uint64_t max) {
  if (*len + n > max)
    return -1;
  if (*len + n + 1 > *cap) {
    size_t c = *cap ? *cap : 4096;
    while (c < *len + n + 1)
      c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = c;
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  (*buf)[*len] = '\0';
  return 0;
}

static size_t write_cb(char *data, size_t size, size_t n, void *ud) {
  struct xfer *x = ud;
  size_t len = size * n;
  const struct engine_http_request *r = x->req;
  /* only the final response's body matters (not 100-continue and the like) */
  if (r->on_body) {
    t_current = x;
    int rc = r->on_body(r->ud, data, len);
    t_current = NULL;
    if (rc != 0) {
      x->aborted = 1;
      return 0;
    }
    if (x->pause_req) { /* the receiver took these bytes and wants no more for now */
      x->pause_req = 0;
      if (g_n_paused == g_cap_paused) {
        g_cap_paused = g_cap_paused ? g_cap_paused * 2 : 16;
        g_paused = xrealloc(g_paused, g_cap_paused * sizeof(*g_paused));
      }
      g_paused[g_n_paused++] = x;
      curl_easy_pause(x->easy, CURLPAUSE_RECV);
    }
    return len;
  }
  if (append(&x->body, &x->body_len, &x->body_cap, data, len,
             r->max_body ? r->max_body : DEFAULT_MAX_BODY) != 0) {
    x->too_big = 1;
    return 0;
  }
  return len;
}

static size_t header_cb(char *data, size_t size, size_t n, void *ud) {
  struct xfer *x = ud;
  size_t len = size * n;
  /* a new status line starts a new header block (after 100 Continue, redirects) */
  if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
    x->headers_len = 0;
  append(&x->headers, &x->headers_len, &x->headers_cap, data, len, 1024 * 1024);
  return len;
}

static struct xfer *prepare(const struct engine_http_request *r) {
  struct xfer *x = xcalloc(1, sizeof(*x));
  pthread_mutex_init(&x->mu, NULL);
  pthread_cond_init(&x->cv, NULL);
  x->req = r;
  x->up = r->body;
  x->up_len = r->body ? r->body_len : 0;
  CURL *e = x->easy = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_PRIVATE, x);
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  /* a body handed on as it arrives (a restore's ranges) is received in
   * larger reads: fewer system calls and callbacks per MiB */
  if (r->on_body)
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->timeout_ms > 0 ? r->timeout_ms : 600000));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(r->connect_timeout_ms > 0 ? r->connect_timeout_ms : 30000));
  /* a stalled connection (no byte for 60 s) counts as a transport error */
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
  if (r->ca_bundle)
    curl_easy_setopt(e, CURLOPT_CAINFO, r->ca_bundle);
  /* ABI 1.7: a TLS client certificate, no verification of the server */
  if (r->client_cert)
    curl_easy_setopt(e, CURLOPT_SSLCERT, r->client_cert);
  if (r->client_key)
    curl_easy_setopt(e, CURLOPT_SSLKEY, r->client_key);
  if (r->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  const char *m = r->method ? r->method : "GET";
  int put = strcmp(m, "PUT") == 0, post = strcmp(m, "POST") == 0;
  if (strcmp(m, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (put || post || (r->body && strcmp(m, "GET") != 0)) {
    /* PUT uploads; POST, and PATCH or DELETE with a body, post it under
     * their own method name */
    if (put)
      curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    else
      curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(e, CURLOPT_READDATA, x);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_cb);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
    if (put)
      curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->up_len);
    else
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->up_len);
    if (!put && !post)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  } else if (strcmp(m, "GET") != 0) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  }
  /* no "Expect: 100-continue" round trip: bodies are in memory. Not for
   * SigV4: curl 7.88 signs the empty header it then does not send, and the
   * server rejects the signature; those requests keep curl's own Expect. */
  if (!r->aws_sigv4)
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
  for (const char *const *h = r->headers; h && *h; h++)
    x->hdrs = curl_slist_append(x->hdrs, *h);
  if (r->bearer_token) {
    char *auth = xasprintf("Authorization: Bearer %s", r->bearer_token);
    x->hdrs = curl_slist_append(x->hdrs, auth);
    memset(auth, 0, strlen(auth));
    free(auth);
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
  if (r->aws_sigv4) {
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, r->aws_sigv4);
    curl_easy_setopt(e, CURLOPT_USERNAME, r->username ? r->username : "");
    curl_easy_setopt(e, CURLOPT_PASSWORD, r->password ? r->password : "");
  }
  return x;
}

static void xfer_free(struct xfer *x) {
  curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->hdrs);
  free(x->body);
  free(x->headers);
  pthread_mutex_destroy(&x->mu);
  pthread_cond_destroy(&x->cv);
  free(x);
}

uint64_t http_pause_current(void) {
  struct xfer *x = t_current;
  if (!x)
    return 0;
  x->pause_req = 1;
  return x->serial;
}

void http_resume(uint64_t id) {
  if (id == 0)
    return;
  pthread_mutex_lock(&g_qlock);
  if (g_n_resume == g_cap_resume) {
    g_cap_resume = g_cap_resume ? g_cap_resume * 2 : 16;
    g_resume = xrealloc(g_resume, g_cap_resume * sizeof(*g_resume));
  }
  g_resume[g_n_resume++] = id;
  pthread_mutex_unlock(&g_qlock);
  uv_async_send(&g_wakeup);
}

static void perform(struct xfer *x) {
  pthread_once(&g_once, start);
  pthread_mutex_lock(&g_qlock);
  x->serial = ++g_serial;
  x->next = g_queue;
  g_queue = x;
  pthread_mutex_unlock(&g_qlock);
  uv_async_send(&g_wakeup);
  pthread_mutex_lock(&x->mu);
  while (!x->done)
    pthread_cond_wait(&x->cv, &x->mu);
  pthread_mutex_unlock(&x->mu);
}

int http_request(const struct engine_http_request *req, struct engine_http_response *resp) {
  memset(resp, 0, sizeof(*resp));
  int64_t backoff = req->retry_base_ms > 0 ? req->retry_base_ms : 200;
  for (int attempt = 0;; attempt++) {
    struct xfer *x = prepare(req);
    perform(x);
    resp->attempts = attempt + 1;
    int transport = x->result != CURLE_OK;
    if (x->too_big) {
      snprintf(resp->error, sizeof(resp->error), "response body larger than the %llu-byte limit",
               (unsigned long long)(req->max_body ? req->max_body : DEFAULT_MAX_BODY));
      xfer_free(x);
      return ENGINE_ERROR;
    }
    if (x->aborted) {
      snprintf(resp->error, sizeof(resp->error), "aborted by the receiver");
      xfer_free(x);
      return ENGINE_ERROR;
    }
    int again = attempt < req->max_retries && (transport || engine_http_retryable(x->status));
    if (!again) {
      if (transport) {
        snprintf(resp->error, sizeof(resp->error), "%s", curl_easy_strerror(x->result));
        xfer_free(x);
        return ENGINE_ERROR;
      }
      resp->status = x->status;
      resp->body = x->body;
      resp->body_len = x->body_len;
      resp->headers = x->headers;
      x->body = x->headers = NULL;
      if (!resp->body && !req->on_body)
        resp->body = xstrdup("");
      xfer_free(x);
      return ENGINE_OK;
    }
    if (transport)
      log_info("HTTP %s %s: %s; retrying", req->method ? req->method : "GET", req->url,
               curl_easy_strerror(x->result));
    else
      log_info("HTTP %s %s: status %ld; retrying", req->method ? req->method : "GET", req->url,
               x->status);
    xfer_free(x);
    if (req->on_body)
      req->on_body(req->ud, NULL, 0);
    /* full jitter: sleep a random time up to the current backoff */
    uint32_t rnd = 0;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    int64_t sleep_ms = backoff / 2 + (int64_t)(rnd % (uint32_t)(backoff / 2 + 1));
    for (int64_t slept = 0; slept < sleep_ms && !cancel_requested(); slept += 50)
      usleep(50 * 1000);
    if (cancel_requested()) {
      snprintf(resp->error, sizeof(resp->error), "cancelled");
      return ENGINE_ERROR;
    }
    backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
  }
}

void http_response_free(struct engine_http_response *resp) {
  if (!resp)
    return;
  free(resp->body);
  free(resp->headers);
  resp->body = resp->headers = NULL;
}

char *http_header(const struct engine_http_response *resp, const char *name) {
  if (!resp->headers)
    return NULL;
  size_t nl = strlen(name);
  for (const char *p = resp->headers; p && *p;) {
    const char *eol = strstr(p, "\r\n");
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    if (len > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
      const char *v = p + nl + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      size_t vl = len - (size_t)(v - p);
      while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
      char *out = xmalloc(vl + 1);
      memcpy(out, v, vl);
      out[vl] = '\0';
      return out;
    }
    p = eol ? eol + 2 : NULL;
  }
  return NULL;
}
