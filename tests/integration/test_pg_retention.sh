#!/usr/bin/env bash
# Per-tenant retention (a source's own `retention:`, applied by engine
# forget to each of its items) on a real PostgreSQL 15. The pipeline keeps
# its last 2 snapshots; the source keeps each tenant's newest snapshot
# until 10 days after the tenant was last backed up (keep_last: 1,
# expire_after: 10d). Snapshot times are fixed with run --time:
#   01-01  a b c
#   01-02  a b       (tenant_c dropped: a departed tenant)
#   01-03  a         (tenant_b's pg_dump fails: a failing tenant)
#   01-04  a
# forget keeps 01-04 and 01-03 (the pipeline's keep_last), 01-01 (the last
# snapshot holding tenant_c) and 01-02 (the last holding tenant_b), each
# with its reason; a restore of tenant_c from 01-01 still works after
# forget --prune. Then 01-20 (a b): tenant_b is in the newest snapshot
# again, and tenant_c was last seen 19 days before it, longer than
# expire_after: 01-01 and 01-02 go, and what is left is what the pipeline
# keeps.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
use_postgres

pg_test_start pg
q -d postgres -c "CREATE DATABASE app" -c "CREATE DATABASE verify"
for t in tenant_a tenant_b tenant_c; do
  q -d app -c "CREATE SCHEMA $t" -c "CREATE TABLE $t.t (id int PRIMARY KEY)" \
    -c "INSERT INTO $t.t SELECT generate_series(1, 100)" >/dev/null
done
export ENGINE_PASSPHRASE=retention-test
DSN="host=$PG_DIR port=$PG_PORT user=postgres dbname=app"
pg_write_pipeline "$T/base.yml" tenants "$T/repo" "$DSN" 'schemas: ["tenant_*"]' 'globals: false' 'jobs: 2'
sed '/^stages:/i\    retention: { keep_last: 1, expire_after: 10d }' "$T/base.yml" >"$T/p.yml"
echo "retention: { keep_last: 2 }" >>"$T/p.yml"
run_ok "$T/v.out" "$T/v.err" validate "$T/p.yml"
# the same pipeline whose pg_dump fails for tenant_b
cat >"$T/failing_pg_dump" <<'EOF'
#!/bin/bash
case "$*" in
  *tenant_b*) echo "pg_dump: error: simulated failure" >&2; exit 1 ;;
  *) exec pg_dump "$@" ;;
esac
EOF
chmod +x "$T/failing_pg_dump"
sed "/^      dsn: /a\\      pg_dump: $(yq "$T/failing_pg_dump")" "$T/p.yml" >"$T/p_fail.yml"

snap() { # NAME PIPELINE TIME EXPECTED-STATUS
  run_engine "$T/$1.json" "$T/$1.err" run "$2" --json --time "$3"
  assert_eq "$4" "$(json_get "$T/$1.json" 'j["status"]')" "status of the run at $3"
  printf -v "S_$1" '%s' "$(json_get "$T/$1.json" 'j["snapshot"]')"
}
snap d1 "$T/p.yml" 2026-01-01T03:00:00Z complete
q -d app -c "DROP SCHEMA tenant_c CASCADE" >/dev/null
snap d2 "$T/p.yml" 2026-01-02T03:00:00Z partial # tenant_c vanished
snap d3 "$T/p_fail.yml" 2026-01-03T03:00:00Z partial
snap d4 "$T/p_fail.yml" 2026-01-04T03:00:00Z partial
assert_eq '["tenant_b"]' "$(json_get "$T/d4.json" 'sorted(set(w["item"] for w in j["warnings"]))')" \
  "the failing run names tenant_b"

# ---- forget --dry-run: what is kept and why ------------------------------------------------
run_ok "$T/f1.json" "$T/f1.err" forget "$T/p.yml" --dry-run --json
cat >"$T/decisions.py" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
ids = dict(a.split("=") for a in sys.argv[2:] if a)
name = {v: k for k, v in ids.items()}
for g in j["groups"]:
    for s in g["keep"]:
        print("keep", name[s["id"]], "; ".join(s["reasons"]))
    for s in g["remove"]:
        print("remove", name[s["id"]])
EOF
# shellcheck disable=SC2154
decisions() { python3 "$T/decisions.py" "$1" "d1=$S_d1" "d2=$S_d2" "d3=$S_d3" "d4=$S_d4" "${S_d5:+d5=$S_d5}" | sort; }
decisions "$T/f1.json" >"$T/f1.txt"
cat >"$T/f1.want" <<'EOF'
keep d1 item retention: last snapshot of tenants/tenant_c
keep d2 item retention: last snapshot of tenants/tenant_b
keep d3 last snapshot
keep d4 last snapshot
EOF
assert_files_equal "$T/f1.want" "$T/f1.txt" "forget --dry-run decisions with per-tenant retention"

# without the source's rules the pipeline's policy alone would forget d1 and d2
sed '/^    retention: /d' "$T/p.yml" >"$T/p_plain.yml"
run_ok "$T/f0.json" "$T/f0.err" forget "$T/p_plain.yml" --dry-run --json
decisions "$T/f0.json" | grep '^remove' >"$T/f0.txt"
printf 'remove d1\nremove d2\n' >"$T/f0.want"
assert_files_equal "$T/f0.want" "$T/f0.txt" "the pipeline's policy alone"

# ---- forget --prune keeps the departed tenant's last copy restorable -------------------------
run_ok "$T/f2.out" "$T/f2.err" forget "$T/p.yml" --prune
assert_contains "$T/f2.out" "removed 0 snapshot(s)" "forget with per-tenant retention"
run_ok "$T/r1.out" "$T/r1.err" restore "$T/p.yml" "$S_d1" --only tenants/tenant_c --target dbname=verify
assert_eq 100 "$(qa -d verify -c "SELECT count(*) FROM tenant_c.t")" "rows of the departed tenant restored from its last snapshot"
note "a departed tenant's and a failing tenant's last snapshots are kept beyond the pipeline's keep_last"

# ---- after expire_after, only the pipeline's policy counts --------------------------------------
snap d5 "$T/p.yml" 2026-01-20T03:00:00Z complete
run_ok "$T/f3.json" "$T/f3.err" forget "$T/p.yml" --json
decisions "$T/f3.json" >"$T/f3.txt"
cat >"$T/f3.want" <<'EOF'
keep d4 last snapshot
keep d5 last snapshot
remove d1
remove d2
remove d3
EOF
assert_files_equal "$T/f3.want" "$T/f3.txt" "forget once tenant_c has been gone longer than expire_after"
run_ok "$T/s.json" "$T/s.err" snapshots "$T/p.yml" --json
assert_eq 2 "$(json_get "$T/s.json" 'len(j) if isinstance(j, list) else len(j["snapshots"])')" "snapshots left"
note "PASS"
