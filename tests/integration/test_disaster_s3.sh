#!/usr/bin/env bash
# The host is gone: a pipeline with a local and an S3 sink (real Ceph
# radosgw) backs up; then the local repository and the local index cache are
# deleted and a new pipeline file naming only the bucket restores from
# radosgw, byte for byte (docs/DISASTER_RECOVERY.md §1). The restore reads
# packs in large ranges: the GETs radosgw logs for data/ objects are counted
# from its own log and must stay within four per pack and under a tenth of
# the number of blobs restored (it was one GET per blob).
#
# Needs: ceph-mon ceph-osd radosgw awscli (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

aws_init
ceph_start
EP=$S3_EP
BUCKET=engine-disaster
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb failed"

src=$T/src
mkdir -p "$src/small"
for i in 1 2 3 4 5 6; do seeded_file "$src/big$i.bin" 4 "$i"; done
for i in $(seq 1 400); do echo "small file $i $(seq 1 $((i % 37)))" >"$src/small/f$i.txt"; done
seq 1 400000 >"$src/numbers.txt"

s3_sink="  - name: offsite
    type: s3
    with: {endpoint: $EP, bucket: $BUCKET, prefix: host1, addressing: path}"
cat >"$T/p.yml" <<EOF2
version: 1
name: disaster
sources: [{name: files, type: files, with: {paths: [$(yq "$src")]}}]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - {name: local, type: local, with: {path: $(yq "$T/local-repo")}}
$s3_sink
EOF2
run_ok "$T/run.out" "$T/run.err" run "$T/p.yml"
echo "second run" >>"$src/numbers.txt"
run_ok "$T/run2.out" "$T/run2.err" run "$T/p.yml"

# the host is gone: no local repository, no cache, only the bucket
rm -rf "$T/local-repo" "$ENGINE_CACHE_DIR"
cat >"$T/new-host.yml" <<EOF2
version: 1
name: disaster
sources: [{name: files, type: files, with: {paths: [$(yq "$src")]}}]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
$s3_sink
EOF2
packs=$(awsc s3 ls "s3://$BUCKET/host1/data/" --recursive | wc -l)
[ "$packs" -ge 2 ] || fail "expected several packs in the bucket, found $packs"
rgwlog=$CEPH_DIR/log/rgw.log
before=$(wc -l <"$rgwlog")
run_ok "$T/show.json" "$T/show.err" show "$T/new-host.yml" latest --json
blobs=$(json_get "$T/show.json" 'j["stats"]["chunks"]')
before=$(wc -l <"$rgwlog")
run_ok "$T/r.out" "$T/r.err" restore "$T/new-host.yml" latest --target "$T/out"
sleep 1 # radosgw logs a request after answering it
compare_trees "$src" "$(restored_path "$T/out" "$src")"
tail -n +"$((before + 1))" "$rgwlog" | grep -E 'beast: .*"GET ' >"$T/gets.log" || true
data_gets=$(grep -c '/data/' "$T/gets.log" || true)
all_gets=$(wc -l <"$T/gets.log")
note "restore from radosgw: $blobs blobs in $packs packs, $data_gets GETs of data/ objects, $all_gets GETs in all (radosgw's log)"
[ "$data_gets" -ge 1 ] || fail "radosgw logged no GET of a pack: did the restore read the bucket?"
[ "$data_gets" -le $((4 * packs)) ] && [ "$data_gets" -lt $((blobs / 10)) ] ||
  fail "$data_gets GETs of packs for $blobs blobs in $packs packs: the restore does not read packs in ranges"
run_ok "$T/c.out" "$T/c.err" check "$T/new-host.yml" --read-data
note "PASS"
