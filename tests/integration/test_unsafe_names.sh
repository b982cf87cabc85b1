#!/usr/bin/env bash
# Item names that would leave a restore target ("../x", "/x", "a/../../x"):
# 1. at backup time the core refuses them: each is a failed item with a
#    warning naming the plugin, the snapshot is partial (exit 3), the safe
#    items are stored and restore byte for byte;
# 2. a crafted manifest holding such names (written with
#    tests/tools/engine_craft.py, as an attacker with the key could) restores
#    its safe items and fails only the unsafe ones (exit 3), writing nothing
#    outside the target; check names exactly the unsafe items.
# The test-only "evil" source plugin (tests/plugins/evil) emits such names
# and restores naively, so any write that reached it would escape.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

evil_so=$ENGINE_TEST_PLUGIN_DIR/engine-source-evil.so
[ -f "$evil_so" ] || fail "the test plugin $evil_so was not built (tests/CMakeLists.txt target 'evil')"
[ ! -e /abs.txt ] || fail "/abs.txt exists before the test; remove it"

cat >"$T/p.yml" <<EOF2
version: 1
name: unsafe
sources:
  - name: evil
    type: evil
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - name: local
    type: local
    with: {path: '$T/repo'}
EOF2
E=(--plugin-dir "$ENGINE_TEST_PLUGIN_DIR")

# without the test plugin dir the type is unknown: the plugin is not on the
# normal search path
run_engine "$T/v.out" "$T/v.err" validate "$T/p.yml"
assert_rc 1 "validate of a pipeline using 'evil' without --plugin-dir" "$T/v.out" "$T/v.err"

# ---- 1. backup refuses the unsafe names, keeps the rest
run_engine "$T/run.json" "$T/run.err" "${E[@]}" run "$T/p.yml" --json
assert_rc 3 "backup of a source that emits unsafe names (partial)" "$T/run.json" "$T/run.err"
assert_eq partial "$(json_get "$T/run.json" 'j["status"]')" "snapshot status"
assert_eq 2 "$(json_get "$T/run.json" 'j["items"]')" "items stored (ok.txt, z/ok2.txt)"
for bad in "../escape.txt" "/abs.txt" "a/../../b.txt"; do
  assert_contains "$T/run.err" "$bad" "the backup names the refused item $bad"
  n=$(json_get "$T/run.json" "sum(1 for w in j['warnings'] if w.get('item') == '$bad' and \"plugin 'evil'\" in w['message'])")
  assert_eq 1 "$n" "a warning naming plugin 'evil' for $bad"
done
run_ok "$T/show.json" "$T/show.err" "${E[@]}" show "$T/p.yml" latest --json
assert_eq 3 "$(json_get "$T/show.json" 'j["sources"][0]["failed_items"]')" "failed_items in the manifest"
snap=$(json_get "$T/run.json" 'j["snapshot"]')

mkdir -p "$T/w"
run_ok "$T/r1.out" "$T/r1.err" "${E[@]}" restore "$T/p.yml" latest --target "$T/w/t1"
assert_eq "content of item 0 (ok.txt)" "$(cat "$T/w/t1/ok.txt")" "restored ok.txt"
assert_eq "content of item 4 (z/ok2.txt)" "$(cat "$T/w/t1/z/ok2.txt")" "restored z/ok2.txt"
assert_eq "ok.txt z z/ok2.txt" "$(cd "$T/w/t1" && find . -mindepth 1 | sed 's|^\./||' | sort | tr '\n' ' ' | sed 's/ $//')" "restored tree"
run_ok "$T/c1.out" "$T/c1.err" "${E[@]}" check "$T/p.yml" --read-data

# ---- 2. a crafted manifest with unsafe names
cat >"$T/craft.py" <<'EOF2'
import copy
def transform(items):
    ok = items[0]
    out = list(items)
    for bad in ("../escape.txt", "/abs.txt", "a/../../b.txt"):
        it = copy.deepcopy(ok)
        it["name"] = bad
        out.append(it)
    return out
EOF2
crafted=$(/usr/bin/python3 "$REPO_ROOT/tests/tools/engine_craft.py" "$T/repo" --passphrase-env ENGINE_PASSPHRASE tree "${snap:0:8}" evil "$T/craft.py")
note "crafted snapshot ${crafted:0:8} with three unsafe names"

run_engine "$T/c2.out" "$T/c2.err" "${E[@]}" check "$T/p.yml" --json
assert_rc 1 "check of a repository holding a manifest with unsafe names" "$T/c2.out" "$T/c2.err"
named=$(json_get "$T/c2.out" "' '.join(sorted(p['item'] for p in j['problems'] if p.get('snapshot') == '$crafted' and 'unsafe' in p['message']))")
assert_eq "../escape.txt /abs.txt a/../../b.txt" "$named" "items check names as unsafe"

target=$T/w/target
try_restore() { # LABEL EXPECTED-RC ARGS...
  local label=$1 want=$2
  shift 2
  run_engine "$T/$label.out" "$T/$label.err" "${E[@]}" restore "$T/p.yml" "$crafted" "$@"
  assert_rc "$want" "restore ($label) of a manifest with unsafe names" "$T/$label.out" "$T/$label.err"
  if [ "$want" = 3 ]; then
    for bad in "../escape.txt" "/abs.txt" "a/../../b.txt"; do
      grep -F -- "evil/$bad" "$T/$label.err" | grep -qi unsafe ||
        { show "$T/$label.err"; fail "restore ($label) does not name the unsafe item $bad"; }
    done
  fi
  local stray
  stray=$(find "$T/w" -mindepth 1 -not -path "$target" -not -path "$target/*" -not -path "$T/w/t1" -not -path "$T/w/t1/*" | head)
  [ -z "$stray" ] || fail "restore ($label) wrote outside the target: $stray"
  [ ! -e /abs.txt ] || { rm -f /abs.txt; fail "restore ($label) wrote /abs.txt"; }
  if [ -e "$T/escape.txt" ] || [ -e "$T/b.txt" ] || [ -e "$T/w/escape.txt" ] || [ -e "$T/w/b.txt" ]; then
    fail "restore ($label) wrote outside the target"
  fi
}
try_restore plain 3 --target "$target"
assert_eq "content of item 0 (ok.txt)" "$(cat "$target/ok.txt")" "the safe item of the crafted snapshot"
assert_eq "content of item 4 (z/ok2.txt)" "$(cat "$target/z/ok2.txt")" "the other safe item"
assert_eq "ok.txt z z/ok2.txt" "$(cd "$target" && find . -mindepth 1 | sed 's|^\./||' | sort | tr '\n' ' ' | sed 's/ $//')" "restored tree of the crafted snapshot"
try_restore only 0 --target "$target" --yes --only evil/ok.txt
try_restore dryrun 3 --target "$target" --dry-run
note "PASS"
