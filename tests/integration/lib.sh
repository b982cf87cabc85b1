# shellcheck shell=bash
# Shared helpers for the integration tests (sourced, never run).
#
# A test does:
#     set -euo pipefail
#     . "$(dirname "$0")/lib.sh"
# and gets:
#   ENGINE_BIN        the engine under test ($ENGINE_BIN, else build-asan/engine,
#                     else build/engine in the repository)
#   ENGINE_PLUGIN_DIR the plugins/ directory next to it (exported as
#                     ENGINE_PLUGIN_PATH for every engine call)
#   ENGINE_TEST_PLUGIN_DIR
#                     tests/plugins/ of the same build (test-only plugins)
#   T                 a fresh scratch directory, removed on exit unless
#                     KEEP_TMP=1 or the test failed with KEEP_TMP=fail
#   engine ARGS       the engine with the plugin path and the test passphrase
#   run_engine OUT ERR ARGS
#                     run the engine, stdout to OUT, stderr to ERR, exit status
#                     in $RC (never trips set -e)
#   write_pipeline FILE NAME REPO PATH...
#                     a files -> local pipeline (zstd 3, aes-256-gcm,
#                     passphrase env:ENGINE_PASSPHRASE)
#   assert_* / fail   checks that print what differed and exit 1
#   json_get FILE EXPR
#                     evaluate a Python expression on the JSON document `j`
#                     read from FILE and print the result
#   compare_trees A B [OPTIONS]
#                     compare_trees.py: byte for byte and metadata

TEST_NAME=$(basename "${0%.sh}")
TESTS_INTEGRATION_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$TESTS_INTEGRATION_DIR/../.." && pwd)

fail() {
  echo "FAIL: $TEST_NAME: $*" >&2
  TEST_FAILED=1
  exit 1
}

note() { echo "[$TEST_NAME] $*"; }

if [ -z "${ENGINE_BIN:-}" ]; then
  for cand in "$REPO_ROOT/build-asan/engine" "$REPO_ROOT/build/engine"; do
    if [ -x "$cand" ]; then
      ENGINE_BIN=$cand
      break
    fi
  done
fi
[ -n "${ENGINE_BIN:-}" ] || fail "no engine binary: set ENGINE_BIN or build into build-asan/ or build/"
[ -x "$ENGINE_BIN" ] || fail "ENGINE_BIN='$ENGINE_BIN' is not an executable file"
ENGINE_BIN=$(cd "$(dirname "$ENGINE_BIN")" && pwd)/$(basename "$ENGINE_BIN")
ENGINE_PLUGIN_DIR=${ENGINE_PLUGIN_DIR:-$(dirname "$ENGINE_BIN")/plugins}
[ -d "$ENGINE_PLUGIN_DIR" ] || fail "plugin directory '$ENGINE_PLUGIN_DIR' does not exist"
# test-only plugins (tests/plugins/*), built by tests/CMakeLists.txt
ENGINE_TEST_PLUGIN_DIR=${ENGINE_TEST_PLUGIN_DIR:-$(dirname "$ENGINE_BIN")/tests/plugins}
export ENGINE_BIN ENGINE_PLUGIN_DIR ENGINE_TEST_PLUGIN_DIR

# Sanitizer settings apply to every engine we start, also when a test is run
# by hand outside tests/run-all.sh.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TEST_PASSPHRASE=integration-test-passphrase
export ENGINE_PASSPHRASE=$TEST_PASSPHRASE
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || fail "python3 is required"

TEST_FAILED=0
# the physical path: the files source records resolved paths
T=$(mktemp -d "${TMPDIR:-/tmp}/engine-it-$TEST_NAME.XXXXXX") || fail "unable to create a scratch directory"
T=$(cd "$T" && pwd -P)
_lib_cleanup() {
  local rc=$?
  [ "$rc" -eq 0 ] || TEST_FAILED=1
  if [ "${KEEP_TMP:-0}" = 1 ] || { [ "${KEEP_TMP:-0}" = fail ] && [ "$TEST_FAILED" = 1 ]; }; then
    echo "[$TEST_NAME] scratch directory kept: $T" >&2
  else
    # restored trees may hold read-only directories
    chmod -R u+rwx "$T" 2>/dev/null || true
    rm -rf "$T"
  fi
  return "$rc"
}
trap _lib_cleanup EXIT

# engine's local index cache (core/repo/index_cache.c) goes to the scratch
# directory, not to $HOME/.cache of whoever runs the tests
export ENGINE_CACHE_DIR=${ENGINE_CACHE_DIR:-$T/cache}

engine() {
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" "$@"
}

# run_engine OUT ERR ARGS...: stdin is /dev/null (no terminal, as in CI).
run_engine() {
  local out=$1 err=$2
  shift 2
  RC=0
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" "$@" >"$out" 2>"$err" </dev/null || RC=$?
  # A sanitizer report means an engine bug whatever the exit status was.
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$err"; then
    echo "---- stderr of: engine $* ----" >&2
    cat "$err" >&2
    fail "sanitizer report from 'engine $*'"
  fi
  return 0
}

# Print a file with a header, for failure messages.
show() {
  local f
  for f in "$@"; do
    echo "---- $f ----" >&2
    if [ -f "$f" ]; then head -c 20000 "$f" >&2; else echo "(missing)" >&2; fi
  done
  echo "----" >&2
}

# run_ok OUT ERR ARGS...: run_engine and fail unless the status is 0.
run_ok() {
  local out=$1 err=$2
  run_engine "$@"
  if [ "$RC" -ne 0 ]; then
    show "$out" "$err"
    shift 2
    fail "'engine $*' exited with status $RC, expected 0"
  fi
}

# YAML single-quoted scalar.
yq() {
  local s=${1//\'/\'\'}
  printf "'%s'" "$s"
}

# write_pipeline FILE NAME REPO PATH...
write_pipeline() {
  local file=$1 name=$2 repo=$3
  shift 3
  {
    echo "version: 1"
    echo "name: $name"
    echo "sources:"
    echo "  - name: files"
    echo "    type: files"
    echo "    with:"
    echo "      paths:"
    local p
    for p in "$@"; do
      echo "        - $(yq "$p")"
    done
    echo "stages:"
    echo "  compress: {algorithm: zstd, level: 3}"
    echo "  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}"
    echo "sinks:"
    echo "  - name: local"
    echo "    type: local"
    echo "    with:"
    echo "      path: $(yq "$repo")"
  } >"$file"
}

assert_eq() { # EXPECTED ACTUAL WHAT
  [ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
}

assert_rc() { # EXPECTED WHAT [FILES TO SHOW...]
  local want=$1 what=$2
  shift 2
  if [ "$RC" -ne "$want" ]; then
    [ $# -eq 0 ] || show "$@"
    fail "$what: exit status $RC, expected $want"
  fi
}

assert_contains() { # FILE NEEDLE WHAT  (fixed string, case-insensitive)
  if ! grep -qiF -- "$2" "$1"; then
    show "$1"
    fail "$3: '$2' not found in $1"
  fi
}

assert_not_contains() { # FILE NEEDLE WHAT
  if grep -qiF -- "$2" "$1"; then
    show "$1"
    fail "$3: '$2' unexpectedly found in $1"
  fi
}

assert_lt() { # A B WHAT   (integers: A < B)
  [ "$1" -lt "$2" ] || fail "$3: expected $1 < $2"
}

assert_files_equal() { # A B WHAT
  if ! cmp -s -- "$1" "$2"; then
    cmp -- "$1" "$2" >&2 || true
    fail "$3: '$1' and '$2' differ"
  fi
}

assert_empty_dir_or_absent() { # DIR WHAT
  if [ -e "$1" ]; then
    [ -d "$1" ] || fail "$2: '$1' exists and is not a directory"
    local content
    content=$(find "$1" -mindepth 1 -printf '%P\n' | head -20)
    [ -z "$content" ] || fail "$2: '$1' is not empty: $(echo $content)"
  fi
}

# json_get FILE EXPR: `j` is the parsed document; prints str(result), or the
# JSON text of lists / dicts; fails if the file is not JSON.
json_get() {
  "$PYTHON" - "$1" "$2" <<'EOF' || fail "unable to evaluate '$2' on the JSON in $1"
import json, sys
with open(sys.argv[1], "rb") as f:
    j = json.loads(f.read())
r = eval(sys.argv[2], {"j": j})
if isinstance(r, (dict, list)):
    print(json.dumps(r, sort_keys=True))
elif isinstance(r, bool):
    print("true" if r else "false")
else:
    print(r)
EOF
}

compare_trees() {
  "$PYTHON" "$TESTS_INTEGRATION_DIR/compare_trees.py" "$@"
}

# A listing of every file under DIR: relative name, type, size, mtime (ns).
listing() {
  (cd "$1" && find . -printf '%P %y %s %T@ %m\n' | LC_ALL=C sort)
}

# random_file PATH MIB
random_file() {
  head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1" || fail "unable to write $2 MiB of random data to $1"
}

# Like random_file, but the same bytes on every run for the same SEED (an
# AES-256-CTR keystream): for tests whose figures depend on the data.
seeded_file() { # PATH MIB SEED
  # openssl ends on SIGPIPE when head has enough: that status is expected
  openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass "pass:$3" </dev/zero 2>/dev/null |
    head -c "$(($2 * 1024 * 1024))" >"$1" || true
  [ "$(stat -c %s "$1")" -eq $(($2 * 1024 * 1024)) ] || fail "unable to write $2 MiB of seeded data to $1"
}

# Where the files source puts an absolute path under a restore target.
restored_path() { # TARGET ABSPATH
  printf '%s/%s' "$1" "${2#/}"
}
