"""The misbehaving servers of :mod:`smtp_rtls.testing.peers` (documented there)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Any, ClassVar

import attrs

from .. import (
    NEED_DATA,
    PAUSED,
    Capabilities,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MailFrom,
    MessageData,
    ProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
    TLSInfo,
)
from ..io.tls import tls_info
from ._pki import CERTIFICATE_KINDS, LoopbackCA

__all__ = [
    "DEFAULT_MAX_RECORD",
    "BadCertificateServer",
    "CloseMidDataServer",
    "InjectAfterStartTLSServer",
    "NoRequireTLSAfterTLSServer",
    "RefuseStartTLSServer",
    "RequireTLSBeforeTLSServer",
    "ScriptedServer",
    "ServerSessionRecord",
    "SilentServer",
    "StripStartTLSServer",
    "TrickleServer",
]

_READ = 65536

#: The octets a peer records per connection by default (16 MiB): what it
#: received, plaintext and decrypted together.  A record holds at most
#: ``max_record // 128`` events too (131,072 by default), since a flood of
#: short commands costs far more as events than as octets.
DEFAULT_MAX_RECORD = 16 * 1024 * 1024


@attrs.define
class ServerSessionRecord:
    """What a :class:`ScriptedServer` saw in one connection."""

    #: The client's address and port.
    peer: tuple[str, int]
    #: Every octet received before TLS (all of them, when TLS never started).
    plaintext: bytearray = attrs.Factory(bytearray)
    #: Every octet received inside TLS, decrypted.
    encrypted: bytearray = attrs.Factory(bytearray)
    #: The TLS session, when a handshake succeeded.
    tls: TLSInfo | None = None
    #: The events the server connection read (commands, content, refusals).
    events: list[Event] = attrs.Factory(list)
    #: The message content received (every :class:`~smtp_rtls.MessageData`),
    #: whether or not the message was accepted.
    content: bytearray = attrs.Factory(bytearray)
    #: The contents of the messages the server answered ``250``.
    messages: list[bytes] = attrs.Factory(list)
    #: Why the session ended, when it was not the client's QUIT or close.
    error: str | None = None
    #: The recording limit was reached: the record keeps the first octets
    #: (exactly ``max_record`` of them) and events, and the server closed
    #: the connection then (see :class:`ScriptedServer`).
    truncated: bool = False

    @property
    def received(self) -> bytes:
        """Every octet received, plaintext then decrypted."""
        return bytes(self.plaintext + self.encrypted)

    @property
    def mail_from(self) -> list[MailFrom]:
        """The MAIL commands the server read."""
        return [e for e in self.events if isinstance(e, MailFrom)]


class _Closed(Exception):
    """The script ends the connection now."""


class _RecordFull(Exception):
    """A peer's recording limit was reached: it ends the connection now."""


class ScriptedServer:
    """An SMTP server on ``host`` (127.0.0.1), a free port, that accepts
    everything, over STARTTLS with a valid certificate of ``ca``: the base of
    the misbehaving servers, and the ``honest`` control.

    ``ca`` defaults to a new :class:`LoopbackCA` (closed at :meth:`stop`)
    whose certificates name ``hostname``; ``config`` defaults to
    ``ServerConfig(starttls=True)``.  ``timeout`` bounds every wait for the
    client.  The constructor starts it; :meth:`stop` (or the end of a
    ``with`` block) stops it and joins its threads.  Read the records after
    stopping, or once the client is done.

    ``max_record`` bounds what each connection's record keeps
    (``DEFAULT_MAX_RECORD``, 16 MiB, by default; ``None``: no bound): the
    octets received, and ``max_record // 128`` events.  A client that sends
    more is cut off: the record keeps exactly the first ``max_record``
    octets, its ``truncated`` is set and its ``error`` says which limit was
    reached, and the server closes that connection, so that a test sees a
    failure rather than a peer that grows without end.

    A subclass changes one thing by overriding one hook: :meth:`tls_context`,
    :meth:`decide`, :meth:`rewrite`, :meth:`write`, :meth:`on_content` or
    :meth:`session`.
    """

    #: The misbehaviour's name (the key in :data:`SERVERS`).
    name: ClassVar[str] = "honest"

    def __init__(
        self,
        *,
        ca: LoopbackCA | None = None,
        hostname: str = "mx.test.example",
        config: ServerConfig | None = None,
        host: str = "127.0.0.1",
        timeout: float = 10.0,
        max_record: int | None = DEFAULT_MAX_RECORD,
    ) -> None:
        if max_record is not None and max_record < 1:
            raise ValueError("max_record must be a positive number of octets, or None")
        #: The octets each connection's record keeps at most (None: no bound).
        self.max_record = max_record
        self._own_ca = ca is None
        #: The names the server's certificates carry: ``hostname`` and the
        #: loopback names (``localhost``, ``127.0.0.1``, ``::1``).
        self.names = (hostname, "localhost", "127.0.0.1", "::1")
        #: The CA of the server's certificates; trust its ``cafile``.
        self.ca = ca if ca is not None else LoopbackCA(self.names)
        #: The name the server gives itself.
        self.hostname = hostname
        self.config = config if config is not None else ServerConfig(starttls=True)
        self.timeout = timeout
        #: One record per connection, in the order they came.
        self.sessions: list[ServerSessionRecord] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        self._listener.settimeout(0.1)
        #: The address and the port it listens on.
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # each connection's socket, in a list of one (the TLS socket replaces it)
        self._holders: list[list[socket.socket]] = []
        self._accept = threading.Thread(
            target=self._accept_loop, name=f"smtp-rtls-peer-{self.name}", daemon=True
        )
        self._accept.start()

    # -- life ----------------------------------------------------------------------

    @property
    def cafile(self) -> str:
        """The CA certificate (PEM file) to trust."""
        return self.ca.cafile

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, cut every connection, join every thread (at most
        ``timeout`` seconds each).  Raises RuntimeError if one does not end."""
        self._stopping.set()
        self._accept.join(timeout)
        self._listener.close()
        with self._lock:
            holders, threads = list(self._holders), list(self._threads)
        for holder in holders:
            with contextlib.suppress(OSError):
                holder[0].shutdown(socket.SHUT_RDWR)
        for thread in [self._accept, *threads]:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"{thread.name} did not stop")
        if self._own_ca:
            self.ca.close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what was received ---------------------------------------------------------

    @property
    def received(self) -> bytes:
        """Every octet received over every connection (decrypted after TLS)."""
        with self._lock:
            return b"".join(s.received for s in self.sessions)

    @property
    def content(self) -> bytes:
        """Every octet of message content received, accepted or not."""
        with self._lock:
            return b"".join(bytes(s.content) for s in self.sessions)

    @property
    def messages(self) -> list[bytes]:
        """The contents of the messages answered ``250``."""
        with self._lock:
            return [m for s in self.sessions for m in s.messages]

    @property
    def mail_from(self) -> list[MailFrom]:
        """Every MAIL command read."""
        with self._lock:
            return [m for s in self.sessions for m in s.mail_from]

    # -- hooks -----------------------------------------------------------------------

    def tls_context(self) -> ssl.SSLContext:
        """The server context of the STARTTLS handshake."""
        return self.ca.server_context("valid", self.names)

    def decide(self, event: Event) -> Reply | None:
        """The reply to what the connection owes one to (``None``: say
        nothing, keep reading until the client goes)."""
        if isinstance(event, Ehlo | Helo):
            return Reply(250, f"greets {event.domain}")
        if isinstance(event, Data):
            return Reply(354, "End data with <CR><LF>.<CR><LF>")
        if isinstance(event, StartTLS):
            return Reply(220, "Ready to start TLS", "2.0.0")
        if isinstance(event, EndOfMessage):
            return Reply(250, "Queued", "2.0.0")
        return Reply(250, "OK", "2.0.0")

    def rewrite(self, owed: Event, out: bytes, tls: bool) -> bytes:
        """The bytes that go out for the reply to ``owed`` (``out``, as the
        connection made it); ``tls`` says whether the session is protected."""
        return out

    def write(self, sock: socket.socket, data: bytes) -> None:
        """Send ``data`` to the client."""
        sock.sendall(data)

    def on_content(self, record: ServerSessionRecord) -> None:
        """Called after each piece of content; raise to end the connection."""

    def greeting(self) -> Reply:
        """The greeting."""
        return Reply(220, f"{self.hostname} ESMTP scripted peer ({self.name})")

    # -- the session -------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            record = ServerSessionRecord((peer[0], peer[1]))
            holder = [sock]
            thread = threading.Thread(
                target=self._run, args=(holder, record), name=f"smtp-rtls-peer-{peer}", daemon=True
            )
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    return
                self.sessions.append(record)
                self._holders.append(holder)
                self._threads.append(thread)
            thread.start()

    def _run(self, holder: list[socket.socket], record: ServerSessionRecord) -> None:
        sock = holder[0]
        sock.settimeout(self.timeout)
        try:
            self.session(holder, record)
        except (_Closed, _RecordFull) as exc:
            record.error = str(exc) or None
        except (OSError, ssl.SSLError, ProtocolError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            for s in {id(s): s for s in (sock, holder[0])}.values():
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _read(self, sock: socket.socket, record: ServerSessionRecord) -> bytes:
        data = sock.recv(_READ)
        _keep(record, data, self.max_record)
        return data

    def _linger(self, sock: socket.socket, record: ServerSessionRecord) -> None:
        """Say nothing; read (and record) until the client goes, the timeout
        passes or the server stops."""
        end = time.monotonic() + self.timeout
        sock.settimeout(0.1)
        while not self._stopping.is_set() and time.monotonic() < end:
            try:
                if not self._read(sock, record):
                    return
            except TimeoutError:
                continue

    def session(self, holder: list[socket.socket], record: ServerSessionRecord) -> None:
        """Run one connection; ``holder[0]`` is its socket (replaced by the
        TLS socket after STARTTLS)."""
        conn = ServerConnection(self.hostname, self.config)
        self.write(holder[0], conn.send(self.greeting()))
        start = 0  # where the current message's content starts in record.content
        while True:
            event = conn.next_event()
            sock = holder[0]
            if event is NEED_DATA:
                out = conn.data_to_send()
                if out:
                    self.write(sock, out)
                conn.receive_data(self._read(sock, record))
            elif event is PAUSED:
                owed = conn.pending
                assert owed is not None
                reply = self.decide(owed)
                if reply is None:
                    self._linger(sock, record)
                    return
                out = self.rewrite(owed, conn.send(reply), conn.tls is not None)
                self.write(sock, out)
                if isinstance(owed, EndOfMessage):
                    if reply.is_positive:
                        record.messages.append(bytes(record.content[start:]))
                    start = len(record.content)
                if isinstance(owed, StartTLS) and reply.code == 220:
                    sock = self.tls_context().wrap_socket(sock, server_side=True)
                    holder[0] = sock
                    record.tls = tls_info(sock)
                    conn.start_tls(record.tls)
            elif isinstance(event, ConnectionClosed):
                out = conn.data_to_send()
                if out:
                    self.write(sock, out)
                return
            else:
                assert isinstance(event, Event)
                if self.max_record is not None and len(record.events) >= self.max_record // 128:
                    record.truncated = True
                    raise _RecordFull(
                        f"recording limit of {self.max_record // 128} events reached"
                    )
                record.events.append(event)
                if isinstance(event, MailFrom):
                    start = len(record.content)
                if isinstance(event, MessageData):
                    record.content += event.data
                    self.on_content(record)
                out = conn.data_to_send()
                if out:
                    self.write(sock, out)


def _keep(record: ServerSessionRecord | Any, data: bytes, limit: int | None) -> None:
    """Add ``data`` to ``record`` (its ``encrypted`` octets once TLS is up,
    else its ``plaintext``), up to ``limit`` octets in all: past it, keep
    what fits, mark the record ``truncated`` and end the connection."""
    target = record.encrypted if record.tls else record.plaintext
    if limit is not None:
        room = limit - len(record.plaintext) - len(record.encrypted)
        if len(data) > room:
            target += data[: max(room, 0)]
            record.truncated = True
            raise _RecordFull(f"recording limit of {limit} octets reached")
    target += data


def _edit_offer(out: bytes, *, remove: str = "", add: str = "") -> bytes:
    """The EHLO reply ``out`` without the keyword ``remove`` / with ``add``."""
    reply = Reply.parse(out)
    if not reply.is_positive:
        return out
    caps = Capabilities.from_reply(reply)
    entries = [(k, p) for k, p in caps.entries if k.upper() != remove]
    if add and add not in caps:
        entries.append((add, ()))
    return Capabilities(caps.domain, caps.greeting, entries).to_reply().format()


class StripStartTLSServer(ScriptedServer):
    """``strip-starttls``: the EHLO reply does not list STARTTLS, as when a
    man in the middle removes the line (RFC 3207 §7; the downgrade RFC 8689
    exists to defeat).  A STARTTLS sent anyway still works.

    A correct client sends a REQUIRETLS message nowhere here (RFC 8689
    §4.2.1: 5.7.10), and nothing else in plaintext unless its policy allows.
    """

    name = "strip-starttls"

    def rewrite(self, owed: Event, out: bytes, tls: bool) -> bytes:
        if isinstance(owed, Ehlo) and not tls:
            return _edit_offer(out, remove="STARTTLS")
        return out


class RefuseStartTLSServer(ScriptedServer):
    """``starttls-454``: offers STARTTLS and answers it ``454 4.7.0 TLS not
    available due to temporary reason`` (RFC 3207 §4).

    A correct client does not go on in plaintext with a message that needs
    TLS; a REQUIRETLS message is deferred or tried elsewhere.
    """

    name = "starttls-454"

    def decide(self, event: Event) -> Reply | None:
        if isinstance(event, StartTLS):
            return Reply(454, "TLS not available due to temporary reason", "4.7.0")
        return super().decide(event)


class BadCertificateServer(ScriptedServer):
    """``certificate-<kind>``: an honest server whose STARTTLS handshake
    presents a bad certificate: ``kind`` is ``"wrong-name"``, ``"expired"``,
    ``"self-signed"`` or ``"untrusted"`` (see :data:`~smtp_rtls.testing.peers.CERTIFICATE_KINDS`).

    A client that verifies (PKIX, as RFC 8689 §4.2.1 requires for REQUIRETLS
    without DANE) fails the handshake and sends no MAIL.
    """

    name = "certificate"

    def __init__(self, kind: str = "self-signed", **options: Any) -> None:
        if kind not in CERTIFICATE_KINDS or kind == "valid":
            raise ValueError(f"not a bad certificate kind: {kind!r}")
        #: Which bad certificate.
        self.kind = kind
        super().__init__(**options)

    def tls_context(self) -> ssl.SSLContext:
        return self.ca.server_context(self.kind, self.names)


class NoRequireTLSAfterTLSServer(ScriptedServer):
    """``no-requiretls-after-tls``: STARTTLS works, but the EHLO reply after
    TLS does not list REQUIRETLS (as a server without RFC 8689, or an
    attacker who stripped it).

    A correct client sends no ``MAIL ... REQUIRETLS`` (RFC 8689 §4.2.1 step
    5: 5.7.30) and no content of a REQUIRETLS message.
    """

    name = "no-requiretls-after-tls"

    def rewrite(self, owed: Event, out: bytes, tls: bool) -> bytes:
        if isinstance(owed, Ehlo) and tls:
            return _edit_offer(out, remove="REQUIRETLS")
        return out


class RequireTLSBeforeTLSServer(ScriptedServer):
    """``requiretls-before-tls``: the plaintext EHLO reply lists REQUIRETLS,
    which RFC 8689 §2 forbids, and (unless ``starttls``) no STARTTLS: a trap
    for a client that trusts an offer made before TLS.

    A correct client never sends ``MAIL ... REQUIRETLS`` in plaintext
    (RFC 8689 §4.2.1: only the EHLO reply after TLS counts).
    """

    name = "requiretls-before-tls"

    def __init__(self, *, starttls: bool = False, **options: Any) -> None:
        #: Whether STARTTLS is still offered.
        self.starttls = starttls
        super().__init__(**options)

    def rewrite(self, owed: Event, out: bytes, tls: bool) -> bytes:
        if isinstance(owed, Ehlo) and not tls:
            return _edit_offer(out, remove="" if self.starttls else "STARTTLS", add="REQUIRETLS")
        return out


class InjectAfterStartTLSServer(ScriptedServer):
    """``inject-after-starttls``: after ``220`` to STARTTLS, in the same
    write, the plaintext ``injected`` replies follow (default a whole EHLO
    reply offering REQUIRETLS).  A client that keeps them buffered reads
    them after the handshake as if they had come through TLS (the response
    injection of the 2021 STARTTLS study; RFC 3207 §4.2).

    A correct client refuses the connection before the handshake: nothing
    after the 220 is ever read as a reply.
    """

    name = "inject-after-starttls"

    def __init__(self, *, injected: bytes | None = None, **options: Any) -> None:
        #: What follows the 220.
        self.injected = (
            injected
            if injected is not None
            else b"250-mx.injected.example\r\n250-PIPELINING\r\n250 REQUIRETLS\r\n"
        )
        super().__init__(**options)

    def rewrite(self, owed: Event, out: bytes, tls: bool) -> bytes:
        if isinstance(owed, StartTLS):
            return out + self.injected
        return out


class TrickleServer(ScriptedServer):
    """``trickle``: every reply goes out ``size`` octets at a time (default
    one), ``delay`` seconds apart (default 0.05).  Legal but slow; a client
    must reassemble replies from any split and bound the whole wait."""

    name = "trickle"

    def __init__(self, *, delay: float = 0.05, size: int = 1, **options: Any) -> None:
        #: Seconds between two pieces.
        self.delay = delay
        #: Octets per piece.
        self.size = size
        super().__init__(**options)

    def write(self, sock: socket.socket, data: bytes) -> None:
        for i in range(0, len(data), self.size):
            if self._stopping.wait(self.delay if i else 0):
                raise _Closed("stopped")
            sock.sendall(data[i : i + self.size])


class SilentServer(ScriptedServer):
    """``silent`` / ``silent-after-data``: with ``stage="connect"`` (the
    default) accepts the connection and never writes a byte, not even the
    greeting; with ``stage="end-of-data"`` behaves until the end of a
    message's content and never answers it.  Either way it reads until the
    client goes or ``timeout`` passes.

    A correct client gives up after its own timeout (RFC 5321 §4.5.3.2: 5
    minutes for the greeting, 10 for the end of data) and keeps the message
    (a 4xx outcome: after a silent end of data it cannot know).
    """

    name = "silent"

    def __init__(self, *, stage: str = "connect", **options: Any) -> None:
        if stage not in ("connect", "end-of-data"):
            raise ValueError("stage is 'connect' or 'end-of-data'")
        #: Where it falls silent.
        self.stage = stage
        super().__init__(**options)

    def session(self, holder: list[socket.socket], record: ServerSessionRecord) -> None:
        if self.stage == "connect":
            self._linger(holder[0], record)
            return
        super().session(holder, record)

    def decide(self, event: Event) -> Reply | None:
        if isinstance(event, EndOfMessage):
            return None
        return super().decide(event)


class CloseMidDataServer(ScriptedServer):
    """``close-mid-data``: answers DATA ``354``, then closes the connection
    once ``after`` octets of content (default 1) have arrived, without a
    reply to the end of data.

    A correct client reports the message as not delivered (a 4xx outcome,
    RFC 5321 §4.5.4.1: try again later), never as delivered.
    """

    name = "close-mid-data"

    def __init__(self, *, after: int = 1, **options: Any) -> None:
        #: Octets of content it reads before closing.
        self.after = after
        super().__init__(**options)

    def on_content(self, record: ServerSessionRecord) -> None:
        if len(record.content) >= self.after:
            raise _Closed("closed mid-DATA on purpose")
