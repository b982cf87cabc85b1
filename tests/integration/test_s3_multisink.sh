#!/usr/bin/env bash
# One pipeline, two sinks: a local directory and the s3 sink on a real Ceph
# radosgw (reached through tests/servers/faultproxy.py, which is killed to take
# the sink down and restarted to bring it back). Covers, in order:
#   a. the local repository deleted: restore falls back to the s3 sink, says
#      so, and is identical;
#   b. the local repository re-seeded with `engine sync --from offsite --to
#      local`, then the s3 sink down: restore from the local sink;
#   c. the s3 sink optional (`required: false`) and down: `run` ends partial
#      (exit 3, sinks_missed, MISSED); back up, `sync --from local --to
#      offsite` heals it (the snapshot object appears in the bucket, the
#      "lacks snapshots" warning goes away) and `check --read-data` passes
#      on the s3 sink alone;
#   d. the s3 sink required and down: `run` fails (exit 1) naming it and
#      writes no snapshot to the local sink;
#   e. forget + prune delete packs in the bucket through S3 DeleteObjects
#      (POST ?delete=, seen in radosgw's log; the first one's reply is lost
#      by the proxy, so the retry deletes keys already gone), and the
#      remaining snapshot restores from s3 alone;
#   f. a bucket policy denying the deletion of packs: prune fails with a
#      message naming a key and AccessDenied (the per-key <Error> entries of
#      the DeleteObjects result), and succeeds once the policy is gone.
#
# Needs: ceph-mon ceph-osd radosgw awscli (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

aws_init
ceph_start
RGW_LOG=$CEPH_DIR/log/rgw.log

BUCKET=engine-multisink
PREFIX=multi
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb s3://$BUCKET failed"
# count_objects SUBPREFIX: objects under s3://BUCKET/PREFIX/SUBPREFIX, by the independent client
count_objects() { { awsc s3 ls --recursive "s3://$BUCKET/$PREFIX/$1" || true; } | wc -l; }

proxy_start
PPORT=$PROXY_PORT
arm() { proxy_arm "$1" "$2" "method=$3" "every=$4"; } # MODE COUNT METHOD EVERY
injected() { proxy_stats "j['injected'].get('$1', 0)"; }

# ---- data and pipelines ----
src=$T/src
mkdir -p "$src/dir"
random_file "$src/random-3MiB" 3
random_file "$src/dir/to-be-forgotten-5MiB" 5
seq 1 100000 >"$src/dir/numbers.txt"
echo "hello" >"$src/hello.txt"
printf 'odd\n' >"$src/dir/name with spaces & <xml> chars.txt"

LOCAL=$T/repo-local
# write_pipeline_ms FILE OFFSITE-REQUIRED(true|false|none) [local]
#   none: no s3 sink; "local" as 3rd argument: keep the local sink (default yes)
write_pipeline_ms() {
  local file=$1 req=$2 with_local=${3:-local}
  {
    cat <<EOF
version: 1
name: multisink
sources:
  - {name: files, type: files, with: {paths: [$(yq "$src")]}}
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
repository: {chunk_min: 256KiB, chunk_avg: 1MiB, chunk_max: 4MiB, pack_size: 2MiB}
retention: {keep_last: 1}
sinks:
EOF
    [ "$with_local" != local ] || echo "  - {name: local, type: local, with: {path: $(yq "$LOCAL")}}"
    if [ "$req" != none ]; then
      cat <<EOF
  - name: offsite
    type: s3
    required: $req
    with:
      endpoint: http://127.0.0.1:$PPORT
      addressing: path
      bucket: $BUCKET
      prefix: $PREFIX
      max_retries: 2
      timeout: 20s
EOF
    fi
  } >"$file"
}
P=$T/p.yml        # local + offsite (required)
POPT=$T/p-opt.yml # local + offsite (required: false)
PS3=$T/p-s3.yml   # offsite only
write_pipeline_ms "$P" true
write_pipeline_ms "$POPT" false
write_pipeline_ms "$PS3" true nolocal
mkdir -p "$LOCAL"

# restore_check LABEL PIPELINE: restore latest into a fresh target, compare with src
restore_check() {
  rm -rf "$T/restore-$1"
  run_ok "$T/$1.restore.out" "$T/$1.restore.err" restore "$2" latest --target "$T/restore-$1"
  compare_trees "$src" "$(restored_path "$T/restore-$1" "$src")" ||
    fail "$1: the restored tree differs from the source"
}
local_snapshots() { find "$LOCAL/snapshots" -type f 2>/dev/null | wc -l; }

note "first backup to both sinks"
run_ok "$T/run1.out" "$T/run1.err" run "$P"
[ "$(count_objects snapshots/)" -eq 1 ] || fail "expected 1 snapshot object in the bucket after the first run"
[ "$(local_snapshots)" -eq 1 ] || fail "expected 1 snapshot in the local sink after the first run"

# ---- a ----
note "a. local repository deleted: restore falls back to the s3 sink"
rm -rf "$LOCAL"
restore_check a "$P"
assert_contains "$T/a.restore.err" "sink 'offsite' instead" "restore says it used the other sink"

# ---- b ----
note "b. local repository re-seeded with sync, then the s3 sink down: restore from local"
mkdir -p "$LOCAL"
run_ok "$T/b.sync.out" "$T/b.sync.err" sync "$P" --from offsite --to local
[ "$(local_snapshots)" -eq 1 ] || fail "sync --from offsite --to local did not bring the snapshot back"
proxy_stop
restore_check b "$P"
run_ok "$T/b.snapshots.out" "$T/b.snapshots.err" snapshots "$P"

# ---- c ----
note "c. optional s3 sink down: the run ends partial"
echo "second" >"$src/second.txt"
run_engine "$T/c.run.out" "$T/c.run.err" run "$POPT"
assert_rc 3 "run with the optional sink down" "$T/c.run.out" "$T/c.run.err"
assert_contains "$T/c.run.out" "MISSED" "the summary of a partial run"
assert_contains "$T/c.run.out" "sink 'offsite'" "the summary names the missed sink"
run_ok "$T/c.show.json" "$T/c.show.err" show "$POPT" latest --json
missed=$(json_get "$T/c.show.json" "j.get('sinks_missed', j.get('snapshot', {}).get('sinks_missed'))")
case "$missed" in *'"offsite"'*) ;; *) show "$T/c.show.json"; fail "sinks_missed is '$missed', expected it to name 'offsite'" ;; esac
snap2=$(json_get "$T/c.show.json" "j.get('id') or j['snapshot']['id']")
[ "$(local_snapshots)" -eq 2 ] || fail "the partial run wrote no snapshot to the local sink"

note "c. s3 sink back: snapshots warns, sync heals, check --read-data passes on s3 alone"
proxy_start
[ "$(count_objects snapshots/)" -eq 1 ] || fail "the bucket already holds the partial run's snapshot"
run_ok "$T/c.snaps1.out" "$T/c.snaps1.err" snapshots "$POPT"
assert_contains "$T/c.snaps1.err" "sink 'offsite' lacks 1 snapshot" "snapshots warns about the behind sink"
run_ok "$T/c.sync.out" "$T/c.sync.err" sync "$POPT" --from local --to offsite
awsc s3 ls "s3://$BUCKET/$PREFIX/snapshots/" >"$T/c.ls" || fail "aws s3 ls failed"
assert_contains "$T/c.ls" "${snap2:0:8}" "the synced snapshot object in the bucket (aws s3 ls)"
[ "$(count_objects snapshots/)" -eq 2 ] || { show "$T/c.ls"; fail "expected 2 snapshot objects in the bucket after sync"; }
run_ok "$T/c.snaps2.out" "$T/c.snaps2.err" snapshots "$POPT"
assert_not_contains "$T/c.snaps2.err" "lacks" "snapshots after sync"
run_ok "$T/c.check.out" "$T/c.check.err" check "$PS3" --read-data
restore_check c "$PS3"

# ---- d ----
note "d. required s3 sink down: the run fails and writes no snapshot"
proxy_stop
echo "third" >"$src/third.txt"
before=$(local_snapshots)
run_engine "$T/d.run.out" "$T/d.run.err" run "$P"
assert_rc 1 "run with the required sink down" "$T/d.run.out" "$T/d.run.err"
assert_contains "$T/d.run.err" "sink 'offsite'" "the failed run names the sink"
assert_contains "$T/d.run.err" "no response from http://127.0.0.1:$PPORT" "the failed run says why"
assert_eq "$before" "$(local_snapshots)" "snapshots in the local sink after the failed run"
proxy_start
[ "$(count_objects snapshots/)" -eq 2 ] || fail "the failed run left a snapshot in the bucket"

# ---- e ----
note "e. forget + prune delete packs in the bucket with DeleteObjects"
rm -f "$src/dir/to-be-forgotten-5MiB"
run_ok "$T/e.run.out" "$T/e.run.err" run "$P"
[ "$(count_objects snapshots/)" -eq 3 ] || fail "expected 3 snapshot objects in the bucket"
packs_before=$(count_objects data/)
posts_before=$(grep -c 'POST /[^ ]*?delete' "$RGW_LOG" || true)
# the first DeleteObjects reaches radosgw but its reply is lost: the retry
# deletes keys that are already gone, which must not be an error
arm drop 1 POST 1
run_ok "$T/e.forget.out" "$T/e.forget.err" forget "$P" --prune
got_drop=$(injected drop)
arm off 0 GET 1
packs_after=$(count_objects data/)
posts_after=$(grep -c 'POST /[^ ]*?delete' "$RGW_LOG" || true)
note "  packs in the bucket: $packs_before -> $packs_after; DeleteObjects requests seen by radosgw: $((posts_after - posts_before))"
[ "$(count_objects snapshots/)" -eq 1 ] || fail "forget left $(count_objects snapshots/) snapshot objects in the bucket, expected 1"
assert_lt "$packs_after" "$packs_before" "packs in the bucket after prune"
[ "$got_drop" -eq 1 ] || fail "no POST was faulted: the DeleteObjects retry was not exercised"
[ "$((posts_after - posts_before))" -ge 2 ] || {
  grep -E '"POST' "$RGW_LOG" | tail -20 >&2 || true
  fail "radosgw saw $((posts_after - posts_before)) POST ?delete (DeleteObjects) requests during prune, expected the lost one and its retry"
}
# the local sink was pruned alike
local_packs=$(find "$LOCAL/data" -type f | wc -l)
assert_eq "$packs_after" "$local_packs" "packs in the local sink vs the bucket after prune"

note "e. the remaining snapshot restores from the s3 sink alone"
restore_check e "$PS3"
run_ok "$T/e.check.out" "$T/e.check.err" check "$PS3" --read-data

# ---- f ----
note "f. DeleteObjects reports per-key errors: a bucket policy denies deleting packs"
random_file "$src/dir/short-lived-4MiB" 4
run_ok "$T/f.run1.out" "$T/f.run1.err" run "$PS3"
rm -f "$src/dir/short-lived-4MiB"
run_ok "$T/f.run2.out" "$T/f.run2.err" run "$PS3"
cat >"$T/deny.json" <<EOF
{"Version": "2012-10-17", "Statement": [{"Sid": "nodelete", "Effect": "Deny", "Principal": "*",
  "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::$BUCKET/$PREFIX/data/*"}]}
EOF
awsc s3api put-bucket-policy --bucket "$BUCKET" --policy "file://$T/deny.json" ||
  fail "unable to set the bucket policy"
run_engine "$T/f.forget.out" "$T/f.forget.err" forget "$PS3" --prune
awsc s3api delete-bucket-policy --bucket "$BUCKET" || fail "unable to remove the bucket policy"
assert_rc 1 "prune with deletes denied" "$T/f.forget.out" "$T/f.forget.err"
assert_contains "$T/f.forget.err" "not deleted: '$PREFIX/data/" "the prune failure names the key"
assert_contains "$T/f.forget.err" "AccessDenied" "the prune failure gives the S3 error code"
denied=$(grep -o "not deleted: '$PREFIX/data/[0-9a-f/]*'" "$T/f.forget.err" | head -1 | cut -d"'" -f2)
awsc s3api head-object --bucket "$BUCKET" --key "$denied" >/dev/null ||
  fail "the pack '$denied' that prune could not delete is gone from the bucket"
run_ok "$T/f.prune.out" "$T/f.prune.err" prune "$PS3"
! awsc s3api head-object --bucket "$BUCKET" --key "$denied" >/dev/null 2>&1 ||
  fail "prune left '$denied' in the bucket once deleting was allowed again"
restore_check f "$PS3"

note "all good"
