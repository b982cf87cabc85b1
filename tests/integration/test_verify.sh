#!/usr/bin/env bash
# Verification that means something. check --restore-test of a files
# pipeline restores its newest snapshot into a scratch directory, compares
# every item with the snapshot and measures the restore time against
# objectives.rto; the scratch directory is gone afterwards. A disk that
# silently damages one write (tests/tools/faultfs, FAULTFS_ERRNO=corrupt on
# the scratch directory) fails the test naming the file; so does one that
# sets an mtime a second off. A pipeline whose
# sources cannot restore-test fails check --restore-test unless
# --allow-untested (result "untested"). Every check leaves a verify/ object,
# and a fresh `engine status` reports the last one (result, time, restore
# seconds, RTO met or not).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/src/d/e" "$T/rt"
random_file "$T/src/d/data.bin" 3
echo "notes" >"$T/src/d/e/notes.txt"
ln -s e/notes.txt "$T/src/d/link"
ln "$T/src/d/data.bin" "$T/src/d/hard.bin"
truncate -s 2M "$T/src/d/sparse"
printf 'x' | dd of="$T/src/d/sparse" bs=1 seek=1000000 conv=notrunc status=none
chmod 0640 "$T/src/d/e/notes.txt"
touch -d '2020-02-02 02:02:02.123456789' "$T/src/d/e/notes.txt"
mkfifo "$T/src/d/fifo"
setfattr -n user.colour -v blue "$T/src/d/e/notes.txt" 2>/dev/null || true
write_pipeline "$T/p.yml" verify "$T/repo" "$T/src"
printf 'objectives: {rpo: 1h, rto: 10m}\n' >>"$T/p.yml"
export ENGINE_RESTORE_TEST_DIR=$T/rt

run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json
SNAP=$(json_get "$T/run.json" 'j["snapshot"]')

# ---- a restore test that passes --------------------------------------------------------
run_ok "$T/c1.json" "$T/c1.err" check "$T/p.yml" --restore-test --json
assert_eq true "$(json_get "$T/c1.json" 'j["ok"]')" "ok"
assert_eq ok "$(json_get "$T/c1.json" 'j["restore_test_result"]')" "restore_test_result"
assert_eq "$SNAP" "$(json_get "$T/c1.json" 'j["restore_test_snapshot"]')" "the snapshot tested"
assert_eq ok "$(json_get "$T/c1.json" 'j["restore_test"][0]["result"]')" "the files source's result"
items=$(json_get "$T/c1.json" 'j["restore_test"][0]["items"]')
[ "$items" -ge 8 ] || fail "restore test compared $items item(s), expected every item of the tree"
secs=$(json_get "$T/c1.json" 'j["restore_seconds"]')
"$PYTHON" -c "import sys; sys.exit(0 if 0 < float('$secs') < 600 else 1)" || fail "restore_seconds $secs"
assert_eq 600 "$(json_get "$T/c1.json" 'j["rto_seconds"]')" "rto_seconds"
assert_eq true "$(json_get "$T/c1.json" 'j["rto_met"]')" "rto_met"
assert_empty_dir_or_absent "$T/rt" "the scratch space after the restore test"

run_ok "$T/s1.json" "$T/s1.err" status "$T/p.yml" --json
assert_eq restore-test "$(json_get "$T/s1.json" 'j[0]["last_verify"]["check"]')" "last verify kind"
assert_eq ok "$(json_get "$T/s1.json" 'j[0]["last_verify"]["result"]')" "last verify result"
assert_eq "$SNAP" "$(json_get "$T/s1.json" 'j[0]["last_restore_test"]["snapshot"]')" "tested snapshot"
assert_eq true "$(json_get "$T/s1.json" 'j[0]["last_restore_test"]["rto_met"]')" "rto met"
[ "$(ls "$T/repo/verify" | wc -l)" -eq 1 ] || fail "expected one verify/ object"

# ---- a plain check is recorded as such ----------------------------------------------------
run_ok "$T/c2.json" "$T/c2.err" check "$T/p.yml" --read-data --json
run_ok "$T/s2.json" "$T/s2.err" status "$T/p.yml" --json
assert_eq read-data "$(json_get "$T/s2.json" 'j[0]["last_verify"]["check"]')" "last verify kind"
assert_eq "$SNAP" "$(json_get "$T/s2.json" 'j[0]["last_restore_test"]["snapshot"]')" \
  "the last restore test is still known after a check without one"
[ "$(ls "$T/repo/verify" | wc -l)" -eq 2 ] || fail "expected a verify/ object per check"

# ---- the restore lands on a disk that damages one write ------------------------------------
FAULTFS=${ENGINE_FAULTFS:-$(dirname "$ENGINE_BIN")/tests/tools/engine-faultfs.so}
[ -f "$FAULTFS" ] || fail "the faultfs shim is missing ($FAULTFS)"
preload=$FAULTFS
asan=$(ldd "$ENGINE_BIN" | awk '/libasan/ { print $3 }')
[ -n "$asan" ] && preload="$asan $FAULTFS"
RC=0
LD_PRELOAD="$preload" FAULTFS_PATH="$T/rt/" FAULTFS_OPS=write FAULTFS_ERRNO=corrupt FAULTFS_COUNT=1 \
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" check "$T/p.yml" --restore-test --json \
  >"$T/c3.json" 2>"$T/c3.err" </dev/null || RC=$?
assert_rc 1 "a restore test whose restored file was silently damaged" "$T/c3.json" "$T/c3.err"
assert_eq failed "$(json_get "$T/c3.json" 'j["restore_test_result"]')" "restore_test_result"
assert_contains "$T/c3.err" "differs from the snapshot: its content on disk is not the content in the snapshot" \
  "the difference is named"
json_get "$T/c3.json" 'j["restore_test"][0]["error"]' >"$T/c3.error"
assert_contains "$T/c3.error" "difference(s)" "the JSON carries what differs"
assert_empty_dir_or_absent "$T/rt" "the scratch space after the failed restore test"
run_engine "$T/s3.json" "$T/s3.err" status "$T/p.yml" --json
assert_rc 4 "status after a failed verification" "$T/s3.json"
assert_eq failed "$(json_get "$T/s3.json" 'j[0]["last_verify"]["result"]')" "last verify result"

# ... and on one whose times are off by a second for one file (metadata)
RC=0
LD_PRELOAD="$preload" FAULTFS_PATH="$T/rt/" FAULTFS_OPS=times FAULTFS_ERRNO=corrupt \
  FAULTFS_AFTER=2 FAULTFS_COUNT=1 FAULTFS_LOG="$T/faultfs.log" \
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" check "$T/p.yml" --restore-test --json \
  >"$T/c5.json" 2>"$T/c5.err" </dev/null || RC=$?
assert_rc 1 "a restore test whose restored mtime was silently changed" "$T/c5.json" "$T/c5.err"
[ -s "$T/faultfs.log" ] || fail "faultfs changed no time"
assert_contains "$T/c5.err" "differs from the snapshot: mtime" "the mtime difference is named"
assert_empty_dir_or_absent "$T/rt" "the scratch space after the second failed restore test"

# ---- a restore slower than the RTO ------------------------------------------------------
sed -i 's/rto: 10m/rto: 1ms/' "$T/p.yml"
run_ok "$T/c4.json" "$T/c4.err" check "$T/p.yml" --restore-test --json
assert_eq false "$(json_get "$T/c4.json" 'j["rto_met"]')" "rto_met with a 1 ms objective"
assert_contains "$T/c4.err" "longer than the pipeline's recovery-time objective" "the RTO warning"
run_engine "$T/s4.txt" "$T/s4.err" status "$T/p.yml"
assert_rc 4 "status when the last restore test missed the RTO" "$T/s4.txt"
assert_contains "$T/s4.txt" "NOT MET" "the text says the RTO was not met"

# ---- sources that cannot restore-test ------------------------------------------------------
[ -f "$ENGINE_TEST_PLUGIN_DIR/engine-source-evil.so" ] || fail "the test plugin 'evil' is missing"
cat >"$T/evil.yml" <<EOF
version: 1
name: evil
sources:
  - {name: evil, type: evil}
stages:
  encrypt: {algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE}
sinks:
  - {name: local, type: local, with: {path: $(yq "$T/repo-evil")}}
EOF
ev() { run_engine "$@" --plugin-dir "$ENGINE_TEST_PLUGIN_DIR"; }
ev "$T/e0.json" "$T/e0.err" run "$T/evil.yml" --json
[ "$RC" -eq 3 ] || { show "$T/e0.err"; fail "run of the evil pipeline: exit $RC, expected 3"; }
ev "$T/e1.json" "$T/e1.err" check "$T/evil.yml" --restore-test --json
assert_rc 1 "check --restore-test with no source able to restore-test" "$T/e1.json" "$T/e1.err"
assert_eq false "$(json_get "$T/e1.json" 'j["ok"]')" "ok"
assert_eq failed "$(json_get "$T/e1.json" 'j["restore_test_result"]')" "restore_test_result"
assert_contains "$T/e1.err" "can be restore-tested" "the error says nothing could be tested"
assert_contains "$T/e1.err" "--allow-untested" "the error names the way out"
ev "$T/e2.json" "$T/e2.err" check "$T/evil.yml" --restore-test --allow-untested --json
assert_rc 0 "the same with --allow-untested" "$T/e2.json" "$T/e2.err"
assert_eq untested "$(json_get "$T/e2.json" 'j["restore_test_result"]')" "restore_test_result"
ev "$T/e3.json" "$T/e3.err" status "$T/evil.yml" --json
assert_eq untested "$(json_get "$T/e3.json" 'j[0]["last_verify"]["result"]')" "recorded result"
note "restore tests compare content and metadata, fail on damage and when nothing is tested"
