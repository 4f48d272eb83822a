"""Verdicts: what a session proved against what its candidate needed.

:func:`check` runs after the handshake and the post-TLS EHLO: PROCEED (and
whether MAIL FROM carries REQUIRETLS) or TRY_NEXT (QUIT, next candidate,
RFC 8689 §4.2.1 ¶3).  :func:`final_verdict` runs when no candidate is left:
FAIL (5.x.x, never transmit, non-delivery report, §4.2.1 ¶3-4) or DEFER
(4.x.x, retry later).  The codes come from :mod:`smtp_rtls.policy.codes`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from .._capabilities import Capabilities
from .._reply import Reply
from .._tls import TLSInfo
from .codes import Reason, Severity, code_for
from .dane import dane_verify
from .mx import normalize_name
from .plan import (
    Action,
    Candidate,
    DeliveryPlan,
    HandshakeFailure,
    RequireTLSParam,
    Security,
    Verdict,
    end_verdict,
    skip_verdict,
)
from .tags import TLSTag

logger = logging.getLogger(__name__)

__all__ = [
    "check",
    "connection_failed",
    "final_verdict",
    "handshake_failed",
    "server_requires_starttls",
    "tls_too_weak",
]

_TLS12_OR_NEWER = frozenset({"TLSv1.2", "TLSv1.3"})
# RFC 7525 §4.1: no NULL, export or anonymous suites, nor RC4 (RFC 7465);
# at least 112 bits of security.  OpenSSL and IANA spellings both.
_WEAK_CIPHER = re.compile(r"NULL|EXP|ANON|ADH|AECDH|RC4|_DES_|-DES-|DES-CBC-|^DES", re.I)


def tls_too_weak(tls: TLSInfo) -> str | None:
    """Why ``tls`` falls short of RFC 8689 §4.2.1 ¶2 (RFC 7525), or None."""
    if tls.version not in _TLS12_OR_NEWER:
        return f"{tls.version} is older than TLS 1.2"
    if _WEAK_CIPHER.search(tls.cipher):
        return f"cipher {tls.cipher} is NULL, export, anonymous or broken"
    if tls.bits < 112:
        return f"cipher {tls.cipher} has only {tls.bits} bits"
    return None


def _next(candidate: Candidate, reason: Reason, detail: str = "") -> Verdict:
    return skip_verdict(candidate.host, reason, detail)


def check(candidate: Candidate, tls: TLSInfo | None, capabilities: Capabilities | None) -> Verdict:
    """Decide on ``candidate``'s session after the handshake and the post-TLS EHLO.

    ``tls`` is None when no TLS session was established; ``capabilities`` are
    then those of the plaintext EHLO (they tell "no STARTTLS" from "TLS
    failed").  With TLS, ``capabilities`` are the post-TLS EHLO's, or None if
    that EHLO failed.  On TRY_NEXT the caller MUST QUIT (RFC 8689 §4.2.1 ¶3).
    """
    if tls is None:
        if not candidate.handshake.required:
            return _proceed(candidate, False, "plaintext allowed", tls=False)
        if capabilities is not None and "STARTTLS" not in capabilities:
            return _next(candidate, Reason.STARTTLS_NOT_OFFERED)
        return _next(candidate, Reason.TLS_FAILED)
    if candidate.strong_tls:
        weak = tls_too_weak(tls)
        if weak is not None:
            return _next(candidate, Reason.TLS_TOO_WEAK, weak)
    if candidate.security is Security.DANE:
        outcome = dane_verify(candidate.tlsa, tls.peer_chain, candidate.names)
        if not outcome.ok:
            return _next(candidate, Reason.DANE_MISMATCH, outcome.reason)
    elif candidate.security is Security.PKIX:
        if tls.verified_name is None:
            return _next(candidate, Reason.CERTIFICATE_NOT_VERIFIED)
        if normalize_name(tls.verified_name) not in candidate.names:
            return _next(
                candidate,
                Reason.NAME_MISMATCH,
                f"verified {tls.verified_name!r}, need {candidate.names[0]!r}",
            )
    offered = capabilities is not None and "REQUIRETLS" in capabilities
    if candidate.requiretls is RequireTLSParam.REQUIRED and not offered:
        # RFC 8689 §4.2.1 step 5.
        return _next(candidate, Reason.REQUIRETLS_NOT_OFFERED)
    return _proceed(candidate, offered, candidate.why, tls=True)


def _proceed(candidate: Candidate, offered: bool, detail: str, *, tls: bool) -> Verdict:
    if candidate.requiretls is RequireTLSParam.IF_OFFERED and not offered:
        # RFC 8689 §5 ¶4 (bounces) and the relaxed levels: a REQUIRETLS message
        # leaves without the parameter, so its protection ends here; say so.
        logger.warning(
            "REQUIRETLS message sent to %s without REQUIRETLS (not offered%s)",
            candidate.host,
            "" if tls else ", no TLS",
        )
    send = offered and candidate.requiretls is not RequireTLSParam.NEVER
    return Verdict(Action.PROCEED, host=candidate.host, requiretls=send, detail=detail)


def connection_failed(candidate: Candidate, detail: str = "") -> Verdict:
    """The verdict for a host that could not be reached or answered with a 4xx greeting."""
    return _next(candidate, Reason.CONNECTION_FAILED, detail)


_HANDSHAKE_REASONS = {
    HandshakeFailure.NAME_MISMATCH: Reason.NAME_MISMATCH,
    HandshakeFailure.EXPIRED: Reason.CERTIFICATE_EXPIRED,
    HandshakeFailure.UNTRUSTED: Reason.CERTIFICATE_NOT_VERIFIED,
    HandshakeFailure.OTHER: Reason.TLS_FAILED,
}


def handshake_failed(candidate: Candidate, failure: HandshakeFailure, detail: str = "") -> Verdict:
    """The verdict when the TLS handshake for ``candidate`` failed.

    RFC 8689 §4.2.1 step 4: a certificate that does not verify is a failure
    to authenticate the server; the failure says which check failed, so a
    wrong name, an expired and an untrusted certificate are each reported as
    such.  Always TRY_NEXT: whether a candidate that allows plaintext is
    retried without STARTTLS is the driver's business (``handshake.required``).
    """
    return _next(candidate, _HANDSHAKE_REASONS[failure], detail)


def server_requires_starttls(candidate: Candidate, reply: Reply) -> Verdict:
    """The verdict when a server refused the message for lack of TLS (RFC 3207 §4: 530).

    For a TLS-optional message this ends in a non-delivery report once no
    host is left (RFC 8689 §4.2.2 ¶2).
    """
    return _next(candidate, Reason.STARTTLS_REQUIRED_BY_SERVER, f"server said {reply.code}")


# The failure that got furthest says most about why delivery failed.
_PROGRESS = (
    Reason.REQUIRETLS_NOT_OFFERED,
    Reason.DANE_MISMATCH,
    Reason.NAME_MISMATCH,
    Reason.CERTIFICATE_EXPIRED,
    Reason.CERTIFICATE_NOT_VERIFIED,
    Reason.TLS_TOO_WEAK,
    Reason.STARTTLS_REQUIRED_BY_SERVER,
    Reason.TLS_FAILED,
    Reason.STARTTLS_NOT_OFFERED,
    Reason.CONNECTION_FAILED,
    Reason.TLSA_LOOKUP_FAILED,
    Reason.MTASTS_MISMATCH,
    Reason.MTASTS_UNAVAILABLE,
    Reason.MX_NOT_VALIDATED,
    Reason.NO_ADDRESS,
    Reason.DNS_TEMPORARY_FAILURE,
)


def final_verdict(plan: DeliveryPlan, attempts: Sequence[Verdict] = ()) -> Verdict:
    """The verdict once every candidate of ``plan`` failed with ``attempts``.

    Hard (FAIL, 5.x.x: never transmit, send a non-delivery report) for a
    strict REQUIRETLS plan (RFC 8689 §4.2.1 ¶3-4) and for a TLS-optional
    message refused for lack of STARTTLS (§4.2.2 ¶2).  DEFER (4.x.x) when any
    host failed for a transient reason (unreachable, DNS), since a later try
    may pass, and for untagged messages (RFC 8461 §5).
    """
    if plan.verdict is not None and not plan.candidates:
        return plan.verdict
    if any(v.action is Action.PROCEED for v in attempts):
        raise ValueError("a candidate proceeded; there is no final failure")
    failures = [(v.reason, v) for v in (*plan.skipped, *attempts) if v.reason is not None]
    if not failures:
        raise ValueError("no failure recorded for the plan's candidates")
    reason, best = min(failures, key=lambda f: _PROGRESS.index(f[0]))
    detail = f"{best.host}: {best.detail}" if best.host else best.detail
    transient = any(code_for(r).severity is Severity.TRANSIENT for r, _ in failures)
    hard = plan.strict or (
        plan.tag is TLSTag.TLS_OPTIONAL and reason is Reason.STARTTLS_REQUIRED_BY_SERVER
    )
    if hard and not transient:
        return end_verdict(Action.FAIL, reason, detail, best.host)
    return Verdict(Action.DEFER, reason, code_for(reason).reply(final=False), best.host, detail)
