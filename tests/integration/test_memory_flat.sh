#!/usr/bin/env bash
# Bounded memory: the peak RSS of backing up 800 MiB is not much larger than
# that of backing up 100 MiB (below 1.5x + 50 MiB): buffers are bounded, not
# proportional to the input. Measured with /usr/bin/time -v on a build
# without sanitizers (ASan's quarantine and shadow memory make RSS grow with
# the bytes allocated): $ENGINE_BIN_PLAIN, which tests/run-all.sh builds
# into build/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ -x /usr/bin/time ] || fail "/usr/bin/time is required (Debian package 'time')"
bin=${ENGINE_BIN_PLAIN:-}
if [ -z "$bin" ]; then
  if ldd "$ENGINE_BIN" | grep -q 'libasan'; then
    fail "ENGINE_BIN=$ENGINE_BIN is built with AddressSanitizer; set ENGINE_BIN_PLAIN to a build without sanitizers"
  fi
  bin=$ENGINE_BIN
fi
[ -x "$bin" ] || fail "ENGINE_BIN_PLAIN='$bin' is not executable"
if ldd "$bin" | grep -q 'libasan'; then
  fail "ENGINE_BIN_PLAIN=$bin is built with AddressSanitizer; its RSS says nothing"
fi
plugdir=$(dirname "$bin")/plugins
[ -d "$plugdir" ] || fail "no plugins directory next to $bin"

# The shipped in-flight limit (16 MiB, limits.memory) is well below the
# small input, so both runs reach the steady state. (With a 48 MiB limit
# the 100 MiB run did not: 84 MiB peak against 149-182 MiB for 800 MiB, all
# bounded, but the comparison then measured the warm-up.) MEMORY_LIMIT
# overrides it.
MEMORY_LIMIT=${MEMORY_LIMIT:-}

mkdir -p "$T/small" "$T/large"
for i in 1 2 3 4; do random_file "$T/small/r-$i" 25; done
random_file "$T/large/one-big" 400
for i in $(seq 1 16); do random_file "$T/large/r-$i" 25; done
note "generated 100 MiB and 800 MiB of random data"

peak_kib() { # NAME SRC: back up SRC into its own repository, print the peak RSS in KiB
  write_pipeline "$T/$1.yml" "mem-$1" "$T/repo-$1" "$2"
  [ -z "$MEMORY_LIMIT" ] || printf 'limits:\n  memory: %s\n' "$MEMORY_LIMIT" >>"$T/$1.yml"
  local rc=0
  ENGINE_PLUGIN_PATH="$plugdir" /usr/bin/time -v -o "$T/$1.time" "$bin" run "$T/$1.yml" --json \
    >"$T/$1.json" 2>"$T/$1.err" </dev/null || rc=$?
  [ "$rc" -eq 0 ] || { show "$T/$1.json" "$T/$1.err" "$T/$1.time"; fail "backup of $2 exited with $rc"; }
  local kib
  kib=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$T/$1.time")
  [ -n "$kib" ] || { show "$T/$1.time"; fail "no 'Maximum resident set size' in the output of /usr/bin/time -v"; }
  echo "$kib"
}

small=$(peak_kib small "$T/small")
assert_eq $((100 * 1024 * 1024)) "$(json_get "$T/small.json" 'j["bytes_read"]')" "bytes read from the 100 MiB tree"
large=$(peak_kib large "$T/large")
assert_eq $((800 * 1024 * 1024)) "$(json_get "$T/large.json" 'j["bytes_read"]')" "bytes read from the 800 MiB tree"
limit=$((small * 3 / 2 + 50 * 1024))
note "peak RSS: 100 MiB -> $((small / 1024)) MiB, 800 MiB -> $((large / 1024)) MiB (limit $((limit / 1024)) MiB)"
[ "$large" -lt "$limit" ] ||
  fail "peak RSS grows with the input: $large KiB for 800 MiB vs $small KiB for 100 MiB (limit $limit KiB)"
note "PASS"
