#!/usr/bin/env bash
# The local index cache (core/repo/index_cache.c): `engine run` writes it
# after saving its index object, `run` and `restore` read it instead of the
# index objects while the repository's index/ listing is the one it was
# built from. A cache that is stale (another backup, a prune), damaged or of
# another repository is ignored and rebuilt; every restore below is compared
# with its source. check and prune always read the index objects.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src/d"
seeded_file "$src/big.bin" 6 index-cache-big
for i in $(seq 1 40); do echo "small file $i" >"$src/d/f$i.txt"; done
write_pipeline "$T/p.yml" indexcache "$T/repo" "$src"
cache_root=$ENGINE_CACHE_DIR

note "the first backup writes the cache (0700 directory, 0600 file)"
run_ok "$T/run1.json" "$T/run1.err" -v -v run "$T/p.yml" --json
assert_contains "$T/run1.err" "index cache" "debug output of the first backup"
cache=$(find "$cache_root" -type f -name index)
[ "$(echo "$cache" | wc -l)" = 1 ] && [ -f "$cache" ] || fail "expected one cache file below $cache_root, found: $cache"
assert_eq 600 "$(stat -c %a "$cache")" "mode of the cache file"
assert_eq 700 "$(stat -c %a "$(dirname "$cache")")" "mode of the repository's cache directory"
repo_id=$(basename "$(dirname "$cache")")
[[ "$repo_id" =~ ^[0-9a-f]{32,}$ ]] || fail "the cache directory is not named by the repository id: $repo_id"

restore_and_compare() { # TAG EXPECTED-LOG-TEXT
  local tag=$1 want=$2
  run_ok "$T/restore-$tag.out" "$T/restore-$tag.err" -v -v restore "$T/p.yml" latest \
    --target "$T/out-$tag"
  assert_contains "$T/restore-$tag.err" "$want" "debug output of restore ($tag)"
  compare_trees "$src" "$(restored_path "$T/out-$tag" "$src")" >"$T/compare-$tag.txt" 2>&1 ||
    { cat "$T/compare-$tag.txt" >&2; fail "restore ($tag) differs from the source"; }
}

note "a restore reads the cache"
restore_and_compare hit "from the cache"

note "a second backup (changed and new files) updates the cache; the restore of its snapshot reads it"
seeded_file "$src/big.bin" 6 index-cache-big-v2
echo "new file" >"$src/d/new.txt"
run_ok "$T/run2.json" "$T/run2.err" -v -v run "$T/p.yml" --json
assert_contains "$T/run2.err" "from the cache" "the second backup's index load"
assert_contains "$T/run2.err" "written" "the second backup's cache update"
restore_and_compare after-backup "from the cache"

note "a damaged cache is ignored and rebuilt"
"$PYTHON" - "$cache" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x01
open(p, "wb").write(b)
PY
restore_and_compare damaged "fails authentication"
restore_and_compare rebuilt "from the cache"

note "another repository's cache is not used"
write_pipeline "$T/q.yml" indexcache2 "$T/repo2" "$src"
run_ok "$T/q1.json" "$T/q1.err" run "$T/q.yml" --json
other=$(find "$cache_root" -type f -name index ! -path "*/$repo_id/*")
[ -f "$other" ] || fail "the second repository has no cache file"
cp "$other" "$cache"
restore_and_compare foreign "fails authentication"

note "a backup from another process (its cache elsewhere) makes this cache stale"
echo "written elsewhere" >"$src/d/elsewhere.txt"
ENGINE_CACHE_DIR=$T/other-cache run_ok "$T/run3.json" "$T/run3.err" run "$T/p.yml" --json
restore_and_compare stale "built from other index objects"

note "after forget --prune the cache is rebuilt, and check passes"
cat >>"$T/p.yml" <<'YAML'
retention: {keep_last: 1}
YAML
run_ok "$T/forget.out" "$T/forget.err" forget "$T/p.yml" --prune
restore_and_compare after-prune "built from other index objects"
run_ok "$T/check.out" "$T/check.err" -v -v check "$T/p.yml" --read-data
assert_not_contains "$T/check.err" "from the cache" "check's debug output (check reads the index objects)"

note "ENGINE_CACHE_DIR=off writes no cache"
ENGINE_CACHE_DIR=off run_ok "$T/off.json" "$T/off.err" -v -v run "$T/p.yml" --json
assert_not_contains "$T/off.err" "index cache" "debug output with the cache off"
HOME=$T/home XDG_CACHE_HOME= ENGINE_CACHE_DIR= run_ok "$T/off2.json" "$T/off2.err" run "$T/p.yml" --json
[ ! -e "$T/home" ] || fail "an empty ENGINE_CACHE_DIR still wrote a cache below HOME"

note "without ENGINE_CACHE_DIR the cache goes to \$XDG_CACHE_HOME/engine, else \$HOME/.cache/engine"
(
  unset ENGINE_CACHE_DIR
  XDG_CACHE_HOME=$T/xdg run_ok "$T/xdg.json" "$T/xdg.err" run "$T/p.yml" --json
  HOME=$T/home XDG_CACHE_HOME= run_ok "$T/home.json" "$T/home.err" run "$T/p.yml" --json
)
[ -f "$T/xdg/engine/$repo_id/index" ] || fail "no cache below \$XDG_CACHE_HOME/engine/$repo_id"
[ -f "$T/home/.cache/engine/$repo_id/index" ] || fail "no cache below \$HOME/.cache/engine/$repo_id"

note "PASS"
