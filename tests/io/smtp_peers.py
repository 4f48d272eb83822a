"""SMTP peers on loopback for the delivery runners' tests, independent of any runner.

The same peers as test_deliver_sync.py's (a threaded ServerConnection server
that offers REQUIRETLS after STARTTLS, trustme certificates for every
certificate case, DNS from a table), in a module of their own so the async
runners' tests do not import the blocking runner.  :class:`ThreadedServer`
is stopped with :meth:`ThreadedServer.stop`, which joins its thread.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smtp_rtls import (
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MessageData,
    ProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
    TLSInfo,
)
from smtp_rtls._sentinels import NEED_DATA, PAUSED
from smtp_rtls.policy.requests import DNSAnswer, DNSQuery, HTTPSResponse, Request, Result
from smtp_rtls.session import DEFAULT_TIMEOUTS

__all__ = ["DOMAIN", "MESSAGE", "MX", "TIMEOUTS", "Certs", "ThreadedServer", "accept_all", "table"]

DOMAIN = "example.org"
MX = "mx.example.org"
MESSAGE = b"From: a@sender.example\r\nSubject: hi\r\nMessage-ID: <1@s>\r\n\r\nHello.\r\n"
TIMEOUTS = {k: 10.0 for k in DEFAULT_TIMEOUTS}  # a failing test must not hang for minutes


def table(*, authentic: bool, tlsa: tuple[str, ...] = (), address: str = "127.0.0.1") -> Any:
    """DNS from a table: example.org's one MX at ``address``; no MTA-STS."""

    def answer(request: Request) -> Result:
        if not isinstance(request, DNSQuery):
            return HTTPSResponse(request, error="connect")
        records = {
            (DOMAIN, "MX"): (f"10 {MX}.",),
            (MX, "A"): (address,),
            (MX, "AAAA"): (),
            (f"_25._tcp.{MX}", "TLSA"): tlsa,
        }
        key = (request.name, request.rdtype)
        if key not in records:
            return DNSAnswer(request, "NXDOMAIN", authentic=authentic)
        return DNSAnswer(request, "NOERROR", records[key], authentic=authentic)

    return answer


class Certs:
    """A trusted CA, a rogue one, and server contexts for the cases."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
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
        }

    def context(self, kind: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.leaves[kind].configure_cert(ctx)
        return ctx

    def tlsa_ee(self, kind: str) -> str:
        pem = self.leaves[kind].cert_chain_pems[0].bytes()
        spki = (
            x509.load_pem_x509_certificate(pem)
            .public_key()
            .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        )
        return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


def accept_all(event: Event) -> Reply:
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "greets you")
    if isinstance(event, Data):
        return Reply(354, "go ahead")
    if isinstance(event, StartTLS):
        return Reply(220, "Ready to start TLS", "2.0.0")
    if isinstance(event, EndOfMessage):
        return Reply(250, "Queued", "2.0.0")
    return Reply(250, "OK", "2.0.0")


class ThreadedServer:
    """An SMTP server made of ServerConnection on loopback, one session at a time.

    ``greet=False`` accepts and stays silent (for timeouts).  Stop with
    :meth:`stop`; the thread is joined there.
    """

    def __init__(
        self,
        context: ssl.SSLContext | None,
        *,
        host: str = "127.0.0.1",
        config: ServerConfig | None = None,
        greet: bool = True,
    ) -> None:
        self.context = context
        self.config = config or ServerConfig(starttls=context is not None)
        self.greet = greet
        self.events: list[Event] = []
        self.content = bytearray()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self.listener.close()
        assert not self._thread.is_alive()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            holder = [sock]
            try:
                self._session(holder)
            except (OSError, ProtocolError):
                pass  # the client hung up or refused our certificate
            finally:
                holder[0].close()

    def _session(self, holder: list[socket.socket]) -> None:
        sock = holder[0]
        sock.settimeout(5)
        if not self.greet:
            self._stop.wait(5)
            return
        conn = ServerConnection(MX, self.config)
        sock.sendall(conn.send(Reply(220, f"{MX} ESMTP")))
        for _ in range(10_000):
            event = conn.next_event()
            if event is NEED_DATA:
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                conn.receive_data(sock.recv(65536))
            elif event is PAUSED:
                pending = conn.pending
                assert pending is not None
                reply = accept_all(pending)
                sock.sendall(conn.send(reply))
                if isinstance(pending, StartTLS):
                    assert self.context is not None
                    sock = holder[0] = self.context.wrap_socket(sock, server_side=True)
                    name, _, bits = sock.cipher() or ("", "", 0)
                    conn.start_tls(TLSInfo(sock.version() or "", name, bits))
            elif isinstance(event, ConnectionClosed):
                sock.sendall(conn.data_to_send())
                return
            else:
                assert isinstance(event, Event)
                self.events.append(event)
                if isinstance(event, MessageData):
                    self.content += event.data
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
