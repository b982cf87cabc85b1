#!/usr/bin/env bash
# engine serve as an operator uses it (issue 17): curl against the API, a
# loopback webhook receiver, promtool on /metrics.
#  - one scheduler per config directory: a second server refuses to start
#  - jobs: runs of a selection (--only), checks with a restore test, forgetting
#    one snapshot, cancelling a paused job, a hung job stopped by
#    limits.timeout, a killed job; the job history and the pipeline's status
#    survive restarts (and a job running when the server was killed is failed
#    on the next start)
#  - snapshots: one snapshot's manifest, a listing across pipelines with
#    filters, the /api/v1/system/backups aliases
#  - schedules paused over the API stay paused across a restart and do not run
#  - restores: off by default (403); with --allow-restore they need the restore
#    token, never overwrite unless asked, and leave a history
#  - the recovery-point watch: stale once per episode (not again after a
#    restart), recovered after a new backup, daily_summary at its time
#  - a CLI run (a timer's) and a serve job of one pipeline wait for each other,
#    and the metrics say so
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

command -v curl >/dev/null 2>&1 || fail "curl is required"
command -v promtool >/dev/null 2>&1 || fail "promtool is required (Debian package prometheus)"

CHILD_PIDS=()
_cleanup_children() {
  local p
  for p in "${CHILD_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  _serve_kill_all
  for p in "${CHILD_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
at_exit _cleanup_children

JSON=(-H 'Content-Type: application/json')
req() { # METHOD PATH [CURL ARGS...]: body in $T/body, status in $CODE
  local method=$1 path=$2
  shift 2
  CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X "$method" "$@" "$URL$path") || CODE=000
}
expect() { # CODE WHAT
  if [ "$CODE" != "$1" ]; then
    show "$T/body"
    fail "$2: HTTP $CODE, expected $1"
  fi
}
jq_body() { json_get "$T/body" "$1"; }
# wait_job ID [SECONDS]: until the job is neither queued nor running; its
# document in $T/job-ID.json
wait_job() {
  local id=$1 limit=${2:-300} i state
  for ((i = 0; i < limit * 5; i++)); do
    curl -s -o "$T/job-$id.json" "$URL/v1/jobs/$id" || true
    state=$(json_get "$T/job-$id.json" 'j.get("state")')
    case "$state" in queued | running) sleep 0.2 ;; *) return 0 ;; esac
  done
  show "$T/job-$id.json"
  fail "job $id did not finish within $limit s"
}
start_job() { # PATH BODY WHAT: POST, expect 202; JOB and JPID set
  req POST "$1" "${JSON[@]}" -d "$2"
  expect 202 "$3"
  JOB=$(jq_body 'j["job"]')
  JPID=$(jq_body 'j["pid"]')
}
metric() { # SERIES: its value in /metrics
  curl -s -o "$T/metrics" "$URL/metrics"
  awk -v k="$1" 'index($0, k" ") == 1 { print $NF }' "$T/metrics"
}
hooks_of() { # EVENT PIPELINE: how many webhook calls
  "$PYTHON" - "$T/hooks.jsonl" "$1" "$2" <<'EOF'
import json, sys
n = 0
try:
    for line in open(sys.argv[1]):
        b = json.loads(line)
        n += b.get("event") == sys.argv[2] and b.get("pipeline") == sys.argv[3]
except FileNotFoundError:
    pass
print(n)
EOF
}
wait_hooks() { # EVENT PIPELINE COUNT SECONDS
  local i
  for ((i = 0; i < $4 * 5; i++)); do
    [ "$(hooks_of "$1" "$2")" -ge "$3" ] && return 0
    sleep 0.2
  done
  show "$T/hooks.jsonl" "$T/$SRV_NAME.err"
  fail "no $3 '$1' notification(s) of $2 within $4 s"
}
start_srv() { # NAME ARGS...
  SRV_NAME=$1
  serve_start "$@"
  SRV=$SRV_PID
}

# ---- a webhook receiver on loopback --------------------------------------------------------
HOOK_PORT=$(free_port)
"$PYTHON" - "$HOOK_PORT" "$T/hooks.jsonl" >"$T/receiver.log" 2>&1 <<'EOF' &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
RECEIVER=$!
at_exit kill "$RECEIVER"
for _ in $(seq 50); do curl -s -o /dev/null -X POST "http://127.0.0.1:$HOOK_PORT/" -d '{}' && break; sleep 0.1; done
rm -f "$T/hooks.jsonl"

# ---- the config directory ----------------------------------------------------------------------
mkdir -p "$T/conf" "$T/src-alpha/a" "$T/src-alpha/b" "$T/src-beta" "$T/src-delta"
echo "alpha a" >"$T/src-alpha/a/one.txt"
echo "alpha b" >"$T/src-alpha/b/two.txt"
echo beta >"$T/src-beta/b.txt"
write_pipeline "$T/conf/alpha.yml" alpha "$T/repo-alpha" "$T/src-alpha"
# slow: each run first waits for its before hook (a job that stays running)
write_pipeline "$T/conf/slow.yml" slow "$T/repo-slow" "$T/src-beta"
printf 'limits: {timeout: 8s}\nhooks: {before: ["sleep 120"]}\n' >>"$T/conf/slow.yml"
write_pipeline "$T/conf/beta.yml" beta "$T/repo-beta" "$T/src-beta"
cat >>"$T/conf/beta.yml" <<EOF
objectives: {rpo: 15s}
notify:
  - {webhook: "http://127.0.0.1:$HOOK_PORT/hook", on: [stale, recovered, daily_summary]}
EOF
write_pipeline "$T/conf/gamma.yml" gamma "$T/repo-gamma" "$T/src-beta"
sed -i '2a schedule: "* * * * *"' "$T/conf/gamma.yml"
write_pipeline "$T/conf/delta.yml" delta "$T/repo-delta" "$T/src-delta"
ST=$T/state
# start just after a minute began: gamma's schedule is paused long before the
# next minute (the minute a server starts in is never run)
while [ "$((10#$(date +%S)))" -gt 3 ]; do sleep 0.5; done
SUMMARY=$(date -d '+1 minute' +%H:%M)
t0=$(date +%s)

start_srv s1 --listen 127.0.0.1:0 --config-dir "$T/conf" --state-dir "$ST" --daily-summary "$SUMMARY"
S1_PID=$SRV
req PUT /v1/pipelines/gamma/schedule "${JSON[@]}" -d '{"enabled": false}'
expect 200 "pause gamma's schedule"
assert_eq false "$(jq_body 'j["enabled"]')" "enabled"
assert_eq None "$(jq_body 'j["next_run"]')" "next_run while paused"

# ---- one scheduler per config directory -----------------------------------------------------
run_engine "$T/o2" "$T/e2" serve --listen 127.0.0.1:0 --config-dir "$T/conf" --state-dir "$T/state2"
assert_rc 1 "a second engine serve on the same config directory" "$T/e2"
assert_contains "$T/e2" "already schedules the pipelines of" "the refusal says why"
req GET /v1/status
expect 200 "the first server after the second one was refused"
assert_eq active "$(jq_body 'j["scheduler"]')" "scheduler"
assert_eq false "$(jq_body 'j["restores_enabled"]')" "restores are off by default"

# ---- jobs: a selection, then everything -----------------------------------------------------
start_job /v1/pipelines/alpha/run "{\"only\": [\"files${T}/src-alpha/b\"]}" "run of a selection"
wait_job "$JOB"
assert_eq succeeded "$(json_get "$T/job-$JOB.json" 'j["state"]')" "the selection's job"
ONLY_SNAP=$(json_get "$T/job-$JOB.json" 'j["summary"]["snapshot"]')
assert_eq "[\"files${T}/src-alpha/b\"]" "$(json_get "$T/job-$JOB.json" 'j["request"]["only"]')" "the job's request"
start_job /v1/pipelines/alpha/run '{}' "a full run"
wait_job "$JOB"
FULL_SNAP=$(json_get "$T/job-$JOB.json" 'j["summary"]["snapshot"]')
FIRST_JOBS=$JOB
req POST /v1/pipelines/alpha/run "${JSON[@]}" -d '{"only": "files"}'
expect 400 "'only' that is not a list"
req POST /v1/pipelines/alpha/run "${JSON[@]}" -d '{"onyl": []}'
expect 400 "an unknown key in the body"
assert_contains "$T/body" "unknown key 'onyl'" "the 400 names the key"

# ---- one snapshot, and snapshots across pipelines ----------------------------------------------
req GET "/v1/pipelines/alpha/snapshots/$FULL_SNAP"
expect 200 "GET one snapshot"
assert_eq "$FULL_SNAP" "$(jq_body 'j["id"]')" "the manifest's id"
assert_eq alpha "$(jq_body 'j["pipeline"]')" "the manifest's pipeline"
req GET "/v1/pipelines/alpha/snapshots/${FULL_SNAP:0:12}"
expect 200 "GET one snapshot by a prefix"
req GET /v1/pipelines/alpha/snapshots/deadbeefdeadbeef
expect 404 "GET an unknown snapshot"
start_job /v1/pipelines/beta/run '{}' "a run of beta"
wait_job "$JOB"
BETA_SNAP=$(json_get "$T/job-$JOB.json" 'j["summary"]["snapshot"]')
req GET /v1/snapshots
expect 200 "GET /v1/snapshots"
assert_eq 3 "$(jq_body 'j["count"]')" "snapshots across pipelines (the others have no repository yet)"
assert_eq "delta,gamma,slow" "$(jq_body '",".join(sorted(e["pipeline"] for e in j["errors"]))')" \
  "pipelines whose listing failed"
assert_eq "alpha,alpha,beta" "$(jq_body '",".join(s["pipeline"] for s in j["snapshots"])')" "pipelines, oldest first"
req GET "/v1/snapshots?pipeline=beta"
assert_eq "$BETA_SNAP" "$(jq_body '",".join(s["id"] for s in j["snapshots"])')" "?pipeline=beta"
req GET "/v1/snapshots?pipeline=alpha&item=files${T}/src-alpha/a/one.txt"
assert_eq "$FULL_SNAP" "$(jq_body '",".join(s["id"] for s in j["snapshots"])')" "?item= keeps the snapshots holding it"
req GET "/v1/snapshots?since=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)"
assert_eq 0 "$(jq_body 'j["count"]')" "?since= tomorrow"
req GET "/v1/snapshots?status=partial&pipeline=alpha"
assert_eq 0 "$(jq_body 'j["count"]')" "?status=partial"
req GET "/v1/snapshots?colour=blue"
expect 400 "an unknown filter"
req GET "/v1/snapshots?pipeline=nosuch"
expect 404 "a filter naming no pipeline"
req GET /api/v1/system/backups
expect 200 "the alias GET /api/v1/system/backups"
assert_eq 3 "$(jq_body 'j["count"]')" "the alias lists the same snapshots"

# ---- restores are off by default ------------------------------------------------------------
req POST /v1/pipelines/alpha/restore "${JSON[@]}" -d '{"snapshot": "latest", "target": "/tmp/x"}'
expect 403 "a restore without --allow-restore"
assert_contains "$T/body" "--allow-restore" "the 403 says how to enable restores"

# ---- a check with a restore test, recorded in the repository -----------------------------------
start_job /v1/pipelines/alpha/check '{"restore_test": true}' "a check with a restore test"
wait_job "$JOB"
assert_eq succeeded "$(json_get "$T/job-$JOB.json" 'j["state"]')" "the check's job"
assert_eq check "$(json_get "$T/job-$JOB.json" 'j["kind"]')" "the job's kind"
assert_eq ok "$(json_get "$T/job-$JOB.json" 'j["summary"]["restore_test_result"]')" "the restore test"
for _ in $(seq 1 100); do
  req GET /v1/pipelines/alpha
  [ "$(jq_body 'str((j["status"].get("last_verify") or {}).get("check"))')" = restore-test ] && break
  sleep 0.2
done
assert_eq ok "$(jq_body 'j["status"]["last_verify"]["result"]')" "the pipeline's last verification"
req POST /v1/pipelines/alpha/check "${JSON[@]}" -d '{"allow_untested": true}'
expect 400 "allow_untested without restore_test"

# ---- forget one snapshot -------------------------------------------------------------------------
req DELETE "/v1/pipelines/alpha/snapshots/$ONLY_SNAP" "${JSON[@]}"
expect 202 "DELETE a snapshot"
JOB=$(jq_body 'j["job"]')
wait_job "$JOB"
assert_eq succeeded "$(json_get "$T/job-$JOB.json" 'j["state"]')" "the forget job"
req GET /v1/pipelines/alpha/snapshots
assert_eq "$FULL_SNAP" "$(jq_body '",".join(s["id"] for s in j)')" "alpha's snapshots after the forget"
req DELETE /v1/pipelines/alpha/snapshots/xyz "${JSON[@]}"
expect 400 "DELETE with something that is not an id"

# ---- cancel a job; a hung job hits limits.timeout; a killed job --------------------------------
# (slow's jobs wait for their before hook, `sleep 120`)
start_job /v1/pipelines/slow/run '{}' "a run to cancel"
CHILD_PIDS+=("$JPID")
sleep 1
req POST "/v1/jobs/$JOB/cancel" "${JSON[@]}"
expect 202 "cancel"
wait_job "$JOB" 30
assert_eq cancelled "$(json_get "$T/job-$JOB.json" 'j["state"]')" "the cancelled job"
kill -0 "$JPID" 2>/dev/null && fail "the cancelled job's process $JPID is still there"
req POST "/v1/jobs/$JOB/cancel" "${JSON[@]}"
expect 409 "cancelling a finished job"
req GET "/v1/jobs/$JOB/cancel"
expect 405 "GET on cancel"

start_job /v1/pipelines/slow/run '{}' "a run that hangs"
CHILD_PIDS+=("$JPID")
sleep 1
kill -STOP -- "-$JPID" # the job's whole process group: engine and its hook
t_hang=$(date +%s)
wait_job "$JOB" 60
assert_eq failed "$(json_get "$T/job-$JOB.json" 'j["state"]')" "the hung job"
assert_eq true "$(json_get "$T/job-$JOB.json" 'j["timed_out"]')" "timed_out"
json_get "$T/job-$JOB.json" 'j["error"]' >"$T/hang.err"
assert_contains "$T/hang.err" "limits.timeout" "the error names limits.timeout"
took=$(($(date +%s) - t_hang))
[ "$took" -ge 5 ] && [ "$took" -le 30 ] || fail "the hung job was stopped after $took s (limit 8 s)"
kill -0 "$JPID" 2>/dev/null && fail "the hung job's process $JPID is still there"
assert_eq 1 "$(metric 'engine_jobs_timed_out_total{pipeline="slow"}')" "engine_jobs_timed_out_total"
assert_eq 1 "$(metric 'engine_jobs_cancelled_total{pipeline="slow"}')" "engine_jobs_cancelled_total"

start_job /v1/pipelines/slow/run '{}' "a run that gets killed"
CHILD_PIDS+=("$JPID")
sleep 1
kill -KILL "$JPID"
wait_job "$JOB" 30
assert_eq failed "$(json_get "$T/job-$JOB.json" 'j["state"]')" "the killed job"
assert_eq 9 "$(json_get "$T/job-$JOB.json" 'j["signal"]')" "the killed job's signal"

# ---- schedules: pause gamma's (every minute) ---------------------------------------------------
req PUT /v1/pipelines/gamma/schedule -d '{"enabled": false}'
expect 415 "PUT without Content-Type"
req PUT /v1/pipelines/gamma/schedule "${JSON[@]}" -d '{"enabled": "no"}'
expect 400 "enabled that is not a boolean"
req PUT /v1/pipelines/alpha/schedule "${JSON[@]}" -d '{"enabled": false}'
expect 409 "pausing a pipeline without a schedule"

# ---- a timer's run and a serve job of one pipeline wait for each other ----------------------------
wait_lock() { # REPO PID: PID stopped (SIGSTOP) while it holds a lock in REPO
  # let it run in slices of 20 ms until its lock is there: on a loaded
  # machine a run may otherwise take and drop its lock between two looks
  local i
  kill -STOP "$2"
  for i in $(seq 1 3000); do
    [ -n "$(ls "$1/locks" 2>/dev/null | grep -v tmp)" ] && return 0
    kill -0 "$2" 2>/dev/null || fail "process $2 ended before it was seen holding a lock in $1"
    kill -CONT "$2"
    sleep 0.02
    kill -STOP "$2"
  done
  fail "process $2 took no lock in $1"
}
random_file "$T/src-delta/big1.bin" 64
start_job /v1/pipelines/delta/run '{}' "a serve run of delta"
CHILD_PIDS+=("$JPID")
wait_lock "$T/repo-delta" "$JPID"
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/conf/delta.yml" --json \
  --metrics-file "$T/delta.prom" >"$T/timer.json" 2>"$T/timer.err" </dev/null &
TIMER=$!
CHILD_PIDS+=("$TIMER")
sleep 3
kill -0 "$TIMER" 2>/dev/null || { show "$T/timer.err"; fail "the timer's run did not wait for serve's job"; }
kill -CONT "$JPID"
wait_job "$JOB"
assert_eq succeeded "$(json_get "$T/job-$JOB.json" 'j["state"]')" "serve's job of delta"
wait "$TIMER" || { show "$T/timer.err"; fail "the timer's run failed after waiting"; }
"$PYTHON" -c "import json,sys; sys.exit(0 if json.load(open('$T/timer.json'))['lock_wait_seconds'] >= 2.5 else 1)" ||
  fail "the timer's run reports no wait"
grep -q '^engine_runs_waited_total{pipeline="delta"} 1$' "$T/delta.prom" ||
  { show "$T/delta.prom"; fail "the timer's metrics file does not say it waited"; }
# the other way round: the timer's run holds the pipeline, serve's job waits
random_file "$T/src-delta/big2.bin" 64
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/conf/delta.yml" --json \
  >"$T/timer2.json" 2>"$T/timer2.err" </dev/null &
TIMER=$!
CHILD_PIDS+=("$TIMER")
wait_lock "$T/repo-delta" "$TIMER"
start_job /v1/pipelines/delta/run '{}' "a serve run while the timer's run holds delta"
sleep 3
req GET "/v1/jobs/$JOB"
assert_eq running "$(jq_body 'j["state"]')" "serve's job while the timer's run holds the pipeline"
kill -CONT "$TIMER"
wait "$TIMER" || fail "the timer's run failed"
wait_job "$JOB"
assert_eq succeeded "$(json_get "$T/job-$JOB.json" 'j["state"]')" "serve's job that waited"
assert_eq 1 "$(metric 'engine_runs_waited_total{pipeline="delta"}')" "engine_runs_waited_total in /metrics"

# ---- stale: beta's RPO is 15 s -------------------------------------------------------------------
wait_hooks stale beta 1 40
sleep 8
assert_eq 1 "$(hooks_of stale beta)" "stale notifications of one episode"
assert_eq 1 "$(metric 'engine_stale{pipeline="beta"}')" "engine_stale"
assert_eq 1 "$(metric 'engine_stale_events_total{pipeline="beta"}')" "engine_stale_events_total"
assert_eq 0 "$(metric 'engine_stale{pipeline="alpha"}')" "alpha (RPO 24 h) is not stale"
"$PYTHON" - "$T/hooks.jsonl" <<'EOF' || fail "the stale notification's body"
import json, sys
b = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("event") == "stale"][0]
assert b["pipeline"] == "beta", b
assert b["rpo_seconds"] == 15, b
assert b["recovery_point_age_seconds"] >= 15, b
assert b["newest_complete_snapshot"]["id"], b
assert "recovery-point objective" in b["message"], b
EOF
curl -s -o "$T/metrics" "$URL/metrics"
promtool check metrics <"$T/metrics" >"$T/promtool.out" 2>&1 || { show "$T/metrics" "$T/promtool.out"; fail "promtool on /metrics"; }

# ---- restart: history, status, paused schedules and the stale episode survive --------------------
req GET /v1/jobs
jobs_before=$(jq_body '" ".join("%d:%s" % (x["id"], x["state"]) for x in sorted(j["jobs"], key=lambda x: x["id"]))')
max_before=$(jq_body 'max(x["id"] for x in j["jobs"])')
serve_stop s1 "$S1_PID"
start_srv s2 --listen 127.0.0.1:0 --config-dir "$T/conf" --state-dir "$ST" --daily-summary "$SUMMARY"
S2_PID=$SRV
req GET /v1/jobs
assert_eq "$jobs_before" "$(jq_body '" ".join("%d:%s" % (x["id"], x["state"]) for x in sorted(j["jobs"], key=lambda x: x["id"]))')" \
  "the jobs after a restart"
req GET /v1/pipelines/gamma/schedule
assert_eq false "$(jq_body 'j["enabled"]')" "gamma's schedule after a restart"
for _ in $(seq 1 100); do
  req GET /v1/pipelines/alpha
  [ "$(jq_body 'j["status"]["status_read_at"] is not None')" = true ] && break
  sleep 0.2
done
assert_eq "$FULL_SNAP" "$(jq_body 'j["status"]["newest_complete_snapshot"]["id"]')" "alpha's recovery point after a restart"
assert_eq restore-test "$(jq_body 'j["status"]["last_verify"]["check"]')" "alpha's last verification after a restart"
sleep 8
assert_eq 1 "$(hooks_of stale beta)" "no new stale notification after a restart within the episode"
req GET /v1/status
assert_eq '["beta"]' "$(jq_body 'j["stale"]')" "stale pipelines after a restart"
start_job /v1/pipelines/alpha/run '{}' "the first job after the restart"
[ "$JOB" -gt "$max_before" ] || fail "job ids start again after a restart ($JOB <= $max_before)"
wait_job "$JOB"

# ---- recovered ---------------------------------------------------------------------------------------
start_job /v1/pipelines/beta/run '{}' "a new backup of beta"
wait_job "$JOB"
wait_hooks recovered beta 1 30
"$PYTHON" - "$T/hooks.jsonl" <<'EOF' || fail "the recovered notification's body"
import json, sys
b = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("event") == "recovered"][0]
assert b["pipeline"] == "beta" and b["stale_seconds"] > 10, b
EOF

# ---- killed with a job running: the next server fails that job --------------------------------------
start_job /v1/pipelines/slow/run '{}' "a run when the server is killed"
CHILD_PIDS+=("$JPID")
ORPHAN=$JOB
kill -KILL "$S2_PID"
wait "$S2_PID" 2>/dev/null || true
kill -KILL -- "-$JPID" 2>/dev/null || true
RTOKEN=restore-$RANDOM-$RANDOM-token
printf '%s\n' "$RTOKEN" >"$T/restore-token"
chmod 600 "$T/restore-token"
run_engine "$T/o3" "$T/e3" serve --listen 127.0.0.1:0 --config-dir "$T/conf" --state-dir "$ST" --allow-restore
assert_rc 2 "--allow-restore without --restore-token-file" "$T/e3"
start_srv s3 --listen 127.0.0.1:0 --config-dir "$T/conf" --state-dir "$ST" --daily-summary "$SUMMARY" \
  --allow-restore --restore-token-file "$T/restore-token"
S3_PID=$SRV
req GET "/v1/jobs/$ORPHAN"
assert_eq failed "$(jq_body 'j["state"]')" "a job that was running when its server was killed"
assert_contains "$T/body" "still running when the server that ran it stopped" "its error says what happened"

# ---- restores over the API ------------------------------------------------------------------------
RAUTH=(-H "Authorization: Bearer $RTOKEN")
req POST /v1/pipelines/alpha/restore "${JSON[@]}" -d "{\"snapshot\": \"latest\", \"target\": \"$T/restored\"}"
expect 401 "a restore without the restore token"
req POST /v1/pipelines/alpha/restore "${JSON[@]}" "${RAUTH[@]}" -d '{"snapshot": "latest"}'
expect 400 "a restore without a target or overwrite"
req POST /v1/pipelines/alpha/restore "${JSON[@]}" "${RAUTH[@]}" \
  -d "{\"snapshot\": \"latest\", \"target\": \"$T/restored\"}"
expect 202 "a restore into a new directory"
R1=$(jq_body 'j["job"]')
wait_job "$R1"
assert_eq succeeded "$(json_get "$T/job-$R1.json" 'j["state"]')" "the restore job"
assert_eq restore "$(json_get "$T/job-$R1.json" 'j["kind"]')" "the job's kind"
[ "$(json_get "$T/job-$R1.json" 'j["progress"] is not None')" = true ] || fail "the restore job shows no progress"
compare_trees "$T/src-alpha" "$(restored_path "$T/restored" "$T/src-alpha")" >"$T/cmp" 2>&1 ||
  { cat "$T/cmp" >&2; fail "the API restore differs from the source"; }
echo "changed on disk" >"$(restored_path "$T/restored" "$T/src-alpha")/a/one.txt"
req POST /v1/pipelines/alpha/restore "${JSON[@]}" "${RAUTH[@]}" \
  -d "{\"snapshot\": \"latest\", \"target\": \"$T/restored\"}"
expect 202 "a restore into the same, non-empty directory"
R2=$(jq_body 'j["job"]')
wait_job "$R2"
assert_eq failed "$(json_get "$T/job-$R2.json" 'j["state"]')" "a restore that would overwrite"
json_get "$T/job-$R2.json" 'j["stderr_tail"]' >"$T/r2.tail"
assert_contains "$T/r2.tail" "not empty" "the refusal names the non-empty target"
assert_eq "changed on disk" "$(cat "$(restored_path "$T/restored" "$T/src-alpha")/a/one.txt")" \
  "the refused restore did not touch the target"
req POST /v1/pipelines/alpha/restore "${JSON[@]}" "${RAUTH[@]}" \
  -d "{\"snapshot\": \"$FULL_SNAP\", \"target\": \"$T/restored\", \"overwrite\": true, \"only\": \"files${T}/src-alpha/a\"}"
expect 202 "a restore with overwrite"
R3=$(jq_body 'j["job"]')
wait_job "$R3"
assert_eq succeeded "$(json_get "$T/job-$R3.json" 'j["state"]')" "the restore with overwrite"
assert_eq "alpha a" "$(cat "$(restored_path "$T/restored" "$T/src-alpha")/a/one.txt")" "the overwritten file"
req GET /v1/pipelines/alpha/restores
expect 200 "the restore history"
assert_eq "$R3:succeeded $R2:failed $R1:succeeded" "$(jq_body '" ".join("%d:%s" % (x["id"], x["state"]) for x in j["restores"])')" \
  "the restore history, newest first"

# ---- the alias that starts a backup -----------------------------------------------------------------
req POST /api/v1/system/backups "${JSON[@]}" -d '{"pipeline": "beta"}'
expect 202 "POST /api/v1/system/backups"
assert_eq run "$(jq_body 'j["kind"]')" "the alias starts a run"
wait_job "$(jq_body 'j["job"]')"
req POST /api/v1/system/backups "${JSON[@]}" -d '{}'
expect 400 "the alias without a pipeline (there are several)"

# ---- the daily summary, and no scheduled run of the paused pipeline ---------------------------------
wait_hooks daily_summary beta 1 $((t0 + 150 - $(date +%s)))
sleep 2
assert_eq 1 "$(hooks_of daily_summary beta)" "one daily summary"
assert_eq 0 "$(hooks_of daily_summary alpha)" "no summary for a pipeline that did not ask for one"
"$PYTHON" - "$T/hooks.jsonl" <<'PYEOF' || fail "the daily summary's body"
import json, sys
b = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("event") == "daily_summary"][0]
assert b["pipeline"] == "beta" and b["day"] and "jobs_last_24h" in b, b
PYEOF
[ $(($(date +%s) - t0)) -ge 65 ] || sleep $((65 - ($(date +%s) - t0)))
req GET "/v1/jobs?pipeline=gamma"
assert_eq 0 "$(jq_body 'len(j["jobs"])')" "jobs of gamma, whose every-minute schedule is paused"
req PUT /v1/pipelines/gamma/schedule "${JSON[@]}" -d '{"enabled": true}'
expect 200 "resume gamma's schedule"
[ "$(jq_body 'j["next_run"] is not None')" = true ] || fail "no next_run after resuming"

curl -s -o "$T/metrics" "$URL/metrics"
promtool check metrics <"$T/metrics" >"$T/promtool.out" 2>&1 || { show "$T/metrics" "$T/promtool.out"; fail "promtool on /metrics"; }
serve_stop s3 "$S3_PID"
assert_not_contains "$T/s3.err" "$RTOKEN" "the restore token in the log"
note "serve ops: one scheduler, jobs, cancel, timeout, restores, schedules, stale/recovered, summary ($(($(date +%s) - t0)) s)"
