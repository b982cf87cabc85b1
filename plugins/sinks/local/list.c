/* list of the "local" sink: a depth-first walk of the repository directory
 * that visits names in strcmp order (each directory sorted with '/' after
 * directory names) without holding the whole listing in memory, skipping
 * temporary files and what the prefix cannot match. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "local_int.h"

/* ---- list ------------------------------------------------------------- */

struct list_walk {
  const struct local_sink *s;
  const char *prefix;
  size_t prefix_len;
  int (*cb)(void *ud, const char *name, uint64_t size);
  void *ud;
  int stopped;
  char rel[PATH_MAX]; /* name of the directory being walked, relative, with trailing '/' */
};

struct list_entry {
  char *key; /* the entry's name, plus a trailing '/' for directories */
  uint64_t size;
  int is_dir;
};

/* Sorting each directory by name-with-'/'-for-directories makes a depth-first
 * walk visit full names in strcmp order (e.g. "a-b" before "a/c"), so list is
 * sorted without holding the whole repository listing in memory. */
static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const struct list_entry *)a)->key, ((const struct list_entry *)b)->key);
}

/* Whether anything named rel+name (a directory when is_dir) can match the prefix. */
static int may_match(const struct list_walk *w, size_t rel_len, const char *name, size_t name_len,
                     int is_dir) {
  size_t full = rel_len + name_len;
  size_t n = full < w->prefix_len ? full : w->prefix_len;
  size_t from_rel = n < rel_len ? n : rel_len;
  if (memcmp(w->rel, w->prefix, from_rel) != 0 ||
      memcmp(name, w->prefix + from_rel, n - from_rel) != 0)
    return 0;
  if (full >= w->prefix_len)
    return 1;
  return is_dir && w->prefix[full] == '/';
}

static void free_entries(struct list_entry *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i].key);
  free(v);
}

static int walk_fail(const struct list_walk *w, int e, const char *what, size_t rel_len,
                     const char *name) {
  char eb[128];
  SET_ERROR(w->s, "unable to list objects with prefix '%s': %s '%s%.*s%s': %s", w->prefix, what,
            w->s->root_prefix, (int)rel_len, w->rel, name, local_errstr(e, eb, sizeof eb));
  return ENGINE_ERROR;
}

/* Takes ownership of dfd. w->rel[0..rel_len) names the directory. */
static int walk_dir(struct list_walk *w, int dfd, size_t rel_len, int depth) {
  DIR *d = fdopendir(dfd);
  if (d == NULL) {
    int e = errno;
    close(dfd);
    return walk_fail(w, e, "unable to read directory", rel_len, "");
  }
  struct list_entry *v = NULL;
  size_t n = 0, cap = 0;
  int rc = ENGINE_OK;

  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (de == NULL) {
      if (errno != 0)
        rc = walk_fail(w, errno, "unable to read directory", rel_len, "");
      break;
    }
    const char *nm = de->d_name;
    if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0 || strstr(nm, TEMP_MARKER) != NULL)
      continue;
    size_t nl = strlen(nm);
    if (!may_match(w, rel_len, nm, nl, 1))
      continue;
    struct stat st;
    if (fstatat(dirfd(d), nm, &st, 0) != 0) {
      if (errno == ENOENT) /* deleted or renamed since readdir */
        continue;
      rc = walk_fail(w, errno, "unable to stat", rel_len, nm);
      break;
    }
    int is_dir = S_ISDIR(st.st_mode);
    if (!is_dir && (!S_ISREG(st.st_mode) || !may_match(w, rel_len, nm, nl, 0)))
      continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      struct list_entry *nv = realloc(v, ncap * sizeof *nv);
      if (nv == NULL) {
        rc = walk_fail(w, ENOMEM, "unable to read directory", rel_len, "");
        break;
      }
      v = nv;
      cap = ncap;
    }
    char *key = malloc(nl + 2);
    if (key == NULL) {
      rc = walk_fail(w, ENOMEM, "unable to read directory", rel_len, "");
      break;
    }
    memcpy(key, nm, nl);
    key[nl] = is_dir ? '/' : '\0';
    key[nl + 1] = '\0';
    v[n].key = key;
    v[n].size = (uint64_t)st.st_size;
    v[n].is_dir = is_dir;
    n++;
  }

  if (rc == ENGINE_OK && n > 1)
    qsort(v, n, sizeof *v, entry_cmp);

  for (size_t i = 0; rc == ENGINE_OK && !w->stopped && i < n; i++) {
    size_t kl = strlen(v[i].key);
    if (rel_len + kl + 1 > sizeof w->rel) {
      rc = walk_fail(w, ENAMETOOLONG, "unable to walk", rel_len, v[i].key);
      break;
    }
    memcpy(w->rel + rel_len, v[i].key, kl + 1);
    if (!v[i].is_dir) {
      if (w->cb(w->ud, w->rel, v[i].size) != 0)
        w->stopped = 1;
      continue;
    }
    if (depth >= LIST_MAX_DEPTH) {
      rc = walk_fail(w, ELOOP, "unable to walk (directories nested too deeply)", rel_len, v[i].key);
      break;
    }
    int cfd = openat(dirfd(d), w->rel + rel_len, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cfd < 0) {
      if (errno == ENOENT)
        continue;
      rc = walk_fail(w, errno, "unable to open directory", rel_len, v[i].key);
      break;
    }
    rc = walk_dir(w, cfd, rel_len + kl, depth + 1);
  }
  w->rel[rel_len] = '\0';
  free_entries(v, n);
  closedir(d);
  return rc;
}

int local_list(void *inst, const char *prefix, int (*cb)(void *ud, const char *name, uint64_t size),
               void *ud) {
  struct local_sink *s = inst;
  if (prefix == NULL)
    prefix = "";
  struct list_walk *w = calloc(1, sizeof *w);
  if (w == NULL)
    return local_fail_oom(s, prefix);
  w->s = s;
  w->prefix = prefix;
  w->prefix_len = strlen(prefix);
  w->cb = cb;
  w->ud = ud;

  /* Only the complete directories of the prefix are walked into; its last,
   * partial component ("data/ab") is matched as a string. */
  const char *last = strrchr(prefix, '/');
  size_t dir_len = last != NULL ? (size_t)(last - prefix) + 1 : 0;
  const char *why = local_path_problem(prefix, dir_len > 0 ? dir_len - 1 : 0);
  if (why == NULL && dir_len == 1)
    why = "must be relative to the repository (leading '/')";
  if (why == NULL && s->root_len + 1 + dir_len >= sizeof w->rel)
    why = "too long";
  if (why != NULL) {
    SET_ERROR(s, "invalid object name prefix '%s': %s (repository '%s')", prefix, why, s->root);
    free(w);
    return ENGINE_ERROR;
  }
  memcpy(w->rel, prefix, dir_len);
  w->rel[dir_len] = '\0';

  int rc = ENGINE_OK;
  char *start = NULL;
  if (asprintf(&start, "%s%s", s->root_prefix, w->rel) < 0) {
    free(w);
    return local_fail_oom(s, prefix);
  }
  int dfd = open(start, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    /* A missing "data/xy/" simply holds no objects; a missing root does not. */
    if ((errno != ENOENT && errno != ENOTDIR) || dir_len == 0)
      rc = local_fail_errno(s, errno, "unable to list objects in", start, NULL);
  } else {
    rc = walk_dir(w, dfd, dir_len, 0);
  }
  free(start);
  free(w);
  return rc;
}
