"""Delivery on asyncio: :class:`~smtp_rtls.session.Delivery` run without blocking the loop.

:func:`deliver` is :func:`smtp_rtls.io.sync.deliver` awaited: the same
arguments, the same result.  :class:`AsyncioRunner` answers the driver's
requests (:mod:`smtp_rtls.session.requests`) with ``asyncio.open_connection``,
``StreamWriter.start_tls`` and an
:class:`~smtp_rtls.io.asyncio.AsyncFulfiller` for DNS and HTTPS, each
within the timeout the request carries.  It makes no protocol or policy
decision: it answers requests by their type.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from .._address import Address
from .._events import MailFrom, RcptTo
from .._tls import TLSInfo
from ..policy.plan import PolicyConfig
from ..policy.requests import DNSQuery, HTTPSRequest
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
)
from ._deliver_async import Fulfil, fulfil_policy, run_session_async
from ._fulfil_async import AsyncFulfiller
from ._streams_asyncio import open_connection
from .tls import client_context, tls_failure, tls_info

__all__ = ["AsyncioRunner", "deliver"]


def _describe(exc: BaseException, seconds: float) -> str:
    """``Type: message``; asyncio's TimeoutError has no message, so say what it was."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"TimeoutError: timed out after {seconds:g} s"
    return f"{type(exc).__name__}: {exc}"


class AsyncioRunner:
    """Answers a session driver's requests with asyncio streams; one connection at a time.

    ``fulfil`` answers DNS and HTTPS requests (awaited when it is a coroutine
    function); ``cafile`` is the trust store for PKIX handshakes (None: the
    system's).  Call :meth:`close` when done.
    """

    def __init__(self, fulfil: Fulfil, cafile: str | None = None) -> None:
        """Nothing is connected yet."""
        self.fulfil = fulfil
        self.cafile = cafile
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __call__(self, request: SessionRequest) -> SessionResult:
        """Perform ``request``; failures come back as results, never as exceptions."""
        if isinstance(request, DNSQuery | HTTPSRequest):
            return await fulfil_policy(self.fulfil, request)
        if isinstance(request, Connect):
            return await self.connect(request)
        if isinstance(request, Write):
            return await self.write(request)
        if isinstance(request, Read):
            return await self.read(request)
        if isinstance(request, StartTLS):
            return await self.start_tls(request)
        assert isinstance(request, Close)
        self.close()
        return None

    def _streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            raise RuntimeError("no connection: the driver asked for I/O before Connect")
        return self.reader, self.writer

    async def connect(self, request: Connect) -> Connected | ConnectFailed:
        """Open the TCP connection (``request.address`` is an IP address: nothing is resolved)."""
        self.close()
        try:
            async with asyncio.timeout(request.timeout):
                self.reader, self.writer = await open_connection(request.address, request.port)
        except OSError as exc:  # TimeoutError included
            return ConnectFailed(_describe(exc, request.timeout))
        name = self.writer.get_extra_info("sockname")
        # RFC 8460 §4.4 "sending-mta-ip": our end of the connection.
        return Connected(str(name[0]) if isinstance(name, tuple) and name else None)

    async def write(self, request: Write) -> Broken | None:
        """Write all the bytes (drained to the transport), or report why not."""
        _, writer = self._streams()
        try:
            async with asyncio.timeout(request.timeout):
                writer.write(request.data)
                await writer.drain()
        except OSError as exc:
            return Broken(f"write: {_describe(exc, request.timeout)}")
        return None

    async def read(self, request: Read) -> bytes | Broken:
        """Read what comes within the timeout (``b""`` when the peer closed)."""
        reader, _ = self._streams()
        try:
            async with asyncio.timeout(request.timeout):
                return await reader.read(request.max_bytes)
        except OSError as exc:
            return Broken(f"read: {_describe(exc, request.timeout)}")

    async def start_tls(self, request: StartTLS) -> TLSInfo | TLSFailed:
        """The handshake as ``request.handshake`` says, on the same stream pair."""
        hs = request.handshake
        _, writer = self._streams()
        try:
            context = client_context(hs, self.cafile)
            async with asyncio.timeout(request.timeout):
                await writer.start_tls(context, server_hostname=hs.server_name)
        except TimeoutError as exc:
            return tls_failure(TimeoutError(_describe(exc, request.timeout)))
        except (OSError, ValueError) as exc:
            return tls_failure(exc)
        sslobj = writer.get_extra_info("ssl_object")
        assert sslobj is not None
        return tls_info(sslobj, hs.server_name if hs.verify else None)

    def close(self) -> None:
        """Close the connection, if any, at once.

        ``abort()``: no wait for the peer and no close_notify, as the blocking
        runner's ``socket.close()``.  The driver only closes once a reply to
        everything it wrote came (QUIT's) or the session is broken anyway.
        """
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.transport.abort()


async def deliver(
    mail_from: str | Address | MailFrom,
    recipients: Sequence[str | Address | RcptTo],
    content: bytes | Callable[[], Iterable[bytes]],
    domain: str | None = None,
    *,
    local_hostname: str,
    fulfil: Fulfil | None = None,
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
    """Deliver one message to the recipients of one domain, on asyncio.

    The arguments are :func:`smtp_rtls.io.sync.deliver`'s.  ``fulfil``
    answers DNS and HTTPS, awaited when it returns an awaitable (default: an
    :class:`~smtp_rtls.io.asyncio.AsyncFulfiller` asking 127.0.0.1
    whose AD bit is *not* trusted; pass one built with ``trusted=True`` for a
    local validating resolver, or DANE and DNSSEC-MX never apply).
    ``cafile`` is the PKIX trust store (None: the system's).  Cancelling
    the call closes the connection.
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
    runner = AsyncioRunner(fulfil if fulfil is not None else AsyncFulfiller(["127.0.0.1"]), cafile)
    try:
        return await run_session_async(delivery.run(), runner)
    finally:
        runner.close()
