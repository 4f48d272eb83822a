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
from types import TracebackType
from typing import Any

from .._config import ServerConfig
from .._reply import Reply
from ..session.server import Call, Read, ServerSession, StartTLS, Write
from .tls import tls_info

__all__ = ["Server", "serve"]

logger = logging.getLogger(__name__)

READ_SIZE = 65536


class Server:
    """A running asyncio server: ``await shutdown()`` (or leaving an
    ``async with`` block) stops it gracefully."""

    def __init__(
        self,
        handler: object,
        *,
        hostname: str,
        config: ServerConfig,
        tls: ssl.SSLContext | None,
        implicit_tls: bool,
        max_connections: int,
        read_timeout: float | None,
    ) -> None:
        self.handler = handler
        self.hostname = hostname
        self.config = config
        self._tls = tls
        self._implicit_tls = implicit_tls
        self._max_connections = max_connections
        self._read_timeout = read_timeout
        self._server: asyncio.base_events.Server | None = None
        self._sessions: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def address(self) -> tuple[str, int]:
        """The address the server listens on (the real port when 0 was asked)."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self.address[1]

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
        implicit = self._tls if self._implicit_tls else None
        self._server = await asyncio.start_server(
            self._connected,
            host,
            port,
            ssl=implicit,
            ssl_handshake_timeout=(self._read_timeout or 300.0) if implicit else None,
        )

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._sessions) >= self._max_connections:
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
                tls=self._tls,
                implicit_tls=self._implicit_tls,
                read_timeout=self._read_timeout,
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
) -> Server:
    """Listen on ``host``:``port`` and serve each connection with ``handler``.

    The arguments mean what they mean for :func:`smtp_rtls.io.sync.serve`.
    Returns the running :class:`Server`.
    """
    if implicit_tls and tls is None:
        raise ValueError("implicit_tls needs a tls context")
    if config is None:
        config = ServerConfig(starttls=tls is not None and not implicit_tls)
    elif config.starttls and tls is None:
        raise ValueError("config offers STARTTLS but no tls context was given")
    server = Server(
        handler,
        hostname=hostname or socket.getfqdn(),
        config=config,
        tls=tls,
        implicit_tls=implicit_tls,
        max_connections=max_connections,
        read_timeout=read_timeout,
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
                left = request.deadline - (time.monotonic() - last_write)
                timeout = request.timeout if read_timeout is None else read_timeout
                if left <= 0:
                    raise TimeoutError("the peer took too long over one command or the content")
                result = await asyncio.wait_for(reader.read(READ_SIZE), min(timeout, left))
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
