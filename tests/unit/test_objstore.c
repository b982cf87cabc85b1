/* The sinks' shared object-store layer (plugins/sinks/objstore): which bytes
 * a ranged read gives, what each answer to a Range request means (206, a
 * 200 that ignored Range, a short body, an empty object, 404, 416, other
 * statuses; collected and streamed), the body collector across retries,
 * percent-encoding and canonical (SigV4) query strings, base64/base64url,
 * digests, number parsing, the retryable statuses and the host check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objstore.h"

static void assert_contains(const char *hay, const char *needle) {
  if (!hay || !strstr(hay, needle))
    fail_msg("expected \"%s\" to contain \"%s\"", hay ? hay : "(null)", needle);
}

/* ---- ranges ------------------------------------------------------------ */

static void test_range_want(void **state) {
  (void)state;
  uint64_t w = 99;
  assert_int_equal(objstore_range_want(10, 0, 0, &w), 0);
  assert_int_equal(w, 10);
  assert_int_equal(objstore_range_want(10, 4, 0, &w), 0);
  assert_int_equal(w, 6);
  assert_int_equal(objstore_range_want(10, 10, 0, &w), 0); /* from the very end: nothing */
  assert_int_equal(w, 0);
  assert_int_equal(objstore_range_want(10, 2, 8, &w), 0);
  assert_int_equal(w, 8);
  assert_int_equal(objstore_range_want(0, 0, 0, &w), 0);
  assert_int_equal(w, 0);
  assert_int_equal(objstore_range_want(10, 11, 0, &w), -1);
  assert_int_equal(objstore_range_want(10, 2, 9, &w), -1);
  assert_int_equal(objstore_range_want(10, 10, 1, &w), -1);
  assert_int_equal(objstore_range_want(10, UINT64_MAX, UINT64_MAX, &w), -1);

  char why[160];
  objstore_range_why(10, 8, 4, why, sizeof why);
  assert_string_equal(why, "it is 10 bytes, but the range [8, +4) was requested");
  objstore_range_why(10, 12, 0, why, sizeof why);
  assert_string_equal(why, "it is 10 bytes, but reading from offset 12 to the end was requested");
}

static void test_read_init_range_header(void **state) {
  (void)state;
  struct objstore_read r;
  char why[128];
  assert_int_equal(objstore_read_init(&r, 0, 0, NULL, NULL, why, sizeof why), 0);
  assert_string_equal(r.range, "");
  objstore_read_free(&r);
  assert_int_equal(objstore_read_init(&r, 5, 0, NULL, NULL, why, sizeof why), 0);
  assert_string_equal(r.range, "Range: bytes=5-");
  objstore_read_free(&r);
  assert_int_equal(objstore_read_init(&r, 5, 10, NULL, NULL, why, sizeof why), 0);
  assert_string_equal(r.range, "Range: bytes=5-14");
  assert_true(r.body.limit >= 10 + OBJSTORE_ERR_ROOM); /* room for an error document */
  objstore_read_free(&r);
  assert_int_equal(objstore_read_init(&r, 0, 1, NULL, NULL, why, sizeof why), 0);
  assert_string_equal(r.range, "Range: bytes=0-0");
  objstore_read_free(&r);

  assert_int_equal(objstore_read_init(&r, UINT64_MAX, 2, NULL, NULL, why, sizeof why), -1);
  assert_contains(why, "out of range");
  objstore_read_free(&r);
  assert_int_equal(objstore_read_init(&r, 0, UINT64_MAX - 1, NULL, NULL, why, sizeof why), -1);
  assert_contains(why, "does not fit in memory");
  objstore_read_free(&r);
}

/* Feeds a body as a server would, in chunks of at most `chunk` bytes. */
static int feed(struct objstore_read *r, const char *data, size_t n, size_t chunk) {
  for (size_t o = 0; o < n; o += chunk) {
    size_t k = n - o < chunk ? n - o : chunk;
    if (objstore_body_cb(&r->body, data + o, k) != 0)
      return -1;
  }
  return 0;
}

static enum objstore_verdict answer(uint64_t off, uint64_t len, long status, const char *body,
                                    char **out, size_t *out_len, char *why, size_t why_len) {
  struct objstore_read r;
  assert_int_equal(objstore_read_init(&r, off, len, NULL, NULL, why, why_len), 0);
  assert_int_equal(feed(&r, body, strlen(body), 3), 0);
  enum objstore_verdict v = objstore_read_answer(&r, status, why, why_len);
  *out = NULL;
  *out_len = 0;
  if (v == OBJSTORE_DATA) {
    *out = objstore_read_take(&r, out_len);
    assert_non_null(*out);
  }
  objstore_read_free(&r);
  return v;
}

static void test_read_answers(void **state) {
  (void)state;
  char why[256], *b;
  size_t n;
  /* 206: exactly the range */
  assert_int_equal(answer(2, 4, 206, "cdef", &b, &n, why, sizeof why), OBJSTORE_DATA);
  assert_int_equal(n, 4);
  assert_memory_equal(b, "cdef", 4);
  free(b);
  /* 206 with more than asked: the range is what was asked */
  assert_int_equal(answer(2, 4, 206, "cdefgh", &b, &n, why, sizeof why), OBJSTORE_DATA);
  assert_int_equal(n, 4);
  free(b);
  /* 206 short: the object ends early */
  assert_int_equal(answer(2, 4, 206, "cd", &b, &n, why, sizeof why), OBJSTORE_FAILED);
  assert_string_equal(why, "the object ends early: 2 of 4 bytes received");
  /* a 200 to a ranged request: the server sent the whole object */
  assert_int_equal(answer(2, 4, 200, "abcdefgh", &b, &n, why, sizeof why), OBJSTORE_DATA);
  assert_int_equal(n, 4);
  assert_memory_equal(b, "cdef", 4);
  free(b);
  assert_int_equal(answer(3, 0, 200, "abcdefgh", &b, &n, why, sizeof why), OBJSTORE_DATA);
  assert_int_equal(n, 5);
  assert_memory_equal(b, "defgh", 5);
  free(b);
  /* ... and shorter than the offset, or than the range */
  assert_int_equal(answer(9, 0, 200, "abcdefgh", &b, &n, why, sizeof why), OBJSTORE_FAILED);
  assert_string_equal(why, "it is 8 bytes, but reading from offset 9 to the end was requested");
  assert_int_equal(answer(6, 4, 200, "abcdefgh", &b, &n, why, sizeof why), OBJSTORE_FAILED);
  assert_string_equal(why, "it is 8 bytes, but the range [6, +4) was requested");
  /* the whole object, and an empty one (a 1-byte allocation, 0 bytes) */
  assert_int_equal(answer(0, 0, 200, "abc", &b, &n, why, sizeof why), OBJSTORE_DATA);
  assert_int_equal(n, 3);
  free(b);
  assert_int_equal(answer(0, 0, 200, "", &b, &n, why, sizeof why), OBJSTORE_DATA);
  assert_int_equal(n, 0);
  free(b);
  /* 404, 416 and the rest */
  assert_int_equal(answer(0, 4, 404, "<Error/>", &b, &n, why, sizeof why), OBJSTORE_ABSENT);
  assert_int_equal(answer(8, 0, 416, "", &b, &n, why, sizeof why), OBJSTORE_NEED_SIZE);
  assert_int_equal(answer(0, 4, 403, "<Error/>", &b, &n, why, sizeof why), OBJSTORE_STATUS);
  assert_int_equal(answer(0, 0, 500, "", &b, &n, why, sizeof why), OBJSTORE_STATUS);
}

static void test_read_416_sized(void **state) {
  (void)state;
  char why[256];
  struct objstore_read r;
  size_t n = 99;
  /* reading from exactly the end of the object: nothing, not an error */
  assert_int_equal(objstore_read_init(&r, 8, 0, NULL, NULL, why, sizeof why), 0);
  assert_int_equal(objstore_read_answer(&r, 416, why, sizeof why), OBJSTORE_NEED_SIZE);
  assert_int_equal(objstore_read_sized(&r, 8, why, sizeof why), OBJSTORE_DATA);
  void *b = objstore_read_take(&r, &n);
  assert_non_null(b);
  assert_int_equal(n, 0);
  free(b);
  objstore_read_free(&r);
  /* past the end, or a range from the end */
  assert_int_equal(objstore_read_init(&r, 9, 0, NULL, NULL, why, sizeof why), 0);
  assert_int_equal(objstore_read_sized(&r, 8, why, sizeof why), OBJSTORE_FAILED);
  assert_string_equal(why, "it is 8 bytes, but reading from offset 9 to the end was requested");
  objstore_read_free(&r);
  assert_int_equal(objstore_read_init(&r, 8, 2, NULL, NULL, why, sizeof why), 0);
  assert_int_equal(objstore_read_sized(&r, 8, why, sizeof why), OBJSTORE_FAILED);
  assert_string_equal(why, "it is 8 bytes, but the range [8, +2) was requested");
  objstore_read_free(&r);
}

struct sink_buf {
  char data[64];
  size_t len;
  int resets, stop_after;
};

static int on_data(void *ud, const void *buf, size_t n) {
  struct sink_buf *s = ud;
  if (buf == NULL) {
    s->len = 0;
    s->resets++;
    return 0;
  }
  assert_true(s->len + n <= sizeof s->data);
  memcpy(s->data + s->len, buf, n);
  s->len += n;
  return s->stop_after > 0 && s->len >= (size_t)s->stop_after;
}

static void test_read_streamed(void **state) {
  (void)state;
  char why[256];
  struct objstore_read r;
  struct sink_buf sb = {.len = 0};
  /* 206: every byte handed on, nothing collected beyond the error room */
  assert_int_equal(objstore_read_init(&r, 2, 4, on_data, &sb, why, sizeof why), 0);
  assert_string_equal(r.range, "Range: bytes=2-5");
  assert_int_equal(feed(&r, "cdef", 4, 1), 0);
  assert_int_equal(objstore_read_answer(&r, 206, why, sizeof why), OBJSTORE_DATA);
  assert_int_equal(sb.len, 4);
  assert_memory_equal(sb.data, "cdef", 4);
  objstore_read_free(&r);
  /* a retry starts over: the consumer is told */
  sb = (struct sink_buf){.len = 0};
  assert_int_equal(objstore_read_init(&r, 2, 4, on_data, &sb, why, sizeof why), 0);
  assert_int_equal(feed(&r, "cd", 2, 2), 0);
  assert_int_equal(objstore_body_cb(&r.body, NULL, 0), 0);
  assert_int_equal(sb.resets, 1);
  assert_int_equal(r.body.total, 0);
  assert_int_equal(feed(&r, "cdef", 4, 3), 0);
  assert_int_equal(objstore_read_answer(&r, 206, why, sizeof why), OBJSTORE_DATA);
  assert_int_equal(sb.len, 4);
  objstore_read_free(&r);
  /* short, and a 200 that ignored Range: the bytes are already handed on */
  assert_int_equal(objstore_read_init(&r, 2, 4, on_data, &sb, why, sizeof why), 0);
  assert_int_equal(feed(&r, "cd", 2, 2), 0);
  assert_int_equal(objstore_read_answer(&r, 206, why, sizeof why), OBJSTORE_FAILED);
  assert_string_equal(why, "the object ends early: 2 of 4 bytes received");
  objstore_read_free(&r);
  assert_int_equal(objstore_read_init(&r, 2, 4, on_data, &sb, why, sizeof why), 0);
  assert_int_equal(feed(&r, "abcdefgh", 8, 8), 0);
  assert_int_equal(objstore_read_answer(&r, 200, why, sizeof why), OBJSTORE_FAILED);
  assert_string_equal(why, "the server ignored the Range header");
  objstore_read_free(&r);
  /* an error document stays readable for the sink's message */
  assert_int_equal(objstore_read_init(&r, 0, 4, on_data, &sb, why, sizeof why), 0);
  assert_int_equal(feed(&r, "<Error>Denied</Error>", 21, 5), 0);
  assert_int_equal(objstore_read_answer(&r, 403, why, sizeof why), OBJSTORE_STATUS);
  assert_int_equal(r.body.len, 21);
  assert_memory_equal(r.body.p, "<Error>Denied</Error>", 21);
  objstore_read_free(&r);
  /* the consumer stops the transfer */
  sb = (struct sink_buf){.stop_after = 2};
  assert_int_equal(objstore_read_init(&r, 0, 4, on_data, &sb, why, sizeof why), 0);
  assert_int_equal(feed(&r, "abcd", 4, 2), -1);
  assert_int_equal(objstore_body_stopped(&r.body, why, sizeof why), 0);
  objstore_read_free(&r);
}

static void test_body_collector(void **state) {
  (void)state;
  char why[128];
  struct objstore_body b = {.limit = 8};
  assert_int_equal(objstore_body_cb(&b, "12345", 5), 0);
  assert_int_equal(objstore_body_cb(&b, "6789", 4), 1); /* past the limit */
  assert_true(b.overflow);
  assert_int_equal(objstore_body_stopped(&b, why, sizeof why), 1);
  assert_string_equal(why, "the response is larger than the 8 bytes expected");
  /* a retry forgets the overflow of the attempt before (the s3 and gcs
   * sinks used to differ here) */
  assert_int_equal(objstore_body_cb(&b, NULL, 0), 0);
  assert_false(b.overflow);
  assert_int_equal(b.len, 0);
  assert_int_equal(objstore_body_cb(&b, "abcdefgh", 8), 0);
  assert_int_equal(b.len, 8);
  assert_int_equal(b.total, 8);
  assert_memory_equal(b.p, "abcdefgh", 8);
  assert_int_equal(objstore_body_stopped(&b, why, sizeof why), 0);
  free(b.p);

  /* growth well past the first allocation */
  struct objstore_body g = {.limit = SIZE_MAX};
  char chunk[1000];
  memset(chunk, 'x', sizeof chunk);
  for (int i = 0; i < 300; i++)
    assert_int_equal(objstore_body_cb(&g, chunk, sizeof chunk), 0);
  assert_int_equal(g.len, 300000);
  assert_true(g.cap >= g.len);
  free(g.p);
}

/* ---- encodings ----------------------------------------------------------- */

static void test_uri_encode(void **state) {
  (void)state;
  char *e = objstore_uri_encode("a b/c~d_e-f.g+h%i", 17, 0);
  assert_string_equal(e, "a%20b%2Fc~d_e-f.g%2Bh%25i");
  free(e);
  e = objstore_uri_encode("data/ab/x y", 11, 1);
  assert_string_equal(e, "data/ab/x%20y");
  free(e);
  e = objstore_uri_encode("\xc3\xa9\x01", 3, 1); /* UTF-8 and control bytes, upper-case hex */
  assert_string_equal(e, "%C3%A9%01");
  free(e);
  e = objstore_uri_encode("", 0, 0);
  assert_string_equal(e, "");
  free(e);
}

static void test_query_canonical(void **state) {
  (void)state;
  /* sorted by name, then value; encoded; value-less parameters as "name=" */
  const char *kv[] = {"uploadId", "a/b c", "partNumber", "2", "uploads", NULL, "list-type", "2"};
  char *q = objstore_query(kv, 4);
  assert_string_equal(q, "list-type=2&partNumber=2&uploadId=a%2Fb%20c&uploads=");
  free(q);
  const char *dup[] = {"prefix", "b", "prefix", "a", "delete", ""};
  q = objstore_query(dup, 3);
  assert_string_equal(q, "delete=&prefix=a&prefix=b");
  free(q);
  const char *token[] = {"continuation-token", "1/+=x", "prefix", "data/ab"};
  q = objstore_query(token, 2);
  assert_string_equal(q, "continuation-token=1%2F%2B%3Dx&prefix=data%2Fab");
  free(q);
  q = objstore_query(NULL, 0);
  assert_string_equal(q, "");
  free(q);
}

static void test_base64(void **state) {
  (void)state;
  /* RFC 4648 section 10 */
  static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
    char *s = objstore_base64(in[i], strlen(in[i]));
    char *u = objstore_base64url(in[i], strlen(in[i]));
    assert_string_equal(s, std[i]);
    assert_string_equal(u, url[i]);
    free(s);
    free(u);
  }
  /* the URL alphabet: '+' and '/' become '-' and '_' */
  static const unsigned char bin[] = {0xfb, 0xff, 0xbf};
  char *s = objstore_base64(bin, 3), *u = objstore_base64url(bin, 3);
  assert_string_equal(s, "+/+/");
  assert_string_equal(u, "-_-_");
  free(s);
  free(u);
}

static void test_digests(void **state) {
  (void)state;
  char sha[OBJSTORE_SHA256_HEX_LEN + 1], hex[OBJSTORE_MD5_HEX_LEN + 1],
      b64[OBJSTORE_MD5_B64_LEN + 1];
  assert_int_equal(objstore_sha256_hex(NULL, 0, sha), 0);
  assert_string_equal(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert_int_equal(objstore_md5(NULL, 0, hex, b64), 0);
  assert_string_equal(hex, "d41d8cd98f00b204e9800998ecf8427e");
  assert_string_equal(b64, "1B2M2Y8AsgTpgAmY7PhCfg==");
  assert_int_equal(objstore_md5("abc", 3, NULL, b64), 0);
  assert_string_equal(b64, "kAFQmDzST7DWlj99KOF/cg==");
  assert_int_equal(objstore_md5("abc", 3, hex, NULL), 0);
  assert_string_equal(hex, "900150983cd24fb0d6963f7d28e17f72");
}

static void test_parse_u64(void **state) {
  (void)state;
  uint64_t v = 0;
  assert_int_equal(objstore_parse_u64("0", &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(objstore_parse_u64("18446744073709551615", &v), 0);
  assert_true(v == UINT64_MAX);
  static const char *const bad[] = {"18446744073709551616", "-1", "+1", " 1", "1 ", "1x", "", "x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (objstore_parse_u64(bad[i], &v) != -1)
      fail_msg("'%s' was taken as a number", bad[i]);
  assert_int_equal(objstore_parse_u64(NULL, &v), -1);
}

static void test_wipe_free(void **state) {
  (void)state;
  objstore_wipe_free(NULL);
  char *s = strdup("secret");
  objstore_wipe_free(s); /* ASan would report a leak or a double free */
}

static void test_retryable(void **state) {
  (void)state;
  static const long yes[] = {408, 429, 500, 502, 503, 504};
  static const long no[] = {0, 200, 206, 301, 400, 401, 403, 404, 409, 412, 416, 501, 505};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
    assert_true(engine_http_retryable(yes[i]));
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
    if (engine_http_retryable(no[i]))
      fail_msg("HTTP %ld must not be retried", no[i]);
}

/* ---- the host check -------------------------------------------------------- */

static char g_err[256];

static void fake_set_error(const struct engine_host *h, const char *fmt, ...) {
  (void)h;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
}

static int fake_http(const struct engine_host *h, const struct engine_http_request *req,
                     struct engine_http_response *resp) {
  (void)h, (void)req, (void)resp;
  return ENGINE_ERROR;
}
static void fake_free(struct engine_http_response *resp) {
  (void)resp;
}
static char *fake_header(const struct engine_http_response *resp, const char *name) {
  (void)resp, (void)name;
  return NULL;
}

static void test_need_http(void **state) {
  (void)state;
  struct engine_host h = {.abi_major = 1,
                          .abi_minor = 1,
                          .struct_size = sizeof h,
                          .set_error = fake_set_error,
                          .http_request = fake_http,
                          .http_response_free = fake_free,
                          .http_header = fake_header};
  assert_int_equal(objstore_need_http(&h, "s3"), ENGINE_OK);
  /* an ABI 1.0 host: its table ends before http_request */
  h.struct_size = (uint32_t)offsetof(struct engine_host, http_request);
  g_err[0] = '\0';
  assert_int_equal(objstore_need_http(&h, "s3"), ENGINE_ERROR);
  assert_contains(g_err, "HTTP client (plugin ABI 1.1)");
  assert_contains(g_err, "s3 sink");
  h.struct_size = sizeof h;
  h.abi_minor = 0;
  assert_int_equal(objstore_need_http(&h, "gcs"), ENGINE_ERROR);
  assert_contains(g_err, "gcs sink");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_range_want),    cmocka_unit_test(test_read_init_range_header),
      cmocka_unit_test(test_read_answers),  cmocka_unit_test(test_read_416_sized),
      cmocka_unit_test(test_read_streamed), cmocka_unit_test(test_body_collector),
      cmocka_unit_test(test_uri_encode),    cmocka_unit_test(test_query_canonical),
      cmocka_unit_test(test_base64),        cmocka_unit_test(test_digests),
      cmocka_unit_test(test_parse_u64),     cmocka_unit_test(test_wipe_free),
      cmocka_unit_test(test_retryable),     cmocka_unit_test(test_need_http),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
