/* Format 2's key hierarchy (repo/keys2.h): sealing to the public key, the
 * writer credential and what a write-only handle can open, packs with their
 * own data keys, rotation. Uses the real local sink and aes-256-gcm plugins
 * from the build tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/compress.h"
#include "plugin/host.h"
#include "plugin/loader.h"
#include "repo/keys2.h"
#include "repo/pack.h"
#include "repo/repo.h"

struct fixture {
  char dir[64];
  struct plugin_registry *reg;
  struct plugin_instance *sink_pi;
  struct repo_sink sink;
  const struct engine_plugin *crypto;
  struct repo *repo; /* the reader: opened with the passphrase */
};

#define PASS "correct horse"

static int open_repo(struct fixture *f, const char *secret, size_t len, int create, int write_only,
                     struct repo **out, char **err) {
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = &f->sink;
  o.n_sinks = 1;
  o.crypto = f->crypto;
  o.passphrase = secret;
  o.passphrase_len = len;
  o.create = create;
  o.format = 2;
  o.write_only = write_only;
  o.compress_algo = COMPRESS_ZSTD;
  o.compress_level = 3;
  return repo_open(&o, out, err);
}

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "%s", "/tmp/engine-test-keys2-XXXXXX");
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
  assert_int_equal(open_repo(f, PASS, strlen(PASS), 1, 0, &f->repo, &err), 0);
  assert_int_equal(f->repo->format, 2);
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

static void test_sealpub_roundtrip_and_tamper(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  const char msg[] = "a snapshot manifest";
  unsigned char sealed[sizeof(msg) + REPO_SEALPUB_OVERHEAD], out[sizeof(sealed)];
  size_t n = 0;
  assert_int_equal(repo_seal_pub(r, "snapshot", 8, msg, sizeof(msg), sealed), 0);
  assert_memory_equal(sealed, r->kps[r->cur_kp].id, 8);
  assert_int_equal(repo_unseal_pub(r, "snapshot", 8, sealed, sizeof(sealed), out, &n), 0);
  assert_int_equal(n, sizeof(msg));
  assert_memory_equal(out, msg, sizeof(msg));
  /* another kind's AAD, a flipped byte of the ephemeral key or of the
   * ciphertext: authentication fails */
  assert_int_equal(repo_unseal_pub(r, "audit", 5, sealed, sizeof(sealed), out, &n), -1);
  sealed[20] ^= 1;
  assert_int_equal(repo_unseal_pub(r, "snapshot", 8, sealed, sizeof(sealed), out, &n), -1);
  sealed[20] ^= 1;
  sealed[sizeof(sealed) - 20] ^= 1;
  assert_int_equal(repo_unseal_pub(r, "snapshot", 8, sealed, sizeof(sealed), out, &n), -1);
  sealed[sizeof(sealed) - 20] ^= 1;
  /* a key pair the keyring does not hold */
  sealed[0] ^= 1;
  assert_int_equal(repo_unseal_pub(r, "snapshot", 8, sealed, sizeof(sealed), out, &n), -2);
  sealed[0] ^= 1;
  /* two seals of the same message differ (fresh ephemeral key and nonce) */
  unsigned char again[sizeof(sealed)];
  assert_int_equal(repo_seal_pub(r, "snapshot", 8, msg, sizeof(msg), again), 0);
  assert_memory_not_equal(again + 8, sealed + 8, sizeof(sealed) - 8);
}

static void test_writer_credential(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo, *w = NULL;
  char *text = NULL, *err = NULL;
  assert_int_equal(keys2_writer_credential(r, "p", &text, &err), 0);
  /* no private key and not the master secret, in any encoding */
  char *ms = b64_encode(r->master_secret, 32), *priv = b64_encode(r->kps[0].priv, 32);
  assert_null(strstr(text, ms));
  assert_null(strstr(text, priv));
  assert_null(strstr(text, "private"));
  free(ms);
  free(priv);
  assert_int_equal(open_repo(f, text, strlen(text), 0, 1, &w, &err), 0);
  assert_true(w->write_only);
  assert_int_equal(w->n_kps, 1);
  assert_false(w->kps[0].has_priv);
  assert_memory_equal(w->mac_key, r->mac_key, REPO_KEY_LEN); /* same blob ids: dedup */
  assert_memory_equal(w->enc_key, r->enc_key, REPO_KEY_LEN); /* reads the index */
  assert_int_equal(w->chunker_seed, r->chunker_seed);        /* same boundaries */
  /* what the writer seals the reader opens; the writer cannot open it */
  const char msg[] = "written by the writer";
  unsigned char sealed[sizeof(msg) + REPO_SEALPUB_OVERHEAD], out[sizeof(sealed)];
  size_t n = 0;
  assert_int_equal(repo_seal_pub(w, "snapshot", 8, msg, sizeof(msg), sealed), 0);
  assert_int_equal(repo_unseal_pub(w, "snapshot", 8, sealed, sizeof(sealed), out, &n), -2);
  assert_int_equal(repo_unseal_pub(r, "snapshot", 8, sealed, sizeof(sealed), out, &n), 0);
  assert_memory_equal(out, msg, sizeof(msg));
  /* a pack the writer makes: it cannot parse it, the reader can */
  struct packer pk;
  packer_init(&pk);
  assert_int_equal(packer_init_key(&pk, w), 0);
  unsigned char id[32];
  repo_blob_id(w, msg, sizeof(msg), id);
  void *enc = NULL;
  size_t el = 0;
  assert_int_equal(
      repo_blob_encode(w, packer_key(&pk, w), id, BLOB_DATA, msg, sizeof(msg), &enc, &el), 0);
  packer_add(&pk, id, BLOB_DATA, enc, el, sizeof(msg));
  free(enc);
  unsigned char pid[32], dk[32];
  assert_int_equal(packer_finish(&pk, w, pid), 0);
  assert_memory_equal(pk.buf + pk.len - 4, "EPK2", 4);
  struct pack_entry *es = NULL;
  size_t ne = 0;
  assert_int_not_equal(pack_parse(w, pk.buf, pk.len, &es, &ne, dk, &err), 0);
  assert_non_null(strstr(err, "write-only"));
  free(err);
  err = NULL;
  assert_int_equal(pack_parse(r, pk.buf, pk.len, &es, &ne, dk, &err), 0);
  assert_int_equal(ne, 1);
  assert_int_equal(es[0].offset, KEYS2_SEALED_DK_LEN);
  void *raw = NULL;
  size_t rl = 0;
  assert_int_equal(repo_blob_decode(r, dk, es[0].id, BLOB_DATA, pk.buf + es[0].offset, es[0].length,
                                    &raw, &rl, &err),
                   0);
  assert_memory_equal(raw, msg, sizeof(msg));
  free(raw);
  free(es);
  /* a damaged sealed data key: the pack does not open */
  pk.buf[50] ^= 1;
  assert_int_not_equal(pack_parse(r, pk.buf, pk.len, &es, &ne, dk, &err), 0);
  free(err);
  err = NULL;
  packer_free(&pk);
  repo_close(w);
  /* a credential of another repository, or not a credential, is refused */
  char *other = strstr(text, r->id);
  assert_non_null(other);
  other[0] = other[0] == 'a' ? 'b' : 'a';
  assert_int_not_equal(open_repo(f, text, strlen(text), 0, 1, &w, &err), 0);
  assert_non_null(strstr(err, "of repository"));
  free(err);
  err = NULL;
  assert_int_not_equal(open_repo(f, PASS, strlen(PASS), 0, 1, &w, &err), 0);
  assert_non_null(strstr(err, "not a writer credential"));
  free(err);
  free(text);
}

static void test_rotation_keeps_old_key_pairs(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo, *again = NULL;
  const char msg[] = "before the rotation";
  unsigned char before[sizeof(msg) + REPO_SEALPUB_OVERHEAD], after[sizeof(before)],
      out[sizeof(before)];
  size_t n = 0;
  char id[17], *err = NULL;
  assert_int_equal(repo_seal_pub(r, "snapshot", 8, msg, sizeof(msg), before), 0);
  assert_int_equal(keys2_rotate(r, id, &err), 0);
  assert_int_equal(r->n_kps, 2);
  assert_int_equal(r->keyring_generation, 2);
  assert_int_equal(repo_seal_pub(r, "snapshot", 8, msg, sizeof(msg), after), 0);
  assert_memory_not_equal(before, after, 8); /* sealed to the new key pair */
  /* a new open (the keyring from the repository) reads both */
  assert_int_equal(open_repo(f, PASS, strlen(PASS), 0, 0, &again, &err), 0);
  assert_int_equal(again->n_kps, 2);
  assert_int_equal(again->keyring_generation, 2);
  assert_int_equal(repo_unseal_pub(again, "snapshot", 8, before, sizeof(before), out, &n), 0);
  assert_int_equal(repo_unseal_pub(again, "snapshot", 8, after, sizeof(after), out, &n), 0);
  assert_memory_equal(again->mac_key, r->mac_key, REPO_KEY_LEN); /* dedup across rotations */
  repo_close(again);
  /* a wrong passphrase still opens nothing */
  assert_int_not_equal(open_repo(f, "wrong", 5, 0, 0, &again, &err), 0);
  assert_non_null(strstr(err, "wrong passphrase"));
  free(err);
}

/* Two hosts add tenants at once (each from the keyring it read): a later
 * open holds both; a shred in one keyring beats a live copy in another;
 * packs of each tenant open only with that tenant's key. */
static void test_tenants_union_and_shred(void **state) {
  struct fixture *f = *state;
  struct repo *a = f->repo, *b = NULL, *c = NULL;
  char *err = NULL;
  assert_int_equal(open_repo(f, PASS, strlen(PASS), 0, 0, &b, &err), 0);
  struct repo_tenant *ta = keys2_tenant_get(a, "alice", 1, &err);
  struct repo_tenant *tb = keys2_tenant_get(b, "bob", 1, &err);
  assert_non_null(ta);
  assert_non_null(tb);
  assert_int_equal(keys2_tenants_flush(a, &err), 0);
  assert_int_equal(keys2_tenants_flush(b, &err), 0);
  assert_memory_not_equal(ta->idk, a->mac_key, 32); /* ids keyed per tenant */
  /* a pack of alice's */
  unsigned char dk[32], sealed[KEYS2_SEALED_DK_LEN], out[32];
  const struct repo_tenant *t = NULL;
  assert_int_equal(keys2_dk_new_tenant(a, ta, dk, sealed), 0);
  assert_int_equal(open_repo(f, PASS, strlen(PASS), 0, 0, &c, &err), 0);
  assert_non_null(keys2_tenant_find(c, "alice"));
  assert_non_null(keys2_tenant_find(c, "bob"));
  assert_int_equal(keys2_head_open(c, sealed, out, &t), 0);
  assert_memory_equal(out, dk, 32);
  assert_string_equal(t->name, "alice");
  repo_close(c);
  /* shred alice through a; b still holds a live copy of the old keyring's
   * view and writes a keyring of its own afterwards */
  assert_int_equal(keys2_tenant_shred(a, "alice", &err), 0);
  assert_non_null(keys2_tenant_get(b, "carol", 1, &err));
  assert_int_equal(keys2_tenants_flush(b, &err), 0);
  assert_int_equal(open_repo(f, PASS, strlen(PASS), 0, 0, &c, &err), 0);
  const struct repo_tenant *alice = keys2_tenant_find(c, "alice");
  assert_non_null(alice);
  assert_non_null(alice->shredded);
  assert_int_equal(keys2_head_open(c, sealed, out, &t), -3);
  assert_non_null(keys2_tenant_find(c, "carol"));
  repo_close(c);
  repo_close(b);
}

/* key rotate --rewrite's tenant successors keep the chunk-id key and a
 * retired key's items resolve to the successor. */
static void test_rewrite_successors(void **state) {
  struct fixture *f = *state;
  struct repo *r = f->repo;
  char *err = NULL;
  struct repo_tenant *old = keys2_tenant_get(r, "acme", 1, &err);
  assert_non_null(old);
  assert_int_equal(keys2_tenants_flush(r, &err), 0);
  json_t *removed = NULL;
  assert_int_equal(keys2_rewrite_begin(r, PASS, strlen(PASS), &removed, &err), 0);
  json_decref(removed);
  const struct repo_tenant *succ = keys2_tenant_successor(r, old);
  assert_non_null(succ);
  assert_ptr_equal(keys2_tenant_find(r, "acme"), succ);
  assert_memory_equal(succ->idk, old->idk, 32);
  assert_memory_not_equal(succ->key, old->key, 32);
  assert_true(keys2_kid_retired(r, old->kid));
  assert_false(keys2_kid_retired(r, succ->kid));
  char kid[17];
  hex_encode(old->kid, 8, kid);
  json_t *item = json_pack("{s:s, s:s}", "tenant", "acme", "tenant_key", kid);
  assert_ptr_equal(keys2_item_tenant(r, item), old); /* still readable meanwhile */
  assert_int_equal(keys2_rewrite_finish(r, &err), 0);
  assert_ptr_equal(keys2_item_tenant(r, item), succ); /* old retired: its successor */
  assert_true(old->retired);
  json_decref(item);
  /* the old passphrase's key object was replaced: the passphrase still opens */
  struct repo *again = NULL;
  assert_int_equal(open_repo(f, PASS, strlen(PASS), 0, 0, &again, &err), 0);
  assert_null(again->rewrite);
  assert_int_equal(again->n_kps, 1);
  repo_close(again);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_sealpub_roundtrip_and_tamper, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writer_credential, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation_keeps_old_key_pairs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tenants_union_and_shred, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rewrite_successors, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
