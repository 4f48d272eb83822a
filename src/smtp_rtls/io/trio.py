"""The trio adapter: serve SMTP in a trio nursery (``pip install smtp_rtls[trio]``).

``await serve(handler, host, port, task_status=...)`` runs a server until
cancelled; ``nursery.start(serve, ...)`` gives back the running
:class:`Server`.  Each connection runs a
:class:`~smtp_rtls.session.server.ServerSession`; TLS goes through
``trio.SSLStream``.  Handler methods may be plain functions or
coroutine functions.  The adapter only moves bytes, runs handshakes, keeps
time and calls the handler: every protocol decision is the session's.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import socket
import ssl
from typing import Any

import trio

from .._config import ServerConfig
from .._reply import Reply
from ..session.server import Call, Read, ServerSession, StartTLS, Write
from .tls import tls_info

__all__ = ["Server", "serve"]

logger = logging.getLogger(__name__)

READ_SIZE = 65536


class Server:
    """A running trio server; :meth:`shutdown` stops it gracefully."""

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
        self._listeners: list[trio.SocketListener] = []
        self._accepting = trio.CancelScope()
        self._sessions: set[trio.CancelScope] = set()
        self._idle = trio.Event()
        self._idle.set()

    @property
    def address(self) -> tuple[str, int]:
        """The address the server listens on (the real port when 0 was asked)."""
        host, port = self._listeners[0].socket.getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self.address[1]

    @property
    def active(self) -> int:
        """Sessions in flight."""
        return len(self._sessions)

    async def shutdown(self, deadline: float = 30.0) -> None:
        """Stop accepting, let the sessions in flight finish for up to
        ``deadline`` seconds, then cancel what is left."""
        self._accepting.cancel()
        for listener in self._listeners:
            await listener.aclose()
        with trio.move_on_after(deadline):
            await self._idle.wait()
        for scope in list(self._sessions):
            scope.cancel()
        with trio.move_on_after(5):
            await self._idle.wait()

    async def _run(self, host: str, port: int, task_status: Any) -> None:
        self._listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(self)
        # Sessions live outside the accepting scope: shutdown() stops the
        # accepting at once and gives the sessions their deadline.
        async with trio.open_nursery() as sessions:
            with self._accepting:
                async with trio.open_nursery() as accepting:
                    for listener in self._listeners:
                        accepting.start_soon(self._accept, listener, sessions)

    async def _accept(self, listener: trio.SocketListener, sessions: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, OSError):
                return
            if len(self._sessions) >= self._max_connections:
                sessions.start_soon(_refuse, stream, self.hostname)
                continue
            scope = trio.CancelScope()
            self._sessions.add(scope)
            self._idle = trio.Event()
            sessions.start_soon(self._session, stream, scope)

    async def _session(self, stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        try:
            with scope:
                await run_session(
                    self.handler,
                    stream,
                    hostname=self.hostname,
                    config=self.config,
                    tls=self._tls,
                    implicit_tls=self._implicit_tls,
                    read_timeout=self._read_timeout,
                )
        finally:
            self._sessions.discard(scope)
            if not self._sessions:
                self._idle.set()


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
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (or shut down); use ``await nursery.start(serve,
    handler, ...)`` to get the running :class:`Server`.  The arguments mean
    what they mean for :func:`smtp_rtls.io.sync.serve`."""
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
    await server._run(host, port, task_status)


async def run_session(
    handler: object,
    stream: trio.SocketStream,
    *,
    hostname: str,
    config: ServerConfig | None = None,
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    read_timeout: float | None = None,
) -> None:
    """Run one server session on a connected stream, then close it."""
    peername = stream.socket.getpeername()
    peer = (peername[0], peername[1])
    current: trio.abc.Stream = stream
    info = None
    session: ServerSession | None = None
    try:
        if implicit_tls:
            assert tls is not None
            current = trio.SSLStream(stream, tls, server_side=True)
            with trio.fail_after(read_timeout or 300.0):
                await current.do_handshake()
            info = tls_info(current._ssl_object)
        session = ServerSession(
            handler, hostname, config, peer=peer, tls=info, can_starttls=tls is not None
        )
        steps = session.run()
        result: Any = None
        last_write = trio.current_time()
        while True:
            try:
                request = steps.send(result)
            except StopIteration:
                break
            if isinstance(request, Read):
                left = request.deadline - (trio.current_time() - last_write)
                timeout = request.timeout if read_timeout is None else read_timeout
                if left <= 0:
                    raise TimeoutError("the peer took too long over one command or the content")
                with trio.fail_after(min(timeout, left)):
                    result = await current.receive_some(READ_SIZE)
            elif isinstance(request, Write):
                await current.send_all(request.data)
                last_write = trio.current_time()
                result = None
            elif isinstance(request, Call):
                result = await _call(request)
            elif isinstance(request, StartTLS):
                assert tls is not None
                ssl_stream = trio.SSLStream(current, tls, server_side=True)
                try:
                    with trio.fail_after(read_timeout or 300.0):
                        await ssl_stream.do_handshake()
                except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as exc:
                    logger.info("TLS handshake failed: %s", exc)
                    result = None
                else:
                    current = ssl_stream
                    result = tls_info(ssl_stream._ssl_object)
            else:  # pragma: no cover - the session yields nothing else
                raise TypeError(f"unknown request {request!r}")
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError) as exc:
        logger.info("session with %s ended: %s", peer, exc)
        if session is not None:
            for call in session.abort_calls():
                await _call(call)
    except trio.Cancelled:
        if session is not None:
            with trio.CancelScope(shield=True):
                for call in session.abort_calls():
                    await _call(call)
        raise
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await trio.aclose_forcefully(current)


async def _refuse(stream: trio.SocketStream, hostname: str) -> None:
    # RFC 5321 §3.8 / §4.2.2: 421, service not available
    reply = Reply(421, f"{hostname} Too many connections", "4.3.2")
    with trio.move_on_after(5):
        with contextlib.suppress(trio.BrokenResourceError, OSError):
            await stream.send_all(reply.format())
    await trio.aclose_forcefully(stream)


async def _call(request: Call) -> Any:
    try:
        result = getattr(request.target, request.method)(*request.args)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        return exc
    return result
