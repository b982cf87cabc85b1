#!/usr/bin/env python3
"""A loopback webhook receiver for the notification tests (python's
http.server, nothing of the engine).

    webhook_receiver.py --port-file F --log L [--fail-first N] [--status S]
                        [--delay SECONDS]

Listens on 127.0.0.1 (a free port, written to F once listening) and appends
one JSON line per request to L: {"path", "method", "headers": {...},
"body": <parsed JSON or the text>, "answered": status}. The first N requests
are answered 503 (to exercise retries), the others S (default 200), each
after DELAY seconds. Stops on SIGTERM.
"""
import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    lock = threading.Lock()
    seen = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with lock:
                seen["n"] += 1
                status = 503 if seen["n"] <= args.fail_first else args.status
                with open(args.log, "a") as f:
                    f.write(json.dumps({"path": self.path, "method": "POST",
                                        "headers": dict(self.headers.items()),
                                        "body": body, "answered": status,
                                        "time": time.time()}) + "\n")
            if args.delay:
                time.sleep(args.delay)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(args.port_file + ".tmp", args.port_file)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
