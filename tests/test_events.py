"""Events validate on construction: an ill-formed command cannot exist.

The central rule: a CR, LF, NUL or any other control character in any text
field of any event (or of a Reply) raises LocalProtocolError, so nothing an
application passes along (a name from a database, a header value) can end a
command or reply line early and forge the next one on the wire.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls import (
    Address,
    Auth,
    AuthResponse,
    Bdat,
    Capabilities,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Envelope,
    Expn,
    Helo,
    Help,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    StartTLS,
    Vrfy,
    _events,
)

# C0 controls and DEL.  HT is allowed in reply text only (RFC 5321 §4.2
# textstring = 1*(%d09 / %d32-126)); in command fields it is refused too.
CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f"]
REPLY_CONTROLS = [c for c in CONTROLS if c != "\t"]

A = Address("a", "b.example")

# Every text field of every class, as a builder that puts a (valid) value in
# that one field.  The completeness test below checks that no field is missing.
FIELDS: dict[tuple[str, str], tuple[Callable[[str], object], str]] = {
    ("Address", "local_part"): (lambda v: Address(v, "b.example"), "joe"),
    ("Address", "domain"): (lambda v: Address("joe", v), "b.example"),
    ("Ehlo", "domain"): (Ehlo, "client.example"),
    ("Helo", "domain"): (Helo, "client.example"),
    ("Auth", "mechanism"): (Auth, "PLAIN"),
    ("Auth", "initial_response"): (lambda v: Auth("PLAIN", v), "AGEAYg=="),
    ("AuthResponse", "data"): (AuthResponse, "AGEAYg=="),
    ("MailFrom", "reverse_path"): (MailFrom, "<a@b.example>"),
    ("MailFrom", "body"): (lambda v: MailFrom(A, body=v), "8BITMIME"),
    ("MailFrom", "ret"): (lambda v: MailFrom(A, ret=v), "HDRS"),
    ("MailFrom", "envid"): (lambda v: MailFrom(A, envid=v), "QQ314159"),
    ("MailFrom", "auth"): (lambda v: MailFrom(A, auth=v), "joe@b.example"),
    ("MailFrom", "extra.keyword"): (lambda v: MailFrom(A, extra=[(v, "1")]), "X-A"),
    ("MailFrom", "extra.value"): (lambda v: MailFrom(A, extra=[("X-A", v)]), "1"),
    ("RcptTo", "forward_path"): (RcptTo, "<a@b.example>"),
    ("RcptTo", "notify"): (lambda v: RcptTo(A, notify=[v]), "SUCCESS"),
    ("RcptTo", "orcpt.addr_type"): (lambda v: RcptTo(A, orcpt=(v, "a@b")), "rfc822"),
    ("RcptTo", "orcpt.address"): (lambda v: RcptTo(A, orcpt=("rfc822", v)), "a@b"),
    ("RcptTo", "extra.keyword"): (lambda v: RcptTo(A, extra=[(v, "1")]), "X-A"),
    ("RcptTo", "extra.value"): (lambda v: RcptTo(A, extra=[("X-A", v)]), "1"),
    ("Noop", "text"): (Noop, "hello there"),
    ("Vrfy", "text"): (Vrfy, "joe"),
    ("Expn", "text"): (Expn, "staff"),
    ("Help", "topic"): (Help, "MAIL"),
    ("CommandRejected", "command"): (lambda v: CommandRejected(v, Reply(500)), "XYZZY"),
}
REPLY_FIELDS: dict[tuple[str, str], tuple[Callable[[str], object], str]] = {
    ("Reply", "lines"): (lambda v: Reply(250, [v, "second"]), "hello there"),
    ("Reply", "lines.last"): (lambda v: Reply(250, ["first", v], "2.0.0"), "hello there"),
    ("Reply", "command"): (lambda v: Reply(250, command=v), "MAIL"),
    ("Capabilities", "domain"): (Capabilities, "mx.example"),
    ("Capabilities", "greeting"): (lambda v: Capabilities("mx", v), "Hello there"),
    ("Capabilities", "entries.keyword"): (lambda v: Capabilities("mx", "", [(v, ())]), "SIZE"),
    ("Capabilities", "entries.param"): (lambda v: Capabilities("mx", "", [("X", (v,))]), "1"),
}
# Fields that hold no text: their types are checked instead.
NOT_TEXT = {
    ("MailFrom", "size"),
    ("MailFrom", "smtputf8"),
    ("MailFrom", "requiretls"),
    ("Vrfy", "smtputf8"),
    ("Expn", "smtputf8"),
    ("Bdat", "size"),
    ("Bdat", "last"),
    ("MessageData", "data"),  # content: any octets, framed by DATA / BDAT
    ("EndOfMessage", "envelope"),
    ("CommandRejected", "reply"),
}


def test_every_text_field_of_every_event_is_in_the_table() -> None:
    covered = {(cls, name.partition(".")[0]) for cls, name in FIELDS}
    missing = []
    for name in _events.__all__:
        cls = getattr(_events, name)
        if not attrs.has(cls) or name == "Envelope":
            continue
        for field in attrs.fields(cls):
            key = (name, field.name)
            if key not in covered and key not in NOT_TEXT:
                missing.append(key)
    for field in attrs.fields(Address):
        if ("Address", field.name) not in covered:
            missing.append(("Address", field.name))
    assert missing == []


@pytest.mark.parametrize("key", list(FIELDS) + list(REPLY_FIELDS), ids=".".join)
def test_the_valid_value_of_each_field_is_accepted(key: tuple[str, str]) -> None:
    build, valid = {**FIELDS, **REPLY_FIELDS}[key]
    assert build(valid) is not None  # the constructor accepts it: no error


def _inject(valid: str, position: int, control: str) -> str:
    i = position % (len(valid) + 1)
    return valid[:i] + control + valid[i:]


@given(st.sampled_from(sorted(FIELDS)), st.integers(0, 100), st.sampled_from(CONTROLS))
def test_control_character_in_any_event_field_is_refused(
    key: tuple[str, str], position: int, control: str
) -> None:
    build, valid = FIELDS[key]
    with pytest.raises(LocalProtocolError):
        build(_inject(valid, position, control))


@given(st.sampled_from(sorted(REPLY_FIELDS)), st.integers(0, 100), st.sampled_from(REPLY_CONTROLS))
def test_control_character_in_any_reply_field_is_refused(
    key: tuple[str, str], position: int, control: str
) -> None:
    build, valid = REPLY_FIELDS[key]
    with pytest.raises(LocalProtocolError):
        build(_inject(valid, position, control))


@pytest.mark.parametrize("control", CONTROLS)
def test_control_character_in_a_path_given_as_text(control: str) -> None:
    with pytest.raises(LocalProtocolError):
        MailFrom(f"<a{control}b@c.example>")
    with pytest.raises(LocalProtocolError):
        RcptTo(f"<ab@c.example{control}>")


# -- other construction rules ----------------------------------------------------------


def test_events_without_fields_are_equal_and_hashable() -> None:
    for cls in (Data, Rset, Quit, StartTLS, ConnectionClosed):
        assert cls() == cls()
        assert len({cls(), cls()}) == 1


@pytest.mark.parametrize(
    "build",
    [
        lambda: Ehlo(""),
        lambda: Ehlo("two words"),
        lambda: Helo(""),
        lambda: Vrfy(""),  # RFC 5321 §4.1.1.6: VRFY needs its argument
        lambda: Expn(""),
        lambda: Auth("PLAIN", ""),  # RFC 4954 §4: the empty response is "="
        lambda: Auth("PLAIN", "not base64!"),
        lambda: Auth("bad mech"),
        lambda: AuthResponse("not base64!"),
        lambda: Bdat(-1),
        lambda: Bdat(10**18),
        lambda: Bdat(True),
        lambda: MailFrom(A, size=-1),
        lambda: MailFrom(A, size=True),
        lambda: MailFrom(A, body="8BIT"),
        lambda: MailFrom(A, ret="ALL"),
        lambda: MailFrom(A, extra=[("SIZE", "1")]),  # typed parameters have their fields
        lambda: MailFrom(A, extra=[("requiretls", None)]),
        lambda: MailFrom(A, extra=[("X", "a=b")]),
        lambda: MailFrom(A, extra=[("-X", None)]),
        lambda: RcptTo(A, notify=["NEVER", "SUCCESS"]),  # RFC 3461 §4.1
        lambda: RcptTo(A, notify=[]),
        lambda: RcptTo(A, notify=["SUCCESS", "SUCCESS"]),
        lambda: RcptTo(A, notify=["ALWAYS"]),
        lambda: RcptTo(A, orcpt=("bad type", "a@b")),
        lambda: RcptTo(A, extra=[("NOTIFY", "NEVER")]),
        lambda: MessageData("text"),  # type: ignore[arg-type]
        lambda: CommandRejected("MAIL", "500 no"),  # type: ignore[arg-type]
    ],
)
def test_ill_formed_events_cannot_be_made(build: Callable[[], object]) -> None:
    with pytest.raises((LocalProtocolError, TypeError)):
        build()


def test_typed_fields_are_normalised() -> None:
    mail = MailFrom("<a@b.example>", body="8bitmime", ret="hdrs", extra=[("x-a", None)])
    assert (mail.body, mail.ret, mail.extra) == ("8BITMIME", "HDRS", (("X-A", None),))
    assert RcptTo(A, notify="success,delay").notify == ("SUCCESS", "DELAY")
    assert Auth("scram-sha-256").mechanism == "SCRAM-SHA-256"


def test_envelope_carries_the_requiretls_tag_rfc8689_4_1() -> None:
    envelope = Envelope(MailFrom(A, requiretls=True), (RcptTo(A),))
    assert envelope.requiretls
    assert not Envelope(MailFrom(A), ()).requiretls
    # the envelope is context, not identity, of the end of a message
    assert EndOfMessage(envelope) == EndOfMessage()
