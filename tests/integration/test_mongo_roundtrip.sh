#!/usr/bin/env bash
# mongodb source round trip on CongoDB (tests/servers/congodb.sh), checked
# with pymongo, not the engine: several databases and collections (a name
# that mongodump escapes, an empty collection), unique / compound /
# multikey / TTL / sparse / partial indexes; back up; the mongodump
# directory (--target DIR) read by bson.decode_file_iter and its metadata
# files against mongodump's layout; --to-stdout; restore into a second
# server and into the source after a drop (documents byte for byte, in
# order, and indexes equal); a non-empty collection refused (exit 3, named,
# nothing changed); --drop-existing (asks, --yes); --as NEWDB and
# --as NEWDB.NEWCOLL; check --restore-test passes, and fails when a
# document goes missing; an unchanged second backup stores almost nothing.
#
# What CongoDB cannot show (see also test_mongo_fidelity.sh and
# test_mongo_consistency.sh, on the raw-BSON stand-in): it is standalone
# (consistency "none", no snapshot reads); it keeps no collection options,
# views or validators; its indexes keep only name, key, unique, sparse and
# expireAfterSeconds (a partial index loses its filter on the source
# already, so both servers agree without it); it re-encodes numbers, so the
# documents here use only types it keeps as they are; its listCollections
# invents a new uuid on every call.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mongo_lib.sh"
mongo_require

congodb_start A
congodb_start B
note "CongoDB A on $A_PORT, B on $B_PORT"

mpy - "$A_URI" <<'EOF' || fail "seeding CongoDB A failed"
import sys, datetime, pymongo
from bson import ObjectId
c = pymongo.MongoClient(sys.argv[1])
t0 = datetime.datetime(2024, 1, 1)
app = c.app
app.users.insert_many([{
    "name": "user%05d" % i, "age": i % 97, "email": "u%d@example.org" % i,
    "score": i * 0.25 + 0.1, "active": i % 3 == 0, "created": t0 + datetime.timedelta(minutes=i),
    "tags": ["t%d" % (i % 5), "all"], "address": {"city": "c%d" % (i % 40), "zip": "%05d" % i},
    "ref": ObjectId("65a1b2c3d4e5f6071829%04x" % i), "note": None} for i in range(3000)])
app.users.create_index([("email", 1)], unique=True)
app.users.create_index([("name", 1), ("age", -1)])
app.orders.insert_many([{"user": "user%05d" % (i % 3000), "total": i * 1.5 + 0.25,
                         "items": [{"sku": "s%d" % (i % 50), "qty": 1 + i % 4}],
                         "at": t0 + datetime.timedelta(hours=i)} for i in range(20000)])
app.orders.create_index([("user", 1), ("at", -1)])
app.orders.create_index("items.sku")
app.sessions.insert_many([{"sid": "s%d" % i, "at": t0} for i in range(20)])
app.sessions.create_index("at", expireAfterSeconds=3600)
app.create_collection("empty")
app.empty.create_index("k", unique=True)
crm = c.crm
crm.contacts.insert_many([{"n": i, "phone": ("+1-555-%04d" % i) if i % 2 else None}
                          for i in range(500)])
crm.contacts.create_index("phone", sparse=True)
crm.contacts.create_index("n", partialFilterExpression={"n": {"$gt": 10}})
c.logs["events/2024 q1"].insert_many([{"i": i, "msg": "event %d" % i} for i in range(100)])
EOF

mongo_pipeline "$T/p.yml" mongo-rt "$T/repo" "$A_URI"
run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run1.json" 'j["status"]')" "status of the first backup"
# 6 collections: a metadata item and a data item each
assert_eq 12 "$(json_get "$T/run1.json" 'j["items"]')" "items of the first backup"
run_ok "$T/show.json" "$T/show.err" show "$T/p.yml" latest --json
assert_eq none "$(json_get "$T/show.json" 'j["sources"][0]["marks"]["consistency"]')" "consistency on a standalone server"
assert_eq standalone "$(json_get "$T/show.json" 'j["sources"][0]["marks"]["topology"]')" "topology mark"
assert_eq '["app", "crm", "logs"]' "$(json_get "$T/show.json" 'j["sources"][0]["marks"]["databases"]')" "databases mark"
note "backed up 3 databases, 6 collections (consistency none: standalone)"

# ---- an unchanged second backup --------------------------------------------------------------
run_ok "$T/run2.json" "$T/run2.err" run "$T/p.yml" --json
read1=$(json_get "$T/run1.json" 'j["bytes_read"]')
stored1=$(json_get "$T/run1.json" 'j["stored_bytes"]')
new2=$(json_get "$T/run2.json" 'j["new_bytes"]')
stored2=$(json_get "$T/run2.json" 'j["stored_bytes"]')
note "first backup: read $read1, stored $stored1 bytes; unchanged second: new $new2, stored $stored2 bytes"
# the metadata items change (CongoDB invents uuids), the documents do not
[ "$stored2" -lt 32768 ] || fail "an unchanged second backup stored $stored2 bytes (expected < 32 KiB)"
[ "$new2" -lt $((read1 / 20)) ] || fail "an unchanged second backup has $new2 new bytes of $read1"

# ---- a mongodump directory, read by pymongo --------------------------------------------------
run_ok "$T/dir.out" "$T/dir.err" restore "$T/p.yml" latest --target "$T/dump"
mpy - "$A_URI" "$T/dump" <<'EOF' || fail "the mongodump directory is not what mongodump writes"
import json, os, re, sys
import bson, pymongo
from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
a = pymongo.MongoClient(sys.argv[1]); root = sys.argv[2]
raw = CodecOptions(document_class=RawBSONDocument)
want = {("app", "users"), ("app", "orders"), ("app", "sessions"), ("app", "empty"),
        ("crm", "contacts"), ("logs", "events/2024 q1")}
files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
expect = sorted("%s/%s.%s" % (d, c.replace("/", "%2F").replace(" ", "%20"), ext)
                for d, c in want for ext in ("bson", "metadata.json"))
assert files == expect, "files %s, expected %s" % (files, expect)
for d, c in sorted(want):
    stem = os.path.join(root, d, c.replace("/", "%2F").replace(" ", "%20"))
    with open(stem + ".bson", "rb") as f:
        docs = [x.raw for x in bson.decode_file_iter(f, codec_options=raw)]
    server = [x.raw for x in a[d].get_collection(c, codec_options=raw).find(batch_size=5000)]
    assert docs == server, "%s.%s: %d documents in the file, %d on the server" % (d, c, len(docs), len(server))
    with open(stem + ".metadata.json") as f:
        text = f.read()
    json.loads(text)  # plain JSON
    md = json_util.loads(text)  # canonical extended JSON, as mongodump writes
    assert set(md) <= {"options", "indexes", "uuid", "collectionName", "type"}, md.keys()
    assert md["collectionName"] == c and md["type"] == "collection", md
    assert re.fullmatch(r"[0-9a-f]{32}", md["uuid"]), md["uuid"]
    assert '"$numberInt"' in text, "numbers are not canonical extended JSON"
    names = sorted(i["name"] for i in md["indexes"])
    assert names == sorted(a[d][c].index_information()), (d, c, names)
    for i in md["indexes"]:
        assert isinstance(i["key"], dict) and "v" in i, i
print("mongodump directory: %d files checked" % len(files))
EOF
run_engine "$T/users.bson" "$T/stdout.err" restore "$T/p.yml" latest --only 'mongo/app/users.bson' --to-stdout
assert_rc 0 "restore --to-stdout" "$T/stdout.err"
assert_files_equal "$T/dump/app/users.bson" "$T/users.bson" "--to-stdout against the directory's file"
note "mongodump directory checked with bson.decode_file_iter and json_util; --to-stdout gives the same bytes"

# ---- into another server, and into the source after a drop ----------------------------------
run_ok "$T/b.out" "$T/b.err" restore "$T/p.yml" latest --target "$B_URI"
mongo_compare "$A_URI" "$B_URI"
mpy -c "import pymongo, sys; pymongo.MongoClient(sys.argv[1]).drop_database('app')" "$A_URI"
run_ok "$T/a.out" "$T/a.err" restore "$T/p.yml" latest --only mongo/app
mongo_compare "$A_URI" "$B_URI"
note "restored into a second server and into the source after dropping 'app': documents and indexes equal"

# ---- refusals, --drop-existing, --as ---------------------------------------------------------
run_engine "$T/again.out" "$T/again.err" restore "$T/p.yml" latest --only mongo/app
assert_rc 3 "restore over non-empty collections" "$T/again.out" "$T/again.err"
for c in users orders sessions; do
  assert_contains "$T/again.err" "collection app.$c already exists on 127.0.0.1:$A_PORT and holds documents; nothing was changed" "refusal naming app.$c"
done
mongo_compare "$A_URI" "$B_URI" app
run_engine "$T/drop.out" "$T/drop.err" restore "$T/p.yml" latest --only mongo/app --drop-existing
assert_rc 1 "--drop-existing without --yes (no terminal)" "$T/drop.err"
assert_contains "$T/drop.err" "pass --yes to confirm" "--drop-existing asks"
run_ok "$T/drop2.out" "$T/drop2.err" restore "$T/p.yml" latest --only mongo/app --drop-existing --yes
mongo_compare "$A_URI" "$B_URI" app
run_ok "$T/as1.out" "$T/as1.err" restore "$T/p.yml" latest --only 'mongo/app/users.*' --as people.list
run_ok "$T/as2.out" "$T/as2.err" restore "$T/p.yml" latest --only mongo/crm --as crm_copy
mpy - "$A_URI" <<'EOF' || fail "--as did not restore under the new names"
import sys, pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
a = pymongo.MongoClient(sys.argv[1]); raw = CodecOptions(document_class=RawBSONDocument)
def same(x, y):
    dx = [d.raw for d in x.with_options(codec_options=raw).find()]
    dy = [d.raw for d in y.with_options(codec_options=raw).find()]
    return dx == dy and x.index_information() == y.index_information() and len(dx) > 0
assert a.people.list_collection_names() == ["list"], a.people.list_collection_names()
assert same(a.app.users, a.people.list)
assert same(a.crm.contacts, a.crm_copy.contacts)
EOF
run_engine "$T/as3.out" "$T/as3.err" restore "$T/p.yml" latest --only 'mongo/app' --as one.coll
assert_rc 3 "--as NEWDB.NEWCOLL over several collections" "$T/as3.err"
assert_contains "$T/as3.err" "renames one collection" "--as NEWDB.NEWCOLL refuses a second collection"
note "refused over data (exit 3, each collection named), --drop-existing asks then replaces, --as renames"

# ---- the restore test ------------------------------------------------------------------------
run_ok "$T/rt.out" "$T/rt.err" check "$T/p.yml" --restore-test
assert_contains "$T/rt.out" "restore test: source 'mongo': 12 item(s) restored into scratch space and verified" "restore test"
mpy -c "
import pymongo, sys
left = [d for d in pymongo.MongoClient(sys.argv[1]).list_database_names() if d.startswith('engine_restore_test')]
assert not left, left" "$A_URI" || fail "the restore test left its scratch database"
# a document that goes missing in the scratch database (a client deletes
# one as soon as the restore has put documents there) fails the test:
# CongoDB has no capped collection or validator that would lose one by itself
"$MPY" - "$A_URI" "$T/deleted" <<'EOF' &
import sys, time, pymongo
c = pymongo.MongoClient(sys.argv[1])
end = time.time() + 60
while time.time() < end:
    for d in c.list_database_names():
        if d.startswith("engine_restore_test") and "app.orders" in c[d].list_collection_names():
            r = c[d]["app.orders"].delete_one({})
            if r.deleted_count:
                open(sys.argv[2], "w").write(d)
                sys.exit(0)
    time.sleep(0.005)
EOF
deleter=$!
at_exit kill_quiet "$deleter"
# small bulk inserts, so that the deleting client gets its turn while the
# collection fills (CongoDB runs one command at a time)
mongo_pipeline "$T/p64.yml" mongo-rt "$T/repo" "$A_URI" "batch_size: 64KiB"
run_engine "$T/rt2.out" "$T/rt2.err" check "$T/p64.yml" --restore-test -v
wait "$deleter" || true
[ -s "$T/deleted" ] || { show "$T/rt2.err"; fail "the deleting client found no scratch collection"; }
assert_rc 1 "restore test with a lost document" "$T/rt2.out" "$T/rt2.err"
assert_contains "$T/rt2.err" "restore test of app.orders FAILED in scratch database" "restore test failure"
assert_contains "$T/rt2.err" "19999 documents read back, the manifest records 20000" "restore test names the counts"
assert_contains "$T/rt2.err" "scratch database '$(cat "$T/deleted")' dropped" "scratch database dropped after a failure"
note "check --restore-test passes, and fails naming app.orders when a document goes missing"

