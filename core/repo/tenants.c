/* Format 2's per-tenant keys (keys2.h, docs/FORMAT.md §3.6): the tenants
 * of the keyring, adding one, shredding, rotating, and the data keys of a
 * tenant's packs. */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repo/keys2.h"
#include "repo/keys2_int.h"
#include "util/log.h"

/* Guards every repository's tenant array and the keyring writes that
 * follow a new tenant: the backup's source thread adds tenants while pool
 * threads store packs (keys2_tenants_flush) and a tree reader looks pack
 * keys up. Recursive: saving the keyring reads the tenants again. */
static pthread_mutex_t tenants_mu;
static pthread_once_t tenants_once = PTHREAD_ONCE_INIT;

static void tenants_mu_init(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&tenants_mu, &a);
  pthread_mutexattr_destroy(&a);
}

static void lock(void) {
  pthread_once(&tenants_once, tenants_mu_init);
  pthread_mutex_lock(&tenants_mu);
}

static void unlock(void) {
  pthread_mutex_unlock(&tenants_mu);
}

#define TENANT_ID_INFO "engine-v2 tenant id"
#define TENANT_WRAP_INFO "engine-v2 tenant wrap"

static void tenant_free(struct repo_tenant *t) {
  if (!t)
    return;
  OPENSSL_cleanse(t->key, sizeof(t->key));
  OPENSSL_cleanse(t->idk, sizeof(t->idk));
  OPENSSL_cleanse(t->wrap, sizeof(t->wrap));
  free(t->name);
  free(t->created);
  free(t->shredded);
  free(t);
}

static void k2_tenants_clear_impl(struct repo *r) {
  for (size_t i = 0; i < r->n_tenants; i++)
    tenant_free(r->tenants[i]);
  free(r->tenants);
  r->tenants = NULL;
  r->n_tenants = 0;
}

/* The tenant's id and wrapping keys, from its secret (bound to the
 * repository). */
static int tenant_derive(const struct repo *r, struct repo_tenant *t) {
  const unsigned char *salt = (const unsigned char *)r->id;
  return k2_hkdf(t->key, 32, salt, strlen(r->id), TENANT_ID_INFO, t->idk, 32) == 0 &&
                 k2_hkdf(t->key, 32, salt, strlen(r->id), TENANT_WRAP_INFO, t->wrap, 32) == 0
             ? 0
             : -1;
}

/* A tenant may have several keys: one per rotation, and two when two hosts
 * added the same new tenant at once. New data goes under the newest live
 * one; a shredded tenant has no live key left. */
static struct repo_tenant *keys2_tenant_find_impl(const struct repo *r, const char *name) {
  struct repo_tenant *best = NULL;
  for (size_t i = 0; i < r->n_tenants; i++) {
    struct repo_tenant *t = r->tenants[i];
    if (strcmp(t->name, name) != 0)
      continue;
    if (!best || (best->shredded && !t->shredded))
      best = t;
    else if (!t->shredded && !best->shredded) {
      if (t->gen > best->gen || (t->gen == best->gen && memcmp(t->kid, best->kid, 8) > 0))
        best = t;
    }
  }
  return best;
}

/* Destroy a tenant key (shredding), keeping its name, id and dates. */
static void tenant_forget(struct repo_tenant *t, const char *when) {
  free(t->shredded);
  t->shredded = xstrdup(when);
  OPENSSL_cleanse(t->key, sizeof(t->key));
  OPENSSL_cleanse(t->idk, sizeof(t->idk));
  OPENSSL_cleanse(t->wrap, sizeof(t->wrap));
}

static struct repo_tenant *keys2_tenant_by_kid_impl(const struct repo *r,
                                                    const unsigned char *kid) {
  for (size_t i = 0; i < r->n_tenants; i++)
    if (memcmp(r->tenants[i]->kid, kid, 8) == 0)
      return r->tenants[i];
  return NULL;
}

/* Merge the "tenants" object of an opened keyring into r: a tenant shredded
 * in any keyring stays shredded (its key is forgotten), so a keyring
 * written concurrently by an older host cannot bring a key back. */
static int k2_tenants_merge_impl(struct repo *r, json_t *tn, const char *name, char **err) {
  if (!tn)
    return 0;
  if (!json_is_array(tn)) {
    *err = xasprintf("keyring '%s' is damaged: tenants is not an array", name);
    return -1;
  }
  size_t i;
  json_t *v;
  json_array_foreach(tn, i, v) {
    const char *tname = json_string_value(json_object_get(v, "name"));
    const char *id = json_string_value(json_object_get(v, "id"));
    const char *created = json_string_value(json_object_get(v, "created"));
    const char *shredded = json_string_value(json_object_get(v, "shredded"));
    const char *retired = json_string_value(json_object_get(v, "retired"));
    const char *repl = json_string_value(json_object_get(v, "replaces"));
    json_t *idk_json = json_object_get(v, "id_key");
    if (retired && !shredded)
      shredded = retired;
    unsigned char kid[8], key[32], idk[32], rk[8];
    if (!tname || !tname[0] || !id || strlen(id) != 16 || hex_decode(id, kid, 8) != 0 ||
        (!shredded && k2_b64_get(v, "key", key, 32) != 0) ||
        (repl && (strlen(repl) != 16 || hex_decode(repl, rk, 8) != 0)) ||
        (!shredded && idk_json && k2_b64_get(v, "id_key", idk, 32) != 0)) {
      *err = xasprintf("keyring '%s' is damaged: tenant key %zu is malformed", name, i);
      return -1;
    }
    struct repo_tenant *t = keys2_tenant_by_kid(r, kid);
    if (!t) {
      t = xcalloc(1, sizeof(*t));
      t->name = xstrdup(tname);
      memcpy(t->kid, kid, 8);
      t->created = xstrdup(created ? created : "");
      t->gen = (uint64_t)json_integer_value(json_object_get(v, "generation"));
      if (repl) {
        memcpy(t->replaces, rk, 8);
        t->has_replaces = 1;
      }
      r->tenants = xrealloc(r->tenants, (r->n_tenants + 1) * sizeof(*r->tenants));
      r->tenants[r->n_tenants++] = t;
      if (!shredded) {
        memcpy(t->key, key, 32);
        if (tenant_derive(r, t) != 0) {
          OPENSSL_cleanse(key, sizeof(key));
          *err = xstrdup("key derivation (HKDF) failed");
          return -1;
        }
        if (idk_json) { /* a rewrite's successor keeps its predecessor's ids */
          memcpy(t->idk, idk, 32);
          t->idk_explicit = 1;
        }
      }
    }
    if (shredded && !t->shredded)
      tenant_forget(t, shredded);
    if (retired)
      t->retired = 1;
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(idk, sizeof(idk));
  }
  return 0;
}

void k2_olds_add(struct repo *r, const char *name) {
  for (size_t i = 0; i < r->n_keyring_old; i++)
    if (strcmp(r->keyring_old[i], name) == 0)
      return;
  r->keyring_old = xrealloc(r->keyring_old, (r->n_keyring_old + 1) * sizeof(*r->keyring_old));
  r->keyring_old[r->n_keyring_old++] = xstrdup(name);
}

void k2_olds_clear(struct repo *r) {
  for (size_t i = 0; i < r->n_keyring_old; i++)
    free(r->keyring_old[i]);
  free(r->keyring_old);
  r->keyring_old = NULL;
  r->n_keyring_old = 0;
}

/* A new keyring holding everything r holds; then the older ones it
 * supersedes go (a failed delete only leaves a redundant object). */
static int keyring_replace(struct repo *r, char **err) {
  k2_olds_add(r, r->keyring_name);
  r->keyring_generation++;
  if (keys2_keyring_save(r, err) != 0)
    return -1;
  for (size_t i = 0; i < r->n_keyring_old; i++) {
    char *e = NULL;
    if (strcmp(r->keyring_old[i], r->keyring_name) != 0 &&
        repo_delete(r, r->keyring_old[i], &e) != 0) {
      log_warn("unable to delete the superseded keyring '%s': %s", r->keyring_old[i], e);
      free(e);
    }
  }
  k2_olds_clear(r);
  return 0;
}

static const struct repo_tenant *keys2_item_tenant_impl(const struct repo *r, json_t *item) {
  const char *k = json_string_value(json_object_get(item, "tenant_key"));
  unsigned char kid[8];
  if (!k || strlen(k) != 16 || hex_decode(k, kid, 8) != 0)
    return NULL;
  const struct repo_tenant *t = keys2_tenant_by_kid(r, kid);
  /* key rotate --rewrite moved a retired key's data to its successor */
  for (int hops = 0; t && t->retired && hops < 64; hops++) {
    const struct repo_tenant *s = keys2_tenant_successor(r, t);
    if (!s)
      break;
    t = s;
  }
  return t;
}

const struct repo_tenant *keys2_tenant_successor(const struct repo *r,
                                                 const struct repo_tenant *t) {
  for (size_t i = 0; i < r->n_tenants; i++)
    if (r->tenants[i]->has_replaces && memcmp(r->tenants[i]->replaces, t->kid, 8) == 0)
      return r->tenants[i];
  return NULL;
}

/* key rotate --rewrite: a successor for every live tenant key (a new
 * secret, the same chunk-id key, so the blobs keep their ids when they move
 * under it), the successor of each name's current key newest. The retired
 * ones' ids go to retire. */
static int k2_tenants_rewrite_impl(struct repo *r, json_t *retire, char **err) {
  size_t n = r->n_tenants;
  uint64_t gen = r->keyring_generation + 1;
  for (size_t i = 0; i < n; i++) {
    const struct repo_tenant *o = r->tenants[i];
    if (o->shredded || keys2_tenant_successor(r, o))
      continue;
    struct repo_tenant *t = xcalloc(1, sizeof(*t));
    if (RAND_bytes(t->key, 32) != 1 || RAND_bytes(t->kid, 8) != 1 || tenant_derive(r, t) != 0) {
      tenant_free(t);
      *err = xstrdup("unable to make a tenant key (libcrypto)");
      return -1;
    }
    memcpy(t->idk, o->idk, 32);
    t->idk_explicit = 1;
    memcpy(t->replaces, o->kid, 8);
    t->has_replaces = 1;
    t->name = xstrdup(o->name);
    t->created = iso_time(time(NULL));
    t->gen = keys2_tenant_find(r, o->name) == o ? gen : o->gen;
    char id[17];
    hex_encode(o->kid, 8, id);
    json_array_append_new(retire, json_string(id));
    r->tenants = xrealloc(r->tenants, (r->n_tenants + 1) * sizeof(*r->tenants));
    r->tenants[r->n_tenants++] = t;
  }
  return 0;
}

/* key rotate --rewrite, once every pack moved: the replaced keys are
 * destroyed (kept as "retired" entries, as shredded ones are). */
static void k2_tenants_retire_impl(struct repo *r) {
  char *now = iso_time(time(NULL));
  for (size_t i = 0; i < r->n_tenants; i++) {
    struct repo_tenant *t = r->tenants[i];
    if (!t->shredded && keys2_tenant_successor(r, t)) {
      tenant_forget(t, now);
      t->retired = 1;
    }
  }
  free(now);
}

static struct repo_tenant *keys2_tenant_get_impl(struct repo *r, const char *name, int store,
                                                 char **err) {
  struct repo_tenant *t = keys2_tenant_find(r, name);
  if (t && !t->shredded)
    return t;
  if (t) /* a name used again after its tenant was shredded: a new key */
    log_warn("tenant '%s' was shredded on %s; its new data gets a new key", name, t->shredded);
  if (r->format != 2 || r->write_only || !r->crypto) {
    *err = xstrdup("per-tenant keys need a format-2 repository opened with a passphrase");
    return NULL;
  }
  t = xcalloc(1, sizeof(*t));
  if (RAND_bytes(t->key, 32) != 1 || RAND_bytes(t->kid, 8) != 1 || tenant_derive(r, t) != 0) {
    tenant_free(t);
    *err = xstrdup("unable to make a tenant key (libcrypto)");
    return NULL;
  }
  t->name = xstrdup(name);
  t->created = iso_time(time(NULL));
  t->gen = r->keyring_generation + 1;
  r->tenants = xrealloc(r->tenants, (r->n_tenants + 1) * sizeof(*r->tenants));
  r->tenants[r->n_tenants++] = t;
  /* stored (keys2_tenants_flush) before any pack of its data: a pack
   * sealed under a key the keyring does not hold would be unreadable */
  t->unsaved = store;
  log_info("tenant '%s': new tenant key", name);
  return t;
}

static int keys2_tenant_shred_impl(struct repo *r, const char *name, char **err) {
  if (!keys2_tenant_find(r, name)) {
    *err = xasprintf("the repository has no tenant '%s'", name);
    return -1;
  }
  char *now = iso_time(time(NULL));
  for (size_t k = 0; k < r->n_tenants; k++)
    if (strcmp(r->tenants[k]->name, name) == 0 && !r->tenants[k]->shredded)
      tenant_forget(r->tenants[k], now);
  free(now);
  /* every keyring object that may hold the key goes, not only the ones
   * this host read */
  json_t *list;
  if (repo_list(r, "keyring/", &list, err) != 0)
    return -1;
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) k2_olds_add(r, json_string_value(json_object_get(e, "name")));
  json_decref(list);
  k2_olds_add(r, r->keyring_name);
  r->keyring_generation++;
  if (keys2_keyring_save(r, err) != 0)
    return -1;
  int rc = 0;
  for (i = 0; i < r->n_keyring_old; i++) {
    if (strcmp(r->keyring_old[i], r->keyring_name) == 0)
      continue;
    char *de = NULL;
    if (repo_delete(r, r->keyring_old[i], &de) != 0) {
      if (rc == 0)
        *err = xasprintf("the tenant key may still be in keyring object '%s', which could not be "
                         "deleted (%s): run 'engine key shred' again",
                         r->keyring_old[i], de);
      free(de);
      rc = -1;
    }
  }
  k2_olds_clear(r);
  return rc;
}

static json_t *keys2_tenants_json_impl(const struct repo *r) {
  json_t *a = json_array();
  for (size_t i = 0; i < r->n_tenants; i++) {
    const struct repo_tenant *t = r->tenants[i];
    char id[17];
    hex_encode(t->kid, 8, id);
    json_t *o = json_pack("{s:s, s:s, s:s}", "name", t->name, "id", id, "created",
                          t->created ? t->created : "");
    if (t->shredded)
      json_object_set_new(o, t->retired ? "retired" : "shredded", json_string(t->shredded));
    json_array_append_new(a, o);
  }
  return a;
}

int keys2_dk_new_tenant(const struct repo *r, const struct repo_tenant *t, unsigned char dk[32],
                        unsigned char sealed[KEYS2_SEALED_DK_LEN]) {
  if (t->shredded || RAND_bytes(dk, 32) != 1)
    return -1;
  memcpy(sealed, t->kid, 8);
  memset(sealed + 8, 0, 32);
  return repo_seal_key(r->crypto, t->wrap, "packkey", 7, dk, 32, sealed + 40);
}

static json_t *k2_tenants_json_save_impl(const struct repo *r) {
  json_t *tn = json_array();
  for (size_t i = 0; i < r->n_tenants; i++) {
    const struct repo_tenant *t = r->tenants[i];
    char id[17];
    hex_encode(t->kid, 8, id);
    json_t *k = json_pack("{s:s, s:s, s:s, s:I}", "name", t->name, "id", id, "created",
                          t->created ? t->created : "", "generation", (json_int_t)t->gen);
    if (t->shredded)
      json_object_set_new(k, t->retired ? "retired" : "shredded", json_string(t->shredded));
    else
      k2_b64_set(k, "key", t->key, 32);
    if (!t->shredded && t->idk_explicit)
      k2_b64_set(k, "id_key", t->idk, 32);
    if (t->has_replaces) {
      char rk[17];
      hex_encode(t->replaces, 8, rk);
      json_object_set_new(k, "replaces", json_string(rk));
    }
    json_array_append_new(tn, k);
  }
  return tn;
}

static int k2_tenants_rotate_impl(struct repo *r, char **err) {
  size_t n = r->n_tenants;
  for (size_t i = 0; i < n; i++) {
    const struct repo_tenant *o = r->tenants[i];
    if (o->shredded || keys2_tenant_find(r, o->name) != o)
      continue;
    struct repo_tenant *t = xcalloc(1, sizeof(*t));
    if (RAND_bytes(t->key, 32) != 1 || RAND_bytes(t->kid, 8) != 1 || tenant_derive(r, t) != 0) {
      tenant_free(t);
      *err = xstrdup("unable to make a tenant key (libcrypto)");
      return -1;
    }
    t->name = xstrdup(o->name);
    t->created = iso_time(time(NULL));
    t->gen = r->keyring_generation + 1;
    r->tenants = xrealloc(r->tenants, (r->n_tenants + 1) * sizeof(*r->tenants));
    r->tenants[r->n_tenants++] = t;
  }
  return 0;
}

/* A tenant pack's data key: key id (8) || zeros (32) || nonce || AEAD
 * under the tenant's wrapping key (keys2_dk_new_tenant). */
int k2_tenant_dk_open(const struct repo *r, const struct repo_tenant *t,
                      const unsigned char *sealed, unsigned char dk[32]) {
  unsigned char out[KEYS2_SEALED_DK_LEN];
  size_t n = 0;
  int rc = repo_unseal_key(r->crypto, t->wrap, "packkey", 7, sealed + 40, KEYS2_SEALED_DK_LEN - 40,
                           out, &n);
  if (rc == 0 && n == 32)
    memcpy(dk, out, 32);
  OPENSSL_cleanse(out, sizeof(out));
  return rc == 0 && n == 32 ? 0 : -1;
}

int keys2_tenants_flush(struct repo *r, char **err) {
  lock();
  int any = 0, rc = 0;
  for (size_t i = 0; i < r->n_tenants; i++)
    any |= r->tenants[i]->unsaved;
  if (any)
    rc = keyring_replace(r, err);
  for (size_t i = 0; rc == 0 && i < r->n_tenants; i++)
    r->tenants[i]->unsaved = 0;
  unlock();
  return rc;
}

/* ---- the public functions, under tenants_mu ---------------------------- */

void k2_tenants_clear(struct repo *r) {
  lock();
  k2_tenants_clear_impl(r);
  unlock();
}

struct repo_tenant *keys2_tenant_find(const struct repo *r, const char *name) {
  lock();
  struct repo_tenant *v = keys2_tenant_find_impl(r, name);
  unlock();
  return v;
}

struct repo_tenant *keys2_tenant_by_kid(const struct repo *r, const unsigned char *kid) {
  lock();
  struct repo_tenant *v = keys2_tenant_by_kid_impl(r, kid);
  unlock();
  return v;
}

int k2_tenants_merge(struct repo *r, json_t *tn, const char *name, char **err) {
  lock();
  int v = k2_tenants_merge_impl(r, tn, name, err);
  unlock();
  return v;
}

const struct repo_tenant *keys2_item_tenant(const struct repo *r, json_t *item) {
  lock();
  const struct repo_tenant *v = keys2_item_tenant_impl(r, item);
  unlock();
  return v;
}

int k2_tenants_rewrite(struct repo *r, json_t *retire, char **err) {
  lock();
  int v = k2_tenants_rewrite_impl(r, retire, err);
  unlock();
  return v;
}

void k2_tenants_retire(struct repo *r) {
  lock();
  k2_tenants_retire_impl(r);
  unlock();
}

struct repo_tenant *keys2_tenant_get(struct repo *r, const char *name, int store, char **err) {
  lock();
  struct repo_tenant *v = keys2_tenant_get_impl(r, name, store, err);
  unlock();
  return v;
}

int keys2_tenant_shred(struct repo *r, const char *name, char **err) {
  lock();
  int v = keys2_tenant_shred_impl(r, name, err);
  unlock();
  return v;
}

json_t *keys2_tenants_json(const struct repo *r) {
  lock();
  json_t *v = keys2_tenants_json_impl(r);
  unlock();
  return v;
}

json_t *k2_tenants_json_save(const struct repo *r) {
  lock();
  json_t *v = k2_tenants_json_save_impl(r);
  unlock();
  return v;
}

int k2_tenants_rotate(struct repo *r, char **err) {
  lock();
  int v = k2_tenants_rotate_impl(r, err);
  unlock();
  return v;
}
