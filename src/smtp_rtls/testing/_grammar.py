"""The RFC grammar strategies of :mod:`smtp_rtls.testing.strategies`
(documented there): addresses, parameters, commands, replies."""

from __future__ import annotations

import base64
import re

from hypothesis import strategies as st

from .. import (
    Address,
    AddressError,
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
from .._commands import format_command
from .._params import xtext_encode

__all__ = [
    "ATEXT",
    "address_literals",
    "addresses",
    "auths",
    "bdats",
    "capabilities",
    "command_events",
    "command_lines",
    "commands",
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
    "reply_lines",
    "reverse_paths",
    "utf8_chars",
    "xtext_strings",
]

# RFC 5321 §4.5.3.1: the size limits, in octets.
_MAX_LOCAL_PART = 64  # §4.5.3.1.1
_MAX_DOMAIN = 255  # §4.5.3.1.2
_MAX_PATH = 256  # §4.5.3.1.3
_MAX_COMMAND_LINE = 512  # §4.5.3.1.4, CRLF included
_MAX_REPLY_LINE = 512  # §4.5.3.1.5, CRLF included

#: RFC 5322 §3.2.3 ``atext``: the characters of a Dot-string atom.
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
    return st.characters(min_codepoint=0x80, exclude_categories=["Cs"])


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
    """Local parts, as :attr:`Address.local_part <smtp_rtls.Address.local_part>`
    stores them (unquoted).

    Dot-strings and quoted strings (RFC 5321 §4.1.2 ``Local-part``), the
    latter with spaces, ``"``, ``\\``, ``@``, ``>``, ...; with ``utf8`` also
    the RFC 6531 §3.3 UTF-8 forms.  Written as the path writes them (quoted
    when needed), at most 64 octets (RFC 5321 §4.5.3.1.1).
    """
    return st.one_of(_dot_string(utf8), _quoted_local(utf8)).filter(_local_part_fits)


def _local_part_fits(local: str) -> bool:
    try:
        Address(local, "x.example")
    except AddressError as exc:
        if not exc.too_long:  # pragma: no cover - the grammar above is writable
            raise
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
    """Domains (RFC 5321 §4.1.2 ``Domain = sub-domain *("." sub-domain)``)
    within 255 octets (§4.5.3.1.2); with ``utf8``, U-labels too (RFC 6531
    §3.3).  The first label starts with a letter, so a domain never reads as
    an enhanced status code."""
    first = draw(st.sampled_from(_LETDIG[:52])) + draw(_label(utf8=False))
    labels = draw(st.lists(_label(utf8), min_size=0, max_size=4))
    domain = ".".join([first, *labels])
    while _utf8_octets(domain) > _MAX_DOMAIN:
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
    """Mailboxes ``local@domain`` (RFC 5321 §4.1.2 ``Mailbox``) whose path
    fits in 256 octets (§4.5.3.1.3): dot-string and quoted local parts,
    domains and address literals (§4.1.3).

    With ``utf8`` the local part and the domain may hold UTF-8 (RFC 6531
    §3.3).  Each reads back: ``Address.parse(a.path(), utf8=utf8) == a``.
    """
    local = draw(local_parts(utf8=utf8))
    domain = draw(st.one_of(domains(utf8=utf8), address_literals()))
    address = Address(local, domain)
    if _utf8_octets(address.path()) > _MAX_PATH:  # pragma: no cover - Address refuses it
        labels = domain.split(".")
        while len(labels) > 1 and _utf8_octets(address.path()) > _MAX_PATH:
            labels.pop()
            address = Address(local, ".".join(labels))
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
    """``esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`` (RFC 5321
    §4.1.2), upper-cased as the parser stores them."""
    return st.builds(
        lambda a, b: (a + b).upper(),
        st.sampled_from(_LETDIG),
        st.text(st.sampled_from(_LETDIG + "-"), max_size=12),
    )


def esmtp_values(*, utf8: bool = False) -> st.SearchStrategy[str]:
    """``esmtp-value = 1*(%d33-60 / %d62-126)`` (RFC 5321 §4.1.2), plus
    UTF8-non-ascii with ``utf8`` (RFC 6531 §3.3)."""
    char = st.sampled_from("".join(chr(c) for c in range(33, 127) if c != 61))
    if utf8:
        char = st.one_of(char, utf8_chars())
    return st.text(char, min_size=1, max_size=20)


def esmtp_params(
    *, exclude: frozenset[str] = frozenset(), utf8: bool = False
) -> st.SearchStrategy[list[tuple[str, str | None]]]:
    """Parameter lists (RFC 5321 §4.1.2 ``esmtp-param``) with distinct
    keywords, none of ``exclude``."""
    param = st.tuples(
        esmtp_keywords().filter(lambda k: k not in exclude),
        st.one_of(st.none(), esmtp_values(utf8=utf8)),
    )
    return st.lists(param, max_size=4, unique_by=lambda p: p[0])


def xtext_strings() -> st.SearchStrategy[str]:
    """Any text xtext can carry (RFC 3461 §4): ``+``, ``=``, spaces, UTF-8, controls."""
    return st.text(
        st.one_of(st.sampled_from('+= !~"\\'), st.characters(exclude_categories=["Cs"]))
    )


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
    """:class:`~smtp_rtls.MailFrom` with any mix of typed parameters (SIZE,
    RFC 1870 §4; BODY, RFC 6152 §2 and RFC 3030 §3; SMTPUTF8, RFC 6531 §3.4;
    REQUIRETLS, RFC 8689 §2; RET and ENVID, RFC 3461 §4.3-4.4; AUTH, RFC
    4954 §5) and extra ones.

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


def _orcpts() -> st.SearchStrategy[tuple[str, str]]:
    addr_type = st.sampled_from(["rfc822", "RFC822", "utf-8", "x-local"])
    return st.tuples(addr_type, _field_text())


@st.composite
def rcpt_tos(draw: st.DrawFn, *, utf8: bool = False) -> RcptTo:
    """:class:`~smtp_rtls.RcptTo` with NOTIFY (RFC 3461 §4.1), ORCPT (§4.2)
    and extra parameters.

    With ``utf8`` the path may be UTF-8: the server reads it only in an
    SMTPUTF8 transaction (the parser's ``utf8=True``).
    """
    return RcptTo(
        draw(forward_paths(utf8=utf8)),
        notify=draw(st.one_of(st.none(), _NOTIFY)),
        orcpt=draw(st.one_of(st.none(), _orcpts())),
        extra=draw(esmtp_params(exclude=_RCPT_TYPED, utf8=utf8)),
    )


def bdats() -> st.SearchStrategy[Bdat]:
    """``BDAT chunk-size [LAST]`` (RFC 3030 §2), sizes up to 18 digits."""
    return st.builds(Bdat, st.integers(0, 10**18 - 1), st.booleans())


def auths() -> st.SearchStrategy[Auth]:
    """``AUTH mechanism [initial-response]`` (RFC 4954 §4), the response
    base64 or ``=`` (the empty one)."""
    mechanism = st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "X_OTHER"])
    b64 = st.binary(min_size=1, max_size=40).map(lambda b: base64.b64encode(b).decode())
    response = st.one_of(st.none(), st.just("="), b64)
    return st.builds(Auth, mechanism, response)


def _ascii_text(*, min_size: int = 0) -> st.SearchStrategy[str]:
    # commands other than MAIL and RCPT are ASCII on the wire
    return st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=min_size, max_size=40
    )


def _hello_domain() -> st.SearchStrategy[str]:
    return st.one_of(domains(), address_literals())


def commands() -> st.SearchStrategy[Event]:
    """Command events of every kind with their typed parameters: EHLO and
    HELO (RFC 5321 §4.1.1.1, a domain or an address literal), MAIL and RCPT
    (:func:`mail_froms`, :func:`rcpt_tos`), DATA, BDAT (RFC 3030 §2), AUTH
    (RFC 4954 §4), RSET, QUIT, STARTTLS (RFC 3207 §4), NOOP, HELP, VRFY and
    EXPN (ASCII strings).

    Each is valid on its own (not necessarily in sequence) and reads back
    from its wire form with the core's parser and its default arguments.
    """
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


#: The former name of :func:`commands`.
command_events = commands


def command_lines(*, valid: bool = True, lmtp: bool = False) -> st.SearchStrategy[bytes]:
    """One CRLF-terminated command line (RFC 5321 §4.1.1, §2.3.8).

    ``valid=True``: the wire form of :func:`commands` (``Ehlo`` as LHLO with
    ``lmtp``, RFC 2033 §4.1).

    ``valid=False``: a malformed line, each kind refused by construction by
    a server with the default :class:`~smtp_rtls.ServerConfig` (bare line
    endings rejected) after EHLO: an unknown verb or one with junk glued to
    it, a leading space or an empty line (500); a verb RFC 5321 names but
    that is not implemented (TURN, ETRN, ... 502, §4.2.4); an argument where
    none is allowed, a missing one, a path without brackets or with a bad
    mailbox, a parameter value its extension forbids or a parameter given
    twice (501 or 553); a NUL, TAB, ESC or other control character, a bare
    CR or a bare LF inside the line (500 5.5.2, §2.3.8, §4.1.4); a line
    over 512 octets (500, §4.5.3.1.4); non-ASCII where only ASCII is
    allowed (500, RFC 6531 §3.3), or a UTF-8 reverse path without SMTPUTF8
    (550 5.6.7, RFC 6531 §3.4); a BDAT without a readable size (501, or 421
    and the connection closes: the chunk's end cannot be found, RFC 3030 §2).
    """
    if valid:
        return commands().map(lambda event: format_command(event, lmtp=lmtp))
    return _malformed_lines()


_KNOWN = frozenset(
    [
        *("EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT"),
        *("VRFY", "EXPN", "HELP", "STARTTLS", "AUTH"),
        *("TURN", "ETRN", "SEND", "SOML", "SAML", "ATRN"),  # RFC 5321 §4.2.4: 502
    ]
)
_UNIMPLEMENTED = ["TURN", "ETRN example.org", "SEND FROM:<a@b.example>", "SOML", "SAML", "ATRN"]
_BAD_ARGUMENTS = [
    b"DATA now",
    b"RSET all",
    b"QUIT now",
    b"STARTTLS please",
    b"EHLO",
    b"HELO",
    b"MAIL",
    b"MAIL TO:<a@b.example>",
    b"MAIL FROM:a@b.example",
    b"MAIL FROM:<a@b.example",
    b"MAIL FROM:<@b.example>",
    b"MAIL FROM:<a@@b.example>",
    b"MAIL FROM:<a.@b.example>",
    b"MAIL FROM:<a@-b.example>",
    b"MAIL FROM:<Postmaster>",
    b"MAIL FROM:<a@b.example> SIZE=ten",
    b"MAIL FROM:<a@b.example> SIZE",
    b"MAIL FROM:<a@b.example> BODY=9BIT",
    b"MAIL FROM:<a@b.example> REQUIRETLS=YES",
    b"MAIL FROM:<a@b.example> SMTPUTF8=1",
    b"MAIL FROM:<a@b.example> RET=ALL",
    b"MAIL FROM:<a@b.example> ENVID",
    b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2",
    b"MAIL FROM:<a@b.example> =x",
    b"RCPT",
    b"RCPT FROM:<a@b.example>",
    b"RCPT TO:<>",
    b"RCPT TO:a@b.example",
    b"RCPT TO:<a@b.example> NOTIFY",
    b"RCPT TO:<a@b.example> NOTIFY=SOMETIMES",
    b"RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS",
    b"RCPT TO:<a@b.example> ORCPT=rfc822",
    b"VRFY",
    b"EXPN",
    b"AUTH",
    b"AUTH PLAIN a b",
    b"BDAT",
    b"BDAT ten",
    b"BDAT -1",
]
_CONTROLS = [b"\x00", b"\t", b"\x1b", b"\x7f", b"\x0b", b"\x0c", b"\x01"]


def _unknown_verb() -> st.SearchStrategy[bytes]:
    verb = st.text(st.sampled_from(_LETDIG[:52]), min_size=1, max_size=10).filter(
        lambda v: v.upper() not in _KNOWN
    )
    glued = st.sampled_from(["MAILX", "RCPTTO", "DATA.", "EHLO-", "QUIT!", "STARTTLS2"])
    return st.builds(
        lambda v, a: (v + (" " + a if a else "")).encode(), st.one_of(verb, glued), _ascii_text()
    )


@st.composite
def _with_inserted(draw: st.DrawFn, insert: st.SearchStrategy[bytes]) -> bytes:
    """A valid command line (without its CRLF) with ``insert`` put somewhere inside."""
    line = draw(command_lines())[:-2]
    at = draw(st.integers(0, len(line)))
    return line[:at] + draw(insert) + line[at:]


@st.composite
def _too_long(draw: st.DrawFn) -> bytes:
    verb = draw(st.sampled_from(["NOOP", "HELP", "VRFY", "EXPN", "EHLO", "XLONG"]))
    length = draw(st.integers(_MAX_COMMAND_LINE - len(verb) - 2, 4 * _MAX_COMMAND_LINE))
    return f"{verb} ".encode() + b"x" * length


def _non_ascii() -> st.SearchStrategy[bytes]:
    verb = st.sampled_from(["NOOP", "HELP", "EHLO", "HELO", "DATA", "QUIT", "RSET"])
    text = st.builds(lambda a, c, b: a + c + b, _ascii_text(), utf8_chars(), _ascii_text())
    utf8_line = st.builds(lambda v, t: f"{v} {t}".encode(), verb, text)
    raw = st.builds(
        lambda v, b: v.encode() + b" " + b,
        verb,
        st.binary(min_size=1, max_size=10).map(lambda b: b"\xff" + b),
    )
    utf8_path = st.builds(
        lambda a, c: f"MAIL FROM:<{a}{c}@b.example>".encode(),
        st.text(st.sampled_from(ATEXT), max_size=8),
        utf8_chars(),
    )
    return st.one_of(utf8_line, raw, utf8_path)


def _malformed_lines() -> st.SearchStrategy[bytes]:
    body = st.one_of(
        _unknown_verb(),
        st.sampled_from(_UNIMPLEMENTED).map(str.encode),
        st.sampled_from(_BAD_ARGUMENTS),
        st.just(b""),
        command_lines().map(lambda line: b" " + line[:-2]),
        _with_inserted(st.sampled_from(_CONTROLS)),
        _with_inserted(st.sampled_from([b"\r", b"\n", b"\n\n", b"\r\r"])),
        _too_long(),
        _non_ascii(),
    )
    return body.map(lambda line: line + b"\r\n")


# -- replies -------------------------------------------------------------------


def reply_codes() -> st.SearchStrategy[int]:
    """``Reply-code = %x32-35 %x30-35 %x30-39`` (RFC 5321 §4.2)."""
    return st.builds(
        lambda a, b, c: a * 100 + b * 10 + c,
        st.integers(2, 5),
        st.integers(0, 5),
        st.integers(0, 9),
    )


def enhanced_statuses(klass: int | None = None) -> st.SearchStrategy[EnhancedStatus]:
    """``class "." subject "." detail`` (RFC 3463 §2), of ``klass`` when given."""
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
    """Replies (RFC 5321 §4.2) of one or more lines, with an enhanced status
    of the code's class or none (RFC 2034 §4, RFC 3463 §2); every line fits
    in 512 octets (RFC 5321 §4.5.3.1.5).  ``Reply.parse(r.format()) == r``."""
    code = draw(reply_codes())
    enhanced = None
    if code // 100 != 3 and draw(st.booleans()):
        enhanced = draw(enhanced_statuses(code // 100))
    room = _MAX_REPLY_LINE - 6 - (len(str(enhanced)) + 1 if enhanced else 0)
    lines = draw(st.lists(_reply_text(room), min_size=1, max_size=5))
    if enhanced is None and all(_ENHANCED_PREFIX.match(line) for line in lines):
        # RFC 2034 §4: such text reads as an enhanced status on the wire
        lines[0] = "x" + lines[0][: room - 1]
    return Reply(code, lines, enhanced)


def reply_lines(*, valid: bool = True) -> st.SearchStrategy[bytes]:
    """The wire form of one complete reply, every line CRLF-terminated
    (RFC 5321 §4.2: ``Reply-code "-" textstring CRLF`` lines, then
    ``Reply-code SP textstring CRLF``).

    ``valid=True``: :func:`replies` formatted, multi-line and with enhanced
    codes.  ``valid=False``: a malformed reply, each kind refused by
    construction by a :class:`~smtp_rtls.ClientConnection` with its default
    limits (``RemoteProtocolError`` from ``next_event()``): a code outside
    ``%x32-35 %x30-35 %x30-39`` or not three digits, a separator other than
    SP or ``-``, a code that changes inside a multi-line reply (§4.2.1), a
    control character, bare CR or bare LF in the text, a line over 512
    octets (§4.5.3.1.5), or more than 100 lines.
    """
    if valid:
        return replies().map(Reply.format)
    return _malformed_replies()


def _malformed_replies() -> st.SearchStrategy[bytes]:
    text = _ascii_text()
    bad_code = st.one_of(
        st.builds(
            lambda a, b, c: f"{a}{b}{c}",
            st.sampled_from("016789"),
            st.integers(0, 9),
            st.integers(0, 9),
        ),
        st.builds(lambda a, b: f"{a}{b}9", st.integers(2, 5), st.sampled_from("6789")),
        st.sampled_from(["2a0", "25", "5", "", "abc", "2 0", "-250"]),
    )
    code = reply_codes().map(str)
    return st.one_of(
        st.builds(lambda c, t: f"{c} {t}\r\n".encode(), bad_code, text),
        st.builds(
            lambda c, s, t: f"{c}{s}{t}\r\n".encode(),
            code,
            st.sampled_from(["\t", "_", "=", "x", "0", "+"]),
            text,
        ),
        st.builds(
            lambda c, d, t: f"{c}-{t}\r\n{d} {t}\r\n".encode(),
            code,
            code,
            text,
        ).filter(lambda b: b[:3] != b.split(b"\r\n")[1][:3]),
        st.builds(
            lambda c, a, x, b: f"{c} {a}".encode() + x + f"{b}\r\n".encode(),
            code,
            text,
            st.sampled_from(_CONTROLS[:1] + _CONTROLS[2:] + [b"\r", b"\n"]),
            text,
        ),
        st.builds(
            lambda c, n: f"{c} ".encode() + b"x" * n + b"\r\n",
            code,
            st.integers(_MAX_REPLY_LINE - 5, 4 * _MAX_REPLY_LINE),
        ),
        st.builds(
            lambda c, n: f"{c}-x\r\n".encode() * n + f"{c} x\r\n".encode(),
            code,
            st.integers(100, 150),
        ),
    )


def ehlo_keywords() -> st.SearchStrategy[str]:
    """``ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`` (RFC 5321
    §4.1.1.1), in any case."""
    return st.builds(
        lambda a, b: a + b,
        st.sampled_from(_LETDIG),
        st.text(st.sampled_from(_LETDIG + "-"), max_size=12),
    )


@st.composite
def capabilities(draw: st.DrawFn) -> Capabilities:
    """EHLO capabilities: a domain, a greeting and keyword lines with parameters
    (``ehlo-param = 1*(%d33-126)``, RFC 5321 §4.1.1.1)."""
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
