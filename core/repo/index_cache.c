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
#include <openssl/hmac.h>
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

static void body_mac(const struct repo *r, const unsigned char *body, size_t n,
                     unsigned char mac[32]) {
  unsigned char key[32];
  cache_key(r, key);
  unsigned int len = 32;
  HMAC(EVP_sha256(), key, sizeof(key), body, n, mac, &len);
  OPENSSL_cleanse(key, sizeof(key));
}

/* A bounds-checked reader over the body. */
struct rd {
  const unsigned char *p;
  size_t left;
};

static const unsigned char *take(struct rd *d, size_t n) {
  if (d->left < n)
    return NULL;
  const unsigned char *p = d->p;
  d->p += n;
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

static int read_file(const char *path, unsigned char **out, size_t *n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < HEAD_LEN ||
      (uint64_t)st.st_size > (uint64_t)1 << 34) {
    close(fd);
    errno = EINVAL;
    return -1;
  }
  size_t len = (size_t)st.st_size, got = 0;
  unsigned char *buf = xmalloc(len);
  while (got < len) {
    ssize_t k = read(fd, buf + got, len - got);
    if (k <= 0) {
      if (k < 0 && errno == EINTR)
        continue;
      free(buf);
      close(fd);
      errno = k == 0 ? EINVAL : errno;
      return -1;
    }
    got += (size_t)k;
  }
  close(fd);
  *out = buf;
  *n = len;
  return 0;
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
  if (take_u32(d, &np) != 0)
    return "truncated";
  const unsigned char *packs = take(d, (size_t)np * 32);
  if (!packs || take_u32(d, &nb) != 0)
    return "truncated";
  if (d->left != (size_t)nb * BLOB_REC)
    return "truncated";
  for (size_t i = 0; i < np; i++)
    if (index_add_pack(ix, packs + 32 * i) != i)
      return "a pack is listed twice";
  for (size_t i = 0; i < nb; i++) {
    const unsigned char *b = take(d, BLOB_REC);
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
  unsigned char *buf;
  size_t n;
  if (read_file(path, &buf, &n) != 0) {
    if (errno != ENOENT)
      log_debug("index cache %s: unreadable (%s); reading the index objects", path,
                strerror(errno));
    free(path);
    return -1;
  }
  const char *why = NULL;
  unsigned char mac[32];
  if (memcmp(buf, MAGIC, MAGIC_LEN) != 0) {
    why = "not an index cache of this engine version";
  } else {
    body_mac(r, buf + HEAD_LEN, n - HEAD_LEN, mac);
    if (CRYPTO_memcmp(mac, buf + MAGIC_LEN, 32) != 0)
      why = "fails authentication (damaged, or of another repository)";
  }
  if (!why) {
    struct rd d = {buf + HEAD_LEN, n - HEAD_LEN};
    why = load_body(r->index, &d, names, n_names);
  }
  if (why) {
    log_debug("index cache %s: %s; reading the index objects", path, why);
    /* start over from an empty index */
    index_free(r->index);
    r->index = index_new();
  } else {
    log_debug("index: %zu blobs in %zu packs from the cache %s", index_size(r->index),
              r->index->n_packs, path);
  }
  free(buf);
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
  unsigned char **pp = ud, *p = *pp;
  memcpy(p, e->id, 32);
  le32_put(p + 32, e->pack);
  le32_put(p + 36, e->offset);
  le32_put(p + 40, e->length);
  le32_put(p + 44, e->raw_length);
  p[48] = e->type;
  *pp = p + BLOB_REC;
}

static void index_cache_save(struct repo *r, char *const *names, size_t n_names) {
  char *dir = cache_dir(r);
  if (!dir)
    return;
  struct index *ix = r->index;
  size_t stored = 0;
  index_foreach(ix, count_entry, &stored);
  size_t n = HEAD_LEN + 4 + 4 + ix->n_packs * 32 + 4 + stored * BLOB_REC;
  for (size_t i = 0; i < n_names; i++)
    n += 2 + strlen(names[i]);
  unsigned char *buf = xmalloc(n), *p = buf + HEAD_LEN;
  le32_put(p, (uint32_t)n_names);
  p += 4;
  for (size_t i = 0; i < n_names; i++) {
    size_t len = strlen(names[i]);
    p[0] = (unsigned char)len;
    p[1] = (unsigned char)(len >> 8);
    memcpy(p + 2, names[i], len);
    p += 2 + len;
  }
  le32_put(p, (uint32_t)ix->n_packs);
  p += 4;
  if (ix->n_packs > 0) /* packs is NULL in an index without packs */
    memcpy(p, ix->packs, ix->n_packs * 32);
  p += ix->n_packs * 32;
  le32_put(p, (uint32_t)stored);
  p += 4;
  index_foreach(ix, write_entry, &p);

  memcpy(buf, MAGIC, MAGIC_LEN);
  body_mac(r, buf + HEAD_LEN, n - HEAD_LEN, buf + MAGIC_LEN);

  char *tmp = xasprintf("%s/index.XXXXXX", dir), *path = xasprintf("%s/index", dir);
  const char *what = "unable to create its directory";
  int fd = -1;
  if (mkdir_p(dir, 0700) == 0) {
    what = "unable to create a temporary file";
    fd = mkstemp(tmp); /* 0600 */
  }
  if (fd >= 0) {
    what = "unable to write it";
    size_t done = 0;
    while (done < n) {
      ssize_t k = write(fd, buf + done, n - done);
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0)
        break;
      done += (size_t)k;
    }
    int closed = close(fd) == 0;
    int ok = done == n && closed;
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
  free(tmp);
  free(path);
  free(buf);
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
