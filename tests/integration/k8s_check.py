#!/usr/bin/env python3
"""Checks of the k8s-yaml tests, independent of the plugin's C code: the
normalisation rules of docs/sources/k8s-yaml.md written again in Python, and
comparisons against kubectl's view of the (fixture) cluster.

    k8s_check.py expected KUBECTL KUBECONFIG OUT.json [--namespaces a,b] [--exclude-namespaces x]
                                              [--cluster auto|none|all] [--secrets]
        every object the backup should hold, as kubectl lists it, normalised the
        documented way: {"ITEM NAME": object}
    k8s_check.py compare-dir EXPECTED.json DIR
        the files under DIR (a restore --target DIR) parse as YAML and equal the
        expected objects, no more, no fewer
    k8s_check.py compare-store EXPECTED.json STORE.json [--namespace-map old=new] [--prefix P]
        the fixture's store (GET /__fixture/store) holds every expected object,
        equal once normalised the same way (server-assigned fields dropped);
        with a namespace map, the objects of namespace old (and its Namespace),
        expected under new with their namespace references rewritten; with a
        prefix, the expected objects whose item names start with it
    k8s_check.py stream-order FILE
        a --to-stdout stream: documents in apply order (CRDs, namespaces, ...)
"""
import json
import subprocess
import sys

import yaml

SKIP_RESOURCES = {
    "events", "events.events.k8s.io", "endpoints", "endpointslices.discovery.k8s.io",
    "leases.coordination.k8s.io", "nodes", "csinodes.storage.k8s.io",
    "volumeattachments.storage.k8s.io", "componentstatuses", "controllerrevisions.apps",
    "ipaddresses.networking.k8s.io", "storageversions.internal.apiserver.k8s.io",
    "certificatesigningrequests.certificates.k8s.io", "podcertificaterequests.certificates.k8s.io",
}
ANNOTATIONS_DROPPED = {
    "kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision",
    "pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/selected-node", "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
}
METADATA_DROPPED = {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                    "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences"}
JOB_LABELS = {"controller-uid", "batch.kubernetes.io/controller-uid", "job-name", "batch.kubernetes.io/job-name"}


def skipped(obj, group, resource):
    md = obj.get("metadata", {})
    if any(r.get("controller") for r in md.get("ownerReferences") or []):
        return "owned"
    if group == "" and resource == "secrets" and obj.get("type") == "kubernetes.io/service-account-token":
        return "token secret"
    if group == "" and resource == "configmaps" and md.get("name") == "kube-root-ca.crt":
        return "root ca"
    if group == "apiregistration.k8s.io" and "kube-aggregator.kubernetes.io/automanaged" in (md.get("labels") or {}):
        return "automanaged"
    return None


def drop_null_ts(v):
    if isinstance(v, dict):
        if "creationTimestamp" in v and v["creationTimestamp"] is None:
            del v["creationTimestamp"]
        for c in v.values():
            drop_null_ts(c)
    elif isinstance(v, list):
        for c in v:
            drop_null_ts(c)


def owned_fields(md):
    """(nodePort-owned ports as (port, protocol), healthCheckNodePort owned?)
    from managedFields."""
    ports, hc = set(), False
    for mf in md.get("managedFields") or []:
        spec = (mf.get("fieldsV1") or {}).get("f:spec") or {}
        hc = hc or "f:healthCheckNodePort" in spec
        for k, v in (spec.get("f:ports") or {}).items():
            if k.startswith("k:") and "f:nodePort" in v:
                pid = json.loads(k[2:])
                ports.add((pid.get("port"), pid.get("protocol")))
    return ports, hc


def normalize(obj, group, resource):
    """docs/sources/k8s-yaml.md, "Normalisation"."""
    o = json.loads(json.dumps(obj))
    md = o.setdefault("metadata", {})
    owned_ports, owned_hc = owned_fields(md)
    applied = {}
    la = (md.get("annotations") or {}).get("kubectl.kubernetes.io/last-applied-configuration")
    if la:
        applied = json.loads(la).get("spec", {}) or {}
    o.pop("status", None)
    for k in METADATA_DROPPED:
        md.pop(k, None)
    ann = md.get("annotations")
    if ann is not None:
        for k in ANNOTATIONS_DROPPED:
            ann.pop(k, None)
        if not ann:
            del md["annotations"]
    drop_null_ts(o)
    spec = o.get("spec")
    if group == "" and resource == "services" and isinstance(spec, dict):
        if spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        for p in spec.get("ports") or []:
            chosen = any(ap.get("port") == p.get("port") and "nodePort" in ap for ap in applied.get("ports") or []) or \
                (p.get("port"), p.get("protocol")) in owned_ports
            if "nodePort" in p and not chosen:
                del p["nodePort"]
        if "healthCheckNodePort" in spec and "healthCheckNodePort" not in applied and not owned_hc:
            del spec["healthCheckNodePort"]
    elif group == "" and resource == "namespaces":
        labels = md.get("labels")
        if labels is not None:
            labels.pop("kubernetes.io/metadata.name", None)
            if not labels:
                del md["labels"]
        if isinstance(spec, dict):
            if spec.get("finalizers") == ["kubernetes"]:
                del spec["finalizers"]
            if not spec:
                del o["spec"]
    elif group == "" and resource == "persistentvolumes":
        cref = (spec or {}).get("claimRef")
        if isinstance(cref, dict):
            cref.pop("uid", None)
            cref.pop("resourceVersion", None)
    elif group == "" and resource == "serviceaccounts":
        secrets = o.get("secrets")
        if isinstance(secrets, list):
            o["secrets"] = [s for s in secrets if not str(s.get("name", "")).startswith(md.get("name", "") + "-token-")]
            if not o["secrets"]:
                del o["secrets"]
    elif group == "" and resource == "pods" and isinstance(spec, dict):
        spec.pop("nodeName", None)
        spec.pop("priority", None)
        if "volumes" in spec:
            spec["volumes"] = [v for v in spec["volumes"] if not v.get("name", "").startswith("kube-api-access-")]
            if not spec["volumes"]:
                del spec["volumes"]
        for lst in ("containers", "initContainers", "ephemeralContainers"):
            for c in spec.get(lst) or []:
                if "volumeMounts" in c:
                    c["volumeMounts"] = [m for m in c["volumeMounts"] if not m.get("name", "").startswith("kube-api-access-")]
                    if not c["volumeMounts"]:
                        del c["volumeMounts"]
    elif group == "batch" and resource == "jobs" and isinstance(spec, dict) and not spec.get("manualSelector"):
        spec.pop("selector", None)
        tmd = (spec.get("template") or {}).get("metadata")
        if isinstance(tmd, dict) and isinstance(tmd.get("labels"), dict):
            for k in JOB_LABELS:
                tmd["labels"].pop(k, None)
            if not tmd["labels"]:
                del tmd["labels"]
        if isinstance(md.get("labels"), dict):
            for k in JOB_LABELS:
                md["labels"].pop(k, None)
            if not md["labels"]:
                del md["labels"]
    return o


def item_name(full, obj, namespaced):
    md = obj["metadata"]
    if namespaced:
        return "%s/%s/%s.yaml" % (md["namespace"], full, md["name"])
    return "_cluster/%s/%s.yaml" % (full, md["name"])


def kubectl(kc, args, kubeconfig):
    r = subprocess.run([kc, "--kubeconfig", kubeconfig] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("kubectl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr[-2000:]))
    return r.stdout


def api_resources(kc, kubeconfig):
    """[(full name, group, resource, namespaced, kind)] from kubectl api-resources."""
    out = kubectl(kc, ["api-resources", "--verbs=list", "--no-headers"], kubeconfig)
    res = []
    for line in out.splitlines():
        f = line.split()
        # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND
        name, kind, namespaced, apiver = f[0], f[-1], f[-2] == "true", f[-3]
        group = apiver.rpartition("/")[0]
        full = name + ("." + group if group else "")
        res.append((full, group, name, namespaced, kind))
    return res


def glob_any(globs, s):
    import fnmatch
    return any(fnmatch.fnmatchcase(s, g) for g in globs)


def expected(argv):
    kc, kubeconfig, out = argv[0], argv[1], argv[2]
    opts = {"namespaces": [], "exclude": [], "cluster": "auto", "secrets": False}
    i = 3
    while i < len(argv):
        a = argv[i]
        if a == "--namespaces":
            opts["namespaces"] = argv[i + 1].split(","); i += 2
        elif a == "--exclude-namespaces":
            opts["exclude"] = argv[i + 1].split(","); i += 2
        elif a == "--cluster":
            opts["cluster"] = argv[i + 1]; i += 2
        elif a == "--secrets":
            opts["secrets"] = True; i += 1
        else:
            sys.exit("unknown option " + a)

    def ns_selected(ns):
        if opts["namespaces"] and not glob_any(opts["namespaces"], ns):
            return False
        return not glob_any(opts["exclude"], ns)

    res = [r for r in api_resources(kc, kubeconfig) if r[0] not in SKIP_RESOURCES and not r[1] == "metrics.k8s.io"]
    if not opts["secrets"]:
        res = [r for r in res if r[0] != "secrets"]
    by_kind = {(r[1], r[4]): r for r in res}
    listing = json.loads(kubectl(kc, ["get", ",".join(r[0] for r in res), "-A", "-o", "json"], kubeconfig))
    result = {}
    need = {"pv": set(), "crole": set(), "crd": set()}
    cluster_objs = {}
    for obj in listing["items"]:
        group = obj["apiVersion"].rpartition("/")[0]
        r = by_kind.get((group, obj["kind"]))
        if r is None:
            sys.exit("kubectl listed %s %s, which api-resources does not name" % (obj["apiVersion"], obj["kind"]))
        full, group, resource, namespaced, kind = r
        if not namespaced:
            cluster_objs.setdefault(full, []).append(obj)
            continue
        if not ns_selected(obj["metadata"]["namespace"]):
            continue
        if skipped(obj, group, resource):
            continue
        if group == "" and resource == "persistentvolumeclaims" and obj.get("spec", {}).get("volumeName"):
            need["pv"].add(obj["spec"]["volumeName"])
        if group == "rbac.authorization.k8s.io" and resource == "rolebindings" and obj.get("roleRef", {}).get("kind") == "ClusterRole":
            need["crole"].add(obj["roleRef"]["name"])
        if group:
            need["crd"].add(full)
        result[item_name(full, obj, True)] = normalize(obj, group, resource)
    full_of = {r[0]: r for r in res}
    for full, objs in cluster_objs.items():
        full_, group, resource, namespaced, kind = full_of[full]
        for obj in objs:
            name = obj["metadata"]["name"]
            if full == "namespaces":
                keep = opts["cluster"] != "none" and ns_selected(name)
            elif opts["cluster"] == "all":
                keep = True
            elif opts["cluster"] == "auto":
                keep = (full == "persistentvolumes" and name in need["pv"]) or \
                       (full == "clusterroles.rbac.authorization.k8s.io" and name in need["crole"]) or \
                       (full == "customresourcedefinitions.apiextensions.k8s.io" and name in need["crd"])
            else:
                keep = False
            if keep and not skipped(obj, group, resource):
                result[item_name(full, obj, False)] = normalize(obj, group, resource)
    with open(out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(len(result))


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                return "%s.%s only in the second" % (path, k)
            if k not in b:
                return "%s.%s only in the first" % (path, k)
            d = diff(a[k], b[k], path + "." + k)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return "%s: %d items against %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if a != b or type(a) != type(b):
        return "%s: %r != %r" % (path, a, b)
    return None


def compare_dir(argv):
    import os
    exp = json.load(open(argv[0]))
    root = argv[1]
    got = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            with open(p, "rb") as fh:
                got[rel] = yaml.safe_load(fh)
    bad = []
    for k in sorted(set(exp) | set(got)):
        if k not in got:
            bad.append("missing from the restore: " + k)
        elif k not in exp:
            bad.append("not expected: " + k)
        else:
            d = diff(exp[k], got[k])
            if d:
                bad.append("%s differs at %s" % (k, d))
    if bad:
        sys.exit("\n".join(bad[:40]))
    print("%d objects equal" % len(exp))


def compare_store(argv):
    exp = json.load(open(argv[0]))
    store = json.load(open(argv[1]))
    nsmap = {}
    prefix = ""
    i = 2
    while i + 1 < len(argv):
        if argv[i] == "--namespace-map":
            a, b = argv[i + 1].split("=")
            nsmap[a] = b
        elif argv[i] == "--prefix":
            prefix = argv[i + 1]
        else:
            sys.exit("unknown option " + argv[i])
        i += 2
    have = {}
    for e in store:
        g, r = e["group"], e["resource"]
        full = r + ("." + g if g else "")
        o = e["object"]
        ns = e["namespace"]
        have[("%s/%s/%s.yaml" % (ns, full, e["name"])) if ns else ("_cluster/%s/%s.yaml" % (full, e["name"]))] = normalize(o, g, r)
    bad = []
    checked = 0
    for k, v in sorted(exp.items()):
        if not k.startswith(prefix):
            continue
        # with a namespace map: the mapped namespace's objects and its Namespace
        # (cluster-scoped objects that refer to it exist already and are left
        # as they are)
        if nsmap and not any(k.startswith(a + "/") or k == "_cluster/namespaces/%s.yaml" % a for a in nsmap):
            continue
        v = json.loads(json.dumps(v))
        key = k
        for a, b in nsmap.items():
            if k.startswith(a + "/"):
                key = b + k[len(a):]
            if k == "_cluster/namespaces/%s.yaml" % a:
                key = "_cluster/namespaces/%s.yaml" % b
            v = remap(v, a, b, g_r(k))
        checked += 1
        if key not in have:
            bad.append("not in the cluster after the restore: " + key)
            continue
        d = diff(v, have[key])
        if d:
            bad.append("%s differs at %s" % (key, d))
    if bad:
        sys.exit("\n".join(bad[:40]))
    print("%d objects restored equal" % checked)


def g_r(item):
    full = item.split("/")[1]
    r, _, g = full.partition(".")
    return g, r


def remap(v, a, b, gr, depth=0):
    """Every field named namespace equal to a becomes b (except ConfigMap and
    Secret data), and a Namespace named a is named b."""
    g, r = gr
    def walk(x, top):
        if isinstance(x, dict):
            out = {}
            for k, c in x.items():
                if top and g == "" and r in ("configmaps", "secrets") and k in ("data", "stringData", "binaryData"):
                    out[k] = c
                elif k == "namespace" and c == a:
                    out[k] = b
                else:
                    out[k] = walk(c, False)
            return out
        if isinstance(x, list):
            return [walk(c, False) for c in x]
        return x
    v = walk(v, True)
    if g == "" and r == "namespaces" and v.get("metadata", {}).get("name") == a:
        v["metadata"]["name"] = b
    return v


PRIO = {("apiextensions.k8s.io", "CustomResourceDefinition"): 0, ("", "Namespace"): 1}


def stream_order(argv):
    docs = [d for d in yaml.safe_load_all(open(argv[0], "rb")) if d is not None]
    seen_other = False
    kinds = []
    for d in docs:
        p = PRIO.get((d["apiVersion"].rpartition("/")[0], d["kind"]), 9)
        kinds.append(d["kind"])
        if p < 9 and seen_other:
            sys.exit("%s %s comes after objects that need it: %s" % (d["kind"], d["metadata"]["name"], kinds))
        if p == 9:
            seen_other = True
    first_ns = kinds.index("Namespace") if "Namespace" in kinds else 0
    if "CustomResourceDefinition" in kinds and kinds.index("CustomResourceDefinition") > first_ns:
        sys.exit("a CRD comes after a namespace: %s" % kinds)
    print(len(docs))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"expected": expected, "compare-dir": compare_dir, "compare-store": compare_store, "stream-order": stream_order}[cmd](args)
