#!/usr/bin/env bash
# Every kind of file system object survives backup + restore into an empty
# --target: content byte for byte, type, mode, owner, mtime (ns), symlink
# targets (relative, absolute, dangling), hardlink identity, fifos, names
# with spaces / a newline / non-UTF-8 bytes, and a sparse file stays sparse.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || fail "this test needs root (it restores a file owned by 1234:5678)"

src=$T/src
mkdir -p "$src/nested/deeper/deepest" "$src/empty-dir" "$src/private"
note "generating the tree in $src"

: >"$src/empty"
printf 'x' >"$src/one-byte"
random_file "$src/nested/random-3MiB" 3
# 20 MiB of compressible text
"$PYTHON" - "$src/nested/deeper/text-20MiB" <<'EOF'
import sys
line = b"the quick brown fox jumps over the lazy dog %08d\n"
with open(sys.argv[1], "wb") as f:
    n = 0
    size = 0
    while size < 20 * 1024 * 1024:
        chunk = b"".join(line % (n + i) for i in range(4096))
        f.write(chunk)
        size += len(chunk)
        n += 4096
    f.truncate(20 * 1024 * 1024)
EOF
echo "deep" >"$src/nested/deeper/deepest/leaf.txt"

# 64 MiB sparse file with 64 KiB of data in the middle
truncate -s 64M "$src/sparse.bin"
head -c 65536 /dev/urandom | dd of="$src/sparse.bin" bs=65536 seek=512 conv=notrunc status=none
src_alloc=$(( $(stat -c %b "$src/sparse.bin") * $(stat -c %B "$src/sparse.bin") ))
[ "$src_alloc" -lt $((8 * 1024 * 1024)) ] ||
  fail "the scratch file system does not keep $src/sparse.bin sparse ($src_alloc bytes allocated); cannot test sparse files here"

ln -s nested/deeper/deepest/leaf.txt "$src/link-relative"
ln -s /etc/hostname "$src/link-absolute"
ln -s does/not/exist "$src/link-dangling"
ln -s ../.. "$src/nested/link-to-dir"

echo "shared content" >"$src/hardlink-a"
ln "$src/hardlink-a" "$src/nested/hardlink-b"

mkfifo "$src/fifo"

echo "spaces" >"$src/name with  spaces"
echo "newline" >"$src/name with"$'\n'"newline"
echo "latin1" >"$src/bytes-"$'\xff\xfe'"-name"
mkdir "$src/dir-"$'\xe9'
echo "inside" >"$src/dir-"$'\xe9'"/file"

echo "secret" >"$src/mode-0600"
chmod 0600 "$src/mode-0600"
printf '#!/bin/sh\necho hi\n' >"$src/mode-0755"
chmod 0755 "$src/mode-0755"
echo "read only" >"$src/mode-0444"
chmod 0444 "$src/mode-0444"
# set-id and sticky bits, and modes a umask would mask (below, a restore
# under umask 077): small files get plain modes at creation, others by fchmod
echo "setuid" >"$src/mode-4755"
chmod 4755 "$src/mode-4755"
echo "setgid" >"$src/mode-2750"
chmod 2750 "$src/mode-2750"
echo "sticky" >"$src/mode-1644"
chmod 1644 "$src/mode-1644"
echo "group writable" >"$src/mode-0664"
chmod 0664 "$src/mode-0664"
chmod 0700 "$src/private"
echo "setgid dir content" >"$src/private/inner"

echo "not root's" >"$src/owned-by-1234"
chown 1234:5678 "$src/owned-by-1234"
mkdir "$src/dir-owned-by-1234"
chown 1234:5678 "$src/dir-owned-by-1234"
ln -s owned-by-1234 "$src/link-owned-by-1234"
chown -h 1234:5678 "$src/link-owned-by-1234"

# mtimes last, deepest first, so creating children does not move them;
# fractional seconds to check nanosecond precision
find "$src" -depth -print0 | while IFS= read -r -d '' p; do
  touch -h -d '2021-03-04 05:06:07.123456789 UTC' "$p"
done
touch -d '1999-12-31 23:59:59 UTC' "$src/one-byte"
touch -d '2030-01-02 03:04:05.5 UTC' "$src/nested/random-3MiB"
touch -h -d '2010-10-10 10:10:10 UTC' "$src/link-relative"
touch -d '2005-05-05 05:05:05 UTC' "$src/nested/deeper/deepest"
touch -d '2001-01-01 00:00:00 UTC' "$src"

write_pipeline "$T/p.yml" roundtrip "$T/repo" "$src"
note "backup"
run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run.json" 'j["status"]')" "status of the run"
assert_eq 0 "$(json_get "$T/run.json" 'len(j["warnings"])')" "number of warnings of the run"

note "restore into an empty target"
run_ok "$T/restore.out" "$T/restore.err" restore "$T/p.yml" latest --target "$T/out"

restored=$(restored_path "$T/out" "$src")
[ -d "$restored" ] || fail "the restore did not create $restored"
# Large files are dropped from the page cache once they are on disk (the
# flusher); small files stay cached. Checked before anything reads them.
command -v fincore >/dev/null 2>&1 || fail "fincore (util-linux-extra) is required"
big_cached=$(fincore --bytes --noheadings --output RES "$restored/nested/deeper/text-20MiB" | tr -d ' ')
small_cached=$(fincore --bytes --noheadings --output RES "$restored/mode-0600" | tr -d ' ')
note "page cache after the restore: text-20MiB ${big_cached} bytes, mode-0600 ${small_cached} bytes"
assert_lt "$big_cached" $((1024 * 1024)) "bytes of the restored 20 MiB file left in the page cache"
assert_lt 0 "$small_cached" "bytes of a restored small file in the page cache (the measurement works)"
if ! compare_trees "$src" "$restored" --sparse sparse.bin >"$T/compare.txt" 2>&1; then
  cat "$T/compare.txt" >&2
  fail "the restored tree differs from the source (see the DIFF lines above)"
fi
cat "$T/compare.txt"

note "restore under umask 077 (modes must not depend on the restoring process's umask)"
(umask 077 && run_ok "$T/restore77.out" "$T/restore77.err" restore "$T/p.yml" latest --target "$T/out77")
if ! compare_trees "$src" "$(restored_path "$T/out77" "$src")" --sparse sparse.bin >"$T/compare77.txt" 2>&1; then
  cat "$T/compare77.txt" >&2
  fail "the tree restored under umask 077 differs from the source"
fi

# A restore hands the plugin the items its validation pass parsed, unless
# they would take more than a memory budget; then it reads the tree again.
# With a budget of a few items, the second way restores the same tree.
note "restore that reads the tree again (ENGINE_RESTORE_KEEP_BUDGET below the tree's size)"
run_ok "$T/restore-kept.out" "$T/restore-kept.err" -v -v restore "$T/p.yml" latest --target "$T/out-kept"
grep -q "items kept from the validation pass" "$T/restore-kept.err" ||
  { show "$T/restore-kept.err"; fail "a default restore did not use the validation pass's items"; }
# The three files of 256 KiB and more (random-3MiB, text-20MiB, sparse.bin)
# are flushed by the files source's flusher while the restore goes on.
grep -q "restore of files: 3 large file(s) flushed during the restore" "$T/restore-kept.err" ||
  { show "$T/restore-kept.err"; fail "the large files were not flushed during the restore"; }
ENGINE_RESTORE_KEEP_BUDGET=3000 run_ok "$T/restore-again.out" "$T/restore-again.err" -v -v restore \
  "$T/p.yml" latest --target "$T/out-again"
grep -q "reading the tree again" "$T/restore-again.err" ||
  { show "$T/restore-again.err"; fail "a restore over its keep budget did not read the tree again"; }
if ! compare_trees "$src" "$(restored_path "$T/out-again" "$src")" --sparse sparse.bin >"$T/compare-again.txt" 2>&1; then
  cat "$T/compare-again.txt" >&2
  fail "the tree restored by reading the tree again differs from the source"
fi

# Nothing else was written into the target: every entry is the restored
# tree, inside it, or one of the directories leading to it.
while IFS= read -r -d '' p; do
  case "$restored/" in "$p"/*) continue ;; esac
  case "$p" in "$restored" | "$restored"/*) continue ;; esac
  fail "unexpected entry in the target: $p"
done < <(find "$T/out" -mindepth 1 -print0)

note "PASS"
