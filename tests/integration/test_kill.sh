#!/usr/bin/env bash
# Crash safety: a backup killed with SIGKILL at several points leaves a
# repository that passes `check --read-data`, keeps every earlier snapshot
# restorable byte for byte, and accepts the next normal run. Packs written
# by a killed run may stay behind unreferenced; nothing may point at data
# that is not there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src/small/sub"
for i in 1 2 3; do random_file "$src/small/file-$i" 1; done
echo "first snapshot" >"$src/small/sub/note.txt"
write_pipeline "$T/p.yml" killtest "$T/repo" "$src"

run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
snap1=$(json_get "$T/run1.json" 'j["snapshot"]')
cp -a "$src" "$T/expected1"

mkdir -p "$src/big"
for i in 1 2 3 4 5 6; do random_file "$src/big/random-$i" 50; done
note "added 300 MiB of random data"

verify_repo() { # LABEL
  run_engine "$T/check.out" "$T/check.err" check "$T/p.yml" --read-data
  assert_rc 0 "check --read-data $1" "$T/check.out" "$T/check.err"
  rm -rf "$T/out1"
  run_ok "$T/r1.out" "$T/r1.err" restore "$T/p.yml" "$snap1" --target "$T/out1"
  compare_trees "$T/expected1" "$(restored_path "$T/out1" "$src")" >"$T/cmp.txt" 2>&1 ||
    { cat "$T/cmp.txt" >&2; fail "the first snapshot does not restore byte for byte $1"; }
}

completed=0
for delay in 0.3 1 2 3.5; do
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/p.yml" --json \
    >"$T/killed.out" 2>"$T/killed.err" </dev/null &
  pid=$!
  sleep "$delay"
  if kill -KILL "$pid" 2>/dev/null; then
    rc=0
    { wait "$pid"; } 2>/dev/null || rc=$?
    [ "$rc" -eq 137 ] || note "the run killed after ${delay}s exited with $rc"
    note "killed the run after ${delay}s ($(du -sm "$T/repo" | cut -f1) MiB in the repository)"
    # killed after its snapshot was saved and its summary printed (while
    # it recorded its audit record): a complete snapshot
    if grep -q '"snapshot"' "$T/killed.out"; then
      note "the killed run had saved its snapshot"
      completed=$((completed + 1))
    fi
  else
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || { show "$T/killed.out" "$T/killed.err"; fail "the run meant to be killed after ${delay}s failed on its own with $rc"; }
    note "the run finished before the kill after ${delay}s"
    completed=$((completed + 1))
  fi
  verify_repo "after SIGKILL at ${delay}s"
  # A killed run must not leave a snapshot behind.
  run_ok "$T/snaps.json" "$T/snaps.err" snapshots "$T/p.yml" --json
  n=$(json_get "$T/snaps.json" 'len(j)')
  assert_eq $((1 + completed)) "$n" "number of snapshots after the kill at ${delay}s"
done
[ "$completed" -lt 4 ] || fail "no run was interrupted (all finished before the kill); the test proved nothing"

run_ok "$T/final.json" "$T/final.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/final.json" 'j["status"]')" "status of the final run"
run_ok "$T/rf.out" "$T/rf.err" restore "$T/p.yml" latest --target "$T/outf"
compare_trees "$src" "$(restored_path "$T/outf" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the final snapshot does not restore the source"; }
verify_repo "after the final run"
note "PASS"
