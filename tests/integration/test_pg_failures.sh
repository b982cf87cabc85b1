#!/usr/bin/env bash
# postgres-schema failure cases on a real PostgreSQL 15, each with a clear
# message: server unreachable (also as run --json's error object), wrong /
# missing password (and passwords never reach pg_dump's argv), pg_dump
# missing or older than the server, a schema glob matching nothing
# (warning, exit 3), a schema the role cannot read
# sharing a pg_dump with one it can (dumped again on its own: named in the
# warnings and the failed_schemas mark, the other one stored), pg_dump dying
# mid-stream, alone or in a pg_dump of several schemas (that item fails,
# the ones complete before it are stored, the snapshot is partial, the
# earlier snapshot still restores), and --drop-existing refusing to cascade
# into other schemas.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

pg_test_start pg
q -d postgres -c "CREATE DATABASE app" -c "CREATE DATABASE verify" \
  -c "CREATE ROLE app LOGIN PASSWORD 'Right:pw\\1'" -c "GRANT pg_read_all_data TO app"
q -d app >/dev/null <<'EOF'
CREATE SCHEMA tenant_a;
CREATE SCHEMA tenant_b;
CREATE TABLE tenant_a.t (id int PRIMARY KEY, v text);
INSERT INTO tenant_a.t SELECT i, md5(i::text) FROM generate_series(1, 2000) i;
CREATE TABLE tenant_b.t (id int PRIMARY KEY, v text);
INSERT INTO tenant_b.t SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 60000) i;
EOF
SOCK_DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=app"
TCP="host=127.0.0.1 port=$PG_PORT dbname=app"

# a pg_dump that records its argv and password environment (the log's
# path is written into it: children get none of the engine's variables)
SPY_LOG=$T/spy.log
cat >"$T/spy_pg_dump" <<EOF
#!/bin/bash
{
  printf 'ARG %s\\n' "\$@"
  echo "PGPASSWORD=\${PGPASSWORD:-}"
  echo "PGPASSFILE=\${PGPASSFILE:-}"
  [ -z "\${PGPASSFILE:-}" ] || echo "MODE \$(stat -L -c %a "\$PGPASSFILE")"
} >>$(printf %q "$SPY_LOG")
exec pg_dump "\$@"
EOF
chmod +x "$T/spy_pg_dump"
SPY="pg_dump: $(yq "$T/spy_pg_dump")"

# ---- passwords ---------------------------------------------------------------------
export APP_PW='Right:pw\1'
pg_write_pipeline "$T/pw.yml" pw "$T/repo-pw" "$TCP user=app" 'schemas: [tenant_a]' "password: 'env:APP_PW'" "$SPY"
run_ok "$T/pw1.json" "$T/pw1.err" run "$T/pw.yml" --json
grep -q '^ARG --snapshot=' "$SPY_LOG" || { show "$SPY_LOG"; fail "the spy pg_dump did not run"; }
assert_not_contains "$SPY_LOG" "Right:pw" "password in pg_dump's argv or PGPASSWORD"
grep -q '^PGPASSFILE=/' "$SPY_LOG" || { show "$SPY_LOG"; fail "pg_dump got no PGPASSFILE"; }
assert_contains "$SPY_LOG" "MODE 600" "passfile mode"
pf=$(sed -n 's/^PGPASSFILE=\(.\+\)/\1/p' "$SPY_LOG" | head -1)
assert_eq /proc/self/fd/3 "$pf" "the passfile (a descriptor of pg_dump, no file on disk)"
: >"$SPY_LOG"
pg_write_pipeline "$T/pw2.yml" pw2 "$T/repo-pw2" "postgresql://app:Right%3Apw%5C1@127.0.0.1:$PG_PORT/app" \
  'schemas: [tenant_a]' "$SPY"
run_ok "$T/pw2.json" "$T/pw2.err" run "$T/pw2.yml" --json
assert_not_contains "$SPY_LOG" "Right" "password from the dsn in pg_dump's argv"
note "passwords from the option and from the dsn reach pg_dump through an in-memory 0600 passfile only"

export APP_PW='wrong-secret-value'
run_engine "$T/pw3.out" "$T/pw3.err" run "$T/pw.yml"
assert_rc 1 "wrong password" "$T/pw3.err"
assert_contains "$T/pw3.err" "authentication failed" "wrong password message"
assert_not_contains "$T/pw3.err" "wrong-secret-value" "the password in the error message"
pg_write_pipeline "$T/pw4.yml" pw4 "$T/repo-pw4" "$TCP user=app" 'schemas: [tenant_a]'
run_engine "$T/pw4.out" "$T/pw4.err" run "$T/pw4.yml"
assert_rc 1 "no password" "$T/pw4.err"
assert_contains "$T/pw4.err" "asks for a password and none was given" "missing password message"

# ---- a schema the backup role cannot read: it fails, the others are stored -------------
# jobs: 1 puts both schemas in one pg_dump, which fails as a whole; the
# schema its message names is dumped again alone (and fails), the other one
# with the rest
q -d app -c "CREATE ROLE limited LOGIN" -c "GRANT USAGE ON SCHEMA tenant_a, tenant_b TO limited" \
  -c "GRANT SELECT ON tenant_b.t TO limited"
pg_write_pipeline "$T/lim.yml" lim "$T/repo-lim" "host=$PG_DIR port=$PG_PORT user=limited dbname=app" \
  'schemas: [tenant_a, tenant_b]' 'jobs: 1'
run_engine "$T/lim.json" "$T/lim.err" -v run "$T/lim.yml" --json
assert_rc 3 "a schema the role cannot read" "$T/lim.json" "$T/lim.err"
assert_contains "$T/lim.err" "pg_dump of schema 'tenant_a' failed (exit status 1) after 0 bytes: pg_dump: error: query failed: ERROR:  permission denied for table t" \
  "unreadable schema warning"
assert_contains "$T/lim.err" "the one it names on its own first" "the failing schema dumped again on its own"
assert_eq 2 "$(json_get "$T/lim.json" 'j["items"]')" "items stored when one schema is unreadable (tenant_b and _globals)"
assert_eq tenant_a "$(json_get "$T/lim.json" 'j["warnings"][0]["item"]')" "the JSON warning names the failed schema"
run_ok "$T/lim-show.json" "$T/lim-show.err" show "$T/lim.yml" latest --json
assert_eq '["tenant_b"]' "$(json_get "$T/lim-show.json" 'j["sources"][0]["marks"]["schemas"]')" "schemas mark: what was stored"
assert_eq '["tenant_a"]' "$(json_get "$T/lim-show.json" 'j["sources"][0]["marks"]["failed_schemas"]')" "failed_schemas mark"
note "an unreadable schema fails with pg_dump's message; the one sharing its pg_dump is stored"

# ---- unreachable server --------------------------------------------------------------
dead=$(pg_free_port)
pg_write_pipeline "$T/dead.yml" dead "$T/repo-dead" "host=127.0.0.1 port=$dead user=postgres dbname=app" \
  'schemas: [tenant_a]'
run_engine "$T/dead.out" "$T/dead.err" run "$T/dead.yml"
assert_rc 1 "unreachable server" "$T/dead.err"
assert_contains "$T/dead.err" "unable to connect to database 'app' on host '127.0.0.1' port $dead" "unreachable message"
assert_contains "$T/dead.err" "Connection refused" "unreachable message cause"
run_engine "$T/dead.json" "$T/dead2.err" run "$T/dead.yml" --json
assert_rc 1 "unreachable server (--json)" "$T/dead2.err"
assert_eq "1 run" "$(json_get "$T/dead.json" 'str(j["error"]["exit_code"]) + " " + j["error"]["command"]')" \
  "run --json prints a JSON error object on a fatal error"
assert_contains "$T/dead.json" "unable to connect to database 'app' on host '127.0.0.1' port $dead" \
  "the JSON error object's message"

# ---- pg_dump missing or too old ---------------------------------------------------------
pg_write_pipeline "$T/nodump.yml" nodump "$T/repo-nodump" "$SOCK_DSN" 'schemas: [tenant_a]' \
  "pg_dump: $(yq "$T/no/such/pg_dump")"
run_engine "$T/nodump.out" "$T/nodump.err" run "$T/nodump.yml"
assert_rc 1 "pg_dump missing" "$T/nodump.err"
assert_contains "$T/nodump.err" "missing or not executable" "pg_dump missing message"
cat >"$T/old_pg_dump" <<'EOF'
#!/bin/bash
[ "${1:-}" = --version ] && { echo "pg_dump (PostgreSQL) 13.4"; exit 0; }
exec pg_dump "$@"
EOF
chmod +x "$T/old_pg_dump"
pg_write_pipeline "$T/old.yml" old "$T/repo-old" "$SOCK_DSN" 'schemas: [tenant_a]' "pg_dump: $(yq "$T/old_pg_dump")"
run_engine "$T/old.out" "$T/old.err" run "$T/old.yml"
assert_rc 1 "pg_dump older than the server" "$T/old.err"
assert_contains "$T/old.err" "is version 13.4, older than the server (PostgreSQL 15" "old pg_dump message"
note "unreachable server, wrong and missing password, missing and old pg_dump: clear errors"

# ---- a glob matching nothing ---------------------------------------------------------------
pg_write_pipeline "$T/p.yml" tenants "$T/repo" "$SOCK_DSN" 'schemas: ["tenant_*", "nosuch_*"]'
run_engine "$T/g.json" "$T/g.err" run "$T/p.yml" --json
assert_rc 3 "a glob matching nothing" "$T/g.json" "$T/g.err"
assert_contains "$T/g.err" "schema glob 'nosuch_*' matches no schema in database 'app'" "glob warning"
assert_eq partial "$(json_get "$T/g.json" 'j["status"]')" "status with a glob matching nothing"
assert_eq 3 "$(json_get "$T/g.json" 'j["items"]')" "items stored despite the glob matching nothing (2 tenants, _globals)"
SNAP1=$(json_get "$T/g.json" 'j["snapshot"]')

# ---- pg_dump dying mid-stream -----------------------------------------------------------------
cat >"$T/dying_pg_dump" <<'EOF'
#!/bin/bash
# tenant_b's pg_dump is cut after 200 kB: it dies of SIGPIPE mid-stream
# (alone its pattern is "tenant_b"; with tenant_a, "tenant_"("a"|"b"))
case "$*" in
  *tenant_b* | *'|"b"'*) pg_dump "$@" | head -c 200000; exit "${PIPESTATUS[0]}" ;;
  *) exec pg_dump "$@" ;;
esac
EOF
chmod +x "$T/dying_pg_dump"
sed "/^      dsn: /a\\      pg_dump: $(yq "$T/dying_pg_dump")" "$T/p.yml" | sed 's/, "nosuch_\*"//' >"$T/p_dying.yml"
for jobs in 2 1; do # tenant_b's pg_dump alone, then one pg_dump for both
  sed "/^      dsn: /a\\      jobs: $jobs" "$T/p_dying.yml" >"$T/p_dying$jobs.yml"
  run_engine "$T/k.json" "$T/k.err" run "$T/p_dying$jobs.yml" --json
  assert_rc 3 "pg_dump dying mid-stream (jobs: $jobs)" "$T/k.json" "$T/k.err"
  assert_eq partial "$(json_get "$T/k.json" 'j["status"]')" "status after pg_dump died (jobs: $jobs)"
  assert_contains "$T/k.err" "pg_dump of schema 'tenant_b' failed (exit status 141) after 200000 bytes" \
    "pg_dump failure message (jobs: $jobs)"
  assert_eq 2 "$(json_get "$T/k.json" 'j["items"]')" "items stored when tenant_b's dump failed (jobs: $jobs)"
done
run_ok "$T/k1.out" "$T/k1.err" restore "$T/p.yml" latest --only tenants/tenant_a --target dbname=verify
run_ok "$T/k2.out" "$T/k2.err" restore "$T/p.yml" "$SNAP1" --only tenants/tenant_b --target dbname=verify
assert_eq "2000 60000" "$(qa -d verify -c "SELECT (SELECT count(*) FROM tenant_a.t) || ' ' || (SELECT count(*) FROM tenant_b.t)")" \
  "rows restored from the partial and the earlier snapshot"
note "pg_dump dying mid-stream: that item failed, snapshot partial, the earlier one restores"

# ---- --drop-existing does not cascade into other schemas --------------------------------------
q -d app -c "CREATE VIEW tenant_b.peek AS SELECT count(*) FROM tenant_a.t"
run_engine "$T/d.out" "$T/d.err" restore "$T/p.yml" "$SNAP1" --only tenants/tenant_a --drop-existing --yes
assert_rc 3 "--drop-existing with a dependent view in another schema" "$T/d.out" "$T/d.err"
assert_contains "$T/d.err" "is used by objects outside it (view tenant_b.peek)" "dependent objects message"
assert_eq 2000 "$(qa -d app -c "SELECT * FROM tenant_b.peek")" "the dependent view after the refused restore"
note "PASS"
