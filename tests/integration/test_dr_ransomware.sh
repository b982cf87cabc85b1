#!/usr/bin/env bash
# Disaster-recovery drill §3 (docs/DISASTER_RECOVERY.md, run as written
# there): ransomware. Daily backups of a document tree to an S3 sink on a
# real Ceph radosgw; on day 4 every file is encrypted and renamed *.locked
# next to a ransom note, and days 4 and 5 back that up. The drill checks the
# repository, finds the last clean snapshot (the ransom extension and the
# jump in new data agree: day 3), and restores it onto a new directory,
# byte for byte the tree of day 3.
#
# Needs: ceph-mon ceph-osd radosgw awscli jq (Debian packages).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dr_lib.sh"

aws_init
ceph_start
BUCKET=engine-dr-ransom
awsc s3 mb "s3://$BUCKET" >/dev/null || fail "aws s3 mb failed"

src=$T/share
mkdir -p "$src/contracts" "$src/photos"
for i in $(seq 1 60); do echo "contract $i: $(seq 1 $((i * 5)))" >"$src/contracts/c$i.txt"; done
for i in 1 2 3 4; do seeded_file "$src/photos/p$i.jpg" 1 "photo$i"; done
cat >"$T/p.yml" <<YAML
version: 1
name: share
sources: [{name: files, type: files, with: {paths: [$(yq "$src")]}}]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:ENGINE_PASSPHRASE'}
sinks:
  - name: offsite
    type: s3
    with: {endpoint: $S3_EP, bucket: $BUCKET, prefix: share, addressing: path}
YAML
declare -A SNAPS
for day in 1 2 3; do
  echo "edit on day $day" >>"$src/contracts/c$day.txt"
  run_ok "$T/d$day.json" "$T/d$day.err" run "$T/p.yml" --json --time "2026-05-0${day}T02:00:00Z"
  SNAPS[$day]=$(json_get "$T/d$day.json" 'j["snapshot"]')
done
cp -a "$src" "$T/day3"

# day 4: every file encrypted in place and renamed, a note left behind
openssl rand -hex 32 >"$T/attacker.key"
find "$src" -type f | while read -r f; do
  openssl enc -aes-256-cbc -pbkdf2 -pass "file:$T/attacker.key" -in "$f" -out "$f.locked" && rm "$f"
done
echo "your files are encrypted; pay to get them back" >"$src/README-RESTORE-FILES.txt"
for day in 4 5; do
  run_ok "$T/d$day.json" "$T/d$day.err" run "$T/p.yml" --json --time "2026-05-0${day}T02:00:00Z"
  SNAPS[$day]=$(json_get "$T/d$day.json" 'j["snapshot"]')
done

P=$T/p.yml
RESTORE=$T/clean-storage
drill ransom-check
drill ransom-find
assert_eq "${SNAPS[3]}" "$SNAP" "the drill picks day 3's snapshot, the last before the infection"
assert_eq "2026-05-04T02:00:00Z" "$FIRST_BAD" "the first infected snapshot is day 4's"
# both signs: the extension in days 4 and 5 only, and the jump in new data
run_ok "$T/inf.json" "$T/inf.err" snapshots "$P" --contains "files/*.locked" --json
assert_eq "${SNAPS[4]} ${SNAPS[5]}" "$(json_get "$T/inf.json" '" ".join(s["id"] for s in j)')" "snapshots holding *.locked"
grep -q "${SNAPS[4]:0:8} new bytes: " "$T/drill-ransom-find.log" || fail "the drill's audit listing has no line for day 4's run"
new3=$(json_get "$T/d3.json" 'j["new_bytes"]')
new4=$(sed -n "s/.*${SNAPS[4]:0:8} new bytes: \([0-9]*\)$/\1/p" "$T/drill-ransom-find.log")
[ "$new4" -gt $((20 * new3)) ] || fail "day 4's run stored $new4 new bytes, day 3's $new3: the jump is not visible"
drill ransom-restore
compare_trees "$T/day3" "$(restored_path "$RESTORE" "$src")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the restore onto clean storage differs from the files of day 3"; }
[ -z "$(find "$RESTORE" -name '*.locked' -o -name 'README-RESTORE*')" ] || fail "infected files in the restore"
note "PASS (new bytes: day 3 $new3, day 4 $new4)"
