#!/usr/bin/env python3
"""A Kubernetes API server stand-in for the k8s-yaml tests (standard library
only). No kube-apiserver, k3s or kwok can run on the test machines; this
serves what a client of the API sees, well enough for kubectl, the Python
client and the engine:

    k8s_fixture.py serve --port-file F [--port N] [--tls DIR] [--client-ca]
                         [--token TOKEN]... [--seed realistic|empty]
                         [--bulk N] [--forbid RESOURCE]... [--log FILE]
    k8s_fixture.py certs DIR     a CA, a server certificate for 127.0.0.1 and
                                 localhost, a client certificate
                                 (CN=engine-backup) and a second, unrelated CA
                                 (other-ca.crt), with openssl

What it serves:
  * discovery: /version, /api, /api/v1, /apis, /apis/GROUP, /apis/GROUP/VERSION
    from the real documents of tests/servers/k8s-discovery (published by the
    Kubernetes project), plus the groups of the CustomResourceDefinitions in
    its store, as a real server adds them;
  * a store of objects (a realistic cluster with --seed realistic: system and
    three application namespaces, Deployments with their ReplicaSets and Pods,
    a StatefulSet, a DaemonSet, a CronJob with a Job and its Pod, Services,
    ConfigMaps, Secrets, ServiceAccounts, RBAC, PVCs bound to PVs, a CRD with
    custom resources, Events, Endpoints, EndpointSlices, Leases; --bulk N adds
    N ConfigMaps in the namespace `bulk`);
  * GET of objects and lists (labelSelector, fieldSelector metadata.name /
    metadata.namespace, limit + continue), POST (create), PUT (replace),
    PATCH (server-side apply with application/apply-patch+yaml, fieldManager,
    force and conflicts; JSON merge patch), DELETE (a namespace takes its
    objects with it), dryRun=All on every write;
  * server-assigned fields as a real server sets them: uid, resourceVersion,
    generation, creationTimestamp, managedFields, Service clusterIP(s) and
    nodePorts, defaults of Services and Namespaces, status of Namespaces,
    CRDs (Established at once) and bound PVCs; items of built-in lists carry
    no apiVersion/kind (custom resources do), as a real server sends them;
  * what a new namespace gets from the controllers: the `default`
    ServiceAccount and the `kube-root-ca.crt` ConfigMap;
  * TLS (--tls DIR, files from `certs`), bearer tokens (--token), client
    certificates (--client-ca: verified against DIR/ca.crt, the user is the
    certificate's CN); without --tls and --token every request is anonymous
    and allowed; with either, a request without valid credentials gets 401;
  * 403 Forbidden for every request on a resource named with --forbid (or
    POST /__fixture/forbid?resource=R);
  * 410 Gone for a continue token once /__fixture/expire was posted (the next
    continued list of that resource, or of any);
  * failures on demand: POST /__fixture/fail?status=503&count=2[&path=SUB]
    answers the next COUNT matching requests with STATUS (429 with
    Retry-After: 0).

Test control, without credentials (never on a real server):
  GET  /__fixture/store      every object: [{"group", "resource", "namespace",
                             "name", "object"}] in key order
  GET  /__fixture/writes     every write request that reached the store or
                             was refused: method, path, query, content type,
                             fieldManager, force, dryRun, status, and the
                             parsed body
  GET  /__fixture/stats      request counts by method, by (method, path) and
                             by status
  POST /__fixture/wipe       a new cluster: only the four system namespaces
                             (with their default ServiceAccount and
                             kube-root-ca.crt) and the default ClusterRoles
  POST /__fixture/expire[?resource=R], /__fixture/forbid?resource=R[&off=1],
       /__fixture/fail?status=S&count=N[&path=SUB], /__fixture/reset-stats

What it cannot show (the tests say so where it matters): no controllers (a
Deployment gets no ReplicaSet, a Job no Pod, nothing is garbage-collected),
no admission (quotas, webhooks, defaulting beyond what is listed above,
validation against the OpenAPI schema: /openapi/* answers 404, so kubectl
needs --validate=false), no watch, no protobuf, no aggregated discovery (the
legacy documents are served; clients fall back to them), no RBAC but the
403s asked for; a list's continuation is read from the current store, not
from a snapshot at the list's resourceVersion; server-side apply merges maps
and replaces lists (no field-level ownership sets, no list-map merge keys):
a conflict is reported when another manager wrote the object last and the
apply would change it; strategic merge patch is treated as JSON merge patch;
request bodies must be JSON (kubectl, the Python client and the engine send
JSON, also for apply).
"""
import argparse
import base64
import copy
import datetime
import http.server
import json
import os
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
DISCOVERY_DIR = os.path.join(HERE, "k8s-discovery")

STATUS_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    def __init__(self, code, message, reason=None, details=None, cont=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or STATUS_REASONS.get(code, "Unknown")
        self.details = details
        self.cont = cont

    def status(self):
        st = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.cont:
            st["metadata"]["continue"] = self.cont
        if self.details:
            st["details"] = self.details
        return st


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_json(name):
    with open(os.path.join(DISCOVERY_DIR, name), "rb") as f:
        return json.loads(f.read())


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def first_diff(a, b, path=""):
    """A field path where b would change a (for conflict messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(b):
            if k in ("metadata",) and path == "":
                continue
            if k not in a:
                return path + "." + k
            d = first_diff(a[k], b[k], path + "." + k)
            if d:
                return d
        return None
    return None if a == b else (path or ".")


# ---- label selectors ---------------------------------------------------------

SEL_RE = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def split_selector(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_selector(s):
    reqs = []
    for part in split_selector(s or ""):
        m = SEL_RE.match(part)
        if not m:
            raise ApiError(400, "unable to parse requirement: invalid label selector %r" % s)
        neg, key, op, val, setop, setvals = m.groups()
        if setop:
            vals = {v.strip() for v in setvals.split(",") if v.strip()}
            reqs.append((key, setop, vals))
        elif op:
            reqs.append((key, "!=" if op == "!=" else "=", val))
        else:
            reqs.append((key, "!exists" if neg else "exists", None))
    return reqs


def selector_matches(reqs, labels):
    labels = labels or {}
    for key, op, val in reqs:
        have = key in labels
        v = labels.get(key)
        if op == "=" and v != val:
            return False
        if op == "!=" and have and v == val:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
        if op == "in" and v not in val:
            return False
        if op == "notin" and have and v in val:
            return False
    return True


# ---- the store ---------------------------------------------------------------

SYSTEM_NAMESPACES = ["default", "kube-node-lease", "kube-public", "kube-system"]
DEFAULT_CLUSTERROLES = ["admin", "cluster-admin", "edit", "view"]


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.objects = {}  # (group, resource, ns, name) -> object
        self.rv = 1000
        self.ip_next = 100
        self.nodeport_next = 31000
        self.forbidden = set()
        self.expire_all = False
        self.expire = set()
        self.fail = None  # (status, count, pathsub)
        self.writes = []
        self.stats = {"by_method": {}, "by_path": {}, "by_status": {}}
        self.load_discovery()

    # discovery ---------------------------------------------------------------
    def load_discovery(self):
        self.api = load_json("api.json")
        self.core = load_json("api__v1.json")
        self.apis = load_json("apis.json")
        self.gv_docs = {}
        for g in self.apis["groups"]:
            for v in g["versions"]:
                self.gv_docs[v["groupVersion"]] = load_json("apis__%s__%s.json" % (g["name"], v["version"]))
        # (group, resource) -> {kind, namespaced, versions, preferred}
        self.builtin = {}
        for r in self.core["resources"]:
            if "/" not in r["name"]:
                self.builtin[("", r["name"])] = {"kind": r["kind"], "namespaced": r["namespaced"], "versions": ["v1"], "preferred": "v1"}
        for g in self.apis["groups"]:
            for v in g["versions"]:
                for r in self.gv_docs[v["groupVersion"]]["resources"]:
                    if "/" in r["name"]:
                        continue
                    key = (g["name"], r["name"])
                    ent = self.builtin.setdefault(key, {"kind": r["kind"], "namespaced": r["namespaced"], "versions": [], "preferred": None})
                    ent["versions"].append(v["version"])
                    if v["version"] == g["preferredVersion"]["version"]:
                        ent["preferred"] = v["version"]
        for ent in self.builtin.values():
            if not ent["preferred"]:
                ent["preferred"] = ent["versions"][0]

    def crds(self):
        return [o for (g, r, ns, n), o in sorted(self.objects.items()) if g == "apiextensions.k8s.io" and r == "customresourcedefinitions"]

    def resource_info(self, group, resource):
        ent = self.builtin.get((group, resource))
        if ent:
            return dict(ent, custom=False)
        for crd in self.crds():
            spec = crd.get("spec", {})
            if spec.get("group") == group and spec.get("names", {}).get("plural") == resource:
                vers = [v["name"] for v in spec.get("versions", []) if v.get("served", True)]
                storage = [v["name"] for v in spec.get("versions", []) if v.get("storage")]
                return {
                    "kind": spec["names"]["kind"],
                    "namespaced": spec.get("scope") == "Namespaced",
                    "versions": vers,
                    "preferred": storage[0] if storage else vers[0],
                    "custom": True,
                }
        return None

    def resource_by_kind(self, api_version, kind):
        group, _, version = api_version.rpartition("/")
        for (g, r), ent in self.builtin.items():
            if g == group and ent["kind"] == kind:
                return r
        for crd in self.crds():
            spec = crd.get("spec", {})
            if spec.get("group") == group and spec.get("names", {}).get("kind") == kind:
                return spec["names"]["plural"]
        return None

    def crd_groups(self):
        groups = {}
        for crd in self.crds():
            spec = crd.get("spec", {})
            vers = [v["name"] for v in spec.get("versions", []) if v.get("served", True)]
            if not vers:
                continue
            storage = [v["name"] for v in spec.get("versions", []) if v.get("storage")] or vers
            g = groups.setdefault(spec["group"], {"versions": [], "preferred": storage[0]})
            for v in vers:
                if v not in g["versions"]:
                    g["versions"].append(v)
        return groups

    def apis_doc(self):
        doc = copy.deepcopy(self.apis)
        for name, g in sorted(self.crd_groups().items()):
            vs = [{"groupVersion": "%s/%s" % (name, v), "version": v} for v in g["versions"]]
            doc["groups"].append({"name": name, "preferredVersion": {"groupVersion": "%s/%s" % (name, g["preferred"]), "version": g["preferred"]}, "versions": vs})
        return doc

    def group_version_doc(self, group, version):
        gv = "%s/%s" % (group, version)
        if gv in self.gv_docs:
            return self.gv_docs[gv]
        res = []
        for crd in self.crds():
            spec = crd.get("spec", {})
            if spec.get("group") != group or version not in [v["name"] for v in spec.get("versions", []) if v.get("served", True)]:
                continue
            n = spec["names"]
            ent = {
                "name": n["plural"],
                "singularName": n.get("singular", n["kind"].lower()),
                "namespaced": spec.get("scope") == "Namespaced",
                "kind": n["kind"],
                "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
            }
            if n.get("shortNames"):
                ent["shortNames"] = n["shortNames"]
            if n.get("categories"):
                ent["categories"] = n["categories"]
            res.append(ent)
        if not res:
            return None
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res}

    # objects -------------------------------------------------------------------
    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def next_ip(self):
        self.ip_next += 1
        return "10.96.%d.%d" % (self.ip_next // 250, self.ip_next % 250 + 2)

    def fields_v1(self, group, resource, body):
        """The managed fields a write owns, as far as the tests need them: the
        nodePorts a Service's request sets (a port the server assigned is owned
        by nobody)."""
        f = {"f:metadata": {}}
        if group == "" and resource == "services":
            spec = (body or {}).get("spec") or {}
            ports = {}
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    key = "k:" + json.dumps({"port": p.get("port"), "protocol": p.get("protocol", "TCP")}, separators=(",", ":"))
                    ports[key] = {".": {}, "f:nodePort": {}}
            if ports or spec.get("healthCheckNodePort"):
                f["f:spec"] = {}
                if ports:
                    f["f:spec"]["f:ports"] = ports
                if spec.get("healthCheckNodePort"):
                    f["f:spec"]["f:healthCheckNodePort"] = {}
        return f

    def server_fields(self, group, resource, obj, manager, operation, old=None, body=None):
        """What the server sets on a write: identity, version, time, managed
        fields, defaults and status. body: what the request sent (obj itself
        for a create)."""
        md = obj.setdefault("metadata", {})
        info = self.resource_info(group, resource)
        if old is None:
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now()
        else:
            omd = old.get("metadata", {})
            md["uid"] = omd.get("uid")
            md["creationTimestamp"] = omd.get("creationTimestamp")
        md.pop("selfLink", None)
        md["resourceVersion"] = self.next_rv()
        if "spec" in obj and not (group == "" and resource in ("namespaces",)):
            if old is None:
                md["generation"] = 1
            else:
                gen = old.get("metadata", {}).get("generation", 1)
                md["generation"] = gen + (1 if old.get("spec") != obj.get("spec") else 0)
        mf = [m for m in (old or {}).get("metadata", {}).get("managedFields", []) if m.get("manager") != manager]
        mf.append({
            "apiVersion": obj.get("apiVersion", ""),
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields_v1(group, resource, body if body is not None else obj),
            "manager": manager,
            "operation": operation,
            "time": now(),
        })
        md["managedFields"] = mf
        if group == "" and resource == "services":
            self.service_defaults(obj, old)
        elif group == "" and resource == "namespaces":
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md["name"]
            obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
            obj["status"] = {"phase": "Active"}
        elif group == "apiextensions.k8s.io" and resource == "customresourcedefinitions":
            spec = obj.get("spec", {})
            obj["status"] = {
                "acceptedNames": spec.get("names", {}),
                "conditions": [
                    {"lastTransitionTime": now(), "message": "no conflicts found", "reason": "NoConflicts", "status": "True", "type": "NamesAccepted"},
                    {"lastTransitionTime": now(), "message": "the initial names have been accepted", "reason": "InitialNamesAccepted", "status": "True", "type": "Established"},
                ],
                "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
            }
        elif group == "" and resource == "persistentvolumeclaims":
            if obj.get("spec", {}).get("volumeName"):
                obj["status"] = {"phase": "Bound", "accessModes": obj["spec"].get("accessModes", []), "capacity": obj["spec"].get("resources", {}).get("requests", {})}
            else:
                obj["status"] = {"phase": "Pending"}
        elif group == "apps" and resource in ("deployments", "statefulsets", "replicasets"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("revisionHistoryLimit", 10)
            if resource == "deployments":
                spec.setdefault("progressDeadlineSeconds", 600)
                spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
            obj.setdefault("status", {"observedGeneration": md.get("generation", 1), "replicas": 0})
        if info and not info.get("custom"):
            pass
        return obj

    def service_defaults(self, obj, old):
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            oldspec = (old or {}).get("spec", {})
            if not spec.get("clusterIP"):
                spec["clusterIP"] = oldspec.get("clusterIP") or self.next_ip()
            spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports", []):
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
            if spec["type"] in ("NodePort", "LoadBalancer") and not p.get("nodePort"):
                self.nodeport_next += 1
                p["nodePort"] = self.nodeport_next
        obj.setdefault("status", {"loadBalancer": {}})

    def key(self, group, resource, ns, name):
        return (group, resource, ns or "", name)

    def put(self, group, resource, obj):
        md = obj["metadata"]
        self.objects[self.key(group, resource, md.get("namespace"), md["name"])] = obj

    def create(self, group, resource, ns, obj, manager="kubectl-create", operation="Update", dry=False):
        info = self.resource_info(group, resource)
        if info is None:
            raise ApiError(404, "the server could not find the requested resource")
        md = obj.setdefault("metadata", {})
        if info["namespaced"]:
            if md.get("namespace") and ns and md["namespace"] != ns:
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
            ns = ns or md.get("namespace") or "default"
            md["namespace"] = ns
            if (self.key("", "namespaces", "", ns) not in self.objects):
                raise ApiError(404, 'namespaces "%s" not found' % ns, details={"name": ns, "kind": "namespaces"})
        else:
            md.pop("namespace", None)
            ns = ""
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise ApiError(422, "%s is invalid: metadata.name: Required value: name or generateName is required" % info["kind"])
        k = self.key(group, resource, ns, md["name"])
        if k in self.objects:
            raise ApiError(409, '%s "%s" already exists' % (resource, md["name"]), reason="AlreadyExists",
                           details={"name": md["name"], "group": group, "kind": resource})
        self.server_fields(group, resource, obj, manager, operation)
        if not dry:
            self.objects[k] = obj
            if group == "" and resource == "namespaces":
                self.namespace_controller(md["name"])
        return obj

    def namespace_controller(self, ns):
        """What the service-account and root-CA controllers create in every
        new namespace."""
        if self.key("", "serviceaccounts", ns, "default") not in self.objects:
            self.create("", "serviceaccounts", ns, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}, manager="kube-controller-manager")
        if self.key("", "configmaps", ns, "kube-root-ca.crt") not in self.objects:
            self.create("", "configmaps", ns, {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kube-root-ca.crt", "namespace": ns, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIBfixtureCA\n-----END CERTIFICATE-----\n"},
            }, manager="kube-controller-manager")

    def get(self, group, resource, ns, name):
        o = self.objects.get(self.key(group, resource, ns, name))
        if o is None:
            raise ApiError(404, '%s "%s" not found' % (resource if not group else resource + "." + group, name),
                           details={"name": name, "group": group, "kind": resource})
        return o

    def delete(self, group, resource, ns, name, dry=False):
        o = self.get(group, resource, ns, name)
        if not dry:
            del self.objects[self.key(group, resource, ns, name)]
            if group == "" and resource == "namespaces":
                for k in [k for k in self.objects if k[2] == name]:
                    del self.objects[k]
        return o

    def wipe(self):
        keep = {}
        for k, o in self.objects.items():
            g, r, ns, n = k
            if g == "" and r == "namespaces" and n in SYSTEM_NAMESPACES:
                keep[k] = o
            elif g == "rbac.authorization.k8s.io" and r == "clusterroles" and n in DEFAULT_CLUSTERROLES:
                keep[k] = o
            elif ns in SYSTEM_NAMESPACES and ((r == "serviceaccounts" and n == "default") or (r == "configmaps" and n == "kube-root-ca.crt")):
                keep[k] = o
        self.objects = keep


# ---- the realistic cluster ----------------------------------------------------


def seed_realistic(st, bulk=0):
    """A small production-like cluster, created through the store's own write
    path (so every object has its server-assigned fields)."""
    C = st.create

    def mk(group, resource, obj, manager="kubectl-client-side-apply", last_applied=False):
        if last_applied:
            la = copy.deepcopy(obj)
            obj.setdefault("metadata", {}).setdefault("annotations", {})["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(la, sort_keys=True, separators=(",", ":")) + "\n"
        ns = obj.get("metadata", {}).get("namespace")
        return C(group, resource, ns, obj, manager=manager)

    def owner(o, controller=True):
        return {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"], "uid": o["metadata"]["uid"],
                "controller": controller, "blockOwnerDeletion": True}

    for ns in SYSTEM_NAMESPACES:
        mk("", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, manager="kube-apiserver")
    for cr in DEFAULT_CLUSTERROLES:
        mk("rbac.authorization.k8s.io", "clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": cr, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}] if cr == "cluster-admin" else
                     [{"apiGroups": [""], "resources": ["pods", "services", "configmaps"], "verbs": ["get", "list", "watch"]}],
        }, manager="kube-apiserver")
    mk("rbac.authorization.k8s.io", "clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}],
    }, manager="kube-apiserver")
    mk("", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
                     "spec": {"podCIDR": "10.244.0.0/24"}, "status": {"capacity": {"cpu": "4", "memory": "16Gi"}}}, manager="kubelet")
    mk("", "services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}, manager="kube-apiserver")
    mk("coordination.k8s.io", "leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                                         "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}, manager="kubelet")
    mk("coordination.k8s.io", "leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "kube-controller-manager", "namespace": "kube-system"},
                                         "spec": {"holderIdentity": "cp-1_abc", "leaseDurationSeconds": 15}}, manager="kube-controller-manager")
    mk("storage.k8s.io", "storageclasses", {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                            "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                                            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"})
    mk("scheduling.k8s.io", "priorityclasses", {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "business-critical"},
                                                "value": 100000, "globalDefault": False, "description": "Customer-facing workloads."}, last_applied=True)

    # kube-system: coredns
    coredns = mk("apps", "deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}, "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                 "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}},
                              "spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.1", "args": ["-conf", "/etc/coredns/Corefile"]}]}}}}, manager="kubeadm")
    mk("", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
                          "data": {"Corefile": ".:53 {\n    errors\n    health\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n    }\n    forward . /etc/resolv.conf\n    cache 30\n}\n"}}, manager="kubeadm")
    mk("", "services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
                        "spec": {"clusterIP": "10.96.0.10", "selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}}, manager="kubeadm")
    rs = mk("apps", "replicasets", {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "coredns-7db6d8ff4d", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns", "pod-template-hash": "7db6d8ff4d"}, "ownerReferences": [owner(coredns)]},
                                   "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns", "pod-template-hash": "7db6d8ff4d"}}, "template": coredns["spec"]["template"]}}, manager="kube-controller-manager")
    mk("", "pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "coredns-7db6d8ff4d-x2x7l", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns", "pod-template-hash": "7db6d8ff4d"}, "ownerReferences": [owner(rs)]},
                    "spec": dict(coredns["spec"]["template"]["spec"], nodeName="node-1"), "status": {"phase": "Running", "podIP": "10.244.0.3"}}, manager="kube-controller-manager")

    # the custom resource definitions
    mk("apiextensions.k8s.io", "customresourcedefinitions", {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wg"], "categories": ["all"]},
                 "versions": [
                     {"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"color": {"type": "string"}, "size": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}}}}}},
                     {"name": "v1beta1", "served": True, "storage": False,
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}, last_applied=True)
    mk("apiextensions.k8s.io", "customresourcedefinitions", {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.tools.example.org"},
        "spec": {"group": "tools.example.org", "scope": "Cluster",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                 "versions": [{"name": "v1alpha1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
    mk("tools.example.org", "gadgets", {"apiVersion": "tools.example.org/v1alpha1", "kind": "Gadget", "metadata": {"name": "cluster-gadget"}, "spec": {"mode": "on"}})

    mk("rbac.authorization.k8s.io", "clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "shop-reader", "labels": {"app.kubernetes.io/part-of": "shop"}},
        "rules": [{"apiGroups": ["", "apps"], "resources": ["deployments", "pods", "services"], "verbs": ["get", "list", "watch"]}]}, last_applied=True)
    mk("rbac.authorization.k8s.io", "clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "metrics-reader"},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}, {"apiGroups": [""], "resources": ["nodes", "endpoints", "pods"], "verbs": ["get", "list", "watch"]}]})
    mk("rbac.authorization.k8s.io", "clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "unused-role"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})

    # persistent volumes
    for pvname, ns, claim, size in (("pv-shop-data", "shop", "data", "10Gi"), ("pv-billing-ledger", "billing", "ledger", "50Gi"), ("pv-spare", None, None, "5Gi")):
        pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pvname, "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}, "finalizers": ["kubernetes.io/pv-protection"]},
              "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "standard",
                       "hostPath": {"path": "/var/lib/volumes/" + pvname, "type": "DirectoryOrCreate"}},
              "status": {"phase": "Bound" if ns else "Available"}}
        if ns:
            pv["spec"]["claimRef"] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": claim, "uid": str(uuid.uuid4()), "resourceVersion": "1234"}
        mk("", "persistentvolumes", pv, manager="local-path-provisioner")

    def app_namespace(ns, team):
        mk("", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": team, "environment": "production"}}}, last_applied=True)
        # the legacy token secret of the default service account
        sa = st.get("", "serviceaccounts", ns, "default")
        sa["secrets"] = [{"name": "default-token-" + ns[:5]}]
        mk("", "secrets", {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                           "metadata": {"name": "default-token-" + ns[:5], "namespace": ns, "annotations": {"kubernetes.io/service-account.name": "default", "kubernetes.io/service-account.uid": sa["metadata"]["uid"]}},
                           "data": {"token": base64.b64encode(b"eyJhbGciOiJSUzI1NiJ9.fixture-token-" + ns.encode()).decode(), "namespace": base64.b64encode(ns.encode()).decode()}}, manager="kube-controller-manager")
        mk("", "events", {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.17a2b3c4d5e6f708", "namespace": ns},
                          "involvedObject": {"kind": "Pod", "namespace": ns, "name": "x"}, "reason": "Scheduled", "message": "Successfully assigned", "type": "Normal",
                          "firstTimestamp": now(), "lastTimestamp": now(), "count": 1, "source": {"component": "default-scheduler"}}, manager="kube-scheduler")

    def deployment(ns, name, image, replicas, labels, hash_, pods, sa=None, extra_ann=None, env=None, volumes=None):
        tmpl_spec = {"containers": [{"name": name, "image": image, "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                                     "env": env or [{"name": "LOG_LEVEL", "value": "info"}]}],
                     "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst"}
        if sa:
            tmpl_spec["serviceAccountName"] = sa
        if volumes:
            tmpl_spec["volumes"] = volumes
        d = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
             "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                      "template": {"metadata": {"labels": dict(labels)}, "spec": tmpl_spec}}}
        d = mk("apps", "deployments", d, last_applied=True)
        d["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "3"
        if extra_ann:
            d["metadata"]["annotations"].update(extra_ann)
        d["status"] = {"availableReplicas": replicas, "observedGeneration": 1, "readyReplicas": replicas, "replicas": replicas, "updatedReplicas": replicas}
        rl = dict(labels, **{"pod-template-hash": hash_})
        r = mk("apps", "replicasets", {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                        "metadata": {"name": name + "-" + hash_, "namespace": ns, "labels": rl, "annotations": {"deployment.kubernetes.io/revision": "3"}, "ownerReferences": [owner(d)]},
                                        "spec": {"replicas": replicas, "selector": {"matchLabels": rl}, "template": {"metadata": {"labels": rl}, "spec": tmpl_spec}}}, manager="kube-controller-manager")
        for p in pods:
            mk("", "pods", {"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": name + "-" + hash_ + "-" + p, "namespace": ns, "labels": rl, "ownerReferences": [owner(r)]},
                            "spec": dict(tmpl_spec, nodeName="node-1"), "status": {"phase": "Running", "podIP": "10.244.0.%d" % (len(p) * 7)}}, manager="kube-controller-manager")
        return d

    # ---- shop ----
    app_namespace("shop", "storefront")
    mk("", "serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "shop-api", "namespace": "shop", "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/shop-api"}}}, last_applied=True)
    mk("", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shop-config", "namespace": "shop", "labels": {"app": "web"}},
                          "data": {"application.yaml": "server:\n  port: 8080\n  compression: true\nfeatures:\n  - search\n  - \"checkout: v2\"\n",
                                   "ENABLE_CACHE": "true", "PORT": "8080", "LEGACY": "yes", "EMPTY": "", "RATIO": "1.5", "WHEN": "2024-01-01",
                                   "GREETING": "Grüße, 世界", "OCTAL": "0755", "NULLISH": "null", "TILDE": "~", "COLON": "a: b", "HASH": "# not a comment",
                                   "TRAILING": "ends with spaces  ", "LEADING": " starts with a space", "QUOTES": "it's \"quoted\"", "STAR": "*ref", "DASH": "- item"}}, last_applied=True)
    mk("", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app.settings.v2", "namespace": "shop"},
                          "data": {"k": "v"}, "binaryData": {"logo.png": base64.b64encode(bytes(range(0, 256))).decode()}})
    mk("", "secrets", {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "shop-db", "namespace": "shop"},
                       "data": {"username": base64.b64encode(b"shop").decode(), "password": base64.b64encode(b"s3cr3t-shop-PASSWORD-4711").decode()}}, last_applied=True)
    mk("", "secrets", {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "shop-tls", "namespace": "shop"},
                       "data": {"tls.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\nshop\n-----END CERTIFICATE-----\n").decode(),
                                "tls.key": base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nshop-private-KEY-0815\n-----END PRIVATE KEY-----\n").decode()}})
    deployment("shop", "web", "ghcr.io/example/shop-web:2.4.1", 2, {"app": "web", "tier": "frontend"}, "5d8f7c9b6", ["abcde", "fghij"],
               sa="shop-api", env=[{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}}}, {"name": "CONFIG", "value": "/etc/shop/application.yaml"}],
               volumes=[{"name": "config", "configMap": {"name": "shop-config"}}, {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}])
    deployment("shop", "api", "ghcr.io/example/shop-api:1.9.0", 1, {"app": "api"}, "6c9d8b7f5", ["klmno"])
    mk("", "services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
                        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}, last_applied=True)
    # nodePort 30080 chosen by the user (in last-applied), 8443's assigned by the server
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-nodeport", "namespace": "shop"},
           "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}, {"name": "https", "port": 443, "targetPort": 8443}]}}
    mk("", "services", svc, last_applied=True)
    mk("", "services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"},
                        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}})
    mk("", "endpoints", {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "shop"},
                         "subsets": [{"addresses": [{"ip": "10.244.0.35"}], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}, manager="kube-controller-manager")
    websvc = st.get("", "services", "shop", "web")
    mk("discovery.k8s.io", "endpointslices", {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-7xk2p", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}, "ownerReferences": [owner(websvc)]},
                                              "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.35"]}], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}, manager="endpointslice-controller")
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "data", "namespace": "shop", "annotations": {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
                                                                            "volume.beta.kubernetes.io/storage-provisioner": "rancher.io/local-path", "volume.kubernetes.io/selected-node": "node-1"},
                        "finalizers": ["kubernetes.io/pvc-protection"]},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}, "storageClassName": "standard", "volumeMode": "Filesystem", "volumeName": "pv-shop-data"}}
    mk("", "persistentvolumeclaims", pvc)
    mk("rbac.authorization.k8s.io", "roles", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "config-reader", "namespace": "shop"},
                                              "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["shop-config"], "verbs": ["get", "watch"]}]})
    mk("rbac.authorization.k8s.io", "rolebindings", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "config-reader", "namespace": "shop"},
                                                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "config-reader"},
                                                     "subjects": [{"kind": "ServiceAccount", "name": "shop-api", "namespace": "shop"}]})
    mk("rbac.authorization.k8s.io", "rolebindings", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "shop-readers", "namespace": "shop"},
                                                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "shop-reader"},
                                                     "subjects": [{"kind": "ServiceAccount", "name": "shop-api", "namespace": "shop"}, {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "shop-oncall"}]})
    mk("example.com", "widgets", {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "blue-widget", "namespace": "shop", "labels": {"color": "blue"}},
                                  "spec": {"color": "blue", "size": 3, "tags": ["a", "b"]}, "status": {"ready": True}}, last_applied=True)
    mk("autoscaling", "horizontalpodautoscalers", {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": "shop"},
                                                   "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10,
                                                            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]},
                                                   "status": {"currentReplicas": 2, "desiredReplicas": 2}})
    mk("networking.k8s.io", "ingresses", {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "shop", "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}},
                                          "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                                                   "rules": [{"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
                                          "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}})
    mk("networking.k8s.io", "networkpolicies", {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "default-deny", "namespace": "shop"},
                                                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    mk("policy", "poddisruptionbudgets", {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "shop"},
                                          "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}, "status": {"currentHealthy": 2}})
    cj = mk("batch", "cronjobs", {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly-report", "namespace": "shop"},
                                  "spec": {"schedule": "0 3 * * *", "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 3,
                                           "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "report", "image": "ghcr.io/example/report:1.0", "args": ["--since", "24h"]}]}}}}}}, last_applied=True)
    uid = str(uuid.uuid4())
    jl = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "nightly-report-28930860", "controller-uid": uid, "job-name": "nightly-report-28930860"}
    job = mk("batch", "jobs", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "nightly-report-28930860", "namespace": "shop", "labels": dict(jl), "ownerReferences": [owner(cj)]},
                               "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}, "template": {"metadata": {"labels": dict(jl)}, "spec": cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]}},
                               "status": {"succeeded": 1}}, manager="kube-controller-manager")
    mk("", "pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nightly-report-28930860-q8r7s", "namespace": "shop", "labels": dict(jl), "ownerReferences": [owner(job)]},
                    "spec": dict(cj["spec"]["jobTemplate"]["spec"]["template"]["spec"], nodeName="node-1"), "status": {"phase": "Succeeded"}}, manager="kube-controller-manager")
    # a Job created by hand: its selector and controller labels are the server's
    uid2 = str(uuid.uuid4())
    jl2 = {"batch.kubernetes.io/controller-uid": uid2, "batch.kubernetes.io/job-name": "migrate-db", "controller-uid": uid2, "job-name": "migrate-db"}
    mk("batch", "jobs", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate-db", "namespace": "shop", "labels": dict(jl2, app="migrate")},
                         "spec": {"backoffLimit": 2, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid2}},
                                  "template": {"metadata": {"labels": dict(jl2, app="migrate")}, "spec": {"restartPolicy": "Never", "containers": [{"name": "migrate", "image": "ghcr.io/example/migrate:7"}]}}},
                         "status": {"succeeded": 1}})
    # a bare Pod (nobody recreates it): kept, its node and priority dropped
    mk("", "pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug-shell", "namespace": "shop"},
                    "spec": {"containers": [{"name": "sh", "image": "busybox:1.36", "command": ["sleep", "infinity"],
                                             "volumeMounts": [{"name": "kube-api-access-7k2xq", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}]}],
                             "nodeName": "node-1", "priority": 0, "priorityClassName": "business-critical", "serviceAccountName": "default",
                             "volumes": [{"name": "kube-api-access-7k2xq", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]},
                    "status": {"phase": "Running"}})

    # ---- billing ----
    app_namespace("billing", "finance")
    deployment("billing", "ledger", "ghcr.io/example/ledger:5.0.2", 3, {"app": "ledger"}, "84f9c6d7b8", ["aaaaa", "bbbbb", "ccccc"])
    mk("", "services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ledger", "namespace": "billing"},
                        "spec": {"selector": {"app": "ledger"}, "ports": [{"name": "grpc", "port": 9090}], "type": "LoadBalancer"}})
    mk("", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ledger-config", "namespace": "billing"}, "data": {"currency": "EUR", "rounding": "half-even"}})
    mk("", "secrets", {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "billing-api-key", "namespace": "billing"},
                       "data": {"key": base64.b64encode(b"billing-KEY-do-not-leak-9313").decode()}})
    mk("", "persistentvolumeclaims", {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ledger", "namespace": "billing", "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
                                      "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}, "storageClassName": "standard", "volumeName": "pv-billing-ledger"}})
    sts = mk("apps", "statefulsets", {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "postgres", "namespace": "billing"},
                                      "spec": {"serviceName": "postgres", "replicas": 1, "selector": {"matchLabels": {"app": "postgres"}},
                                               "template": {"metadata": {"labels": {"app": "postgres"}}, "spec": {"containers": [{"name": "postgres", "image": "postgres:15"}]}},
                                               "volumeClaimTemplates": [{"metadata": {"name": "pgdata"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}}]}}, last_applied=True)
    mk("apps", "controllerrevisions", {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "postgres-6f7b8c9d4", "namespace": "billing", "ownerReferences": [owner(sts)]},
                                       "data": {"spec": {"template": {}}}, "revision": 1}, manager="kube-controller-manager")
    mk("", "pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "postgres-0", "namespace": "billing", "labels": {"app": "postgres"}, "ownerReferences": [owner(sts)]},
                    "spec": {"containers": [{"name": "postgres", "image": "postgres:15"}], "nodeName": "node-1"}}, manager="kube-controller-manager")
    mk("example.com", "widgets", {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "green-widget", "namespace": "billing"},
                                  "spec": {"color": "green", "size": 7}})
    mk("rbac.authorization.k8s.io", "rolebindings", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "auditors", "namespace": "billing"},
                                                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                                                     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "auditor@example.com"}]})
    mk("", "resourcequotas", {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute", "namespace": "billing"},
                              "spec": {"hard": {"requests.cpu": "8", "requests.memory": "16Gi"}}, "status": {"used": {"requests.cpu": "300m"}}})
    mk("", "limitranges", {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": "billing"},
                           "spec": {"limits": [{"type": "Container", "default": {"memory": "256Mi"}}]}})

    # ---- monitoring ----
    app_namespace("monitoring", "sre")
    mk("", "serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus", "namespace": "monitoring"}})
    deployment("monitoring", "prometheus", "quay.io/prometheus/prometheus:v2.53.0", 1, {"app": "prometheus"}, "7b6c5d4e3f", ["zzzzz"], sa="prometheus")
    mk("", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus-config", "namespace": "monitoring"},
                          "data": {"prometheus.yml": "global:\n  scrape_interval: 30s\nscrape_configs:\n" + "".join(
                              "  - job_name: job-%d\n    static_configs:\n      - targets: ['10.0.%d.1:9100']\n" % (i, i) for i in range(40))}})
    mk("rbac.authorization.k8s.io", "rolebindings", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "prometheus-metrics", "namespace": "monitoring"},
                                                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics-reader"},
                                                     "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}]})
    mk("rbac.authorization.k8s.io", "clusterrolebindings", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "prometheus-cluster"},
                                                            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics-reader"},
                                                            "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}]})
    ds = mk("apps", "daemonsets", {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-exporter", "namespace": "monitoring"},
                                   "spec": {"selector": {"matchLabels": {"app": "node-exporter"}}, "template": {"metadata": {"labels": {"app": "node-exporter"}},
                                                                                                               "spec": {"hostNetwork": True, "containers": [{"name": "node-exporter", "image": "quay.io/prometheus/node-exporter:v1.8.1"}]}}}})
    mk("", "pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node-exporter-4xq9z", "namespace": "monitoring", "labels": {"app": "node-exporter"}, "ownerReferences": [owner(ds)]},
                    "spec": {"containers": [{"name": "node-exporter", "image": "quay.io/prometheus/node-exporter:v1.8.1"}], "nodeName": "node-1"}}, manager="kube-controller-manager")

    if bulk:
        seed_bulk(st, bulk)


def seed_bulk(st, n, ns="bulk"):
    if st.key("", "namespaces", "", ns) not in st.objects:
        st.create("", "namespaces", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for i in range(n):
        st.create("", "configmaps", ns, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm-%06d" % i, "namespace": ns, "labels": {"app": "bulk", "shard": str(i % 16)},
                         "annotations": {"example.com/owner": "team-%d" % (i % 7)}},
            "data": {"index": str(i), "settings.ini": "[main]\nid = %d\nname = item-%d\nenabled = %s\nweight = %d\n" % (i, i, "true" if i % 2 else "false", (i * 7919) % 1000),
                     "notes": "bulk object %d for the scale tests; the text makes it the size of a typical small ConfigMap." % i},
        }, manager="kubectl-client-side-apply")


# ---- HTTP ----------------------------------------------------------------------

STORE = None
ARGS = None
LOG = None
LOG_LOCK = threading.Lock()


def log(msg):
    if LOG:
        with LOG_LOCK:
            LOG.write(msg + "\n")
            LOG.flush()


def encode_continue(resource, after):
    raw = json.dumps({"rv": STORE.rv, "r": resource, "after": list(after)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(tok):
    try:
        pad = "=" * (-len(tok) % 4)
        d = json.loads(base64.urlsafe_b64decode(tok + pad))
        return d["r"], tuple(d["after"])
    except Exception:
        raise ApiError(400, "continue key is not valid: illegal base64 data")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "k8s-fixture/1.0"

    def setup(self):
        super().setup()
        # as Go's net/http does: no Nagle delay between headers and body
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *a):
        log("%s %s" % (self.address_string(), fmt % a))

    # replies ---------------------------------------------------------------
    def reply(self, code, doc, extra_headers=None):
        body = json.dumps(doc, separators=(",", ":")).encode() if not isinstance(doc, bytes) else doc
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        with STORE.lock:
            s = STORE.stats["by_status"]
            s[str(code)] = s.get(str(code), 0) + 1

    def reply_error(self, e):
        hdr = {"Retry-After": "0"} if e.code == 429 else None
        self.reply(e.code, e.status(), hdr)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            return data
        return self.rfile.read(n) if n else b""

    # auth --------------------------------------------------------------------
    def user(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:].strip() in ARGS.token:
            return "token:" + auth[7:].strip()[:4]
        if ARGS.client_ca:
            try:
                cert = self.connection.getpeercert()
            except Exception:
                cert = None
            if cert:
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            return v
        if not ARGS.token and not ARGS.client_ca:
            return "system:anonymous"
        return None

    # dispatch ----------------------------------------------------------------
    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        body = b""
        if self.command in ("POST", "PUT", "PATCH", "DELETE"):
            body = self.read_body()
        with STORE.lock:
            st = STORE.stats
            st["by_method"][self.command] = st["by_method"].get(self.command, 0) + 1
            pk = self.command + " " + path
            st["by_path"][pk] = st["by_path"].get(pk, 0) + 1
        try:
            if path.startswith("/__fixture/"):
                return self.control(path, q)
            with STORE.lock:
                f = STORE.fail
                if f and (not f[2] or f[2] in self.path):
                    STORE.fail = (f[0], f[1] - 1, f[2]) if f[1] > 1 else None
                    raise ApiError(f[0], "fixture: injected failure %d" % f[0])
            if self.user() is None:
                raise ApiError(401, "Unauthorized")
            self.api(path, q, body)
        except ApiError as e:
            if self.command in ("POST", "PUT", "PATCH", "DELETE") and not path.startswith("/__fixture/"):
                self.record(path, q, body, e.code)
            self.reply_error(e)
        except Exception as e:  # a bug in the fixture: say so
            import traceback
            log(traceback.format_exc())
            self.reply_error(ApiError(500, "fixture: internal error: %r" % e))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any

    def record(self, path, q, body, status):
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with STORE.lock:
            STORE.writes.append({
                "method": self.command, "path": path, "query": q,
                "contentType": self.headers.get("Content-Type", ""),
                "fieldManager": q.get("fieldManager"), "force": q.get("force") == "true",
                "dryRun": q.get("dryRun"), "status": status, "body": parsed,
            })

    def control(self, path, q):
        what = path[len("/__fixture/"):]
        with STORE.lock:
            if what == "store":
                out = [{"group": g, "resource": r, "namespace": ns, "name": n, "object": o} for (g, r, ns, n), o in sorted(STORE.objects.items())]
                return self.reply(200, out)
            if what == "writes":
                return self.reply(200, STORE.writes)
            if what == "stats":
                return self.reply(200, STORE.stats)
            if self.command != "POST":
                raise ApiError(405, "fixture: POST " + path)
            if what == "wipe":
                STORE.wipe()
                STORE.writes = []
            elif what == "reset-stats":
                STORE.stats = {"by_method": {}, "by_path": {}, "by_status": {}}
                STORE.writes = []
            elif what == "expire":
                if q.get("resource"):
                    STORE.expire.add(q["resource"])
                else:
                    STORE.expire_all = True
            elif what == "forbid":
                if q.get("off"):
                    STORE.forbidden.discard(q["resource"])
                else:
                    STORE.forbidden.add(q["resource"])
            elif what == "fail":
                STORE.fail = (int(q.get("status", "503")), int(q.get("count", "1")), q.get("path", ""))
            elif what == "bulk":
                seed_bulk(STORE, int(q.get("n", "100")), q.get("namespace", "bulk"))
            else:
                raise ApiError(404, "fixture: no control " + what)
        return self.reply(200, {"ok": True})

    def api(self, path, q, body):
        if path in ("/healthz", "/livez", "/readyz"):
            return self.reply(200, b"ok")
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.4-fixture", "gitCommit": "0" * 40, "gitTreeState": "clean",
                                    "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.22.10", "compiler": "gc", "platform": "linux/amd64"})
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
        if not parts:
            return self.reply(200, {"paths": ["/api", "/api/v1", "/apis", "/version"]})
        with STORE.lock:
            if parts == ["api"]:
                return self.reply(200, STORE.api)
            if parts == ["apis"]:
                return self.reply(200, STORE.apis_doc())
            if parts[0] == "api" and len(parts) >= 2:
                group, version, rest = "", parts[1], parts[2:]
                if version != "v1":
                    raise ApiError(404, "the server could not find the requested resource")
                if not rest:
                    return self.reply(200, STORE.core)
            elif parts[0] == "apis" and len(parts) >= 2:
                group = parts[1]
                if len(parts) == 2:
                    for g in STORE.apis_doc()["groups"]:
                        if g["name"] == group:
                            return self.reply(200, dict(g, kind="APIGroup", apiVersion="v1"))
                    raise ApiError(404, "the server could not find the requested resource")
                version, rest = parts[2], parts[3:]
                if not rest:
                    doc = STORE.group_version_doc(group, version)
                    if doc is None:
                        raise ApiError(404, "the server could not find the requested resource")
                    return self.reply(200, doc)
            else:
                raise ApiError(404, "the server could not find the requested resource")
            ns = None
            if rest[0] == "namespaces" and len(rest) >= 3:
                ns, rest = rest[1], rest[2:]
            resource = rest[0]
            name = rest[1] if len(rest) > 1 else None
            if len(rest) > 2:
                raise ApiError(404, "fixture: subresource %s is not served" % rest[2])
            info = STORE.resource_info(group, resource)
            if info is None or version not in info["versions"]:
                raise ApiError(404, "the server could not find the requested resource")
            rname = resource + ("." + group if group else "")
            if rname in STORE.forbidden:
                verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(self.command, "get")
                raise ApiError(403, '%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s' % (
                    rname, self.user(), verb, resource, group, ("in the namespace \"%s\"" % ns) if ns else "at the cluster scope"),
                    details={"group": group, "kind": resource})
            if ns is not None and not info["namespaced"]:
                raise ApiError(404, "the server could not find the requested resource")
            api_version = (group + "/" if group else "") + version
            dry = q.get("dryRun") == "All"
            if self.command in ("GET", "HEAD"):
                if name is None:
                    return self.list(group, resource, info, ns, api_version, q)
                o = STORE.get(group, resource, ns or "", name)
                return self.reply(200, self.present(o, api_version, info))
            if self.command == "DELETE":
                if name is None:
                    raise ApiError(405, "fixture: deletecollection is not served")
                o = STORE.delete(group, resource, ns or "", name, dry)
                self.record(path, q, body, 200)
                return self.reply(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": resource, "uid": o["metadata"].get("uid")}})
            try:
                obj = json.loads(body) if body else None
            except ValueError:
                raise ApiError(415, "fixture: request bodies must be JSON (got %r...)" % body[:40])
            if not isinstance(obj, dict):
                raise ApiError(400, "fixture: the request body is not a JSON object")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            manager = q.get("fieldManager")
            if self.command == "POST":
                if name is not None:
                    raise ApiError(405, "the server does not allow this method on the requested resource")
                self.check_kind(obj, api_version, info)
                o = STORE.create(group, resource, ns, copy.deepcopy(obj), manager=manager or "unknown", dry=dry)
                self.record(path, q, body, 201)
                return self.reply(201, self.present(o, api_version, info))
            if name is None:
                raise ApiError(405, "the server does not allow this method on the requested resource")
            if self.command == "PUT":
                self.check_kind(obj, api_version, info)
                old = STORE.get(group, resource, ns or "", name)
                rv = obj.get("metadata", {}).get("resourceVersion")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise ApiError(409, 'Operation cannot be fulfilled on %s "%s": the object has been modified; please apply your changes to the latest version and try again' % (resource, name), reason="Conflict")
                new = copy.deepcopy(obj)
                new.setdefault("metadata", {})["name"] = name
                if ns:
                    new["metadata"]["namespace"] = ns
                STORE.server_fields(group, resource, new, manager or "unknown", "Update", old=old)
                if not dry:
                    STORE.put(group, resource, new)
                self.record(path, q, body, 200)
                return self.reply(200, self.present(new, api_version, info))
            if self.command == "PATCH":
                return self.patch(path, q, body, obj, ctype, group, resource, info, ns, name, api_version, manager, dry)
            raise ApiError(405, "the server does not allow this method on the requested resource")

    def check_kind(self, obj, api_version, info):
        if obj.get("kind") and obj["kind"] != info["kind"]:
            raise ApiError(400, "the kind %s of the body does not match the resource's %s" % (obj["kind"], info["kind"]))
        if obj.get("apiVersion") and obj["apiVersion"].rpartition("/")[0] != api_version.rpartition("/")[0]:
            raise ApiError(400, "the API version %s of the body does not match the request's %s" % (obj["apiVersion"], api_version))

    def patch(self, path, q, body, obj, ctype, group, resource, info, ns, name, api_version, manager, dry):
        if ctype == "application/apply-patch+yaml":
            if not manager:
                raise ApiError(422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch', reason="Invalid")
            self.check_kind(obj, api_version, info)
            if not obj.get("kind") or not obj.get("apiVersion"):
                raise ApiError(400, "fixture: an apply patch must name apiVersion and kind")
            md = obj.get("metadata", {})
            if md.get("name") and md["name"] != name:
                raise ApiError(400, "the name of the object (%s) does not match the name on the URL (%s)" % (md["name"], name))
            if info["namespaced"] and md.get("namespace") and md["namespace"] != ns:
                raise ApiError(400, "the namespace of the object (%s) does not match the namespace on the URL (%s)" % (md["namespace"], ns))
            for f in ("resourceVersion", "uid", "managedFields", "creationTimestamp"):
                if f == "managedFields" and md.get(f):
                    raise ApiError(400, "metadata.managedFields must be nil")
            try:
                old = STORE.get(group, resource, ns or "", name)
            except ApiError:
                old = None
            applied = copy.deepcopy(obj)
            applied.setdefault("metadata", {})["name"] = name
            if old is None:
                o = STORE.create(group, resource, ns, applied, manager=manager, operation="Apply", dry=dry)
                self.record(path, q, body, 201)
                return self.reply(201, self.present(o, api_version, info))
            last = [m for m in old["metadata"].get("managedFields", []) if m.get("operation") in ("Apply", "Update")]
            last_mgr = last[-1]["manager"] if last else manager
            new = merge_patch(old, applied)
            diff = first_diff(old, new)
            if diff and last_mgr != manager and q.get("force") != "true":
                raise ApiError(409, 'Apply failed with 1 conflict: conflict with "%s": %s' % (last_mgr, diff), reason="Conflict",
                               details={"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "%s"' % last_mgr, "field": diff}]})
            STORE.server_fields(group, resource, new, manager, "Apply", old=old, body=applied)
            if not dry:
                STORE.put(group, resource, new)
            self.record(path, q, body, 200)
            return self.reply(200, self.present(new, api_version, info))
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            old = STORE.get(group, resource, ns or "", name)
            new = merge_patch(old, obj)
            STORE.server_fields(group, resource, new, manager or "unknown", "Update", old=old, body=obj)
            if not dry:
                STORE.put(group, resource, new)
            self.record(path, q, body, 200)
            return self.reply(200, self.present(new, api_version, info))
        raise ApiError(415, "fixture: the patch type %r is not served (apply-patch+yaml, merge-patch+json and strategic-merge-patch+json are)" % ctype)

    def present(self, o, api_version, info, in_list=False):
        out = dict(o)
        if in_list and not info.get("custom"):
            out.pop("apiVersion", None)
            out.pop("kind", None)
        else:
            out["apiVersion"] = api_version
            out["kind"] = info["kind"]
        return out

    def list(self, group, resource, info, ns, api_version, q):
        reqs = parse_selector(q.get("labelSelector"))
        fsel = {}
        for part in (q.get("fieldSelector") or "").split(","):
            if part.strip():
                k, _, v = part.partition("=")
                fsel[k.strip()] = v.strip().lstrip("=")
        after = None
        rname = resource + ("." + group if group else "")
        if q.get("continue"):
            r, after = decode_continue(q["continue"])
            if r != rname:
                raise ApiError(400, "continue key is not valid: the key is for another resource")
            if STORE.expire_all or rname in STORE.expire:
                STORE.expire_all = False
                STORE.expire.discard(rname)
                raise ApiError(410, "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                               reason="Expired", cont=encode_continue(rname, after))
        items = []
        for (g, r, ons, n), o in sorted(STORE.objects.items()):
            if g != group or r != resource:
                continue
            if ns is not None and ons != ns:
                continue
            if after is not None and (ons, n) <= after:
                continue
            if not selector_matches(reqs, o.get("metadata", {}).get("labels")):
                continue
            if fsel.get("metadata.name") and n != fsel["metadata.name"]:
                continue
            if fsel.get("metadata.namespace") and ons != fsel["metadata.namespace"]:
                continue
            items.append(o)
        limit = int(q.get("limit") or 0)
        md = {"resourceVersion": str(STORE.rv)}
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            md["continue"] = encode_continue(rname, (last.get("namespace", ""), last["name"]))
            md["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        doc = {"kind": info["kind"] + "List", "apiVersion": api_version, "metadata": md,
               "items": [self.present(o, api_version, info, in_list=True) for o in items]}
        return self.reply(200, doc)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        # TLS handshakes that fail (a client that does not trust the CA) and
        # clients that go away: to the log, not to stderr
        log("connection from %s: %r" % (client_address, sys.exc_info()[1]))


def make_certs(d):
    os.makedirs(d, exist_ok=True)

    def run(*a):
        subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    for ca in ("ca", "other-ca"):
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
            "-subj", "/CN=fixture-%s" % ca, "-keyout", ca + ".key", "-out", ca + ".crt",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for who, subj in (("server", "/CN=127.0.0.1"), ("client", "/O=system:masters/CN=engine-backup")):
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subj,
            "-keyout", who + ".key", "-out", who + ".csr")
        run("openssl", "x509", "-req", "-in", who + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "30", "-extfile", who + ".ext", "-out", who + ".crt")
    for f in os.listdir(d):
        if f.endswith(".key"):
            os.chmod(os.path.join(d, f), 0o600)


def main():
    global STORE, ARGS, LOG
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("certs")
    c.add_argument("dir")
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--port-file")
    s.add_argument("--tls")
    s.add_argument("--client-ca", action="store_true")
    s.add_argument("--token", action="append", default=[])
    s.add_argument("--seed", choices=["realistic", "empty"], default="realistic")
    s.add_argument("--bulk", type=int, default=0)
    s.add_argument("--forbid", action="append", default=[])
    s.add_argument("--log")
    a = ap.parse_args()
    if a.cmd == "certs":
        make_certs(a.dir)
        return
    ARGS = a
    if a.log:
        LOG = open(a.log, "a")
    STORE = Store()
    if a.seed == "realistic":
        seed_realistic(STORE, a.bulk)
    else:
        for ns in SYSTEM_NAMESPACES:
            STORE.create("", "namespaces", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, manager="kube-apiserver")
        if a.bulk:
            seed_bulk(STORE, a.bulk)
    STORE.forbidden.update(a.forbid)
    srv = Server(("127.0.0.1", a.port), Handler)
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(a.tls, "server.crt"), os.path.join(a.tls, "server.key"))
        if a.client_ca:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(os.path.join(a.tls, "ca.crt"))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, a.port_file)
    log("listening on 127.0.0.1:%d (%s)" % (port, "https" if a.tls else "http"))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
