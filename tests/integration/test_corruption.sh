#!/usr/bin/env bash
# One flipped byte in a data pack: `check --read-data` exits 1 and names the
# damaged pack, the affected snapshot (id prefix) and item; restoring that
# item fails with a clear error and leaves no file under its name.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src"
random_file "$src/victim.bin" 4
echo "small" >"$src/other.txt"
write_pipeline "$T/p.yml" corruption "$T/repo" "$src"
run_ok "$T/run.json" "$T/run.err" run "$T/p.yml" --json
snap=$(json_get "$T/run.json" 'j["snapshot"]')

run_ok "$T/check0.out" "$T/check0.err" check "$T/p.yml" --read-data

# The largest pack holds victim.bin's (incompressible) chunks; its middle is
# inside that data.
pack=$(find "$T/repo/data" -type f -printf '%s %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
[ -n "$pack" ] || fail "no pack under $T/repo/data"
pack_id=$(basename "$pack")
size=$(stat -c %s "$pack")
[ "$size" -gt $((3 * 1024 * 1024)) ] || fail "the largest pack $pack has only $size bytes; expected victim.bin's 4 MiB in it"
"$PYTHON" - "$pack" "$((size / 2))" <<'EOF2'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0x01]))
EOF2
note "flipped one bit at offset $((size / 2)) of $pack_id"

# The structural check reads no pack content: either result is acceptable,
# but it must run and finish.
run_engine "$T/check1.out" "$T/check1.err" check "$T/p.yml"
[ "$RC" -eq 0 ] || [ "$RC" -eq 1 ] || { show "$T/check1.out" "$T/check1.err"; fail "structural check exited with $RC"; }

run_engine "$T/check2.out" "$T/check2.err" check "$T/p.yml" --read-data
cat "$T/check2.out" "$T/check2.err" >"$T/check2.all"
assert_rc 1 "check --read-data on a damaged pack" "$T/check2.all"
assert_contains "$T/check2.all" "${pack_id:0:16}" "check --read-data names the damaged pack"
assert_contains "$T/check2.all" "${snap:0:8}" "check --read-data names the affected snapshot"
assert_contains "$T/check2.all" "victim.bin" "check --read-data names the affected item"
assert_not_contains "$T/check2.all" "other.txt" "check --read-data blames only the damaged item"

run_engine "$T/check3.out" "$T/check3.err" check "$T/p.yml" --read-data --json
assert_rc 1 "check --read-data --json on a damaged pack" "$T/check3.out" "$T/check3.err"
assert_eq false "$(json_get "$T/check3.out" 'j["ok"]')" "check --json: ok"
items=$(json_get "$T/check3.out" 'sorted({p["item"] for p in j["problems"] if "item" in p})')
case "$items" in *victim.bin*) ;; *) fail "check --json problems name the items $items, expected victim.bin" ;; esac

victim=$(restored_path "$T/out" "$src/victim.bin")
run_engine "$T/restore.out" "$T/restore.err" restore "$T/p.yml" latest --target "$T/out" \
  --only "files/${src#/}/victim.bin"
[ "$RC" -ne 0 ] || { show "$T/restore.out" "$T/restore.err"; fail "restoring the damaged item succeeded"; }
assert_contains "$T/restore.err" "victim.bin" "the restore error names the damaged item"
grep -qiE 'authentication failed|corrupt|damaged' "$T/restore.err" ||
  { show "$T/restore.err"; fail "the restore error does not say that the data is damaged"; }
[ ! -e "$victim" ] || fail "a failed restore left $victim behind (size $(stat -c %s "$victim"))"

# the undamaged item still restores
run_ok "$T/restore2.out" "$T/restore2.err" restore "$T/p.yml" latest --target "$T/out2" \
  --only "files/${src#/}/other.txt"
assert_files_equal "$src/other.txt" "$(restored_path "$T/out2" "$src/other.txt")" "restore of the undamaged item"
note "PASS"
