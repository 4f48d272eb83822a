"""Delivery status notifications (RFC 3464, RFC 3461, RFC 8689 §5, RFC 5321 §4.5.5)."""

from __future__ import annotations

import datetime
import email
import email.policy
import logging
from email.message import Message

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls._reply import Reply
from smtp_rtls.policy.codes import Reason, code_for
from smtp_rtls.policy.dsn import Bounce, RecipientStatus, build_dsn
from smtp_rtls.policy.tags import TLSTag, message_tag

UTC = datetime.UTC
DATE = datetime.datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
ARRIVAL = datetime.datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
SECRET_BODY = b"The launch code is 0000.\r\n"
ORIGINAL = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: plans\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"\r\n" + SECRET_BODY
)
REQUIRETLS_FAILED = RecipientStatus(
    "bob@example.net",
    "5.7.30",
    original_recipient="rfc822;bob@example.net",
    remote_mta="mx.example.net",
    diagnostic=code_for(Reason.REQUIRETLS_NOT_OFFERED).reply(final=True),
    last_attempt=DATE,
)


def dsn(**kw: object) -> Bounce:
    args: dict[str, object] = {
        "reporting_mta": "mta.example.org",
        "original_reverse_path": "alice@example.org",
        "original": ORIGINAL,
        "tag": TLSTag.REQUIRETLS,
        "recipients": [REQUIRETLS_FAILED],
        "date": DATE,
        "envid": "QQ314159",
        "arrival_date": ARRIVAL,
    }
    args.update(kw)
    bounce = build_dsn(**args)  # type: ignore[arg-type]
    assert bounce is not None
    return bounce


def parse(bounce: Bounce) -> Message:
    return email.message_from_bytes(bounce.message, policy=email.policy.compat32)


def test_rfc3464_report_parses_as_multipart_report_with_the_right_fields() -> None:
    bounce = dsn()
    msg = parse(bounce)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert not msg.defects
    human, status, returned = msg.get_payload()
    assert human.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mta.example.org"
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["Arrival-Date"] == "Sat, 28 Nov 2026 14:00:00 +0000"
    assert per_recipient["Final-Recipient"] == "rfc822; bob@example.net"
    assert per_recipient["Original-Recipient"] == "rfc822; bob@example.net"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.7.30"
    assert per_recipient["Remote-MTA"] == "dns; mx.example.net"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.7.30 REQUIRETLS support required"
    assert per_recipient["Last-Attempt-Date"] == "Sat, 28 Nov 2026 15:00:00 +0000"
    assert returned.get_content_type() == "text/rfc822-headers"
    assert msg["To"] == "<alice@example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"


def test_crlf_line_ends_only() -> None:
    message = dsn(original=ORIGINAL.replace(b"\r\n", b"\n")).message
    assert b"\n" not in message.replace(b"\r\n", b"")
    assert b"\r" not in message.replace(b"\r\n", b"")


def test_rfc5321_s4_5_5_null_reverse_path_and_envelope() -> None:
    bounce = dsn()
    assert bounce.reverse_path == ""
    assert bounce.forward_path == "alice@example.org"


@pytest.mark.parametrize("path", ["", "<>", " <> "])
def test_rfc5321_s4_5_5_a_bounce_is_never_bounced(path: str) -> None:
    assert (
        build_dsn(
            reporting_mta="mta.example.org",
            original_reverse_path=path,
            original=ORIGINAL,
            tag=TLSTag.REQUIRETLS,
            recipients=[REQUIRETLS_FAILED],
            date=DATE,
        )
        is None
    )


@pytest.mark.parametrize("ret", [None, "FULL", "HDRS"])
def test_rfc8689_s5_requiretls_original_returns_headers_only(ret: str | None) -> None:
    """§5 ¶3: behave as if RET=HDRS; RET=FULL MUST be disregarded."""
    bounce = dsn(ret=ret)
    assert SECRET_BODY not in bounce.message
    returned = parse(bounce).get_payload()[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"Subject: plans" in bounce.message


def test_rfc8689_s5_requiretls_report_is_tagged_but_only_preferred() -> None:
    """§5 ¶1: the report carries REQUIRETLS; ¶3: not discarded when the next hop
    lacks it, so the tag is a preference, never a requirement."""
    bounce = dsn()
    assert bounce.tag is TLSTag.REQUIRETLS
    assert bounce.requiretls_preferred and not bounce.requiretls_required
    assert parse(bounce)["TLS-Required"] is None


def test_rfc8689_s5_redacted_report_is_untagged_and_headers_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="smtp_rtls.policy.dsn"):
        bounce = dsn(redact=True, ret="FULL")
    assert bounce.tag is TLSTag.DEFAULT
    assert not bounce.requiretls_preferred and not bounce.requiretls_required
    assert SECRET_BODY not in bounce.message
    assert caplog.records  # RFC 8689 §5 ¶4: the possible leak is logged


def test_untagged_original_ret_full_returns_the_message() -> None:
    bounce = dsn(tag=TLSTag.DEFAULT, ret="FULL")
    returned = parse(bounce).get_payload()[2]
    assert returned.get_content_type() == "message/rfc822"
    assert SECRET_BODY in bounce.message
    assert bounce.tag is TLSTag.DEFAULT and not bounce.requiretls_preferred
    # Without RET the choice is ours: headers only.
    assert SECRET_BODY not in dsn(tag=TLSTag.DEFAULT).message


def test_tls_required_no_is_copied_into_the_report() -> None:
    original = b"TLS-Required: No\r\n" + ORIGINAL
    bounce = dsn(tag=TLSTag.TLS_OPTIONAL, original=original)
    assert bounce.tag is TLSTag.TLS_OPTIONAL
    assert parse(bounce)["TLS-Required"] == "No"
    head = bounce.message.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert message_tag(False, head) is TLSTag.TLS_OPTIONAL


def test_requiretls_wins_over_a_tls_required_no_header_in_the_report() -> None:
    """§4.1 ¶2: with REQUIRETLS the header was ignored; the report is not TLS-optional."""
    original = b"TLS-Required: No\r\n" + ORIGINAL
    bounce = dsn(tag=TLSTag.REQUIRETLS, original=original)
    msg = parse(bounce)
    assert msg["TLS-Required"] is None
    assert bounce.tag is TLSTag.REQUIRETLS


def test_rfc3461_notify_never_or_without_failure_gets_no_report() -> None:
    never = RecipientStatus("c@example.net", "5.7.10", notify=["NEVER"])
    delay_only = RecipientStatus("d@example.net", "5.7.10", notify=["DELAY"])
    failure = RecipientStatus("e@example.net", "5.7.10", notify=["failure", "delay"])
    assert (
        build_dsn(
            reporting_mta="m.example.org",
            original_reverse_path="a@example.org",
            original=ORIGINAL,
            tag=TLSTag.DEFAULT,
            recipients=[never, delay_only],
            date=DATE,
        )
        is None
    )
    bounce = dsn(recipients=[never, failure, delay_only])
    status = parse(bounce).get_payload()[1]
    recipients = [b["Final-Recipient"] for b in status.get_payload()[1:]]
    assert recipients == ["rfc822; e@example.net"]


def test_multi_line_diagnostic_is_folded() -> None:
    reply = Reply(550, ["first line", "second line"], "5.7.30")
    bounce = dsn(recipients=[RecipientStatus("b@example.net", "5.7.30", diagnostic=reply)])
    assert b"Diagnostic-Code: smtp; 550 5.7.30 first line\r\n 550 5.7.30 second line\r\n" in (
        bounce.message
    )
    block = parse(bounce).get_payload()[1].get_payload()[1]
    assert " ".join(block["Diagnostic-Code"].split()) == (
        "smtp; 550 5.7.30 first line 550 5.7.30 second line"
    )


def test_field_injection_is_refused() -> None:
    with pytest.raises(ValueError):
        dsn(recipients=[RecipientStatus("b@example.net\r\nBcc: x", "5.7.30")])
    with pytest.raises(ValueError):
        dsn(envid="x\r\nSubject: forged")
    with pytest.raises(ValueError):
        dsn(date=datetime.datetime(2026, 1, 1))  # no time zone


def test_utf8_address_uses_global_delivery_status() -> None:
    bounce = dsn(recipients=[RecipientStatus("bjørn@example.net", "5.7.30")])
    msg = email.message_from_bytes(bounce.message, policy=email.policy.default)
    assert msg.get_payload()[1].get_content_type() == "message/global-delivery-status"
    assert "utf-8; bjørn@example.net".encode() in bounce.message


def test_8bit_headers_are_marked() -> None:
    original = "Subject: grüße\r\n\r\nbody\r\n".encode()
    bounce = dsn(original=original)
    assert b"Content-Transfer-Encoding: 8bit" in bounce.message


@given(
    body=st.binary(max_size=300),
    subject=st.from_regex(r"[ -~]{0,60}", fullmatch=True),
    tag=st.sampled_from(list(TLSTag)),
    ret=st.sampled_from([None, "FULL", "HDRS"]),
)
def test_any_original_gives_a_parseable_report(
    body: bytes, subject: str, tag: TLSTag, ret: str | None
) -> None:
    body = b"SECRET-" + body
    original = b"From: a@example.org\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body
    bounce = dsn(original=original, tag=tag, ret=ret)
    msg = parse(bounce)
    assert msg.get_content_type() == "multipart/report"
    parts = msg.get_payload()
    assert len(parts) == 3
    assert parts[1].get_payload()[1]["Status"] == "5.7.30"
    returned_body = tag is not TLSTag.REQUIRETLS and ret == "FULL"
    assert (b"SECRET-" in bounce.message) is returned_body


# -- RFC 8689 §5: the report that travels without REQUIRETLS is redacted ------

LEAKY = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Cc: carol@example.com\r\n"
    b"Subject: the merger\r\n"
    b"Date: Sat, 28 Nov 2026 13:00:00 +0000\r\n"
    b"Message-ID:\r\n <1@example.org>\r\n"
    b"X-Mailer: secret-client 1.0\r\n"
    b"\r\n" + SECRET_BODY
)


def _returned_part(report: bytes) -> bytes:
    """The content of the third part (the returned header), as sent."""
    tail = report.split(b"Content-Type: text/rfc822-headers\r\n", 1)[1]
    content = tail.removeprefix(b"Content-Transfer-Encoding: 8bit\r\n").removeprefix(b"\r\n")
    # RFC 2046 §5.1.1: the CRLF before the boundary belongs to the boundary.
    return content[: content.index(b"\r\n--=_dsn_")]


def test_rfc8689_s5_without_requiretls_the_report_is_redacted_by_default() -> None:
    bounce = dsn(original=LEAKY)
    assert bounce.tag is TLSTag.REQUIRETLS and bounce.redacted is not None
    # With REQUIRETLS: the header section (§5 ¶3, RET=HDRS).
    assert bounce.message_for(requiretls=True) == bounce.message
    assert _returned_part(bounce.message) == LEAKY.split(b"\r\n\r\n")[0] + b"\r\n"
    # Without it: only what identifies the message.
    clear = bounce.message_for(requiretls=False)
    assert clear == bounce.redacted
    assert _returned_part(clear) == (
        b"Date: Sat, 28 Nov 2026 13:00:00 +0000\r\nMessage-ID:\r\n <1@example.org>\r\n"
    )
    for secret in (b"the merger", b"carol@", b"bob@example.net\r\nCc", b"Alice", b"secret-client"):
        assert secret not in clear
    msg = parse(Bounce(bounce.forward_path, clear, TLSTag.DEFAULT))
    assert not msg.defects
    status = msg.get_payload()[1].get_payload()
    assert [b["Final-Recipient"] for b in status[1:]] == ["rfc822; bob@example.net"]
    assert msg["Message-ID"] == parse(bounce)["Message-ID"]  # one report, two forms


def test_rfc8689_s5_redacted_report_lists_only_the_recipients_it_is_about() -> None:
    other = RecipientStatus("dave@example.net", "5.7.30", notify=["NEVER"])
    clear = dsn(original=LEAKY, recipients=[REQUIRETLS_FAILED, other]).message_for(False)
    assert b"dave@" not in clear
    assert b"carol@" not in clear


def test_rfc8689_s5_unredacted_fallback_is_an_explicit_choice() -> None:
    bounce = dsn(original=LEAKY, without_requiretls="headers")
    assert bounce.redacted is None
    assert bounce.message_for(False) == bounce.message
    assert b"Subject: the merger" in bounce.message_for(False)


def test_rfc8689_s5_redact_sends_only_the_redacted_report() -> None:
    bounce = dsn(original=LEAKY, redact=True)
    assert bounce.tag is TLSTag.DEFAULT and bounce.redacted is None
    assert b"the merger" not in bounce.message and b"carol@" not in bounce.message
    assert b"Message-ID:\r\n <1@example.org>\r\n" in bounce.message
    assert bounce.message_for(False) == bounce.message_for(True) == bounce.message
    with pytest.raises(ValueError):
        dsn(original=LEAKY, redact=True, without_requiretls="headers")


@pytest.mark.parametrize("tag", [TLSTag.DEFAULT, TLSTag.TLS_OPTIONAL])
def test_untagged_reports_have_one_form(tag: TLSTag) -> None:
    bounce = dsn(original=LEAKY, tag=tag)
    assert bounce.redacted is None
    assert bounce.message_for(False) == bounce.message_for(True) == bounce.message


# -- RFC 5322 §2.1: the returned header ends at the first non-field line ------


@pytest.mark.parametrize(
    "original",
    [
        # No empty line between header and body.
        b"From: a@example.org\r\nSubject: s\r\nSECRET body line\r\nmore SECRET\r\n",
        # A malformed line inside the header section: the rest is body.
        b"From: a@example.org\r\nSubject: s\r\nSECRET no colon\r\nTo: SECRET\r\n\r\nbody\r\n",
        # A bare CR that becomes a line end: what follows is body text.
        b"From: a@example.org\r\nSubject: s\r\rSECRET body\r\n",
        b"From: a@example.org\r\nSubject: s\n\nSECRET body\n",
    ],
)
@pytest.mark.parametrize("tag", list(TLSTag))
def test_rfc5322_s2_1_headers_only_report_never_returns_body_text(
    original: bytes, tag: TLSTag
) -> None:
    bounce = dsn(original=original, tag=tag)
    for report in (bounce.message, bounce.message_for(False)):
        assert b"SECRET" not in report
    assert _returned_part(bounce.message) == b"From: a@example.org\r\nSubject: s\r\n"


# -- CRLF only (RFC 5322 §2.3) ----------------------------------------------


@pytest.mark.parametrize("ret", ["FULL", "HDRS"])
@pytest.mark.parametrize("tag", list(TLSTag))
def test_rfc5322_s2_3_bare_cr_and_lf_of_the_original_become_crlf(tag: TLSTag, ret: str) -> None:
    original = b"From: a\rb@example.org\r\nSubject: x\ny\r\nX: 1\r\r\n\r\nbody\rline\nend\r"
    bounce = dsn(original=original, tag=tag, ret=ret)
    for report in (bounce.message, bounce.message_for(False)):
        assert b"\r" not in report.replace(b"\r\n", b"")
        assert b"\n" not in report.replace(b"\r\n", b"")


@given(original=st.binary(max_size=300), tag=st.sampled_from(list(TLSTag)))
def test_rfc5322_s2_3_any_original_gives_crlf_only(original: bytes, tag: TLSTag) -> None:
    bounce = dsn(original=original, tag=tag, ret="FULL")
    for report in (bounce.message, bounce.message_for(False)):
        assert b"\r" not in report.replace(b"\r\n", b"")
        assert b"\n" not in report.replace(b"\r\n", b"")
        assert len(parse(Bounce("a@example.org", report, tag)).get_payload()) == 3
