/* Snapshot manifests and item trees (docs/FORMAT.md §9, §10). The input is
 * a manifest's JSON on its first line and an item tree (JSON lines) after
 * it, both as a repository without encryption stores them:
 *
 * - the manifest is stored as snapshots/<sha256> beside one valid snapshot
 *   and read with snapshot_load, snapshot_list and snapshot_find("latest")
 *   (repo_load_json and the manifest validation); the repository's id is
 *   FUZZ_REPO_ID;
 * - the tree is cut into a few TREE blobs (so lines span blobs), packed and
 *   indexed, then read with tree_reader (line splitting, JSON per line) and
 *   tree_foreach (the two-thread reader restore and check use), and every
 *   item is judged by tree_item_problem against the index, which also holds
 *   two data blobs the seeds use: d100..00 (5 bytes) and d200..00 (1000).
 *
 * Checked beyond "no crash": the two tree readers agree (same items, or
 * both fail), an item tree_item_problem accepts has a safe name, and the
 * snapshot list accounts for every snapshot. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "repo/index.h"
#include "repo/pack.h"
#include "repo/snapshot.h"
#include "repo/tree.h"
#include "util/log.h"

static struct repo *repo;
static char fixed_id[65]; /* the valid snapshot always present */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet();
  repo = fuzz_repo_new(NULL, NULL);
  json_t *m =
      json_pack("{s:i, s:s, s:s, s:I, s:[{s:s, s:s, s:[]}], s:s}", "version", 1, "repository",
                FUZZ_REPO_ID, "time", "2026-01-01T00:00:00Z", "created_ns", (json_int_t)1,
                "sources", "name", "files", "type", "files", "tree", "status", "complete");
  char *err = NULL;
  if (repo_save_json(repo, "snapshot", m, fixed_id, &err) != 0)
    fuzz_fail(__FILE__, __LINE__, "repo_save_json", "%s", err);
  json_decref(m);
  return 0;
}

static void add_data_blob(struct index *ix, unsigned char first, uint32_t raw_length) {
  unsigned char id[32], pack[32];
  memset(id, 0, sizeof(id));
  id[0] = first;
  memset(pack, 0xee, sizeof(pack));
  index_put(ix, id, index_add_pack(ix, pack), 0, raw_length + 30, raw_length, BLOB_DATA);
}

/* The tree as TREE blobs in one pack, indexed; returns their ids. */
static json_t *store_tree(const unsigned char *t, size_t len) {
  struct packer pk;
  packer_init(&pk);
  json_t *ids = json_array();
  size_t pieces = 1 + len % 4, at = 0;
  for (size_t k = 0; k < pieces; k++) {
    size_t n = k + 1 == pieces ? len - at : len / pieces;
    unsigned char id[32];
    repo_blob_id(repo, t + at, n, id);
    void *enc;
    size_t enc_len;
    FUZZ_CHECK(repo_blob_encode(repo, NULL, id, BLOB_TREE, t + at, n, &enc, &enc_len) == 0,
               "repo_blob_encode");
    packer_add(&pk, id, BLOB_TREE, enc, enc_len, (uint32_t)n);
    free(enc);
    char hex[65];
    hex_encode(id, 32, hex);
    json_array_append_new(ids, json_string(hex));
    at += n;
  }
  unsigned char pack_id[32];
  FUZZ_CHECK(packer_finish(&pk, repo, pack_id) == 0, "packer_finish");
  char name[80];
  pack_object_name(pack_id, name);
  memsink_put(memsink_of(repo), name, pk.buf, pk.len);
  uint32_t num = index_add_pack(repo->index, pack_id);
  for (size_t i = 0; i < pk.n; i++)
    index_put(repo->index, pk.entries[i].id, num, pk.entries[i].offset, pk.entries[i].length,
              pk.entries[i].raw_length, pk.entries[i].type);
  packer_free(&pk);
  return ids;
}

struct collected {
  json_t *items;
};

static int collect(void *ud, json_t *item) {
  struct collected *c = ud;
  json_array_append(c->items, item);
  return 0;
}

static void check_manifest(const unsigned char *m, size_t len) {
  char id[65], name[80];
  sha256_hex(m, len, id);
  snprintf(name, sizeof(name), "snapshots/%s", id);
  memsink_put(memsink_of(repo), name, m, len);

  struct snapshot *snap = NULL;
  char *err = NULL;
  int rc = snapshot_load(repo, id, &snap, &err);
  FUZZ_CHECK(rc == 0 || err, "snapshot_load failed without a reason");
  free(err);
  err = NULL;
  if (rc == 0) {
    json_t *srcs = json_object_get(snap->raw, "sources");
    FUZZ_CHECK(json_is_array(srcs) && json_array_size(srcs) == snap->n_sources,
               "an accepted manifest without its sources");
    snapshot_free(snap);
  }

  struct snapshot_list all;
  json_t *bad = NULL;
  FUZZ_CHECK(snapshot_list(repo, &all, &bad, &err) == 0, "snapshot_list: %s", err);
  size_t expect = strcmp(id, fixed_id) == 0 ? 1 : 2;
  FUZZ_CHECK(all.n + json_array_size(bad) == expect,
             "%zu snapshots listed, %zu unreadable, %zu stored", all.n, json_array_size(bad),
             expect);
  FUZZ_CHECK((rc != 0) == (json_array_size(bad) == 1), "snapshot_load and snapshot_list disagree");
  snapshot_list_free(&all);
  json_decref(bad);

  struct snapshot *latest = NULL;
  if (snapshot_find(repo, "latest", &latest, &err) == 0)
    snapshot_free(latest);
  else
    FUZZ_CHECK(rc != 0, "latest is refused though every snapshot is readable: %s", err);
  free(err);
  memsink_del(memsink_of(repo), name);
}

static void check_tree(const unsigned char *t, size_t len) {
  fuzz_repo_reset_index(repo);
  add_data_blob(repo->index, 0xd1, 5);
  add_data_blob(repo->index, 0xd2, 1000);
  json_t *ids = store_tree(t, len);

  struct tree_reader tr;
  tree_reader_init(&tr, repo, ids);
  json_t *items = json_array();
  json_t *item;
  char *err = NULL;
  int rc;
  while ((rc = tree_reader_next(&tr, &item, &err)) == 1) {
    char *name = NULL;
    char *why = tree_item_problem(item, repo->index, &name);
    FUZZ_CHECK(name != NULL, "tree_item_problem gave no name");
    if (!why) {
      size_t nlen = 0;
      char *raw = json_get_bytes(item, "name", &nlen);
      FUZZ_CHECK(raw && !item_name_problem(raw, nlen), "an accepted item has an unsafe name");
      free(raw);
    }
    free(why);
    free(name);
    json_array_append_new(items, item);
  }
  FUZZ_CHECK(rc == 0 || err, "tree_reader_next failed without a reason");
  free(err);
  err = NULL;
  tree_reader_free(&tr);

  struct collected c = {json_array()};
  int frc = tree_foreach(repo, ids, collect, &c, &err);
  FUZZ_CHECK((frc == 0) == (rc == 0), "tree_foreach says %d, tree_reader %d (%s)", frc, rc,
             err ? err : "");
  free(err);
  if (rc == 0)
    FUZZ_CHECK(json_equal(items, c.items), "tree_foreach and tree_reader read different items");
  json_decref(c.items);
  json_decref(items);
  json_decref(ids);
  memsink_clear(memsink_of(repo), "data/");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nl = memchr(data, '\n', size);
  size_t mlen = nl ? (size_t)(nl - data) : size;
  check_manifest(data, mlen);
  if (nl)
    check_tree(nl + 1, size - mlen - 1);
  return 0;
}
