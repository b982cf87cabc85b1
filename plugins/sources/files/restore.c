/* Restore side of the files source: recreates items under a target
 * directory. Every path is resolved component by component with openat
 * (O_NOFOLLOW|O_DIRECTORY) from a descriptor of the target, so no item --
 * not even a symlink restored earlier -- can redirect a write outside it.
 * Nodes are created under a temporary name and renamed into place, so a
 * failure never leaves a half-written file under the real name. Directory
 * modes and times are applied last, deepest first, in restore_end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "files.h"

/* Zero runs are only turned into holes in whole blocks of this size, aligned
 * to the file offset (the allocation unit of common file systems). */
#define HOLE_BLOCK 4096u
/* Small files are written by a few threads: a restore of many small files
 * is bound by file creation in the kernel, which one thread cannot spread
 * over the cores. The main thread reads the content (from the engine's
 * read-ahead) and checks every name; writers only create, write and rename
 * inside a parent directory the main thread already opened safely. */
#define ASYNC_MAX_FILE (1024u * 1024u)
#define ASYNC_MAX_QUEUED (32u * 1024u * 1024u)
#define WRITERS 3
/* Wake-ups cost a context switch, and the woken writer usually preempts
 * the main thread that woke it: a writer is woken only when it would find
 * a batch of this many files (one more writer per batch queued), a writer
 * keeps going while the queue has work, and a main thread waiting for room
 * is woken when the queue is half empty. */
#define WAKE_BATCH 4
/* A writer takes up to this many queued files of one directory at a time. */
#define WRITER_RUN 64

/* Metadata as restore applies it. */
struct rmeta {
  int has_mode;
  mode_t mode;
  int has_owner;
  uid_t uid;
  gid_t gid;
  int has_times;
  struct timespec ts[2]; /* atime, mtime; UTIME_OMIT when unknown */
  int sparse;
  struct files_xattrs *xattrs; /* owned; NULL when none (or the option is off) */
  unsigned flags;              /* inode flags to set last; 0 when none */
};

/* A file whose inode flags are set in restore_end, once nothing else will
 * touch it (immutable and append-only forbid renames, links and times). */
struct flag_fixup {
  char *name;
  unsigned flags;
};

struct dir_fixup {
  char *name;
  size_t depth;
  struct rmeta meta;
};

/* An open directory shared by the parent cache and the queued small files
 * in it: closed when the last holder lets go (writers run on other
 * threads, hence the atomic count). One descriptor per directory instead
 * of a dup and a close per queued file. */
struct dref {
  int fd;
  int refs;
};

static struct dref *dref_new(int fd) {
  struct dref *d = malloc(sizeof(*d));
  if (d != NULL)
    *d = (struct dref){fd, 1};
  return d;
}

static void dref_put(struct dref *d) {
  if (d != NULL && __atomic_sub_fetch(&d->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    close(d->fd);
    free(d);
  }
}

struct wjob {
  struct wjob *next;
  int dirfd;        /* the parent directory: the target's root or dir->fd */
  struct dref *dir; /* a reference held by the job, or NULL for the root */
  char *name;       /* the item's name (messages) */
  char *base;       /* the last component */
  char *data;
  size_t len;
  struct rmeta meta;
};

/* A large file whose write-out the flusher waits for. */
struct fjob {
  struct fjob *next;
  int fd;     /* owned: the flusher closes it */
  char *name; /* the item's name (messages) */
};

struct rctx {
  /* small-file writers (see ASYNC_MAX_FILE) */
  pthread_mutex_t wmu;
  pthread_cond_t wcv; /* writers wait for jobs */
  pthread_cond_t dcv; /* the main thread waits for room in the queue or a drain */
  int main_waits;     /* the main thread is waiting on dcv */
  struct wjob *whead, *wtail;
  size_t wqueued, wpending, wjobs; /* bytes and files queued; files not yet written */
  int wstop, nthreads, widle;      /* widle: writers waiting on wcv */
  pthread_t threads[WRITERS];
  size_t wfailures;
  char wfirst[1536];
  /* the flusher (see FLUSH_MAX_QUEUED) */
  pthread_mutex_t fmu;
  pthread_cond_t fcv;
  struct fjob *fhead, *ftail;
  size_t fqueued;
  int fstop, fstarted, frunning;
  pthread_t fthread;
  size_t fflushed;
  struct files_inst *in;
  const struct engine_host *h;
  int rootfd; /* -1 in a dry run on a missing target */
  char *root; /* the target as given, or "/" */
  int dry_run;
  int is_root; /* effective uid 0: ownership and device nodes */
  uid_t euid;  /* the process's effective ids (owned_as, per small file) */
  gid_t egid;
  int umask; /* the process's umask, or -1 when unknown */
  struct dir_fixup *dirs;
  size_t n_dirs, cap_dirs;
  /* The parent directory of the previous item, kept open because items
   * arrive grouped by directory. */
  char *cache_name;
  struct dref *cache_dir;
  char *buf;             /* FILES_IO_BLOCK */
  char last_error[1536]; /* the message of the latest fail() */
  struct flag_fixup *flagged;
  size_t n_flagged, cap_flagged;
  /* metadata the target refused, per kind (xattr.c), reported once each in
   * restore_end; writers count too, hence the mutex */
  pthread_mutex_t xmu;
  size_t xfailed[FILES_XK_N];
  int xerr[FILES_XK_N];
  char xfirst[FILES_XK_N][512];
};

/* ---- messages ---- */

static int fail(struct rctx *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* set_error("unable to restore '<name>': <reason>") and return ENGINE_ERROR. */
static int fail(struct rctx *r, const char *name, const char *fmt, ...) {
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

/* ---- names ---- */

/* Why `name` may not be restored, or NULL when it is a clean relative path. */
static const char *invalid_name(const char *name, size_t len) {
  if (len == 0)
    return "the name is empty";
  if (memchr(name, '\0', len) != NULL)
    return "the name contains a NUL byte";
  if (name[0] == '/')
    return "the name is absolute";
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && name[i] != '/')
      continue;
    size_t n = i - start;
    if (n == 0)
      return "the name has an empty component";
    if (n == 1 && name[start] == '.')
      return "the name has a '.' component";
    if (n == 2 && name[start] == '.' && name[start + 1] == '.')
      return "the name has a '..' component";
    if (n > NAME_MAX)
      return "a component of the name is longer than NAME_MAX";
    start = i + 1;
  }
  return NULL;
}

static size_t name_depth(const char *name) {
  size_t d = 1;
  for (; *name; name++)
    d += *name == '/';
  return d;
}

/* ---- safe path resolution ---- */

/* Open the directory `path` (a validated relative name, or "" for the root)
 * below the target, one component at a time, never following a symlink.
 * With `create`, missing directories are made (mode 0700: their real
 * metadata, if any, comes with their own item). Returns a new descriptor,
 * or -1 after set_error naming `item`. */
static int open_dir_path(struct rctx *r, const char *item, const char *path, int create) {
  int fd = fcntl(r->rootfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    return fail(r, item, "unable to duplicate the target descriptor: %s", strerror(errno)), -1;
  const char *p = path;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    char comp[NAME_MAX + 1];
    if (n > NAME_MAX) {
      close(fd);
      return fail(r, item, "a path component is longer than NAME_MAX"), -1;
    }
    memcpy(comp, p, n);
    comp[n] = '\0';
    size_t prefix_len = (size_t)(p - path) + n;
    int nfd;
    for (int attempt = 0;; attempt++) {
      nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (nfd >= 0 || errno != ENOENT || !create || attempt > 0)
        break;
      if (mkdirat(fd, comp, 0700) != 0 && errno != EEXIST) {
        int err = errno;
        close(fd);
        char *d = files_display(path, prefix_len);
        fail(r, item, "unable to create directory '%s': %s", d, strerror(err));
        files_display_free(d);
        return -1;
      }
    }
    if (nfd < 0) {
      int err = errno;
      close(fd);
      char *d = files_display(path, prefix_len);
      if (err == ELOOP || err == ENOTDIR)
        fail(r, item, "'%s' is a symlink or not a directory; refusing to resolve a path through it",
             d);
      else
        fail(r, item, "unable to open directory '%s': %s", d, strerror(err));
      files_display_free(d);
      return -1;
    }
    close(fd);
    fd = nfd;
    p += n;
    if (*p == '/')
      p++;
  }
  return fd;
}

static void cache_drop(struct rctx *r) {
  dref_put(r->cache_dir);
  r->cache_dir = NULL;
  free(r->cache_name);
  r->cache_name = NULL;
}

/* Forget the cached parent when `name` is it or one of its ancestors: the
 * node there is about to be replaced. */
static void cache_invalidate(struct rctx *r, const char *name) {
  if (r->cache_name == NULL)
    return;
  size_t n = strlen(name);
  if (strncmp(r->cache_name, name, n) == 0 && (r->cache_name[n] == '\0' || r->cache_name[n] == '/'))
    cache_drop(r);
}

/* The descriptor of the parent directory of `name` (borrowed: valid until
 * the next call), creating missing directories. *base is the last
 * component. Returns -1 after set_error. */
static int parent_fd(struct rctx *r, char *name, const char **base) {
  char *slash = strrchr(name, '/');
  if (slash == NULL) {
    *base = name;
    return r->rootfd;
  }
  *slash = '\0';
  *base = slash + 1;
  if (r->cache_name != NULL && strcmp(r->cache_name, name) == 0) {
    *slash = '/';
    return r->cache_dir->fd;
  }
  cache_drop(r);
  char *parent = strdup(name);
  *slash = '/';
  if (parent == NULL)
    return fail(r, name, "out of memory"), -1;
  int fd = open_dir_path(r, name, parent, 1);
  if (fd < 0) {
    free(parent);
    return -1;
  }
  struct dref *d = dref_new(fd);
  if (d == NULL) {
    close(fd);
    free(parent);
    return fail(r, name, "out of memory"), -1;
  }
  r->cache_name = parent;
  r->cache_dir = d;
  return fd;
}

/* ---- metadata ---- */

static struct timespec ns_to_ts(json_int_t ns) {
  struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000)};
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1000000000;
    ts.tv_sec -= 1;
  }
  return ts;
}

/* Returns 0, or -1 with a reason in why for invalid "xattrs" / "flags". */
static int parse_meta(const struct rctx *r, json_t *m, struct rmeta *out, char *why,
                      size_t why_len) {
  memset(out, 0, sizeof(*out));
  json_t *v = json_object_get(m, "mode");
  if (json_is_integer(v)) {
    out->has_mode = 1;
    out->mode = (mode_t)(json_integer_value(v) & 07777);
  }
  json_t *uid = json_object_get(m, "uid"), *gid = json_object_get(m, "gid");
  if (json_is_integer(uid) && json_is_integer(gid)) {
    out->has_owner = 1;
    out->uid = (uid_t)json_integer_value(uid);
    out->gid = (gid_t)json_integer_value(gid);
  }
  out->ts[0].tv_nsec = UTIME_OMIT;
  out->ts[1].tv_nsec = UTIME_OMIT;
  v = json_object_get(m, "atime_ns");
  if (json_is_integer(v)) {
    out->ts[0] = ns_to_ts(json_integer_value(v));
    out->has_times = 1;
  }
  v = json_object_get(m, "mtime_ns");
  json_t *mtime_s = json_object_get(m, "mtime");
  if (json_is_integer(v)) {
    out->ts[1] = ns_to_ts(json_integer_value(v));
    out->has_times = 1;
  } else if (json_is_integer(mtime_s)) {
    out->ts[1].tv_sec = (time_t)json_integer_value(mtime_s);
    out->ts[1].tv_nsec = 0;
    out->has_times = 1;
  }
  out->sparse = json_is_true(json_object_get(m, "sparse"));
  v = r->in->xattrs ? json_object_get(m, "xattrs") : NULL;
  if (v != NULL && files_xattrs_parse(v, &out->xattrs, why, why_len) != 0)
    return -1;
  v = r->in->file_flags ? json_object_get(m, "flags") : NULL;
  if (v != NULL) {
    char unknown;
    if (!json_is_string(v)) {
      snprintf(why, why_len, "'flags' is not a string");
      files_xattrs_free(out->xattrs);
      out->xattrs = NULL;
      return -1;
    }
    /* letters of a later version are left out; the ones known are set */
    if (files_flags_parse(json_string_value(v), &out->flags, &unknown) != 0)
      r->h->log(r->h, ENGINE_LOG_WARN,
                "unknown file flag letter '%c' in the metadata; it is not restored", unknown);
  }
  return 0;
}

/* ---- extended attributes and flags the target refused ---- */

struct xfail_ctx {
  struct rctx *r;
  const char *name;
};

/* Count an item whose metadata of `kind` could not be set (any thread). */
static void note_xfail(struct rctx *r, const char *name, enum files_xkind kind, const char *what,
                       int err) {
  pthread_mutex_lock(&r->xmu);
  if (r->xfailed[kind]++ == 0) {
    char *d = files_display(name, strlen(name));
    snprintf(r->xfirst[kind], sizeof(r->xfirst[kind]), "'%s'%s%s", d, what ? ", " : "",
             what ? what : "");
    files_display_free(d);
    r->xerr[kind] = err;
  }
  pthread_mutex_unlock(&r->xmu);
}

static void xattr_failed(void *ud, enum files_xkind kind, const char *xname, int err) {
  struct xfail_ctx *c = ud;
  note_xfail(c->r, c->name, kind, xname, err);
}

/* Set the item's extended attributes through fd, or (fd < 0) at dirfd/base
 * without following a symlink. What fails is counted, not an error. */
static void set_xattrs(struct rctx *r, const char *name, int fd, int dirfd, const char *base,
                       const struct rmeta *m) {
  if (m->xattrs == NULL)
    return;
  char path[64 + NAME_MAX];
  if (fd < 0)
    snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, base);
  struct xfail_ctx c = {r, name};
  files_xattrs_set(m->xattrs, fd, fd >= 0 ? NULL : path, xattr_failed, &c);
}

/* Set the flags of an open file or directory (counted when refused). */
static void set_flags(struct rctx *r, const char *name, int fd, unsigned flags) {
  int err;
  if (files_flags_set(fd, flags, &err) != 0) {
    char letters[FILES_FLAGS_MAX + 1];
    char what[64];
    files_flags_letters(flags, letters);
    snprintf(what, sizeof(what), "flags '%s'", letters);
    note_xfail(r, name, FILES_XK_FLAGS, what, err);
  }
}

/* Why EPERM, for the warning. */
static const char *xfail_perm_hint(enum files_xkind k, int is_root) {
  switch (k) {
  case FILES_XK_USER:
    return "; user.* attributes cannot be set on symlinks and special files, and only by the "
           "file's owner or root";
  case FILES_XK_TRUSTED:
  case FILES_XK_SECURITY:
    return is_root ? "; setting them needs CAP_SYS_ADMIN, which this process does not have"
                   : "; setting them needs root (CAP_SYS_ADMIN)";
  case FILES_XK_CAPS:
    return is_root ? "; setting them needs CAP_SETFCAP, which this process does not have"
                   : "; setting them needs root (CAP_SETFCAP)";
  case FILES_XK_FLAGS:
    return is_root ? "; flags i and a need CAP_LINUX_IMMUTABLE, which this process does not have"
                   : "; flags i and a need root (CAP_LINUX_IMMUTABLE), the others the file's owner";
  default:
    return is_root ? "" : "; setting them may need root";
  }
}

/* One warning per kind of metadata the target refused. */
static void report_xfail(struct rctx *r) {
  for (int k = 0; k < FILES_XK_N; k++) {
    if (r->xfailed[k] == 0)
      continue;
    int err = r->xerr[k];
    const char *hint = "";
    if (err == ENOTSUP || err == EOPNOTSUPP || err == ENOTTY)
      hint = "; the target file system does not support them";
    else if (err == EPERM)
      hint = xfail_perm_hint((enum files_xkind)k, r->is_root);
    r->h->log(r->h, ENGINE_LOG_WARN,
              "%s could not be set on %zu item(s) (restored without them): %s (the first: "
              "%s)%s",
              files_xkind_word((enum files_xkind)k), r->xfailed[k],
              err ? strerror(err) : "invalid value", r->xfirst[k], hint);
  }
}

/* Apply owner, mode and times to an open file or directory. Ownership
 * first: chown clears the set-id bits that chmod then restores. */
static int apply_meta_fd(struct rctx *r, const char *name, int fd, const struct rmeta *m) {
  if (r->is_root && m->has_owner && fchown(fd, m->uid, m->gid) != 0)
    return fail(r, name, "unable to set owner %u:%u: %s", (unsigned)m->uid, (unsigned)m->gid,
                strerror(errno));
  if (m->has_mode && fchmod(fd, m->mode) != 0)
    return fail(r, name, "unable to set mode %04o: %s", (unsigned)m->mode, strerror(errno));
  /* after fchown, which drops security.capability, and fchmod, which
   * rewrites an ACL's mask */
  set_xattrs(r, name, fd, -1, NULL, m);
  if (m->has_times && futimens(fd, m->ts) != 0)
    return fail(r, name, "unable to set timestamps: %s", strerror(errno));
  return ENGINE_OK;
}

/* The same for a node that cannot be opened (symlink, fifo, device),
 * addressed by dirfd + base and never followed. */
static int apply_meta_at(struct rctx *r, const char *name, int dirfd, const char *base,
                         const struct rmeta *m, int is_symlink) {
  if (r->is_root && m->has_owner && fchownat(dirfd, base, m->uid, m->gid, AT_SYMLINK_NOFOLLOW) != 0)
    return fail(r, name, "unable to set owner %u:%u: %s", (unsigned)m->uid, (unsigned)m->gid,
                strerror(errno));
  if (!is_symlink && m->has_mode) {
    int rc = fchmodat(dirfd, base, m->mode, AT_SYMLINK_NOFOLLOW);
    if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS))
      rc = fchmodat(dirfd, base, m->mode, 0); /* the node was just created by us, not a symlink */
    if (rc != 0)
      return fail(r, name, "unable to set mode %04o: %s", (unsigned)m->mode, strerror(errno));
  }
  set_xattrs(r, name, -1, dirfd, base, m);
  if (m->has_times && utimensat(dirfd, base, m->ts, AT_SYMLINK_NOFOLLOW) != 0)
    return fail(r, name, "unable to set timestamps: %s", strerror(errno));
  return ENGINE_OK;
}

/* ---- temporary names and placing ---- */

/* "<base>.engine-tmp-XXXXXX", the base shortened to stay within NAME_MAX. */
static void tmp_name(char *out, const char *base) {
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
    return fail(r, name, "a non-empty directory is in the way; refusing to replace it");
  return fail(r, name, "unable to remove the directory in the way: %s", strerror(errno));
}

/* Rename the temporary node into place. `is_link`: tmp is a hard link to an
 * existing inode, which may already be the one at `base`. */
static int place(struct rctx *r, const char *name, int dirfd, const char *tmp, const char *base,
                 int is_link) {
  cache_invalidate(r, name);
  int rc = renameat(dirfd, tmp, dirfd, base);
  if (rc != 0 && errno == EISDIR) {
    if (remove_empty_dir(r, name, dirfd, base) != ENGINE_OK) {
      unlinkat(dirfd, tmp, 0);
      return ENGINE_ERROR;
    }
    rc = renameat(dirfd, tmp, dirfd, base);
  }
  if (rc != 0) {
    fail(r, name, "unable to rename the temporary node into place: %s", strerror(errno));
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

static int write_all(int fd, const char *buf, size_t len) {
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
    } else if (write_all(fd, buf + i, j - i) != 0) {
      return -1;
    }
    i = j;
  }
  return 0;
}

/* restore_end makes everything durable with one syncfs. Starting the
 * write-out of each large file (those the main thread writes) as soon as
 * it is complete lets the disk work while the restore goes on, instead of
 * all of it at the end (on 1 GiB here the final syncfs went from 0.77 s to
 * about 0.2 s). Only a hint: write errors still surface in the syncfs.
 * Small files are left to the syncfs: a hint per small file costs more
 * than it saves. */
#define WRITEBACK_MIN (256u * 1024u)
static void start_writeback(int fd, uint64_t size) {
  if (size >= WRITEBACK_MIN)
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/* A writer's (or the flusher's) failure: logged at once, counted, the
 * first kept for restore_end (fail() and r->last_error belong to the main
 * thread). */
static void wfail(struct rctx *r, const char *name, const char *what, int err) {
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

/* ---- the flusher ----
 *
 * Started write-out is not yet durable: the final syncfs still waits for
 * it and then for the device to flush its volatile write cache, and that
 * flush covers every byte written since the previous one. On the
 * benchmark's VM (a virtio disk whose flush is an fsync on the host) the
 * final syncfs of a 1 GiB restore took 0.15-0.7 s, most of it the flush.
 * So a flusher thread takes over the descriptor of each complete large
 * file and waits for its write-out while the restore goes on: of the files
 * queued when it wakes, it waits for the data of all but the last
 * (sync_file_range, no flush) and fdatasyncs the last, one device flush
 * for the batch. The final syncfs then has the small files, the metadata
 * and the last batches left (0.15-0.2 s instead of 0.5-0.7 s in an A/B
 * here). The flusher only moves work earlier: the syncfs in restore_end is
 * what makes the restore durable, and errors the flusher sees fail the
 * restore as well.
 *
 * Once a batch is written out, its files' pages are dropped from the page
 * cache (POSIX_FADV_DONTNEED; they are clean then). A restore is
 * write-once: keeping a gigabyte of restored files cached would evict what
 * the machine's other programs have cached, and the pages freed this way
 * are what the next files are written into. On the benchmark's VM that
 * matters twice: free memory the balloon has handed back to the host costs
 * a host fault on its first touch, and freshly freed pages do not (A/B of
 * 10 on 1 GiB: 1.85-3.62 s, median 2.1, 1.05-3.5 system-seconds -> 1.63-1.92
 * s, median 1.79, 0.8-1.0 system-seconds). A program that reads the restored
 * files right away reads the large ones from disk again.
 *
 * At most FLUSH_MAX_QUEUED descriptors wait; beyond that
 * (or when the thread cannot start) a file is closed at once and left to
 * the syncfs. */
#define FLUSH_MAX_QUEUED 64u

static void fjob_free(struct fjob *j) {
  if (j->fd >= 0)
    close(j->fd);
  free(j->name);
  free(j);
}

static void *flusher_main(void *arg) {
  struct rctx *r = arg;
  pthread_mutex_lock(&r->fmu);
  for (;;) {
    while (r->fhead == NULL && !r->fstop)
      pthread_cond_wait(&r->fcv, &r->fmu);
    if (r->fhead == NULL)
      break; /* stopped, and every queued file is done */
    struct fjob *batch = r->fhead;
    r->fhead = r->ftail = NULL;
    r->fqueued = 0;
    pthread_mutex_unlock(&r->fmu);
    size_t n = 0, batch_len = 0;
    for (struct fjob *j = batch; j != NULL; j = j->next) {
      batch_len++;
      int rc = j->next != NULL
                   ? sync_file_range(j->fd, 0, 0,
                                     SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                         SYNC_FILE_RANGE_WAIT_AFTER)
                   : fdatasync(j->fd);
      if (rc != 0)
        wfail(r, j->name, j->next != NULL ? "unable to write it out" : "unable to flush it to disk",
              errno);
      else
        n++;
    }
    while (batch != NULL) {
      struct fjob *next = batch->next;
      /* written out now: its pages can go (see "the flusher") */
      if (n == batch_len)
        (void)posix_fadvise(batch->fd, 0, 0, POSIX_FADV_DONTNEED);
      if (close(batch->fd) != 0)
        wfail(r, batch->name, "unable to close it after flushing", errno);
      batch->fd = -1;
      fjob_free(batch);
      batch = next;
    }
    pthread_mutex_lock(&r->fmu);
    r->fflushed += n;
  }
  pthread_mutex_unlock(&r->fmu);
  return NULL;
}

/* Hands the descriptor of a complete large file to the flusher, which
 * closes it. Returns 0 when handed over; otherwise the caller keeps fd. */
static int flush_hand_over(struct rctx *r, int fd, const char *name) {
  pthread_mutex_lock(&r->fmu);
  if (!r->fstarted) {
    r->fstarted = 1;
    r->frunning = pthread_create(&r->fthread, NULL, flusher_main, r) == 0;
  }
  if (!r->frunning || r->fstop || r->fqueued >= FLUSH_MAX_QUEUED) {
    pthread_mutex_unlock(&r->fmu);
    return -1;
  }
  struct fjob *j = malloc(sizeof(*j));
  char *copy = strdup(name);
  if (j == NULL || copy == NULL) {
    pthread_mutex_unlock(&r->fmu);
    free(j);
    free(copy);
    return -1;
  }
  *j = (struct fjob){NULL, fd, copy};
  if (r->ftail != NULL)
    r->ftail->next = j;
  else
    r->fhead = j;
  r->ftail = j;
  r->fqueued++;
  pthread_cond_signal(&r->fcv);
  pthread_mutex_unlock(&r->fmu);
  return 0;
}

/* Stops the flusher once it has done every queued file (usually none are
 * left: the queue is taken as soon as the flusher is free). Nothing is
 * queued unless the thread runs, and it only ends with an empty queue. */
static void flusher_stop(struct rctx *r) {
  pthread_mutex_lock(&r->fmu);
  r->fstop = 1;
  pthread_cond_signal(&r->fcv);
  int running = r->frunning;
  r->frunning = 0;
  pthread_mutex_unlock(&r->fmu);
  if (running)
    pthread_join(r->fthread, NULL);
}

static int restore_file(struct rctx *r, const char *name, int dirfd, const char *base,
                        const struct rmeta *m, const struct engine_item *item,
                        const struct engine_reader *data) {
  if (data == NULL && item->size > 0)
    return fail(r, name, "the item has %llu bytes of content but no data was supplied",
                (unsigned long long)item->size);
  char tmp[NAME_MAX + 1];
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    tmp_name(tmp, base);
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST)
      return fail(r, name, "unable to create a temporary file: %s", strerror(errno));
  }
  if (fd < 0)
    return fail(r, name, "unable to create a temporary file: every name tried exists");

  uint64_t total = 0, expected = data != NULL ? data->size : 0;
  int rc = ENGINE_OK;
  while (data != NULL) {
    ssize_t n = data->read(data, r->buf, FILES_IO_BLOCK);
    if (n < 0) {
      rc = fail(r, name, "reading the content from the repository failed after %llu bytes",
                (unsigned long long)total);
      break;
    }
    if (n == 0)
      break;
    if (total + (uint64_t)n > expected) {
      rc = fail(r, name, "the repository returned more content than the expected %llu bytes",
                (unsigned long long)expected);
      break;
    }
    int wrc =
        m->sparse ? write_sparse(fd, r->buf, (size_t)n, total) : write_all(fd, r->buf, (size_t)n);
    if (wrc != 0) {
      rc = fail(r, name, "unable to write at offset %llu: %s", (unsigned long long)total,
                strerror(errno));
      break;
    }
    total += (uint64_t)n;
  }
  if (rc == ENGINE_OK && total != expected)
    rc = fail(r, name, "the content is truncated: got %llu of %llu bytes",
              (unsigned long long)total, (unsigned long long)expected);
  /* A trailing hole exists only once the size is set (the file is new:
   * without holes its size is what was written). */
  if (rc == ENGINE_OK && m->sparse && ftruncate(fd, (off_t)total) != 0)
    rc = fail(r, name, "unable to set the size to %llu bytes: %s", (unsigned long long)total,
              strerror(errno));
  if (rc == ENGINE_OK)
    rc = apply_meta_fd(r, name, fd, m);
  if (rc == ENGINE_OK)
    start_writeback(fd, total);
  if (rc == ENGINE_OK && total >= WRITEBACK_MIN && flush_hand_over(r, fd, name) == 0)
    fd = -1; /* the flusher closes it */
  if (fd >= 0 && close(fd) != 0 && rc == ENGINE_OK)
    rc = fail(r, name, "unable to close the temporary file: %s", strerror(errno));
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
    return fail(r, name, "the metadata has no valid symlink target");
  if (len == 0 || strlen(target) != len) {
    free(target);
    return fail(r, name, "the symlink target is empty or contains a NUL byte");
  }
  char tmp[NAME_MAX + 1];
  int made = 0;
  for (int attempt = 0; attempt < 100 && !made; attempt++) {
    tmp_name(tmp, base);
    if (symlinkat(target, dirfd, tmp) == 0) {
      made = 1;
    } else if (errno != EEXIST) {
      int err = errno;
      free(target);
      return fail(r, name, "unable to create the symlink: %s", strerror(err));
    }
  }
  free(target);
  if (!made)
    return fail(r, name, "unable to create the symlink: every temporary name tried exists");
  if (apply_meta_at(r, name, dirfd, tmp, m, 1) != ENGINE_OK) {
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
    return fail(r, name, "the metadata has no valid hard link target");
  const char *why = invalid_name(link, len);
  if (why == NULL && strcmp(link, name) == 0)
    why = "it names the item itself";
  if (why != NULL) {
    char *d = files_display(link, len);
    fail(r, name, "refusing hard link target '%s': %s", d, why);
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
    src_dir = open_dir_path(r, name, link, 0);
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
    tmp_name(tmp, base);
    /* flags 0: a symlink at the source is linked itself, never followed */
    if (linkat(src_dir, src_base, dirfd, tmp, 0) == 0) {
      made = 1;
    } else if (errno != EEXIST) {
      char *d = files_display(link, len);
      if (errno == ENOENT)
        fail(r, name, "its hard link target '%s' was not restored", d);
      else
        fail(r, name, "unable to link to '%s': %s", d, strerror(errno));
      files_display_free(d);
      reported = 1;
    }
  }
  if (made)
    rc = place(r, name, dirfd, tmp, base, 1);
  else if (!reported)
    fail(r, name, "unable to create the hard link: every temporary name tried exists");
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
    return fail(r, name, "the metadata has no valid special file kind");
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
    tmp_name(tmp, base);
    if (mknodat(dirfd, tmp, type | 0600, type == S_IFIFO ? 0 : rdev) == 0)
      made = 1;
    else if (errno != EEXIST)
      return fail(r, name, "unable to create the %s node: %s", kind, strerror(errno));
  }
  if (!made)
    return fail(r, name, "unable to create the %s node: every temporary name tried exists", kind);
  if (apply_meta_at(r, name, dirfd, tmp, m, 0) != ENGINE_OK) {
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
      cache_invalidate(r, name);
      if (unlinkat(dirfd, base, 0) != 0)
        return fail(r, name, "unable to remove the non-directory in the way: %s", strerror(errno));
      if (mkdirat(dirfd, base, 0700) != 0)
        return fail(r, name, "unable to create the directory: %s", strerror(errno));
    }
  } else if (errno == ENOENT) {
    if (mkdirat(dirfd, base, 0700) != 0)
      return fail(r, name, "unable to create the directory: %s", strerror(errno));
  } else {
    return fail(r, name, "unable to stat: %s", strerror(errno));
  }
  if (r->n_dirs == r->cap_dirs) {
    size_t ncap = r->cap_dirs ? r->cap_dirs * 2 : 64;
    struct dir_fixup *nd = realloc(r->dirs, ncap * sizeof(*nd));
    if (nd == NULL)
      return fail(r, name, "out of memory");
    r->dirs = nd;
    r->cap_dirs = ncap;
  }
  char *copy = strdup(name);
  if (copy == NULL)
    return fail(r, name, "out of memory");
  r->dirs[r->n_dirs++] = (struct dir_fixup){.name = copy, .depth = name_depth(name), .meta = *m};
  m->xattrs = NULL; /* the fixup owns them now */
  return ENGINE_OK;
}

static int add_flag_fixup(struct rctx *r, const char *name, unsigned flags) {
  if (r->n_flagged == r->cap_flagged) {
    size_t ncap = r->cap_flagged ? r->cap_flagged * 2 : 16;
    struct flag_fixup *nf = realloc(r->flagged, ncap * sizeof(*nf));
    if (nf == NULL)
      return fail(r, name, "out of memory");
    r->flagged = nf;
    r->cap_flagged = ncap;
  }
  char *copy = strdup(name);
  if (copy == NULL)
    return fail(r, name, "out of memory");
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
    return ENGINE_ERROR;
  }
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
  free(r->buf);
  free(r->root);
  free(r);
  return ENGINE_ERROR;
}

/* ---- small-file writers ---- */

static void wjob_free(struct wjob *j) {
  files_xattrs_free(j->meta.xattrs);
  dref_put(j->dir);
  free(j->name);
  free(j->base);
  free(j->data);
  free(j);
}

/* Whether the new file already has the owner and group to restore (files
 * of the restoring user: an fchown would only cost an inode update). */
static int owned_as(const struct rctx *r, int fd, const struct rmeta *m) {
  struct stat st;
  return m->uid == r->euid && m->gid == r->egid && fstat(fd, &st) == 0 && st.st_uid == m->uid &&
         st.st_gid == m->gid;
}

/* Same steps as restore_file: a temporary node, content, size, metadata,
 * then rename into place (an empty directory in the way is removed). A
 * plain permission mode the umask leaves alone is given at creation, which
 * saves an fchmod (and an inode update) per file. The partly written
 * temporary file is then as readable as the restored file will be (and
 * directories this restore creates stay 0700 until restore_end). */
static void write_job(struct rctx *r, struct wjob *j) {
  char tmp[NAME_MAX + 1];
  int fd = -1;
  mode_t create_mode = 0600;
  int mode_set = 0;
  /* only plain modes: set-id and sticky bits are set by fchmod after the
   * fchown (which clears set-id bits) */
  if (j->meta.has_mode && r->umask >= 0 && (j->meta.mode & 07000) == 0 &&
      (j->meta.mode & (mode_t)r->umask) == 0) {
    create_mode = j->meta.mode;
    mode_set = 1;
  }
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
    tmp_name(tmp, j->base);
    fd = openat(j->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, create_mode);
    if (fd < 0 && errno != EEXIST)
      return wfail(r, j->name, "unable to create a temporary file", errno);
  }
  if (fd < 0)
    return wfail(r, j->name, "unable to create a temporary file", EEXIST);
  const char *what = NULL;
  int err = 0;
  /* the file is new (O_EXCL): its size is what was written */
  if (write_all(fd, j->data, j->len) != 0)
    what = "unable to write", err = errno;
  else if (r->is_root && j->meta.has_owner && !owned_as(r, fd, &j->meta) &&
           fchown(fd, j->meta.uid, j->meta.gid) != 0)
    what = "unable to set the owner", err = errno;
  else if (j->meta.has_mode && !mode_set && fchmod(fd, j->meta.mode) != 0)
    what = "unable to set the mode", err = errno;
  if (what == NULL)
    set_xattrs(r, j->name, fd, -1, NULL, &j->meta);
  if (what == NULL && j->meta.has_times && futimens(fd, j->meta.ts) != 0)
    what = "unable to set timestamps", err = errno;
  if (close(fd) != 0 && what == NULL)
    what = "unable to close the temporary file", err = errno;
  if (what == NULL) {
    int rc = renameat(j->dirfd, tmp, j->dirfd, j->base);
    if (rc != 0 && errno == EISDIR && unlinkat(j->dirfd, j->base, AT_REMOVEDIR) == 0)
      rc = renameat(j->dirfd, tmp, j->dirfd, j->base);
    if (rc != 0)
      what = "unable to rename the temporary file into place", err = errno;
  }
  if (what != NULL) {
    unlinkat(j->dirfd, tmp, 0);
    wfail(r, j->name, what, err);
  }
}

/* Wake one more writer when the queue holds a batch for each writer
 * already awake and one more (the mutex is held). */
static void writers_wake(struct rctx *r) {
  size_t awake = (size_t)(r->nthreads - r->widle);
  if (r->widle > 0 && r->wjobs >= (awake + 1) * WAKE_BATCH)
    pthread_cond_signal(&r->wcv);
}

/* Before the main thread spends a while on something else (a large file):
 * files still waiting for a batch to fill are started now. */
static void writers_kick(struct rctx *r) {
  if (r->nthreads == 0)
    return;
  pthread_mutex_lock(&r->wmu);
  if (r->wjobs > 0 && r->widle == r->nthreads)
    pthread_cond_signal(&r->wcv);
  pthread_mutex_unlock(&r->wmu);
}

/* Whether two queued files have the same parent directory. */
static int same_dir(const struct wjob *a, const struct wjob *b) {
  size_t la = strlen(a->name) - strlen(a->base), lb = strlen(b->name) - strlen(b->base);
  return la == lb && memcmp(a->name, b->name, la) == 0;
}

static void *writer_main(void *arg) {
  struct rctx *r = arg;
  pthread_mutex_lock(&r->wmu);
  for (;;) {
    while (r->whead == NULL && !r->wstop) {
      r->widle++;
      pthread_cond_wait(&r->wcv, &r->wmu);
      r->widle--;
    }
    if (r->whead == NULL)
      break;
    /* Take the run of queued files of one directory: creating and renaming
     * take the directory's lock, and writers in one directory spend their
     * time spinning on it while writers in different ones do not. */
    struct wjob *run = r->whead, *last = run;
    size_t n = 1, bytes = run->len;
    while (last->next != NULL && n < WRITER_RUN && same_dir(run, last->next)) {
      last = last->next;
      n++;
      bytes += last->len;
    }
    r->whead = last->next;
    if (r->whead == NULL)
      r->wtail = NULL;
    last->next = NULL;
    r->wjobs -= n;
    pthread_mutex_unlock(&r->wmu);
    for (struct wjob *j = run; j != NULL; j = j->next)
      write_job(r, j);
    pthread_mutex_lock(&r->wmu);
    r->wqueued -= bytes;
    r->wpending -= n;
    if (r->main_waits && (r->wpending == 0 || r->wqueued <= ASYNC_MAX_QUEUED / 2))
      pthread_cond_signal(&r->dcv);
    pthread_mutex_unlock(&r->wmu);
    while (run != NULL) {
      struct wjob *next = run->next;
      wjob_free(run);
      run = next;
    }
    pthread_mutex_lock(&r->wmu);
  }
  pthread_mutex_unlock(&r->wmu);
  return NULL;
}

/* Wait until every queued file is written (before hard links, which need
 * their target, and at the end). */
static void writers_drain(struct rctx *r) {
  if (r->nthreads == 0)
    return;
  pthread_mutex_lock(&r->wmu);
  if (r->wjobs > 0)
    pthread_cond_broadcast(&r->wcv);
  r->main_waits++;
  while (r->wpending > 0)
    pthread_cond_wait(&r->dcv, &r->wmu);
  r->main_waits--;
  pthread_mutex_unlock(&r->wmu);
}

static void writers_stop(struct rctx *r) {
  if (r->nthreads == 0)
    return;
  pthread_mutex_lock(&r->wmu);
  r->wstop = 1;
  pthread_cond_broadcast(&r->wcv);
  pthread_mutex_unlock(&r->wmu);
  for (int i = 0; i < r->nthreads; i++)
    pthread_join(r->threads[i], NULL);
  r->nthreads = 0;
}

/* Read a small file's whole content and queue it for a writer. Returns
 * ENGINE_OK when queued (errors of the writing itself come at restore_end). */
static int queue_file(struct rctx *r, const char *name, int dirfd, const char *base,
                      struct rmeta *m, const struct engine_reader *data) {
  size_t len = (size_t)data->size;
  struct wjob *j = calloc(1, sizeof(*j));
  if (j == NULL)
    return fail(r, name, "out of memory");
  j->name = strdup(name);
  j->base = strdup(base);
  j->data = malloc(len ? len : 1);
  j->len = len;
  j->meta = *m;
  m->xattrs = NULL; /* the job owns them now */
  if (j->name == NULL || j->base == NULL || j->data == NULL) {
    wjob_free(j);
    return fail(r, name, "out of memory");
  }
  size_t got = 0;
  for (;;) {
    ssize_t n = data->read(data, j->data + got, len - got);
    if (n < 0) {
      wjob_free(j);
      return fail(r, name, "reading the content from the repository failed after %zu bytes", got);
    }
    if (n == 0)
      break;
    got += (size_t)n;
    if (got == len) {
      char extra;
      n = data->read(data, &extra, 1);
      if (n != 0) {
        wjob_free(j);
        return n < 0
                   ? fail(r, name, "reading the content from the repository failed")
                   : fail(r, name,
                          "the repository returned more content than the expected %zu bytes", len);
      }
      break;
    }
  }
  if (got != len) {
    wjob_free(j);
    return fail(r, name, "the content is truncated: got %zu of %zu bytes", got, len);
  }
  /* dirfd is the root or the cached parent (parent_fd): the job holds a
   * reference to the latter, which outlives a change of the cache */
  j->dirfd = dirfd;
  if (dirfd != r->rootfd) {
    j->dir = r->cache_dir;
    __atomic_add_fetch(&j->dir->refs, 1, __ATOMIC_RELAXED);
  }
  cache_invalidate(r, name); /* as place() does: the node at `name` is replaced */
  pthread_mutex_lock(&r->wmu);
  if (r->nthreads == 0 && !r->wstop) {
    for (int i = 0; i < WRITERS; i++)
      if (pthread_create(&r->threads[r->nthreads], NULL, writer_main, r) == 0)
        r->nthreads++;
  }
  if (r->nthreads == 0) {
    pthread_mutex_unlock(&r->wmu);
    wjob_free(j);
    return fail(r, name, "unable to start the writer threads");
  }
  if (r->wqueued > 0 && r->wqueued + len > ASYNC_MAX_QUEUED) {
    pthread_cond_broadcast(&r->wcv); /* all hands while the main thread waits */
    r->main_waits++;
    while (r->wqueued > 0 && r->wqueued + len > ASYNC_MAX_QUEUED)
      pthread_cond_wait(&r->dcv, &r->wmu);
    r->main_waits--;
  }
  if (r->wtail)
    r->wtail->next = j;
  else
    r->whead = j;
  r->wtail = j;
  r->wqueued += len;
  r->wpending++;
  r->wjobs++;
  writers_wake(r);
  pthread_mutex_unlock(&r->wmu);
  return ENGINE_OK;
}

int files_restore_item(void *rctx, const struct engine_item *item,
                       const struct engine_reader *data) {
  struct rctx *r = rctx;
  const char *why = invalid_name(item->name, item->name_len);
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
    fail(r, name, "invalid metadata: %s", meta == NULL ? jerr.text : "not a JSON object");
    goto out;
  }
  char bad[256];
  if (parse_meta(r, meta, &m, bad, sizeof(bad)) != 0) {
    fail(r, name, "invalid metadata: %s", bad);
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
  int dirfd = parent_fd(r, name, &base);
  if (dirfd < 0)
    goto out;
  switch (item->type) {
  case ENGINE_ITEM_FILE:
    if (data != NULL && data->size <= ASYNC_MAX_FILE && !m.sparse) {
      rc = queue_file(r, name, dirfd, base, &m, data);
    } else {
      writers_kick(r);
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
    writers_drain(r); /* the first name must be in place */
    rc = restore_hardlink(r, name, dirfd, base, meta);
    break;
  case ENGINE_ITEM_SPECIAL:
    rc = restore_special(r, name, dirfd, base, meta, &m);
    break;
  default:
    rc = fail(r, name, "item type %d is not produced by the files source", (int)item->type);
    break;
  }
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
      dirfd = open_dir_path(r, f->name, f->name, 0);
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
      set_flags(r, f->name, fd, f->flags);
    else if (fd < 0 && errno != ENOENT)
      note_xfail(r, f->name, FILES_XK_FLAGS, NULL, errno);
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
  (void)status; /* directories restored so far get their metadata either way */
  writers_drain(r);
  writers_stop(r);
  flusher_stop(r);
  if (r->fflushed > 0)
    r->h->log(r->h, ENGINE_LOG_DEBUG,
              "restore of files: %zu large file(s) flushed during the restore", r->fflushed);
  cache_drop(r);
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
      int fd = open_dir_path(r, d->name, d->name, 0);
      int one = fd < 0 ? ENGINE_ERROR : apply_meta_fd(r, d->name, fd, &d->meta);
      if (one == ENGINE_OK && d->meta.flags != 0)
        set_flags(r, d->name, fd, d->meta.flags);
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
    report_xfail(r);
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
