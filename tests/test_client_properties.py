"""Properties of ClientConnection: what any bytes from the server can do to it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_rtls import (
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    MailFrom,
    RcptTo,
    RemoteProtocolError,
    Reply,
    Rset,
    StartTLS,
)
from smtp_rtls._client import ClientConnection
from smtp_rtls._sentinels import NEED_DATA


def after_greeting() -> ClientConnection:
    conn = ClientConnection("client.example")
    conn.receive_data(b"220 mx.example\r\n")
    assert isinstance(conn.next_event(), Reply)
    return conn


def pipelined_transaction() -> ClientConnection:
    conn = after_greeting()
    conn.send(Ehlo("client.example"))
    conn.receive_data(b"250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
    assert isinstance(conn.next_event(), Reply)
    for event in (MailFrom("a@example.org"), RcptTo("b@example.net"), Data()):
        conn.send(event)
    return conn


def starttls_sent() -> ClientConnection:
    conn = pipelined_transaction()
    # finish the transaction attempt so STARTTLS may be sent
    conn.receive_data(b"250 a\r\n550 b\r\n554 c\r\n")
    for _ in range(3):
        assert isinstance(conn.next_event(), Reply)
    conn.send(Rset())
    conn.receive_data(b"250 ok\r\n")
    assert isinstance(conn.next_event(), Reply)
    conn.send(StartTLS())
    return conn


def fresh() -> ClientConnection:
    return ClientConnection("client.example")


STATES = [fresh, after_greeting, pipelined_transaction, starttls_sent]

# Bytes that look like replies, so the fuzzer gets past the first line.
reply_like = st.lists(
    st.one_of(
        st.binary(max_size=30),
        st.sampled_from(
            [
                b"250 ok\r\n",
                b"250-x\r\n",
                b"354 go\r\n",
                b"220 go\r\n",
                b"334 \r\n",
                b"421 bye\r\n",
            ]
        ),
        st.sampled_from([b"\r\n", b"\r", b"\n", b"-", b" ", b"550", b"2"]),
    ),
    max_size=20,
).map(b"".join)


@settings(max_examples=300)
@given(st.sampled_from(range(len(STATES))), reply_like, st.lists(st.integers(0, 400), max_size=6))
def test_any_bytes_raise_only_remote_protocol_error(
    state: int, data: bytes, cuts: list[int]
) -> None:
    """The fuzzing oracle of the whole core: next_event() returns an event or
    NEED_DATA, or raises RemoteProtocolError, whatever arrives."""
    conn = STATES[state]()
    points = [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    pieces = [data[a:b] for a, b in zip([0, *points], points, strict=False)]
    try:
        # the last piece, b"", is the server closing the connection
        for piece in [*(p for p in pieces if p), b""]:
            conn.receive_data(piece)
            for _ in range(1000):  # bounded: each call consumes input or stops
                event = conn.next_event()
                if event is NEED_DATA or isinstance(event, ConnectionClosed):
                    break
                assert isinstance(event, Reply)
            else:
                raise AssertionError("next_event() did not stop")
    except RemoteProtocolError:
        pass
    # the buffer never grows past one reply line
    assert len(conn._receive_buffer) <= 512


def transcript_events(chunks: list[bytes]) -> list[tuple[int, tuple[str, ...], str | None]]:
    conn = after_greeting()
    conn.send(Ehlo("client.example"))
    conn.receive_data(b"250-mx.example\r\n250 PIPELINING\r\n")
    assert isinstance(conn.next_event(), Reply)
    for command in (MailFrom("a@example.org"), RcptTo("b@example.net"), RcptTo("c@x.example")):
        conn.send(command)
    conn.send(Data())
    out: list[tuple[int, tuple[str, ...], str | None]] = []
    for chunk in filter(None, chunks):  # b"" would mean the server closed
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            assert isinstance(event, Reply)
            out.append((event.code, event.lines, event.command))
    if len(out) == 4:
        # the session is still in step: the content may go
        assert conn.send(EndOfMessage()) == b".\r\n"
    return out


SERVER_SIDE = (
    b"250 2.1.0 sender ok\r\n250-2.1.5 first\r\n250 2.1.5 recipient ok\r\n"
    b"550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go ahead\r\n"
)


@given(st.lists(st.integers(0, len(SERVER_SIDE)), max_size=10))
def test_replies_do_not_depend_on_how_the_bytes_are_split(cuts: list[int]) -> None:
    points = [*sorted(set(cuts)), len(SERVER_SIDE)]
    chunks, prev = [], 0
    for p in points:
        chunks.append(SERVER_SIDE[prev:p])
        prev = p
    assert transcript_events(chunks) == transcript_events([SERVER_SIDE])
    assert [c for _, _, c in transcript_events([SERVER_SIDE])] == ["MAIL", "RCPT", "RCPT", "DATA"]
