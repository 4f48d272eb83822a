"""Harness ``dsn``: any envelope and reason into the DSN builder
(smtp_rtls.policy.dsn, RFC 3464, RFC 6522, RFC 8689 §5).

Input (FuzzedDataProvider): the reporting MTA, the original reverse path,
the original message, its tag, RET, ENVID, the redaction choice, and up to
three recipients (address, ORCPT, status, action, remote MTA, a diagnostic
reply parsed from fuzzed bytes, NOTIFY).

ORACLE:

* ``build_dsn`` (and ``RecipientStatus``) raise nothing but ValueError and
  LocalProtocolError (an EnhancedStatus that is not one, RFC 3463 §2);
* no report for a null reverse path (RFC 5321 §4.5.5) or when every
  recipient's NOTIFY declines it (RFC 3461 §4.1);
* a report is a well-formed message: CRLF line ends only (RFC 5322 §2.3),
  a header section whose fields the email package reads, multipart/report
  with the three parts of RFC 6522 (RFC 3464 §2), a boundary that does not
  occur in the content, and ``forward_path`` is the original reverse path;
* a REQUIRETLS original returns its header section only, never its body
  (RFC 8689 §5 ¶3), and the redacted report (§5 ¶4) carries only its
  Message-ID and Date of the original's header.
"""

from __future__ import annotations

import contextlib
import datetime
import email
import email.policy
import sys

import atheris
from fuzz_common import main

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls import LocalProtocolError, RemoteProtocolError, Reply
    from smtp_rtls.policy.dsn import RecipientStatus, build_dsn
    from smtp_rtls.policy.tags import TLSTag, header_section


DATE = datetime.datetime(2026, 12, 5, 6, 0, tzinfo=datetime.UTC)
STATUSES = ("5.1.1", "4.4.1", "5.7.10", "2.0.0", "5.0.0")
ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
NOTIFY = (None, ("NEVER",), ("FAILURE",), ("SUCCESS", "DELAY"), ("failure", "delay"))
BODY_MARK = b"BODY-SECRET-7f3a"


def _recipient(fdp: atheris.FuzzedDataProvider) -> RecipientStatus:
    diagnostic = None
    raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
    with contextlib.suppress(RemoteProtocolError):
        diagnostic = Reply.parse(raw)
    status = (
        STATUSES[fdp.ConsumeIntInRange(0, len(STATUSES) - 1)]
        if fdp.ConsumeBool()
        else fdp.ConsumeUnicodeNoSurrogates(8)
    )
    return RecipientStatus(
        final_recipient=fdp.ConsumeUnicodeNoSurrogates(60),
        status=status,
        action=ACTIONS[fdp.ConsumeIntInRange(0, len(ACTIONS) - 1)],  # type: ignore[arg-type]
        original_recipient=fdp.ConsumeUnicodeNoSurrogates(40) if fdp.ConsumeBool() else None,
        remote_mta=fdp.ConsumeUnicodeNoSurrogates(30) if fdp.ConsumeBool() else None,
        diagnostic=diagnostic,
        last_attempt=DATE if fdp.ConsumeBool() else None,
        notify=NOTIFY[fdp.ConsumeIntInRange(0, len(NOTIFY) - 1)],
    )


def _check_message(message: bytes, forward_path: str) -> email.message.Message:
    assert message.replace(b"\r\n", b"").count(b"\r") == 0, "bare CR"
    assert message.replace(b"\r\n", b"").count(b"\n") == 0, "bare LF"
    head = header_section(message)
    assert message[len(head) : len(head) + 2] == b"\r\n", "no empty line after the header"
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    assert parsed.get_content_type() == "multipart/report", parsed.get_content_type()
    assert parsed.get_param("report-type") == "delivery-status"
    boundary = parsed.get_boundary()
    assert boundary, "no boundary"
    parts = parsed.get_payload()
    assert isinstance(parts, list) and len(parts) == 3, len(parts)
    kinds = [p.get_content_type() for p in parts]
    assert kinds[0] == "text/plain" and kinds[1].endswith("delivery-status"), kinds
    assert kinds[2] in ("message/rfc822", "text/rfc822-headers"), kinds
    to = f"To: <{forward_path}>\r\n".encode()
    assert to in head and (head.startswith(to) or b"\r\n" + to in head), (head, forward_path)
    return parsed


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    tag = (TLSTag.DEFAULT, TLSTag.REQUIRETLS, TLSTag.TLS_OPTIONAL)[fdp.ConsumeIntInRange(0, 2)]
    ret = (None, "FULL", "HDRS")[fdp.ConsumeIntInRange(0, 2)]
    redact = fdp.ConsumeBool()
    without = ("redacted", "headers")[fdp.ConsumeIntInRange(0, 1)]
    reporting_mta = fdp.ConsumeUnicodeNoSurrogates(30) or "mx.example"
    reverse_path = fdp.ConsumeUnicodeNoSurrogates(60)
    envid = fdp.ConsumeUnicodeNoSurrogates(20) if fdp.ConsumeBool() else None
    header = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    try:
        recipients = [_recipient(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    except LocalProtocolError:
        return  # a status that is not an enhanced status code (documented)
    # the body is marked, so that a body leaking into a header-only report shows
    original = header + b"\r\n\r\n" + BODY_MARK + fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        bounce = build_dsn(
            reporting_mta=reporting_mta,
            original_reverse_path=reverse_path,
            original=original,
            tag=tag,
            recipients=recipients,
            date=DATE,
            ret=ret,  # type: ignore[arg-type]
            envid=envid,
            redact=redact,
            without_requiretls=without,  # type: ignore[arg-type]
        )
    except ValueError:
        return
    if bounce is None:
        assert reverse_path.strip() in ("", "<>") or not any(
            r.wants_report() for r in recipients
        ), (reverse_path, recipients)
        return
    assert reverse_path.strip() not in ("", "<>")
    assert bounce.reverse_path == ""
    _check_message(bounce.message, bounce.forward_path)
    if tag is TLSTag.REQUIRETLS or ret != "FULL":
        # RFC 8689 §5 ¶3 (and RET=HDRS): the header section only
        assert BODY_MARK not in bounce.message or BODY_MARK in header, "body returned"
    if bounce.redacted is not None:
        _check_message(bounce.redacted, bounce.forward_path)


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
