"""The asyncio server's connection: a :class:`ServerSession` run by the
transport's callbacks (:class:`SessionProtocol`).

A module of its own so that a compiled build compiles it (``_build.COMPILED``):
every read, write and handler call of a connection passes through
``SessionProtocol._advance``, which the interpreter would otherwise run once
per request (bench/README.md, *Hot paths*).  :mod:`smtp_rtls.io.asyncio`
makes these for its :class:`~smtp_rtls.io.asyncio.Server`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Final, cast

from .._reply import Reply
from .._state import read_wait
from ..session.server import Call, Read, ServerSession, StartTLS, Write
from ._awaitable import awaitable
from ._common import call_awaiting, sweep_every
from ._streams_asyncio import READ_SIZE
from .tls import tls_info

if TYPE_CHECKING:
    from .asyncio import Server

logger: Final = logging.getLogger("smtp_rtls.io.asyncio")

# Final aliases of classes from modules a compiled build does not compile
# (attrs classes): a compiled module looks any other module-level name up
# in its dict at each use (_build.py).
_Reply: Final = Reply
_Call: Final = Call
_Read: Final = Read
_Write: Final = Write
_StartTLS: Final = StartTLS


class SessionProtocol(asyncio.BufferedProtocol):
    """One connection: a :class:`ServerSession` run by the transport's callbacks.

    The session's requests are fulfilled as they come, inside the callback
    that produced them: a read ends the callback (the next ``data_received``
    answers it), a write goes straight to the transport, a handler call that
    returns a plain value goes on at once.  Only what must wait (an
    awaitable handler result, the TLS handshake) becomes a task, with
    reading paused meanwhile.  So a pipelined group costs one callback, no
    task and no await per command, and its replies leave as one write (the
    session flushes them together, RFC 2920 §3.2).
    """

    def __init__(self, server: Server) -> None:
        self._server = server
        self._settings = settings = server.settings
        self._read_buffer: memoryview = server._read_buffer
        self._read_timeout = settings.read_timeout
        self._loop = loop = asyncio.get_running_loop()
        self._clock = _clock(loop)
        sweeper = server._sweeper
        if sweeper is None or sweeper.loop is not loop:
            sweeper = server._sweeper = Sweeper(loop, server._sessions, settings.read_timeout)
        self._sweeper: Sweeper = sweeper
        self.finished: asyncio.Future[None] = self._loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._session: ServerSession | None = None
        self._steps: Generator[Any, Any, None] | None = None
        self._read: Read | None = None  # the read the session waits for
        # Bytes received and not yet given to the session: what came while it
        # was not reading, and the rest of a read larger than READ_SIZE.
        self._pending = bytearray()
        self._peer_gone = False
        self._write_paused = False
        self._reading_paused = False
        self._write_blocked = False  # the session waits for the peer to read
        self._task: asyncio.Task[None] | None = None
        # when the wait for the peer (a read, or a write it does not take)
        # is over: the server's Sweeper ends the session after that
        self._expires = 0.0
        self._last_write = 0.0

    # -- transport callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (nor
        # registered as such), though they have every method used here.
        self._transport = transport = cast(asyncio.Transport, transport)
        server = self._server
        settings = self._settings
        if len(server._sessions) >= settings.max_connections:
            # RFC 5321 §3.8 / §4.2.2: 421, service not available
            transport.write(
                _Reply(421, f"{server.hostname} Too many connections", "4.3.2").format()
            )
            transport.close()
            self.finished.set_result(None)
            return
        server._sessions.add(self)
        peername = transport.get_extra_info("peername")
        peer = (peername[0], peername[1]) if peername else None
        info = None
        if settings.implicit_tls:
            sslobj = transport.get_extra_info("ssl_object")
            info = tls_info(sslobj) if sslobj is not None else None
        self._session = ServerSession(
            settings.handler,
            server.hostname,
            settings.config,
            peer=peer,
            tls=info,
            can_starttls=settings.tls is not None,
        )
        self._steps = self._session.run()
        self._last_write = self._clock()
        self._advance(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        # A buffered protocol, for what _streams_asyncio's docstring says
        # (in bench/suite: 94 against 141 us of CPU per 1 KiB message,
        # decided at start-up); one buffer per server, not per connection.
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read_buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        # (buffer_updated's, and what a transport without buffered reads calls)
        if self._read is not None and not self._pending and len(data) <= READ_SIZE:
            self._read = None
            self._advance(data)
            return
        # Between a handler call and the next read (reading is paused, but a
        # transport may hand over what it had already), or more than the
        # session takes at a time: its input limit (ServerConfig.max_backlog)
        # counts what it was given, so it is given READ_SIZE at most.
        self._pending += data
        if self._read is not None:
            self._read = None
            self._advance(self._take())

    def _take(self) -> bytes:
        chunk = bytes(self._pending[:READ_SIZE])
        del self._pending[:READ_SIZE]
        return chunk

    def eof_received(self) -> bool:
        self._peer_gone = True
        if self._read is not None:
            self._read = None
            self._advance(b"")
        # Keep the transport open: replies still owed (to a QUIT before a
        # half-close, say) go out, and the session closes it when it ends.
        # A TLS transport cannot stay half-open (asyncio warns when asked).
        transport = self._transport
        return transport is None or transport.get_extra_info("ssl_object") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._peer_gone = True
        # nothing held back can be answered now: the session reads the end
        self._pending.clear()
        self._write_paused = False
        if self._read is not None:
            self._read = None
            self._advance(b"")
        elif self._write_blocked:
            # the write is over (nothing more reaches the peer); the next
            # read gives the session the end of the connection
            self._write_blocked = False
            self._advance(None)
        # Otherwise a task (a handler call, the handshake, the abort calls)
        # is running, and the session ends after it; or it has ended.

    def pause_writing(self) -> None:
        # The peer does not read its replies: stop reading its commands
        # until it does, so that nothing piles up on our side.
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._write_blocked:
            self._write_blocked = False
            self._advance(None)
        elif self._read is not None:
            if self._pending:
                # input held back while the peer did not read (see _advance)
                self._read = None
                self._advance(self._take())
            else:
                self._resume_reading()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    # -- running the session ---------------------------------------------------

    def _advance(self, result: Any) -> None:
        """Send ``result`` into the session and fulfil its requests until
        it waits for a read, for a task, or ends."""
        steps = self._steps
        transport = self._transport
        assert steps is not None and transport is not None
        try:
            while True:
                request = steps.send(result)
                kind = type(request)
                # by frequency: a message makes about six calls, two reads
                # and two writes
                if kind is _Call:
                    try:
                        result = getattr(request.target, request.method)(*request.args)
                    except Exception as exc:
                        result = exc
                    if result is not None and type(result) is not _Reply and awaitable(result):
                        self._await(_awaited(result))
                        return
                elif kind is _Write:
                    if not transport.is_closing():
                        transport.write(request.data)
                    # the loop's clock, which the timer runs on
                    self._last_write = self._clock()
                    result = None
                    if self._write_paused and not transport.is_closing():
                        # The peer does not read its replies: go on when it
                        # has (resume_writing), so that they never pile up
                        # here; give up after the read timeout.
                        self._wait_write()
                        return
                elif kind is _Read:
                    if self._pending and not self._write_paused:
                        result = self._take()
                    elif self._peer_gone and not self._pending:
                        result = b""
                    else:
                        self._wait_read(request)
                        return
                elif kind is _StartTLS:
                    self._await(self._start_tls())
                    return
                else:  # pragma: no cover - the session yields nothing else
                    raise TypeError(f"unknown request {request!r}")
        except StopIteration:
            self._close()
        except Exception:  # pragma: no cover - a bug in the session, not the peer's doing
            logger.exception("session failed")
            self._steps = None
            self._close()

    def _wait_read(self, request: Read) -> None:
        # Several reads per message: one clock reading each.
        now = self._clock()
        try:
            # Read.wait's rule, called here without the Python method's frame
            wait = read_wait(
                request.timeout, request.deadline, now - self._last_write, self._read_timeout
            )
        except TimeoutError as exc:
            self._give_up(exc)
            return
        self._read = request
        self._expires = now + wait
        # No timer of its own: a call_at and its cancel per connection cost
        # about as much as the session's greeting (bench/README.md, *Hot
        # paths*); the server's one sweep finds the wait over.
        self._sweeper.start()
        if self._reading_paused and not self._write_paused:
            self._resume_reading()

    def _wait_write(self) -> None:
        self._write_blocked = True
        self._expires = self._clock() + (self._settings.read_timeout or 300.0)
        self._sweeper.start()

    def time_out(self) -> None:
        """End the session: its peer sent or read nothing in time (RFC 5321
        §4.5.3.2; the Sweeper calls this)."""
        self._give_up(TimeoutError("the peer sent or read nothing in time"))

    def _await(self, awaitable: Coroutine[Any, Any, Any]) -> None:
        # Something that must wait (a handler's coroutine, the handshake):
        # reading stops until it is done, then the session goes on.
        self._pause_reading()
        self._task = self._loop.create_task(self._resume_after(awaitable))

    async def _resume_after(self, awaitable: Coroutine[Any, Any, Any]) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            self._task = None
            self._end_early(None)
            raise
        self._task = None
        self._advance(result)

    async def _start_tls(self) -> object:
        tls = self._settings.tls
        transport = self._transport
        assert tls is not None and transport is not None
        try:
            new = await self._loop.start_tls(
                transport,
                self,
                tls,
                server_side=True,
                ssl_handshake_timeout=self._settings.read_timeout or 300.0,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            logger.info("TLS handshake failed: %s", exc)
            return None
        if new is None:
            return None
        self._transport = new
        self._reading_paused = False  # the TLS transport starts out reading
        sslobj = new.get_extra_info("ssl_object")
        return tls_info(sslobj) if sslobj is not None else None

    def _give_up(self, exc: BaseException) -> None:
        session = self._session
        peer = session.info.peer if session is not None else None
        logger.info("session with %s ended: %s", peer, exc)
        self._end_early(exc)

    def _end_early(self, exc: BaseException | None) -> None:
        # A timeout, or a cancelled handler call: the session cannot go on.
        # What it still owes the handler (abort the message, on_close) runs,
        # awaited if it must be, and the connection closes.
        if self._steps is None or self._session is None:
            return
        self._read = None
        self._write_blocked = False
        self._steps.close()
        calls = self._session.abort_calls()
        self._steps = None
        self._task = self._loop.create_task(self._abort(calls))

    async def _abort(self, calls: list[Call]) -> None:
        try:
            for call in calls:
                await call_awaiting(call)
        finally:
            self._task = None
            self._close()

    def cancel(self) -> None:
        """End the session now (the server is shutting down)."""
        if self._steps is None:
            return  # ending already
        if self._task is not None:
            self._task.cancel()
        else:
            self._end_early(None)

    def _close(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if transport.get_write_buffer_size():
                # Replies the peer has not read (RFC 2920 §3.1 lets it
                # pipeline, not stall us): a graceful close would keep them,
                # and the socket, until it reads, maybe never, and outside
                # max_connections once the session is over.  Drop them.
                transport.abort()
            else:
                transport.close()
        self._done()

    def _done(self) -> None:
        self._server._sessions.discard(self)
        if not self.finished.done():
            self.finished.set_result(None)


class Sweeper:
    """The timeouts of a server's connections, one timer for them all.

    A connection that waits for its peer sets when that wait is over
    (``SessionProtocol._expires``) and starts the sweep if it is not
    running; every second (``_common.sweep_every``: a quarter of a read
    timeout under 4 s) the sweep ends each session whose wait is over, and runs
    again while any session waits.  So a connection arms no timer and
    cancels none (an asyncio timer is a Python object pushed on the loop's
    heap), at the price of a timeout that ends up to one sweep late.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sessions: set[SessionProtocol],
        read_timeout: float | None,
    ) -> None:
        self.loop = loop
        self._sessions = sessions
        self._clock = _clock(loop)
        self.every = sweep_every(read_timeout)
        #: the sweep's timer, while one is due
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Sweep in :attr:`every` seconds (a session has started to wait)."""
        if self.handle is None:
            self.handle = self.loop.call_later(self.every, self._sweep)

    def stop(self) -> None:
        """Cancel the sweep due (the server has stopped)."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _sweep(self) -> None:
        self.handle = None
        now = self._clock()
        waiting = False
        for session in list(self._sessions):
            # (a session running a handler call or the handshake waits for
            # no peer: those have their own bounds)
            if session._read is None and not session._write_blocked:
                continue
            if now >= session._expires:
                session.time_out()
            else:
                waiting = True
        if waiting:
            self.start()


def _clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """``loop.time``, or the function it calls: the clock the loop's timers
    (``call_at``) run on.  asyncio's own ``BaseEventLoop.time`` is a Python
    method that returns ``time.monotonic()``; called directly, that is a
    frame less at each of a connection's reads and writes.  A loop with a
    ``time`` of its own (uvloop's, or one set on the instance) is asked."""
    if type(loop).time is asyncio.BaseEventLoop.time and "time" not in getattr(
        loop, "__dict__", {}
    ):
        return time.monotonic
    return loop.time


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except Exception as exc:
        return exc
