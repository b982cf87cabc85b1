#!/usr/bin/env bash
# postgres-schema with many tenants (real PostgreSQL 15): 200 small
# generated tenants (tests/servers/pg_tenant.sql: five tables with foreign
# keys, indexes, a view, plpgsql functions, a trigger), plus 3 schemas the
# globs leave out. bench/pg_bench.sh measures 500 and 5,000; this test
# asserts what must hold at any scale:
#   - one pg_dump per worker (jobs: 2), each importing the one exported
#     snapshot, not one per tenant; the plugin's catalog queries (the
#     extensions and the roles the schemas use) run once per run, not once
#     per schema (counted in the server's statement log);
#   - every tenant is an item of its own that pg_restore reads alone;
#   - an unchanged second run stores nothing (no data, no item tree);
#   - one changed table of one tenant stores about that table;
#   - a single tenant restored from the 200 equals the original.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

N=200
pg_test_start pg
q -d postgres -c "CREATE DATABASE app" -c "CREATE DATABASE verify"
q -d app -f "$(dirname "$0")/../servers/pg_tenant.sql" >/dev/null
t0=$(date +%s)
gen() { # FIRST LAST
  local i
  for i in $(seq "$1" "$2"); do printf "CALL make_tenant('tenant_%03d', 1);\n" "$i"; done | q -d app >/dev/null
}
gen 1 $((N / 2)) &
g1=$!
gen $((N / 2 + 1)) "$N"
wait "$g1" || fail "generating tenants failed"
for s in other_a other_b other_c; do q -d app -c "CALL make_tenant('$s', 1)" >/dev/null; done
# names pg_dump's patterns must match literally, among them prefixes of
# other names and characters that mean something in a pattern or a regular
# expression; è and ê share their first UTF-8 byte
ODD=('tenant_0' 'tenant_$x' 'tenant_(a|b)' 'tenant_Up' 'tenant_X"q' 'tenant_a.b' 'tenant_*' 'tenant_è' 'tenant_é' 'tenant_êx')
for s in "${ODD[@]}"; do
  q -d app -v s="$s" >/dev/null <<'SQL'
CREATE SCHEMA :"s";
CREATE TABLE :"s".t (v text);
INSERT INTO :"s".t VALUES (:'s');
SQL
done
note "generated $N tenants in $(($(date +%s) - t0)) s"
pg_fingerprint app tenant_077 >"$T/fp.077"

export ENGINE_PASSPHRASE=scale-test
DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=app"
pg_write_pipeline "$T/p.yml" scale "$T/repo" "$DSN" 'schemas: ["tenant_*"]' 'jobs: 2'

# every statement of the first run in the server's log
q -d postgres -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
log_from=$(wc -l <"$PG_DIR/pg.log")
t0=$(date +%s%N)
run_ok "$T/r1.json" "$T/r1.err" -v run "$T/p.yml" --json
ms=$((($(date +%s%N) - t0) / 1000000))
q -d postgres -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null
tail -n +"$((log_from + 1))" "$PG_DIR/pg.log" >"$T/statements.log"
assert_eq complete "$(json_get "$T/r1.json" 'j["status"]')" "status of the first run"
M=$((N + ${#ODD[@]}))
assert_eq $((M + 1)) "$(json_get "$T/r1.json" 'j["items"]')" "items ($N tenants, ${#ODD[@]} odd names and _globals)"
assert_contains "$T/r1.err" "dumping $M schema(s) with 2 parallel pg_dump(s)" "parallel pg_dumps"
assert_contains "$T/r1.err" "$M schema(s) stored, 0 failed; 2 pg_dump run(s)" "one pg_dump per worker"
assert_eq 2 "$(grep -c "SET TRANSACTION SNAPSHOT" "$T/statements.log")" "pg_dump sessions importing the snapshot"
assert_eq 1 "$(grep -c "pg_catalog.pg_extension e WHERE e.extnamespace = ANY" "$T/statements.log")" \
  "the extensions query (once per run for all schemas)"
assert_eq 1 "$(grep -c "pg_catalog.pg_default_acl WHERE defaclnamespace = ANY" "$T/statements.log")" \
  "the roles query (once per run for all schemas)"
assert_eq 1 "$(grep -c "pg_export_snapshot" "$T/statements.log")" "exported snapshots"
stored1=$(json_get "$T/r1.json" 'j["stored_bytes"]')
read1=$(json_get "$T/r1.json" 'j["bytes_read"]')
note "first run: $N tenants, $read1 bytes of archives, stored $stored1, in $ms ms (ASan build)"

run_ok "$T/show.json" "$T/show.err" show "$T/p.yml" latest --json
qa -d app -c "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\_%' ORDER BY nspname COLLATE \"C\"" |
  python3 -c 'import json, sys; print(json.dumps([l.rstrip("\n") for l in sys.stdin]))' >"$T/want.json"
json_get "$T/show.json" 'j["sources"][0]["marks"]["schemas"]' >"$T/got.json"
python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])), sort_keys=True))' "$T/want.json" >"$T/want2.json"
assert_files_equal "$T/want2.json" "$T/got.json" "schemas stored (exactly those the glob matches)"
for s in "${ODD[@]}"; do
  run_ok "$T/odd.dump" "$T/odd.err" restore "$T/p.yml" latest --only "tenants/$s" --to-stdout
  [ "$(pg_restore -f - "$T/odd.dump" | grep -c '^CREATE TABLE ')" = 1 ] || fail "the archive of schema '$s' does not hold its one table"
done
# one pg_dump for every schema (jobs: 1): the prefixes in one pattern
sed 's/jobs: 2/jobs: 1/' "$T/p.yml" | sed "s|$T/repo|$T/repo1|" >"$T/p1.yml"
run_ok "$T/j1.json" "$T/j1.err" -v run "$T/p1.yml" --json
assert_contains "$T/j1.err" "$M schema(s) stored, 0 failed; 1 pg_dump run(s)" "one pg_dump for all schemas"

# every tenant's archive stands alone
run_ok "$T/one.dump" "$T/one.err" restore "$T/p.yml" latest --only tenants/tenant_123 --to-stdout
pg_restore -l "$T/one.dump" >"$T/one.toc" || fail "pg_restore cannot read one tenant's archive"
assert_contains "$T/one.toc" "TABLE DATA tenant_123 order_items" "one tenant's archive"
assert_not_contains "$T/one.toc" "tenant_124" "one tenant's archive (another tenant's entries)"

# ---- an unchanged run, then one changed table ---------------------------------------------
sleep 1 # another second of pg_dump's clock (the stored header must not show it)
run_ok "$T/r2.json" "$T/r2.err" run "$T/p.yml" --json
new2=$(json_get "$T/r2.json" 'j["new_bytes"]')
stored2=$(json_get "$T/r2.json" 'j["stored_bytes"]')
note "unchanged run: new $new2 bytes, stored $stored2 (first: $stored1)"
assert_eq 0 "$new2" "new bytes of an unchanged run"
assert_eq 0 "$stored2" "bytes stored by an unchanged run (data and item tree)"
q -d app -c "UPDATE tenant_050.order_items SET qty = qty + 1 WHERE order_id = 3" >/dev/null
table=$(pg_dump -h "$PG_DIR" -p "$PG_PORT" -U postgres -Fc -Z0 -a -t tenant_050.order_items app | wc -c)
run_ok "$T/r3.json" "$T/r3.err" run "$T/p.yml" --json
new3=$(json_get "$T/r3.json" 'j["new_bytes"]')
note "one row of tenant_050.order_items changed: new $new3 bytes (the table dumps to $table)"
[ "$new3" -le "$table" ] || fail "one changed table: new_bytes=$new3 > the table's $table bytes"

# ---- one tenant of many, restored -----------------------------------------------------------
run_ok "$T/res.out" "$T/res.err" restore "$T/p.yml" latest --only tenants/tenant_077 --target dbname=verify
pg_fingerprint verify tenant_077 >"$T/fp.077.restored"
assert_files_equal "$T/fp.077" "$T/fp.077.restored" "tenant_077 restored from $N"
assert_eq 1 "$(qa -d verify -c "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant_%'")" \
  "schemas in the target after restoring one tenant"
note "PASS"
