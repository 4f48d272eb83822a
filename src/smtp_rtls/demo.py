"""The demo behind ``python -m smtp_rtls demo``: one REQUIRETLS session, in memory.

A scripted client talks to a :class:`ServerConnection`; the server's
application accepts everything it is asked about.  The transcript shows the
RFC 8689 rules the core keeps by itself: no REQUIRETLS before TLS, the
parameter refused on plaintext (555 5.5.4), the pre-TLS state forgotten after
STARTTLS (RFC 3207 §4.2), and the message tagged REQUIRETLS at its end.
The TLS handshake itself is the I/O layer's job; here it is stated, not run.
"""

from __future__ import annotations

from collections.abc import Callable

from ._config import ServerConfig
from ._events import (
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MessageData,
    StartTLS,
)
from ._reply import Reply
from ._sentinels import NEED_DATA, PAUSED
from ._server import ServerConnection
from ._tls import TLSInfo

__all__ = ["run"]

MESSAGE = (
    b"From: alice@example.org\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: REQUIRETLS demo\r\n"
    b"\r\n"
    b"This line travels only over verified TLS.\r\n"
    b"..and this one started with a dot.\r\n"
)


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


def run(write: Callable[[str], object] = print) -> ServerConnection:
    """Play the session, writing the transcript line by line with ``write``."""
    conn = ServerConnection("mx.example.net", ServerConfig(starttls=True))

    def show(prefix: str, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            write(f"{prefix} {line}")

    def client(data: bytes) -> None:
        show("C:", data)
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                break
            if event is PAUSED:
                assert conn.pending is not None
                show("S:", conn.send(_decide(conn.pending)))
                continue
            if isinstance(event, CommandRejected):
                write(f"   [core answered {event.command or 'a line'} by itself]")
            elif isinstance(event, EndOfMessage) and event.envelope is not None:
                write(f"   [end of message; envelope requiretls={event.envelope.requiretls}]")
            elif isinstance(event, MessageData):
                write(f"   [MessageData: {len(event.data)} octets, dot-stuffing undone]")
        show("S:", conn.data_to_send())

    write("== smtp_rtls demo: a REQUIRETLS session through the Sans-IO server ==")
    show("S:", conn.send(Reply(220, "mx.example.net ESMTP smtp_rtls")))
    client(b"EHLO client.example.org\r\n")
    write("   [plaintext: REQUIRETLS is not offered (RFC 8689 §2)]")
    client(b"MAIL FROM:<alice@example.org> REQUIRETLS\r\n")
    client(b"STARTTLS\r\n")
    write("   [TLS handshake by the I/O layer; the core is told with start_tls(TLSInfo)]")
    conn.start_tls(TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, verified_name=None))
    client(b"MAIL FROM:<alice@example.org> REQUIRETLS\r\n")
    write("   [RFC 3207 §4.2: the pre-TLS EHLO is forgotten; EHLO again]")
    client(b"EHLO client.example.org\r\n")
    client(b"MAIL FROM:<alice@example.org> REQUIRETLS\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
    client(MESSAGE + b".\r\n")
    client(b"QUIT\r\n")
    return conn
