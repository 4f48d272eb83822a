"""Resource exhaustion of the client: a server whose reply never ends.

A raw loopback server sends a greeting that is one endless line, or endless
continuation lines, for as long as the client reads (64 MiB at most).  The
client (``connect()`` of every adapter, and ``deliver()``) must stop with a
clear error after a bounded number of octets, holding a bounded amount of
memory: tracemalloc's peak, in this process, while the client runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

from smtp_rtls import MailFrom, RemoteProtocolError
from smtp_rtls.io import asyncio as aio
from smtp_rtls.io import sync
from smtp_rtls.io import trio as trio_io
from smtp_rtls.io.sync import deliver
from smtp_rtls.policy.requests import DNSAnswer, DNSQuery, HTTPSResponse, Request, Result
from smtp_rtls.session import DEFAULT_TIMEOUTS, DeliveryStatus

from .exhaustion_proc import KiB, MiB, measured

#: RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; none ends here.
ENDLESS_LINE = (b"220 ", b"x" * (64 * KiB))
#: RFC 5321 §4.2.1: a multi-line reply; the last line never comes.
ENDLESS_LINES = (b"", b"220-mx.test.example endless\r\n" * 2048)
_CAP = 64 * MiB


class EndlessServer:
    """Accepts one connection on 127.0.0.1 and sends ``head``, then ``body``
    again and again until the client goes (or :data:`_CAP` octets)."""

    def __init__(self, head: bytes, body: bytes) -> None:
        self.head, self.body = head, body
        self.sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            sock, _ = self._listener.accept()
            with sock:
                sock.settimeout(10)
                sock.sendall(self.head)
                self.sent = len(self.head)
                while self.sent < _CAP:
                    sock.sendall(self.body)
                    self.sent += len(self.body)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(20)
        assert not self._thread.is_alive()


@contextlib.contextmanager
def endless(kind: tuple[bytes, bytes]) -> Iterator[EndlessServer]:
    server = EndlessServer(*kind)
    try:
        yield server
    finally:
        server.close()


def _peak(run: Callable[[], Any]) -> tuple[Any, int]:
    """What ``run()`` returned (or raised), and tracemalloc's peak during it."""
    tracemalloc.start()
    try:
        try:
            result: Any = run()
        except Exception as exc:
            result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def _connect(kind: str, port: int) -> Callable[[], Any]:
    def run_sync() -> Any:
        sync.connect("127.0.0.1", port, local_hostname="c.example", timeout=10).close()

    async def run_asyncio() -> None:
        client = await aio.connect("127.0.0.1", port, local_hostname="c.example", timeout=10)
        await client.close()

    async def run_trio() -> None:
        client = await trio_io.connect("127.0.0.1", port, local_hostname="c.example", timeout=10)
        await client.close()

    if kind == "sync":
        return run_sync
    if kind == "asyncio":
        return lambda: asyncio.run(run_asyncio())
    return lambda: trio.run(run_trio)


_CASES = [
    ("an endless line", ENDLESS_LINE, "reply line too long"),
    ("endless lines", ENDLESS_LINES, "reply longer than 100 lines"),
]


@pytest.mark.parametrize(("what", "reply", "error"), _CASES)
@pytest.mark.parametrize("kind", ["sync", "asyncio", "trio"])
def test_connect_gives_up_on_an_endless_reply_rfc5321_4_5_3_1_5(
    kind: str, what: str, reply: tuple[bytes, bytes], error: str
) -> None:
    with endless(reply) as server:
        raised, peak = _peak(_connect(kind, server.port))
    # RFC 5321 §4.5.3.1.5: a reply line of 512 octets at most; the client's
    # own bound on the lines of one reply (DEFAULT_MAX_REPLY_LINES, 100)
    assert isinstance(raised, RemoteProtocolError), raised
    assert error in str(raised)
    measured(f"client, {what}", kind, peak)
    # the client read a few of its reads' worth (64 KiB each) and stopped;
    # the server's sending stopped when the client closed
    assert server.sent < 16 * MiB
    assert peak <= 1 * MiB, peak


def _mx_table(request: Request) -> Result:
    """DNS for deliver(): example.org's MX is 127.0.0.1; no MTA-STS."""
    if not isinstance(request, DNSQuery):
        return HTTPSResponse(request, error="connect")
    records = {
        ("example.org", "MX"): ("10 mx.example.org.",),
        ("mx.example.org", "A"): ("127.0.0.1",),
        ("mx.example.org", "AAAA"): (),
    }
    key = (request.name, request.rdtype)
    if key not in records:
        return DNSAnswer(request, "NXDOMAIN", authentic=False)
    return DNSAnswer(request, "NOERROR", records[key], authentic=False)


@pytest.mark.parametrize(("what", "reply", "error"), _CASES)
def test_deliver_defers_on_an_endless_reply_rfc5321_4_5_3_1_5(
    what: str, reply: tuple[bytes, bytes], error: str
) -> None:
    with endless(reply) as server:
        result, peak = _peak(
            lambda: deliver(
                MailFrom("alice@sender.example"),
                ["bob@example.org"],
                b"Subject: x\r\n\r\nx\r\n",
                local_hostname="client.sender.example",
                fulfil=_mx_table,
                port=server.port,
                timeouts={k: 10.0 for k in DEFAULT_TIMEOUTS},
            )
        )
    assert not isinstance(result, Exception), result
    (recipient,) = result.recipients
    # a broken server is a temporary failure: the message stays queued
    assert recipient.status is DeliveryStatus.DEFERRED, recipient
    assert recipient.policy is not None and error in recipient.policy
    measured(f"deliver(), {what}", "sync", peak)
    assert server.sent < 16 * MiB
    assert peak <= 2 * MiB, peak
