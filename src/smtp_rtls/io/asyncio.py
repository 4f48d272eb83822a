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
import inspect
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

from .._client import ClientConnection
from .._config import ServerConfig
from .._reply import Reply
from .._state import REPLY_TIMEOUTS
from .._tls import TLSInfo
from ..session import client as client_ops
from ..session.server import Call, Read, ServerSession, StartTLS, Write
from ._common import AsyncClientBase, ServerBase, ServeSettings, serve_settings
from ._deliver_asyncio import deliver
from ._fulfil_async import AsyncFulfiller
from .tls import tls_info

__all__ = ["AsyncFulfiller", "Client", "Server", "connect", "deliver", "serve"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

READ_SIZE = 65536


class Server(ServerBase):
    """A running asyncio server: ``await shutdown()`` (or leaving an
    ``async with`` block) stops it gracefully."""

    def __init__(self, settings: ServeSettings) -> None:
        super().__init__(settings)
        self._server: asyncio.base_events.Server | None = None
        self._sessions: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

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
        tasks = list(self._sessions)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        await self._server.wait_closed()

    async def _start(self, host: str, port: int) -> None:
        settings = self.settings
        implicit = settings.tls if settings.implicit_tls else None
        self._server = await asyncio.start_server(
            self._connected,
            host,
            port,
            ssl=implicit,
            ssl_handshake_timeout=(settings.read_timeout or 300.0) if implicit else None,
            reuse_port=settings.reuse_port,
        )

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        settings = self.settings
        if len(self._sessions) >= settings.max_connections:
            # RFC 5321 §3.8 / §4.2.2: 421, service not available
            writer.write(Reply(421, f"{self.hostname} Too many connections", "4.3.2").format())
            await _close(writer)
            return
        self._sessions[task] = writer
        try:
            await run_session(
                self.handler,
                reader,
                writer,
                hostname=self.hostname,
                config=self.config,
                tls=settings.tls,
                implicit_tls=settings.implicit_tls,
                read_timeout=settings.read_timeout,
            )
        finally:
            self._sessions.pop(task, None)


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
    Returns the running :class:`Server`.
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


async def run_session(
    handler: object,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    hostname: str,
    config: ServerConfig | None = None,
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    read_timeout: float | None = None,
) -> None:
    """Run one server session on a connected stream pair, then close it."""
    peername = writer.get_extra_info("peername")
    peer = (peername[0], peername[1]) if peername else None
    info = None
    if implicit_tls:
        sslobj = writer.get_extra_info("ssl_object")
        info = tls_info(sslobj) if sslobj is not None else None
    session = ServerSession(
        handler, hostname, config, peer=peer, tls=info, can_starttls=tls is not None
    )
    steps = session.run()
    result: Any = None
    last_write = time.monotonic()
    try:
        while True:
            request = steps.send(result)
            if isinstance(request, Read):
                wait = request.wait(time.monotonic() - last_write, read_timeout)
                result = await asyncio.wait_for(reader.read(READ_SIZE), wait)
            elif isinstance(request, Write):
                writer.write(request.data)
                await writer.drain()
                last_write = time.monotonic()
                result = None
            elif isinstance(request, Call):
                result = await _call(request)
            elif isinstance(request, StartTLS):
                result = await _start_tls(writer, tls)
            else:  # pragma: no cover - the session yields nothing else
                raise TypeError(f"unknown request {request!r}")
    except StopIteration:
        pass
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError) as exc:
        logger.info("session with %s ended: %s", peer, exc)
        steps.close()
        for call in session.abort_calls():
            await _call(call)
    except asyncio.CancelledError:
        steps.close()
        for call in session.abort_calls():
            await _call(call)
        raise
    finally:
        await _close(writer)


async def _start_tls(writer: asyncio.StreamWriter, tls: ssl.SSLContext | None) -> object:
    assert tls is not None
    try:
        await writer.start_tls(tls)
    except (OSError, ssl.SSLError) as exc:
        logger.info("TLS handshake failed: %s", exc)
        return None
    sslobj = writer.get_extra_info("ssl_object")
    return tls_info(sslobj) if sslobj is not None else None


async def _call(request: Call) -> Any:
    try:
        result = getattr(request.target, request.method)(*request.args)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        return exc
    return result


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 5)


# -- the step-by-step client -----------------------------------------------------------


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

    async def _write(self, data: bytes, timeout: float) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), timeout)

    async def _read(self, max_bytes: int, timeout: float) -> bytes:
        return await asyncio.wait_for(self.reader.read(max_bytes), timeout)

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
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            host, port, ssl=context, server_hostname=name if context is not None else None
        ),
        timeout or 30.0,
    )
    conn = ClientConnection(local_hostname or socket.getfqdn(), lmtp=lmtp)
    client = Client(reader, writer, conn, server_hostname=name, timeouts=timeouts)
    await client._greet(context, implicit_tls)
    return client
