"""Blocking delivery: :class:`~smtp_rtls.session.Delivery` run over real sockets.

:func:`deliver` answers the driver's requests (:mod:`smtp_rtls.session.requests`)
with :func:`socket.create_connection`, :mod:`ssl` and a
:class:`~smtp_rtls.io.fulfil.SyncFulfiller` for DNS and HTTPS.  It makes no
protocol or policy decision: each request says what to do and how long to
wait (RFC 5321 §4.5.3.2 defaults, :data:`~smtp_rtls.session.DEFAULT_TIMEOUTS`).

:func:`client_context` and :func:`tls_info` are the two TLS pieces every
adapter needs: the :class:`ssl.SSLContext` a :class:`~smtp_rtls.policy.Handshake`
asks for, and the :class:`~smtp_rtls.TLSInfo` of the session it gave.
:func:`tls_failure` tells certificate failures apart for the verdict.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from .._address import Address
from .._events import MailFrom, RcptTo
from .._tls import TLSInfo
from ..policy.plan import PolicyConfig
from ..policy.requests import DNSQuery, HTTPSRequest, Request, Result
from ..policy.tags import TLSTag
from ..session.delivery import Delivery, DeliveryResult
from ..session.requests import (
    Broken,
    Close,
    Connect,
    Connected,
    ConnectFailed,
    Read,
    SessionRequest,
    SessionResult,
    StartTLS,
    TLSFailed,
    Write,
    run_session,
)
from ._common import no_delay
from .fulfil import SyncFulfiller
from .tls import client_context, tls_failure, tls_info

__all__ = ["SyncRunner", "deliver"]


class SyncRunner:
    """Answers a session driver's requests with blocking sockets; one connection at a time.

    ``fulfil`` answers DNS and HTTPS requests; ``cafile`` is the trust store
    for PKIX handshakes (None: the system's).  Call :meth:`close` when done.
    """

    def __init__(self, fulfil: Callable[[Request], Result], cafile: str | None = None) -> None:
        """Nothing is connected yet."""
        self.fulfil = fulfil
        self.cafile = cafile
        self.sock: socket.socket | None = None

    def __call__(self, request: SessionRequest) -> SessionResult:
        """Perform ``request``; failures come back as results, never as exceptions."""
        if isinstance(request, DNSQuery | HTTPSRequest):
            return self.fulfil(request)
        if isinstance(request, Connect):
            return self.connect(request)
        if isinstance(request, Write):
            return self.write(request)
        if isinstance(request, Read):
            return self.read(request)
        if isinstance(request, StartTLS):
            return self.start_tls(request)
        assert isinstance(request, Close)
        self.close()
        return None

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise RuntimeError("no connection: the driver asked for I/O before Connect")
        return self.sock

    def connect(self, request: Connect) -> Connected | ConnectFailed:
        """Open the TCP connection."""
        self.close()
        try:
            self.sock = socket.create_connection(
                (request.address, request.port), timeout=request.timeout
            )
        except OSError as exc:
            return ConnectFailed(f"{type(exc).__name__}: {exc}")
        no_delay(self.sock)
        return Connected(_local_address(self.sock))

    def write(self, request: Write) -> Broken | None:
        """Write all the bytes, or report why not."""
        sock = self._socket()
        try:
            sock.settimeout(request.timeout)
            sock.sendall(request.data)
        except OSError as exc:
            return Broken(f"write: {type(exc).__name__}: {exc}")
        return None

    def read(self, request: Read) -> bytes | Broken:
        """Read what comes within the timeout (``b""`` when the peer closed)."""
        sock = self._socket()
        try:
            sock.settimeout(request.timeout)
            return sock.recv(request.max_bytes)
        except OSError as exc:
            return Broken(f"read: {type(exc).__name__}: {exc}")

    def start_tls(self, request: StartTLS) -> TLSInfo | TLSFailed:
        """The handshake as ``request.handshake`` says."""
        hs = request.handshake
        sock = self._socket()
        try:
            context = client_context(hs, self.cafile)
            sock.settimeout(request.timeout)
            tls = context.wrap_socket(sock, server_hostname=hs.server_name)
        except (OSError, ValueError) as exc:
            return tls_failure(exc)
        self.sock = tls
        return tls_info(tls, hs.server_name if hs.verify else None)

    def close(self) -> None:
        """Close the connection, if any."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


def _local_address(sock: socket.socket) -> str | None:
    """Our end of the connection (RFC 8460 §4.4 "sending-mta-ip"), if the socket says."""
    try:
        name = sock.getsockname()
    except OSError:
        return None
    return str(name[0]) if isinstance(name, tuple) and name else None


def deliver(
    mail_from: str | Address | MailFrom,
    recipients: Sequence[str | Address | RcptTo],
    content: bytes | Callable[[], Iterable[bytes]],
    domain: str | None = None,
    *,
    local_hostname: str,
    fulfil: Callable[[Request], Result] | None = None,
    cafile: str | None = None,
    requiretls: bool | None = None,
    tag: TLSTag | None = None,
    config: PolicyConfig | None = None,
    port: int | None = None,
    timeouts: Mapping[str, float] | None = None,
    bdat: bool = False,
    arrival_date: datetime.datetime | None = None,
    redact: bool = False,
    without_requiretls: Literal["redacted", "headers"] = "redacted",
) -> DeliveryResult:
    """Deliver one message to the recipients of one domain, blocking.

    The arguments are :class:`~smtp_rtls.session.Delivery`'s.  ``fulfil``
    answers DNS and HTTPS (default: a :class:`~smtp_rtls.io.fulfil.SyncFulfiller` asking
    127.0.0.1 whose AD bit is *not* trusted; pass one built with
    ``trusted=True`` for a local validating resolver, or DANE and DNSSEC-MX
    never apply).  ``cafile`` is the PKIX trust store (None: the system's).
    ``timeouts`` override :data:`~smtp_rtls.session.DEFAULT_TIMEOUTS`.
    """
    delivery = Delivery(
        mail_from,
        recipients,
        content,
        domain,
        local_hostname=local_hostname,
        requiretls=requiretls,
        tag=tag,
        config=config,
        port=port,
        timeouts=timeouts,
        bdat=bdat,
        arrival_date=arrival_date,
        redact=redact,
        without_requiretls=without_requiretls,
    )
    runner = SyncRunner(fulfil if fulfil is not None else SyncFulfiller(["127.0.0.1"]), cafile)
    try:
        return run_session(delivery.run(), runner)
    finally:
        runner.close()
