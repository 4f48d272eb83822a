"""Session results from real deliveries (RFC 8460 §4.3), recorded and aggregated.

Each case is a real failure on loopback, through the real delivery path:
``smtp_rtls.io.sync.deliver`` asks a real UDP DNS server (AD bit set, the
resolver trusted), fetches MTA-STS policies from a real HTTPS server, and
talks to our own SMTP server serving the certificate of the case.  Its
session results are recorded into a state directory, read back, aggregated
into the day's report and checked against the RFC 8460 §4.4 schema.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smtp_rtls import MailFrom
from smtp_rtls.io.sync import deliver
from smtp_rtls.io.tlsrpt import TLSRPTStore
from smtp_rtls.policy.codes import Reason
from smtp_rtls.policy.plan import Action
from smtp_rtls.policy.tlsrpt import PolicyType, ReportSubmitter, ResultType, SessionResult
from smtp_rtls.session import DeliveryResult, DeliveryStatus

from .world import (
    DOMAIN,
    MESSAGE,
    MX,
    STS_HOST,
    TIMEOUTS,
    Certs,
    DNSServer,
    fulfiller,
    session_day,
    validate,
)

SUBMITTER = ReportSubmitter("Sender Inc.", "tlsrpt@sender.example")
STS_PATH = "/.well-known/mta-sts.txt"
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmax_age: 86400\r\n"


def zone(dns_server: DNSServer) -> None:
    """example.org: one MX, mx.example.org at 127.0.0.1; no TLSA, no MTA-STS."""
    dns_server.add(DOMAIN, "MX", f"10 {MX}.")
    dns_server.add(MX, "A", "127.0.0.1")
    dns_server.add(STS_HOST, "A", "127.0.0.1")


def run(
    dns_server: DNSServer,
    certs: Certs,
    port: int,
    tmp_path: Path,
    *,
    requiretls: bool = True,
    https_port: int = 443,
) -> tuple[DeliveryResult, tuple[SessionResult, ...], dict[str, Any]]:
    """Deliver one message, record its results, make their day's report: all three."""
    result = deliver(
        MailFrom("alice@sender.example", requiretls=requiretls),
        ["bob@example.org"],
        MESSAGE,
        local_hostname="client.sender.example",
        fulfil=fulfiller(dns_server, certs.cafile, https_port),
        cafile=certs.cafile,
        port=port,
        timeouts=TIMEOUTS,
    )
    store = TLSRPTStore(tmp_path / "tlsrpt")
    assert store.record_delivery(result) == len(result.tlsrpt_results())
    day = session_day(store.directory)
    log = store.read(day)
    assert log.damaged == ()
    assert log.results == result.tlsrpt_results()
    (report,) = store.make_reports(day, SUBMITTER)
    document = report.document()
    validate(document)
    return result, log.results, document


def failure(results: tuple[SessionResult, ...]) -> SessionResult:
    (only,) = results
    assert only.result_type is not None, only
    return only


# -- the TLS negotiation failures, §4.3.1 --------------------------------------------------


def test_a_policy_compliant_session_is_a_success_with_its_addresses_rfc8460_4_2_1(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], tmp_path: Path
) -> None:
    zone(dns_server)
    server = smtp(certs.context("valid"))
    result, results, document = run(dns_server, certs, server.port, tmp_path)
    assert result.delivered
    (success,) = results
    assert success.successful
    assert success.receiving_ip == "127.0.0.1"
    assert success.sending_mta_ip == "127.0.0.1"
    assert success.receiving_mx_helo == MX  # the greeting's name
    assert success.receiving_mx_hostname == MX
    (policy,) = document["policies"]
    assert policy["policy"] == {"policy-type": "no-policy-found", "policy-domain": DOMAIN}
    assert policy["summary"] == {
        "total-successful-session-count": 1,
        "total-failure-session-count": 0,
    }


@pytest.mark.parametrize(
    ("kind", "result_type"),
    [
        ("wrong-name", ResultType.CERTIFICATE_HOST_MISMATCH),
        ("expired", ResultType.CERTIFICATE_EXPIRED),
        ("untrusted", ResultType.CERTIFICATE_NOT_TRUSTED),
    ],
)
def test_certificate_failures_rfc8460_4_3_1(
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    tmp_path: Path,
    kind: str,
    result_type: ResultType,
) -> None:
    zone(dns_server)
    server = smtp(certs.context(kind))
    result, results, document = run(dns_server, certs, server.port, tmp_path)
    assert result.failed  # REQUIRETLS: PKIX or nothing (RFC 8689 §4.2.1)
    only = failure(results)
    assert only.result_type is result_type
    assert (only.receiving_ip, only.sending_mta_ip, only.receiving_mx_helo) == (
        "127.0.0.1",
        "127.0.0.1",
        MX,
    )
    assert only.failure_reason_code  # OpenSSL's words
    (detail,) = document["policies"][0]["failure-details"]
    assert detail["result-type"] == result_type.value
    assert detail["receiving-mx-helo"] == MX
    assert detail["failed-session-count"] == 1


def test_a_server_without_starttls_rfc8460_4_3_1(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], tmp_path: Path
) -> None:
    zone(dns_server)
    server = smtp(None)
    _, results, _ = run(dns_server, certs, server.port, tmp_path)
    only = failure(results)
    assert only.result_type is ResultType.STARTTLS_NOT_SUPPORTED
    assert only.receiving_ip == "127.0.0.1" and only.receiving_mx_helo == MX


def test_a_plaintext_session_of_an_untagged_message_is_starttls_not_supported(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], tmp_path: Path
) -> None:
    zone(dns_server)
    server = smtp(None)
    result, results, _ = run(dns_server, certs, server.port, tmp_path, requiretls=False)
    assert result.delivered  # opportunistic: delivered in plaintext
    assert failure(results).result_type is ResultType.STARTTLS_NOT_SUPPORTED


def test_a_failed_handshake_retried_in_plaintext_reports_the_handshake(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], tmp_path: Path
) -> None:
    """RFC 7435 fallback: the message goes in plaintext on a second connection,
    but the report says what TLS did (RFC 8460 §4.3), once."""
    zone(dns_server)
    server = smtp(certs.context("no-shared-cipher"))
    result, results, _ = run(dns_server, certs, server.port, tmp_path, requiretls=False)
    assert result.delivered and result.delivered[0].tls_version is None
    first, retry = result.sessions
    assert first.verdict.action is Action.TRY_NEXT
    assert first.verdict.reason is Reason.TLS_FAILED and first.tls is None
    assert not first.plaintext_retry
    assert retry.plaintext_retry and retry.verdict.action is Action.PROCEED
    only = failure(results)
    assert only.result_type is ResultType.VALIDATION_FAILURE
    # the client's view: the server's handshake_failure alert
    assert only.failure_reason_code is not None
    assert "HANDSHAKE_FAILURE" in only.failure_reason_code


# -- DANE, §4.3.2.1 ------------------------------------------------------------------------


def test_dane_tlsa_mismatch_is_tlsa_invalid_under_the_mx_host(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], tmp_path: Path
) -> None:
    zone(dns_server)
    dns_server.add(f"_25._tcp.{MX}", "TLSA", certs.tlsa_ee(certs.stale))
    server = smtp(certs.context("valid"))
    result, results, document = run(dns_server, certs, server.port, tmp_path)
    assert result.recipients[0].status is not DeliveryStatus.DELIVERED
    only = failure(results)
    assert only.result_type is ResultType.TLSA_INVALID
    assert only.policy.policy_type is PolicyType.TLSA
    # RFC 8460 §1.1: for DANE the policy domain is the TLSA base domain.
    assert document["policies"][0]["policy"]["policy-domain"] == MX
    assert document["policies"][0]["policy"]["policy-string"] == [certs.tlsa_ee(certs.stale)]


def test_dane_success_is_reported_under_the_tlsa_policy(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], tmp_path: Path
) -> None:
    zone(dns_server)
    dns_server.add(f"_25._tcp.{MX}", "TLSA", certs.tlsa_ee(certs.leaves["untrusted"]))
    server = smtp(certs.context("untrusted"))  # DANE-EE: no PKIX needed
    result, results, _ = run(dns_server, certs, server.port, tmp_path)
    assert result.delivered
    (only,) = results
    assert only.successful and only.policy.policy_type is PolicyType.TLSA


def test_a_failed_tlsa_lookup_is_dnssec_invalid_rfc8460_4_3_2_1(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], tmp_path: Path
) -> None:
    zone(dns_server)
    dns_server.rcodes[(f"_25._tcp.{MX}", "TLSA")] = "SERVFAIL"
    server = smtp(certs.context("valid"))
    result, results, _ = run(dns_server, certs, server.port, tmp_path)
    assert not result.sessions  # the host was not used (RFC 7672 §2.1.2)
    only = failure(results)
    assert only.result_type is ResultType.DNSSEC_INVALID
    assert only.receiving_mx_hostname == MX and only.receiving_ip is None


# -- MTA-STS, §4.3.2.2 ---------------------------------------------------------------------


def sts(dns_server: DNSServer, https: Callable[..., Any], certs: Certs, kind: str) -> int:
    """Announce an MTA-STS policy; its host serves ``kind`` certificate. The HTTPS port."""
    dns_server.add(f"_mta-sts.{DOMAIN}", "TXT", '"v=STSv1; id=20260301"')
    return int(https(certs.context(kind)).port)


def test_an_mta_sts_policy_met_is_a_success_under_it(
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    https: Callable[..., Any],
    tmp_path: Path,
) -> None:
    zone(dns_server)
    dns_server.add(f"_mta-sts.{DOMAIN}", "TXT", '"v=STSv1; id=20260301"')
    site = https(certs.context("sts"))
    site.pages[STS_PATH] = (200, "text/plain", POLICY)
    server = smtp(certs.context("valid"))
    _, results, document = run(
        dns_server, certs, server.port, tmp_path, requiretls=False, https_port=site.port
    )
    (only,) = results
    assert only.successful and only.policy.policy_type is PolicyType.STS
    policy = document["policies"][0]["policy"]
    assert policy["policy-type"] == "sts" and policy["mx-host"] == ["mx.example.org"]


def test_an_mx_host_the_policy_does_not_list_is_a_validation_failure(
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    https: Callable[..., Any],
    tmp_path: Path,
) -> None:
    zone(dns_server)
    dns_server.add(f"_mta-sts.{DOMAIN}", "TXT", '"v=STSv1; id=20260301"')
    site = https(certs.context("sts"))
    site.pages[STS_PATH] = (200, "text/plain", POLICY.replace(b"mx.example", b"mx9.example"))
    server = smtp(certs.context("valid"))
    _, results, _ = run(
        dns_server, certs, server.port, tmp_path, requiretls=False, https_port=site.port
    )
    only = failure(results)
    assert only.result_type is ResultType.VALIDATION_FAILURE  # RFC 8461 §4.1, no type of its own
    assert only.policy.policy_type is PolicyType.STS


@pytest.mark.parametrize(
    ("kind", "page", "result_type"),
    [
        ("sts", None, ResultType.STS_POLICY_FETCH_ERROR),  # 404
        ("sts", (200, "text/plain", b"not a policy"), ResultType.STS_POLICY_INVALID),
        ("sts-untrusted", (200, "text/plain", POLICY), ResultType.STS_WEBPKI_INVALID),
    ],
)
def test_an_mta_sts_policy_that_cannot_be_had_fails_every_session_rfc8460_4_3_2_2(
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    https: Callable[..., Any],
    tmp_path: Path,
    kind: str,
    page: tuple[int, str, bytes] | None,
    result_type: ResultType,
) -> None:
    zone(dns_server)
    dns_server.add(f"_mta-sts.{DOMAIN}", "TXT", '"v=STSv1; id=20260301"')
    site = https(certs.context(kind))
    if page is not None:
        site.pages[STS_PATH] = page
    server = smtp(certs.context("valid"))
    _, results, document = run(
        dns_server, certs, server.port, tmp_path, requiretls=False, https_port=site.port
    )
    only = failure(results)
    assert only.result_type is result_type
    assert document["policies"][0]["policy"] == {"policy-type": "sts", "policy-domain": DOMAIN}


# -- many sessions, one report ---------------------------------------------------------------


def test_a_day_of_deliveries_makes_one_valid_report_per_policy_domain(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], tmp_path: Path
) -> None:
    zone(dns_server)
    store = TLSRPTStore(tmp_path / "tlsrpt")
    fulfil = fulfiller(dns_server, certs.cafile)
    for kind in ("valid", "valid", "expired", "wrong-name", "expired"):
        server = smtp(certs.context(kind))
        result = deliver(
            MailFrom("alice@sender.example", requiretls=True),
            ["bob@example.org"],
            MESSAGE,
            local_hostname="client.sender.example",
            fulfil=fulfil,
            cafile=certs.cafile,
            port=server.port,
            timeouts=TIMEOUTS,
        )
        store.record_delivery(result)
    day = session_day(store.directory)
    (report,) = store.make_reports(day, SUBMITTER)
    document = report.document()
    validate(document)
    (policy,) = document["policies"]
    assert policy["summary"] == {
        "total-successful-session-count": 2,
        "total-failure-session-count": 3,
    }
    counts = {d["result-type"]: d["failed-session-count"] for d in policy["failure-details"]}
    assert counts == {"certificate-expired": 2, "certificate-host-mismatch": 1}
    lines = store.sessions_file(day).read_text().splitlines()
    assert len(lines) == 5


# -- the asynchronous runners say the same ---------------------------------------------------


@pytest.mark.parametrize("io", ["asyncio", "trio"])
def test_the_async_runners_record_the_addresses_and_the_server_name(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], io: str
) -> None:
    zone(dns_server)
    server = smtp(certs.context("expired"))
    arguments: dict[str, Any] = {
        "local_hostname": "client.sender.example",
        "fulfil": fulfiller(dns_server, certs.cafile),
        "cafile": certs.cafile,
        "port": server.port,
        "timeouts": TIMEOUTS,
    }
    mail = MailFrom("alice@sender.example", requiretls=True)
    if io == "asyncio":
        import asyncio

        from smtp_rtls.io import asyncio as aio

        result = asyncio.run(aio.deliver(mail, ["bob@example.org"], MESSAGE, **arguments))
    else:
        import trio

        from smtp_rtls.io import trio as trio_io

        async def run_trio() -> DeliveryResult:
            return await trio_io.deliver(mail, ["bob@example.org"], MESSAGE, **arguments)

        result = trio.run(run_trio)
    (attempt,) = result.sessions
    assert (attempt.address, attempt.local_address, attempt.server_name) == (
        "127.0.0.1",
        "127.0.0.1",
        MX,
    )
    only = failure(result.tlsrpt_results())
    assert only.result_type is ResultType.CERTIFICATE_EXPIRED
    assert only.sending_mta_ip == "127.0.0.1"
