"""Non-delivery reports: RFC 3464 DSNs that follow RFC 8689 §5.

:func:`build_dsn` writes a ``multipart/report; report-type=delivery-status``
message (RFC 3464, RFC 6522) by hand, CRLF line ends throughout (a bare CR or
LF of the original becomes CRLF, as the wire core's ``"normalise"`` setting
does), and returns it with the envelope it must travel in (:class:`Bounce`):

- the reverse path is null (RFC 5321 §4.5.5), and a message whose own reverse
  path is null gets no report at all: a bounce is never bounced (RFC 5321
  §4.5.5, RFC 3461 §6.2);
- recipients that asked for no failure report (``NOTIFY=NEVER``, or a NOTIFY
  list without ``FAILURE``, RFC 3461 §4.1) are left out;
- a REQUIRETLS original is returned as headers only, whatever RET said
  (RFC 8689 §5 ¶3: "as if RET=HDRS was present"; RET=FULL is disregarded),
  and the report is tagged REQUIRETLS (§5 ¶1);
- a tagged report is *preferred*, never *required*, to travel with
  REQUIRETLS: §5 ¶3 says it SHOULD NOT be discarded when the next hop does
  not offer REQUIRETLS (:attr:`Bounce.requiretls_preferred`;
  :attr:`Bounce.requiretls_required` is always False);
- a ``TLS-Required: No`` original passes its header on to the report, as
  Postfix does, so the report is TLS-optional too (never for a REQUIRETLS
  original, where the header was ignored, §4.1 ¶2).

The returned header section ends at the first line that is not a header
field (:func:`~smtp_rtls.policy.tags.header_section`), so body text never
leaks into a headers-only report, even from a message with no empty line.

Redaction, safe by default
--------------------------
A report about a REQUIRETLS message MUST carry REQUIRETLS "unless redacted"
(§5 ¶1), yet it is sent anyway where the return path cannot carry it (§5 ¶3),
and §5 ¶4 warns that information may then leak.  So a tagged report comes in
two variants, and :meth:`Bounce.message_for` picks the one for the session:

- :attr:`Bounce.message`, sent with REQUIRETLS: the failed message's header
  section;
- :attr:`Bounce.redacted`, sent without it: of the original header, only the
  fields that identify the message (``Message-ID``, ``Date``); no subject, no
  other field, no recipient but the ones the report is about.

``without_requiretls="headers"`` opts out of the redacted variant (the whole
header section then goes out without REQUIRETLS, §5 ¶4's leak accepted);
``redact=True`` sends the redacted report only, untagged, as Postfix's
``requiretls_redact_dsn = yes`` does.
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
# A line end as the report writes it: CRLF, and each bare CR or bare LF, which
# becomes CRLF (RFC 5322 §2.3: CR and LF "MUST only occur together as CRLF").
_LINE_END = re.compile(rb"\r\n|\r|\n")
# One field of a CRLF-only header section, its folded lines included
# (RFC 5322 §2.2, §2.2.3): the name, then everything up to a CRLF that is not
# followed by WSP.
_FIELD = re.compile(rb"(?P<name>[!-9;-~]+)[ \t]*:.*?\r\n(?![ \t])", re.DOTALL)
# What identifies the failed message in a redacted report (RFC 5322 §3.6.4
# Message-ID, §3.6.1 Date): nothing about its content or its recipients.
_IDENTIFYING = (b"message-id", b"date")


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

    ``message`` is the report to send with REQUIRETLS; ``redacted``, when
    set, the one to send without it (RFC 8689 §5; see the module docstring).
    Send :meth:`message_for` of the session, not ``message`` itself.
    """

    forward_path: str
    message: bytes
    tag: TLSTag
    reverse_path: str = ""
    redacted: bytes | None = None

    @property
    def requiretls_preferred(self) -> bool:
        """Send REQUIRETLS where offered (the report is tagged REQUIRETLS)."""
        return self.tag is TLSTag.REQUIRETLS

    @property
    def requiretls_required(self) -> bool:
        """Always False: RFC 8689 §5 ¶3, a bounce is not discarded for lack of REQUIRETLS."""
        return False

    def message_for(self, requiretls: bool) -> bytes:
        """The report to send on a session whose MAIL FROM carries REQUIRETLS or not.

        ``requiretls`` is the PROCEED verdict's ``requiretls``.  With it, the
        report is ``message``; without it, ``redacted`` when there is one
        (a tagged report whose return path cannot carry REQUIRETLS, RFC 8689
        §5 ¶3-4), else ``message``.
        """
        if requiretls or self.redacted is None:
            return self.message
        return self.redacted


def _is_null(path: str) -> bool:
    return path.strip() in ("", "<>")


def _address_field(value: str, default_type: str = "rfc822") -> str:
    # Checked before any strip: the human-readable part quotes the address as
    # given, and a CR or LF around it would be a bare line end there
    # (RFC 5322 §2.3), or a line of its own (a MIME boundary, RFC 2046 §5.1.1).
    _field_text(value, "address")
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


def _human_text(
    reporting_mta: str, recipients: Sequence[RecipientStatus], tag: TLSTag, redacted: bool
) -> bytes:
    lines = [
        f"This is the mail system at {reporting_mta}.",
        "",
        "Your message could not be delivered to the following recipients:",
        "",
    ]
    for r in recipients:
        why = r.diagnostic.text.replace("\n", " ") if r.diagnostic else str(r.status)
        lines.append(f"  <{r.final_recipient}>: {why}")
    if redacted:
        lines += [
            "",
            "The message required TLS (RFC 8689 REQUIRETLS) and this report may travel",
            "without it: of the message's header, only its Message-ID and Date are returned.",
        ]
    elif tag is TLSTag.REQUIRETLS:
        lines += [
            "",
            "The message required TLS (RFC 8689 REQUIRETLS); only its header is returned.",
        ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")


def _crlf(data: bytes) -> bytes:
    """``data`` with CRLF line ends only, the last line ended too."""
    data = _LINE_END.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def _returned_header(original: bytes) -> bytes:
    """The header section of ``original``, CRLF only (RFC 8689 §5 ¶3, RET=HDRS)."""
    # Cut first, so that a large body is never copied; then cut again, since a
    # bare CR that became CRLF may end the header section earlier (a line of
    # body text behind it).  The second cut never goes past the first.
    return _crlf(header_section(_crlf(header_section(original))))


def _identifying_fields(head: bytes) -> bytes:
    """The first Message-ID and Date fields of a CRLF-only header section, in order."""
    kept: dict[bytes, bytes] = {}
    for m in _FIELD.finditer(head):
        name = m["name"].lower()
        if name in _IDENTIFYING and name not in kept:
            kept[name] = m[0]
    return b"".join(kept.values())


def _report(
    *,
    reporting_mta: str,
    forward_path: str,
    date: datetime.datetime,
    message_id: str,
    human: bytes,
    status_type: str,
    status_body: bytes,
    returned: bytes,
    returned_full: bool,
    tls_optional: bool,
) -> bytes:
    """The multipart/report message (RFC 6522) around its three parts."""
    # A boundary derived from the content, checked not to occur in it.
    boundary = "=_dsn_" + hashlib.sha256(returned + status_body).hexdigest()[:24]
    while boundary.encode() in returned:
        boundary += "_"
    header = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{forward_path}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {_date(date)}",
        f"Message-ID: {message_id}",
        # RFC 3834 §5: a report is an automatic response.
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
    ]
    if tls_optional:
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
    return ("\r\n".join(header) + "\r\n\r\n").encode("utf-8") + body


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
    without_requiretls: Literal["redacted", "headers"] = "redacted",
) -> Bounce | None:
    """Build the delivery status notification for ``recipients`` of ``original``.

    Returns None when no report is due: the original had a null reverse path
    (RFC 5321 §4.5.5) or every recipient declined reports (RFC 3461 §4.1).
    ``original`` may be the whole message or its header section; ``ret`` is
    the MAIL RET parameter (None: headers only, our choice), ``envid`` its
    ENVID (xtext-decoded).  ``date`` is the report's Date: the policy module
    reads no clock.

    For a REQUIRETLS original (RFC 8689 §5), ``without_requiretls`` says what
    the report returns when it travels without REQUIRETLS:

    - ``"redacted"`` (the default): only the original's ``Message-ID`` and
      ``Date`` fields, in :attr:`Bounce.redacted`; send
      :meth:`Bounce.message_for` of the session;
    - ``"headers"``: its whole header section, as with REQUIRETLS (§5 ¶4:
      information may leak).

    ``redact=True`` makes the redacted report the only one, untagged
    (:attr:`Bounce.message`; logged at WARNING level).
    """
    if redact and without_requiretls != "redacted":
        raise ValueError("redact=True sends the redacted report only; it has no unredacted form")
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

    requiretls = tag is TLSTag.REQUIRETLS
    if requiretls:
        # RFC 8689 §5 ¶3: "as if RET=HDRS was present"; RET=FULL disregarded.
        returned_full = False
        report_tag = TLSTag.DEFAULT if redact else TLSTag.REQUIRETLS
        if redact:
            logger.warning("DSN for a REQUIRETLS message sent without REQUIRETLS (redacted)")
    else:
        returned_full = ret == "FULL"
        report_tag = tag
    returned = _crlf(original) if returned_full else _returned_header(original)

    global_ = not all((r.final_recipient + (r.original_recipient or "")).isascii() for r in wanted)
    status_type = "message/global-delivery-status" if global_ else "message/delivery-status"
    per_message = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid is not None:
        per_message.append(f"Original-Envelope-Id: {_field_text(envid, 'ENVID')}")
    if arrival_date is not None:
        per_message.append(f"Arrival-Date: {_date(arrival_date)}")
    groups = ["\r\n".join(per_message)] + ["\r\n".join(_per_recipient(r)) for r in wanted]
    status_body = ("\r\n\r\n".join(groups) + "\r\n").encode("utf-8")

    if message_id is None:
        seed = hashlib.sha256(returned + status_body).hexdigest()[:24]
        message_id = f"<{seed}.dsn@{reporting_mta}>"
    message_id = _field_text(message_id, "Message-ID")

    def report(returned: bytes, *, redacted: bool) -> bytes:
        return _report(
            reporting_mta=reporting_mta,
            forward_path=forward_path,
            date=date,
            message_id=message_id,
            human=_human_text(reporting_mta, wanted, tag, redacted),
            status_type=status_type,
            status_body=status_body,
            returned=returned,
            returned_full=returned_full,
            tls_optional=report_tag is TLSTag.TLS_OPTIONAL,
        )

    if requiretls and redact:
        return Bounce(
            forward_path, report(_identifying_fields(returned), redacted=True), report_tag
        )
    redacted = None
    if requiretls and without_requiretls == "redacted":
        # RFC 8689 §5 ¶1 "unless redacted", ¶4: what may travel in the clear
        # says which message failed, and nothing of what it said or to whom.
        redacted = report(_identifying_fields(returned), redacted=True)
    return Bounce(forward_path, report(returned, redacted=False), report_tag, redacted=redacted)
