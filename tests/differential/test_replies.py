"""Replies (RFC 5321 §4.2, §4.2.1; RFC 2034 §4) and EHLO replies (§4.1.1.1):
smtp_rtls's ClientConnection and Capabilities against smtplib's
``SMTP.getreply`` and ``SMTP.ehlo``, fed through a real socket pair.

On valid replies both read the same code and the same text, but for the
documented value classes; on malformed replies smtp_rtls refuses every one
and smtplib takes some, each in a documented class.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_rtls import Capabilities, RemoteProtocolError, Reply
from smtp_rtls._client import DEFAULT_MAX_REPLY_LINES
from smtp_rtls._framing import LineBuffer
from smtp_rtls._readers import ReplyReader
from smtp_rtls._reply import MAX_REPLY_LINE
from smtp_rtls.testing import strategies as sst

from .classes import documented
from .peers import SmtplibReply, smtplib_ehlo, smtplib_getreply


def ours(data: bytes) -> Reply | RemoteProtocolError:
    """The one reply in ``data`` as ClientConnection's reply reader reads it
    (its LineBuffer of 512 octets a line and its ReplyReader of at most 100
    lines), without the state machine: a greeting must be 220, any reply
    here may have any code."""
    buf = LineBuffer(MAX_REPLY_LINE)
    buf.feed(data)
    try:
        reply = ReplyReader(DEFAULT_MAX_REPLY_LINES).read(buf)
    except RemoteProtocolError as exc:
        return exc
    if reply is None or len(buf):
        return RemoteProtocolError("not exactly one reply")
    return reply


def wire_texts(reply: Reply) -> list[str]:
    """The text of each line as it was on the wire (the enhanced code put back)."""
    status = f"{reply.enhanced} " if reply.enhanced is not None else ""
    return [f"{status}{line}" if status or line else "" for line in reply.lines]


_CODE = re.compile(rb"[2-5][0-5][0-9]")
_LINE = re.compile(rb"[2-5][0-5][0-9]([ -][\t\x20-\x7e\x80-\xff]*)?")


def reply_faults(data: bytes) -> set[str]:
    """What RFC 5321 §4.2 (Reply-line, textstring) and §4.5.3.1.5 (512
    octets a line) find wrong in one reply's bytes: {"reply-grammar"} or none."""
    lines = data.split(b"\r\n")
    if lines[-1] != b"" or len(lines) < 2:
        return {"reply-grammar"}
    lines = lines[:-1]
    bad = (
        len(lines) > 100  # ClientConnection's max_reply_lines
        or any(len(line) + 2 > 512 or not _LINE.fullmatch(line) for line in lines)
        or any(line[:3] != lines[0][:3] for line in lines)  # §4.2.1
        or any(line[3:4] != b"-" for line in lines[:-1])
        or lines[-1][3:4] == b"-"
    )
    return {"reply-grammar"} if bad else set()


def check_reply(data: bytes) -> set[str]:
    """Assert agreement or a documented disagreement; the classes that explain it."""
    mine = ours(data)
    theirs = smtplib_getreply(data)
    if isinstance(mine, RemoteProtocolError):
        assert reply_faults(data), f"refused a valid reply {data!r}"
        if isinstance(theirs, SmtplibReply) and theirs.code != -1:
            return documented({"reply-grammar"})  # smtplib took it
        return set()
    assert not reply_faults(data), f"took {data!r}"
    assert isinstance(theirs, SmtplibReply), (data, theirs)
    assert theirs.code == mine.code and theirs.rest == b"", (data, theirs, mine)
    texts = wire_texts(mine)
    # smtplib strips SP and HT from both ends of every line's text
    stripped = [t.strip(" \t") for t in texts]
    assert theirs.message == "\n".join(stripped).encode("utf-8", "surrogateescape"), (data, theirs)
    classes = set()
    if stripped != texts:
        classes.add("reply-text-whitespace")
    if mine.enhanced is not None:
        classes.add("enhanced-status")
    return documented(classes)


# -- hand-picked ----------------------------------------------------------------

REPLY_EXAMPLES = [
    (b"250 OK\r\n", None),
    (b"250-a\r\n250-b\r\n250 c\r\n", None),
    (b"250\r\n", None),  # §4.2: "with or without a trailing space"
    (b"354 go\xc3\xa9\r\n", None),  # UTF-8 text (RFC 6531 §3.7.4)
    # §4.2 textstring keeps SP and HT; smtplib strips them from both ends
    (b"250 OK  \r\n", "reply-text-whitespace"),
    (b"250 \tOK\r\n", "reply-text-whitespace"),
    # RFC 2034 §4: smtplib leaves the enhanced code in the text
    (b"250 2.1.0 OK\r\n", "enhanced-status"),
    (b"550-5.7.1 no\r\n550 5.7.1 really\r\n", "enhanced-status"),
    # §4.2 Reply-code = %x32-35 %x30-35 %x30-39, then SP or "-"
    (b"600 OK\r\n", "reply-grammar"),
    (b"260 OK\r\n", "reply-grammar"),
    (b"250_OK\r\n", "reply-grammar"),
    (b"250OK\r\n", "reply-grammar"),
    # §4.2.1: every line of a multi-line reply has the same code
    (b"250-a\r\n251 b\r\n", "reply-grammar"),
    # §4.2 textstring has no control but HT
    (b"250 a\x00b\r\n", "reply-grammar"),
    # §4.5.3.1.5: a reply line is at most 512 octets
    (b"250 " + b"x" * 600 + b"\r\n", "reply-grammar"),
    # smtplib too refuses a code that is no number (its code -1)
    (b"abc OK\r\n", None),
]


@pytest.mark.parametrize(("data", "expected"), REPLY_EXAMPLES)
def test_smtplib_reply_examples(data: bytes, expected: str | None) -> None:
    classes = check_reply(data)
    if expected is None:
        assert not classes
    else:
        assert expected in classes, (data, classes)


def test_smtplib_keeps_enhanced_code_in_text_rfc2034_4() -> None:
    reply = ours(b"250 2.1.0 Sender OK\r\n")
    assert isinstance(reply, Reply)
    assert (reply.code, str(reply.enhanced), reply.text) == (250, "2.1.0", "Sender OK")
    theirs = smtplib_getreply(b"250 2.1.0 Sender OK\r\n")
    assert isinstance(theirs, SmtplibReply)
    assert (theirs.code, theirs.message) == (250, b"2.1.0 Sender OK")


# -- generated ------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(sst.reply_lines())
def test_smtplib_agrees_on_valid_replies_rfc5321_4_2(data: bytes) -> None:
    check_reply(data)


@settings(max_examples=300, deadline=None)
@given(sst.reply_lines(valid=False))
def test_smtplib_reply_disagreements_are_documented_rfc5321_4_2(data: bytes) -> None:
    assert isinstance(ours(data), RemoteProtocolError)
    check_reply(data)


# -- EHLO -----------------------------------------------------------------------

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def ours_features(data: bytes) -> dict[str, str]:
    """smtp_rtls's capabilities as smtplib keeps them: lower-case keyword to
    its parameters joined by SP (AUTH's mechanisms sorted)."""
    caps = Capabilities.from_reply(Reply.parse(data))
    out: dict[str, str] = {}
    for keyword in caps:
        params = caps.params(keyword)
        assert params is not None
        out.setdefault(keyword.lower(), " ".join(params))
    return out


def normal(features: dict[str, str]) -> dict[str, str]:
    """smtplib's features with the parameters' spacing normalised (it keeps
    a leading SP on AUTH)."""
    return {k: " ".join(v.split()) for k, v in features.items()}


def ehlo_classes(data: bytes) -> set[str]:
    """The documented classes an EHLO reply's lines fall in."""
    found = set()
    for line in data.split(b"\r\n")[1:-1]:
        text = line[4:].decode("utf-8", "surrogateescape")
        keyword = text.split(" ")[0]
        if re.match(r"auth=", text, re.IGNORECASE):
            found.add("ehlo-old-auth")  # RFC 4954 §3: AUTH SP mechanisms
        elif not _KEYWORD.fullmatch(keyword):
            found.add("ehlo-keyword-grammar")  # RFC 5321 §4.1.1.1 ehlo-keyword
    keywords = [line[4:].split(b" ")[0].lower() for line in data.split(b"\r\n")[1:-1]]
    if len(set(keywords)) != len(keywords):
        found.add("ehlo-repeated-keyword")  # smtplib keeps the last, smtp_rtls the first
    return found


def check_ehlo(data: bytes) -> set[str]:
    mine = ours_features(data)
    theirs = smtplib_ehlo(data)
    assert isinstance(theirs, dict), (data, theirs)
    if mine == normal(theirs):
        return set()
    classes = ehlo_classes(data)
    assert classes, f"undocumented EHLO disagreement on {data!r}: {mine} / {theirs}"
    return documented(classes)


EHLO_EXAMPLES = [
    (b"250-mx.example hi\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n", None),
    (b"250-mx.example\r\n250 size  1000\r\n", None),
    # RFC 4954 §3: AUTH SP mechanisms; "AUTH=" is the pre-standard spelling
    # smtplib reads as AUTH too
    (b"250-mx.example\r\n250-AUTH=LOGIN\r\n250 8BITMIME\r\n", "ehlo-old-auth"),
    # RFC 5321 §4.1.1.1 ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    (b"250-mx.example\r\n250 X_FOO bar\r\n", "ehlo-keyword-grammar"),
    # RFC 5321 §4.1.1.1 does not say which of two lines of a keyword counts
    (b"250-mx.example\r\n250-SIZE 1000\r\n250 SIZE 2000\r\n", "ehlo-repeated-keyword"),
]


@pytest.mark.parametrize(("data", "expected"), EHLO_EXAMPLES)
def test_smtplib_ehlo_examples(data: bytes, expected: str | None) -> None:
    classes = check_ehlo(data)
    if expected is None:
        assert not classes
    else:
        assert expected in classes, (data, classes)


@settings(max_examples=150, deadline=None)
@given(sst.capabilities())
def test_smtplib_agrees_on_ehlo_replies_rfc5321_4_1_1_1(caps: Capabilities) -> None:
    check_ehlo(caps.to_reply().format())


@settings(max_examples=150, deadline=None)
@given(sst.capabilities(), st.data())
def test_smtplib_ehlo_disagreements_are_documented(
    caps: Capabilities, data: st.DataObject
) -> None:
    lines = caps.to_reply().format().split(b"\r\n")[:-1]
    if len(lines) > 1:
        i = data.draw(st.integers(1, len(lines) - 1))
        piece = data.draw(st.sampled_from([b"_", b"=", b"  ", b"AUTH=", b"-", b"."]))
        at = data.draw(st.integers(4, len(lines[i])))
        lines[i] = lines[i][:at] + piece + lines[i][at:]
    check_ehlo(b"\r\n".join(lines) + b"\r\n")
