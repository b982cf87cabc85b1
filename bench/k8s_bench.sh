#!/usr/bin/env bash
# Benchmark: objects per second of a k8s-yaml backup (`engine run`: discovery,
# paginated lists, normalisation, YAML, zstd 3, aes-256-gcm, local sink)
# against `kubectl get -A -o yaml` of the same resources, on the same fixture
# API server (tests/servers/k8s_fixture.py over TLS with a bearer token: the
# realistic cluster plus N ConfigMaps). Prints the figures; asserts nothing.
#
#   bench/k8s_bench.sh [OBJECTS] [REPEATS]      defaults: 10000, 3
#
# ENGINE_BIN selects the engine (default build/engine and its plugins/),
# KUBECTL the kubectl (default: kubectl on the PATH; KUBECTL2 adds a second
# one to the table, e.g. Debian's 1.20 next to a newer one). The fixture is
# one Python process: it bounds both clients alike, so the ratio says more
# than the absolute rates (a real API server answers faster).
set -euo pipefail
OBJECTS=${1:-10000}
REPEATS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENGINE_BIN=${ENGINE_BIN:-$ROOT/build/engine}
[ -x "$ENGINE_BIN" ] || { echo "k8s_bench: no engine at '$ENGINE_BIN' (set ENGINE_BIN)" >&2; exit 1; }
export ENGINE_PLUGIN_PATH=${ENGINE_PLUGIN_PATH:-$(dirname "$ENGINE_BIN")/plugins}
KUBECTL=${KUBECTL:-kubectl}
command -v "$KUBECTL" >/dev/null || { echo "k8s_bench: kubectl is required" >&2; exit 1; }
FIXTURE=$ROOT/tests/servers/k8s_fixture.py
TOKEN=bench-token-31f2

W=$(mktemp -d "${TMPDIR:-/tmp}/engine-k8sbench.XXXXXX")
PID=
cleanup() {
  [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
  [ -z "$PID" ] || wait "$PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

python3 "$FIXTURE" certs "$W/certs" >/dev/null
python3 "$FIXTURE" serve --tls "$W/certs" --token "$TOKEN" --bulk "$OBJECTS" --port-file "$W/port" \
  --log "$W/fixture.log" &
PID=$!
for _ in $(seq 1 600); do [ -s "$W/port" ] && break; sleep 0.1; done
[ -s "$W/port" ] || { echo "k8s_bench: the fixture did not start" >&2; exit 1; }
URL=https://127.0.0.1:$(cat "$W/port")
cat >"$W/kc" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: bench, cluster: {server: "$URL", certificate-authority-data: $(base64 -w0 <"$W/certs/ca.crt")}}]
users: [{name: bench, user: {token: $TOKEN}}]
contexts: [{name: bench, context: {cluster: bench, user: bench}}]
current-context: bench
EOF
cat >"$W/p.yml" <<EOF
version: 1
name: k8s-bench
sources:
  - name: cluster
    type: k8s-yaml
    with: {kubeconfig: "$W/kc", cluster_resources: all}
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - name: local
    type: local
    with: {path: "$W/repo"}
EOF
export ENGINE_PASSPHRASE=bench ENGINE_CACHE_DIR=$W/cache

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

# the resources kubectl lists: every listable one, as the engine discovers them
types=$("$KUBECTL" --kubeconfig "$W/kc" api-resources --verbs=list -o name | paste -sd, -)

printf '%-40s %8s %7s %10s %6s %8s\n' "run" "objects" "wall s" "objects/s" "CPU s" "RSS MiB"
row() { printf '%-40s %8s %7s %10s %6s %8s\n' "$@"; }
cpu() { awk '{ printf "%.2f", $2 + $3 }' "$W/rss"; }
rss() { awk '{ printf "%d", $1 / 1024 }' "$W/rss"; }
for r in $(seq 1 "$REPEATS"); do
  rm -rf "$W/repo" "$W/cache"
  for label in "engine run (first)" "engine run (unchanged)"; do
    t0=$(now)
    /usr/bin/time -f '%M %U %S' -o "$W/rss" "$ENGINE_BIN" run "$W/p.yml" --json >"$W/run.json" 2>"$W/run.err" ||
      { cat "$W/run.err" >&2; exit 1; }
    t1=$(now)
    n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["items"])' "$W/run.json")
    row "$label #$r" "$n" "$(secs "$t0" "$t1")" "$(rate "$n" "$(secs "$t0" "$t1")")" "$(cpu)" "$(rss)"
  done
  for kc in "$KUBECTL" ${KUBECTL2:-}; do
    v=$("$kc" version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"].split("-")[0])' || echo "?")
    t0=$(now)
    /usr/bin/time -f '%M %U %S' -o "$W/rss" "$kc" --kubeconfig "$W/kc" get "$types" -A -o yaml >"$W/all.yaml" 2>"$W/kubectl.err" ||
      { cat "$W/kubectl.err" >&2; exit 1; }
    t1=$(now)
    n=$(grep -c '^- apiVersion: ' "$W/all.yaml" || true)
    row "kubectl $v get -A -o yaml #$r" "$n" "$(secs "$t0" "$t1")" "$(rate "$n" "$(secs "$t0" "$t1")")" "$(cpu)" "$(rss)"
  done
done
echo "(engine counts the objects it backed up: controller-owned ones, events, endpoints ... are left out; kubectl prints everything it lists)"
