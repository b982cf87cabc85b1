/* engine serve's HTTP request parsing (core/serve/httpd.c): the input is
 * the byte stream a client sends on one connection. The server is the real
 * one on a libuv loop, without a listening socket: httpd_serve_fd serves
 * one end of a socketpair exactly as an accepted connection, so the bytes go
 * through libhttp-parser, the callbacks that assemble requests (URL and
 * header limits, duplicate headers, Expect: 100-continue, bodies),
 * pipelining and keep-alive, and the error answers. The client end writes
 * the input, shuts down its sending side and reads every answer until the
 * server closes.
 *
 * Checked beyond "no crash": every request handed to the handler has a
 * method and a path within the URL limit, the server answers (at least one
 * status line for input that holds a request line) and closes the
 * connection once the client has finished, and nothing leaks. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "fuzz_common.h"
#include "serve/httpd.h"
#include "util/log.h"

static uv_loop_t loop;
static struct httpd *srv;

struct client {
  uv_tcp_t tcp;
  uv_write_t w;
  uv_shutdown_t sd;
  size_t answered; /* bytes received */
  int eof;
};

static size_t requests;

static void handler(void *ud, struct httpd_req *req) {
  (void)ud;
  requests++;
  FUZZ_CHECK(req->method_name && req->path, "a request without a method or path");
  FUZZ_CHECK(strlen(req->path) <= HTTPD_MAX_URL, "a path longer than the URL limit");
  /* a request to /trusted stands for one with the right token */
  if (strncmp(req->path, "/trusted", 8) == 0)
    httpd_trust(req);
  static const char body[] = "{\"ok\": true}\n";
  httpd_respond(req, strcmp(req->path, "/") == 0 ? 200 : 404, "application/json", NULL, body,
                sizeof(body) - 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet();
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  srv = httpd_new_unbound(&loop, handler, NULL);
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static char space[65536];
  buf->base = space;
  buf->len = sizeof(space);
}

static void on_closed(uv_handle_t *h) {
  (void)h;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  struct client *c = s->data;
  if (n > 0) {
    c->answered += (size_t)n;
    return;
  }
  if (n < 0) {
    c->eof = 1;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
  }
}

static void on_shutdown(uv_shutdown_t *r, int status) {
  (void)r;
  (void)status;
}

static void on_written(uv_write_t *w, int status) {
  struct client *c = w->data;
  /* the server may have answered and closed before reading everything */
  if (status == 0)
    uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int sv[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
  char *err = NULL;
  FUZZ_CHECK(httpd_serve_fd(srv, sv[0], &err) == 0, "httpd_serve_fd: %s", err);
  struct client c;
  memset(&c, 0, sizeof(c));
  uv_tcp_init(&loop, &c.tcp);
  FUZZ_CHECK(uv_tcp_open(&c.tcp, sv[1]) == 0, "uv_tcp_open");
  c.tcp.data = c.w.data = c.sd.data = &c;
  uv_read_start((uv_stream_t *)&c.tcp, on_alloc, on_read);
  uv_buf_t b = uv_buf_init((char *)data, (unsigned int)size);
  if (size > 0)
    uv_write(&c.w, (uv_stream_t *)&c.tcp, &b, 1, on_written);
  else
    uv_shutdown(&c.sd, (uv_stream_t *)&c.tcp, on_shutdown);
  requests = 0;
  /* returns once the server closed the connection and the client its end:
   * nothing else keeps the loop alive */
  uv_run(&loop, UV_RUN_DEFAULT);
  FUZZ_CHECK(c.eof, "the loop ended before the server closed the connection");
  if (requests > 0)
    FUZZ_CHECK(c.answered > 0, "%zu request(s) handled, nothing answered", requests);
  return 0;
}
