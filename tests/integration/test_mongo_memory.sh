#!/usr/bin/env bash
# Bounded memory of the mongodb source: backing up one collection of
# 200,000 documents (~50 MB of BSON) peaks at most 1.5x + 50 MiB of
# backing up one of 20,000, and below 160 MiB; restoring the 200,000 into
# a server (unordered bulk inserts of batch_size bytes; the raw-BSON
# stand-in tests/servers/mongowire.py, whose inserts are fast) too. The
# restored collection is compared with the source by pymongo. Measured with
# /usr/bin/time -v on a build without sanitizers ($ENGINE_BIN_PLAIN, which
# tests/run-all.sh builds into build/; ASan's quarantine makes RSS grow with
# what was allocated). bench/mongo_bench.sh does 1,000,000 documents and
# the throughput against a raw libmongoc cursor and bulk insert.
#
# What CongoDB cannot show: it keeps a cursor's whole result in its own
# memory and does not cut batches at 16 MiB (the plugin asks for at most
# 8 MiB per batch); the engine's side is what is measured here.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mongo_lib.sh"
mongo_require

[ -x /usr/bin/time ] || fail "/usr/bin/time is required (Debian package 'time')"
bin=${ENGINE_BIN_PLAIN:-$ENGINE_BIN}
[ -x "$bin" ] || fail "ENGINE_BIN_PLAIN='$bin' is not executable"
if ldd "$bin" | grep -q 'libasan'; then
  fail "$bin is built with AddressSanitizer; its RSS says nothing: set ENGINE_BIN_PLAIN to a build without sanitizers"
fi
plugdir=$(dirname "$bin")/plugins

congodb_start A
# the restore goes into the raw-BSON stand-in: CongoDB's inserts are slow,
# and the engine's memory does not depend on the server
mongowire_start B
t0=$(date +%s.%N)
mpy - "$A_URI" <<'EOF' || fail "seeding failed"
import sys, datetime, pymongo
c = pymongo.MongoClient(sys.argv[1])
t0 = datetime.datetime(2024, 1, 1)
def docs(a, b):
    return [{"n": i, "name": "customer %07d" % i, "email": "c%d@example.org" % i,
             "balance": i * 0.37 + 0.01, "since": t0 + datetime.timedelta(seconds=i),
             "notes": "n" * (40 + i % 64)} for i in range(a, b)]
c.small.customers.insert_many(docs(0, 20000))
for k in range(0, 200000, 20000):
    c.large.customers.insert_many(docs(k, k + 20000), ordered=False)
EOF
note "seeded 20,000 and 200,000 documents in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"

peak() { # NAME ENGINE-ARGS...: run the plain engine, print its peak RSS in KiB
  local name=$1 rc=0 kib
  shift
  ENGINE_PLUGIN_PATH="$plugdir" /usr/bin/time -v -o "$T/$name.time" "$bin" "$@" \
    >"$T/$name.out" 2>"$T/$name.err" </dev/null || rc=$?
  [ "$rc" -eq 0 ] || { show "$T/$name.out" "$T/$name.err"; fail "engine $* exited with $rc"; }
  kib=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$T/$name.time")
  [ -n "$kib" ] || { show "$T/$name.time"; fail "no peak RSS from /usr/bin/time"; }
  echo "$kib"
}
wall() { sed -n 's/^[[:space:]]*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$T/$1.time"; }

mongo_pipeline "$T/small.yml" mongo-small "$T/repo-small" "$A_URI" "databases: [small]"
mongo_pipeline "$T/large.yml" mongo-large "$T/repo-large" "$A_URI" "databases: [large]"
small=$(peak small run "$T/small.yml" --json)
large=$(peak large run "$T/large.yml" --json)
assert_eq 2 "$(json_get "$T/large.out" 'j["items"]')" "items of the large backup"
bytes=$(json_get "$T/large.out" 'j["bytes_read"]')
restore=$(peak restore restore "$T/large.yml" latest --target "$B_URI")
# (CongoDB lists its _id index as unique, mongowire does not: documents only)
MONGO_COMPARE_INDEXES=0 mongo_compare "$A_URI" "$B_URI" large
limit=$((small * 3 / 2 + 50 * 1024))
note "peak RSS: backup of 20,000 documents $((small / 1024)) MiB, of 200,000 ($((bytes / 1048576)) MiB of BSON) $((large / 1024)) MiB in $(wall large), restore of 200,000 $((restore / 1024)) MiB in $(wall restore)"
[ "$large" -lt "$limit" ] || fail "backup RSS grows with the collection: $large KiB for 200,000 vs $small KiB for 20,000"
[ "$large" -lt $((160 * 1024)) ] || fail "backup of 200,000 documents peaked at $large KiB (limit 160 MiB)"
[ "$restore" -lt $((160 * 1024)) ] || fail "restore of 200,000 documents peaked at $restore KiB (limit 160 MiB)"
