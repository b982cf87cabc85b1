#!/usr/bin/env python3
"""Compare a source tree with its restored copy, byte for byte and metadata.

    compare_trees.py SRC DST [--mtime-resolution ns|s] [--sparse REL]...
                             [--no-owner] [--no-root-meta] [--xattrs] [--flags]

Both trees are walked with os.lstat (names as bytes, so any byte sequence is
handled). For every entry it compares: presence, file type, permission bits
(including setuid/setgid/sticky), uid, gid, mtime (to the nanosecond or the
second), size and content of regular files, symlink targets, fifo-ness, and
hardlink identity (names that share an inode in SRC must share one in DST,
and names that do not must not). --sparse REL additionally requires DST/REL
to occupy far fewer blocks than its size. --xattrs also compares every
extended attribute (names and values, symlinks included: ACLs and
capabilities are among them); --flags the inode flags (chattr) of regular
files and directories that a restore can set (docs/FORMAT.md section 11).
Every difference is printed; the exit status is 1 if there was any, 0
otherwise.
"""
import argparse
import array
import fcntl
import os
import stat
import sys

CHUNK = 1 << 20


def show(rel):
    return repr(rel)[1:] if rel else "'.' (the root)"


def walk(root):
    """Relative names (bytes) of every entry below root, root itself as b''."""
    out = [b""]
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = b"" if rel_dir == b"." else rel_dir
        for n in dirnames + filenames:
            out.append(os.path.join(rel_dir, n) if rel_dir else n)
    return sorted(out)


def type_name(mode):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "chardev"),
                       (stat.S_ISBLK, "blockdev")):
        if test(mode):
            return name
    return "unknown"


# chattr letters and bits (linux/fs.h) of the flags the files source keeps
KEPT_FLAGS = (("s", 0x1), ("u", 0x2), ("S", 0x8), ("D", 0x10000), ("i", 0x10), ("a", 0x20),
              ("d", 0x40), ("A", 0x80), ("c", 0x4), ("j", 0x4000), ("t", 0x8000), ("T", 0x20000),
              ("C", 0x800000), ("P", 0x20000000))
FS_IOC_GETFLAGS = 0x80086601


def xattrs_of(path):
    """{name: value} of every extended attribute, not following a symlink."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (95, 61):  # EOPNOTSUPP, ENODATA
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


def flags_of(path):
    """The kept chattr letters of a regular file or directory ('' when none)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
        except OSError as e:
            if e.errno in (25, 95):  # ENOTTY, EOPNOTSUPP: no flags on this file system
                return ""
            raise
        return "".join(letter for letter, bit in KEPT_FLAGS if buf[0] & bit)
    finally:
        os.close(fd)


def same_content(a, b):
    """None when equal, else a description of the first difference."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        off = 0
        while True:
            ca = fa.read(CHUNK)
            cb = fb.read(CHUNK)
            if ca != cb:
                n = min(len(ca), len(cb))
                i = next((k for k in range(n) if ca[k] != cb[k]), n)
                return "content differs at byte offset %d" % (off + i)
            if not ca:
                return None
            off += len(ca)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--mtime-resolution", choices=("ns", "s"), default="ns")
    ap.add_argument("--sparse", action="append", default=[],
                    help="relative name that must still be sparse in DST")
    ap.add_argument("--no-owner", action="store_true", help="do not compare uid/gid")
    ap.add_argument("--no-root-meta", action="store_true",
                    help="do not compare the metadata of the roots themselves")
    ap.add_argument("--xattrs", action="store_true",
                    help="compare extended attributes (ACLs and capabilities among them)")
    ap.add_argument("--flags", action="store_true",
                    help="compare the inode flags (chattr) of files and directories")
    args = ap.parse_args()
    src = os.fsencode(args.src)
    dst = os.fsencode(args.dst)
    diffs = []

    def diff(rel, msg):
        diffs.append("%s: %s" % (show(rel), msg))

    for root, what in ((src, "SRC"), (dst, "DST")):
        if not os.path.isdir(root):
            print("compare_trees: %s %r is not a directory" % (what, root), file=sys.stderr)
            return 1

    src_names = walk(src)
    dst_names = walk(dst)
    dst_set = set(dst_names)
    src_set = set(src_names)
    for rel in src_names:
        if rel not in dst_set:
            diff(rel, "missing in the restored tree")
    for rel in dst_names:
        if rel not in src_set:
            diff(rel, "present in the restored tree only")

    src_inodes = {}  # (dev, ino) in SRC -> first name
    dst_inode_of = {}  # name -> (dev, ino) in DST
    checked = 0
    for rel in src_names:
        if rel not in dst_set:
            continue
        a = os.path.join(src, rel) if rel else src
        b = os.path.join(dst, rel) if rel else dst
        sa = os.lstat(a)
        sb = os.lstat(b)
        checked += 1
        ta, tb = type_name(sa.st_mode), type_name(sb.st_mode)
        if ta != tb:
            diff(rel, "type %s, restored as %s" % (ta, tb))
            continue
        meta = bool(rel) or not args.no_root_meta
        if meta and ta != "symlink" and stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
            diff(rel, "mode %04o, restored as %04o" % (stat.S_IMODE(sa.st_mode), stat.S_IMODE(sb.st_mode)))
        if meta and not args.no_owner and (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
            diff(rel, "owner %d:%d, restored as %d:%d" % (sa.st_uid, sa.st_gid, sb.st_uid, sb.st_gid))
        if meta:
            if args.mtime_resolution == "ns":
                ma, mb = sa.st_mtime_ns, sb.st_mtime_ns
            else:
                ma, mb = sa.st_mtime_ns // 10**9, sb.st_mtime_ns // 10**9
            if ma != mb:
                diff(rel, "mtime %d, restored as %d (%s)" % (ma, mb, args.mtime_resolution))
        if meta and args.xattrs:
            xa, xb = xattrs_of(a), xattrs_of(b)
            for n in sorted(set(xa) | set(xb)):
                if n not in xb:
                    diff(rel, "extended attribute %s missing in the restored tree" % n)
                elif n not in xa:
                    diff(rel, "extended attribute %s present in the restored tree only" % n)
                elif xa[n] != xb[n]:
                    diff(rel, "extended attribute %s is %r, restored as %r" % (n, xa[n], xb[n]))
        if meta and args.flags and ta in ("file", "dir"):
            fa, fb = flags_of(a), flags_of(b)
            if fa != fb:
                diff(rel, "flags '%s', restored as '%s'" % (fa, fb))
        if ta == "symlink":
            la, lb = os.readlink(a), os.readlink(b)
            if la != lb:
                diff(rel, "symlink target %r, restored as %r" % (la, lb))
        elif ta == "file":
            if sa.st_size != sb.st_size:
                diff(rel, "size %d, restored as %d" % (sa.st_size, sb.st_size))
            else:
                why = same_content(a, b)
                if why:
                    diff(rel, why)
            if sa.st_nlink > 1 or sb.st_nlink > 1:
                src_inodes.setdefault((sa.st_dev, sa.st_ino), []).append(rel)
                dst_inode_of[rel] = (sb.st_dev, sb.st_ino)
        elif ta in ("chardev", "blockdev") and sa.st_rdev != sb.st_rdev:
            diff(rel, "device %d, restored as %d" % (sa.st_rdev, sb.st_rdev))

    # Hardlinks: the partition of names into inodes must be the same.
    src_groups = sorted(sorted(g) for g in src_inodes.values())
    dst_by_inode = {}
    for rel, key in dst_inode_of.items():
        dst_by_inode.setdefault(key, []).append(rel)
    dst_groups = sorted(sorted(g) for g in dst_by_inode.values())
    for g in src_groups:
        inodes = {dst_inode_of.get(r) for r in g}
        if len(g) > 1 and len(inodes) != 1:
            diff(g[0], "hardlinked with %s in SRC, but they are separate files in DST"
                 % ", ".join(show(r) for r in g[1:]))
    for g in dst_groups:
        src_keys = set()
        for r in g:
            for key, names in src_inodes.items():
                if r in names:
                    src_keys.add(key)
        if len(g) > 1 and len(src_keys) > 1:
            diff(g[0], "hardlinked with %s in DST, but they are separate files in SRC"
                 % ", ".join(show(r) for r in g[1:]))

    for rel_s in args.sparse:
        rel = os.fsencode(rel_s)
        p = os.path.join(dst, rel)
        try:
            st = os.lstat(p)
        except OSError as e:
            diff(rel, "sparse check: %s" % e)
            continue
        allocated = st.st_blocks * 512
        if allocated * 8 > st.st_size:
            diff(rel, "not sparse any more: %d bytes allocated for a size of %d" % (allocated, st.st_size))
        else:
            print("compare_trees: %s is sparse: %d bytes allocated for %d" % (show(rel), allocated, st.st_size))

    for d in diffs:
        print("DIFF %s" % d)
    print("compare_trees: %d entries compared, %d difference(s)" % (checked, len(diffs)))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
