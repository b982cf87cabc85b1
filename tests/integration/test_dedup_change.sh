#!/usr/bin/env bash
# Content-defined chunking: overwriting 1 MiB in the middle of a 200 MiB
# random file stores only the few chunks around the change on the next
# run (never more than 16 MiB, 8 % of the file; storing the whole file
# again would be 200 MiB), and both snapshots restore their own version
# byte for byte. How many chunks differ depends on where the boundaries
# fall, and the chunker is keyed with a random per-repository seed, so
# even fixed data (seeded_file) gives a spread: 1 to 7 new chunks, 1.3 to
# 7.4 MB stored over 20 repositories; chunks are up to 4 MiB (chunk_max),
# and CI runs have seen 8.7 and 10.4 MB. The bound leaves room for that tail.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src"
seeded_file "$src/big.bin" 200 dedup-change-file
write_pipeline "$T/p.yml" dedupchange "$T/repo" "$src"

run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
snap1=$(json_get "$T/run1.json" 'j["snapshot"]')
cp "$src/big.bin" "$T/big.v1"

# 1 MiB at offset 100 MiB, size unchanged
seeded_file "$T/patch" 1 dedup-change-patch
dd if="$T/patch" of="$src/big.bin" bs=1M seek=100 conv=notrunc status=none
cmp -s "$src/big.bin" "$T/big.v1" && fail "the overwrite did not change the file"

run_ok "$T/run2.json" "$T/run2.err" run "$T/p.yml" --json
snap2=$(json_get "$T/run2.json" 'j["snapshot"]')
stored2=$(json_get "$T/run2.json" 'j["stored_bytes"]')
new2=$(json_get "$T/run2.json" 'j["new_bytes"]')
note "second run: new_bytes=$new2 stored_bytes=$stored2"
[ "$stored2" -lt $((16 * 1024 * 1024)) ] ||
  { show "$T/run2.json"; fail "second run stored $stored2 bytes after a 1 MiB change, expected < 16 MiB"; }
[ "$new2" -ge $((1024 * 1024)) ] ||
  { show "$T/run2.json"; fail "second run: new_bytes=$new2, but 1 MiB changed"; }

restored() { restored_path "$1" "$src/big.bin"; }
run_ok "$T/r1.out" "$T/r1.err" restore "$T/p.yml" "$snap1" --target "$T/out1"
assert_files_equal "$T/big.v1" "$(restored "$T/out1")" "restore of the first snapshot"
run_ok "$T/r2.out" "$T/r2.err" restore "$T/p.yml" "$snap2" --target "$T/out2"
assert_files_equal "$src/big.bin" "$(restored "$T/out2")" "restore of the second snapshot"
note "PASS"
