"""DANE (RFC 7672, RFC 6698) offline: TLSA parsing, usability, look-up, chain matching."""

from __future__ import annotations

import hashlib
import sys

import pytest
from dane_certs import (
    BIT_STRING,
    DAY,
    EXTENSIONS,
    INTEGER,
    NOW,
    SEQUENCE,
    SPKI,
    VERSION,
    Issued,
    der_items,
    der_oid,
    der_tlv,
    issue,
    new_key,
    rebuild,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtp_rtls._capabilities import Capabilities
from smtp_rtls._tls import TLSInfo
from smtp_rtls.policy import dane
from smtp_rtls.policy.codes import Reason
from smtp_rtls.policy.dane import TLSARecord, dane_verify, lookup_tlsa, usable_records
from smtp_rtls.policy.plan import Action, Candidate, RequireTLSParam, Security
from smtp_rtls.policy.requests import DNSAnswer, DNSQuery, Request, Result, run_lookup
from smtp_rtls.policy.verdict import check

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


# --- hostile chains: what cannot be evaluated is a failed match, never an exception ------
#
# The chain comes from whoever answers, a man in the middle included.  Each of these
# certificates is built in DER by hand (cryptography's builder refuses to make them)
# and properly signed, so the code gets as far as the hostile part.


def _version_6(items: list[bytes]) -> list[bytes]:
    # RFC 5280 §4.1.2.1: version is v1(0), v2(1) or v3(2); 5 is none of them.
    items[VERSION] = der_tlv(0xA0, der_tlv(INTEGER, b"\x05"))
    return items


def _duplicate_extension(items: list[bytes]) -> list[bytes]:
    # RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a
    # particular extension"; here BasicConstraints appears twice.
    extensions = der_items(der_items(items[EXTENSIONS])[0])
    twice = der_tlv(SEQUENCE, b"".join([*extensions, extensions[0]]))
    items[EXTENSIONS] = der_tlv(0xA3, twice)
    return items


def _unknown_key_algorithm(items: list[bytes]) -> list[bytes]:
    algorithm = der_tlv(SEQUENCE, der_oid("1.3.6.1.4.1.55555.1"))
    items[SPKI] = der_tlv(SEQUENCE, algorithm + der_tlv(BIT_STRING, b"\x00" + b"k" * 32))
    return items


_UNKNOWN_SIGNATURE = der_tlv(SEQUENCE, der_oid("1.3.6.1.4.1.55555.2"))


def _hostile(kind: str, cert: Issued, signer: Issued) -> bytes:
    if kind == "unknown signature algorithm":
        return rebuild(cert, signer, lambda items: items, signature_algorithm=_UNKNOWN_SIGNATURE)
    edit = {
        "invalid version": _version_6,
        "duplicate extension": _duplicate_extension,
        "unknown key algorithm": _unknown_key_algorithm,
    }[kind]
    return rebuild(cert, signer, edit)


HOSTILE = [
    "invalid version",
    "duplicate extension",
    "unknown key algorithm",
    "unknown signature algorithm",
]
RECORDS = {
    "EE leaf spki": rec(LEAF.tlsa(3, 1, 1)),
    "TA root digest": rec(ROOT.tlsa(2, 0, 1)),
    "TA intermediate key": rec(INTER.tlsa(2, 1, 0)),
    "TA intermediate cert": rec(INTER.tlsa(2, 0, 0)),
}
_TA = ["TA root digest", "TA intermediate key", "TA intermediate cert"]
# (hostile kind, where, record): each record needs the hostile part to match.
MUST_FAIL = [
    *(("invalid version", "leaf", r) for r in RECORDS),
    *(("duplicate extension", "leaf", r) for r in _TA),  # the name check reads extensions
    ("unknown key algorithm", "leaf", "EE leaf spki"),
    *(("unknown signature algorithm", "leaf", r) for r in _TA),
    *((kind, "intermediate", "TA root digest") for kind in HOSTILE),
]


def _chain(kind: str, where: str) -> tuple[bytes, ...]:
    if where == "leaf":
        return (_hostile(kind, LEAF, INTER), INTER.der, ROOT.der)
    return (LEAF.der, _hostile(kind, INTER, ROOT), ROOT.der)


@pytest.mark.parametrize(("kind", "where", "record"), MUST_FAIL)
def test_rfc7672_hostile_chain_is_a_failed_match_not_an_exception(
    kind: str, where: str, record: str
) -> None:
    outcome = dane_verify([RECORDS[record]], _chain(kind, where), NAMES, now=NOW)
    assert not outcome.ok and outcome.matched is None


@pytest.mark.parametrize("kind", HOSTILE)
def test_rfc7672_hostile_chain_makes_check_try_the_next_host(kind: str) -> None:
    """check() turns the failed match into TRY_NEXT (RFC 8689 §4.2.1 ¶3)."""
    tls = TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, _chain(kind, "intermediate"))
    capabilities = Capabilities("mx1.example.com", entries=["REQUIRETLS"])
    candidate = Candidate(
        "mx1.example.com",
        10,
        ("192.0.2.1",),
        Security.DANE,
        NAMES,
        RequireTLSParam.REQUIRED,
        strong_tls=True,
        tlsa=(RECORDS["TA root digest"],),
    )
    verdict = check(candidate, tls, capabilities)
    assert verdict.action is Action.TRY_NEXT
    assert verdict.reason is Reason.DANE_MISMATCH


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("invalid version", "InvalidVersion"),
        ("duplicate extension", "DuplicateExtension"),
        ("unknown key algorithm", "UnsupportedAlgorithm"),
    ],
)
def test_rfc7672_the_reason_names_what_could_not_be_evaluated(kind: str, error: str) -> None:
    chain = _chain(kind, "intermediate")
    outcome = dane_verify([RECORDS["TA root digest"]], chain, NAMES, now=NOW)
    assert not outcome.ok and f"bad certificate: {error}" in outcome.reason


def test_rfc7672_unknown_signature_algorithm_is_an_unsigned_link() -> None:
    chain = _chain("unknown signature algorithm", "leaf")
    outcome = dane_verify([RECORDS["TA root digest"]], chain, NAMES, now=NOW)
    assert not outcome.ok and "not signed" in outcome.reason


def test_a_hostile_certificate_does_not_spoil_a_record_that_matches_without_it() -> None:
    """DANE-EE Cert(0) compares the leaf's bytes, never parsing them (RFC 7672 §3.1.1)."""
    chain = _chain("invalid version", "leaf")
    record = TLSARecord(3, 0, 1, hashlib.sha256(chain[0]).digest())
    outcome = dane_verify([*RECORDS.values(), record], chain, NAMES, now=NOW)
    assert outcome.ok and outcome.matched == record


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    which=st.integers(0, 2),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
@pytest.mark.filterwarnings("ignore::UserWarning")  # cryptography warns on some mutants
def test_rfc7672_any_mangled_chain_is_an_outcome_never_an_exception(
    which: int, edits: list[tuple[int, int]]
) -> None:
    chain = [LEAF.der, INTER.der, ROOT.der]
    mangled = bytearray(chain[which])
    for position, value in edits:
        mangled[position % len(mangled)] = value
    chain[which] = bytes(mangled)
    outcome = dane_verify(list(RECORDS.values()), chain, NAMES, now=NOW)
    assert isinstance(outcome, dane.DaneOutcome)
