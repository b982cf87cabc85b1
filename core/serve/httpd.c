/* HTTP/1.1 server for `engine serve` (see httpd.h). */
#include "serve/httpd.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

#define MAX_CONNS 256
#define MAX_AUTH 4096
#define IDLE_TIMEOUT_MS 60000 /* keep-alive and slow clients */
#define READ_SIZE 65536
#define LINGER_MS 2000 /* after the last response: drain what the client still sends */

enum header_kind { H_OTHER, H_AUTH, H_EXPECT };

struct httpd_conn {
  uv_tcp_t tcp;
  uv_timer_t idle;
  int handles_open;
  struct httpd *srv;
  struct httpd_conn *prev, *next;
  http_parser parser;

  /* the request being parsed */
  char *url;
  size_t url_len;
  char hdr_name[32];
  size_t hdr_name_len;
  int in_value;
  enum header_kind cur;
  char *auth;
  size_t auth_len;
  int expect_continue;
  uint64_t body_len;
  int error_status; /* set by a callback that refused the request */
  int complete;     /* on_message_complete ran: the request waits in `pending` */

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
  httpd_handler_fn handler;
  void *ud;
  struct httpd_conn *conns;
  size_t n_conns;
  int closing;
  struct sockaddr_storage bound;
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
  if (h->closing && !h->listener_open && h->n_conns == 0)
    free(h);
}

static void reset_request(struct httpd_conn *c) {
  free(c->url);
  free(c->auth);
  c->url = c->auth = NULL;
  c->url_len = c->auth_len = 0;
  c->hdr_name_len = 0;
  c->in_value = 0;
  c->cur = H_OTHER;
  c->expect_continue = 0;
  c->body_len = 0;
  c->error_status = 0;
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
  if (c->pending) {
    /* the handler still owns it; its answer goes nowhere */
    c->pending->conn = NULL;
    c->pending = NULL;
  }
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
}

static void on_idle(uv_timer_t *t) {
  struct httpd_conn *c = t->data;
  /* a request being handled (a slow child process) is not idleness */
  if (c->lingering || (!c->pending && !c->writes))
    conn_close(c);
}

static void touch(struct httpd_conn *c) {
  if (!c->closing)
    uv_timer_start(&c->idle, on_idle, IDLE_TIMEOUT_MS, 0);
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
  c->reading = 0;
  uv_read_stop((uv_stream_t *)&c->tcp);
  send_response(c, status, "application/json", NULL, body, strlen(body), 0, 0);
  free(body);
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
  free(req->authorization);
  free(req);
}

/* ---- parser callbacks ---------------------------------------------------- */

static int on_message_begin(http_parser *p) {
  reset_request(p->data);
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
  if (c->hdr_name_len >= sizeof(c->hdr_name))
    c->cur = H_OTHER;
  else if (strcasecmp(c->hdr_name, "authorization") == 0)
    c->cur = H_AUTH;
  else if (strcasecmp(c->hdr_name, "expect") == 0)
    c->cur = H_EXPECT;
  else
    c->cur = H_OTHER;
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
    if (c->cur == H_AUTH && c->auth) {
      /* two Authorization headers: ambiguous, refuse */
      c->error_status = 400;
      return -1;
    }
    if (c->cur == H_AUTH) {
      c->auth = xstrdup("");
      c->auth_len = 0;
    }
  }
  if (c->cur == H_AUTH) {
    if (c->auth_len + len > MAX_AUTH) {
      c->error_status = 431;
      return -1;
    }
    c->auth = xrealloc(c->auth, c->auth_len + len + 1);
    memcpy(c->auth + c->auth_len, at, len);
    c->auth_len += len;
    c->auth[c->auth_len] = '\0';
  } else if (c->cur == H_EXPECT) {
    if (len >= 12 && strncasecmp(at, "100-continue", 12) == 0)
      c->expect_continue = 1;
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  struct httpd_conn *c = p->data;
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
  (void)at; /* no endpoint takes a body: it is counted and dropped */
  c->body_len += len;
  if (c->body_len > HTTPD_MAX_BODY) {
    c->error_status = 413;
    return -1;
  }
  return 0;
}

static int on_message_complete(http_parser *p) {
  struct httpd_conn *c = p->data;
  c->complete = 1;
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
  r->authorization = c->auth;
  c->auth = NULL;
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
      if (c->error_status == 413)
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
    if (!c->complete)
      continue; /* everything consumed; wait for more */
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

static void on_connection(uv_stream_t *server, int status) {
  struct httpd *h = server->data;
  if (status < 0) {
    log_warn("serve: accepting a connection failed: %s", uv_strerror(status));
    return;
  }
  struct httpd_conn *c = xcalloc(1, sizeof(*c));
  c->srv = h;
  uv_tcp_init(h->loop, &c->tcp);
  uv_timer_init(h->loop, &c->idle);
  c->tcp.data = c->idle.data = c;
  c->handles_open = 2;
  c->next = h->conns;
  if (h->conns)
    h->conns->prev = c;
  h->conns = c;
  h->n_conns++;
  int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
  if (rc < 0) {
    log_warn("serve: accepting a connection failed: %s", uv_strerror(rc));
    conn_close(c);
    return;
  }
  if (h->n_conns > MAX_CONNS || h->closing) {
    log_warn("serve: refusing a connection: %zu connections are open", h->n_conns - 1);
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  touch(c);
  rc = start_reading(c);
  if (rc < 0) {
    log_warn("serve: reading from a connection failed: %s", uv_strerror(rc));
    conn_close(c);
  }
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

int httpd_listen(uv_loop_t *loop, const struct sockaddr *addr, httpd_handler_fn handler, void *ud,
                 struct httpd **out, char **err) {
  settings_init();
  struct httpd *h = xcalloc(1, sizeof(*h));
  h->loop = loop;
  h->handler = handler;
  h->ud = ud;
  uv_tcp_init(loop, &h->listener);
  h->listener.data = h;
  h->listener_open = 1;
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
  uv_close((uv_handle_t *)&h->listener, on_listener_closed);
}
