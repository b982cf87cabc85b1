#!/usr/bin/env bash
# The run summary's "stored" line says what was done to the data: compressed
# with which algorithm or not, encrypted with which algorithm or not (it used
# to say "compressed and encrypted" whatever the pipeline configured).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src"
seq 1 20000 >"$src/numbers.txt"

# summary NAME COMPRESS ENCRYPT EXPECTED: a first run into a new repository
summary() {
  local name=$1 compress=$2 encrypt=$3 expected=$4
  write_pipeline "$T/$name.yml" "$name" "$T/repo-$name" "$src"
  sed -i "s|^  compress: .*|  compress: $compress|; s|^  encrypt: .*|  encrypt: $encrypt|" "$T/$name.yml"
  run_ok "$T/$name.out" "$T/$name.err" run "$T/$name.yml"
  local line
  line=$(grep -E '^  stored ' "$T/$name.out" || true)
  [ -n "$line" ] || { show "$T/$name.out"; fail "$name: no 'stored' line in the run summary"; }
  case "$line" in
    *"($expected)") note "ok: $name: $line" ;;
    *) fail "$name: the summary says '$line', expected it to end in '($expected)'" ;;
  esac
}
aes="{algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}"
summary both "{algorithm: zstd, level: 3}" "$aes" "compressed with zstd, encrypted with aes-256-gcm"
summary gzip-plain "{algorithm: gzip}" "{algorithm: none}" "compressed with gzip, not encrypted"
summary raw-sealed "{algorithm: none}" "$aes" "not compressed, encrypted with aes-256-gcm"
summary neither "{algorithm: none}" "{algorithm: none}" "not compressed, not encrypted"
note "PASS"
