"""An in-memory network for session drivers: real servers, real TLS, no sockets.

Each address is a :class:`Site`: a real :class:`ServerConnection` whose
application answers with ``decide``, and a real ``ssl`` server end over
``MemoryBIO`` pairs with the certificate the site serves.  :class:`MemoryNet`
answers a driver's requests: DNS and HTTPS from the tables of
``tests/policy/plan_world.py``, TCP and TLS here, handshakes made by the
adapter's own :func:`client_context` and reported by :func:`tls_info` /
:func:`tls_failure`, exactly as the blocking runner does.

Everything is synchronous: the server reads what the client wrote at once,
so a driver that reads when no reply can come is a bug, and the net says so
instead of hanging.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import attrs

from smtp_rtls import (
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MessageData,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
)
from smtp_rtls._sentinels import NEED_DATA, PAUSED
from smtp_rtls.io.tls import client_context, tls_failure, tls_info
from smtp_rtls.policy.plan import HandshakeFailure
from smtp_rtls.policy.requests import DNSQuery, HTTPSRequest, Request, Result
from smtp_rtls.session import (
    Close,
    Connect,
    Connected,
    ConnectFailed,
    Read,
    SessionRequest,
    SessionResult,
    TLSFailed,
    Write,
)
from smtp_rtls.session import StartTLS as StartTLSRequest

Decide = Callable[[Event], Reply]


def accept_all(event: Event) -> Reply:
    """A server application that says yes to everything."""
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "greets you")
    if isinstance(event, Data):
        return Reply(354, "End data with <CR><LF>.<CR><LF>")
    if isinstance(event, StartTLS):
        return Reply(220, "Ready to start TLS", "2.0.0")
    if isinstance(event, EndOfMessage):
        return Reply(250, "Queued", "2.0.0")
    return Reply(250, "OK", "2.0.0")


@attrs.define
class Site:
    """What one address serves.  ``tls`` is the server's context (None: the
    handshake cannot succeed on the server side)."""

    name: str
    tls: ssl.SSLContext | None
    config: ServerConfig = attrs.Factory(lambda: ServerConfig(starttls=True))
    decide: Decide = accept_all
    greeting: Reply = attrs.Factory(lambda: Reply(220, "ESMTP ready"))
    #: Every event the server application saw, on every connection, in order.
    events: list[Event] = attrs.Factory(list)
    #: The content received (the server's MessageData, dot-stuffing undone).
    content: bytearray = attrs.Factory(bytearray)
    connections: int = 0
    #: The wire: plaintext bytes each way, for "no byte leaked" checks.
    plaintext_from_client: bytearray = attrs.Factory(bytearray)


class Wire:
    """One TCP connection from the driver to a :class:`Site`."""

    def __init__(self, site: Site) -> None:
        self.site = site
        site.connections += 1
        self.server = ServerConnection(site.name, site.config)
        self.to_client = bytearray(self.server.send(site.greeting))
        self.client_tls: ssl.SSLObject | None = None
        self.server_tls: ssl.SSLObject | None = None
        self.bios = [ssl.MemoryBIO() for _ in range(4)]  # c_in, c_out, s_in, s_out
        self.server_closed = False

    # -- the server side -----------------------------------------------------

    def _server_input(self, data: bytes) -> None:
        if self.server_closed:
            return
        self.server.receive_data(data)
        for _ in range(10_000):
            event = self.server.next_event()
            if event is NEED_DATA:
                self._server_output(self.server.data_to_send())
                return
            if event is PAUSED:
                pending = self.server.pending
                assert pending is not None
                if not self.site.events or self.site.events[-1] is not pending:
                    self.site.events.append(pending)
                self._server_output(self.server.send(self.site.decide(pending)))
                continue
            if isinstance(event, ConnectionClosed):
                self._server_output(self.server.data_to_send())
                self.server_closed = True
                return
            assert isinstance(event, Event)
            self.site.events.append(event)
            if isinstance(event, MessageData):
                self.site.content += event.data
            if not isinstance(event, CommandRejected):
                self._server_output(self.server.data_to_send())
        raise AssertionError("server loop did not settle")

    def _server_output(self, data: bytes) -> None:
        if not data:
            return
        if self.server_tls is not None:
            self.server_tls.write(data)
            self.bios[0].write(self.bios[3].read())
        else:
            self.to_client += data

    # -- the client side -----------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.client_tls is None:
            self.site.plaintext_from_client += data
            self._server_input(data)
            return
        self.client_tls.write(data)
        self.bios[2].write(self.bios[1].read())
        assert self.server_tls is not None
        received = bytearray()
        while True:
            try:
                chunk = self.server_tls.read(65536)
            except ssl.SSLWantReadError:
                break
            if not chunk:
                break
            received += chunk
        self.bios[0].write(self.bios[3].read())
        self._server_input(bytes(received))

    def read(self, max_bytes: int) -> bytes:
        if self.client_tls is None:
            if not self.to_client:
                if self.server_closed:
                    return b""
                raise AssertionError("the driver waits for a reply that cannot come")
            data = bytes(self.to_client[:max_bytes])
            del self.to_client[:max_bytes]
            return data
        try:
            return self.client_tls.read(max_bytes)
        except ssl.SSLWantReadError:
            if self.server_closed:
                return b""
            raise AssertionError("the driver waits for a reply that cannot come") from None

    def handshake(self, request: StartTLSRequest, cafile: str) -> SessionResult:
        hs = request.handshake
        c_in, c_out, s_in, s_out = self.bios
        assert not self.to_client, "plaintext left unread before the handshake"
        if self.site.tls is None:
            self.server_closed = True
            return TLSFailed(HandshakeFailure.OTHER, "the server has no TLS")
        client = client_context(hs, cafile).wrap_bio(c_in, c_out, server_hostname=hs.server_name)
        server = self.site.tls.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):
            done = True
            for end, out, peer in ((client, c_out, s_in), (server, s_out, c_in)):
                try:
                    end.do_handshake()
                except ssl.SSLWantReadError:
                    done = False
                except ssl.SSLError as exc:
                    peer.write(out.read())
                    if end is client:
                        self.server_closed = True
                        return tls_failure(exc)
                    done = False  # the client reads the alert next round
                    self.server_closed = True
                    continue
                peer.write(out.read())
            if done:
                break
        else:
            raise AssertionError("handshake did not finish")
        self.client_tls, self.server_tls = client, server
        self.server.start_tls(tls_info(server, None))
        return tls_info(client, hs.server_name if hs.verify else None)


class MemoryNet:
    """Answers a session driver's requests in memory.

    ``sites`` maps an address to what it serves (a missing address refuses
    the connection); ``lookup`` answers DNS and HTTPS requests.
    """

    def __init__(
        self,
        sites: dict[str, Site],
        lookup: Callable[[Request], Result],
        cafile: Path,
    ) -> None:
        self.sites = sites
        self.lookup = lookup
        self.cafile = str(cafile)
        self.wire: Wire | None = None
        self.log: list[SessionRequest] = []
        self.closes = 0

    def __call__(self, request: SessionRequest) -> SessionResult:
        self.log.append(request)
        if isinstance(request, DNSQuery | HTTPSRequest):
            return self.lookup(request)
        if isinstance(request, Connect):
            assert self.wire is None, "Connect while a connection is open"
            assert request.timeout > 0
            site = self.sites.get(request.address)
            if site is None:
                return ConnectFailed("connection refused")
            self.wire = Wire(site)
            return Connected()
        if isinstance(request, Close):
            assert self.wire is not None, "Close without a connection"
            self.wire = None
            self.closes += 1
            return None
        wire = self.wire
        assert wire is not None, f"{request} without a connection"
        if isinstance(request, Write):
            wire.write(request.data)
            return None
        if isinstance(request, Read):
            return wire.read(request.max_bytes)
        if isinstance(request, StartTLSRequest):
            return wire.handshake(request, self.cafile)
        raise AssertionError(f"unknown request {request!r}")  # pragma: no cover


__all__ = ["MemoryNet", "Site", "Wire", "accept_all"]
