"""MAIL and RCPT parameters (RFC 5321 §4.1.2 ``esmtp-param``): smtp_rtls's
``parse_params`` against aiosmtpd's ``SMTP._getparams``, called in-process
on the words aiosmtpd gives it (the parameter text upper-cased and split at
white space, as its ``smtp_MAIL`` and ``smtp_RCPT`` do).

On valid lists both read the same keywords and values, but for the case of
the values; on near misses every disagreement falls in a documented class.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_rtls._params import ParamError, format_params, parse_params
from smtp_rtls.testing import strategies as sst

from .classes import documented
from .peers import aiosmtpd_getparams

Params = dict[str, str | bool]

# RFC 5321 §4.1.2, read apart from smtp_rtls
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\ud7ff\ue000-\U0010ffff]+")


def ours(text: str) -> Params | None:
    """smtp_rtls's parameters as aiosmtpd keeps them: value or True."""
    try:
        params = parse_params(text)
    except ParamError:
        return None
    return {k: True if v is None else v for k, v in params}


def theirs(text: str) -> Params | None:
    return aiosmtpd_getparams(text.upper().split())


def param_faults(text: str) -> set[str]:
    """The faults RFC 5321 §4.1.2 (and RFC 6531 §3.3, UTF-8 in values) finds
    in a parameter list, by class name."""
    faults = set()
    if "\t" in text or "  " in text or text != text.strip(" "):
        faults.add("whitespace")
    words = [w for w in text.split(" ") if w]
    keys = [w.partition("=")[0].upper() for w in words]
    if len(set(keys)) != len(keys):
        faults.add("repeated-parameter")
    for word in words:
        keyword, eq, value = word.partition("=")
        if not _KEYWORD.fullmatch(keyword):
            faults.add("param-keyword")
        if eq and not _VALUE.fullmatch(value):
            faults.add("param-value-grammar")
    return faults


def _unicode_space(text: str) -> bool:
    # what str.split() splits at beyond SP and HT: LF, VT, FF, CR, the
    # separators U+001C-U+001F and non-ASCII white space (U+0085, U+00A0, ...)
    return any(c.isspace() and c not in " \t" for c in text)


def check(text: str) -> set[str]:
    """Assert agreement or a documented disagreement; the classes that explain it."""
    mine, peer = ours(text), theirs(text)
    faults = param_faults(text)
    if mine is None:
        assert faults, f"refused valid parameters {text!r}"
    else:
        assert not faults, f"took {text!r}"
    if mine == peer:
        return set()
    if mine is not None and peer is not None:
        upper = {k: v.upper() if isinstance(v, str) else v for k, v in mine.items()}
        classes = {"param-value-case"} if upper == peer else set()
    elif mine is None:
        classes = faults  # aiosmtpd takes what smtp_rtls refuses
    else:
        # smtp_rtls takes what aiosmtpd refuses: a keyword with "-", which
        # str.isalnum() refuses and esmtp-keyword allows
        classes = {"param-keyword"} if any("-" in k for k in mine) else set()
    if mine is not None and _unicode_space(text):
        # aiosmtpd splits a UTF-8 value (RFC 6531 §3.3) at U+00A0 and the like
        classes.add("unicode-whitespace")
    assert classes, f"undocumented disagreement on {text!r}: ours {mine}, aiosmtpd {peer}"
    return documented(classes)


EXAMPLES = [
    ("", None),
    ("SIZE=100 BODY=8BITMIME", None),
    ("SMTPUTF8", None),
    ("size=100", None),
    ("SIZE=", None),  # both refuse an empty value
    ("=1", None),
    # RFC 5321 §4.1.2: Mail-parameters = esmtp-param *(SP esmtp-param)
    ("SIZE=1  BODY=7BIT", "whitespace"),
    ("SIZE=1\tBODY=7BIT", "whitespace"),
    # esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    ("X-FOO=1", "param-keyword"),
    ("\u00c9T\u00c9=1", "param-keyword"),
    # esmtp-value = 1*(%d33-60 / %d62-126): no "=", no control
    ("X=a=b", "param-value-grammar"),
    ("X=a\x00b", "param-value-grammar"),
    # RFC 6531 §3.3: a value may hold UTF8-non-ascii, U+00A0 included;
    # aiosmtpd's str.split() splits the value there
    ("X=a\u00a0b", "unicode-whitespace"),
    # RFC 3461 §4 for the DSN parameters; see docs/differences.rst
    ("SIZE=1 SIZE=2", "repeated-parameter"),
    # RFC 5321 §2.4: a local part (in ORCPT, RFC 3461 §4.2) keeps its case
    ("ORCPT=rfc822;Alice@example.org", "param-value-case"),
]


@pytest.mark.parametrize(("text", "expected"), EXAMPLES)
def test_aiosmtpd_param_examples(text: str, expected: str | None) -> None:
    classes = check(text)
    if expected is None:
        assert not classes
    else:
        assert expected in classes, (text, classes)


@settings(max_examples=300, deadline=None)
@given(sst.esmtp_params(utf8=True))
def test_aiosmtpd_agrees_on_valid_params_rfc5321_4_1_2(
    params: list[tuple[str, str | None]],
) -> None:
    text = format_params(params)
    assert ours(text) is not None
    check(text)


_TRICKY = [*" =-_.+", "\t", "é", "\x00", "\x1c", "SIZE=1", "X-Y"]


@settings(max_examples=300, deadline=None)
@given(sst.esmtp_params(), st.data())
def test_aiosmtpd_param_disagreements_are_documented(
    params: list[tuple[str, str | None]], data: st.DataObject
) -> None:
    text = format_params(params)
    for _ in range(data.draw(st.integers(1, 2))):
        i = data.draw(st.integers(0, len(text)))
        # insert a piece, or delete a character
        piece = data.draw(st.sampled_from(_TRICKY))
        insert = data.draw(st.booleans())
        text = text[:i] + (piece + text[i:] if insert else text[i + 1 :])
    check(text)
