#!/usr/bin/env bash
# Benchmark of the mongodb source (issue 18) on CongoDB (tests/servers/congodb.sh):
# DOCS documents in one collection (default 1,000,000, ~220 bytes each),
# backed up by `engine run` (mongodb -> zstd 3 -> aes-256-gcm -> local sink)
# and, on the same server, dumped by a raw libmongoc cursor to a file
# (bench/mongo_raw.c, the same batch size in bytes as the plugin's); restored
# by `engine restore` into a fresh server and, into another fresh one,
# inserted by raw libmongoc unordered bulk writes of the same size. Prints
# documents/s and MB/s of each, the engine's peak RSS, the engine's time
# over the raw cursor's, and what an unchanged second backup stores.
# Asserts nothing.
#
#   bench/mongo_bench.sh [DOCS]
#
# ENGINE_BIN selects the engine (default build/engine and its plugins/; use
# a Release build). Needs node and npm (CongoDB), python3-pymongo, libmongoc-dev.
# Everything happens in a scratch directory ($TMPDIR), removed at the end.
# CongoDB is single-threaded JavaScript: it, not the engine, sets the pace
# here; on a real mongod the raw cursor is faster and the plugin's own cost
# (a copy, a SHA-256 per document, the pipeline) weighs more.
set -euo pipefail
DOCS=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENGINE_BIN=${ENGINE_BIN:-$ROOT/build/engine}
[ -x "$ENGINE_BIN" ] || { echo "mongo_bench: no engine at '$ENGINE_BIN' (set ENGINE_BIN)" >&2; exit 1; }
export ENGINE_PLUGIN_PATH=${ENGINE_PLUGIN_PATH:-$(dirname "$ENGINE_BIN")/plugins}
PY=/usr/bin/python3
$PY -c 'import pymongo, bson' || { echo "mongo_bench: python3-pymongo is required" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "mongo_bench: /usr/bin/time is required" >&2; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/engine-mongobench.XXXXXX")
CONGO=$ROOT/tests/servers/congodb.sh
cleanup() {
  for s in A B C; do bash "$CONGO" stop "$W/$s" >/dev/null 2>&1 || true; done
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for s in A B C; do
  port=$(free_port)
  bash "$CONGO" start "$W/$s" "$port" >/dev/null
  printf -v "URI_$s" 'mongodb://127.0.0.1:%s/' "$port"
done
cc -O2 -Wall -o "$W/mongo_raw" "$ROOT/bench/mongo_raw.c" $(pkg-config --cflags --libs libmongoc-1.0)

# the documents, written once as BSON (~220 bytes each)
$PY - "$W/docs.bson" "$DOCS" <<'EOF'
import sys, datetime, bson
t0 = datetime.datetime(2024, 1, 1)
with open(sys.argv[1], "wb") as f:
    for i in range(int(sys.argv[2])):
        f.write(bson.encode({"_id": i, "name": "customer %07d" % i, "email": "c%d@example.org" % i,
                             "balance": i * 0.37 + 0.01, "since": t0 + datetime.timedelta(seconds=i),
                             "tags": ["t%d" % (i % 7), "t%d" % (i % 11)],
                             "notes": "n" * (40 + i % 64)}))
EOF
BYTES=$(stat -c %s "$W/docs.bson")
BATCH_BYTES=$((8 * 1024 * 1024))
BATCH_DOCS=$((BATCH_BYTES * DOCS / BYTES))
rate() { # DOCS BYTES SECONDS
  awk -v n="$1" -v b="$2" -v s="$3" 'BEGIN { printf "%8.2f s %9.0f docs/s %7.1f MB/s", s, n / s, b / s / 1e6 }'
}
echo "mongo_bench: $DOCS documents, $((BYTES / 1048576)) MiB of BSON, CongoDB, engine $ENGINE_BIN"

# raw bulk insert (also the seeding of A)
read -r n b s < <("$W/mongo_raw" load "$URI_A" bench docs "$W/docs.bson" $((16 * 1024 * 1024)))
printf '%-40s %s\n' "raw libmongoc bulk insert" "$(rate "$n" "$b" "$s")"
RAW_INSERT=$s

# raw cursor, then the engine, twice each, alternating
cat >"$W/p.yml" <<EOF
version: 1
name: mongo-bench
sources:
  - name: mongo
    type: mongodb
    with:
      uri: "$URI_A"
      databases: [bench]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - name: local
    type: local
    with:
      path: $W/repo
EOF
export ENGINE_PASSPHRASE=bench ENGINE_CACHE_DIR=$W/cache
best_raw=999999 best_engine=999999
for round in 1 2; do
  read -r n b s < <("$W/mongo_raw" dump "$URI_A" bench docs "$W/raw.bson" "$BATCH_DOCS")
  printf '%-40s %s\n' "raw libmongoc cursor -> file ($round)" "$(rate "$n" "$b" "$s")"
  best_raw=$(awk -v a="$best_raw" -v b="$s" 'BEGIN { print (b < a ? b : a) }')
  rm -rf "$W/repo" "$W/cache"
  /usr/bin/time -f '%e %M' -o "$W/run.time" "$ENGINE_BIN" -q run "$W/p.yml" --json >"$W/run.json"
  read -r s rss <"$W/run.time"
  printf '%-40s %s, peak RSS %d MiB\n' "engine run, first ($round)" "$(rate "$n" "$b" "$s")" $((rss / 1024))
  best_engine=$(awk -v a="$best_engine" -v b="$s" 'BEGIN { print (b < a ? b : a) }')
done
awk -v e="$best_engine" -v r="$best_raw" 'BEGIN { printf "engine / raw cursor (best of 2): %.2f\n", e / r }'
/usr/bin/time -f '%e %M' -o "$W/run2.time" "$ENGINE_BIN" -q run "$W/p.yml" --json >"$W/run2.json"
read -r s rss <"$W/run2.time"
printf '%-40s %s, peak RSS %d MiB\n' "engine run, unchanged second" "$(rate "$n" "$b" "$s")" $((rss / 1024))
# (no mongodump can be installed here: the raw libmongoc cursor's file is
# what a mongodump of the collection would write, byte for byte)
$PY - "$W/run.json" "$W/run2.json" "$(stat -c %s "$W/raw.bson")" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
raw = int(sys.argv[3])
print("stored: first %.1f MiB (%.1f MiB read); unchanged second: %d bytes new, %d bytes stored"
      % (a["stored_bytes"] / 1048576, a["bytes_read"] / 1048576, b["new_bytes"], b["stored_bytes"]))
print("unchanged second run stores %.4f %% of a full dump (%d bytes of raw BSON, what a new "
      "mongodump would write again)" % (100.0 * b["stored_bytes"] / raw, raw))
EOF

# restore into a fresh server, against a raw bulk insert into another
/usr/bin/time -f '%e %M' -o "$W/restore.time" "$ENGINE_BIN" -q restore "$W/p.yml" latest --target "$URI_B"
read -r s rss <"$W/restore.time"
printf '%-40s %s, peak RSS %d MiB\n' "engine restore into a fresh server" "$(rate "$n" "$b" "$s")" $((rss / 1024))
read -r n b s < <("$W/mongo_raw" load "$URI_C" bench docs "$W/docs.bson" $((16 * 1024 * 1024)))
printf '%-40s %s\n' "raw libmongoc bulk insert (again)" "$(rate "$n" "$b" "$s")"
awk -v e="$(cut -d' ' -f1 "$W/restore.time")" -v r="$s" -v r0="$RAW_INSERT" \
  'BEGIN { printf "engine restore / raw bulk insert: %.2f (%.2f against the first raw insert)\n", e / r, e / r0 }'
