# shellcheck shell=bash
# Helpers of the mongodb source's tests (test_mongo_*.sh), sourced after
# lib.sh:
#
#   mongo_require             pymongo (Debian python3-pymongo) for /usr/bin/python3
#   congodb_start NAME        a CongoDB server (tests/servers/congodb.sh) in
#                             $T/NAME; sets NAME_PORT and NAME_URI; stopped
#                             when the test exits (its log shown if it failed)
#   congodb_kill NAME         SIGKILL it
#   mongowire_start NAME ARGS a raw-BSON wire stand-in (tests/servers/mongowire.py);
#                             sets NAME_PORT and NAME_URI, its log of finds,
#                             getMores and writes in $T/NAME.wire.log; on the
#                             port $MONGOWIRE_PORT when set (members of a set
#                             must know each other's ports)
#   mongo_pipeline FILE NAME REPO URI [WITH-LINE]...
#                             a mongodb -> local pipeline (zstd 3, aes-256-gcm)
#   mpy ARGS                  /usr/bin/python3 (Debian's modules: pymongo, bson);
#                             run "$MPY" itself for a process to stop by its
#                             pid ($! of a backgrounded function is a subshell)
#   mongo_compare URI_A URI_B [DB...]
#                             every collection of the databases (all but admin,
#                             local, config) holds the same documents, byte for
#                             byte and in the same order, and the same indexes
#                             on both servers (pymongo, not the engine);
#                             MONGO_COMPARE_INDEXES=0 compares documents only

MPY=${MPY:-/usr/bin/python3}
MONGO_SERVERS=$REPO_ROOT/tests/servers

mpy() { "$MPY" "$@"; }

# kill_quiet PID: for at_exit (the process may be gone already)
kill_quiet() { kill "$@" 2>/dev/null || true; }

mongo_require() {
  mpy -c 'import pymongo, bson' 2>/dev/null ||
    fail "pymongo is required for $MPY (apt-get install -y python3-pymongo)"
}

congodb_start() {
  local name=$1 port
  port=$(free_port)
  mkdir -p "$T/$name"
  at_exit _congodb_stop "$name"
  bash "$MONGO_SERVERS/congodb.sh" start "$T/$name" "$port" >"$T/$name.start.log" 2>&1 || {
    cat "$T/$name.start.log" >&2
    fail "unable to start CongoDB ($name)"
  }
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_URI" '%s' "mongodb://127.0.0.1:$port/"
}
_congodb_stop() {
  if [ "${LIB_EXIT_RC:-0}" -ne 0 ] && [ -f "$T/$1/congodb.log" ]; then
    echo "---- CongoDB ($1) log, last lines ----" >&2
    tail -n 20 "$T/$1/congodb.log" >&2
  fi
  bash "$MONGO_SERVERS/congodb.sh" stop "$T/$1" >/dev/null 2>&1 || true
}
congodb_kill() { bash "$MONGO_SERVERS/congodb.sh" kill "$T/$1"; }

mongowire_start() {
  local name=$1 port pid i
  shift
  port=${MONGOWIRE_PORT:-$(free_port)}
  # "$MPY", not the function mpy: in the background a function runs in a
  # subshell, and $! would be that subshell, not the server
  "$MPY" "$MONGO_SERVERS/mongowire.py" --port "$port" --log "$T/$name.wire.log" \
    --pidfile "$T/$name.wire.pid" "$@" >"$T/$name.wire.out" 2>&1 &
  pid=$!
  at_exit _mongowire_stop "$name" "$pid"
  for i in $(seq 1 100); do
    [ -s "$T/$name.wire.pid" ] && break
    kill -0 "$pid" 2>/dev/null || { show "$T/$name.wire.out"; fail "mongowire ($name) exited"; }
    sleep 0.05
  done
  [ -s "$T/$name.wire.pid" ] || fail "mongowire ($name) did not start"
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_URI" '%s' "mongodb://127.0.0.1:$port/"
}

_mongowire_stop() {
  if [ "${LIB_EXIT_RC:-0}" -ne 0 ] && [ -s "$T/$1.wire.out" ]; then
    echo "---- mongowire ($1) output, last lines ----" >&2
    tail -n 20 "$T/$1.wire.out" >&2
  fi
  kill_quiet "$2"
}

mongo_pipeline() {
  local file=$1 name=$2 repo=$3 uri=$4 line
  shift 4
  {
    echo "version: 1"
    echo "name: $name"
    echo "sources:"
    echo "  - name: mongo"
    echo "    type: mongodb"
    echo "    with:"
    echo "      uri: $(yq "$uri")"
    for line in "$@"; do echo "      $line"; done
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

mongo_compare() {
  MONGO_COMPARE_INDEXES=${MONGO_COMPARE_INDEXES:-1} mpy - "$@" <<'EOF' || fail "the servers differ (see above)"
import os, sys
import pymongo
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

a = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
b = pymongo.MongoClient(sys.argv[2], serverSelectionTimeoutMS=5000)
raw = CodecOptions(document_class=RawBSONDocument)
dbs = sys.argv[3:] or [d for d in a.list_database_names() if d not in ("admin", "local", "config")]
bad = 0
for d in sorted(dbs):
    ca, cb = sorted(a[d].list_collection_names()), sorted(b[d].list_collection_names())
    if ca != cb:
        print("database %s: collections %s on A, %s on B" % (d, ca, cb))
        bad += 1
        continue
    for c in ca:
        x = [r.raw for r in a[d].get_collection(c, codec_options=raw).find(batch_size=2000)]
        y = [r.raw for r in b[d].get_collection(c, codec_options=raw).find(batch_size=2000)]
        if x != y:
            print("%s.%s: %d documents on A, %d on B, %s" % (d, c, len(x), len(y),
                  "same count, different bytes or order" if len(x) == len(y) else "different counts"))
            bad += 1
        if os.environ["MONGO_COMPARE_INDEXES"] == "0":
            continue
        ia, ib = a[d][c].index_information(), b[d][c].index_information()
        if ia != ib:
            print("%s.%s: indexes differ:\n  A %s\n  B %s" % (d, c, ia, ib))
            bad += 1
sys.exit(1 if bad else 0)
EOF
}
