#!/usr/bin/env bash
# Restore safety and selection: a non-empty target needs --yes when there is
# no terminal to ask (and is left untouched without it); --dry-run lists and
# writes nothing; --only SOURCE/GLOB restores only the matching items.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src/dir/sub"
echo "alpha" >"$src/a.txt"
echo "bravo" >"$src/b.log"
echo "charlie" >"$src/dir/c.txt"
echo "delta" >"$src/dir/sub/d.txt"
write_pipeline "$T/p.yml" confirm "$T/repo" "$src"
run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json
rel=${src#/}

# ---- non-empty target, no --yes, no terminal ----
tgt=$T/target
mkdir -p "$tgt"
echo "precious" >"$tgt/existing.txt"
listing "$tgt" >"$T/before.txt"
run_engine "$T/noyes.out" "$T/noyes.err" restore "$T/p.yml" latest --target "$tgt"
assert_rc 1 "restore into a non-empty target without --yes" "$T/noyes.out" "$T/noyes.err"
assert_contains "$T/noyes.err" "--yes" "the refusal mentions --yes"
listing "$tgt" >"$T/after.txt"
diff -u "$T/before.txt" "$T/after.txt" >&2 || fail "the refused restore changed the target (diff above)"

# ---- --dry-run: lists, writes nothing ----
run_ok "$T/dry.out" "$T/dry.err" restore "$T/p.yml" latest --target "$T/dry-target" --dry-run
[ ! -e "$T/dry-target" ] || fail "--dry-run created the target $T/dry-target"
for f in a.txt b.log dir/c.txt dir/sub/d.txt; do
  assert_contains "$T/dry.out" "$rel/$f" "--dry-run lists $f"
done
run_ok "$T/dry2.out" "$T/dry2.err" restore "$T/p.yml" latest --target "$tgt" --dry-run
listing "$tgt" >"$T/after2.txt"
diff -u "$T/before.txt" "$T/after2.txt" >&2 || fail "--dry-run into the non-empty target changed it (diff above)"

# ---- --yes: restores over the existing content ----
run_ok "$T/yes.out" "$T/yes.err" restore "$T/p.yml" latest --target "$tgt" --yes
compare_trees "$src" "$(restored_path "$tgt" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "restore --yes did not restore the source"; }
assert_eq precious "$(cat "$tgt/existing.txt")" "an unrelated file in the target"

# ---- --only SOURCE/GLOB ----
run_ok "$T/only.out" "$T/only.err" restore "$T/p.yml" latest --target "$T/only1" --only "files/$rel/a.*"
got=$(cd "$T/only1/$rel" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | tr '\n' ' ')
assert_eq "a.txt " "$got" "items restored with --only files/$rel/a.*"
assert_files_equal "$src/a.txt" "$T/only1/$rel/a.txt" "a.txt restored with --only"

run_ok "$T/only2.out" "$T/only2.err" restore "$T/p.yml" latest --target "$T/only2" --only "files/$rel/dir"
got=$(cd "$T/only2/$rel" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | tr '\n' ' ')
assert_eq "dir dir/c.txt dir/sub dir/sub/d.txt " "$got" "items restored with --only files/$rel/dir"
compare_trees "$src/dir" "$T/only2/$rel/dir" >"$T/cmp2.txt" 2>&1 ||
  { cat "$T/cmp2.txt" >&2; fail "--only files/$rel/dir did not restore the directory faithfully"; }

run_engine "$T/only3.out" "$T/only3.err" restore "$T/p.yml" latest --target "$T/only3" --only nosuchsource
assert_rc 1 "--only naming a source the snapshot does not have" "$T/only3.out" "$T/only3.err"
assert_contains "$T/only3.err" nosuchsource "the error names the unknown source"
[ ! -e "$T/only3" ] || fail "a refused --only restore created its target"

# A glob that matches no item (here: a name without the stored leading
# path) is an error naming the glob and showing what names look like, not
# "restored 0 items" with exit 0.
run_engine "$T/only4.out" "$T/only4.err" restore "$T/p.yml" latest --target "$T/only4" --only "files/dir"
assert_rc 1 "--only with a glob that matches no item" "$T/only4.out" "$T/only4.err"
assert_contains "$T/only4.err" "no item of source 'files' matches 'dir'" "the error names the glob"
assert_contains "$T/only4.err" "$rel/" "the error shows a stored item name"
[ ! -e "$T/only4" ] || fail "an --only that matched nothing created its target"
note "PASS"
