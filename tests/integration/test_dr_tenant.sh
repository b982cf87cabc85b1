#!/usr/bin/env bash
# Disaster-recovery drill §2 (docs/DISASTER_RECOVERY.md, run as written
# there): one tenant's schema is corrupted. Two tenants on a real
# PostgreSQL 15; a backup; then tenant_a is damaged (rows deleted and
# overwritten) and backed up damaged the next day. The drill finds the
# snapshot before the damage by time, restores the tenant beside the
# damaged one under another name, then replaces it in place; both equal the
# tenant as it was (rows of every table, sequences, pg_dump -s). tenant_b is
# written to all the while and keeps every committed row.
#
# Needs: postgresql-15 jq (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dr_lib.sh"
use_postgres

pg_test_start pg
q -c "CREATE DATABASE kiosco"
seed() { # SCHEMA N
  cat <<SQL
CREATE SCHEMA $1;
CREATE TABLE $1.customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE $1.orders (id bigserial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES $1.customers, total numeric(10, 2) NOT NULL, note jsonb);
CREATE INDEX ON $1.orders (customer_id);
CREATE TABLE $1.events (id bigserial PRIMARY KEY, note text NOT NULL);
CREATE VIEW $1.big_orders AS SELECT * FROM $1.orders WHERE total > 500;
INSERT INTO $1.customers (name, email) SELECT 'customer ' || i, 'c' || i || '@$1.example' FROM generate_series(1, $2) i;
INSERT INTO $1.orders (customer_id, total, note)
  SELECT 1 + i % $2, (i * 37 % 100000) / 100.0, jsonb_build_object('i', i) FROM generate_series(1, 4 * $2) i;
SQL
}
{ seed tenant_a 2000; seed tenant_b 1500; } | q -d kiosco
DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=kiosco"
pg_write_pipeline "$T/p.yml" tenants "$T/repo" "$DSN" 'schemas: ["tenant_*"]'

# tenant_b is written to during everything that follows
writer() {
  local n=0
  while [ ! -e "$T/stop-writer" ]; do
    qa -d kiosco -c "INSERT INTO tenant_b.events (note) VALUES ('write $n')" >/dev/null 2>&1 && n=$((n + 1))
    echo "$n" >"$T/writer.count.tmp" && mv "$T/writer.count.tmp" "$T/writer.count"
  done
}
writer &
PG_BG_PIDS+=($!)
WRITER=$!

run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json --time 2026-03-01T03:00:00Z
S1=$(json_get "$T/r1.json" 'j["snapshot"]')
pg_fingerprint kiosco tenant_a >"$T/a.expected"
pg_ddl kiosco tenant_a >"$T/a.ddl"
# the damage, on the 1st at noon, and the next night's backup of it
q -d kiosco -c "DELETE FROM tenant_a.orders WHERE id % 3 = 0; UPDATE tenant_a.customers SET name = 'oops'"
run_ok "$T/r2.json" "$T/r2.err" run "$T/p.yml" --json --time 2026-03-02T03:00:00Z
pg_fingerprint kiosco tenant_a >"$T/a.damaged"
! cmp -s "$T/a.expected" "$T/a.damaged" || fail "the damage did not change tenant_a"

P=$T/p.yml
BEFORE=2026-03-01T12:00:00Z
drill tenant-find
assert_eq "$S1" "$SNAP" "the drill picks the last snapshot before the damage"

drill tenant-beside
pg_fingerprint kiosco tenant_a_restored >"$T/beside"
assert_files_equal "$T/a.expected" "$T/beside" "tenant_a restored beside the damaged one (rows, sequences)"
pg_ddl kiosco tenant_a_restored | sed 's/tenant_a_restored/tenant_a/g' >"$T/beside.ddl"
assert_files_equal "$T/a.ddl" "$T/beside.ddl" "tenant_a restored beside it (definitions)"
pg_fingerprint kiosco tenant_a >"$T/a.now"
assert_files_equal "$T/a.damaged" "$T/a.now" "restoring beside leaves the damaged schema alone"

drill tenant-replace
pg_fingerprint kiosco tenant_a >"$T/a.replaced"
assert_files_equal "$T/a.expected" "$T/a.replaced" "tenant_a replaced in place (rows, sequences)"
pg_ddl kiosco tenant_a >"$T/a.replaced.ddl"
assert_files_equal "$T/a.ddl" "$T/a.replaced.ddl" "tenant_a replaced in place (definitions)"

touch "$T/stop-writer"
wait "$WRITER" 2>/dev/null || true
written=$(cat "$T/writer.count")
[ "$written" -gt 10 ] || fail "the writer committed only $written rows: tenant_b was not written to during the drill"
assert_eq "$written" "$(qa -d kiosco -c 'SELECT count(*) FROM tenant_b.events')" "tenant_b keeps every row written during the drill"
assert_eq 1500 "$(qa -d kiosco -c 'SELECT count(*) FROM tenant_b.customers')" "tenant_b's other tables"
note "PASS ($written rows written to tenant_b meanwhile)"
