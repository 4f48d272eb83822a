"""smtp_rtls.testing.mitm: the proxy does, octet for octet, what each mode
says, and stays within its bounds.  Real sockets and TLS on 127.0.0.1,
our own server behind it."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator

import pytest
from attack_helpers import TIMEOUT, RawClient

from smtp_rtls.io import sync
from smtp_rtls.testing.mitm import MODES, MitmProxy
from smtp_rtls.testing.peers import LoopbackCA
from smtp_rtls.testing.server import LoopbackServer

UNVERIFIED = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
UNVERIFIED.check_hostname = False
UNVERIFIED.verify_mode = ssl.CERT_NONE


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(read_timeout=TIMEOUT) as server:
        yield server


def ehlo(proxy: MitmProxy) -> tuple[RawClient, bytes]:
    client = RawClient(proxy.port)
    client.reply()
    client.send(b"EHLO c.example\r\n")
    offer = client.reply().format()
    return client, offer


def test_transparent_relays_every_octet_both_ways(server: LoopbackServer) -> None:
    with MitmProxy(server.port, timeout=TIMEOUT) as proxy:
        client, offer = ehlo(proxy)
        with client:
            assert b"250-STARTTLS" in offer or b"250 STARTTLS" in offer
            assert client.command(b"QUIT").code == 221
            assert client.closed_by_peer()
    [conn] = proxy.connections
    assert conn.to_server == conn.from_client == b"EHLO c.example\r\nQUIT\r\n"
    assert conn.to_client == conn.from_server == client.received
    assert conn.commands == [b"EHLO c.example", b"QUIT"] and conn.error is None


@pytest.mark.parametrize(
    ("mode", "offered"),
    [("strip-starttls", None), ("rename-starttls", b"XXXXXXXX")],
)
def test_the_ehlo_reply_loses_starttls_rfc3207_7(
    server: LoopbackServer, mode: str, offered: bytes | None
) -> None:
    with MitmProxy(server.port, mode=mode, timeout=TIMEOUT) as proxy:
        client, offer = ehlo(proxy)
        client.sock.close()
    assert b"STARTTLS" not in offer
    lines = offer.split(b"\r\n")[:-1]
    # still one well-formed reply: "-" on every line but the last
    assert all(line[3:4] == b"-" for line in lines[:-1]) and lines[-1][3:4] == b" "
    if offered:
        assert any(line[4:] == offered for line in lines)
    [conn] = proxy.connections
    assert b"STARTTLS" in conn.from_server  # the server did offer it


def test_refuse_starttls_answers_454_and_never_forwards_it(server: LoopbackServer) -> None:
    with MitmProxy(server.port, mode="refuse-starttls", timeout=TIMEOUT) as proxy:
        client, _ = ehlo(proxy)
        with client:
            reply = client.command(b"STARTTLS")
            assert (reply.code, str(reply.enhanced)) == (454, "4.7.0")
            assert client.command(b"NOOP").code == 250  # the session goes on
    [conn] = proxy.connections
    assert conn.to_server == b"EHLO c.example\r\nNOOP\r\n"
    assert conn.commands == [b"EHLO c.example", b"STARTTLS", b"NOOP"]


def test_terminate_tls_reads_a_client_that_does_not_verify(server: LoopbackServer) -> None:
    """A client that accepts any certificate is read in clear by the proxy:
    what every verifying client is protected from."""
    with LoopbackCA() as rogue:
        context = rogue.server_context("valid", ("mx.test.example",))
        with MitmProxy(server.port, mode="terminate-tls", tls_context=context) as proxy:
            client, _ = ehlo(proxy)
            with client:
                assert client.command(b"STARTTLS").code == 220
                client.sock = UNVERIFIED.wrap_socket(client.sock, server_hostname="x")
                issuer = client.sock.getpeercert(binary_form=True)
                assert issuer is not None
                assert client.command(b"EHLO c.example").code == 250
                assert client.command(b"QUIT").code == 221
    [conn] = proxy.connections
    assert conn.tls and conn.intercepted == b"EHLO c.example\r\nQUIT\r\n"


def test_corrupt_tls_breaks_the_first_record_after_the_handshake(
    server: LoopbackServer,
) -> None:
    with MitmProxy(server.port, mode="corrupt-tls", timeout=TIMEOUT) as proxy:
        client, _ = ehlo(proxy)
        with client:
            assert client.command(b"STARTTLS").code == 220
            client.sock = server.client_context().wrap_socket(
                client.sock, server_hostname="mx.test.example"
            )  # the handshake itself is relayed untouched
            with pytest.raises(ssl.SSLError, match=r"BAD_RECORD_MAC|DECRYPTION_FAILED"):
                client.command(b"EHLO c.example")
    [conn] = proxy.connections
    assert conn.tls and conn.corrupted >= 1


def test_the_proxy_is_bounded(server: LoopbackServer) -> None:
    with MitmProxy(server.port, timeout=TIMEOUT, max_connections=1, max_bytes=200) as proxy:
        first = RawClient(proxy.port)
        first.reply()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as second:
            assert second.recv(10) == b""  # one connection at a time: closed
        first.send(b"NOOP " + b"x" * 300 + b"\r\n")  # more than max_bytes
        assert first.closed_by_peer()
        first.sock.close()
    [conn] = proxy.connections
    assert conn.error is not None and "200" in conn.error
    assert len(conn.to_server) <= 200


def test_the_proxy_gives_up_on_silence() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as silent,
        MitmProxy(silent.getsockname()[1], timeout=0.3) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock,
    ):
        assert sock.recv(10) == b""  # cut after 0.3 s of silence
    assert proxy.connections[0].error == "timeout"


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        MitmProxy(25, mode="nonsense")
    with pytest.raises(ValueError, match="tls_context"):
        MitmProxy(25, mode="terminate-tls")
    assert len(MODES) == 6


def test_the_docstring_example(server: LoopbackServer) -> None:
    with MitmProxy(server.port, mode="strip-starttls") as mitm, sync.connect(
        "127.0.0.1", mitm.port, local_hostname="c.example",
        server_hostname=server.hostname, timeout=5,
    ) as client:  # fmt: skip
        assert "STARTTLS" not in client.conn.capabilities
    assert b"STARTTLS" not in mitm.connections[0].to_client


def test_importing_it_does_not_import_hypothesis() -> None:
    code = "import sys, smtp_rtls.testing.mitm; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
