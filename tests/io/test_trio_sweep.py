"""The trio server's timeouts: one sweep for all its sessions.

A session of ``smtp_rtls.io.trio.serve()`` sets when its wait for the peer
is over and the server's sweep ends it then (RFC 5321 §4.5.3.2), instead
of moving a cancel scope's deadline at each read and write:

* while a session waits for its peer, the only deadline due is the
  sweep's (within a second), not the session's own (5 minutes away);
* a server with no session has no deadline due at all;
* a handler coroutine that takes longer than the read timeout is not cut:
  only waits for the peer are timed;
* a silent peer is still dropped, up to one sweep after its timeout.

Everything runs on 127.0.0.1 inside one ``trio.run`` per test, bounded by
``trio.fail_after``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import trio

from smtp_rtls import Reply
from smtp_rtls.handlers import Sink
from smtp_rtls.io import trio as trio_io
from smtp_rtls.io._common import SWEEP_EVERY
from smtp_rtls.session.server import SessionInfo

LIMIT = 30.0  # seconds: each test as a whole (a deadline of its own, far off)


def next_deadline() -> float:
    """Seconds to the next deadline of this trio run (inf: none)."""
    return trio.lowlevel.current_statistics().seconds_to_next_deadline


async def read_reply(stream: trio.SocketStream) -> bytes:
    """Read until a final reply line (``NNN SP``) has arrived whole."""
    data = b""
    while True:
        piece = await stream.receive_some(4096)
        assert piece, f"closed after {data!r}"
        data += piece
        last = data.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
        if data.endswith(b"\r\n") and last[3:4] == b" ":
            return data


async def dialogue(stream: trio.SocketStream, *lines: bytes) -> list[bytes]:
    """Send each line and read its reply."""
    replies = []
    for line in lines:
        await stream.send_all(line + b"\r\n")
        replies.append(await read_reply(stream))
    return replies


def test_a_waiting_session_moves_no_deadline_and_an_idle_server_has_none() -> None:
    async def main() -> None:
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                server = await nursery.start(functools.partial(trio_io.serve, Sink(), port=0))
                await trio.sleep(0.01)
                assert next_deadline() > LIMIT - 5  # the test's own, nothing sooner
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                assert (await read_reply(stream)).startswith(b"220 ")
                await trio.sleep(0.01)
                # The session waits for EHLO (5 minutes, RFC 5321 §4.5.3.2.7):
                # what is due is the sweep, within a second.
                assert server.active == 1
                assert 0 < next_deadline() <= SWEEP_EVERY
                replies = await dialogue(stream, b"EHLO c.example", b"QUIT")
                assert replies[0].startswith(b"250-") and replies[1].startswith(b"221 ")
                await stream.aclose()
                # the session is over: after its last sweep, nothing is due
                with trio.move_on_after(5):
                    while server.active or next_deadline() < LIMIT - 10:
                        await trio.sleep(0.05)
                assert server.active == 0 and next_deadline() > LIMIT - 10
                await server.shutdown()

    trio.run(main)


class SlowRcpt(Sink):
    """A handler whose RCPT check takes longer than the server's read timeout."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def on_rcpt(self, session: SessionInfo, event: Any, envelope: Any) -> Reply:
        await trio.sleep(self.delay)
        return Reply(250, "OK", "2.1.5")


def test_a_slow_handler_coroutine_is_not_timed_out() -> None:
    # Only waits for the peer are timed: the sweep must not end a session
    # whose last read was answered and whose handler is still working.
    handler = SlowRcpt(delay=1.0)

    async def main() -> None:
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                serve = functools.partial(trio_io.serve, handler, port=0, read_timeout=0.3)
                server = await nursery.start(serve)
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                assert (await read_reply(stream)).startswith(b"220 ")
                replies = await dialogue(
                    stream,
                    b"EHLO c.example",
                    b"MAIL FROM:<a@example.org>",
                    b"RCPT TO:<b@example.net>",
                    b"DATA",
                    b"Subject: x\r\n\r\nx\r\n.",
                    b"QUIT",
                )
                codes = [reply[:3] for reply in replies]
                assert codes == [b"250", b"250", b"250", b"354", b"250", b"221"], replies
                await stream.aclose()
                await server.shutdown()

    trio.run(main)
    assert handler.messages == 1


def test_a_silent_peer_is_dropped_within_a_sweep_of_its_timeout() -> None:
    async def main() -> None:
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                serve = functools.partial(trio_io.serve, Sink(), port=0, read_timeout=0.4)
                server = await nursery.start(serve)
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                assert (await read_reply(stream)).startswith(b"220 ")
                start = trio.current_time()
                rest = b""
                while piece := await stream.receive_some(4096):
                    rest += piece  # a 421, maybe, then the close
                waited = trio.current_time() - start
                # read_timeout 0.4: sweeps every 0.1 s (a quarter of it)
                assert 0.4 <= waited < 0.4 + 0.1 + 1.0, waited
                assert rest in (b"",) or rest.startswith(b"421 "), rest
                await stream.aclose()
                await server.shutdown()

    trio.run(main)


def test_the_sweep_period_follows_the_read_timeout() -> None:
    assert trio_io._Sweeper(None).every == SWEEP_EVERY
    assert trio_io._Sweeper(60.0).every == SWEEP_EVERY
    assert trio_io._Sweeper(0.4).every == 0.1
    assert trio_io._Sweeper(0.001).every == 0.01
    assert math.isinf(trio_io._Watch(trio.CancelScope()).expires)  # waits for no peer yet
