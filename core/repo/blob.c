/* Blob ids, encoding and decoding, and reading a blob through the index
 * (blob.h). */
#include "repo/blob.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/index.h"
#include "repo/journal.h"
#include "repo/keys2.h"
#include "compress/compress.h"
#include "util/log.h"

void repo_blob_id(const struct repo *r, const void *data, size_t n, unsigned char id[32]) {
  repo_blob_id_key(r, NULL, data, n, id);
}

/* Each thread keeps one HMAC-SHA256 context with the key it used last:
 * HMAC() looks the algorithm up and derives the key's pads on every call,
 * which for the small blobs of a tree of small files cost as much as the
 * hashing itself. Re-initialising with a NULL key keeps the key (OpenSSL
 * 3); a different key (another repository, a tenant's) sets it anew. The
 * context lives as long as its thread (a thread-specific key's destructor
 * frees it). */
static __thread EVP_MAC_CTX *id_ctx;
static __thread int id_ctx_keyed; /* id_ctx holds the key id_ctx_key */
static __thread unsigned char id_ctx_key[REPO_KEY_LEN];
static pthread_key_t id_ctx_owner; /* frees a thread's context when it exits */
static pthread_once_t id_ctx_once = PTHREAD_ONCE_INIT;

static void id_ctx_free(void *ctx) {
  EVP_MAC_CTX_free(ctx);
}
static void id_ctx_key_init(void) {
  pthread_key_create(&id_ctx_owner, id_ctx_free);
}

static int id_mac(const unsigned char *key, const void *data, size_t n, unsigned char id[32]) {
  if (!id_ctx) {
    pthread_once(&id_ctx_once, id_ctx_key_init);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    id_ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (!id_ctx)
      return -1;
    pthread_setspecific(id_ctx_owner, id_ctx);
  }
  int same = id_ctx_keyed && memcmp(id_ctx_key, key, REPO_KEY_LEN) == 0;
  OSSL_PARAM prm[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                      OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(id_ctx, same ? NULL : key, REPO_KEY_LEN, same ? NULL : prm) != 1) {
    id_ctx_keyed = 0;
    return -1;
  }
  if (!same) {
    memcpy(id_ctx_key, key, REPO_KEY_LEN);
    id_ctx_keyed = 1;
  }
  size_t len = 0;
  return EVP_MAC_update(id_ctx, data, n) == 1 && EVP_MAC_final(id_ctx, id, &len, 32) == 1 &&
                 len == 32
             ? 0
             : -1;
}

void repo_blob_id_key(const struct repo *r, const unsigned char *idk, const void *data, size_t n,
                      unsigned char id[32]) {
  const unsigned char *key = idk ? idk : r->mac_key;
  if (id_mac(key, data, n, id) != 0) { /* as before: the one-shot call */
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, REPO_KEY_LEN, data, n, id, &len);
  }
}

static void blob_aad(const unsigned char id[32], enum blob_type type, unsigned char aad[33]) {
  memcpy(aad, id, 32);
  aad[32] = (unsigned char)type;
}

int repo_blob_compress(const struct repo *r, const void *data, size_t n, const void **plain,
                       size_t *plain_len) {
  return compress_encode_scratch(r->compress_algo, r->compress_level, data, n, plain, plain_len);
}

int repo_blob_seal(const struct repo *r, const unsigned char *key, const unsigned char id[32],
                   enum blob_type type, const void *plain, size_t plain_len, void *out) {
  unsigned char aad[33];
  blob_aad(id, type, aad);
  if (!r->crypto) {
    memcpy(out, plain, plain_len);
    return 0;
  }
  return repo_seal_key(r->crypto, key ? key : r->enc_key, aad, sizeof(aad), plain, plain_len, out);
}

int repo_blob_encode(const struct repo *r, const unsigned char *key, const unsigned char id[32],
                     enum blob_type type, const void *data, size_t n, void **out, size_t *out_len) {
  const void *plain;
  size_t plain_len;
  if (repo_blob_compress(r, data, n, &plain, &plain_len) != 0)
    return -1;
  size_t sl = repo_sealed_len(r, plain_len);
  void *sealed = xmalloc(sl);
  int rc = repo_blob_seal(r, key, id, type, plain, plain_len, sealed);
  if (rc != 0) {
    free(sealed);
    return -1;
  }
  *out = sealed;
  *out_len = sl;
  return 0;
}

int repo_blob_decode(const struct repo *r, const unsigned char *key, const unsigned char id[32],
                     enum blob_type type, const void *enc, size_t enc_len, void **out,
                     size_t *out_len, char **err) {
  return repo_blob_decode_idk(r, key, NULL, id, type, enc, enc_len, out, out_len, err);
}

int repo_blob_decode_idk(const struct repo *r, const unsigned char *key, const unsigned char *idk,
                         const unsigned char id[32], enum blob_type type, const void *enc,
                         size_t enc_len, void **out, size_t *out_len, char **err) {
  char hex[65];
  hex_encode(id, 32, hex);
  unsigned char aad[33];
  blob_aad(id, type, aad);
  void *plain = xmalloc(enc_len ? enc_len : 1);
  size_t plain_len;
  int opened;
  if (!r->crypto) {
    memcpy(plain, enc, enc_len);
    plain_len = enc_len;
    opened = 0;
  } else {
    opened = repo_unseal_key(r->crypto, key ? key : r->enc_key, aad, sizeof(aad), enc, enc_len,
                             plain, &plain_len);
  }
  if (opened != 0) {
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
    repo_blob_id_key(r, idk, raw, raw_len, check);
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

int repo_blob_decode_into(const struct repo *r, const unsigned char *key, const unsigned char *idk,
                          const unsigned char id[32], enum blob_type type, const void *enc,
                          size_t enc_len, void *scratch, void *out, size_t out_len, char **err) {
  char hex[65];
  hex_encode(id, 32, hex);
  unsigned char aad[33];
  blob_aad(id, type, aad);
  const void *plain = enc;
  size_t plain_len = enc_len;
  if (r->crypto && repo_unseal_key(r->crypto, key ? key : r->enc_key, aad, sizeof(aad), enc,
                                   enc_len, scratch, &plain_len) != 0) {
    *err = xasprintf("blob %s: authentication failed (data corrupted or tampered with)", hex);
    return -1;
  }
  if (r->crypto)
    plain = scratch;
  const char *cerr = NULL;
  int trusted = r->trust_aead_ids && r->crypto;
  if (compress_decode_into(plain, plain_len, trusted ? COMPRESS_DECODE_AUTHENTICATED : 0, out,
                           out_len, &cerr) != 0) {
    *err = xasprintf("blob %s: unable to decompress: %s", hex, cerr ? cerr : "corrupt data");
    return -1;
  }
  unsigned char check[32];
  if (!trusted) {
    repo_blob_id_key(r, idk, out, out_len, check);
    if (memcmp(check, id, 32) != 0) {
      *err = xasprintf("blob %s: content does not match its id", hex);
      return -1;
    }
  }
  return 0;
}

int repo_read_blob(struct repo *r, const unsigned char id[32], enum blob_type type, void **out,
                   size_t *n, char **err) {
  /* a write-only host reads the trees of its own snapshots from its
   * journal: it cannot open any pack */
  if (r->write_only && type == BLOB_TREE)
    return journal_get_tree(r, id, out, n, err);
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
  unsigned char dk[32];
  const struct repo_tenant *t = NULL;
  if (r->format >= 2 && repo_pack_key_t(r, r->index->packs[e.pack], dk, &t, err) != 0) {
    free(enc);
    return -1;
  }
  char *derr = NULL;
  int rc = repo_blob_decode_idk(r, r->format >= 2 ? dk : NULL, repo_tenant_idk(r, t), id, type, enc,
                                enc_len, out, n, &derr);
  free(enc);
  if (rc != 0) {
    *err = xasprintf("pack %s: %s", pack_hex, derr);
    free(derr);
  }
  return rc;
}
