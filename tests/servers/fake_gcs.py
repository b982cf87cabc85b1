#!/usr/bin/env python3
"""A FAKE Google Cloud Storage server for tests, written from Google's public
documentation -- not Google's code, and not an emulator of everything GCS does.

Documents followed:
  * JSON API objects: insert (uploadType=media, multipart, resumable), get
    (metadata and alt=media with Range), list (prefix, maxResults, pageToken),
    delete; preconditions (ifGenerationMatch=0 -> 412 when the object exists).
  * Resumable uploads: POST ...?uploadType=resumable answers 200 with a
    Location (the session URI); PUT chunks with "Content-Range: bytes A-B/TOTAL"
    (non-final chunks a multiple of 256 KiB); 308 "Resume Incomplete" with
    "Range: bytes=0-N" (no Range when nothing is stored); "Content-Range:
    bytes */TOTAL" asks for the status; DELETE cancels (499).
  * OAuth 2.0 for service accounts (RFC 7523 JWT bearer grant): POST
    grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT to the
    token URI; the JWT is RS256-signed with claims iss, scope, aud, iat, exp.

What it checks that a real server would: the RS256 signature of the
assertion against the test service account's public key (with the openssl
command line tool), the claims (aud is the token URI, exp - iat <= 3600, iat
not in the future), bearer tokens on every storage request (401 once
expired), chunk alignment and offsets, preconditions. What it cannot show:
real IAM, quotas, real latency or throughput, CRC32C, every error format.

Test controls (not part of GCS), all under /__fake/:
  GET  /__fake/requests          the recorded storage and token requests (JSON)
  POST /__fake/reset             forget the recorded requests
  POST /__fake/expire-tokens     every issued access token expires now
  POST /__fake/delay?ms=250      every storage request waits this long first
  POST /__fake/fail?status=503&count=2&match=chunk[&commit=1]
       the next `count` requests of kind `match` (chunk, upload, download,
       list, delete, meta, token, any) answer `status`; with commit=1 a chunk
       is stored before the error is returned (a lost answer)

Usage: fake_gcs.py --port 0 --port-file F --bucket B [--public-key PEM]
                   [--token-lifetime 5] [--require-auth]
"""
import argparse
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GRANULE = 256 * 1024
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

lock = threading.Lock()
objects = {}  # (bucket, name) -> {"data": bytes, "generation": int}
sessions = {}  # upload_id -> {"bucket", "name", "total", "data": bytearray, "precondition"}
tokens = {}  # token -> {"expires": float, "id": int}
requests_log = []
faults = []  # [{"status", "count", "match", "commit"}]
delay_ms = [0]
generation = [1000]
opts = None


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def resource(bucket, name, obj):
    data = obj["data"]
    return {
        "kind": "storage#object",
        "id": "%s/%s/%d" % (bucket, name, obj["generation"]),
        "name": name,
        "bucket": bucket,
        "generation": str(obj["generation"]),
        "metageneration": "1",
        "contentType": "application/octet-stream",
        "size": str(len(data)),
        "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
    }


def verify_rs256(signing_input, signature):
    """Checks the signature with `openssl dgst -sha256 -verify`."""
    with tempfile.TemporaryDirectory() as d:
        sig_path = os.path.join(d, "sig")
        with open(sig_path, "wb") as f:
            f.write(signature)
        p = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", opts.public_key, "-signature", sig_path],
            input=signing_input, capture_output=True)
        return p.returncode == 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-gcs/1"

    def log_message(self, fmt, *args):
        if opts.verbose:
            sys.stderr.write("fake_gcs: " + (fmt % args) + "\n")

    # ---- plumbing ----
    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send(self, status, body=b"", headers=None, ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body or status not in (204, 304):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.entry["status"] = status

    def error(self, status, message, reason="invalid"):
        self.send(status, {"error": {"code": status, "message": message,
                                     "errors": [{"message": message, "reason": reason}]}})

    def record(self, kind):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        self.entry = {
            "kind": kind,
            "method": self.command,
            "path": urllib.parse.unquote(u.path),
            "query": {k: v[0] for k, v in q.items() if k != "upload_id"},
            "content_range": self.headers.get("Content-Range"),
            "range": self.headers.get("Range"),
            "body_len": int(self.headers.get("Content-Length") or 0),
            "auth": "none",
            "token_id": None,
            "status": None,
        }
        with lock:
            requests_log.append(self.entry)
        return u, q

    def fault(self, kind):
        """The injected failure for this request, if any."""
        with lock:
            for f in faults:
                if f["count"] > 0 and f["match"] in (kind, "any"):
                    f["count"] -= 1
                    return f
        return None

    def authorized(self):
        if not opts.require_auth:
            return True
        h = self.headers.get("Authorization") or ""
        if not h.startswith("Bearer "):
            self.error(401, "Anonymous caller does not have storage.objects access.", "required")
            return False
        tok = h[7:]
        with lock:
            t = tokens.get(tok)
        if t is None:
            self.entry["auth"] = "invalid"
            self.error(401, "Invalid Credentials", "authError")
            return False
        self.entry["token_id"] = t["id"]
        if time.time() >= t["expires"]:
            self.entry["auth"] = "expired"
            self.error(401, "Invalid Credentials", "authError")
            return False
        self.entry["auth"] = "ok"
        return True

    # ---- dispatch ----
    def route(self):
        u = urllib.parse.urlsplit(self.path)
        p = u.path
        if p.startswith("/__fake/"):
            return self.control(p, urllib.parse.parse_qs(u.query))
        if p == "/token" and self.command == "POST":
            return self.token()
        if delay_ms[0] > 0:
            time.sleep(delay_ms[0] / 1000.0)
        parts = p.split("/")
        # /upload/storage/v1/b/B/o   /storage/v1/b/B/o[/NAME]   /download/storage/v1/b/B/o/NAME
        if p.startswith("/upload/storage/v1/b/") and len(parts) == 7 and parts[6] == "o":
            bucket = urllib.parse.unquote(parts[5])
            q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
            if "upload_id" in q:
                return self.session(bucket, q["upload_id"][0])
            if self.command == "POST":
                return self.insert(bucket, q)
        for base in ("/storage/v1/b/", "/download/storage/v1/b/"):
            if p.startswith(base):
                rest = p[len(base):].split("/", 2)
                bucket = urllib.parse.unquote(rest[0])
                if len(rest) == 2 and rest[1] == "o" and self.command == "GET":
                    return self.list(bucket, urllib.parse.parse_qs(u.query))
                if len(rest) == 3 and rest[1] == "o":
                    # object names arrive percent-encoded, '/' as %2F
                    name = urllib.parse.unquote(rest[2])
                    q = urllib.parse.parse_qs(u.query)
                    if self.command == "GET":
                        return self.get(bucket, name, q)
                    if self.command == "DELETE":
                        return self.delete(bucket, name)
        self.record("other")
        self.body()
        self.error(404, "Not Found (fake_gcs has no route for %s %s)" % (self.command, p), "notFound")

    do_GET = do_POST = do_PUT = do_DELETE = route

    def control(self, p, q):
        self.entry = {}
        self.body()
        if p == "/__fake/requests":
            with lock:
                return self.send(200, list(requests_log))
        if p == "/__fake/reset" and self.command == "POST":
            with lock:
                requests_log.clear()
                faults.clear()
            return self.send(200, {"ok": True})
        if p == "/__fake/expire-tokens" and self.command == "POST":
            with lock:
                for t in tokens.values():
                    t["expires"] = 0
            return self.send(200, {"expired": len(tokens)})
        if p == "/__fake/fail" and self.command == "POST":
            f = {"status": int(q.get("status", ["503"])[0]), "count": int(q.get("count", ["1"])[0]),
                 "match": q.get("match", ["any"])[0], "commit": q.get("commit", ["0"])[0] == "1"}
            with lock:
                faults.append(f)
            return self.send(200, f)
        if p == "/__fake/delay" and self.command == "POST":
            delay_ms[0] = int(q.get("ms", ["0"])[0])
            return self.send(200, {"delay_ms": delay_ms[0]})
        if p == "/__fake/objects":
            with lock:
                return self.send(200, sorted("%s/%s" % k for k in objects))
        self.error(404, "unknown control " + p)

    # ---- OAuth2 token endpoint ----
    def token(self):
        self.record("token")
        form = urllib.parse.parse_qs(self.body().decode("ascii", "replace"))
        f = self.fault("token")
        if f:
            return self.error(f["status"], "injected failure")
        if form.get("grant_type", [""])[0] != GRANT:
            return self.send(400, {"error": "unsupported_grant_type",
                                   "error_description": "grant_type must be " + GRANT})
        jwt = form.get("assertion", [""])[0]
        parts = jwt.split(".")
        if len(parts) != 3:
            return self.send(400, {"error": "invalid_grant", "error_description": "malformed JWT"})
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except ValueError:
            return self.send(400, {"error": "invalid_grant", "error_description": "undecodable JWT"})
        if header.get("alg") != "RS256" or header.get("typ") != "JWT":
            return self.send(400, {"error": "invalid_grant", "error_description": "alg must be RS256"})
        if not opts.public_key or not verify_rs256((parts[0] + "." + parts[1]).encode(), sig):
            self.entry["auth"] = "bad-signature"
            return self.send(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        now = time.time()
        token_uri = "http://%s/token" % self.headers.get("Host")
        problems = []
        if claims.get("aud") != token_uri:
            problems.append("aud %r is not %r" % (claims.get("aud"), token_uri))
        if claims.get("scope") != SCOPE:
            problems.append("scope %r" % claims.get("scope"))
        if opts.client_email and claims.get("iss") != opts.client_email:
            problems.append("iss %r" % claims.get("iss"))
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            problems.append("iat/exp must be integers")
        elif iat > now + 60 or exp - iat > 3600 or exp <= now:
            problems.append("iat/exp out of range")
        if problems:
            return self.send(400, {"error": "invalid_grant",
                                   "error_description": "Invalid JWT: " + "; ".join(problems)})
        tok = "ya29.fake-" + secrets.token_urlsafe(24)
        with lock:
            tid = len(tokens) + 1
            tokens[tok] = {"expires": now + opts.token_lifetime, "id": tid}
        self.entry["token_id"] = tid
        self.send(200, {"access_token": tok, "expires_in": opts.token_lifetime,
                        "token_type": "Bearer"})

    # ---- objects ----
    def check_bucket(self, bucket):
        if bucket not in opts.bucket:
            self.error(404, "The specified bucket does not exist.", "notFound")
            return False
        return True

    def precondition_ok(self, bucket, name, want):
        if want is None:
            return True
        obj = objects.get((bucket, name))
        have = obj["generation"] if obj else 0
        return int(want) == have

    def store(self, bucket, name, data, precondition):
        with lock:
            if not self.precondition_ok(bucket, name, precondition):
                return None
            generation[0] += 1
            obj = {"data": bytes(data), "generation": generation[0]}
            objects[(bucket, name)] = obj
            return resource(bucket, name, obj)

    def insert(self, bucket, q):
        kind = "upload" if q.get("uploadType", [""])[0] != "resumable" else "session-start"
        self.record(kind)
        data = self.body()
        if not self.authorized() or not self.check_bucket(bucket):
            return
        f = self.fault(kind)
        if f:
            return self.error(f["status"], "injected failure", "backendError")
        utype = q.get("uploadType", [""])[0]
        name = q.get("name", [None])[0]
        pre = q.get("ifGenerationMatch", [None])[0]
        if utype == "media":
            if not name:
                return self.error(400, "Required parameter: name", "required")
            r = self.store(bucket, name, data, pre)
            return self.send(200, r) if r else self.error(412, "Precondition Failed", "conditionNotMet")
        if utype == "multipart":
            ctype = self.headers.get("Content-Type", "")
            if "boundary=" not in ctype:
                return self.error(400, "multipart upload without a boundary")
            boundary = ctype.split("boundary=", 1)[1].strip().strip('"').encode()
            chunks = data.split(b"--" + boundary)
            parts = [c for c in chunks[1:] if not c.startswith(b"--")]
            if len(parts) != 2:
                return self.error(400, "multipart upload needs exactly two parts")
            meta_part, media_part = (p.split(b"\r\n\r\n", 1)[1] for p in parts)
            meta = json.loads(meta_part[:-2] if meta_part.endswith(b"\r\n") else meta_part)
            media = media_part[:-2] if media_part.endswith(b"\r\n") else media_part
            name = name or meta.get("name")
            if not name:
                return self.error(400, "Required parameter: name", "required")
            if "md5Hash" in meta and meta["md5Hash"] != base64.b64encode(hashlib.md5(media).digest()).decode():
                return self.error(400, "Provided MD5 hash does not match", "invalid")
            r = self.store(bucket, name, media, pre)
            return self.send(200, r) if r else self.error(412, "Precondition Failed", "conditionNotMet")
        if utype == "resumable":
            if not name and data:
                name = json.loads(data).get("name")
            if not name:
                return self.error(400, "Required parameter: name", "required")
            total = self.headers.get("X-Upload-Content-Length")
            with lock:
                if not self.precondition_ok(bucket, name, pre):
                    return self.error(412, "Precondition Failed", "conditionNotMet")
                uid = secrets.token_urlsafe(16)
                sessions[uid] = {"bucket": bucket, "name": name, "data": bytearray(), "precondition": pre,
                                 "total": int(total) if total else None}
            loc = "http://%s/upload/storage/v1/b/%s/o?uploadType=resumable&upload_id=%s" % (
                self.headers.get("Host"), urllib.parse.quote(bucket, safe=""), uid)
            return self.send(200, b"", {"Location": loc}, ctype="text/plain")
        self.error(400, "Invalid uploadType %r" % utype)

    def session(self, bucket, uid):
        self.record("chunk" if self.command == "PUT" else "session")
        data = self.body()
        with lock:
            s = sessions.get(uid)
        if s is None:
            return self.error(404, "No such upload session", "notFound")
        if self.command == "DELETE":
            with lock:
                sessions.pop(uid, None)
            return self.send(499, b"", ctype="text/plain")
        if self.command != "PUT":
            return self.error(405, "method not allowed on an upload session")
        if not self.authorized():
            return
        cr = self.headers.get("Content-Range", "")
        status_query = cr.startswith("bytes */")
        if status_query:
            self.entry["kind"] = "status"
        f = None if status_query else self.fault("chunk")
        if f and not f["commit"]:
            return self.error(f["status"], "injected failure", "backendError")
        if not cr.startswith("bytes "):
            return self.error(400, "Content-Range is required")
        rng, _, total = cr[6:].partition("/")
        total = None if total == "*" else int(total)
        if total is not None:
            s["total"] = total
        with lock:
            have = len(s["data"])
            if rng != "*":
                a, _, b = rng.partition("-")
                a, b = int(a), int(b)
                if b - a + 1 != len(data):
                    return self.error(400, "Content-Range does not match the body length")
                if a > have:
                    return self.error(400, "Invalid request: chunk starts at %d, %d bytes are stored" % (a, have))
                final = s["total"] is not None and b + 1 == s["total"]
                if not final and (b + 1) % GRANULE != 0:
                    return self.error(400, "Non-final chunks must be a multiple of 256 KiB")
                s["data"] += data[have - a:]
                have = len(s["data"])
            done = s["total"] is not None and have == s["total"]
            if done and "resource" not in s:
                if not self.precondition_ok(s["bucket"], s["name"], s["precondition"]):
                    sessions.pop(uid, None)
                    return self.error(412, "Precondition Failed", "conditionNotMet")
                generation[0] += 1
                obj = {"data": bytes(s["data"]), "generation": generation[0]}
                objects[(s["bucket"], s["name"])] = obj
                s["resource"] = resource(s["bucket"], s["name"], obj)
        if f:  # commit=1: stored, but the answer is lost
            return self.error(f["status"], "injected failure after commit", "backendError")
        if done:
            return self.send(200, s["resource"])
        hdr = {"Range": "bytes=0-%d" % (have - 1)} if have > 0 else {}
        self.send(308, b"", hdr, ctype="text/plain")

    def get(self, bucket, name, q):
        media = q.get("alt", [""])[0] == "media"
        self.record("download" if media else "meta")
        self.body()
        if not self.authorized() or not self.check_bucket(bucket):
            return
        f = self.fault("download" if media else "meta")
        if f:
            return self.error(f["status"], "injected failure", "backendError")
        with lock:
            obj = objects.get((bucket, name))
        if obj is None:
            return self.error(404, "No such object: %s/%s" % (bucket, name), "notFound")
        if not media:
            return self.send(200, resource(bucket, name, obj))
        data = obj["data"]
        rh = self.headers.get("Range")
        if not rh:
            return self.send(200, data, ctype="application/octet-stream")
        a, _, b = rh[len("bytes="):].partition("-")
        a = int(a)
        b = int(b) if b else len(data) - 1
        if a >= len(data):
            return self.send(416, b"Requested range not satisfiable", ctype="text/plain")
        b = min(b, len(data) - 1)
        self.send(206, data[a:b + 1], {"Content-Range": "bytes %d-%d/%d" % (a, b, len(data))},
                  ctype="application/octet-stream")

    def list(self, bucket, q):
        self.record("list")
        self.body()
        if not self.authorized() or not self.check_bucket(bucket):
            return
        f = self.fault("list")
        if f:
            return self.error(f["status"], "injected failure", "backendError")
        prefix = q.get("prefix", [""])[0]
        page = min(int(q.get("maxResults", ["1000"])[0]), opts.page_size)
        after = q.get("pageToken", [None])[0]
        after = b64url_decode(after).decode() if after else None
        with lock:
            names = sorted(n for (b, n) in objects if b == bucket and n.startswith(prefix))
            if after is not None:
                names = [n for n in names if n > after]
            items = [resource(bucket, n, objects[(bucket, n)]) for n in names[:page]]
        out = {"kind": "storage#objects"}
        if items:
            out["items"] = items
        if len(names) > page:
            out["nextPageToken"] = base64.urlsafe_b64encode(items[-1]["name"].encode()).decode()
        self.send(200, out)

    def delete(self, bucket, name):
        self.record("delete")
        self.body()
        if not self.authorized() or not self.check_bucket(bucket):
            return
        f = self.fault("delete")
        if f:
            return self.error(f["status"], "injected failure", "backendError")
        with lock:
            obj = objects.pop((bucket, name), None)
        if obj is None:
            return self.error(404, "No such object: %s/%s" % (bucket, name), "notFound")
        self.send(204)


def main():
    global opts
    ap = argparse.ArgumentParser(description="fake GCS JSON API + OAuth2 token endpoint (tests only)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the listening port here once ready")
    ap.add_argument("--bucket", action="append", required=True)
    ap.add_argument("--public-key", help="PEM public key of the test service account")
    ap.add_argument("--client-email", help="expected iss claim")
    ap.add_argument("--token-lifetime", type=int, default=3600, help="seconds")
    ap.add_argument("--require-auth", action="store_true")
    ap.add_argument("--page-size", type=int, default=1000, help="cap on maxResults (forces paging)")
    ap.add_argument("--verbose", action="store_true")
    opts = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if opts.port_file:
        tmp = opts.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, opts.port_file)
    sys.stderr.write("fake_gcs: listening on http://127.0.0.1:%d\n" % port)
    srv.serve_forever()


if __name__ == "__main__":
    main()
