"""REQUIRETLS against an active attacker: a man in the middle on loopback
(:class:`smtp_rtls.testing.mitm.MitmProxy`) between our client and our own
server, through every adapter (connect() and deliver() of each, against the
serve() of the same kind).

Whatever the attack, a message sent with REQUIRETLS (RFC 8689 §2) crosses
the proxy only inside a verified TLS session whose EHLO reply offered
REQUIRETLS: the proxy forwards no MAIL and not one octet of the message
in clear, the server reads no MAIL, and deliver() reports the code RFC 8689
§4.2.1 names (5.7.10 when no protected session could be had; the non-delivery
report of §5 when it was the only MX host).  The transparent proxy is the
control: the same message goes through with REQUIRETLS.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from attack_helpers import TIMEOUT, Watching, connect, deliver, run

from adapters import KINDS, running
from smtp_rtls import MailFrom, ProtocolError, RequireTLSError
from smtp_rtls.policy.codes import Reason
from smtp_rtls.session import DEFAULT_TIMEOUTS, DeliveryResult, DeliveryStatus
from smtp_rtls.testing.mitm import MitmProxy, ProxiedConnection
from smtp_rtls.testing.peers import LoopbackCA, loopback_dns

MX = "mx.test.example"
MESSAGE = (
    b"From: alice@sender.example\r\nTo: bob@example.org\r\nSubject: the-secret-subject\r\n"
    b"\r\nNot one octet of this may cross the proxy in clear.\r\n"
)
SECRETS = [line for line in MESSAGE.split(b"\r\n") if line]
TIMEOUTS = dict.fromkeys(DEFAULT_TIMEOUTS, TIMEOUT)

# (mode, the proxy's certificate in terminate-tls, deliver()'s reason)
ATTACKS = [
    ("strip-starttls", None, Reason.STARTTLS_NOT_OFFERED),
    ("rename-starttls", None, Reason.STARTTLS_NOT_OFFERED),
    ("refuse-starttls", None, Reason.TLS_FAILED),
    ("terminate-tls", "untrusted", Reason.CERTIFICATE_NOT_VERIFIED),
    ("terminate-tls", "wrong-name", Reason.NAME_MISMATCH),
    ("terminate-tls", "self-signed", Reason.CERTIFICATE_NOT_VERIFIED),
    ("corrupt-tls", None, Reason.CONNECTION_FAILED),
]
IDS = [m if c is None else f"{m}-{c}" for m, c, _ in ATTACKS]


@pytest.fixture(scope="module")
def ca() -> Iterator[LoopbackCA]:
    with LoopbackCA((MX, "localhost", "127.0.0.1")) as ca:
        yield ca


@pytest.fixture(scope="module")
def certificates(ca: LoopbackCA) -> dict[str, ssl.SSLContext]:
    """The proxy's own certificates: for MX from a CA nobody trusts, for
    another name from the right CA, self-signed for MX."""
    return {
        kind: ca.server_context(kind, (MX,)) for kind in ("untrusted", "wrong-name", "self-signed")
    }


class Attack:
    """Our server of one kind behind a proxy mounting one attack."""

    def __init__(self, server: Any, handler: Watching, proxy: MitmProxy) -> None:
        self.server = server
        self.handler = handler
        self.proxy = proxy

    def connection(self) -> ProxiedConnection:
        self.proxy.stop()
        [conn] = self.proxy.connections
        return conn

    def assert_nothing_sent(self) -> None:
        """RFC 8689 §4.2.1: no MAIL and not one octet of the message passed
        the proxy in clear, and the server read no MAIL at all."""
        conn = self.connection()
        assert b"MAIL" not in conn.plaintext_to_server.upper()
        assert not any(c.upper().startswith(b"MAIL") for c in conn.commands)
        for secret in SECRETS:
            assert secret not in conn.to_server and secret not in conn.from_client
        assert conn.intercepted == b""  # the proxy's own TLS carried nothing
        assert self.handler.senders == [] and self.handler.messages == []


@pytest.fixture
def attack(
    request: pytest.FixtureRequest, ca: LoopbackCA, certificates: dict[str, ssl.SSLContext]
) -> Iterator[Attack]:
    kind, mode, certificate = request.param
    handler = Watching()
    tls = ca.server_context("valid", (MX, "localhost", "127.0.0.1"))
    with running(kind, handler, tls=tls, hostname=MX, read_timeout=TIMEOUT) as server:
        context = certificates[certificate] if certificate else None
        with MitmProxy(server.port, mode=mode, tls_context=context, timeout=TIMEOUT) as proxy:
            yield Attack(server, handler, proxy)


def send(kind: str, attack: Attack, ca: LoopbackCA, *, requiretls: bool = True) -> DeliveryResult:
    """deliver() of ``kind`` to example.org, whose DNSSEC-validated MX is
    the proxy."""
    return deliver(
        kind,
        MailFrom("alice@sender.example", requiretls=requiretls),
        ["bob@example.org"],
        MESSAGE,
        local_hostname="client.sender.example",
        fulfil=loopback_dns("example.org", MX),
        cafile=ca.cafile,
        port=attack.proxy.port,
        timeouts=TIMEOUTS,
    )


def params(with_cert: bool = True) -> list[Any]:
    return [
        pytest.param((kind, mode, cert), reason, id=f"{kind}-{name}")
        for kind in KINDS
        for (mode, cert, reason), name in zip(ATTACKS, IDS, strict=True)
    ]


@pytest.mark.parametrize(("attack", "reason"), params(), indirect=["attack"])
def test_deliver_sends_nothing_through_a_downgrading_proxy_rfc8689_4_2_1(
    attack: Attack, reason: Reason, ca: LoopbackCA, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["attack"][0]
    result = send(kind, attack, ca)
    [r] = result.recipients
    attack.assert_nothing_sent()
    assert r.reason is reason, r
    assert r.reply is not None
    if reason is Reason.CONNECTION_FAILED:
        # the TLS session broke after the handshake (a forged record):
        # nothing says the next try will meet the attacker, so try later
        assert r.status is DeliveryStatus.DEFERRED and str(r.reply.enhanced) == "4.4.1"
        assert result.bounce is None
    else:
        # RFC 8689 §4.2.1 ¶4: "Unable to establish TLS-protected SMTP session"
        assert r.status is DeliveryStatus.FAILED and str(r.reply.enhanced) == "5.7.10"
        # RFC 8689 §5: the only MX host failed, so a non-delivery report
        assert result.bounce is not None and b"5.7.10" in result.bounce.message


@pytest.mark.parametrize(("attack", "reason"), params(), indirect=["attack"])
def test_connect_refuses_requiretls_through_a_downgrading_proxy_rfc8689_2(
    attack: Attack, reason: Reason, ca: LoopbackCA, request: pytest.FixtureRequest
) -> None:
    kind, mode, _ = request.node.callspec.params["attack"]

    async def scenario() -> None:
        client = await connect(kind, attack.proxy.port, server_hostname=MX)
        try:
            with pytest.raises(
                (ProtocolError, ConnectionError, ssl.SSLError, trio.BrokenResourceError)
            ) as failed:
                await client.starttls(ca.client_context())
            if mode == "terminate-tls":
                assert "CERTIFICATE_VERIFY_FAILED" in _chain(failed.value)
            elif mode == "corrupt-tls" and kind in ("sync", "trio"):
                # the error names the forged record (trio's used to say only
                # "BrokenResourceError"); asyncio says "Connection lost"
                assert "BAD_RECORD_MAC" in _chain(failed.value)
            with pytest.raises(ProtocolError) as refused:
                await client.send(
                    "alice@sender.example", ["bob@example.org"], MESSAGE, requiretls=True
                )
            if mode in ("strip-starttls", "rename-starttls", "refuse-starttls"):
                # RFC 8689 §4.2.1 ¶4: no TLS session, 5.7.10
                assert isinstance(refused.value, RequireTLSError)
                assert refused.value.reply is not None
                assert str(refused.value.reply.enhanced) == "5.7.10"
        finally:
            await client.close()

    run(kind, scenario)
    attack.assert_nothing_sent()
    if mode == "corrupt-tls":
        # the failure above is the forged record's (asyncio reports it only
        # as "Connection lost"; the others name the bad record MAC)
        assert attack.proxy.connections[0].corrupted >= 1


def _chain(exc: BaseException | None) -> str:
    """The text of an exception and of its causes."""
    out = []
    while exc is not None:
        out.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " / ".join(out)


@pytest.mark.parametrize(
    "attack", [(kind, "transparent", None) for kind in KINDS], indirect=True, ids=KINDS
)
def test_the_transparent_proxy_lets_a_requiretls_message_through_rfc8689_4_2_1(
    attack: Attack, ca: LoopbackCA, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["attack"][0]
    [r] = send(kind, attack, ca).recipients
    assert r.status is DeliveryStatus.DELIVERED and r.requiretls, r
    conn = attack.connection()
    assert conn.tls and conn.commands[-1].upper() == b"STARTTLS"
    for secret in SECRETS:
        assert secret not in conn.to_server  # it crossed inside TLS only
    [message] = attack.handler.messages
    assert message.content == MESSAGE and message.envelope.requiretls


@pytest.mark.parametrize(
    "attack", [(kind, "strip-starttls", None) for kind in KINDS], indirect=True, ids=KINDS
)
def test_without_requiretls_the_strip_attack_reads_the_message_rfc7435(
    attack: Attack, ca: LoopbackCA, request: pytest.FixtureRequest
) -> None:
    """The contrast: an untagged message falls back to plaintext (opportunistic
    TLS, RFC 7435) and the proxy reads it; this is what REQUIRETLS prevents."""
    kind = request.node.callspec.params["attack"][0]
    [r] = send(kind, attack, ca, requiretls=False).recipients
    assert r.status is DeliveryStatus.DELIVERED and r.tls_version is None
    conn = attack.connection()
    assert MESSAGE in conn.plaintext_to_server
