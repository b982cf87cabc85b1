#!/usr/bin/env bash
# Extended attributes (user.*, trusted.*, security.*), POSIX access and
# default ACLs, file capabilities and chattr flags survive backup + restore,
# checked with the independent readers getfattr, getfacl, getcap and lsattr
# (and compare_trees.py --xattrs --flags). Changes to them alone (ctime only)
# reach the next snapshot, unchanged files keep theirs. A target that cannot
# hold them (ramfs) and a root without CAP_SYS_ADMIN / CAP_SETFCAP /
# CAP_LINUX_IMMUTABLE get one warning per kind with the number of items, and
# the restore still succeeds. `xattrs: false, file_flags: false` stores none
# and restores none.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export LC_ALL=C

[ "$(id -u)" = 0 ] || fail "this test needs root (trusted.* attributes, capabilities, chattr +i, mounts)"
for tool in getfattr:attr setfattr:attr getfacl:acl setfacl:acl getcap:libcap2-bin \
  setcap:libcap2-bin chattr:e2fsprogs lsattr:e2fsprogs mkfs.ext4:e2fsprogs setpriv:util-linux; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || fail "${tool%%:*} is required (Debian package ${tool#*:})"
done
READER=$REPO_ROOT/tests/tools/engine_reader.py

# Everything below $B; immutable and append-only files would stop the
# scratch directory's removal, so they lose those flags first.
mounts=()
xattr_cleanup() {
  chattr -R -f -i -a "$T" 2>/dev/null || true
  local m
  for m in "${mounts[@]+"${mounts[@]}"}"; do
    chattr -R -f -i -a "$m" 2>/dev/null || true
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
trap 'rc=$?; xattr_cleanup; (exit $rc); _lib_cleanup' EXIT

# The scratch file system must hold all of it (ext4 does); otherwise a
# loop-mounted ext4 image is made.
B=$T
probe=$T/probe
if ! { : >"$probe" && setfattr -n user.p -v 1 "$probe" && setfattr -n trusted.p -v 1 "$probe" &&
  setfacl -m u:1234:r "$probe" && chattr +a "$probe" && chattr -a "$probe"; } 2>/dev/null; then
  note "$T cannot hold every kind; using an ext4 image"
  truncate -s 128M "$T/ext4.img"
  mkfs.ext4 -q -F "$T/ext4.img"
  mkdir "$T/ext4"
  mount -o loop "$T/ext4.img" "$T/ext4" || fail "unable to loop-mount an ext4 image (and $T is not ext4-like)"
  mounts+=("$T/ext4")
  B=$T/ext4
fi
rm -f "$probe"

src=$B/src
mkdir -p "$src"
note "generating the tree in $src"
echo "nothing special" >"$src/plain"

echo "user attributes" >"$src/user-text"
setfattr -n user.color -v blue "$src/user-text"
setfattr -n user.empty "$src/user-text"
setfattr -n user.bin -v 0xff00fe80 "$src/user-text"
# a value and a name list longer than the first read buffer (1 KiB)
echo "many" >"$src/many-attrs"
# (within what one ext4 block holds: 4 KiB for all of a file's attributes)
for i in $(seq 10 29); do
  setfattr -n "user.attribute-with-a-rather-long-name-to-fill-the-list-$i" -v "$i" "$src/many-attrs"
done
setfattr -n user.large -v "0x$(head -c 1500 /dev/urandom | od -An -v -tx1 | tr -d ' \n')" "$src/many-attrs"

echo "trusted" >"$src/trusted"
setfattr -n trusted.secret -v s3cr3t "$src/trusted"
echo "security" >"$src/security"
setfattr -n security.engine-test -v label "$src/security"

echo "acl" >"$src/acl-file"
setfacl -m u:1234:rw-,g:5678:r-- "$src/acl-file"
mkdir "$src/dir-default"
setfacl -m u:1234:rwx "$src/dir-default"
setfacl -d -m u:1234:r-x,g::r-x "$src/dir-default"
echo "inherits an access ACL" >"$src/dir-default/child"
mkdir "$src/dir-default/sub" # inherits the default ACL and an access ACL

# the capability is set after the owner: a restore must chown first
cp /bin/true "$src/cap"
chown 1234:5678 "$src/cap"
setcap cap_net_bind_service+ep "$src/cap"

ln -s plain "$src/link"
setfattr -h -n trusted.l -v on-the-link "$src/link"
mkfifo "$src/fifo"
setfattr -n trusted.f -v on-the-fifo "$src/fifo"
echo "hard" >"$src/hard-a"
setfattr -n user.h -v 1 "$src/hard-a"
ln "$src/hard-a" "$src/hard-b"

# flags (set last: +i and +a forbid the changes above)
echo "append" >"$src/append"
echo "immutable" >"$src/immutable"
setfattr -n user.x -v 1 "$src/immutable"
random_file "$src/big-immutable" 3 # written by the main thread, not a small-file writer
setfattr -n user.note -v big "$src/big-immutable"
echo "nodump" >"$src/nodump"
mkdir "$src/dir-flags" "$src/dir-immutable"
echo "in a nodump dir" >"$src/dir-flags/f"
echo "in an immutable dir" >"$src/dir-immutable/f"
chattr +a "$src/append"
chattr +i "$src/immutable" "$src/big-immutable" "$src/dir-immutable"
chattr +dA "$src/nodump"
chattr +d "$src/dir-flags"

# Expected per kind (items, not attributes; the hard link's second name
# carries nothing of its own)
n_user=5     # user-text many-attrs hard-a immutable big-immutable
n_trusted=3  # trusted link fifo
n_security=1 # security
n_caps=1     # cap
n_acl=4      # acl-file dir-default dir-default/child dir-default/sub
n_flags=6    # append immutable big-immutable nodump dir-flags dir-immutable
n_flags_nocap=4 # the ones with i or a

# Independent readers, run inside a tree (relative names), sorted.
readers() { # DIR OUT
  (
    cd "$1"
    getfattr -R -P -h -d -m - -e hex . 2>/dev/null | "$PYTHON" -c '
import sys
blocks = sys.stdin.read().strip().split("\n\n")
print("\n\n".join(sorted(b for b in blocks if b)))'
    echo "== getfacl"
    getfacl -R -P . 2>/dev/null
    echo "== getcap"
    getcap -r . 2>/dev/null | sort
    echo "== lsattr"
    find . \( -type f -o -type d \) -print0 | sort -z | xargs -0 lsattr -d 2>/dev/null
  ) >"$2"
}
readers "$src" "$T/readers-src.txt"
grep -q 'user.color=0x626c7565' "$T/readers-src.txt" || fail "getfattr does not show what was set (probe of the readers)"

write_pipeline "$T/p.yml" xattrs "$T/repo" "$src"
note "backup"
run_ok "$T/run1.json" "$T/run1.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run1.json" 'j["status"]')" "status of the first run"
assert_eq 0 "$(json_get "$T/run1.json" 'len(j["warnings"])')" "warnings of the first run"

note "the tree holds them (engine_reader.py ls --meta checks their form against FORMAT.md)"
"$READER" "$T/repo" --passphrase-env ENGINE_PASSPHRASE ls latest --meta >"$T/ls1.txt" ||
  fail "engine_reader.py ls --meta failed"
meta_of() { # LSFILE REL EXPR(m)
  "$PYTHON" - "$1" "${src#/}/$2" "$3" <<'EOF'
import json, sys
for line in open(sys.argv[1], encoding="utf-8", errors="surrogateescape"):
    t, size, name, meta = line.rstrip("\n").split("\t", 3)
    if name == sys.argv[2]:
        m = json.loads(meta)
        r = eval(sys.argv[3], {"m": m})
        print(r if not isinstance(r, list) else " ".join(r))
        break
else:
    print("(no such item)")
EOF
}
xnames='[x.get("name") or "?" for x in m.get("xattrs", [])]'
assert_eq "user.bin user.color user.empty" "$(meta_of "$T/ls1.txt" user-text "$xnames")" "xattrs of user-text"
assert_eq "system.posix_acl_access system.posix_acl_default" \
  "$(meta_of "$T/ls1.txt" dir-default "$xnames")" "xattrs of dir-default"
assert_eq "security.capability" "$(meta_of "$T/ls1.txt" cap "$xnames")" "xattrs of cap"
assert_eq "trusted.l" "$(meta_of "$T/ls1.txt" link "$xnames")" "xattrs of the symlink"
assert_eq "i" "$(meta_of "$T/ls1.txt" immutable 'm.get("flags")')" "flags of immutable"
assert_eq "dA" "$(meta_of "$T/ls1.txt" nodump 'm.get("flags")')" "flags of nodump"
assert_eq "i" "$(meta_of "$T/ls1.txt" dir-immutable 'm.get("flags")')" "flags of dir-immutable"
assert_eq "" "$(meta_of "$T/ls1.txt" hard-b "$xnames")" "xattrs of the hard link's second name"
assert_eq "None None" "$(meta_of "$T/ls1.txt" plain 'str(m.get("xattrs")) + " " + str(m.get("flags"))')" \
  "xattrs and flags of a plain file"
engine show "$T/p.yml" latest --json >"$T/show1.json"
assert_eq "true true" "$(json_get "$T/show1.json" \
  '" ".join(str(j["sources"][0]["marks"][k]).lower() for k in ("xattrs", "file_flags"))')" "marks"

check_restored() { # TARGET WHAT
  local restored
  restored=$(restored_path "$1" "$src")
  if ! compare_trees "$src" "$restored" --xattrs --flags >"$T/compare.txt" 2>&1; then
    cat "$T/compare.txt" >&2
    fail "$2: the restored tree differs from the source (see the DIFF lines above)"
  fi
  readers "$restored" "$T/readers-out.txt"
  if ! diff -u "$T/readers-src.txt" "$T/readers-out.txt" >"$T/readers.diff"; then
    cat "$T/readers.diff" >&2
    fail "$2: getfattr/getfacl/getcap/lsattr see a difference"
  fi
}

note "restore onto the same file system"
run_ok "$T/r1.out" "$T/r1.err" restore "$T/p.yml" latest --target "$B/out1"
assert_not_contains "$T/r1.err" "could not be set" "restore onto ext4"
check_restored "$B/out1" "first restore"

note "changes of attributes alone (ctime only) reach the next snapshot"
setfattr -n user.color -v red "$src/user-text"
setfacl -b "$src/acl-file"
chattr -d "$src/nodump"
setcap -r "$src/cap"
readers "$src" "$T/readers-src.txt"
run_ok "$T/run2.json" "$T/run2.err" run "$T/p.yml" --json
assert_eq complete "$(json_get "$T/run2.json" 'j["status"]')" "status of the second run"
# the unchanged files (their attributes taken from the parent) are reused
assert_lt 5 "$(json_get "$T/run2.json" 'j["reused_items"]')" "reused items of the second run"
run_ok "$T/r2.out" "$T/r2.err" restore "$T/p.yml" latest --target "$B/out2"
check_restored "$B/out2" "restore after the changes"
# and once more with nothing changed: taken from the parent without reading
run_ok "$T/run3.json" "$T/run3.err" run "$T/p.yml" --json
run_ok "$T/r3.out" "$T/r3.err" restore "$T/p.yml" latest --target "$B/out3"
check_restored "$B/out3" "restore of an unchanged re-run"
n_user_now=$n_user n_acl_now=$((n_acl - 1)) n_caps_now=0 n_flags_now=$n_flags

assert_warning() { # ERRFILE KIND-TEXT COUNT
  local n
  n=$(grep -cF -- "$2 could not be set" "$1" || true)
  [ "$n" = 1 ] || {
    show "$1"
    fail "expected one warning for '$2', got $n"
  }
  grep -qF -- "$2 could not be set on $3 item(s)" "$1" || {
    show "$1"
    fail "the warning for '$2' does not count $3 item(s)"
  }
}

note "restore into ramfs, which holds no extended attributes and no flags: one warning per kind"
mkdir "$T/ramfs"
mount -t ramfs none "$T/ramfs" || fail "unable to mount a ramfs"
mounts+=("$T/ramfs")
run_ok "$T/r4.out" "$T/r4.err" restore "$T/p.yml" latest --target "$T/ramfs/out"
assert_warning "$T/r4.err" "extended attributes user.*" "$n_user_now"
assert_warning "$T/r4.err" "extended attributes trusted.*" "$n_trusted"
assert_warning "$T/r4.err" "extended attributes security.* (other than capabilities)" "$n_security"
assert_warning "$T/r4.err" "POSIX ACLs (system.posix_acl_access, system.posix_acl_default)" "$n_acl_now"
assert_warning "$T/r4.err" "file flags (chattr)" "$n_flags_now"
assert_not_contains "$T/r4.err" "file capabilities" "warnings of the ramfs restore (no capability is left)"
assert_contains "$T/r4.err" "does not support them" "the reason in the ramfs warnings"
[ "$(grep -c 'could not be set' "$T/r4.err")" = 5 ] || {
  show "$T/r4.err"
  fail "expected exactly 5 warnings (one per kind) from the ramfs restore"
}
# the content and the rest of the metadata are there
compare_trees "$src" "$(restored_path "$T/ramfs/out" "$src")" >"$T/compare-ramfs.txt" 2>&1 || {
  cat "$T/compare-ramfs.txt" >&2
  fail "the ramfs restore differs beyond extended attributes and flags"
}

note "restore as root without CAP_SYS_ADMIN, CAP_SETFCAP, CAP_LINUX_IMMUTABLE"
setcap cap_net_bind_service+ep "$src/cap"
run_ok "$T/run5.json" "$T/run5.err" run "$T/p.yml" --json
RC=0
ENGINE_PLUGIN_PATH="$ENGINE_PLUGIN_DIR" setpriv --bounding-set -sys_admin,-setfcap,-linux_immutable \
  --inh-caps -all "$ENGINE_BIN" restore "$T/p.yml" latest --target "$B/out5" \
  >"$T/r5.out" 2>"$T/r5.err" </dev/null || RC=$?
assert_eq 0 "$RC" "exit status of the restore without capabilities"
assert_warning "$T/r5.err" "extended attributes trusted.*" "$n_trusted"
assert_warning "$T/r5.err" "extended attributes security.* (other than capabilities)" "$n_security"
assert_warning "$T/r5.err" "file capabilities (security.capability)" 1
assert_warning "$T/r5.err" "file flags (chattr)" "$n_flags_nocap"
assert_contains "$T/r5.err" "Operation not permitted" "the reason in the warnings without capabilities"
assert_contains "$T/r5.err" "needs CAP_SETFCAP" "the hint in the capability warning"
assert_not_contains "$T/r5.err" "extended attributes user.*" "warnings without capabilities"
assert_not_contains "$T/r5.err" "POSIX ACLs" "warnings without capabilities"
r5=$(restored_path "$B/out5" "$src")
[ "$(getfattr --absolute-names --only-values -n user.color "$r5/user-text")" = red ] || fail "user.* not restored without capabilities"
getfacl -p "$r5/dir-default" | grep -q '^default:user:1234:r-x' || fail "default ACL not restored without capabilities"
[ "$(lsattr -d "$r5/nodump" | cut -c1-22 | tr -d -- '-e')" = A ] || fail "flag A not restored without capabilities"

note "xattrs: false, file_flags: false stores none and restores none"
write_pipeline "$T/off.yml" xattrs-off "$T/repo-off" "$src"
"$PYTHON" - "$T/off.yml" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read().replace("    with:\n      paths:", "    with:\n      xattrs: false\n      file_flags: false\n      paths:", 1)
open(p, "w").write(s)
EOF
run_ok "$T/run6.json" "$T/run6.err" run "$T/off.yml" --json
assert_eq complete "$(json_get "$T/run6.json" 'j["status"]')" "status with xattrs: false"
"$READER" "$T/repo-off" --passphrase-env ENGINE_PASSPHRASE ls latest --meta >"$T/ls6.txt"
! grep -qE '"(xattrs|flags)":' "$T/ls6.txt" || fail "xattrs: false stored extended attributes or flags: $(grep -E '"(xattrs|flags)":' "$T/ls6.txt" | head -3)"
engine show "$T/off.yml" latest --json >"$T/show6.json"
assert_eq "false false" "$(json_get "$T/show6.json" \
  '" ".join(str(j["sources"][0]["marks"][k]).lower() for k in ("xattrs", "file_flags"))')" "marks with xattrs: false"
# the repository that has them, restored by a pipeline that says false
sed -e "s|repo-off|repo|" "$T/off.yml" >"$T/off-main.yml"
sed -i -e "s|name: xattrs-off|name: xattrs|" "$T/off-main.yml"
for p in off off-main; do
  run_ok "$T/r-$p.out" "$T/r-$p.err" restore "$T/$p.yml" latest --target "$B/out-$p"
  assert_not_contains "$T/r-$p.err" "could not be set" "restore with xattrs: false ($p)"
  r=$(restored_path "$B/out-$p" "$src")
  [ -z "$(getfattr -R -P -h -d -m - "$r" 2>/dev/null)" ] || fail "xattrs: false restored extended attributes ($p)"
  [ -z "$(getcap -r "$r" 2>/dev/null)" ] || fail "xattrs: false restored capabilities ($p)"
  flagged=$(find "$r" \( -type f -o -type d \) -print0 | xargs -0 lsattr -d | cut -c1-22 | tr -d -- '-e\n')
  [ -z "$flagged" ] || fail "file_flags: false restored flags ($p): $flagged"
done

note "a run with xattrs: false between two with true: the next run reads them again"
run_ok "$T/run7.json" "$T/run7.err" run "$T/off-main.yml" --json
"$READER" "$T/repo" --passphrase-env ENGINE_PASSPHRASE ls latest --meta >"$T/ls7.txt"
! grep -qE '"(xattrs|flags)":' "$T/ls7.txt" || fail "a run with xattrs: false kept the parent's attributes"
run_ok "$T/run8.json" "$T/run8.err" run "$T/p.yml" --json
assert_lt 5 "$(json_get "$T/run8.json" 'j["reused_items"]')" "reused items after the run with xattrs: false"
readers "$src" "$T/readers-src.txt"
run_ok "$T/r8.out" "$T/r8.err" restore "$T/p.yml" latest --target "$B/out8"
check_restored "$B/out8" "restore after a run with xattrs: false"

note "PASS"
