#!/usr/bin/env bash
# Unchanged data is not stored again. Run 2 over untouched files stores
# (almost) nothing (new_bytes, stored_bytes < 1% of the data). Run 3 after
# touching every file (new mtimes, same content, so the files must be read
# again rather than skipped as unchanged since the parent snapshot) reads
# everything and still stores < 1%: deduplication by content. Every
# snapshot restores the source.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src/a" "$src/b/c"
for i in 1 2 3 4 5; do random_file "$src/a/random-$i" 8; done
seq 1 1500000 >"$src/b/c/numbers.txt" # ~10 MiB of text
random_file "$src/b/small" 1
write_pipeline "$T/p.yml" dedup "$T/repo" "$src"
total=$(find "$src" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')

run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
read1=$(json_get "$T/run1.json" 'j["bytes_read"]')
new1=$(json_get "$T/run1.json" 'j["new_bytes"]')
note "run 1: bytes_read=$read1 new_bytes=$new1"
assert_eq "$total" "$read1" "bytes_read of the first run"
[ "$new1" -ge $((50 * 1024 * 1024)) ] || fail "run 1: new_bytes=$new1, expected the ~50 MiB to be new"

check_tiny() { # JSON LABEL
  local new stored
  new=$(json_get "$1" 'j["new_bytes"]')
  stored=$(json_get "$1" 'j["stored_bytes"]')
  note "$2: bytes_read=$(json_get "$1" 'j["bytes_read"]') new_bytes=$new stored_bytes=$stored"
  [ $((new * 100)) -lt "$total" ] || { show "$1"; fail "$2: new_bytes=$new is not < 1% of the $total bytes of data"; }
  [ $((stored * 100)) -lt "$total" ] || { show "$1"; fail "$2: stored_bytes=$stored is not < 1% of the $total bytes of data"; }
}

run_ok "$T/run2.json" "$T/run2.err" run "$T/p.yml" --json
check_tiny "$T/run2.json" "run 2 (unchanged)"

find "$src" -type f -exec touch -d '2024-02-03 04:05:06' {} +
run_ok "$T/run3.json" "$T/run3.err" run "$T/p.yml" --json
assert_eq "$total" "$(json_get "$T/run3.json" 'j["bytes_read"]')" "bytes_read of run 3 (every mtime changed)"
check_tiny "$T/run3.json" "run 3 (touched, same content)"

for run in 1 2 3; do
  s=$(json_get "$T/run$run.json" 'j["snapshot"]')
  run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" "$s" --target "$T/out-$run"
done
# the last snapshot has the touched mtimes: compare it exactly
compare_trees "$src" "$(restored_path "$T/out-3" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "snapshot 3 does not restore the source"; }
# the first two hold the original mtimes: compare their content
for run in 1 2; do
  compare_trees "$src" "$(restored_path "$T/out-$run" "$src")" >"$T/cmp.txt" 2>&1 || true
  if grep '^DIFF' "$T/cmp.txt" | grep -v ': mtime ' | grep -q .; then
    cat "$T/cmp.txt" >&2
    fail "snapshot $run does not restore the source's content"
  fi
done
note "PASS"
