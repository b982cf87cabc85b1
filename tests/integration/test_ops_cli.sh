#!/usr/bin/env bash
# Operator ergonomics: a --json command that fails prints a JSON error
# object on stdout with the same exit status as without --json; log lines
# carry a journald priority when stderr is the journal (JOURNAL_STREAM) and
# a timestamp otherwise, one line per line of a message; -q keeps warnings;
# validate and serve (under -q too) flag an env: secret that is unset (run
# still fails on it); serve's lifecycle lines have the log's style; run
# --json names the sinks that missed the snapshot and the warnings.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/src"
echo "data" >"$T/src/a.txt"
write_pipeline "$T/p.yml" cli "$T/repo" "$T/src"
run_ok "$T/r.json" "$T/r.err" run "$T/p.yml" --json

# ---- JSON errors -----------------------------------------------------------------
# json_error RC WHAT ARGS...: exit RC with --json and without, and with it a
# JSON error object on stdout (message non-empty, exit_code RC)
json_error() {
  local want=$1 what=$2
  shift 2
  run_engine "$T/plain.out" "$T/plain.err" "$@"
  assert_rc "$want" "$what (without --json)" "$T/plain.out" "$T/plain.err"
  run_engine "$T/j.out" "$T/j.err" "$@" --json
  assert_rc "$want" "$what (--json)" "$T/j.out" "$T/j.err"
  "$PYTHON" - "$T/j.out" "$want" <<'EOF' || { show "$T/j.out" "$T/j.err"; fail "$what: stdout is not one JSON error object"; }
import json, sys
j = json.load(open(sys.argv[1]))
e = j["error"]
assert isinstance(e["message"], str) and e["message"], e
assert e["exit_code"] == int(sys.argv[2]), e
assert e["code"] in ("error", "usage", "interrupted"), e
EOF
}
json_error 1 "snapshots of a missing pipeline" snapshots "$T/missing.yml"
assert_contains "$T/j.out" "missing.yml" "the error names the file"
json_error 1 "show of an unknown snapshot" show "$T/p.yml" 0badc0de
json_error 1 "restore --dry-run of an unknown snapshot" restore "$T/p.yml" 0badc0de --dry-run
json_error 1 "forget of an unknown snapshot" forget "$T/p.yml" 0badc0de0badc0de
ENGINE_PASSPHRASE=wrong-passphrase json_error 1 "key list with a wrong passphrase" key list "$T/p.yml"
printf 'version: 1\nname: x\nsoruces: []\n' >"$T/bad.yml"
json_error 1 "validate of a broken pipeline" validate "$T/bad.yml"
assert_contains "$T/j.out" "bad.yml:3:1" "validate --json's error has the problems with their positions"
json_error 2 "an unknown option" snapshots "$T/p.yml" --bogus
json_error 2 "restore --as without an item" restore "$T/p.yml" latest --dry-run --as other
mv "$T/repo" "$T/repo.away"
mkdir "$T/repo" && echo x >"$T/repo/not-a-repository"
json_error 1 "check of a location that is no repository" check "$T/p.yml"
json_error 1 "prune of a location that is no repository" prune "$T/p.yml"
json_error 1 "repair index of a location that is no repository" repair index "$T/p.yml"
rm -rf "$T/repo"
mv "$T/repo.away" "$T/repo"
# a --json command that printed its document does not print a second one
rm "$(find "$T/repo/data" -type f | head -1)"
run_engine "$T/c.json" "$T/c.err" check "$T/p.yml" --json
assert_rc 1 "check of a damaged repository" "$T/c.err"
assert_eq false "$(json_get "$T/c.json" 'j["ok"]')" "check --json prints its report (one document)"
run_ok "$T/x" "$T/x.err" repair index "$T/p.yml"

# ---- log lines: journald priorities, timestamps, one line per line -------------
run_engine "$T/ts.out" "$T/ts.err" forget "$T/p.yml" 0badc0de0badc0de
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z engine: error: ' "$T/ts.err" ||
  { show "$T/ts.err"; fail "an error logged to a file has no timestamp"; }
# stderr is "the journal": JOURNAL_STREAM names its device and inode
: >"$T/journal"
js=$(stat -c '%d:%i' "$T/journal")
JOURNAL_STREAM=$js ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" forget "$T/p.yml" 0badc0de0badc0de \
  >/dev/null 2>>"$T/journal" || true
grep -q '^<3>engine: error: ' "$T/journal" || { show "$T/journal"; fail "no <3> priority on the journal"; }
# warnings: <4>; every line of a multi-line message carries the priority
printf 'version: 1\nname: x\nsoruces: []\ncolour: blue\n' >"$T/bad2.yml"
JOURNAL_STREAM=$js ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/bad2.yml" \
  >/dev/null 2>>"$T/journal" || true
# Lines of the instrumented build's runtimes are not engine's log lines and
# have no priority in any build: sanitizer warnings ("==PID==WARNING: ...",
# which ASan prints now and then about thread stacks) and gcov's
# "profiling:" messages. They are shown, not counted; a sanitizer ERROR
# still fails the test.
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/journal"; then
  show "$T/journal"
  fail "sanitizer report on the journal"
fi
grep -E '^(==[0-9]+==|profiling:)' "$T/journal" >"$T/journal.runtime" || true
[ ! -s "$T/journal.runtime" ] || note "instrumentation output on the journal (not counted): $(head -c 300 "$T/journal.runtime")"
grep -vE '^<[0-9]>engine: |^==[0-9]+==|^profiling:' "$T/journal" >"$T/journal.bare" || true
[ ! -s "$T/journal.bare" ] || { show "$T/journal"; fail "lines without a priority on the journal: $(wc -l <"$T/journal.bare")"; }
[ "$(grep -c '^<3>engine: error: .*bad2.yml' "$T/journal")" -ge 2 ] ||
  { show "$T/journal"; fail "each line of a multi-line error is its own journal line"; }
# a JOURNAL_STREAM inherited by a process whose stderr is elsewhere: timestamps
JOURNAL_STREAM=1:1 run_engine "$T/o" "$T/e" forget "$T/p.yml" 0badc0de0badc0de
grep -qE '^[0-9-]+T[0-9:.]+Z engine: error: ' "$T/e" || { show "$T/e"; fail "a foreign JOURNAL_STREAM changed the log style"; }

# ---- -q keeps warnings, validate flags an unset env: secret ---------------------
write_pipeline "$T/pp.yml" quietpartial "$T/repo-pp" "$T/src" "$T/does-not-exist"
run_engine "$T/q.out" "$T/q.err" -q run "$T/pp.yml"
assert_rc 3 "-q run of a partial backup" "$T/q.err"
assert_contains "$T/q.err" "warning:" "-q keeps the warnings"
assert_contains "$T/q.err" "does-not-exist" "-q keeps the warning's text"
[ ! -s "$T/q.out" ] || { show "$T/q.out"; fail "-q printed the summary"; }
(
  unset ENGINE_PASSPHRASE
  run_engine "$T/v.out" "$T/v.err" validate "$T/p.yml"
  assert_rc 0 "validate with the passphrase's variable unset (a warning, not an error)" "$T/v.err"
  assert_contains "$T/v.err" "stages.encrypt.passphrase: environment variable ENGINE_PASSPHRASE is not set" "validate names the unset secret"
  run_engine "$T/v.json" "$T/v2.err" validate "$T/p.yml" --json
  assert_eq true "$(json_get "$T/v.json" '"ENGINE_PASSPHRASE" in j["warnings"][0]')" "validate --json lists it"
  run_engine "$T/u.out" "$T/u.err" run "$T/p.yml"
  assert_rc 1 "run with the passphrase's variable unset" "$T/u.err"
)
run_ok "$T/v3.json" "$T/v3.err" validate "$T/p.yml" --json
assert_eq "[]" "$(json_get "$T/v3.json" 'j["warnings"]')" "validate --json with every secret set"

# ---- engine -q serve: no lifecycle lines, but the unset secret is flagged ----------
# (SERVE.md: -q leaves warnings and errors)
mkdir -p "$T/conf.d"
cp "$T/p.yml" "$T/conf.d/cli.yml"
SPORT=$(free_port)
(
  unset ENGINE_PASSPHRASE
  exec env ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" -q serve --listen "127.0.0.1:$SPORT" \
    --config-dir "$T/conf.d" --state-dir "$T/serve-state" >"$T/qs.out" 2>"$T/qs.err" </dev/null
) &
QS=$!
stop_qs() { kill -KILL "$QS" 2>/dev/null || true; }
at_exit stop_qs
for _ in $(seq 1 100); do
  curl -sf -o "$T/qs.json" "http://127.0.0.1:$SPORT/v1/pipelines/cli" && break
  kill -0 "$QS" 2>/dev/null || { show "$T/qs.err"; fail "engine -q serve exited at start"; }
  sleep 0.1
done
assert_eq true "$(json_get "$T/qs.json" '"ENGINE_PASSPHRASE is not set" in j["warnings"][0]')" \
  "/v1/pipelines/NAME lists the unset secret"
kill -TERM "$QS"
rc=0
wait "$QS" || rc=$?
[ "$rc" = 0 ] || { show "$T/qs.err"; fail "engine -q serve exited $rc after SIGTERM"; }
assert_contains "$T/qs.err" "warning: serve: $T/conf.d/cli.yml (pipeline 'cli'): stages.encrypt.passphrase: environment variable ENGINE_PASSPHRASE is not set" \
  "serve flags the unset secret at start, under -q"
assert_not_contains "$T/qs.err" "listening on" "engine -q serve's lifecycle lines"
# without -q the lifecycle lines have the log's timestamps, as every other line
serve_start qs2 --listen 127.0.0.1:0 --config-dir "$T/conf.d" --state-dir "$T/serve-state"
curl -sf -o "$T/qs2.json" "$URL/v1/pipelines/cli" || fail "GET /v1/pipelines/cli"
assert_eq "[]" "$(json_get "$T/qs2.json" 'j["warnings"]')" "warnings with every secret set"
serve_stop qs2 "$SRV_PID"
grep -qE '^[0-9-]+T[0-9:.]+Z engine: info: serve: listening on http://' "$T/qs2.err" ||
  { show "$T/qs2.err"; fail "serve's lifecycle lines carry no timestamp in a file"; }
if grep -vE '^[0-9-]+T[0-9:.]+Z engine: ' "$T/qs2.err" | grep -q .; then
  show "$T/qs2.err"
  fail "a line of serve's log without its timestamp and level"
fi

# ---- run --json: sinks that missed the snapshot ---------------------------------
echo "a file, not a directory" >"$T/usb-file"
write_pipeline "$T/m.yml" missed "$T/repo-m" "$T/src"
cat >>"$T/m.yml" <<YAML
  - name: usb
    type: local
    required: false
    with:
      path: $(yq "$T/usb-file")
YAML
run_engine "$T/m.json" "$T/m.err" run "$T/m.yml" --json
assert_rc 3 "run with an optional sink that cannot be used (partial: a sink missed it)" "$T/m.json" "$T/m.err"
assert_eq partial "$(json_get "$T/m.json" 'j["status"]')" "status"
assert_eq '["usb"]' "$(json_get "$T/m.json" 'j["sinks_missed"]')" "run --json names the missed sink"
assert_eq "[]" "$(json_get "$T/m.json" 'j["warnings"]')" "run --json's warnings"
note "PASS"
