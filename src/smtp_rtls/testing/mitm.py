"""A man in the middle on loopback: a TCP proxy that attacks STARTTLS.

:class:`MitmProxy` listens on 127.0.0.1 and relays every connection to a
real server (yours, or :class:`~smtp_rtls.testing.server.LoopbackServer`),
doing to the SMTP session what an active attacker on the path can do, by
``mode`` (one of :data:`MODES`):

=====================  ==========================================================
mode                   what the proxy does
=====================  ==========================================================
``transparent``        nothing: relays every octet both ways (the control)
``strip-starttls``     removes the STARTTLS line from the plaintext EHLO reply
                       (RFC 3207 §7, the downgrade RFC 8689 exists to defeat)
``rename-starttls``    overwrites STARTTLS in the EHLO reply with ``XXXXXXXX``,
                       as some firewalls do
``refuse-starttls``    answers the client's STARTTLS with ``454 4.7.0`` itself;
                       the server never sees the command
``corrupt-tls``        relays the handshake, then flips one bit in every TLS
                       record the server sends once the client has sent an
                       encrypted record (so the REQUIRETLS of the EHLO reply
                       after TLS cannot be removed without breaking the MAC)
``terminate-tls``      runs TLS with the client itself, with ``tls_context``
                       (a certificate for another name, or from a CA the client
                       does not trust), and with the server as a client; a
                       client that accepts its certificate is read in clear
=====================  ==========================================================

Each connection's :class:`ProxiedConnection` records every octet received
from and forwarded to either side, so that a test can assert that no MAIL
command and not one octet of a message went past the proxy.  The plaintext
session is followed line by line (commands, DATA and BDAT content, replies)
until TLS starts; after that the proxy only sees TLS records.

The proxy runs in threads: one accepting, one per connection.  It is bounded
(``max_connections`` at once, ``max_bytes`` per direction of a connection,
``timeout`` seconds of silence) and :meth:`MitmProxy.stop` (or the end of a
``with`` block) closes every socket and joins every thread::

    from smtp_rtls.io import sync
    from smtp_rtls.testing.mitm import MitmProxy
    from smtp_rtls.testing.server import LoopbackServer

    with LoopbackServer() as server, MitmProxy(server.port, mode="strip-starttls") as mitm:
        with sync.connect("127.0.0.1", mitm.port, local_hostname="c.example",
                          server_hostname=server.hostname, timeout=5) as client:
            assert "STARTTLS" not in client.conn.capabilities
    assert b"STARTTLS" not in mitm.connections[0].to_client

It imports nothing beyond the standard library and attrs.
"""

from __future__ import annotations

import collections
import contextlib
import re
import select
import socket
import ssl
import threading
import time
from types import TracebackType

import attrs

__all__ = ["MODES", "STOP_GRACE", "MitmProxy", "ProxiedConnection"]

#: The attacks :class:`MitmProxy` knows, by name (see the module's table).
MODES: tuple[str, ...] = (
    "transparent",
    "strip-starttls",
    "rename-starttls",
    "refuse-starttls",
    "corrupt-tls",
    "terminate-tls",
)

_READ = 65536
# A reply or command line longer than this is no SMTP: the proxy stops
# following the session and relays octets as they come.
_MAX_LINE = 65536
# TLS record header (RFC 8446 §5.1): type, version (2), length (2).
_HEADER = 5
_APPLICATION_DATA = 23
_BDAT = re.compile(rb"BDAT\s+(\d{1,18})", re.IGNORECASE)


#: How long :meth:`MitmProxy.stop` lets connections that are ending finish
#: on their own (seconds, for all of them together).
STOP_GRACE = 1.0


@attrs.define
class ProxiedConnection:
    """What went through the proxy on one connection (the relay thread
    fills it in: read it after :meth:`MitmProxy.stop`)."""

    #: The client's address and port.
    peer: tuple[str, int]
    #: Every octet read from the client (TLS records once TLS started;
    #: in ``terminate-tls`` mode, the decrypted octets after the handshake).
    from_client: bytearray = attrs.Factory(bytearray)
    #: Every octet written to the server.
    to_server: bytearray = attrs.Factory(bytearray)
    #: Every octet read from the server.
    from_server: bytearray = attrs.Factory(bytearray)
    #: Every octet written to the client.
    to_client: bytearray = attrs.Factory(bytearray)
    #: The command lines the client sent in plaintext, CRLF removed, in order
    #: (whether forwarded or answered by the proxy).
    commands: list[bytes] = attrs.Factory(list)
    #: The octets the client sent inside the proxy's own TLS session
    #: (``terminate-tls``: empty unless the client accepted its certificate).
    intercepted: bytearray = attrs.Factory(bytearray)
    #: The session went on in TLS after a ``220`` to STARTTLS.
    tls: bool = False
    #: TLS records the proxy corrupted (``corrupt-tls``).
    corrupted: int = 0
    #: Why the connection ended, when not by either side closing it.
    error: str | None = None
    # how many of to_server's octets went before TLS
    _plain_to_server: int = attrs.field(default=0, repr=False)

    @property
    def plaintext_to_server(self) -> bytes:
        """The octets forwarded to the server in plaintext (before TLS)."""
        return bytes(self.to_server[: self._plain_to_server])


class _Stop(Exception):
    """The relay of one connection ends."""


class MitmProxy:
    """A man in the middle between clients on ``host`` (127.0.0.1), a free
    port, and the server at ``target_host``:``target_port``.

    ``mode`` is one of :data:`MODES`; ``tls_context`` is the server context
    the proxy presents in ``terminate-tls`` mode (required there).
    ``timeout`` bounds every wait (connecting to the server, a handshake, a
    silence); ``max_connections`` connections are relayed at once (more are
    closed at once); ``max_bytes`` octets are relayed each way per
    connection, after which it is cut.  The constructor starts it; :meth:`stop`
    stops it.  A subclass may change :meth:`edit_reply`, :meth:`intercept` or
    :meth:`corrupt` to mount an attack of its own.
    """

    def __init__(
        self,
        target_port: int,
        *,
        target_host: str = "127.0.0.1",
        mode: str = "transparent",
        tls_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        timeout: float = 10.0,
        max_connections: int = 16,
        max_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: one of {MODES}")
        if mode == "terminate-tls" and tls_context is None:
            raise ValueError("terminate-tls needs the tls_context the proxy presents")
        if max_connections < 1 or max_bytes < 1 or timeout <= 0:
            raise ValueError("max_connections, max_bytes and timeout must be positive")
        #: The attack.
        self.mode = mode
        self.target = (target_host, target_port)
        self.tls_context = tls_context
        self.timeout = timeout
        self.max_connections = max_connections
        self.max_bytes = max_bytes
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        self._listener.settimeout(0.1)
        #: The address and port the proxy listens on: point the client here.
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: list[ProxiedConnection] = []
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(
            target=self._accept_loop, name=f"smtp-rtls-mitm-{self.port}", daemon=True
        )
        self._accept.start()

    # -- life --------------------------------------------------------------------------

    @property
    def connections(self) -> list[ProxiedConnection]:
        """One record per connection relayed, in the order they came."""
        with self._lock:
            return list(self._connections)

    @property
    def to_server(self) -> bytes:
        """Every octet forwarded to the server, over every connection."""
        return b"".join(bytes(c.to_server) for c in self.connections)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, cut every connection and join every thread (each
        within ``timeout`` seconds; RuntimeError if one does not end).

        A connection whose two sides have both closed is let finish first
        (for up to :data:`STOP_GRACE` seconds in all), so that its record is
        whole: its last octets relayed and ``error`` None, not "the proxy
        stopped" because the stop came a moment before the client's end.
        """
        with self._lock:
            threads = list(self._threads)
        grace_ends = time.monotonic() + min(timeout, STOP_GRACE)
        for thread in threads:
            thread.join(max(0.0, grace_ends - time.monotonic()))
        self._stopping.set()
        self._accept.join(timeout)
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in [self._accept, *threads]:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"{thread.name} did not stop")

    def __enter__(self) -> MitmProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the attack's hooks --------------------------------------------------------------

    def edit_reply(self, command: str, reply: bytes) -> bytes:
        """The plaintext reply (complete, CRLF-terminated lines) that reaches
        the client for ``command`` (the upper-cased verb it answers,
        ``"GREETING"`` for the greeting)."""
        if command not in ("EHLO", "LHLO"):
            return reply
        if self.mode == "strip-starttls":
            return _remove_keyword(reply, b"STARTTLS")
        if self.mode == "rename-starttls":
            return re.sub(rb"(?im)^(\d{3}[ -])STARTTLS(?= |\r$)", rb"\1XXXXXXXX", reply)
        return reply

    def intercept(self, command: str) -> bytes | None:
        """A reply the proxy gives the client itself instead of forwarding
        the plaintext command ``command`` (the upper-cased verb); ``None``
        forwards it."""
        if self.mode == "refuse-starttls" and command == "STARTTLS":
            return b"454 4.7.0 TLS not available due to temporary reason\r\n"
        return None

    def corrupt(self, record: bytes) -> bytes:
        """A TLS record from the server once the client sent encrypted data
        (``corrupt-tls``): the record with the last bit of its
        authentication tag flipped."""
        return record[:-1] + bytes([record[-1] ^ 1])

    # -- internals -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                busy = sum(t.is_alive() for t in self._threads)
                if busy >= self.max_connections or self._stopping.is_set():
                    sock.close()
                    continue
                record = ProxiedConnection((peer[0], peer[1]))
                self._connections.append(record)
                self._sockets.append(sock)
                thread = threading.Thread(
                    target=self._relay,
                    args=(sock, record),
                    name=f"smtp-rtls-mitm-{peer}",
                    daemon=True,
                )
                self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket, record: ProxiedConnection) -> None:
        opened: list[socket.socket] = [client]
        relay: _Relay | None = None
        try:
            server = socket.create_connection(self.target, timeout=self.timeout)
            opened.append(server)
            with self._lock:
                self._sockets.append(server)
            for sock in opened:
                sock.settimeout(self.timeout)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            relay = _Relay(self, client, server, record)
            relay.run()
        except _Stop as stop:
            record.error = str(stop) or None
        except (OSError, ssl.SSLError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            if relay is not None:
                opened += [relay.client, relay.server]  # the TLS sockets, if any
            for sock in opened:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _remove_keyword(reply: bytes, keyword: bytes) -> bytes:
    """A multi-line reply without the line offering ``keyword``, the last
    line's separator made a space again."""
    lines = reply.split(b"\r\n")[:-1]
    kept = lines[:1] + [line for line in lines[1:] if line[4:].split(b" ")[0].upper() != keyword]
    kept = [line[:3] + b"-" + line[4:] for line in kept]
    kept[-1] = kept[-1][:3] + b" " + kept[-1][4:]
    return b"".join(line + b"\r\n" for line in kept)


class _Relay:
    """One connection: follows the plaintext session, then relays TLS."""

    def __init__(
        self,
        proxy: MitmProxy,
        client: socket.socket,
        server: socket.socket,
        record: ProxiedConnection,
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.record = record
        # -- the plaintext session, as the proxy follows it
        self.client_buffer = b""
        self.server_buffer = b""
        self.content = False  # inside DATA content
        self.data_asked = False  # DATA sent, its 354 not yet seen
        self.chunk = 0  # BDAT octets still to come
        # (verb, the proxy's own reply or None) per command not yet answered
        self.owed: collections.deque[tuple[str, bytes | None]] = collections.deque()
        self.greeted = False
        self.client_raw = False  # STARTTLS sent: the client's octets are TLS now
        self.server_raw = False  # 220 to STARTTLS relayed: the server's too
        self.client_eof = False
        self.server_eof = False
        # -- corrupt-tls: the TLS records being reassembled
        self.client_records = b""
        self.server_records = b""
        self.client_encrypted = False

    # -- moving octets ---------------------------------------------------------------------

    def run(self) -> None:
        deadline = time.monotonic() + self.proxy.timeout
        stopping = self.proxy._stopping
        while not (self.client_eof and self.server_eof):
            if stopping.is_set():
                raise _Stop("the proxy stopped")
            socks: list[socket.socket] = [
                s
                for s, eof in ((self.client, self.client_eof), (self.server, self.server_eof))
                if not eof
            ]
            ready: list[socket.socket] = [
                s for s in socks if isinstance(s, ssl.SSLSocket) and s.pending()
            ]
            if not ready:
                ready, _, _ = select.select(socks, [], [], 0.05)
            if not ready:
                if time.monotonic() > deadline:
                    raise _Stop("timeout")
                continue
            deadline = time.monotonic() + self.proxy.timeout
            for sock in ready:
                data = sock.recv(_READ)
                if sock is self.client:
                    self.from_client(data)
                else:
                    self.from_server(data)

    def _count(self, buffer: bytearray, data: bytes) -> None:
        buffer += data
        if len(buffer) > self.proxy.max_bytes:
            raise _Stop(f"more than {self.proxy.max_bytes} octets")

    def send_server(self, data: bytes) -> None:
        if data:
            self.server.sendall(data)
            self._count(self.record.to_server, data)
            if not self.client_raw:
                self.record._plain_to_server = len(self.record.to_server)

    def send_client(self, data: bytes) -> None:
        if data:
            self.client.sendall(data)
            self._count(self.record.to_client, data)

    def from_client(self, data: bytes) -> None:
        self._count(self.record.from_client, data)
        if not data:
            self.client_eof = True
            self._half_close(self.server)
        elif self.client_raw:
            self.client_tls(data)
        else:
            self.client_buffer += data
            self.client_plain()

    def from_server(self, data: bytes) -> None:
        self._count(self.record.from_server, data)
        if not data:
            self.server_eof = True
            self._half_close(self.client)
        elif self.server_raw:
            self.server_tls(data)
        else:
            self.server_buffer += data
            self.server_plain()

    def _half_close(self, sock: socket.socket) -> None:
        if isinstance(sock, ssl.SSLSocket):
            # no half-close inside TLS: the session is over both ways
            raise _Stop()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    # -- the plaintext session ------------------------------------------------------------

    def client_plain(self) -> None:
        while self.client_buffer and not self.client_raw:
            if self.chunk:
                piece = self.client_buffer[: self.chunk]
                self.client_buffer = self.client_buffer[len(piece) :]
                self.chunk -= len(piece)
                self.send_server(piece)
                continue
            end = self.client_buffer.find(b"\r\n")
            if end < 0:
                if len(self.client_buffer) > _MAX_LINE:
                    self.client_raw = True
                    self.send_server(self.client_buffer)
                    self.client_buffer = b""
                return
            line = self.client_buffer[: end + 2]
            self.client_buffer = self.client_buffer[end + 2 :]
            if self.content:
                self.content = line != b".\r\n"
                self.send_server(line)
                continue
            self.command(line)
        if self.client_raw and self.client_buffer:
            # what follows STARTTLS in the same read: relayed as it is
            rest, self.client_buffer = self.client_buffer, b""
            self.client_tls(rest)

    def command(self, line: bytes) -> None:
        self.record.commands.append(line[:-2])
        verb = line[:-2].split(b" ", 1)[0].upper().decode("ascii", "replace")
        if self.data_asked:
            # pipelined after DATA: RFC 2920 §3.1 forbids it; relay it as content
            self.send_server(line)
            return
        own = self.proxy.intercept(verb)
        self.owed.append((verb, own))
        if own is None:
            self.send_server(line)
            if verb == "DATA":
                self.data_asked = True
            elif verb == "STARTTLS":
                self.client_raw = True
            elif verb == "BDAT":
                size = _BDAT.match(line)
                self.chunk = int(size[1]) if size else 0
        self.answer_own()

    def answer_own(self) -> None:
        while self.owed and self.owed[0][1] is not None:
            _verb, own = self.owed.popleft()
            assert own is not None
            self.send_client(own)

    def server_plain(self) -> None:
        while not self.server_raw:
            reply = self._next_reply()
            if reply is None:
                return
            if not self.greeted:
                self.greeted = True
                verb = "GREETING"
            elif self.owed:
                verb = self.owed.popleft()[0]
            else:
                verb = ""
            self.send_client(self.proxy.edit_reply(verb, reply))
            if verb == "DATA":
                self.data_asked = False
                self.content = reply.startswith(b"354")
            elif verb == "STARTTLS":
                if reply.startswith(b"220"):
                    self.start_tls()
                else:
                    self.client_raw = False
                    self.client_plain()
            self.answer_own()
        if self.server_buffer:
            rest, self.server_buffer = self.server_buffer, b""
            self.server_tls(rest)

    def _next_reply(self) -> bytes | None:
        start = 0
        while True:
            end = self.server_buffer.find(b"\r\n", start)
            if end < 0:
                if len(self.server_buffer) > _MAX_LINE:
                    reply, self.server_buffer = self.server_buffer, b""
                    return reply
                return None
            if self.server_buffer[start + 3 : start + 4] != b"-":
                reply = self.server_buffer[: end + 2]
                self.server_buffer = self.server_buffer[end + 2 :]
                return reply
            start = end + 2

    # -- TLS --------------------------------------------------------------------------------

    def start_tls(self) -> None:
        self.server_raw = True
        self.record.tls = True
        if self.proxy.mode != "terminate-tls":
            return
        context = self.proxy.tls_context
        assert context is not None
        # The handshakes block (bounded by the sockets' timeout): nothing
        # else moves on this connection meanwhile.
        self.client.setblocking(True)
        self.client.settimeout(self.proxy.timeout)
        client = context.wrap_socket(self.client, server_side=True)
        self.client = client
        upstream = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        upstream.check_hostname = False
        upstream.verify_mode = ssl.CERT_NONE
        self.server = upstream.wrap_socket(self.server)
        with self.proxy._lock:
            self.proxy._sockets += [self.client, self.server]

    def client_tls(self, data: bytes) -> None:
        if self.proxy.mode == "terminate-tls" and isinstance(self.client, ssl.SSLSocket):
            self.record.intercepted += data
        if self.proxy.mode == "corrupt-tls":
            self.client_records += data
            for kind, _record in self._records("client_records"):
                self.client_encrypted |= kind == _APPLICATION_DATA
        self.send_server(data)

    def server_tls(self, data: bytes) -> None:
        if self.proxy.mode != "corrupt-tls":
            self.send_client(data)
            return
        self.server_records += data
        for kind, record in self._records("server_records"):
            if kind == _APPLICATION_DATA and self.client_encrypted:
                record = self.proxy.corrupt(record)
                self.record.corrupted += 1
            self.send_client(record)

    def _records(self, name: str) -> list[tuple[int, bytes]]:
        """The complete TLS records at the start of buffer ``name``, taken out."""
        buffer: bytes = getattr(self, name)
        out: list[tuple[int, bytes]] = []
        while len(buffer) >= _HEADER:
            size = _HEADER + int.from_bytes(buffer[3:5], "big")
            if len(buffer) < size:
                break
            out.append((buffer[0], buffer[:size]))
            buffer = buffer[size:]
        setattr(self, name, buffer)
        return out
