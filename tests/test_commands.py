"""Command lines <-> command events (RFC 5321 §4.1.1, §4.1.2): the round trip
``parse_command(format_command(event)) == event`` for every command event."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls import (
    Address,
    Auth,
    AuthResponse,
    Bdat,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Noop,
    RcptTo,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
)
from smtp_rtls._commands import CommandSyntaxError, format_command, parse_command
from smtp_rtls.testing import strategies as sst


def _line(event: Event, *, lmtp: bool = False) -> str:
    wire = format_command(event, lmtp=lmtp)
    assert wire.endswith(b"\r\n")
    assert b"\r" not in wire[:-2] and b"\n" not in wire[:-2]
    return wire[:-2].decode("utf-8")


@given(sst.command_events())
def test_command_round_trip(event: Event) -> None:
    assert parse_command(_line(event)) == event


@given(sst.mail_froms())
def test_mail_from_round_trip_with_typed_parameters(event: MailFrom) -> None:
    assert parse_command(_line(event)) == event


@given(sst.rcpt_tos(utf8=True))
def test_rcpt_to_round_trip_in_an_smtputf8_transaction_rfc6531_3_4(event: RcptTo) -> None:
    assert parse_command(_line(event), utf8=True) == event


@given(sst.bdats())
def test_bdat_round_trip_rfc3030_2(event: Bdat) -> None:
    assert parse_command(_line(event)) == event


def test_ehlo_is_written_as_lhlo_in_lmtp_rfc2033_4_1() -> None:
    assert format_command(Ehlo("client.example"), lmtp=True) == b"LHLO client.example\r\n"
    assert parse_command("LHLO client.example") == Ehlo("client.example")


def test_auth_response_is_its_bare_line_rfc4954_4() -> None:
    assert format_command(AuthResponse("AGEAYg==")) == b"AGEAYg==\r\n"
    assert format_command(AuthResponse("*")) == b"*\r\n"


@pytest.mark.parametrize(
    "event",
    [MessageData(b"x"), EndOfMessage(), ConnectionClosed(), CommandRejected("", Reply(500))],
)
def test_non_commands_cannot_be_formatted(event: Event) -> None:
    with pytest.raises(LocalProtocolError):
        format_command(event)


def test_verbs_are_case_insensitive_rfc5321_2_4() -> None:
    assert parse_command("mail from:<a@b.example>") == MailFrom(Address("a", "b.example"))
    assert parse_command("Rcpt To:<a@b.example>") == RcptTo(Address("a", "b.example"))
    assert parse_command("starttls") == StartTLS()
    assert parse_command("bdat 10 last") == Bdat(10, last=True)
    assert parse_command("data") == Data()


def _reply_to(line: str) -> tuple[int, str]:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(line)
    return info.value.reply.code, str(info.value.reply.enhanced)


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("XYZZY", (500, "5.5.2")),  # RFC 5321 §4.2.4: unrecognised
        ("", (500, "5.5.2")),
        ("TURN", (502, "5.5.1")),  # RFC 5321 §4.2.4: recognised, not implemented
        ("ETRN example.com", (502, "5.5.1")),
        ("EHLO", (501, "5.5.4")),
        ("HELO", (501, "5.5.4")),
        ("EHLO two words", (501, "5.5.4")),
        ("MAIL", (501, "5.5.4")),
        ("MAIL TO:<a@b.example>", (501, "5.5.4")),
        ("MAIL FROM:a@b.example", (501, "5.5.4")),
        ("MAIL FROM:<a@b.example>x", (501, "5.5.4")),
        ("RCPT FROM:<a@b.example>", (501, "5.5.4")),
        ("DATA now", (501, "5.5.4")),
        ("RSET all", (501, "5.5.4")),
        ("QUIT now", (501, "5.5.4")),
        ("STARTTLS now", (501, "5.5.4")),  # RFC 3207 §4: no parameters allowed
        ("BDAT", (501, "5.5.4")),
        ("BDAT x", (501, "5.5.4")),
        ("BDAT -1", (501, "5.5.4")),
        ("BDAT 1 FIRST", (501, "5.5.4")),
        ("BDAT 1234567890123456789", (501, "5.5.4")),
        ("VRFY", (501, "5.5.4")),
        ("EXPN", (501, "5.5.4")),
        ("AUTH", (501, "5.5.4")),
        ("AUTH PLAIN a b", (501, "5.5.4")),
        ("AUTH PLAIN !!", (501, "5.5.4")),
        ("NOOP \udcff", (500, "5.5.2")),  # commands other than MAIL/RCPT are ASCII
        ("EHLO bücher.example", (500, "5.5.2")),
    ],
)
def test_bad_commands_get_the_reply_of_their_error_rfc5321_4_2_4(
    line: str, code: tuple[int, str]
) -> None:
    assert _reply_to(line) == code


def test_space_after_the_colon_is_tolerated() -> None:
    # RFC 5321 §4.1.1.2 has no space, but widely deployed clients send one
    assert parse_command("MAIL FROM: <a@b.example>") == MailFrom(Address("a", "b.example"))


def test_noop_and_help_keep_their_argument_rfc5321_4_1_1_9() -> None:
    assert parse_command("NOOP") == Noop()
    assert parse_command("NOOP  spaced out ") == Noop(" spaced out ")
    assert format_command(Noop(" spaced out ")) == b"NOOP  spaced out \r\n"


def test_mail_with_every_typed_parameter_rfc8689_2_rfc3461_4() -> None:
    line = (
        "MAIL FROM:<jöran@bücher.example> SIZE=1000 BODY=8BITMIME SMTPUTF8 REQUIRETLS"
        " RET=HDRS ENVID=QQ+2B1 AUTH=<> X-EXT=1"
    )
    event = parse_command(line)
    assert event == MailFrom(
        Address("jöran", "bücher.example"),
        size=1000,
        body="8BITMIME",
        smtputf8=True,
        requiretls=True,
        ret="HDRS",
        envid="QQ+1",
        auth="<>",
        extra=[("X-EXT", "1")],
    )
    assert _line(event) == line


@given(st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()) | st.just("*"))
def test_auth_response_round_trip_through_a_server_rfc4954_4(data: str) -> None:
    # a SASL response line is only a command inside an AUTH exchange, so it
    # is read back by a server connection in that state
    # (ServerConfig's tuple converter loses the item type for mypy)
    config = ServerConfig(auth_mechanisms=("PLAIN",), auth_requires_tls=False)  # type: ignore[arg-type]
    conn = ServerConnection("mx.example", config)
    conn.send(Reply(220, "ready"))
    conn.receive_data(b"EHLO client.example\r\n")
    assert conn.next_event() == Ehlo("client.example")
    conn.send(Reply(250, "hello"))
    conn.receive_data(b"AUTH PLAIN\r\n")
    assert conn.next_event() == Auth("PLAIN")
    conn.send(Reply(334, ""))
    conn.receive_data(format_command(AuthResponse(data)))
    event = conn.next_event()
    if data == "*":
        # RFC 4954 §4: "*" cancels the exchange; the server answers 501 itself
        assert isinstance(event, CommandRejected) and event.reply.code == 501
    else:
        assert event == AuthResponse(data)


_VERBS = st.sampled_from(["MAIL FROM:", "RCPT TO:", "EHLO ", "BDAT ", "AUTH ", "VRFY ", ""])


@given(
    st.one_of(
        _VERBS.flatmap(lambda v: st.text(max_size=80).map(v.__add__)),
        st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape")),
    ),
    st.booleans(),
)
def test_any_line_parses_or_raises_command_syntax_error(line: str, utf8: bool) -> None:
    # the server relies on this: a line is an event or a reply, never a crash
    try:
        event = parse_command(line, utf8=utf8)
    except CommandSyntaxError as exc:
        assert exc.reply.code in (500, 501, 502, 550, 553)
    else:
        assert isinstance(event, Event)
