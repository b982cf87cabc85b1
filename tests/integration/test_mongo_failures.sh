#!/usr/bin/env bash
# mongodb source failure cases, each with a clear message that names the
# option or the server: an unreachable server (refused, and one that never
# answers: bounded by the `timeout` option, not the driver's 30 s), an
# authentication failure (the password never printed), a password written
# in the uri (refused) and a uri given as a secret reference, TLS against
# a server that does not speak it and a missing CA file, globs matching
# nothing (warning, exit 3), a collection dropped during the backup
# (warning, exit 3), the server killed in the middle of a cursor (that
# collection fails, the snapshot is partial, the earlier snapshot is
# intact), and the server killed in the middle of a restore (exit 3, the
# message says what the collection holds).
#
# Servers: CongoDB (tests/servers/congodb.sh) and the raw-BSON stand-in
# tests/servers/mongowire.py. What they cannot show: CongoDB cannot do
# SCRAM at all (it answers saslStart with an empty "done" that the driver
# refuses, reported as an authentication failure whatever the password),
# so a server refusing the password (AuthenticationFailed, code 18) is
# mongowire's answer; no TLS server is available (the handshake against a
# plain server is what fails here; certificate errors are the driver's
# messages); CongoDB keeps whole results in memory, so a real server dying
# mid-cursor also loses its cursor the same way, but a network partition
# (no RST) is bounded only by socketTimeoutMS (5 minutes by default).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mongo_lib.sh"
mongo_require

# ---- unreachable -----------------------------------------------------------------------------
closed=$(free_port)
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "mongodb://127.0.0.1:$closed/" "timeout: 2s"
t0=$(date +%s)
run_engine "$T/u1.out" "$T/u1.err" run "$T/p.yml"
assert_rc 1 "backup from a closed port" "$T/u1.err"
assert_contains "$T/u1.err" "unable to reach MongoDB at 127.0.0.1:$closed within 2 s (option 'timeout'" "unreachable server"
assert_contains "$T/u1.err" "connection refused" "unreachable server: the cause"
silent=$(free_port)
"$MPY" -c "
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8); conns = []
while True:
    c, _ = s.accept(); conns.append(c)" "$silent" &
at_exit kill_quiet $!
sleep 0.3
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "mongodb://127.0.0.1:$silent/" "timeout: 2s"
t0=$(date +%s)
run_engine "$T/u2.out" "$T/u2.err" run "$T/p.yml"
el=$(($(date +%s) - t0))
assert_rc 1 "backup from a server that never answers" "$T/u2.err"
assert_contains "$T/u2.err" "unable to reach MongoDB at 127.0.0.1:$silent within 2 s" "silent server"
[ "$el" -le 10 ] || fail "a server that never answers took $el s to give up (timeout: 2s)"
note "unreachable: refused at once, a silent server given up after ${el} s (timeout: 2s)"

# ---- authentication, passwords -----------------------------------------------------------------
export MONGO_PW='n0t-Th3-pa55word'
mongowire_start AUTH --auth-fail
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "mongodb://backup@127.0.0.1:$AUTH_PORT/" "password: 'env:MONGO_PW'"
run_engine "$T/a1.out" "$T/a1.err" run "$T/p.yml"
assert_rc 1 "wrong password" "$T/a1.err"
assert_contains "$T/a1.err" "authentication failed for user 'backup' on 127.0.0.1:$AUTH_PORT; check the user, the password (option 'password') and authSource" "authentication failure"
assert_contains "$T/a1.err" "Authentication failed." "the server's own words"
assert_not_contains "$T/a1.err" "$MONGO_PW" "the password in a message"
congodb_start C
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "mongodb://backup@127.0.0.1:$C_PORT/" "password: 'env:MONGO_PW'"
run_engine "$T/a2.out" "$T/a2.err" run "$T/p.yml"
assert_rc 1 "SCRAM against CongoDB (which cannot)" "$T/a2.err"
assert_contains "$T/a2.err" "authentication failed for user 'backup'" "CongoDB's non-answer reported as an authentication failure"
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "mongodb://backup:$MONGO_PW@127.0.0.1:$C_PORT/"
run_engine "$T/a3.out" "$T/a3.err" run "$T/p.yml"
assert_rc 1 "a password in the uri" "$T/a3.err"
assert_contains "$T/a3.err" "option 'uri' contains a password, which must not be written in a pipeline" "password in the uri"
assert_not_contains "$T/a3.err" "$MONGO_PW" "the password of the uri in a message"
export MONGO_URI="mongodb://127.0.0.1:$C_PORT/"
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "env:MONGO_URI"
mpy -c "import pymongo, sys; pymongo.MongoClient(sys.argv[1]).app.t.insert_one({'x': 1})" "$C_URI"
run_ok "$T/a4.json" "$T/a4.err" run "$T/p.yml" --json
run_engine "$T/a5.out" "$T/a5.err" restore "$T/p.yml" latest --only mongo/app --target "mongodb://u:$MONGO_PW@127.0.0.1:$C_PORT/"
assert_rc 1 "a password in --target" "$T/a5.err"
assert_contains "$T/a5.err" "--target contains a password" "password in --target"
assert_not_contains "$T/a5.err" "$MONGO_PW" "the password of --target in a message"
note "authentication refused (password never printed), passwords in uri/--target refused, uri as a secret reference works"

# ---- TLS -----------------------------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 1 \
  -subj "/CN=engine-test-ca" >/dev/null 2>&1 || fail "openssl could not make a CA"
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "$C_URI" "tls_ca_file: $(yq "$T/ca.pem")" "timeout: 2s"
run_engine "$T/t1.out" "$T/t1.err" run "$T/p.yml"
assert_rc 1 "TLS to a plain server" "$T/t1.err"
assert_contains "$T/t1.err" "TLS connection to 127.0.0.1:$C_PORT failed" "TLS failure"
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "$C_URI" "tls_ca_file: $(yq "$T/missing.pem")"
run_engine "$T/t2.out" "$T/t2.err" run "$T/p.yml"
assert_rc 1 "a missing CA file" "$T/t2.err"
assert_contains "$T/t2.err" "option 'tls_ca_file': unable to read '$T/missing.pem': No such file or directory" "missing CA file"
note "TLS: a failed handshake and a missing CA file are named"

# ---- globs matching nothing; a collection dropped during the backup ---------------------------------
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "$C_URI" "databases: [app, 'nosuch*']" \
  "collections: ['app.*', 'app.nothing*']"
run_engine "$T/g.json" "$T/g.err" run "$T/p.yml" --json
assert_rc 3 "globs matching nothing" "$T/g.json" "$T/g.err"
assert_contains "$T/g.err" "database glob 'nosuch*' matches no database on 127.0.0.1:$C_PORT" "database glob warning"
assert_contains "$T/g.err" "collection glob 'app.nothing*' matches no collection of the selected databases" "collection glob warning"
assert_eq 2 "$(json_get "$T/g.json" 'j["items"]')" "app.t stored all the same"
mpy - "$T" <<'EOF'
import sys, bson
for name in ("one", "two"):
    open("%s/%s.bson" % (sys.argv[1], name), "wb").write(
        b"".join(bson.encode({"_id": i}) for i in range(10)))
EOF
mongowire_start DROP --load "a.one=$T/one.bson" --load "a.two=$T/two.bson" --on-find-drop one=two
mongo_pipeline "$T/p.yml" mongo-f "$T/repo" "$DROP_URI"
run_engine "$T/d.json" "$T/d.err" run "$T/p.yml" --json
assert_rc 3 "a collection dropped during the backup" "$T/d.json" "$T/d.err"
assert_contains "$T/d.err" "collection a.two was dropped during the backup; it is not in this snapshot" "dropped collection warning"
note "globs matching nothing and a dropped collection: warnings, exit 3, the rest stored"

# ---- the server killed in the middle of a cursor ------------------------------------------------------
congodb_start K
mpy - "$K_URI" <<'EOF' || fail "seeding failed"
import sys, pymongo
c = pymongo.MongoClient(sys.argv[1])
c.app.small.insert_many([{"i": i} for i in range(100)])
for k in range(10):
    c.big.docs.insert_many([{"i": k * 10000 + j, "pad": "p" * 100} for j in range(10000)])
EOF
mongo_pipeline "$T/k.yml" mongo-k "$T/krepo" "$K_URI" "batch_size: 64KiB"
run_ok "$T/k1.json" "$T/k1.err" run "$T/k.yml" --json
first=$(json_get "$T/k1.json" 'j["snapshot"]')
mongo_pipeline "$T/k2s.yml" mongo-k "$T/krepo" "$K_URI" "batch_size: 64KiB" "timeout: 2s"
run_engine "$T/u3.out" "$T/u3.err" restore "$T/k2s.yml" "$first" --only mongo/app --target "mongodb://127.0.0.1:$closed/"
assert_rc 1 "restore into an unreachable server" "$T/u3.err"
assert_contains "$T/u3.err" "unable to reach MongoDB at 127.0.0.1:$closed within 2 s" "restore into an unreachable server"
( rc=0
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" -v -v run "$T/k.yml" --json >"$T/k2.json" \
    2>"$T/k2.err" </dev/null || rc=$?
  echo "$rc" >"$T/k2.rc" ) &
runner=$!
for i in $(seq 1 1000); do
  grep -q "reading big.docs" "$T/k2.err" 2>/dev/null && break
  sleep 0.01
done
grep -q "reading big.docs" "$T/k2.err" || { show "$T/k2.err"; fail "the backup never started reading big.docs"; }
congodb_kill K
wait "$runner" || true
RC=$(cat "$T/k2.rc")
assert_rc 3 "a backup whose server died mid-cursor" "$T/k2.json" "$T/k2.err"
assert_contains "$T/k2.err" "reading collection big.docs failed after" "the collection that failed"
assert_contains "$T/k2.err" "what was read is not kept" "what happens to what was read"
n=$(sed -n 's/.*big.docs failed after \([0-9]*\) documents.*/\1/p' "$T/k2.err" | head -1)
[ -n "$n" ] && [ "$n" -gt 0 ] && [ "$n" -lt 100000 ] || { show "$T/k2.err"; fail "the server did not die mid-cursor ($n documents read)"; }
assert_eq partial "$(json_get "$T/k2.json" 'j["status"]')" "status of the interrupted backup"
run_ok "$T/kc.out" "$T/kc.err" check "$T/k.yml" --read-data
run_ok "$T/kr.out" "$T/kr.err" restore "$T/k.yml" "$first" --target "$T/kdump"
mpy - "$T/kdump" <<'EOF' || fail "the earlier snapshot does not restore whole"
import sys, bson
n = sum(1 for _ in bson.decode_file_iter(open(sys.argv[1] + "/big/docs.bson", "rb")))
m = sum(1 for _ in bson.decode_file_iter(open(sys.argv[1] + "/app/small.bson", "rb")))
assert (n, m) == (100000, 100), (n, m)
EOF
note "server killed after $n of 100000 documents: that collection failed, snapshot partial, the earlier snapshot restores whole"

# ---- the server killed in the middle of a restore ---------------------------------------------------------
congodb_start R
# one watching client (not one per poll: starting pymongo takes longer than
# the restore of 100,000 documents on a fast machine), connected before the
# restore starts, kills the server as soon as it holds some of the documents
"$MPY" - "$R_URI" "$(cat "$T/R/congodb.pid")" "$T/watch.ready" >"$T/watch.out" 2>&1 <<'EOF' &
import os, signal, sys, time, pymongo
c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=2000)
c.admin.command("ping")
open(sys.argv[3], "w").close()
end = time.time() + 60
while time.time() < end:
    if c.big.docs.estimated_document_count() > 1000:
        os.kill(int(sys.argv[2]), signal.SIGKILL)
        sys.exit(0)
    time.sleep(0.002)
sys.exit(1)
EOF
watcher=$!
at_exit kill_quiet "$watcher"
for i in $(seq 1 200); do
  [ -e "$T/watch.ready" ] && break
  sleep 0.05
done
[ -e "$T/watch.ready" ] || { show "$T/watch.out"; fail "the watching client did not connect"; }
( rc=0
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" -v -v restore "$T/k.yml" "$first" --only mongo/big \
    --target "$R_URI" >"$T/r.out" 2>"$T/r.err" </dev/null || rc=$?
  echo "$rc" >"$T/r.rc" ) &
runner=$!
wait "$watcher" || { show "$T/watch.out" "$T/r.err"; fail "the restore never put documents into the server"; }
congodb_kill R
wait "$runner" || true
RC=$(cat "$T/r.rc")
assert_rc 3 "a restore whose server died" "$T/r.out" "$T/r.err"
assert_contains "$T/r.err" "restoring big.docs into big.docs on 127.0.0.1:$R_PORT is INCOMPLETE: inserting failed" "restore failure"
assert_contains "$T/r.err" "The collection holds them now: drop it, or restore again with --drop-existing" "what the target holds"
note "server killed during a restore: exit 3, the message says the collection is incomplete"
