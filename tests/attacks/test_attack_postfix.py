"""The downgrade attacks of test_attack_downgrade.py against a real MTA:
Postfix 3.11 (which offers REQUIRETLS after STARTTLS) behind the
:class:`~smtp_rtls.testing.mitm.MitmProxy`, our deliver() of every adapter
in front.  RFC 8689 §4.2.1: the message crosses only inside verified TLS
that offered REQUIRETLS; else the proxy forwards no MAIL and Postfix
stores nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from attack_helpers import TIMEOUT, deliver

from adapters import KINDS
from smtp_rtls import MailFrom
from smtp_rtls.policy.codes import Reason
from smtp_rtls.session import DEFAULT_TIMEOUTS, DeliveryStatus
from smtp_rtls.testing.mitm import MitmProxy
from smtp_rtls.testing.peers import LoopbackCA, loopback_dns

MX = "mx.example.test"
ATTACKS = {
    "strip-starttls": Reason.STARTTLS_NOT_OFFERED,
    "refuse-starttls": Reason.TLS_FAILED,
    "terminate-tls": Reason.CERTIFICATE_NOT_VERIFIED,
    "corrupt-tls": Reason.CONNECTION_FAILED,
}


def send(kind: str, postfix: Any, proxy: MitmProxy, message_id: str) -> Any:
    return deliver(
        kind,
        MailFrom("alice@sender.example", requiretls=True),
        ["bob@example.test"],
        f"Subject: mitm\r\nMessage-ID: <{message_id}>\r\n\r\nsecret body\r\n".encode(),
        local_hostname="client.sender.example",
        fulfil=loopback_dns("example.test", MX),
        cafile=str(postfix.ca),
        port=proxy.port,
        timeouts=dict.fromkeys(DEFAULT_TIMEOUTS, TIMEOUT),
    )


@pytest.mark.lab
@pytest.mark.interop("Postfix 3.11", "REQUIRETLS through an active man in the middle")
@pytest.mark.parametrize("kind", KINDS)
def test_postfix311_behind_a_downgrading_proxy_gets_nothing_rfc8689_4_2_1(
    postfix311: Any, kind: str
) -> None:
    before = len(postfix311.delivered())
    with LoopbackCA((MX,)) as rogue:
        for mode, reason in ATTACKS.items():
            context = rogue.server_context("untrusted") if mode == "terminate-tls" else None
            with MitmProxy(postfix311.port, mode=mode, tls_context=context) as proxy:
                [r] = send(kind, postfix311, proxy, f"{kind}-{mode}@sender.example").recipients
            assert r.reason is reason and r.status is not DeliveryStatus.DELIVERED, (mode, r)
            [conn] = proxy.connections
            assert b"MAIL" not in conn.plaintext_to_server and b"secret" not in conn.to_server
    # the control: the same message through the transparent proxy
    with MitmProxy(postfix311.port) as proxy:
        [r] = send(kind, postfix311, proxy, f"{kind}-control@sender.example").recipients
    assert r.status is DeliveryStatus.DELIVERED and r.requiretls, r
    deadline = time.monotonic() + 60
    while len(postfix311.delivered()) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    stored = postfix311.delivered()[before:]
    [control] = [m for m in stored if b"-control@sender.example" in m]
    assert b"Require-TLS-ESMTP: yes" in control  # Postfix took it with REQUIRETLS
    # nothing of the attacked deliveries reached the mailbox
    assert not [m for m in stored if b"tls@sender.example>" in m]
