#!/usr/bin/env bash
# S3 benchmark: the first backup of the bench data set to a Ceph radosgw
# (started here with tests/servers/ceph.sh, torn down at the end) through
# engine's s3 sink vs `restic -r s3:http://127.0.0.1:PORT/bucket` on the same
# server, printing wall time, MB/s and peak RSS side by side.
#
# Environment:
#   BENCH_SIZE_MB   data set size in MiB (default 512)
#   BENCH_REGEN=1   regenerate the data set even if a matching one is cached
#   BENCH_STORE     Ceph object store: memstore (default; RAM-backed, so the
#                   figures measure the clients, not the disk) or bluestore
#   BENCH_PORT      radosgw port (default: a free one)
#   ENGINE_BIN      use this engine binary instead of building one (Release)
#
# Needs: ceph-mon ceph-osd radosgw awscli restic, GNU time (/usr/bin/time).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out"
size_mb=${BENCH_SIZE_MB:-512}
die() { echo "s3-bench: $*" >&2; exit 1; }
[[ "$size_mb" =~ ^[0-9]+$ ]] || die "BENCH_SIZE_MB must be a whole number of MiB, not '$size_mb'"
AWS=${AWS_CLI:-/usr/bin/aws}
[ -x "$AWS" ] || AWS=$(command -v aws || true)
[ -n "$AWS" ] || die "awscli is required (apt-get install -y --no-install-recommends awscli)"
command -v restic >/dev/null || die "restic is required (apt-get install -y restic)"
[ -x /usr/bin/time ] || die "GNU time is required (apt-get install -y time)"
mkdir -p "$out"

# ---- engine ----
if [ -n "${ENGINE_BIN:-}" ]; then
  engine=$(readlink -f "$ENGINE_BIN")
  [ -x "$engine" ] || die "ENGINE_BIN '$ENGINE_BIN' is not an executable file"
else
  build="$out/build"
  echo "s3-bench: building engine (Release) in $build"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DENGINE_BUILD_TESTS=OFF >"$out/build.log" 2>&1 ||
    { tail -20 "$out/build.log" >&2; die "cmake configure failed (log: $out/build.log)"; }
  cmake --build "$build" -j"$(nproc)" >>"$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log" >&2; die "engine build failed (log: $out/build.log)"; }
  engine="$build/engine"
fi
plugins=$(dirname "$engine")/plugins
[ -f "$plugins/engine-sink-s3.so" ] || die "no s3 sink plugin in $plugins"

# ---- data set (cached, same generator as bench/run.sh) ----
data="$out/s3-data"
stamp="$out/s3-data.json"
want=$(sed -n 's/^GENERATOR_VERSION = //p' "$here/gen_data.py"):$size_mb
have=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%s:%s" % (d["generator_version"], d["size_mb"]))' "$stamp" 2>/dev/null || true)
if [ "${BENCH_REGEN:-0}" = 1 ] || [ ! -d "$data" ] || [ "$have" != "$want" ]; then
  rm -rf "$data" "$stamp"
  echo "s3-bench: generating a ${size_mb} MiB data set in $data"
  python3 "$here/gen_data.py" --out "$data" --size-mb "$size_mb" --stamp "$stamp"
fi
bytes=$(du -sb "$data" | cut -f1)

# ---- server ----
work=$(mktemp -d "$out/s3-work.XXXXXX")
port=${BENCH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
monport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  bash "$root/tests/servers/ceph.sh" stop "$work/ceph" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
STORE=${BENCH_STORE:-memstore} MONPORT=$monport bash "$root/tests/servers/ceph.sh" start "$work/ceph" "$port"

export AWS_ACCESS_KEY_ID=TESTACCESSKEY AWS_SECRET_ACCESS_KEY=TESTSECRETKEY AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE
ep=http://127.0.0.1:$port
for b in engine-bench restic-bench; do
  "$AWS" --endpoint-url "$ep" s3 mb "s3://$b" >/dev/null || die "unable to create bucket $b"
done

cat >"$work/engine.yml" <<EOF
version: 1
name: s3-bench
sources: [{name: files, type: files, with: {paths: ['$data']}}]
stages: {compress: {algorithm: zstd, level: 3}, encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}}
sinks: [{name: radosgw, type: s3, with: {endpoint: '$ep', bucket: engine-bench, addressing: path}}]
EOF
export ENGINE_PASSPHRASE=bench-passphrase RESTIC_PASSWORD=bench-passphrase
export RESTIC_CACHE_DIR="$work/restic-cache"
restic -q -r "s3:$ep/restic-bench" init --repository-version 2 >/dev/null || die "restic init failed"

# measure NAME COMMAND...: wall seconds and peak RSS (KiB) into $work/NAME.time
measure() {
  local name=$1
  shift
  sync
  echo "s3-bench: $name: $*"
  /usr/bin/time -f '%e %M' -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" ||
    { tail -20 "$work/$name.err" >&2; die "$name failed"; }
}

measure engine env ENGINE_PLUGIN_PATH="$plugins" "$engine" -q run "$work/engine.yml" --progress never
measure restic restic -q -r "s3:$ep/restic-bench" --compression auto backup "$data"

stored() { "$AWS" --endpoint-url "$ep" s3 ls "s3://$1" --recursive --summarize | sed -n 's/.*Total Size: //p'; }
printf '\nfirst backup of %s MiB (%s bytes) to radosgw (%s) on 127.0.0.1, %s CPUs\n' \
  "$size_mb" "$bytes" "${BENCH_STORE:-memstore}" "$(nproc)"
printf '%-8s %10s %10s %14s %14s\n' tool "wall s" "MB/s" "peak RSS MiB" "stored MiB"
for t in engine restic; do
  read -r wall rss <"$work/$t.time"
  bucket=$([ "$t" = engine ] && echo engine-bench || echo restic-bench)
  python3 - "$t" "$wall" "$rss" "$bytes" "$(stored "$bucket")" <<'EOF'
import sys
t, wall, rss, n, st = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5] or 0)
print("%-8s %10.2f %10.1f %14.1f %14.1f" % (t, wall, n / 1e6 / wall if wall > 0 else 0, rss / 1024, st / 1048576))
EOF
done
echo "($("$engine" --version 2>/dev/null | head -1); $(restic version | head -1))"
