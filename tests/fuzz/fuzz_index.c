/* Index objects (docs/FORMAT.md §8): the input is the plaintext JSON of an
 * index object. It is stored as index/<sha256> in an in-memory repository
 * without encryption and loaded with index_load (repo_load_json, then
 * index_parse), and parsed directly with index_parse. Checked beyond "no
 * crash": both ways agree, a refused object adds nothing to the index, an
 * accepted one gives each blob id its last entry (in a pack of the table),
 * and written back with index_save_packs and parsed again it gives the same
 * entries. Only the index's public interface is used. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "repo/index.h"
#include "util/log.h"

static struct repo *repo;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet();
  repo = fuzz_repo_new(NULL, NULL);
  return 0;
}

/* What an accepted object must put in an index: for each blob id, its last
 * entry in document order (a later one overwrites), as {id: [pack, offset,
 * length, raw_length, type]}. */
static json_t *expected(json_t *obj) {
  json_t *want = json_object();
  size_t i, j;
  json_t *p, *b;
  json_array_foreach(json_object_get(obj, "packs"), i, p) {
    json_array_foreach(json_object_get(p, "blobs"), j, b) {
      unsigned char id[32];
      char hex[65]; /* the same id in upper or lower case is the same blob */
      hex_decode(json_string_value(json_object_get(b, "id")), id, 32);
      hex_encode(id, 32, hex);
      json_object_set_new(want, hex,
                          json_pack("[O, O, O, O, O]", json_object_get(p, "id"),
                                    json_object_get(b, "offset"), json_object_get(b, "length"),
                                    json_object_get(b, "raw_length"), json_object_get(b, "type")));
    }
  }
  return want;
}

/* ix holds exactly what want says for each of its ids (looked up through the
 * public interface only), each entry naming a pack of the table. */
static void holds(struct index *ix, json_t *want, const char *what) {
  const char *hex;
  json_t *w;
  json_object_foreach(want, hex, w) {
    unsigned char id[32], pid[32];
    struct index_entry e;
    FUZZ_CHECK(hex_decode(hex, id, 32) == 0, "%s: id %s", what, hex);
    FUZZ_CHECK(index_get(ix, id, &e), "%s: blob %.16s is not in the index", what, hex);
    FUZZ_CHECK(e.pack < ix->n_packs, "%s: an entry names pack %u of %zu", what, e.pack,
               ix->n_packs);
    FUZZ_CHECK(hex_decode(json_string_value(json_array_get(w, 0)), pid, 32) == 0 &&
                   memcmp(ix->packs[e.pack], pid, 32) == 0,
               "%s: blob %.16s is in another pack", what, hex);
    FUZZ_CHECK(e.offset == json_integer_value(json_array_get(w, 1)) &&
                   e.length == json_integer_value(json_array_get(w, 2)) &&
                   e.raw_length == json_integer_value(json_array_get(w, 3)) &&
                   e.type == (strcmp(json_string_value(json_array_get(w, 4)), "tree") == 0
                                  ? BLOB_TREE
                                  : BLOB_DATA),
               "%s: blob %.16s has other values", what, hex);
  }
}

/* A refused object left nothing: no pack, none of its blob ids. */
static void holds_nothing(struct index *ix, json_t *obj) {
  FUZZ_CHECK(ix->n_packs == 0, "a refused object added %zu packs", ix->n_packs);
  size_t i, j;
  json_t *p, *b;
  json_array_foreach(json_object_get(obj, "packs"), i, p) {
    json_array_foreach(json_object_get(p, "blobs"), j, b) {
      unsigned char id[32];
      const char *hex = json_string_value(json_object_get(b, "id"));
      if (hex && hex_decode(hex, id, 32) == 0)
        FUZZ_CHECK(!index_get(ix, id, NULL), "a refused object added blob %.16s", hex);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct memsink *ms = memsink_of(repo);
  char hex[65], name[80];
  sha256_hex(data, size, hex);
  snprintf(name, sizeof(name), "index/%s", hex);
  memsink_put(ms, name, data, size);

  /* the way the engine loads it */
  fuzz_repo_reset_index(repo);
  char *err = NULL;
  FUZZ_CHECK(index_load(repo, &err) == 0, "index_load: %s", err);
  size_t damaged = json_array_size(repo->index->damaged);
  FUZZ_CHECK(damaged <= 1, "%zu damaged objects out of one", damaged);
  if (damaged)
    FUZZ_CHECK(json_string_value(
                   json_object_get(json_array_get(repo->index->damaged, 0), "error")) != NULL,
               "a damaged index object without a reason");

  /* directly */
  json_error_t je;
  json_t *obj = json_loadb((const char *)data, size, 0, &je);
  struct index *ix = index_new();
  char *why = NULL;
  int ok = obj && index_parse(ix, obj, &why) == 0;
  FUZZ_CHECK(ok == (damaged == 0), "index_parse says %d, index_load %zu damaged", ok, damaged);
  FUZZ_CHECK(ok || why || !obj, "a refusal without a reason");
  free(why);
  if (!ok) {
    if (obj) {
      holds_nothing(ix, obj);
      holds_nothing(repo->index, obj);
    }
    json_decref(obj);
    index_free(ix);
    memsink_clear(ms, "index/");
    return 0;
  }
  json_t *want = expected(obj);
  json_decref(obj);
  holds(ix, want, "index_parse");
  holds(repo->index, want, "index_load");
  FUZZ_CHECK(ix->n_packs == repo->index->n_packs, "%zu packs, index_load %zu", ix->n_packs,
             repo->index->n_packs);

  if (ix->n_packs > 0) {
    /* written back and read again: the same entries */
    struct index *loaded = repo->index;
    repo->index = ix;
    uint32_t *packs = xcalloc(ix->n_packs, sizeof(*packs));
    for (size_t i = 0; i < ix->n_packs; i++)
      packs[i] = (uint32_t)i;
    char id[65];
    FUZZ_CHECK(index_save_packs(repo, packs, ix->n_packs, id, &err) == 0, "index_save_packs: %s",
               err);
    free(packs);
    repo->index = loaded;
    json_t *again;
    FUZZ_CHECK(repo_load_json(repo, "index", id, &again, &err) == 0, "repo_load_json: %s", err);
    struct index *ix2 = index_new();
    FUZZ_CHECK(index_parse(ix2, again, &why) == 0, "the saved index is refused: %s", why);
    json_t *want2 = expected(again);
    json_decref(again);
    FUZZ_CHECK(json_object_size(want2) == json_object_size(want), "%zu blobs saved of %zu",
               json_object_size(want2), json_object_size(want));
    holds(ix2, want, "the saved index");
    json_decref(want2);
    index_free(ix2);
  }
  json_decref(want);
  index_free(ix);
  memsink_clear(ms, "index/");
  return 0;
}
