#!/usr/bin/env bash
# Disaster-recovery drill §1 (docs/DISASTER_RECOVERY.md, run as written
# there): the backup host is lost. A pipeline with a local and an S3 sink
# (real Ceph radosgw) backs up twice; then the local repository, the index
# cache, the state directory (audit log) and the pipeline file are gone. On
# the "new host" a pipeline naming only the bucket validates, lists keys and
# snapshots, checks, and restores everything byte for byte; the passphrase
# is replaced, the old one no longer opens the repository, and the new host
# backs up.
#
# Needs: ceph-mon ceph-osd radosgw awscli jq (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dr_lib.sh"

aws_init
ceph_start
BUCKET=engine-dr-host
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb failed"

src=$T/src
mkdir -p "$src/docs/deep/er" "$src/db"
for i in 1 2 3; do seeded_file "$src/db/part$i.bin" 3 "$i"; done
for i in $(seq 1 120); do echo "document $i $(seq 1 $((i % 23)))" >"$src/docs/d$i.txt"; done
echo "deep" >"$src/docs/deep/er/file"
ln -s ../db/part1.bin "$src/docs/link"
chmod 640 "$src/docs/d7.txt"

s3_sink="  - name: offsite
    type: s3
    with: {endpoint: $S3_EP, bucket: $BUCKET, prefix: kiosco, addressing: path}"
pipeline() { # FILE SINKS...
  local f=$1
  shift
  cat >"$f" <<YAML
version: 1
name: kiosco
sources: [{name: files, type: files, with: {paths: [$(yq "$src")]}}]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
$(printf '%s\n' "$@")
YAML
}
pipeline "$T/old-host.yml" "  - {name: local, type: local, with: {path: $(yq "$T/local-repo")}}" "$s3_sink"
run_ok "$T/r1.out" "$T/r1.err" run "$T/old-host.yml"
echo "changed on day 2" >>"$src/docs/d1.txt"
run_ok "$T/r2.out" "$T/r2.err" run "$T/old-host.yml"
cp -a "$src" "$T/expected"

# the host is gone: nothing of it is left
rm -rf "$T/local-repo" "$ENGINE_CACHE_DIR" "$ENGINE_STATE_DIR" "$T/old-host.yml"

# the new host: the pipeline with the sink that survived
pipeline "$T/new-host.yml" "$s3_sink"
P=$T/new-host.yml
RESTORE=$T/restore
drill host-lost
compare_trees "$T/expected" "$(restored_path "$RESTORE" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the restore from the bucket differs from the source"; }
assert_contains "$T/drill-host-lost.log" "2 snapshot(s)" "the drill lists both recovery points"
assert_contains "$T/drill-host-lost.log" "no problems found" "the drill's check"

OLD_PASSPHRASE=$ENGINE_PASSPHRASE
export NEW_ENGINE_PASSPHRASE=new-host-passphrase-3f9a
drill host-lost-key
assert_eq "$NEW_ENGINE_PASSPHRASE" "$ENGINE_PASSPHRASE" "the drill switches to the new passphrase"
ENGINE_PASSPHRASE=$OLD_PASSPHRASE run_engine "$T/old.out" "$T/old.err" snapshots "$P"
assert_rc 1 "the lost host's passphrase after the drill" "$T/old.err"
run_ok "$T/s.json" "$T/s.err" snapshots "$P" --json
assert_eq 3 "$(json_get "$T/s.json" 'len(j)')" "snapshots after the new host's first backup"
assert_eq 1 "$(awsc s3 ls "s3://$BUCKET/kiosco/keys/" | wc -l)" "keys in the bucket (the old one removed)"
note "PASS"
