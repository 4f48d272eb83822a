"""Running one client scenario on each adapter, and a server handler that
records what reached the application."""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
import uvloop

from smtp_rtls import MailFrom, Reply
from smtp_rtls.io import asyncio as aio
from smtp_rtls.io import sync
from smtp_rtls.io import trio as trio_io
from smtp_rtls.session import DeliveryResult
from smtp_rtls.session.server import SessionInfo
from smtp_rtls.testing.server import RecordingHandler

_T = TypeVar("_T")

TIMEOUT = 5.0


def run(kind: str, scenario: Callable[[], Awaitable[_T]]) -> _T:
    """Run an async ``scenario`` on the event loop of ``kind`` (the blocking
    adapter's calls run inside trio.run: they block, which is what they do)."""
    if kind in ("sync", "trio"):
        return trio.run(scenario)  # type: ignore[arg-type]
    factory = uvloop.new_event_loop if kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(scenario())  # type: ignore[arg-type]


class SyncClient:
    """:class:`smtp_rtls.io.sync.Client` with the async clients' interface:
    every method awaitable."""

    def __init__(self, client: sync.Client) -> None:
        self.client = client
        self.conn = client.conn

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


async def connect(kind: str, port: int, **options: Any) -> Any:
    """The ``connect()`` of adapter ``kind`` to 127.0.0.1:``port``, as an
    object with awaitable methods (starttls, send, quit, close)."""
    options.setdefault("local_hostname", "client.sender.example")
    options.setdefault("timeout", TIMEOUT)
    if kind == "sync":
        return SyncClient(sync.connect("127.0.0.1", port, **options))
    if kind == "trio":
        return await trio_io.connect("127.0.0.1", port, **options)
    return await aio.connect("127.0.0.1", port, **options)


def deliver(kind: str, *args: Any, **options: Any) -> DeliveryResult:
    """The ``deliver()`` of adapter ``kind``."""
    if kind == "sync":
        return sync.deliver(*args, **options)
    if kind == "trio":
        return trio.run(functools.partial(trio_io.deliver, *args, **options))
    return run(kind, lambda: aio.deliver(*args, **options))


class Watching(RecordingHandler):
    """Also records every MAIL the server read (before the handler's answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: list[str] = []

    def on_mail(self, session: SessionInfo, event: MailFrom) -> Reply:
        with self._lock:
            self.senders.append(str(event.reverse_path))
        return Reply(250, "OK", "2.1.0")


class RawClient:
    """A bare TCP client (TCP_NODELAY) that writes pieces as separate
    segments and reads whole replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        #: Every octet received.
        self.received = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, *pieces: bytes, pause: float = 0.002) -> None:
        """Each piece in a write (and so a TCP segment) of its own: the
        pause lets it leave before the next is written."""
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(pause)
            self.sock.sendall(piece)

    def _more(self) -> bytes:
        data = self.sock.recv(65536)
        self.received += data
        return data

    def reply(self) -> Reply:
        """The next complete reply."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buffer:
                data = self._more()
                if not data:
                    raise ConnectionError(f"closed; unread {self.buffer!r}")
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return Reply.from_lines(lines)

    def command(self, line: bytes) -> Reply:
        self.send(line + b"\r\n")
        return self.reply()

    def closed_by_peer(self) -> bool:
        """Read until the peer closes (True) or the timeout passes (False);
        what arrives meanwhile stays in :attr:`buffer`."""
        try:
            while True:
                data = self._more()
                if not data:
                    return True
                self.buffer += data
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
