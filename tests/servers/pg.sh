#!/usr/bin/env bash
# Throwaway PostgreSQL servers for the integration tests.
#
# As a command:
#   pg.sh start DIR PORT   initdb DIR/data and start a server listening on
#                          127.0.0.1:PORT and on a Unix socket in DIR
#                          (connect with host=DIR port=PORT user=postgres)
#   pg.sh stop DIR         stop it (immediate) and remove DIR
#   pg.sh free-port        print a TCP port that is free on 127.0.0.1
#
# Sourced by a test (lib.sh's use_postgres), it defines the same
# operations as functions (pg_server_start, pg_server_stop, pg_free_port)
# plus the helpers the test_pg_*.sh tests share: pg_test_start, q, qa,
# pg_ddl, pg_fingerprint, pg_write_pipeline, pg_bg.
#
# Needs the server binaries (Debian: apt-get install -y --no-install-recommends
# postgresql-15, which brings postgresql-contrib's extensions citext and
# hstore with it). PG_BINDIR overrides where they are looked for;
# PG_SERVER_OPTS adds server options ("-c max_locks_per_transaction=512"). Local
# (socket) connections are trusted; TCP connections need a password
# (scram-sha-256), so tests can exercise authentication. The server is tuned
# for speed, not durability (fsync off). As root, initdb and the server run
# as the `postgres` user (initdb refuses root), so every parent of DIR must
# be traversable by that user.

_pg_die() {
  echo "pg.sh: $*" >&2
  return 1
}

pg_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then
    [ -x "$PG_BINDIR/initdb" ] || _pg_die "PG_BINDIR='$PG_BINDIR' has no initdb" || return 1
    echo "$PG_BINDIR"
    return 0
  fi
  if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
    echo /usr/lib/postgresql/15/bin
    return 0
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    _pg_die "no PostgreSQL server binaries found (apt-get install -y --no-install-recommends postgresql-15, or set PG_BINDIR)"
    return 1
  fi
  echo "$d"
}

# _pg_as_postgres CMD...: run as the postgres user when we are root.
_pg_as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_server_start() { # DIR PORT
  local dir=$1 port=$2 bin
  bin=$(pg_bindir) || return 1
  [[ "$port" =~ ^[0-9]+$ ]] || { _pg_die "port '$port' is not a number"; return 1; }
  mkdir -p "$dir" || return 1
  dir=$(cd "$dir" && pwd) || return 1
  [ ! -e "$dir/data" ] || { _pg_die "'$dir/data' already exists"; return 1; }
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { _pg_die "user 'postgres' does not exist (install postgresql-15)"; return 1; }
    chown postgres: "$dir" || return 1
    # the server must reach DIR through every parent: scratch directories
    # made by mktemp (mode 0700) get the search bit for others (o+x: no
    # listing, only traversal); anything else must already allow it
    local p=$dir
    while [ "$p" != / ]; do
      p=$(dirname "$p")
      case "$p" in
        */engine-test-* | */engine-it-* | */tmp.*) chmod o+x "$p" || return 1 ;;
      esac
    done
    p=$dir
    while [ "$p" != / ]; do
      p=$(dirname "$p")
      runuser -u postgres -- test -x "$p" ||
        { _pg_die "'$p' is not traversable by user postgres (chmod o+x it)"; return 1; }
    done
  fi
  if ! _pg_as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    _pg_die "initdb failed in '$dir/data'"
    return 1
  fi
  if ! _pg_as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=2GB -c shared_buffers=128MB ${PG_SERVER_OPTS:-}" \
    start >/dev/null; then
    tail -20 "$dir/pg.log" >&2 || true
    _pg_die "the server in '$dir' did not start on port $port"
    return 1
  fi
}

pg_server_stop() { # DIR
  local dir=$1 bin
  [ -d "$dir" ] || return 0
  bin=$(pg_bindir) || return 1
  if [ -f "$dir/data/postmaster.pid" ]; then
    _pg_as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

pg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---- helpers for tests/integration/test_pg_*.sh (need lib.sh's T, fail, note) ----

PG_BG_PIDS=()
PG_SERVERS=()

# at the test's exit (lib.sh's at_exit; LIB_EXIT_RC is its status)
_pg_test_stop() {
  local rc=${LIB_EXIT_RC:-0} pid dir
  for pid in "${PG_BG_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for dir in "${PG_SERVERS[@]}"; do
    if [ "$rc" -ne 0 ] && [ -f "$dir/pg.log" ]; then
      echo "---- tail of $dir/pg.log ----" >&2
      tail -15 "$dir/pg.log" >&2 || true
    fi
    pg_server_stop "$dir" || true
  done
}

# pg_test_start [NAME]: start a server in $T/NAME (default pg); sets
# PG_DIR_<NAME> and PG_PORT_<NAME>; the first one also sets PG_DIR/PG_PORT.
# Every server is stopped when the test exits.
pg_test_start() {
  local name=${1:-pg} port
  chmod 755 "$T"
  port=$(pg_free_port) || fail "unable to find a free port"
  pg_server_start "$T/$name" "$port" || fail "unable to start PostgreSQL in $T/$name"
  if [ ${#PG_SERVERS[@]} -eq 0 ]; then
    at_exit _pg_test_stop
    PG_DIR=$T/$name
    PG_PORT=$port
  fi
  PG_SERVERS+=("$T/$name")
  printf -v "PG_DIR_$name" '%s' "$T/$name"
  printf -v "PG_PORT_$name" '%s' "$port"
}

# q ARGS...: psql on the first server (add -d DB); qa: unaligned tuples only.
# PGQ_DIR / PGQ_PORT select another server.
q() {
  psql -X -q -v ON_ERROR_STOP=1 -h "${PGQ_DIR:-$PG_DIR}" -p "${PGQ_PORT:-$PG_PORT}" -U postgres "$@"
}
qa() { q -tA "$@"; }

# pg_bg CMD...: run in the background, remember the pid (killed at exit).
pg_bg() {
  "$@" &
  PG_BG_PIDS+=($!)
}

# pg_ddl DB SCHEMA: the schema's DDL as pg_dump -s prints it, with a fixed
# \restrict key so two dumps compare byte for byte.
pg_ddl() {
  pg_dump -s --restrict-key=enginetest -h "${PGQ_DIR:-$PG_DIR}" -p "${PGQ_PORT:-$PG_PORT}" -U postgres \
    -n "$2" "$1"
}

# pg_fingerprint DB SCHEMA: one line per table and materialized view (row
# count and md5 of its rows in a stable order) and per sequence (last_value,
# is_called).
pg_fingerprint() {
  local db=$1 s=$2
  qa -d "$db" -v s="$s" <<'EOF' | qa -d "$db"
SELECT format('SELECT %L || '' '' || count(*) || '' '' || coalesce(md5(string_agg(t::text, ''|'' ORDER BY t::text)), ''-'') FROM %I.%I t;',
              c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :'s' AND c.relkind IN ('r', 'm') ORDER BY c.relname;
SELECT format('SELECT %L || '' '' || last_value || '' '' || is_called FROM %I.%I;', c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :'s' AND c.relkind = 'S' ORDER BY c.relname;
EOF
}

# pg_write_pipeline FILE NAME REPO DSN [WITH-LINE...]: a postgres-schema ->
# local pipeline (zstd 3, aes-256-gcm with env:ENGINE_PASSPHRASE); each
# WITH-LINE is a YAML line of the source's `with:` block ("schemas: [a]").
pg_write_pipeline() {
  local file=$1 name=$2 repo=$3 dsn=$4
  shift 4
  {
    echo "version: 1"
    echo "name: $name"
    echo "sources:"
    echo "  - name: tenants"
    echo "    type: postgres-schema"
    echo "    with:"
    echo "      dsn: $(yq "$dsn")"
    local l
    for l in "$@"; do
      echo "      $l"
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

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start)
      [ $# -eq 3 ] || { echo "usage: pg.sh start DIR PORT" >&2; exit 2; }
      pg_server_start "$2" "$3"
      ;;
    stop)
      [ $# -eq 2 ] || { echo "usage: pg.sh stop DIR" >&2; exit 2; }
      pg_server_stop "$2"
      ;;
    free-port) pg_free_port ;;
    *)
      echo "usage: pg.sh start DIR PORT | stop DIR | free-port" >&2
      exit 2
      ;;
  esac
fi
