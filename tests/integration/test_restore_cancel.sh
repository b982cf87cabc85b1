#!/usr/bin/env bash
# engine restore stops on SIGTERM (and SIGINT) between items: exit 130
# within seconds, an error that says the target is incomplete, and what it
# leaves is whole: every file in the target equals its source byte for byte
# (the files source links a small file under its name only once it is
# written, and renames a large one into place), no temporary name is left,
# and a second restore with --yes completes the tree. Before, the first
# signal only set a flag the restore never read: a 1,000,000-file restore
# went on after SIGTERM, and only a second signal (the default action)
# stopped it, wherever it was.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=$T/src
"$PYTHON" - "$src" <<'EOF2'
import os, random, sys
root = sys.argv[1]
r = random.Random(130)
for i in range(20000):
    d = os.path.join(root, "d%02d" % (i % 20))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(r.randbytes(r.randint(1, 2048)))
for i in range(3):
    with open(os.path.join(root, "big%d" % i), "wb") as f:
        f.write(r.randbytes(3 << 20))
EOF2
write_pipeline "$T/p.yml" files "$T/repo" "$src"
run_ok "$T/run.out" "$T/run.err" run "$T/p.yml"

# interrupt_restore SIGNAL TARGET: start a restore, send SIGNAL once the
# target holds 300 files; sets RC and SECONDS_AFTER (signal to exit)
interrupt_restore() {
  local sig=$1 target=$2 i n
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" restore "$T/p.yml" latest --target "$target" \
    --yes >"$T/$sig.out" 2>"$T/$sig.err" </dev/null &
  local pid=$!
  for ((i = 0; i < 1200; i++)); do
    n=$({ find "$target" -type f 2>/dev/null || true; } | wc -l)
    [ "$n" -ge 300 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$pid" 2>/dev/null || { show "$T/$sig.err"; fail "the restore ended before it could be interrupted ($n files)"; }
  local t0
  t0=$(date +%s%N)
  kill -"$sig" "$pid"
  RC=0
  wait "$pid" || RC=$?
  SECONDS_AFTER=$((($(date +%s%N) - t0) / 1000000000))
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/$sig.err"; then
    show "$T/$sig.err"
    fail "sanitizer report from the interrupted restore"
  fi
}

# every file under TARGET/src is whole and equal to the source's; prints the count
check_partial() { # TARGET WHAT
  "$PYTHON" - "$src" "$(restored_path "$1" "$src")" "$2" <<'EOF2'
import os, sys
src, got, what = sys.argv[1:4]
n = 0
for dirpath, dirs, files in os.walk(got):
    for name in files:
        p = os.path.join(dirpath, name)
        rel = os.path.relpath(p, got)
        s = os.path.join(src, rel)
        if not os.path.exists(s):
            sys.exit("%s: %s is not in the source (a temporary name left behind?)" % (what, rel))
        with open(p, "rb") as a, open(s, "rb") as b:
            if a.read() != b.read():
                sys.exit("%s: %s differs from the source (written in part?)" % (what, rel))
        n += 1
print(n)
EOF2
}

for sig in TERM INT; do
  note "SIG$sig during a restore: exit 130, the target incomplete but every file in it whole"
  target=$T/out-$sig
  interrupt_restore "$sig" "$target"
  assert_rc 130 "restore interrupted by SIG$sig" "$T/$sig.err"
  [ "$SECONDS_AFTER" -le 15 ] || fail "the restore took ${SECONDS_AFTER}s to stop after SIG$sig"
  assert_contains "$T/$sig.err" "interrupted by SIGINT/SIGTERM" "the restore's error after SIG$sig"
  assert_contains "$T/$sig.err" "the target is incomplete" "the restore's error after SIG$sig"
  n=$(check_partial "$target" "after SIG$sig") || fail "$n"
  [ "$n" -lt 20003 ] || fail "SIG$sig came too late: all $n files were restored"
  note "  $n of 20003 files restored before it stopped, each equal to the source"

  note "a second restore into the same target completes it"
  run_ok "$T/again-$sig.out" "$T/again-$sig.err" restore "$T/p.yml" latest --target "$target" --yes
  compare_trees "$src" "$(restored_path "$target" "$src")" >"$T/cmp.txt" 2>&1 ||
    { cat "$T/cmp.txt" >&2; fail "the restore after SIG$sig does not complete the tree"; }
done

note "PASS"
