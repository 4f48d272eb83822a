"""The delivery decision: which MX hosts to try, what each must prove, and the verdict.

Three steps, all pure:

1. :func:`plan_delivery` (a :data:`~smtp_rtls.policy.requests.Lookup`) resolves
   the recipient domain's MX hosts, its MTA-STS policy, each host's addresses
   and TLSA records, and returns a :class:`DeliveryPlan`: the
   :class:`Candidate` hosts in MX order, each with the :class:`Security` its
   session must have and the :class:`Handshake` the adapter must perform, plus
   the hosts ruled out before any connection.
2. After the handshake and the post-TLS EHLO, :func:`.verdict.check` turns what the
   adapter learned (:class:`~smtp_rtls.TLSInfo`, :class:`~smtp_rtls.Capabilities`)
   into a :class:`Verdict`: PROCEED (and whether to send REQUIRETLS), or
   TRY_NEXT (QUIT, then the next candidate).
3. When no candidate is left, :func:`.verdict.final_verdict` says FAIL (5.x.x, send a
   non-delivery report) or DEFER (4.x.x, retry later).

What each message gets (the model is in ``docs/policy.rst``):

- **REQUIRETLS** (RFC 8689 §4.2.1), level ``enforce``: every host needs a
  validated name (DNSSEC MX, or an MTA-STS ``enforce`` policy listing it,
  step 2), TLS 1.2 or newer with no NULL, export or anonymous cipher (¶2,
  RFC 7525), a certificate authenticated by DANE or by PKIX against the MX
  host name (step 4; DANE wins over MTA-STS, RFC 8461 §2), and REQUIRETLS in
  the post-TLS EHLO (step 5).  A failure is soft while hosts remain and hard
  at the end: the message is never sent to that domain (¶3-4).
- **TLS-Required: No** (§3, §4.2.2): MTA-STS and DANE are not even looked up;
  STARTTLS is attempted and any certificate accepted; plaintext is allowed.
  A server that demands STARTTLS we cannot have still ends in a non-delivery
  report (§4.2.2 ¶2).
- **Default** (no tag), our choice, as an MTA would: DANE when usable TLSA
  records exist (RFC 7672), else PKIX where an MTA-STS ``enforce`` policy
  lists the host (RFC 8461 §5), else mandatory unauthenticated TLS for a
  secure but unusable TLSA set (RFC 7672 §2.2), else opportunistic TLS.
  Failing hosts are skipped; when none is left the verdict is DEFER (RFC 8461
  §5: "treat such failures as transient").
- A **bounce** of a REQUIRETLS message (null reverse path): §4.2.1 does not
  apply to it (its first paragraph); it is planned as a default message and
  carries REQUIRETLS only where offered, so it is never dropped for lack of it
  (§5 ¶3).

Relaxed levels (:class:`RequireTLSLevel`, after Postfix 3.11's
``smtp_requiretls_policy``) **depart from RFC 8689**.  They are never the
default and are chosen per destination in :class:`PolicyConfig`, for internal
hops (LMTP stores, content filters) that cannot do REQUIRETLS.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence

import attrs

from .._reply import Reply
from .codes import Reason, code_for
from .dane import TLSARecord, TLSAResult, lookup_tlsa
from .mtasts import STSCache, STSOutcome, STSPolicy, fetch_policy
from .mx import AddressResult, MXHost, MXResult, normalize_name, resolve_addresses, resolve_mx
from .requests import Lookup
from .tags import TLSTag

__all__ = [
    "Action",
    "Candidate",
    "DeliveryPlan",
    "Handshake",
    "HandshakeFailure",
    "PolicyConfig",
    "RequireTLSLevel",
    "RequireTLSParam",
    "Security",
    "Verdict",
    "plan_delivery",
]


class RequireTLSLevel(enum.Enum):
    """How strictly a REQUIRETLS message is handled for one destination.

    Only ``ENFORCE`` is RFC 8689.  The others **depart from RFC 8689**; they
    exist for internal hops and take Postfix 3.11's names and meanings.
    """

    #: RFC 8689 §4.2.1, the default.
    ENFORCE = "enforce"
    #: Not RFC 8689: TLS is required but not authenticated, and REQUIRETLS is
    #: sent only if offered; otherwise the message goes without it.
    OPPORTUNISTIC_STARTTLS = "opportunistic+starttls"
    #: Not RFC 8689: TLS optional; REQUIRETLS sent only on TLS where offered.
    OPPORTUNISTIC = "opportunistic"
    #: Not RFC 8689: the message is handled as if it had no REQUIRETLS tag.
    DISABLE = "disable"


class Security(enum.Enum):
    """What a candidate's session must prove."""

    #: TLS, the certificate matched by the host's usable TLSA records (RFC 7672).
    DANE = "dane"
    #: TLS, the certificate chained to a trusted root and valid for ``names[0]``.
    PKIX = "pkix"
    #: TLS, not authenticated (RFC 7672 §2.2 unusable TLSA set; relaxed levels).
    ENCRYPT = "encrypt"
    #: STARTTLS if offered, any certificate, plaintext allowed.
    OPPORTUNISTIC = "opportunistic"


class RequireTLSParam(enum.Enum):
    """Whether MAIL FROM carries REQUIRETLS on this candidate's session."""

    #: It must be offered after TLS, or the host fails (RFC 8689 §4.2.1 step 5).
    REQUIRED = "required"
    #: Sent when the post-TLS EHLO offers it, else left out (§5 ¶3; relaxed levels).
    IF_OFFERED = "if offered"
    #: Never sent (untagged and TLS-optional messages).
    NEVER = "never"


@attrs.frozen(slots=True)
class Handshake:
    """How the adapter must run STARTTLS and the TLS handshake for a candidate.

    ``verify``: verify the chain against the trust store and the name
    ``server_name`` (``ssl.CERT_REQUIRED`` with ``check_hostname``); report
    ``TLSInfo.verified_name`` on success.  When False, complete the handshake
    whatever the certificate (``ssl.CERT_NONE``); for DANE :func:`check`
    decides afterwards from ``TLSInfo.peer_chain``, which must then hold the
    whole chain the server sent (``need_chain``, for DANE-TA).
    ``server_name`` is always sent as SNI (RFC 7672 §8.1 for DANE).
    ``required``: without TLS the session is useless; QUIT instead of
    continuing in plaintext.  ``minimum_version`` is ``"TLSv1.2"`` when the
    session must meet RFC 8689 §4.2.1 ¶2, else None.
    """

    server_name: str
    verify: bool
    required: bool
    need_chain: bool = False
    minimum_version: str | None = None


class HandshakeFailure(enum.Enum):
    """Why a TLS handshake run as a :class:`Handshake` says failed, as the adapter saw it.

    With ``verify=True`` the adapter's TLS library checks the certificate
    during the handshake, so only the adapter can tell these apart (with
    :mod:`ssl`: ``SSLCertVerificationError.verify_code``, OpenSSL's
    ``X509_V_ERR_*`` numbers).
    """

    #: The chain is trusted but does not name ``server_name`` (X509_V_ERR 62).
    NAME_MISMATCH = "name-mismatch"
    #: A certificate of the chain has expired (X509_V_ERR 10).
    EXPIRED = "expired"
    #: The chain does not reach a trusted root (X509_V_ERR 2, 18, 19, 20, 21).
    UNTRUSTED = "untrusted"
    #: Anything else: no common protocol or cipher, a reset, a timeout.
    OTHER = "other"


@attrs.frozen(slots=True)
class Candidate:
    """One MX host to try and what its session must prove.

    ``names`` are the reference identifiers: the MX host name (or the domain
    for an implicit MX, RFC 8689 §4.2.1 step 4), then, for DANE, the
    recipient domain when the MX answer was secure (RFC 7672 §3.2.2).
    ``tlsa`` is the usable TLSA set for DANE.  ``strong_tls`` demands TLS 1.2+
    and no NULL/export/anonymous cipher.  ``why`` explains the choice.
    """

    host: str
    preference: int
    addresses: tuple[str, ...]
    security: Security
    names: tuple[str, ...]
    requiretls: RequireTLSParam
    strong_tls: bool = False
    tlsa: tuple[TLSARecord, ...] = ()
    why: str = ""

    @property
    def handshake(self) -> Handshake:
        """The handshake the adapter must perform for this candidate."""
        return Handshake(
            server_name=self.names[0],
            verify=self.security is Security.PKIX,
            required=self.security is not Security.OPPORTUNISTIC,
            need_chain=self.security is Security.DANE,
            minimum_version="TLSv1.2" if self.strong_tls else None,
        )


class Action(enum.Enum):
    """What to do after a verdict."""

    #: Send the message on this session (with REQUIRETLS if ``Verdict.requiretls``).
    PROCEED = "proceed"
    #: QUIT this session and try the next candidate (RFC 8689 §4.2.1 ¶3).
    TRY_NEXT = "try next"
    #: No candidate left; keep the message queued and retry later (4.x.x).
    DEFER = "defer"
    #: No candidate left; do not send; return a non-delivery report (5.x.x).
    FAIL = "fail"


@attrs.frozen(slots=True)
class Verdict:
    """A decision, with the reason and the reply to record when it is not PROCEED."""

    action: Action
    reason: Reason | None = None
    reply: Reply | None = None
    host: str | None = None
    detail: str = ""
    requiretls: bool = False


def _levels(value: Mapping[str, RequireTLSLevel]) -> Mapping[str, RequireTLSLevel]:
    return {k.lower().rstrip("."): RequireTLSLevel(v) for k, v in value.items()}


@attrs.frozen(slots=True)
class PolicyConfig:
    """The sender's policy settings.

    ``levels`` maps destinations to a :class:`RequireTLSLevel` for REQUIRETLS
    messages: ``"example.org"`` matches that domain, ``".example.org"`` its
    subdomains (as Postfix tables do); others get ``default_level``.
    ``mta_sts`` and ``dane`` switch those mechanisms off for every message.
    With ``sts_cache`` MTA-STS discovery goes through the cache (RFC 8461
    §5.1), and :func:`plan_delivery` needs ``now``.  ``rng`` orders MX hosts
    of equal preference.
    """

    levels: Mapping[str, RequireTLSLevel] = attrs.field(factory=dict, converter=_levels)
    default_level: RequireTLSLevel = RequireTLSLevel.ENFORCE
    mta_sts: bool = True
    dane: bool = True
    sts_cache: STSCache | None = attrs.field(default=None, eq=False)
    port: int = 25
    rng: random.Random | None = attrs.field(default=None, eq=False)

    def level_for(self, domain: str) -> RequireTLSLevel:
        """The level of ``domain``: exact entry, then ``.parent`` entries, then default."""
        domain = normalize_name(domain)
        if domain in self.levels:
            return self.levels[domain]
        labels = domain.split(".")
        for i in range(1, len(labels)):
            key = "." + ".".join(labels[i:])
            if key in self.levels:
                return self.levels[key]
        return self.default_level


class _Mode(enum.Enum):
    STRICT = "RFC 8689 §4.2.1"
    DEFAULT = "default"
    TLS_OPTIONAL = "TLS-Required: No"


@attrs.frozen(slots=True)
class DeliveryPlan:
    """The decision for one recipient domain and one message tag.

    ``candidates`` are tried in order.  ``skipped`` holds a TRY_NEXT verdict
    for each host ruled out before connecting.  ``verdict`` is set when the
    domain itself decided (null MX, no such domain, DNS failure); with no
    candidate left, :func:`~smtp_rtls.policy.verdict.final_verdict` gives
    the outcome.
    ``strict`` is True when RFC 8689 §4.2.1 applies.
    """

    domain: str
    tag: TLSTag
    level: RequireTLSLevel | None
    strict: bool
    mx: MXResult
    sts: STSOutcome | None
    candidates: tuple[Candidate, ...]
    skipped: tuple[Verdict, ...] = ()
    verdict: Verdict | None = None


def _mode(tag: TLSTag, level: RequireTLSLevel | None) -> _Mode:
    if tag is TLSTag.TLS_OPTIONAL:
        return _Mode.TLS_OPTIONAL
    if level is RequireTLSLevel.ENFORCE:
        return _Mode.STRICT
    return _Mode.DEFAULT


def skip_verdict(host: str, reason: Reason, detail: str = "") -> Verdict:
    """TRY_NEXT for ``host``, with the soft reply of ``reason``."""
    return Verdict(
        Action.TRY_NEXT, reason, code_for(reason).reply(final=False), host, detail or reason.value
    )


def end_verdict(
    action: Action, reason: Reason, detail: str = "", host: str | None = None
) -> Verdict:
    """A final ``action`` (FAIL or DEFER) with the final reply of ``reason``."""
    return Verdict(
        action, reason, code_for(reason).reply(final=True), host, detail or reason.value
    )


def plan_delivery(
    domain: str,
    tag: TLSTag,
    *,
    config: PolicyConfig | None = None,
    bounce: bool = False,
    now: float | None = None,
) -> Lookup[DeliveryPlan]:
    """Plan the delivery of a message tagged ``tag`` to ``domain``.

    ``bounce`` marks a message with a null reverse path: RFC 8689 §4.2.1
    applies only to messages whose "MAIL FROM return-path is not empty"; a
    REQUIRETLS bounce carries REQUIRETLS where offered (§5 ¶3).  ``now``
    (seconds since the epoch) is needed with ``config.sts_cache``.
    """
    config = config if config is not None else PolicyConfig()
    domain = normalize_name(domain)
    level = config.level_for(domain) if tag is TLSTag.REQUIRETLS else None
    mode = _mode(tag, None if bounce else level)
    if tag is TLSTag.REQUIRETLS and level is not RequireTLSLevel.DISABLE:
        param = RequireTLSParam.REQUIRED if mode is _Mode.STRICT else RequireTLSParam.IF_OFFERED
    else:
        param = RequireTLSParam.NEVER
    require_tls = not bounce and level is RequireTLSLevel.OPPORTUNISTIC_STARTTLS

    def plan(
        candidates: Sequence[Candidate] = (),
        skipped: Sequence[Verdict] = (),
        sts: STSOutcome | None = None,
        verdict: Verdict | None = None,
    ) -> DeliveryPlan:
        return DeliveryPlan(
            domain,
            tag,
            level,
            mode is _Mode.STRICT,
            mx,
            sts,
            tuple(candidates),
            tuple(skipped),
            verdict,
        )

    mx = yield from resolve_mx(domain, rng=config.rng)
    if mx.null_mx:
        # RFC 7505: a null MX domain accepts no mail; no host is tried.
        return plan(verdict=end_verdict(Action.FAIL, Reason.NULL_MX, mx.reason))
    if mx.temporary_failure:
        # RFC 5321 §5.1: a temporary error means queue and retry later.
        return plan(verdict=end_verdict(Action.DEFER, Reason.DNS_TEMPORARY_FAILURE, mx.reason))
    if not mx.hosts:
        return plan(verdict=end_verdict(Action.FAIL, Reason.NO_SUCH_DOMAIN, mx.reason))

    sts: STSOutcome | None = None
    if mode is not _Mode.TLS_OPTIONAL and config.mta_sts:
        # RFC 8689 §3: a TLS-Required: No message ignores MTA-STS, so it is
        # not even fetched.
        if config.sts_cache is not None:
            if now is None:
                raise ValueError("plan_delivery needs now= when the config has an sts_cache")
            sts = yield from config.sts_cache.discover(domain, now)
        else:
            sts = yield from fetch_policy(domain)
    enforce = sts.policy if sts is not None and sts.policy is not None else None
    if enforce is not None and enforce.mode != "enforce":
        # RFC 8461 §5: "testing" only reports, "none" is no policy; neither
        # validates MX host names for REQUIRETLS (RFC 8689 §4.2.1 step 2).
        enforce = None

    candidates: list[Candidate] = []
    skipped: list[Verdict] = []
    for host in mx.hosts:
        problem = _name_problem(mode, mx, host, enforce, sts)
        if problem is not None:
            skipped.append(problem)
            continue
        addresses = yield from resolve_addresses(host.name)
        if not addresses.addresses:
            reason = (
                Reason.DNS_TEMPORARY_FAILURE if addresses.temporary_failure else Reason.NO_ADDRESS
            )
            skipped.append(skip_verdict(host.name, reason, addresses.reason))
            continue
        tlsa: TLSAResult | None = None
        # RFC 7672 §2.2: TLSA records count only below a secure MX answer and
        # secure address records (or a secure alias, §2.2.3); RFC 8689 §3
        # ignores DANE for TLS-optional messages.
        if mode is not _Mode.TLS_OPTIONAL and config.dane and mx.dnssec and addresses.tlsa_bases:
            tlsa = yield from _lookup_tlsa(addresses, config.port)
            if tlsa.temporary_failure:
                # RFC 7672 §2.1.2: a failed TLSA look-up rules the host out.
                skipped.append(skip_verdict(host.name, Reason.TLSA_LOOKUP_FAILED, tlsa.reason))
                continue
        candidate = _candidate(mode, domain, host, addresses.addresses, tlsa, enforce, param)
        if isinstance(candidate, Verdict):
            skipped.append(candidate)
            continue
        if require_tls and candidate.security is Security.OPPORTUNISTIC:
            candidate = attrs.evolve(
                candidate,
                security=Security.ENCRYPT,
                strong_tls=True,
                why="opportunistic+starttls: TLS required, not authenticated (not RFC 8689)",
            )
        candidates.append(candidate)
    return plan(candidates, skipped, sts)


def _lookup_tlsa(addresses: AddressResult, port: int) -> Lookup[TLSAResult]:
    """TLSA records at the first of ``addresses.tlsa_bases`` that has any.

    RFC 7672 §2.2.3: for a "Secure CNAME" the fully CNAME-expanded name is
    tried first and the initial name after it; a failed look-up ends the
    search (§2.1.2: the host is then skipped).
    """
    bases = addresses.tlsa_bases
    for base in bases[:-1]:
        found = yield from lookup_tlsa(base, port)
        if found.records or found.temporary_failure:
            return found
    return (yield from lookup_tlsa(bases[-1], port))


def _not_listed(host: MXHost, policy: STSPolicy) -> str:
    """Why ``host`` failed MX matching, in words of a bounded size.

    Never the pattern list itself: with thousands of hosts and thousands of
    patterns, one copy per skipped host would cost their product.
    """
    count = len(policy.mx)
    return (
        f"{host.name} matches none of the {count} mx pattern{'s' * (count != 1)} "
        f"of MTA-STS policy {policy.policy_id!r} (RFC 8461 §4.1)"
    )


def _name_problem(
    mode: _Mode,
    mx: MXResult,
    host: MXHost,
    enforce: STSPolicy | None,
    sts: STSOutcome | None,
) -> Verdict | None:
    """Why ``host`` cannot be used before any look-up of its own, or None."""
    if mode is _Mode.TLS_OPTIONAL:
        return None
    if enforce is not None and not enforce.matches(host.name) and not mx.dnssec:
        # RFC 8461 §5 "enforce": MUST NOT deliver to hosts that fail MX
        # matching.  Under a secure MX, DANE may still vouch for the host
        # (RFC 8461 §2); that is decided once the TLSA set is known.
        return skip_verdict(host.name, Reason.MTASTS_MISMATCH, _not_listed(host, enforce))
    if mode is not _Mode.STRICT or mx.dnssec or mx.implicit:
        return None
    if enforce is not None:
        return None  # listed: step 2 is met by MTA-STS
    # RFC 8689 §4.2.1 step 2: an insecure MX answer needs MTA-STS validation.
    if sts is not None and sts.policy is None and (sts.temporary_failure or sts.record):
        # A policy is announced (or DNS failed) but could not be had: retrying
        # later may validate the host.
        return skip_verdict(host.name, Reason.MTASTS_UNAVAILABLE, sts.error)
    return skip_verdict(
        host.name, Reason.MX_NOT_VALIDATED, "insecure MX and no MTA-STS enforce policy"
    )


def _candidate(
    mode: _Mode,
    domain: str,
    host: MXHost,
    addresses: tuple[str, ...],
    tlsa: TLSAResult | None,
    enforce: STSPolicy | None,
    param: RequireTLSParam,
) -> Candidate | Verdict:
    """The candidate for ``host``, or the TRY_NEXT verdict that rules it out."""

    def make(
        security: Security, names: tuple[str, ...], why: str, usable: tuple[TLSARecord, ...] = ()
    ) -> Candidate:
        return Candidate(
            host.name,
            host.preference,
            addresses,
            security,
            names,
            param,
            strong_tls=mode is _Mode.STRICT,
            tlsa=usable,
            why=why,
        )

    # RFC 8689 §4.2.1 step 4: the MX host name, or the domain for an implicit MX.
    own = (host.name,)
    if mode is _Mode.TLS_OPTIONAL:
        return make(Security.OPPORTUNISTIC, own, "TLS-Required: No (RFC 8689 §3, §4.2.2)")
    if tlsa is not None and tlsa.authentication_required:
        # RFC 8461 §2: DANE takes precedence over MTA-STS.  RFC 7672 §3.2.2:
        # a secure MX adds the recipient domain to the reference identifiers.
        # The TLSA base domain (the CNAME-expanded name when it was found
        # there) is the primary reference identifier (RFC 7672 §3.2.2).
        names = tuple(dict.fromkeys((tlsa.host, domain)))
        return make(Security.DANE, names, "usable TLSA records (RFC 7672)", tlsa.usable)
    if enforce is not None and enforce.matches(host.name):
        return make(Security.PKIX, own, "MTA-STS enforce policy lists the host (RFC 8461)")
    if enforce is not None:
        # RFC 8461 §5 "enforce": no DANE to vouch for it, so the host is out.
        return skip_verdict(host.name, Reason.MTASTS_MISMATCH, _not_listed(host, enforce))
    if mode is _Mode.STRICT:
        return make(Security.PKIX, own, "secure or implicit MX; PKIX (RFC 8689 §4.2.1 step 4)")
    if tlsa is not None and tlsa.unusable_set:
        return make(Security.ENCRYPT, own, "only unusable TLSA records (RFC 7672 §2.2)")
    return make(Security.OPPORTUNISTIC, own, "no DANE or MTA-STS enforce policy")
