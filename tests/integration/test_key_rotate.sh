#!/usr/bin/env bash
# engine key rotate (repository format 2, docs/FORMAT.md §3.6):
#   - a new key pair becomes current; the old ones stay for reading; the
#     keyring is the only object written (one new keyring object, the old one
#     deleted) and nothing under data/, index/, snapshots/ changes, so it
#     takes the same time whatever the repository's size;
#   - data written afterwards is sealed to the new key pair (the sealed data
#     key at the start of each new pack and each new snapshot name it), data
#     written before keeps the old one, and both restore byte for byte;
#   - a writer credential made before keeps working (sealing to the old key
#     pair, still readable); one made after names the new key;
#   - an old keyring left beside the new one (a rotation killed before it
#     deleted it) is ignored: the highest generation wins;
#   - a format-1 repository refuses to rotate.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

READER_PY=${ENGINE_READER_PYTHON:-/usr/bin/python3}
reader() { "$READER_PY" "$TESTS_INTEGRATION_DIR/../tools/engine_reader.py" "$repo" --passphrase-env ENGINE_PASSPHRASE "$@"; }

src=$T/src
mkdir -p "$src"
seeded_file "$src/a.bin" 4 rotate-a
seq 1 100000 >"$src/numbers.txt"
repo=$T/repo
write_pipeline "$T/p.yml" rot "$repo" "$src"
printf 'repository: {format: 2, chunk_min: 64KiB, chunk_avg: 256KiB, chunk_max: 1MiB}\n' >>"$T/p.yml"
run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json
s1=$(json_get "$T/r1.json" 'j["snapshot"]')
cp -a "$src" "$T/src1"
run_ok "$T/kl1.json" "$T/kl1.err" key list "$T/p.yml" --json
k1=$(json_get "$T/kl1.json" 'j["keypairs"][0]["id"]')
assert_eq 1 "$(json_get "$T/kl1.json" 'len(j["keypairs"])')" "key pairs of a new repository"
run_ok "$T/c1.out" "$T/c1.err" key add "$T/p.yml" --write-only --out "$T/before.cred"

# kid of a format-2 object: the first 8 bytes (a pack's sealed data key, a
# snapshot sealed to the public key)
kid() { head -c 8 "$1" | od -An -tx1 | tr -d ' \n'; }
objects() { (cd "$repo" && find data index snapshots config keys -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
objects >"$T/before.txt"
old_keyring=$(ls "$repo/keyring")
cp "$repo/keyring/$old_keyring" "$T/old-keyring"

t0=$(date +%s%N)
run_ok "$T/rot.out" "$T/rot.err" key rotate "$T/p.yml"
t1=$(date +%s%N)
rot_ms=$(((t1 - t0) / 1000000))
assert_contains "$T/rot.out" "rotated" "key rotate"
objects >"$T/after.txt"
diff -u "$T/before.txt" "$T/after.txt" >&2 || fail "key rotate changed data, index, snapshot, config or key objects"
assert_eq 1 "$(ls "$repo/keyring" | wc -l)" "keyring objects after a rotation"
[ "$(ls "$repo/keyring")" != "$old_keyring" ] || fail "key rotate did not write a new keyring"
run_ok "$T/kl2.json" "$T/kl2.err" key list "$T/p.yml" --json
assert_eq 2 "$(json_get "$T/kl2.json" 'len(j["keypairs"])')" "key pairs after a rotation"
assert_eq 2 "$(json_get "$T/kl2.json" 'j["keyring_generation"]')" "the keyring generation after a rotation"
k2=$(json_get "$T/kl2.json" '[k["id"] for k in j["keypairs"] if k["current"]][0]')
[ "$k2" != "$k1" ] || fail "the current key pair did not change"
run_ok "$T/kl.out" "$T/kl.err" key list "$T/p.yml"
assert_contains "$T/kl.out" "$k2" "key list's table shows the new key pair"

# new data is sealed to the new key pair, old data keeps the old one
for f in "$repo"/data/*/*; do kid "$f"; echo; done | sort -u >"$T/kids.before"
assert_eq "$k1" "$(cat "$T/kids.before")" "the key pair of the packs written before the rotation"
seeded_file "$src/b.bin" 2 rotate-b
printf 'after rotation\n' >>"$src/numbers.txt"
ls "$repo/data"/*/* | LC_ALL=C sort >"$T/packs.before"
run_ok "$T/r2.json" "$T/r2.err" run "$T/p.yml" --json
s2=$(json_get "$T/r2.json" 'j["snapshot"]')
ls "$repo/data"/*/* | LC_ALL=C sort >"$T/packs.after"
new_packs=$(comm -13 "$T/packs.before" "$T/packs.after")
[ -n "$new_packs" ] || fail "the run after the rotation wrote no pack"
for f in $new_packs; do assert_eq "$k2" "$(kid "$f")" "the key pair of a pack written after the rotation"; done
assert_eq "$k2" "$(kid "$repo/snapshots/$s2")" "the key pair of the snapshot written after the rotation"
assert_eq "$k1" "$(kid "$repo/snapshots/$s1")" "the key pair of the snapshot written before the rotation"

run_ok "$T/o1.out" "$T/o1.err" restore "$T/p.yml" "$s1" --target "$T/out1"
compare_trees "$T/src1" "$(restored_path "$T/out1" "$src")" >"$T/cmp1.txt" 2>&1 ||
  { cat "$T/cmp1.txt" >&2; fail "the snapshot from before the rotation does not restore"; }
run_ok "$T/o2.out" "$T/o2.err" restore "$T/p.yml" "$s2" --target "$T/out2"
compare_trees "$src" "$(restored_path "$T/out2" "$src")" >"$T/cmp2.txt" 2>&1 ||
  { cat "$T/cmp2.txt" >&2; fail "the snapshot from after the rotation does not restore"; }

# writers: the old credential seals to the old key pair (still readable)
sed "s|encrypt: .*|encrypt: {mode: write-only, key_file: '$T/before.cred'}|" "$T/p.yml" >"$T/w.yml"
printf 'from the old writer\n' >"$src/writer.txt"
run_ok "$T/w.json" "$T/w.err" run "$T/w.yml" --json
sw=$(json_get "$T/w.json" 'j["snapshot"]')
assert_eq "$k1" "$(kid "$repo/snapshots/$sw")" "a credential made before the rotation seals to the old key pair"
run_ok "$T/ow.out" "$T/ow.err" restore "$T/p.yml" "$sw" --target "$T/outw"
compare_trees "$src" "$(restored_path "$T/outw" "$src")" >"$T/cmpw.txt" 2>&1 ||
  { cat "$T/cmpw.txt" >&2; fail "the old writer's snapshot does not restore after the rotation"; }
run_ok "$T/c2.out" "$T/c2.err" key add "$T/p.yml" --write-only --out "$T/after.cred"
reader credential "$T/after.cred" >"$T/cred.out" 2>&1 || { cat "$T/cred.out" >&2; fail "the new credential is refused"; }
assert_contains "$T/cred.out" "$k2" "the credential made after the rotation names the new key pair"
if reader credential "$T/before.cred" >"$T/cred.out" 2>&1; then
  fail "the independent reader takes the old credential for one of the current key"
fi
assert_contains "$T/cred.out" "not the keyring's current one" "the old credential's key"

# a rotation killed after writing its keyring: the highest generation wins
cp "$T/old-keyring" "$repo/keyring/$old_keyring"
run_ok "$T/chk.out" "$T/chk.err" check "$T/p.yml" --read-data
run_ok "$T/kl3.json" "$T/kl3.err" key list "$T/p.yml" --json
assert_eq 2 "$(json_get "$T/kl3.json" 'j["keyring_generation"]')" "the generation used beside an older keyring"
run_ok "$T/rot2.out" "$T/rot2.err" key rotate "$T/p.yml"
assert_eq 1 "$(ls "$repo/keyring" | wc -l)" "keyring objects after a second rotation (the leftover removed too)"
run_ok "$T/kl4.json" "$T/kl4.err" key list "$T/p.yml" --json
assert_eq 3 "$(json_get "$T/kl4.json" 'len(j["keypairs"])')" "key pairs after two rotations"
reader verify >"$T/verify.out" 2>&1 || { cat "$T/verify.out" >&2; fail "the independent reader rejects the rotated repository"; }
for s in "$s1" "$s2" "$sw"; do
  reader cat "${s:0:8}" files "${src#/}/numbers.txt" >/dev/null || fail "the independent reader cannot read snapshot ${s:0:8} after two rotations"
done

# format 1 refuses
write_pipeline "$T/v1.yml" rot1 "$T/repo1" "$src"
run_ok "$T/v1.out" "$T/v1.err" run "$T/v1.yml"
run_engine "$T/v1r.out" "$T/v1r.err" key rotate "$T/v1.yml"
assert_rc 1 "key rotate on a format-1 repository" "$T/v1r.err"
assert_contains "$T/v1r.err" "format 2" "key rotate on a format-1 repository"
run_engine "$T/v1w.out" "$T/v1w.err" key add "$T/v1.yml" --write-only --out "$T/v1.cred"
assert_rc 1 "key add --write-only on a format-1 repository" "$T/v1w.err"
assert_contains "$T/v1w.err" "format 2" "key add --write-only on a format-1 repository"
[ ! -e "$T/v1.cred" ] || fail "a refused key add --write-only left a file"
note "rotate: ${rot_ms} ms, only the keyring rewritten; old ($k1) and new ($k2) snapshots and an old writer's restore"
