#!/usr/bin/env bash
# postgres-schema's globals item on real PostgreSQL 15 servers: roles,
# memberships and role settings stored with the schemas, in the same run.
#   - without include_role_passwords, _globals holds no password hash; the
#     whole source restored into a fresh cluster (--only tenants) applies
#     the globals first, so the tenants keep their owners and grants with
#     no --no-owner fallback; the restored login role has no password;
#   - with include_role_passwords, _globals holds the SCRAM hash, and the
#     role logs in with its password on the cluster the globals were
#     restored into;
#   - a tablespace is stored with its owner, location and comment; its
#     restore fails clearly while its directory is another cluster's, and
#     creates it once the directory is free;
#   - include_role_passwords with a backup role that can read the tenants'
#     tables but not pg_authid (neither a superuser nor a member of
#     pg_read_all_data): the schemas are stored, the globals are
#     named in a warning, the run is partial.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

pg_test_start pg
pg_test_start pg2
q -d postgres -c "CREATE DATABASE app" \
  -c "CREATE ROLE app_owner NOLOGIN" -c "CREATE ROLE reporting NOLOGIN" \
  -c "CREATE ROLE analyst LOGIN PASSWORD 'An4lyst-pw' IN ROLE reporting" \
  -c "ALTER ROLE analyst SET work_mem = '16MB'" \
  -c "CREATE ROLE backup LOGIN" >/dev/null
for t in tenant_a tenant_b; do
  q -d app >/dev/null <<EOF
CREATE SCHEMA $t AUTHORIZATION app_owner;
CREATE TABLE $t.items (id int PRIMARY KEY, v text);
INSERT INTO $t.items SELECT i, md5(i::text) FROM generate_series(1, 500) i;
ALTER TABLE $t.items OWNER TO app_owner;
GRANT USAGE ON SCHEMA $t TO reporting;
GRANT SELECT ON $t.items TO reporting;
GRANT USAGE ON SCHEMA $t TO backup;
GRANT SELECT ON $t.items TO backup;
EOF
done
export ENGINE_PASSPHRASE=globals-test
DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=app"
# shellcheck disable=SC2154 # set by pg_test_start through printf -v
PG2="host=$PG_DIR_pg2 port=$PG_PORT_pg2 user=postgres dbname=postgres"
q2() { PGQ_DIR=$PG_DIR_pg2 PGQ_PORT=$PG_PORT_pg2 qa "$@"; }

# ---- without passwords: the whole source into a fresh cluster -----------------------------
pg_write_pipeline "$T/p.yml" globals "$T/repo" "$DSN" 'schemas: ["tenant_*"]'
run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json
assert_eq 3 "$(json_get "$T/r1.json" 'j["items"]')" "items (two tenants and _globals)"
run_ok "$T/g.json" "$T/g.err" restore "$T/p.yml" latest --only tenants/_globals --to-stdout
assert_eq "false" "$(json_get "$T/g.json" 'j["passwords"]')" "passwords flag of _globals"
assert_eq "[]" "$(json_get "$T/g.json" '[r["name"] for r in j["roles"] if "password" in r]')" \
  "roles with a password field"
assert_not_contains "$T/g.json" "SCRAM-SHA-256" "password hashes in _globals without include_role_passwords"
assert_eq '["analyst", "app_owner", "backup", "postgres", "reporting"]' \
  "$(json_get "$T/g.json" 'sorted(r["name"] for r in j["roles"])')" "roles stored"

run_ok "$T/a.out" "$T/a.err" -v restore "$T/p.yml" latest --only tenants --target "$PG2"
assert_contains "$T/a.err" "globals restored into" "the globals were applied"
assert_not_contains "$T/a.err" "--no-owner" "tenants restored after the globals (no ownership fallback)"
first=$(grep -n "globals restored into" "$T/a.err" | head -1 | cut -d: -f1)
schema_line=$(grep -n "tenant_a" "$T/a.err" | head -1 | cut -d: -f1)
[ "$first" -lt "$schema_line" ] || { show "$T/a.err"; fail "the globals were not applied before the first tenant"; }
assert_eq "app_owner|app_owner|t|t" "$(q2 -d postgres -c "SELECT n.nspowner::regrole, c.relowner::regrole,
  has_table_privilege('reporting', 'tenant_b.items', 'SELECT'), pg_has_role('analyst', 'reporting', 'MEMBER')
  FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid WHERE n.nspname = 'tenant_b' AND c.relname = 'items'")" \
  "owners, grants and memberships in the fresh cluster"
assert_eq "{work_mem=16MB}" "$(q2 -d postgres -c "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = 'analyst'")" \
  "role setting in the fresh cluster"
assert_eq "t" "$(q2 -d postgres -c "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'analyst'")" \
  "restored login role without a password"
assert_eq 500 "$(q2 -d postgres -c "SELECT count(*) FROM tenant_a.items")" "rows of tenant_a in the fresh cluster"
note "without passwords: no hash stored; --only tenants applies the globals first, owners and grants kept"

# ---- with passwords -----------------------------------------------------------------------------
pg_write_pipeline "$T/pw.yml" globalspw "$T/repo-pw" "$DSN" 'schemas: ["tenant_*"]' 'include_role_passwords: true'
run_ok "$T/r2.json" "$T/r2.err" run "$T/pw.yml" --json
run_ok "$T/gpw.json" "$T/gpw.err" restore "$T/pw.yml" latest --only tenants/_globals --to-stdout
assert_eq "true" "$(json_get "$T/gpw.json" 'j["passwords"]')" "passwords flag with include_role_passwords"
assert_eq "SCRAM-SHA-256" "$(json_get "$T/gpw.json" '[r["password"] for r in j["roles"] if r["name"] == "analyst"][0].split("$")[0]')" \
  "analyst's password hash in _globals"
PGPASSWORD=An4lyst-pw psql -X -h 127.0.0.1 -p "$PG_PORT_pg2" -U analyst -d postgres -c "SELECT 1" >/dev/null 2>&1 &&
  fail "analyst logged in with a password before the passwords were restored"
run_ok "$T/b.out" "$T/b.err" restore "$T/pw.yml" latest --only tenants/_globals --target "$PG2"
assert_eq 1 "$(PGPASSWORD=An4lyst-pw psql -X -tA -h 127.0.0.1 -p "$PG_PORT_pg2" -U analyst -d postgres -c "SELECT 1")" \
  "analyst logs in with its password after the globals with passwords were restored"
note "with include_role_passwords: the hash is stored and restored"

# ---- a tablespace --------------------------------------------------------------------------
mkdir "$T/ts"
chown postgres: "$T/ts" 2>/dev/null || true
q -d postgres -c "CREATE TABLESPACE fast OWNER app_owner LOCATION '$T/ts'" -c "COMMENT ON TABLESPACE fast IS 'ssd'" >/dev/null
run_ok "$T/r4.json" "$T/r4.err" run "$T/p.yml" --json
run_ok "$T/gts.json" "$T/gts.err" restore "$T/p.yml" latest --only tenants/_globals --to-stdout
assert_eq "[[\"fast\", \"app_owner\", \"$T/ts\", \"ssd\"]]" \
  "$(json_get "$T/gts.json" '[[t["name"], t["owner"], t["location"], t["comment"]] for t in j["tablespaces"]]')" \
  "tablespace in _globals"
# the directory is the first cluster's tablespace: the second cannot use it
run_engine "$T/t1.out" "$T/t1.err" restore "$T/p.yml" latest --only tenants/_globals --target "$PG2"
assert_rc 3 "a tablespace whose directory cannot be used" "$T/t1.out" "$T/t1.err"
assert_contains "$T/t1.err" "the roles, memberships and settings were restored, but tablespace 'fast' (location '$T/ts') could not be created" \
  "tablespace failure message"
q -d postgres -c "DROP TABLESPACE fast" >/dev/null # the directory is free again
run_ok "$T/t2.out" "$T/t2.err" -v restore "$T/p.yml" latest --only tenants/_globals --target "$PG2"
assert_contains "$T/t2.err" "1 tablespace(s) (1 created)" "tablespace created"
assert_eq "app_owner|$T/ts|ssd" "$(q2 -d postgres -c "SELECT spcowner::regrole, pg_tablespace_location(oid), shobj_description(oid, 'pg_tablespace') FROM pg_tablespace WHERE spcname = 'fast'")" \
  "tablespace on the second cluster"
note "tablespaces: stored with owner, location and comment; created on restore, a failure named"

# ---- include_role_passwords, pg_authid unreadable ---------------------------------------------
pg_write_pipeline "$T/ns.yml" globalsns "$T/repo-ns" "host=$PG_DIR port=$PG_PORT user=backup dbname=app" \
  'schemas: ["tenant_*"]' 'include_role_passwords: true'
run_engine "$T/r3.json" "$T/r3.err" run "$T/ns.yml" --json
assert_rc 3 "include_role_passwords, pg_authid unreadable" "$T/r3.json" "$T/r3.err"
assert_contains "$T/r3.err" "the cluster's globals were not backed up: reading the roles and their passwords (pg_authid: include_role_passwords needs a superuser or pg_read_all_data) failed" \
  "warning about the globals"
assert_eq "_globals" "$(json_get "$T/r3.json" 'j["warnings"][0]["item"]')" "the JSON warning names _globals"
assert_eq 2 "$(json_get "$T/r3.json" 'j["items"]')" "the tenants are stored"
note "PASS"
