"""Sending one SMTP TLS Reporting report (RFC 8460 §5), blocking.

The public names are re-exported by :mod:`smtp_rtls.io.tlsrpt`, which holds
the other concern (the state directory and its queue).  Here are the two
transports, :func:`post_report` (§5.4) and :func:`report_message` (§5.3,
delivered with :func:`smtp_rtls.io.sync.deliver`), and
:class:`ReportSender`, which tries every ``rua`` destination of the policy
domain's ``_smtp._tls`` record (§3), and :class:`DKIMSigner`, the DKIM
signature §3 requires on reports sent by mail (with ``dkimpy``).
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import enum
import hashlib
import http.client
import importlib
import ipaddress
import logging
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs

from ..policy.requests import DNSQuery, Request, Result, run_lookup
from ..policy.tags import set_tls_required_no
from ..policy.tlsrpt import MEDIA_TYPE_GZIP, Report, lookup_tlsrpt
from ..session.delivery import DeliveryStatus
from ._deliver_sync import deliver
from .fulfil import SyncFulfiller, _PinnedHTTPSConnection

__all__ = [
    "DKIM_SIGNED_HEADERS",
    "DKIMSigner",
    "DestinationResult",
    "ReportOutcome",
    "ReportSender",
    "ReportStatus",
    "post_report",
    "report_message",
]

log = logging.getLogger(__name__)

_RESPONSE_LIMIT = 65536  # what is read of an HTTPS answer: only its status matters


def utc_now() -> datetime.datetime:
    """The current time, aware, in UTC."""
    return datetime.datetime.now(datetime.UTC)


def iso(moment: datetime.datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- delivering one report ---------------------------------------------------------------


class ReportStatus(enum.Enum):
    """What became of a report."""

    #: A destination accepted it (RFC 8460 §3: delivered once one accepts).
    DELIVERED = "delivered"
    #: The policy domain publishes no (valid) ``_smtp._tls`` record (§3).
    NOT_WANTED = "not-wanted"
    #: No destination accepted it this time.
    FAILED = "failed"
    #: Failed, and kept in the queue for its next attempt (§5.5).
    KEPT = "kept"
    #: Failed for a whole day of attempts (§5.5): moved to ``failed/``.
    GIVEN_UP = "given-up"


@attrs.frozen(slots=True)
class DestinationResult:
    """One ``rua`` destination tried: the ``https:`` URI or ``mailto:`` address, and how it went.

    ``detail`` is the HTTP status or the SMTP reply, or why there was none.
    """

    uri: str
    accepted: bool
    detail: str = ""


@attrs.frozen(slots=True)
class ReportOutcome:
    """One delivery attempt of ``report``: its status, each destination's result.

    ``next_attempt`` is set when the report was kept for another attempt.
    """

    report: Report
    status: ReportStatus
    destinations: tuple[DestinationResult, ...] = ()
    detail: str = ""
    next_attempt: datetime.datetime | None = None


def report_message(
    report: Report,
    to: Sequence[str],
    *,
    date: datetime.datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """The report as a mail (RFC 8460 §5.3), CRLF line ends, ``TLS-Required: No`` first.

    A ``multipart/report; report-type="tlsrpt"`` with a ``text/plain`` part
    for people and the compressed report as ``application/tlsrpt+gzip``,
    named :meth:`~smtp_rtls.policy.tlsrpt.Report.filename`.  ``From`` is the
    submitter's contact address; ``TLS-Report-Domain`` and
    ``TLS-Report-Submitter`` say whose report it is (the latter "MUST match"
    the domain of the contact address); the Subject follows the §5.3 ABNF,
    folded as its example is.  ``TLS-Required: No`` (RFC 8689 §3, through
    :func:`~smtp_rtls.policy.tags.set_tls_required_no`): §3 wants reports
    delivered "despite any TLS-related failures".  The message is not DKIM
    signed (§3 requires it): pass a :class:`DKIMSigner` as ``sign`` to
    :class:`ReportSender`.
    """
    if not to:
        raise ValueError("a report message needs at least one recipient")
    submitter = report.submitter
    gz = report.gzip()
    document = report.document()
    successes = failures = 0
    for policy in document["policies"]:
        successes += policy["summary"]["total-successful-session-count"]
        failures += policy["summary"]["total-failure-session-count"]
    text = (
        f"This is an aggregate TLS report (RFC 8460) from {submitter.domain}\r\n"
        f"({submitter.organization_name}) for {report.policy_domain}, covering\r\n"
        f"{iso(report.start)} to {iso(report.end)}: {successes} successful and\r\n"
        f"{failures} failed session(s).  The report is attached, compressed.\r\n"
    ).encode()
    if not text.isascii():
        text = text.decode().encode("ascii", "replace")
    # A boundary made from the content cannot occur in base64 or the text.
    boundary = "=_tlsrpt_" + hashlib.sha256(gz).hexdigest()[:24]
    encoded = base64.encodebytes(gz).replace(b"\n", b"\r\n")
    if message_id is None:
        message_id = email.utils.make_msgid("tlsrpt", domain=submitter.domain)
    head = [
        f"From: <{submitter.contact_info}>",
        f"To: {', '.join(f'<{address}>' for address in to)}",
        f"Date: {email.utils.format_datetime(date if date is not None else utc_now())}",
        # RFC 8460 §5.3 tlsrpt-subject, folded at its FWS as the example is.
        f"Subject: Report Domain: {report.policy_domain}",
        f" Submitter: {submitter.domain}",
        f" Report-ID: <{report.report_id}>",
        f"Message-ID: {message_id}",
        f"TLS-Report-Domain: {report.policy_domain}",
        f"TLS-Report-Submitter: {submitter.domain}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type="tlsrpt";',
        f' boundary="{boundary}"',
    ]
    parts = [
        "\r\n".join(head).encode() + b"\r\n\r\nThis is a multipart message in MIME format.\r\n",
        f"--{boundary}\r\n".encode()
        + b'Content-Type: text/plain; charset="us-ascii"\r\n'
        + b"Content-Transfer-Encoding: 7bit\r\n\r\n"
        + text,
        f"--{boundary}\r\n".encode()
        + f"Content-Type: {MEDIA_TYPE_GZIP}\r\n".encode()
        + b"Content-Transfer-Encoding: base64\r\n"
        + f'Content-Disposition: attachment;\r\n filename="{report.filename()}"\r\n\r\n'.encode()
        + encoded,
        f"--{boundary}--\r\n".encode(),
    ]
    # RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary.
    return set_tls_required_no(b"\r\n".join(parts))


def _https_context(cafile: str | None, verify: bool) -> ssl.SSLContext:
    if verify:
        return ssl.create_default_context(cafile=cafile)
    # RFC 8460 §3: submitters "MAY ignore certificate validation errors".
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _addresses(host: str, fulfil: Callable[[Request], Result]) -> list[str]:
    """``host`` itself when it is an address; else its AAAA and A records through ``fulfil``."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    if isinstance(fulfil, SyncFulfiller):
        return fulfil.addresses(host)
    found: list[str] = []
    for rdtype in ("AAAA", "A"):
        answer = fulfil(DNSQuery(host, rdtype))
        if getattr(answer, "rcode", "") == "NOERROR":
            found.extend(getattr(answer, "records", ()))
    return found


def post_report(
    url: str,
    report: Report,
    *,
    fulfil: Callable[[Request], Result],
    cafile: str | None = None,
    verify: bool = True,
    timeout: float = 60.0,
) -> DestinationResult:
    """POST ``report.gzip()`` to ``url`` (RFC 8460 §5.4); any 2xx is accepted.

    ``Content-Type: application/tlsrpt+gzip``.  The host's addresses come
    from ``fulfil`` (the configured resolver, as for MTA-STS), an address in
    the URL is used as is; redirects are not followed.  The certificate is
    verified against ``cafile`` (default: the system store) unless
    ``verify`` is False (§3 allows ignoring validation errors).  Never
    raises for network trouble: the result says what went wrong.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or 443
    except ValueError:
        return DestinationResult(url, False, "bad port in the URI")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    addresses = _addresses(host, fulfil)
    if not addresses:
        return DestinationResult(url, False, f"connect: no address for {host}")
    conn = _PinnedHTTPSConnection(host, addresses, port, timeout, _https_context(cafile, verify))
    try:
        conn.request(
            "POST",
            path,
            body=report.gzip(),
            headers={
                "Content-Type": MEDIA_TYPE_GZIP,
                "Connection": "close",
                "User-Agent": "smtp-rtls",
            },
        )
        response = conn.getresponse()
        response.read(_RESPONSE_LIMIT)
        status = f"HTTP {response.status} {response.reason}".strip()
        return DestinationResult(url, 200 <= response.status < 300, status)
    except ssl.SSLCertVerificationError as exc:
        return DestinationResult(url, False, f"certificate: {exc.verify_message or exc}")
    except TimeoutError:
        return DestinationResult(url, False, "timeout")
    except ssl.SSLError as exc:
        return DestinationResult(url, False, f"tls: {exc.reason or exc}")
    except (http.client.HTTPException, ValueError) as exc:
        return DestinationResult(url, False, f"http: {type(exc).__name__}: {exc}")
    except OSError as exc:
        return DestinationResult(url, False, f"connect: {exc.strerror or exc}")
    finally:
        conn.close()


#: The header fields :class:`DKIMSigner` signs: RFC 8460 §5.3's two fields
#: ("SHOULD be included in the DKIM signature") and those that say what the
#: report is (RFC 6376 §5.4.1's list, as far as a report has them).
DKIM_SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "TLS-Report-Domain",
    "TLS-Report-Submitter",
    "MIME-Version",
    "Content-Type",
)

# PKCS#8 (RFC 8410) of an Ed25519 private key: this prefix, then the 32-byte seed.
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
# A small message signed once when the signer is made, so that a bad key or a
# missing module is said then, not when the first report is mailed.
_PROBE = b"From: <probe@invalid>\r\nSubject: probe\r\n\r\nprobe\r\n"


def _dkim_key(private_key: bytes) -> tuple[bytes, bytes]:
    """The signature algorithm of ``private_key`` and the key as ``dkimpy`` takes it.

    RSA: PEM, PKCS#1 or PKCS#8, as is.  Ed25519: a PKCS#8 PEM (``openssl
    genpkey -algorithm ed25519``), or the base64 seed that ``dknewkey``
    writes; ``dkimpy`` takes the base64 seed.
    """
    data = private_key.strip()
    found = _PEM.search(data)
    if found is None:
        try:
            seed = base64.b64decode(data, validate=True)
        except ValueError:
            seed = b""
        if len(seed) != 32:
            raise ValueError("not a PEM private key, nor the base64 seed of an Ed25519 key")
        return b"ed25519-sha256", base64.b64encode(seed)
    try:
        der = base64.b64decode(b"".join(found.group(2).split()), validate=True)
    except ValueError:
        raise ValueError("the PEM private key is not valid base64") from None
    if found.group(1) == b"PRIVATE KEY" and der.startswith(_ED25519_PKCS8) and len(der) == 48:
        return b"ed25519-sha256", base64.b64encode(der[len(_ED25519_PKCS8) :])
    if found.group(1) in (b"RSA PRIVATE KEY", b"PRIVATE KEY"):
        return b"rsa-sha256", data
    raise ValueError(f"a {found.group(1).decode()} is neither an RSA nor an Ed25519 key")


class DKIMSigner:
    """Signs report mail with DKIM (RFC 6376) as RFC 8460 §3 requires: the ``sign`` hook of
    :class:`ReportSender`.

    ``domain`` is the signing domain (``d=``), the reporting domain (the
    domain of the submitter's contact address); ``selector`` (``s=``) names
    the key record, ``SELECTOR._domainkey.DOMAIN``, which should declare the
    service type (§3: "s=tlsrpt").  ``private_key_pem`` is an RSA key in PEM
    (PKCS#1 or PKCS#8: ``rsa-sha256``) or an Ed25519 key, a PKCS#8 PEM or the
    base64 seed ``dknewkey`` writes (``ed25519-sha256``, which ``dkimpy``
    signs only with ``pynacl`` installed).

    The signature is relaxed/relaxed, has no ``l=`` tag (§3: "must not use the
    "l=" attribute") and covers ``DKIM_SIGNED_HEADERS``
    (``headers`` to choose others; ``From`` is always needed).  Calling the
    signer returns the message with a ``DKIM-Signature`` field put first.

    Needs the optional ``dkimpy`` (``pip install 'smtp_rtls[tlsrpt]'``):
    :class:`ImportError` without it.  A key that cannot sign is a
    :class:`ValueError`; both are raised here, not when a report is mailed.
    """

    def __init__(
        self,
        domain: str,
        selector: str,
        private_key_pem: bytes,
        *,
        headers: Sequence[str] = DKIM_SIGNED_HEADERS,
    ) -> None:
        """Check the key by signing a probe message."""
        try:
            # Imported by name: dkimpy is optional and has no type information.
            dkim: Any = importlib.import_module("dkim")
        except ImportError:
            raise ImportError(
                "DKIM signing needs the dkimpy package: pip install 'smtp_rtls[tlsrpt]'",
                name="dkim",
            ) from None
        self._dkim: Any = dkim
        self.domain = domain.rstrip(".").lower()
        self.selector = selector
        if not self.domain or not self.selector:
            raise ValueError("DKIM signing needs a domain and a selector")
        if "from" not in (h.lower() for h in headers):
            raise ValueError("the From header field must be signed (RFC 6376 §5.4)")
        self.headers = tuple(headers)
        self.algorithm, self._key = _dkim_key(private_key_pem)
        try:
            self(_PROBE)
        except ImportError as exc:  # dkimpy's NaClNotFoundError: no pynacl for Ed25519
            raise ImportError(f"Ed25519 DKIM signing needs pynacl: {exc}", name="nacl") from None
        except dkim.DKIMException as exc:
            raise ValueError(f"cannot sign with this DKIM key: {exc}") from None

    def __call__(self, message: bytes) -> bytes:
        """``message`` with a ``DKIM-Signature`` field first (CRLF line ends kept)."""
        signature: bytes = self._dkim.sign(
            message,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=self.algorithm,
            include_headers=[h.encode("ascii") for h in self.headers],
            length=False,  # RFC 8460 §3: no "l="
            tlsrpt=True,
        )
        return signature + message


class ReportSender:
    """Delivers reports to the destinations their policy domain publishes (RFC 8460 §3, §5).

    ``fulfil`` answers DNS (the ``_smtp._tls`` record, the MX hosts of a
    ``mailto:`` address, the host of an ``https:`` URI) and is the
    ``fulfil`` of :func:`smtp_rtls.io.sync.deliver`.  ``local_hostname`` is
    the EHLO name; ``cafile`` the trust store for HTTPS and SMTP;
    ``verify_https`` False ignores HTTPS certificate errors (§3 allows it);
    ``mx_port`` and ``timeouts`` go to ``deliver``; ``timeout`` bounds each
    HTTPS POST.  ``mail_from`` is the reverse path of report mail (default:
    the submitter's contact address).  ``sign`` is called with each report
    mail and returns it signed: RFC 8460 §3 requires a DKIM signature (with
    an ``s=tlsrpt`` key) on reports sent by mail; :class:`DKIMSigner` makes
    it.  Without ``sign`` mail goes unsigned, and receivers "MUST" ignore it.
    """

    def __init__(
        self,
        fulfil: Callable[[Request], Result],
        *,
        local_hostname: str,
        cafile: str | None = None,
        verify_https: bool = True,
        mx_port: int | None = None,
        timeouts: Mapping[str, float] | None = None,
        timeout: float = 60.0,
        mail_from: str | None = None,
        sign: Callable[[bytes], bytes] | None = None,
        clock: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        """Nothing is looked up or sent before :meth:`send`."""
        self.fulfil = fulfil
        self.local_hostname = local_hostname
        self.cafile = cafile
        self.verify_https = verify_https
        self.mx_port = mx_port
        self.timeouts = timeouts
        self.timeout = timeout
        self.mail_from = mail_from
        self.sign = sign
        self.clock = clock

    def send(self, report: Report) -> ReportOutcome:
        """Look up the policy domain's record and try every destination, in order.

        DELIVERED when at least one accepted the report (§3: "the report
        SHOULD NOT be considered successfully delivered until one of the
        endpoints accepts"), NOT_WANTED without a valid record, FAILED
        otherwise (a DNS failure included).
        """
        found = run_lookup(lookup_tlsrpt(report.policy_domain), self.fulfil)
        if found.record is None:
            status = ReportStatus.FAILED if found.temporary_failure else ReportStatus.NOT_WANTED
            return ReportOutcome(
                report, status, detail=f"_smtp._tls.{found.domain}: {found.error}"
            )
        results: list[DestinationResult] = []
        for uri in found.record.rua:
            if uri.scheme == "https":
                results.append(
                    post_report(
                        uri.uri,
                        report,
                        fulfil=self.fulfil,
                        cafile=self.cafile,
                        verify=self.verify_https,
                        timeout=self.timeout,
                    )
                )
            else:
                results.extend(self.mail(report, uri.addresses))
        accepted = any(r.accepted for r in results)
        return ReportOutcome(
            report,
            ReportStatus.DELIVERED if accepted else ReportStatus.FAILED,
            tuple(results),
        )

    def mail(self, report: Report, addresses: Sequence[str]) -> list[DestinationResult]:
        """Mail ``report`` to ``addresses`` (RFC 8460 §5.3), one delivery per domain."""
        by_domain: dict[str, list[str]] = {}
        for address in addresses:
            by_domain.setdefault(address.rpartition("@")[2].lower().rstrip("."), []).append(
                address
            )
        content = report_message(report, addresses, date=self.clock())
        if self.sign is not None:
            content = self.sign(content)
        sender = self.mail_from if self.mail_from is not None else report.submitter.contact_info
        results: list[DestinationResult] = []
        for domain, rcpts in by_domain.items():
            try:
                delivery = deliver(
                    sender,
                    rcpts,
                    content,
                    domain,
                    local_hostname=self.local_hostname,
                    fulfil=self.fulfil,
                    cafile=self.cafile,
                    port=self.mx_port,
                    timeouts=self.timeouts,
                )
            except Exception as exc:  # a bad address, a bug: this destination failed
                log.exception("mailing the TLSRPT report to %s failed", domain)
                results.extend(
                    DestinationResult(f"mailto:{a}", False, f"{type(exc).__name__}: {exc}")
                    for a in rcpts
                )
                continue
            for outcome in delivery.recipients:
                reply = outcome.reply
                detail = f"{reply.code} {reply.text}".strip() if reply is not None else ""
                if outcome.reason is not None:
                    detail += f" ({outcome.reason.value})"
                if outcome.host:
                    detail += f" from {outcome.host}"
                results.append(
                    DestinationResult(
                        f"mailto:{outcome.recipient}",
                        outcome.status is DeliveryStatus.DELIVERED,
                        detail.replace("\n", " "),
                    )
                )
        return results
