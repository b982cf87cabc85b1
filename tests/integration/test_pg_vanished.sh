#!/usr/bin/env bash
# postgres-schema: schemas that appear or vanish between runs, and one
# dropped during a run (real PostgreSQL 15). A new tenant is backed up on
# the next run; a dropped one is named in a warning of that run (partial:
# the snapshot lacks what the previous one had) and in the
# "vanished_schemas" mark, and the earlier snapshot still restores it; the
# run after that is complete. A schema dropped after the run exported its
# snapshot, before pg_dump locked it, is named precisely (it is not in the
# snapshot); the other schemas are stored.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

pg_test_start pg
q -d postgres -c "CREATE DATABASE app"
q -d app >/dev/null <<'SQL'
CREATE SCHEMA tenant_a; CREATE TABLE tenant_a.t (id int PRIMARY KEY); INSERT INTO tenant_a.t SELECT generate_series(1, 100);
CREATE SCHEMA tenant_b; CREATE TABLE tenant_b.t (id int PRIMARY KEY); INSERT INTO tenant_b.t SELECT generate_series(1, 200);
SQL
export ENGINE_PASSPHRASE=vanished-test
DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=app"
pg_write_pipeline "$T/p.yml" vanish "$T/repo" "$DSN" 'schemas: ["tenant_*"]' 'globals: false'

run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json
first=$(json_get "$T/r1.json" 'j["snapshot"]')

# tenant_b goes away, tenant_c appears
q -d app -c "DROP SCHEMA tenant_b CASCADE" -c "CREATE SCHEMA tenant_c" -c "CREATE TABLE tenant_c.t (id int)" >/dev/null
run_engine "$T/r2.json" "$T/r2.err" -v run "$T/p.yml" --json
assert_rc 3 "the run after a schema was dropped" "$T/r2.json" "$T/r2.err"
assert_contains "$T/r2.err" "schema 'tenant_b' was in the previous snapshot but no longer exists" "vanished warning"
assert_contains "$T/r2.err" "schema 'tenant_c' is new since the previous snapshot" "new schema logged"
assert_eq tenant_b "$(json_get "$T/r2.json" 'j["warnings"][0]["item"]')" "the JSON warning names the vanished schema"
assert_eq 2 "$(json_get "$T/r2.json" 'j["items"]')" "items of the run after the drop"
run_ok "$T/show.json" "$T/show.err" show "$T/p.yml" latest --json
assert_eq '["tenant_b"]' "$(json_get "$T/show.json" 'j["sources"][0]["marks"]["vanished_schemas"]')" "vanished_schemas mark"
assert_eq '["tenant_a", "tenant_c"]' "$(json_get "$T/show.json" 'j["sources"][0]["marks"]["schemas"]')" "schemas mark"
assert_contains "$T/show.json" "no longer exists" "the manifest's warning"
# the earlier snapshot still holds tenant_b and restores it
run_ok "$T/res.out" "$T/res.err" restore "$T/p.yml" "$first" --only tenants/tenant_b --yes
assert_eq 200 "$(qa -d app -c "SELECT count(*) FROM tenant_b.t")" "rows of tenant_b restored from the first snapshot"
q -d app -c "DROP SCHEMA tenant_b CASCADE" >/dev/null
run_ok "$T/r3.json" "$T/r3.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/r3.json" 'j["status"]')" "the next run (nothing vanished since)"
note "vanished schema named in the warnings and the mark, new schema backed up, old snapshot restores the dropped tenant"

# ---- dropped after the snapshot was exported, before pg_dump locked it ----------------------
# (jobs: 2 gives tenant_c a pg_dump of its own, which drops it first)
cat >"$T/dropping_pg_dump" <<EOF
#!/bin/bash
case "\$*" in
  *tenant_c*) psql -X -q -h $(printf %q "$PG_DIR") -p $PG_PORT -U postgres -d app -c "DROP SCHEMA tenant_c CASCADE" ;;
esac
exec pg_dump "\$@"
EOF
chmod +x "$T/dropping_pg_dump"
sed "/^      dsn: /a\\      pg_dump: $(yq "$T/dropping_pg_dump")\n      jobs: 2" "$T/p.yml" >"$T/p_drop.yml"
run_engine "$T/r4.json" "$T/r4.err" run "$T/p_drop.yml" --json
assert_rc 3 "a schema dropped during the run" "$T/r4.json" "$T/r4.err"
assert_contains "$T/r4.err" "schema 'tenant_c' was dropped after the snapshot was taken, before pg_dump could lock it, so it is not in this snapshot" \
  "dropped schema message"
assert_eq tenant_c "$(json_get "$T/r4.json" 'j["warnings"][0]["item"]')" "the JSON warning names the dropped schema"
assert_eq 1 "$(json_get "$T/r4.json" 'j["items"]')" "items stored (tenant_a)"
run_ok "$T/show4.json" "$T/show4.err" show "$T/p.yml" latest --json
assert_eq '["tenant_a"]' "$(json_get "$T/show4.json" 'j["sources"][0]["marks"]["schemas"]')" "schemas mark after the drop"
assert_eq '["tenant_c"]' "$(json_get "$T/show4.json" 'j["sources"][0]["marks"]["failed_schemas"]')" "failed_schemas mark"
note "a schema dropped during the run is named precisely; the others are stored"
