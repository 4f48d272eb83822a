"""The trio half of :mod:`~smtp_rtls.io._fulfil_async`: its ``Loop``.

Imported only when a fulfiller runs under trio (trio is an optional
dependency).  trio reports a failed stream as ``trio.BrokenResourceError``
with the :class:`OSError` (or ``ssl.SSLError``) as its cause, and a
deadline as ``trio.TooSlowError``; both are turned back into the standard
exceptions here, so the fulfiller reads the same errors on either loop.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import dns.asyncbackend
import trio

from ._fulfil_async import Stream

__all__ = ["TrioLoop"]

T = TypeVar("T")


def _os_error(exc: trio.BrokenResourceError | trio.ClosedResourceError) -> OSError:
    cause = exc.__cause__
    return cause if isinstance(cause, OSError) else ConnectionError(str(exc) or type(exc).__name__)


class _TrioStream:
    """A :class:`~smtp_rtls.io._fulfil_async.Stream` over a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def send_all(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _os_error(exc) from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            return bytes(await self.stream.receive_some(max_bytes))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _os_error(exc) from exc

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class TrioLoop:
    """:class:`~smtp_rtls.io._fulfil_async.Loop` for trio."""

    def __init__(self) -> None:
        self.dns_backend = dns.asyncbackend.get_backend("trio")

    async def connect(self, address: str, port: int) -> Stream:
        return _TrioStream(await trio.open_tcp_stream(address, port))

    async def start_tls(
        self, stream: Stream, context: ssl.SSLContext, server_hostname: str
    ) -> Stream:
        assert isinstance(stream, _TrioStream)
        # https_compatible: no close_notify sent or awaited, and a close without
        # one is an end of stream, as the ssl module's sockets under
        # SyncFulfiller's http.client (RFC 9112 §9.8 describes the practice).
        tls = trio.SSLStream(
            stream.stream, context, server_hostname=server_hostname, https_compatible=True
        )
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _os_error(exc) from exc
        return _TrioStream(tls)

    async def within(self, seconds: float | None, work: Callable[[], Awaitable[T]]) -> T:
        if seconds is None:
            return await work()
        try:
            with trio.fail_after(seconds):
                return await work()
        except trio.TooSlowError:
            raise TimeoutError(f"timed out after {seconds} s") from None
