#!/usr/bin/env bash
# k8s-yaml backup against the fixture API server (tests/servers/k8s_fixture.py:
# real discovery documents, a realistic cluster, TLS and a bearer token),
# checked with independent clients:
#   - Debian's python3-kubernetes loads the kubeconfig the test writes and
#     lists the namespaces through it;
#   - restore --target DIR equals `kubectl get -A -o json` of every listable
#     resource, normalised the documented way in Python (k8s_check.py), no
#     object more or fewer (controller-owned objects, token Secrets, events,
#     endpoints ... left out; namespaces, the CRD, bound PVs and bound
#     ClusterRoles added by cluster_resources auto);
#   - `kubectl apply --server-side --validate=false -R -f` of DIR/_cluster,
#     then of DIR, accepts the files against a new (empty) fixture cluster,
#     which then holds them;
#   - Secrets are not backed up by default; with include_secrets they are, and
#     neither the repository nor the engine's output holds their data in
#     plaintext (nor base64); restored Secret files are 0600;
#   - 403 on one resource: a warning naming it, exit 3 (partial), the rest
#     backed up; an expired continue token (410) restarts that list without
#     duplicates; 503s and 429s are retried; a second run of an unchanged cluster
#     stores (almost) nothing new;
#   - namespaces / exclude_namespaces / cluster_resources none|all /
#     label_selector / resources select what they say;
#   - conf.d/k8s.yml validates and kubectl takes conf.d/k8s-backup-cronjob.yaml.
# What the fixture cannot show (see its docstring): controllers, admission,
# real field ownership; the lists' continuation is not a snapshot.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$TESTS_INTEGRATION_DIR/k8s_helpers.sh"
k8s_require_clients

k8s_certs
k8s_start main --tls "$T/certs" --token "$K8S_TOKEN"
MAIN=$K8S_URL
k8s_kubeconfig "$T/kc" "$MAIN" token "$K8S_TOKEN"

note "python3-kubernetes reads the kubeconfig"
/usr/bin/python3 - "$T/kc" >"$T/pyk8s.out" 2>&1 <<'EOF' || { show "$T/pyk8s.out"; fail "python3-kubernetes could not use the kubeconfig"; }
import sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1])
names = sorted(n.metadata.name for n in client.CoreV1Api().list_namespace().items)
assert names == ["billing", "default", "kube-node-lease", "kube-public", "kube-system", "monitoring", "shop"], names
print("namespaces:", " ".join(names))
EOF

note "backup (defaults: all namespaces, cluster_resources auto, no Secrets)"
k8s_pipeline "$T/p.yml" k8s "$T/repo" "$T/kc" "page_size: 4"
run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run1.json" 'j["status"]')" "first backup status"
run_ok "$T/r1.out" "$T/r1.err" restore "$T/p.yml" latest --target "$T/out1"
"$PYTHON" "$K8S_CHECK" expected "$KUBECTL" "$T/kc" "$T/exp1.json" >/dev/null
"$PYTHON" "$K8S_CHECK" compare-dir "$T/exp1.json" "$T/out1" || fail "the restored files differ from kubectl's view"
[ ! -e "$T/out1/shop/secrets" ] || fail "Secrets were backed up although include_secrets is false"
[ ! -e "$T/out1/shop/pods/web-5d8f7c9b6-abcde.yaml" ] || fail "a Pod owned by a ReplicaSet was backed up"
[ -f "$T/out1/shop/pods/debug-shell.yaml" ] || fail "a bare Pod was not backed up"
[ -f "$T/out1/_cluster/customresourcedefinitions.apiextensions.k8s.io/widgets.example.com.yaml" ] ||
  fail "the CRD of a backed-up custom resource is missing"
[ ! -e "$T/out1/_cluster/customresourcedefinitions.apiextensions.k8s.io/gadgets.tools.example.org.yaml" ] ||
  fail "cluster_resources auto took a CRD no backed-up object needs"
# the snapshot's marks and item metadata
run_ok "$T/show.json" "$T/show.err" show "$T/p.yml" latest --json
json_get "$T/show.json" 'j["sources"][0]["marks"]["server_version"]' | grep -q v1.31 ||
  fail "the server version mark is missing"
assert_contains "$T/show.json" '"configmaps"' "the list resourceVersions mark"

note "kubectl apply --server-side takes the restored files (a new cluster)"
k8s_start fresh --tls "$T/certs" --token "$K8S_TOKEN" --seed empty
FRESH=$K8S_URL
k8s_kubeconfig "$T/kc-fresh" "$FRESH" token "$K8S_TOKEN"
# kubectl maps every file to a resource before it applies any, so custom
# resources need their CRDs applied first: the cluster-scoped objects, then
# everything (docs/sources/k8s-yaml.md says the same)
for d in "$T/out1/_cluster" "$T/out1"; do
  "$KUBECTL" --kubeconfig "$T/kc-fresh" apply --server-side --validate=false -R -f "$d" \
    >>"$T/apply.out" 2>&1 || { show "$T/apply.out"; fail "kubectl apply --server-side refused the restored files"; }
done
k8s_ctl "$FRESH" /__fixture/store >"$T/fresh-store.json"
"$PYTHON" "$K8S_CHECK" compare-store "$T/exp1.json" "$T/fresh-store.json" ||
  fail "after kubectl apply, the new cluster does not hold the backed-up objects"

note "an unchanged cluster: the second backup stores almost nothing"
run_ok "$T/run2.json" "$T/run2.err" run "$T/p.yml" --json
new2=$(json_get "$T/run2.json" 'j["new_bytes"]')
stored2=$(json_get "$T/run2.json" 'j["stored_bytes"]')
note "second run: new $new2 bytes, stored $stored2 bytes"
[ "$new2" -lt 2048 ] || fail "an unchanged cluster added $new2 new bytes (expected ~0)"

note "include_secrets: Secrets backed up, never in plaintext outside the restore"
k8s_pipeline "$T/ps.yml" k8s-secrets "$T/repo-s" "$T/kc" "include_secrets: true"
run_ok "$T/runs.json" "$T/runs.err" -v run "$T/ps.yml" --json
run_ok "$T/rs.out" "$T/rs.err" restore "$T/ps.yml" latest --target "$T/outs"
"$PYTHON" "$K8S_CHECK" expected "$KUBECTL" "$T/kc" "$T/exps.json" --secrets >/dev/null
"$PYTHON" "$K8S_CHECK" compare-dir "$T/exps.json" "$T/outs" || fail "the restored Secrets differ"
[ -f "$T/outs/shop/secrets/shop-db.yaml" ] || fail "the Secret shop-db was not backed up"
[ ! -e "$T/outs/shop/secrets/default-token-shop.yaml" ] || fail "a service-account token Secret was backed up"
assert_eq 600 "$(stat -c %a "$T/outs/shop/secrets/shop-db.yaml")" "mode of a restored Secret"
pw=s3cr3t-shop-PASSWORD-4711
pw64=$(printf %s "$pw" | base64 -w0)
for needle in "$pw" "$pw64" "billing-KEY-do-not-leak-9313"; do
  if grep -rqaF -- "$needle" "$T/repo-s" "$T/runs.json" "$T/runs.err" "$T/rs.err" "$T/cache" 2>/dev/null; then
    fail "a Secret's data ($needle) is readable outside the restored files"
  fi
done

note "403 on one resource: a warning naming it, a partial snapshot"
k8s_ctl "$MAIN" -X POST "/__fixture/forbid?resource=configmaps" >/dev/null
run_engine "$T/run3.json" "$T/run3.err" run "$T/p.yml" --json
assert_rc 3 "backup with configmaps forbidden" "$T/run3.json" "$T/run3.err"
assert_eq partial "$(json_get "$T/run3.json" 'j["status"]')" "status with a 403"
json_get "$T/run3.json" 'j["warnings"]' | grep -q 'configmaps is forbidden' ||
  { show "$T/run3.json"; fail "the warning does not name the forbidden resource"; }
run_ok "$T/r3.out" "$T/r3.err" restore "$T/p.yml" latest --target "$T/out3"
[ ! -e "$T/out3/shop/configmaps" ] || fail "configmaps restored although they were forbidden"
[ -f "$T/out3/shop/deployments.apps/web.yaml" ] || fail "a 403 on configmaps lost the other resources"
k8s_ctl "$MAIN" -X POST "/__fixture/forbid?resource=configmaps&off=1" >/dev/null

note "an expired continue token (410) restarts the list; 503s and 429s are retried"
k8s_ctl "$MAIN" -X POST "/__fixture/expire?resource=configmaps" >/dev/null
k8s_ctl "$MAIN" -X POST "/__fixture/reset-stats" >/dev/null
k8s_ctl "$MAIN" -X POST "/__fixture/fail?status=503&count=2&path=/apis/apps/v1/deployments" >/dev/null
run_ok "$T/run4.json" "$T/run4.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run4.json" 'j["status"]')" "status after a 410 and two 503s"
assert_contains "$T/run4.err" "expired" "the log of the restarted list"
k8s_ctl "$MAIN" /__fixture/stats >"$T/stats4.json"
assert_eq 1 "$(json_get "$T/stats4.json" 'j["by_status"].get("410", 0)')" "410 answers"
assert_eq 2 "$(json_get "$T/stats4.json" 'j["by_status"].get("503", 0)')" "503 answers"
k8s_ctl "$MAIN" -X POST "/__fixture/fail?status=429&count=3&path=/api/v1/services" >/dev/null
run_ok "$T/run4b.json" "$T/run4b.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run4b.json" 'j["status"]')" "status after three 429s"
run_ok "$T/r4.out" "$T/r4.err" restore "$T/p.yml" latest --target "$T/out4"
"$PYTHON" "$K8S_CHECK" compare-dir "$T/exp1.json" "$T/out4" || fail "a restarted list lost or doubled objects"

note "namespaces, exclude_namespaces, cluster_resources, label_selector, resources"
k8s_pipeline "$T/pn.yml" k8s-ns "$T/repo-n" "$T/kc" "namespaces: [shop, 'bill*', monitoring]" \
  "exclude_namespaces: [monitoring]" "cluster_resources: none"
run_ok "$T/run5.json" "$T/run5.err" run "$T/pn.yml" --json
run_ok "$T/r5.out" "$T/r5.err" restore "$T/pn.yml" latest --target "$T/out5"
"$PYTHON" "$K8S_CHECK" expected "$KUBECTL" "$T/kc" "$T/exp5.json" --namespaces 'shop,bill*,monitoring' \
  --exclude-namespaces monitoring --cluster none >/dev/null
"$PYTHON" "$K8S_CHECK" compare-dir "$T/exp5.json" "$T/out5" || fail "namespace selection"
k8s_pipeline "$T/pa.yml" k8s-all "$T/repo-a" "$T/kc" "exclude_namespaces: ['kube-*']" "cluster_resources: all"
run_ok "$T/run6.json" "$T/run6.err" run "$T/pa.yml" --json
run_ok "$T/r6.out" "$T/r6.err" restore "$T/pa.yml" latest --target "$T/out6"
"$PYTHON" "$K8S_CHECK" expected "$KUBECTL" "$T/kc" "$T/exp6.json" --exclude-namespaces 'kube-*' --cluster all >/dev/null
"$PYTHON" "$K8S_CHECK" compare-dir "$T/exp6.json" "$T/out6" || fail "cluster_resources all"
k8s_pipeline "$T/pl.yml" k8s-label "$T/repo-l" "$T/kc" "label_selector: 'app in (web, ledger)'" \
  "resources: [deployments, configmaps, '*.example.com']" "cluster_resources: none"
run_ok "$T/run7.json" "$T/run7.err" run "$T/pl.yml" --json
run_ok "$T/r7.out" "$T/r7.err" restore "$T/pl.yml" latest --target "$T/out7"
got=$(cd "$T/out7" && find . -type f | sort | tr '\n' ' ')
assert_eq "./billing/deployments.apps/ledger.yaml ./shop/configmaps/shop-config.yaml ./shop/deployments.apps/web.yaml " \
  "$got" "objects selected by label_selector and resources"

note "conf.d: the example pipeline validates, kubectl takes the CronJob manifest"
run_ok "$T/v.out" "$T/v.err" validate "$REPO_ROOT/conf.d/k8s.yml"
"$KUBECTL" --kubeconfig "$T/kc" apply --dry-run=client --validate=false \
  -f "$REPO_ROOT/conf.d/k8s-backup-cronjob.yaml" >"$T/cron.out" 2>&1 ||
  { show "$T/cron.out"; fail "kubectl does not take conf.d/k8s-backup-cronjob.yaml"; }
assert_contains "$T/cron.out" "cronjob.batch/engine-k8s-backup created (dry run)" "the CronJob"

note "ok"
