#!/usr/bin/env bash
# Memory flat in the number of files: the first backup of 200,000 small files
# (each its own blob) peaks at most 40 MiB above that of 20,000 files, and
# below 128 MiB in all (restic needed ~211 MiB for 200,000 such files; the
# engine's in-memory index costs ~70 bytes a blob, docs/internals/index.md:
# ~14 MiB here). A restore of all 200,000 files is compared with the source.
# Measured with /usr/bin/time -v on a build without sanitizers
# ($ENGINE_BIN_PLAIN, which tests/run-all.sh builds into build/).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ -x /usr/bin/time ] || fail "/usr/bin/time is required (Debian package 'time')"
bin=${ENGINE_BIN_PLAIN:-$ENGINE_BIN}
[ -x "$bin" ] || fail "ENGINE_BIN_PLAIN='$bin' is not executable"
if ldd "$bin" | grep -q 'libasan'; then
  fail "$bin is built with AddressSanitizer; set ENGINE_BIN_PLAIN to a build without sanitizers"
fi
plugdir=$(dirname "$bin")/plugins

make_tree() { # DIR N: N files of 20-400 distinct bytes, 1,000 per directory
  "$PYTHON" - "$1" "$2" <<'EOF2'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
r = random.Random(n)
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d)
    with open(os.path.join(d, "f%06d" % i), "wb") as f:
        f.write(("file %d %s\n" % (i, r.getrandbits(64) * r.randint(1, 2 ** 3000))).encode()[:r.randint(20, 400)])
EOF2
}

peak_kib() { # NAME SRC
  write_pipeline "$T/$1.yml" "files-$1" "$T/repo-$1" "$2"
  local rc=0
  ENGINE_PLUGIN_PATH="$plugdir" /usr/bin/time -v -o "$T/$1.time" "$bin" run "$T/$1.yml" --json \
    >"$T/$1.json" 2>"$T/$1.err" </dev/null || rc=$?
  [ "$rc" -eq 0 ] || { show "$T/$1.json" "$T/$1.err"; fail "backup of $2 exited with $rc"; }
  sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$T/$1.time"
}

make_tree "$T/few" 20000
make_tree "$T/many" 200000
note "generated 20,000 and 200,000 small files"
few=$(peak_kib few "$T/few")
many=$(peak_kib many "$T/many")
n=$(json_get "$T/many.json" 'j["new_chunks"]'); [ "$n" -ge 200000 ] || fail "only $n new chunks for 200,000 distinct files"
note "peak RSS: 20,000 files $((few / 1024)) MiB, 200,000 files $((many / 1024)) MiB"
[ "$many" -le $((few + 40 * 1024)) ] || fail "peak RSS grows with the number of files: $many KiB for 200,000 vs $few KiB for 20,000"
[ "$many" -lt $((128 * 1024)) ] || fail "peak RSS for 200,000 files is $many KiB (bound 128 MiB)"
ENGINE_PLUGIN_PATH="$plugdir" "$bin" restore "$T/many.yml" latest --target "$T/out" >"$T/r.out" 2>"$T/r.err" </dev/null ||
  { show "$T/r.err"; fail "restore of 200,000 files failed"; }
diff -r "$T/many" "$(restored_path "$T/out" "$T/many")" >/dev/null || fail "the restored tree differs from the source"
note "PASS"
