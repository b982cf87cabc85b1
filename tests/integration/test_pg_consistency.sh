#!/usr/bin/env bash
# postgres-schema dumps every schema from ONE snapshot, also with parallel
# pg_dumps (jobs: 2: tenant_a and tenant_b are dumped by two pg_dump
# processes that import the same exported snapshot). A writer commits the
# same id into tenant_a.marks and tenant_b.marks in one transaction, over
# and over, while the backup runs; tenant_a has a big table and its pg_dump
# stalls for a second mid-stream, so the emitter waits on it while tenant_b's
# pg_dump runs and hundreds more rows are committed. Restored, both tenants
# must hold exactly the same ids. A control run of two plain pg_dumps
# without a shared snapshot shows the setup does tell the difference.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

pg_test_start pg
q -d postgres -c "CREATE DATABASE app" -c "CREATE DATABASE verify" -c "CREATE DATABASE control"
q -d app >/dev/null <<'EOF'
CREATE SCHEMA tenant_a;
CREATE SCHEMA tenant_b;
CREATE TABLE public.writer_stop (x int);
CREATE TABLE tenant_a.big (id int PRIMARY KEY, payload text NOT NULL);
INSERT INTO tenant_a.big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 150000) i;
CREATE TABLE tenant_a.marks (id bigint PRIMARY KEY);
CREATE TABLE tenant_b.marks (id bigint PRIMARY KEY);
EOF

writer() {
  q -d app -c "DO \$\$ DECLARE i bigint := 0; BEGIN
      WHILE NOT EXISTS (SELECT 1 FROM public.writer_stop) LOOP
        i := i + 1;
        INSERT INTO tenant_a.marks VALUES (i);
        INSERT INTO tenant_b.marks VALUES (i);
        COMMIT;
        PERFORM pg_sleep(0.002);
      END LOOP; END \$\$" >"$T/writer.out" 2>&1
}
live() { qa -d app -c "SELECT count(*) FROM tenant_b.marks"; }

# pg_dump that stalls for a second after the first 64 KiB of tenant_a's
# archive (the snapshot is already imported then), and one for tenant_b
# that starts a second late (as a retried pg_dump would): with parallel
# pg_dumps, only the shared snapshot keeps them at the same instant.
cat >"$T/stalling_pg_dump" <<'EOF'
#!/bin/bash
case "$*" in
  *tenant_a*) pg_dump "$@" | { head -c 65536; sleep 1; cat; }; exit "${PIPESTATUS[0]}" ;;
  *tenant_b*) sleep 1; exec pg_dump "$@" ;;
  *) exec pg_dump "$@" ;;
esac
EOF
chmod +x "$T/stalling_pg_dump"

DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=app"
pg_write_pipeline "$T/p.yml" pgconsistency "$T/repo" "$DSN" 'schemas: [tenant_a, tenant_b]' \
  "pg_dump: $(yq "$T/stalling_pg_dump")" 'jobs: 2' 'globals: false'

writer &
wpid=$!
PG_BG_PIDS+=("$wpid")
for _ in $(seq 100); do
  [ "$(live)" -gt 20 ] && break
  sleep 0.05
done
start=$(live)
run_ok "$T/run.json" "$T/run.err" -v run "$T/p.yml" --json
end=$(live)
assert_eq complete "$(json_get "$T/run.json" 'j["status"]')" "backup status"
assert_contains "$T/run.err" "dumping 2 schema(s) with 2 parallel pg_dump(s)" "parallel pg_dumps"
assert_contains "$T/run.err" "2 schema(s) stored, 0 failed; 2 pg_dump run(s)" "one pg_dump per worker"

# control: the same two dumps without a shared snapshot
pg_dump -Fc -h "$PG_DIR" -p "$PG_PORT" -U postgres -n tenant_a app | { head -c 65536; sleep 1; cat; } >"$T/a.dump"
pg_dump -Fc -h "$PG_DIR" -p "$PG_PORT" -U postgres -n tenant_b app >"$T/b.dump"
q -d app -c "INSERT INTO public.writer_stop VALUES (1)"
wait "$wpid" || { show "$T/writer.out"; fail "the writer failed"; }
note "writer: $start rows when the backup started, $end when it ended"
[ $((end - start)) -ge 100 ] || fail "only $((end - start)) rows were written during the backup; the test proves nothing"

run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" latest --only tenants --target dbname=verify
a=$(qa -d verify -c "SELECT count(*) FROM tenant_a.marks")
b=$(qa -d verify -c "SELECT count(*) FROM tenant_b.marks")
diff=$(qa -d verify -c "SELECT count(*) FROM tenant_a.marks a FULL JOIN tenant_b.marks b USING (id) WHERE a.id IS NULL OR b.id IS NULL")
note "restored: tenant_a has $a marks, tenant_b $b, $diff differ"
[ "$a" -ge "$start" ] || fail "tenant_a's dump ($a rows) predates the backup ($start rows at start)"
[ "$a" -lt "$end" ] || fail "tenant_a's dump ($a rows) does not predate the end of the backup ($end rows)"
assert_eq "$a" "$b" "rows of tenant_a.marks and tenant_b.marks in the same backup"
assert_eq 0 "$diff" "ids present in one tenant's dump but not the other's"
assert_eq 150000 "$(qa -d verify -c "SELECT count(*) FROM tenant_a.big")" "rows of tenant_a.big"

for f in a b; do
  pg_restore -h "$PG_DIR" -p "$PG_PORT" -U postgres --exit-on-error -d control "$T/$f.dump" ||
    fail "pg_restore of the control dump $f.dump failed"
done
ca=$(qa -d control -c "SELECT count(*) FROM tenant_a.marks")
cb=$(qa -d control -c "SELECT count(*) FROM tenant_b.marks")
note "control without a shared snapshot: tenant_a $ca, tenant_b $cb"
[ "$cb" -gt "$ca" ] || fail "the control dumps agree ($ca, $cb): the setup cannot show a missing shared snapshot"
note "PASS"
