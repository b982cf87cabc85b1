/* Unit tests for the compression stage: round trips for every algorithm,
 * the raw fallback for incompressible data, bounded decoding of corrupt or
 * oversized blobs, name/level helpers and concurrent use from threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <zlib.h>
#include <zstd.h>

#include "compress/compress.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint8_t *make_random(size_t len, uint64_t seed) {
  uint8_t *buf = malloc(len > 0 ? len : 1);
  assert_non_null(buf);
  for (size_t i = 0; i < len; i++) {
    if (i % 8 == 0)
      seed = splitmix64(&seed);
    buf[i] = (uint8_t)(seed >> (8 * (i % 8)));
  }
  return buf;
}

/* Words drawn from a small vocabulary: compresses like real text/config. */
static uint8_t *make_text(size_t len, uint64_t seed) {
  static const char *words[] = {"backup", "restore", "snapshot",   "chunk", "pack", "index",
                                "sink",   "source",  "the",        "of",    "and",  "engine",
                                "zstd",   "gzip",    "repository", "key",   "lock", "prune"};
  uint8_t *buf = malloc(len > 0 ? len : 1);
  assert_non_null(buf);
  size_t i = 0;
  while (i < len) {
    uint64_t r = splitmix64(&seed);
    const char *w = words[r % (sizeof words / sizeof words[0])];
    for (size_t k = 0; w[k] != '\0' && i < len; k++)
      buf[i++] = (uint8_t)w[k];
    if (i < len)
      buf[i++] = (r >> 32) % 11 == 0 ? '\n' : ' ';
  }
  return buf;
}

static void round_trip(enum compress_algo a, int level, const uint8_t *in, size_t len,
                       int expect_compressed) {
  void *enc = NULL, *dec = NULL;
  size_t enc_len = 0, dec_len = 0;
  const char *err = NULL;

  assert_int_equal(compress_encode(a, level, in, len, &enc, &enc_len), 0);
  assert_non_null(enc);
  const uint8_t *e = enc;
  if (expect_compressed) {
    assert_int_equal(e[0], a);
    assert_true(enc_len < len);
  } else {
    assert_int_equal(e[0], COMPRESS_NONE);
    assert_int_equal(enc_len, len + 1);
    if (len > 0)
      assert_memory_equal(e + 1, in, len);
  }
  assert_int_equal(compress_decode(enc, enc_len, len, &dec, &dec_len, &err), 0);
  assert_null(err);
  assert_int_equal(dec_len, len);
  if (len > 0)
    assert_memory_equal(dec, in, len);
  free(dec);

  /* One byte below the real size must be refused. */
  if (len > 0) {
    dec = NULL;
    assert_int_equal(compress_decode(enc, enc_len, len - 1, &dec, &dec_len, &err), -1);
    assert_non_null(err);
    assert_null(dec);
  }
  free(enc);
}

/* ---- helpers ---- */

static void test_names_and_levels(void **state) {
  (void)state;
  int lo, hi;
  assert_int_equal(compress_algo_from_name("none"), COMPRESS_NONE);
  assert_int_equal(compress_algo_from_name("zstd"), COMPRESS_ZSTD);
  assert_int_equal(compress_algo_from_name("gzip"), COMPRESS_GZIP);
  assert_int_equal(compress_algo_from_name("lz4"), -1);
  assert_int_equal(compress_algo_from_name("ZSTD"), -1);
  assert_int_equal(compress_algo_from_name(""), -1);
  assert_int_equal(compress_algo_from_name(NULL), -1);

  static const enum compress_algo all[] = {COMPRESS_NONE, COMPRESS_ZSTD, COMPRESS_GZIP};
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(compress_algo_from_name(compress_algo_name(all[i])), all[i]);
  assert_string_equal(compress_algo_name((enum compress_algo)7), "unknown");

  compress_level_range(COMPRESS_ZSTD, &lo, &hi);
  assert_int_equal(lo, 1);
  assert_int_equal(hi, 19);
  compress_level_range(COMPRESS_GZIP, &lo, &hi);
  assert_int_equal(lo, 1);
  assert_int_equal(hi, 9);
  compress_level_range(COMPRESS_NONE, &lo, &hi);
  assert_int_equal(lo, 0);
  assert_int_equal(hi, 0);
  assert_int_equal(compress_default_level(COMPRESS_ZSTD), 3);
  assert_int_equal(compress_default_level(COMPRESS_GZIP), 6);
  assert_int_equal(compress_default_level(COMPRESS_NONE), 0);
}

/* ---- round trips ---- */

static void test_round_trip_text(void **state) {
  (void)state;
  size_t len = 1 * MiB;
  uint8_t *text = make_text(len, 1);
  round_trip(COMPRESS_ZSTD, compress_default_level(COMPRESS_ZSTD), text, len, 1);
  round_trip(COMPRESS_ZSTD, 1, text, len, 1);
  round_trip(COMPRESS_GZIP, compress_default_level(COMPRESS_GZIP), text, len, 1);
  round_trip(COMPRESS_GZIP, 1, text, len, 1);
  round_trip(COMPRESS_GZIP, 9, text, len, 1);
  round_trip(COMPRESS_NONE, 0, text, len, 0);
  /* The highest zstd level on a smaller input (it is slow by design). */
  round_trip(COMPRESS_ZSTD, 19, text, 128 * KiB, 1);
  /* Alternating levels on one thread reuses the cached contexts. */
  round_trip(COMPRESS_GZIP, 6, text, 64 * KiB, 1);
  round_trip(COMPRESS_ZSTD, 3, text + 1, 64 * KiB, 1);
  free(text);
}

/* One thread's context serves every level and input size in turn: its
 * fixed workspace must grow for a higher level (19 needs far more than 3),
 * and keep serving smaller levels and sizes after that, the level-1
 * incompressibility samples included. */
static void test_levels_and_sizes_on_one_thread(void **state) {
  (void)state;
  static const int levels[] = {3, 1, 3, 19, 3, 1, 9, 3};
  static const size_t sizes[] = {1 * KiB, 16 * KiB, 300 * KiB, 1 * MiB, 4 * MiB};
  uint8_t *text = make_text(4 * MiB, 11);
  uint8_t *rnd = make_random(512 * KiB, 12);
  for (size_t li = 0; li < sizeof levels / sizeof levels[0]; li++) {
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
      size_t n = sizes[(si + li) % (sizeof sizes / sizeof sizes[0])];
      if (levels[li] == 19 && n > 1 * MiB)
        n = 1 * MiB; /* level 19 is slow; 1 MiB already needs its largest tables */
      round_trip(COMPRESS_ZSTD, levels[li], text, n, 1);
    }
    round_trip(COMPRESS_ZSTD, levels[li], rnd, 512 * KiB, 0);
  }
  free(text);
  free(rnd);
}

static void test_random_is_stored_raw(void **state) {
  (void)state;
  size_t len = 256 * KiB;
  uint8_t *rnd = make_random(len, 2);
  round_trip(COMPRESS_ZSTD, 3, rnd, len, 0);
  round_trip(COMPRESS_ZSTD, 19, rnd, 16 * KiB, 0);
  round_trip(COMPRESS_GZIP, 6, rnd, len, 0);
  round_trip(COMPRESS_GZIP, 9, rnd, 16 * KiB, 0);
  round_trip(COMPRESS_NONE, 0, rnd, len, 0);
  free(rnd);
}

static void test_empty_and_tiny(void **state) {
  (void)state;
  static const enum compress_algo all[] = {COMPRESS_NONE, COMPRESS_ZSTD, COMPRESS_GZIP};
  uint8_t one = 'x';
  for (size_t i = 0; i < 3; i++) {
    int level = compress_default_level(all[i]);
    void *enc = NULL, *dec = NULL;
    size_t enc_len = 99, dec_len = 99;
    const char *err = NULL;
    assert_int_equal(compress_encode(all[i], level, NULL, 0, &enc, &enc_len), 0);
    assert_int_equal(enc_len, 1);
    assert_int_equal(((uint8_t *)enc)[0], COMPRESS_NONE);
    assert_int_equal(compress_decode(enc, enc_len, 0, &dec, &dec_len, &err), 0);
    assert_int_equal(dec_len, 0);
    assert_non_null(dec);
    free(dec);
    free(enc);
    round_trip(all[i], level, &one, 1, 0);
  }
}

static void test_encode_rejects_bad_arguments(void **state) {
  (void)state;
  uint8_t data[64] = {0};
  void *enc = (void *)1;
  size_t enc_len = 7;
  assert_int_equal(compress_encode(COMPRESS_ZSTD, 0, data, sizeof data, &enc, &enc_len), -1);
  assert_null(enc);
  assert_int_equal(compress_encode(COMPRESS_ZSTD, 20, data, sizeof data, &enc, &enc_len), -1);
  assert_int_equal(compress_encode(COMPRESS_GZIP, 10, data, sizeof data, &enc, &enc_len), -1);
  assert_int_equal(compress_encode(COMPRESS_NONE, 1, data, sizeof data, &enc, &enc_len), -1);
  assert_int_equal(compress_encode((enum compress_algo)3, 0, data, sizeof data, &enc, &enc_len),
                   -1);
  assert_null(enc);
}

/* ---- corrupt and oversized input ---- */

static void expect_decode_error(const void *in, size_t len, size_t max_out) {
  void *dec = (void *)1;
  size_t dec_len = 7;
  const char *err = NULL;
  assert_int_equal(compress_decode(in, len, max_out, &dec, &dec_len, &err), -1);
  assert_non_null(err);
  assert_true(strlen(err) > 0);
  assert_null(dec);
  assert_int_equal(dec_len, 0);
}

static void test_decode_rejects_malformed_blobs(void **state) {
  (void)state;
  static const uint8_t unknown3[] = {3, 1, 2, 3};
  static const uint8_t unknown_ff[] = {0xff};
  expect_decode_error(unknown3, 0, 100); /* empty: no algorithm byte */
  expect_decode_error(unknown3, sizeof unknown3, 100);
  expect_decode_error(unknown_ff, sizeof unknown_ff, 100);
  /* A raw blob larger than max_out. */
  static const uint8_t raw[] = {COMPRESS_NONE, 'a', 'b', 'c'};
  expect_decode_error(raw, sizeof raw, 2);
  /* Headers that are too short or simply wrong. */
  static const uint8_t zshort[] = {COMPRESS_ZSTD, 0x28, 0xb5};
  static const uint8_t zjunk[] = {COMPRESS_ZSTD, 'n', 'o', 't', ' ', 'z', 's', 't', 'd'};
  static const uint8_t gjunk[] = {COMPRESS_GZIP, 'n', 'o', 't', ' ', 'g', 'z', 'i', 'p'};
  static const uint8_t zempty[] = {COMPRESS_ZSTD};
  static const uint8_t gempty[] = {COMPRESS_GZIP};
  expect_decode_error(zshort, sizeof zshort, 100);
  expect_decode_error(zjunk, sizeof zjunk, 100);
  expect_decode_error(gjunk, sizeof gjunk, 100);
  expect_decode_error(zempty, sizeof zempty, 100);
  expect_decode_error(gempty, sizeof gempty, 100);
}

static void check_corruption(enum compress_algo a) {
  size_t len = 200 * KiB;
  uint8_t *text = make_text(len, 3);
  void *enc;
  size_t enc_len;
  assert_int_equal(compress_encode(a, compress_default_level(a), text, len, &enc, &enc_len), 0);
  uint8_t *e = enc;
  assert_int_equal(e[0], a);

  /* Truncation anywhere, including losing only the checksum/trailer. */
  size_t cuts[] = {2, enc_len / 2, enc_len - 4, enc_len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
    expect_decode_error(e, cuts[i], len);
  /* Trailing garbage after a complete stream. */
  uint8_t *longer = malloc(enc_len + 3);
  assert_non_null(longer);
  memcpy(longer, e, enc_len);
  memcpy(longer + enc_len, "xyz", 3);
  expect_decode_error(longer, enc_len + 3, len);
  free(longer);
  /* Single flipped bits throughout the payload (checksums catch the rest). */
  for (size_t pos = 1; pos < enc_len; pos += 61) {
    e[pos] ^= 0x10;
    void *dec = NULL;
    size_t dec_len = 0;
    const char *err = NULL;
    int rc = compress_decode(e, enc_len, len, &dec, &dec_len, &err);
    if (rc == 0) {
      /* Only acceptable if the flip was harmless (e.g. gzip header's OS
       * byte or mtime); then the output must still be exact. */
      assert_int_equal(dec_len, len);
      assert_memory_equal(dec, text, len);
      free(dec);
    } else {
      assert_non_null(err);
      assert_null(dec);
    }
    e[pos] ^= 0x10;
  }
  /* The last byte (end of checksum / CRC trailer) always matters. */
  e[enc_len - 1] ^= 0x01;
  expect_decode_error(e, enc_len, len);
  e[enc_len - 1] ^= 0x01;
  free(enc);
  free(text);
}

static void test_zstd_corruption(void **state) {
  (void)state;
  check_corruption(COMPRESS_ZSTD);
}

static void test_gzip_corruption(void **state) {
  (void)state;
  check_corruption(COMPRESS_GZIP);
}

/* compress_decode_owned: a stored payload comes back in the same buffer,
 * a zstd frame decodes; with COMPRESS_DECODE_AUTHENTICATED a wrong content
 * checksum is not looked at (the AEAD covered the frame), without it the
 * frame is refused -- and the thread's decoder verifies again afterwards. */
static void test_decode_owned(void **state) {
  (void)state;
  size_t len = 300 * KiB;
  uint8_t *rnd = make_random(len, 11), *text = make_text(len, 12);
  void *enc, *dec;
  size_t enc_len, dec_len;
  const char *err = NULL;

  assert_int_equal(compress_encode(COMPRESS_ZSTD, 3, rnd, len, &enc, &enc_len), 0);
  assert_int_equal(((uint8_t *)enc)[0], COMPRESS_NONE);
  assert_int_equal(compress_decode_owned(enc, enc_len, len, 0, &dec, &dec_len, &err), 0);
  assert_ptr_equal(dec, enc); /* no copy */
  assert_int_equal(dec_len, len);
  assert_memory_equal(dec, rnd, len);
  free(dec);
  /* stored, but larger than allowed: refused, and the buffer is freed */
  assert_int_equal(compress_encode(COMPRESS_ZSTD, 3, rnd, len, &enc, &enc_len), 0);
  dec = NULL;
  assert_int_equal(compress_decode_owned(enc, enc_len, len - 1, 0, &dec, &dec_len, &err), -1);
  assert_null(dec);
  assert_non_null(err);

  assert_int_equal(compress_encode(COMPRESS_ZSTD, 3, text, len, &enc, &enc_len), 0);
  uint8_t *e = enc;
  assert_int_equal(e[0], COMPRESS_ZSTD);
  e[enc_len - 1] ^= 0x01; /* the frame ends with its 4-byte content checksum */
  void *copy = malloc(enc_len);
  assert_non_null(copy);
  memcpy(copy, enc, enc_len);
  err = NULL;
  assert_int_equal(compress_decode_owned(copy, enc_len, len, 0, &dec, &dec_len, &err), -1);
  assert_string_equal(err, "corrupt zstd frame: checksum mismatch");
  copy = malloc(enc_len);
  assert_non_null(copy);
  memcpy(copy, enc, enc_len);
  assert_int_equal(compress_decode_owned(copy, enc_len, len, COMPRESS_DECODE_AUTHENTICATED, &dec,
                                         &dec_len, &err),
                   0);
  assert_int_equal(dec_len, len);
  assert_memory_equal(dec, text, len);
  free(dec);
  expect_decode_error(enc, enc_len, len); /* the setting does not stick to the thread */
  free(enc);
  free(rnd);
  free(text);
}

/* A genuinely valid zstd frame whose header announces 1 GiB: single-segment,
 * 4-byte content size, then 8192 RLE blocks of 128 KiB each. Decoding it with
 * a 1 MiB limit must fail up front instead of allocating a gigabyte. */
/* compress_encode_scratch gives what compress_encode gives, in one buffer
 * per thread that is reused (not grown) for inputs that fit and grown for
 * larger ones; stored and compressed results both decode. */
static void test_encode_scratch(void **state) {
  (void)state;
  size_t len = 600 * KiB;
  uint8_t *rnd = make_random(len, 21), *text = make_text(len, 22);
  const uint8_t *inputs[2] = {text, rnd};
  const void *first = NULL;
  for (int i = 0; i < 2; i++) {
    void *enc, *dec;
    size_t enc_len, dec_len, sc_len;
    const void *sc;
    const char *err;
    assert_int_equal(compress_encode(COMPRESS_ZSTD, 3, inputs[i], len, &enc, &enc_len), 0);
    assert_int_equal(compress_encode_scratch(COMPRESS_ZSTD, 3, inputs[i], len, &sc, &sc_len), 0);
    assert_int_equal(sc_len, enc_len);
    assert_memory_equal(sc, enc, enc_len);
    assert_int_equal(((const uint8_t *)sc)[0], i == 0 ? COMPRESS_ZSTD : COMPRESS_NONE);
    assert_int_equal(compress_decode(sc, sc_len, len, &dec, &dec_len, &err), 0);
    assert_int_equal(dec_len, len);
    assert_memory_equal(dec, inputs[i], len);
    if (i == 0)
      first = sc;
    else
      assert_ptr_equal(sc, first); /* same size: the buffer is reused */
    free(enc);
    free(dec);
  }
  /* smaller input: still the same buffer; a larger one gets a larger buffer */
  const void *sc;
  size_t sc_len;
  assert_int_equal(compress_encode_scratch(COMPRESS_GZIP, 6, text, 1000, &sc, &sc_len), 0);
  assert_ptr_equal(sc, first);
  uint8_t *big = make_random(2 * len, 23);
  assert_int_equal(compress_encode_scratch(COMPRESS_NONE, 0, big, 2 * len, &sc, &sc_len), 0);
  assert_int_equal(sc_len, 2 * len + 1);
  assert_memory_equal((const uint8_t *)sc + 1, big, 2 * len);
  /* bad arguments are refused as by compress_encode */
  assert_int_equal(compress_encode_scratch(COMPRESS_ZSTD, 20, text, len, &sc, &sc_len), -1);
  assert_null(sc);
  free(big);
  free(rnd);
  free(text);
}

static void test_zstd_bomb_respects_max_out(void **state) {
  (void)state;
  const size_t content = (size_t)1 << 30, block = 128 * KiB, nblocks = content / block;
  size_t len = 1 + 4 + 1 + 4 + nblocks * 4;
  uint8_t *f = malloc(len), *p = f;
  assert_non_null(f);
  *p++ = COMPRESS_ZSTD;
  *p++ = 0x28;
  *p++ = 0xb5;
  *p++ = 0x2f;
  *p++ = 0xfd;
  *p++ = 0xa0; /* FCS field 4 bytes, single segment */
  for (int i = 0; i < 4; i++)
    *p++ = (uint8_t)(content >> (8 * i));
  for (size_t b = 0; b < nblocks; b++) {
    uint32_t hdr = (uint32_t)(block << 3) | (1u << 1) | (b + 1 == nblocks ? 1u : 0u);
    *p++ = (uint8_t)hdr;
    *p++ = (uint8_t)(hdr >> 8);
    *p++ = (uint8_t)(hdr >> 16);
    *p++ = 'A'; /* the RLE byte */
  }
  assert_int_equal((size_t)(p - f), len);
  /* Prove the frame is well formed, so the refusal is about its size. */
  assert_int_equal(ZSTD_getFrameContentSize(f + 1, len - 1), content);
  assert_int_equal(ZSTD_findFrameCompressedSize(f + 1, len - 1), len - 1);

  expect_decode_error(f, len, 1 * MiB);
  free(f);
}

/* Compress with an explicit zstd configuration, prefixed with the algo byte. */
static uint8_t *zstd_frame(const uint8_t *in, size_t len, int content_size, size_t *out_len) {
  ZSTD_CCtx *cctx = ZSTD_createCCtx();
  assert_non_null(cctx);
  assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, content_size)));
  size_t cap = ZSTD_compressBound(len) + 1;
  uint8_t *out = malloc(cap);
  assert_non_null(out);
  out[0] = COMPRESS_ZSTD;
  ZSTD_outBuffer ob = {out + 1, cap - 1, 0};
  ZSTD_inBuffer ib = {in, len, 0};
  /* Streaming without a pledged size: the header then omits the content size
   * unless asked for it. */
  size_t r;
  do {
    r = ZSTD_compressStream2(cctx, &ob, &ib, ZSTD_e_continue);
    assert_false(ZSTD_isError(r));
  } while (ib.pos < ib.size);
  do {
    r = ZSTD_endStream(cctx, &ob);
    assert_false(ZSTD_isError(r));
  } while (r != 0);
  ZSTD_freeCCtx(cctx);
  *out_len = ob.pos + 1;
  return out;
}

static void test_zstd_requires_content_size(void **state) {
  (void)state;
  size_t len = 64 * KiB, flen;
  uint8_t *text = make_text(len, 4);
  uint8_t *f = zstd_frame(text, len, 0, &flen);
  assert_int_equal(ZSTD_getFrameContentSize(f + 1, flen - 1), ZSTD_CONTENTSIZE_UNKNOWN);
  expect_decode_error(f, flen, 16 * MiB);
  free(f);
  free(text);
}

/* gzip has no size header: 16 MiB of zeros deflate to a few KiB and must be
 * stopped while inflating. */
static void test_gzip_bomb_respects_max_out(void **state) {
  (void)state;
  size_t len = 16 * MiB;
  uint8_t *zero = calloc(1, len);
  assert_non_null(zero);
  void *enc;
  size_t enc_len;
  assert_int_equal(compress_encode(COMPRESS_GZIP, 9, zero, len, &enc, &enc_len), 0);
  assert_int_equal(((uint8_t *)enc)[0], COMPRESS_GZIP);
  assert_true(enc_len < 64 * KiB);
  expect_decode_error(enc, enc_len, 1 * MiB);
  expect_decode_error(enc, enc_len, len - 1);

  void *dec;
  size_t dec_len;
  const char *err = NULL;
  assert_int_equal(compress_decode(enc, enc_len, len, &dec, &dec_len, &err), 0);
  assert_int_equal(dec_len, len);
  assert_memory_equal(dec, zero, len);
  free(dec);
  free(enc);
  free(zero);
}

/* ---- concurrency ---- */

struct worker_arg {
  uint64_t seed;
  int failures;
};

static void *worker(void *p) {
  struct worker_arg *w = p;
  for (int iter = 0; iter < 20; iter++) {
    size_t len = 1 + (size_t)(splitmix64(&w->seed) % (96 * KiB));
    uint8_t *text = make_text(len, w->seed);
    enum compress_algo a = iter % 2 ? COMPRESS_ZSTD : COMPRESS_GZIP;
    int lo, hi;
    compress_level_range(a, &lo, &hi);
    int level = lo + iter % (hi - lo + 1);
    void *enc = NULL, *dec = NULL;
    size_t enc_len, dec_len;
    const char *err;
    if (compress_encode(a, level, text, len, &enc, &enc_len) != 0 ||
        compress_decode(enc, enc_len, len, &dec, &dec_len, &err) != 0 || dec_len != len ||
        memcmp(dec, text, len) != 0)
      w->failures++;
    free(enc);
    free(dec);
    /* the thread's scratch output: same bytes, and it is freed at thread exit */
    const void *sc;
    size_t sc_len;
    if (compress_encode_scratch(a, level, text, len, &sc, &sc_len) != 0 ||
        compress_decode(sc, sc_len, len, &dec, &dec_len, &err) != 0 || dec_len != len ||
        memcmp(dec, text, len) != 0)
      w->failures++;
    free(dec);
    free(text);
  }
  return NULL;
}

/* Each thread gets its own cached contexts; they are freed at thread exit
 * (LeakSanitizer reports them otherwise). */
static void test_threads(void **state) {
  (void)state;
  pthread_t th[4];
  struct worker_arg args[4];
  for (int i = 0; i < 4; i++) {
    args[i].seed = 100 + (uint64_t)i;
    args[i].failures = 0;
    assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(args[i].failures, 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_and_levels),
      cmocka_unit_test(test_round_trip_text),
      cmocka_unit_test(test_levels_and_sizes_on_one_thread),
      cmocka_unit_test(test_random_is_stored_raw),
      cmocka_unit_test(test_empty_and_tiny),
      cmocka_unit_test(test_encode_rejects_bad_arguments),
      cmocka_unit_test(test_decode_rejects_malformed_blobs),
      cmocka_unit_test(test_zstd_corruption),
      cmocka_unit_test(test_decode_owned),
      cmocka_unit_test(test_encode_scratch),
      cmocka_unit_test(test_gzip_corruption),
      cmocka_unit_test(test_zstd_bomb_respects_max_out),
      cmocka_unit_test(test_zstd_requires_content_size),
      cmocka_unit_test(test_gzip_bomb_respects_max_out),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
