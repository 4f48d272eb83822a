"""What the three adapters share: the server settings check, what an
accept loop does when ``accept()`` fails (:class:`AcceptFailures`), the
period of the asyncio and trio servers' timeout sweep (:func:`sweep_every`),
and the asynchronous client's operations (asyncio and trio differ only in
how they move bytes and run the handshake)."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from .._client import ClientConnection
from .._config import ServerConfig
from .._errors import ProtocolError
from .._events import Ehlo, Event, MailFrom, Quit, RcptTo
from .._reply import Reply
from .._server import ServerConnection
from .._state import State
from .._tls import TLSInfo
from ..session import client as client_ops
from ..session.client import SendResult
from ..session.requests import Broken, Read, Step, Write
from ..session.server import Call
from ._awaitable import awaitable

__all__ = [
    "AsyncClientBase",
    "ServeSettings",
    "ServerBase",
    "call_awaiting",
    "no_delay",
    "serve_settings",
]

_T = TypeVar("_T")

#: The errors of accept() that only concern that one connection (as
#: trio.SocketListener ignores them): take the next.
ACCEPT_IGNORABLE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)
#: The errors of accept() that say the process or the system is out of
#: something (file descriptors, memory): the listener is fine, and accept()
#: works again once sessions end and give theirs back.  A server that
#: stopped accepting on them would stay deaf for good after one flood of
#: connections; asyncio's loop and trio.serve_listeners wait and try again.
ACCEPT_CAPACITY_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EMFILE", "ENFILE", "ENOMEM", "ENOBUFS")
    if hasattr(errno, name)
)
#: Seconds a server waits before it calls accept() again after one of those.
ACCEPT_RETRY_DELAY = 0.1


class AcceptFailures:
    """What a server's accept loop does when ``accept()`` fails.

    :meth:`after` says how long to wait before the next ``accept()``, and
    logs a streak of failures of :data:`ACCEPT_CAPACITY_ERRNOS` once when it
    starts; :meth:`accepted` logs its end.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        #: failures for lack of resources since the last connection accepted
        self.count = 0

    def after(self, exc: OSError) -> float | None:
        """Seconds to wait before ``accept()`` again after ``exc`` (0: at
        once, the error concerned one connection), or None: the listener
        is gone, stop accepting."""
        if exc.errno in ACCEPT_IGNORABLE_ERRNOS:
            return 0.0
        if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
            return None
        if not self.count:
            self._logger.error(
                "accept() failed: %s; trying again every %.1f s", exc, ACCEPT_RETRY_DELAY
            )
        self.count += 1
        return ACCEPT_RETRY_DELAY

    def accepted(self) -> None:
        """A connection was accepted after a streak of failures."""
        self._logger.warning("accepting again after %d failed accept() calls", self.count)
        self.count = 0


#: How often a server's sweep looks for sessions whose wait for the peer
#: is over (the asyncio and trio servers): a timeout ends up to this late.
#: RFC 5321 §4.5.3.2's waits are minutes; a server with a read timeout
#: under 4 s sweeps four times per timeout (:func:`sweep_every`).
SWEEP_EVERY = 1.0


def sweep_every(read_timeout: float | None) -> float:
    """The period of a server's sweep of its sessions' timeouts:
    :data:`SWEEP_EVERY`, or a quarter of ``read_timeout`` when that is
    shorter than four sweeps (10 ms at least)."""
    if read_timeout is not None and read_timeout < 4 * SWEEP_EVERY:
        return max(read_timeout / 4, 0.01)
    return SWEEP_EVERY


@attrs.frozen
class ServeSettings:
    """What every adapter's ``serve()`` was asked for (see
    :func:`smtp_rtls.io.sync.serve`)."""

    handler: object
    hostname: str
    config: ServerConfig
    tls: ssl.SSLContext | None
    implicit_tls: bool
    max_connections: int
    read_timeout: float | None
    reuse_port: bool = False


def serve_settings(
    handler: object,
    *,
    hostname: str | None,
    config: ServerConfig | None,
    tls: ssl.SSLContext | None,
    implicit_tls: bool,
    max_connections: int,
    read_timeout: float | None,
    reuse_port: bool = False,
) -> ServeSettings:
    """The settings ``serve()`` runs with: STARTTLS offered when a TLS
    context is given (and TLS is not implicit); contradictions refused."""
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        # Refused here, before binding, so that every adapter says the same.
        raise ValueError("reuse_port: SO_REUSEPORT is not available on this system")
    if implicit_tls and tls is None:
        raise ValueError("implicit_tls needs a tls context")
    if config is None:
        config = ServerConfig(starttls=tls is not None and not implicit_tls)
    elif config.starttls and tls is None:
        raise ValueError("config offers STARTTLS but no tls context was given")
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    hostname = hostname or socket.getfqdn()
    # RFC 5321 §4.1.1.1, §2.3.8: a hostname with CR, LF or a space would
    # break the greeting and the EHLO reply of every session; refused here
    # (LocalProtocolError) before listening, not once per connection.
    ServerConnection(hostname, config)
    return ServeSettings(
        handler,
        hostname,
        config,
        tls,
        implicit_tls,
        max_connections,
        read_timeout,
        reuse_port,
    )


class ServerBase:
    """What the three adapters' running servers have in common."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        #: The handler every session runs with.
        self.handler = settings.handler
        #: The name the server gives in its greeting and EHLO reply.
        self.hostname = settings.hostname
        #: The core's configuration of every session.
        self.config = settings.config

    def _listening_socket(self) -> socket.socket:
        raise NotImplementedError

    @property
    def address(self) -> tuple[str, int]:
        """The address the server listens on (the real port when 0 was asked)."""
        host, port = self._listening_socket().getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self.address[1]


# The events made from the addresses a caller of ``send()`` gave as text, by
# that text: the events are immutable, and a client sending message after
# message gives the same sender and recipients each time; each address is
# then parsed and checked once.  Only envelopes that parsed are kept, and
# at most _MAX_ENVELOPES of them.
_EnvelopeKey = tuple[str, tuple[str | RcptTo, ...], bool]
_ENVELOPES: dict[_EnvelopeKey, tuple[MailFrom, tuple[RcptTo, ...]]] = {}
_MAX_ENVELOPES = 256


def message_envelope(
    mail_from: str | MailFrom, recipients: Sequence[str | RcptTo], requiretls: bool
) -> tuple[MailFrom, list[RcptTo]]:
    """MAIL and RCPT events from what a caller of ``send()`` gave."""
    key: _EnvelopeKey | None = None
    if type(mail_from) is str:
        # Looked up before the recipients are checked to be text: a key
        # with an event in it cannot match a kept one (an event never
        # equals a str), and a hit costs no pass over the recipients.
        key = (mail_from, tuple(recipients), requiretls)
        known = _ENVELOPES.get(key)
        if known is not None:
            return known[0], list(known[1])
        if not all(type(r) is str for r in recipients):
            key = None
    mail = mail_from if isinstance(mail_from, MailFrom) else MailFrom(mail_from)
    if requiretls:
        mail = attrs.evolve(mail, requiretls=True)
    rcpts = [r if isinstance(r, RcptTo) else RcptTo(r) for r in recipients]
    if key is not None:
        if len(_ENVELOPES) >= _MAX_ENVELOPES:
            _ENVELOPES.clear()
        _ENVELOPES[key] = (mail, tuple(rcpts))
    return mail, rcpts


class AsyncClientBase:
    """The step-by-step client of the asynchronous adapters; a subclass
    answers the requests (``_run``), runs the handshake and closes."""

    def __init__(
        self, conn: ClientConnection, *, server_hostname: str, timeouts: Mapping[str, float]
    ) -> None:
        #: The core connection (``.state``, ``.capabilities``, ``.tls``).
        self.conn = conn
        self.server_hostname = server_hostname
        self.timeouts = timeouts
        #: The greeting.
        self.greeting: Reply | None = None

    async def _run(self, steps: Step[_T]) -> _T:
        """Answer the operation's requests until it returns; a failed write
        or read is sent back as Broken (the operation raises ConnectionError)."""
        result: object = None
        while True:
            try:
                request = steps.send(result)  # type: ignore[arg-type]
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            try:
                if isinstance(request, Write):
                    await self._write(request.data, request.timeout)
                    result = None
                elif isinstance(request, Read):
                    result = await self._read(request.max_bytes, request.timeout)
                else:  # pragma: no cover - the client operations ask for nothing else
                    raise TypeError(f"unknown request {request!r}")
            except self._failures as exc:
                # trio's BrokenResourceError says nothing itself: its cause
                # (a bad record MAC, a reset) is what the caller needs to see
                cause = exc.__cause__
                why = str(exc) or type(exc).__name__
                result = Broken(f"{why}: {type(cause).__name__}: {cause}" if cause else why)

    #: What a failed write or read raises in this adapter.
    _failures: tuple[type[BaseException], ...] = (OSError, TimeoutError)

    async def _write(self, data: bytes, timeout: float) -> None:
        raise NotImplementedError

    async def _read(self, max_bytes: int, timeout: float) -> bytes:
        raise NotImplementedError

    async def _handshake(self, context: ssl.SSLContext | None, *, ehlo: bool) -> TLSInfo:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection without QUIT."""
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _greet(self, context: ssl.SSLContext | None, implicit_tls: bool) -> None:
        try:
            if implicit_tls:
                await self._handshake(context, ehlo=False)
            self.greeting = await self._run(client_ops.greet(self.conn, self.timeouts))
            await self.ehlo()
        except BaseException:
            await self.close()
            raise

    async def ehlo(self, name: str | None = None) -> Reply:
        """EHLO (LHLO in LMTP); the offer is then ``conn.capabilities``."""
        return await self.command(Ehlo(name or self.conn.hostname))

    async def command(self, event: Event) -> Reply:
        """Send any command event and return its reply."""
        return await self._run(client_ops.command(self.conn, event, self.timeouts))

    async def starttls(self, context: ssl.SSLContext | None = None) -> TLSInfo:
        """STARTTLS, the handshake (verifying the server's name by default),
        then EHLO again (RFC 3207 §4.2).  Raises on a refusal."""
        await self._run(client_ops.starttls(self.conn, self.timeouts))
        return await self._handshake(context, ehlo=True)

    async def login(self, username: str, password: str, mechanism: str | None = None) -> Reply:
        """AUTH PLAIN (or LOGIN); returns the final reply, 235 on success."""
        return await self._run(
            client_ops.authenticate(self.conn, username, password, mechanism, self.timeouts)
        )

    async def send(
        self,
        mail_from: str | MailFrom,
        recipients: Sequence[str | RcptTo],
        content: bytes | Iterable[bytes],
        *,
        requiretls: bool = False,
        chunking: bool = True,
    ) -> SendResult:
        """Send one message (see :meth:`smtp_rtls.io.sync.Client.send`)."""
        mail, rcpts = message_envelope(mail_from, recipients, requiretls)
        steps = client_ops.send_message(
            self.conn, mail, rcpts, content, self.timeouts, chunking=chunking
        )
        return await self._run(steps)

    async def quit(self) -> None:
        """QUIT (when the session allows it) and close."""
        try:
            if self.conn.state not in (State.CLOSED, State.STARTTLS):
                await self.command(Quit())
        except (OSError, ConnectionError, ProtocolError):
            pass
        finally:
            await self.close()

    def _started(self, info: TLSInfo) -> TLSInfo:
        self.conn.start_tls(info)
        return info


def no_delay(sock: socket.socket) -> None:
    """Turn off Nagle's algorithm, as asyncio and trio do for every TCP socket.

    SMTP writes small pieces that the peer must see at once (a reply, the
    final "." after the content); with Nagle, a small write after another
    waits for the peer's delayed acknowledgement, 40 ms on Linux, per
    message.
    """
    with contextlib.suppress(OSError):  # not TCP (a Unix socket): nothing to do
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def call_awaiting(request: Call) -> Any:
    """A session's handler call, awaited when its result is awaitable (the
    asynchronous adapters' calls after a session ended early): the result,
    or the exception it raised."""
    try:
        result = getattr(request.target, request.method)(*request.args)
        if awaitable(result):
            result = await result
    except Exception as exc:
        return exc
    return result
