#!/usr/bin/env bash
# A backup interrupted (SIGTERM) in the middle of a collection: the mongodb
# source reads each collection one batch ahead of the pipeline on a thread
# of its own, which sends the getMores itself; interrupted, that thread
# stops at its next batch and kills the server's cursor (killCursors naming
# it, so the server does not keep it until its cursor timeout), no getMore
# follows, the run ends promptly with exit 130 and writes no snapshot, and
# the snapshot before it restores intact. A second run reads every
# document of the same collection, batch after batch, byte for byte.
#
# The server is tests/servers/mongowire.py answering each getMore after
# 0.2 s, so that the collection takes over a minute to read (a large
# collection on a slow server) and the signal lands while it is read. What
# it cannot show: a real mongod's cursor bookkeeping (it only records the
# killCursors it gets and forgets the cursor).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mongo_lib.sh"
mongo_require

# b.big: 20,000 documents of ~1 KiB, read in batches of about 64 KiB
# (~330 getMores); a.small fits in the first batch
mpy - "$T" <<'EOF'
import sys, bson
with open("%s/big.bson" % sys.argv[1], "wb") as f:
    f.write(b"".join(bson.encode({"_id": i, "pad": "x" * (900 + i % 200)}) for i in range(20000)))
with open("%s/small.bson" % sys.argv[1], "wb") as f:
    f.write(b"".join(bson.encode({"_id": i, "v": "small"}) for i in range(10)))
EOF
mongowire_start W --getmore-delay 0.2 --load "a.small=$T/small.bson" --load "b.big=$T/big.bson"

# ---- a complete snapshot first ---------------------------------------------------------------
mongo_pipeline "$T/p.yml" mongo-cancel "$T/repo" "$W_URI" "databases: [a]"
run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run1.json" 'j["status"]')" "first run"
SNAP1=$(json_get "$T/run1.json" 'j["snapshot"]')

# ---- interrupted while b.big is read ---------------------------------------------------------
mongo_pipeline "$T/p.yml" mongo-cancel "$T/repo" "$W_URI" "databases: [a, b]" "batch_size: 64KiB"
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/p.yml" --json \
  >"$T/run2.json" 2>"$T/run2.err" </dev/null &
pid=$!
getmores() { grep -c '"op": "getMore", "ns": "b.big"' "$T/W.wire.log" 2>/dev/null || true; }
for _ in $(seq 1 600); do
  [ "$(getmores)" -ge 3 ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ "$(getmores)" -ge 3 ] || {
  show "$T/run2.err" "$T/W.wire.log"
  fail "the backup did not get to b.big's third getMore"
}
start=$(date +%s%N)
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/run2.err"; then
  show "$T/run2.err"
  fail "sanitizer report from the interrupted run"
fi
[ "$rc" -eq 130 ] || {
  show "$T/run2.json" "$T/run2.err"
  fail "the interrupted run exited with $rc, expected 130"
}
note "interrupted after $(getmores) getMores of b.big; the run ended $ms ms after SIGTERM"
assert_lt "$ms" 15000 "milliseconds from SIGTERM to the end of the run"
# the cursor of b.big was killed, and no getMore followed
mpy - "$T/W.wire.log" <<'EOF' || { show "$T/W.wire.log"; fail "the server's cursor was not killed"; }
import json, sys
log = [json.loads(l) for l in open(sys.argv[1])]
gm = [i for i, e in enumerate(log) if e["op"] == "getMore" and e["ns"] == "b.big"]
cid = log[gm[0]]["cursor"]
kills = [i for i, e in enumerate(log) if e["op"] == "killCursors"]
assert kills, "no killCursors"
k = kills[0]
assert log[k]["ns"] == "b.big" and log[k]["cursors"] == [cid], log[k]
assert all(i < k for i in gm), "a getMore after killCursors"
assert len(gm) < 300, "%d getMores: the reading did not stop" % len(gm)
EOF
run_ok "$T/snaps.json" "$T/snaps.err" snapshots "$T/p.yml" --json
assert_eq 1 "$(json_get "$T/snaps.json" 'len(j)')" "snapshots after the interrupted run"
rm -rf "$T/dump"
run_ok "$T/r1.out" "$T/r1.err" restore "$T/p.yml" "$SNAP1" --target "$T/dump"
assert_files_equal "$T/small.bson" "$T/dump/a/small.bson" "a.small from the first snapshot"

# ---- the whole collection, batch after batch -------------------------------------------------
# (a short delay: ~330 getMores)
_mongowire_stop W "$(cat "$T/W.wire.pid")"
rm -f "$T/W.wire.pid"
mongowire_start W2 --load "a.small=$T/small.bson" --load "b.big=$T/big.bson"
mongo_pipeline "$T/p.yml" mongo-cancel "$T/repo" "$W2_URI" "databases: [a, b]" "batch_size: 64KiB"
run_ok "$T/run3.json" "$T/run3.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run3.json" 'j["status"]')" "a whole run"
n=$(grep -c '"op": "getMore", "ns": "b.big"' "$T/W2.wire.log")
note "b.big read in $n getMores"
assert_lt 200 "$n" "getMores of b.big (batches of about 64 KiB)"
rm -rf "$T/dump"
run_ok "$T/r3.out" "$T/r3.err" restore "$T/p.yml" latest --target "$T/dump"
assert_files_equal "$T/big.bson" "$T/dump/b/big.bson" "b.big"
assert_files_equal "$T/small.bson" "$T/dump/a/small.bson" "a.small"
note "ok"
