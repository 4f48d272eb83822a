"""Delivering reports (RFC 8460 §5.3, §5.4) and retrying them (§5.5), over loopback.

The ``_smtp._tls`` record and the report domain's MX come from a real UDP DNS
server; mail goes to our own server (``smtp_rtls.io.sync.serve`` with a
recording handler), HTTPS POSTs to an ``http.server`` over TLS with a trustme
certificate for 127.0.0.1.  Each test stops what it starts (fixtures).
"""

from __future__ import annotations

import datetime
import email
import email.policy
import gzip
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smtp_rtls.io.tlsrpt import (
    QueuedReport,
    ReportRetry,
    ReportSender,
    ReportStatus,
    TLSRPTStore,
    report_message,
)
from smtp_rtls.policy.tags import TLSTag, parse_tls_required
from smtp_rtls.policy.tlsrpt import (
    AppliedPolicy,
    Report,
    ReportSubmitter,
    ResultType,
    SessionResult,
    aggregate,
)

from .world import DOMAIN, MX, REPORTS, REPORTS_MX, TIMEOUTS, Certs, DNSServer, Recorder, fulfiller

SUBMITTER = ReportSubmitter("Sender Inc.", "tlsrpt@sender.example")
DAY = datetime.date(2026, 3, 1)
NOON = datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)
NEXT_DAY = datetime.datetime(2026, 3, 2, 1, tzinfo=datetime.UTC)


def a_report() -> Report:
    policy = AppliedPolicy.no_policy(DOMAIN)
    results = [
        SessionResult(policy, NOON, receiving_mx_hostname=MX, receiving_ip="192.0.2.25"),
        SessionResult(
            policy,
            NOON,
            ResultType.CERTIFICATE_EXPIRED,
            receiving_mx_hostname=MX,
            receiving_ip="192.0.2.25",
            sending_mta_ip="198.51.100.7",
            failure_reason_code="certificate has expired",
        ),
    ]
    (report,) = aggregate(results, SUBMITTER, day=DAY)
    return report


def publish(dns_server: DNSServer, rua: str) -> None:
    dns_server.add(f"_smtp._tls.{DOMAIN}", "TXT", f'"v=TLSRPTv1; rua={rua}"')
    dns_server.add(REPORTS, "MX", f"10 {REPORTS_MX}.")
    dns_server.add(REPORTS_MX, "A", "127.0.0.1")


def sender(dns_server: DNSServer, certs: Certs, mx_port: int | None = None) -> ReportSender:
    return ReportSender(
        fulfiller(dns_server, certs.cafile),
        local_hostname="mta.sender.example",
        cafile=certs.cafile,
        mx_port=mx_port,
        timeouts=TIMEOUTS,
        timeout=10,
        clock=lambda: NEXT_DAY,
    )


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])  # closed on the way out: nothing listens


# -- the message, §5.3 -----------------------------------------------------------------------


def test_the_report_message_follows_rfc8460_5_3() -> None:
    report = a_report()
    raw = report_message(report, ["tlsrpt@reports.test"], date=NEXT_DAY)
    assert raw.startswith(b"TLS-Required: No\r\n")  # RFC 8689 §3, first in the header
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    assert message["TLS-Report-Domain"] == DOMAIN
    assert message["TLS-Report-Submitter"] == "sender.example"  # the contact's domain
    assert message["From"] == "tlsrpt@sender.example"
    subject = " ".join(str(message["Subject"]).split())
    assert subject == (
        f"Report Domain: {DOMAIN} Submitter: sender.example Report-ID: <{report.report_id}>"
    )
    assert re.fullmatch(
        r"Report Domain: \S+ Submitter: \S+ Report-ID: <[^@>\s]+@[^@>\s]+>", subject
    )
    text, attachment = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert "aggregate TLS report" in text.get_content()
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    assert attachment.get_filename() == report.filename()
    assert attachment.get_content_disposition() == "attachment"
    assert gzip.decompress(attachment.get_payload(decode=True)) == report.body


# -- mail, §5.3 ------------------------------------------------------------------------------


def test_a_report_is_mailed_to_the_rua_address_with_tls_required_no(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any]
) -> None:
    recorder = Recorder()
    server = smtp(certs.context("reports-mx"), recorder, hostname=REPORTS_MX)
    publish(dns_server, f"mailto:tlsrpt@{REPORTS}")
    report = a_report()
    outcome = sender(dns_server, certs, server.port).send(report)
    assert outcome.status is ReportStatus.DELIVERED, outcome
    (destination,) = outcome.destinations
    assert destination.uri == f"mailto:tlsrpt@{REPORTS}" and destination.accepted
    ((envelope, content),) = recorder.messages_kept
    assert str(envelope.mail_from.reverse_path) == "tlsrpt@sender.example"
    assert [str(r.forward_path) for r in envelope.recipients] == [f"tlsrpt@{REPORTS}"]
    assert envelope.tag is TLSTag.TLS_OPTIONAL
    field = parse_tls_required(content)
    assert field.tls_optional and field.values == ("No",)
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert message["TLS-Report-Domain"] == DOMAIN
    assert message.get_param("report-type") == "tlsrpt"
    _, attachment = message.iter_parts()
    assert json.loads(gzip.decompress(attachment.get_payload(decode=True))) == report.document()


def test_a_report_gets_through_despite_tls_failures_rfc8460_3(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any]
) -> None:
    """The report domain's MX serves an expired certificate that its DANE
    record does not match either: the report is delivered all the same
    (§3 "MUST deliver reports despite any TLS-related failures"; RFC 8689 §4.2.2)."""
    recorder = Recorder()
    server = smtp(certs.context("expired"), recorder, hostname=REPORTS_MX)
    publish(dns_server, f"mailto:tlsrpt@{REPORTS}")
    dns_server.add(f"_25._tcp.{REPORTS_MX}", "TLSA", certs.tlsa_ee(certs.stale))
    outcome = sender(dns_server, certs, server.port).send(a_report())
    assert outcome.status is ReportStatus.DELIVERED, outcome
    assert len(recorder.messages_kept) == 1


# -- HTTPS, §5.4 -----------------------------------------------------------------------------


def test_a_report_is_posted_gzipped_to_the_https_rua(
    dns_server: DNSServer, certs: Certs, https: Callable[..., Any]
) -> None:
    receiver = https(certs.context("receiver"))
    publish(dns_server, f"https://127.0.0.1:{receiver.port}/v1/tlsrpt")
    report = a_report()
    outcome = sender(dns_server, certs).send(report)
    assert outcome.status is ReportStatus.DELIVERED, outcome
    ((path, headers, body),) = receiver.posts
    assert path == "/v1/tlsrpt"
    assert headers["Content-Type"] == "application/tlsrpt+gzip"
    assert gzip.decompress(body) == report.body
    assert outcome.destinations[0].detail.startswith("HTTP 200")


def test_every_destination_is_tried_and_one_acceptance_delivers_rfc8460_3(
    dns_server: DNSServer, certs: Certs, https: Callable[..., Any], smtp: Callable[..., Any]
) -> None:
    receiver = https(certs.context("receiver"))
    receiver.post_status = 503
    recorder = Recorder()
    server = smtp(certs.context("reports-mx"), recorder, hostname=REPORTS_MX)
    publish(dns_server, f"https://127.0.0.1:{receiver.port}/r,mailto:tlsrpt@{REPORTS}")
    outcome = sender(dns_server, certs, server.port).send(a_report())
    assert outcome.status is ReportStatus.DELIVERED
    assert [(d.uri.split(":")[0], d.accepted) for d in outcome.destinations] == [
        ("https", False),
        ("mailto", True),
    ]
    assert len(receiver.posts) == 1 and len(recorder.messages_kept) == 1


def test_an_untrusted_https_certificate_fails_unless_told_to_ignore_it(
    dns_server: DNSServer, certs: Certs, https: Callable[..., Any]
) -> None:
    receiver = https(certs.context("untrusted"))  # a rogue CA, another name
    publish(dns_server, f"https://127.0.0.1:{receiver.port}/")
    refused = sender(dns_server, certs).send(a_report())
    assert refused.status is ReportStatus.FAILED
    assert refused.destinations[0].detail.startswith("certificate")
    lenient = sender(dns_server, certs)
    lenient.verify_https = False  # RFC 8460 §3: MAY ignore validation errors
    assert lenient.send(a_report()).status is ReportStatus.DELIVERED


def test_no_record_means_no_report_is_wanted(dns_server: DNSServer, certs: Certs) -> None:
    dns_server.add(DOMAIN, "MX", f"10 {MX}.")
    outcome = sender(dns_server, certs).send(a_report())
    assert outcome.status is ReportStatus.NOT_WANTED
    assert "no TLSRPT TXT record" in outcome.detail


# -- the queue and its back-off, §5.5 --------------------------------------------------------


def test_a_failing_receiver_keeps_the_report_with_back_off_then_a_later_run_delivers_it(
    dns_server: DNSServer, certs: Certs, https: Callable[..., Any], tmp_path: Path
) -> None:
    receiver = https(certs.context("receiver"))
    receiver.post_status = 500
    publish(dns_server, f"https://127.0.0.1:{receiver.port}/tlsrpt")
    store = TLSRPTStore(tmp_path, retry=ReportRetry(first=600, factor=2, maximum=3600))
    report = a_report()
    assert store.queue(report, NEXT_DAY)
    assert not store.queue(report, NEXT_DAY)  # a day's report is queued once
    send = sender(dns_server, certs)

    (first,) = store.send_due(send, now=NEXT_DAY)
    assert first.status is ReportStatus.KEPT
    assert first.next_attempt == NEXT_DAY + datetime.timedelta(seconds=600)
    assert "HTTP 500" in first.detail
    entry_path = tmp_path / "outbox" / report.filename(compressed=False)
    entry = QueuedReport.from_json(entry_path.read_bytes())
    assert (entry.attempts, entry.next_attempt, entry.first_attempt) == (
        1,
        first.next_attempt,
        NEXT_DAY,
    )
    assert entry.report == report  # kept whole, body and submitter

    # not due yet: nothing is tried
    assert store.send_due(send, now=NEXT_DAY + datetime.timedelta(seconds=599)) == []
    later = NEXT_DAY + datetime.timedelta(seconds=600)
    (second,) = store.send_due(send, now=later)
    assert second.next_attempt == later + datetime.timedelta(seconds=1200)  # doubled

    receiver.post_status = 201
    (third,) = store.send_due(send, now=second.next_attempt)
    assert third.status is ReportStatus.DELIVERED
    assert not entry_path.exists()
    done = QueuedReport.from_json((tmp_path / "done" / entry_path.name).read_bytes())
    assert done.status is ReportStatus.DELIVERED and done.attempts == 3
    assert [gzip.decompress(body) for _, _, body in receiver.posts] == [report.body] * 3


def test_a_closed_port_keeps_the_report_and_a_day_later_it_is_given_up_not_lost(
    dns_server: DNSServer, certs: Certs, tmp_path: Path
) -> None:
    publish(dns_server, f"https://127.0.0.1:{closed_port()}/tlsrpt")
    store = TLSRPTStore(tmp_path)
    report = a_report()
    store.queue(report, NEXT_DAY)
    send = sender(dns_server, certs)
    (first,) = store.send_due(send, now=NEXT_DAY)
    assert first.status is ReportStatus.KEPT and first.detail.count("connect") == 1
    (last,) = store.send_due(send, now=NEXT_DAY + datetime.timedelta(hours=24), everything=True)
    assert last.status is ReportStatus.GIVEN_UP
    assert store.queued() == []
    folder, entry = store.state_of(report) or ("", None)
    assert folder == "failed" and entry is not None and entry.attempts == 2
    assert entry.report.body == report.body


def test_the_last_retry_falls_on_the_give_up_time(
    dns_server: DNSServer, certs: Certs, tmp_path: Path
) -> None:
    publish(dns_server, f"https://127.0.0.1:{closed_port()}/")
    store = TLSRPTStore(tmp_path, retry=ReportRetry(first=3600, factor=10, maximum=86400))
    store.queue(a_report(), NEXT_DAY)
    send = sender(dns_server, certs)
    store.send_due(send, now=NEXT_DAY)  # next in 1 h
    (second,) = store.send_due(send, now=NEXT_DAY + datetime.timedelta(hours=1))
    # 10 h later would be fine; the third wait (100 h) is cut to the give-up time
    (third,) = store.send_due(send, now=NEXT_DAY + datetime.timedelta(hours=11))
    assert third.next_attempt == NEXT_DAY + datetime.timedelta(hours=24)
    assert second.status is third.status is ReportStatus.KEPT


def test_a_dns_failure_is_retried_and_no_record_is_done_with(
    dns_server: DNSServer, certs: Certs, tmp_path: Path
) -> None:
    dns_server.rcodes[(f"_smtp._tls.{DOMAIN}", "TXT")] = "SERVFAIL"
    store = TLSRPTStore(tmp_path)
    report = a_report()
    store.queue(report, NEXT_DAY)
    send = sender(dns_server, certs)
    (first,) = store.send_due(send, now=NEXT_DAY)
    assert first.status is ReportStatus.KEPT and "SERVFAIL" in first.detail
    del dns_server.rcodes[(f"_smtp._tls.{DOMAIN}", "TXT")]
    dns_server.add(DOMAIN, "MX", f"10 {MX}.")
    (second,) = store.send_due(send, now=NEXT_DAY, everything=True)
    assert second.status is ReportStatus.NOT_WANTED
    where = store.state_of(report)
    assert where is not None and where[0] == "done"


def test_a_damaged_queue_entry_is_skipped_and_said(tmp_path: Path, caplog: Any) -> None:
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "broken.json").write_text('{"v": 1, "policy-')
    assert TLSRPTStore(tmp_path).queued() == []
    assert "unreadable queued report" in caplog.text
