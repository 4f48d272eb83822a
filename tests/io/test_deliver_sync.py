"""deliver(): the blocking runner of Delivery, over real loopback sockets.

Peers: a small threaded server made of ServerConnection (it offers
REQUIRETLS after TLS), aiosmtpd with STARTTLS (it never offers REQUIRETLS),
and the DNSSEC + MTA-STS lab (``lab`` fixture) for the look-ups.  DNS answers
otherwise come from a table, so the tests choose whether the MX is secure.
Every server and thread a test starts is stopped by that test.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from smtp_peers import MESSAGE, MX, TIMEOUTS, Certs, ThreadedServer, table

from conftest_lab import Lab
from smtp_rtls import (
    REPLY_TIMEOUTS,
    MailFrom,
)
from smtp_rtls.io.sync import deliver
from smtp_rtls.io.tls import client_context, tls_failure
from smtp_rtls.policy.codes import Reason
from smtp_rtls.policy.plan import Handshake, HandshakeFailure, PolicyConfig, Security
from smtp_rtls.session import DEFAULT_TIMEOUTS, DeliveryStatus


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("deliver-sync"))


@pytest.fixture
def server(certs: Certs) -> Iterator[Callable[..., ThreadedServer]]:
    started: list[ThreadedServer] = []

    def start(kind: str | None = "valid", **kwargs: Any) -> ThreadedServer:
        srv = ThreadedServer(certs.context(kind) if kind else None, **kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def send(
    port: int, fulfil: Any, *, requiretls: bool = True, cafile: str | None = None, **kw: Any
) -> Any:
    return deliver(
        MailFrom("alice@sender.example", requiretls=requiretls),
        ["bob@example.org"],
        MESSAGE,
        local_hostname="client.sender.example",
        fulfil=fulfil,
        cafile=cafile,
        port=port,
        timeouts=kw.pop("timeouts", TIMEOUTS),
        **kw,
    )


# -- the ServerConnection peer --------------------------------------------------------------


def test_requiretls_with_pkix_over_loopback(certs: Certs, server: Any) -> None:
    srv = server()
    result = send(srv.port, table(authentic=True), cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DELIVERED, r
    assert r.requiretls and r.security is Security.PKIX and r.address == "127.0.0.1"
    assert r.tls_version in ("TLSv1.2", "TLSv1.3")
    mail = next(e for e in srv.events if isinstance(e, MailFrom))
    assert isinstance(mail, MailFrom) and mail.requiretls
    assert bytes(srv.content) == MESSAGE


def test_rfc7672_dane_ee_over_loopback_takes_an_untrusted_certificate(
    certs: Certs, server: Any
) -> None:
    srv = server("untrusted")
    fulfil = table(authentic=True, tlsa=(certs.tlsa_ee("untrusted"),))
    result = send(srv.port, fulfil, cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DELIVERED and r.security is Security.DANE and r.requiretls


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("wrong-name", Reason.NAME_MISMATCH),
        ("expired", Reason.CERTIFICATE_EXPIRED),
        ("untrusted", Reason.CERTIFICATE_NOT_VERIFIED),
    ],
)
def test_certificate_failures_from_real_verify_codes(
    certs: Certs, server: Any, kind: str, reason: Reason
) -> None:
    srv = server(kind)
    result = send(srv.port, table(authentic=True), cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.FAILED and r.reason is reason, r
    assert not any(isinstance(e, MailFrom) for e in srv.events)
    assert not srv.content
    assert result.bounce is not None


def test_connection_refused_defers(certs: Certs) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed below: nothing listens there
    result = send(port, table(authentic=True), cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DEFERRED and r.reason is Reason.CONNECTION_FAILED


def test_a_silent_server_times_out(certs: Certs, server: Any) -> None:
    srv = server(greet=False)
    timeouts = dict(TIMEOUTS, GREETING=0.3)
    result = send(srv.port, table(authentic=True), cafile=certs.cafile, timeouts=timeouts)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DEFERRED and r.reason is Reason.CONNECTION_FAILED
    assert "timed out" in r.policy or "Timeout" in r.policy


def test_ipv6_loopback(certs: Certs, server: Any) -> None:
    if not socket.has_ipv6:
        pytest.fail("no IPv6 on this host")
    srv = server(host="::1")
    result = send(srv.port, table(authentic=True, address="::1"), cafile=certs.cafile)
    assert result.recipients[0].status is DeliveryStatus.DELIVERED


# -- aiosmtpd --------------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.original_content or envelope.content))
        return "250 OK"


@pytest.fixture
def aiosmtpd_server(certs: Certs) -> Iterator[tuple[int, _Sink]]:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    sink = _Sink()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        tls_context=certs.context("valid"),
        require_starttls=False,
        ready_timeout=10,
    )
    controller.start()
    try:
        yield port, sink
    finally:
        controller.stop()


@pytest.mark.interop("aiosmtpd", "deliver(): untagged message over STARTTLS")
def test_aiosmtpd_untagged_message_with_starttls(
    certs: Certs, aiosmtpd_server: tuple[int, _Sink]
) -> None:
    port, sink = aiosmtpd_server
    result = send(port, table(authentic=False), requiretls=False, cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DELIVERED, r
    assert r.security is Security.OPPORTUNISTIC and r.tls_version is not None
    assert not r.requiretls
    assert sink.messages and sink.messages[0].replace(b"\r\n", b"\n") == MESSAGE.replace(
        b"\r\n", b"\n"
    )


@pytest.mark.interop("aiosmtpd", "deliver(): REQUIRETLS refused with 5.7.30, nothing sent")
def test_aiosmtpd_does_not_offer_requiretls_5_7_30(
    certs: Certs, aiosmtpd_server: tuple[int, _Sink]
) -> None:
    port, sink = aiosmtpd_server
    result = send(port, table(authentic=True), cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.FAILED and r.reason is Reason.REQUIRETLS_NOT_OFFERED
    assert r.reply is not None and str(r.reply.enhanced) == "5.7.30"
    assert not sink.messages
    assert result.bounce is not None and b"5.7.30" in result.bounce.message


# -- the helpers -----------------------------------------------------------------------------


def test_client_context_follows_the_handshake(certs: Certs) -> None:
    strict = client_context(Handshake(MX, verify=True, required=True, minimum_version="TLSv1.2"))
    assert strict.verify_mode is ssl.CERT_REQUIRED and strict.check_hostname
    assert strict.minimum_version is ssl.TLSVersion.TLSv1_2
    loose = client_context(Handshake(MX, verify=False, required=False), certs.cafile)
    assert loose.verify_mode is ssl.CERT_NONE and not loose.check_hostname


def test_tls_failure_of_other_errors() -> None:
    assert tls_failure(ConnectionResetError("x")).kind is HandshakeFailure.OTHER
    assert tls_failure(ssl.SSLError(1, "alert")).kind is HandshakeFailure.OTHER


def test_default_timeouts_are_rfc5321s() -> None:
    for verb, seconds in REPLY_TIMEOUTS.items():
        assert DEFAULT_TIMEOUTS[verb] == seconds
    assert DEFAULT_TIMEOUTS["WRITE"] == 180.0  # RFC 5321 §4.5.3.2.5


# -- the lab: real DNSSEC and MTA-STS ------------------------------------------------------


@pytest.mark.lab
@pytest.mark.parametrize(("trusted", "security"), [(True, Security.DANE), (False, Security.PKIX)])
def test_lab_example_test_delivers_with_requiretls(
    lab: Lab, server: Any, trusted: bool, security: Security
) -> None:
    """example.test: signed, TLSA 3 1 1 + 2 1 1, MTA-STS enforce.  With a trusted
    resolver DANE applies; without, the real MTA-STS policy validates the MX
    and PKIX against the lab CA (RFC 8689 §4.2.1 steps 2 and 4)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(lab.dir / "pki" / "server.chain.pem"))
    srv = ThreadedServer(ctx)
    try:
        result = deliver(
            MailFrom("alice@sender.example", requiretls=True),
            ["bob@example.test"],
            MESSAGE,
            local_hostname="client.sender.example",
            fulfil=lab.fulfiller(trusted=trusted),
            cafile=str(lab.ca),
            port=srv.port,
            timeouts=TIMEOUTS,
            config=PolicyConfig(),
        )
    finally:
        srv.stop()
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DELIVERED, (r, result.attempts)
    assert r.requiretls and r.security is security and r.host == "mx.example.test"
    assert bytes(srv.content) == MESSAGE


# -- an attacker on the path: plaintext injected after the 220 to STARTTLS -----------------


def test_a_reply_injected_after_the_starttls_220_stops_the_delivery_rfc3207_4(
    certs: Certs,
) -> None:
    """A man in the middle appends a plaintext reply to the 220 (the client side of
    CVE-2011-0411): the client must not read it inside TLS, and not one byte of the
    envelope or the message may reach the wire."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    received = bytearray()
    handshakes: list[bool] = []

    def peer() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            conn.sendall(b"220 mx.example.org ESMTP\r\n")
            try:
                while b"STARTTLS\r\n" not in received:
                    data = conn.recv(4096)
                    if not data:
                        return
                    received.extend(data)
                    # answer the EHLO line, once
                    if received.startswith(b"EHLO") and received.count(b"\r\n") == 1:
                        conn.sendall(b"250-mx.example.org\r\n250 STARTTLS\r\n")
                conn.sendall(b"220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n")
                # a valid certificate: a client that missed the injection would
                # complete the handshake and go on with MAIL inside TLS
                with certs.context("valid").wrap_socket(conn, server_side=True) as tls:
                    handshakes.append(True)
                    while data := tls.recv(4096):
                        received.extend(data)
            except OSError:
                return

    thread = threading.Thread(target=peer)
    thread.start()
    try:
        result = send(port, table(authentic=True), cafile=certs.cafile)
    finally:
        listener.close()
        thread.join(10)
    (r,) = result.recipients
    assert r.status is not DeliveryStatus.DELIVERED, r
    assert handshakes == [], (r, bytes(received))  # the client stopped before the handshake
    assert b"MAIL FROM" not in received and MESSAGE not in received
