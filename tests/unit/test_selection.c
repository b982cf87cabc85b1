/* --only selections (core/pipeline/selection.c) and a source's reading of
 * them in its own terms (ABI 1.8 engine_source_ops.select_globs): a glob
 * without '/' goes to the source, one with '/' stays an item-name glob, a
 * source that declines or predates 1.8 leaves it as it is; and the mongodb
 * plugin's reading ("DB", "DB.COLL", globs on either side, collection names
 * with dots or characters mongodump escapes, time-series buckets) selects
 * exactly the items of those collections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pipeline/selection.h"
#include "plugin/loader.h"

#ifndef ENGINE_TEST_PLUGIN_DIR
#error "ENGINE_TEST_PLUGIN_DIR must point at the build's plugin directory"
#endif

/* ---- a source of the test's own ------------------------------------------------------------ */

static int n_calls;

/* "X" -> "X/a" and "X/b"; "no" is declined; "err" fails after adding one */
static int fake_select(const char *glob, int (*add)(void *ud, const char *item_glob), void *ud) {
  n_calls++;
  if (strcmp(glob, "no") == 0)
    return ENGINE_NOT_FOUND;
  char buf[256];
  snprintf(buf, sizeof(buf), "%s/a", glob);
  int rc = add(ud, buf);
  if (strcmp(glob, "err") == 0)
    return ENGINE_ERROR;
  snprintf(buf, sizeof(buf), "%s/b", glob);
  return rc == ENGINE_OK ? add(ud, buf) : rc;
}

static struct engine_source_ops fake_ops(uint32_t size) {
  return (struct engine_source_ops){.struct_size = size, .select_globs = fake_select};
}

static struct selection parsed(const char *spec) {
  struct selection s;
  char *err = NULL;
  assert_int_equal(selection_parse(spec, &s, &err), 0);
  assert_null(err);
  return s;
}

static void test_parse(void **state) {
  (void)state;
  struct selection s = parsed("src");
  assert_string_equal(s.source, "src");
  assert_null(s.glob);
  assert_int_equal(s.n_globs, 0);
  assert_true(selection_match(&s, "anything/at/all"));
  selection_free(&s);

  s = parsed("src/a/b*");
  assert_string_equal(s.source, "src");
  assert_string_equal(s.glob, "a/b*");
  assert_int_equal(s.n_globs, 1);
  assert_string_equal(s.globs[0], "a/b*");
  assert_false(s.translated);
  assert_true(selection_match(&s, "a/bc"));
  assert_true(selection_match(&s, "a"));      /* a parent */
  assert_true(selection_match(&s, "a/b*/x")); /* below the glob's own name */
  assert_false(selection_match(&s, "a/c"));
  selection_free(&s);

  char *err = NULL;
  assert_int_equal(selection_parse("src/", &s, &err), -1);
  assert_non_null(strstr(err, "expected SOURCE or SOURCE/ITEM-GLOB"));
  free(err);
  err = NULL;
  assert_int_equal(selection_parse("/x", &s, &err), -1);
  free(err);
}

static void test_translate(void **state) {
  (void)state;
  struct engine_source_ops ops = fake_ops(sizeof(struct engine_source_ops));
  n_calls = 0;
  struct selection s = parsed("src/X");
  selection_translate(&s, &ops);
  assert_int_equal(n_calls, 1);
  assert_true(s.translated);
  assert_int_equal(s.n_globs, 2);
  assert_string_equal(s.globs[0], "X/a");
  assert_string_equal(s.globs[1], "X/b");
  assert_string_equal(s.glob, "X"); /* as given, for messages */
  assert_true(selection_match(&s, "X/a"));
  assert_true(selection_match(&s, "X/b/c"));
  assert_true(selection_match(&s, "X")); /* the parent of both */
  assert_false(selection_match(&s, "X/c"));
  char *r = selection_reading(&s);
  assert_string_equal(r, "read as the item globs 'X/a', 'X/b'");
  free(r);
  selection_free(&s);

  /* with '/' it is an item-name glob: the source is not asked */
  s = parsed("src/X/c");
  selection_translate(&s, &ops);
  assert_int_equal(n_calls, 1);
  assert_false(s.translated);
  assert_int_equal(s.n_globs, 1);
  assert_true(selection_match(&s, "X/c"));
  r = selection_reading(&s);
  assert_string_equal(r, "");
  free(r);
  selection_free(&s);

  /* declined, or failed: GLOB as it is, nothing of what was added kept */
  const char *as_is[] = {"no", "err"};
  for (size_t i = 0; i < 2; i++) {
    char spec[16];
    snprintf(spec, sizeof(spec), "src/%s", as_is[i]);
    s = parsed(spec);
    selection_translate(&s, &ops);
    assert_false(s.translated);
    assert_int_equal(s.n_globs, 1);
    assert_string_equal(s.globs[0], as_is[i]);
    selection_free(&s);
  }
  assert_int_equal(n_calls, 3);

  /* a whole source, no ops, or ops of a plugin older than ABI 1.8 (its
   * table ends before select_globs: never read) */
  s = parsed("src");
  selection_translate(&s, &ops);
  assert_int_equal(s.n_globs, 0);
  selection_free(&s);
  s = parsed("src/X");
  selection_translate(&s, NULL);
  assert_false(s.translated);
  struct engine_source_ops old =
      fake_ops((uint32_t)offsetof(struct engine_source_ops, select_globs));
  selection_translate(&s, &old);
  assert_false(s.translated);
  struct engine_source_ops v10 = fake_ops(ENGINE_SOURCE_OPS_V1_0_SIZE);
  selection_translate(&s, &v10);
  assert_false(s.translated);
  assert_int_equal(n_calls, 3);
  assert_string_equal(s.globs[0], "X");
  selection_free(&s);
}

/* ---- the mongodb plugin -------------------------------------------------------------------- */

static struct plugin_registry *g_reg;
static const struct engine_source_ops *g_mongo;

static int setup_mongo(void **state) {
  (void)state;
  const char *dirs[] = {ENGINE_TEST_PLUGIN_DIR};
  if (registry_load(dirs, 1, &g_reg) != 0)
    return -1;
  char *err = NULL;
  const struct engine_plugin *p = registry_find(g_reg, ENGINE_PLUGIN_SOURCE, "mongodb", &err);
  if (!p) {
    fprintf(stderr, "the mongodb plugin: %s\n", err);
    free(err);
    return -1;
  }
  g_mongo = p->source;
  return 0;
}

static int teardown_mongo(void **state) {
  (void)state;
  registry_free(g_reg);
  g_reg = NULL;
  return 0;
}

/* The item names of a backup: each collection's metadata and data (a
 * time-series collection's data is its buckets; a view has metadata only),
 * collection names escaped as mongodump escapes them. */
static const char *const items[] = {
    "shop/orders.metadata.json",
    "shop/orders.bson",
    "shop/orders_old.metadata.json",
    "shop/orders_old.bson",
    "shop/users.metadata.json",
    "shop/users.bson",
    "shop/users_archive.metadata.json",
    "shop/users_archive.bson",
    "shop/a.b.metadata.json",
    "shop/a.b.bson",
    "shop/a.metadata.json",
    "shop/a.bson",
    "shop/weather.metadata.json",
    "shop/system.buckets.weather.bson",
    "shop/recent.metadata.json",
    "shop/events%2F2024%20q1.metadata.json",
    "shop/events%2F2024%20q1.bson",
    "shop/100%25.metadata.json",
    "shop/100%25.bson",
    "shopping/users.metadata.json",
    "shopping/users.bson",
    "crm/users.metadata.json",
    "crm/users.bson",
    "crm/contacts.metadata.json",
    "crm/contacts.bson",
    NULL,
};

/* spec selects exactly the items listed in `want` (space-separated). */
static void expect(const char *spec, const char *want) {
  struct selection s = parsed(spec);
  selection_translate(&s, g_mongo);
  char got[2048] = "";
  for (size_t i = 0; items[i]; i++)
    if (selection_match(&s, items[i])) {
      if (got[0])
        strncat(got, " ", sizeof(got) - strlen(got) - 1);
      strncat(got, items[i], sizeof(got) - strlen(got) - 1);
    }
  if (strcmp(got, want) != 0)
    fail_msg("--only %s selects\n  %s\nexpected\n  %s", spec, got, want);
  selection_free(&s);
}

static void test_mongodb(void **state) {
  (void)state;
  assert_true(ENGINE_HAS_FIELD(g_mongo, struct engine_source_ops, select_globs));
  assert_non_null(g_mongo->select_globs);
  /* one collection: its metadata and data, not one whose name it starts */
  expect("mongo/shop.orders", "shop/orders.metadata.json shop/orders.bson");
  expect("mongo/shop.a", "shop/a.metadata.json shop/a.bson");
  /* a collection name with a dot: the first dot ends the database */
  expect("mongo/shop.a.b", "shop/a.b.metadata.json shop/a.b.bson");
  /* a database, not one whose name it starts */
  expect("mongo/crm", "crm/users.metadata.json crm/users.bson crm/contacts.metadata.json "
                      "crm/contacts.bson");
  /* globs on the collection, on the database, on both */
  expect("mongo/shop.us*", "shop/users.metadata.json shop/users.bson "
                           "shop/users_archive.metadata.json shop/users_archive.bson");
  expect("mongo/*.users", "shop/users.metadata.json shop/users.bson "
                          "shopping/users.metadata.json shopping/users.bson "
                          "crm/users.metadata.json crm/users.bson");
  expect("mongo/sh*p.users", "shop/users.metadata.json shop/users.bson");
  expect("mongo/shop*", "shop/orders.metadata.json shop/orders.bson shop/orders_old.metadata.json "
                        "shop/orders_old.bson shop/users.metadata.json shop/users.bson "
                        "shop/users_archive.metadata.json shop/users_archive.bson "
                        "shop/a.b.metadata.json shop/a.b.bson shop/a.metadata.json shop/a.bson "
                        "shop/weather.metadata.json shop/system.buckets.weather.bson "
                        "shop/recent.metadata.json shop/events%2F2024%20q1.metadata.json "
                        "shop/events%2F2024%20q1.bson shop/100%25.metadata.json "
                        "shop/100%25.bson shopping/users.metadata.json shopping/users.bson");
  expect("mongo/crm.[cu]*", "crm/users.metadata.json crm/users.bson crm/contacts.metadata.json "
                            "crm/contacts.bson");
  expect("mongo/crm.[!u]*", "crm/contacts.metadata.json crm/contacts.bson");
  expect("mongo/shop.a?b", "shop/a.b.metadata.json shop/a.b.bson");
  /* a time-series collection's data is its buckets; a view has metadata */
  expect("mongo/shop.weather", "shop/weather.metadata.json shop/system.buckets.weather.bson");
  expect("mongo/shop.recent", "shop/recent.metadata.json");
  /* characters mongodump escapes in file names, literal or after '\' */
  expect("mongo/shop.100%", "shop/100%25.metadata.json shop/100%25.bson");
  expect("mongo/shop.100\\%", "shop/100%25.metadata.json shop/100%25.bson");
  expect("mongo/shop.events*2024 q1",
         "shop/events%2F2024%20q1.metadata.json shop/events%2F2024%20q1.bson");
  /* the item-name form keeps working */
  expect("mongo/shop/orders.*", "shop/orders.metadata.json shop/orders.bson");
  expect("mongo/shop/events%2F2024%20q1.bson", "shop/events%2F2024%20q1.bson");
  expect("mongo/crm/users.bson", "crm/users.bson");
  /* nothing */
  expect("mongo/shop.nosuch", "");
  expect("mongo/nosuch", "");
  expect("mongo/shop.orders.bson", ""); /* a collection "orders.bson" */
  /* not DB.COLL: an item-name glob, as written */
  struct selection s = parsed("mongo/.x");
  selection_translate(&s, g_mongo);
  assert_false(s.translated);
  selection_free(&s);
  s = parsed("mongo/shop.");
  selection_translate(&s, g_mongo);
  assert_false(s.translated);
  selection_free(&s);
  /* what a message says */
  s = parsed("mongo/shop.orders");
  selection_translate(&s, g_mongo);
  char *r = selection_reading(&s);
  assert_string_equal(r, "read as the item globs 'shop/orders.metadata.json', "
                         "'shop/orders.bson', 'shop/system.buckets.orders.bson'");
  free(r);
  selection_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_translate),
      cmocka_unit_test_setup_teardown(test_mongodb, setup_mongo, teardown_mongo),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
