"""serve() over real loopback sockets and real TLS, the same tests for the
blocking and the asyncio adapters, with real clients (smtplib, aiosmtplib).

Every server a test starts is shut down by that test (the ``running``
context manager), and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import resource
import shutil
import smtplib
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme

from adapters import KINDS, running
from smtp_rtls import MailFrom, Reply, ServerConfig
from smtp_rtls.handlers import Maildir, PasswordAuth, Sink
from smtp_rtls.io import sync
from smtp_rtls.io.asyncio import serve as aio_serve
from smtp_rtls.io.tls import server_context
from smtp_rtls.policy.tags import TLSTag
from smtp_rtls.session.server import Handler, MessageWriter, SessionEnvelope, SessionInfo


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert = ca.issue_cert("mx.test.example", "127.0.0.1")
    folder = tmp_path_factory.mktemp("pki")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    return server_context(str(folder / "server.pem"))


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


MESSAGE = (
    b"From: alice@example.org\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: dots and 8-bit\r\n"
    b"\r\n"
    b".a line that starts with a dot\r\n"
    b"..two dots\r\n"
    b"caf\xc3\xa9 \xe2\x82\xac\r\n"
    b"last line without CRLF"
)


def _body_of(path: Path) -> bytes:
    stored = path.read_bytes()
    # the trace fields come first: Return-Path, then a folded Received field
    assert stored.startswith(b"Return-Path: <alice@example.org>\r\nReceived: ")
    return stored[stored.index(b"From: ") :]


@pytest.mark.interop("smtplib", "serve() (sync, asyncio, trio): STARTTLS, byte-exact into Maildir")
@pytest.mark.parametrize("kind", KINDS)
def test_smtplib_starttls_message_arrives_byte_exact_in_the_maildir(
    kind: str, tls: ssl.SSLContext, client_tls: ssl.SSLContext, tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "mail")
    with (
        running(kind, maildir, tls=tls) as server,
        smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client,
    ):
        client.ehlo("client.example")
        assert client.has_extn("starttls") and not client.has_extn("requiretls")
        client.starttls(context=client_tls)
        client.ehlo("client.example")
        assert client.has_extn("requiretls")  # RFC 8689 §2: only after TLS
        client.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
    [path] = maildir.delivered
    assert path.parent.name == "new" and not list((tmp_path / "mail" / "tmp").iterdir())
    # smtplib ends the content with CRLF; dots, 8-bit and UTF-8 untouched
    assert _body_of(path) == MESSAGE + b"\r\n"
    head = path.read_bytes().split(b"From: ")[0]
    assert b"with ESMTPS (TLSv1." in head and b"for <bob@example.net>" in head


@pytest.mark.interop("aiosmtplib", "serve() (sync, asyncio, trio): REQUIRETLS tagged message")
@pytest.mark.parametrize("kind", KINDS)
def test_aiosmtplib_requiretls_message_is_tagged_rfc8689_4_1(
    kind: str, tls: ssl.SSLContext, client_tls: ssl.SSLContext, tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "mail")

    async def send(port: int) -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, tls_context=client_tls, start_tls=True, timeout=10
        )
        await client.connect()
        await client.sendmail(
            "alice@example.org", ["bob@example.net"], MESSAGE, mail_options=["REQUIRETLS"]
        )
        await client.quit()

    with running(kind, maildir, tls=tls) as server:
        asyncio.run(send(server.port))
    [path] = maildir.delivered
    assert b" REQUIRETLS" in path.read_bytes().split(b"\r\n\r\n")[0]


@pytest.mark.interop("smtplib", "serve() (sync, asyncio, trio): TLS-Required: No tag")
@pytest.mark.parametrize("kind", KINDS)
def test_tls_required_no_header_tags_the_message_rfc8689_4_1(kind: str) -> None:
    sink = Sink()
    message = b"TLS-Required: No\r\nSubject: a report\r\n\r\nbody\r\n"
    with running(kind, sink) as server, smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
        c.sendmail("a@example.org", ["b@example.net"], message)
        c.sendmail("a@example.org", ["b@example.net"], b"Subject: plain\r\n\r\nbody\r\n")
    assert [e.tag for e in sink.envelopes] == [TLSTag.TLS_OPTIONAL, TLSTag.DEFAULT]
    assert sink.messages == 2


@pytest.mark.parametrize("kind", KINDS)
def test_plaintext_requiretls_is_refused_and_nothing_is_stored_rfc8689_2(
    kind: str, tls: ssl.SSLContext, tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "mail")
    with (
        running(kind, maildir, tls=tls) as server,
        smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client,
    ):
        client.ehlo("client.example")
        code, _ = client.mail("alice@example.org", ["REQUIRETLS"])
        assert code == 555
    assert maildir.delivered == []


class _Slow(Handler):
    """A handler whose writer is slow to close, to keep a session in flight."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.closed: list[SessionInfo] = []
        self.sink = Sink()

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        self.started.set()
        time.sleep(0.5)
        return self.sink.on_message(envelope)

    def on_close(self, session: SessionInfo) -> None:
        self.closed.append(session)


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_lets_a_session_in_flight_finish(kind: str) -> None:
    handler = _Slow()
    done: list[Any] = []
    with running(kind, handler) as server:
        port = server.port

        def client() -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                done.append(c.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx"))

        thread = threading.Thread(target=client)
        thread.start()
        assert handler.started.wait(10)
    # leaving the block shut the server down; the message in flight was accepted
    thread.join(10)
    assert done == [{}] and handler.sink.messages == 1
    assert len(handler.closed) == 1  # on_close ran
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.parametrize("kind", KINDS)
def test_one_connection_over_the_limit_gets_421_rfc5321_3_8(kind: str) -> None:
    with running(kind, Sink(), max_connections=1) as server:
        first = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            assert first.recv(512).startswith(b"220 ")
            second = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            with second:
                assert second.recv(512).startswith(b"421 4.3.2 ")
        finally:
            first.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_silent_peer_is_dropped_after_the_timeout_rfc5321_4_5_3_2(kind: str) -> None:
    handler = _Slow()
    with running(kind, handler, read_timeout=0.3) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as peer:
            assert peer.recv(512).startswith(b"220 ")
            start = time.monotonic()
            assert peer.recv(512) == b""  # closed by the server
            assert time.monotonic() - start < 4
        deadline = time.monotonic() + 5
        while server.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.active == 0
    assert len(handler.closed) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_peers_that_reset_at_once_leave_the_server_serving(kind: str) -> None:
    # A peer may connect and reset before its session has begun (the trio
    # server asked the socket for its peer then, got ENOTCONN, and the
    # error ended the whole server): each such connection is just over.
    handler = Sink()
    with running(kind, handler) as server:
        for _ in range(100):
            peer = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # an RST, not a FIN
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx")
    assert handler.messages == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_trickling_peer_is_cut_by_the_command_deadline(kind: str) -> None:
    class Short(Handler):
        pass

    # every byte comes within the per-read timeout, the command never ends
    config = ServerConfig()
    with running(kind, Short(), config=config, read_timeout=1.0) as server:
        server.handler  # noqa: B018 - the server is up
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as peer:
            assert peer.recv(512).startswith(b"220 ")
            # the session's command deadline is 600 s by default: too long for a
            # test, so this checks the per-read bound only; the deadline itself
            # is checked in test_session_server.py
            peer.sendall(b"NO")
            time.sleep(0.2)
            peer.sendall(b"OP\r\n")
            assert peer.recv(512).startswith(b"250 ")


@pytest.mark.interop("smtplib", "serve() (sync, asyncio, trio): implicit TLS, REQUIRETLS")
@pytest.mark.parametrize("kind", KINDS)
def test_implicit_tls_rfc8314_3(
    kind: str, tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    sink = Sink()
    with (
        running(kind, sink, tls=tls, implicit_tls=True) as server,
        smtplib.SMTP_SSL("127.0.0.1", server.port, timeout=10, context=client_tls) as client,
    ):
        client.ehlo("client.example")
        assert client.has_extn("requiretls") and not client.has_extn("starttls")
        client.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx", ["REQUIRETLS"])
    [envelope] = sink.envelopes
    assert envelope.tag is TLSTag.REQUIRETLS and envelope.session.tls is not None


class _Async(Handler):
    """Coroutine handler methods, for the asynchronous adapters."""

    def __init__(self) -> None:
        self.sink = Sink()

    async def on_rcpt(self, session: SessionInfo, event: Any, envelope: Any) -> Reply:
        if event.forward_path.local_part == "nobody":
            return Reply(550, "No such user", "5.1.1")
        return Reply(250, "OK", "2.1.5")

    async def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        return self.sink.on_message(envelope)


def test_asyncio_handlers_may_be_coroutines() -> None:
    handler = _Async()
    with (
        running("asyncio", handler) as server,
        smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client,
    ):
        refused = client.sendmail(
            "a@example.org", ["b@example.net", "nobody@example.net"], b"Subject: x\r\n\r\nx"
        )
    assert refused == {"nobody@example.net": (550, b"5.1.1 No such user")}
    assert handler.sink.messages == 1


class _TimerCountingLoop(asyncio.SelectorEventLoop):
    """Records the timers armed on it: who armed each, and its wait."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[tuple[str, float]] = []

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        owner = type(getattr(callback, "__self__", None)).__name__
        self.timers.append((owner, when - self.time()))
        return super().call_at(when, callback, *args, context=context)


def _send_one(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx")


def test_the_asyncio_adapter_arms_no_timer_per_connection() -> None:
    # Issue 10: a call_at and its cancel per connection cost about as much
    # as the greeting.  The connections' waits (RFC 5321 §4.5.3.2) are
    # kept by the server's one sweep, armed when a session starts to wait
    # and not again until it has run.
    sink = Sink()
    elapsed = 0.0

    async def main() -> None:
        nonlocal elapsed
        server = await aio_serve(sink, "127.0.0.1", 0)
        start = time.monotonic()
        try:
            for _ in range(10):
                await asyncio.to_thread(_send_one, server.port)
        finally:
            elapsed = time.monotonic() - start
            await server.shutdown()

    with asyncio.Runner(loop_factory=_TimerCountingLoop) as runner:
        runner.run(main())
        loop = runner.get_loop()
        assert isinstance(loop, _TimerCountingLoop)
        timers = loop.timers
    assert sink.messages == 10
    assert not [t for t in timers if t[0] == "SessionProtocol"]
    sweeps = [wait for owner, wait in timers if owner == "Sweeper"]
    assert 1 <= len(sweeps) <= 2 + elapsed  # one per second at most, while sessions wait
    assert all(0.9 < wait <= 1.0 for wait in sweeps)


@pytest.mark.parametrize("kind", KINDS)
def test_a_peer_that_never_reads_is_dropped_after_the_timeout_rfc5321_4_5_3_2(
    kind: str,
) -> None:
    # The server's writes wait for the peer to read; a peer that never does
    # is a silent peer too, and must not hold the connection for ever.
    block = b"NOOP\r\n" * (64 * 1024 // 6)
    with (
        running(kind, Sink(), read_timeout=0.5) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as peer,
    ):
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        assert peer.recv(512).startswith(b"220 ")
        peer.settimeout(0.5)
        sent = 0
        with contextlib.suppress(TimeoutError, ConnectionError):
            while sent < 64 * 1024 * 1024:  # bounded: until the send stalls
                peer.sendall(block)
                sent += len(block)
        deadline = time.monotonic() + 5
        while server.active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.active == 0


def test_a_coroutine_handler_under_the_blocking_adapter_is_a_451() -> None:
    with (
        running("sync", _Async()) as server,
        smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client,
    ):
        client.ehlo("c.example")
        client.mail("a@example.org")
        code, _ = client.rcpt("b@example.net")
    assert code == 451


def test_serve_refuses_contradictory_settings(tls: ssl.SSLContext) -> None:
    with pytest.raises(ValueError):
        sync.serve(Sink(), "127.0.0.1", 0, implicit_tls=True)
    with pytest.raises(ValueError):
        sync.serve(Sink(), "127.0.0.1", 0, config=ServerConfig(starttls=True))
    assert email.utils  # the module is used by smtplib's sendmail


class _Submission(PasswordAuth, Sink):
    """A submission server: password authentication, then a sink."""

    def check_password(self, username: str, password: str) -> bool:
        return (username, password) == ("alice", "s3cret!")

    def on_mail(self, session: SessionInfo, event: Any) -> Reply:
        # RFC 6409 §4.2: a submission server requires authentication
        if session.authenticated is None:
            return Reply(530, "Authentication required", "5.7.0")
        return Reply(250, f"OK {session.authenticated}", "2.1.0")


@pytest.mark.interop(
    "smtplib", "serve() (sync, asyncio, trio): AUTH PLAIN and LOGIN after STARTTLS"
)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_with_auth_after_starttls_rfc4954(
    kind: str, mechanism: str, tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = _Submission()
    config = ServerConfig(starttls=True, auth_mechanisms=("PLAIN", "LOGIN"))
    with (
        running(kind, handler, tls=tls, config=config) as server,
        smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client,
    ):
        client.ehlo("client.example")
        assert not client.has_extn("auth")  # RFC 4954 §4: not before TLS
        assert client.docmd("AUTH", "PLAIN")[0] == 538
        client.starttls(context=client_tls)
        client.ehlo("client.example")
        assert client.mail("alice@example.org")[0] == 530
        client.rset()
        client.user, client.password = "alice", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        assert refused.value.smtp_code == 535
        client.user, client.password = "alice", "s3cret!"
        code, _ = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        assert code == 235
        client.sendmail("alice@example.org", ["bob@example.net"], b"Subject: x\r\n\r\nx")
    [envelope] = handler.envelopes
    assert envelope.session.authenticated == "alice"


# -- swaks, an independent client (Debian's swaks, installed by tests/lab/install.sh) ----


def _swaks(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    swaks = shutil.which("swaks")
    assert swaks is not None, "swaks is installed by tests/lab/install.sh (run it as root)"
    return subprocess.run(
        [swaks, "--server", "127.0.0.1", "--helo", "client.example", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.interop("swaks", "serve() (sync, asyncio, trio): STARTTLS, AUTH, PIPELINING")
@pytest.mark.parametrize("kind", KINDS)
def test_swaks_starttls_auth_pipelining(
    kind: str, tls: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    handler = _Submission()
    config = ServerConfig(starttls=True, auth_mechanisms=("PLAIN", "LOGIN"))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with running(kind, handler, tls=tls, config=config) as server:
        done = _swaks(
            "--port",
            str(server.port),
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            str(ca_file),
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "s3cret!",
            "--pipeline",
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.net",
            "--body",
            "hello from swaks",
        )
        wrong = _swaks(
            "--port",
            str(server.port),
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "nope",
            "--from",
            "alice@example.org",
            "--to",
            "b@example.net",
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<-  250" in done.stdout and "PIPELINING" in done.stdout
    assert wrong.returncode != 0 and "535 5.7.8" in wrong.stdout
    [envelope] = handler.envelopes
    assert envelope.session.authenticated == "alice" and envelope.session.tls is not None


# -- faults: the peer goes away, and nothing leaks ------------------------------------------


class _Recorder(Handler):
    """Records what the session did with each message."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def _note(self, what: str) -> None:
        with self.lock:
            self.events.append(what)

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        recorder = self

        class Writer(MessageWriter):
            def abort(self) -> None:
                recorder._note("abort")

            def close(self) -> Reply:
                recorder._note("stored")
                return Reply(250, "ok", "2.0.0")

        self._note("message")
        return Writer()

    def on_close(self, session: SessionInfo) -> None:
        self._note("close")


def _wait_idle(server: Any) -> None:
    deadline = time.monotonic() + 5
    while server.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active == 0


@pytest.mark.parametrize("kind", KINDS)
def test_the_peer_closing_mid_data_aborts_the_message(kind: str) -> None:
    handler = _Recorder()
    with running(kind, handler) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as peer:
            peer.recv(512)
            peer.sendall(
                b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
            )
            deadline = time.monotonic() + 5
            while b"354" not in peer.recv(4096) and time.monotonic() < deadline:
                pass
            peer.sendall(b"Subject: half\r\n\r\nthe first half of a message")
            time.sleep(0.2)
        _wait_idle(server)
    assert handler.events == ["message", "abort", "close"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_handshake_cut_short_ends_the_session(kind: str, tls: ssl.SSLContext) -> None:
    handler = _Recorder()
    with running(kind, handler, tls=tls) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as peer:
            peer.recv(512)
            peer.sendall(b"EHLO c.example\r\nSTARTTLS\r\n")
            time.sleep(0.2)
            peer.sendall(b"\x16\x03\x01\x00\x05hello")  # the start of a ClientHello, then gone
        _wait_idle(server)
    assert handler.events == ["close"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_50_mib_message_streams_through_every_adapter(kind: str) -> None:
    sink = Sink()
    line = b"x" * 78 + b"\r\n"
    body = line * (50 * 1024 * 1024 // len(line))
    config = ServerConfig(max_message_size=0)
    with (
        running(kind, sink, config=config) as server,
        smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client,
    ):
        client.sendmail("a@example.org", ["b@example.net"], b"Subject: big\r\n\r\n" + body)
    assert sink.octets == len(b"Subject: big\r\n\r\n") + len(body)


@pytest.mark.parametrize("kind", KINDS)
def test_500_concurrent_sessions(kind: str) -> None:
    # 500 client and 500 server sockets: make sure the process may hold them
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    sink = Sink()
    count = 500
    with running(kind, sink, max_connections=count + 10) as server:
        socks = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(count)
        ]
        try:
            for s in socks:
                assert s.recv(512).startswith(b"220 ")
            for s in socks:
                s.sendall(
                    b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
                    b"DATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n"
                )
            for s in socks:
                seen = b""
                deadline = time.monotonic() + 20
                while b"221 " not in seen and time.monotonic() < deadline:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    seen += chunk
                assert b"221 " in seen
        finally:
            for s in socks:
                s.close()
        _wait_idle(server)
    assert sink.messages == count


def test_no_thread_is_left_behind_by_the_blocking_adapter() -> None:
    before = threading.active_count()
    with (
        running("sync", Sink()) as server,
        smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c,
    ):
        c.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx")
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() == before


@pytest.mark.parametrize("kind", KINDS)
def test_chunking_binarymime_and_smtputf8_through_every_adapter_rfc3030_rfc6531(
    kind: str, tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    sink = Sink()
    config = ServerConfig(starttls=True, binarymime=True)
    binary = b"Subject: binary\r\n\r\n\x00\x01\r\n.\r\nnot the end\xff"
    with running(kind, sink, tls=tls, config=config) as server:
        with sync.connect(
            "127.0.0.1", server.port, server_hostname="mx.test.example", timeout=10
        ) as client:
            client.starttls(client_tls)
            # RFC 3030 §3: BINARYMIME goes with BDAT, octet for octet
            mail = MailFrom("a@example.org", body="BINARYMIME")
            result = client.send(mail, ["b@example.net"], binary, requiretls=True)
            assert result.data is not None and result.data.code == 250
            client.quit()
        # RFC 6531: UTF-8 addresses in an SMTPUTF8 transaction (smtplib sends them)
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
            c.ehlo("client.example")
            c.sendmail(
                "jöran@example.org", ["zoë@example.net"], b"Subject: x\r\n\r\nx", ["SMTPUTF8"]
            )
    first, second = sink.envelopes
    assert sink.octets == len(binary) + len(b"Subject: x\r\n\r\nx\r\n")
    assert first.mail_from.body == "BINARYMIME" and first.tag is TLSTag.REQUIRETLS
    assert str(second.recipients[0].forward_path) == "zoë@example.net"


@pytest.mark.parametrize("kind", KINDS)
def test_serve_on_ipv6_loopback(kind: str) -> None:
    sink = Sink()
    with (
        running(kind, sink, port_hint=0, host="::1") as server,
        smtplib.SMTP("::1", server.port, timeout=10) as client,
    ):
        client.sendmail("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx")
    assert sink.messages == 1 and sink.envelopes[0].session.peer is not None
    assert sink.envelopes[0].session.peer[0] == "::1"


@pytest.mark.parametrize("kind", KINDS)
def test_a_peer_that_never_reads_its_replies_is_not_read_either(kind: str) -> None:
    # RFC 2920 §3.1 lets a client pipeline, not make the server buffer
    # without end: a server that kept reading commands while its replies
    # piled up unsent would hold them all in memory.  With the kernel's
    # buffers full in both directions, the server must stop reading, so the
    # peer's own send stalls long before 64 MiB of NOOPs have been taken.
    sink = Sink()
    block = b"NOOP\r\n" * (64 * 1024 // 6)
    with running(kind, sink) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as peer:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            assert peer.recv(512).startswith(b"220 ")
            peer.settimeout(2.0)
            sent = 0
            with pytest.raises(TimeoutError):
                while sent < 64 * 1024 * 1024:  # bounded: 64 MiB at most
                    peer.sendall(block)
                    sent += len(block)
            assert sent < 32 * 1024 * 1024
        _wait_idle(server)


@pytest.mark.parametrize("kind", KINDS)
def test_a_fast_pipelining_peer_is_served_whatever_the_read_sizes_rfc2920(kind: str) -> None:
    # An event loop may hand the adapter far more than one socket read's
    # worth at once (asyncio: up to 256 KiB); the core's input limit
    # (max_backlog, 256 KiB) must not mistake that for a flood.
    count = 100_000
    with (
        running(kind, Sink()) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as peer,
    ):
        assert peer.recv(512).startswith(b"220 ")
        got = bytearray()

        def read_all() -> None:
            # bounded: each recv waits 10 s at most, and the loop ends at
            # the connection's end or when every reply is in
            while got.count(b"\r\n") < count:
                data = peer.recv(65536)
                if not data:
                    return
                got.extend(data)

        reader = threading.Thread(target=read_all)
        reader.start()
        peer.sendall(b"NOOP\r\n" * count)
        reader.join(30)
    assert not reader.is_alive()
    assert got.count(b"250 ") == count
    assert b"421" not in got


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_tls_peer_closing_leaves_no_warning(
    kind: str, tls: ssl.SSLContext, client_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    # A half-closed TLS connection cannot be kept open; asking for it makes
    # asyncio log a warning on every such close (thousands on a busy server).
    with running(kind, Sink(), tls=tls) as server:
        client = smtplib.SMTP("127.0.0.1", server.port, timeout=10)
        client.starttls(context=client_tls)
        client.ehlo("c.example")
        client.sock.shutdown(socket.SHUT_WR)
        client.close()
        _wait_idle(server)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


@pytest.mark.parametrize("starttls", [False, True], ids=["plain", "starttls"])
@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_large_messages_arrive_each_intact(
    kind: str,
    starttls: bool,
    tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    # The asyncio adapter reads every connection into one shared buffer
    # (a buffered protocol) and copies each read out: eight peers sending
    # at once, each its own content, must each get theirs stored whole.
    maildir = Maildir(tmp_path / "mail")
    # an explicit config offers STARTTLS only when it says so
    config = ServerConfig(max_message_size=0, starttls=starttls)
    count = 8
    errors: list[BaseException] = []

    def body(n: int) -> bytes:
        line = (b"%d" % n) * 40 + b"\r\n"
        return b"Subject: %d\r\n\r\n" % n + line * (600 * 1024 // len(line))

    def send(port: int, n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.ehlo("client.example")
                if starttls:
                    client.starttls(context=client_tls)
                    client.ehlo("client.example")
                client.sendmail(f"a{n}@example.org", ["b@example.net"], body(n))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    with running(kind, maildir, tls=tls if starttls else None, config=config) as server:
        threads = [threading.Thread(target=send, args=(server.port, n)) for n in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    assert errors == []
    stored = {}
    for path in maildir.delivered:
        content = path.read_bytes()
        subject = content.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]
        stored[int(subject)] = content[content.index(b"Subject: ") :]
    assert sorted(stored) == list(range(count))
    for n in range(count):
        # smtplib adds nothing: the content already ends with CRLF
        assert stored[n] == body(n)
