#!/usr/bin/env bash
# Retries of the s3 sink through tests/servers/faultproxy.py in front of a
# real Ceph radosgw: 503s, 500s, connection resets, lost replies and truncated
# responses injected during uploads (single PUTs and multipart) and downloads
# are retried, and every run / restore still succeeds byte for byte. The proxy
# reports how many faults it injected, so the test knows they were hit. Lost
# and truncated CreateMultipartUpload replies leave no upload open; prune
# aborts stale uploads of repository objects (stale_upload_age) and nothing
# else. Then a sink that stays down (the proxy killed mid-run) makes the run
# fail cleanly: exit 1, a message naming the sink, no new snapshot in the
# bucket; the uploads it could not abort are aborted by the next prune.
#
# Needs: ceph-mon ceph-osd radosgw awscli (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

aws_init
ceph_start 1048576
BUCKET=engine-faults
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb failed"

proxy_start
PPORT=$PROXY_PORT

# arm MODE COUNT METHOD EVERY [PATH]: fault every EVERY-th METHOD request
# (whose path, query included, contains PATH), COUNT times
arm() { proxy_arm "$1" "$2" "method=$3" "every=$4" "path=${5:-}"; }
injected() { proxy_stats "j['injected'].get('$1', 0)"; } # MODE: how many faults of MODE were injected so far
armed() { proxy_stats "j['armed']"; }

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
# upload_with MODE COUNT METHOD EVERY [PATH]: a backup with new data while faults are armed
upload_with() {
  round=$((round + 1))
  local before
  before=$(injected "$1")
  random_file "$src/new-$round" 3
  echo "round $round" >>"$src/hello.txt"
  arm "$@"
  note "upload: $1 on one $3${5:+ $5} request in $4, $2 times"
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

uploads_open() { # the multipart uploads in progress in the bucket, as the server lists them
  awsc s3api list-multipart-uploads --bucket "$BUCKET" --query 'length(Uploads || `[]`)' --output text
}
# CreateMultipartUpload whose reply is lost (the server started an upload,
# the client retries and starts another) or cut short: the run succeeds and
# leaves no upload open (the orphans of the lost replies are found with
# ListMultipartUploads and aborted)
upload_with drop 2 POST 1 '?uploads'
assert_eq 0 "$(uploads_open)" "multipart uploads left open after lost CreateMultipartUpload replies"
upload_with truncate 2 POST 1 '?uploads'
assert_eq 0 "$(uploads_open)" "multipart uploads left open after truncated CreateMultipartUpload replies"

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
assert_eq 0 "$(uploads_open)" "multipart uploads left open"

note "prune aborts stale multipart uploads of repository objects, and only those"
# stale_upload_age 0s: every incomplete upload counts as stale (the default
# is 24h); uploads started by hand stand for those of killed runs
sed 's/^      timeout: 30s$/      timeout: 30s\n      stale_upload_age: 0s/' "$T/p.yml" >"$T/p0.yml"
grep -q 'stale_upload_age: 0s' "$T/p0.yml" || fail "unable to write the pipeline with stale_upload_age"
start_upload() { awsc s3api create-multipart-upload --bucket "$BUCKET" --key "$1" --query UploadId --output text; }
upload_keys() { awsc s3api list-multipart-uploads --bucket "$BUCKET" --query 'Uploads[].Key' --output text | tr '\t' '\n' | LC_ALL=C sort; }
start_upload faults/data/ee/orphan-of-a-killed-run >/dev/null
start_upload faults/snapshots/orphan-of-a-killed-run >/dev/null
start_upload faults/not-engine/other-tool >/dev/null
start_upload elsewhere/data/ee/another-prefix >/dev/null
run_ok "$T/prune24.out" "$T/prune24.err" prune "$T/p.yml"
assert_eq 4 "$(uploads_open)" "uploads after a prune with the default stale_upload_age (24h)"
run_ok "$T/prune-dry.out" "$T/prune-dry.err" prune "$T/p0.yml" --dry-run
assert_eq 4 "$(uploads_open)" "uploads after prune --dry-run"
assert_contains "$T/prune-dry.err" "would abort the incomplete multipart upload of 'faults/data/ee/orphan-of-a-killed-run'" "prune --dry-run says what it would abort"
run_ok "$T/prune0.out" "$T/prune0.err" prune "$T/p0.yml"
assert_contains "$T/prune0.err" "aborted the incomplete multipart upload of 'faults/snapshots/orphan-of-a-killed-run'" "prune names what it aborted"
assert_eq "$(printf 'elsewhere/data/ee/another-prefix\nfaults/not-engine/other-tool')" "$(upload_keys)" \
  "uploads left by prune (another prefix, not a repository object)"
awsc s3api list-multipart-uploads --bucket "$BUCKET" --query 'Uploads[].[Key,UploadId]' --output text |
  while read -r key id; do awsc s3api abort-multipart-upload --bucket "$BUCKET" --key "$key" --upload-id "$id"; done
assert_eq 0 "$(uploads_open)" "uploads after aborting the test's own"

note "a sink that stays down: the proxy is killed during a run"
snaps_before=$(awsc s3 ls "s3://$BUCKET/faults/snapshots/" | wc -l)
random_file "$src/last" 8
arm slow 1000 PUT 1 partNumber # every part upload waits 3 s in the proxy: time to kill it mid-run
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/p.yml" >"$T/down.out" 2>"$T/down.err" </dev/null &
run_pid=$!
for _ in $(seq 100); do
  [ "$(armed)" -lt 1000 ] && break
  sleep 0.1
done
[ "$(armed)" -lt 1000 ] || fail "the run never reached an upload"
proxy_stop
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

note "the uploads the dead sink kept the run from aborting are aborted by the next prune"
left=$(uploads_open)
[ "$left" -ge 1 ] || fail "the run against a dead sink left no multipart upload open: the test no longer covers prune's cleanup"
proxy_start
run_ok "$T/prune-after.out" "$T/prune-after.err" prune "$T/p0.yml"
assert_eq 0 "$(uploads_open)" "multipart uploads left after prune (the dead sink's run had left $left)"
run_ok "$T/check-after.out" "$T/check-after.err" check "$T/p.yml" --read-data

note "all good"
