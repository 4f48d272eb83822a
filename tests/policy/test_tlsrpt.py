"""SMTP TLS Reporting (RFC 8460): the ``_smtp._tls`` record and the way from verdicts to results.

The record grammar (§3) from strings and from answer tables; the one table
from a verdict's :class:`Reason` (and the adapter's :class:`HandshakeFailure`)
to a §4.3 result type, row by row; and :func:`session_result` on plans made by
the real planner from DNS and HTTPS answer tables (``plan_world``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plan_world import DOMAIN, MX_HOST, answers

from smtp_rtls.policy.codes import Reason
from smtp_rtls.policy.dane import TLSARecord
from smtp_rtls.policy.mtasts import STSOutcome, STSRecord, fetch_policy
from smtp_rtls.policy.plan import (
    Action,
    Candidate,
    DeliveryPlan,
    HandshakeFailure,
    RequireTLSParam,
    Security,
    Verdict,
    plan_delivery,
    skip_verdict,
)
from smtp_rtls.policy.requests import (
    DNSAnswer,
    DNSQuery,
    HTTPSRequest,
    HTTPSResponse,
    Request,
    Result,
    run_lookup,
)
from smtp_rtls.policy.tags import TLSTag
from smtp_rtls.policy.tlsrpt import (
    NOT_TLS_FAILURES,
    RESULT_TYPES,
    AppliedPolicy,
    NotATLSFailure,
    PolicyType,
    ResultType,
    SessionResult,
    TLSRPTError,
    TLSRPTRecord,
    applied_policy,
    lookup_tlsrpt,
    select_tlsrpt_record,
    session_result,
    sts_failure,
)
from smtp_rtls.policy.verdict import handshake_failed

WHEN = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
EE_HASH = "1f850a337e6db9c609c522d136a475638cc43e1ed424f8eec8513d747d1d085d"


# --- the record, RFC 8460 §3 ------------------------------------------------------------


def test_rfc8460_s3_1_1_mailto_example() -> None:
    record = TLSRPTRecord.parse("v=TLSRPTv1;rua=mailto:reports@example.com")
    assert [str(u) for u in record.rua] == ["mailto:reports@example.com"]
    assert record.mailto == ("reports@example.com",)
    assert record.https == ()


def test_rfc8460_s3_1_2_https_example() -> None:
    record = TLSRPTRecord.parse("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt")
    assert record.https == ("https://reporting.example.com/v1/tlsrpt",)
    assert record.mailto == ()


def test_rfc8460_s3_several_rua_uris_in_order() -> None:
    """§3: "the policy domain can specify a comma-separated list of URIs"."""
    record = TLSRPTRecord.parse(
        "v=TLSRPTv1; rua=mailto:a@example.com , https://r.example.net/tls,\tmailto:b@example.org"
    )
    assert [u.scheme for u in record.rua] == ["mailto", "https", "mailto"]
    assert record.mailto == ("a@example.com", "b@example.org")
    assert record.https == ("https://r.example.net/tls",)


@pytest.mark.parametrize(
    "text",
    [
        "v=TLSRPTv1;rua=mailto:r@example.com",
        "v=TLSRPTv1; rua=mailto:r@example.com;",  # the optional final field-delim
        "v=TLSRPTv1 ;\trua=mailto:r@example.com\t; ",  # field-delim = *WSP ";" *WSP
        "v=TLSRPTv1; ext.1=x; rua=mailto:r@example.com; z_z=1-2",
    ],
)
def test_rfc8460_s3_whitespace_and_delimiters(text: str) -> None:
    assert TLSRPTRecord.parse(text).mailto == ("r@example.com",)


def test_rfc8460_s3_unknown_fields_are_ignored_but_kept() -> None:
    """§3: "unknown fields SHALL be ignored"."""
    record = TLSRPTRecord.parse("v=TLSRPTv1; foo=bar; rua=mailto:r@example.com; RUA=baz")
    assert record.mailto == ("r@example.com",)
    # %s"rua=" is case-sensitive: "RUA" is an unknown field.
    assert record.extensions == (("foo", "bar"), ("RUA", "baz"))


def test_a_repeated_rua_after_the_first_is_ignored() -> None:
    record = TLSRPTRecord.parse("v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com")
    assert record.mailto == ("a@example.com",)


def test_rfc8460_s3_mailto_addresses_are_percent_decoded_and_commas_encoded() -> None:
    """§3: commas in a URI "MUST be encoded"; RFC 6068 lists several addresses with them."""
    record = TLSRPTRecord.parse("v=TLSRPTv1; rua=mailto:tls%2Brpt@example.com%2Cx@example.org")
    (uri,) = record.rua
    assert uri.addresses == ("tls+rpt@example.com", "x@example.org")
    assert record.mailto == uri.addresses


def test_rfc8460_s3_other_uri_schemes_are_ignored_when_a_usable_one_remains() -> None:
    """§3: "Two URI schemes are supported: mailto and https"."""
    record = TLSRPTRecord.parse("v=TLSRPTv1; rua=ftp://r.example.com/x, HTTPS://r.example.com/y")
    assert record.ignored == ("ftp://r.example.com/x",)
    assert record.https == ("HTTPS://r.example.com/y",)  # schemes are case-insensitive


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=TLSRPTv2; rua=mailto:r@example.com", "begin"),
        ("v=tlsrptv1; rua=mailto:r@example.com", "begin"),  # %s: case-sensitive
        (" v=TLSRPTv1; rua=mailto:r@example.com", "begin"),
        ("rua=mailto:r@example.com; v=TLSRPTv1", "begin"),  # the version must be first
        ("v=TLSRPTv1", "begin"),
        ("v=TLSRPTv1;", "no rua"),
        ("v=TLSRPTv1; foo=bar", "no rua"),  # "the tlsrpt-rua record is required"
        ("v=TLSRPTv1; rua=", "empty URI"),
        ("v=TLSRPTv1; rua=mailto:r@example.com,", "empty URI"),
        ("v=TLSRPTv1; rua=ftp://r.example.com/", "no mailto: or https:"),
        ("v=TLSRPTv1; rua=http://r.example.com/", "no mailto: or https:"),
        ("v=TLSRPTv1; rua=mailto:r@example.com!10m", "not a URI"),  # "!" MUST be encoded
        ("v=TLSRPTv1; rua=mailto:r b@example.com", "not a URI"),
        ("v=TLSRPTv1; rua=reports@example.com", "not a URI"),  # no scheme
        ("v=TLSRPTv1; rua=mailto:", "not a URI"),
        ("v=TLSRPTv1; rua=mailto:nobody", "without a valid address"),
        ("v=TLSRPTv1; rua=mailto:a@b@example.com", "without a valid address"),
        ("v=TLSRPTv1; rua=https:/reports", "without a host"),
        ("v=TLSRPTv1; rua=https://r.example.com:http/", "bad port"),
        ("v=TLSRPTv1; rua=mailto:r@example.com; foo", "malformed"),
        ("v=TLSRPTv1; rua=mailto:r@example.com; foo=a b", "malformed"),
        ("v=TLSRPTv1; rua=mailto:r@example.com; foo=a=b", "malformed"),
        ("v=TLSRPTv1; ; rua=mailto:r@example.com", "malformed"),
        ("v=TLSRPTv1; rua=mailto:r@example.com; _x=1", "malformed"),
        ("v=TLSRPTv1; rua=mailto:ré@example.com", "not a URI"),
    ],
)
def test_rfc8460_s3_malformed_records_are_refused(text: str, message: str) -> None:
    with pytest.raises(TLSRPTError, match=message):
        TLSRPTRecord.parse(text)


def test_rfc8460_s3_tlsrpt_error_is_a_value_error() -> None:
    assert issubclass(TLSRPTError, ValueError)


def test_rfc8460_s3_records_not_starting_with_the_version_are_discarded() -> None:
    record = select_tlsrpt_record(
        [
            "v=spf1 -all",
            "rua=mailto:x@example.com; v=TLSRPTv1",
            "v=TLSRPTv1; rua=mailto:r@example.com",
        ]
    )
    assert record.mailto == ("r@example.com",)


@pytest.mark.parametrize(
    "texts",
    [
        ["v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"],
        ["v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; bad"],
        [],
        ["v=spf1 -all"],
    ],
)
def test_rfc8460_s3_not_exactly_one_record_means_no_tlsrpt(texts: list[str]) -> None:
    """§3: "If the number of resulting records is not one, senders MUST assume the
    recipient domain does not implement TLSRPT"."""
    with pytest.raises(TLSRPTError, match=f"found {len(texts) - ('v=spf1 -all' in texts)}"):
        select_tlsrpt_record(texts)


_WSP = st.text(" \t", max_size=3)


@given(_WSP, _WSP, _WSP, _WSP, st.booleans())
def test_rfc8460_s3_whitespace_around_delimiters_never_changes_the_record(
    w1: str, w2: str, w3: str, w4: str, final: bool
) -> None:
    text = (
        f"v=TLSRPTv1{w1};{w2}rua=mailto:a@example.com{w3},{w4}https://r.example/x"
        + f"{w1};{w2}" * final
    )
    record = TLSRPTRecord.parse(text)
    assert record.mailto == ("a@example.com",)
    assert record.https == ("https://r.example/x",)


def _txt_table(
    rcode: str, *records: str, asked: list[DNSQuery] | None = None
) -> Callable[[Request], Result]:
    def answer(request: Request) -> Result:
        assert isinstance(request, DNSQuery)
        if asked is not None:
            asked.append(request)
        return DNSAnswer(request, rcode, records)

    return answer


def test_rfc8460_s3_lookup_asks_for_the_smtp_tls_txt_record() -> None:
    """§3: the policy of "example.com" is at "_smtp._tls.example.com"; the query is
    the same DNSQuery MTA-STS uses, so every fulfiller answers it."""
    asked: list[DNSQuery] = []
    table = _txt_table(
        "NOERROR", "v=spf1 -all", "v=TLSRPTv1; rua=mailto:r@example.com", asked=asked
    )
    outcome = run_lookup(lookup_tlsrpt("Example.COM."), table)
    assert asked == [DNSQuery("_smtp._tls.example.com", "TXT")]
    assert outcome.domain == "example.com"
    assert outcome.record is not None and outcome.record.mailto == ("r@example.com",)
    assert (outcome.error, outcome.temporary_failure) == ("", False)


@pytest.mark.parametrize(
    ("rcode", "records", "error", "temporary"),
    [
        ("NXDOMAIN", (), "no TLSRPT TXT record", False),
        ("NOERROR", (), "no TLSRPT TXT record", False),
        ("SERVFAIL", (), "TXT lookup: SERVFAIL", True),
        ("TIMEOUT", (), "TXT lookup: TIMEOUT", True),
        ("NOERROR", ("v=TLSRPTv1; rua=mailto:a@x.example", "v=TLSRPTv1; rua=mailto:b@x.example"),
         "found 2", False),
        ("NOERROR", ("v=TLSRPTv1; rua=ftp://x.example/",), "no mailto: or https:", False),
    ],
)  # fmt: skip
def test_rfc8460_s3_lookup_outcomes(
    rcode: str, records: tuple[str, ...], error: str, temporary: bool
) -> None:
    outcome = run_lookup(lookup_tlsrpt("example.com"), _txt_table(rcode, *records))
    assert outcome.record is None
    assert error in outcome.error
    assert outcome.temporary_failure is temporary


# --- the one table, RFC 8460 §4.3 ---------------------------------------------------------

# Written out again here, row by row, so that a change to the table is a
# change to this specification too.
EXPECTED_ROWS: list[tuple[Reason | HandshakeFailure, ResultType]] = [
    (Reason.STARTTLS_NOT_OFFERED, ResultType.STARTTLS_NOT_SUPPORTED),
    (Reason.TLS_FAILED, ResultType.VALIDATION_FAILURE),
    (Reason.TLS_TOO_WEAK, ResultType.VALIDATION_FAILURE),
    (Reason.STARTTLS_REQUIRED_BY_SERVER, ResultType.VALIDATION_FAILURE),
    (Reason.CERTIFICATE_NOT_VERIFIED, ResultType.CERTIFICATE_NOT_TRUSTED),
    (Reason.CERTIFICATE_EXPIRED, ResultType.CERTIFICATE_EXPIRED),
    (Reason.NAME_MISMATCH, ResultType.CERTIFICATE_HOST_MISMATCH),
    (Reason.DANE_MISMATCH, ResultType.TLSA_INVALID),
    (Reason.TLSA_LOOKUP_FAILED, ResultType.DNSSEC_INVALID),
    (Reason.MTASTS_MISMATCH, ResultType.VALIDATION_FAILURE),
    (Reason.MTASTS_UNAVAILABLE, ResultType.STS_POLICY_FETCH_ERROR),
    (HandshakeFailure.NAME_MISMATCH, ResultType.CERTIFICATE_HOST_MISMATCH),
    (HandshakeFailure.EXPIRED, ResultType.CERTIFICATE_EXPIRED),
    (HandshakeFailure.UNTRUSTED, ResultType.CERTIFICATE_NOT_TRUSTED),
    (HandshakeFailure.OTHER, ResultType.VALIDATION_FAILURE),
]
EXPECTED_NOT_FAILURES = {
    Reason.REQUIRETLS_NOT_OFFERED: NotATLSFailure.TLS_SUCCEEDED,
    Reason.MX_NOT_VALIDATED: NotATLSFailure.NOT_REPORTED,
    Reason.NULL_MX: NotATLSFailure.NOT_REPORTED,
    Reason.NO_SUCH_DOMAIN: NotATLSFailure.NOT_REPORTED,
    Reason.NO_ADDRESS: NotATLSFailure.NOT_REPORTED,
    Reason.DNS_TEMPORARY_FAILURE: NotATLSFailure.NOT_REPORTED,
    Reason.CONNECTION_FAILED: NotATLSFailure.NOT_REPORTED,
}


@pytest.mark.parametrize(("key", "result_type"), EXPECTED_ROWS)
def test_rfc8460_s4_3_result_type_row(
    key: Reason | HandshakeFailure, result_type: ResultType
) -> None:
    assert RESULT_TYPES[key] is result_type


def test_the_table_has_exactly_the_rows_above() -> None:
    assert dict(RESULT_TYPES) == dict(EXPECTED_ROWS)
    assert dict(NOT_TLS_FAILURES) == EXPECTED_NOT_FAILURES


def test_every_reason_is_a_tls_failure_or_listed_as_not_one() -> None:
    """A new Reason must be put in one table or the other: it cannot be forgotten."""
    failures = {key for key in RESULT_TYPES if isinstance(key, Reason)}
    assert failures.isdisjoint(NOT_TLS_FAILURES)
    assert failures | set(NOT_TLS_FAILURES) == set(Reason)


def test_every_handshake_failure_is_mapped() -> None:
    assert {key for key in RESULT_TYPES if isinstance(key, HandshakeFailure)} == set(
        HandshakeFailure
    )


def _candidate(security: Security = Security.PKIX) -> Candidate:
    return Candidate(MX_HOST, 10, ("192.0.2.10",), security, (MX_HOST,), RequireTLSParam.NEVER)


@pytest.mark.parametrize("failure", list(HandshakeFailure))
def test_a_handshake_failure_has_the_type_of_the_verdict_it_becomes(
    failure: HandshakeFailure,
) -> None:
    """The adapter's HandshakeFailure and the Reason handshake_failed() makes of it
    must report the same result type."""
    verdict = handshake_failed(_candidate(), failure, "detail")
    assert verdict.reason is not None
    assert RESULT_TYPES[verdict.reason] is RESULT_TYPES[failure]


# --- from a verdict to a session result ------------------------------------------------------


def make_plan(
    tag: TLSTag = TLSTag.DEFAULT,
    *,
    dnssec: bool = False,
    sts: str = "absent",
    tlsa: tuple[str, ...] = (),
    extra: dict[tuple[str, str], DNSAnswer] | None = None,
) -> DeliveryPlan:
    return run_lookup(
        plan_delivery(DOMAIN, tag), answers(dnssec=dnssec, sts=sts, tlsa=tlsa, extra=extra)
    )


def proceed(host: str = MX_HOST) -> Verdict:
    return Verdict(Action.PROCEED, host=host, detail="ok")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [(r, t) for r, t in EXPECTED_ROWS if isinstance(r, Reason)],
)
def test_each_failing_reason_becomes_its_result_type_with_the_detail(
    reason: Reason, expected: ResultType
) -> None:
    plan = make_plan()
    verdict = skip_verdict(MX_HOST, reason, f"why {reason.name}")
    result = session_result(
        plan, verdict, when=WHEN, receiving_ip="192.0.2.10", sending_mta_ip="198.51.100.1"
    )
    assert result is not None
    assert result.result_type is expected
    assert result.failure_reason_code == f"why {reason.name}"
    assert (result.receiving_mx_hostname, result.receiving_ip) == (MX_HOST, "192.0.2.10")
    assert result.sending_mta_ip == "198.51.100.1"


@pytest.mark.parametrize(
    "reason", [r for r, k in EXPECTED_NOT_FAILURES.items() if k is NotATLSFailure.NOT_REPORTED]
)
def test_reasons_without_a_tls_negotiation_are_not_reported(reason: Reason) -> None:
    """RFC 8460 §4.3.4: transient failures (no answer, DNS) need not be reported."""
    assert session_result(make_plan(), skip_verdict(MX_HOST, reason), when=WHEN) is None


def test_requiretls_not_offered_is_a_successful_tls_session() -> None:
    """RFC 8460 §4.2.1 counts policy-compliant TLS sessions; REQUIRETLS (RFC 8689)
    is checked after TLS succeeded."""
    verdict = skip_verdict(MX_HOST, Reason.REQUIRETLS_NOT_OFFERED)
    result = session_result(make_plan(), verdict, when=WHEN)
    assert result is not None and result.successful
    assert result.failure_reason_code is None


@pytest.mark.parametrize("action", [Action.DEFER, Action.FAIL])
def test_final_verdicts_are_no_session(action: Action) -> None:
    verdict = Verdict(action, Reason.TLS_FAILED, host=MX_HOST)
    assert session_result(make_plan(), verdict, when=WHEN) is None


def test_proceed_needs_to_know_whether_tls_was_used() -> None:
    plan = make_plan()
    with pytest.raises(ValueError, match="tls="):
        session_result(plan, proceed(), when=WHEN)
    result = session_result(plan, proceed(), when=WHEN, tls=True, receiving_mx_helo="mx.example")
    assert result is not None and result.successful
    assert result.receiving_mx_helo == "mx.example"


def test_proceeding_in_plaintext_is_starttls_not_supported() -> None:
    """RFC 8460 §4.3.1: an opportunistic session that went on without TLS."""
    result = session_result(make_plan(), proceed(), when=WHEN, tls=False)
    assert result is not None
    assert result.result_type is ResultType.STARTTLS_NOT_SUPPORTED


def test_the_failure_reason_code_is_kept_short() -> None:
    verdict = skip_verdict(MX_HOST, Reason.TLS_FAILED, "x" * 1000)
    result = session_result(make_plan(), verdict, when=WHEN)
    assert result is not None and result.failure_reason_code == "x" * 256


# --- the policy that applied, RFC 8460 §4.4, §4.5 ------------------------------------------


def test_no_policy_found() -> None:
    plan = make_plan()
    assert applied_policy(plan, proceed()) == AppliedPolicy(PolicyType.NO_POLICY_FOUND, DOMAIN)


def test_rfc8460_s4_5_sts_policy_lines_and_mx_patterns() -> None:
    plan = make_plan(sts="enforce")
    policy = applied_policy(plan, proceed())
    assert policy.policy_type is PolicyType.STS
    assert policy.policy_domain == DOMAIN  # RFC 8460 §1.1: the recipient domain for MTA-STS
    assert policy.policy_string == (
        "version: STSv1",
        "mode: enforce",
        f"mx: {MX_HOST}",
        "max_age: 86400",
    )
    assert policy.mx_host == (MX_HOST,)


def test_a_testing_policy_applies_and_a_none_policy_is_no_policy() -> None:
    """RFC 8461 §5: "testing" asks for TLSRPT reports; "none" is no active policy."""
    assert applied_policy(make_plan(sts="testing"), proceed()).policy_string[1] == "mode: testing"
    none = applied_policy(make_plan(sts="mode-none"), proceed())
    assert none.policy_type is PolicyType.NO_POLICY_FOUND


def test_rfc8460_s1_1_dane_policy_is_under_the_tlsa_base_domain() -> None:
    """DANE wins over MTA-STS (RFC 8461 §2); its policy domain is the TLSA base
    domain (RFC 8460 §1.1), the TLSA records written as §4.5 says."""
    plan = make_plan(dnssec=True, sts="enforce", tlsa=(f"3 1 1 {EE_HASH.upper()}",))
    (candidate,) = plan.candidates
    assert candidate.security is Security.DANE
    policy = applied_policy(plan, proceed())
    assert policy == AppliedPolicy(PolicyType.TLSA, MX_HOST, (f"3 1 1 {EE_HASH}",))
    assert policy.report_object() == {
        "policy-type": "tlsa",
        "policy-domain": MX_HOST,
        "policy-string": [f"3 1 1 {EE_HASH}"],
    }


def test_rfc8460_s4_3_2_1_failed_tlsa_lookup_is_dnssec_invalid_under_tlsa() -> None:
    failing = DNSAnswer(DNSQuery(f"_25._tcp.{MX_HOST}", "TLSA"), "SERVFAIL")
    plan = make_plan(dnssec=True, extra={(f"_25._tcp.{MX_HOST}", "TLSA"): failing})
    (skipped,) = plan.skipped
    result = session_result(plan, skipped, when=WHEN)
    assert result is not None
    assert result.result_type is ResultType.DNSSEC_INVALID
    assert result.policy == AppliedPolicy(PolicyType.TLSA, MX_HOST)
    assert result.receiving_ip is None  # no connection was made


def test_rfc8461_s4_1_host_not_in_the_policy_is_a_validation_failure_under_sts() -> None:
    plan = make_plan(sts="mismatch")
    (skipped,) = plan.skipped
    assert skipped.reason is Reason.MTASTS_MISMATCH
    result = session_result(plan, skipped, when=WHEN)
    assert result is not None
    assert result.result_type is ResultType.VALIDATION_FAILURE
    assert result.policy.mx_host == ("*.example.net",)
    assert result.failure_reason_code is not None and "RFC 8461 §4.1" in result.failure_reason_code


def test_rfc8460_s4_3_2_2_every_session_fails_while_the_sts_policy_cannot_be_fetched() -> None:
    """A default message goes out with opportunistic TLS when the announced policy
    cannot be had (RFC 8461 §3.3), but the session is reported as
    sts-policy-fetch-error, whatever its TLS did."""
    plan = make_plan(sts="fetch-fail")
    result = session_result(plan, proceed(), when=WHEN, tls=True)
    assert result is not None
    assert result.result_type is ResultType.STS_POLICY_FETCH_ERROR
    assert result.policy == AppliedPolicy(PolicyType.STS, DOMAIN)
    assert result.failure_reason_code == "policy fetch failed: connect"


def test_rfc8689_strict_message_skips_hosts_when_the_sts_policy_cannot_be_fetched() -> None:
    plan = make_plan(TLSTag.REQUIRETLS, sts="fetch-fail")
    (skipped,) = plan.skipped
    assert skipped.reason is Reason.MTASTS_UNAVAILABLE
    result = session_result(plan, skipped, when=WHEN)
    assert result is not None and result.result_type is ResultType.STS_POLICY_FETCH_ERROR


def test_sts_unavailable_after_a_txt_failure_is_a_fetch_error_under_sts() -> None:
    servfail = DNSAnswer(DNSQuery(f"_mta-sts.{DOMAIN}", "TXT"), "SERVFAIL")
    plan = make_plan(TLSTag.REQUIRETLS, extra={(f"_mta-sts.{DOMAIN}", "TXT"): servfail})
    (skipped,) = plan.skipped
    assert skipped.reason is Reason.MTASTS_UNAVAILABLE
    result = session_result(plan, skipped, when=WHEN)
    assert result is not None
    assert result.result_type is ResultType.STS_POLICY_FETCH_ERROR
    assert result.policy == AppliedPolicy(PolicyType.STS, DOMAIN)


# --- MTA-STS discovery failures, RFC 8460 §4.3.2.2 --------------------------------------------


def _sts_outcome(response: Callable[[HTTPSRequest], HTTPSResponse]) -> STSOutcome:
    def answer(request: Request) -> Result:
        if isinstance(request, HTTPSRequest):
            return response(request)
        return DNSAnswer(request, "NOERROR", ("v=STSv1; id=1",))

    return run_lookup(fetch_policy(DOMAIN), answer)


GOOD = b"version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 86400\n"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (lambda r: HTTPSResponse(r, error="certificate"), ResultType.STS_WEBPKI_INVALID),
        (lambda r: HTTPSResponse(r, error="timeout"), ResultType.STS_POLICY_FETCH_ERROR),
        (lambda r: HTTPSResponse(r, error="connect: refused"), ResultType.STS_POLICY_FETCH_ERROR),
        (lambda r: HTTPSResponse(r, error="too large"), ResultType.STS_POLICY_FETCH_ERROR),
        (lambda r: HTTPSResponse(r, 404, "text/plain"), ResultType.STS_POLICY_FETCH_ERROR),
        (lambda r: HTTPSResponse(r, 301, "text/plain"), ResultType.STS_POLICY_FETCH_ERROR),
        (lambda r: HTTPSResponse(r, 200, "text/html", GOOD), ResultType.STS_POLICY_INVALID),
        (lambda r: HTTPSResponse(r, 200, "text/plain", b"mode: x"), ResultType.STS_POLICY_INVALID),
        (lambda r: HTTPSResponse(r, 200, "text/plain", b"\xff"), ResultType.STS_POLICY_INVALID),
        (lambda r: HTTPSResponse(r, 200, "text/plain", GOOD), None),
    ],
)
def test_rfc8460_s4_3_2_2_sts_failures_from_real_fetch_outcomes(
    response: Callable[[HTTPSRequest], HTTPSResponse], expected: ResultType | None
) -> None:
    assert sts_failure(_sts_outcome(response)) is expected


def test_no_announced_policy_and_a_cached_policy_are_no_sts_failure() -> None:
    assert sts_failure(STSOutcome(DOMAIN, None, None, error="no MTA-STS TXT record")) is None
    cached = _sts_outcome(lambda r: HTTPSResponse(r, 200, "text/plain", GOOD)).policy
    used = STSOutcome(DOMAIN, STSRecord("2"), cached, error="policy fetch failed: timeout")
    assert sts_failure(used) is None  # RFC 8461 §3.3: the cached policy applies


def test_tlsa_policy_accepts_records_and_presentation_strings() -> None:
    record = TLSARecord.parse(f"3 1 1 {EE_HASH}")
    spaced = f"3 1 1 {EE_HASH[:32]} {EE_HASH[32:].upper()}"
    assert (
        AppliedPolicy.tlsa("mx.example.org", [record, spaced]).policy_string
        == (f"3 1 1 {EE_HASH}",) * 2
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: AppliedPolicy(PolicyType.NO_POLICY_FOUND, DOMAIN, ("x",)),
        lambda: AppliedPolicy(PolicyType.TLSA, DOMAIN, (), ("mx.example.org",)),
        lambda: AppliedPolicy(PolicyType.TLSA, DOMAIN, ("3 1 1 ab cd",)),
        lambda: AppliedPolicy(PolicyType.STS, DOMAIN, ("mode: enforce\nmx: x",)),
        lambda: AppliedPolicy(PolicyType.STS, "exämple.org"),  # §4.4: A-labels only
        lambda: AppliedPolicy(PolicyType.STS, DOMAIN, (), ("*.*.example.org",)),
        lambda: SessionResult(AppliedPolicy.no_policy(DOMAIN), WHEN.replace(tzinfo=None)),
        lambda: SessionResult(AppliedPolicy.no_policy(DOMAIN), WHEN, failure_reason_code="x"),
        lambda: SessionResult(AppliedPolicy.no_policy(DOMAIN), WHEN, receiving_ip="300.1.1.1"),
        lambda: SessionResult(
            AppliedPolicy.no_policy(DOMAIN),
            WHEN,
            ResultType.VALIDATION_FAILURE,
            additional_information="not a uri",
        ),
    ],
)
def test_ill_formed_values_cannot_exist(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


def test_values_are_normalised_as_rfc8460_s4_4_writes_them() -> None:
    result = SessionResult(
        AppliedPolicy(PolicyType.STS, "Example.ORG.", (), ("*.Example.org",)),
        WHEN.astimezone(datetime.timezone(datetime.timedelta(hours=1))),
        ResultType.VALIDATION_FAILURE,
        receiving_mx_hostname="MX.example.org.",
        receiving_ip="2001:DB8:0:0::1",
        sending_mta_ip="",
        failure_reason_code="  ",
    )
    assert result.policy.policy_domain == "example.org"
    assert result.policy.mx_host == ("*.example.org",)
    assert result.when == WHEN and result.when.tzinfo is datetime.UTC
    assert result.receiving_mx_hostname == "mx.example.org"
    assert result.receiving_ip == "2001:db8::1"  # RFC 5952
    assert (result.sending_mta_ip, result.failure_reason_code) == (None, None)
