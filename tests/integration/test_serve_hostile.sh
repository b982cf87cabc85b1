#!/usr/bin/env bash
# engine serve against hostile clients.
#
# 1. Slow headers (token mode): 40 connections from 127.0.0.1, then 300
#    from as many other loopback addresses (127.0.1.1 ...), trickle one
#    byte of a request head per second. At most 8 connections per client address
#    without an authenticated request stay open, at most 256 in all (a new
#    one closes the oldest), a client with the token is answered at once
#    from 127.0.0.1 and from a new address, and every trickling connection
#    is closed at the 10 s head deadline although bytes keep arriving.
# 2. Without a token: a POST with a foreign Origin (cross-site request
#    forgery), a foreign Host (DNS rebinding, also for a GET), the original
#    attack (a form with both), and same-origin POSTs with a form, text or
#    no content type are refused (403 / 415) and start no backup; the
#    same-origin JSON POST starts one.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

command -v curl >/dev/null 2>&1 || fail "curl is required"

HELPER_PIDS=()
_hostile_cleanup() {
  local p
  for p in "${HELPER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
at_exit _hostile_cleanup

# start_server NAME ARGS...: lib.sh's serve_start; sets SRV_PID, PORT and URL.
start_server() {
  serve_start "$@"
  PORT=$SRV_PORT
}
# stop_server NAME PID: SIGTERM, wait, expect exit status 0 and no sanitizer report.
stop_server() { serve_stop "$@"; }

# req METHOD PATH [CURL ARGS...]: body in $T/body, status in $CODE
req() {
  local method=$1 path=$2
  shift 2
  CODE=$(curl -s --max-time 10 -o "$T/body" -w '%{http_code}' -X "$method" "$@" "$URL$path") || CODE=000
}

expect() { # CODE WHAT
  if [ "$CODE" != "$1" ]; then
    show "$T/body"
    fail "$2: HTTP $CODE, expected $1"
  fi
}

mkdir -p "$T/conf.d" "$T/src"
random_file "$T/src/data.bin" 2
write_pipeline "$T/conf.d/alpha.yml" alpha "$T/repo" "$T/src"

# ---- 1. slow headers ------------------------------------------------------------
TOKEN=tok-$RANDOM-$RANDOM-secret
printf '%s\n' "$TOKEN" >"$T/token"
chmod 0600 "$T/token"
start_server tok --listen 127.0.0.1:0 --config-dir "$T/conf.d" --token-file "$T/token"
TOK_PID=$SRV_PID

# trickle.py PORT OUT READY SECONDS: opens 40 connections from 127.0.0.1,
# notes after 0.5 s how many are still open, opens 300 from other addresses,
# writes READY, sends one byte of a never-ending head per connection and
# second, and after SECONDS writes OUT: {"same_open": N, "conns": [...]}
# with per connection (in the order opened) its kind, the bytes it sent and
# when (seconds after it was opened) the server closed it, or null.
cat >"$T/trickle.py" <<'EOF'
import json, selectors, socket, sys, time
port, out, ready, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
head = b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Slow: " % port + b"x" * 4000
sel = selectors.DefaultSelector()
conns = []
def open_one(src, kind):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    c = {"kind": kind, "sock": s, "opened": time.monotonic(), "closed": None, "sent": 0}
    conns.append(c)
    sel.register(s, selectors.EVENT_READ, c)
def gone(c, now):
    if c["closed"] is None:
        c["closed"] = now - c["opened"]
        sel.unregister(c["sock"])
        c["sock"].close()
def trickle(now):
    for c in conns:
        if c["closed"] is None:
            try:
                c["sock"].send(head[c["sent"]:c["sent"] + 1])
                c["sent"] += 1
            except OSError:
                gone(c, now)
def pump(until):  # notice closed connections until then
    while True:
        now = time.monotonic()
        if now >= until or not sel.get_map():
            return
        for key, _ in sel.select(timeout=until - now):
            try:
                data = key.data["sock"].recv(65536)
            except OSError:
                data = b""
            if not data:
                gone(key.data, time.monotonic())
for i in range(40):
    open_one("127.0.0.1", "same")
trickle(time.monotonic())
pump(time.monotonic() + 0.5)
same_open = sum(1 for c in conns if c["closed"] is None)
for i in range(300):
    open_one("127.0.%d.%d" % (1 + i // 250, 1 + i % 250), "distinct")
start = time.monotonic()
trickle(start)
open(ready, "w").close()
tick = start + 1
while time.monotonic() - start < seconds and sel.get_map():
    pump(min(tick, start + seconds))
    if time.monotonic() >= tick:
        trickle(time.monotonic())
        tick += 1
json.dump({"same_open": same_open,
           "conns": [{"kind": c["kind"], "closed": c["closed"], "sent": c["sent"]} for c in conns]},
          open(out, "w"))
EOF
t_attack=$(date +%s)
"$PYTHON" "$T/trickle.py" "$PORT" "$T/trickle.json" "$T/trickle.ready" 15 2>"$T/trickle.err" &
TRICKLE_PID=$!
HELPER_PIDS+=("$TRICKLE_PID")
for _ in $(seq 1 100); do
  [ -e "$T/trickle.ready" ] && break
  kill -0 "$TRICKLE_PID" 2>/dev/null || { show "$T/trickle.err"; fail "the trickling client exited early"; }
  sleep 0.1
done
[ -e "$T/trickle.ready" ] || fail "the trickling client did not open its connections within 10 s"
sleep 1

# the client with the token is answered at once, from the attackers' address
# and from one of its own
AUTH=(-H "Authorization: Bearer $TOKEN")
for src in 127.0.0.1 127.0.3.1; do
  out=$(curl -s --max-time 5 --interface "$src" -o "$T/body" -w '%{http_code} %{time_total}' "${AUTH[@]}" "$URL/v1/status") || out="000 5"
  code=${out% *}
  secs=${out#* }
  [ "$code" = 200 ] || { show "$T/body" "$T/tok.err"; fail "GET /v1/status with the token from $src during the attack: HTTP $code, expected 200"; }
  "$PYTHON" -c "import sys; sys.exit(0 if float('$secs') < 3 else 1)" ||
    fail "GET /v1/status with the token from $src took $secs s during the attack (expected under 3 s)"
done
# a kept-alive authenticated connection is not closed to make room: two
# requests, the second after 50 more connections of the attackers' kind
"$PYTHON" - "$PORT" "$TOKEN" >"$T/keepalive" <<'EOF'
import socket, sys, time
port, token = int(sys.argv[1]), sys.argv[2]
req = ("GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n\r\n"
       % (port, token)).encode()
def answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            b = s.recv(65536)
        except OSError:
            b = b""
        if not b:
            return "closed"
        data += b
    hdr, _, body = data.partition(b"\r\n\r\n")
    n = int([l.split(b":")[1] for l in hdr.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < n:
        body += s.recv(65536)
    return hdr.split(b"\r\n")[0].decode()
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(req)
first = answer(s)
others = []
for i in range(50):
    o = socket.socket()
    o.bind(("127.0.4.%d" % (1 + i), 0))
    o.connect(("127.0.0.1", port))
    o.sendall(b"G")
    others.append(o)
time.sleep(0.3)
try:
    s.sendall(req)
    second = answer(s)
except OSError as e:
    second = "closed (%s)" % e
print(first + " / " + second)
EOF
assert_eq "HTTP/1.1 200 OK / HTTP/1.1 200 OK" "$(cat "$T/keepalive")" "two requests on a kept-alive authenticated connection during the attack"

wait "$TRICKLE_PID" || { show "$T/trickle.err"; fail "the trickling client failed"; }
res() { json_get "$T/trickle.json" "$1"; }
# per client address: of the 40 connections from 127.0.0.1, 8 stay open
assert_eq 8 "$(res 'j["same_open"]')" "connections from one address without an authenticated request"
# in all: at most 256; a new connection closes the oldest (closed early:
# within 5 s, i.e. not by the head deadline)
EARLY='c["closed"] is not None and c["closed"] <= 5'
n_early=$(res "sum(1 for c in j['conns'] if $EARLY)")
n_early_d=$(res "sum(1 for c in j['conns'] if c['kind'] == 'distinct' and $EARLY)")
[ "$n_early_d" -ge 44 ] || fail "only $n_early_d of the 300 connections from other addresses were closed to make room (expected 44 or more: 256 in all)"
assert_eq true "$(res "(lambda d: all($EARLY for c in d[:$n_early_d]))([c for c in j['conns'] if c['kind'] == 'distinct'])")" \
  "the connections closed to make room are the oldest"
# the head deadline: every other connection is closed 10 s after it was
# opened although it kept sending
late=$(res "(lambda t: '%d still open, closed after %.1f..%.1f s' % (sum(1 for c in j['conns'] if c['closed'] is None), min(t or [0]), max(t or [0])))([c['closed'] for c in j['conns'] if c['closed'] is not None and not ($EARLY)])")
n_late=$(res "sum(1 for c in j['conns'] if not ($EARLY))")
[ "$n_late" -ge 150 ] || fail "only $n_late trickling connections lasted until the head deadline (expected 150 or more)"
assert_eq 0 "$(res "sum(1 for c in j['conns'] if not ($EARLY) and (c['closed'] is None or not 9.0 <= c['closed'] <= 13.0 or c['sent'] < 9))")" \
  "trickling connections not closed 9..13 s after they opened by the 10 s head deadline ($late)"
# the server still answers, and stops cleanly
req GET /v1/status "${AUTH[@]}"
expect 200 "GET /v1/status after the attack"
stop_server tok "$TOK_PID"
# its warnings (at most one of each kind per 10 s, the rest at the stop) count them all
logged() { # TEXT: the sum of N in "closed N connection(s) TEXT"
  sed -n "s/.*serve: closed \([0-9]*\) connection(s) $1.*/\1/p" "$T/tok.err" | awk '{ s += $1 } END { print s + 0 }'
}
assert_eq "$n_early" "$(logged 'to make room for new ones')" "connections closed to make room, as the log says"
assert_eq "$n_late" "$(logged 'that did not send a complete request head within 10000 ms')" "connections closed at the head deadline, as the log says"
[ "$(grep -c 'serve: closed' "$T/tok.err")" -le 6 ] || { show "$T/tok.err"; fail "more warnings about closed connections than one of each kind per 10 s"; }
note "slow headers: $n_early connections closed to make room, $n_late at the head deadline ($(($(date +%s) - t_attack)) s)"

# ---- 2. no token: cross-site requests -------------------------------------------
start_server open --listen 127.0.0.1:0 --config-dir "$T/conf.d"
OPEN_PID=$SRV_PID
JSON=(-H 'Content-Type: application/json')
SAME="http://127.0.0.1:$PORT"
EVIL=evil.example:$PORT

no_job() { # WHAT: no job was started and the repository holds nothing
  req GET /v1/jobs
  expect 200 "GET /v1/jobs after $1"
  assert_eq 0 "$(json_get "$T/body" 'len(j["jobs"])')" "jobs after $1"
  # (the server reads each pipeline's status at start; the local sink
  # creates the empty directory then, but no object)
  [ -z "$(ls -A "$T/repo" 2>/dev/null)" ] || fail "a backup wrote the repository after $1"
}

req POST /v1/pipelines/alpha/run "${JSON[@]}" -H "Origin: http://evil.example"
expect 403 "a JSON POST with a foreign Origin"
assert_contains "$T/body" "Origin 'http://evil.example' is not this server" "the 403 names the Origin"
no_job "a POST with a foreign Origin"

req POST /v1/pipelines/alpha/run "${JSON[@]}" -H "Host: $EVIL"
expect 403 "a JSON POST with a foreign Host (DNS rebinding)"
assert_contains "$T/body" "Host '$EVIL' does not name this server" "the 403 names the Host"
no_job "a POST with a foreign Host"

req GET /v1/pipelines -H "Host: $EVIL"
expect 403 "a GET with a foreign Host (DNS rebinding reads the answer)"
assert_not_contains "$T/body" "alpha.yml" "the refused answer"

req POST /v1/pipelines/alpha/run -H "Host: $EVIL" -H "Origin: http://$EVIL" \
  -H 'Content-Type: application/x-www-form-urlencoded' --data 'x=1'
expect 403 "a form POST with a foreign Origin and Host"
no_job "a form POST with a foreign Origin and Host"

req POST /v1/pipelines/alpha/run -H "Origin: null" "${JSON[@]}"
expect 403 "a POST with Origin null (a sandboxed page)"
no_job "a POST with Origin null"

req POST /v1/pipelines/alpha/run -H "Origin: $SAME" -H 'Content-Type: application/x-www-form-urlencoded' --data 'x=1'
expect 415 "a same-origin form POST"
assert_contains "$T/body" "Content-Type: application/json" "the 415 names the header"
no_job "a same-origin form POST"
req POST /v1/pipelines/alpha/run -H 'Content-Type: text/plain' --data '{}'
expect 415 "a POST with text/plain"
no_job "a POST with text/plain"
req POST /v1/pipelines/alpha/run
expect 415 "a POST without Content-Type"
no_job "a POST without Content-Type"

# the names of this server are accepted
req GET /v1/status -H "Host: localhost:$PORT" -H "Origin: http://localhost:$PORT"
expect 200 "GET with Host and Origin localhost"
req GET /v1/status -H "Host: [::1]:$PORT"
expect 200 "GET with Host [::1]"

# the same-origin JSON POST starts the backup
req POST /v1/pipelines/alpha/run -H "Origin: $SAME" -H 'Content-Type: application/json; charset=utf-8'
expect 202 "a same-origin JSON POST"
JOB=$(json_get "$T/body" 'j["job"]')
for _ in $(seq 1 300); do
  req GET "/v1/jobs/$JOB"
  state=$(json_get "$T/body" 'j["state"]')
  [ "$state" = running ] || [ "$state" = queued ] || break
  sleep 0.2
done
[ "$state" = succeeded ] || { show "$T/body"; fail "job $JOB ended '$state', expected succeeded"; }
run_ok "$T/snaps" "$T/e" snapshots "$T/conf.d/alpha.yml" --json
assert_eq 1 "$(json_get "$T/snaps" 'len(j)')" "snapshots after the one accepted POST"
stop_server open "$OPEN_PID"
note "serve refuses slow headers and cross-site requests"
