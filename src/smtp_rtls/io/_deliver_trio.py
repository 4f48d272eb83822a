"""Delivery on trio: :class:`~smtp_rtls.session.Delivery` run without blocking the loop.

:func:`deliver` is :func:`smtp_rtls.io.sync.deliver` awaited under trio: the
same arguments, the same result.  :class:`TrioRunner` answers the driver's
requests (:mod:`smtp_rtls.session.requests`) with ``trio.open_tcp_stream``,
``trio.SSLStream`` and an :class:`~smtp_rtls.io.asyncio.AsyncFulfiller`
for DNS and HTTPS, each within ``trio.fail_after`` the request's timeout.  It
makes no protocol or policy decision: it answers requests by their type.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import trio

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
from .tls import client_context, tls_failure, tls_info

__all__ = ["TrioRunner", "deliver"]

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def _describe(exc: BaseException) -> str:
    """``Type: message`` of the error underneath trio's wrapping, if any.

    trio reports a broken stream as ``BrokenResourceError`` caused by the
    ``OSError``, and a failed ``open_tcp_stream`` as "all attempts failed"
    caused by a group of one ``OSError`` per address (here: exactly one).
    """
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
        cause = cause.exceptions[0]
    shown = cause if isinstance(cause, OSError) else exc
    return f"{type(shown).__name__}: {shown}"


class TrioRunner:
    """Answers a session driver's requests with trio streams; one connection at a time.

    ``fulfil`` answers DNS and HTTPS requests (awaited when it is a coroutine
    function); ``cafile`` is the trust store for PKIX handshakes (None: the
    system's).  Call :meth:`close` when done.
    """

    def __init__(self, fulfil: Fulfil, cafile: str | None = None) -> None:
        """Nothing is connected yet."""
        self.fulfil = fulfil
        self.cafile = cafile
        self.stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None

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
        await self.close()
        return None

    def _stream(self) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
        if self.stream is None:
            raise RuntimeError("no connection: the driver asked for I/O before Connect")
        return self.stream

    async def connect(self, request: Connect) -> Connected | ConnectFailed:
        """Open the TCP connection (``request.address`` is an IP address: nothing is resolved)."""
        await self.close()
        try:
            with trio.fail_after(request.timeout):
                self.stream = await trio.open_tcp_stream(request.address, request.port)
        except trio.TooSlowError:
            return ConnectFailed(f"TimeoutError: connect timed out after {request.timeout:g} s")
        except OSError as exc:
            return ConnectFailed(_describe(exc))
        try:
            name = self.stream.socket.getsockname()
        except OSError:
            name = None
        # RFC 8460 §4.4 "sending-mta-ip": our end of the connection.
        return Connected(str(name[0]) if isinstance(name, tuple) and name else None)

    async def write(self, request: Write) -> Broken | None:
        """Write all the bytes, or report why not."""
        stream = self._stream()
        try:
            with trio.fail_after(request.timeout):
                await stream.send_all(request.data)
        except trio.TooSlowError:
            return Broken(f"write: TimeoutError: timed out after {request.timeout:g} s")
        except _STREAM_ERRORS as exc:
            return Broken(f"write: {_describe(exc)}")
        return None

    async def read(self, request: Read) -> bytes | Broken:
        """Read what comes within the timeout (``b""`` when the peer closed)."""
        stream = self._stream()
        try:
            with trio.fail_after(request.timeout):
                return bytes(await stream.receive_some(request.max_bytes))
        except trio.TooSlowError:
            return Broken(f"read: TimeoutError: timed out after {request.timeout:g} s")
        except _STREAM_ERRORS as exc:
            return Broken(f"read: {_describe(exc)}")

    async def start_tls(self, request: StartTLS) -> TLSInfo | TLSFailed:
        """The handshake as ``request.handshake`` says, over the open TCP stream."""
        hs = request.handshake
        stream = self._stream()
        if isinstance(stream, trio.SSLStream):
            raise RuntimeError("StartTLS on a connection that is already TLS")
        try:
            context = client_context(hs, self.cafile)
        except (OSError, ValueError) as exc:
            return tls_failure(exc)
        # https_compatible: SMTP ends its sessions itself (QUIT, RFC 5321
        # §4.1.1.10), so a TCP close without close_notify is an ordinary end,
        # as with the blocking runner's ssl sockets, and Close does not wait
        # for the peer's close_notify.
        tls = trio.SSLStream(
            stream, context, server_hostname=hs.server_name, https_compatible=True
        )
        try:
            with trio.fail_after(request.timeout):
                await tls.do_handshake()
        except trio.TooSlowError:
            return tls_failure(TimeoutError(f"handshake timed out after {request.timeout:g} s"))
        except trio.BrokenResourceError as exc:
            # trio wraps the ssl module's error: its verify_code names the failure.
            return tls_failure(exc.__cause__ if exc.__cause__ is not None else exc)
        except (trio.ClosedResourceError, OSError) as exc:
            return tls_failure(exc)
        self.stream = tls
        return tls_info(tls._ssl_object, hs.server_name if hs.verify else None)

    async def close(self) -> None:
        """Close the connection, if any, at once (no wait for the peer; works when cancelled)."""
        stream, self.stream = self.stream, None
        if stream is not None:
            await trio.aclose_forcefully(stream)


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
    """Deliver one message to the recipients of one domain, under trio.

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
    runner = TrioRunner(fulfil if fulfil is not None else AsyncFulfiller(["127.0.0.1"]), cafile)
    try:
        return await run_session_async(delivery.run(), runner)
    finally:
        await runner.close()
