"""deliver() on asyncio and on trio: the async runners of Delivery, over real loopback sockets.

The scenarios of test_deliver_sync.py, each run on both loops (the ``loop``
fixture): its threaded ServerConnection peer (REQUIRETLS after STARTTLS),
aiosmtpd with STARTTLS, trustme certificates, DNS from a table; and the
DNSSEC + MTA-STS lab through the AsyncFulfiller, with the policy host
resolved by the lab's resolver.  Every server a test starts is stopped by
that test; each ``run`` starts and ends its own event loop.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import trio
from aiosmtpd.controller import Controller
from smtp_peers import MESSAGE, TIMEOUTS, Certs, ThreadedServer, table

from conftest_lab import Lab
from smtp_rtls import Bdat, Data, MailFrom
from smtp_rtls.io._deliver_asyncio import deliver as asyncio_deliver
from smtp_rtls.io._deliver_trio import deliver as trio_deliver
from smtp_rtls.io._fulfil_async import AsyncFulfiller
from smtp_rtls.policy.codes import Reason
from smtp_rtls.policy.plan import PolicyConfig, Security
from smtp_rtls.policy.requests import Request, Result
from smtp_rtls.session import DeliveryResult, DeliveryStatus

T = TypeVar("T")
DELIVER = {"asyncio": asyncio_deliver, "trio": trio_deliver}


def run(loop: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` on a fresh event loop of the kind named."""
    if loop == "trio":
        return trio.run(work)

    async def main() -> T:
        return await work()

    return asyncio.run(main())


@pytest.fixture(params=["asyncio", "trio"])
def loop(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("deliver-async"))


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
    loop: str,
    port: int,
    fulfil: Any,
    *,
    requiretls: bool = True,
    cafile: str | None = None,
    recipient: str = "bob@example.org",
    **kw: Any,
) -> DeliveryResult:
    work = functools.partial(
        DELIVER[loop],
        MailFrom("alice@sender.example", requiretls=requiretls),
        [recipient],
        MESSAGE,
        local_hostname="client.sender.example",
        fulfil=fulfil,
        cafile=cafile,
        port=port,
        timeouts=kw.pop("timeouts", TIMEOUTS),
        **kw,
    )
    return run(loop, work)


def awaitable(answer: Callable[[Request], Result]) -> Callable[[Request], Awaitable[Result]]:
    """The table as a coroutine function, as an AsyncFulfiller is called."""

    async def fulfil(request: Request) -> Result:
        return answer(request)

    return fulfil


# -- the ServerConnection peer --------------------------------------------------------------


def test_requiretls_with_pkix_over_loopback(loop: str, certs: Certs, server: Any) -> None:
    srv = server()
    result = send(loop, srv.port, awaitable(table(authentic=True)), cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DELIVERED, r
    assert r.requiretls and r.security is Security.PKIX and r.address == "127.0.0.1"
    assert r.tls_version in ("TLSv1.2", "TLSv1.3")
    mail = next(e for e in srv.events if isinstance(e, MailFrom))
    assert isinstance(mail, MailFrom) and mail.requiretls
    assert bytes(srv.content) == MESSAGE


def test_rfc3030_bdat_envelope_and_content_in_one_write_over_tls(
    loop: str, certs: Certs, server: Any
) -> None:
    # RFC 3030 §4.2: under TLS the runners carry MAIL, RCPT, BDAT LAST and
    # the content as one write (test_delivery.py checks the write itself);
    # the server reads one chunk, no DATA, and stores the message
    srv = server()
    result = send(loop, srv.port, awaitable(table(authentic=True)), cafile=certs.cafile, bdat=True)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DELIVERED and r.requiretls, r
    chunks = [e for e in srv.events if isinstance(e, Bdat)]
    assert [(c.size, c.last) for c in chunks] == [(len(MESSAGE), True)]
    assert not any(isinstance(e, Data) for e in srv.events)
    assert bytes(srv.content) == MESSAGE


def test_a_plain_function_serves_as_fulfil(loop: str, certs: Certs, server: Any) -> None:
    srv = server()
    result = send(loop, srv.port, table(authentic=True), cafile=certs.cafile)
    assert result.recipients[0].status is DeliveryStatus.DELIVERED


def test_rfc7672_dane_ee_over_loopback_takes_an_untrusted_certificate(
    loop: str, certs: Certs, server: Any
) -> None:
    srv = server("untrusted")
    fulfil = table(authentic=True, tlsa=(certs.tlsa_ee("untrusted"),))
    result = send(loop, srv.port, fulfil, cafile=certs.cafile)
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
    loop: str, certs: Certs, server: Any, kind: str, reason: Reason
) -> None:
    srv = server(kind)
    result = send(loop, srv.port, table(authentic=True), cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.FAILED and r.reason is reason, r
    assert not any(isinstance(e, MailFrom) for e in srv.events)
    assert not srv.content
    assert result.bounce is not None


def test_connection_refused_defers(loop: str, certs: Certs) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed below: nothing listens there
    result = send(loop, port, table(authentic=True), cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DEFERRED and r.reason is Reason.CONNECTION_FAILED
    assert "Connect" in r.policy or "refused" in r.policy.lower(), r.policy


def test_a_silent_server_times_out(loop: str, certs: Certs, server: Any) -> None:
    srv = server(greet=False)
    timeouts = dict(TIMEOUTS, GREETING=0.3)
    result = send(loop, srv.port, table(authentic=True), cafile=certs.cafile, timeouts=timeouts)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DEFERRED and r.reason is Reason.CONNECTION_FAILED
    assert "timed out" in r.policy, r.policy


def test_ipv6_loopback(loop: str, certs: Certs, server: Any) -> None:
    if not socket.has_ipv6:
        pytest.fail("no IPv6 on this host")
    srv = server(host="::1")
    result = send(loop, srv.port, table(authentic=True, address="::1"), cafile=certs.cafile)
    assert result.recipients[0].status is DeliveryStatus.DELIVERED


def test_asyncio_deliver_does_not_block_the_loop(certs: Certs, server: Any) -> None:
    """Other tasks run while a delivery waits for a silent server."""
    srv = server(greet=False)
    ticks: list[int] = []

    async def main() -> DeliveryResult:
        async def tick() -> None:
            for i in range(100):
                ticks.append(i)
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        try:
            return await asyncio_deliver(
                MailFrom("alice@sender.example"),
                ["bob@example.org"],
                MESSAGE,
                local_hostname="client.sender.example",
                fulfil=table(authentic=True),
                cafile=certs.cafile,
                port=srv.port,
                timeouts=dict(TIMEOUTS, GREETING=0.3),
            )
        finally:
            ticker.cancel()

    result = asyncio.run(main())
    assert result.recipients[0].status is DeliveryStatus.DEFERRED
    assert len(ticks) >= 10


def test_trio_deliver_is_cancellable(certs: Certs, server: Any) -> None:
    srv = server(greet=False)

    async def main() -> bool:
        with trio.move_on_after(0.3) as scope:
            await trio_deliver(
                MailFrom("alice@sender.example"),
                ["bob@example.org"],
                MESSAGE,
                local_hostname="client.sender.example",
                fulfil=table(authentic=True),
                cafile=certs.cafile,
                port=srv.port,
                timeouts=TIMEOUTS,
            )
        return scope.cancelled_caught

    assert trio.run(main)


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


def test_aiosmtpd_untagged_message_with_starttls(
    loop: str, certs: Certs, aiosmtpd_server: tuple[int, _Sink]
) -> None:
    port, sink = aiosmtpd_server
    result = send(loop, port, table(authentic=False), requiretls=False, cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DELIVERED, r
    assert r.security is Security.OPPORTUNISTIC and r.tls_version is not None
    assert not r.requiretls
    assert sink.messages and sink.messages[0].replace(b"\r\n", b"\n") == MESSAGE.replace(
        b"\r\n", b"\n"
    )


def test_aiosmtpd_does_not_offer_requiretls_5_7_30(
    loop: str, certs: Certs, aiosmtpd_server: tuple[int, _Sink]
) -> None:
    port, sink = aiosmtpd_server
    result = send(loop, port, table(authentic=True), cafile=certs.cafile)
    (r,) = result.recipients
    assert r.status is DeliveryStatus.FAILED and r.reason is Reason.REQUIRETLS_NOT_OFFERED
    assert r.reply is not None and str(r.reply.enhanced) == "5.7.30"
    assert not sink.messages
    assert result.bounce is not None and b"5.7.30" in result.bounce.message


# -- the lab: real DNSSEC and MTA-STS through the AsyncFulfiller ---------------------------


@pytest.mark.lab
@pytest.mark.parametrize(("trusted", "security"), [(True, Security.DANE), (False, Security.PKIX)])
def test_lab_example_test_delivers_with_requiretls(
    loop: str, lab: Lab, trusted: bool, security: Security
) -> None:
    """example.test: signed, TLSA 3 1 1 + 2 1 1, MTA-STS enforce.  With a trusted
    resolver DANE applies (RFC 7672); without, the MTA-STS policy, fetched from
    mta-sts.example.test at the address the lab's resolver gives (no
    ``https_address``), validates the MX and PKIX against the lab CA (RFC 8689
    §4.2.1 steps 2 and 4)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(lab.dir / "pki" / "server.chain.pem"))
    fulfil = AsyncFulfiller(
        ["127.0.0.1"],
        port=lab.unbound_port,
        trusted=trusted,
        https_port=lab.https_port,
        cafile=str(lab.ca),
    )
    srv = ThreadedServer(ctx)
    try:
        result = send(
            loop,
            srv.port,
            fulfil,
            cafile=str(lab.ca),
            recipient="bob@example.test",
            config=PolicyConfig(),
        )
    finally:
        srv.stop()
    (r,) = result.recipients
    assert r.status is DeliveryStatus.DELIVERED, (r, result.attempts)
    assert r.requiretls and r.security is security and r.host == "mx.example.test"
    assert bytes(srv.content) == MESSAGE
