#!/usr/bin/env bash
# engine status and what feeds it, from the command line: the newest
# complete snapshot against objectives.rpo (a snapshot dated 2 hours back is
# stale under a 1 h RPO, exit 4; a fresh one is not, exit 0), the last run's
# outcome (complete, partial, failed with its error) from the runs/ records,
# and from the local audit log for a run stopped before it opened the
# repository (a failing before hook),
# run --only snapshots (recorded, never the newest complete recovery point,
# never a parent, a retention group of their own, a glob that selects
# nothing fails), and the run lock: a
# second run of a pipeline whose first run is paused gives up after
# --lock-wait (outcome skipped), a third waits and then runs (lock_wait
# reported). Every fact is read by a fresh process from the repository.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/src/a" "$T/src/b"
echo alpha >"$T/src/a/x.txt"
echo beta >"$T/src/b/y.txt"
write_pipeline "$T/p.yml" stat "$T/repo" "$T/src"
printf 'objectives: {rpo: 1h, rto: 10m}\n' >>"$T/p.yml"

stop_pid() { kill -CONT "$1" 2>/dev/null || true; kill -KILL "$1" 2>/dev/null || true; }

status_json() { # OUT: engine status --json into OUT (exit status in RC)
  run_engine "$1" "$T/status.err" status "$T/p.yml" --json
}

# ---- no repository yet: an error, exit 1, and a JSON error per pipeline -------------
status_json "$T/st0.json"
assert_rc 1 "status without a repository" "$T/status.err"
assert_contains "$T/st0.json" '"error"' "the pipeline's error in the JSON"
# an unset env: secret: the message names the file once
(
  unset ENGINE_PASSPHRASE
  run_engine "$T/st0b.json" "$T/st0b.err" status "$T/p.yml" --json
  assert_rc 1 "status with the passphrase variable unset" "$T/st0b.err"
)
assert_contains "$T/st0b.err" "environment variable ENGINE_PASSPHRASE is not set" "the unset secret"
assert_not_contains "$T/st0b.err" "$T/p.yml: $T/p.yml:" "the message (the file named twice)"

# ---- a snapshot dated two hours ago: stale under a 1 h RPO ----------------------------
old=$(date -u -d '2 hours ago' +%Y-%m-%dT%H:%M:%SZ)
run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json --time "$old"
S1=$(json_get "$T/r1.json" 'j["snapshot"]')
status_json "$T/st1.json"
assert_rc 4 "status with only a 2 h old snapshot (RPO 1h)" "$T/st1.json" "$T/status.err"
assert_eq stale "$(json_get "$T/st1.json" 'j[0]["state"]')" "state"
assert_eq false "$(json_get "$T/st1.json" 'j[0]["rpo_met"]')" "rpo_met"
assert_eq "$S1" "$(json_get "$T/st1.json" 'j[0]["newest_complete_snapshot"]["id"]')" "newest complete"
assert_eq 3600 "$(json_get "$T/st1.json" 'j[0]["rpo_seconds"]')" "rpo_seconds"
assert_eq 600 "$(json_get "$T/st1.json" 'j[0]["rto_seconds"]')" "rto_seconds"
age=$(json_get "$T/st1.json" 'j[0]["recovery_point_age_seconds"]')
[ "$age" -ge 7190 ] && [ "$age" -le 7400 ] || fail "recovery point age $age, expected about 7200"
assert_eq complete "$(json_get "$T/st1.json" 'j[0]["last_run"]["outcome"]')" "last run outcome"
run_engine "$T/st1.txt" "$T/status.err" status "$T/p.yml"
assert_rc 4 "status (text)"
assert_contains "$T/st1.txt" "STALE" "the text names the stale recovery point"
assert_contains "$T/st1.txt" "NEEDS ATTENTION" "the text says the pipeline needs attention"

# ---- a fresh snapshot: within the RPO ---------------------------------------------------
run_ok "$T/r2.json" "$T/r2.err" run "$T/p.yml" --json
S2=$(json_get "$T/r2.json" 'j["snapshot"]')
status_json "$T/st2.json"
assert_rc 0 "status after a fresh run" "$T/st2.json" "$T/status.err"
assert_eq ok "$(json_get "$T/st2.json" 'j[0]["state"]')" "state"
assert_eq true "$(json_get "$T/st2.json" 'j[0]["rpo_met"]')" "rpo_met"
assert_eq "$S2" "$(json_get "$T/st2.json" 'j[0]["newest_complete_snapshot"]["id"]')" "newest complete"
assert_eq "$S2" "$(json_get "$T/st2.json" 'j[0]["last_run"]["snapshot"]')" "last run's snapshot"
assert_eq 0 "$(json_get "$T/st2.json" 'j[0]["last_run"]["exit_code"]')" "last run's exit code"
json_get "$T/st2.json" 'j[0]["last_success"]' | grep -qE '^[0-9]{4}-' || fail "last_success is not a time"

# ---- a partial run, then a failed one: the outcome and the error are recorded ---------
# the same pipeline with a path that does not exist: partial (exit 3)
write_pipeline "$T/p-partial.yml" stat "$T/repo" "$T/src" "$T/does-not-exist"
run_engine "$T/r3.json" "$T/r3.err" run "$T/p-partial.yml" --json
assert_rc 3 "a run with a missing path" "$T/r3.err"
S3=$(json_get "$T/r3.json" 'j["snapshot"]')
status_json "$T/st3.json"
assert_eq partial "$(json_get "$T/st3.json" 'j[0]["last_run"]["outcome"]')" "outcome of the partial run"
assert_eq 3 "$(json_get "$T/st3.json" 'j[0]["last_run"]["exit_code"]')" "exit code of the partial run"
assert_eq "$S3" "$(json_get "$T/st3.json" 'j[0]["newest_snapshot"]["id"]')" "newest snapshot"
assert_eq "$S2" "$(json_get "$T/st3.json" 'j[0]["newest_complete_snapshot"]["id"]')" \
  "a partial snapshot is not a complete recovery point"

# every source fails as a whole: the source path no longer exists
mv "$T/src" "$T/src.away"
run_engine "$T/r4.json" "$T/r4.err" run "$T/p.yml" --json
assert_rc 1 "a run whose only source fails" "$T/r4.err"
mv "$T/src.away" "$T/src"
status_json "$T/st4.json"
assert_eq failed "$(json_get "$T/st4.json" 'j[0]["last_run"]["outcome"]')" "outcome of the failed run"
assert_eq 1 "$(json_get "$T/st4.json" 'j[0]["last_run"]["exit_code"]')" "exit code of the failed run"
json_get "$T/st4.json" 'j[0]["last_run"]["error"]' >"$T/err4"
assert_contains "$T/err4" "every source failed" "the failed run's error"
assert_eq None "$(json_get "$T/st4.json" 'j[0]["last_run"]["snapshot"]')" "no snapshot for the failed run"
# the recovery point is still the last good one
assert_eq "$S2" "$(json_get "$T/st4.json" 'j[0]["newest_complete_snapshot"]["id"]')" \
  "newest complete after a failed run"
[ "$(ls "$T/repo/runs" | wc -l)" -ge 4 ] || fail "expected a runs/ object per run"

# ---- a run that never reaches the repository (its before hook fails) ------------------
# only the local audit log has it; status must not show the last good run
# as the last run (a hook failing every night would go unnoticed)
cp "$T/p.yml" "$T/p-hook.yml"
printf 'hooks:\n  before: ["echo app-cannot-go-read-only; exit 4"]\n' >>"$T/p-hook.yml"
runs_before=$(ls "$T/repo/runs" | wc -l)
failed_before=$(json_get "$T/st4.json" 'j[0]["runs_last_24h"]["failed"]')
run_engine "$T/rh.json" "$T/rh.err" run "$T/p-hook.yml" --json
assert_rc 1 "a run whose before hook fails" "$T/rh.err"
assert_eq "$runs_before" "$(ls "$T/repo/runs" | wc -l)" "runs/ objects after a run that never opened the repository"
status_json "$T/sth.json"
assert_eq failed "$(json_get "$T/sth.json" 'j[0]["last_run"]["outcome"]')" "outcome of the run stopped by its before hook"
assert_eq 1 "$(json_get "$T/sth.json" 'j[0]["last_run"]["exit_code"]')" "its exit code"
assert_eq "local audit log" "$(json_get "$T/sth.json" 'j[0]["last_run"]["recorded"]')" "where it was found"
json_get "$T/sth.json" 'j[0]["last_run"]["error"]' >"$T/errh"
assert_contains "$T/errh" "app-cannot-go-read-only" "the hook's failure as the last run's error"
assert_eq $((failed_before + 1)) "$(json_get "$T/sth.json" 'j[0]["runs_last_24h"]["failed"]')" "failed runs of the last 24 h"
run_engine "$T/sth.txt" "$T/status.err" status "$T/p.yml"
assert_contains "$T/sth.txt" "failed (exit 1): hooks.before[0]" "the text names the failed run"
# another host (another audit log) sees only what the repository recorded
ENGINE_AUDIT_LOG="$T/other-host.log" run_engine "$T/sto.json" "$T/status.err" status "$T/p.yml" --json
assert_eq failed "$(json_get "$T/sto.json" 'j[0]["last_run"]["outcome"]')" "last run without the local log (the repository's)"
assert_eq None "$(json_get "$T/sto.json" 'j[0]["last_run"].get("recorded")')" "the repository's record"

# ---- run --only: a snapshot of a selection --------------------------------------------
run_ok "$T/r5.json" "$T/r5.err" run "$T/p.yml" --json --only "files${T}/src/b"
S5=$(json_get "$T/r5.json" 'j["snapshot"]')
assert_eq "[\"files${T}/src/b\"]" "$(json_get "$T/r5.json" 'j["only"]')" "run --json names the selection"
run_ok "$T/show5.json" "$T/e" show "$T/p.yml" "$S5" --json
assert_eq "[\"files${T}/src/b\"]" "$(json_get "$T/show5.json" 'j["only"]')" "the manifest records the selection"
run_ok "$T/ls5" "$T/e" restore "$T/p.yml" "$S5" --dry-run --json
grep -q "src/b/y.txt" "$T/ls5" || { show "$T/ls5"; fail "the selected file is not in the --only snapshot"; }
grep -q "x.txt" "$T/ls5" && fail "a file outside the selection is in the --only snapshot"
status_json "$T/st5.json"
assert_eq "$S2" "$(json_get "$T/st5.json" 'j[0]["newest_complete_snapshot"]["id"]')" \
  "an --only snapshot is not the newest complete recovery point"
assert_eq "$S5" "$(json_get "$T/st5.json" 'j[0]["newest_only_snapshot"]["id"]')" "newest --only snapshot"
assert_eq 1 "$(json_get "$T/st5.json" 'j[0]["only_snapshots"]')" "count of --only snapshots"
# the next full run does not take it as its parent
run_ok "$T/r6.json" "$T/r6.err" run "$T/p.yml" --json
S6=$(json_get "$T/r6.json" 'j["snapshot"]')
run_ok "$T/show6.json" "$T/e" show "$T/p.yml" "$S6" --json
parent=$(json_get "$T/show6.json" 'j["parent"]')
[ "$parent" != "$S5" ] || fail "the full run took the --only snapshot as its parent"
assert_eq "$S3" "$parent" "the full run's parent (the newest full snapshot: the partial one)"
# retention groups an --only selection apart: keep_last 1 keeps the newest
# full snapshot and the newest of the selection
cp "$T/p.yml" "$T/p-keep.yml"
printf 'retention: {keep_last: 1}\n' >>"$T/p-keep.yml"
run_ok "$T/f.json" "$T/f.err" forget "$T/p-keep.yml" --dry-run --json
assert_eq "[\"$S6\"]" "$(json_get "$T/f.json" '[k["id"] for g in j["groups"] if "only" not in g for k in g["keep"]]')" \
  "kept of the full snapshots"
assert_eq "[\"$S5\"]" "$(json_get "$T/f.json" '[k["id"] for g in j["groups"] if g.get("only") == ["files'"$T"'/src/b"] for k in g["keep"]]')" \
  "kept of the --only selection (a group of its own)"
# a selection that matches nothing fails and writes nothing
before=$(ls "$T/repo/snapshots" | wc -l)
run_engine "$T/r7.json" "$T/r7.err" run "$T/p.yml" --only "files/no/such/*"
assert_rc 1 "an --only glob that selects nothing" "$T/r7.err"
assert_contains "$T/r7.err" "no item of source 'files' matches 'no/such/*'" "the error names the glob"
run_engine "$T/r8.json" "$T/r8.err" run "$T/p.yml" --only "nosuch"
assert_rc 1 "an --only naming no source" "$T/r8.err"
assert_contains "$T/r8.err" "no source named 'nosuch' (its sources: files)" "the error lists the sources"
assert_eq "$before" "$(ls "$T/repo/snapshots" | wc -l)" "snapshots after the refused selections"

# ---- the run lock: runs of one pipeline never overlap on a host -------------------------
random_file "$T/src/big.bin" 96
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/p.yml" --json >"$T/ra.json" 2>"$T/ra.err" </dev/null &
RA=$!
at_exit stop_pid "$RA"
# pause it once it holds the repository lock (a lock naming the pipeline):
# it runs in slices of 20 ms until its lock is there
kill -STOP "$RA"
for _ in $(seq 1 3000); do
  [ -n "$(ls "$T/repo/locks" 2>/dev/null | grep -v tmp)" ] && break
  kill -0 "$RA" 2>/dev/null || fail "the first run ended before it was seen holding its lock"
  kill -CONT "$RA"
  sleep 0.02
  kill -STOP "$RA"
done
[ -n "$(ls "$T/repo/locks" | grep -v tmp)" ] || fail "the first run took no lock"
# a second run gives up after --lock-wait: skipped
run_engine "$T/rb.json" "$T/rb.err" run "$T/p.yml" --json --lock-wait 2s --metrics-file "$T/m.prom"
assert_rc 1 "a run while another run of the pipeline is paused (--lock-wait 2s)" "$T/rb.err"
assert_contains "$T/rb.err" "another backup of this pipeline is running on this host" "the refusal"
assert_contains "$T/rb.err" "(a backup of pipeline 'stat')" "the refusal names the other run"
status_json "$T/stb.json"
assert_eq skipped "$(json_get "$T/stb.json" 'j[0]["last_run"]["outcome"]')" "outcome of the run that gave up"
grep -q '^engine_runs_skipped_total{pipeline="stat"} 1$' "$T/m.prom" ||
  { show "$T/m.prom"; fail "the metrics file does not count the skipped run"; }
# a third run waits for the first (no --lock-wait: as long as it takes)
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/p.yml" --json --metrics-file "$T/m.prom" \
  >"$T/rc.json" 2>"$T/rc.err" </dev/null &
RC3=$!
at_exit stop_pid "$RC3"
sleep 3
kill -0 "$RC3" 2>/dev/null || { show "$T/rc.err"; fail "the third run did not wait for the first"; }
assert_contains "$T/rc.err" "(a backup of pipeline 'stat') to finish" "the waiting run says what it waits for"
kill -CONT "$RA"
wait "$RA" || fail "the first run failed after it was resumed"
rc=0
wait "$RC3" || rc=$?
[ "$rc" -eq 0 ] || { show "$T/rc.err"; fail "the waiting run exited with $rc"; }
waited=$(json_get "$T/rc.json" 'j["lock_wait_seconds"]')
"$PYTHON" -c "import sys; sys.exit(0 if float('$waited') >= 2.5 else 1)" ||
  fail "the waiting run reports lock_wait_seconds $waited, expected at least 2.5"
grep -q '^engine_runs_waited_total{pipeline="stat"} 1$' "$T/m.prom" ||
  { show "$T/m.prom"; fail "the metrics file does not count the run that waited"; }
grep -q '^engine_runs_skipped_total{pipeline="stat"} 1$' "$T/m.prom" ||
  fail "the skipped count was not carried forward"
note "status, run outcomes, --only snapshots and the run lock behave"
