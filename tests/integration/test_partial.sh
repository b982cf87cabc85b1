#!/usr/bin/env bash
# A source path that does not exist makes the snapshot partial, not failed:
# run exits 3 and names the missing path, the snapshot is listed as
# "partial", and what did exist restores.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
missing=$T/does-not-exist
mkdir -p "$src/sub"
random_file "$src/data.bin" 1
echo "kept" >"$src/sub/kept.txt"
write_pipeline "$T/p.yml" partial "$T/repo" "$src" "$missing"

run_engine "$T/run.json" "$T/run.err" run "$T/p.yml" --json
assert_rc 3 "run with one missing path" "$T/run.json" "$T/run.err"
assert_eq partial "$(json_get "$T/run.json" 'j["status"]')" "status in the run summary"
warnings=$(json_get "$T/run.json" 'j["warnings"]')
case "$warnings" in *does-not-exist*) ;; *) fail "the run's warnings do not name the missing path: $warnings" ;; esac

run_engine "$T/run2.out" "$T/run2.err" run "$T/p.yml"
assert_rc 3 "second (human-readable) run with one missing path" "$T/run2.out" "$T/run2.err"
cat "$T/run2.out" "$T/run2.err" >"$T/run2.all"
assert_contains "$T/run2.all" "does-not-exist" "the human-readable run names the missing path"

run_ok "$T/snaps.json" "$T/snaps.err" snapshots "$T/p.yml" --json
assert_eq "partial partial" "$(json_get "$T/snaps.json" '" ".join(s["status"] for s in j)')" "status of the snapshots"
run_ok "$T/show.json" "$T/show.err" show "$T/p.yml" latest --json
assert_eq partial "$(json_get "$T/show.json" 'j["status"]')" "status in show --json"

run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" latest --target "$T/out"
compare_trees "$src" "$(restored_path "$T/out" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the existing data of the partial snapshot does not restore"; }
[ ! -e "$(restored_path "$T/out" "$missing")" ] || fail "the restore created the missing path"
note "PASS"
