# shellcheck shell=bash
# Helpers of the operations tests (hooks, notifications, audit, schedule),
# sourced after lib.sh:
#   webhook_start NAME [ARGS...]
#                     tests/integration/webhook_receiver.py on a free loopback
#                     port: HOOK_URL (http://127.0.0.1:PORT/NAME), requests
#                     appended to $T/NAME.log (one JSON line each); ARGS go to
#                     the receiver (--fail-first N, --status S, --delay SEC);
#                     stopped when the test exits
#   webhook_count NAME            how many requests NAME received
#   webhook_wait NAME N           wait (10 s) until NAME received N requests
#   webhook_body NAME I EXPR      evaluate EXPR on request I's body `b` (0-based;
#                                 -1: the last one); `r` is the whole request
#   webhook_all NAME EXPR         EXPR on every request, separated by blanks
#   pipeline_with FILE NAME REPO SRC <<'YAML'
#                     write_pipeline plus the YAML of stdin appended

WEBHOOK_PIDS=()
_webhooks_stop() {
  local p
  for p in "${WEBHOOK_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}

webhook_start() {
  local name=$1
  shift
  rm -f "$T/$name.port" "$T/$name.log"
  : >"$T/$name.log"
  "$PYTHON" "$TESTS_INTEGRATION_DIR/webhook_receiver.py" --port-file "$T/$name.port" \
    --log "$T/$name.log" "$@" 2>"$T/$name.receiver.err" &
  [ ${#WEBHOOK_PIDS[@]} -gt 0 ] || at_exit _webhooks_stop
  WEBHOOK_PIDS+=("$!")
  local i
  for i in $(seq 1 100); do
    [ -s "$T/$name.port" ] && break
    sleep 0.05
  done
  [ -s "$T/$name.port" ] || { show "$T/$name.receiver.err"; fail "webhook receiver $name did not start"; }
  HOOK_URL="http://127.0.0.1:$(cat "$T/$name.port")/$name"
}

webhook_count() { wc -l <"$T/$1.log" | tr -d ' '; }

webhook_wait() {
  local i
  for i in $(seq 1 200); do
    [ "$(webhook_count "$1")" -ge "$2" ] && return 0
    sleep 0.05
  done
  show "$T/$1.log"
  fail "webhook $1 received $(webhook_count "$1") request(s), expected $2"
}

webhook_body() {
  "$PYTHON" - "$T/$1.log" "$2" "$3" <<'EOF' || fail "unable to evaluate '$3' on request $2 of $1"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
r = reqs[int(sys.argv[2])]
b = r["body"]
v = eval(sys.argv[3], {"r": r, "b": b})
if isinstance(v, (dict, list)):
    print(json.dumps(v, sort_keys=True))
elif isinstance(v, bool):
    print("true" if v else "false")
else:
    print(v)
EOF
}

webhook_all() {
  "$PYTHON" - "$T/$1.log" "$2" <<'EOF' || fail "unable to evaluate '$2' on the requests of $1"
import json, sys
out = []
for l in open(sys.argv[1]):
    if l.strip():
        r = json.loads(l)
        out.append(str(eval(sys.argv[2], {"r": r, "b": r["body"]})))
print(" ".join(out))
EOF
}

pipeline_with() {
  local file=$1
  write_pipeline "$@"
  cat >>"$file"
}
