/* Parallel read-ahead for restores: worker threads fetch, decrypt and
 * decompress the blobs of a known sequence ahead of the consumer, which
 * takes them in order. Neighbouring blobs of one pack are read with one
 * ranged request. Memory is bounded: the decoded blobs ahead of the
 * consumer live in one window of `budget` bytes (at least four times the
 * largest blob), the blobs kept for a later duplicate within keep_budget,
 * and each worker buffers about a blob of a streamed range (prefetch.c). */
#ifndef CORE_REPO_PREFETCH_H
#define CORE_REPO_PREFETCH_H

#include <stddef.h>

#include "repo/repo.h"

struct prefetch;

struct prefetch_opts {
  int threads;      /* workers (each reads and decodes one unit at a time) */
  size_t budget;    /* the window: decoded bytes ahead of the consumer (0: 24 MiB) */
  size_t range_max; /* the largest range of a pack read with one request */
  size_t max_ahead; /* blobs ahead of the consumer (0: 256) */
  /* decoded bytes of blobs kept for a later slot that wants the same blob
   * (0: every occurrence is read) */
  size_t keep_budget;
  /* read ranges streamed (repo_get_stream): a blob is decoded as soon as its
   * bytes have arrived, not when the whole range has */
  int stream;
  /* a range holds at least this % of wanted blob bytes (0: 75); lower means
   * fewer, larger requests that read more bytes nobody asked for */
  unsigned density;
};

/* ids: n blob ids (copied) in the order they will be consumed. The unit
 * holding the consumer's next blob is always fetched, whatever the budget. */
struct prefetch *prefetch_start(struct repo *r, const unsigned char (*ids)[32], size_t n,
                                enum blob_type type, const struct prefetch_opts *o);
/* Take blob `id`: the next one in sequence, skipping (and dropping) blobs
 * the consumer did not ask for. 1: *out set, owned by the read-ahead and
 * valid until the next prefetch_take or prefetch_stop; 0: id not ahead in
 * the sequence (caller reads it directly); -1: error (*err). */
int prefetch_take(struct prefetch *p, const unsigned char id[32], const void **out, size_t *n,
                  char **err);
void prefetch_stop(struct prefetch *p);

#endif
