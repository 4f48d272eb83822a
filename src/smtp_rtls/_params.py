"""MAIL / RCPT parameters (RFC 5321 §4.1.2) and xtext (RFC 3461 §4).

::

    Mail-parameters  = esmtp-param *(SP esmtp-param)
    esmtp-param      = esmtp-keyword ["=" esmtp-value]

Keywords are case-insensitive (RFC 5321 §2.4); a keyword given twice is a
syntax error (every extension defines its parameter once per command).
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Final, NamedTuple

from . import _abnf
from ._errors import LocalProtocolError

__all__ = [
    "MAIL_PARAMETERS",
    "RCPT_PARAMETERS",
    "ParamError",
    "Parameter",
    "parse_params",
    "unoffered",
    "xtext_decode",
    "xtext_encode",
]


class Parameter(NamedTuple):
    """A MAIL or RCPT parameter the core reads into a typed event field."""

    keyword: str  # as written on the wire
    field: str  # the MailFrom / RcptTo attribute it fills
    extension: str  # the EHLO keyword that must have been offered
    rfc: str  # where that is said
    values: tuple[str, ...] = ()  # the row applies to these values only (all: ())
    option: str = ""  # the ServerConfig option that offers it


# The one table of the parameters both roles check: the server refuses one
# whose extension its EHLO reply did not offer (555 5.5.4, RFC 5321
# §4.1.1.11), the client never sends it.
MAIL_PARAMETERS: Final = (
    Parameter("REQUIRETLS", "requiretls", "REQUIRETLS", "RFC 8689 §2", option="requiretls"),
    Parameter("SIZE", "size", "SIZE", "RFC 1870 §6", option="size"),
    Parameter("BODY", "body", "8BITMIME", "RFC 6152 §2", ("7BIT", "8BITMIME"), "eightbitmime"),
    Parameter("BODY", "body", "BINARYMIME", "RFC 3030 §3", ("BINARYMIME",), "binarymime"),
    Parameter("SMTPUTF8", "smtputf8", "SMTPUTF8", "RFC 6531 §3.4", option="smtputf8"),
    Parameter("RET", "ret", "DSN", "RFC 3461 §4.3", option="dsn"),
    Parameter("ENVID", "envid", "DSN", "RFC 3461 §4.4", option="dsn"),
    Parameter("AUTH", "auth", "AUTH", "RFC 4954 §5", option="auth_mechanisms"),
)
RCPT_PARAMETERS: Final = (
    Parameter("NOTIFY", "notify", "DSN", "RFC 3461 §4.1", option="dsn"),
    Parameter("ORCPT", "orcpt", "DSN", "RFC 3461 §4.2", option="dsn"),
)


def unoffered(
    event: object, table: tuple[Parameter, ...], keys: Container[str]
) -> Parameter | None:
    """The first parameter ``event`` carries whose extension is not in ``keys``."""
    for param in table:
        value = getattr(event, param.field)
        if value is None or value is False:
            continue
        if param.values and value not in param.values:
            continue
        if param.extension not in keys:
            return param
    return None


class ParamError(LocalProtocolError):
    """A malformed parameter list (reply 501 5.5.4)."""


_PARAMS_RE: Final = re.compile(_abnf.ESMTP_PARAMS_FAST)


def parse_params(text: str) -> list[tuple[str, str | None]]:
    """Split ``"SIZE=100 BODY=8BITMIME REQUIRETLS"`` into keyword/value pairs.

    Keywords are returned upper-cased; values untouched.  Raises ParamError
    on bad syntax or a repeated keyword.
    """
    if not text:
        return []  # most commands have no parameter
    # The fast path: one regex checks the whole list (RFC 5321 §4.1.2) in
    # place of two per parameter, and a dict in order of insertion keeps the
    # pairs and tells a repeated keyword at once (it holds fewer entries than
    # there are words).  Any error, and anything that is no str, takes the
    # general path, which alone gives the errors.
    if type(text) is str and _PARAMS_RE.fullmatch(text) is not None:
        words = text.split(" ")
        params: dict[str, str | None] = {}
        for word in words:
            keyword, eq, value = word.partition("=")
            params[keyword.upper()] = value if eq else None
        if len(params) == len(words):
            return list(params.items())
    return _parse_params_general(text)


def _parse_params_general(text: str) -> list[tuple[str, str | None]]:
    """:func:`parse_params` for every input, one parameter at a time; the fast
    path must agree with it (tests/test_address_fastpath.py checks that)."""
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    if not text:
        return out
    for word in text.split(" "):
        if not word:
            raise ParamError("empty parameter (two spaces in a row)")
        keyword, eq, value = word.partition("=")
        if not _abnf.re_keyword.fullmatch(keyword):
            raise ParamError(f"bad parameter keyword {keyword!r}")
        if eq and not _abnf.re_value.fullmatch(value):
            raise ParamError(f"bad value for {keyword}")
        key = keyword.upper()
        if key in seen:
            raise ParamError(f"parameter {key} given twice")
        seen.add(key)
        out.append((key, value if eq else None))
    return out


def format_params(params: list[tuple[str, str | None]]) -> str:
    """The inverse of :func:`parse_params`."""
    return " ".join(k if v is None else f"{k}={v}" for k, v in params)


def xtext_encode(text: str) -> str:
    """Encode ``text`` as xtext (RFC 3461 §4): ``+`` and ``=`` and anything
    outside ``!``..``~`` become ``+XX`` (upper-case hex of each UTF-8 octet)."""
    out = []
    for byte in text.encode("utf-8"):
        if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def xtext_decode(text: str) -> str:
    """Decode xtext; raise ParamError when ``text`` is not xtext."""
    if not text.isascii() or not _abnf.re_xtext.fullmatch(text):
        raise ParamError(f"not xtext: {text!r}")
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "+":
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(ord(text[i]))
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParamError("xtext does not decode to UTF-8") from None
