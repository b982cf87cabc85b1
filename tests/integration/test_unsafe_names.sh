#!/usr/bin/env bash
# A manifest whose item names leave the target ("../x", "/x", "a/../../x")
# is refused as a whole before any plugin writes anything. The test-only
# "evil" source plugin (tests/plugins/evil) emits such names and restores
# naively, so any write that reaches it would escape the target.
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

# without the test plugin dir the type is unknown: the plugin is not on the
# normal search path
run_engine "$T/v.out" "$T/v.err" validate "$T/p.yml"
assert_rc 1 "validate of a pipeline using 'evil' without --plugin-dir" "$T/v.out" "$T/v.err"

run_ok "$T/run.json" "$T/run.err" --plugin-dir "$ENGINE_TEST_PLUGIN_DIR" run "$T/p.yml" --json
note "backup with the evil source: status $(json_get "$T/run.json" 'j["status"]'), items $(json_get "$T/run.json" 'j["items"]')"
run_ok "$T/show.json" "$T/show.err" --plugin-dir "$ENGINE_TEST_PLUGIN_DIR" show "$T/p.yml" latest --json

mkdir -p "$T/w"
target=$T/w/target
try_restore() { # LABEL ARGS...
  local label=$1
  shift
  run_engine "$T/$label.out" "$T/$label.err" --plugin-dir "$ENGINE_TEST_PLUGIN_DIR" restore "$T/p.yml" latest "$@"
  assert_rc 1 "restore ($label) of a manifest with unsafe names" "$T/$label.out" "$T/$label.err"
  if ! grep -qF -e "../escape.txt" -e "/abs.txt" -e "a/../../b.txt" "$T/$label.err"; then
    show "$T/$label.err"
    fail "restore ($label): the error does not name the unsafe item"
  fi
  grep -qiE 'unsafe|refus' "$T/$label.err" ||
    { show "$T/$label.err"; fail "restore ($label): the error does not say the name is unsafe / refused"; }
  # nothing written anywhere
  [ ! -e "$target" ] || fail "restore ($label) created the target: $(find "$target" | head)"
  local stray
  stray=$(find "$T/w" -mindepth 1 | head)
  [ -z "$stray" ] || fail "restore ($label) wrote outside the target: $stray"
  [ ! -e /abs.txt ] || { rm -f /abs.txt; fail "restore ($label) wrote /abs.txt"; }
  if [ -e "$T/escape.txt" ] || [ -e "$T/b.txt" ]; then
    fail "restore ($label) wrote into $T"
  fi
}
try_restore plain --target "$target"
try_restore yes --target "$target" --yes
try_restore only --target "$target" --only evil/ok.txt
try_restore dryrun --target "$target" --dry-run
note "PASS"
