/* Key objects (keys.h): build, open and check them; add, list and remove
 * them. Several keys/ objects wrap the same master key. */
#include "repo/keys.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#ifdef ENGINE_HAVE_SODIUM
#include <sodium.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repo/keys2.h"
#include "util/log.h"
#include "util/sysinfo.h"

#define KDF_N 32768u
#define KDF_R 8u
#define KDF_P 1u
#define KEY_AAD_V1 "engine-key-v1"
#define KEY_AAD_V2 "engine-key-v2"
/* Format 1 wraps the master keys themselves, format 2 the master secret
 * that opens the keyring (keys2.h). */
#define KEY_AAD(r) ((r)->format >= 2 ? KEY_AAD_V2 : KEY_AAD_V1)

/* scrypt (RFC 7914). Parameters come from key objects, which are untrusted
 * input: N must be a power of two and the memory it takes (128 * r * (N + p
 * + 2) bytes) at most 256 MiB, the bound libcrypto applies. libsodium's
 * implementation is used when engine is built with it: same output, ~35 %
 * faster here (76 vs 116 ms for the defaults), and every command that opens
 * a repository waits for it. */
#define KDF_MAX_MEM (256ull * 1024 * 1024)
static int kdf_params_ok(uint64_t N, uint64_t rr, uint64_t p) {
  return N >= 2 && (N & (N - 1)) == 0 && rr != 0 && p != 0 && rr <= UINT32_MAX && p <= UINT32_MAX &&
         N <= KDF_MAX_MEM / 128 / rr && 128 * rr * (N + p + 2) <= KDF_MAX_MEM;
}

int repo_derive_kek(const char *pass, size_t pass_len, const unsigned char *salt, size_t salt_len,
                    uint64_t N, uint64_t rr, uint64_t p, unsigned char *kek, size_t kek_len) {
  if (!kdf_params_ok(N, rr, p))
    return -1;
#ifdef ENGINE_HAVE_SODIUM
  if (sodium_init() >= 0)
    return crypto_pwhash_scryptsalsa208sha256_ll((const uint8_t *)pass, pass_len, salt, salt_len, N,
                                                 (uint32_t)rr, (uint32_t)p, kek, kek_len) == 0
               ? 0
               : -1;
#endif
  return EVP_PBE_scrypt(pass, pass_len, salt, salt_len, N, rr, p, KDF_MAX_MEM, kek, kek_len) == 1
             ? 0
             : -1;
}

static json_t *master_json(const struct repo *r) {
  if (r->format >= 2)
    return keys2_master_json(r);
  char seed[17];
  snprintf(seed, sizeof(seed), "%016llx", (unsigned long long)r->chunker_seed);
  char *ek = b64_encode(r->enc_key, REPO_KEY_LEN), *mk = b64_encode(r->mac_key, REPO_KEY_LEN);
  json_t *m = json_pack("{s:s, s:s, s:s, s:s}", "repository", r->id, "encryption_key", ek, "id_key",
                        mk, "chunker_seed", seed);
  OPENSSL_cleanse(ek, strlen(ek));
  OPENSSL_cleanse(mk, strlen(mk));
  free(ek);
  free(mk);
  return m;
}

/* Build a keys/ object wrapping the master key under the passphrase. */
int repo_key_make(const struct repo *r, const char *pass, size_t pass_len, char **text_out,
                  char **err) {
  json_t *m = master_json(r);
  char *plain = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(m);
  size_t pl = strlen(plain);
  char user[SYS_NAME_MAX], host[SYS_NAME_MAX], *now = iso_time(time(NULL));
  sys_username(user);
  sys_hostname(host);
  json_t *k =
      json_pack("{s:i, s:s, s:s, s:s, s:s}", "version", r->format ? r->format : 1, "created", now,
                "user", user, "host", host, "encryption", r->crypto ? r->crypto->name : "none");
  free(now);
  int rc = 0;
  if (r->crypto) {
    unsigned char salt[32], kek[64];
    size_t kek_len = r->crypto->crypto->key_len;
    RAND_bytes(salt, sizeof(salt));
    if (kek_len > sizeof(kek) || repo_derive_kek(pass, pass_len, salt, sizeof(salt), KDF_N, KDF_R,
                                                 KDF_P, kek, kek_len) != 0) {
      *err = xstrdup("key derivation (scrypt) failed");
      rc = -1;
    } else {
      size_t sl = r->nonce_len + pl + r->tag_len;
      unsigned char *sealed = xmalloc(sl);
      if (repo_seal_key(r->crypto, kek, KEY_AAD(r), strlen(KEY_AAD(r)), plain, pl, sealed) != 0) {
        *err = xstrdup("unable to encrypt the master key");
        rc = -1;
      } else {
        char *s64 = b64_encode(salt, sizeof(salt)), *d64 = b64_encode(sealed, sl);
        json_object_set_new(k, "kdf",
                            json_pack("{s:s, s:I, s:I, s:I, s:s}", "algorithm", "scrypt", "N",
                                      (json_int_t)KDF_N, "r", (json_int_t)KDF_R, "p",
                                      (json_int_t)KDF_P, "salt", s64));
        json_object_set_new(k, "data", json_string(d64));
        free(s64);
        free(d64);
      }
      free(sealed);
      OPENSSL_cleanse(kek, sizeof(kek));
    }
  } else {
    char *d64 = b64_encode(plain, pl);
    json_object_set_new(k, "kdf", json_pack("{s:s}", "algorithm", "none"));
    json_object_set_new(k, "data", json_string(d64));
    free(d64);
  }
  OPENSSL_cleanse(plain, pl);
  free(plain);
  if (rc == 0)
    *text_out = json_dumps(k, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(k);
  return rc;
}

/* "key object 'keys/ID' is damaged: WHY", malloc'd. */
static char *key_damaged(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *key_damaged(const char *name, const char *fmt, ...) {
  char *why = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&why, fmt, ap) < 0)
    why = NULL;
  va_end(ap);
  char *msg = xasprintf("key object '%s' is damaged: %s", name, why ? why : "(no detail)");
  free(why);
  return msg;
}

/* A key object is named after the SHA-256 of its bytes (docs/FORMAT.md). */
static int key_name_matches(const char *name, const char *text, size_t len) {
  char hex[65];
  sha256_hex(text, len, hex);
  return strncmp(name, "keys/", 5) == 0 && strcmp(name + 5, hex) == 0;
}

/* A key object being opened or checked: the text (untrusted) and the fields
 * every key object has, checked by key_fields. */
struct key_obj {
  struct repo *r;
  const char *name, *text;
  size_t len;
  json_t *k;    /* the parsed object */
  json_t *kdfo; /* k.kdf */
  const char *kdf, *enc;
  unsigned char *blob; /* k.data, decoded */
  size_t blob_len;
};

static int key_fields(struct key_obj *o, char **err) {
  const char *name = o->name;
  json_error_t je;
  o->k = json_loadb(o->text, o->len, 0, &je);
  if (!o->k) {
    *err =
        key_damaged(name, "not valid JSON (%s, at line %d column %d)", je.text, je.line, je.column);
    return -1;
  }
  json_t *k = o->k;
  o->kdfo = json_object_get(k, "kdf");
  o->kdf = json_string_value(json_object_get(o->kdfo, "algorithm"));
  json_t *dataj = json_object_get(k, "data");
  const char *data = json_string_value(dataj);
  o->enc = json_string_value(json_object_get(k, "encryption"));
  const char *want = o->r->crypto ? o->r->crypto->name : "none";
  if (!json_is_object(k)) {
    *err = key_damaged(name, "expected a JSON object");
  } else if (!o->enc) {
    *err = key_damaged(name, "'encryption' is %s, expected a string",
                       json_object_get(k, "encryption") ? "not a string" : "missing");
  } else if (!json_is_object(o->kdfo) || !o->kdf) {
    *err = key_damaged(name, "'kdf' is %s, expected an object with a string 'algorithm'",
                       !o->kdfo                   ? "missing"
                       : !json_is_object(o->kdfo) ? "not an object"
                                                  : "without a string 'algorithm'");
  } else if (!data) {
    *err = key_damaged(name, "'data' is %s, expected a base64 string",
                       dataj ? "not a string" : "missing");
  } else if (b64_decode(data, &o->blob, &o->blob_len) != 0) {
    *err = key_damaged(name, "'data' is not valid base64");
  } else if (strcmp(o->enc, want) != 0) {
    *err = xasprintf("key object '%s' is for encryption '%s' but the pipeline configures '%s'",
                     name, o->enc, want);
  } else {
    return 0;
  }
  return -1;
}

/* The scrypt parameters of k.kdf, checked; 0 or -1 with *err. */
static int key_scrypt_params(struct key_obj *o, uint64_t max_n, uint64_t prm[3],
                             unsigned char **salt, size_t *salt_len, char **err) {
  json_t *Nj = json_object_get(o->kdfo, "N"), *rj = json_object_get(o->kdfo, "r"),
         *pj = json_object_get(o->kdfo, "p");
  json_int_t N = json_integer_value(Nj), rr = json_integer_value(rj), p = json_integer_value(pj);
  const char *s64 = json_string_value(json_object_get(o->kdfo, "salt"));
  if (!json_is_integer(Nj) || !json_is_integer(rj) || !json_is_integer(pj) || N < 2 ||
      (uint64_t)N > max_n || rr < 1 || rr > 64 || p < 1 || p > 16) {
    *err = key_damaged(o->name,
                       "the scrypt parameters are not integers with 2 <= N <= %llu, 1 <= r "
                       "<= 64, 1 <= p <= 16",
                       (unsigned long long)max_n);
    return -1;
  }
  if (!s64 || b64_decode(s64, salt, salt_len) != 0) {
    *err = key_damaged(o->name, "'kdf.salt' is not a base64 string");
    return -1;
  }
  prm[0] = (uint64_t)N;
  prm[1] = (uint64_t)rr;
  prm[2] = (uint64_t)p;
  if (!kdf_params_ok(prm[0], prm[1], prm[2])) {
    *err = key_damaged(o->name, "its scrypt parameters are unusable (N must be a power of two, "
                                "and 128 * r * (N + p + 2) bytes at most 256 MiB)");
    return -1;
  }
  return 0;
}

/* Unwrap the master key with a key derived from the passphrase. 0: *plain
 * (malloc'd, *pl bytes); 1: intact, but the passphrase does not open it;
 * 2: check_only and sound as far as that can tell; -1: damaged (*err). A
 * failed tag on an object whose bytes no longer match its name is damage,
 * not a wrong passphrase. */
static int key_unwrap_scrypt(struct key_obj *o, const char *pass, size_t pass_len, uint64_t max_n,
                             int check_only, char **plain, size_t *pl, char **err) {
  uint64_t prm[3];
  unsigned char *salt = NULL, kek[64];
  size_t salt_len = 0, kek_len = o->r->crypto->crypto->key_len;
  int rc = -1;
  if (key_scrypt_params(o, max_n, prm, &salt, &salt_len, err) != 0)
    goto out;
  int intact = key_name_matches(o->name, o->text, o->len);
  if (check_only) {
    if (intact)
      rc = 2;
    else
      *err = key_damaged(o->name, "its bytes no longer match its name (the SHA-256 of the "
                                  "object), so it was changed or truncated");
    goto out;
  }
  if (kek_len > sizeof(kek) ||
      repo_derive_kek(pass, pass_len, salt, salt_len, prm[0], prm[1], prm[2], kek, kek_len) != 0) {
    *err = key_damaged(o->name, "key derivation failed with its scrypt parameters (N must be a "
                                "power of two)");
    goto out;
  }
  *plain = xmalloc(o->blob_len + 1);
  int ok = repo_unseal_key(o->r->crypto, kek, KEY_AAD(o->r), strlen(KEY_AAD(o->r)), o->blob,
                           o->blob_len, *plain, pl);
  OPENSSL_cleanse(kek, sizeof(kek));
  if (ok == 0) {
    rc = 0;
  } else {
    free(*plain);
    *plain = NULL;
    if (intact)
      rc = 1;
    else
      *err = key_damaged(o->name, "its bytes no longer match its name (the SHA-256 of the "
                                  "object), so it was changed or truncated, and it does not open");
  }
out:
  free(salt);
  return rc;
}

/* The master key, unwrapped as k.kdf says (see key_unwrap_scrypt). */
static int key_unwrap(struct key_obj *o, const char *pass, size_t pass_len, uint64_t max_n,
                      int check_only, char **plain, size_t *pl, char **err) {
  if (strcmp(o->kdf, "none") == 0 && o->r->crypto) {
    /* a master key in the clear in an encrypted repository would open it
     * with any passphrase, under keys whoever wrote the object knows */
    *err = key_damaged(o->name,
                       "its 'kdf' is 'none' (an unwrapped master key), but the repository "
                       "is encrypted with '%s'",
                       o->enc);
    return -1;
  }
  if (strcmp(o->kdf, "none") == 0) {
    *plain = xmalloc(o->blob_len + 1);
    memcpy(*plain, o->blob, o->blob_len);
    *pl = o->blob_len;
    return 0;
  }
  if (strcmp(o->kdf, "scrypt") == 0 && o->r->crypto)
    return key_unwrap_scrypt(o, pass, pass_len, max_n, check_only, plain, pl, err);
  if (strcmp(o->kdf, "scrypt") == 0)
    *err =
        xasprintf("key object '%s' uses scrypt but the pipeline configures no encryption", o->name);
  else
    *err = xasprintf("key object '%s' uses an unsupported key derivation '%s'", o->name, o->kdf);
  return -1;
}

/* The master keys inside a key object: checked, and unless check_only
 * taken into r. */
static int key_master(struct key_obj *o, const char *plain, size_t pl, int check_only, char **err) {
  struct repo *r = o->r;
  json_error_t je;
  json_t *m = json_loadb(plain, pl, 0, &je);
  const char *rid = m ? json_string_value(json_object_get(m, "repository")) : NULL;
  if (r->format >= 2) {
    int rc2;
    if (!rid)
      *err = key_damaged(o->name, "the master secret inside is malformed");
    else if (strcmp(rid, r->id) != 0)
      *err = xasprintf("key object '%s' belongs to repository %s, not %s (the config object was "
                       "replaced?)",
                       o->name, rid, r->id);
    rc2 = rid && strcmp(rid, r->id) == 0 ? keys2_master_take(r, m, o->name, check_only, err) : -1;
    json_decref(m);
    return rc2;
  }
  const char *ek = m ? json_string_value(json_object_get(m, "encryption_key")) : NULL;
  const char *mk = m ? json_string_value(json_object_get(m, "id_key")) : NULL;
  const char *seed = m ? json_string_value(json_object_get(m, "chunker_seed")) : NULL;
  unsigned char *ekb = NULL, *mkb = NULL;
  size_t ekl = 0, mkl = 0;
  int rc = -1;
  if (!rid || !ek || !mk || !seed || strlen(seed) != 16 || strspn(seed, "0123456789abcdef") != 16 ||
      b64_decode(ek, &ekb, &ekl) != 0 || b64_decode(mk, &mkb, &mkl) != 0 || ekl != REPO_KEY_LEN ||
      mkl != REPO_KEY_LEN) {
    *err = key_damaged(o->name, "the master key inside is malformed");
  } else if (strcmp(rid, r->id) != 0) {
    *err = xasprintf(
        "key object '%s' belongs to repository %s, not %s (the config object was replaced?)",
        o->name, rid, r->id);
  } else {
    if (!check_only) {
      memcpy(r->enc_key, ekb, REPO_KEY_LEN);
      memcpy(r->mac_key, mkb, REPO_KEY_LEN);
      r->chunker_seed = strtoull(seed, NULL, 16);
    }
    rc = 0;
  }
  if (ekb) {
    OPENSSL_cleanse(ekb, ekl);
    free(ekb);
  }
  if (mkb) {
    OPENSSL_cleanse(mkb, mkl);
    free(mkb);
  }
  json_decref(m);
  return rc;
}

/* repo_key_object_open, or with check_only repo_key_object_check (keys.h). */
static int key_object(struct repo *r, const char *name, const char *text, size_t len,
                      const char *pass, size_t pass_len, uint64_t max_n, int check_only,
                      char **err) {
  struct key_obj o = {.r = r, .name = name, .text = text, .len = len};
  char *plain = NULL;
  size_t pl = 0;
  int rc = key_fields(&o, err);
  if (rc == 0)
    rc = key_unwrap(&o, pass, pass_len, max_n, check_only, &plain, &pl, err);
  if (rc == 0)
    rc = key_master(&o, plain, pl, check_only, err);
  else if (rc == 2)
    rc = 0;
  if (plain) {
    OPENSSL_cleanse(plain, pl);
    free(plain);
  }
  free(o.blob);
  json_decref(o.k);
  return rc;
}

int repo_key_object_open(struct repo *r, const char *name, const char *text, size_t len,
                         const char *pass, size_t pass_len, uint64_t max_n, char **err) {
  return key_object(r, name, text, len, pass, pass_len, max_n, 0, err);
}

int repo_key_object_check(struct repo *r, const char *name, const char *text, size_t len,
                          char **err) {
  return key_object(r, name, text, len, NULL, 0, REPO_KDF_MAX_N, 1, err);
}

/* Key objects newest first: after key rotate --rewrite was killed between
 * storing the new master secret's key object and deleting the old ones,
 * the same passphrase opens both, and the new one is the one to use. */
struct key_cand {
  const char *name;
  void *buf;
  size_t len;
  char created[40];
  char *read_err;
};

static int cand_cmp(const void *a, const void *b) {
  const struct key_cand *x = a, *y = b;
  int c = strcmp(y->created, x->created);
  return c ? c : strcmp(x->name, y->name);
}

static struct key_cand *key_candidates(struct repo *r, json_t *keys, size_t n) {
  struct key_cand *c = xcalloc(n, sizeof(*c));
  for (size_t i = 0; i < n; i++) {
    c[i].name = json_string_value(json_object_get(json_array_get(keys, i), "name"));
    char *e = NULL;
    if (repo_get(r, c[i].name, 0, 0, &c[i].buf, &c[i].len, &e) != 0) {
      c[i].read_err =
          xasprintf("key object '%s' cannot be read: %s", c[i].name, e ? e : "unknown error");
      free(e);
      continue;
    }
    json_error_t je;
    json_t *k = json_loadb(c[i].buf, c[i].len, 0, &je);
    const char *cr = json_string_value(json_object_get(k, "created"));
    snprintf(c[i].created, sizeof(c[i].created), "%s", cr ? cr : "");
    json_decref(k);
  }
  qsort(c, n, sizeof(*c), cand_cmp);
  return c;
}

/* Try every key object until one opens (keys.h), newest first; with format
 * 2 one whose master secret opens a keyring. Once one opens, the others
 * are only checked (no key derivation), so a damaged one is reported
 * whatever the order of their names. */
int repo_keys_open(struct repo *r, const char *pass, size_t pass_len, char **err) {
  json_t *keys;
  if (repo_list(r, "keys/", &keys, err) != 0)
    return -1;
  size_t n = json_array_size(keys);
  if (n == 0) {
    json_decref(keys);
    *err = xstrdup("the repository has no keys (keys/ is empty): it cannot be opened");
    return -1;
  }
  int rc = -1;
  size_t wrong = 0, bad = 0;
  char *bad_msgs = NULL, *ring_err = NULL; /* "; "-joined */
  struct key_cand *c = key_candidates(r, keys, n);
  for (size_t i = 0; i < n; i++) {
    const char *name = c[i].name;
    char *e = c[i].read_err;
    int k = -1;
    if (!e)
      k = rc == 0 ? repo_key_object_check(r, name, c[i].buf, c[i].len, &e)
                  : repo_key_object_open(r, name, c[i].buf, c[i].len, pass, pass_len,
                                         REPO_KDF_MAX_N, &e);
    free(c[i].buf);
    if (k == 0 && rc != 0 && r->format >= 2) {
      /* its master secret must open a keyring too */
      char *ke = NULL;
      if (keys2_keyring_load(r, &ke) != 0) {
        if (!ring_err)
          ring_err = ke;
        else
          free(ke);
        free(e);
        continue;
      }
    }
    if (k == 0 && rc == 0) {
      /* checked: sound */
    } else if (k == 0) {
      rc = 0;
      snprintf(r->key_id, sizeof(r->key_id), "%s", name + 5);
    } else if (k == 1) {
      wrong++;
    } else {
      bad++;
      char *joined = bad_msgs ? xasprintf("%s; %s", bad_msgs, e) : xstrdup(e);
      free(bad_msgs);
      bad_msgs = joined;
    }
    free(e);
  }
  free(c);
  json_decref(keys);
  if (rc != 0 && ring_err) {
    free(bad_msgs);
    *err = ring_err;
    return -1;
  }
  free(ring_err);
  if (rc == 0) {
    if (bad_msgs)
      log_warn("%s; the repository was opened with key %.8s", bad_msgs, r->key_id);
  } else if (bad == 0) {
    *err = xasprintf(
        "wrong passphrase or key file: none of the repository's %zu key(s) can be opened with it",
        n);
  } else if (wrong == 0) {
    *err = xasprintf("no key of the repository can be opened: %s", bad_msgs);
  } else {
    *err = xasprintf("no key of the repository can be opened: %s; the passphrase does not open "
                     "the other %zu key(s), which are intact (wrong passphrase or key file, "
                     "unless it is the passphrase of a damaged key)",
                     bad_msgs, wrong);
  }
  free(bad_msgs);
  return rc;
}

int repo_key_add(struct repo *r, const char *pass, size_t pass_len, char id_out[65], char **err) {
  if (r->crypto && (!pass || pass_len == 0)) {
    *err = xstrdup("the new passphrase is empty");
    return -1;
  }
  char *text = NULL;
  if (repo_key_make(r, pass, pass_len, &text, err) != 0)
    return -1;
  char name[80];
  sha256_hex(text, strlen(text), id_out);
  snprintf(name, sizeof(name), "keys/%s", id_out);
  int rc = repo_put(r, name, text, strlen(text), ENGINE_PUT_NO_OVERWRITE, err);
  free(text);
  return rc == 0 ? 0 : -1;
}

int repo_key_list(struct repo *r, json_t **out, char **err) {
  json_t *names;
  if (repo_list(r, "keys/", &names, err) != 0)
    return -1;
  json_t *arr = json_array();
  size_t i;
  json_t *o;
  json_array_foreach(names, i, o) {
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *id = name + strlen("keys/");
    void *buf;
    size_t len;
    char *e = NULL;
    json_t *k = NULL;
    if (repo_get(r, name, 0, 0, &buf, &len, &e) == 0) {
      json_error_t je;
      k = json_loadb(buf, len, 0, &je);
      free(buf);
    } else {
      log_warn("%s", e);
      free(e);
    }
    json_t *entry = json_pack("{s:s, s:b}", "id", id, "current", strcmp(id, r->key_id) == 0);
    if (k) {
      const char *fields[] = {"created", "user", "host"};
      for (size_t f = 0; f < 3; f++)
        if (json_is_string(json_object_get(k, fields[f])))
          json_object_set(entry, fields[f], json_object_get(k, fields[f]));
      json_t *kdf = json_object_get(json_object_get(k, "kdf"), "algorithm");
      if (kdf)
        json_object_set(entry, "kdf", kdf);
      json_decref(k);
    }
    json_array_append_new(arr, entry);
  }
  json_decref(names);
  *out = arr;
  return 0;
}

int repo_key_remove(struct repo *r, const char *id_prefix, int allow_current, char **err) {
  json_t *names;
  if (repo_list(r, "keys/", &names, err) != 0)
    return -1;
  size_t n = json_array_size(names), matches = 0;
  const char *match = NULL;
  for (size_t i = 0; i < n; i++) {
    const char *name = json_string_value(json_object_get(json_array_get(names, i), "name"));
    if (strncmp(name + 5, id_prefix, strlen(id_prefix)) == 0) {
      matches++;
      match = name;
    }
  }
  int rc = -1;
  if (strlen(id_prefix) < 4)
    *err = xasprintf("key id '%s' is too short: give at least 4 hex digits", id_prefix);
  else if (matches == 0)
    *err = xasprintf("no key '%s' in the repository", id_prefix);
  else if (matches > 1)
    *err = xasprintf("key id prefix '%s' is ambiguous (%zu keys match)", id_prefix, matches);
  else if (n <= 1)
    *err = xstrdup(
        "refusing to remove the repository's last key: the repository could never be opened again");
  else if (!allow_current && strcmp(match + 5, r->key_id) == 0)
    *err = xasprintf(
        "refusing to remove key %.8s: it is the key this command opened the repository with; open "
        "the repository with another key to remove it (or use 'engine key passwd')",
        r->key_id);
  else {
    rc = repo_delete(r, match, err);
  }
  json_decref(names);
  return rc;
}
