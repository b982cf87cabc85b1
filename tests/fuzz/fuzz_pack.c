/* Pack headers (docs/FORMAT.md §7): the input is a whole pack object of a
 * repository without encryption, so the fuzzer reaches the header parsing
 * (with encryption the header's authentication would refuse nearly every
 * input). It is parsed three ways the engine parses packs: pack_parse on the
 * whole object (check), pack_parse_tail on its last bytes, and
 * pack_read_header through ranged reads of the stored object (repair index,
 * check --read-data). Checked beyond "no crash": the three agree, and every
 * entry lies within the pack's data area. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "repo/pack.h"
#include "util/log.h"

static struct repo *repo;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet();
  repo = fuzz_repo_new(NULL, NULL);
  return 0;
}

static void same(const struct pack_entry *a, size_t na, const struct pack_entry *b, size_t nb,
                 const char *how) {
  FUZZ_CHECK(na == nb, "%s: %zu entries, pack_parse %zu", how, nb, na);
  for (size_t i = 0; i < na; i++)
    FUZZ_CHECK(a[i].type == b[i].type && memcmp(a[i].id, b[i].id, 32) == 0 &&
                   a[i].offset == b[i].offset && a[i].length == b[i].length &&
                   a[i].raw_length == b[i].raw_length,
               "%s: entry %zu differs", how, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct pack_entry *e = NULL;
  size_t n = 0;
  char *err = NULL;
  int rc = pack_parse(repo, data, size, &e, &n, NULL, &err);
  FUZZ_CHECK(rc == 0 || err, "pack_parse failed without a reason");
  free(err);
  err = NULL;
  if (rc == 0) {
    uint32_t sl = le32_get(data + size - 8);
    for (size_t i = 0; i < n; i++)
      FUZZ_CHECK((uint64_t)e[i].offset + e[i].length <= size - 8 - sl && e[i].type <= BLOB_TREE,
                 "entry %zu [%u, +%u) is outside the data area of %zu bytes", i, e[i].offset,
                 e[i].length, size - 8 - sl);
  }

  /* from the end only: any tail that holds the header and trailer gives
   * the same entries; a shorter one is refused */
  if (size >= 8) {
    size_t tails[3] = {8, size / 2, size};
    for (int k = 0; k < 3; k++) {
      size_t t = tails[k] < 8 ? 8 : tails[k];
      struct pack_entry *te = NULL;
      size_t tn = 0;
      int trc = pack_parse_tail(repo, NULL, data + size - t, t, size, &te, &tn, &err);
      free(err);
      err = NULL;
      if (rc == 0 && (uint64_t)le32_get(data + size - 8) + 8 <= t) {
        FUZZ_CHECK(trc == 0, "pack_parse_tail of %zu bytes fails where pack_parse does not", t);
        same(e, n, te, tn, "pack_parse_tail");
      } else if (rc != 0) {
        FUZZ_CHECK(trc != 0, "pack_parse_tail of %zu bytes accepts what pack_parse refuses", t);
      } else {
        FUZZ_CHECK(trc != 0, "pack_parse_tail accepts a tail without the whole header");
      }
      if (trc == 0)
        free(te);
    }
  }

  /* through the sink, with ranged reads */
  unsigned char id[32];
  char name[80];
  memset(id, 0, sizeof(id));
  sha256_hex(data, size, name); /* 64 hex digits; the name's form is all that matters */
  hex_decode(name, id, 32);
  pack_object_name(id, name);
  memsink_put(memsink_of(repo), name, data, size);
  struct pack_entry *re = NULL;
  size_t rn = 0;
  int rrc = pack_read_header(repo, name, size, &re, &rn, NULL, &err);
  FUZZ_CHECK(rrc == 0 || err, "pack_read_header failed without a reason");
  free(err);
  FUZZ_CHECK((rrc == 0) == (rc == 0), "pack_read_header says %d, pack_parse %d", rrc, rc);
  if (rrc == 0) {
    same(e, n, re, rn, "pack_read_header");
    free(re);
  }
  memsink_del(memsink_of(repo), name);
  if (rc == 0)
    free(e);
  return 0;
}
