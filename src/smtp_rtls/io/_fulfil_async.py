"""Asynchronous fulfilment of the policy module's DNS and HTTPS requests, on asyncio or trio.

:class:`AsyncFulfiller` is :class:`~smtp_rtls.io.fulfil.SyncFulfiller` with
``await``: the same resolver configuration, the same :class:`DNSAnswer`
fields (the translation is shared), the AD bit trusted only when the
configuration says so.  DNS goes through dnspython's asynchronous resolver;
the MTA-STS policy fetch (RFC 8461 §3.3) is HTTP/1.1 framed by h11 over the
loop's own TCP and TLS streams, and the policy host's addresses come from
the same resolver, never from the system's ``getaddrinfo``.

The running loop is found with sniffio on every call, and its dnspython
backend is passed explicitly: dnspython caches the *first* backend it sniffs
as its default, so a process that ran asyncio once would otherwise send trio
queries through asyncio.  The loop-specific part is a :class:`Loop`: open a
TCP connection, start TLS on it, bound a piece of work by a deadline; the
trio one lives in :mod:`~smtp_rtls.io._fulfil_trio` (trio is optional).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.name
import h11

# dns.asyncbackend re-exports Backend implicitly, which mypy --strict does not see.
from dns._asyncbackend import Backend as DNSBackend

from ..policy.requests import DNSAnswer, DNSQuery, HTTPSRequest, HTTPSResponse, Request, Result
from .fulfil import (
    _ADDRESS_TYPES,
    _CHUNK,
    _addresses_of,
    _attempt_timeout,
    _configure,
    _dns_answer,
    _dns_failure,
)

__all__ = ["AsyncFulfiller", "Loop", "Stream", "current_loop"]

T = TypeVar("T")


class Stream(Protocol):
    """A byte stream, TLS or not; failures raise :class:`OSError` (``ssl.SSLError``)."""

    async def send_all(self, data: bytes) -> None:
        """Write all of ``data``."""

    async def receive_some(self, max_bytes: int) -> bytes:
        """What is available, at most ``max_bytes``; ``b""`` when the peer closed."""

    async def aclose(self) -> None:
        """Close at once, without waiting for the peer; never raises."""


class Loop(Protocol):
    """What the fulfiller needs of an event loop."""

    #: dnspython's backend for this loop.
    dns_backend: DNSBackend

    async def connect(self, address: str, port: int) -> Stream:
        """A TCP connection to ``address`` (an IP address, never resolved)."""

    async def start_tls(
        self, stream: Stream, context: ssl.SSLContext, server_hostname: str
    ) -> Stream:
        """The client handshake over ``stream``; the TLS stream that results."""

    async def within(self, seconds: float | None, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()``, cancelled with :class:`TimeoutError` after ``seconds``."""


class AsyncFulfiller:
    """Answer policy requests with asynchronous DNS and HTTPS, on asyncio or trio.

    The arguments are :class:`~smtp_rtls.io.fulfil.SyncFulfiller`'s, with the
    same meaning: ``nameservers`` and ``port`` the recursive resolvers (DO bit,
    EDNS 1232), whose AD bit counts only when ``trusted`` (RFC 7672 §2.1.3,
    RFC 4035 §4.9.3); ``cafile`` the PKIX trust store of the policy fetch;
    ``https_port`` and ``https_address`` where it connects (test hooks).
    ``await fulfiller(request)`` never raises for network trouble.
    """

    def __init__(
        self,
        nameservers: list[str],
        port: int = 53,
        trusted: bool = False,
        timeout: float = 5.0,
        https_port: int = 443,
        cafile: str | None = None,
        https_address: str | None = None,
    ) -> None:
        """Configure the resolver and the HTTPS client (nothing is contacted yet)."""
        self.trusted = trusted
        self.https_port = https_port
        self.https_address = https_address
        self.resolver = dns.asyncresolver.Resolver(configure=False)
        _configure(self.resolver, nameservers, port, timeout)
        self.context = ssl.create_default_context(cafile=cafile)

    async def __call__(self, request: Request) -> Result:
        """Fulfil one request."""
        if isinstance(request, DNSQuery):
            return await self.dns(request)
        return await self.https(request)

    async def dns(self, query: DNSQuery) -> DNSAnswer:
        """Resolve ``query`` (CNAMEs followed by the resolver)."""
        qname = dns.name.from_text(query.name)
        try:
            answer = await self.resolver.resolve(
                qname, query.rdtype, raise_on_no_answer=False, backend=current_loop().dns_backend
            )
        except dns.exception.DNSException as exc:
            return _dns_failure(query, qname, exc, self.trusted)
        return _dns_answer(query, qname, answer, self.trusted)

    async def addresses(self, host: str) -> list[str]:
        """The addresses of ``host`` through the configured resolver (see SyncFulfiller's)."""
        if self.https_address is not None:
            return [self.https_address]
        found: list[str] = []
        for rdtype in _ADDRESS_TYPES:
            found += _addresses_of(await self.dns(DNSQuery(host, rdtype)))
        return found

    async def https(self, request: HTTPSRequest) -> HTTPSResponse:
        """GET ``https://{host}{path}``: no redirects, a size cap, one deadline for all."""
        loop = current_loop()
        try:
            return await loop.within(request.timeout, lambda: self._fetch(loop, request))
        except ssl.SSLCertVerificationError:
            return HTTPSResponse(request, error="certificate")
        except TimeoutError:
            return HTTPSResponse(request, error="timeout")
        except ssl.SSLError as exc:
            return HTTPSResponse(request, error=f"tls: {exc.reason or exc}")
        except (h11.ProtocolError, ValueError) as exc:
            return HTTPSResponse(request, error=f"http: {type(exc).__name__}")
        except OSError as exc:
            return HTTPSResponse(request, error=f"connect: {exc.strerror or exc}")

    async def _fetch(self, loop: Loop, request: HTTPSRequest) -> HTTPSResponse:
        addresses = await self.addresses(request.host)
        if not addresses:
            return HTTPSResponse(request, error=f"connect: no address for {request.host}")
        # The outer deadline (https) bounds the whole; each attempt gets a share.
        error: OSError = OSError("no address")
        for i, address in enumerate(addresses):
            try:
                share = _attempt_timeout(request.timeout, len(addresses) - i)
                connect = functools.partial(loop.connect, address, self.https_port)
                tcp = await loop.within(share, connect)
                break
            except OSError as exc:  # TimeoutError too: the next address
                error = exc
        else:
            raise error
        stream = tcp
        try:
            stream = await loop.start_tls(tcp, self.context, request.host)
            return await _exchange(stream, request)
        finally:
            await stream.aclose()
            await tcp.aclose()


def _headers(host: str) -> list[tuple[str, str]]:
    return [("Host", host), ("Connection", "close"), ("Accept", "text/plain")]


async def _exchange(stream: Stream, request: HTTPSRequest) -> HTTPSResponse:
    """One GET over ``stream``; h11 does the framing (RFC 9112)."""
    conn = h11.Connection(h11.CLIENT)
    head = conn.send(
        h11.Request(method="GET", target=request.path, headers=_headers(request.host))
    )
    end = conn.send(h11.EndOfMessage())
    await stream.send_all((head or b"") + (end or b""))
    response: h11.Response | None = None
    body = bytearray()
    while True:  # bounded: h11 caps the head, max_bytes the body, the deadline the time
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(_CHUNK))
        elif isinstance(event, h11.Response):
            # RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed": a 3xx
            # is reported as it came, like any other status.
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > request.max_bytes:
                return HTTPSResponse(request, error="too large")
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
        # an InformationalResponse (1xx) is followed by the real one
    if response is None:
        raise h11.RemoteProtocolError("the connection closed before a response")
    content_type = next(
        (value.decode("latin-1") for name, value in response.headers if name == b"content-type"),
        "",
    )
    return HTTPSResponse(
        request, status=response.status_code, content_type=content_type, body=bytes(body)
    )


# -- asyncio -------------------------------------------------------------------------------


class _AsyncioStream:
    """A :class:`Stream` over asyncio's stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send_all(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive_some(self, max_bytes: int) -> bytes:
        return await self.reader.read(max_bytes)

    async def aclose(self) -> None:
        # abort(): no close_notify wait; the response was read to its end.
        self.writer.transport.abort()


class _AsyncioLoop:
    """:class:`Loop` for asyncio."""

    def __init__(self) -> None:
        self.dns_backend = dns.asyncbackend.get_backend("asyncio")

    async def connect(self, address: str, port: int) -> Stream:
        reader, writer = await asyncio.open_connection(address, port)
        return _AsyncioStream(reader, writer)

    async def start_tls(
        self, stream: Stream, context: ssl.SSLContext, server_hostname: str
    ) -> Stream:
        assert isinstance(stream, _AsyncioStream)
        await stream.writer.start_tls(context, server_hostname=server_hostname)
        return stream  # the same pair, now over TLS

    async def within(self, seconds: float | None, work: Callable[[], Awaitable[T]]) -> T:
        async with asyncio.timeout(seconds):
            return await work()


_LOOPS: dict[str, Loop] = {}


def current_loop() -> Loop:
    """The :class:`Loop` of the running event loop (asyncio when sniffio is missing)."""
    try:
        import sniffio
    except ImportError:  # pragma: no cover - trio brings sniffio; plain asyncio may not
        name = "asyncio"
    else:
        name = sniffio.current_async_library()
    loop = _LOOPS.get(name)
    if loop is None:
        if name == "trio":
            from ._fulfil_trio import TrioLoop

            loop = TrioLoop()
        elif name == "asyncio":
            loop = _AsyncioLoop()
        else:
            raise RuntimeError(f"no fulfiller for the {name!r} event loop")
        _LOOPS[name] = loop
    return loop
