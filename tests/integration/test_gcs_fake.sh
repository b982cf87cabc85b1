#!/usr/bin/env bash
# The gcs sink's OAuth2, resumable-upload, retry and precondition paths
# against tests/servers/fake_gcs.py -- a FAKE GCS server written from
# Google's public documentation (JSON API, resumable uploads, the OAuth2 JWT
# bearer grant), not Google's code.
#
# A throw-away service-account key is generated here (openssl genrsa; never
# committed); the fake verifies every JWT assertion's RS256 signature against
# its public key and issues 5-second access tokens, and refuses storage
# requests without a valid, unexpired token. Checked:
#   1. a backup with forced small resumable thresholds: one pack goes up in
#      several 256 KiB Content-Range chunks (308 Resume Incomplete between);
#      uploads carry ifGenerationMatch=0; listings (one item per page)
#      follow nextPageToken;
#   2. tokens: the run outlives a token (proactive refresh before expiry),
#      and tokens revoked mid-run (401) are replaced and the request resent;
#   3. faults: 503s on media uploads (retried by the shared HTTP client), a
#      chunk whose answer is lost after the server stored it and a chunk that
#      fails outright (the sink asks the session's status and resumes);
#   4. a 412 on a no-overwrite upload is reported as "already exists";
#   5. a key the server does not know (wrong signature) fails with the
#      token endpoint's reason;
#   6. byte-for-byte restore and check --read-data; no token or key material
#      in any output, even at debug verbosity.
# What it cannot show: real GCS IAM and quotas, Google's exact error bodies,
# real latency and throughput, CRC32C (the sink verifies MD5 and size).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FAKE="$REPO_ROOT/tests/servers/fake_gcs.py"
BUCKET=engine-test
EMAIL=engine-test@engine-test.iam.gserviceaccount.com
command -v openssl >/dev/null 2>&1 || fail "openssl is required to generate the test key"
command -v curl >/dev/null 2>&1 || fail "curl is required to drive the fake's controls"

fake_pid=
stop_fake() {
  if [ -n "$fake_pid" ] && kill -0 "$fake_pid" 2>/dev/null; then
    kill "$fake_pid" 2>/dev/null || true
    wait "$fake_pid" 2>/dev/null || true
  fi
}
at_exit stop_fake

# ---- a throw-away service account ----------------------------------------
openssl genrsa -out "$T/sa-key.pem" 2048 2>/dev/null || fail "openssl genrsa failed"
openssl rsa -in "$T/sa-key.pem" -pubout -out "$T/sa-pub.pem" 2>/dev/null || fail "openssl rsa -pubout failed"
openssl genrsa -out "$T/other-key.pem" 2048 2>/dev/null || fail "openssl genrsa failed"

"$PYTHON" "$FAKE" --port 0 --port-file "$T/port" --bucket "$BUCKET" --public-key "$T/sa-pub.pem" \
  --client-email "$EMAIL" --token-lifetime 5 --require-auth --page-size 1 2>"$T/fake.log" &
fake_pid=$!
for _ in $(seq 1 100); do
  [ -s "$T/port" ] && break
  kill -0 "$fake_pid" 2>/dev/null || { show "$T/fake.log"; fail "fake_gcs.py exited at start"; }
  sleep 0.1
done
[ -s "$T/port" ] || fail "fake_gcs.py did not start within 10 s"
port=$(cat "$T/port")
FAKE_URL=http://127.0.0.1:$port
note "fake GCS (written from Google's docs, not GCS) on $FAKE_URL"

make_key() { # PEM OUT
  "$PYTHON" - "$1" "$2" "$EMAIL" "$FAKE_URL/token" <<'EOF'
import json, os, sys
pem, out, email, uri = sys.argv[1:5]
key = {"type": "service_account", "project_id": "engine-test", "private_key_id": "test",
       "private_key": open(pem).read(), "client_email": email, "client_id": "1",
       "token_uri": uri}
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump(key, f)
EOF
}
make_key "$T/sa-key.pem" "$T/sa.json"
make_key "$T/other-key.pem" "$T/other.json"

ctl() { # PATH: POST to a control endpoint
  curl -fsS -X POST "$FAKE_URL/__fake/$1" >/dev/null || fail "fake control $1 failed"
}
requests() { # OUT
  curl -fsS "$FAKE_URL/__fake/requests" -o "$1" || fail "unable to read the fake's request log"
}

# ---- data and pipeline ------------------------------------------------------
src=$T/src
mkdir -p "$src/a" "$src/b"
random_file "$src/a/big.bin" 6
seq 1 100000 >"$src/b/numbers.txt"
printf 'small\n' >"$src/b/small.txt"

write_gcs_pipeline() { # FILE KEYFILE
  cat >"$1" <<EOF
version: 1
name: gcs-fake
sources:
  - name: files
    type: files
    with:
      paths: [$(yq "$src")]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - name: gcp
    type: gcs
    with:
      bucket: $BUCKET
      prefix: engine
      credentials: $(yq "file:$2")
      endpoint: $FAKE_URL
      resumable_threshold: 512KiB
      chunk_size: 256KiB
      max_retries: 4
EOF
}
write_gcs_pipeline "$T/p.yml" "$T/sa.json"
write_gcs_pipeline "$T/wrong.yml" "$T/other.json"

# ---- 5. a key the token endpoint does not accept ------------------------------
run_engine "$T/wrong.out" "$T/wrong.err" run "$T/wrong.yml" --json
[ "$RC" -ne 0 ] || fail "a run with an unknown service-account key succeeded"
assert_contains "$T/wrong.err" "Invalid JWT Signature" "the token endpoint's reason is reported"
assert_contains "$T/wrong.err" "$EMAIL" "the message names the service account"
ctl reset

# ---- 1 + 2. backup with resumable chunks, outliving and losing tokens -------------
# Each storage request waits 250 ms: the 6 MiB pack's 24 sequential chunks
# make the run last well over the 5-second token lifetime.
ctl "delay?ms=250"
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" -v -v run "$T/p.yml" --json \
  >"$T/run1.json" 2>"$T/run1.err" </dev/null &
run_pid=$!
sleep 2
ctl expire-tokens # revoke whatever token the run holds now
rc=0
wait "$run_pid" || rc=$?
ctl "delay?ms=0"
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/run1.err"; then
  show "$T/run1.err"
  fail "sanitizer report from the first run"
fi
[ "$rc" -eq 0 ] || { show "$T/run1.json" "$T/run1.err"; fail "the first run exited with status $rc"; }
assert_eq complete "$(json_get "$T/run1.json" 'j["status"]')" "status of run 1"
requests "$T/req1.json"

chunks=$(json_get "$T/req1.json" 'len([r for r in j if r["kind"] == "chunk" and r["status"] in (200, 308) and r["content_range"]])')
note "run 1: $chunks chunk requests"
[ "$chunks" -ge 8 ] || { show "$T/req1.json"; fail "expected the pack in >= 8 resumable chunks, the fake saw $chunks"; }
n308=$(json_get "$T/req1.json" 'len([r for r in j if r["kind"] == "chunk" and r["status"] == 308])')
[ "$n308" -ge 7 ] || fail "expected 308 Resume Incomplete answers between chunks, got $n308"
# every non-final chunk is 256 KiB at a 256 KiB boundary
bad=$(json_get "$T/req1.json" '[r["content_range"] for r in j if r["kind"] == "chunk" and r["status"] == 308 and (int(r["content_range"].split()[1].split("-")[0]) % 262144 or r["body_len"] != 262144)]')
assert_eq "[]" "$bad" "misaligned resumable chunks"
unconditional=$(json_get "$T/req1.json" 'len([r for r in j if r["kind"] in ("upload", "session-start") and r["query"].get("ifGenerationMatch") != "0"])')
assert_eq 0 "$unconditional" "uploads without ifGenerationMatch=0 (all engine writes are no-overwrite)"

tokens=$(json_get "$T/req1.json" 'len(set(r["token_id"] for r in j if r["kind"] == "token" and r["status"] == 200))')
expired=$(json_get "$T/req1.json" 'len([r for r in j if r["auth"] == "expired"])')
note "run 1: $tokens access tokens, $expired requests refused with an expired token"
[ "$expired" -ge 1 ] || fail "the revoked token was never refused: the 401 path was not exercised"
[ "$expired" -le 8 ] || fail "$expired requests were refused with an expired token: the sink does not renew after a 401"
# only the revoked token may ever be refused: natural expiry is anticipated
stale=$(json_get "$T/req1.json" 'len(set(r["token_id"] for r in j if r["auth"] == "expired"))')
assert_eq 1 "$stale" "distinct tokens refused as expired (the sink must renew before expiry)"
# token 1 at the start, token 2 after the revocation, a third one only
# from renewing before the 5-second lifetime ran out
[ "$tokens" -ge 3 ] || { show "$T/run1.err"; fail "expected >= 3 access tokens in a run that outlives its tokens, got $tokens"; }
unauth=$(json_get "$T/req1.json" 'len([r for r in j if r["kind"] != "token" and r["auth"] not in ("ok", "expired")])')
assert_eq 0 "$unauth" "storage requests without a valid bearer token"

# ---- 3. faults: retried media uploads, lost and failed chunks --------------------
random_file "$src/a/big2.bin" 2
ctl reset
ctl "fail?status=503&count=2&match=upload"
ctl "fail?status=503&count=1&match=chunk&commit=1"
ctl "fail?status=500&count=1&match=chunk"
run_ok "$T/run2.json" "$T/run2.err" -v run "$T/p.yml" --json
requests "$T/req2.json"
retried=$(json_get "$T/req2.json" 'len([r for r in j if r["kind"] == "upload" and r["status"] == 503])')
assert_eq 2 "$retried" "media uploads answered 503 (then retried)"
status_q=$(json_get "$T/req2.json" 'len([r for r in j if r["kind"] == "status" and r["status"] == 308])')
[ "$status_q" -ge 2 ] || { show "$T/req2.json"; fail "expected the sink to ask the session status after failed chunks, saw $status_q queries"; }
assert_contains "$T/run2.err" "resuming" "the resumed upload is logged"

# ---- 4. a 412 for ifGenerationMatch=0 is "already exists" ----------------------
ctl reset
ctl "fail?status=412&count=1&match=upload"
run_engine "$T/run3.out" "$T/run3.err" run "$T/p.yml" --json
[ "$RC" -ne 0 ] || fail "a run whose no-overwrite upload got 412 succeeded"
assert_contains "$T/run3.err" "already exists" "a 412 is reported as an existing object"
ctl reset

# ---- 6. restore, check, no secrets anywhere ------------------------------------
run_ok "$T/restore.out" "$T/restore.err" -v -v restore "$T/p.yml" latest --target "$T/out"
compare_trees "$src" "$(restored_path "$T/out" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the restore from the fake differs from the source"; }
run_ok "$T/check.json" "$T/check.err" -v -v check "$T/p.yml" --read-data --json
assert_eq true "$(json_get "$T/check.json" 'j["ok"]')" "check --read-data"
requests "$T/req4.json"
ranged=$(json_get "$T/req4.json" 'len([r for r in j if r["kind"] == "download" and r["status"] in (200, 206)])')
[ "$ranged" -ge 1 ] || fail "restore and check downloaded nothing"
# the fake pages listings after one item: two snapshots need a pageToken
paged=$(json_get "$T/req4.json" 'len([r for r in j if r["kind"] == "list" and "pageToken" in r["query"] and r["status"] == 200])')
[ "$paged" -ge 1 ] || { show "$T/req4.json"; fail "no listing followed a nextPageToken"; }
run_ok "$T/snaps.json" "$T/snaps.err" snapshots "$T/p.yml" --json
assert_eq 2 "$(json_get "$T/snaps.json" 'len(j) if isinstance(j, list) else len(j["snapshots"])')" "snapshots listed through paged listings"

key_line=$(sed -n 2p "$T/sa-key.pem")
for f in "$T"/*.err "$T"/*.out "$T"/run*.json "$T"/check.json "$T"/snaps.json; do
  if grep -qF -- "ya29.fake-" "$f"; then fail "an access token appears in $f"; fi
  if grep -qF -- "PRIVATE KEY" "$f" || grep -qF -- "$key_line" "$f"; then fail "key material appears in $f"; fi
done

note "PASS"
