/* Compression stage: zstd, gzip (zlib deflate with gzip framing) or none.
 * Every stored blob's plaintext starts with one byte naming the algorithm
 * actually used, so a repository can mix them and a chunk that does not
 * compress is stored raw. */
#ifndef CORE_STAGE_COMPRESS_H
#define CORE_STAGE_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

enum compress_algo { COMPRESS_NONE = 0, COMPRESS_ZSTD = 1, COMPRESS_GZIP = 2 };

/* "none" | "zstd" | "gzip" -> algo; -1 if unknown. */
int compress_algo_from_name(const char *name);
const char *compress_algo_name(enum compress_algo a);
/* Valid level range for an algorithm (zstd 1..19, gzip 1..9, none 0..0). */
void compress_level_range(enum compress_algo a, int *min, int *max);
int compress_default_level(enum compress_algo a); /* zstd 3, gzip 6, none 0 */

/* Encode `in` as a blob plaintext: out = [algo byte][payload]. If the
 * compressed form is not smaller than the input, the input is stored with
 * COMPRESS_NONE. *out is malloc'd. Thread-safe. Returns 0 or -1. */
int compress_encode(enum compress_algo a, int level, const void *in, size_t in_len, void **out,
                    size_t *out_len);

/* compress_encode into a buffer of the calling thread: *out stays valid
 * until the thread's next compress_encode_scratch (or its exit). The backup's
 * workers seal the result into a pack at once; a buffer kept per thread
 * spares them a fresh 4 MiB allocation per chunk, which the allocator gave
 * back to the kernel after each use and took again zeroed, page by page. */
int compress_encode_scratch(enum compress_algo a, int level, const void *in, size_t in_len,
                            const void **out, size_t *out_len);

/* Decode a blob plaintext produced by compress_encode. `max_out` bounds the
 * decoded size (corrupt input must not make us allocate without bound).
 * *out is malloc'd. Returns 0, or -1 with a static message in *err. */
int compress_decode(const void *in, size_t in_len, size_t max_out, void **out, size_t *out_len,
                    const char **err);

/* The input was authenticated (an AEAD tag over exactly these bytes): zstd's
 * content checksum is not verified. It guards against corruption, which the
 * tag already excludes, and costs ~12 % of zstd's decoding time here. */
#define COMPRESS_DECODE_AUTHENTICATED 1

/* compress_decode for a malloc'd `in` that the call takes over (freed, or
 * returned as *out): a stored (COMPRESS_NONE) payload is moved to the
 * front of `in` instead of being copied into a new buffer. */
int compress_decode_owned(void *in, size_t in_len, size_t max_out, int flags, void **out,
                          size_t *out_len, const char **err);

/* Decode into out, which must be exactly the decoded length (known from
 * elsewhere, e.g. the index): no allocation for zstd and stored payloads.
 * Returns 0, or -1 with a static message in *err (also when the payload
 * decodes to another length). */
int compress_decode_into(const void *in, size_t in_len, int flags, void *out, size_t out_len,
                         const char **err);

#endif
