/* Loading a repository's index (index_load, index_note_saved,
 * index_cache_refresh: declared in index.h), and the local cache of the
 * decoded index that makes it fast (docs/internals/index-cache.md).
 *
 * Loading the index means reading, decrypting and parsing every index/
 * object: ~50 ms of JSON for 11,000 blobs here, more for large or remote
 * repositories. `engine run` and `engine restore` keep the decoded table in
 * a file of their own, outside the repository, and use it while the
 * repository's index/ listing is the one it was built from. Index objects
 * are named by the SHA-256 of their content, so the same names mean the
 * same content. The file is authenticated with a key derived from the
 * repository's MAC key: a cache of another repository, a damaged or an
 * altered one is ignored (and rebuilt), never trusted. It is only ever an
 * optimisation: any failure to read or write it falls back to the index
 * objects, with a debug message.
 *
 * File layout (little-endian):
 *   magic "ENGIXC01" | HMAC-SHA-256 of everything after it (32)
 *   u32 number of index objects, then per object: u16 name length, name
 *   u32 number of packs, then 32-byte pack ids (the index's pack table)
 *   u32 number of blobs, then per blob: id (32), pack (u32), offset (u32),
 *       length (u32), raw length (u32), type (u8)
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repo/index.h"
#include "repo/objects.h"
#include "util/log.h"

#define MAGIC "ENGIXC01"
#define MAGIC_LEN 8
#define HEAD_LEN (MAGIC_LEN + 32)
#define BLOB_REC 49

/* The cache's directory for this repository, or NULL when caching is off:
 * ENGINE_CACHE_DIR (empty or "off": no cache), else $XDG_CACHE_HOME/engine,
 * else $HOME/.cache/engine. */
static char *cache_dir(const struct repo *r) {
  const char *e = getenv("ENGINE_CACHE_DIR");
  if (e)
    return *e && strcmp(e, "off") != 0 ? xasprintf("%s/%s", e, r->id) : NULL;
  e = getenv("XDG_CACHE_HOME");
  if (e && e[0] == '/')
    return xasprintf("%s/engine/%s", e, r->id);
  e = getenv("HOME");
  if (e && e[0] == '/')
    return xasprintf("%s/.cache/engine/%s", e, r->id);
  return NULL;
}

static void cache_key(const struct repo *r, unsigned char key[32]) {
  static const char label[] = "engine index cache v1";
  unsigned int len = 32;
  HMAC(EVP_sha256(), r->mac_key, REPO_KEY_LEN, (const unsigned char *)label, sizeof(label) - 1, key,
       &len);
}

/* The file is read and written through a buffer of IO_BUF bytes, the
 * HMAC computed as the bytes pass: memory for the cache is this buffer,
 * whatever the number of blobs (a whole-file buffer cost 49 bytes a blob on
 * top of the index: 47 MiB at 1,000,000 blobs). */
#define IO_BUF ((size_t)1 << 20)

static EVP_MAC_CTX *mac_start(const struct repo *r) {
  unsigned char key[32];
  cache_key(r, key);
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
  EVP_MAC_free(mac); /* the context holds its own reference */
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
      OSSL_PARAM_construct_end()};
  if (ctx && EVP_MAC_init(ctx, key, sizeof(key), params) != 1) {
    EVP_MAC_CTX_free(ctx);
    ctx = NULL;
  }
  OPENSSL_cleanse(key, sizeof(key));
  return ctx;
}

static int mac_end(EVP_MAC_CTX *ctx, unsigned char mac[32]) {
  size_t len = 0;
  int ok = EVP_MAC_final(ctx, mac, &len, 32) == 1 && len == 32;
  EVP_MAC_CTX_free(ctx);
  return ok ? 0 : -1;
}

/* A bounds-checked reader over the body, refilled from the file. Every
 * byte of the body passes through the MAC exactly once, when it is read;
 * the caller checks the MAC once the body has been parsed to its end, and
 * throws away what it built if the MAC does not match. */
struct rd {
  int fd;
  EVP_MAC_CTX *mac;
  unsigned char *buf;
  size_t pos, len; /* buf[pos..len) not yet taken */
  uint64_t left;   /* bytes of the body not yet taken (buffered or not) */
  int failed;      /* a read or MAC update failed */
};

static const unsigned char *take(struct rd *d, size_t n) {
  if (d->left < n || n > IO_BUF)
    return NULL;
  if (d->len - d->pos < n) {
    size_t have = d->len - d->pos;
    memmove(d->buf, d->buf + d->pos, have);
    d->pos = 0;
    d->len = have;
    uint64_t unread = d->left - have;
    while (d->len < n) {
      size_t want = IO_BUF - d->len;
      if (want > unread)
        want = (size_t)unread;
      ssize_t k = read(d->fd, d->buf + d->len, want);
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0 || EVP_MAC_update(d->mac, d->buf + d->len, (size_t)k) != 1) {
        d->failed = 1;
        return NULL;
      }
      d->len += (size_t)k;
      unread -= (size_t)k;
    }
  }
  const unsigned char *p = d->buf + d->pos;
  d->pos += n;
  d->left -= n;
  return p;
}

static int take_u32(struct rd *d, uint32_t *v) {
  const unsigned char *p = take(d, 4);
  if (!p)
    return -1;
  *v = le32_get(p);
  return 0;
}

/* The writing side: bytes are MACed and buffered, written IO_BUF at a time. */
struct wr {
  int fd;
  EVP_MAC_CTX *mac;
  unsigned char *buf;
  size_t used;
  int failed;
};

static void wr_flush(struct wr *w) {
  size_t done = 0;
  while (!w->failed && done < w->used) {
    ssize_t k = write(w->fd, w->buf + done, w->used - done);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      w->failed = 1;
    else
      done += (size_t)k;
  }
  w->used = 0;
}

static void put(struct wr *w, const void *p, size_t n) {
  if (w->failed)
    return;
  if (EVP_MAC_update(w->mac, p, n) != 1) {
    w->failed = 1;
    return;
  }
  const unsigned char *b = p;
  while (n > 0) {
    if (w->used == IO_BUF)
      wr_flush(w);
    size_t k = IO_BUF - w->used < n ? IO_BUF - w->used : n;
    memcpy(w->buf + w->used, b, k);
    w->used += k;
    b += k;
    n -= k;
  }
}

static void put_u32(struct wr *w, uint32_t v) {
  unsigned char b[4];
  le32_put(b, v);
  put(w, b, 4);
}

/* Fill the (empty) index from the cache body; NULL or a reason it is not
 * usable. */
static const char *load_body(struct index *ix, struct rd *d, char *const *names, size_t n_names) {
  uint32_t nf, np, nb;
  if (take_u32(d, &nf) != 0)
    return "truncated";
  if (nf != n_names)
    return "built from other index objects";
  for (size_t i = 0; i < nf; i++) {
    const unsigned char *l = take(d, 2);
    if (!l)
      return "truncated";
    size_t len = (size_t)l[0] | (size_t)l[1] << 8;
    const unsigned char *name = take(d, len);
    if (!name)
      return "truncated";
    if (strlen(names[i]) != len || memcmp(names[i], name, len) != 0)
      return "built from other index objects";
  }
  if (take_u32(d, &np) != 0 || d->left < (uint64_t)np * 32)
    return "truncated";
  for (size_t i = 0; i < np; i++) {
    const unsigned char *id = take(d, 32);
    if (!id)
      return "truncated";
    if (index_add_pack(ix, id) != i)
      return "a pack is listed twice";
  }
  if (take_u32(d, &nb) != 0 || d->left != (uint64_t)nb * BLOB_REC)
    return "truncated";
  for (size_t i = 0; i < nb; i++) {
    const unsigned char *b = take(d, BLOB_REC);
    if (!b)
      return "truncated";
    uint32_t pack = le32_get(b + 32);
    uint8_t type = b[48];
    if (pack >= np || (type != BLOB_DATA && type != BLOB_TREE))
      return "a blob names no pack or has no type";
    index_put(ix, b, pack, le32_get(b + 36), le32_get(b + 40), le32_get(b + 44), type);
  }
  return NULL;
}

static int index_cache_load(struct repo *r, char *const *names, size_t n_names) {
  char *dir = cache_dir(r);
  if (!dir)
    return -1;
  char *path = xasprintf("%s/index", dir);
  free(dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  unsigned char head[HEAD_LEN];
  const char *why = NULL;
  if (fd < 0) {
    if (errno != ENOENT)
      log_debug("index cache %s: unreadable (%s); reading the index objects", path,
                strerror(errno));
    free(path);
    return -1;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < HEAD_LEN ||
      read(fd, head, HEAD_LEN) != HEAD_LEN)
    why = "unreadable or too short";
  else if (memcmp(head, MAGIC, MAGIC_LEN) != 0)
    why = "not an index cache of this engine version";
  struct rd d = {.fd = fd, .left = why ? 0 : (uint64_t)st.st_size - HEAD_LEN};
  if (!why) {
    d.mac = mac_start(r);
    d.buf = xmalloc(IO_BUF);
    if (!d.mac)
      why = "no HMAC (OpenSSL failed)";
  }
  if (!why) {
    why = load_body(r->index, &d, names, n_names);
    /* what load_body did not take still goes through the MAC: a damaged or
     * foreign file is reported as such, whatever its content says */
    while (!d.failed && d.left > 0)
      take(&d, d.left < IO_BUF ? (size_t)d.left : IO_BUF);
    if (d.failed)
      why = "unreadable";
  }
  if (d.mac) {
    unsigned char mac[32];
    int ok = mac_end(d.mac, mac) == 0;
    if (!d.failed && (!ok || CRYPTO_memcmp(mac, head + MAGIC_LEN, 32) != 0))
      why = "fails authentication (damaged, or of another repository)";
  }
  close(fd);
  free(d.buf);
  if (why) {
    log_debug("index cache %s: %s; reading the index objects", path, why);
    /* start over from an empty index */
    index_free(r->index);
    r->index = index_new();
  } else {
    log_debug("index: %zu blobs in %zu packs from the cache %s", index_size(r->index),
              r->index->n_packs, path);
  }
  free(path);
  return why ? -1 : 0;
}

static int mkdir_p(char *path, mode_t mode) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    int rc = mkdir(path, mode);
    *p = '/';
    if (rc != 0 && errno != EEXIST)
      return -1;
  }
  return mkdir(path, mode) == 0 || errno == EEXIST ? 0 : -1;
}

static void count_entry(void *ud, const struct index_entry *e) {
  (void)e;
  (*(size_t *)ud)++;
}

static void write_entry(void *ud, const struct index_entry *e) {
  unsigned char rec[BLOB_REC];
  memcpy(rec, e->id, 32);
  le32_put(rec + 32, e->pack);
  le32_put(rec + 36, e->offset);
  le32_put(rec + 40, e->length);
  le32_put(rec + 44, e->raw_length);
  rec[48] = e->type;
  put(ud, rec, BLOB_REC);
}

static void index_cache_save(struct repo *r, char *const *names, size_t n_names) {
  char *dir = cache_dir(r);
  if (!dir)
    return;
  struct index *ix = r->index;
  size_t stored = 0;
  index_foreach(ix, count_entry, &stored);
  char *tmp = xasprintf("%s/index.XXXXXX", dir), *path = xasprintf("%s/index", dir);
  const char *what = "unable to create its directory";
  struct wr w = {.fd = -1};
  if (mkdir_p(dir, 0700) == 0) {
    what = "unable to create a temporary file";
    w.fd = mkstemp(tmp); /* 0600 */
  }
  if (w.fd >= 0) {
    what = "unable to write it";
    w.mac = mac_start(r);
    w.buf = xmalloc(IO_BUF);
    /* the header first, its MAC filled in at the end */
    memcpy(w.buf, MAGIC, MAGIC_LEN);
    memset(w.buf + MAGIC_LEN, 0, 32);
    w.used = HEAD_LEN;
    w.failed = w.mac == NULL;
    put_u32(&w, (uint32_t)n_names);
    for (size_t i = 0; i < n_names; i++) {
      size_t len = strlen(names[i]);
      unsigned char l[2] = {(unsigned char)len, (unsigned char)(len >> 8)};
      put(&w, l, 2);
      put(&w, names[i], len);
    }
    put_u32(&w, (uint32_t)ix->n_packs);
    if (ix->n_packs > 0) /* packs is NULL in an index without packs */
      put(&w, ix->packs, ix->n_packs * 32);
    put_u32(&w, (uint32_t)stored);
    index_foreach(ix, write_entry, &w);
    wr_flush(&w);
    unsigned char mac[32];
    int ok =
        w.mac && mac_end(w.mac, mac) == 0 && !w.failed && pwrite(w.fd, mac, 32, MAGIC_LEN) == 32;
    ok = close(w.fd) == 0 && ok;
    if (ok && rename(tmp, path) == 0) {
      what = NULL;
      log_debug("index cache %s: written (%zu blobs)", path, stored);
    } else {
      if (ok)
        what = "unable to rename it into place";
      unlink(tmp);
    }
  }
  if (what)
    log_debug("index cache %s: %s: %s (the index objects are read each time)", path, what,
              strerror(errno));
  free(w.buf);
  free(tmp);
  free(path);
  free(dir);
}

/* ---- loading the index ------------------------------------------------ */

int index_load(struct repo *r, char **err) {
  json_t *list;
  if (repo_list(r, "index/", &list, err) != 0)
    return -1;
  size_t n = json_array_size(list); /* sorted by name */
  char **names = xcalloc(n ? n : 1, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    names[i] = xstrdup(json_string_value(json_object_get(json_array_get(list, i), "name")));
  json_decref(list);
  int cached = r->use_index_cache && n > 0 && index_cache_load(r, names, n) == 0;
  struct index *ix = r->index; /* the cache's load replaces it */
  for (size_t i = 0; i < n && !cached; i++) {
    char *e = NULL;
    if (index_load_object(r, names[i] + strlen("index/"), ix, &e) != 0) {
      /* the blobs it lists are unknown now; the caller decides what that
       * means (check reports it, prune refuses, restore and run go on) */
      json_array_append_new(ix->damaged, json_pack("{s:s, s:s}", "name", names[i], "error", e));
      free(e);
    }
  }
  int none_opens = r->write_only && n > 0 && !cached && json_array_size(ix->damaged) == n;
  if (r->write_only && n > 0 && cached) {
    /* the cache is keyed with the id key, which a rewrite keeps: check that
     * the credential's index key still opens the index */
    struct index *probe = index_new();
    char *e = NULL;
    none_opens = index_load_object(r, names[0] + strlen("index/"), probe, &e) != 0;
    free(e);
    index_free(probe);
  }
  if (none_opens) {
    /* a writer that dedups against nothing would seal packs to a public key
     * no reader holds any more */
    *err = xasprintf("the repository's index objects do not open with the writer credential's "
                     "index key: the repository's keys were rewritten ('engine key rotate "
                     "--rewrite') since the credential was made, or it belongs to another "
                     "repository; make a new one with 'engine key add PIPELINE --write-only "
                     "--out FILE'");
    for (size_t i = 0; i < n; i++)
      free(names[i]);
    free(names);
    return -1;
  }
  /* a cache must never stand for an index that could not be read whole */
  if (r->use_index_cache && n > 0 && !cached && json_array_size(ix->damaged) == 0)
    index_cache_save(r, names, n);
  ix->files = names;
  ix->n_files = n;
  return 0;
}

void index_note_saved(struct repo *r, const char *id_hex) {
  struct index *ix = r->index;
  char *name = xasprintf("index/%s", id_hex);
  size_t at = 0;
  while (at < ix->n_files && strcmp(ix->files[at], name) < 0)
    at++;
  if (at < ix->n_files && strcmp(ix->files[at], name) == 0) {
    free(name); /* the same content was already there */
  } else {
    ix->files = xrealloc(ix->files, (ix->n_files + 1) * sizeof(char *));
    memmove(ix->files + at + 1, ix->files + at, (ix->n_files - at) * sizeof(char *));
    ix->files[at] = name;
    ix->n_files++;
  }
}

void index_cache_refresh(struct repo *r) {
  if (r->use_index_cache)
    index_cache_save(r, r->index->files, r->index->n_files);
}
