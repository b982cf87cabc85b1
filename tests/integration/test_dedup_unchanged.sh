#!/usr/bin/env bash
# A second run over unchanged data stores (almost) nothing: new_bytes and
# stored_bytes stay below 1% of bytes_read, and both snapshots restore.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src/a" "$src/b/c"
for i in 1 2 3 4 5; do random_file "$src/a/random-$i" 8; done
seq 1 1500000 >"$src/b/c/numbers.txt" # ~10 MiB of text
random_file "$src/b/small" 1
write_pipeline "$T/p.yml" dedup "$T/repo" "$src"

run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
read1=$(json_get "$T/run1.json" 'j["bytes_read"]')
new1=$(json_get "$T/run1.json" 'j["new_bytes"]')
note "first run: bytes_read=$read1 new_bytes=$new1"
[ "$read1" -ge $((50 * 1024 * 1024)) ] || fail "first run read only $read1 bytes, expected >= 50 MiB"
[ "$new1" -ge $((50 * 1024 * 1024)) ] || fail "first run: new_bytes=$new1, expected all ~50 MiB to be new"

run_ok "$T/run2.json" "$T/run2.err" run "$T/p.yml" --json
read2=$(json_get "$T/run2.json" 'j["bytes_read"]')
new2=$(json_get "$T/run2.json" 'j["new_bytes"]')
stored2=$(json_get "$T/run2.json" 'j["stored_bytes"]')
note "second run: bytes_read=$read2 new_bytes=$new2 stored_bytes=$stored2"
assert_eq "$read1" "$read2" "bytes_read of the unchanged second run"
[ $((new2 * 100)) -lt "$read2" ] || { show "$T/run2.json"; fail "second run: new_bytes=$new2 is not < 1% of bytes_read=$read2"; }
[ $((stored2 * 100)) -lt "$read2" ] || { show "$T/run2.json"; fail "second run: stored_bytes=$stored2 is not < 1% of bytes_read=$read2"; }
snap1=$(json_get "$T/run1.json" 'j["snapshot"]')
snap2=$(json_get "$T/run2.json" 'j["snapshot"]')
[ "$snap1" != "$snap2" ] || fail "both runs report the same snapshot id $snap1"

for s in "$snap1" "$snap2"; do
  run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" "$s" --target "$T/out-${s:0:8}"
  compare_trees "$src" "$(restored_path "$T/out-${s:0:8}" "$src")" >"$T/cmp.txt" 2>&1 ||
    { cat "$T/cmp.txt" >&2; fail "snapshot $s does not restore the source"; }
done
note "PASS"
