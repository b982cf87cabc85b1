#!/usr/bin/env bash
# The files source restores a small file with one operation under its
# directory's lock: created without a name (O_TMPFILE), written, given its
# metadata, then linked under its name (plugins/sources/files/
# restore_writers.c). Traced with strace: a fresh restore of 2,000 small
# files makes 2,000 nameless files and 2,000 links, and no rename and no
# temporary name (before: a temporary name drawn with getrandom, created
# and renamed into place, two operations under the directory's lock). The
# restored tree equals the source (content, modes, times) in three cases:
# a fresh target; the same target again (each name is taken: the file is
# linked under a temporary name and renamed over it); and as root without
# CAP_DAC_READ_SEARCH (kernels before 6.10 refuse linkat(AT_EMPTY_PATH)
# without it, and the files are linked through /proc/self/fd; later ones
# allow it for a file the process opened itself). No temporary name is left
# behind.
#
# Needs: strace, setpriv (util-linux).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v strace >/dev/null || fail "strace is required (Debian package 'strace')"
command -v setpriv >/dev/null || fail "setpriv is required (Debian package 'util-linux')"

src=$T/src
"$PYTHON" - "$src" <<'EOF2'
import os, random, sys
root = sys.argv[1]
r = random.Random(16)
for i in range(2000):
    d = os.path.join(root, "d%d" % (i % 4))
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "f%04d.txt" % i)
    with open(p, "wb") as f:
        f.write(r.randbytes(r.randint(0, 3000)))
    os.chmod(p, (0o600, 0o644, 0o755, 0o640)[i % 4])
    os.utime(p, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + 7 * i))
EOF2
write_pipeline "$T/p.yml" files "$T/repo" "$src"
run_ok "$T/run.out" "$T/run.err" run "$T/p.yml"

leftovers() { # DIR: names of temporary nodes under DIR
  find "$1" -name '*.engine-tmp-*' | head -5
}

# 1. a fresh target, traced (LeakSanitizer cannot run under ptrace)
RC=0
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" strace -f -qq -o "$T/trace" \
  -e trace=openat,linkat,rename,renameat,renameat2,getrandom \
  "$ENGINE_BIN" restore "$T/p.yml" latest --target "$T/out1" >"$T/r1.out" 2>"$T/r1.err" </dev/null || RC=$?
[ "$RC" -eq 0 ] || { show "$T/r1.err"; fail "the traced restore exited with $RC"; }
compare_trees "$src" "$(restored_path "$T/out1" "$src")"
# (the repository's lock, audit record and index cache have renames and
# random names of their own: only the files source's temporary names count)
tmpfiles=$(grep -c 'O_TMPFILE' "$T/trace" || true)
links=$(grep -c 'linkat(' "$T/trace" || true)
tmpnames=$(grep -c '\.engine-tmp-' "$T/trace" || true)
draws=$(grep -c 'getrandom(' "$T/trace" || true)
note "fresh restore of 2,000 small files: $tmpfiles nameless files, $links links, $tmpnames uses of temporary names, $draws getrandom calls in all"
[ "$tmpfiles" -eq 2000 ] || fail "expected 2,000 files opened with O_TMPFILE, saw $tmpfiles"
[ "$links" -eq 2000 ] || fail "expected 2,000 linkat calls, saw $links"
[ "$tmpnames" -eq 0 ] || fail "expected no temporary name in a fresh restore of small files, saw $tmpnames"
[ "$draws" -lt 100 ] || fail "expected no temporary names to be drawn (getrandom), saw $draws calls"
[ -z "$(leftovers "$T/out1")" ] || fail "temporary nodes left: $(leftovers "$T/out1")"

# 2. the same target again: every name is taken
run_ok "$T/r2.out" "$T/r2.err" restore "$T/p.yml" latest --target "$T/out1" --yes
compare_trees "$src" "$(restored_path "$T/out1" "$src")"
[ -z "$(leftovers "$T/out1")" ] || fail "temporary nodes left after restoring over the tree: $(leftovers "$T/out1")"

# 3. root without CAP_DAC_READ_SEARCH
RC=0
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" setpriv --bounding-set -dac_read_search --inh-caps -all \
  "$ENGINE_BIN" restore "$T/p.yml" latest --target "$T/out3" >"$T/r3.out" 2>"$T/r3.err" </dev/null || RC=$?
[ "$RC" -eq 0 ] || { show "$T/r3.err"; fail "the restore without CAP_DAC_READ_SEARCH exited with $RC"; }
compare_trees "$src" "$(restored_path "$T/out3" "$src")"
[ -z "$(leftovers "$T/out3")" ] || fail "temporary nodes left without CAP_DAC_READ_SEARCH: $(leftovers "$T/out3")"
note "PASS"
