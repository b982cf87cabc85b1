/* Parallel read-ahead for restores: worker threads fetch, decrypt and
 * decompress the blobs of a known sequence ahead of the consumer, which
 * takes them in order. Neighbouring blobs of one pack are read with one
 * ranged request. Memory is bounded by the window: the decoded bytes
 * ahead of the consumer (their lengths come from the index) and a number
 * of blobs. */
#ifndef CORE_REPO_PREFETCH_H
#define CORE_REPO_PREFETCH_H

#include <stddef.h>

#include "repo/repo.h"

struct prefetch;

/* ids: n blob ids (copied) in the order they will be consumed; budget:
 * decoded bytes ahead (0: 24 MiB; the unit holding the next blob is always
 * fetched); range_max: the largest range of a pack read with one request
 * (blobs close together in one pack are read at once). */
struct prefetch *prefetch_start(struct repo *r, const unsigned char (*ids)[32], size_t n,
                                enum blob_type type, int threads, size_t budget,
                                size_t range_max);
/* Take blob `id`: the next one in sequence, skipping (and dropping) blobs
 * the consumer did not ask for. 1: *out set (malloc'd); 0: id not ahead in
 * the sequence (caller reads it directly); -1: error (*err). */
int prefetch_take(struct prefetch *p, const unsigned char id[32], void **out, size_t *n,
                  char **err);
void prefetch_stop(struct prefetch *p);

#endif
