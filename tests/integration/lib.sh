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
#   at_exit CMD [ARGS...]
#                     run CMD when the test exits (latest first, before $T is
#                     removed; $LIB_EXIT_RC holds the test's exit status)
#   free_port         a TCP port free on 127.0.0.1
#   ceph_start, aws_init, awsc ARGS
#                     a throwaway Ceph radosgw (CEPH_PORT, S3_EP) and awscli
#                     against it (tests/servers/ceph.sh)
#   proxy_start, proxy_stop, proxy_ensure, proxy_arm, proxy_stats
#                     tests/servers/faultproxy.py in front of radosgw
#                     (PROXY_PORT, PROXY_EP)
#   use_postgres      tests/servers/pg.sh's helpers (pg_test_start, q, ...)
#   serve_start NAME ARGS, serve_stop NAME PID
#                     engine serve on a free port (SRV_PID, SRV_PORT, URL)

TEST_NAME=$(basename "${0%.sh}")
TESTS_INTEGRATION_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$TESTS_INTEGRATION_DIR/../.." && pwd)

fail() {
  echo "FAIL: $TEST_NAME: $*" >&2
  TEST_FAILED=1
  exit 1
}

note() { echo "[$TEST_NAME] $*"; }

# engine's plugins when only ENGINE_PLUGIN_PATH is set (its first directory)
if [ -z "${ENGINE_PLUGIN_DIR:-}" ] && [ -n "${ENGINE_PLUGIN_PATH:-}" ] && [ -d "${ENGINE_PLUGIN_PATH%%:*}" ]; then
  ENGINE_PLUGIN_DIR=${ENGINE_PLUGIN_PATH%%:*}
fi

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
# at_exit CMD [ARGS...]: run when the test exits, the latest registered
# first, before the scratch directory is removed; LIB_EXIT_RC is the test's
# exit status then (a server's logs are worth showing when it is not 0).
_LIB_AT_EXIT=()
at_exit() {
  local cmd
  printf -v cmd '%q ' "$@"
  _LIB_AT_EXIT+=("$cmd")
}
_lib_run_at_exit() {
  local i
  for ((i = ${#_LIB_AT_EXIT[@]} - 1; i >= 0; i--)); do
    eval "${_LIB_AT_EXIT[i]}" || true
  done
  _LIB_AT_EXIT=()
}
_lib_cleanup() {
  local rc=$?
  [ "$rc" -eq 0 ] || TEST_FAILED=1
  LIB_EXIT_RC=$rc
  _lib_run_at_exit
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
# a timeout's SIGTERM ends the test through the EXIT trap (servers stopped)
trap 'exit 143' TERM

# engine's local index cache (core/repo/index_cache.c) goes to the scratch
# directory, not to $HOME/.cache of whoever runs the tests
export ENGINE_CACHE_DIR=${ENGINE_CACHE_DIR:-$T/cache}
# and its state (the audit log, docs/CLI.md "audit") too
export ENGINE_STATE_DIR=${ENGINE_STATE_DIR:-$T/state}

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
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|runtime error:' "$err"; then
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

# ---- servers -------------------------------------------------------------

# free_port: a TCP port that is free on 127.0.0.1 (nothing holds it after).
free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ceph_start [MINPART]: a throwaway Ceph cluster (one monitor, one OSD, one
# radosgw; tests/servers/ceph.sh) in $T/ceph, radosgw on 127.0.0.1:CEPH_PORT
# (S3_EP is its URL), with radosgw's minimum multipart part size MINPART
# bytes (default: radosgw's 5 MiB). Its output goes to $T/ceph-start.log; a
# start that fails is tried once more on new ports (the monitor sometimes
# refuses 'osd new' while it settles). Stopped when the test exits, after
# showing the daemons' logs if the test failed.
ceph_start() {
  local minpart=${1:-} attempt
  CEPH_SH="$REPO_ROOT/tests/servers/ceph.sh"
  CEPH_DIR=$T/ceph
  at_exit _ceph_stop
  for attempt in 1 2; do
    CEPH_PORT=$(free_port)
    CEPH_MONPORT=$(free_port)
    note "starting Ceph + radosgw on 127.0.0.1:$CEPH_PORT"
    if env ${minpart:+MINPART=$minpart} MONPORT="$CEPH_MONPORT" bash "$CEPH_SH" start "$CEPH_DIR" \
      "$CEPH_PORT" >"$T/ceph-start.log" 2>&1; then
      S3_EP=http://127.0.0.1:$CEPH_PORT
      return 0
    fi
    bash "$CEPH_SH" stop "$CEPH_DIR" >/dev/null 2>&1 || true
    if [ "$attempt" = 1 ]; then
      note "Ceph did not start ($(grep -m1 'error:' "$T/ceph-start.log" || echo 'see the log')); once more"
    fi
  done
  cat "$T/ceph-start.log" >&2
  fail "unable to start Ceph"
}
_ceph_stop() {
  [ "${LIB_EXIT_RC:-0}" -eq 0 ] || bash "$CEPH_SH" logs "$CEPH_DIR" || true
  bash "$CEPH_SH" stop "$CEPH_DIR" >/dev/null 2>&1 || true
}

# aws_init: AWS is awscli ($AWS_CLI, else /usr/bin/aws, else on the PATH),
# with the credentials of ceph.sh's S3 user in the environment (and nothing
# of the caller's AWS configuration); awsc ARGS runs it against S3_EP.
aws_init() {
  AWS=${AWS_CLI:-/usr/bin/aws}
  [ -x "$AWS" ] || AWS=$(command -v aws || true)
  [ -n "$AWS" ] || fail "awscli is required (apt-get install -y --no-install-recommends awscli)"
  export AWS_ACCESS_KEY_ID=TESTACCESSKEY AWS_SECRET_ACCESS_KEY=TESTSECRETKEY AWS_DEFAULT_REGION=us-east-1
  unset AWS_SESSION_TOKEN AWS_PROFILE AWS_CA_BUNDLE
}
awsc() { "$AWS" --endpoint-url "$S3_EP" "$@"; }

# proxy_start: tests/servers/faultproxy.py on 127.0.0.1:PROXY_PORT (PROXY_EP
# its URL; the same port on every start) in front of radosgw (CEPH_PORT),
# its output appended to $T/proxy.log; waits until it answers. Stopped when
# the test exits.
PROXY_PID=
PROXY_PORT=
proxy_up() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PROXY_PORT/__stats"; }
proxy_start() {
  if [ -z "$PROXY_PORT" ]; then
    PROXY_PORT=$(free_port)
    PROXY_EP=http://127.0.0.1:$PROXY_PORT
    at_exit proxy_stop
  fi
  "$PYTHON" "$REPO_ROOT/tests/servers/faultproxy.py" "$PROXY_PORT" "$CEPH_PORT" >>"$T/proxy.log" 2>&1 &
  PROXY_PID=$!
  local i
  for i in $(seq 50); do
    proxy_up && return 0
    sleep 0.1
  done
  show "$T/proxy.log"
  fail "the fault proxy did not start on 127.0.0.1:$PROXY_PORT"
}
proxy_stop() {
  if [ -n "$PROXY_PID" ]; then
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
  fi
}
# proxy_ensure: start the proxy again if it ended (mode `stop` ends it).
proxy_ensure() {
  if ! proxy_up; then
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
    proxy_start
  fi
}
# proxy_arm MODE COUNT [KEY=VALUE...]: the next COUNT matching requests fail
# with MODE; keys: method, every, path, delay (faultproxy.py's query).
proxy_arm() {
  local mode=$1 count=$2 kv
  shift 2
  local args=()
  for kv in "$@"; do args+=(--data-urlencode "$kv"); done
  curl -sf -X POST -G "http://127.0.0.1:$PROXY_PORT/__fault/$mode/$count" "${args[@]}" >/dev/null ||
    fail "unable to arm the proxy ($mode $count $*)"
}
# proxy_stats EXPR: a Python expression on the proxy's /__stats document `j`.
proxy_stats() {
  curl -s --max-time 5 "http://127.0.0.1:$PROXY_PORT/__stats" |
    "$PYTHON" -c "import json, sys; j = json.load(sys.stdin); print($1)"
}

# use_postgres: the throwaway PostgreSQL servers and helpers of
# tests/servers/pg.sh (pg_test_start, q, qa, pg_ddl, pg_fingerprint,
# pg_write_pipeline, pg_bg); servers are stopped when the test exits.
use_postgres() {
  # shellcheck source=../servers/pg.sh
  . "$REPO_ROOT/tests/servers/pg.sh"
}

# serve_start NAME ARGS...: `engine serve ARGS` in the background (give it
# --listen 127.0.0.1:0), its output in $T/NAME.out and $T/NAME.err; waits
# until it reports its address. Sets SRV_PID, SRV_PORT and URL. Every server
# still running when the test exits is killed.
SERVE_PIDS=()
serve_start() {
  local name=$1
  shift
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" serve "$@" \
    >"$T/$name.out" 2>"$T/$name.err" </dev/null &
  SRV_PID=$!
  [ ${#SERVE_PIDS[@]} -gt 0 ] || at_exit _serve_kill_all
  SERVE_PIDS+=("$SRV_PID")
  local i
  SRV_PORT=""
  for i in $(seq 1 200); do
    SRV_PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$T/$name.err" 2>/dev/null || true)
    [ -n "$SRV_PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || { show "$T/$name.err"; fail "engine serve ($name) exited at start"; }
    sleep 0.1
  done
  [ -n "$SRV_PORT" ] || { show "$T/$name.err"; fail "engine serve ($name) did not report its address"; }
  URL=http://127.0.0.1:$SRV_PORT
}
_serve_kill_all() {
  local p
  for p in "${SERVE_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
# serve_stop NAME PID: SIGTERM, wait, expect exit status 0 and no sanitizer
# report.
serve_stop() {
  local name=$1 pid=$2 rc=0
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|runtime error:' "$T/$name.err"; then
    show "$T/$name.err"
    fail "sanitizer report from engine serve ($name)"
  fi
  [ "$rc" -eq 0 ] || { show "$T/$name.err"; fail "engine serve ($name) exited with status $rc after SIGTERM, expected 0"; }
}
