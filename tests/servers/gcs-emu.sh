#!/usr/bin/env bash
# Starts and stops the firebase-tools Cloud Storage emulator (GCS JSON API)
# for the gcs sink's integration tests.
#
#   gcs-emu.sh install              install firebase-tools into the cache (once)
#   gcs-emu.sh start DIR PORT       install if needed, start on 127.0.0.1:PORT,
#                                   wait until it answers; pid in DIR/gcs-emu.pid,
#                                   log in DIR/gcs-emu.log
#   gcs-emu.sh stop DIR             stop the emulator started with DIR
#
# firebase-tools@15.34.2 (about 300 MB, 2 to 6 minutes to install) is kept in
# $ENGINE_TEST_CACHE/firebase (default /var/cache/engine-test/firebase) and
# reused by later runs. A failed install (no network to the npm registry) is
# an error with the reason, never a silent skip.
set -euo pipefail

FIREBASE_VERSION=15.34.2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${ENGINE_TEST_CACHE:-/var/cache/engine-test}/firebase

die() {
  echo "gcs-emu: $*" >&2
  exit 1
}

installed() {
  local pkg=$CACHE/node_modules/firebase-tools/package.json
  [ -f "$pkg" ] || return 1
  # the version, and that the emulator's modules and their dependencies load
  FIREBASE_TOOLS_PREFIX=$CACHE node -e '
    const path = require("path");
    const pkg = require.resolve("firebase-tools/package.json", { paths: [process.env.FIREBASE_TOOLS_PREFIX] });
    if (require(pkg).version !== process.argv[1]) process.exit(1);
    require(path.join(path.dirname(pkg), "lib", "emulator", "storage", "index"));
  ' "$FIREBASE_VERSION" >/dev/null 2>&1
}

install() {
  command -v node >/dev/null 2>&1 || die "node is not installed (apt-get install -y nodejs npm)"
  command -v npm >/dev/null 2>&1 || die "npm is not installed (apt-get install -y npm)"
  mkdir -p "$CACHE" || die "unable to create the cache directory '$CACHE'"
  # one installer at a time: tests may start in parallel
  exec 9>"$CACHE/.lock"
  flock 9
  if installed; then
    return 0
  fi
  echo "gcs-emu: installing firebase-tools@$FIREBASE_VERSION into $CACHE (first time only, a few minutes)" >&2
  local log=$CACHE/npm-install.log
  if ! (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error \
    "firebase-tools@$FIREBASE_VERSION") >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "npm install firebase-tools@$FIREBASE_VERSION failed (is the npm registry reachable?); full log: $log"
  fi
  installed || die "firebase-tools@$FIREBASE_VERSION was installed into $CACHE but its storage emulator does not load; see $log"
}

start() {
  local dir=$1 port=$2
  [[ $port =~ ^[0-9]+$ ]] || die "invalid port '$port'"
  mkdir -p "$dir"
  install
  if [ -f "$dir/gcs-emu.pid" ] && kill -0 "$(cat "$dir/gcs-emu.pid")" 2>/dev/null; then
    die "an emulator started from $dir is still running (pid $(cat "$dir/gcs-emu.pid"))"
  fi
  FIREBASE_TOOLS_PREFIX=$CACHE nohup node "$HERE/gcs-emu.js" "$port" >"$dir/gcs-emu.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/gcs-emu.pid"
  local i
  for i in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$dir/gcs-emu.log" >&2
      die "the emulator exited before answering on 127.0.0.1:$port"
    fi
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/storage/v1/b/probe/o" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  kill "$pid" 2>/dev/null || true
  tail -n 30 "$dir/gcs-emu.log" >&2
  die "the emulator did not answer on 127.0.0.1:$port within 60 s"
}

stop() {
  local dir=$1 pid
  [ -f "$dir/gcs-emu.pid" ] || return 0
  pid=$(cat "$dir/gcs-emu.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/gcs-emu.pid"
}

case "${1:-}" in
install) install ;;
start)
  [ $# -eq 3 ] || die "usage: $0 start DIR PORT"
  start "$2" "$3"
  ;;
stop)
  [ $# -eq 2 ] || die "usage: $0 stop DIR"
  stop "$2"
  ;;
*) die "usage: $0 install | start DIR PORT | stop DIR" ;;
esac
