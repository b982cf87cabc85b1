/* Encodings, digests and small parsers of the object-store sinks
 * (objstore.h): percent-encoding, canonical query strings, base64 and
 * base64url (OpenSSL's encoder), MD5 and SHA-256, secret wiping. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objstore.h"

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

char *objstore_uri_encode(const char *s, size_t n, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  if (n > (SIZE_MAX - 1) / 3)
    return NULL;
  char *out = malloc(n * 3 + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c) || (keep_slash && c == '/')) {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 0xf];
    }
  }
  out[o] = '\0';
  return out;
}

struct qpair {
  char *name;
  char *value;
};

static int qpair_cmp(const void *a, const void *b) {
  const struct qpair *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c != 0 ? c : strcmp(x->value, y->value);
}

char *objstore_query(const char *const *kv, size_t npairs) {
  struct qpair *v = calloc(npairs ? npairs : 1, sizeof *v);
  if (v == NULL)
    return NULL;
  char *out = NULL;
  size_t total = 1;
  for (size_t i = 0; i < npairs; i++) {
    const char *name = kv[2 * i], *value = kv[2 * i + 1] ? kv[2 * i + 1] : "";
    v[i].name = objstore_uri_encode(name, strlen(name), 0);
    v[i].value = objstore_uri_encode(value, strlen(value), 0);
    if (v[i].name == NULL || v[i].value == NULL)
      goto out;
    total += strlen(v[i].name) + strlen(v[i].value) + 2;
  }
  /* SigV4 signs the query sorted by name; libcurl sends it as given, so the
   * order on the wire has to be the canonical one. */
  qsort(v, npairs, sizeof *v, qpair_cmp);
  out = malloc(total);
  if (out == NULL)
    goto out;
  size_t o = 0;
  for (size_t i = 0; i < npairs; i++) {
    /* a value-less subresource is written "name=": libcurl's signer
     * mishandles a bare "?uploads" */
    o += (size_t)snprintf(out + o, total - o, "%s%s=%s", i ? "&" : "", v[i].name, v[i].value);
  }
  out[o] = '\0';
out:
  for (size_t i = 0; i < npairs; i++) {
    free(v[i].name);
    free(v[i].value);
  }
  free(v);
  return out;
}

char *objstore_base64(const void *data, size_t len) {
  if (len > (size_t)1 << 30)
    return NULL;
  char *out = malloc(4 * ((len + 2) / 3) + 1);
  if (out == NULL)
    return NULL;
  EVP_EncodeBlock((unsigned char *)out, data != NULL ? data : (const void *)"", (int)len);
  return out;
}

char *objstore_base64url(const void *data, size_t len) {
  char *out = objstore_base64(data, len);
  if (out == NULL)
    return NULL;
  size_t n = strlen(out);
  while (n > 0 && out[n - 1] == '=')
    out[--n] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (out[i] == '+')
      out[i] = '-';
    else if (out[i] == '/')
      out[i] = '_';
  }
  return out;
}

static int digest(const EVP_MD *md, const void *p, size_t n, unsigned char *out,
                  unsigned *out_len) {
  return EVP_Digest(p ? p : "", n, out, out_len, md, NULL) == 1 ? 0 : -1;
}

static void to_hex(const unsigned char *in, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[in[i] >> 4];
    out[2 * i + 1] = hex[in[i] & 0xf];
  }
  out[2 * n] = '\0';
}

int objstore_sha256_hex(const void *p, size_t n, char out[OBJSTORE_SHA256_HEX_LEN + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (digest(EVP_sha256(), p, n, md, &len) != 0 || len != 32)
    return -1;
  to_hex(md, len, out);
  return 0;
}

int objstore_md5(const void *p, size_t n, char hex[OBJSTORE_MD5_HEX_LEN + 1],
                 char b64[OBJSTORE_MD5_B64_LEN + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (digest(EVP_md5(), p, n, md, &len) != 0 || len != 16)
    return -1;
  if (hex != NULL)
    to_hex(md, len, hex);
  if (b64 != NULL && EVP_EncodeBlock((unsigned char *)b64, md, (int)len) != OBJSTORE_MD5_B64_LEN)
    return -1;
  return 0;
}

int objstore_parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0')
    return -1;
  *out = (uint64_t)v;
  return 0;
}

void objstore_wipe_free(char *s) {
  if (s == NULL)
    return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}
