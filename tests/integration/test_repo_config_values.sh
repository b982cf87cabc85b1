#!/usr/bin/env bash
# The repository's config object holds sizes (chunker min/avg/max,
# pack_size). A value that is negative, not an integer or missing is
# reported as written, with what is expected: `pack_size: -5` used to be
# reported as 18446744073709551611 (and chunker.min -1 as 4294967295).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src"
echo hello >"$src/hello.txt"
write_pipeline "$T/p.yml" cfgvalues "$T/repo" "$src"
run_ok "$T/run.out" "$T/run.err" run "$T/p.yml"
cp "$T/repo/config" "$T/config.good"

# case NAME PYTHON-STATEMENT-ON-c EXPECTED-MESSAGE
case_() {
  local name=$1 stmt=$2 expected=$3
  "$PYTHON" - "$T/config.good" "$T/repo/config" "$stmt" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[3])
open(sys.argv[2], "w").write(json.dumps(c, indent=2, sort_keys=True))
PY
  run_engine "$T/$name.out" "$T/$name.err" snapshots "$T/p.yml"
  assert_rc 1 "snapshots with $name in config" "$T/$name.out" "$T/$name.err"
  assert_contains "$T/$name.err" "$expected" "the error for $name in config"
  assert_not_contains "$T/$name.err" "18446744073709" "the error for $name in config"
  note "ok: $(cat "$T/$name.err")"
}
range="expected a whole number of bytes from 1048576 to 1073741824"
case_ negative-pack-size "c['pack_size'] = -5" "pack_size in config is -5; $range"
case_ string-pack-size "c['pack_size'] = '16MiB'" "pack_size in config is \"16MiB\"; $range"
case_ fractional-pack-size "c['pack_size'] = 1.5" "pack_size in config is 1.5; $range"
case_ missing-pack-size "del c['pack_size']" "pack_size in config is missing; $range"
case_ small-pack-size "c['pack_size'] = 1000" "pack_size in config is 1000; $range"
case_ negative-chunk-min "c['chunker']['min'] = -1" \
  "chunker.min in config is -1; expected a whole number of bytes from 1 to 4294967295"
case_ huge-chunk-max "c['chunker']['max'] = 2**40" \
  "chunker.max in config is 1099511627776; expected a whole number of bytes from 1 to 4294967295"

cp "$T/config.good" "$T/repo/config"
run_ok "$T/ok.out" "$T/ok.err" snapshots "$T/p.yml"
assert_contains "$T/ok.out" "1 snapshot(s)" "snapshots with the config restored"
note "PASS"
