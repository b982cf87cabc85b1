/* FastCDC content-defined chunker: gear rolling hash, normalised chunking
 * (level 2) and cut-point skipping, resumable across arbitrary input splits.
 *
 * Boundaries are part of the repository format (they decide which chunk ids
 * exist), so everything that influences them is defined byte-exactly here:
 *
 *  - Gear table: entry 4*k+j (k = 0..63, j = 0..3) is the little-endian
 *    uint64 at bytes 8*j..8*j+7 of
 *        SHA-256("engine fastcdc gear v1" || le64(seed) || le32(k)).
 *    Using a keyed table (the seed lives in the encrypted master key) keeps
 *    chunk boundaries, and thus pack sizes, from fingerprinting known files.
 *    The explicit little-endian encoding makes the table, and therefore every
 *    boundary, identical on all machines.
 *  - Hash: h = (h << 1) + gear[byte] (mod 2^64), restarted at 0 at the first
 *    hashed byte of each chunk. Bytes before min_size are never hashed.
 *  - Cut test: the top bits of h are all zero. With b = log2(avg_size), the
 *    mask has b + 2 bits while the chunk is shorter than avg_size and b - 2
 *    bits afterwards (normalisation level 2), which narrows the size
 *    distribution around avg_size. The top bits are used because they mix
 *    the widest window (up to 64 bytes) of input.
 *  - A chunk ends just after the byte whose hash passes the test, or at
 *    max_size bytes, whichever comes first.
 */
#include "chunker/fastcdc.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define CHUNKER_MAX_LIMIT (64u * 1024u * 1024u)
#define CHUNKER_MIN_LIMIT 64u

struct chunker {
  uint64_t gear[256];
  uint64_t mask_s; /* harder mask, used while the chunk is below avg_size */
  uint64_t mask_l; /* easier mask, used from avg_size up to max_size */
  uint32_t min_size;
  uint32_t avg_size;
  uint32_t max_size;
  /* Stream state: bytes of the current chunk consumed so far and the rolling
   * hash over its hashed part. Carrying both across calls is what makes the
   * boundaries independent of how the caller splits the stream. */
  uint32_t pos;
  uint64_t hash;
};

int chunker_params_check(const struct chunker_params *p, const char **err) {
  const char *msg = NULL;
  if (p == NULL)
    msg = "chunker parameters missing";
  else if (p->min_size < CHUNKER_MIN_LIMIT)
    msg = "chunker min_size must be at least 64 bytes";
  else if (p->avg_size == 0 || (p->avg_size & (p->avg_size - 1)) != 0)
    msg = "chunker avg_size must be a power of two";
  else if (p->min_size >= p->avg_size)
    msg = "chunker min_size must be smaller than avg_size";
  else if (p->avg_size >= p->max_size)
    msg = "chunker avg_size must be smaller than max_size";
  else if (p->max_size > CHUNKER_MAX_LIMIT)
    msg = "chunker max_size must not exceed 64 MiB";
  if (err != NULL)
    *err = msg;
  return msg == NULL ? 0 : -1;
}

static void put_le64(uint8_t *b, uint64_t v) {
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | b[i];
  return v;
}

static int gear_derive(uint64_t seed, uint64_t gear[256]) {
  static const char label[] = "engine fastcdc gear v1";
  uint8_t msg[sizeof label - 1 + 8 + 4];
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;

  memcpy(msg, label, sizeof label - 1);
  put_le64(msg + sizeof label - 1, seed);
  for (uint32_t k = 0; k < 64; k++) {
    uint8_t *ctr = msg + sizeof label - 1 + 8;
    ctr[0] = (uint8_t)k;
    ctr[1] = ctr[2] = ctr[3] = 0;
    if (EVP_Digest(msg, sizeof msg, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
      return -1;
    for (int j = 0; j < 4; j++)
      gear[4 * k + (uint32_t)j] = get_le64(md + 8 * j);
  }
  OPENSSL_cleanse(md, sizeof md);
  return 0;
}

static unsigned log2_u32(uint32_t v) {
  unsigned b = 0;
  while (v >>= 1)
    b++;
  return b;
}

static int chunker_init(struct chunker *c, const struct chunker_params *p) {
  if (chunker_params_check(p, NULL) != 0)
    return -1;
  if (gear_derive(p->seed, c->gear) != 0)
    return -1;
  /* Valid params give 7 <= b <= 25, so both shifts are in 1..63. */
  unsigned b = log2_u32(p->avg_size);
  c->mask_s = ~UINT64_C(0) << (64 - (b + 2));
  c->mask_l = ~UINT64_C(0) << (64 - (b - 2));
  c->min_size = p->min_size;
  c->avg_size = p->avg_size;
  c->max_size = p->max_size;
  chunker_reset(c);
  return 0;
}

int chunker_new(const struct chunker_params *p, struct chunker **out) {
  *out = NULL;
  struct chunker *c = malloc(sizeof *c);
  if (c == NULL)
    return -1;
  if (chunker_init(c, p) != 0) {
    free(c);
    return -1;
  }
  *out = c;
  return 0;
}

void chunker_free(struct chunker *c) {
  if (c == NULL)
    return;
  /* The gear table is derived from a secret; do not leave it in freed memory. */
  OPENSSL_cleanse(c, sizeof *c);
  free(c);
}

void chunker_reset(struct chunker *c) {
  c->pos = 0;
  c->hash = 0;
}

/* Roll the hash over [p, end) and return the position just past the first
 * byte whose hash has no bit of `mask` set, or NULL if none does. The hash
 * is written back either way. Kept inline with the loop body free of calls
 * and bounds checks other than the single end test: this is the hot path. */
static inline const uint8_t *gear_roll(const uint64_t *restrict gear, uint64_t mask, uint64_t *hash,
                                       const uint8_t *p, const uint8_t *end) {
  uint64_t h = *hash;
  /* Unrolled by four; each step still tests its own byte, so the result is
   * exactly the byte-at-a-time definition. */
  while (end - p >= 4) {
    h = (h << 1) + gear[p[0]];
    if (!(h & mask)) {
      p += 1;
      goto found;
    }
    h = (h << 1) + gear[p[1]];
    if (!(h & mask)) {
      p += 2;
      goto found;
    }
    h = (h << 1) + gear[p[2]];
    if (!(h & mask)) {
      p += 3;
      goto found;
    }
    h = (h << 1) + gear[p[3]];
    p += 4;
    if (!(h & mask))
      goto found;
  }
  while (p < end) {
    h = (h << 1) + gear[*p++];
    if (!(h & mask))
      goto found;
  }
  *hash = h;
  return NULL;
found:
  *hash = h;
  return p;
}

size_t chunker_scan(struct chunker *c, const uint8_t *data, size_t len, int *boundary) {
  size_t i = 0;
  uint32_t pos = c->pos;
  const uint8_t *cut;

  *boundary = 0;
  /* Cut-point skipping: no boundary can fall before min_size, so those bytes
   * are not even hashed. */
  if (pos < c->min_size) {
    size_t skip = c->min_size - pos;
    if (skip >= len) {
      c->pos = pos + (uint32_t)len;
      return len;
    }
    pos = c->min_size;
    i = skip;
  }
  if (pos < c->avg_size) {
    size_t n = len - i;
    if (n > c->avg_size - pos)
      n = c->avg_size - pos;
    cut = gear_roll(c->gear, c->mask_s, &c->hash, data + i, data + i + n);
    if (cut != NULL)
      goto found;
    pos += (uint32_t)n;
    i += n;
    if (pos < c->avg_size) {
      c->pos = pos;
      return len;
    }
  }
  {
    size_t n = len - i;
    if (n > c->max_size - pos)
      n = c->max_size - pos;
    cut = gear_roll(c->gear, c->mask_l, &c->hash, data + i, data + i + n);
    if (cut != NULL)
      goto found;
    pos += (uint32_t)n;
    i += n;
    if (pos == c->max_size) {
      cut = data + i;
      goto found;
    }
    c->pos = pos;
    return len;
  }
found:
  *boundary = 1;
  chunker_reset(c);
  return (size_t)(cut - data);
}

size_t chunker_cut_buffer(const struct chunker_params *p, const uint8_t *data, size_t len,
                          size_t *cuts, size_t max_cuts) {
  struct chunker c;
  size_t off = 0, count = 0;

  if (chunker_init(&c, p) != 0)
    return 0;
  /* Like snprintf, the count covers every chunk even when cuts is too short,
   * so a caller can size the array and retry. */
  while (off < len) {
    int boundary;
    off += chunker_scan(&c, data + off, len - off, &boundary);
    /* The end of the buffer ends the last chunk even without a boundary. */
    if (count < max_cuts)
      cuts[count] = off;
    count++;
  }
  OPENSSL_cleanse(&c, sizeof c);
  return count;
}
