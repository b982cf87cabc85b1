/* The files source's restore: metadata as stored by the backup (mode,
 * owner, times, sparse, xattrs, inode flags), applied to restored nodes;
 * what the target refuses (xattrs, flags) is counted per kind and reported
 * once each at the end. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "restore_int.h"

static struct timespec ns_to_ts(json_int_t ns) {
  struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000)};
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1000000000;
    ts.tv_sec -= 1;
  }
  return ts;
}

/* Returns 0, or -1 with a reason in why for invalid "xattrs" / "flags". */
int rs_parse_meta(const struct rctx *r, json_t *m, struct rmeta *out, char *why, size_t why_len) {
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
void rs_note_xfail(struct rctx *r, const char *name, enum files_xkind kind, const char *what,
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
  rs_note_xfail(c->r, c->name, kind, xname, err);
}

/* Set the item's extended attributes through fd, or (fd < 0) at dirfd/base
 * without following a symlink. What fails is counted, not an error. */
void rs_set_xattrs(struct rctx *r, const char *name, int fd, int dirfd, const char *base,
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
void rs_set_flags(struct rctx *r, const char *name, int fd, unsigned flags) {
  int err;
  if (files_flags_set(fd, flags, &err) != 0) {
    char letters[FILES_FLAGS_MAX + 1];
    char what[64];
    files_flags_letters(flags, letters);
    snprintf(what, sizeof(what), "flags '%s'", letters);
    rs_note_xfail(r, name, FILES_XK_FLAGS, what, err);
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
void rs_report_xfail(struct rctx *r) {
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
int rs_apply_meta_fd(struct rctx *r, const char *name, int fd, const struct rmeta *m) {
  if (r->is_root && m->has_owner && fchown(fd, m->uid, m->gid) != 0)
    return rs_fail(r, name, "unable to set owner %u:%u: %s", (unsigned)m->uid, (unsigned)m->gid,
                   strerror(errno));
  if (m->has_mode && fchmod(fd, m->mode) != 0)
    return rs_fail(r, name, "unable to set mode %04o: %s", (unsigned)m->mode, strerror(errno));
  /* after fchown, which drops security.capability, and fchmod, which
   * rewrites an ACL's mask */
  rs_set_xattrs(r, name, fd, -1, NULL, m);
  if (m->has_times && futimens(fd, m->ts) != 0)
    return rs_fail(r, name, "unable to set timestamps: %s", strerror(errno));
  return ENGINE_OK;
}

/* The same for a node that cannot be opened (symlink, fifo, device),
 * addressed by dirfd + base and never followed. */
int rs_apply_meta_at(struct rctx *r, const char *name, int dirfd, const char *base,
                     const struct rmeta *m, int is_symlink) {
  if (r->is_root && m->has_owner && fchownat(dirfd, base, m->uid, m->gid, AT_SYMLINK_NOFOLLOW) != 0)
    return rs_fail(r, name, "unable to set owner %u:%u: %s", (unsigned)m->uid, (unsigned)m->gid,
                   strerror(errno));
  if (!is_symlink && m->has_mode) {
    int rc = fchmodat(dirfd, base, m->mode, AT_SYMLINK_NOFOLLOW);
    if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS))
      rc = fchmodat(dirfd, base, m->mode, 0); /* the node was just created by us, not a symlink */
    if (rc != 0)
      return rs_fail(r, name, "unable to set mode %04o: %s", (unsigned)m->mode, strerror(errno));
  }
  rs_set_xattrs(r, name, -1, dirfd, base, m);
  if (m->has_times && utimensat(dirfd, base, m->ts, AT_SYMLINK_NOFOLLOW) != 0)
    return rs_fail(r, name, "unable to set timestamps: %s", strerror(errno));
  return ENGINE_OK;
}
