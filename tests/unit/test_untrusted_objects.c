/* Repository objects are untrusted input: index objects (index_parse), key
 * objects (repo_key_object_open) and the saving of a sealed object that is
 * already stored. Uses the real local sink and aes-256-gcm plugins of the
 * build tree. (tests/fuzz/ fuzzes the same entry points.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/host.h"
#include "plugin/loader.h"
#include "repo/index.h"
#include "repo/repo.h"
#include "compress/compress.h"

#define HEX64 "d100000000000000000000000000000000000000000000000000000000000000"
#define PACK64 "ee00000000000000000000000000000000000000000000000000000000000000"

struct fixture {
  char dir[64];
  struct plugin_registry *reg;
  struct plugin_instance *sink_pi;
  struct repo_sink sink;
  struct repo *repo; /* aes-256-gcm */
};

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "%s", "/tmp/engine-test-untrusted-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  const char *dirs[] = {ENGINE_TEST_PLUGIN_DIR};
  assert_int_equal(registry_load(dirs, 1, &f->reg), 0);
  char *err = NULL;
  const struct engine_plugin *local = registry_find(f->reg, ENGINE_PLUGIN_SINK, "local", &err);
  assert_non_null(local);
  const struct engine_plugin *aes =
      registry_find(f->reg, ENGINE_PLUGIN_CRYPTO, "aes-256-gcm", &err);
  assert_non_null(aes);
  json_t *cfg = json_pack("{s:s, s:b}", "path", f->dir, "fsync", 0);
  assert_int_equal(plugin_instance_new(local, "local", cfg, &f->sink_pi, &err), 0);
  json_decref(cfg);
  f->sink.pi = f->sink_pi;
  f->sink.required = 1;
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = &f->sink;
  o.n_sinks = 1;
  o.crypto = aes;
  o.passphrase = "correct horse";
  o.passphrase_len = strlen(o.passphrase);
  o.create = 1;
  o.compress_algo = COMPRESS_ZSTD;
  o.compress_level = 3;
  assert_int_equal(repo_open(&o, &f->repo, &err), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  repo_close(f->repo);
  plugin_instance_free(f->sink_pi);
  registry_free(f->reg);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static json_t *index_obj(const char *offset, const char *length) {
  char text[512];
  snprintf(text, sizeof(text),
           "{\"version\":1,\"packs\":[{\"id\":\"" PACK64 "\",\"blobs\":["
           "{\"id\":\"" HEX64 "\",\"type\":\"data\",\"offset\":%s,\"length\":%s,"
           "\"raw_length\":7}]}]}",
           offset, length);
  json_error_t je;
  json_t *o = json_loads(text, 0, &je);
  assert_non_null(o);
  return o;
}

/* Offsets and lengths are 32-bit: a value outside 0..2^32-1 is refused,
 * not wrapped (2^32 + 5 used to become 5), and nothing of the object is
 * added to the index. */
static void test_index_bounds(void **state) {
  (void)state;
  static const char *const bad[][2] = {{"4294967296", "10"}, {"-1", "10"},  {"0", "4294967301"},
                                       {"0", "-4294967291"}, {"1.5", "10"}, {"\"0\"", "10"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct index *ix = index_new();
    json_t *o = index_obj(bad[i][0], bad[i][1]);
    char *err = NULL;
    assert_int_equal(index_parse(ix, o, &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "packs[0].blobs[0]."));
    assert_non_null(strstr(err, "is not a whole number from 0 to 4294967295"));
    free(err);
    assert_int_equal(index_size(ix), 0);
    assert_int_equal(ix->n_packs, 0);
    json_decref(o);
    index_free(ix);
  }
  struct index *ix = index_new();
  json_t *o = index_obj("4294967295", "0");
  char *err = NULL;
  assert_int_equal(index_parse(ix, o, &err), 0);
  unsigned char id[32];
  assert_int_equal(hex_decode(HEX64, id, 32), 0);
  struct index_entry e;
  assert_true(index_get(ix, id, &e));
  assert_int_equal(e.offset, UINT32_MAX);
  assert_int_equal(e.length, 0);
  assert_int_equal(e.raw_length, 7);
  json_decref(o);
  index_free(ix);
}

/* A version or structure problem is named. */
static void test_index_structure(void **state) {
  (void)state;
  static const char *const bad[][2] = {
      {"{\"version\":2,\"packs\":[]}", "format version 2; this engine reads version 1"},
      {"{\"packs\":[]}", "no format version"},
      {"{\"version\":1}", "'packs' is not an array"},
      {"{\"version\":1,\"packs\":[{\"id\":\"" PACK64 "\"}]}", "packs[0].blobs is not an array"},
      {"{\"version\":1,\"packs\":[{\"id\":\"xyz\",\"blobs\":[]}]}", "packs[0].id is not 64 hex"},
      {"[1]", "not a JSON object"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    json_error_t je;
    json_t *o = json_loads(bad[i][0], 0, &je);
    assert_non_null(o);
    struct index *ix = index_new();
    char *err = NULL;
    assert_int_equal(index_parse(ix, o, &err), -1);
    if (!strstr(err, bad[i][1]))
      fail_msg("'%s': got '%s', expected '%s'", bad[i][0], err, bad[i][1]);
    free(err);
    json_decref(o);
    index_free(ix);
  }
}

static char *key_text(const char *encryption, const char *kdf_json, const char *repo_id) {
  char master[512];
  char *ek = b64_encode((const unsigned char *)"0123456789abcdef0123456789abcdef", 32);
  snprintf(master, sizeof(master),
           "{\"chunker_seed\":\"0011223344556677\",\"encryption_key\":\"%s\",\"id_key\":\"%s\","
           "\"repository\":\"%s\"}",
           ek, ek, repo_id);
  free(ek);
  char *data = b64_encode(master, strlen(master));
  char *text = NULL;
  assert_true(asprintf(&text,
                       "{\"version\":1,\"encryption\":\"%s\",\"kdf\":%s,\"data\":\"%s\","
                       "\"created\":\"2026-01-01T00:00:00Z\"}",
                       encryption, kdf_json, data) > 0);
  free(data);
  return text;
}

/* An encrypted repository never opens with a master key stored in the
 * clear (kdf none): that would open it with any passphrase, under keys
 * whoever wrote the object chose. */
static void test_key_kdf_none_in_encrypted_repo(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  unsigned char enc_key[32];
  memcpy(enc_key, r->enc_key, 32);
  char *text = key_text("aes-256-gcm", "{\"algorithm\":\"none\"}", r->id);
  char name[80], hex[65];
  sha256_hex(text, strlen(text), hex);
  snprintf(name, sizeof(name), "keys/%s", hex);
  char *err = NULL;
  assert_int_equal(
      repo_key_object_open(r, name, text, strlen(text), "wrong", 5, REPO_KDF_MAX_N, &err), -1);
  assert_non_null(strstr(err, "is damaged: its 'kdf' is 'none'"));
  assert_non_null(strstr(err, "encrypted with 'aes-256-gcm'"));
  free(err);
  assert_memory_equal(enc_key, r->enc_key, 32); /* the master key is untouched */
  free(text);
}

/* scrypt parameters above the cap are refused before any derivation. */
static void test_key_scrypt_cap(void **state) {
  struct fixture *f = *state;
  char *text = key_text("aes-256-gcm",
                        "{\"algorithm\":\"scrypt\",\"N\":2048,\"r\":8,\"p\":1,\"salt\":\"AAAA\"}",
                        f->repo->id);
  char *err = NULL;
  assert_int_equal(repo_key_object_open(f->repo, "keys/x", text, strlen(text), "p", 1, 1024, &err),
                   -1);
  assert_non_null(strstr(err, "2 <= N <= 1024"));
  free(err);
  free(text);
}

/* Saving an object that is already stored is a success without a message
 * (the message of the refused overwrite used to leak). */
static void test_save_json_twice(void **state) {
  struct fixture *f = *state;
  json_t *o = json_pack("{s:i, s:[]}", "version", 1, "packs");
  char id1[65], id2[65];
  char *err = NULL;
  struct repo plain = *f->repo;
  plain.crypto = NULL; /* deterministic: the second save names the same object */
  assert_int_equal(repo_save_json(&plain, "index", o, id1, &err), 0);
  assert_null(err);
  assert_int_equal(repo_save_json(&plain, "index", o, id2, &err), 0);
  assert_null(err);
  assert_string_equal(id1, id2);
  json_decref(o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_index_bounds),
      cmocka_unit_test(test_index_structure),
      cmocka_unit_test_setup_teardown(test_key_kdf_none_in_encrypted_repo, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_scrypt_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_save_json_twice, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
