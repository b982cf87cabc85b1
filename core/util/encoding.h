/* Small encoding helpers used across the core (and its tests): hex,
 * base64, SHA-256 in hex, ISO-8601 UTC times, little-endian integers, byte
 * strings made printable.
 * Thread-safe (no state). */
#ifndef CORE_UTIL_ENCODING_H
#define CORE_UTIL_ENCODING_H

#include <stddef.h>
#include <stdint.h>

void le32_put(unsigned char *p, uint32_t v); /* little-endian, as in packs */
uint32_t le32_get(const unsigned char *p);
void hex_encode(const unsigned char *in, size_t n, char *out); /* out: 2n+1 */
int hex_decode(const char *in, unsigned char *out, size_t n);  /* exactly 2n hex chars */
void sha256_hex(const void *data, size_t n, char out[65]);
char *b64_encode(const void *data, size_t n);
int b64_decode(const char *s, unsigned char **out, size_t *n);
char *iso_time(int64_t unix_s); /* "2026-11-22T23:58:30Z", malloc'd */
int parse_iso_time(const char *s, int64_t *unix_s);
/* A printable rendering of a byte string for messages (\xNN escapes, \n),
 * malloc'd: every non-ASCII byte is escaped. */
char *printable_name(const char *bytes, size_t len);

#endif
