"""The delivery decision (RFC 8689 §4.2, RFC 8461, RFC 7672), as a truth table.

Each row is one case, readable as the specification of the policy: the
message's tag, what the recipient domain publishes and serves, and the
outcome.  The look-ups run through the real MX, MTA-STS and DANE code,
answered from tables; the TLS handshakes are real (``ssl`` in memory), made
the way the candidate's :class:`Handshake` says.
"""

from __future__ import annotations

import itertools
import logging
import random
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plan_world import DOMAIN, MX_HOST, Certificates, Server, answers, attempt

from smtp_rtls._reply import Reply
from smtp_rtls._tls import TLSInfo
from smtp_rtls.policy.codes import Reason
from smtp_rtls.policy.plan import (
    Action,
    DeliveryPlan,
    PolicyConfig,
    RequireTLSLevel,
    RequireTLSParam,
    Security,
    Verdict,
    plan_delivery,
)
from smtp_rtls.policy.requests import (
    DNSAnswer,
    DNSQuery,
    HTTPSRequest,
    HTTPSResponse,
    Request,
    Result,
    run_lookup,
)
from smtp_rtls.policy.tags import TLSTag
from smtp_rtls.policy.verdict import (
    check,
    connection_failed,
    final_verdict,
    server_requires_starttls,
    tls_too_weak,
)

REQ, OPT, DEF = TLSTag.REQUIRETLS, TLSTag.TLS_OPTIONAL, TLSTag.DEFAULT


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))


def deliver(
    certs: Certificates,
    tag: TLSTag,
    *,
    dnssec: bool,
    sts: str,
    tlsa: str,
    cert: str,
    requiretls: bool,
    config: PolicyConfig | None = None,
    bounce: bool = False,
) -> tuple[DeliveryPlan, Verdict]:
    """Plan, try every candidate like a session would, and return the outcome."""
    answer = answers(dnssec=dnssec, sts=sts, tlsa=certs.tlsa(tlsa, cert))
    config = config or PolicyConfig(rng=random.Random(1))
    plan = run_lookup(plan_delivery(DOMAIN, tag, config=config, bounce=bounce), answer)
    if plan.verdict is not None:
        return plan, plan.verdict
    server = Server(cert, requiretls)
    attempts = []
    for candidate in plan.candidates:
        verdict = check(candidate, *attempt(certs, candidate, server))
        if verdict.action is Action.PROCEED:
            return plan, verdict
        assert verdict.action is Action.TRY_NEXT
        attempts.append(verdict)
    return plan, final_verdict(plan, attempts)


def outcome(verdict: Verdict, plaintext: bool = False) -> str:
    if verdict.action is Action.PROCEED:
        if verdict.requiretls:
            return "deliver with REQUIRETLS"
        return "deliver in plaintext" if plaintext else "deliver"
    assert verdict.reply is not None
    return f"{verdict.action.value} {verdict.reply.enhanced}"


# One row per case.  Columns: message tag, DNSSEC-validated MX, MTA-STS,
# TLSA, certificate served, REQUIRETLS offered after TLS -> outcome.
# "fail" is a final 5.x.x verdict: never transmit, send a non-delivery report.
# "defer" keeps the message queued (4.x.x).
TRUTH_TABLE = [
    # -- REQUIRETLS (RFC 8689 §4.2.1), secure MX: step 2 holds ------------------
    (REQ, True, "absent", "none", "valid", True, "deliver with REQUIRETLS"),
    (REQ, True, "absent", "none", "valid", False, "fail 5.7.30"),  # step 5
    (REQ, True, "absent", "none", "untrusted", True, "fail 5.7.10"),  # step 4, PKIX
    (REQ, True, "absent", "none", "wrong-name", True, "fail 5.7.10"),  # step 4, name
    (REQ, True, "absent", "none", "no-starttls", True, "fail 5.7.10"),  # no TLS
    (REQ, True, "absent", "EE", "valid", True, "deliver with REQUIRETLS"),
    (REQ, True, "absent", "EE", "valid", False, "fail 5.7.30"),
    (REQ, True, "absent", "EE", "untrusted", True, "deliver with REQUIRETLS"),  # DANE-EE: no PKIX
    (REQ, True, "absent", "EE", "wrong-name", True, "deliver with REQUIRETLS"),  # nor names
    (REQ, True, "absent", "stale-EE", "valid", True, "fail 5.7.10"),  # DANE mismatch
    (REQ, True, "absent", "TA", "valid", True, "deliver with REQUIRETLS"),
    (REQ, True, "absent", "TA", "untrusted", True, "fail 5.7.10"),  # not below the TA
    (REQ, True, "absent", "TA", "wrong-name", True, "fail 5.7.10"),  # DANE-TA checks names
    (REQ, True, "absent", "TA", "valid", False, "fail 5.7.30"),
    (REQ, True, "absent", "unusable", "valid", True, "deliver with REQUIRETLS"),  # PKIX instead
    (REQ, True, "absent", "unusable", "untrusted", True, "fail 5.7.10"),
    (REQ, True, "enforce", "none", "valid", True, "deliver with REQUIRETLS"),
    (REQ, True, "mismatch", "none", "valid", True, "fail 5.7.10"),  # RFC 8461 §5 enforce
    (REQ, True, "mismatch", "EE", "untrusted", True, "deliver with REQUIRETLS"),  # DANE first
    (REQ, True, "fetch-fail", "none", "valid", True, "deliver with REQUIRETLS"),
    (REQ, True, "testing", "none", "wrong-name", True, "fail 5.7.10"),
    # -- REQUIRETLS, insecure MX: only an MTA-STS enforce policy validates ----
    (REQ, False, "absent", "none", "valid", True, "fail 5.7.10"),  # step 2
    (REQ, False, "absent", "EE", "untrusted", True, "fail 5.7.10"),  # insecure: no DANE
    (REQ, False, "enforce", "none", "valid", True, "deliver with REQUIRETLS"),
    (REQ, False, "enforce", "none", "valid", False, "fail 5.7.30"),
    (REQ, False, "enforce", "none", "untrusted", True, "fail 5.7.10"),
    (REQ, False, "enforce", "none", "wrong-name", True, "fail 5.7.10"),
    (REQ, False, "enforce", "none", "no-starttls", True, "fail 5.7.10"),
    (REQ, False, "enforce", "EE", "untrusted", True, "fail 5.7.10"),  # TLSA ignored, PKIX
    (REQ, False, "testing", "none", "valid", True, "fail 5.7.10"),  # testing validates nothing
    (REQ, False, "mode-none", "none", "valid", True, "fail 5.7.10"),
    (REQ, False, "mismatch", "none", "valid", True, "fail 5.7.10"),
    (REQ, False, "fetch-fail", "none", "valid", True, "defer 4.7.10"),  # retry may validate
    # -- TLS-Required: No (RFC 8689 §3, §4.2.2): policy ignored, TLS attempted -
    (OPT, True, "enforce", "EE", "valid", True, "deliver"),  # never sends REQUIRETLS
    (OPT, True, "mismatch", "stale-EE", "untrusted", False, "deliver"),
    (OPT, True, "absent", "TA", "wrong-name", False, "deliver"),
    (OPT, False, "enforce", "none", "untrusted", False, "deliver"),
    (OPT, False, "mismatch", "none", "wrong-name", False, "deliver"),
    (OPT, True, "enforce", "EE", "no-starttls", False, "deliver in plaintext"),
    (OPT, False, "fetch-fail", "none", "no-starttls", False, "deliver in plaintext"),
    # -- default (no tag): an MTA honouring DANE and MTA-STS enforce ---------
    (DEF, True, "absent", "none", "untrusted", True, "deliver"),  # opportunistic
    (DEF, True, "absent", "none", "no-starttls", False, "deliver in plaintext"),
    (DEF, True, "absent", "EE", "untrusted", True, "deliver"),
    (DEF, True, "absent", "stale-EE", "valid", True, "defer 4.7.10"),  # RFC 7672: no fallback
    (DEF, True, "absent", "TA", "wrong-name", False, "defer 4.7.10"),
    (DEF, True, "absent", "EE", "no-starttls", False, "defer 4.7.10"),  # TLSA: TLS mandatory
    (DEF, True, "absent", "unusable", "untrusted", False, "deliver"),  # TLS, unauthenticated
    (DEF, True, "absent", "unusable", "no-starttls", False, "defer 4.7.10"),
    (DEF, True, "mismatch", "EE", "valid", False, "deliver"),  # DANE over MTA-STS
    (DEF, True, "mismatch", "none", "valid", False, "defer 4.7.10"),
    (DEF, False, "enforce", "none", "valid", False, "deliver"),
    (DEF, False, "enforce", "none", "wrong-name", False, "defer 4.7.10"),  # RFC 8461 §5
    (DEF, False, "enforce", "none", "untrusted", False, "defer 4.7.10"),
    (DEF, False, "enforce", "none", "no-starttls", False, "defer 4.7.10"),
    (DEF, False, "mismatch", "none", "valid", False, "defer 4.7.10"),
    (DEF, False, "testing", "none", "untrusted", False, "deliver"),  # testing only reports
    (DEF, False, "mode-none", "none", "no-starttls", False, "deliver in plaintext"),
    (DEF, False, "fetch-fail", "none", "untrusted", False, "deliver"),
    (DEF, False, "absent", "EE", "untrusted", False, "deliver"),  # insecure TLSA ignored
]


@pytest.mark.parametrize(
    ("tag", "dnssec", "sts", "tlsa", "cert", "requiretls", "expected"),
    TRUTH_TABLE,
    ids=[
        f"{t.name}-{'dnssec' if d else 'insecure'}-sts:{s}-tlsa:{a}-{c}-{'rt' if r else 'nort'}"
        for t, d, s, a, c, r, _ in TRUTH_TABLE
    ],
)
def test_truth_table(
    certs: Certificates,
    tag: TLSTag,
    dnssec: bool,
    sts: str,
    tlsa: str,
    cert: str,
    requiretls: bool,
    expected: str,
) -> None:
    _, verdict = deliver(
        certs, tag, dnssec=dnssec, sts=sts, tlsa=tlsa, cert=cert, requiretls=requiretls
    )
    assert outcome(verdict, plaintext=cert == "no-starttls") == expected


# Relaxed levels for REQUIRETLS messages (NOT RFC 8689; Postfix 3.11 names) and
# REQUIRETLS bounces (RFC 8689 §5 ¶3).  Insecure MX, no MTA-STS: under
# "enforce" every one of these rows would be "fail 5.7.10".
LEVELS = RequireTLSLevel
RELAXED_TABLE = [
    (LEVELS.OPPORTUNISTIC_STARTTLS, "untrusted", False, "deliver"),
    (LEVELS.OPPORTUNISTIC_STARTTLS, "wrong-name", True, "deliver with REQUIRETLS"),
    (LEVELS.OPPORTUNISTIC_STARTTLS, "no-starttls", True, "defer 4.7.10"),
    (LEVELS.OPPORTUNISTIC, "untrusted", True, "deliver with REQUIRETLS"),
    (LEVELS.OPPORTUNISTIC, "untrusted", False, "deliver"),
    (LEVELS.OPPORTUNISTIC, "no-starttls", True, "deliver in plaintext"),
    (LEVELS.DISABLE, "valid", True, "deliver"),  # as if untagged: no REQUIRETLS
    (LEVELS.DISABLE, "no-starttls", True, "deliver in plaintext"),
]


@pytest.mark.parametrize(("level", "cert", "requiretls", "expected"), RELAXED_TABLE)
def test_relaxed_levels_depart_from_rfc8689(
    certs: Certificates, level: RequireTLSLevel, cert: str, requiretls: bool, expected: str
) -> None:
    config = PolicyConfig(levels={DOMAIN: level}, rng=random.Random(1))
    _, verdict = deliver(
        certs,
        REQ,
        dnssec=False,
        sts="absent",
        tlsa="none",
        cert=cert,
        requiretls=requiretls,
        config=config,
    )
    assert outcome(verdict, plaintext=cert == "no-starttls") == expected
    _, strict = deliver(
        certs, REQ, dnssec=False, sts="absent", tlsa="none", cert=cert, requiretls=requiretls
    )
    assert outcome(strict) == "fail 5.7.10"


@pytest.mark.parametrize(
    ("cert", "requiretls", "expected"),
    [
        ("untrusted", False, "deliver"),
        ("valid", True, "deliver with REQUIRETLS"),
        ("no-starttls", True, "deliver in plaintext"),
    ],
)
def test_rfc8689_s5_requiretls_bounce_is_never_dropped_for_lack_of_requiretls(
    certs: Certificates, cert: str, requiretls: bool, expected: str
) -> None:
    """§4.2.1 applies only to non-empty reverse paths; §5 ¶3: a bounce goes anyway."""
    plan, verdict = deliver(
        certs,
        REQ,
        dnssec=False,
        sts="absent",
        tlsa="none",
        cert=cert,
        requiretls=requiretls,
        bounce=True,
    )
    assert not plan.strict
    assert outcome(verdict, plaintext=cert == "no-starttls") == expected


def test_levels_are_chosen_per_destination() -> None:
    config = PolicyConfig(
        levels={"lmtp.internal": LEVELS.OPPORTUNISTIC, ".corp.example": LEVELS.DISABLE}
    )
    assert config.level_for("lmtp.internal") is LEVELS.OPPORTUNISTIC
    assert config.level_for("a.b.corp.example") is LEVELS.DISABLE
    assert config.level_for("corp.example") is LEVELS.ENFORCE
    assert config.level_for("example.org") is LEVELS.ENFORCE
    assert PolicyConfig(default_level=LEVELS.DISABLE).level_for("x.org") is LEVELS.DISABLE


# -- every combination: the invariants the table illustrates ----------------

_PRODUCT = list(
    itertools.product(
        [REQ, OPT, DEF],
        [True, False],
        ["absent", "enforce", "testing", "mode-none", "mismatch", "fetch-fail"],
        ["none", "EE", "TA", "unusable", "stale-EE"],
        ["valid", "untrusted", "wrong-name", "no-starttls"],
        [True, False],
    )
)


def test_invariants_over_every_combination(certs: Certificates) -> None:
    """RFC 8689 §4.2.1 ¶3: a REQUIRETLS message is only sent over a session that
    met every step; TLS-optional messages always go (§4.2.2); untagged ones never
    carry REQUIRETLS and never bounce for TLS reasons."""
    for tag, dnssec, sts, tlsa, cert, rt in _PRODUCT:
        _, verdict = deliver(
            certs, tag, dnssec=dnssec, sts=sts, tlsa=tlsa, cert=cert, requiretls=rt
        )
        case = (tag, dnssec, sts, tlsa, cert, rt, verdict)
        if tag is REQ:
            if verdict.action is Action.PROCEED:
                assert verdict.requiretls and rt and cert != "no-starttls", case
                assert dnssec or sts == "enforce", case
                if tlsa not in ("EE",) or not dnssec:
                    assert cert == "valid", case
            else:
                assert verdict.action in (Action.FAIL, Action.DEFER), case
                assert verdict.reply is not None and verdict.reply.enhanced is not None
                assert str(verdict.reply.enhanced) in ("5.7.10", "5.7.30", "4.7.10"), case
        elif tag is OPT:
            assert verdict.action is Action.PROCEED and not verdict.requiretls, case
        else:
            assert not verdict.requiretls, case
            assert verdict.action in (Action.PROCEED, Action.DEFER), case


# -- plans: what each candidate must prove ----------------------------------


def make_plan(
    tag: TLSTag, *, dnssec: bool, sts: str, tlsa: tuple[str, ...] = (), **kw: object
) -> DeliveryPlan:
    answer = answers(dnssec=dnssec, sts=sts, tlsa=tlsa, **kw)  # type: ignore[arg-type]
    return run_lookup(
        plan_delivery(DOMAIN, tag, config=PolicyConfig(rng=random.Random(3))), answer
    )


def test_dane_candidate_handshake_skips_pkix_and_needs_the_chain(certs: Certificates) -> None:
    plan = make_plan(REQ, dnssec=True, sts="absent", tlsa=certs.tlsa("EE", "valid"))
    (candidate,) = plan.candidates
    assert candidate.security is Security.DANE
    assert candidate.names == (MX_HOST, DOMAIN)  # RFC 7672 §3.2.2
    hs = candidate.handshake
    assert (hs.verify, hs.required, hs.need_chain) == (False, True, True)
    assert hs.server_name == MX_HOST and hs.minimum_version == "TLSv1.2"
    assert candidate.requiretls is RequireTLSParam.REQUIRED


def test_mtasts_candidate_verifies_pkix_against_the_mx_host() -> None:
    plan = make_plan(REQ, dnssec=False, sts="enforce")
    (candidate,) = plan.candidates
    assert candidate.security is Security.PKIX and candidate.names == (MX_HOST,)
    assert candidate.handshake.verify and candidate.handshake.required
    assert plan.sts is not None and plan.sts.policy is not None


def test_rfc8689_s3_tls_optional_does_not_look_up_mtasts_or_tlsa() -> None:
    asked: list[DNSQuery] = []
    inner = answers(dnssec=True, sts="enforce", tlsa=("3 1 1 " + "00" * 32,))

    def answer(request: Request) -> Result:
        assert isinstance(request, DNSQuery)
        asked.append(request)
        return inner(request)

    plan = run_lookup(plan_delivery(DOMAIN, OPT), answer)
    kinds = {q.rdtype for q in asked}
    assert kinds == {"MX", "A", "AAAA"}
    assert plan.sts is None
    (candidate,) = plan.candidates
    assert candidate.security is Security.OPPORTUNISTIC
    assert not candidate.handshake.required and not candidate.handshake.verify


def test_rfc8689_s4_2_1_step4_implicit_mx_checks_the_domain_name() -> None:
    plan = make_plan(
        REQ,
        dnssec=False,
        sts="absent",
        mx=(),
        hosts=(DOMAIN,),
    )
    (candidate,) = plan.candidates
    # No MX records: the domain is the host, and its name is the one checked;
    # step 2 (MX validation) does not apply to an address-record delivery.
    assert plan.mx.implicit
    assert candidate.names == (DOMAIN,) and candidate.security is Security.PKIX


@pytest.mark.parametrize(
    ("rcode", "records", "expected"),
    [
        ("NOERROR", ("0 .",), "fail 5.1.10"),  # RFC 7505 null MX
        ("NXDOMAIN", (), "fail 5.1.2"),
        ("SERVFAIL", (), "defer 4.4.3"),  # RFC 5321 §5.1: queue and retry
    ],
)
@pytest.mark.parametrize("tag", [REQ, OPT, DEF])
def test_domain_level_outcomes(
    tag: TLSTag, rcode: str, records: tuple[str, ...], expected: str
) -> None:
    mx_answer = DNSAnswer(DNSQuery(DOMAIN, "MX"), rcode, records)
    plan = make_plan(tag, dnssec=True, sts="absent", extra={(DOMAIN, "MX"): mx_answer})
    assert plan.candidates == ()
    assert plan.verdict is not None
    assert outcome(plan.verdict) == expected
    assert final_verdict(plan) == plan.verdict


def test_candidates_follow_mx_order_and_hosts_without_address_are_skipped() -> None:
    hosts = ("mx1.example.org", "mx2.example.org", "mx3.example.org", "gone.example.org")
    mx = (
        "30 mx3.example.org.",
        "10 mx1.example.org.",
        "20 mx2.example.org.",
        "5 gone.example.org.",
    )
    gone_a = DNSAnswer(DNSQuery("gone.example.org", "A"), "NXDOMAIN")
    gone_aaaa = DNSAnswer(DNSQuery("gone.example.org", "AAAA"), "NXDOMAIN")
    plan = make_plan(
        REQ,
        dnssec=True,
        sts="absent",
        mx=mx,
        hosts=hosts,
        extra={("gone.example.org", "A"): gone_a, ("gone.example.org", "AAAA"): gone_aaaa},
    )
    assert [c.host for c in plan.candidates] == list(hosts[:3])
    assert [(v.host, v.reason) for v in plan.skipped] == [("gone.example.org", Reason.NO_ADDRESS)]


def test_rfc8689_s4_2_1_every_mx_tried_then_fail_with_the_furthest_reason(
    certs: Certificates,
) -> None:
    """¶3: each failing host is left (QUIT) for the next; ¶4: 5.7.30 reported when
    one host got as far as the post-TLS EHLO."""
    hosts = ("mx1.example.org", "mx2.example.org", MX_HOST)
    mx = [f"{10 * i} {h}." for i, h in enumerate(hosts)]
    plan = make_plan(REQ, dnssec=True, sts="absent", mx=mx, hosts=hosts)
    c1, c2, c3 = plan.candidates
    v1 = check(c1, None, Server("no-starttls").capabilities(None))
    assert (v1.action, v1.reason) == (Action.TRY_NEXT, Reason.STARTTLS_NOT_OFFERED)
    assert v1.reply is not None and str(v1.reply.enhanced) == "4.7.10"  # soft while MX remain
    # mx2 serves a certificate for mx.example.org: the PKIX handshake fails.
    tls = certs.handshake(c2.handshake, "valid")
    assert tls is None
    v2 = check(c2, tls, Server("valid").capabilities(tls))
    assert (v2.action, v2.reason) == (Action.TRY_NEXT, Reason.TLS_FAILED)
    tls = certs.handshake(c3.handshake, "valid")
    v3 = check(c3, tls, Server("valid", requiretls=False).capabilities(tls))
    assert (v3.action, v3.reason) == (Action.TRY_NEXT, Reason.REQUIRETLS_NOT_OFFERED)
    assert v3.reply is not None and str(v3.reply.enhanced) == "4.7.30"
    final = final_verdict(plan, [v1, v2, v3])
    assert final.action is Action.FAIL
    assert final.reply == Reply(550, "REQUIRETLS support required", "5.7.30")


def test_an_unreachable_host_turns_the_end_into_defer() -> None:
    """A host we could not reach may pass later: defer (4.x.x), do not bounce yet."""
    hosts = ("mx1.example.org", "mx2.example.org")
    plan = make_plan(REQ, dnssec=True, sts="absent", mx=[f"10 {h}." for h in hosts], hosts=hosts)
    c1, c2 = plan.candidates
    attempts = [connection_failed(c1, "timeout"), check(c2, None, None)]
    final = final_verdict(plan, attempts)
    assert final.action is Action.DEFER
    assert final.reply is not None and str(final.reply.enhanced) == "4.7.10"


def test_rfc8689_s4_2_2_tls_optional_refused_for_lack_of_starttls_bounces() -> None:
    """§4.2.2 ¶2: a server that demands STARTTLS we cannot do yields an NDR."""
    plan = make_plan(OPT, dnssec=False, sts="absent")
    (candidate,) = plan.candidates
    assert check(candidate, None, Server("no-starttls").capabilities(None)).action is (
        Action.PROCEED
    )
    refused = server_requires_starttls(
        candidate, Reply(530, "Must issue a STARTTLS command first", "5.7.0")
    )
    assert refused.action is Action.TRY_NEXT
    final = final_verdict(plan, [refused])
    assert final.action is Action.FAIL
    assert final.reply is not None and str(final.reply.enhanced) == "5.7.10"


def test_default_message_refused_for_lack_of_starttls_is_deferred() -> None:
    plan = make_plan(DEF, dnssec=False, sts="absent")
    (candidate,) = plan.candidates
    refused = server_requires_starttls(
        candidate, Reply(530, "Must issue a STARTTLS command first")
    )
    assert final_verdict(plan, [refused]).action is Action.DEFER


def test_tlsa_lookup_failure_rules_the_host_out() -> None:
    """RFC 7672 §2.1.2: a failed TLSA look-up: do not use the host; retry later."""
    failing = DNSAnswer(DNSQuery(f"_25._tcp.{MX_HOST}", "TLSA"), "SERVFAIL")
    plan = make_plan(
        REQ, dnssec=True, sts="absent", extra={(f"_25._tcp.{MX_HOST}", "TLSA"): failing}
    )
    assert plan.candidates == ()
    assert [v.reason for v in plan.skipped] == [Reason.TLSA_LOOKUP_FAILED]
    final = final_verdict(plan)
    assert final.action is Action.DEFER
    assert final.reply is not None and str(final.reply.enhanced) == "4.4.3"


def test_final_verdict_refuses_a_proceeding_attempt() -> None:
    plan = make_plan(DEF, dnssec=False, sts="absent")
    with pytest.raises(ValueError):
        final_verdict(plan, [Verdict(Action.PROCEED)])
    with pytest.raises(ValueError):
        final_verdict(plan, [])


def test_sts_cache_needs_now_and_is_used() -> None:
    from smtp_rtls.policy.mtasts import STSCache

    cache = STSCache()
    config = PolicyConfig(sts_cache=cache, rng=random.Random(0))
    answer = answers(dnssec=False, sts="enforce")
    with pytest.raises(ValueError):
        run_lookup(plan_delivery(DOMAIN, REQ, config=config), answer)
    plan = run_lookup(plan_delivery(DOMAIN, REQ, config=config, now=1000.0), answer)
    assert plan.candidates and plan.candidates[0].security is Security.PKIX
    # The policy is now cached: a failing fetch still validates the host.
    failing = answers(dnssec=False, sts="fetch-fail")
    again = run_lookup(plan_delivery(DOMAIN, REQ, config=config, now=2000.0), failing)
    assert again.candidates and again.sts is not None and again.sts.from_cache


# -- RFC 8689 §4.2.1 ¶2 / RFC 7525: the strength of the session ---------------


@pytest.mark.parametrize(
    ("version", "cipher", "bits", "weak"),
    [
        ("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, False),
        ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", 256, False),
        ("TLSv1.1", "ECDHE-RSA-AES256-SHA", 256, True),
        ("TLSv1", "AES128-SHA", 128, True),
        ("TLSv1.2", "NULL-SHA256", 0, True),
        ("TLSv1.2", "EXP-RC4-MD5", 40, True),
        ("TLSv1.2", "ADH-AES256-GCM-SHA384", 256, True),
        ("TLSv1.2", "AECDH-AES256-SHA", 256, True),
        ("TLSv1.2", "TLS_DH_anon_WITH_AES_128_CBC_SHA", 128, True),
        ("TLSv1.2", "DES-CBC3-SHA", 112, True),
        ("TLSv1.2", "SOME-NEW-CIPHER", 64, True),
    ],
)
def test_rfc8689_s4_2_1_requiretls_needs_tls12_and_no_weak_cipher(
    version: str, cipher: str, bits: int, weak: bool
) -> None:
    tls = TLSInfo(version, cipher, bits, (), MX_HOST)
    assert (tls_too_weak(tls) is not None) is weak
    strict = make_plan(REQ, dnssec=False, sts="enforce").candidates[0]
    verdict = check(strict, tls, Server().capabilities(tls))
    assert verdict.action is (Action.TRY_NEXT if weak else Action.PROCEED)
    if weak:
        assert verdict.reason is Reason.TLS_TOO_WEAK
    # An untagged message does not hold the session to RFC 8689's bar.
    default = make_plan(DEF, dnssec=False, sts="enforce").candidates[0]
    assert check(default, tls, Server().capabilities(tls)).action is Action.PROCEED


def test_pkix_candidate_needs_the_verified_name() -> None:
    candidate = make_plan(REQ, dnssec=False, sts="enforce").candidates[0]
    caps = Server().capabilities(TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128))
    unverified = TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, (), None)
    other = TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, (), "evil.example.net")
    right = TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, (), "MX.example.org.")
    assert check(candidate, unverified, caps).reason is Reason.CERTIFICATE_NOT_VERIFIED
    assert check(candidate, other, caps).reason is Reason.NAME_MISMATCH
    assert check(candidate, right, caps).requiretls


def test_disable_level_sends_no_requiretls_on_a_bounce_either(certs: Certificates) -> None:
    config = PolicyConfig(levels={DOMAIN: LEVELS.DISABLE}, rng=random.Random(1))
    _, verdict = deliver(
        certs,
        REQ,
        dnssec=True,
        sts="absent",
        tlsa="none",
        cert="valid",
        requiretls=True,
        config=config,
        bounce=True,
    )
    assert outcome(verdict) == "deliver"


@given(
    prefs=st.lists(st.integers(0, 3), min_size=1, max_size=6),
    dnssec=st.booleans(),
    tag=st.sampled_from([REQ, OPT, DEF]),
    seed=st.integers(0, 1000),
)
def test_every_mx_host_is_a_candidate_or_skipped_in_preference_order(
    prefs: list[int], dnssec: bool, tag: TLSTag, seed: int
) -> None:
    """RFC 5321 §5.1: hosts in preference order; none silently lost."""
    hosts = [f"mx{i}.example.org" for i in range(len(prefs))]
    mx = [f"{p} {h}." for p, h in zip(prefs, hosts, strict=True)]
    answer = answers(dnssec=dnssec, sts="absent", mx=mx, hosts=hosts)
    config = PolicyConfig(rng=random.Random(seed))
    plan = run_lookup(plan_delivery(DOMAIN, tag, config=config), answer)
    seen = [c.host for c in plan.candidates] + [v.host for v in plan.skipped]
    assert sorted(seen) == sorted(hosts)
    order = [c.preference for c in plan.candidates]
    assert order == sorted(order)
    if tag is REQ and not dnssec:
        assert plan.candidates == ()  # §4.2.1 step 2: nothing validates these names
    else:
        assert len(plan.candidates) == len(hosts)


def _bounce_warnings(
    certs: Certificates, caplog: pytest.LogCaptureFixture, *, requiretls: bool
) -> list[logging.LogRecord]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="smtp_rtls.policy.verdict"):
        deliver(
            certs,
            REQ,
            dnssec=False,
            sts="absent",
            tlsa="none",
            cert="valid",
            requiretls=requiretls,
            bounce=True,
        )
    return list(caplog.records)


def test_rfc8689_s5_sending_a_requiretls_bounce_without_requiretls_is_logged(
    certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    """§5 ¶4: information may leak when a bounce cannot go with REQUIRETLS; log it."""
    records = _bounce_warnings(certs, caplog, requiretls=False)
    assert any("without REQUIRETLS" in r.getMessage() for r in records)
    assert not _bounce_warnings(certs, caplog, requiretls=True)


# -- cost: within the protocol caps, plan_delivery grows linearly --------------
#
# A 64 KiB DNS answer holds thousands of MX records and a 64 KiB MTA-STS policy
# (RFC 8461 §3.3) thousands of mx patterns.  Matching every host against every
# pattern, and copying the pattern list into every skipped host's detail, cost
# their product (minutes of CPU, hundreds of MiB).  These tests measure the
# work (Python calls, which do not depend on the machine) and the size of the
# result, never the time.


def _crowded_domain(hosts: int, patterns: int, *, dnssec: bool) -> Callable[[Request], Result]:
    """``hosts`` MX hosts, an enforce policy of ``patterns`` patterns listing none of them."""
    mx = tuple(f"{i % 7} mx{i}.example.org." for i in range(hosts))
    policy = "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n" + "".join(
        f"mx: {'*.' if j % 2 else ''}p{j}.example.net\r\n" for j in range(patterns)
    )

    def answer(request: Request) -> Result:
        if isinstance(request, HTTPSRequest):
            return HTTPSResponse(request, 200, "text/plain", policy.encode())
        assert isinstance(request, DNSQuery)
        records = {
            "MX": mx,
            "TXT": ("v=STSv1; id=crowded",),
            "A": ("192.0.2.1",),
        }.get(request.rdtype, ())
        return DNSAnswer(request, "NOERROR", records, authentic=dnssec)

    return answer


def _plan_and_count_calls(
    hosts: int, patterns: int, tag: TLSTag, dnssec: bool
) -> tuple[int, DeliveryPlan]:
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event == "call"

    answer = _crowded_domain(hosts, patterns, dnssec=dnssec)
    config = PolicyConfig(rng=random.Random(1))
    sys.setprofile(profile)
    try:
        plan = run_lookup(plan_delivery(DOMAIN, tag, config=config), answer)
    finally:
        sys.setprofile(None)
    return calls, plan


@pytest.mark.parametrize(("tag", "dnssec"), [(REQ, False), (DEF, False), (DEF, True)])
def test_rfc8461_plan_work_grows_linearly_with_hosts_and_patterns(
    tag: TLSTag, dnssec: bool
) -> None:
    """Doubling both hosts and patterns doubles the work: O(hosts + patterns)."""
    small, plan = _plan_and_count_calls(200, 200, tag, dnssec)
    assert len(plan.skipped) == 200 and not plan.candidates
    assert {v.reason for v in plan.skipped} == {Reason.MTASTS_MISMATCH}
    large, _ = _plan_and_count_calls(400, 400, tag, dnssec)
    # Linear: x2.  Hosts x patterns: x4.
    assert large < 2.5 * small, (small, large)


@pytest.mark.parametrize(("tag", "dnssec"), [(REQ, False), (DEF, True)])
def test_rfc8461_skipped_host_detail_names_the_reason_not_the_patterns(
    tag: TLSTag, dnssec: bool
) -> None:
    """What is kept per skipped host does not grow with the policy."""
    _, few = _plan_and_count_calls(100, 2, tag, dnssec)
    _, many = _plan_and_count_calls(100, 2000, tag, dnssec)  # ~50 KiB
    assert len(many.skipped) == len(few.skipped) == 100
    for verdict in many.skipped:
        assert verdict.reason is Reason.MTASTS_MISMATCH
        assert verdict.detail.startswith(f"{verdict.host} matches none of the 2000 mx patterns")
        assert "p17.example.net" not in verdict.detail
    # 1000 times the patterns: a few more digits per host, nothing else.
    size = sum(len(v.detail) for v in many.skipped)
    assert size <= sum(len(v.detail) for v in few.skipped) + 5 * len(many.skipped)
    final = final_verdict(many)
    assert final.reason is Reason.MTASTS_MISMATCH and len(final.detail) < 200
