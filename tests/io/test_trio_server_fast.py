"""The trio server's fast path against its general path.

``run_session`` reads and writes a plain connection straight on the socket
under the ``trio.SocketStream`` (``_plain_socket``); with ``_plain_socket``
made to give None it goes through the stream's own ``receive_some`` and
``send_all``, the general path (the one TLS takes).  Each test runs the
same peer against both and wants the same replies, octet for octet, the
same handler calls and the same log records, whatever the chunking of the
input (hypothesis), across partial writes, a reset, a timeout; and the
fast path must still let the other tasks run while it reads without
waiting.

Everything runs on 127.0.0.1 in one ``trio.run`` per case; every wait is
bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from unittest import mock

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtp_rtls import Reply
from smtp_rtls.io import trio as trio_io
from smtp_rtls.session.server import Handler, MessageWriter, SessionEnvelope, SessionInfo

LIMIT = 10.0  # seconds, every case as a whole


class Recorder(Handler):
    """Notes every call the session makes, with what identifies it."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def on_connect(self, session: SessionInfo) -> Any:
        self.calls.append("connect")
        return super().on_connect(session)

    def on_ehlo(self, session: SessionInfo, event: Any) -> Any:
        self.calls.append(("ehlo", event.domain))
        return super().on_ehlo(session, event)

    def on_mail(self, session: SessionInfo, event: Any) -> Any:
        self.calls.append(("mail", str(event.reverse_path)))
        return super().on_mail(session, event)

    def on_rcpt(self, session: SessionInfo, event: Any, envelope: Any) -> Any:
        self.calls.append(("rcpt", str(event.forward_path)))
        return super().on_rcpt(session, event, envelope)

    def on_data_start(self, session: SessionInfo, envelope: Any) -> Any:
        self.calls.append("data")
        return super().on_data_start(session, envelope)

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        self.calls.append("message")
        return _Writer(self)

    def on_reset(self, session: SessionInfo) -> Any:
        self.calls.append("reset")

    def on_close(self, session: SessionInfo) -> Any:
        self.calls.append("close")


class _Writer(MessageWriter):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.content = bytearray()

    def write(self, data: bytes) -> None:
        self.content += data

    def close(self) -> Reply:
        self.recorder.calls.append(("stored", bytes(self.content)))
        return Reply(250, f"Stored {len(self.content)}", "2.0.0")

    def abort(self) -> None:
        self.recorder.calls.append(("aborted", bytes(self.content)))


@contextlib.contextmanager
def general_path(general: bool) -> Iterator[None]:
    """The general path (the stream's own methods) when asked."""
    if not general:
        yield
        return
    with mock.patch.object(trio_io, "_plain_socket", lambda stream: None):
        yield


@contextlib.contextmanager
def trio_logs() -> Iterator[list[str]]:
    """The adapter's log records, as text."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.levelname} {record.getMessage()}")

    log = logging.getLogger("smtp_rtls.io.trio")
    keep = Keep()
    old = log.level
    log.setLevel(logging.INFO)
    log.addHandler(keep)
    try:
        yield records
    finally:
        log.removeHandler(keep)
        log.setLevel(old)


Peer = Callable[[trio.SocketStream], Awaitable[bytes]]


def run(
    peer: Peer,
    *,
    general: bool,
    handler: Handler | None = None,
    read_timeout: float | None = None,
    server_sndbuf: int | None = None,
) -> tuple[bytes, list[Any], list[str]]:
    """One session between ``peer`` and run_session: what the peer got, the
    handler's calls, and the adapter's log records (the peer's address
    taken out)."""
    recorder = handler if handler is not None else Recorder()

    async def main() -> bytes:
        with trio.fail_after(LIMIT):
            [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listener.socket.getsockname()[1]
            async with trio.open_nursery() as nursery:

                async def serve_one() -> None:
                    stream = await listener.accept()
                    await listener.aclose()
                    if server_sndbuf is not None:
                        stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, server_sndbuf)
                    await trio_io.run_session(
                        recorder, stream, hostname="mx.test", read_timeout=read_timeout
                    )

                nursery.start_soon(serve_one)
                client = await trio.open_tcp_stream("127.0.0.1", port)
                async with client:
                    return await peer(client)

    with general_path(general), trio_logs() as logs:
        got = trio.run(main)
    calls = recorder.calls if isinstance(recorder, Recorder) else []
    return got, calls, [line.split(" ended: ")[-1] for line in logs]


async def read_to_end(client: trio.SocketStream) -> bytes:
    got = bytearray()
    while True:
        try:
            data = await client.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not data:
            break
        got += data
    return bytes(got)


def both(peer: Peer, **kwargs: Any) -> tuple[bytes, list[Any], list[str]]:
    """Run the peer on both paths; they must agree; the fast path's result."""
    fast = run(peer, general=False, **kwargs)
    general = run(peer, general=True, **kwargs)
    assert fast == general
    return fast


# -- the same dialogue, chunked at will ------------------------------------------------

COMMANDS = [
    b"EHLO client.example\r\n",
    b"HELO other.example\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"RCPT TO:<c@d.example>\r\n",
    b"RCPT TO:<e@f.example>\r\n",
    b"NOOP\r\n",
    b"RSET\r\n",
    b"VRFY someone\r\n",
    b"BOGUS command\r\n",
    b"DATA\r\n",
    b"Subject: hi\r\n\r\nline one\r\n..dot-stuffed\r\n" + b"x" * 3000 + b"\r\n.\r\n",
    b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
]


def chunked(script: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(script) + 1) for c in cuts} | {0, len(script)})
    return [script[a:b] for a, b in itertools.pairwise(points) if b > a]


def dialogue(chunks: list[bytes]) -> Peer:
    async def peer(client: trio.SocketStream) -> bytes:
        for chunk in chunks:
            # the server has read all it was sent and waits for more (or
            # has ended): each chunk is a read of its own
            await trio.testing.wait_all_tasks_blocked()
            try:
                await client.send_all(chunk)
            except trio.BrokenResourceError:
                break
        return await read_to_end(client)

    return peer


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(
    st.lists(st.sampled_from(COMMANDS), max_size=12),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=8),
)
def test_any_dialogue_any_chunking_gets_the_same_replies_and_calls(
    commands: list[bytes], cuts: list[int]
) -> None:
    # ends any content left open (else a bad command: fewer than the 20
    # errors that end a session)
    script = b"".join(commands) + b"\r\n.\r\nQUIT\r\n"
    got, calls, logs = both(dialogue(chunked(script, cuts)))
    assert got.startswith(b"220 mx.test") and got.endswith(b"closing connection\r\n")
    assert calls[0] == "connect" and calls[-1] == "close"
    assert logs == []


def test_a_pipelined_message_is_stored_the_same() -> None:
    content = b"Subject: pipelined\r\n\r\n" + b"..\r\n" * 5 + b"y" * 200_000 + b"\r\n"
    script = (
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
        + content
        + b".\r\nQUIT\r\n"
    )
    got, calls, _ = both(dialogue([script]))
    assert b"354" in got and b"250 2.0.0 Stored" in got
    stored = [c for c in calls if isinstance(c, tuple) and c[0] == "stored"]
    assert stored == [("stored", content.replace(b"\r\n..", b"\r\n."))]


# -- writes that do not go out whole ------------------------------------------------


def test_replies_larger_than_the_socket_buffers_arrive_whole() -> None:
    # some 500 EHLO replies pipelined: writes of 64 KiB and more to a
    # server socket with a small send buffer and a peer that reads only at
    # the end, so that the first send of each is partial
    script = b"EHLO c.example\r\n" * 600 + b"QUIT\r\n"

    async def peer(client: trio.SocketStream) -> bytes:
        await client.send_all(script)
        await trio.testing.wait_all_tasks_blocked()
        return await read_to_end(client)

    got, calls, logs = both(peer, server_sndbuf=4096)
    assert got.count(b"250-mx.test Hello c.example\r\n") == 600
    assert got.endswith(b"closing connection\r\n")
    assert calls.count(("ehlo", "c.example")) == 600
    assert logs == []


def test_a_peer_that_never_reads_its_replies_times_the_write_out() -> None:
    script = b"EHLO c.example\r\n" * 3000

    async def peer(client: trio.SocketStream) -> bytes:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await client.send_all(script)
        # never read: the server's write waits, then times out
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def bounded(client: trio.SocketStream) -> bytes:
        with trio.move_on_after(3):
            await peer(client)
        return b""

    _, calls, logs = both(bounded, server_sndbuf=4096, read_timeout=0.3)
    assert calls[-1] == "close"
    assert logs == [""]  # TooSlowError, as trio.fail_after raises it


# -- the peer going away, or silent ---------------------------------------------------


def test_a_reset_mid_message_aborts_it_with_the_same_log() -> None:
    async def peer(client: trio.SocketStream) -> bytes:
        await client.send_all(
            b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
            b"Subject: cut\r\n\r\nhalf a message\r\n"
        )
        await trio.testing.wait_all_tasks_blocked()
        # an abortive close: RST, not FIN
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.socket.close()
        return b""

    _, calls, logs = both(peer)
    assert calls[-2:] == [("aborted", b"Subject: cut\r\n\r\nhalf a message\r\n"), "close"]
    assert logs == ["socket connection broken: [Errno 104] Connection reset by peer"]


def test_the_peer_closing_mid_message_aborts_it() -> None:
    async def peer(client: trio.SocketStream) -> bytes:
        await client.send_all(
            b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
            b"Subject: cut\r\n\r\nhalf"
        )
        await trio.testing.wait_all_tasks_blocked()
        await client.send_eof()
        return await read_to_end(client)

    got, calls, _ = both(peer)
    assert got.startswith(b"220 ") and b"354" in got
    assert calls[-1] == "close" and any(c[0] == "aborted" for c in calls if type(c) is tuple)


def test_a_silent_peer_times_out_the_same() -> None:
    async def peer(client: trio.SocketStream) -> bytes:
        await client.send_all(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n")
        return await read_to_end(client)

    got, calls, logs = both(peer, read_timeout=0.2)
    assert got.startswith(b"220 ") and got.endswith(b"250 2.1.0 Sender OK\r\n")
    assert calls[-1] == "close"
    assert logs == [""]


# -- reading without waiting still lets the others run --------------------------------


class _Ticks(Recorder):
    """Notes, at each piece of content, how far another task has got."""

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.seen: list[int] = []

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        ticks = self

        class Writer(MessageWriter):
            def write(self, data: bytes) -> None:
                ticks.seen.append(ticks.ticks)

            def close(self) -> Reply:
                return Reply(250, "ok", "2.0.0")

        return Writer()


@pytest.mark.parametrize("general", [False, True], ids=["fast", "general"])
def test_reads_that_need_no_wait_still_let_other_tasks_run(general: bool) -> None:
    # 1 MiB of content sent before the server reads any of it (the socket
    # buffers hold it): most reads find data waiting.  Each must still be a
    # checkpoint, as trio's own reads are, or one busy peer would hold the
    # whole server (and its cancellation) until it paused.
    handler = _Ticks()
    content = (b"z" * 998 + b"\r\n") * 1024
    script = (
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
        + content
        + b".\r\nQUIT\r\n"
    )

    async def main() -> None:
        with trio.fail_after(LIMIT):
            [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
            listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            port = listener.socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                client = await trio.open_tcp_stream("127.0.0.1", port)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
                stream = await listener.accept()

                async def send() -> None:
                    await client.send_all(script)

                nursery.start_soon(send)
                await trio.testing.wait_all_tasks_blocked()

                async def tick() -> None:
                    while True:
                        handler.ticks += 1
                        await trio.lowlevel.checkpoint()

                nursery.start_soon(tick)
                await trio_io.run_session(handler, stream, hostname="mx.test")
                nursery.cancel_scope.cancel()
            await client.aclose()
            await listener.aclose()

    with general_path(general):
        trio.run(main)
    assert len(handler.seen) > 8
    # the other task ran between the reads (a read may make two pieces)
    assert len(set(handler.seen)) > len(handler.seen) // 2


def test_the_fast_path_is_taken_on_a_plain_socket_stream() -> None:
    async def main() -> Any:
        a, b = trio.socket.socketpair()
        with a, b:
            return trio_io._plain_socket(trio.SocketStream(a))

    assert isinstance(trio.run(main), socket.socket)


# -- serve(): accepting straight on the listening socket -------------------------------


def _serve_burst(general: bool, max_connections: int, clients: int) -> list[bytes]:
    """``clients`` connections at once to serve(); what each got (sorted)."""
    from smtp_rtls.handlers import Sink

    script = (
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
        b"Subject: burst\r\n\r\nhello\r\n.\r\nQUIT\r\n"
    )
    got: list[bytes] = []

    async def main() -> None:
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                server = await nursery.start(
                    lambda task_status: trio_io.serve(
                        Sink(),
                        "127.0.0.1",
                        0,
                        hostname="mx.test",
                        max_connections=max_connections,
                        task_status=task_status,
                    )
                )
                streams = [
                    await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(clients)
                ]
                await trio.testing.wait_all_tasks_blocked()
                for stream in streams:
                    with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError):
                        await stream.send_all(script)
                for stream in streams:
                    got.append(await read_to_end(stream))
                    await stream.aclose()
                await server.shutdown(1)
                nursery.cancel_scope.cancel()

    with general_path(general):
        trio.run(main)
    return sorted(got)


@pytest.mark.parametrize("limit", [100, 3])
def test_serve_takes_a_burst_of_connections_the_same(limit: int) -> None:
    fast = _serve_burst(False, limit, 12)
    assert fast == _serve_burst(True, limit, 12)
    stored = [g for g in fast if b"250 2.0.0 Accepted" in g]
    assert len(stored) == min(limit, 12)
    refused = [g for g in fast if g.startswith(b"421 ")]
    assert len(refused) == 12 - len(stored)


def test_run_session_on_a_connection_reset_before_it_began_returns() -> None:
    # trio's run_session asks the socket for the peer's address; a peer
    # that has reset the connection already has none (ENOTCONN): there is
    # no session, and nothing is raised into the caller's nursery.
    recorder = Recorder()

    async def main() -> None:
        with trio.fail_after(LIMIT):
            [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listener.socket.getsockname()[1]
            peer = socket.create_connection(("127.0.0.1", port), timeout=5)
            stream = await listener.accept()
            await listener.aclose()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # an RST
            await trio.sleep(0.05)
            await trio_io.run_session(recorder, stream, hostname="mx.test")
            assert stream.socket.fileno() == -1  # closed

    with trio_logs() as logs:
        trio.run(main)
    assert recorder.calls == []
    assert any("ended before its session began" in line for line in logs), logs
