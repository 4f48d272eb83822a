"""SMTP TLS Reporting (RFC 8460): aggregate reports, file names, compression, the state lines.

Every report is checked against ``tlsrpt-schema.json``, the §4.4 format
written as a JSON Schema.  Reports must be deterministic: the same session
results, in any order, give the same bytes.
"""

from __future__ import annotations

import datetime
import gzip
import json
import logging
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_rtls.policy.tlsrpt import (
    MEDIA_TYPE_GZIP,
    MEDIA_TYPE_JSON,
    AppliedPolicy,
    PolicyType,
    Report,
    ReportSubmitter,
    ResultType,
    SessionResult,
    aggregate,
    gzip_report,
    read_session_lines,
    report_filename,
)

SCHEMA = json.loads((Path(__file__).parent / "tlsrpt-schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
SUBMITTER = ReportSubmitter("Sender Inc.", "tlsrpt@mail.sender.example")
DAY = datetime.date(2026, 3, 1)
NOON = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
UTC = datetime.UTC

STS = AppliedPolicy(
    PolicyType.STS,
    "example.net",
    ("version: STSv1", "mode: enforce", "mx: *.mail.example.net", "max_age: 86400"),
    ("*.mail.example.net",),
)
TLSA = AppliedPolicy.tlsa("mx1.mail.example.net", ["3 1 1 " + "ab" * 32])
NONE = AppliedPolicy.no_policy("example.net")
OTHER = AppliedPolicy.no_policy("example.org")


def ok(policy: AppliedPolicy = STS, when: datetime.datetime = NOON, **kw: Any) -> SessionResult:
    return SessionResult(policy, when, None, **kw)


def fail(
    result_type: ResultType,
    policy: AppliedPolicy = STS,
    when: datetime.datetime = NOON,
    **kw: Any,
) -> SessionResult:
    kw.setdefault("receiving_mx_hostname", "mx1.mail.example.net")
    kw.setdefault("receiving_ip", "203.0.113.56")
    kw.setdefault("sending_mta_ip", "2001:db8:abcd:12::1")
    return SessionResult(policy, when, result_type, **kw)


def valid(report: Report) -> dict[str, Any]:
    document = report.document()
    VALIDATOR.validate(document)
    return document


# --- the report, RFC 8460 §4.4 -------------------------------------------------------------


def test_rfc8460_s4_4_a_report_for_one_domain_and_day() -> None:
    results = [
        ok(),
        ok(),
        fail(ResultType.CERTIFICATE_EXPIRED),
        fail(ResultType.CERTIFICATE_EXPIRED),
        fail(
            ResultType.VALIDATION_FAILURE,
            receiving_mx_helo="mx1.mail.example.net",
            failure_reason_code="X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
            additional_information="https://reports.sender.example/info?id=1",
        ),
    ]
    (report,) = aggregate(results, SUBMITTER)
    assert (report.policy_domain, report.day) == ("example.net", DAY)
    assert valid(report) == {
        "organization-name": "Sender Inc.",
        "date-range": {
            "start-datetime": "2026-03-01T00:00:00Z",
            "end-datetime": "2026-03-01T23:59:59Z",
        },
        "contact-info": "tlsrpt@mail.sender.example",
        "report-id": "20260301.example.net@mail.sender.example",
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": [
                        "version: STSv1",
                        "mode: enforce",
                        "mx: *.mail.example.net",
                        "max_age: 86400",
                    ],
                    "policy-domain": "example.net",
                    "mx-host": ["*.mail.example.net"],
                },
                "summary": {
                    "total-successful-session-count": 2,
                    "total-failure-session-count": 3,
                },
                "failure-details": [
                    {
                        "result-type": "certificate-expired",
                        "sending-mta-ip": "2001:db8:abcd:12::1",
                        "receiving-mx-hostname": "mx1.mail.example.net",
                        "receiving-ip": "203.0.113.56",
                        "failed-session-count": 2,
                    },
                    {
                        "result-type": "validation-failure",
                        "sending-mta-ip": "2001:db8:abcd:12::1",
                        "receiving-mx-hostname": "mx1.mail.example.net",
                        "receiving-mx-helo": "mx1.mail.example.net",
                        "receiving-ip": "203.0.113.56",
                        "failed-session-count": 1,
                        "additional-information": "https://reports.sender.example/info?id=1",
                        "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
                    },
                ],
            }
        ],
    }


def test_rfc8460_s4_3_every_result_type_appears_in_a_report() -> None:
    results = [fail(t, policy) for t in ResultType for policy in (STS, NONE)]
    results += [fail(t, TLSA) for t in ResultType]
    reports = aggregate(results, SUBMITTER)
    seen = set()
    for report in reports:
        for entry in valid(report)["policies"]:
            seen |= {d["result-type"] for d in entry["failure-details"]}
    assert seen == {t.value for t in ResultType}


def test_rfc8460_s4_a_report_lists_every_policy_of_its_domain() -> None:
    """§4: "the policies field of the report body MUST be an array"; a DANE policy
    is under its TLSA base domain (§1.1), so it gets its own report."""
    results = [ok(STS), ok(NONE), fail(ResultType.TLSA_INVALID, TLSA), ok(OTHER)]
    reports = aggregate(results, SUBMITTER)
    assert [r.policy_domain for r in reports] == [
        "example.net",
        "example.org",
        "mx1.mail.example.net",
    ]
    policies = [e["policy"]["policy-type"] for e in valid(reports[0])["policies"]]
    assert sorted(policies) == ["no-policy-found", "sts"]
    tlsa = valid(reports[2])["policies"][0]
    assert tlsa["policy"]["policy-string"] == ["3 1 1 " + "ab" * 32]
    assert "mx-host" not in tlsa["policy"]


def test_rfc8460_s4_4_failure_details_group_by_every_field() -> None:
    base = fail(ResultType.CERTIFICATE_NOT_TRUSTED)
    variants = [
        base,
        fail(ResultType.CERTIFICATE_EXPIRED),
        fail(ResultType.CERTIFICATE_NOT_TRUSTED, sending_mta_ip="198.51.100.62"),
        fail(ResultType.CERTIFICATE_NOT_TRUSTED, receiving_mx_hostname="mx2.mail.example.net"),
        fail(ResultType.CERTIFICATE_NOT_TRUSTED, receiving_mx_helo="mx.example"),
        fail(ResultType.CERTIFICATE_NOT_TRUSTED, receiving_ip="203.0.113.58"),
        fail(ResultType.CERTIFICATE_NOT_TRUSTED, additional_information="https://x.example/"),
        fail(ResultType.CERTIFICATE_NOT_TRUSTED, failure_reason_code="X509_V_ERR_20"),
        fail(ResultType.CERTIFICATE_NOT_TRUSTED, receiving_ip=None),
    ]
    (report,) = aggregate([*variants, base, base], SUBMITTER)
    (entry,) = valid(report)["policies"]
    counts = sorted(d["failed-session-count"] for d in entry["failure-details"])
    assert counts == [1] * (len(variants) - 1) + [3]
    assert entry["summary"]["total-failure-session-count"] == len(variants) + 2


def test_a_report_without_failures_has_an_empty_failure_list() -> None:
    (report,) = aggregate([ok()], SUBMITTER)
    (entry,) = valid(report)["policies"]
    assert entry["failure-details"] == []
    assert entry["summary"] == {
        "total-successful-session-count": 1,
        "total-failure-session-count": 0,
    }


def test_a_policy_failure_without_a_connection_leaves_the_host_fields_out() -> None:
    result = SessionResult(
        AppliedPolicy(PolicyType.STS, "example.net"),
        NOON,
        ResultType.STS_POLICY_FETCH_ERROR,
        failure_reason_code="policy fetch failed: timeout",
    )
    (report,) = aggregate([result], SUBMITTER)
    (entry,) = valid(report)["policies"]
    assert entry["policy"] == {"policy-type": "sts", "policy-domain": "example.net"}
    assert entry["failure-details"] == [
        {
            "result-type": "sts-policy-fetch-error",
            "failure-reason-code": "policy fetch failed: timeout",
            "failed-session-count": 1,
        }
    ]


def test_the_schema_refuses_what_rfc8460_s4_4_does_not_allow() -> None:
    """The schema is a real check: it must refuse broken reports."""
    (report,) = aggregate([ok(), fail(ResultType.DANE_REQUIRED)], SUBMITTER)
    good = report.document()

    def broken(change: Any) -> dict[str, Any]:
        document = json.loads(report.body)
        change(document)
        return document

    entry = lambda d: d["policies"][0]  # noqa: E731
    for document in [
        broken(lambda d: d.pop("report-id")),
        broken(lambda d: d.__setitem__("policies", entry(d))),  # §4: must be an array
        broken(lambda d: entry(d)["failure-details"][0].__setitem__("result-type", "oops")),
        broken(lambda d: entry(d)["summary"].__setitem__("total-failure-session-count", -1)),
        broken(lambda d: entry(d)["policy"].__setitem__("policy-type", "dane")),
        broken(lambda d: entry(d)["policy"].__setitem__("mx-host", "*.mail.example.net")),
        broken(lambda d: entry(d)["failure-details"][0].__setitem__("receiving-ip", "mx")),
        broken(lambda d: d["date-range"].__setitem__("end-datetime", "2026-03-01 23:59")),
    ]:
        assert not VALIDATOR.is_valid(document)
    assert VALIDATOR.is_valid(good)


# --- the time frame, RFC 8460 §4.1 ----------------------------------------------------------


def test_rfc8460_s4_1_one_report_per_utc_day() -> None:
    """A session at 23:59:59 UTC and one at 00:00:00 the next day are in two reports."""
    late = datetime.datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    early = datetime.datetime(2026, 3, 2, 0, 0, 0, tzinfo=UTC)
    first, second = aggregate([ok(when=early), ok(when=late)], SUBMITTER)
    assert (first.day, second.day) == (DAY, datetime.date(2026, 3, 2))
    for report in (first, second):
        document = valid(report)
        assert document["policies"][0]["summary"]["total-successful-session-count"] == 1
    assert valid(second)["date-range"] == {
        "start-datetime": "2026-03-02T00:00:00Z",
        "end-datetime": "2026-03-02T23:59:59Z",
    }
    assert second.start - first.start == datetime.timedelta(days=1)
    assert first.end == datetime.datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)


def test_rfc8460_s4_1_the_day_is_the_utc_day_not_the_local_one() -> None:
    berlin = datetime.timezone(datetime.timedelta(hours=2))
    local = datetime.datetime(2026, 3, 2, 1, 30, tzinfo=berlin)  # 23:30 UTC on March 1st
    (report,) = aggregate([ok(when=local)], SUBMITTER)
    assert report.day == DAY


def test_a_daily_job_reports_only_the_day_it_asks_for() -> None:
    results = [ok(when=NOON), ok(when=NOON + datetime.timedelta(days=1))]
    (report,) = aggregate(results, SUBMITTER, day=DAY)
    assert report.day == DAY
    assert aggregate(results, SUBMITTER, day=datetime.date(2026, 1, 1)) == ()


# --- file name and compression, RFC 8460 §5.1, §5.2 ------------------------------------------


def test_rfc8460_s5_1_file_name() -> None:
    (report,) = aggregate([ok()], SUBMITTER)
    begin = int(datetime.datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    assert begin == 1772323200
    assert report.filename() == f"mail.sender.example!example.net!{begin}!{begin + 86399}.json.gz"
    assert report.filename(compressed=False).endswith(f"!{begin + 86399}.json")


def test_rfc8460_s5_1_unique_id_goes_in_the_name_and_the_report_id() -> None:
    submitter = ReportSubmitter("Sender Inc.", "tlsrpt@Mail.Sender.Example", unique_id="mta2")
    (report,) = aggregate([ok()], submitter)
    assert report.filename().startswith("mail.sender.example!example.net!")
    assert report.filename().endswith("!mta2.json.gz")
    assert report.report_id == "20260301.example.net.mta2@mail.sender.example"
    assert valid(report)["report-id"] == report.report_id


def test_rfc8460_s5_1_example_file_name() -> None:
    name = report_filename("mail.sndr.example.com", "example.net", 1470013207, 1470186007, "001")
    assert name == "mail.sndr.example.com!example.net!1470013207!1470186007!001.json.gz"


@pytest.mark.parametrize(
    "call",
    [
        lambda: report_filename("sender.example", "example.net", 0, 1, "a-1"),
        lambda: report_filename("sender.example", "exämple.net", 0, 1),
        lambda: report_filename("sender!example", "example.net", 0, 1),
        lambda: report_filename("sender.example", "example.net", 10, 1),
        lambda: ReportSubmitter("", "tlsrpt@sender.example"),
        lambda: ReportSubmitter("Sender", "not an address"),
        lambda: ReportSubmitter("Sender", "tlsrpt@sender.example", unique_id=""),
    ],
)
def test_rfc8460_s5_1_bad_names_are_refused(call: Any) -> None:
    with pytest.raises(ValueError):
        call()


def test_rfc8460_s5_2_gzip_round_trip_is_deterministic() -> None:
    (report,) = aggregate([ok(), fail(ResultType.STARTTLS_NOT_SUPPORTED)], SUBMITTER)
    packed = report.gzip()
    assert packed[:2] == b"\x1f\x8b"  # RFC 6713 / RFC 8460 §6.5 magic number
    assert packed[4:8] == b"\0\0\0\0"  # no modification time (RFC 1952 MTIME)
    assert gzip.decompress(packed) == report.body
    assert gzip_report(report.body) == packed
    assert (MEDIA_TYPE_JSON, MEDIA_TYPE_GZIP) == (
        "application/tlsrpt+json",
        "application/tlsrpt+gzip",
    )


# --- determinism -----------------------------------------------------------------------------


def _many() -> list[SessionResult]:
    results = []
    for i, result_type in enumerate(ResultType):
        for policy in (STS, NONE, TLSA, OTHER):
            results.append(fail(result_type, policy, NOON + datetime.timedelta(hours=i)))
            results.append(ok(policy, NOON - datetime.timedelta(hours=i)))
    return results


def test_the_same_results_give_the_same_bytes() -> None:
    first = aggregate(_many(), SUBMITTER)
    again = aggregate(_many(), SUBMITTER)
    assert [r.body for r in first] == [r.body for r in again]
    assert [r.gzip() for r in first] == [r.gzip() for r in again]
    assert [r.filename() for r in first] == [r.filename() for r in again]


@given(st.randoms(use_true_random=False))
def test_the_order_of_results_does_not_matter(rng: random.Random) -> None:
    results = _many()
    expected = aggregate(results, SUBMITTER)
    rng.shuffle(results)
    assert aggregate(results, SUBMITTER) == expected


# --- properties ------------------------------------------------------------------------------

_POLICIES = st.sampled_from([STS, TLSA, NONE, OTHER, AppliedPolicy(PolicyType.STS, "a.example")])
_WHEN = st.datetimes(
    min_value=datetime.datetime(2026, 2, 27),
    max_value=datetime.datetime(2026, 3, 3),
    timezones=st.sampled_from(
        [UTC, datetime.timezone(datetime.timedelta(hours=-7)), datetime.timezone.min]
    ),
)
_IP = st.one_of(
    st.none(), st.ip_addresses().map(str), st.sampled_from(["203.0.113.56", "2001:db8::1"])
)
_TEXT = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))


@st.composite
def session_results(draw: st.DrawFn) -> SessionResult:
    result_type = draw(st.one_of(st.none(), st.sampled_from(ResultType)))
    failure = result_type is not None
    code = draw(_TEXT) if failure else None
    return SessionResult(
        draw(_POLICIES),
        draw(_WHEN),
        result_type,
        receiving_mx_hostname=draw(st.one_of(st.none(), st.sampled_from(["mx1.a.example", "B."]))),
        receiving_ip=draw(_IP),
        sending_mta_ip=draw(_IP),
        receiving_mx_helo=draw(st.one_of(st.none(), st.sampled_from(["mx1", "mx1 ESMTP ü"]))),
        additional_information=draw(st.sampled_from([None, "https://i.example/x"]))
        if failure
        else None,
        failure_reason_code=None if code is None else code.replace("\n", " ").replace("\r", " "),
    )


@settings(max_examples=75, deadline=None)
@given(st.lists(session_results(), max_size=40))
def test_counts_add_up_to_the_number_of_results(results: list[SessionResult]) -> None:
    reports = aggregate(results, SUBMITTER)
    total = 0
    for report in reports:
        document = valid(report)
        for entry in document["policies"]:
            summary = entry["summary"]
            details = sum(d["failed-session-count"] for d in entry["failure-details"])
            assert summary["total-failure-session-count"] == details
            total += summary["total-successful-session-count"] + details
    assert total == len(results)
    assert sum(r.successful for r in results) == sum(
        e["summary"]["total-successful-session-count"]
        for r in reports
        for e in r.document()["policies"]
    )
    assert len({(r.day, r.policy_domain) for r in reports}) == len(reports)


@settings(max_examples=50, deadline=None)
@given(st.lists(session_results(), max_size=30), st.randoms(use_true_random=False))
def test_any_order_gives_the_same_bytes(results: list[SessionResult], rng: random.Random) -> None:
    expected = [r.body for r in aggregate(results, SUBMITTER)]
    rng.shuffle(results)
    assert [r.body for r in aggregate(results, SUBMITTER)] == expected


# --- the state lines ---------------------------------------------------------------------------


@given(session_results())
def test_a_session_result_round_trips_through_one_json_line(result: SessionResult) -> None:
    line = result.to_json()
    assert "\n" not in line and "\r" not in line
    assert line.isascii()
    assert SessionResult.from_json(line) == result
    assert SessionResult.from_json(line.encode()) == result


def test_damaged_lines_are_skipped_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    good = [ok().to_json(), fail(ResultType.TLSA_INVALID, TLSA).to_json()]
    lines: list[str | bytes] = [
        good[0],
        "",
        good[1][:-7],  # cut short by a crash
        b"\xff\xfe garbage",
        '{"v": 2}',
        good[1].replace('"v":1', '"v":true'),
        good[1].replace("tlsa-invalid", "tlsa-broken"),
        good[1].replace("mx1.mail.example.net", "mx\u00fc.example", 1),
        "[" * 100000,
        good[1].encode() + b"\n",
        good[0].replace("}", ',"extra":1}', 1),
    ]
    with caplog.at_level(logging.WARNING, logger="smtp_rtls.policy.tlsrpt"):
        log = read_session_lines(lines, source="/var/lib/tlsrpt/2026-03-01")
    assert log.results == (ok(), fail(ResultType.TLSA_INVALID, TLSA))
    assert [d.number for d in log.damaged] == [3, 4, 5, 6, 7, 8, 9, 11]
    assert all(d.error for d in log.damaged)
    (record,) = caplog.records
    assert "8 damaged" in record.getMessage()
    assert "/var/lib/tlsrpt/2026-03-01" in record.getMessage()


@given(st.lists(st.one_of(st.binary(max_size=60), st.text(max_size=60)), max_size=10))
def test_reading_lines_never_raises(lines: list[str | bytes]) -> None:
    log = read_session_lines(lines)
    assert len(log.results) + len(log.damaged) <= len(lines)


@given(session_results(), st.integers(min_value=0, max_value=300))
def test_a_cut_line_is_damaged_or_the_whole_result(result: SessionResult, cut: int) -> None:
    line = result.to_json()
    log = read_session_lines([line[:cut]])
    assert log.results in ((), (result,))
    assert log.results == (result,) or len(log.damaged) == (1 if line[:cut].strip() else 0)
