#!/usr/bin/env bash
# A write-only host whose storage credentials cannot delete (radosgw): the
# bucket's policy denies s3:DeleteObject to the writer's user, so neither
# ransomware nor an intruder on the backup host can remove a recovery point
# through it. The writer backs up twice (packs large enough for multipart
# uploads, its own lock taken and released without a delete), its attempt to
# delete an object with the same keys is refused by radosgw, and the reader
# (the bucket owner, with the passphrase) restores byte for byte, checks
# --read-data and prunes, which removes the writer's locks and markers.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

aws_init
ceph_start 1048576
BUCKET=engine-write-only
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb s3://$BUCKET failed"
radosgw-admin -c "$CEPH_DIR/ceph.conf" user create --uid=writer --display-name=writer \
  --access-key=WRITERACCESSKEY --secret=WRITERSECRETKEY >/dev/null 2>"$T/admin.err" ||
  { cat "$T/admin.err" >&2; fail "radosgw-admin user create writer failed"; }
cat >"$T/policy.json" <<EOF
{"Version": "2012-10-17", "Statement": [
  {"Sid": "owner-reads-and-deletes-what-writer-wrote", "Effect": "Allow",
   "Principal": {"AWS": ["arn:aws:iam:::user/test"]}, "Action": ["s3:*"],
   "Resource": ["arn:aws:s3:::$BUCKET", "arn:aws:s3:::$BUCKET/*"]},
  {"Sid": "writer-adds", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/writer"]},
   "Action": ["s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:AbortMultipartUpload",
              "s3:ListMultipartUploadParts"],
   "Resource": ["arn:aws:s3:::$BUCKET", "arn:aws:s3:::$BUCKET/*"]},
  {"Sid": "writer-never-deletes", "Effect": "Deny", "Principal": {"AWS": ["arn:aws:iam:::user/writer"]},
   "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
   "Resource": ["arn:aws:s3:::$BUCKET/*"]}]}
EOF
awsc s3api put-bucket-policy --bucket "$BUCKET" --policy "file://$T/policy.json" ||
  fail "unable to set the bucket policy"

src=$T/src
mkdir -p "$src/sub"
seeded_file "$src/big.bin" 5 write-only-s3
seq 1 100000 >"$src/sub/numbers.txt"
export WRITER_AK=WRITERACCESSKEY WRITER_SK=WRITERSECRETKEY
pipeline() { # FILE NAME ENCRYPT CREDENTIALS
  cat >"$1" <<EOF
version: 1
name: $2
sources:
  - {name: files, type: files, with: {paths: [$(yq "$src")]}}
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: $3
repository: {format: 2, chunk_min: 256KiB, chunk_avg: 1MiB, chunk_max: 4MiB, pack_size: 4MiB}
sinks:
  - name: bucket
    type: s3
    with:
      endpoint: $S3_EP
      bucket: $BUCKET
      prefix: repo
      addressing: path
      part_size: 1MiB
      multipart_threshold: 2MiB
$4
EOF
}
pipeline "$T/reader.yml" wo-s3 "{algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}" ""
run_ok "$T/r1.out" "$T/r1.err" run "$T/reader.yml"
run_ok "$T/add.out" "$T/add.err" key add "$T/reader.yml" --write-only --out "$T/writer.cred"
pipeline "$T/writer.yml" wo-s3 "{mode: write-only, key_file: 'file:$T/writer.cred'}" \
  "      access_key_id: env:WRITER_AK
      secret_access_key: env:WRITER_SK"

# the writer's keys cannot delete: radosgw refuses
AWS_ACCESS_KEY_ID=$WRITER_AK AWS_SECRET_ACCESS_KEY=$WRITER_SK awsc s3 rm "s3://$BUCKET/repo/config" \
  >"$T/rm.out" 2>&1 && fail "the writer's keys deleted an object: the bucket policy is not in force"
awsc s3 ls "s3://$BUCKET/repo/config" >/dev/null || fail "the refused delete removed the object anyway"
grep -q '"DELETE /'"$BUCKET"'/repo/config HTTP/1.1" 403' "$CEPH_DIR/log/rgw.log" ||
  { cat "$T/rm.out" >&2; fail "radosgw did not answer the writer's DELETE with 403"; }

unset ENGINE_PASSPHRASE
printf 'changed on the writer\n' >"$src/sub/new.txt"
run_ok "$T/w1.json" "$T/w1.err" run "$T/writer.yml" --json
# (the only warning: part_size below S3's minimum, which this radosgw allows)
no_warnings() { # ERR WHAT
  if grep -iE 'warning|error' "$1" | grep -qv 'part_size'; then
    show "$1"
    fail "$2 warned or failed"
  fi
}
no_warnings "$T/w1.err" "a write-only run with keys that cannot delete"
seeded_file "$src/big2.bin" 3 write-only-s3-second # a multipart pack of the writer's own
run_ok "$T/w2.json" "$T/w2.err" run "$T/writer.yml" --json
no_warnings "$T/w2.err" "the second write-only run"
w2=$(json_get "$T/w2.json" 'j["snapshot"]')
stored=$(json_get "$T/w2.json" 'j["stored_bytes"]')
[ "$stored" -gt 2097152 ] || fail "the second write-only run stored $stored bytes, expected a multipart-sized pack"
run_ok "$T/ws.json" "$T/ws.err" snapshots "$T/writer.yml" --json
assert_eq 3 "$(json_get "$T/ws.json" 'len(j)')" "snapshots the writer lists"
run_engine "$T/pr.out" "$T/pr.err" prune "$T/writer.yml"
assert_rc 1 "prune on the write-only host" "$T/pr.err"

# the writer's locks stay (it cannot delete them), each with a release marker
awsc s3 ls "s3://$BUCKET/repo/locks/" --recursive >"$T/locks.txt" || true
assert_eq 2 "$(grep -c 'locks/released/' "$T/locks.txt" || true)" "release markers of the writer's two runs"
assert_eq 4 "$(wc -l <"$T/locks.txt")" "lock objects and markers the writer left"

export ENGINE_PASSPHRASE=$TEST_PASSPHRASE
run_ok "$T/res.out" "$T/res.err" restore "$T/reader.yml" "$w2" --target "$T/out"
compare_trees "$src" "$(restored_path "$T/out" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the writer's snapshot does not restore byte for byte from radosgw"; }
run_ok "$T/chk.out" "$T/chk.err" check "$T/reader.yml" --read-data
run_ok "$T/prune.out" "$T/prune.err" prune "$T/reader.yml"
awsc s3 ls "s3://$BUCKET/repo/locks/" --recursive >"$T/locks.txt" || true
[ ! -s "$T/locks.txt" ] || { cat "$T/locks.txt" >&2; fail "the reader's prune left the writer's locks or markers"; }
note "writer with DeleteObject denied: two runs (the second stored $stored B, multipart), reader restore, check and prune OK"
