"""MTA-STS (RFC 8461): TXT record, policy file, mx matching, fetch and cache.

Section numbers are RFC 8461's; the text on disk is its final draft
(draft-ietf-uta-mta-sts-21), whose numbering matches the RFC.

Discovery is a :data:`~smtp_rtls.policy.requests.Lookup`: :func:`fetch_policy`
yields a TXT query for ``_mta-sts.<domain>`` and, when one valid record is
there, an :class:`~smtp_rtls.policy.requests.HTTPSRequest` for the policy file.
:class:`STSCache` wraps that in the control flow of §5.1: it keeps policies
for ``max_age`` seconds, skips the HTTPS fetch while the TXT id is unchanged,
and keeps using an unexpired policy when discovery fails.  The cache never
reads a clock: every method that needs the time takes ``now`` (seconds since
the epoch) from the caller.  It does no I/O either: it turns into JSON text
and back, and :mod:`smtp_rtls.io.stscache` keeps that text in a file.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from typing import Literal, cast

import attrs

from .mx import PatternSet, normalize_name
from .requests import DNSAnswer, DNSQuery, HTTPSRequest, HTTPSResponse, Lookup

__all__ = [
    "MAX_MAX_AGE",
    "POLICY_PATH",
    "STSCache",
    "STSError",
    "STSOutcome",
    "STSPolicy",
    "STSRecord",
    "fetch_policy",
    "fetch_policy_file",
    "fetch_record",
    "select_record",
]

log = logging.getLogger(__name__)

Mode = Literal["enforce", "testing", "none"]
#: RFC 8461 §3.2: "maximum value of 31557600" seconds (one year).
MAX_MAX_AGE = 31557600
#: RFC 8461 §3.2: the well-known path on ``mta-sts.<domain>``.
POLICY_PATH = "/.well-known/mta-sts.txt"
#: RFC 8461 §3.3 suggests one minute and 64 kilobytes.
FETCH_TIMEOUT = 60.0
MAX_POLICY_BYTES = 65536
#: RFC 8461 §3.3: after a failed fetch, wait five minutes or more per policy id.
FETCH_RETRY_INTERVAL = 300.0

# RFC 8461 §3.1 ABNF pieces.
_STS_VERSION = re.compile(r"v=STSv1[ \t]*;")
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
# RFC 8461 §3.2: sts-policy-mx-value = ["*."] Domain (RFC 5321 §4.1.2, A-labels).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})+\.?")


class STSError(ValueError):
    """A TXT record or policy file that does not follow RFC 8461 §3."""


@attrs.frozen(slots=True)
class STSRecord:
    """The ``_mta-sts`` TXT record (RFC 8461 §3.1): its ``id`` and unknown fields."""

    id: str
    extensions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> STSRecord:
        """Parse one TXT record's text (its strings already concatenated).

        Raises :class:`STSError` when the record is not valid per §3.1.
        """
        if not _STS_VERSION.match(text):
            # RFC 8461 §3.1: "The TXT record MUST begin with sts-version field".
            raise STSError(f"TXT record does not begin with 'v=STSv1;': {text!r}")
        fields = [f.strip(" \t") for f in text.split(";")[1:]]
        if fields and fields[-1] == "":
            fields.pop()  # the optional trailing sts-field-delim
        if not fields:
            raise STSError("TXT record has no fields after the version")
        record_id: str | None = None
        extensions: list[tuple[str, str]] = []
        for field in fields:
            name, eq, value = field.partition("=")
            if not eq or not _EXT_NAME.fullmatch(name) or not _EXT_VALUE.fullmatch(value):
                raise STSError(f"malformed TXT field {field!r}")
            if name == "id":
                if not _STS_ID.fullmatch(value):
                    raise STSError(f"id must be 1 to 32 letters or digits: {value!r}")
                # RFC 8461 §3.2 (for both formats): a repeated field after
                # the first is ignored.
                record_id = value if record_id is None else record_id
            else:
                extensions.append((name, value))
        if record_id is None:
            raise STSError("TXT record has no id field")
        return cls(record_id, tuple(extensions))


def select_record(texts: Iterable[str]) -> STSRecord:
    """Pick the one STSv1 record out of a TXT RRset (RFC 8461 §3.1).

    Records not starting with ``v=STSv1;`` are discarded; if the number left
    is not one, or it is invalid, the domain has no usable policy
    (:class:`STSError`).
    """
    candidates = [t for t in texts if _STS_VERSION.match(t)]
    if len(candidates) != 1:
        raise STSError(f"expected one v=STSv1 TXT record, found {len(candidates)}")
    return STSRecord.parse(candidates[0])


@attrs.frozen(slots=True)
class STSPolicy:
    """A policy file (RFC 8461 §3.2); ``policy_id`` is the TXT id it was fetched for."""

    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    policy_id: str = ""
    # The mx patterns indexed once, so that matching a host costs O(1), not
    # O(patterns): a policy may hold thousands of them (64 KiB, §3.3).
    _patterns: PatternSet = attrs.field(init=False, repr=False, eq=False)

    @_patterns.default
    def _index_patterns(self) -> PatternSet:
        return PatternSet(self.mx)

    @classmethod
    def parse(cls, text: str, policy_id: str = "") -> STSPolicy:
        """Parse a policy body (CRLF or LF line ends); raise :class:`STSError` if invalid."""
        values: dict[str, str] = {}
        mx: list[str] = []
        for number, raw in enumerate(text.split("\n"), 1):
            line = raw.removesuffix("\r").rstrip(" \t")
            if not line:
                continue
            key, colon, value = line.partition(":")
            value = value.lstrip(" \t")
            if not colon or not _EXT_NAME.fullmatch(key) or not value:
                raise STSError(f"line {number}: not a 'key: value' pair: {raw!r}")
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                raise STSError(f"line {number}: control character in value")
            if key == "mx":
                if not _MX_PATTERN.fullmatch(value):
                    raise STSError(f"line {number}: invalid mx pattern {value!r}")
                mx.append(normalize_name(value))
            else:
                # RFC 8461 §3.2: for non-repeated fields only the first counts;
                # unknown fields "SHALL be ignored".
                values.setdefault(key, value)
        if values.get("version") != "STSv1":
            raise STSError(f"version must be STSv1, got {values.get('version')!r}")
        mode = values.get("mode")
        if mode not in ("enforce", "testing", "none"):
            raise STSError(f"mode must be enforce, testing or none, got {mode!r}")
        max_age_text = values.get("max_age", "")
        # RFC 8461 §3.2 ABNF: sts-policy-max-age-value = 1*10(DIGIT)
        if not re.fullmatch(r"[0-9]{1,10}", max_age_text):
            raise STSError(f"max_age must be 1 to 10 digits, got {max_age_text!r}")
        # RFC 8461 §3.2: at most 31557600; a larger value is held to that
        # maximum rather than throwing the whole policy away.
        max_age = min(int(max_age_text), MAX_MAX_AGE)
        if not mx and mode != "none":
            # RFC 8461 §3.2 ABNF: mx is "required at least once, except when
            # mode is 'none'".
            raise STSError("policy has no mx pattern")
        return cls(cast(Mode, mode), tuple(mx), max_age, policy_id)

    def matches(self, host: str) -> bool:
        """True when ``host`` matches one of the mx patterns (RFC 8461 §4.1).

        ``*.example.com`` matches ``mail.example.com`` but neither
        ``example.com`` nor ``a.b.example.com``; case and a trailing dot do not
        matter.
        """
        return self._patterns.matches(host)


@attrs.frozen(slots=True)
class STSOutcome:
    """What discovery found for ``domain``.

    ``policy`` is the policy to apply (``None``: deliver as if the domain had
    no MTA-STS, RFC 8461 §3.3).  ``record`` is the TXT record found now, if
    any.  ``error`` says why no fresh policy was had; ``temporary_failure``
    marks DNS failures (as opposed to "no record");
    ``from_cache`` says the policy came from :class:`STSCache`.
    """

    domain: str
    record: STSRecord | None
    policy: STSPolicy | None
    error: str = ""
    temporary_failure: bool = False
    from_cache: bool = False


def fetch_record(domain: str) -> Lookup[STSOutcome]:
    """Look up and select the ``_mta-sts.<domain>`` TXT record (RFC 8461 §3.1)."""
    domain = normalize_name(domain)
    answer = yield DNSQuery(f"_mta-sts.{domain}", "TXT")
    assert isinstance(answer, DNSAnswer)
    if answer.rcode == "NXDOMAIN" or (answer.rcode == "NOERROR" and not answer.records):
        return STSOutcome(domain, None, None, error="no MTA-STS TXT record")
    if answer.rcode != "NOERROR":
        return STSOutcome(
            domain, None, None, error=f"TXT lookup: {answer.rcode}", temporary_failure=True
        )
    try:
        record = select_record(answer.records)
    except STSError as exc:
        return STSOutcome(domain, None, None, error=str(exc))
    return STSOutcome(domain, record, None)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def fetch_policy_file(domain: str, record: STSRecord) -> Lookup[STSOutcome]:
    """Fetch and parse ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (§3.2, §3.3)."""
    domain = normalize_name(domain)
    request = HTTPSRequest(
        host=f"mta-sts.{domain}",
        path=POLICY_PATH,
        max_bytes=MAX_POLICY_BYTES,
        timeout=FETCH_TIMEOUT,
    )
    response = yield request
    assert isinstance(response, HTTPSResponse)

    def failed(error: str) -> STSOutcome:
        return STSOutcome(domain, record, None, error=error)

    if response.error is not None:
        return failed(f"policy fetch failed: {response.error}")
    if 300 <= response.status < 400:
        # RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed".
        return failed(f"policy fetch answered a redirect ({response.status}), not followed")
    if response.status != 200:
        # RFC 8461 §3.3: "only valid if the HTTP response code is 200 (OK)".
        return failed(f"policy fetch answered HTTP {response.status}")
    if _media_type(response.content_type) != "text/plain":
        # RFC 8461 §3.2: senders SHOULD check the media type is text/plain;
        # its parameters are ignored.
        return failed(f"policy has content type {response.content_type!r}, not text/plain")
    if len(response.body) > request.max_bytes:
        return failed("policy is larger than the size limit")
    try:
        text = response.body.decode("utf-8")
        policy = STSPolicy.parse(text, policy_id=record.id)
    except (UnicodeDecodeError, STSError) as exc:
        return failed(f"invalid policy: {exc}")
    return STSOutcome(domain, record, policy)


def fetch_policy(domain: str) -> Lookup[STSOutcome]:
    """Discover ``domain``'s policy afresh: TXT record, then the policy file.

    No cache is involved; see :meth:`STSCache.discover` for the §5.1 flow.
    """
    found = yield from fetch_record(domain)
    if found.record is None:
        return found
    outcome = yield from fetch_policy_file(domain, found.record)
    return outcome


@attrs.frozen(slots=True)
class CachedPolicy:
    """A policy and the time it was fetched (seconds since the epoch)."""

    policy: STSPolicy
    fetched_at: float

    def expired(self, now: float) -> bool:
        """RFC 8461 §3.2: a policy is cached for up to max_age from its fetch."""
        return now >= self.fetched_at + self.policy.max_age


class STSCache:
    """Policies by domain, honouring max_age and the TXT id (RFC 8461 §5.1).

    The cache lives in memory and does no I/O.  :meth:`to_json` and
    :meth:`from_json` turn it into text and back; ``on_change`` is called
    after every change worth keeping (a policy stored), so that a persistent
    cache (:class:`smtp_rtls.io.stscache.FileSTSCache`) knows when to save.
    Every method that needs the time takes ``now``.
    """

    def __init__(self, *, on_change: Callable[[], None] | None = None) -> None:
        """Create an empty cache; ``on_change`` is called after each change."""
        self.on_change = on_change
        self._entries: dict[str, CachedPolicy] = {}
        # (domain, policy id) -> time of the last failed fetch, RFC 8461 §3.3;
        # not a change worth keeping: a restart may retry a failed fetch.
        self._failures: dict[tuple[str, str], float] = {}

    def get(self, domain: str, now: float) -> CachedPolicy | None:
        """The unexpired cached policy for ``domain``, or None."""
        entry = self._entries.get(normalize_name(domain))
        if entry is None or entry.expired(now):
            return None
        return entry

    def store(self, domain: str, policy: STSPolicy, now: float) -> None:
        """Remember ``policy`` as fetched at ``now``, then call ``on_change``."""
        self._entries[normalize_name(domain)] = CachedPolicy(policy, now)
        if self.on_change is not None:
            self.on_change()

    def discover(self, domain: str, now: float) -> Lookup[STSOutcome]:
        """The policy to apply for ``domain`` now, fetching only when needed."""
        domain = normalize_name(domain)
        found = yield from fetch_record(domain)
        cached = self.get(domain, now)

        def use_cache(error: str, record: STSRecord | None) -> STSOutcome:
            assert cached is not None
            return STSOutcome(
                domain,
                record,
                cached.policy,
                error=error,
                temporary_failure=found.temporary_failure,
                from_cache=True,
            )

        if found.record is None:
            # RFC 8461 §3.1: a missing TXT record does not by itself remove a
            # cached policy; §3.3: a valid cached policy MUST then be applied.
            return use_cache(found.error, None) if cached else found
        if cached is not None and cached.policy.policy_id == found.record.id:
            # RFC 8461 §3: an unchanged id means the cached policy is current.
            return use_cache("", found.record)
        key = (domain, found.record.id)
        last_failure = self._failures.get(key)
        if last_failure is not None and now - last_failure < FETCH_RETRY_INTERVAL:
            # RFC 8461 §3.3: SHOULD wait five minutes or more per id after a
            # failed fetch.
            error = "policy fetch failed recently; not retried yet"
            if cached is not None:
                return use_cache(error, found.record)
            return STSOutcome(domain, found.record, None, error=error)
        fetched = yield from fetch_policy_file(domain, found.record)
        if fetched.policy is not None:
            self._failures.pop(key, None)
            self.store(domain, fetched.policy, now)
            return fetched
        self._failures[key] = now
        if cached is not None:
            # RFC 8461 §3.3: no live policy but a valid cached one: apply it.
            return use_cache(fetched.error, found.record)
        # RFC 8461 §3.3: no policy and no cache: deliver as without MTA-STS.
        log.warning("MTA-STS policy fetch for %s failed: %s", domain, fetched.error)
        return fetched

    def to_json(self) -> str:
        """The cached policies as a JSON document that :meth:`from_json` reads back."""
        data = {
            "version": 1,
            "policies": {
                domain: {
                    "mode": e.policy.mode,
                    "mx": list(e.policy.mx),
                    "max_age": e.policy.max_age,
                    "policy_id": e.policy.policy_id,
                    "fetched_at": e.fetched_at,
                }
                for domain, e in self._entries.items()
            },
        }
        return json.dumps(data, indent=1, sort_keys=True)

    @staticmethod
    def from_json(text: str | bytes, *, source: str = "document") -> STSCache:
        """A cache holding the policies of a :meth:`to_json` document.

        Never raises for what ``text`` holds: a document that cannot be
        decoded or parsed (not UTF-8, not JSON, too deeply nested, a number
        too long to convert) gives an empty cache, and an entry with a bad
        value (a wrong type, an infinite or out-of-range number, an invalid
        mx pattern) is dropped, each with a warning naming ``source``; the
        policy is then fetched again.
        """
        cache = STSCache()
        cache._restore(text, source)
        return cache

    def _restore(self, text: str | bytes, source: str) -> None:
        """Replace the entries with those of ``text``, as :meth:`from_json` says."""
        # The document is ours, but a crash, a full disk or another program may
        # have damaged it: whatever it holds costs a refetch, never an exception.
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # ValueError: not JSON, not UTF-8, an integer of more than 4300
            # digits; RecursionError: nesting deeper than the parser goes.
            log.warning("ignoring unreadable MTA-STS cache %s: %s", source, exc)
            return
        policies = data.get("policies") if isinstance(data, dict) else None
        if not isinstance(policies, dict):
            log.warning("ignoring unreadable MTA-STS cache %s: no 'policies' object", source)
            return
        entries: dict[str, CachedPolicy] = {}
        dropped: list[str] = []
        for domain, saved in policies.items():
            try:
                entries[normalize_name(domain)] = _cached_policy(domain, saved)
            except ValueError as exc:
                dropped.append(f"{domain[:80]!r}: {exc}")
        if dropped:
            log.warning(
                "ignoring unreadable MTA-STS cache entries in %s: %d dropped (%s%s)",
                source,
                len(dropped),
                dropped[0],
                ", ..." if len(dropped) > 1 else "",
            )
        self._entries = entries


def _cached_policy(domain: str, saved: object) -> CachedPolicy:
    """One saved entry, held to the rules a fetched policy meets; ValueError if it is not.

    Every value is checked for its type and range, so that no damaged value
    can raise later (an infinite or huge number in ``expired``) or stand for
    something a policy file could never say (RFC 8461 §3.2).
    """
    if not isinstance(saved, dict):
        raise ValueError("not an object")
    mode, mx, max_age = saved.get("mode"), saved.get("mx"), saved.get("max_age")
    policy_id, fetched_at = saved.get("policy_id"), saved.get("fetched_at")
    if not normalize_name(domain):
        raise ValueError("empty domain")
    if mode not in ("enforce", "testing", "none"):
        raise ValueError("bad mode")
    if not isinstance(mx, list) or not all(
        isinstance(m, str) and _MX_PATTERN.fullmatch(m) for m in mx
    ):
        raise ValueError("bad mx patterns")
    if not mx and mode != "none":
        raise ValueError("no mx pattern")  # RFC 8461 §3.2, as in STSPolicy.parse
    # RFC 8461 §3.2: max_age is 0 to 31557600 seconds; bool is an int to Python.
    if type(max_age) is not int or not 0 <= max_age <= MAX_MAX_AGE:
        raise ValueError("bad max_age")
    if not isinstance(policy_id, str) or not (policy_id == "" or _STS_ID.fullmatch(policy_id)):
        raise ValueError("bad policy_id")
    if type(fetched_at) not in (int, float) or not math.isfinite(cast(float, fetched_at)):
        raise ValueError("bad fetched_at")
    policy = STSPolicy(cast(Mode, mode), tuple(normalize_name(m) for m in mx), max_age, policy_id)
    return CachedPolicy(policy, float(cast(float, fetched_at)))
