/* Every bundled plugin's option schema is usable as it ships: a pipeline
 * that gives each source and sink only its required options validates, so
 * every default (and every bound, ABI 1.5) the plugin declares is one the
 * pipeline checker accepts. A default the checker refuses makes the plugin
 * unusable unless the option is written out (the gcs sink's empty default
 * prefix did). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/pipeline.h"
#include "plugin/loader.h"
#include "util/log.h"

#ifndef ENGINE_TEST_PLUGIN_DIR
#error "ENGINE_TEST_PLUGIN_DIR must point at the build's plugin directory"
#endif

static struct plugin_registry *g_reg;

static const struct engine_plugin *lookup(void *ud, enum engine_plugin_kind kind, const char *type,
                                          char **err) {
  (void)ud;
  return registry_find(g_reg, kind, type, err);
}

/* A value the schema accepts for a required option (its minimum, if any). */
static void required_value(const struct engine_plugin *p, const struct engine_option *o, char *buf,
                           size_t n) {
  const char *min, *max;
  if (plugin_option_bounds(p, o->name, &min, &max) && min) {
    snprintf(buf, n, "'%s'", min);
    return;
  }
  switch (o->type) {
  case ENGINE_OPT_INT:
    snprintf(buf, n, "1");
    break;
  case ENGINE_OPT_BOOL:
    snprintf(buf, n, "true");
    break;
  case ENGINE_OPT_SIZE:
    snprintf(buf, n, "1MiB");
    break;
  case ENGINE_OPT_DURATION:
    snprintf(buf, n, "1s");
    break;
  case ENGINE_OPT_STRING_LIST:
    snprintf(buf, n, "[/data]");
    break;
  case ENGINE_OPT_SECRET:
    snprintf(buf, n, "'env:SECRET'");
    break;
  case ENGINE_OPT_ENUM:
    snprintf(buf, n, "'%.*s'", (int)strcspn(o->enum_values, "|"), o->enum_values);
    break;
  default:
    snprintf(buf, n, "'/data'");
    break;
  }
}

/* "{a: 1, b: x}" with the plugin's required options only. */
static void required_with(const struct engine_plugin *p, char *buf, size_t n) {
  size_t o = (size_t)snprintf(buf, n, "{");
  for (const struct engine_option *opt = p->options; opt && opt->name; opt++) {
    if (!opt->required)
      continue;
    char v[128];
    required_value(p, opt, v, sizeof v);
    o += (size_t)snprintf(buf + o, n - o, "%s%s: %s", o > 1 ? ", " : "", opt->name, v);
  }
  snprintf(buf + o, n - o, "}");
}

static void validate(const struct engine_plugin *p) {
  char with[1024], yaml[4096];
  required_with(p, with, sizeof with);
  const char *src_with = "{paths: [/data]}", *sink_with = "{path: /r}";
  snprintf(yaml, sizeof yaml,
           "version: 1\nname: schemas\n"
           "sources:\n  - {name: s, type: %s, with: %s}\n"
           "stages:\n  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:PASS'}\n"
           "sinks:\n  - {name: k, type: %s, with: %s}\n",
           p->kind == ENGINE_PLUGIN_SOURCE ? p->name : "files",
           p->kind == ENGINE_PLUGIN_SOURCE ? with : src_with,
           p->kind == ENGINE_PLUGIN_SINK ? p->name : "local",
           p->kind == ENGINE_PLUGIN_SINK ? with : sink_with);
  struct pipeline *pl = NULL;
  char *err = NULL;
  int rc = pipeline_load_string("t.yml", yaml, strlen(yaml), lookup, NULL, &pl, &err);
  char msg[2048];
  snprintf(msg, sizeof msg, "%s", err ? err : "");
  free(err);
  pipeline_free(pl);
  if (rc != 0)
    fail_msg("%s plugin '%s' with only its required options (%s) does not validate:\n%s",
             plugin_kind_name(p->kind), p->name, with, msg);
}

static void test_bundled_plugins_validate(void **state) {
  (void)state;
  const char *dirs[] = {ENGINE_TEST_PLUGIN_DIR};
  assert_int_equal(registry_load(dirs, 1, &g_reg), 0);
  size_t checked = 0;
  for (size_t i = 0; i < g_reg->n_entries; i++) {
    const struct engine_plugin *p = g_reg->entries[i].plugin;
    if (p == NULL || g_reg->entries[i].shadowed || p->kind == ENGINE_PLUGIN_CRYPTO)
      continue;
    validate(p);
    checked++;
  }
  /* files, postgres-schema, local, s3, minio, gcs */
  assert_true(checked >= 6);
  registry_free(g_reg);
  g_reg = NULL;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bundled_plugins_validate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
