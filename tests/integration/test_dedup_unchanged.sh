#!/usr/bin/env bash
# Unchanged data is not stored again. Run 2 over untouched files stores
# (almost) nothing (new_bytes, stored_bytes < 1% of the data). Run 3 after
# touching every file (new mtimes, same content, so the files must be read
# again rather than skipped as unchanged since the parent snapshot) reads
# everything and still stores < 1%: deduplication by content. Every
# snapshot restores the source. A second unchanged run (2b) reads nothing
# and records every item below src exactly as run 2 did (compared with the
# independent reader, tests/tools/engine_reader.py: unchanged items are
# written as their parent's tree lines), and snapshots 2 and 2b restore
# identical trees, metadata included. (Run 2's items are not run 1's:
# reading the files in run 1 changed their atimes. Ancestors of src, such
# as the temporary directory, are items too and change between runs.)
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
run_ok "$T/run2b.json" "$T/run2b.err" run "$T/p.yml" --json
assert_eq 0 "$(json_get "$T/run2b.json" 'j["bytes_read"]')" "bytes_read of run 2b (unchanged again)"
check_tiny "$T/run2b.json" "run 2b (unchanged again)"

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
# run 2b reused every item below src as it was: the same tree lines as run 2
reader_py=${ENGINE_READER_PYTHON:-/usr/bin/python3}
"$reader_py" - "$REPO_ROOT/tests/tools" "$T/repo" "$(json_get "$T/run2.json" 'j["snapshot"]')" \
  "$(json_get "$T/run2b.json" 'j["snapshot"]')" "$(cd "$src" && pwd -P)" >"$T/items.txt" 2>&1 <<'EOF' ||
import json, os, sys
sys.path.insert(0, sys.argv[1])
import engine_reader as er
r = er.Repo(sys.argv[2])
r.open(os.environ["ENGINE_PASSPHRASE"].encode())
r.load_index()
prefix = sys.argv[5].lstrip("/").encode()
def items(snap):
    m = r.find_snapshot(snap)
    return [json.dumps(it, sort_keys=True) for it in r.items(m["sources"][0])
            if (er.get_bytes(it, "name", "item") or b"").startswith(prefix)]
a, b = items(sys.argv[3]), items(sys.argv[4])
print("%d items below src in run 2, %d in run 2b" % (len(a), len(b)))
for x, y in zip(a, b):
    if x != y:
        print("run 2:  " + x + "\nrun 2b: " + y)
sys.exit(0 if a == b and len(a) >= 8 else 1)
EOF
  { cat "$T/items.txt" >&2; fail "run 2b did not record the unchanged items as run 2 did"; }
note "$(head -1 "$T/items.txt")"
s=$(json_get "$T/run2b.json" 'j["snapshot"]')
run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" "$s" --target "$T/out-2b"
compare_trees "$(restored_path "$T/out-2" "$src")" "$(restored_path "$T/out-2b" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "snapshots 2 and 2b restore different trees"; }
note "PASS"
