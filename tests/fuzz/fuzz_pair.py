"""Harness ``pair``: a ClientConnection and a ServerConnection linked in
memory (smtp_rtls.testing.pair.Pair), driven by fuzzed client events.

Input (FuzzedDataProvider): the server config, how the server application
decides (accept all, or refuse a fuzzed share of decisions), how each
direction is split into reads, then groups of client events (EHLO, HELO,
STARTTLS, MAIL with fuzzed parameters, RCPT, DATA, content, the end, BDAT
with its chunk, RSET, NOOP, VRFY, QUIT).

ORACLE:

* the Pair's own checks (src/smtp_rtls/testing/pair.py): every command the
  client sends is the event the server reads, every reply the server sends
  is the reply the client reads (``.command`` naming its command), both
  sides are in the same State after every reply, content arrives as sent
  (RFC 5321 §4.5.2, §2.3.8), and no REQUIRETLS content flows without TLS
  (RFC 8689 §2): an AssertionError is a finding;
* our client never makes our server raise RemoteProtocolError, nor our
  server our client: the only exception allowed is the client's
  LocalProtocolError refusing an event the application should not send now.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

import atheris
from fuzz_common import main, reads

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls import (
        Bdat,
        Data,
        Ehlo,
        EndOfMessage,
        Event,
        Helo,
        LocalProtocolError,
        MailFrom,
        MessageData,
        Noop,
        Quit,
        RcptTo,
        Reply,
        Rset,
        ServerConfig,
        StartTLS,
        Vrfy,
    )
    from smtp_rtls.testing.pair import Pair, accept_all

from fuzz_server import reply_for

CONFIGS = (
    ServerConfig(starttls=True),
    ServerConfig(starttls=True, lmtp=True),
    ServerConfig(starttls=True, require_starttls=True, binarymime=True),
    ServerConfig(bare_line_endings="normalise", max_message_size=200),
    ServerConfig(pipelining=False, chunking=False, dsn=False, size=False),
)
ADDRESSES = ("a@b.example", "j\u00f6@b.example", '"a b"@[127.0.0.1]', "Postmaster", "")


def _splitter(size: int):
    def split(data: bytes) -> Sequence[bytes]:
        return list(reads(data, size))

    return split


def _events(fdp: atheris.FuzzedDataProvider) -> list[Event]:
    kind = fdp.ConsumeIntInRange(0, 12)
    if kind == 0:
        return [Ehlo("client.example")]
    if kind == 1:
        return [Helo("client.example")]
    if kind == 2:
        return [StartTLS()]
    if kind == 3:
        address = ADDRESSES[fdp.ConsumeIntInRange(0, 2)] if fdp.ConsumeBool() else ""
        try:
            return [
                MailFrom(
                    address,
                    size=fdp.ConsumeIntInRange(0, 500) if fdp.ConsumeBool() else None,
                    body=("7BIT", "8BITMIME", "BINARYMIME", None)[fdp.ConsumeIntInRange(0, 3)],
                    smtputf8=fdp.ConsumeBool(),
                    requiretls=fdp.ConsumeBool(),
                    ret=("FULL", "HDRS", None)[fdp.ConsumeIntInRange(0, 2)],
                    envid=fdp.ConsumeUnicodeNoSurrogates(8) or None,
                )
            ]
        except (LocalProtocolError, ValueError):
            return []
    if kind == 4:
        address = ADDRESSES[fdp.ConsumeIntInRange(0, 3)]
        notify = (None, ("NEVER",), ("SUCCESS", "FAILURE"))[fdp.ConsumeIntInRange(0, 2)]
        return [RcptTo(address, notify=notify)]
    if kind == 5:
        return [Data()]
    if kind == 6:
        return [MessageData(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)))]
    if kind == 7:
        return [EndOfMessage()]
    if kind == 8:
        chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
        return [Bdat(len(chunk), last=fdp.ConsumeBool()), MessageData(chunk)]
    if kind == 9:
        return [Rset()]
    if kind == 10:
        return [Noop()]
    if kind == 11:
        return [Vrfy("joe")]
    return [Quit()]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    config = CONFIGS[fdp.ConsumeIntInRange(0, len(CONFIGS) - 1)]
    refusals = fdp.ConsumeIntInRange(0, 255)
    counter = iter(range(1 << 30))

    def decide(event: Event) -> Reply:
        # refuse the decisions whose bit is set in ``refusals``, cyclically
        if refusals >> (next(counter) % 8) & 1:
            return reply_for(event, False)
        return accept_all(event)

    sizes = (1 << 30, 1, 2, 5, 64)
    pair = Pair(
        config,
        decide=decide,
        to_server=_splitter(sizes[fdp.ConsumeIntInRange(0, 4)]),
        to_client=_splitter(sizes[fdp.ConsumeIntInRange(0, 4)]),
    )
    pair.greet()
    for _ in range(fdp.ConsumeIntInRange(0, 30)):
        group: list[Event] = []
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            group += _events(fdp)
        # the client may refuse one: what went before it is on its way
        with contextlib.suppress(LocalProtocolError):
            pair.send(*group)
        pair.exchange()
        if pair.client_closed or pair.server_closed or pair.client.closed:
            break


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
