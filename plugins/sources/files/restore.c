/* Restore side of the files source: recreates items under a target
 * directory. Every path is resolved component by component with openat
 * (O_NOFOLLOW|O_DIRECTORY) from a descriptor of the target, so no item --
 * not even a symlink restored earlier -- can redirect a write outside it
 * (restore_path.c). Nodes are created under a temporary name and renamed
 * into place, so a failure never leaves a half-written file under the real
 * name. Small files are written by a pool of writer threads
 * (restore_writers.c), large ones by the main thread, their write-out
 * waited for by the flusher (restore_flush.c). Directory modes and times
 * are applied last, deepest first, in restore_end. restore_int.h lists the
 * parts. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "restore_int.h"

/* Zero runs are only turned into holes in whole blocks of this size, aligned
 * to the file offset (the allocation unit of common file systems). */
#define HOLE_BLOCK 4096u

/* ---- messages ---- */

/* set_error("unable to restore '<name>': <reason>") and return ENGINE_ERROR. */
int rs_fail(struct rctx *r, const char *name, const char *fmt, ...) {
  char reason[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  char *d = files_display(name, strlen(name));
  snprintf(r->last_error, sizeof(r->last_error), "unable to restore '%s': %s", d, reason);
  files_display_free(d);
  r->h->set_error(r->h, "%s", r->last_error);
  return ENGINE_ERROR;
}

/* A writer's (or the flusher's) failure: logged at once, counted, the
 * first kept for restore_end (rs_fail() and r->last_error belong to the main
 * thread). */
void rs_wfail(struct rctx *r, const char *name, const char *what, int err) {
  char msg[1536];
  char *d = files_display(name, strlen(name));
  snprintf(msg, sizeof(msg), "unable to restore '%s': %s: %s", d, what, strerror(err));
  files_display_free(d);
  r->h->log(r->h, ENGINE_LOG_ERROR, "%s", msg);
  pthread_mutex_lock(&r->wmu);
  if (r->wfailures++ == 0)
    snprintf(r->wfirst, sizeof(r->wfirst), "%s", msg);
  pthread_mutex_unlock(&r->wmu);
}

/* ---- temporary names and placing ---- */

/* "<base>.engine-tmp-XXXXXX", the base shortened to stay within NAME_MAX. */
void rs_tmp_name(char *out, const char *base) {
  static const char suffix_chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  static const char tag[] = ".engine-tmp-";
  unsigned char rnd[6];
  if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out;
    for (size_t i = 0; i < sizeof(rnd); i++)
      rnd[i] = (unsigned char)(x >> (i * 8));
  }
  size_t keep = strlen(base);
  size_t max_base = NAME_MAX - (sizeof(tag) - 1) - sizeof(rnd);
  if (keep > max_base)
    keep = max_base;
  memcpy(out, base, keep);
  memcpy(out + keep, tag, sizeof(tag) - 1);
  size_t o = keep + sizeof(tag) - 1;
  for (size_t i = 0; i < sizeof(rnd); i++)
    out[o++] = suffix_chars[rnd[i] % (sizeof(suffix_chars) - 1)];
  out[o] = '\0';
}

/* Make room for a directory where a non-directory is, or the reverse is
 * refused. Only an empty directory is removed to make room for a file. */
static int remove_empty_dir(struct rctx *r, const char *name, int dirfd, const char *base) {
  if (unlinkat(dirfd, base, AT_REMOVEDIR) == 0)
    return ENGINE_OK;
  if (errno == ENOTEMPTY || errno == EEXIST)
    return rs_fail(r, name, "a non-empty directory is in the way; refusing to replace it");
  return rs_fail(r, name, "unable to remove the directory in the way: %s", strerror(errno));
}

/* Rename the temporary node into place. `is_link`: tmp is a hard link to an
 * existing inode, which may already be the one at `base`. */
static int place(struct rctx *r, const char *name, int dirfd, const char *tmp, const char *base,
                 int is_link) {
  rs_cache_invalidate(r, name);
  int rc = renameat(dirfd, tmp, dirfd, base);
  if (rc != 0 && errno == EISDIR) {
    if (remove_empty_dir(r, name, dirfd, base) != ENGINE_OK) {
      unlinkat(dirfd, tmp, 0);
      return ENGINE_ERROR;
    }
    rc = renameat(dirfd, tmp, dirfd, base);
  }
  if (rc != 0) {
    rs_fail(r, name, "unable to rename the temporary node into place: %s", strerror(errno));
    unlinkat(dirfd, tmp, 0);
    return ENGINE_ERROR;
  }
  /* rename() is a no-op when both names are links to the same inode (a
   * hard link restored again over itself): drop the leftover name. */
  if (is_link)
    unlinkat(dirfd, tmp, 0);
  return ENGINE_OK;
}

/* ---- writing content ---- */

int rs_write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static int all_zero(const char *p, size_t n) {
  return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Write buf, which lands at file offset `off`, leaving aligned zero blocks
 * as holes (seeking over them). */
static int write_sparse(int fd, const char *buf, size_t len, uint64_t off) {
  size_t i = 0;
  while (i < len) {
    size_t to_boundary = HOLE_BLOCK - (size_t)((off + i) % HOLE_BLOCK);
    size_t n = len - i < to_boundary ? len - i : to_boundary;
    int hole = n == HOLE_BLOCK && all_zero(buf + i, n);
    /* Extend the run of blocks of the same kind. */
    size_t j = i + n;
    while (j < len) {
      size_t m = len - j < HOLE_BLOCK ? len - j : HOLE_BLOCK;
      int h = m == HOLE_BLOCK && all_zero(buf + j, m);
      if (h != hole)
        break;
      j += m;
    }
    if (hole) {
      if (lseek(fd, (off_t)(j - i), SEEK_CUR) < 0)
        return -1;
    } else if (rs_write_all(fd, buf + i, j - i) != 0) {
      return -1;
    }
    i = j;
  }
  return 0;
}

static int restore_file(struct rctx *r, const char *name, int dirfd, const char *base,
                        const struct rmeta *m, const struct engine_item *item,
                        const struct engine_reader *data) {
  if (data == NULL && item->size > 0)
    return rs_fail(r, name, "the item has %llu bytes of content but no data was supplied",
                   (unsigned long long)item->size);
  char tmp[NAME_MAX + 1];
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    rs_tmp_name(tmp, base);
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST)
      return rs_fail(r, name, "unable to create a temporary file: %s", strerror(errno));
  }
  if (fd < 0)
    return rs_fail(r, name, "unable to create a temporary file: every name tried exists");

  uint64_t total = 0, expected = data != NULL ? data->size : 0;
  int rc = ENGINE_OK;
  while (data != NULL) {
    ssize_t n = data->read(data, r->buf, FILES_IO_BLOCK);
    if (n < 0) {
      rc = rs_fail(r, name, "reading the content from the repository failed after %llu bytes",
                   (unsigned long long)total);
      break;
    }
    if (n == 0)
      break;
    if (total + (uint64_t)n > expected) {
      rc = rs_fail(r, name, "the repository returned more content than the expected %llu bytes",
                   (unsigned long long)expected);
      break;
    }
    int wrc = m->sparse ? write_sparse(fd, r->buf, (size_t)n, total)
                        : rs_write_all(fd, r->buf, (size_t)n);
    if (wrc != 0) {
      rc = rs_fail(r, name, "unable to write at offset %llu: %s", (unsigned long long)total,
                   strerror(errno));
      break;
    }
    total += (uint64_t)n;
  }
  if (rc == ENGINE_OK && total != expected)
    rc = rs_fail(r, name, "the content is truncated: got %llu of %llu bytes",
                 (unsigned long long)total, (unsigned long long)expected);
  /* A trailing hole exists only once the size is set (the file is new:
   * without holes its size is what was written). */
  if (rc == ENGINE_OK && m->sparse && ftruncate(fd, (off_t)total) != 0)
    rc = rs_fail(r, name, "unable to set the size to %llu bytes: %s", (unsigned long long)total,
                 strerror(errno));
  if (rc == ENGINE_OK)
    rc = rs_apply_meta_fd(r, name, fd, m);
  if (rc == ENGINE_OK)
    rs_start_writeback(fd, total);
  if (rc == ENGINE_OK && total >= WRITEBACK_MIN && rs_flush_hand_over(r, fd, name) == 0)
    fd = -1; /* the flusher closes it */
  if (fd >= 0 && close(fd) != 0 && rc == ENGINE_OK)
    rc = rs_fail(r, name, "unable to close the temporary file: %s", strerror(errno));
  if (rc != ENGINE_OK) {
    unlinkat(dirfd, tmp, 0);
    return rc;
  }
  return place(r, name, dirfd, tmp, base, 0);
}

static int restore_symlink(struct rctx *r, const char *name, int dirfd, const char *base,
                           json_t *meta, const struct rmeta *m) {
  char *target;
  size_t len;
  if (files_meta_get_bytes(meta, "target", &target, &len) != 0)
    return rs_fail(r, name, "the metadata has no valid symlink target");
  if (len == 0 || strlen(target) != len) {
    free(target);
    return rs_fail(r, name, "the symlink target is empty or contains a NUL byte");
  }
  char tmp[NAME_MAX + 1];
  int made = 0;
  for (int attempt = 0; attempt < 100 && !made; attempt++) {
    rs_tmp_name(tmp, base);
    if (symlinkat(target, dirfd, tmp) == 0) {
      made = 1;
    } else if (errno != EEXIST) {
      int err = errno;
      free(target);
      return rs_fail(r, name, "unable to create the symlink: %s", strerror(err));
    }
  }
  free(target);
  if (!made)
    return rs_fail(r, name, "unable to create the symlink: every temporary name tried exists");
  if (rs_apply_meta_at(r, name, dirfd, tmp, m, 1) != ENGINE_OK) {
    unlinkat(dirfd, tmp, 0);
    return ENGINE_ERROR;
  }
  return place(r, name, dirfd, tmp, base, 0);
}

static int restore_hardlink(struct rctx *r, const char *name, int dirfd, const char *base,
                            json_t *meta) {
  char *link;
  size_t len;
  if (files_meta_get_bytes(meta, "link", &link, &len) != 0)
    return rs_fail(r, name, "the metadata has no valid hard link target");
  const char *why = rs_invalid_name(link, len);
  if (why == NULL && strcmp(link, name) == 0)
    why = "it names the item itself";
  if (why != NULL) {
    char *d = files_display(link, len);
    rs_fail(r, name, "refusing hard link target '%s': %s", d, why);
    files_display_free(d);
    free(link);
    return ENGINE_ERROR;
  }
  char *slash = strrchr(link, '/');
  const char *src_base = link;
  int src_dir = r->rootfd, owned = 0;
  if (slash != NULL) {
    *slash = '\0';
    src_base = slash + 1;
    src_dir = rs_open_dir_path(r, name, link, 0);
    *slash = '/';
    if (src_dir < 0) {
      free(link);
      return ENGINE_ERROR;
    }
    owned = 1;
  }
  char tmp[NAME_MAX + 1];
  int rc = ENGINE_ERROR, made = 0, reported = 0;
  for (int attempt = 0; attempt < 100 && !made && !reported; attempt++) {
    rs_tmp_name(tmp, base);
    /* flags 0: a symlink at the source is linked itself, never followed */
    if (linkat(src_dir, src_base, dirfd, tmp, 0) == 0) {
      made = 1;
    } else if (errno != EEXIST) {
      char *d = files_display(link, len);
      if (errno == ENOENT)
        rs_fail(r, name, "its hard link target '%s' was not restored", d);
      else
        rs_fail(r, name, "unable to link to '%s': %s", d, strerror(errno));
      files_display_free(d);
      reported = 1;
    }
  }
  if (made)
    rc = place(r, name, dirfd, tmp, base, 1);
  else if (!reported)
    rs_fail(r, name, "unable to create the hard link: every temporary name tried exists");
  if (owned)
    close(src_dir);
  free(link);
  return rc;
}

static int restore_special(struct rctx *r, const char *name, int dirfd, const char *base,
                           json_t *meta, const struct rmeta *m) {
  const char *kind = json_string_value(json_object_get(meta, "kind"));
  mode_t type;
  if (kind != NULL && strcmp(kind, "fifo") == 0)
    type = S_IFIFO;
  else if (kind != NULL && strcmp(kind, "char") == 0)
    type = S_IFCHR;
  else if (kind != NULL && strcmp(kind, "block") == 0)
    type = S_IFBLK;
  else if (kind != NULL && strcmp(kind, "socket") == 0)
    type = S_IFSOCK;
  else
    return rs_fail(r, name, "the metadata has no valid special file kind");
  dev_t rdev = 0;
  json_t *maj = json_object_get(meta, "rdev_major"), *min = json_object_get(meta, "rdev_minor");
  if (json_is_integer(maj) && json_is_integer(min))
    rdev = makedev((unsigned)json_integer_value(maj), (unsigned)json_integer_value(min));
  else if (json_is_integer(json_object_get(meta, "rdev")))
    rdev = (dev_t)json_integer_value(json_object_get(meta, "rdev"));
  if (type != S_IFIFO && !r->is_root) {
    char *d = files_display(name, strlen(name));
    r->h->log(r->h, ENGINE_LOG_WARN, "skipped '%s': creating a %s node requires root", d, kind);
    files_display_free(d);
    return ENGINE_OK;
  }
  char tmp[NAME_MAX + 1];
  int made = 0;
  for (int attempt = 0; attempt < 100 && !made; attempt++) {
    rs_tmp_name(tmp, base);
    if (mknodat(dirfd, tmp, type | 0600, type == S_IFIFO ? 0 : rdev) == 0)
      made = 1;
    else if (errno != EEXIST)
      return rs_fail(r, name, "unable to create the %s node: %s", kind, strerror(errno));
  }
  if (!made)
    return rs_fail(r, name, "unable to create the %s node: every temporary name tried exists",
                   kind);
  if (rs_apply_meta_at(r, name, dirfd, tmp, m, 0) != ENGINE_OK) {
    unlinkat(dirfd, tmp, 0);
    return ENGINE_ERROR;
  }
  return place(r, name, dirfd, tmp, base, 0);
}

static int restore_dir(struct rctx *r, const char *name, int dirfd, const char *base,
                       struct rmeta *m) {
  struct stat st;
  if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      rs_cache_invalidate(r, name);
      if (unlinkat(dirfd, base, 0) != 0)
        return rs_fail(r, name, "unable to remove the non-directory in the way: %s",
                       strerror(errno));
      if (mkdirat(dirfd, base, 0700) != 0)
        return rs_fail(r, name, "unable to create the directory: %s", strerror(errno));
    }
  } else if (errno == ENOENT) {
    if (mkdirat(dirfd, base, 0700) != 0)
      return rs_fail(r, name, "unable to create the directory: %s", strerror(errno));
  } else {
    return rs_fail(r, name, "unable to stat: %s", strerror(errno));
  }
  if (r->n_dirs == r->cap_dirs) {
    size_t ncap = r->cap_dirs ? r->cap_dirs * 2 : 64;
    struct dir_fixup *nd = realloc(r->dirs, ncap * sizeof(*nd));
    if (nd == NULL)
      return rs_fail(r, name, "out of memory");
    r->dirs = nd;
    r->cap_dirs = ncap;
  }
  char *copy = strdup(name);
  if (copy == NULL)
    return rs_fail(r, name, "out of memory");
  r->dirs[r->n_dirs++] = (struct dir_fixup){.name = copy, .depth = rs_name_depth(name), .meta = *m};
  m->xattrs = NULL; /* the fixup owns them now */
  return ENGINE_OK;
}

static int add_flag_fixup(struct rctx *r, const char *name, unsigned flags) {
  if (r->n_flagged == r->cap_flagged) {
    size_t ncap = r->cap_flagged ? r->cap_flagged * 2 : 16;
    struct flag_fixup *nf = realloc(r->flagged, ncap * sizeof(*nf));
    if (nf == NULL)
      return rs_fail(r, name, "out of memory");
    r->flagged = nf;
    r->cap_flagged = ncap;
  }
  char *copy = strdup(name);
  if (copy == NULL)
    return rs_fail(r, name, "out of memory");
  r->flagged[r->n_flagged++] = (struct flag_fixup){copy, flags};
  return ENGINE_OK;
}

static const char *type_word(enum engine_item_type t) {
  switch (t) {
  case ENGINE_ITEM_FILE:
    return "file";
  case ENGINE_ITEM_DIR:
    return "directory";
  case ENGINE_ITEM_SYMLINK:
    return "symlink";
  case ENGINE_ITEM_HARDLINK:
    return "hard link";
  case ENGINE_ITEM_SPECIAL:
    return "special file";
  default:
    return "item";
  }
}

/* The umask from /proc/self/status ("Umask:\t0022"), read without
 * changing it (umask() would, for every thread); -1 when unavailable. */
static int read_umask(void) {
  FILE *f = fopen("/proc/self/status", "re");
  if (f == NULL)
    return -1;
  char line[128];
  int mask = -1;
  while (fgets(line, sizeof(line), f) != NULL) {
    unsigned m;
    if (sscanf(line, "Umask: %o", &m) == 1 && m <= 0777) {
      mask = (int)m;
      break;
    }
  }
  fclose(f);
  return mask;
}

/* ---- the source ops ---- */

static int dir_is_empty(const char *path, int *empty) {
  DIR *d = opendir(path);
  if (d == NULL)
    return -1;
  *empty = 1;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
      *empty = 0;
      break;
    }
  }
  closedir(d);
  return 0;
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_target(const struct engine_host *h, const char *target) {
  char *p = strdup(target);
  if (p == NULL) {
    h->set_error(h, "unable to create target '%s': out of memory", target);
    return -1;
  }
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0')
      continue;
    char saved = *s;
    *s = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
      h->set_error(h, "unable to create target directory '%s': %s", p, strerror(errno));
      free(p);
      return -1;
    }
    *s = saved;
    if (saved == '\0')
      break;
  }
  free(p);
  return 0;
}

int files_restore_begin(void *inst, const struct engine_restore_opts *opts, void **out) {
  struct files_inst *in = inst;
  const struct engine_host *h = in->host;
  if (opts == NULL || !ENGINE_HAS_FIELD(opts, struct engine_restore_opts, yes)) {
    h->set_error(h, "restore of files: the restore options are missing or too old");
    return ENGINE_ERROR;
  }
  const char *target = opts->target;
  int dry = opts->dry_run != 0;
  int exists = 1;
  int test = 0;
  for (size_t i = 0; opts->extra != NULL && opts->extra[i] != NULL; i++)
    if (strcmp(opts->extra[i], "restore_test=1") == 0)
      test = 1;
  char *scratch = NULL;
  struct rctx probe = {.in = in, .h = h};
  if (test && !dry) {
    /* into a scratch directory of our own (restore_test.c) */
    if (rs_test_begin(&probe, &scratch) != ENGINE_OK)
      return ENGINE_ERROR;
    target = scratch;
  }
  if (target == NULL) {
    if (!opts->yes && !dry) {
      h->set_error(h, "restoring to the original location overwrites files; confirm");
      return ENGINE_EXISTS;
    }
    target = "/";
  } else {
    if (target[0] == '\0') {
      h->set_error(h, "restore of files: the target directory is an empty string");
      return ENGINE_ERROR;
    }
    struct stat st;
    if (stat(target, &st) != 0) {
      if (errno != ENOENT) {
        h->set_error(h, "unable to stat target '%s': %s", target, strerror(errno));
        return ENGINE_ERROR;
      }
      exists = 0;
    } else if (!S_ISDIR(st.st_mode)) {
      h->set_error(h, "target '%s' exists and is not a directory", target);
      return ENGINE_ERROR;
    } else if (!opts->yes && !dry) {
      int empty;
      if (dir_is_empty(target, &empty) != 0) {
        h->set_error(h, "unable to read target '%s': %s", target, strerror(errno));
        return ENGINE_ERROR;
      }
      if (!empty) {
        h->set_error(h, "target '%s' is not empty; restoring would overwrite files", target);
        return ENGINE_EXISTS;
      }
    }
  }

  struct rctx *r = calloc(1, sizeof(*r));
  if (r != NULL)
    r->root = strdup(target);
  if (r == NULL || r->root == NULL) {
    free(r);
    h->set_error(h, "restore of files: out of memory");
    if (probe.test)
      rs_test_end(&probe, 0);
    return ENGINE_ERROR;
  }
  r->test = probe.test;
  pthread_mutex_init(&r->wmu, NULL);
  pthread_cond_init(&r->wcv, NULL);
  pthread_cond_init(&r->dcv, NULL);
  pthread_mutex_init(&r->fmu, NULL);
  pthread_cond_init(&r->fcv, NULL);
  pthread_mutex_init(&r->xmu, NULL);
  r->in = in;
  r->h = h;
  r->dry_run = dry;
  r->euid = geteuid();
  r->egid = getegid();
  r->is_root = r->euid == 0;
  r->umask = read_umask();
  r->rootfd = -1;
  if (dry) {
    if (!exists)
      h->log(h, ENGINE_LOG_INFO, "would create target directory '%s'", target);
    *out = r;
    return ENGINE_OK;
  }
  r->buf = malloc(FILES_IO_BLOCK);
  if (r->buf == NULL) {
    h->set_error(h, "restore of files: out of memory");
    goto fail;
  }
  if (!exists && make_target(h, target) != 0)
    goto fail;
  r->rootfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r->rootfd < 0) {
    h->set_error(h, "unable to open target directory '%s': %s", target, strerror(errno));
    goto fail;
  }
  *out = r;
  return ENGINE_OK;
fail:
  if (r->test)
    rs_test_end(r, 0);
  free(r->buf);
  free(r->root);
  free(r);
  return ENGINE_ERROR;
}

int files_restore_item(void *rctx, const struct engine_item *item,
                       const struct engine_reader *data) {
  struct rctx *r = rctx;
  const char *why = rs_invalid_name(item->name, item->name_len);
  if (why != NULL) {
    char *d = files_display(item->name, item->name_len);
    r->h->set_error(r->h, "refusing to restore item '%s': %s", d, why);
    files_display_free(d);
    return ENGINE_ERROR;
  }
  char *name = malloc(item->name_len + 1);
  if (name == NULL) {
    r->h->set_error(r->h, "restore of files: out of memory");
    return ENGINE_ERROR;
  }
  memcpy(name, item->name, item->name_len);
  name[item->name_len] = '\0';

  int rc = ENGINE_ERROR;
  struct rmeta m = {0};
  json_error_t jerr;
  json_t *meta = item->meta_json != NULL ? json_loads(item->meta_json, 0, &jerr) : json_object();
  if (!json_is_object(meta)) {
    rs_fail(r, name, "invalid metadata: %s", meta == NULL ? jerr.text : "not a JSON object");
    goto out;
  }
  char bad[256];
  if (rs_parse_meta(r, meta, &m, bad, sizeof(bad)) != 0) {
    rs_fail(r, name, "invalid metadata: %s", bad);
    goto out;
  }

  if (r->dry_run) {
    char *d = files_display(name, item->name_len);
    const char *sep = strcmp(r->root, "/") == 0 || r->root[strlen(r->root) - 1] == '/' ? "" : "/";
    if (item->type == ENGINE_ITEM_FILE)
      r->h->log(r->h, ENGINE_LOG_INFO, "would restore file '%s%s%s' (%llu bytes)", r->root, sep, d,
                (unsigned long long)(data != NULL ? data->size : item->size));
    else
      r->h->log(r->h, ENGINE_LOG_INFO, "would restore %s '%s%s%s'", type_word(item->type), r->root,
                sep, d);
    files_display_free(d);
    rc = ENGINE_OK;
    goto out;
  }

  const char *base;
  int dirfd = rs_parent_fd(r, name, &base);
  if (dirfd < 0)
    goto out;
  /* a restore test hashes the content as it streams in */
  void *wrap = NULL;
  struct rmeta expect = m;
  if (r->test && data != NULL && item->type == ENGINE_ITEM_FILE) {
    wrap = rs_test_wrap(data, &data);
    if (wrap == NULL) {
      rc = rs_fail(r, name, "restore test: out of memory");
      goto out;
    }
  }
  switch (item->type) {
  case ENGINE_ITEM_FILE:
    if (data != NULL && data->size <= ASYNC_MAX_FILE && !m.sparse) {
      rc = rs_queue_file(r, name, dirfd, base, &m, data);
    } else {
      rs_writers_kick(r);
      rc = restore_file(r, name, dirfd, base, &m, item, data);
    }
    if (rc == ENGINE_OK && m.flags != 0)
      rc = add_flag_fixup(r, name, m.flags);
    break;
  case ENGINE_ITEM_DIR:
    rc = restore_dir(r, name, dirfd, base, &m);
    break;
  case ENGINE_ITEM_SYMLINK:
    rc = restore_symlink(r, name, dirfd, base, meta, &m);
    break;
  case ENGINE_ITEM_HARDLINK:
    rs_writers_drain(r); /* the first name must be in place */
    rc = restore_hardlink(r, name, dirfd, base, meta);
    break;
  case ENGINE_ITEM_SPECIAL:
    rc = restore_special(r, name, dirfd, base, meta, &m);
    break;
  default:
    rc = rs_fail(r, name, "item type %d is not produced by the files source", (int)item->type);
    break;
  }
  if (r->test && rc == ENGINE_OK)
    rc = rs_test_note(r, name, item, meta, &expect, wrap);
  rs_test_unwrap(wrap);
out:
  files_xattrs_free(m.xattrs);
  json_decref(meta);
  free(name);
  return rc;
}

/* Inode flags of the restored files, last: an immutable or append-only
 * file can no longer be renamed, linked or have its times set. A file that
 * is not there failed earlier and was reported then. */
static void apply_file_flags(struct rctx *r) {
  for (size_t i = 0; i < r->n_flagged; i++) {
    struct flag_fixup *f = &r->flagged[i];
    char *slash = strrchr(f->name, '/');
    const char *base = f->name;
    int dirfd = r->rootfd;
    if (slash != NULL) {
      *slash = '\0';
      dirfd = rs_open_dir_path(r, f->name, f->name, 0);
      *slash = '/';
      base = slash + 1;
      if (dirfd < 0) {
        r->h->log(r->h, ENGINE_LOG_ERROR, "%s", r->last_error);
        continue;
      }
    }
    int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
      rs_set_flags(r, f->name, fd, f->flags);
    else if (fd < 0 && errno != ENOENT)
      rs_note_xfail(r, f->name, FILES_XK_FLAGS, NULL, errno);
    if (fd >= 0)
      close(fd);
    if (dirfd != r->rootfd)
      close(dirfd);
  }
}

static int cmp_depth_desc(const void *a, const void *b) {
  const struct dir_fixup *x = a, *y = b;
  if (x->depth != y->depth)
    return x->depth < y->depth ? 1 : -1;
  return strcmp(x->name, y->name);
}

int files_restore_end(void *rctx, int status) {
  struct rctx *r = rctx;
  int rc = ENGINE_OK;
  /* directories restored so far get their metadata either way; a restore
   * test compares only after a restore without failures */
  rs_writers_drain(r);
  rs_writers_stop(r);
  rs_flusher_stop(r);
  if (r->fflushed > 0)
    r->h->log(r->h, ENGINE_LOG_DEBUG,
              "restore of files: %zu large file(s) flushed during the restore", r->fflushed);
  rs_cache_drop(r);
  char first[sizeof(r->last_error)] = "";
  size_t failures = 0;
  if (!r->dry_run)
    apply_file_flags(r);
  if (!r->dry_run) {
    /* Deepest first: setting a parent's mode could lock us out of a child,
     * and creating children changes a parent's mtime. */
    if (r->n_dirs > 1)
      qsort(r->dirs, r->n_dirs, sizeof(*r->dirs), cmp_depth_desc);
    for (size_t i = 0; i < r->n_dirs; i++) {
      struct dir_fixup *d = &r->dirs[i];
      int fd = rs_open_dir_path(r, d->name, d->name, 0);
      int one = fd < 0 ? ENGINE_ERROR : rs_apply_meta_fd(r, d->name, fd, &d->meta);
      if (one == ENGINE_OK && d->meta.flags != 0)
        rs_set_flags(r, d->name, fd, d->meta.flags);
      if (fd >= 0)
        close(fd);
      /* Keep going: one directory's failure must not leave the others
       * with restore-time modes. Each is logged, the first is returned. */
      if (one != ENGINE_OK) {
        r->h->log(r->h, ENGINE_LOG_ERROR, "%s", r->last_error);
        if (failures++ == 0)
          memcpy(first, r->last_error, sizeof(first));
      }
    }
    if (failures > 0) {
      rc = ENGINE_ERROR;
      if (failures > 1)
        r->h->set_error(r->h, "%s (and %zu more directories failed)", first, failures - 1);
      else
        r->h->set_error(r->h, "%s", first);
    } else if (r->wfailures > 0) {
      rc = ENGINE_ERROR;
      r->h->set_error(r->h, "%zu file(s) could not be written, the first: %s", r->wfailures,
                      r->wfirst);
    } else if (r->rootfd >= 0 && syncfs(r->rootfd) != 0) {
      r->h->set_error(r->h, "unable to flush restored files to disk under '%s': %s", r->root,
                      strerror(errno));
      rc = ENGINE_ERROR;
    }
  }
  if (!r->dry_run)
    rs_report_xfail(r);
  if (r->test && rs_test_end(r, rc == ENGINE_OK && status == ENGINE_OK) != ENGINE_OK)
    rc = ENGINE_ERROR;
  for (size_t i = 0; i < r->n_dirs; i++) {
    free(r->dirs[i].name);
    files_xattrs_free(r->dirs[i].meta.xattrs);
  }
  free(r->dirs);
  for (size_t i = 0; i < r->n_flagged; i++)
    free(r->flagged[i].name);
  free(r->flagged);
  if (r->rootfd >= 0)
    close(r->rootfd);
  free(r->buf);
  free(r->root);
  pthread_mutex_destroy(&r->wmu);
  pthread_cond_destroy(&r->wcv);
  pthread_cond_destroy(&r->dcv);
  pthread_mutex_destroy(&r->fmu);
  pthread_cond_destroy(&r->fcv);
  pthread_mutex_destroy(&r->xmu);
  free(r);
  return rc;
}
