#!/usr/bin/env bash
# The gcs sink against the firebase-tools Cloud Storage emulator (a GCS JSON
# API implementation by Google's Firebase team), without credentials: a full
# `engine run` of a files pipeline into a bucket under a prefix, the objects
# seen through the emulator's own REST listing and downloaded by curl, a
# byte-for-byte restore, `check --read-data`, and the run's lock object
# deleted again.
#
# What this cannot show: OAuth2, IAM and ifGenerationMatch (the emulator
# ignores auth and preconditions), resumable chunked uploads (the emulator
# finalises them on the first chunk), real GCS latency and throughput. The
# OAuth2, resumable and precondition paths are covered by test_gcs_fake.sh
# against tests/servers/fake_gcs.py.
#
# Needs node and npm: tests/servers/gcs-emu.sh installs firebase-tools once
# into /var/cache/engine-test/firebase ($ENGINE_TEST_CACHE); if that install
# fails (no npm registry), this test FAILS rather than skipping.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

EMU="$REPO_ROOT/tests/servers/gcs-emu.sh"
BUCKET=engine-test
PREFIX=engine/

port=$(free_port)
emu_dir=$T/emu
stop_emu() { bash "$EMU" stop "$emu_dir" || true; }
at_exit stop_emu

note "starting the storage emulator on 127.0.0.1:$port"
bash "$EMU" start "$emu_dir" "$port" || fail "unable to start the GCS emulator (see the messages above)"
ENDPOINT=http://127.0.0.1:$port

# ---- data ---------------------------------------------------------------
src=$T/src
mkdir -p "$src/docs/sub dir" "$src/bin"
random_file "$src/bin/random.bin" 3
seq 1 200000 >"$src/docs/numbers.txt"
printf 'hello gcs\n' >"$src/docs/sub dir/with space.txt"
: >"$src/docs/empty"
ln -s ../docs/numbers.txt "$src/bin/link"

cat >"$T/p.yml" <<EOF
version: 1
name: gcs-emulator
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
      prefix: $PREFIX
      endpoint: $ENDPOINT
EOF

run_ok "$T/validate.out" "$T/validate.err" validate "$T/p.yml"

# ---- backup ---------------------------------------------------------------
run_ok "$T/run.json" "$T/run.err" -v run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run.json" 'j["status"]')" "status of the run"
snap=$(json_get "$T/run.json" 'j["snapshot"]')
note "snapshot $snap stored in the emulator"

# ---- the objects, seen through the emulator's REST API ----------------------
curl -fsS "$ENDPOINT/storage/v1/b/$BUCKET/o?prefix=$PREFIX" -o "$T/list.json" ||
  fail "unable to list gs://$BUCKET/$PREFIX through the emulator's REST API"
names=$(json_get "$T/list.json" '"\n".join(sorted(i["name"] for i in j.get("items", [])))')
echo "$names" >"$T/names.txt"
grep -qx "${PREFIX}config" "$T/names.txt" || { show "$T/names.txt"; fail "no ${PREFIX}config object in the bucket"; }
grep -qx "${PREFIX}snapshots/$snap" "$T/names.txt" || { show "$T/names.txt"; fail "the snapshot object ${PREFIX}snapshots/$snap is not in the bucket"; }
grep -q "^${PREFIX}data/" "$T/names.txt" || { show "$T/names.txt"; fail "no pack under ${PREFIX}data/ in the bucket"; }
# a successful run removes its lock: exercises DELETE
if grep -q "^${PREFIX}locks/" "$T/names.txt"; then
  show "$T/names.txt"
  fail "a lock object is left in the bucket after the run"
fi
outside=$(curl -fsS "$ENDPOINT/storage/v1/b/$BUCKET/o" | "$PYTHON" -c '
import json, sys
print(len([i for i in json.load(sys.stdin).get("items", []) if not i["name"].startswith(sys.argv[1])]))' "$PREFIX")
assert_eq 0 "$outside" "objects written outside the prefix $PREFIX"

# an independent download of a pack has the size the listing reports
pack=$(grep -m1 "^${PREFIX}data/" "$T/names.txt")
pack_enc=$("$PYTHON" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$pack")
curl -fsS "$ENDPOINT/storage/v1/b/$BUCKET/o/$pack_enc?alt=media" -o "$T/pack.bin" ||
  fail "unable to download $pack through the emulator's REST API"
want=$(json_get "$T/list.json" "[i['size'] for i in j['items'] if i['name'] == '$pack'][0]")
assert_eq "$want" "$(stat -c %s "$T/pack.bin")" "size of $pack downloaded with curl"

# ---- restore and verify ----------------------------------------------------
run_ok "$T/snaps.out" "$T/snaps.err" snapshots "$T/p.yml" --json
assert_contains "$T/snaps.out" "$snap" "engine snapshots lists the snapshot"
run_ok "$T/restore.out" "$T/restore.err" restore "$T/p.yml" latest --target "$T/out"
compare_trees "$src" "$(restored_path "$T/out" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the restore from the emulator differs from the source"; }
run_ok "$T/check.json" "$T/check.err" check "$T/p.yml" --read-data --json
assert_eq true "$(json_get "$T/check.json" 'j["ok"]')" "check --read-data"
assert_eq true "$(json_get "$T/check.json" 'j["read_data"]')" "check read the data"

note "PASS"
