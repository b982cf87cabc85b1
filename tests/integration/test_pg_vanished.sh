#!/usr/bin/env bash
# postgres-schema: schemas that appear or vanish between runs (real
# PostgreSQL 15). A new tenant is backed up on the next run; a dropped one is
# reported (warning and the "vanished_schemas" mark in the manifest) without
# making the snapshot partial, and the earlier snapshot still restores it.
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
pg_write_pipeline "$T/p.yml" vanish "$T/repo" "$DSN" 'schemas: ["tenant_*"]'

run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json
first=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshot"])' "$T/r1.json")

# tenant_b goes away, tenant_c appears
q -d app -c "DROP SCHEMA tenant_b CASCADE" -c "CREATE SCHEMA tenant_c" -c "CREATE TABLE tenant_c.t (id int)" >/dev/null
run_ok "$T/r2.json" "$T/r2.err" run "$T/p.yml" --json
assert_contains "$T/r2.err" "schema 'tenant_b' was in the previous snapshot but no longer exists" "vanished warning"
python3 - "$T/r2.json" <<'PY' || fail "second run: expected status complete"
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["status"] == "complete" else 1)
PY
run_ok "$T/show.json" "$T/show.err" show "$T/p.yml" latest --json
python3 - "$T/show.json" <<'PY' || fail "manifest marks: expected vanished_schemas [tenant_b] and schemas [tenant_a, tenant_c]"
import json, sys
m = json.load(open(sys.argv[1]))
marks = m["sources"][0]["marks"]
assert marks["vanished_schemas"] == ["tenant_b"], marks
assert sorted(marks["schemas"]) == ["tenant_a", "tenant_c"], marks
assert sorted(m["sources"][0]["items"] for _ in [0]) == [2], m["sources"][0]["items"]
PY
# the earlier snapshot still holds tenant_b and restores it
run_ok "$T/res.out" "$T/res.err" restore "$T/p.yml" "$first" --only tenants/tenant_b --yes
n=$(q -d app -tAc "SELECT count(*) FROM tenant_b.t")
[ "$n" = 200 ] || fail "tenant_b restored from the first snapshot has $n rows, expected 200"
note "vanished schema reported (not partial), new schema backed up, old snapshot restores the dropped tenant"
