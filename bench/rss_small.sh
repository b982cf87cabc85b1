#!/usr/bin/env bash
# Peak RSS of engine's first backup against the number of files: the sets of
# bench/gen_data.py --small-files N (N = 100000 300000 1000000 by default),
# each backed up RUNS times into a new local repository with an empty index
# cache, the input read once before (warm page cache). Prints one line per
# run ("N run R: WALL s RSS KiB") from GNU time. Memory only: the wall times
# include no comparison (bench/vs.py backup does that, with restic).
#
#   bench/rss_small.sh DATA_PREFIX [N...]
#     DATA_PREFIX  the sets are DATA_PREFIX<N> (e.g. /var/tmp/small for
#                  /var/tmp/small100000, as gen_data.py --out wrote them)
# Environment: ENGINE_BIN (default build-rel/engine), RUNS (default 3),
# WORK (default a new directory under /var/tmp, removed at the end).
set -euo pipefail
die() { echo "rss_small: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: bench/rss_small.sh DATA_PREFIX [N...]"
prefix=$1
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 300000 1000000)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
engine=$(readlink -f "${ENGINE_BIN:-$here/../build-rel/engine}")
[ -x "$engine" ] || die "no engine binary at $engine (set ENGINE_BIN)"
[ -x /usr/bin/time ] || die "GNU time is required (apt-get install -y time)"
runs=${RUNS:-3}
work=${WORK:-$(mktemp -d /var/tmp/rss_small.XXXXXX)}
trap 'rm -rf "$work"' EXIT
export ENGINE_PASSPHRASE=rss-bench ENGINE_CACHE_DIR="$work/cache"
for n in "${sizes[@]}"; do
  data="$prefix$n"
  [ -d "$data" ] || die "no data set $data (python3 bench/gen_data.py --out $data --small-files $n)"
  cat >"$work/p.yml" <<EOF
version: 1
name: rss$n
sources: [{name: files, type: files, with: {paths: ["$data"]}}]
stages: {compress: {algorithm: zstd, level: 3}, encrypt: {algorithm: aes-256-gcm, passphrase: env:ENGINE_PASSPHRASE}}
sinks: [{name: local, type: local, with: {path: "$work/repo"}}]
EOF
  find "$data" -type f -print0 | xargs -0 cat >/dev/null
  for r in $(seq 1 "$runs"); do
    rm -rf "$work/repo" "$work/cache"
    /usr/bin/time -f "$n run $r: %e s %M KiB" "$engine" -q run "$work/p.yml" --progress never >/dev/null
  done
done
