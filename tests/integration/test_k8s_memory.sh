#!/usr/bin/env bash
# k8s-yaml at 5,000 objects: the backup's peak RSS is flat (5,000 ConfigMaps
# against 500: below 1.2x + 8 MiB), the lists are paginated (page_size 500:
# ten requests for the ConfigMaps of one namespace, not one huge answer), the
# restore to a directory gives every object back, and an unchanged second
# run stores almost nothing. Measured with /usr/bin/time -v on a build
# without sanitizers ($ENGINE_BIN_PLAIN, which tests/run-all.sh builds into
# build/; ASan's quarantine makes RSS grow with what was ever allocated).
# The fixture serves the objects from memory over plain HTTP (no TLS cost).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$TESTS_INTEGRATION_DIR/k8s_helpers.sh"

[ -x /usr/bin/time ] || fail "/usr/bin/time is required (Debian package 'time')"
bin=${ENGINE_BIN_PLAIN:-}
if [ -z "$bin" ]; then
  ldd "$ENGINE_BIN" | grep -q libasan &&
    fail "ENGINE_BIN=$ENGINE_BIN is built with AddressSanitizer; set ENGINE_BIN_PLAIN to a build without sanitizers"
  bin=$ENGINE_BIN
fi
ldd "$bin" | grep -q libasan && fail "ENGINE_BIN_PLAIN=$bin is built with AddressSanitizer; its RSS says nothing"
plugdir=$(dirname "$bin")/plugins

k8s_start small --seed empty --bulk 500
SMALL=$K8S_URL
k8s_start large --seed empty --bulk 5000
LARGE=$K8S_URL

peak_kib() { # NAME URL: back up, print the peak RSS in KiB
  k8s_kubeconfig "$T/kc-$1" "$2" none
  k8s_pipeline "$T/$1.yml" "mem-$1" "$T/repo-$1" "$T/kc-$1" "namespaces: [bulk]"
  local rc=0
  ENGINE_PLUGIN_PATH="$plugdir" /usr/bin/time -v -o "$T/$1.time" "$bin" run "$T/$1.yml" --json \
    >"$T/$1.json" 2>"$T/$1.err" </dev/null || rc=$?
  [ "$rc" -eq 0 ] || { show "$T/$1.json" "$T/$1.err"; fail "backup $1 exited with $rc"; }
  sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$T/$1.time"
}

small=$(peak_kib small "$SMALL")
assert_eq 502 "$(json_get "$T/small.json" 'j["items"]')" "items of the small backup (500 ConfigMaps, the ServiceAccount and the Namespace)"
large=$(peak_kib large "$LARGE")
assert_eq 5002 "$(json_get "$T/large.json" 'j["items"]')" "items of the large backup"
limit=$((small * 6 / 5 + 8 * 1024))
secs=$(json_get "$T/large.json" 'j["duration_seconds"]')
note "peak RSS: 500 objects -> $((small / 1024)) MiB, 5,000 -> $((large / 1024)) MiB (limit $((limit / 1024)) MiB); 5,000 objects in $secs s"
[ "$large" -lt "$limit" ] || fail "peak RSS grows with the number of objects: $large KiB against $small KiB"

k8s_ctl "$LARGE" /__fixture/stats >"$T/stats.json"
pages=$(json_get "$T/stats.json" 'sum(v for k, v in j["by_path"].items() if k == "GET /api/v1/namespaces/bulk/configmaps")')
assert_eq 11 "$pages" "list requests for 5,001 ConfigMaps (kube-root-ca.crt too) with page_size 500"

ENGINE_PLUGIN_PATH="$plugdir" "$bin" restore "$T/large.yml" latest --target "$T/out" >"$T/r.out" 2>"$T/r.err" ||
  { show "$T/r.err"; fail "restore of 5,000 objects"; }
assert_eq 5000 "$(find "$T/out/bulk/configmaps" -name '*.yaml' | wc -l)" "restored ConfigMaps"
ENGINE_PLUGIN_PATH="$plugdir" "$bin" run "$T/large.yml" --json >"$T/large2.json" 2>"$T/large2.err" ||
  { show "$T/large2.err"; fail "second backup"; }
new2=$(json_get "$T/large2.json" 'j["new_bytes"]')
[ "$new2" -lt 4096 ] || fail "an unchanged cluster of 5,000 objects added $new2 new bytes"
note "ok"
