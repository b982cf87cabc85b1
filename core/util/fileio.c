/* Whole-file reads and atomic writes (fileio.h). */
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode, char **err) {
  char *tmp = xasprintf("%s.tmp-%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  int rc = -1;
  if (fd < 0) {
    *err = xasprintf("unable to write '%s': %s", tmp, strerror(errno));
    free(tmp);
    return -1;
  }
  const char *p = data;
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, p + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      break;
    off += (size_t)w;
  }
  if (off != len)
    *err = xasprintf("unable to write '%s': %s", tmp, strerror(errno));
  else if (fchmod(fd, mode) != 0 || fsync(fd) != 0)
    *err = xasprintf("unable to write '%s': %s", tmp, strerror(errno));
  else
    rc = 0;
  if (close(fd) != 0 && rc == 0) {
    *err = xasprintf("unable to write '%s': %s", tmp, strerror(errno));
    rc = -1;
  }
  if (rc == 0 && rename(tmp, path) != 0) {
    *err = xasprintf("unable to rename '%s' to '%s': %s", tmp, path, strerror(errno));
    rc = -1;
  }
  if (rc != 0)
    unlink(tmp);
  free(tmp);
  return rc;
}

int file_read_all(const char *path, size_t max, char **out, size_t *len, char **err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    *err = xasprintf("unable to read '%s': %s", path, strerror(e));
    errno = e;
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
    *err = xasprintf("unable to read '%s': %s", path,
                     S_ISREG(st.st_mode) ? "the file is too large" : "not a regular file");
    close(fd);
    errno = EINVAL;
    return -1;
  }
  char *buf = xmalloc((size_t)st.st_size + 1);
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      *err = xasprintf("unable to read '%s': %s", path, strerror(e));
      free(buf);
      close(fd);
      errno = e;
      return -1;
    }
    if (n == 0 || got + (size_t)n == (size_t)st.st_size) {
      got += (size_t)n;
      break;
    }
    got += (size_t)n;
  }
  close(fd);
  buf[got] = '\0';
  *out = buf;
  *len = got;
  return 0;
}

int file_mkdirs(const char *path, mode_t mode, char **err) {
  char *p = xstrdup(path);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0')
      continue;
    char saved = *s;
    *s = '\0';
    if (mkdir(p, mode) != 0 && errno != EEXIST) {
      *err = xasprintf("unable to create the directory '%s': %s", p, strerror(errno));
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
