/* A small HTTP/1.1 server on a libuv loop for `engine serve`: requests are
 * parsed with libhttp-parser, one at a time per connection (pipelined
 * requests wait for the previous response), with keep-alive, bounded
 * URLs, headers and bodies, and idle timeouts. The handler answers every
 * request exactly once with httpd_respond(), at once or later (after a child
 * process finished); a request whose client went away meanwhile is simply
 * freed by that call.
 *
 * Against hostile clients: a request head (request line and headers) must
 * arrive complete within HTTPD_HEAD_TIMEOUT_MS of its first byte (of the
 * connection, for the first request), however the bytes trickle in. A
 * connection is untrusted until the handler calls httpd_trust() for one of
 * its requests; a client address (IPv4 address, IPv6 /64) keeps at most
 * HTTPD_MAX_UNTRUSTED_PER_CLIENT untrusted connections (a new one closes its
 * oldest), and when all HTTPD_MAX_CONNS are open a new connection closes the
 * oldest untrusted one, else the trusted one idle the longest; it is refused
 * only when every connection is busy with a request. */
#ifndef CORE_SERVE_HTTPD_H
#define CORE_SERVE_HTTPD_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#define HTTPD_MAX_BODY (64 * 1024) /* larger bodies are refused (413) */
#define HTTPD_MAX_URL 8192
#define HTTPD_MAX_CONNS 256
#define HTTPD_MAX_UNTRUSTED_PER_CLIENT 8
#define HTTPD_HEAD_TIMEOUT_MS 10000
#define HTTPD_IDLE_TIMEOUT_MS 60000 /* keep-alive, and bodies: reset by every byte */

struct httpd;
struct httpd_conn;

struct httpd_req {
  int method; /* enum http_method (http_parser.h) */
  const char *method_name;
  char *path;  /* the URL's path, without query or fragment */
  char *query; /* the URL's query (after '?', undecoded), or NULL */
  char *body;  /* the request body (NUL-terminated), or NULL when empty */
  size_t body_len;
  char *authorization; /* the Authorization header, or NULL */
  char *host;          /* the Host header, or NULL */
  char *origin;        /* the Origin header, or NULL */
  char *content_type;  /* the Content-Type header, or NULL */
  int head;            /* HEAD: the response is sent without its body */
  int keep_alive;
  struct httpd_conn *conn; /* NULL once the client went away */
};

typedef void (*httpd_handler_fn)(void *ud, struct httpd_req *req);

/* Bind and listen on addr. Returns 0, or -1 with *err (malloc'd). */
int httpd_listen(uv_loop_t *loop, const struct sockaddr *addr, httpd_handler_fn handler, void *ud,
                 struct httpd **out, char **err);
/* A server that listens nowhere, and a connection on a connected stream
 * socket (e.g. one end of a socketpair) served exactly as an accepted one:
 * for tests (tests/fuzz/fuzz_http.c feeds requests through them). */
struct httpd *httpd_new_unbound(uv_loop_t *loop, httpd_handler_fn handler, void *ud);
int httpd_serve_fd(struct httpd *h, int fd, char **err);
/* The bound address as "ADDR:PORT" ("[::1]:PORT" for IPv6). */
void httpd_address(const struct httpd *h, char *buf, size_t size);

/* The client of req proved it may use the server (a right token, or a
 * request the server's policy accepts): its connection stops counting as
 * untrusted (see above). */
void httpd_trust(struct httpd_req *req);

/* Answer and free req. extra_headers: NULL or complete "Name: value\r\n" lines. */
void httpd_respond(struct httpd_req *req, int status, const char *content_type,
                   const char *extra_headers, const char *body, size_t len);

/* Stop listening and close every connection; requests still being handled
 * are answered into the void. The server frees itself once its handles are
 * closed (the loop must keep running until then). */
void httpd_close(struct httpd *h);

const char *httpd_status_text(int status);

#endif
