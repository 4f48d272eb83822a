"""The misbehaving clients of :mod:`smtp_rtls.testing.peers` (documented there)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from typing import Any, ClassVar

import attrs

from .. import ProtocolError, Reply, TLSInfo
from ..io.tls import tls_info
from . import END_OF_DATA_LOOKALIKES
from ._servers import DEFAULT_MAX_RECORD, _keep, _RecordFull

__all__ = [
    "ClientRecord",
    "CloseMidDataClient",
    "ScriptedClient",
    "SilentClient",
    "SmugglingClient",
    "StartTLSInjectionClient",
    "TrickleClient",
]

_READ = 65536


class _Closed(Exception):
    """The server closed the connection."""


@attrs.define
class ClientRecord:
    """What a :class:`ScriptedClient` received from the server."""

    #: Every octet the server sent in plaintext.
    plaintext: bytearray = attrs.Factory(bytearray)
    #: Every octet the server sent inside TLS, decrypted.
    encrypted: bytearray = attrs.Factory(bytearray)
    #: The server closed the connection (rather than the client, or a timeout).
    closed_by_server: bool = False
    #: The TLS session, when a handshake succeeded.
    tls: TLSInfo | None = None
    #: Why the script stopped early (a timeout, a refused handshake), if it did.
    error: str | None = None
    #: Seconds from the connection to its end.
    duration: float = 0.0
    #: The recording limit was reached: the record keeps exactly the first
    #: ``max_record`` octets, and the client closed the connection then
    #: (see :class:`ScriptedClient`).
    truncated: bool = False

    @property
    def received(self) -> bytes:
        """Every octet received, plaintext then decrypted."""
        return bytes(self.plaintext + self.encrypted)

    @property
    def replies(self) -> list[Reply]:
        """The complete replies received, in order (a malformed one ends the list)."""
        out: list[Reply] = []
        lines: list[bytes] = []
        for line in self.received.split(b"\r\n")[:-1]:
            lines.append(line)
            if line[3:4] != b"-":
                try:
                    out.append(Reply.from_lines(lines))
                except ProtocolError:
                    return out
                lines = []
        return out


class ScriptedClient:
    """A client that connects to ``host``:``port``, plays its script and
    records the answers; :meth:`run` returns the :class:`ClientRecord`.

    ``timeout`` bounds every wait for the server; ``tls_context`` is the
    client context of a handshake the script makes (default: no
    verification, since the scripts test what the server does, not who it
    is).  The base class's script is :meth:`script`; it must not be used
    on its own.

    ``max_record`` bounds the octets recorded (``DEFAULT_MAX_RECORD``, 16
    MiB, by default; ``None``: no bound), and so what a reply being read
    may hold: a server that sends more is cut off.  The record keeps
    exactly the first ``max_record`` octets, its ``truncated`` is set, its
    ``error`` says so, and the client closes the connection.
    """

    #: The misbehaviour's name (the key in :data:`CLIENTS`).
    name: ClassVar[str] = ""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        ehlo: str = "client.test.example",
        max_record: int | None = DEFAULT_MAX_RECORD,
    ) -> None:
        if max_record is not None and max_record < 1:
            raise ValueError("max_record must be a positive number of octets, or None")
        #: The octets the record keeps at most (None: no bound).
        self.max_record = max_record
        self.timeout = timeout
        self.tls_context = tls_context
        #: The name the client gives in EHLO.
        self.ehlo = ehlo
        self._sock: socket.socket | None = None
        self._record = ClientRecord()
        self._buffer = b""

    def run(self, host: str, port: int) -> ClientRecord:
        """Connect, play the script, close; return what was received."""
        self._record = record = ClientRecord()
        self._buffer = b""
        start = time.monotonic()
        sock = socket.create_connection((host, port), timeout=self.timeout)
        self._sock = sock
        try:
            self.script()
        except _Closed:
            record.closed_by_server = True
        except _RecordFull as exc:
            record.error = str(exc)
        except (OSError, ssl.SSLError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            record.duration = time.monotonic() - start
            closing = self._sock
            with contextlib.suppress(OSError):
                closing.shutdown(socket.SHUT_RDWR)
            closing.close()
            if closing is not sock:
                sock.close()
        return record

    def script(self) -> None:
        """What the client does once connected (override)."""
        raise NotImplementedError

    # -- the pieces a script is made of --------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write ``data`` in one go."""
        assert self._sock is not None
        self._sock.sendall(data)

    def recv(self) -> bytes:
        """One read, recorded; raises (internally) when the server closed."""
        assert self._sock is not None
        data = self._sock.recv(_READ)
        record = self._record
        _keep(record, data, self.max_record)
        if not data:
            raise _Closed
        return data

    def reply(self) -> Reply:
        """Read up to the end of the next complete reply and parse it."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self._buffer:
                self._buffer += self.recv()
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return Reply.from_lines(lines)

    def command(self, line: bytes) -> Reply:
        """Send one command line (CRLF added) and read its reply."""
        self.send(line + b"\r\n")
        return self.reply()

    def start_tls(self) -> None:
        """Run the client side of the TLS handshake on the connection."""
        assert self._sock is not None
        context = self.tls_context
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._sock = context.wrap_socket(self._sock, server_hostname="localhost")
        self._record.tls = tls_info(self._sock)

    def drain(self) -> None:
        """Read until the server closes (or the timeout passes)."""
        with contextlib.suppress(TimeoutError):
            while True:
                self.recv()

    def open_transaction(self, *, starttls: bool = False) -> None:
        """Greeting, EHLO (and STARTTLS, EHLO), MAIL, RCPT, DATA up to the 354."""
        self.reply()
        self.command(b"EHLO " + self.ehlo.encode())
        if starttls:
            if self.command(b"STARTTLS").code != 220:
                raise _Closed
            self.start_tls()
            self.command(b"EHLO " + self.ehlo.encode())
        self.command(b"MAIL FROM:<alice@client.test.example>")
        self.command(b"RCPT TO:<bob@mx.test.example>")
        if self.command(b"DATA").code != 354:
            raise _Closed


class StartTLSInjectionClient(ScriptedClient):
    """``inject-after-starttls``: sends ``STARTTLS`` and, in the same write,
    the plaintext ``injected`` commands (default a MAIL FROM), then runs the
    handshake (unless ``handshake=False``) and, inside TLS, EHLO and QUIT.

    A server vulnerable to CVE-2011-0411 runs the injected commands inside
    the TLS session (their replies show up in :attr:`ClientRecord.encrypted`).
    A correct one never executes them (RFC 3207 §4.2): smtp_rtls's server
    answers ``220``, may complete the handshake, and closes without a word
    inside TLS.
    """

    name = "inject-after-starttls"

    def __init__(
        self,
        *,
        injected: bytes = b"MAIL FROM:<mallory@attacker.example>\r\n",
        handshake: bool = True,
        **options: Any,
    ) -> None:
        #: The commands that follow STARTTLS in the same write.
        self.injected = injected
        #: Whether to try the handshake after the 220.
        self.handshake = handshake
        super().__init__(**options)

    def script(self) -> None:
        self.reply()
        self.command(b"EHLO " + self.ehlo.encode())
        self.send(b"STARTTLS\r\n" + self.injected)
        if self.reply().code != 220 or not self.handshake:
            self.drain()
            return
        self.start_tls()
        self.command(b"EHLO " + self.ehlo.encode())
        self.command(b"QUIT")
        self.drain()


_SMUGGLED = (
    b"MAIL FROM:<smuggler@attacker.example>\r\n"
    b"RCPT TO:<victim@mx.test.example>\r\n"
    b"DATA\r\n"
    b"From: ceo@mx.test.example\r\nSubject: smuggled\r\n\r\nsend money\r\n"
)


class SmugglingClient(ScriptedClient):
    """``smuggle``: one message whose content holds ``variant`` (a key of
    :data:`~smtp_rtls.testing.END_OF_DATA_LOOKALIKES`, default ``"LF.LF"``)
    followed by a second transaction (``MAIL FROM:<smuggler@attacker.example>``,
    RCPT, DATA, a forged message), then the real end CRLF "." CRLF, then
    QUIT; all of it after the 354 in one write (SMTP smuggling, December
    2023).  ``starttls`` runs the transaction inside TLS.

    A correct server reads one message at most (RFC 5321 §4.1.1.4: only CRLF
    "." CRLF ends the data): never a MAIL from ``smuggler@attacker.example``.
    """

    name = "smuggle"

    #: The sender of the smuggled transaction.
    SMUGGLER = "smuggler@attacker.example"

    def __init__(self, variant: str = "LF.LF", *, starttls: bool = False, **options: Any):
        if variant not in END_OF_DATA_LOOKALIKES:
            raise ValueError(f"unknown variant {variant!r}")
        #: The end-of-data look-alike.
        self.variant = variant
        self.starttls = starttls
        super().__init__(**options)

    def script(self) -> None:
        self.open_transaction(starttls=self.starttls)
        self.send(
            b"Subject: hello\r\n\r\nfirst message"
            + END_OF_DATA_LOOKALIKES[self.variant]
            + _SMUGGLED
            + b"\r\n.\r\nQUIT\r\n"
        )
        self.drain()


class TrickleClient(ScriptedClient):
    """``trickle``: a whole valid session (EHLO, MAIL, RCPT, DATA, a short
    message, QUIT), every command and the content sent ``size`` octets at a
    time (default one), ``delay`` seconds apart (default 0.05).

    A correct server serves it, however the octets are split, within its
    per-command deadline (smtp_rtls: 10 minutes a command, RFC 5321
    §4.5.3.2 per read).
    """

    name = "trickle"

    #: The content the client sends.
    MESSAGE = b"Subject: trickled\r\n\r\none octet at a time\r\n"

    def __init__(self, *, delay: float = 0.05, size: int = 1, **options: Any) -> None:
        self.delay = delay
        self.size = size
        super().__init__(**options)

    def send(self, data: bytes) -> None:
        for i in range(0, len(data), self.size):
            if i:
                time.sleep(self.delay)
            super().send(data[i : i + self.size])

    def script(self) -> None:
        self.open_transaction()
        self.send(self.MESSAGE + b".\r\n")
        self.reply()
        self.command(b"QUIT")
        self.drain()


class SilentClient(ScriptedClient):
    """``silent``: connects, reads the greeting, and never sends a byte; it
    waits for the server to close (at most ``timeout``).

    A correct server closes the connection after its timeout (RFC 5321
    §4.5.3.2.7: 5 minutes; ``read_timeout`` of smtp_rtls's ``serve()``):
    :attr:`ClientRecord.closed_by_server` and :attr:`ClientRecord.duration`
    say when.
    """

    name = "silent"

    def script(self) -> None:
        self.drain()


class CloseMidDataClient(ScriptedClient):
    """``close-mid-data``: opens a transaction, sends ``after`` octets of the
    content after the 354 (default 20: part of a header section) and closes
    the connection without the end of data.

    A correct server delivers nothing (the message did not end, RFC 5321
    §4.1.1.4) and drops what it received.
    """

    name = "close-mid-data"

    #: The content the client starts to send.
    MESSAGE = b"Subject: cut\r\n\r\nthis message never ends\r\n"

    def __init__(self, *, after: int = 20, **options: Any) -> None:
        self.after = after
        super().__init__(**options)

    def script(self) -> None:
        self.open_transaction()
        self.send(self.MESSAGE[: self.after])
