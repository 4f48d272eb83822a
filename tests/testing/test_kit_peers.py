"""smtp_rtls.testing.peers: each peer misbehaves as documented, and our own
client and server react to it correctly.

Everything here is real: sockets on 127.0.0.1, TLS with the ``ssl`` module
and certificates of a throwaway CA, smtp_rtls's adapters.  The servers come
from the plugin's fixtures (stopped after each test, threads joined); every
wait is bounded by a timeout of a few seconds.

* Each misbehaving server is first checked with a raw socket, octet by
  octet, so the misbehaviour is the one the docs name, whatever our client
  does with it.
* Then :func:`smtp_rtls.io.sync.deliver` sends a REQUIRETLS message to it:
  the recipient's outcome is the one RFC 8689 §4.2.1 asks for, and where TLS
  is not what REQUIRETLS needs, the peer receives no MAIL and not one octet
  of the message.
* The misbehaving clients run against smtp_rtls's ``serve()`` (the blocking
  adapter; the injection and smuggling clients against all three).
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters import KINDS, running
from smtp_rtls import (
    LocalProtocolError,
    MailFrom,
    RcptTo,
    RemoteProtocolError,
    Reply,
    RequireTLSError,
    ServerConfig,
)
from smtp_rtls.io import sync
from smtp_rtls.io.sync import deliver
from smtp_rtls.policy.codes import Reason
from smtp_rtls.session import DEFAULT_TIMEOUTS, DeliveryResult, DeliveryStatus
from smtp_rtls.session.server import Handler, SessionInfo
from smtp_rtls.testing import END_OF_DATA_LOOKALIKES
from smtp_rtls.testing.peers import (
    CLIENTS,
    SERVERS,
    CloseMidDataClient,
    LoopbackCA,
    ScriptedServer,
    SilentClient,
    SmugglingClient,
    StartTLSInjectionClient,
    TrickleClient,
    loopback_dns,
)
from smtp_rtls.testing.server import LoopbackServer, RecordingHandler

TIMEOUT = 5.0
TIMEOUTS = {k: TIMEOUT for k in DEFAULT_TIMEOUTS}
BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
MESSAGE = (
    b"From: alice@sender.example\r\nTo: bob@example.org\r\nSubject: the-secret-subject\r\n"
    b"Message-ID: <1@sender.example>\r\n\r\nNot one octet of this may leak.\r\n"
)
Make = Callable[..., ScriptedServer]


def send(peer: ScriptedServer, *, requiretls: bool = True, **timeouts: float) -> DeliveryResult:
    """deliver() to ``peer`` as the MX of example.org, DNSSEC-validated."""
    return deliver(
        MailFrom("alice@sender.example", requiretls=requiretls),
        ["bob@example.org"],
        MESSAGE,
        local_hostname="client.sender.example",
        fulfil=loopback_dns("example.org", peer.hostname),
        cafile=peer.cafile,
        port=peer.port,
        timeouts={**TIMEOUTS, **timeouts},
    )


def nothing_leaked(peer: ScriptedServer) -> None:
    """The peer got no MAIL and not one octet of the message."""
    peer.stop()
    assert peer.mail_from == []
    assert peer.content == b""
    for line in MESSAGE.split(b"\r\n"):
        if line:
            assert line not in peer.received


# -- the raw misbehaviour ------------------------------------------------------------------


class Raw:
    """A bare socket client: what the peer sends, octet for octet."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=TIMEOUT
        )
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def reply(self) -> bytes:
        """The raw octets of the next complete reply."""
        while True:
            lines = self.buffer.split(b"\r\n")
            for i, line in enumerate(lines[:-1]):
                if line[3:4] != b"-":
                    size = sum(len(x) + 2 for x in lines[: i + 1])
                    out, self.buffer = self.buffer[:size], self.buffer[size:]
                    return out
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {self.buffer!r}")
            self.buffer += chunk

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def starttls(self, context: ssl.SSLContext, name: str = "mx.test.example") -> None:
        assert self.command(b"STARTTLS").startswith(b"220 ")
        assert self.buffer == b""
        self.sock = context.wrap_socket(self.sock, server_hostname=name)


@pytest.fixture
def raw() -> Iterator[Callable[[ScriptedServer], Raw]]:
    opened: list[Raw] = []

    def connect(peer: ScriptedServer) -> Raw:
        opened.append(Raw(peer.port))
        return opened[-1]

    yield connect
    for r in opened:
        r.close()


def test_every_named_server_and_client_is_registered() -> None:
    assert set(SERVERS) == {
        "honest", "strip-starttls", "starttls-454", "certificate-wrong-name",
        "certificate-expired", "certificate-self-signed", "certificate-untrusted",
        "no-requiretls-after-tls", "requiretls-before-tls", "inject-after-starttls",
        "trickle", "silent", "silent-after-data", "close-mid-data",
    }  # fmt: skip
    assert set(CLIENTS) == {
        "inject-after-starttls",
        "smuggle",
        "trickle",
        "silent",
        "close-mid-data",
    }


@pytest.mark.parametrize("misbehaving_server", ["strip-starttls"], indirect=True)
def test_strip_starttls_removes_the_line_rfc3207_7(
    misbehaving_server: ScriptedServer, raw: Callable[[ScriptedServer], Raw]
) -> None:
    client = raw(misbehaving_server)
    assert client.reply().startswith(b"220 ")
    offer = client.command(b"EHLO c.example")
    assert b"STARTTLS" not in offer and b"250-PIPELINING" in offer


@pytest.mark.parametrize("misbehaving_server", ["starttls-454"], indirect=True)
def test_starttls_454_refuses_the_handshake(
    misbehaving_server: ScriptedServer, raw: Callable[[ScriptedServer], Raw]
) -> None:
    client = raw(misbehaving_server)
    client.reply()
    assert b"250 STARTTLS" in client.command(b"EHLO c.example")
    assert (
        client.command(b"STARTTLS") == b"454 4.7.0 TLS not available due to temporary reason\r\n"
    )


@pytest.mark.parametrize(
    ("misbehaving_server", "verify_code"),
    [
        ("certificate-wrong-name", 62),  # X509_V_ERR_HOSTNAME_MISMATCH
        ("certificate-expired", 10),  # X509_V_ERR_CERT_HAS_EXPIRED
        ("certificate-self-signed", 18),  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        ("certificate-untrusted", 20),  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    ],
    indirect=["misbehaving_server"],
)
def test_bad_certificates_fail_verification_as_named(
    misbehaving_server: ScriptedServer,
    verify_code: int,
    raw: Callable[[ScriptedServer], Raw],
    smtp_test_ca: LoopbackCA,
) -> None:
    client = raw(misbehaving_server)
    client.reply()
    client.command(b"EHLO c.example")
    with pytest.raises(ssl.SSLCertVerificationError) as failed:
        client.starttls(smtp_test_ca.client_context())
    assert failed.value.verify_code == verify_code


@pytest.mark.parametrize("misbehaving_server", ["honest"], indirect=True)
def test_the_honest_server_verifies_and_offers_requiretls_after_tls_only(
    misbehaving_server: ScriptedServer,
    raw: Callable[[ScriptedServer], Raw],
    smtp_test_ca: LoopbackCA,
) -> None:
    client = raw(misbehaving_server)
    client.reply()
    assert b"REQUIRETLS" not in client.command(b"EHLO c.example")
    client.starttls(smtp_test_ca.client_context())
    assert b"250 REQUIRETLS" in client.command(b"EHLO c.example")


@pytest.mark.parametrize("misbehaving_server", ["no-requiretls-after-tls"], indirect=True)
def test_no_requiretls_after_tls_drops_the_offer_rfc8689_2(
    misbehaving_server: ScriptedServer,
    raw: Callable[[ScriptedServer], Raw],
    smtp_test_ca: LoopbackCA,
) -> None:
    client = raw(misbehaving_server)
    client.reply()
    client.command(b"EHLO c.example")
    client.starttls(smtp_test_ca.client_context())
    offer = client.command(b"EHLO c.example")
    assert b"REQUIRETLS" not in offer and b"250-PIPELINING" in offer


@pytest.mark.parametrize("misbehaving_server", ["requiretls-before-tls"], indirect=True)
def test_requiretls_before_tls_offers_it_in_plaintext(
    misbehaving_server: ScriptedServer, raw: Callable[[ScriptedServer], Raw]
) -> None:
    client = raw(misbehaving_server)
    client.reply()
    offer = client.command(b"EHLO c.example")
    assert b"REQUIRETLS" in offer and b"STARTTLS" not in offer


@pytest.mark.parametrize("misbehaving_server", ["inject-after-starttls"], indirect=True)
def test_inject_after_starttls_sends_replies_behind_the_220(
    misbehaving_server: ScriptedServer, raw: Callable[[ScriptedServer], Raw]
) -> None:
    client = raw(misbehaving_server)
    client.reply()
    client.command(b"EHLO c.example")
    client.sock.sendall(b"STARTTLS\r\n")
    assert client.reply() == b"220 2.0.0 Ready to start TLS\r\n"
    assert client.reply() == b"250-mx.injected.example\r\n250-PIPELINING\r\n250 REQUIRETLS\r\n"


def test_trickle_sends_one_octet_at_a_time(
    make_misbehaving_server: Make, raw: Callable[[ScriptedServer], Raw]
) -> None:
    peer = make_misbehaving_server("trickle", delay=0.02)
    client = raw(peer)
    first = client.sock.recv(4096)
    assert len(first) == 1 and first == b"2"
    start = time.monotonic()
    assert client.reply().startswith(b"20 mx.test.example ESMTP")
    assert time.monotonic() - start > 0.5  # some 40 octets, 0.02 s apart


def test_silent_says_nothing(make_misbehaving_server: Make) -> None:
    peer = make_misbehaving_server("silent", timeout=3)
    with socket.create_connection(("127.0.0.1", peer.port), timeout=0.5) as sock:
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.sendall(b"EHLO c.example\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(1)
    peer.stop()
    assert peer.received == b"EHLO c.example\r\n"


def test_silent_after_data_never_answers_the_end(
    make_misbehaving_server: Make, raw: Callable[[ScriptedServer], Raw]
) -> None:
    peer = make_misbehaving_server("silent-after-data", timeout=3)
    client = raw(peer)
    client.reply()
    client.command(b"EHLO c.example")
    assert client.command(b"MAIL FROM:<a@b.example>").startswith(b"250")
    assert client.command(b"RCPT TO:<c@d.example>").startswith(b"250")
    assert client.command(b"DATA").startswith(b"354")
    client.sock.sendall(b"Subject: x\r\n\r\nx\r\n.\r\n")
    client.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.sock.recv(1)
    peer.stop()
    assert peer.content == b"Subject: x\r\n\r\nx\r\n" and peer.messages == []


def test_close_mid_data_closes_while_the_content_arrives(
    make_misbehaving_server: Make, raw: Callable[[ScriptedServer], Raw]
) -> None:
    peer = make_misbehaving_server("close-mid-data", after=10)
    client = raw(peer)
    client.reply()
    client.command(b"EHLO c.example")
    client.command(b"MAIL FROM:<a@b.example>")
    client.command(b"RCPT TO:<c@d.example>")
    assert client.command(b"DATA").startswith(b"354")
    client.sock.sendall(b"Subject: a long enough header\r\n")
    assert client.sock.recv(4096) == b""  # closed, no reply
    peer.stop()
    assert peer.sessions[0].error == "closed mid-DATA on purpose" and peer.messages == []


# -- our client against them: deliver() with REQUIRETLS ----------------------------------------

DOWNGRADES = [
    # (server, outcome, reason, enhanced status of the recipient's reply)
    ("strip-starttls", DeliveryStatus.FAILED, Reason.STARTTLS_NOT_OFFERED, "5.7.10"),
    ("starttls-454", DeliveryStatus.FAILED, Reason.TLS_FAILED, "5.7.10"),
    ("certificate-wrong-name", DeliveryStatus.FAILED, Reason.NAME_MISMATCH, "5.7.10"),
    ("certificate-expired", DeliveryStatus.FAILED, Reason.CERTIFICATE_EXPIRED, "5.7.10"),
    ("certificate-self-signed", DeliveryStatus.FAILED, Reason.CERTIFICATE_NOT_VERIFIED, "5.7.10"),
    ("certificate-untrusted", DeliveryStatus.FAILED, Reason.CERTIFICATE_NOT_VERIFIED, "5.7.10"),
    ("no-requiretls-after-tls", DeliveryStatus.FAILED, Reason.REQUIRETLS_NOT_OFFERED, "5.7.30"),
    ("requiretls-before-tls", DeliveryStatus.FAILED, Reason.STARTTLS_NOT_OFFERED, "5.7.10"),
    ("inject-after-starttls", DeliveryStatus.DEFERRED, Reason.CONNECTION_FAILED, "4.4.1"),
]


@pytest.mark.parametrize(
    ("misbehaving_server", "status", "reason", "code"),
    DOWNGRADES,
    indirect=["misbehaving_server"],
    ids=[d[0] for d in DOWNGRADES],
)
def test_deliver_sends_not_one_octet_of_a_requiretls_message_to_a_downgrade_rfc8689_4_2_1(
    misbehaving_server: ScriptedServer, status: DeliveryStatus, reason: Reason, code: str
) -> None:
    result = send(misbehaving_server)
    [r] = result.recipients
    assert (r.status, r.reason) == (status, reason), r
    assert r.reply is not None and str(r.reply.enhanced) == code
    nothing_leaked(misbehaving_server)
    if status is DeliveryStatus.FAILED:
        # RFC 8689 §5: the non-delivery report; the only host was the last
        assert result.bounce is not None and code.encode() in result.bounce.message


@pytest.mark.parametrize("misbehaving_server", ["inject-after-starttls"], indirect=True)
def test_deliver_never_handshakes_after_injected_replies(
    misbehaving_server: ScriptedServer,
) -> None:
    send(misbehaving_server)
    misbehaving_server.stop()
    [session] = misbehaving_server.sessions
    assert session.tls is None  # the client closed before any handshake
    assert session.plaintext.endswith(b"STARTTLS\r\n")


@pytest.mark.parametrize(
    "misbehaving_server", ["honest", ("trickle", {"delay": 0.001})], indirect=True
)
def test_deliver_reaches_an_honest_or_slow_server_with_requiretls(
    misbehaving_server: ScriptedServer,
) -> None:
    [r] = send(misbehaving_server).recipients
    assert r.status is DeliveryStatus.DELIVERED and r.requiretls, r
    misbehaving_server.stop()
    [session] = misbehaving_server.sessions
    assert session.tls is not None and session.mail_from[0].requiretls
    assert session.messages == [MESSAGE]
    assert MESSAGE not in session.plaintext  # it went inside TLS only


def test_deliver_gives_up_on_a_silent_server_within_its_timeout(
    make_misbehaving_server: Make,
) -> None:
    peer = make_misbehaving_server("silent", timeout=3)
    start = time.monotonic()
    [r] = send(peer, GREETING=0.5).recipients
    assert time.monotonic() - start < 3
    assert r.status is DeliveryStatus.DEFERRED and r.reason is Reason.CONNECTION_FAILED
    nothing_leaked(peer)


@pytest.mark.parametrize(
    ("name", "options"),
    [("silent-after-data", {"timeout": 3}), ("close-mid-data", {"after": 10})],
)
def test_deliver_never_counts_a_message_without_its_250_rfc5321_4_5_4_1(
    make_misbehaving_server: Make, name: str, options: dict[str, Any]
) -> None:
    peer = make_misbehaving_server(name, **options)
    result = send(peer, EOM=0.5)
    [r] = result.recipients
    assert r.status is DeliveryStatus.DEFERRED, r
    assert r.reply is not None and r.reply.code // 100 == 4
    assert result.bounce is None
    peer.stop()
    assert peer.messages == [] and peer.sessions[0].tls is not None


@pytest.mark.parametrize("misbehaving_server", ["strip-starttls", "starttls-454"], indirect=True)
def test_deliver_sends_an_untagged_message_in_plaintext_when_tls_is_not_to_be_had_rfc7435(
    misbehaving_server: ScriptedServer,
) -> None:
    """Without REQUIRETLS the same downgrade is opportunistic TLS's known
    weakness (RFC 7435): the message goes in plaintext.  This is the contrast
    the REQUIRETLS tests above draw."""
    [r] = send(misbehaving_server, requiretls=False).recipients
    assert r.status is DeliveryStatus.DELIVERED and r.tls_version is None
    misbehaving_server.stop()
    assert misbehaving_server.messages == [MESSAGE]


# -- our client against them: connect(), step by step ---------------------------------------


def connect(peer: ScriptedServer) -> sync.Client:
    return sync.connect(
        "127.0.0.1", peer.port, local_hostname="c.example", timeout=TIMEOUT,
        server_hostname=peer.hostname,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("misbehaving_server", "code"),
    [("strip-starttls", "5.7.10"), ("requiretls-before-tls", "5.7.10")],
    indirect=["misbehaving_server"],
)
def test_connect_refuses_requiretls_without_tls_before_a_byte_rfc8689_2(
    misbehaving_server: ScriptedServer, code: str
) -> None:
    with connect(misbehaving_server) as client:
        with pytest.raises(LocalProtocolError):
            client.starttls(misbehaving_server.ca.client_context())
        with pytest.raises(RequireTLSError) as refused:
            client.send("alice@sender.example", ["bob@example.org"], MESSAGE, requiretls=True)
        assert refused.value.reply is not None and str(refused.value.reply.enhanced) == code
        client.quit()
    nothing_leaked(misbehaving_server)


@pytest.mark.parametrize("misbehaving_server", ["no-requiretls-after-tls"], indirect=True)
def test_connect_refuses_requiretls_when_the_offer_after_tls_lacks_it_rfc8689_4_2_1(
    misbehaving_server: ScriptedServer,
) -> None:
    with connect(misbehaving_server) as client:
        client.starttls(misbehaving_server.ca.client_context())
        with pytest.raises(RequireTLSError) as refused:
            client.send("alice@sender.example", ["bob@example.org"], MESSAGE, requiretls=True)
        assert refused.value.reply is not None and str(refused.value.reply.enhanced) == "5.7.30"
        client.quit()
    nothing_leaked(misbehaving_server)


@pytest.mark.parametrize("misbehaving_server", ["inject-after-starttls"], indirect=True)
def test_connect_refuses_injected_replies_before_the_handshake_rfc3207_4_2(
    misbehaving_server: ScriptedServer,
) -> None:
    with connect(misbehaving_server) as client, pytest.raises(RemoteProtocolError):
        client.starttls(misbehaving_server.ca.client_context())
    nothing_leaked(misbehaving_server)
    assert misbehaving_server.sessions[0].tls is None


# -- the misbehaving clients against our server ----------------------------------------------


class Watching(RecordingHandler):
    """Also records every reverse path the server asked the handler about."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: list[str] = []

    def on_mail(self, session: SessionInfo, event: MailFrom) -> Reply:
        self.senders.append(str(event.reverse_path))
        return Reply(250, "OK", "2.1.0")


@pytest.mark.parametrize("kind", KINDS)
def test_commands_injected_after_starttls_never_run_cve_2011_0411(
    kind: str, smtp_test_ca: LoopbackCA
) -> None:
    handler = Watching()
    with running(kind, handler, tls=smtp_test_ca.server_context(), read_timeout=TIMEOUT) as srv:
        record = StartTLSInjectionClient(timeout=TIMEOUT).run("127.0.0.1", srv.port)
    assert [r.code for r in record.replies] == [220, 250, 220]
    assert record.replies[-1].text == "Ready to start TLS"
    # whether or not the handshake completed, nothing was answered inside
    # TLS (neither the injected MAIL nor the EHLO) and the server closed
    assert record.encrypted == b"" and record.closed_by_server
    assert handler.senders == []


@pytest.mark.parametrize("variant", sorted(END_OF_DATA_LOOKALIKES))
@pytest.mark.parametrize("mode", ["reject", "normalise"])
def test_no_end_of_data_lookalike_smuggles_a_second_message_rfc5321_4_1_1_4(
    variant: str, mode: str, smtp_test_ca: LoopbackCA
) -> None:
    handler = Watching()
    config = ServerConfig(starttls=True, bare_line_endings=mode)  # type: ignore[arg-type]
    with LoopbackServer(
        ca=smtp_test_ca, handler=handler, config=config, read_timeout=TIMEOUT
    ) as srv:
        record = SmugglingClient(variant, timeout=TIMEOUT).run("127.0.0.1", srv.port)
    assert handler.senders == ["alice@client.test.example"]
    codes = [r.code for r in record.replies]
    # greeting, EHLO, MAIL, RCPT, 354, one reply to the one end of data, QUIT
    assert codes[:5] == [220, 250, 250, 250, 354] and codes[6:] == [221], codes
    if mode == "reject" and BARE.search(END_OF_DATA_LOOKALIKES[variant]):
        # RFC 5321 §2.3.8: refused at the real end, nothing delivered
        assert (codes[5], str(record.replies[5].enhanced)) == (500, "5.5.2")
        assert handler.messages == []
    else:
        # one message, read to the real end: the smuggled transaction is content
        assert codes[5] == 250
        [message] = handler.messages
        assert b"MAIL FROM:<smuggler@attacker.example>" in message.content


@pytest.mark.parametrize("kind", KINDS)
def test_smuggling_fails_through_every_adapter(kind: str) -> None:
    handler = Watching()
    with running(kind, handler, read_timeout=TIMEOUT) as srv:
        record = SmugglingClient("LF.LF", timeout=TIMEOUT).run("127.0.0.1", srv.port)
    assert handler.senders == ["alice@client.test.example"] and handler.messages == []
    assert [r.code for r in record.replies][-2:] == [500, 221]


def test_a_trickling_client_is_served(smtp_server: LoopbackServer) -> None:
    record = TrickleClient(delay=0.001, timeout=TIMEOUT).run("127.0.0.1", smtp_server.port)
    assert [r.code for r in record.replies] == [220, 250, 250, 250, 354, 250, 221]
    smtp_server.stop()
    [message] = smtp_server.messages
    assert message.content == TrickleClient.MESSAGE


def test_a_silent_client_is_dropped_after_the_read_timeout_rfc5321_4_5_3_2(
    smtp_test_ca: LoopbackCA,
) -> None:
    with LoopbackServer(ca=smtp_test_ca, read_timeout=0.5) as srv:
        record = SilentClient(timeout=TIMEOUT).run("127.0.0.1", srv.port)
    assert record.closed_by_server and 0.4 < record.duration < TIMEOUT
    assert [r.code for r in record.replies] == [220]


def test_a_client_that_closes_mid_data_delivers_nothing(smtp_server: LoopbackServer) -> None:
    record = CloseMidDataClient(timeout=TIMEOUT).run("127.0.0.1", smtp_server.port)
    assert [r.code for r in record.replies] == [220, 250, 250, 250, 354]
    smtp_server.stop()
    assert smtp_server.messages == []
    handler = smtp_server.handler
    assert isinstance(handler, RecordingHandler) and handler.aborted == 1


def test_the_step_by_step_client_against_our_loopback_server_rfc8689_2(
    smtp_server: LoopbackServer,
) -> None:
    with smtp_server.connect() as client:
        assert "STARTTLS" in (client.conn.capabilities or ())
        client.starttls(smtp_server.client_context())
        result = client.send(
            "alice@sender.example", [RcptTo("bob@example.org")], MESSAGE, requiretls=True
        )
        assert result.data is not None and result.data.code == 250
        client.quit()
    smtp_server.stop()
    [message] = smtp_server.messages
    assert message.content == MESSAGE and message.envelope.requiretls
    assert message.envelope.session.tls is not None


def test_a_loopback_server_with_a_handler_of_yours_has_no_record(smtp_test_ca: LoopbackCA) -> None:
    with LoopbackServer(ca=smtp_test_ca, handler=Handler()) as srv:
        with srv.connect() as client:
            client.quit()
        with pytest.raises(TypeError):
            srv.messages  # noqa: B018


def test_a_peer_of_another_name_gets_a_certificate_for_it(make_misbehaving_server: Make) -> None:
    peer = make_misbehaving_server("honest", hostname="mx2.other.example")
    result = deliver(
        MailFrom("alice@sender.example", requiretls=True),
        ["bob@other.example"],
        MESSAGE,
        local_hostname="client.sender.example",
        fulfil=loopback_dns("other.example", "mx2.other.example"),
        cafile=peer.cafile,
        port=peer.port,
        timeouts=TIMEOUTS,
    )
    assert result.recipients[0].status is DeliveryStatus.DELIVERED
