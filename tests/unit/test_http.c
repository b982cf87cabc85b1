/* The shared HTTP client against a tiny in-test HTTP/1.1 server: bodies in
 * both directions, headers, retries with backoff on 503 and on dropped
 * connections, no retry on 404, and parallel requests from many threads;
 * PATCH bodies (ABI 1.7); and host->http_request's struct_size rules (ABI 1.5): a request smaller
 * than ABI 1.1's is refused, a 1.5 plugin's response is filled as far as its
 * struct_size says, an older plugin's only up to the 1.1 fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/http.h"
#include "plugin/host.h"

static int g_listen;
static int g_port;
static int g_fail_next; /* respond 503 this many times */
static int g_drop_next; /* close the connection without answering this many times */
static int g_requests;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static void handle(int fd) {
  char buf[65536];
  size_t len = 0;
  for (;;) {
    /* read one request: headers, then Content-Length bytes */
    char *end = NULL;
    while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
      ssize_t n = read(fd, buf + len, sizeof(buf) - len);
      if (n <= 0)
        return;
      len += (size_t)n;
    }
    size_t hl = (size_t)(end - buf) + 4;
    size_t cl = 0;
    char *p = strcasestr(buf, "Content-Length:");
    if (p && p < end)
      cl = strtoul(p + 15, NULL, 10);
    while (len < hl + cl) {
      ssize_t n = read(fd, buf + len, sizeof(buf) - len);
      if (n <= 0)
        return;
      len += (size_t)n;
    }
    pthread_mutex_lock(&g_mu);
    g_requests++;
    int drop = g_drop_next > 0 ? g_drop_next-- : 0;
    int fail = !drop && g_fail_next > 0 ? g_fail_next-- : 0;
    pthread_mutex_unlock(&g_mu);
    if (drop)
      return;
    char resp[70000];
    int n;
    if (fail)
      n = snprintf(resp, sizeof(resp), "HTTP/1.1 503 Slow Down\r\nContent-Length: 4\r\n\r\nbusy");
    else if (strncmp(buf, "GET /missing", 12) == 0)
      n = snprintf(resp, sizeof(resp), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    else if (strncmp(buf, "PUT ", 4) == 0 || strncmp(buf, "PATCH ", 6) == 0) /* echo the body */
      n = snprintf(resp, sizeof(resp),
                   "HTTP/1.1 200 OK\r\nX-Echo-Len: %zu\r\nContent-Length: %zu\r\n\r\n%.*s", cl, cl,
                   (int)cl, buf + hl);
    else
      n = snprintf(resp, sizeof(resp),
                   "HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 5\r\n\r\nhello");
    if (write(fd, resp, (size_t)n) != n)
      return;
    memmove(buf, buf + hl + cl, len - hl - cl);
    len -= hl + cl;
  }
}

static void *conn_main(void *arg) {
  int fd = (int)(intptr_t)arg;
  handle(fd);
  close(fd);
  return NULL;
}

static void *server_main(void *arg) {
  (void)arg;
  for (;;) {
    int fd = accept(g_listen, NULL, NULL);
    if (fd < 0)
      return NULL;
    pthread_t t;
    pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd);
    pthread_detach(t);
  }
}

static int setup(void **state) {
  (void)state;
  g_listen = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(g_listen, (struct sockaddr *)&a, sizeof(a)), 0);
  socklen_t l = sizeof(a);
  getsockname(g_listen, (struct sockaddr *)&a, &l);
  g_port = ntohs(a.sin_port);
  listen(g_listen, 64);
  pthread_t t;
  pthread_create(&t, NULL, server_main, NULL);
  pthread_detach(t);
  return 0;
}

static void url(char *buf, size_t n, const char *path) {
  snprintf(buf, n, "http://127.0.0.1:%d%s", g_port, path);
}

static void test_get_and_headers(void **state) {
  (void)state;
  char u[128];
  url(u, sizeof(u), "/x");
  struct engine_http_request r = {.struct_size = sizeof(r), .method = "GET", .url = u};
  struct engine_http_response resp;
  assert_int_equal(http_request(&r, &resp), 0);
  assert_int_equal(resp.status, 200);
  assert_int_equal(resp.body_len, 5);
  assert_string_equal(resp.body, "hello");
  char *etag = http_header(&resp, "etag");
  assert_string_equal(etag, "\"abc\"");
  free(etag);
  assert_null(http_header(&resp, "x-nothing"));
  http_response_free(&resp);
}

static void test_put_body(void **state) {
  (void)state;
  char u[128];
  url(u, sizeof(u), "/obj");
  static char body[40000];
  for (size_t i = 0; i < sizeof(body); i++)
    body[i] = (char)('a' + i % 26);
  const char *hdrs[] = {"X-Test: 1", NULL};
  struct engine_http_request r = {.struct_size = sizeof(r),
                                  .method = "PUT",
                                  .url = u,
                                  .headers = hdrs,
                                  .body = body,
                                  .body_len = sizeof(body)};
  struct engine_http_response resp;
  assert_int_equal(http_request(&r, &resp), 0);
  assert_int_equal(resp.status, 200);
  assert_int_equal(resp.body_len, sizeof(body));
  assert_memory_equal(resp.body, body, sizeof(body));
  http_response_free(&resp);
}

/* ABI 1.7: a method other than PUT and POST sends its body too (server-side
 * apply is a PATCH); before, curl sent PATCH without one. */
static void test_patch_body(void **state) {
  (void)state;
  char u[128];
  url(u, sizeof(u), "/apply");
  const char body[] = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}";
  const char *hdrs[] = {"Content-Type: application/apply-patch+yaml", NULL};
  struct engine_http_request r = {.struct_size = sizeof(r),
                                  .method = "PATCH",
                                  .url = u,
                                  .headers = hdrs,
                                  .body = body,
                                  .body_len = strlen(body)};
  struct engine_http_response resp;
  assert_int_equal(http_request(&r, &resp), 0);
  assert_int_equal(resp.status, 200);
  assert_int_equal(resp.body_len, strlen(body));
  assert_memory_equal(resp.body, body, strlen(body));
  http_response_free(&resp);
}

static void test_retry_on_503_and_drop(void **state) {
  (void)state;
  char u[128];
  url(u, sizeof(u), "/x");
  g_fail_next = 2;
  struct engine_http_request r = {
      .struct_size = sizeof(r), .method = "GET", .url = u, .max_retries = 4, .retry_base_ms = 10};
  struct engine_http_response resp;
  assert_int_equal(http_request(&r, &resp), 0);
  assert_int_equal(resp.status, 200);
  assert_int_equal(resp.attempts, 3);
  http_response_free(&resp);
  /* a dropped reused connection is retried by curl itself on a fresh one;
   * when that one is dropped too, our retry takes over */
  g_drop_next = 2;
  assert_int_equal(http_request(&r, &resp), 0);
  assert_int_equal(resp.status, 200);
  assert_int_equal(resp.attempts, 2);
  http_response_free(&resp);
  /* without retries the 503 is returned as it is */
  g_fail_next = 1;
  r.max_retries = 0;
  assert_int_equal(http_request(&r, &resp), 0);
  assert_int_equal(resp.status, 503);
  assert_int_equal(resp.attempts, 1);
  http_response_free(&resp);
  /* retries run out: the last status is reported */
  g_fail_next = 5;
  r.max_retries = 2;
  assert_int_equal(http_request(&r, &resp), 0);
  assert_int_equal(resp.status, 503);
  assert_int_equal(resp.attempts, 3);
  http_response_free(&resp);
  g_fail_next = 0;
}

static void test_no_retry_on_404(void **state) {
  (void)state;
  char u[128];
  url(u, sizeof(u), "/missing");
  pthread_mutex_lock(&g_mu);
  int before = g_requests;
  pthread_mutex_unlock(&g_mu);
  struct engine_http_request r = {
      .struct_size = sizeof(r), .method = "GET", .url = u, .max_retries = 5};
  struct engine_http_response resp;
  assert_int_equal(http_request(&r, &resp), 0);
  assert_int_equal(resp.status, 404);
  assert_int_equal(resp.attempts, 1);
  pthread_mutex_lock(&g_mu);
  assert_int_equal(g_requests, before + 1);
  pthread_mutex_unlock(&g_mu);
  http_response_free(&resp);
}

static void test_connection_refused(void **state) {
  (void)state;
  struct engine_http_request r = {.struct_size = sizeof(r),
                                  .method = "GET",
                                  .url = "http://127.0.0.1:1/",
                                  .max_retries = 1,
                                  .retry_base_ms = 10};
  struct engine_http_response resp;
  assert_int_equal(http_request(&r, &resp), ENGINE_ERROR);
  assert_int_equal(resp.status, 0);
  assert_int_equal(resp.attempts, 2);
  assert_true(strlen(resp.error) > 0);
  http_response_free(&resp);
}

static void *parallel_main(void *arg) {
  (void)arg;
  char u[128];
  url(u, sizeof(u), "/x");
  for (int i = 0; i < 20; i++) {
    struct engine_http_request r = {.struct_size = sizeof(r), .method = "GET", .url = u};
    struct engine_http_response resp;
    if (http_request(&r, &resp) != 0 || resp.status != 200 || strcmp(resp.body, "hello") != 0)
      return (void *)1;
    http_response_free(&resp);
  }
  return NULL;
}

static void test_parallel(void **state) {
  (void)state;
  pthread_t t[8];
  for (int i = 0; i < 8; i++)
    pthread_create(&t[i], NULL, parallel_main, NULL);
  for (int i = 0; i < 8; i++) {
    void *rv;
    pthread_join(t[i], &rv);
    assert_null(rv);
  }
}

/* ---- host->http_request: struct_size -------------------------------- */

static int t_create(const struct engine_host *h, void **inst) {
  *inst = (void *)h;
  return ENGINE_OK;
}

/* A host table as plugin_instance_new makes it for a plugin of ABI 1.minor. */
static struct plugin_instance *instance_of_minor(uint32_t minor) {
  static struct engine_sink_ops ops; /* never called */
  static struct engine_plugin p;
  p = (struct engine_plugin){ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_SINK, .name = "t",
                             .version = "1",       .create = t_create,         .sink = &ops};
  p.abi_minor = minor;
  struct plugin_instance *pi = NULL;
  char *err = NULL;
  assert_int_equal(plugin_instance_new(&p, "t", NULL, &pi, &err), 0);
  return pi;
}

static void test_host_response_struct_size(void **state) {
  (void)state;
  char u[128];
  url(u, sizeof(u), "/x");
  struct engine_http_request r = {.struct_size = sizeof(r), .method = "GET", .url = u};

  /* ABI 1.5: the plugin says how large its response is; the host says how
   * much it filled */
  struct plugin_instance *pi = instance_of_minor(ENGINE_ABI_MINOR);
  const struct engine_host *h = pi->host;
  struct engine_http_response resp = {.struct_size = sizeof resp};
  assert_int_equal(h->http_request(h, &r, &resp), ENGINE_OK);
  assert_int_equal(resp.status, 200);
  assert_string_equal(resp.body, "hello");
  assert_int_equal(resp.struct_size, sizeof resp);
  assert_true(ENGINE_HAS_FIELD(&resp, struct engine_http_response, struct_size));
  h->http_response_free(&resp);

  /* ... and one that forgot to set it is told so, with nothing sent */
  memset(&resp, 0, sizeof resp);
  assert_int_equal(h->http_request(h, &r, &resp), ENGINE_ERROR);
  assert_non_null(strstr(resp.error, "struct_size"));
  assert_non_null(strstr(host_last_error(h), "sizeof(struct engine_http_response)"));
  h->http_response_free(&resp);

  /* a request smaller than ABI 1.1's is refused */
  struct engine_http_request small = r;
  small.struct_size = (uint32_t)offsetof(struct engine_http_request, max_body);
  resp = (struct engine_http_response){.struct_size = sizeof resp};
  assert_int_equal(h->http_request(h, &small, &resp), ENGINE_ERROR);
  assert_non_null(strstr(resp.error, "smaller than"));
  assert_int_equal(resp.status, 0);
  h->http_response_free(&resp);
  plugin_instance_free(pi);

  /* a plugin of ABI 1.4 has the 1.1 response: nothing past it is written */
  pi = instance_of_minor(4);
  h = pi->host;
  memset(&resp, 0, sizeof resp);
  resp.struct_size = 0xdeadbeef; /* stands for whatever follows the 1.1 structure */
  assert_int_equal(h->http_request(h, &r, &resp), ENGINE_OK);
  assert_int_equal(resp.status, 200);
  assert_int_equal(resp.struct_size, 0xdeadbeef);
  h->http_response_free(&resp);
  plugin_instance_free(pi);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_and_headers), cmocka_unit_test(test_put_body),
      cmocka_unit_test(test_patch_body),      cmocka_unit_test(test_retry_on_503_and_drop),
      cmocka_unit_test(test_no_retry_on_404), cmocka_unit_test(test_connection_refused),
      cmocka_unit_test(test_parallel),        cmocka_unit_test(test_host_response_struct_size),
  };
  int rc = cmocka_run_group_tests(tests, setup, NULL);
  http_shutdown();
  return rc;
}
