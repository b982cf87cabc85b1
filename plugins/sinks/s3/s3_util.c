/* Encoding and hashing helpers of the s3/minio sinks: SigV4 URI encoding,
 * canonical (sorted) query strings, payload digests. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3_internal.h"

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

char *s3_uri_encode(const char *s, size_t n, int keep_slash) {
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

char *s3_query(const char *const *kv, size_t npairs) {
  struct qpair *v = calloc(npairs ? npairs : 1, sizeof *v);
  if (v == NULL)
    return NULL;
  char *out = NULL;
  size_t total = 1;
  for (size_t i = 0; i < npairs; i++) {
    const char *name = kv[2 * i], *value = kv[2 * i + 1] ? kv[2 * i + 1] : "";
    v[i].name = s3_uri_encode(name, strlen(name), 0);
    v[i].value = s3_uri_encode(value, strlen(value), 0);
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
    o += (size_t)sprintf(out + o, "%s%s=%s", i ? "&" : "", v[i].name, v[i].value);
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

int s3_sha256_hex(const void *p, size_t n, char out[S3_SHA256_HEX_LEN + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (digest(EVP_sha256(), p, n, md, &len) != 0 || len != 32)
    return -1;
  to_hex(md, len, out);
  return 0;
}

int s3_md5(const void *p, size_t n, char hex[S3_MD5_HEX_LEN + 1], char b64[S3_MD5_B64_LEN + 1]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (digest(EVP_md5(), p, n, md, &len) != 0 || len != 16)
    return -1;
  if (hex != NULL)
    to_hex(md, len, hex);
  if (b64 != NULL && EVP_EncodeBlock((unsigned char *)b64, md, (int)len) != S3_MD5_B64_LEN)
    return -1;
  return 0;
}

int s3_parse_u64(const char *s, uint64_t *out) {
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

void s3_wipe_free(char *p) {
  if (p == NULL)
    return;
  OPENSSL_cleanse(p, strlen(p));
  free(p);
}
