/* The "aes-256-gcm" crypto plugin: AES-256 in GCM mode through OpenSSL's EVP
 * interface. 32-byte key, 12-byte nonce, 16-byte tag appended to the
 * ciphertext. Stateless between calls; each thread keeps one cipher context
 * so the hot path does not allocate. */
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "engine/plugin.h"

#define AEAD_KEY_LEN 32
#define AEAD_NONCE_LEN 12
#define AEAD_TAG_LEN 16
/* EVP takes int lengths; larger buffers are fed in pieces. */
#define AEAD_CHUNK ((size_t)1 << 30)

/* Fetched once: OpenSSL 3 would otherwise look the algorithm up in the
 * provider store on every EVP_*Init call (EVP_aes_256_gcm() is only a name). */
static pthread_once_t cipher_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *cipher;

static void cipher_fetch(void) {
  cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  if (cipher == NULL)
    ERR_clear_error();
}

static const EVP_CIPHER *aead_cipher(void) {
  pthread_once(&cipher_once, cipher_fetch);
  return cipher;
}

/* The per-thread context lives in pthread thread-specific data (not
 * __thread: dynamic TLS of a dlopen'ed module is what LeakSanitizer cannot
 * scan reliably). It is freed by the key's destructor when its thread exits;
 * the library is linked -z nodelete so the destructor outlives a dlclose. */
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;
static int ctx_key_ok;

static void ctx_release(void *p) {
  EVP_CIPHER_CTX_free(p);
}

static void ctx_key_create(void) {
  ctx_key_ok = pthread_key_create(&ctx_key, ctx_release) == 0;
}

static EVP_CIPHER_CTX *thread_ctx(void) {
  pthread_once(&key_once, ctx_key_create);
  if (!ctx_key_ok)
    return NULL;
  EVP_CIPHER_CTX *ctx = pthread_getspecific(ctx_key);
  if (ctx != NULL)
    return ctx;
  ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL)
    return NULL;
  if (pthread_setspecific(ctx_key, ctx) != 0) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* Resets the thread's context and sets it up for one message. */
static EVP_CIPHER_CTX *begin(int enc, const unsigned char *key, const unsigned char *nonce) {
  const EVP_CIPHER *c = aead_cipher();
  EVP_CIPHER_CTX *ctx = thread_ctx();
  if (c == NULL || ctx == NULL || key == NULL || nonce == NULL)
    return NULL;
  if (EVP_CIPHER_CTX_reset(ctx) != 1 || EVP_CipherInit_ex(ctx, c, NULL, NULL, NULL, enc) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, AEAD_NONCE_LEN, NULL) != 1 ||
      EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1)
    return NULL;
  return ctx;
}

static int feed_aad(EVP_CIPHER_CTX *ctx, const void *aad, size_t aad_len) {
  const unsigned char *p = aad;
  while (aad_len > 0) {
    size_t n = aad_len < AEAD_CHUNK ? aad_len : AEAD_CHUNK;
    int outl = 0;
    if (EVP_CipherUpdate(ctx, NULL, &outl, p, (int)n) != 1)
      return -1;
    p += n;
    aad_len -= n;
  }
  return 0;
}

/* Runs the cipher over in[0..len) into out; *written gets the bytes produced. */
static int feed_data(EVP_CIPHER_CTX *ctx, const void *in, size_t len, unsigned char *out,
                     size_t *written) {
  const unsigned char *p = in;
  size_t total = 0;
  while (len > 0) {
    size_t n = len < AEAD_CHUNK ? len : AEAD_CHUNK;
    int outl = 0;
    if (EVP_CipherUpdate(ctx, out + total, &outl, p, (int)n) != 1 || outl < 0)
      return -1;
    total += (size_t)outl;
    p += n;
    len -= n;
  }
  *written = total;
  return 0;
}

static int aead_seal(const unsigned char *key, const unsigned char *nonce, const void *aad,
                     size_t aad_len, const void *in, size_t in_len, void *out) {
  unsigned char *o = out;
  EVP_CIPHER_CTX *ctx = begin(1, key, nonce);
  size_t done = 0;
  int fin = 0;
  if (ctx == NULL || (aad_len > 0 && aad == NULL) || (in_len > 0 && in == NULL) || o == NULL ||
      feed_aad(ctx, aad, aad_len) != 0 || feed_data(ctx, in, in_len, o, &done) != 0 ||
      EVP_EncryptFinal_ex(ctx, o + done, &fin) != 1 || done + (size_t)fin != in_len ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_LEN, o + in_len) != 1) {
    ERR_clear_error();
    if (o != NULL)
      OPENSSL_cleanse(o, in_len + AEAD_TAG_LEN);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int aead_open(const unsigned char *key, const unsigned char *nonce, const void *aad,
                     size_t aad_len, const void *in, size_t in_len, void *out) {
  if (in == NULL || in_len < AEAD_TAG_LEN)
    return ENGINE_ERROR;
  size_t ct_len = in_len - AEAD_TAG_LEN;
  const unsigned char *tag = (const unsigned char *)in + ct_len;
  unsigned char tagbuf[AEAD_TAG_LEN];
  unsigned char *o = out;
  if (o == NULL && ct_len > 0)
    return ENGINE_ERROR;
  /* SET_TAG wants a mutable pointer and `in` is const. */
  memcpy(tagbuf, tag, AEAD_TAG_LEN);
  unsigned char none[AEAD_TAG_LEN]; /* GCM's final step writes nothing, but wants somewhere */

  EVP_CIPHER_CTX *ctx = begin(0, key, nonce);
  size_t done = 0;
  int fin = 0;
  if (ctx == NULL || (aad_len > 0 && aad == NULL) ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_LEN, tagbuf) != 1 ||
      feed_aad(ctx, aad, aad_len) != 0 || feed_data(ctx, in, ct_len, o, &done) != 0 ||
      EVP_DecryptFinal_ex(ctx, o != NULL ? o + done : none, &fin) != 1 ||
      done + (size_t)fin != ct_len) {
    ERR_clear_error();
    /* Unauthenticated plaintext must never be used, not even by accident. */
    if (o != NULL)
      OPENSSL_cleanse(o, ct_len);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static char aead_instance; /* crypto has no per-instance state; a non-NULL handle */

static int aead_create(const struct engine_host *host, void **inst) {
  *inst = NULL;
  if (aead_cipher() == NULL) {
    host->set_error(host,
                    "OpenSSL (%s) does not provide AES-256-GCM; is the default provider "
                    "available?",
                    OpenSSL_version(OPENSSL_VERSION));
    return ENGINE_ERROR;
  }
  *inst = &aead_instance;
  return ENGINE_OK;
}

static void aead_destroy(void *inst) {
  (void)inst;
}

static const struct engine_crypto_ops aead_ops = {
    .struct_size = sizeof(struct engine_crypto_ops),
    .key_len = AEAD_KEY_LEN,
    .nonce_len = AEAD_NONCE_LEN,
    .tag_len = AEAD_TAG_LEN,
    .seal = aead_seal,
    .open = aead_open,
};

static const struct engine_plugin aead_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_CRYPTO,
    .name = "aes-256-gcm",
    .version = "0.1.0",
    .license = "MIT",
    .description = "AES-256-GCM authenticated encryption (OpenSSL), 96-bit nonces, 128-bit tags.",
    .options = NULL,
    .create = aead_create,
    .destroy = aead_destroy,
    .crypto = &aead_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  return host_abi_major == ENGINE_ABI_MAJOR ? &aead_plugin : NULL;
}
