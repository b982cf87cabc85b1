/* Repository format: blob encoding, packs, sealed JSON objects, keys, and the
 * restore name check. Uses the real local sink and aes-256-gcm plugins from
 * the build tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/restore.h"
#include "plugin/host.h"
#include "plugin/loader.h"
#include "repo/index.h"
#include "repo/pack.h"
#include "repo/repo.h"
#include "repo/tree.h"
#include "compress/compress.h"

struct fixture {
  char dir[64];
  struct plugin_registry *reg;
  struct plugin_instance *sink_pi;
  struct repo_sink sink;
  const struct engine_plugin *crypto;
  struct repo *repo;
};

static int open_repo(struct fixture *f, const char *pass, int create, struct repo **out,
                     char **err) {
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = &f->sink;
  o.n_sinks = 1;
  o.crypto = f->crypto;
  o.passphrase = pass;
  o.passphrase_len = strlen(pass);
  o.create = create;
  o.compress_algo = COMPRESS_ZSTD;
  o.compress_level = 3;
  return repo_open(&o, out, err);
}

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "%s", "/tmp/engine-test-format-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  const char *dirs[] = {ENGINE_TEST_PLUGIN_DIR};
  assert_int_equal(registry_load(dirs, 1, &f->reg), 0);
  char *err = NULL;
  const struct engine_plugin *local = registry_find(f->reg, ENGINE_PLUGIN_SINK, "local", &err);
  assert_non_null(local);
  f->crypto = registry_find(f->reg, ENGINE_PLUGIN_CRYPTO, "aes-256-gcm", &err);
  assert_non_null(f->crypto);
  json_t *cfg = json_pack("{s:s, s:b}", "path", f->dir, "fsync", 0);
  assert_int_equal(plugin_instance_new(local, "local", cfg, &f->sink_pi, &err), 0);
  json_decref(cfg);
  f->sink.pi = f->sink_pi;
  f->sink.required = 1;
  assert_int_equal(open_repo(f, "correct horse", 1, &f->repo, &err), 0);
  assert_true(f->repo->created);
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

static void test_blob_roundtrip_and_tamper(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  size_t n = 300000;
  unsigned char *data = malloc(n);
  for (size_t i = 0; i < n; i++)
    data[i] = (unsigned char)(i % 251 < 200 ? 'a' + i % 7 : i * 31);
  unsigned char id[32];
  repo_blob_id(r, data, n, id);
  void *enc;
  size_t enc_len;
  assert_int_equal(repo_blob_encode(r, NULL, id, BLOB_DATA, data, n, &enc, &enc_len), 0);
  assert_true(enc_len < n); /* compressible */
  void *out;
  size_t out_len;
  char *err = NULL;
  assert_int_equal(repo_blob_decode(r, NULL, id, BLOB_DATA, enc, enc_len, &out, &out_len, &err), 0);
  assert_int_equal(out_len, n);
  assert_memory_equal(out, data, n);
  free(out);
  /* the type is authenticated */
  assert_int_not_equal(repo_blob_decode(r, NULL, id, BLOB_TREE, enc, enc_len, &out, &out_len, &err),
                       0);
  assert_non_null(strstr(err, "authentication failed"));
  free(err);
  /* so is the id: the same ciphertext under another id is refused */
  unsigned char other[32];
  memcpy(other, id, 32);
  other[5] ^= 1;
  err = NULL;
  assert_int_not_equal(
      repo_blob_decode(r, NULL, other, BLOB_DATA, enc, enc_len, &out, &out_len, &err), 0);
  free(err);
  /* every flipped byte is detected */
  for (size_t i = 0; i < enc_len; i += enc_len / 50 + 1) {
    ((unsigned char *)enc)[i] ^= 0x40;
    err = NULL;
    assert_int_not_equal(
        repo_blob_decode(r, NULL, id, BLOB_DATA, enc, enc_len, &out, &out_len, &err), 0);
    free(err);
    ((unsigned char *)enc)[i] ^= 0x40;
  }
  /* ids are keyed: a plain SHA-256 of the data is not the id */
  unsigned char plain[32];
  SHA256(data, n, plain);
  assert_memory_not_equal(plain, id, 32);
  free(enc);
  free(data);
}

static void test_pack_build_and_parse(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  struct packer pk;
  packer_init(&pk);
  unsigned char ids[3][32];
  const char *texts[3] = {"first blob", "second, longer blob of text text text text", ""};
  for (int i = 0; i < 3; i++) {
    repo_blob_id(r, texts[i], strlen(texts[i]), ids[i]);
    void *enc;
    size_t el;
    assert_int_equal(repo_blob_encode(r, NULL, ids[i], i == 2 ? BLOB_TREE : BLOB_DATA, texts[i],
                                      strlen(texts[i]), &enc, &el),
                     0);
    packer_add(&pk, ids[i], i == 2 ? BLOB_TREE : BLOB_DATA, enc, el, (uint32_t)strlen(texts[i]));
    free(enc);
  }
  unsigned char pid[32];
  assert_int_equal(packer_finish(&pk, r, pid), 0);
  unsigned char check[32];
  SHA256(pk.buf, pk.len, check);
  assert_memory_equal(check, pid, 32);
  assert_memory_equal(pk.buf + pk.len - 4, "EPK1", 4);
  struct pack_entry *es;
  size_t n;
  char *err = NULL;
  assert_int_equal(pack_parse(r, pk.buf, pk.len, &es, &n, NULL, &err), 0);
  assert_int_equal(n, 3);
  for (int i = 0; i < 3; i++) {
    assert_memory_equal(es[i].id, ids[i], 32);
    assert_int_equal(es[i].raw_length, strlen(texts[i]));
    void *out;
    size_t ol;
    assert_int_equal(repo_blob_decode(r, NULL, es[i].id, es[i].type, pk.buf + es[i].offset,
                                      es[i].length, &out, &ol, &err),
                     0);
    assert_int_equal(ol, strlen(texts[i]));
    assert_memory_equal(out, texts[i], ol);
    free(out);
  }
  free(es);
  /* a flipped byte in the sealed header is caught */
  pk.buf[pk.len - 20] ^= 1;
  assert_int_not_equal(pack_parse(r, pk.buf, pk.len, &es, &n, NULL, &err), 0);
  assert_non_null(strstr(err, "header"));
  free(err);
  packer_free(&pk);
}

static void test_sealed_json_and_index(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  json_t *obj = json_pack("{s:s, s:i}", "hello", "world", "n", 42);
  char id[65], *err = NULL;
  assert_int_equal(repo_save_json(r, "snapshot", obj, id, &err), 0);
  /* the stored object is not plaintext */
  char path[256];
  snprintf(path, sizeof(path), "%s/snapshots/%s", f->dir, id);
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  char buf[512];
  size_t got = fread(buf, 1, sizeof(buf), fp);
  fclose(fp);
  assert_null(memmem(buf, got, "world", 5));
  json_t *back;
  assert_int_equal(repo_load_json(r, "snapshot", id, &back, &err), 0);
  assert_true(json_equal(obj, back));
  json_decref(back);
  json_decref(obj);

  /* index objects round-trip through index_load */
  unsigned char pid[32], bid[32];
  memset(pid, 7, 32);
  memset(bid, 9, 32);
  uint32_t pk = index_add_pack(r->index, pid);
  index_put(r->index, bid, pk, 100, 200, 300, BLOB_TREE);
  char iid[65];
  assert_int_equal(index_save_packs(r, &pk, 1, iid, &err), 0);
  struct repo *r2;
  assert_int_equal(open_repo(f, "correct horse", 0, &r2, &err), 0);
  assert_false(r2->created);
  assert_int_equal(index_load(r2, &err), 0);
  struct index_entry e;
  assert_int_equal(index_get(r2->index, bid, &e), 1);
  assert_int_equal(e.offset, 100);
  assert_int_equal(e.length, 200);
  assert_int_equal(e.raw_length, 300);
  assert_int_equal(e.type, BLOB_TREE);
  assert_memory_equal(r2->index->packs[e.pack], pid, 32);
  /* the reopened repository has the same keys: it reads the snapshot */
  assert_int_equal(repo_load_json(r2, "snapshot", id, &back, &err), 0);
  json_decref(back);
  repo_close(r2);
}

static void test_wrong_passphrase_writes_nothing(void **state) {
  struct fixture *f = *state;
  struct repo *r2 = NULL;
  char *err = NULL;
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "find '%s' -type f | sort | xargs ls -l --time-style=+%%s.%%N > %s.before", f->dir,
           f->dir);
  assert_int_equal(system(cmd), 0);
  assert_int_not_equal(open_repo(f, "wrong", 1, &r2, &err), 0);
  assert_null(r2);
  assert_non_null(strstr(err, "wrong passphrase"));
  assert_null(strstr(err, "wrong\"")); /* the passphrase itself is never echoed */
  free(err);
  snprintf(cmd, sizeof(cmd),
           "find '%s' -type f | sort | xargs ls -l --time-style=+%%s.%%N > %s.after && cmp -s "
           "%s.before %s.after && rm %s.before %s.after",
           f->dir, f->dir, f->dir, f->dir, f->dir, f->dir);
  assert_int_equal(system(cmd), 0);
}

static void test_location_with_other_data_refused(void **state) {
  (void)state;
  char dir[] = "/tmp/engine-test-foreign-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof(path), "%s/important.txt", dir);
  FILE *fp = fopen(path, "w");
  fputs("not a repository", fp);
  fclose(fp);
  struct fixture *f = *state;
  char *err = NULL;
  const struct engine_plugin *local = registry_find(f->reg, ENGINE_PLUGIN_SINK, "local", &err);
  json_t *cfg = json_pack("{s:s}", "path", dir);
  struct plugin_instance *pi;
  assert_int_equal(plugin_instance_new(local, "elsewhere", cfg, &pi, &err), 0);
  json_decref(cfg);
  struct repo_sink s = {pi, 1, 0};
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = &s;
  o.n_sinks = 1;
  o.crypto = f->crypto;
  o.passphrase = "x";
  o.passphrase_len = 1;
  o.create = 1;
  o.compress_algo = COMPRESS_ZSTD;
  o.compress_level = 3;
  struct repo *r = NULL;
  assert_int_not_equal(repo_open(&o, &r, &err), 0);
  assert_non_null(strstr(err, "important.txt"));
  assert_non_null(strstr(err, "refusing"));
  free(err);
  plugin_instance_free(pi);
  assert_int_equal(access(path, F_OK), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1 && rm -rf '%s'", dir, dir);
  assert_int_equal(system(cmd), 0);
}

static void test_restore_name_check(void **state) {
  (void)state;
  assert_null(item_name_problem("srv/a b/c.txt", 13));
  assert_null(item_name_problem("a/..b/c", 7));
  assert_null(item_name_problem("a/.hidden", 9));
  assert_non_null(item_name_problem("../x", 4));
  assert_non_null(item_name_problem("a/../../x", 9));
  assert_non_null(item_name_problem("a/..", 4));
  assert_non_null(item_name_problem("/etc/passwd", 11));
  assert_non_null(item_name_problem("a//b", 4));
  assert_non_null(item_name_problem("a/./b", 5));
  assert_non_null(item_name_problem("a/", 2));
  assert_non_null(item_name_problem("", 0));
  assert_non_null(item_name_problem("a\0b", 3));
}

static void test_encoding_helpers(void **state) {
  (void)state;
  unsigned char raw[5] = {0, 1, 0xab, 0xff, 0x10}, back[5];
  char hex[11];
  hex_encode(raw, 5, hex);
  assert_string_equal(hex, "0001abff10");
  assert_int_equal(hex_decode(hex, back, 5), 0);
  assert_memory_equal(raw, back, 5);
  assert_int_not_equal(hex_decode("0001abff1g", back, 5), 0);
  assert_int_not_equal(hex_decode("0001", back, 5), 0);
  for (size_t n = 0; n <= 5; n++) {
    char *b = b64_encode(raw, n);
    unsigned char *d;
    size_t dl;
    assert_int_equal(b64_decode(b, &d, &dl), 0);
    assert_int_equal(dl, n);
    assert_memory_equal(d, raw, n);
    free(d);
    free(b);
  }
  int64_t t;
  assert_int_equal(parse_iso_time("2026-01-31T03:00:00Z", &t), 0);
  assert_int_equal(t, 1769828400);
  assert_int_equal(parse_iso_time("2026-01-31T04:00:00+01:00", &t), 0);
  assert_int_equal(t, 1769828400);
  assert_int_not_equal(parse_iso_time("yesterday", &t), 0);
  char *s = iso_time(1769828400);
  assert_string_equal(s, "2026-01-31T03:00:00Z");
  free(s);
}

/* The local sink keeps the descriptors of recently read packs open (see
 * "open packs" in plugins/sinks/local/local.c). What must hold: content read
 * through a kept descriptor is the pack's, from many threads at once and
 * with more packs than kept descriptors; a pack this process deletes or
 * puts again is not read through the old descriptor; objects outside data/
 * (locks, which other processes replace) are never read through a kept
 * descriptor. */
#define OP_PACKS 12
#define OP_SIZE 65536

static unsigned char op_byte(int pack, size_t off) {
  return (unsigned char)(pack * 37 + off * 13 + (off >> 8));
}

struct op_reader {
  const struct engine_sink_ops *ops;
  void *inst;
  int seed, bad;
};

static void *op_read_many(void *arg) {
  struct op_reader *rd = arg;
  unsigned v = (unsigned)rd->seed * 2654435761u;
  for (int i = 0; i < 3000; i++) {
    v = v * 1103515245u + 12345u;
    int pack = (int)((v >> 8) % OP_PACKS);
    size_t off = (v >> 4) % (OP_SIZE - 256), len = 1 + (v % 255);
    char name[64];
    snprintf(name, sizeof(name), "data/0%x/pack-%02d", pack % 16, pack);
    void *buf = NULL;
    size_t n = 0;
    if (rd->ops->get(rd->inst, name, off, len, &buf, &n) != ENGINE_OK || n != len) {
      rd->bad++;
    } else {
      for (size_t k = 0; k < len; k++)
        if (((unsigned char *)buf)[k] != op_byte(pack, off + k)) {
          rd->bad++;
          break;
        }
    }
    free(buf);
  }
  return NULL;
}

static void test_local_open_packs(void **state) {
  struct fixture *f = *state;
  const struct engine_sink_ops *ops = f->sink_pi->plugin->sink;
  void *inst = f->sink_pi->inst;
  unsigned char *data = malloc(OP_SIZE);
  for (int p = 0; p < OP_PACKS; p++) {
    for (size_t k = 0; k < OP_SIZE; k++)
      data[k] = op_byte(p, k);
    char name[64];
    snprintf(name, sizeof(name), "data/0%x/pack-%02d", p % 16, p);
    assert_int_equal(ops->put(inst, name, data, OP_SIZE, 0), ENGINE_OK);
  }
  /* four threads, random ranges of 12 packs (8 descriptors are kept) */
  pthread_t th[4];
  struct op_reader rd[4];
  for (int t = 0; t < 4; t++) {
    rd[t] = (struct op_reader){ops, inst, t + 1, 0};
    assert_int_equal(pthread_create(&th[t], NULL, op_read_many, &rd[t]), 0);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(th[t], NULL);
    assert_int_equal(rd[t].bad, 0);
  }

  /* deleted by this process: gone, although it was just read */
  void *buf = NULL;
  size_t n = 0;
  assert_int_equal(ops->get(inst, "data/00/pack-00", 0, 16, &buf, &n), ENGINE_OK);
  free(buf);
  assert_int_equal(ops->del(inst, "data/00/pack-00"), ENGINE_OK);
  buf = NULL;
  assert_int_equal(ops->get(inst, "data/00/pack-00", 0, 16, &buf, &n), ENGINE_NOT_FOUND);
  free(buf);
  /* put again (other bytes under the name): the new content is read */
  memset(data, 0x5a, OP_SIZE);
  assert_int_equal(ops->put(inst, "data/01/pack-01", data, OP_SIZE, 0), ENGINE_OK);
  buf = NULL;
  assert_int_equal(ops->get(inst, "data/01/pack-01", 100, 16, &buf, &n), ENGINE_OK);
  assert_int_equal(n, 16);
  assert_memory_equal(buf, data, 16);
  free(buf);

  /* a lock replaced by another process (a rename over it) is read anew */
  assert_int_equal(ops->put(inst, "locks/l1", "first", 5, 0), ENGINE_OK);
  buf = NULL;
  assert_int_equal(ops->get(inst, "locks/l1", 0, 0, &buf, &n), ENGINE_OK);
  assert_int_equal(n, 5);
  free(buf);
  char path[128], tmp[160];
  snprintf(path, sizeof(path), "%s/locks/l1", f->dir);
  snprintf(tmp, sizeof(tmp), "%s/locks/other-process", f->dir);
  FILE *fp = fopen(tmp, "w");
  assert_non_null(fp);
  fputs("second!", fp);
  fclose(fp);
  assert_int_equal(rename(tmp, path), 0);
  buf = NULL;
  assert_int_equal(ops->get(inst, "locks/l1", 0, 0, &buf, &n), ENGINE_OK);
  assert_int_equal(n, 7);
  assert_memory_equal(buf, "second!", 7);
  free(buf);
  free(data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_blob_roundtrip_and_tamper, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pack_build_and_parse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sealed_json_and_index, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrong_passphrase_writes_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_location_with_other_data_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_local_open_packs, setup, teardown),
      cmocka_unit_test(test_restore_name_check),
      cmocka_unit_test(test_encoding_helpers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
