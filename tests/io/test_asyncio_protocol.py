"""The asyncio server's connection (``io._asyncio_protocol``, compiled in the
compiled build).

It is a buffered protocol: the transport reads into the server's one
buffer, never into a fresh 256 KiB ``bytes`` per ``recv()``
(``docs/performance.rst``).  It keeps time on its loop's clock: its read
timer is armed with ``loop.call_at``, which counts on the loop's own clock
(``loop.time()``).  For asyncio's loops that clock is ``time.monotonic()``,
which the server calls directly (a Python frame less per read and write);
any other loop's clock is asked.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from smtp_rtls.handlers import Sink
from smtp_rtls.io import asyncio as aio
from smtp_rtls.io._asyncio_protocol import _clock


class _BehindLoop(asyncio.SelectorEventLoop):
    """A loop whose clock runs an hour behind time.monotonic()."""

    def time(self) -> float:
        return time.monotonic() - 3600.0


def test_the_transport_reads_into_the_servers_buffer() -> None:
    # asyncio's transports (and uvloop's) call get_buffer/buffer_updated
    # only for an instance of asyncio.BufferedProtocol: the compiled class
    # must still be one
    assert issubclass(aio._SessionProtocol, asyncio.BufferedProtocol)

    async def main() -> tuple[bool, bytes]:
        server = await aio.serve(Sink(), "127.0.0.1", 0, hostname="mx.example")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                await asyncio.wait_for(reader.readline(), 5)
                (protocol,) = server._sessions
                buffer = protocol.get_buffer(-1)
                writer.write(b"NOOP\r\n")
                reply = await asyncio.wait_for(reader.readline(), 5)
                return buffer.obj is server._read_buffer.obj, reply
            finally:
                writer.close()
        finally:
            await server.shutdown(5)

    shared, reply = asyncio.run(main())
    assert shared
    assert reply.startswith(b"250 ")


def test_asyncio_loops_use_monotonic_directly() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert _clock(loop) is time.monotonic
    finally:
        loop.close()


def test_a_loop_with_its_own_clock_is_asked() -> None:
    loop = _BehindLoop()
    try:
        assert _clock(loop) == loop.time
        assert time.monotonic() - _clock(loop)() > 3000
    finally:
        loop.close()


def test_a_clock_set_on_the_loop_instance_is_asked() -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.time = lambda: 42.0  # type: ignore[method-assign]
        assert _clock(loop)() == 42.0
    finally:
        loop.close()


def test_uvloop_is_asked() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert _clock(loop) == loop.time
    finally:
        loop.close()


def test_the_read_timeout_holds_on_a_loop_with_its_own_clock() -> None:
    # On a clock an hour behind, a timer armed from time.monotonic() would
    # be due in an hour, and a silent peer would hold the connection that
    # long; on the loop's clock the server closes it after its read timeout.
    async def main() -> tuple[float, bytes]:
        server = await aio.serve(Sink(), "127.0.0.1", 0, hostname="mx.example", read_timeout=0.5)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                greeting = await asyncio.wait_for(reader.readline(), 5)
                assert greeting.startswith(b"220 ")
                start = time.monotonic()
                rest = await asyncio.wait_for(reader.read(), 5)  # until the server closes
                return time.monotonic() - start, rest
            finally:
                writer.close()
        finally:
            await server.shutdown(5)

    with asyncio.Runner(loop_factory=_BehindLoop) as runner:
        waited, rest = runner.run(main())
    assert 0.4 <= waited < 4.0
    # RFC 5321 §4.5.3.2: the server gives up on a silent peer; it says so first
    assert rest == b"" or rest.startswith(b"421")
