/* Backup side of the files source: walks the configured paths depth-first
 * in byte order through directory file descriptors (openat/fstatat with
 * AT_SYMLINK_NOFOLLOW, so neither path length nor odd bytes in names
 * matter and symlinks are never followed) and emits one item per entry. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "files.h"

/* A growable absolute path: "/srv/a/b". The item name is the same bytes
 * without the leading '/', so both views share one buffer. */
struct pathbuf {
  char *p;
  size_t len, cap;
};

struct walk {
  struct files_inst *in;
  const struct engine_host *h;
  const struct engine_emitter *em;
  struct files_idcache ids;
  struct files_map links; /* (dev, ino) -> item name of the first FILE */
  char *buf;              /* FILES_IO_BLOCK bytes of file content */
  struct pathbuf path;
  dev_t top_dev; /* st_dev of the configured path being walked */
  struct files_xread xr;
  int parent_xattrs; /* the parent snapshot read extended attributes (its marks) */
  int parent_flags;  /* ... and inode flags */
  int use_proc;      /* /proc/self/fd works: entries are named through their directory's fd */
  char xpath[64 + NAME_MAX];
};

/* What the metadata holds besides the stat fields (xattr.c). */
struct xmeta {
  json_t *xattrs; /* owned; NULL when none */
  unsigned flags;
  int incomplete; /* something could not be read (with a warning) */
};

static void xmeta_clear(struct xmeta *x) {
  json_decref(x->xattrs);
  *x = (struct xmeta){0};
}

static int xmeta_empty(const struct xmeta *x) {
  return x->xattrs == NULL && x->flags == 0 && !x->incomplete;
}

static int path_push(struct walk *w, const char *comp) {
  size_t n = strlen(comp);
  size_t need = w->path.len + 1 + n + 1;
  if (need > w->path.cap) {
    size_t ncap = w->path.cap ? w->path.cap : 256;
    while (ncap < need)
      ncap *= 2;
    char *np = realloc(w->path.p, ncap);
    if (np == NULL) {
      w->h->set_error(w->h, "backup of files: out of memory");
      return -1;
    }
    w->path.p = np;
    w->path.cap = ncap;
  }
  w->path.p[w->path.len++] = '/';
  memcpy(w->path.p + w->path.len, comp, n + 1);
  w->path.len += n;
  return 0;
}

static void path_pop(struct walk *w, size_t len) {
  w->path.len = len;
  if (w->path.p != NULL)
    w->path.p[len] = '\0';
}

static const char *item_name(const struct walk *w) {
  return w->path.p + 1;
}

static void warn_item(struct walk *w, const char *msg) {
  w->em->warn(w->em, item_name(w), msg);
}

static void warn_errno(struct walk *w, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err));
  warn_item(w, msg);
}

static int oom(struct walk *w) {
  if (w->path.len > 1) {
    char *d = files_display(item_name(w), w->path.len - 1);
    w->h->set_error(w->h, "backup of files: out of memory at '%s'", d);
    files_display_free(d);
  } else {
    w->h->set_error(w->h, "backup of files: out of memory");
  }
  return -1;
}

static int cancelled(struct walk *w) {
  if (!w->h->cancelled(w->h))
    return 0;
  w->h->set_error(w->h, "backup of files cancelled");
  return 1;
}

static int refused(struct walk *w, const char *what) {
  char *d = files_display(item_name(w), w->path.len - 1);
  w->h->set_error(w->h, "backup of files stopped: the pipeline refused %s of '%s'", what, d);
  files_display_free(d);
  return -1;
}

/* ---- extended attributes and flags ---- */

/* The path of entry `base` of dirfd for the path-based xattr calls: through
 * /proc/self/fd, so neither the length of the whole path nor a symlink
 * swapped into a parent matters; the absolute path where /proc is absent. */
static const char *entry_path(struct walk *w, int dirfd, const char *base) {
  if (!w->use_proc || dirfd < 0)
    return w->path.p;
  snprintf(w->xpath, sizeof(w->xpath), "/proc/self/fd/%d/%s", dirfd, base);
  return w->xpath;
}

/* Read what the options ask for. fd: the item opened (a regular file or a
 * directory), or -1 to read extended attributes at path (then no flags:
 * they need an open file). A failure is a warning on the item, which is
 * stored without that part and marked incomplete. -1 only on OOM. */
static int read_xmeta(struct walk *w, const struct stat *st, int fd, const char *path,
                      int want_xattrs, int want_flags, struct xmeta *out) {
  int err;
  if (want_xattrs && w->in->xattrs) {
    int rc = files_xattrs_read(&w->xr, st->st_dev, fd, path, &out->xattrs, &err);
    if (rc < 0)
      return oom(w);
    if (rc > 0 && err != ENOENT) { /* ENOENT: vanished; the caller sees it too */
      warn_errno(w, "unable to read extended attributes (stored without them)", err);
      out->incomplete = 1;
    }
  }
  if (want_flags && w->in->file_flags && fd >= 0 &&
      (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) {
    if (files_flags_read(&w->xr, st->st_dev, fd, &out->flags, &err) != 0) {
      warn_errno(w, "unable to read the inode flags (stored without them)", err);
      out->incomplete = 1;
    }
  }
  return 0;
}

/* Add "xattrs", "flags" and "meta_incomplete" to item metadata. */
static int add_xmeta(json_t *m, const struct xmeta *x) {
  if (x == NULL)
    return 0;
  if (x->xattrs != NULL && json_object_set(m, "xattrs", x->xattrs) != 0)
    return -1;
  if (x->flags != 0) {
    char letters[FILES_FLAGS_MAX + 1];
    files_flags_letters(x->flags, letters);
    if (json_object_set_new(m, "flags", json_string(letters)) != 0)
      return -1;
  }
  if (x->incomplete && json_object_set_new(m, "meta_incomplete", json_true()) != 0)
    return -1;
  return 0;
}

/* files_meta_from_stat plus the extended attributes and flags of the item:
 * fd is the item opened, or -1 (path-based attributes of dirfd/base). */
static json_t *stat_meta_x(struct walk *w, const struct stat *st, int fd, int dirfd,
                           const char *base) {
  json_t *m = files_meta_from_stat(&w->ids, st);
  if (m == NULL)
    return NULL;
  struct xmeta x = {0};
  const char *path = fd >= 0 ? NULL : entry_path(w, dirfd, base);
  if (read_xmeta(w, st, fd, path, 1, 1, &x) != 0 || add_xmeta(m, &x) != 0) {
    xmeta_clear(&x);
    json_decref(m);
    return NULL;
  }
  xmeta_clear(&x);
  return m;
}

/* ---- exclusion ---- */

static int excluded(const struct walk *w, const char *base, int is_dir) {
  for (size_t i = 0; i < w->in->n_exclude; i++) {
    const struct files_exclude *x = &w->in->exclude[i];
    if (x->dir_only && !is_dir)
      continue;
    switch (x->mode) {
    case FILES_EXCLUDE_BASENAME:
      if (fnmatch(x->glob, base, 0) == 0)
        return 1;
      break;
    case FILES_EXCLUDE_ANCHORED:
      if (fnmatch(x->glob, w->path.p, FNM_PATHNAME) == 0)
        return 1;
      break;
    case FILES_EXCLUDE_SUFFIX:
      /* Like a gitignore pattern with an inner slash but no anchor: try it
       * against every trailing run of whole components. */
      for (const char *s = w->path.p; s != NULL; s = strchr(s + 1, '/')) {
        if (fnmatch(x->glob, s + 1, FNM_PATHNAME) == 0)
          return 1;
      }
      break;
    }
  }
  return 0;
}

/* ---- emitting ---- */

/* Emit an item without content. Takes the reference to meta. */
static int emit_simple(struct walk *w, enum engine_item_type type, json_t *meta) {
  char *text = meta != NULL ? files_meta_dump(meta) : NULL;
  json_decref(meta);
  if (text == NULL)
    return oom(w);
  struct engine_item item = {
      .name = item_name(w), .name_len = w->path.len - 1, .type = type, .meta_json = text};
  int rc = w->em->item_begin(w->em, &item);
  if (rc != ENGINE_OK) {
    free(text);
    return refused(w, "the start");
  }
  rc = w->em->item_end(w->em, ENGINE_OK, NULL, NULL);
  free(text);
  if (rc != ENGINE_OK)
    return refused(w, "the end");
  return 0;
}

static int sparse_stat(const struct stat *st) {
  return st->st_size > 0 && (uint64_t)st->st_blocks * 512u < (uint64_t)st->st_size;
}

static json_t *file_meta(struct walk *w, const struct stat *st, uint64_t size,
                         const struct xmeta *x) {
  json_t *m = files_meta_from_stat(&w->ids, st);
  if (m == NULL)
    return NULL;
  if (json_object_set_new(m, "size", json_integer((json_int_t)size)) != 0 ||
      (sparse_stat(st) && json_object_set_new(m, "sparse", json_true()) != 0) ||
      add_xmeta(m, x) != 0) {
    json_decref(m);
    return NULL;
  }
  return m;
}

static ssize_t read_full_block(int fd, char *buf, size_t len) {
  for (;;) {
    ssize_t n = read(fd, buf, len);
    if (n >= 0 || errno != EINTR)
      return n;
  }
}

static int same_content_stat(const struct stat *a, const struct stat *b) {
  return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
         a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Every stat field files_meta_from_stat and file_meta read: equal fields
 * give the same metadata text. */
static int same_meta_stat(const struct stat *a, const struct stat *b) {
  return a->st_mode == b->st_mode && a->st_uid == b->st_uid && a->st_gid == b->st_gid &&
         a->st_size == b->st_size && a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
         a->st_nlink == b->st_nlink && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
         a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_atim.tv_sec == b->st_atim.tv_sec &&
         a->st_atim.tv_nsec == b->st_atim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
         a->st_ctim.tv_nsec == b->st_ctim.tv_nsec && sparse_stat(a) == sparse_stat(b);
}

static int open_file(int dirfd, const char *base) {
  /* O_NONBLOCK: if the entry was swapped for a fifo since fstatat, open
   * must not hang; regular files ignore the flag. */
  int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
  int fd = openat(dirfd, base, flags | O_NOATIME);
  if (fd < 0 && errno == EPERM)
    fd = openat(dirfd, base, flags); /* O_NOATIME needs ownership or CAP_FOWNER */
  return fd;
}

/* Whether the parent's metadata text `prev` is `mine` plus "flags" and/or
 * "xattrs" members (and nothing else differs): the usual text of an
 * unchanged file that has some, compared without parsing it (a parse, a
 * build and a dump per file tripled the walk's time on a tree where every
 * file has an attribute). The text is compact with sorted keys: "flags"
 * (letters only) sits between "dev" and "gid", "xattrs" is the last member.
 * Inside a JSON string a quote is always escaped, so `,"flags":"` and
 * `,"xattrs":[` only ever start those members. */
static int same_but_xmeta(const char *prev, const char *mine, int *has_flags, int *has_xattrs) {
  static const char fkey[] = ",\"flags\":\"", xkey[] = ",\"xattrs\":[";
  size_t plen = strlen(prev);
  const char *fs = strstr(prev, fkey), *fe = NULL;
  const char *xs = strstr(prev, xkey);
  if (fs != NULL) {
    fe = fs + sizeof(fkey) - 1;
    while ((*fe >= 'a' && *fe <= 'z') || (*fe >= 'A' && *fe <= 'Z'))
      fe++;
    if (*fe != '"' || (xs != NULL && xs < fe))
      return 0;
    fe++;
  }
  if (xs != NULL && (plen < 2 || prev[plen - 2] != ']' || prev[plen - 1] != '}'))
    return 0;
  *has_flags = fs != NULL;
  *has_xattrs = xs != NULL;
  if (fs == NULL && xs == NULL)
    return 0;
  /* prev = A [flags] B [xattrs] "}" against mine = A B "}" */
  const char *a_end = fs != NULL ? fs : xs;
  size_t a = (size_t)(a_end - prev);
  size_t b = fs != NULL ? (size_t)((xs != NULL ? xs : prev + plen - 1) - fe) : 0;
  size_t mlen = strlen(mine);
  if (mlen != a + b + 1 || memcmp(mine, prev, a) != 0 || (b > 0 && memcmp(mine + a, fe, b) != 0))
    return 0;
  if (fs == NULL) /* A then [xattrs] */
    return strcmp(mine + a, "}") == 0;
  return mine[a + b] == '}' && (xs != NULL || fe + b == prev + plen - 1);
}

/* Incremental backups (ABI 1.1 emitters): is the parent snapshot's item of
 * this name the same file, unchanged? Same test as restic: size, mtime,
 * ctime and inode all equal. ctime catches writes that restore the mtime,
 * and every change of extended attributes (setfattr, setfacl, setcap) or
 * inode flags (chattr), so those of an unchanged file are the parent's and
 * are taken from its metadata without a system call -- when the parent read
 * them (its marks "xattrs" and "file_flags") and nothing failed there
 * ("meta_incomplete"); otherwise they are read again here.
 * *text is the metadata text of st when it was built (the caller frees it;
 * for a changed file it serves item_begin if the file's stat after opening
 * is the same). Usually the text is the parent's, byte for byte (it holds
 * all four), and then the parent's is not parsed: a re-run over an
 * unchanged tree spent ~5 us per file in that parse on its critical thread.
 * Returns 1 (unchanged), 0, or -1 on OOM. */
static int unchanged_since_parent(struct walk *w, int dirfd, const char *base,
                                  const struct stat *st, char **text) {
  const struct engine_emitter *em = w->em;
  *text = NULL;
  if (!ENGINE_HAS_FIELD(em, struct engine_emitter, item_reuse) || em->previous == NULL ||
      em->item_reuse == NULL)
    return 0;
  const char *prev = NULL;
  if (em->previous(em, item_name(w), w->path.len - 1, &prev) != ENGINE_OK || prev == NULL)
    return 0;
  json_t *pm = file_meta(w, st, (uint64_t)st->st_size, NULL);
  char *mine = pm != NULL ? files_meta_dump(pm) : NULL;
  json_decref(pm);
  if (mine == NULL)
    return 0; /* read in full; a real shortage of memory shows there */
  int mtime_ok, ctime_ok;
  int64_t mtime_ns = files_ts_ns(&st->st_mtim, &mtime_ok);
  int64_t ctime_ns = files_ts_ns(&st->st_ctim, &ctime_ok);
  /* times beyond 64-bit nanoseconds are not compared: such files are read */
  int same = mtime_ok && ctime_ok && strcmp(mine, prev) == 0;
  int has_flags = 0, has_xattrs = 0;
  if (!same && mtime_ok && ctime_ok && same_but_xmeta(prev, mine, &has_flags, &has_xattrs) &&
      (!has_xattrs || (w->in->xattrs && w->parent_xattrs)) &&
      (!has_flags || (w->in->file_flags && w->parent_flags)) &&
      (!w->in->xattrs || w->parent_xattrs) && (!w->in->file_flags || w->parent_flags)) {
    /* unchanged, and what it carries is what this run would carry: the
     * parent's text is this item's */
    char *copy = strdup(prev);
    if (copy != NULL) {
      free(mine);
      *text = copy;
      return 1;
    }
  }
  json_t *m = NULL; /* the parent's metadata, when parsed */
  if (!same && mtime_ok && ctime_ok) {
    json_error_t je;
    m = json_loads(prev, 0, &je);
    same = m != NULL && json_object_get(m, "size") != NULL &&
           json_integer_value(json_object_get(m, "size")) == (json_int_t)st->st_size &&
           json_integer_value(json_object_get(m, "mtime_ns")) == (json_int_t)mtime_ns &&
           json_integer_value(json_object_get(m, "ctime_ns")) == (json_int_t)ctime_ns &&
           json_integer_value(json_object_get(m, "ino")) == (json_int_t)st->st_ino;
  }
  if (same) {
    int incomplete = m != NULL && json_is_true(json_object_get(m, "meta_incomplete"));
    int fresh_x = w->in->xattrs && (!w->parent_xattrs || incomplete);
    int fresh_f = w->in->file_flags && (!w->parent_flags || incomplete);
    struct xmeta x = {0};
    int rc = 0;
    if (m != NULL && w->in->xattrs && !fresh_x) {
      json_t *px = json_object_get(m, "xattrs");
      if (json_is_array(px))
        x.xattrs = json_incref(px);
    }
    if (m != NULL && w->in->file_flags && !fresh_f) {
      char unknown;
      const char *pf = json_string_value(json_object_get(m, "flags"));
      if (pf != NULL)
        files_flags_parse(pf, &x.flags, &unknown);
    }
    if (fresh_x)
      rc = read_xmeta(w, st, -1, entry_path(w, dirfd, base), 1, 0, &x);
    if (rc == 0 && fresh_f) {
      int fd = open_file(dirfd, base);
      struct stat fst;
      if (fd >= 0 && fstat(fd, &fst) == 0 && fst.st_ino == st->st_ino && fst.st_dev == st->st_dev)
        rc = read_xmeta(w, st, fd, NULL, 0, 1, &x);
      else
        same = 0; /* replaced since the walk's stat: read it as a changed file */
      if (fd >= 0)
        close(fd);
    }
    if (rc == 0 && same && !xmeta_empty(&x)) {
      free(mine);
      pm = file_meta(w, st, (uint64_t)st->st_size, &x);
      mine = pm != NULL ? files_meta_dump(pm) : NULL;
      json_decref(pm);
      if (mine == NULL)
        rc = -1;
    }
    xmeta_clear(&x);
    if (rc != 0) {
      json_decref(m);
      free(mine);
      return oom(w);
    }
  }
  json_decref(m);
  *text = mine;
  return same;
}

static int remember_hardlink(struct walk *w, const struct stat *st) {
  /* Only a stored file can be the target of later HARDLINK items. */
  if (st->st_nlink > 1) {
    char *first = strdup(item_name(w));
    if (first == NULL || files_map_put(&w->links, st->st_dev, st->st_ino, first) != 0) {
      free(first);
      return oom(w);
    }
  }
  return 0;
}

/* Stream one regular file. Failures of this file alone are reported through
 * the emitter and return 0; -1 means stop the whole backup. */
static int backup_file(struct walk *w, int dirfd, const char *base, const struct stat *st) {
  int begun = 0;
  /* Unchanged since the parent snapshot (by the stat the walk already has):
   * take the parent's content without even opening the file. */
  char *stext; /* st's metadata text, if unchanged_since_parent built it */
  int same = unchanged_since_parent(w, dirfd, base, st, &stext);
  if (same < 0)
    return -1;
  if (same) {
    struct engine_item pitem = {.name = item_name(w),
                                .name_len = w->path.len - 1,
                                .type = ENGINE_ITEM_FILE,
                                .meta_json = stext,
                                .size = (uint64_t)st->st_size};
    int brc = w->em->item_begin(w->em, &pitem);
    free(stext);
    stext = NULL;
    if (brc != ENGINE_OK)
      return refused(w, "the start");
    if (w->em->item_reuse(w->em) == ENGINE_OK) {
      if (w->em->item_end(w->em, ENGINE_OK, NULL, NULL) != ENGINE_OK)
        return refused(w, "the end");
      return remember_hardlink(w, st);
    }
    begun = 1; /* the parent's chunks are gone: read the file into this item */
  }
  int fd = open_file(dirfd, base);
  if (fd < 0) {
    int err = errno;
    free(stext);
    const char *msg = err == ENOENT  ? "vanished during backup"
                      : err == ELOOP ? "changed type during backup (now a symlink); skipped"
                                     : NULL;
    if (begun) {
      char buf[256];
      snprintf(buf, sizeof(buf), "unable to open for reading: %s", msg ? msg : strerror(err));
      return w->em->item_end(w->em, ENGINE_ERROR, NULL, buf) == ENGINE_OK ? 0
                                                                          : refused(w, "the end");
    }
    if (msg)
      warn_item(w, msg);
    else
      warn_errno(w, "unable to open for reading", err);
    return 0;
  }
  struct stat before, after;
  if (fstat(fd, &before) != 0 || !S_ISREG(before.st_mode)) {
    int err = errno;
    const char *msg = S_ISREG(before.st_mode)
                          ? strerror(err)
                          : "changed type during backup (no longer a regular file)";
    close(fd);
    free(stext);
    if (begun)
      return w->em->item_end(w->em, ENGINE_ERROR, NULL, msg) == ENGINE_OK ? 0
                                                                          : refused(w, "the end");
    warn_item(w, msg);
    return 0;
  }
  /* extended attributes and flags through the descriptor: one system call
   * each, which a file without any answers with an empty result */
  struct xmeta x = {0};
  if (read_xmeta(w, &before, fd, NULL, 1, 1, &x) != 0) {
    close(fd);
    free(stext);
    if (begun)
      w->em->item_end(w->em, ENGINE_ERROR, NULL, "out of memory");
    return -1;
  }
  if (!begun) {
    char *text = stext; /* built from the walk's stat: the same if the stat is */
    if (text == NULL || !same_meta_stat(st, &before) || !xmeta_empty(&x)) {
      free(text);
      json_t *m = file_meta(w, &before, (uint64_t)before.st_size, &x);
      text = m != NULL ? files_meta_dump(m) : NULL;
      json_decref(m);
    }
    if (text == NULL) {
      close(fd);
      xmeta_clear(&x);
      return oom(w);
    }
    struct engine_item item = {.name = item_name(w),
                               .name_len = w->path.len - 1,
                               .type = ENGINE_ITEM_FILE,
                               .meta_json = text,
                               .size = (uint64_t)before.st_size};
    int rc = w->em->item_begin(w->em, &item);
    free(text);
    if (rc != ENGINE_OK) {
      close(fd);
      xmeta_clear(&x);
      return refused(w, "the start");
    }
  }

  uint64_t total = 0;
  for (;;) {
    if (cancelled(w)) {
      w->em->item_end(w->em, ENGINE_ERROR, NULL, "backup cancelled");
      close(fd);
      xmeta_clear(&x);
      return -1;
    }
    ssize_t n = read_full_block(fd, w->buf, FILES_IO_BLOCK);
    if (n < 0) {
      char msg[256];
      snprintf(msg, sizeof(msg), "unable to read at offset %llu: %s", (unsigned long long)total,
               strerror(errno));
      close(fd);
      xmeta_clear(&x);
      if (w->em->item_end(w->em, ENGINE_ERROR, NULL, msg) != ENGINE_OK)
        return refused(w, "the end");
      return 0;
    }
    if (n == 0)
      break;
    if (w->em->item_write(w->em, w->buf, (size_t)n) != ENGINE_OK) {
      close(fd);
      xmeta_clear(&x);
      return refused(w, "content");
    }
    total += (uint64_t)n;
  }

  int st_rc = fstat(fd, &after);
  int st_err = errno;
  int x_rc = 0;
  if (st_rc == 0 && (after.st_ctim.tv_sec != before.st_ctim.tv_sec ||
                     after.st_ctim.tv_nsec != before.st_ctim.tv_nsec)) {
    /* the inode changed while it was read: its attributes may have too */
    xmeta_clear(&x);
    x_rc = read_xmeta(w, &after, fd, NULL, 1, 1, &x);
  }
  close(fd);
  if (x_rc != 0) {
    w->em->item_end(w->em, ENGINE_ERROR, NULL, "out of memory");
    xmeta_clear(&x);
    return -1;
  }
  if (st_rc != 0) {
    xmeta_clear(&x);
    char msg[256];
    snprintf(msg, sizeof(msg), "unable to stat after reading: %s", strerror(st_err));
    if (w->em->item_end(w->em, ENGINE_ERROR, NULL, msg) != ENGINE_OK)
      return refused(w, "the end");
    return 0;
  }
  int changed = !same_content_stat(&before, &after) || total != (uint64_t)before.st_size;
  if (!begun && !changed && same_meta_stat(&before, &after)) {
    /* the text item_begin got is the one file_meta(after) would build: the
     * emitter keeps it (no second build here, no second parse in the core;
     * both were on the walk's thread, the one a tree of small files waits
     * for) */
    xmeta_clear(&x);
    if (w->em->item_end(w->em, ENGINE_OK, NULL, NULL) != ENGINE_OK)
      return refused(w, "the end");
    return remember_hardlink(w, &before);
  }
  json_t *m = file_meta(w, &after, total, &x);
  xmeta_clear(&x);
  char *text = m != NULL ? files_meta_dump(m) : NULL;
  json_decref(m);
  if (text == NULL) {
    w->em->item_end(w->em, ENGINE_ERROR, NULL, "out of memory");
    return oom(w);
  }
  int rc = w->em->item_end(w->em, ENGINE_OK, text, NULL);
  free(text);
  if (rc != ENGINE_OK)
    return refused(w, "the end");
  if (changed)
    warn_item(w, "changed during backup (size/mtime differ before and after reading)");
  return remember_hardlink(w, &before);
}

static int backup_hardlink(struct walk *w, const struct stat *st, const char *first) {
  json_t *m = files_meta_from_stat(&w->ids, st);
  if (m == NULL || files_meta_set_bytes(m, "link", first, strlen(first)) != 0) {
    json_decref(m);
    return oom(w);
  }
  return emit_simple(w, ENGINE_ITEM_HARDLINK, m);
}

static int backup_symlink(struct walk *w, int dirfd, const char *base, const struct stat *st) {
  size_t cap = st->st_size > 0 && st->st_size < 65536 ? (size_t)st->st_size + 1 : 256;
  char *target = NULL;
  ssize_t n;
  for (;;) {
    char *nt = realloc(target, cap);
    if (nt == NULL) {
      free(target);
      return oom(w);
    }
    target = nt;
    n = readlinkat(dirfd, base, target, cap);
    if (n < 0 || (size_t)n < cap)
      break;
    cap *= 2; /* truncated: the link was rewritten since fstatat */
  }
  if (n < 0) {
    int err = errno;
    free(target);
    if (err == ENOENT)
      warn_item(w, "vanished during backup");
    else if (err == EINVAL)
      warn_item(w, "changed type during backup (no longer a symlink); skipped");
    else
      warn_errno(w, "unable to read symlink", err);
    return 0;
  }
  json_t *m = stat_meta_x(w, st, -1, dirfd, base);
  if (m == NULL || files_meta_set_bytes(m, "target", target, (size_t)n) != 0) {
    json_decref(m);
    free(target);
    return oom(w);
  }
  free(target);
  return emit_simple(w, ENGINE_ITEM_SYMLINK, m);
}

static int backup_special(struct walk *w, int dirfd, const char *base, const struct stat *st) {
  const char *kind = S_ISFIFO(st->st_mode)  ? "fifo"
                     : S_ISCHR(st->st_mode) ? "char"
                     : S_ISBLK(st->st_mode) ? "block"
                                            : "socket";
  json_t *m = stat_meta_x(w, st, -1, dirfd, base);
  if (m == NULL || json_object_set_new(m, "kind", json_string(kind)) != 0 ||
      json_object_set_new(m, "rdev", json_integer((json_int_t)st->st_rdev)) != 0 ||
      json_object_set_new(m, "rdev_major", json_integer(major(st->st_rdev))) != 0 ||
      json_object_set_new(m, "rdev_minor", json_integer(minor(st->st_rdev))) != 0) {
    json_decref(m);
    return oom(w);
  }
  return emit_simple(w, ENGINE_ITEM_SPECIAL, m);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

/* Read all entry names of an open directory, sorted by bytes. The listing
 * is taken whole so that only one descriptor per level stays open while
 * descending. Returns 0 (also on a read error, after a warning, with what
 * was read) or -1 on OOM. */
static int list_dir(struct walk *w, int dfd, char ***out, size_t *out_n) {
  *out = NULL;
  *out_n = 0;
  int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
  DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
  if (d == NULL) {
    int err = errno;
    if (dup_fd >= 0)
      close(dup_fd);
    warn_errno(w, "unable to read directory; its contents are not in the snapshot", err);
    return 0;
  }
  /* The dup shares the file offset with dfd; rewind in case the same
   * directory description was read before. */
  rewinddir(d);
  char **names = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (de == NULL) {
      if (errno != 0)
        warn_errno(w, "unable to read directory; some entries are missing", errno);
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 32;
      char **nn = realloc(names, ncap * sizeof(*nn));
      if (nn == NULL)
        goto fail;
      names = nn;
      cap = ncap;
    }
    names[n] = strdup(de->d_name);
    if (names[n] == NULL)
      goto fail;
    n++;
  }
  closedir(d);
  if (n > 1)
    qsort(names, n, sizeof(*names), cmp_names);
  *out = names;
  *out_n = n;
  return 0;
fail:
  closedir(d);
  free_names(names, n);
  return oom(w);
}

static int backup_entry(struct walk *w, int dirfd, const char *base, int top);

static int walk_dir(struct walk *w, int dfd) {
  char **names;
  size_t n;
  if (list_dir(w, dfd, &names, &n) != 0)
    return -1;
  int rc = 0;
  size_t saved = w->path.len;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (cancelled(w) || path_push(w, names[i]) != 0) {
      rc = -1;
      break;
    }
    rc = backup_entry(w, dfd, names[i], 0);
    path_pop(w, saved);
  }
  free_names(names, n);
  return rc;
}

static int backup_dir(struct walk *w, int dirfd, const char *base, const struct stat *lst) {
  int descend = !(w->in->one_file_system && lst->st_dev != w->top_dev);
  int dfd = -1, open_err = 0;
  struct stat st = *lst;
  if (descend) {
    dfd = openat(dirfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
      open_err = errno;
      if (open_err == ENOENT) {
        warn_item(w, "vanished during backup");
        return 0;
      }
      if (open_err == ENOTDIR || open_err == ELOOP) {
        warn_item(w, "changed type during backup (no longer a directory); skipped");
        return 0;
      }
    } else if (fstat(dfd, &st) != 0) {
      st = *lst;
    }
  }
  /* The directory is stored even when it cannot be read: its metadata is
   * known and restore needs it to recreate the tree. Not descended into
   * (another file system): opened for its flags only. */
  int xfd = dfd;
  if (xfd < 0 && open_err == 0 && (w->in->xattrs || w->in->file_flags)) {
    xfd = openat(dirfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat xst;
    if (xfd >= 0 && (fstat(xfd, &xst) != 0 || xst.st_ino != st.st_ino || xst.st_dev != st.st_dev)) {
      close(xfd);
      xfd = -1;
    }
  }
  json_t *m = stat_meta_x(w, &st, xfd, dirfd, base);
  if (xfd >= 0 && xfd != dfd)
    close(xfd);
  if (m == NULL) {
    if (dfd >= 0)
      close(dfd);
    return oom(w);
  }
  if (emit_simple(w, ENGINE_ITEM_DIR, m) != 0) {
    if (dfd >= 0)
      close(dfd);
    return -1;
  }
  if (open_err != 0) {
    warn_errno(w, "unable to open directory; its contents are not in the snapshot", open_err);
    return 0;
  }
  if (dfd < 0)
    return 0; /* another file system with one_file_system set */
  int rc = walk_dir(w, dfd);
  close(dfd);
  return rc;
}

/* Back up the entry `base` of dirfd, whose absolute path is w->path. */
static int backup_entry(struct walk *w, int dirfd, const char *base, int top) {
  struct stat st;
  if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      warn_item(w, "vanished during backup");
    else
      warn_errno(w, "unable to stat", errno);
    return 0;
  }
  /* Configured paths are taken as asked for, even when a glob matches them. */
  if (!top && excluded(w, base, S_ISDIR(st.st_mode)))
    return 0;
  if (top)
    w->top_dev = st.st_dev;
  if (S_ISDIR(st.st_mode))
    return backup_dir(w, dirfd, base, &st);
  if (S_ISLNK(st.st_mode))
    return backup_symlink(w, dirfd, base, &st);
  if (S_ISREG(st.st_mode)) {
    struct files_map_slot *first =
        st.st_nlink > 1 ? files_map_get(&w->links, st.st_dev, st.st_ino) : NULL;
    if (first != NULL)
      return backup_hardlink(w, &st, first->value);
    return backup_file(w, dirfd, base, &st);
  }
  return backup_special(w, dirfd, base, &st);
}

/* ---- configured paths ---- */

/* Absolute, normalised form of a configured path: the parent is resolved
 * with realpath (so item names never pass through a symlink), the last
 * component is kept as is (a configured symlink is stored as a symlink).
 * Returns a malloc'd path, or NULL with errno set. */
static char *normalise_path(const char *given) {
  char *copy = strdup(given);
  if (copy == NULL)
    return NULL;
  size_t len = strlen(copy);
  while (len > 1 && copy[len - 1] == '/')
    copy[--len] = '\0';
  char *slash = strrchr(copy, '/');
  const char *base = slash + 1;
  char *result = NULL;
  if (strcmp(copy, "/") == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
    result = realpath(copy, NULL);
  } else {
    char *dir;
    if (slash == copy) {
      dir = strdup("/");
    } else {
      *slash = '\0';
      dir = realpath(copy, NULL);
    }
    if (dir != NULL) {
      size_t dl = strlen(dir), bl = strlen(base);
      result = malloc(dl + 1 + bl + 1);
      if (result != NULL) {
        memcpy(result, dir, dl);
        size_t o = dl;
        if (dl > 1)
          result[o++] = '/';
        memcpy(result + o, base, bl + 1);
      }
      free(dir);
    }
  }
  int err = errno;
  free(copy);
  errno = err;
  return result;
}

static int is_within(const char *path, const char *root) {
  if (strcmp(root, "/") == 0)
    return 1;
  size_t n = strlen(root);
  return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Directories above configured paths that were already emitted. */
struct emitted {
  char **v;
  size_t n, cap;
};

static int emitted_has(const struct emitted *e, const char *p) {
  for (size_t i = 0; i < e->n; i++) {
    if (strcmp(e->v[i], p) == 0)
      return 1;
  }
  return 0;
}

static int emitted_add(struct emitted *e, const char *p) {
  if (e->n == e->cap) {
    size_t ncap = e->cap ? e->cap * 2 : 16;
    char **nv = realloc(e->v, ncap * sizeof(*nv));
    if (nv == NULL)
      return -1;
    e->v = nv;
    e->cap = ncap;
  }
  e->v[e->n] = strdup(p);
  if (e->v[e->n] == NULL)
    return -1;
  e->n++;
  return 0;
}

/* Open the parent directory chain of `abs` from "/" without following
 * symlinks, emit the ancestors not emitted yet, then back up the path
 * itself. Returns 1 when the path existed, 0 when not (after a warning),
 * -1 to stop. */
static int backup_configured(struct walk *w, const char *given, const char *abs,
                             struct emitted *done) {
  int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    w->h->set_error(w->h, "unable to open '/': %s", strerror(errno));
    return -1;
  }
  path_pop(w, 0);
  if (strcmp(abs, "/") == 0) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      w->h->set_error(w->h, "unable to stat '/': %s", strerror(errno));
      close(fd);
      return -1;
    }
    w->top_dev = st.st_dev;
    int rc = walk_dir(w, fd);
    close(fd);
    return rc < 0 ? -1 : 1;
  }

  char *copy = strdup(abs + 1);
  if (copy == NULL) {
    close(fd);
    return oom(w);
  }
  /* First pass: open the chain and check the path exists, so nothing is
   * emitted for a missing path. Ancestor stats are kept for the second. */
  size_t n_comp = 1;
  for (const char *c = copy; *c; c++)
    n_comp += *c == '/';
  char **comps = calloc(n_comp, sizeof(*comps));
  struct stat *sts = calloc(n_comp, sizeof(*sts));
  if (comps == NULL || sts == NULL) {
    free(comps);
    free(sts);
    free(copy);
    close(fd);
    return oom(w);
  }
  size_t k = 0;
  for (char *save = NULL, *c = strtok_r(copy, "/", &save); c != NULL;
       c = strtok_r(NULL, "/", &save))
    comps[k++] = c;
  n_comp = k;

  int result = 1;
  const char *failed = NULL;
  int err = 0;
  for (size_t i = 0; i < n_comp; i++) {
    if (fstatat(fd, comps[i], &sts[i], AT_SYMLINK_NOFOLLOW) != 0) {
      err = errno;
      failed = "unable to stat";
      break;
    }
    if (i + 1 == n_comp)
      break;
    int nfd = openat(fd, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nfd < 0) {
      err = errno;
      failed = "unable to open parent directory";
      break;
    }
    close(fd);
    fd = nfd;
  }
  if (failed != NULL) {
    char msg[512];
    if (err == ENOENT)
      snprintf(msg, sizeof(msg), "configured path does not exist");
    else
      snprintf(msg, sizeof(msg), "configured path skipped: %s: %s", failed, strerror(err));
    w->em->warn(w->em, given, msg);
    result = 0;
    goto out;
  }
  for (size_t i = 0; i < n_comp; i++) {
    if (path_push(w, comps[i]) != 0) {
      result = -1;
      goto out;
    }
    if (i + 1 == n_comp)
      break;
    if (emitted_has(done, w->path.p))
      continue;
    int afd = -1;
    if (w->in->xattrs || w->in->file_flags) {
      struct stat ast;
      afd = open(w->path.p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
      if (afd >= 0 &&
          (fstat(afd, &ast) != 0 || ast.st_ino != sts[i].st_ino || ast.st_dev != sts[i].st_dev)) {
        close(afd);
        afd = -1;
      }
    }
    json_t *m = stat_meta_x(w, &sts[i], afd, -1, NULL);
    if (afd >= 0)
      close(afd);
    if (m == NULL || emitted_add(done, w->path.p) != 0) {
      json_decref(m);
      result = oom(w);
      goto out;
    }
    if (emit_simple(w, ENGINE_ITEM_DIR, m) != 0) {
      result = -1;
      goto out;
    }
  }
  if (backup_entry(w, fd, comps[n_comp - 1], 1) != 0)
    result = -1;
out:
  free(comps);
  free(sts);
  free(copy);
  close(fd);
  return result;
}

/* Record in the manifest which metadata this run reads (marks "xattrs" and
 * "file_flags"), learn what the parent snapshot's run read, and say once
 * what a run without root cannot see. */
static int note_meta_options(struct walk *w) {
  const struct engine_emitter *em = w->em;
  if (em->mark(em, "xattrs", w->in->xattrs ? "true" : "false") != ENGINE_OK ||
      em->mark(em, "file_flags", w->in->file_flags ? "true" : "false") != ENGINE_OK) {
    w->h->set_error(w->h, "backup of files: the pipeline refused the marks 'xattrs'/'file_flags'");
    return -1;
  }
  if (ENGINE_HAS_FIELD(em, struct engine_emitter, previous_mark) && em->previous_mark != NULL) {
    const char *v = NULL;
    w->parent_xattrs =
        em->previous_mark(em, "xattrs", &v) == ENGINE_OK && v != NULL && strcmp(v, "true") == 0;
    v = NULL;
    w->parent_flags =
        em->previous_mark(em, "file_flags", &v) == ENGINE_OK && v != NULL && strcmp(v, "true") == 0;
  }
  w->use_proc = access("/proc/self/fd", X_OK) == 0;
  if (w->in->xattrs && geteuid() != 0)
    w->h->log(w->h, ENGINE_LOG_WARN,
              "not running as root: extended attributes trusted.* are invisible to this user and "
              "are not backed up; run as root to keep them");
  return 0;
}

struct configured {
  char *abs;         /* normalised absolute path */
  const char *given; /* as written in the configuration, for messages */
};

static int cmp_configured(const void *a, const void *b) {
  return strcmp(((const struct configured *)a)->abs, ((const struct configured *)b)->abs);
}

static void note_missing(FILE *f, const char *given) {
  fprintf(f, "%s'%s'", ftell(f) > 0 ? ", " : "", given);
}

int files_backup(void *inst, const struct engine_emitter *em) {
  struct files_inst *in = inst;
  const struct engine_host *h = in->host;
  struct walk w = {.in = in, .h = h, .em = em};
  struct emitted done = {0};
  struct configured *cfg = calloc(in->n_paths, sizeof(*cfg));
  size_t n_cfg = 0;
  char *missing = NULL;
  size_t missing_len = 0;
  FILE *missing_f = open_memstream(&missing, &missing_len);
  int rc = ENGINE_ERROR;
  w.buf = malloc(FILES_IO_BLOCK);
  if (cfg == NULL || w.buf == NULL || missing_f == NULL) {
    h->set_error(h, "backup of files: out of memory");
    goto out;
  }
  if (note_meta_options(&w) != 0)
    goto out;

  for (size_t i = 0; i < in->n_paths; i++) {
    char *p = normalise_path(in->paths[i]);
    if (p == NULL) {
      int err = errno;
      if (err == ENOMEM) {
        h->set_error(h, "backup of files: out of memory");
        goto out;
      }
      char msg[512];
      snprintf(msg, sizeof(msg), "configured path skipped: unable to resolve its parent: %s",
               strerror(err));
      em->warn(em, in->paths[i], err == ENOENT ? "configured path does not exist" : msg);
      note_missing(missing_f, in->paths[i]);
      continue;
    }
    cfg[n_cfg].abs = p;
    cfg[n_cfg].given = in->paths[i];
    n_cfg++;
  }
  /* Byte order, and paths inside another configured path are dropped:
   * they would be emitted twice. */
  if (n_cfg > 1)
    qsort(cfg, n_cfg, sizeof(*cfg), cmp_configured);

  size_t existing = 0;
  for (size_t i = 0; i < n_cfg; i++) {
    int nested = 0;
    for (size_t j = 0; j < i && !nested; j++)
      nested = is_within(cfg[i].abs, cfg[j].abs);
    if (nested)
      continue;
    if (cancelled(&w))
      goto out;
    int r = backup_configured(&w, cfg[i].given, cfg[i].abs, &done);
    if (r < 0)
      goto out;
    if (r == 0)
      note_missing(missing_f, cfg[i].given);
    existing += (size_t)r;
  }
  if (existing == 0) {
    fflush(missing_f);
    h->set_error(h, "none of the configured paths exist or are accessible: %s", missing);
    goto out;
  }
  rc = ENGINE_OK;
out:
  if (missing_f != NULL)
    fclose(missing_f);
  free(missing);
  for (size_t i = 0; i < n_cfg; i++)
    free(cfg[i].abs);
  free(cfg);
  for (size_t i = 0; i < done.n; i++)
    free(done.v[i]);
  free(done.v);
  free(w.buf);
  free(w.path.p);
  files_xread_free(&w.xr);
  files_map_free(&w.links, free);
  files_idcache_free(&w.ids);
  return rc;
}
