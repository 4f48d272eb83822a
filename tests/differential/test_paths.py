"""Paths (RFC 5321 §4.1.2, §4.1.3; RFC 6531 §3.3): smtp_rtls's Address.parse
against aiosmtpd's ``SMTP._getaddr`` (the stdlib's RFC 5322 header parser,
``get_angle_addr`` / ``get_addr_spec``), called in-process.

On every valid path both take it and read the same mailbox, but for the
documented value classes.  On near misses (a valid path with one or two
characters inserted, replaced or deleted) every disagreement falls in a
documented class of tests/differential/classes.py, and smtp_rtls refuses
only what the RFC grammar, read apart (``path_faults``), finds a fault in.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_rtls import MailFrom, RcptTo
from smtp_rtls._commands import CommandSyntaxError, parse_command
from smtp_rtls.testing import strategies as sst

from .classes import documented, path_faults, value_classes
from .peers import aiosmtpd_getaddr


def ours(text: str, *, reverse: bool, utf8: bool) -> str | None:
    """smtp_rtls's mailbox for a path (``"<>"`` for the null path), None when
    refused: the path read as the core reads it in a MAIL (with SMTPUTF8
    when ``utf8``) or RCPT command, refused too when not all of ``text`` is
    the path (the rest would be read as parameters)."""
    try:
        if reverse:
            mail = parse_command(f"MAIL FROM:{text}" + (" SMTPUTF8" if utf8 else ""))
            assert isinstance(mail, MailFrom)
            address, extra = mail.reverse_path, mail.extra
        else:
            rcpt = parse_command(f"RCPT TO:{text}", utf8=utf8)
            assert isinstance(rcpt, RcptTo)
            address, extra = rcpt.forward_path, rcpt.extra
    except CommandSyntaxError:
        return None
    if extra:
        return None
    return "<>" if address.is_null else str(address)


def theirs(text: str) -> str | None:
    """aiosmtpd's mailbox for a path, None when refused (or not all of ``text``
    is the path: the rest would be read as parameters; aiosmtpd splits them
    at white space, so white space alone is no parameter)."""
    address, rest = aiosmtpd_getaddr(text)
    if not address or (rest and rest.split()):
        return None
    return address


def explain(
    text: str, mine: str | None, peer: str | None, *, reverse: bool, utf8: bool
) -> set[str]:
    """The documented classes that explain a disagreement; empty when none does."""
    faults = path_faults(text, reverse=reverse, utf8=utf8)
    if mine is None and peer is not None:
        return faults
    if mine is not None and peer is not None:
        return value_classes(text)
    return set()  # smtp_rtls takes what aiosmtpd refuses: no such class


def check(text: str, *, reverse: bool, utf8: bool) -> set[str]:
    """Assert that smtp_rtls and aiosmtpd agree on ``text`` or disagree in a
    documented way; the classes that explain it (empty when they agree)."""
    mine = ours(text, reverse=reverse, utf8=utf8)
    peer = theirs(text)
    if mine is None:
        # smtp_rtls refuses only what the RFC grammar refuses
        assert path_faults(text, reverse=reverse, utf8=utf8), f"refused a valid path {text!r}"
    else:
        # and takes no fault but one SP either side (see "whitespace")
        faults = path_faults(text, reverse=reverse, utf8=utf8) - {"whitespace"}
        assert not faults, f"took {text!r}: {faults}"
    if mine == peer:
        return set()
    classes = explain(text, mine, peer, reverse=reverse, utf8=utf8)
    assert classes, f"undocumented disagreement on {text!r}: ours {mine!r}, aiosmtpd {peer!r}"
    return documented(classes)


# -- hand-picked ----------------------------------------------------------------

# (path, reverse, utf8, the class that explains the disagreement or None)
EXAMPLES = [
    ("<a@b.example>", True, False, None),
    ("<>", True, False, None),
    ('<"a b"@c.example>', True, False, None),
    ('<"a\\"b"@c.example>', True, False, None),
    ('<"ab"@c.example>', True, False, None),  # both drop needless quotes
    ("<a@[192.0.2.1]>", True, False, None),
    ("<a@[IPv6:2001:db8::1]>", True, False, None),
    ("<a@[tag:x>y]>", True, False, None),
    ('<"a>b"@c.example>', True, False, None),
    ("<@x.example,@y.example:a@b.example>", True, False, None),  # source route dropped
    ("<Postmaster>", False, False, None),
    ("<jö@bü.example>", True, True, None),
    ("<a@b..example>", True, False, None),  # both refuse
    ("<a@b.example.>", True, False, None),
    ("<a@>", True, False, None),
    ("<@b.example>", True, False, None),
    # RFC 5321 §4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">"
    ("a@b.example", True, False, "no-angle-brackets"),
    ("<a@b.example", True, False, "no-angle-brackets"),
    # §4.1.2 Mailbox = Local-part "@" ( Domain / address-literal )
    ("<alice>", True, False, "no-domain"),
    # §4.1.2 Dot-string = Atom *("." Atom): no empty atom, no comment, no space
    ("<a..b@c.example>", True, False, "local-part-grammar"),
    ("<a.@c.example>", True, False, "local-part-grammar"),
    ("<(comment)a@c.example>", True, False, "local-part-grammar"),
    ("<a @c.example>", True, False, "local-part-grammar"),
    ("<a\\b@c.example>", True, False, "local-part-grammar"),
    # §4.1.2 sub-domain = Let-dig [Ldh-str]
    ("<a@-b.example>", True, False, "domain-grammar"),
    ("<a@b_c.example>", True, False, "domain-grammar"),
    ("<a@b.example (comment)>", True, False, "domain-grammar"),
    # §4.1.3 address literals
    ("<a@[999.1.1.1]>", True, False, "address-literal"),
    ("<a@[1.2.3]>", True, False, "address-literal"),
    ("<a@[IPv6:1::2::3]>", True, False, "address-literal"),
    ("<a@[]>", True, False, "address-literal"),
    # §4.5.3.1.1: local part at most 64 octets (aiosmtpd: no limit by default)
    ("<" + "a" * 65 + "@b.example>", True, False, "path-length"),
    # §4.1.1.3: "<>" is no forward path; §4.1.1.2: Postmaster is no reverse path
    ("<>", False, False, "null-forward-path"),
    ("<Postmaster>", True, False, "postmaster-reverse-path"),
    # RFC 6531 §3.3-3.4: UTF-8 only in an SMTPUTF8 transaction
    ("<jö@b.example>", True, False, "utf8-without-smtputf8"),
    # RFC 2047 §5 (3): no encoded-word in an addr-spec; aiosmtpd decodes it
    ("<=?utf-8?q?x?=@b.example>", True, False, "encoded-word"),
    # §4.1.2: "a." is a local part only as a Quoted-string; aiosmtpd hands
    # on the bare a.@b.example, which is no mailbox
    ('<"a."@b.example>', True, False, "requoting"),
    ('<".."@[192.0.2.1]>', True, False, "requoting"),
]


@pytest.mark.parametrize(("text", "reverse", "utf8", "expected"), EXAMPLES)
def test_aiosmtpd_path_examples(
    text: str, reverse: bool, utf8: bool, expected: str | None
) -> None:
    classes = check(text, reverse=reverse, utf8=utf8)
    if expected is None:
        assert not classes
    else:
        assert expected in classes, (text, classes)


# -- generated ------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(st.booleans(), st.data())
def test_aiosmtpd_agrees_on_valid_paths_rfc5321_4_1_2(utf8: bool, data: st.DataObject) -> None:
    address = data.draw(sst.addresses(utf8=utf8))
    text = address.path()
    assert ours(text, reverse=True, utf8=utf8) == str(address)
    peer = theirs(text)
    if peer != str(address):
        classes = documented(value_classes(text))
        assert classes, f"aiosmtpd reads {text!r} as {peer!r}"


_TRICKY = [
    *'.-@<>"\\ []:,;=+_!#~()\t',
    "é",
    "\x00",
    "\x7f",
    "\x1f",
    "=?",
    "?=",
    "\udcff",
    "a" * 40,
]


@st.composite
def near_misses(draw: st.DrawFn) -> tuple[str, bool, bool]:
    """A valid path (or <>, <Postmaster>) with one or two characters
    inserted, replaced or deleted; whether it is a reverse path; SMTPUTF8."""
    utf8 = draw(st.booleans())
    reverse = draw(st.booleans())
    paths = sst.reverse_paths(utf8=utf8) if reverse else sst.forward_paths(utf8=utf8)
    text = draw(paths).path()
    for _ in range(draw(st.integers(1, 2))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "replace", "delete"]))
        char = draw(st.sampled_from(_TRICKY))
        if op == "insert":
            text = text[:i] + char + text[i:]
        elif op == "replace":
            text = text[:i] + char + text[i + 1 :]
        else:
            text = text[:i] + text[i + 1 :]
    return text, reverse, utf8


@settings(max_examples=400, deadline=None)
@given(near_misses())
def test_aiosmtpd_path_disagreements_are_documented(case: tuple[str, bool, bool]) -> None:
    text, reverse, utf8 = case
    check(text, reverse=reverse, utf8=utf8)
