"""Reply and EnhancedStatus: RFC 5321 §4.2 / §4.2.1 and RFC 3463 §2."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls import EnhancedStatus, LocalProtocolError, RemoteProtocolError, Reply
from smtp_rtls.testing import strategies as sst

# -- round trip ----------------------------------------------------------------------


@given(sst.replies())
def test_reply_round_trip(reply: Reply) -> None:
    wire = reply.format()
    assert Reply.parse(wire) == reply
    # every line is CRLF-terminated and carries the same code
    lines = wire.split(b"\r\n")
    assert lines[-1] == b""
    assert all(line[:3] == str(reply.code).encode() for line in lines[:-1])


@given(sst.enhanced_statuses())
def test_enhanced_status_round_trip(status: EnhancedStatus) -> None:
    assert EnhancedStatus.parse(str(status)) == status


# -- format ------------------------------------------------------------------------------


def test_multiline_format_rfc5321_4_2_1() -> None:
    reply = Reply(250, ["first", "second", "last"], "2.1.0")
    assert reply.format() == b"250-2.1.0 first\r\n250-2.1.0 second\r\n250 2.1.0 last\r\n"


def test_newline_in_text_makes_lines() -> None:
    assert Reply(421, "a\nb").lines == ("a", "b")
    assert Reply(421, "a\nb").format() == b"421-a\r\n421 b\r\n"


def test_empty_text_is_code_alone() -> None:
    assert Reply(250).format() == b"250\r\n"
    assert Reply.parse(b"250\r\n") == Reply(250, "")


# -- parse rules (RFC 5321 §4.2.1) -----------------------------------------------------


def test_multiline_parse_rfc5321_4_2_1() -> None:
    reply = Reply.parse(b"250-mx.example Hello\r\n250-SIZE 100\r\n250 PIPELINING\r\n")
    assert reply == Reply(250, ["mx.example Hello", "SIZE 100", "PIPELINING"])


def test_code_must_not_change_inside_a_reply_rfc5321_4_2_1() -> None:
    with pytest.raises(RemoteProtocolError):
        Reply.parse(b"250-first\r\n251 last\r\n")


@pytest.mark.parametrize(
    "wire",
    [
        b"250 first\r\n250 last\r\n",  # a last line that is not last
        b"250-first\r\n250-last\r\n",  # no last line
        b"250 first\r\n250-last\r\n",
    ],
)
def test_continuation_markers_rfc5321_4_2_1(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Reply.parse(wire)


@pytest.mark.parametrize(
    "wire",
    [
        b"250 OK",  # no CRLF
        b"25 OK\r\n",
        b"2500 OK\r\n",
        b"250xOK\r\n",
        b"160 OK\r\n",  # Reply-code = %x32-35 %x30-35 %x30-39
        b"260 OK\r\n",
        b"600 OK\r\n",
        b"250 O\x00K\r\n",
        b"250 O\rK\r\n",
        b"250 OK\n\r\n",
    ],
)
def test_bad_reply_lines_rfc5321_4_2(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Reply.parse(wire)


def test_reply_line_of_512_octets_accepted_513_refused_rfc5321_4_5_3_1_5() -> None:
    assert len(Reply(250, "x" * 506).format()) == 512
    with pytest.raises(LocalProtocolError):
        Reply(250, "x" * 507)
    # the enhanced status counts too
    assert len(Reply(250, "x" * 500, "2.0.0").format()) == 512
    with pytest.raises(LocalProtocolError):
        Reply(250, "x" * 501, "2.0.0")
    # and so do the octets of UTF-8 text
    with pytest.raises(LocalProtocolError):
        Reply(250, "é" * 254)
    assert Reply.parse(b"250 " + b"x" * 506 + b"\r\n").text == "x" * 506
    with pytest.raises(RemoteProtocolError):
        Reply.parse(b"250 " + b"x" * 507 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        Reply.parse(b"250-ok\r\n250 " + b"x" * 507 + b"\r\n")


def test_tab_is_allowed_in_reply_text_rfc5321_4_2() -> None:
    # textstring = 1*(%d09 / %d32-126)
    reply = Reply(250, "a\tb")
    assert Reply.parse(reply.format()) == reply


def test_non_utf8_reply_text_survives_a_round_trip() -> None:
    reply = Reply.parse(b"550 caf\xe9\r\n")
    assert reply.format() == b"550 caf\xe9\r\n"


def test_lone_surrogate_in_text_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        Reply(250, "\ud800")


# -- enhanced status (RFC 3463 §2) -----------------------------------------------------


def test_enhanced_status_is_read_from_every_line_rfc2034_4() -> None:
    reply = Reply.parse(b"550-5.7.1 first\r\n550 5.7.1 second\r\n")
    assert reply == Reply(550, ["first", "second"], "5.7.1")
    assert reply.enhanced == EnhancedStatus(5, 7, 1)


def test_enhanced_status_class_must_match_the_code_rfc3463_2() -> None:
    with pytest.raises(LocalProtocolError):
        Reply(250, "OK", "5.0.0")
    with pytest.raises(LocalProtocolError):
        Reply(550, "no", "2.0.0")
    with pytest.raises(LocalProtocolError):
        Reply(354, "go ahead", "2.0.0")  # there is no class 3
    # on the wire a status of another class is just text
    reply = Reply.parse(b"250 5.1.1 OK\r\n")
    assert reply.enhanced is None and reply.text == "5.1.1 OK"


def test_enhanced_status_only_when_every_line_agrees() -> None:
    reply = Reply.parse(b"250-2.0.0 a\r\n250 2.1.0 b\r\n")
    assert reply.enhanced is None
    assert reply.lines == ("2.0.0 a", "2.1.0 b")
    reply = Reply.parse(b"250-2.0.0 a\r\n250 b\r\n")
    assert reply.enhanced is None


@pytest.mark.parametrize("text", ["3.0.0", "1.0.0", "2.0", "2.1000.0", "2.0.1000", "2..0", "x"])
def test_bad_enhanced_status_rfc3463_2(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        EnhancedStatus.parse(text)


@pytest.mark.parametrize("args", [(3, 0, 0), (2, -1, 0), (2, 0, 1000), (5, True, 0)])
def test_enhanced_status_fields_in_range_rfc3463_2(args: tuple[int, int, int]) -> None:
    with pytest.raises(LocalProtocolError):
        EnhancedStatus(*args)


def test_enhanced_status_of_rfc8689() -> None:
    assert str(Reply(550, "REQUIRETLS not supported", "5.7.30").enhanced) == "5.7.30"
    assert EnhancedStatus.parse("5.7.10") == EnhancedStatus(5, 7, 10)


@pytest.mark.parametrize("code", [0, 99, 199, 600, 260, True, 250.0, "250"])
def test_bad_reply_codes_rfc5321_4_2(code: object) -> None:
    with pytest.raises(LocalProtocolError):
        Reply(code)  # type: ignore[arg-type]


@given(st.binary(max_size=600))
def test_any_bytes_parse_as_a_reply_or_raise_remote_protocol_error(data: bytes) -> None:
    # what a hostile server sends can only be a Reply or a RemoteProtocolError
    try:
        reply = Reply.parse(data)
    except RemoteProtocolError:
        return
    assert Reply.parse(reply.format()) == reply
