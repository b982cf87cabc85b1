#!/usr/bin/env bash
# The disaster path on object storage, engine side by side with restic on one
# real Ceph radosgw (default settings: bluestore, the beast frontend as
# tests/servers/ceph.sh configures it), in BENCH_REPEAT alternating pairs
# (engine then restic, restic then engine, ...):
#   1. first backup of the data set, each into a fresh bucket;
#   2. full restore from the first bucket with empty caches (the host is gone:
#      engine's index cache and restic's cache are deleted before every run),
#      each into a new directory;
#   3. check --read-data of the first bucket with empty caches (BENCH_CHECK=0
#      skips it).
# For every run: wall seconds, user and system CPU, peak RSS, the seconds of
# a sync(2) timed right after each restore (engine's restore ends with a
# syncfs, restic's does not; "restore + sync" compares the two), the requests
# radosgw logged (by method), the CPU seconds of radosgw and of the OSD
# (utime+stime from /proc) and the load average. Printed: medians per tool
# and phase, requests per GiB of the data set, and the per-pair ratios
# restic/engine (wall, and radosgw CPU); every sample goes to
# $BENCH_WORK/s3-restore-<date>.jsonl. The first restore of each tool is
# compared with the data set byte for byte.
#
# Environment:
#   BENCH_SIZE_MB   data set size in MiB (default 1024; bench/gen_data.py's set)
#   BENCH_DATA      use this directory as the data set instead of generating one
#   BENCH_REPEAT    pairs per phase (default 5)
#   BENCH_CHECK     0: no check --read-data phase
#   BENCH_STORE     bluestore (default) or memstore
#   BENCH_NICE      nice level of the measured commands and of the Ceph daemons
#                   (default -10 as root, else 0)
#   BENCH_WORK      directory for the data set, the cluster and the samples
#                   (default bench/out)
#   ENGINE_BIN      engine binary (default: a Release build in $BENCH_WORK/build)
#   ENGINE_RESTORE_THREADS / _RANGE_MAX / _BUDGET / _DENSITY: passed through (tuning)
#
# Needs: ceph-mon ceph-osd radosgw awscli restic, GNU time.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${BENCH_WORK:-$here/out}
size_mb=${BENCH_SIZE_MB:-1024}
repeat=${BENCH_REPEAT:-5}
die() { echo "s3-restore-bench: $*" >&2; exit 1; }
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive whole number, not '$repeat'"
AWS=/usr/bin/aws
[ -x "$AWS" ] || die "awscli is required (apt-get install -y --no-install-recommends awscli)"
command -v restic >/dev/null || die "restic is required (apt-get install -y restic)"
[ -x /usr/bin/time ] || die "GNU time is required (apt-get install -y time)"
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -n "${ENGINE_BIN:-}" ]; then
  engine=$(readlink -f "$ENGINE_BIN")
  [ -x "$engine" ] || die "ENGINE_BIN '$ENGINE_BIN' is not an executable file"
else
  build="$out/build"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DENGINE_BUILD_TESTS=OFF >"$out/build.log" 2>&1 &&
    cmake --build "$build" -j"$(nproc)" >>"$out/build.log" 2>&1 || die "engine build failed ($out/build.log)"
  engine="$build/engine"
fi
plugins=$(dirname "$engine")/plugins

if [ -n "${BENCH_DATA:-}" ]; then
  data=$(readlink -f "$BENCH_DATA")
  [ -d "$data" ] || die "BENCH_DATA '$BENCH_DATA' is not a directory"
else
  data="$out/data-$size_mb"
  [ -f "$data.json" ] || python3 "$here/gen_data.py" --out "$data" --size-mb "$size_mb" --stamp "$data.json"
fi
bytes=$(du -sb "$data" | cut -f1)

work=$(mktemp -d "$out/s3r-work.XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  bash "$root/tests/servers/ceph.sh" stop "$work/ceph" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# a start that fails is tried again on new ports, as tests/integration/lib.sh
# does (the monitor sometimes refuses the OSD while it settles)
for attempt in 1 2 3; do
  port=$(free_port)
  monport=$(free_port)
  STORE=${BENCH_STORE:-bluestore} MONPORT=$monport bash "$root/tests/servers/ceph.sh" start "$work/ceph" "$port" \
    >"$work/ceph-start.log" 2>&1 && break
  bash "$root/tests/servers/ceph.sh" stop "$work/ceph" >/dev/null 2>&1 || true
  [ "$attempt" -lt 3 ] || { tail -20 "$work/ceph-start.log" >&2; die "Ceph did not start (3 attempts)"; }
  echo "s3-restore-bench: Ceph did not start ($(grep -m1 'error:' "$work/ceph-start.log" || echo 'see its log')); again"
done
rgw_pid=$(cat "$work/ceph/run/client.rgw.a.pid")
osd_pid=$(cat "$work/ceph/run/osd.0.pid")
mon_pid=$(cat "$work/ceph/run/mon.a.pid")
# On a shared machine the measured commands and the server run at nice -10
# (as root; BENCH_NICE changes the level): other jobs then take less of the
# CPU from them. The server's daemons get the same level as the client.
nice_level=${BENCH_NICE:-}
if [ -z "$nice_level" ]; then
  if [ "$(id -u)" -eq 0 ]; then nice_level=-10; else nice_level=0; fi
fi
[[ "$nice_level" =~ ^-?[0-9]+$ ]] || die "BENCH_NICE must be a whole number, not '$nice_level'"
NICE=()
if [ "$nice_level" != 0 ]; then
  NICE=(nice -n "$nice_level")
  # every thread of each daemon (renice -p takes one thread)
  for p in "$rgw_pid" "$osd_pid" "$mon_pid"; do
    for t in /proc/"$p"/task/*; do renice -n "$nice_level" -p "${t##*/}" >/dev/null; done
  done
fi
rgw_log=$work/ceph/log/rgw.log

export AWS_ACCESS_KEY_ID=TESTACCESSKEY AWS_SECRET_ACCESS_KEY=TESTSECRETKEY AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CA_BUNDLE
ep=http://127.0.0.1:$port
export ENGINE_PASSPHRASE=bench-passphrase RESTIC_PASSWORD=bench-passphrase
export ENGINE_CACHE_DIR="$work/engine-cache" RESTIC_CACHE_DIR="$work/restic-cache"
samples="$work/samples.jsonl"
: >"$samples"

cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# measure PHASE TOOL RUN COMMAND...: one sample into $samples
measure() {
  local phase=$1 tool=$2 run=$3
  shift 3
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  local lines0 rgw0 osd0 load0
  lines0=$(wc -l <"$rgw_log")
  rgw0=$(cpu_of "$rgw_pid")
  osd0=$(cpu_of "$osd_pid")
  load0=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -f '%e %U %S %M' -o "$work/t" "${NICE[@]}" "$@" >"$work/$phase-$tool-$run.out" 2>"$work/$phase-$tool-$run.err" ||
    { tail -20 "$work/$phase-$tool-$run.err" >&2; die "$phase $tool run $run failed"; }
  # a restore's data on disk: engine's restore ends with a syncfs, restic's
  # does not, so a sync(2) is timed right after each restore
  local sync_s=0
  if [ "$phase" = restore ]; then
    local s0
    s0=$(date +%s%N)
    sync
    sync_s=$(python3 -c "import sys; print((int(sys.argv[2]) - int(sys.argv[1])) / 1e9)" "$s0" "$(date +%s%N)")
  fi
  sleep 1 # radosgw writes its log lines after the replies
  local rgw1 osd1
  rgw1=$(cpu_of "$rgw_pid")
  osd1=$(cpu_of "$osd_pid")
  read -r wall user sys rss <"$work/t"
  tail -n +"$((lines0 + 1))" "$rgw_log" | python3 -c '
import json, re, sys
(phase, tool, run, wall, user, sys_, rss, rgw0, rgw1, osd0, osd1, hz, load, sync_s) = sys.argv[1:15]
counts = {}
for line in sys.stdin:
    m = re.search(r"beast: \S+: \S+ - \S+ \[[^]]*\] \"(\w+) ", line)
    if m:
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
hz = int(hz)
print(json.dumps({"phase": phase, "tool": tool, "run": int(run), "wall": float(wall),
                  "user": float(user), "sys": float(sys_), "rss_kib": int(rss), "requests": counts,
                  "server_cpu_s": (float(rgw1) - float(rgw0)) / hz,
                  "osd_cpu_s": (float(osd1) - float(osd0)) / hz, "load": float(load),
                  "sync_s": float(sync_s)}))
' "$phase" "$tool" "$run" "$wall" "$user" "$sys" "$rss" "$rgw0" "$rgw1" "$osd0" "$osd1" "$(getconf CLK_TCK)" "$load0" "$sync_s" >>"$samples"
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
E=(env ENGINE_PLUGIN_PATH="$plugins" "$engine")
# order I: "engine restic" for odd pairs, "restic engine" for even ones
order() { if (($1 % 2)); then echo engine restic; else echo restic engine; fi; }
echo "s3-restore-bench: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) at the start"

# ---- 1. first backups, each into a fresh bucket
for i in $(seq 1 "$repeat"); do
  "$AWS" --endpoint-url "$ep" s3 mb "s3://engine-$i" >/dev/null
  "$AWS" --endpoint-url "$ep" s3 mb "s3://restic-$i" >/dev/null
  pipeline "engine-$i" >"$work/engine-$i.yml"
  restic -q -r "s3:$ep/restic-$i" init --repository-version 2 >/dev/null
  for tool in $(order "$i"); do
    rm -rf "$ENGINE_CACHE_DIR" "$RESTIC_CACHE_DIR"
    case $tool in
    engine) measure backup engine "$i" "${E[@]}" -q run "$work/engine-$i.yml" --progress never ;;
    restic) measure backup restic "$i" restic -q -r "s3:$ep/restic-$i" --compression auto backup "$data" ;;
    esac
  done
done

# ---- 2. restores with empty caches, from the first buckets
for i in $(seq 1 "$repeat"); do
  for tool in $(order "$i"); do
    rm -rf "$ENGINE_CACHE_DIR" "$RESTIC_CACHE_DIR"
    case $tool in
    engine) measure restore engine "$i" "${E[@]}" -q restore "$work/engine-1.yml" latest --target "$work/r-engine-$i" ;;
    restic) measure restore restic "$i" restic -q -r "s3:$ep/restic-1" restore latest --target "$work/r-restic-$i" ;;
    esac
  done
  if [ "$i" = 1 ]; then
    diff -r "$data" "$work/r-engine-1$data" >/dev/null || die "engine's restore differs from the data set"
    diff -r "$data" "$work/r-restic-1$data" >/dev/null || die "restic's restore differs from the data set"
    echo "s3-restore-bench: both first restores equal the data set"
  fi
done

# ---- 3. check --read-data with empty caches
if [ "${BENCH_CHECK:-1}" != 0 ]; then
  for i in $(seq 1 "$repeat"); do
    for tool in $(order "$i"); do
      rm -rf "$ENGINE_CACHE_DIR" "$RESTIC_CACHE_DIR"
      case $tool in
      engine) measure check engine "$i" "${E[@]}" -q check "$work/engine-1.yml" --read-data ;;
      restic) measure check restic "$i" restic -q -r "s3:$ep/restic-1" check --read-data ;;
      esac
    done
  done
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
cp "$samples" "$out/s3-restore-$stamp.jsonl"
python3 - "$samples" "$bytes" "$(nproc)" "$("$engine" --version | head -1)" "$(restic version | head -1)" \
  "${BENCH_STORE:-bluestore}" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
nbytes, ncpu = int(sys.argv[2]), sys.argv[3]
med = statistics.median
print("\n%d bytes (%.0f MiB), radosgw (%s) on 127.0.0.1, %s CPUs; %s; %s"
      % (nbytes, nbytes / 1048576, sys.argv[6], ncpu, sys.argv[4], sys.argv[5]))
print("load average (1 min) before the samples: %.2f-%.2f, median %.2f"
      % (min(r["load"] for r in rows), max(r["load"] for r in rows), med(r["load"] for r in rows)))
print("%-8s %-7s %8s %14s %8s %7s %8s %9s %8s %9s %9s" % (
    "phase", "tool", "wall s", "(min-max)", "MB/s", "CPU s", "RSS MiB", "requests", "req/GiB",
    "rgw CPU s", "osd CPU s"))
for phase in ("backup", "restore", "check"):
    for tool in ("engine", "restic"):
        rs = [r for r in rows if r["phase"] == phase and r["tool"] == tool]
        if not rs:
            continue
        wall = med(r["wall"] for r in rs)
        req = med(sum(r["requests"].values()) for r in rs)
        print("%-8s %-7s %8.2f %14s %8.1f %7.2f %8.0f %9d %8.1f %9.2f %9.2f" % (
            phase, tool, wall, "%.2f-%.2f" % (min(r["wall"] for r in rs), max(r["wall"] for r in rs)),
            nbytes / 1e6 / wall, med(r["user"] + r["sys"] for r in rs), med(r["rss_kib"] for r in rs) / 1024,
            req, req / (nbytes / 2**30), med(r["server_cpu_s"] for r in rs), med(r["osd_cpu_s"] for r in rs)))
        kinds = {}
        for r in rs:
            for k, v in r["requests"].items():
                kinds.setdefault(k, []).append(v)
        print("%-16s requests by method (median): %s" % ("", ", ".join("%s %d" % (k, med(v)) for k, v in sorted(kinds.items()))))
    e = {r["run"]: r for r in rows if r["phase"] == phase and r["tool"] == "engine"}
    o = {r["run"]: r for r in rows if r["phase"] == phase and r["tool"] == "restic"}
    runs = sorted(set(e) & set(o))
    if runs:
        w = [o[i]["wall"] / e[i]["wall"] for i in runs]
        c = [e[i]["server_cpu_s"] / o[i]["server_cpu_s"] for i in runs if o[i]["server_cpu_s"] > 0]
        print("%-8s restic/engine wall per pair: %s; median %.2fx (engine faster in %d of %d)"
              % (phase, ", ".join("%.2f" % x for x in w), med(w), sum(1 for x in w if x > 1), len(w)))
        if phase == "restore":
            ws = [(o[i]["wall"] + o[i].get("sync_s", 0)) / (e[i]["wall"] + e[i].get("sync_s", 0)) for i in runs]
            print("%-8s restore + sync: engine %.2f s, restic %.2f s (medians); restic/engine per pair: %s; median %.2fx"
                  % (phase, med(e[i]["wall"] + e[i].get("sync_s", 0) for i in runs),
                     med(o[i]["wall"] + o[i].get("sync_s", 0) for i in runs),
                     ", ".join("%.2f" % x for x in ws), med(ws)))
        if c:
            print("%-8s engine/restic radosgw CPU per pair: %s; median %.2f"
                  % (phase, ", ".join("%.2f" % x for x in c), med(c)))
EOF
