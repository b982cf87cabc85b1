/* The "local" sink: a repository kept as a directory tree on a local (or
 * locally mounted) file system. Object names map to relative paths under the
 * repository directory. A successful put is durable: the data is written to a
 * temporary file in the target directory, fsynced, renamed into place and the
 * directory is fsynced, so a crash leaves either the old state or the new
 * object, never a partial one (temporary leftovers are invisible to list). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "local_int.h"
#include "objstore.h"

/* ---- open packs ----------------------------------------------------------
 *
 * A restore or check reads a pack blob by blob (one get per blob, from
 * several read-ahead threads at once), and opening, fstat-ing and closing
 * the pack for each cost ~6-8 us of the ~7-9 us of a small blob's get here
 * (11,000 blobs for the benchmark's 1 GiB). So the descriptors of the last
 * OPEN_PACKS packs read are kept open, shared by the threads (pread has no
 * file position) and counted while in use. Only objects under "data/" are
 * kept: packs are named by the SHA-256 of their content and never change,
 * while other objects (locks) are replaced by other processes. A put or del
 * of a kept name in this process closes its descriptor; packs another
 * process deletes stay readable through a kept descriptor until the
 * instance ends (every command and every serve job has its own). */
#define OPEN_PACKS 8

struct open_pack {
  char *name; /* NULL: free slot */
  int fd;
  uint64_t size;
  int users;     /* gets using fd now */
  int stale;     /* dropped from the cache while in use: the last user closes */
  uint64_t used; /* open_tick of the last use (LRU) */
};

const char *local_errstr(int e, char *buf, size_t len) {
  return strerror_r(e, buf, len);
}

/* Reports an errno failure; `what` is a sentence fragment like "unable to open". */
int local_fail_errno(const struct local_sink *s, int e, const char *what, const char *path,
                     const char *name) {
  char eb[128];
  if (name != NULL)
    SET_ERROR(s, "%s '%s' (object '%s'): %s", what, path, name, local_errstr(e, eb, sizeof eb));
  else
    SET_ERROR(s, "%s '%s': %s", what, path, local_errstr(e, eb, sizeof eb));
  return ENGINE_ERROR;
}

int local_fail_oom(const struct local_sink *s, const char *name) {
  SET_ERROR(s, "out of memory while handling object '%s' in '%s'", name, s->root);
  return ENGINE_ERROR;
}

/* ---- names ------------------------------------------------------------ */

/* Checks one '/'-free component [c, c+len). Returns a reason or NULL. */
static const char *component_problem(const char *c, size_t len) {
  if (len == 0)
    return "empty path component";
  if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
    return "'.' and '..' components are not allowed";
  if (len > NAME_MAX - TEMP_SUFFIX_MAX)
    return "path component too long";
  if (memmem(c, len, TEMP_MARKER, strlen(TEMP_MARKER)) != NULL)
    return "'" TEMP_MARKER "' is reserved for temporary files";
  return NULL;
}

/* Validates the directory part of names and prefixes: [p, p+len) split on '/'. */
const char *local_path_problem(const char *p, size_t len) {
  if (len > 0 && p[0] == '/')
    return "must be relative to the repository (leading '/')";
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
      return "contains a control character";
  size_t start = 0;
  while (start < len) {
    const char *slash = memchr(p + start, '/', len - start);
    size_t end = slash != NULL ? (size_t)(slash - p) : len;
    const char *why = component_problem(p + start, end - start);
    if (why != NULL)
      return why;
    if (slash != NULL && end + 1 == len)
      return "empty path component (trailing '/')";
    start = end + 1;
  }
  return NULL;
}

static int check_name(const struct local_sink *s, const char *name) {
  if (name == NULL || name[0] == '\0') {
    SET_ERROR(s, "invalid object name '': names must not be empty (repository '%s')", s->root);
    return ENGINE_ERROR;
  }
  size_t len = strlen(name);
  const char *why = local_path_problem(name, len);
  if (why == NULL && s->root_len + 1 + len + TEMP_SUFFIX_MAX >= PATH_MAX)
    why = "name too long";
  if (why != NULL) {
    SET_ERROR(s, "invalid object name '%s': %s (repository '%s')", name, why, s->root);
    return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static char *object_path(const struct local_sink *s, const char *name) {
  char *p = NULL;
  if (asprintf(&p, "%s%s", s->root_prefix, name) < 0)
    return NULL;
  return p;
}

/* The path of a valid object name, or NULL after set_error (*rc: the
 * operation's return value). */
static char *checked_path(const struct local_sink *s, const char *name, int *rc) {
  if (check_name(s, name) != ENGINE_OK) {
    *rc = ENGINE_ERROR;
    return NULL;
  }
  char *path = object_path(s, name);
  if (path == NULL)
    *rc = local_fail_oom(s, name);
  return path;
}

static int not_found(const struct local_sink *s, const char *name, const char *path) {
  SET_ERROR(s, "object '%s' not found ('%s' does not exist)", name, path);
  return ENGINE_NOT_FOUND;
}

/* ---- directories ------------------------------------------------------ */

/* The directory holding `path` (a malloc'd copy): "/" for "/x", "." for "x". */
static char *parent_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

static int fsync_dir(const struct local_sink *s, const char *dir, const char *name) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return local_fail_errno(s, errno, "unable to open directory", dir, name);
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    return local_fail_errno(s, e, "unable to fsync directory", dir, name);
  }
  close(fd);
  return ENGINE_OK;
}

/* A new directory entry is only durable once its parent is fsynced. */
static int sync_parent(const struct local_sink *s, const char *dir, const char *name) {
  if (!s->fsync)
    return ENGINE_OK;
  char *parent = parent_of(dir);
  if (parent == NULL)
    return local_fail_oom(s, name != NULL ? name : dir);
  int rc = fsync_dir(s, parent, name);
  free(parent);
  return rc;
}

/* mkdir lost a race: the directory exists but its creator may not have
 * fsynced the parent yet, and our caller must not report durability early. */
static int existing_dir(const struct local_sink *s, const char *dir, const char *name) {
  struct stat st;
  if (stat(dir, &st) != 0)
    return local_fail_errno(s, errno, "unable to stat directory", dir, name);
  if (!S_ISDIR(st.st_mode))
    return local_fail_errno(s, ENOTDIR, "unable to create directory", dir, name);
  return sync_parent(s, dir, name);
}

/* mkdir -p, mode 0700, for `dir` (modified temporarily, restored on return).
 * Directories at or above stop_len bytes are never created: for object
 * directories that is the repository root, which must not silently reappear
 * (an unmounted backup disk would otherwise fill the root file system). */
static int make_dirs(const struct local_sink *s, char *dir, size_t stop_len, const char *name) {
  if (mkdir(dir, 0700) == 0)
    return sync_parent(s, dir, name);
  if (errno == EEXIST)
    return existing_dir(s, dir, name);
  if (errno != ENOENT)
    return local_fail_errno(s, errno, "unable to create directory", dir, name);

  char *slash = strrchr(dir, '/');
  if (slash == NULL || slash == dir || (size_t)(slash - dir) <= stop_len) {
    if (stop_len > 0) {
      SET_ERROR(s,
                "repository directory '%s' does not exist any more (was it removed or unmounted?)",
                s->root);
      return ENGINE_ERROR;
    }
    return local_fail_errno(s, ENOENT, "unable to create directory", dir, name);
  }
  *slash = '\0';
  int rc = make_dirs(s, dir, stop_len, name);
  *slash = '/';
  if (rc != ENGINE_OK)
    return rc;

  if (mkdir(dir, 0700) == 0)
    return sync_parent(s, dir, name);
  if (errno == EEXIST)
    return existing_dir(s, dir, name);
  return local_fail_errno(s, errno, "unable to create directory", dir, name);
}

/* Splits an object path into its directory and base name and opens the
 * directory. *dirpath is malloc'd; *base points into path. */
static int open_object_dir(const struct local_sink *s, const char *name, const char *path,
                           int create, char **dirpath, const char **base, int *dfd) {
  const char *slash = strrchr(path, '/'); /* root_prefix guarantees one */
  *base = slash + 1;
  *dirpath = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
  if (*dirpath == NULL)
    return local_fail_oom(s, name);

  *dfd = open(*dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (*dfd >= 0)
    return ENGINE_OK;
  int e = errno;
  if (e == ENOENT && create && strlen(*dirpath) > s->root_len) {
    int rc = make_dirs(s, *dirpath, s->root_len, name);
    if (rc != ENGINE_OK)
      return rc;
    *dfd = open(*dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dfd >= 0)
      return ENGINE_OK;
    e = errno;
  }
  if ((e == ENOENT || e == ENOTDIR) && !create)
    return ENGINE_NOT_FOUND;
  if (e == ENOENT) {
    SET_ERROR(s, "repository directory '%s' does not exist any more (was it removed or unmounted?)",
              s->root);
    return ENGINE_ERROR;
  }
  return local_fail_errno(s, e, "unable to open directory", *dirpath, name);
}

/* ---- put -------------------------------------------------------------- */

static uint64_t temp_random(void) {
  uint64_t r;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r)
    return r;
  /* No entropy yet (early boot): uniqueness is all we need, O_EXCL catches the rest. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)gettid() << 32);
}

static int write_all(const struct local_sink *s, int fd, const void *buf, size_t len,
                     const char *tmppath, const char *name) {
  const unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len < IO_CHUNK ? len : IO_CHUNK);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return local_fail_errno(s, errno, "unable to write", tmppath, name);
    }
    if (n == 0)
      return local_fail_errno(s, EIO, "unable to write (no progress)", tmppath, name);
    p += n;
    len -= (size_t)n;
  }
  return ENGINE_OK;
}

/* Large objects (packs) bypass the page cache when the caller's buffer is
 * page-aligned and the file system supports O_DIRECT: a backup then neither
 * pays for copying every pack into the cache nor evicts what the host has
 * cached (its databases, its working set) with data it will not read back.
 * The aligned prefix goes out directly, the unaligned tail through the cache,
 * and the fsync that follows covers both. Any refusal (a file system without
 * O_DIRECT, a device with larger blocks) falls back to buffered writes. */
#define DIRECT_ALIGN ((size_t)4096)
#define DIRECT_MIN ((size_t)1 << 20)

static size_t write_direct(const struct local_sink *s, int fd, const void *buf, size_t len) {
  if (!s->direct_io || len < DIRECT_MIN || ((uintptr_t)buf % DIRECT_ALIGN) != 0)
    return 0;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) != 0)
    return 0;
  const unsigned char *p = buf;
  size_t want = len / DIRECT_ALIGN * DIRECT_ALIGN, done = 0;
  while (done < want) {
    size_t n = want - done < IO_CHUNK ? want - done : IO_CHUNK;
    ssize_t w = write(fd, p + done, n);
    if (w < 0 && errno == EINTR)
      continue;
    /* A short or refused direct write leaves the offset where it was or on
     * a block boundary; the buffered path carries on from there. */
    if (w <= 0 || (size_t)w % DIRECT_ALIGN != 0) {
      if (w > 0)
        done += (size_t)w;
      break;
    }
    done += (size_t)w;
  }
  if (fcntl(fd, F_SETFL, fl) != 0 || lseek(fd, (off_t)done, SEEK_SET) != (off_t)done)
    return (size_t)-1;
  return done;
}

/* Moves the finished temporary file onto the object name. */
static int commit(const struct local_sink *s, int dfd, const char *tmpbase, const char *base,
                  unsigned flags, const char *path, const char *name, int *tmp_gone) {
  if (!(flags & ENGINE_PUT_NO_OVERWRITE)) {
    if (renameat(dfd, tmpbase, dfd, base) != 0)
      return local_fail_errno(s, errno, "unable to rename temporary file into", path, name);
    *tmp_gone = 1;
    return ENGINE_OK;
  }

  if (renameat2(dfd, tmpbase, dfd, base, RENAME_NOREPLACE) == 0) {
    *tmp_gone = 1;
    return ENGINE_OK;
  }
  int e = errno;
  if (e != EINVAL && e != ENOSYS && e != ENOTSUP) {
    if (e == EEXIST) {
      SET_ERROR(s, "object '%s' already exists at '%s'", name, path);
      return ENGINE_EXISTS;
    }
    return local_fail_errno(s, e, "unable to rename temporary file into", path, name);
  }

  /* The file system has no RENAME_NOREPLACE: link() refuses to replace too. */
  if (linkat(dfd, tmpbase, dfd, base, 0) != 0) {
    e = errno;
    if (e == EEXIST) {
      SET_ERROR(s, "object '%s' already exists at '%s'", name, path);
      return ENGINE_EXISTS;
    }
    return local_fail_errno(s, e, "unable to link temporary file to", path, name);
  }
  if (unlinkat(dfd, tmpbase, 0) != 0) {
    char eb[128];
    s->host->log(s->host, ENGINE_LOG_WARN,
                 "object '%s' stored, but its temporary file '%s' next to '%s' could not be "
                 "removed: %s",
                 name, tmpbase, path, local_errstr(errno, eb, sizeof eb));
  }
  *tmp_gone = 1;
  return ENGINE_OK;
}

static int keeps_open(const char *name) {
  return strncmp(name, "data/", 5) == 0;
}

/* A kept descriptor for name, counted as in use (open_release), or NULL. */
static struct open_pack *open_acquire(struct local_sink *s, const char *name) {
  struct open_pack *hit = NULL;
  pthread_mutex_lock(&s->open_mu);
  for (int i = 0; s->open != NULL && i < OPEN_PACKS; i++) {
    struct open_pack *o = &s->open[i];
    if (o->name != NULL && !o->stale && strcmp(o->name, name) == 0) {
      o->users++;
      o->used = ++s->open_tick;
      hit = o;
      break;
    }
  }
  pthread_mutex_unlock(&s->open_mu);
  return hit;
}

/* Close a slot's descriptor unless a get still uses it (then its last
 * user does). The mutex is held. */
static void open_drop(struct open_pack *o) {
  if (o->users > 0) {
    o->stale = 1;
    return;
  }
  close(o->fd);
  free(o->name);
  memset(o, 0, sizeof(*o));
}

static void open_release(struct local_sink *s, struct open_pack *o) {
  pthread_mutex_lock(&s->open_mu);
  if (--o->users == 0 && o->stale)
    open_drop(o);
  pthread_mutex_unlock(&s->open_mu);
}

/* Keep fd (just opened for name) for later gets. On success the slot is
 * returned in use (open_release); NULL when it is not kept (the caller
 * closes fd): every slot is busy, or out of memory. */
static struct open_pack *open_keep(struct local_sink *s, const char *name, int fd, uint64_t size) {
  struct open_pack *slot = NULL;
  pthread_mutex_lock(&s->open_mu);
  if (s->open == NULL)
    s->open = calloc(OPEN_PACKS, sizeof(*s->open));
  for (int i = 0; s->open != NULL && i < OPEN_PACKS; i++) {
    struct open_pack *o = &s->open[i];
    if (o->name != NULL && !o->stale && strcmp(o->name, name) == 0) {
      slot = NULL; /* another thread kept it meanwhile: use ours once */
      goto out;
    }
    if (o->stale || o->users > 0)
      continue;
    if (slot == NULL || (slot->name != NULL && (o->name == NULL || o->used < slot->used)))
      slot = o;
  }
  if (slot != NULL) {
    char *copy = strdup(name);
    if (copy == NULL) {
      slot = NULL;
      goto out;
    }
    if (slot->name != NULL)
      open_drop(slot);
    *slot = (struct open_pack){copy, fd, size, 1, 0, ++s->open_tick};
  }
out:
  pthread_mutex_unlock(&s->open_mu);
  return slot;
}

/* The object `name` is about to be replaced or deleted by this process. */
static void open_forget(struct local_sink *s, const char *name) {
  if (!keeps_open(name))
    return; /* never kept: no lock taken for locks, index and snapshot puts */
  pthread_mutex_lock(&s->open_mu);
  for (int i = 0; s->open != NULL && i < OPEN_PACKS; i++)
    if (s->open[i].name != NULL && !s->open[i].stale && strcmp(s->open[i].name, name) == 0)
      open_drop(&s->open[i]);
  pthread_mutex_unlock(&s->open_mu);
}

static int local_put(void *inst, const char *name, const void *buf, size_t len, unsigned flags) {
  struct local_sink *s = inst;
  int prc = ENGINE_OK;
  char *path = checked_path(s, name, &prc);
  if (path == NULL)
    return prc;
  open_forget(s, name);
  if (buf == NULL && len > 0) {
    SET_ERROR(s, "put of object '%s': %zu bytes announced but no buffer given", name, len);
    free(path);
    return ENGINE_ERROR;
  }

  char *dirpath = NULL;
  const char *base = NULL;
  int dfd = -1, fd = -1, tmp_gone = 1;
  char tmpbase[NAME_MAX + 1];
  char tmppath[PATH_MAX]; /* check_name keeps it below PATH_MAX */
  int rc = open_object_dir(s, name, path, 1, &dirpath, &base, &dfd);
  if (rc != ENGINE_OK)
    goto out;

  /* Cheap early answer that saves writing and fsyncing a doomed copy; the
   * no-replace commit below stays the authority when puts race. */
  struct stat st;
  if ((flags & ENGINE_PUT_NO_OVERWRITE) && fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    SET_ERROR(s, "object '%s' already exists at '%s'", name, path);
    rc = ENGINE_EXISTS;
    goto out;
  }

  int e = 0;
  for (int attempt = 0; attempt < TEMP_ATTEMPTS; attempt++) {
    snprintf(tmpbase, sizeof tmpbase, "%s" TEMP_MARKER "%d-%016" PRIx64, base, (int)getpid(),
             temp_random());
    fd = openat(dfd, tmpbase, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
      break;
    e = errno;
    if (e != EEXIST && e != EINTR)
      break;
  }
  snprintf(tmppath, sizeof tmppath, "%s/%s", strcmp(dirpath, "/") == 0 ? "" : dirpath, tmpbase);
  if (fd < 0) {
    rc = local_fail_errno(s, e, "unable to create temporary file", tmppath, name);
    goto out;
  }
  tmp_gone = 0;

  size_t direct = write_direct(s, fd, buf, len);
  if (direct == (size_t)-1) {
    rc = local_fail_errno(s, errno, "unable to switch off direct I/O for", tmppath, name);
    goto out;
  }
  rc = write_all(s, fd, (const unsigned char *)buf + direct, len - direct, tmppath, name);
  if (rc != ENGINE_OK)
    goto out;
  if (s->fsync && fsync(fd) != 0) {
    rc = local_fail_errno(s, errno, "unable to fsync", tmppath, name);
    goto out;
  }
  int cfd = fd;
  fd = -1;
  /* close() reports delayed write errors on some file systems (NFS). */
  if (close(cfd) != 0 && errno != EINTR) {
    rc = local_fail_errno(s, errno, "unable to close", tmppath, name);
    goto out;
  }

  rc = commit(s, dfd, tmpbase, base, flags, path, name, &tmp_gone);
  if (rc != ENGINE_OK)
    goto out;
  if (s->fsync && fsync(dfd) != 0)
    rc = local_fail_errno(s, errno, "unable to fsync directory", dirpath, name);

out:
  if (fd >= 0)
    close(fd);
  if (!tmp_gone)
    unlinkat(dfd, tmpbase, 0);
  if (dfd >= 0)
    close(dfd);
  free(dirpath);
  free(path);
  return rc;
}

/* ---- get / stat / del ------------------------------------------------- */

static int local_get(void *inst, const char *name, uint64_t off, uint64_t len, void **buf,
                     size_t *out_len) {
  struct local_sink *s = inst;
  *buf = NULL;
  *out_len = 0;
  int rc = ENGINE_OK;
  char *path = checked_path(s, name, &rc);
  if (path == NULL)
    return rc;

  unsigned char *data = NULL;
  struct open_pack *kept = keeps_open(name) ? open_acquire(s, name) : NULL;
  int fd = kept != NULL ? kept->fd : -1;
  uint64_t size = kept != NULL ? kept->size : 0;
  if (kept == NULL) {
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        rc = not_found(s, name, path);
      else
        rc = local_fail_errno(s, errno, "unable to open", path, name);
      goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
      rc = local_fail_errno(s, errno, "unable to stat", path, name);
      goto out;
    }
    if (!S_ISREG(st.st_mode)) {
      SET_ERROR(s, "object '%s': '%s' is not a regular file", name, path);
      rc = ENGINE_ERROR;
      goto out;
    }
    size = (uint64_t)st.st_size;
    if (keeps_open(name))
      kept = open_keep(s, name, fd, size);
  }

  uint64_t want = 0;
  if (objstore_range_want(size, off, len, &want) != 0) {
    char why[160];
    objstore_range_why(size, off, len, why, sizeof why);
    SET_ERROR(s, "unable to read object '%s' ('%s'): %s", name, path, why);
    rc = ENGINE_ERROR;
    goto out;
  }
  if ((uint64_t)(size_t)want != want) {
    SET_ERROR(s, "unable to read object '%s' ('%s'): %" PRIu64 " bytes do not fit in memory", name,
              path, want);
    rc = ENGINE_ERROR;
    goto out;
  }

  data = malloc(want > 0 ? (size_t)want : 1);
  if (data == NULL) {
    rc = local_fail_oom(s, name);
    goto out;
  }
  size_t done = 0;
  while (done < want) {
    size_t chunk = (size_t)want - done;
    ssize_t n = pread(fd, data + done, chunk < IO_CHUNK ? chunk : IO_CHUNK, (off_t)(off + done));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = local_fail_errno(s, errno, "unable to read", path, name);
      goto out;
    }
    if (n == 0) {
      SET_ERROR(s,
                "unable to read object '%s' ('%s'): it ended after %" PRIu64 " bytes although "
                "it was %" PRIu64 " bytes when opened",
                name, path, off + done, size);
      rc = ENGINE_ERROR;
      goto out;
    }
    done += (size_t)n;
  }
  *buf = data;
  *out_len = done;
  data = NULL;

out:
  free(data);
  if (kept != NULL)
    open_release(s, kept);
  else if (fd >= 0)
    close(fd);
  free(path);
  return rc;
}

static int local_stat(void *inst, const char *name, uint64_t *size) {
  struct local_sink *s = inst;
  int rc = ENGINE_OK;
  char *path = checked_path(s, name, &rc);
  if (path == NULL)
    return rc;
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      rc = not_found(s, name, path);
    else
      rc = local_fail_errno(s, errno, "unable to stat", path, name);
  } else if (!S_ISREG(st.st_mode)) {
    SET_ERROR(s, "object '%s': '%s' is not a regular file", name, path);
    rc = ENGINE_ERROR;
  } else if (size != NULL) {
    *size = (uint64_t)st.st_size;
  }
  free(path);
  return rc;
}

static int local_del(void *inst, const char *name) {
  struct local_sink *s = inst;
  int rc = ENGINE_OK;
  char *path = checked_path(s, name, &rc);
  if (path == NULL)
    return rc;
  open_forget(s, name);
  char *dirpath = NULL;
  const char *base = NULL;
  int dfd = -1;
  rc = open_object_dir(s, name, path, 0, &dirpath, &base, &dfd);
  if (rc == ENGINE_NOT_FOUND) {
    not_found(s, name, path);
    goto out;
  }
  if (rc != ENGINE_OK)
    goto out;
  if (unlinkat(dfd, base, 0) != 0) {
    if (errno == ENOENT)
      rc = not_found(s, name, path);
    else
      rc = local_fail_errno(s, errno, "unable to delete", path, name);
    goto out;
  }
  if (s->fsync && fsync(dfd) != 0)
    rc = local_fail_errno(s, errno, "unable to fsync directory", dirpath, name);
out:
  if (dfd >= 0)
    close(dfd);
  free(dirpath);
  free(path);
  return rc;
}

/* ---- instance --------------------------------------------------------- */

static const char *local_describe(void *inst) {
  return ((struct local_sink *)inst)->root;
}

static void local_destroy(void *inst) {
  struct local_sink *s = inst;
  if (s == NULL)
    return;
  for (int i = 0; s->open != NULL && i < OPEN_PACKS; i++)
    if (s->open[i].name != NULL) {
      close(s->open[i].fd);
      free(s->open[i].name);
    }
  free(s->open);
  pthread_mutex_destroy(&s->open_mu);
  free(s->root);
  free(s->root_prefix);
  free(s);
}

static int ensure_root(struct local_sink *s, const char *path) {
  struct stat st;
  if (stat(path, &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      SET_ERROR(s, "repository path '%s' exists but is not a directory", path);
      return ENGINE_ERROR;
    }
    return ENGINE_OK;
  }
  if (errno != ENOENT)
    return local_fail_errno(s, errno, "unable to stat repository directory", path, NULL);

  char *dir = strdup(path);
  if (dir == NULL) {
    SET_ERROR(s, "out of memory while creating repository directory '%s'", path);
    return ENGINE_ERROR;
  }
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/')
    dir[--len] = '\0';
  int rc = make_dirs(s, dir, 0, NULL);
  if (rc == ENGINE_OK)
    s->host->log(s->host, ENGINE_LOG_INFO, "created repository directory '%s'", dir);
  free(dir);
  return rc;
}

static int local_create(const struct engine_host *host, void **out) {
  *out = NULL;
  struct local_sink *s = calloc(1, sizeof *s);
  if (s == NULL) {
    host->set_error(host, "out of memory while creating the local sink");
    return ENGINE_ERROR;
  }
  s->host = host;
  pthread_mutex_init(&s->open_mu, NULL);
  s->fsync = host->cfg_bool(host, "fsync", 1) != 0;
  s->direct_io = host->cfg_bool(host, "direct_io", 1) != 0;
  const char *path = host->cfg_string(host, "path");
  if (path == NULL || path[0] == '\0') {
    host->set_error(host, "option 'path' is required: the repository directory");
    free(s);
    return ENGINE_ERROR;
  }
  int rc = ensure_root(s, path);
  if (rc != ENGINE_OK) {
    free(s);
    return rc;
  }
  /* Canonical and absolute, so describe() is unambiguous and a later chdir() is harmless. */
  s->root = realpath(path, NULL);
  if (s->root == NULL) {
    local_fail_errno(s, errno, "unable to resolve repository directory", path, NULL);
    free(s);
    return ENGINE_ERROR;
  }
  s->root_len = strlen(s->root);
  if (s->root_len > 0 && s->root[s->root_len - 1] == '/')
    s->root_len--;
  if (asprintf(&s->root_prefix, "%.*s/", (int)s->root_len, s->root) < 0) {
    s->root_prefix = NULL;
    host->set_error(host, "out of memory while creating the local sink for '%s'", path);
    local_destroy(s);
    return ENGINE_ERROR;
  }
  if (!s->fsync)
    host->log(host, ENGINE_LOG_WARN,
              "fsync is disabled for '%s': a crash may lose or corrupt stored objects", s->root);
  *out = s;
  return ENGINE_OK;
}

static const struct engine_option local_options[] = {
    {.name = "path",
     .type = ENGINE_OPT_STRING,
     .required = 1,
     .description = "Repository directory; created (mode 0700, with missing parents) if absent."},
    {.name = "fsync",
     .type = ENGINE_OPT_BOOL,
     .default_value = "true",
     .description = "fsync objects and directories before reporting a write as done; turn off "
                    "only for tests and benchmarks."},
    {.name = "direct_io",
     .type = ENGINE_OPT_BOOL,
     .default_value = "true",
     .description = "Write packs around the page cache (O_DIRECT) where the file system supports "
                    "it, so a backup does not evict the host's cached data; falls back to normal "
                    "writes elsewhere."},
    {.name = NULL},
};

static const struct engine_sink_ops local_ops = {
    .struct_size = sizeof(struct engine_sink_ops),
    .put = local_put,
    .get = local_get,
    .stat = local_stat,
    .list = local_list,
    .del = local_del,
    .describe = local_describe,
};

static const struct engine_plugin local_plugin = {
    ENGINE_PLUGIN_HEADER,
    .kind = ENGINE_PLUGIN_SINK,
    .name = "local",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Repository in a directory on a local or mounted file system.",
    .options = local_options,
    .create = local_create,
    .destroy = local_destroy,
    .sink = &local_ops,
};

ENGINE_PLUGIN_EXPORT const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major) {
  return host_abi_major == ENGINE_ABI_MAJOR ? &local_plugin : NULL;
}
