#!/usr/bin/env python3
"""A fault-injecting HTTP reverse proxy (standard library only) for the retry
tests of the object-store sinks.

    faultproxy.py LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1)

Requests are forwarded to 127.0.0.1:UPSTREAM_PORT with the Host header
unchanged, so SigV4 signatures stay valid. Faults are armed over HTTP:

    POST /__fault/<mode>/<count>[?method=PUT&every=K&path=SUBSTRING&delay=S]
        the next <count> matching requests fail with <mode>; with `method`
        only requests of that method match; with `path` only requests whose
        path (query string included, e.g. "/prefix/snapshots/ab12" or
        "?uploads") contains SUBSTRING match; with `every=K` only every K-th
        matching request is faulted (spreads the faults over a run). A large
        count (e.g. 1000000000) keeps the fault armed until it is disarmed:
        a persistent fault.
    POST /__fault/off/0        disarm
    GET  /__stats              JSON: requests seen, faults injected per mode,
                               faults still armed, the armed mode, and the
                               last paths faulted (at most 20)

modes: a 3-digit status (500, 503 "SlowDown", 429 ...: an S3-style XML error,
       the request body is read and dropped, nothing reaches the upstream);
       reset (close the connection without answering; nothing reaches the
       upstream); drop (forward, then close without answering: the request
       took effect but its reply is lost); truncate (forward, then send the
       headers and half of the body and close); slow (wait `delay` seconds,
       default 3, then forward); stop (close the connection without
       answering and end the proxy process: the server has stopped, every
       later connection is refused until the proxy is started again).
"""
import http.client
import http.server
import json
import os
import socketserver
import sys
import threading
import time
import urllib.parse

LISTEN, UP = int(sys.argv[1]), int(sys.argv[2])
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade", "expect"}
CODES = {500: "InternalError", 502: "BadGateway", 503: "SlowDown", 504: "GatewayTimeout",
         429: "TooManyRequests", 408: "RequestTimeout"}

lock = threading.Lock()
state = {"mode": None, "left": 0, "method": None, "path": None, "every": 1, "delay": 3.0, "seen": 0,
         "requests": 0, "injected": {}, "faulted": []}


def take_fault(method, path):
    """The fault to apply to this request, or None."""
    with lock:
        state["requests"] += 1
        if state["left"] <= 0 or (state["method"] and state["method"] != method):
            return None
        if state["path"] and state["path"] not in path:
            return None
        state["seen"] += 1
        if state["seen"] % state["every"] != 0:
            return None
        state["left"] -= 1
        mode = state["mode"]
        state["injected"][mode] = state["injected"].get(mode, 0) + 1
        state["faulted"] = (state["faulted"] + ["%s %s" % (method, path)])[-20:]
        return mode


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def control(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/__stats":
            with lock:
                body = json.dumps({"requests": state["requests"], "injected": state["injected"],
                                   "armed": state["left"], "mode": state["mode"],
                                   "faulted": state["faulted"]}).encode()
            self.reply(200, body, "application/json")
            return
        parts = url.path.split("/")
        try:
            mode, count = parts[2], int(parts[3])
            q = urllib.parse.parse_qs(url.query)
            method = q.get("method", [None])[0]
            path = q.get("path", [None])[0]
            delay = float(q.get("delay", ["3"])[0])
            every = max(1, int(q.get("every", ["1"])[0]))
            if mode not in ("reset", "drop", "truncate", "slow", "stop", "off") and \
                    not (mode.isdigit() and len(mode) == 3):
                raise ValueError(mode)
        except (IndexError, ValueError):
            self.reply(400, b"usage: POST /__fault/<mode>/<count>[?method=M&every=K&path=S&delay=D]\n",
                       "text/plain")
            return
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        with lock:
            state.update(mode=None if mode == "off" else mode, left=0 if mode == "off" else count,
                         method=method.upper() if method else None, path=path or None,
                         every=every, delay=delay, seen=0)
        self.reply(200, b"", "text/plain")

    def reply(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        if self.path.startswith("/__fault/") or self.path == "/__stats":
            self.control()
            return
        mode = take_fault(self.command, self.path)
        n = int(self.headers.get("Content-Length") or 0)
        if mode == "reset":
            self.close_connection = True
            self.connection.close()
            return
        if mode == "stop":
            sys.stdout.flush()
            os._exit(0)
        if mode and mode.isdigit():
            self.rfile.read(n)
            status = int(mode)
            code = CODES.get(status, "InjectedError")
            body = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code>'
                    '<Message>injected by faultproxy</Message></Error>' % code).encode()
            self.reply(status, body, "application/xml")
            return
        if mode == "slow":
            with lock:
                delay = state["delay"]
            time.sleep(delay)
        up = http.client.HTTPConnection("127.0.0.1", UP, timeout=120)
        try:
            up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP:
                    up.putheader(k, v)
            up.endheaders()
            left = n
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    raise ConnectionError("client went away")
                left -= len(chunk)
                up.send(chunk)
            r = up.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            # the upstream is gone: the client sees a dropped connection
            self.close_connection = True
            self.connection.close()
            return
        finally:
            up.close()
        if mode == "drop":
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.close()
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    print("faultproxy: 127.0.0.1:%d -> 127.0.0.1:%d" % (LISTEN, UP), flush=True)
    Server(("127.0.0.1", LISTEN), Handler).serve_forever()
