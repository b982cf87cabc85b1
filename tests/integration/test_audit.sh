#!/usr/bin/env bash
# The audit trail: run, restore, key add/remove, check, forget, prune and
# repair each leave one record (time, host, user, command, pipeline,
# snapshot, outcome) in the local audit log (0600, its directory 0700) and as
# a sealed audits/ object in the repository; dry runs and read-only
# listings leave none; a failed command is in the local log only and leaves
# the repository unchanged; `engine audit` lists both, also when the
# repository cannot be read; check and prune leave the records alone.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/src"
echo "first" >"$T/src/a.txt"
write_pipeline "$T/p.yml" audited "$T/repo" "$T/src"
LOG=$ENGINE_STATE_DIR/audit.log
lines() { [ -f "$LOG" ] && wc -l <"$LOG" | tr -d ' ' || echo 0; }
objects() { find "$T/repo/audits" -type f 2>/dev/null | grep -vc '\.tmp-' || true; }
# expect_record WHAT COMMAND OUTCOME IN-REPO: one more local line (and one
# more object when IN-REPO is 1) since the last call
n_lines=0
n_objects=0
expect_record() {
  local l o
  l=$(lines)
  o=$(objects)
  assert_eq $((n_lines + 1)) "$l" "$1: local audit records"
  assert_eq $((n_objects + $4)) "$o" "$1: audits/ objects"
  assert_eq "$2" "$(tail -1 "$LOG" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["command"])')" "$1: command"
  assert_eq "$3" "$(tail -1 "$LOG" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["outcome"])')" "$1: outcome"
  n_lines=$l
  n_objects=$o
}
expect_none() {
  assert_eq "$n_lines" "$(lines)" "$1 leaves no local record"
  assert_eq "$n_objects" "$(objects)" "$1 leaves no audits/ object"
}

run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json
S1=$(json_get "$T/r1.json" 'j["snapshot"]')
expect_record "run" run success 1
[ "$(stat -c %a "$LOG")" = 600 ] || fail "the audit log is mode $(stat -c %a "$LOG"), expected 600"
[ "$(stat -c %a "$ENGINE_STATE_DIR")" = 700 ] || fail "the state directory is mode $(stat -c %a "$ENGINE_STATE_DIR"), expected 700"
# sealed: the repository's object does not show its content
obj=$(find "$T/repo/audits" -type f | head -1)
! grep -q '"command"' "$obj" || fail "the audits/ object is stored in plaintext"
assert_eq "$(sha256sum <"$obj" | cut -d' ' -f1)" "$(basename "$obj")" "the audits/ object is named by its hash"

echo "second" >"$T/src/b.txt"
run_ok "$T/r2.json" "$T/r2.err" run "$T/p.yml" --json
S2=$(json_get "$T/r2.json" 'j["snapshot"]')
expect_record "second run" run success 1
run_ok "$T/x" "$T/x.err" run "$T/p.yml" --dry-run
expect_none "run --dry-run"
run_ok "$T/x" "$T/x.err" snapshots "$T/p.yml"
run_ok "$T/x" "$T/x.err" show "$T/p.yml" latest
run_ok "$T/x" "$T/x.err" key list "$T/p.yml"
expect_none "snapshots, show and key list"
run_ok "$T/x" "$T/x.err" restore "$T/p.yml" "$S1" --target "$T/out"
expect_record "restore" restore success 1
assert_eq "$S1" "$(tail -1 "$LOG" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["snapshot"])')" "restore: the snapshot restored"
run_ok "$T/x" "$T/x.err" restore "$T/p.yml" latest --target "$T/out2" --dry-run
expect_none "restore --dry-run"
export NEWPASS=second-passphrase-for-audit
run_ok "$T/x" "$T/x.err" key add "$T/p.yml" --new-passphrase env:NEWPASS
expect_record "key add" "key add" success 1
NEWKEY=$(tail -1 "$LOG" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["details"]["key_added"])')
run_ok "$T/x" "$T/x.err" key remove "$T/p.yml" "$NEWKEY"
expect_record "key remove" "key remove" success 1
run_ok "$T/x" "$T/x.err" check "$T/p.yml"
expect_record "check" check success 1
run_ok "$T/x" "$T/x.err" forget "$T/p.yml" "$S1"
expect_record "forget" forget success 1
assert_eq "[\"$S1\"]" "$(tail -1 "$LOG" | "$PYTHON" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["details"]["removed"]))')" "forget: the ids removed"
before_prune=$(objects)
run_ok "$T/x" "$T/x.err" prune "$T/p.yml"
expect_record "prune" prune success 1
assert_eq $((before_prune + 1)) "$(objects)" "prune keeps every audits/ object"
run_ok "$T/x" "$T/x.err" repair index "$T/p.yml"
expect_record "repair index" "repair index" success 1
run_ok "$T/x" "$T/x.err" check "$T/p.yml" --read-data
expect_record "check --read-data (audits/ objects are no problem to check)" check success 1

# ---- a failed command: the local log only, the repository unchanged ------------
find "$T/repo" -type f | sort | xargs sha256sum >"$T/repo.before"
run_engine "$T/x" "$T/f.err" forget "$T/p.yml" 0123456789abcdef
assert_rc 1 "forget of an unknown snapshot" "$T/f.err"
expect_record "failed forget" forget failure 0
find "$T/repo" -type f | sort | xargs sha256sum >"$T/repo.after"
cmp -s "$T/repo.before" "$T/repo.after" || { diff "$T/repo.before" "$T/repo.after" >&2 || true; fail "the failed forget changed the repository"; }
case "$(tail -1 "$LOG")" in *0123456789abcdef*) ;; *) fail "the failure's record does not say why: $(tail -1 "$LOG")" ;; esac

# ---- engine audit ------------------------------------------------------------------
run_ok "$T/a.json" "$T/a.err" audit "$T/p.yml" --json
assert_eq "run|run|restore|key add|key remove|check|forget|prune|repair index|check|forget" \
  "$(json_get "$T/a.json" '"|".join(r["command"] for r in j)')" "engine audit: the commands, oldest first"
assert_eq "$(hostname)" "$(json_get "$T/a.json" 'j[0]["host"]')" "engine audit: host"
assert_eq "$(id -un)" "$(json_get "$T/a.json" 'j[0]["user"]')" "engine audit: user"
assert_eq audited "$(json_get "$T/a.json" 'j[0]["pipeline"]')" "engine audit: pipeline"
assert_eq "$S2" "$(json_get "$T/a.json" 'j[1]["snapshot"]')" "engine audit: the run's snapshot"
assert_eq "repository local" "$(json_get "$T/a.json" '" ".join(j[0]["stored"])')" "stored in both"
assert_eq "local" "$(json_get "$T/a.json" '" ".join(j[-1]["stored"])')" "the failure: local only"
assert_eq "failure" "$(json_get "$T/a.json" 'j[-1]["outcome"]')" "the failure's outcome"
assert_eq true "$(json_get "$T/a.json" 'all(r["time"].endswith("Z") for r in j)')" "times"
run_ok "$T/a.txt" "$T/a.err" audit "$T/p.yml"
assert_contains "$T/a.txt" "repair index" "engine audit (table)"
assert_contains "$T/a.txt" "local only" "engine audit (table) marks what only the local log has"
# records of another host's log (a new host) come from the repository alone
ENGINE_STATE_DIR=$T/other-host run_ok "$T/b.json" "$T/b.err" audit "$T/p.yml" --json
assert_eq "$(objects)" "$(json_get "$T/b.json" 'len(j)')" "a host without a local log sees the repository's records"
# the repository unreadable: the local records, exit 1
mv "$T/repo" "$T/repo.away"
run_engine "$T/c.json" "$T/c.err" audit "$T/p.yml" --json
assert_rc 1 "engine audit without the repository" "$T/c.err"
assert_eq "$(lines)" "$(json_get "$T/c.json" 'len(j)')" "engine audit without the repository lists the local log"
assert_contains "$T/c.err" "local audit log" "engine audit says it shows only the local log"
rm -rf "$T/repo" # (the local sink made an empty directory there)
mv "$T/repo.away" "$T/repo"
# ENGINE_AUDIT_LOG=off: no local log, the repository still gets the record
ENGINE_AUDIT_LOG=off run_ok "$T/x" "$T/x.err" check "$T/p.yml"
assert_eq "$n_lines" "$(lines)" "ENGINE_AUDIT_LOG=off"
assert_eq $((n_objects + 1)) "$(objects)" "ENGINE_AUDIT_LOG=off: the repository's record"
note "PASS"
