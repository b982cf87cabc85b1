#!/usr/bin/python3
"""Writes the repository-format seeds of the fuzz corpus from a real backup.

  make_corpus.py ENGINE_BIN CORPUS_DIR

Backs up a small tree (files, a directory, a symlink, an empty file, a name
that is not UTF-8) with encryption none into a scratch local repository,
then writes, each named after what it is:

  manifest/real-*   a snapshot manifest (its repository id replaced by
                    FUZZ_REPO_ID, as the fuzz target's repository has),
                    a newline, and the source's item tree (JSON lines)
  index/real-*      index objects (plaintext JSON)
  pack/real-*       pack objects (blobs, header, trailer)
  key/real-none     the key object (kdf none, the master key's repository
                    id replaced)
  key/scrypt-1024   a key object of an aes-256-gcm repository whose master
                    key is wrapped with scrypt N=1024 under the fuzz
                    passphrase: it opens in fuzz_key (its cap is N=1024)

The hand-written seeds (pipelines, HTTP requests, S3 replies, crafted
objects) are kept in the corpus as files. Uses the Debian python3 modules
cryptography and zstandard (tests/tools/engine_reader.py reads the trees).
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import engine_reader  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

FUZZ_REPO_ID = "0123456789abcdef" * 4
PASS = b"fuzz passphrase"


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    print("wrote %s (%d bytes)" % (path, len(data)))


def make_tree(root):
    os.makedirs(os.path.join(root, "dir", "sub"))
    with open(os.path.join(root, "dir", "a.txt"), "w") as f:
        f.write("hello fuzz\n")
    with open(os.path.join(root, "dir", "sub", "b.bin"), "wb") as f:
        f.write(bytes(range(256)) * 8)
    open(os.path.join(root, "empty"), "w").close()
    os.symlink("dir/a.txt", os.path.join(root, "link"))
    with open(os.path.join(root.encode(), b"caf\xe9"), "w") as f:
        f.write("latin-1 name\n")


def backup(engine, work):
    data = os.path.join(work, "data")
    repo = os.path.join(work, "repo")
    make_tree(data)
    yml = os.path.join(work, "p.yml")
    with open(yml, "w") as f:
        f.write("version: 1\nname: fuzz-seed\nsources:\n  - type: files\n    with: {paths: [%s]}\n"
                "stages:\n  compress: {algorithm: zstd, level: 3}\n  encrypt: {algorithm: none}\n"
                "sinks:\n  - {type: local, with: {path: %s}}\n" % (data, repo))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    for _ in range(2):  # two snapshots, the second one deduplicated
        subprocess.run([engine, "-q", "run", yml], check=True, env=env)
    return repo


def scrypt_key():
    """A key object for FUZZ_REPO_ID, aes-256-gcm, scrypt N=1024 r=8 p=1."""
    master = compact({"chunker_seed": "0011223344556677", "encryption_key":
                      base64.b64encode(bytes(range(32))).decode(), "id_key":
                      base64.b64encode(bytes(range(32, 64))).decode(), "repository": FUZZ_REPO_ID})
    salt = bytes(range(100, 132))
    kek = hashlib.scrypt(PASS, salt=salt, n=1024, r=8, p=1, dklen=32)
    nonce = bytes(range(12))
    sealed = nonce + AESGCM(kek).encrypt(nonce, master, b"engine-key-v1")
    return json.dumps({"created": "2026-01-01T00:00:00Z", "data": base64.b64encode(sealed).decode(),
                       "encryption": "aes-256-gcm", "host": "fuzz",
                       "kdf": {"N": 1024, "algorithm": "scrypt", "p": 1, "r": 8,
                               "salt": base64.b64encode(salt).decode()},
                       "user": "fuzz", "version": 1}, indent=2, sort_keys=True).encode()


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    engine, corpus = argv[1], argv[2]
    with tempfile.TemporaryDirectory(prefix="engine-fuzz-seeds.") as work:
        root = backup(engine, work)
        r = engine_reader.Repo(root)
        r.open(None)
        for i, name in enumerate(r.list("snapshots/")):
            m = json.loads(r.read(name))
            m["repository"] = FUZZ_REPO_ID
            src = m["sources"][0]
            tree = b"".join(r.read_blob(bytes.fromhex(h), engine_reader.BLOB_TREE)
                            for h in src["tree"])
            write(os.path.join(corpus, "manifest", "real-%d" % i), compact(m) + b"\n" + tree)
        for i, name in enumerate(r.list("index/")):
            write(os.path.join(corpus, "index", "real-%d" % i), r.read(name))
        for i, name in enumerate(r.list("data/")):
            write(os.path.join(corpus, "pack", "real-%d" % i), r.read(name))
        for name in r.list("keys/"):
            k = json.loads(r.read(name))
            m = json.loads(base64.b64decode(k["data"]))
            m["repository"] = FUZZ_REPO_ID
            k["data"] = base64.b64encode(compact(m)).decode()
            write(os.path.join(corpus, "key", "real-none"),
                  json.dumps(k, indent=2, sort_keys=True).encode())
    write(os.path.join(corpus, "key", "scrypt-1024"), scrypt_key())


if __name__ == "__main__":
    main(sys.argv)
