#!/usr/bin/python3
"""Write crafted snapshots into a local engine repository, for tests.

A test that wants a snapshot the engine itself would refuse to write (an
item named "../x", a chunk list pointing at a tree blob, a size that does
not match its chunks, ...) takes a real snapshot and rewrites one source's
item tree with a Python transformation. The new tree is stored the way
docs/FORMAT.md describes (one uncompressed tree blob in a new pack, an index
object for that pack, a new sealed manifest); everything else is reused.

Usage:
  engine_craft.py REPO_DIR --passphrase-env VAR tree SNAPSHOT SOURCE SCRIPT
      SCRIPT is a Python file defining transform(items) -> items, where items
      is the list of the source's item objects (dicts, as in the tree). The
      new snapshot keeps the original's time and sorts after it (latest);
      its id is printed.
Reads with tests/tools/engine_reader.py (same directory). Never use it on a
repository you care about.
"""

import argparse
import hashlib
import json
import os
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import engine_reader as er  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402


def seal(repo, key, aad, plain):
    if repo.aead.name == "none":
        return bytes(plain)
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, bytes(plain), aad)


def dumps(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def put(repo, name, data):
    path = repo.path(name)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".craft"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def save_sealed(repo, kind, folder, obj):
    data = seal(repo, repo.enc_key, kind.encode("ascii"), dumps(obj))
    oid = hashlib.sha256(data).hexdigest()
    put(repo, "%s/%s" % (folder, oid), data)
    return oid


def write_tree(repo, items):
    raw = b"".join(dumps(it) + b"\n" for it in items)
    if not raw:
        return [], 0, None
    bid = repo.blob_id(raw)
    sealed = seal(repo, repo.enc_key, bid + bytes([er.BLOB_TREE]), b"\x00" + raw)
    header = er.PACK_HEADER_MAGIC + struct.pack("<I", 1) + bytes([er.BLOB_TREE]) + bid + \
        struct.pack("<III", 0, len(sealed), len(raw))
    sealed_header = seal(repo, repo.enc_key, b"packheader", header)
    pack = sealed + sealed_header + struct.pack("<I", len(sealed_header)) + er.PACK_MAGIC[1]
    pid = hashlib.sha256(pack).hexdigest()
    put(repo, "data/%s/%s" % (pid[:2], pid), pack)
    index = {"version": 1, "packs": [{"id": pid, "blobs": [{
        "id": bid.hex(), "type": "tree", "offset": 0, "length": len(sealed), "raw_length": len(raw)}]}]}
    return [bid.hex()], len(raw), save_sealed(repo, "index", "index", index)


def cmd_tree(repo, args):
    m = repo.find_snapshot(args.snapshot)
    src = repo.source(m, args.source)
    items = list(repo.items(src))
    scope = {}
    with open(args.script) as f:
        exec(compile(f.read(), args.script, "exec"), scope)
    items = scope["transform"](items)
    ids, size, _ = write_tree(repo, items)
    src["tree"], src["tree_size"], src["items"] = ids, size, len(items)
    del m["id"]
    m["created_ns"] = int(m.get("created_ns", 0)) + 1
    m["tags"] = list(m.get("tags", [])) + ["crafted"]
    print(save_sealed(repo, "snapshot", "snapshots", m))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("repo")
    ap.add_argument("--passphrase-env", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tree")
    p.add_argument("snapshot")
    p.add_argument("source")
    p.add_argument("script")
    args = ap.parse_args(argv)
    repo = er.Repo(args.repo)
    repo.open(os.environ[args.passphrase_env].encode())
    if repo.version != 1:
        sys.stderr.write("engine_craft: only format-1 repositories can be crafted\n")
        return 1
    cmd_tree(repo, args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
