/* Small helpers of the gcs sink: URL and base64 encodings, GCS error bodies,
 * wiping secrets. */
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gcs.h"

char *gcs_urlencode(const char *s, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  if (len > (SIZE_MAX - 1) / 3)
    return NULL;
  char *out = malloc(len * 3 + 1);
  if (out == NULL)
    return NULL;
  char *o = out;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      *o++ = (char)c;
    } else {
      *o++ = '%';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    }
  }
  *o = '\0';
  return out;
}

char *gcs_base64(const unsigned char *data, size_t len) {
  if (len > (size_t)INT32_MAX / 2)
    return NULL;
  char *out = malloc(4 * ((len + 2) / 3) + 1);
  if (out == NULL)
    return NULL;
  EVP_EncodeBlock((unsigned char *)out, data, (int)len);
  return out;
}

char *gcs_base64url(const unsigned char *data, size_t len) {
  char *out = gcs_base64(data, len);
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

/* Copies a printable, single-line excerpt of text into buf. */
static void excerpt(const char *text, size_t len, char *buf, size_t buflen) {
  size_t o = 0, i = 0;
  int space = 0;
  for (; i < len && o + 4 < buflen; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = o > 0;
      continue;
    }
    if (space) {
      buf[o++] = ' ';
      space = 0;
    }
    buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (i < len && o + 3 < buflen) {
    memcpy(buf + o, "...", 3);
    o += 3;
  }
  buf[o] = '\0';
}

const char *gcs_error_text(const char *body, size_t len, char *buf, size_t buflen) {
  if (buflen == 0)
    return buf;
  buf[0] = '\0';
  if (body == NULL || len == 0)
    return buf;
  json_t *root = json_loadb(body, len, 0, NULL);
  if (root != NULL) {
    /* JSON API: {"error": {"code": 403, "message": "..."}};
     * OAuth2 token endpoint: {"error": "invalid_grant", "error_description": "..."} */
    json_t *err = json_object_get(root, "error");
    const char *msg = NULL, *code = NULL;
    if (json_is_object(err)) {
      msg = json_string_value(json_object_get(err, "message"));
    } else if (json_is_string(err)) {
      code = json_string_value(err);
      msg = json_string_value(json_object_get(root, "error_description"));
    }
    if (code != NULL && msg != NULL)
      snprintf(buf, buflen, "%s: %s", code, msg);
    else if (msg != NULL || code != NULL)
      snprintf(buf, buflen, "%s", msg != NULL ? msg : code);
    json_decref(root);
    if (buf[0] != '\0') {
      char tmp[512];
      excerpt(buf, strlen(buf), tmp, sizeof tmp < buflen ? sizeof tmp : buflen);
      snprintf(buf, buflen, "%s", tmp);
      return buf;
    }
  }
  excerpt(body, len, buf, buflen < 200 ? buflen : 200);
  return buf;
}

int gcs_retryable_status(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

void gcs_wipe_free(char *s) {
  if (s == NULL)
    return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}
