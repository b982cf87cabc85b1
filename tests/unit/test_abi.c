/* Plugin ABI and host table: the loader refuses broken plugins with a
 * sentence that says why, descriptor checks follow the compatibility rule,
 * and the host's config, secret, spawn and instance helpers behave as the
 * plugin author's guide promises. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plugin/host.h"
#include "util/cancel.h"
#include "plugin/host_progress.h"
#include "plugin/loader.h"

#ifndef ENGINE_TEST_ABI_DIR
#error "ENGINE_TEST_ABI_DIR must point at the directory holding the ABI test plugins"
#endif

#define STR_(x) #x
#define STR(x) STR_(x)
/* what the host says it provides, e.g. "ABI 1.1" */
#define HOST_ABI "ABI " STR(ENGINE_ABI_MAJOR) "." STR(ENGINE_ABI_MINOR)

#define BAD_MAJOR_SO ENGINE_TEST_ABI_DIR "/abi_bad_major.so"
#define NO_SYMBOL_SO ENGINE_TEST_ABI_DIR "/abi_no_symbol.so"

static void assert_contains(const char *hay, const char *needle) {
  if (!hay || !strstr(hay, needle))
    fail_msg("expected \"%s\" to contain \"%s\"", hay ? hay : "(null)", needle);
}

static void assert_not_contains(const char *hay, const char *needle) {
  if (hay && strstr(hay, needle))
    fail_msg("\"%s\" must not contain \"%s\"", hay, needle);
}

static void entry_clear(struct plugin_entry *e) {
  free(e->path);
  free(e->error);
  /* handle is left open on purpose: closing it while the descriptor might
   * still be referenced by a failing assertion message is not worth it */
}

/* ---- loading broken shared objects ------------------------------------ */

static void test_load_bad_major(void **state) {
  (void)state;
  struct plugin_entry e;
  assert_int_equal(plugin_load_file(BAD_MAJOR_SO, &e), -1);
  assert_null(e.plugin);
  assert_contains(e.error, "ABI 2.0");
  assert_contains(e.error, HOST_ABI);
  assert_contains(e.error, BAD_MAJOR_SO);
  assert_contains(e.error, "'bad-major'");
  assert_contains(e.error, "rebuild");
  entry_clear(&e);
}

static void test_load_no_symbol(void **state) {
  (void)state;
  struct plugin_entry e;
  assert_int_equal(plugin_load_file(NO_SYMBOL_SO, &e), -1);
  assert_null(e.plugin);
  assert_null(e.handle);
  assert_contains(e.error, "engine_plugin_query");
  assert_contains(e.error, NO_SYMBOL_SO);
  entry_clear(&e);
}

static void test_load_missing_file(void **state) {
  (void)state;
  struct plugin_entry e;
  assert_int_equal(plugin_load_file(ENGINE_TEST_ABI_DIR "/does-not-exist.so", &e), -1);
  assert_null(e.plugin);
  assert_contains(e.error, "unable to load plugin");
  assert_contains(e.error, "does-not-exist.so");
  entry_clear(&e);
}

/* ---- descriptor checks ------------------------------------------------ */

static int t_create(const struct engine_host *h, void **inst) {
  *inst = (void *)h;
  return ENGINE_OK;
}
static void t_destroy(void *inst) {
  (void)inst;
}
static int t_backup(void *inst, const struct engine_emitter *em) {
  (void)inst;
  (void)em;
  return ENGINE_OK;
}
static int t_rbegin(void *inst, const struct engine_restore_opts *o, void **rctx) {
  (void)inst;
  (void)o;
  *rctx = NULL;
  return ENGINE_OK;
}
static int t_ritem(void *rctx, const struct engine_item *it, const struct engine_reader *rd) {
  (void)rctx;
  (void)it;
  (void)rd;
  return ENGINE_OK;
}
static int t_rend(void *rctx, int status) {
  (void)rctx;
  return status;
}
static int t_put(void *i, const char *n, const void *b, size_t l, unsigned f) {
  (void)i, (void)n, (void)b, (void)l, (void)f;
  return ENGINE_OK;
}
static int t_get(void *i, const char *n, uint64_t o, uint64_t l, void **b, size_t *ol) {
  (void)i, (void)n, (void)o, (void)l, (void)b, (void)ol;
  return ENGINE_NOT_FOUND;
}
static int t_stat(void *i, const char *n, uint64_t *s) {
  (void)i, (void)n, (void)s;
  return ENGINE_NOT_FOUND;
}
static int t_list(void *i, const char *p, int (*cb)(void *, const char *, uint64_t), void *ud) {
  (void)i, (void)p, (void)cb, (void)ud;
  return ENGINE_OK;
}
static int t_del(void *i, const char *n) {
  (void)i, (void)n;
  return ENGINE_OK;
}
static const char *t_describe(void *i) {
  (void)i;
  return "test";
}
static int t_aead(const unsigned char *k, const unsigned char *n, const void *a, size_t al,
                  const void *in, size_t il, void *out) {
  (void)k, (void)n, (void)a, (void)al, (void)in, (void)il, (void)out;
  return ENGINE_OK;
}

static struct engine_source_ops g_src_ops;
static struct engine_sink_ops g_sink_ops;
static struct engine_crypto_ops g_crypto_ops;
static struct engine_option g_opts[4];

static struct engine_plugin make_source(void) {
  g_src_ops = (struct engine_source_ops){.struct_size = sizeof g_src_ops,
                                         .backup = t_backup,
                                         .restore_begin = t_rbegin,
                                         .restore_item = t_ritem,
                                         .restore_end = t_rend};
  g_opts[0] = (struct engine_option){.name = "path", .type = ENGINE_OPT_STRING, .required = 1};
  g_opts[1] = (struct engine_option){.name = "mode", .type = ENGINE_OPT_ENUM, .enum_values = "a|b"};
  g_opts[2] = (struct engine_option){.name = NULL};
  return (struct engine_plugin){ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_SOURCE,
                                .name = "test-src",   .version = "1.2.3",
                                .options = g_opts,    .create = t_create,
                                .destroy = t_destroy, .source = &g_src_ops};
}

static void expect_refused(const struct engine_plugin *p, const char *needle) {
  char *err = NULL;
  assert_int_equal(plugin_check_descriptor("/x/test.so", p, &err), -1);
  assert_non_null(err);
  assert_contains(err, "/x/test.so");
  assert_contains(err, needle);
  free(err);
}

static void test_descriptor_valid(void **state) {
  (void)state;
  struct engine_plugin p = make_source();
  char *err = (char *)"untouched";
  assert_int_equal(plugin_check_descriptor("/x/test.so", &p, &err), 0);
  assert_null(err);

  g_sink_ops = (struct engine_sink_ops){.struct_size = sizeof g_sink_ops,
                                        .put = t_put,
                                        .get = t_get,
                                        .stat = t_stat,
                                        .list = t_list,
                                        .del = t_del,
                                        .describe = t_describe};
  struct engine_plugin s = {ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_SINK, .name = "t-sink",
                            .version = "1",       .create = t_create,         .sink = &g_sink_ops};
  assert_int_equal(plugin_check_descriptor("/x/test.so", &s, &err), 0);

  g_crypto_ops = (struct engine_crypto_ops){.struct_size = sizeof g_crypto_ops,
                                            .key_len = 32,
                                            .nonce_len = 12,
                                            .tag_len = 16,
                                            .seal = t_aead,
                                            .open = t_aead};
  struct engine_plugin c = {ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_CRYPTO,
                            .name = "t-aead",     .version = "1",
                            .create = t_create,   .crypto = &g_crypto_ops};
  assert_int_equal(plugin_check_descriptor("/x/test.so", &c, &err), 0);
}

static void test_descriptor_wrong_major(void **state) {
  (void)state;
  struct engine_plugin p = make_source();
  p.abi_major = 2;
  p.abi_minor = 3;
  expect_refused(&p, "ABI 2.3");
  expect_refused(&p, HOST_ABI);
  expect_refused(&p, "name 'test-src'");
}

static void test_descriptor_wrong_kind(void **state) {
  (void)state;
  struct engine_plugin p = make_source();
  p.kind = (enum engine_plugin_kind)7;
  expect_refused(&p, "unknown kind 7");
  /* the ops table must match the kind */
  p = make_source();
  p.kind = ENGINE_PLUGIN_SINK;
  expect_refused(&p, "no sink ops table");
}

static void test_descriptor_missing_callbacks(void **state) {
  (void)state;
  struct engine_plugin p = make_source();
  g_src_ops.restore_item = NULL;
  expect_refused(&p, "'restore_item'");

  p = make_source();
  p.create = NULL;
  expect_refused(&p, "create");

  p = make_source();
  p.source = NULL;
  expect_refused(&p, "no source ops table");

  g_sink_ops = (struct engine_sink_ops){.struct_size = sizeof g_sink_ops,
                                        .put = t_put,
                                        .get = t_get,
                                        .stat = t_stat,
                                        .list = t_list,
                                        .del = t_del};
  struct engine_plugin s = {ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_SINK, .name = "t-sink",
                            .version = "1",       .create = t_create,         .sink = &g_sink_ops};
  expect_refused(&s, "'describe'");

  g_crypto_ops = (struct engine_crypto_ops){.struct_size = sizeof g_crypto_ops,
                                            .key_len = 32,
                                            .nonce_len = 12,
                                            .tag_len = 16,
                                            .seal = t_aead};
  struct engine_plugin c = {ENGINE_PLUGIN_HEADER, .kind = ENGINE_PLUGIN_CRYPTO,
                            .name = "t-aead",     .version = "1",
                            .create = t_create,   .crypto = &g_crypto_ops};
  expect_refused(&c, "'open'");
  g_crypto_ops.open = t_aead;
  g_crypto_ops.nonce_len = 33;
  expect_refused(&c, "nonce length of 33");
  g_crypto_ops.nonce_len = 12;
  g_crypto_ops.tag_len = 0;
  expect_refused(&c, "tag length of 0");
  g_crypto_ops.tag_len = 16;
  g_crypto_ops.key_len = 0;
  expect_refused(&c, "key length of 0");
}

static void test_descriptor_short_struct(void **state) {
  (void)state;
  struct engine_plugin p = make_source();
  p.struct_size = offsetof(struct engine_plugin, source);
  expect_refused(&p, "smaller than");
  p = make_source();
  g_src_ops.struct_size = sizeof(uint32_t);
  expect_refused(&p, "source ops table of 4 bytes");
}

static void test_descriptor_bad_options(void **state) {
  (void)state;
  struct engine_plugin p = make_source();
  g_opts[1].type = (enum engine_opt_type)99;
  expect_refused(&p, "unknown type 99");
  p = make_source();
  g_opts[1].enum_values = NULL;
  expect_refused(&p, "enum_values");
  p = make_source();
  g_opts[1].name = "path";
  expect_refused(&p, "'path' twice");
}

static void test_descriptor_bad_name_version(void **state) {
  (void)state;
  struct engine_plugin p = make_source();
  p.name = "Bad_Name";
  expect_refused(&p, "invalid name 'Bad_Name'");
  p.name = "";
  expect_refused(&p, "invalid name");
  p = make_source();
  p.version = "";
  expect_refused(&p, "no version");
}

/* A plugin built against a newer 1.x SDK appends fields; the host reads the
 * prefix it knows. */
struct future_plugin {
  struct engine_plugin base;
  void *appended_in_1_1;
};

static void test_descriptor_newer_minor(void **state) {
  (void)state;
  struct future_plugin f = {.base = make_source(), .appended_in_1_1 = NULL};
  f.base.abi_minor = ENGINE_ABI_MINOR + 1;
  f.base.struct_size = sizeof f;
  char *err = NULL;
  assert_int_equal(plugin_check_descriptor("/x/test.so", &f.base, &err), 0);
  assert_null(err);
  /* a newer minor cannot be smaller than what this host knows */
  f.base.struct_size = offsetof(struct engine_plugin, crypto);
  expect_refused(&f.base, "smaller");
}

/* ---- growing structures (ABI 1.5) -------------------------------------- */

static void test_has_field(void **state) {
  (void)state;
  struct engine_host h = {.struct_size = sizeof h};
  assert_true(ENGINE_HAS_FIELD(&h, struct engine_host, http_header));
  /* an ABI 1.0 host table ends with progress_total */
  h.struct_size = (uint32_t)ENGINE_FIELD_END(struct engine_host, progress_total);
  assert_true(ENGINE_HAS_FIELD(&h, struct engine_host, progress_total));
  assert_false(ENGINE_HAS_FIELD(&h, struct engine_host, http_request));
  h.struct_size = (uint32_t)offsetof(struct engine_host, http_header) + 1;
  assert_false(ENGINE_HAS_FIELD(&h, struct engine_host, http_header));
  struct engine_sink_ops ops = {.struct_size = sizeof ops};
  assert_true(ENGINE_HAS_FIELD(&ops, struct engine_sink_ops, get_stream));
  ops.struct_size = (uint32_t)ENGINE_FIELD_END(struct engine_sink_ops, del_many);
  assert_true(ENGINE_HAS_FIELD(&ops, struct engine_sink_ops, del_many));
  assert_false(ENGINE_HAS_FIELD(&ops, struct engine_sink_ops, cleanup));
}

static void test_option_bounds(void **state) {
  (void)state;
  struct engine_plugin p = make_source();
  g_opts[2] = (struct engine_option){.name = "retries", .type = ENGINE_OPT_INT};
  g_opts[3] = (struct engine_option){.name = NULL};
  static struct engine_option_bounds bounds[3];
  bounds[0] = (struct engine_option_bounds){.name = "retries", .min = "0", .max = "100"};
  bounds[1] = (struct engine_option_bounds){.name = NULL};
  p.option_bounds = bounds;
  char *err = NULL;
  assert_int_equal(plugin_check_descriptor("/x/test.so", &p, &err), 0);
  assert_null(err);
  const char *min = "x", *max = "x";
  assert_int_equal(plugin_option_bounds(&p, "retries", &min, &max), 1);
  assert_string_equal(min, "0");
  assert_string_equal(max, "100");
  assert_int_equal(plugin_option_bounds(&p, "path", &min, &max), 0);
  assert_null(min);
  assert_null(max);

  /* bounds name a numeric option of the plugin's, once, and say something */
  bounds[0].name = "nope";
  expect_refused(&p, "bounds for option 'nope', which it does not have");
  bounds[0].name = "path";
  expect_refused(&p, "not an INT, SIZE or DURATION option");
  bounds[0] = (struct engine_option_bounds){.name = "retries"};
  expect_refused(&p, "empty bounds for option 'retries'");
  bounds[0].max = "";
  expect_refused(&p, "empty bounds");
  bounds[0] = (struct engine_option_bounds){.name = "retries", .min = "1"};
  bounds[1] = (struct engine_option_bounds){.name = "retries", .max = "2"};
  bounds[2] = (struct engine_option_bounds){.name = NULL};
  expect_refused(&p, "bounds for option 'retries' twice");

  /* a descriptor of ABI 1.4 ends before option_bounds: nothing there is read */
  p.abi_minor = 4;
  p.struct_size = (uint32_t)offsetof(struct engine_plugin, option_bounds);
  assert_int_equal(plugin_check_descriptor("/x/test.so", &p, &err), 0);
  assert_int_equal(plugin_option_bounds(&p, "retries", &min, &max), 0);
}

/* ---- the registry ----------------------------------------------------- */

static struct plugin_entry *find_entry(struct plugin_registry *r, const char *path) {
  for (size_t i = 0; i < r->n_entries; i++)
    if (strcmp(r->entries[i].path, path) == 0)
      return &r->entries[i];
  return NULL;
}

static void test_registry_lists_refused(void **state) {
  (void)state;
  unsetenv("ENGINE_PLUGIN_PATH");
  const char *dirs[] = {ENGINE_TEST_ABI_DIR};
  struct plugin_registry *r = NULL;
  assert_int_equal(registry_load(dirs, 1, &r), 0);
  assert_non_null(r);
  assert_true(r->n_dirs >= 1);
  assert_string_equal(r->dirs[0], ENGINE_TEST_ABI_DIR);

  struct plugin_entry *bad = find_entry(r, BAD_MAJOR_SO);
  struct plugin_entry *nosym = find_entry(r, NO_SYMBOL_SO);
  assert_non_null(bad);
  assert_non_null(nosym);
  assert_null(bad->plugin);
  assert_null(nosym->plugin);
  assert_contains(bad->error, "ABI 2.0");
  assert_contains(nosym->error, "engine_plugin_query");
  /* sorted scan order within a directory */
  assert_true(bad < nosym);

  char *err = NULL;
  assert_null(registry_find(r, ENGINE_PLUGIN_SOURCE, "bad-major", &err));
  assert_contains(err, "source plugin 'bad-major' was found but refused");
  assert_contains(err, "ABI 2.0");
  free(err);

  err = NULL;
  assert_null(registry_find(r, ENGINE_PLUGIN_SINK, "nope", &err));
  assert_contains(err, "no sink plugin named 'nope'");
  assert_contains(err, "search path: " ENGINE_TEST_ABI_DIR);
  assert_contains(err, "failed to load");
  free(err);
  registry_free(r);
}

static void test_registry_search_path_env(void **state) {
  (void)state;
  setenv("ENGINE_PLUGIN_PATH", "/nonexistent/a:" ENGINE_TEST_ABI_DIR ":/nonexistent/b", 1);
  struct plugin_registry *r = NULL;
  const char *dirs[] = {ENGINE_TEST_ABI_DIR}; /* same dir twice: scanned once */
  assert_int_equal(registry_load(dirs, 1, &r), 0);
  assert_true(r->n_dirs >= 3);
  assert_string_equal(r->dirs[0], ENGINE_TEST_ABI_DIR);
  assert_string_equal(r->dirs[1], "/nonexistent/a");
  assert_string_equal(r->dirs[2], "/nonexistent/b");
  size_t seen = 0;
  for (size_t i = 0; i < r->n_entries; i++)
    if (strcmp(r->entries[i].path, BAD_MAJOR_SO) == 0)
      seen++;
  assert_int_equal(seen, 1);
  registry_free(r);
  unsetenv("ENGINE_PLUGIN_PATH");
}

static int copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb");
  if (!in)
    return -1;
  FILE *out = fopen(to, "wb");
  if (!out) {
    fclose(in);
    return -1;
  }
  char buf[65536];
  size_t n;
  int rc = 0;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n)
      rc = -1;
  fclose(in);
  if (fclose(out) != 0)
    rc = -1;
  return rc;
}

/* Needs a real, valid plugin from the build tree; skipped when the plugins
 * have not been built. */
static void test_registry_shadowing(void **state) {
  (void)state;
#ifdef ENGINE_TEST_PLUGIN_DIR
  unsetenv("ENGINE_PLUGIN_PATH");
  const char *build_dirs[] = {ENGINE_TEST_PLUGIN_DIR};
  struct plugin_registry *r = NULL;
  assert_int_equal(registry_load(build_dirs, 1, &r), 0);
  const struct plugin_entry *good = NULL;
  for (size_t i = 0; i < r->n_entries && !good; i++)
    if (r->entries[i].plugin)
      good = &r->entries[i];
  if (!good) {
    registry_free(r);
    skip();
  }
  char tmpl[] = "/tmp/engine-test-abi-XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  char copy[4096];
  snprintf(copy, sizeof copy, "%s/copy.so", tmpl);
  assert_int_equal(copy_file(good->path, copy), 0);
  char *name = strdup(good->plugin->name);
  enum engine_plugin_kind kind = good->plugin->kind;
  registry_free(r);

  const char *dirs[] = {tmpl, ENGINE_TEST_PLUGIN_DIR};
  assert_int_equal(registry_load(dirs, 2, &r), 0);
  const struct plugin_entry *first = NULL, *second = NULL;
  for (size_t i = 0; i < r->n_entries; i++) {
    const struct plugin_entry *e = &r->entries[i];
    if (e->plugin && e->plugin->kind == kind && strcmp(e->plugin->name, name) == 0) {
      if (!first)
        first = e;
      else if (!second)
        second = e;
    }
  }
  assert_non_null(first);
  assert_non_null(second);
  assert_string_equal(first->path, copy);
  assert_false(first->shadowed);
  assert_true(second->shadowed);
  char *err = NULL;
  assert_ptr_equal(registry_find(r, kind, name, &err), first->plugin);
  assert_null(err);
  registry_free(r);
  unlink(copy);
  rmdir(tmpl);
  free(name);
#else
  skip();
#endif
}

/* ---- host: configuration ---------------------------------------------- */

static void test_host_cfg(void **state) {
  (void)state;
  json_error_t je;
  json_t *cfg = json_loads("{\"s\":\"str\",\"n\":42,\"big\":68719476736,\"b\":true,\"f\":false,"
                           "\"list\":[\"a\",\"b\",\"c\"],\"one\":\"x\"}",
                           0, &je);
  assert_non_null(cfg);
  struct engine_host *h = host_new("source test", cfg);
  json_decref(cfg); /* the host holds its own reference */
  assert_int_equal(h->abi_major, ENGINE_ABI_MAJOR);
  assert_int_equal(h->struct_size, sizeof(struct engine_host));

  assert_string_equal(h->cfg_string(h, "s"), "str");
  assert_null(h->cfg_string(h, "missing"));
  assert_null(h->cfg_string(h, "n")); /* wrong type: not silently converted */
  assert_int_equal(h->cfg_int(h, "n", -1), 42);
  assert_int_equal(h->cfg_int(h, "big", -1), INT64_C(68719476736));
  assert_int_equal(h->cfg_int(h, "missing", 7), 7);
  assert_int_equal(h->cfg_int(h, "s", 9), 9);
  assert_int_equal(h->cfg_bool(h, "b", 0), 1);
  assert_int_equal(h->cfg_bool(h, "f", 1), 0);
  assert_int_equal(h->cfg_bool(h, "missing", 1), 1);

  assert_int_equal(h->cfg_list_count(h, "list"), 3);
  assert_string_equal(h->cfg_list_item(h, "list", 0), "a");
  assert_string_equal(h->cfg_list_item(h, "list", 2), "c");
  assert_null(h->cfg_list_item(h, "list", 3));
  assert_int_equal(h->cfg_list_count(h, "one"), 1);
  assert_string_equal(h->cfg_list_item(h, "one", 0), "x");
  assert_null(h->cfg_list_item(h, "one", 1));
  assert_int_equal(h->cfg_list_count(h, "missing"), 0);
  assert_int_equal(h->cfg_list_count(h, "n"), 0);

  h->set_error(h, "failed on '%s': %d", "obj", 5);
  assert_string_equal(host_last_error(h), "failed on 'obj': 5");
  host_clear_error(h);
  assert_string_equal(host_last_error(h), "");

  h->progress_total(h, 123456789);
  assert_int_equal(host_progress_total(h), 123456789);
  host_free(h);
}

/* ---- host: secrets ---------------------------------------------------- */

#define SECRET_VALUE "s3cr3t-Value!"

static struct engine_host *secret_host(const char *ref) {
  json_t *cfg = json_pack("{s:s}", "pw", ref);
  struct engine_host *h = host_new("sink test", cfg);
  json_decref(cfg);
  return h;
}

static void test_secret_env(void **state) {
  (void)state;
  setenv("ENGINE_TEST_SECRET", SECRET_VALUE, 1);
  struct engine_host *h = secret_host("env:ENGINE_TEST_SECRET");
  char *buf = NULL;
  size_t len = 0;
  assert_int_equal(h->secret(h, "pw", &buf, &len), ENGINE_OK);
  assert_int_equal(len, strlen(SECRET_VALUE));
  assert_string_equal(buf, SECRET_VALUE);
  h->secret_free(buf, len);

  unsetenv("ENGINE_TEST_SECRET");
  assert_int_equal(h->secret(h, "pw", &buf, &len), ENGINE_ERROR);
  assert_null(buf);
  assert_contains(host_last_error(h), "ENGINE_TEST_SECRET");
  assert_contains(host_last_error(h), "not set");
  assert_contains(host_last_error(h), "'pw'");

  setenv("ENGINE_TEST_SECRET", "", 1);
  assert_int_equal(h->secret(h, "pw", &buf, &len), ENGINE_ERROR);
  assert_contains(host_last_error(h), "is empty");
  unsetenv("ENGINE_TEST_SECRET");

  assert_int_equal(h->secret(h, "nope", &buf, &len), ENGINE_ERROR);
  assert_contains(host_last_error(h), "'nope' is not set");
  host_free(h);
}

static void test_secret_literal_never_echoed(void **state) {
  (void)state;
  struct engine_host *h = secret_host(SECRET_VALUE);
  char *buf = NULL;
  size_t len = 0;
  assert_int_equal(h->secret(h, "pw", &buf, &len), ENGINE_ERROR);
  assert_contains(host_last_error(h), "env:NAME");
  assert_not_contains(host_last_error(h), SECRET_VALUE);
  assert_not_contains(host_last_error(h), "s3cr3t");
  host_free(h);
}

static void test_secret_file(void **state) {
  (void)state;
  char path[] = "/tmp/engine-test-secret-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, SECRET_VALUE "\n", sizeof SECRET_VALUE), (ssize_t)sizeof SECRET_VALUE);
  close(fd);
  char ref[128];
  snprintf(ref, sizeof ref, "file:%s", path);
  struct engine_host *h = secret_host(ref);
  char *buf = NULL;
  size_t len = 0;
  assert_int_equal(h->secret(h, "pw", &buf, &len), ENGINE_OK);
  assert_int_equal(len, strlen(SECRET_VALUE)); /* exactly one newline stripped */
  assert_string_equal(buf, SECRET_VALUE);
  h->secret_free(buf, len);

  /* only one newline is stripped; a second one belongs to the secret */
  fd = open(path, O_WRONLY | O_TRUNC);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "ab\n\n", 4), 4);
  close(fd);
  assert_int_equal(h->secret(h, "pw", &buf, &len), ENGINE_OK);
  assert_int_equal(len, 3);
  assert_memory_equal(buf, "ab\n", 3);
  h->secret_free(buf, len);

  /* group/world-readable: a warning, not a refusal */
  assert_int_equal(chmod(path, 0644), 0);
  assert_int_equal(h->secret(h, "pw", &buf, &len), ENGINE_OK);
  h->secret_free(buf, len);

  fd = open(path, O_WRONLY | O_TRUNC);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "\n", 1), 1);
  close(fd);
  assert_int_equal(h->secret(h, "pw", &buf, &len), ENGINE_ERROR);
  assert_contains(host_last_error(h), "is empty");

  unlink(path);
  assert_int_equal(h->secret(h, "pw", &buf, &len), ENGINE_ERROR);
  assert_contains(host_last_error(h), path);
  assert_contains(host_last_error(h), "No such file or directory");
  host_free(h);
}

/* ---- host: child processes -------------------------------------------- */

static void test_spawn_pipes_env_stderr(void **state) {
  (void)state;
  setenv("ENGINE_T_VAR", "original", 1);
  struct engine_host *h = host_new("source spawn", NULL);
  const char *argv[] = {
      "sh", "-c", "read x; echo \"out:$x:$ENGINE_T_VAR:$ENGINE_T_NEW\"; echo oops >&2; exit 3",
      NULL};
  const char *env[] = {"ENGINE_T_VAR=override", "ENGINE_T_NEW=new", NULL};
  struct engine_spawn_opts o = {.struct_size = sizeof o,
                                .file = "sh",
                                .argv = argv,
                                .env = env,
                                .stdin_mode = ENGINE_STDIO_PIPE,
                                .stdout_mode = ENGINE_STDIO_PIPE,
                                .stderr_mode = ENGINE_STDIO_PIPE};
  struct engine_child *c = NULL;
  assert_int_equal(h->spawn(h, &o, &c), ENGINE_OK);
  assert_non_null(c);
  assert_true(c->pid > 0);
  assert_true(c->stdin_fd >= 0);
  assert_true(c->stdout_fd >= 0);
  assert_true(fcntl(c->stdout_fd, F_GETFD) & FD_CLOEXEC);
  assert_int_equal(write(c->stdin_fd, "hi\n", 3), 3);
  close(c->stdin_fd);
  c->stdin_fd = -1;
  char out[256];
  size_t got = 0;
  ssize_t r;
  while ((r = read(c->stdout_fd, out + got, sizeof out - 1 - got)) > 0)
    got += (size_t)r;
  out[got] = '\0';
  assert_string_equal(out, "out:hi:override:new\n");
  int status = 0;
  assert_int_equal(h->child_wait(h, c, &status), ENGINE_OK);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 3);
  assert_string_equal(h->child_stderr(h, c), "oops");
  /* a second wait returns the same status */
  status = 0;
  assert_int_equal(h->child_wait(h, c, &status), ENGINE_OK);
  assert_int_equal(WEXITSTATUS(status), 3);
  h->child_free(h, c);
  unsetenv("ENGINE_T_VAR");
  host_free(h);
}

/* Runs `sh -c script` with env and pass_fds (struct_size as given) and
 * returns its stdout (static buffer). */
static const char *spawn_output(struct engine_host *h, uint32_t struct_size, const char *script,
                                const char *const *env, const int *fds, size_t n_fds) {
  static char out[1024];
  const char *argv[] = {"sh", "-c", script, NULL};
  struct engine_spawn_opts o = {.struct_size = struct_size,
                                .file = "sh",
                                .argv = argv,
                                .env = env,
                                .stdin_mode = ENGINE_STDIO_NULL,
                                .stdout_mode = ENGINE_STDIO_PIPE,
                                .stderr_mode = ENGINE_STDIO_PIPE,
                                .pass_fds = fds,
                                .n_pass_fds = n_fds};
  struct engine_child *c = NULL;
  assert_int_equal(h->spawn(h, &o, &c), ENGINE_OK);
  size_t got = 0;
  ssize_t r;
  while ((r = read(c->stdout_fd, out + got, sizeof out - 1 - got)) > 0)
    got += (size_t)r;
  out[got] = '\0';
  int status = -1;
  assert_int_equal(h->child_wait(h, c, &status), ENGINE_OK);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("sh -c '%s' failed: %s", script, h->child_stderr(h, c));
  h->child_free(h, c);
  return out;
}

/* The child's environment is the allow-list plus what the plugin passes:
 * the engine's secrets (an env: passphrase, PGPASSWORD, cloud keys) stay
 * behind. */
static void test_spawn_env_allow_list(void **state) {
  (void)state;
  setenv("ENGINE_T_PASSPHRASE", "repo-secret", 1);
  setenv("PGPASSWORD", "pg-secret", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "aws-secret", 1);
  setenv("LC_ENGINE_T", "locale-kept", 1);
  setenv("TZ", "UTC", 1);
  struct engine_host *h = host_new("source spawn", NULL);
  const char *env[] = {"ENGINE_T_GIVEN=given", "TZ=Europe/Paris", NULL};
  const char *out = spawn_output(
      h, sizeof(struct engine_spawn_opts),
      "echo \"${ENGINE_T_PASSPHRASE-}|${PGPASSWORD-}|${AWS_SECRET_ACCESS_KEY-}|$LC_ENGINE_T|"
      "$ENGINE_T_GIVEN|$TZ|${PATH:+path}\"",
      env, NULL, 0);
  assert_string_equal(out, "|||locale-kept|given|Europe/Paris|path\n");
  /* the same for a plugin built against ABI 1.0 */
  out =
      spawn_output(h, (uint32_t)offsetof(struct engine_spawn_opts, pass_fds),
                   "echo \"${ENGINE_T_PASSPHRASE-}|${PGPASSWORD-}|$ENGINE_T_GIVEN\"", env, NULL, 0);
  assert_string_equal(out, "||given\n");
  unsetenv("ENGINE_T_PASSPHRASE");
  unsetenv("PGPASSWORD");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("LC_ENGINE_T");
  unsetenv("TZ");
  host_free(h);
}

/* A pipe holding `text`, read end returned (close-on-exec). */
static int pipe_with(const char *text) {
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  assert_int_equal(write(p[1], text, strlen(text)), (ssize_t)strlen(text));
  close(p[1]);
  return p[0];
}

/* pass_fds[i] is descriptor 3 + i in the child, whatever the numbers in
 * the engine (here the second source is a low number, so moving the first
 * one to 3 first would clobber it); no other descriptor of the engine's
 * reaches the child, even one without FD_CLOEXEC, unless the plugin was
 * built before ABI 1.2. */
static void test_spawn_pass_fds(void **state) {
  (void)state;
  struct engine_host *h = host_new("source spawn", NULL);
  int a = pipe_with("first");
  int b = pipe_with("second");
  int high_a = fcntl(a, F_DUPFD_CLOEXEC, 40);
  assert_true(high_a >= 40);
  int leaked = fcntl(b, F_DUPFD, 50); /* no FD_CLOEXEC */
  assert_true(leaked >= 50);
  char script[256];
  snprintf(script, sizeof script,
           "cat <&3; echo; cat <&4; echo; [ -e /proc/self/fd/%d ] && echo leaked; "
           "[ -e /proc/self/fd/5 ] && echo extra; exit 0",
           leaked);
  int fds[] = {high_a, b};
  const char *out = spawn_output(h, sizeof(struct engine_spawn_opts), script, NULL, fds, 2);
  assert_string_equal(out, "first\nsecond\n");
  /* the engine's own descriptors are untouched */
  assert_true(fcntl(high_a, F_GETFD) & FD_CLOEXEC);
  assert_true(fcntl(b, F_GETFD) & FD_CLOEXEC);

  /* an ABI 1.0 plugin keeps inheriting descriptors without FD_CLOEXEC */
  snprintf(script, sizeof script, "[ -e /proc/self/fd/%d ] && echo inherited; exit 0", leaked);
  out = spawn_output(h, (uint32_t)offsetof(struct engine_spawn_opts, pass_fds), script, NULL, NULL,
                     0);
  assert_string_equal(out, "inherited\n");

  /* unusable descriptors are refused with a sentence */
  const char *argv[] = {"true", NULL};
  struct engine_child *c = NULL;
  int bad_low[] = {1};
  struct engine_spawn_opts o = {
      .struct_size = sizeof o, .file = "true", .argv = argv, .pass_fds = bad_low, .n_pass_fds = 1};
  assert_int_equal(h->spawn(h, &o, &c), ENGINE_ERROR);
  assert_null(c);
  assert_contains(host_last_error(h), "pass_fds[0] is 1");
  int closed[] = {a, 200};
  o.pass_fds = closed;
  o.n_pass_fds = 2;
  assert_int_equal(h->spawn(h, &o, &c), ENGINE_ERROR);
  assert_contains(host_last_error(h), "pass_fds[1] (descriptor 200) is not open");
  o.pass_fds = NULL;
  assert_int_equal(h->spawn(h, &o, &c), ENGINE_ERROR);
  assert_contains(host_last_error(h), "pass_fds must list");
  close(a);
  close(b);
  close(high_a);
  close(leaked);
  host_free(h);
}

/* A child writing far more than the capture buffer to stderr must not block,
 * and the tail (where the real error usually is) is what is kept. */
static void test_spawn_large_stderr(void **state) {
  (void)state;
  struct engine_host *h = host_new("source spawn", NULL);
  const char *argv[] = {"sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x >&2; echo the-end >&2",
                        NULL};
  struct engine_spawn_opts o = {.struct_size = sizeof o,
                                .file = "sh",
                                .argv = argv,
                                .stdin_mode = ENGINE_STDIO_NULL,
                                .stdout_mode = ENGINE_STDIO_NULL,
                                .stderr_mode = ENGINE_STDIO_PIPE};
  struct engine_child *c = NULL;
  assert_int_equal(h->spawn(h, &o, &c), ENGINE_OK);
  assert_int_equal(c->stdin_fd, -1);
  assert_int_equal(c->stdout_fd, -1);
  int status = -1;
  assert_int_equal(h->child_wait(h, c, &status), ENGINE_OK);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const char *e = h->child_stderr(h, c);
  size_t n = strlen(e);
  assert_true(n <= 64 * 1024 + 16);
  assert_true(n > 60 * 1024);
  assert_true(strncmp(e, "[...]", 5) == 0);
  assert_string_equal(e + n - 7, "the-end");
  h->child_free(h, c);
  host_free(h);
}

static void test_spawn_failures(void **state) {
  (void)state;
  struct engine_host *h = host_new("source spawn", NULL);
  const char *argv[] = {"engine-no-such-program", NULL};
  struct engine_spawn_opts o = {
      .struct_size = sizeof o, .file = "engine-no-such-program", .argv = argv};
  struct engine_child *c = (struct engine_child *)&o;
  const char *preload = getenv("LD_PRELOAD");
  if (preload && strstr(preload, "valgrind")) {
    /* valgrind emulates posix_spawn's vfork with fork, so the exec failure
     * surfaces as the shell-style exit status 127 instead */
    assert_int_equal(h->spawn(h, &o, &c), ENGINE_OK);
    int st = 0;
    assert_int_equal(h->child_wait(h, c, &st), ENGINE_OK);
    assert_int_equal(WEXITSTATUS(st), 127);
    h->child_free(h, c);
  } else {
    assert_int_equal(h->spawn(h, &o, &c), ENGINE_ERROR);
    assert_null(c);
    assert_contains(host_last_error(h), "unable to start 'engine-no-such-program'");
    assert_contains(host_last_error(h), "No such file or directory");
  }

  const char *env[] = {"NOEQUALS-" SECRET_VALUE, NULL};
  const char *argv2[] = {"true", NULL};
  struct engine_spawn_opts o2 = {
      .struct_size = sizeof o2, .file = "true", .argv = argv2, .env = env};
  assert_int_equal(h->spawn(h, &o2, &c), ENGINE_ERROR);
  assert_contains(host_last_error(h), "NAME=VALUE");
  assert_not_contains(host_last_error(h), SECRET_VALUE);

  /* kill + wait: the status reports the signal */
  const char *argv3[] = {"sleep", "30", NULL};
  struct engine_spawn_opts o3 = {.struct_size = sizeof o3, .file = "sleep", .argv = argv3};
  assert_int_equal(h->spawn(h, &o3, &c), ENGINE_OK);
  h->child_kill(h, c, SIGTERM);
  int status = 0;
  assert_int_equal(h->child_wait(h, c, &status), ENGINE_OK);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGTERM);
  h->child_kill(h, c, SIGTERM); /* after reaping: a no-op, never a stray signal */
  h->child_free(h, c);
  host_free(h);
}

/* ---- host: instances, work, time -------------------------------------- */

static int fail_create_msg(const struct engine_host *h, void **inst) {
  (void)inst;
  h->set_error(h, "unable to open '%s': %s", "/srv/x", "Permission denied");
  return ENGINE_ERROR;
}
static int fail_create_silent(const struct engine_host *h, void **inst) {
  (void)h;
  (void)inst;
  return ENGINE_ERROR;
}
static int cfg_create(const struct engine_host *h, void **inst) {
  const char *p = h->cfg_string(h, "path");
  if (!p) {
    h->set_error(h, "option 'path' is required");
    return ENGINE_ERROR;
  }
  *inst = strdup(p);
  return *inst ? ENGINE_OK : ENGINE_ERROR;
}
static void cfg_destroy(void *inst) {
  free(inst);
}

static void test_instance_new(void **state) {
  (void)state;
  struct engine_plugin p = make_source();
  struct plugin_instance *pi = NULL;
  char *err = NULL;

  p.create = fail_create_msg;
  assert_int_equal(plugin_instance_new(&p, "uploads", NULL, &pi, &err), -1);
  assert_null(pi);
  assert_string_equal(
      err, "source 'uploads' (type test-src): unable to open '/srv/x': Permission denied");
  free(err);

  p.create = fail_create_silent;
  assert_int_equal(plugin_instance_new(&p, "uploads", NULL, &pi, &err), -1);
  assert_string_equal(err, "source 'uploads' (type test-src): create failed");
  free(err);
  err = NULL;

  p.create = cfg_create;
  p.destroy = cfg_destroy;
  json_t *cfg = json_pack("{s:s}", "path", "/data");
  assert_int_equal(plugin_instance_new(&p, "uploads", cfg, &pi, &err), 0);
  json_decref(cfg);
  assert_null(err);
  assert_non_null(pi);
  assert_string_equal(pi->name, "uploads");
  assert_string_equal((const char *)pi->inst, "/data");
  assert_ptr_equal(pi->plugin, &p);
  plugin_instance_free(pi);
}

static void bump(void *arg) {
  (*(int *)arg)++;
}

static void test_work_and_time(void **state) {
  (void)state;
  struct engine_host *h = host_new("sink t", NULL);
  int counter = 0;
  struct engine_work *w = NULL;
  assert_int_equal(h->work_submit(h, bump, &counter, &w), ENGINE_OK);
  h->work_wait(h, w);
  assert_int_equal(counter, 1);

  int64_t t0 = h->now_ms(h);
  assert_int_equal(h->sleep_ms(h, 30), ENGINE_OK);
  int64_t dt = h->now_ms(h) - t0;
  assert_true(dt >= 30);
  assert_false(h->cancelled(h));

  host_set_log_level(ENGINE_LOG_DEBUG);
  assert_int_equal(host_get_log_level(), ENGINE_LOG_DEBUG);
  host_set_log_level(99);
  assert_int_equal(host_get_log_level(), ENGINE_LOG_DEBUG);
  host_set_log_level(ENGINE_LOG_WARN);
  assert_int_equal(host_get_log_level(), ENGINE_LOG_WARN);
  host_free(h);
}

/* Must run last: cancellation is process-wide and cannot be undone. */
static void test_cancel_interrupts_sleep(void **state) {
  (void)state;
  struct engine_host *h = host_new("source t", NULL);
  assert_false(cancel_requested());
  cancel_request();
  assert_true(cancel_requested());
  assert_true(h->cancelled(h));
  int64_t t0 = h->now_ms(h);
  assert_int_equal(h->sleep_ms(h, 10000), ENGINE_ERROR);
  assert_true(h->now_ms(h) - t0 < 1000);
  assert_contains(host_last_error(h), "cancelled");
  host_free(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_bad_major),
      cmocka_unit_test(test_load_no_symbol),
      cmocka_unit_test(test_load_missing_file),
      cmocka_unit_test(test_descriptor_valid),
      cmocka_unit_test(test_descriptor_wrong_major),
      cmocka_unit_test(test_descriptor_wrong_kind),
      cmocka_unit_test(test_descriptor_missing_callbacks),
      cmocka_unit_test(test_descriptor_short_struct),
      cmocka_unit_test(test_descriptor_bad_options),
      cmocka_unit_test(test_descriptor_bad_name_version),
      cmocka_unit_test(test_descriptor_newer_minor),
      cmocka_unit_test(test_has_field),
      cmocka_unit_test(test_option_bounds),
      cmocka_unit_test(test_registry_lists_refused),
      cmocka_unit_test(test_registry_search_path_env),
      cmocka_unit_test(test_registry_shadowing),
      cmocka_unit_test(test_host_cfg),
      cmocka_unit_test(test_secret_env),
      cmocka_unit_test(test_secret_literal_never_echoed),
      cmocka_unit_test(test_secret_file),
      cmocka_unit_test(test_spawn_pipes_env_stderr),
      cmocka_unit_test(test_spawn_env_allow_list),
      cmocka_unit_test(test_spawn_pass_fds),
      cmocka_unit_test(test_spawn_large_stderr),
      cmocka_unit_test(test_spawn_failures),
      cmocka_unit_test(test_instance_new),
      cmocka_unit_test(test_work_and_time),
      cmocka_unit_test(test_cancel_interrupts_sleep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
