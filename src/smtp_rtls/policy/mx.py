"""MX resolution (RFC 5321 §5.1, RFC 7505) that knows whether DNSSEC vouched for it.

:func:`resolve_mx` is a :data:`~smtp_rtls.policy.requests.Lookup`: it yields a
``DNSQuery(domain, "MX")`` and turns the answer into an :class:`MXResult`, the
list of hosts in the order a client must try them.  :func:`resolve_addresses`
does the same for an MX host's A and AAAA records, which DANE needs to know
are secure (RFC 7672 §2.2.2).

``dnssec`` is True only when the driver marked the answer ``authentic``: the AD
bit from a resolver the configuration trusts.  An AD bit is never read here.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import attrs

from .requests import DNSAnswer, DNSQuery, Lookup

__all__ = [
    "AddressResult",
    "MXHost",
    "MXResult",
    "PatternSet",
    "normalize_name",
    "resolve_addresses",
    "resolve_mx",
    "wildcard_match",
]

# rcodes that say "try again later": the answer may exist, we could not get it.
TEMPORARY_RCODES = frozenset({"SERVFAIL", "TIMEOUT", "REFUSED"})


@attrs.frozen(slots=True)
class MXHost:
    """One mail exchanger: a host name (no trailing dot, lower case) and its preference."""

    name: str
    preference: int


@attrs.frozen(slots=True)
class MXResult:
    """The outcome of an MX look-up for ``domain``.

    Exactly one of these holds:

    * ``hosts`` is not empty: try them in this order (``implicit`` when the
      domain had no MX records and is its own exchanger, RFC 5321 §5.1);
    * ``null_mx``: the domain accepts no mail (RFC 7505), a permanent failure
      (5.1.10);
    * ``temporary_failure``: DNS could not answer now, defer (4.4.3);
    * otherwise the domain does not exist (NXDOMAIN) or has no usable MX,
      a permanent failure (5.1.2).

    ``reason`` says why in words, for logs and DSNs.
    """

    domain: str
    hosts: tuple[MXHost, ...]
    dnssec: bool
    implicit: bool = False
    null_mx: bool = False
    temporary_failure: bool = False
    reason: str = ""

    @property
    def permanent_failure(self) -> bool:
        """True when no host can ever be tried: null MX, no such domain, no usable MX."""
        return not self.hosts and not self.temporary_failure


@attrs.frozen(slots=True)
class AddressResult:
    """The A and AAAA records of ``host``.

    ``addresses`` holds IPv6 addresses first, then IPv4, each family in the
    order the resolver gave.  ``dnssec`` is True only if every answer (the A
    and the AAAA one, including a NODATA one) was authentic; DANE requires
    secure address records (RFC 7672 §2.2.2).  ``temporary_failure`` is set
    when either look-up failed, even if the other gave addresses: the host is
    then to be skipped (RFC 7672 §2.1.2), so ``addresses`` is empty and
    ``reason`` names what was found, for logs.  ``canonical_name`` is set
    when ``host`` is a CNAME alias, and ``alias_secure`` when the alias's
    own CNAME record is secure (RFC 7672 §2.2.3).
    """

    host: str
    addresses: tuple[str, ...]
    dnssec: bool
    temporary_failure: bool = False
    reason: str = ""
    #: The fully CNAME-expanded name of ``host`` when it is an alias, else "".
    canonical_name: str = ""
    #: For an alias: whether its initial CNAME record was found secure.
    alias_secure: bool = False

    @property
    def tlsa_bases(self) -> tuple[str, ...]:
        """Where to look for TLSA records, in order (RFC 7672 §2.2.3).

        Non-CNAME with secure addresses: the host.  "Secure CNAME": the fully
        expanded name, then the host.  "Insecure CNAME" (the addresses are
        insecure) whose initial CNAME is secure: the host.  Otherwise nowhere:
        DANE does not apply.
        """
        if not self.canonical_name:
            return (self.host,) if self.dnssec else ()
        if self.dnssec:
            return (self.canonical_name, self.host)
        return (self.host,) if self.alias_secure else ()


def normalize_name(name: str) -> str:
    """A domain name as this module compares it: lower case, without the root dot."""
    return name.strip().rstrip(".").lower()


def wildcard_match(pattern: str, name: str) -> bool:
    """True when the presented identifier ``pattern`` matches the reference ``name``.

    The rule shared by MTA-STS mx patterns (RFC 8461 §4.1) and certificate
    DNS-IDs for DANE-TA (RFC 7672 §3.2.3, RFC 9525 §6.3): labels compare
    case-insensitively; a ``*`` is allowed only as the whole left-most label and
    matches exactly one label, so ``*.example.com`` matches
    ``mail.example.com`` but neither ``example.com`` nor ``a.b.example.com``.
    A pattern with ``*`` anywhere else matches nothing (RFC 9525 §6.3: such an
    identifier "MUST be ignored").
    """
    p_labels = normalize_name(pattern).split(".")
    n_labels = normalize_name(name).split(".")
    if "" in p_labels or "" in n_labels:
        return False
    if "*" in "".join(p_labels[1:]) or ("*" in p_labels[0] and p_labels[0] != "*"):
        return False
    if p_labels[0] == "*":
        # A bare "*.tld" would match a whole top-level domain: refused, as
        # browsers and MTAs do; RFC 9525 §7.1 warns about broad wildcards.
        if len(p_labels) < 3:
            return False
        return len(n_labels) == len(p_labels) and n_labels[1:] == p_labels[1:]
    return n_labels == p_labels


class PatternSet:
    """Patterns matched as :func:`wildcard_match` matches them, in O(1) per name.

    For the thousands of mx patterns a 64 KiB MTA-STS policy can hold (RFC
    8461 §3.3) and the thousands of MX hosts of a 64 KiB DNS answer: trying
    each pattern on each host would cost their product.  Exact patterns go in
    one set, wildcards in another under the domain they cover (``*.a.b``
    under ``a.b``), so a name needs two set look-ups.  Patterns that
    :func:`wildcard_match` would never match are left out.
    """

    __slots__ = ("_exact", "_parents")

    def __init__(self, patterns: Iterable[str]) -> None:
        """Index ``patterns``."""
        exact: set[str] = set()
        parents: set[str] = set()
        for pattern in patterns:
            labels = normalize_name(pattern).split(".")
            if "" in labels or "*" in "".join(labels[1:]):
                continue  # never matches (see wildcard_match)
            if labels[0] == "*":
                if len(labels) >= 3:  # a bare "*.tld" matches nothing
                    parents.add(".".join(labels[1:]))
            elif "*" not in labels[0]:
                exact.add(".".join(labels))
        self._exact = frozenset(exact)
        self._parents = frozenset(parents)

    def matches(self, name: str) -> bool:
        """True when one of the patterns matches ``name`` (:func:`wildcard_match`)."""
        labels = normalize_name(name).split(".")
        if "" in labels:
            return False
        # RFC 8461 §4.1: a wildcard covers exactly one label, the left-most.
        return ".".join(labels) in self._exact or ".".join(labels[1:]) in self._parents


def _parse_mx(record: str) -> MXHost:
    preference, _, exchange = record.strip().partition(" ")
    return MXHost(name=normalize_name(exchange), preference=int(preference))


def resolve_mx(domain: str, *, rng: random.Random | None = None) -> Lookup[MXResult]:
    """Look up the MX records of ``domain`` and order them for delivery.

    ``rng`` shuffles hosts of equal preference (RFC 5321 §5.1 "MUST randomize");
    pass a seeded :class:`random.Random` for repeatable tests.
    """
    domain = normalize_name(domain)
    answer = yield DNSQuery(domain, "MX")
    assert isinstance(answer, DNSAnswer)
    secure = answer.authentic
    if answer.rcode in TEMPORARY_RCODES:
        # RFC 5321 §5.1: "If a temporary error is returned, the message MUST be
        # queued and retried later".
        return MXResult(
            domain, (), secure, temporary_failure=True, reason=f"MX lookup: {answer.rcode}"
        )
    if answer.rcode == "NXDOMAIN":
        # RFC 5321 §5.1: "If a non-existent domain error is returned, this
        # situation MUST be reported as an error."
        return MXResult(domain, (), secure, reason="domain does not exist (NXDOMAIN)")
    if answer.rcode != "NOERROR":
        return MXResult(domain, (), secure, reason=f"MX lookup failed: {answer.rcode}")
    if not answer.records:
        # RFC 5321 §5.1: an empty list of MXs means an implicit MX of preference
        # 0 pointing to the domain itself.
        return MXResult(domain, (MXHost(domain, 0),), secure, implicit=True, reason="implicit MX")
    try:
        hosts = [_parse_mx(r) for r in answer.records]
    except ValueError:
        return MXResult(domain, (), secure, temporary_failure=True, reason="malformed MX record")
    # RFC 7505 is not on disk; cited from memory, so check the wording there.
    # §3: a null MX is a single MX RR with preference 0 and an empty exchange
    # (the root ".") and a domain that publishes it MUST NOT publish other MX
    # RRs.  §4.1: a client that finds it makes no delivery attempt (and does
    # not fall back to the domain's address records) but fails the message at
    # once, as a permanent error (556, enhanced code 5.1.10).
    real = [h for h in hosts if h.name != ""]
    if not real:
        return MXResult(domain, (), secure, null_mx=True, reason="null MX: domain accepts no mail")
    # A "." mixed with real exchangers breaks RFC 7505 §3 on the publisher's
    # side; the "." itself names no host, so only the real ones are tried.
    # RFC 5321 §5.1: address records of the domain are never used when MX
    # records exist, so there is no implicit-MX fall back from here on.
    rng = rng if rng is not None else random.Random()
    # One pass to group the hosts by preference: thousands of MX records (a
    # 64 KiB answer) must not cost their number squared.
    groups: dict[int, list[MXHost]] = {}
    for h in real:
        groups.setdefault(h.preference, []).append(h)
    ordered: list[MXHost] = []
    for preference in sorted(groups):
        group = groups[preference]
        # RFC 5321 §5.1: equal preferences "MUST randomize".
        rng.shuffle(group)
        ordered.extend(group)
    return MXResult(domain, tuple(_dedupe(ordered)), secure, reason="MX")


def _dedupe(hosts: list[MXHost]) -> list[MXHost]:
    seen: set[str] = set()
    out = []
    for h in hosts:
        if h.name not in seen:
            seen.add(h.name)
            out.append(h)
    return out


def resolve_addresses(host: str) -> Lookup[AddressResult]:
    """Look up AAAA then A for ``host``; secure only if both answers are authentic."""
    host = normalize_name(host)
    addresses: list[str] = []
    secure = True
    failures: list[str] = []
    canonical = ""
    for rdtype in ("AAAA", "A"):
        answer = yield DNSQuery(host, rdtype)
        assert isinstance(answer, DNSAnswer)
        canonical = canonical or answer.canonical_name
        # RFC 7672 §2.2.2: DANE applies only when the MX host's address
        # records are secure; one insecure family spoils the whole host,
        # since the client cannot choose which address a TLSA set protects.
        secure = secure and answer.authentic
        if answer.rcode == "NOERROR":
            addresses.extend(r.strip() for r in answer.records)
        elif answer.rcode != "NXDOMAIN":
            failures.append(f"{rdtype}: {answer.rcode}")
    if failures:
        # RFC 7672 §2.1.2: a failed (or bogus) look-up is not an answer.  One
        # failing family marks the whole host, or an attacker who breaks the
        # A look-up of a signed zone would turn DANE off for it.
        found = f" (found {', '.join(addresses)})" if addresses else ""
        return AddressResult(
            host, (), False, temporary_failure=True, reason="; ".join(failures) + found
        )
    alias = normalize_name(canonical) if canonical else ""
    alias = alias if alias != host else ""
    alias_secure = False
    if alias and addresses and not secure:
        # RFC 7672 §2.2.3 "Insecure CNAME": the expansion ended insecure, but
        # a secure first CNAME still lets the initial name carry TLSA records.
        answer = yield DNSQuery(host, "CNAME")
        assert isinstance(answer, DNSAnswer)
        alias_secure = answer.rcode == "NOERROR" and bool(answer.records) and answer.authentic
    if addresses:
        return AddressResult(
            host, tuple(addresses), secure, canonical_name=alias, alias_secure=alias_secure
        )
    return AddressResult(host, (), secure, reason="no address records", canonical_name=alias)
