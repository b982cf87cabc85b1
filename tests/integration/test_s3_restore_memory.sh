#!/usr/bin/env bash
# A restore from an object store has bounded memory and reads packs in few,
# large requests (docs/internals/pipeline.md, restore step 2): 255 MiB of
# incompressible, compressible, duplicated and small files are backed up to
# a real radosgw, then restored with an empty cache. The restore's peak RSS
# stays under 192 MiB (the read-ahead's 64 MiB window of decoded blobs,
# 16 MiB kept for duplicates, a ring and a spill buffer per transfer, the
# files source's small-file queue; before the window it was 216-260 MiB
# here, and 320 MiB for 1 GiB), and radosgw logs at most 100 GETs of packs
# per GiB restored. The restored tree equals the source byte for byte. The
# HTTP client acknowledges replies at once (see the end).
# Measured with /usr/bin/time -v on a build without sanitizers
# ($ENGINE_BIN_PLAIN, which tests/run-all.sh builds into build/).
#
# Needs: ceph-mon ceph-osd radosgw awscli (Debian packages), GNU time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ -x /usr/bin/time ] || fail "/usr/bin/time is required (Debian package 'time')"
bin=${ENGINE_BIN_PLAIN:-$ENGINE_BIN}
[ -x "$bin" ] || fail "ENGINE_BIN_PLAIN='$bin' is not executable"
if ldd "$bin" | grep -q 'libasan'; then
  fail "$bin is built with AddressSanitizer; set ENGINE_BIN_PLAIN to a build without sanitizers"
fi
plugdir=$(dirname "$bin")/plugins

aws_init
ceph_start
BUCKET=engine-restore-memory
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb failed"

# copies first in the walk, so their blobs are wanted again later (kept)
src=$T/src
mkdir -p "$src/a-copies" "$src/big" "$src/small" "$src/text"
for i in $(seq 1 10); do seeded_file "$src/big/b$i.bin" 12 "$i"; done
cp "$src/big/b2.bin" "$src/big/b5.bin" "$src/big/b9.bin" "$src/a-copies/"
for i in $(seq 1 6); do seq $((i * 1000000)) $((i * 1000000 + 1400000)) >"$src/text/t$i.txt"; done
"$PYTHON" - "$src/small" <<'EOF2'
import os, random, sys
r = random.Random(7)
for i in range(3000):
    d = os.path.join(sys.argv[1], "d%02d" % (i // 200))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(r.randbytes(r.randint(100, 20000)))
EOF2
bytes=$(du -sb "$src" | cut -f1)

cat >"$T/p.yml" <<EOF2
version: 1
name: restore-memory
sources: [{name: files, type: files, with: {paths: [$(yq "$src")]}}]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - {name: offsite, type: s3, with: {endpoint: $S3_EP, bucket: $BUCKET, addressing: path}}
EOF2
ENGINE_PLUGIN_PATH="$plugdir" "$bin" run "$T/p.yml" --progress never >"$T/run.out" 2>"$T/run.err" </dev/null ||
  { show "$T/run.out" "$T/run.err"; fail "the backup to radosgw failed"; }
packs=$(awsc s3 ls "s3://$BUCKET/data/" --recursive | wc -l)

rm -rf "$ENGINE_CACHE_DIR" # the host is gone: nothing cached
rgwlog=$CEPH_DIR/log/rgw.log
before=$(wc -l <"$rgwlog")
rc=0
ENGINE_PLUGIN_PATH="$plugdir" /usr/bin/time -v -o "$T/r.time" "$bin" restore "$T/p.yml" latest \
  --target "$T/out" >"$T/r.out" 2>"$T/r.err" </dev/null || rc=$?
[ "$rc" -eq 0 ] || { show "$T/r.out" "$T/r.err"; fail "the restore from radosgw exited with $rc"; }
sleep 1 # radosgw logs a request after answering it
compare_trees "$src" "$(restored_path "$T/out" "$src")"
peak=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$T/r.time")
gets=$(tail -n +"$((before + 1))" "$rgwlog" | grep -cE "beast: .*\"GET /$BUCKET/data/" || true)
note "restore of $((bytes / 1048576)) MiB ($packs packs) from radosgw: peak RSS $((peak / 1024)) MiB, $gets GETs of packs"
[ "$peak" -lt $((192 * 1024)) ] || fail "peak RSS of the restore is $((peak / 1024)) MiB (bound 192 MiB)"
[ "$gets" -ge 1 ] || fail "radosgw logged no GET of a pack: did the restore read the bucket?"
[ "$gets" -le $(((bytes * 100 + (1 << 30) - 1) >> 30)) ] ||
  fail "$gets GETs of packs for $((bytes / 1048576)) MiB: more than 100 per GiB"

# Small requests: radosgw (Nagle on, its default) holds a reply's body until
# its headers are acknowledged, which Linux delays by up to 40 ms in
# request/response traffic, so every small GET took ~44 ms; the HTTP client
# acknowledges each read at once (TCP_QUICKACK, core/net/http.c). Checked
# with strace on a listing of snapshots (a dozen small requests one after
# another); the time it took is only reported.
if command -v strace >/dev/null; then
  t0=$(date +%s%N)
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" ENGINE_PLUGIN_PATH="$plugdir" \
    strace -f -qq -e trace=setsockopt -o "$T/sockopt" "$bin" snapshots "$T/p.yml" \
    >"$T/s.out" 2>"$T/s.err" </dev/null || { show "$T/s.err"; fail "engine snapshots failed"; }
  quick=$(grep -c 'TCP_QUICKACK' "$T/sockopt" || true)
  note "engine snapshots under strace: $(( ($(date +%s%N) - t0) / 1000000 )) ms, $quick immediate acknowledgements"
  [ "$quick" -ge 4 ] || fail "the HTTP client did not acknowledge replies at once (TCP_QUICKACK: $quick)"
fi
note "PASS"
