/* The receiver of response bodies (objstore.h): collects them into one
 * growing buffer, or hands them on as they arrive, and starts over when the
 * HTTP client retries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objstore.h"

#define FIRST_CAP ((size_t)64 * 1024)

/* Makes room for n more bytes, growing by doubling up to the limit. */
static int reserve(struct objstore_body *b, size_t n) {
  if (n <= b->cap - b->len)
    return 0;
  size_t cap = b->cap ? b->cap : FIRST_CAP;
  while (cap - b->len < n)
    cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
  if (cap > b->limit)
    cap = b->limit;
  unsigned char *p = realloc(b->p, cap);
  if (p == NULL) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

int objstore_body_cb(void *ud, const void *data, size_t n) {
  struct objstore_body *b = ud;
  if (data == NULL) { /* the request is being retried: start over */
    b->len = 0;
    b->overflow = b->oom = 0;
    b->total = 0;
    return b->fwd != NULL ? b->fwd(b->fwd_ud, NULL, 0) : 0;
  }
  b->total += n;
  if (b->fwd != NULL) {
    size_t keep = n < b->limit - b->len ? n : b->limit - b->len;
    if (keep > 0) {
      if (reserve(b, keep) != 0)
        return 1;
      memcpy(b->p + b->len, data, keep);
      b->len += keep;
    }
    return b->fwd(b->fwd_ud, data, n) != 0;
  }
  if (n > b->limit - b->len) {
    b->overflow = 1;
    return 1;
  }
  if (reserve(b, n) != 0)
    return 1;
  memcpy(b->p + b->len, data, n);
  b->len += n;
  return 0;
}

int objstore_body_stopped(const struct objstore_body *b, char *why, size_t n) {
  if (b->oom)
    snprintf(why, n, "out of memory");
  else if (b->overflow)
    snprintf(why, n, "the response is larger than the %zu bytes expected", b->limit);
  else
    return 0;
  return 1;
}
