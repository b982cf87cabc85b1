#!/usr/bin/env bash
# Benchmark entry point: engine vs restic vs borg vs tar|zstd|openssl.
#
# Installs the reference tools if missing, builds engine (Release) unless
# ENGINE_BIN is given, generates the data set once, runs bench/bench.py and
# removes its repositories and restores at the very end.
#
# Environment:
#   BENCH_SIZE_MB  data set size in MiB (default 1024; 256 for a quick run)
#   BENCH_REPEAT   measurements per tool and phase, median reported (default 3)
#   BENCH_REGEN=1  regenerate the data set even if a matching one is cached
#   BENCH_TOOLS    comma-separated subset of engine,engine-z1,restic,borg,tar (default all)
#   BENCH_KEEP=1   keep repositories and restores (bench/out/work-*) afterwards
#   BENCH_NO_WAIT=1 do not wait after the previous run's cleanup (see below)
#   BENCH_VERIFY=0 skip comparing the first repeat's restores with the data set
#   BENCH_NICE     nice level of the measured commands (default -10 as root, else 0):
#                  keeps other jobs on a shared machine from distorting the figures
#   ENGINE_BIN     use this engine binary instead of building one
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out"
size_mb=${BENCH_SIZE_MB:-1024}
repeat=${BENCH_REPEAT:-3}

die() { echo "bench: $*" >&2; exit 1; }

[[ "$size_mb" =~ ^[0-9]+$ ]] || die "BENCH_SIZE_MB must be a whole number of MiB, not '$size_mb'"
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive whole number, not '$repeat'"
mkdir -p "$out"

# ---- reference tools ----
missing=()
command -v restic >/dev/null || missing+=(restic)
command -v borg >/dev/null || missing+=(borgbackup)
command -v zstd >/dev/null || missing+=(zstd)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/bin/time ] || missing+=(time)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
  echo "bench: installing ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" \
    || die "unable to install ${missing[*]} with apt-get"
fi

# ---- engine ----
if [ -n "${ENGINE_BIN:-}" ]; then
  engine=$(readlink -f "$ENGINE_BIN")
  [ -x "$engine" ] || die "ENGINE_BIN '$ENGINE_BIN' is not an executable file"
else
  build="$out/build"
  echo "bench: building engine (Release) in $build"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DENGINE_BUILD_TESTS=OFF >"$out/build.log" 2>&1 \
    || { tail -20 "$out/build.log" >&2; die "cmake configure failed (log: $out/build.log)"; }
  cmake --build "$build" -j"$(nproc)" >>"$out/build.log" 2>&1 \
    || { tail -30 "$out/build.log" >&2; die "engine build failed (log: $out/build.log)"; }
  engine="$build/engine"
fi

# ---- data set (cached) ----
data="$out/data"
stamp="$out/data.json"
trash=()
want_version=$(sed -n 's/^GENERATOR_VERSION = //p' "$here/gen_data.py")
have=$(python3 - "$stamp" <<'EOF' 2>/dev/null || true
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{s['generator_version']}:{s['size_mb']}")
EOF
)
if [ "${BENCH_REGEN:-0}" = 1 ] || [ ! -d "$data" ] || [ "$have" != "$want_version:$size_mb" ]; then
  if [ -e "$data" ]; then
    # Moved aside, deleted at the end: mass deletes right before the
    # benchmark creates its trees would slow those creates down.
    old="$out/trash-data-$(date +%s)-$$"
    mv "$data" "$old"
    trash+=("$old")
  fi
  rm -f "$stamp"
  echo "bench: generating a ${size_mb} MiB data set in $data"
  python3 "$here/gen_data.py" --out "$data" --size-mb "$size_mb" --stamp "$stamp.tmp"
  mv "$stamp.tmp" "$stamp"
else
  echo "bench: using the cached ${size_mb} MiB data set in $data"
fi

# ---- run ----
# ext4 (without a journal, as here) avoids reusing an inode for 60 s after
# it was freed, 360 s while its inode table block is still dirty, and
# checks every candidate: creating files near a tree deleted minutes ago
# costs several times more: minutes after a run's cleanup, restores of the
# data set into bench/out took 2.4-3.2 s against 2.0-2.2 s elsewhere on the
# same file system, with 36 % of the samples in ext4_create ->
# find_inode_bit -> recently_deleted. So a run that follows the cleanup of
# the previous one waits until that is 6 minutes old.
cleaned="$out/.last-cleanup"
if [ -f "$cleaned" ] && [ "${BENCH_NO_WAIT:-0}" != 1 ]; then
  age=$(($(date +%s) - $(stat -c %Y "$cleaned")))
  if ((age >= 0 && age < 360)); then
    echo "bench: the previous run's files were deleted ${age} s ago; waiting $((360 - age)) s" \
      "so the file system does not slow down creating new ones (BENCH_NO_WAIT=1 skips this)"
    sleep $((360 - age))
  fi
fi
work="$out/work-$(date +%Y%m%d-%H%M%S)-$$"
cleanup() {
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench: kept $work"
  else
    rm -rf "$work"
  fi
  for t in "${trash[@]}"; do rm -rf "$t"; done
  touch "$cleaned"
}
trap cleanup EXIT

nice=${BENCH_NICE:-}
if [ -z "$nice" ]; then
  if [ "$(id -u)" -eq 0 ]; then nice=-10; else nice=0; fi
fi
[[ "$nice" =~ ^-?[0-9]+$ ]] || die "BENCH_NICE must be a whole number, not '$nice'"
verify=()
[ "${BENCH_VERIFY:-1}" = 0 ] && verify=(--no-verify)
python3 "$here/bench.py" --data "$data" --work "$work" --engine "$engine" --repeat "$repeat" --nice "$nice" \
  --tools "${BENCH_TOOLS:-}" --results "$out/results.md" --json "$out/results.json" "${verify[@]}"
