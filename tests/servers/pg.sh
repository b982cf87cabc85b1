#!/usr/bin/env bash
# Throwaway PostgreSQL servers for the integration tests.
#
#   pg.sh start DIR PORT   initdb DIR/data and start a server listening on
#                          127.0.0.1:PORT and on a Unix socket in DIR
#                          (connect with host=DIR port=PORT user=postgres)
#   pg.sh stop DIR         stop it (immediate) and remove DIR
#   pg.sh free-port        print a TCP port that is free on 127.0.0.1
#
# Needs the server binaries (Debian: apt-get install -y --no-install-recommends
# postgresql-15 postgresql-contrib is part of it). PG_BINDIR overrides where
# they are. Local (socket) connections are trusted; TCP connections need a
# password (scram-sha-256), so tests can exercise authentication. The server
# is tuned for speed, not durability (fsync off). As root, initdb and the
# server run as the `postgres` user (initdb refuses root), so every parent
# of DIR must be traversable by that user.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then
    [ -x "$PG_BINDIR/initdb" ] || die "PG_BINDIR='$PG_BINDIR' has no initdb"
    echo "$PG_BINDIR"
    return
  fi
  if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
    echo /usr/lib/postgresql/15/bin
    return
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] ||
    die "no PostgreSQL server binaries found (apt-get install -y --no-install-recommends postgresql-15, or set PG_BINDIR)"
  echo "$d"
}

# as_pg CMD...: run as the postgres user when we are root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd_start() {
  local dir=$1 port=$2 bin
  bin=$(bindir)
  [[ "$port" =~ ^[0-9]+$ ]] || die "port '$port' is not a number"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -e "$dir/data" ] || die "'$dir/data' already exists"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist (install postgresql-15)"
    chown postgres: "$dir"
    # the server must be able to reach DIR through every parent
    local p=$dir
    while [ "$p" != / ]; do
      p=$(dirname "$p")
      runuser -u postgres -- test -x "$p" || die "'$p' is not traversable by user postgres (chmod 755 it)"
    done
  fi
  if ! as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    die "initdb failed in '$dir/data'"
  fi
  if ! as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=2GB -c shared_buffers=128MB" \
      start >/dev/null; then
    tail -20 "$dir/pg.log" >&2 || true
    die "the server in '$dir' did not start on port $port"
  fi
}

cmd_stop() {
  local dir=$1 bin
  bin=$(bindir)
  [ -d "$dir" ] || return 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

cmd_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case "${1:-}" in
  start) [ $# -eq 3 ] || die "usage: pg.sh start DIR PORT"; cmd_start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || die "usage: pg.sh stop DIR"; cmd_stop "$2" ;;
  free-port) cmd_free_port ;;
  *) die "usage: pg.sh start DIR PORT | stop DIR | free-port" ;;
esac
