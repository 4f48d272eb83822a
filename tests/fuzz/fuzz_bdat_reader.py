"""Harness ``bdat_reader``: BDAT chunks (RFC 3030 §2) in arbitrary reads,
into BdatReader and into a ServerConnection.

Input: byte 0 picks the read size (bits 0-2), byte 1 the BdatReader size
(times 4); the rest is one to four chunks separated by ``\xff\x00`` (any
octets: CRLF "." CRLF and its look-alikes mean nothing in a chunk).

ORACLE:

* BdatReader(size) gives out exactly the first ``size`` octets, reports the
  chunk complete exactly when they have all arrived, and gives back the rest
  untouched;
* a ServerConnection (BINARYMIME, RFC 3030 §3) reading ``BDAT n`` chunks and
  a ``BDAT n LAST`` gives out MessageData that add up to exactly the
  concatenated chunks, octet for octet (no dot processing, no end marker),
  one EndOfMessage, and then reads the next command (a NOOP): no chunk
  octet is ever read as a command, and no command octet as content.
"""

from __future__ import annotations

import sys

import atheris
from fuzz_common import READ_SIZES, main, split_at

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls import (
        NEED_DATA,
        PAUSED,
        Bdat,
        Ehlo,
        EndOfMessage,
        MessageData,
        Noop,
        Reply,
        ServerConfig,
        ServerConnection,
    )
    from smtp_rtls._framing import BdatReader

_OPENING = (
    b"EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nRCPT TO:<c@d.example>\r\n"
)
_CONFIG = ServerConfig(binarymime=True)


def check_reader(size: int, data: bytes, cuts: list[int]) -> None:
    reader = BdatReader(size)
    out = bytearray()
    done = False
    rest = b""
    pieces = split_at(data, cuts)
    for i, piece in enumerate(pieces):
        content, done, rest = reader.feed(piece)
        out += content
        if done:
            rest += b"".join(pieces[i + 1 :])
            break
    assert bytes(out) == data[:size], (size, data, out)
    assert done == (len(data) >= size) or size == 0, (size, len(data), done)
    if done:
        assert rest == data[size:]


def check_server(chunks: list[bytes], cuts: list[int]) -> None:
    conn = ServerConnection("mx.example", _CONFIG)
    conn.send(Reply(220, "mx"))
    wire = bytearray(_OPENING)
    for i, chunk in enumerate(chunks):
        last = b" LAST" if i == len(chunks) - 1 else b""
        wire += b"BDAT %d%s\r\n" % (len(chunk), last) + chunk
    wire += b"NOOP\r\n"
    content = bytearray()
    events: list[object] = []
    for piece in split_at(bytes(wire), cuts):
        conn.receive_data(piece)
        for _ in range(10 * len(wire) + 100):
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:
                conn.send(Reply(250, "ok"))
            elif isinstance(event, MessageData):
                content += event.data
            else:
                events.append(event)
        else:
            raise AssertionError("next_event() did not settle")
    assert bytes(content) == b"".join(chunks), (chunks, content)
    bdats = [e for e in events if isinstance(e, Bdat)]
    assert [b.size for b in bdats] == [len(c) for c in chunks], events
    assert isinstance(events[0], Ehlo), events
    assert isinstance(events[-2], EndOfMessage) and isinstance(events[-1], Noop), events


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    read = READ_SIZES[data[0] & 7]
    size = data[1] * 4
    parts = data[2:].split(b"\xff\x00")
    chunks = [*parts[:3], b"".join(parts[3:])] if len(parts) > 4 else parts
    joined = b"".join(chunks)
    check_reader(size, joined, list(range(0, len(joined), read)))
    wire_length = len(_OPENING) + len(joined) + 20 * len(chunks) + 6
    check_server(chunks, list(range(0, wire_length, read)))


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
