#!/usr/bin/python3
"""Independent reader for engine repositories, format versions 1 and 2.

Written from docs/FORMAT.md alone (it imports nothing of the engine), so that
it proves the document is enough to read a repository: it opens the key,
lists snapshots, lists items, extracts content, verifies every blob of every
pack and re-chunks content with the documented FastCDC chunker.

Only the local directory layout is read (one object per file, object names
are relative paths). Runs with the system Python 3 and the Debian packages
python3-cryptography and python3-zstandard.

Usage:
  engine_reader.py REPO_DIR [--passphrase-env VAR | --passphrase-file PATH] COMMAND ...
  commands:
    list                          snapshots: id, time, status
    ls SNAPSHOT [SOURCE] [--meta] items: type, size, name (--meta: and the
                                  item's metadata as JSON, its "xattrs" and
                                  "flags" checked against section 11)
    cat SNAPSHOT SOURCE NAME      item content to stdout
    verify                        check every object; exit 1 on any failure
    rechunk SNAPSHOT SOURCE NAME  re-chunk the content and the source's tree
                                  with the documented chunker; compare ids
    canonical SNAPSHOT            every item tree line of every source is in
                                  the writers' form (section 10: compact,
                                  keys sorted at every level); exit 1 if not
    credential FILE               format 2: check that a writer credential
                                  belongs to the repository, names its
                                  current public key and holds no private
                                  key nor the master secret (exit 1 if it does)
  SNAPSHOT is 'latest' or a prefix (at least 4 hex digits) of a snapshot id.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import stat
import sys
import zlib

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write("engine_reader: python3-cryptography is required "
                     "(apt-get install python3-cryptography)\n")
    sys.exit(1)
try:
    import zstandard
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write("engine_reader: python3-zstandard is required "
                     "(apt-get install python3-zstandard)\n")
    sys.exit(1)

FORMAT_VERSIONS = (1, 2)
KEY_AAD = {1: b"engine-key-v1", 2: b"engine-key-v2"}
PACK_MAGIC = {1: b"EPK1", 2: b"EPK2"}
SEALPUB_OVERHEAD = 8 + 32 + 12 + 16   # format 2: key id, ephemeral key, nonce, tag
SEALED_DK_LEN = SEALPUB_OVERHEAD + 32  # format 2: a pack's sealed data key
PACK_HEADER_MAGIC = b"EPH1"
PACK_ENTRY_SIZE = 45
BLOB_DATA, BLOB_TREE = 0, 1
BLOB_TYPE_NAMES = {BLOB_DATA: "data", BLOB_TREE: "tree"}
COMPRESS_NONE, COMPRESS_ZSTD, COMPRESS_GZIP = 0, 1, 2
MAX_BLOB = 64 * 1024 * 1024 + 4096
GEAR_LABEL = b"engine fastcdc gear v1"
TEMP_MARKER = ".tmp-"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
MASK64 = (1 << 64) - 1


class FormatError(Exception):
    """The repository (or one object of it) does not follow the format."""


class Aead:
    """The AEAD named by config 'encryption': nonce || ciphertext || tag."""

    def __init__(self, name):
        if name == "aes-256-gcm":
            self.key_len, self.nonce_len, self.tag_len = 32, 12, 16
        elif name == "none":
            self.key_len = self.nonce_len = self.tag_len = 0
        else:
            raise FormatError("unsupported encryption algorithm '%s'" % name)
        self.name = name

    def overhead(self):
        return self.nonce_len + self.tag_len

    def open(self, key, aad, sealed):
        """Plaintext, or None when authentication fails."""
        if self.name == "none":
            return bytes(sealed)
        if len(sealed) < self.overhead():
            return None
        nonce = bytes(sealed[:self.nonce_len])
        try:
            return AESGCM(key).decrypt(nonce, bytes(sealed[self.nonce_len:]), aad)
        except InvalidTag:
            return None


def b64decode_strict(text, what):
    if not isinstance(text, str):
        raise FormatError("%s: expected a base64 string" % what)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise FormatError("%s: invalid base64: %s" % (what, e))


def get_bytes(obj, key, what):
    """A byte string stored as obj[key] (UTF-8 text) or obj[key+'_b64']."""
    v = obj.get(key)
    if isinstance(v, str):
        return v.encode("utf-8", "surrogatepass")
    v = obj.get(key + "_b64")
    if v is None:
        return None
    return b64decode_strict(v, "%s: %s_b64" % (what, key))


def printable(name):
    """Bytes for a listing line: raw, except backslash, CR and LF escaped so
    one item is always one line."""
    return name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def decompress(plain):
    """Blob plaintext [algorithm byte][payload] -> raw bytes."""
    if len(plain) == 0:
        raise FormatError("empty blob plaintext (the algorithm byte is missing)")
    algo, payload = plain[0], bytes(plain[1:])
    if algo == COMPRESS_NONE:
        if len(payload) > MAX_BLOB:
            raise FormatError("stored blob exceeds the maximum size")
        return payload
    if algo == COMPRESS_ZSTD:
        if payload[:4] != b"\x28\xb5\x2f\xfd":
            raise FormatError("zstd payload: bad frame magic")
        try:
            size = zstandard.frame_content_size(payload)
        except zstandard.ZstdError as e:
            raise FormatError("zstd payload: corrupt frame header: %s" % e)
        if size < 0:
            raise FormatError("zstd payload: the frame does not record its content size")
        if size > MAX_BLOB:
            raise FormatError("zstd payload: content size %d exceeds the maximum" % size)
        d = zstandard.ZstdDecompressor().decompressobj()
        try:
            out = d.decompress(payload)
        except zstandard.ZstdError as e:
            raise FormatError("zstd payload: %s" % e)
        if not d.eof or d.unused_data:
            raise FormatError("zstd payload: truncated or followed by trailing data")
        if len(out) != size:
            raise FormatError("zstd payload: decoded %d bytes, frame says %d" % (len(out), size))
        return out
    if algo == COMPRESS_GZIP:
        d = zlib.decompressobj(wbits=16 + 15)  # gzip wrapper only
        try:
            out = d.decompress(payload, MAX_BLOB + 1)
        except zlib.error as e:
            raise FormatError("gzip payload: %s" % e)
        if len(out) > MAX_BLOB:
            raise FormatError("gzip payload decodes to more than the maximum")
        if not d.eof:
            raise FormatError("gzip payload: truncated")
        if d.unused_data or d.unconsumed_tail:
            raise FormatError("gzip payload: trailing data after the end of the stream")
        return out
    raise FormatError("unknown compression algorithm byte %d" % algo)


class Repo:
    def __init__(self, root):
        self.root = root
        self.index = {}        # blob id (bytes) -> (pack id hex, offset, length, raw_length, type)
        self.index_loaded = False
        self.algo_counts = {}  # compression algorithm byte -> blobs decoded
        self.tenants = {}      # format 2: tenant key id -> its keys (open_keyring)
        self.pack_idk = {}     # format 2: pack id -> the chunk-id key of its blobs

    # ---- object access -------------------------------------------------

    def path(self, name):
        return os.path.join(self.root, *name.split("/"))

    def read(self, name, offset=0, length=None):
        try:
            with open(self.path(name), "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length is None else f.read(length)
        except OSError as e:
            raise FormatError("unable to read object '%s': %s" % (name, e.strerror or e))

    def list(self, prefix):
        """Object names under prefix ('data/', 'index/', ...), sorted by name.
        Temporary files of interrupted writes contain '.tmp-' and are not
        objects."""
        base = self.path(prefix.rstrip("/"))
        out = []
        if not os.path.isdir(base):
            return out
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if TEMP_MARKER not in d]
            for fn in filenames:
                if TEMP_MARKER in fn:
                    continue
                full = os.path.join(dirpath, fn)
                try:
                    if not stat.S_ISREG(os.stat(full).st_mode):
                        continue
                except OSError:
                    continue
                rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                out.append(rel)
        out.sort()
        return out

    # ---- opening -------------------------------------------------------

    def open(self, passphrase):
        try:
            cfg = json.loads(self.read("config").decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise FormatError("config is not valid JSON: %s" % e)
        if not isinstance(cfg, dict) or cfg.get("engine_repository") != 1:
            raise FormatError("'config' is not an engine repository configuration")
        if cfg.get("version") not in FORMAT_VERSIONS:
            raise FormatError("repository format version %r is not supported (this reader reads %s)"
                              % (cfg.get("version"), FORMAT_VERSIONS))
        self.version = cfg["version"]
        if self.version == 2 and cfg.get("encryption") == "none":
            raise FormatError("config: format 2 needs encryption")
        rid = cfg.get("id")
        if not isinstance(rid, str) or not HEX64.match(rid):
            raise FormatError("config: 'id' is not 64 lowercase hex digits")
        if cfg.get("id_hash", "hmac-sha256") != "hmac-sha256":
            raise FormatError("config: unsupported id_hash %r" % cfg.get("id_hash"))
        ch = cfg.get("chunker")
        if not isinstance(ch, dict) or ch.get("algorithm", "fastcdc-gear64") != "fastcdc-gear64":
            raise FormatError("config: missing or unsupported 'chunker'")
        mn, avg, mx = ch.get("min"), ch.get("avg"), ch.get("max")
        if not all(isinstance(v, int) for v in (mn, avg, mx)) or not (
                64 <= mn < avg < mx <= 64 * 1024 * 1024 and avg & (avg - 1) == 0):
            raise FormatError("config: invalid chunker parameters %r" % ch)
        self.id = rid
        self.chunker = (mn, avg, mx)
        self.aead = Aead(cfg.get("encryption"))
        self.open_key(passphrase)

    def open_key(self, passphrase):
        names = self.list("keys/")
        if not names:
            raise FormatError("the repository has no keys (keys/ is empty)")
        problems, wrong = [], 0
        for name in names:
            text = self.read(name)
            if hashlib.sha256(text).hexdigest() != name[len("keys/"):]:
                problems.append("key '%s': content does not match its name" % name)
                continue
            try:
                k = json.loads(text.decode("utf-8"))
                kdf = k["kdf"]
                algo = kdf["algorithm"]
                data = b64decode_strict(k["data"], "key '%s': data" % name)
                if k["encryption"] != self.aead.name:
                    problems.append("key '%s' is for encryption '%s', the config says '%s'"
                                    % (name, k["encryption"], self.aead.name))
                    continue
            except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
                problems.append("key '%s': malformed key object (%s)" % (name, e))
                continue
            if algo == "none":
                plain = data
            elif algo == "scrypt" and self.aead.name != "none":
                if passphrase is None:
                    raise FormatError("the repository is encrypted: give --passphrase-env or "
                                      "--passphrase-file")
                try:
                    n, r, p = int(kdf["N"]), int(kdf["r"]), int(kdf["p"])
                    salt = b64decode_strict(kdf["salt"], "key '%s': kdf.salt" % name)
                    kek = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p,
                                         maxmem=256 * 1024 * 1024 + 128 * r * (n + p + 2),
                                         dklen=self.aead.key_len)
                except (KeyError, TypeError, ValueError) as e:
                    problems.append("key '%s': invalid scrypt parameters (%s)" % (name, e))
                    continue
                plain = self.aead.open(kek, KEY_AAD[self.version], data)
                if plain is None:
                    wrong += 1
                    continue
            else:
                problems.append("key '%s': unsupported key derivation %r" % (name, algo))
                continue
            if self.version == 2:
                try:
                    m = json.loads(plain.decode("utf-8"))
                    ms = b64decode_strict(m["master_secret"], "master secret")
                    repo_id = m["repository"]
                except (UnicodeDecodeError, ValueError, KeyError, TypeError, FormatError) as e:
                    problems.append("key '%s': malformed master secret (%s)" % (name, e))
                    continue
                if len(ms) != 32 or repo_id != self.id:
                    problems.append("key '%s': malformed master secret or another repository" % name)
                    continue
                self.master_secret = ms
                self.key_name = name
                self.open_keyring()
                return
            try:
                m = json.loads(plain.decode("utf-8"))
                ek = b64decode_strict(m["encryption_key"], "master key: encryption_key")
                ik = b64decode_strict(m["id_key"], "master key: id_key")
                seed = m["chunker_seed"]
                repo_id = m["repository"]
            except (UnicodeDecodeError, ValueError, KeyError, TypeError, FormatError) as e:
                problems.append("key '%s': malformed master key (%s)" % (name, e))
                continue
            if len(ek) != 32 or len(ik) != 32 or not isinstance(seed, str) or \
                    not re.match(r"^[0-9a-f]{16}$", seed):
                problems.append("key '%s': malformed master key (key or seed length)" % name)
                continue
            if repo_id != self.id:
                problems.append("key '%s' belongs to repository %s, not %s" % (name, repo_id, self.id))
                continue
            self.enc_key, self.id_key, self.seed = ek, ik, int(seed, 16)
            self.key_name = name
            return
        if wrong:
            raise FormatError("wrong passphrase: none of the repository's %d key(s) can be opened "
                              "with it" % len(names))
        raise FormatError("; ".join(problems) or "no usable key")

    def open_keyring(self):
        """Format 2: the newest keyring object that opens with the master secret."""
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=self.id.encode("ascii"),
                   info=b"engine-v2 keyring").derive(self.master_secret)
        best = None
        # Per-tenant keys (section 3.6): the union of every keyring's, by key
        # id; a key shredded in any keyring is gone.
        self.tenants = {}  # key id (8 bytes) -> {"name", "shredded", "key", "idk", "wrap"}
        for name in self.list("keyring/"):
            buf = self.read(name)
            if hashlib.sha256(buf).hexdigest() != name[len("keyring/"):]:
                raise FormatError("keyring '%s': content does not match its name" % name)
            plain = self.aead.open(key, b"keyring", buf)
            if plain is None:
                raise FormatError("keyring '%s' does not open with the master secret" % name)
            k = json.loads(plain.decode("utf-8"))
            if k.get("repository") != self.id:
                raise FormatError("keyring '%s' belongs to another repository" % name)
            for t in k.get("tenants", []):
                tid = bytes.fromhex(t["id"])
                cur = self.tenants.setdefault(tid, {"name": t["name"], "shredded": None, "key": None,
                                                    "retired": False, "replaces": None})
                if t.get("replaces"):
                    cur["replaces"] = bytes.fromhex(t["replaces"])
                if t.get("retired"):
                    cur["retired"] = True
                gone = t.get("shredded") or t.get("retired")
                if gone:
                    cur.update(shredded=gone, key=None)
                elif cur["shredded"] is None:
                    key = b64decode_strict(t["key"], "keyring: tenant key")
                    salt = self.id.encode("ascii")
                    cur["key"] = key
                    # a successor made by key rotate --rewrite keeps its
                    # predecessor's chunk-id key, stored explicitly
                    cur["idk"] = b64decode_strict(t["id_key"], "keyring: tenant id_key") \
                        if "id_key" in t else HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                                                   info=b"engine-v2 tenant id").derive(key)
                    cur["wrap"] = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                                       info=b"engine-v2 tenant wrap").derive(key)
            if best is None or k["generation"] > best["generation"]:
                best = k
        if best is None:
            raise FormatError("the repository has no keyring (keyring/ is empty)")
        self.enc_key = b64decode_strict(best["index_key"], "keyring: index_key")
        self.id_key = b64decode_strict(best["id_key"], "keyring: id_key")
        self.seed = int(best["chunker_seed"], 16)
        self.keypairs = {}  # key id (8 bytes) -> (private, public) raw bytes
        for kp in best["keypairs"]:
            priv = b64decode_strict(kp["private"], "keyring: private")
            pub = b64decode_strict(kp["public"], "keyring: public")
            derived = X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if derived != pub:
                raise FormatError("keyring: key pair %s: the public key is not the private key's"
                                  % kp.get("id"))
            kid = hashlib.sha256(pub).digest()[:8]
            if kid.hex() != kp.get("id"):
                raise FormatError("keyring: key pair id %r is not SHA-256(public)[:8]" % kp.get("id"))
            self.keypairs[kid] = (priv, pub)
        self.current_public = b64decode_strict(
            next(k["public"] for k in best["keypairs"] if k["id"] == best["current"]),
            "keyring: current")
        self.pack_keys = {}
        self.pack_idk = {}  # pack id -> the chunk-id key of its blobs (a tenant's)

    def item_tenant(self, kid):
        """The tenant key an item's chunks are under: key rotate --rewrite moves
        a retired key's data under the entry that "replaces" it."""
        t = self.tenants.get(kid)
        for _ in range(64):
            if t is None or not t["retired"]:
                break
            succ = [e for e in self.tenants.values() if e["replaces"] == kid]
            if not succ:
                break
            kid = next(k for k, e in self.tenants.items() if e is succ[0])
            t = succ[0]
        return t

    def open_sealed_to_public(self, aad, buf):
        """Format 2: kid || ephemeral public || nonce || ciphertext || tag."""
        if len(buf) < SEALPUB_OVERHEAD:
            return None
        kp = self.keypairs.get(bytes(buf[:8]))
        if kp is None:
            raise FormatError("sealed to key pair %s, which the keyring does not hold" % buf[:8].hex())
        priv, pub = kp
        eph = bytes(buf[8:40])
        shared = X25519PrivateKey.from_private_bytes(priv).exchange(
            X25519PublicKey.from_public_bytes(eph))
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=eph + pub,
                   info=b"engine-v2 sealpub").derive(shared)
        return self.aead.open(key, aad, bytes(buf[40:]))

    def pack_key(self, pid, head=None):
        """Format 2: a pack's data key, from the sealed key it starts with."""
        if pid not in self.pack_keys:
            if head is None:
                head = self.read("data/%s/%s" % (pid[:2], pid), 0, SEALED_DK_LEN)
            t = self.tenants.get(bytes(head[:8]))
            if t is not None:
                # a tenant's pack: kid || 32 zero bytes || AEAD(wrap, "packkey", dk)
                if t["key"] is None:
                    raise FormatError("pack %s holds data of tenant '%s', shredded on %s: its key "
                                      "is in no keyring" % (pid, t["name"], t["shredded"]))
                dk = self.aead.open(t["wrap"], b"packkey", bytes(head[40:SEALED_DK_LEN]))
                self.pack_idk[pid] = t["idk"]
            else:
                dk = self.open_sealed_to_public(b"packkey", head[:SEALED_DK_LEN])
            if dk is None or len(dk) != 32:
                raise FormatError("pack %s: its data key does not authenticate" % pid)
            self.pack_keys[pid] = dk
        return self.pack_keys[pid]

    # ---- sealed objects ------------------------------------------------

    def blob_id(self, raw, idk=None):
        return hmac.new(idk or self.id_key, raw, hashlib.sha256).digest()

    def load_json(self, kind, id_hex):
        folder = "index" if kind == "index" else kind + "s"
        name = "%s/%s" % (folder, id_hex)
        buf = self.read(name)
        if hashlib.sha256(buf).hexdigest() != id_hex:
            raise FormatError("%s '%s' is corrupted: its content hash is %s"
                              % (kind, name, hashlib.sha256(buf).hexdigest()))
        if self.version == 2 and kind != "index":
            plain = self.open_sealed_to_public(kind.encode("ascii"), buf)
        else:
            plain = self.aead.open(self.enc_key, kind.encode("ascii"), buf)
        if plain is None:
            raise FormatError("%s '%s': authentication failed" % (kind, name))
        try:
            obj = json.loads(plain.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise FormatError("%s '%s': invalid JSON: %s" % (kind, name, e))
        if not isinstance(obj, dict):
            raise FormatError("%s '%s': not a JSON object" % (kind, name))
        return obj

    def decode_blob(self, bid, btype, sealed, key=None, idk=None):
        aad = bytes(bid) + bytes([btype])
        plain = self.aead.open(key or self.enc_key, aad, sealed)
        if plain is None:
            raise FormatError("blob %s: authentication failed" % bid.hex())
        if plain:
            self.algo_counts[plain[0]] = self.algo_counts.get(plain[0], 0) + 1
        raw = decompress(plain)
        if not hmac.compare_digest(self.blob_id(raw, idk), bid):
            raise FormatError("blob %s: content does not match its id" % bid.hex())
        return raw

    # ---- index ---------------------------------------------------------

    def load_index(self):
        if self.index_loaded:
            return
        for name in self.list("index/"):
            obj = self.load_json("index", name[len("index/"):])
            if obj.get("version") != 1:
                raise FormatError("index '%s': unsupported version %r" % (name, obj.get("version")))
            for p in obj.get("packs", []):
                pid = p.get("id")
                if not isinstance(pid, str) or not HEX64.match(pid):
                    raise FormatError("index '%s': malformed pack id %r" % (name, pid))
                for b in p.get("blobs", []):
                    bh, t = b.get("id"), b.get("type")
                    if not isinstance(bh, str) or not HEX64.match(bh) or t not in ("data", "tree"):
                        raise FormatError("index '%s': malformed blob entry %r" % (name, b))
                    fields = [b.get(k) for k in ("offset", "length", "raw_length")]
                    if not all(isinstance(v, int) and 0 <= v < 2 ** 32 for v in fields):
                        raise FormatError("index '%s': malformed blob entry %r" % (name, b))
                    bid = bytes.fromhex(bh)
                    # One location is enough: equal ids mean equal content.
                    self.index.setdefault(bid, (pid, fields[0], fields[1], fields[2],
                                                BLOB_TREE if t == "tree" else BLOB_DATA))
        self.index_loaded = True

    def read_blob(self, bid, btype):
        self.load_index()
        e = self.index.get(bid)
        if e is None:
            raise FormatError("blob %s is not in the index" % bid.hex())
        pid, off, length, raw_length, t = e
        if t != btype:
            raise FormatError("blob %s is a %s blob, expected %s"
                              % (bid.hex(), BLOB_TYPE_NAMES[t], BLOB_TYPE_NAMES[btype]))
        sealed = self.read("data/%s/%s" % (pid[:2], pid), off, length)
        if len(sealed) != length:
            raise FormatError("pack %s: short read of blob %s" % (pid, bid.hex()))
        key = self.pack_key(pid) if self.version == 2 else None
        raw = self.decode_blob(bid, btype, sealed, key, self.pack_idk.get(pid))
        if len(raw) != raw_length:
            raise FormatError("blob %s: %d bytes, the index says %d" % (bid.hex(), len(raw), raw_length))
        return raw

    # ---- snapshots and trees -------------------------------------------

    def snapshots(self):
        out = []
        for name in self.list("snapshots/"):
            sid = name[len("snapshots/"):]
            m = self.load_json("snapshot", sid)
            m["id"] = sid
            out.append(m)
        # section 9: by time, then created_ns
        out.sort(key=lambda m: (m.get("time") if isinstance(m.get("time"), str) else "",
                                m.get("created_ns") if isinstance(m.get("created_ns"), int) else 0, m["id"]))
        return out

    def find_snapshot(self, ref):
        snaps = self.snapshots()
        if ref == "latest":
            if not snaps:
                raise FormatError("the repository has no snapshots")
            return snaps[-1]
        if len(ref) < 4 or not re.match(r"^[0-9a-f]+$", ref):
            raise FormatError("'%s' is not a snapshot id: give 'latest' or at least 4 hex digits" % ref)
        found = [m for m in snaps if m["id"].startswith(ref)]
        if len(found) != 1:
            raise FormatError("snapshot id prefix '%s' is ambiguous" % ref if found
                              else "no snapshot '%s' in the repository" % ref)
        return found[0]

    @staticmethod
    def source(manifest, name):
        for s in manifest.get("sources", []):
            if s.get("name") == name:
                return s
        raise FormatError("snapshot %s has no source '%s' (it has: %s)" % (
            manifest["id"][:8], name, ", ".join(str(s.get("name")) for s in manifest.get("sources", []))))

    def items(self, src):
        """Yield the item objects of a source's tree, in order."""
        pending = b""
        lineno = 0
        for hexid in src.get("tree", []):
            pending += self.read_blob(bytes.fromhex(hexid), BLOB_TREE)
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                lineno += 1
                try:
                    item = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as e:
                    raise FormatError("item tree line %d is not valid JSON: %s" % (lineno, e))
                if not isinstance(item, dict):
                    raise FormatError("item tree line %d is not a JSON object" % lineno)
                yield item
        if pending:
            raise FormatError("item tree ends in the middle of a line (truncated)")

    def find_item(self, src, name):
        items = {}
        hit = None
        for it in self.items(src):
            n = get_bytes(it, "name", "item")
            items[n] = it
            if n == name:
                hit = it
                break
        if hit is None and name.startswith(b"/"):
            return self.find_item(src, name.lstrip(b"/"))
        if hit is None:
            raise FormatError("no item '%s' in source '%s'" % (name.decode("utf-8", "replace"),
                                                               src.get("name")))
        if hit.get("type") == "hardlink":
            target = get_bytes(hit.get("meta", {}), "link", "hardlink meta")
            if target is None or target not in items or items[target].get("type") != "file":
                raise FormatError("hardlink '%s' points to no earlier file item"
                                  % name.decode("utf-8", "replace"))
            hit = items[target]
        return hit

    def content(self, item):
        for hexid in item.get("chunks", []):
            yield self.read_blob(bytes.fromhex(hexid), BLOB_DATA)


# ---- the chunker (FORMAT.md, "Chunker") ---------------------------------

def gear_table(seed):
    gear = []
    for k in range(64):
        md = hashlib.sha256(GEAR_LABEL + seed.to_bytes(8, "little") + k.to_bytes(4, "little")).digest()
        for j in range(4):
            gear.append(int.from_bytes(md[8 * j:8 * j + 8], "little"))
    return gear


def chunk_lengths(data, params, seed):
    """Chunk lengths of one stream (an item's content, or a source's tree)."""
    mn, avg, mx = params
    gear = gear_table(seed)
    b = avg.bit_length() - 1
    mask_s = (MASK64 << (64 - (b + 2))) & MASK64
    mask_l = (MASK64 << (64 - (b - 2))) & MASK64
    out = []
    start, n = 0, len(data)
    while start < n:
        end = min(start + mx, n)
        cut = end  # the end of the stream (or max_size) ends the chunk
        h = 0
        i = start + mn
        soft = min(start + avg, end)
        while i < soft:
            h = ((h << 1) + gear[data[i]]) & MASK64
            i += 1
            if not h & mask_s:
                cut = i
                break
        else:
            while i < end:
                h = ((h << 1) + gear[data[i]]) & MASK64
                i += 1
                if not h & mask_l:
                    cut = i
                    break
        out.append(cut - start)
        start = cut
    return out


# ---- commands -----------------------------------------------------------

def out(text):
    sys.stdout.buffer.write(text if isinstance(text, bytes) else text.encode("utf-8"))


def cmd_list(repo, args):
    for m in repo.snapshots():
        out("%s\t%s\t%s\n" % (m["id"], m.get("time", "?"), m.get("status", "?")))
    return 0


def cmd_ls(repo, args):
    m = repo.find_snapshot(args.snapshot)
    sources = [repo.source(m, args.source)] if args.source else m.get("sources", [])
    for src in sources:
        if len(sources) > 1:
            out("# source %s\n" % src.get("name"))
        for it in repo.items(src):
            name = get_bytes(it, "name", "item")
            if name is None:
                raise FormatError("an item of source '%s' has no name" % src.get("name"))
            line = b"%s\t%d\t%s" % (str(it.get("type")).encode(), int(it.get("size", 0)), printable(name))
            if args.meta:
                meta = it.get("meta", {})
                check_files_meta(meta, printable(name))
                line += b"\t" + json.dumps(meta, sort_keys=True).encode()
            out(line + b"\n")
    return 0


FLAG_LETTERS = "suSDiadAcjtTCP"  # section 11: the chattr letters, in this order


def check_files_meta(meta, where):
    """The "xattrs" and "flags" fields of files metadata, as section 11 defines them."""
    xattrs = meta.get("xattrs")
    if xattrs is not None:
        if not isinstance(xattrs, list) or not xattrs:
            raise FormatError("%s: 'xattrs' is not a non-empty array" % where)
        names = []
        for i, x in enumerate(xattrs):
            what = "%s: xattrs[%d]" % (where, i)
            name = get_bytes(x, "name", what)
            value = get_bytes(x, "value", what)
            if not name or value is None or b"\0" in name:
                raise FormatError("%s has no valid name and value" % what)
            names.append(name)
        if names != sorted(names) or len(set(names)) != len(names):
            raise FormatError("%s: 'xattrs' is not sorted by name without repeats" % where)
    flags = meta.get("flags")
    if flags is not None:
        if not isinstance(flags, str) or not flags or any(c not in FLAG_LETTERS for c in flags) \
                or "".join(c for c in FLAG_LETTERS if c in flags) != flags:
            raise FormatError("%s: 'flags' %r is not a list of letters of %s in that order"
                              % (where, flags, FLAG_LETTERS))


def cmd_cat(repo, args):
    m = repo.find_snapshot(args.snapshot)
    src = repo.source(m, args.source)
    item = repo.find_item(src, os.fsencode(args.name))
    if item.get("type") not in ("file", "stream"):
        raise FormatError("item '%s' is a %s: it has no content" % (args.name, item.get("type")))
    total = 0
    for piece in repo.content(item):
        sys.stdout.buffer.write(piece)
        total += len(piece)
    sys.stdout.buffer.flush()
    if total != item.get("size"):
        raise FormatError("item '%s': %d bytes of content, the tree says %r"
                          % (args.name, total, item.get("size")))
    return 0


def canonical_problem(raw):
    """Why an item tree line (bytes, without its newline) is not compact JSON
    with sorted keys, or None. Readers must not depend on this form; writers
    emit it (section 1), and this checks the writer."""
    def pairs(kv):
        keys = [k for k, _ in kv]
        if any(a >= b for a, b in zip(keys, keys[1:])):
            raise FormatError("keys not in sorted order: %s" % ", ".join(keys))
        return dict(kv)
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs)
    except FormatError as e:
        return str(e)
    except (UnicodeDecodeError, ValueError) as e:
        return "not valid JSON: %s" % e
    again = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
    # \uXXXX escapes of control characters: jansson writes upper-case hex
    def low(b):
        return re.sub(rb"\\u[0-9A-Fa-f]{4}", lambda m: m.group(0).lower(), b)
    if low(again) != low(raw):
        return "not compact JSON as a writer emits it:\n  stored:  %r\n  compact: %r" % (raw[:300], again[:300])
    return None


def cmd_canonical(repo, args):
    m = repo.find_snapshot(args.snapshot)
    n = 0
    for src in m.get("sources", []):
        pending = b""
        for hexid in src.get("tree", []):
            pending += repo.read_blob(bytes.fromhex(hexid), BLOB_TREE)
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                n += 1
                why = canonical_problem(line)
                if why:
                    raise FormatError("source '%s', item tree line %d: %s" % (src.get("name"), n, why))
    out("%d item tree line(s) in canonical form" % n)
    return 0


def cmd_rechunk(repo, args):
    m = repo.find_snapshot(args.snapshot)
    src = repo.source(m, args.source)
    tree = b"".join(repo.read_blob(bytes.fromhex(h), BLOB_TREE) for h in src.get("tree", []))
    checks = [("tree of source '%s'" % args.source, tree, src.get("tree", []))]
    item = repo.find_item(src, os.fsencode(args.name))
    data = b"".join(repo.content(item))
    checks.append(("item '%s'" % args.name, data, item.get("chunks", [])))
    bad = 0
    for what, stream, stored in checks:
        ids, pos = [], 0
        for length in chunk_lengths(stream, repo.chunker, repo.seed):
            ids.append(repo.blob_id(stream[pos:pos + length]).hex())
            pos += length
        if ids == list(stored):
            out("%s: %d chunk(s), boundaries and ids match\n" % (what, len(ids)))
        else:
            sys.stderr.write("engine_reader: %s: re-chunking gives %d chunk(s) that differ from the "
                             "%d stored\n" % (what, len(ids), len(stored)))
            bad += 1
    return 1 if bad else 0


def cmd_verify(repo, args):
    failures = []

    def fail(msg):
        failures.append(msg)
        sys.stderr.write("engine_reader: verify: %s\n" % msg)

    # 1. Every pack: name = SHA-256, header, every blob decrypted and checked.
    blobs = {}  # (pack id, blob id) -> (offset, length, raw_length, type)
    verified = {}  # blob id -> type, for blobs that decoded correctly
    n_packs = n_blobs = 0
    for name in repo.list("data/"):
        parts = name.split("/")
        if len(parts) != 3 or not HEX64.match(parts[2]) or parts[1] != parts[2][:2]:
            fail("'%s' is not a pack name (data/xx/<64 hex>)" % name)
            continue
        pid = parts[2]
        n_packs += 1
        buf = repo.read(name)
        if hashlib.sha256(buf).hexdigest() != pid:
            fail("pack %s: content does not match its name" % pid)
            continue
        if len(buf) < 8 or buf[-4:] != PACK_MAGIC[repo.version]:
            fail("pack %s: trailer magic missing" % pid)
            continue
        key, first = repo.enc_key, 0
        if repo.version == 2:
            try:
                key, first = repo.pack_key(pid, buf[:SEALED_DK_LEN]), SEALED_DK_LEN
            except FormatError as err:
                fail(str(err))
                continue
        hl = int.from_bytes(buf[-8:-4], "little")
        if hl > len(buf) - 8:
            fail("pack %s: header length out of range" % pid)
            continue
        data_end = len(buf) - 8 - hl
        header = repo.aead.open(key, b"packheader", buf[data_end:len(buf) - 8])
        if header is None:
            fail("pack %s: header authentication failed" % pid)
            continue
        if len(header) < 8 or header[:4] != PACK_HEADER_MAGIC or \
                (len(header) - 8) % PACK_ENTRY_SIZE or \
                (len(header) - 8) // PACK_ENTRY_SIZE != int.from_bytes(header[4:8], "little"):
            fail("pack %s: header is malformed" % pid)
            continue
        count = int.from_bytes(header[4:8], "little")
        expect_off = first
        for i in range(count):
            e = header[8 + i * PACK_ENTRY_SIZE:8 + (i + 1) * PACK_ENTRY_SIZE]
            btype, bid = e[0], bytes(e[1:33])
            off, length, raw_length = (int.from_bytes(e[33 + 4 * k:37 + 4 * k], "little") for k in range(3))
            n_blobs += 1
            if btype not in BLOB_TYPE_NAMES:
                fail("pack %s entry %d: unknown blob type %d" % (pid, i, btype))
                continue
            if off + length > data_end:
                fail("pack %s entry %d: points outside the pack" % (pid, i))
                continue
            if off != expect_off:
                fail("pack %s entry %d: offset %d, expected %d (blobs are contiguous)" % (pid, i, off, expect_off))
            expect_off = off + length
            try:
                raw = repo.decode_blob(bid, btype, buf[off:off + length], key, repo.pack_idk.get(pid))
            except FormatError as err:
                fail("pack %s: %s" % (pid, err))
                continue
            if len(raw) != raw_length:
                fail("pack %s: blob %s has %d bytes, the header says %d" % (pid, bid.hex(), len(raw), raw_length))
                continue
            blobs[(pid, bid)] = (off, length, raw_length, btype)
            verified[bid] = btype
        if expect_off != data_end:
            fail("pack %s: %d bytes between the last blob and the header" % (pid, data_end - expect_off))

    algo_counts = dict(repo.algo_counts)  # the pack pass decodes each stored blob once

    # 2. Every index entry names a blob that is in that pack, as described.
    n_index = 0
    for name in repo.list("index/"):
        n_index += 1
        try:
            obj = repo.load_json("index", name[len("index/"):])
        except FormatError as err:
            fail(str(err))
            continue
        try:
            for p in obj.get("packs", []):
                for b in p.get("blobs", []):
                    key = (p.get("id"), bytes.fromhex(b.get("id", "")))
                    want = (b.get("offset"), b.get("length"), b.get("raw_length"),
                            BLOB_TREE if b.get("type") == "tree" else BLOB_DATA)
                    if blobs.get(key) != want:
                        fail("index %s: blob %s in pack %s does not match the pack's header"
                             % (name[len("index/"):][:8], b.get("id"), p.get("id")))
        except (AttributeError, TypeError, ValueError) as err:
            fail("index %s: malformed (%s)" % (name[len("index/"):][:8], err))
    try:
        repo.load_index()
    except FormatError as err:
        fail(str(err))

    # 3. Every snapshot: its trees and every chunk they name are indexed and verified.
    n_snaps = n_shredded = 0
    for name in repo.list("snapshots/"):
        sid = name[len("snapshots/"):]
        n_snaps += 1
        try:
            m = repo.load_json("snapshot", sid)
            if m.get("repository") != repo.id:
                fail("snapshot %s belongs to repository %s" % (sid[:8], m.get("repository")))
            for src in m.get("sources", []):
                for h in src.get("tree", []):
                    if verified.get(bytes.fromhex(h)) != BLOB_TREE or bytes.fromhex(h) not in repo.index:
                        fail("snapshot %s: tree blob %s is missing or damaged" % (sid[:8], h))
                for it in repo.items(src):
                    tk = it.get("tenant_key")
                    t = repo.item_tenant(bytes.fromhex(tk)) if tk and repo.version == 2 else None
                    if t is not None and t["key"] is None:
                        n_shredded += 1  # its data is gone by design
                        continue
                    size = 0
                    for h in it.get("chunks", []):
                        bid = bytes.fromhex(h)
                        if verified.get(bid) != BLOB_DATA or bid not in repo.index:
                            fail("snapshot %s: chunk %s is missing or damaged" % (sid[:8], h))
                        else:
                            size += repo.index[bid][3]
                    if it.get("type") in ("file", "stream") and size != it.get("size"):
                        fail("snapshot %s: item %r: chunks hold %d bytes, the tree says %r"
                             % (sid[:8], get_bytes(it, "name", "item"), size, it.get("size")))
        except FormatError as err:
            fail("snapshot %s: %s" % (sid[:8], err))
    names = {COMPRESS_NONE: "none", COMPRESS_ZSTD: "zstd", COMPRESS_GZIP: "gzip"}
    out("blobs by compression: %s\n" % ", ".join(
        "%s %d" % (names.get(a, "unknown(%d)" % a), n) for a, n in sorted(algo_counts.items())))
    indexed_packs = {e[0] for e in repo.index.values()}
    unindexed = len({pid for pid, _ in blobs} - indexed_packs)
    if n_shredded:
        out("%d item(s) of shredded tenants skipped\n" % n_shredded)
    out("%d pack(s), %d blob(s), %d index object(s), %d snapshot(s) checked; %d pack(s) not in any index; "
        "%s\n" % (n_packs, n_blobs, n_index, n_snaps, unindexed,
                  "%d failure(s)" % len(failures) if failures else "no errors"))
    return 1 if failures else 0


def cmd_credential(repo, args):
    """A writer credential must name this repository and its current public
    key, and hold nothing that reads: no private key of the keyring (raw,
    or as any 32-byte field), not the master secret."""
    if repo.version != 2:
        raise FormatError("writer credentials exist in format 2 only")
    with open(args.file, "rb") as f:
        text = f.read()
    c = json.loads(text.decode("utf-8"))
    problems = []
    if c.get("type") != "engine-writer-credential" or c.get("repository") != repo.id:
        problems.append("not a writer credential of this repository")
    for field in c:
        if "private" in field or "master" in field:
            problems.append("field %r" % field)
    secrets = {priv: "private key %s" % kid.hex() for kid, (priv, _) in repo.keypairs.items()}
    secrets[repo.master_secret] = "the master secret"
    for field, value in c.items():
        if not isinstance(value, str):
            continue
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        for secret, what in secrets.items():
            if secret == raw or secret in text or secret.hex().encode() in text or \
                    base64.b64encode(secret) in text:
                problems.append("%s (field %r)" % (what, field))
    pub = base64.b64decode(c.get("public_key", ""))
    if pub != repo.current_public:
        problems.append("its public key is not the keyring's current one")
    if hashlib.sha256(pub).digest()[:8].hex() != c.get("key_id"):
        problems.append("key_id is not SHA-256(public_key)[:8]")
    if base64.b64decode(c.get("index_key", "")) != repo.enc_key or \
            base64.b64decode(c.get("id_key", "")) != repo.id_key:
        problems.append("its index key or id key is not the repository's")
    if problems:
        for p in sorted(set(problems)):
            sys.stderr.write("engine_reader: credential: holds %s\n" % p)
        return 1
    out("credential: repository %s, public key %s; holds no private key and not the master "
        "secret (%d key pair(s) checked)\n" % (repo.id[:8], c.get("key_id"), len(repo.keypairs)))
    return 0


def cmd_tenants(repo, args):
    """Format 2: the tenant keys of every keyring, as JSON lines (key in base64
    while it exists)."""
    for kid, t in sorted(repo.tenants.items()):
        o = {"id": kid.hex(), "name": t["name"], "shredded": t["shredded"]}
        if t["key"] is not None:
            o["key"] = base64.b64encode(t["key"]).decode("ascii")
        out(json.dumps(o, sort_keys=True) + "\n")
    return 0


def main(argv):
    ap = argparse.ArgumentParser(prog="engine_reader.py",
                                 description="Independent reader for engine repositories (formats 1 and 2).")
    ap.add_argument("repo", metavar="REPO_DIR")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--passphrase-env", metavar="VAR", help="environment variable holding the passphrase")
    g.add_argument("--passphrase-file", metavar="PATH",
                   help="file holding the passphrase (one trailing newline is ignored)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list snapshots: id, time, status")
    p = sub.add_parser("ls", help="list the items of a snapshot: type, size, name")
    p.add_argument("snapshot")
    p.add_argument("source", nargs="?")
    p.add_argument("--meta", action="store_true", help="also print each item's metadata as JSON")
    p = sub.add_parser("cat", help="write an item's content to stdout")
    p.add_argument("snapshot")
    p.add_argument("source")
    p.add_argument("name")
    sub.add_parser("verify", help="decrypt and check every blob of every pack and every reference")
    p = sub.add_parser("canonical", help="check every item tree line is compact JSON with sorted keys")
    p.add_argument("snapshot")
    p = sub.add_parser("rechunk", help="re-chunk an item and its source's tree, compare with the stored ids")
    p.add_argument("snapshot")
    p.add_argument("source")
    p.add_argument("name")
    sub.add_parser("tenants", help="format 2: the tenant keys of the keyrings, one JSON object per line")
    p = sub.add_parser("credential", help="format 2: check a writer credential holds no private key")
    p.add_argument("file")
    args = ap.parse_args(argv)

    passphrase = None
    if args.passphrase_env:
        if args.passphrase_env not in os.environ or not os.environ[args.passphrase_env]:
            sys.stderr.write("engine_reader: environment variable %s is not set or empty\n"
                             % args.passphrase_env)
            return 2
        passphrase = os.environb[os.fsencode(args.passphrase_env)]
    elif args.passphrase_file:
        try:
            with open(args.passphrase_file, "rb") as f:
                passphrase = f.read()
        except OSError as e:
            sys.stderr.write("engine_reader: unable to read '%s': %s\n" % (args.passphrase_file, e.strerror))
            return 2
        if passphrase.endswith(b"\n"):
            passphrase = passphrase[:-1]
        if passphrase.endswith(b"\r"):
            passphrase = passphrase[:-1]

    repo = Repo(args.repo)
    try:
        if not os.path.isfile(repo.path("config")):
            raise FormatError("'%s' holds no repository (no 'config' object)" % args.repo)
        repo.open(passphrase)
        cmd = {"list": cmd_list, "ls": cmd_ls, "cat": cmd_cat, "verify": cmd_verify,
               "rechunk": cmd_rechunk, "credential": cmd_credential, "canonical": cmd_canonical,
               "tenants": cmd_tenants}[args.cmd]
        return cmd(repo, args)
    except FormatError as e:
        sys.stderr.write("engine_reader: %s\n" % e)
        return 1
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
