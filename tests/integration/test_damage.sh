#!/usr/bin/env bash
# A repository with a damaged or unreadable snapshot manifest, a damaged
# index object and a lost pack, on a local sink:
# - snapshots lists an unreadable manifest as UNREADABLE (exit 1); check
#   reports it (exit 1); 'restore latest' refuses instead of restoring an
#   older snapshot; forget and prune refuse and delete nothing until the
#   operator names it with --forget-unreadable; a manifest that becomes
#   readable again restores byte for byte (nothing was pruned under it);
# - a manifest of another repository in snapshots/ is unreadable, not ignored;
# - repair index rebuilds a damaged index object from the packs; a repair
#   killed at any point leaves a repository that still restores;
# - repair snapshots salvages what a lost pack left: a new snapshot with the
#   surviving items (byte for byte), the lost ones listed in its manifest.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src"
seeded_file "$src/one.bin" 2 1
echo "first" >"$src/a.txt"
cat >"$T/p.yml" <<EOF2
version: 1
name: damage
repository: {pack_size: 1MiB}
sources:
  - {name: files, type: files, with: {paths: [$(yq "$src")]}}
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
retention: {keep_last: 1}
sinks:
  - {name: local, type: local, with: {path: $(yq "$T/repo")}}
EOF2
run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json
s1=$(json_get "$T/r1.json" 'j["snapshot"]')
cp -a "$src" "$T/src1"
seeded_file "$src/two.bin" 2 2
echo "second" >"$src/b.txt"
run_ok "$T/r2.json" "$T/r2.err" run "$T/p.yml" --json
s2=$(json_get "$T/r2.json" 'j["snapshot"]')
# every object but the verification records: check stores the outcome of
# each check, failed ones included, under verify/ (docs/FORMAT.md)
objects() { find "$T/repo" -type f -not -path "$T/repo/verify/*" | sort | xargs sha256sum; }

# ---- 1. the newest manifest cannot be read --------------------------------
m2=$T/repo/snapshots/$s2
cp "$m2" "$T/m2.good"
"$PYTHON" - "$m2" <<'EOF2'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[50] ^= 1
open(sys.argv[1], "wb").write(b)
EOF2
objects >"$T/objects.before"

run_engine "$T/sn.out" "$T/sn.err" snapshots "$T/p.yml"
assert_rc 1 "snapshots with an unreadable manifest" "$T/sn.out" "$T/sn.err"
assert_contains "$T/sn.out" "UNREADABLE" "snapshots lists the unreadable manifest"
assert_contains "$T/sn.out" "${s2:0:8}" "snapshots names the unreadable manifest"
run_engine "$T/snj.out" "$T/snj.err" snapshots "$T/p.yml" --json
assert_eq "unreadable" "$(json_get "$T/snj.out" "[s['status'] for s in j if s['id'] == '$s2'][0]")" "snapshots --json status"

run_engine "$T/ck.out" "$T/ck.err" check "$T/p.yml" --read-data --json
assert_rc 1 "check --read-data with an unreadable manifest" "$T/ck.out" "$T/ck.err"
assert_eq 1 "$(json_get "$T/ck.out" "sum(1 for p in j['problems'] if p.get('snapshot') == '$s2')")" "check names the unreadable snapshot"

run_engine "$T/rl.out" "$T/rl.err" restore "$T/p.yml" latest --target "$T/out-latest"
assert_rc 1 "restore latest while the newest manifest is unreadable" "$T/rl.out" "$T/rl.err"
assert_contains "$T/rl.err" "$s2" "restore latest names the unreadable snapshot"
assert_contains "$T/rl.err" "${s1:0:8}" "restore latest names the newest readable snapshot"
[ ! -e "$T/out-latest" ] || fail "restore latest wrote $T/out-latest"

for cmd in "prune" "forget" "forget --prune"; do
  # shellcheck disable=SC2086
  run_engine "$T/x.out" "$T/x.err" $cmd "$T/p.yml"
  assert_rc 1 "$cmd with an unreadable snapshot" "$T/x.out" "$T/x.err"
  assert_contains "$T/x.err" "$s2" "$cmd names the unreadable snapshot"
  assert_contains "$T/x.err" "--forget-unreadable" "$cmd says how to drop it"
  objects >"$T/objects.after"
  cmp -s "$T/objects.before" "$T/objects.after" || fail "$cmd changed the repository"
done
run_engine "$T/x.out" "$T/x.err" prune "$T/p.yml" --forget-unreadable "${s1:0:12}"
assert_rc 1 "prune --forget-unreadable naming a readable snapshot" "$T/x.out" "$T/x.err"
assert_contains "$T/x.err" "only drops snapshots that cannot be read" "the refusal says why"

# readable again (a sink that answered errors, a disk fixed): nothing was
# lost, the snapshot restores byte for byte
cp "$T/m2.good" "$m2"
run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" latest --target "$T/out2"
compare_trees "$src" "$(restored_path "$T/out2" "$src")"

# ---- 2. another repository's manifest in snapshots/ -------------------------
mkdir -p "$T/other-src"
echo other >"$T/other-src/x"
sed -e "s|$T/repo|$T/other|" -e "s|$src|$T/other-src|" "$T/p.yml" >"$T/other.yml"
run_ok "$T/o.json" "$T/o.err" run "$T/other.yml" --json
so=$(json_get "$T/o.json" 'j["snapshot"]')
cp "$T/other/snapshots/$so" "$T/repo/snapshots/$so"
run_engine "$T/ck2.out" "$T/ck2.err" check "$T/p.yml"
assert_rc 1 "check with a foreign manifest" "$T/ck2.out" "$T/ck2.err"
assert_contains "$T/ck2.err" "$so" "check names the foreign manifest"
run_engine "$T/rl2.out" "$T/rl2.err" restore "$T/p.yml" latest --target "$T/out-foreign"
assert_rc 1 "restore latest with a foreign manifest" "$T/rl2.out" "$T/rl2.err"
run_ok "$T/f.out" "$T/f.err" forget "$T/p.yml" --forget-unreadable "${so:0:8}" --dry-run
[ -e "$T/repo/snapshots/$so" ] || fail "forget --dry-run removed the unreadable snapshot"
run_ok "$T/f.out" "$T/f.err" forget "$T/p.yml" --forget-unreadable "${so:0:8}"
assert_contains "$T/f.out" "removed unreadable snapshot $so" "forget reports the dropped snapshot"
[ ! -e "$T/repo/snapshots/$so" ] || fail "forget --forget-unreadable kept the snapshot object"
assert_eq 1 "$(find "$T/repo/snapshots" -type f | wc -l)" "snapshots left (keep_last: 1 applied too)"
run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" latest --target "$T/out3"
compare_trees "$src" "$(restored_path "$T/out3" "$src")"

# ---- 3. a damaged index object; repair index, killed and whole -------------
run_ok "$T/r3.json" "$T/r3.err" run "$T/p.yml" --json
idx=$(find "$T/repo/index" -type f | sort | head -n 1)
printf 'this is not an index' >"$idx"
rm -rf "$ENGINE_CACHE_DIR"
run_engine "$T/pr.out" "$T/pr.err" prune "$T/p.yml"
assert_rc 1 "prune with a damaged index object" "$T/pr.out" "$T/pr.err"
assert_contains "$T/pr.err" "repair index" "prune points to repair index"
run_engine "$T/ck3.out" "$T/ck3.err" check "$T/p.yml"
assert_rc 1 "check with a damaged index object" "$T/ck3.out" "$T/ck3.err"
assert_contains "$T/ck3.err" "$(basename "$idx")" "check names the damaged index object"
cp -a "$T/repo" "$T/repo.damaged"
# kill repair index at growing delays: whatever state it leaves (as it was,
# half written, repaired), no index object it needs is gone, so repair run
# again finishes the job and the snapshot restores byte for byte
for delay in 0.05 0.1 0.2 0.3 0.5 0.8; do
  rm -rf "$T/repo" && cp -a "$T/repo.damaged" "$T/repo"
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" repair index "$T/p.yml" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "$(find "$T/repo/data" -type f | wc -l)" -eq "$(find "$T/repo.damaged/data" -type f | wc -l)" ] ||
    fail "repair index killed at ${delay}s changed the packs"
  run_ok "$T/rk0.out" "$T/rk0.err" repair index "$T/p.yml"
  rm -rf "$ENGINE_CACHE_DIR" "$T/outk"
  run_ok "$T/rk.out" "$T/rk.err" restore "$T/p.yml" latest --target "$T/outk"
  compare_trees "$src" "$(restored_path "$T/outk" "$src")" >/dev/null
done
rm -rf "$T/repo" "$ENGINE_CACHE_DIR" && cp -a "$T/repo.damaged" "$T/repo"
run_ok "$T/ri.out" "$T/ri.err" repair index "$T/p.yml"
assert_contains "$T/ri.out" "index rebuilt" "repair index says what it did"
run_ok "$T/ck4.out" "$T/ck4.err" check "$T/p.yml" --read-data
run_ok "$T/ri2.out" "$T/ri2.err" repair index "$T/p.yml"
assert_contains "$T/ri2.out" "index is sound" "a second repair index finds nothing to do"
run_ok "$T/pr2.out" "$T/pr2.err" prune "$T/p.yml"

# ---- 4. a lost pack: repair snapshots keeps what survives ------------------
seeded_file "$src/three.bin" 2 3
find "$T/repo/data" -type f | sort >"$T/packs.before"
run_ok "$T/r4.json" "$T/r4.err" run "$T/p.yml" --json
s4=$(json_get "$T/r4.json" 'j["snapshot"]')
# the largest new pack holds three.bin's data (the only new content)
victim=$(find "$T/repo/data" -type f | sort | comm -13 "$T/packs.before" - | xargs ls -S | head -n 1)
rm -f "$victim"
run_engine "$T/ck5.out" "$T/ck5.err" check "$T/p.yml" --json
assert_rc 1 "check with a lost pack" "$T/ck5.out" "$T/ck5.err"
nsnap=$(find "$T/repo/snapshots" -type f | wc -l)
run_engine "$T/rs0.out" "$T/rs0.err" repair snapshots "$T/p.yml" --dry-run
assert_rc 3 "repair snapshots --dry-run with a lost pack" "$T/rs0.out" "$T/rs0.err"
assert_eq "$nsnap" "$(find "$T/repo/snapshots" -type f | wc -l)" "snapshots after a dry run"
run_engine "$T/rs.out" "$T/rs.err" repair snapshots "$T/p.yml" --json
assert_rc 3 "repair snapshots with a lost pack" "$T/rs.out" "$T/rs.err"
new=$(json_get "$T/rs.out" "[s['repaired_as'] for s in j['snapshots'] if s['id'] == '$s4'][0]")
run_ok "$T/sh.json" "$T/sh.err" show "$T/p.yml" "$new" --json
assert_eq "partial $s4 True" "$(json_get "$T/sh.json" "' '.join([j['status'], j['repaired_from'], str('repaired' in j['tags'])])")" "repaired manifest"
lost=$(json_get "$T/sh.json" "' '.join(sorted(l['item'].rsplit('/',1)[-1] for l in j['sources'][0]['lost_items']))")
assert_eq "three.bin" "$lost" "the lost item listed in the repaired manifest"
[ -e "$T/repo/snapshots/$s4" ] || fail "repair snapshots removed the damaged original"
run_ok "$T/r5.out" "$T/r5.err" restore "$T/p.yml" "$new" --target "$T/out5"
[ ! -e "$(restored_path "$T/out5" "$src/three.bin")" ] || fail "the lost item was restored"
for f in one.bin two.bin a.txt b.txt; do
  assert_files_equal "$src/$f" "$(restored_path "$T/out5" "$src/$f")" "surviving item $f"
done
run_ok "$T/f2.out" "$T/f2.err" forget "$T/p.yml" "${s4:0:8}"
# the index still places three.bin's chunks in the lost pack: repair index
# drops those entries, so the next backup stores them again
run_ok "$T/ri3.out" "$T/ri3.err" repair index "$T/p.yml"
run_ok "$T/ck6.out" "$T/ck6.err" check "$T/p.yml"
run_ok "$T/r6.json" "$T/r6.err" run "$T/p.yml" --json
run_ok "$T/r6.out" "$T/r6.err" restore "$T/p.yml" latest --target "$T/out6"
compare_trees "$src" "$(restored_path "$T/out6" "$src")"
run_ok "$T/ck7.out" "$T/ck7.err" check "$T/p.yml" --read-data
note "PASS"
