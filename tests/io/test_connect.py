"""connect(): the step-by-step client over real loopback sockets and real TLS,
against our own servers and aiosmtpd."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trustme
from aiosmtpd.controller import Controller

from smtp_rtls import Reply, RequireTLSError, ServerConfig, State
from smtp_rtls.handlers import PasswordAuth, Sink
from smtp_rtls.io import asyncio as aio
from smtp_rtls.io import sync
from smtp_rtls.io import trio as trio_io
from smtp_rtls.io.tls import server_context
from smtp_rtls.policy.tags import TLSTag
from smtp_rtls.session.server import SessionInfo


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert = ca.issue_cert("mx.test.example", "localhost")
    folder = tmp_path_factory.mktemp("pki")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    return server_context(str(folder / "server.pem"))


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class Submission(PasswordAuth, Sink):
    def check_password(self, username: str, password: str) -> bool:
        return (username, password) == ("alice", "pw")


@pytest.fixture
def submission(tls: ssl.SSLContext) -> Iterator[tuple[Submission, sync.Server]]:
    handler = Submission()
    config = ServerConfig(starttls=True, auth_mechanisms=("PLAIN", "LOGIN"))
    server = sync.serve(handler, "127.0.0.1", 0, tls=tls, config=config, hostname="mx")
    try:
        yield handler, server
    finally:
        server.shutdown(5)


@pytest.mark.parametrize("mechanism", [None, "LOGIN"])
def test_submission_starttls_auth_requiretls_rfc8689_rfc4954(
    submission: tuple[Submission, sync.Server], client_tls: ssl.SSLContext, mechanism: str | None
) -> None:
    handler, server = submission
    with sync.connect(
        "127.0.0.1",
        server.port,
        local_hostname="client.example",
        server_hostname="mx.test.example",
        timeout=10,
    ) as client:
        assert client.greeting is not None and client.greeting.code == 220
        # RFC 8689 §2: REQUIRETLS cannot even be written before TLS
        with pytest.raises(RequireTLSError):
            client.send("alice@example.org", ["bob@example.net"], b"x", requiretls=True)
        info = client.starttls(client_tls)
        assert info.verified_name == "mx.test.example" and client.conn.state is State.READY
        assert client.login("alice", "pw", mechanism).code == 235
        result = client.send(
            "alice@example.org",
            ["bob@example.net", "carol@example.net"],
            b"Subject: hi\r\n\r\n.dot\r\n",
            requiretls=True,
        )
        assert result.data is not None and result.data.code == 250
        assert [str(r.forward_path) for r in result.accepted] == [
            "bob@example.net",
            "carol@example.net",
        ]
        client.quit()
    [envelope] = handler.envelopes
    assert envelope.tag is TLSTag.REQUIRETLS and envelope.session.authenticated == "alice"


def test_a_wrong_certificate_name_fails_the_handshake(
    submission: tuple[Submission, sync.Server], client_tls: ssl.SSLContext
) -> None:
    _handler, server = submission
    client = sync.connect("127.0.0.1", server.port, server_hostname="other.example", timeout=10)
    with client, pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(client_tls)


def test_implicit_tls_rfc8314_3(tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    sink = Sink()
    server = sync.serve(sink, "127.0.0.1", 0, tls=tls, implicit_tls=True, hostname="mx")
    try:
        with sync.connect(
            "127.0.0.1",
            server.port,
            implicit_tls=True,
            tls_context=client_tls,
            server_hostname="mx.test.example",
            timeout=10,
        ) as client:
            assert client.conn.tls is not None
            assert client.conn.capabilities is not None
            assert "REQUIRETLS" in client.conn.capabilities
            client.send(
                "a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx", requiretls=True
            )
            client.quit()
    finally:
        server.shutdown(5)
    assert sink.envelopes[0].tag is TLSTag.REQUIRETLS


class _Collect:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.mark.interop("aiosmtpd", "connect(): byte-exact content")
def test_against_aiosmtpd_the_content_arrives_byte_exact() -> None:
    collect = _Collect()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(collect, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        message = b"Subject: x\r\n\r\n..two\r\ncaf\xc3\xa9\r\n"
        with sync.connect("127.0.0.1", port, timeout=10) as client:
            result = client.send("a@example.org", ["b@example.net"], message)
            assert result.data is not None and result.data.code == 250
            client.quit()
    finally:
        controller.stop()
    [envelope] = collect.envelopes
    assert envelope.original_content == message


def test_a_refused_greeting_raises() -> None:
    class Refuse(Sink):
        def on_connect(self, session: SessionInfo) -> Any:
            return Reply(554, "no service here", "5.7.1")

    server = sync.serve(Refuse(), "127.0.0.1", 0, hostname="mx")
    try:
        with pytest.raises(ConnectionError, match="554"):
            sync.connect("127.0.0.1", server.port, timeout=10)
    finally:
        server.shutdown(5)


async def _submit_async(module: Any, port: int, client_tls: ssl.SSLContext) -> Any:
    client = await module.connect(
        "127.0.0.1",
        port,
        local_hostname="client.example",
        server_hostname="mx.test.example",
        timeout=10,
    )
    async with client:
        with pytest.raises(RequireTLSError):
            await client.send("a@example.org", ["b@example.net"], b"x", requiretls=True)
        info = await client.starttls(client_tls)
        assert info.verified_name == "mx.test.example"
        assert (await client.login("alice", "pw")).code == 235
        result = await client.send(
            "alice@example.org", ["bob@example.net"], b"Subject: hi\r\n\r\nx\r\n", requiretls=True
        )
        await client.quit()
    return result


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_the_asynchronous_clients_run_the_same_submission(
    submission: tuple[Submission, sync.Server], client_tls: ssl.SSLContext, loop: str
) -> None:
    handler, server = submission
    if loop == "asyncio":
        result = asyncio.run(_submit_async(aio, server.port, client_tls))
    else:
        result = trio.run(_submit_async, trio_io, server.port, client_tls)
    assert result.data is not None and result.data.code == 250
    [envelope] = handler.envelopes
    assert envelope.tag is TLSTag.REQUIRETLS and envelope.session.authenticated == "alice"


def test_a_reply_trickled_byte_by_byte_is_read_whole_rfc5321_4_2() -> None:
    """A server that writes its replies one octet at a time (a slow or hostile
    peer): the client reads each reply whole, in order, and nothing is lost."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    lines = {
        b"EHLO": b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
        b"MAIL": b"250 2.1.0 ok\r\n",
        b"RCPT": b"250 2.1.5 ok\r\n",
        b"DATA": b"354 go\r\n",
        b"QUIT": b"221 bye\r\n",
    }
    got = bytearray()

    def trickle(conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])
            time.sleep(0.001)

    def peer() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            trickle(conn, b"220 mx.example ESMTP\r\n")
            pending = b""
            try:
                while data := conn.recv(4096):
                    got.extend(data)
                    pending += data
                    while b"\r\n" in pending:
                        line, pending = pending.split(b"\r\n", 1)
                        if line == b".":
                            trickle(conn, b"250 2.0.0 queued\r\n")
                        elif line[:4] in lines and (line[:4] != b"DATA" or len(line) == 4):
                            trickle(conn, lines[line[:4]])
            except OSError:
                return

    thread = threading.Thread(target=peer)
    thread.start()
    try:
        with sync.connect("127.0.0.1", port, local_hostname="c.example", timeout=10) as client:
            assert client.conn.capabilities is not None
            assert "PIPELINING" in client.conn.capabilities
            result = client.send("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n")
            assert result.data is not None and result.data.code == 250
            client.quit()
    finally:
        listener.close()
        thread.join(10)
    assert b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" in got


def test_blocking_sockets_send_small_writes_at_once() -> None:
    # The final "." after the content and each reply are small writes after
    # another write: with Nagle's algorithm they wait for the peer's delayed
    # ACK (40 ms on Linux) once per message.  asyncio and trio turn it off
    # for every TCP socket; the blocking adapter must too, on both sides.
    with sync.serve(Sink(), "127.0.0.1", 0, hostname="mx.test.example") as server:
        client = sync.connect("127.0.0.1", server.port, timeout=10)
        try:
            assert client.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            deadline = time.monotonic() + 5
            while not server._sessions and time.monotonic() < deadline:
                time.sleep(0.01)
            (accepted,) = server._sessions.values()
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            client.quit()


@pytest.mark.parametrize("kind", ["sync", "asyncio", "trio"])
def test_a_silent_server_ends_connect_after_the_timeout_rfc5321_4_5_3_2(kind: str) -> None:
    """The greeting never comes: connect() gives up after ``timeout``, with
    ConnectionError, on every adapter (a wait without a bound would hang the
    caller forever)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            if kind == "sync":
                sync.connect("127.0.0.1", port, local_hostname="c.example", timeout=0.3)
            elif kind == "asyncio":
                asyncio.run(
                    aio.connect("127.0.0.1", port, local_hostname="c.example", timeout=0.3)
                )
            else:
                trio.run(
                    lambda: trio_io.connect(
                        "127.0.0.1", port, local_hostname="c.example", timeout=0.3
                    )
                )
        # a safety bound, not a speed claim: the wait ended by the timeout,
        # not by the listener going away (it is still open)
        assert time.monotonic() - started < 10
    finally:
        listener.close()
