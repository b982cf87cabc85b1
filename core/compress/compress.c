/* Compression stage: turns a chunk into a blob plaintext [algo byte][payload]
 * and back, with zstd (frame content size and checksum), gzip (zlib deflate,
 * gzip framing) or no compression. Runs on thread-pool workers, so codec
 * contexts are cached per thread instead of being rebuilt for every chunk. */
#include "compress/compress.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
/* for ZSTD_d_forceIgnoreChecksum (experimental in 1.5; an older library
 * refuses the parameter and the checksum is verified as before) */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

#include "util/log.h"

/* ---- per-thread codec contexts ---- */

struct codec_tls {
  /* Compression context in a fixed workspace (zstd's static-context API):
   * a context zstd allocates itself resizes its workspace to each input and
   * frees one that stayed 3x too large for a while, so a mix of small files
   * and large chunks kept freeing and allocating it, and every new
   * workspace's tables had to be zeroed in fresh pages (9 % of a backup of
   * small files). A fixed workspace, large enough for every input size at
   * the level in use, is never resized, and zstd's tables stay valid
   * between calls without zeroing. */
  ZSTD_CCtx *cctx;
  void *cctx_ws;
  size_t cctx_ws_size;
  int cctx_level;   /* level cctx_ws was sized for */
  ZSTD_CCtx *dcctx; /* zstd-managed context, if a fixed workspace is refused */
  ZSTD_DCtx *dctx;
  z_stream deflate;
  int deflate_level; /* level deflate was initialised with; 0 = not initialised */
  z_stream inflate;
  int inflate_ready;
  uint8_t *scratch; /* compress_encode_scratch's output */
  size_t scratch_cap;
};

static __thread struct codec_tls *tls_codec;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_ok;

/* Runs at thread exit (pool workers may come and go) so contexts do not leak. */
static void codec_tls_free(void *arg) {
  struct codec_tls *t = arg;
  if (t == NULL)
    return;
  free(t->cctx_ws); /* holds cctx: a static context is not freed by zstd */
  ZSTD_freeCCtx(t->dcctx);
  ZSTD_freeDCtx(t->dctx);
  if (t->deflate_level != 0)
    deflateEnd(&t->deflate);
  if (t->inflate_ready)
    inflateEnd(&t->inflate);
  free(t->scratch);
  free(t);
  if (tls_codec == t)
    tls_codec = NULL;
}

static void codec_tls_key_create(void) {
  tls_key_ok = pthread_key_create(&tls_key, codec_tls_free) == 0;
}

static struct codec_tls *codec_tls_get(void) {
  if (tls_codec != NULL)
    return tls_codec;
  pthread_once(&tls_once, codec_tls_key_create);
  if (!tls_key_ok)
    return NULL;
  struct codec_tls *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  if (pthread_setspecific(tls_key, t) != 0) {
    free(t);
    return NULL;
  }
  tls_codec = t;
  return t;
}

/* Workspace a context needs for any input at `level`, and for the
 * incompressibility samples (level 1). */
static size_t cctx_ws_need(int level) {
  size_t n = ZSTD_estimateCCtxSize(level);
  size_t n1 = ZSTD_estimateCCtxSize(1);
  return n > n1 ? n : n1;
}

/* A zstd-managed context, for when a fixed workspace cannot be had (or
 * a call failed for lack of room in it, which the estimate should make
 * impossible). */
static ZSTD_CCtx *tls_dyn_cctx(void) {
  struct codec_tls *t = codec_tls_get();
  if (t == NULL)
    return NULL;
  if (t->dcctx == NULL)
    t->dcctx = ZSTD_createCCtx();
  return t->dcctx;
}

/* This thread's compression context for `level`, reset by the caller. */
static ZSTD_CCtx *tls_cctx(int level) {
  struct codec_tls *t = codec_tls_get();
  if (t == NULL)
    return NULL;
  if (t->cctx != NULL && level == t->cctx_level)
    return t->cctx;
  size_t need = cctx_ws_need(level);
  if (ZSTD_isError(need))
    return tls_dyn_cctx();
  if (t->cctx != NULL && need <= t->cctx_ws_size) {
    t->cctx_level = level;
    return t->cctx;
  }
  void *ws = NULL;
  ZSTD_CCtx *c = NULL;
  if (posix_memalign(&ws, 64, need) == 0)
    c = ZSTD_initStaticCCtx(ws, need);
  if (c == NULL) {
    free(ws);
    return tls_dyn_cctx();
  }
  free(t->cctx_ws);
  t->cctx_ws = ws;
  t->cctx_ws_size = need;
  t->cctx_level = level;
  t->cctx = c;
  return c;
}

static ZSTD_DCtx *tls_dctx(void) {
  struct codec_tls *t = codec_tls_get();
  if (t == NULL)
    return NULL;
  if (t->dctx == NULL)
    t->dctx = ZSTD_createDCtx();
  return t->dctx;
}

/* A deflate stream at `level`, reset and ready for a new gzip member. */
static z_stream *tls_deflate(int level) {
  struct codec_tls *t = codec_tls_get();
  if (t == NULL)
    return NULL;
  if (t->deflate_level == level) {
    if (deflateReset(&t->deflate) == Z_OK)
      return &t->deflate;
  }
  if (t->deflate_level != 0) {
    deflateEnd(&t->deflate);
    t->deflate_level = 0;
  }
  memset(&t->deflate, 0, sizeof t->deflate);
  /* windowBits 15 + 16 selects the gzip wrapper (header + CRC-32 trailer). */
  if (deflateInit2(&t->deflate, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return NULL;
  t->deflate_level = level;
  return &t->deflate;
}

static z_stream *tls_inflate(void) {
  struct codec_tls *t = codec_tls_get();
  if (t == NULL)
    return NULL;
  if (t->inflate_ready) {
    if (inflateReset(&t->inflate) == Z_OK)
      return &t->inflate;
    inflateEnd(&t->inflate);
    t->inflate_ready = 0;
  }
  memset(&t->inflate, 0, sizeof t->inflate);
  /* 15 + 16: accept the gzip wrapper only, as written by compress_encode. */
  if (inflateInit2(&t->inflate, 15 + 16) != Z_OK)
    return NULL;
  t->inflate_ready = 1;
  return &t->inflate;
}

/* ---- names and levels ---- */

int compress_algo_from_name(const char *name) {
  if (name == NULL)
    return -1;
  if (strcmp(name, "none") == 0)
    return COMPRESS_NONE;
  if (strcmp(name, "zstd") == 0)
    return COMPRESS_ZSTD;
  if (strcmp(name, "gzip") == 0)
    return COMPRESS_GZIP;
  return -1;
}

const char *compress_algo_name(enum compress_algo a) {
  switch (a) {
  case COMPRESS_NONE:
    return "none";
  case COMPRESS_ZSTD:
    return "zstd";
  case COMPRESS_GZIP:
    return "gzip";
  }
  return "unknown";
}

void compress_level_range(enum compress_algo a, int *min, int *max) {
  switch (a) {
  case COMPRESS_ZSTD:
    *min = 1;
    *max = 19;
    return;
  case COMPRESS_GZIP:
    *min = 1;
    *max = 9;
    return;
  case COMPRESS_NONE:
    break;
  }
  *min = 0;
  *max = 0;
}

int compress_default_level(enum compress_algo a) {
  switch (a) {
  case COMPRESS_ZSTD:
    return 3;
  case COMPRESS_GZIP:
    return 6;
  case COMPRESS_NONE:
    break;
  }
  return 0;
}

/* ---- encode ---- */

/* Compress into dst (capacity cap). Returns 1 with *written set if the
 * result fits, 0 if it does not fit (the caller stores the input raw),
 * -1 on a codec failure (already logged). */
static size_t zstd_compress_with(ZSTD_CCtx *cctx, int level, const void *in, size_t in_len,
                                 uint8_t *dst, size_t cap) {
  /* Reset the parameters too: the context is shared by every caller on this
   * thread and a previous call may have failed halfway. */
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  /* The content size lets decode check max_out before allocating; the
   * checksum catches a wrong decode (e.g. a bad pack offset) cheaply. */
  if (!ZSTD_isError(r))
    r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
  if (!ZSTD_isError(r))
    r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  if (ZSTD_isError(r))
    return r;
  return ZSTD_compress2(cctx, dst, cap, in, in_len);
}

static int zstd_encode(int level, const void *in, size_t in_len, uint8_t *dst, size_t cap,
                       size_t *written) {
  ZSTD_CCtx *cctx = tls_cctx(level);
  if (cctx == NULL) {
    log_error("zstd compression: unable to create a compression context: out of memory");
    return -1;
  }
  size_t r = zstd_compress_with(cctx, level, in, in_len, dst, cap);
  if (ZSTD_isError(r) && ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation) {
    ZSTD_CCtx *dyn = tls_dyn_cctx();
    if (dyn != NULL && dyn != cctx)
      r = zstd_compress_with(dyn, level, in, in_len, dst, cap);
  }
  if (ZSTD_isError(r)) {
    if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
      return 0;
    log_error("zstd compression of %zu bytes at level %d failed: %s", in_len, level,
              ZSTD_getErrorName(r));
    return -1;
  }
  *written = r;
  return 1;
}

/* zlib counts in uInt: hand it the next piece of the input once it has
 * consumed the last one, so any size_t works. */
static void zfeed(z_stream *zs, const uint8_t **src, size_t *in_left) {
  if (zs->avail_in == 0 && *in_left > 0) {
    uInt n = *in_left > UINT_MAX ? UINT_MAX : (uInt)*in_left;
    zs->next_in = (Bytef *)(uintptr_t)*src;
    zs->avail_in = n;
    *src += n;
    *in_left -= n;
  }
}

/* Same contract as zstd_encode. */
static int gzip_encode(int level, const void *in, size_t in_len, uint8_t *dst, size_t cap,
                       size_t *written) {
  z_stream *zs = tls_deflate(level);
  if (zs == NULL) {
    log_error("gzip compression: unable to initialise deflate at level %d: out of memory", level);
    return -1;
  }
  const uint8_t *src = in;
  size_t in_left = in_len, out_left = cap;
  zs->next_out = dst;
  zs->avail_out = 0;
  zs->avail_in = 0;
  /* zlib counts in uInt; feed both buffers in pieces so any size_t works. */
  for (;;) {
    zfeed(zs, &src, &in_left);
    if (zs->avail_out == 0) {
      if (out_left == 0)
        return 0;
      uInt n = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
      zs->avail_out = n;
      out_left -= n;
    }
    int rc = deflate(zs, in_left == 0 ? Z_FINISH : Z_NO_FLUSH);
    if (rc == Z_STREAM_END)
      break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      log_error("gzip compression of %zu bytes at level %d failed: %s", in_len, level,
                zs->msg != NULL ? zs->msg : "deflate error");
      /* Force a fresh stream next time rather than trusting this one. */
      deflateEnd(zs);
      tls_codec->deflate_level = 0;
      return -1;
    }
    /* Z_BUF_ERROR means no progress: with input left that is only possible
     * when the output is full, which the next iteration detects. */
  }
  *written = (size_t)((uint8_t *)zs->next_out - dst);
  return 1;
}

/* Large chunks that do not compress (media, archives, encrypted data) are
 * detected from three 16 KiB samples compressed at zstd's fastest level:
 * if they shrink by less than 2 %, the chunk is stored raw without running
 * the configured (slower) level over all of it. */
#define SAMPLE_MIN_INPUT (256u * 1024u)
#define SAMPLE_LEN (16u * 1024u)

/* `ctx_level` picks the context: the zstd level the chunk will be
 * compressed at (its workspace also fits the level-1 samples, so a thread
 * sizes it once), or 1 for other algorithms. */
static int looks_incompressible(const uint8_t *in, size_t in_len, int ctx_level) {
  if (in_len < SAMPLE_MIN_INPUT)
    return 0;
  ZSTD_CCtx *cctx = tls_cctx(ctx_level);
  if (cctx == NULL)
    return 0;
  uint8_t dst[SAMPLE_LEN + SAMPLE_LEN / 64 + 1024]; /* > ZSTD_compressBound(SAMPLE_LEN) */
  size_t offs[3] = {0, in_len / 2 - SAMPLE_LEN / 2, in_len - SAMPLE_LEN};
  size_t total = 0;
  for (int i = 0; i < 3; i++) {
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    size_t r = ZSTD_compressCCtx(cctx, dst, sizeof(dst), in + offs[i], SAMPLE_LEN, 1);
    if (ZSTD_isError(r))
      return 0;
    total += r;
  }
  return total * 100 >= (size_t)3 * SAMPLE_LEN * 98;
}

/* Encode into buf, which has room for in_len + 1 bytes (the raw fallback,
 * which is also the largest result accepted: compressed output only wins
 * if it is strictly smaller than the input). Returns 0 or -1. */
static int encode_into(enum compress_algo a, int level, const void *in, size_t in_len, uint8_t *buf,
                       size_t *out_len) {
  size_t clen = 0;
  int fits = 0;
  if (a != COMPRESS_NONE && in_len > 1 &&
      !looks_incompressible(in, in_len, a == COMPRESS_ZSTD ? level : 1)) {
    if (a == COMPRESS_ZSTD)
      fits = zstd_encode(level, in, in_len, buf + 1, in_len - 1, &clen);
    else
      fits = gzip_encode(level, in, in_len, buf + 1, in_len - 1, &clen);
    if (fits < 0)
      return -1;
  }
  if (fits) {
    buf[0] = (uint8_t)a;
    *out_len = clen + 1;
    return 0;
  }
  buf[0] = COMPRESS_NONE;
  if (in_len > 0)
    memcpy(buf + 1, in, in_len);
  *out_len = in_len + 1;
  return 0;
}

static int check_encode_args(enum compress_algo a, int level, size_t in_len) {
  int lo, hi;
  if (a != COMPRESS_NONE && a != COMPRESS_ZSTD && a != COMPRESS_GZIP) {
    log_error("compression: unknown algorithm %d", (int)a);
    return -1;
  }
  compress_level_range(a, &lo, &hi);
  if (level < lo || level > hi) {
    log_error("compression: level %d is out of range for %s (%d..%d)", level, compress_algo_name(a),
              lo, hi);
    return -1;
  }
  if (in_len == SIZE_MAX) {
    log_error("compression: input of %zu bytes is too large", in_len);
    return -1;
  }
  return 0;
}

int compress_encode(enum compress_algo a, int level, const void *in, size_t in_len, void **out,
                    size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (check_encode_args(a, level, in_len) != 0)
    return -1;
  uint8_t *buf = malloc(in_len + 1);
  if (buf == NULL) {
    log_error("compression: unable to allocate %zu bytes: out of memory", in_len + 1);
    return -1;
  }
  size_t n;
  if (encode_into(a, level, in, in_len, buf, &n) != 0) {
    free(buf);
    return -1;
  }
  if (n < in_len + 1) {
    /* Give back the unused tail; the result may sit in memory a while. */
    uint8_t *shrunk = realloc(buf, n);
    if (shrunk != NULL)
      buf = shrunk;
  }
  *out = buf;
  *out_len = n;
  return 0;
}

int compress_encode_scratch(enum compress_algo a, int level, const void *in, size_t in_len,
                            const void **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (check_encode_args(a, level, in_len) != 0)
    return -1;
  struct codec_tls *t = codec_tls_get();
  if (t == NULL) {
    log_error("compression: unable to allocate a per-thread context: out of memory");
    return -1;
  }
  if (t->scratch_cap < in_len + 1) {
    /* free first: realloc would copy contents nobody needs */
    free(t->scratch);
    t->scratch_cap = 0;
    t->scratch = malloc(in_len + 1);
    if (t->scratch == NULL) {
      log_error("compression: unable to allocate %zu bytes: out of memory", in_len + 1);
      return -1;
    }
    t->scratch_cap = in_len + 1;
  }
  if (encode_into(a, level, in, in_len, t->scratch, out_len) != 0)
    return -1;
  *out = t->scratch;
  return 0;
}

/* ---- decode ---- */

/* A zstd frame's checks before decoding: 0 and its content size in *n, or
 * -1. */
static int zstd_frame(const uint8_t *in, size_t in_len, size_t max_out, size_t *n,
                      const char **err) {
  /* Only a regular frame: skippable frames would "decode" to nothing. */
  if (in_len < 4 || in[0] != 0x28 || in[1] != 0xB5 || in[2] != 0x2F || in[3] != 0xFD) {
    *err = "corrupt zstd frame: bad magic number";
    return -1;
  }
  unsigned long long fcs = ZSTD_getFrameContentSize(in, in_len);
  if (fcs == ZSTD_CONTENTSIZE_ERROR) {
    *err = "corrupt zstd frame header";
    return -1;
  }
  /* compress_encode always records the size; without it we could not bound
   * the allocation up front, so such a frame is not ours. */
  if (fcs == ZSTD_CONTENTSIZE_UNKNOWN) {
    *err = "zstd frame does not record its content size";
    return -1;
  }
  if (fcs > max_out) {
    *err = "zstd frame content size exceeds the allowed maximum";
    return -1;
  }
  /* Exactly one frame, nothing after it. */
  size_t frame_len = ZSTD_findFrameCompressedSize(in, in_len);
  if (ZSTD_isError(frame_len) || frame_len != in_len) {
    *err = "corrupt zstd frame: truncated or followed by trailing data";
    return -1;
  }
  *n = (size_t)fcs;
  return 0;
}

/* Decode a checked frame of content size n into buf. */
static int zstd_run(const uint8_t *in, size_t in_len, int flags, uint8_t *buf, size_t n,
                    const char **err) {
  ZSTD_DCtx *dctx = tls_dctx();
  if (dctx == NULL) {
    *err = "unable to create a zstd decompression context: out of memory";
    return -1;
  }
  ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
  (void)ZSTD_DCtx_setParameter(dctx, ZSTD_d_forceIgnoreChecksum,
                               (flags & COMPRESS_DECODE_AUTHENTICATED) ? ZSTD_d_ignoreChecksum
                                                                       : ZSTD_d_validateChecksum);
  size_t r = ZSTD_decompressDCtx(dctx, buf, n, in, in_len);
  if (ZSTD_isError(r) || r != n) {
    *err = ZSTD_isError(r) && ZSTD_getErrorCode(r) == ZSTD_error_checksum_wrong
               ? "corrupt zstd frame: checksum mismatch"
               : "corrupt zstd frame: decompression failed";
    return -1;
  }
  return 0;
}

static int zstd_decode(const uint8_t *in, size_t in_len, size_t max_out, int flags, void **out,
                       size_t *out_len, const char **err) {
  size_t n;
  if (zstd_frame(in, in_len, max_out, &n, err) != 0)
    return -1;
  uint8_t *buf = malloc(n > 0 ? n : 1);
  if (buf == NULL) {
    *err = "unable to allocate the decompression buffer: out of memory";
    return -1;
  }
  if (zstd_run(in, in_len, flags, buf, n, err) != 0) {
    free(buf);
    return -1;
  }
  *out = buf;
  *out_len = n;
  return 0;
}

static int gzip_decode(const uint8_t *in, size_t in_len, size_t max_out, void **out,
                       size_t *out_len, const char **err) {
  z_stream *zs = tls_inflate();
  if (zs == NULL) {
    *err = "unable to initialise zlib inflate: out of memory";
    return -1;
  }
  /* Growing buffer capped at max_out + 1: reaching the extra byte proves the
   * stream is too large without ever allocating much beyond the limit. */
  size_t limit = max_out == SIZE_MAX ? SIZE_MAX : max_out + 1;
  size_t cap = in_len < limit / 4 ? in_len * 4 : limit;
  if (cap < 4096)
    cap = limit < 4096 ? limit : 4096;
  uint8_t *buf = malloc(cap);
  if (buf == NULL) {
    *err = "unable to allocate the decompression buffer: out of memory";
    return -1;
  }
  size_t used = 0, in_left = in_len;
  const uint8_t *src = in;
  int rc;
  zs->avail_in = 0;
  for (;;) {
    zfeed(zs, &src, &in_left);
    if (used == cap) {
      if (cap == limit) {
        *err = "gzip stream decodes to more than the allowed maximum";
        goto fail;
      }
      size_t ncap = cap > limit / 2 ? limit : cap * 2;
      uint8_t *nbuf = realloc(buf, ncap);
      if (nbuf == NULL) {
        *err = "unable to grow the decompression buffer: out of memory";
        goto fail;
      }
      buf = nbuf;
      cap = ncap;
    }
    size_t room = cap - used;
    uInt avail = room > UINT_MAX ? UINT_MAX : (uInt)room;
    zs->next_out = buf + used;
    zs->avail_out = avail;
    rc = inflate(zs, Z_NO_FLUSH);
    used += avail - zs->avail_out;
    if (rc == Z_STREAM_END)
      break;
    if (rc == Z_OK)
      continue;
    /* Input is refilled and output room ensured above, so "no progress"
     * can only mean the input ended before the stream did. */
    if (rc == Z_BUF_ERROR && zs->avail_in == 0 && in_left == 0) {
      *err = "corrupt gzip stream: truncated";
      goto fail;
    }
    *err = rc == Z_MEM_ERROR ? "zlib inflate ran out of memory" : "corrupt gzip stream";
    goto fail;
  }
  if (used > max_out) {
    *err = "gzip stream decodes to more than the allowed maximum";
    goto fail;
  }
  if (zs->avail_in != 0 || in_left != 0) {
    *err = "corrupt gzip stream: trailing data after the end of the stream";
    goto fail;
  }
  if (used < cap) {
    uint8_t *shrunk = realloc(buf, used > 0 ? used : 1);
    if (shrunk != NULL)
      buf = shrunk;
  }
  *out = buf;
  *out_len = used;
  return 0;
fail:
  free(buf);
  return -1;
}

static int decode(const void *in, size_t in_len, size_t max_out, int flags, void **out,
                  size_t *out_len, const char **err) {
  const uint8_t *p = in;
  const char *dummy;

  if (err == NULL)
    err = &dummy;
  *err = NULL;
  *out = NULL;
  *out_len = 0;
  if (in_len == 0) {
    *err = "empty blob: missing the compression algorithm byte";
    return -1;
  }
  switch (p[0]) {
  case COMPRESS_NONE: {
    size_t n = in_len - 1;
    if (n > max_out) {
      *err = "stored blob exceeds the allowed maximum size";
      return -1;
    }
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) {
      *err = "unable to allocate the blob buffer: out of memory";
      return -1;
    }
    if (n > 0)
      memcpy(buf, p + 1, n);
    *out = buf;
    *out_len = n;
    return 0;
  }
  case COMPRESS_ZSTD:
    return zstd_decode(p + 1, in_len - 1, max_out, flags, out, out_len, err);
  case COMPRESS_GZIP:
    return gzip_decode(p + 1, in_len - 1, max_out, out, out_len, err);
  default:
    *err = "unknown compression algorithm byte";
    return -1;
  }
}

int compress_decode(const void *in, size_t in_len, size_t max_out, void **out, size_t *out_len,
                    const char **err) {
  return decode(in, in_len, max_out, 0, out, out_len, err);
}

int compress_decode_owned(void *in, size_t in_len, size_t max_out, int flags, void **out,
                          size_t *out_len, const char **err) {
  uint8_t *p = in;
  if (in_len > 0 && p[0] == COMPRESS_NONE && in_len - 1 <= max_out) {
    memmove(p, p + 1, in_len - 1);
    *out = p;
    *out_len = in_len - 1;
    if (err != NULL)
      *err = NULL;
    return 0;
  }
  int rc = decode(in, in_len, max_out, flags, out, out_len, err);
  free(in);
  return rc;
}

int compress_decode_into(const void *in, size_t in_len, int flags, void *out, size_t out_len,
                         const char **err) {
  const uint8_t *p = in;
  const char *dummy;
  if (err == NULL)
    err = &dummy;
  *err = NULL;
  size_t n = 0;
  if (in_len > 0 && p[0] == COMPRESS_NONE) {
    n = in_len - 1;
    if (n == out_len)
      memcpy(out, p + 1, n);
  } else if (in_len > 0 && p[0] == COMPRESS_ZSTD) {
    if (zstd_frame(p + 1, in_len - 1, out_len, &n, err) != 0)
      return -1;
    if (n == out_len)
      return zstd_run(p + 1, in_len - 1, flags, out, n, err);
  } else {
    void *tmp;
    if (decode(in, in_len, out_len, flags, &tmp, &n, err) != 0)
      return -1;
    if (n == out_len)
      memcpy(out, tmp, n);
    free(tmp);
  }
  if (n != out_len) {
    *err = "the decoded blob is not of the expected length";
    return -1;
  }
  return 0;
}
