/* Tests of the aes-256-gcm crypto plugin, compiled into this executable and
 * reached through its descriptor as the engine reaches it: published known
 * answers, round trips, and that every single-bit change to ciphertext, tag,
 * nonce, AAD or key is refused. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/plugin.h"

const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major);

#define MIB ((size_t)1 << 20)

static const struct engine_crypto_ops *ops(void) {
  const struct engine_plugin *p = engine_plugin_query(ENGINE_ABI_MAJOR);
  assert_non_null(p);
  assert_non_null(p->crypto);
  return p->crypto;
}

/* Deterministic bytes, so a failure reproduces. */
static void fill(unsigned char *b, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] = (unsigned char)(x >> 24);
  }
}

static size_t unhex(const char *hex, unsigned char *out) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
    out[i] = (unsigned char)v;
  }
  return n;
}

static int all_zero(const unsigned char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0)
      return 0;
  return 1;
}

/* ---- descriptor ------------------------------------------------------- */

static char last_error[512];

static void test_set_error(const struct engine_host *h, const char *fmt, ...) {
  (void)h;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
}

static void test_descriptor(void **state) {
  (void)state;
  const struct engine_plugin *p = engine_plugin_query(ENGINE_ABI_MAJOR);
  assert_non_null(p);
  assert_null(engine_plugin_query(ENGINE_ABI_MAJOR + 1));
  assert_null(engine_plugin_query(0));

  assert_int_equal(p->abi_major, ENGINE_ABI_MAJOR);
  assert_int_equal(p->abi_minor, ENGINE_ABI_MINOR);
  assert_int_equal(p->struct_size, sizeof(struct engine_plugin));
  assert_int_equal(p->kind, ENGINE_PLUGIN_CRYPTO);
  assert_string_equal(p->name, "aes-256-gcm");
  assert_non_null(p->version);
  assert_non_null(p->license);
  assert_non_null(p->description);
  assert_null(p->source);
  assert_null(p->sink);
  assert_non_null(p->crypto);

  const struct engine_crypto_ops *c = p->crypto;
  assert_int_equal(c->struct_size, sizeof(struct engine_crypto_ops));
  assert_int_equal(c->key_len, 32);
  assert_int_equal(c->nonce_len, 12);
  assert_int_equal(c->tag_len, 16);
  assert_non_null(c->seal);
  assert_non_null(c->open);

  struct engine_host host = {.abi_major = ENGINE_ABI_MAJOR,
                             .abi_minor = ENGINE_ABI_MINOR,
                             .struct_size = sizeof(struct engine_host),
                             .set_error = test_set_error};
  void *inst = NULL;
  last_error[0] = '\0';
  assert_non_null(p->create);
  assert_non_null(p->destroy);
  assert_int_equal(p->create(&host, &inst), ENGINE_OK);
  assert_string_equal(last_error, "");
  p->destroy(inst);
}

/* ---- known answers (McGrew & Viega, "The Galois/Counter Mode of Operation",
 *      test cases 13-16: AES-256) ------------------------------------------ */

struct kat {
  const char *name, *key, *nonce, *aad, *plain, *cipher, *tag;
};

static const struct kat kats[] = {
    {"test case 13: empty", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"test case 14: one zero block",
     "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "", "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"test case 15: four blocks, no AAD",
     "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"test case 16: partial block with AAD",
     "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void test_known_answers(void **state) {
  (void)state;
  const struct engine_crypto_ops *c = ops();
  for (size_t k = 0; k < sizeof kats / sizeof kats[0]; k++) {
    const struct kat *v = &kats[k];
    unsigned char key[32], nonce[12], aad[64], plain[64], expect[80], out[81], back[64];
    assert_int_equal(unhex(v->key, key), 32);
    assert_int_equal(unhex(v->nonce, nonce), 12);
    size_t aad_len = unhex(v->aad, aad);
    size_t n = unhex(v->plain, plain);
    assert_int_equal(unhex(v->cipher, expect), n);
    assert_int_equal(unhex(v->tag, expect + n), 16);

    memset(out, 0xAA, sizeof out);
    assert_int_equal(c->seal(key, nonce, aad_len ? aad : NULL, aad_len, plain, n, out), ENGINE_OK);
    if (memcmp(out, expect, n + 16) != 0)
      fail_msg("%s: sealed output differs from the published vector", v->name);
    assert_int_equal(out[n + 16], 0xAA); /* nothing written past ciphertext || tag */

    memset(back, 0xAA, sizeof back);
    assert_int_equal(c->open(key, nonce, aad_len ? aad : NULL, aad_len, expect, n + 16, back),
                     ENGINE_OK);
    assert_memory_equal(back, plain, n);
  }
}

/* ---- round trips ------------------------------------------------------ */

static void round_trip(size_t n) {
  const struct engine_crypto_ops *c = ops();
  unsigned char key[32], nonce[12], aad[37];
  fill(key, sizeof key, n + 1);
  fill(nonce, sizeof nonce, n + 2);
  fill(aad, sizeof aad, n + 3);
  unsigned char *plain = malloc(n + 1);
  unsigned char *sealed = malloc(n + 16);
  unsigned char *back = malloc(n + 1);
  assert_non_null(plain);
  assert_non_null(sealed);
  assert_non_null(back);
  fill(plain, n, n + 4);

  assert_int_equal(c->seal(key, nonce, aad, sizeof aad, plain, n, sealed), ENGINE_OK);
  if (n >= 16)
    assert_memory_not_equal(sealed, plain, n);
  assert_int_equal(c->open(key, nonce, aad, sizeof aad, sealed, n + 16, back), ENGINE_OK);
  assert_memory_equal(back, plain, n);

  /* Without AAD the result must differ (the AAD is authenticated) and still round-trip. */
  unsigned char *sealed2 = malloc(n + 16);
  assert_non_null(sealed2);
  assert_int_equal(c->seal(key, nonce, NULL, 0, plain, n, sealed2), ENGINE_OK);
  assert_memory_not_equal(sealed2 + n, sealed + n, 16);
  assert_int_equal(c->open(key, nonce, NULL, 0, sealed2, n + 16, back), ENGINE_OK);
  assert_memory_equal(back, plain, n);
  assert_int_equal(c->open(key, nonce, NULL, 0, sealed, n + 16, back), ENGINE_ERROR);

  free(sealed2);
  free(back);
  free(sealed);
  free(plain);
}

static void test_round_trip_sizes(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, MIB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    round_trip(sizes[i]);
}

/* ---- tampering -------------------------------------------------------- */

struct sealed_msg {
  unsigned char key[32], nonce[12], aad[24];
  unsigned char *plain, *sealed, *out;
  size_t n;
};

static void msg_init(struct sealed_msg *m, size_t n, uint64_t seed) {
  fill(m->key, sizeof m->key, seed);
  fill(m->nonce, sizeof m->nonce, seed + 1);
  fill(m->aad, sizeof m->aad, seed + 2);
  m->n = n;
  m->plain = malloc(n + 1);
  m->sealed = malloc(n + 16);
  m->out = malloc(n + 1);
  assert_non_null(m->plain);
  assert_non_null(m->sealed);
  assert_non_null(m->out);
  fill(m->plain, n, seed + 3);
  assert_int_equal(ops()->seal(m->key, m->nonce, m->aad, sizeof m->aad, m->plain, n, m->sealed),
                   ENGINE_OK);
}

static void msg_free(struct sealed_msg *m) {
  free(m->plain);
  free(m->sealed);
  free(m->out);
}

/* Opens the message and requires failure with the output wiped. */
static void expect_refused(struct sealed_msg *m, const char *what, size_t byte, int bit) {
  memset(m->out, 0xAA, m->n);
  int rc = ops()->open(m->key, m->nonce, m->aad, sizeof m->aad, m->sealed, m->n + 16, m->out);
  if (rc != ENGINE_ERROR)
    fail_msg("flipping bit %d of %s byte %zu was not detected (rc %d)", bit, what, byte, rc);
  if (!all_zero(m->out, m->n))
    fail_msg("output not wiped after refusing a tampered %s (byte %zu, bit %d)", what, byte, bit);
}

static void flip_and_check(struct sealed_msg *m, unsigned char *buf, size_t byte,
                           const char *what) {
  for (int bit = 0; bit < 8; bit++) {
    buf[byte] ^= (unsigned char)(1u << bit);
    expect_refused(m, what, byte, bit);
    buf[byte] ^= (unsigned char)(1u << bit);
  }
}

static void check_intact(struct sealed_msg *m) {
  assert_int_equal(
      ops()->open(m->key, m->nonce, m->aad, sizeof m->aad, m->sealed, m->n + 16, m->out),
      ENGINE_OK);
  assert_memory_equal(m->out, m->plain, m->n);
}

static void test_tamper_small(void **state) {
  (void)state;
  struct sealed_msg m;
  msg_init(&m, 45, 7);
  check_intact(&m);
  for (size_t i = 0; i < m.n; i++)
    flip_and_check(&m, m.sealed, i, "ciphertext");
  for (size_t i = 0; i < 16; i++)
    flip_and_check(&m, m.sealed + m.n, i, "tag");
  for (size_t i = 0; i < sizeof m.nonce; i++)
    flip_and_check(&m, m.nonce, i, "nonce");
  for (size_t i = 0; i < sizeof m.aad; i++)
    flip_and_check(&m, m.aad, i, "AAD");
  check_intact(&m); /* every flip was undone: the checks above tested single changes */
  msg_free(&m);
}

static void test_tamper_large(void **state) {
  (void)state;
  struct sealed_msg m;
  msg_init(&m, MIB + 3, 11);
  check_intact(&m);
  static const size_t fixed[] = {0, 1, 15, 16, 4095, 4096, MIB - 1, MIB, MIB + 2};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    m.sealed[fixed[i]] ^= 0x01;
    expect_refused(&m, "ciphertext", fixed[i], 0);
    m.sealed[fixed[i]] ^= 0x01;
  }
  uint64_t x = 0x2545f4914f6cdd1dull;
  for (int i = 0; i < 24; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t byte = (size_t)(x % m.n);
    int bit = (int)((x >> 32) % 8);
    m.sealed[byte] ^= (unsigned char)(1u << bit);
    expect_refused(&m, "ciphertext", byte, bit);
    m.sealed[byte] ^= (unsigned char)(1u << bit);
  }
  for (size_t i = 0; i < 16; i += 5)
    flip_and_check(&m, m.sealed + m.n, i, "tag");
  flip_and_check(&m, m.nonce, 11, "nonce");
  flip_and_check(&m, m.aad, 0, "AAD");
  check_intact(&m);
  msg_free(&m);
}

static void test_wrong_key(void **state) {
  (void)state;
  struct sealed_msg m;
  msg_init(&m, 100, 23);
  for (size_t i = 0; i < sizeof m.key; i++)
    flip_and_check(&m, m.key, i, "key");
  unsigned char saved[32];
  memcpy(saved, m.key, sizeof saved);
  fill(m.key, sizeof m.key, 999);
  expect_refused(&m, "key (unrelated)", 0, 0);
  memcpy(m.key, saved, sizeof saved);
  check_intact(&m);
  msg_free(&m);
}

static void test_truncated(void **state) {
  (void)state;
  const struct engine_crypto_ops *c = ops();
  unsigned char key[32], nonce[12], sealed[16 + 8], out[32];
  fill(key, sizeof key, 5);
  fill(nonce, sizeof nonce, 6);
  assert_int_equal(c->seal(key, nonce, NULL, 0, "8 bytes!", 8, sealed), ENGINE_OK);
  for (size_t len = 0; len < 16; len++)
    assert_int_equal(c->open(key, nonce, NULL, 0, sealed, len, out), ENGINE_ERROR);
  /* Dropping bytes from the end moves the tag: also refused. */
  for (size_t len = 16; len < sizeof sealed; len++)
    assert_int_equal(c->open(key, nonce, NULL, 0, sealed, len, out), ENGINE_ERROR);
  assert_int_equal(c->open(key, nonce, NULL, 0, sealed, sizeof sealed, out), ENGINE_OK);
  assert_memory_equal(out, "8 bytes!", 8);
}

/* ---- threads: each keeps its own cipher context ----------------------- */

static void *thread_main(void *arg) {
  uint64_t seed = (uint64_t)(uintptr_t)arg;
  const struct engine_plugin *p = engine_plugin_query(ENGINE_ABI_MAJOR);
  const struct engine_crypto_ops *c = p->crypto;
  unsigned char key[32], nonce[12], plain[3000], sealed[3016], back[3000];
  for (int i = 0; i < 300; i++) {
    size_t n = (size_t)((seed * 131 + (uint64_t)i * 17) % sizeof plain);
    fill(key, sizeof key, seed * 1000 + (uint64_t)i);
    fill(nonce, sizeof nonce, seed * 2000 + (uint64_t)i);
    fill(plain, n, seed * 3000 + (uint64_t)i);
    if (c->seal(key, nonce, nonce, sizeof nonce, plain, n, sealed) != ENGINE_OK)
      return (void *)"seal failed";
    if (i % 3 == 0)
      sealed[n / 2] ^= 0x80; /* also exercise failing calls between good ones */
    int rc = c->open(key, nonce, nonce, sizeof nonce, sealed, n + 16, back);
    if (i % 3 == 0 ? rc != ENGINE_ERROR : (rc != ENGINE_OK || memcmp(back, plain, n) != 0))
      return (void *)"wrong result";
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  pthread_t t[4];
  for (uintptr_t i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&t[i], NULL, thread_main, (void *)(i + 1)), 0);
  for (int i = 0; i < 4; i++) {
    void *res = NULL;
    assert_int_equal(pthread_join(t[i], &res), 0);
    if (res != NULL)
      fail_msg("thread %d: %s", i, (const char *)res);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_descriptor),       cmocka_unit_test(test_known_answers),
      cmocka_unit_test(test_round_trip_sizes), cmocka_unit_test(test_tamper_small),
      cmocka_unit_test(test_tamper_large),     cmocka_unit_test(test_wrong_key),
      cmocka_unit_test(test_truncated),        cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
