#!/usr/bin/env bash
# Benchmark: dumping tenant schemas through `engine run` (postgres-schema ->
# zstd 3 -> aes-256-gcm -> local sink) versus the plain pipeline
# `pg_dump -Fc -n 'tenant_*' | zstd > file`, on the same database, with a
# warm cache. Prints wall times and sizes side by side; asserts nothing.
#
#   bench/pg_bench.sh [SIZE_MB] [TENANTS]     defaults: 1024 MB, 4 tenants
#
# Starts a throwaway PostgreSQL 15 with tests/servers/pg.sh in a scratch
# directory ($TMPDIR), removed at the end. ENGINE_BIN / ENGINE_PLUGIN_PATH
# select the engine (default: build/engine and its plugins/).
set -euo pipefail
SIZE_MB=${1:-1024}
TENANTS=${2:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENGINE_BIN=${ENGINE_BIN:-$ROOT/build/engine}
[ -x "$ENGINE_BIN" ] || { echo "pg_bench: no engine at '$ENGINE_BIN' (set ENGINE_BIN)" >&2; exit 1; }
export ENGINE_PLUGIN_PATH=${ENGINE_PLUGIN_PATH:-$(dirname "$ENGINE_BIN")/plugins}
command -v zstd >/dev/null || { echo "pg_bench: zstd is required (apt-get install zstd)" >&2; exit 1; }
. "$ROOT/tests/servers/pg.sh"

W=$(mktemp -d "${TMPDIR:-/tmp}/engine-pgbench.XXXXXX")
chmod 755 "$W"
PORT=$(pg_free_port)
cleanup() {
  pg_server_stop "$W/pg" || true
  rm -rf "$W"
}
trap cleanup EXIT
pg_server_start "$W/pg" "$PORT"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$W/pg" -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench"

# ~330 bytes per row on disk: a mix of integers, numerics, text, jsonb
rows=$((SIZE_MB * 1024 * 1024 / 330 / TENANTS))
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
t0=$(now)
pids=()
for i in $(seq 1 "$TENANTS"); do
  "${PSQL[@]}" -d bench >/dev/null <<SQL &
CREATE SCHEMA tenant_$i;
CREATE TABLE tenant_$i.events (
  id bigint PRIMARY KEY, account int NOT NULL, amount numeric(12, 2) NOT NULL,
  kind text NOT NULL, note text NOT NULL, doc jsonb NOT NULL);
INSERT INTO tenant_$i.events
  SELECT g, g % 9973, round(((g * 7919) % 100000) / 100.0, 2), 'kind-' || (g % 17),
         md5(g::text) || ' ' || md5((g * $i)::text) || ' ' || md5((g + $i)::text),
         jsonb_build_object('sku', 'SKU-' || (g % 5000), 'qty', g % 13, 'ref', md5((g * 3)::text))
  FROM generate_series(1::bigint, $rows) g;
SQL
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"${PSQL[@]}" -d bench -c "VACUUM ANALYZE" >/dev/null
size=$("${PSQL[@]}" -tA -d bench -c "SELECT pg_size_pretty(pg_database_size('bench'))")
echo "data: $TENANTS tenants x $rows rows, database $size (generated in $(secs "$t0" "$(now)") s)"
# warm the cache so both contenders read from memory
"${PSQL[@]}" -d bench -tA -c "SELECT sum(pg_relation_size(oid)) FROM pg_class WHERE relname = 'events'" >/dev/null
for i in $(seq 1 "$TENANTS"); do "${PSQL[@]}" -d bench -tA -c "SELECT count(*) FROM tenant_$i.events" >/dev/null; done

cat >"$W/p.yml" <<YML
version: 1
name: pgbench
sources:
  - name: tenants
    type: postgres-schema
    with:
      dsn: "host=$W/pg port=$PORT user=postgres dbname=bench"
      schemas: ["tenant_*"]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: "env:PGBENCH_PASSPHRASE"}
sinks:
  - {name: local, type: local, with: {path: "$W/repo"}}
YML
export PGBENCH_PASSPHRASE=pg-bench-passphrase

DUMP=(pg_dump -h "$W/pg" -p "$PORT" -U postgres -n 'tenant_*' bench)
t=$(now); "${DUMP[@]}" -Fc | zstd -q -3 -o "$W/plain.dump.zst"; plain=$(secs "$t" "$(now)")
t=$(now); "$ENGINE_BIN" -q run "$W/p.yml" >/dev/null; eng1=$(secs "$t" "$(now)")
t=$(now); "${DUMP[@]}" -Fc -Z0 | zstd -q -3 -o "$W/z0.dump.zst"; plainz0=$(secs "$t" "$(now)")
t=$(now); "$ENGINE_BIN" -q run "$W/p.yml" >/dev/null; eng2=$(secs "$t" "$(now)")
t=$(now); "${DUMP[@]}" -Fc | zstd -q -3 -o "$W/plain2.dump.zst"; plain2=$(secs "$t" "$(now)")

repo=$(du -sb "$W/repo" | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
printf '\n%-52s %10s %14s\n' "pipeline" "wall (s)" "stored (MiB)"
printf '%-52s %10s %14s\n' "pg_dump -Fc | zstd -3 > file (run 1)" "$plain" "$(mib "$(stat -c %s "$W/plain.dump.zst")")"
printf '%-52s %10s %14s\n' "pg_dump -Fc | zstd -3 > file (run 2)" "$plain2" "-"
printf '%-52s %10s %14s\n' "pg_dump -Fc -Z0 | zstd -3 > file" "$plainz0" "$(mib "$(stat -c %s "$W/z0.dump.zst")")"
printf '%-52s %10s %14s\n' "engine run (first, everything new)" "$eng1" "-"
printf '%-52s %10s %14s\n' "engine run (second, unchanged data)" "$eng2" "$(mib "$repo")"
best=$(awk -v a="$plain" -v b="$plain2" 'BEGIN { print (a < b ? a : b) }')
echo
echo "engine first run / best pg_dump -Fc | zstd: $(awk -v e="$eng1" -v p="$best" 'BEGIN { printf "%.2f", e / p }')"
