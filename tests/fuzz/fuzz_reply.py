"""Harness ``reply``: bytes into the reply parser.

Input: the bytes of one reply (its lines, CRLF-ended).

ORACLE:

* ``Reply.parse`` raises nothing but RemoteProtocolError (RFC 5321 §4.2:
  a malformed reply is the server's protocol error);
* round trip: a parsed reply formats to lines of at most 512 octets
  (RFC 5321 §4.5.3.1.5), ``Reply.parse(reply.format()) == reply``, and the
  bytes are exactly the input when the input used the canonical form;
* the enhanced status code taken out of the text (RFC 2034 §4) has the
  reply's class (RFC 3463 §2).
"""

from __future__ import annotations

import sys

import atheris
from fuzz_common import main

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls import RemoteProtocolError, Reply


def TestOneInput(data: bytes) -> None:
    try:
        reply = Reply.parse(data)
    except RemoteProtocolError:
        return
    wire = reply.format()
    assert all(len(line) + 2 <= 512 for line in wire.split(b"\r\n")), wire
    again = Reply.parse(wire)
    assert again == reply, (data, reply, again)
    assert again.format() == wire
    if reply.enhanced is not None:
        assert reply.enhanced.klass == reply.code // 100, reply


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
