"""Resource exhaustion of the server, through the real adapters.

Each test attacks a server process of one adapter kind (conftest.py) from a
raw loopback socket, checks the reply or the close that stops the attack,
and bounds in bytes the server's peak resident memory during it (read from
/proc, see exhaustion_proc.py).  Times appear only as safety timeouts.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

import pytest

from adapters import KINDS

from .conftest import MESSAGE_LIMIT
from .exhaustion_proc import (
    KiB,
    MiB,
    ServerProcess,
    connect,
    measured,
    read_reply,
    read_until_closed,
)

Attacked = Callable[..., ServerProcess]


@pytest.mark.parametrize("kind", KINDS)
def test_an_endless_command_line_gets_500_and_is_discarded_rfc5321_4_5_3_1_4(
    kind: str, attacked: Attacked
) -> None:
    srv = attacked(kind)
    with connect(srv.port) as sock:
        srv.reset_peak()
        sock.sendall(b"NOOP ")
        block = b"x" * (64 * KiB)
        for _ in range(32 * MiB // len(block)):  # 32 MiB without a line end
            sock.sendall(block)
        sock.sendall(b"\r\nNOOP\r\n")
        # RFC 5321 §4.5.3.1.4 / §4.5.3.1.9: "500 Line too long", once; the
        # rest is dropped as it arrives, up to the CRLF, so the session stays
        # in step and the next command is answered.
        assert read_reply(sock).startswith(b"500 5.5.2 ")
        assert read_reply(sock).startswith(b"250 ")
        growth = srv.peak_growth()
    # the line buffer holds at most max_command_line octets: only the read
    # buffers (64 KiB, asyncio 256 KiB) and allocator noise remain
    measured("endless command line", kind, growth)
    assert growth <= 2 * MiB, growth


# 251 octets: the longest name the EHLO reply repeats, so that the replies
# (about 400 octets each, 4 MB for 10,000) outgrow the kernel's buffers.
_LONG_NAME = b".".join([b"a" * 62] * 4)


@pytest.mark.parametrize("kind", KINDS)
def test_10000_pipelined_commands_never_read_stop_the_reading_and_time_out(
    kind: str, attacked: Attacked
) -> None:
    srv = attacked(kind)
    fds = srv.fds()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    with sock:
        # a small receive window: the replies stay on the server's side
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KiB)
        assert read_reply(sock).startswith(b"220 ")
        srv.reset_peak()
        flood = b"EHLO " + _LONG_NAME + b"\r\n"
        sent = 0
        with contextlib.suppress(OSError):  # the server may close before the end
            for _ in range(10_000):
                sock.sendall(flood)
                sent += 1
        # RFC 2920 §3.1 lets a client pipeline, not make the server buffer
        # its replies without end: its writes block, it reads no more, and
        # a write the peer does not take within the read timeout ends the
        # session (while this client keeps the connection open).
        assert srv.wait_active(0, timeout=30) == 0
        # ... and the socket is closed with it: were it left to drain (a
        # graceful close), the unsent replies and the descriptor would stay
        # until the peer reads, outside max_connections
        assert srv.wait_fds(fds) == fds
        growth = srv.peak_growth()
        answered = read_until_closed(sock).count(b"250 ENHANCEDSTATUSCODES\r\n")
    measured("10,000 pipelined EHLO, unread", kind, growth)
    assert answered < 10_000
    assert growth <= 8 * MiB, growth


# The blocking adapter (as trio: a write waits) and asyncio (as uvloop: a
# write is buffered, and the session waits for resume_writing): about 5 s
# each, for 20 sessions to time out
@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_pipelined_commands_never_read_do_not_pile_up_replies_rfc2920_3_1(
    kind: str, attacked: Attacked
) -> None:
    # An EHLO reply is some 17 times its command ("EHLO x"): 20 peers that
    # each send what their connection takes of 256 KiB of them and never
    # read.  The server answers as it goes (MAX_PENDING_REPLIES, 64 KiB, of
    # replies at most before a write) and stops there while the peer does
    # not read; before, a whole read's replies piled up first (1.2 to 2.6
    # MB a connection).
    srv = attacked(kind)
    count = 20
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * KiB)
            assert read_reply(sock).startswith(b"220 ")
            socks.append(sock)
        srv.reset_peak()
        flood = b"EHLO x\r\n" * (256 * KiB // 8)
        for sock in socks:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.send(flood)
        # the write timeout (read_timeout) ends each session
        assert srv.wait_active(0, timeout=30) == 0
        per_connection = srv.peak_growth() // count
    finally:
        for sock in socks:
            sock.close()
    measured("256 KiB of pipelined EHLO, unread, per connection", kind, per_connection)
    assert per_connection <= 512 * KiB, per_connection


@pytest.mark.parametrize("kind", KINDS)
def test_100000_recipients_stop_at_the_limit_rfc5321_4_5_3_1_10(
    kind: str, attacked: Attacked
) -> None:
    srv = attacked(kind)
    with connect(srv.port) as sock:
        srv.reset_peak()
        got = bytearray()

        def read() -> None:
            got.extend(read_until_closed(sock))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            with contextlib.suppress(OSError):  # closed after the 421
                sock.sendall(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n")
                rcpts = b"".join(b"RCPT TO:<r%d@d.example>\r\n" % i for i in range(1000))
                for _ in range(100):  # 100,000 recipients, pipelined
                    sock.sendall(rcpts)
        finally:
            reader.join(30)
        assert not reader.is_alive()
        growth = srv.peak_growth()
    codes = [line[:3] for line in bytes(got).split(b"\r\n") if line[3:4] == b" "]
    # RFC 5321 §4.5.3.1.8: at least 100 recipients; the server's limit is
    # max_recipients (1000); the next get "452 4.5.3" (§4.5.3.1.10) until
    # max_errors (20) refusals in a row end the session with 421 (§3.8).
    assert codes[:2] == [b"250", b"250"]
    assert codes[2:1002] == [b"250"] * 1000
    assert set(codes[1002:-1]) == {b"452"}
    assert b"452 4.5.3 " in got
    assert codes[-1] == b"421" and len(codes) < 1100
    measured("100,000 RCPT", kind, growth)
    assert growth <= 4 * MiB, growth


@pytest.mark.parametrize("kind", KINDS)
def test_a_declared_size_of_2_gib_is_refused_552_rfc1870_6_1(
    kind: str, attacked: Attacked
) -> None:
    srv = attacked(kind)
    with connect(srv.port) as sock:
        srv.reset_peak()
        sock.sendall(b"EHLO c.example\r\n")
        assert b"250-SIZE %d\r\n" % MESSAGE_LIMIT in read_reply(sock)
        sock.sendall(b"MAIL FROM:<a@b.example> SIZE=%d\r\n" % (2 * 1024 * MiB))
        # RFC 1870 §6.1: a declared size above the fixed maximum is refused
        # before any content is sent; nothing is reserved for it.
        assert read_reply(sock).startswith(b"552 5.3.4 ")
        sock.sendall(b"NOOP\r\n")
        assert read_reply(sock).startswith(b"250 ")
        growth = srv.peak_growth()
    measured("SIZE=2 GiB", kind, growth)
    assert growth <= 1 * MiB, growth


# 1 GiB through the blocking and the asyncio adapter (a thread's blocking
# reads and an event loop's callbacks: the two ways content is read), about
# 5 s each on the reference machine; 64 MiB (6.4 times the limit) through
# uvloop and trio, whose reading is asyncio's and the blocking one's again.
_STREAMS = [
    ("sync", 1024 * MiB),
    ("asyncio", 1024 * MiB),
    ("uvloop", 64 * MiB),
    ("trio", 64 * MiB),
]


@pytest.mark.parametrize(("kind", "total"), _STREAMS)
def test_a_1_gib_message_is_read_to_its_end_then_refused_552_rfc1870_6_1(
    kind: str, total: int, attacked: Attacked
) -> None:
    srv = attacked(kind)
    with connect(srv.port, timeout=60) as sock:
        sock.sendall(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
        for _ in range(3):
            assert read_reply(sock)[:1] == b"2"
        sock.sendall(b"DATA\r\n")
        assert read_reply(sock).startswith(b"354 ")
        srv.reset_peak()
        line = b"x" * 78 + b"\r\n"
        block = line * (MiB // len(line))  # made once, sent again and again
        sent = 0
        while sent < total:
            sock.sendall(block)
            sent += len(block)
        # RFC 1870 §6.1 / RFC 5321 §4.5.3.1.10: the server keeps reading to
        # the real end of the data; no reply may come before it (it would be
        # read as the reply to the end of data, out of step).
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1, socket.MSG_PEEK)
        sock.settimeout(60)
        sock.sendall(b".\r\nNOOP\r\n")
        assert read_reply(sock).startswith(b"552 5.3.4 ")
        assert read_reply(sock).startswith(b"250 ")
        growth = srv.peak_growth()
    measured(f"{total // MiB} MiB DATA", kind, growth)
    assert sent >= total > 6 * MESSAGE_LIMIT
    # memory stays flat: nothing past the limit is kept (the content is
    # counted and dropped), whatever the size of the stream
    assert growth <= 8 * MiB, growth


@pytest.mark.parametrize("kind", KINDS)
def test_a_byte_by_byte_trickle_is_bounded_by_the_line_limit_rfc5321_4_5_3_1_4(
    kind: str, attacked: Attacked
) -> None:
    srv = attacked(kind)
    count = 100
    socks = [connect(srv.port) for _ in range(count)]
    try:
        for s in socks:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        srv.reset_peak()
        # one octet per write, round-robin: 100 connections each hold a
        # command line of 400 octets that never ends (below the limit)
        for _ in range(400):
            for s in socks:
                s.send(b"x")
        assert srv.active() == count
        per_connection = srv.growth() // count
        # the same trickle past max_command_line (512): 500 and the
        # session goes on in step
        first = socks[0]
        for _ in range(200):
            first.send(b"x")
        first.sendall(b"\r\nNOOP\r\n")
        assert read_reply(first).startswith(b"500 5.5.2 ")
        assert read_reply(first).startswith(b"250 ")
        # RFC 5321 §4.5.3.2: a peer that stops trickling is closed after
        # the read timeout (the command deadline, 10 minutes, cuts one that
        # goes on trickling: see test_session_server.py)
        for s in socks[1:]:
            assert read_until_closed(s) == b""
        assert srv.wait_active(0) == 0
    finally:
        for s in socks:
            s.close()
    measured("trickle, per connection", kind, per_connection)
    # the blocking adapter's thread per connection; a task or protocol object
    assert per_connection <= (128 * KiB if kind == "sync" else 32 * KiB), per_connection
