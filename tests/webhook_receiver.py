"""A case platform's webhook receiver for tests: a real HTTP(S) server in its own process (so a
test can kill and restart it mid-run). It checks each request's signature and timestamp the way
the README tells integrators to, deduplicates on the Idempotency-Key, and appends one JSON line
per request to --log: {"key", "status", "signature_ok", "duplicate", "camera"}.

--script answers the first requests from a list (e.g. "503,429,slow,503"; "slow" sleeps --slow-s
then answers 200); --reject-camera answers 422 for that camera's events.

    python tests/webhook_receiver.py --port 8123 --secret-file s --log received.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def signature_ok(secret: bytes, headers, body: bytes) -> bool:
    # The 5 lines of the README's receiver: recompute the HMAC over "<timestamp>.<body>", compare in
    # constant time, and refuse a timestamp more than 5 minutes away (a replayed request).
    ts = headers.get("X-StreetScan-Timestamp", "0")
    expected = "sha256=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
    return fresh and hmac.compare_digest(expected, headers.get("X-StreetScan-Signature", ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret-file", type=Path, required=True)
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--script", default="")
    ap.add_argument("--slow-s", type=float, default=3.0)
    ap.add_argument("--reject-camera", default="")
    ap.add_argument("--tls-cert", type=Path)
    ap.add_argument("--tls-key", type=Path)
    args = ap.parse_args()
    secret = args.secret_file.read_bytes().strip()
    script = [s for s in args.script.split(",") if s]
    seen: set[str] = set()
    lock = threading.Lock()
    log = args.log.open("a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            key = self.headers.get("Idempotency-Key", "")
            with lock:
                step = script.pop(0) if script else "ok"
            if step == "slow":
                time.sleep(args.slow_s)
                step = "ok"
            ok_sig = signature_ok(secret, self.headers, body)
            camera = json.loads(body)["camera"]["id"] if body else ""
            if not ok_sig:
                status = 401
            elif step != "ok":
                status = int(step)
            elif camera == args.reject_camera:
                status = 422
            else:
                status = 200
            duplicate = False
            if status == 200:
                with lock:
                    duplicate = key in seen
                    seen.add(key)
            log.write(
                json.dumps(
                    {"key": key, "status": status, "signature_ok": ok_sig, "duplicate": duplicate, "camera": camera}
                )
                + "\n"
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            payload = b'{"error": "unprocessable"}' if status == 422 else b"{}"
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
