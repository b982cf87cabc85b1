/* Small helpers of the k8s-yaml plugin: buffers, strings, globs, memfds. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "k8s.h"

void k8s_buf_add(struct k8s_buf *b, const void *data, size_t n) {
  if (b->oom || n == 0)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + n + 1)
      c *= 2;
    char *p = realloc(b->p, c);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = c;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void k8s_buf_str(struct k8s_buf *b, const char *s) {
  k8s_buf_add(b, s, strlen(s));
}

void k8s_buf_printf(struct k8s_buf *b, const char *fmt, ...) {
  char *s = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->oom = 1;
    return;
  }
  k8s_buf_add(b, s, (size_t)n);
  free(s);
}

void k8s_buf_free(struct k8s_buf *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

char *k8s_strf(const char *fmt, ...) {
  char *s = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  return n < 0 ? NULL : s;
}

void k8s_wipe_free(char *s) {
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

int k8s_glob_any(char *const *globs, size_t n, const char *s) {
  for (size_t i = 0; i < n; i++)
    if (fnmatch(globs[i], s, 0) == 0)
      return 1;
  return 0;
}

int k8s_memfd(const struct engine_host *h, const char *what, const void *data, size_t len, int *fd,
              char **path) {
  *fd = -1;
  *path = NULL;
  int f = memfd_create("engine-k8s", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (f < 0) {
    h->set_error(h, "unable to hold the %s in memory (memfd_create): %s", what, strerror(errno));
    return ENGINE_ERROR;
  }
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(f, p, left);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      h->set_error(h, "unable to hold the %s in memory: %s", what, strerror(errno));
      close(f);
      return ENGINE_ERROR;
    }
    p += w;
    left -= (size_t)w;
  }
  fchmod(f, 0600);
  fcntl(f, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
  char *pp = k8s_strf("/proc/self/fd/%d", f);
  if (!pp) {
    close(f);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  *fd = f;
  *path = pp;
  return ENGINE_OK;
}

char *k8s_urlenc(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *out = malloc(n * 3 + 1), *o = out;
  if (!out)
    return NULL;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
        *p == '-' || *p == '_' || *p == '.' || *p == '~') {
      *o++ = (char)*p;
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  *o = '\0';
  return out;
}
