"""ServerConfig: what it lets an application offer.  Each test names the RFC
section it keeps.

The core decides alone when each extension it knows is offered (STARTTLS only
before TLS, RFC 3207 §4.2; REQUIRETLS only once TLS is active, RFC 8689 §2),
and which MAIL and RCPT parameters it accepts.  The ``extra_*`` options may add
extensions and parameters, never name the core's own, whatever their case.
"""

from __future__ import annotations

from typing import Any

import pytest

from smtp_rtls import (
    CommandRejected,
    Ehlo,
    LocalProtocolError,
    MailFrom,
    RcptTo,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
    TLSInfo,
)
from smtp_rtls._config import (
    MANAGED_EXTENSIONS,
    MANAGED_MAIL_PARAMETERS,
    MANAGED_RCPT_PARAMETERS,
)

TLS = TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128)

# The keywords ServerConfig.offered() computes itself.
CORE_KEYWORDS = (
    "STARTTLS",
    "REQUIRETLS",
    "PIPELINING",
    "SIZE",
    "8BITMIME",
    "SMTPUTF8",
    "CHUNKING",
    "BINARYMIME",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "AUTH",
)


def spellings(keyword: str) -> list[str]:
    """The keyword as given, lower-cased and in mixed case (RFC 5321 §2.4:
    EHLO keywords and parameters are case-insensitive)."""
    mixed = "".join(c.lower() if i % 2 else c for i, c in enumerate(keyword))
    return [keyword, keyword.lower(), mixed]


def ehlo_keywords(config: ServerConfig, *, tls: bool = False) -> list[str]:
    """The keywords of a real ServerConnection's EHLO reply, from its bytes."""
    conn = ServerConnection("mx.example.net", config)
    if tls:
        conn.start_tls(TLS)  # implicit TLS (RFC 8314 §3), before the greeting
    conn.send(Reply(220, "mx.example.net ESMTP"))
    conn.receive_data(b"EHLO client.example.org\r\n")
    assert conn.next_event() == Ehlo("client.example.org")
    wire = conn.send(Reply(250, "hi"))
    lines = wire.decode("ascii").split("\r\n")
    assert lines[-1] == "" and all(line[:3] == "250" for line in lines[:-1])
    # the first line is the server's name and greeting; each next one an
    # ehlo-line, keyword first (RFC 5321 §4.1.1.1)
    return [line[4:].split(" ")[0].upper() for line in lines[1:-1]]


# -- the configs an application may try -------------------------------------

# Every way the extra_* options could name REQUIRETLS or STARTTLS.  Each must
# be refused at construction; none may ever reach the wire.
SMUGGLING_ATTEMPTS: list[dict[str, Any]] = [
    {"extra_extensions": [("REQUIRETLS", ())]},
    {"extra_extensions": [("requiretls", ())]},
    {"extra_extensions": [("RequireTLS", ())], "requiretls": False},
    {"extra_extensions": [("X-ONE", ()), ("Requiretls", ())], "starttls": True},
    {"extra_extensions": [("STARTTLS", ())]},
    {"extra_extensions": [("starttls", ())], "starttls": True},
    {"extra_mail_parameters": {"REQUIRETLS"}},
    {"extra_mail_parameters": {"requiretls"}, "requiretls": False},
    {"extra_mail_parameters": ["XPAD", "RequireTLS"]},
]

# Configs that are fine: their EHLO replies show what the core offers.
LEGAL_CONFIGS: list[dict[str, Any]] = [
    {},
    {"starttls": True},
    {"starttls": True, "require_starttls": True},
    {"requiretls": False},
    {"extra_extensions": [("X-REQUIRETLS", ()), ("XFOO", ("REQUIRETLS",))]},
    {"extra_mail_parameters": {"XPAD"}, "extra_rcpt_parameters": {"XPAD"}},
]


# -- RFC 8689 §2: REQUIRETLS only on a TLS session --------------------------


@pytest.mark.parametrize("keyword", spellings("REQUIRETLS"))
def test_rfc8689_s2_extra_extensions_cannot_offer_requiretls(keyword: str) -> None:
    # RFC 8689 §2: REQUIRETLS is offered only after STARTTLS; an extra line
    # would be offered on plaintext too.
    with pytest.raises(ValueError, match=r"REQUIRETLS.*requiretls=True"):
        ServerConfig(extra_extensions=[(keyword, ())])
    with pytest.raises(ValueError, match="REQUIRETLS"):
        ServerConfig(starttls=True, extra_extensions=[("X-OTHER", ("1",)), (keyword, ())])


@pytest.mark.parametrize("keyword", spellings("REQUIRETLS"))
def test_rfc8689_s2_extra_mail_parameters_cannot_accept_requiretls(keyword: str) -> None:
    # RFC 8689 §2: "This option MUST only be specified in the context of an
    # SMTP session meeting the security requirements of REQUIRETLS"; the
    # core alone decides when the parameter is accepted.
    with pytest.raises(ValueError, match=r"extra_mail_parameters.*REQUIRETLS.*requiretls"):
        ServerConfig(extra_mail_parameters={keyword})


@pytest.mark.parametrize("attempt", SMUGGLING_ATTEMPTS)
def test_rfc8689_s2_rfc3207_s4_2_every_smuggling_attempt_is_refused(
    attempt: dict[str, Any],
) -> None:
    # RFC 8689 §2, RFC 3207 §4.2: a config that names REQUIRETLS or STARTTLS
    # in an extra_* option is refused before any session exists.
    try:
        config = ServerConfig(**attempt)
    except ValueError:
        config = None
    assert config is None, f"{attempt} was accepted"


@pytest.mark.parametrize("kwargs", LEGAL_CONFIGS + SMUGGLING_ATTEMPTS)
def test_rfc8689_s2_plaintext_ehlo_reply_bytes_never_list_requiretls(
    kwargs: dict[str, Any],
) -> None:
    # RFC 8689 §2: the bytes a real ServerConnection writes for a plaintext
    # EHLO have no REQUIRETLS line, for every config that can be built.
    try:
        config = ServerConfig(**kwargs)
    except ValueError:
        return  # refused at construction: it never reaches a session
    assert "REQUIRETLS" not in ehlo_keywords(config, tls=False)


@pytest.mark.parametrize("kwargs", LEGAL_CONFIGS + SMUGGLING_ATTEMPTS)
def test_rfc8689_s2_plaintext_mail_requiretls_is_555(kwargs: dict[str, Any]) -> None:
    # RFC 8689 §2 and RFC 5321 §4.1.1.11: on a plaintext session the
    # REQUIRETLS parameter was not offered, so it is refused with 555 5.5.4.
    try:
        config = ServerConfig(**kwargs)
    except ValueError:
        return
    if config.require_starttls:
        return  # MAIL is refused before TLS anyway (530, RFC 3207 §4)
    conn = ServerConnection("mx.example.net", config)
    conn.send(Reply(220, "mx.example.net ESMTP"))
    conn.receive_data(b"EHLO client.example.org\r\n")
    conn.next_event()
    conn.send(Reply(250, "hi"))
    conn.receive_data(b"MAIL FROM:<a@example.org> REQUIRETLS\r\n")
    event = conn.next_event()
    assert isinstance(event, CommandRejected)
    assert event.reply.code == 555 and str(event.reply.enhanced) == "5.5.4"


def test_rfc8689_s2_requiretls_is_offered_once_tls_is_active() -> None:
    # RFC 8689 §2: "the SMTP server MUST advertise in the subsequent EHLO
    # response that it supports REQUIRETLS": the fix takes nothing away.
    assert "REQUIRETLS" in ehlo_keywords(ServerConfig(), tls=True)
    assert "REQUIRETLS" not in ehlo_keywords(ServerConfig(), tls=False)
    assert "REQUIRETLS" not in ehlo_keywords(ServerConfig(requiretls=False), tls=True)


# -- RFC 3207 §4.2: STARTTLS never after TLS --------------------------------


@pytest.mark.parametrize("keyword", spellings("STARTTLS"))
def test_rfc3207_s4_2_extra_extensions_cannot_offer_starttls(keyword: str) -> None:
    # RFC 3207 §4.2: "A server MUST NOT return the STARTTLS extension in
    # response to an EHLO command received after a TLS handshake has
    # completed"; an extra line would be offered after TLS too.
    with pytest.raises(ValueError, match=r"STARTTLS.*starttls=True"):
        ServerConfig(extra_extensions=[(keyword, ())])
    with pytest.raises(ValueError, match="STARTTLS"):
        ServerConfig(starttls=True, extra_extensions=[(keyword, ())])


@pytest.mark.parametrize("kwargs", LEGAL_CONFIGS + SMUGGLING_ATTEMPTS)
def test_rfc3207_s4_2_ehlo_after_tls_never_offers_starttls(kwargs: dict[str, Any]) -> None:
    try:
        config = ServerConfig(**kwargs)
    except ValueError:
        return
    assert "STARTTLS" not in ehlo_keywords(config, tls=True)
    assert ("STARTTLS" in ehlo_keywords(config, tls=False)) == config.starttls


def test_rfc3207_s4_2_no_starttls_after_the_starttls_handshake() -> None:
    # The same through STARTTLS itself rather than implicit TLS.
    conn = ServerConnection("mx.example.net", ServerConfig(starttls=True))
    conn.send(Reply(220, "mx.example.net ESMTP"))
    conn.receive_data(b"EHLO client.example.org\r\n")
    conn.next_event()
    before = conn.send(Reply(250, "hi"))
    assert b"250-STARTTLS\r\n" in before or b"250 STARTTLS\r\n" in before
    conn.receive_data(b"STARTTLS\r\n")
    assert conn.next_event() == StartTLS()
    conn.send(Reply(220, "Ready to start TLS", "2.0.0"))
    conn.start_tls(TLS)
    conn.receive_data(b"EHLO client.example.org\r\n")
    conn.next_event()
    after = conn.send(Reply(250, "hi"))
    assert b"STARTTLS" not in after
    assert b"REQUIRETLS" in after


# -- every keyword the core computes itself ---------------------------------


def test_core_keywords_are_exactly_what_offered_computes() -> None:
    # The refusal list and offered() must not drift apart: everything
    # offered() can produce, with or without TLS, is refused as an extra.
    everything = ServerConfig(
        starttls=True, binarymime=True, auth_mechanisms=("PLAIN",), auth_requires_tls=False
    )
    offered = {k for tls in (False, True) for k, _ in everything.offered(tls=tls)}
    assert offered == set(CORE_KEYWORDS) == set(MANAGED_EXTENSIONS)


@pytest.mark.parametrize("keyword", CORE_KEYWORDS)
def test_extra_extensions_refuse_every_core_keyword_in_any_case(keyword: str) -> None:
    # RFC 5321 §2.4: keywords are case-insensitive, so "size" is SIZE.
    for spelling in spellings(keyword):
        with pytest.raises(ValueError) as info:
            ServerConfig(extra_extensions=[(spelling, ())])
        message = str(info.value)
        assert "extra_extensions" in message and repr(spelling) in message
        assert MANAGED_EXTENSIONS[keyword] in message


@pytest.mark.parametrize("keyword", sorted(MANAGED_MAIL_PARAMETERS))
def test_rfc5321_s4_1_2_extra_mail_parameters_refuse_typed_fields(keyword: str) -> None:
    # The typed MailFrom fields (RFC 1870, 6152, 6531, 8689, 3461, 4954)
    # are never "extra": the core reads and checks them itself.
    with pytest.raises(LocalProtocolError, match="typed field"):
        MailFrom("a@example.org", extra=[(keyword, None)])
    for spelling in spellings(keyword):
        with pytest.raises(ValueError, match=f"extra_mail_parameters.*{keyword}"):
            ServerConfig(extra_mail_parameters=[spelling])


@pytest.mark.parametrize("keyword", sorted(MANAGED_RCPT_PARAMETERS))
def test_rfc3461_s4_extra_rcpt_parameters_refuse_notify_and_orcpt(keyword: str) -> None:
    with pytest.raises(LocalProtocolError, match="typed field"):
        RcptTo("b@example.org", extra=[(keyword, None)])
    for spelling in spellings(keyword):
        with pytest.raises(ValueError, match=f"extra_rcpt_parameters.*{keyword}.*dsn"):
            ServerConfig(extra_rcpt_parameters={spelling})


def test_extra_extensions_are_offered_with_and_without_tls() -> None:
    config = ServerConfig(extra_extensions=[("X-EXAMPLE", ("a",)), ("xother", ())])
    for tls in (False, True):
        keywords = ehlo_keywords(config, tls=tls)
        assert keywords[-2:] == ["X-EXAMPLE", "XOTHER"]
