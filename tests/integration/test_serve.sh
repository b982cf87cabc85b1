#!/usr/bin/env bash
# engine serve: the HTTP API over a config directory with two valid pipelines
# (one scheduled every minute) and an invalid one — status and pipeline
# listings, a backup job started over the API and followed to its snapshot,
# 409 for a second run while the first is paused, the snapshot listing,
# Prometheus metrics, 404/405/400/413, bearer-token authentication, the
# cron scheduler, SIGHUP reload, and SIGTERM waiting for a running job and
# exiting 0 with no child left.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

command -v curl >/dev/null 2>&1 || fail "curl is required"

CHILD_PIDS=()
# paused backup children are resumed so the servers' SIGKILL (lib.sh) does
# not leave them stopped, then killed too
_serve_children_cleanup() {
  local p
  for p in "${CHILD_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
  _serve_kill_all
  for p in "${CHILD_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
at_exit _serve_children_cleanup

# start_server NAME ARGS... / stop_server NAME PID: lib.sh's serve_start /
# serve_stop (SRV_PID, URL; output in $T/NAME.out/.err)
start_server() { serve_start "$@"; }
stop_server() { serve_stop "$@"; }

# req METHOD PATH [CURL ARGS...]: body in $T/body, status in $CODE
req() {
  local method=$1 path=$2
  shift 2
  CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X "$method" "$@" "$URL$path") || CODE=000
}

# a POST carries this (engine serve answers 415 without it)
JSON=(-H 'Content-Type: application/json')

expect() { # CODE WHAT
  if [ "$CODE" != "$1" ]; then
    show "$T/body"
    fail "$2: HTTP $CODE, expected $1"
  fi
}

# ---- the config directory ------------------------------------------------------
mkdir -p "$T/conf.d" "$T/src-alpha" "$T/src-beta"
random_file "$T/src-alpha/data.bin" 48
echo "alpha notes" >"$T/src-alpha/notes.txt"
echo "beta" >"$T/src-beta/b.txt"
write_pipeline "$T/conf.d/alpha.yml" alpha "$T/repo-alpha" "$T/src-alpha"
write_pipeline "$T/conf.d/beta.yml" beta "$T/repo-beta" "$T/src-beta"
sed -i '2a schedule: "* * * * *"' "$T/conf.d/beta.yml"
printf 'version: 1\nname: broken\nsoruces: []\n' >"$T/conf.d/broken.yml"
echo "not a pipeline" >"$T/conf.d/README.txt"

# a non-loopback address needs a token; nothing is bound
run_engine "$T/o" "$T/e" serve --listen 0.0.0.0:0 --config-dir "$T/conf.d"
assert_rc 2 "serve on 0.0.0.0 without --token-file" "$T/e"
assert_contains "$T/e" "--token-file" "the refusal names --token-file"

t0=$(date +%s)
start_server main --listen 127.0.0.1:0 --config-dir "$T/conf.d"
MAIN_PID=$SRV_PID
MAIN_URL=$URL
assert_contains "$T/main.err" "broken.yml:3:1" "the invalid pipeline is reported at start"

# ---- status and pipelines ------------------------------------------------------
req GET /v1/status
expect 200 "GET /v1/status"
assert_eq 2 "$(json_get "$T/body" 'j["pipelines"]')" "status: valid pipelines"
assert_eq 1 "$(json_get "$T/body" 'j["pipelines_invalid"]')" "status: invalid pipelines"
assert_eq 0 "$(json_get "$T/body" 'j["jobs_running"]')" "status: running jobs"
assert_eq "$("$ENGINE_BIN" --version | awk '{print $2}')" "$(json_get "$T/body" 'j["version"]')" "status: version"
json_get "$T/body" 'j["uptime_seconds"] >= 0' >/dev/null

req GET /v1/pipelines
expect 200 "GET /v1/pipelines"
assert_eq "alpha beta broken" "$(json_get "$T/body" '" ".join(p["name"] for p in j["pipelines"])')" "pipeline names"
assert_eq "false" "$(json_get "$T/body" '[p for p in j["pipelines"] if p["name"]=="broken"][0]["valid"]')" "broken is invalid"
json_get "$T/body" '[p for p in j["pipelines"] if p["name"]=="broken"][0]["error"]' >"$T/broken-error"
assert_contains "$T/broken-error" "broken.yml:3:1: unknown key 'soruces'" "invalid pipeline's file:line error"
assert_eq "true" "$(json_get "$T/body" '[p for p in j["pipelines"] if p["name"]=="alpha"][0]["valid"]')" "alpha is valid"
assert_eq "None" "$(json_get "$T/body" '[p for p in j["pipelines"] if p["name"]=="alpha"][0]["next_run"]')" "alpha has no schedule"
assert_eq "* * * * *" "$(json_get "$T/body" '[p for p in j["pipelines"] if p["name"]=="beta"][0]["schedule"]')" "beta's schedule"
next=$(json_get "$T/body" '[p for p in j["pipelines"] if p["name"]=="beta"][0]["next_run"]')
[[ "$next" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:00Z$ ]] || fail "beta's next_run '$next' is not a whole minute"

# ---- a job over the API, and 409 while it runs --------------------------------
# the job is paused (SIGSTOP) at once, with the pid from the 202 response
req POST /v1/pipelines/alpha/run "${JSON[@]}"
pid=$(sed -n 's/^ *"pid": \([0-9]*\).*/\1/p' "$T/body")
[ -n "$pid" ] && kill -STOP "$pid"
expect 202 "POST /v1/pipelines/alpha/run"
[ -n "$pid" ] || { show "$T/body"; fail "the 202 response has no pid"; }
CHILD_PIDS+=("$pid")
JOB=$(json_get "$T/body" 'j["job"]')
req GET "/v1/jobs/$JOB"
expect 200 "GET /v1/jobs/$JOB"
state=$(json_get "$T/body" 'j["state"]')
if [ "$state" = running ]; then
  assert_eq "$pid" "$(json_get "$T/body" 'j["pid"]')" "the job's pid"
  req POST /v1/pipelines/alpha/run "${JSON[@]}"
  expect 409 "second POST while alpha's job runs"
  assert_contains "$T/body" "already has job $JOB" "409 names the running job"
  req GET /v1/status
  assert_eq 1 "$(json_get "$T/body" 'j["jobs_running"]')" "status: one job running"
  kill -CONT "$pid" 2>/dev/null || true
else
  fail "job $JOB is '$state' right after it was started (expected running)"
fi
for _ in $(seq 1 600); do
  req GET "/v1/jobs/$JOB"
  state=$(json_get "$T/body" 'j["state"]')
  [ "$state" = running ] || [ "$state" = queued ] || break
  sleep 0.2
done
[ "$state" = succeeded ] || { show "$T/body"; fail "job $JOB ended '$state', expected succeeded"; }
cp "$T/body" "$T/job-alpha.json"
assert_eq 0 "$(json_get "$T/job-alpha.json" 'j["exit_code"]')" "job exit code"
assert_eq api "$(json_get "$T/job-alpha.json" 'j["trigger"]')" "job trigger"
SNAP=$(json_get "$T/job-alpha.json" 'j["summary"]["snapshot"]')
[[ "$SNAP" =~ ^[0-9a-f]{64}$ ]] || fail "job summary snapshot id '$SNAP'"
assert_eq complete "$(json_get "$T/job-alpha.json" 'j["summary"]["status"]')" "summary status"
BYTES_READ=$(json_get "$T/job-alpha.json" 'j["summary"]["bytes_read"]')
STORED=$(json_get "$T/job-alpha.json" 'j["summary"]["stored_bytes"]')
assert_eq $((48 * 1024 * 1024 + 12)) "$BYTES_READ" "bytes read by the job"
json_get "$T/job-alpha.json" 'j["stderr_tail"]' >"$T/job-alpha.stderr"
assert_not_contains "$T/job-alpha.stderr" "Sanitizer" "the job's stderr"

req GET /v1/jobs
expect 200 "GET /v1/jobs"
assert_eq "$JOB" "$(json_get "$T/body" '[x["id"] for x in j["jobs"] if x["pipeline"]=="alpha"][0]')" "job list"

req GET /v1/pipelines
assert_eq "$SNAP" "$(json_get "$T/body" '[p for p in j["pipelines"] if p["name"]=="alpha"][0]["last_job"]["snapshot"]')" "alpha's last job"

# ---- the snapshot listing -------------------------------------------------------
req GET /v1/pipelines/alpha/snapshots
expect 200 "GET /v1/pipelines/alpha/snapshots"
assert_eq "$SNAP" "$(json_get "$T/body" '" ".join(s["id"] for s in j)')" "snapshots of alpha"
assert_eq "$BYTES_READ" "$(json_get "$T/body" 'j[0]["bytes_read"]')" "listed bytes_read"
req GET /v1/pipelines/broken/snapshots
expect 422 "snapshots of the invalid pipeline"

# ---- metrics ---------------------------------------------------------------------
req GET /metrics
expect 200 "GET /metrics"
metric() { # LINE-PREFIX: the value
  awk -v k="$1" 'index($0, k" ") == 1 { print $NF }' "$T/body"
}
assert_eq 1 "$(metric 'engine_up')" "engine_up"
assert_eq 1 "$(metric 'engine_runs_total{pipeline="alpha",result="succeeded"}')" "alpha succeeded runs"
assert_eq 0 "$(metric 'engine_runs_total{pipeline="alpha",result="failed"}')" "alpha failed runs"
assert_eq 0 "$(metric 'engine_runs_total{pipeline="alpha",result="partial"}')" "alpha partial runs"
assert_eq 0 "$(metric 'engine_last_run_exit_code{pipeline="alpha"}')" "alpha last exit code"
assert_eq "$BYTES_READ" "$(metric 'engine_last_run_bytes_read{pipeline="alpha"}')" "alpha last bytes read"
assert_eq "$STORED" "$(metric 'engine_last_run_stored_bytes{pipeline="alpha"}')" "alpha last stored bytes"
assert_eq 2 "$(metric 'engine_pipelines{valid="true"}')" "valid pipelines metric"
assert_eq 1 "$(metric 'engine_pipelines{valid="false"}')" "invalid pipelines metric"
assert_eq 0 "$(metric 'engine_scheduled_runs_skipped_total{pipeline="beta"}')" "skipped runs"
ts=$(metric 'engine_last_run_timestamp_seconds{pipeline="alpha"}')
dur=$(metric 'engine_last_run_duration_seconds{pipeline="alpha"}')
"$PYTHON" -c "import sys,time; t=float('$ts'); d=float('$dur'); sys.exit(0 if abs(time.time()-t) < 300 and 0 < d < 300 else 1)" ||
  fail "last run timestamp $ts / duration $dur"
grep -q '^# TYPE engine_runs_total counter$' "$T/body" || fail "metrics: engine_runs_total has no TYPE line"
grep -q '^engine_jobs_running ' "$T/body" || fail "metrics: engine_jobs_running missing"

# ---- errors --------------------------------------------------------------------
req GET /v1/nothing
expect 404 "unknown path"
req GET /v1/jobs/999999
expect 404 "unknown job"
req POST /v1/pipelines/nosuch/run "${JSON[@]}"
expect 404 "unknown pipeline"
req DELETE /v1/status
expect 405 "DELETE /v1/status"
req GET /v1/pipelines/alpha/run
expect 405 "GET on the run endpoint"
req POST /v1/pipelines/broken/run "${JSON[@]}"
expect 422 "running the invalid pipeline"
req POST /v1/pipelines/alpha/run
expect 415 "a POST without Content-Type"
assert_contains "$T/body" "Content-Type: application/json" "the 415 names the header"
head -c $((65 * 1024)) /dev/zero >"$T/big-body"
req POST /v1/pipelines/alpha/run --data-binary "@$T/big-body" -H 'Content-Type: application/octet-stream'
expect 413 "a 65 KiB body"
"$PYTHON" - "${MAIN_URL##*:}" >"$T/raw" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(10)
s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
out = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    out += b
print(out.split(b"\r\n")[0].decode())
EOF
assert_eq "HTTP/1.1 400 Bad Request" "$(cat "$T/raw")" "a malformed request"
# keep-alive: two requests, one connection
n=$(curl -s -o /dev/null -o /dev/null -w '%{num_connects}\n' "$MAIN_URL/v1/status" "$MAIN_URL/metrics" | awk '{ s += $1 } END { print s }')
assert_eq 1 "$n" "connections for two requests with keep-alive"

# ---- bearer token (a second server) ---------------------------------------------
TOKEN=tok-$RANDOM-$RANDOM-secret
printf '%s\n' "$TOKEN" >"$T/token"
chmod 0640 "$T/token"
# its own config directory: beta's schedule must not start a second runner
mkdir -p "$T/conf-tok"
cp "$T/conf.d/alpha.yml" "$T/conf-tok/"
start_server tok --listen 127.0.0.1:0 --config-dir "$T/conf-tok" --token-file "$T/token"
TOK_PID=$SRV_PID
assert_contains "$T/tok.err" "expected 0600" "a group-readable token file is warned about"
req GET /v1/status
expect 401 "no token"
req GET /v1/status -H "Authorization: Bearer wrong-$TOKEN"
expect 401 "wrong token"
req GET /metrics -H "Authorization: Bearer ${TOKEN:0:10}"
expect 401 "a prefix of the token"
req GET /v1/status -H "Authorization: Bearer $TOKEN"
expect 200 "the right token"
req GET /v1/nothing -H "Authorization: Bearer $TOKEN"
expect 404 "the right token, unknown path"
stop_server tok "$TOK_PID"
assert_not_contains "$T/tok.err" "$TOKEN" "the token in the log"
URL=$MAIN_URL

# ---- the scheduler: beta runs within about a minute -----------------------------
deadline=$((t0 + 75))
sched=""
while [ "$(date +%s)" -lt "$deadline" ]; do
  req GET /v1/jobs
  sched=$(json_get "$T/body" '",".join(str(x["id"]) + ":" + x["state"] for x in j["jobs"] if x["pipeline"]=="beta" and x["trigger"]=="schedule")')
  case "$sched" in *succeeded*) break ;; esac
  sleep 1
done
case "$sched" in *succeeded*) ;; *) show "$T/main.err" "$T/body"; fail "no scheduled run of beta succeeded within 75 s (jobs: '$sched')" ;; esac
req GET /metrics
[ "$(metric 'engine_runs_total{pipeline="beta",result="succeeded"}')" -ge 1 ] || fail "beta's scheduled run is not counted"

# ---- SIGHUP reload ------------------------------------------------------------------
write_pipeline "$T/conf.d/gamma.yaml" gamma "$T/repo-gamma" "$T/src-beta"
kill -HUP "$MAIN_PID"
for _ in $(seq 1 50); do
  req GET /v1/status
  [ "$(json_get "$T/body" 'j["pipelines"]')" = 3 ] && break
  sleep 0.1
done
assert_eq 3 "$(json_get "$T/body" 'j["pipelines"]')" "valid pipelines after SIGHUP"

# ---- SIGTERM waits for the running job ------------------------------------------------
echo "changed" >>"$T/src-alpha/notes.txt"
random_file "$T/src-alpha/data2.bin" 32
req POST /v1/pipelines/alpha/run "${JSON[@]}"
pid2=$(sed -n 's/^ *"pid": \([0-9]*\).*/\1/p' "$T/body")
[ -n "$pid2" ] && kill -STOP "$pid2"
expect 202 "POST before SIGTERM"
[ -n "$pid2" ] || { show "$T/body"; fail "the 202 response has no pid"; }
CHILD_PIDS+=("$pid2")
JOB2=$(json_get "$T/body" 'j["job"]')
req GET "/v1/jobs/$JOB2"
assert_eq running "$(json_get "$T/body" 'j["state"]')" "job $JOB2 while paused"
kill -TERM "$MAIN_PID"
sleep 1
kill -0 "$MAIN_PID" 2>/dev/null || { show "$T/main.err"; fail "engine serve exited with its job still running"; }
curl -s -o /dev/null --max-time 2 "$MAIN_URL/v1/status" && fail "engine serve still accepts requests after SIGTERM"
kill -CONT "$pid2"
rc=0
wait "$MAIN_PID" || rc=$?
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/main.err"; then
  show "$T/main.err"
  fail "sanitizer report from engine serve"
fi
[ "$rc" -eq 0 ] || { show "$T/main.err"; fail "engine serve exited with status $rc after SIGTERM, expected 0"; }
assert_contains "$T/main.err" "job $JOB2 (run of pipeline alpha) succeeded" "the job finished before the server stopped"
for p in "${CHILD_PIDS[@]}"; do
  kill -0 "$p" 2>/dev/null && fail "child process $p is still alive after the server stopped"
done
# the job completed: its snapshot is there
run_ok "$T/snaps" "$T/e" snapshots "$T/conf.d/alpha.yml" --json
assert_eq 2 "$(json_get "$T/snaps" 'len(j)')" "alpha's snapshots after the job that outlived SIGTERM"
elapsed=$(($(date +%s) - t0))
note "serve API, jobs, scheduler, token and SIGTERM behave (${elapsed}s)"
