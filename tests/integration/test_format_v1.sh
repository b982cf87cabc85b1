#!/usr/bin/env bash
# Repositories of format version 1 stay usable: tests/fixtures/repo-v1/repo
# was written by the engine of commit 8eeb7b5 (the last release of format 1)
# with the source tree as it was at two times (snap1/, snap2/ beside it;
# tests/fixtures/repo-v1/README.md says how). This engine must open it,
# list and restore both snapshots byte for byte, pass check --read-data,
# be read by the independent reader (tests/tools/engine_reader.py), back up
# into it and restore that new snapshot, and leave it at version 1 (a v1
# repository is never converted behind the user's back).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FIX=$(cd "$(dirname "$0")/../fixtures/repo-v1" && pwd)
export V1_PASS=v1-fixture-passphrase
repo=$T/repo
cp -r "$FIX/repo" "$repo"
mkdir -p "$repo/locks" # git keeps no empty directories
# the snapshots' item names start with this (the path the fixture was made at)
ORIG=tmp/engine-v1-fixture/src

cat >"$T/v1.yml" <<EOF
version: 1
name: v1fixture
sources:
  - name: files
    type: files
    with:
      paths: [$(yq "$T/src")]
stages:
  compress: {algorithm: zstd, level: 3}
  encrypt: {algorithm: aes-256-gcm, passphrase: 'env:V1_PASS'}
sinks:
  - name: local
    type: local
    with:
      path: $(yq "$repo")
EOF

# same_tree EXPECTED RESTORED WHAT: contents, symlinks and the empty
# directory (git keeps neither mtimes nor empty directories, so not
# compare_trees)
same_tree() {
  mkdir -p "$1/empty-dir"
  diff -r --no-dereference "$1" "$2" >"$T/diff.txt" 2>&1 || {
    cat "$T/diff.txt" >&2
    fail "$3: the restored tree differs from the fixture's"
  }
  [ -L "$2/link-to-hello" ] && [ "$(readlink "$2/link-to-hello")" = hello.txt ] ||
    fail "$3: link-to-hello is not restored as a symlink to hello.txt"
  [ -d "$2/empty-dir" ] || fail "$3: empty-dir is not restored"
}

run_ok "$T/snaps.json" "$T/snaps.err" snapshots "$T/v1.yml" --json
assert_eq 2 "$(json_get "$T/snaps.json" 'len(j)')" "snapshots of the v1 fixture"
s1=$(json_get "$T/snaps.json" 'j[0]["id"]')
s2=$(json_get "$T/snaps.json" 'j[1]["id"]')
assert_eq 7e20953a "${s1:0:8}" "the first snapshot of the fixture"

cp -r "$FIX/snap1" "$T/exp1"
cp -r "$FIX/snap2" "$T/exp2"
run_ok "$T/r1.out" "$T/r1.err" restore "$T/v1.yml" "$s1" --target "$T/out1"
same_tree "$T/exp1" "$T/out1/$ORIG" "restore of the first v1 snapshot"
run_ok "$T/r2.out" "$T/r2.err" restore "$T/v1.yml" "$s2" --target "$T/out2"
same_tree "$T/exp2" "$T/out2/$ORIG" "restore of the second v1 snapshot"

run_ok "$T/check.out" "$T/check.err" check "$T/v1.yml" --read-data
"${ENGINE_READER_PYTHON:-/usr/bin/python3}" "$TESTS_INTEGRATION_DIR/../tools/engine_reader.py" "$repo" --passphrase-env V1_PASS \
  verify >"$T/verify.out" 2>&1 || { cat "$T/verify.out" >&2; fail "the independent reader rejects the v1 fixture"; }

# a backup into the v1 repository, deduplicated against the fixture's data
cp -r "$FIX/snap2" "$T/src"
mkdir -p "$T/src/empty-dir"
printf 'written by this engine\n' >"$T/src/new.txt"
run_ok "$T/run.json" "$T/run.err" run "$T/v1.yml" --json
s3=$(json_get "$T/run.json" 'j["snapshot"]')
new=$(json_get "$T/run.json" 'j["new_chunks"]')
[ "$new" -le 2 ] || fail "the backup into the v1 repository stored $new new chunks; expected only new.txt's (and the tree's)"
run_ok "$T/r3.out" "$T/r3.err" restore "$T/v1.yml" "$s3" --target "$T/out3"
cp -r "$T/src" "$T/exp3"
same_tree "$T/exp3" "$(restored_path "$T/out3" "$T/src")" "restore of a snapshot written into the v1 repository"
assert_eq 1 "$(json_get "$repo/config" 'j["version"]')" "the repository's format version after a backup"
run_ok "$T/check2.out" "$T/check2.err" check "$T/v1.yml" --read-data
note "v1 fixture: 2 snapshots restored, a third backed up (new chunks: $new) and restored; still version 1"
