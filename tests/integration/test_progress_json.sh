#!/usr/bin/env bash
# Machine- and human-facing output: --progress always draws a progress line
# on stderr (and never/auto without a terminal draw none), run --json has
# the documented keys and types, plugins/snapshots/show --json parse,
# --version and `help restore` work.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src"
for i in 1 2 3 4; do random_file "$src/random-$i" 25; done
write_pipeline "$T/p.yml" progress "$T/repo" "$src"

run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json --progress always
# A progress line: "<n> <unit> ... items, <n> <unit> new, <rate>/s ..."
if ! tr '\r' '\n' <"$T/run.err" | grep -qE '[0-9.]+ (B|KiB|MiB|GiB).*[0-9]+ items, .* new, .*/s'; then
  show "$T/run.err"
  fail "--progress always wrote no progress line to stderr"
fi
"$PYTHON" - "$T/run.json" <<'EOF2' || { show "$T/run.json"; fail "run --json output does not match the documented summary"; }
import json, sys
j = json.load(open(sys.argv[1]))  # stdout must be pure JSON even with --progress
want = {"snapshot": str, "status": str, "items": int, "bytes_read": int, "chunks": int,
        "new_chunks": int, "new_bytes": int, "stored_bytes": int, "packs": int,
        "duration_seconds": (int, float), "bytes_per_second": (int, float), "warnings": list}
missing = [k for k in want if k not in j]
assert not missing, "missing keys: %s" % missing
bad = [k for k, t in want.items() if not isinstance(j[k], t) or isinstance(j[k], bool)]
assert not bad, "keys of the wrong type: %s" % bad
assert j["status"] == "complete", j["status"]
assert j["bytes_read"] == 100 * 1024 * 1024, j["bytes_read"]
assert j["items"] >= 5, j["items"]
assert j["new_bytes"] == j["bytes_read"], (j["new_bytes"], j["bytes_read"])
assert j["packs"] >= 1 and j["chunks"] >= j["new_chunks"] >= 1
assert j["stored_bytes"] >= j["bytes_read"], "random data cannot shrink"
assert len(j["snapshot"]) >= 8
EOF2
snap=$(json_get "$T/run.json" 'j["snapshot"]')

for mode in never auto; do
  run_ok "$T/run-$mode.out" "$T/run-$mode.err" run "$T/p.yml" --progress "$mode"
  if grep -q $'\r' "$T/run-$mode.err"; then
    show "$T/run-$mode.err"
    fail "--progress $mode without a terminal drew a progress line"
  fi
  assert_contains "$T/run-$mode.out" "saved" "human-readable run summary (--progress $mode)"
done

run_engine "$T/badprog.out" "$T/badprog.err" run "$T/p.yml" --progress sometimes
assert_rc 2 "--progress with an invalid value" "$T/badprog.out" "$T/badprog.err"

# ---- plugins --json ----
run_ok "$T/plugins.json" "$T/plugins.err" plugins --json
"$PYTHON" - "$T/plugins.json" <<'EOF2' || { show "$T/plugins.json"; fail "plugins --json does not list files, local and aes-256-gcm"; }
import json, sys
j = json.load(open(sys.argv[1]))
assert isinstance(j, list)
by = {(p.get("kind"), p.get("name")): p for p in j if p.get("name")}
for kind, name in (("source", "files"), ("sink", "local"), ("crypto", "aes-256-gcm")):
    p = by.get((kind, name))
    assert p is not None, "no %s plugin %s in %s" % (kind, name, sorted(by))
    assert p.get("error") is None, p
    assert p.get("version"), p
    assert isinstance(p.get("options", []), list)
names = {o["name"] for o in by[("source", "files")]["options"]}
assert "paths" in names, names
names = {o["name"] for o in by[("sink", "local")]["options"]}
assert "path" in names, names
EOF2
run_ok "$T/plugins.txt" "$T/plugins.err2" plugins
assert_contains "$T/plugins.txt" "aes-256-gcm" "plugins (text)"

# ---- --version, help ----
run_ok "$T/version.out" "$T/version.err" --version
grep -qE '^engine [0-9]+\.[0-9]+\.[0-9]+' "$T/version.out" || { show "$T/version.out"; fail "--version output"; }
run_ok "$T/help.out" "$T/help.err" help restore
assert_contains "$T/help.out" "engine restore" "help restore: usage line"
assert_contains "$T/help.out" "--target" "help restore: --target"
assert_contains "$T/help.out" "--yes" "help restore: --yes"
run_engine "$T/help2.out" "$T/help2.err" help no-such-command
assert_rc 2 "help of an unknown command" "$T/help2.out" "$T/help2.err"
run_engine "$T/usage.out" "$T/usage.err" frobnicate
assert_rc 2 "an unknown command" "$T/usage.out" "$T/usage.err"
run_engine "$T/usage2.out" "$T/usage2.err" run
assert_rc 2 "run without a pipeline" "$T/usage2.out" "$T/usage2.err"

# ---- snapshots / show --json ----
run_ok "$T/snaps.json" "$T/snaps.err" snapshots "$T/p.yml" --json
"$PYTHON" - "$T/snaps.json" "$snap" <<'EOF2' || { show "$T/snaps.json"; fail "snapshots --json"; }
import json, sys
j = json.load(open(sys.argv[1]))
assert isinstance(j, list) and len(j) == 3, "expected 3 snapshots, got %r" % (j,)
for s in j:
    for k in ("id", "time", "hostname", "status", "items", "bytes_read", "sources"):
        assert k in s, "snapshot without %s: %r" % (k, s)
assert j[0]["id"] == sys.argv[2], "oldest first: %s != %s" % (j[0]["id"], sys.argv[2])
assert all(s["status"] == "complete" for s in j)
assert j[0]["sources"] == ["files"], j[0]["sources"]
EOF2
run_ok "$T/show.json" "$T/show.err" show "$T/p.yml" latest --json
"$PYTHON" - "$T/show.json" <<'EOF2' || { show "$T/show.json"; fail "show latest --json"; }
import json, sys
j = json.load(open(sys.argv[1]))
assert isinstance(j, dict)
assert j["status"] == "complete" and j["id"]
assert [s["name"] for s in j["sources"]] == ["files"]
EOF2
run_ok "$T/show1.json" "$T/show1.err" show "$T/p.yml" "${snap:0:8}" --json
assert_eq "$snap" "$(json_get "$T/show1.json" 'j["id"]')" "show by id prefix"
run_engine "$T/show2.out" "$T/show2.err" show "$T/p.yml" ffffffffffff
assert_rc 1 "show of an unknown snapshot" "$T/show2.out" "$T/show2.err"
note "PASS"
