#!/usr/bin/env bash
# With a wrong passphrase, run / restore / snapshots / show / check fail with
# exit 1 and a message about the passphrase, and write nothing: the
# repository's listing (names, sizes, mtimes) is unchanged and no restore
# target is created.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src"
random_file "$src/data" 2
echo hello >"$src/hello.txt"
write_pipeline "$T/p.yml" wrongpass "$T/repo" "$src"
run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json

listing "$T/repo" >"$T/before.txt"
# mtimes have a resolution of the file system: wait so that a rewrite of any
# file now would show
sleep 1.1

export ENGINE_PASSPHRASE="definitely-not-the-passphrase"
check_refused() { # WHAT ARGS...
  local what=$1
  shift
  run_engine "$T/$what.out" "$T/$what.err" "$@"
  assert_rc 1 "engine $* with a wrong passphrase" "$T/$what.out" "$T/$what.err"
  assert_contains "$T/$what.err" passphrase "the error of 'engine $*' with a wrong passphrase"
}
check_refused run run "$T/p.yml"
check_refused runjson run "$T/p.yml" --json
check_refused restore restore "$T/p.yml" latest --target "$T/out"
check_refused restoreyes restore "$T/p.yml" latest --target "$T/out" --yes
check_refused snapshots snapshots "$T/p.yml"
check_refused show show "$T/p.yml" latest
check_refused check check "$T/p.yml" --read-data
# the wrong passphrase itself is never printed
for f in "$T"/*.err "$T"/*.out; do
  assert_not_contains "$f" "$ENGINE_PASSPHRASE" "output of a refused command"
done

[ ! -e "$T/out" ] || fail "a restore with a wrong passphrase created the target $T/out"
listing "$T/repo" >"$T/after.txt"
if ! diff -u "$T/before.txt" "$T/after.txt" >&2; then
  fail "the repository changed although every command was refused (diff above)"
fi

# and the right passphrase still works
export ENGINE_PASSPHRASE=$TEST_PASSPHRASE
run_ok "$T/snap.out" "$T/snap.err" snapshots "$T/p.yml"
assert_contains "$T/snap.out" "1 snapshot(s)" "snapshot list with the right passphrase"

# ---- a damaged key object is named as damaged, never as a wrong passphrase ----
# With every key object intact, a wrong passphrase says so:
ENGINE_PASSPHRASE="definitely-not-the-passphrase" run_engine "$T/w1.out" "$T/w1.err" snapshots "$T/p.yml"
assert_rc 1 "snapshots with a wrong passphrase" "$T/w1.out" "$T/w1.err"
assert_contains "$T/w1.err" "wrong passphrase or key file: none of the repository's 1 key(s) can be opened with it" \
  "a wrong passphrase with one intact key"

ka=$(cd "$T/repo/keys" && ls)
[[ "$ka" =~ ^[0-9a-f]{64}$ ]] || fail "expected exactly one key object, found '$ka'"
cp "$T/repo/keys/$ka" "$T/key-a.good"
# damage KEYFILE PYTHON: rewrite KEYFILE with PYTHON applied to its text `t`
# (the JSON document is `j` where the statement uses it)
damage() {
  "$PYTHON" - "$1" "$2" <<'PY'
import json, sys
path, stmt = sys.argv[1], sys.argv[2]
t = open(path).read()
j = json.loads(t)
exec(stmt)
open(path, "w").write(t)
PY
}
# the right passphrase, one key, damaged in each way: named, not "wrong passphrase"
cases=(
  "broken JSON|t = t[:len(t) // 2]|not valid JSON"
  "bad base64|j['data'] = '!!' + j['data'][2:]; t = json.dumps(j)|'data' is not valid base64"
  "data not a string|j['data'] = 42; t = json.dumps(j)|'data' is not a string"
  "kdf not an object|j['kdf'] = 'scrypt'; t = json.dumps(j)|'kdf' is not an object"
  "N not an integer|j['kdf']['N'] = str(j['kdf']['N']); t = json.dumps(j)|scrypt parameters"
  "truncated data|j['data'] = j['data'][:-8]; t = json.dumps(j, indent=2, sort_keys=True)|no longer match its name"
  "one byte of data changed|d = j['data']; j['data'] = d[:20] + ('B' if d[20] == 'A' else 'A') + d[21:]; t = json.dumps(j, indent=2, sort_keys=True)|no longer match its name"
)
i=0
for c in "${cases[@]}"; do
  IFS='|' read -r what stmt needle <<<"$c"
  i=$((i + 1))
  cp "$T/key-a.good" "$T/repo/keys/$ka"
  damage "$T/repo/keys/$ka" "$stmt"
  cmp -s "$T/key-a.good" "$T/repo/keys/$ka" && fail "the case '$what' did not change the key object"
  run_engine "$T/d$i.out" "$T/d$i.err" snapshots "$T/p.yml"
  assert_rc 1 "snapshots with a key object damaged ($what)" "$T/d$i.out" "$T/d$i.err"
  assert_contains "$T/d$i.err" "no key of the repository can be opened: key object 'keys/$ka' is damaged: " \
    "the error for a key object damaged ($what)"
  assert_contains "$T/d$i.err" "$needle" "the error for a key object damaged ($what)"
  assert_not_contains "$T/d$i.err" "wrong passphrase" "the error for a key object damaged ($what)"
  note "ok: $what: $(cat "$T/d$i.err")"
done
cp "$T/key-a.good" "$T/repo/keys/$ka"

# Two keys, the first damaged: the other key is still tried and opens (with a
# warning naming the damaged object); if none opens, the damaged one is named
# and the message tells the passphrase may be its.
export PASS_B="the second passphrase of this repository"
run_ok "$T/add.out" "$T/add.err" key add "$T/p.yml" --new-passphrase env:PASS_B
sed "s|passphrase: 'env:ENGINE_PASSPHRASE'|passphrase: 'env:PASS_B'|" "$T/p.yml" >"$T/b.yml"
damage "$T/repo/keys/$ka" "j['data'] = j['data'][:-8]; t = json.dumps(j, indent=2, sort_keys=True)"
run_ok "$T/b.out" "$T/b.err" snapshots "$T/b.yml"
assert_contains "$T/b.out" "1 snapshot(s)" "the intact key opens while another key object is damaged"
assert_contains "$T/b.err" "key object 'keys/$ka' is damaged" "the warning about the damaged key object"
for pass in "$TEST_PASSPHRASE" "definitely-not-the-passphrase"; do
  ENGINE_PASSPHRASE=$pass run_engine "$T/n.out" "$T/n.err" snapshots "$T/p.yml"
  assert_rc 1 "snapshots with one key damaged and the other not opening" "$T/n.out" "$T/n.err"
  assert_contains "$T/n.err" "no key of the repository can be opened: key object 'keys/$ka' is damaged: " \
    "the error with one key damaged and the other not opening"
  assert_contains "$T/n.err" "the passphrase does not open the other 1 key(s), which are intact" \
    "the error with one key damaged and the other not opening"
  assert_not_contains "$T/n.err" "$pass" "the error with one key damaged"
done
# repaired: a wrong passphrase is a wrong passphrase again
cp "$T/key-a.good" "$T/repo/keys/$ka"
ENGINE_PASSPHRASE="definitely-not-the-passphrase" run_engine "$T/w2.out" "$T/w2.err" snapshots "$T/p.yml"
assert_rc 1 "snapshots with a wrong passphrase and two intact keys" "$T/w2.out" "$T/w2.err"
assert_contains "$T/w2.err" "wrong passphrase or key file: none of the repository's 2 key(s) can be opened with it" \
  "a wrong passphrase with two intact keys"
run_ok "$T/snap2.out" "$T/snap2.err" snapshots "$T/p.yml"
note "PASS"
