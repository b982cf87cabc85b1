/* Restore targets.
 *
 *   --target DIR        one apply-ready YAML file per object, in the items'
 *                       layout (NAMESPACE/RESOURCE.GROUP/NAME.yaml, _cluster/...);
 *                       Secrets are written with mode 0600
 *   --to-stdout         one multi-document YAML stream, in apply order
 *   --target cluster    server-side apply with the pipeline's credentials
 *   --target kubeconfig:PATH[#CONTEXT]
 *                       server-side apply to another cluster
 *
 * Restore flags (opts->extra): namespace_map=OLD=NEW (repeatable, or
 * OLD=NEW,OLD2=NEW2) rewrites namespaces and same-namespace references;
 * drop_existing=1 updates objects that exist (otherwise they are left alone
 * and reported); opts->dry_run applies with dryRun=All.
 *
 * Items arrive in the snapshot's order; stdout and cluster targets need
 * apply order, so the objects wait in a memfd spool (memory, never a file:
 * it may hold Secrets) and go out in restore_end. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "k8s.h"

#define MAX_OBJECT (64u * 1024 * 1024)

enum rs_mode { RS_DIR, RS_STDOUT, RS_CLUSTER };

struct rs {
  struct k8s_inst *in;
  const struct engine_host *h;
  enum rs_mode mode;
  char *dir;
  int yes, update, dry_run;
  char **map_from, **map_to;
  size_t n_map;
  int spool;
  size_t spool_len;
  struct k8s_apply_obj *objs;
  size_t n_objs, cap_objs;
  struct k8s_client c;
  size_t written;
};

static void rs_free(struct rs *r) {
  if (!r)
    return;
  free(r->dir);
  for (size_t i = 0; i < r->n_map; i++) {
    free(r->map_from[i]);
    free(r->map_to[i]);
  }
  free(r->map_from);
  free(r->map_to);
  if (r->spool >= 0)
    close(r->spool);
  for (size_t i = 0; i < r->n_objs; i++) {
    struct k8s_apply_obj *o = &r->objs[i];
    free(o->name);
    free(o->ns);
    free(o->group);
    free(o->version);
    free(o->resource);
    free(o->kind);
    free(o->objname);
  }
  free(r->objs);
  k8s_client_free(&r->c);
  free(r);
}

/* ---- begin -------------------------------------------------------------------------- */

static int valid_ns_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (ch == '-' && i && i + 1 < n)))
      return 0;
  }
  return 1;
}

static int add_map(struct rs *r, const char *spec) {
  const struct engine_host *h = r->h;
  char *copy = strdup(spec), *save = NULL;
  if (!copy) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  int rc = ENGINE_OK;
  for (char *p = strtok_r(copy, ",", &save); p && rc == ENGINE_OK; p = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(p, '=');
    if (eq)
      *eq = '\0';
    if (!eq || !valid_ns_name(p) || !valid_ns_name(eq + 1)) {
      h->set_error(h,
                   "--namespace-map '%s': expected OLD=NEW, two namespace names (lower-case "
                   "letters, digits and '-', at most 63)",
                   spec);
      rc = ENGINE_ERROR;
      break;
    }
    char **f = realloc(r->map_from, (r->n_map + 1) * sizeof(char *));
    if (f)
      r->map_from = f;
    char **t = f ? realloc(r->map_to, (r->n_map + 1) * sizeof(char *)) : NULL;
    if (t)
      r->map_to = t;
    if (!f || !t) {
      h->set_error(h, "out of memory");
      rc = ENGINE_ERROR;
      break;
    }
    r->map_from[r->n_map] = strdup(p);
    r->map_to[r->n_map] = strdup(eq + 1);
    r->n_map++;
  }
  free(copy);
  return rc;
}

static int dir_has_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return 0;
  struct dirent *e;
  int any = 0;
  while (!any && (e = readdir(d)))
    any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return any;
}

static int mkdirs(const struct engine_host *h, const char *path) {
  char *p = strdup(path);
  if (!p) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  for (char *s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      h->set_error(h, "unable to create directory %s: %s", p, strerror(errno));
      free(p);
      return ENGINE_ERROR;
    }
    *s = '/';
  }
  int rc = ENGINE_OK;
  if (mkdir(p, 0755) != 0 && errno != EEXIST) {
    h->set_error(h, "unable to create directory %s: %s", p, strerror(errno));
    rc = ENGINE_ERROR;
  }
  free(p);
  return rc;
}

static int connect_target(struct rs *r, const char *target) {
  const struct engine_host *h = r->h;
  struct k8s_inst *in = r->in;
  struct k8s_creds cr;
  int rc;
  if (strcmp(target, "cluster") == 0) {
    rc = k8s_creds_load(h, in->kubeconfig, in->context, in->sa_dir, &cr);
  } else {
    char *spec = strdup(target + strlen("kubeconfig:"));
    if (!spec) {
      h->set_error(h, "out of memory");
      return ENGINE_ERROR;
    }
    char *hash = strrchr(spec, '#');
    if (hash)
      *hash = '\0';
    if (!*spec) {
      h->set_error(h, "--target kubeconfig:PATH[#CONTEXT]: the path is empty");
      free(spec);
      return ENGINE_ERROR;
    }
    rc = k8s_creds_load(h, spec, hash && hash[1] ? hash + 1 : NULL, in->sa_dir, &cr);
    free(spec);
  }
  if (rc != ENGINE_OK)
    return ENGINE_ERROR;
  if (k8s_client_init(&r->c, h, &cr, in->timeout_ms, in->connect_timeout_ms, in->max_retries,
                      in->exec_env, in->n_exec_env) != ENGINE_OK)
    return ENGINE_ERROR;
  json_t *ver = NULL;
  if (k8s_get_json(&r->c, "/version", "the target cluster's version", &ver, NULL) != ENGINE_OK)
    return ENGINE_ERROR;
  h->log(h, ENGINE_LOG_INFO, "restoring to %s (%s, %s)%s", r->c.cr.server, r->c.cr.origin,
         json_string_value(json_object_get(ver, "gitVersion"))
             ? json_string_value(json_object_get(ver, "gitVersion"))
             : "version unknown",
         r->c.can_patch ? ""
                        : "; this engine's HTTP client sends no PATCH bodies, so objects are "
                          "created and replaced instead of applied server-side");
  json_decref(ver);
  return ENGINE_OK;
}

int k8s_restore_begin(void *inst, const struct engine_restore_opts *opts, void **rctx) {
  struct k8s_inst *in = inst;
  const struct engine_host *h = in->h;
  struct rs *r = calloc(1, sizeof(*r));
  if (!r) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  r->in = in;
  r->h = h;
  r->spool = -1;
  r->yes = opts->yes;
  r->dry_run = opts->dry_run;
  int to_stdout = 0;
  for (size_t i = 0; opts->extra && opts->extra[i]; i++) {
    const char *e = opts->extra[i];
    if (strcmp(e, "to_stdout=1") == 0) {
      to_stdout = 1;
    } else if (strcmp(e, "drop_existing=1") == 0) {
      r->update = 1;
    } else if (strncmp(e, "namespace_map=", 14) == 0) {
      if (add_map(r, e + 14) != ENGINE_OK) {
        rs_free(r);
        return ENGINE_ERROR;
      }
    } else if (strncmp(e, "as=", 3) == 0) {
      h->set_error(h, "--as does not apply to k8s-yaml: restore under other namespaces with "
                      "--namespace-map OLD=NEW");
      rs_free(r);
      return ENGINE_ERROR;
    } else {
      h->log(h, ENGINE_LOG_DEBUG, "ignoring restore flag '%s' (not used by k8s-yaml)", e);
    }
  }
  const char *t = opts->target;
  if (to_stdout && t) {
    h->set_error(h, "--to-stdout writes the objects to stdout; it does not take --target");
    rs_free(r);
    return ENGINE_ERROR;
  }
  if (!to_stdout && (!t || !*t)) {
    h->set_error(h, "where to? --target DIR writes apply-ready files, --target cluster applies "
                    "them with the pipeline's credentials, --target kubeconfig:PATH[#CONTEXT] to "
                    "another cluster, --to-stdout prints one YAML stream");
    rs_free(r);
    return ENGINE_ERROR;
  }
  if (to_stdout) {
    r->mode = RS_STDOUT;
  } else if (strcmp(t, "cluster") == 0 || strncmp(t, "kubeconfig:", 11) == 0) {
    r->mode = RS_CLUSTER;
    if (r->update && !r->yes) {
      h->set_error(h, "--drop-existing updates the objects that exist in the cluster with the "
                      "snapshot's (taking over fields other managers set)");
      rs_free(r);
      return ENGINE_EXISTS;
    }
    if (connect_target(r, t) != ENGINE_OK) {
      rs_free(r);
      return ENGINE_ERROR;
    }
  } else {
    r->mode = RS_DIR;
    if (r->update) {
      h->set_error(h, "--drop-existing is for --target cluster; a directory target is "
                      "overwritten file by file (with --yes)");
      rs_free(r);
      return ENGINE_ERROR;
    }
    r->dir = strdup(t);
    if (!r->dir) {
      h->set_error(h, "out of memory");
      rs_free(r);
      return ENGINE_ERROR;
    }
    size_t n = strlen(r->dir);
    while (n > 1 && r->dir[n - 1] == '/')
      r->dir[--n] = '\0';
    if (!r->yes && dir_has_entries(r->dir)) {
      h->set_error(h, "directory %s is not empty; files of the same names would be overwritten",
                   r->dir);
      rs_free(r);
      return ENGINE_EXISTS;
    }
    if (!r->dry_run && mkdirs(h, r->dir) != ENGINE_OK) {
      rs_free(r);
      return ENGINE_ERROR;
    }
  }
  if (r->mode != RS_DIR) {
    r->spool = memfd_create("engine-k8s-restore", MFD_CLOEXEC);
    if (r->spool < 0) {
      h->set_error(h, "unable to create the restore spool (memfd_create): %s", strerror(errno));
      rs_free(r);
      return ENGINE_ERROR;
    }
  }
  *rctx = r;
  return ENGINE_OK;
}

/* ---- items -------------------------------------------------------------------------- */

static int safe_component(const char *s, size_t n) {
  if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\0' || s[i] == '/')
      return 0;
  return 1;
}

struct itemname {
  char *ns; /* NULL for _cluster */
  char *full, *resource, *group, *objname;
};

static void itemname_free(struct itemname *n) {
  free(n->ns);
  free(n->full);
  free(n->resource);
  free(n->group);
  free(n->objname);
}

static int parse_name(const char *name, size_t len, struct itemname *out) {
  memset(out, 0, sizeof(*out));
  if (memchr(name, '\0', len))
    return -1;
  const char *s1 = memchr(name, '/', len);
  const char *s2 = s1 ? memchr(s1 + 1, '/', len - (size_t)(s1 + 1 - name)) : NULL;
  if (!s1 || !s2 || memchr(s2 + 1, '/', len - (size_t)(s2 + 1 - name)))
    return -1;
  size_t l0 = (size_t)(s1 - name), l1 = (size_t)(s2 - s1 - 1), l2 = len - (size_t)(s2 + 1 - name);
  if (!safe_component(name, l0) || !safe_component(s1 + 1, l1) || !safe_component(s2 + 1, l2) ||
      l2 <= 5 || memcmp(s2 + 1 + l2 - 5, ".yaml", 5) != 0)
    return -1;
  if (!(l0 == 8 && memcmp(name, "_cluster", 8) == 0))
    out->ns = strndup(name, l0);
  out->full = strndup(s1 + 1, l1);
  const char *dot = memchr(s1 + 1, '.', l1);
  out->resource = dot ? strndup(s1 + 1, (size_t)(dot - s1 - 1)) : strndup(s1 + 1, l1);
  out->group = dot ? strndup(dot + 1, l1 - (size_t)(dot - s1)) : strdup("");
  out->objname = strndup(s2 + 1, l2 - 5);
  if ((l0 != 8 || memcmp(name, "_cluster", 8) != 0) && !out->ns)
    return -1;
  return out->full && out->resource && out->group && out->objname ? 0 : -1;
}

static const char *mapped(struct rs *r, const char *ns) {
  for (size_t i = 0; ns && i < r->n_map; i++)
    if (strcmp(r->map_from[i], ns) == 0)
      return r->map_to[i];
  return ns;
}

static int read_all(const struct engine_reader *rd, struct k8s_buf *b, const struct engine_host *h,
                    const char *name) {
  char tmp[65536];
  for (;;) {
    ssize_t n = rd->read(rd, tmp, sizeof(tmp));
    if (n < 0) {
      h->set_error(h, "%s: unable to read the item from the repository", name);
      return ENGINE_ERROR;
    }
    if (n == 0)
      break;
    k8s_buf_add(b, tmp, (size_t)n);
    if (b->oom || b->len > MAX_OBJECT) {
      h->set_error(h, "%s: the object is larger than 64 MiB", name);
      return ENGINE_ERROR;
    }
  }
  explicit_bzero(tmp, sizeof(tmp));
  return ENGINE_OK;
}

static int write_file(struct rs *r, const char *rel, const char *data, size_t len, int secret) {
  const struct engine_host *h = r->h;
  char *path = k8s_strf("%s/%s", r->dir, rel);
  char *tmp = path ? k8s_strf("%s.tmp-engine", path) : NULL;
  if (!tmp) {
    free(path);
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  char *slash = strrchr(path, '/');
  *slash = '\0';
  int rc = mkdirs(h, path);
  *slash = '/';
  if (rc == ENGINE_OK) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, secret ? 0600 : 0644);
    if (fd < 0) {
      h->set_error(h, "unable to create %s: %s", tmp, strerror(errno));
      rc = ENGINE_ERROR;
    } else {
      size_t off = 0;
      while (off < len && rc == ENGINE_OK) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
          continue;
        if (w <= 0) {
          h->set_error(h, "unable to write %s: %s", tmp, strerror(errno));
          rc = ENGINE_ERROR;
        } else {
          off += (size_t)w;
        }
      }
      if (close(fd) != 0 && rc == ENGINE_OK) {
        h->set_error(h, "unable to write %s: %s", tmp, strerror(errno));
        rc = ENGINE_ERROR;
      }
      if (rc == ENGINE_OK && rename(tmp, path) != 0) {
        h->set_error(h, "unable to rename %s to %s: %s", tmp, path, strerror(errno));
        rc = ENGINE_ERROR;
      }
      if (rc != ENGINE_OK)
        unlink(tmp);
    }
  }
  free(tmp);
  free(path);
  return rc;
}

static int spool_add(struct rs *r, const char *data, size_t len, struct k8s_apply_obj *ob) {
  const struct engine_host *h = r->h;
  size_t off = 0;
  while (off < len) {
    ssize_t w = pwrite(r->spool, data + off, len - off, (off_t)(r->spool_len + off));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      h->set_error(h, "unable to write to the restore spool: %s", strerror(errno));
      return ENGINE_ERROR;
    }
    off += (size_t)w;
  }
  ob->off = r->spool_len;
  ob->len = len;
  r->spool_len += len;
  if (r->n_objs == r->cap_objs) {
    size_t nc = r->cap_objs ? r->cap_objs * 2 : 256;
    struct k8s_apply_obj *no = realloc(r->objs, nc * sizeof(*no));
    if (!no) {
      h->set_error(h, "out of memory");
      return ENGINE_ERROR;
    }
    r->objs = no;
    r->cap_objs = nc;
  }
  r->objs[r->n_objs++] = *ob;
  memset(ob, 0, sizeof(*ob));
  return ENGINE_OK;
}

int k8s_restore_item(void *rctx, const struct engine_item *item, const struct engine_reader *data) {
  struct rs *r = rctx;
  const struct engine_host *h = r->h;
  struct itemname nm = {0};
  char *shown = strndup(item->name, item->name_len);
  if (!shown) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  if (item->type != ENGINE_ITEM_STREAM || !data ||
      parse_name(item->name, item->name_len, &nm) != 0) {
    h->set_error(h,
                 "'%s' is not an object of a k8s-yaml snapshot (expected "
                 "NAMESPACE/RESOURCE.GROUP/NAME.yaml or _cluster/RESOURCE.GROUP/NAME.yaml)",
                 shown);
    itemname_free(&nm);
    free(shown);
    return ENGINE_ERROR;
  }
  json_t *meta = item->meta_json ? json_loads(item->meta_json, 0, NULL) : NULL;
  const char *api = json_string_value(json_object_get(meta, "apiVersion"));
  const char *kind = json_string_value(json_object_get(meta, "kind"));
  struct k8s_buf b = {0};
  json_t *obj = NULL;
  int rc = ENGINE_ERROR;
  int secret = !*nm.group && strcmp(nm.resource, "secrets") == 0;
  if (!api || !kind) {
    h->set_error(h, "%s: the item's metadata names no apiVersion and kind", shown);
    goto out;
  }
  if (read_all(data, &b, h, shown) != ENGINE_OK)
    goto out;
  const char *ns = mapped(r, nm.ns);
  int need_parse = r->mode == RS_CLUSTER || r->n_map > 0;
  char err[300];
  if (need_parse) {
    obj = k8s_yaml_parse(b.p ? b.p : "", b.len, err, sizeof(err));
    if (!obj || !json_is_object(obj)) {
      h->set_error(h, "%s: the stored YAML cannot be read back: %s", shown,
                   obj ? "not a mapping" : err);
      goto out;
    }
    for (size_t i = 0; i < r->n_map; i++)
      k8s_map_namespace(obj, nm.group, nm.resource, r->map_from[i], r->map_to[i]);
  }
  const char *objname = nm.objname;
  if (obj && !*nm.group && strcmp(nm.resource, "namespaces") == 0 && !nm.ns)
    objname = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  if (!objname)
    objname = nm.objname;
  char *rel = nm.ns ? k8s_strf("%s/%s/%s.yaml", ns, nm.full, objname)
                    : k8s_strf("_cluster/%s/%s.yaml", nm.full, objname);
  if (!rel) {
    h->set_error(h, "out of memory");
    goto out;
  }
  if (r->mode == RS_DIR) {
    struct k8s_buf y = {0};
    const char *out_p = b.p ? b.p : "";
    size_t out_len = b.len;
    if (obj) {
      if (k8s_yaml_emit(obj, 0, &y, err, sizeof(err)) != ENGINE_OK) {
        h->set_error(h, "%s: %s", shown, err);
        free(rel);
        goto out;
      }
      out_p = y.p;
      out_len = y.len;
    }
    rc = r->dry_run ? ENGINE_OK : write_file(r, rel, out_p, out_len, secret);
    if (rc == ENGINE_OK)
      r->written++;
    if (y.p)
      explicit_bzero(y.p, y.len);
    k8s_buf_free(&y);
    free(rel);
    goto out;
  }
  struct k8s_apply_obj ob = {0};
  ob.name = rel;
  ob.ns = nm.ns ? strdup(ns) : NULL;
  ob.group = strdup(nm.group);
  const char *slash = strrchr(api, '/');
  ob.version = strdup(slash ? slash + 1 : api);
  ob.resource = strdup(nm.resource);
  ob.kind = strdup(kind);
  ob.objname = strdup(objname);
  ob.prio = k8s_apply_priority(nm.group, nm.resource);
  if ((nm.ns && !ob.ns) || !ob.group || !ob.version || !ob.resource || !ob.kind || !ob.objname) {
    h->set_error(h, "out of memory");
  } else if (r->mode == RS_STDOUT) {
    struct k8s_buf y = {0};
    const char *out_p = b.p ? b.p : "";
    size_t out_len = b.len;
    if (obj) {
      if (k8s_yaml_emit(obj, 0, &y, err, sizeof(err)) != ENGINE_OK)
        h->set_error(h, "%s: %s", shown, err);
      out_p = y.p;
      out_len = y.len;
    }
    if (!obj || y.p)
      rc = spool_add(r, out_p, out_len, &ob);
    if (y.p)
      explicit_bzero(y.p, y.len);
    k8s_buf_free(&y);
  } else {
    char *js = json_dumps(obj, JSON_COMPACT);
    if (!js)
      h->set_error(h, "out of memory");
    else
      rc = spool_add(r, js, strlen(js), &ob);
    if (js)
      explicit_bzero(js, strlen(js));
    free(js);
  }
  if (rc != ENGINE_OK) {
    free(ob.name);
    free(ob.ns);
    free(ob.group);
    free(ob.version);
    free(ob.resource);
    free(ob.kind);
    free(ob.objname);
  }
out:
  if (b.p)
    explicit_bzero(b.p, b.len);
  k8s_buf_free(&b);
  json_decref(obj);
  json_decref(meta);
  itemname_free(&nm);
  free(shown);
  return rc;
}

/* ---- end ------------------------------------------------------------------------------- */

static int cmp_obj(const void *a, const void *b) {
  const struct k8s_apply_obj *x = a, *y = b;
  if (x->prio != y->prio)
    return x->prio < y->prio ? -1 : 1;
  int c = strcmp(x->ns ? x->ns : "", y->ns ? y->ns : "");
  if (c)
    return c;
  c = strcmp(x->group, y->group);
  if (c)
    return c;
  c = strcmp(x->resource, y->resource);
  return c ? c : strcmp(x->objname, y->objname);
}

static int spool_read(void *ud, size_t off, size_t len, char *buf) {
  struct rs *r = ud;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(r->spool, buf + done, len - done, (off_t)(off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    done += (size_t)n;
  }
  return 0;
}

static int write_stdout(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDOUT_FILENO, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int k8s_restore_end(void *rctx, int status) {
  struct rs *r = rctx;
  const struct engine_host *h = r->h;
  int rc = ENGINE_OK;
  if (r->mode == RS_DIR) {
    h->log(h, ENGINE_LOG_INFO, "%zu object(s) written under %s", r->written, r->dir);
    rs_free(r);
    return ENGINE_OK;
  }
  if (status != ENGINE_OK) {
    h->set_error(h, "some objects could not be read from the repository, so none was %s",
                 r->mode == RS_CLUSTER ? "applied" : "written");
    rs_free(r);
    return ENGINE_ERROR;
  }
  qsort(r->objs, r->n_objs, sizeof(*r->objs), cmp_obj);
  if (r->mode == RS_STDOUT) {
    for (size_t i = 0; i < r->n_objs && rc == ENGINE_OK; i++) {
      struct k8s_apply_obj *o = &r->objs[i];
      char *buf = malloc(o->len + 1);
      if (!buf || spool_read(r, o->off, o->len, buf) != 0) {
        h->set_error(h, "unable to read back the restore spool");
        rc = ENGINE_ERROR;
      } else if (write_stdout("---\n", 4) != 0 || write_stdout(buf, o->len) != 0) {
        h->set_error(h, "unable to write to stdout: %s", strerror(errno));
        rc = ENGINE_ERROR;
      }
      if (buf)
        explicit_bzero(buf, o->len);
      free(buf);
    }
    rs_free(r);
    return rc;
  }
  struct k8s_apply_opts ao = {.update = r->update,
                              .force = r->update && r->yes,
                              .dry_run = r->dry_run,
                              .crd_wait_ms = r->in->crd_wait_ms};
  size_t applied = 0, skipped = 0;
  long failed = k8s_apply_all(&r->c, r->objs, r->n_objs, &ao, spool_read, r, &applied, &skipped);
  rs_free(r);
  return failed == 0 ? ENGINE_OK : ENGINE_ERROR;
}
