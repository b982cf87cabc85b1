/* faultfs: an LD_PRELOAD shim that makes file-system calls on chosen paths
 * fail, for tests/integration/test_fault_matrix.sh (the local sink under
 * EIO). Test-only: built by tests/CMakeLists.txt into
 * BUILD/tests/tools/engine-faultfs.so, never installed.
 *
 *   LD_PRELOAD=engine-faultfs.so FAULTFS_PATH=/x/repo/ FAULTFS_OPS=write,fsync \
 *     FAULTFS_AFTER=3 FAULTFS_ERRNO=EIO engine run p.yml
 *
 * Environment (read once, when the library is loaded):
 *   FAULTFS_PATH   substring of the absolute path a call must concern
 *                  (required: without it nothing is faulted)
 *   FAULTFS_OPS    comma-separated classes of calls to fault (default all):
 *                    read    read, pread, pread64, readv, preadv
 *                    write   write, pwrite, pwrite64, writev, pwritev
 *                    fsync   fsync, fdatasync
 *                    rename  rename, renameat, renameat2, linkat (the new name)
 *                    unlink  unlink, unlinkat
 *                    open    open, openat (also creating files)
 *                    times   futimens, utimensat
 *   FAULTFS_AFTER  matching calls that succeed before the first fault (default 0)
 *   FAULTFS_COUNT  faults to inject, then calls succeed again (default: no limit)
 *   FAULTFS_ERRNO  EIO (default), ENOSPC, EDQUOT, EROFS or a number; or
 *                  "corrupt": a faulted write succeeds but stores its first
 *                  byte inverted, a faulted times call sets an mtime one
 *                  second later than asked (a file system that silently
 *                  damages data and metadata)
 *   FAULTFS_LOG    file that gets one line "CALL PATH" per injected fault
 *   FAULTFS_TRACE  file that gets one line "CLASS CALL PATH" per matching call,
 *                  faulted or not (to count a command's calls of each class)
 *
 * A descriptor concerns a path when /proc/self/fd/N resolved to it at open
 * time; calls on descriptors opened before the library was configured, and
 * on paths outside FAULTFS_PATH, pass through untouched. Thread-safe. With an
 * ASan-built program, preload the ASan runtime first
 * (LD_PRELOAD="libasan.so.8 engine-faultfs.so"): its interceptors then call
 * into this library, which calls the C library. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define MAX_FD 65536

enum {
  OP_READ = 1,
  OP_WRITE = 2,
  OP_FSYNC = 4,
  OP_RENAME = 8,
  OP_UNLINK = 16,
  OP_OPEN = 32,
  OP_TIMES = 64
};

static char *g_path;         /* FAULTFS_PATH, or NULL: inactive */
static unsigned g_ops = ~0u; /* classes to fault */
static long g_after, g_count = -1;
static int g_errno = EIO;
static int g_corrupt; /* FAULTFS_ERRNO=corrupt */
static char *g_log, *g_trace;
static atomic_long g_calls;    /* matching calls seen */
static atomic_long g_injected; /* faults injected */
static atomic_uchar g_fd[MAX_FD];

static void *real(const char *name) {
  void *p = dlsym(RTLD_NEXT, name);
  if (p == NULL) {
    static const char msg[] = "faultfs: a C library function is missing\n";
    syscall(SYS_write, 2, msg, sizeof msg - 1);
    abort();
  }
  return p;
}
#define REAL(name)                                                                                 \
  static __typeof__(name) *real_##name;                                                            \
  if (real_##name == NULL)                                                                         \
  real_##name = (__typeof__(name) *)real(#name)

static int parse_errno(const char *s) {
  static const struct {
    const char *name;
    int value;
  } names[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(s, names[i].name) == 0)
      return names[i].value;
  int v = atoi(s);
  return v > 0 ? v : EIO;
}

__attribute__((constructor)) static void faultfs_init(void) {
  const char *p = getenv("FAULTFS_PATH");
  if (p == NULL || p[0] == '\0')
    return;
  const char *ops = getenv("FAULTFS_OPS");
  if (ops != NULL && ops[0] != '\0') {
    g_ops = 0;
    static const struct {
      const char *name;
      unsigned bit;
    } classes[] = {{"read", OP_READ},     {"write", OP_WRITE},   {"fsync", OP_FSYNC},
                   {"rename", OP_RENAME}, {"unlink", OP_UNLINK}, {"open", OP_OPEN},
                   {"times", OP_TIMES}};
    for (const char *q = ops; *q;) {
      size_t n = strcspn(q, ",");
      for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (strlen(classes[i].name) == n && strncmp(q, classes[i].name, n) == 0)
          g_ops |= classes[i].bit;
      q += n + (q[n] == ',');
    }
  }
  const char *s = getenv("FAULTFS_AFTER");
  if (s != NULL)
    g_after = atol(s);
  s = getenv("FAULTFS_COUNT");
  if (s != NULL && s[0] != '\0')
    g_count = atol(s);
  s = getenv("FAULTFS_ERRNO");
  if (s != NULL && strcmp(s, "corrupt") == 0)
    g_corrupt = 1;
  else if (s != NULL && s[0] != '\0')
    g_errno = parse_errno(s);
  s = getenv("FAULTFS_LOG");
  if (s != NULL && s[0] != '\0')
    g_log = strdup(s);
  s = getenv("FAULTFS_TRACE");
  if (s != NULL && s[0] != '\0')
    g_trace = strdup(s);
  g_path = strdup(p);
}

static int fd_path(int fd, char *out, size_t len);
static void append_line(const char *file, const char *cls, const char *call, const char *path) {
  if (file == NULL)
    return;
  char line[PATH_MAX + 64];
  int n = snprintf(line, sizeof line, "%s%s%s %s\n", cls ? cls : "", cls ? " " : "", call,
                   path ? path : "?");
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line)
    n = (int)sizeof line - 1;
  int fd = (int)syscall(SYS_open, file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    return;
  syscall(SYS_write, fd, line, (size_t)n);
  syscall(SYS_close, fd);
}

static const char *class_name(unsigned op) {
  switch (op) {
  case OP_READ:
    return "read";
  case OP_WRITE:
    return "write";
  case OP_FSYNC:
    return "fsync";
  case OP_RENAME:
    return "rename";
  case OP_UNLINK:
    return "unlink";
  case OP_TIMES:
    return "times";
  default:
    return "open";
  }
}

/* Whether this matching call fails; counts it. */
static int inject(unsigned op, const char *call, const char *path) {
  if (g_path == NULL || !(g_ops & op))
    return 0;
  append_line(g_trace, class_name(op), call, path);
  long k = atomic_fetch_add(&g_calls, 1);
  if (k < g_after)
    return 0;
  long done = atomic_fetch_add(&g_injected, 1);
  if (g_count >= 0 && done >= g_count)
    return 0;
  append_line(g_log, NULL, call, path);
  return 1;
}

/* inject() for a call on a descriptor, named by its path in the log */
static int inject_fd(unsigned op, const char *call, int fd) {
  char p[PATH_MAX];
  if ((g_log == NULL && g_trace == NULL) || fd_path(fd, p, sizeof p) != 0)
    return inject(op, call, NULL);
  return inject(op, call, p);
}

static int fd_path(int fd, char *out, size_t len) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = syscall(SYS_readlink, link, out, len - 1);
  if (n < 0)
    return -1;
  out[n] = '\0';
  return 0;
}

static void track(int fd) {
  if (g_path == NULL || fd < 0 || fd >= MAX_FD)
    return;
  char p[PATH_MAX];
  atomic_store(&g_fd[fd], fd_path(fd, p, sizeof p) == 0 && strstr(p, g_path) != NULL);
}

static int fd_matches(int fd) {
  return g_path != NULL && fd >= 0 && fd < MAX_FD && atomic_load(&g_fd[fd]);
}

/* The absolute form of (dirfd, path) for matching, into out. */
static void abs_path(int dirfd, const char *path, char *out, size_t len) {
  out[0] = '\0';
  if (path == NULL)
    return;
  if (path[0] == '/') {
    snprintf(out, len, "%s", path);
    return;
  }
  char dir[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (syscall(SYS_getcwd, dir, sizeof dir) < 0)
      return;
  } else if (fd_path(dirfd, dir, sizeof dir) != 0) {
    return;
  }
  /* a path too long to name is not matched (out stays empty) */
  int n = snprintf(out, len, "%s/%s", dir, path);
  if (n < 0 || (size_t)n >= len)
    out[0] = '\0';
}

static int path_matches(int dirfd, const char *path, char *abs, size_t len) {
  if (g_path == NULL)
    return 0;
  abs_path(dirfd, path, abs, len);
  return strstr(abs, g_path) != NULL;
}

static int fail(void) {
  errno = g_errno;
  return -1;
}

/* ---- open / close ---- */

static int open_common(int dirfd, const char *path, int flags, mode_t mode, const char *call,
                       int (*fn)(int, const char *, int, mode_t)) {
  char abs[PATH_MAX];
  if (g_path != NULL && (g_ops & OP_OPEN) && path_matches(dirfd, path, abs, sizeof abs) &&
      inject(OP_OPEN, call, abs))
    return fail();
  int fd = fn(dirfd, path, flags, mode);
  track(fd);
  return fd;
}

static int call_openat(int dirfd, const char *path, int flags, mode_t mode) {
  REAL(openat);
  return real_openat(dirfd, path, flags, mode);
}

static int call_open(int dirfd, const char *path, int flags, mode_t mode) {
  (void)dirfd;
  REAL(open);
  return real_open(path, flags, mode);
}

static mode_t mode_arg(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return open_common(AT_FDCWD, path, flags, mode, "open", call_open);
}

EXPORT int open64(const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return open_common(AT_FDCWD, path, flags, mode, "open", call_open);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return open_common(dirfd, path, flags, mode, "openat", call_openat);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return open_common(dirfd, path, flags, mode, "openat", call_openat);
}

EXPORT int close(int fd) {
  REAL(close);
  if (fd >= 0 && fd < MAX_FD)
    atomic_store(&g_fd[fd], 0);
  return real_close(fd);
}

/* ---- data ---- */

EXPORT ssize_t read(int fd, void *buf, size_t n) {
  REAL(read);
  if (fd_matches(fd) && inject_fd(OP_READ, "read", fd))
    return fail();
  return real_read(fd, buf, n);
}

EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off) {
  REAL(pread);
  if (fd_matches(fd) && inject_fd(OP_READ, "pread", fd))
    return fail();
  return real_pread(fd, buf, n, off);
}

EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off) {
  REAL(pread64);
  if (fd_matches(fd) && inject_fd(OP_READ, "pread", fd))
    return fail();
  return real_pread64(fd, buf, n, off);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt) {
  REAL(readv);
  if (fd_matches(fd) && inject_fd(OP_READ, "readv", fd))
    return fail();
  return real_readv(fd, iov, cnt);
}

EXPORT ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(preadv);
  if (fd_matches(fd) && inject_fd(OP_READ, "preadv", fd))
    return fail();
  return real_preadv(fd, iov, cnt, off);
}

/* FAULTFS_ERRNO=corrupt: buf with its first byte inverted (malloc'd). */
static void *corrupted(const void *buf, size_t n) {
  unsigned char *c = malloc(n ? n : 1);
  if (c != NULL && n > 0) {
    memcpy(c, buf, n);
    c[0] = (unsigned char)~c[0];
  }
  return c;
}

EXPORT ssize_t write(int fd, const void *buf, size_t n) {
  REAL(write);
  if (fd_matches(fd) && inject_fd(OP_WRITE, "write", fd)) {
    if (!g_corrupt)
      return fail();
    void *c = corrupted(buf, n);
    ssize_t r = c ? real_write(fd, c, n) : real_write(fd, buf, n);
    free(c);
    return r;
  }
  return real_write(fd, buf, n);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite);
  if (fd_matches(fd) && inject_fd(OP_WRITE, "pwrite", fd)) {
    if (!g_corrupt)
      return fail();
    void *c = corrupted(buf, n);
    ssize_t r = c ? real_pwrite(fd, c, n, off) : real_pwrite(fd, buf, n, off);
    free(c);
    return r;
  }
  return real_pwrite(fd, buf, n, off);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite64);
  if (fd_matches(fd) && inject_fd(OP_WRITE, "pwrite", fd))
    return fail();
  return real_pwrite64(fd, buf, n, off);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  REAL(writev);
  if (fd_matches(fd) && inject_fd(OP_WRITE, "writev", fd))
    return fail();
  return real_writev(fd, iov, cnt);
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev);
  if (fd_matches(fd) && inject_fd(OP_WRITE, "pwritev", fd))
    return fail();
  return real_pwritev(fd, iov, cnt, off);
}

EXPORT int fsync(int fd) {
  REAL(fsync);
  if (fd_matches(fd) && inject_fd(OP_FSYNC, "fsync", fd))
    return fail();
  return real_fsync(fd);
}

EXPORT int fdatasync(int fd) {
  REAL(fdatasync);
  if (fd_matches(fd) && inject_fd(OP_FSYNC, "fdatasync", fd))
    return fail();
  return real_fdatasync(fd);
}

/* ---- names ---- */

EXPORT int rename(const char *from, const char *to) {
  REAL(rename);
  char abs[PATH_MAX];
  if (path_matches(AT_FDCWD, to, abs, sizeof abs) && inject(OP_RENAME, "rename", abs))
    return fail();
  return real_rename(from, to);
}

EXPORT int renameat(int fd1, const char *from, int fd2, const char *to) {
  REAL(renameat);
  char abs[PATH_MAX];
  if (path_matches(fd2, to, abs, sizeof abs) && inject(OP_RENAME, "renameat", abs))
    return fail();
  return real_renameat(fd1, from, fd2, to);
}

EXPORT int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags) {
  REAL(renameat2);
  char abs[PATH_MAX];
  if (path_matches(fd2, to, abs, sizeof abs) && inject(OP_RENAME, "renameat2", abs))
    return fail();
  return real_renameat2(fd1, from, fd2, to, flags);
}

EXPORT int linkat(int fd1, const char *from, int fd2, const char *to, int flags) {
  REAL(linkat);
  char abs[PATH_MAX];
  if (path_matches(fd2, to, abs, sizeof abs) && inject(OP_RENAME, "linkat", abs))
    return fail();
  return real_linkat(fd1, from, fd2, to, flags);
}

EXPORT int unlink(const char *path) {
  REAL(unlink);
  char abs[PATH_MAX];
  if (path_matches(AT_FDCWD, path, abs, sizeof abs) && inject(OP_UNLINK, "unlink", abs))
    return fail();
  return real_unlink(path);
}

EXPORT int unlinkat(int dirfd, const char *path, int flags) {
  REAL(unlinkat);
  char abs[PATH_MAX];
  if (path_matches(dirfd, path, abs, sizeof abs) && inject(OP_UNLINK, "unlinkat", abs))
    return fail();
  return real_unlinkat(dirfd, path, flags);
}

/* ---- times ---- */

/* FAULTFS_ERRNO=corrupt: the times asked for, with the mtime one second
 * later (when it is a time, not UTIME_NOW / UTIME_OMIT). */
static void shifted(const struct timespec in[2], struct timespec out[2]) {
  out[0] = in[0];
  out[1] = in[1];
  if (in[1].tv_nsec != UTIME_NOW && in[1].tv_nsec != UTIME_OMIT)
    out[1].tv_sec += 1;
}

EXPORT int futimens(int fd, const struct timespec t[2]) {
  REAL(futimens);
  if (t != NULL && fd_matches(fd) && inject_fd(OP_TIMES, "futimens", fd)) {
    if (!g_corrupt)
      return fail();
    struct timespec c[2];
    shifted(t, c);
    return real_futimens(fd, c);
  }
  return real_futimens(fd, t);
}

EXPORT int utimensat(int dirfd, const char *path, const struct timespec t[2], int flags) {
  REAL(utimensat);
  char abs[PATH_MAX];
  if (t != NULL && path_matches(dirfd, path, abs, sizeof abs) &&
      inject(OP_TIMES, "utimensat", abs)) {
    if (!g_corrupt)
      return fail();
    struct timespec c[2];
    shifted(t, c);
    return real_utimensat(dirfd, path, c, flags);
  }
  return real_utimensat(dirfd, path, t, flags);
}
