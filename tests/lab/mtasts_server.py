#!/usr/bin/env python3
"""MTA-STS policy host for the lab (Python stdlib only: http.server + ssl).

Serves GET /.well-known/mta-sts.txt over HTTPS, chosen by the Host header, from
SITES_JSON, which is re-read on every request (tests may rewrite it while the server runs):

    {"mta-sts.example.test": {"status": 200, "content_type": "text/plain",
                              "body": "version: STSv1\\r\\nmode: enforce\\r\\n..."},
     "mta-sts.redirect.test": {"status": 301, "location": "https://elsewhere.test/"}}

Unknown hosts or paths -> 404. Logs one line per request to stderr.
Usage: mtasts_server.py --cert C --key K --sites SITES_JSON [--port 4453]
       [--host 127.0.0.1 --host ::1]
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ap = argparse.ArgumentParser()
ap.add_argument("--cert", required=True)
ap.add_argument("--key", required=True)
ap.add_argument("--sites", required=True)
ap.add_argument("--port", type=int, default=4453)
ap.add_argument("--host", action="append")
args = ap.parse_args()
hosts = args.host or ["127.0.0.1", "::1"]


class Handler(BaseHTTPRequestHandler):
    server_version = "lab-mta-sts/1"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0].lower().rstrip(".")
        try:
            with open(args.sites) as f:
                sites = json.load(f)
        except (OSError, ValueError) as e:
            return self._send(500, "text/plain", f"bad sites file: {e}\n")
        site = sites.get(host)
        if self.path != "/.well-known/mta-sts.txt" or site is None:
            return self._send(404, "text/plain", "not found\n")
        status = int(site.get("status", 200))
        if 300 <= status < 400:
            location = {"Location": site.get("location", "/")}
            return self._send(status, "text/plain", "moved\n", location)
        return self._send(status, site.get("content_type", "text/plain"), site.get("body", ""))

    def _send(
        self, status: int, ctype: str, body: str, extra: dict[str, str] | None = None
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *a: Any) -> None:
        host = self.headers.get("Host") if hasattr(self, "headers") else None
        sys.stderr.write(f"{self.address_string()} host={host} {format % a}\n")


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(args.cert, args.key)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        super().__init__(addr, Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(10)
            request.do_handshake()
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write(f"{client_address} TLS handshake failed: {e}\n")
            return
        super().finish_request(request, client_address)


servers = []
for h in hosts:
    fam = socket.AF_INET6 if ":" in h else socket.AF_INET
    servers.append(Server((h, args.port), fam))
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
sys.stderr.write(f"mta-sts server on {', '.join(hosts)} port {args.port}\n")
sys.stderr.flush()
# down.sh stops it with SIGTERM, whose default action ends the process.
servers[0].serve_forever()
