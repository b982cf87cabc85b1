/* Secret references (env:NAME, file:/path) shared by the core and the host
 * table. Values are kept in malloc'd buffers wiped on release; the process
 * itself is kept out of core files and other processes' reach. */
#include "util/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

#define SECRET_MAX (1024 * 1024)

int secret_resolve(const char *ref, char **out, size_t *len, char **err) {
  *out = NULL;
  *len = 0;
  if (!ref) {
    *err = xstrdup("no secret reference given");
    return -1;
  }
  if (strncmp(ref, "env:", 4) == 0) {
    const char *name = ref + 4;
    const char *v = getenv(name);
    if (!v || !*v) {
      *err = xasprintf("secret '%s': environment variable %s is %s", ref, name,
                       v ? "empty" : "not set");
      return -1;
    }
    *len = strlen(v);
    *out = xmalloc(*len + 1);
    memcpy(*out, v, *len + 1);
    return 0;
  }
  if (strncmp(ref, "file:", 5) == 0) {
    const char *path = ref + 5;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      *err = xasprintf("secret '%s': unable to open '%s': %s", ref, path, strerror(errno));
      return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SECRET_MAX) {
      *err = xasprintf("secret '%s': '%s' is not a regular file of at most 1 MiB", ref, path);
      close(fd);
      return -1;
    }
    if (st.st_mode & 077)
      log_warn("secret file '%s' is readable by group or others (mode %04o); it should be 0600",
               path, (unsigned)(st.st_mode & 07777));
    char *buf = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
      ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      got += (size_t)n;
    }
    close(fd);
    if (got > 0 && buf[got - 1] == '\n')
      got--;
    if (got > 0 && buf[got - 1] == '\r')
      got--;
    buf[got] = '\0';
    if (got == 0) {
      secret_wipe_free(buf, (size_t)st.st_size + 1);
      *err = xasprintf("secret '%s': file '%s' is empty", ref, path);
      return -1;
    }
    *out = buf;
    *len = got;
    return 0;
  }
  *err =
      xstrdup("a secret must be a reference 'env:NAME' or 'file:/path' (the value is not shown)");
  return -1;
}

void secret_wipe_free(char *buf, size_t len) {
  if (!buf)
    return;
  OPENSSL_cleanse(buf, len);
  free(buf);
}

void secret_protect_process(void) {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    log_warn("unable to mark the process non-dumpable (prctl PR_SET_DUMPABLE): %s; a core file "
             "could hold secrets",
             strerror(errno));
  struct rlimit none = {0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0)
    log_warn("unable to set the core file size limit to 0: %s", strerror(errno));
}
