#!/usr/bin/env bash
# Proves docs/FORMAT.md is enough to read a repository: backs up a small tree
# with the engine (zstd and gzip, aes-256-gcm) and reads everything back with
# tests/tools/engine_reader.py, a reader written from the document alone.
#
# Self-contained (it does not source lib.sh) but follows its conventions.
# Environment:
#   ENGINE_BIN            engine binary (default: /tmp/fmt-build/engine, else
#                         build-asan/engine or build/engine of this work tree)
#   ENGINE_PLUGIN_PATH    plugin directories, ':'-separated (default: $ENGINE_PLUGIN_DIR,
#                         else plugins/ beside ENGINE_BIN)
#   ENGINE_READER_PYTHON  Python 3 with the Debian modules cryptography and zstandard
#                         (default /usr/bin/python3)
#   KEEP_TMP              1: keep the scratch directory; fail: keep it when the test fails
set -euo pipefail

NAME=$(basename "${0%.sh}")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
READER="$ROOT/tests/tools/engine_reader.py"
# Names are bytes: compare and grep them byte-wise whatever the caller's locale.
export LC_ALL=C

fail() {
  printf 'FAIL: %s: %b\n' "$NAME" "$*" >&2
  exit 1
}

if [ -z "${ENGINE_BIN:-}" ]; then
  for cand in /tmp/fmt-build/engine "$ROOT/build-asan/engine" "$ROOT/build/engine"; do
    if [ -x "$cand" ]; then
      ENGINE_BIN=$cand
      break
    fi
  done
fi
[ -n "${ENGINE_BIN:-}" ] || fail "no engine binary: set ENGINE_BIN"
[ -x "$ENGINE_BIN" ] || fail "ENGINE_BIN='$ENGINE_BIN' is not an executable file"
ENGINE_PLUGIN_PATH=${ENGINE_PLUGIN_PATH:-${ENGINE_PLUGIN_DIR:-$(dirname "$ENGINE_BIN")/plugins}}
export ENGINE_PLUGIN_PATH
IFS=: read -r -a plugin_dirs <<< "$ENGINE_PLUGIN_PATH"
for d in "${plugin_dirs[@]}"; do
  [ -d "$d" ] || fail "plugin directory '$d' (from ENGINE_PLUGIN_PATH) does not exist"
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
PYTHON=${ENGINE_READER_PYTHON:-/usr/bin/python3}
[ -f "$READER" ] || fail "reader '$READER' not found"
"$PYTHON" -c 'import cryptography.hazmat.primitives.ciphers.aead, zstandard' 2>/dev/null ||
  fail "$PYTHON lacks the cryptography or zstandard module (apt-get install -y python3-cryptography python3-zstandard)"

# The physical path: the files source stores names below the resolved parent.
TMP=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/engine-reader.XXXXXX")" && pwd -P)
cleanup() {
  local rc=$?
  if [ "${KEEP_TMP:-0}" = 1 ] || { [ "${KEEP_TMP:-0}" = fail ] && [ "$rc" -ne 0 ]; }; then
    echo "[$NAME] scratch directory kept: $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  return "$rc"
}
trap cleanup EXIT

export ENGINE_TEST_PASSPHRASE="reader-test passphrase (not a secret)"
SRC="$TMP/src"
mkdir -p "$SRC/sub dir"
printf 'hello, world\n' > "$SRC/hello.txt"
head -c $((5 * 1024 * 1024)) /dev/urandom > "$SRC/random.bin"
printf 'a name with a space\n' > "$SRC/sub dir/with space.txt"
printf 'latin-1 name\n' > "$SRC/caf"$'\xe9'".txt"
: > "$SRC/empty"
seq 1 20000 > "$SRC/sub dir/numbers.txt"
ln -s hello.txt "$SRC/link"
ln "$SRC/hello.txt" "$SRC/hardlink.txt"
# names and metadata every JSON escape touches (the item tree stores them)
printf 'q\n' > "$SRC/quote\"back\\slash"
printf 'c\n' > "$SRC/ctl"$'\x01\x1f\t'"chars"
printf 'n\n' > "$SRC/new"$'\n'"line"
printf 'u\n' > "$SRC/unicode-é-日本"
setfattr -n user.note -v $'value "with" \\ and \x01' "$SRC/empty"

# Item names are absolute paths without the leading '/'.
PREFIX=${SRC#/}
# Regular files, relative to $SRC (hello.txt and hardlink.txt are one inode:
# whichever the walk meets second is stored as a hardlink item).
FILES=("hello.txt" "hardlink.txt" "random.bin" "sub dir/with space.txt" "caf"$'\xe9'".txt" "empty"
       "sub dir/numbers.txt")

# run_engine WHAT ARGS...: the engine must succeed without a sanitizer report.
run_engine() {
  local what=$1
  shift
  "$ENGINE_BIN" "$@" > "$TMP/run.out" 2>&1 < /dev/null || fail "$what: 'engine $*' failed:\n$(cat "$TMP/run.out")"
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$TMP/run.out"; then
    fail "$what: sanitizer report from 'engine $*':\n$(cat "$TMP/run.out")"
  fi
}

reader() { "$PYTHON" "$READER" "$1" --passphrase-env ENGINE_TEST_PASSPHRASE "${@:2}"; }

yq() { # YAML single-quoted scalar
  local s=${1//\'/\'\'}
  printf "'%s'" "$s"
}

write_pipeline() { # file repo algorithm [format]
  cat > "$1" <<EOF
version: 1
name: reader-$3
sources:
  - type: files
    with:
      paths: [$(yq "$SRC")]
sinks:
  - type: local
    with:
      path: $(yq "$2")
stages:
  compress: { algorithm: $3 }
  encrypt: { algorithm: aes-256-gcm, passphrase: "env:ENGINE_TEST_PASSPHRASE" }
repository: { format: ${4:-1} }
EOF
}

check_repo() { # repo algorithm expected-snapshots
  local repo=$1 algo=$2 want=$3 out
  out=$(reader "$repo" list) || fail "$algo: reader list failed"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq "$want" ] || fail "$algo: expected $want snapshot(s), reader lists:\n$out"
  printf '%s\n' "$out" | awk -F'\t' '$3 != "complete" { exit 1 }' || fail "$algo: a snapshot is not complete:\n$out"

  reader "$repo" ls latest > "$TMP/ls.out" || fail "$algo: reader ls failed"
  for f in "${FILES[@]}" "sub dir" "link"; do
    grep -qF -- "$PREFIX/$f" "$TMP/ls.out" || fail "$algo: item '$PREFIX/$f' missing from the listing"
  done
  grep -qP "^file\t$((5 * 1024 * 1024))\t.*/random\.bin$" "$TMP/ls.out" ||
    fail "$algo: random.bin is not listed as a 5 MiB file"
  grep -qP "^symlink\t0\t.*/link$" "$TMP/ls.out" || fail "$algo: the symlink is not listed as one"
  grep -qP "^hardlink\t0\t" "$TMP/ls.out" || fail "$algo: no hardlink item (hello.txt and hardlink.txt share an inode)"

  for f in "${FILES[@]}"; do
    reader "$repo" cat latest files "$PREFIX/$f" > "$TMP/cat.out" || fail "$algo: reader cat '$f' failed"
    cmp -s "$TMP/cat.out" "$SRC/$f" || fail "$algo: content of '$f' read by the reader differs from the original"
  done

  # the tree's lines as writers emit them (docs/FORMAT.md section 10): the
  # files source's metadata text goes in as it is (plugin ABI 1.9)
  reader "$repo" canonical latest > "$TMP/canon.out" 2>&1 ||
    fail "$algo: an item tree line is not compact JSON with sorted keys:\n$(cat "$TMP/canon.out")"
  reader "$repo" verify > "$TMP/verify.out" || fail "$algo: reader verify failed:\n$(cat "$TMP/verify.out")"
  grep -q "no errors" "$TMP/verify.out" || fail "$algo: verify did not report success"
  grep -q "$algo [1-9]" "$TMP/verify.out" || fail "$algo: verify decoded no $algo blob:\n$(cat "$TMP/verify.out")"

  # The chunker as documented must reproduce the stored chunk ids exactly.
  reader "$repo" rechunk latest files "$PREFIX/random.bin" > "$TMP/rechunk.out" ||
    fail "$algo: re-chunking random.bin with the documented chunker does not give the stored ids"
  # 5 MiB is more than the 4 MiB maximum chunk, so at least two chunks
  # whatever the repository's random chunker seed puts the boundaries
  grep -qE "item .*: ([2-9]|[1-9][0-9]+) chunk\(s\), boundaries and ids match" "$TMP/rechunk.out" ||
    fail "$algo: random.bin should be several chunks:\n$(cat "$TMP/rechunk.out")"
}

for algo in zstd gzip; do
  repo="$TMP/repo-$algo"
  write_pipeline "$TMP/$algo.yml" "$repo" "$algo"
  run_engine "$algo" -q run "$TMP/$algo.yml" --progress never
  check_repo "$repo" "$algo" 1
done

# Format 2 (docs/FORMAT.md section 3.6): the keyring, packs with their own
# data keys sealed to the public key, snapshots sealed to it.
repo="$TMP/repo-v2"
write_pipeline "$TMP/v2.yml" "$repo" zstd 2
run_engine "format 2" -q run "$TMP/v2.yml" --progress never
grep -q '"version": 2' "$repo/config" || fail "format 2: the config does not say version 2"
check_repo "$repo" zstd 1

# A second snapshot in the zstd repository: the first stays readable by id
# prefix and keeps the old content, 'latest' has the new one.
repo="$TMP/repo-zstd"
first=$(reader "$repo" list | cut -f1)
cp "$SRC/hello.txt" "$TMP/hello.old"
printf 'changed after the first snapshot\n' >> "$SRC/hello.txt"
sleep 1 # snapshots are ordered by their time, which has one-second resolution
run_engine "zstd (second run)" -q run "$TMP/zstd.yml" --progress never
check_repo "$repo" zstd 2
reader "$repo" cat "${first:0:8}" files "$PREFIX/hello.txt" > "$TMP/cat.out" ||
  fail "zstd: reader cat of the first snapshot by id prefix failed"
cmp -s "$TMP/cat.out" "$TMP/hello.old" || fail "zstd: the first snapshot does not hold the old hello.txt"

# A wrong passphrase must be refused, not produce garbage.
if ENGINE_TEST_PASSPHRASE=wrong "$PYTHON" "$READER" "$repo" --passphrase-env ENGINE_TEST_PASSPHRASE list \
  > /dev/null 2> "$TMP/wrong.err"; then
  fail "the reader accepted a wrong passphrase"
fi
grep -q "wrong passphrase" "$TMP/wrong.err" || fail "wrong passphrase: unexpected message: $(cat "$TMP/wrong.err")"

# Damage one byte inside a blob of a pack: verify must fail.
pack=$(find "$repo/data" -type f | head -n 1)
chmod u+w "$pack"
printf '\xff' | dd of="$pack" bs=1 seek=20 conv=notrunc status=none
if reader "$repo" verify > /dev/null 2>&1; then
  fail "verify did not detect a damaged pack"
fi

echo "$NAME: PASS"
