/* The files source's restore: names and safe path resolution. Every path
 * is opened component by component from a descriptor of the target with
 * O_NOFOLLOW|O_DIRECTORY, so no item -- not even a symlink restored
 * earlier -- can redirect a write outside it. The parent directory of the
 * previous item stays open (items arrive grouped by directory) and is
 * shared with the queued small files in it (struct dref). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restore_int.h"

/* ---- names ---- */

/* Why `name` may not be restored, or NULL when it is a clean relative path. */
const char *rs_invalid_name(const char *name, size_t len) {
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

size_t rs_name_depth(const char *name) {
  size_t d = 1;
  for (; *name; name++)
    d += *name == '/';
  return d;
}

/* Open the directory `path` (a validated relative name, or "" for the root)
 * below the target, one component at a time, never following a symlink.
 * With `create`, missing directories are made (mode 0700: their real
 * metadata, if any, comes with their own item). Returns a new descriptor,
 * or -1 after set_error naming `item`. */
int rs_open_dir_path(struct rctx *r, const char *item, const char *path, int create) {
  int fd = fcntl(r->rootfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    return rs_fail(r, item, "unable to duplicate the target descriptor: %s", strerror(errno)), -1;
  const char *p = path;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    char comp[NAME_MAX + 1];
    if (n > NAME_MAX) {
      close(fd);
      return rs_fail(r, item, "a path component is longer than NAME_MAX"), -1;
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
        rs_fail(r, item, "unable to create directory '%s': %s", d, strerror(err));
        files_display_free(d);
        return -1;
      }
    }
    if (nfd < 0) {
      int err = errno;
      close(fd);
      char *d = files_display(path, prefix_len);
      if (err == ELOOP || err == ENOTDIR)
        rs_fail(r, item,
                "'%s' is a symlink or not a directory; refusing to resolve a path through it", d);
      else
        rs_fail(r, item, "unable to open directory '%s': %s", d, strerror(err));
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

static struct dref *dref_new(int fd) {
  struct dref *d = malloc(sizeof(*d));
  if (d != NULL)
    *d = (struct dref){fd, 1};
  return d;
}

void rs_dref_put(struct dref *d) {
  if (d != NULL && __atomic_sub_fetch(&d->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    close(d->fd);
    free(d);
  }
}

void rs_cache_drop(struct rctx *r) {
  rs_dref_put(r->cache_dir);
  r->cache_dir = NULL;
  free(r->cache_name);
  r->cache_name = NULL;
}

/* Forget the cached parent when `name` is it or one of its ancestors: the
 * node there is about to be replaced. */
void rs_cache_invalidate(struct rctx *r, const char *name) {
  if (r->cache_name == NULL)
    return;
  size_t n = strlen(name);
  if (strncmp(r->cache_name, name, n) == 0 && (r->cache_name[n] == '\0' || r->cache_name[n] == '/'))
    rs_cache_drop(r);
}

/* The descriptor of the parent directory of `name` (borrowed: valid until
 * the next call), creating missing directories. *base is the last
 * component. Returns -1 after set_error. */
int rs_parent_fd(struct rctx *r, char *name, const char **base) {
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
  rs_cache_drop(r);
  char *parent = strdup(name);
  *slash = '/';
  if (parent == NULL)
    return rs_fail(r, name, "out of memory"), -1;
  int fd = rs_open_dir_path(r, name, parent, 1);
  if (fd < 0) {
    free(parent);
    return -1;
  }
  struct dref *d = dref_new(fd);
  if (d == NULL) {
    close(fd);
    free(parent);
    return rs_fail(r, name, "out of memory"), -1;
  }
  r->cache_name = parent;
  r->cache_dir = d;
  return fd;
}
