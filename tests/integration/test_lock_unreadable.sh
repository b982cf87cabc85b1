#!/usr/bin/env bash
# A lock that exists but cannot be read is never taken for absent: prune
# while a backup holds its shared lock and the lock object's reads fail
# (EIO through the faultfs shim) must refuse, naming the lock, and delete
# nothing; the backup then completes and every snapshot checks and
# restores. (Before, prune skipped the unreadable lock and deleted the
# running backup's packs.)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FAULTFS=${ENGINE_FAULTFS:-$(dirname "$ENGINE_BIN")/tests/tools/engine-faultfs.so}
[ -f "$FAULTFS" ] || fail "the fault-injection shim '$FAULTFS' is missing (built by tests/CMakeLists.txt; set ENGINE_FAULTFS)"
ASAN_RT=$(ldd "$ENGINE_BIN" | awk '/libasan\.so/ {print $3; exit}')
PRELOAD="${ASAN_RT:+$ASAN_RT }$FAULTFS"

src=$T/src
mkdir -p "$src"
seeded_file "$src/a.bin" 3 1
write_pipeline "$T/p.yml" locks "$T/repo" "$src"
run_ok "$T/r1.out" "$T/r1.err" run "$T/p.yml"
seeded_file "$src/b.bin" 3 2

# a backup that holds its lock: stopped right after taking it
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" run "$T/p.yml" >"$T/r2.out" 2>"$T/r2.err" &
bpid=$!
# (a lock being written is a temporary file first: wait for the real one)
lockfile() { find "$T/repo/locks" -type f ! -name '*.tmp-*' 2>/dev/null | head -n 1; }
for _ in $(seq 1 500); do
  [ -n "$(lockfile)" ] && break
  sleep 0.01
done
kill -STOP "$bpid"
lock=$(lockfile)
[ -n "$lock" ] || { kill -CONT "$bpid"; fail "the backup took no lock"; }
find "$T/repo" -type f | sort | xargs sha256sum >"$T/before"

run_engine "$T/p.out" "$T/p.err" prune "$T/p.yml"
assert_rc 1 "prune next to a backup's lock" "$T/p.out" "$T/p.err"
LD_PRELOAD="$PRELOAD" FAULTFS_PATH="$T/repo/locks/" FAULTFS_OPS=read run_engine "$T/pf.out" "$T/pf.err" prune "$T/p.yml"
assert_rc 1 "prune when the backup's lock cannot be read" "$T/pf.out" "$T/pf.err"
assert_contains "$T/pf.err" "cannot be read" "prune says the lock cannot be read"
assert_contains "$T/pf.err" "$(basename "$lock")" "prune names the lock"
find "$T/repo" -type f | sort | xargs sha256sum >"$T/after"
cmp -s "$T/before" "$T/after" || { diff "$T/before" "$T/after" >&2 || true; fail "prune changed the repository"; }

kill -CONT "$bpid"
wait "$bpid" || fail "the backup failed after prune's refusal: $(cat "$T/r2.err")"
run_ok "$T/c.out" "$T/c.err" check "$T/p.yml" --read-data
run_ok "$T/rs.out" "$T/rs.err" restore "$T/p.yml" latest --target "$T/out"
compare_trees "$src" "$(restored_path "$T/out" "$src")"
note "PASS"
