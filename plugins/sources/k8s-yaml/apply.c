/* Restoring to a cluster: objects in dependency order, each by server-side
 * apply (PATCH, Content-Type application/apply-patch+yaml, fieldManager
 * engine; force only when the operator confirmed with --yes).
 *
 * Order (Velero's is the model): CustomResourceDefinitions, then a wait
 * until each is Established; namespaces; cluster-wide classes; cluster RBAC;
 * PersistentVolumes, PersistentVolumeClaims; ServiceAccounts, Secrets,
 * ConfigMaps, LimitRanges, ResourceQuotas; namespaced RBAC; Services; the
 * workloads and everything else; admission webhooks and APIServices last
 * (a webhook whose backend is not running yet would refuse what follows).
 *
 * Existing objects are left alone and reported (GET first), unless the
 * restore updates them (--drop-existing): so a second run applies nothing.
 *
 * On an engine whose HTTP client cannot send a PATCH body (engine/host.h
 * without ENGINE_HTTP_EXT_MINOR) objects are created with POST instead (an existing one answers 409
 * and is reported as existing) and updated with PUT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s.h"

#define FIELD_MANAGER "engine"

int k8s_apply_priority(const char *group, const char *resource) {
  static const struct {
    const char *group, *resource;
    int prio;
  } order[] = {
      {"apiextensions.k8s.io", "customresourcedefinitions", 0},
      {"", "namespaces", 1},
      {"storage.k8s.io", "storageclasses", 2},
      {"scheduling.k8s.io", "priorityclasses", 2},
      {"node.k8s.io", "runtimeclasses", 2},
      {"networking.k8s.io", "ingressclasses", 2},
      {"rbac.authorization.k8s.io", "clusterroles", 3},
      {"rbac.authorization.k8s.io", "clusterrolebindings", 3},
      {"", "persistentvolumes", 4},
      {"", "persistentvolumeclaims", 5},
      {"", "serviceaccounts", 6},
      {"", "secrets", 7},
      {"", "configmaps", 8},
      {"", "limitranges", 9},
      {"", "resourcequotas", 9},
      {"rbac.authorization.k8s.io", "roles", 10},
      {"rbac.authorization.k8s.io", "rolebindings", 10},
      {"", "services", 11},
      {"admissionregistration.k8s.io", "mutatingwebhookconfigurations", 14},
      {"admissionregistration.k8s.io", "validatingwebhookconfigurations", 14},
      {"admissionregistration.k8s.io", "validatingadmissionpolicies", 14},
      {"admissionregistration.k8s.io", "validatingadmissionpolicybindings", 14},
      {"admissionregistration.k8s.io", "mutatingadmissionpolicies", 14},
      {"admissionregistration.k8s.io", "mutatingadmissionpolicybindings", 14},
      {"apiregistration.k8s.io", "apiservices", 14},
      {NULL, NULL, 0},
  };
  for (size_t i = 0; order[i].group; i++)
    if (strcmp(order[i].group, group) == 0 && strcmp(order[i].resource, resource) == 0)
      return order[i].prio;
  return 12;
}

struct ap {
  struct k8s_client *c;
  const struct engine_host *h;
  const struct k8s_apply_opts *o;
  struct k8s_buf failures; /* "item: why" lines for the error */
  long failed;
  size_t applied, skipped, unchecked;
  json_t *created_ns, *created_crd; /* what this restore creates (for dry runs) */
  json_t *ns_known;                 /* namespaces that exist (or were made) */
};

static void failure(struct ap *a, const char *item, const char *why) {
  a->h->log(a->h, ENGINE_LOG_ERROR, "%s: not restored: %s", item, why);
  if (a->failed < 20)
    k8s_buf_printf(&a->failures, "%s%s (%s)", a->failed ? "; " : "", item, why);
  else if (a->failed == 20)
    k8s_buf_str(&a->failures, "; ...");
  a->failed++;
}

static char *query(const struct ap *a, int apply) {
  return k8s_strf("?fieldManager=" FIELD_MANAGER "%s%s", apply && a->o->force ? "&force=true" : "",
                  a->o->dry_run ? "&dryRun=All" : "");
}

/* In a dry run nothing is created, so objects in a namespace (or of a CRD)
 * that the same restore would create cannot be checked by the server. */
static int dry_unchecked(struct ap *a, const struct k8s_apply_obj *ob, long status) {
  if (!a->o->dry_run || status != 404)
    return 0;
  if (ob->ns && json_object_get(a->created_ns, ob->ns))
    return 1;
  char *crd = k8s_strf("%s.%s", ob->resource, ob->group);
  int r = crd && json_object_get(a->created_crd, crd);
  free(crd);
  return r;
}

static void note_created(struct ap *a, const struct k8s_apply_obj *ob) {
  if (!*ob->group && strcmp(ob->resource, "namespaces") == 0)
    json_object_set_new(a->created_ns, ob->objname, json_true());
  if (strcmp(ob->group, "apiextensions.k8s.io") == 0 &&
      strcmp(ob->resource, "customresourcedefinitions") == 0)
    json_object_set_new(a->created_crd, ob->objname, json_true());
}

static void answer_failure(struct ap *a, const struct k8s_apply_obj *ob, const char *verb,
                           struct k8s_resp *r) {
  if (dry_unchecked(a, ob, r->status)) {
    a->h->log(a->h, ENGINE_LOG_INFO,
              "%s: not checked by the dry run (its namespace or definition is created by this "
              "restore)",
              ob->name);
    a->unchecked++;
    return;
  }
  char *why = k8s_resp_reason(r);
  const char *hint = "";
  if (r->status == 409 && !a->o->force)
    hint = " (other field managers own fields this restore sets; restore with --drop-existing "
           "--yes to take them over)";
  else if (r->status == 404 && *ob->group && why && strstr(why, "could not find the requested"))
    hint = " (the cluster does not serve this resource: restore its CustomResourceDefinition "
           "first, or install the operator that defines it)";
  char *msg = k8s_strf("%s %s%s", verb, why ? why : "error", hint);
  failure(a, ob->name, msg ? msg : verb);
  free(msg);
  free(why);
}

/* 0: done (applied, skipped or failed and recorded), -1: stop. */
static int apply_one(struct ap *a, const struct k8s_apply_obj *ob, json_t *obj) {
  struct k8s_client *c = a->c;
  char *path = k8s_res_path(ob->group, ob->version, ob->resource, ob->ns, ob->objname);
  char *q = query(a, 1);
  char *body = json_dumps(obj, JSON_COMPACT);
  int rc = 0;
  struct k8s_resp r = {0};
  if (!path || !q || !body) {
    a->h->set_error(a->h, "out of memory");
    rc = -1;
    goto out;
  }
  if (!a->o->update) {
    if (k8s_request(c, "GET", path, NULL, NULL, 0, -1, &r) != ENGINE_OK) {
      rc = -1;
      goto out;
    }
    if (r.status >= 200 && r.status <= 299) {
      a->h->log(a->h, ENGINE_LOG_INFO, "%s: exists, left as it is", ob->name);
      a->skipped++;
      goto out;
    }
    if (r.status != 404) {
      answer_failure(a, ob, "GET", &r);
      goto out;
    }
    k8s_resp_free(&r);
  }
  if (c->can_patch) {
    char *url = k8s_strf("%s%s", path, q);
    int hr = url ? k8s_request(c, "PATCH", url, "application/apply-patch+yaml", body, strlen(body),
                               -1, &r)
                 : ENGINE_ERROR;
    free(url);
    if (hr != ENGINE_OK) {
      rc = -1;
      goto out;
    }
    if (r.status >= 200 && r.status <= 299) {
      a->applied++;
      note_created(a, ob);
    } else {
      answer_failure(a, ob, "server-side apply:", &r);
    }
    goto out;
  }
  /* create (and replace) on an engine without PATCH bodies */
  char *coll = k8s_res_path(ob->group, ob->version, ob->resource, ob->ns, NULL);
  char *q2 = query(a, 0);
  char *url = coll && q2 ? k8s_strf("%s%s", coll, q2) : NULL;
  free(coll);
  int hr = url ? k8s_request(c, "POST", url, "application/json", body, strlen(body), -1, &r)
               : ENGINE_ERROR;
  free(url);
  if (hr != ENGINE_OK) {
    free(q2);
    rc = -1;
    goto out;
  }
  if (r.status == 409 && a->o->update) {
    /* exists: replace it, at its current resourceVersion */
    k8s_resp_free(&r);
    json_t *cur = NULL;
    long st = 0;
    char *why = NULL;
    int g = k8s_fetch_json(c, path, &cur, &st, &why);
    if (g == ENGINE_OK) {
      json_t *rv = json_object_get(json_object_get(cur, "metadata"), "resourceVersion");
      json_t *md = json_object_get(obj, "metadata");
      if (json_is_string(rv) && json_is_object(md))
        json_object_set(md, "resourceVersion", rv);
      free(body);
      body = json_dumps(obj, JSON_COMPACT);
      char *purl = k8s_strf("%s%s", path, q2);
      hr = purl && body
               ? k8s_request(c, "PUT", purl, "application/json", body, strlen(body), -1, &r)
               : ENGINE_ERROR;
      free(purl);
      if (hr != ENGINE_OK)
        rc = -1;
      else if (r.status >= 200 && r.status <= 299)
        a->applied++;
      else
        answer_failure(a, ob, "PUT", &r);
    } else {
      if (st == 0)
        rc = -1;
      else
        failure(a, ob->name, why ? why : "GET failed");
    }
    json_decref(cur);
    free(why);
  } else if (r.status == 409) {
    a->h->log(a->h, ENGINE_LOG_INFO, "%s: exists, left as it is", ob->name);
    a->skipped++;
  } else if (r.status >= 200 && r.status <= 299) {
    a->applied++;
    note_created(a, ob);
  } else {
    answer_failure(a, ob, "POST", &r);
  }
  free(q2);
out:
  k8s_resp_free(&r);
  free(path);
  free(q);
  if (body)
    explicit_bzero(body, strlen(body));
  free(body);
  return rc;
}

/* A namespaced object whose namespace does not exist (the restore does not
 * hold its Namespace: --only one namespace, cluster_resources none): make a
 * bare one first, as Velero does. -1: stop. */
static int ensure_namespace(struct ap *a, const char *ns) {
  if (json_object_get(a->ns_known, ns) || json_object_get(a->created_ns, ns))
    return 0;
  struct k8s_client *c = a->c;
  char *path = k8s_res_path("", "v1", "namespaces", NULL, ns);
  struct k8s_resp r = {0};
  if (!path || k8s_request(c, "GET", path, NULL, NULL, 0, -1, &r) != ENGINE_OK) {
    free(path);
    return -1;
  }
  json_object_set_new(a->ns_known, ns, json_true());
  long st = r.status;
  k8s_resp_free(&r);
  if (st != 404 || a->o->dry_run) {
    if (st == 404) /* a dry run cannot check objects of a namespace it does not make */
      json_object_set_new(a->created_ns, ns, json_true());
    free(path);
    return 0;
  }
  json_t *obj = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                          "metadata", "name", ns);
  char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  char *url = c->can_patch ? k8s_strf("%s?fieldManager=" FIELD_MANAGER, path)
                           : strdup("/api/v1/namespaces?fieldManager=" FIELD_MANAGER);
  int hr = body && url
               ? k8s_request(c, c->can_patch ? "PATCH" : "POST", url,
                             c->can_patch ? "application/apply-patch+yaml" : "application/json",
                             body, strlen(body), -1, &r)
               : ENGINE_ERROR;
  free(body);
  free(url);
  free(path);
  if (hr != ENGINE_OK)
    return -1;
  if (r.status >= 200 && r.status <= 299) {
    a->h->log(a->h, ENGINE_LOG_WARN,
              "namespace %s did not exist and this restore does not hold it: created it empty", ns);
  } else {
    char *why = k8s_resp_reason(&r);
    a->h->log(a->h, ENGINE_LOG_WARN, "namespace %s does not exist and cannot be created: %s", ns,
              why ? why : "error");
    free(why);
  }
  k8s_resp_free(&r);
  return 0;
}

/* Wait until every CRD this restore applied is Established. */
static int wait_established(struct ap *a, struct k8s_apply_obj *objs, size_t n) {
  const struct engine_host *h = a->h;
  int64_t deadline = h->now_ms(h) + a->o->crd_wait_ms;
  for (size_t i = 0; i < n; i++) {
    struct k8s_apply_obj *ob = &objs[i];
    if (strcmp(ob->group, "apiextensions.k8s.io") != 0 ||
        strcmp(ob->resource, "customresourcedefinitions") != 0)
      continue;
    char *path = k8s_res_path(ob->group, ob->version, ob->resource, NULL, ob->objname);
    int done = 0;
    while (path && !done) {
      json_t *crd = NULL;
      long st = 0;
      char *why = NULL;
      int rc = k8s_fetch_json(a->c, path, &crd, &st, &why);
      free(why);
      if (rc == ENGINE_ERROR && st == 0) {
        free(path);
        return -1;
      }
      size_t k;
      json_t *cond;
      json_array_foreach(json_object_get(json_object_get(crd, "status"), "conditions"), k, cond) {
        const char *type = json_string_value(json_object_get(cond, "type"));
        const char *s = json_string_value(json_object_get(cond, "status"));
        if (type && s && strcmp(type, "Established") == 0 && strcmp(s, "True") == 0)
          done = 1;
      }
      json_decref(crd);
      if (done)
        break;
      if (h->now_ms(h) > deadline) {
        char *msg = k8s_strf("the CustomResourceDefinition %s is not Established after %lld s "
                             "(crd_wait); its custom resources may fail",
                             ob->objname, (long long)(a->o->crd_wait_ms / 1000));
        failure(a, ob->name, msg ? msg : "not Established");
        free(msg);
        break;
      }
      if (h->sleep_ms(h, 500) != ENGINE_OK) {
        free(path);
        h->set_error(h, "cancelled");
        return -1;
      }
    }
    free(path);
  }
  return 0;
}

long k8s_apply_all(struct k8s_client *c, struct k8s_apply_obj *objs, size_t n,
                   const struct k8s_apply_opts *o,
                   int (*read)(void *ud, size_t off, size_t len, char *buf), void *ud,
                   size_t *applied, size_t *skipped) {
  struct ap a = {.c = c, .h = c->h, .o = o};
  a.created_ns = json_object();
  a.created_crd = json_object();
  a.ns_known = json_object();
  long rc = 0;
  int crds_waited = 0;
  for (size_t i = 0; i < n && rc >= 0; i++) {
    struct k8s_apply_obj *ob = &objs[i];
    if (!crds_waited && ob->prio > 0) {
      crds_waited = 1;
      if (!o->dry_run && wait_established(&a, objs, i) < 0) {
        rc = -1;
        break;
      }
    }
    if (c->h->cancelled(c->h)) {
      c->h->set_error(c->h, "cancelled");
      rc = -1;
      break;
    }
    char *text = malloc(ob->len + 1);
    if (!text || read(ud, ob->off, ob->len, text) != 0) {
      free(text);
      c->h->set_error(c->h, "unable to read back the restore spool");
      rc = -1;
      break;
    }
    text[ob->len] = '\0';
    json_t *obj = json_loadb(text, ob->len, 0, NULL);
    explicit_bzero(text, ob->len);
    free(text);
    if (!obj) {
      failure(&a, ob->name, "the spooled object is not JSON");
      continue;
    }
    if ((ob->ns && ensure_namespace(&a, ob->ns) < 0) || apply_one(&a, ob, obj) < 0)
      rc = -1;
    json_decref(obj);
  }
  if (rc >= 0 && !crds_waited && !o->dry_run && wait_established(&a, objs, n) < 0)
    rc = -1;
  *applied = a.applied;
  *skipped = a.skipped;
  if (rc >= 0) {
    /* existing objects left alone are reported (named one by one with -v) */
    c->h->log(c->h, a.skipped && !o->update ? ENGINE_LOG_WARN : ENGINE_LOG_INFO,
              "%s%zu object(s) %s, %zu left as they were (they exist; -v names them, "
              "--drop-existing --yes updates them), %zu not checked, %ld failed",
              o->dry_run ? "dry run (dryRun=All, nothing changed): " : "", a.applied,
              o->dry_run ? "accepted by the server" : "applied", a.skipped, a.unchecked, a.failed);
    if (a.failed) {
      c->h->set_error(c->h, "%ld object(s) could not be restored: %s", a.failed,
                      a.failures.p ? a.failures.p : "");
      rc = a.failed;
    }
  }
  k8s_buf_free(&a.failures);
  json_decref(a.created_ns);
  json_decref(a.created_crd);
  json_decref(a.ns_known);
  return rc;
}
