"""SMTP TLS Reporting (RFC 8460): what a report is made of, and the reports.

The public names are re-exported by :mod:`smtp_rtls.policy.tlsrpt`, which
holds the other concern of TLSRPT (the ``_smtp._tls`` record and the way from
a verdict to a session result).  Here are the values a report counts (the
:class:`ResultType` of a failure, the :class:`AppliedPolicy`, the
:class:`SessionResult` of one session and its one-line JSON form) and
:func:`aggregate`, which turns session results into RFC 8460 §4.4 JSON
reports, one per policy domain and UTC day (§4.1), named as §5.1 says and
compressed as §5.2 says.  Everything is deterministic: the same session
results, in any order, give byte-identical reports, so a report can be made
again from the state it came from and compared.

No clock is read: the day of a result is the UTC day of its ``when``.
"""

from __future__ import annotations

import datetime
import enum
import gzip
import ipaddress
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .dane import TLSARecord
from .mtasts import STSPolicy
from .mx import normalize_name

__all__ = [
    "AppliedPolicy",
    "PolicyType",
    "Report",
    "ReportSubmitter",
    "ResultType",
    "SessionResult",
    "aggregate",
    "gzip_report",
    "report_filename",
]

# RFC 8460 §5.1: unique-id = 1*(ALPHA / DIGIT)
_UNIQUE_ID = re.compile(r"[A-Za-z0-9]+")
# A domain of A-labels (RFC 8460 §4.4 "domain": Punycode A-labels, not U-labels).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# After "scheme:", no space or control character (RFC 3986 §2: none is allowed).
_URI_TAIL = re.compile(r"[^\s\x00-\x1f\x7f]+")
_LAST_SECOND = datetime.timedelta(seconds=86399)


def a_label_domain(name: str) -> str:
    """``name`` lower-cased without the root dot; ValueError unless it is A-labels.

    RFC 8460 §4.4: a policy domain (and an mx pattern) "MUST consist of the
    Punycode-encoded A-labels [RFC3492] and not the U-labels".
    """
    domain = normalize_name(name)
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a domain name of A-labels: {name!r}")
    return domain


# --- what a report is made of: RFC 8460 §4.3, §4.4 -------------------------------------


class ResultType(enum.Enum):
    """Why a session failed (RFC 8460 §4.3; the registry of §6.6)."""

    # §4.3.1 Negotiation failures.
    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    VALIDATION_FAILURE = "validation-failure"
    # §4.3.2.1 DANE-specific policy failures.
    TLSA_INVALID = "tlsa-invalid"
    DNSSEC_INVALID = "dnssec-invalid"
    DANE_REQUIRED = "dane-required"
    # §4.3.2.2 MTA-STS-specific policy failures.
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
    STS_POLICY_INVALID = "sts-policy-invalid"
    STS_WEBPKI_INVALID = "sts-webpki-invalid"


class PolicyType(enum.Enum):
    """The kind of policy a session was held to (RFC 8460 §4.4 "policy-type")."""

    TLSA = "tlsa"
    STS = "sts"
    NO_POLICY_FOUND = "no-policy-found"


_TLSA_TEXT = re.compile(r"[0-9]{1,3} [0-9]{1,3} [0-9]{1,3} [0-9A-Fa-f]+")


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _mx_patterns(values: Iterable[str]) -> tuple[str, ...]:
    # RFC 8460 §4.4 "mx-host": RFC 8461 §4.1 patterns, in A-labels.
    patterns = []
    for value in values:
        wildcard = value.startswith("*.")
        patterns.append("*." * wildcard + a_label_domain(value[2 * wildcard :]))
    return tuple(patterns)


@attrs.frozen(slots=True)
class AppliedPolicy:
    """The policy a session was held to (RFC 8460 §4.4 "policy").

    ``policy_domain`` is the domain the policy is defined for (§4.4, A-labels):
    the recipient domain for MTA-STS, the TLSA base domain (the MX host) for
    DANE (RFC 8460 §1.1 "Policy Domain").  ``policy_string`` holds the TLSA
    records or the MTA-STS policy's lines (§4.5); ``mx_host`` the MTA-STS
    policy's mx patterns.  Build one with :meth:`tlsa`, :meth:`sts`,
    :meth:`no_policy` or :func:`~smtp_rtls.policy.tlsrpt.applied_policy`.
    """

    policy_type: PolicyType
    policy_domain: str = attrs.field(converter=a_label_domain)
    policy_string: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    mx_host: tuple[str, ...] = attrs.field(default=(), converter=_mx_patterns)

    def __attrs_post_init__(self) -> None:
        """Refuse what RFC 8460 §4.4 and §4.5 do not allow for the policy type."""
        if self.policy_type is not PolicyType.STS and self.mx_host:
            raise ValueError("only an sts policy has mx-host patterns (RFC 8460 §4.4)")
        if self.policy_type is PolicyType.NO_POLICY_FOUND and self.policy_string:
            raise ValueError("no-policy-found has no policy-string")
        if self.policy_type is PolicyType.TLSA:
            for text in self.policy_string:
                if not _TLSA_TEXT.fullmatch(text):
                    raise ValueError(f"not a TLSA record as RFC 8460 §4.5 writes it: {text!r}")
        if any("\n" in s or "\r" in s for s in self.policy_string):
            raise ValueError("a policy-string entry is one line")

    @classmethod
    def tlsa(cls, domain: str, records: Iterable[TLSARecord | str]) -> AppliedPolicy:
        """A DANE policy: ``domain`` is the TLSA base domain; ``records`` the TLSA RRset.

        RFC 8460 §4.5: each record is its four fields, space-separated, the
        data in hex with no internal spaces.
        """
        texts = [str(r if isinstance(r, TLSARecord) else TLSARecord.parse(r)) for r in records]
        return cls(PolicyType.TLSA, domain, texts)

    @classmethod
    def sts(cls, domain: str, policy: STSPolicy | None) -> AppliedPolicy:
        """An MTA-STS policy of ``domain``; None when it was announced but not had.

        RFC 8460 §4.5: the policy's lines, each ``mx`` its own line; the
        lines are rebuilt from the parsed policy (lower-case mx patterns, a
        max_age over a year held to one year).
        """
        if policy is None:
            return cls(PolicyType.STS, domain)
        lines = [
            "version: STSv1",
            f"mode: {policy.mode}",
            *(f"mx: {pattern}" for pattern in policy.mx),
            f"max_age: {policy.max_age}",
        ]
        return cls(PolicyType.STS, domain, lines, policy.mx)

    @classmethod
    def no_policy(cls, domain: str) -> AppliedPolicy:
        """Neither DANE nor MTA-STS applied to the session ("no-policy-found")."""
        return cls(PolicyType.NO_POLICY_FOUND, domain)

    def report_object(self) -> dict[str, Any]:
        """The RFC 8460 §4.4 "policy" object (empty lists left out)."""
        data: dict[str, Any] = {
            "policy-type": self.policy_type.value,
            "policy-domain": self.policy_domain,
        }
        if self.policy_string:
            data["policy-string"] = list(self.policy_string)
        if self.mx_host:
            data["mx-host"] = list(self.mx_host)
        return data

    @classmethod
    def from_report_object(cls, data: object) -> AppliedPolicy:
        """The policy of a :meth:`report_object`; ValueError if it is not one."""
        if not isinstance(data, dict) or not set(data) <= _POLICY_KEYS:
            raise ValueError("policy: not a policy object")
        strings, mx = data.get("policy-string", []), data.get("mx-host", [])
        if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
            raise ValueError("policy: policy-string is not a list of strings")
        if not isinstance(mx, list) or not all(isinstance(s, str) for s in mx):
            raise ValueError("policy: mx-host is not a list of strings")
        return cls(
            PolicyType(_text(data, "policy-type")), _text(data, "policy-domain"), strings, mx
        )


_POLICY_KEYS = frozenset({"policy-type", "policy-domain", "policy-string", "mx-host"})


def _utc(value: datetime.datetime) -> datetime.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("when must be an aware datetime (RFC 8460 §4.1 reports UTC days)")
    return value.astimezone(datetime.UTC)


def _ip(value: str | None) -> str | None:
    # RFC 8460 §4.4: dot-decimal IPv4 or RFC 5952 IPv6, which str() writes.
    return None if not value else str(ipaddress.ip_address(value.strip()))


def _host(value: str | None) -> str | None:
    return None if not value or not value.strip() else normalize_name(value)


def _line(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if "\n" in value or "\r" in value:
        raise ValueError(f"not one line of text: {value!r}")
    return value.strip()


def _uri(value: str | None) -> str | None:
    value = _line(value)
    scheme, colon, rest = (value or "").partition(":")
    if value is not None and (
        not colon or not _SCHEME.fullmatch(scheme) or not _URI_TAIL.fullmatch(rest)
    ):
        raise ValueError(f"additional-information must be a URI (RFC 8460 §4.4): {value!r}")
    return value


@attrs.frozen(slots=True)
class SessionResult:
    """One delivery session, as RFC 8460 counts it.

    ``result_type`` is None for a success (§4.2.1: a policy-compliant TLS
    session) and the §4.3 failure otherwise.  ``when`` (an aware datetime,
    kept in UTC) puts the session in its UTC day's report (§4.1).  The host
    fields are those of §4.4's failure details and are left out of a report
    when None: ``receiving_mx_hostname`` and ``receiving_ip`` (None when no
    connection was made, as for a policy that could not be fetched),
    ``receiving_mx_helo`` (the name in the server's greeting or EHLO reply),
    ``sending_mta_ip`` (our end of the connection).  ``additional_information``
    (a URI) and ``failure_reason_code`` (a short text) only go with failures.
    """

    policy: AppliedPolicy
    when: datetime.datetime = attrs.field(converter=_utc)
    result_type: ResultType | None = None
    receiving_mx_hostname: str | None = attrs.field(default=None, converter=_host)
    receiving_ip: str | None = attrs.field(default=None, converter=_ip)
    sending_mta_ip: str | None = attrs.field(default=None, converter=_ip)
    receiving_mx_helo: str | None = attrs.field(default=None, converter=_line)
    additional_information: str | None = attrs.field(default=None, converter=_uri)
    failure_reason_code: str | None = attrs.field(default=None, converter=_line)

    def __attrs_post_init__(self) -> None:
        """A success carries no failure information."""
        if self.result_type is None and (self.additional_information or self.failure_reason_code):
            raise ValueError("a successful session has no failure-reason-code or information")

    @property
    def successful(self) -> bool:
        """True for a policy-compliant TLS session (RFC 8460 §4.2.1)."""
        return self.result_type is None

    def to_json(self) -> str:
        """The result as one line of JSON (no newline), which :meth:`from_json` reads back."""
        data: dict[str, Any] = {
            "v": _LINE_VERSION,
            "when": self.when.isoformat(),
            "result": self.result_type.value if self.result_type is not None else "success",
            "policy": self.policy.report_object(),
        }
        for key, name in _LINE_FIELDS.items():
            value = getattr(self, name)
            if value is not None:
                data[key] = value
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> SessionResult:
        """The result of a :meth:`to_json` line; ValueError for anything else."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        if (
            not isinstance(data, dict)
            or type(data.get("v")) is not int
            or data["v"] != _LINE_VERSION
        ):
            raise ValueError(f"not a version {_LINE_VERSION} session result")
        unknown = set(data) - {"v", "when", "result", "policy", *_LINE_FIELDS}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        result = _text(data, "result")
        optional = {}
        for key, name in _LINE_FIELDS.items():
            if key in data:
                optional[name] = _text(data, key)
        return cls(
            AppliedPolicy.from_report_object(data.get("policy")),
            datetime.datetime.fromisoformat(_text(data, "when")),
            None if result == "success" else ResultType(result),
            **optional,
        )


_LINE_VERSION = 1
# The optional fields of the line form: RFC 8460 §4.4 names -> attributes.
_LINE_FIELDS = {
    "receiving-mx-hostname": "receiving_mx_hostname",
    "receiving-ip": "receiving_ip",
    "sending-mta-ip": "sending_mta_ip",
    "receiving-mx-helo": "receiving_mx_helo",
    "additional-information": "additional_information",
    "failure-reason-code": "failure_reason_code",
}


def _text(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key}: not a string")
    return value


# --- reports: RFC 8460 §4.4, §5.1, §5.2 -----------------------------------------------


def _unique_id(value: str | None) -> str | None:
    if value is not None and not _UNIQUE_ID.fullmatch(value):
        raise ValueError(f"unique-id must be letters and digits (RFC 8460 §5.1): {value!r}")
    return value


def _contact(value: str) -> str:
    local, at, domain = value.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"contact-info must be an email address (RFC 8460 §4.4): {value!r}")
    return f"{local}@{a_label_domain(domain)}"


def _not_empty(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.frozen(slots=True)
class ReportSubmitter:
    """Who sends the reports (RFC 8460 §4.4 report metadata, §5.1, §5.3).

    ``organization_name`` goes to "organization-name", ``contact_info`` (an
    email address, RFC 5322 addr-spec) to "contact-info".  The domain of
    ``contact_info`` is the submitter: the ``sender`` of the §5.1 file name
    and the ``TLS-Report-Submitter`` of §5.3, which "MUST match" it.
    ``unique_id`` (letters and digits) tells apart reports made at the same
    time by several machines of one submitter (§5.1).
    """

    organization_name: str = attrs.field(validator=_not_empty)
    contact_info: str = attrs.field(converter=_contact)
    unique_id: str | None = attrs.field(default=None, converter=_unique_id)

    @property
    def domain(self) -> str:
        """The domain of ``contact_info`` (RFC 8460 §5.1 ``sender``)."""
        return self.contact_info.rpartition("@")[2]


def report_filename(
    sender: str,
    policy_domain: str,
    begin: int,
    end: int,
    unique_id: str | None = None,
    *,
    compressed: bool = True,
) -> str:
    """The RFC 8460 §5.1 file name of a report.

    ``sender!policy-domain!begin-timestamp!end-timestamp[!unique-id].json[.gz]``,
    the timestamps in seconds since the epoch (UTC); ``.json.gz`` when
    ``compressed`` (§5.2), ``.json`` otherwise.
    """
    if begin < 0 or end < begin:
        raise ValueError(f"bad time range {begin}..{end}")
    parts = [a_label_domain(sender), a_label_domain(policy_domain), str(begin), str(end)]
    if _unique_id(unique_id) is not None:
        parts.append(str(unique_id))
    return "!".join(parts) + (".json.gz" if compressed else ".json")


def gzip_report(body: bytes) -> bytes:
    """``body`` compressed with GZIP (RFC 8460 §5.2, RFC 1952), deterministically.

    The header's modification time is 0 and no file name is stored, so the
    same report always compresses to the same bytes.
    """
    return gzip.compress(body, compresslevel=9, mtime=0)


def _timestamp(moment: datetime.datetime) -> str:
    # RFC 8460 §4.4 "date-time": RFC 3339 §5.6, in UTC.
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen(slots=True)
class Report:
    """One aggregate report: one policy domain, one UTC day (RFC 8460 §4.1).

    ``body`` is the report as JSON (UTF-8, keys sorted); :meth:`gzip` gives
    it compressed and :meth:`filename` names it (§5.1, §5.2).
    """

    policy_domain: str
    day: datetime.date
    submitter: ReportSubmitter
    body: bytes

    @property
    def start(self) -> datetime.datetime:
        """00:00:00 UTC of ``day``: the "start-datetime" (RFC 8460 §4.1)."""
        return datetime.datetime.combine(self.day, datetime.time(), datetime.UTC)

    @property
    def end(self) -> datetime.datetime:
        """23:59:59 UTC of ``day``: the "end-datetime" (RFC 8460 §4.1, Appendix B)."""
        return self.start + _LAST_SECOND

    @property
    def report_id(self) -> str:
        """The "report-id": ``YYYYMMDD.<policy domain>[.<unique id>]@<submitter domain>``.

        Derived from what the report covers and who sends it, so that a
        report made again from the same state keeps its id (RFC 8460 §4.4
        lets the scheme be ours); shaped as an RFC 5322 msg-id for the §5.3
        Subject field.
        """
        left = f"{self.day:%Y%m%d}.{self.policy_domain}"
        if self.submitter.unique_id is not None:
            left += f".{self.submitter.unique_id}"
        return f"{left}@{self.submitter.domain}"

    def filename(self, *, compressed: bool = True) -> str:
        """The RFC 8460 §5.1 file name (``.json.gz`` unless ``compressed`` is False)."""
        return report_filename(
            self.submitter.domain,
            self.policy_domain,
            int(self.start.timestamp()),
            int(self.end.timestamp()),
            self.submitter.unique_id,
            compressed=compressed,
        )

    def gzip(self) -> bytes:
        """The body compressed (RFC 8460 §5.2), deterministically."""
        return gzip_report(self.body)

    def document(self) -> dict[str, Any]:
        """The body parsed back into Python objects."""
        data: dict[str, Any] = json.loads(self.body)
        return data


# (result-type, sending-mta-ip, receiving-mx-hostname, receiving-mx-helo,
#  receiving-ip, additional-information, failure-reason-code): RFC 8460 §4.4.
_DETAIL_FIELDS = (
    "result-type",
    "sending-mta-ip",
    "receiving-mx-hostname",
    "receiving-mx-helo",
    "receiving-ip",
    "additional-information",
    "failure-reason-code",
)
_DetailKey = tuple[str | None, ...]


def _detail_key(result: SessionResult) -> _DetailKey:
    assert result.result_type is not None
    return (
        result.result_type.value,
        result.sending_mta_ip,
        result.receiving_mx_hostname,
        result.receiving_mx_helo,
        result.receiving_ip,
        result.additional_information,
        result.failure_reason_code,
    )


def _sort_key(key: _DetailKey) -> tuple[tuple[bool, str], ...]:
    # None sorts before any string; the pair keeps the order total.
    return tuple((value is not None, value or "") for value in key)


@attrs.define
class _Tally:
    successes: int = 0
    failures: Counter[_DetailKey] = attrs.field(factory=Counter)


def _policy_entry(policy: AppliedPolicy, tally: _Tally) -> dict[str, Any]:
    details = []
    for key in sorted(tally.failures, key=_sort_key):
        detail: dict[str, Any] = {
            name: value for name, value in zip(_DETAIL_FIELDS, key, strict=True) if value
        }
        detail["failed-session-count"] = tally.failures[key]
        details.append(detail)
    return {
        "policy": policy.report_object(),
        # RFC 8460 §4.2: the counts; each session result has exactly one
        # result type, so the failure count is the sum of the details'.
        "summary": {
            "total-successful-session-count": tally.successes,
            "total-failure-session-count": sum(tally.failures.values()),
        },
        "failure-details": details,
    }


def _dumps(data: object) -> bytes:
    # Sorted keys and fixed separators: the same data, the same bytes.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def aggregate(
    results: Iterable[SessionResult],
    submitter: ReportSubmitter,
    *,
    day: datetime.date | None = None,
) -> tuple[Report, ...]:
    """The RFC 8460 §4.4 reports for ``results``: one per policy domain and UTC day.

    Each report lists every policy that applied in its domain that day
    ("policies" is always an array, §4), with its success and failure counts
    (§4.2) and the failures grouped by result type, sending MTA address,
    receiving host, its HELO name, its address, additional information and
    failure reason code (§4.4).  With ``day``, only that day's reports are
    made (a daily job passes yesterday, so no report covers a day still
    going on).  Reports come sorted by day, then domain; their bodies do
    not depend on the order of ``results``.
    """
    tallies: dict[tuple[datetime.date, str], dict[AppliedPolicy, _Tally]] = {}
    for result in results:
        result_day = result.when.date()
        if day is not None and result_day != day:
            continue
        key = (result_day, result.policy.policy_domain)
        tally = tallies.setdefault(key, {}).setdefault(result.policy, _Tally())
        if result.result_type is None:
            tally.successes += 1
        else:
            tally.failures[_detail_key(result)] += 1
    reports = []
    for (result_day, domain), policies in sorted(tallies.items()):
        report = Report(domain, result_day, submitter, b"")
        entries = sorted(
            (_policy_entry(policy, tally) for policy, tally in policies.items()),
            key=lambda entry: _dumps(entry["policy"]),
        )
        document = {
            "organization-name": submitter.organization_name,
            "date-range": {
                "start-datetime": _timestamp(report.start),
                "end-datetime": _timestamp(report.end),
            },
            "contact-info": submitter.contact_info,
            "report-id": report.report_id,
            "policies": entries,
        }
        reports.append(attrs.evolve(report, body=_dumps(document)))
    return tuple(reports)
