#!/usr/bin/env bash
# CongoDB, a MongoDB wire-protocol server written in JavaScript (npm
# @push.rocks/smartmongo), for the mongodb source's integration tests: no
# real mongod can be installed from Debian or npm.
#
#   congodb.sh install              install it into the cache (once)
#   congodb.sh start DIR PORT       install if needed, start on 127.0.0.1:PORT
#                                   (in memory), wait until it listens; pid in
#                                   DIR/congodb.pid, log in DIR/congodb.log
#   congodb.sh stop DIR             stop the server started with DIR
#   congodb.sh kill DIR             SIGKILL it (a server dying mid-operation)
#
# @push.rocks/smartmongo@2.2.0 is kept in $ENGINE_TEST_CACHE/congodb
# (default /var/cache/engine-test/congodb) and reused by later runs; three
# of its dependencies that CongoDB does not use (and that the registry
# lacks or that download a real mongod) are replaced by empty local
# packages through npm overrides. Installing takes a few seconds and about
# 25 MB. A failed install (no npm registry) is an error with the reason,
# never a silent skip.
#
# What CongoDB is not (the tests say which of their checks it cannot show):
# a standalone server only (no replica set: no snapshot reads, no cluster
# time, no oplog), no authentication (saslStart "succeeds" without
# checking anything), collection options, views and validators are
# accepted and forgotten, indexes keep only name, key, unique, sparse and
# expireAfterSeconds (partialFilterExpression and the rest are dropped),
# numbers are stored as JavaScript numbers (an int64 that fits int32 comes
# back as int32, larger ones and integral doubles as other numeric types),
# string _id values are refused, replies over 16 MB fail.
set -euo pipefail

SMARTMONGO_VERSION=2.2.0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${ENGINE_TEST_CACHE:-/var/cache/engine-test}/congodb

die() {
  echo "congodb: $*" >&2
  exit 1
}

installed() {
  local pkg=$CACHE/node_modules/@push.rocks/smartmongo/package.json
  [ -f "$pkg" ] || return 1
  CONGO_PREFIX=$CACHE node --input-type=module -e '
    import fs from "node:fs"; import path from "node:path"; import { pathToFileURL } from "node:url";
    const p = process.env.CONGO_PREFIX, m = path.join(p, "node_modules", "@push.rocks", "smartmongo");
    if (JSON.parse(fs.readFileSync(path.join(m, "package.json"))).version !== process.argv[1]) process.exit(1);
    await import(pathToFileURL(path.join(m, "dist_ts", "congodb", "index.js")).href);
  ' "$SMARTMONGO_VERSION" >/dev/null 2>&1
}

install() {
  command -v node >/dev/null 2>&1 || die "node is not installed (apt-get install -y nodejs npm)"
  command -v npm >/dev/null 2>&1 || die "npm is not installed (apt-get install -y npm)"
  mkdir -p "$CACHE" || die "unable to create the cache directory '$CACHE'"
  # one installer at a time: tests may start in parallel
  exec 9>"$CACHE/.lock"
  flock 9
  if installed; then
    exec 9>&-
    return 0
  fi
  echo "congodb: installing @push.rocks/smartmongo@$SMARTMONGO_VERSION into $CACHE (first time only)" >&2
  local s
  for s in mongodump smartdata mongodb-memory-server; do
    mkdir -p "$CACHE/stubs/$s"
    echo 'export default {};' >"$CACHE/stubs/$s/index.js"
  done
  printf '{"name":"@push.rocks/mongodump","version":"0.0.0","type":"module","main":"index.js"}\n' \
    >"$CACHE/stubs/mongodump/package.json"
  printf '{"name":"@push.rocks/smartdata","version":"0.0.0","type":"module","main":"index.js"}\n' \
    >"$CACHE/stubs/smartdata/package.json"
  printf '{"name":"mongodb-memory-server","version":"0.0.0","type":"module","main":"index.js"}\n' \
    >"$CACHE/stubs/mongodb-memory-server/package.json"
  cat >"$CACHE/package.json" <<EOF
{ "name": "engine-congodb", "version": "1.0.0", "private": true, "type": "module",
  "dependencies": { "@push.rocks/smartmongo": "$SMARTMONGO_VERSION" },
  "overrides": {
    "@push.rocks/mongodump": "file:./stubs/mongodump",
    "@push.rocks/smartdata": "file:./stubs/smartdata",
    "mongodb-memory-server": "file:./stubs/mongodb-memory-server" } }
EOF
  local log=$CACHE/npm-install.log
  if ! (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "npm install @push.rocks/smartmongo@$SMARTMONGO_VERSION failed (is the npm registry reachable?); full log: $log"
  fi
  installed || die "@push.rocks/smartmongo@$SMARTMONGO_VERSION was installed into $CACHE but CongoDB does not load; see $log"
  exec 9>&- # servers started later must not hold the lock
}

start() {
  local dir=$1 port=$2
  [[ $port =~ ^[0-9]+$ ]] || die "invalid port '$port'"
  mkdir -p "$dir"
  install
  if [ -f "$dir/congodb.pid" ] && kill -0 "$(cat "$dir/congodb.pid")" 2>/dev/null; then
    die "a server started from $dir is still running (pid $(cat "$dir/congodb.pid"))"
  fi
  rm -f "$dir/congodb.pid" "$dir/congodb.ready"
  nohup node "$HERE/congodb-server.mjs" --prefix "$CACHE" --port "$port" \
    --pidfile "$dir/congodb.ready" >"$dir/congodb.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/congodb.pid"
  local i
  for i in $(seq 1 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$dir/congodb.log" >&2
      die "CongoDB exited before listening on 127.0.0.1:$port"
    fi
    [ -s "$dir/congodb.ready" ] && return 0
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  tail -n 30 "$dir/congodb.log" >&2
  die "CongoDB did not listen on 127.0.0.1:$port within 20 s"
}

stop() { # DIR SIGNAL
  local dir=$1 sig=$2 pid
  [ -f "$dir/congodb.pid" ] || return 0
  pid=$(cat "$dir/congodb.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/congodb.pid" "$dir/congodb.ready"
}

case "${1:-}" in
install) install ;;
start)
  [ $# -eq 3 ] || die "usage: $0 start DIR PORT"
  start "$2" "$3"
  ;;
stop)
  [ $# -eq 2 ] || die "usage: $0 stop DIR"
  stop "$2" TERM
  ;;
kill)
  [ $# -eq 2 ] || die "usage: $0 kill DIR"
  stop "$2" KILL
  ;;
*) die "usage: $0 install | start DIR PORT | stop DIR | kill DIR" ;;
esac
