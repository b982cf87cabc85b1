/* Tests of the key derivation (repo_derive_kek): RFC 7914's published
 * scrypt vectors, the same output as libcrypto's scrypt for the parameters
 * engine writes into key objects (a repository made by a build with
 * libsodium must open with a build without it, and the other way round),
 * and refusal of parameters from a hostile key object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "repo/repo.h"

static void hex(const unsigned char *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void expect_vector(const char *pass, const char *salt, uint64_t N, uint64_t r, uint64_t p,
                          const char *want) {
  unsigned char out[64];
  char got[129];
  assert_int_equal(repo_derive_kek(pass, strlen(pass), (const unsigned char *)salt, strlen(salt), N,
                                   r, p, out, sizeof(out)),
                   0);
  hex(out, sizeof(out), got);
  assert_string_equal(got, want);
}

/* RFC 7914 section 12 (the N = 2^20 vector takes ~1 GiB and is left out). */
static void test_rfc7914_vectors(void **state) {
  (void)state;
  expect_vector("", "", 16, 1, 1,
                "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
                "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906");
  expect_vector("password", "NaCl", 1024, 8, 16,
                "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
                "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");
  expect_vector("pleaseletmein", "SodiumChloride", 16384, 8, 1,
                "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
                "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887");
}

/* engine's own parameters (N = 2^15, r = 8, p = 1, 32-byte key) against
 * libcrypto, for a few passphrases and salts. */
static void test_same_as_libcrypto(void **state) {
  (void)state;
  const char *passes[] = {"correct horse battery staple", "", "p\xc3\xa4ss\n"};
  for (size_t i = 0; i < sizeof(passes) / sizeof(passes[0]); i++) {
    unsigned char salt[32], a[32], b[32];
    for (size_t k = 0; k < sizeof(salt); k++)
      salt[k] = (unsigned char)(k * 37 + i);
    assert_int_equal(
        repo_derive_kek(passes[i], strlen(passes[i]), salt, sizeof(salt), 32768, 8, 1, a, 32), 0);
    assert_int_equal(EVP_PBE_scrypt(passes[i], strlen(passes[i]), salt, sizeof(salt), 32768, 8, 1,
                                    256ull * 1024 * 1024, b, 32),
                     1);
    assert_memory_equal(a, b, 32);
  }
}

static void test_refuses_bad_parameters(void **state) {
  (void)state;
  unsigned char out[32];
  const unsigned char salt[16] = {0};
  /* N not a power of two, N < 2, r or p zero */
  assert_int_equal(repo_derive_kek("x", 1, salt, sizeof(salt), 1000, 8, 1, out, 32), -1);
  assert_int_equal(repo_derive_kek("x", 1, salt, sizeof(salt), 1, 8, 1, out, 32), -1);
  assert_int_equal(repo_derive_kek("x", 1, salt, sizeof(salt), 1024, 0, 1, out, 32), -1);
  assert_int_equal(repo_derive_kek("x", 1, salt, sizeof(salt), 1024, 8, 0, out, 32), -1);
  /* more memory than 256 MiB: 128 * 8 * 2^20 = 1 GiB, 128 * 64 * 2^22 = 32 GiB */
  assert_int_equal(repo_derive_kek("x", 1, salt, sizeof(salt), 1u << 20, 8, 1, out, 32), -1);
  assert_int_equal(repo_derive_kek("x", 1, salt, sizeof(salt), 1u << 22, 64, 16, out, 32), -1);
  /* within the bound: 128 * 8 * (2^17 + 1 + 2) bytes, about 128 MiB */
  assert_int_equal(repo_derive_kek("x", 1, salt, sizeof(salt), 1u << 17, 8, 1, out, 32), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc7914_vectors),
      cmocka_unit_test(test_same_as_libcrypto),
      cmocka_unit_test(test_refuses_bad_parameters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
