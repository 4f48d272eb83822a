"""SMTP TLS Reporting (RFC 8460): the ``_smtp._tls`` record, session results, reports.

Section numbers are RFC 8460's; the text on disk is its final draft
(draft-ietf-uta-smtp-tlsrpt-23).  Where the RFC differs from that draft it is
followed: the result type ``sts-policy-fetch-error`` (§4.3.2.2) and
"mx-host" as an array of patterns (§4.4).

Three pieces, all pure:

* **The reporting policy** (§3).  :func:`lookup_tlsrpt` is a
  :data:`~smtp_rtls.policy.requests.Lookup`: it yields a TXT query for
  ``_smtp._tls.<policy domain>``, the same :class:`~smtp_rtls.policy.DNSQuery`
  MTA-STS asks for its record, so every fulfiller answers it unchanged, and
  returns a :class:`TLSRPTOutcome` holding the :class:`TLSRPTRecord` (its
  ``rua`` destinations) or why there is none.
* **Session results** (§4.2, §4.3).  A :class:`SessionResult` records one
  delivery session: success, or failure with its :class:`ResultType`, under
  the :class:`AppliedPolicy` (``tlsa``, ``sts`` or ``no-policy-found``).
  :func:`session_result` makes one from a delivery plan and a
  :class:`~smtp_rtls.policy.Verdict`, through the one table
  :data:`RESULT_TYPES`.  Results turn into one line of JSON each and back
  (:meth:`SessionResult.to_json`, :func:`read_session_lines`), so a state
  directory can collect them through the day.
* **Reports** (§4.4, §5.1, §5.2).  :func:`aggregate` turns session results
  into one :class:`Report` per policy domain and UTC day, named and
  compressed as the RFC says, byte for byte the same for the same results.

Sending the reports (mail with a DKIM signature, §3 and §5.3, or an HTTPS
POST, §5.4) is I/O and is not done here.
"""

from __future__ import annotations

import datetime
import enum
import logging
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal
from urllib.parse import unquote, urlsplit

import attrs

from ._tlsrpt_report import (
    AppliedPolicy,
    PolicyType,
    Report,
    ReportSubmitter,
    ResultType,
    SessionResult,
    aggregate,
    gzip_report,
    report_filename,
)
from .codes import Reason
from .mtasts import STSOutcome
from .mx import normalize_name
from .plan import Action, DeliveryPlan, HandshakeFailure, Security, Verdict
from .requests import DNSAnswer, DNSQuery, Lookup

__all__ = [
    "MEDIA_TYPE_GZIP",
    "MEDIA_TYPE_JSON",
    "NOT_TLS_FAILURES",
    "REASON_CODE_LIMIT",
    "RESULT_TYPES",
    "AppliedPolicy",
    "DamagedLine",
    "NotATLSFailure",
    "PolicyType",
    "Report",
    "ReportSubmitter",
    "ReportURI",
    "ResultType",
    "SessionLog",
    "SessionResult",
    "TLSRPTError",
    "TLSRPTOutcome",
    "TLSRPTRecord",
    "aggregate",
    "applied_policy",
    "gzip_report",
    "lookup_tlsrpt",
    "read_session_lines",
    "report_filename",
    "select_tlsrpt_record",
    "session_result",
    "sts_failure",
]

log = logging.getLogger(__name__)

#: RFC 8460 §6.4: the media type of a report as JSON (§5.3, §5.4).
MEDIA_TYPE_JSON = "application/tlsrpt+json"
#: RFC 8460 §6.5: the media type of a report compressed with GZIP (§5.2).
MEDIA_TYPE_GZIP = "application/tlsrpt+gzip"

# --- the reporting policy, RFC 8460 §3 -------------------------------------------------

# tlsrpt-version = %s"v=TLSRPTv1", then field-delim = *WSP ";" *WSP.
_VERSION = re.compile(r"v=TLSRPTv1[ \t]*;")
# tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
# tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# What may follow "scheme:" in an RFC 3986 URI (unreserved, pct-encoded,
# gen-delims, sub-delims), less ",", "!" and ";": RFC 8460 §3 says those
# "MUST be encoded" in a tlsrpt-uri.
_URI_REST = re.compile(r"(?:[A-Za-z0-9._~:/?#\[\]@$&'()*+=-]|%[0-9A-Fa-f]{2})+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MAILBOX = re.compile(rf"[^@\s]+@{_LABEL}(?:\.{_LABEL})*\.?")


class TLSRPTError(ValueError):
    """A ``_smtp._tls`` TXT record that does not follow RFC 8460 §3, or no usable one."""


@attrs.frozen(slots=True)
class ReportURI:
    """One ``rua`` destination (RFC 8460 §3): a ``mailto:`` or an ``https:`` URI.

    ``uri`` is the URI as published; ``addresses`` are the mailboxes of a
    ``mailto:`` URI, percent-decoded (RFC 6068), and empty for ``https:``.
    """

    uri: str
    scheme: Literal["mailto", "https"]
    addresses: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.uri


def _parse_uri(text: str) -> ReportURI | None:
    """A ``rua`` URI; None for a valid URI of a scheme other than mailto and https."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme) or not _URI_REST.fullmatch(rest):
        raise TLSRPTError(
            f"rua: not a URI, or a ',', '!' or ';' not percent-encoded (RFC 8460 §3): {text!r}"
        )
    # RFC 3986 §3.1: schemes compare case-insensitively.
    scheme = scheme.lower()
    if scheme == "mailto":
        # RFC 6068 §2: mailto:addr-spec[,addr-spec...][?hfields]
        to = unquote(rest.partition("?")[0])
        addresses = tuple(a.strip() for a in to.split(","))
        if not all(_MAILBOX.fullmatch(a) for a in addresses):
            raise TLSRPTError(f"rua: mailto: URI without a valid address: {text!r}")
        return ReportURI(text, "mailto", addresses)
    if scheme == "https":
        parts = urlsplit(text)
        try:
            _ = parts.port  # raises ValueError for a port that is not a number
        except ValueError:
            raise TLSRPTError(f"rua: https: URI with a bad port: {text!r}") from None
        if not rest.startswith("//") or not parts.hostname:
            raise TLSRPTError(f"rua: https: URI without a host: {text!r}")
        return ReportURI(text, "https")
    # RFC 8460 §3: "Two URI schemes are supported: mailto and https".
    return None


def _parse_rua(value: str) -> tuple[tuple[ReportURI, ...], tuple[str, ...]]:
    # tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
    usable: list[ReportURI] = []
    ignored: list[str] = []
    for text in value.split(","):
        text = text.strip(" \t")
        if not text:
            raise TLSRPTError(f"rua: empty URI in {value!r}")
        uri = _parse_uri(text)
        if uri is None:
            ignored.append(text)
        else:
            usable.append(uri)
    return tuple(usable), tuple(ignored)


@attrs.frozen(slots=True)
class TLSRPTRecord:
    """The ``_smtp._tls`` TXT record (RFC 8460 §3): where reports go.

    ``rua`` holds the ``mailto:`` and ``https:`` destinations in the order
    published (the sender "MAY attempt to deliver to each", §3); ``ignored``
    the URIs of other schemes; ``extensions`` the unknown fields, which
    "SHALL be ignored" (§3) and are kept only to be looked at.
    """

    rua: tuple[ReportURI, ...]
    ignored: tuple[str, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> TLSRPTRecord:
        """Parse one TXT record's text (its strings already concatenated, §3).

        Raises :class:`TLSRPTError` when the record breaks the §3 grammar:
        it does not begin with ``v=TLSRPTv1``, a field is not ``name=value``,
        it has no ``rua`` field, a ``rua`` entry is not a URI, or no ``rua``
        URI is ``mailto:`` or ``https:``.  Spaces and tabs are allowed
        around ``;`` and ``,``; a final ``;`` is optional.  A repeated
        ``rua`` after the first is ignored (the RFC does not say; this is
        RFC 8461 §3.2's rule for repeated fields).
        """
        if not _VERSION.match(text):
            # RFC 8460 §3: the record is tlsrpt-version first.
            raise TLSRPTError(f"TXT record does not begin with 'v=TLSRPTv1;': {text!r}")
        fields = [f.strip(" \t") for f in text.split(";")[1:]]
        if fields and fields[-1] == "":
            fields.pop()  # the optional trailing field-delim
        rua: tuple[tuple[ReportURI, ...], tuple[str, ...]] | None = None
        extensions: list[tuple[str, str]] = []
        for field in fields:
            name, eq, value = field.partition("=")
            if not eq or not _EXT_NAME.fullmatch(name):
                raise TLSRPTError(f"malformed TXT field {field!r}")
            if name == "rua":  # %s"rua=": case-sensitive
                if rua is None:
                    rua = _parse_rua(value)
            elif not _EXT_VALUE.fullmatch(value):
                raise TLSRPTError(f"malformed TXT field {field!r}")
            else:
                # RFC 8460 §3: "unknown fields SHALL be ignored".
                extensions.append((name, value))
        if rua is None:
            # RFC 8460 §3 ABNF: "the tlsrpt-rua record is required".
            raise TLSRPTError("TXT record has no rua field")
        usable, ignored = rua
        if not usable:
            raise TLSRPTError(f"rua has no mailto: or https: URI: {', '.join(ignored)}")
        return cls(usable, ignored, tuple(extensions))

    @property
    def mailto(self) -> tuple[str, ...]:
        """The mailboxes of the ``mailto:`` destinations, in order."""
        return tuple(a for uri in self.rua for a in uri.addresses)

    @property
    def https(self) -> tuple[str, ...]:
        """The ``https:`` destinations, in order (reports are POSTed there, §5.4)."""
        return tuple(uri.uri for uri in self.rua if uri.scheme == "https")


def select_tlsrpt_record(texts: Iterable[str]) -> TLSRPTRecord:
    """Pick the one TLSRPTv1 record out of a TXT RRset (RFC 8460 §3).

    Records not beginning with ``v=TLSRPTv1`` are discarded; "If the number
    of resulting records is not one, senders MUST assume the recipient domain
    does not implement TLSRPT" (:class:`TLSRPTError`), nor when that one is
    malformed.
    """
    candidates = [t for t in texts if _VERSION.match(t)]
    if len(candidates) != 1:
        raise TLSRPTError(f"expected one v=TLSRPTv1 TXT record, found {len(candidates)}")
    return TLSRPTRecord.parse(candidates[0])


@attrs.frozen(slots=True)
class TLSRPTOutcome:
    """What :func:`lookup_tlsrpt` found for ``domain``.

    ``record`` is None when the domain takes no reports; ``error`` says why
    and ``temporary_failure`` marks a DNS failure (try again later) as
    opposed to "no record" or "no valid record".
    """

    domain: str
    record: TLSRPTRecord | None
    error: str = ""
    temporary_failure: bool = False


def lookup_tlsrpt(policy_domain: str) -> Lookup[TLSRPTOutcome]:
    """Look up and select the ``_smtp._tls.<policy_domain>`` TXT record (RFC 8460 §3)."""
    domain = normalize_name(policy_domain)
    answer = yield DNSQuery(f"_smtp._tls.{domain}", "TXT")
    assert isinstance(answer, DNSAnswer)
    if answer.rcode == "NXDOMAIN" or (answer.rcode == "NOERROR" and not answer.records):
        return TLSRPTOutcome(domain, None, "no TLSRPT TXT record")
    if answer.rcode != "NOERROR":
        return TLSRPTOutcome(domain, None, f"TXT lookup: {answer.rcode}", temporary_failure=True)
    try:
        record = select_tlsrpt_record(answer.records)
    except TLSRPTError as exc:
        return TLSRPTOutcome(domain, None, str(exc))
    return TLSRPTOutcome(domain, record)


# --- from verdicts to session results, RFC 8460 §4.3 -----------------------------------


class NotATLSFailure(enum.Enum):
    """How a :class:`~smtp_rtls.policy.Reason` that is no TLS failure counts."""

    #: The TLS session was had and met its policy; what failed came after
    #: (REQUIRETLS, RFC 8689): a successful session for RFC 8460 §4.2.1.
    TLS_SUCCEEDED = "tls succeeded"
    #: No TLS negotiation took place (no host, no answer, DNS): nothing to
    #: report; RFC 8460 §4.3.4 does not require transient failures.
    NOT_REPORTED = "not reported"


_R, _H, _T = Reason, HandshakeFailure, ResultType

#: The one table from why a session failed to its RFC 8460 §4.3 result type:
#: every :class:`~smtp_rtls.policy.Reason` that is a TLS failure, and every
#: :class:`~smtp_rtls.policy.HandshakeFailure` the adapter can see.  The other
#: reasons are in :data:`NOT_TLS_FAILURES`.
RESULT_TYPES: Mapping[Reason | HandshakeFailure, ResultType] = MappingProxyType(
    {
        # §4.3.1: "the recipient MX did not support STARTTLS".
        _R.STARTTLS_NOT_OFFERED: _T.STARTTLS_NOT_SUPPORTED,
        # §4.3.3: what fits no other type is "validation-failure", with the
        # failure-reason-code saying more: a failed handshake, a refused
        # STARTTLS, TLS below 1.2 or a weak cipher (RFC 7525), a server that
        # demanded the STARTTLS that failed.
        _R.TLS_FAILED: _T.VALIDATION_FAILURE,
        _R.TLS_TOO_WEAK: _T.VALIDATION_FAILURE,
        _R.STARTTLS_REQUIRED_BY_SERVER: _T.VALIDATION_FAILURE,
        # §4.3.1, the certificate failures.
        _R.CERTIFICATE_NOT_VERIFIED: _T.CERTIFICATE_NOT_TRUSTED,
        _R.CERTIFICATE_EXPIRED: _T.CERTIFICATE_EXPIRED,
        _R.NAME_MISMATCH: _T.CERTIFICATE_HOST_MISMATCH,
        # §4.3.2.1: "None of the records in the RRset were found to be valid"
        # for the certificate presented.
        _R.DANE_MISMATCH: _T.TLSA_INVALID,
        # §4.3.2.1: the TLSA request "returned with SERVFAIL".
        _R.TLSA_LOOKUP_FAILED: _T.DNSSEC_INVALID,
        # RFC 8461 §4.1 MX host validation has no type of its own (§4.3.3).
        _R.MTASTS_MISMATCH: _T.VALIDATION_FAILURE,
        # §4.3.2.2 (refined by sts_failure() when the plan says more).
        _R.MTASTS_UNAVAILABLE: _T.STS_POLICY_FETCH_ERROR,
        # The adapter's view of a failed handshake (HandshakeFailure, which
        # verdict.handshake_failed() turns into the reasons above).
        _H.NAME_MISMATCH: _T.CERTIFICATE_HOST_MISMATCH,
        _H.EXPIRED: _T.CERTIFICATE_EXPIRED,
        _H.UNTRUSTED: _T.CERTIFICATE_NOT_TRUSTED,
        _H.OTHER: _T.VALIDATION_FAILURE,
    }
)

#: The reasons that are no TLS failure, and how they count.
NOT_TLS_FAILURES: Mapping[Reason, NotATLSFailure] = MappingProxyType(
    {
        # RFC 8689 §4.2.1 step 5 comes after a TLS session that met its policy.
        _R.REQUIRETLS_NOT_OFFERED: NotATLSFailure.TLS_SUCCEEDED,
        # RFC 8689 §4.2.1 step 2 (insecure MX, no MTA-STS): no session tried.
        _R.MX_NOT_VALIDATED: NotATLSFailure.NOT_REPORTED,
        # Routing, DNS and reachability (RFC 8460 §4.3.4: transient).
        _R.NULL_MX: NotATLSFailure.NOT_REPORTED,
        _R.NO_SUCH_DOMAIN: NotATLSFailure.NOT_REPORTED,
        _R.NO_ADDRESS: NotATLSFailure.NOT_REPORTED,
        _R.DNS_TEMPORARY_FAILURE: NotATLSFailure.NOT_REPORTED,
        _R.CONNECTION_FAILED: NotATLSFailure.NOT_REPORTED,
    }
)


def applied_policy(plan: DeliveryPlan, verdict: Verdict) -> AppliedPolicy:
    """The policy the session that ended in ``verdict`` was held to (RFC 8460 §4.4).

    DANE when the host's candidate was authenticated by TLSA records (or
    its TLSA look-up failed), since DANE wins over MTA-STS (RFC 8461 §2),
    under the TLSA base domain (RFC 8460 §1.1 "Policy Domain"); else the
    recipient domain's MTA-STS policy in mode ``enforce`` or ``testing``
    (announced but not had counts too: its failure is the session's,
    §4.3.2.2); else ``no-policy-found``.
    """
    candidate = next((c for c in plan.candidates if c.host == verdict.host), None)
    if candidate is not None and candidate.security is Security.DANE:
        return AppliedPolicy.tlsa(candidate.names[0], candidate.tlsa)
    if verdict.reason is Reason.TLSA_LOOKUP_FAILED and verdict.host:
        return AppliedPolicy.tlsa(verdict.host, ())
    sts = plan.sts
    if sts is not None and sts.policy is not None and sts.policy.mode != "none":
        return AppliedPolicy.sts(plan.domain, sts.policy)
    if sts is not None and sts.policy is None and sts.record is not None:
        return AppliedPolicy.sts(plan.domain, None)
    if verdict.reason in (Reason.MTASTS_UNAVAILABLE, Reason.MTASTS_MISMATCH):
        return AppliedPolicy.sts(plan.domain, None)
    return AppliedPolicy.no_policy(plan.domain)


# RFC 8461 §3.3 failures as mtasts.py words them (STSOutcome.error), first
# match wins.  tests/policy/test_tlsrpt.py runs each through the real fetch.
_STS_ERRORS = (
    ("policy fetch failed: certificate", ResultType.STS_WEBPKI_INVALID),
    ("policy has content type", ResultType.STS_POLICY_INVALID),
    ("invalid policy", ResultType.STS_POLICY_INVALID),
)


def sts_failure(outcome: STSOutcome) -> ResultType | None:
    """The RFC 8460 §4.3.2.2 failure of an MTA-STS discovery, or None.

    None when a policy applies (fetched, or cached after a failed fetch,
    RFC 8461 §3.3) or when the domain announces none.  An announced policy
    that could not be had is ``sts-webpki-invalid`` when the HTTPS server's
    certificate failed, ``sts-policy-invalid`` when the file was no valid
    policy (or not text/plain), else ``sts-policy-fetch-error``.
    """
    if outcome.policy is not None or outcome.record is None:
        return None
    for prefix, result_type in _STS_ERRORS:
        if outcome.error.startswith(prefix):
            return result_type
    return ResultType.STS_POLICY_FETCH_ERROR


#: How long a failure-reason-code made from a verdict's detail may be
#: (RFC 8460 §4.3.3: "a short text field").
REASON_CODE_LIMIT = 256


def session_result(
    plan: DeliveryPlan,
    verdict: Verdict,
    *,
    when: datetime.datetime,
    tls: bool | None = None,
    receiving_ip: str | None = None,
    sending_mta_ip: str | None = None,
    receiving_mx_helo: str | None = None,
) -> SessionResult | None:
    """The session result of one verdict of ``plan``'s delivery, or None.

    ``verdict`` is the verdict of one session (a PROCEED or TRY_NEXT from
    :func:`~smtp_rtls.policy.check`, ``handshake_failed()``, ...) or of a
    host ruled out before connecting (``plan.skipped``).  For PROCEED,
    ``tls`` says whether the session was TLS-protected: a session that went
    on in plaintext (opportunistic TLS, STARTTLS not offered or refused) is
    ``starttls-not-supported``.  After a failed handshake and a
    plaintext retry, record the failed handshake's verdict, not the retry's.

    None when there is nothing to report: a final verdict (DEFER, FAIL: not a
    session) or a reason in :data:`NOT_TLS_FAILURES` that is
    ``NOT_REPORTED``.  When the applied MTA-STS policy was announced but
    could not be had, the session fails with :func:`sts_failure`'s type
    (RFC 8460 §4.3.2.2), whatever its TLS did.  Other failures take their
    type from :data:`RESULT_TYPES` and the verdict's detail as
    failure-reason-code.
    """
    if verdict.action in (Action.DEFER, Action.FAIL):
        return None
    reason = verdict.reason
    if reason is not None and NOT_TLS_FAILURES.get(reason) is NotATLSFailure.NOT_REPORTED:
        return None
    policy = applied_policy(plan, verdict)

    def result(result_type: ResultType | None, code: str = "") -> SessionResult:
        return SessionResult(
            policy,
            when,
            result_type,
            receiving_mx_hostname=verdict.host,
            receiving_ip=receiving_ip,
            sending_mta_ip=sending_mta_ip,
            receiving_mx_helo=receiving_mx_helo,
            failure_reason_code=code[:REASON_CODE_LIMIT] if result_type else None,
        )

    if policy.policy_type is PolicyType.STS and plan.sts is not None:
        sts_type = sts_failure(plan.sts)
        if sts_type is not None:
            return result(sts_type, plan.sts.error)
    if verdict.action is Action.PROCEED:
        if tls is None:
            raise ValueError("for a PROCEED verdict, say whether the session used TLS (tls=)")
        return result(None) if tls else result(_T.STARTTLS_NOT_SUPPORTED, "plaintext session")
    if reason is None:
        raise ValueError(f"a {verdict.action.value} verdict without a reason")
    if reason in NOT_TLS_FAILURES:  # TLS_SUCCEEDED
        return result(None)
    return result(RESULT_TYPES[reason], verdict.detail)


# --- the state file: one session result per line ---------------------------------------


@attrs.frozen(slots=True)
class DamagedLine:
    """A line :func:`read_session_lines` could not read: its number (from 1) and why."""

    number: int
    error: str


@attrs.frozen(slots=True)
class SessionLog:
    """What :func:`read_session_lines` read: the results and the damaged lines."""

    results: tuple[SessionResult, ...]
    damaged: tuple[DamagedLine, ...] = ()


def read_session_lines(lines: Iterable[str | bytes], *, source: str = "state") -> SessionLog:
    """The session results of :meth:`SessionResult.to_json` lines.

    Never raises for what the lines hold: a line that is not UTF-8 or not a
    session result (cut short by a crash, a full disk, another program) is
    left out and listed in :attr:`SessionLog.damaged`, with one warning
    naming ``source``; blank lines are skipped.
    """
    results: list[SessionResult] = []
    damaged: list[DamagedLine] = []
    for number, line in enumerate(lines, 1):
        try:
            text = line.decode("utf-8") if isinstance(line, bytes) else line
            if text.strip():
                results.append(SessionResult.from_json(text))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
            damaged.append(DamagedLine(number, str(exc)[:200]))
    if damaged:
        first = damaged[0]
        log.warning(
            "ignoring %d damaged TLSRPT session line%s in %s (line %d: %s)",
            len(damaged),
            "s" * (len(damaged) != 1),
            source,
            first.number,
            first.error,
        )
    return SessionLog(tuple(results), tuple(damaged))
