/* Backup: discovery, then one paginated list per resource (across all
 * namespaces when none are filtered, else per selected namespace), each
 * object normalised and emitted as one YAML item while the next page waits;
 * then the cluster-scoped objects `cluster_resources` asks for.
 *
 * Items: NAMESPACE/RESOURCE.GROUP/NAME.yaml (RESOURCE alone for the core
 * group), _cluster/RESOURCE.GROUP/NAME.yaml for cluster-scoped objects.
 * Metadata: apiVersion, kind, name, namespace, and the object's uid and
 * resourceVersion as the server had them. Marks: server_version,
 * resource_versions (the resourceVersion of each list), namespaces.
 *
 * A list that answers 403 is a warning naming the resource (the snapshot is
 * partial); a continue token that expired (410) starts that list again,
 * skipping what was already emitted; an API server that stops answering
 * fails the run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s.h"

struct bk {
  struct k8s_inst *in;
  const struct engine_host *h;
  const struct engine_emitter *em;
  struct k8s_client c;
  struct k8s_reslist res;
  unsigned char *selected; /* per resource of res */
  char **ns;               /* the selected namespaces, sorted */
  size_t n_ns;
  int all_ns;                              /* no namespace filter: list across namespaces */
  json_t *ns_obj;                          /* name -> Namespace object of the selected namespaces */
  json_t *need_pv, *need_crole, *need_crd; /* names -> true, for cluster_resources auto */
  json_t *rvs;                             /* resource_versions mark */
  json_t *only;                            /* each_needed: names to emit */
  uint64_t items, skipped;
};

static void warn_cb(void *ud, const char *what, const char *why) {
  struct bk *b = ud;
  b->em->warn(b->em, what, why);
}

/* ---- emitting one object ------------------------------------------------------- */

static void note_dependencies(struct bk *b, const struct k8s_res *r, json_t *obj) {
  if (!*r->group && strcmp(r->name, "persistentvolumeclaims") == 0) {
    const char *pv = json_string_value(json_object_get(json_object_get(obj, "spec"), "volumeName"));
    if (pv && *pv)
      json_object_set_new(b->need_pv, pv, json_true());
  } else if (strcmp(r->group, "rbac.authorization.k8s.io") == 0 &&
             strcmp(r->name, "rolebindings") == 0) {
    json_t *ref = json_object_get(obj, "roleRef");
    const char *kind = json_string_value(json_object_get(ref, "kind"));
    const char *name = json_string_value(json_object_get(ref, "name"));
    if (kind && name && strcmp(kind, "ClusterRole") == 0)
      json_object_set_new(b->need_crole, name, json_true());
  }
  if (*r->group) /* perhaps a custom resource: its CRD is looked up at the end */
    json_object_set_new(b->need_crd, r->full, json_true());
}

/* 1: emitted, 0: skipped, -1: the run is over (emitter refused). */
static int emit_object(struct bk *b, const struct k8s_res *r, const char *api_version, json_t *obj,
                       json_t *seen) {
  const struct engine_host *h = b->h;
  const struct engine_emitter *em = b->em;
  if (!json_object_get(obj, "apiVersion"))
    json_object_set_new(obj, "apiVersion", json_string(api_version));
  if (!json_object_get(obj, "kind"))
    json_object_set_new(obj, "kind", json_string(r->kind));
  json_t *md = json_object_get(obj, "metadata");
  const char *name = json_string_value(json_object_get(md, "name"));
  const char *ns = json_string_value(json_object_get(md, "namespace"));
  if (!name || !*name || strchr(name, '/')) {
    em->warn(em, r->full, "the server listed an object without a usable name; it is left out");
    return 0;
  }
  char *item = r->namespaced && ns ? k8s_strf("%s/%s/%s.yaml", ns, r->full, name)
                                   : k8s_strf("_cluster/%s/%s.yaml", r->full, name);
  if (!item)
    return -1;
  if (seen && json_object_get(seen, item)) { /* a list started again after a 410 */
    free(item);
    return 0;
  }
  const char *why = k8s_object_skipped(obj, r->group, r->name);
  if (why) {
    h->log(h, ENGINE_LOG_DEBUG, "%s: not backed up: %s", item, why);
    b->skipped++;
    free(item);
    return 0;
  }
  if (seen)
    json_object_set_new(seen, item, json_true());
  note_dependencies(b, r, obj);
  json_t *meta = json_pack("{s:s, s:s, s:s}", "apiVersion",
                           json_string_value(json_object_get(obj, "apiVersion")), "kind",
                           json_string_value(json_object_get(obj, "kind")), "name", name);
  if (meta && ns && r->namespaced)
    json_object_set_new(meta, "namespace", json_string(ns));
  const char *uid = json_string_value(json_object_get(md, "uid"));
  const char *rv = json_string_value(json_object_get(md, "resourceVersion"));
  if (meta && uid)
    json_object_set_new(meta, "uid", json_string(uid));
  if (meta && rv)
    json_object_set_new(meta, "resourceVersion", json_string(rv));
  char *meta_s = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(meta);
  k8s_normalize(obj, r->group, r->name);
  struct k8s_buf y = {0};
  char err[256];
  int rc = 1;
  if (!meta_s || k8s_yaml_emit(obj, 0, &y, err, sizeof(err)) != ENGINE_OK) {
    em->warn(em, item, meta_s ? err : "out of memory");
    rc = 0;
  } else {
    struct engine_item it = {.name = item,
                             .name_len = strlen(item),
                             .type = ENGINE_ITEM_STREAM,
                             .meta_json = meta_s,
                             .size = y.len};
    if (em->item_begin(em, &it) != ENGINE_OK || em->item_write(em, y.p, y.len) != ENGINE_OK ||
        em->item_end(em, ENGINE_OK, NULL, NULL) != ENGINE_OK)
      rc = -1;
    else
      b->items++;
  }
  /* Secrets' data lived in this buffer: wipe it */
  if (y.p)
    explicit_bzero(y.p, y.len);
  k8s_buf_free(&y);
  free(meta_s);
  free(item);
  return rc;
}

/* ---- lists ------------------------------------------------------------------------ */

enum { LIST_OK = 0, LIST_WARNED = 1, LIST_FATAL = -1 };

/* List one resource (in namespace ns, or across namespaces / cluster-wide
 * for NULL), page by page. each(b, r, api_version, item, seen) is called per
 * object; it returns -1 to stop. */
static int
list_resource(struct bk *b, const struct k8s_res *r, const char *ns, const char *selector,
              int (*each)(struct bk *, const struct k8s_res *, const char *, json_t *, json_t *),
              char **why_out) {
  const struct engine_host *h = b->h;
  char *base = k8s_res_path(r->group, r->version, r->name, ns, NULL);
  char *sel = selector ? k8s_urlenc(selector) : NULL;
  json_t *seen = json_object();
  char *cont = NULL;
  char *where = ns ? k8s_strf("%s in namespace %s", r->full, ns) : strdup(r->full);
  int rc = LIST_OK, restarts = 0;
  if (!base || !seen || !where || (selector && !sel)) {
    h->set_error(h, "out of memory");
    rc = LIST_FATAL;
  }
  while (rc == LIST_OK) {
    if (h->cancelled(h)) {
      h->set_error(h, "cancelled");
      rc = LIST_FATAL;
      break;
    }
    char *enc = cont ? k8s_urlenc(cont) : NULL;
    char *path = k8s_strf("%s?limit=%lld%s%s%s%s", base, (long long)b->in->page_size,
                          sel ? "&labelSelector=" : "", sel ? sel : "", enc ? "&continue=" : "",
                          enc ? enc : "");
    free(enc);
    struct k8s_resp resp;
    if (!path || k8s_request(&b->c, "GET", path, NULL, NULL, 0, -1, &resp) != ENGINE_OK) {
      free(path);
      rc = LIST_FATAL; /* no response at all: the message is set */
      break;
    }
    if (resp.status == 410 && cont && restarts < 3) {
      h->log(h, ENGINE_LOG_WARN,
             "the list of %s expired part-way (410 Gone: its continue token is too old); "
             "listing it again from the start",
             where);
      restarts++;
      free(cont);
      cont = NULL;
      free(path);
      k8s_resp_free(&resp);
      continue;
    }
    if (resp.status < 200 || resp.status > 299) {
      char *why = k8s_resp_reason(&resp);
      char *msg = k8s_strf("unable to list %s: GET %s%s: %s", where, b->c.cr.server, path,
                           why ? why : "error");
      if (why_out) {
        *why_out = msg;
        msg = NULL;
      } else {
        b->em->warn(b->em, where, msg ? msg : where);
      }
      free(msg);
      free(why);
      free(path);
      k8s_resp_free(&resp);
      rc = LIST_WARNED;
      break;
    }
    free(path);
    json_error_t je;
    json_t *doc = json_loadb(resp.body ? resp.body : "", resp.len, 0, &je);
    if (resp.body) /* it may hold Secrets */
      explicit_bzero(resp.body, resp.len);
    k8s_resp_free(&resp);
    if (!doc) {
      char *msg = k8s_strf("unable to list %s: the response is not JSON (%s)", where, je.text);
      b->em->warn(b->em, where, msg ? msg : where);
      free(msg);
      rc = LIST_WARNED;
      break;
    }
    const char *api = json_string_value(json_object_get(doc, "apiVersion"));
    char *fallback = *r->group ? k8s_strf("%s/%s", r->group, r->version) : strdup(r->version);
    json_t *md = json_object_get(doc, "metadata");
    const char *lrv = json_string_value(json_object_get(md, "resourceVersion"));
    if (lrv && !ns)
      json_object_set_new(b->rvs, r->full, json_string(lrv));
    else if (lrv) {
      char *k = k8s_strf("%s/%s", ns, r->full);
      if (k)
        json_object_set_new(b->rvs, k, json_string(lrv));
      free(k);
    }
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(doc, "items"), i, it) {
      if (each(b, r, api ? api : fallback, it, seen) < 0) {
        rc = LIST_FATAL;
        break;
      }
    }
    free(fallback);
    const char *next = json_string_value(json_object_get(md, "continue"));
    free(cont);
    cont = next && *next ? strdup(next) : NULL;
    json_decref(doc);
    if (!cont)
      break;
  }
  free(cont);
  free(base);
  free(sel);
  free(where);
  json_decref(seen);
  return rc;
}

static int each_emit(struct bk *b, const struct k8s_res *r, const char *api, json_t *obj,
                     json_t *seen) {
  return emit_object(b, r, api, obj, seen) < 0 ? -1 : 0;
}

/* cluster_resources auto: only the objects named in b->only */
static int each_needed(struct bk *b, const struct k8s_res *r, const char *api, json_t *obj,
                       json_t *seen) {
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  if (!name || !json_object_get(b->only, name))
    return 0;
  return emit_object(b, r, api, obj, seen) < 0 ? -1 : 0;
}

static int each_namespace(struct bk *b, const struct k8s_res *r, const char *api, json_t *obj,
                          json_t *seen) {
  (void)seen;
  const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
  struct k8s_inst *in = b->in;
  if (!name)
    return 0;
  if (in->n_namespaces && !k8s_glob_any(in->namespaces, in->n_namespaces, name))
    return 0;
  if (k8s_glob_any(in->exclude_namespaces, in->n_exclude_namespaces, name))
    return 0;
  if (!json_object_get(obj, "apiVersion"))
    json_object_set_new(obj, "apiVersion", json_string(api));
  if (!json_object_get(obj, "kind"))
    json_object_set_new(obj, "kind", json_string(r->kind));
  json_object_set(b->ns_obj, name, obj);
  return 0;
}

static int has_glob(const char *s) {
  return strpbrk(s, "*?[") != NULL;
}

static int cmp_str(const void *a, const void *c) {
  return strcmp(*(char *const *)a, *(char *const *)c);
}

/* The selected namespaces, from the list of namespaces (or, when that is
 * forbidden, the `namespaces` option's names if none is a glob). */
static int select_namespaces(struct bk *b) {
  const struct engine_host *h = b->h;
  struct k8s_inst *in = b->in;
  struct k8s_res nsres = {.group = "",
                          .version = "v1",
                          .name = "namespaces",
                          .kind = "Namespace",
                          .namespaced = 0,
                          .full = "namespaces"};
  b->all_ns = in->n_namespaces == 0 && in->n_exclude_namespaces == 0;
  char *why = NULL;
  int rc = list_resource(b, &nsres, NULL, NULL, each_namespace, &why);
  if (rc == LIST_FATAL) {
    free(why);
    return ENGINE_ERROR;
  }
  if (rc == LIST_WARNED) {
    int literal = in->n_namespaces > 0;
    for (size_t i = 0; i < in->n_namespaces; i++)
      literal = literal && !has_glob(in->namespaces[i]);
    if (!literal) {
      h->set_error(h,
                   "%s; name the namespaces one by one (no globs) in the 'namespaces' option to "
                   "back them up without the permission to list them",
                   why ? why : "unable to list the namespaces");
      free(why);
      return ENGINE_ERROR;
    }
    h->log(h, ENGINE_LOG_WARN, "%s; backing up the namespaces the 'namespaces' option names",
           why ? why : "unable to list the namespaces");
    b->all_ns = 0;
    json_object_clear(b->ns_obj);
    for (size_t i = 0; i < in->n_namespaces; i++)
      if (!k8s_glob_any(in->exclude_namespaces, in->n_exclude_namespaces, in->namespaces[i]))
        json_object_set_new(b->ns_obj, in->namespaces[i], json_null());
  }
  free(why);
  b->n_ns = json_object_size(b->ns_obj);
  b->ns = calloc(b->n_ns ? b->n_ns : 1, sizeof(char *));
  if (!b->ns) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  size_t i = 0;
  const char *k;
  json_t *v;
  json_object_foreach(b->ns_obj, k, v) b->ns[i++] = (char *)k;
  qsort(b->ns, b->n_ns, sizeof(char *), cmp_str);
  for (size_t j = 0; j < in->n_namespaces; j++)
    if (!has_glob(in->namespaces[j]) && !json_object_get(b->ns_obj, in->namespaces[j]) &&
        !k8s_glob_any(in->exclude_namespaces, in->n_exclude_namespaces, in->namespaces[j]))
      b->em->warn(b->em, in->namespaces[j],
                  "the namespace named in the 'namespaces' option does not exist");
  return ENGINE_OK;
}

/* ---- the run ------------------------------------------------------------------------ */

static int select_resources(struct bk *b) {
  struct k8s_inst *in = b->in;
  const struct engine_host *h = b->h;
  b->selected = calloc(b->res.n ? b->res.n : 1, 1);
  if (!b->selected) {
    h->set_error(h, "out of memory");
    return ENGINE_ERROR;
  }
  for (size_t i = 0; i < b->res.n; i++) {
    struct k8s_res *r = &b->res.v[i];
    const char *why = k8s_res_skipped(r);
    if (!why && !in->include_secrets && !*r->group && strcmp(r->name, "secrets") == 0)
      why = "include_secrets is false";
    if (!why && in->n_resources && !k8s_res_matches(in->resources, in->n_resources, r))
      why = "not named by 'resources'";
    if (!why && k8s_res_matches(in->exclude_resources, in->n_exclude_resources, r))
      why = "named by 'exclude_resources'";
    if (why)
      h->log(h, ENGINE_LOG_DEBUG, "resource %s: not backed up: %s", r->full, why);
    b->selected[i] = why == NULL;
  }
  for (size_t j = 0; j < in->n_resources; j++) {
    int any = 0;
    for (size_t i = 0; i < b->res.n && !any; i++)
      any = k8s_res_matches(&in->resources[j], 1, &b->res.v[i]);
    if (!any)
      b->em->warn(b->em, in->resources[j],
                  "the 'resources' entry matches no resource the API server serves");
  }
  return ENGINE_OK;
}

static const struct k8s_res *find_res(struct bk *b, const char *group, const char *name) {
  for (size_t i = 0; i < b->res.n; i++)
    if (strcmp(b->res.v[i].group, group) == 0 && strcmp(b->res.v[i].name, name) == 0)
      return &b->res.v[i];
  return NULL;
}

/* A resource that cluster_resources auto may add: excluded only by
 * exclude_resources. */
static int auto_allowed(struct bk *b, const struct k8s_res *r) {
  return r && !k8s_res_matches(b->in->exclude_resources, b->in->n_exclude_resources, r);
}

/* GET each named object of r and emit it (cluster_resources auto). */
static int emit_named(struct bk *b, const struct k8s_res *r, json_t *names) {
  const char *name;
  json_t *v;
  json_object_foreach(names, name, v) {
    char *path = k8s_res_path(r->group, r->version, r->name, NULL, name);
    json_t *obj = NULL;
    long status = 0;
    char *why = NULL;
    int rc = path ? k8s_fetch_json(&b->c, path, &obj, &status, &why) : ENGINE_ERROR;
    free(path);
    if (rc == ENGINE_OK) {
      char *api = *r->group ? k8s_strf("%s/%s", r->group, r->version) : strdup(r->version);
      int e = api ? emit_object(b, r, api, obj, NULL) : -1;
      free(api);
      json_decref(obj);
      if (e < 0)
        return ENGINE_ERROR;
    } else if (rc == ENGINE_NOT_FOUND) {
      char *msg =
          k8s_strf("%s %s is referenced by a backed-up object but does not exist", r->kind, name);
      b->h->log(b->h, ENGINE_LOG_WARN, "%s", msg ? msg : name);
      free(msg);
    } else if (status == 0) {
      if (why)
        b->h->set_error(b->h, "%s", why);
      free(why);
      return ENGINE_ERROR;
    } else {
      char *what = k8s_strf("_cluster/%s/%s", r->full, name);
      b->em->warn(b->em, what ? what : name, why ? why : "unable to read it");
      free(what);
    }
    free(why);
  }
  return ENGINE_OK;
}

static int cluster_auto(struct bk *b) {
  const struct k8s_res *nsr = find_res(b, "", "namespaces");
  if (auto_allowed(b, nsr)) {
    for (size_t i = 0; i < b->n_ns; i++) {
      json_t *o = json_object_get(b->ns_obj, b->ns[i]);
      if (json_is_object(o) && emit_object(b, nsr, "v1", o, NULL) < 0)
        return ENGINE_ERROR;
    }
  }
  /* The CRDs of the custom resources backed up: one list of the CRDs
   * (named RESOURCE.GROUP, as need_crd holds the resources of every
   * non-core group), not a GET per resource type */
  const struct k8s_res *crd = find_res(b, "apiextensions.k8s.io", "customresourcedefinitions");
  if (auto_allowed(b, crd) && json_object_size(b->need_crd) > 0) {
    b->only = b->need_crd;
    int lr = list_resource(b, crd, NULL, NULL, each_needed, NULL);
    b->only = NULL;
    if (lr == LIST_FATAL)
      return ENGINE_ERROR;
  }
  const struct k8s_res *pv = find_res(b, "", "persistentvolumes");
  if (auto_allowed(b, pv) && emit_named(b, pv, b->need_pv) != ENGINE_OK)
    return ENGINE_ERROR;
  const struct k8s_res *cr = find_res(b, "rbac.authorization.k8s.io", "clusterroles");
  if (auto_allowed(b, cr) && emit_named(b, cr, b->need_crole) != ENGINE_OK)
    return ENGINE_ERROR;
  return ENGINE_OK;
}

static int cluster_all(struct bk *b) {
  for (size_t i = 0; i < b->res.n; i++) {
    const struct k8s_res *r = &b->res.v[i];
    if (r->namespaced || !b->selected[i])
      continue;
    if (!*r->group && strcmp(r->name, "namespaces") == 0) { /* only the selected ones */
      for (size_t j = 0; j < b->n_ns; j++) {
        json_t *o = json_object_get(b->ns_obj, b->ns[j]);
        if (json_is_object(o) && emit_object(b, r, "v1", o, NULL) < 0)
          return ENGINE_ERROR;
      }
      continue;
    }
    if (list_resource(b, r, NULL, b->in->label_selector, each_emit, NULL) == LIST_FATAL)
      return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int run(struct bk *b) {
  const struct engine_host *h = b->h;
  struct k8s_inst *in = b->in;
  struct k8s_creds cr;
  if (k8s_creds_load(h, in->kubeconfig, in->context, in->sa_dir, &cr) != ENGINE_OK)
    return ENGINE_ERROR;
  if (k8s_client_init(&b->c, h, &cr, in->timeout_ms, in->connect_timeout_ms, in->max_retries,
                      in->exec_env, in->n_exec_env) != ENGINE_OK)
    return ENGINE_ERROR;
  h->log(h, ENGINE_LOG_INFO, "backing up %s (%s)", b->c.cr.server, b->c.cr.origin);
  json_t *ver = NULL;
  if (k8s_get_json(&b->c, "/version", "the API server's version", &ver, NULL) != ENGINE_OK)
    return ENGINE_ERROR;
  const char *gv = json_string_value(json_object_get(ver, "gitVersion"));
  json_t *gvs = json_string(gv ? gv : "unknown");
  char *mark = json_dumps(gvs, JSON_ENCODE_ANY);
  json_decref(gvs);
  json_decref(ver);
  if (!mark || b->em->mark(b->em, "server_version", mark) != ENGINE_OK) {
    free(mark);
    h->set_error(h, "unable to record the server version");
    return ENGINE_ERROR;
  }
  free(mark);
  if (k8s_discover(&b->c, &b->res, warn_cb, b) != ENGINE_OK)
    return ENGINE_ERROR;
  if (select_resources(b) != ENGINE_OK || select_namespaces(b) != ENGINE_OK)
    return ENGINE_ERROR;
  if (b->n_ns == 0)
    b->em->warn(b->em, "namespaces", "no namespace matches the 'namespaces' option");
  for (size_t i = 0; i < b->res.n; i++) {
    const struct k8s_res *r = &b->res.v[i];
    if (!r->namespaced || !b->selected[i])
      continue;
    if (b->all_ns) {
      if (list_resource(b, r, NULL, in->label_selector, each_emit, NULL) == LIST_FATAL)
        return ENGINE_ERROR;
      continue;
    }
    for (size_t j = 0; j < b->n_ns; j++)
      if (list_resource(b, r, b->ns[j], in->label_selector, each_emit, NULL) == LIST_FATAL)
        return ENGINE_ERROR;
  }
  if (in->cluster == K8S_CLUSTER_AUTO && cluster_auto(b) != ENGINE_OK)
    return ENGINE_ERROR;
  if (in->cluster == K8S_CLUSTER_ALL && cluster_all(b) != ENGINE_OK)
    return ENGINE_ERROR;
  json_t *nsl = json_array();
  for (size_t i = 0; i < b->n_ns; i++)
    json_array_append_new(nsl, json_string(b->ns[i]));
  char *rvs = json_dumps(b->rvs, JSON_COMPACT | JSON_SORT_KEYS);
  char *nss = json_dumps(nsl, JSON_COMPACT);
  json_decref(nsl);
  int ok = rvs && nss && b->em->mark(b->em, "resource_versions", rvs) == ENGINE_OK &&
           b->em->mark(b->em, "namespaces", nss) == ENGINE_OK;
  free(rvs);
  free(nss);
  if (!ok) {
    h->set_error(h, "unable to record the marks");
    return ENGINE_ERROR;
  }
  h->log(h, ENGINE_LOG_INFO,
         "%llu objects backed up, %llu left out (owned by controllers, token Secrets ...)",
         (unsigned long long)b->items, (unsigned long long)b->skipped);
  return ENGINE_OK;
}

int k8s_backup(void *inst, const struct engine_emitter *em) {
  struct bk b = {.in = inst, .h = ((struct k8s_inst *)inst)->h, .em = em};
  b.ns_obj = json_object();
  b.need_pv = json_object();
  b.need_crole = json_object();
  b.need_crd = json_object();
  b.rvs = json_object();
  int rc = ENGINE_ERROR;
  if (!b.ns_obj || !b.need_pv || !b.need_crole || !b.need_crd || !b.rvs)
    b.h->set_error(b.h, "out of memory");
  else
    rc = run(&b);
  k8s_client_free(&b.c);
  k8s_reslist_free(&b.res);
  free(b.selected);
  free(b.ns);
  json_decref(b.ns_obj);
  json_decref(b.need_pv);
  json_decref(b.need_crole);
  json_decref(b.need_crd);
  json_decref(b.rvs);
  return rc;
}
