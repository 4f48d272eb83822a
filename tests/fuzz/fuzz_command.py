"""Harness ``command``: one command line into the command parser.

Input: byte 0 sets ``utf8`` (bit 0) and ``smtputf8`` (bit 1) as a server
would after MAIL ... SMTPUTF8 / an EHLO offering SMTPUTF8, and LHLO
formatting (bit 2); the rest is one line, decoded as the server decodes it
(UTF-8, surrogateescape; the line end and control characters are refused
before the parser, src/smtp_rtls/_readers.py, so they are removed here).

ORACLE:

* ``parse_command`` raises nothing but CommandSyntaxError (a
  LocalProtocolError carrying a 5xx reply: 500, 501, 502, 553, 555);
* round trip: a parsed event, formatted with ``format_command``, is one
  CRLF-ended line with no other CR or LF (no command injection), and
  parsing that line again gives the same event;
* paths (the argument as a path): ``Address.parse`` raises only
  AddressError, and ``Address.parse(a.path()) == a``;
* MAIL/RCPT parameters: ``parse_params`` raises only ParamError, agrees with
  its general (slow) path, and ``format_params`` round-trips it; xtext
  decoding raises only ParamError and ``xtext_encode`` round-trips it.
"""

from __future__ import annotations

import re
import sys

import atheris
from fuzz_common import main

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls import Address, AddressError
    from smtp_rtls._commands import CommandSyntaxError, format_command, parse_command
    from smtp_rtls._params import (
        ParamError,
        _parse_params_general,
        format_params,
        parse_params,
        xtext_decode,
        xtext_encode,
    )

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_paths(arg: str) -> None:
    for utf8 in (False, True):
        try:
            address = Address.parse(arg, utf8=utf8)
        except AddressError:
            continue
        assert Address.parse(address.path(), utf8=utf8) == address, (arg, address)


def _check_params(text: str) -> None:
    try:
        params = parse_params(text)
    except ParamError:
        try:
            _parse_params_general(text)
        except ParamError:
            return
        raise AssertionError(f"only the fast path refused {text!r}") from None
    assert _parse_params_general(text) == params, text
    assert parse_params(format_params(params)) == params, (text, params)
    try:
        decoded = xtext_decode(text)
    except ParamError:
        return
    assert xtext_decode(xtext_encode(decoded)) == decoded, text


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    line = _CONTROL.sub("", data[1:].decode("utf-8", "surrogateescape"))
    utf8, smtputf8, lmtp = bool(flags & 1), bool(flags & 2), bool(flags & 4)
    arg = line.partition(" ")[2]
    _check_paths(arg)
    _check_paths(arg.partition(":")[2].partition(" ")[0])
    _check_params(arg)
    _check_params(arg.partition("> ")[2])
    try:
        event = parse_command(line, utf8=utf8, smtputf8=smtputf8)
    except CommandSyntaxError as exc:
        assert exc.reply is not None and exc.reply.code >= 500, exc.reply
        return
    wire = format_command(event, lmtp=lmtp)
    assert wire.endswith(b"\r\n") and b"\r" not in wire[:-2] and b"\n" not in wire[:-2], wire
    again = parse_command(
        wire[:-2].decode("utf-8", "surrogateescape"), utf8=utf8, smtputf8=smtputf8
    )
    assert again == event, (line, wire, event, again)


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
