/* Extended attributes and inode flags of the files source: reading them at
 * backup, their JSON form in item metadata ("xattrs", "flags"), and setting
 * them at restore. POSIX ACLs (system.posix_acl_access/_default) and file
 * capabilities (security.capability) are extended attributes and travel as
 * such, as raw bytes. Inode flags are the chattr(1) letters of the subset a
 * restore can set again (files_flag_letters). */
#include <errno.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>

#include "files.h"

/* The flags kept, in lsattr's order. Left out: what the file system sets
 * itself and a restore cannot (e extents, I indexed directory, N inline
 * data, E encrypted, V verity, x DAX, F casefold, m no-compress). */
static const struct {
  unsigned flag;
  char letter;
} flag_table[] = {
    {FS_SECRM_FL, 's'},     {FS_UNRM_FL, 'u'},         {FS_SYNC_FL, 'S'},   {FS_DIRSYNC_FL, 'D'},
    {FS_IMMUTABLE_FL, 'i'}, {FS_APPEND_FL, 'a'},       {FS_NODUMP_FL, 'd'}, {FS_NOATIME_FL, 'A'},
    {FS_COMPR_FL, 'c'},     {FS_JOURNAL_DATA_FL, 'j'}, {FS_NOTAIL_FL, 't'}, {FS_TOPDIR_FL, 'T'},
    {FS_NOCOW_FL, 'C'},     {FS_PROJINHERIT_FL, 'P'},
};
#define N_FLAGS (sizeof(flag_table) / sizeof(flag_table[0]))

unsigned files_flags_mask(void) {
  unsigned m = 0;
  for (size_t i = 0; i < N_FLAGS; i++)
    m |= flag_table[i].flag;
  return m;
}

void files_flags_letters(unsigned flags, char out[FILES_FLAGS_MAX + 1]) {
  size_t o = 0;
  for (size_t i = 0; i < N_FLAGS; i++) {
    if (flags & flag_table[i].flag)
      out[o++] = flag_table[i].letter;
  }
  out[o] = '\0';
}

int files_flags_parse(const char *letters, unsigned *out, char *unknown) {
  unsigned f = 0;
  *unknown = '\0';
  for (const char *p = letters; *p; p++) {
    size_t i = 0;
    while (i < N_FLAGS && flag_table[i].letter != *p)
      i++;
    if (i == N_FLAGS) {
      if (*unknown == '\0')
        *unknown = *p;
      continue;
    }
    f |= flag_table[i].flag;
  }
  *out = f;
  return *unknown == '\0' ? 0 : -1;
}

/* ---- backup ---- */

/* The errors that mean "this file system has no such thing". */
static int unsupported(int err) {
  return err == ENOTSUP || err == EOPNOTSUPP || err == ENOTTY || err == ENOSYS || err == EINVAL;
}

static int dev_listed(const struct files_devset *s, dev_t dev) {
  for (size_t i = 0; i < s->n; i++) {
    if (s->v[i] == dev)
      return 1;
  }
  return 0;
}

static void dev_add(struct files_devset *s, dev_t dev) {
  if (s->n == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 4;
    dev_t *nv = realloc(s->v, ncap * sizeof(*nv));
    if (nv == NULL)
      return; /* only a cache: the next item asks the kernel again */
    s->v = nv;
    s->cap = ncap;
  }
  s->v[s->n++] = dev;
}

void files_xread_free(struct files_xread *x) {
  free(x->list);
  free(x->val);
  free(x->no_xattrs.v);
  free(x->no_flags.v);
  memset(x, 0, sizeof(*x));
}

static ssize_t do_list(int fd, const char *path, char *buf, size_t cap) {
  return fd >= 0 ? flistxattr(fd, buf, cap) : llistxattr(path, buf, cap);
}

static ssize_t do_get(int fd, const char *path, const char *name, void *buf, size_t cap) {
  return fd >= 0 ? fgetxattr(fd, name, buf, cap) : lgetxattr(path, name, buf, cap);
}

/* Grow *buf to at least need bytes. */
static int grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap)
    return 0;
  size_t ncap = *cap ? *cap : 256;
  while (ncap < need)
    ncap *= 2;
  char *nb = realloc(*buf, ncap);
  if (nb == NULL)
    return -1;
  *buf = nb;
  *cap = ncap;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int files_xattrs_read(struct files_xread *x, dev_t dev, int fd, const char *path, json_t **out,
                      int *err) {
  *out = NULL;
  *err = 0;
  if (dev_listed(&x->no_xattrs, dev))
    return 0;
  ssize_t n;
  for (int attempt = 0;; attempt++) {
    /* the first call uses what the buffer holds: an empty list (the usual
     * case) costs one system call */
    if (x->list_cap == 0 && grow(&x->list, &x->list_cap, 1024) != 0)
      return -1;
    n = do_list(fd, path, x->list, x->list_cap);
    if (n >= 0)
      break;
    if (errno != ERANGE || attempt > 8) {
      if (unsupported(errno)) {
        dev_add(&x->no_xattrs, dev);
        return 0;
      }
      *err = errno;
      return 1;
    }
    ssize_t need = do_list(fd, path, NULL, 0);
    if (need < 0) {
      *err = errno;
      return 1;
    }
    if (grow(&x->list, &x->list_cap, (size_t)need + 1) != 0)
      return -1;
  }
  if (n == 0)
    return 0;
  /* names, NUL-terminated one after the other, sorted for a stable text */
  size_t count = 0;
  for (ssize_t i = 0; i < n; i++)
    count += x->list[i] == '\0';
  if (x->list[n - 1] != '\0') {
    *err = EIO; /* a list the kernel never returns */
    return 1;
  }
  const char **names = malloc(count * sizeof(*names));
  json_t *arr = json_array();
  if (names == NULL || arr == NULL) {
    free(names);
    json_decref(arr);
    return -1;
  }
  size_t k = 0;
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(x->list + i) + 1)
    names[k++] = x->list + i;
  qsort(names, count, sizeof(*names), cmp_str);
  int rc = 0;
  for (size_t i = 0; i < count && rc == 0; i++) {
    ssize_t vn;
    int attempt = 0;
    for (;;) {
      if (x->val_cap == 0 && grow(&x->val, &x->val_cap, 1024) != 0) {
        rc = -1;
        break;
      }
      vn = do_get(fd, path, names[i], x->val, x->val_cap);
      if (vn >= 0 || errno != ERANGE || attempt++ > 8)
        break;
      ssize_t need = do_get(fd, path, names[i], NULL, 0);
      if (need < 0)
        break;
      if (grow(&x->val, &x->val_cap, (size_t)need + 1) != 0) {
        rc = -1;
        break;
      }
    }
    if (rc != 0)
      break;
    if (vn < 0) {
      if (errno == ENODATA)
        continue; /* removed since the list was read */
      *err = errno;
      rc = 1;
      break;
    }
    json_t *o = json_object();
    if (o == NULL || files_meta_set_bytes(o, "name", names[i], strlen(names[i])) != 0 ||
        files_meta_set_bytes(o, "value", x->val, (size_t)vn) != 0 ||
        json_array_append_new(arr, o) != 0) {
      json_decref(o);
      rc = -1;
    }
  }
  free(names);
  if (rc != 0 || json_array_size(arr) == 0) {
    json_decref(arr);
    return rc;
  }
  *out = arr;
  return 0;
}

int files_flags_read(struct files_xread *x, dev_t dev, int fd, unsigned *flags, int *err) {
  *flags = 0;
  *err = 0;
  if (dev_listed(&x->no_flags, dev))
    return 0;
  int f = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &f) != 0) {
    if (unsupported(errno)) {
      dev_add(&x->no_flags, dev);
      return 0;
    }
    *err = errno;
    return 1;
  }
  *flags = (unsigned)f & files_flags_mask();
  return 0;
}

/* ---- restore ---- */

void files_xattrs_free(struct files_xattrs *x) {
  if (x == NULL)
    return;
  for (size_t i = 0; i < x->n; i++) {
    free(x->v[i].name);
    free(x->v[i].value);
  }
  free(x->v);
  free(x);
}

int files_xattrs_parse(json_t *arr, struct files_xattrs **out, char *why, size_t why_len) {
  *out = NULL;
  if (!json_is_array(arr)) {
    snprintf(why, why_len, "'xattrs' is not an array");
    return -1;
  }
  size_t n = json_array_size(arr);
  if (n == 0)
    return 0;
  struct files_xattrs *x = calloc(1, sizeof(*x));
  if (x != NULL)
    x->v = calloc(n, sizeof(*x->v));
  if (x == NULL || x->v == NULL) {
    free(x);
    snprintf(why, why_len, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(arr, i);
    char *name = NULL, *value = NULL;
    size_t name_len = 0, value_len = 0;
    if (!json_is_object(e) || files_meta_get_bytes(e, "name", &name, &name_len) != 0 ||
        name_len == 0 || strlen(name) != name_len ||
        files_meta_get_bytes(e, "value", &value, &value_len) != 0) {
      free(name);
      free(value);
      snprintf(why, why_len, "xattrs[%zu] has no valid name and value", i);
      files_xattrs_free(x);
      return -1;
    }
    x->v[x->n++] = (struct files_xattr){name, value, value_len};
  }
  *out = x;
  return 0;
}

enum files_xkind files_xattr_kind(const char *name) {
  if (strncmp(name, "user.", 5) == 0)
    return FILES_XK_USER;
  if (strncmp(name, "trusted.", 8) == 0)
    return FILES_XK_TRUSTED;
  if (strcmp(name, "security.capability") == 0)
    return FILES_XK_CAPS;
  if (strncmp(name, "security.", 9) == 0)
    return FILES_XK_SECURITY;
  if (strcmp(name, "system.posix_acl_access") == 0 || strcmp(name, "system.posix_acl_default") == 0)
    return FILES_XK_ACL;
  return FILES_XK_OTHER;
}

const char *files_xkind_word(enum files_xkind k) {
  switch (k) {
  case FILES_XK_USER:
    return "extended attributes user.*";
  case FILES_XK_TRUSTED:
    return "extended attributes trusted.*";
  case FILES_XK_SECURITY:
    return "extended attributes security.* (other than capabilities)";
  case FILES_XK_CAPS:
    return "file capabilities (security.capability)";
  case FILES_XK_ACL:
    return "POSIX ACLs (system.posix_acl_access, system.posix_acl_default)";
  case FILES_XK_OTHER:
    return "other extended attributes (system.*)";
  case FILES_XK_FLAGS:
    return "file flags (chattr)";
  default:
    return "metadata";
  }
}

int files_xattrs_set(const struct files_xattrs *x, int fd, const char *path,
                     void (*failed)(void *ud, enum files_xkind kind, const char *xname, int err),
                     void *ud) {
  unsigned done = 0; /* kinds already reported for this item */
  int nfail = 0;
  if (x == NULL)
    return 0;
  for (size_t i = 0; i < x->n; i++) {
    const struct files_xattr *a = &x->v[i];
    int rc = fd >= 0 ? fsetxattr(fd, a->name, a->value, a->len, 0)
                     : lsetxattr(path, a->name, a->value, a->len, 0);
    if (rc == 0)
      continue;
    int err = errno;
    enum files_xkind k = files_xattr_kind(a->name);
    nfail++;
    if (!(done & (1u << k))) {
      done |= 1u << k;
      failed(ud, k, a->name, err);
    }
  }
  return nfail;
}

int files_flags_set(int fd, unsigned flags, int *err) {
  int cur = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &cur) != 0) {
    *err = errno;
    return -1;
  }
  /* the file system's own flags (extents, ...) stay as they are */
  int want = (int)(((unsigned)cur & ~files_flags_mask()) | flags);
  if (want == cur)
    return 0;
  if (ioctl(fd, FS_IOC_SETFLAGS, &want) != 0) {
    *err = errno;
    return -1;
  }
  return 0;
}
