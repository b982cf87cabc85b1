/* Small encoding helpers: hex, base64, SHA-256, ISO-8601 times,
 * little-endian integers (util/encoding.h). */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/encoding.h"
#include "util/log.h"

void le32_put(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

uint32_t le32_get(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void hex_encode(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int hex_decode(const char *in, unsigned char *out, size_t n) {
  if (strlen(in) != 2 * n)
    return -1;
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    out[i] = (unsigned char)(hi << 4 | lo);
  }
  return 0;
}

void sha256_hex(const void *data, size_t n, char out[65]) {
  unsigned char md[32];
  SHA256(data, n, md);
  hex_encode(md, 32, out);
}

char *b64_encode(const void *data, size_t n) {
  char *out = xmalloc(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)out, data, (int)n);
  return out;
}

int b64_decode(const char *s, unsigned char **out, size_t *n) {
  size_t len = strlen(s);
  if (len % 4 != 0)
    return -1;
  unsigned char *buf = xmalloc(len / 4 * 3 + 1);
  int got = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
  if (got < 0) {
    free(buf);
    return -1;
  }
  /* EVP_DecodeBlock counts padding bytes as data; remove them. */
  if (len >= 1 && s[len - 1] == '=')
    got--;
  if (len >= 2 && s[len - 2] == '=')
    got--;
  *out = buf;
  *n = (size_t)got;
  return 0;
}

char *iso_time(int64_t unix_s) {
  time_t t = (time_t)unix_s;
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return xstrdup(buf);
}

int parse_iso_time(const char *s, int64_t *unix_s) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end)
    return -1;
  long off = 0;
  if (*end == '.') { /* fractional seconds are accepted and ignored */
    end++;
    while (*end >= '0' && *end <= '9')
      end++;
  }
  if (*end == 'Z') {
    end++;
  } else if (*end == '+' || *end == '-') {
    int hh, mm;
    if (sscanf(end + 1, "%2d:%2d", &hh, &mm) != 2)
      return -1;
    off = (hh * 3600L + mm * 60L) * (*end == '-' ? -1 : 1);
    end += 6;
  } else if (*end != '\0') {
    return -1;
  }
  if (*end != '\0')
    return -1;
  *unix_s = (int64_t)timegm(&tm) - off;
  return 0;
}

char *printable_name(const char *bytes, size_t len) {
  char *out = xmalloc(len * 4 + 1);
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)bytes[i];
    if (c == '\n') {
      out[o++] = '\\';
      out[o++] = 'n';
    } else if (c < 0x20 || c == 0x7f || c >= 0x80) {
      /* every non-ASCII byte is escaped: unambiguous in logs and terminals */
      o += (size_t)snprintf(out + o, len * 4 + 1 - o, "\\x%02x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
  return out;
}
