"""The demo behind ``python -m smtp_rtls demo``: REQUIRETLS sessions, in memory.

A :class:`ClientConnection` and a :class:`ServerConnection` are linked by a
few lines of code that carry the bytes between them; the server's
application accepts everything it is asked about.  The transcript shows the
RFC 8689 rules the core keeps by itself:

1. before TLS the server does not offer REQUIRETLS (§2), the client refuses
   to write ``MAIL FROM ... REQUIRETLS`` (5.7.10, no bytes exist), and the
   server answers the line with 555 5.5.4 if a careless client sends it;
2. after STARTTLS both sides forget what came before (RFC 3207 §4.2), the
   new EHLO offers REQUIRETLS, and the message arrives tagged (§4.1);
3. against a server that does not offer REQUIRETLS after TLS, the client
   refuses the transaction with 5.7.30 (§4.2.1 step 5).

The TLS handshakes are the I/O layer's job; here they are stated, not run.
"""

from __future__ import annotations

from collections.abc import Callable

from .._client import ClientConnection
from .._config import ServerConfig
from .._errors import RequireTLSError
from .._events import (
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    StartTLS,
)
from .._reply import Reply
from .._sentinels import NEED_DATA, PAUSED
from .._server import ServerConnection
from .._tls import TLSInfo

__all__ = ["run"]

MESSAGE = (
    b"From: alice@example.org\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: REQUIRETLS demo\r\n"
    b"\r\n"
    b"This line travels only over TLS.\r\n"
    b".and this one starts with a dot.\r\n"
)
TLS = TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, verified_name="mx.example.net")


def _decide(event: Event) -> Reply:
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "at your service")
    if isinstance(event, StartTLS):
        return Reply(220, "Ready to start TLS", "2.0.0")
    if isinstance(event, Data):
        return Reply(354, "End data with <CR><LF>.<CR><LF>")
    if isinstance(event, EndOfMessage):
        tag = "REQUIRETLS" if event.envelope and event.envelope.requiretls else "untagged"
        return Reply(250, f"Queued ({tag})", "2.0.0")
    return Reply(250, "OK", "2.0.0")


class _Link:
    """A client and a server joined in memory, printing what crosses."""

    def __init__(self, config: ServerConfig, write: Callable[[str], object]) -> None:
        self.write = write
        self.client = ClientConnection("client.example.org")
        self.server = ServerConnection("mx.example.net", config)
        self._to_client(self.server.send(Reply(220, "mx.example.net ESMTP smtp_rtls")))

    def note(self, text: str) -> None:
        self.write(f"   [{text}]")

    def _show(self, prefix: str, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self.write(f"{prefix} {line}")

    def _to_client(self, data: bytes) -> None:
        self._show("S:", data)
        self.client.receive_data(data)
        while True:
            event = self.client.next_event()
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                return

    def raw(self, data: bytes) -> None:
        """Bytes straight to the server (what a careless client might write);
        the reply is shown but not given to our client, which never asked."""
        self._show("C:", data)
        self.server.receive_data(data)
        self._show("S:", self._serve())

    def send(self, *events: Event) -> None:
        """Let the client write ``events`` (one pipelined group) to the server."""
        data = b"".join(self.client.send(e) for e in events)
        self._show("C:", data)
        self.server.receive_data(data)
        self._to_client(self._serve())

    def _serve(self) -> bytes:
        out = b""
        while True:
            event = self.server.next_event()
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                break
            if event is PAUSED:
                pending = self.server.pending
                assert pending is not None
                out += self.server.send(_decide(pending))
            elif isinstance(event, CommandRejected):
                out += self.server.data_to_send()
                self.note(f"the server core answered {event.command or 'a line'} by itself")
            elif isinstance(event, EndOfMessage) and event.envelope is not None:
                self.note(
                    f"server: end of message, envelope requiretls={event.envelope.requiretls}"
                )
        return out + self.server.data_to_send()

    def tls(self) -> None:
        self.note("TLS handshake by the I/O layer; both sides are told with start_tls()")
        self.client.start_tls(TLS)
        self.server.start_tls(TLS)

    def try_requiretls(self) -> None:
        try:
            self.client.send(MailFrom("alice@example.org", requiretls=True))
        except RequireTLSError as exc:
            assert exc.reply is not None
            self.note(f"client refuses MAIL ... REQUIRETLS: {exc.reply.code} {exc.reply.enhanced}")


def run(write: Callable[[str], object] = print) -> None:
    """Play the sessions, writing the transcript line by line with ``write``."""
    write("== 1. REQUIRETLS: STARTTLS first, then a tagged message ==")
    link = _Link(ServerConfig(starttls=True), write)
    link.send(Ehlo("client.example.org"))
    link.note("plaintext: REQUIRETLS is not offered (RFC 8689 §2)")
    link.try_requiretls()
    link.raw(b"MAIL FROM:<alice@example.org> REQUIRETLS\r\n")
    link.send(StartTLS())
    link.tls()
    link.send(Ehlo("client.example.org"))
    link.send(
        MailFrom("alice@example.org", requiretls=True),
        RcptTo("bob@example.net"),
        Data(),
    )
    link.send(MessageData(MESSAGE), EndOfMessage())
    link.send(Quit())

    write("")
    write("== 2. Downgrade: the server does not offer REQUIRETLS after TLS ==")
    link = _Link(ServerConfig(starttls=True, requiretls=False), write)
    link.send(Ehlo("client.example.org"))
    link.send(StartTLS())
    link.tls()
    link.send(Ehlo("client.example.org"))
    link.try_requiretls()
    link.note("no MAIL was written: the message must go to the next MX, or bounce")
    link.send(Quit())
