"""The raw clients: the least a blocking or an asyncio SMTP client can do, the
client benchmarks' ceiling (as the raw responder is the servers' reference).

Canned command lines, replies read only as far as counting their final lines
and checking the first digit, the message dot-stuffed once before the clock
starts.  They make the exchange our clients make: EHLO, then per message
MAIL, RCPT and DATA in one write (PIPELINING, RFC 2920) and the content with
its end in another, or, when the sink offers CHUNKING, MAIL, RCPT,
``BDAT <size> LAST`` and the content in one write; QUIT before closing.  No
SMTP library could do less and still be one.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

from .clients import MAX_MESSAGES, ClientRun, _timed_async, _timed_sync
from .common import CLIENT_NAME, HOST, IO_TIMEOUT, RECIPIENT, SENDER, wire_content

_EHLO = f"EHLO {CLIENT_NAME}\r\n".encode()
_ENVELOPE = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\n".encode()
_QUIT = b"QUIT\r\n"
#: The largest message sent with BDAT, as our clients do (CHUNKING_MAX).
_CHUNKING_MAX = 256 * 1024


class _Exchange:
    """What to write per message, decided by the EHLO reply."""

    def __init__(self, msg: bytes) -> None:
        self.msg = msg
        self.data_wire = wire_content(msg)
        self.bdat_wire = _ENVELOPE + b"BDAT %d LAST\r\n" % len(msg) + msg

    def writes(self, ehlo_reply: bytes) -> list[tuple[bytes, int]]:
        """(bytes, replies they get) per write of one message."""
        if b"CHUNKING" in ehlo_reply and len(self.msg) <= _CHUNKING_MAX:
            return [(self.bdat_wire, 3)]
        return [(_ENVELOPE + b"DATA\r\n", 3), (self.data_wire, 1)]


def _finals(buf: bytearray, wanted: int) -> tuple[int, bytes]:
    """Final reply lines at the start of ``buf`` (at most ``wanted``), taken
    out of it; and the replies' text, to check."""
    found = 0
    pos = 0
    while found < wanted:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            break
        if buf[pos + 3 : pos + 4] != b"-":
            found += 1
        pos = eol + 2
    text = bytes(buf[:pos])
    del buf[:pos]
    return found, text


def _check(text: bytes) -> None:
    for line in text.split(b"\r\n"):
        if line and line[:1] not in (b"2", b"3"):
            raise RuntimeError(f"raw client: refused: {line!r}")


# -- blocking ---------------------------------------------------------------------------


class _SyncSession:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def replies(self, wanted: int) -> bytes:
        text = b""
        while wanted:
            found, got = _finals(self.buf, wanted)
            wanted -= found
            text += got
            if wanted:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("the sink closed the connection")
                self.buf += data
        _check(text)
        return text

    def start(self, exchange: _Exchange) -> list[tuple[bytes, int]]:
        self.replies(1)
        self.sock.sendall(_EHLO)
        return exchange.writes(self.replies(1))

    def send(self, writes: list[tuple[bytes, int]]) -> None:
        for data, replies in writes:
            self.sock.sendall(data)
            self.replies(replies)

    def quit(self) -> None:
        try:
            self.sock.sendall(_QUIT)
            self.replies(1)
        finally:
            self.sock.close()


def raw_sync(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """A blocking socket, canned commands: the ceiling for ``ours-sync``."""
    exchange = _Exchange(msg)

    def send_until(deadline: float) -> int:
        n = 0
        if per_message:
            while time.perf_counter() < deadline and n < MAX_MESSAGES:
                session = _SyncSession(port)
                session.send(session.start(exchange))
                session.quit()
                n += 1
            return n
        session = _SyncSession(port)
        writes = session.start(exchange)
        while time.perf_counter() < deadline and n < MAX_MESSAGES:
            session.send(writes)
            n += 1
        session.quit()
        return n

    return _timed_sync(send_until, duration)


# -- asyncio ----------------------------------------------------------------------------


class _Protocol(asyncio.Protocol):
    """Counts final reply lines; wakes the waiter when enough came."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.wanted = 0
        self.text = b""
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._settle()

    def _settle(self) -> None:
        if not self.wanted:
            return
        found, text = _finals(self.buf, self.wanted)
        self.wanted -= found
        self.text += text
        if not self.wanted and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.text)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the sink closed the connection"))

    async def exchange(self, data: bytes | None, replies: int) -> bytes:
        """Write ``data`` (if any), then wait for ``replies`` final lines."""
        assert self.transport is not None
        if data is not None:
            self.transport.write(data)
        self.wanted, self.text = replies, b""
        self.waiter = self.loop.create_future()
        self._settle()
        text = await self.waiter
        _check(text)
        return text


async def _open(port: int, exchange: _Exchange) -> tuple[_Protocol, list[tuple[bytes, int]]]:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: _Protocol(loop), HOST, port)
    await proto.exchange(None, 1)
    return proto, exchange.writes(await proto.exchange(_EHLO, 1))


async def _send(proto: _Protocol, writes: list[tuple[bytes, int]]) -> None:
    for data, replies in writes:
        await proto.exchange(data, replies)


async def _quit(proto: _Protocol) -> None:
    try:
        await proto.exchange(_QUIT, 1)
    finally:
        assert proto.transport is not None
        proto.transport.close()


def raw_asyncio(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """An asyncio.Protocol, canned commands: the ceiling for ``ours-asyncio``."""
    exchange = _Exchange(msg)

    async def main() -> ClientRun:
        if per_message:

            async def one() -> None:
                async with asyncio.timeout(IO_TIMEOUT):
                    proto, writes = await _open(port, exchange)
                    await _send(proto, writes)
                    await _quit(proto)

            return await _timed_async(one, None, duration)
        proto, writes = await _open(port, exchange)

        async def send() -> None:
            async with asyncio.timeout(IO_TIMEOUT):
                await _send(proto, writes)

        async def session(loop: Callable[[], Awaitable[int]]) -> int:
            try:
                return await loop()
            finally:
                await _quit(proto)

        return await _timed_async(send, session, duration)

    return asyncio.run(main())
