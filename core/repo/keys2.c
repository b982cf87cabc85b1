/* Format 2's key hierarchy (keys2.h): sealing to the public key, the
 * keyring, writer credentials and pack data keys. */
#include "repo/keys2.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repo/keys.h"
#include "repo/keys2_int.h"
#include "repo/pack.h"
#include "util/log.h"

#define SEALPUB_INFO "engine-v2 sealpub"
#define KEYRING_INFO "engine-v2 keyring"
#define CREDENTIAL_MAGIC "engine-writer-credential"

int k2_hkdf(const unsigned char *ikm, size_t ikm_len, const unsigned char *salt, size_t salt_len,
            const char *info, unsigned char *out, size_t out_len) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
  int ok = c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_CTX_set_hkdf_md(c, EVP_sha256()) == 1 &&
           EVP_PKEY_CTX_set1_hkdf_salt(c, salt, (int)salt_len) == 1 &&
           EVP_PKEY_CTX_set1_hkdf_key(c, ikm, (int)ikm_len) == 1 &&
           EVP_PKEY_CTX_add1_hkdf_info(c, (const unsigned char *)info, (int)strlen(info)) == 1 &&
           EVP_PKEY_derive(c, out, &out_len) == 1;
  EVP_PKEY_CTX_free(c);
  return ok ? 0 : -1;
}

/* X25519(priv, peer) into shared[32]. */
static int x25519(const unsigned char priv[32], const unsigned char peer[32],
                  unsigned char shared[32]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
  EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
  EVP_PKEY_CTX *c = k ? EVP_PKEY_CTX_new(k, NULL) : NULL;
  size_t len = 32;
  int ok = k && p && c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, p) == 1 &&
           EVP_PKEY_derive(c, shared, &len) == 1 && len == 32;
  EVP_PKEY_CTX_free(c);
  EVP_PKEY_free(p);
  EVP_PKEY_free(k);
  return ok ? 0 : -1;
}

static int keypair_new(unsigned char priv[32], unsigned char pub[32]) {
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
  size_t a = 32, b = 32;
  int ok = k && EVP_PKEY_get_raw_private_key(k, priv, &a) == 1 &&
           EVP_PKEY_get_raw_public_key(k, pub, &b) == 1 && a == 32 && b == 32;
  EVP_PKEY_free(k);
  return ok ? 0 : -1;
}

static int pub_of(const unsigned char priv[32], unsigned char pub[32]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
  size_t b = 32;
  int ok = k && EVP_PKEY_get_raw_public_key(k, pub, &b) == 1 && b == 32;
  EVP_PKEY_free(k);
  return ok ? 0 : -1;
}

static void key_id_of(const unsigned char pub[32], unsigned char id[8]) {
  unsigned char h[32];
  SHA256(pub, 32, h);
  memcpy(id, h, 8);
}

/* The AES key of one seal: HKDF(X25519 shared secret, eph_pub || pub). */
static int sealpub_key(const unsigned char shared[32], const unsigned char eph_pub[32],
                       const unsigned char pub[32], unsigned char key[32]) {
  unsigned char salt[64];
  memcpy(salt, eph_pub, 32);
  memcpy(salt + 32, pub, 32);
  return k2_hkdf(shared, 32, salt, sizeof(salt), SEALPUB_INFO, key, 32);
}

int repo_seal_pub(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
                  void *out) {
  if (!r->crypto || r->n_kps == 0)
    return -1;
  const struct repo_keypair *kp = &r->kps[r->cur_kp];
  unsigned char *o = out, eph[32], shared[32], key[32];
  int rc = -1;
  memcpy(o, kp->id, 8);
  if (keypair_new(eph, o + 8) == 0 && x25519(eph, kp->pub, shared) == 0 &&
      sealpub_key(shared, o + 8, kp->pub, key) == 0)
    rc = repo_seal_key(r->crypto, key, aad, aad_len, in, n, o + 40);
  OPENSSL_cleanse(eph, sizeof(eph));
  OPENSSL_cleanse(shared, sizeof(shared));
  OPENSSL_cleanse(key, sizeof(key));
  return rc;
}

int repo_unseal_pub(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
                    void *out, size_t *out_len) {
  const unsigned char *i = in;
  if (!r->crypto || n < REPO_SEALPUB_OVERHEAD)
    return -1;
  const struct repo_keypair *kp = NULL;
  for (size_t k = 0; k < r->n_kps; k++)
    if (memcmp(r->kps[k].id, i, 8) == 0)
      kp = &r->kps[k];
  if (!kp || !kp->has_priv)
    return -2;
  unsigned char shared[32], key[32];
  int rc = -1;
  if (x25519(kp->priv, i + 8, shared) == 0 && sealpub_key(shared, i + 8, kp->pub, key) == 0)
    rc = repo_unseal_key(r->crypto, key, aad, aad_len, i + 40, n - 40, out, out_len);
  OPENSSL_cleanse(shared, sizeof(shared));
  OPENSSL_cleanse(key, sizeof(key));
  return rc;
}

/* ---- key pairs -------------------------------------------------------- */

static struct repo_keypair *kp_add(struct repo *r) {
  r->kps = xrealloc(r->kps, (r->n_kps + 1) * sizeof(*r->kps));
  struct repo_keypair *kp = &r->kps[r->n_kps++];
  memset(kp, 0, sizeof(*kp));
  return kp;
}

static int kp_generate(struct repo *r, char **err) {
  struct repo_keypair *kp = kp_add(r);
  if (keypair_new(kp->priv, kp->pub) != 0) {
    r->n_kps--;
    *err = xstrdup("unable to generate an X25519 key pair (libcrypto)");
    return -1;
  }
  kp->has_priv = 1;
  key_id_of(kp->pub, kp->id);
  kp->created = iso_time(time(NULL));
  r->cur_kp = r->n_kps - 1;
  return 0;
}

static void kps_clear(struct repo *r) {
  for (size_t i = 0; i < r->n_kps; i++) {
    OPENSSL_cleanse(r->kps[i].priv, sizeof(r->kps[i].priv));
    free(r->kps[i].created);
  }
  free(r->kps);
  r->kps = NULL;
  r->n_kps = r->cur_kp = 0;
}

int keys2_init(struct repo *r, char **err) {
  if (!r->crypto) {
    *err = xstrdup("repository format 2 needs encryption (its key hierarchy is what it adds); "
                   "use format 1 for an unencrypted repository");
    return -1;
  }
  if (RAND_bytes(r->master_secret, REPO_KEY_LEN) != 1 ||
      RAND_bytes(r->enc_key, REPO_KEY_LEN) != 1 || RAND_bytes(r->mac_key, REPO_KEY_LEN) != 1 ||
      RAND_bytes((unsigned char *)&r->chunker_seed, sizeof(r->chunker_seed)) != 1) {
    *err = xstrdup("the system random number generator failed");
    return -1;
  }
  r->keyring_generation = 1;
  return kp_generate(r, err);
}

/* ---- the key object's plaintext ----------------------------------------- */

json_t *keys2_master_json(const struct repo *r) {
  char *ms = b64_encode(r->master_secret, REPO_KEY_LEN);
  json_t *m = json_pack("{s:s, s:s}", "repository", r->id, "master_secret", ms);
  OPENSSL_cleanse(ms, strlen(ms));
  free(ms);
  return m;
}

int keys2_master_take(struct repo *r, json_t *m, const char *name, int check_only, char **err) {
  const char *ms = json_string_value(json_object_get(m, "master_secret"));
  unsigned char *b = NULL;
  size_t bl = 0;
  if (!ms || b64_decode(ms, &b, &bl) != 0 || bl != REPO_KEY_LEN) {
    free(b);
    *err = xasprintf("key object '%s' is damaged: the master secret inside is malformed", name);
    return -1;
  }
  if (!check_only)
    memcpy(r->master_secret, b, REPO_KEY_LEN);
  OPENSSL_cleanse(b, bl);
  free(b);
  return 0;
}

/* ---- the keyring -------------------------------------------------------- */

static int keyring_key(const struct repo *r, unsigned char key[32]) {
  return k2_hkdf(r->master_secret, REPO_KEY_LEN, (const unsigned char *)r->id, strlen(r->id),
                 KEYRING_INFO, key, 32);
}

void k2_b64_set(json_t *o, const char *field, const unsigned char *b, size_t n) {
  char *s = b64_encode(b, n);
  json_object_set_new(o, field, json_string(s));
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}

int k2_b64_get(json_t *o, const char *field, unsigned char *out, size_t n) {
  const char *s = json_string_value(json_object_get(o, field));
  unsigned char *b = NULL;
  size_t bl = 0;
  int ok = s && b64_decode(s, &b, &bl) == 0 && bl == n;
  if (ok)
    memcpy(out, b, n);
  if (b) {
    OPENSSL_cleanse(b, bl);
    free(b);
  }
  return ok ? 0 : -1;
}

int keys2_keyring_save(struct repo *r, char **err) {
  char seed[17], cur[17];
  snprintf(seed, sizeof(seed), "%016llx", (unsigned long long)r->chunker_seed);
  hex_encode(r->kps[r->cur_kp].id, 8, cur);
  json_t *o = json_pack("{s:i, s:s, s:I, s:s, s:s, s:o}", "version", 2, "repository", r->id,
                        "generation", (json_int_t)r->keyring_generation, "chunker_seed", seed,
                        "current", cur, "keypairs", json_array());
  k2_b64_set(o, "id_key", r->mac_key, REPO_KEY_LEN);
  k2_b64_set(o, "index_key", r->enc_key, REPO_KEY_LEN);
  for (size_t i = 0; i < r->n_kps; i++) {
    char id[17];
    hex_encode(r->kps[i].id, 8, id);
    json_t *k =
        json_pack("{s:s, s:s}", "id", id, "created", r->kps[i].created ? r->kps[i].created : "");
    k2_b64_set(k, "public", r->kps[i].pub, 32);
    k2_b64_set(k, "private", r->kps[i].priv, 32);
    json_array_append_new(json_object_get(o, "keypairs"), k);
  }
  json_object_set_new(o, "tenants", k2_tenants_json_save(r));
  if (r->rewrite) {
    json_t *rw = json_deep_copy(r->rewrite);
    json_t *ok = json_array();
    for (size_t i = 0; i < r->n_old_index_keys; i++) {
      char *b = b64_encode(r->old_index_keys[i], REPO_KEY_LEN);
      json_array_append_new(ok, json_string(b));
      OPENSSL_cleanse(b, strlen(b));
      free(b);
    }
    json_object_set_new(rw, "old_index_keys", ok);
    json_object_set_new(o, "rewrite", rw);
  }
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  size_t n = strlen(text), sl = repo_sealed_len(r, n);
  unsigned char *sealed = xmalloc(sl), key[32];
  int rc =
      keyring_key(r, key) == 0 && repo_seal_key(r->crypto, key, "keyring", 7, text, n, sealed) == 0
          ? 0
          : -1;
  OPENSSL_cleanse(key, sizeof(key));
  OPENSSL_cleanse(text, n);
  free(text);
  if (rc != 0) {
    free(sealed);
    *err = xstrdup("unable to encrypt the keyring");
    return -1;
  }
  char hex[65];
  sha256_hex(sealed, sl, hex);
  snprintf(r->keyring_name, sizeof(r->keyring_name), "keyring/%s", hex);
  rc = repo_put(r, r->keyring_name, sealed, sl, ENGINE_PUT_NO_OVERWRITE, err);
  free(sealed);
  return rc == 0 ? 0 : -1;
}

static int rewrite_take(struct repo *r, json_t *rw, const char *name, char **err);

/* Parse an opened keyring into r (only when it is whole). */
static int keyring_take(struct repo *r, json_t *o, const char *name, char **err) {
  const char *rid = json_string_value(json_object_get(o, "repository"));
  const char *seed = json_string_value(json_object_get(o, "chunker_seed"));
  const char *cur = json_string_value(json_object_get(o, "current"));
  json_t *kps = json_object_get(o, "keypairs");
  json_t *gen = json_object_get(o, "generation");
  unsigned char idk[32], ixk[32];
  if (!rid || strcmp(rid, r->id) != 0) {
    *err = xasprintf("keyring '%s' belongs to another repository", name);
    return -1;
  }
  if (!seed || strlen(seed) != 16 || strspn(seed, "0123456789abcdef") != 16 || !cur ||
      !json_is_array(kps) || json_array_size(kps) == 0 || !json_is_integer(gen) ||
      k2_b64_get(o, "id_key", idk, 32) != 0 || k2_b64_get(o, "index_key", ixk, 32) != 0) {
    *err = xasprintf("keyring '%s' is damaged: a field is missing or malformed", name);
    return -1;
  }
  kps_clear(r);
  size_t i;
  json_t *k;
  int found = 0;
  json_array_foreach(kps, i, k) {
    struct repo_keypair *kp = kp_add(r);
    unsigned char chk[32];
    if (k2_b64_get(k, "public", kp->pub, 32) != 0 || k2_b64_get(k, "private", kp->priv, 32) != 0 ||
        pub_of(kp->priv, chk) != 0 || memcmp(chk, kp->pub, 32) != 0) {
      kps_clear(r);
      *err = xasprintf("keyring '%s' is damaged: key pair %zu is malformed", name, i);
      return -1;
    }
    kp->has_priv = 1;
    key_id_of(kp->pub, kp->id);
    const char *c = json_string_value(json_object_get(k, "created"));
    kp->created = xstrdup(c ? c : "");
    char id[17];
    hex_encode(kp->id, 8, id);
    if (strcmp(id, cur) == 0) {
      r->cur_kp = r->n_kps - 1;
      found = 1;
    }
  }
  if (!found) {
    kps_clear(r);
    *err = xasprintf("keyring '%s' is damaged: its current key pair %s is not in it", name, cur);
    return -1;
  }
  memcpy(r->mac_key, idk, 32);
  memcpy(r->enc_key, ixk, 32);
  OPENSSL_cleanse(idk, 32);
  OPENSSL_cleanse(ixk, 32);
  r->chunker_seed = strtoull(seed, NULL, 16);
  r->keyring_generation = (uint64_t)json_integer_value(gen);
  snprintf(r->keyring_name, sizeof(r->keyring_name), "%s", name);
  return rewrite_take(r, json_object_get(o, "rewrite"), name, err);
}

static void rewrite_clear(struct repo *r) {
  json_decref(r->rewrite);
  r->rewrite = NULL;
  if (r->old_index_keys)
    OPENSSL_cleanse(r->old_index_keys, r->n_old_index_keys * REPO_KEY_LEN);
  free(r->old_index_keys);
  r->old_index_keys = NULL;
  r->n_old_index_keys = 0;
}

/* A key rotate --rewrite in progress: its state, and the index keys of the
 * objects not sealed again yet. */
static int rewrite_take(struct repo *r, json_t *rw, const char *name, char **err) {
  rewrite_clear(r);
  if (!rw)
    return 0;
  json_t *ok = json_object_get(rw, "old_index_keys");
  if (!json_is_object(rw) || !json_is_array(ok) || !json_is_array(json_object_get(rw, "retire")) ||
      !json_is_array(json_object_get(rw, "old_objects"))) {
    *err = xasprintf("keyring '%s' is damaged: its rewrite state is malformed", name);
    return -1;
  }
  r->old_index_keys = xcalloc(json_array_size(ok) + 1, REPO_KEY_LEN);
  size_t i;
  json_t *v;
  json_array_foreach(ok, i, v) {
    unsigned char *b = NULL;
    size_t bl = 0;
    const char *t = json_string_value(v);
    if (!t || b64_decode(t, &b, &bl) != 0 || bl != REPO_KEY_LEN) {
      free(b);
      rewrite_clear(r);
      *err = xasprintf("keyring '%s' is damaged: an old index key is malformed", name);
      return -1;
    }
    memcpy(r->old_index_keys[r->n_old_index_keys++], b, REPO_KEY_LEN);
    OPENSSL_cleanse(b, bl);
    free(b);
  }
  r->rewrite = json_incref(rw);
  json_object_del(r->rewrite, "old_index_keys");
  return 0;
}

int keys2_keyring_load(struct repo *r, char **err) {
  json_t *list;
  if (repo_list(r, "keyring/", &list, err) != 0)
    return -1;
  unsigned char key[32];
  if (keyring_key(r, key) != 0) {
    json_decref(list);
    *err = xstrdup("key derivation (HKDF) failed");
    return -1;
  }
  json_t *best = NULL;
  char best_name[80] = "", *bad = NULL;
  int64_t best_gen = -1;
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    void *buf = NULL;
    size_t n = 0;
    char *ge = NULL, hex[65];
    json_t *o = NULL;
    if (repo_get(r, name, 0, 0, &buf, &n, &ge) == 0) {
      sha256_hex(buf, n, hex);
      char *plain = xmalloc(n + 1);
      size_t pl = 0;
      if (strcmp(name + 8, hex) == 0 &&
          repo_unseal_key(r->crypto, key, "keyring", 7, buf, n, plain, &pl) == 0) {
        json_error_t je;
        o = json_loadb(plain, pl, 0, &je);
      }
      OPENSSL_cleanse(plain, n + 1);
      free(plain);
      free(buf);
    }
    char *te = NULL;
    if (json_is_object(o) && k2_tenants_merge(r, json_object_get(o, "tenants"), name, &te) != 0) {
      json_decref(o);
      o = NULL;
    }
    if (!json_is_object(o)) {
      free(bad);
      bad = te ? te
               : xasprintf("keyring object '%s' %s", name,
                           ge ? ge : "does not open with the master secret (damaged)");
    } else {
      k2_olds_add(r, name);
      if (json_integer_value(json_object_get(o, "generation")) > best_gen) {
        json_decref(best);
        best = json_incref(o);
        best_gen = json_integer_value(json_object_get(o, "generation"));
        snprintf(best_name, sizeof(best_name), "%s", name);
      }
    }
    json_decref(o);
    free(ge);
  }
  OPENSSL_cleanse(key, sizeof(key));
  json_decref(list);
  int rc = -1;
  if (!best) {
    *err = bad ? xasprintf("no keyring of the repository opens: %s", bad)
               : xstrdup("the repository has no keyring (keyring/ is empty): it cannot be opened");
  } else {
    if (bad)
      log_warn("%s; using '%s'", bad, best_name);
    rc = keyring_take(r, best, best_name, err);
  }
  json_decref(best);
  free(bad);
  return rc;
}

int keys2_rotate(struct repo *r, char new_id[17], char **err) {
  if (r->write_only || r->format != 2) {
    *err = xstrdup("key rotate needs a format-2 repository opened with a passphrase");
    return -1;
  }
  char old[80];
  snprintf(old, sizeof(old), "%s", r->keyring_name);
  if (kp_generate(r, err) != 0)
    return -1;
  if (k2_tenants_rotate(r, err) != 0)
    return -1;
  r->keyring_generation++;
  if (keys2_keyring_save(r, err) != 0)
    return -1;
  hex_encode(r->kps[r->cur_kp].id, 8, new_id);
  /* the new keyring holds everything the older ones did */
  json_t *list;
  if (repo_list(r, "keyring/", &list, err) != 0)
    return -1;
  size_t i;
  json_t *e;
  int rc = 0;
  json_array_foreach(list, i, e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    if (strcmp(name, r->keyring_name) != 0 && repo_delete(r, name, err) != 0) {
      rc = -1;
      break;
    }
  }
  (void)old;
  json_decref(list);
  return rc;
}

json_t *keys2_keypairs_json(const struct repo *r) {
  json_t *a = json_array();
  for (size_t i = 0; i < r->n_kps; i++) {
    char id[17];
    hex_encode(r->kps[i].id, 8, id);
    json_array_append_new(a, json_pack("{s:s, s:s, s:b, s:b}", "id", id, "created",
                                       r->kps[i].created ? r->kps[i].created : "", "current",
                                       i == r->cur_kp, "private", r->kps[i].has_priv));
  }
  return a;
}

/* ---- key rotate --rewrite ------------------------------------------------- */

/* Delete the objects a rewrite's first step superseded (absent ones are
 * fine): the key objects of the old master secret and the old keyrings. */
static int rewrite_delete_old(struct repo *r, char **err) {
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(r->rewrite, "old_objects"), i, v) {
    const char *name = json_string_value(v);
    if (name && strcmp(name, r->keyring_name) != 0 && repo_delete(r, name, err) != 0)
      return -1;
  }
  return 0;
}

int keys2_rewrite_begin(struct repo *r, const char *pass, size_t pass_len, json_t **removed_keys,
                        char **err) {
  *removed_keys = json_array();
  if (r->write_only || r->format != 2) {
    *err = xstrdup("key rotate --rewrite needs a format-2 repository opened with a passphrase");
    return -1;
  }
  if (r->rewrite) /* resumed: its keys are in place */
    return rewrite_delete_old(r, err);
  json_t *old = json_array(), *retire = json_array(), *keys = NULL, *rings = NULL;
  if (repo_list(r, "keys/", &keys, err) != 0 || repo_list(r, "keyring/", &rings, err) != 0) {
    json_decref(keys);
    json_decref(old);
    json_decref(retire);
    return -1;
  }
  size_t i;
  json_t *v;
  json_array_foreach(keys, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    json_array_append_new(old, json_string(name));
    if (strcmp(name + strlen("keys/"), r->key_id) != 0)
      json_array_append_new(*removed_keys, json_string(name + strlen("keys/")));
  }
  json_array_foreach(rings, i, v) json_array_append(old, json_object_get(v, "name"));
  json_decref(keys);
  json_decref(rings);
  for (i = 0; i < r->n_kps; i++) {
    char id[17];
    hex_encode(r->kps[i].id, 8, id);
    json_array_append_new(retire, json_string(id));
  }
  /* new: a key pair, an index key, a master secret, a successor for each
   * tenant key; the id key and the chunker seed stay (blob ids and chunk
   * boundaries are what every tree names) */
  r->old_index_keys = xrealloc(r->old_index_keys, (r->n_old_index_keys + 1) * REPO_KEY_LEN);
  memcpy(r->old_index_keys[r->n_old_index_keys++], r->enc_key, REPO_KEY_LEN);
  if (k2_tenants_rewrite(r, retire, err) != 0 || kp_generate(r, err) != 0 ||
      RAND_bytes(r->enc_key, REPO_KEY_LEN) != 1 ||
      RAND_bytes(r->master_secret, REPO_KEY_LEN) != 1) {
    if (!*err)
      *err = xstrdup("the system random number generator failed");
    json_decref(old);
    json_decref(retire);
    return -1;
  }
  char *now = iso_time(time(NULL));
  r->rewrite = json_pack("{s:s, s:o, s:o}", "started", now, "retire", retire, "old_objects", old);
  free(now);
  r->keyring_generation++;
  /* the new keyring (under the new master secret), then the key object
   * that opens it with this passphrase; only then the old ones go */
  char kid[65];
  if (keys2_keyring_save(r, err) != 0 || repo_key_add(r, pass, pass_len, kid, err) != 0)
    return -1;
  snprintf(r->key_id, sizeof(r->key_id), "%s", kid);
  return rewrite_delete_old(r, err);
}

int keys2_kid_retired(const struct repo *r, const unsigned char kid[8]) {
  char id[17];
  hex_encode(kid, 8, id);
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(r->rewrite, "retire"), i,
                     v) if (json_is_string(v) && strcmp(json_string_value(v), id) == 0) return 1;
  return 0;
}

int keys2_rewrite_finish(struct repo *r, char **err) {
  if (!r->rewrite)
    return 0;
  size_t k = 0;
  for (size_t i = 0; i < r->n_kps; i++) {
    if (keys2_kid_retired(r, r->kps[i].id)) {
      OPENSSL_cleanse(r->kps[i].priv, sizeof(r->kps[i].priv));
      free(r->kps[i].created);
      continue;
    }
    if (i == r->cur_kp)
      r->cur_kp = k;
    r->kps[k++] = r->kps[i];
  }
  r->n_kps = k;
  k2_tenants_retire(r);
  rewrite_clear(r);
  r->keyring_generation++;
  if (keys2_keyring_save(r, err) != 0)
    return -1;
  json_t *list;
  if (repo_list(r, "keyring/", &list, err) != 0)
    return -1;
  size_t i;
  json_t *v;
  int rc = 0;
  json_array_foreach(list, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    if (rc == 0 && strcmp(name, r->keyring_name) != 0 && repo_delete(r, name, err) != 0)
      rc = -1;
  }
  json_decref(list);
  return rc;
}

/* ---- writer credentials --------------------------------------------------- */

int keys2_writer_credential(const struct repo *r, const char *pipeline, char **text, char **err) {
  if (r->format != 2 || r->write_only) {
    *err = xstrdup(r->format != 2
                       ? "write-only credentials need a repository of format 2 (this one is format "
                         "1: create a new repository with 'repository: {format: 2}')"
                       : "this host holds a write-only credential itself");
    return -1;
  }
  char seed[17], id[17];
  snprintf(seed, sizeof(seed), "%016llx", (unsigned long long)r->chunker_seed);
  hex_encode(r->kps[r->cur_kp].id, 8, id);
  char *now = iso_time(time(NULL));
  json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "type", CREDENTIAL_MAGIC, "version",
                        2, "repository", r->id, "pipeline", pipeline ? pipeline : "", "created",
                        now, "key_id", id, "chunker_seed", seed);
  free(now);
  k2_b64_set(o, "public_key", r->kps[r->cur_kp].pub, 32);
  k2_b64_set(o, "id_key", r->mac_key, REPO_KEY_LEN);
  k2_b64_set(o, "index_key", r->enc_key, REPO_KEY_LEN);
  *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(o);
  return 0;
}

int keys2_writer_open(struct repo *r, const char *text, size_t len, const char *where, char **err) {
  json_error_t je;
  json_t *o = json_loadb(text, len, 0, &je);
  const char *type = json_string_value(json_object_get(o, "type"));
  const char *rid = json_string_value(json_object_get(o, "repository"));
  const char *seed = json_string_value(json_object_get(o, "chunker_seed"));
  int rc = -1;
  if (!json_is_object(o) || !type || strcmp(type, CREDENTIAL_MAGIC) != 0) {
    *err = xasprintf("%s is not a writer credential (make one with 'engine key add PIPELINE "
                     "--write-only --out FILE' on a host that holds the passphrase)",
                     where);
  } else if (!rid || strcmp(rid, r->id) != 0) {
    *err = xasprintf("%s is a writer credential of repository %.8s, not of this one (%.8s)", where,
                     rid ? rid : "?", r->id);
  } else if (r->format != 2) {
    *err =
        xasprintf("%s is a writer credential, but the repository is format %d", where, r->format);
  } else {
    struct repo_keypair *kp = kp_add(r);
    unsigned char chk[8];
    char idhex[17];
    if (!seed || strlen(seed) != 16 || strspn(seed, "0123456789abcdef") != 16 ||
        k2_b64_get(o, "public_key", kp->pub, 32) != 0 ||
        k2_b64_get(o, "id_key", r->mac_key, 32) != 0 ||
        k2_b64_get(o, "index_key", r->enc_key, 32) != 0) {
      *err = xasprintf("%s: the writer credential is damaged (a field is missing or malformed)",
                       where);
    } else {
      key_id_of(kp->pub, chk);
      memcpy(kp->id, chk, 8);
      hex_encode(chk, 8, idhex);
      kp->created = xstrdup("");
      r->cur_kp = 0;
      r->chunker_seed = strtoull(seed, NULL, 16);
      r->write_only = 1;
      snprintf(r->key_id, sizeof(r->key_id), "writer-%s", idhex);
      rc = 0;
    }
  }
  json_decref(o);
  return rc;
}

/* ---- pack data keys ------------------------------------------------------- */

/* Open addressing on the pack id's first 8 bytes (uniformly random: a
 * SHA-256), so a restore of a repository with many packs stays O(1) per
 * lookup. cap is a power of two, at most half full. */
struct repo_dk_cache {
  pthread_mutex_t mu;
  struct dk_entry {
    unsigned char pack[32], dk[32];
    const struct repo_tenant *tenant; /* whose key sealed it, or NULL */
    int used;
  } * e;
  size_t n, cap;
};

static size_t dk_slot(const struct repo_dk_cache *c, const unsigned char pack_id[32]) {
  uint64_t h;
  memcpy(&h, pack_id, sizeof(h));
  size_t i = (size_t)h & (c->cap - 1);
  while (c->e[i].used && memcmp(c->e[i].pack, pack_id, 32) != 0)
    i = (i + 1) & (c->cap - 1);
  return i;
}

static void dk_grow(struct repo_dk_cache *c) {
  struct dk_entry *old = c->e;
  size_t old_cap = c->cap;
  c->cap = old_cap ? 2 * old_cap : 64;
  c->e = xcalloc(c->cap, sizeof(*c->e));
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].used)
      c->e[dk_slot(c, old[i].pack)] = old[i];
  if (old) {
    OPENSSL_cleanse(old, old_cap * sizeof(*old));
    free(old);
  }
}

int keys2_dk_new(const struct repo *r, unsigned char dk[32],
                 unsigned char sealed[KEYS2_SEALED_DK_LEN]) {
  if (RAND_bytes(dk, 32) != 1)
    return -1;
  return repo_seal_pub(r, "packkey", 7, dk, 32, sealed);
}

int keys2_dk_open(const struct repo *r, const unsigned char *sealed, unsigned char dk[32]) {
  size_t n = 0;
  unsigned char out[KEYS2_SEALED_DK_LEN];
  int rc = repo_unseal_pub(r, "packkey", 7, sealed, KEYS2_SEALED_DK_LEN, out, &n);
  if (rc == 0 && n == 32)
    memcpy(dk, out, 32);
  OPENSSL_cleanse(out, sizeof(out));
  return rc == 0 && n == 32 ? 0 : rc == -2 ? -2 : -1;
}

void keys2_dk_cache_init(struct repo *r) {
  r->dkc = xcalloc(1, sizeof(*r->dkc));
  pthread_mutex_init(&r->dkc->mu, NULL);
}

int keys2_head_open(const struct repo *r, const unsigned char *head, unsigned char dk[32],
                    const struct repo_tenant **tenant) {
  const struct repo_tenant *t = keys2_tenant_by_kid(r, head);
  *tenant = t;
  if (t)
    return t->shredded ? -3 : k2_tenant_dk_open(r, t, head, dk);
  return keys2_dk_open(r, head, dk);
}

char *keys2_head_problem(const struct repo *r, const char *pack, int rc,
                         const struct repo_tenant *t) {
  switch (rc) {
  case -2:
    return xasprintf("pack %s: its data key is sealed to a key this host does not hold%s", pack,
                     r->write_only ? " (a write-only host cannot read data)" : "");
  case -3:
    return xasprintf("pack %s holds data of tenant '%s', whose key was shredded on %s: no one can "
                     "read it (prune removes it)",
                     pack, t->name, t->shredded);
  case -4:
    return xasprintf("pack %s is too short to hold its data key", pack);
  default:
    return t ? xasprintf("pack %s: its data key (tenant '%s') does not authenticate (damaged)",
                         pack, t->name)
             : xasprintf("pack %s: its data key does not authenticate (damaged)", pack);
  }
}

/* A pack of format 2 starts with its sealed data key: one ranged read of
 * its first KEYS2_SEALED_DK_LEN bytes, once per pack (cached). */
int repo_pack_key_t(struct repo *r, const unsigned char pack_id[32], unsigned char dk[32],
                    const struct repo_tenant **tenant, char **err) {
  struct repo_dk_cache *c = r->dkc;
  pthread_mutex_lock(&c->mu);
  if (c->cap) {
    const struct dk_entry *e = &c->e[dk_slot(c, pack_id)];
    if (e->used) {
      memcpy(dk, e->dk, 32);
      if (tenant)
        *tenant = e->tenant;
      pthread_mutex_unlock(&c->mu);
      return 0;
    }
  }
  pthread_mutex_unlock(&c->mu);
  char name[80], hex[65];
  pack_object_name(pack_id, name);
  hex_encode(pack_id, 32, hex);
  void *head = NULL;
  size_t got = 0;
  if (repo_get(r, name, 0, KEYS2_SEALED_DK_LEN, &head, &got, err) != 0)
    return -1;
  int rc = -1;
  const struct repo_tenant *t = NULL;
  int o = got == KEYS2_SEALED_DK_LEN ? keys2_head_open(r, head, dk, &t) : -4;
  if (o == 0)
    rc = 0;
  else
    *err = keys2_head_problem(r, hex, o, t);
  free(head);
  if (rc == 0) {
    pthread_mutex_lock(&c->mu);
    if (2 * (c->n + 1) > c->cap)
      dk_grow(c);
    struct dk_entry *e = &c->e[dk_slot(c, pack_id)];
    if (!e->used) { /* another thread may have opened it meanwhile */
      memcpy(e->pack, pack_id, 32);
      memcpy(e->dk, dk, 32);
      e->tenant = t;
      e->used = 1;
      c->n++;
    }
    pthread_mutex_unlock(&c->mu);
    if (tenant)
      *tenant = t;
  }
  return rc;
}

int repo_pack_key(struct repo *r, const unsigned char pack_id[32], unsigned char dk[32],
                  char **err) {
  return repo_pack_key_t(r, pack_id, dk, NULL, err);
}

const unsigned char *repo_tenant_idk(const struct repo *r, const struct repo_tenant *t) {
  return t ? t->idk : r->mac_key;
}

void keys2_free(struct repo *r) {
  kps_clear(r);
  rewrite_clear(r);
  k2_tenants_clear(r);
  k2_olds_clear(r);
  OPENSSL_cleanse(r->master_secret, sizeof(r->master_secret));
  if (r->dkc) {
    if (r->dkc->e)
      OPENSSL_cleanse(r->dkc->e, r->dkc->cap * sizeof(*r->dkc->e));
    free(r->dkc->e);
    pthread_mutex_destroy(&r->dkc->mu);
    free(r->dkc);
    r->dkc = NULL;
  }
}
