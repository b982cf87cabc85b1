#!/usr/bin/env bash
# A file that changes while it is read is stored with the metadata seen
# after reading (its size is what was read), the run warns and the snapshot
# is partial; files that did not change keep the metadata seen before
# reading (the files source then sends no final metadata, and the emitter
# keeps the first text). Both restore: the unchanged ones byte for byte with
# their mode and mtime, the changed one as the prefix that was read.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
mkdir -p "$src/steady"
random_file "$src/grow.bin" 64
for i in $(seq 1 200); do printf 'steady file %d\n' "$i" >"$src/steady/f$i.txt"; done
chmod 640 "$src/steady/f7.txt"
touch -d '2024-02-29 12:34:56.123456789' "$src/steady/f9.txt"
write_pipeline "$T/p.yml" changed "$T/repo" "$src"

# an appender that keeps growing grow.bin (and moving its mtime) while the
# backup reads it: 4 KiB records, each starting with the time it was
# written (ns); reading and storing 64 MiB takes 0.1 s or more, the
# appender writes every few milliseconds
(
  while :; do
    { date +%s%N; head -c 4096 /dev/zero | tr '\0' x; } | head -c 4096 >>"$src/grow.bin"
    sleep 0.002
  done
) &
appender=$!
trap 'kill "$appender" 2>/dev/null || true; _lib_cleanup' EXIT
sleep 0.2
run_engine "$T/run.json" "$T/run.err" run "$T/p.yml" --json
kill "$appender"
wait "$appender" 2>/dev/null || true

assert_rc 3 "backup of a file growing while it is read" "$T/run.json" "$T/run.err"
assert_eq partial "$(json_get "$T/run.json" 'j["status"]')" "status of the run"
warnings=$(json_get "$T/run.json" 'j["warnings"]')
case "$warnings" in
  *grow.bin*changed\ during\ backup* | *changed\ during\ backup*grow.bin*) ;;
  *) fail "the warnings do not say that grow.bin changed during the backup: $warnings" ;;
esac
case "$warnings" in *steady*) fail "an unchanged file was reported as changed: $warnings" ;; esac

run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" latest --target "$T/out"
out=$(restored_path "$T/out" "$src")
# the unchanged files: content, type, mode, owner and mtime (ns)
mkdir -p "$T/want"
cp -a "$src/steady" "$T/want/"
compare_trees "$T/want/steady" "$out/steady" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "unchanged files do not restore with their content and metadata"; }
# the changed file: what was read, i.e. a prefix of the file now, at least
# as long as it was before the backup
got=$(stat -c %s "$out/grow.bin")
now=$(stat -c %s "$src/grow.bin")
[ "$got" -ge $((64 * 1024 * 1024)) ] || fail "the restored grow.bin has $got bytes, less than the 64 MiB it had"
[ "$got" -le "$now" ] || fail "the restored grow.bin has $got bytes, more than the $now the file has now"
cmp -n "$got" "$out/grow.bin" "$src/grow.bin" >/dev/null ||
  fail "the restored grow.bin is not the prefix of the file that was read"
# its metadata is the one seen after reading: the restored mtime is not
# older than the last record that was read (10 ms of slack for the file
# system's timestamp granularity); the metadata seen when the file was
# opened would be older by most of the time the read took
"$PYTHON" - "$out/grow.bin" $((64 * 1024 * 1024)) <<'PY' || fail "the restored grow.bin does not carry the metadata seen after reading it"
import os, sys
path, base = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
stamps = []
for off in range(base, len(data) - 4095, 4096):
    line = data[off:off + 24].split(b"\n", 1)[0]
    if line.isdigit():
        stamps.append(int(line))
if len(stamps) < 2:
    sys.exit(f"only {len(stamps)} appended record(s) were read: the file did not grow during the read")
mtime = os.stat(path).st_mtime_ns
last = stamps[-1]
print(f"records read: {len(stamps)}, last written {last}, restored mtime {mtime}, "
      f"difference {(mtime - last) / 1e6:.1f} ms")
if mtime < last - 10_000_000:
    sys.exit(f"restored mtime {mtime} is {(last - mtime) / 1e6:.1f} ms older than the last record read")
PY
run_ok "$T/check.out" "$T/check.err" check "$T/p.yml" --read-data
note "PASS (grow.bin stored with $got bytes while it grew to $now)"
