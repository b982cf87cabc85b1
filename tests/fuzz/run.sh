#!/usr/bin/env bash
# Run the libFuzzer targets of a fuzz build for a bounded time each, every
# target starting from its seed corpus (tests/fuzz/corpus/<name>/, copied to a
# scratch directory: the run never grows the repository).
#
#   bash tests/fuzz/run.sh [NAME...]     # pipeline manifest index pack key http s3xml
#
# Environment:
#   ENGINE_FUZZ_BUILD_DIR  the fuzz build (default build-fuzz; configure it with
#                          CC=clang cmake -S . -B build-fuzz -DENGINE_FUZZ=ON
#                          -DENGINE_BUILD_TESTS=OFF, see docs/TESTING.md)
#   ENGINE_FUZZ_SECONDS    seconds per target (default 30)
#   ENGINE_FUZZ_JOBS       targets run at once (default: the number of CPUs)
#   ENGINE_TEST_TMPDIR     where the scratch directories go (default /var/tmp)
#   ENGINE_FUZZ_KEEP       a directory to copy each target's corpus (as grown by
#                          the run) and any finding into
#
# Prints "PASS  fuzz_NAME (...)" or "FAIL  fuzz_NAME (...)" per target (a
# crash, a sanitizer report, a leak, a timeout of 25 s on one input or a
# failed invariant is a FAIL: the log's end and the input that caused it are
# shown) and exits 1 if any target failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${ENGINE_FUZZ_BUILD_DIR:-build-fuzz}
case "$build" in /*) ;; *) build=$root/$build ;; esac
seconds=${ENGINE_FUZZ_SECONDS:-30}
jobs=${ENGINE_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
tmpbase=${ENGINE_TEST_TMPDIR:-/var/tmp}
all=(pipeline manifest index pack key http s3xml)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

for t in "${targets[@]}"; do
  if [ ! -x "$build/tests/fuzz/fuzz_$t" ]; then
    echo "run.sh: $build/tests/fuzz/fuzz_$t is not built (targets: ${all[*]})" >&2
    exit 2
  fi
  if [ ! -d "$here/corpus/$t" ]; then
    echo "run.sh: no seed corpus $here/corpus/$t" >&2
    exit 2
  fi
done
scratch=$(mktemp -d "$tmpbase/engine-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$scratch"' EXIT

# one target: its scratch corpus, its log, its verdict in $scratch/$t/result
run_one() {
  local t=$1 d=$scratch/$1
  mkdir -p "$d/corpus" "$d/found"
  cp "$here/corpus/$t/"* "$d/corpus/"
  local t0 rc=0
  t0=$(date +%s)
  # the seeds come first (a regression input fails at once), then mutations;
  # -timeout: one input taking 25 s is a finding (a hang)
  (cd "$d" && exec "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=25 \
    -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$d/found/" "$d/corpus") \
    >"$d/log" 2>&1 || rc=$?
  local el=$(($(date +%s) - t0)) runs
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$d/log" | tail -n 1)
  if [ "$rc" -eq 0 ] && [ -z "$(ls -A "$d/found")" ]; then
    echo "PASS  fuzz_$t (${el}s, ${runs:-?} inputs, corpus $(ls "$d/corpus" | wc -l) files)" >"$d/result"
  else
    echo "FAIL  fuzz_$t (${el}s, exit $rc)" >"$d/result"
  fi
}

running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=0
for t in "${targets[@]}"; do
  d=$scratch/$t
  result=$(cat "$d/result" 2>/dev/null || echo "FAIL  fuzz_$t (no result)")
  case "$result" in
  PASS*) ;;
  *)
    failed=$((failed + 1))
    echo "----- fuzz_$t: last 60 lines of its log -----"
    grep -av '^#[0-9]' "$d/log" | tail -n 60
    for f in "$d/found/"*; do
      [ -e "$f" ] || continue
      echo "----- fuzz_$t: finding $(basename "$f") ($(stat -c %s "$f") bytes), base64:"
      head -c 4096 "$f" | base64
    done
    echo "-----"
    ;;
  esac
  if [ -n "${ENGINE_FUZZ_KEEP:-}" ]; then
    mkdir -p "$ENGINE_FUZZ_KEEP/$t"
    cp -r "$d/corpus" "$d/found" "$d/log" "$ENGINE_FUZZ_KEEP/$t/"
  fi
  echo "$result"
done
[ "$failed" -eq 0 ]
