"""Message content after DATA (RFC 5321 §4.1.1.4, §4.5.2 transparency,
§2.3.8 line endings, §4.5.3.1.6 text lines): a real aiosmtpd server on
127.0.0.1 against smtp_rtls's ServerConnection, on the same dot-stuffed
wire bytes.

Both take every message made of CRLF lines and hand on the same content;
the disagreements are the documented classes "bare-line-endings" and
"text-line-length".
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from smtp_rtls.testing import strategies as sst

from .classes import documented
from .peers import AiosmtpdPeer, OurServer, aiosmtpd_peer


@pytest.fixture(scope="module")
def peers() -> Iterator[tuple[AiosmtpdPeer, OurServer]]:
    with aiosmtpd_peer() as peer:
        yield peer, OurServer()


def wire(content: bytes) -> tuple[bytes, bytes]:
    """The DATA wire form of ``content`` (RFC 5321 §4.5.2: a dot doubled at
    the start of a line, then CRLF "." CRLF) and the content a server should
    hand on (with a final CRLF added when it had none)."""
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    lines = content.split(b"\r\n")
    stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    return stuffed + b".\r\n", content


def data_faults(content: bytes) -> set[str]:
    """What RFC 5321 §2.3.8 and §4.5.3.1.6 find in content, by class name."""
    faults = set()
    if b"\r" in content.replace(b"\r\n", b"") or b"\n" in content.replace(b"\r\n", b""):
        faults.add("bare-line-endings")
    # aiosmtpd's limit: 1001 octets with the CRLF, the doubled dot counted
    if any(len(line) + 2 + line.startswith(b".") > 1001 for line in content.split(b"\r\n")):
        faults.add("text-line-length")
    return faults


def check(peers: tuple[AiosmtpdPeer, OurServer], content: bytes) -> set[str]:
    """Assert agreement or a documented disagreement; the classes that explain it."""
    peer, server = peers
    data, expected = wire(content)
    mine, theirs = server.data(data), peer.data(data)
    if mine[1] is not None:
        assert mine == (250, expected), (content, mine)
    if mine == theirs:
        return set()
    # smtp_rtls refuses bare CR and LF (ServerConfig.bare_line_endings
    # "reject") where aiosmtpd keeps them; aiosmtpd refuses a line over 1001
    # octets where smtp_rtls streams it
    explains = "bare-line-endings" if mine[1] is None else "text-line-length"
    classes = data_faults(expected) & {explains}
    assert classes, f"undocumented disagreement on {content!r}: ours {mine}, aiosmtpd {theirs}"
    return documented(classes)


EXAMPLES = [
    (b"Subject: hi\r\n\r\nbody\r\n", None),
    (b"", None),
    (b".\r\n..\r\n.x\r\n", None),  # §4.5.2: both undo the doubled dots
    (b"no final line end", None),
    (b"a\x00b\r\n\xff\xfe\r\n", None),  # NUL and 8-bit octets pass through both
    (b"x" * 998 + b"\r\n", None),  # §4.5.3.1.6: 1000 octets with the CRLF
    # §2.3.8: bare CR and LF are no line ends; smtp_rtls refuses them
    (b"a\nb\r\n", "bare-line-endings"),
    (b"a\rb\r\n", "bare-line-endings"),
    # §4.5.3.1: the limits are what a receiver must take at least, and
    # "implementation techniques that impose no limits" should be used
    (b"x" * 1000 + b"\r\n", "text-line-length"),
    (b"x" * 5000 + b"\r\n", "text-line-length"),
]


@pytest.mark.parametrize(("content", "expected"), EXAMPLES)
def test_aiosmtpd_data_examples(
    peers: tuple[AiosmtpdPeer, OurServer], content: bytes, expected: str | None
) -> None:
    classes = check(peers, content)
    if expected is None:
        assert not classes
    else:
        assert expected in classes, (content, classes)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sst.message_contents())
def test_aiosmtpd_data_disagreements_are_documented_rfc5321_4_5_2(
    peers: tuple[AiosmtpdPeer, OurServer], content: bytes
) -> None:
    check(peers, content)
