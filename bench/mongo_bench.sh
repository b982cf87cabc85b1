#!/usr/bin/env bash
# Benchmark of the mongodb source (issue 18) on CongoDB (tests/servers/congodb.sh):
# DOCS documents in one collection (default 1,000,000, ~220 bytes each).
#
# Backup, ROUNDS alternating rounds (default 5; the order rotates each round):
#   raw       bench/mongo_raw.c: a libmongoc find cursor (batches of ~8 MiB,
#             as the plugin asks for) writing every document to a file,
#             uncompressed and unencrypted: what mongodump writes for the
#             collection (no mongodump can be installed here)
#   engine    `engine run`, the first backup into a new repository (which the
#             run creates): mongodb -> zstd 3 -> aes-256-gcm -> local sink
#   none      the same with stages.compress none (still encrypted): how much
#             of the difference is compression
#   other     with OTHER_PLUGIN_PATH=DIR only: the engine run with the
#             plugins of DIR (e.g. the mongodb plugin before a change)
# then an unchanged second `engine run` (what it stores).
# Restore, RESTORE_ROUNDS alternating rounds (default 3), each into a fresh
# server: `engine restore --target` against raw libmongoc unordered bulk
# inserts of 16 MiB (bench/mongo_raw.c load).
#
# Every time is the wall time of the whole process (/usr/bin/time), for the
# raw tools too; also its CPU seconds, its peak RSS and the CPU seconds the
# server (node) spent meanwhile, and the 1-minute load average before each
# sample. The summary gives medians, documents/s and MB/s of BSON, and the
# engine's time over the raw tool's per round and their median. Asserts
# nothing.
#
#   bench/mongo_bench.sh [DOCS]
#
# ENGINE_BIN selects the engine (default build/engine and its plugins/; use
# a Release build). OUT=PREFIX also writes PREFIX.log (what is printed) and
# PREFIX.json (every sample).
#
# Each server runs in a session of its own (setsid), as a database server is
# a service (or a machine) of its own: with the kernel's autogroup
# scheduling the server then gets its fair share of the CPU as a whole,
# whatever the number of threads of the client; otherwise, on 2 cores, the
# engine's compression threads would take the single-threaded server's CPU,
# which a real deployment does not see. As root the servers and the bench
# (the raw tools, the engine) run at nice -10, their scheduling groups too,
# so that other jobs on a shared machine take less of the CPU from both
# sides; BENCH_NICE sets the level. Before the rounds the server lists the
# collection's indexes and serves a dump, untimed (CongoDB builds its _id
# index at the first listIndexes, which the first engine run would pay).
#
# Needs node and npm (CongoDB), python3-pymongo, libmongoc-dev. Everything
# happens in a scratch directory ($TMPDIR), removed at the end. CongoDB is
# single-threaded JavaScript: it, not the engine, sets the pace; on a real
# mongod the raw cursor is faster and the engine's own CPU (SHA-256 of each
# document, chunking, compression, encryption) weighs more.
set -euo pipefail
DOCS=${1:-1000000}
ROUNDS=${ROUNDS:-5}
RESTORE_ROUNDS=${RESTORE_ROUNDS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENGINE_BIN=${ENGINE_BIN:-$ROOT/build/engine}
[ -x "$ENGINE_BIN" ] || { echo "mongo_bench: no engine at '$ENGINE_BIN' (set ENGINE_BIN)" >&2; exit 1; }
export ENGINE_PLUGIN_PATH=${ENGINE_PLUGIN_PATH:-$(dirname "$ENGINE_BIN")/plugins}
PY=/usr/bin/python3
$PY -c 'import pymongo, bson' || { echo "mongo_bench: python3-pymongo is required" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "mongo_bench: /usr/bin/time is required" >&2; exit 1; }
nice_level=${BENCH_NICE:-}
if [ -z "$nice_level" ]; then
  if [ "$(id -u)" -eq 0 ]; then nice_level=-10; else nice_level=0; fi
fi
[[ "$nice_level" =~ ^-?[0-9]+$ ]] || { echo "mongo_bench: BENCH_NICE must be a whole number, not '$nice_level'" >&2; exit 1; }
# renice_all PID: every thread of the process, and its autogroup (when the
# kernel has them)
renice_all() {
  [ "$nice_level" = 0 ] && return 0
  local t
  for t in /proc/"$1"/task/*; do renice -n "$nice_level" -p "${t##*/}" >/dev/null; done
  if [ -w "/proc/$1/autogroup" ]; then echo "$nice_level" >"/proc/$1/autogroup"; fi
}
renice_all $$
if [ -n "${OUT:-}" ]; then
  mkdir -p "$(dirname "$OUT")"
  exec > >(tee "$OUT.log") 2>&1
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/engine-mongobench.XXXXXX")
CONGO=$ROOT/tests/servers/congodb.sh
SAMPLES=$W/samples.jsonl
cleanup() {
  for s in A B C; do bash "$CONGO" stop "$W/$s" >/dev/null 2>&1 || true; done
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start_server() { # NAME: a fresh, empty server; sets URI_NAME
  local port
  bash "$CONGO" stop "$W/$1" >/dev/null 2>&1 || true
  rm -rf "${W:?}/$1"
  port=$(free_port)
  setsid -w bash "$CONGO" start "$W/$1" "$port" >/dev/null
  renice_all "$(cat "$W/$1/congodb.pid")"
  printf -v "URI_$1" 'mongodb://127.0.0.1:%s/' "$port"
}
server_cpu() { # NAME: CPU seconds of its node process so far
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$(cat "$W/$1/congodb.pid")/stat"
}
load1() { cut -d' ' -f1 /proc/loadavg; }
# shellcheck disable=SC2046 # the flags are words
cc -O2 -Wall -o "$W/mongo_raw" "$ROOT/bench/mongo_raw.c" $(pkg-config --cflags --libs libmongoc-1.0)

# sample KIND ROUND SERVER CMD...: runs CMD under /usr/bin/time (its
# output in $W/out), appends a JSON line to $SAMPLES; an engine's --json
# output (bytes read, stored) is merged in
sample() {
  local kind=$1 round=$2 server=$3 l c0 c1 wall user sys rss
  shift 3
  l=$(load1)
  c0=$(server_cpu "$server")
  /usr/bin/time -f '%e %U %S %M' -o "$W/time" "$@" >"$W/out"
  c1=$(server_cpu "$server")
  read -r wall user sys rss <"$W/time"
  $PY - "$SAMPLES" "$kind" "$round" "$wall" "$user" "$sys" "$rss" "$c0" "$c1" "$l" \
    "$W/out" <<'EOF'
import json, sys
f, kind, rnd, wall, user, sys_, rss, c0, c1, load, out = sys.argv[1:]
s = {"kind": kind, "round": int(rnd), "wall": float(wall), "user": float(user),
     "sys": float(sys_), "cpu": round(float(user) + float(sys_), 2),
     "rss_mib": round(int(rss) / 1024, 1), "server_cpu": round(float(c1) - float(c0), 2),
     "load_before": float(load)}
try:
    j = json.load(open(out))
except ValueError:
    j = {}
if isinstance(j, dict):
    s.update({k: j[k] for k in ("bytes_read", "stored_bytes", "new_bytes", "status") if k in j})
open(f, "a").write(json.dumps(s) + "\n")
print("  %-8s %7.2f s  CPU %5.2f s  server CPU %5.2f s  peak RSS %4d MiB  load %.2f" % (
    kind, s["wall"], s["cpu"], s["server_cpu"], s["rss_mib"], s["load_before"]))
EOF
}

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
echo "mongo_bench: $DOCS documents, $((BYTES / 1048576)) MiB of BSON, CongoDB; engine $ENGINE_BIN"
echo "  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(date -u '+%F %H:%M UTC'), nice $nice_level, load $(cut -d' ' -f1-3 /proc/loadavg)"
[ -z "${OTHER_PLUGIN_PATH:-}" ] || echo "  other: the plugins of $OTHER_PLUGIN_PATH"
start_server A
"$W/mongo_raw" load "$URI_A" bench docs "$W/docs.bson" $((16 * 1024 * 1024)) >/dev/null

pipeline() { # FILE REPO COMPRESS-STAGE
  cat >"$1" <<EOF
version: 1
name: mongo-bench
sources:
  - name: mongo
    type: mongodb
    with:
      uri: "$URI_A"
      databases: [bench]
stages:
  compress: $3
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - name: local
    type: local
    with:
      path: $2
EOF
}
pipeline "$W/p.yml" "$W/repo" "{algorithm: zstd, level: 3}"
pipeline "$W/p-none.yml" "$W/repo-none" "{algorithm: none}"
export ENGINE_PASSPHRASE=bench ENGINE_CACHE_DIR=$W/cache

run_kind() { # KIND ROUND
  case $1 in
  raw) sample raw "$2" A "$W/mongo_raw" dump "$URI_A" bench docs "$W/raw.bson" "$BATCH_DOCS" ;;
  engine | none)
    local yml=$W/p.yml repo=$W/repo
    [ "$1" = none ] && yml=$W/p-none.yml repo=$W/repo-none
    rm -rf "$repo" "$W/cache"
    sample "$1" "$2" A "$ENGINE_BIN" -q run "$yml" --json
    ;;
  other)
    rm -rf "$W/repo-other" "$W/cache"
    sample other "$2" A env ENGINE_PLUGIN_PATH="$OTHER_PLUGIN_PATH" "$ENGINE_BIN" -q run \
      "$W/p-other.yml" --json
    ;;
  esac
}
# untimed first: CongoDB builds its in-memory _id index at the first
# listIndexes (2.5-4 CPU-s here, which the first engine run would pay; a
# real server has its indexes), and a dump
$PY -c 'import sys, pymongo; list(pymongo.MongoClient(sys.argv[1]).bench.docs.list_indexes())' "$URI_A"
"$W/mongo_raw" dump "$URI_A" bench docs "$W/raw.bson" "$BATCH_DOCS" >/dev/null
echo "backup: $ROUNDS rounds (after the server's first listIndexes and a dump, untimed)"
kinds=(raw engine none)
if [ -n "${OTHER_PLUGIN_PATH:-}" ]; then
  kinds+=(other)
  pipeline "$W/p-other.yml" "$W/repo-other" "{algorithm: zstd, level: 3}"
fi
for round in $(seq 1 "$ROUNDS"); do
  echo " round $round/$ROUNDS"
  for i in "${!kinds[@]}"; do run_kind "${kinds[$(((round - 1 + i) % ${#kinds[@]}))]}" "$round"; done
done
# the last "engine" run's repository holds the normal pipeline's snapshot
rm -rf "$W/repo" "$W/cache"
"$ENGINE_BIN" -q run "$W/p.yml" --json >/dev/null
echo "unchanged second run:"
sample unchanged 1 A "$ENGINE_BIN" -q run "$W/p.yml" --json

echo "restore: $RESTORE_ROUNDS rounds, each into a fresh server"
for round in $(seq 1 "$RESTORE_ROUNDS"); do
  echo " round $round/$RESTORE_ROUNDS"
  for i in 0 1; do
    if [ $(((round + i) % 2)) -eq 1 ]; then
      start_server B
      sample restore "$round" B "$ENGINE_BIN" -q restore "$W/p.yml" latest --target "$URI_B"
      bash "$CONGO" stop "$W/B" >/dev/null
    else
      start_server C
      sample insert "$round" C "$W/mongo_raw" load "$URI_C" bench docs "$W/docs.bson" \
        $((16 * 1024 * 1024))
      bash "$CONGO" stop "$W/C" >/dev/null
    fi
  done
done

BENCH_ENGINE=$("$ENGINE_BIN" --version 2>/dev/null || echo "?") BENCH_ENGINE_BIN=$ENGINE_BIN BENCH_NICE_LEVEL=$nice_level \
  BENCH_MACHINE="$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r)" \
  $PY - "$SAMPLES" "$DOCS" "$BYTES" "$(stat -c %s "$W/raw.bson")" "${OUT:+$OUT.json}" <<'EOF'
import datetime, json, os, statistics, sys
path, docs, nbytes, rawfile, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
S = [json.loads(l) for l in open(path)]
def of(kind): return [s for s in S if s["kind"] == kind]
med = statistics.median
def line(kind, label):
    v = of(kind)
    w = [s["wall"] for s in v]
    m = med(w)
    print("  %-34s median %6.2f s (%.2f-%.2f): %7.0f docs/s, %5.1f MB/s; CPU %.2f s, server CPU %.2f s, peak RSS %.0f MiB"
          % (label, m, min(w), max(w), docs / m, nbytes / m / 1e6, med([s["cpu"] for s in v]),
             med([s["server_cpu"] for s in v]), med([s["rss_mib"] for s in v])))
def ratios(a, b):
    ra = {s["round"]: s["wall"] for s in of(a)}
    rb = {s["round"]: s["wall"] for s in of(b)}
    return [ra[r] / rb[r] for r in sorted(ra) if r in rb]
loads = [s["load_before"] for s in S]
print("\nsummary (%d documents, %d bytes of BSON; 1-minute load before the samples: min %.2f, median %.2f, max %.2f)"
      % (docs, nbytes, min(loads), med(loads), max(loads)))
line("raw", "raw libmongoc cursor -> file")
line("engine", "engine run, first (zstd 3, aes)")
line("none", "engine run, first (none, aes)")
if of("other"):
    line("other", "engine run, OTHER_PLUGIN_PATH")
for k, label in (("engine", "engine"), ("none", "engine, compress none"), ("other", "other")):
    if not of(k):
        continue
    r = ratios(k, "raw")
    print("  %s / raw cursor per round: %s; median %.2f (of medians %.2f)" % (
        label, ", ".join("%.2f" % x for x in r), med(r),
        med([s["wall"] for s in of(k)]) / med([s["wall"] for s in of("raw")])))
u = of("unchanged")[0]
print("  unchanged second run: %.2f s, %d bytes new, %d bytes stored (%.4f %% of the %d bytes a new dump writes)"
      % (u["wall"], u.get("new_bytes", -1), u.get("stored_bytes", -1),
         100.0 * u.get("stored_bytes", 0) / rawfile, rawfile))
e = [s for s in of("engine") if "stored_bytes" in s]
if e:
    print("  first run stores %.1f MiB (compress none: %.1f MiB)" % (
        e[-1]["stored_bytes"] / 1048576,
        max(s.get("stored_bytes", 0) for s in of("none")) / 1048576))
line("insert", "raw libmongoc bulk insert")
line("restore", "engine restore")
r = ratios("restore", "insert")
print("  engine restore / raw bulk insert per round: %s; median %.2f"
      % (", ".join("%.2f" % x for x in r), med(r)))
if out:
    json.dump({"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
               "engine": os.environ["BENCH_ENGINE"], "engine_bin": os.environ["BENCH_ENGINE_BIN"],
               "other_plugin_path": os.environ.get("OTHER_PLUGIN_PATH"),
               "nice": int(os.environ["BENCH_NICE_LEVEL"]), "machine": os.environ["BENCH_MACHINE"],
               "docs": docs, "bson_bytes": nbytes, "samples": S}, open(out, "w"), indent=1)
EOF
