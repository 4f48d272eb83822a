"""The clients' adapters after their fast paths: what they do on real sockets.

* the blocking client sets the socket's timeout only when it changes: with
  ``timeout=`` every wait (writes too) is that one, and no settimeout()
  happens per message; the RFC 5321 §4.5.3.2 waits still apply otherwise;
* the asyncio client's read timeout (one timer handle, not
  asyncio.timeout()) ends a wait with ConnectionError, and a cancellation
  from elsewhere stays a cancellation;
* the asyncio client's write skips drain() only when drain() would do
  nothing: a lost connection still fails the operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from smtp_rtls.handlers import Sink
from smtp_rtls.io import asyncio as aio
from smtp_rtls.io import sync

MESSAGE = b"Subject: t\r\n\r\n.dot line\r\nbody\r\n"


@pytest.fixture
def server() -> Iterator[sync.Server]:
    handler = Sink()
    srv = sync.serve(handler, "127.0.0.1", 0, hostname="mx.example")
    try:
        yield srv
    finally:
        srv.shutdown(5)


class _Recording:
    """A socket wrapper that records settimeout() calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.timeouts: list[float | None] = []

    def settimeout(self, value: float | None) -> None:
        self.timeouts.append(value)
        self.sock.settimeout(value)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def test_a_timeout_given_is_set_once(server: sync.Server) -> None:
    client = sync.connect("127.0.0.1", server.port, local_hostname="c.example", timeout=7.0)
    try:
        assert client.sock.gettimeout() == 7.0
        recording = _Recording(client.sock)
        client.sock = recording  # type: ignore[assignment]
        for _ in range(3):
            assert client.send("a@example.org", ["b@example.org"], MESSAGE).accepted
        assert recording.timeouts == []
    finally:
        client.sock = recording.sock
        client.quit()


def test_the_rfc5321_waits_apply_without_a_timeout(server: sync.Server) -> None:
    client = sync.connect("127.0.0.1", server.port, local_hostname="c.example")
    try:
        recording = _Recording(client.sock)
        client.sock = recording  # type: ignore[assignment]
        assert client.send("a@example.org", ["b@example.org"], MESSAGE, chunking=False).accepted
        # RFC 5321 §4.5.3.2: the write (3 min), MAIL's reply (5 min), the
        # content (3 min), the end of data (10 min); each set when it changes
        assert recording.timeouts == [180.0, 300.0, 180.0, 600.0]
        recording.timeouts.clear()
        client._timeout = None
        # With BDAT the whole message is one write; the last chunk's reply
        # waits as the end of data does (10 min), if it needs a read of its own.
        assert client.send("a@example.org", ["b@example.org"], MESSAGE).accepted
        assert recording.timeouts[:2] == [180.0, 300.0]
        assert set(recording.timeouts[2:]) <= {600.0}
    finally:
        client.sock = recording.sock
        client.quit()


@contextlib.contextmanager
def _silent_after_greeting() -> Iterator[int]:
    """The port of a server that greets, answers EHLO, then never answers
    again; stopped on the way out."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    stop = threading.Event()

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(b"220 mx.example\r\n")
            conn.recv(4096)
            conn.sendall(b"250-mx.example\r\n250 PIPELINING\r\n")
            stop.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def test_an_unanswered_read_times_out_rfc5321_4_5_3_2() -> None:
    async def main(port: int) -> None:
        client = await aio.connect("127.0.0.1", port, local_hostname="c.example", timeout=0.3)
        try:
            with pytest.raises(ConnectionError):
                await client.send("a@example.org", ["b@example.org"], MESSAGE)
            # the task was not left cancelled: it goes on awaiting
            await asyncio.sleep(0)
            assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        finally:
            await client.close()

    with _silent_after_greeting() as port:
        asyncio.run(asyncio.wait_for(main(port), 10))


def test_a_cancellation_from_elsewhere_stays_one() -> None:
    async def main(port: int) -> None:
        client = await aio.connect("127.0.0.1", port, local_hostname="c.example", timeout=30)
        try:
            task = asyncio.create_task(client.send("a@example.org", ["b@example.org"], MESSAGE))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await client.close()

    with _silent_after_greeting() as port:
        asyncio.run(asyncio.wait_for(main(port), 10))


def test_asyncio_client_sends_again_and_again(server: sync.Server) -> None:
    async def main() -> None:
        client = await aio.connect("127.0.0.1", server.port, local_hostname="c.example", timeout=5)
        try:
            for _ in range(5):
                result = await client.send("a@example.org", ["b@example.org"], MESSAGE)
                assert result.accepted
        finally:
            await client.quit()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_lost_connection_fails_the_next_operation() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"220 mx.example\r\n")
            conn.recv(4096)
            conn.sendall(b"250-mx.example\r\n250 PIPELINING\r\n")
        # closed: the client's next write and read find no server

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    async def main() -> None:
        port = listener.getsockname()[1]
        client = await aio.connect("127.0.0.1", port, local_hostname="c.example", timeout=5)
        try:
            thread.join(10)
            await asyncio.sleep(0.05)
            with pytest.raises(ConnectionError):
                await client.send("a@example.org", ["b@example.org"], MESSAGE)
        finally:
            await client.close()

    try:
        asyncio.run(asyncio.wait_for(main(), 10))
    finally:
        thread.join(10)
        listener.close()
