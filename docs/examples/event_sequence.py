"""The exact event sequence of a server session with STARTTLS, a refused
plaintext REQUIRETLS attempt, a REQUIRETLS message sent with DATA and one
sent with BDAT, all in memory: no socket, no TLS library.

Run it with ``python docs/examples/event_sequence.py``; it prints the
transcript (``C:`` what the client sends, ``S:`` what the server writes,
``event`` what the application sees).
"""

from __future__ import annotations

import attrs

from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    Address,
    Bdat,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MailFrom,
    RcptTo,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
    TLSInfo,
)


def describe(value: object) -> str:
    """An event (or a field of one) with only the fields that differ from
    their defaults, addresses as ``<...>`` and replies as their first line."""
    if isinstance(value, Address):
        return f"<{value}>"
    if isinstance(value, Reply):
        return repr(value.format().split(b"\r\n")[0].decode())
    if isinstance(value, tuple):
        return "(" + ", ".join(describe(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    cls = type(value)
    if not attrs.has(cls):
        return repr(value)
    fields = []
    for field in attrs.fields(cls):
        item = getattr(value, field.name)
        if field.default is attrs.NOTHING or item != field.default:
            fields.append(f"{field.name}={describe(item)}")
    return f"{cls.__name__}({', '.join(fields)})"


def decide(event: Event) -> Reply:
    """The application: it accepts everything (a real one checks the
    recipients, the sender's reputation, the message size, ...)."""
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "Hello")  # the connection adds the extension lines
    if isinstance(event, StartTLS):
        return Reply(220, "Ready to start TLS", enhanced="2.0.0")
    if isinstance(event, MailFrom):
        return Reply(250, "Sender OK", enhanced="2.1.0")
    if isinstance(event, RcptTo):
        return Reply(250, "Recipient OK", enhanced="2.1.5")
    if isinstance(event, Data):
        return Reply(354, "End data with <CR><LF>.<CR><LF>")
    if isinstance(event, Bdat):
        return Reply(250, f"{event.size} octets received", enhanced="2.0.0")
    if isinstance(event, EndOfMessage):
        assert event.envelope is not None
        tag = " with REQUIRETLS" if event.envelope.requiretls else ""
        return Reply(250, f"Queued{tag}", enhanced="2.0.0")
    return Reply(502, "Not implemented", enhanced="5.5.1")


def show_bytes(prefix: str, data: bytes) -> None:
    for line in data.decode().split("\r\n")[:-1]:
        print(f"{prefix}{line}" if line else prefix.rstrip())


def client_sends(conn: ServerConnection, data: bytes) -> None:
    """Give the server what the client sent, then run the application until
    the server needs more data."""
    show_bytes("C: ", data)
    conn.receive_data(data)
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            break
        if event is PAUSED:
            pending = conn.pending
            assert pending is not None
            print(f"   PAUSED: a reply to {type(pending).__name__} is owed")
            show_bytes("S: ", conn.send(decide(pending)))
            if isinstance(pending, StartTLS):
                # The adapter does the TLS handshake here (ssl.SSLContext.wrap_socket
                # on a real socket), then tells the connection what it got.
                print("   -- TLS handshake --")
                conn.start_tls(TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256))
            continue
        print(f"   event {describe(event)}")
        show_bytes("S: ", conn.data_to_send())
        if isinstance(event, ConnectionClosed):
            break


# MAIL with REQUIRETLS and one RCPT, pipelined (RFC 2920)
ENVELOPE = b"MAIL FROM:<alice@example.org> REQUIRETLS\r\nRCPT TO:<bob@example.net>\r\n"


def main() -> None:
    conn = ServerConnection("mx.example.org", ServerConfig(starttls=True))
    show_bytes("S: ", conn.send(Reply(220, "mx.example.org ESMTP")))
    client_sends(conn, b"EHLO client.example.org\r\n")
    # REQUIRETLS on plaintext: refused by the connection itself (RFC 8689 §2),
    # so no transaction opens and the pipelined RCPT is out of sequence.
    client_sends(conn, ENVELOPE)
    client_sends(conn, b"STARTTLS\r\n")
    client_sends(conn, b"EHLO client.example.org\r\n")
    client_sends(conn, ENVELOPE + b"DATA\r\n")
    client_sends(conn, b"Subject: hello\r\n\r\n..a line that starts with a dot\r\n.\r\n")
    client_sends(conn, ENVELOPE)
    client_sends(conn, b"BDAT 16\r\nSubject: hello\r\n")
    client_sends(conn, b"BDAT 7 LAST\r\n\r\nHi!\r\n")
    client_sends(conn, b"QUIT\r\n")


if __name__ == "__main__":
    main()
