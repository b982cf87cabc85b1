#!/usr/bin/env bash
# For every kind of damage check_invariant.py makes to a copy of one
# repository (flipped, truncated, deleted and swapped packs, a damaged or
# missing index object, crafted trees: unsafe names, wrong sizes, tree blobs
# as content, unknown chunks and types), the items `restore` fails on are a
# subset of the items `check --read-data` names, check exits 1 whenever a
# restore fails, and everything restored equals the original byte for byte.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src/d1" "$src/d2"
for i in 1 2 3 4 5 6; do seeded_file "$src/d1/f$i.bin" 1 "$i"; done
for i in 1 2 3 4; do echo "small file $i" >"$src/d2/s$i.txt"; done
seeded_file "$src/d2/big.bin" 3 99
cat >"$T/p.tmpl" <<EOF2
version: 1
name: invariant
repository: {pack_size: 1MiB}
sources:
  - name: files
    type: files
    with: {paths: ['$src']}
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - name: local
    type: local
    with: {path: '@REPO@'}
EOF2
sed "s|@REPO@|$T/base|" "$T/p.tmpl" >"$T/base.yml"
run_ok "$T/r1.out" "$T/r1.err" run "$T/base.yml" --json
cp -a "$src" "$T/first"
seeded_file "$src/d1/f7.bin" 1 7
echo "changed" >>"$src/d2/s1.txt"
run_ok "$T/r2.out" "$T/r2.err" run "$T/base.yml" --json
run_ok "$T/c.out" "$T/c.err" check "$T/base.yml" --read-data
n=$(find "$T/base/data" -type f | wc -l)
[ "$n" -ge 4 ] || fail "expected several packs in the base repository, found $n"
rm -f "$T/base.yml"
/usr/bin/python3 "$TESTS_INTEGRATION_DIR/check_invariant.py" "$ENGINE_BIN" "$T/base" "$T/p.tmpl" "$src" "$T" "$T/first"
note "PASS"
