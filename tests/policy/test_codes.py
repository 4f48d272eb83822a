"""The verdict code table (RFC 8689 §4.2.1 ¶4, §7; RFC 5248; RFC 7505)."""

from __future__ import annotations

import pytest

from smtp_rtls._reply import EnhancedStatus, Reply
from smtp_rtls.policy.codes import CODES, Reason, Severity, code_for

# Associated basic status codes, copied from the RFC 5248 registry (Table 1),
# RFC 8689 §7 (X.7.30) and RFC 7505 (X.1.10).  "Not given" rows are absent.
REGISTRY_BASIC_CODES = {
    "X.7.10": {523},
    "X.7.30": {550},
    "X.1.10": {556},
    "X.4.3": {451, 550},
    "X.4.1": {451},
}


def test_every_reason_has_one_row() -> None:
    assert set(CODES) == set(Reason)
    for reason, row in CODES.items():
        assert row.reason is reason


def test_rfc8689_s4_2_1_requiretls_not_offered_is_5_7_30() -> None:
    reply = code_for(Reason.REQUIRETLS_NOT_OFFERED).reply(final=True)
    assert (reply.code, str(reply.enhanced)) == (550, "5.7.30")


@pytest.mark.parametrize(
    "reason",
    [
        Reason.STARTTLS_NOT_OFFERED,
        Reason.TLS_FAILED,
        Reason.TLS_TOO_WEAK,
        Reason.CERTIFICATE_NOT_VERIFIED,
        Reason.NAME_MISMATCH,
        Reason.DANE_MISMATCH,
        Reason.MX_NOT_VALIDATED,
        Reason.MTASTS_MISMATCH,
        Reason.STARTTLS_REQUIRED_BY_SERVER,
    ],
)
def test_rfc8689_s4_2_1_no_protected_session_is_5_7_10(reason: Reason) -> None:
    assert str(code_for(reason).reply(final=True).enhanced) == "5.7.10"


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (Reason.NULL_MX, "5.1.10"),
        (Reason.NO_SUCH_DOMAIN, "5.1.2"),
        (Reason.DNS_TEMPORARY_FAILURE, "4.4.3"),
        (Reason.TLSA_LOOKUP_FAILED, "4.4.3"),
        (Reason.CONNECTION_FAILED, "4.4.1"),
    ],
)
def test_routing_codes(reason: Reason, status: str) -> None:
    assert str(code_for(reason).status) == status


def test_basic_codes_follow_the_registry() -> None:
    for row in CODES.values():
        key = f"X.{row.status.subject}.{row.status.detail}"
        if row.status.klass == 4:
            # A transient row keeps a 4yz code even where the registry names a 5yz.
            assert row.reply_code // 100 == 4, row
        elif key in REGISTRY_BASIC_CODES:
            assert row.reply_code in REGISTRY_BASIC_CODES[key], row


@pytest.mark.parametrize("reason", list(Reason))
def test_rfc8689_s4_2_1_soft_while_alternatives_remain_hard_at_the_end(reason: Reason) -> None:
    row = code_for(reason)
    soft, hard = row.reply(final=False), row.reply(final=True)
    for reply in (soft, hard):
        assert isinstance(reply, Reply)
        assert reply.enhanced is not None
        assert reply.enhanced.klass == reply.code // 100
        assert reply.text == row.text
    if row.severity is Severity.SOFT_UNTIL_LAST:
        assert soft.code == 451 and soft.enhanced == EnhancedStatus(
            4, row.status.subject, row.status.detail
        )
        assert hard.is_permanent and hard.enhanced == row.status
    elif row.severity is Severity.HARD:
        assert soft == hard and hard.is_permanent
    else:
        assert soft == hard and hard.is_transient


def test_replies_format_on_the_wire() -> None:
    assert code_for(Reason.REQUIRETLS_NOT_OFFERED).reply(final=False).format() == (
        b"451 4.7.30 REQUIRETLS support required\r\n"
    )
    assert code_for(Reason.NULL_MX).reply(final=False).format() == (
        b"556 5.1.10 Recipient address has null MX\r\n"
    )
