"""smtp_rtls against real Postfix on loopback: Debian 12's 3.7 (no REQUIRETLS) and
3.11 from Debian sid (the first Postfix with RFC 8689), both ways, over real STARTTLS
with the lab CA.  The instances come from tests/conftest_postfix.py.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from pathlib import Path

import pytest

from adapters import KINDS, running
from conftest_postfix import Postfix
from interop.client import ClientSession
from interop.serve import LoopbackServer
from smtp_rtls import (
    Ehlo,
    MailFrom,
    RequireTLSError,
    ServerConfig,
    StartTLS,
)
from smtp_rtls.handlers import Maildir
from smtp_rtls.io import sync
from smtp_rtls.io._deliver_sync import SyncRunner
from smtp_rtls.session import (
    Delivery,
    DeliveryStatus,
    SessionRequest,
    SessionResult,
    Write,
    run_session,
)
from smtp_rtls.testing.peers import loopback_dns

pytestmark = pytest.mark.lab

DELIVERY_TIMEOUT = 60.0


def trusting(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = DELIVERY_TIMEOUT) -> None:
    """Poll ``predicate()`` (bounded) until it is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def raw_exchange(sock: socket.socket, line: bytes) -> bytes:
    """Send one command line, return the complete (possibly multi-line) reply."""
    sock.sendall(line)
    return read_raw_reply(sock)


def read_raw_reply(sock: socket.socket) -> bytes:
    """Read until the last line of a reply (``NNN `` rather than ``NNN-``)."""
    data = b""
    for _ in range(100):
        data += sock.recv(65536)
        lines = data.split(b"\r\n")
        if len(lines) > 1 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" ":
            return data
    raise AssertionError(f"no complete reply: {data!r}")


# -- 1. our client -> Postfix 3.11 smtpd ----------------------------------------------------


@pytest.mark.interop("Postfix 3.11", "ClientConnection: REQUIRETLS after STARTTLS, tag recorded")
def test_postfix311_offers_requiretls_only_after_starttls_and_records_it_rfc8689_2(
    postfix311: Postfix,
) -> None:
    """RFC 8689 §2: REQUIRETLS is offered only on a TLS session; a tagged message is
    accepted there and Postfix records the tag (Require-TLS-ESMTP: yes)."""
    before = len(postfix311.delivered())
    s = ClientSession(postfix311.port)
    assert s.reply().command == "GREETING"
    caps = s.ehlo()
    assert "STARTTLS" in caps and "REQUIRETLS" not in caps
    # RFC 8689 §4.2.1 step 5 (our side): no tagged MAIL before TLS, 5.7.10
    with pytest.raises(RequireTLSError) as plain:
        s.send(MailFrom("alice@example.org", requiretls=True))
    assert plain.value.reply is not None and str(plain.value.reply.enhanced) == "5.7.10"
    s.starttls(trusting(postfix311.ca), "mx.example.test")
    caps = s.ehlo()
    assert "REQUIRETLS" in caps and "STARTTLS" not in caps
    content = b"Subject: rtls to postfix 3.11\r\nMessage-ID: <p311-1@example.org>\r\n\r\nbody\r\n"
    mail = MailFrom("alice@example.org", requiretls=True)
    done = s.transaction(mail, "bob@example.test", content)
    assert (done.code, done.command) == (250, "EOM")
    s.close()
    wait_for(lambda: len(postfix311.delivered()) > before, "delivery into the Maildir")
    stored = message_from_bytes(postfix311.delivered()[-1])
    assert stored["Message-ID"] == "<p311-1@example.org>"
    assert stored["Require-TLS-ESMTP"] == "yes"
    assert "TLS" in (stored["Received"] or "")  # received over the TLS session


@pytest.mark.interop("Postfix 3.11", "plaintext REQUIRETLS refused (555)")
def test_postfix311_refuses_plaintext_requiretls_with_555_rfc8689_2(postfix311: Postfix) -> None:
    """RFC 8689 §2: REQUIRETLS on a session without TLS is an unknown parameter (555 5.5.4),
    which is why our client never writes it there."""
    with socket.create_connection(("127.0.0.1", postfix311.port), timeout=10) as sock:
        assert read_raw_reply(sock).startswith(b"220")
        ehlo = raw_exchange(sock, b"EHLO client.example.org\r\n")
        assert b"REQUIRETLS" not in ehlo
        answer = raw_exchange(sock, b"MAIL FROM:<a@b> REQUIRETLS\r\n")
        assert answer.startswith(b"555 5.5.4"), answer
        raw_exchange(sock, b"QUIT\r\n")


# -- 2. our client -> Postfix 3.7 smtpd (no REQUIRETLS) -------------------------------------


@pytest.mark.interop("Postfix 3.7", "ClientConnection: 5.7.30, then an untagged message")
def test_postfix37_requiretls_refused_then_untagged_message_delivered_rfc8689_4_2_1(
    postfix37: Postfix,
) -> None:
    """RFC 8689 §4.2.1 step 5: a server that does not offer REQUIRETLS after STARTTLS
    gets no tagged MAIL (5.7.30); ¶3 of the same section lets the session carry other
    messages before QUIT."""
    before = len(postfix37.delivered())
    since = postfix37.log_size()
    s = ClientSession(postfix37.port)
    s.reply()
    s.ehlo()
    s.starttls(trusting(postfix37.ca), "mx.example.test")
    caps = s.ehlo()
    assert "REQUIRETLS" not in caps
    with pytest.raises(RequireTLSError) as refused:
        s.send(MailFrom("alice@example.org", requiretls=True))
    assert refused.value.reply is not None and str(refused.value.reply.enhanced) == "5.7.30"
    content = b"Subject: untagged\r\nMessage-ID: <p37-1@example.org>\r\n\r\n.dot\r\nend\r\n"
    done = s.transaction(MailFrom("alice@example.org"), "bob@example.test", content)
    assert (done.code, done.command) == (250, "EOM")
    s.close()
    wait_for(lambda: len(postfix37.delivered()) > before, "delivery into the Maildir")
    stored = postfix37.delivered()[-1]
    message = message_from_bytes(stored)
    assert message["Message-ID"] == "<p37-1@example.org>"
    assert stored.endswith(b"\n.dot\nend\n")  # Maildir stores LF; dot-stuffing undone
    assert message["Require-TLS-ESMTP"] is None
    # Postfix's count of this session's commands: one MAIL (the untagged one), none refused
    log = postfix37.wait_log("disconnect from", since=since, timeout=10)
    assert "ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7" in log


# -- 3./4. Postfix 3.11 as client -> our ServerConnection -----------------------------------


@pytest.fixture
def sut_context(postfix311: Postfix) -> ssl.SSLContext:
    """The server under test's TLS: pki/sut.crt, which Postfix verifies (lab CA)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert, key = postfix311.sut_cert
    context.load_cert_chain(str(cert), str(key))
    return context


class PinnedServer(LoopbackServer):
    """LoopbackServer on the fixed port Postfix's transport_maps points at."""

    def __init__(self, port: int, context: ssl.SSLContext, config: ServerConfig) -> None:
        super().__init__(context, config)
        self._listener.close()
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.2)
        self.port = port


@pytest.fixture
def relay(postfix311: Postfix) -> Iterator[Postfix]:
    """Postfix 3.11 with an empty queue before and after the test."""
    postfix311.delete_queue()
    try:
        yield postfix311
    finally:
        postfix311.delete_queue()


def submit(postfix: Postfix, message_id: str) -> None:
    """Our client submits a REQUIRETLS message for x@sut.test to Postfix over STARTTLS."""
    s = ClientSession(postfix.port)
    s.reply()
    s.ehlo()
    s.starttls(trusting(postfix.ca), "mx.example.test")
    s.ehlo()
    content = f"Subject: relayed\r\nMessage-ID: <{message_id}>\r\n\r\nrelayed body\r\n".encode()
    done = s.transaction(MailFrom("alice@example.org", requiretls=True), "x@sut.test", content)
    assert done.code == 250
    s.close()


@pytest.mark.interop("Postfix 3.11", "relays REQUIRETLS to ServerConnection")
def test_postfix311_relays_requiretls_to_our_server_after_tls_rfc8689_4_2_1(
    relay: Postfix, sut_context: ssl.SSLContext
) -> None:
    """RFC 8689 §4.2.1 / §4.1: Postfix, as the next client, carries the tag on to our server
    (which offers REQUIRETLS after STARTTLS); we receive MailFrom(requiretls=True) on the
    TLS session and the envelope of the message is tagged."""
    config = ServerConfig(starttls=True)
    since = relay.log_size()
    with PinnedServer(relay.sut_port, sut_context, config) as server:
        submit(relay, "relay-1@example.org")
        relay.flush()
        wait_for(
            lambda: any(s.messages for s in server.sessions), "the relayed message", timeout=60
        )
    [session] = [s for s in server.sessions if s.messages]
    assert session.error is None
    kinds = [type(e) for e in session.events]
    mails = [e for e in session.events if isinstance(e, MailFrom)]
    assert len(mails) == 1 and mails[0].requiretls
    assert str(mails[0].reverse_path) == "alice@example.org"
    # the MAIL came after the TLS handshake: STARTTLS, then a fresh EHLO, then MAIL
    assert kinds.index(StartTLS) < kinds.index(MailFrom)
    assert kinds.count(Ehlo) == 2
    [(eom, content)] = session.messages
    assert eom.envelope is not None and eom.envelope.requiretls
    assert [str(r.forward_path) for r in eom.envelope.recipients] == ["x@sut.test"]
    assert b"Message-ID: <relay-1@example.org>" in content
    # Postfix's own record of the hop: certificate verified, REQUIRETLS honoured
    log = relay.wait_log("status=sent", since=since)
    assert "to=<x@sut.test>" in log and "tls=verify/requiretls" in log


@pytest.mark.interop("Postfix 3.11", "bounces 5.7.30 when REQUIRETLS is not offered")
def test_postfix311_bounces_5_7_30_when_our_server_does_not_offer_requiretls_rfc8689_4_2_1(
    relay: Postfix, sut_context: ssl.SSLContext
) -> None:
    """RFC 8689 §4.2.1 step 5 (Postfix's side): our server with requiretls=False gets no
    MAIL for the tagged message, and Postfix bounces it with 5.7.30."""
    config = ServerConfig(starttls=True, requiretls=False)
    since = relay.log_size()
    with PinnedServer(relay.sut_port, sut_context, config) as server:
        submit(relay, "relay-2@example.org")
        relay.flush()
        log = relay.wait_log("dsn=5.7.30", since=since)
        # Postfix connected, did STARTTLS and looked at the EHLO before giving up
        wait_for(lambda: bool(server.sessions), "Postfix's connection", timeout=10)
    assert "to=<x@sut.test>" in log and "status=bounced" in log
    assert "tls=verify/!requiretls" in log
    for session in server.sessions:
        assert session.error is None
        assert StartTLS in [type(e) for e in session.events]
        assert not any(isinstance(e, MailFrom) for e in session.events)
        assert session.messages == []


# -- 4. through the adapters: Postfix 3.11 -> serve(Maildir), connect() -> Postfix 3.11 ----


@pytest.mark.interop("Postfix 3.11", "relays REQUIRETLS to serve() (sync, asyncio, trio)")
@pytest.mark.parametrize("kind", KINDS)
def test_postfix311_relays_requiretls_to_each_adapter_rfc8689_4_1(
    relay: Postfix, sut_context: ssl.SSLContext, tmp_path: Path, kind: str
) -> None:
    """Postfix carries the REQUIRETLS tag on to serve() on every adapter; the message is
    stored with the tag in our Received line."""
    maildir = Maildir(tmp_path / "mail")
    since = relay.log_size()
    with running(kind, maildir, tls=sut_context, port_hint=relay.sut_port) as _server:
        submit(relay, f"adapter-{kind}@example.org")
        relay.flush()
        wait_for(lambda: bool(maildir.delivered), "the relayed message", timeout=60)
    [path] = maildir.delivered
    stored = path.read_bytes()
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert b"Message-ID: <adapter-" in stored
    assert b" REQUIRETLS" in head and b"with ESMTPS" in head
    log = relay.wait_log("status=sent", since=since)
    assert "to=<x@sut.test>" in log and "tls=verify/requiretls" in log


@pytest.mark.interop("Postfix 3.11", "connect(): REQUIRETLS submission, tag recorded")
def test_connect_submits_requiretls_to_postfix311_rfc8689_2(postfix311: Postfix) -> None:
    """smtp_rtls.io.sync.connect against Postfix 3.11: STARTTLS with a verified name,
    then MAIL FROM ... REQUIRETLS; Postfix records the tag."""
    before = len(postfix311.delivered())
    with sync.connect(
        "127.0.0.1",
        postfix311.port,
        local_hostname="client.example.org",
        server_hostname="mx.example.test",
        timeout=30,
    ) as client:
        with pytest.raises(RequireTLSError):
            client.send("alice@example.org", ["bob@example.test"], b"x", requiretls=True)
        client.starttls(trusting(postfix311.ca))
        result = client.send(
            "alice@example.org",
            ["bob@example.test"],
            b"Subject: via connect\r\nMessage-ID: <connect-1@example.org>\r\n\r\nbody\r\n",
            requiretls=True,
        )
        assert result.data is not None and result.data.code == 250
        client.quit()
    wait_for(lambda: len(postfix311.delivered()) > before, "delivery into the Maildir")
    stored = message_from_bytes(postfix311.delivered()[-1])
    assert stored["Message-ID"] == "<connect-1@example.org>"
    assert stored["Require-TLS-ESMTP"] == "yes"


@pytest.mark.interop("Postfix 3.11", "connect(): a message in one write with BDAT (CHUNKING)")
def test_connect_sends_in_one_write_with_bdat_to_postfix311_rfc3030(postfix311: Postfix) -> None:
    """RFC 3030 §4.2: MAIL, RCPT, BDAT LAST and the content in one write.  Postfix
    drops the chunk of a transaction with no recipient (RFC 3030 §2), the client
    resets the failed transaction, and the next message is stored exactly as
    DATA would have stored it (bare line ends as CRLF, a final line end added)."""
    since = postfix311.log_size()
    before = len(postfix311.delivered())
    content = b"Subject: chunked\nMessage-ID: <bdat-1@example.org>\n\n.dot line\r\nno line end"
    with sync.connect(
        "127.0.0.1", postfix311.port, local_hostname="client.example.org", timeout=30
    ) as client:
        caps = client.conn.capabilities
        assert caps is not None and "CHUNKING" in caps and "PIPELINING" in caps
        nowhere = client.send("alice@example.org", ["x@elsewhere.invalid"], b"x\r\n")
        assert nowhere.data is None and list(nowhere.refused) == ["x@elsewhere.invalid"]
        result = client.send("alice@example.org", ["bob@example.test"], content)
        assert result.data is not None and result.data.code == 250
        client.quit()
    # Postfix counts each command it read when the client leaves (ok/total)
    log = postfix311.wait_log(" bdat=1/2", since=since)
    assert " rset=1" in log and " data=" not in log
    wait_for(lambda: len(postfix311.delivered()) > before, "delivery into the Maildir")
    stored = postfix311.delivered()[-1]  # a Maildir file: LF line ends
    assert stored.endswith(b"\n\n.dot line\nno line end\n")
    assert message_from_bytes(stored)["Message-ID"] == "<bdat-1@example.org>"


@pytest.mark.interop("Postfix 3.11", "deliver(bdat=True): envelope and message in one write")
def test_deliver_sends_envelope_and_content_in_one_write_to_postfix311_rfc3030(
    postfix311: Postfix,
) -> None:
    """RFC 3030 §4.2 with RFC 2920 §3.1: under verified TLS, deliver(bdat=True)
    writes MAIL (with REQUIRETLS), RCPT, BDAT LAST and the message at once.
    Postfix reads one chunk and no DATA, and stores the message as DATA would
    have (bare line ends as CRLF, RFC 5321 §2.3.8)."""
    since = postfix311.log_size()
    before = len(postfix311.delivered())
    content = b"Subject: one write\nMessage-ID: <deliver-bdat-1@example.org>\n\n.dot\nbody\n"
    delivery = Delivery(
        MailFrom("alice@sender.example", requiretls=True),
        ["bob@example.test"],
        content,
        local_hostname="client.sender.example",
        port=postfix311.port,
        bdat=True,
    )
    runner = SyncRunner(loopback_dns("example.test", "mx.example.test"), str(postfix311.ca))
    writes: list[bytes] = []

    def answer(request: SessionRequest) -> SessionResult:
        if isinstance(request, Write):
            writes.append(request.data)
        return runner(request)

    try:
        result = run_session(delivery.run(), answer)
    finally:
        runner.close()
    (recipient,) = result.recipients
    assert recipient.status is DeliveryStatus.DELIVERED and recipient.requiretls
    canonical = content.replace(b"\n", b"\r\n")
    (group,) = [w for w in writes if w.startswith(b"MAIL FROM:")]
    assert b" REQUIRETLS" in group and group.endswith(
        f"BDAT {len(canonical)} LAST\r\n".encode() + canonical
    )
    # Postfix counts each command it read when the client leaves (ok/total)
    log = postfix311.wait_log(" bdat=1 ", since=since)
    assert " data=" not in log and " rset=" not in log
    wait_for(lambda: len(postfix311.delivered()) > before, "delivery into the Maildir")
    stored = postfix311.delivered()[-1]  # a Maildir file: LF line ends
    assert stored.endswith(b"\n\n.dot\nbody\n")
    assert message_from_bytes(stored)["Require-TLS-ESMTP"] == "yes"
