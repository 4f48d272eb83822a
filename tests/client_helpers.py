"""Small helpers shared by the ClientConnection tests."""

from __future__ import annotations

from smtp_rtls import Ehlo, Reply, StartTLS, TLSInfo
from smtp_rtls._client import ClientConnection
from smtp_rtls._sentinels import NEED_DATA

TLS = TLSInfo(version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256", bits=128)


def reply_event(conn: ClientConnection) -> Reply:
    """The next event, which must be a Reply."""
    event = conn.next_event()
    assert isinstance(event, Reply), event
    return event


def feed(conn: ClientConnection, raw: bytes) -> list[Reply]:
    """Feed ``raw`` and read every reply it completes."""
    conn.receive_data(raw)
    out: list[Reply] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return out
        assert isinstance(event, Reply), event
        out.append(event)


def answer(conn: ClientConnection, *replies: Reply) -> list[Reply]:
    """The server answers with ``replies``; return the reply events."""
    return feed(conn, b"".join(r.format() for r in replies))


def greeted(**kwargs: object) -> ClientConnection:
    """A client that has read the 220 greeting."""
    conn = ClientConnection("client.example", **kwargs)  # type: ignore[arg-type]
    [greeting] = feed(conn, b"220 mx.example ESMTP ready\r\n")
    assert greeting.command == "GREETING"
    return conn


def ehlo(conn: ClientConnection, *extensions: str) -> Reply:
    """EHLO and a positive reply offering ``extensions``."""
    assert conn.send(Ehlo("client.example")).endswith(b" client.example\r\n")
    [reply] = answer(conn, Reply(250, ["mx.example greets client.example", *extensions]))
    return reply


def ready(*extensions: str, **kwargs: object) -> ClientConnection:
    """A greeted client after an EHLO that offered ``extensions``."""
    conn = greeted(**kwargs)
    ehlo(conn, *extensions)
    return conn


def starttls(conn: ClientConnection) -> None:
    """STARTTLS, 220, handshake reported."""
    assert conn.send(StartTLS()) == b"STARTTLS\r\n"
    [reply] = answer(conn, Reply(220, "2.0.0 Ready to start TLS"))
    assert reply.command == "STARTTLS"
    conn.start_tls(TLS)


def secure(*extensions: str) -> ClientConnection:
    """A client on a TLS session whose post-TLS EHLO offered ``extensions``."""
    conn = ready("STARTTLS", "PIPELINING")
    starttls(conn)
    ehlo(conn, *extensions)
    return conn
