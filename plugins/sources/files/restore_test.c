/* The files source's restore test (`engine check --restore-test`, restore
 * flag restore_test=1): the snapshot is restored as usual, but into a
 * scratch directory of our own; while each file's content streams in from
 * the repository its SHA-256 is computed, and once everything is in place
 * (directory times and inode flags included) every item is compared with
 * what the snapshot says: type, size and content (the file read back from
 * disk against the hash of the stream), mode, owner (as root), mtime,
 * symlink target, hard link identity, extended attributes and flags (when
 * the scratch file system took them). Then the scratch directory is
 * removed. A difference fails the test; each is logged. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "restore_int.h"

/* What one item must look like after the restore. */
struct rt_item {
  char *name;
  enum engine_item_type type;
  uint64_t size;
  int has_sha;
  unsigned char sha[32];
  struct rmeta m; /* mode, owner, times, flags (xattrs not kept here) */
  char *target;   /* symlink target, hard link's first name */
  size_t target_len;
  char *xattrs; /* the metadata's "xattrs" array as compact JSON, or NULL */
};

struct rt_state {
  struct rt_item *v;
  size_t n, cap;
  char *scratch; /* the directory, removed at the end */
};

/* ---- the scratch directory ---------------------------------------------------- */

int rs_test_begin(struct rctx *r, char **target) {
  const char *base = getenv("ENGINE_RESTORE_TEST_DIR");
  if (base == NULL || base[0] != '/')
    base = getenv("TMPDIR");
  if (base == NULL || base[0] != '/')
    base = "/var/tmp";
  r->test = calloc(1, sizeof(*r->test));
  size_t len = strlen(base) + 32;
  char *dir = malloc(len);
  if (r->test == NULL || dir == NULL) {
    free(dir);
    r->h->set_error(r->h, "restore test: out of memory");
    return ENGINE_ERROR;
  }
  snprintf(dir, len, "%s/engine-restore-test-XXXXXX", base);
  if (mkdtemp(dir) == NULL) {
    r->h->set_error(r->h, "restore test: unable to create a scratch directory under '%s': %s", base,
                    strerror(errno));
    free(dir);
    return ENGINE_ERROR;
  }
  r->test->scratch = dir;
  r->h->log(r->h, ENGINE_LOG_INFO, "restore test: restoring into the scratch directory '%s'", dir);
  *target = dir;
  return ENGINE_OK;
}

/* Remove what is below dirfd (and make every directory writable first:
 * a restored tree may hold read-only directories). */
static void remove_below(int dirfd) {
  DIR *d = fdopendir(dirfd);
  if (d == NULL) {
    close(dirfd);
    return;
  }
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (unlinkat(dirfd, de->d_name, 0) == 0)
      continue;
    int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
      continue;
    unsigned zero = 0;
    int e;
    (void)files_flags_set(sub, zero, &e);
    (void)fchmod(sub, 0700);
    remove_below(sub);
    (void)unlinkat(dirfd, de->d_name, AT_REMOVEDIR);
  }
  closedir(d);
}

/* Clear the inode flags the restore set (immutable and append-only files
 * cannot be removed), then remove the scratch directory. */
static void remove_scratch(struct rctx *r) {
  struct rt_state *t = r->test;
  for (size_t i = 0; i < r->n_flagged; i++) {
    char *slash = strrchr(r->flagged[i].name, '/');
    int dirfd = r->rootfd;
    const char *base = r->flagged[i].name;
    if (slash != NULL) {
      *slash = '\0';
      dirfd = rs_open_dir_path(r, r->flagged[i].name, r->flagged[i].name, 0);
      *slash = '/';
      base = slash + 1;
    }
    if (dirfd < 0)
      continue;
    int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    int e;
    if (fd >= 0) {
      (void)files_flags_set(fd, 0, &e);
      close(fd);
    }
    if (dirfd != r->rootfd)
      close(dirfd);
  }
  int fd = open(t->scratch, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    int e;
    (void)files_flags_set(fd, 0, &e);
    (void)fchmod(fd, 0700);
    remove_below(fd);
  }
  if (rmdir(t->scratch) != 0)
    r->h->log(r->h, ENGINE_LOG_WARN,
              "restore test: unable to remove the scratch directory '%s': %s", t->scratch,
              strerror(errno));
}

/* ---- hashing the content as it streams in -------------------------------------- */

struct hashing_reader {
  struct engine_reader rd;
  const struct engine_reader *inner;
  EVP_MD_CTX *md;
  int failed;
};

static ssize_t hashing_read(const struct engine_reader *rd, void *buf, size_t len) {
  struct hashing_reader *h = rd->ctx;
  ssize_t n = h->inner->read(h->inner, buf, len);
  if (n > 0 && EVP_DigestUpdate(h->md, buf, (size_t)n) != 1)
    h->failed = 1;
  return n;
}

void *rs_test_wrap(const struct engine_reader *data, const struct engine_reader **out) {
  struct hashing_reader *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return NULL;
  h->md = EVP_MD_CTX_new();
  if (h->md == NULL || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(h->md);
    free(h);
    return NULL;
  }
  h->inner = data;
  h->rd = (struct engine_reader){sizeof(h->rd), h, data->size, hashing_read};
  *out = &h->rd;
  return h;
}

/* ---- what each item must be ------------------------------------------------------ */

static void rt_item_free(struct rt_item *it) {
  free(it->name);
  free(it->target);
  free(it->xattrs);
}

int rs_test_note(struct rctx *r, const char *name, const struct engine_item *item, json_t *meta,
                 const struct rmeta *m, void *wrap) {
  struct rt_state *t = r->test;
  struct hashing_reader *h = wrap;
  if (t->n == t->cap) {
    size_t ncap = t->cap ? 2 * t->cap : 256;
    struct rt_item *nv = realloc(t->v, ncap * sizeof(*nv));
    if (nv == NULL)
      return rs_fail(r, name, "restore test: out of memory");
    t->v = nv;
    t->cap = ncap;
  }
  struct rt_item *it = &t->v[t->n];
  memset(it, 0, sizeof(*it));
  it->name = strdup(name);
  it->type = item->type;
  it->size = item->size;
  it->m = *m;
  it->m.xattrs = NULL;
  unsigned int hl = 0;
  if (h != NULL)
    it->has_sha = !h->failed && EVP_DigestFinal_ex(h->md, it->sha, &hl) == 1 && hl == 32;
  else if (item->type == ENGINE_ITEM_FILE && item->size == 0) /* no content: empty */
    it->has_sha = EVP_Digest("", 0, it->sha, &hl, EVP_sha256(), NULL) == 1 && hl == 32;
  const char *key = item->type == ENGINE_ITEM_SYMLINK    ? "target"
                    : item->type == ENGINE_ITEM_HARDLINK ? "link"
                                                         : NULL;
  if (key != NULL && files_meta_get_bytes(meta, key, &it->target, &it->target_len) != 0)
    it->target = NULL;
  json_t *x = r->in->xattrs ? json_object_get(meta, "xattrs") : NULL;
  if (json_is_array(x) && json_array_size(x) > 0)
    it->xattrs = files_meta_dump(x);
  if (it->name == NULL) {
    rt_item_free(it);
    return rs_fail(r, name, "restore test: out of memory");
  }
  t->n++;
  return ENGINE_OK;
}

void rs_test_unwrap(void *wrap) {
  struct hashing_reader *h = wrap;
  if (h == NULL)
    return;
  EVP_MD_CTX_free(h->md);
  free(h);
}

/* ---- the comparison -------------------------------------------------------------- */

struct verify {
  struct rctx *r;
  size_t differ, checked;
  char first[1536];
  int skip_xattrs, skip_flags;
  struct files_xread xr;
};

static void differs(struct verify *v, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void differs(struct verify *v, const char *name, const char *fmt, ...) {
  char what[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  char *d = files_display(name, strlen(name));
  char msg[1536];
  snprintf(msg, sizeof(msg), "'%s' differs from the snapshot: %s", d, what);
  files_display_free(d);
  v->r->h->log(v->r->h, ENGINE_LOG_ERROR, "restore test: %s", msg);
  if (v->differ++ == 0)
    snprintf(v->first, sizeof(v->first), "%s", msg);
}

static int hash_fd(int fd, unsigned char out[32], uint64_t *size, char *buf) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
  *size = 0;
  while (ok) {
    ssize_t n = read(fd, buf, FILES_IO_BLOCK);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ok = n == 0;
      break;
    }
    *size += (uint64_t)n;
    ok = EVP_DigestUpdate(md, buf, (size_t)n) == 1;
  }
  unsigned int hl = 0;
  ok = ok && EVP_DigestFinal_ex(md, out, &hl) == 1 && hl == 32;
  EVP_MD_CTX_free(md);
  return ok ? 0 : -1;
}

static const char *type_of(mode_t m) {
  return S_ISREG(m)    ? "a regular file"
         : S_ISDIR(m)  ? "a directory"
         : S_ISLNK(m)  ? "a symlink"
         : S_ISFIFO(m) ? "a fifo"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISSOCK(m) ? "a socket"
                       : "something else";
}

/* Mode, owner and mtime of what is at st against the item. */
static void compare_meta(struct verify *v, const struct rt_item *it, const struct stat *st) {
  const struct rmeta *m = &it->m;
  /* setuid/setgid bits survive a chmod only as root */
  mode_t mask = v->r->is_root ? 07777 : 01777;
  if (m->has_mode && it->type != ENGINE_ITEM_SYMLINK && (st->st_mode & mask) != (m->mode & mask))
    differs(v, it->name, "mode %04o, expected %04o", (unsigned)(st->st_mode & mask),
            (unsigned)(m->mode & mask));
  if (v->r->is_root && m->has_owner && (st->st_uid != m->uid || st->st_gid != m->gid))
    differs(v, it->name, "owner %u:%u, expected %u:%u", (unsigned)st->st_uid, (unsigned)st->st_gid,
            (unsigned)m->uid, (unsigned)m->gid);
  if (m->has_times && m->ts[1].tv_nsec != UTIME_OMIT &&
      (st->st_mtim.tv_sec != m->ts[1].tv_sec || st->st_mtim.tv_nsec != m->ts[1].tv_nsec))
    differs(v, it->name, "mtime %lld.%09ld, expected %lld.%09ld", (long long)st->st_mtim.tv_sec,
            st->st_mtim.tv_nsec, (long long)m->ts[1].tv_sec, m->ts[1].tv_nsec);
}

/* Extended attributes and flags of an open file or directory. */
static void compare_x(struct verify *v, const struct rt_item *it, int fd, const struct stat *st) {
  if (!v->skip_xattrs) {
    json_t *got = NULL;
    int err = 0;
    int rc = files_xattrs_read(&v->xr, st->st_dev, fd, NULL, &got, &err);
    char *text = got != NULL ? files_meta_dump(got) : NULL;
    json_decref(got);
    if (rc == 1)
      differs(v, it->name, "its extended attributes cannot be read: %s", strerror(err));
    else if (rc == 0 && (it->xattrs != NULL) != (text != NULL))
      differs(v, it->name, "extended attributes %s, expected %s", text ? text : "none",
              it->xattrs ? it->xattrs : "none");
    else if (rc == 0 && it->xattrs != NULL && strcmp(it->xattrs, text) != 0)
      differs(v, it->name, "extended attributes %s, expected %s", text, it->xattrs);
    free(text);
  }
  if (!v->skip_flags && (it->type == ENGINE_ITEM_FILE || it->type == ENGINE_ITEM_DIR)) {
    unsigned flags = 0;
    int err = 0;
    if (files_flags_read(&v->xr, st->st_dev, fd, &flags, &err) == 0 && flags != it->m.flags) {
      char got[FILES_FLAGS_MAX + 1], want[FILES_FLAGS_MAX + 1];
      files_flags_letters(flags, got);
      files_flags_letters(it->m.flags, want);
      differs(v, it->name, "inode flags '%s', expected '%s'", got, want);
    }
  }
}

/* The parent directory of name (safely, no symlink followed) and its base. */
static int open_parent(struct rctx *r, char *name, const char **base) {
  char *slash = strrchr(name, '/');
  if (slash == NULL) {
    *base = name;
    return fcntl(r->rootfd, F_DUPFD_CLOEXEC, 0);
  }
  *slash = '\0';
  int fd = rs_open_dir_path(r, name, name, 0);
  *slash = '/';
  *base = slash + 1;
  return fd;
}

static void verify_one(struct verify *v, struct rt_item *it) {
  struct rctx *r = v->r;
  const char *base;
  int dirfd = open_parent(r, it->name, &base);
  if (dirfd < 0) {
    differs(v, it->name, "its directory cannot be opened: %s", r->last_error);
    return;
  }
  struct stat st;
  v->checked++;
  if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT && it->type == ENGINE_ITEM_SPECIAL && !r->is_root)
      v->checked--; /* device nodes need root: skipped with a warning */
    else
      differs(v, it->name, "it is missing (%s)", strerror(errno));
    close(dirfd);
    return;
  }
  switch (it->type) {
  case ENGINE_ITEM_FILE: {
    if (!S_ISREG(st.st_mode)) {
      differs(v, it->name, "it is %s, expected a regular file", type_of(st.st_mode));
      break;
    }
    int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    unsigned char sha[32];
    uint64_t size = 0;
    if (fd < 0 || hash_fd(fd, sha, &size, r->buf) != 0) {
      differs(v, it->name, "it cannot be read back: %s", strerror(errno));
    } else if (size != it->size) {
      differs(v, it->name, "%llu bytes, expected %llu", (unsigned long long)size,
              (unsigned long long)it->size);
    } else if (!it->has_sha) {
      differs(v, it->name, "the hash of its content from the repository is unknown");
    } else if (memcmp(sha, it->sha, 32) != 0) {
      differs(v, it->name,
              "its content on disk is not the content in the snapshot (SHA-256 "
              "mismatch)");
    }
    compare_meta(v, it, &st);
    if (fd >= 0) {
      compare_x(v, it, fd, &st);
      close(fd);
    }
    break;
  }
  case ENGINE_ITEM_DIR: {
    if (!S_ISDIR(st.st_mode)) {
      differs(v, it->name, "it is %s, expected a directory", type_of(st.st_mode));
      break;
    }
    compare_meta(v, it, &st);
    int fd = openat(dirfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      compare_x(v, it, fd, &st);
      close(fd);
    }
    break;
  }
  case ENGINE_ITEM_SYMLINK: {
    char buf[PATH_MAX + 1];
    ssize_t n = S_ISLNK(st.st_mode) ? readlinkat(dirfd, base, buf, sizeof(buf) - 1) : -1;
    if (!S_ISLNK(st.st_mode))
      differs(v, it->name, "it is %s, expected a symlink", type_of(st.st_mode));
    else if (n < 0)
      differs(v, it->name, "its target cannot be read: %s", strerror(errno));
    else if (it->target == NULL || (size_t)n != it->target_len || memcmp(buf, it->target, n) != 0)
      differs(v, it->name, "its target is not the one in the snapshot");
    else
      compare_meta(v, it, &st);
    break;
  }
  case ENGINE_ITEM_HARDLINK: {
    struct stat first;
    char *link = it->target ? strdup(it->target) : NULL;
    const char *lbase;
    int ldir = link ? open_parent(r, link, &lbase) : -1;
    if (ldir < 0 || fstatat(ldir, lbase, &first, AT_SYMLINK_NOFOLLOW) != 0)
      differs(v, it->name, "the file it links to is missing");
    else if (first.st_ino != st.st_ino || first.st_dev != st.st_dev)
      differs(v, it->name, "it is not a hard link to the file named in the snapshot");
    if (ldir >= 0)
      close(ldir);
    free(link);
    break;
  }
  case ENGINE_ITEM_SPECIAL:
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode))
      differs(v, it->name, "it is %s, expected a special file", type_of(st.st_mode));
    else
      compare_meta(v, it, &st);
    break;
  default:
    break;
  }
  close(dirfd);
}

int rs_test_end(struct rctx *r, int restored_ok) {
  struct rt_state *t = r->test;
  int rc = ENGINE_OK;
  if (restored_ok && r->rootfd >= 0) {
    struct verify v = {.r = r};
    /* what the scratch file system refused was reported as a warning;
     * comparing it would only repeat that */
    v.skip_xattrs = !r->in->xattrs;
    for (int k = 0; k < FILES_XK_FLAGS; k++)
      v.skip_xattrs |= r->xfailed[k] > 0;
    v.skip_flags = !r->in->file_flags || r->xfailed[FILES_XK_FLAGS] > 0;
    for (size_t i = 0; i < t->n; i++)
      verify_one(&v, &t->v[i]);
    files_xread_free(&v.xr);
    if (v.differ > 0) {
      r->h->set_error(r->h,
                      "restore test: %zu difference(s) in %zu item(s) compared; the first: %s",
                      v.differ, v.checked, v.first);
      rc = ENGINE_ERROR;
    } else {
      r->h->log(r->h, ENGINE_LOG_INFO,
                "restore test: %zu item(s) restored and compared with the snapshot: content, "
                "type, mode, %stimes%s%s",
                v.checked, r->is_root ? "owner, " : "",
                v.skip_xattrs ? "" : ", extended attributes", v.skip_flags ? "" : ", inode flags");
    }
  }
  remove_scratch(r);
  for (size_t i = 0; i < t->n; i++)
    rt_item_free(&t->v[i]);
  free(t->v);
  free(t->scratch);
  free(t);
  r->test = NULL;
  return rc;
}
