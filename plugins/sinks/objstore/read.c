/* Ranged reads (objstore.h): which bytes a get returns, the Range header
 * that asks for them, and what an HTTP answer to it means. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objstore.h"

int objstore_range_want(uint64_t size, uint64_t off, uint64_t len, uint64_t *want) {
  if (off > size || (len > 0 && len > size - off))
    return -1;
  *want = len > 0 ? len : size - off;
  return 0;
}

void objstore_range_why(uint64_t size, uint64_t off, uint64_t len, char *buf, size_t n) {
  if (len == 0)
    snprintf(buf, n,
             "it is %" PRIu64 " bytes, but reading from offset %" PRIu64
             " to the end was requested",
             size, off);
  else
    snprintf(buf, n,
             "it is %" PRIu64 " bytes, but the range [%" PRIu64 ", +%" PRIu64 ") was requested",
             size, off, len);
}

int objstore_read_init(struct objstore_read *r, uint64_t off, uint64_t len,
                       int (*fwd)(void *ud, const void *buf, size_t n), void *ud, char *why,
                       size_t why_len) {
  memset(r, 0, sizeof *r);
  r->off = off;
  r->len = len;
  r->streamed = fwd != NULL;
  r->body.fwd = fwd;
  r->body.fwd_ud = ud;
  if (len > 0 && off > UINT64_MAX - len) {
    snprintf(why, why_len, "the range [%" PRIu64 ", +%" PRIu64 ") is out of range", off, len);
    return -1;
  }
  if (len > 0)
    snprintf(r->range, sizeof r->range, "Range: bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
  else if (off > 0)
    snprintf(r->range, sizeof r->range, "Range: bytes=%" PRIu64 "-", off);
  if (r->streamed) {
    r->body.limit = OBJSTORE_ERR_ROOM; /* only an error document is kept */
    return 0;
  }
  if (len == 0) {
    r->body.limit = SIZE_MAX;
    return 0;
  }
  if (len > SIZE_MAX - OBJSTORE_ERR_ROOM) {
    snprintf(why, why_len, "the range [%" PRIu64 ", +%" PRIu64 ") does not fit in memory", off,
             len);
    return -1;
  }
  /* exactly the range, and room for an error document instead */
  r->body.limit = (size_t)len + OBJSTORE_ERR_ROOM;
  r->body.p = malloc((size_t)len);
  if (r->body.p == NULL) {
    snprintf(why, why_len, "out of memory for %" PRIu64 " bytes", len);
    return -1;
  }
  r->body.cap = (size_t)len;
  return 0;
}

/* The wanted part of a whole object received for a ranged request. */
static enum objstore_verdict whole_object(struct objstore_read *r, char *why, size_t why_len) {
  if (r->streamed) {
    snprintf(why, why_len, "the server ignored the Range header");
    return OBJSTORE_FAILED;
  }
  uint64_t want = 0;
  if (objstore_range_want(r->body.len, r->off, r->len, &want) != 0) {
    objstore_range_why(r->body.len, r->off, r->len, why, why_len);
    return OBJSTORE_FAILED;
  }
  memmove(r->body.p, r->body.p + r->off, (size_t)want);
  r->body.len = (size_t)want;
  return OBJSTORE_DATA;
}

enum objstore_verdict objstore_read_answer(struct objstore_read *r, long status, char *why,
                                           size_t why_len) {
  if (status == 404)
    return OBJSTORE_ABSENT;
  if (status == 416)
    return OBJSTORE_NEED_SIZE;
  if (status != 200 && status != 206)
    return OBJSTORE_STATUS;
  if (status == 200 && r->range[0] != '\0')
    return whole_object(r, why, why_len);
  if (r->len > 0 && r->body.total < r->len) {
    snprintf(why, why_len, "the object ends early: %" PRIu64 " of %" PRIu64 " bytes received",
             r->body.total, r->len);
    return OBJSTORE_FAILED;
  }
  if (r->len > 0 && !r->streamed)
    r->body.len = (size_t)r->len; /* a server that sent more: the range is what was asked */
  return OBJSTORE_DATA;
}

enum objstore_verdict objstore_read_sized(struct objstore_read *r, uint64_t size, char *why,
                                          size_t why_len) {
  if (r->len == 0 && r->off == size) {
    r->body.len = 0;
    return OBJSTORE_DATA;
  }
  objstore_range_why(size, r->off, r->len, why, why_len);
  return OBJSTORE_FAILED;
}

void *objstore_read_take(struct objstore_read *r, size_t *n) {
  void *p = r->body.p;
  *n = r->body.len;
  if (p == NULL)
    p = malloc(1); /* an empty object */
  r->body.p = NULL;
  r->body.len = r->body.cap = 0;
  return p;
}

void objstore_read_free(struct objstore_read *r) {
  free(r->body.p);
  r->body.p = NULL;
  r->body.len = r->body.cap = 0;
}
