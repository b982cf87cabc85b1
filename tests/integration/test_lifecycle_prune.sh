#!/usr/bin/env bash
# forget + prune free the space of removed snapshots and nothing else:
#  1. four daily snapshots (--time) of a tree whose big files are replaced
#     between runs; `prune --dry-run` changes nothing in the repository;
#     `forget --prune` with keep_last 2 and a repack threshold of 0.9 deletes
#     the fully unused pack, then `prune --repack-threshold 0.5` repacks the
#     mostly unused one; data/ shrinks by about the removed data each time,
#     the kept snapshots pass `check --read-data` and restore byte for byte;
#  2. a prune of a larger repository killed with SIGKILL at several moments
#     leaves a repository that passes `check --read-data`, and a re-run of
#     prune succeeds and finishes the job.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MIB=$((1024 * 1024))

# Bytes of the objects under REPO/data (files being written by a killed
# process, named *.tmp-*, are not objects).
data_bytes() {
  find "$1/data" -type f ! -name '*.tmp-*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
}

# The arguments sorted (as Python sorts them), on one line.
sorted_words() {
  printf '%s\n' "$@" | LC_ALL=C sort | paste -sd ' '
}

# The repository's files and directories (name, type, size, mtime, mode),
# without locks/: lock objects come and go with every command.
repo_listing() {
  listing "$1" | grep -vE '^locks( |/)' || true
}

# ---- 1. forget, prune, repack --------------------------------------------
src=$T/src
mkdir -p "$src/base"
random_file "$src/base/one" 2
random_file "$src/base/two" 2
echo "day 1" >"$src/notes.txt"
random_file "$src/t1" 6
write_pipeline "$T/p.yml" prunetest "$T/repo" "$src"
echo "retention: {keep_last: 2}" >>"$T/p.yml"

run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json --time 2021-03-01T10:00:00Z
rm "$src/t1"
random_file "$src/t2" 6
echo "day 2" >"$src/notes.txt"
run_ok "$T/run2.json" "$T/run2.err" run "$T/p.yml" --json --time 2021-03-02T10:00:00Z
rm "$src/t2"
random_file "$src/t3" 6
echo "day 3" >"$src/notes.txt"
run_ok "$T/run3.json" "$T/run3.err" run "$T/p.yml" --json --time 2021-03-03T10:00:00Z
cp -a "$src" "$T/expected3"
echo "day 4" >"$src/notes.txt"
run_ok "$T/run4.json" "$T/run4.err" run "$T/p.yml" --json --time 2021-03-04T10:00:00Z
cp -a "$src" "$T/expected4"
snap=()
for n in 1 2 3 4; do
  assert_eq complete "$(json_get "$T/run$n.json" 'j["status"]')" "status of run $n"
  snap[$n]=$(json_get "$T/run$n.json" 'j["snapshot"]')
done

before=$(data_bytes "$T/repo")
note "4 snapshots, $before bytes in data/"
# t1, t2, t3 are 6 MiB each, base 4 MiB: nothing is shared but base
[ "$before" -ge $((22 * MIB)) ] || fail "data/ holds $before bytes after four runs, expected at least 22 MiB"

# prune --dry-run: predicts, writes and deletes nothing
repo_listing "$T/repo" >"$T/listing.before"
run_ok "$T/dry.json" "$T/dry.err" prune "$T/p.yml" --dry-run --json
repo_listing "$T/repo" >"$T/listing.after"
if ! diff -u "$T/listing.before" "$T/listing.after" >"$T/listing.diff"; then
  cat "$T/listing.diff" >&2
  fail "prune --dry-run changed the repository"
fi
assert_eq true "$(json_get "$T/dry.json" 'j["dry_run"]')" "dry_run in the prune --dry-run report"
# nothing was forgotten yet: every pack is in use
assert_eq 0 "$(json_get "$T/dry.json" 'j["packs_deleted"]')" "packs_deleted of a dry run before forget"

# forget the two oldest snapshots and prune: run 2's pack (t2 and a tree)
# is unused and deleted, run 1's (base, t1) is ~60% unused and repacked
run_ok "$T/forget.json" "$T/forget.err" forget "$T/p.yml" --prune --repack-threshold 0.5 --json
assert_eq 2 "$(json_get "$T/forget.json" 'j["removed"]')" "snapshots removed by forget (keep_last 2 of 4)"
kept=$(json_get "$T/forget.json" '" ".join(sorted(s["id"] for g in j["groups"] for s in g["keep"]))')
assert_eq "$(sorted_words "${snap[3]}" "${snap[4]}")" "$kept" "snapshots kept by keep_last 2"
removed=$(json_get "$T/forget.json" '" ".join(sorted(s["id"] for g in j["groups"] for s in g["remove"]))')
assert_eq "$(sorted_words "${snap[1]}" "${snap[2]}")" "$removed" "snapshots removed by keep_last 2"
pd=$(json_get "$T/forget.json" 'j["prune"]["packs_deleted"]')
pr=$(json_get "$T/forget.json" 'j["prune"]["packs_repacked"]')
pw=$(json_get "$T/forget.json" 'j["prune"]["packs_written"]')
[ "$pd" -ge 1 ] || { show "$T/forget.json"; fail "forget --prune deleted no pack (the pack of run 2 is unused)"; }
[ "$pr" -ge 1 ] || { show "$T/forget.json"; fail "forget --prune --repack-threshold 0.5 repacked no pack (run 1's pack is ~60% unused)"; }
[ "$pw" -ge 1 ] || { show "$T/forget.json"; fail "prune repacked $pr pack(s) but wrote no new pack"; }
after=$(data_bytes "$T/repo")
freed=$((before - after))
note "forget --prune: $pd pack(s) deleted, $pr repacked into $pw; $freed bytes freed, data/ now $after bytes"
# the removed data: t1 and t2, 12 MiB (random, stored as is), plus trees
[ "$freed" -ge $((12 * MIB - 64 * 1024)) ] && [ "$freed" -le $((12 * MIB + 256 * 1024)) ] ||
  fail "forget --prune freed $freed bytes, expected about the 12 MiB of t1 and t2"
# what stays: base (4 MiB) + t3 (6 MiB) + notes and trees
[ "$after" -ge $((10 * MIB)) ] && [ "$after" -le $((10 * MIB + 512 * 1024)) ] ||
  fail "data/ holds $after bytes after prune, expected about the 10 MiB still referenced"
[ "$(json_get "$T/forget.json" 'j["prune"]["bytes_after"]')" -eq "$after" ] ||
  fail "prune reports bytes_after $(json_get "$T/forget.json" 'j["prune"]["bytes_after"]'), data/ holds $after"

run_ok "$T/snaps.json" "$T/snaps.err" snapshots "$T/p.yml" --json
assert_eq "$(sorted_words "${snap[3]}" "${snap[4]}")" \
  "$(json_get "$T/snaps.json" '" ".join(sorted(s["id"] for s in j))')" "snapshots left after forget + prune"
run_engine "$T/check.out" "$T/check.err" check "$T/p.yml" --read-data
assert_rc 0 "check --read-data after prune" "$T/check.out" "$T/check.err"
for n in 3 4; do
  run_ok "$T/r.out" "$T/r.err" restore "$T/p.yml" "${snap[$n]}" --target "$T/out$n"
  compare_trees "$T/expected$n" "$(restored_path "$T/out$n" "$src")" >"$T/cmp.txt" 2>&1 ||
    { cat "$T/cmp.txt" >&2; fail "snapshot $n does not restore byte for byte after prune"; }
done
# a second prune has nothing left to do
run_ok "$T/again.json" "$T/again.err" prune "$T/p.yml" --json
assert_eq 0 "$(json_get "$T/again.json" 'j["packs_deleted"] + j["packs_repacked"]')" "packs deleted or repacked by a second prune"

# ---- 2. prune killed with SIGKILL --------------------------------------------
# 120 MiB of interleaved kept and dropped files: after forget every pack is
# about 2/3 unused, so prune reads, verifies and rewrites ~40 MiB, writes a
# new index and deletes the old index objects and ~120 MiB of packs.
ksrc=$T/ksrc
mkdir -p "$ksrc"
for i in $(seq -w 1 40); do
  random_file "$ksrc/f$i-a-keep" 1
  random_file "$ksrc/f$i-b-drop" 2
done
write_pipeline "$T/k.yml" prunekill "$T/krepo" "$ksrc"
{
  echo "retention: {keep_last: 1}"
  echo "repository: {pack_size: 4MiB}" # many packs: a longer prune, more moments to kill it
} >>"$T/k.yml"
run_ok "$T/k1.json" "$T/k1.err" run "$T/k.yml" --json --time 2021-04-01T00:00:00Z
rm "$ksrc"/*-drop
run_ok "$T/k2.json" "$T/k2.err" run "$T/k.yml" --json --time 2021-04-02T00:00:00Z
ksnap=$(json_get "$T/k2.json" 'j["snapshot"]')
run_ok "$T/kf.json" "$T/kf.err" forget "$T/k.yml" --json
assert_eq 1 "$(json_get "$T/kf.json" 'j["removed"]')" "snapshots removed by forget in the kill repository"
cp -a "$T/krepo" "$T/krepo.template"
kbefore=$(data_bytes "$T/krepo")

# how long an undisturbed prune takes, to spread the kills over it
t0=$(date +%s%N)
run_ok "$T/kp.json" "$T/kp.err" prune "$T/k.yml" --json
t1=$(date +%s%N)
full_ms=$(((t1 - t0) / 1000000))
[ "$(json_get "$T/kp.json" 'j["packs_repacked"]')" -ge 16 ] ||
  { show "$T/kp.json"; fail "the reference prune repacked fewer than 16 packs; the kill test would prove little"; }
kafter=$(data_bytes "$T/krepo")
note "undisturbed prune: ${full_ms} ms, data/ $kbefore -> $kafter bytes"
[ "$kafter" -le $((kbefore / 2)) ] || fail "the reference prune left $kafter of $kbefore bytes, expected about a third"

interrupted=0
# (a prune that ends before its kill shortens the reference for the next
# ones: the reference run may have been slowed by a busy machine)
for pct in 10 25 40 60 80; do
  rm -rf "$T/krepo"
  cp -a "$T/krepo.template" "$T/krepo"
  delay_ms=$((full_ms * pct / 100))
  delay=$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))
  ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" "$ENGINE_BIN" prune "$T/k.yml" --json \
    >"$T/killed.out" 2>"$T/killed.err" </dev/null &
  pid=$!
  sleep "$delay"
  if kill -KILL "$pid" 2>/dev/null; then
    { wait "$pid"; } 2>/dev/null || true
    interrupted=$((interrupted + 1))
    state="$(find "$T/krepo/data" -type f ! -name '*.tmp-*' | wc -l) packs, $(find "$T/krepo/index" -type f | wc -l) index object(s), $(find "$T/krepo" -name '*.tmp-*' | wc -l) temporary file(s)"
    note "prune killed after ${delay}s ($pct%): $state"
  else
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || { show "$T/killed.out" "$T/killed.err"; fail "the prune meant to be killed after ${delay}s failed on its own with $rc"; }
    note "prune finished before the kill after ${delay}s"
    full_ms=$((full_ms * 2 / 3))
  fi
  run_engine "$T/check.out" "$T/check.err" check "$T/k.yml" --read-data
  assert_rc 0 "check --read-data after a prune killed after ${delay}s" "$T/check.out" "$T/check.err"
  run_engine "$T/rp.json" "$T/rp.err" prune "$T/k.yml" --json
  assert_rc 0 "re-running prune after a prune killed after ${delay}s" "$T/rp.json" "$T/rp.err"
  run_ok "$T/rd.json" "$T/rd.err" prune "$T/k.yml" --dry-run --json
  assert_eq 0 "$(json_get "$T/rd.json" 'j["packs_deleted"] + j["packs_repacked"]')" \
    "packs a dry run would still delete or repack after the re-run prune (kill after ${delay}s)"
  now=$(data_bytes "$T/krepo")
  [ "$now" -le $((kafter + kafter / 20)) ] ||
    fail "after the kill at ${delay}s and a re-run, data/ holds $now bytes, an undisturbed prune left $kafter"
  rm -rf "$T/kout"
  run_ok "$T/kr.out" "$T/kr.err" restore "$T/k.yml" "$ksnap" --target "$T/kout"
  compare_trees "$ksrc" "$(restored_path "$T/kout" "$ksrc")" >"$T/cmp.txt" 2>&1 ||
    { cat "$T/cmp.txt" >&2; fail "the kept snapshot does not restore byte for byte after the kill at ${delay}s"; }
done
[ "$interrupted" -ge 3 ] || fail "only $interrupted of 5 prunes were interrupted by the kill; the test proved little"

# ---- 3. a pack kept by one prune stays reclaimable by the next -------------
# A prune with a high threshold keeps run 1's pack (base and the forgotten
# t1, ~60% unused); a later prune with a lower threshold must still see that
# pack's unused bytes and repack it.
rsrc=$T/rsrc
mkdir -p "$rsrc"
random_file "$rsrc/base" 4
random_file "$rsrc/t1" 6
write_pipeline "$T/r.yml" prunerepack "$T/rrepo" "$rsrc"
echo "retention: {keep_last: 1}" >>"$T/r.yml"
run_ok "$T/rr1.json" "$T/rr1.err" run "$T/r.yml" --json --time 2021-05-01T00:00:00Z
rm "$rsrc/t1"
run_ok "$T/rr2.json" "$T/rr2.err" run "$T/r.yml" --json --time 2021-05-02T00:00:00Z
rsnap=$(json_get "$T/rr2.json" 'j["snapshot"]')
run_ok "$T/rf.json" "$T/rf.err" forget "$T/r.yml" --json
assert_eq 1 "$(json_get "$T/rf.json" 'j["removed"]')" "snapshots removed by forget (keep_last 1 of 2)"
rbefore=$(data_bytes "$T/rrepo")
run_ok "$T/rp1.json" "$T/rp1.err" prune "$T/r.yml" --repack-threshold 0.9 --json
assert_eq 0 "$(json_get "$T/rp1.json" 'j["packs_repacked"]')" "packs repacked with --repack-threshold 0.9 (run 1's pack is ~60% unused)"
run_ok "$T/rp2.json" "$T/rp2.err" prune "$T/r.yml" --repack-threshold 0.5 --dry-run --json
if [ "$(json_get "$T/rp2.json" 'j["packs_repacked"]')" -lt 1 ]; then
  show "$T/rp1.json" "$T/rp2.json"
  fail "after a prune with --repack-threshold 0.9 kept run 1's pack, 'prune --repack-threshold 0.5 --dry-run' no longer sees its ~60% unused bytes (t1, 6 MiB) and would repack nothing: that space could never be reclaimed"
fi
run_ok "$T/rp3.json" "$T/rp3.err" prune "$T/r.yml" --repack-threshold 0.5 --json
[ "$(json_get "$T/rp3.json" 'j["packs_repacked"]')" -ge 1 ] ||
  { show "$T/rp3.json"; fail "prune --repack-threshold 0.5 repacked nothing"; }
rafter=$(data_bytes "$T/rrepo")
rfreed=$((rbefore - rafter))
[ "$rfreed" -ge $((6 * MIB - 64 * 1024)) ] && [ "$rfreed" -le $((6 * MIB + 256 * 1024)) ] ||
  fail "the two prunes freed $rfreed bytes, expected about the 6 MiB of t1"
run_engine "$T/check.out" "$T/check.err" check "$T/r.yml" --read-data
assert_rc 0 "check --read-data after the repack" "$T/check.out" "$T/check.err"
run_ok "$T/rr.out" "$T/rr.err" restore "$T/r.yml" "$rsnap" --target "$T/rout"
compare_trees "$rsrc" "$(restored_path "$T/rout" "$rsrc")" >"$T/cmp.txt" 2>&1 ||
  { cat "$T/cmp.txt" >&2; fail "the kept snapshot does not restore byte for byte after the repack"; }
note "PASS"
