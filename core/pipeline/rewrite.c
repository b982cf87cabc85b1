/* engine key rotate --rewrite (rewrite.h).
 *
 * Steps, each leaving a repository that opens with the passphrase and
 * passes check --read-data when killed (a re-run goes on from the keyring's
 * "rewrite" state):
 *  1. keys2_rewrite_begin: a new master secret, key pair, index key and a
 *     successor for every tenant key, in a keyring that records what the
 *     rewrite retires; the key object for the passphrase; the old key
 *     objects and keyrings deleted;
 *  2. prune with rewrite set: every pack under a retired key repacked (its
 *     blobs sealed again under new data keys; a tenant's under its
 *     successor), the whole index written again under the new index key,
 *     the old packs and index objects deleted;
 *  3. every snapshot, audit, run and verification record sealed to a
 *     retired key pair is sealed again to the new one (a new name: names
 *     are content hashes), its references to renamed snapshots updated,
 *     then the old object deleted; a snapshot records "rewritten_from", so
 *     a re-run after a kill between the two does not copy it twice;
 *  4. keys2_rewrite_finish: the retired keys leave the keyring. */
#include "pipeline/rewrite.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/prune.h"
#include "repo/index.h"
#include "repo/keys2.h"
#include "repo/snapshot.h"
#include "util/log.h"

/* Replace every string of v that names a renamed snapshot. */
static void remap(json_t *v, json_t *map) {
  if (json_is_object(v)) {
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
      json_t *to = json_is_string(x) ? json_object_get(map, json_string_value(x)) : NULL;
      if (to)
        json_object_set(v, k, to);
      else
        remap(x, map);
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
      json_t *to = json_is_string(x) ? json_object_get(map, json_string_value(x)) : NULL;
      if (to)
        json_array_set(v, i, to);
      else
        remap(x, map);
    }
  }
}

/* Is object `name` sealed to a key pair the rewrite retires? (its first 8
 * bytes name the key pair) */
static int sealed_retired(struct repo *r, const char *name, int *retired, char **err) {
  void *head = NULL;
  size_t got = 0;
  if (repo_get(r, name, 0, 8, &head, &got, err) != 0)
    return -1;
  *retired = got == 8 && keys2_kid_retired(r, head);
  free(head);
  return 0;
}

/* Seal one object of kind again; map gets old id -> new id. */
static int reseal_one(struct repo *r, const char *kind, const char *folder, const char *id,
                      json_t *map, struct rewrite_result *res, char **err) {
  json_t *o;
  if (repo_load_json(r, kind, id, &o, err) != 0)
    return -1;
  remap(o, map);
  if (strcmp(kind, "snapshot") == 0)
    json_object_set_new(o, "rewritten_from", json_string(id));
  char nid[65], name[160];
  int rc = repo_save_json(r, kind, o, nid, err);
  json_decref(o);
  snprintf(name, sizeof(name), "%s/%s", folder, id);
  if (rc == 0)
    rc = repo_delete(r, name, err);
  if (rc == 0) {
    json_object_set_new(map, id, json_string(nid));
    res->objects_resealed++;
  }
  return rc;
}

/* Snapshots oldest first, so that a parent's new id is known before its
 * children are sealed again. Snapshots sealed again by a killed run are
 * found by their rewritten_from. */
static int reseal_snapshots(struct repo *r, json_t *map, struct rewrite_result *res, char **err) {
  struct snapshot_list all;
  json_t *unreadable = NULL;
  if (snapshot_list(r, &all, &unreadable, err) != 0)
    return -1;
  int rc = 0;
  if (json_array_size(unreadable) > 0) {
    *err = xasprintf("%zu snapshot(s) cannot be read: the rewrite stops before sealing "
                     "snapshots again (run 'engine check'; 'engine forget --forget-unreadable' "
                     "drops them)",
                     json_array_size(unreadable));
    rc = -1;
  }
  for (size_t i = 0; rc == 0 && i < all.n; i++) {
    const char *from = json_string_value(json_object_get(all.v[i]->raw, "rewritten_from"));
    if (from)
      json_object_set_new(map, from, json_string(all.v[i]->id));
  }
  for (size_t i = 0; rc == 0 && i < all.n; i++) {
    const char *id = all.v[i]->id;
    char name[160];
    snprintf(name, sizeof(name), "snapshots/%s", id);
    int retired = 0;
    rc = sealed_retired(r, name, &retired, err);
    if (rc != 0 || !retired)
      continue;
    if (json_object_get(map, id)) /* sealed again before a kill: the copy stays */
      rc = repo_delete(r, name, err);
    else
      rc = reseal_one(r, "snapshot", "snapshots", id, map, res, err);
  }
  snapshot_list_free(&all);
  json_decref(unreadable);
  return rc;
}

static int reseal_records(struct repo *r, const char *kind, const char *folder, json_t *map,
                          struct rewrite_result *res, char **err) {
  char prefix[64];
  snprintf(prefix, sizeof(prefix), "%s/", folder);
  json_t *list;
  if (repo_list(r, prefix, &list, err) != 0)
    return -1;
  int rc = 0;
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    int retired = 0;
    if (rc == 0)
      rc = sealed_retired(r, name, &retired, err);
    if (rc == 0 && retired)
      rc = reseal_one(r, kind, folder, name + strlen(prefix), map, res, err);
  }
  json_decref(list);
  return rc;
}

int rewrite_run(struct repo *r, const char *pass, size_t pass_len, struct rewrite_result *res,
                char **err) {
  memset(res, 0, sizeof(*res));
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  res->resumed = r->rewrite != NULL;
  if (keys2_rewrite_begin(r, pass, pass_len, &res->removed_keys, err) != 0)
    return -1;
  log_info("key rotate --rewrite: %s; new data is sealed under the new keys",
           res->resumed ? "resuming" : "new keys stored");
  struct prune_opts po = {.repack_threshold = 1.0, .quiet = 1, .rewrite = 1};
  struct prune_result pr;
  if (prune_run(r, &po, &pr, err) != 0)
    return -1;
  res->packs_before = pr.packs_before;
  res->packs_written = pr.packs_written;
  res->packs_deleted = pr.packs_deleted + pr.packs_repacked;
  res->bytes_before = pr.bytes_before;
  res->bytes_after = pr.bytes_after;
  log_info("key rotate --rewrite: %llu of %llu pack(s) sealed again into %llu",
           (unsigned long long)pr.packs_repacked, (unsigned long long)pr.packs_before,
           (unsigned long long)pr.packs_written);
  json_t *map = json_object();
  int rc = reseal_snapshots(r, map, res, err);
  static const char *const kinds[][2] = {
      {"audit", "audits"}, {"run", "runs"}, {"verify", "verify"}};
  for (size_t k = 0; rc == 0 && k < sizeof(kinds) / sizeof(kinds[0]); k++)
    rc = reseal_records(r, kinds[k][0], kinds[k][1], map, res, err);
  json_decref(map);
  if (rc == 0)
    rc = keys2_rewrite_finish(r, err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  res->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  return rc;
}
