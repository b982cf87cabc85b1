/* Unit tests for the FastCDC chunker: parameter validation, determinism and
 * format stability, independence from how the stream is split, resistance
 * to insertions, chunk size bounds and the all-zero degenerate case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chunker/fastcdc.h"

#define MiB (1024u * 1024u)
#define BIG_LEN ((size_t)64 * MiB)

/* Fixed-seed PRNG (splitmix64) so the data, and thus every expected cut, is
 * the same on every run and platform. */
static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Little-endian byte stream of splitmix64 outputs. */
static void fill_random(uint8_t *buf, size_t len, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < len; i += 8) {
    uint64_t v = splitmix64(&s);
    for (size_t k = 0; k < 8 && i + k < len; k++)
      buf[i + k] = (uint8_t)(v >> (8 * k));
  }
}

static uint8_t *big_random(void) {
  static uint8_t *buf;
  if (buf == NULL) {
    buf = malloc(BIG_LEN);
    assert_non_null(buf);
    fill_random(buf, BIG_LEN, 0xC0FFEE);
  }
  return buf;
}

static const struct chunker_params DEFAULT_PARAMS = {
    CHUNKER_DEFAULT_MIN, CHUNKER_DEFAULT_AVG, CHUNKER_DEFAULT_MAX, UINT64_C(0x1234567890abcdef)};
static const struct chunker_params SMALL_PARAMS = {2048, 8192, 65536, 42};
static const struct chunker_params TINY_PARAMS = {64, 256, 1024, UINT64_C(0x0123456789abcdef)};

/* All cut offsets of a buffer, in a malloc'd array sized by a first pass. */
static size_t *cut_all(const struct chunker_params *p, const uint8_t *data, size_t len,
                       size_t *count) {
  size_t n = chunker_cut_buffer(p, data, len, NULL, 0);
  size_t *cuts = malloc((n + 1) * sizeof *cuts);
  assert_non_null(cuts);
  assert_int_equal(chunker_cut_buffer(p, data, len, cuts, n), n);
  *count = n;
  return cuts;
}

/* ---- (1) parameter validation ---- */

static void test_params_check(void **state) {
  (void)state;
  const char *err = NULL;
  struct chunker *c = NULL;

  assert_int_equal(chunker_params_check(&DEFAULT_PARAMS, &err), 0);
  assert_null(err);
  assert_int_equal(chunker_params_check(&TINY_PARAMS, &err), 0);
  struct chunker_params top = {1024, 32 * MiB, 64 * MiB, 0};
  assert_int_equal(chunker_params_check(&top, &err), 0);

  static const struct chunker_params bad[] = {
      {63, 256, 1024, 0},                     /* min below 64 */
      {64, 300, 1024, 0},                     /* avg not a power of two */
      {0, 0, 1024, 0},                        /* avg zero */
      {256, 256, 1024, 0},                    /* min == avg */
      {512, 256, 1024, 0},                    /* min > avg */
      {64, 1024, 1024, 0},                    /* avg == max */
      {64, 2048, 1024, 0},                    /* avg > max */
      {1024, 32 * MiB, 64 * MiB + 1, 0},      /* max above 64 MiB */
      {1024, 64 * MiB, 128 * MiB, 0},         /* everything too big */
      {64, UINT32_C(1) << 31, UINT32_MAX, 0}, /* huge avg */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err = NULL;
    assert_int_equal(chunker_params_check(&bad[i], &err), -1);
    assert_non_null(err);
    assert_true(strlen(err) > 0);
    assert_int_equal(chunker_new(&bad[i], &c), -1);
    assert_null(c);
    uint8_t data[16] = {0};
    size_t cuts[4];
    assert_int_equal(chunker_cut_buffer(&bad[i], data, sizeof data, cuts, 4), 0);
  }
  assert_int_equal(chunker_params_check(NULL, &err), -1);
  assert_non_null(err);
  /* err is optional. */
  assert_int_equal(chunker_params_check(&bad[0], NULL), -1);

  assert_int_equal(chunker_new(&DEFAULT_PARAMS, &c), 0);
  assert_non_null(c);
  chunker_free(c);
  chunker_free(NULL);
}

/* ---- (2) determinism and format stability ---- */

static void test_determinism(void **state) {
  (void)state;
  const uint8_t *data = big_random();
  size_t len = 24 * MiB, n1, n2, n3;

  size_t *a = cut_all(&DEFAULT_PARAMS, data, len, &n1);
  size_t *b = cut_all(&DEFAULT_PARAMS, data, len, &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(a, b, n1 * sizeof *a);
  assert_true(n1 > 5);

  struct chunker_params other = DEFAULT_PARAMS;
  other.seed ^= 1;
  size_t *c = cut_all(&other, data, len, &n3);
  size_t common = 0;
  for (size_t i = 0, j = 0; i < n1 && j < n3;) {
    if (a[i] == c[j]) {
      common++;
      i++;
      j++;
    } else if (a[i] < c[j]) {
      i++;
    } else {
      j++;
    }
  }
  /* Only the final end-of-buffer cut (and forced max-size cuts that happen
   * to line up) may coincide; content-defined cuts must move. */
  assert_true(common <= 2);
  free(a);
  free(b);
  free(c);
}

/* Boundaries are part of the repository format: a change in the gear table
 * derivation or the cut rule would silently break deduplication against
 * existing repositories. These offsets were computed by an independent
 * implementation of the definition in fastcdc.c's header comment. */
static void test_golden_vector(void **state) {
  (void)state;
  static const size_t expect[] = {269,  583,  931,  1219, 1290, 1510, 1763, 1909,
                                  2091, 2280, 2609, 2944, 3254, 3408, 3622, 3989};
  uint8_t data[65536];
  size_t cuts[16];
  fill_random(data, sizeof data, 0x5eed);
  size_t n = chunker_cut_buffer(&TINY_PARAMS, data, sizeof data, cuts, 16);
  assert_true(n > 16);
  assert_memory_equal(cuts, expect, sizeof expect);
}

/* ---- (3) split independence ---- */

/* Chunk through chunker_scan, asking `piece` for the size of each call. */
typedef size_t (*piece_fn)(size_t off, uint64_t *rng);

static size_t *cut_stream(const struct chunker_params *p, const uint8_t *data, size_t len,
                          piece_fn piece, uint64_t rng, size_t *count) {
  struct chunker *c;
  size_t cap = len / p->min_size + 2, n = 0, off = 0, chunk_start = 0;
  size_t *cuts = malloc(cap * sizeof *cuts);
  assert_non_null(cuts);
  assert_int_equal(chunker_new(p, &c), 0);
  while (off < len) {
    size_t want = piece(off, &rng);
    if (want > len - off)
      want = len - off;
    /* A call may end in the middle of the piece; feed the rest next. */
    size_t done = 0;
    while (done < want) {
      int boundary = -1;
      size_t used = chunker_scan(c, data + off + done, want - done, &boundary);
      assert_true(boundary == 0 || boundary == 1);
      if (boundary) {
        assert_true(used > 0 && used <= want - done);
        done += used;
        assert_true(n < cap);
        cuts[n++] = off + done;
        chunk_start = off + done;
      } else {
        assert_int_equal(used, want - done);
        done = want;
      }
    }
    off += want;
  }
  if (chunk_start < len)
    cuts[n++] = len;
  chunker_free(c);
  *count = n;
  return cuts;
}

static size_t piece_one(size_t off, uint64_t *rng) {
  (void)off;
  (void)rng;
  return 1;
}

/* Offsets around which the stream is fed byte by byte (set per test). */
static size_t g_byte_regions[8];
static size_t g_byte_region_count;

static size_t piece_mixed(size_t off, uint64_t *rng) {
  for (size_t i = 0; i < g_byte_region_count; i++)
    if (off + 4096 >= g_byte_regions[i] && off < g_byte_regions[i] + 4096)
      return 1;
  uint64_t r = splitmix64(rng);
  switch (r % 4) {
  case 0:
    return 1 + (size_t)((r >> 8) % 16);
  case 1:
    return 1 + (size_t)((r >> 8) % 4096);
  case 2:
    return 1 + (size_t)((r >> 8) % (512 * 1024));
  default:
    return 1 + (size_t)((r >> 8) % (8 * MiB));
  }
}

static void test_split_one_byte(void **state) {
  (void)state;
  uint8_t data[65536];
  size_t n_ref, n_stream;
  fill_random(data, sizeof data, 7);
  size_t *ref = cut_all(&TINY_PARAMS, data, sizeof data, &n_ref);
  size_t *got = cut_stream(&TINY_PARAMS, data, sizeof data, piece_one, 0, &n_stream);
  assert_true(n_ref > 60);
  assert_int_equal(n_ref, n_stream);
  assert_memory_equal(ref, got, n_ref * sizeof *ref);
  free(ref);
  free(got);
}

static void test_split_random_pieces(void **state) {
  (void)state;
  const uint8_t *data = big_random();
  size_t len = 24 * MiB;
  const struct chunker_params *params[] = {&DEFAULT_PARAMS, &SMALL_PARAMS};

  for (size_t k = 0; k < 2; k++) {
    size_t n_ref, n_stream;
    size_t *ref = cut_all(params[k], data, len, &n_ref);
    assert_true(n_ref > 4);
    /* Byte-by-byte around a content-defined cut, a chunk's min_size point
     * (where hashing starts) and its avg_size point (where the mask changes). */
    g_byte_regions[0] = ref[1];
    g_byte_regions[1] = ref[2] + params[k]->min_size;
    g_byte_regions[2] = ref[3] + params[k]->avg_size;
    g_byte_region_count = 3;
    for (uint64_t seed = 1; seed <= 3; seed++) {
      size_t *got = cut_stream(params[k], data, len, piece_mixed, seed, &n_stream);
      assert_int_equal(n_ref, n_stream);
      assert_memory_equal(ref, got, n_ref * sizeof *ref);
      free(got);
    }
    g_byte_region_count = 0;
    free(ref);
  }
}

static void test_reset_forgets_partial_chunk(void **state) {
  (void)state;
  const uint8_t *data = big_random();
  size_t len = 8 * MiB, n_ref;
  size_t *ref = cut_all(&DEFAULT_PARAMS, data, len, &n_ref);
  struct chunker *c;
  assert_int_equal(chunker_new(&DEFAULT_PARAMS, &c), 0);

  /* Leave the chunker in the middle of a chunk, past min and avg size. */
  int boundary;
  size_t used = chunker_scan(c, data + 12345, CHUNKER_DEFAULT_AVG + 1000, &boundary);
  assert_int_equal(boundary, 0);
  assert_int_equal(used, CHUNKER_DEFAULT_AVG + 1000);
  chunker_reset(c);

  size_t off = 0;
  for (size_t i = 0; i < n_ref && off < len; i++) {
    off += chunker_scan(c, data + off, len - off, &boundary);
    assert_int_equal(off, ref[i]);
  }
  chunker_free(c);
  free(ref);
}

/* ---- (4) shift resistance ---- */

static int has_cut(const size_t *cuts, size_t n, size_t off) {
  if (off == 0)
    return 1;
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cuts[mid] == off)
      return 1;
    if (cuts[mid] < off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

static void check_shift(const struct chunker_params *p, size_t max_changed_after) {
  const uint8_t *orig = big_random();
  const size_t ins = 20 * MiB + 12345, ins_len = 100;
  size_t mod_len = BIG_LEN + ins_len;
  uint8_t *mod = malloc(mod_len);
  assert_non_null(mod);
  memcpy(mod, orig, ins);
  fill_random(mod + ins, ins_len, 99);
  memcpy(mod + ins + ins_len, orig + ins, BIG_LEN - ins);

  size_t na, nb;
  size_t *a = cut_all(p, orig, BIG_LEN, &na);
  size_t *b = cut_all(p, mod, mod_len, &nb);

  size_t before = 0, after = 0, same_after = 0, start = 0;
  for (size_t i = 0; i < na; i++) {
    size_t end = a[i];
    if (end <= ins) {
      /* Entirely before the insertion: same index, same offsets. */
      assert_true(i < nb);
      assert_int_equal(b[i], end);
      before++;
    } else if (start >= ins) {
      after++;
      if (has_cut(b, nb, start + ins_len) && has_cut(b, nb, end + ins_len))
        same_after++;
    }
    start = end;
  }
  assert_true(before > 0);
  assert_true(after > 10);
  /* At least 95% of the chunks after the edit survive, and in absolute terms
   * only the first one or two resynchronise. */
  assert_true(same_after * 100 >= after * 95);
  assert_true(after - same_after <= max_changed_after);
  free(a);
  free(b);
  free(mod);
}

static void test_shift_resistance_default(void **state) {
  (void)state;
  check_shift(&DEFAULT_PARAMS, 2);
}

static void test_shift_resistance_small(void **state) {
  (void)state;
  check_shift(&SMALL_PARAMS, 2);
}

/* ---- (5) chunk sizes ---- */

static void check_sizes(const struct chunker_params *p) {
  const uint8_t *data = big_random();
  size_t n;
  size_t *cuts = cut_all(p, data, BIG_LEN, &n);
  size_t prev = 0, hit_max = 0;
  assert_int_equal(cuts[n - 1], BIG_LEN);
  for (size_t i = 0; i < n; i++) {
    size_t sz = cuts[i] - prev;
    assert_true(sz > 0);
    assert_true(sz <= p->max_size);
    if (i + 1 < n)
      assert_true(sz >= p->min_size);
    if (sz == p->max_size)
      hit_max++;
    prev = cuts[i];
  }
  double avg = (double)BIG_LEN / (double)n;
  assert_true(avg >= p->avg_size / 2.0);
  assert_true(avg <= p->avg_size * 2.0);
  /* Normalised chunking makes forced cuts rare on random data. */
  assert_true(hit_max * 100 <= n);
  free(cuts);
}

static void test_sizes_default(void **state) {
  (void)state;
  check_sizes(&DEFAULT_PARAMS);
}

static void test_sizes_small(void **state) {
  (void)state;
  check_sizes(&SMALL_PARAMS);
}

/* ---- (6) degenerate input ---- */

static void test_all_zero_gives_max_chunks(void **state) {
  (void)state;
  size_t len = 4 * (size_t)CHUNKER_DEFAULT_MAX + 12345;
  uint8_t *zero = calloc(1, len);
  assert_non_null(zero);
  for (uint64_t seed = 0; seed < 4; seed++) {
    struct chunker_params p = DEFAULT_PARAMS;
    p.seed = seed;
    size_t cuts[8];
    size_t n = chunker_cut_buffer(&p, zero, len, cuts, 8);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < 4; i++)
      assert_int_equal(cuts[i], (i + 1) * (size_t)CHUNKER_DEFAULT_MAX);
    assert_int_equal(cuts[4], len);
  }
  free(zero);
}

static void test_edge_inputs(void **state) {
  (void)state;
  uint8_t data[100];
  size_t cuts[4] = {0};
  fill_random(data, sizeof data, 3);
  /* Empty buffer: no chunks. Shorter than min_size: one chunk. */
  assert_int_equal(chunker_cut_buffer(&DEFAULT_PARAMS, data, 0, cuts, 4), 0);
  assert_int_equal(chunker_cut_buffer(&DEFAULT_PARAMS, data, sizeof data, cuts, 4), 1);
  assert_int_equal(cuts[0], sizeof data);

  struct chunker *c;
  int boundary = -1;
  assert_int_equal(chunker_new(&DEFAULT_PARAMS, &c), 0);
  assert_int_equal(chunker_scan(c, data, 0, &boundary), 0);
  assert_int_equal(boundary, 0);
  chunker_free(c);

  /* The count covers every chunk even when the array is too short. */
  uint8_t small[65536];
  fill_random(small, sizeof small, 5);
  size_t total = chunker_cut_buffer(&TINY_PARAMS, small, sizeof small, NULL, 0);
  size_t some[3];
  assert_int_equal(chunker_cut_buffer(&TINY_PARAMS, small, sizeof small, some, 3), total);
  assert_true(total > 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_params_check),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_golden_vector),
      cmocka_unit_test(test_split_one_byte),
      cmocka_unit_test(test_split_random_pieces),
      cmocka_unit_test(test_reset_forgets_partial_chunk),
      cmocka_unit_test(test_shift_resistance_default),
      cmocka_unit_test(test_shift_resistance_small),
      cmocka_unit_test(test_sizes_default),
      cmocka_unit_test(test_sizes_small),
      cmocka_unit_test(test_all_zero_gives_max_chunks),
      cmocka_unit_test(test_edge_inputs),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  free(big_random());
  return rc;
}
