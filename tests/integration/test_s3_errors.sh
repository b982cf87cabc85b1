#!/usr/bin/env bash
# Errors of the s3/minio sinks against a real Ceph radosgw: a wrong secret
# gives exit 1 with "403 SignatureDoesNotMatch" and no credential anywhere in
# the output; a wrong key id gives InvalidAccessKeyId; a missing bucket says
# so; bad options are refused before any request; credentials from an AWS
# shared-credentials file (with a profile) work.
#
# Needs: ceph-mon ceph-osd radosgw awscli (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

aws_init
ceph_start
PORT=$CEPH_PORT
AK=$AWS_ACCESS_KEY_ID
SK=$AWS_SECRET_ACCESS_KEY
EP=$S3_EP
BUCKET=engine-errors
"$AWS" --endpoint-url "$EP" s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb failed"

src=$T/src
mkdir -p "$src"
echo "some data" >"$src/a.txt"

# pipeline FILE TYPE WITH-FLOW-MAPPING
pipeline() {
  cat >"$1" <<EOF
version: 1
name: s3-errors
sources:
  - {name: files, type: files, with: {paths: [$(yq "$src")]}}
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - name: offsite
    type: $2
    with: $3
EOF
}

# no_secret FILE...: neither the real nor the wrong secret appears
no_secret() {
  local f
  for f in "$@"; do
    assert_not_contains "$f" "$SK" "the secret key in $f"
    assert_not_contains "$f" "wrong-secret-0123456789" "the wrong secret key in $f"
  done
}

pipeline "$T/ok.yml" s3 "{endpoint: '$EP', bucket: $BUCKET, addressing: path, max_retries: 1}"

note "wrong secret -> 403 SignatureDoesNotMatch, exit 1, no secret in the output"
AWS_SECRET_ACCESS_KEY=wrong-secret-0123456789 run_engine "$T/ws.out" "$T/ws.err" -v run "$T/ok.yml"
assert_rc 1 "run with a wrong secret" "$T/ws.out" "$T/ws.err"
assert_contains "$T/ws.err" "403" "wrong secret"
assert_contains "$T/ws.err" "SignatureDoesNotMatch" "wrong secret"
assert_contains "$T/ws.err" "sink 'offsite'" "wrong secret: the sink is named"
no_secret "$T/ws.out" "$T/ws.err"

note "wrong access key id -> 403 InvalidAccessKeyId"
AWS_ACCESS_KEY_ID=NOSUCHKEYID run_engine "$T/wk.out" "$T/wk.err" run "$T/ok.yml"
assert_rc 1 "run with a wrong key id" "$T/wk.out" "$T/wk.err"
assert_contains "$T/wk.err" "403" "wrong key id"
assert_contains "$T/wk.err" "InvalidAccessKeyId" "wrong key id"
no_secret "$T/wk.out" "$T/wk.err"

note "missing bucket -> a clear error"
pipeline "$T/nobucket.yml" s3 "{endpoint: '$EP', bucket: no-such-bucket, addressing: path}"
run_engine "$T/nb.out" "$T/nb.err" run "$T/nobucket.yml"
assert_rc 1 "run into a missing bucket" "$T/nb.out" "$T/nb.err"
assert_contains "$T/nb.err" "NoSuchBucket" "missing bucket"
assert_contains "$T/nb.err" "bucket 'no-such-bucket' does not exist" "missing bucket"

note "no credentials in the environment -> names the variables"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" \
  "$ENGINE_BIN" run "$T/ok.yml" >"$T/nc.out" 2>"$T/nc.err" </dev/null && fail "run without credentials succeeded"
assert_contains "$T/nc.err" "AWS_ACCESS_KEY_ID is not set" "no credentials"

note "invalid options are refused before any request"
pipeline "$T/minio-noep.yml" minio "{bucket: $BUCKET}"
run_engine "$T/v1.out" "$T/v1.err" validate "$T/minio-noep.yml"
[ "$RC" -ne 0 ] || fail "a minio sink without endpoint validated"
assert_contains "$T/v1.err" "endpoint" "minio without endpoint"
pipeline "$T/userinfo.yml" s3 "{endpoint: 'http://admin:hunter2pass@127.0.0.1:$PORT', bucket: $BUCKET}"
run_engine "$T/v2.out" "$T/v2.err" run "$T/userinfo.yml"
assert_rc 1 "an endpoint with user information" "$T/v2.out" "$T/v2.err"
assert_contains "$T/v2.err" "user information" "endpoint with user information"
assert_not_contains "$T/v2.err" "hunter2pass" "the endpoint's password"
pipeline "$T/vhost-ip.yml" s3 "{endpoint: '$EP', bucket: $BUCKET, addressing: virtual}"
run_engine "$T/v3.out" "$T/v3.err" run "$T/vhost-ip.yml"
assert_rc 1 "virtual-host addressing on an IP endpoint" "$T/v3.out" "$T/v3.err"
assert_contains "$T/v3.err" "addressing: path" "virtual-host addressing on an IP endpoint"

note "credentials from a shared-credentials file, profile 'backup'"
cat >"$T/aws-credentials" <<EOF
[default]
aws_access_key_id = NOTTHISONE
aws_secret_access_key = wrong-secret-0123456789

[profile backup]
aws_access_key_id = $AK
aws_secret_access_key = $SK
EOF
chmod 600 "$T/aws-credentials"
pipeline "$T/file.yml" s3 "{endpoint: '$EP', bucket: $BUCKET, prefix: from-file, addressing: path, credentials: 'file:$T/aws-credentials', profile: backup}"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" \
  "$ENGINE_BIN" run "$T/file.yml" >"$T/f.out" 2>"$T/f.err" </dev/null || { show "$T/f.err"; fail "run with file credentials failed"; }
pipeline "$T/file-noprof.yml" s3 "{endpoint: '$EP', bucket: $BUCKET, prefix: from-file, addressing: path, credentials: 'file:$T/aws-credentials', profile: nosuch}"
run_engine "$T/fp.out" "$T/fp.err" run "$T/file-noprof.yml"
assert_rc 1 "a missing profile" "$T/fp.out" "$T/fp.err"
assert_contains "$T/fp.err" "no section [nosuch]" "missing profile"
no_secret "$T/f.out" "$T/f.err" "$T/fp.out" "$T/fp.err"

note "secret options (env: references) instead of 'credentials'"
pipeline "$T/secret.yml" s3 "{endpoint: '$EP', bucket: $BUCKET, prefix: from-file, addressing: path, access_key_id: 'env:MY_AK', secret_access_key: 'env:MY_SK'}"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY MY_AK=$AK MY_SK=$SK ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" \
  "$ENGINE_BIN" snapshots "$T/secret.yml" >"$T/s.out" 2>"$T/s.err" </dev/null || { show "$T/s.err"; fail "snapshots with secret options failed"; }
assert_contains "$T/s.out" "1 snapshot" "the snapshot written with file credentials, read with secret options"

note "all good"
