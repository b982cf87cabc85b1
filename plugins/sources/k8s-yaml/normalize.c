/* What makes the YAML apply-ready and stable from run to run: objects that
 * are not backed up, and the fields dropped from the rest. Every rule here is
 * listed, with its reason, in docs/sources/k8s-yaml.md ("Normalisation"). */
#include <stdlib.h>
#include <string.h>

#include "k8s.h"

static int is(const char *a, const char *b) {
  return a && b && strcmp(a, b) == 0;
}

static const char *str_at(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

const char *k8s_object_skipped(json_t *obj, const char *group, const char *resource) {
  json_t *md = json_object_get(obj, "metadata");
  size_t i;
  json_t *ref;
  json_array_foreach(json_object_get(md, "ownerReferences"), i, ref) {
    if (json_is_true(json_object_get(ref, "controller")))
      return "owned by a controller, which recreates it";
  }
  if (!*group && is(resource, "secrets") &&
      is(str_at(obj, "type"), "kubernetes.io/service-account-token"))
    return "a service-account token Secret (the token controller makes a new one)";
  if (!*group && is(resource, "configmaps") && is(str_at(md, "name"), "kube-root-ca.crt"))
    return "published in every namespace by the root-CA controller";
  if (is(group, "apiregistration.k8s.io") &&
      json_object_get(json_object_get(md, "labels"), "kube-aggregator.kubernetes.io/automanaged"))
    return "an APIService the API server manages itself";
  return NULL;
}

/* Remove "creationTimestamp": null from every nested metadata (pod templates
 * of workloads carry one), depth-first. */
static void drop_null_timestamps(json_t *v, int depth) {
  if (depth > 64)
    return;
  if (json_is_object(v)) {
    json_t *ts = json_object_get(v, "creationTimestamp");
    if (ts && json_is_null(ts))
      json_object_del(v, "creationTimestamp");
    const char *k;
    json_t *c;
    json_object_foreach(v, k, c) drop_null_timestamps(c, depth + 1);
  } else if (json_is_array(v)) {
    size_t i;
    json_t *c;
    json_array_foreach(v, i, c) drop_null_timestamps(c, depth + 1);
  }
}

static void del_if_empty(json_t *parent, const char *key) {
  json_t *v = json_object_get(parent, key);
  if ((json_is_object(v) && json_object_size(v) == 0) ||
      (json_is_array(v) && json_array_size(v) == 0))
    json_object_del(parent, key);
}

/* The Service ports whose nodePort the user chose: those in the
 * last-applied-configuration (Velero's rule) or owned by a field manager in
 * managedFields (a server-side apply or an update that set it); the others
 * were assigned by the server, which owns nobody's. */
static json_t *applied_spec(json_t *md) {
  const char *la = str_at(json_object_get(md, "annotations"),
                          "kubectl.kubernetes.io/last-applied-configuration");
  if (!la)
    return NULL;
  json_t *j = json_loads(la, 0, NULL);
  json_t *spec = json_incref(json_object_get(j, "spec"));
  json_decref(j);
  return spec;
}

/* Does a manager own spec.ports[port].nodePort (key NULL) or spec.<key>? */
static int owned(json_t *md, json_t *port, const char *key) {
  size_t i;
  json_t *mf;
  json_array_foreach(json_object_get(md, "managedFields"), i, mf) {
    json_t *spec = json_object_get(json_object_get(mf, "fieldsV1"), "f:spec");
    if (key) {
      if (json_object_get(spec, key))
        return 1;
      continue;
    }
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(spec, "f:ports"), k, v) {
      if (strncmp(k, "k:", 2) != 0 || !json_object_get(v, "f:nodePort"))
        continue;
      json_t *id = json_loads(k + 2, 0, NULL);
      json_t *proto = json_object_get(port, "protocol");
      const char *pid = json_string_value(json_object_get(id, "protocol"));
      int same = json_integer_value(json_object_get(id, "port")) ==
                     json_integer_value(json_object_get(port, "port")) &&
                 (!pid || !proto || strcmp(pid, json_string_value(proto)) == 0);
      json_decref(id);
      if (same)
        return 1;
    }
  }
  return 0;
}

static int port_chosen(json_t *md, json_t *aspec, json_t *port) {
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(aspec, "ports"), i, p) {
    if (json_integer_value(json_object_get(p, "port")) ==
            json_integer_value(json_object_get(port, "port")) &&
        json_object_get(p, "nodePort"))
      return 1;
  }
  return owned(md, port, NULL);
}

static void normalize_service(json_t *obj, json_t *md, json_t *aspec) {
  json_t *spec = json_object_get(obj, "spec");
  if (!spec)
    return;
  /* "None" is the user's (a headless service); an address is the allocator's */
  if (!is(str_at(spec, "clusterIP"), "None")) {
    json_object_del(spec, "clusterIP");
    json_object_del(spec, "clusterIPs");
  }
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(spec, "ports"), i, p) {
    if (json_object_get(p, "nodePort") && !port_chosen(md, aspec, p))
      json_object_del(p, "nodePort");
  }
  if (json_object_get(spec, "healthCheckNodePort") &&
      !json_object_get(aspec, "healthCheckNodePort") && !owned(md, NULL, "f:healthCheckNodePort"))
    json_object_del(spec, "healthCheckNodePort");
}

static void drop_keys(json_t *o, const char *const *keys) {
  for (size_t i = 0; o && keys[i]; i++)
    json_object_del(o, keys[i]);
}

static const char *const job_labels[] = {"controller-uid", "batch.kubernetes.io/controller-uid",
                                         "job-name", "batch.kubernetes.io/job-name", NULL};

static void normalize_job(json_t *obj) {
  json_t *spec = json_object_get(obj, "spec");
  if (json_is_true(json_object_get(spec, "manualSelector")))
    return; /* the user's selector and labels */
  json_object_del(spec, "selector");
  json_t *tl =
      json_object_get(json_object_get(json_object_get(spec, "template"), "metadata"), "labels");
  drop_keys(tl, job_labels);
  del_if_empty(json_object_get(json_object_get(spec, "template"), "metadata"), "labels");
  json_t *md = json_object_get(obj, "metadata");
  drop_keys(json_object_get(md, "labels"), job_labels);
  del_if_empty(md, "labels");
}

/* The service-account token volume the admission plugin adds
 * (kube-api-access-*), and its mounts. */
static void normalize_pod_spec(json_t *spec) {
  json_object_del(spec, "nodeName");
  json_object_del(spec, "priority");
  json_t *vols = json_object_get(spec, "volumes");
  for (size_t i = json_array_size(vols); i-- > 0;) {
    const char *n = str_at(json_array_get(vols, i), "name");
    if (n && strncmp(n, "kube-api-access-", 16) == 0)
      json_array_remove(vols, i);
  }
  del_if_empty(spec, "volumes");
  const char *lists[] = {"containers", "initContainers", "ephemeralContainers", NULL};
  for (size_t l = 0; lists[l]; l++) {
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(spec, lists[l]), i, c) {
      json_t *m = json_object_get(c, "volumeMounts");
      for (size_t j = json_array_size(m); j-- > 0;) {
        const char *n = str_at(json_array_get(m, j), "name");
        if (n && strncmp(n, "kube-api-access-", 16) == 0)
          json_array_remove(m, j);
      }
      del_if_empty(c, "volumeMounts");
    }
  }
}

void k8s_normalize(json_t *obj, const char *group, const char *resource) {
  static const char *const md_drop[] = {"uid",
                                        "resourceVersion",
                                        "generation",
                                        "creationTimestamp",
                                        "managedFields",
                                        "selfLink",
                                        "deletionTimestamp",
                                        "deletionGracePeriodSeconds",
                                        "ownerReferences",
                                        NULL};
  static const char *const ann_drop[] = {"kubectl.kubernetes.io/last-applied-configuration",
                                         "deployment.kubernetes.io/revision",
                                         "pv.kubernetes.io/bind-completed",
                                         "pv.kubernetes.io/bound-by-controller",
                                         "volume.kubernetes.io/selected-node",
                                         "volume.beta.kubernetes.io/storage-provisioner",
                                         "volume.kubernetes.io/storage-provisioner",
                                         NULL};
  json_t *md = json_object_get(obj, "metadata");
  int core = !*group;
  if (core && is(resource, "services")) { /* reads the annotation and managedFields */
    json_t *aspec = applied_spec(md);
    normalize_service(obj, md, aspec);
    json_decref(aspec);
  }
  json_object_del(obj, "status");
  drop_keys(md, md_drop);
  drop_keys(json_object_get(md, "annotations"), ann_drop);
  del_if_empty(md, "annotations");
  drop_null_timestamps(obj, 0);
  if (core && is(resource, "namespaces")) {
    json_t *labels = json_object_get(md, "labels");
    json_object_del(labels, "kubernetes.io/metadata.name");
    del_if_empty(md, "labels");
    json_t *spec = json_object_get(obj, "spec");
    json_t *fin = json_object_get(spec, "finalizers");
    if (json_array_size(fin) == 1 && is(json_string_value(json_array_get(fin, 0)), "kubernetes"))
      json_object_del(spec, "finalizers");
    del_if_empty(obj, "spec");
  } else if (core && is(resource, "persistentvolumes")) {
    json_t *cref = json_object_get(json_object_get(obj, "spec"), "claimRef");
    json_object_del(cref, "uid");
    json_object_del(cref, "resourceVersion");
  } else if (core && is(resource, "serviceaccounts")) {
    const char *name = str_at(md, "name");
    json_t *secrets = json_object_get(obj, "secrets");
    char *prefix = name ? k8s_strf("%s-token-", name) : NULL;
    for (size_t i = json_array_size(secrets); prefix && i-- > 0;) {
      const char *s = str_at(json_array_get(secrets, i), "name");
      if (s && strncmp(s, prefix, strlen(prefix)) == 0)
        json_array_remove(secrets, i);
    }
    free(prefix);
    del_if_empty(obj, "secrets");
  } else if (core && is(resource, "pods")) {
    json_t *spec = json_object_get(obj, "spec");
    if (spec)
      normalize_pod_spec(spec);
  } else if (is(group, "batch") && is(resource, "jobs")) {
    normalize_job(obj);
  }
}

/* Any field named "namespace" whose value is `from` (metadata.namespace,
 * RoleBinding subjects, a PV's claimRef, webhook service references ...),
 * except inside the data of ConfigMaps and Secrets. */
static void map_ns(json_t *v, const char *from, const char *to, int depth, int top_data) {
  if (depth > 64)
    return;
  if (json_is_object(v)) {
    const char *k;
    json_t *c;
    json_object_foreach(v, k, c) {
      if (depth == 0 && top_data && (is(k, "data") || is(k, "stringData") || is(k, "binaryData")))
        continue;
      if (is(k, "namespace") && is(json_string_value(c), from))
        json_object_set_new(v, k, json_string(to));
      else
        map_ns(c, from, to, depth + 1, top_data);
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *c;
    json_array_foreach(v, i, c) map_ns(c, from, to, depth + 1, top_data);
  }
}

void k8s_map_namespace(json_t *obj, const char *group, const char *resource, const char *from,
                       const char *to) {
  int data = !*group && (is(resource, "configmaps") || is(resource, "secrets"));
  map_ns(obj, from, to, 0, data);
  json_t *md = json_object_get(obj, "metadata");
  if (!*group && is(resource, "namespaces") && is(str_at(md, "name"), from))
    json_object_set_new(md, "name", json_string(to));
}
