/* The in-memory index (core/repo/index.c): claim semantics (a blob id is
 * claimed once, pending until stored; pending entries are invisible to
 * index_foreach), put/get, the pack table, growth, concurrent claims, and the
 * index object text round trip (index_text_* -> index_parse). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "repo/index.h"
#include "repo/pack.h"
#include "repo/repo.h"

/* A blob id from a number: distinct numbers give distinct ids, and the
 * first bytes (the table's hash) vary. */
static void make_id(uint32_t n, unsigned char id[32]) {
  uint64_t x = n * 0x9E3779B97F4A7C15ull + 1;
  for (int i = 0; i < 32; i++) {
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    id[i] = (unsigned char)(x >> 56);
  }
  memcpy(id + 28, &n, 4); /* unique whatever the mixing does */
}

static void test_claim_pending_then_stored(void **state) {
  (void)state;
  struct index *ix = index_new();
  unsigned char id[32];
  make_id(1, id);
  struct index_entry e;
  assert_int_equal(index_get(ix, id, &e), 0);
  /* the first claim wins and inserts a pending entry */
  assert_int_equal(index_claim(ix, id, BLOB_DATA), 1);
  assert_int_equal(index_claim(ix, id, BLOB_DATA), 0);
  assert_int_equal(index_claim(ix, id, BLOB_TREE), 0); /* the id is taken, whatever the type */
  assert_int_equal(index_get(ix, id, &e), 1);
  assert_int_equal(e.pack, UINT32_MAX);
  assert_int_equal(e.type, BLOB_DATA);
  assert_int_equal(index_size(ix), 1);
  /* storing it fills in the location */
  unsigned char pid[32];
  make_id(1000, pid);
  uint32_t p = index_add_pack(ix, pid);
  index_put(ix, id, p, 10, 20, 30, BLOB_DATA);
  assert_int_equal(index_get(ix, id, &e), 1);
  assert_int_equal(e.pack, p);
  assert_int_equal(e.offset, 10);
  assert_int_equal(e.length, 20);
  assert_int_equal(e.raw_length, 30);
  assert_memory_equal(e.id, id, 32);
  /* stored: still not claimable, and still one entry */
  assert_int_equal(index_claim(ix, id, BLOB_DATA), 0);
  assert_int_equal(index_size(ix), 1);
  /* get with NULL only answers whether it is there */
  assert_int_equal(index_get(ix, id, NULL), 1);
  index_free(ix);
}

struct walk {
  size_t n;
  uint32_t offsets[16];
};

static void walk_cb(void *ud, const struct index_entry *e) {
  struct walk *w = ud;
  assert_true(w->n < 16);
  assert_int_not_equal(e->pack, UINT32_MAX);
  w->offsets[w->n++] = e->offset;
}

static void test_foreach_skips_pending_in_insertion_order(void **state) {
  (void)state;
  struct index *ix = index_new();
  unsigned char pid[32], id[32];
  make_id(7, pid);
  uint32_t p = index_add_pack(ix, pid);
  /* 0: stored, 1: pending, 2: stored, 3: pending then stored */
  make_id(100, id);
  index_put(ix, id, p, 100, 1, 1, BLOB_DATA);
  make_id(101, id);
  assert_int_equal(index_claim(ix, id, BLOB_DATA), 1);
  make_id(102, id);
  index_put(ix, id, p, 102, 1, 1, BLOB_TREE);
  make_id(103, id);
  assert_int_equal(index_claim(ix, id, BLOB_DATA), 1);
  index_put(ix, id, p, 103, 1, 1, BLOB_DATA);
  assert_int_equal(index_size(ix), 4); /* stored and pending */
  struct walk w = {0};
  index_foreach(ix, walk_cb, &w);
  assert_int_equal(w.n, 3);
  assert_int_equal(w.offsets[0], 100);
  assert_int_equal(w.offsets[1], 102);
  assert_int_equal(w.offsets[2], 103);
  /* a put over a stored entry moves it, without a second entry */
  make_id(100, id);
  index_put(ix, id, p, 999, 1, 1, BLOB_DATA);
  assert_int_equal(index_size(ix), 4);
  w.n = 0;
  index_foreach(ix, walk_cb, &w);
  assert_int_equal(w.n, 3);
  assert_int_equal(w.offsets[0], 999);
  index_free(ix);
}

static void test_packs(void **state) {
  (void)state;
  struct index *ix = index_new();
  unsigned char pid[32];
  uint32_t num;
  make_id(1, pid);
  assert_int_equal(index_find_pack(ix, pid, &num), 0); /* empty table */
  for (uint32_t i = 0; i < 1000; i++) {
    make_id(i, pid);
    assert_int_equal(index_add_pack(ix, pid), i);
  }
  for (uint32_t i = 0; i < 1000; i++) {
    make_id(i, pid);
    assert_int_equal(index_add_pack(ix, pid), i); /* the same id, the same number */
    num = UINT32_MAX;
    assert_int_equal(index_find_pack(ix, pid, &num), 1);
    assert_int_equal(num, i);
    assert_memory_equal(ix->packs[i], pid, 32);
  }
  make_id(5000, pid);
  assert_int_equal(index_find_pack(ix, pid, &num), 0);
  index_free(ix);
}

static void test_growth_keeps_every_entry(void **state) {
  (void)state;
  struct index *ix = index_new();
  unsigned char pid[32], id[32];
  make_id(0, pid);
  uint32_t p = index_add_pack(ix, pid);
  const uint32_t n = 200000; /* many table growths */
  for (uint32_t i = 0; i < n; i++) {
    make_id(i, id);
    if (i % 3 == 0)
      assert_int_equal(index_claim(ix, id, BLOB_DATA), 1);
    else
      index_put(ix, id, p, i, i + 1, i + 2, (uint8_t)(i % 2));
  }
  assert_int_equal(index_size(ix), n);
  for (uint32_t i = 0; i < n; i++) {
    struct index_entry e;
    make_id(i, id);
    assert_int_equal(index_get(ix, id, &e), 1);
    if (i % 3 == 0) {
      assert_int_equal(e.pack, UINT32_MAX);
    } else {
      assert_int_equal(e.pack, p);
      assert_int_equal(e.offset, i);
      assert_int_equal(e.length, i + 1);
      assert_int_equal(e.raw_length, i + 2);
      assert_int_equal(e.type, i % 2);
    }
  }
  make_id(n + 1, id);
  assert_int_equal(index_get(ix, id, NULL), 0);
  index_free(ix);
}

/* Several threads claim overlapping ranges of ids, as the backup's workers
 * do with the chunks they hash: every id is claimed exactly once. */
#define CLAIMERS 4
#define CLAIM_IDS 20000
struct claimer {
  struct index *ix;
  int start;
  unsigned won;
};

static void *claim_main(void *arg) {
  struct claimer *c = arg;
  unsigned char id[32];
  for (int k = 0; k < CLAIM_IDS; k++) {
    make_id((uint32_t)((c->start + k) % CLAIM_IDS), id);
    c->won += (unsigned)index_claim(c->ix, id, BLOB_DATA);
  }
  return NULL;
}

static void test_concurrent_claims(void **state) {
  (void)state;
  struct index *ix = index_new();
  pthread_t th[CLAIMERS];
  struct claimer c[CLAIMERS];
  for (int i = 0; i < CLAIMERS; i++) {
    c[i] = (struct claimer){ix, i * (CLAIM_IDS / CLAIMERS), 0};
    assert_int_equal(pthread_create(&th[i], NULL, claim_main, &c[i]), 0);
  }
  unsigned total = 0;
  for (int i = 0; i < CLAIMERS; i++) {
    pthread_join(th[i], NULL);
    total += c[i].won;
  }
  assert_int_equal(total, CLAIM_IDS);
  assert_int_equal(index_size(ix), CLAIM_IDS);
  index_free(ix);
}

struct parsed {
  size_t n;
  struct pack_entry e[8];
  unsigned char pack[8][32];
};

static void parsed_cb(void *ud, const unsigned char pack_id[32], const struct pack_entry *e) {
  struct parsed *p = ud;
  assert_true(p->n < 8);
  memcpy(p->pack[p->n], pack_id, 32);
  p->e[p->n++] = *e;
}

/* The text a backup writes pack by pack parses back to the same entries,
 * also at the 32-bit limits of offsets and lengths. */
static void test_index_text_roundtrip(void **state) {
  (void)state;
  struct index_text t = {0};
  size_t len;
  char *empty = index_text_finish(&t, &len);
  assert_string_equal(empty, "{\"packs\":[],\"version\":1}");
  assert_int_equal(len, strlen(empty));
  free(empty);

  struct pack_entry a[3], b[1];
  unsigned char pa[32], pb[32];
  make_id(1, pa);
  make_id(2, pb);
  for (int i = 0; i < 3; i++) {
    a[i].type = i == 1 ? BLOB_TREE : BLOB_DATA;
    make_id(10 + (uint32_t)i, a[i].id);
    a[i].offset = (uint32_t)i * 1000;
    a[i].length = 100 + (uint32_t)i;
    a[i].raw_length = 200 + (uint32_t)i;
  }
  b[0].type = BLOB_DATA;
  make_id(20, b[0].id);
  b[0].offset = UINT32_MAX;
  b[0].length = UINT32_MAX;
  b[0].raw_length = UINT32_MAX;
  index_text_add_pack(&t, pa, a, 3);
  index_text_add_pack(&t, pb, b, 1);
  assert_int_equal(t.packs, 2);
  assert_int_equal(t.blobs, 4);
  char *text = index_text_finish(&t, &len);
  assert_null(t.p);
  assert_int_equal(len, strlen(text));
  json_error_t je;
  json_t *obj = json_loadb(text, len, 0, &je);
  assert_non_null(obj);
  /* compact, keys sorted: what json_dumps(JSON_COMPACT | JSON_SORT_KEYS) writes */
  char *again = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(again, text);
  free(again);
  struct parsed p = {0};
  char *err = NULL;
  assert_int_equal(index_parse_each(obj, parsed_cb, &p, &err), 0);
  assert_null(err);
  assert_int_equal(p.n, 4);
  for (int i = 0; i < 3; i++) {
    assert_memory_equal(p.pack[i], pa, 32);
    assert_memory_equal(p.e[i].id, a[i].id, 32);
    assert_int_equal(p.e[i].type, a[i].type);
    assert_int_equal(p.e[i].offset, a[i].offset);
    assert_int_equal(p.e[i].length, a[i].length);
    assert_int_equal(p.e[i].raw_length, a[i].raw_length);
  }
  assert_memory_equal(p.pack[3], pb, 32);
  assert_int_equal(p.e[3].offset, UINT32_MAX);
  assert_int_equal(p.e[3].raw_length, UINT32_MAX);
  /* and into an index */
  struct index *ix = index_new();
  assert_int_equal(index_parse(ix, obj, &err), 0);
  struct index_entry e;
  assert_int_equal(index_get(ix, a[1].id, &e), 1);
  assert_int_equal(e.type, BLOB_TREE);
  assert_int_equal(e.offset, 1000);
  uint32_t num;
  assert_int_equal(index_find_pack(ix, pb, &num), 1);
  assert_int_equal(index_get(ix, b[0].id, &e), 1);
  assert_int_equal(e.pack, num);
  index_free(ix);
  json_decref(obj);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_claim_pending_then_stored),
      cmocka_unit_test(test_foreach_skips_pending_in_insertion_order),
      cmocka_unit_test(test_packs),
      cmocka_unit_test(test_growth_keeps_every_entry),
      cmocka_unit_test(test_concurrent_claims),
      cmocka_unit_test(test_index_text_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
