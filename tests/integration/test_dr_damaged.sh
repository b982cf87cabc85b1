#!/usr/bin/env bash
# Disaster-recovery drill §4 (docs/DISASTER_RECOVERY.md, run as written
# there): the repository is damaged. An S3 sink on a real Ceph radosgw; a
# first backup, then a second that adds files in packs of their own; one of
# those packs is deleted and another corrupted with awscli. The drill's
# check names exactly the second snapshot; the first still restores
# completely; the salvaged snapshot restores every file that survived byte
# for byte and lists the lost ones; after forget and prune the repository
# checks clean and a new backup is complete again.
#
# Needs: ceph-mon ceph-osd radosgw awscli jq (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dr_lib.sh"

aws_init
ceph_start
BUCKET=engine-dr-damaged
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb failed"

src=$T/data
mkdir -p "$src/base" "$src/new"
for i in 1 2 3; do seeded_file "$src/base/b$i.bin" 1 "base$i"; done
for i in $(seq 1 30); do echo "base note $i" >"$src/base/n$i.txt"; done
cat >"$T/p.yml" <<YAML
version: 1
name: damaged
sources: [{name: files, type: files, with: {paths: [$(yq "$src")]}}]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - name: offsite
    type: s3
    with: {endpoint: $S3_EP, bucket: $BUCKET, prefix: repo, addressing: path}
repository: {pack_size: 1MiB}
YAML
packs() { awsc s3 ls "s3://$BUCKET/repo/data/" --recursive | awk '{ print $4 }' | sort; }
run_ok "$T/r1.json" "$T/r1.err" run "$T/p.yml" --json
S1=$(json_get "$T/r1.json" 'j["snapshot"]')
packs >"$T/packs1"
cp -a "$src" "$T/expected1"
for i in 1 2 3 4 5 6; do seeded_file "$src/new/x$i.bin" 1 "new$i"; done
run_ok "$T/r2.json" "$T/r2.err" run "$T/p.yml" --json
S2=$(json_get "$T/r2.json" 'j["snapshot"]')
packs >"$T/packs2"
comm -13 "$T/packs1" "$T/packs2" >"$T/packs.new"
[ "$(wc -l <"$T/packs.new")" -ge 3 ] || fail "the second run wrote $(wc -l <"$T/packs.new") pack(s); the drill needs at least 3"
# the damage: one new pack deleted, another corrupted in the middle; both
# full data packs (the two largest new ones), not the pack holding the item
# tree (small): damage there loses the whole tree, and the drill is about
# salvaging what survives. (Pack names are hashes of random-keyed content:
# taking them in name order hit the tree's pack in about one run of four.)
awsc s3 ls "s3://$BUCKET/repo/data/" --recursive | awk '{ print $3, $4 }' >"$T/sizes"
big=$(grep -Ff "$T/packs.new" "$T/sizes" | sort -rn | awk '{ print $2 }')
lost=$(echo "$big" | sed -n 1p)
bad=$(echo "$big" | sed -n 2p)
[ -n "$lost" ] && [ -n "$bad" ] || fail "no two new packs to damage"
awsc s3 rm "s3://$BUCKET/$lost" >/dev/null
awsc s3 cp "s3://$BUCKET/$bad" "$T/bad.pack" >/dev/null
printf '\xff\xff\xff\xff' | dd of="$T/bad.pack" bs=1 seek=$(($(stat -c %s "$T/bad.pack") / 2)) conv=notrunc 2>/dev/null
awsc s3 cp "$T/bad.pack" "s3://$BUCKET/$bad" >/dev/null
rm -rf "$ENGINE_CACHE_DIR"

P=$T/p.yml
RESTORE=$T/restore
drill damaged-check
assert_eq "$S2" "$(echo $DAMAGED)" "the damaged snapshots (the second only)"
# what check names is what is lost: the first snapshot restores completely
run_ok "$T/o1.out" "$T/o1.err" restore "$P" "$S1" --target "$T/restore1"
compare_trees "$T/expected1" "$(restored_path "$T/restore1" "$src")" >"$T/cmp1.txt" 2>&1 ||
  { cat "$T/cmp1.txt" >&2; fail "the undamaged snapshot does not restore completely"; }

drill damaged-repair
sed -n 's/^lost: //p' "$T/drill-damaged-repair.log" | sort >"$T/lost"
[ -s "$T/lost" ] || fail "the salvaged snapshot lists no lost item"
out=$(restored_path "$RESTORE" "$src")
n_ok=0
while read -r f; do
  item=${src#/}/$f
  if grep -qxF "$item" "$T/lost"; then
    [ ! -e "$out/$f" ] || fail "lost item $f was restored"
  else
    cmp -s "$src/$f" "$out/$f" || fail "surviving file $f does not restore byte for byte"
    n_ok=$((n_ok + 1))
  fi
done < <(cd "$src" && find . -type f -printf '%P\n')
grep -q "/new/" "$T/lost" || fail "the lost items are not the new files: $(cat "$T/lost")"
! grep -q "/base/" "$T/lost" || fail "a base file is reported lost"

drill damaged-cleanup
run_ok "$T/s.json" "$T/s.err" snapshots "$P" --json
ids=$(json_get "$T/s.json" '" ".join(s["id"] for s in j)')
case "$ids" in "$S1 $REPAIRED "*) ;; *) fail "snapshots after the cleanup: $ids" ;; esac
assert_eq 3 "$(json_get "$T/s.json" 'len(j)')" "snapshots after the cleanup (first, salvaged, new)"
assert_eq complete "$(json_get "$T/s.json" 'j[-1]["status"]')" "the new backup after the repair"
run_ok "$T/of.out" "$T/of.err" restore "$P" latest --target "$T/restore-final"
compare_trees "$src" "$(restored_path "$T/restore-final" "$src")" >"$T/cmpf.txt" 2>&1 ||
  { cat "$T/cmpf.txt" >&2; fail "the backup after the repair does not restore the source"; }
note "PASS ($(wc -l <"$T/lost") item(s) lost, $n_ok restored from the salvaged snapshot)"
