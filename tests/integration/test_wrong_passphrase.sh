#!/usr/bin/env bash
# With a wrong passphrase, run / restore / snapshots / show / check fail with
# exit 1 and a message about the passphrase, and write nothing: the
# repository's listing (names, sizes, mtimes) is unchanged and no restore
# target is created.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src"
random_file "$src/data" 2
echo hello >"$src/hello.txt"
write_pipeline "$T/p.yml" wrongpass "$T/repo" "$src"
run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json

listing "$T/repo" >"$T/before.txt"
# mtimes have a resolution of the file system: wait so that a rewrite of any
# file now would show
sleep 1.1

export ENGINE_PASSPHRASE="definitely-not-the-passphrase"
check_refused() { # WHAT ARGS...
  local what=$1
  shift
  run_engine "$T/$what.out" "$T/$what.err" "$@"
  assert_rc 1 "engine $* with a wrong passphrase" "$T/$what.out" "$T/$what.err"
  assert_contains "$T/$what.err" passphrase "the error of 'engine $*' with a wrong passphrase"
}
check_refused run run "$T/p.yml"
check_refused runjson run "$T/p.yml" --json
check_refused restore restore "$T/p.yml" latest --target "$T/out"
check_refused restoreyes restore "$T/p.yml" latest --target "$T/out" --yes
check_refused snapshots snapshots "$T/p.yml"
check_refused show show "$T/p.yml" latest
check_refused check check "$T/p.yml" --read-data
# the wrong passphrase itself is never printed
for f in "$T"/*.err "$T"/*.out; do
  assert_not_contains "$f" "$ENGINE_PASSPHRASE" "output of a refused command"
done

[ ! -e "$T/out" ] || fail "a restore with a wrong passphrase created the target $T/out"
listing "$T/repo" >"$T/after.txt"
if ! diff -u "$T/before.txt" "$T/after.txt" >&2; then
  fail "the repository changed although every command was refused (diff above)"
fi

# and the right passphrase still works
export ENGINE_PASSPHRASE=$TEST_PASSPHRASE
run_ok "$T/snap.out" "$T/snap.err" snapshots "$T/p.yml"
assert_contains "$T/snap.out" "1 snapshot(s)" "snapshot list with the right passphrase"
note "PASS"
