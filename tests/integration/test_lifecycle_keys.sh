#!/usr/bin/env bash
# Keys: several passphrases and key files open one repository.
#   key add      a second passphrase; either opens the repository
#   key passwd   replaces the passphrase in use: the old one then fails with
#                "wrong passphrase", the new one works
#   key remove   by id prefix; the last key and the key in use are refused
#   --new-key-file creates a 0600 key file that opens the repository through
#                stages.encrypt.key_file
# and through all of it the data (data/, index/, snapshots/) is never
# rewritten.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src/sub"
random_file "$src/random" 3
seq 1 100000 >"$src/sub/numbers.txt"
repo=$T/repo
write_pipeline "$T/a.yml" keytest "$repo" "$src"
# the same pipeline opened with another secret
with_secret() { # NAME ENCRYPT-VALUE: writes $T/NAME.yml
  sed "s|passphrase: 'env:ENGINE_PASSPHRASE'|$2|" "$T/a.yml" >"$T/$1.yml"
  grep -qF -- "$2" "$T/$1.yml" || fail "unable to write the pipeline $T/$1.yml"
}
with_secret b "passphrase: 'env:PASS_B'"
with_secret c "passphrase: 'env:PASS_C'"
with_secret wrong "passphrase: 'env:PASS_WRONG'"
export PASS_B="second passphrase for the key test"
export PASS_C="third passphrase, after passwd"
export PASS_WRONG="not a key of this repository"

run_ok "$T/run.json" "$T/run.err" run "$T/a.yml" --json
snap=$(json_get "$T/run.json" 'j["snapshot"]')

# Everything that holds data: must stay byte for byte the same.
data_listing() {
  (cd "$repo" && find data index snapshots config -type f ! -name '*.tmp-*' -printf '%p %s %T@\n' | LC_ALL=C sort)
  (cd "$repo" && find data index snapshots config -type f ! -name '*.tmp-*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
data_listing >"$T/data.before"
check_data_unchanged() { # WHAT
  data_listing >"$T/data.now"
  if ! diff -u "$T/data.before" "$T/data.now" >"$T/data.diff"; then
    cat "$T/data.diff" >&2
    fail "$1 rewrote repository data (data/, index/, snapshots/ or config changed)"
  fi
}

# opens PIPELINE WHAT: `snapshots` succeeds and lists the snapshot
opens() {
  run_engine "$T/o.json" "$T/o.err" snapshots "$1" --json
  assert_rc 0 "$2" "$T/o.json" "$T/o.err"
  assert_eq "$snap" "$(json_get "$T/o.json" 'j[0]["id"]')" "the snapshot listed when $2"
}
# refused PIPELINE WHAT: fails with "wrong passphrase"
refused() {
  run_engine "$T/o.json" "$T/o.err" snapshots "$1" --json
  assert_rc 1 "$2" "$T/o.json" "$T/o.err"
  assert_contains "$T/o.err" "wrong passphrase" "$2"
}
# key_ids PIPELINE: the ids of the keys, sorted; current_key PIPELINE: the
# id of the key the pipeline's secret opens
key_ids() {
  run_ok "$T/kl.json" "$T/kl.err" key list "$1" --json
  json_get "$T/kl.json" '" ".join(sorted(k["id"] for k in j))'
}
current_key() {
  run_ok "$T/kl.json" "$T/kl.err" key list "$1" --json
  json_get "$T/kl.json" '" ".join(k["id"] for k in j if k["current"])'
}

ka=$(key_ids "$T/a.yml")
[[ "$ka" =~ ^[0-9a-f]{64}$ ]] || fail "a new repository should have exactly one key, key list says '$ka'"
assert_eq "$ka" "$(current_key "$T/a.yml")" "the current key of the first passphrase"
refused "$T/b.yml" "opening with a passphrase that is not a key yet"
refused "$T/wrong.yml" "opening with a wrong passphrase"

# ---- add -----------------------------------------------------------------------
run_ok "$T/add.out" "$T/add.err" key add "$T/a.yml" --new-passphrase env:PASS_B
assert_contains "$T/add.out" "added key" "key add"
opens "$T/a.yml" "opening with the first passphrase after key add"
opens "$T/b.yml" "opening with the added passphrase"
kb=$(current_key "$T/b.yml")
[[ "$kb" =~ ^[0-9a-f]{64}$ ]] && [ "$kb" != "$ka" ] || fail "the added passphrase opens key '$kb', expected a new key next to $ka"
grep -qF "${kb:0:8}" "$T/add.out" || { show "$T/add.out"; fail "key add does not print the new key's id ${kb:0:8}"; }
assert_eq "$(printf '%s\n' "$ka" "$kb" | LC_ALL=C sort | paste -sd ' ')" "$(key_ids "$T/a.yml")" "keys after key add"
refused "$T/wrong.yml" "opening with a wrong passphrase after key add"
check_data_unchanged "key add"

# ---- passwd ----------------------------------------------------------------------
run_ok "$T/pw.out" "$T/pw.err" key passwd "$T/a.yml" --new-passphrase env:PASS_C
assert_contains "$T/pw.out" "changed" "key passwd"
refused "$T/a.yml" "opening with the passphrase that passwd replaced"
opens "$T/c.yml" "opening with the passphrase set by passwd"
opens "$T/b.yml" "opening with the other passphrase after passwd"
kc=$(current_key "$T/c.yml")
[ "$kc" != "$ka" ] && [ "$kc" != "$kb" ] || fail "passwd's new passphrase opens key '$kc', expected a new key"
assert_eq "$(printf '%s\n' "$kb" "$kc" | LC_ALL=C sort | paste -sd ' ')" "$(key_ids "$T/c.yml")" "keys after passwd"
check_data_unchanged "key passwd"

# ---- remove --------------------------------------------------------------------
# the key in use cannot be removed
run_engine "$T/rm1.out" "$T/rm1.err" key remove "$T/c.yml" "${kc:0:8}"
assert_rc 1 "removing the key in use" "$T/rm1.out" "$T/rm1.err"
assert_contains "$T/rm1.err" "refusing to remove key" "removing the key in use"
opens "$T/c.yml" "opening with the key whose removal was refused"
# another key, by an 8-digit prefix of its id
run_ok "$T/rm2.out" "$T/rm2.err" key remove "$T/c.yml" "${kb:0:8}"
refused "$T/b.yml" "opening with a removed key's passphrase"
opens "$T/c.yml" "opening with the remaining key"
assert_eq "$kc" "$(key_ids "$T/c.yml")" "keys after removing one"
# the last key: refused as the last one, before anything else
run_engine "$T/rm3.out" "$T/rm3.err" key remove "$T/c.yml" "${kc:0:8}"
assert_rc 1 "removing the last key" "$T/rm3.out" "$T/rm3.err"
assert_contains "$T/rm3.err" "last key" "removing the last key"
opens "$T/c.yml" "opening after the refused removal of the last key"
assert_eq "$kc" "$(key_ids "$T/c.yml")" "keys after the refused removals"
check_data_unchanged "key remove"

# ---- key files --------------------------------------------------------------------
mkdir -p "$T/keys"
keyfile=$T/keys/repo.key
run_ok "$T/kf.out" "$T/kf.err" key add "$T/c.yml" --new-key-file "$keyfile"
[ -f "$keyfile" ] || fail "key add --new-key-file did not create $keyfile"
assert_eq 600 "$(stat -c %a "$keyfile")" "mode of the created key file"
[ "$(stat -c %s "$keyfile")" -ge 32 ] || fail "the created key file holds only $(stat -c %s "$keyfile") bytes"
with_secret k "key_file: $(yq "$keyfile")"
opens "$T/k.yml" "opening with the created key file"
kk=$(current_key "$T/k.yml")
[ "$kk" != "$kc" ] || fail "the key file opens the passphrase's key $kc instead of a key of its own"
# an existing key file is used as it is, never overwritten
cp "$keyfile" "$T/keyfile.copy"
run_ok "$T/kf2.out" "$T/kf2.err" key add "$T/c.yml" --new-key-file "$keyfile"
assert_files_equal "$T/keyfile.copy" "$keyfile" "the key file after a second key add --new-key-file"
# the key file can take over: the passphrase's key goes
run_ok "$T/rm4.out" "$T/rm4.err" key remove "$T/k.yml" "${kc:0:8}"
refused "$T/c.yml" "opening with the passphrase whose key was removed through the key file"
opens "$T/k.yml" "opening with the key file as the only way in"
run_ok "$T/r.out" "$T/r.err" restore "$T/k.yml" "$snap" --target "$T/out"
compare_trees "$src" "$(restored_path "$T/out" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the snapshot does not restore byte for byte through the key file"; }
run_engine "$T/check.out" "$T/check.err" check "$T/k.yml" --read-data
assert_rc 0 "check --read-data through the key file" "$T/check.out" "$T/check.err"
check_data_unchanged "the key operations"
note "PASS"
