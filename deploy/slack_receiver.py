#!/usr/bin/env python3
"""A Slack-compatible incoming-webhook receiver for the demo, on loopback over
HTTPS: accepts POSTed Block Kit messages, answers 200 "ok", prints each one
(header and section lines) to stdout and appends it to a JSONL file.

Usage: slack_receiver.py --cert CERT --key KEY --port PORT --out FILE
"""
import argparse
import http.server
import json
import ssl
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(n, 1 << 20))
            try:
                msg = json.loads(body)
            except ValueError:
                self.send_response(400)
                self.send_header("Content-Length", "11")
                self.end_headers()
                self.wfile.write(b"invalid_json")
                return
            with open(args.out, "a") as f:
                f.write(json.dumps({"t": time.time(), "path": "/…", "message": msg}) + "\n")
            lines = []
            for b in msg.get("blocks", []):
                if b.get("type") in ("header", "section"):
                    lines.append(b["text"]["text"])
                elif b.get("type") == "context":
                    lines.extend(e.get("text", "") for e in b.get("elements", []))
            print("slack> " + "\nslack>   ".join(
                ln.replace("\n", "\nslack>   ") for ln in lines[:6]), flush=True)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"slack receiver: https://127.0.0.1:{args.port}/", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
