"""Harness ``capabilities``: an EHLO reply into Capabilities.

Input: the bytes of a reply (as in ``reply``).

ORACLE (RFC 5321 §4.1.1.1 ehlo-ok-rsp):

* ``Capabilities.from_reply`` of a positive reply raises nothing but
  LocalProtocolError (which ClientConnection turns into
  RemoteProtocolError "malformed EHLO reply");
* round trip: ``from_reply(caps.to_reply()) == caps``;
* the look-ups never raise: ``size`` is None or an int >= 0,
  ``auth_mechanisms`` a frozenset, ``in`` and ``params`` agree with the
  entries (keywords compare case-insensitively, §2.4).
"""

from __future__ import annotations

import sys

import atheris
from fuzz_common import main

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls import Capabilities, LocalProtocolError, RemoteProtocolError, Reply


def TestOneInput(data: bytes) -> None:
    try:
        reply = Reply.parse(data)
    except RemoteProtocolError:
        return
    try:
        caps = Capabilities.from_reply(reply)
    except LocalProtocolError:
        return
    again = Capabilities.from_reply(caps.to_reply())
    assert again == caps, (caps, again)
    size = caps.size
    assert size is None or (isinstance(size, int) and size >= 0), size
    assert isinstance(caps.auth_mechanisms, frozenset)
    for keyword, _params in caps.entries:
        assert keyword.swapcase() in caps, keyword
        assert caps.params(keyword) is not None
    assert list(caps) == [k.upper() for k, _ in caps.entries] or len(set(caps)) < len(
        caps.entries
    ), (list(caps), caps.entries)


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
