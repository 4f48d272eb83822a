"""Real peers on loopback for the TLSRPT tests: DNS, HTTPS and SMTP servers.

* :class:`DNSServer`: a UDP resolver made of dnspython messages, answering
  from a table (with the AD bit, so a ``trusted`` SyncFulfiller takes the
  answers as DNSSEC-validated), or with a chosen rcode.
* :class:`HTTPSServer`: ``http.server`` over ``ssl`` with a trustme
  certificate: the MTA-STS policy host (GET) and a TLSRPT report receiver
  (POST), with the status the test chooses.
* :func:`smtp_server`: our own ``smtp_rtls.io.sync.serve`` with a
  :class:`Recorder` handler and the certificate of each failure case.

Every server is stopped by :meth:`stop` (the fixtures do it), every wait is
bounded, and everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import jsonschema
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smtp_rtls import Reply, ServerConfig
from smtp_rtls.handlers import Sink
from smtp_rtls.io import sync
from smtp_rtls.io.fulfil import SyncFulfiller
from smtp_rtls.session import DEFAULT_TIMEOUTS
from smtp_rtls.session.server import MessageWriter, SessionEnvelope

DOMAIN = "example.org"
MX = "mx.example.org"
STS_HOST = f"mta-sts.{DOMAIN}"
REPORTS = "reports.test"  # the domain that takes TLSRPT reports by mail
REPORTS_MX = f"mx.{REPORTS}"
MESSAGE = b"From: alice@sender.example\r\nSubject: hi\r\nMessage-ID: <1@s>\r\n\r\nHello.\r\n"
TIMEOUTS = {k: 10.0 for k in DEFAULT_TIMEOUTS}  # a failing test must not hang for minutes
SCHEMA = json.loads((Path(__file__).parent.parent / "policy" / "tlsrpt-schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def today() -> datetime.date:
    """The UTC day now: asked each time, since a test run may cross midnight."""
    return datetime.datetime.now(datetime.UTC).date()


def session_day(folder: Path) -> datetime.date:
    """The one day whose session results the TLSRPT directory ``folder`` holds.

    The store files a result under the UTC day its session ran, so sessions
    that straddle midnight land in two files: the test is then skipped
    rather than failed, as what it counts is split between two days.
    """
    days = sorted(path.stem for path in (folder / "sessions").glob("*.jsonl"))
    if len(days) > 1:
        pytest.skip(f"the sessions ran across midnight (UTC): {days}")
    (day,) = days
    return datetime.date.fromisoformat(day)


def validate(document: object) -> None:
    """The report must follow RFC 8460 §4.4 (the schema of tests/policy)."""
    errors = sorted(VALIDATOR.iter_errors(document), key=str)
    assert not errors, [e.message for e in errors]


# -- DNS -----------------------------------------------------------------------------------


class DNSServer:
    """A UDP DNS server on 127.0.0.1 answering from ``records``, with the AD bit.

    ``records`` maps ``(name, type)`` to presentation-format rdata; ``rcodes``
    maps ``(name, type)`` to an rcode (``"SERVFAIL"``); anything else is
    NXDOMAIN.  Names are lower-case, without the final dot.
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.rcodes: dict[tuple[str, str], str] = {}
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def add(self, name: str, rdtype: str, *rdata: str) -> None:
        self.records.setdefault((name, rdtype), []).extend(rdata)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            self.sock.sendto(self._answer(query).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AD
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if (name, rdtype) in self.rcodes:
            reply.set_rcode(dns.rcode.from_text(self.rcodes[(name, rdtype)]))
        elif (name, rdtype) in self.records:
            reply.answer.append(
                dns.rrset.from_text(
                    question.name, 60, "IN", question.rdtype, *self.records[(name, rdtype)]
                )
            )
        elif not any(key[0] == name for key in self.records):
            reply.set_rcode(dns.rcode.NXDOMAIN)
        return reply

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        assert not self._thread.is_alive()


# -- certificates --------------------------------------------------------------------------


class Certs:
    """A trusted CA, a rogue one, and the server certificates of every case."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        self.rogue = trustme.CA()
        self.cafile = str(folder / "ca.pem")
        self.ca.cert_pem.write_to_path(self.cafile)
        past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
        self.leaves = {
            "valid": self.ca.issue_cert(MX),
            "wrong-name": self.ca.issue_cert("other.example.net"),
            "expired": self.ca.issue_cert(MX, not_before=past, not_after=past),
            "untrusted": self.rogue.issue_cert(MX),
            "sts": self.ca.issue_cert(STS_HOST),
            "sts-untrusted": self.rogue.issue_cert(STS_HOST),
            "receiver": self.ca.issue_cert("127.0.0.1", "localhost"),
            "reports-mx": self.ca.issue_cert(REPORTS_MX),
        }
        self.stale = trustme.CA().issue_cert(MX)  # a key no server uses

    def context(self, kind: str) -> ssl.SSLContext:
        """The server context serving the ``kind`` certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if kind == "no-shared-cipher":
            # TLS 1.2 with PSK suites only and no PSK: every handshake fails
            # ("no shared cipher"), whatever the client verifies.
            self.leaves["valid"].configure_cert(ctx)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("PSK")
            return ctx
        self.leaves[kind].configure_cert(ctx)
        return ctx

    def tlsa_ee(self, leaf: Any) -> str:
        """``3 1 1`` of ``leaf``'s key (RFC 7671 DANE-EE)."""
        pem = leaf.cert_chain_pems[0].bytes()
        spki = (
            x509.load_pem_x509_certificate(pem)
            .public_key()
            .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        )
        return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


# -- HTTPS ---------------------------------------------------------------------------------


class HTTPSServer:
    """``http.server`` over TLS on 127.0.0.1: answers GETs from ``pages``, records POSTs.

    ``pages`` maps a path to ``(status, content type, body)``; POSTs are
    kept in ``posts`` as ``(path, headers, body)`` and answered
    ``post_status``.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.pages: dict[str, tuple[int, str, bytes]] = {}
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.post_status = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, ctype, body = owner.pages.get(self.path, (404, "text/plain", b"none"))
                self._answer(status, ctype, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                owner.posts.append((self.path, dict(self.headers.items()), body))
                self._answer(owner.post_status, "text/plain", b"thanks")

            def _answer(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.timeout = 5
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
        assert not self._thread.is_alive()


# -- SMTP ----------------------------------------------------------------------------------


class Recorder(Sink):
    """A Sink that keeps each message's envelope and content."""

    def __init__(self) -> None:
        super().__init__()
        self.messages_kept: list[tuple[SessionEnvelope, bytes]] = []

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        counter = super().on_message(envelope)
        recorder = self

        class Writer(MessageWriter):
            def __init__(self) -> None:
                self.data = bytearray()

            def write(self, data: bytes) -> None:
                self.data += data
                counter.write(data)

            def close(self) -> Reply:
                recorder.messages_kept.append((envelope, bytes(self.data)))
                return counter.close()

            def abort(self) -> None:
                counter.abort()

        return Writer()


def smtp_server(
    context: ssl.SSLContext | None, handler: Recorder | None = None, *, hostname: str = MX
) -> sync.Server:
    """Our own server on 127.0.0.1: STARTTLS with ``context`` (none without),
    REQUIRETLS after it; the greeting names ``hostname``."""
    return sync.serve(
        handler if handler is not None else Recorder(),
        "127.0.0.1",
        0,
        hostname=hostname,
        tls=context,
        config=ServerConfig(starttls=context is not None),
        read_timeout=10,
    )


def fulfiller(dns_server: DNSServer, cafile: str, https_port: int = 443) -> SyncFulfiller:
    """A trusted SyncFulfiller for ``dns_server``; HTTPS (MTA-STS) to 127.0.0.1:``https_port``."""
    return SyncFulfiller(
        ["127.0.0.1"],
        port=dns_server.port,
        trusted=True,
        timeout=2.0,
        https_port=https_port,
        cafile=cafile,
        https_address="127.0.0.1",
    )
