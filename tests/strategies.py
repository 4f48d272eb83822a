"""Hypothesis strategies for the wire values of smtp_rtls.

Every strategy draws values that are valid by construction, within the grammar
and the limits they are defined by (RFC 5321 §4.1.2, §4.5.3.1; RFC 6531 §3.3;
RFC 3461 §4; RFC 3463 §2), so a test can assert ``parse(format(x)) == x`` on
them.  Import them with ``import strategies as sst`` (the tests folder is on
``sys.path``).

Only commands that ``parse_command`` reads back with the default arguments are
drawn by :func:`command_events`, except RCPT with UTF-8, which needs
``utf8=True`` (the server passes it when the transaction used SMTPUTF8):
:func:`rcpt_tos` says so with ``utf8=True``.
"""

from __future__ import annotations

import base64
import re

from hypothesis import strategies as st

from smtp_rtls import (
    Address,
    Auth,
    Bdat,
    Capabilities,
    Data,
    Ehlo,
    EnhancedStatus,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    StartTLS,
    Vrfy,
)
from smtp_rtls._address import MAX_DOMAIN, MAX_LOCAL_PART, MAX_PATH, AddressError
from smtp_rtls._commands import format_command
from smtp_rtls._params import xtext_encode
from smtp_rtls._reply import MAX_REPLY_LINE

__all__ = [
    "ATEXT",
    "address_literals",
    "addresses",
    "auths",
    "bdats",
    "capabilities",
    "command_events",
    "command_lines",
    "domains",
    "ehlo_keywords",
    "enhanced_statuses",
    "envids",
    "esmtp_keywords",
    "esmtp_params",
    "esmtp_values",
    "forward_paths",
    "local_parts",
    "mail_froms",
    "rcpt_tos",
    "replies",
    "reply_codes",
    "reverse_paths",
    "utf8_chars",
    "xtext_strings",
]

# RFC 5322 §3.2.3 atext
ATEXT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~"
_LETDIG = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# RFC 5321 §4.1.2: qtextSMTP and the printable half of quoted-pairSMTP; every
# printable ASCII character can stand in a quoted local part.
_QUOTED_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
# RFC 5321 §4.1.3 dcontent = %d33-90 / %d94-126
_DCONTENT = "".join(chr(c) for c in range(33, 91)) + "".join(chr(c) for c in range(94, 127))


def _utf8_octets(text: str) -> int:
    return len(text.encode("utf-8"))


def utf8_chars() -> st.SearchStrategy[str]:
    """One UTF8-non-ascii character (RFC 6531 §3.3): any code point from U+0080,
    surrogates excluded (they have no UTF-8 form)."""
    return st.characters(min_codepoint=0x80, codec="utf-8")


# -- addresses -----------------------------------------------------------------


@st.composite
def _dot_string(draw: st.DrawFn, utf8: bool) -> str:
    char = st.sampled_from(ATEXT)
    if utf8:
        char = st.one_of(char, utf8_chars())
    atoms = draw(st.lists(st.text(char, min_size=1, max_size=12), min_size=1, max_size=4))
    return ".".join(atoms)


def _quoted_local(utf8: bool) -> st.SearchStrategy[str]:
    """The unquoted content of a Quoted-string local part (never empty)."""
    char = st.sampled_from(_QUOTED_ASCII)
    if utf8:
        char = st.one_of(char, utf8_chars())
    return st.text(char, min_size=1, max_size=30)


def local_parts(*, utf8: bool = False) -> st.SearchStrategy[str]:
    """Local parts, as ``Address.local_part`` stores them (unquoted).

    Dot-strings and quoted strings (with spaces, ``"``, ``\\``, ``@``, ``>``,
    ...); with ``utf8`` also RFC 6531 UTF-8 ones.  The quoted form is at most
    64 octets (RFC 5321 §4.5.3.1.1).
    """
    return st.one_of(_dot_string(utf8), _quoted_local(utf8)).filter(_local_part_fits)


def _local_part_fits(local: str) -> bool:
    try:
        Address(local, "x.example")
    except AddressError as exc:
        assert exc.too_long, exc
        return False
    return True


def _label(utf8: bool) -> st.SearchStrategy[str]:
    """A sub-domain (RFC 5321 §4.1.2 Let-dig [Ldh-str]); with ``utf8`` a U-label-ish one."""
    end = st.sampled_from(_LETDIG)
    if utf8:
        end = st.one_of(end, st.characters(min_codepoint=0x80, categories=("L", "N")))
    middle = st.text(st.one_of(end, st.just("-")), max_size=10)
    return st.builds(
        lambda a, m, b: a + (m + b if b else ""), end, middle, st.one_of(st.just(""), end)
    )


@st.composite
def domains(draw: st.DrawFn, *, utf8: bool = False) -> str:
    """Domains within 255 octets (RFC 5321 §4.5.3.1.2); the first label starts
    with a letter, so a domain never reads as an enhanced status code."""
    first = draw(st.sampled_from(_LETDIG[:52])) + draw(_label(utf8=False))
    labels = draw(st.lists(_label(utf8), min_size=0, max_size=4))
    domain = ".".join([first, *labels])
    while _utf8_octets(domain) > MAX_DOMAIN:
        domain = domain.rpartition(".")[0]
    return domain


def address_literals() -> st.SearchStrategy[str]:
    """Address literals (RFC 5321 §4.1.3): IPv4, ``IPv6:`` and General-address-literal."""
    ipv4 = st.ip_addresses(v=4).map(lambda a: f"[{a}]")
    ipv6 = st.ip_addresses(v=6).map(lambda a: f"[IPv6:{a}]")
    tag = st.text(st.sampled_from(_LETDIG + "-"), max_size=8).map(lambda t: t + "x")
    general = st.builds(
        lambda t, c: f"[{t}:{c}]",
        tag,
        st.text(st.sampled_from(_DCONTENT), min_size=1, max_size=20),
    )
    return st.one_of(ipv4, ipv6, general)


@st.composite
def addresses(draw: st.DrawFn, *, utf8: bool = False) -> Address:
    """Mailboxes ``local@domain`` whose path fits in 256 octets (§4.5.3.1.3).

    With ``utf8`` the local part and the domain may hold UTF-8 (RFC 6531 §3.3).
    """
    local = draw(local_parts(utf8=utf8))
    domain = draw(st.one_of(domains(utf8=utf8), address_literals()))
    address = Address(local, domain)
    if _utf8_octets(address.path()) > MAX_PATH:
        # shorten the domain by whole labels until it fits
        labels = domain.split(".")
        while len(labels) > 1 and _utf8_octets(address.path()) > MAX_PATH:
            labels.pop()
            address = Address(local, ".".join(labels))
    assert _utf8_octets(address.path()) <= MAX_PATH
    assert _utf8_octets(address.path()) - len(address.domain.encode()) - 3 <= MAX_LOCAL_PART
    return address


def reverse_paths(*, utf8: bool = False) -> st.SearchStrategy[Address]:
    """MAIL FROM paths: a mailbox or the null path ``<>`` (RFC 5321 §4.1.1.2)."""
    return st.one_of(st.just(Address.null()), addresses(utf8=utf8))


def forward_paths(*, utf8: bool = False) -> st.SearchStrategy[Address]:
    """RCPT TO paths: a mailbox or ``<Postmaster>`` in any case (RFC 5321 §4.1.1.3)."""
    postmaster = st.sampled_from(["Postmaster", "postmaster", "POSTMASTER", "PostMaster"])
    return st.one_of(postmaster.map(lambda p: Address(p, "")), addresses(utf8=utf8))


# -- parameters ----------------------------------------------------------------


def esmtp_keywords() -> st.SearchStrategy[str]:
    """esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"), upper-cased as parsed."""
    return st.builds(
        lambda a, b: (a + b).upper(),
        st.sampled_from(_LETDIG),
        st.text(st.sampled_from(_LETDIG + "-"), max_size=12),
    )


def esmtp_values(*, utf8: bool = False) -> st.SearchStrategy[str]:
    """esmtp-value = 1*(%d33-60 / %d62-126), plus UTF8-non-ascii (RFC 6531 §3.3)."""
    char = st.sampled_from("".join(chr(c) for c in range(33, 127) if c != 61))
    if utf8:
        char = st.one_of(char, utf8_chars())
    return st.text(char, min_size=1, max_size=20)


def esmtp_params(
    *, exclude: frozenset[str] = frozenset(), utf8: bool = False
) -> st.SearchStrategy[list[tuple[str, str | None]]]:
    """Parameter lists with distinct keywords (none of ``exclude``)."""
    param = st.tuples(
        esmtp_keywords().filter(lambda k: k not in exclude),
        st.one_of(st.none(), esmtp_values(utf8=utf8)),
    )
    return st.lists(param, max_size=4, unique_by=lambda p: p[0])


def xtext_strings() -> st.SearchStrategy[str]:
    """Any text xtext can carry (RFC 3461 §4): ``+``, ``=``, spaces, UTF-8, controls."""
    return st.text(st.one_of(st.sampled_from('+= !~"\\'), st.characters(codec="utf-8")))


def _field_text(*, min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    """Free text for an event field: printable, no control character."""
    return st.text(
        st.characters(exclude_categories=("Cs", "Cc")), min_size=min_size, max_size=max_size
    )


def envids() -> st.SearchStrategy[str]:
    """ENVID values: non-empty, xtext-encoded at most 100 characters (RFC 3461 §4.4)."""
    return _field_text(min_size=1, max_size=60).filter(lambda s: len(xtext_encode(s)) <= 100)


_MAIL_TYPED = frozenset({"SIZE", "BODY", "SMTPUTF8", "REQUIRETLS", "RET", "ENVID", "AUTH"})
_RCPT_TYPED = frozenset({"NOTIFY", "ORCPT"})


@st.composite
def mail_froms(draw: st.DrawFn) -> MailFrom:
    """``MailFrom`` with any mix of typed parameters and extra ones.

    A UTF-8 reverse path comes with ``smtputf8=True`` (RFC 6531 §3.4).
    """
    smtputf8 = draw(st.booleans())
    path = draw(reverse_paths(utf8=smtputf8))
    auth = draw(st.one_of(st.none(), st.just("<>"), _field_text(min_size=1)))
    return MailFrom(
        path,
        size=draw(st.one_of(st.none(), st.integers(0, 10**20 - 1))),
        body=draw(st.sampled_from([None, "7BIT", "8BITMIME", "BINARYMIME"])),
        smtputf8=smtputf8,
        requiretls=draw(st.booleans()),
        ret=draw(st.sampled_from([None, "FULL", "HDRS"])),
        envid=draw(st.one_of(st.none(), envids())),
        auth=auth,
        extra=draw(esmtp_params(exclude=_MAIL_TYPED, utf8=smtputf8)),
    )


_NOTIFY = st.one_of(
    st.just(("NEVER",)),
    st.lists(st.sampled_from(["SUCCESS", "FAILURE", "DELAY"]), min_size=1, unique=True).map(tuple),
)


@st.composite
def rcpt_tos(draw: st.DrawFn, *, utf8: bool = False) -> RcptTo:
    """``RcptTo`` with NOTIFY (RFC 3461 §4.1), ORCPT (§4.2) and extra parameters.

    With ``utf8`` the path may be UTF-8: parse it back with ``utf8=True``.
    """
    addr_type = st.sampled_from(["rfc822", "RFC822", "utf-8", "x-local"])
    orcpt = st.tuples(addr_type, _field_text())
    return RcptTo(
        draw(forward_paths(utf8=utf8)),
        notify=draw(st.one_of(st.none(), _NOTIFY)),
        orcpt=draw(st.one_of(st.none(), orcpt)),
        extra=draw(esmtp_params(exclude=_RCPT_TYPED, utf8=utf8)),
    )


def bdats() -> st.SearchStrategy[Bdat]:
    """``BDAT size [LAST]`` (RFC 3030 §2)."""
    return st.builds(Bdat, st.integers(0, 10**18 - 1), st.booleans())


def auths() -> st.SearchStrategy[Auth]:
    """``AUTH mechanism [initial-response]`` (RFC 4954 §4)."""
    mechanism = st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "X_OTHER"])
    b64 = st.binary(min_size=1, max_size=40).map(lambda b: base64.b64encode(b).decode())
    response = st.one_of(st.none(), st.just("="), b64)
    return st.builds(Auth, mechanism, response)


def _ascii_text(*, min_size: int = 0) -> st.SearchStrategy[str]:
    # commands other than MAIL and RCPT are ASCII on the wire (parse_command)
    return st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=min_size, max_size=40
    )


def _hello_domain() -> st.SearchStrategy[str]:
    return st.one_of(domains(), address_literals())


def command_events() -> st.SearchStrategy[Event]:
    """Every command event that ``parse_command`` reads back with default arguments."""
    return st.one_of(
        st.builds(Ehlo, _hello_domain()),
        st.builds(Helo, _hello_domain()),
        mail_froms(),
        rcpt_tos(),
        bdats(),
        auths(),
        st.builds(Data),
        st.builds(Rset),
        st.builds(Quit),
        st.builds(StartTLS),
        st.builds(Noop, _ascii_text()),
        st.builds(Help, _ascii_text()),
        st.builds(Vrfy, _ascii_text(min_size=1)),
        st.builds(Expn, _ascii_text(min_size=1)),
    )


def command_lines(*, lmtp: bool = False) -> st.SearchStrategy[bytes]:
    """The wire form of :func:`command_events`: one CRLF-terminated command line."""
    return command_events().map(lambda event: format_command(event, lmtp=lmtp))


# -- replies -------------------------------------------------------------------


def reply_codes() -> st.SearchStrategy[int]:
    """Reply-code = %x32-35 %x30-35 %x30-39 (RFC 5321 §4.2)."""
    return st.builds(
        lambda a, b, c: a * 100 + b * 10 + c,
        st.integers(2, 5),
        st.integers(0, 5),
        st.integers(0, 9),
    )


def enhanced_statuses(klass: int | None = None) -> st.SearchStrategy[EnhancedStatus]:
    """``class.subject.detail`` (RFC 3463 §2), of ``klass`` when given."""
    k = st.just(klass) if klass is not None else st.sampled_from([2, 4, 5])
    return st.builds(EnhancedStatus, k, st.integers(0, 999), st.integers(0, 999))


_ENHANCED_PREFIX = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def _reply_text(room: int) -> st.SearchStrategy[str]:
    """textstring = 1*(%d09 / %d32-126) (RFC 5321 §4.2), plus UTF-8, within ``room`` octets."""
    char = st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), st.just("\t"), utf8_chars()
    )
    return st.text(char, max_size=min(room, 80)).filter(lambda s: _utf8_octets(s) <= room)


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    """Replies of one or more lines, with an enhanced status of the code's class
    or none (RFC 3463 §2); every line fits in 512 octets (RFC 5321 §4.5.3.1.5)."""
    code = draw(reply_codes())
    enhanced = None
    if code // 100 != 3 and draw(st.booleans()):
        enhanced = draw(enhanced_statuses(code // 100))
    room = MAX_REPLY_LINE - 6 - (len(str(enhanced)) + 1 if enhanced else 0)
    lines = draw(st.lists(_reply_text(room), min_size=1, max_size=5))
    if enhanced is None and all(_ENHANCED_PREFIX.match(line) for line in lines):
        # RFC 2034 §4: such text reads as an enhanced status on the wire
        lines[0] = "x" + lines[0][: room - 1]
    return Reply(code, lines, enhanced)


def ehlo_keywords() -> st.SearchStrategy[str]:
    """ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"), in any case."""
    return st.builds(
        lambda a, b: a + b,
        st.sampled_from(_LETDIG),
        st.text(st.sampled_from(_LETDIG + "-"), max_size=12),
    )


@st.composite
def capabilities(draw: st.DrawFn) -> Capabilities:
    """EHLO capabilities: a domain, a greeting and keyword lines with parameters
    (ehlo-param = 1*(%d33-126), RFC 5321 §4.1.1.1)."""
    param = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=15)
    known = st.sampled_from(
        [
            ("SIZE", st.lists(st.integers(0, 10**12).map(str), max_size=1)),
            ("AUTH", st.lists(st.sampled_from(["PLAIN", "LOGIN", "XOAUTH2"]), max_size=3)),
            ("PIPELINING", st.just([])),
            ("REQUIRETLS", st.just([])),
            ("STARTTLS", st.just([])),
        ]
    )
    entry = st.one_of(
        known.flatmap(lambda kp: st.tuples(st.just(kp[0]), kp[1])),
        st.tuples(ehlo_keywords(), st.lists(param, max_size=4)),
    )
    greeting = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
    return Capabilities(
        draw(domains()),
        draw(greeting),
        [(k, tuple(p)) for k, p in draw(st.lists(entry, max_size=8))],
    )
