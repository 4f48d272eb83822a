"""The session state machine, walked row by row (in the manner of h11's and
h2's state tests).

``SPEC`` below is written from the RFCs, independently of ``_state``: every
(state, verb) pair that is in sequence, and where each reply class leads.
The tests check the tables against it for every (state, verb, reply class),
and then drive a real ServerConnection through every one of them: the
application's reply, or the connection's own, must move the session exactly
as the spec says, and a reply class the spec does not list must be refused.
"""

from __future__ import annotations

import itertools

import pytest

from smtp_rtls import (
    PAUSED,
    CommandRejected,
    ConnectionClosed,
    LocalProtocolError,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
    State,
    TLSInfo,
)
from smtp_rtls._client import ClientConnection
from smtp_rtls._sentinels import NEED_DATA
from smtp_rtls._state import LMTP_TRANSITIONS, SMTP_TRANSITIONS, next_state

S = State
TLS = TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128)

COMMANDS = [
    "EHLO",
    "HELO",
    "LHLO",
    "STARTTLS",
    "AUTH",
    "MAIL",
    "RCPT",
    "DATA",
    "BDAT",
    "BDAT LAST",
    "RSET",
    "NOOP",
    "HELP",
    "VRFY",
    "EXPN",
    "QUIT",
]
STEPS = ["GREETING", "TLS", "EOM"]
CLASSES = (2, 3, 4, 5)

# -- the spec, from the RFCs ---------------------------------------------------------

Spec = dict[tuple[State, str], dict[int, State]]


def _spec(hello: tuple[str, ...]) -> Spec:
    spec: Spec = {}
    # RFC 5321 §4.1.4: NOOP, HELP, EXPN, VRFY, RSET at any time; an accepted
    # EHLO/HELO resets the transaction; QUIT (§4.1.1.10) ends the session.
    for s in (S.CONNECTED, S.READY, S.MAIL, S.RCPT, S.BDAT_MORE):
        for verb in ("NOOP", "HELP", "VRFY", "EXPN"):
            spec[s, verb] = {2: s, 4: s, 5: s}
        spec[s, "RSET"] = {2: S.CONNECTED if s is S.CONNECTED else S.READY, 4: s, 5: s}
        spec[s, "QUIT"] = {2: S.CLOSED, 4: s, 5: s}
        for verb in hello:
            spec[s, verb] = {2: S.READY, 4: s, 5: s}
    # RFC 3207 §4: STARTTLS outside a transaction; 220 then the handshake.
    for s in (S.CONNECTED, S.READY):
        spec[s, "STARTTLS"] = {2: S.STARTTLS, 4: s, 5: s}
    spec[S.STARTTLS, "TLS"] = {2: S.CONNECTED, 5: S.TLS_REFUSED}
    # RFC 4954 §4: 334 continues, 235 ends, a failure ends the exchange.
    spec[S.READY, "AUTH"] = {2: S.READY, 3: S.AUTH, 4: S.READY, 5: S.READY}
    spec[S.AUTH, "AUTH"] = {2: S.READY, 3: S.AUTH, 4: S.READY, 5: S.READY}
    # RFC 5321 §3.3: MAIL, RCPT..., DATA 354, content, the end's reply.
    spec[S.READY, "MAIL"] = {2: S.MAIL, 4: S.READY, 5: S.READY}
    spec[S.MAIL, "RCPT"] = {2: S.RCPT, 4: S.MAIL, 5: S.MAIL}
    spec[S.RCPT, "RCPT"] = {2: S.RCPT, 4: S.RCPT, 5: S.RCPT}
    # RFC 2920 §3.1: DATA pipelined after refused recipients is in sequence.
    spec[S.MAIL, "DATA"] = {3: S.DATA, 4: S.MAIL, 5: S.MAIL}
    spec[S.RCPT, "DATA"] = {3: S.DATA, 4: S.RCPT, 5: S.RCPT}
    spec[S.DATA, "EOM"] = {2: S.READY, 4: S.READY, 5: S.READY}
    # RFC 3030 §2: a chunk's reply comes after its octets; a failed chunk
    # (or any LAST) ends the transaction.
    for s in (S.RCPT, S.BDAT_MORE, S.BDAT):
        spec[s, "BDAT"] = {2: S.BDAT_MORE, 4: S.READY, 5: S.READY}
        spec[s, "BDAT LAST"] = {2: S.READY, 4: S.READY, 5: S.READY}
    # RFC 5321 §3.1: 220, or a refusal after which only QUIT.
    spec[S.GREETING, "GREETING"] = {2: S.CONNECTED, 4: S.REFUSED, 5: S.REFUSED}
    spec[S.GREETING, "TLS"] = {2: S.GREETING, 5: S.TLS_REFUSED}  # RFC 8314 §3
    spec[S.TLS_REFUSED, "GREETING"] = {2: S.TLS_REFUSED, 4: S.REFUSED, 5: S.REFUSED}
    for s in (S.REFUSED, S.TLS_REFUSED):
        spec[s, "QUIT"] = {2: S.CLOSED, 4: s, 5: s}
    return spec


SMTP_SPEC = _spec(("EHLO", "HELO"))
LMTP_SPEC = _spec(("LHLO",))


def expected(spec: Spec, state: State, verb: str, klass: int) -> State | None:
    """The state after a reply of ``klass``, or None where it is an error."""
    row = spec.get((state, verb))
    if row is None:
        # out of sequence: only a failure answers it, and nothing changes
        return state if klass in (4, 5) else None
    return row.get(klass)


# -- the tables against the spec -------------------------------------------------------

_CODES = {2: 250, 3: 354, 4: 451, 5: 550}
_EXACT = {("STARTTLS", 2): 220, ("AUTH", 3): 334, ("GREETING", 2): 220}


def code_for(verb: str, klass: int) -> int:
    return _EXACT.get((verb, klass), _CODES[klass])


@pytest.mark.parametrize(
    ("table", "spec"), [(SMTP_TRANSITIONS, SMTP_SPEC), (LMTP_TRANSITIONS, LMTP_SPEC)]
)
def test_every_state_verb_and_reply_class_rfc5321_4_1_4(table: object, spec: Spec) -> None:
    assert isinstance(table, type(SMTP_TRANSITIONS))
    for state, verb, klass in itertools.product(State, COMMANDS + STEPS, CLASSES):
        want = expected(spec, state, verb, klass)
        code = code_for(verb, klass)
        if state is S.CLOSED and klass in (4, 5):
            want = S.CLOSED
        if want is None:
            with pytest.raises(LocalProtocolError):
                next_state(table, state, verb, code)  # type: ignore[arg-type]
        else:
            assert next_state(table, state, verb, code) is want, (state, verb, code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verb", "klass", "wrong"),
    [("STARTTLS", 2, 250), ("DATA", 3, 334), ("AUTH", 3, 354), ("GREETING", 2, 250)],
)
def test_a_command_that_names_its_code_takes_no_other_rfc3207_4(
    verb: str, klass: int, wrong: int
) -> None:
    state = {"STARTTLS": S.READY, "DATA": S.RCPT, "AUTH": S.READY, "GREETING": S.GREETING}[verb]
    assert next_state(SMTP_TRANSITIONS, state, verb, code_for(verb, klass)) is not None
    with pytest.raises(LocalProtocolError):
        next_state(SMTP_TRANSITIONS, state, verb, wrong)


def test_a_421_closes_every_state_rfc5321_3_8() -> None:
    for state in State:
        assert next_state(SMTP_TRANSITIONS, state, "CLOSE", 421) is S.CLOSED


def test_every_state_has_an_rfc5321_timeout() -> None:
    # RFC 5321 §4.5.3.2: 5 minutes for commands, 3 per data block
    assert S.GREETING.timeout == S.MAIL.timeout == S.RCPT.timeout == 300
    assert S.DATA.timeout == 180
    assert all(s.timeout > 0 for s in State if s is not S.CLOSED)


# -- a real server driven through every row -------------------------------------------

CONFIG = ServerConfig(
    starttls=True, auth_mechanisms=("PLAIN",), auth_requires_tls=False, chunking=True
)
LINES = {
    "EHLO": b"EHLO c.example",
    "HELO": b"HELO c.example",
    "LHLO": b"LHLO c.example",
    "STARTTLS": b"STARTTLS",
    "AUTH": b"AUTH PLAIN",
    "MAIL": b"MAIL FROM:<a@b.example>",
    "RCPT": b"RCPT TO:<c@d.example>",
    "DATA": b"DATA",
    "BDAT": b"BDAT 3",
    "BDAT LAST": b"BDAT 3 LAST",
    "RSET": b"RSET",
    "NOOP": b"NOOP",
    "HELP": b"HELP",
    "VRFY": b"VRFY someone",
    "EXPN": b"EXPN list",
    "QUIT": b"QUIT",
}
# How to reach each state from a new connection, with an application that
# says yes: the commands, in order.
PATHS: dict[State, list[bytes]] = {
    S.CONNECTED: [],
    S.READY: [b"EHLO c.example"],
    S.MAIL: [b"EHLO c.example", b"MAIL FROM:<a@b.example>"],
    S.RCPT: [b"EHLO c.example", b"MAIL FROM:<a@b.example>", b"RCPT TO:<c@d.example>"],
    S.DATA: [b"EHLO c.example", b"MAIL FROM:<a@b.example>", b"RCPT TO:<c@d.example>", b"DATA"],
    S.BDAT_MORE: [
        b"EHLO c.example",
        b"MAIL FROM:<a@b.example>",
        b"RCPT TO:<c@d.example>",
        b"BDAT 0",
    ],
    S.STARTTLS: [b"EHLO c.example", b"STARTTLS"],
    S.AUTH: [b"EHLO c.example", b"AUTH PLAIN"],
    S.CLOSED: [b"QUIT"],
}
YES = {"DATA": 354, "STARTTLS": 220, "AUTH": 334}


def drain(conn: ServerConnection, answer: int | None) -> list[object]:
    """Read every event; answer each decision with ``answer`` (or yes)."""
    events: list[object] = []
    for _ in range(100):
        event = conn.next_event()
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            return events
        if event is PAUSED:
            verb = conn._pending_verb
            assert verb is not None
            code = answer if answer is not None else YES.get(verb, 250)
            conn.send(Reply(code, "x"))
            events.append(("answered", verb, code))
            continue
        events.append(event)
    raise AssertionError("the server did not settle")


def server_in(state: State, lmtp: bool = False) -> ServerConnection:
    conn = ServerConnection("mx.example", CONFIG if not lmtp else ServerConfig(lmtp=True))
    if state is S.GREETING:
        return conn
    if state is S.REFUSED:
        conn.send(Reply(554, "no service"))
        return conn
    conn.send(Reply(220, "mx.example ESMTP"))
    if state is S.TLS_REFUSED:
        conn.receive_data(b"STARTTLS\r\n")
        drain(conn, None)
        conn.start_tls(TLS, acceptable=False)
        return conn
    path = PATHS.get(state)
    if path is None:  # BDAT: a chunk announced, its octets not read yet
        path = [*PATHS[S.RCPT], b"BDAT 3"]
    for line in path:
        conn.receive_data(line.replace(b"EHLO", b"LHLO") if lmtp else line)
        conn.receive_data(b"\r\n")
        drain(conn, None)
    assert conn.state is state
    return conn


def _self_answered(events: list[object]) -> int | None:
    for event in events:
        if isinstance(event, CommandRejected):
            return event.reply.code // 100
    return None


def _feed(conn: ServerConnection, state: State, verb: str) -> list[object] | None:
    """Put ``verb`` to a server in ``state``; the events up to a decision.

    None when the row cannot be put to a server (a step of another state).
    """
    if verb in ("GREETING", "TLS") or state is S.GREETING:
        return None  # tested on their own below
    if state is S.DATA:
        if verb != "EOM":
            return None
        conn.receive_data(b".\r\n")
    elif state is S.BDAT:
        if verb != "BDAT":
            return None
        conn.receive_data(b"abc")  # the announced chunk, non-LAST
    elif state is S.AUTH:
        if verb != "AUTH":
            return None
        conn.receive_data(b"dGVzdA==\r\n")  # a SASL response line
    elif state is S.STARTTLS or verb == "EOM":
        return None
    else:
        octets = b"abc" if verb.startswith("BDAT") else b""
        conn.receive_data(LINES[verb] + b"\r\n" + octets)
    events: list[object] = []
    for _ in range(10):
        event = conn.next_event()
        if event is PAUSED or event is NEED_DATA or isinstance(event, ConnectionClosed):
            return events
        events.append(event)
    raise AssertionError(events)


@pytest.mark.parametrize("state", [s for s in State if s is not S.CLOSED])
def test_a_server_moves_exactly_as_the_spec_says(state: State) -> None:
    for verb, klass in itertools.product(COMMANDS + STEPS, CLASSES):
        conn = server_in(state)
        events = _feed(conn, state, verb)
        if events is None:
            continue
        if conn._pending_verb is None:
            # the connection answered by itself: its class must lead where
            # the spec says (RSET, NOOP, HELP, QUIT are answered positively)
            chosen = next(
                (e.reply.code // 100 for e in events if isinstance(e, CommandRejected)), 2
            )
            assert conn.state is expected(SMTP_SPEC, state, verb, chosen), (verb, events)
            continue
        want = expected(SMTP_SPEC, state, verb, klass)
        code = code_for(verb, klass)
        if want is None:
            with pytest.raises(LocalProtocolError):
                conn.send(Reply(code, "x"))
            assert conn._pending_verb is not None  # nothing was sent
        else:
            conn.send(Reply(code, "x"))
            assert conn.state is want, (state, verb, code)


@pytest.mark.parametrize("klass", CLASSES)
def test_the_greeting_row_rfc5321_3_1(klass: int) -> None:
    conn = server_in(S.GREETING)
    code = code_for("GREETING", klass)
    if code not in (220, 554):
        # this server greets with 220 or 554 only (RFC 5321 §3.1, §4.3.2)
        with pytest.raises(LocalProtocolError):
            conn.send(Reply(code, "x"))
        return
    conn.send(Reply(code, "x"))
    assert conn.state is expected(SMTP_SPEC, S.GREETING, "GREETING", klass)


@pytest.mark.parametrize("state", [s for s in State if s is not S.CLOSED])
def test_the_handshake_row_rfc3207_4_2(state: State) -> None:
    for acceptable in (True, False):
        conn = server_in(state)
        if state in (S.STARTTLS, S.GREETING):
            conn.start_tls(TLS, acceptable=acceptable)
            assert conn.state is expected(SMTP_SPEC, state, "TLS", 2 if acceptable else 5)
        else:
            with pytest.raises(LocalProtocolError):
                conn.start_tls(TLS, acceptable=acceptable)
            assert conn.state is state


def test_lmtp_uses_lhlo_rfc2033_4_1() -> None:
    conn = server_in(S.READY, lmtp=True)
    assert conn.state is S.READY
    conn.receive_data(b"HELO c.example\r\n")
    [event] = drain(conn, None)
    assert isinstance(event, CommandRejected) and event.reply.code == 500
    assert conn.state is S.READY


def test_both_sides_report_the_same_state_type() -> None:
    client = ClientConnection("c.example")
    server = ServerConnection("mx.example")
    assert client.state is server.state is S.GREETING
    client.receive_data(server.send(Reply(220, "mx.example ESMTP")))
    assert isinstance(client.next_event(), Reply)
    assert client.state is server.state is S.CONNECTED


# -- one vocabulary: the same misuse is the same error on both sides -------------------


def _both() -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection("c.example")
    server = ServerConnection("mx.example", ServerConfig(starttls=True))
    client.receive_data(server.send(Reply(220, "mx.example ESMTP")))
    assert isinstance(client.next_event(), Reply)
    return client, server


def test_the_same_misuse_raises_the_same_error_in_both_roles() -> None:
    client, server = _both()
    # a wrong type is a TypeError
    with pytest.raises(TypeError):
        client.start_tls("TLSv1.3")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        server.start_tls("TLSv1.3")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.send("EHLO c.example")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        server.send("250 OK")  # type: ignore[arg-type]
    # the right call at the wrong time is a LocalProtocolError
    with pytest.raises(LocalProtocolError):
        client.start_tls(TLS)
    with pytest.raises(LocalProtocolError):
        server.start_tls(TLS)
    with pytest.raises(LocalProtocolError):
        server.send(Reply(250, "nobody asked"))
    client.receive_data(b"")
    server.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"more")
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")


def test_after_a_remote_error_both_roles_stay_broken() -> None:
    # as in h11: once next_event() raised, it raises the same error again
    client, server = _both()
    client.receive_data(b"250 nobody asked\r\n")
    server.receive_data(b"EHLO c.example\r\nSTARTTLS\r\n")
    assert server.next_event() is not PAUSED
    server.send(Reply(250, "hi"))
    assert server.next_event() is not PAUSED
    server.send(Reply(220, "go ahead"))
    server.receive_data(b"NOOP\r\n")  # plaintext after the 220: injection
    for conn in (client, server):
        with pytest.raises(RemoteProtocolError) as first:
            conn.next_event()
        with pytest.raises(RemoteProtocolError) as again:
            conn.next_event()
        assert again.value is first.value
