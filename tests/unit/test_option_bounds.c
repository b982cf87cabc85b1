/* Option bounds (plugin ABI 1.5, option_bounds): the pipeline checker
 * refuses an INT, SIZE or DURATION value outside a plugin's bounds with the
 * file, line, column and option and the bounds as the plugin wrote them;
 * values inside them and at them pass; a default outside them, or a bound
 * that is no value of the option's type, is reported as the plugin's bug;
 * a plugin without bounds (or of an older ABI) is not limited. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/pipeline.h"
#include "util/log.h"

static const struct engine_option sink_options[] = {
    {.name = "path", .type = ENGINE_OPT_STRING, .default_value = "/r"},
    {.name = "retries", .type = ENGINE_OPT_INT, .default_value = "6"},
    {.name = "part_size", .type = ENGINE_OPT_SIZE, .default_value = "16MiB"},
    {.name = "timeout", .type = ENGINE_OPT_DURATION, .default_value = "10m"},
    {.name = "depth", .type = ENGINE_OPT_INT},
    {.name = NULL}};

static struct engine_option_bounds g_bounds[5];

static struct engine_plugin g_sink = {ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_SINK,
                                      .name = "bounded", .options = sink_options,
                                      .option_bounds = g_bounds};

static void set_bounds(void) {
  g_bounds[0] = (struct engine_option_bounds){.name = "retries", .min = "0", .max = "100"};
  g_bounds[1] = (struct engine_option_bounds){.name = "part_size", .min = "64KiB", .max = "5GiB"};
  g_bounds[2] = (struct engine_option_bounds){.name = "timeout", .min = "1s"};
  g_bounds[3] = (struct engine_option_bounds){.name = "depth", .max = "8"};
  g_bounds[4] = (struct engine_option_bounds){.name = NULL};
  g_sink.struct_size = sizeof g_sink;
}

static const struct engine_option files_options[] = {
    {.name = "paths", .type = ENGINE_OPT_STRING_LIST, .required = 1}, {.name = NULL}};
static const struct engine_plugin files_plugin = {
    ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_SOURCE, .name = "files", .options = files_options};
static const struct engine_plugin aes_plugin = {ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_CRYPTO,
                                                .name = "aes-256-gcm"};

static const struct engine_plugin *lookup(void *ud, enum engine_plugin_kind kind, const char *type,
                                          char **err) {
  (void)ud;
  if (kind == ENGINE_PLUGIN_SOURCE && strcmp(type, "files") == 0)
    return &files_plugin;
  if (kind == ENGINE_PLUGIN_SINK && strcmp(type, "bounded") == 0)
    return &g_sink;
  if (kind == ENGINE_PLUGIN_CRYPTO && strcmp(type, "aes-256-gcm") == 0)
    return &aes_plugin;
  *err = xasprintf("no plugin '%s'", type);
  return NULL;
}

/* Loads a pipeline whose sink has `with`; returns the errors (malloc'd) or
 * NULL, and the sink's normalised options in *with_out when it loaded. */
static char *load(const char *with, json_t **with_out) {
  char yaml[1024];
  snprintf(yaml, sizeof yaml,
           "version: 1\nname: x\n"
           "sources:\n  - type: files\n    with: { paths: [/data] }\n"
           "stages:\n  encrypt: { algorithm: aes-256-gcm, passphrase: env:PASS }\n"
           "sinks:\n  - type: bounded\n    with: %s\n",
           with);
  struct pipeline *p = NULL;
  char *err = NULL;
  if (pipeline_load_string("t.yml", yaml, strlen(yaml), lookup, NULL, &p, &err) != 0)
    return err;
  if (with_out)
    *with_out = json_incref(p->sinks[0].with);
  pipeline_free(p);
  return NULL;
}

static void expect_error(const char *with, const char *expected) {
  char *err = load(with, NULL);
  char got[1024];
  snprintf(got, sizeof got, "%s", err ? err : "(no error)");
  int found = err != NULL && strstr(err, expected) != NULL;
  free(err);
  if (!found)
    fail_msg("for with: %s\nexpected an error containing:\n%s\ngot:\n%s", with, expected, got);
}

static void expect_ok(const char *with) {
  char *err = load(with, NULL);
  char got[1024];
  snprintf(got, sizeof got, "%s", err ? err : "");
  free(err);
  if (got[0] != '\0')
    fail_msg("for with: %s\nunexpected errors:\n%s", with, got);
}

static void test_inside_and_at_the_bounds(void **state) {
  (void)state;
  set_bounds();
  expect_ok("{}"); /* the defaults */
  expect_ok("{retries: 0, part_size: 64KiB, timeout: 1s, depth: -5}");
  expect_ok("{retries: 100, part_size: 5GiB, timeout: 7d, depth: 8}");
  json_t *w = NULL;
  assert_null(load("{part_size: 1MiB}", &w));
  assert_int_equal(json_integer_value(json_object_get(w, "part_size")), 1048576);
  json_decref(w);
}

static void test_outside_the_bounds(void **state) {
  (void)state;
  set_bounds();
  expect_error("{retries: 101}",
               "t.yml:10:21: sinks[0].with.retries: expected an integer from 0 to 100, got '101'");
  expect_error("{retries: -1}",
               "sinks[0].with.retries: expected an integer from 0 to 100, got '-1'");
  expect_error("{part_size: 1KiB}",
               "sinks[0].with.part_size: expected a size from 64KiB to 5GiB, got '1KiB'");
  expect_error("{part_size: 6GiB}",
               "sinks[0].with.part_size: expected a size from 64KiB to 5GiB, got '6GiB'");
  expect_error("{timeout: 500ms}",
               "sinks[0].with.timeout: expected a duration of at least 1s, got '500ms'");
  expect_error("{depth: 9}", "sinks[0].with.depth: expected an integer of at most 8, got '9'");
  /* every value out of bounds is named, not only the first */
  char *err = load("{retries: 101, depth: 9}", NULL);
  assert_non_null(err);
  assert_non_null(strstr(err, "with.retries"));
  assert_non_null(strstr(err, "with.depth"));
  free(err);
}

static void test_plugin_bugs(void **state) {
  (void)state;
  set_bounds();
  g_bounds[0].min = "7"; /* the default 6 is now outside */
  expect_error("{}", "sinks[0].with.retries: plugin 'bounded' declares a default '6' outside its "
                     "bounds for this option (a bug in the plugin)");
  set_bounds();
  g_bounds[1].max = "lots";
  expect_error("{part_size: 1MiB}", "plugin 'bounded' declares bounds for this option that are "
                                    "not a size ('64KiB' to 'lots'; a bug in the plugin)");
}

static void test_without_bounds(void **state) {
  (void)state;
  set_bounds();
  /* a descriptor of ABI 1.4 ends before option_bounds: nothing limits */
  g_sink.struct_size = (uint32_t)offsetof(struct engine_plugin, option_bounds);
  expect_ok("{retries: 1000, part_size: 1, timeout: 1ms}");
  g_sink.struct_size = sizeof g_sink;
  g_bounds[0] = (struct engine_option_bounds){.name = NULL};
  expect_ok("{retries: 1000}");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inside_and_at_the_bounds),
      cmocka_unit_test(test_outside_the_bounds),
      cmocka_unit_test(test_plugin_bugs),
      cmocka_unit_test(test_without_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
