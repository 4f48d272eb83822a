"""Resource exhaustion by connections: thousands of idle ones, and TLS
handshakes never finished, through the real adapters.

The memory a connection holds is the server's resident growth (from /proc,
see exhaustion_proc.py) divided by the connections held, asserted in bytes;
the timeouts that end them are asserted by the close each client sees and
by the server's count of sessions, with times only as safety bounds.
"""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import ssl
from collections.abc import Callable, Iterator

import pytest

from .conftest import MAX_CONNECTIONS
from .exhaustion_proc import KiB, ServerProcess, connect, measured, read_reply, read_until_closed

Attacked = Callable[..., ServerProcess]
#: The idle timeout (read_timeout) of the server of the idle connections.
IDLE_TIMEOUT = 5.0


@pytest.fixture
def many_sockets() -> Iterator[None]:
    """Room for thousands of sockets in this process (the soft limit raised
    to the hard one for the test, then put back)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * MAX_CONNECTIONS
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"needs {want} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF or a reset) before the
    socket's own timeout, with nothing sent on it."""
    try:
        return read_until_closed(sock) == b""
    except TimeoutError:
        return False


# Thousands of connections through the asyncio adapter (a protocol object
# each: what uvloop shares), a thousand through the blocking one (a thread
# each, the costliest, and the slowest to open); trio's tasks are measured
# by the handshake test below.
@pytest.mark.parametrize(("kind", "count"), [("sync", 1000), ("asyncio", MAX_CONNECTIONS)])
def test_thousands_of_idle_connections_cost_bounded_bytes_and_time_out_rfc5321_4_5_3_2(
    kind: str, count: int, attacked: Attacked, many_sockets: None
) -> None:
    # a longer idle timeout than the other attacks': none of the
    # connections may time out before the last one is open
    srv = attacked(kind, read_timeout=IDLE_TIMEOUT, max_connections=count)
    srv.reset_peak()
    socks: list[socket.socket] = []
    try:
        while len(socks) < count:
            # in steps below the listening backlog (100 for asyncio), so
            # that no SYN is dropped and retried a second later
            for _ in range(min(90, count - len(socks))):
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
            assert srv.wait_active(len(socks)) == len(socks)
        for s in socks:
            assert read_reply(s).startswith(b"220 ")
        per_connection = srv.growth() // count
        # RFC 5321 §3.8 / §4.2.2: one more than max_connections gets 421
        # and the close, and costs nothing more
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as extra:
            assert read_until_closed(extra).startswith(b"421 4.3.2 ")
        # RFC 5321 §4.5.3.2: the idle timeout (read_timeout) closes them all
        assert all(_closed_by_server(s) for s in socks)
        assert srv.wait_active(0) == 0
    finally:
        for s in socks:
            s.close()
    measured(f"{count} idle connections, per connection", kind, per_connection)
    # a thread's stack pages and state for the blocking adapter, a
    # protocol object and its session for asyncio
    assert per_connection <= (96 * KiB if kind == "sync" else 16 * KiB), per_connection


def _client_hello() -> bytes:
    """The first flight of a real TLS client: its ClientHello."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="mx.test.example")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _trickle_handshake(port: int, cap: int = 60) -> int:
    """STARTTLS, then a ClientHello an octet at a time, 0.2 s apart, until
    the server closes (at most ``cap`` octets, 12 s: a safety bound);
    return the octets sent."""
    hello = _client_hello()
    with connect(port) as sock:
        sock.sendall(b"STARTTLS\r\n")
        assert read_reply(sock).startswith(b"220 ")
        for sent in range(min(cap, len(hello))):
            try:
                sock.send(hello[sent : sent + 1])
                if select.select([sock], [], [], 0.2)[0] and not sock.recv(1):
                    return sent + 1  # the server closed
            except OSError:
                return sent + 1
        return cap


# The start of a ClientHello: a handshake record header announcing 512
# octets, and 5 of them.
_PARTIAL_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03"


@pytest.mark.parametrize("kind", ["sync", "asyncio", "uvloop", "trio"])
def test_tls_handshakes_never_finished_are_cut_by_the_handshake_timeout_rfc3207_4(
    kind: str, attacked: Attacked, many_sockets: None
) -> None:
    srv = attacked(kind)
    count = 100
    srv.reset_peak()
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = connect(srv.port)
            socks.append(sock)
            sock.sendall(b"EHLO c.example\r\n")
            assert b"STARTTLS\r\n" in read_reply(sock)
            sock.sendall(b"STARTTLS\r\n")
            assert read_reply(sock).startswith(b"220 ")
            # RFC 3207 §4: the handshake starts now; it never ends
            sock.sendall(_PARTIAL_HELLO)
        assert srv.active() == count
        per_connection = srv.growth() // count
        # one more trickles a real ClientHello, an octet every 0.2 s: each
        # read comes well within the read timeout, so only a deadline on
        # the whole handshake stops it, long before its 517 octets
        trickled = _trickle_handshake(srv.port)
        # the handshake timeout (read_timeout) ends each of them: the
        # server closes, with no plaintext word after its 220
        assert all(_closed_by_server(s) for s in socks)
        assert srv.wait_active(0) == 0
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
    measured(f"{count} unfinished TLS handshakes, per connection", kind, per_connection)
    assert trickled < 30, trickled
    # asyncio's own TLS layer (asyncio.sslproto.SSLProtocol, Python 3.11+)
    # allocates a 256 KiB read buffer for each TLS connection, from the
    # start of the handshake: the standard library's cost, not the adapter's
    bound = {"sync": 128 * KiB, "asyncio": 384 * KiB}.get(kind, 96 * KiB)
    assert per_connection <= bound, per_connection


@pytest.mark.parametrize("kind", ["sync", "asyncio", "trio"])
def test_a_server_out_of_file_descriptors_accepts_again_once_sessions_end(
    kind: str, attacked: Attacked
) -> None:
    # A flood of connections can use every descriptor the process may have
    # (max_connections above the limit), and accept() then fails with
    # EMFILE.  The listener is fine: once the sessions end, a new
    # connection must be served.  (The threaded and trio servers stopped
    # accepting for good at the first EMFILE.)
    srv = attacked(kind, max_fds=64, max_connections=1000)
    base = srv.fds()
    socks: list[socket.socket] = []
    try:
        for _ in range(120):  # more than 64: the rest wait in the backlog
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
        assert srv.wait_fds(64) == 64  # every descriptor in use
    finally:
        for s in socks:
            s.close()
    assert srv.wait_fds(base) == base  # the sessions ended (the backlog too)
    with connect(srv.port) as late:  # (its greeting read)
        late.sendall(b"NOOP\r\n")
        assert read_reply(late).startswith(b"250 ")
