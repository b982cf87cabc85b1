/* Item trees (core/repo/tree.c): the checks an item must pass before it is
 * restored (item_name_problem, tree_item_problem, with and without an
 * index), byte strings in JSON (json_set_bytes / json_get_bytes), the order
 * sources emit items in (tree_name_cmp) and printable names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "repo/index.h"
#include "repo/tree.h"

static void assert_name_ok(const char *name) {
  const char *why = item_name_problem(name, strlen(name));
  if (why)
    fail_msg("'%s' refused: %s", name, why);
}

static void assert_name_bad(const char *name, size_t len, const char *want) {
  const char *why = item_name_problem(name, len);
  assert_non_null(why);
  assert_string_equal(why, want);
}

static void test_item_name_problem(void **state) {
  (void)state;
  assert_name_ok("a");
  assert_name_ok("a/b/c");
  assert_name_ok(".hidden");
  assert_name_ok("a/.b/..c/...");
  assert_name_ok("a..b");
  assert_name_ok("name with spaces/\xff\xfe not utf-8");
  assert_name_bad("", 0, "empty name");
  assert_name_bad("/etc/passwd", 11, "absolute name");
  assert_name_bad("a//b", 4, "empty path component");
  assert_name_bad("a/", 2, "empty path component");
  assert_name_bad(".", 1, "'.' path component");
  assert_name_bad("a/./b", 5, "'.' path component");
  assert_name_bad("..", 2, "'..' path component");
  assert_name_bad("a/../../etc", 11, "'..' path component");
  assert_name_bad("a/..", 4, "'..' path component");
  assert_name_bad("a\0b", 3, "name contains a NUL byte");
}

static void test_bytes_roundtrip(void **state) {
  (void)state;
  json_t *o = json_object();
  /* valid UTF-8 is stored as a string under the key itself */
  json_set_bytes(o, "name", "caf\xc3\xa9/x", 7);
  assert_string_equal(json_string_value(json_object_get(o, "name")), "caf\xc3\xa9/x");
  assert_null(json_object_get(o, "name_b64"));
  size_t len = 0;
  char *b = json_get_bytes(o, "name", &len);
  assert_int_equal(len, 7);
  assert_memory_equal(b, "caf\xc3\xa9/x", 8); /* NUL-terminated */
  free(b);
  /* anything else as base64 under key_b64 */
  const char raw[] = {'a', '\xff', 'b', '\xc3', '\0', 'z'};
  json_set_bytes(o, "target", raw, sizeof(raw));
  assert_null(json_object_get(o, "target"));
  assert_non_null(json_string_value(json_object_get(o, "target_b64")));
  b = json_get_bytes(o, "target", &len);
  assert_int_equal(len, sizeof(raw));
  assert_memory_equal(b, raw, sizeof(raw));
  assert_int_equal(b[len], '\0');
  free(b);
  /* absent, or base64 that does not decode */
  assert_null(json_get_bytes(o, "missing", &len));
  json_object_set_new(o, "bad_b64", json_string("!!not base64!!"));
  assert_null(json_get_bytes(o, "bad", &len));
  /* len is optional */
  b = json_get_bytes(o, "name", NULL);
  assert_string_equal(b, "caf\xc3\xa9/x");
  free(b);
  json_decref(o);
}

/* tree_item_problem on the JSON text of one tree line. */
static char *problem_of(const char *line, struct index *ix, char **name) {
  json_error_t je;
  json_t *item = json_loads(line, 0, &je);
  if (item == NULL)
    fail_msg("test line is not JSON: %s", je.text);
  char *why = tree_item_problem(item, ix, name);
  json_decref(item);
  return why;
}

static void expect_problem(const char *line, struct index *ix, const char *want_part) {
  char *name = NULL;
  char *why = problem_of(line, ix, &name);
  if (why == NULL || strstr(why, want_part) == NULL)
    fail_msg("%s: expected a problem with '%s', got '%s'", line, want_part, why ? why : "(none)");
  assert_non_null(name);
  free(name);
  free(why);
}

#define HEX_A "aa00000000000000000000000000000000000000000000000000000000000000"
#define HEX_B "bb00000000000000000000000000000000000000000000000000000000000000"
#define HEX_C "cc00000000000000000000000000000000000000000000000000000000000000"

static void test_tree_item_problem(void **state) {
  (void)state;
  char *name = NULL;
  /* sound items, no index */
  assert_null(problem_of("{\"name\":\"a/b\",\"type\":\"file\",\"size\":0}", NULL, &name));
  assert_string_equal(name, "a/b");
  free(name);
  assert_null(problem_of("{\"name\":\"d\",\"type\":\"dir\",\"size\":0,\"meta\":{\"mode\":493}}",
                         NULL, NULL));
  assert_null(problem_of("{\"name\":\"f\",\"type\":\"file\",\"size\":5,\"chunks\":[\"" HEX_A "\"]}",
                         NULL, NULL));
  /* a name that is not UTF-8 (name_b64): printable, every odd byte escaped */
  name = NULL;
  assert_null(problem_of("{\"name_b64\":\"YS//Cg==\",\"type\":\"file\",\"size\":0}", NULL, &name));
  assert_string_equal(name, "a/\\xff\\n");
  free(name);

  /* what makes an item damaged */
  name = NULL;
  char *why = problem_of("{\"type\":\"file\",\"size\":0}", NULL, &name);
  assert_string_equal(why, "the item has no name");
  assert_string_equal(name, "?");
  free(why);
  free(name);
  expect_problem("{\"name\":\"../x\",\"type\":\"file\",\"size\":0}", NULL,
                 "unsafe name ('..' path component)");
  expect_problem("{\"name\":\"/x\",\"type\":\"file\",\"size\":0}", NULL, "unsafe name (absolute");
  expect_problem("{\"name\":\"x\",\"type\":\"socket\",\"size\":0}", NULL, "unknown item type");
  expect_problem("{\"name\":\"x\",\"size\":0}", NULL, "unknown item type");
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":-1}", NULL, "no valid size");
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":\"12\"}", NULL, "no valid size");
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":0,\"meta\":[]}", NULL,
                 "metadata is not an object");
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":0,\"chunks\":{}}", NULL,
                 "chunk list is not an array");
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":0,\"chunks\":[\"" HEX_A "\",\"abc\"]}",
                 NULL, "malformed chunk id at position 1");
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":0,\"chunks\":[\"" HEX_A
                 "\",\"zz00000000000000000000000000000000000000000000000000000000000000\"]}",
                 NULL, "malformed chunk id at position 1");

  /* with an index: chunks must be stored data blobs whose sizes add up */
  struct index *ix = index_new();
  unsigned char id[32], pid[32] = {1};
  uint32_t p = index_add_pack(ix, pid);
  memset(id, 0, sizeof(id));
  id[0] = 0xaa;
  index_put(ix, id, p, 0, 10, 3, BLOB_DATA);
  id[0] = 0xbb;
  index_put(ix, id, p, 10, 10, 4, BLOB_TREE);
  id[0] = 0xcc;
  assert_int_equal(index_claim(ix, id, BLOB_DATA), 1); /* pending: not stored yet */
  assert_null(problem_of("{\"name\":\"x\",\"type\":\"file\",\"size\":6,\"chunks\":[\"" HEX_A
                         "\",\"" HEX_A "\"]}",
                         ix, NULL));
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":4,\"chunks\":[\"" HEX_A "\"]}", ix,
                 "its chunks hold 3 bytes but its size is 4");
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":4,\"chunks\":[\"" HEX_B "\"]}", ix,
                 "chunk bb00000000000000 is a tree blob, not data");
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":0,\"chunks\":[\"" HEX_C "\"]}", ix,
                 "chunk cc00000000000000 is not in the index");
  expect_problem("{\"name\":\"x\",\"type\":\"file\",\"size\":0,\"chunks\":[\"" HEX_A
                 "\",\"dd00000000000000000000000000000000000000000000000000000000000000\"]}",
                 ix, "chunk dd00000000000000 is not in the index");
  index_free(ix);
}

static int sign(int v) {
  return (v > 0) - (v < 0);
}

static int cmp(const char *a, const char *b) {
  return sign(tree_name_cmp(a, strlen(a), b, strlen(b)));
}

static void test_tree_name_cmp(void **state) {
  (void)state;
  assert_int_equal(cmp("a", "a"), 0);
  assert_int_equal(cmp("a/b", "a/b"), 0);
  assert_int_equal(cmp("", ""), 0);
  /* a parent before its children, and before every other name below it */
  assert_int_equal(cmp("a", "a/b"), -1);
  assert_int_equal(cmp("a/b", "a"), 1);
  assert_int_equal(cmp("a/b", "a/b/c"), -1);
  /* component by component: "a/z" comes before "a.b" and "a0" (bytewise,
   * '.' and '0' sort around '/', which would split a directory's children) */
  assert_int_equal(cmp("a/z", "a.b"), -1);
  assert_int_equal(cmp("a.b", "a/z"), 1);
  assert_int_equal(cmp("a/z", "a0"), -1);
  assert_int_equal(cmp("a/z/y", "a-b"), -1);
  /* within a component, bytewise (unsigned) and a prefix first */
  assert_int_equal(cmp("ab", "abc"), -1);
  assert_int_equal(cmp("abc", "abd"), -1);
  assert_int_equal(cmp("a/B", "a/b"), -1);
  assert_int_equal(cmp("x/\xff", "x/a"), 1);
  assert_int_equal(cmp("d/ab/c", "d/abc"), -1);
  assert_int_equal(cmp("", "a"), -1);

  /* a sorted listing keeps every directory's subtree together */
  const char *sorted[] = {"a", "a/b", "a/b/c", "a/b.d", "a/bc", "a-x", "a.b", "a0", "b", "b/a"};
  size_t n = sizeof(sorted) / sizeof(*sorted);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++)
      if (cmp(sorted[i], sorted[j]) != sign((int)i - (int)j))
        fail_msg("tree_name_cmp('%s', '%s') = %d, expected %d", sorted[i], sorted[j],
                 cmp(sorted[i], sorted[j]), sign((int)i - (int)j));
}

static void test_printable_name_and_types(void **state) {
  (void)state;
  char *p = printable_name("ok\nx\x01\x7f\xc3\xa9", 8);
  assert_string_equal(p, "ok\\nx\\x01\\x7f\\xc3\\xa9");
  free(p);
  p = printable_name("", 0);
  assert_string_equal(p, "");
  free(p);
  for (int t = 1; t <= 6; t++)
    assert_int_equal(item_type_from_name(item_type_name((enum engine_item_type)t)), t);
  assert_int_equal(item_type_from_name("nope"), -1);
  assert_int_equal(item_type_from_name(NULL), -1);
  assert_string_equal(item_type_name((enum engine_item_type)99), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_item_name_problem),        cmocka_unit_test(test_bytes_roundtrip),
      cmocka_unit_test(test_tree_item_problem),        cmocka_unit_test(test_tree_name_cmp),
      cmocka_unit_test(test_printable_name_and_types),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
