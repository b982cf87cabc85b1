/* Repository open/initialise, keys, sealing and object I/O over the sinks.
 * The byte formats are documented in docs/FORMAT.md. */
#include "repo/repo.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#ifdef ENGINE_HAVE_SODIUM
#include <sodium.h>
#endif
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "repo/index.h"
#include "stage/compress.h"
#include "util/log.h"
#include "util/sysinfo.h"

#define KDF_N 32768u
#define KDF_R 8u
#define KDF_P 1u
#define KEY_AAD "engine-key-v1"

static const char *sink_name(const struct repo_sink *s) {
  return s->pi->name;
}

static const char *sink_where(const struct repo_sink *s) {
  return s->pi->plugin->sink->describe(s->pi->inst);
}

static char *sink_error(const struct repo_sink *s, const char *what, const char *name) {
  return xasprintf("sink '%s' (%s): %s '%s': %s", sink_name(s), sink_where(s), what, name,
                   host_last_error(s->pi->host)[0] ? host_last_error(s->pi->host) : "failed");
}

int repo_put(struct repo *r, const char *name, const void *buf, size_t len, unsigned flags,
             char **err) {
  int ok = 0;
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    if (s->failed)
      continue;
    host_clear_error(s->pi->host);
    int rc = s->pi->plugin->sink->put(s->pi->inst, name, buf, len, flags);
    if (rc == ENGINE_OK) {
      ok++;
      continue;
    }
    char *msg = rc == ENGINE_EXISTS
                    ? xasprintf("sink '%s': object '%s' already exists", sink_name(s), name)
                    : sink_error(s, "unable to write", name);
    if (s->required || rc == ENGINE_EXISTS) {
      *err = msg;
      return rc == ENGINE_EXISTS ? ENGINE_EXISTS : -1;
    }
    /* concurrent puts may fail on the same sink: the first one warns */
    if (atomic_exchange(&s->failed, 1) == 0)
      log_warn("%s; sink '%s' is not required, it will miss this snapshot", msg, sink_name(s));
    free(msg);
  }
  if (!ok) {
    *err = xasprintf("unable to write '%s': no sink accepted it", name);
    return -1;
  }
  return 0;
}

int repo_get(struct repo *r, const char *name, uint64_t off, uint64_t len, void **buf, size_t *n,
             char **err) {
  char *first_err = NULL;
  int not_found = 0;
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    if (s->failed)
      continue;
    host_clear_error(s->pi->host);
    int rc = s->pi->plugin->sink->get(s->pi->inst, name, off, len, buf, n);
    if (rc == ENGINE_OK) {
      if (i > 0 && first_err)
        log_warn("%s; read it from sink '%s' instead", first_err, sink_name(s));
      free(first_err);
      return 0;
    }
    if (rc == ENGINE_NOT_FOUND)
      not_found++;
    if (!first_err)
      first_err = rc == ENGINE_NOT_FOUND ? xasprintf("sink '%s' (%s): object '%s' not found",
                                                     sink_name(s), sink_where(s), name)
                                         : sink_error(s, "unable to read", name);
  }
  *err = first_err ? first_err : xasprintf("unable to read '%s': no sink configured", name);
  return not_found == (int)r->n_sinks ? ENGINE_NOT_FOUND : -1;
}

int repo_get_stream(struct repo *r, const char *name, uint64_t off, uint64_t len,
                    int (*on_data)(void *ud, const void *buf, size_t n), void *ud, char **err) {
  char *first_err = NULL;
  int not_found = 0, tried = 0;
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    if (s->failed)
      continue;
    if (tried++)
      on_data(ud, NULL, 0); /* the next sink starts from the beginning */
    const struct engine_sink_ops *ops = s->pi->plugin->sink;
    host_clear_error(s->pi->host);
    int rc;
    if (ops->struct_size >=
            offsetof(struct engine_sink_ops, get_stream) + sizeof(ops->get_stream) &&
        ops->get_stream) {
      rc = ops->get_stream(s->pi->inst, name, off, len, on_data, ud);
    } else {
      void *buf = NULL;
      size_t n = 0;
      rc = ops->get(s->pi->inst, name, off, len, &buf, &n);
      if (rc == ENGINE_OK && on_data(ud, buf, n) != 0)
        rc = ENGINE_ERROR;
      free(buf);
    }
    if (rc == ENGINE_OK) {
      if (i > 0 && first_err)
        log_warn("%s; read it from sink '%s' instead", first_err, sink_name(s));
      free(first_err);
      return 0;
    }
    if (rc == ENGINE_NOT_FOUND)
      not_found++;
    if (!first_err)
      first_err = rc == ENGINE_NOT_FOUND ? xasprintf("sink '%s' (%s): object '%s' not found",
                                                     sink_name(s), sink_where(s), name)
                                         : sink_error(s, "unable to read", name);
  }
  *err = first_err ? first_err : xasprintf("unable to read '%s': no sink configured", name);
  return not_found == (int)r->n_sinks ? ENGINE_NOT_FOUND : -1;
}

int repo_delete(struct repo *r, const char *name, char **err) {
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    if (s->failed)
      continue;
    host_clear_error(s->pi->host);
    int rc = s->pi->plugin->sink->del(s->pi->inst, name);
    if (rc != ENGINE_OK && rc != ENGINE_NOT_FOUND) {
      *err = sink_error(s, "unable to delete", name);
      return -1;
    }
  }
  return 0;
}

int repo_delete_many(struct repo *r, const char *const *names, size_t n, char **err) {
  for (size_t i = 0; i < r->n_sinks; i++) {
    struct repo_sink *s = &r->sinks[i];
    if (s->failed)
      continue;
    const struct engine_sink_ops *ops = s->pi->plugin->sink;
    int batch =
        ops->struct_size >= offsetof(struct engine_sink_ops, del_many) + sizeof(ops->del_many) &&
        ops->del_many != NULL;
    for (size_t k = 0; k < n;) {
      size_t m = batch ? (n - k > 1000 ? 1000 : n - k) : 1; /* S3 allows 1000 keys per request */
      host_clear_error(s->pi->host);
      int rc = batch ? ops->del_many(s->pi->inst, names + k, m) : ops->del(s->pi->inst, names[k]);
      if (rc != ENGINE_OK && rc != ENGINE_NOT_FOUND) {
        *err =
            batch && m > 1
                ? xasprintf("sink '%s' (%s): unable to delete %zu objects from '%s' on: %s",
                            sink_name(s), sink_where(s), m, names[k], host_last_error(s->pi->host))
                : sink_error(s, "unable to delete", names[k]);
        return -1;
      }
      k += m;
    }
  }
  return 0;
}

struct list_ctx {
  json_t *arr;
};

static int list_cb(void *ud, const char *name, uint64_t size) {
  struct list_ctx *c = ud;
  json_t *o = json_pack("{s:s, s:I}", "name", name, "size", (json_int_t)size);
  json_array_append_new(c->arr, o);
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  return strcmp(json_string_value(json_object_get(x, "name")),
                json_string_value(json_object_get(y, "name")));
}

static void sort_listing(json_t *arr) {
  size_t n = json_array_size(arr);
  json_t **v = xcalloc(n, sizeof(*v));
  for (size_t i = 0; i < n; i++)
    v[i] = json_incref(json_array_get(arr, i));
  qsort(v, n, sizeof(*v), cmp_names);
  json_array_clear(arr);
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, v[i]);
  free(v);
}

static int sink_list(struct repo_sink *s, const char *prefix, json_t **out, char **err) {
  struct list_ctx c = {json_array()};
  host_clear_error(s->pi->host);
  if (s->pi->plugin->sink->list(s->pi->inst, prefix, list_cb, &c) != ENGINE_OK) {
    json_decref(c.arr);
    *err = sink_error(s, "unable to list", prefix);
    return -1;
  }
  sort_listing(c.arr);
  *out = c.arr;
  return 0;
}

int repo_list(struct repo *r, const char *prefix, json_t **out, char **err) {
  char *first_err = NULL;
  for (size_t i = 0; i < r->n_sinks; i++) {
    char *e = NULL;
    if (r->sinks[i].failed)
      continue;
    if (sink_list(&r->sinks[i], prefix, out, &e) == 0) {
      if (first_err) {
        log_warn("%s; listed sink '%s' instead", first_err, sink_name(&r->sinks[i]));
        free(first_err);
      }
      return 0;
    }
    if (!first_err)
      first_err = e;
    else
      free(e);
  }
  *err = first_err;
  return -1;
}

/* ---- sealing ---------------------------------------------------------- */

size_t repo_sealed_len(const struct repo *r, size_t plain_len) {
  return r->crypto ? r->nonce_len + plain_len + r->tag_len : plain_len;
}

static int seal_with(const struct engine_plugin *crypto, const unsigned char *key, const void *aad,
                     size_t aad_len, const void *in, size_t n, void *out) {
  const struct engine_crypto_ops *c = crypto->crypto;
  unsigned char *o = out;
  if (RAND_bytes(o, (int)c->nonce_len) != 1)
    return -1;
  return c->seal(key, o, aad, aad_len, in, n, o + c->nonce_len) == ENGINE_OK ? 0 : -1;
}

static int unseal_with(const struct engine_plugin *crypto, const unsigned char *key,
                       const void *aad, size_t aad_len, const void *in, size_t n, void *out,
                       size_t *out_len) {
  const struct engine_crypto_ops *c = crypto->crypto;
  const unsigned char *i = in;
  if (n < c->nonce_len + c->tag_len)
    return -1;
  if (c->open(key, i, aad, aad_len, i + c->nonce_len, n - c->nonce_len, out) != ENGINE_OK)
    return -1;
  *out_len = n - c->nonce_len - c->tag_len;
  return 0;
}

int repo_seal(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
              void *out) {
  if (!r->crypto) {
    memcpy(out, in, n);
    return 0;
  }
  return seal_with(r->crypto, r->enc_key, aad, aad_len, in, n, out);
}

int repo_unseal(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
                void *out, size_t *out_len) {
  if (!r->crypto) {
    memcpy(out, in, n);
    *out_len = n;
    return 0;
  }
  return unseal_with(r->crypto, r->enc_key, aad, aad_len, in, n, out, out_len);
}

void repo_blob_id(const struct repo *r, const void *data, size_t n, unsigned char id[32]) {
  unsigned int len = 32;
  HMAC(EVP_sha256(), r->mac_key, REPO_KEY_LEN, data, n, id, &len);
}

static void blob_aad(const unsigned char id[32], enum blob_type type, unsigned char aad[33]) {
  memcpy(aad, id, 32);
  aad[32] = (unsigned char)type;
}

int repo_blob_compress(const struct repo *r, const void *data, size_t n, const void **plain,
                       size_t *plain_len) {
  return compress_encode_scratch(r->compress_algo, r->compress_level, data, n, plain, plain_len);
}

int repo_blob_seal(const struct repo *r, const unsigned char id[32], enum blob_type type,
                   const void *plain, size_t plain_len, void *out) {
  unsigned char aad[33];
  blob_aad(id, type, aad);
  return repo_seal(r, aad, sizeof(aad), plain, plain_len, out);
}

int repo_blob_encode(const struct repo *r, const unsigned char id[32], enum blob_type type,
                     const void *data, size_t n, void **out, size_t *out_len) {
  const void *plain;
  size_t plain_len;
  if (repo_blob_compress(r, data, n, &plain, &plain_len) != 0)
    return -1;
  size_t sl = repo_sealed_len(r, plain_len);
  void *sealed = xmalloc(sl);
  int rc = repo_blob_seal(r, id, type, plain, plain_len, sealed);
  if (rc != 0) {
    free(sealed);
    return -1;
  }
  *out = sealed;
  *out_len = sl;
  return 0;
}

int repo_blob_decode(const struct repo *r, const unsigned char id[32], enum blob_type type,
                     const void *enc, size_t enc_len, void **out, size_t *out_len, char **err) {
  char hex[65];
  hex_encode(id, 32, hex);
  unsigned char aad[33];
  blob_aad(id, type, aad);
  void *plain = xmalloc(enc_len ? enc_len : 1);
  size_t plain_len;
  if (repo_unseal(r, aad, sizeof(aad), enc, enc_len, plain, &plain_len) != 0) {
    free(plain);
    *err = xasprintf("blob %s: authentication failed (data corrupted or tampered with)", hex);
    return -1;
  }
  const char *cerr = NULL;
  void *raw;
  size_t raw_len;
  int trusted = r->trust_aead_ids && r->crypto;
  int rc =
      compress_decode_owned(plain, plain_len, REPO_MAX_BLOB,
                            trusted ? COMPRESS_DECODE_AUTHENTICATED : 0, &raw, &raw_len, &cerr);
  if (rc != 0) {
    *err = xasprintf("blob %s: unable to decompress: %s", hex, cerr ? cerr : "corrupt data");
    return -1;
  }
  unsigned char check[32];
  if (!trusted)
    repo_blob_id(r, raw, raw_len, check);
  else
    memcpy(check, id, 32);
  if (memcmp(check, id, 32) != 0) {
    free(raw);
    *err = xasprintf("blob %s: content does not match its id", hex);
    return -1;
  }
  *out = raw;
  *out_len = raw_len;
  return 0;
}

/* ---- sealed JSON objects ---------------------------------------------- */

/* "index" objects live under index/, "snapshot" objects under snapshots/. */
static void object_name(const char *kind, const char *id_hex, char name[128]) {
  snprintf(name, 128, "%s%s/%s", kind, strcmp(kind, "index") == 0 ? "" : "s", id_hex);
}

int repo_save_json(struct repo *r, const char *kind, json_t *obj, char id_hex[65], char **err) {
  char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
  if (!text) {
    *err = xasprintf("unable to serialise %s", kind);
    return -1;
  }
  size_t n = strlen(text);
  int rc = repo_save_text(r, kind, text, n, id_hex, err);
  OPENSSL_cleanse(text, n);
  free(text);
  return rc;
}

int repo_save_text(struct repo *r, const char *kind, const char *text, size_t n, char id_hex[65],
                   char **err) {
  size_t sl = repo_sealed_len(r, n);
  unsigned char *sealed = xmalloc(sl);
  int rc = repo_seal(r, kind, strlen(kind), text, n, sealed);
  if (rc != 0) {
    free(sealed);
    *err = xasprintf("unable to encrypt %s", kind);
    return -1;
  }
  sha256_hex(sealed, sl, id_hex);
  char name[128];
  object_name(kind, id_hex, name);
  rc = repo_put(r, name, sealed, sl, ENGINE_PUT_NO_OVERWRITE, err);
  free(sealed);
  if (rc == ENGINE_EXISTS) { /* same content, same name: already durable */
    free(*err);
    *err = NULL;
    return 0;
  }
  return rc;
}

int repo_load_json(struct repo *r, const char *kind, const char *id_hex, json_t **out, char **err) {
  char name[128];
  object_name(kind, id_hex, name);
  void *buf;
  size_t n;
  int rc = repo_get(r, name, 0, 0, &buf, &n, err);
  if (rc != 0)
    return rc;
  char check[65];
  sha256_hex(buf, n, check);
  if (strcmp(check, id_hex) != 0) {
    free(buf);
    *err = xasprintf("%s '%s' is corrupted: its content hash is %s", kind, name, check);
    return -1;
  }
  char *plain = xmalloc(n + 1);
  size_t pl;
  if (repo_unseal(r, kind, strlen(kind), buf, n, plain, &pl) != 0) {
    free(buf);
    free(plain);
    *err = xasprintf("%s '%s': authentication failed (wrong key or tampered object)", kind, name);
    return -1;
  }
  free(buf);
  json_error_t je;
  *out = json_loadb(plain, pl, 0, &je);
  OPENSSL_cleanse(plain, pl);
  free(plain);
  if (!*out) {
    *err = xasprintf("%s '%s': invalid JSON: %s", kind, name, je.text);
    return -1;
  }
  return 0;
}

int repo_read_blob(struct repo *r, const unsigned char id[32], enum blob_type type, void **out,
                   size_t *n, char **err) {
  struct index_entry e;
  char hex[65];
  hex_encode(id, 32, hex);
  if (!index_get(r->index, id, &e) || e.pack == UINT32_MAX) {
    *err = xasprintf("blob %s is not in the index (missing data)", hex);
    return -1;
  }
  char pack_hex[65], name[128];
  hex_encode(r->index->packs[e.pack], 32, pack_hex);
  snprintf(name, sizeof(name), "data/%.2s/%s", pack_hex, pack_hex);
  void *enc;
  size_t enc_len;
  if (repo_get(r, name, e.offset, e.length, &enc, &enc_len, err) != 0)
    return -1;
  if (enc_len != e.length) {
    free(enc);
    *err = xasprintf("pack %s: short read of blob %s", pack_hex, hex);
    return -1;
  }
  char *derr = NULL;
  int rc = repo_blob_decode(r, id, type, enc, enc_len, out, n, &derr);
  free(enc);
  if (rc != 0) {
    *err = xasprintf("pack %s: %s", pack_hex, derr);
    free(derr);
  }
  return rc;
}

/* ---- keys ------------------------------------------------------------- */

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
      json_pack("{s:i, s:s, s:s, s:s, s:s}", "version", REPO_FORMAT_VERSION, "created", now, "user",
                user, "host", host, "encryption", r->crypto ? r->crypto->name : "none");
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
      if (seal_with(r->crypto, kek, KEY_AAD, strlen(KEY_AAD), plain, pl, sealed) != 0) {
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

/* repo_key_object_open, or with check_only repo_key_object_check (see
 * repo.h). A failed tag on an object whose bytes no longer match its name is
 * damage, not a wrong passphrase. */
static int key_object(struct repo *r, const char *name, const char *text, size_t len,
                      const char *pass, size_t pass_len, uint64_t max_n, int check_only,
                      char **err) {
  json_error_t je;
  json_t *k = json_loadb(text, len, 0, &je);
  if (!k) {
    *err =
        key_damaged(name, "not valid JSON (%s, at line %d column %d)", je.text, je.line, je.column);
    return -1;
  }
  int rc = -1;
  json_t *kdfo = json_object_get(k, "kdf");
  const char *kdf = json_string_value(json_object_get(kdfo, "algorithm"));
  json_t *dataj = json_object_get(k, "data");
  const char *data = json_string_value(dataj);
  const char *enc = json_string_value(json_object_get(k, "encryption"));
  unsigned char *blob = NULL, *salt = NULL;
  size_t blob_len = 0, salt_len = 0;
  char *plain = NULL;
  size_t pl = 0;
  if (!json_is_object(k)) {
    *err = key_damaged(name, "expected a JSON object");
    goto out;
  }
  if (!enc) {
    *err = key_damaged(name, "'encryption' is %s, expected a string",
                       json_object_get(k, "encryption") ? "not a string" : "missing");
    goto out;
  }
  if (!json_is_object(kdfo) || !kdf) {
    *err = key_damaged(name, "'kdf' is %s, expected an object with a string 'algorithm'",
                       !kdfo                   ? "missing"
                       : !json_is_object(kdfo) ? "not an object"
                                               : "without a string 'algorithm'");
    goto out;
  }
  if (!data) {
    *err = key_damaged(name, "'data' is %s, expected a base64 string",
                       dataj ? "not a string" : "missing");
    goto out;
  }
  if (b64_decode(data, &blob, &blob_len) != 0) {
    *err = key_damaged(name, "'data' is not valid base64");
    goto out;
  }
  if (strcmp(enc, r->crypto ? r->crypto->name : "none") != 0) {
    *err = xasprintf("key object '%s' is for encryption '%s' but the pipeline configures '%s'",
                     name, enc, r->crypto ? r->crypto->name : "none");
    goto out;
  }
  if (strcmp(kdf, "none") == 0 && r->crypto) {
    /* a master key in the clear in an encrypted repository would open it
     * with any passphrase, under keys whoever wrote the object knows */
    *err = key_damaged(name,
                       "its 'kdf' is 'none' (an unwrapped master key), but the repository "
                       "is encrypted with '%s'",
                       enc);
    goto out;
  } else if (strcmp(kdf, "none") == 0) {
    plain = xmalloc(blob_len + 1);
    memcpy(plain, blob, blob_len);
    pl = blob_len;
  } else if (strcmp(kdf, "scrypt") == 0 && r->crypto) {
    json_t *Nj = json_object_get(kdfo, "N"), *rj = json_object_get(kdfo, "r"),
           *pj = json_object_get(kdfo, "p");
    json_int_t N = json_integer_value(Nj), rr = json_integer_value(rj), p = json_integer_value(pj);
    const char *s64 = json_string_value(json_object_get(kdfo, "salt"));
    unsigned char kek[64];
    size_t kek_len = r->crypto->crypto->key_len;
    if (!json_is_integer(Nj) || !json_is_integer(rj) || !json_is_integer(pj) || N < 2 ||
        (uint64_t)N > max_n || rr < 1 || rr > 64 || p < 1 || p > 16) {
      *err = key_damaged(name,
                         "the scrypt parameters are not integers with 2 <= N <= %llu, 1 <= r "
                         "<= 64, 1 <= p <= 16",
                         (unsigned long long)max_n);
      goto out;
    }
    if (!s64 || b64_decode(s64, &salt, &salt_len) != 0) {
      *err = key_damaged(name, "'kdf.salt' is not a base64 string");
      goto out;
    }
    if (!kdf_params_ok((uint64_t)N, (uint64_t)rr, (uint64_t)p)) {
      *err = key_damaged(name, "its scrypt parameters are unusable (N must be a power of two, and "
                               "128 * r * (N + p + 2) bytes at most 256 MiB)");
      goto out;
    }
    if (check_only) {
      /* sound unless its bytes no longer match its name */
      if (key_name_matches(name, text, len))
        rc = 0;
      else
        *err = key_damaged(name, "its bytes no longer match its name (the SHA-256 of the "
                                 "object), so it was changed or truncated");
      goto out;
    }
    if (kek_len > sizeof(kek) || repo_derive_kek(pass, pass_len, salt, salt_len, (uint64_t)N,
                                                 (uint64_t)rr, (uint64_t)p, kek, kek_len) != 0) {
      *err = key_damaged(name, "key derivation failed with its scrypt parameters (N must be a "
                               "power of two)");
      goto out;
    }
    plain = xmalloc(blob_len + 1);
    int ok = unseal_with(r->crypto, kek, KEY_AAD, strlen(KEY_AAD), blob, blob_len, plain, &pl);
    OPENSSL_cleanse(kek, sizeof(kek));
    if (ok != 0) {
      if (key_name_matches(name, text, len)) {
        rc = 1;
      } else {
        *err = key_damaged(name, "its bytes no longer match its name (the SHA-256 of the "
                                 "object), so it was changed or truncated, and it does not open");
      }
      goto out;
    }
  } else if (strcmp(kdf, "scrypt") == 0) {
    *err = xasprintf("key object '%s' uses scrypt but the pipeline configures no encryption", name);
    goto out;
  } else {
    *err = xasprintf("key object '%s' uses an unsupported key derivation '%s'", name, kdf);
    goto out;
  }
  json_t *m = json_loadb(plain, pl, 0, &je);
  const char *rid = m ? json_string_value(json_object_get(m, "repository")) : NULL;
  const char *ek = m ? json_string_value(json_object_get(m, "encryption_key")) : NULL;
  const char *mk = m ? json_string_value(json_object_get(m, "id_key")) : NULL;
  const char *seed = m ? json_string_value(json_object_get(m, "chunker_seed")) : NULL;
  unsigned char *ekb = NULL, *mkb = NULL;
  size_t ekl = 0, mkl = 0;
  if (!rid || !ek || !mk || !seed || strlen(seed) != 16 || strspn(seed, "0123456789abcdef") != 16 ||
      b64_decode(ek, &ekb, &ekl) != 0 || b64_decode(mk, &mkb, &mkl) != 0 || ekl != REPO_KEY_LEN ||
      mkl != REPO_KEY_LEN) {
    *err = key_damaged(name, "the master key inside is malformed");
  } else if (strcmp(rid, r->id) != 0) {
    *err = xasprintf(
        "key object '%s' belongs to repository %s, not %s (the config object was replaced?)", name,
        rid, r->id);
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
out:
  if (plain) {
    OPENSSL_cleanse(plain, pl);
    free(plain);
  }
  free(blob);
  free(salt);
  json_decref(k);
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

/* Try every key object until one opens. Damaged ones are skipped (and
 * named in a warning when another key opens); if none opens, the error is
 * "wrong passphrase" only when every key object was intact, otherwise it
 * names each damaged one. */
static int open_keys(struct repo *r, const char *pass, size_t pass_len, char **err) {
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
  char *bad_msgs = NULL; /* "; "-joined */
  /* once one opens, the others are only checked (no key derivation), so a
   * damaged one is reported whatever the order of their names */
  for (size_t i = 0; i < n; i++) {
    const char *name = json_string_value(json_object_get(json_array_get(keys, i), "name"));
    void *buf;
    size_t len;
    char *e = NULL;
    int k;
    if (repo_get(r, name, 0, 0, &buf, &len, &e) != 0) {
      char *m = xasprintf("key object '%s' cannot be read: %s", name, e ? e : "unknown error");
      free(e);
      e = m;
      k = -1;
    } else {
      k = rc == 0 ? repo_key_object_check(r, name, buf, len, &e)
                  : repo_key_object_open(r, name, buf, len, pass, pass_len, REPO_KDF_MAX_N, &e);
      free(buf);
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
  json_decref(keys);
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

/* ---- config ----------------------------------------------------------- */

/* A size field of the config object: an integer from min to max, reported
 * as written otherwise (a negative number is not wrapped to a huge one). */
static int config_size(json_t *obj, const char *label, const char *key, uint64_t min, uint64_t max,
                       uint64_t *out, const char *where, char **err) {
  json_t *v = json_object_get(obj, key);
  if (json_is_integer(v) && json_integer_value(v) >= 0 && (uint64_t)json_integer_value(v) >= min &&
      (uint64_t)json_integer_value(v) <= max) {
    *out = (uint64_t)json_integer_value(v);
    return 0;
  }
  char *got = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  *err =
      xasprintf("%s: %s in config is %s; expected a whole number of bytes from %llu to %llu", where,
                label, got ? got : "missing", (unsigned long long)min, (unsigned long long)max);
  free(got);
  return -1;
}

static int parse_config(struct repo *r, const char *text, size_t len, const char *where,
                        char **err) {
  json_error_t je;
  json_t *c = json_loadb(text, len, 0, &je);
  if (!c || json_integer_value(json_object_get(c, "engine_repository")) != 1) {
    json_decref(c);
    *err = xasprintf("%s: 'config' is not an engine repository configuration", where);
    return -1;
  }
  json_int_t v = json_integer_value(json_object_get(c, "version"));
  if (v != REPO_FORMAT_VERSION) {
    json_decref(c);
    *err = xasprintf(
        "%s: repository format version %lld is not supported by this engine (it reads version %d)",
        where, (long long)v, REPO_FORMAT_VERSION);
    return -1;
  }
  const char *id = json_string_value(json_object_get(c, "id"));
  const char *enc = json_string_value(json_object_get(c, "encryption"));
  json_t *ch = json_object_get(c, "chunker");
  if (!id || strlen(id) != 2 * REPO_ID_LEN || !enc || !ch) {
    json_decref(c);
    *err = xasprintf("%s: malformed repository config", where);
    return -1;
  }
  snprintf(r->id, sizeof(r->id), "%s", id);
  const char *want = r->crypto ? r->crypto->name : "none";
  int rc = 0;
  const char *cerr = NULL;
  uint64_t cmin = 0, cavg = 0, cmax = 0;
  if (strcmp(enc, want) != 0) {
    *err = xasprintf("%s: the repository is encrypted with '%s' but the pipeline configures '%s'",
                     where, enc, want);
    rc = -1;
  } else if (config_size(ch, "chunker.min", "min", 1, UINT32_MAX, &cmin, where, err) != 0 ||
             config_size(ch, "chunker.avg", "avg", 1, UINT32_MAX, &cavg, where, err) != 0 ||
             config_size(ch, "chunker.max", "max", 1, UINT32_MAX, &cmax, where, err) != 0 ||
             config_size(c, "pack_size", "pack_size", REPO_MIN_PACK_SIZE, REPO_MAX_PACK_SIZE,
                         &r->pack_size, where, err) != 0) {
    rc = -1;
  } else {
    r->chunker.min_size = (uint32_t)cmin;
    r->chunker.avg_size = (uint32_t)cavg;
    r->chunker.max_size = (uint32_t)cmax;
    if (chunker_params_check(&r->chunker, &cerr) != 0) {
      *err = xasprintf("%s: invalid chunker parameters in config: %s", where, cerr);
      rc = -1;
    }
  }
  json_decref(c);
  return rc;
}

struct probe_ctx {
  char first[512];
  int any;
};

static int probe_cb(void *ud, const char *name, uint64_t size) {
  (void)size;
  struct probe_ctx *p = ud;
  snprintf(p->first, sizeof(p->first), "%s", name);
  p->any = 1;
  return 1; /* one is enough */
}

/* 0 empty, 1 holds a repository config, -1 error, 2 holds something else */
static int probe_sink(struct repo_sink *s, void **cfg, size_t *cfg_len, char **err) {
  host_clear_error(s->pi->host);
  int rc = s->pi->plugin->sink->get(s->pi->inst, "config", 0, 0, cfg, cfg_len);
  if (rc == ENGINE_OK)
    return 1;
  if (rc != ENGINE_NOT_FOUND) {
    *err = sink_error(s, "unable to read", "config");
    return -1;
  }
  struct probe_ctx p = {{0}, 0};
  host_clear_error(s->pi->host);
  if (s->pi->plugin->sink->list(s->pi->inst, "", probe_cb, &p) != ENGINE_OK) {
    *err = sink_error(s, "unable to list", "");
    return -1;
  }
  if (!p.any)
    return 0;
  if (strncmp(p.first, "keys/", 5) == 0) {
    *err = xasprintf("sink '%s': %s holds a key ('%s') but no 'config': an interrupted repository "
                     "initialisation; "
                     "remove the location's contents or choose another location",
                     sink_name(s), sink_where(s), p.first);
    return 2;
  }
  *err = xasprintf(
      "sink '%s': %s holds '%s' but no engine repository; refusing to use it (choose an empty "
      "location)",
      sink_name(s), sink_where(s), p.first);
  return 2;
}

static int init_repo(struct repo *r, const struct repo_open_opts *o, char **err) {
  unsigned char rid[REPO_ID_LEN];
  if (RAND_bytes(rid, sizeof(rid)) != 1 || RAND_bytes(r->enc_key, REPO_KEY_LEN) != 1 ||
      RAND_bytes(r->mac_key, REPO_KEY_LEN) != 1 ||
      RAND_bytes((unsigned char *)&r->chunker_seed, sizeof(r->chunker_seed)) != 1) {
    *err = xstrdup("the system random number generator failed");
    return -1;
  }
  hex_encode(rid, sizeof(rid), r->id);
  r->chunker = o->chunker;
  if (!r->chunker.min_size)
    r->chunker.min_size = CHUNKER_DEFAULT_MIN;
  if (!r->chunker.avg_size)
    r->chunker.avg_size = CHUNKER_DEFAULT_AVG;
  if (!r->chunker.max_size)
    r->chunker.max_size = CHUNKER_DEFAULT_MAX;
  const char *cerr = NULL;
  if (chunker_params_check(&r->chunker, &cerr) != 0) {
    *err = xasprintf("repository chunker parameters: %s", cerr);
    return -1;
  }
  r->pack_size = o->pack_size ? o->pack_size : REPO_DEFAULT_PACK_SIZE;
  /* pack offsets are 32-bit: a pack (plus one chunk past the target) must stay well below 4 GiB */
  if (r->pack_size < REPO_MIN_PACK_SIZE || r->pack_size > REPO_MAX_PACK_SIZE) {
    *err = xasprintf("repository.pack_size %llu is outside %u..%u bytes (1 MiB .. 1 GiB)",
                     (unsigned long long)r->pack_size, REPO_MIN_PACK_SIZE, REPO_MAX_PACK_SIZE);
    return -1;
  }
  char *now = iso_time(time(NULL));
  json_t *c =
      json_pack("{s:i, s:i, s:s, s:s, s:s, s:s, s:{s:s, s:I, s:I, s:I}, s:I}", "engine_repository",
                1, "version", REPO_FORMAT_VERSION, "id", r->id, "created", now, "encryption",
                r->crypto ? r->crypto->name : "none", "id_hash", "hmac-sha256", "chunker",
                "algorithm", "fastcdc-gear64", "min", (json_int_t)r->chunker.min_size, "avg",
                (json_int_t)r->chunker.avg_size, "max", (json_int_t)r->chunker.max_size,
                "pack_size", (json_int_t)r->pack_size);
  free(now);
  char *ctext = json_dumps(c, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(c);
  char *ktext = NULL;
  if (repo_key_make(r, o->passphrase, o->passphrase_len, &ktext, err) != 0) {
    free(ctext);
    return -1;
  }
  char kid[65], kname[80];
  sha256_hex(ktext, strlen(ktext), kid);
  snprintf(kname, sizeof(kname), "keys/%s", kid);
  if (o->dry_run) {
    free(ktext);
    free(ctext);
    return 0;
  }
  /* The key first: a location with a config but no key would be unusable. */
  int rc = repo_put(r, kname, ktext, strlen(ktext), ENGINE_PUT_NO_OVERWRITE, err);
  if (rc == 0)
    rc = repo_put(r, "config", ctext, strlen(ctext), ENGINE_PUT_NO_OVERWRITE, err);
  if (rc == 0)
    snprintf(r->key_id, sizeof(r->key_id), "%s", kid);
  free(ktext);
  free(ctext);
  return rc == 0 ? 0 : -1;
}

/* With several sinks, one that missed runs (an optional sink during an
 * outage) lacks index objects the others have: say so, with the fix. */
static void warn_sinks_behind(struct repo *r) {
  if (r->n_sinks < 2)
    return;
  json_t **lists = xcalloc(r->n_sinks, sizeof(*lists));
  for (size_t i = 0; i < r->n_sinks; i++) {
    char *e = NULL;
    if (r->sinks[i].failed || sink_list(&r->sinks[i], "snapshots/", &lists[i], &e) != 0)
      lists[i] = NULL;
    free(e);
  }
  for (size_t i = 0; i < r->n_sinks; i++)
    for (size_t k = 0; k < r->n_sinks; k++) {
      if (i == k || !lists[i] || !lists[k])
        continue;
      size_t missing = 0, a, b;
      json_t *x, *y;
      json_array_foreach(lists[k], a, x) {
        int found = 0;
        json_array_foreach(lists[i], b, y) if (json_equal(json_object_get(x, "name"),
                                                          json_object_get(y, "name"))) {
          found = 1;
          break;
        }
        missing += !found;
      }
      if (missing)
        log_warn("sink '%s' lacks %zu snapshot(s) that sink '%s' has; run 'engine sync PIPELINE "
                 "--from %s --to %s'",
                 sink_name(&r->sinks[i]), missing, sink_name(&r->sinks[k]), sink_name(&r->sinks[k]),
                 sink_name(&r->sinks[i]));
    }
  for (size_t i = 0; i < r->n_sinks; i++)
    json_decref(lists[i]);
  free(lists);
}

int repo_open(const struct repo_open_opts *o, struct repo **out, char **err) {
  *err = NULL;
  struct repo *r = xcalloc(1, sizeof(*r));
  r->sinks = o->sinks;
  r->n_sinks = o->n_sinks;
  r->crypto = o->crypto;
  if (r->crypto) {
    r->nonce_len = r->crypto->crypto->nonce_len;
    r->tag_len = r->crypto->crypto->tag_len;
    if (r->crypto->crypto->key_len != REPO_KEY_LEN) {
      *err = xasprintf("crypto plugin '%s' uses %zu-byte keys; the repository format needs %d",
                       r->crypto->name, r->crypto->crypto->key_len, REPO_KEY_LEN);
      free(r);
      return -1;
    }
    if (!o->passphrase || !o->passphrase_len) {
      *err = xstrdup("no passphrase or key file given for an encrypted repository");
      free(r);
      return -1;
    }
  }
  r->compress_algo = o->compress_algo;
  r->compress_level = o->compress_level;
  r->index = index_new();

  /* Probe every sink: all empty, or all holding the same repository. */
  void *cfg = NULL;
  size_t cfg_len = 0;
  size_t with_repo = 0, empty = 0;
  ssize_t cfg_from = -1;
  for (size_t i = 0; i < r->n_sinks; i++) {
    void *c = NULL;
    size_t cl = 0;
    int st = probe_sink(&r->sinks[i], &c, &cl, err);
    if (st < 0 && o->read_only && r->n_sinks > 1) {
      log_warn("%s; skipping sink '%s'", *err, sink_name(&r->sinks[i]));
      free(*err);
      *err = NULL;
      r->sinks[i].failed = 1;
      continue;
    }
    if (st < 0 && !r->sinks[i].required && r->n_sinks > 1) {
      /* an optional sink that cannot be reached misses this run */
      log_warn("%s; sink '%s' is not required: continuing without it (it will miss this snapshot; "
               "'engine sync' copies what it missed)",
               *err, sink_name(&r->sinks[i]));
      free(*err);
      *err = NULL;
      r->sinks[i].failed = 1;
      continue;
    }
    if (st < 0 || st == 2)
      goto fail;
    if (st == 0) {
      empty++;
      continue;
    }
    with_repo++;
    if (!cfg) {
      cfg = c;
      cfg_len = cl;
      cfg_from = (ssize_t)i;
    } else {
      if (cl != cfg_len || memcmp(c, cfg, cl) != 0) {
        *err = xasprintf(
            "sinks '%s' and '%s' hold different repositories (their config objects differ)",
            sink_name(&r->sinks[cfg_from]), sink_name(&r->sinks[i]));
        free(c);
        goto fail;
      }
      free(c);
    }
  }
  size_t n_failed = 0;
  for (size_t i = 0; i < r->n_sinks; i++)
    n_failed += r->sinks[i].failed;
  if (n_failed == r->n_sinks) {
    *err = xstrdup("no sink could be reached (see the warnings above)");
    goto fail;
  }
  if (with_repo == 0) {
    if (!o->create) {
      *err = xasprintf("no repository at sink '%s' (%s); run the pipeline once to create it",
                       sink_name(&r->sinks[0]), sink_where(&r->sinks[0]));
      goto fail;
    }
    if (init_repo(r, o, err) != 0)
      goto fail;
    r->created = 1;
    *out = r;
    return 0;
  }
  if (empty > 0 && o->read_only) {
    for (size_t i = 0; i < r->n_sinks; i++) {
      void *c = NULL;
      size_t cl = 0;
      char *e = NULL;
      if (!r->sinks[i].failed && probe_sink(&r->sinks[i], &c, &cl, &e) == 0) {
        log_warn("sink '%s' (%s) holds no repository; reading from sink '%s' instead ('engine sync "
                 "PIPELINE --from %s --to %s' copies it back)",
                 sink_name(&r->sinks[i]), sink_where(&r->sinks[i]), sink_name(&r->sinks[cfg_from]),
                 sink_name(&r->sinks[cfg_from]), sink_name(&r->sinks[i]));
        r->sinks[i].failed = 1;
      }
      free(c);
      free(e);
    }
    empty = 0;
  }
  if (empty > 0) {
    for (size_t i = 0; i < r->n_sinks; i++) {
      void *c = NULL;
      size_t cl = 0;
      char *e = NULL;
      if (!r->sinks[i].failed && probe_sink(&r->sinks[i], &c, &cl, &e) == 0) {
        *err = xasprintf(
            "sink '%s' (%s) is empty but sink '%s' holds the repository; copy the repository to it "
            "first with 'engine sync PIPELINE --from %s --to %s' (or remove the sink from the "
            "pipeline)",
            sink_name(&r->sinks[i]), sink_where(&r->sinks[i]), sink_name(&r->sinks[cfg_from]),
            sink_name(&r->sinks[cfg_from]), sink_name(&r->sinks[i]));
        break;
      }
      free(c);
      free(e);
    }
    goto fail;
  }
  {
    char where[600];
    snprintf(where, sizeof(where), "sink '%s' (%s)", sink_name(&r->sinks[cfg_from]),
             sink_where(&r->sinks[cfg_from]));
    if (parse_config(r, cfg, cfg_len, where, err) != 0)
      goto fail;
  }
  free(cfg);
  cfg = NULL;
  if (open_keys(r, o->passphrase, o->passphrase_len, err) != 0)
    goto fail;
  warn_sinks_behind(r);
  *out = r;
  return 0;
fail:
  free(cfg);
  repo_close(r);
  return -1;
}

void repo_close(struct repo *r) {
  if (!r)
    return;
  index_free(r->index);
  OPENSSL_cleanse(r->enc_key, sizeof(r->enc_key));
  OPENSSL_cleanse(r->mac_key, sizeof(r->mac_key));
  free(r);
}
