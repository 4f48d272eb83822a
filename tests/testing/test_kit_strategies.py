"""smtp_rtls.testing.strategies keeps what each docstring promises.

Each test states one documented property of a strategy and checks it on
what the strategy draws, against the real core (parser, ServerConnection,
ClientConnection, the in-memory Pair).  That some draws have each feature
the docs list (a dot line, a look-alike, a UTF-8 path, ...) is checked with
``hypothesis.find``, so a strategy cannot silently lose one.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    Address,
    Bdat,
    ClientConnection,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
)
from smtp_rtls._commands import format_command, parse_command, verb_of
from smtp_rtls._framing import normalise_line_endings
from smtp_rtls.testing import END_OF_DATA_LOOKALIKES
from smtp_rtls.testing import strategies as sst
from smtp_rtls.testing.pair import Pair

SOME = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# generation only: a feature found is enough, no need to shrink it
FIND = settings(
    max_examples=3000,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def never_drawn(
    strategy: st.SearchStrategy[Any], **features: Callable[[Any], object]
) -> list[str]:
    """The documented ``features`` that ``strategy`` did not draw among its
    first few thousand draws (one pass of generation for all of them)."""
    seen: set[str] = set()

    def check(value: Any) -> bool:
        seen.update(name for name, has in features.items() if has(value))
        return len(seen) == len(features)

    with contextlib.suppress(NoSuchExample):
        find(strategy, check, settings=FIND)
    return sorted(set(features) - seen)


# -- addresses -----------------------------------------------------------------------------


@SOME
@given(st.booleans(), st.data())
def test_addresses_read_back_from_their_path_rfc5321_4_1_2(
    utf8: bool, data: st.DataObject
) -> None:
    address = data.draw(sst.addresses(utf8=utf8))
    assert Address.parse(address.path(), utf8=utf8) == address
    assert len(address.path().encode()) <= 256  # RFC 5321 §4.5.3.1.3
    if not utf8:
        assert address.is_ascii


def test_addresses_draw_every_documented_form() -> None:
    assert (
        never_drawn(
            sst.addresses(utf8=True),
            quoted_local_part=lambda a: a.path().startswith('<"'),
            ipv6_literal=lambda a: "@[IPv6:" in a.path(),
            ipv4_literal=lambda a: re.search(r"@\[[0-9.]+\]>$", a.path()),
            general_literal=lambda a: re.search(r"@\[(?!IPv6:)[^\]]*:", a.path()),
            utf8=lambda a: not a.is_ascii,  # SMTPUTF8 (RFC 6531 §3.3)
            ascii_dot_string=lambda a: a.is_ascii and not a.path().startswith('<"'),
        )
        == []
    )


@SOME
@given(sst.reverse_paths(), sst.forward_paths())
def test_paths_read_back_as_reverse_and_forward_paths_rfc5321_4_1_1(
    reverse: Address, forward: Address
) -> None:
    assert Address.parse(reverse.path(), null=True, postmaster=False) == reverse
    assert Address.parse(forward.path(), null=False, postmaster=True) == forward


# -- commands --------------------------------------------------------------------------------


@SOME
@given(sst.commands())
def test_commands_read_back_from_their_wire_line_rfc5321_4_1_1(event: Event) -> None:
    wire = format_command(event)
    assert wire.endswith(b"\r\n") and b"\r\n" not in wire[:-2]
    assert parse_command(wire[:-2].decode()) == event


def test_commands_draw_every_kind() -> None:
    kinds = [
        "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "AUTH", "RSET", "QUIT", "STARTTLS",
        "NOOP", "HELP", "VRFY", "EXPN",
    ]  # fmt: skip
    assert (
        never_drawn(
            sst.commands(),
            requiretls=lambda e: isinstance(e, MailFrom) and e.requiretls,
            typed_rcpt=lambda e: isinstance(e, RcptTo) and e.notify and e.orcpt,
            **{verb: (lambda e, v=verb: verb_of(e) == v) for verb in kinds},
        )
        == []
    )


@SOME
@given(sst.command_lines())
def test_valid_command_lines_parse_rfc5321_4_1_1(line: bytes) -> None:
    assert line.endswith(b"\r\n")
    parse_command(line[:-2].decode())


def _server_after_ehlo() -> tuple[ServerConnection, list[object]]:
    conn = ServerConnection("mx.example", ServerConfig(starttls=True))
    conn.send(Reply(220, "mx.example ESMTP"))
    conn.receive_data(b"EHLO client.example\r\n")
    assert isinstance(conn.next_event(), Ehlo)
    assert conn.next_event() is PAUSED
    conn.send(Reply(250, "hello"))
    return conn, []


@settings(max_examples=300, deadline=None)
@given(sst.command_lines(valid=False))
def test_malformed_command_lines_are_refused_never_handed_to_the_application_rfc5321_4_2(
    line: bytes,
) -> None:
    """The documented oracle: the server answers 4xx/5xx by itself (or
    closes), and never pauses for the application's decision."""
    conn, seen = _server_after_ehlo()
    conn.receive_data(line)
    try:
        for _ in range(10):
            event = conn.next_event()
            if event is NEED_DATA:
                break
            assert event is not PAUSED, (line, conn.pending)
            seen.append(event)
            if isinstance(event, ConnectionClosed):
                break
    except RemoteProtocolError as exc:
        seen.append(exc)
    assert seen and isinstance(seen[0], CommandRejected | ConnectionClosed | RemoteProtocolError)
    out = conn.data_to_send()
    assert out[:1] in (b"4", b"5"), (line, out)


def test_malformed_command_lines_draw_every_documented_kind() -> None:
    assert (
        never_drawn(
            sst.command_lines(valid=False),
            nul=lambda b: b"\x00" in b,
            bare_line_ending=lambda b: BARE.search(b[:-2]) is not None,
            too_long=lambda b: len(b) > 512,
            eight_bit=lambda b: not b.isascii(),
            unimplemented=lambda b: b.startswith(b"TURN"),
            empty=lambda b: b == b"\r\n",
            bad_parameter=lambda b: b.startswith(b"MAIL FROM:<a@b.example> "),
        )
        == []
    )


# -- replies ---------------------------------------------------------------------------------


@SOME
@given(sst.reply_lines())
def test_reply_lines_parse_back_rfc5321_4_2(wire: bytes) -> None:
    reply = Reply.parse(wire)
    assert reply.format() == wire
    assert all(len(line) + 2 <= 512 for line in wire.split(b"\r\n"))


def test_reply_lines_draw_multi_line_replies_with_enhanced_codes_rfc3463_2() -> None:
    assert (
        never_drawn(
            sst.replies(),
            multi_line=lambda r: len(r.lines) > 1,
            enhanced=lambda r: r.enhanced is not None and len(r.lines) > 1,
            utf8=lambda r: not r.text.isascii(),
        )
        == []
    )


@settings(max_examples=200, deadline=None)
@given(sst.reply_lines(valid=False))
def test_malformed_replies_raise_remote_protocol_error_rfc5321_4_2(wire: bytes) -> None:
    client = ClientConnection("client.example")
    client.receive_data(wire)
    with pytest.raises(RemoteProtocolError):
        client.next_event()


# -- content and splits ------------------------------------------------------------------------


@SOME
@given(st.binary(max_size=300), st.data())
def test_chunkings_join_back_to_the_data_and_never_hold_an_empty_read(
    data: bytes, draw: st.DataObject
) -> None:
    pieces = draw.draw(sst.chunkings(data))
    assert b"".join(pieces) == data
    assert all(pieces)
    assert len(draw.draw(sst.chunkings(data, max_pieces=3))) <= 3


def test_chunkings_draw_one_octet_per_read() -> None:
    data = b"EHLO a\r\n"
    assert (
        never_drawn(
            sst.chunkings(data),
            one_read=lambda p: p == [data],
            octet_by_octet=lambda p: len(p) == len(data),
            cut_inside_crlf=lambda p: any(x.endswith(b"\r") for x in p),
        )
        == []
    )


@SOME
@given(st.data())
def test_message_contents_keep_their_options(data: st.DataObject) -> None:
    clean = data.draw(sst.message_contents(bare_line_endings=False, eight_bit=False, nul=False))
    assert BARE.search(clean) is None and clean.isascii() and b"\x00" not in clean
    assert data.draw(sst.message_contents(final_crlf=True)).endswith(b"\r\n")
    assert not data.draw(sst.message_contents(final_crlf=False)).endswith(b"\r\n")


def test_message_contents_draw_every_documented_feature() -> None:
    assert (
        never_drawn(
            sst.message_contents(),
            end_marker_inside=lambda c: b"\r\n.\r\n" in c,
            two_dots=lambda c: b"\r\n..\r\n" in c,
            nul=lambda c: b"\x00" in c,
            eight_bit=lambda c: any(b >= 0x80 for b in c),
            bare=lambda c: BARE.search(c) is not None,
            no_final_crlf=lambda c: len(c) > 3 and not c.endswith(b"\r\n"),
            empty=lambda c: c == b"",
            **{
                name: (lambda c, v=variant: v + b"MAIL FROM:" in c)
                for name, variant in END_OF_DATA_LOOKALIKES.items()
            },
        )
        == []
    )


def _deliver_through_a_pair(
    content: bytes, pieces: list[bytes], *, bdat: bool, split: Callable[[bytes], list[bytes]]
) -> Pair:
    pair = Pair(to_server=split, to_client=split)
    pair.greet()
    pair(Ehlo("client.example"))
    pair(StartTLS())
    pair(Ehlo("client.example"))
    mail = MailFrom("alice@example.org", requiretls=True, body="8BITMIME")
    if bdat:
        chunk = [MessageData(content)] if content else []
        pair(mail, RcptTo("bob@example.net"), Bdat(len(content), last=True), *chunk)
    else:
        pair(mail, RcptTo("bob@example.net"), Data())
        pair(*(MessageData(p) for p in pieces), EndOfMessage())
    pair(Quit())
    return pair


@SOME
@given(sst.message_contents(), st.data())
def test_message_contents_round_trip_through_a_linked_pair_rfc5321_4_5_2(
    content: bytes, data: st.DataObject
) -> None:
    """Over DATA the server reads the content with its line ends made CRLF and
    a final CRLF (RFC 5321 §2.3.8, §4.1.1.4), dots unstuffed (§4.5.2), and
    nothing of a look-alike ends it; over BDAT octet for octet (RFC 3030 §2)."""

    def split(b: bytes) -> list[bytes]:
        return data.draw(sst.chunkings(b, max_pieces=40))

    pieces = data.draw(sst.chunkings(content, max_pieces=5))
    pair = _deliver_through_a_pair(content, pieces, bdat=False, split=split)
    expected = normalise_line_endings(content)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    [message] = pair.messages
    assert message.content == expected and message.tls
    assert message.envelope is not None and message.envelope.requiretls
    # the smuggled transaction never became a command
    assert [e for e in pair.server_events if isinstance(e, MailFrom)] == [
        MailFrom("alice@example.org", requiretls=True, body="8BITMIME")
    ]
    pair = _deliver_through_a_pair(content, pieces, bdat=True, split=split)
    assert [m.content for m in pair.messages] == [content]


# -- whole sessions -----------------------------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sst.client_sessions(), st.data())
def test_client_sessions_are_valid_whole_conversations_rfc5321_4_1_4(
    session: sst.ClientSession, data: st.DataObject
) -> None:
    """A server that accepts everything refuses nothing of a drawn session,
    every reply is positive, and every message arrives (through TLS when the
    session started it), whatever the splits."""

    def split(b: bytes) -> list[bytes]:
        return data.draw(sst.chunkings(b, max_pieces=20))

    pair = Pair(to_server=split, to_client=split)
    pair.greet()
    replies = pair.play(session.groups)
    assert not [e for e in pair.server_events if isinstance(e, CommandRejected)]
    assert all(r.code < 400 for r in replies)
    assert replies[-1].command == "QUIT" and pair.server_closed
    assert len(pair.messages) == len(session.messages)
    for received, sent in zip(pair.messages, session.messages, strict=True):
        assert received.tls is session.starttls
        if any(isinstance(e, Bdat) for e in session.events) and received.content == sent:
            continue
        expected = normalise_line_endings(sent)
        if expected and not expected.endswith(b"\r\n"):
            expected += b"\r\n"
        assert received.content in (sent, expected)


def _pipelined(session: sst.ClientSession) -> bool:
    return any(
        sum(not isinstance(e, MessageData | EndOfMessage) for e in group) > 1
        for group in session.groups
    )


def _ends_with_bdat_0_last(session: sst.ClientSession) -> bool:
    """A BDAT transaction ended by EndOfMessage (BDAT 0 LAST, RFC 3030 §2)."""
    command: Event | None = None
    for event in session.events:
        if isinstance(event, EndOfMessage) and isinstance(command, Bdat):
            return True
        if not isinstance(event, MessageData):
            command = event
    return False


def test_client_sessions_pipeline_where_rfc2920_allows_and_only_with_pipelining() -> None:
    assert (
        never_drawn(
            sst.client_sessions(),
            pipelined=_pipelined,
            starttls=lambda s: s.starttls,
            requiretls=lambda s: any(isinstance(e, MailFrom) and e.requiretls for e in s.events),
            bdat=lambda s: any(isinstance(e, Bdat) for e in s.events),
            bdat_0_last=_ends_with_bdat_0_last,
            end_of_data_then_mail=lambda s: any(
                isinstance(a, EndOfMessage) and isinstance(b, MailFrom)
                for g in s.groups
                for a, b in itertools.pairwise(g)
            ),
            several_messages=lambda s: len(s.messages) > 1,
        )
        == []
    )
    with pytest.raises(NoSuchExample):
        find(
            sst.client_sessions(pipelining=False),
            _pipelined,
            settings=settings(FIND, max_examples=100),
        )


@SOME
@given(sst.client_sessions(starttls=False))
def test_client_sessions_without_starttls_never_ask_for_requiretls_rfc8689_2(
    session: sst.ClientSession,
) -> None:
    assert not any(isinstance(e, MailFrom) and e.requiretls for e in session.events)
    assert not any(isinstance(e, StartTLS) for e in session.events)
    # STARTTLS, DATA and the other group enders always close their group
    for group in session.groups:
        for event in group[:-1]:
            assert not isinstance(event, Ehlo | StartTLS | Quit)
