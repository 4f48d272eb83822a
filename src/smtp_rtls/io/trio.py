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
import errno
import logging
import math
import socket
import ssl
from collections.abc import Mapping
from typing import Any, TypeVar

import trio

from .._client import ClientConnection
from .._config import ServerConfig
from .._reply import Reply
from .._state import REPLY_TIMEOUTS, read_wait
from .._tls import TLSInfo
from ..session import client as client_ops
from ..session.server import Call, Read, ServerSession, StartTLS, Write
from ._awaitable import awaitable
from ._common import (
    AcceptFailures,
    AsyncClientBase,
    ServerBase,
    ServeSettings,
    call_awaiting,
    serve_settings,
    sweep_every,
)
from ._deliver_trio import deliver
from .tls import tls_info

__all__ = ["Client", "Server", "connect", "deliver", "serve"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

READ_SIZE = 65536

#: Connections accepted in a row before the accepting task lets the others run.
_ACCEPT_BATCH = 32


class Server(ServerBase):
    """A running trio server; :meth:`shutdown` stops it gracefully."""

    def __init__(self, settings: ServeSettings) -> None:
        super().__init__(settings)
        self._listeners: list[trio.SocketListener] = []
        self._accepting = trio.CancelScope()
        self._sessions: set[trio.CancelScope] = set()
        self._idle = trio.Event()
        self._idle.set()
        self._sweeper = _Sweeper(settings.read_timeout)

    def _listening_socket(self) -> socket.socket:
        return self._listeners[0].socket  # type: ignore[return-value]

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
        if self.settings.reuse_port:
            self._listeners = await _reuse_port_listeners(host, port)
        else:
            self._listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(self)
        # Sessions live outside the accepting scope: shutdown() stops the
        # accepting at once and gives the sessions their deadline.
        async with trio.open_nursery() as sessions:
            sweeping = trio.CancelScope()
            sessions.start_soon(self._sweep, sweeping)
            with self._accepting:
                async with trio.open_nursery() as accepting:
                    for listener in self._listeners:
                        accepting.start_soon(self._accept, listener, sessions)
            # no new session now: the sweep keeps time for the last ones
            await self._idle.wait()
            sweeping.cancel()

    async def _sweep(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._sweeper.run()

    async def _accept(self, listener: trio.SocketListener, sessions: trio.Nursery) -> None:
        raw = _plain_socket(listener)
        # SocketListener.accept, straight on the listening socket: every
        # connection waiting is taken at each wake-up (as asyncio does),
        # not one wait for the socket, and a checkpoint, per connection.
        taken = 0
        failures = AcceptFailures(logger)
        while True:
            if raw is None:
                try:
                    stream = await listener.accept()
                except trio.ClosedResourceError:
                    return
                except OSError as exc:
                    wait = failures.after(exc)
                    if wait is None:
                        return
                    await trio.sleep(wait)
                    continue
                peer = None  # asked of the socket when the session starts
            else:
                try:
                    sock, address = raw.accept()
                except BlockingIOError:
                    try:
                        await trio.lowlevel.wait_readable(raw)
                    except trio.ClosedResourceError:
                        return
                    continue
                except OSError as exc:
                    wait = failures.after(exc)
                    if wait is None:
                        return  # the listener was closed
                    if wait:
                        await trio.sleep(wait)
                    continue
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
                peer = (address[0], address[1])
                taken += 1
                if taken % _ACCEPT_BATCH == 0:
                    # a flood of connections still lets the sessions run
                    await trio.lowlevel.checkpoint()
            if failures.count:
                failures.accepted()
            if len(self._sessions) >= self.settings.max_connections:
                sessions.start_soon(_refuse, stream, self.hostname)
                continue
            scope = trio.CancelScope()
            self._sessions.add(scope)
            if self._idle.is_set():
                self._idle = trio.Event()
            sessions.start_soon(self._session, stream, scope, peer)

    async def _session(
        self,
        stream: trio.SocketStream,
        scope: trio.CancelScope,
        peer: tuple[str, int] | None,
    ) -> None:
        try:
            with scope:
                settings = self.settings
                await _run_session(
                    self.handler,
                    stream,
                    hostname=self.hostname,
                    config=self.config,
                    tls=settings.tls,
                    implicit_tls=settings.implicit_tls,
                    read_timeout=settings.read_timeout,
                    sweeper=self._sweeper,
                    peer=peer,
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
    reuse_port: bool = False,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (or shut down); use ``await nursery.start(serve,
    handler, ...)`` to get the running :class:`Server`.  The arguments mean
    what they mean for :func:`smtp_rtls.io.sync.serve`."""
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
    await server._run(host, port, task_status)


async def _reuse_port_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """What ``trio.open_tcp_listeners`` does, with ``SO_REUSEPORT`` set
    before the bind (trio has no option for it)."""
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, type_, proto, _name, address in infos:
            sock = trio.socket.socket(family, type_, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    # as trio does: one socket per family, never dual-stack
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                await sock.bind(address)
                sock.listen(socket.SOMAXCONN)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners


class _Watch:
    """What a server's sweep knows of one session: when the session's wait
    for its peer is over (``inf`` while it waits for none: a handler call,
    a handshake), and the scope that ends the session then."""

    __slots__ = ("expires", "scope")

    def __init__(self, scope: trio.CancelScope) -> None:
        self.expires = math.inf
        self.scope = scope


class _DeadlineWatch:
    """A session run on its own (:func:`run_session`, no server's sweep):
    its waits end at its scope's deadline, which each wait moves."""

    __slots__ = ("scope",)

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope

    @property
    def expires(self) -> float:
        """The scope's deadline."""
        return self.scope.deadline

    @expires.setter
    def expires(self, when: float) -> None:
        self.scope.deadline = when


class _Sweeper:
    """The waits of a server's sessions, kept by one task for them all.

    A session sets when its wait for the peer is over
    (:attr:`_Watch.expires`) before it waits; every second (a quarter of a
    read timeout under 4 s: :func:`~smtp_rtls.io._common.sweep_every`) the
    sweep cancels each session whose wait is over, RFC 5321 §4.5.3.2's
    timeouts, and it sleeps while no session runs.  Moving a trio cancel
    scope's deadline at each wait costs more than the rest of a command's
    work (a context manager and a heap push in Python); the price of the
    sweep is a timeout that ends up to one sweep late, as the asyncio
    server's (``_asyncio_protocol.Sweeper``).
    """

    def __init__(self, read_timeout: float | None) -> None:
        self.every = sweep_every(read_timeout)
        self.watches: set[_Watch] = set()
        self._work = trio.Event()

    def add(self, watch: _Watch) -> None:
        """Keep time for a session (until :meth:`discard`)."""
        self.watches.add(watch)
        self._work.set()

    def discard(self, watch: _Watch) -> None:
        """The session is over."""
        self.watches.discard(watch)

    async def run(self) -> None:
        """Sweep until cancelled."""
        while True:
            if not self.watches:
                self._work = trio.Event()
                await self._work.wait()
            await trio.sleep(self.every)
            now = trio.current_time()
            for watch in self.watches:
                if now >= watch.expires:
                    watch.scope.cancel()


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
    """Run one server session on a connected stream, then close it.

    Its waits for the peer (RFC 5321 §4.5.3.2, or ``read_timeout``) are
    timed by a deadline of its own, moved at each wait; :func:`serve`'s
    sessions share one sweep instead (see *Limits and timeouts* in
    :doc:`/receiving`).
    """
    await _run_session(
        handler,
        stream,
        hostname=hostname,
        config=config,
        tls=tls,
        implicit_tls=implicit_tls,
        read_timeout=read_timeout,
        sweeper=None,
        peer=None,
    )


async def _run_session(
    handler: object,
    stream: trio.SocketStream,
    *,
    hostname: str,
    config: ServerConfig | None,
    tls: ssl.SSLContext | None,
    implicit_tls: bool,
    read_timeout: float | None,
    sweeper: _Sweeper | None,
    peer: tuple[str, int] | None,
) -> None:
    """:func:`run_session`, its waits kept by ``sweeper`` (a server's) or,
    with None, by its own deadline; ``peer`` is the address accept() gave
    (None: ask the socket)."""
    if peer is None:
        try:
            peername = stream.socket.getpeername()
        except OSError as exc:
            # The peer reset the connection before its session began: there
            # is no session to run, and nothing to raise into the server.
            logger.info("connection ended before its session began: %s", exc)
            stream.socket.close()
            return
        peer = (peername[0], peername[1])
    current: trio.abc.Stream = stream
    raw = _plain_socket(stream)
    info = None
    session: ServerSession | None = None
    # One cancel scope for every wait on the peer, and when that wait is
    # over set before each read and write (what trio.fail_after does,
    # without a scope made and entered per wait).  Only the reads and
    # writes await with it set: a handler's coroutine and the handshake
    # get none (inf).
    waits = trio.CancelScope()
    watch: _Watch | _DeadlineWatch
    if sweeper is None:
        watch = _DeadlineWatch(waits)
    else:
        watch = _Watch(waits)
        sweeper.add(watch)
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
        send = steps.send
        result: Any = None
        current_time = trio.current_time
        wait_readable = trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        last_write = current_time()
        with waits:
            while True:
                try:
                    request = send(result)
                except StopIteration:
                    break
                # by frequency: a message makes about six calls, two reads
                # and two writes (exact types: the session makes these)
                if type(request) is Call:
                    # call_awaiting, inline: no coroutine to make unless the result
                    # must be awaited
                    try:
                        result = getattr(request.target, request.method)(*request.args)
                        if result is not None and type(result) is not Reply and awaitable(result):
                            watch.expires = math.inf
                            result = await result
                    except Exception as exc:
                        result = exc
                elif type(request) is Read:
                    now = current_time()
                    # Read.wait's rule, without the method's frame
                    timeout = read_wait(
                        request.timeout, request.deadline, now - last_write, read_timeout
                    )
                    if current is not stream or raw is None:
                        watch.expires = now + timeout
                        result = await current.receive_some(READ_SIZE)
                        continue
                    # The plain socket, straight: what SocketStream.receive_some
                    # does (try the read, wait for the socket when it would
                    # block), without its layers, and with its checkpoint
                    # (the other tasks run, a cancellation comes in) before
                    # the read rather than after it.  By the time the other
                    # sessions have run, the peer has usually answered, and
                    # the read needs no wait for the socket: each such wait
                    # registers the socket with epoll again and goes through
                    # trio's scheduler, about as much work as a command.
                    watch.expires = now + timeout
                    try:
                        await checkpoint()
                        try:
                            result = raw.recv(READ_SIZE)
                        except BlockingIOError:
                            result = None
                        while result is None:
                            await wait_readable(raw)
                            try:
                                result = raw.recv(READ_SIZE)
                            except BlockingIOError:  # woken for nothing
                                continue
                    except OSError as exc:
                        raise _broken(exc) from exc
                elif type(request) is Write:
                    # A peer that never reads its replies would hold the
                    # session here for ever (RFC 2920 §3.1 lets it pipeline,
                    # not stall us): a write gets the read timeout, as the
                    # blocking adapter's socket timeout gives it.
                    if current is stream and raw is not None:
                        # as SocketStream.send_all, straight; a reply
                        # usually goes out whole at once (no wait, and the
                        # read that follows lets the other tasks run)
                        data = request.data
                        try:
                            try:
                                sent = raw.send(data)
                            except BlockingIOError:
                                sent = 0
                            if sent < len(data):
                                watch.expires = current_time() + (read_timeout or 300.0)
                                await _send_rest(raw, data, sent)
                        except OSError as exc:
                            raise _broken(exc) from exc
                    else:
                        watch.expires = current_time() + (read_timeout or 300.0)
                        await current.send_all(request.data)
                    last_write = current_time()
                    result = None
                elif type(request) is StartTLS:
                    assert tls is not None
                    watch.expires = math.inf
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
        if waits.cancelled_caught:
            raise trio.TooSlowError  # as trio.fail_after raises it
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError) as exc:
        logger.info("session with %s ended: %s", peer, exc)
        if session is not None:
            for call in session.abort_calls():
                await call_awaiting(call)
    except trio.Cancelled:
        if session is not None:
            with trio.CancelScope(shield=True):
                for call in session.abort_calls():
                    await call_awaiting(call)
        raise
    finally:
        if sweeper is not None and isinstance(watch, _Watch):
            sweeper.discard(watch)
        if current is stream:
            # What aclose_forcefully does to a socket stream (its aclose
            # closes the socket, then checkpoints in a cancelled scope),
            # without the scope and the Cancelled made for nothing.
            stream.socket.close()
        else:
            # shielded from the server's cancellation, with a deadline of
            # its own: one scope, where a shield around move_on_after
            # makes two
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
                await trio.aclose_forcefully(current)


def _plain_socket(stream: trio.SocketStream | trio.SocketListener) -> socket.socket | None:
    """The socket under a socket stream or listener, for the fast paths
    (run_session reads and writes straight on it while no TLS is on, the
    server accepts straight on it); None, for their own methods, when it
    is not trio's own socket type."""
    raw = getattr(stream.socket, "_sock", None)
    return raw if type(raw) is socket.socket else None


async def _send_rest(raw: socket.socket, data: bytes, sent: int) -> None:
    """Send what the first try left, waiting for the socket between tries."""
    with memoryview(data) as view:
        while sent < len(view):
            await trio.lowlevel.wait_writable(raw)
            with contextlib.suppress(BlockingIOError):
                sent += raw.send(view[sent:])


def _broken(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """The stream error SocketStream raises for this socket error."""
    if exc.errno in (errno.EBADF, errno.ENOTSOCK):
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


async def _refuse(stream: trio.SocketStream, hostname: str) -> None:
    # RFC 5321 §3.8 / §4.2.2: 421, service not available
    reply = Reply(421, f"{hostname} Too many connections", "4.3.2")
    with trio.move_on_after(5):
        with contextlib.suppress(trio.BrokenResourceError, OSError):
            await stream.send_all(reply.format())
    await trio.aclose_forcefully(stream)


# -- the step-by-step client -----------------------------------------------------------


class Client(AsyncClientBase):
    """The trio twin of :class:`smtp_rtls.io.sync.Client` (made by
    :func:`connect`): the same operations, awaited."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: ClientConnection,
        *,
        server_hostname: str,
        timeouts: Mapping[str, float],
    ) -> None:
        super().__init__(conn, server_hostname=server_hostname, timeouts=timeouts)
        self.stream = stream

    _failures = (trio.BrokenResourceError, trio.TooSlowError, OSError)

    async def _write(self, data: bytes, timeout: float) -> None:
        with trio.fail_after(timeout):
            await self.stream.send_all(data)

    async def _read(self, max_bytes: int, timeout: float) -> bytes:
        with trio.fail_after(timeout):
            return bytes(await self.stream.receive_some(max_bytes))

    async def _handshake(self, context: ssl.SSLContext | None, *, ehlo: bool) -> TLSInfo:
        context = context if context is not None else ssl.create_default_context()
        stream = trio.SSLStream(self.stream, context, server_hostname=self.server_hostname)
        with trio.fail_after(self.timeouts.get("TLS", 300.0)):
            await stream.do_handshake()
        self.stream = stream
        verified = self.server_hostname if context.check_hostname else None
        info = self._started(tls_info(stream._ssl_object, verified))
        if ehlo:
            await self.ehlo()
        return info

    async def close(self) -> None:
        """Close the connection without QUIT."""
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await trio.aclose_forcefully(self.stream)


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
    timeouts = REPLY_TIMEOUTS if timeout is None else client_ops.uniform(timeout)
    with trio.fail_after(timeout or 30.0):
        stream = await trio.open_tcp_stream(host, port)
    conn = ClientConnection(local_hostname or socket.getfqdn(), lmtp=lmtp)
    client = Client(stream, conn, server_hostname=server_hostname or host, timeouts=timeouts)
    await client._greet(tls_context, implicit_tls)
    return client
