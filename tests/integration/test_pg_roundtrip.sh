#!/usr/bin/env bash
# postgres-schema on a real PostgreSQL 15: three tenant schemas with enums,
# sequences, identity and serial columns, jsonb, bytea, a view, a
# materialized view, plpgsql and SQL functions, a trigger, GIN and partial
# indexes, foreign keys, comments, grants and extension types (citext,
# hstore), ~165k rows. Backed up, then:
#   - drop + restore: row checksums, sequences, matview and `pg_dump -s`
#     identical to before;
#   - restoring over an existing schema is refused (the summary agrees that
#     nothing was restored); --drop-existing without
#     --yes is refused; with --yes it replaces the schema in one transaction
#     while other tenants are being written (they stay untouched);
#   - --as restores under another name and warns about function bodies;
#   - --target: another database of the same server (extensions created
#     there) and another server, where the grantee role is missing
#     (--no-owner --no-acl, with a warning); then the globals item restored
#     there first: roles, membership and settings exist, the tenant restores
#     with its owners and grants (no fallback);
#   - --to-stdout gives the tenant's own pg_dump archive;
#   - check --restore-test passes, leaves no scratch database, and fails
#     clearly when a restored table lacks a row, when one row's content
#     differs (same count), and when an index is missing;
#   - an unchanged backup stores almost nothing; one changed table stores
#     about that table, not its tenant.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

pg_test_start pg

# seed_tenant SCHEMA N: N customers, 4N orders, N/2 attachments. Constraints
# and indexes come after the data (seeding is 3x faster).
seed_tenant() {
  local s=$1 n=$2
  cat <<EOF
CREATE SCHEMA $s;
COMMENT ON SCHEMA $s IS 'tenant $s';
CREATE TYPE $s.order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
CREATE SEQUENCE $s.invoice_no START 1000 INCREMENT 7;
CREATE TABLE $s.customers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email citext NOT NULL,
  name text NOT NULL,
  attrs hstore,
  created_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00');
COMMENT ON COLUMN $s.customers.email IS 'login, case-insensitive';
CREATE TABLE $s.orders (
  id serial PRIMARY KEY,
  customer_id bigint NOT NULL,
  status $s.order_status NOT NULL DEFAULT 'new',
  total numeric(12, 2) NOT NULL,
  doc jsonb NOT NULL DEFAULT '{}',
  invoice bigint DEFAULT nextval('$s.invoice_no'),
  updated_at timestamptz);
COMMENT ON TABLE $s.orders IS 'orders of tenant $s';
CREATE TABLE $s.attachments (id bigserial PRIMARY KEY, order_id int NOT NULL, content bytea NOT NULL);
CREATE TABLE $s.events (id bigserial PRIMARY KEY, note text NOT NULL);
CREATE VIEW $s.open_orders AS
  SELECT o.id, c.email, o.total FROM $s.orders o JOIN $s.customers c ON c.id = o.customer_id
  WHERE o.status IN ('new', 'paid');
CREATE FUNCTION $s.touch() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN NEW.updated_at := '2024-06-01 00:00:00+00'; RETURN NEW; END \$\$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON $s.orders FOR EACH ROW EXECUTE FUNCTION $s.touch();
CREATE FUNCTION $s.customer_total(cid bigint) RETURNS numeric LANGUAGE sql STABLE
  AS 'SELECT coalesce(sum(total), 0) FROM $s.orders WHERE customer_id = cid';
CREATE FUNCTION $s.order_count() RETURNS bigint LANGUAGE plpgsql AS \$\$
BEGIN RETURN (SELECT count(*) FROM $s.orders); END \$\$;
GRANT USAGE ON SCHEMA $s TO reporting;
GRANT SELECT ON $s.open_orders TO reporting;
INSERT INTO $s.customers (email, name, attrs)
  SELECT 'User' || i || '@$s.example', 'customer ' || md5(i::text),
         hstore(ARRAY['tier', 'n'], ARRAY[(i % 3)::text, i::text])
  FROM generate_series(1, $n) i;
INSERT INTO $s.orders (customer_id, status, total, doc)
  SELECT 1 + (i % $n), (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + i % 4]::$s.order_status,
         round((i % 1000) * 1.37, 2),
         jsonb_build_object('sku', 'SKU-' || (i % 500), 'qty', i % 7, 'note', md5(i::text))
  FROM generate_series(1, 4 * $n) i;
INSERT INTO $s.attachments (order_id, content)
  SELECT i, decode(md5(i::text) || md5((i + 1)::text), 'hex') FROM generate_series(1, $n / 2) i;
UPDATE $s.orders SET total = total + 1 WHERE id % 100 = 0;
ALTER TABLE $s.customers ADD CONSTRAINT customers_email_key UNIQUE (email);
ALTER TABLE $s.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id)
  REFERENCES $s.customers (id) ON DELETE CASCADE;
ALTER TABLE $s.attachments ADD CONSTRAINT attachments_order_fk FOREIGN KEY (order_id) REFERENCES $s.orders (id);
CREATE INDEX orders_doc_gin ON $s.orders USING gin (doc);
CREATE INDEX orders_open ON $s.orders (customer_id) WHERE status IN ('new', 'paid');
CREATE MATERIALIZED VIEW $s.revenue AS
  SELECT status, count(*) AS n, sum(total) AS total FROM $s.orders GROUP BY status;
SELECT nextval('$s.invoice_no') FROM generate_series(1, 5);
EOF
}

TENANTS="tenant_a tenant_b tenant_c"
q -d postgres -c "CREATE DATABASE app" -c "CREATE ROLE reporting NOLOGIN" \
  -c "CREATE ROLE analyst LOGIN IN ROLE reporting" -c "ALTER ROLE reporting SET work_mem = '8MB'" \
  -c "ALTER DATABASE app SET statement_timeout = '5min'" -c "COMMENT ON ROLE analyst IS 'reads reports'"
q -d app -c "CREATE EXTENSION citext" -c "CREATE EXTENSION hstore"
pids=()
for t in $TENANTS; do
  seed_tenant "$t" 10000 | q -d app >/dev/null &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "seeding a tenant failed"; done
q -d app -c "CREATE SCHEMA other" -c "CREATE TABLE other.t (x int)" # not matched by the glob
rows=$(qa -d app -c "SELECT sum(n_live_tup) FROM pg_stat_user_tables WHERE schemaname LIKE 'tenant_%'")
note "seeded $TENANTS: $rows rows"

for t in $TENANTS; do
  pg_fingerprint app "$t" >"$T/fp.$t"
  pg_ddl app "$t" >"$T/ddl.$t"
done
grep -q '^revenue 4 ' "$T/fp.tenant_a" || { show "$T/fp.tenant_a"; fail "the fingerprint misses the materialized view"; }
grep -q '^invoice_no 281028 true$' "$T/fp.tenant_a" || { show "$T/fp.tenant_a"; fail "the fingerprint misses the sequence"; }

DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=app"
pg_write_pipeline "$T/p.yml" pgtenants "$T/repo" "$DSN" 'schemas: ["tenant_*"]' 'exclude_schemas: ["tenant_test*"]'

# ---- backup -------------------------------------------------------------------
t0=$(date +%s%N)
run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
note "backup: $(json_get "$T/run1.json" 'j["bytes_read"]') bytes in $(((($(date +%s%N) - t0)) / 1000000)) ms"
assert_eq complete "$(json_get "$T/run1.json" 'j["status"]')" "status of the first backup"
assert_eq 4 "$(json_get "$T/run1.json" 'j["items"]')" "items of the first backup (one per tenant, and _globals)"
run_ok "$T/show.json" "$T/show.err" show "$T/p.yml" latest --json
marks='j["sources"][0]["marks"]'
[ -n "$(json_get "$T/show.json" "${marks}[\"snapshot_id\"]")" ] || fail "no snapshot_id mark"
assert_eq '["tenant_a", "tenant_b", "tenant_c"]' "$(json_get "$T/show.json" "${marks}[\"schemas\"]")" "schemas mark"
assert_eq 15 "$(json_get "$T/show.json" "${marks}[\"server_version\"].split('.')[0]")" "server_version mark"
assert_eq "$(pg_dump --version | sed 's/.*) \([0-9.]*\).*/\1/')" \
  "$(json_get "$T/show.json" "${marks}[\"pg_dump_version\"]")" "pg_dump_version mark"
SNAP1=$(json_get "$T/run1.json" 'j["snapshot"]')

# ---- the raw archive ------------------------------------------------------------
run_engine "$T/raw.dump" "$T/raw.err" restore "$T/p.yml" latest --only tenants/tenant_a --to-stdout
assert_rc 0 "restore --to-stdout" "$T/raw.err"
head -c 5 "$T/raw.dump" | grep -q PGDMP || fail "--to-stdout did not write a pg_dump custom archive"
pg_restore -l "$T/raw.dump" >"$T/raw.toc" || fail "pg_restore cannot read the --to-stdout archive"
assert_contains "$T/raw.toc" "TABLE DATA tenant_a orders" "archive table of contents"
assert_contains "$T/raw.toc" "Compression: 0" "archive compression (format chosen for dedup)"
assert_not_contains "$T/raw.toc" "tenant_b" "tenant_a's archive (another tenant's entries)"

# ---- drop + restore ------------------------------------------------------------
q -d app -c "DROP SCHEMA tenant_a CASCADE" 2>/dev/null
run_ok "$T/r1.out" "$T/r1.err" restore "$T/p.yml" latest --only tenants/tenant_a
pg_fingerprint app tenant_a >"$T/fp.after"
assert_files_equal "$T/fp.tenant_a" "$T/fp.after" "row checksums, sequences and matview after drop + restore"
pg_ddl app tenant_a >"$T/ddl.after"
assert_files_equal "$T/ddl.tenant_a" "$T/ddl.after" "pg_dump -s of tenant_a after drop + restore"
assert_eq t "$(qa -d app -c "SELECT tenant_a.customer_total(1) > 0 AND tenant_a.order_count() = 40000")" \
  "functions of the restored schema"
note "drop + restore: identical rows, sequences, matview and DDL"

# ---- refusals --------------------------------------------------------------------
run_engine "$T/r2.out" "$T/r2.err" restore "$T/p.yml" latest --only tenants/tenant_a
[ "$RC" -ne 0 ] || fail "restoring over an existing schema succeeded"
assert_contains "$T/r2.err" "schema 'tenant_a' already exists" "refusal message"
assert_contains "$T/r2.err" "--drop-existing" "refusal suggests --drop-existing"
assert_contains "$T/r2.err" "nothing was changed" "refusal says nothing was changed"
assert_contains "$T/r2.out" "restore FAILED: none of 1 item(s) was restored" "summary of the refused restore"
assert_not_contains "$T/r2.out" "partial restore" "summary of the refused restore (nothing was changed)"
run_engine "$T/r3.out" "$T/r3.err" restore "$T/p.yml" latest --only tenants/tenant_a --drop-existing
assert_rc 1 "--drop-existing without --yes" "$T/r3.err"
assert_contains "$T/r3.err" "--yes" "--drop-existing refusal names --yes"
pg_fingerprint app tenant_a >"$T/fp.after"
assert_files_equal "$T/fp.tenant_a" "$T/fp.after" "tenant_a after the refused restores"

# ---- --drop-existing --yes while the other tenants are written ----------------------
q -d app -c "DELETE FROM tenant_a.attachments WHERE id > 100" -c "UPDATE tenant_a.customers SET name = 'changed'" \
  -c "SELECT setval('tenant_a.invoice_no', 5000)" >/dev/null
q -d app -c "CREATE TABLE public.writer_stop (x int)"
writer() { # one committed insert into tenant_b and tenant_c every few ms, until told to stop
  q -d app -c "DO \$\$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM public.writer_stop) LOOP
      INSERT INTO tenant_b.events (note) VALUES ('w'); INSERT INTO tenant_c.events (note) VALUES ('w');
      COMMIT; PERFORM pg_sleep(0.005); END LOOP; END \$\$" >"$T/writer.out" 2>&1
}
writer &
wpid=$!
PG_BG_PIDS+=("$wpid")
for _ in $(seq 100); do
  [ "$(qa -d app -c "SELECT count(*) FROM tenant_b.events")" -gt 0 ] && break
  sleep 0.05
done
before=$(qa -d app -c "SELECT count(*) FROM tenant_b.events")
run_ok "$T/r4.out" "$T/r4.err" restore "$T/p.yml" latest --only tenants/tenant_a --drop-existing --yes
after=$(qa -d app -c "SELECT count(*) FROM tenant_b.events")
q -d app -c "INSERT INTO public.writer_stop VALUES (1)"
wait "$wpid" || { show "$T/writer.out"; fail "the writer on tenant_b/tenant_c failed during the restore"; }
[ "$after" -gt "$before" ] || fail "no write into tenant_b happened while tenant_a was restored ($before -> $after)"
pg_fingerprint app tenant_a >"$T/fp.after"
assert_files_equal "$T/fp.tenant_a" "$T/fp.after" "tenant_a after --drop-existing --yes"
written=$(qa -d app -c "SELECT count(*) FROM tenant_b.events")
for t in tenant_b tenant_c; do
  assert_eq "$written" "$(qa -d app -c "SELECT count(*) FROM $t.events")" "rows the writer put into $t"
  pg_fingerprint app "$t" | grep -v '^events' >"$T/fp.now"
  grep -v '^events' "$T/fp.$t" >"$T/fp.before"
  assert_files_equal "$T/fp.before" "$T/fp.now" "$t (being written) after restoring tenant_a"
done
note "--drop-existing --yes replaced tenant_a; tenant_b/tenant_c untouched ($((after - before)) writes into each during the restore)"

# ---- --as -----------------------------------------------------------------------
run_ok "$T/r5.out" "$T/r5.err" -v restore "$T/p.yml" latest --only tenants/tenant_a --as tenant_a_restored
assert_contains "$T/r5.err" "tenant_a_restored.order_count()" "warning about function bodies naming tenant_a"
pg_fingerprint app tenant_a_restored >"$T/fp.as"
assert_files_equal "$T/fp.tenant_a" "$T/fp.as" "rows of tenant_a_restored"
pg_ddl app tenant_a_restored | sed 's/tenant_a_restored/tenant_a/g' >"$T/ddl.as"
assert_files_equal "$T/ddl.tenant_a" "$T/ddl.as" "DDL of tenant_a_restored (names mapped back)"
pg_fingerprint app tenant_a >"$T/fp.after"
assert_files_equal "$T/fp.tenant_a" "$T/fp.after" "tenant_a after restoring it --as another name"

# ---- --target: another database of the same server, then another server ---------------
q -d postgres -c "CREATE DATABASE app2"
run_ok "$T/r6.out" "$T/r6.err" restore "$T/p.yml" latest --only tenants/tenant_b --target "dbname=app2"
pg_fingerprint app2 tenant_b >"$T/fp.t2"
grep -v '^events' "$T/fp.t2" >"$T/fp.t2x"
grep -v '^events' "$T/fp.tenant_b" >"$T/fp.bx"
assert_files_equal "$T/fp.bx" "$T/fp.t2x" "tenant_b restored into database app2"
assert_eq "citext hstore" "$(qa -d app2 -c "SELECT string_agg(extname, ' ' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'")" \
  "extensions created in app2"

pg_test_start pg2
# shellcheck disable=SC2154 # set by pg_test_start through printf -v
PG2="postgresql://postgres@127.0.0.1:$PG_PORT_pg2/postgres?host=$PG_DIR_pg2"
run_ok "$T/r7.out" "$T/r7.err" restore "$T/p.yml" "$SNAP1" --only tenants/tenant_c --target "$PG2"
assert_contains "$T/r7.err" "'reporting'" "warning naming the missing role"
assert_contains "$T/r7.err" "--no-owner --no-acl" "warning about --no-owner --no-acl"
PGQ_DIR=$PG_DIR_pg2 PGQ_PORT=$PG_PORT_pg2 pg_fingerprint postgres tenant_c >"$T/fp.s2"
assert_files_equal "$T/fp.tenant_c" "$T/fp.s2" "tenant_c restored on a second server"
note "--target: another database and another server (missing role handled)"

# ---- globals: roles, membership, settings, then the tenant with its grants ------------
q2() { PGQ_DIR=$PG_DIR_pg2 PGQ_PORT=$PG_PORT_pg2 qa "$@"; }
q2 -d postgres -c "DROP SCHEMA tenant_c CASCADE" >/dev/null
run_ok "$T/g1.out" "$T/g1.err" -v restore "$T/p.yml" "$SNAP1" --only tenants/_globals --target "$PG2"
assert_contains "$T/g1.err" "globals restored into" "globals restore message"
assert_eq "t|t|t" "$(q2 -d postgres -c "SELECT pg_has_role('analyst', 'reporting', 'MEMBER'),
  (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'analyst'), NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'reporting')")" \
  "roles and membership restored on the fresh cluster"
assert_eq "reads reports" "$(q2 -d postgres -c "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'analyst'")" \
  "role comment restored"
assert_eq "{work_mem=8MB}" "$(q2 -d postgres -c "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = 'reporting'")" \
  "role setting restored"
assert_eq "{statement_timeout=5min}" "$(q2 -d postgres -c "SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database WHERE datname = 'postgres')")" \
  "database setting restored onto the target database"
run_ok "$T/g2.out" "$T/g2.err" restore "$T/p.yml" "$SNAP1" --only tenants/tenant_c --target "$PG2"
assert_not_contains "$T/g2.err" "--no-owner" "restore after the globals (no ownership fallback)"
assert_eq "t|t" "$(q2 -d postgres -c "SELECT has_table_privilege('reporting', 'tenant_c.open_orders', 'SELECT'), has_schema_privilege('analyst', 'tenant_c', 'USAGE')")" \
  "grants of the restored tenant"
PGQ_DIR=$PG_DIR_pg2 PGQ_PORT=$PG_PORT_pg2 pg_fingerprint postgres tenant_c >"$T/fp.s2"
assert_files_equal "$T/fp.tenant_c" "$T/fp.s2" "tenant_c restored after the globals"
PGQ_DIR=$PG_DIR_pg2 PGQ_PORT=$PG_PORT_pg2 pg_ddl postgres tenant_c >"$T/ddl.s2"
assert_files_equal "$T/ddl.tenant_c" "$T/ddl.s2" "pg_dump -s of tenant_c (owners and grants) on the fresh cluster"
run_ok "$T/g3.out" "$T/g3.err" -v restore "$T/p.yml" "$SNAP1" --only tenants/_globals --target "$PG2"
assert_contains "$T/g3.err" "(0 created)" "restoring the globals again (idempotent)"
note "globals round trip into a fresh cluster: roles, membership, settings; the tenant keeps its owners and grants"

# ---- restore test -------------------------------------------------------------------
run_ok "$T/c1.out" "$T/c1.err" -v check "$T/p.yml" --restore-test
assert_contains "$T/c1.out" "4 item(s) restored into scratch space and verified" "restore test output"
assert_contains "$T/c1.err" "restore test of schema 'tenant_b': 5 table(s), 55000 row(s) and their content verified, definition equal" \
  "restore test of one tenant"
assert_eq 0 "$(qa -d postgres -c "SELECT count(*) FROM pg_database WHERE datname LIKE 'engine_restore_test%'")" \
  "scratch databases left behind"
# a pg_restore that loses one row of one table must make the test fail
cat >"$T/lossy_pg_restore" <<'EOF'
#!/bin/bash
[ "${1:-}" = --version ] && exec pg_restore "$@"
pg_restore "$@" | awk '/^COPY tenant_b.attachments /{print; skip=1; next} skip==1{skip=2; next} {print}'
exit "${PIPESTATUS[0]}"
EOF
chmod +x "$T/lossy_pg_restore"
sed "/^      dsn: /a\\      pg_restore: $(yq "$T/lossy_pg_restore")" "$T/p.yml" >"$T/p_lossy.yml"
run_engine "$T/c2.out" "$T/c2.err" check "$T/p_lossy.yml" --restore-test
assert_rc 1 "restore test with a lossy pg_restore" "$T/c2.out" "$T/c2.err"
assert_contains "$T/c2.err" "'attachments' has 4999 rows, the manifest records 5000" "restore test mismatch message"
assert_eq 0 "$(qa -d postgres -c "SELECT count(*) FROM pg_database WHERE datname LIKE 'engine_restore_test%'")" \
  "scratch databases left behind by the failed test"
# one row's content changed, the count the same
cat >"$T/changing_pg_restore" <<'EOF'
#!/bin/bash
[ "${1:-}" = --version ] && exec pg_restore "$@"
pg_restore "$@" | awk -F '\t' -v OFS='\t' '/^COPY tenant_b.attachments /{print; hit=1; next} hit==1{$2 = $2 + 1; hit=2} {print}'
exit "${PIPESTATUS[0]}"
EOF
chmod +x "$T/changing_pg_restore"
sed "/^      dsn: /a\\      pg_restore: $(yq "$T/changing_pg_restore")" "$T/p.yml" >"$T/p_changing.yml"
run_engine "$T/c3.out" "$T/c3.err" check "$T/p_changing.yml" --restore-test
assert_rc 1 "restore test with one row changed" "$T/c3.out" "$T/c3.err"
assert_contains "$T/c3.err" "'attachments' has the 5000 rows the manifest records, but their content differs" \
  "restore test content mismatch message"
# an index lost on the way
cat >"$T/indexless_pg_restore" <<'EOF'
#!/bin/bash
[ "${1:-}" = --version ] && exec pg_restore "$@"
pg_restore "$@" | sed '/^CREATE INDEX orders_open ON tenant_c.orders /d'
exit "${PIPESTATUS[0]}"
EOF
chmod +x "$T/indexless_pg_restore"
sed "/^      dsn: /a\\      pg_restore: $(yq "$T/indexless_pg_restore")" "$T/p.yml" >"$T/p_indexless.yml"
run_engine "$T/c4.out" "$T/c4.err" check "$T/p_indexless.yml" --restore-test
assert_rc 1 "restore test with an index missing" "$T/c4.out" "$T/c4.err"
assert_contains "$T/c4.err" "schema 'tenant_c': its definition differs from the backup's" "restore test definition message"
assert_contains "$T/c4.err" "as backed up but not as restored: INDEX tenant_c.orders_open" "restore test names the missing index"
assert_eq 0 "$(qa -d postgres -c "SELECT count(*) FROM pg_database WHERE datname LIKE 'engine_restore_test%'")" \
  "scratch databases left behind by the failed tests"
note "check --restore-test: passes, and fails on a missing row, a changed row, a missing index"

# ---- dedup ---------------------------------------------------------------------------
# Each tenant's archive is cut after its header (whose creation time is
# fixed, so it is the same every run), after its table of contents and
# around each table's data: an unchanged tenant stores nothing new, not even
# its line of the item tree; a changed table stores about that table.
q -d app -c "DROP SCHEMA tenant_a_restored CASCADE" 2>/dev/null
q -d app -c "TRUNCATE tenant_b.events, tenant_c.events" -c "SELECT setval('tenant_b.events_id_seq', 1, false)" \
  -c "SELECT setval('tenant_c.events_id_seq', 1, false)" >/dev/null
run_ok "$T/run2.json" "$T/run2.err" run "$T/p.yml" --json
stored1=$(json_get "$T/run1.json" 'j["stored_bytes"]')
sleep 1 # another second of pg_dump's clock (the stored header must not show it)
run_ok "$T/run3.json" "$T/run3.err" run "$T/p.yml" --json
read3=$(json_get "$T/run3.json" 'j["bytes_read"]')
new3=$(json_get "$T/run3.json" 'j["new_bytes"]')
stored3=$(json_get "$T/run3.json" 'j["stored_bytes"]')
note "unchanged backup: read $read3, new $new3, stored $stored3 bytes (the first backup stored $stored1)"
assert_eq 0 "$new3" "new bytes of an unchanged backup"
assert_eq 0 "$stored3" "bytes stored by an unchanged backup (data and item tree)"
# one row of one table of one tenant
q -d app -c "UPDATE tenant_c.attachments SET content = '\\x00' WHERE id = 5000" >/dev/null
table=$(pg_dump -h "$PG_DIR" -p "$PG_PORT" -U postgres -Fc -Z0 -a -t tenant_c.attachments app | wc -c)
tenant=$(pg_dump -h "$PG_DIR" -p "$PG_PORT" -U postgres -Fc -Z0 -n tenant_c app | wc -c)
run_ok "$T/run4.json" "$T/run4.err" run "$T/p.yml" --json
new4=$(json_get "$T/run4.json" 'j["new_bytes"]')
note "one row of tenant_c.attachments changed: new $new4 bytes (the table dumps to $table, the tenant to $tenant)"
[ "$new4" -le $((table + 4096)) ] || fail "one changed table: new_bytes=$new4 > the table's $table bytes"
[ $((new4 * 4)) -le "$tenant" ] || fail "one changed table: new_bytes=$new4 is more than a quarter of the tenant ($tenant)"
note "PASS"
