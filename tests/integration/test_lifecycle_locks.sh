#!/usr/bin/env bash
# Repository locks:
#  1. two backups of different pipelines into one repository run at the same
#     time (shared locks), both succeed and both restore byte for byte;
#  2. a backup killed with SIGKILL leaves its lock object behind; the next
#     run removes it as stale (its process is gone), says so, and succeeds;
#  3. while a backup runs, prune and forget (exclusive) fail at once with
#     "the repository is locked", `prune --lock-wait 1s` gives up after a
#     second, and `prune --lock-wait 2m` waits for the backup, then succeeds
#     (it must see the index and snapshot the backup wrote while it waited)
#     without touching the new snapshot's data.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

repo=$T/repo
# Lock objects in the repository (not the temporary files of a writer).
lock_count() {
  if [ -d "$repo/locks" ]; then
    find "$repo/locks" -type f ! -name '*.tmp-*' | wc -l
  else
    echo 0
  fi
}

# wait_for_lock PID WHAT: until a lock object exists; PID must keep running.
wait_for_lock() {
  local i
  for i in $(seq 1 400); do
    [ "$(lock_count)" -ge 1 ] && return 0
    kill -0 "$1" 2>/dev/null || fail "$2 ended before any lock object appeared under $repo/locks"
    sleep 0.05
  done
  fail "no lock object appeared under $repo/locks within 20 s of starting $2"
}

# start_engine OUT ERR ARGS...: the engine in the background; PID in $BG.
start_engine() {
  local out=$1 err=$2
  shift 2
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" "$@" >"$out" 2>"$err" </dev/null &
  BG=$!
}

# finish_engine PID OUT ERR WHAT: wait for it; fail unless it exited 0.
finish_engine() {
  local rc=0
  wait "$1" || rc=$?
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$3"; then
    show "$3"
    fail "sanitizer report from $4"
  fi
  [ "$rc" -eq 0 ] || { show "$2" "$3"; fail "$4 exited with status $rc, expected 0"; }
}

srcA=$T/srcA
srcB=$T/srcB
mkdir -p "$srcA" "$srcB"
echo "pipeline A" >"$srcA/readme"
echo "pipeline B" >"$srcB/readme"
write_pipeline "$T/a.yml" lockA "$repo" "$srcA"
# forget must have a policy to apply; it must not get to apply it here
echo "retention: {keep_last: 100}" >>"$T/a.yml"
write_pipeline "$T/b.yml" lockB "$repo" "$srcB"
run_ok "$T/init.json" "$T/init.err" run "$T/a.yml" --json
assert_eq 0 "$(lock_count)" "lock objects left after a completed run"

# ---- 1. two concurrent backups -------------------------------------------------
# Backup A is paused (SIGSTOP) once it holds its lock, until backup B holds
# its own too: the overlap does not depend on the machine's speed. Then
# both run on at the same time, writing packs and indexes side by side.
for i in 1 2 3 4; do
  random_file "$srcA/a-$i" 10
  random_file "$srcB/b-$i" 10
done
start_engine "$T/ca.json" "$T/ca.err" run "$T/a.yml" --json
pa=$BG
wait_for_lock "$pa" "the run of pipeline A"
kill -STOP "$pa"
start_engine "$T/cb.json" "$T/cb.err" run "$T/b.yml" --json
pb=$BG
for i in $(seq 1 400); do
  [ "$(lock_count)" -ge 2 ] && break
  kill -0 "$pb" 2>/dev/null || break
  sleep 0.05
done
both=$(lock_count)
kill -CONT "$pa"
[ "$both" -ge 2 ] || {
  wait "$pb" || true
  show "$T/cb.json" "$T/cb.err"
  fail "pipeline B's run never held a lock next to pipeline A's shared lock ($both lock object(s)); backups do not run concurrently"
}
finish_engine "$pa" "$T/ca.json" "$T/ca.err" "the concurrent run of pipeline A"
finish_engine "$pb" "$T/cb.json" "$T/cb.err" "the concurrent run of pipeline B"
assert_eq 0 "$(lock_count)" "lock objects left after the concurrent runs"
snapA=$(json_get "$T/ca.json" 'j["snapshot"]')
snapB=$(json_get "$T/cb.json" 'j["snapshot"]')
run_ok "$T/ra.out" "$T/ra.err" restore "$T/a.yml" "$snapA" --target "$T/outA"
compare_trees "$srcA" "$(restored_path "$T/outA" "$srcA")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "pipeline A's concurrent snapshot does not restore byte for byte"; }
run_ok "$T/rb.out" "$T/rb.err" restore "$T/b.yml" "$snapB" --target "$T/outB"
compare_trees "$srcB" "$(restored_path "$T/outB" "$srcB")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "pipeline B's concurrent snapshot does not restore byte for byte"; }
run_engine "$T/check.out" "$T/check.err" check "$T/a.yml" --read-data
assert_rc 0 "check --read-data after the concurrent runs" "$T/check.out" "$T/check.err"

# ---- 2. a stale lock left by SIGKILL -----------------------------------------
random_file "$srcB/big" 60
start_engine "$T/k.json" "$T/k.err" run "$T/b.yml" --json
victim=$BG
wait_for_lock "$victim" "the backup to be killed"
# stopped at once, while it holds its lock (a sleep here let a fast backup
# finish and remove it before the kill); then killed where it stands
kill -STOP "$victim" 2>/dev/null || fail "the backup to be killed had already ended"
[ "$(lock_count)" -ge 1 ] ||
  fail "the backup finished within one poll of taking its lock: make $srcB/big larger"
kill -KILL "$victim" 2>/dev/null || fail "the stopped backup could not be killed"
{ wait "$victim"; } 2>/dev/null || true
left=$(lock_count)
[ "$left" -ge 1 ] || fail "the SIGKILLed backup left no lock object under $repo/locks"
note "the killed backup left $left lock object(s)"

run_ok "$T/next.json" "$T/next.err" run "$T/b.yml" --json
assert_contains "$T/next.err" "removing stale lock" "the run after a SIGKILLed backup"
assert_contains "$T/next.err" "no longer exists" "the run after a SIGKILLed backup (why the lock is stale)"
assert_eq complete "$(json_get "$T/next.json" 'j["status"]')" "status of the run after a SIGKILLed backup"
assert_eq 0 "$(lock_count)" "lock objects left after the run that cleared the stale lock"
snapNext=$(json_get "$T/next.json" 'j["snapshot"]')
run_ok "$T/rn.out" "$T/rn.err" restore "$T/b.yml" "$snapNext" --target "$T/outNext"
compare_trees "$srcB" "$(restored_path "$T/outNext" "$srcB")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the snapshot after the stale lock does not restore byte for byte"; }
run_engine "$T/check.out" "$T/check.err" check "$T/b.yml" --read-data
assert_rc 0 "check --read-data at the end" "$T/check.out" "$T/check.err"

# ---- 3. prune and forget while a backup runs -------------------------------
# The backup is paused (SIGSTOP) while it holds its lock, so that it is
# still running whatever the machine's speed; a stopped process exists, so
# its lock is not stale.
random_file "$srcA/big" 60
start_engine "$T/slow.json" "$T/slow.err" run "$T/a.yml" --json
slow=$BG
wait_for_lock "$slow" "the backup"
kill -STOP "$slow"
# never leave a stopped engine behind if a check below fails
trap 'rc=$?; kill -KILL "$slow" 2>/dev/null; (exit "$rc"); _lib_cleanup' EXIT

t0=$(date +%s)
run_engine "$T/p1.out" "$T/p1.err" prune "$T/a.yml"
t1=$(date +%s)
assert_rc 1 "prune while a backup runs" "$T/p1.out" "$T/p1.err"
assert_contains "$T/p1.err" "the repository is locked" "prune while a backup runs"
assert_contains "$T/p1.err" "a shared lock held by" "prune while a backup runs (names the backup's lock)"
[ $((t1 - t0)) -le 10 ] || fail "prune without --lock-wait took $((t1 - t0)) s to refuse, expected to fail at once"

run_engine "$T/f1.out" "$T/f1.err" forget "$T/a.yml"
assert_rc 1 "forget while a backup runs" "$T/f1.out" "$T/f1.err"
assert_contains "$T/f1.err" "the repository is locked" "forget while a backup runs"

t0=$(date +%s%N)
run_engine "$T/p2.out" "$T/p2.err" prune "$T/a.yml" --lock-wait 1s
t1=$(date +%s%N)
assert_rc 1 "prune --lock-wait 1s while a backup runs" "$T/p2.out" "$T/p2.err"
assert_contains "$T/p2.err" "the repository is locked" "prune --lock-wait 1s while a backup runs"
assert_contains "$T/p2.err" "gave up waiting" "prune --lock-wait 1s while a backup runs"
[ $(((t1 - t0) / 1000000)) -ge 1000 ] || fail "prune --lock-wait 1s gave up after $(((t1 - t0) / 1000000)) ms, before the second was over"

start_engine "$T/p3.json" "$T/p3.err" prune "$T/a.yml" --lock-wait 2m --json
pw=$BG
sleep 1.5
kill -0 "$pw" 2>/dev/null || { show "$T/p3.json" "$T/p3.err"; fail "prune --lock-wait 2m ended while the backup still held its lock"; }
kill -CONT "$slow"
finish_engine "$slow" "$T/slow.json" "$T/slow.err" "the backup"
trap _lib_cleanup EXIT
finish_engine "$pw" "$T/p3.json" "$T/p3.err" "prune --lock-wait 2m (started during the backup)"
assert_contains "$T/p3.err" "waiting for the repository lock" "prune --lock-wait 2m during a backup"
assert_eq false "$(json_get "$T/p3.json" 'j["dry_run"]')" "dry_run of the waiting prune"
assert_eq 0 "$(lock_count)" "lock objects left after the backup and the waiting prune"
# the prune ran right after the backup: the new snapshot's data must be there
snapSlow=$(json_get "$T/slow.json" 'j["snapshot"]')
run_ok "$T/rs.out" "$T/rs.err" restore "$T/a.yml" "$snapSlow" --target "$T/outSlow"
compare_trees "$srcA" "$(restored_path "$T/outSlow" "$srcA")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the snapshot taken during the prune attempts does not restore byte for byte"; }
run_engine "$T/check.out" "$T/check.err" check "$T/a.yml" --read-data
assert_rc 0 "check --read-data after the waiting prune" "$T/check.out" "$T/check.err"
note "PASS"
