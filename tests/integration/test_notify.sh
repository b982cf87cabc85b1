#!/usr/bin/env bash
# notify: webhooks (a loopback receiver, python's http.server) get the
# documented JSON body for the outcomes they name; a secret header comes
# from its env: reference and never reaches the log; retries with backoff
# get through a receiver that fails twice; an unreachable or slow webhook
# neither fails nor holds up the backup beyond its timeout;
# consecutive_failures fires once, at the Nth failure in a row;
# storage_low at the threshold; verify_failed when check finds damage;
# `engine notify` sends by hand; an OnFailure= run of it stays silent when
# the failed run reported itself.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ops_lib.sh"

mkdir -p "$T/src"
echo "one" >"$T/src/a.txt"
export HOOK_TOKEN=tok-9c1d-secret-header
webhook_start all
ALL=$HOOK_URL
webhook_start fails --fail-first 2
FAILS=$HOOK_URL
webhook_start onlyfail
ONLYFAIL=$HOOK_URL

# ---- success: the body, the secret header, on: filtering, retries ------------
pipeline_with "$T/p.yml" notified "$T/repo" "$T/src" <<YAML
notify:
  - webhook: $ALL
    on: [success, failure, partial]
    headers: { Authorization: env:HOOK_TOKEN, X-Team: backup-ops }
  - { webhook: $FAILS, on: [success], retries: 3 }
  - { webhook: $ONLYFAIL, on: [failure] }
YAML
run_ok "$T/run.json" "$T/run.err" -v run "$T/p.yml" --json
SNAP=$(json_get "$T/run.json" 'j["snapshot"]')
webhook_wait all 1
assert_eq success "$(webhook_body all 0 'b["event"]')" "event"
assert_eq success "$(webhook_body all 0 'b["status"]')" "status"
assert_eq notified "$(webhook_body all 0 'b["pipeline"]')" "pipeline"
assert_eq "$(hostname)" "$(webhook_body all 0 'b["host"]')" "host"
assert_eq "$SNAP" "$(webhook_body all 0 'b["snapshot"]')" "snapshot id"
assert_eq "$(json_get "$T/run.json" 'j["items"]')" "$(webhook_body all 0 'b["counts"]["items"]')" "counts.items"
assert_eq "$(json_get "$T/run.json" 'j["bytes_read"]')" "$(webhook_body all 0 'b["counts"]["bytes_read"]')" "counts.bytes_read"
assert_eq None "$(webhook_body all 0 'b["error"]')" "error of a success"
assert_eq "[]" "$(webhook_body all 0 'b["warnings"]')" "warnings"
assert_eq true "$(webhook_body all 0 'b["duration_seconds"] > 0')" "duration_seconds"
assert_eq 0 "$(webhook_body all 0 'b["exit_code"]')" "exit_code"
assert_eq "Bearer $HOOK_TOKEN" "Bearer $(webhook_body all 0 'r["headers"]["Authorization"]')" "the secret header"
assert_eq backup-ops "$(webhook_body all 0 'r["headers"]["X-Team"]')" "a literal header"
assert_eq application/json "$(webhook_body all 0 'r["headers"]["Content-Type"]')" "Content-Type"
assert_not_contains "$T/run.err" "$HOOK_TOKEN" "the log (-v)"
assert_not_contains "$T/run.json" "$HOOK_TOKEN" "the run's output"
# two 503s, then accepted: three requests, the run never noticed
webhook_wait fails 3
assert_eq "503 503 200" "$(webhook_all fails 'r["answered"]')" "answers"
assert_eq "$SNAP" "$(webhook_body fails 2 'b["snapshot"]')" "the retried body"
assert_contains "$T/run.err" "'success' sent (HTTP 200, attempt 3)" "the log says it took three attempts"
sleep 0.3
assert_eq 0 "$(webhook_count onlyfail)" "a webhook for failure only, after a success"

# ---- never fails the backup: unreachable, 500, slow --------------------------
dead=$(free_port)
webhook_start slow --delay 20
SLOW=$HOOK_URL
webhook_start broken --status 500
pipeline_with "$T/q.yml" quiet "$T/repo-q" "$T/src" <<YAML
notify:
  - { webhook: "http://127.0.0.1:$dead/nobody", timeout: 3s }
  - { webhook: $HOOK_URL, timeout: 3s, retries: 1 }
  - { webhook: $SLOW, timeout: 2s }
YAML
start=$(date +%s)
run_ok "$T/q.out" "$T/q.err" run "$T/q.yml"
elapsed=$(($(date +%s) - start))
[ "$elapsed" -le 14 ] || fail "three failing webhooks held the run for ${elapsed}s (timeouts 3+3+2 s)"
assert_contains "$T/q.err" "not delivered" "an undelivered notification is a warning"
assert_not_contains "$T/q.err" "/nobody" "the webhook's path (it may hold a token) in the log"
webhook_wait broken 2
assert_eq 500 "$(webhook_body broken 1 'r["answered"]')" "the 500 webhook was retried once"

# ---- failure, consecutive_failures, partial -----------------------------------
webhook_start streak
pipeline_with "$T/f.yml" failing "$T/repo-file" "$T/src" <<YAML
notify:
  - { webhook: $HOOK_URL, on: [failure, consecutive_failures, success], consecutive_failures: 2 }
YAML
echo "a file where the repository should be" >"$T/repo-file"
for i in 1 2 3; do
  run_engine "$T/f$i.out" "$T/f$i.err" run "$T/f.yml"
  assert_rc 1 "failing run $i" "$T/f$i.err"
done
webhook_wait streak 4
assert_eq "failure failure consecutive_failures failure" "$(webhook_all streak 'b["event"]')" \
  "events of three failures in a row (consecutive_failures once, at the 2nd)"
assert_eq 2 "$(webhook_body streak 2 'b["consecutive_failures"]')" "consecutive_failures count"
case "$(webhook_body streak 0 'b["error"]')" in *repo-file*) ;; *) fail "the failure body has no error: $(webhook_body streak 0 'b')" ;; esac
assert_eq failure "$(webhook_body streak 0 'b["status"]')" "status of a failure"
assert_eq None "$(webhook_body streak 0 'b["snapshot"]')" "snapshot of a failure"
# a success ends the streak: two more failures raise it again
rm "$T/repo-file"
run_ok "$T/ok.out" "$T/ok.err" run "$T/f.yml"
echo "again" >"$T/repo-file2"
sed -i "s|$T/repo-file\b|$T/repo-file2|" "$T/f.yml"
for i in 4 5; do run_engine "$T/f$i.out" "$T/f$i.err" run "$T/f.yml"; done
webhook_wait streak 8
assert_eq consecutive_failures "$(webhook_body streak 7 'b["event"]')" "a new streak after a success"

webhook_start partial
write_pipeline "$T/pp.yml" partly "$T/repo-pp" "$T/src" "$T/missing-path"
cat >>"$T/pp.yml" <<YAML
notify:
  - { webhook: $HOOK_URL }
YAML
run_engine "$T/pp.out" "$T/pp.err" run "$T/pp.yml"
assert_rc 3 "partial run" "$T/pp.err"
webhook_wait partial 1
assert_eq partial "$(webhook_body partial 0 'b["status"]')" "status of a partial run"
assert_eq 1 "$(webhook_body partial 0 'b["warnings_count"]')" "warnings_count"
case "$(webhook_body partial 0 'b["warnings"][0]["message"]')" in *"No such file"*|*exist*) ;; *) fail "the warning: $(webhook_body partial 0 'b["warnings"]')" ;; esac

# ---- storage_low ------------------------------------------------------------------
webhook_start storage
pipeline_with "$T/s.yml" fullfs "$T/repo-s" "$T/src" <<YAML
notify:
  - { webhook: $HOOK_URL, on: [storage_low], storage_threshold: 1% }
  - { webhook: $HOOK_URL, on: [storage_low], storage_threshold: 100% }
YAML
run_ok "$T/s.out" "$T/s.err" run "$T/s.yml"
webhook_wait storage 1
sleep 0.3
assert_eq 1 "$(webhook_count storage)" "storage_low: sent for 1%, not for 100%"
used=$(df --output=pcent "$T/repo-s" | tail -1 | tr -dc 0-9)
got=$(webhook_body storage 0 'b["used_percent"]')
[ $((got - used)) -le 1 ] && [ $((used - got)) -le 1 ] || fail "used_percent $got, df says $used"
assert_eq local "$(webhook_body storage 0 'b["sink"]')" "storage_low: the sink"
assert_eq 1 "$(webhook_body storage 0 'b["threshold_percent"]')" "storage_low: the threshold"
assert_contains "$T/s.err" "full (notify storage_threshold 1%)" "storage_low is also a warning in the log"

# ---- verify_failed ------------------------------------------------------------------
webhook_start verify
pipeline_with "$T/v.yml" verified "$T/repo-v" "$T/src" <<YAML
notify:
  - { webhook: $HOOK_URL, on: [verify_failed] }
YAML
run_ok "$T/v.out" "$T/v.err" run "$T/v.yml"
run_ok "$T/c.out" "$T/c.err" check "$T/v.yml"
sleep 0.3
assert_eq 0 "$(webhook_count verify)" "verify_failed after a sound check"
find "$T/repo-v/data" -type f | head -1 | xargs rm
run_engine "$T/c2.out" "$T/c2.err" check "$T/v.yml"
assert_rc 1 "check of a damaged repository" "$T/c2.out" "$T/c2.err"
webhook_wait verify 1
assert_eq verify_failed "$(webhook_body verify 0 'b["event"]')" "event"
assert_eq true "$(webhook_body verify 0 'b["problems_count"] >= 1')" "problems_count"
case "$(webhook_body verify 0 'b["problems"][0]["message"]')" in *pack*|*missing*|*data/*) ;; *) fail "problems: $(webhook_body verify 0 'b["problems"]')" ;; esac

# ---- engine notify, and the OnFailure= case -----------------------------------
webhook_start manual
pipeline_with "$T/m.yml" manual "$T/repo-m" "$T/src" <<YAML
notify:
  - { webhook: $HOOK_URL, on: [failure] }
YAML
run_ok "$T/n.out" "$T/n.err" notify "$T/m.yml" failure --message "unit failed"
webhook_wait manual 1
assert_eq "unit failed" "$(webhook_body manual 0 'b["message"]')" "manual message"
assert_eq true "$(webhook_body manual 0 'b["manual"]')" "manual flag"
run_engine "$T/n2.out" "$T/n2.err" notify "$T/m.yml" success
assert_rc 1 "notify for an event no webhook wants" "$T/n2.err"
run_engine "$T/n3.out" "$T/n3.err" notify "$T/m.yml" sucess
assert_rc 2 "notify with an unknown event" "$T/n3.err"
# a run under systemd (INVOCATION_ID) that failed and reported itself: the
# OnFailure= unit's notify (MONITOR_INVOCATION_ID) sends nothing
sed -i "s|$T/repo-m|$T/repo-file2|" "$T/m.yml"
INVOCATION_ID=0123456789abcdef0123456789abcdef run_engine "$T/r.out" "$T/r.err" run "$T/m.yml"
assert_rc 1 "failing run under systemd" "$T/r.err"
webhook_wait manual 2
MONITOR_INVOCATION_ID=0123456789abcdef0123456789abcdef MONITOR_SERVICE_RESULT=exit-code \
  run_ok "$T/n4.out" "$T/n4.err" notify "$T/m.yml" failure
assert_contains "$T/n4.out" "reported its outcome itself" "OnFailure= after a run that reported itself"
MONITOR_INVOCATION_ID=fedcba9876543210fedcba9876543210 MONITOR_SERVICE_RESULT=timeout \
  run_ok "$T/n5.out" "$T/n5.err" notify "$T/m.yml" failure
webhook_wait manual 3
assert_eq 3 "$(webhook_count manual)" "notifications: manual, the run's, the killed run's (not the reported one)"
assert_eq timeout "$(webhook_body manual 2 'b["systemd"]["service_result"]')" "systemd's result in the body"
note "PASS"
