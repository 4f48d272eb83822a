"""The asyncio adapter: serve SMTP on an event loop.

``await serve(handler, host, port, ...)`` starts a server and returns it;
each connection runs a :class:`~smtp_rtls.session.server.ServerSession` in a task.
Handler methods may be plain functions or coroutine functions.  The adapter
only moves bytes, runs handshakes (``StreamWriter.start_tls``), keeps time
and calls the handler: every protocol decision is the session's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

from .._client import ClientConnection
from .._config import ServerConfig
from .._state import REPLY_TIMEOUTS
from .._tls import TLSInfo
from ..session import client as client_ops
from ._asyncio_protocol import SessionProtocol as _SessionProtocol
from ._asyncio_protocol import Sweeper
from ._common import AsyncClientBase, ServerBase, ServeSettings, serve_settings
from ._deliver_asyncio import deliver
from ._fulfil_async import AsyncFulfiller
from ._streams_asyncio import READ_SIZE, open_connection
from .tls import tls_info

__all__ = ["AsyncFulfiller", "Client", "Server", "connect", "deliver", "serve"]

_T = TypeVar("_T")


class Server(ServerBase):
    """A running asyncio server: ``await shutdown()`` (or leaving an
    ``async with`` block) stops it gracefully."""

    def __init__(self, settings: ServeSettings) -> None:
        super().__init__(settings)
        self._server: asyncio.base_events.Server | None = None
        self._sessions: set[_SessionProtocol] = set()
        # the timeouts of every session, made by the first connection (on
        # the running loop)
        self._sweeper: Sweeper | None = None
        # What every connection of this server reads into (see
        # _SessionProtocol.get_buffer): one loop runs them all, and each
        # read is copied out before the next one starts.
        self._read_buffer = memoryview(bytearray(READ_SIZE))

    def _listening_socket(self) -> socket.socket:
        assert self._server is not None
        return self._server.sockets[0]

    @property
    def active(self) -> int:
        """Sessions in flight."""
        return len(self._sessions)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    async def shutdown(self, deadline: float = 30.0) -> None:
        """Stop accepting, let the sessions in flight finish for up to
        ``deadline`` seconds, then cancel what is left."""
        assert self._server is not None
        self._server.close()
        pending = [session.finished for session in self._sessions]
        if pending:
            _done, left = await asyncio.wait(pending, timeout=deadline)
            for session in list(self._sessions):
                if not session.finished.done():
                    session.cancel()
            if left:
                await asyncio.wait(left, timeout=5)
        if self._sweeper is not None:
            self._sweeper.stop()
        await self._server.wait_closed()

    async def _start(self, host: str, port: int) -> None:
        settings = self.settings
        implicit = settings.tls if settings.implicit_tls else None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _SessionProtocol(self),
            host,
            port,
            ssl=implicit,
            ssl_handshake_timeout=(settings.read_timeout or 300.0) if implicit else None,
            reuse_port=settings.reuse_port,
        )


async def serve(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 25,
    *,
    hostname: str | None = None,
    config: ServerConfig | None = None,
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    max_connections: int = 100,
    read_timeout: float | None = None,
    reuse_port: bool = False,
) -> Server:
    """Listen on ``host``:``port`` and serve each connection with ``handler``.

    The arguments mean what they mean for :func:`smtp_rtls.io.sync.serve`.
    Returns the running :class:`Server`.  Runs on whatever event loop is
    running, so on uvloop when the program installed it.
    """
    server = Server(
        serve_settings(
            handler,
            hostname=hostname,
            config=config,
            tls=tls,
            implicit_tls=implicit_tls,
            max_connections=max_connections,
            read_timeout=read_timeout,
            reuse_port=reuse_port,
        )
    )
    await server._start(host, port)
    return server


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # asyncio.timeout(), not wait_for(): no Task of its own per close
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(5):
            await writer.wait_closed()


# -- the step-by-step client -----------------------------------------------------------


def _expire(task: asyncio.Task[Any], expired: list[bool]) -> None:
    # A Client read's time is up (see Client._read).
    expired.append(True)
    task.cancel()


class Client(AsyncClientBase):
    """The asyncio twin of :class:`smtp_rtls.io.sync.Client` (made by
    :func:`connect`): the same operations, awaited."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: ClientConnection,
        *,
        server_hostname: str,
        timeouts: Mapping[str, float],
    ) -> None:
        super().__init__(conn, server_hostname=server_hostname, timeouts=timeouts)
        self.reader = reader
        self.writer = writer

    # asyncio.timeout(), not wait_for(): wait_for wraps the coroutine in a
    # Task of its own, about as costly as the rest of a command's work.
    async def _write(self, data: bytes, timeout: float) -> None:
        writer = self.writer
        writer.write(data)
        # drain() waits only while the transport has paused the protocol
        # (its buffer is over the high-water mark); otherwise it returns at
        # once, raising what a lost connection raised (the transport is
        # then closing), so it is skipped unless one of the two holds: a
        # coroutine and two calls less per write.  An unknown protocol
        # counts as paused.
        if getattr(getattr(writer, "_protocol", None), "_paused", True):
            async with asyncio.timeout(timeout):
                await writer.drain()
        elif writer.transport.is_closing():
            await writer.drain()

    async def _read(self, max_bytes: int, timeout: float) -> bytes:
        # What asyncio.timeout() does, with one timer handle and nothing
        # else: it cancels the task when the time is up, and the
        # cancellation becomes TimeoutError unless someone else cancelled
        # too (Task.uncancel() counts the requests).  asyncio.timeout()
        # costs two coroutines and an object more, per read.
        task = asyncio.current_task()
        assert task is not None
        expired: list[bool] = []
        handle = asyncio.get_running_loop().call_later(timeout, _expire, task, expired)
        try:
            return await self.reader.read(max_bytes)
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            handle.cancel()

    async def _handshake(self, context: ssl.SSLContext | None, *, ehlo: bool) -> TLSInfo:
        context = context if context is not None else ssl.create_default_context()
        if self.writer.get_extra_info("ssl_object") is None:
            await asyncio.wait_for(
                self.writer.start_tls(context, server_hostname=self.server_hostname),
                self.timeouts.get("TLS", 300.0),
            )
        verified = self.server_hostname if context.check_hostname else None
        info = self._started(tls_info(self.writer.get_extra_info("ssl_object"), verified))
        if ehlo:
            await self.ehlo()
        return info

    async def close(self) -> None:
        """Close the connection without QUIT."""
        await _close(self.writer)


async def connect(
    host: str,
    port: int = 587,
    *,
    local_hostname: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    server_hostname: str | None = None,
    timeout: float | None = None,
    lmtp: bool = False,
) -> Client:
    """Connect, read the greeting and send EHLO; the arguments mean what
    they mean for :func:`smtp_rtls.io.sync.connect`."""
    timeouts: Mapping[str, float] = (
        REPLY_TIMEOUTS if timeout is None else client_ops.uniform(timeout)
    )
    name = server_hostname or host
    context = None
    if implicit_tls:
        context = tls_context if tls_context is not None else ssl.create_default_context()
    async with asyncio.timeout(timeout or 30.0):  # (no Task of its own, as wait_for makes)
        reader, writer = await open_connection(
            host, port, ssl=context, server_hostname=name if context is not None else None
        )
    conn = ClientConnection(local_hostname or socket.getfqdn(), lmtp=lmtp)
    client = Client(reader, writer, conn, server_hostname=name, timeouts=timeouts)
    await client._greet(context, implicit_tls)
    return client
