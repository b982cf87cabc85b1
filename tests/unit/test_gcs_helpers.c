/* The gcs sink's reading of error bodies (plugins/sinks/gcs/errors.c): the
 * JSON API's error.message, the OAuth2 token endpoint's error and
 * error_description, and a printable one-line excerpt of anything else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "gcs_int.h"

static const char *text(const char *body, char *buf, size_t n) {
  return gcs_error_text(body, body ? strlen(body) : 0, buf, n);
}

static void test_json_api_error(void **state) {
  (void)state;
  char buf[512];
  assert_string_equal(
      text("{\"error\": {\"code\": 403, \"message\": \"x@y does not have storage.objects.create "
           "access\", \"errors\": []}}",
           buf, sizeof buf),
      "x@y does not have storage.objects.create access");
  /* a message spread over lines becomes one line */
  assert_string_equal(text("{\"error\": {\"message\": \"two\\n  lines\"}}", buf, sizeof buf),
                      "two lines");
}

static void test_oauth_error(void **state) {
  (void)state;
  char buf[512];
  assert_string_equal(text("{\"error\": \"invalid_grant\", \"error_description\": \"Invalid JWT "
                           "Signature.\"}",
                           buf, sizeof buf),
                      "invalid_grant: Invalid JWT Signature.");
  assert_string_equal(text("{\"error\": \"invalid_grant\"}", buf, sizeof buf), "invalid_grant");
}

static void test_other_bodies(void **state) {
  (void)state;
  char buf[512];
  assert_string_equal(text(NULL, buf, sizeof buf), "");
  assert_string_equal(text("", buf, sizeof buf), "");
  /* not JSON, or JSON without an error: an excerpt, whitespace folded, control bytes shown as ? */
  assert_string_equal(text("<html>\r\n  <b>Bad\x01 gateway</b>\n</html>\n", buf, sizeof buf),
                      "<html> <b>Bad? gateway</b> </html>");
  assert_string_equal(text("{\"kind\": \"storage#object\"}", buf, sizeof buf),
                      "{\"kind\": \"storage#object\"}");
  /* long bodies are cut, and say so */
  char big[1000];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  const char *t = text(big, buf, sizeof buf);
  assert_true(strlen(t) < 200);
  assert_non_null(strstr(t, "..."));
  /* a small buffer is never overrun */
  char small[8];
  assert_true(strlen(text("{\"error\": {\"message\": \"a long message\"}}", small, sizeof small)) <
              sizeof small);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_api_error),
      cmocka_unit_test(test_oauth_error),
      cmocka_unit_test(test_other_bodies),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
