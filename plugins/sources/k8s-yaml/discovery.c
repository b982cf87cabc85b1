/* Discovery: every served group, at its preferred version, and the
 * resources there that can be listed (/api, /api/v1, /apis, /apis/G/V), so
 * custom resources are found without configuration. Subresources
 * ("deployments/scale") and resources without the list verb (bindings,
 * tokenreviews) are left out. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s.h"

void k8s_reslist_free(struct k8s_reslist *l) {
  for (size_t i = 0; i < l->n; i++) {
    struct k8s_res *r = &l->v[i];
    free(r->group);
    free(r->version);
    free(r->name);
    free(r->kind);
    free(r->full);
  }
  free(l->v);
  memset(l, 0, sizeof(*l));
}

char *k8s_res_path(const char *group, const char *version, const char *resource, const char *ns,
                   const char *name) {
  struct k8s_buf b = {0};
  if (group && *group)
    k8s_buf_printf(&b, "/apis/%s/%s", group, version);
  else
    k8s_buf_printf(&b, "/api/%s", version);
  if (ns) {
    char *e = k8s_urlenc(ns);
    k8s_buf_printf(&b, "/namespaces/%s", e ? e : "");
    free(e);
  }
  k8s_buf_printf(&b, "/%s", resource);
  if (name) {
    char *e = k8s_urlenc(name);
    k8s_buf_printf(&b, "/%s", e ? e : "");
    free(e);
  }
  if (b.oom) {
    k8s_buf_free(&b);
    return NULL;
  }
  return b.p;
}

int k8s_res_matches(char *const *globs, size_t n, const struct k8s_res *r) {
  for (size_t i = 0; i < n; i++) {
    if (fnmatch(globs[i], r->full, 0) == 0)
      return 1;
    if (!strchr(globs[i], '.') && fnmatch(globs[i], r->name, 0) == 0)
      return 1;
  }
  return 0;
}

/* What is never backed up: objects controllers and the API server make and
 * remake, and what describes nodes or the server itself
 * (docs/sources/k8s-yaml.md lists them with the reasons). */
const char *k8s_res_skipped(const struct k8s_res *r) {
  static const struct {
    const char *full, *why;
  } skip[] = {
      {"events", "events are a log, recreated by controllers"},
      {"events.events.k8s.io", "events are a log, recreated by controllers"},
      {"endpoints", "kept up to date by the endpoints controller from Services"},
      {"endpointslices.discovery.k8s.io", "kept up to date by the EndpointSlice controller"},
      {"leases.coordination.k8s.io", "leader-election and node heartbeats"},
      {"nodes", "nodes register themselves"},
      {"csinodes.storage.k8s.io", "written by the kubelet of each node"},
      {"volumeattachments.storage.k8s.io", "written by the attach/detach controller"},
      {"componentstatuses", "a live status, not an object"},
      {"controllerrevisions.apps", "history kept by the StatefulSet and DaemonSet controllers"},
      {"ipaddresses.networking.k8s.io", "Service IP allocations made by the API server"},
      {"storageversions.internal.apiserver.k8s.io", "the API server's own bookkeeping"},
      {"certificatesigningrequests.certificates.k8s.io", "short-lived and tied to their signer"},
      {"podcertificaterequests.certificates.k8s.io", "short-lived and tied to their signer"},
      {NULL, NULL},
  };
  for (size_t i = 0; skip[i].full; i++)
    if (strcmp(r->full, skip[i].full) == 0)
      return skip[i].why;
  if (strcmp(r->group, "metrics.k8s.io") == 0)
    return "live usage figures of the metrics server";
  return NULL;
}

static int add_resources(struct k8s_reslist *l, const char *group, const char *version,
                         json_t *doc) {
  json_t *res = json_object_get(doc, "resources");
  size_t i;
  json_t *r;
  json_array_foreach(res, i, r) {
    const char *name = json_string_value(json_object_get(r, "name"));
    const char *kind = json_string_value(json_object_get(r, "kind"));
    if (!name || !kind || strchr(name, '/'))
      continue;
    int listable = 0;
    size_t j;
    json_t *v;
    json_array_foreach(json_object_get(r, "verbs"), j, v) {
      const char *s = json_string_value(v);
      if (s && strcmp(s, "list") == 0)
        listable = 1;
    }
    if (!listable)
      continue;
    /* the same resource at two places (a group served twice) is kept once */
    int dup = 0;
    for (size_t k = 0; k < l->n && !dup; k++)
      dup = strcmp(l->v[k].group, group) == 0 && strcmp(l->v[k].name, name) == 0;
    if (dup)
      continue;
    struct k8s_res *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (!nv)
      return ENGINE_ERROR;
    l->v = nv;
    struct k8s_res *e = &l->v[l->n++];
    e->group = strdup(group);
    e->version = strdup(version);
    e->name = strdup(name);
    e->kind = strdup(kind);
    e->namespaced = json_is_true(json_object_get(r, "namespaced"));
    e->full = *group ? k8s_strf("%s.%s", name, group) : strdup(name);
    if (!e->group || !e->version || !e->name || !e->kind || !e->full)
      return ENGINE_ERROR;
  }
  return ENGINE_OK;
}

static int cmp_res(const void *a, const void *b) {
  const struct k8s_res *x = a, *y = b;
  int c = strcmp(x->group, y->group);
  return c ? c : strcmp(x->name, y->name);
}

int k8s_discover(struct k8s_client *c, struct k8s_reslist *out,
                 void (*warn)(void *ud, const char *what, const char *why), void *ud) {
  const struct engine_host *h = c->h;
  memset(out, 0, sizeof(*out));
  json_t *doc = NULL;
  if (k8s_get_json(c, "/api/v1", "discovery of the core API", &doc, NULL) != ENGINE_OK) {
    if (!doc)
      h->set_error(h, "discovery: the API server does not serve /api/v1");
    return ENGINE_ERROR;
  }
  int rc = add_resources(out, "", "v1", doc);
  json_decref(doc);
  json_t *groups = NULL;
  if (rc == ENGINE_OK &&
      k8s_get_json(c, "/apis", "discovery of the API groups", &groups, NULL) != ENGINE_OK)
    rc = ENGINE_ERROR;
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(groups, "groups"), i, g) {
    if (rc != ENGINE_OK)
      break;
    const char *name = json_string_value(json_object_get(g, "name"));
    json_t *pv = json_object_get(g, "preferredVersion");
    const char *ver = json_string_value(json_object_get(pv, "version"));
    if (!ver) /* no preferred version: the first one listed */
      ver = json_string_value(
          json_object_get(json_array_get(json_object_get(g, "versions"), 0), "version"));
    if (!name || !ver)
      continue;
    char *path = k8s_strf("/apis/%s/%s", name, ver);
    char *what = k8s_strf("discovery of %s/%s", name, ver);
    if (!path || !what) {
      free(path);
      free(what);
      rc = ENGINE_ERROR;
      break;
    }
    json_t *gv = NULL;
    char *why = NULL;
    int r = k8s_fetch_json(c, path, &gv, NULL, &why);
    if (r == ENGINE_OK) {
      rc = add_resources(out, name, ver, gv);
    } else {
      /* an aggregated API that is down (metrics.k8s.io without its server):
       * kubectl warns and goes on, so does the backup */
      char *msg = k8s_strf("%s: %s", what,
                           r == ENGINE_NOT_FOUND ? "listed in /apis but not served (404)"
                                                 : (why ? why : "failed"));
      warn(ud, path + 6, msg ? msg : what);
      free(msg);
    }
    free(why);
    json_decref(gv);
    free(path);
    free(what);
  }
  json_decref(groups);
  if (rc != ENGINE_OK) {
    k8s_reslist_free(out);
    return ENGINE_ERROR;
  }
  qsort(out->v, out->n, sizeof(*out->v), cmp_res);
  return ENGINE_OK;
}
