#!/usr/bin/env bash
# Consistency of the mongodb source: on a replica set, every collection is
# read with read concern "snapshot" at one cluster time (the first read
# lets the server choose it, every later one names it), recorded in the
# manifest (consistency: cluster_time, cluster_time {t, i}) and in each
# data item's metadata. When the server refuses (a server before 5.0,
# snapshot history too short at a find or in the middle of a cursor), the
# run falls back to plain reads, says so in the manifest (consistency:
# none, consistency_note) and as a warning (snapshot partial, exit 3), and
# still holds every document. A standalone server gets no read concern at
# all (consistency: none, no warning).
#
# The server is tests/servers/mongowire.py pretending to be a replica-set
# primary: it logs the read concern of every find and refuses on demand.
# What it cannot show: that the reads at one cluster time really see the
# database as of one instant while writes go on (that needs a real replica
# set: no mongod can be installed here, and CongoDB is standalone); this
# test checks the requests the plugin makes and what it does with the
# answers. The same holds for the mongos case (a sharded cluster: the
# stand-in answers hello as a mongos; it has no shards behind it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mongo_lib.sh"
mongo_require

mpy - "$T" <<'EOF'
import sys, bson
for name, n in (("one", 3000), ("two", 500), ("three", 40)):
    with open("%s/%s.bson" % (sys.argv[1], name), "wb") as f:
        f.write(b"".join(bson.encode({"_id": i, "coll": name, "pad": "x" * 60}) for i in range(n)))
EOF
LOADS=(--load "a.one=$T/one.bson" --load "a.two=$T/two.bson" --load "b.three=$T/three.bson")

# every collection holds its documents, whatever the reads
check_data() { # SNAPSHOT-REF LABEL
  rm -rf "$T/dump"
  run_ok "$T/dump.out" "$T/dump.err" restore "$T/p.yml" "$1" --target "$T/dump"
  for f in a/one a/two b/three; do
    assert_files_equal "$T/$(basename "$f").bson" "$T/dump/$f.bson" "$2: $f"
  done
}

# ---- a replica set: one cluster time ---------------------------------------------------------
mongowire_start RS --replset rs0 "${LOADS[@]}"
mongo_pipeline "$T/p.yml" mongo-cons "$T/repo" "$RS_URI"
run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run1.json" 'j["status"]')" "status on a replica set"
run_ok "$T/show1.json" "$T/show1.err" show "$T/p.yml" latest --json
assert_eq cluster_time "$(json_get "$T/show1.json" 'j["sources"][0]["marks"]["consistency"]')" "consistency mark"
assert_eq '{"i": 7, "t": 1700000000}' "$(json_get "$T/show1.json" 'j["sources"][0]["marks"]["cluster_time"]')" "cluster_time mark"
assert_eq replica_set "$(json_get "$T/show1.json" 'j["sources"][0]["marks"]["topology"]')" "topology mark"
mpy - "$T/RS.wire.log" <<'EOF' || fail "the reads were not all at one cluster time"
import json, sys
finds = [json.loads(l) for l in open(sys.argv[1]) if '"find"' in l]
assert [f["ns"] for f in finds] == ["a.one", "a.two", "b.three"], finds
assert finds[0]["readConcern"] == {"level": "snapshot"}, finds[0]
for f in finds[1:]:
    assert f["readConcern"] == {"level": "snapshot", "atClusterTime": "Timestamp(1700000000, 7)"}, f
EOF
check_data latest "replica set"
note "replica set: every find at cluster time 1700000000.7, consistency cluster_time in the manifest"

# each data item says how and when it was read (tests/tools/engine_reader.py,
# an independent reader of the repository)
T=$T mpy - "$REPO_ROOT/tests/tools" "$T/repo" "$(json_get "$T/run1.json" 'j["snapshot"]')" <<'EOF' ||
import json, os, sys
sys.path.insert(0, sys.argv[1])
import engine_reader as er
r = er.Repo(sys.argv[2])
r.open(os.environ["ENGINE_PASSPHRASE"].encode())
r.load_index()
m = r.find_snapshot(sys.argv[3])
items = {er.get_bytes(it, "name", "item").decode(): it for it in r.items(m["sources"][0])}
counts = {"a/one.bson": 3000, "a/two.bson": 500, "b/three.bson": 40}
for name, n in counts.items():
    meta = items[name]["meta"]
    assert meta["consistency"] == "cluster_time", meta
    assert meta["cluster_time"] == {"t": 1700000000, "i": 7}, meta
    assert meta["count"] == n and meta["digest"].startswith("sha256-sum:"), meta
    assert meta["size"] == os.path.getsize(os.path.join(os.environ["T"], name.split("/")[1])), meta
    assert meta["server_version"] == "7.0.0-mongowire" and meta["driver_version"], meta
assert sorted(items) == sorted(list(counts) + ["a/one.metadata.json", "a/two.metadata.json",
                                               "b/three.metadata.json"]), sorted(items)
EOF
  fail "the data items do not record the cluster time"
run_ok "$T/rt.out" "$T/rt.err" check "$T/p.yml" --restore-test

# ---- refusals ----------------------------------------------------------------------------------
fallback() { # LABEL EXPECT-IN-WARNING MONGOWIRE-ARGS...
  local label=$1 expect=$2 name
  shift 2
  name=FB$RANDOM
  mongowire_start "$name" --replset rs0 "${LOADS[@]}" "$@"
  local uri_var=${name}_URI
  mongo_pipeline "$T/p.yml" mongo-cons "$T/repo" "${!uri_var}"
  run_engine "$T/$name.json" "$T/$name.err" run "$T/p.yml" --json
  assert_rc 3 "$label: a backup that fell back" "$T/$name.json" "$T/$name.err"
  assert_eq partial "$(json_get "$T/$name.json" 'j["status"]')" "$label: status"
  assert_contains "$T/$name.err" "$expect" "$label: warning"
  assert_contains "$T/$name.err" "so this snapshot is not consistent across collections (consistency: none)" "$label: warning"
  run_ok "$T/$name.show" "$T/$name.show.err" show "$T/p.yml" latest --json
  assert_eq none "$(json_get "$T/$name.show" 'j["sources"][0]["marks"]["consistency"]')" "$label: consistency mark"
  assert_contains "$T/$name.show" "snapshot reads refused from" "$label: consistency_note"
  check_data latest "$label"
  FB_LOG=$T/$name.wire.log
}
fallback "server before 5.0" "readConcern level snapshot is only valid in multi-statement transactions (server error 72)" --snapshot-refuse
grep -c '"readConcern": null' "$FB_LOG" | grep -qx 3 || { show "$FB_LOG"; fail "the collections were not read again without read concern"; }
fallback "history too short at a find" "refused reading b.three at one cluster time (Read timestamp is older than the oldest available timestamp (server error 239))" \
  --snapshot-too-old-after 1
fallback "history too short mid-cursor" "a/one.bson: reading a.one at cluster time 1700000000.7 failed after 16 documents" \
  --getmore-too-old-after 0
note "refused snapshot reads fall back to plain reads: partial, consistency none with the reason, every document kept"

# ---- a sharded cluster (mongos) -----------------------------------------------------------------
mongowire_start MS --mongos "${LOADS[@]}"
mongo_pipeline "$T/p.yml" mongo-cons "$T/repo" "$MS_URI"
run_ok "$T/ms.json" "$T/ms.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/ms.json" 'j["status"]')" "status through mongos"
run_ok "$T/ms.show" "$T/ms.show.err" show "$T/p.yml" latest --json
assert_eq sharded "$(json_get "$T/ms.show" 'j["sources"][0]["marks"]["topology"]')" "topology through mongos"
assert_eq cluster_time "$(json_get "$T/ms.show" 'j["sources"][0]["marks"]["consistency"]')" "consistency through mongos"
mpy - "$T/MS.wire.log" <<'EOF' || fail "the reads through mongos were not all at one cluster time"
import json, sys
finds = [json.loads(l) for l in open(sys.argv[1]) if '"find"' in l]
assert len(finds) == 3 and finds[0]["readConcern"] == {"level": "snapshot"}, finds
assert all(f["readConcern"].get("atClusterTime") == "Timestamp(1700000000, 7)" for f in finds[1:]), finds
EOF
check_data latest mongos
note "mongos: topology sharded, every find at one cluster time"

# ---- standalone ---------------------------------------------------------------------------------
mongowire_start SA "${LOADS[@]}"
mongo_pipeline "$T/p.yml" mongo-cons "$T/repo" "$SA_URI"
run_ok "$T/sa.json" "$T/sa.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/sa.json" 'j["status"]')" "status on a standalone server"
run_ok "$T/sa.show" "$T/sa.show.err" show "$T/p.yml" latest --json
assert_eq none "$(json_get "$T/sa.show" 'j["sources"][0]["marks"]["consistency"]')" "consistency on a standalone server"
assert_contains "$T/sa.show" "a standalone server has no snapshot reads" "consistency_note on a standalone server"
if grep -q '"level"' "$T/SA.wire.log"; then
  show "$T/SA.wire.log"
  fail "a read concern was sent to a standalone server"
fi
check_data latest standalone
note "standalone: no read concern, consistency none, complete"
