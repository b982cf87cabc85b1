#!/usr/bin/env bash
# BSON and metadata fidelity of the mongodb source: documents of every BSON
# type, written with libbson alone (tests/tools/mongo_bson_corpus.c: int32,
# int64 that fits int32, integral doubles, -0.0, NaNs with payloads,
# decimal128, dates before 1970, timestamps, binary subtypes 0/2/4/5/128,
# regexes with flags, minKey/maxKey, DBPointer, code with scope, symbol,
# undefined, arrays nested 100 deep, a 16 MiB document, key order, empty
# and dotted keys, duplicate keys, embedded NULs, _ids of several types),
# go through the repository and back with identical bytes: --to-stdout, a
# mongodump directory, and a restore into a server. Collection options
# (capped, validator, collation, clustered), a view, a time-series
# collection and index options (partial, collation, wildcard, text
# weights, 2dsphere, hidden) survive the round trip; check --restore-test
# passes on the exact bytes.
#
# The server is tests/servers/mongowire.py, a wire-protocol stand-in that
# keeps the bytes it is sent (CongoDB re-encodes numbers and forgets
# options, views and most index options). What it cannot show: what a
# real mongod does with a document (it moves _id first, which the corpus
# already has; it refuses documents it finds invalid) or with options (it
# validates them and builds the indexes); a real server is the judge of
# those, the plugin passes them on unchanged. The order of the restore's
# commands (create, inserts, createIndexes, views last) is read from the
# stand-in's log; a real server would also refuse a view over a missing
# collection only at query time, so the order is the plugin's own.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mongo_lib.sh"
mongo_require
command -v cc >/dev/null || fail "a C compiler is required (build-essential)"
pkg-config --exists libbson-1.0 || fail "libbson is required (apt-get install -y libbson-dev)"

cc -O1 -Wall -Wextra -Werror -o "$T/corpus" "$REPO_ROOT/tests/tools/mongo_bson_corpus.c" \
  $(pkg-config --cflags --libs libbson-1.0) -lm || fail "unable to build the corpus generator"
n=$("$T/corpus" "$T/corpus.bson")
note "$n documents of every BSON type, $(stat -c %s "$T/corpus.bson") bytes (libbson)"

mongowire_start W1 --load "fid.types=$T/corpus.bson"
mongowire_start W2
mpy - "$W1_URI" <<'EOF' || fail "unable to create the collections with options"
import sys, pymongo
from bson import encode
from bson.raw_bson import RawBSONDocument
c = pymongo.MongoClient(sys.argv[1])
db = c.meta
db.command("create", "capped", capped=True, size=1048576, max=1000)
db.command("create", "validated", validator={"$jsonSchema": {"bsonType": "object",
           "required": ["name"], "properties": {"name": {"bsonType": "string"}}}},
           validationLevel="moderate", validationAction="warn")
db.command("create", "french", collation={"locale": "fr", "strength": 2})
db.command("create", "clustered", clusteredIndex={"key": {"_id": 1}, "unique": True, "name": "by_id"})
db.command("create", "weather", timeseries={"timeField": "ts", "metaField": "sensor",
           "granularity": "hours"}, expireAfterSeconds=86400)
db.command("create", "recent", viewOn="capped", pipeline=[{"$match": {"n": {"$gt": 5}}},
           {"$project": {"n": 1}}])
db.capped.insert_many([{"_id": i, "n": i} for i in range(20)])
db.validated.insert_one({"_id": 1, "name": "ok"})
db.french.insert_one({"_id": 1, "word": "élève"})
db.clustered.insert_many([{"_id": i} for i in range(5)])
# time-series data is its buckets
db["system.buckets.weather"].insert_many([
    {"_id": i, "control": {"version": 1, "min": {"ts": i}, "max": {"ts": i + 1}},
     "meta": {"station": i}, "data": {"ts": {"0": i}}} for i in range(3)])
db.capped.create_index([("n", 1)], name="n_partial", partialFilterExpression={"n": {"$gt": 3}})
db.french.create_index([("word", 1)], collation={"locale": "fr", "strength": 1})
db.french.create_index([("$**", 1)], name="wild", wildcardProjection={"secret": 0})
db.french.create_index([("word", "text")], weights={"word": 10}, default_language="french")
db.french.create_index([("loc", "2dsphere")], hidden=True)
db.weather.create_index([("sensor.station", 1), ("ts", -1)])
EOF

mongo_pipeline "$T/p.yml" mongo-fid "$T/repo" "$W1_URI"
run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run.json" 'j["status"]')" "status"
# fid.types; meta: capped, clustered, french, validated, weather (2 items
# each) and the view recent (metadata only)
assert_eq 13 "$(json_get "$T/run.json" 'j["items"]')" "items"

run_engine "$T/out.bson" "$T/stdout.err" restore "$T/p.yml" latest --only 'mongo/fid/types.bson' --to-stdout
assert_rc 0 "--to-stdout" "$T/stdout.err"
assert_files_equal "$T/corpus.bson" "$T/out.bson" "--to-stdout against the corpus"
[ "$("$T/corpus" --check "$T/out.bson")" = "$n" ] || fail "libbson does not read $n documents back"
run_ok "$T/dir.out" "$T/dir.err" restore "$T/p.yml" latest --target "$T/dump"
assert_files_equal "$T/corpus.bson" "$T/dump/fid/types.bson" "the mongodump directory's file against the corpus"
[ ! -e "$T/dump/meta/recent.bson" ] || fail "a view got a .bson file"
[ -f "$T/dump/meta/system.buckets.weather.bson" ] || fail "the time-series data is not system.buckets.weather.bson"
mpy - "$T/dump/meta" <<'EOF' || fail "the metadata files lost options"
import sys, os
from bson import json_util
d = sys.argv[1]
def md(name):
    with open(os.path.join(d, name + ".metadata.json")) as f:
        return json_util.loads(f.read())
m = md("capped"); assert m["options"] == {"capped": True, "size": 1048576, "max": 1000}, m
assert [i["name"] for i in m["indexes"]] == ["_id_", "n_partial"], m["indexes"]
assert m["indexes"][1]["partialFilterExpression"] == {"n": {"$gt": 3}}, m["indexes"][1]
m = md("validated"); assert m["options"]["validationAction"] == "warn" and "$jsonSchema" in m["options"]["validator"], m
m = md("recent"); assert m["type"] == "view" and m["options"]["viewOn"] == "capped" and m["indexes"] == [], m
assert m["options"]["pipeline"][0] == {"$match": {"n": {"$gt": 5}}}, m
m = md("weather"); assert m["type"] == "timeseries" and m["options"]["timeseries"]["metaField"] == "sensor", m
m = md("clustered"); assert m["options"]["clusteredIndex"]["name"] == "by_id", m
m = md("french"); idx = {i["name"]: i for i in m["indexes"]}
assert idx["wild"]["wildcardProjection"] == {"secret": 0} and idx["loc_2dsphere"]["hidden"] is True, idx
assert idx["word_text"]["weights"] == {"word": 10}, idx
EOF
note "identical bytes through --to-stdout and a mongodump directory; metadata files keep options, views and time series"

# ---- into a server ---------------------------------------------------------------------------
run_ok "$T/w2.out" "$T/w2.err" restore "$T/p.yml" latest --target "$W2_URI"
mpy - "$W1_URI" "$W2_URI" "$T/w2.bson" <<'EOF' || fail "the restored server differs"
import sys, pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
raw = CodecOptions(document_class=RawBSONDocument)
a, b = pymongo.MongoClient(sys.argv[1]), pymongo.MongoClient(sys.argv[2])
docs = [d.raw for d in b.fid.get_collection("types", codec_options=raw).find(batch_size=4)]
open(sys.argv[3], "wb").write(b"".join(docs))
def colls(c):
    return {x["name"]: (x["type"], x["options"]) for x in c.meta.list_collections()}
ca, cb = colls(a), colls(b)
assert ca == cb, "collections and options:\n  %s\n  %s" % (ca, cb)
for name, (kind, _) in ca.items():
    if kind == "view":
        continue
    x = [d.raw for d in a.meta.get_collection(name, codec_options=raw).find()]
    y = [d.raw for d in b.meta.get_collection(name, codec_options=raw).find()]
    assert x == y, name
    ia = sorted((i["name"], sorted(i.items())) for i in a.meta[name].list_indexes())
    ib = sorted((i["name"], sorted(i.items())) for i in b.meta[name].list_indexes())
    assert ia == ib, "indexes of %s:\n  %s\n  %s" % (name, ia, ib)
EOF
assert_files_equal "$T/corpus.bson" "$T/w2.bson" "documents inserted into a server against the corpus"
# mongorestore's order, from the stand-in's log of the restore: each
# collection created (with its options) before its documents, its indexes
# built after them, the view created after every collection
mpy - "$T/W2.wire.log" <<'EOF' || fail "the restore did not create, insert, index and make views in that order"
import json, sys
ops = [(e["op"], e["ns"]) for e in map(json.loads, open(sys.argv[1]))
       if e["op"] in ("create", "insert", "createIndexes")]
views = {"meta.recent"}
created = [ns for op, ns in ops if op == "create"]
assert sorted(created) == sorted(["fid.types", "meta.capped", "meta.clustered", "meta.french",
                                  "meta.validated", "meta.weather", "meta.recent"]), created
last_data = max(i for i, (op, ns) in enumerate(ops) if ns not in views)
for v in views:
    assert ops.index(("create", v)) > last_data, ops
for ns in set(created) - views:
    db, coll = ns.split(".", 1)
    data = {ns, "%s.system.buckets.%s" % (db, coll)}
    c = ops.index(("create", ns))
    ins = [i for i, (op, n) in enumerate(ops) if op == "insert" and n in data]
    idx = [i for i, (op, n) in enumerate(ops) if op == "createIndexes" and n == ns]
    assert ins and min(ins) > c, (ns, ops)
    assert all(i > max(ins) for i in idx), (ns, ops)
EOF
note "restored into a server: the same bytes, options, views, time series and index options"

# ---- --as into a directory, and the restore test ---------------------------------------------
run_ok "$T/as.out" "$T/as.err" restore "$T/p.yml" latest --only 'mongo/fid/types.*' --as other.renamed --target "$T/dump2"
assert_files_equal "$T/corpus.bson" "$T/dump2/other/renamed.bson" "--as into a directory"
mpy -c "
import sys; from bson import json_util
m = json_util.loads(open(sys.argv[1]).read()); assert m['collectionName'] == 'renamed', m" \
  "$T/dump2/other/renamed.metadata.json" || fail "--as did not rename collectionName"
run_ok "$T/rt.out" "$T/rt.err" check "$T/p.yml" --restore-test -v
assert_contains "$T/rt.out" "13 item(s) restored into scratch space and verified" "restore test"
assert_contains "$T/rt.err" "restore test of fid.types: $n documents, digest and indexes verified" "restore test of the corpus"
note "--as renames in a directory; check --restore-test verifies the exact bytes"
