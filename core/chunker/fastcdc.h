/* Content-defined chunker (FastCDC with normalised chunking).
 *
 * Boundaries depend only on content (and the repository's seed), so an
 * insertion shifts at most the chunks around it. The gear table is derived
 * from a 64-bit seed kept inside the encrypted master key, so boundaries do
 * not leak a fingerprint of known files to someone who sees pack sizes.
 */
#ifndef CORE_CHUNKER_FASTCDC_H
#define CORE_CHUNKER_FASTCDC_H

#include <stddef.h>
#include <stdint.h>

struct chunker_params {
  uint32_t min_size; /* no boundary before this many bytes (default 256 KiB) */
  uint32_t avg_size; /* target average, a power of two (default 1 MiB) */
  uint32_t max_size; /* forced boundary here (default 4 MiB) */
  uint64_t seed;     /* selects the gear table */
};

#define CHUNKER_DEFAULT_MIN (256u * 1024u)
#define CHUNKER_DEFAULT_AVG (1024u * 1024u)
#define CHUNKER_DEFAULT_MAX (4u * 1024u * 1024u)

struct chunker;

/* Validate parameters: min < avg < max, avg a power of two, max <= 64 MiB,
 * min >= 64. Returns 0 or -1 with a message in err (static string). */
int chunker_params_check(const struct chunker_params *p, const char **err);

/* 0 on success, -1 on invalid parameters or allocation failure. */
int chunker_new(const struct chunker_params *p, struct chunker **out);
void chunker_free(struct chunker *c);

/* Start a new stream (new item): forget the current chunk's length and hash. */
void chunker_reset(struct chunker *c);

/* Scan `len` bytes continuing the current chunk. Returns the number of bytes
 * consumed. If a chunk boundary was found, *boundary is set to 1 and the
 * return value is the offset just past the boundary (the current chunk ends
 * there; the chunker is reset for the next one). Otherwise *boundary is 0
 * and all `len` bytes were consumed. The end of a stream is always a
 * boundary; the caller handles that. */
size_t chunker_scan(struct chunker *c, const uint8_t *data, size_t len, int *boundary);

/* Convenience for tests and tools: chunk a whole buffer; writes up to
 * max_cuts end offsets into cuts, returns the number of chunks. */
size_t chunker_cut_buffer(const struct chunker_params *p, const uint8_t *data, size_t len,
                          size_t *cuts, size_t max_cuts);

#endif
