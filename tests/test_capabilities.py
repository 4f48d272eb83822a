"""Capabilities: EHLO replies (RFC 5321 §4.1.1.1) read and written."""

from __future__ import annotations

import pytest
from hypothesis import given

from smtp_rtls import Capabilities, LocalProtocolError, Reply
from smtp_rtls.testing import strategies as sst

POSTFIX_EHLO = (
    b"250-mx.example.org\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 10240000\r\n"
    b"250-ETRN\r\n"
    b"250-AUTH PLAIN login\r\n"
    b"250-auth=login plain\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250-8BITMIME\r\n"
    b"250-DSN\r\n"
    b"250-SMTPUTF8\r\n"
    b"250-CHUNKING\r\n"
    b"250 REQUIRETLS\r\n"
)


@given(sst.capabilities())
def test_capabilities_round_trip(caps: Capabilities) -> None:
    assert Capabilities.from_reply(caps.to_reply()) == caps
    assert Capabilities.from_reply(Reply.parse(caps.to_reply().format())) == caps


def test_a_real_ehlo_reply_rfc5321_4_1_1_1() -> None:
    caps = Capabilities.from_reply(Reply.parse(POSTFIX_EHLO))
    assert caps.domain == "mx.example.org"
    assert caps.greeting == ""
    assert list(caps)[:3] == ["PIPELINING", "SIZE", "ETRN"]
    assert caps.size == 10240000
    assert caps.auth_mechanisms == frozenset({"PLAIN", "LOGIN"})
    assert "REQUIRETLS" in caps and "STARTTLS" not in caps


def test_keywords_are_case_insensitive_rfc5321_2_4() -> None:
    caps = Capabilities.from_reply(
        Reply.parse(b"250-mx Hi there\r\n250-size 100\r\n250 StartTLS\r\n")
    )
    assert caps.greeting == "Hi there"
    assert "SIZE" in caps and "size" in caps and "STARTTLS" in caps
    assert caps.params("Size") == ("100",)
    assert caps.size == 100
    # the spelling as sent is kept
    assert caps.entries == (("size", ("100",)), ("StartTLS", ()))


def test_unknown_keywords_are_kept_verbatim() -> None:
    caps = Capabilities.from_reply(Reply.parse(b"250-mx\r\n250 X-Odd-Ext a=1 B\r\n"))
    assert caps.entries == (("X-Odd-Ext", ("a=1", "B")),)
    assert caps.to_reply().format() == b"250-mx\r\n250 X-Odd-Ext a=1 B\r\n"


@pytest.mark.parametrize(
    ("line", "size"),
    [(b"SIZE", 0), (b"SIZE 0", 0), (b"SIZE 52428800", 52428800), (b"SIZE x", None)],
)
def test_size_value_rfc1870_4(line: bytes, size: int | None) -> None:
    caps = Capabilities.from_reply(Reply.parse(b"250-mx\r\n250 " + line + b"\r\n"))
    assert caps.size == size


def test_size_absent_is_none() -> None:
    assert Capabilities("mx").size is None


def test_auth_mechanisms_rfc4954_3() -> None:
    caps = Capabilities("mx", "", [("AUTH", ("plain", "SCRAM-SHA-256"))])
    assert caps.auth_mechanisms == frozenset({"PLAIN", "SCRAM-SHA-256"})
    assert Capabilities("mx").auth_mechanisms == frozenset()


def test_only_positive_replies_carry_capabilities() -> None:
    with pytest.raises(LocalProtocolError):
        Capabilities.from_reply(Reply(550, "go away"))


@pytest.mark.parametrize(
    "args",
    [
        ("",),
        ("m x",),
        ("mx", "a\r\nb"),
        ("mx", "hi\n250-STARTTLS"),  # a greeting may not forge a keyword line
        ("mx", "", [("SIZE", ("1 2",))]),
        ("mx", "", [("SIZE\r\n", ())]),
        ("mx", "", ["STARTTLS\r\n"]),
    ],
)
def test_control_characters_and_spaces_are_refused(args: tuple[object, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        Capabilities(*args)  # type: ignore[arg-type]
