#!/usr/bin/env bash
# The local sink writes packs around the page cache (O_DIRECT, option
# direct_io, on by default) where the file system supports it: after a
# backup of 40 MiB of incompressible data, at most the unaligned tail page
# of each pack is cached (checked with fincore), and the snapshot passes
# check --read-data and restores byte for byte. With direct_io: false the
# same backup leaves its packs in the page cache, which shows that the
# measurement can tell the two apart. On a file system without O_DIRECT the
# sink falls back to normal writes: a repository on ramfs (which refuses
# O_DIRECT) must work the same (skipped, and said so, where ramfs cannot be
# mounted, e.g. without root).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
command -v fincore >/dev/null 2>&1 || fail "fincore (util-linux-extra) is required"

src=$T/src
mkdir -p "$src"
seeded_file "$src/a.bin" 24 11
seeded_file "$src/b.bin" 16 12
total=$((40 * 1024 * 1024))

# bytes of the pack files (objects > 1 MiB under data/) and how many of them are cached
pack_cache() { # REPO -> "PACKS BYTES RESIDENT"
  local n=0 bytes=0 res=0 f sz r
  while IFS= read -r f; do
    sz=$(stat -c %s "$f")
    r=$(fincore --bytes --noheadings --output RES "$f" | tr -d ' ')
    n=$((n + 1)); bytes=$((bytes + sz)); res=$((res + r))
  done < <(find "$1/data" -type f -size +1M)
  echo "$n $bytes $res"
}

probe=$T/direct-probe
if dd if=/dev/zero of="$probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
  direct_ok=1
else
  direct_ok=0
  note "the file system under $T refuses O_DIRECT: checking the buffered fallback only"
fi
rm -f "$probe"

for mode in direct buffered; do
  repo=$T/repo-$mode
  write_pipeline "$T/$mode.yml" dio "$repo" "$src"
  [ "$mode" = direct ] || echo "      direct_io: false" >>"$T/$mode.yml"
  run_ok "$T/$mode-run.json" "$T/$mode-run.err" run "$T/$mode.yml" --json
  read -r packs bytes resident < <(pack_cache "$repo")
  note "$mode: $packs packs, $bytes bytes, $resident bytes of them in the page cache"
  [ "$packs" -ge 2 ] || fail "$mode: expected at least 2 packs of the $total bytes, found $packs"
  [ "$bytes" -ge "$total" ] || fail "$mode: packs hold $bytes bytes, less than the $total bytes of incompressible data"
  if [ "$mode" = direct ] && [ "$direct_ok" = 1 ]; then
    # at most the last partial page of each pack went through the cache
    [ "$resident" -le $((packs * 8192)) ] ||
      fail "direct: $resident bytes of the packs are in the page cache (expected <= $((packs * 8192)): the packs' unaligned tails)"
  fi
  if [ "$mode" = buffered ]; then
    [ $((resident * 10)) -ge $((bytes * 9)) ] ||
      fail "buffered: only $resident of $bytes pack bytes are in the page cache; the check above cannot tell direct from buffered writes here"
  fi
  run_ok "$T/$mode-check.out" "$T/$mode-check.err" check "$T/$mode.yml" --read-data
  run_ok "$T/$mode-restore.out" "$T/$mode-restore.err" restore "$T/$mode.yml" latest --target "$T/out-$mode" --yes
  compare_trees "$src" "$(restored_path "$T/out-$mode" "$src")" >"$T/cmp.txt" 2>&1 ||
    { cat "$T/cmp.txt" >&2; fail "$mode: the snapshot does not restore the source"; }
done
# the fallback: a file system that refuses O_DIRECT
rf=$T/ramfs
mkdir -p "$rf"
if mount -t ramfs ramfs "$rf" 2>/dev/null; then
  trap 'rc=$?; umount "$rf" 2>/dev/null; (exit $rc); _lib_cleanup' EXIT
  if dd if=/dev/zero of="$rf/probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
    fail "ramfs accepted O_DIRECT here; the fallback is not exercised"
  fi
  write_pipeline "$T/ramfs.yml" dio "$rf/repo" "$src"
  run_ok "$T/ramfs-run.json" "$T/ramfs-run.err" run "$T/ramfs.yml" --json
  read -r packs bytes resident < <(pack_cache "$rf/repo")
  note "ramfs (no O_DIRECT): $packs packs, $bytes bytes"
  [ "$packs" -ge 2 ] && [ "$bytes" -ge "$total" ] || fail "ramfs: expected >= 2 packs holding >= $total bytes, found $packs packs, $bytes bytes"
  run_ok "$T/ramfs-check.out" "$T/ramfs-check.err" check "$T/ramfs.yml" --read-data
  run_ok "$T/ramfs-restore.out" "$T/ramfs-restore.err" restore "$T/ramfs.yml" latest --target "$T/out-ramfs" --yes
  compare_trees "$src" "$(restored_path "$T/out-ramfs" "$src")" >"$T/cmp.txt" 2>&1 ||
    { cat "$T/cmp.txt" >&2; fail "ramfs: the snapshot does not restore the source"; }
else
  note "ramfs cannot be mounted here (not root?): the fallback on a file system without O_DIRECT is not checked"
fi
note "ok"
