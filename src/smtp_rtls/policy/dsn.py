"""Non-delivery reports: RFC 3464 DSNs that follow RFC 8689 §5.

:func:`build_dsn` writes a ``multipart/report; report-type=delivery-status``
message (RFC 3464, RFC 6522) by hand, CRLF line ends throughout, and returns it
with the envelope it must travel in (:class:`Bounce`):

- the reverse path is null (RFC 5321 §4.5.5), and a message whose own reverse
  path is null gets no report at all: a bounce is never bounced (RFC 5321
  §4.5.5, RFC 3461 §6.2);
- recipients that asked for no failure report (``NOTIFY=NEVER``, or a NOTIFY
  list without ``FAILURE``, RFC 3461 §4.1) are left out;
- a REQUIRETLS original is returned as headers only, whatever RET said
  (RFC 8689 §5 ¶3: "as if RET=HDRS was present"; RET=FULL is disregarded);
  its report is tagged REQUIRETLS (§5 ¶1) unless ``redact=True``, which
  sends it untagged (headers only either way);
- a tagged report is *preferred*, never *required*, to travel with
  REQUIRETLS: §5 ¶3 says it SHOULD NOT be discarded when the next hop does
  not offer REQUIRETLS, so it then goes without the parameter
  (:attr:`Bounce.requiretls_preferred`; :attr:`Bounce.requiretls_required` is
  always False);
- a ``TLS-Required: No`` original passes its header on to the report, as
  Postfix does, so the report is TLS-optional too (never for a REQUIRETLS
  original, where the header was ignored, §4.1 ¶2).

Redaction default: **off**.  Postfix defaults to ``requiretls_redact_dsn =
yes`` because its tagged bounces are held to REQUIRETLS and may be lost; ours
never are (above), so keeping the tag costs no delivery and protects the
report wherever the return path can.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

from .._reply import EnhancedStatus, Reply
from .tags import TLSTag, header_section

__all__ = ["Bounce", "RecipientStatus", "build_dsn"]

logger = logging.getLogger(__name__)

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_END = re.compile(rb"\r?\n")


def _field_text(value: str, what: str) -> str:
    # A CR or LF here would let an address or a server's text forge fields.
    if _CONTROL.search(value):
        raise ValueError(f"control character in {what}: {value!r}")
    return value


def _to_status(value: EnhancedStatus | str) -> EnhancedStatus:
    return value if isinstance(value, EnhancedStatus) else EnhancedStatus.parse(value)


def _to_notify(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(x.upper() for x in value)


@attrs.frozen(slots=True)
class RecipientStatus:
    """The per-recipient part of a DSN (RFC 3464 §2.3).

    ``original_recipient`` is the ORCPT value, ``"addr-type;address"``
    (RFC 3461 §4.2); a bare address is taken as ``rfc822``.  ``diagnostic``
    is the reply that explains the failure (``Diagnostic-Code: smtp; ...``).
    ``notify`` is the RCPT NOTIFY list, None when absent.
    """

    final_recipient: str
    status: EnhancedStatus = attrs.field(converter=_to_status)
    action: Action = "failed"
    original_recipient: str | None = None
    remote_mta: str | None = None
    diagnostic: Reply | None = None
    last_attempt: datetime.datetime | None = None
    notify: frozenset[str] | None = attrs.field(default=None, converter=_to_notify)

    def wants_report(self) -> bool:
        """RFC 3461 §4.1: NEVER, or a list without this kind of event, means no DSN."""
        if self.notify is None:
            return True
        wanted = {"failed": "FAILURE", "delayed": "DELAY"}.get(self.action, "SUCCESS")
        return "NEVER" not in self.notify and wanted in self.notify


@attrs.frozen(slots=True)
class Bounce:
    """A report and its envelope.

    ``reverse_path`` is always ``""`` (null, RFC 5321 §4.5.5);
    ``forward_path`` is the failed message's reverse path.  ``tag`` is the
    report's own tag.  ``requiretls_preferred``: send MAIL FROM with
    REQUIRETLS where the next hop offers it after TLS, and without it
    elsewhere (RFC 8689 §5 ¶3); plan it with ``plan_delivery(...,
    bounce=True)``.  ``requiretls_required`` is always False: a report is
    never held back for lack of REQUIRETLS.
    """

    forward_path: str
    message: bytes
    tag: TLSTag
    reverse_path: str = ""

    @property
    def requiretls_preferred(self) -> bool:
        """Send REQUIRETLS where offered (the report is tagged REQUIRETLS)."""
        return self.tag is TLSTag.REQUIRETLS

    @property
    def requiretls_required(self) -> bool:
        """Always False: RFC 8689 §5 ¶3, a bounce is not discarded for lack of REQUIRETLS."""
        return False


def _is_null(path: str) -> bool:
    return path.strip() in ("", "<>")


def _address_field(value: str, default_type: str = "rfc822") -> str:
    addr_type, sep, address = value.partition(";")
    if not sep:
        addr_type, address = default_type, value
    address = address.strip().removeprefix("<").removesuffix(">")
    if not address.isascii():
        # RFC 6533 §3: a UTF-8 address is typed "utf-8".
        addr_type = "utf-8"
    return f"{_field_text(addr_type.strip(), 'address type')}; {_field_text(address, 'address')}"


def _date(value: datetime.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("dates in a DSN need a time zone")
    return email.utils.format_datetime(value)


def _diagnostic(reply: Reply) -> str:
    status = f"{reply.enhanced} " if reply.enhanced is not None else ""
    # RFC 3464 §2.3.6: the reply text; a multi-line reply folds one line per line.
    return "\r\n ".join(f"{reply.code} {status}{line}".rstrip() for line in reply.lines)


def _per_recipient(r: RecipientStatus) -> list[str]:
    fields = []
    if r.original_recipient is not None:
        fields.append(f"Original-Recipient: {_address_field(r.original_recipient)}")
    fields += [
        f"Final-Recipient: {_address_field(r.final_recipient)}",
        f"Action: {r.action}",
        f"Status: {r.status}",
    ]
    if r.remote_mta is not None:
        fields.append(f"Remote-MTA: dns; {_field_text(r.remote_mta, 'Remote-MTA')}")
    if r.diagnostic is not None:
        fields.append(f"Diagnostic-Code: smtp; {_diagnostic(r.diagnostic)}")
    if r.last_attempt is not None:
        fields.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
    return fields


def _human_text(reporting_mta: str, recipients: Sequence[RecipientStatus], tag: TLSTag) -> str:
    lines = [
        f"This is the mail system at {reporting_mta}.",
        "",
        "Your message could not be delivered to the following recipients:",
        "",
    ]
    for r in recipients:
        why = r.diagnostic.text.replace("\n", " ") if r.diagnostic else str(r.status)
        lines.append(f"  <{r.final_recipient}>: {why}")
    if tag is TLSTag.REQUIRETLS:
        lines += [
            "",
            "The message required TLS (RFC 8689 REQUIRETLS); only its header is returned.",
        ]
    return "\r\n".join(lines) + "\r\n"


def build_dsn(
    *,
    reporting_mta: str,
    original_reverse_path: str,
    original: bytes,
    tag: TLSTag,
    recipients: Sequence[RecipientStatus],
    date: datetime.datetime,
    ret: Literal["FULL", "HDRS"] | None = None,
    envid: str | None = None,
    arrival_date: datetime.datetime | None = None,
    redact: bool = False,
    message_id: str | None = None,
) -> Bounce | None:
    """Build the delivery status notification for ``recipients`` of ``original``.

    Returns None when no report is due: the original had a null reverse path
    (RFC 5321 §4.5.5) or every recipient declined reports (RFC 3461 §4.1).
    ``original`` may be the whole message or its header section; ``ret`` is
    the MAIL RET parameter (None: headers only, our choice), ``envid`` its
    ENVID (xtext-decoded).  ``date`` is the report's Date: the policy module
    reads no clock.
    """
    if _is_null(original_reverse_path):
        # RFC 5321 §4.5.5 / RFC 3461 §6.2: notifications are never sent about
        # notifications, or two MTAs could bounce mail between them forever.
        logger.info("no DSN: the failed message had a null reverse path")
        return None
    wanted = [r for r in recipients if r.wants_report()]
    if not wanted:
        return None
    reporting_mta = _field_text(reporting_mta, "Reporting-MTA")
    forward_path = _field_text(original_reverse_path.strip().strip("<>"), "reverse path")

    if tag is TLSTag.REQUIRETLS:
        # RFC 8689 §5 ¶3: "as if RET=HDRS was present"; RET=FULL disregarded.
        returned_full = False
        report_tag = TLSTag.DEFAULT if redact else TLSTag.REQUIRETLS
        if redact:
            logger.warning("DSN for a REQUIRETLS message sent without REQUIRETLS (redacted)")
    else:
        returned_full = ret == "FULL"
        report_tag = tag

    head = header_section(original)
    returned = original if returned_full else head
    returned = _LINE_END.sub(b"\r\n", returned)
    if returned and not returned.endswith(b"\r\n"):
        returned += b"\r\n"

    global_ = not all((r.final_recipient + (r.original_recipient or "")).isascii() for r in wanted)
    status_type = "message/global-delivery-status" if global_ else "message/delivery-status"
    per_message = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid is not None:
        per_message.append(f"Original-Envelope-Id: {_field_text(envid, 'ENVID')}")
    if arrival_date is not None:
        per_message.append(f"Arrival-Date: {_date(arrival_date)}")
    groups = ["\r\n".join(per_message)] + ["\r\n".join(_per_recipient(r)) for r in wanted]
    status_body = ("\r\n\r\n".join(groups) + "\r\n").encode("utf-8")

    human = _human_text(reporting_mta, wanted, tag).encode("ascii", "replace")
    # A boundary derived from the content, checked not to occur in it.
    seed = hashlib.sha256(returned + status_body).hexdigest()[:24]
    boundary = f"=_dsn_{seed}"
    while boundary.encode() in returned:
        boundary += "_"
    if message_id is None:
        message_id = f"<{seed}.dsn@{reporting_mta}>"

    header = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{forward_path}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {_date(date)}",
        f"Message-ID: {_field_text(message_id, 'Message-ID')}",
        # RFC 3834 §5: a report is an automatic response.
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
    ]
    if report_tag is TLSTag.TLS_OPTIONAL:
        # Postfix's choice, and ours: the report is as TLS-optional as its original.
        header.append("TLS-Required: No")

    eight_bit = any(b > 0x7F for b in returned)
    cte = "Content-Transfer-Encoding: 8bit\r\n" if eight_bit else ""
    returned_type = "message/rfc822" if returned_full else "text/rfc822-headers"
    parts = [
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + human,
        f"Content-Type: {status_type}\r\n\r\n".encode() + status_body,
        f"Content-Type: {returned_type}\r\n{cte}\r\n".encode() + returned,
    ]
    delimiter = f"--{boundary}\r\n".encode()
    body = b"This is a MIME-formatted delivery status notification.\r\n\r\n"
    for part in parts:
        body += delimiter + part
        # RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary.
        body += b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    message = ("\r\n".join(header) + "\r\n\r\n").encode("utf-8") + body
    return Bounce(forward_path, message, report_tag)
