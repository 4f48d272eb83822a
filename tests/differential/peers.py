"""The peers of the differential tests, each run for real, and smtp_rtls's
own verdict on the same input.

* aiosmtpd's path and parameter parsers (``SMTP._getaddr``,
  ``SMTP._getparams``) called in-process on an instance that was never
  connected: they read nothing of the instance but ``local_part_limit``.
* A real aiosmtpd server (its ``Controller``) on 127.0.0.1, driven line by
  line over a raw socket, for its verdict on whole MAIL, RCPT, EHLO and
  HELO commands and on DATA content.
* smtplib's reply reader (``SMTP.getreply``), EHLO reader (``SMTP.ehlo``)
  and command writers (``SMTP.mail``, ``SMTP.rcpt``), over a real socket
  pair.
* smtp_rtls's ServerConnection, driven by the same lines, for our verdict.
"""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP

from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    Ehlo,
    MailFrom,
    MessageData,
    RcptTo,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
)

TIMEOUT = 10.0

# -- aiosmtpd in-process --------------------------------------------------------

# Never connected: _getaddr reads only local_part_limit (0, no limit, is
# aiosmtpd's default), _getparams reads nothing.
_AIOSMTPD = AiosmtpdSMTP.__new__(AiosmtpdSMTP)


def aiosmtpd_getaddr(text: str) -> tuple[str | None, str | None]:
    """aiosmtpd's reading of a path: ``(address, rest)``, ``(None, None)`` when refused.

    Some malformed paths make the stdlib's header parser raise AttributeError
    (``'<"a)"@[0.0.0.0.>'``); the server then answers 500 from its
    exception handler, a refusal too.
    """
    try:
        return _AIOSMTPD._getaddr(text)
    except (AttributeError, IndexError, ValueError):
        return None, None


def aiosmtpd_getparams(words: list[str]) -> dict[str, str | bool] | None:
    """aiosmtpd's reading of the parameter words; None when refused."""
    return _AIOSMTPD._getparams(words)


# -- a verdict on one command line ----------------------------------------------


@attrs.frozen
class Verdict:
    """What a server answered to one MAIL or RCPT line."""

    code: int
    #: the address the server handed on (aiosmtpd: the string given to its
    #: handler, ``"<>"`` for the null path; smtp_rtls: the Address as text);
    #: None when refused
    address: str | None = None

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


# -- a real aiosmtpd server -----------------------------------------------------


class _Recorder:
    """An aiosmtpd handler that accepts every envelope and keeps the last address."""

    def __init__(self) -> None:
        self.last: str | None = None
        self.content: bytes | None = None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.last = address
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.content = envelope.original_content
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.last = address
        envelope.rcpt_tos.append(address)
        return "250 OK"


class AiosmtpdPeer:
    """aiosmtpd (SMTPUTF8 enabled, so that it reads UTF-8 at all) on
    127.0.0.1 and one raw connection to it, past EHLO."""

    def __init__(self, sock: socket.socket, recorder: _Recorder) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._recorder = recorder
        self._read_reply()  # the greeting
        self._command(b"EHLO client.example\r\n")

    def _read_reply(self) -> int:
        for _ in range(100):
            line = self._file.readline(2048)
            if not line:
                raise ConnectionError("aiosmtpd closed the connection")
            if line[3:4] != b"-":
                return int(line[:3])
        raise AssertionError("a reply of more than 100 lines")

    def _command(self, line: bytes) -> int:
        self._sock.sendall(line)
        return self._read_reply()

    def hello(self, line: bytes) -> int:
        """The reply code to an EHLO or HELO line."""
        return self._command(line)

    def mail(self, line: bytes) -> Verdict:
        """The verdict on a MAIL line (CRLF-terminated), after RSET."""
        assert self._command(b"RSET\r\n") == 250
        return self._verdict(line)

    def rcpt(self, line: bytes, mail: bytes = b"MAIL FROM:<s@client.example>\r\n") -> Verdict:
        """The verdict on a RCPT line after RSET and ``mail``."""
        assert self._command(b"RSET\r\n") == 250
        assert self._command(mail) == 250
        return self._verdict(line)

    def data(self, wire: bytes) -> tuple[int, bytes | None]:
        """The reply code to a message (``wire``: its dot-stuffed content
        and the end marker) after RSET, MAIL, RCPT and DATA, and the
        content the handler was given (None when refused)."""
        assert self._command(b"RSET\r\n") == 250
        assert self._command(b"MAIL FROM:<s@client.example>\r\n") == 250
        assert self._command(b"RCPT TO:<r@mx.example>\r\n") == 250
        assert self._command(b"DATA\r\n") == 354
        self._recorder.content = None
        code = self._command(wire)
        return code, self._recorder.content if code == 250 else None

    def _verdict(self, line: bytes) -> Verdict:
        self._recorder.last = None
        code = self._command(line)
        return Verdict(code, self._recorder.last if 200 <= code < 300 else None)


@contextmanager
def aiosmtpd_peer() -> Iterator[AiosmtpdPeer]:
    """A running aiosmtpd and a connection to it; both stopped on exit."""
    recorder = _Recorder()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True, ready_timeout=TIMEOUT
    )
    controller.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            yield AiosmtpdPeer(sock, recorder)
    finally:
        controller.stop()


# -- smtp_rtls's server ---------------------------------------------------------

#: aiosmtpd's default SIZE (aiosmtpd.smtp.DATA_SIZE_DEFAULT)
AIOSMTPD_DATA_SIZE = 2**25

#: What aiosmtpd offers by default with SMTPUTF8 on: SIZE, 8BITMIME,
#: SMTPUTF8 (and no DSN, no CHUNKING, no STARTTLS, no AUTH before TLS).
#: No limit on errors (aiosmtpd has none but for unknown verbs).
OUR_CONFIG = ServerConfig(
    dsn=False,
    chunking=False,
    pipelining=False,
    max_message_size=AIOSMTPD_DATA_SIZE,
    max_errors=0,
)


class OurServer:
    """A ServerConnection past EHLO whose application says yes to every
    command (354 to DATA, 250 to the rest)."""

    def __init__(self, config: ServerConfig = OUR_CONFIG) -> None:
        self._config = config
        self._content = bytearray()
        self._conn = self._fresh()

    def _fresh(self) -> ServerConnection:
        conn = ServerConnection("mx.example", self._config)
        conn.send(Reply(220, "mx.example ESMTP"))
        conn.data_to_send()
        self._conn = conn
        assert self._run(b"EHLO client.example\r\n")[0] == 250
        return conn

    def _run(self, line: bytes) -> tuple[int, MailFrom | RcptTo | None]:
        conn = self._conn
        conn.receive_data(line)
        event: MailFrom | RcptTo | None = None
        out = bytearray()
        for _ in range(10_000):  # more than the events of any test's input
            try:
                got = conn.next_event()
            except RemoteProtocolError:
                # the connection is done with this peer: take its last
                # reply, and start over for the next line
                out += conn.data_to_send()
                self._fresh()
                break
            out += conn.data_to_send()
            if isinstance(got, ConnectionClosed):
                self._fresh()
                break
            if got is NEED_DATA:
                break
            if isinstance(got, MessageData):
                self._content += got.data
            if got is PAUSED:
                pending = conn.pending
                if isinstance(pending, MailFrom | RcptTo):
                    event = pending
                if isinstance(pending, Data):
                    reply = Reply(354, "go ahead")
                elif isinstance(pending, Ehlo):
                    reply = Reply(250, "hello")
                else:
                    reply = Reply(250, "OK")
                out += conn.send(reply)
        else:
            raise AssertionError("next_event() did not settle")
        last = bytes(out).rstrip(b"\r\n").rpartition(b"\r\n")[2]
        return int(last[:3]), event

    def data(self, wire: bytes) -> tuple[int, bytes | None]:
        """Our reply code to a message after RSET, MAIL, RCPT and DATA, and
        the content handed on (None when refused)."""
        assert self._run(b"RSET\r\n")[0] == 250
        assert self._run(b"MAIL FROM:<s@client.example>\r\n")[0] == 250
        assert self._run(b"RCPT TO:<r@mx.example>\r\n")[0] == 250
        assert self._run(b"DATA\r\n")[0] == 354
        self._content = bytearray()
        code = self._run(wire)[0]
        return code, bytes(self._content) if code == 250 else None

    def hello(self, line: bytes) -> int:
        """Our reply code to an EHLO or HELO line."""
        return self._run(line)[0]

    def mail(self, line: bytes) -> Verdict:
        """Our verdict on a MAIL line (CRLF-terminated), after RSET."""
        assert self._run(b"RSET\r\n")[0] == 250
        return self._verdict(line)

    def rcpt(self, line: bytes, mail: bytes = b"MAIL FROM:<s@client.example>\r\n") -> Verdict:
        """Our verdict on a RCPT line after RSET and ``mail``."""
        assert self._run(b"RSET\r\n")[0] == 250
        assert self._run(mail)[0] == 250
        return self._verdict(line)

    def _verdict(self, line: bytes) -> Verdict:
        code, event = self._run(line)
        if not 200 <= code < 300:
            return Verdict(code)
        assert event is not None
        if isinstance(event, MailFrom):
            path = event.reverse_path
            return Verdict(code, "<>" if path.is_null else str(path))
        return Verdict(code, str(event.forward_path))


# -- smtplib --------------------------------------------------------------------


@attrs.frozen
class SmtplibReply:
    """What ``smtplib.SMTP.getreply`` made of some bytes."""

    code: int
    message: bytes
    #: the bytes it left unread (it stops at the first line that does not
    #: continue the reply)
    rest: bytes


def smtplib_getreply(data: bytes) -> SmtplibReply | smtplib.SMTPException:
    """Feed ``data`` to smtplib's reply reader through a real socket pair.

    The writing end is closed after ``data``, so a reply that does not end
    raises (SMTPServerDisconnected) instead of waiting.
    """
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.settimeout(TIMEOUT)
        client = smtplib.SMTP()
        client.sock = theirs
        ours.sendall(data)
        ours.shutdown(socket.SHUT_WR)
        try:
            code, message = client.getreply()
        except smtplib.SMTPException as exc:
            return exc
        assert client.file is not None
        rest = client.file.read()
        client.file.close()
        return SmtplibReply(code, message, rest)


def smtplib_ehlo(data: bytes) -> dict[str, str] | smtplib.SMTPException:
    """smtplib's ``esmtp_features`` after it reads ``data`` as the EHLO reply."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.settimeout(TIMEOUT)
        client = smtplib.SMTP()
        client.sock = theirs
        ours.sendall(data)
        ours.shutdown(socket.SHUT_WR)
        try:
            code, _ = client.ehlo("client.example")
        except smtplib.SMTPException as exc:
            return exc
        assert code == 250
        if client.file is not None:
            client.file.close()
        return dict(client.esmtp_features)


__all__ = [
    "OUR_CONFIG",
    "AiosmtpdPeer",
    "OurServer",
    "SmtplibReply",
    "Verdict",
    "aiosmtpd_getaddr",
    "aiosmtpd_getparams",
    "aiosmtpd_peer",
    "smtplib_ehlo",
    "smtplib_getreply",
    "smtplib_written",
]


def smtplib_written(call: str, address: str) -> bytes:
    """The line smtplib writes for ``SMTP.mail(address)`` (``call="mail"``)
    or ``SMTP.rcpt(address)``, read off a real socket pair."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.settimeout(TIMEOUT)
        theirs.settimeout(TIMEOUT)
        client = smtplib.SMTP()
        client.sock = theirs
        ours.sendall(b"250 OK\r\n")
        code, _ = getattr(client, call)(address)
        assert code == 250
        if client.file is not None:
            client.file.close()
        written = bytearray()
        for _ in range(100):
            written += ours.recv(4096)
            if written.endswith(b"\r\n"):
                return bytes(written)
        raise AssertionError("smtplib wrote no whole line")
