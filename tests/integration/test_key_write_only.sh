#!/usr/bin/env bash
# Write-only backup hosts (repository format 2, docs/SECURITY.md):
#   - a reader (the passphrase) creates a format-2 repository and backs up;
#   - key add --write-only --out FILE writes a 0600 writer credential that
#     the independent reader confirms holds no private key nor the master
#     secret;
#   - a host with stages.encrypt {mode: write-only, key_file: file:...}
#     backs up, deduplicating against the whole repository (its first run
#     stores nothing new over data the reader stored), and leaves no lock
#     behind without deleting anything (a release marker instead);
#   - its journal (STATE/writer/<repository id>, 0700/0600, sealed) keeps
#     the manifest and trees of its own newest snapshot: the next run skips
#     unchanged items as with any parent, snapshots shows its own time and
#     status and nothing of the reader's; without the journal it reads
#     everything again and still stores nothing new;
#   - on that host restore, show, check (--read-data too), forget, prune,
#     repair and key are refused with a sentence saying why (exit 1), and
#     snapshots lists ids and object sizes only;
#   - the reader lists, restores byte for byte, checks --read-data and
#     prunes what the writer wrote; the independent reader verifies it all.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

READER_PY=${ENGINE_READER_PYTHON:-/usr/bin/python3}
reader() { "$READER_PY" "$TESTS_INTEGRATION_DIR/../tools/engine_reader.py" "$repo" --passphrase-env ENGINE_PASSPHRASE "$@"; }

src=$T/src
mkdir -p "$src/sub"
seeded_file "$src/big.bin" 6 write-only-test
seq 1 200000 >"$src/sub/numbers.txt"
printf 'first\n' >"$src/sub/small.txt"
repo=$T/repo
write_pipeline "$T/reader.yml" wo "$repo" "$src"
printf 'repository: {format: 2, chunk_min: 64KiB, chunk_avg: 256KiB, chunk_max: 1MiB}\n' >>"$T/reader.yml"

run_ok "$T/r1.json" "$T/r1.err" run "$T/reader.yml" --json
assert_eq 2 "$(json_get "$repo/config" 'j["version"]')" "the format of a repository made with repository.format 2"
[ -n "$(ls "$repo/keyring")" ] || fail "a format-2 repository has a keyring/ object"

# ---- the writer credential -----------------------------------------------------
cred=$T/writer.cred
run_ok "$T/add.out" "$T/add.err" key add "$T/reader.yml" --write-only --out "$cred"
assert_contains "$T/add.out" "holds no private key" "key add --write-only"
assert_eq 600 "$(stat -c %a "$cred")" "the writer credential's mode"
run_engine "$T/add2.out" "$T/add2.err" key add "$T/reader.yml" --write-only --out "$cred"
assert_rc 1 "key add --write-only over an existing file" "$T/add2.err"
assert_contains "$T/add2.err" "never overwritten" "key add --write-only over an existing file"
run_engine "$T/add3.out" "$T/add3.err" key add "$T/reader.yml" --write-only
assert_rc 2 "key add --write-only without --out" "$T/add3.err"
reader credential "$cred" >"$T/cred.out" 2>&1 || { cat "$T/cred.out" >&2; fail "the independent reader finds a secret in the writer credential"; }
assert_contains "$T/cred.out" "holds no private key" "the independent reader's check of the credential"
# and it would notice one: a credential with the keyring's private key added
"$PYTHON" - "$cred" "$T/bad.cred" "$repo" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["note"] = "extra"
json.dump(c, open(sys.argv[2], "w"))
EOF
reader credential "$T/bad.cred" >/dev/null 2>&1 || fail "the credential check refuses a credential with an unknown harmless field"

# ---- the write-only host ---------------------------------------------------------
sed "s|encrypt: .*|encrypt: {mode: write-only, key_file: 'file:$cred'}|" "$T/reader.yml" >"$T/writer.yml"
grep -q "mode: write-only" "$T/writer.yml" || fail "unable to write the writer's pipeline"
# nothing else of the reader's secret on this host
unset ENGINE_PASSPHRASE
run_ok "$T/w1.json" "$T/w1.err" run "$T/writer.yml" --json
assert_not_contains "$T/w1.err" "cannot be read" "a write-only run (it does not try to read snapshots)"
new1=$(json_get "$T/w1.json" 'j["new_bytes"]')
read1=$(json_get "$T/w1.json" 'j["bytes_read"]')
# the tree's chunks only: every data chunk is already in the repository
[ "$new1" -lt 262144 ] || fail "a write-only run over unchanged data stored $new1 new bytes of $read1 read (no deduplication against the repository?)"
# the journal: the writer's own snapshot, sealed, owner-only
jdir=$ENGINE_STATE_DIR/writer/$(json_get "$repo/config" 'j["id"]')
[ "$(stat -c %a "$jdir")" = 700 ] || fail "the journal directory is not 0700"
ls "$jdir" | grep -q '^snapshot-' || fail "the writer's journal holds no snapshot"
ls "$jdir" | grep -q '^tree-' || fail "the writer's journal holds no tree blob"
[ -z "$(find "$jdir" -type f ! -perm 600)" ] || fail "a journal file is not 0600"
! grep -rqa "numbers.txt" "$jdir" || fail "the journal holds item names in the clear"
# an unchanged run: the parent from the journal, nothing read
run_ok "$T/w1b.json" "$T/w1b.err" run "$T/writer.yml" --json
reused=$(json_get "$T/w1b.json" 'j["reused_items"]')
read1b=$(json_get "$T/w1b.json" 'j["bytes_read"]')
assert_eq 3 "$reused" "files reused from the journal's parent (all three)"
[ "$read1b" -lt 65536 ] || fail "an unchanged write-only run read $read1b bytes (no parent from its journal?)"
assert_eq 1 "$(ls "$jdir" | grep -c '^snapshot-')" "snapshots the journal keeps (the newest only)"
printf 'second\n' >>"$src/sub/small.txt"
run_ok "$T/w2.json" "$T/w2.err" run "$T/writer.yml" --json
w2=$(json_get "$T/w2.json" 'j["snapshot"]')
new2=$(json_get "$T/w2.json" 'j["new_bytes"]')
[ "$new2" -lt 524288 ] || fail "a write-only run with one changed small file stored $new2 new bytes"
# nothing deleted: each of the writer's locks stays, with a release marker
n_locks=0
for l in "$repo"/locks/*; do
  [ -f "$l" ] || continue
  n_locks=$((n_locks + 1))
  [ -f "$repo/locks/released/$(basename "$l")" ] || {
    find "$repo/locks" >&2
    fail "a write-only run left its lock $(basename "$l") without a release marker"
  }
done
assert_eq 3 "$n_locks" "locks the three write-only runs left (released, not deleted)"
# only the changed file is read
read2=$(json_get "$T/w2.json" 'j["bytes_read"]')
[ "$read2" -lt 65536 ] || fail "a write-only run with one changed small file read $read2 bytes"

refused() { # WHAT ARGS...
  local what=$1
  shift
  run_engine "$T/ref.out" "$T/ref.err" "$@"
  assert_rc 1 "$what on a write-only host" "$T/ref.out" "$T/ref.err"
  assert_contains "$T/ref.err" "is refused" "$what on a write-only host"
  assert_contains "$T/ref.err" "write-only" "$what on a write-only host"
}
refused restore restore "$T/writer.yml" latest --target "$T/nope"
[ ! -e "$T/nope" ] || fail "a refused restore created its target"
refused show show "$T/writer.yml" latest
refused check check "$T/writer.yml"
refused "check --read-data" check "$T/writer.yml" --read-data
refused forget forget "$T/writer.yml" "$w2"
refused prune prune "$T/writer.yml"
refused "repair index" repair index "$T/writer.yml"
refused "key list" key list "$T/writer.yml"
refused "key rotate" key rotate "$T/writer.yml"
assert_contains "$T/ref.err" "master secret" "key on a write-only host says what it lacks"
run_ok "$T/ws.json" "$T/ws.err" snapshots "$T/writer.yml" --json
assert_eq 4 "$(json_get "$T/ws.json" 'len(j)')" "snapshots listed on the write-only host"
assert_eq true "$(json_get "$T/ws.json" 'all(s["sealed"] and "time" not in s for s in j if not s.get("own"))')" \
  "snapshots the write-only host did not write (or no longer keeps): id and size only"
assert_eq 1 "$(json_get "$T/ws.json" 'len([s for s in j if s.get("own")])')" \
  "own snapshots the journal keeps (the newest)"
assert_eq "$w2 complete" "$(json_get "$T/ws.json" '" ".join([[s["id"], s["status"]] for s in j if s.get("own")][0])')" \
  "the write-only host's own snapshot, from its journal"
# without the journal: everything is read again, nothing new stored
mv "$jdir" "$T/journal.moved"
run_ok "$T/w3.json" "$T/w3.err" run "$T/writer.yml" --json
[ "$(json_get "$T/w3.json" 'j["bytes_read"]')" -gt 6000000 ] || fail "a run without the journal should read everything"
assert_eq 0 "$(json_get "$T/w3.json" 'j["new_bytes"]')" "new bytes of a run without the journal"
w3=$(json_get "$T/w3.json" 'j["snapshot"]')
run_ok "$T/ws.out" "$T/ws.err" snapshots "$T/writer.yml"
assert_contains "$T/ws.out" "sealed to the repository's public key" "snapshots on a write-only host"

# ---- the reader ----------------------------------------------------------------------
export ENGINE_PASSPHRASE=$TEST_PASSPHRASE
run_ok "$T/rs.json" "$T/rs.err" snapshots "$T/reader.yml" --json
assert_eq 5 "$(json_get "$T/rs.json" 'len(j)')" "snapshots the reader lists"
assert_eq "$w3" "$(json_get "$T/rs.json" 'j[4]["id"]')" "the writer's last snapshot is the reader's latest"
run_ok "$T/res.out" "$T/res.err" restore "$T/reader.yml" "$w2" --target "$T/out"
compare_trees "$src" "$(restored_path "$T/out" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the writer's snapshot does not restore byte for byte on the reader"; }
run_ok "$T/chk.out" "$T/chk.err" check "$T/reader.yml" --read-data
reader verify >"$T/verify.out" 2>&1 || { cat "$T/verify.out" >&2; fail "the independent reader rejects the format-2 repository"; }
reader cat "${w2:0:8}" files "${src#/}/sub/small.txt" >"$T/small.txt"
assert_files_equal "$src/sub/small.txt" "$T/small.txt" "the independent reader's copy of the writer's file"
# the reader removes the writer's release markers and stale locks
run_ok "$T/fg.out" "$T/fg.err" forget "$T/reader.yml" "$(json_get "$T/rs.json" 'j[1]["id"]')"
run_ok "$T/pr.out" "$T/pr.err" prune "$T/reader.yml"
[ -z "$(find "$repo/locks" -type f)" ] || { find "$repo/locks" >&2; fail "locks or release markers left after the reader's prune"; }
run_ok "$T/chk2.out" "$T/chk2.err" check "$T/reader.yml" --read-data
run_ok "$T/res2.out" "$T/res2.err" restore "$T/reader.yml" "$w2" --target "$T/out2"
compare_trees "$src" "$(restored_path "$T/out2" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the writer's snapshot does not restore after forget and prune"; }
note "write-only host: first run stored $new1 B of $read1 B read; with its journal's parent an unchanged run read $read1b B, one changed file $read2 B read / $new2 B stored; refusals and reader restore OK"
