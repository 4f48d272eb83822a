"""STARTTLS injection (CVE-2011-0411) both ways, through every adapter,
split at every octet boundary of the bytes around the injection.

RFC 3207 §4.2 (and §4, "the server MUST discard any knowledge obtained
from the client" before TLS): whatever follows the STARTTLS line in
plaintext was written by whoever is on the path, not by the peer that will
hold the TLS session.

* Server side: a client writes ``STARTTLS\\r\\nMAIL FROM:<...>\\r\\n`` cut
  in two at each boundary (two TCP segments, TCP_NODELAY and a pause).
  The serve() of every adapter never runs the injected MAIL and closes the
  connection: either it saw the octets behind STARTTLS, or its handshake
  reads them as a broken ClientHello.
* Client side: a scripted server answers STARTTLS with
  ``220 go ahead\\r\\n250 injected\\r\\n`` cut likewise.  The connect() client
  of every adapter fails STARTTLS with an error (RemoteProtocolError when it
  sees the octets after the 220, a TLS error when they arrive inside its
  handshake) and never takes the injected 250 for the reply to a later
  command: after STARTTLS it writes no plaintext command at all.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trio
from attack_helpers import TIMEOUT, RawClient, Watching, connect, run

from adapters import KINDS, running
from smtp_rtls import ProtocolError, RemoteProtocolError
from smtp_rtls.testing.peers import LoopbackCA

INJECTION = b"STARTTLS\r\nMAIL FROM:<mallory@attacker.example>\r\n"
INJECTED_REPLIES = b"220 go ahead\r\n250 injected\r\n"
UNVERIFIED = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
UNVERIFIED.check_hostname = False
UNVERIFIED.verify_mode = ssl.CERT_NONE


@pytest.fixture(scope="module")
def ca() -> Iterator[LoopbackCA]:
    with LoopbackCA() as ca:
        yield ca


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest, ca: LoopbackCA) -> Iterator[tuple[object, Watching]]:
    """One STARTTLS server per adapter, shared by the split positions."""
    handler = Watching()
    with running(request.param, handler, tls=ca.server_context(), read_timeout=TIMEOUT) as srv:
        yield srv, handler


@pytest.mark.parametrize("cut", range(1, len(INJECTION)))
def test_commands_injected_after_starttls_never_run_rfc3207_4_2(
    server: tuple[object, Watching], cut: int
) -> None:
    srv, handler = server
    with RawClient(srv.port) as client:  # type: ignore[attr-defined]
        assert client.reply().code == 220
        assert client.command(b"EHLO client.test.example").code == 250
        client.send(INJECTION[:cut], INJECTION[cut:])
        # the STARTTLS is answered 220, and nothing else in plaintext
        assert client.reply().code == 220 and client.buffer == b""
        # The client the attacker sits in front of now runs its handshake.
        # Either the injected octets reached the server's handshake (it
        # fails) or they wait in its buffer: then it closes right after the
        # handshake without a word inside TLS (RFC 3207 §4.2).
        try:
            client.sock = UNVERIFIED.wrap_socket(client.sock, server_hostname="mx.test.example")
        except (ssl.SSLError, OSError):
            # the server took the injected octets for a ClientHello, failed
            # and closed (ssl closed our side with it)
            pass
        else:
            client.send(b"EHLO client.test.example\r\n")
            assert client.closed_by_peer()
            assert client.buffer == b""
    assert handler.senders == []


class InjectingServer:
    """A scripted server for one connection: greeting, an EHLO reply with
    STARTTLS, then ``INJECTED_REPLIES`` cut at ``cut``, two segments, then
    a real TLS handshake with a certificate the client trusts and, inside,
    an honest EHLO reply offering REQUIRETLS: a client that kept the
    injected 250 would go on with it.  It records every octet the client
    sends after its STARTTLS line (``after_starttls``) and inside TLS
    (``encrypted``)."""

    def __init__(self, cut: int, tls: ssl.SSLContext) -> None:
        self.cut = cut
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.after_starttls = b""
        #: What the client sent inside TLS (a handshake succeeded).
        self.encrypted = b""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError as exc:
            self.error = exc
            return
        with sock:
            sock.settimeout(TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = RawClient.__new__(RawClient)  # its reading half, on our socket
            client.sock, client.buffer, client.received = sock, b"", b""
            try:
                sock.sendall(b"220 mx.test.example ESMTP\r\n")
                self._line(client)  # EHLO
                sock.sendall(b"250-mx.test.example\r\n250 STARTTLS\r\n")
                assert self._line(client) == b"STARTTLS"
                client.send(INJECTED_REPLIES[: self.cut], INJECTED_REPLIES[self.cut :])
            except (OSError, AssertionError) as exc:
                self.error = exc
                return
            try:
                # what the client does next, without taking it: a ClientHello
                # (0x16), or nothing (it closed)
                self.after_starttls = client.buffer + sock.recv(5, socket.MSG_PEEK)
                if self.after_starttls[:1] != b"\x16":
                    return
                client.sock = self.tls.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                return  # its hello met the injected octets: the handshake failed
            client.received = client.buffer = b""
            with contextlib.suppress(OSError, ssl.SSLError, ConnectionError):
                # EHLO, the one thing a correct client sends here
                self.encrypted = self._line(client) + b"\r\n"
                client.sock.sendall(b"250-mx.test.example\r\n250 REQUIRETLS\r\n")
                client.closed_by_peer()
            self.encrypted += client.buffer

    @staticmethod
    def _line(client: RawClient) -> bytes:
        while b"\r\n" not in client.buffer:
            data = client.sock.recv(4096)
            if not data:
                raise ConnectionError("client closed")
            client.buffer += data
        line, client.buffer = client.buffer.split(b"\r\n", 1)
        return line

    def stop(self) -> None:
        self.listener.close()
        self.thread.join(TIMEOUT * 2)
        assert not self.thread.is_alive()


@pytest.fixture
def injecting(request: pytest.FixtureRequest, ca: LoopbackCA) -> Iterator[InjectingServer]:
    peer = InjectingServer(request.param, ca.server_context())
    try:
        yield peer
    finally:
        peer.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("injecting", range(1, len(INJECTED_REPLIES)), indirect=True)
def test_replies_injected_after_starttls_are_never_taken_rfc3207_4_2(
    kind: str, injecting: InjectingServer, ca: LoopbackCA
) -> None:
    async def scenario() -> BaseException:
        client = await connect(kind, injecting.port, server_hostname="mx.test.example")
        try:
            with pytest.raises(
                (ProtocolError, ConnectionError, ssl.SSLError, trio.BrokenResourceError)
            ) as failed:
                await client.starttls(ca.client_context())
            return failed.value
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    error = run(kind, scenario)
    injecting.stop()
    assert injecting.error is None, injecting.error
    after = injecting.after_starttls
    # no TLS session ever carried a command: the injected 250 was never
    # taken for the EHLO reply after TLS
    assert injecting.encrypted == b""
    if isinstance(error, RemoteProtocolError):
        # it saw octets behind the 220, wrote nothing more and closed
        # (RFC 3207 §4.2)
        assert after == b"", after
    else:
        # the 220 came alone: the handshake began, and the injected octets
        # broke it; the client wrote a ClientHello (a TLS record, 0x16) and
        # never a plaintext command
        assert after[:1] == b"\x16", after
