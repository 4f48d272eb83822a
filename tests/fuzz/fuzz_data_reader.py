"""Harness ``data_reader``: DATA content (RFC 5321 §4.1.1.4, §4.5.2) in
arbitrary reads, into DataReader and into a ServerConnection.

Input: byte 0 says whether bare line ends are normalised (bit 0), byte 1
picks the read size (bits 0-2; the reads are also cut where the parts
meet); the rest is up to three parts separated by ``\xff\x00``: a body,
the bytes after its end, and a wire sequence taken as is.

ORACLE:

* valid case: the body dot-stuffed (RFC 5321 §4.5.2), ended with CRLF and
  followed by "." CRLF and more bytes, fed in any reads: DataReader gives
  out exactly the body (normalised, in "normalise" mode), reports the end
  once, and gives back exactly the bytes after ``.\\r\\n``; a
  ServerConnection in DATA gives out MessageData that add up to the body
  (or refuses the content with 500 when it holds a bare CR or LF, RFC 5321
  §2.3.8), then EndOfMessage, then reads the next command (a NOOP);
* any bytes: the data ends only at the first CRLF "." CRLF (or a "." CRLF
  at the very start), never at a look-alike (LF.LF, CR.CR, ... of SMTP
  smuggling, RFC 5321 §4.1.1.4), what is given out is the un-stuffed
  content before it, and at most 2 octets are held back between reads
  (never more than 4 in the reader).
"""

from __future__ import annotations

import sys

import atheris
from fuzz_common import READ_SIZES, main, split_at

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls import (
        NEED_DATA,
        PAUSED,
        CommandRejected,
        Data,
        Ehlo,
        EndOfMessage,
        MessageData,
        Noop,
        Reply,
        ServerConfig,
        ServerConnection,
    )
    from smtp_rtls._framing import DataReader, has_bare_line_ending, normalise_line_endings

_OPENING = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
_CONFIGS = (ServerConfig(), ServerConfig(bare_line_endings="normalise"))


def stuff(body: bytes) -> bytes:
    """``body`` as it goes on the wire before the end marker (RFC 5321 §4.5.2)."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..")


def unstuff(content: bytes) -> bytes:
    if content.startswith(b"."):
        content = content[1:]
    return content.replace(b"\r\n.", b"\r\n")


def read_all(pieces: list[bytes], normalise: bool) -> tuple[bytes, bool, bytes]:
    reader = DataReader()
    out = bytearray()
    for i, piece in enumerate(pieces):
        content, done, rest = reader.feed(piece, normalise=normalise)
        out += content
        assert len(reader._held) <= 4, reader._held
        if done:
            return bytes(out), True, rest + b"".join(pieces[i + 1 :])
    return bytes(out), False, b""


def check_valid(body: bytes, after: bytes, cuts: list[int], normalise: bool) -> None:
    wire = stuff(body) + b".\r\n" + after
    out, done, rest = read_all(split_at(wire, cuts), normalise)
    expected = body if not body or body.endswith(b"\r\n") else body + b"\r\n"
    if normalise:
        expected = normalise_line_endings(expected)
    assert done and rest == after, (wire, done, rest)
    assert out == expected, (wire, out, expected)


def check_any(wire: bytes, cuts: list[int]) -> None:
    out, done, rest = read_all(split_at(wire, cuts), False)
    if wire.startswith(b".\r\n"):
        end = 3
    else:
        i = wire.find(b"\r\n.\r\n")
        end = i + 5 if i >= 0 else -1
    if end < 0:
        # no end marker: no end, and everything but a possible marker start given out
        assert not done, wire
        ref = unstuff(wire)
        assert ref.startswith(out) and len(ref) - len(out) <= 2, (wire, out)
        return
    assert done and rest == wire[end:], (wire, rest)
    assert out == unstuff(wire[: end - 3]), (wire, out)


def check_server(body: bytes, cuts: list[int], config: ServerConfig) -> None:
    conn = ServerConnection("mx.example", config)
    conn.send(Reply(220, "mx"))
    content = bytearray()
    events: list[object] = []
    wire = _OPENING + stuff(body) + b".\r\nNOOP\r\n"
    for piece in split_at(wire, cuts):
        conn.receive_data(piece)
        for _ in range(10 * len(wire) + 100):
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:
                pending = conn.pending
                conn.send(Reply(354, "go") if isinstance(pending, Data) else Reply(250, "ok"))
            elif isinstance(event, MessageData):
                content += event.data
            else:
                events.append(event)
        else:
            raise AssertionError("next_event() did not settle")
    expected = body if not body or body.endswith(b"\r\n") else body + b"\r\n"
    tail = events[-2:]
    assert isinstance(events[0], Ehlo) and isinstance(tail[1], Noop), events
    if config.bare_line_endings == "normalise":
        assert isinstance(tail[0], EndOfMessage), events
        assert bytes(content) == normalise_line_endings(expected), (body, content)
    elif has_bare_line_ending(expected):
        # RFC 5321 §2.3.8: refused at its end; what was given out is void
        assert isinstance(tail[0], CommandRejected) and tail[0].reply.code == 500, events
    else:
        assert isinstance(tail[0], EndOfMessage), events
        assert bytes(content) == expected, (body, content)


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    normalise = bool(data[0] & 1)
    body, after, wire = ([*data[2:].split(b"\xff\x00", 2), b"", b""])[:3]
    size = READ_SIZES[data[1] & 7]
    cuts = [*range(0, len(data), size), len(body), len(body) + 3]
    check_valid(body, after, cuts, normalise)
    check_any(wire, cuts)
    check_any(body + wire, cuts)
    check_server(body, cuts, _CONFIGS[normalise])


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
