#!/usr/bin/env bash
# The s3 and minio sinks against a real Ceph radosgw (started here through
# tests/servers/ceph.sh): backup -> restore byte for byte and `check
# --read-data` with path-style addressing, virtual-host addressing
# (http://s3.localhost:PORT; libcurl resolves *.localhost to the loopback
# itself, so /etc/hosts is not touched) and the minio type; multipart uploads
# forced with a small part size; the objects listed and fetched with an
# independent client (awscli) and compared with a local sink of the same
# pipeline.
#
# Needs: ceph-mon ceph-osd radosgw awscli (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

aws_init
# radosgw accepts 1 MiB parts here, so small objects exercise multipart
ceph_start 1048576
PORT=$CEPH_PORT
EP=$S3_EP
BUCKET=engine-roundtrip
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb s3://$BUCKET failed"

# ---- data ----
src=$T/src
mkdir -p "$src/dir/sub" "$src/empty-dir"
random_file "$src/random-6MiB" 6
random_file "$src/dir/random-3MiB" 3
seq 1 300000 >"$src/dir/sub/numbers.txt"
echo "hello" >"$src/hello.txt"
: >"$src/empty"
ln -s hello.txt "$src/link"
printf 'odd name\n' >"$src/dir/name with spaces & symbols+%.txt"

# write_s3_pipeline FILE NAME SINKS-YAML
write_s3_pipeline() {
  cat >"$1" <<EOF
version: 1
name: $2
sources:
  - name: files
    type: files
    with:
      paths: [$(yq "$src")]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
repository: {chunk_min: 256KiB, chunk_avg: 1MiB, chunk_max: 4MiB, pack_size: 4MiB}
sinks:
$3
EOF
}

# roundtrip LABEL PIPELINE: run, restore, compare, check --read-data
roundtrip() {
  local label=$1 p=$2
  note "$label: backup"
  run_ok "$T/$label.run.out" "$T/$label.run.err" run "$p"
  note "$label: restore"
  rm -rf "$T/restore-$label"
  run_ok "$T/$label.restore.out" "$T/$label.restore.err" restore "$p" latest --target "$T/restore-$label"
  compare_trees "$src" "$(restored_path "$T/restore-$label" "$src")" ||
    fail "$label: the restored tree differs from the source"
  note "$label: check --read-data"
  run_ok "$T/$label.check.out" "$T/$label.check.err" check "$p" --read-data
}

# ---- 1. s3, path-style, next to a local sink; multipart forced ----
write_s3_pipeline "$T/path.yml" s3-path "  - name: local
    type: local
    with: {path: $(yq "$T/local-repo"), fsync: false}
  - name: offsite
    type: s3
    with:
      endpoint: $EP
      bucket: $BUCKET
      prefix: path-style
      addressing: path
      part_size: 1MiB
      multipart_threshold: 2MiB"
roundtrip path "$T/path.yml"

note "path: the bucket seen by awscli"
awsc s3 ls "s3://$BUCKET/path-style/" --recursive >"$T/ls.txt" || fail "aws s3 ls failed"
for what in "path-style/config" "path-style/keys/" "path-style/data/" "path-style/index/" "path-style/snapshots/"; do
  grep -qF " $what" "$T/ls.txt" || { show "$T/ls.txt"; fail "aws s3 ls does not show '$what'"; }
done
awsc s3 cp "s3://$BUCKET/path-style/config" "$T/config.aws" >/dev/null || fail "aws s3 cp of the config failed"
assert_files_equal "$T/local-repo/config" "$T/config.aws" "config fetched by awscli vs the local sink's"

# every object, byte for byte, against what the local sink of the same run holds
awsc s3 sync "s3://$BUCKET/path-style/" "$T/synced" >/dev/null || fail "aws s3 sync failed"
"$PYTHON" - "$T/local-repo" "$T/synced" <<'EOF' || fail "the bucket's objects differ from the local sink's"
import filecmp, os, sys
def files(root):
    out = set()
    for d, _, fs in os.walk(root):
        for f in fs:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out
a, b = files(sys.argv[1]), files(sys.argv[2])
if a != b:
    print("only in the local sink:", sorted(a - b)[:10], "only in the bucket:", sorted(b - a)[:10])
    sys.exit(1)
bad = [f for f in sorted(a) if not filecmp.cmp(os.path.join(sys.argv[1], f), os.path.join(sys.argv[2], f), shallow=False)]
if bad:
    print("different content:", bad[:10])
    sys.exit(1)
print("%d objects identical" % len(a))
EOF

note "path: multipart uploads left multipart ETags"
largest=$(awk '$4 ~ /\/data\// {print $3, $4}' "$T/ls.txt" | sort -n | tail -n 1)
size=${largest%% *}
key=${largest#* }
[ "$size" -gt $((2 * 1024 * 1024)) ] || fail "no data object above the 2 MiB multipart threshold (largest: $largest)"
etag=$(awsc s3api head-object --bucket "$BUCKET" --key "$key" --query ETag --output text)
case "$etag" in
*-[0-9]*) note "  $key: $size bytes, ETag $etag" ;;
*) fail "object '$key' ($size bytes) has ETag $etag, not a multipart ETag (\"...-N\")" ;;
esac
# no upload left behind
uploads=$(awsc s3api list-multipart-uploads --bucket "$BUCKET" --query 'length(Uploads || `[]`)' --output text)
assert_eq 0 "$uploads" "multipart uploads left open"

note "path: a second run is incremental and both snapshots are listed"
echo "changed" >>"$src/hello.txt"
roundtrip path2 "$T/path.yml"
run_ok "$T/snaps.out" "$T/snaps.err" snapshots "$T/path.yml" --json
assert_eq 2 "$(json_get "$T/snaps.out" 'len(j)')" "snapshots after two runs"

# ---- 2. s3, virtual-host addressing ----
write_s3_pipeline "$T/virtual.yml" s3-virtual "  - name: offsite
    type: s3
    with:
      endpoint: http://s3.localhost:$PORT
      bucket: $BUCKET
      prefix: virtual/
      addressing: virtual"
roundtrip virtual "$T/virtual.yml"
awsc s3 ls "s3://$BUCKET/virtual/snapshots/" >"$T/ls-virtual.txt" || fail "aws s3 ls failed"
[ "$(wc -l <"$T/ls-virtual.txt")" -eq 1 ] || { show "$T/ls-virtual.txt"; fail "expected one snapshot under virtual/"; }

# ---- 3. minio type: path style on a custom endpoint by default ----
write_s3_pipeline "$T/minio.yml" minio "  - name: lab
    type: minio
    with: {endpoint: $EP, bucket: $BUCKET, prefix: minio}"
roundtrip minio "$T/minio.yml"
awsc s3 ls "s3://$BUCKET/minio/config" >/dev/null || fail "the minio sink did not write minio/config"

note "all good"
