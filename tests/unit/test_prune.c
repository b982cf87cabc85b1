/* prune_decide: the per-pack plan of engine prune (core/pipeline/prune.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pipeline/prune.h"

static struct prune_pack pack(uint64_t size, uint64_t used, int exists) {
  struct prune_pack p;
  memset(&p, 0, sizeof(p));
  p.size = size;
  p.used = used;
  p.exists = exists;
  p.action = PACK_REPACK; /* whatever it was, decide sets it */
  return p;
}

static void test_unused_pack_is_deleted(void **state) {
  (void)state;
  struct prune_pack p[] = {pack(1000, 0, 1)};
  struct prune_result r;
  memset(&r, 0, sizeof(r));
  prune_decide(p, 1, 0.5, &r);
  assert_int_equal(p[0].action, PACK_DELETE);
  assert_int_equal(r.packs_deleted, 1);
  assert_int_equal(r.packs_repacked, 0);
  assert_int_equal(r.bytes_after, 0);
}

static void test_threshold(void **state) {
  (void)state;
  /* 1000 bytes: 600 used -> 400 unused (40 %): kept at 0.5, repacked at 0.3;
   * 400 used -> 600 unused (60 %): repacked at 0.5 */
  struct prune_pack p[] = {pack(1000, 600, 1), pack(1000, 400, 1), pack(1000, 1000, 1)};
  struct prune_result r;
  memset(&r, 0, sizeof(r));
  prune_decide(p, 3, 0.5, &r);
  assert_int_equal(p[0].action, PACK_KEEP);
  assert_int_equal(p[1].action, PACK_REPACK);
  assert_int_equal(p[2].action, PACK_KEEP);
  assert_int_equal(r.packs_repacked, 1);
  assert_int_equal(r.bytes_after, 2000);
  memset(&r, 0, sizeof(r));
  prune_decide(p, 3, 0.3, &r);
  assert_int_equal(p[0].action, PACK_REPACK);
  assert_int_equal(p[2].action, PACK_KEEP);
  assert_int_equal(r.packs_repacked, 2);
}

static void test_threshold_edges(void **state) {
  (void)state;
  /* threshold 1: never repack (delete only what is wholly unused);
   * threshold 0: repack anything with a single unused byte */
  struct prune_pack p[] = {pack(1000, 1, 1), pack(1000, 999, 1), pack(1000, 1000, 1)};
  struct prune_result r;
  memset(&r, 0, sizeof(r));
  prune_decide(p, 3, 1.0, &r);
  assert_int_equal(p[0].action, PACK_KEEP);
  assert_int_equal(p[1].action, PACK_KEEP);
  memset(&r, 0, sizeof(r));
  prune_decide(p, 3, 0.0, &r);
  assert_int_equal(p[0].action, PACK_REPACK);
  assert_int_equal(p[1].action, PACK_REPACK);
  assert_int_equal(p[2].action, PACK_KEEP);
}

static void test_missing_pack_is_never_deleted(void **state) {
  (void)state;
  /* a pack the index names but data/ lacks: nothing to delete or read */
  struct prune_pack p[] = {pack(0, 0, 0), pack(0, 500, 0)};
  struct prune_result r;
  memset(&r, 0, sizeof(r));
  prune_decide(p, 2, 0.5, &r);
  assert_int_equal(p[0].action, PACK_KEEP);
  assert_int_equal(p[1].action, PACK_KEEP);
  assert_int_equal(r.packs_deleted + r.packs_repacked, 0);
  assert_int_equal(r.bytes_after, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unused_pack_is_deleted),
      cmocka_unit_test(test_threshold),
      cmocka_unit_test(test_threshold_edges),
      cmocka_unit_test(test_missing_pack_is_never_deleted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
