#!/usr/bin/env bash
# hooks: before commands run before the sources start (a file a before hook
# writes into the source is in the snapshot); a failing before hook aborts
# the run (exit 1, no snapshot) and the after hooks still run; after hooks
# run on success, partial, failure and interruption with the outcome in
# ENGINE_* variables; two runs of one pipeline never overlap, hooks included
# (the second waits, or gives up after --lock-wait: skipped); hooks get the minimal environment (no passphrase, no
# other variable of the engine's) and no secret in their argv; the timeout
# kills the hook's whole process group; output goes to the log; `engine
# serve` jobs run the same hooks and call the same webhooks (success,
# failure with the hook's error), keep the hooks' output in the job's
# stderr_tail, fail naming a failing before hook, and after a restart
# /metrics still knows that run failed (the local audit log).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ops_lib.sh"

mkdir -p "$T/src" "$T/marks"
echo "data" >"$T/src/a.txt"
M=$T/marks
# the after hook records its ENGINE_* variables, one file per run
cat >"$T/after.sh" <<'EOF'
#!/bin/sh
n=$(ls "$MARKS" 2>/dev/null | grep -c '^after' || true)
env | grep '^ENGINE_' | sort >"$MARKS/after.$n"
EOF
chmod +x "$T/after.sh"
hooks_pipeline() { # FILE NAME REPO BEFORE-CMD [EXTRA-YAML]
  write_pipeline "$1" "$2" "$3" "$T/src"
  cat >>"$1" <<YAML
hooks:
  before: [$(yq "$4")]
  after: [$(yq "MARKS=$M $T/after.sh")]
  timeout: ${HOOK_TIMEOUT:-30s}
${5:-}
YAML
}
last_after() { ls "$M" | grep '^after' | sort -t. -k2 -n | tail -1; }
after_var() { sed -n "s/^$1=//p" "$M/$(last_after)"; }

# ---- success: order, environment, argv --------------------------------------
export HOOK_SECRET_CANARY=canary-not-for-hooks-8f2e
hooks_pipeline "$T/p.yml" hooks "$T/repo" \
  "echo before-ran >$T/src/written-by-before.txt; env >$M/before.env; tr '\\0' ' ' </proc/\$\$/cmdline >$M/before.argv; echo hook-output-line"
run_ok "$T/run.json" "$T/run.err" -v run "$T/p.yml" --json
SNAP=$(json_get "$T/run.json" 'j["snapshot"]')
run_ok "$T/ls.json" "$T/ls.err" restore "$T/p.yml" latest --dry-run --json
assert_contains "$T/ls.json" "written-by-before.txt" "a file the before hook wrote into the source is in the snapshot (the hook ran before the sources)"
assert_eq success "$(after_var ENGINE_STATUS)" "after hook: ENGINE_STATUS"
assert_eq 0 "$(after_var ENGINE_EXIT)" "after hook: ENGINE_EXIT"
assert_eq "$SNAP" "$(after_var ENGINE_SNAPSHOT)" "after hook: ENGINE_SNAPSHOT is the new snapshot"
assert_eq hooks "$(after_var ENGINE_PIPELINE)" "after hook: ENGINE_PIPELINE"
assert_eq "$T/p.yml" "$(after_var ENGINE_PIPELINE_FILE)" "after hook: ENGINE_PIPELINE_FILE"
assert_eq "" "$(after_var ENGINE_ERROR)" "after hook: ENGINE_ERROR on success"
grep -q '^ENGINE_HOOK=before$' "$M/before.env" || fail "the before hook has no ENGINE_HOOK=before"
grep -q '^ENGINE_PIPELINE=hooks$' "$M/before.env" || fail "the before hook has no ENGINE_PIPELINE"
# the minimal environment: nothing of the engine's beyond the allow-list
for secret in "$TEST_PASSPHRASE" "$HOOK_SECRET_CANARY"; do
  assert_not_contains "$M/before.env" "$secret" "the before hook's environment"
  assert_not_contains "$M/$(last_after)" "$secret" "the after hook's environment"
  assert_not_contains "$M/before.argv" "$secret" "the before hook's argv"
done
grep -q '^PATH=' "$M/before.env" || fail "the hook has no PATH (allow-list)"
# output goes to the log, one line each, with the hook's name
assert_contains "$T/run.err" "hooks.before[0]: hook-output-line" "the before hook's output in the log"

# ---- a failing before hook: exit 1, no snapshot, after hooks run -------------
hooks_pipeline "$T/p.yml" hooks "$T/repo" "echo cannot-enter-readonly-mode; exit 7"
run_engine "$T/f.out" "$T/f.err" run "$T/p.yml"
assert_rc 1 "run with a failing before hook" "$T/f.out" "$T/f.err"
assert_contains "$T/f.err" "hooks.before[0]" "the error names the hook"
assert_contains "$T/f.err" "exited with status 7" "the error says how the hook ended"
assert_contains "$T/f.err" "cannot-enter-readonly-mode" "the error quotes the hook's output"
run_ok "$T/s.json" "$T/s.err" snapshots "$T/p.yml" --json
assert_eq 1 "$(json_get "$T/s.json" 'len(j)')" "snapshots after the failed before hook (no new one)"
assert_eq failure "$(after_var ENGINE_STATUS)" "after hook after a failed before hook: ENGINE_STATUS"
assert_eq 1 "$(after_var ENGINE_EXIT)" "after hook after a failed before hook: ENGINE_EXIT"
assert_eq "" "$(after_var ENGINE_SNAPSHOT)" "after hook after a failed before hook: no snapshot"
case "$(after_var ENGINE_ERROR)" in *hooks.before*exited*) ;; *) fail "ENGINE_ERROR '$(after_var ENGINE_ERROR)' does not name the before hook" ;; esac

# ---- partial: exit 3 ----------------------------------------------------------
write_pipeline "$T/pp.yml" hookspartial "$T/repo-p" "$T/src" "$T/does-not-exist"
cat >>"$T/pp.yml" <<YAML
hooks:
  after: [$(yq "MARKS=$M $T/after.sh")]
YAML
run_engine "$T/p.out" "$T/p.err" run "$T/pp.yml" --json
assert_rc 3 "partial run" "$T/p.out" "$T/p.err"
assert_eq partial "$(after_var ENGINE_STATUS)" "after hook of a partial run"
assert_eq 3 "$(after_var ENGINE_EXIT)" "ENGINE_EXIT of a partial run"
assert_eq 1 "$(after_var ENGINE_WARNINGS)" "ENGINE_WARNINGS of a partial run"
assert_eq "$(json_get "$T/p.out" 'j["snapshot"]')" "$(after_var ENGINE_SNAPSHOT)" "the partial snapshot"

# ---- failure of the backup itself: the after hooks run ------------------------
echo "not a directory" >"$T/repo-file"
hooks_pipeline "$T/pf.yml" hooksfail "$T/repo-file" "true"
run_engine "$T/pf.out" "$T/pf.err" run "$T/pf.yml"
assert_rc 1 "run onto a file instead of a repository" "$T/pf.out" "$T/pf.err"
assert_eq failure "$(after_var ENGINE_STATUS)" "after hook of a failed run"
case "$(after_var ENGINE_ERROR)" in *repo-file*) ;; *) fail "ENGINE_ERROR '$(after_var ENGINE_ERROR)' does not say why the run failed" ;; esac

# ---- timeout: the hook's process group is killed --------------------------------
HOOK_TIMEOUT=1s hooks_pipeline "$T/pt.yml" hookstimeout "$T/repo" \
  "sleep 300 & echo \$! >$M/bg.pid; sleep 300"
start=$(date +%s)
run_engine "$T/t.out" "$T/t.err" run "$T/pt.yml"
elapsed=$(($(date +%s) - start))
assert_rc 1 "run whose before hook hangs" "$T/t.out" "$T/t.err"
assert_contains "$T/t.err" "did not finish within 1s (hooks.timeout)" "the timeout is named"
[ "$elapsed" -lt 20 ] || fail "the hung hook held the run for ${elapsed}s (timeout 1s)"
bg=$(cat "$M/bg.pid")
for _ in $(seq 1 50); do kill -0 "$bg" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$bg" 2>/dev/null; then
  kill -KILL "$bg"
  fail "a process the hook started in the background survived the timeout"
fi
assert_eq failure "$(after_var ENGINE_STATUS)" "after hook after the timeout"

# ---- interrupted: the after hooks still run (exit 130) ----------------------
hooks_pipeline "$T/pi.yml" hooksint "$T/repo" "touch $M/started; sleep 300"
rm -f "$M/started"
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/pi.yml" >"$T/i.out" 2>"$T/i.err" &
pid=$!
for _ in $(seq 1 100); do [ -e "$M/started" ] && break; sleep 0.1; done
[ -e "$M/started" ] || fail "the before hook did not start"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 130 ] || { show "$T/i.err"; fail "interrupted run exited $rc, expected 130"; }
assert_eq failure "$(after_var ENGINE_STATUS)" "after hook of an interrupted run"
assert_eq 130 "$(after_var ENGINE_EXIT)" "ENGINE_EXIT of an interrupted run"

# ---- runs of one pipeline never overlap, hooks included -------------------------
# (a second run's before hook must not run during the first's backup, nor the
# first's after hook during the second's: the read-only window would break)
write_pipeline "$T/po.yml" overlap "$T/repo-o" "$T/src"
cat >>"$T/po.yml" <<YAML
hooks:
  before: [$(yq "echo before >>$M/order; while [ -e $M/hold ]; do sleep 0.1; done")]
  after: [$(yq "echo after >>$M/order")]
YAML
touch "$M/hold"
: >"$M/order"
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/po.yml" --json >"$T/oa.json" 2>"$T/oa.err" </dev/null &
OA=$!
for _ in $(seq 1 100); do [ -s "$M/order" ] && break; sleep 0.1; done
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/po.yml" --json >"$T/ob.json" 2>"$T/ob.err" </dev/null &
OB=$!
sleep 2
# a third gives up after --lock-wait: skipped
run_engine "$T/oc.json" "$T/oc.err" run "$T/po.yml" --lock-wait 1s --metrics-file "$T/oc.prom"
assert_rc 1 "a run with --lock-wait 1s while another run of the pipeline is in its before hook" "$T/oc.err"
assert_contains "$T/oc.err" "gave up waiting after 1s (--lock-wait)" "the run that gave up says why"
grep -q '^engine_runs_skipped_total{pipeline="overlap"} 1$' "$T/oc.prom" ||
  { show "$T/oc.prom"; fail "the metrics file does not count the run that gave up as skipped"; }
assert_eq "before" "$(tr '\n' ' ' <"$M/order" | sed 's/ $//')" "hooks run while the first run is in its before hook"
assert_contains "$T/ob.err" "waiting for another run of pipeline 'overlap' on this host" "the second run says it waits"
rm -f "$M/hold"
wait "$OA" || { show "$T/oa.err"; fail "the first run failed"; }
wait "$OB" || { show "$T/ob.err"; fail "the second run failed"; }
assert_eq "before after before after" "$(tr '\n' ' ' <"$M/order" | sed 's/ $//')" "the hooks of two runs of one pipeline"
waited=$(json_get "$T/ob.json" 'j["lock_wait_seconds"]')
"$PYTHON" -c "import sys; sys.exit(0 if float('$waited') >= 1.5 else 1)" ||
  fail "the second run reports lock_wait_seconds $waited, expected at least 1.5"

# ---- dry runs run no hooks --------------------------------------------------------
n_before=$(ls "$M" | grep -c '^after')
hooks_pipeline "$T/p.yml" hooks "$T/repo" "touch $M/dry-before"
run_ok "$T/d.out" "$T/d.err" run "$T/p.yml" --dry-run
[ ! -e "$M/dry-before" ] || fail "a dry run ran the before hook"
assert_eq "$n_before" "$(ls "$M" | grep -c '^after')" "after hooks of a dry run"

# ---- engine serve's jobs run the hooks (serve starts 'engine run') -------------
mkdir -p "$T/conf.d"
rm -f "$T/src/written-by-before.txt"
# served jobs also call the pipeline's webhooks (from the child engine run)
webhook_start served
SERVED_NOTIFY="notify: [{webhook: $(yq "$HOOK_URL"), on: [success, failure]}]"
hooks_pipeline "$T/conf.d/served.yml" served "$T/repo-s" \
  "echo by-serve >$T/src/written-by-before.txt; echo served-hook-says-hello; echo served-hook-stderr >&2" \
  "$SERVED_NOTIFY"
serve_start srv --listen 127.0.0.1:0 --config-dir "$T/conf.d"
# serve_job OUT: POST .../served/run and wait for the job; its document in OUT
serve_job() {
  curl -s -o "$1" -X POST -H 'Content-Type: application/json' "$URL/v1/pipelines/served/run"
  local job state
  job=$(json_get "$1" 'j["job"]')
  for _ in $(seq 1 300); do
    curl -s -o "$1" "$URL/v1/jobs/$job"
    state=$(json_get "$1" 'j["state"]')
    [ "$state" = running ] || [ "$state" = queued ] || break
    sleep 0.1
  done
}
serve_job "$T/job.json"
state=$(json_get "$T/job.json" 'j["state"]')
[ "$state" = succeeded ] || { show "$T/job.json" "$T/srv.err"; fail "the served job ended '$state'"; }
assert_eq "by-serve" "$(cat "$T/src/written-by-before.txt")" "the before hook of a served job"
assert_eq served "$(after_var ENGINE_PIPELINE)" "the after hook of a served job ran"
assert_eq "$(json_get "$T/job.json" 'j["summary"]["snapshot"]')" "$(after_var ENGINE_SNAPSHOT)" "the served job's snapshot in its after hook"
# the hook's output (stdout and stderr) is kept with the job
json_get "$T/job.json" 'j["stderr_tail"]' >"$T/job.tail"
assert_contains "$T/job.tail" "hooks.before[0]: served-hook-says-hello" "the served job's stderr_tail (hook stdout)"
assert_contains "$T/job.tail" "hooks.before[0]: served-hook-stderr" "the served job's stderr_tail (hook stderr)"
webhook_wait served 1
assert_eq success "$(webhook_body served 0 'b["event"]')" "the served job's webhook"
assert_eq "$(json_get "$T/job.json" 'j["summary"]["snapshot"]')" "$(webhook_body served 0 'b["snapshot"]')" \
  "the served job's snapshot in its webhook"
# a failing before hook under serve: the job fails naming the hook, no
# snapshot, the after hook runs
# (a job's child reads the pipeline file afresh)
hooks_pipeline "$T/conf.d/served.yml" served "$T/repo-s" "echo served-cannot-freeze; exit 9" "$SERVED_NOTIFY"
snaps_before=$(ls "$T/repo-s/snapshots" | wc -l)
serve_job "$T/job2.json"
assert_eq failed "$(json_get "$T/job2.json" 'j["state"]')" "a served job whose before hook fails"
json_get "$T/job2.json" 'j["error"]' >"$T/job2.error"
assert_contains "$T/job2.error" "hooks.before[0]" "the failed job's error names the hook"
assert_contains "$T/job2.error" "exited with status 9" "the failed job's error says how the hook ended"
assert_eq "$snaps_before" "$(ls "$T/repo-s/snapshots" | wc -l)" "snapshots after the served job's failed before hook"
assert_eq failure "$(after_var ENGINE_STATUS)" "the after hook of the failed served job"
assert_eq 1 "$(after_var ENGINE_EXIT)" "ENGINE_EXIT of the failed served job"
webhook_wait served 2
assert_eq failure "$(webhook_body served 1 'b["event"]')" "the failed served job's webhook"
webhook_body served 1 'b["error"]' >"$T/wh-error"
assert_contains "$T/wh-error" "served-cannot-freeze" "the failure webhook's error"
serve_stop srv "$SRV_PID"
# after a restart /metrics still says the last run failed (it never reached
# the repository: the local audit log says so), and when the last success was
serve_start srv2 --listen 127.0.0.1:0 --config-dir "$T/conf.d"
for _ in $(seq 1 100); do
  curl -s -o "$T/metrics" "$URL/metrics"
  grep -q '^engine_last_success_timestamp_seconds{pipeline="served"}' "$T/metrics" && break
  sleep 0.1
done
grep -q '^engine_last_run_exit_code{pipeline="served"} 1$' "$T/metrics" ||
  { show "$T/metrics"; fail "/metrics after a restart lost the failed last run"; }
grep -q '^engine_last_success_timestamp_seconds{pipeline="served"} [0-9]' "$T/metrics" ||
  { show "$T/metrics"; fail "/metrics after a restart has no last success"; }
curl -s -o "$T/p.json" "$URL/v1/pipelines/served"
assert_eq failed "$(json_get "$T/p.json" 'j["status"]["last_run"]["outcome"]')" "the served pipeline's last run after a restart"
serve_stop srv2 "$SRV_PID"
note "PASS"
