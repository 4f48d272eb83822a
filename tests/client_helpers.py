"""Small helpers shared by the ClientConnection tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from smtp_rtls import (
    Ehlo,
    Event,
    LocalProtocolError,
    MailFrom,
    RcptTo,
    RemoteProtocolError,
    Reply,
    Rset,
    StartTLS,
    State,
    TLSInfo,
    _client,
    _client_rules,
)
from smtp_rtls._client import ClientConnection
from smtp_rtls._sentinels import NEED_DATA
from smtp_rtls._state import REPLY_TIMEOUTS
from smtp_rtls.session import client as client_ops
from smtp_rtls.session.client import SendResult
from smtp_rtls.session.requests import Step

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


class GeneralConnection(ClientConnection):
    """Runs every call with nothing kept: the general path, for differential
    tests of the kept states, views, lines and checks.  The kept answers
    shared by every connection are set aside during its calls and put back
    after, so that the fast connection keeps its own."""

    def _general(self, call: Any) -> Any:
        self._last_view = None
        self._other_view = None
        self._formatted = {}
        kept = [dict(_client._NEXT_STATES), dict(_client_rules._PARAMS_OFFERED)]
        _client._NEXT_STATES.clear()
        _client_rules._PARAMS_OFFERED.clear()
        try:
            return call()
        finally:
            for table, saved in zip(
                (_client._NEXT_STATES, _client_rules._PARAMS_OFFERED), kept, strict=True
            ):
                table.clear()
                table.update(saved)  # type: ignore[attr-defined]

    def send(self, event: Any) -> bytes:
        return self._general(lambda: super(GeneralConnection, self).send(event))  # type: ignore[no-any-return]

    def next_event(self) -> Any:
        return self._general(lambda: super(GeneralConnection, self).next_event())


def outcome(
    conn: ClientConnection,
    action: tuple[str, int],
    events: Sequence[Event],
    replies: Sequence[bytes],
) -> object:
    """What one step of a differential test gives: ``("send", i)`` sends
    ``events[i]``, ``("reply", i)`` feeds ``replies[i]`` and reads the events
    up to the first that is not a reply, ``("tls", 0)`` starts TLS and
    ``("lmtp", 0)`` flips the public ``lmtp`` flag; a protocol error is
    part of the outcome."""
    kind, i = action
    try:
        if kind == "send":
            return conn.send(events[i])
        if kind == "tls":
            conn.start_tls(TLS)
            return "tls"
        if kind == "lmtp":
            conn.lmtp = not conn.lmtp
            return conn.lmtp
        conn.receive_data(replies[i])
        out = []
        while (event := conn.next_event()) is not NEED_DATA:
            out.append((event, getattr(event, "command", None)))
            if not isinstance(event, Reply):
                break
        return out
    except (LocalProtocolError, RemoteProtocolError) as exc:
        return (type(exc), str(exc))


def actions(
    events: Sequence[Event], replies: Sequence[bytes], *, lmtp: bool = False
) -> st.SearchStrategy[list[tuple[str, int]]]:
    """Up to 40 steps for :func:`outcome`: send one of ``events``, feed one of
    ``replies``, start TLS, and (with ``lmtp``) flip the ``lmtp`` flag."""
    steps = [
        st.tuples(st.just("send"), st.integers(0, len(events) - 1)),
        st.tuples(st.just("reply"), st.integers(0, len(replies) - 1)),
        st.tuples(st.just("tls"), st.just(0)),
    ]
    if lmtp:
        steps.append(st.tuples(st.just("lmtp"), st.just(0)))
    return st.lists(st.one_of(*steps), max_size=40)


def then_reset(
    transaction: Callable[..., Step[SendResult]],
) -> Callable[..., Step[SendResult]]:
    """A reference send_message: ``transaction``, then RSET when it left a
    transaction open (MAIL accepted and nothing sent, a refused DATA or
    BDAT), as send_message does so that the next message can start."""

    def send(
        conn: ClientConnection,
        mail: MailFrom,
        recipients: Sequence[RcptTo],
        content: bytes | Iterable[bytes],
        timeouts: Mapping[str, float] = REPLY_TIMEOUTS,
    ) -> Step[SendResult]:
        result = yield from transaction(conn, mail, recipients, content, timeouts)
        if conn.transaction is not None and conn.state is not State.CLOSED and not conn.closed:
            yield from client_ops.command(conn, Rset(), timeouts)
        return result

    return send
