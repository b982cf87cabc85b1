/* Pipeline configuration: parsing, plugin schema validation, defaults,
 * normalisation and the exact "file:line:col: option: message" errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/pipeline.h"
#include "config/yaml_tree.h"
#include "util/log.h"

/* ---- fake plugin registry ------------------------------------------- */

static const struct engine_option files_options[] = {
    {.name = "paths",
     .type = ENGINE_OPT_STRING_LIST,
     .required = 1,
     .description = "what to back up"},
    {.name = "exclude", .type = ENGINE_OPT_STRING_LIST, .description = "glob patterns to skip"},
    {.name = "one_file_system",
     .type = ENGINE_OPT_BOOL,
     .default_value = "false",
     .description = "stay on one file system"},
    {.name = NULL}};

static const struct engine_option local_options[] = {
    {.name = "path", .type = ENGINE_OPT_STRING, .required = 1, .description = "directory"},
    {.name = NULL}};

/* Exercises every other option type and default parsing. */
static const struct engine_option kitchen_options[] = {
    {.name = "timeout", .type = ENGINE_OPT_DURATION, .default_value = "1m30s"},
    {.name = "buffer", .type = ENGINE_OPT_SIZE, .default_value = "64KiB"},
    {.name = "retries", .type = ENGINE_OPT_INT, .default_value = "3"},
    {.name = "mode", .type = ENGINE_OPT_ENUM, .enum_values = "fast|safe", .default_value = "safe"},
    {.name = "token", .type = ENGINE_OPT_SECRET},
    {.name = "dbs", .type = ENGINE_OPT_STRING_LIST, .default_value = "[a, b]"},
    {.name = NULL}};

static const struct engine_plugin files_plugin = {
    .kind = ENGINE_PLUGIN_SOURCE, .name = "files", .options = files_options};
static const struct engine_plugin kitchen_plugin = {
    .kind = ENGINE_PLUGIN_SOURCE, .name = "kitchen", .options = kitchen_options};
static const struct engine_plugin local_plugin = {
    .kind = ENGINE_PLUGIN_SINK, .name = "local", .options = local_options};
static const struct engine_plugin aes_plugin = {.kind = ENGINE_PLUGIN_CRYPTO,
                                                .name = "aes-256-gcm"};

static int lookups; /* counts calls, to prove the lookup is (not) used */

static const struct engine_plugin *fake_lookup(void *ud, enum engine_plugin_kind kind,
                                               const char *type, char **err) {
  (void)ud;
  lookups++;
  if (kind == ENGINE_PLUGIN_SOURCE && strcmp(type, "files") == 0)
    return &files_plugin;
  if (kind == ENGINE_PLUGIN_SOURCE && strcmp(type, "kitchen") == 0)
    return &kitchen_plugin;
  if (kind == ENGINE_PLUGIN_SINK && strcmp(type, "local") == 0)
    return &local_plugin;
  if (kind == ENGINE_PLUGIN_CRYPTO && strcmp(type, "aes-256-gcm") == 0)
    return &aes_plugin;
  *err = xasprintf("no %s plugin named '%s' (available: %s)",
                   kind == ENGINE_PLUGIN_SOURCE ? "source"
                   : kind == ENGINE_PLUGIN_SINK ? "sink"
                                                : "crypto",
                   type,
                   kind == ENGINE_PLUGIN_SOURCE ? "files, kitchen"
                   : kind == ENGINE_PLUGIN_SINK ? "local"
                                                : "aes-256-gcm");
  return NULL;
}

/* ---- helpers --------------------------------------------------------- */

static struct pipeline *load_ok(const char *yaml) {
  struct pipeline *p = NULL;
  char *err = NULL;
  int rc = pipeline_load_string("t.yml", yaml, strlen(yaml), fake_lookup, NULL, &p, &err);
  if (rc != 0)
    fprintf(stderr, "unexpected errors:\n%s\n", err);
  assert_int_equal(rc, 0);
  assert_null(err);
  assert_non_null(p);
  return p;
}

static void expect_error(const char *yaml, const char *expected) {
  struct pipeline *p = (struct pipeline *)1;
  char *err = NULL;
  int rc = pipeline_load_string("t.yml", yaml, strlen(yaml), fake_lookup, NULL, &p, &err);
  assert_int_equal(rc, -1);
  assert_null(p);
  assert_non_null(err);
  /* compare before freeing so a failure does not also leak */
  int same = strcmp(err, expected) == 0;
  if (!same)
    fprintf(stderr, "got:\n%s\nexpected:\n%s\n", err, expected);
  free(err);
  assert_true(same);
}

/* A valid pipeline with the given blocks spliced in; each block may be "". */
#define SOURCES_OK "sources:\n  - type: files\n    with: { paths: [/data] }\n"
#define STAGES_OK "stages:\n  encrypt: { algorithm: aes-256-gcm, passphrase: env:PASS }\n"
#define SINKS_OK "sinks:\n  - type: local\n    with: { path: /backup }\n"

/* ---- a full, valid pipeline ----------------------------------------- */

static const char full_yaml[] =
    "version: 1\n"
    "name: kiosco-nightly\n"
    "schedule: \"0 3 * * *\"\n"
    "tags: [prod, nightly]\n"
    "sources:\n"
    "  - name: uploads\n"
    "    type: files\n"
    "    with: { paths: [/srv/uploads], exclude: [\"*.tmp\"] }\n"
    "  - type: files\n" /* line 9: name defaults to the type */
    "    with:\n"
    "      paths: /etc\n" /* a single string is a one-item list */
    "      one_file_system: yes\n"
    "  - type: kitchen\n"
    "    with: { timeout: 2h, buffer: 1.5GiB, retries: -2, mode: fast, token: file:/run/t }\n"
    "stages:\n"
    "  compress: { algorithm: gzip, level: 9 }\n"
    "  encrypt:  { algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE }\n"
    "sinks:\n"
    "  - { name: main, type: local, with: { path: /var/backups/kiosco } }\n"
    "  - { name: usb, type: local, required: no, with: { path: \"/mnt/usb\" } }\n"
    "repository: { chunk_min: 256KiB, chunk_avg: 1MiB, chunk_max: 4M, pack_size: 16MB }\n"
    "limits: { memory: 256MiB }\n"
    "retention: { keep_last: 7, keep_daily: 30, keep_yearly: 5, keep_within: 1d12h,\n"
    "             keep_tags: [keep], apply: after-run }\n"
    "hooks: { before: [\"ctl readonly on\"], after: [\"ctl readonly off\"] }\n"
    "notify:\n"
    "  - { webhook: \"https://hooks.example/backup\", on: [failure, partial] }\n"
    "  - { webhook: \"http://hooks.example/all\" }\n";

static void test_full_pipeline(void **state) {
  (void)state;
  lookups = 0;
  struct pipeline *p = load_ok(full_yaml);
  assert_int_equal(lookups, 3 + 2 + 1);
  assert_string_equal(p->path, "t.yml");
  assert_int_equal(p->version, 1);
  assert_string_equal(p->name, "kiosco-nightly");
  assert_string_equal(p->schedule, "0 3 * * *");
  assert_int_equal(p->n_tags, 2);
  assert_string_equal(p->tags[1], "nightly");

  assert_int_equal(p->n_sources, 3);
  assert_string_equal(p->sources[0].name, "uploads");
  assert_string_equal(p->sources[0].type, "files");
  assert_ptr_equal(p->sources[0].plugin, &files_plugin);
  assert_int_equal(p->sources[0].line, 6);
  assert_int_equal(p->sources[0].col, 5);
  json_t *w = p->sources[0].with;
  assert_int_equal(json_array_size(json_object_get(w, "paths")), 1);
  assert_string_equal(json_string_value(json_array_get(json_object_get(w, "paths"), 0)),
                      "/srv/uploads");
  assert_string_equal(json_string_value(json_array_get(json_object_get(w, "exclude"), 0)), "*.tmp");
  assert_true(json_is_false(json_object_get(w, "one_file_system"))); /* default applied */
  assert_int_equal(json_object_size(w), 3);

  assert_string_equal(p->sources[1].name, "files");
  w = p->sources[1].with;
  assert_string_equal(json_string_value(json_array_get(json_object_get(w, "paths"), 0)), "/etc");
  assert_true(json_is_true(json_object_get(w, "one_file_system")));
  assert_null(json_object_get(w, "exclude")); /* no default: absent */

  w = p->sources[2].with;
  assert_int_equal(json_integer_value(json_object_get(w, "timeout")), 2 * 3600 * 1000);
  assert_int_equal(json_integer_value(json_object_get(w, "buffer")), 1610612736);
  assert_int_equal(json_integer_value(json_object_get(w, "retries")), -2);
  assert_string_equal(json_string_value(json_object_get(w, "mode")), "fast");
  assert_string_equal(json_string_value(json_object_get(w, "token")), "file:/run/t");
  /* list default given in YAML flow form */
  assert_int_equal(json_array_size(json_object_get(w, "dbs")), 2);
  assert_string_equal(json_string_value(json_array_get(json_object_get(w, "dbs"), 1)), "b");

  assert_string_equal(p->compress_algorithm, "gzip");
  assert_int_equal(p->compress_level, 9);
  assert_string_equal(p->encrypt_algorithm, "aes-256-gcm");
  assert_string_equal(p->encrypt_passphrase_ref, "env:ENGINE_PASSPHRASE");
  assert_null(p->encrypt_key_file);
  assert_ptr_equal(p->crypto, &aes_plugin);

  assert_int_equal(p->n_sinks, 2);
  assert_string_equal(p->sinks[0].name, "main");
  assert_int_equal(p->sinks[0].required, 1); /* default */
  assert_int_equal(p->sinks[1].required, 0);
  assert_ptr_equal(p->sinks[1].plugin, &local_plugin);
  assert_string_equal(json_string_value(json_object_get(p->sinks[1].with, "path")), "/mnt/usb");

  assert_int_equal(p->chunk_min, 256 * 1024);
  assert_int_equal(p->chunk_avg, 1024 * 1024);
  assert_int_equal(p->chunk_max, 4 * 1024 * 1024);
  assert_int_equal(p->pack_size, 16000000);
  assert_int_equal(p->max_inflight, 256ull * 1024 * 1024);

  assert_int_equal(p->retention.set, 1);
  assert_int_equal(p->retention.keep_last, 7);
  assert_int_equal(p->retention.keep_daily, 30);
  assert_int_equal(p->retention.keep_yearly, 5);
  assert_int_equal(p->retention.keep_hourly, 0);
  assert_int_equal(p->retention.keep_within_ms, 36ll * 3600 * 1000);
  assert_int_equal(p->retention.n_keep_tags, 1);
  assert_string_equal(p->retention.apply, "after-run");

  assert_int_equal(p->n_hooks_before, 1);
  assert_string_equal(p->hooks_before[0], "ctl readonly on");
  assert_string_equal(p->hooks_after[0], "ctl readonly off");

  assert_int_equal(p->n_notify, 2);
  assert_string_equal(p->notify[0].webhook, "https://hooks.example/backup");
  assert_int_equal(p->notify[0].n_on, 2);
  assert_string_equal(p->notify[0].on[1], "partial");
  assert_int_equal(p->notify[1].n_on, 3); /* default: every outcome */
  pipeline_free(p);
}

static void test_minimal_defaults(void **state) {
  (void)state;
  struct pipeline *p = load_ok("version: 1\nname: m\n" SOURCES_OK
                               "stages: { encrypt: { algorithm: none } }\n" SINKS_OK);
  assert_string_equal(p->compress_algorithm, "zstd");
  assert_int_equal(p->compress_level, -1);
  assert_string_equal(p->encrypt_algorithm, "none");
  assert_null(p->crypto);
  assert_null(p->encrypt_passphrase_ref);
  assert_null(p->schedule);
  assert_int_equal(p->n_tags, 0);
  assert_int_equal(p->retention.set, 0);
  assert_null(p->retention.apply);
  assert_int_equal(p->chunk_avg, 0);
  assert_int_equal(p->pack_size, 0);
  assert_int_equal(p->n_notify, 0);
  pipeline_free(p);

  p = load_ok("version: 1\nname: m\n" SOURCES_OK SINKS_OK
              "stages:\n  encrypt: { algorithm: aes-256-gcm, key_file: /etc/engine/key }\n"
              "retention: { keep_weekly: 4, apply: never }\n");
  assert_string_equal(p->encrypt_key_file, "/etc/engine/key");
  assert_null(p->encrypt_passphrase_ref);
  assert_int_equal(p->retention.keep_weekly, 4);
  assert_null(p->retention.apply); /* never: not applied automatically */
  pipeline_free(p);
}

/* Without a registry the structure is still checked, `with:` kept as written. */
static void test_no_lookup(void **state) {
  (void)state;
  const char *yaml = "version: 1\nname: x\n"
                     "sources: [ { type: postgres, with: { dsn: \"host=/run\", schemas: [a, b], "
                     "opts: { n: 3 }, empty: } } ]\n"
                     "stages: { encrypt: { algorithm: chacha, passphrase: env:P } }\n"
                     "sinks: [ { type: s3 } ]\n";
  struct pipeline *p = NULL;
  char *err = NULL;
  assert_int_equal(pipeline_load_string("t.yml", yaml, strlen(yaml), NULL, NULL, &p, &err), 0);
  assert_null(p->sources[0].plugin);
  assert_null(p->crypto);
  json_t *w = p->sources[0].with;
  assert_string_equal(json_string_value(json_object_get(w, "dsn")), "host=/run");
  assert_string_equal(json_string_value(json_array_get(json_object_get(w, "schemas"), 1)), "b");
  assert_string_equal(json_string_value(json_object_get(json_object_get(w, "opts"), "n")), "3");
  assert_true(json_is_null(json_object_get(w, "empty")));
  assert_true(json_is_object(p->sinks[0].with));
  assert_int_equal(json_object_size(p->sinks[0].with), 0);
  pipeline_free(p);

  /* structural errors are still found */
  yaml = "version: 1\nname: x\nsources: [ { typ: files } ]\n" STAGES_OK SINKS_OK;
  assert_int_equal(pipeline_load_string("t.yml", yaml, strlen(yaml), NULL, NULL, &p, &err), -1);
  assert_string_equal(err,
                      "t.yml:3:12: sources[0].type: required but not given (expected the name of "
                      "a source plugin)\n"
                      "t.yml:3:14: sources[0]: unknown key 'typ'; did you mean 'type'? (expected "
                      "one of: name, type, with, retention)");
  free(err);
}

/* Anchors/aliases are expanded and `<<` merges. */
static void test_alias_and_merge(void **state) {
  (void)state;
  struct pipeline *p =
      load_ok("version: 1\nname: a\n"
              "sources:\n"
              "  - { name: one, type: files, with: &w { paths: [/a], exclude: [x] } }\n"
              "  - { name: two, type: files, with: *w }\n"
              "stages: { encrypt: { algorithm: none } }\n"
              "sinks:\n"
              "  - &s { name: s1, type: local, with: { path: /b } }\n"
              "  - <<: *s\n"
              "    name: s2\n");
  assert_string_equal(
      json_string_value(json_array_get(json_object_get(p->sources[1].with, "exclude"), 0)), "x");
  assert_string_equal(p->sinks[1].name, "s2");
  assert_string_equal(json_string_value(json_object_get(p->sinks[1].with, "path")), "/b");
  pipeline_free(p);

  expect_error("a: *nope\n", "t.yml:1:4: alias '*nope' refers to an unknown anchor (define '&nope' "
                             "before using it; an alias cannot refer to a node that contains it)");
}

/* objectives: { rpo, rto } and limits.timeout; rpo defaults to 24 h, a zero
 * objective is refused. */
static void test_objectives(void **state) {
  (void)state;
  struct pipeline *p = load_ok("version: 1\nname: o\n" SOURCES_OK STAGES_OK SINKS_OK
                               "objectives: { rpo: 1h, rto: 4h30m }\n"
                               "limits: { timeout: 2h }\n");
  assert_int_equal(p->rpo_ms, 3600ll * 1000);
  assert_int_equal(p->rto_ms, 4.5 * 3600 * 1000);
  assert_int_equal(p->timeout_ms, 2ll * 3600 * 1000);
  pipeline_free(p);
  p = load_ok("version: 1\nname: o\n" SOURCES_OK STAGES_OK SINKS_OK);
  assert_int_equal(p->rpo_ms, PIPELINE_DEFAULT_RPO_MS);
  assert_int_equal(p->rto_ms, 0);
  assert_int_equal(p->timeout_ms, 0);
  pipeline_free(p);
  p = load_ok("version: 1\nname: o\n" SOURCES_OK STAGES_OK SINKS_OK "objectives: { rto: 1h }\n");
  assert_int_equal(p->rpo_ms, PIPELINE_DEFAULT_RPO_MS);
  assert_int_equal(p->rto_ms, 3600ll * 1000);
  pipeline_free(p);
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK "objectives: { rpo: 0s }\n",
               "t.yml:11:20: objectives.rpo: expected a duration above zero such as 1h, got '0s'");
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK "objectives: { rpo: soon }\n",
               "t.yml:11:20: objectives.rpo: expected a duration such as 30s, 5m or 1h30m, got "
               "'soon'");
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK "objectives: { rp: 1h }\n",
               "t.yml:11:15: objectives: unknown key 'rp'; did you mean 'rpo'? (expected one of: "
               "rpo, rto)");
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK "objectives: 1h\n",
               "t.yml:11:13: objectives: expected a mapping such as { rpo: 1h, rto: 4h }, got "
               "'1h'");
}

/* hooks.timeout and the notify entries' headers, thresholds and events */
static void test_hooks_notify(void **state) {
  (void)state;
  struct pipeline *p = load_ok("version: 1\nname: o\n" SOURCES_OK STAGES_OK SINKS_OK
                               "hooks: { before: [a], timeout: 90s }\n"
                               "notify:\n"
                               "  - webhook: http://127.0.0.1:9/x\n"
                               "    on: [failure, consecutive_failures, storage_low, stale]\n"
                               "    headers: { Authorization: env:HOOK_TOKEN, X-Team: ops }\n"
                               "    timeout: 10s\n"
                               "    retries: 0\n"
                               "    consecutive_failures: 3\n"
                               "    storage_threshold: 85%\n"
                               "  - { webhook: http://127.0.0.1:9/y }\n");
  assert_int_equal(p->hooks_timeout_ms, 90000);
  assert_int_equal(p->n_notify, 2);
  const struct pipeline_notify *n = &p->notify[0];
  assert_int_equal(n->n_on, 4);
  assert_string_equal(n->on[3], "stale");
  assert_int_equal(n->n_headers, 2);
  assert_string_equal(n->headers[0].name, "Authorization");
  assert_string_equal(n->headers[0].value, "env:HOOK_TOKEN");
  assert_true(n->headers[0].secret);
  assert_string_equal(n->headers[1].value, "ops");
  assert_false(n->headers[1].secret);
  assert_int_equal(n->timeout_ms, 10000);
  assert_int_equal(n->retries, 0);
  assert_int_equal(n->consecutive_failures, 3);
  assert_int_equal(n->storage_threshold, 85);
  n = &p->notify[1]; /* defaults */
  assert_int_equal(n->n_on, 3);
  assert_int_equal(n->timeout_ms, PIPELINE_NOTIFY_TIMEOUT_MS);
  assert_int_equal(n->retries, PIPELINE_NOTIFY_RETRIES);
  assert_int_equal(n->consecutive_failures, 2);
  assert_int_equal(n->storage_threshold, 90);
  pipeline_free(p);
  p = load_ok("version: 1\nname: o\n" SOURCES_OK STAGES_OK SINKS_OK "hooks: { after: [b] }\n");
  assert_int_equal(p->hooks_timeout_ms, PIPELINE_HOOKS_TIMEOUT_MS);
  pipeline_free(p);
  assert_true(pipeline_notify_event_known("verify_failed"));
  assert_false(pipeline_notify_event_known("sucess"));

  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK "hooks: { timeout: 0s }\n",
               "t.yml:11:19: hooks.timeout: expected a duration of at least 1s, got '0s'");
  /* a literal credential is refused without being quoted back */
  expect_error(
      "version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK
      "notify: [ { webhook: http://h/, headers: { Authorization: Bearer-s3cr3t } } ]\n",
      "t.yml:11:59: notify[0].headers.Authorization: a literal secret is not accepted (the "
      "value is not shown); expected a secret reference env:NAME or file:/path, e.g. "
      "env:ENGINE_PASSPHRASE");
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK
               "notify: [ { webhook: http://h/, headers: { Content-Type: text/plain } } ]\n",
               "t.yml:11:44: notify[0].headers.Content-Type: the engine sets header "
               "'Content-Type' itself; remove it");
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK
               "notify: [ { webhook: http://h/, on: [sucess] } ]\n",
               "t.yml:11:38: notify[0].on[0]: expected one of: success, failure, partial, "
               "consecutive_failures, storage_low, verify_failed, stale, recovered, daily_summary, "
               "got 'sucess'; did you mean 'success'?");
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK
               "notify: [ { webhook: http://h/, storage_threshold: 120% } ]\n",
               "t.yml:11:52: notify[0].storage_threshold: expected a percentage from 1% to 100% "
               "such as 90%, got '120%'");
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK
               "notify: [ { webhook: http://h/, retries: 11 } ]\n",
               "t.yml:11:42: notify[0].retries: expected an integer from 0 to 10, got '11'");
}

/* ---- exact error messages --------------------------------------------- */

static void test_unknown_top_level_key(void **state) {
  (void)state;
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK
               "retension: { keep_last: 3 }\n",
               "t.yml:11:1: unknown key 'retension' at top level; did you mean 'retention'? "
               "(expected one of: version, name, schedule, tags, sources, stages, sinks, "
               "repository, limits, objectives, retention, hooks, notify)");
  /* too far from every key: no suggestion */
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK "colour: blue\n",
               "t.yml:11:1: unknown key 'colour' at top level (expected one of: version, name, "
               "schedule, tags, sources, stages, sinks, repository, limits, objectives, retention, "
               "hooks, notify)");
}

static void test_wrong_type(void **state) {
  (void)state;
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK
               "sinks:\n  - type: local\n    with:\n      path: [/a, /b]\n",
               "t.yml:11:13: sinks[0].with.path: expected a string, got a sequence");
  expect_error("version: 1\nname: [x]\n" SOURCES_OK STAGES_OK SINKS_OK,
               "t.yml:2:7: name: expected a name made of letters, digits, '.', '_' and '-', got a "
               "sequence");
}

static void test_unknown_plugin(void **state) {
  (void)state;
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK "sinks:\n  - type: sftp\n",
               "t.yml:9:11: sinks[0].type: no sink plugin named 'sftp' (available: local)");
  expect_error("version: 1\nname: x\n" SOURCES_OK SINKS_OK
               "stages: { encrypt: { algorithm: rot13, passphrase: env:P } }\n",
               "t.yml:9:33: stages.encrypt.algorithm: no crypto plugin named 'rot13' (available: "
               "aes-256-gcm)");
}

static void test_missing_required_option(void **state) {
  (void)state;
  expect_error(
      "version: 1\nname: x\nsources:\n  - type: files\n    with: { exclude: [a] }\n" STAGES_OK
          SINKS_OK,
      "t.yml:5:5: sources[0].with.paths: required by source plugin 'files' but not given "
      "(expected a list of strings)");
  /* no with: at all: reported at the entry */
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK "sinks:\n  - type: local\n",
               "t.yml:9:5: sinks[0].with.path: required by sink plugin 'local' but not given "
               "(expected a string)");
}

static void test_bad_size(void **state) {
  (void)state;
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK
               "repository:\n  pack_size: lots\n",
               "t.yml:12:14: repository.pack_size: expected a size such as 16MiB, got 'lots'");
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK
               "repository: { chunk_max: 8GiB }\n",
               "t.yml:11:26: repository.chunk_max: expected a size between 1 and 4294967295 "
               "bytes, got '8GiB'");
}

static void test_bad_duration(void **state) {
  (void)state;
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK
               "retention: { keep_last: 3, keep_within: 3 days }\n",
               "t.yml:11:41: retention.keep_within: expected a duration such as 30s, 5m or 1h30m, "
               "got '3 days'");
  expect_error(
      "version: 1\nname: x\nsources:\n  - type: kitchen\n    with: { timeout: soon }\n" STAGES_OK
          SINKS_OK,
      "t.yml:5:22: sources[0].with.timeout: expected a duration such as 30s, 5m or "
      "1h30m, got 'soon'");
}

static void test_unknown_option_did_you_mean(void **state) {
  (void)state;
  expect_error("version: 1\nname: x\nsources:\n  - type: files\n    with:\n      paths: [/a]\n"
               "      exlcude: [b]\n" STAGES_OK SINKS_OK,
               "t.yml:7:7: sources[0].with: unknown option 'exlcude' for source plugin 'files'; "
               "did you mean 'exclude'? (valid options: paths, exclude, one_file_system)");
}

static void test_literal_passphrase_refused(void **state) {
  (void)state;
  const char *yaml = "version: 1\nname: x\n" SOURCES_OK SINKS_OK
                     "stages:\n  encrypt:\n    algorithm: aes-256-gcm\n"
                     "    passphrase: \"correct horse battery\"\n";
  struct pipeline *p = NULL;
  char *err = NULL;
  assert_int_equal(pipeline_load_string("t.yml", yaml, strlen(yaml), fake_lookup, NULL, &p, &err),
                   -1);
  assert_null(strstr(err, "correct"));
  assert_null(strstr(err, "horse"));
  assert_string_equal(err, "t.yml:12:17: stages.encrypt.passphrase: a literal secret is not "
                           "accepted (the value is not shown); expected a secret reference "
                           "env:NAME or file:/path, e.g. env:ENGINE_PASSPHRASE");
  free(err);

  /* SECRET plugin options follow the same rule */
  yaml = "version: 1\nname: x\nsources:\n  - type: kitchen\n    with: { token: s3cr3t }\n" STAGES_OK
      SINKS_OK;
  assert_int_equal(pipeline_load_string("t.yml", yaml, strlen(yaml), fake_lookup, NULL, &p, &err),
                   -1);
  assert_null(strstr(err, "s3cr3t"));
  free(err);

  /* a missing blank makes the secret part of a key: still not shown */
  expect_error(
      "version: 1\nname: x\n" SOURCES_OK SINKS_OK
      "stages: { encrypt: { algorithm: aes-256-gcm, key_file: /k, passphrase:hunter2 } }\n",
      "t.yml:9:60: stages.encrypt: unknown key 'passphrase...'; did you mean "
      "'passphrase'? (expected one of: algorithm, passphrase, key_file, mode, per_tenant, "
      "tenant_of)");
  expect_error("version: 1\nname: x\n" SOURCES_OK SINKS_OK "stages:\n  encrypt: hunter2\n",
               "t.yml:10:12: stages.encrypt: expected a mapping such as { algorithm: aes-256-gcm, "
               "passphrase: env:ENGINE_PASSPHRASE }, or { algorithm: none } to store backups "
               "unencrypted, got a scalar");
  expect_error("version: 1\nname: x\n" SOURCES_OK SINKS_OK
               "stages: { encrypt: { algorithm: none, passphrase: env:P } }\n",
               "t.yml:9:39: stages.encrypt.passphrase: not allowed with algorithm none (remove it, "
               "or choose a crypto algorithm)");
  expect_error("version: 1\nname: x\n" SOURCES_OK SINKS_OK
               "stages: { encrypt: { algorithm: aes-256-gcm, passphrase: env:P, key_file: /k } }\n",
               "t.yml:9:65: stages.encrypt.key_file: not allowed together with passphrase (give "
               "exactly one of passphrase or key_file)");
  expect_error("version: 1\nname: x\n" SOURCES_OK SINKS_OK
               "stages: { encrypt: { algorithm: aes-256-gcm } }\n",
               "t.yml:9:20: stages.encrypt: algorithm 'aes-256-gcm' needs a passphrase (env:NAME "
               "or file:/path) or a key_file, neither was given");
}

static void test_encrypt_missing(void **state) {
  (void)state;
  expect_error("version: 1\nname: x\n" SOURCES_OK SINKS_OK "stages:\n  compress: { level: 5 }\n",
               "t.yml:9:1: stages.encrypt: required but not given (expected a mapping such as { "
               "algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE }, or { algorithm: none "
               "} to store backups unencrypted)");
  /* no stages block at all: reported at the top of the file */
  expect_error("version: 1\nname: x\n" SOURCES_OK SINKS_OK,
               "t.yml:1:1: stages.encrypt: required but not given (expected a mapping such as { "
               "algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE }, or { algorithm: none "
               "} to store backups unencrypted)");
}

static void test_yaml_syntax_error(void **state) {
  (void)state;
  expect_error("version: 1\nname: x\nsources: [a, b\nsinks: []\n",
               "t.yml:4:6: YAML syntax error: did not find expected ',' or ']' (while parsing a "
               "flow sequence)");
  expect_error("version: 1\nname: x\n  bad: indent\n",
               "t.yml:3:6: YAML syntax error: mapping values are not allowed in this context");
}

static void test_duplicate_key(void **state) {
  (void)state;
  expect_error("version: 1\nname: x\n" SOURCES_OK STAGES_OK SINKS_OK "name: y\n",
               "t.yml:11:1: duplicate key 'name' (first defined at line 2)");
  expect_error("version: 1\nname: x\n" SOURCES_OK SINKS_OK
               "stages:\n  compress:\n    level: 3\n    level: 4\n",
               "t.yml:12:5: stages.compress: duplicate key 'level' (first defined at line 11)");
  expect_error("version: 1\nname: x\nsources:\n  - type: files\n    with: { paths: a, paths: b }\n",
               "t.yml:5:23: sources[0].with: duplicate key 'paths' (first defined at line 5)");
}

/* Every problem is reported, in file order, not just the first. */
static void test_all_errors_collected(void **state) {
  (void)state;
  expect_error("version: 2\n"
               "name: ok\n"
               "sources:\n"
               "  - type: files\n"
               "    with: { paths: /a, one_file_system: maybe }\n"
               "  - type: files\n"
               "    with: { paths: /b }\n"
               "stages:\n"
               "  compress: { algorithm: zstd, level: 42 }\n"
               "  encrypt: { algorithm: none }\n"
               "sinks: []\n",
               "t.yml:1:10: version: unsupported version '2' (this engine reads version 1)\n"
               "t.yml:5:41: sources[0].with.one_file_system: expected a boolean (true/false, "
               "yes/no, on/off), got 'maybe'\n"
               "t.yml:6:11: sources[1]: duplicate source name 'files' (the name defaults to the "
               "type; already used by sources[0] at line 4); give each source its own name\n"
               "t.yml:9:39: stages.compress.level: expected an integer from 1 to 19 for zstd, got "
               "'42'\n"
               "t.yml:11:8: sinks: expected a non-empty list of sinks, got an empty list");
}

static void test_misc_errors(void **state) {
  (void)state;
  expect_error("", "t.yml:1:1: expected a mapping with version, name, sources, stages and sinks at "
                   "top level, got nothing");
  expect_error("name: x\n---\nname: y\n",
               "t.yml:2:1: a second YAML document starts here; a pipeline file holds exactly one "
               "document");
  expect_error(
      "version: 1\nname: x\n" SOURCES_OK SINKS_OK
      "stages: { compress: { algorithm: gz }, encrypt: { algorithm: none } }\n",
      "t.yml:9:34: stages.compress.algorithm: expected one of: zstd, gzip, none, got 'gz'; "
      "did you mean 'gzip'?");
  expect_error("version: 1\nname: x\n" SOURCES_OK SINKS_OK STAGES_OK
               "retention: { apply: after-run }\n",
               "t.yml:11:12: retention: no keep_* rule given; a policy that keeps nothing would "
               "forget every snapshot");
  expect_error("version: 1\nname: x\nsources:\n  - type: kitchen\n    with: { paths: [a], mode: "
               "quick }\n" STAGES_OK SINKS_OK,
               "t.yml:5:13: sources[0].with: unknown option 'paths' for source plugin 'kitchen' "
               "(valid options: timeout, buffer, retries, mode, token, dbs)\n"
               "t.yml:5:31: sources[0].with.mode: expected one of: fast, safe, got 'quick'");
}

/* sources[].retention: per-item rules, listed in the pipeline's retention
 * for engine forget; they need a pipeline retention block and a keep_* rule */
static void test_item_retention(void **state) {
  (void)state;
  struct pipeline *p = load_ok("version: 1\nname: x\nsources:\n  - name: tenants\n    type: files\n"
                               "    with: { paths: [/data] }\n"
                               "    retention: { keep_last: 1, keep_daily: 3, expire_after: 90d }\n"
                               "  - type: files\n    with: { paths: [/etc] }\n" STAGES_OK SINKS_OK
                               "retention: { keep_daily: 7 }\n");
  assert_int_equal(p->retention.n_items, 1);
  assert_string_equal(p->retention.items[0].source, "tenants");
  assert_int_equal(p->retention.items[0].keep->keep_last, 1);
  assert_int_equal(p->retention.items[0].keep->keep_daily, 3);
  assert_int_equal(p->retention.items[0].keep->expire_after_ms, 90ll * 86400 * 1000);
  assert_null(p->sources[1].retention);
  pipeline_free(p);
  expect_error("version: 1\nname: x\nsources:\n  - type: files\n    with: { paths: [/data] }\n"
               "    retention: { keep_last: 1 }\n" STAGES_OK SINKS_OK,
               "t.yml:6:16: sources[0].retention: per-item rules keep snapshots the pipeline's "
               "retention would forget, but the pipeline has no retention block (engine forget "
               "would keep everything); add a top-level retention such as { keep_daily: 7 }");
  expect_error(
      "version: 1\nname: x\nsources:\n  - type: files\n    with: { paths: [/data] }\n"
      "    retention: { expire_after: 30d }\n" STAGES_OK SINKS_OK "retention: { keep_daily: 7 }\n",
      "t.yml:6:16: sources[0].retention: no keep_* rule given; the rules say which "
      "snapshots of each item to keep beyond the pipeline's retention (e.g. keep_last: 1)");
  expect_error("version: 1\nname: x\nsources:\n  - type: files\n    with: { paths: [/data] }\n"
               "    retention: { keep_tags: [a], keep_last: 1 }\n" STAGES_OK SINKS_OK
               "retention: { keep_daily: 7 }\n",
               "t.yml:6:18: sources[0].retention: unknown key 'keep_tags' (expected one of: "
               "keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, "
               "keep_within, expire_after)");
}

static void test_load_file(void **state) {
  (void)state;
  char path[] = "/tmp/test_config_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  size_t len = strlen(full_yaml);
  assert_int_equal(write(fd, full_yaml, len), (ssize_t)len);
  close(fd);
  struct pipeline *p = NULL;
  char *err = NULL;
  assert_int_equal(pipeline_load(path, fake_lookup, NULL, &p, &err), 0);
  assert_string_equal(p->path, path);
  assert_string_equal(p->name, "kiosco-nightly");
  pipeline_free(p);
  unlink(path);

  assert_int_equal(pipeline_load(path, fake_lookup, NULL, &p, &err), -1);
  assert_null(p);
  char *expected = xasprintf("unable to open '%s': No such file or directory", path);
  assert_string_equal(err, expected);
  free(expected);
  free(err);
}

/* ---- value parsers ----------------------------------------------------- */

static void test_parse_size(void **state) {
  (void)state;
  uint64_t v;
  assert_int_equal(config_parse_size("0", &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(config_parse_size("512", &v), 0);
  assert_int_equal(v, 512);
  assert_int_equal(config_parse_size("512B", &v), 0);
  assert_int_equal(v, 512);
  assert_int_equal(config_parse_size("64KiB", &v), 0);
  assert_int_equal(v, 65536);
  assert_int_equal(config_parse_size("64k", &v), 0);
  assert_int_equal(v, 65536);
  assert_int_equal(config_parse_size("2KB", &v), 0);
  assert_int_equal(v, 2000);
  assert_int_equal(config_parse_size("16MiB", &v), 0);
  assert_int_equal(v, 16u << 20);
  assert_int_equal(config_parse_size("16MB", &v), 0);
  assert_int_equal(v, 16000000);
  assert_int_equal(config_parse_size("1G", &v), 0);
  assert_int_equal(v, 1u << 30);
  assert_int_equal(config_parse_size("2GB", &v), 0);
  assert_int_equal(v, 2000000000ull);
  assert_int_equal(config_parse_size("3TiB", &v), 0);
  assert_int_equal(v, 3ull << 40);
  assert_int_equal(config_parse_size("1TB", &v), 0);
  assert_int_equal(v, 1000000000000ull);
  assert_int_equal(config_parse_size("1.5GiB", &v), 0);
  assert_int_equal(v, 3ull << 29);
  assert_int_equal(config_parse_size("10 MiB", &v), 0);
  assert_int_equal(v, 10u << 20);
  assert_int_equal(config_parse_size("15EiB", &v), 0);
  assert_int_equal(v, 15ull << 60);
  assert_int_equal(config_parse_size("18446744073709551615", &v), 0);
  assert_true(v == UINT64_MAX);

  const char *bad[] = {"",      "-1",  "+1",    " 1",  "1 ",  "lots",  "1X",
                       "1KiBx", "1.5", "0.3K",  "1.",  ".5K", "16EiB", "18446744073709551616",
                       "1e3",   "1iB", "1MiB ", "0x10"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    v = 77;
    if (config_parse_size(bad[i], &v) != -1)
      fail_msg("config_parse_size accepted '%s'", bad[i]);
    assert_int_equal(v, 77);
  }
}

static void test_parse_duration(void **state) {
  (void)state;
  int64_t ms;
  assert_int_equal(config_parse_duration("500ms", &ms), 0);
  assert_int_equal(ms, 500);
  assert_int_equal(config_parse_duration("30s", &ms), 0);
  assert_int_equal(ms, 30000);
  assert_int_equal(config_parse_duration("30", &ms), 0); /* bare: seconds */
  assert_int_equal(ms, 30000);
  assert_int_equal(config_parse_duration("0", &ms), 0);
  assert_int_equal(ms, 0);
  assert_int_equal(config_parse_duration("5m", &ms), 0);
  assert_int_equal(ms, 300000);
  assert_int_equal(config_parse_duration("2h", &ms), 0);
  assert_int_equal(ms, 7200000);
  assert_int_equal(config_parse_duration("7d", &ms), 0);
  assert_int_equal(ms, 7ll * 86400000);
  assert_int_equal(config_parse_duration("2w", &ms), 0);
  assert_int_equal(ms, 14ll * 86400000);
  assert_int_equal(config_parse_duration("1y", &ms), 0);
  assert_int_equal(ms, 365ll * 86400000);
  assert_int_equal(config_parse_duration("1h30m", &ms), 0);
  assert_int_equal(ms, 5400000);
  assert_int_equal(config_parse_duration("1m30s250ms", &ms), 0);
  assert_int_equal(ms, 90250);

  const char *bad[] = {"",
                       "-5s",
                       "s",
                       "5x",
                       "1h30",
                       "1.5h",
                       "5 s",
                       "5min",
                       "10mss",
                       "9223372036854775807s",
                       "99999999999999999999",
                       "1h-30m"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ms = 77;
    if (config_parse_duration(bad[i], &ms) != -1)
      fail_msg("config_parse_duration accepted '%s'", bad[i]);
    assert_int_equal(ms, 77);
  }
}

static void test_parse_bool(void **state) {
  (void)state;
  const char *t[] = {"true", "yes", "on", "TRUE", "Yes", "On"};
  const char *f[] = {"false", "no", "off", "False", "NO", "oFF"};
  for (size_t i = 0; i < 6; i++) {
    int b = -1;
    assert_int_equal(config_parse_bool(t[i], &b), 0);
    assert_int_equal(b, 1);
    b = -1;
    assert_int_equal(config_parse_bool(f[i], &b), 0);
    assert_int_equal(b, 0);
  }
  const char *bad[] = {"", "1", "0", "y", "n", "truee", " true", "maybe"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int b = 77;
    assert_int_equal(config_parse_bool(bad[i], &b), -1);
    assert_int_equal(b, 77);
  }
}

/* ---- the tree itself --------------------------------------------------- */

static void test_yaml_tree_positions(void **state) {
  (void)state;
  const char *y = "a: 1\nb:\n  - \"yes\"\n  - yes\n  - ~\n";
  struct ytree_node *root = NULL;
  char *err = NULL;
  assert_int_equal(ytree_parse("y.yml", y, strlen(y), &root, &err), 0);
  assert_int_equal(root->kind, YTREE_MAPPING);
  assert_int_equal(root->n_pairs, 2);
  assert_int_equal(root->pairs[1].key->line, 2);
  assert_int_equal(root->pairs[1].key->col, 1);
  const struct ytree_node *b = ytree_map_get(root, "b");
  assert_int_equal(b->kind, YTREE_SEQUENCE);
  assert_int_equal(b->n_items, 3);
  assert_int_equal(b->items[0]->line, 3);
  assert_int_equal(b->items[0]->col, 5);
  assert_true(b->items[0]->quoted);
  assert_false(b->items[1]->quoted);
  assert_string_equal(b->items[1]->text, "yes");
  assert_true(ytree_is_null(b->items[2]));
  assert_null(ytree_map_get(root, "c"));
  ytree_free(root);

  /* an empty stream is not an error: no root */
  assert_int_equal(ytree_parse("y.yml", "", 0, &root, &err), 0);
  assert_null(root);

  /* mapping keys must be scalars */
  y = "? [a]\n: 1\n";
  assert_int_equal(ytree_parse("y.yml", y, strlen(y), &root, &err), -1);
  assert_string_equal(err, "y.yml:1:3: mapping keys must be scalars, got a sequence");
  free(err);

  /* alias expansion is bounded ("billion laughs") */
  char *big = xstrdup("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
  for (char c = 'b'; c <= 'h'; c++) {
    char *next = xasprintf("%s%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", big, c, c,
                           c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    free(big);
    big = next;
  }
  assert_int_equal(ytree_parse("y.yml", big, strlen(big), &root, &err), -1);
  assert_non_null(strstr(err, "document too large"));
  free(err);
  free(big);
}

/* ---- bounded parsing ----------------------------------------------------- */

/* One large scalar aliased through levels of lists ("a 1 MiB file with three
 * levels of aliases"): refused once the expanded text passes 16 MiB, at the
 * alias that crosses it, before the copies are made. */
static void test_alias_bomb_bytes(void **state) {
  (void)state;
  size_t big = 1024 * 1024;
  char *s = xmalloc(big + 1);
  memset(s, 'x', big);
  s[big] = '\0';
  char *y = xasprintf("a: &a %s\n"
                      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
                      s);
  free(s);
  struct ytree_node *root = (struct ytree_node *)1;
  char *err = NULL;
  assert_int_equal(ytree_parse("y.yml", y, strlen(y), &root, &err), -1);
  assert_null(root);
  /* 1 + 10 MiB so far; c's first *b would make it 21 MiB */
  assert_string_equal(err, "y.yml:3:8: c[0]: the document expands to more than 16777216 bytes "
                           "through aliases (at most 16 MiB of scalar text after expanding "
                           "aliases and merge keys)");
  free(err);

  /* through pipeline_load_string, merge keys copying as much as aliases */
  char *m = xstrdup("m0: &m0 { k: v }\n");
  for (int i = 1; i < 20; i++) {
    char *next =
        xasprintf("%sm%d: &m%d { <<: *m%d, pad%d: '%0*d' }\n", m, i, i, i - 1, i, 1 << 20, 0);
    free(m);
    m = next;
  }
  struct pipeline *p = (struct pipeline *)1;
  assert_int_equal(pipeline_load_string("t.yml", m, strlen(m), fake_lookup, NULL, &p, &err), -1);
  assert_null(p);
  assert_non_null(strstr(err, "the document expands to more than 16777216 bytes through aliases"));
  free(err);
  free(m);
  free(y);

  /* a document that is itself large, with no alias at all */
  size_t huge = YTREE_MAX_TEXT + 1;
  char *h = xmalloc(huge + 4);
  memcpy(h, "a: ", 3);
  memset(h + 3, 'y', huge);
  h[huge + 3] = '\0';
  assert_int_equal(ytree_parse("h.yml", h, huge + 3, &root, &err), -1);
  assert_string_equal(err, "h.yml:1:4: a: the document holds more than 16777216 bytes (16 MiB) of "
                           "scalar text");
  free(err);
  free(h);

  /* below the limit, aliases of a large scalar are fine */
  s = xmalloc(big + 1);
  memset(s, 'z', big);
  s[big] = '\0';
  y = xasprintf("a: &a %s\nb: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n", s);
  free(s);
  assert_int_equal(ytree_parse("y.yml", y, strlen(y), &root, &err), 0);
  const struct ytree_node *b = ytree_map_get(root, "b");
  assert_int_equal(b->n_items, 10);
  assert_int_equal(b->items[9]->len, big);
  ytree_free(root);
  free(y);
}

/* An anchor on a merged mapping (or inside it) stays usable after the merge:
 * the merge used to move the pairs out and free the mapping the anchor
 * named. */
static void test_merge_keeps_anchors(void **state) {
  (void)state;
  const char *y = "x:\n  <<: &a { k: v, n: &n { deep: 1 } }\n  own: 1\n"
                  "y: *a\nz: *n\nw: { <<: [*a, { k: other, extra: 2 }] }\n";
  struct ytree_node *root = NULL;
  char *err = NULL;
  assert_int_equal(ytree_parse("y.yml", y, strlen(y), &root, &err), 0);
  const struct ytree_node *x = ytree_map_get(root, "x");
  assert_int_equal(x->n_pairs, 3);
  assert_string_equal(x->pairs[0].key->text, "own");
  assert_string_equal(ytree_map_get(x, "k")->text, "v");
  const struct ytree_node *ya = ytree_map_get(root, "y");
  assert_int_equal(ya->kind, YTREE_MAPPING);
  assert_int_equal(ya->n_pairs, 2);
  assert_string_equal(ytree_map_get(ya, "k")->text, "v");
  assert_string_equal(ytree_map_get(ytree_map_get(root, "z"), "deep")->text, "1");
  /* earlier merge sources win */
  const struct ytree_node *w = ytree_map_get(root, "w");
  assert_string_equal(ytree_map_get(w, "k")->text, "v");
  assert_string_equal(ytree_map_get(w, "extra")->text, "2");
  ytree_free(root);
}

/* Mappings with many keys: duplicates are found (also the first one, past
 * the point where keys are indexed) and merges keep the mapping's own keys. */
static void test_wide_mapping(void **state) {
  (void)state;
  char *y = xstrdup("base: &b {");
  for (int i = 0; i < 40; i++) {
    char *next = xasprintf("%s%sk%d: base%d", y, i ? ", " : " ", i, i);
    free(y);
    y = next;
  }
  char *next = xasprintf("%s }\nm:\n  k3: own\n  <<: *b\n  k39: own\n", y);
  free(y);
  y = next;
  struct ytree_node *root = NULL;
  char *err = NULL;
  assert_int_equal(ytree_parse("y.yml", y, strlen(y), &root, &err), 0);
  const struct ytree_node *m = ytree_map_get(root, "m");
  assert_int_equal(m->n_pairs, 40);
  assert_string_equal(ytree_map_get(m, "k3")->text, "own");
  assert_string_equal(ytree_map_get(m, "k39")->text, "own");
  assert_string_equal(ytree_map_get(m, "k20")->text, "base20");
  ytree_free(root);
  free(y);

  /* 30 000 keys, the last two repeating the first and the 20 000th */
  size_t cap = 30002 * 16, len = 0;
  char *w = xmalloc(cap);
  for (int i = 0; i < 30000; i++)
    len += (size_t)snprintf(w + len, cap - len, "key%d: %d\n", i, i);
  len += (size_t)snprintf(w + len, cap - len, "key0: again\nkey19999: again\n");
  assert_int_equal(ytree_parse("w.yml", w, len, &root, &err), -1);
  assert_string_equal(err, "w.yml:30001:1: duplicate key 'key0' (first defined at line 1)\n"
                           "w.yml:30002:1: duplicate key 'key19999' (first defined at line 20000)");
  free(err);
  free(w);
}

/* pipeline_load reads only regular files, never blocks on a FIFO and
 * refuses files over 4 MiB, each with a message naming the file. */
static void test_load_file_kinds(void **state) {
  (void)state;
  char dir[] = "/tmp/test_config_dir_XXXXXX";
  assert_non_null(mkdtemp(dir));
  struct pipeline *p = NULL;
  char *err = NULL;

  char *fifo = xasprintf("%s/p.yml", dir);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  alarm(20); /* a blocking open would hang the test: fail it instead */
  assert_int_equal(pipeline_load(fifo, fake_lookup, NULL, &p, &err), -1);
  alarm(0);
  assert_null(p);
  char *expected =
      xasprintf("unable to read '%s': it is a FIFO; a pipeline must be a regular file", fifo);
  assert_string_equal(err, expected);
  free(expected);
  free(err);
  unlink(fifo);
  free(fifo);

  assert_int_equal(pipeline_load("/dev/zero", fake_lookup, NULL, &p, &err), -1);
  assert_string_equal(
      err,
      "unable to read '/dev/zero': it is a character device; a pipeline must be a regular file");
  free(err);
  assert_int_equal(pipeline_load(dir, fake_lookup, NULL, &p, &err), -1);
  expected =
      xasprintf("unable to read '%s': it is a directory; a pipeline must be a regular file", dir);
  assert_string_equal(err, expected);
  free(expected);
  free(err);

  /* 4 MiB + 1 byte: refused before it is read */
  char *big = xasprintf("%s/big.yml", dir);
  FILE *f = fopen(big, "w");
  assert_non_null(f);
  assert_int_equal(fputs(full_yaml, f) >= 0, 1);
  assert_int_equal(fseeko(f, 4 * 1024 * 1024 - 1, SEEK_SET), 0);
  assert_int_equal(fputs("#x", f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(pipeline_load(big, fake_lookup, NULL, &p, &err), -1);
  expected = xasprintf("unable to read '%s': it is 4194305 bytes; a pipeline file may be at most "
                       "4194304 bytes (4 MiB)",
                       big);
  assert_string_equal(err, expected);
  free(expected);
  free(err);
  /* exactly 4 MiB is read (and the NULs of the hole are a syntax error) */
  assert_int_equal(truncate(big, 4 * 1024 * 1024), 0);
  assert_int_equal(pipeline_load(big, fake_lookup, NULL, &p, &err), -1);
  assert_non_null(strstr(err, "YAML syntax error"));
  free(err);
  unlink(big);
  free(big);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_pipeline),
      cmocka_unit_test(test_item_retention),
      cmocka_unit_test(test_minimal_defaults),
      cmocka_unit_test(test_no_lookup),
      cmocka_unit_test(test_alias_and_merge),
      cmocka_unit_test(test_unknown_top_level_key),
      cmocka_unit_test(test_wrong_type),
      cmocka_unit_test(test_unknown_plugin),
      cmocka_unit_test(test_missing_required_option),
      cmocka_unit_test(test_bad_size),
      cmocka_unit_test(test_bad_duration),
      cmocka_unit_test(test_unknown_option_did_you_mean),
      cmocka_unit_test(test_literal_passphrase_refused),
      cmocka_unit_test(test_encrypt_missing),
      cmocka_unit_test(test_yaml_syntax_error),
      cmocka_unit_test(test_duplicate_key),
      cmocka_unit_test(test_all_errors_collected),
      cmocka_unit_test(test_misc_errors),
      cmocka_unit_test(test_load_file),
      cmocka_unit_test(test_parse_size),
      cmocka_unit_test(test_parse_duration),
      cmocka_unit_test(test_parse_bool),
      cmocka_unit_test(test_yaml_tree_positions),
      cmocka_unit_test(test_alias_bomb_bytes),
      cmocka_unit_test(test_merge_keeps_anchors),
      cmocka_unit_test(test_wide_mapping),
      cmocka_unit_test(test_load_file_kinds),
      cmocka_unit_test(test_objectives),
      cmocka_unit_test(test_hooks_notify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
