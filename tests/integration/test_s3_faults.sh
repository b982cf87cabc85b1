#!/usr/bin/env bash
# Retries of the s3 sink through tests/servers/faultproxy.py in front of a
# real Ceph radosgw: 503s, 500s, connection resets, lost replies and truncated
# responses injected during uploads (single PUTs and multipart) and downloads
# are retried, and every run / restore still succeeds byte for byte. The proxy
# reports how many faults it injected, so the test knows they were hit. Then a
# sink that stays down (the proxy killed mid-run) makes the run fail cleanly:
# exit 1, a message naming the sink, no new snapshot in the bucket.
#
# Needs: ceph-mon ceph-osd radosgw awscli (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

AWS=${AWS_CLI:-/usr/bin/aws}
[ -x "$AWS" ] || AWS=$(command -v aws || true)
[ -n "$AWS" ] || fail "awscli is required (apt-get install -y --no-install-recommends awscli)"
CEPH_SH="$REPO_ROOT/tests/servers/ceph.sh"
PROXY_PY="$REPO_ROOT/tests/servers/faultproxy.py"

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
MONPORT=$(free_port)
PPORT=$(free_port)
CEPH_DIR=$T/ceph
PROXY_PID=
stop_proxy() {
  if [ -n "$PROXY_PID" ]; then
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
  fi
}
cleanup_servers() {
  stop_proxy
  [ "$1" -eq 0 ] || bash "$CEPH_SH" logs "$CEPH_DIR" || true
  bash "$CEPH_SH" stop "$CEPH_DIR" >/dev/null 2>&1 || true
}
trap 'rc=$?; cleanup_servers $rc; (exit $rc); _lib_cleanup; exit $rc' EXIT

note "starting Ceph + radosgw on 127.0.0.1:$PORT"
MINPART=1048576 MONPORT=$MONPORT bash "$CEPH_SH" start "$CEPH_DIR" "$PORT" ||
  fail "unable to start Ceph (see above)"

export AWS_ACCESS_KEY_ID=TESTACCESSKEY AWS_SECRET_ACCESS_KEY=TESTSECRETKEY AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CA_BUNDLE
BUCKET=engine-faults
awsc() { "$AWS" --endpoint-url "http://127.0.0.1:$PORT" "$@"; }
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb failed"

"$PYTHON" "$PROXY_PY" "$PPORT" "$PORT" >"$T/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$PPORT/__stats" && break
  sleep 0.1
done
curl -s -o /dev/null "http://127.0.0.1:$PPORT/__stats" || { show "$T/proxy.log"; fail "the fault proxy did not start"; }

# arm MODE COUNT METHOD EVERY: fault every EVERY-th METHOD request, COUNT times
arm() { curl -sf -X POST "http://127.0.0.1:$PPORT/__fault/$1/$2?method=$3&every=$4" >/dev/null || fail "unable to arm the proxy"; }
injected() { # MODE: how many faults of MODE were injected so far
  curl -s "http://127.0.0.1:$PPORT/__stats" | "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['injected'].get('$1', 0))"
}
armed() { curl -s "http://127.0.0.1:$PPORT/__stats" | "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['armed'])"; }

src=$T/src
mkdir -p "$src/dir"
random_file "$src/random-5MiB" 5
seq 1 200000 >"$src/dir/numbers.txt"
echo "hello" >"$src/hello.txt"

# virtual-host addressing through the proxy: its Host header is passed on
# unchanged, so the signatures stay valid
cat >"$T/p.yml" <<EOF
version: 1
name: s3-faults
sources:
  - {name: files, type: files, with: {paths: [$(yq "$src")]}}
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
repository: {chunk_min: 256KiB, chunk_avg: 1MiB, chunk_max: 4MiB, pack_size: 4MiB}
sinks:
  - name: offsite
    type: s3
    with:
      endpoint: http://s3.localhost:$PPORT
      bucket: $BUCKET
      prefix: faults
      part_size: 1MiB
      multipart_threshold: 2MiB
      max_retries: 4
      timeout: 30s
EOF

round=0
# upload_with MODE COUNT METHOD EVERY: a backup with new data while faults are armed
upload_with() {
  round=$((round + 1))
  local before
  before=$(injected "$1")
  random_file "$src/new-$round" 3
  echo "round $round" >>"$src/hello.txt"
  arm "$@"
  note "upload: $1 on one $3 request in $4, $2 times"
  run_ok "$T/run-$round.out" "$T/run-$round.err" run "$T/p.yml"
  local got=$(($(injected "$1") - before))
  arm off 0 GET 1
  [ "$got" -ge 1 ] || fail "upload with $1 faults on $3: none was injected (the run did not exercise the retries)"
  note "  $got fault(s) injected and survived"
}

upload_with 503 6 PUT 2
upload_with reset 4 PUT 3
upload_with drop 4 PUT 2
upload_with 500 3 POST 2
upload_with drop 2 POST 2
upload_with 503 6 HEAD 2

# download_with MODE COUNT EVERY: restore + compare while GETs fail
download_with() {
  local before
  before=$(injected "$1")
  arm "$1" "$2" GET "$3"
  note "download: $1 on one GET in $3, $2 times"
  rm -rf "$T/restore"
  run_ok "$T/restore-$1.out" "$T/restore-$1.err" restore "$T/p.yml" latest --target "$T/restore"
  local got=$(($(injected "$1") - before))
  arm off 0 GET 1
  [ "$got" -ge 1 ] || fail "download with $1 faults: none was injected"
  compare_trees "$src" "$(restored_path "$T/restore" "$src")" || fail "restore with $1 faults: the tree differs"
  note "  $got fault(s) injected, restore identical"
}

download_with 503 6 2
download_with reset 4 2
download_with truncate 4 2

arm truncate 6 GET 2
run_ok "$T/check.out" "$T/check.err" check "$T/p.yml" --read-data
arm off 0 GET 1

note "nothing left behind: no open multipart upload"
uploads=$(awsc s3api list-multipart-uploads --bucket "$BUCKET" --query 'length(Uploads || `[]`)' --output text)
assert_eq 0 "$uploads" "multipart uploads left open"

note "a sink that stays down: the proxy is killed during a run"
snaps_before=$(awsc s3 ls "s3://$BUCKET/faults/snapshots/" | wc -l)
random_file "$src/last" 8
arm slow 1000 PUT 1 # every upload waits 3 s in the proxy: time to kill it mid-run
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/p.yml" >"$T/down.out" 2>"$T/down.err" </dev/null &
run_pid=$!
for _ in $(seq 100); do
  [ "$(armed)" -lt 1000 ] && break
  sleep 0.1
done
[ "$(armed)" -lt 1000 ] || fail "the run never reached an upload"
stop_proxy
rc=0
wait "$run_pid" || rc=$?
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/down.err"; then
  show "$T/down.err"
  fail "sanitizer report from the run against a dead sink"
fi
[ "$rc" -eq 1 ] || { show "$T/down.out" "$T/down.err"; fail "run against a dead sink: exit status $rc, expected 1"; }
assert_contains "$T/down.err" "sink 'offsite'" "run against a dead sink names the sink"
assert_contains "$T/down.err" "no response from http://s3.localhost:$PPORT" "run against a dead sink says why"
snaps_after=$(awsc s3 ls "s3://$BUCKET/faults/snapshots/" | wc -l)
assert_eq "$snaps_before" "$snaps_after" "snapshots in the bucket after the failed run"

note "all good"
