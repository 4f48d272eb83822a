"""SMTP smuggling (December 2023) through the serve() of every adapter, each
end-of-data look-alike sent split across TCP segments where it matters.

RFC 5321 §4.1.1.4: only CRLF "." CRLF ends the mail data.  A server that
reassembles reads from the network must not let a segment boundary make a
look-alike count: before or after the dot, between a CR and its LF.  Every
look-alike of :data:`smtp_rtls.testing.END_OF_DATA_LOOKALIKES` is sent in
one connection per adapter, once per split position (and once one octet a
segment), each time followed by a smuggled second transaction and the real
end.  The server must read one transaction per message the client meant and
never the smuggled MAIL; with ``bare_line_endings="reject"`` (the default)
it refuses the messages whose look-alike holds a bare CR or LF (RFC 5321
§2.3.8: 500 5.5.2 at the real end), with ``"normalise"`` it records each as
one message holding the would-be second transaction as content.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from attack_helpers import TIMEOUT, RawClient, Watching

from adapters import KINDS, running
from smtp_rtls import ServerConfig
from smtp_rtls.testing import END_OF_DATA_LOOKALIKES

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
SMUGGLER = b"smuggler@attacker.example"
SMUGGLED = (
    b"MAIL FROM:<" + SMUGGLER + b">\r\nRCPT TO:<victim@mx.test.example>\r\nDATA\r\n"
    b"From: ceo@mx.test.example\r\nSubject: smuggled\r\n\r\nsend money\r\n"
)
ENVELOPE = b"MAIL FROM:<alice@client.test.example>\r\nRCPT TO:<bob@mx.test.example>\r\nDATA\r\n"
HEAD = b"Subject: hello\r\n\r\nfirst message"
END = b"\r\n.\r\n"


def splits(lookalike: bytes) -> list[list[bytes]]:
    """The content sent as segments: cut once at each position of the
    look-alike (before it, between any two of its octets, after it), then
    every octet of the look-alike and of the real end a segment of its own."""
    tail = SMUGGLED + END
    out = [[HEAD + lookalike[:k], lookalike[k:] + tail] for k in range(len(lookalike) + 1)]
    out.append([HEAD, *(bytes([b]) for b in lookalike), SMUGGLED, *(bytes([b]) for b in END)])
    return out


@pytest.fixture(
    scope="module",
    params=[(k, m) for k in KINDS for m in ("reject", "normalise")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[object, Watching, str]]:
    """One server per adapter and mode, shared by the variants."""
    kind, mode = request.param
    handler = Watching()
    config = ServerConfig(bare_line_endings=mode)
    with running(kind, handler, config=config, read_timeout=TIMEOUT) as srv:
        yield srv, handler, mode


@pytest.mark.parametrize("variant", sorted(END_OF_DATA_LOOKALIKES))
def test_a_split_lookalike_never_ends_the_data_rfc5321_4_1_1_4(
    server: tuple[object, Watching, str], variant: str
) -> None:
    srv, handler, mode = server
    with handler._lock:
        handler.senders.clear()
        handler.messages.clear()
    lookalike = END_OF_DATA_LOOKALIKES[variant]
    refused = mode == "reject" and BARE.search(lookalike) is not None
    cases = splits(lookalike)
    with RawClient(srv.port) as client:  # type: ignore[attr-defined]
        assert client.reply().code == 220
        assert client.command(b"EHLO client.test.example").code == 250
        for pieces in cases:
            # PIPELINING (RFC 2920): the envelope in one write
            client.send(ENVELOPE)
            assert [client.reply().code for _ in range(3)] == [250, 250, 354]
            client.send(*pieces)
            end = client.reply()
            if refused:
                # RFC 5321 §2.3.8: the bare line ending is refused at the real end
                assert (end.code, str(end.enhanced)) == (500, "5.5.2"), end
            else:
                assert end.code == 250, end
        # not one more reply: the smuggled MAIL, RCPT and DATA got none
        assert client.command(b"QUIT").code == 221
        assert client.closed_by_peer() and client.buffer == b""
    assert handler.senders == ["alice@client.test.example"] * len(cases)
    if refused:
        assert handler.messages == []
    else:
        assert len(handler.messages) == len(cases)
        for message in handler.messages:
            # the would-be second transaction is content of the one message
            assert b"MAIL FROM:<" + SMUGGLER + b">" in message.content
            assert message.content.startswith(b"Subject: hello")
