"""RFC 7672 §2.2.3: the TLSA base domain of an MX host that is a CNAME alias."""

from __future__ import annotations

import pytest

from smtp_rtls.policy.mx import resolve_addresses
from smtp_rtls.policy.plan import PolicyConfig, Security, plan_delivery
from smtp_rtls.policy.requests import DNSAnswer, DNSQuery, Request, Result, run_lookup
from smtp_rtls.policy.tags import TLSTag

DOMAIN = "example.org"
MX = "mx.example.org"
TARGET = "relay.hosting.example"
EE = "3 1 1 " + "ab" * 32

# (name, type) -> (rcode, records, authentic, canonical_name)
Table = dict[tuple[str, str], tuple[str, list[str], bool, str]]


def world(*, secure: bool = True, tlsa_at: tuple[str, ...] = (TARGET,)) -> Table:
    table: Table = {
        (DOMAIN, "MX"): ("NOERROR", [f"10 {MX}."], True, ""),
        # the MX host is an alias: the resolver follows the CNAME to TARGET
        (MX, "AAAA"): ("NOERROR", [], secure, TARGET),
        (MX, "A"): ("NOERROR", ["192.0.2.25"], secure, TARGET),
        (f"_mta-sts.{DOMAIN}", "TXT"): ("NXDOMAIN", [], True, ""),
    }
    for name in (TARGET, MX):
        records = [EE] if name in tlsa_at else []
        table[(f"_25._tcp.{name}", "TLSA")] = ("NOERROR", records, True, "")
    return table


def answering(table: Table, asked: list[DNSQuery]) -> object:
    def answer(request: Request) -> Result:
        assert isinstance(request, DNSQuery), request
        asked.append(request)
        rcode, records, authentic, canonical = table.get(
            (request.name, request.rdtype), ("NXDOMAIN", [], True, "")
        )
        return DNSAnswer(request, rcode, records, authentic, canonical_name=canonical)

    return answer


def plan(table: Table) -> tuple[object, list[DNSQuery]]:
    asked: list[DNSQuery] = []
    result = run_lookup(
        plan_delivery(DOMAIN, TLSTag.REQUIRETLS, config=PolicyConfig(mta_sts=False)),
        answering(table, asked),  # type: ignore[arg-type]
    )
    return result, asked


def test_address_result_records_the_expanded_name() -> None:
    asked: list[DNSQuery] = []
    result = run_lookup(resolve_addresses(MX), answering(world(), asked))  # type: ignore[arg-type]
    assert result.canonical_name == TARGET
    assert result.addresses == ("192.0.2.25",) and result.dnssec


def test_secure_cname_tries_the_expanded_name_first_rfc7672_2_2_3() -> None:
    result, asked = plan(world(tlsa_at=(TARGET,)))
    (candidate,) = result.candidates  # type: ignore[attr-defined]
    assert candidate.security is Security.DANE
    # RFC 7672 §3.2.2: the TLSA base domain is the primary reference identifier,
    # the next-hop domain the second
    assert candidate.names == (TARGET, DOMAIN)
    tlsa_names = [q.name for q in asked if q.rdtype == "TLSA"]
    assert tlsa_names == [f"_25._tcp.{TARGET}"]


def test_secure_cname_falls_back_to_the_initial_name_rfc7672_2_2_3() -> None:
    result, asked = plan(world(tlsa_at=(MX,)))
    (candidate,) = result.candidates  # type: ignore[attr-defined]
    assert candidate.security is Security.DANE
    assert candidate.names == (MX, DOMAIN)
    tlsa_names = [q.name for q in asked if q.rdtype == "TLSA"]
    assert tlsa_names == [f"_25._tcp.{TARGET}", f"_25._tcp.{MX}"]


@pytest.mark.parametrize("tlsa_at", [(TARGET,), (MX,)])
def test_insecure_cname_with_insecure_alias_means_no_dane_rfc7672_2_2_3(
    tlsa_at: tuple[str, ...],
) -> None:
    table = world(secure=False, tlsa_at=tlsa_at)
    table[(MX, "CNAME")] = ("NOERROR", [f"{TARGET}."], False, "")
    result, asked = plan(table)
    assert ("CNAME" in {q.rdtype for q in asked}) and not any(q.rdtype == "TLSA" for q in asked)
    (candidate,) = result.candidates  # type: ignore[attr-defined]
    assert candidate.security is Security.PKIX  # secure MX: PKIX for the MX host name


def test_insecure_cname_with_secure_alias_uses_the_initial_name_rfc7672_2_2_3() -> None:
    # the target's zone is unsigned, but the alias itself sits in a signed zone
    table = world(secure=False, tlsa_at=(MX, TARGET))
    table[(MX, "CNAME")] = ("NOERROR", [f"{TARGET}."], True, "")
    result, asked = plan(table)
    tlsa_names = [q.name for q in asked if q.rdtype == "TLSA"]
    assert tlsa_names == [f"_25._tcp.{MX}"]  # never the insecure target's name
    (candidate,) = result.candidates  # type: ignore[attr-defined]
    assert candidate.security is Security.DANE
    assert candidate.names == (MX, DOMAIN)
