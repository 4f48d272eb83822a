"""AsyncFulfiller on asyncio and on trio, against test_fulfil.py's loopback peers.

The same UDP DNS responder (chosen flags and rcodes) and HTTPS server
(trustme certificates) as the SyncFulfiller's tests, so both fulfillers are
held to the same answers; the fixtures are that module's.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import test_fulfil as peers
import trio
import trustme
from test_fulfil import HOST, Responder, Site, answering

from conftest_lab import Lab
from smtp_rtls.io._fulfil_async import AsyncFulfiller
from smtp_rtls.policy.mtasts import STSOutcome, fetch_policy
from smtp_rtls.policy.requests import (
    DNSAnswer,
    DNSQuery,
    HTTPSRequest,
    HTTPSResponse,
    Request,
    Result,
)

T = TypeVar("T")

# test_fulfil.py's fixtures: both fulfillers face the same peers.
ca = peers.ca
dns_server = peers.dns_server
https_server = peers.https_server


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


def ask(loop: str, fulfil: AsyncFulfiller, request: Request) -> Result:
    return run(loop, functools.partial(fulfil, request))


# --- DNS ---------------------------------------------------------------------------------


def test_query_has_do_bit_edns_1232_and_ad(
    loop: str, dns_server: Callable[[Responder], int]
) -> None:
    seen: list[dns.message.Message] = []

    def respond(query: dns.message.Message) -> dns.message.Message:
        seen.append(query)
        return answering("10 mx.example.")(query)

    fulfil = AsyncFulfiller(["127.0.0.1"], port=dns_server(respond), trusted=True)
    ask(loop, fulfil, DNSQuery("example", "MX"))
    query = seen[0]
    assert query.ednsflags & dns.flags.DO
    assert query.payload == 1232
    assert query.flags & dns.flags.AD


@pytest.mark.parametrize(("trusted", "ad", "authentic"), [(1, 1, 1), (0, 1, 0), (1, 0, 0)])
def test_authentic_is_trusted_and_ad(
    loop: str, dns_server: Callable[[Responder], int], trusted: int, ad: int, authentic: int
) -> None:
    port = dns_server(answering("10 mx.example.", ad=bool(ad)))
    fulfil = AsyncFulfiller(["127.0.0.1"], port=port, trusted=bool(trusted))
    answer = ask(loop, fulfil, DNSQuery("example", "MX"))
    assert answer == DNSAnswer(
        DNSQuery("example", "MX"), "NOERROR", ("10 mx.example.",), authentic=bool(authentic)
    )


def test_txt_strings_are_concatenated_rfc8461_3_1(
    loop: str, dns_server: Callable[[Responder], int]
) -> None:
    fulfil = AsyncFulfiller(["127.0.0.1"], port=dns_server(answering('"v=STSv1; " "id=abc"')))
    answer = ask(loop, fulfil, DNSQuery("_mta-sts.example", "TXT"))
    assert answer.records == ("v=STSv1; id=abc",)  # type: ignore[union-attr]


def test_nodata_nxdomain_servfail_timeout(
    loop: str, dns_server: Callable[[Responder], int]
) -> None:
    def rcode_of(port: int, trusted: bool = True, timeout: float = 2) -> tuple[str, bool]:
        fulfil = AsyncFulfiller(["127.0.0.1"], port=port, trusted=trusted, timeout=timeout)
        answer = ask(loop, fulfil, DNSQuery("example", "MX"))
        return answer.rcode, answer.authentic  # type: ignore[union-attr]

    assert rcode_of(dns_server(answering())) == ("NOERROR", True)
    assert rcode_of(dns_server(answering(rcode=dns.rcode.NXDOMAIN))) == ("NXDOMAIN", True)
    assert rcode_of(dns_server(answering(rcode=dns.rcode.SERVFAIL, ad=False))) == (
        "SERVFAIL",
        False,
    )
    start = time.monotonic()
    assert rcode_of(dns_server(lambda query: None), timeout=0.5) == ("TIMEOUT", False)
    assert time.monotonic() - start < 5


def test_cname_expansion_is_reported_rfc7672_2_2_3(
    loop: str, dns_server: Callable[[Responder], int]
) -> None:
    def respond(query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AD
        name = query.question[0].name
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", "CNAME", "relay.hosting.example."))
        reply.answer.append(
            dns.rrset.from_text("relay.hosting.example.", 60, "IN", "A", "192.0.2.25")
        )
        return reply

    fulfil = AsyncFulfiller(["127.0.0.1"], port=dns_server(respond), trusted=True)
    answer = ask(loop, fulfil, DNSQuery("mx.example", "A"))
    assert answer.records == ("192.0.2.25",)  # type: ignore[union-attr]
    assert answer.canonical_name == "relay.hosting.example"  # type: ignore[union-attr]


def test_each_loop_uses_its_own_dnspython_backend(dns_server: Callable[[Responder], int]) -> None:
    """dnspython caches the first backend it sniffs as its default; asking trio
    after asyncio (and back) in one process must still work."""
    fulfil = AsyncFulfiller(["127.0.0.1"], port=dns_server(answering("192.0.2.1")))
    for loop in ("asyncio", "trio", "asyncio"):
        answer = ask(loop, fulfil, DNSQuery("mx.example", "A"))
        assert answer.records == ("192.0.2.1",), loop  # type: ignore[union-attr]


# --- HTTPS -------------------------------------------------------------------------------


def fulfiller(ca: trustme.CA, https_port: int, tmp_path: Path, **kw: object) -> AsyncFulfiller:
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    kw.setdefault("https_address", "127.0.0.1")
    return AsyncFulfiller(["127.0.0.1"], https_port=https_port, cafile=str(cafile), **kw)  # type: ignore[arg-type]


def fetch(loop: str, fulfil: AsyncFulfiller, request: HTTPSRequest) -> HTTPSResponse:
    response = ask(loop, fulfil, request)
    assert isinstance(response, HTTPSResponse)
    return response


def test_https_get_with_sni_and_host(
    loop: str, ca: trustme.CA, https_server: int, tmp_path: Path
) -> None:
    Site.body = b"version: STSv1\r\nmode: none\r\nmax_age: 1\r\n"
    Site.content_type = "text/plain; charset=utf-8"
    response = fetch(
        loop, fulfiller(ca, https_server, tmp_path), HTTPSRequest(HOST, "/.well-known/x")
    )
    assert response.error is None
    assert (response.status, response.content_type) == (200, "text/plain; charset=utf-8")
    assert response.body == Site.body
    assert Site.requests == [("/.well-known/x", HOST)]


def test_redirect_is_reported_not_followed_rfc8461_3_3(
    loop: str, ca: trustme.CA, https_server: int, tmp_path: Path
) -> None:
    Site.status = 301
    response = fetch(loop, fulfiller(ca, https_server, tmp_path), HTTPSRequest(HOST, "/"))
    assert response.status == 301
    assert len(Site.requests) == 1


def test_body_cap(loop: str, ca: trustme.CA, https_server: int, tmp_path: Path) -> None:
    Site.body = b"x" * 1001
    fulfil = fulfiller(ca, https_server, tmp_path)
    assert fetch(loop, fulfil, HTTPSRequest(HOST, "/", max_bytes=1000)).error == "too large"
    assert fetch(loop, fulfil, HTTPSRequest(HOST, "/", max_bytes=1001)).body == Site.body


def test_wrong_name_is_certificate_error(
    loop: str, ca: trustme.CA, https_server: int, tmp_path: Path
) -> None:
    fulfil = fulfiller(ca, https_server, tmp_path)
    assert fetch(loop, fulfil, HTTPSRequest("mta-sts.other.com", "/")).error == "certificate"


def test_timeout(loop: str, ca: trustme.CA, https_server: int, tmp_path: Path) -> None:
    Site.delay = 2.0
    start = time.monotonic()
    fulfil = fulfiller(ca, https_server, tmp_path)
    assert fetch(loop, fulfil, HTTPSRequest(HOST, "/", timeout=0.3)).error == "timeout"
    assert time.monotonic() - start < 2.0


def test_connection_refused(loop: str, ca: trustme.CA, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        response = fetch(loop, fulfiller(ca, port, tmp_path), HTTPSRequest(HOST, "/", timeout=2))
    assert response.error is not None and response.error.startswith("connect"), response


def test_policy_host_is_resolved_by_the_configured_resolver(
    loop: str,
    ca: trustme.CA,
    https_server: int,
    dns_server: Callable[[Responder], int],
    tmp_path: Path,
) -> None:
    """No https_address: AAAA and A from the configured resolver, never getaddrinfo;
    ::1 refuses (the server is on 127.0.0.1 only), 127.0.0.1 answers."""
    seen: list[tuple[str, str]] = []

    def respond(query: dns.message.Message) -> dns.message.Message:
        question = query.question[0]
        rdtype = dns.rdatatype.to_text(question.rdtype)
        seen.append((question.name.to_text(omit_final_dot=True), rdtype))
        return answering({"AAAA": "::1", "A": "127.0.0.1"}[rdtype])(query)

    fulfil = fulfiller(ca, https_server, tmp_path, https_address=None, port=dns_server(respond))
    response = fetch(loop, fulfil, HTTPSRequest(HOST, "/.well-known/mta-sts.txt", timeout=5))
    assert response.error is None and response.status == 200, response
    assert seen == [(HOST, "AAAA"), (HOST, "A")]


def test_policy_host_without_address(loop: str, dns_server: Callable[[Responder], int]) -> None:
    port = dns_server(answering(rcode=dns.rcode.NXDOMAIN))
    response = fetch(loop, AsyncFulfiller(["127.0.0.1"], port=port), HTTPSRequest(HOST, "/"))
    assert response.error == f"connect: no address for {HOST}"


# --- the lab -----------------------------------------------------------------------------


@pytest.mark.lab
def test_lab_policy_through_the_lab_resolver(loop: str, lab: Lab) -> None:
    """RFC 8461 §3: the TXT record, then the policy from mta-sts.example.test, a
    name only the lab's resolver knows (no https_address)."""
    fulfil = AsyncFulfiller(
        ["127.0.0.1"], port=lab.unbound_port, https_port=lab.https_port, cafile=str(lab.ca)
    )

    async def lookup() -> STSOutcome:
        steps = fetch_policy("example.test")
        try:
            request = next(steps)
            while True:
                request = steps.send(await fulfil(request))
        except StopIteration as stop:
            outcome: STSOutcome = stop.value
            return outcome

    outcome = run(loop, lookup)
    assert outcome.policy is not None, outcome
    assert outcome.policy.mode == "enforce"
