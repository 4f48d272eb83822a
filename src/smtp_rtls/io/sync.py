"""The blocking adapter: serve and deliver SMTP with threads and the ``ssl`` module.

``deliver(...)`` runs the whole RFC 8689 delivery loop of
:class:`~smtp_rtls.session.Delivery` for one recipient domain.
``serve(handler, host, port, ...)`` starts a server in the background and
returns it; each connection runs a
:class:`~smtp_rtls.session.server.ServerSession` in a thread of its own
(kept for a second once the session is over, for the next connection).
The adapter only moves bytes, runs handshakes, keeps time and calls the
handler: every protocol decision is the session's.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from .._client import ClientConnection
from .._config import ServerConfig
from .._errors import ProtocolError
from .._events import Ehlo, Event, MailFrom, Quit, RcptTo
from .._reply import Reply
from .._state import REPLY_TIMEOUTS, State, read_wait
from .._tls import TLSInfo
from ..session import client as client_ops
from ..session.client import SendResult
from ..session.requests import Broken, Step
from ..session.requests import Read as ClientRead
from ..session.requests import Write as ClientWrite
from ..session.server import Call, Read, ServerSession, StartTLS, Write
from ._awaitable import awaitable
from ._common import (
    AcceptFailures,
    ServerBase,
    ServeSettings,
    message_envelope,
    no_delay,
    serve_settings,
)
from ._deliver_sync import deliver
from .tls import tls_info

__all__ = ["Client", "Server", "connect", "deliver", "serve"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

READ_SIZE = 65536
#: Seconds a session thread waits for the next connection once its session
#: is over, before it ends (see Server._serve).
_IDLE_WAIT = 1.0


class Server(ServerBase):
    """A running server: :meth:`shutdown` (or leaving a ``with`` block)
    stops it gracefully."""

    def __init__(self, settings: ServeSettings, listener: socket.socket) -> None:
        super().__init__(settings)
        self._listener = listener
        self._lock = threading.Lock()
        # The sessions in flight (each connection, by itself), and the
        # thread running each (none while it waits in _jobs).
        self._sessions: dict[socket.socket, socket.socket] = {}
        self._running: dict[socket.socket, threading.Thread] = {}
        # A session thread, its session over, waits _IDLE_WAIT seconds for
        # the next connection before it ends: starting a thread costs more
        # than a short session's protocol work, and the accepting thread
        # waits for each start.  The connections handed over wait in _jobs;
        # _idle counts the threads waiting, both under _lock.
        self._idle = 0
        self._jobs: deque[tuple[socket.socket, Any]] = deque()
        self._job_ready = threading.Condition(self._lock)
        self._ended = threading.Condition(self._lock)  # a session ended
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        # Set before the thread starts: a shutdown() right after serve()
        # closes the listener, and settimeout() on it then raises.
        self._listener.settimeout(0.2)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"smtp-rtls-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()

    def _listening_socket(self) -> socket.socket:
        return self._listener

    @property
    def active(self) -> int:
        """Sessions in flight."""
        with self._lock:
            return len(self._sessions)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def shutdown(self, deadline: float = 30.0) -> None:
        """Stop accepting, let the sessions in flight finish for up to
        ``deadline`` seconds, then close what is left."""
        self._stopping.set()
        self._listener.close()
        self._accept_thread.join(5)
        with self._lock:
            # the idle threads end now, the others when their session has
            self._job_ready.notify_all()
            self._ended.wait_for(lambda: not self._sessions, deadline)
            left = [(sock, self._running.get(sock)) for sock in self._sessions]
        for sock, thread in left:
            _close(sock)
            if thread is not None:
                thread.join(5)
        with self._lock:
            # handed over and not started: they end at once on a closed socket
            self._ended.wait_for(lambda: not self._sessions, 5)
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    # -- internals ---------------------------------------------------------------------

    def _accept_loop(self) -> None:
        failures = AcceptFailures(logger)
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                wait = failures.after(exc)
                if wait is None:
                    return  # the listener was closed
                if wait:
                    self._stopping.wait(wait)
                continue
            if failures.count:
                failures.accepted()
            no_delay(sock)
            handed = False
            with self._lock:
                full = len(self._sessions) >= self.settings.max_connections
                if not full:
                    self._sessions[sock] = sock
                    handed = self._idle > len(self._jobs)
                    if handed:
                        # a thread waiting for a connection takes it
                        self._jobs.append((sock, peer))
                        self._job_ready.notify()
            if full:
                # RFC 5321 §3.8 / §4.2.2: 421, service not available
                _refuse(sock, Reply(421, f"{self.hostname} Too many connections", "4.3.2"))
            elif not handed:
                thread = threading.Thread(
                    target=self._serve, args=(sock, peer), name="smtp-rtls-session", daemon=True
                )
                with self._lock:
                    self._threads.add(thread)
                thread.start()

    def _serve(self, sock: socket.socket, peer: Any) -> None:
        """A session thread: this connection, then the next ones handed
        over while it waits (see _idle), until none comes in time."""
        me = threading.current_thread()
        job: tuple[socket.socket, Any] | None = (sock, peer)
        try:
            while job is not None:
                self._run(*job, me)
                with self._lock:
                    self._idle += 1
                    end = time.monotonic() + _IDLE_WAIT
                    while not self._jobs and not self._stopping.is_set():
                        left = end - time.monotonic()
                        if left <= 0:
                            break
                        self._job_ready.wait(left)
                    self._idle -= 1
                    # a job handed over as the wait ran out is taken all the same
                    job = self._jobs.popleft() if self._jobs else None
        finally:
            with self._lock:
                self._threads.discard(me)

    def _run(self, sock: socket.socket, peer: Any, thread: threading.Thread) -> None:
        settings = self.settings
        with self._lock:
            self._running[sock] = thread
        try:
            run_session(
                self.handler,
                sock,
                hostname=self.hostname,
                config=self.config,
                peer=(peer[0], peer[1]),
                tls=settings.tls,
                implicit_tls=settings.implicit_tls,
                read_timeout=settings.read_timeout,
            )
        except Exception:  # pragma: no cover - run_session handles its own errors
            logger.exception("session with %s failed", peer)
        finally:
            with self._lock:
                self._sessions.pop(sock, None)
                self._running.pop(sock, None)
                self._ended.notify_all()


def serve(
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

    ``tls`` is the server context for STARTTLS (offered only when given,
    unless ``config`` says otherwise) or, with ``implicit_tls``, for TLS from
    the first byte (RFC 8314 §3, port 465).  ``hostname`` defaults to the
    machine's name.  ``max_connections`` bounds the sessions in flight; one
    more is answered ``421`` and closed.  ``read_timeout`` caps every wait
    for the peer (RFC 5321 §4.5.3.2's values per state by default).
    ``reuse_port`` sets ``SO_REUSEPORT`` on the listening socket, so that
    several processes can listen on the same port and the kernel spreads
    the connections between them (``smtp-rtls serve --workers``); a
    ``ValueError`` where the system lacks it.
    Returns the running :class:`Server`.
    """
    settings = serve_settings(
        handler,
        hostname=hostname,
        config=config,
        tls=tls,
        implicit_tls=implicit_tls,
        max_connections=max_connections,
        read_timeout=read_timeout,
        reuse_port=reuse_port,
    )
    # an IPv6 literal listens on IPv6 (create_server defaults to IPv4)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, reuse_port=reuse_port)
    return Server(settings, listener)


def run_session(
    handler: object,
    sock: socket.socket,
    *,
    hostname: str,
    config: ServerConfig | None = None,
    peer: tuple[str, int] | None = None,
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    read_timeout: float | None = None,
) -> None:
    """Run one server session on a connected socket, then close it."""
    info = None
    stream = _Stream(sock, read_timeout)
    try:
        if implicit_tls:
            assert tls is not None
            stream.sock.settimeout(read_timeout or 300.0)
            stream.sock = tls.wrap_socket(stream.sock, server_side=True)
            info = tls_info(stream.sock)
        session = ServerSession(
            handler, hostname, config, peer=peer, tls=info, can_starttls=tls is not None
        )
        stream.drive(session, tls)
    except (OSError, ssl.SSLError) as exc:
        logger.info("session with %s ended: %s", peer, exc)
    finally:
        _close(stream.sock)


class _Stream:
    """One connection's socket (replaced by its TLS socket after STARTTLS)
    and its clock."""

    def __init__(self, sock: socket.socket, read_timeout: float | None) -> None:
        self.sock = sock
        self.read_timeout = read_timeout
        self.last_write = time.monotonic()
        # The socket's timeout as last set: settimeout() is a system call
        # even when the value does not change, and most reads wait as long
        # as the one before.
        self._timeout: float | None = None

    def drive(self, session: ServerSession, tls: ssl.SSLContext | None) -> None:
        steps = session.run()
        send = steps.send
        result: Any = None
        try:
            while True:
                request = send(result)
                # by frequency: a message makes about six calls, two reads
                # and two writes (exact types: the session makes these)
                if type(request) is Call:
                    result = _call(request)
                elif type(request) is Read:
                    result = self.read(request)
                elif type(request) is Write:
                    self.sock.sendall(request.data)
                    self.last_write = time.monotonic()
                    result = None
                elif type(request) is StartTLS:
                    result = self.start_tls(tls)
                else:  # pragma: no cover - the session yields nothing else
                    raise TypeError(f"unknown request {request!r}")
        except StopIteration:
            return
        except (OSError, ssl.SSLError):
            # a timeout, a reset, a cut handshake: the session cannot
            # finish, but the handler still learns of it
            steps.close()
            for call in session.abort_calls():
                _call(call)
            raise

    def read(self, request: Read) -> bytes:
        # Read.wait's rule, without the method's frame
        timeout = read_wait(
            request.timeout,
            request.deadline,
            time.monotonic() - self.last_write,
            self.read_timeout,
        )
        sock = self.sock
        if timeout != self._timeout:
            sock.settimeout(timeout)
            self._timeout = timeout
        return sock.recv(READ_SIZE)

    def start_tls(self, tls: ssl.SSLContext | None) -> object:
        assert tls is not None
        try:
            self.sock = tls.wrap_socket(self.sock, server_side=True)
            self._timeout = None  # a new socket: set it again at the next read
            return tls_info(self.sock)
        except (OSError, ssl.SSLError) as exc:
            logger.info("TLS handshake failed: %s", exc)
            return None


def _call(request: Call) -> Any:
    try:
        result = getattr(request.target, request.method)(*request.args)
    except Exception as exc:
        return exc
    # most results are a Reply or None: not awaitable, no need to ask
    if result is None or type(result) is Reply:
        return result
    if awaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        return TypeError(f"{request.method} is asynchronous: use smtp_rtls.io.asyncio")
    return result


def _refuse(sock: socket.socket, reply: Reply) -> None:
    try:
        sock.settimeout(5)
        sock.sendall(reply.format())
    except OSError:
        pass
    finally:
        _close(sock)


def _close(sock: socket.socket) -> None:
    if sock.fileno() == -1:
        return  # closed already (quit(), then the with block's close())
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


# -- the step-by-step client -----------------------------------------------------------


class Client:
    """A client session used step by step (submission, tests, tools).

    Made by :func:`connect`.  Each method runs one operation of
    :mod:`smtp_rtls.session.client` on the socket: the core refuses what the
    session does not allow before a byte is written (LocalProtocolError,
    RequireTLSError), a server that breaks the protocol raises
    RemoteProtocolError, a broken connection ConnectionError.
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: ClientConnection,
        *,
        server_hostname: str,
        timeouts: Mapping[str, float],
    ) -> None:
        self.sock = sock
        #: The core connection (``.state``, ``.capabilities``, ``.tls``).
        self.conn = conn
        self.server_hostname = server_hostname
        self.timeouts = timeouts
        #: The greeting (or, after STARTTLS, unchanged).
        self.greeting: Reply | None = None
        # The socket's timeout as last set: settimeout() is a system call
        # (fcntl) even when the value does not change, and most waits repeat
        # the one before.
        self._timeout: float | None = None

    def _set_timeout(self, timeout: float) -> None:
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, steps: Step[_T]) -> _T:
        result: object = None
        send = steps.send
        # no handshake happens inside an operation: the socket stays the same
        sock = self.sock
        while True:
            try:
                request = send(result)  # type: ignore[arg-type]
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            # The client operations make these two classes exactly (and
            # ask for nothing else): an identity test per request instead
            # of isinstance against a union and then a class.
            kind = type(request)
            if kind is not ClientRead and kind is not ClientWrite:  # pragma: no cover
                raise TypeError(f"unknown request {request!r}")
            # (what the test above established, for mypy, at no run-time cost)
            req: ClientRead | ClientWrite = request  # type: ignore[assignment]
            try:
                # _set_timeout(), inline: a Python call less per request
                if req.timeout != self._timeout:
                    sock.settimeout(req.timeout)
                    self._timeout = req.timeout
                if type(req) is ClientRead:
                    result = sock.recv(req.max_bytes)
                else:
                    sock.sendall(req.data)  # type: ignore[union-attr]
                    result = None
            except OSError as exc:
                result = Broken(str(exc) or type(exc).__name__)

    def ehlo(self, name: str | None = None) -> Reply:
        """EHLO (LHLO in LMTP); the offer is then ``conn.capabilities``."""
        return self.command(Ehlo(name or self.conn.hostname))

    def command(self, event: Event) -> Reply:
        """Send any command event and return its reply."""
        return self._run(client_ops.command(self.conn, event, self.timeouts))

    def starttls(self, context: ssl.SSLContext | None = None) -> TLSInfo:
        """STARTTLS, the handshake (verifying the server's name by default),
        then EHLO again (RFC 3207 §4.2).  Raises on a refusal."""
        self._run(client_ops.starttls(self.conn, self.timeouts))
        return self._handshake(context, ehlo=True)

    def _handshake(self, context: ssl.SSLContext | None, *, ehlo: bool) -> TLSInfo:
        context = context if context is not None else ssl.create_default_context()
        self._set_timeout(self.timeouts.get("TLS", 300.0))
        self.sock = context.wrap_socket(self.sock, server_hostname=self.server_hostname)
        verified = self.server_hostname if context.check_hostname else None
        info = tls_info(self.sock, verified)
        self.conn.start_tls(info)
        if ehlo:
            self.ehlo()
        return info

    def login(self, username: str, password: str, mechanism: str | None = None) -> Reply:
        """AUTH PLAIN (or LOGIN); returns the final reply, 235 on success."""
        return self._run(
            client_ops.authenticate(self.conn, username, password, mechanism, self.timeouts)
        )

    def send(
        self,
        mail_from: str | MailFrom,
        recipients: Sequence[str | RcptTo],
        content: bytes | Iterable[bytes],
        *,
        requiretls: bool = False,
        chunking: bool = True,
    ) -> SendResult:
        """Send one message (``requiretls``: MAIL FROM ... REQUIRETLS, RFC
        8689; the core refuses it unless TLS is up and the server offered it
        after the handshake).

        A message of one ``bytes`` up to
        :data:`~smtp_rtls.session.client.CHUNKING_MAX` goes in one write
        with BDAT (RFC 3030) when the server offers CHUNKING and
        PIPELINING: one round trip instead of two.  ``chunking=False``
        keeps to DATA (see :func:`smtp_rtls.session.client.send_message`).
        """
        mail, rcpts = message_envelope(mail_from, recipients, requiretls)
        return self._run(
            client_ops.send_message(
                self.conn, mail, rcpts, content, self.timeouts, chunking=chunking
            )
        )

    def quit(self) -> None:
        """QUIT (when the session allows it) and close."""
        try:
            if self.conn.state not in (State.CLOSED, State.STARTTLS):
                self.command(Quit())
        except (OSError, ConnectionError, ProtocolError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection without QUIT."""
        _close(self.sock)


def connect(
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
    """Connect, read the greeting and send EHLO; return the :class:`Client`.

    ``implicit_tls`` for port 465 (RFC 8314 §3): the handshake comes first,
    with ``tls_context`` (default: verify ``server_hostname``, which
    defaults to ``host``).  Raises ConnectionError when the greeting is not
    220.  ``timeout`` replaces every RFC 5321 §4.5.3.2 wait when given.
    """
    timeouts: Mapping[str, float] = (
        REPLY_TIMEOUTS if timeout is None else client_ops.uniform(timeout)
    )
    sock = socket.create_connection((host, port), timeout=timeout or 30.0)
    no_delay(sock)
    conn = ClientConnection(local_hostname or socket.getfqdn(), lmtp=lmtp)
    client = Client(sock, conn, server_hostname=server_hostname or host, timeouts=timeouts)
    client._timeout = sock.gettimeout()  # set by create_connection()
    try:
        if implicit_tls:
            client._handshake(tls_context, ehlo=False)
        client.greeting = client._run(client_ops.greet(conn, timeouts))
        client.ehlo()
    except BaseException:
        client.close()
        raise
    return client
