#!/usr/bin/python3
"""For every kind of damage this script makes to a copy of a repository, the
items `engine restore` fails on must be among the items `engine check
--read-data` names (an item, or its whole source through a source-level
problem), check must exit 1 when a restore fails, and what a restore does
produce must equal the original files byte for byte.

Used by test_check_invariant.sh:
  check_invariant.py ENGINE BASE_REPO_DIR PIPELINE_TEMPLATE SRC_DIR WORK_DIR FIRST_COPY
PIPELINE_TEMPLATE is a pipeline whose sink path is the literal @REPO@; the
base repository holds two snapshots of SRC_DIR, the first of which saw what
FIRST_COPY holds.
"""

import copy
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

ENGINE, BASE, TEMPLATE, SRC, WORK, FIRST = sys.argv[1:7]
TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools")
failures = []


def run(args, repo):
    env = dict(os.environ)
    env["ENGINE_CACHE_DIR"] = os.path.join(WORK, "cache-none")  # never a cache: read the objects
    shutil.rmtree(env["ENGINE_CACHE_DIR"], ignore_errors=True)
    p = subprocess.run([ENGINE] + args, capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL)
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        if marker in p.stderr:
            sys.stderr.write(p.stderr)
            raise SystemExit("sanitizer report from engine %s" % " ".join(args))
    return p


def packs(repo):
    return sorted(glob.glob(os.path.join(repo, "data", "*", "*")))


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def biggest_packs(repo, n):
    return sorted(packs(repo), key=os.path.getsize, reverse=True)[:n]


# ---- the kinds of damage -------------------------------------------------

def d_flip_data(repo):
    p = biggest_packs(repo, 1)[0]
    flip(p, os.path.getsize(p) // 3)


def d_flip_header(repo):
    p = biggest_packs(repo, 1)[0]
    flip(p, os.path.getsize(p) - 40)


def d_truncate(repo):
    p = biggest_packs(repo, 1)[0]
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) // 2)


def d_delete_pack(repo):
    os.unlink(biggest_packs(repo, 2)[1])


def d_swap_packs(repo):
    a, b = biggest_packs(repo, 2)
    tmp = a + ".swap"
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)


def d_garbage_index(repo):
    for name in sorted(glob.glob(os.path.join(repo, "index", "*")))[:1]:
        with open(name, "wb") as f:
            f.write(b"not an index")


def d_delete_index(repo):
    for name in sorted(glob.glob(os.path.join(repo, "index", "*")))[-1:]:
        os.unlink(name)


CRAFT = {
    "unsafe_name": """
def transform(items):
    files = [i for i in items if i.get("type") == "file"]
    files[0]["name"] = "../escape-" + files[0]["name"].rsplit("/", 1)[-1]
    return items
""",
    "size_mismatch": """
def transform(items):
    files = [i for i in items if i.get("type") == "file" and i.get("chunks")]
    files[0]["size"] += 1
    return items
""",
    "chunk_is_tree": """
def transform(items):
    files = [i for i in items if i.get("type") == "file" and i.get("chunks")]
    files[0]["chunks"] = list(TREE)
    return items
""",
    "unknown_chunk": """
def transform(items):
    files = [i for i in items if i.get("type") == "file" and i.get("chunks")]
    files[0]["chunks"][0] = "ab" * 32
    return items
""",
    "bad_type_and_hex": """
def transform(items):
    files = [i for i in items if i.get("type") == "file" and i.get("chunks")]
    files[0]["type"] = "gizmo"
    files[1]["chunks"][0] = "xyz"
    return items
""",
}


def craft(kind):
    def apply(repo):
        script = os.path.join(WORK, "craft-%s.py" % kind)
        text = CRAFT[kind]
        if "TREE" in text:
            snaps = latest_manifest(repo)
            text = "TREE = %r\n" % snaps["sources"][0]["tree"] + text
        with open(script, "w") as f:
            f.write(text)
        subprocess.run(["/usr/bin/python3", os.path.join(TOOLS, "engine_craft.py"), repo,
                        "--passphrase-env", "ENGINE_PASSPHRASE", "tree", "latest", "files", script],
                       check=True, capture_output=True)
    return apply


def latest_manifest(repo):
    p = run(["show", pipeline(repo), "latest", "--json"], repo)
    return json.loads(p.stdout)


DAMAGE = [("flip_data", d_flip_data), ("flip_header", d_flip_header), ("truncate", d_truncate),
          ("delete_pack", d_delete_pack), ("swap_packs", d_swap_packs),
          ("garbage_index", d_garbage_index), ("delete_index", d_delete_index)] + \
    [("craft_" + k, craft(k)) for k in CRAFT]


# ---- comparing -----------------------------------------------------------

def pipeline(repo):
    path = repo + ".yml"
    if not os.path.exists(path):
        with open(TEMPLATE) as f:
            text = f.read().replace("@REPO@", repo)
        with open(path, "w") as f:
            f.write(text)
    return path


FAILED_RE = re.compile(r"restore of ([^/]+)/(.*?) failed")


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_case(label, damage):
    repo = os.path.join(WORK, label)
    shutil.copytree(BASE, repo)
    damage(repo)
    pl = pipeline(repo)
    chk = run(["check", pl, "--read-data", "--json"], repo)
    try:
        report = json.loads(chk.stdout)
    except ValueError:
        failures.append("%s: check --json printed no JSON (exit %d): %s" % (label, chk.returncode,
                                                                            chk.stderr[-2000:]))
        return
    named, whole = set(), set()
    for prob in report.get("problems", []):
        if "snapshot" in prob and "source" in prob:
            if "item" in prob:
                named.add((prob["snapshot"], prob["source"], prob["item"]))
            else:
                whole.add((prob["snapshot"], prob["source"]))
    listing = run(["snapshots", pl, "--json"], repo)
    snaps = json.loads(listing.stdout) if listing.stdout.strip() else []
    restore_failed = 0
    for k, s in enumerate(snaps):
        sid = s["id"]
        originals = FIRST if k == 0 else SRC
        if s.get("status") == "unreadable":
            if not any(p.get("snapshot") == sid for p in report.get("problems", [])):
                failures.append("%s: snapshot %s is unreadable but check does not name it" % (label, sid[:8]))
            continue
        target = os.path.join(WORK, "out-%s-%s" % (label, sid[:8]))
        r = run(["restore", pl, sid, "--target", target], repo)
        failed = {(m.group(1), m.group(2)) for m in FAILED_RE.finditer(r.stderr)}
        if r.returncode == 1:  # the restore of a source stopped or never started
            srcs = {x["name"] if isinstance(x, dict) else x for x in s.get("sources", [])}
            for src in srcs:
                if (sid, src) not in whole:
                    failures.append("%s: snapshot %s: the restore failed as a whole (%s) but check "
                                    "names no problem of source '%s'"
                                    % (label, sid[:8], r.stderr.strip().splitlines()[-1:], src))
            restore_failed += 1
            continue
        if r.returncode not in (0, 3):
            failures.append("%s: restore of %s exited %d: %s" % (label, sid[:8], r.returncode, r.stderr))
            continue
        if failed:
            restore_failed += 1
        for src, item in failed:
            if (sid, src, item) not in named and (sid, src) not in whole:
                failures.append("%s: snapshot %s: restore failed on %s/%s, which check --read-data "
                                "does not name" % (label, sid[:8], src, item))
        # what was restored is the original, byte for byte (names below SRC only)
        restored_root = os.path.join(target, SRC.lstrip("/"))
        for dirpath, _, files in os.walk(restored_root):
            for fn in files:
                got = os.path.join(dirpath, fn)
                rel = os.path.relpath(got, restored_root)
                orig = os.path.join(originals, rel)
                if os.path.exists(orig) and digest(orig) != digest(got):
                    if ("files", os.path.join(SRC.lstrip("/"), rel)) not in failed:
                        failures.append("%s: %s restored with different content" % (label, rel))
    if restore_failed and chk.returncode != 1:
        failures.append("%s: a restore failed but check --read-data exited %d" % (label, chk.returncode))
    repaired = repair_case(label, repo, pl)
    print("%-24s check exit %d, %2d item(s) named, %d source(s) named whole, %d restore(s) with "
          "failures; repair wrote %d snapshot(s)"
          % (label, chk.returncode, len(named), len(whole), restore_failed, repaired))


def repair_case(label, repo, pl):
    """repair index, then repair snapshots --read-data; once the originals of
    the repaired snapshots are forgotten, check passes and every snapshot
    restores without a failure, equal to the original files."""
    ri = run(["repair", "index", pl], repo)
    if ri.returncode != 0:
        failures.append("%s: repair index exited %d: %s" % (label, ri.returncode, ri.stderr[-1500:]))
        return 0
    rs = run(["repair", "snapshots", pl, "--read-data", "--json"], repo)
    if rs.returncode not in (0, 3):
        failures.append("%s: repair snapshots exited %d: %s" % (label, rs.returncode, rs.stderr[-1500:]))
        return 0
    rep = json.loads(rs.stdout)
    done = [x for x in rep["snapshots"] if x.get("result") == "repaired"]
    gone = [x["id"] for x in done] + [x["id"] for x in rep["snapshots"] if x.get("result") == "unreadable"]
    if gone:
        args = ["forget", pl] + [x["id"] for x in done]
        if done:
            f = run(args, repo)
            if f.returncode != 0:
                failures.append("%s: forget of the repaired originals exited %d: %s"
                                % (label, f.returncode, f.stderr))
    chk = run(["check", pl], repo)
    if chk.returncode != 0:
        failures.append("%s: after repair, check exits %d: %s" % (label, chk.returncode, chk.stderr[-1500:]))
    listing = json.loads(run(["snapshots", pl, "--json"], repo).stdout)
    for s in listing:
        target = os.path.join(WORK, "rep-%s-%s" % (label, s["id"][:8]))
        r = run(["restore", pl, s["id"], "--target", target], repo)
        if r.returncode != 0:
            failures.append("%s: after repair, restore of %s exits %d: %s"
                            % (label, s["id"][:8], r.returncode, r.stderr[-1500:]))
    return len(done)


for label, damage in DAMAGE:
    check_case(label, damage)
if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print("invariant holds for %d kinds of damage" % len(DAMAGE))
