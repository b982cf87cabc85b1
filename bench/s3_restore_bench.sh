#!/usr/bin/env bash
# The disaster path on object storage, engine side by side with restic on one
# real Ceph radosgw (default settings: bluestore, beast frontend as
# tests/servers/ceph.sh configures it):
#   1. first backup of the data set to the bucket, BENCH_REPEAT times each,
#      alternating engine / restic, each into a fresh bucket;
#   2. full restore from the bucket with empty caches (the host is gone:
#      engine's index cache and restic's cache are deleted before every run),
#      BENCH_REPEAT times each, alternating.
# For every run: wall seconds, peak RSS, the GET/PUT/... requests radosgw
# logged, and radosgw's CPU seconds (utime+stime from /proc). Medians are
# printed with the per-pair ratio restic/engine; every sample goes to
# bench/out/s3-restore-<date>.json. The first restore of each tool is
# compared with the data set byte for byte.
#
# Environment:
#   BENCH_SIZE_MB   data set size in MiB (default 1024; the data set is bench/gen_data.py's)
#   BENCH_REPEAT    runs per tool and phase (default 3)
#   BENCH_STORE     bluestore (default) or memstore
#   BENCH_DATA      use this directory as the data set instead of generating one
#   ENGINE_BIN      engine binary (default: a Release build in bench/out/build)
#   ENGINE_RESTORE_THREADS / _RANGE_MAX / _BUDGET: passed through (tuning)
#
# Needs: ceph-mon ceph-osd radosgw awscli restic, GNU time.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out"
size_mb=${BENCH_SIZE_MB:-1024}
repeat=${BENCH_REPEAT:-3}
die() { echo "s3-restore-bench: $*" >&2; exit 1; }
AWS=/usr/bin/aws
[ -x "$AWS" ] || die "awscli is required (apt-get install -y --no-install-recommends awscli)"
command -v restic >/dev/null || die "restic is required (apt-get install -y restic)"
[ -x /usr/bin/time ] || die "GNU time is required (apt-get install -y time)"
mkdir -p "$out"

if [ -n "${ENGINE_BIN:-}" ]; then
  engine=$(readlink -f "$ENGINE_BIN")
else
  build="$out/build"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DENGINE_BUILD_TESTS=OFF >"$out/build.log" 2>&1 &&
    cmake --build "$build" -j"$(nproc)" >>"$out/build.log" 2>&1 || die "engine build failed ($out/build.log)"
  engine="$build/engine"
fi
plugins=$(dirname "$engine")/plugins

if [ -n "${BENCH_DATA:-}" ]; then
  data=$(readlink -f "$BENCH_DATA")
else
  data="$out/data-$size_mb"
  [ -f "$data.json" ] || python3 "$here/gen_data.py" --out "$data" --size-mb "$size_mb" --stamp "$data.json"
fi
bytes=$(du -sb "$data" | cut -f1)

work=$(mktemp -d "$out/s3r-work.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
monport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  bash "$root/tests/servers/ceph.sh" stop "$work/ceph" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
STORE=${BENCH_STORE:-bluestore} MONPORT=$monport bash "$root/tests/servers/ceph.sh" start "$work/ceph" "$port"
rgw_pid=$(cat "$work/ceph/run/client.rgw.a.pid")
rgw_log=$work/ceph/log/rgw.log

export AWS_ACCESS_KEY_ID=TESTACCESSKEY AWS_SECRET_ACCESS_KEY=TESTSECRETKEY AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CA_BUNDLE
ep=http://127.0.0.1:$port
export ENGINE_PASSPHRASE=bench-passphrase RESTIC_PASSWORD=bench-passphrase
export ENGINE_CACHE_DIR="$work/engine-cache" RESTIC_CACHE_DIR="$work/restic-cache"
samples="$work/samples.jsonl"
: >"$samples"

rgw_cpu() { awk '{print $14 + $15}' "/proc/$rgw_pid/stat"; }
# measure PHASE TOOL RUN COMMAND...: one sample into $samples
measure() {
  local phase=$1 tool=$2 run=$3
  shift 3
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  local lines0 cpu0
  lines0=$(wc -l <"$rgw_log")
  cpu0=$(rgw_cpu)
  /usr/bin/time -f '%e %M' -o "$work/t" "$@" >"$work/$phase-$tool-$run.out" 2>"$work/$phase-$tool-$run.err" ||
    { tail -20 "$work/$phase-$tool-$run.err" >&2; die "$phase $tool run $run failed"; }
  sleep 1 # radosgw writes its log lines after the replies
  local cpu1
  cpu1=$(rgw_cpu)
  read -r wall rss <"$work/t"
  tail -n +"$((lines0 + 1))" "$rgw_log" | python3 -c '
import json, re, sys
phase, tool, run, wall, rss, cpu0, cpu1, hz = sys.argv[1:9]
counts = {}
for line in sys.stdin:
    m = re.search(r"beast: \S+: \S+ - \S+ \[[^]]*\] \"(\w+) ", line)
    if m:
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
print(json.dumps({"phase": phase, "tool": tool, "run": int(run), "wall": float(wall),
                  "rss_kib": int(rss), "requests": counts,
                  "server_cpu_s": (float(cpu1) - float(cpu0)) / int(hz)}))
' "$phase" "$tool" "$run" "$wall" "$rss" "$cpu0" "$cpu1" "$(getconf CLK_TCK)" >>"$samples"
  tail -n 1 "$samples"
}

pipeline() { # BUCKET
  cat <<EOF
version: 1
name: s3-restore-bench
sources: [{name: files, type: files, with: {paths: ['$data']}}]
stages: {compress: {algorithm: zstd, level: 3}, encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}}
sinks: [{name: radosgw, type: s3, with: {endpoint: '$ep', bucket: $1, addressing: path}}]
EOF
}

# ---- 1. first backups, alternating, each into a fresh bucket
for i in $(seq 1 "$repeat"); do
  "$AWS" --endpoint-url "$ep" s3 mb "s3://engine-$i" >/dev/null
  "$AWS" --endpoint-url "$ep" s3 mb "s3://restic-$i" >/dev/null
  pipeline "engine-$i" >"$work/engine-$i.yml"
  restic -q -r "s3:$ep/restic-$i" init --repository-version 2 >/dev/null
  rm -rf "$ENGINE_CACHE_DIR" "$RESTIC_CACHE_DIR"
  measure backup engine "$i" env ENGINE_PLUGIN_PATH="$plugins" "$engine" -q run "$work/engine-$i.yml" --progress never
  measure backup restic "$i" restic -q -r "s3:$ep/restic-$i" backup "$data"
done

# ---- 2. restores with empty caches, alternating (from the first repository)
for i in $(seq 1 "$repeat"); do
  rm -rf "$ENGINE_CACHE_DIR" "$RESTIC_CACHE_DIR" "$work/r-engine" "$work/r-restic"
  measure restore engine "$i" env ENGINE_PLUGIN_PATH="$plugins" "$engine" -q restore "$work/engine-1.yml" latest --target "$work/r-engine"
  rm -rf "$ENGINE_CACHE_DIR" "$RESTIC_CACHE_DIR"
  measure restore restic "$i" restic -q -r "s3:$ep/restic-1" restore latest --target "$work/r-restic"
  if [ "$i" = 1 ]; then
    diff -r "$data" "$work/r-engine$data" >/dev/null || die "engine's restore differs from the data set"
    diff -r "$data" "$work/r-restic$data" >/dev/null || die "restic's restore differs from the data set"
    echo "s3-restore-bench: both first restores equal the data set"
  fi
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
cp "$samples" "$out/s3-restore-$stamp.jsonl"
python3 - "$samples" "$bytes" "$(nproc)" "$("$engine" --version | head -1)" "$(restic version | head -1)" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
nbytes, ncpu = int(sys.argv[2]), sys.argv[3]
print("\n%d bytes (%.0f MiB), radosgw on 127.0.0.1, %s CPUs; %s; %s"
      % (nbytes, nbytes / 1048576, ncpu, sys.argv[4], sys.argv[5]))
print("%-8s %-7s %9s %9s %9s %12s %10s %9s" % ("phase", "tool", "wall s", "MB/s", "RSS MiB",
                                               "requests", "req/GiB", "rgw CPU s"))
for phase in ("backup", "restore"):
    med = {}
    for tool in ("engine", "restic"):
        rs = [r for r in rows if r["phase"] == phase and r["tool"] == tool]
        if not rs:
            continue
        wall = statistics.median(r["wall"] for r in rs)
        req = statistics.median(sum(r["requests"].values()) for r in rs)
        med[tool] = wall
        print("%-8s %-7s %9.2f %9.1f %9.1f %12d %10.1f %9.2f" % (
            phase, tool, wall, nbytes / 1e6 / wall, statistics.median(r["rss_kib"] for r in rs) / 1024,
            req, req / (nbytes / 2**30), statistics.median(r["server_cpu_s"] for r in rs)))
    pairs = [r["wall"] for r in rows if r["phase"] == phase and r["tool"] == "restic"]
    pe = [r["wall"] for r in rows if r["phase"] == phase and r["tool"] == "engine"]
    ratios = sorted(b / a for a, b in zip(pe, pairs))
    if ratios:
        print("%-8s speed vs restic (restic wall / engine wall) per pair: %s, median %.2fx"
              % (phase, ", ".join("%.2f" % r for r in ratios), statistics.median(ratios)))
EOF
