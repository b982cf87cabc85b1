/* What the bundled sink plugins decide the same way, in one place: the
 * meaning of a ranged read (which bytes an object of a given size gives, and
 * what a Range request's answer means: 206, a 200 that ignored Range, a
 * short body, an empty object, 404, 416), the collector that receives a
 * response body (or streams it on), and the encodings and digests HTTP object
 * stores want (URI encoding, canonical query strings, base64, MD5/SHA-256),
 * secret wiping and number parsing.
 *
 * A static library linked into the s3/minio, gcs and local sinks; it is
 * not installed: its interface is the bundled sinks' own and changes with
 * them, while third-party plugins build against the SDK (include/engine)
 * alone. Nothing here talks to the network: each sink sends its requests
 * through host->http_request and hands the answer to these functions. */
#ifndef ENGINE_OBJSTORE_H
#define ENGINE_OBJSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/host.h"

/* ---- ranges ------------------------------------------------------------ */

/* The bytes a get of [off, off+len) returns from an object of `size` bytes
 * (len 0: from off to the end; reading from exactly the end gives nothing).
 * 0 and *want, or -1 when the range does not lie inside the object. */
int objstore_range_want(uint64_t size, uint64_t off, uint64_t len, uint64_t *want);

/* Why a range does not lie inside an object of `size` bytes, as a clause:
 * "it is 10 bytes, but the range [8, +4) was requested" (or "but reading
 * from offset 12 to the end was requested"). */
void objstore_range_why(uint64_t size, uint64_t off, uint64_t len, char *buf, size_t n);

/* ---- response bodies --------------------------------------------------- */

/* Room for an error document beside the bytes of a ranged read. */
#define OBJSTORE_ERR_ROOM ((size_t)1024 * 1024)

/* Receives a response body: pass objstore_body_cb as the request's on_body
 * and the body as its ud. Collecting (fwd NULL), it keeps at most `limit`
 * bytes (more sets overflow and aborts the transfer). Streaming, every byte
 * goes to fwd as it arrives and only the first `limit` are kept (an error
 * document). A retry (data NULL) starts over: kept bytes, flags and total
 * are reset and fwd is told (fwd(ud, NULL, 0)). */
struct objstore_body {
  unsigned char *p;
  size_t len, cap, limit;
  int overflow, oom;
  int (*fwd)(void *ud, const void *buf, size_t n);
  void *fwd_ud;
  uint64_t total; /* bytes of the current attempt, kept or not */
};

int objstore_body_cb(void *ud, const void *data, size_t n);

/* Why a transfer that ended without a response was stopped by the body
 * (a clause: "the response is larger than the 4096 bytes expected", "out of
 * memory"): 1, or 0 when the transport failed on its own. */
int objstore_body_stopped(const struct objstore_body *b, char *why, size_t n);

/* ---- ranged reads ------------------------------------------------------ */

/* One get of [off, off+len) (len 0: to the end) through HTTP: send the
 * request with `range` as a header line (when not "") and `body` as the
 * receiver, then ask objstore_read_answer what the answer means. */
struct objstore_read {
  uint64_t off, len;
  char range[64]; /* "Range: bytes=A-B", "Range: bytes=A-", or "" for the whole object */
  struct objstore_body body;
  int streamed; /* the bytes go to a callback, not into body */
};

/* Prepares a read that collects the bytes (fwd NULL) or streams them to
 * fwd(ud, ...). -1 with the reason in why when the range cannot be asked
 * for (off + len overflows, or a collected range does not fit in memory). */
int objstore_read_init(struct objstore_read *r, uint64_t off, uint64_t len,
                       int (*fwd)(void *ud, const void *buf, size_t n), void *ud, char *why,
                       size_t why_len);

enum objstore_verdict {
  OBJSTORE_DATA,      /* the bytes are in (objstore_read_take) or were streamed */
  OBJSTORE_ABSENT,    /* 404: no such object */
  OBJSTORE_NEED_SIZE, /* 416: call objstore_read_sized with the object's size */
  OBJSTORE_FAILED,    /* the answer is unusable; why says why */
  OBJSTORE_STATUS     /* another status: the sink explains it (error document in body) */
};

/* What the final status means for this read. A 200 to a ranged request
 * (the server ignored Range) gives the wanted part of the whole object when
 * collecting, and fails when streaming (the bytes are already handed on). */
enum objstore_verdict objstore_read_answer(struct objstore_read *r, long status, char *why,
                                           size_t why_len);

/* After OBJSTORE_NEED_SIZE: a read from exactly the end of an object of
 * `size` bytes gives nothing (OBJSTORE_DATA); any other range is past its
 * end (OBJSTORE_FAILED). */
enum objstore_verdict objstore_read_sized(struct objstore_read *r, uint64_t size, char *why,
                                          size_t why_len);

/* The collected bytes of an OBJSTORE_DATA answer, malloc'd (an empty read
 * is a 1-byte allocation), NULL when out of memory. The read gives them up. */
void *objstore_read_take(struct objstore_read *r, size_t *n);
void objstore_read_free(struct objstore_read *r);

/* ---- encodings and digests --------------------------------------------- */

/* RFC 3986 percent-encoding: every byte but A-Z a-z 0-9 - . _ ~ becomes %XX
 * (upper-case hex, as SigV4 and GCS want); '/' is kept when keep_slash.
 * malloc'd, NULL on OOM. */
char *objstore_uri_encode(const char *s, size_t n, int keep_slash);

/* A canonical query string from npairs name/value pairs (kv[2i], kv[2i+1];
 * a NULL or empty value gives "name="), each encoded and the pairs sorted by
 * name then value (SigV4 signs this order; other servers do not mind it).
 * malloc'd, NULL on OOM. */
char *objstore_query(const char *const *kv, size_t npairs);

/* Base64 with padding (RFC 4648 section 4), and base64url without padding
 * (RFC 7515, JWTs). malloc'd, NULL on OOM or a buffer over 1 GiB. */
char *objstore_base64(const void *data, size_t len);
char *objstore_base64url(const void *data, size_t len);

#define OBJSTORE_SHA256_HEX_LEN 64
#define OBJSTORE_MD5_HEX_LEN 32
#define OBJSTORE_MD5_B64_LEN 24
/* Lower-case hex SHA-256, and MD5 as hex and/or base64 (either may be
 * NULL), of a buffer (p may be NULL when n is 0). 0, or -1 if OpenSSL
 * failed. */
int objstore_sha256_hex(const void *p, size_t n, char out[OBJSTORE_SHA256_HEX_LEN + 1]);
int objstore_md5(const void *p, size_t n, char hex[OBJSTORE_MD5_HEX_LEN + 1],
                 char b64[OBJSTORE_MD5_B64_LEN + 1]);

/* A decimal unsigned 64-bit number that makes up the whole string (no sign,
 * no space): 0, or -1. */
int objstore_parse_u64(const char *s, uint64_t *out);

/* Wipes and frees a string that held a secret (NULL is fine). */
void objstore_wipe_free(char *s);

/* ---- the host ---------------------------------------------------------- */

/* ENGINE_OK when the host provides the HTTP client (ABI 1.1); otherwise
 * the error, naming the sink, is set and ENGINE_ERROR returned. */
int objstore_need_http(const struct engine_host *h, const char *sink);

#endif
