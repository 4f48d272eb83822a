"""The delivery decision against real parts on loopback (the ``lab`` fixture).

unbound validates the lab zones; the MTA-STS host is a real HTTPS server;
the TLS handshakes go over real sockets to a server with the lab's
certificate chain (leaf for mx.example.test and friends + the lab CA),
run exactly as each candidate's :class:`Handshake` says.

example.test: signed, TLSA 3 1 1 and 2 1 1, MTA-STS enforce listing its MX.
unsigned.test: insecure, MTA-STS testing.  bogus.test: the MX host's A
record fails validation.  expired.test: every signature expired.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading

import pytest

from conftest_lab import Lab
from smtp_rtls._capabilities import Capabilities
from smtp_rtls._tls import TLSInfo
from smtp_rtls.io.fulfil import peer_chain
from smtp_rtls.policy.codes import Reason
from smtp_rtls.policy.plan import (
    Action,
    Candidate,
    DeliveryPlan,
    PolicyConfig,
    Security,
    plan_delivery,
)
from smtp_rtls.policy.requests import run_lookup
from smtp_rtls.policy.tags import TLSTag
from smtp_rtls.policy.verdict import check, final_verdict

pytestmark = pytest.mark.lab

REQUIRETLS_EHLO = Capabilities("mx.example.test", entries=["PIPELINING", "REQUIRETLS"])


def plan(lab: Lab, domain: str, tag: TLSTag, *, trusted: bool = True) -> DeliveryPlan:
    config = PolicyConfig(rng=random.Random(0))
    return run_lookup(plan_delivery(domain, tag, config=config), lab.fulfiller(trusted=trusted))


def handshake(
    lab: Lab, candidate: Candidate, chain_file: str = "server.chain.pem"
) -> TLSInfo | None:
    """Connect to a loopback TLS server and handshake as ``candidate.handshake`` says."""
    hs = candidate.handshake
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(lab.dir / "pki" / chain_file))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass  # the client refused the certificate: that is the test's business

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if hs.verify:
        client.load_verify_locations(cafile=str(lab.ca))
    else:
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
    if hs.minimum_version == "TLSv1.2":
        client.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname=hs.server_name) as tls,
        ):
            name, _, bits = tls.cipher() or ("", "", 0)
            return TLSInfo(
                tls.version() or "",
                name,
                bits,
                peer_chain(tls),
                hs.server_name if hs.verify else None,
            )
    except ssl.SSLError:
        return None
    finally:
        thread.join(10)
        listener.close()


def test_signed_domain_with_tlsa_is_delivered_by_dane(lab: Lab) -> None:
    p = plan(lab, "example.test", TLSTag.REQUIRETLS)
    assert p.strict and p.mx.dnssec
    (candidate,) = p.candidates
    assert candidate.security is Security.DANE
    assert {r.usage for r in candidate.tlsa} == {2, 3}
    assert not candidate.handshake.verify  # DANE decides after the handshake
    tls = handshake(lab, candidate)
    assert tls is not None
    verdict = check(candidate, tls, REQUIRETLS_EHLO)
    assert verdict.action is Action.PROCEED and verdict.requiretls
    # RFC 8689 §4.2.1 step 5, against the same real session.
    no_rtls = Capabilities("mx.example.test", entries=["PIPELINING"])
    assert check(candidate, tls, no_rtls).reason is Reason.REQUIRETLS_NOT_OFFERED


def test_untrusted_resolver_falls_back_to_mtasts_enforce_and_pkix(lab: Lab) -> None:
    """An AD bit from an untrusted resolver counts for nothing: the MX is
    insecure, and the real MTA-STS enforce policy validates it (§4.2.1 step 2)."""
    p = plan(lab, "example.test", TLSTag.REQUIRETLS, trusted=False)
    assert not p.mx.dnssec
    assert p.sts is not None and p.sts.policy is not None and p.sts.policy.mode == "enforce"
    (candidate,) = p.candidates
    assert candidate.security is Security.PKIX and candidate.handshake.verify
    tls = handshake(lab, candidate)
    assert tls is not None and tls.verified_name == "mx.example.test"
    assert check(candidate, tls, REQUIRETLS_EHLO).requiretls


def test_pkix_handshake_fails_against_a_certificate_for_another_name(lab: Lab) -> None:
    p = plan(lab, "example.test", TLSTag.REQUIRETLS, trusted=False)
    (candidate,) = p.candidates
    # The "sut" leaf names mx.sut.test only: the verified handshake refuses it.
    tls = handshake(lab, candidate, "sut.chain.pem")
    assert tls is None
    verdict = check(candidate, tls, Capabilities("mx.example.test", entries=["STARTTLS"]))
    assert verdict.reason is Reason.TLS_FAILED
    final = final_verdict(p, [verdict])
    assert final.action is Action.FAIL
    assert final.reply is not None and str(final.reply.enhanced) == "5.7.10"


def test_insecure_domain_with_testing_policy_is_refused_without_connecting(lab: Lab) -> None:
    """RFC 8689 §4.2.1 step 2: insecure MX, MTA-STS only in testing mode."""
    p = plan(lab, "unsigned.test", TLSTag.REQUIRETLS)
    assert not p.mx.dnssec and p.candidates == ()
    assert [v.reason for v in p.skipped] == [Reason.MX_NOT_VALIDATED]
    final = final_verdict(p)
    assert final.action is Action.FAIL
    assert final.reply is not None and str(final.reply.enhanced) == "5.7.10"
    # The same domain takes untagged and TLS-optional mail opportunistically.
    for tag in (TLSTag.DEFAULT, TLSTag.TLS_OPTIONAL):
        (candidate,) = plan(lab, "unsigned.test", tag).candidates
        assert candidate.security is Security.OPPORTUNISTIC


def test_bogus_mx_address_defers(lab: Lab) -> None:
    p = plan(lab, "bogus.test", TLSTag.REQUIRETLS)
    assert p.candidates == ()
    assert [v.reason for v in p.skipped] == [Reason.DNS_TEMPORARY_FAILURE]
    final = final_verdict(p)
    assert final.action is Action.DEFER
    assert final.reply is not None and str(final.reply.enhanced) == "4.4.3"


def test_expired_signatures_defer_the_whole_domain(lab: Lab) -> None:
    p = plan(lab, "expired.test", TLSTag.REQUIRETLS)
    assert p.verdict is not None and p.verdict.action is Action.DEFER
    assert p.verdict.reason is Reason.DNS_TEMPORARY_FAILURE


def test_tls_optional_ignores_the_real_policies(lab: Lab) -> None:
    """RFC 8689 §3: no MTA-STS fetch and no TLSA look-up for TLS-Required: No."""
    p = plan(lab, "example.test", TLSTag.TLS_OPTIONAL)
    assert p.sts is None
    (candidate,) = p.candidates
    assert candidate.security is Security.OPPORTUNISTIC and candidate.tlsa == ()
    tls = handshake(lab, candidate)
    assert check(candidate, tls, REQUIRETLS_EHLO).action is Action.PROCEED
    assert not check(candidate, tls, REQUIRETLS_EHLO).requiretls
