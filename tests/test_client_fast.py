"""The client's fast paths decide exactly as the general code they shortcut.

* the DATA writer's dot-stuffing by split and join (bounded), against the
  ``bytes.replace`` it replaced;
* ClientConnection's reused SessionView and remembered command lines,
  against a connection that builds both afresh for every command;
* the EHLO capabilities kept by reply text, against Capabilities.from_reply;
* the envelope events kept by address text, against parsing every time;
* send_message's pipelined group read in one loop, against the
  reply-by-reply operation it replaced (same bytes on the wire, same result).
"""

from __future__ import annotations

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
)
from smtp_rtls._client import ClientConnection
from smtp_rtls._framing import has_bare_line_ending
from smtp_rtls._state import REPLY_TIMEOUTS
from smtp_rtls._writers import DataWriter, _stuff
from smtp_rtls.io._common import message_envelope
from smtp_rtls.session import client as client_ops
from smtp_rtls.session.client import SendResult, read_reply
from smtp_rtls.session.requests import Read, Step, Write

# -- the DATA writer ------------------------------------------------------------------


class ReferenceWriter:
    """The DataWriter as it was: normalise, then one bytes.replace."""

    def __init__(self) -> None:
        self.held_cr = False
        self.line_start = True

    def write(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self.held_cr:
            data = b"\r" + data
            self.held_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self.held_cr = True
            if not data:
                return b""
        if has_bare_line_ending(data):
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        out = data.replace(b"\r\n.", b"\r\n..")
        if self.line_start and out[:1] == b".":
            out = b"." + out
        self.line_start = out.endswith(b"\r\n")
        return out

    def end(self) -> bytes:
        if self.held_cr:
            self.held_cr = False
            self.line_start = True
            return b"\r\n.\r\n"
        if self.line_start:
            return b".\r\n"
        self.line_start = True
        return b"\r\n.\r\n"


# Period lines in plenty: past (len >> 8) + 8 of them the bounded split
# hands the rest to one replace.
_pieces = [b".\r\n", b"\r\n.", b"\r\n..", b".", b"a", b"\r", b"\n", b"\r\n", b"xyz"]
dense = st.lists(st.sampled_from(_pieces), max_size=300).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=1200), max_size=6)


def _split(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    out, prev = [], 0
    for p in [*marks, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@given(dense, cuts)
@settings(max_examples=400)
def test_data_writer_writes_what_the_replace_writer_wrote(data: bytes, points: list[int]) -> None:
    fast, ref = DataWriter(), ReferenceWriter()
    for chunk in _split(data, points):
        assert fast.write(chunk) == ref.write(chunk)
    assert fast.end() == ref.end()


@given(dense.filter(lambda d: not has_bare_line_ending(d)), st.booleans())
@settings(max_examples=400)
def test_stuff_is_replace_with_the_line_start_rfc5321_4_5_2(data: bytes, line_start: bool) -> None:
    expected = data.replace(b"\r\n.", b"\r\n..")
    if line_start and expected.startswith(b"."):
        expected = b"." + expected
    assert _stuff(data, line_start) == expected


def test_stuff_past_the_split_bound() -> None:
    # 3000 period lines in 9000 octets: far past (9000 >> 8) + 8 = 43 splits
    data = b".\r\n" * 3000
    assert _stuff(data, True) == b"." + data.replace(b"\r\n.", b"\r\n..")
    # no period at all: the content itself, not a copy
    plain = b"abc\r\n" * 100
    assert _stuff(plain, True) is plain


# -- the connection: reused view and command lines -------------------------------------


# Event objects made once and sent again and again, as a client does.
_EVENTS = [
    Ehlo("client.example"),
    Helo("client.example"),
    MailFrom("alice@example.org"),
    MailFrom("alice@example.org", size=2000),
    MailFrom("alice@example.org", body="BINARYMIME"),
    MailFrom("alice@example.org", requiretls=True),
    MailFrom("", smtputf8=True),
    RcptTo("bob@example.net"),
    RcptTo("bob@example.net", notify=("NEVER",)),
    RcptTo("dés@example.net"),
    Data(),
    Bdat(5),
    Bdat(0, last=True),
    MessageData(b"hello\r\n.x\r\n"),
    MessageData(b"12345"),
    EndOfMessage(),
    Rset(),
    Noop(),
    StartTLS(),
    Quit(),
]
_REPLIES = [
    b"250 2.0.0 OK\r\n",
    b"354 go ahead\r\n",
    b"550 5.1.1 no\r\n",
    b"220 2.0.0 ready for TLS\r\n",
    b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-CHUNKING\r\n250-DSN\r\n"
    b"250-SMTPUTF8\r\n250-STARTTLS\r\n250 REQUIRETLS\r\n",
    b"250-mx.example\r\n250 8BITMIME\r\n",
    b"421 4.3.2 bye\r\n",
]
_actions = actions(_EVENTS, _REPLIES, lmtp=True)


def _outcome(conn: ClientConnection, action: tuple[str, int]) -> object:
    return outcome(conn, action, _EVENTS, _REPLIES)


# EHLO, the reply that offers everything, MAIL, its reply, RCPT, DATA, ...
_TRANSACTION = [("send", 0), ("reply", 4), ("send", 2), ("send", 7), ("send", 10)]


@pytest.mark.pure_only(reason="GeneralConnection subclasses ClientConnection")
@given(_actions, st.booleans())
@example([*_TRANSACTION], False)
@example([*_TRANSACTION, ("reply", 0), ("reply", 0), ("reply", 1)], True)
@example([("lmtp", 0), ("send", 0), ("reply", 0), ("lmtp", 0), ("send", 0)], False)
@settings(max_examples=300)
def test_connection_with_kept_views_and_lines_acts_as_the_general_one(
    actions: list[tuple[str, int]], offered: bool
) -> None:
    fast, general = ClientConnection("c.example"), GeneralConnection("c.example")
    greeting = b"220 mx.example ESMTP\r\n"
    for conn in (fast, general):
        conn.receive_data(greeting)
        conn.next_event()
    # ``offered``: start after the EHLO reply that offers every extension,
    # where most commands are allowed
    for action in [("send", 0), ("reply", 4)] * offered + actions:
        assert _outcome(fast, action) == _outcome(general, action), action
        assert fast.state is general.state
        assert fast.pending == general.pending
        assert fast.capabilities == general.capabilities


# -- the capabilities kept by EHLO reply text -----------------------------------------


@given(
    st.lists(
        st.sampled_from(["PIPELINING", "SIZE 100", "AUTH PLAIN LOGIN", "8BITMIME", "X-Y a b"]),
        max_size=5,
    ),
    st.sampled_from([None, "2.0.0"]),
)
def test_kept_capabilities_are_those_of_the_reply(lines: list[str], enhanced: str | None) -> None:
    reply = Reply(250, ["mx.example hi", *lines], enhanced)
    for _ in range(2):  # the second connection finds the first one's
        conn = ClientConnection("c.example")
        conn.receive_data(b"220 mx.example\r\n")
        conn.next_event()
        conn.send(Ehlo("c.example"))
        conn.receive_data(reply.format())
        conn.next_event()
        assert conn.capabilities == Capabilities.from_reply(Reply.parse(reply.format()))


def test_a_malformed_ehlo_reply_is_refused_every_time() -> None:
    for _ in range(2):
        conn = ClientConnection("c.example")
        conn.receive_data(b"220 mx.example\r\n")
        conn.next_event()
        conn.send(Ehlo("c.example"))
        conn.receive_data(b"250-mx.example\r\n250 \xc3\xa9T\xc3\xa9\r\n")
        with pytest.raises(RemoteProtocolError):
            conn.next_event()


# -- the envelope kept by address text ------------------------------------------------

_addresses = st.sampled_from(
    ["alice@example.org", "", "dés@example.org", "a b@example", "<x@y>", "x@[127.0.0.1]", "@"]
)


def _parsed(mail_from: str, rcpts: Sequence[str], requiretls: bool) -> object:
    try:
        mail = MailFrom(mail_from)
        if requiretls:
            mail = attrs.evolve(mail, requiretls=True)
        return mail, [RcptTo(r) for r in rcpts]
    except Exception as exc:
        return (type(exc), str(exc))


def _envelope(mail_from: str, rcpts: Sequence[str], requiretls: bool) -> object:
    try:
        return message_envelope(mail_from, rcpts, requiretls)
    except Exception as exc:
        return (type(exc), str(exc))


@given(_addresses, st.lists(_addresses, min_size=1, max_size=3), st.booleans())
def test_kept_envelope_is_the_parsed_one(mail_from: str, rcpts: list[str], rtls: bool) -> None:
    expected = _parsed(mail_from, rcpts, rtls)
    assert _envelope(mail_from, rcpts, rtls) == expected
    assert _envelope(mail_from, rcpts, rtls) == expected  # now from the cache, if it parsed


def test_kept_envelope_returns_a_fresh_list() -> None:
    _, first = message_envelope("a@example.org", ["b@example.org"], False)
    first.append(RcptTo("c@example.org"))
    _, again = message_envelope("a@example.org", ["b@example.org"], False)
    assert again == [RcptTo("b@example.org")]


# -- send_message: the pipelined group in one loop ------------------------------------


def _transaction(
    conn: ClientConnection,
    mail: MailFrom,
    recipients: Sequence[RcptTo],
    content: bytes | Iterable[bytes],
    timeouts: Mapping[str, float] = REPLY_TIMEOUTS,
) -> Step[SendResult]:
    """send_message as it was, reply by reply."""
    write = client_ops._write
    last_reply = client_ops._last_reply
    if not recipients:
        raise ValueError("a message needs at least one recipient")
    chunks = [content] if isinstance(content, bytes) else content
    bdat = mail.body == "BINARYMIME"
    if conn.pipelining:
        group: list[Any] = [mail, *recipients]
        if not bdat:
            group.append(Data())
        yield from write(b"".join(conn.send(e) for e in group))
        mail_reply = yield from read_reply(conn, timeouts)
        replies = []
        for rcpt in recipients:
            replies.append((rcpt, (yield from read_reply(conn, timeouts))))
        go = (yield from read_reply(conn, timeouts)) if not bdat else None
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
        return attrs.evolve(result, data=(yield from last_reply(conn, timeouts)))
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
    return SendResult(result.mail, result.recipients, (yield from last_reply(conn, timeouts)))


reference_send_message = then_reset(_transaction)


class Responder:
    """Answers each command with the next scripted code for its verb; the
    replies of one write come back in reads of ``read_size`` octets."""

    def __init__(self, codes: dict[str, list[int]], read_size: int) -> None:
        self.codes = {k: list(v) for k, v in codes.items()}
        self.read_size = read_size
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
            self.out += b"%d x\r\n" % code

    def read(self) -> bytes:
        data, self.out = self.out[: self.read_size], self.out[self.read_size :]
        return data


def _drive(steps: Step[SendResult], responder: Responder) -> tuple[list[bytes], object]:
    wire: list[bytes] = []
    result: object = None
    try:
        while True:
            request = steps.send(result)  # type: ignore[arg-type]
            if isinstance(request, Write):
                wire.append(request.data)
                responder.written(request.data)
                result = None
            else:
                assert isinstance(request, Read)
                result = responder.read()
    except StopIteration as stop:
        return wire, stop.value
    except (ConnectionError, LocalProtocolError, RemoteProtocolError, ValueError) as exc:
        return wire, (type(exc), str(exc))


def _ready(extensions: list[str]) -> ClientConnection:
    conn = ClientConnection("c.example")
    conn.receive_data(b"220 mx.example\r\n")
    conn.next_event()
    conn.send(Ehlo("c.example"))
    conn.receive_data(Reply(250, ["mx.example", *extensions]).format())
    conn.next_event()
    return conn


_code_lists = st.lists(st.sampled_from([250, 251, 354, 450, 550, 554]), max_size=4)


@given(
    pipelining=st.booleans(),
    chunking=st.booleans(),
    binarymime=st.booleans(),
    recipients=st.lists(st.sampled_from(["b@example.net", "c@example.net"]), max_size=4),
    mail_codes=_code_lists,
    rcpt_codes=_code_lists,
    data_codes=_code_lists,
    eom_codes=_code_lists,
    content=st.lists(st.sampled_from([b"", b"a\r\n", b".b\r\n", b"c\r", b"\nd", b"x" * 70000])),
    read_size=st.sampled_from([1, 7, 4096]),
)
@settings(max_examples=300)
def test_send_message_writes_and_returns_what_the_reference_did(
    pipelining: bool,
    chunking: bool,
    binarymime: bool,
    recipients: list[str],
    mail_codes: list[int],
    rcpt_codes: list[int],
    data_codes: list[int],
    eom_codes: list[int],
    content: list[bytes],
    read_size: int,
) -> None:
    extensions = ["PIPELINING"] * pipelining + ["CHUNKING"] * chunking
    codes = {"MAIL": mail_codes, "RCPT": rcpt_codes, "DATA": data_codes, "EOM": eom_codes}
    mail = MailFrom("a@example.org", body="BINARYMIME" if binarymime else None)
    rcpts = [RcptTo(r) for r in recipients]
    runs = []
    for operation in (client_ops.send_message, reference_send_message):
        conn = _ready(extensions)
        steps = operation(conn, mail, rcpts, content)
        wire, result = _drive(steps, Responder(codes, read_size))
        runs.append((b"".join(wire), len(wire), result, conn.state, conn.pending))
    assert runs[0] == runs[1]


def test_kept_lines_are_those_format_command_makes_and_never_auth() -> None:
    from smtp_rtls import Auth
    from smtp_rtls._client import _FORMATTED
    from smtp_rtls._commands import format_command

    conn = _ready(["PIPELINING", "AUTH PLAIN"])
    mail, rcpt = MailFrom("a@example.org"), RcptTo("b@example.org")
    for event in (mail, rcpt):
        assert conn.send(event) == format_command(event)
        assert _FORMATTED[id(event)] == (event, False, format_command(event))
    conn = _ready(["AUTH PLAIN"])
    auth = Auth("PLAIN", "AHVzZXIAc2VjcmV0")
    assert conn.send(auth) == format_command(auth)
    # credentials are not kept beyond the application's own references
    assert all(entry[0] is not auth for entry in _FORMATTED.values())
