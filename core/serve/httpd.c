/* HTTP/1.1 server for `engine serve` (see httpd.h). */
#include "serve/httpd.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

#define READ_SIZE 65536
#define LINGER_MS 2000           /* after the last response: drain what the client still sends */
#define EVICT_LOG_EVERY_MS 10000 /* at most one warning about closed connections per 10 s */

/* The headers handed to the handler, with their size limits (431 above). */
enum header_kind { H_AUTH, H_HOST, H_ORIGIN, H_CTYPE, N_KEPT, H_EXPECT = N_KEPT, H_OTHER };
static const struct {
  const char *name;
  size_t max;
} kept_headers[N_KEPT] = {
    {"Authorization", 4096}, {"Host", 1024}, {"Origin", 1024}, {"Content-Type", 1024}};

struct httpd_conn {
  uv_tcp_t tcp;
  uv_timer_t idle;
  uv_timer_t head_timer; /* runs while a request head is awaited or arriving */
  int handles_open;
  struct httpd *srv;
  struct httpd_conn *prev, *next;
  http_parser parser;
  unsigned char client[16]; /* the peer: IPv4 as v4-mapped IPv6, IPv6 as its /64 */
  uint64_t seq;             /* accept order */
  uint64_t last_active;     /* uv_now of the last byte or response */
  int trusted;              /* httpd_trust() was called for one of its requests */

  /* the request being parsed */
  char *url;
  size_t url_len;
  char hdr_name[32];
  size_t hdr_name_len;
  int in_value;
  enum header_kind cur;
  char *hv[N_KEPT]; /* kept header values */
  size_t hv_len[N_KEPT];
  int expect_continue;
  uint64_t body_len;
  char *body;                /* what arrived of it (at most HTTPD_MAX_BODY) */
  int error_status;          /* set by a callback that refused the request */
  const char *error_message; /* and why, or NULL for the status's usual text */
  int in_body;               /* the head is complete; the body (if any) is arriving */
  int complete;              /* on_message_complete ran: the request waits in `pending` */

  struct httpd_req *pending; /* handed to the handler, not yet answered */
  char *inbuf;               /* received, not yet parsed (while a request is pending) */
  size_t in_len;
  int reading, closing, peer_eof, close_after_write, lingering;
  int writes;
  uv_shutdown_t shutdown_req;
};

struct httpd {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int listener_open;
  uv_timer_t warn_timer; /* reports what warn_closed() held back */
  int warn_timer_open;
  httpd_handler_fn handler;
  void *ud;
  struct httpd_conn *conns;
  size_t n_conns; /* in the list (closing ones until their handles are closed) */
  size_t n_open;  /* not closing */
  uint64_t next_seq;
  int closing;
  struct sockaddr_storage bound;
  uint64_t evicted, timed_out, refused; /* since the last warning about them */
  uint64_t last_warned;                 /* uv_now of that warning, 0 = never */
};

struct write_req {
  uv_write_t w;
  char *buf;
  struct httpd_conn *conn;
};

static http_parser_settings parser_settings;

const char *httpd_status_text(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 202:
    return "Accepted";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 413:
    return "Payload Too Large";
  case 414:
    return "URI Too Long";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Entity";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "Unknown";
  }
}

static void maybe_free_server(struct httpd *h) {
  if (h->closing && !h->listener_open && !h->warn_timer_open && h->n_conns == 0)
    free(h);
}

static void reset_request(struct httpd_conn *c) {
  free(c->url);
  c->url = NULL;
  c->url_len = 0;
  for (int i = 0; i < N_KEPT; i++) {
    free(c->hv[i]);
    c->hv[i] = NULL;
    c->hv_len[i] = 0;
  }
  c->hdr_name_len = 0;
  c->in_value = 0;
  c->cur = H_OTHER;
  c->expect_continue = 0;
  c->body_len = 0;
  free(c->body);
  c->body = NULL;
  c->error_status = 0;
  c->error_message = NULL;
  c->in_body = 0;
  c->complete = 0;
}

static void on_conn_handle_closed(uv_handle_t *handle) {
  struct httpd_conn *c = handle->data;
  if (--c->handles_open > 0)
    return;
  struct httpd *h = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    h->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  h->n_conns--;
  reset_request(c);
  free(c->inbuf);
  free(c);
  maybe_free_server(h);
}

static void conn_close(struct httpd_conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  c->srv->n_open--;
  if (c->pending) {
    /* the handler still owns it; its answer goes nowhere */
    c->pending->conn = NULL;
    c->pending = NULL;
  }
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->head_timer, on_conn_handle_closed);
}

/* Connections closed to protect the server are counted and reported in one
 * warning every EVICT_LOG_EVERY_MS at most (what is held back meanwhile is
 * reported when that time is up): an attack must not flood the log. */
static void on_warn_timer(uv_timer_t *t);

static void warn_closed(struct httpd *h, int now_anyway) {
  if (!h->evicted && !h->timed_out && !h->refused)
    return;
  uint64_t now = uv_now(h->loop);
  if (!now_anyway && h->last_warned && now - h->last_warned < EVICT_LOG_EVERY_MS) {
    if (h->warn_timer_open && !uv_is_active((uv_handle_t *)&h->warn_timer))
      uv_timer_start(&h->warn_timer, on_warn_timer, h->last_warned + EVICT_LOG_EVERY_MS - now, 0);
    return;
  }
  h->last_warned = now;
  if (h->evicted)
    log_warn("serve: closed %llu connection(s) to make room for new ones (at most %d connections "
             "without an authenticated request per client address, %d connections in all)",
             (unsigned long long)h->evicted, HTTPD_MAX_UNTRUSTED_PER_CLIENT, HTTPD_MAX_CONNS);
  if (h->timed_out)
    log_warn("serve: closed %llu connection(s) that did not send a complete request head "
             "within %d ms",
             (unsigned long long)h->timed_out, HTTPD_HEAD_TIMEOUT_MS);
  if (h->refused)
    log_warn("serve: refused %llu connection(s): all %d connections are busy with requests",
             (unsigned long long)h->refused, HTTPD_MAX_CONNS);
  h->evicted = h->timed_out = h->refused = 0;
}

static void on_warn_timer(uv_timer_t *t) {
  warn_closed(t->data, 1);
}

static void on_idle(uv_timer_t *t) {
  struct httpd_conn *c = t->data;
  /* a request being handled (a slow child process) is not idleness */
  if (c->lingering || (!c->pending && !c->writes))
    conn_close(c);
}

static void touch(struct httpd_conn *c) {
  if (!c->closing) {
    c->last_active = uv_now(c->srv->loop);
    uv_timer_start(&c->idle, on_idle, HTTPD_IDLE_TIMEOUT_MS, 0);
  }
}

/* The head deadline: bytes arriving do not extend it. */
static void on_head_timeout(uv_timer_t *t) {
  struct httpd_conn *c = t->data;
  if (c->closing || c->lingering)
    return;
  log_debug("serve: closing a connection: no complete request head within %d ms",
            HTTPD_HEAD_TIMEOUT_MS);
  c->srv->timed_out++;
  warn_closed(c->srv, 0);
  conn_close(c);
}

static void start_head_timer(struct httpd_conn *c) {
  if (!c->closing && !uv_is_active((uv_handle_t *)&c->head_timer))
    uv_timer_start(&c->head_timer, on_head_timeout, HTTPD_HEAD_TIMEOUT_MS, 0);
}

static void process_input(struct httpd_conn *c);
static int start_reading(struct httpd_conn *c);

static void on_shutdown(uv_shutdown_t *r, int status) {
  struct httpd_conn *c = r->data;
  if (status < 0 && !c->closing)
    conn_close(c);
}

/* Close after the last response without losing it: closing a socket that
 * still has unread input makes the kernel send a reset, which can destroy
 * the response before the client read it (e.g. a 413 while the client is
 * still sending its body). So: shut down the sending side, and read and
 * drop whatever still arrives until the client closes or LINGER_MS pass. */
static void linger_close(struct httpd_conn *c) {
  if (c->closing || c->lingering)
    return;
  c->lingering = 1;
  uv_timer_stop(&c->head_timer);
  free(c->inbuf);
  c->inbuf = NULL;
  c->in_len = 0;
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0 || c->peer_eof) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->idle, on_idle, LINGER_MS, 0);
  if (!c->reading && start_reading(c) < 0)
    conn_close(c);
}

static void on_write(uv_write_t *w, int status) {
  struct write_req *wr = (struct write_req *)w;
  struct httpd_conn *c = wr->conn;
  free(wr->buf);
  free(wr);
  c->writes--;
  if (c->closing)
    return;
  if (status < 0) {
    log_debug("serve: writing a response failed: %s", uv_strerror(status));
    conn_close(c);
    return;
  }
  if (c->writes > 0)
    return;
  if (c->close_after_write) {
    linger_close(c);
    return;
  }
  touch(c);
  if (!c->pending)
    process_input(c);
}

static int conn_write(struct httpd_conn *c, char *buf, size_t len) {
  struct write_req *wr = xcalloc(1, sizeof(*wr));
  wr->buf = buf;
  wr->conn = c;
  uv_buf_t b = uv_buf_init(buf, (unsigned int)len);
  int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc < 0) {
    log_debug("serve: writing a response failed: %s", uv_strerror(rc));
    free(buf);
    free(wr);
    conn_close(c);
    return -1;
  }
  c->writes++;
  return 0;
}

static void send_response(struct httpd_conn *c, int status, const char *content_type,
                          const char *extra_headers, const char *body, size_t len, int head,
                          int keep_alive) {
  if (!keep_alive)
    c->close_after_write = 1;
  char *hdr = xasprintf("HTTP/1.1 %d %s\r\n"
                        "Content-Type: %s\r\n"
                        "Content-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n"
                        "Connection: %s\r\n"
                        "%s\r\n",
                        status, httpd_status_text(status), content_type, len,
                        keep_alive ? "keep-alive" : "close", extra_headers ? extra_headers : "");
  size_t hlen = strlen(hdr);
  size_t blen = head ? 0 : len;
  char *buf = xrealloc(hdr, hlen + blen + 1);
  if (blen)
    memcpy(buf + hlen, body, blen);
  conn_write(c, buf, hlen + blen);
}

/* An error found while parsing: answered here, and the connection closes. */
static void respond_error(struct httpd_conn *c, int status, const char *message) {
  char *body = xasprintf("{\"error\": \"%s\"}\n", message);
  uv_timer_stop(&c->head_timer); /* the answer is the end of this connection */
  c->reading = 0;
  uv_read_stop((uv_stream_t *)&c->tcp);
  send_response(c, status, "application/json", NULL, body, strlen(body), 0, 0);
  free(body);
}

void httpd_trust(struct httpd_req *req) {
  if (req->conn)
    req->conn->trusted = 1;
}

void httpd_respond(struct httpd_req *req, int status, const char *content_type,
                   const char *extra_headers, const char *body, size_t len) {
  struct httpd_conn *c = req->conn;
  if (c && !c->closing) {
    c->pending = NULL;
    int printable = 1;
    for (const char *q = req->path; *q && printable; q++)
      printable = *q > ' ' && *q < 0x7f;
    log_info("serve: %s %s -> %d", req->method_name, printable ? req->path : "(unprintable path)",
             status);
    send_response(c, status, content_type, extra_headers, body, len, req->head,
                  req->keep_alive && !(c->peer_eof && c->in_len == 0) && !c->srv->closing);
  }
  free(req->path);
  free(req->query);
  free(req->body);
  free(req->authorization);
  free(req->host);
  free(req->origin);
  free(req->content_type);
  free(req);
}

/* ---- parser callbacks ---------------------------------------------------- */

static int on_message_begin(http_parser *p) {
  struct httpd_conn *c = p->data;
  reset_request(c);
  start_head_timer(c); /* already running for the connection's first request */
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  struct httpd_conn *c = p->data;
  if (c->url_len + len > HTTPD_MAX_URL) {
    c->error_status = 414;
    return -1;
  }
  c->url = xrealloc(c->url, c->url_len + len + 1);
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  c->url[c->url_len] = '\0';
  return 0;
}

static void classify_header(struct httpd_conn *c) {
  c->hdr_name[c->hdr_name_len < sizeof(c->hdr_name) ? c->hdr_name_len : 0] = '\0';
  c->cur = H_OTHER;
  if (c->hdr_name_len >= sizeof(c->hdr_name))
    return;
  for (int i = 0; i < N_KEPT; i++)
    if (strcasecmp(c->hdr_name, kept_headers[i].name) == 0)
      c->cur = (enum header_kind)i;
  if (strcasecmp(c->hdr_name, "expect") == 0)
    c->cur = H_EXPECT;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  struct httpd_conn *c = p->data;
  if (c->in_value) {
    c->in_value = 0;
    c->hdr_name_len = 0;
  }
  /* only short names are of interest; longer ones are just counted */
  if (c->hdr_name_len + len < sizeof(c->hdr_name))
    memcpy(c->hdr_name + c->hdr_name_len, at, len);
  c->hdr_name_len += len;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  struct httpd_conn *c = p->data;
  if (!c->in_value) {
    c->in_value = 1;
    classify_header(c);
    if (c->cur < N_KEPT && c->hv[c->cur]) {
      /* two Authorization (Host, ...) headers: ambiguous, refuse */
      static const char *const twice[N_KEPT] = {"two Authorization headers", "two Host headers",
                                                "two Origin headers", "two Content-Type headers"};
      c->error_status = 400;
      c->error_message = twice[c->cur];
      return -1;
    }
    if (c->cur < N_KEPT) {
      c->hv[c->cur] = xstrdup("");
      c->hv_len[c->cur] = 0;
    }
  }
  if (c->cur < N_KEPT) {
    int k = c->cur;
    if (c->hv_len[k] + len > kept_headers[k].max) {
      c->error_status = 431;
      return -1;
    }
    c->hv[k] = xrealloc(c->hv[k], c->hv_len[k] + len + 1);
    memcpy(c->hv[k] + c->hv_len[k], at, len);
    c->hv_len[k] += len;
    c->hv[k][c->hv_len[k]] = '\0';
  } else if (c->cur == H_EXPECT) {
    if (len >= 12 && strncasecmp(at, "100-continue", 12) == 0)
      c->expect_continue = 1;
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  struct httpd_conn *c = p->data;
  /* the head is in: from here the idle timeout applies */
  uv_timer_stop(&c->head_timer);
  c->in_body = 1;
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > HTTPD_MAX_BODY) {
    c->error_status = 413;
    return -1;
  }
  if (c->expect_continue) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    conn_write(c, xstrdup(cont), sizeof(cont) - 1);
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  struct httpd_conn *c = p->data;
  if (c->body_len + len > HTTPD_MAX_BODY) {
    c->error_status = 413;
    return -1;
  }
  c->body = xrealloc(c->body, c->body_len + len + 1);
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  c->body[c->body_len] = '\0';
  return 0;
}

static int on_message_complete(http_parser *p) {
  struct httpd_conn *c = p->data;
  c->complete = 1;
  c->in_body = 0;
  /* one request at a time: the rest waits until this one is answered */
  http_parser_pause(p, 1);
  return 0;
}

/* ---- input --------------------------------------------------------------- */

static struct httpd_req *make_request(struct httpd_conn *c) {
  http_parser *p = &c->parser;
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (!c->url || http_parser_parse_url(c->url, c->url_len, p->method == HTTP_CONNECT, &u) != 0)
    return NULL;
  struct httpd_req *r = xcalloc(1, sizeof(*r));
  r->method = (int)p->method;
  r->method_name = http_method_str((enum http_method)p->method);
  if (u.field_set & (1 << UF_PATH))
    r->path = xasprintf("%.*s", (int)u.field_data[UF_PATH].len, c->url + u.field_data[UF_PATH].off);
  else
    r->path = xstrdup("");
  if (u.field_set & (1 << UF_QUERY))
    r->query =
        xasprintf("%.*s", (int)u.field_data[UF_QUERY].len, c->url + u.field_data[UF_QUERY].off);
  r->body = c->body;
  r->body_len = (size_t)c->body_len;
  c->body = NULL;
  char **dst[N_KEPT] = {&r->authorization, &r->host, &r->origin, &r->content_type};
  for (int i = 0; i < N_KEPT; i++) {
    *dst[i] = c->hv[i];
    c->hv[i] = NULL;
  }
  r->head = p->method == HTTP_HEAD;
  r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  r->conn = c;
  return r;
}

/* Feed what is buffered to the parser until a request is complete (it is
 * then handed to the handler) or the buffer is used up (reading resumes). */
static void process_input(struct httpd_conn *c) {
  while (!c->closing && !c->pending && !c->writes && !c->close_after_write) {
    if (c->in_len == 0) {
      if (c->peer_eof) {
        conn_close(c);
        return;
      }
      if (!c->reading && start_reading(c) < 0)
        conn_close(c);
      return;
    }
    http_parser_pause(&c->parser, 0);
    size_t n = http_parser_execute(&c->parser, &parser_settings, c->inbuf, c->in_len);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e != HPE_OK && e != HPE_PAUSED) {
      free(c->inbuf);
      c->inbuf = NULL;
      c->in_len = 0;
      if (c->error_status == 400 && c->error_message)
        respond_error(c, 400, c->error_message);
      else if (c->error_status == 413)
        respond_error(c, 413, "request body larger than 64 KiB");
      else if (c->error_status == 414)
        respond_error(c, 414, "request URL longer than 8 KiB");
      else if (c->error_status == 431 || e == HPE_HEADER_OVERFLOW)
        respond_error(c, 431, "request headers too large");
      else
        respond_error(c, 400, "malformed request");
      log_info("serve: refused a request: %s", http_errno_description(e));
      return;
    }
    if (n > c->in_len)
      n = c->in_len;
    memmove(c->inbuf, c->inbuf + n, c->in_len - n);
    c->in_len -= n;
    if (!c->complete) {
      /* part of a head (even blank lines before one) starts its deadline */
      if (n > 0 && !c->in_body)
        start_head_timer(c);
      continue; /* everything consumed; wait for more */
    }
    c->complete = 0;
    struct httpd_req *r = make_request(c);
    if (!r) {
      respond_error(c, 400, "malformed request URL");
      return;
    }
    if (c->parser.upgrade)
      r->keep_alive = 0;
    c->pending = r;
    touch(c);
    c->srv->handler(c->srv->ud, r);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  buf->base = xmalloc(READ_SIZE);
  buf->len = READ_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct httpd_conn *c = s->data;
  if (c->lingering) {
    free(buf->base);
    if (nread < 0)
      conn_close(c);
    return;
  }
  if (nread < 0) {
    free(buf->base);
    if (nread != UV_EOF) {
      conn_close(c);
      return;
    }
    c->peer_eof = 1;
    uv_read_stop(s);
    c->reading = 0;
    if (!c->pending && c->writes == 0)
      conn_close(c);
    return;
  }
  if (nread == 0) {
    free(buf->base);
    return;
  }
  touch(c);
  if (c->in_len == 0) {
    free(c->inbuf);
    c->inbuf = buf->base;
    c->in_len = (size_t)nread;
  } else {
    c->inbuf = xrealloc(c->inbuf, c->in_len + (size_t)nread);
    memcpy(c->inbuf + c->in_len, buf->base, (size_t)nread);
    c->in_len += (size_t)nread;
    free(buf->base);
  }
  /* nothing more is read while a request is being answered */
  uv_read_stop(s);
  c->reading = 0;
  if (!c->pending && !c->writes)
    process_input(c);
}

static int start_reading(struct httpd_conn *c) {
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc == 0)
    c->reading = 1;
  return rc;
}

/* The peer's address as the key of the per-client limit: IPv4 (also when
 * v4-mapped) as ::ffff:a.b.c.d, IPv6 as its /64 (one host usually has a
 * whole /64). */
static void client_key(const uv_tcp_t *tcp, unsigned char key[16]) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  memset(key, 0, 16);
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET) {
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &((const struct sockaddr_in *)&ss)->sin_addr, 4);
  } else if (ss.ss_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a))
      memcpy(key, a->s6_addr, 16);
    else
      memcpy(key, a->s6_addr, 8);
  }
}

static void evict(struct httpd_conn *c) {
  log_debug("serve: closing a connection to make room for a new one");
  c->srv->evicted++;
  conn_close(c);
}

/* The oldest untrusted open connection other than nc (of nc's client when
 * mine is set), and how many there are. */
static struct httpd_conn *oldest_untrusted(struct httpd *h, const struct httpd_conn *nc, int mine,
                                           size_t *count) {
  struct httpd_conn *oldest = NULL;
  *count = 0;
  for (struct httpd_conn *c = h->conns; c; c = c->next) {
    if (c == nc || c->closing || c->trusted ||
        (mine && memcmp(c->client, nc->client, sizeof(c->client)) != 0))
      continue;
    ++*count;
    if (!oldest || c->seq < oldest->seq)
      oldest = c;
  }
  return oldest;
}

/* The trusted connection idle the longest: no request being answered. */
static struct httpd_conn *idlest_trusted(struct httpd *h, const struct httpd_conn *nc) {
  struct httpd_conn *idlest = NULL;
  for (struct httpd_conn *c = h->conns; c; c = c->next)
    if (c != nc && !c->closing && c->trusted && !c->pending && !c->writes && !c->lingering &&
        (!idlest || c->last_active < idlest->last_active))
      idlest = c;
  return idlest;
}

/* Room for the new connection nc. Its client keeps at most
 * HTTPD_MAX_UNTRUSTED_PER_CLIENT untrusted connections: its oldest other one
 * goes. Beyond HTTPD_MAX_CONNS in all: the oldest untrusted connection goes,
 * else the trusted one idle the longest. Returns 0, or -1 when every other
 * connection is busy with a request. */
static int make_room(struct httpd *h, struct httpd_conn *nc) {
  size_t n;
  struct httpd_conn *c = oldest_untrusted(h, nc, 1, &n);
  if (n >= HTTPD_MAX_UNTRUSTED_PER_CLIENT)
    evict(c);
  if (h->n_open > HTTPD_MAX_CONNS) {
    c = oldest_untrusted(h, nc, 0, &n);
    if (!c)
      c = idlest_trusted(h, nc);
    if (c)
      evict(c);
  }
  if (h->evicted)
    warn_closed(h, 0);
  return h->n_open > HTTPD_MAX_CONNS ? -1 : 0;
}

/* A new connection in the server's list, its handles initialised. */
static struct httpd_conn *conn_new(struct httpd *h) {
  struct httpd_conn *c = xcalloc(1, sizeof(*c));
  c->srv = h;
  uv_tcp_init(h->loop, &c->tcp);
  uv_timer_init(h->loop, &c->idle);
  uv_timer_init(h->loop, &c->head_timer);
  c->tcp.data = c->idle.data = c->head_timer.data = c;
  c->handles_open = 3;
  c->seq = ++h->next_seq;
  c->next = h->conns;
  if (h->conns)
    h->conns->prev = c;
  h->conns = c;
  h->n_conns++;
  h->n_open++;
  return c;
}

/* Serve connection c, whose socket is open: make room for it, then read. */
static void conn_start(struct httpd *h, struct httpd_conn *c) {
  if (h->closing) {
    conn_close(c);
    return;
  }
  client_key(&c->tcp, c->client);
  if (make_room(h, c) != 0) {
    h->refused++;
    warn_closed(h, 0);
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  touch(c);
  start_head_timer(c);
  int rc = start_reading(c);
  if (rc < 0) {
    log_warn("serve: reading from a connection failed: %s", uv_strerror(rc));
    conn_close(c);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  struct httpd *h = server->data;
  if (status < 0) {
    log_warn("serve: accepting a connection failed: %s", uv_strerror(status));
    return;
  }
  struct httpd_conn *c = conn_new(h);
  int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
  if (rc < 0) {
    log_warn("serve: accepting a connection failed: %s", uv_strerror(rc));
    conn_close(c);
    return;
  }
  conn_start(h, c);
}

int httpd_serve_fd(struct httpd *h, int fd, char **err) {
  struct httpd_conn *c = conn_new(h);
  int rc = uv_tcp_open(&c->tcp, fd);
  if (rc < 0) {
    *err = xasprintf("unable to serve descriptor %d: %s", fd, uv_strerror(rc));
    conn_close(c);
    return -1;
  }
  conn_start(h, c);
  return 0;
}

static void settings_init(void) {
  http_parser_settings_init(&parser_settings);
  parser_settings.on_message_begin = on_message_begin;
  parser_settings.on_url = on_url;
  parser_settings.on_header_field = on_header_field;
  parser_settings.on_header_value = on_header_value;
  parser_settings.on_headers_complete = on_headers_complete;
  parser_settings.on_body = on_body;
  parser_settings.on_message_complete = on_message_complete;
}

static void on_listener_closed(uv_handle_t *handle) {
  struct httpd *h = handle->data;
  h->listener_open = 0;
  maybe_free_server(h);
}

static void on_warn_timer_closed(uv_handle_t *handle) {
  struct httpd *h = handle->data;
  h->warn_timer_open = 0;
  maybe_free_server(h);
}

static struct httpd *server_new(uv_loop_t *loop, httpd_handler_fn handler, void *ud) {
  settings_init();
  struct httpd *h = xcalloc(1, sizeof(*h));
  h->loop = loop;
  h->handler = handler;
  h->ud = ud;
  uv_tcp_init(loop, &h->listener);
  h->listener.data = h;
  h->listener_open = 1;
  uv_timer_init(loop, &h->warn_timer);
  h->warn_timer.data = h;
  h->warn_timer_open = 1;
  return h;
}

struct httpd *httpd_new_unbound(uv_loop_t *loop, httpd_handler_fn handler, void *ud) {
  return server_new(loop, handler, ud);
}

int httpd_listen(uv_loop_t *loop, const struct sockaddr *addr, httpd_handler_fn handler, void *ud,
                 struct httpd **out, char **err) {
  struct httpd *h = server_new(loop, handler, ud);
  char name[INET6_ADDRSTRLEN + 8] = "?";
  if (addr->sa_family == AF_INET6)
    uv_ip6_name((const struct sockaddr_in6 *)addr, name, sizeof(name));
  else
    uv_ip4_name((const struct sockaddr_in *)addr, name, sizeof(name));
  int port = ntohs(addr->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)addr)->sin6_port
                                               : ((const struct sockaddr_in *)addr)->sin_port);
  int rc = uv_tcp_bind(&h->listener, addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&h->listener, 128, on_connection);
  if (rc == 0) {
    int len = sizeof(h->bound);
    rc = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&h->bound, &len);
  }
  if (rc < 0) {
    *err = xasprintf("unable to listen on %s:%d: %s", name, port, uv_strerror(rc));
    h->closing = 1;
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
    uv_close((uv_handle_t *)&h->warn_timer, on_warn_timer_closed);
    return -1;
  }
  *out = h;
  return 0;
}

void httpd_address(const struct httpd *h, char *buf, size_t size) {
  char name[INET6_ADDRSTRLEN] = "?";
  if (h->bound.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&h->bound;
    uv_ip6_name(a, name, sizeof(name));
    snprintf(buf, size, "[%s]:%d", name, ntohs(a->sin6_port));
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&h->bound;
    uv_ip4_name(a, name, sizeof(name));
    snprintf(buf, size, "%s:%d", name, ntohs(a->sin_port));
  }
}

void httpd_close(struct httpd *h) {
  if (h->closing)
    return;
  h->closing = 1;
  for (struct httpd_conn *c = h->conns; c; c = c->next)
    conn_close(c);
  warn_closed(h, 1);
  uv_close((uv_handle_t *)&h->listener, on_listener_closed);
  uv_close((uv_handle_t *)&h->warn_timer, on_warn_timer_closed);
}
