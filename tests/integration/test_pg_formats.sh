#!/usr/bin/env bash
# postgres-schema's other formats on a real PostgreSQL 15: plain SQL (one
# pg_dump per schema, cut around each COPY block, rows hashed there) and
# the custom format compressed by pg_dump (compress_level 6: the rows are
# hashed through zlib). Each is backed up with parallel pg_dumps, restored
# into another database identical to the original, passes check
# --restore-test, and a restore that changes one row's content (same count)
# fails it. An unchanged plain backup stores only the chunks around pg_dump's
# random \restrict key (the first and the last of each schema).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

pg_test_start pg
q -d postgres -c "CREATE DATABASE app" -c "CREATE DATABASE verify" -c "CREATE DATABASE verify2"
q -d app -f "$(dirname "$0")/../servers/pg_tenant.sql" >/dev/null
for t in tenant_1 tenant_2 tenant_3; do
  q -d app -c "CALL make_tenant('$t', 10)"
done
for t in tenant_1 tenant_2 tenant_3; do pg_fingerprint app "$t" >"$T/fp.$t"; done
export ENGINE_PASSPHRASE=formats-test
DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=app"

# ---- plain ------------------------------------------------------------------------------
pg_write_pipeline "$T/plain.yml" plain "$T/repo-plain" "$DSN" 'schemas: ["tenant_*"]' 'format: plain' 'jobs: 2'
run_ok "$T/p1.json" "$T/p1.err" run "$T/plain.yml" --json
assert_eq 4 "$(json_get "$T/p1.json" 'j["items"]')" "items of the plain backup"
run_ok "$T/p2.json" "$T/p2.err" run "$T/plain.yml" --json
read2=$(json_get "$T/p2.json" 'j["bytes_read"]')
new2=$(json_get "$T/p2.json" 'j["new_bytes"]')
note "unchanged plain backup: read $read2, new $new2 bytes"
[ $((new2 * 2)) -le "$read2" ] || fail "unchanged plain backup: new_bytes=$new2 is more than half of $read2"
run_ok "$T/pr.out" "$T/pr.err" restore "$T/plain.yml" latest --only 'tenants/tenant_*' --target dbname=verify
for t in tenant_1 tenant_2 tenant_3; do
  pg_fingerprint verify "$t" >"$T/fp.v"
  assert_files_equal "$T/fp.$t" "$T/fp.v" "$t restored from its plain dump"
done
run_ok "$T/pc.out" "$T/pc.err" -v check "$T/plain.yml" --restore-test
assert_contains "$T/pc.err" "restore test of schema 'tenant_2': 5 table(s), 2050 row(s) and their content verified" \
  "restore test of a plain dump"
cat >"$T/changing_psql" <<'EOF'
#!/bin/bash
[ "${1:-}" = --version ] && exec psql "$@"
awk -F '\t' -v OFS='\t' '/^COPY tenant_2.customers /{print; hit=1; next} hit==1{$3 = $3 "!"; hit=2} {print}' | psql "$@"
EOF
chmod +x "$T/changing_psql"
sed "/^      dsn: /a\\      psql: $(yq "$T/changing_psql")" "$T/plain.yml" >"$T/plain_changing.yml"
run_engine "$T/pc2.out" "$T/pc2.err" check "$T/plain_changing.yml" --restore-test
assert_rc 1 "restore test of a plain dump with one row changed" "$T/pc2.out" "$T/pc2.err"
assert_contains "$T/pc2.err" "'customers' has the 200 rows the manifest records, but their content differs" \
  "plain restore test content mismatch"
note "plain format: parallel per-schema dumps, restore, restore test with row digests"

# ---- custom, compressed by pg_dump --------------------------------------------------------
pg_write_pipeline "$T/z.yml" zlib "$T/repo-z" "$DSN" 'schemas: ["tenant_*"]' 'compress_level: 6' 'jobs: 2'
run_ok "$T/z1.json" "$T/z1.err" run "$T/z.yml" --json
run_ok "$T/zr.out" "$T/zr.err" restore "$T/z.yml" latest --only 'tenants/tenant_*' --target dbname=verify2
for t in tenant_1 tenant_2 tenant_3; do
  pg_fingerprint verify2 "$t" >"$T/fp.v"
  assert_files_equal "$T/fp.$t" "$T/fp.v" "$t restored from its compressed archive"
done
run_ok "$T/zc.out" "$T/zc.err" -v check "$T/z.yml" --restore-test
assert_contains "$T/zc.err" "restore test of schema 'tenant_3': 5 table(s), 2050 row(s) and their content verified, definition equal" \
  "restore test of a compressed archive"
note "custom format compressed by pg_dump: split, restored, rows hashed through zlib"
note "PASS"
