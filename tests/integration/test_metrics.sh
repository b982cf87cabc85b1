#!/usr/bin/env bash
# Prometheus metrics, checked with promtool (Debian's prometheus package):
# engine run --metrics-file writes the pipeline's series atomically (a new
# inode each time, no temporary file left) after every run, failed ones
# included: engine_last_success_timestamp_seconds and
# engine_newest_snapshot_timestamp_seconds are the newest complete
# snapshot's end and start, and they survive a failed run and a run whose
# repository cannot be opened (carried over from the previous file), as do
# the counters; the last verification and restore test appear once there is
# one. engine serve's /metrics has the same status series with the same
# values, read from the repository.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v promtool >/dev/null 2>&1 || fail "promtool is required (Debian package prometheus)"
command -v curl >/dev/null 2>&1 || fail "curl is required"

mkdir -p "$T/conf" "$T/src"
echo one >"$T/src/one.txt"
write_pipeline "$T/conf/m.yml" metered "$T/repo" "$T/src"
printf 'objectives: {rpo: 1h, rto: 2h}\n' >>"$T/conf/m.yml"
P=$T/conf/m.yml
M=$T/textfile/engine-metered.prom
mkdir -p "$T/textfile"

promcheck() { # FILE WHAT
  if ! promtool check metrics <"$1" >"$T/promtool.out" 2>&1; then
    show "$1" "$T/promtool.out"
    fail "promtool check metrics: $2"
  fi
}
val() { # FILE SERIES: its value, or nothing
  awk -v k="$2" 'index($0, k" ") == 1 { print $NF }' "$1"
}
iso_to_unix() { date -u -d "$1" +%s; }

# ---- a complete run ---------------------------------------------------------------------
run_ok "$T/r1.json" "$T/r1.err" run "$P" --json --metrics-file "$M"
promcheck "$M" "the textfile after a complete run"
S1=$(json_get "$T/r1.json" 'j["snapshot"]')
run_ok "$T/show1.json" "$T/e" show "$P" "$S1" --json
t1=$(iso_to_unix "$(json_get "$T/show1.json" 'j["time"]')")
e1=$(iso_to_unix "$(json_get "$T/show1.json" 'j["time_end"]')")
assert_eq "$t1" "$(val "$M" 'engine_newest_snapshot_timestamp_seconds{pipeline="metered"}')" "newest snapshot time"
assert_eq "$e1" "$(val "$M" 'engine_last_success_timestamp_seconds{pipeline="metered"}')" "last success"
assert_eq 3600 "$(val "$M" 'engine_rpo_seconds{pipeline="metered"}')" "engine_rpo_seconds"
assert_eq 7200 "$(val "$M" 'engine_rto_seconds{pipeline="metered"}')" "engine_rto_seconds"
assert_eq 0 "$(val "$M" 'engine_last_run_exit_code{pipeline="metered"}')" "last exit code"
assert_eq 1 "$(val "$M" 'engine_runs_total{pipeline="metered",result="succeeded"}')" "runs succeeded"
[ -z "$(val "$M" 'engine_last_verify_success{pipeline="metered"}')" ] || fail "a verification before any check"
ino1=$(stat -c %i "$M")

# ---- a verification, then another run -------------------------------------------------------
run_ok "$T/c.json" "$T/c.err" check "$P" --restore-test --json
sleep 1.1 # the next snapshot starts in a later second
echo two >"$T/src/two.txt"
run_ok "$T/r2.json" "$T/r2.err" run "$P" --json --metrics-file "$M"
promcheck "$M" "the textfile after a check and a second run"
S2=$(json_get "$T/r2.json" 'j["snapshot"]')
run_ok "$T/show2.json" "$T/e" show "$P" "$S2" --json
t2=$(iso_to_unix "$(json_get "$T/show2.json" 'j["time"]')")
e2=$(iso_to_unix "$(json_get "$T/show2.json" 'j["time_end"]')")
assert_eq "$t2" "$(val "$M" 'engine_newest_snapshot_timestamp_seconds{pipeline="metered"}')" "newest snapshot time"
assert_eq 2 "$(val "$M" 'engine_runs_total{pipeline="metered",result="succeeded"}')" "the counter carried forward"
assert_eq 1 "$(val "$M" 'engine_last_verify_success{pipeline="metered"}')" "last verification"
assert_eq 0 "$(val "$M" 'engine_last_verify_problems{pipeline="metered"}')" "last verification's problems"
rs=$(val "$M" 'engine_restore_test_duration_seconds{pipeline="metered"}')
want=$(json_get "$T/c.json" 'j["restore_seconds"]')
"$PYTHON" -c "import sys; sys.exit(0 if abs(float('$rs') - float('$want')) < 1e-6 and float('$rs') > 0 else 1)" ||
  fail "engine_restore_test_duration_seconds $rs, the check measured $want"
ino2=$(stat -c %i "$M")
[ "$ino1" != "$ino2" ] || fail "the textfile was rewritten in place (same inode), not replaced"
[ -z "$(ls "$T/textfile" | grep -v '^engine-metered.prom$')" ] || fail "leftovers next to the textfile: $(ls "$T/textfile")"

# ---- a failed run: the last success stays ------------------------------------------------------
mv "$T/src" "$T/src.away"
run_engine "$T/r3.json" "$T/r3.err" run "$P" --json --metrics-file "$M"
assert_rc 1 "a run whose source is gone" "$T/r3.err"
mv "$T/src.away" "$T/src"
promcheck "$M" "the textfile after a failed run"
assert_eq 1 "$(val "$M" 'engine_last_run_exit_code{pipeline="metered"}')" "last exit code after the failure"
assert_eq 1 "$(val "$M" 'engine_runs_total{pipeline="metered",result="failed"}')" "runs failed"
assert_eq 2 "$(val "$M" 'engine_runs_total{pipeline="metered",result="succeeded"}')" "runs succeeded"
assert_eq "$e2" "$(val "$M" 'engine_last_success_timestamp_seconds{pipeline="metered"}')" \
  "last success after a failed run"

# ---- the repository cannot even be opened: the status series are carried over ----------------
mv "$T/repo" "$T/repo.away"
echo "not a repository" >"$T/repo"
run_engine "$T/r4.json" "$T/r4.err" run "$P" --json --metrics-file "$M"
assert_rc 1 "a run whose repository cannot be opened" "$T/r4.err"
rm "$T/repo"
mv "$T/repo.away" "$T/repo"
promcheck "$M" "the textfile after a run without a repository"
assert_eq 2 "$(val "$M" 'engine_runs_total{pipeline="metered",result="failed"}')" "runs failed"
assert_eq "$e2" "$(val "$M" 'engine_last_success_timestamp_seconds{pipeline="metered"}')" \
  "last success carried over"
assert_eq "$t2" "$(val "$M" 'engine_newest_snapshot_timestamp_seconds{pipeline="metered"}')" \
  "newest snapshot carried over"
assert_eq 1 "$(val "$M" 'engine_last_verify_success{pipeline="metered"}')" "last verification carried over"

# ---- engine serve: the same series from the repository -----------------------------------------
serve_start srv --listen 127.0.0.1:0 --config-dir "$T/conf" --state-dir "$T/serve-state"
SRV=$SRV_PID
for _ in $(seq 1 100); do
  curl -s "$URL/v1/pipelines/metered" >"$T/p.json" || true
  [ "$(json_get "$T/p.json" 'j["status"]["status_read_at"] is not None')" = true ] && break
  sleep 0.2
done
[ "$(json_get "$T/p.json" 'j["status"]["status_read_at"] is not None')" = true ] ||
  { show "$T/p.json" "$T/srv.err"; fail "engine serve did not read the pipeline's status"; }
curl -s -o "$T/metrics" "$URL/metrics"
promcheck "$T/metrics" "engine serve's /metrics"
for series in engine_newest_snapshot_timestamp_seconds engine_last_success_timestamp_seconds \
  engine_rpo_seconds engine_rto_seconds engine_last_verify_success engine_restore_test_duration_seconds; do
  assert_eq "$(val "$M" "$series{pipeline=\"metered\"}")" "$(val "$T/metrics" "$series{pipeline=\"metered\"}")" \
    "$series in /metrics and in the textfile"
done
assert_eq 0 "$(val "$T/metrics" 'engine_stale{pipeline="metered"}')" "engine_stale"
age=$(val "$T/metrics" 'engine_recovery_point_age_seconds{pipeline="metered"}')
"$PYTHON" -c "import sys,time; sys.exit(0 if abs(float('$age') - (time.time() - $t2)) < 30 else 1)" ||
  fail "engine_recovery_point_age_seconds $age"
# the last run as the repository recorded it (this server ran nothing)
assert_eq 1 "$(val "$T/metrics" 'engine_last_run_exit_code{pipeline="metered"}')" "last run exit code from the repository"
serve_stop srv "$SRV"
note "textfile and /metrics carry the objectives, the last success and the last verification"
