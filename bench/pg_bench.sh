#!/usr/bin/env bash
# Benchmark of the postgres-schema source at SaaS scale (issue 20): many
# generated tenant schemas (tests/servers/pg_tenant.sql: five tables with
# foreign keys, indexes, a view, plpgsql functions and a trigger), dumped
# by `engine run` (postgres-schema -> zstd 3 -> aes-256-gcm -> local sink)
# and, side by side on the same warm database, by
#   - `pg_dump -Fc` of the whole database (pg_dump's own zlib),
#   - `pg_dump -Fc -Z0 -n 'tenant_*' | zstd -3 > file`,
#   - the shell loop users write: one `pg_dump -Fc -n TENANT` per tenant.
# The engine and the pg_dumps run alternately, ROUNDS times (each engine
# run into a new repository, so each is a first run), so a load that comes
# and goes on a shared machine hits both. For each: wall time and the
# server's CPU time (the postmaster's processes, reaped backends
# included); for the engine also its own CPU time and peak RSS. Then, on
# the last repository: what an unchanged second run stores, what a run with
# one changed table stores, and a single-tenant restore (wall time into a
# database, and the bytes read from the repository's packs, counted with
# strace), beside `pg_restore -n TENANT` from the whole-database dump.
# Asserts nothing.
#
#   bench/pg_bench.sh [TENANTS] [SCALE]   defaults: 500 tenants, scale 100 (~1 MB dump each)
#   bench/pg_bench.sh 5000 10             the many-small-tenants variant (~100 KB each)
#
# Environment: ROUNDS (default 2), LOOP=0 skips the shell loop, JOBS sets
# the source's jobs option (default: automatic). Starts a throwaway
# PostgreSQL 15 with tests/servers/pg.sh in a scratch directory ($TMPDIR),
# removed at the end. ENGINE_BIN / ENGINE_PLUGIN_PATH select the engine
# (default: build/engine and its plugins/; use a Release build).
set -euo pipefail
TENANTS=${1:-500}
SCALE=${2:-100}
ROUNDS=${ROUNDS:-2}
LOOP=${LOOP:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENGINE_BIN=${ENGINE_BIN:-$ROOT/build/engine}
[ -x "$ENGINE_BIN" ] || { echo "pg_bench: no engine at '$ENGINE_BIN' (set ENGINE_BIN)" >&2; exit 1; }
export ENGINE_PLUGIN_PATH=${ENGINE_PLUGIN_PATH:-$(dirname "$ENGINE_BIN")/plugins}
for tool in zstd strace python3; do
  command -v "$tool" >/dev/null || { echo "pg_bench: $tool is required (apt-get install $tool)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "pg_bench: /usr/bin/time is required (apt-get install time)" >&2; exit 1; }
. "$ROOT/tests/servers/pg.sh"

W=$(mktemp -d "${TMPDIR:-/tmp}/engine-pgbench.XXXXXX")
chmod 755 "$W"
PORT=$(pg_free_port)
cleanup() {
  pg_server_stop "$W/pg" || true
  rm -rf "$W"
}
trap cleanup EXIT
# pg_dump locks every table it dumps, all in one transaction: the shared
# lock table (max_locks_per_transaction x max_connections, 100) must hold
# a whole-database dump's locks (5 tables a tenant)
PG_SERVER_OPTS="-c max_locks_per_transaction=$((TENANTS / 10 > 64 ? TENANTS / 10 : 64))" \
  pg_server_start "$W/pg" "$PORT"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$W/pg" -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" -c "CREATE DATABASE restored" -c "CREATE DATABASE restored_ref"
"${PSQL[@]}" -d bench -f "$ROOT/tests/servers/pg_tenant.sql"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
# CPU seconds used so far by the server: the postmaster and its live
# children, and the backends it reaped (cutime/cstime)
server_cpu() {
  python3 - "$(head -1 "$W/pg/data/postmaster.pid")" <<'PY'
import os, sys
pm, hz = int(sys.argv[1]), os.sysconf("SC_CLK_TCK")
def fields(p):
    s = open(f"/proc/{p}/stat").read()
    return s[s.rindex(")") + 2:].split()
def cpu(f):
    return sum(int(x) for x in f[11:15])
total = cpu(fields(pm))
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            f = fields(p)
        except OSError:
            continue
        if int(f[1]) == pm:
            total += cpu(f)
print(total / hz)
PY
}

t0=$(now)
name() { printf 'tenant_%05d' "$1"; }
gen() { # FIRST LAST
  for i in $(seq "$1" "$2"); do echo "CALL make_tenant('$(name "$i")', $SCALE);"; done | "${PSQL[@]}" -d bench
}
half=$((TENANTS / 2))
gen 1 "$half" &
g1=$!
gen $((half + 1)) "$TENANTS" &
g2=$!
wait "$g1"
wait "$g2"
"${PSQL[@]}" -d bench -c "VACUUM ANALYZE" >/dev/null
size=$("${PSQL[@]}" -tA -d bench -c "SELECT pg_size_pretty(pg_database_size('bench'))")
echo "data: $TENANTS tenants at scale $SCALE, database $size (generated in $(secs "$t0" "$(now)") s)"
PGD=(pg_dump -h "$W/pg" -p "$PORT" -U postgres)
"${PGD[@]}" -Fc -Z0 bench >/dev/null # warm the cache (tables and catalog)
mapfile -t SCHEMAS < <("${PSQL[@]}" -tA -d bench -c "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\_%' ORDER BY 1")

pipeline() { # FILE REPO
  cat >"$1" <<YML
version: 1
name: pgbench
sources:
  - name: tenants
    type: postgres-schema
    with:
      dsn: "host=$W/pg port=$PORT user=postgres dbname=bench"
      schemas: ["tenant_*"]
${JOBS:+      jobs: $JOBS}
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: "env:PGBENCH_PASSPHRASE"}
sinks:
  - {name: local, type: local, with: {path: "$2"}}
YML
}
export PGBENCH_PASSPHRASE=pg-bench-passphrase

# measure LABEL CMD...: runs CMD; appends "LABEL wall server_cpu engine_cpu rss_kib" to
# $W/results and prints it. engine_cpu and rss come from /usr/bin/time (of CMD).
measure() {
  local label=$1 c t wall scpu u s rss
  shift
  c=$(server_cpu)
  t=$(now)
  /usr/bin/time -f "%U %S %M" -o "$W/time" "$@"
  wall=$(secs "$t" "$(now)")
  scpu=$(awk -v a="$c" -v b="$(server_cpu)" 'BEGIN { printf "%.2f", b - a }')
  read -r u s rss <"$W/time"
  local cpu
  cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
  echo "$label $wall $scpu $cpu $rss" >>"$W/results"
  printf '  %-16s wall %8s s   server CPU %8s s   client CPU %7s s   max RSS %6s MiB\n' \
    "$label" "$wall" "$scpu" "$cpu" "$((rss / 1024))"
}
# the contenders as scripts (/usr/bin/time runs programs, not functions)
pgd="pg_dump -h $W/pg -p $PORT -U postgres"
echo "$pgd -Fc bench >$W/whole.dump" >"$W/whole.sh"
echo "$pgd -Fc -Z0 -n 'tenant_*' bench | zstd -q -3 -f -o $W/z0.dump.zst" >"$W/z0.sh"
{
  echo "set -e; rm -rf $W/loop; mkdir $W/loop"
  for s in "${SCHEMAS[@]}"; do echo "$pgd -Fc -n $s bench >$W/loop/$s.dump"; done
} >"$W/loop.sh"
js() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

: >"$W/results"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r:"
  measure pg_dump-whole bash -e "$W/whole.sh"
  pipeline "$W/p$r.yml" "$W/repo$r"
  measure engine-first sh -c "'$ENGINE_BIN' -q run '$W/p$r.yml' --json >'$W/run1.json'"
  measure pg_dump-z0-zstd bash -e -o pipefail "$W/z0.sh"
  [ "$r" -lt "$ROUNDS" ] && rm -rf "$W/repo$r"
done
if [ "$LOOP" != 0 ]; then
  echo "shell loop (one pg_dump -Fc -n per tenant):"
  measure pg_dump-loop bash -e "$W/loop.sh"
fi
P=$W/p$ROUNDS.yml
REPO=$W/repo$ROUNDS
stored1=$(js "$W/run1.json" stored_bytes)
read1=$(js "$W/run1.json" bytes_read)

# ---- the last repository: unchanged, one changed table --------------------------------
sleep 1 # another second in pg_dump's header
measure engine-unchanged sh -c "'$ENGINE_BIN' -q run '$P' --json >'$W/run2.json'"
stored2=$(js "$W/run2.json" stored_bytes)
new2=$(js "$W/run2.json" new_bytes)
read2=$(js "$W/run2.json" bytes_read)
victim=$(name $((TENANTS / 3 + 1)))
"${PSQL[@]}" -d bench -c "UPDATE $victim.products SET price = price + 1 WHERE id = 3" >/dev/null
table=$("${PGD[@]}" -Fc -Z0 -a -t "$victim.products" bench | wc -c)
tenant=$("${PGD[@]}" -Fc -Z0 -n "$victim" bench | wc -c)
measure engine-one-table sh -c "'$ENGINE_BIN' -q run '$P' --json >'$W/run3.json'"
new3=$(js "$W/run3.json" new_bytes)
stored3=$(js "$W/run3.json" stored_bytes)

# ---- a single-tenant restore ---------------------------------------------------------------
one=$(name $((TENANTS / 2)))
measure engine-restore-1 "$ENGINE_BIN" -q restore "$P" latest --only "tenants/$one" --target dbname=restored
# pg_restore -n restores the schema's objects but not the schema itself
echo "psql -X -q -h $W/pg -p $PORT -U postgres -d restored_ref -c 'CREATE SCHEMA $one' &&
  pg_restore -h $W/pg -p $PORT -U postgres -d restored_ref --exit-on-error -1 -n $one $W/whole.dump" >"$W/pgr.sh"
measure pg_restore-1 bash -e "$W/pgr.sh"
item=$("$ENGINE_BIN" restore "$P" latest --only "tenants/$one" --dry-run --json 2>/dev/null |
  python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["size"])')
strace -f -qq -e trace=openat,read,pread64 -e signal=none -o "$W/strace" \
  "$ENGINE_BIN" -q restore "$P" latest --only "tenants/$one" --to-stdout >/dev/null
r_read=$(python3 - "$W/strace" "$REPO" <<'PY'
import re, sys
fds, total = {}, 0
op = re.compile(r'^(\d+)\s+openat\([^,]+, "([^"]+)".*\) = (\d+)$')
rd = re.compile(r'^(\d+)\s+(?:read|pread64)\((\d+),.*\) = (\d+)$')
for line in open(sys.argv[1]):
    m = op.match(line)
    if m:
        fds[(m.group(1), m.group(3))] = m.group(2)
        continue
    m = rd.match(line)
    if m and fds.get((m.group(1), m.group(2)), "").startswith(sys.argv[2] + "/data/"):
        total += int(m.group(3))
print(total)
PY
)
repo=$(du -sb "$REPO" | cut -f1)

# ---- summary ------------------------------------------------------------------------------------
echo
python3 - "$W/results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, wall, scpu, cpu, rss = line.split()
    rows.setdefault(label, []).append((float(wall), float(scpu), float(cpu), int(rss)))
print(f"{'run':<18} {'n':>2} {'wall s (min-max)':>18} {'server CPU s':>14} {'client CPU s':>13} {'max RSS MiB':>12}")
for label, v in rows.items():
    w = [x[0] for x in v]; s = [x[1] for x in v]; c = [x[2] for x in v]; m = max(x[3] for x in v)
    print(f"{label:<18} {len(v):>2} {min(w):>8.1f}-{max(w):<9.1f} {sum(s)/len(s):>14.1f} {sum(c)/len(c):>13.1f} {m//1024:>12}")
PY
best() { awk -v l="$1" '$1 == l { if (m == "" || $2 < m) m = $2 } END { print m }' "$W/results"; }
e=$(best engine-first)
echo
loop_ratio=""
[ "$LOOP" = 0 ] || loop_ratio="; / shell loop: $(ratio "$e" "$(best pg_dump-loop)")x"
echo "engine first run (best of $ROUNDS) / pg_dump -Fc whole database: $(ratio "$e" "$(best pg_dump-whole)")x;" \
  "/ pg_dump -Fc -Z0 | zstd -3: $(ratio "$e" "$(best pg_dump-z0-zstd)")x$loop_ratio"
echo "sizes: whole-database dump $(mib "$(stat -c %s "$W/whole.dump")") MiB, -Z0 | zstd $(mib "$(stat -c %s "$W/z0.dump.zst")") MiB;" \
  "engine first run: read $(mib "$read1") MiB of archives, stored $(mib "$stored1") MiB"
echo "unchanged run: read $(mib "$read2") MiB, new $new2 bytes, stored $stored2 bytes" \
  "($(awk -v a="$stored2" -v b="$stored1" 'BEGIN { printf "%.3f", 100 * a / b }') % of the first run)"
echo "one table changed ($victim.products: $table bytes of $tenant in its tenant's dump): new $new3 bytes, stored $stored3 bytes"
echo "restore of $one ($item bytes): see engine-restore-1 above; --to-stdout read $r_read bytes of packs" \
  "(the repository: $(mib "$repo") MiB)"
