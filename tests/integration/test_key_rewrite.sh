#!/usr/bin/env bash
# engine key rotate --rewrite (repository format 2, docs/FORMAT.md §3.6):
#   - every pack, index object, snapshot and record is sealed again under new
#     keys (a new master secret, key pair, index key and tenant keys) and the
#     old keys are retired: afterwards the old key objects and keyrings, put
#     back into the repository, open nothing (every snapshot unreadable,
#     every pack undecryptable, checked by the independent reader too);
#   - every snapshot (ids change; parents follow) restores byte for byte as
#     before, a tenant's data stays its own (under its successor key), an
#     unchanged run after it stores nothing new, the other passphrase's key
#     is removed and said so, and an old writer credential no longer backs up;
#   - killed with SIGKILL at several moments, every state passes check
#     --read-data, opens with the passphrase and restores, and a re-run
#     finishes the job.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

READER_PY=${ENGINE_READER_PYTHON:-/usr/bin/python3}
reader() { "$READER_PY" "$TESTS_INTEGRATION_DIR/../tools/engine_reader.py" "$1" --passphrase-env ENGINE_PASSPHRASE "${@:2}"; }
MIB=$((1024 * 1024))

src=$T/src
mkdir -p "$src/home/alice" "$src/shared"
for i in 1 2 3 4 5 6; do random_file "$src/shared/s$i" 6; done
for i in 1 2 3 4; do random_file "$src/home/alice/a$i" 3; done
repo=$T/repo
write_pipeline "$T/p.yml" rewrite "$repo" "$src"
sed -i 's/  encrypt: {algorithm: aes-256-gcm, passphrase: .env:ENGINE_PASSPHRASE.}/  encrypt:\n    algorithm: aes-256-gcm\n    passphrase: env:ENGINE_PASSPHRASE\n    per_tenant: true\n    tenant_of: {"files\/*\/home\/alice": alice}/' "$T/p.yml"
printf 'repository: {format: 2, pack_size: 1MiB}\n' >>"$T/p.yml"
run_ok "$T/v.out" "$T/v.err" validate "$T/p.yml"
declare -A expected
for day in 1 2 3; do
  echo "day $day" >"$src/notes.txt"
  random_file "$src/home/alice/day$day" 1
  run_ok "$T/r$day.json" "$T/r$day.err" run "$T/p.yml" --json --time "2024-05-0${day}T10:00:00Z"
  rm -rf "$T/expected$day"
  cp -a "$src" "$T/expected$day"
done
export OTHER_PASS=another-passphrase
run_ok "$T/ka.out" "$T/ka.err" key add "$T/p.yml" --new-passphrase env:OTHER_PASS
run_ok "$T/kw.out" "$T/kw.err" key add "$T/p.yml" --write-only --out "$T/writer.cred"
mkdir -p "$T/old-keys"
cp -a "$repo/keys" "$repo/keyring" "$T/old-keys/"
cp -a "$repo" "$T/repo.template"

# snapshot id by its time (ids change with the rewrite)
snap_at() { # DAY -> id
  run_ok "$T/sl.json" "$T/sl.err" snapshots "$T/p.yml" --json
  json_get "$T/sl.json" "[s['id'] for s in j if s.get('time', '').startswith('2024-05-0$1')][0]"
}
restore_all() { # WHAT
  for day in 1 2 3; do
    local id
    id=$(snap_at "$day")
    rm -rf "$T/out"
    run_ok "$T/ro.out" "$T/ro.err" restore "$T/p.yml" "$id" --target "$T/out"
    compare_trees "$T/expected$day" "$(restored_path "$T/out" "$src")" >"$T/cmp.txt" 2>&1 ||
      { cat "$T/cmp.txt" >&2; fail "$1: the snapshot of day $day does not restore byte for byte"; }
  done
}

# ---- an undisturbed rewrite -----------------------------------------------------
t0=$(date +%s%N)
run_ok "$T/rw.out" "$T/rw.err" key rotate "$T/p.yml" --rewrite
t1=$(date +%s%N)
full_ms=$(((t1 - t0) / 1000000))
note "undisturbed rewrite: ${full_ms} ms; $(head -1 "$T/rw.out")"
assert_contains "$T/rw.out" "rewritten in" "key rotate --rewrite's summary"
assert_contains "$T/rw.out" "removed key" "the other passphrase's key is reported removed"
assert_eq 1 "$(ls "$repo/keys" | wc -l)" "key objects after the rewrite"
assert_eq 1 "$(ls "$repo/keyring" | wc -l)" "keyrings after the rewrite"
for f in "$T"/old-keys/keys/* "$T"/old-keys/keyring/*; do
  [ ! -e "$repo/$(basename "$(dirname "$f")")/$(basename "$f")" ] || fail "old key object $(basename "$f") survived"
done
run_ok "$T/ck.out" "$T/ck.err" check "$T/p.yml" --read-data
restore_all "after the rewrite"
reader "$repo" verify >"$T/rv.out" 2>"$T/rv.err" || { show "$T/rv.err"; fail "the independent reader does not verify the rewritten repository"; }
run_ok "$T/kl.json" "$T/kl.err" key list "$T/p.yml" --json
assert_eq 1 "$(json_get "$T/kl.json" 'len(j["keypairs"])')" "key pairs after the rewrite (the old one retired)"
assert_eq 1 "$(json_get "$T/kl.json" 'len([t for t in j["tenants"] if "retired" not in t and "shredded" not in t])')" \
  "live tenant keys after the rewrite"
# a parent link follows the renamed snapshot
run_ok "$T/s3.json" "$T/s3.err" show "$T/p.yml" "$(snap_at 3)" --json
[ "$(json_get "$T/s3.json" 'j.get("parent")')" = "$(snap_at 2)" ] || fail "the day-3 snapshot's parent does not name the rewritten day-2 snapshot"
run_ok "$T/r4.json" "$T/r4.err" run "$T/p.yml" --json
assert_eq 0 "$(json_get "$T/r4.json" 'j["new_bytes"]')" "new bytes of an unchanged run after the rewrite"
OLD=$ENGINE_PASSPHRASE
ENGINE_PASSPHRASE=$OTHER_PASS run_engine "$T/op.out" "$T/op.err" snapshots "$T/p.yml"
assert_rc 1 "the removed passphrase" "$T/op.err"
assert_contains "$T/op.err" "wrong passphrase" "the removed passphrase opens nothing"
ENGINE_PASSPHRASE=$OLD

# the old writer credential cannot back up any more (it cannot read the index)
cp "$T/p.yml" "$T/w.yml"
sed -i 's|    passphrase: env:ENGINE_PASSPHRASE|    mode: write-only\n    key_file: '"$(yq "$T/writer.cred")"'|; /per_tenant/d; /tenant_of/d' "$T/w.yml"
echo "new" >"$src/new.txt"
run_engine "$T/wr.out" "$T/wr.err" run "$T/w.yml"
assert_rc 1 "a backup with a writer credential made before the rewrite" "$T/w.yml" "$T/wr.out" "$T/wr.err"
rm "$src/new.txt"

# the old keys open nothing: put the old key objects and keyrings back
rm -rf "$T/oldview"
cp -a "$repo" "$T/oldview"
rm -rf "$T/oldview/keys" "$T/oldview/keyring"
cp -a "$T/old-keys/keys" "$T/old-keys/keyring" "$T/oldview/"
sed "s|$(yq "$repo")|$(yq "$T/oldview")|" "$T/p.yml" >"$T/old.yml"
run_engine "$T/os.out" "$T/os.err" snapshots "$T/old.yml"
assert_rc 1 "snapshots with the old keys" "$T/os.out" "$T/os.err"
assert_contains "$T/os.out" "UNREADABLE" "the snapshots are unreadable with the old keys"
if grep -q complete "$T/os.out"; then fail "a snapshot opened with the old keys"; fi
if reader "$T/oldview" verify >"$T/ov.out" 2>"$T/ov.err"; then fail "the reader verified the rewritten repository with the old keys"; fi
assert_eq 0 "$(grep -c 'blob.*content does not match\|checked; .* no errors' "$T/ov.out" || true)" "the reader with the old keys"
note "the old key objects and keyrings open no snapshot and no pack"

# ---- killed rewrites --------------------------------------------------------------
interrupted=0
rm -rf "$repo"
cp -a "$T/repo.template" "$repo"
for pct in 5 20 40 60 80; do
  delay_ms=$((full_ms * pct / 100))
  delay=$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" key rotate "$T/p.yml" --rewrite \
    >"$T/killed.out" 2>"$T/killed.err" </dev/null &
  pid=$!
  sleep "$delay"
  if kill -KILL "$pid" 2>/dev/null; then
    { wait "$pid"; } 2>/dev/null || true
    interrupted=$((interrupted + 1))
    note "rewrite killed after ${delay}s ($pct%): $(ls "$repo/keys" | wc -l) key object(s), $(ls "$repo/keyring" | wc -l) keyring(s), $(find "$repo/data" -type f ! -name '*.tmp-*' | wc -l) packs"
  else
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || { show "$T/killed.out" "$T/killed.err"; fail "the rewrite meant to be killed after ${delay}s failed on its own with $rc"; }
    note "rewrite finished before the kill after ${delay}s; starting another"
  fi
  run_engine "$T/kc.out" "$T/kc.err" check "$T/p.yml" --read-data
  assert_rc 0 "check --read-data after a rewrite killed after ${delay}s" "$T/kc.out" "$T/kc.err"
  rm -rf "$T/out"
  run_ok "$T/kr.out" "$T/kr.err" restore "$T/p.yml" latest --target "$T/out"
  compare_trees "$T/expected3" "$(restored_path "$T/out" "$src")" >"$T/cmp.txt" 2>&1 ||
    { cat "$T/cmp.txt" >&2; fail "latest does not restore after a rewrite killed after ${delay}s"; }
done
[ "$interrupted" -ge 3 ] || fail "only $interrupted of 5 rewrites were interrupted by the kill; the test proved little"
run_ok "$T/fin.out" "$T/fin.err" key rotate "$T/p.yml" --rewrite
run_ok "$T/ck2.out" "$T/ck2.err" check "$T/p.yml" --read-data
run_ok "$T/sl2.out" "$T/sl2.err" snapshots "$T/p.yml"
assert_contains "$T/sl2.out" "3 snapshot(s)" "snapshots after the killed rewrites (none lost, none doubled)"
assert_eq 1 "$(ls "$repo/keys" | wc -l)" "key objects after the killed rewrites"
assert_eq 1 "$(ls "$repo/keyring" | wc -l)" "keyrings after the killed rewrites"
restore_all "after the killed rewrites"
reader "$repo" verify >"$T/rv2.out" 2>"$T/rv2.err" || { show "$T/rv2.err"; fail "the reader does not verify after the killed rewrites"; }
note "PASS"
