#!/usr/bin/env bash
# Secrets stay in the engine (real PostgreSQL 15, postgres-schema source):
#   - pg_dump, pg_restore and psql get a minimal environment: the repository
#     passphrase, an S3-style secret key, PGPASSWORD and any other variable
#     of the engine outside the allow-list never reach them (read from
#     /proc/<pid>/environ of the running pg_dump, and from a wrapper that
#     saves its own environment), while the database password reaches them
#     through PGPASSFILE=/proc/self/fd/3, a sealed memfd: backup and restore
#     over a password-authenticated TCP connection both work;
#   - a run SIGKILLed while pg_dump runs leaves no file holding the password
#     under $TMPDIR or /tmp (none is ever written);
#   - the engine is not dumpable (its /proc files belong to root although it
#     runs as another user) and its core size limit is 0.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

pg_test_start pg
# unique values, so a grep can only find them where the engine put them
# (the part before ':' is what a passfile holds unescaped)
DB_PW_TAG="db-pw-$RANDOM$RANDOM"
DB_PW="$DB_PW_TAG:x\\y"
export APP_PW=$DB_PW
export ENGINE_PASSPHRASE="repo-passphrase-$RANDOM$RANDOM"
export AWS_SECRET_ACCESS_KEY="aws-secret-$RANDOM$RANDOM"
export PGPASSWORD="pgpassword-$RANDOM$RANDOM"
export ENGINE_TEST_UNLISTED="unlisted-$RANDOM$RANDOM"
export PGAPPNAME=engine-secrets-test # a libpq default the plugin passes on purpose
q -d postgres -v pw="$DB_PW" >/dev/null <<'EOF'
CREATE DATABASE app;
CREATE DATABASE verify;
CREATE ROLE app SUPERUSER LOGIN PASSWORD :'pw';
EOF
q -d app >/dev/null <<'EOF'
CREATE SCHEMA tenant_a;
CREATE TABLE tenant_a.t (id int PRIMARY KEY, v text);
INSERT INTO tenant_a.t SELECT i, md5(i::text) FROM generate_series(1, 5000) i;
EOF
TCP="host=127.0.0.1 port=$PG_PORT user=app dbname=app"

# ---- 1. what the children see ---------------------------------------------------------
# Wrappers that save their own environment (what the engine gave them) and
# the passfile they were told about, then run the real program.
mkdir -p "$T/spy" "$T/bin"
for prog in pg_dump pg_restore psql; do
  cat >"$T/bin/$prog" <<EOF
#!/bin/bash
if [ "\${1:-}" != --version ]; then
  f=$T/spy/$prog.\$\$
  tr '\\0' '\\n' </proc/\$\$/environ >"\$f.env"
  if [ -n "\${PGPASSFILE:-}" ]; then
    stat -L -c '%F %a' "\$PGPASSFILE" >"\$f.passfile" 2>&1 || true
  fi
fi
exec $(command -v $prog) "\$@"
EOF
  chmod +x "$T/bin/$prog"
done
pg_write_pipeline "$T/p.yml" secrets "$T/repo" "$TCP" 'schemas: [tenant_a]' "password: 'env:APP_PW'" \
  "pg_dump: $(yq "$T/bin/pg_dump")" "pg_restore: $(yq "$T/bin/pg_restore")" "psql: $(yq "$T/bin/psql")"
run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run.json" 'j["status"]')" "backup over a password connection"
run_ok "$T/rs.out" "$T/rs.err" restore "$T/p.yml" latest --target "dbname=verify" --yes
assert_eq 5000 "$(qa -d verify -c 'SELECT count(*) FROM tenant_a.t')" "rows restored over a password connection"

envs=("$T"/spy/*.env)
[ -e "${envs[0]}" ] || fail "no wrapper recorded its environment"
for prog in pg_dump pg_restore psql; do
  ls "$T/spy/$prog".*.env >/dev/null 2>&1 || fail "the $prog wrapper never ran"
done
for f in "${envs[@]}"; do
  for secret in "$ENGINE_PASSPHRASE" "$AWS_SECRET_ACCESS_KEY" "$PGPASSWORD" "$DB_PW" "$ENGINE_TEST_UNLISTED"; do
    assert_not_contains "$f" "$secret" "a secret of the engine's environment in $(basename "$f")"
  done
  assert_not_contains "$f" "PGPASSWORD=" "PGPASSWORD in $(basename "$f")"
  grep -q '^PATH=' "$f" || { show "$f"; fail "PATH is missing from $(basename "$f")"; }
  grep -qx 'PGAPPNAME=engine-secrets-test' "$f" || { show "$f"; fail "PGAPPNAME did not reach $(basename "$f")"; }
  grep -qx 'PGPASSFILE=/proc/self/fd/3' "$f" || { show "$f"; fail "$(basename "$f") got no PGPASSFILE=/proc/self/fd/3"; }
  p=${f%.env}.passfile
  [ -f "$p" ] || fail "the wrapper could not stat its PGPASSFILE"
  assert_eq "regular file 600" "$(cat "$p")" "the passfile as libpq sees it (type and mode)"
done
note "${#envs[@]} children got a minimal environment and the password through /proc/self/fd/3"

# ---- 2. SIGKILL mid-dump, dumpability, core limit -----------------------------------------
# The engine runs as an unprivileged user when the test is root, so that
# "its /proc files belong to root" says something.
RUN_AS=()
U=$T/u
mkdir -p "$U/tmp" "$U/cache"
KILL_BIN=$ENGINE_BIN
KILL_PLUGINS=$ENGINE_PLUGIN_DIR
if [ "$(id -u)" -eq 0 ]; then
  RUN_AS=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
  if ! "${RUN_AS[@]}" test -x "$ENGINE_BIN" -a -r "$ENGINE_PLUGIN_DIR"; then
    # a build tree the user cannot reach (under /root, say): a copy
    cp "$ENGINE_BIN" "$U/engine"
    cp -r "$ENGINE_PLUGIN_DIR" "$U/plugins"
    KILL_BIN=$U/engine
    KILL_PLUGINS=$U/plugins
  fi
  chown -R postgres: "$U"
fi
# pg_dump that says it started, then waits until it is told to go on (or
# its engine is gone)
cat >"$T/bin/slow_pg_dump" <<EOF
#!/bin/bash
[ "\${1:-}" = --version ] && exec $(command -v pg_dump) "\$@"
echo \$\$ >$U/dump.pid
while [ ! -e $U/go ]; do
  kill -0 \$PPID 2>/dev/null || exit 1
  sleep 0.1
done
exec $(command -v pg_dump) "\$@"
EOF
chmod 755 "$T/bin/slow_pg_dump"
pg_write_pipeline "$U/k.yml" secretskill "$U/repo" "$TCP" 'schemas: [tenant_a]' "password: 'env:APP_PW'" \
  "pg_dump: $(yq "$T/bin/slow_pg_dump")"
[ ${#RUN_AS[@]} -eq 0 ] || chown postgres: "$U/k.yml"
touch "$U/start"
# cores allowed where the engine starts: the engine itself must set 0
ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -Hc)" || true
shell_core=$(ulimit -c)
TMPDIR=$U/tmp ENGINE_CACHE_DIR=$U/cache ENGINE_PLUGIN_PATH="$KILL_PLUGINS" \
  "${RUN_AS[@]}" "$KILL_BIN" run "$U/k.yml" >"$T/k.out" 2>"$T/k.err" </dev/null &
epid=$!
for _ in $(seq 600); do
  [ -s "$U/dump.pid" ] && break
  kill -0 "$epid" 2>/dev/null || { show "$T/k.err"; fail "the engine ended before pg_dump started"; }
  sleep 0.1
done
[ -s "$U/dump.pid" ] || fail "pg_dump did not start within 60 s"
dpid=$(cat "$U/dump.pid")

# pg_dump's environment as the kernel shows it
tr '\0' '\n' <"/proc/$dpid/environ" >"$T/spy/dump-proc.env"
for secret in "$ENGINE_PASSPHRASE" "$AWS_SECRET_ACCESS_KEY" "$PGPASSWORD" "$DB_PW" "$ENGINE_TEST_UNLISTED"; do
  assert_not_contains "$T/spy/dump-proc.env" "$secret" "a secret in /proc/<pg_dump pid>/environ"
done
grep -qx 'PGPASSFILE=/proc/self/fd/3' "$T/spy/dump-proc.env" || { show "$T/spy/dump-proc.env"; fail "pg_dump has no PGPASSFILE=/proc/self/fd/3"; }

# not dumpable: the kernel gives its /proc files to root
owner=$(stat -c %U:%G "/proc/$epid/environ")
if [ ${#RUN_AS[@]} -gt 0 ] || [ "$(id -u)" -ne 0 ]; then
  assert_eq root:root "$owner" "owner of /proc/<engine pid>/environ (a dumpable process owns its own)"
fi
core=$(awk '/^Max core file size/ {print $5, $6}' "/proc/$epid/limits")
if [ "$shell_core" = 0 ]; then
  note "core dumps are disabled where the test runs; RLIMIT_CORE '$core' is not a discriminating check here"
fi
assert_eq "0 0" "$core" "RLIMIT_CORE (soft hard) of the engine"

# while the run holds the password: no file anywhere holds it (the source
# tree, where a clone may keep its builds and their coverage files, is left
# out: the engine writes nothing there, and grepping every build file took
# minutes)
src_tree=$(cd "$TESTS_INTEGRATION_DIR/../.." && pwd)
secret_files() {
  find "${TMPDIR:-/tmp}" /tmp /var/tmp -xdev -type f -newer "$U/start" -size -1024k -not -path "$T/spy/*" \
    -not -path "$src_tree/*" \
    -print0 2>/dev/null | xargs -0 -r grep -lF -- "$DB_PW_TAG" 2>/dev/null || true
}
left=$(secret_files)
[ -z "$left" ] || fail "files holding the database password while pg_dump runs: $left"

kill -KILL "$epid"
wait "$epid" 2>/dev/null || true
for _ in $(seq 50); do
  kill -0 "$dpid" 2>/dev/null || break
  sleep 0.1
done
kill -KILL "$dpid" 2>/dev/null || true
left=$(secret_files)
[ -z "$left" ] || fail "files holding the database password after a SIGKILL: $left"
note "a SIGKILLed run leaves no password on disk; the engine is not dumpable; RLIMIT_CORE is 0"
note "PASS"
