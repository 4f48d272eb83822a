"""MAIL / RCPT parameters (RFC 5321 §4.1.2) and xtext (RFC 3461 §4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls import Address, LocalProtocolError, MailFrom, RcptTo, ServerConfig
from smtp_rtls._commands import CommandSyntaxError, format_command, parse_command
from smtp_rtls._params import (
    MAIL_PARAMETERS,
    RCPT_PARAMETERS,
    ParamError,
    Parameter,
    format_params,
    parse_params,
    unoffered,
    xtext_decode,
    xtext_encode,
)
from smtp_rtls._server_rules import check_mail, check_rcpt
from smtp_rtls.testing import strategies as sst


def _reject_reply(line: str) -> tuple[int, str]:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(line)
    reply = info.value.reply
    return reply.code, str(reply.enhanced)


# -- esmtp-param -----------------------------------------------------------------------


@given(sst.esmtp_params(utf8=True))
def test_params_round_trip(params: list[tuple[str, str | None]]) -> None:
    assert parse_params(format_params(params)) == params


def test_keywords_are_case_insensitive_values_untouched_rfc5321_2_4() -> None:
    assert parse_params("size=10 Body=8bitMIME x-Foo") == [
        ("SIZE", "10"),
        ("BODY", "8bitMIME"),
        ("X-FOO", None),
    ]


def test_typed_keywords_are_case_insensitive_in_commands_rfc5321_2_4() -> None:
    event = parse_command("MAIL FROM:<a@b.example> size=10 body=8bitmime requiretls smtpUTF8")
    assert event == MailFrom(
        Address("a", "b.example"), size=10, body="8BITMIME", requiretls=True, smtputf8=True
    )
    rcpt = parse_command("RCPT TO:<a@b.example> notify=success,delay orcpt=rfc822;a@b.example")
    assert rcpt == RcptTo(
        Address("a", "b.example"), notify=("SUCCESS", "DELAY"), orcpt=("rfc822", "a@b.example")
    )


@pytest.mark.parametrize("text", ["SIZE=1 SIZE=2", "SIZE=1 size=2", "X-A x-a=1"])
def test_duplicate_keywords_are_refused(text: str) -> None:
    with pytest.raises(ParamError):
        parse_params(text)


@pytest.mark.parametrize(
    "line",
    [
        "MAIL FROM:<a@b.example> SIZE=1 size=2",
        "MAIL FROM:<a@b.example> REQUIRETLS REQUIRETLS",
        "MAIL FROM:<a@b.example> X-A=1 X-A=1",
        "RCPT TO:<a@b.example> NOTIFY=NEVER notify=NEVER",
    ],
)
def test_duplicate_keywords_in_commands_get_501(line: str) -> None:
    assert _reject_reply(line) == (501, "5.5.4")


@pytest.mark.parametrize(
    "text",
    [
        "SIZE=1  BODY=7BIT",  # two spaces: an empty esmtp-param
        " SIZE=1",
        "SIZE=1 ",
        "-X=1",  # esmtp-keyword starts with ALPHA / DIGIT
        "X_Y=1",
        "X=",  # esmtp-value = 1*(...)
        "X=a=b",  # "=" is not in esmtp-value (%d33-60 / %d62-126)
        "X=\x7f",
        "X=\udcff",  # invalid UTF-8 as the server decodes it
    ],
)
def test_bad_parameter_syntax_rfc5321_4_1_2(text: str) -> None:
    with pytest.raises(ParamError):
        parse_params(text)


def test_utf8_values_are_esmtp_values_rfc6531_3_3() -> None:
    assert parse_params("X-NAME=jöran") == [("X-NAME", "jöran")]


def test_requiretls_takes_no_value_rfc8689_2_item_4() -> None:
    assert _reject_reply("MAIL FROM:<a@b.example> REQUIRETLS=yes") == (501, "5.5.4")
    assert _reject_reply("MAIL FROM:<a@b.example> requiretls=") == (501, "5.5.4")
    event = parse_command("MAIL FROM:<a@b.example> requiretls")
    assert isinstance(event, MailFrom) and event.requiretls


def test_smtputf8_takes_no_value_rfc6531_3_4() -> None:
    assert _reject_reply("MAIL FROM:<a@b.example> SMTPUTF8=yes") == (501, "5.5.4")


@pytest.mark.parametrize(
    "line",
    [
        "MAIL FROM:<a@b.example> SIZE",
        "MAIL FROM:<a@b.example> SIZE=-1",
        "MAIL FROM:<a@b.example> SIZE=1e6",
        "MAIL FROM:<a@b.example> SIZE=123456789012345678901",  # size-value = 1*20DIGIT
        "MAIL FROM:<a@b.example> BODY=8BIT",
        "MAIL FROM:<a@b.example> RET=ALL",
        "MAIL FROM:<a@b.example> ENVID",
        "RCPT TO:<a@b.example> NOTIFY",
        "RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS",
        "RCPT TO:<a@b.example> NOTIFY=SOMETIMES",
        "RCPT TO:<a@b.example> ORCPT=rfc822",
        "RCPT TO:<a@b.example> ORCPT=rfc822;a+zz",
    ],
)
def test_bad_typed_parameter_values_get_501(line: str) -> None:
    assert _reject_reply(line) == (501, "5.5.4")


def test_size_of_20_digits_is_accepted_rfc1870_4() -> None:
    event = parse_command("MAIL FROM:<> SIZE=99999999999999999999")
    assert isinstance(event, MailFrom) and event.size == 10**20 - 1
    with pytest.raises(LocalProtocolError):
        MailFrom(Address.null(), size=10**20)


def test_unknown_parameters_are_kept_in_extra() -> None:
    event = parse_command("MAIL FROM:<a@b.example> X-Trace=abc MT-PRIORITY=3 HOLDFOR")
    assert isinstance(event, MailFrom)
    assert event.extra == (("X-TRACE", "abc"), ("MT-PRIORITY", "3"), ("HOLDFOR", None))


def test_extra_keywords_compare_case_insensitively_rfc5321_2_4() -> None:
    sent = MailFrom(Address("a", "b.example"), extra=[("x-trace", "abc")])
    received = parse_command(format_command(sent)[:-2].decode())
    assert received == sent


# -- xtext (RFC 3461 §4) -----------------------------------------------------------------


@given(sst.xtext_strings())
def test_xtext_round_trip_rfc3461_4(text: str) -> None:
    encoded = xtext_encode(text)
    assert encoded.isascii()
    assert all(0x21 <= ord(c) <= 0x7E and c != "=" for c in encoded)
    assert xtext_decode(encoded) == text


def test_xtext_encodes_plus_equals_space_and_non_ascii_rfc3461_4() -> None:
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext_encode("é") == "+C3+A9"
    assert xtext_encode("!~") == "!~"
    assert xtext_decode("a+2Bb+3Dc+20d") == "a+b=c d"


@pytest.mark.parametrize(
    "text",
    [
        "a+2b",  # hexchar is "+" and two UPPER CASE hexadecimal digits
        "a+",
        "a+2",
        "a+G0",
        "a=b",  # "=" is no xchar
        "a b",  # nor is SP
        "é",
        "+FF",  # decodes to an octet that is not UTF-8
    ],
)
def test_bad_xtext_is_refused_rfc3461_4(text: str) -> None:
    with pytest.raises(ParamError):
        xtext_decode(text)


def test_envid_and_orcpt_are_xtext_decoded_rfc3461_4_2_4_4() -> None:
    mail = parse_command("MAIL FROM:<a@b.example> ENVID=QQ+2B314+3Dx")
    assert isinstance(mail, MailFrom) and mail.envid == "QQ+314=x"
    rcpt = parse_command("RCPT TO:<a@b.example> ORCPT=rfc822;us+2Bx@b.example")
    assert isinstance(rcpt, RcptTo) and rcpt.orcpt == ("rfc822", "us+x@b.example")
    assert b"ORCPT=rfc822;us+2Bx@b.example" in format_command(rcpt)
    assert b"ENVID=QQ+2B314+3Dx" in format_command(mail)


def test_envid_of_100_characters_is_accepted_101_refused_rfc3461_4_4() -> None:
    assert MailFrom(Address.null(), envid="e" * 100).envid == "e" * 100
    with pytest.raises(LocalProtocolError):
        MailFrom(Address.null(), envid="e" * 101)
    # the limit is on the xtext as sent: each "+" costs three characters
    assert MailFrom(Address.null(), envid="+" * 33 + "e").envid
    with pytest.raises(LocalProtocolError):
        MailFrom(Address.null(), envid="+" * 34)
    assert _reject_reply("MAIL FROM:<> ENVID=" + "e" * 101) == (501, "5.5.4")
    assert isinstance(parse_command("MAIL FROM:<> ENVID=" + "e" * 100), MailFrom)


def test_empty_envid_and_auth_cannot_be_written_rfc5321_4_1_2() -> None:
    # esmtp-value needs at least one character: "ENVID=" is no parameter
    with pytest.raises(LocalProtocolError):
        MailFrom(Address.null(), envid="")
    with pytest.raises(LocalProtocolError):
        MailFrom(Address.null(), auth="")


def test_auth_parameter_empty_identity_rfc4954_5() -> None:
    event = parse_command("MAIL FROM:<a@b.example> AUTH=<>")
    assert isinstance(event, MailFrom) and event.auth == "<>"
    assert format_command(event) == b"MAIL FROM:<a@b.example> AUTH=<>\r\n"
    event = parse_command("MAIL FROM:<a@b.example> AUTH=e+2Bf@c.example")
    assert isinstance(event, MailFrom) and event.auth == "e+f@c.example"


@given(st.lists(st.sampled_from(["SUCCESS", "FAILURE", "DELAY"]), min_size=1, unique=True))
def test_notify_list_round_trip_rfc3461_4_1(notify: list[str]) -> None:
    rcpt = RcptTo(Address("a", "b.example"), notify=notify)
    assert parse_command(format_command(rcpt)[:-2].decode()) == rcpt
    assert rcpt.notify == tuple(notify)


# -- the one table of typed parameters, used by both roles --------------------------

_SAMPLE_VALUE = {
    "requiretls": True,
    "size": 100,
    "smtputf8": True,
    "ret": "HDRS",
    "envid": "id-1",
    "auth": "<>",
    "notify": ("NEVER",),
    "orcpt": ("rfc822", "c@d.example"),
}


def _event_with(param: Parameter) -> MailFrom | RcptTo:
    value = param.values[0] if param.values else _SAMPLE_VALUE[param.field]
    if param in RCPT_PARAMETERS:
        return RcptTo("c@d.example", **{param.field: value})
    return MailFrom("a@b.example", **{param.field: value})


@pytest.mark.parametrize("param", MAIL_PARAMETERS + RCPT_PARAMETERS, ids=lambda p: p.rfc)
def test_both_roles_refuse_a_parameter_of_an_extension_not_offered_rfc5321_4_1_1_11(
    param: Parameter,
) -> None:
    event = _event_with(param)
    offered = {p.extension for p in MAIL_PARAMETERS + RCPT_PARAMETERS} | {"CHUNKING"}
    without = frozenset(offered - {param.extension})
    # the server: 555 5.5.4 when the EHLO reply in force did not offer it
    config = ServerConfig(extra_mail_parameters=(), max_message_size=0)
    if isinstance(event, MailFrom):
        assert check_mail(event, frozenset(offered), config) is None
        refusal = check_mail(event, without, config)
    else:
        assert check_rcpt(event, frozenset(offered), config, 0) is None
        refusal = check_rcpt(event, without, config, 0)
    assert refusal is not None and refusal.code == 555
    # the client: never sent to a server that did not offer it
    table = MAIL_PARAMETERS if isinstance(event, MailFrom) else RCPT_PARAMETERS
    assert unoffered(event, table, without) == param
    assert unoffered(event, table, offered) is None
    # and each typed keyword may not pose as an extra parameter
    with pytest.raises(LocalProtocolError):
        if isinstance(event, MailFrom):
            MailFrom("a@b.example", extra=[(param.keyword.lower(), "1")])
        else:
            RcptTo("c@d.example", extra=[(param.keyword.lower(), "1")])
