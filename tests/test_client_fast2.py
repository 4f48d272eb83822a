"""The client's second round of fast paths decide exactly as the general code.

* ClientConnection's kept next states (by table, state, verb and code), its
  two kept SessionViews, and the parameter checks kept per event and
  Capabilities, against a connection that forgets all of them before every
  call;
* ClientConnection._send_content_end against ``send(MessageData(...))`` then
  ``send(EndOfMessage())``, in every state;
* send_message's pipelined DATA path (content given as bytes or as chunks)
  against the general code it shortcuts, copied below as it was;
* the write timeout: a ``timeout=`` (``uniform``) is every wait, writes too;
* message_envelope's look-up before the recipients are checked to be text;
* the objects made once per message without attrs' ``__init__`` (their
  slots filled directly) against what the classes' constructors make, and
  the CHUNKING flag kept per offer against the offer.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from client_helpers import GeneralConnection, actions, outcome, then_reset
from smtp_rtls import (
    Bdat,
    Capabilities,
    Data,
    Ehlo,
    EndOfMessage,
    Helo,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    Rset,
    StartTLS,
    _client_rules,
)
from smtp_rtls._client import ClientConnection
from smtp_rtls._client_rules import SessionView, _need_parameters
from smtp_rtls._sentinels import NEED_DATA
from smtp_rtls._state import REPLY_TIMEOUTS
from smtp_rtls.io._common import message_envelope
from smtp_rtls.session import client as client_ops
from smtp_rtls.session.client import SendResult, read_reply
from smtp_rtls.session.requests import Read, Step, Write

# -- the connection: kept states, views and parameter checks --------------------------


_EVENTS = [
    Ehlo("client.example"),
    Helo("client.example"),
    MailFrom("alice@example.org"),
    MailFrom("alice@example.org", size=2000),
    MailFrom("alice@example.org", body="BINARYMIME"),
    MailFrom("alice@example.org", body="8BITMIME"),
    MailFrom("alice@example.org", requiretls=True),
    MailFrom("", smtputf8=True),
    RcptTo("bob@example.net"),
    RcptTo("bob@example.net", notify=("NEVER",)),
    RcptTo("dés@example.net"),
    Data(),
    Bdat(5),
    Bdat(0, last=True),
    MessageData(b"hello\r\n.x\r\n"),
    EndOfMessage(),
    Rset(),
    Noop(),
    StartTLS(),
    Quit(),
]
_REPLIES = [
    b"250 2.0.0 OK\r\n",
    b"251 2.1.5 forwarded\r\n",
    b"354 go ahead\r\n",
    b"450 4.2.0 later\r\n",
    b"550 5.1.1 no\r\n",
    b"220 2.0.0 ready for TLS\r\n",
    b"334 VXNlcm5hbWU6\r\n",
    b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-CHUNKING\r\n250-DSN\r\n"
    b"250-SMTPUTF8\r\n250-STARTTLS\r\n250 REQUIRETLS\r\n",
    b"250-mx.example\r\n250 8BITMIME\r\n",
    b"250-mx.example\r\n250 PIPELINING\r\n",
    b"421 4.3.2 bye\r\n",
    b"",
]
_actions = actions(_EVENTS, _REPLIES)


def _outcome(conn: ClientConnection, action: tuple[str, int]) -> object:
    return outcome(conn, action, _EVENTS, _REPLIES)


_TRANSACTION = [("send", 0), ("reply", 7), ("send", 2), ("send", 8), ("send", 11)]


@pytest.mark.pure_only(reason="GeneralConnection subclasses ClientConnection")
@given(_actions, st.booleans(), st.booleans())
@example([*_TRANSACTION, ("reply", 0), ("reply", 0), ("reply", 2)], False, False)
# the same MAIL and RCPT checked against another offer: checked again
@example(
    [
        ("send", 0),
        ("reply", 7),
        ("send", 3),
        ("send", 9),
        ("reply", 0),
        ("reply", 0),
        ("send", 16),
        ("reply", 0),
        ("send", 0),
        ("reply", 9),
        ("send", 3),
        ("send", 9),
    ],
    False,
    False,
)
@example([("send", 0), ("reply", 9), ("send", 2), ("send", 8), ("send", 11)] * 3, False, True)
# two whole transactions, pipelined: the second RCPT sees its own transaction
@example(
    [("send", 0), ("reply", 7)]
    + [("send", 2), ("send", 8), ("send", 11), ("reply", 0), ("reply", 0), ("reply", 2)]
    + [("send", 14), ("send", 15), ("reply", 0)] * 1
    + [("send", 2), ("send", 8), ("send", 11), ("reply", 0), ("reply", 0), ("reply", 2)],
    False,
    False,
)
@settings(max_examples=400)
def test_kept_states_views_and_checks_act_as_the_general_path(
    actions: list[tuple[str, int]], offered: bool, lmtp: bool
) -> None:
    fast = ClientConnection("c.example", lmtp=lmtp)
    general = GeneralConnection("c.example", lmtp=lmtp)
    for conn in (fast, general):
        conn.receive_data(b"220 mx.example ESMTP\r\n")
        conn.next_event()
    for action in [("send", 0), ("reply", 7)] * offered + actions:
        assert _outcome(fast, action) == _outcome(general, action), action
        assert fast.state is general.state
        assert fast.pending == general.pending
        assert fast.capabilities == general.capabilities
        assert fast.closed == general.closed


def test_nothing_buffered_is_need_data_or_the_close() -> None:
    conn = ClientConnection("c.example")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"220 mx.example\r\n")
    assert isinstance(conn.next_event(), Reply)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    event = conn.next_event()
    assert type(event).__name__ == "ConnectionClosed"
    assert conn.closed
    # a reply cut short by the close is the server's fault
    conn = ClientConnection("c.example")
    conn.receive_data(b"220-mx.example\r\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    try:
        conn.next_event()
    except RemoteProtocolError:
        pass
    else:
        raise AssertionError("a half reply passed")


def test_a_kept_next_state_is_that_of_the_very_code() -> None:
    # RFC 3207 §4: only 220 answers STARTTLS with the go-ahead; a 250 is
    # refused however often a 220 was read before.
    for _ in range(2):
        conn = ClientConnection("c.example")
        conn.receive_data(b"220 mx.example\r\n")
        conn.next_event()
        conn.send(Ehlo("c.example"))
        conn.receive_data(b"250-mx.example\r\n250 STARTTLS\r\n")
        conn.next_event()
        conn.send(StartTLS())
        conn.receive_data(b"220 2.0.0 go\r\n")
        assert conn.next_event().code == 220  # type: ignore[union-attr]
    conn = ClientConnection("c.example")
    conn.receive_data(b"220 mx.example\r\n")
    conn.next_event()
    conn.send(Ehlo("c.example"))
    conn.receive_data(b"250-mx.example\r\n250 STARTTLS\r\n")
    conn.next_event()
    conn.send(StartTLS())
    conn.receive_data(b"250 2.0.0 go\r\n")
    try:
        conn.next_event()
    except RemoteProtocolError:
        pass
    else:
        raise AssertionError("250 accepted as the answer to STARTTLS")


def test_a_kept_parameter_check_holds_for_its_offer_only() -> None:
    mail = MailFrom("a@example.org", size=10)
    with_size = Capabilities.from_reply(Reply(250, ["mx.example", "SIZE 1000"]))
    without = Capabilities.from_reply(Reply(250, ["mx.example", "PIPELINING"]))
    view = SessionView(with_size, "EHLO", None, None, False, False)
    _need_parameters(view, mail, _client_rules.MAIL_PARAMETERS)
    _need_parameters(view, mail, _client_rules.MAIL_PARAMETERS)
    other = SessionView(without, "EHLO", None, None, False, False)
    try:
        _need_parameters(other, mail, _client_rules.MAIL_PARAMETERS)
    except LocalProtocolError as exc:
        assert "SIZE" in str(exc)
    else:
        raise AssertionError("SIZE= was sent to a server that did not offer SIZE")


# -- the content and its end in one call -------------------------------------------------


_setups = st.lists(st.integers(0, len(_EVENTS) + len(_REPLIES) - 1), max_size=12)


def _apply(conn: ClientConnection, steps: list[int]) -> None:
    for i in steps:
        try:
            if i < len(_EVENTS):
                conn.send(_EVENTS[i])
            else:
                conn.receive_data(_REPLIES[i - len(_EVENTS)])
                while isinstance(conn.next_event(), Reply):
                    pass
        except (LocalProtocolError, RemoteProtocolError):
            pass


def _pair(conn: ClientConnection, data: Any, fast: bool) -> object:
    try:
        if fast:
            return conn._send_content_end(data)
        return conn.send(MessageData(data)), conn.send(EndOfMessage())
    except TypeError:
        # the wording is the build's: the compiled core's argument checks
        # say it their own way
        return TypeError
    except (LocalProtocolError, RemoteProtocolError) as exc:
        return (type(exc), str(exc))


_IN_DATA = [0, 20 + 7, 2, 8, 11, 20 + 0, 20 + 0, 20 + 2]


@given(
    _setups,
    st.one_of(st.binary(max_size=40), st.sampled_from([b"", b".a\r\nb\r", b"x\r\n", "text"])),
)
@example(_IN_DATA, b".a\r\n.b")
@example(_IN_DATA, b"x\r")
@example(_IN_DATA, "text")
@example([0, 27, 2, 8, 11, 20 + 4, 20 + 2], b"lone dot")
@example([0, 27, 2, 8, 12], b"12345")
@settings(max_examples=400)
def test_content_and_end_in_one_call_is_the_two_events(steps: list[int], data: Any) -> None:
    outcomes = []
    for fast in (True, False):
        conn = ClientConnection("c.example")
        conn.receive_data(b"220 mx.example ESMTP\r\n")
        conn.next_event()
        _apply(conn, steps)
        outcomes.append((_pair(conn, data, fast), conn.state, conn.pending, conn.closed))
    assert outcomes[0] == outcomes[1]


# -- send_message -----------------------------------------------------------------------


def _transaction(
    conn: ClientConnection,
    mail: MailFrom,
    recipients: Sequence[RcptTo],
    content: bytes | Iterable[bytes],
    timeouts: Mapping[str, float] = REPLY_TIMEOUTS,
) -> Step[SendResult]:
    """send_message as it was before its pipelined path (one write timeout
    for every write, as the operation now gives)."""
    wt = timeouts.get("WRITE", 180.0)

    def write(data: bytes) -> Step[None]:
        return client_ops._write(data, wt)

    if not recipients:
        raise ValueError("a message needs at least one recipient")
    chunks = [content] if isinstance(content, bytes) else content
    bdat = mail.body == "BINARYMIME"
    if conn.pipelining:
        send = conn.send
        lines = [send(mail)]
        for rcpt in recipients:
            lines.append(send(rcpt))
        if not bdat:
            lines.append(send(Data()))
        yield from write(b"".join(lines))
        got = yield from client_ops._read_replies(conn, len(lines), timeouts)
        mail_reply = got[0]
        replies = list(zip(recipients, got[1 : 1 + len(recipients)], strict=True))
        go = got[-1] if not bdat else None
    else:
        mail_reply = yield from client_ops.command(conn, mail, timeouts)
        replies = []
        go = None
        if mail_reply.is_positive:
            for rcpt in recipients:
                replies.append((rcpt, (yield from client_ops.command(conn, rcpt, timeouts))))
            if any(r.is_positive for _, r in replies) and not bdat:
                go = yield from client_ops.command(conn, Data(), timeouts)
    result = SendResult(mail_reply, tuple(replies), None)
    accepted = mail_reply.is_positive and any(r.is_positive for _, r in replies)
    if bdat:
        if not accepted:
            return result
        body = b"".join(chunks)
        yield from write(conn.send(Bdat(len(body), last=True)) + conn.send(MessageData(body)))
        return attrs.evolve(result, data=(yield from client_ops._last_reply(conn, timeouts)))
    if go is None or go.code != 354:
        return result
    if not accepted:
        yield from write(conn.send(EndOfMessage()))
        yield from read_reply(conn, timeouts)
        return result
    held = b""
    for chunk in chunks:
        if chunk:
            if held:
                yield from write(held)
            held = conn.send(MessageData(chunk))
    end = conn.send(EndOfMessage())
    if len(held) > client_ops._JOIN_END:
        yield from write(held)
        held = b""
    yield from write(held + end)
    return SendResult(
        result.mail, result.recipients, (yield from client_ops._last_reply(conn, timeouts))
    )


reference_send_message = then_reset(_transaction)


class Responder:
    """Scripted codes per verb; the replies of one write come back in reads
    of ``read_size`` octets; LMTP answers the end once per accepted RCPT."""

    def __init__(self, codes: dict[str, list[int]], read_size: int, lmtp: bool) -> None:
        self.codes = {k: list(v) for k, v in codes.items()}
        self.read_size = read_size
        self.lmtp = lmtp
        self.accepted = 0
        self.out = b""
        self.in_data = False
        self.tail = b""

    def code(self, verb: str, default: int) -> int:
        left = self.codes.get(verb)
        return left.pop(0) if left else default

    def written(self, data: bytes) -> None:
        if self.in_data:
            self.tail = (self.tail + data)[-5:]
            if self.tail.endswith(b"\r\n.\r\n"):
                self.in_data = False
                for _ in range(max(1, self.accepted) if self.lmtp else 1):
                    self.out += b"%d done\r\n" % self.code("EOM", 250)
            return
        for line in data.split(b"\r\n")[:-1]:
            verb = line[:4].decode("ascii", "replace").upper()
            if verb == "DATA":
                code = self.code("DATA", 354)
                self.in_data = code == 354
                self.tail = b"\r\n"
            elif verb == "BDAT":
                code = self.code("EOM", 250)
            else:
                code = self.code(verb, 250)
                if verb == "RCPT" and code < 400:
                    self.accepted += 1
                if verb == "MAIL":
                    self.accepted = 0
            self.out += b"%d x\r\n" % code

    def read(self) -> bytes:
        data, self.out = self.out[: self.read_size], self.out[self.read_size :]
        return data


def _drive(steps: Step[SendResult], responder: Responder) -> tuple[list[object], object]:
    wire: list[object] = []
    result: object = None
    try:
        while True:
            request = steps.send(result)  # type: ignore[arg-type]
            if isinstance(request, Write):
                wire.append((request.data, request.timeout))
                responder.written(request.data)
                result = None
            else:
                assert isinstance(request, Read)
                wire.append(("read", request.timeout, request.max_bytes))
                result = responder.read()
    except StopIteration as stop:
        return wire, stop.value
    except (ConnectionError, LocalProtocolError, RemoteProtocolError, ValueError) as exc:
        return wire, (type(exc), str(exc))


def _ready(extensions: list[str], lmtp: bool) -> ClientConnection:
    conn = ClientConnection("c.example", lmtp=lmtp)
    conn.receive_data(b"220 mx.example\r\n")
    conn.next_event()
    conn.send(Ehlo("c.example"))
    conn.receive_data(Reply(250, ["mx.example", *extensions]).format())
    conn.next_event()
    return conn


_code_lists = st.lists(st.sampled_from([250, 251, 354, 450, 550, 554]), max_size=4)
_content = st.one_of(
    st.sampled_from(
        [b"", b"a\r\n", b".b\r\n.", b"c\r", b"z" * 5000, b"x" * 70000, b"y\r\n" * 30000]
    ),
    st.lists(st.sampled_from([b"", b"a\r\n", b".b\r\n", b"c\r", b"\nd", b"x" * 70000])),
)


@given(
    pipelining=st.booleans(),
    chunking=st.booleans(),
    binarymime=st.booleans(),
    lmtp=st.booleans(),
    recipients=st.lists(st.sampled_from(["b@example.net", "c@example.net"]), max_size=4),
    mail_codes=_code_lists,
    rcpt_codes=_code_lists,
    data_codes=_code_lists,
    eom_codes=_code_lists,
    content=_content,
    read_size=st.sampled_from([1, 7, 4096]),
    timeout=st.sampled_from([None, 2.5]),
)
@example(
    pipelining=True,
    chunking=False,
    binarymime=False,
    lmtp=False,
    recipients=["b@example.net"],
    mail_codes=[],
    rcpt_codes=[],
    data_codes=[],
    eom_codes=[],
    content=b".a\r\nb\r\n",
    read_size=4096,
    timeout=2.5,
)
@example(
    pipelining=True,
    chunking=False,
    binarymime=False,
    lmtp=True,
    recipients=["b@example.net", "c@example.net"],
    mail_codes=[],
    rcpt_codes=[250, 550],
    data_codes=[],
    eom_codes=[250, 450],
    content=b"x" * 70000,
    read_size=7,
    timeout=None,
)
@example(
    pipelining=True,
    chunking=False,
    binarymime=False,
    lmtp=False,
    recipients=["b@example.net"],
    mail_codes=[],
    rcpt_codes=[],
    data_codes=[],
    eom_codes=[],
    content=b"z" * 5000,
    read_size=4096,
    timeout=None,
)
@settings(max_examples=400, deadline=None)
def test_send_message_writes_reads_and_returns_what_the_general_code_did(
    pipelining: bool,
    chunking: bool,
    binarymime: bool,
    lmtp: bool,
    recipients: list[str],
    mail_codes: list[int],
    rcpt_codes: list[int],
    data_codes: list[int],
    eom_codes: list[int],
    content: bytes | list[bytes],
    read_size: int,
    timeout: float | None,
) -> None:
    extensions = ["PIPELINING"] * pipelining + ["CHUNKING"] * chunking
    codes = {"MAIL": mail_codes, "RCPT": rcpt_codes, "DATA": data_codes, "EOM": eom_codes}
    mail = MailFrom("a@example.org", body="BINARYMIME" if binarymime else None)
    rcpts = [RcptTo(r) for r in recipients]
    timeouts = REPLY_TIMEOUTS if timeout is None else client_ops.uniform(timeout)
    runs = []
    for operation in (
        functools.partial(client_ops.send_message, chunking=False),
        reference_send_message,
    ):
        conn = _ready(extensions, lmtp)
        steps = operation(conn, mail, rcpts, content, timeouts)
        wire, result = _drive(steps, Responder(codes, read_size, lmtp))
        runs.append((wire, result, conn.state, conn.pending))
    assert runs[0] == runs[1]


def test_a_timeout_given_is_the_write_timeout_too() -> None:
    # RFC 5321 §4.5.3.2.5 (a data block: 3 minutes) unless one timeout for
    # every wait was given.
    for timeouts, expected in ((REPLY_TIMEOUTS, 180.0), (client_ops.uniform(7.0), 7.0)):
        conn = _ready(["PIPELINING"], False)
        steps = client_ops.send_message(
            conn, MailFrom("a@example.org"), [RcptTo("b@example.org")], b"hi\r\n", timeouts
        )
        wire, result = _drive(steps, Responder({}, 4096, False))
        assert isinstance(result, SendResult) and result.accepted
        writes = [w for w in wire if w[0] != "read"]
        assert len(writes) == 2
        assert all(w[1] == expected for w in writes)


def test_read_requests_are_kept_by_timeout() -> None:
    assert client_ops._read_request(12.5) is client_ops._read_request(12.5)
    assert client_ops._read_request(12.5) == Read(12.5)


# -- message_envelope ----------------------------------------------------------------------


def test_envelope_with_events_is_never_kept_and_keeps_the_events() -> None:
    rcpt = RcptTo("b@example.org")
    for _ in range(2):
        mail, rcpts = message_envelope("a@example.org", [rcpt, "c@example.org"], False)
        assert rcpts[0] is rcpt
        assert rcpts[1] == RcptTo("c@example.org")
        assert mail == MailFrom("a@example.org")
    first = message_envelope("a@example.org", ["c@example.org"], True)
    again = message_envelope("a@example.org", ["c@example.org"], True)
    assert first[0] is again[0] and first[0].requiretls
    assert first[1] == again[1] and first[1] is not again[1]


# -- made without __init__ -----------------------------------------------------------------


def _fields(obj: object) -> dict[str, object]:
    # every field read back: a slot left unset raises AttributeError here
    return {f.name: getattr(obj, f.name) for f in attrs.fields(type(obj))}


def test_write_requests_and_results_are_what_the_constructors_make() -> None:
    write = client_ops._write_request(b"MAIL FROM:<a@example.org>\r\n", 7.5)
    assert write == Write(b"MAIL FROM:<a@example.org>\r\n", 7.5)
    assert _fields(write) == _fields(Write(b"MAIL FROM:<a@example.org>\r\n", 7.5))
    ok = Reply(250, "Ok")
    pairs = ((RcptTo("b@example.org"), ok),)
    result = client_ops._send_result(ok, pairs, None)
    assert result == SendResult(ok, pairs, None)
    assert _fields(result) == _fields(SendResult(ok, pairs, None))


@pytest.mark.parametrize("offered", [True, False])
def test_chunking_is_what_the_offer_in_force_says_rfc3030_rfc3207_4_2(offered: bool) -> None:
    from client_helpers import ehlo, ready, starttls

    conn = ready("PIPELINING", "STARTTLS", *["CHUNKING"] * offered)
    assert (
        conn.chunking
        is offered
        is (conn.capabilities is not None and "CHUNKING" in conn.capabilities)
    )
    # RFC 3207 §4.2: what the server said before TLS is forgotten
    starttls(conn)
    assert conn.chunking is False
    ehlo(conn, "PIPELINING")
    assert conn.chunking is False
    conn = ready("CHUNKING")
    conn.send(Helo("client.example"))
    conn.receive_data(b"250 mx.example\r\n")
    assert isinstance(conn.next_event(), Reply)
    # RFC 5321 §4.1.1.1: HELO offers no extension
    assert conn.chunking is False


def test_unused_names_stay_importable() -> None:
    # the events the lists above are made of, once each
    assert {Noop(), Quit(), Rset(), StartTLS(), Helo("x")}
