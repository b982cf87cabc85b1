#!/usr/bin/env bash
# The whole test suite, the one command CI and developers run:
#
#   bash tests/run-all.sh                 # everything
#   bash tests/run-all.sh kill corruption # only the integration tests (and
#                                         # fuzz targets, fuzz_NAME) whose
#                                         # names contain one of the words
#
# 1. installs the dependencies (scripts/setup-deps.sh; skip with
#    ENGINE_SKIP_DEPS=1),
# 2. checks the sources: clang-format (scripts/check-format.sh) and banned
#    functions / assignments in conditions (scripts/checksrc.py),
# 3. builds with AddressSanitizer + UndefinedBehaviorSanitizer and gcov's
#    --coverage into build-asan/ (ENGINE_COVERAGE=0: without coverage) and
#    a plain Release build into build/ (for the memory test, whose RSS
#    figures ASan would distort, and the SDK test),
# 4. runs the cmocka unit tests (ctest), the fuzz targets of tests/fuzz for
#    $ENGINE_FUZZ_SECONDS each (default 20, 0 skips; a clang build in
#    build-fuzz/, skipped when clang is not installed),
#    tests/sdk-example/test-sdk.sh and every tests/integration/test_*.sh,
#    each in a fresh scratch directory under $ENGINE_TEST_TMPDIR (default
#    /var/tmp) with a timeout ($ENGINE_TEST_TIMEOUT seconds, default 600),
# 5. builds with ThreadSanitizer into build-tsan/ and runs the unit tests
#    and the integration tests whose commands run threads ($tsan_tests
#    below: backup, restore, check --read-data, prune, restore from S3)
#    with it; any ThreadSanitizer report fails the test (tests/tsan.supp
#    lists the reports known to be false, each with its reason;
#    ENGINE_TSAN=0 skips this stage),
# 6. prints the line coverage of each module (core/<folder>,
#    plugins/<kind>/<name>; scripts/coverage.py, from the unit and
#    integration tests of step 4), then "N passed, N failed", and exits 1
#    if anything failed.
#
# Environment: ENGINE_SKIP_DEPS=1, ENGINE_TEST_TMPDIR, ENGINE_TEST_TIMEOUT,
# ENGINE_ASAN_BUILD_DIR / ENGINE_RELEASE_BUILD_DIR / ENGINE_FUZZ_BUILD_DIR /
# ENGINE_TSAN_BUILD_DIR (build directories, default build-asan, build,
# build-fuzz and build-tsan), ENGINE_FUZZ_SECONDS, ENGINE_COVERAGE=0,
# ENGINE_TSAN=0,
# KEEP_TMP=1 (keep every scratch directory) or KEEP_TMP=fail (only those of
# failed tests), JOBS (build parallelism, default nproc).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
timeout_s=${ENGINE_TEST_TIMEOUT:-600}
tmpbase=${ENGINE_TEST_TMPDIR:-/var/tmp}
asan_dir=${ENGINE_ASAN_BUILD_DIR:-build-asan}
plain_dir=${ENGINE_RELEASE_BUILD_DIR:-build}
case "$asan_dir" in /*) ;; *) asan_dir=$root/$asan_dir ;; esac
case "$plain_dir" in /*) ;; *) plain_dir=$root/$plain_dir ;; esac
t_start=$(date +%s)

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# the tests set their own; never let an operator's leak in
unset ENGINE_PASSPHRASE ENGINE_PLUGIN_PATH

passed=0
failed=0
failures=()
logdir=$(mktemp -d "$tmpbase/engine-test-logs.XXXXXX") || {
  echo "run-all: unable to create a log directory under $tmpbase" >&2
  exit 1
}

section() { printf '\n=== %s\n' "$*"; }
record_pass() {
  passed=$((passed + 1))
  printf 'PASS  %s%s\n' "$1" "${2:+ ($2)}"
}
record_fail() {
  failed=$((failed + 1))
  failures+=("$1")
  printf 'FAIL  %s%s\n' "$1" "${2:+ ($2)}"
}
show_tail() { # FILE [LINES]
  echo "----- last ${2:-80} lines of $1 -----"
  tail -n "${2:-80}" "$1"
  echo "-----"
}
finish() {
  local total=$(($(date +%s) - t_start))
  echo
  if [ "$failed" -gt 0 ]; then
    echo "failed: ${failures[*]}"
    echo "logs: $logdir"
  else
    rm -rf "$logdir"
  fi
  echo "total time: $((total / 60))m$((total % 60))s"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

# ---- 1. dependencies ---------------------------------------------------
if [ "${ENGINE_SKIP_DEPS:-0}" = 1 ]; then
  section "dependencies: skipped (ENGINE_SKIP_DEPS=1)"
else
  section "dependencies"
  if ! bash scripts/setup-deps.sh; then
    record_fail setup-deps "scripts/setup-deps.sh failed"
    finish
  fi
fi

# ---- 2. source checks ----------------------------------------------------
section "source checks (scripts/check-format.sh, scripts/checksrc.py)"
for check in format checksrc; do
  log="$logdir/$check.log"
  t0=$(date +%s)
  if [ "$check" = format ]; then
    bash scripts/check-format.sh >"$log" 2>&1
  else
    python3 scripts/checksrc.py >"$log" 2>&1
  fi
  rc=$?
  if [ "$rc" -eq 0 ]; then
    record_pass "$check" "$(tail -n 1 "$log"), $(($(date +%s) - t0))s"
  else
    show_tail "$log" 60
    record_fail "$check" "exit $rc"
  fi
done

# ---- 3. builds -----------------------------------------------------------
build() { # DIR LABEL CMAKE-ARGS...
  local dir=$1 label=$2
  shift 2
  local log="$logdir/build-$label.log"
  local t0
  t0=$(date +%s)
  if cmake -S . -B "$dir" "$@" >"$log" 2>&1 && cmake --build "$dir" -j "$jobs" >>"$log" 2>&1; then
    echo "built $dir ($label) in $(($(date +%s) - t0))s"
    return 0
  fi
  show_tail "$log" 60
  return 1
}

# gcov counters ride along in the sanitizer build: the suite runs once and
# the coverage of the unit and integration tests comes with it (measured:
# no slower than the build without them, within the noise of a 2-core VM)
coverage=${ENGINE_COVERAGE:-1}
if [ "$coverage" = 1 ]; then
  cov_flag=--coverage
  section "build: $asan_dir (ASan + UBSan, gcov coverage)"
else
  cov_flag=
  section "build: $asan_dir (ASan + UBSan)"
fi
if ! build "$asan_dir" asan -DCMAKE_BUILD_TYPE=Debug -DENGINE_SANITIZE=ON -DENGINE_BUILD_TESTS=ON \
  "-DCMAKE_C_FLAGS=$cov_flag" "-DCMAKE_EXE_LINKER_FLAGS=$cov_flag" \
  "-DCMAKE_SHARED_LINKER_FLAGS=$cov_flag" "-DCMAKE_MODULE_LINKER_FLAGS=$cov_flag"; then
  record_fail "build-asan" "the sanitizer build failed; nothing else can run"
  finish
fi
section "build: $plain_dir (Release, no sanitizers)"
plain_ok=1
if ! build "$plain_dir" release -DCMAKE_BUILD_TYPE=Release -DENGINE_BUILD_TESTS=OFF; then
  record_fail "build (Release)" "the plain Release build failed"
  plain_ok=0
fi

# ---- 4a. unit tests ------------------------------------------------------
# what an earlier run counted is not this run's coverage
find "$asan_dir" -name '*.gcda' -delete 2>/dev/null

# run_ctest DIR PREFIX: ctest in DIR; every test counts as one pass or fail
# (failures named PREFIX + test name)
run_ctest() {
  local dir=$1 prefix=$2 ctest_log="$logdir/ctest-${2%:}.log" ctest_rc summary c_failed c_total name
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout "$timeout_s" >"$ctest_log" 2>&1
  ctest_rc=$?
  cat "$ctest_log"
  summary=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$ctest_log" | tail -n 1)
  if [ -n "$summary" ]; then
    c_failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$summary")
    c_total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$summary")
    passed=$((passed + c_total - c_failed))
    failed=$((failed + c_failed))
    if [ "$c_failed" -gt 0 ]; then
      while IFS= read -r name; do failures+=("$prefix$name"); done < <(
        sed -n '/The following tests FAILED:/,$p' "$ctest_log" | sed -nE 's/^[[:space:]]*[0-9]+ - ([^ ]+).*/\1/p')
    fi
  elif [ "$ctest_rc" -ne 0 ]; then
    record_fail "${prefix}ctest" "ctest exited with $ctest_rc without a summary"
  else
    record_fail "${prefix}ctest" "ctest found no unit tests"
  fi
}
section "unit tests (ctest, $asan_dir)"
run_ctest "$asan_dir" ctest:

# ---- 4b. fuzzing ---------------------------------------------------------
# The libFuzzer targets (tests/fuzz, docs/TESTING.md), built with clang into
# their own build directory, each run for ENGINE_FUZZ_SECONDS (default 20;
# 0 skips them) from its seed corpus; a crash, sanitizer report, leak, hang or
# failed invariant fails the target. With words on the command line, only the
# targets whose names (fuzz_pipeline, fuzz_http, ...) contain one run.
fuzz_dir=${ENGINE_FUZZ_BUILD_DIR:-build-fuzz}
case "$fuzz_dir" in /*) ;; *) fuzz_dir=$root/$fuzz_dir ;; esac
fuzz_seconds=${ENGINE_FUZZ_SECONDS:-20}
fuzz_want=()
for t in pipeline manifest index pack key http s3xml; do
  if [ $# -gt 0 ]; then
    want=0
    for w in "$@"; do case "fuzz_$t" in *"$w"*) want=1 ;; esac; done
    [ "$want" = 1 ] || continue
  fi
  fuzz_want+=("$t")
done
if [ ${#fuzz_want[@]} -eq 0 ]; then
  : # the words select no fuzz target
elif [ "$fuzz_seconds" = 0 ]; then
  section "fuzzing: skipped (ENGINE_FUZZ_SECONDS=0)"
elif ! command -v clang >/dev/null 2>&1; then
  section "fuzzing: skipped: clang is not installed (scripts/setup-deps.sh installs clang-14 and libclang-rt-14-dev)"
else
  section "fuzzing (tests/fuzz: ${fuzz_seconds}s per target, clang build in $fuzz_dir)"
  if build "$fuzz_dir" fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DENGINE_FUZZ=ON \
    -DENGINE_BUILD_TESTS=OFF; then
    fuzz_log="$logdir/fuzz.log"
    fuzz_rc=0
    ENGINE_FUZZ_BUILD_DIR="$fuzz_dir" ENGINE_FUZZ_SECONDS="$fuzz_seconds" ENGINE_FUZZ_JOBS="$jobs" \
      ENGINE_TEST_TMPDIR="$tmpbase" timeout --kill-after=10 $((fuzz_seconds * ${#fuzz_want[@]} + 300)) \
      bash tests/fuzz/run.sh "${fuzz_want[@]}" </dev/null >"$fuzz_log" 2>&1 || fuzz_rc=$?
    grep -qv '^PASS  ' "$fuzz_log" && grep -v '^PASS  \|^FAIL  ' "$fuzz_log"
    n_verdicts=0
    while read -r verdict name detail; do
      n_verdicts=$((n_verdicts + 1))
      detail=${detail#(}
      if [ "$verdict" = PASS ]; then
        record_pass "$name" "${detail%)}"
      else
        record_fail "$name" "${detail%)}"
      fi
    done < <(grep -E '^(PASS|FAIL)  fuzz_' "$fuzz_log")
    if [ "$n_verdicts" -ne ${#fuzz_want[@]} ]; then
      show_tail "$fuzz_log"
      record_fail fuzz "tests/fuzz/run.sh exited with $fuzz_rc after $n_verdicts of ${#fuzz_want[@]} targets"
    fi
  else
    record_fail "build-fuzz" "the clang fuzz build failed"
  fi
fi

# ---- 4c. SDK example -----------------------------------------------------
if [ -f tests/sdk-example/test-sdk.sh ]; then
  section "SDK example (tests/sdk-example/test-sdk.sh)"
  log="$logdir/test-sdk.log"
  t0=$(date +%s)
  sdk_env=()
  [ "$plain_ok" = 1 ] && sdk_env=(ENGINE_BUILD="$plain_dir")
  if env "${sdk_env[@]}" timeout --kill-after=10 "$timeout_s" bash tests/sdk-example/test-sdk.sh </dev/null >"$log" 2>&1; then
    record_pass test-sdk "$(($(date +%s) - t0))s"
  else
    show_tail "$log"
    record_fail test-sdk "$(($(date +%s) - t0))s"
  fi
fi

# ---- 4d. integration tests ----------------------------------------------
section "integration tests (tests/integration, engine from $asan_dir)"
export ENGINE_BIN="$asan_dir/engine"
if [ "$plain_ok" = 1 ]; then
  export ENGINE_BIN_PLAIN="$plain_dir/engine"
else
  unset ENGINE_BIN_PLAIN
fi
shopt -s nullglob
tests=(tests/integration/test_*.sh)
shopt -u nullglob
[ ${#tests[@]} -gt 0 ] || record_fail integration "no tests/integration/test_*.sh found"
# wanted NAME: no words on the command line, or NAME contains one of them
wanted() {
  [ ${#words[@]} -eq 0 ] && return 0
  local w
  for w in "${words[@]}"; do case "$1" in *"$w"*) return 0 ;; esac; done
  return 1
}
words=("$@")
# run_integration LABEL SCRIPT [CHECK]: one test in a scratch directory;
# CHECK (a function, optional) runs after it and may fail it (prints why)
run_integration() {
  local label=$1 t=$2 check=${3:-} dir log t0 rc el why
  dir=$(mktemp -d "$tmpbase/engine-test-$(basename "$t" .sh).XXXXXX") || {
    record_fail "$label" "unable to create a scratch directory under $tmpbase"
    return
  }
  log="$logdir/${label//:/-}.log"
  t0=$(date +%s)
  rc=0
  TMPDIR="$dir" timeout --kill-after=10 "$timeout_s" bash "$t" </dev/null >"$log" 2>&1 || rc=$?
  el="$(($(date +%s) - t0))s"
  why=""
  [ -z "$check" ] || why=$("$check" "$log")
  if [ "$rc" -eq 0 ] && [ -z "$why" ]; then
    record_pass "$label" "$el"
  else
    [ "$rc" -eq 124 ] && echo "(timed out after ${timeout_s}s)" >>"$log"
    show_tail "$log"
    record_fail "$label" "$el, exit $rc${why:+, $why}"
  fi
  if [ "${KEEP_TMP:-0}" = 1 ] || { [ "${KEEP_TMP:-0}" = fail ] && [ "$rc" -ne 0 ]; }; then
    echo "      scratch directory kept: $dir"
  else
    chmod -R u+rwx "$dir" 2>/dev/null
    rm -rf "$dir"
  fi
}
for t in "${tests[@]}"; do
  name=$(basename "$t" .sh)
  wanted "$name" || continue
  run_integration "$name" "$t"
done

# ---- 5. ThreadSanitizer ---------------------------------------------------
# The commands that run threads (the backup's pool, the restore's read-ahead
# and writers, check --read-data's readers, prune, the S3 sink's streamed
# reads) under TSan: the unit tests and these integration tests. A report
# is written to $tsan_logs (log_path) and fails the test that caused it.
# (check --read-data's readers run in test_corruption and test_lifecycle_prune;
# test_check_invariant repeats them on twelve kinds of damage, too slow here)
tsan_tests=(test_roundtrip_kinds test_dedup_change test_corruption
  test_lifecycle_prune test_s3_roundtrip test_disaster_s3)
tsan_dir=${ENGINE_TSAN_BUILD_DIR:-build-tsan}
case "$tsan_dir" in /*) ;; *) tsan_dir=$root/$tsan_dir ;; esac
tsan_want=()
for name in "${tsan_tests[@]}"; do
  wanted "$name" && [ -f "tests/integration/$name.sh" ] && tsan_want+=("$name")
done
# tsan_reports LOG: the reports this test left, appended to its log; prints
# how many (nothing when none)
tsan_reports() {
  local f n=0
  shopt -s nullglob
  for f in "$tsan_logs"/tsan.*; do
    n=$((n + 1))
    {
      echo "----- ThreadSanitizer report $f -----"
      cat "$f"
    } >>"$1"
    rm -f "$f"
  done
  shopt -u nullglob
  [ "$n" -eq 0 ] || echo "$n ThreadSanitizer report(s)"
}
if [ "${ENGINE_TSAN:-1}" = 0 ]; then
  section "ThreadSanitizer: skipped (ENGINE_TSAN=0)"
elif [ ${#tsan_want[@]} -gt 0 ] || [ ${#words[@]} -eq 0 ]; then
  section "ThreadSanitizer: build $tsan_dir, unit tests and ${tsan_want[*]}"
  if build "$tsan_dir" tsan -DCMAKE_BUILD_TYPE=Debug -DENGINE_SANITIZE=OFF -DENGINE_BUILD_TESTS=ON \
    "-DCMAKE_C_FLAGS=-fsanitize=thread -fno-omit-frame-pointer -O1" \
    -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread \
    -DCMAKE_MODULE_LINKER_FLAGS=-fsanitize=thread; then
    tsan_logs=$(mktemp -d "$tmpbase/engine-tsan.XXXXXX")
    export TSAN_OPTIONS="log_path=$tsan_logs/tsan suppressions=$root/tests/tsan.supp second_deadlock_stack=1 history_size=4"
    if [ ${#words[@]} -eq 0 ]; then
      run_ctest "$tsan_dir" tsan:
      why=$(tsan_reports "$logdir/ctest-tsan.log")
      if [ -n "$why" ]; then
        show_tail "$logdir/ctest-tsan.log" 120
        record_fail "tsan:ctest" "$why"
      fi
    fi
    saved_bin=$ENGINE_BIN
    export ENGINE_BIN="$tsan_dir/engine"
    for name in "${tsan_want[@]}"; do
      run_integration "tsan:$name" "tests/integration/$name.sh" tsan_reports
    done
    export ENGINE_BIN=$saved_bin
    unset TSAN_OPTIONS
    rm -rf "$tsan_logs"
  else
    record_fail "build-tsan" "the ThreadSanitizer build failed"
  fi
fi

# ---- 6. coverage ------------------------------------------------------------
if [ "$coverage" = 1 ]; then
  section "line coverage per module (gcov, $asan_dir: unit and integration tests)"
  python3 scripts/coverage.py "$asan_dir" || echo "(coverage could not be measured; see above)"
fi

finish
