#!/usr/bin/python3
"""A minimal MongoDB wire-protocol server that keeps documents as raw bytes.

For the mongodb source's tests where CongoDB cannot serve: it never decodes
and re-encodes a stored document (what an insert sends is what a find
returns, byte for byte), it can pretend to be a replica-set primary that
answers read concern "snapshot" with a cluster time, and it can refuse
things on purpose. It is a test fixture, not a database: no query language
(find returns every document of a collection, in insertion order), no
index is ever used, one connection at a time per thread. `create` keeps its
options verbatim and lists them back (a view when they name viewOn, a
time-series collection with its system.buckets collection when they name
timeseries).

    mongowire.py --port PORT [--replset NAME [--hosts H1,H2 [--secondary]] | --mongos]
                 [--load DB.COLL=FILE.bson]... [--log FILE]
                 [--scram USER:PASSWORD] [--auth-fail]
                 [--tls-cert PEM [--tls-ca PEM]]
                 [--snapshot-refuse]
                 [--snapshot-too-old-after N] [--getmore-too-old-after N]
                 [--on-find-drop DB.COLL=DB.OTHER]... [--getmore-delay SECONDS]

--log FILE               one JSON line per command that reads or writes
                         data (find with its readConcern and
                         $readPreference, getMore and killCursors with
                         their cursor ids, insert with its count,
                         bytes and ordered flag, create, createIndexes,
                         drop, _mergeAuthzCollections with its arguments),
                         and per refused TLS handshake or authentication
--replset NAME           a replica-set member (hello says so); --hosts the
                         members (the first is the primary; default: this
                         server alone), --secondary: this one is a
                         secondary. Each member is its own process with its
                         own data (load the same files into each).
--mongos                 a mongos of a sharded cluster (hello says
                         isdbgrid); snapshot reads are answered as by a
                         replica set
--scram USER:PASSWORD    SCRAM-SHA-256 (RFC 5802/7677, MongoDB's
                         saslStart/saslContinue) for USER defined in admin;
                         every command but hello, buildInfo and ping needs
                         it (Unauthorized, code 13, before); a wrong
                         password gets AuthenticationFailed (code 18)
--auth-fail              saslStart answers AuthenticationFailed (code 18),
                         as a server does for a wrong user or password
--tls-cert PEM           speak TLS only, with this certificate and key (one
                         file); --tls-ca PEM: require a client certificate
                         signed by this CA (as mongod's tlsCAFile does)
--snapshot-refuse        a find with read concern snapshot fails with
                         InvalidOptions (code 72), as a 4.4 server does
--snapshot-too-old-after N
                         finds naming atClusterTime after the first N fail
                         with SnapshotTooOld (code 239)
--getmore-too-old-after N
                         the getMore number N+1 of a snapshot cursor fails
                         with SnapshotTooOld
--on-find-drop A=B       a find on collection A drops collection B (a
                         collection dropped while the backup runs)
--getmore-delay SECONDS  each getMore is answered after this long (a slow
                         server, or a large collection, in a test's time)

Needs Debian's python3-pymongo (for its bson module), run with /usr/bin/python3.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import socketserver
import struct
import sys
import threading
import time

import bson
from bson.codec_options import CodecOptions
from bson.int64 import Int64
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp
from bson.binary import Binary

RAW = CodecOptions(document_class=RawBSONDocument)
OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
CLUSTER_TIME = Timestamp(1700000000, 7)


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.colls = {}  # (db, coll) -> {"docs": [bytes], "options": raw, "indexes": [raw]}
        self.cursors = {}
        self.next_cursor = 1
        self.finds_with_time = 0

    def coll(self, db, name, create=True):
        key = (db, name)
        if key not in self.colls and create:
            self.colls[key] = {"docs": [], "options": bson.encode({}), "indexes": [],
                               "type": "collection"}
        return self.colls.get(key)


def reply_doc(d):
    return bson.encode(d)


def err(code, name, msg):
    return {"ok": 0.0, "errmsg": msg, "code": code, "codeName": name}


class Server:
    def __init__(self, args):
        self.args = args
        self.store = Store()
        self.log = open(args.log, "a") if args.log else None
        self.log_lock = threading.Lock()
        self.scram = args.scram.split(":", 1) if args.scram else None
        self.drops = dict(x.split("=", 1) for x in args.on_find_drop)
        for spec in args.load:
            ns, path = spec.split("=", 1)
            db, name = ns.split(".", 1)
            c = self.store.coll(db, name)
            with open(path, "rb") as f:
                data = f.read()
            off = 0
            while off < len(data):
                (n,) = struct.unpack_from("<i", data, off)
                c["docs"].append(data[off:off + n])
                off += n

    def note(self, **kv):
        if self.log:
            kv["port"] = self.args.port
            with self.log_lock:
                self.log.write(json.dumps(kv, default=str) + "\n")
                self.log.flush()

    def hello(self, cmd):
        port = self.args.port
        r = {"ismaster": True, "isWritablePrimary": True, "helloOk": True,
             "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48000000,
             "maxWriteBatchSize": 100000, "logicalSessionTimeoutMinutes": 30,
             "minWireVersion": 0, "maxWireVersion": 17, "connectionId": 1, "ok": 1.0}
        if self.args.mongos:
            r["msg"] = "isdbgrid"
        if self.args.replset:
            me = "127.0.0.1:%d" % port
            hosts = self.args.hosts.split(",") if self.args.hosts else [me]
            r.update({"setName": self.args.replset, "setVersion": 1, "hosts": hosts,
                      "primary": hosts[0], "me": me, "secondary": bool(self.args.secondary)})
            if self.args.secondary:
                r.update({"ismaster": False, "isWritablePrimary": False})
        if "saslSupportedMechs" in cmd:
            r["saslSupportedMechs"] = ["SCRAM-SHA-256"]
        return r

    # ---- SCRAM-SHA-256 (RFC 5802 and 7677, as MongoDB carries it) ----
    SALT = b"mongowire-salt-of-28-bytes!!"  # MongoDB: the hash size less 4
    ITERATIONS = 4096

    def sasl_start(self, db, cmd, conn):
        if self.args.auth_fail:
            self.note(op="auth", ok=False)
            return err(18, "AuthenticationFailed", "Authentication failed.")
        if self.scram is None:
            return err(2, "BadValue", "mongowire does not authenticate")
        if cmd.get("mechanism") != "SCRAM-SHA-256":
            return err(2, "BadValue", "Unsupported mechanism %s" % cmd.get("mechanism"))
        first = bytes(cmd["payload"]).decode()
        if not first.startswith("n,,"):
            return err(17, "ProtocolError", "unsupported GS2 header")
        bare = first[3:]
        attrs = dict(kv.split("=", 1) for kv in bare.split(","))
        user = attrs.get("n", "").replace("=2C", ",").replace("=3D", "=")
        nonce = attrs.get("r", "") + base64.b64encode(os.urandom(18)).decode()
        server_first = "r=%s,s=%s,i=%d" % (nonce, base64.b64encode(self.SALT).decode(),
                                          self.ITERATIONS)
        opts = cmd.get("options") or {}
        conn["sasl"] = {"bare": bare, "server_first": server_first, "nonce": nonce,
                        "user": user, "db": db, "skip_empty": bool(opts.get("skipEmptyExchange"))}
        return {"conversationId": 1, "done": False, "payload": Binary(server_first.encode()),
                "ok": 1.0}

    def sasl_continue(self, cmd, conn):
        st = conn.get("sasl")
        if st is None:
            return err(17, "ProtocolError", "no SASL conversation")
        if st.get("verified"):
            conn["sasl"] = None
            return {"conversationId": 1, "done": True, "payload": Binary(b""), "ok": 1.0}
        final = bytes(cmd["payload"]).decode()
        attrs = dict(kv.split("=", 1) for kv in final.split(","))
        without_proof = final[:final.rindex(",p=")]
        auth_msg = ",".join((st["bare"], st["server_first"], without_proof)).encode()
        salted = hashlib.pbkdf2_hmac("sha256", self.scram[1].encode(), self.SALT, self.ITERATIONS)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored = hashlib.sha256(client_key).digest()
        signature = hmac.new(stored, auth_msg, hashlib.sha256).digest()
        proof = base64.b64decode(attrs.get("p", ""))
        recovered = bytes(a ^ b for a, b in zip(proof, signature))
        good = (len(proof) == len(signature) and attrs.get("r") == st["nonce"]
                and st["user"] == self.scram[0] and st["db"] == "admin"
                and hmac.compare_digest(hashlib.sha256(recovered).digest(), stored))
        self.note(op="auth", user=st["user"], ok=good)
        if not good:
            conn["sasl"] = None
            return err(18, "AuthenticationFailed", "Authentication failed.")
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        v = base64.b64encode(hmac.new(server_key, auth_msg, hashlib.sha256).digest())
        conn["authed"] = True
        st["verified"] = True
        done = st["skip_empty"]
        if done:
            conn["sasl"] = None
        return {"conversationId": 1, "done": done, "payload": Binary(b"v=" + v), "ok": 1.0}

    def merge_authz(self, cmd):
        st = self.store
        args = {k: cmd[k] for k in ("tempUsersCollection", "tempRolesCollection", "drop", "db")
                if k in cmd}
        self.note(op="_mergeAuthzCollections", args=args)
        pairs = [(k, t) for k, t in (("tempUsersCollection", "system.users"),
                                     ("tempRolesCollection", "system.roles")) if k in cmd]
        if not pairs:
            return err(2, "BadValue", "Must provide at least one of \"tempUsersCollection\" and "
                       "\"tempRolesCollection\"")
        for key, target in pairs:
            src = st.coll("admin", cmd[key].split(".", 1)[1], create=False)
            if src is None:
                return err(26, "NamespaceNotFound", "%s does not exist" % cmd[key])
            t = st.coll("admin", target)
            if cmd.get("drop"):
                t["docs"] = list(src["docs"])
            else:
                have = {bson.decode(d)["_id"] for d in t["docs"]}
                t["docs"].extend(d for d in src["docs"] if bson.decode(d)["_id"] not in have)
        return {"ok": 1.0}

    def batch(self, cursor_id, ns, docs, first, extra=None):
        key = "firstBatch" if first else "nextBatch"
        c = {key: [RawBSONDocument(d) for d in docs], "id": Int64(cursor_id), "ns": ns}
        if extra:
            c.update(extra)
        return {"cursor": c, "ok": 1.0}

    def command(self, db, cmd, seqs, conn):
        name = next(iter(cmd.keys()))
        st = self.store
        if name in ("hello", "isMaster", "ismaster"):
            return self.hello(cmd)
        if name == "buildInfo":
            return {"version": "7.0.0-mongowire", "versionArray": [7, 0, 0, 0], "ok": 1.0}
        if name in ("ping", "endSessions"):
            return {"ok": 1.0}
        if name == "saslStart":
            return self.sasl_start(db, cmd, conn)
        if name == "saslContinue":
            return self.sasl_continue(cmd, conn)
        if self.scram is not None and not conn.get("authed"):
            self.note(op="unauthorized", command=name)
            return err(13, "Unauthorized", "command %s requires authentication" % name)
        if name == "killCursors":
            ids = [int(i) for i in cmd.get("cursors", [])]
            with st.lock:
                killed = [i for i in ids if st.cursors.pop(i, None) is not None]
            self.note(op="killCursors", ns=db + "." + str(cmd["killCursors"]), cursors=ids)
            return {"cursorsKilled": [Int64(i) for i in killed],
                    "cursorsNotFound": [Int64(i) for i in ids if i not in killed],
                    "cursorsAlive": [], "cursorsUnknown": [], "ok": 1.0}
        if name == "getMore" and self.args.getmore_delay > 0:
            time.sleep(self.args.getmore_delay)
        if name in ("create", "createIndexes", "drop", "dropDatabase"):
            entry = {"op": name, "ns": db + "." + str(cmd[name]) if name != "dropDatabase" else db}
            if name == "create":
                entry["options"] = sorted(k for k in cmd.keys() if k not in (
                    "create", "lsid", "$db", "writeConcern", "$clusterTime", "$readPreference"))
            if name == "createIndexes":
                entry["indexes"] = [i["name"] for i in cmd["indexes"]]
            self.note(**entry)
        with st.lock:
            if name == "_mergeAuthzCollections":
                return self.merge_authz(cmd)
            if name == "listDatabases":
                dbs = sorted({d for (d, _) in st.colls})
                return {"databases": [{"name": d} for d in dbs], "ok": 1.0}
            if name == "listCollections":
                flt = cmd.get("filter") or {}
                want = flt.get("name") if "name" in flt else None
                out = []
                for (d, cname), c in sorted(st.colls.items()):
                    if d != db or (want is not None and cname != want):
                        continue
                    out.append({"name": cname, "type": c["type"],
                                "options": RawBSONDocument(c["options"]),
                                "info": {"readOnly": False,
                                         "uuid": Binary(bytes(range(16)), 4)},
                                "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}})
                return {"cursor": {"firstBatch": out, "id": Int64(0),
                                   "ns": db + ".$cmd.listCollections"}, "ok": 1.0}
            if name == "listIndexes":
                c = st.coll(db, cmd["listIndexes"], create=False)
                if c is None:
                    return err(26, "NamespaceNotFound", "ns does not exist")
                idx = [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]
                idx += [RawBSONDocument(i) for i in c["indexes"]]
                return {"cursor": {"firstBatch": idx, "id": Int64(0), "ns": db + "." + cmd["listIndexes"]},
                        "ok": 1.0}
            if name == "create":
                if (db, cmd["create"]) in st.colls:
                    return err(48, "NamespaceExists", "collection already exists")
                c = st.coll(db, cmd["create"])
                skip = ("create", "lsid", "$db", "writeConcern", "$clusterTime", "$readPreference")
                opts = {k: cmd[k] for k in cmd.keys() if k not in skip}
                c["options"] = bson.encode(opts)
                if "viewOn" in opts:
                    c["type"] = "view"
                elif "timeseries" in opts:
                    c["type"] = "timeseries"
                    st.coll(db, "system.buckets." + cmd["create"])
                return {"ok": 1.0}
            if name == "drop":
                if st.colls.pop((db, cmd["drop"]), None) is None:
                    return err(26, "NamespaceNotFound", "ns not found")
                st.colls.pop((db, "system.buckets." + cmd["drop"]), None)
                return {"ok": 1.0}
            if name == "dropDatabase":
                for k in [k for k in st.colls if k[0] == db]:
                    del st.colls[k]
                return {"ok": 1.0}
            if name == "createIndexes":
                c = st.coll(db, cmd["createIndexes"])
                for i in cmd["indexes"]:
                    c["indexes"].append(i.raw)
                return {"ok": 1.0}
            if name == "insert":
                c = st.coll(db, cmd["insert"])
                docs = seqs.get("documents")
                if docs is None:
                    docs = [d.raw for d in cmd["documents"]]
                c["docs"].extend(docs)
                self.note(op="insert", ns=db + "." + cmd["insert"], n=len(docs),
                          bytes=sum(len(d) for d in docs), ordered=cmd.get("ordered", True),
                          bypassDocumentValidation=cmd.get("bypassDocumentValidation", False))
                return {"n": len(docs), "ok": 1.0}
            if name == "find":
                return self.find(db, cmd)
            if name == "getMore":
                return self.get_more(db, cmd)
        return err(59, "CommandNotFound", "no such command: '%s'" % name)

    def find(self, db, cmd):
        st = self.store
        coll = cmd["find"]
        rc = cmd.get("readConcern")
        rcd = {k: rc[k] for k in rc.keys()} if rc is not None else None
        rp = cmd.get("$readPreference")
        self.note(op="find", ns=db + "." + coll, readConcern=rcd,
                  readPreference={k: rp[k] for k in rp.keys()} if rp is not None else None)
        extra = None
        snap = rcd is not None and rcd.get("level") == "snapshot"
        if snap:
            if self.args.snapshot_refuse:
                return err(72, "InvalidOptions",
                           "readConcern level snapshot is only valid in multi-statement transactions")
            if not self.args.replset and not self.args.mongos:
                return err(123, "NotAReplicaSet", "snapshot reads need a replica set")
            if "atClusterTime" in rcd:
                st.finds_with_time += 1
                if 0 <= self.args.snapshot_too_old_after < st.finds_with_time:
                    return err(239, "SnapshotTooOld", "Read timestamp is older than the oldest available timestamp")
            extra = {"atClusterTime": rcd.get("atClusterTime", CLUSTER_TIME)}
        if coll in self.drops:
            other = self.drops.pop(coll)
            st.colls.pop((db, other), None)
        c = st.coll(db, coll, create=False)
        docs = list(c["docs"]) if c else []
        n = int(cmd.get("batchSize", 101)) or 101
        if cmd.get("limit"):
            docs = docs[:int(cmd["limit"])]
        first, rest = docs[:n], docs[n:]
        cid = 0
        if rest and not cmd.get("singleBatch"):
            cid = st.next_cursor
            st.next_cursor += 1
            st.cursors[cid] = {"docs": rest, "ns": db + "." + coll, "snap": snap, "getmores": 0}
        return self.batch(cid, db + "." + coll, first, True, extra)

    def get_more(self, db, cmd):
        st = self.store
        cid = int(cmd["getMore"])
        cur = st.cursors.get(cid)
        if cur is None:
            return err(43, "CursorNotFound", "cursor id %d not found" % cid)
        cur["getmores"] += 1
        self.note(op="getMore", ns=cur["ns"], n=cur["getmores"], cursor=cid)
        if cur["snap"] and 0 <= self.args.getmore_too_old_after < cur["getmores"]:
            del st.cursors[cid]
            return err(239, "SnapshotTooOld", "Read timestamp is older than the oldest available timestamp")
        n = int(cmd.get("batchSize", 101)) or 101
        out, cur["docs"] = cur["docs"][:n], cur["docs"][n:]
        if not cur["docs"]:
            del st.cursors[cid]
            cid = 0
        return self.batch(cid, cur["ns"], out, False)


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def parse_msg(body):
    (flags,) = struct.unpack_from("<I", body, 0)
    off = 4
    end = len(body) - (4 if flags & 1 else 0)
    cmd, seqs = None, {}
    while off < end:
        kind = body[off]
        off += 1
        if kind == 0:
            (n,) = struct.unpack_from("<i", body, off)
            cmd = bson.decode(body[off:off + n], codec_options=RAW)
            off += n
        else:
            (size,) = struct.unpack_from("<i", body, off)
            sec_end = off + size
            p = body.index(b"\0", off + 4)
            ident = body[off + 4:p].decode()
            p += 1
            docs = []
            while p < sec_end:
                (n,) = struct.unpack_from("<i", body, p)
                docs.append(body[p:p + n])
                p += n
            seqs[ident] = docs
            off = sec_end
    return cmd, seqs


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server.app
        sock = self.request
        conn = {}
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.do_handshake()
            except (ssl.SSLError, OSError) as e:
                srv.note(op="tls", ok=False, error=str(e))
                return
        try:
            while True:
                header = read_exact(sock, 16)
                length, req_id, _, op = struct.unpack("<iiii", header)
                body = read_exact(sock, length - 16)
                if op == OP_QUERY:
                    p = body.index(b"\0", 4)
                    coll = body[4:p].decode()
                    p += 9
                    (n,) = struct.unpack_from("<i", body, p)
                    cmd = bson.decode(body[p:p + n], codec_options=RAW)
                    db = coll.split(".", 1)[0]
                    r = reply_doc(srv.command(db, cmd, {}, conn))
                    payload = struct.pack("<iqii", 0, 0, 0, 1) + r
                    sock.sendall(struct.pack("<iiii", 16 + len(payload), (req_id + 1000000) % 0x7fffffff, req_id, OP_REPLY) + payload)
                elif op == OP_MSG:
                    cmd, seqs = parse_msg(body)
                    db = cmd.get("$db", "admin")
                    r = reply_doc(srv.command(db, cmd, seqs, conn))
                    payload = struct.pack("<I", 0) + b"\0" + r
                    sock.sendall(struct.pack("<iiii", 16 + len(payload), (req_id + 1000000) % 0x7fffffff, req_id, OP_MSG) + payload)
                else:
                    return
        except (EOFError, ConnectionError, ssl.SSLError):
            return


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    tls = None

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls is not None:
            # the handshake happens in the connection's own thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


def main():
    ap = argparse.ArgumentParser(description="raw-BSON MongoDB wire-protocol test server")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--replset")
    ap.add_argument("--hosts")
    ap.add_argument("--secondary", action="store_true")
    ap.add_argument("--mongos", action="store_true")
    ap.add_argument("--scram")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-ca")
    ap.add_argument("--load", action="append", default=[])
    ap.add_argument("--log")
    ap.add_argument("--auth-fail", action="store_true")
    ap.add_argument("--snapshot-refuse", action="store_true")
    ap.add_argument("--snapshot-too-old-after", type=int, default=-1)
    ap.add_argument("--getmore-too-old-after", type=int, default=-1)
    ap.add_argument("--on-find-drop", action="append", default=[])
    ap.add_argument("--getmore-delay", type=float, default=0)
    ap.add_argument("--pidfile")
    args = ap.parse_args()
    app = Server(args)
    srv = TCPServer(("127.0.0.1", args.port), Handler)
    srv.app = app
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert)
        if args.tls_ca:
            ctx.load_verify_locations(args.tls_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        srv.tls = ctx
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(str(os.getpid()))
    print("mongowire listening on 127.0.0.1:%d" % args.port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
