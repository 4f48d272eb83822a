"""DANE (RFC 7672, RFC 6698) offline: TLSA parsing, usability, look-up, chain matching."""

from __future__ import annotations

import hashlib
import sys

import pytest
from dane_certs import DAY, NOW, Issued, issue, new_key

from smtp_rtls.policy import dane
from smtp_rtls.policy.dane import TLSARecord, dane_verify, lookup_tlsa, usable_records
from smtp_rtls.policy.requests import DNSAnswer, DNSQuery, Request, Result, run_lookup

# One chain for most tests: root CA -> intermediate CA -> leaf for mx1.example.com.
ROOT = issue("Test Root", ca=True)
INTER = issue("Test Intermediate", ROOT, ca=True)
LEAF = issue("mx1.example.com", INTER, names=("mx1.example.com", "*.mail.example.com"))
CHAIN = (LEAF.der, INTER.der, ROOT.der)
NAMES = ("mx1.example.com", "example.com")


def rec(text: str) -> TLSARecord:
    return TLSARecord.parse(text)


# --- TLSA records, RFC 6698 §2 ---------------------------------------------------------


def test_parse_presentation_rfc6698_2_2() -> None:
    record = rec("3 1 1 AB12 cd34")
    assert record == TLSARecord(3, 1, 1, bytes.fromhex("ab12cd34"))
    assert str(record) == "3 1 1 ab12cd34"


@pytest.mark.parametrize("text", ["3 1 1", "3 1 x ab", "256 1 1 ab", "3 1 1 zz", "3 -1 1 ab"])
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        TLSARecord.parse(text)


@pytest.mark.parametrize(
    ("usage", "selector", "matching", "length", "usable"),
    [
        (3, 1, 1, 32, True),
        (3, 0, 2, 64, True),
        (2, 0, 1, 32, True),
        (2, 1, 0, 91, True),
        (0, 0, 1, 32, False),  # PKIX-TA: RFC 7672 §3.1.3
        (1, 1, 1, 32, False),  # PKIX-EE: RFC 7672 §3.1.3
        (4, 1, 1, 32, False),  # unknown usage
        (3, 2, 1, 32, False),  # unknown selector
        (3, 1, 3, 32, False),  # unknown matching type
        (3, 1, 1, 31, False),  # SHA2-256 digest of the wrong size
        (3, 1, 2, 32, False),  # SHA2-512 digest of the wrong size
    ],
)
def test_usable_records_rfc7672_3_1(
    usage: int, selector: int, matching: int, length: int, usable: bool
) -> None:
    record = TLSARecord(usage, selector, matching, b"\x01" * length)
    assert record.usable is usable
    assert usable_records([record]) == ((record,) if usable else ())


# --- look-up, RFC 7672 §2.2 ---------------------------------------------------------------


def answer_with(rcode: str, records: list[str], authentic: bool):  # type: ignore[no-untyped-def]
    asked: list[DNSQuery] = []

    def answer(request: Request) -> Result:
        assert isinstance(request, DNSQuery)
        asked.append(request)
        return DNSAnswer(request, rcode, records, authentic)

    answer.asked = asked  # type: ignore[attr-defined]
    return answer


def test_lookup_name_and_port_rfc7672_2_2_3() -> None:
    answer = answer_with("NOERROR", [], True)
    run_lookup(lookup_tlsa("MX.Example.com."), answer)
    run_lookup(lookup_tlsa("mx.example.com", port=2525), answer)
    assert answer.asked == [  # type: ignore[attr-defined]
        DNSQuery("_25._tcp.mx.example.com", "TLSA"),
        DNSQuery("_2525._tcp.mx.example.com", "TLSA"),
    ]


def test_secure_usable_set_requires_authentication_rfc7672_2_2() -> None:
    result = run_lookup(lookup_tlsa("mx"), answer_with("NOERROR", ["3 1 1 " + "ab" * 32], True))
    assert result.authentication_required and result.tls_required and not result.unusable_set
    assert result.usable == result.records


def test_secure_unusable_set_requires_tls_only_rfc7672_2_2() -> None:
    records = ["1 1 1 " + "ab" * 32, "0 0 1 " + "cd" * 32]
    result = run_lookup(lookup_tlsa("mx"), answer_with("NOERROR", records, True))
    assert result.unusable_set and result.tls_required
    assert not result.authentication_required and result.usable == ()
    assert len(result.records) == 2


def test_insecure_set_is_not_used_rfc7672_2_2() -> None:
    result = run_lookup(lookup_tlsa("mx"), answer_with("NOERROR", ["3 1 1 " + "ab" * 32], False))
    assert not result.dnssec and result.usable == ()
    assert not result.tls_required and not result.unusable_set and not result.temporary_failure


@pytest.mark.parametrize(("rcode", "authentic"), [("NXDOMAIN", True), ("NOERROR", True)])
def test_denial_is_an_answer_rfc7672_2_1_1(rcode: str, authentic: bool) -> None:
    result = run_lookup(lookup_tlsa("mx"), answer_with(rcode, [], authentic))
    assert not result.temporary_failure and result.records == ()
    assert not result.tls_required


@pytest.mark.parametrize("rcode", ["SERVFAIL", "TIMEOUT"])
def test_lookup_failure_makes_host_unusable_rfc7672_2_1_2(rcode: str) -> None:
    result = run_lookup(lookup_tlsa("mx"), answer_with(rcode, [], False))
    assert result.temporary_failure


def test_malformed_secure_record_is_a_failure_rfc7672_2_1_2() -> None:
    result = run_lookup(lookup_tlsa("mx"), answer_with("NOERROR", ["3 1 1 nothex"], True))
    assert result.temporary_failure
    insecure = run_lookup(lookup_tlsa("mx"), answer_with("NOERROR", ["3 1 1 nothex"], False))
    assert not insecure.temporary_failure and not insecure.tls_required


# --- DANE-EE(3), RFC 7672 §3.1.1 ------------------------------------------------------------


@pytest.mark.parametrize(("selector", "matching"), [(1, 1), (0, 1), (0, 0), (1, 0), (1, 2)])
def test_dane_ee_matches_leaf(selector: int, matching: int) -> None:
    record = rec(LEAF.tlsa(3, selector, matching))
    outcome = dane_verify([record], CHAIN, NAMES, now=NOW)
    assert outcome.ok and outcome.matched == record


def test_dane_ee_ignores_names_and_expiry_rfc7672_3_1_1() -> None:
    expired = issue(
        "whatever",
        names=("nothing.invalid",),
        not_before=NOW - 800 * DAY,
        not_after=NOW - 400 * DAY,
    )
    outcome = dane_verify([rec(expired.tlsa(3, 1, 1))], [expired.der], ["mx.example"], now=NOW)
    assert outcome.ok


def test_dane_ee_matches_leaf_only_not_an_issuer() -> None:
    outcome = dane_verify([rec(INTER.tlsa(3, 1, 1))], CHAIN, NAMES, now=NOW)
    assert not outcome.ok and outcome.matched is None


def test_dane_ee_other_key_fails() -> None:
    other = issue("mx1.example.com", INTER, names=("mx1.example.com",))
    assert not dane_verify([rec(other.tlsa(3, 1, 1))], CHAIN, NAMES, now=NOW).ok


# --- DANE-TA(2), RFC 7672 §3.1.2 and §3.2.2 --------------------------------------------------


@pytest.mark.parametrize("anchor", [ROOT, INTER])
@pytest.mark.parametrize(("selector", "matching"), [(0, 1), (1, 1), (0, 2), (0, 0)])
def test_dane_ta_anywhere_above_the_leaf(anchor: Issued, selector: int, matching: int) -> None:
    record = rec(anchor.tlsa(2, selector, matching))
    outcome = dane_verify([record], CHAIN, NAMES, now=NOW)
    assert outcome.ok, outcome.reason
    assert outcome.matched == record


def test_dane_ta_does_not_match_the_leaf_itself() -> None:
    assert not dane_verify([rec(LEAF.tlsa(2, 1, 1))], CHAIN, NAMES, now=NOW).ok


@pytest.mark.parametrize(
    ("names", "ok"),
    [
        (["mx1.example.com"], True),
        (["MX1.EXAMPLE.COM."], True),
        (["mx2.example.com", "example.com"], False),
        (["x.mail.example.com"], True),  # *.mail.example.com
        (["a.b.mail.example.com"], False),  # RFC 7672 §3.2.3: one label only
        (["mail.example.com"], False),
    ],
)
def test_dane_ta_name_checks_rfc7672_3_2_2(names: list[str], ok: bool) -> None:
    outcome = dane_verify([rec(ROOT.tlsa(2, 0, 1))], CHAIN, names, now=NOW)
    assert outcome.ok is ok, outcome.reason


def test_dane_ta_next_hop_domain_as_reference_id_rfc7672_3_2_2() -> None:
    """A certificate bearing only the email domain serves every MX of it."""
    leaf = issue("example.com", INTER, names=("example.com",))
    chain = (leaf.der, INTER.der, ROOT.der)
    record = rec(ROOT.tlsa(2, 0, 1))
    assert dane_verify([record], chain, ["mx1.example.com", "example.com"], now=NOW).ok
    assert not dane_verify([record], chain, ["mx1.example.com"], now=NOW).ok


def test_dane_ta_cn_only_without_dns_ids_rfc7672_3_2_3() -> None:
    cn_only = issue("mx1.example.com", INTER)
    record = rec(ROOT.tlsa(2, 0, 1))
    assert dane_verify([record], (cn_only.der, INTER.der, ROOT.der), NAMES, now=NOW).ok
    san_other = issue("mx1.example.com", INTER, names=("other.example.com",))
    assert not dane_verify([record], (san_other.der, INTER.der, ROOT.der), NAMES, now=NOW).ok


def test_dane_ta_requires_real_signatures() -> None:
    """A leaf that only claims the TA's name as issuer is refused."""
    impostor_ca_key = new_key()
    forged = issue(
        "mx1.example.com",
        Issued(INTER.cert, impostor_ca_key),  # INTER's name, another key
        names=("mx1.example.com",),
    )
    outcome = dane_verify([rec(INTER.tlsa(2, 1, 1))], (forged.der, INTER.der), NAMES, now=NOW)
    assert not outcome.ok
    assert "not signed" in outcome.reason


def test_dane_ta_missing_intermediate_fails() -> None:
    outcome = dane_verify([rec(ROOT.tlsa(2, 0, 1))], (LEAF.der, ROOT.der), NAMES, now=NOW)
    assert not outcome.ok


def test_dane_ta_issuer_must_be_a_ca() -> None:
    not_ca = issue("Not A CA", ROOT, ca=False)
    leaf = issue("mx1.example.com", not_ca, names=("mx1.example.com",))
    outcome = dane_verify(
        [rec(ROOT.tlsa(2, 0, 1))], (leaf.der, not_ca.der, ROOT.der), NAMES, now=NOW
    )
    assert not outcome.ok and "not a CA" in outcome.reason


def test_dane_ta_checks_validity_dates() -> None:
    leaf = issue(
        "mx1.example.com",
        INTER,
        names=("mx1.example.com",),
        not_before=NOW - 20 * DAY,
        not_after=NOW - 10 * DAY,
    )
    chain = (leaf.der, INTER.der, ROOT.der)
    record = rec(ROOT.tlsa(2, 0, 1))
    assert not dane_verify([record], chain, NAMES, now=NOW).ok
    assert dane_verify([record], chain, NAMES, now=NOW - 15 * DAY).ok


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_dane_ta_other_signature_algorithms(kind: str) -> None:
    root = issue("Other Root", ca=True, key=new_key(kind))
    leaf = issue("mx1.example.com", root, names=("mx1.example.com",), key=new_key(kind))
    assert dane_verify([rec(root.tlsa(2, 1, 1))], (leaf.der, root.der), NAMES, now=NOW).ok


# --- DANE-TA with the leaf alone (Python < 3.13 without the private chain call) ---------


@pytest.mark.parametrize(("anchor", "selector"), [(INTER, 0), (INTER, 1)])
def test_leaf_only_with_full_ta_in_tlsa(anchor: Issued, selector: int) -> None:
    """2 0 0 / 2 1 0 carry the TA, so the leaf's signature can be checked against it."""
    outcome = dane_verify([rec(anchor.tlsa(2, selector, 0))], [LEAF.der], NAMES, now=NOW)
    assert outcome.ok, outcome.reason


def test_leaf_only_full_ta_of_another_ca_fails() -> None:
    outcome = dane_verify([rec(ROOT.tlsa(2, 1, 0))], [LEAF.der], NAMES, now=NOW)
    assert not outcome.ok


def test_leaf_only_with_digest_ta_fails_closed() -> None:
    outcome = dane_verify([rec(INTER.tlsa(2, 1, 1))], [LEAF.der], NAMES, now=NOW)
    assert not outcome.ok and "only the leaf" in outcome.reason


# --- odds and ends ------------------------------------------------------------------------


def test_no_usable_records_or_no_chain() -> None:
    pkix = TLSARecord(1, 1, 1, hashlib.sha256(LEAF.spki).digest())
    assert dane_verify([pkix], CHAIN, NAMES).reason == "no usable TLSA records"
    assert not dane_verify([rec(LEAF.tlsa(3, 1, 1))], [], NAMES).ok


def test_first_matching_record_wins_and_reasons_are_collected() -> None:
    records = [rec(INTER.tlsa(3, 1, 1)), rec(ROOT.tlsa(2, 0, 1))]
    outcome = dane_verify(records, CHAIN, NAMES, now=NOW)
    assert outcome.ok and outcome.matched == records[1]
    failed = dane_verify(records[:1], CHAIN, NAMES, now=NOW)
    assert "3 1 1: no match" in failed.reason


def test_garbage_certificate_is_a_failure_not_a_crash() -> None:
    outcome = dane_verify([rec(ROOT.tlsa(2, 0, 1))], [b"\x30\x03junk", ROOT.der], NAMES)
    assert not outcome.ok


def test_missing_cryptography_gives_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(ImportError, match=r"pip install smtp_rtls\[dane\]"):
        dane._crypto()
