"""The one table of verdict codes used by the policy module.

Every way a delivery attempt can fail the policy is a :class:`Reason`; each
reason has exactly one row in :data:`CODES`: the enhanced status (RFC 3463,
registered in RFC 5248), the basic reply code, a text, and a :class:`Severity`
that says whether the failure is soft while alternatives remain.

RFC 8689 §4.2.1 ¶4 names two codes: 5.7.30 "REQUIRETLS support required"
(basic code 550, §7) when the server did not offer REQUIRETLS after TLS, and
5.7.10 "Encryption Needed" when a TLS-protected session could not be had.  The
RFC has no code for a failed certificate, name, DANE or MX validation; like
Postfix we report those as 5.7.10 too (the session failed to be *protected*).
X.7.10's associated basic code in the RFC 5248 registry (Table 1) is 523.

Soft and hard (RFC 8689 §4.2.1 ¶3-4, as Postfix 3.11 does): a REQUIRETLS
failure at one MX host is *soft* (4.x.x: QUIT, try the next host) while other
hosts remain, and *hard* (5.x.x: non-delivery report) once none is left.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from .._reply import EnhancedStatus, Reply

__all__ = ["CODES", "Code", "Reason", "Severity", "code_for"]


class Reason(enum.Enum):
    """Why a candidate, a plan or a delivery failed."""

    # -- RFC 8689 §4.2.1 step 5 --------------------------------------------
    REQUIRETLS_NOT_OFFERED = "REQUIRETLS not offered after TLS"
    # -- §4.2.1 step 4 and RFC 7525: no (good enough) TLS session ----------
    STARTTLS_NOT_OFFERED = "STARTTLS not offered"
    TLS_FAILED = "TLS handshake failed or STARTTLS refused"
    TLS_TOO_WEAK = "TLS version or cipher too weak"
    STARTTLS_REQUIRED_BY_SERVER = "server requires STARTTLS, which failed"
    # -- §4.2.1 step 4: the server was not authenticated --------------------
    CERTIFICATE_NOT_VERIFIED = "server certificate not verified"
    CERTIFICATE_EXPIRED = "server certificate expired"
    NAME_MISMATCH = "server certificate does not match the host name"
    DANE_MISMATCH = "no usable TLSA record matched the server certificate"
    # -- §4.2.1 step 2: the MX host name was not validated ----------------
    MX_NOT_VALIDATED = "MX host not validated by DNSSEC or an MTA-STS enforce policy"
    MTASTS_MISMATCH = "MX host not listed in the MTA-STS policy"
    MTASTS_UNAVAILABLE = "MTA-STS policy announced but could not be fetched"
    # -- routing (RFC 5321 §5.1, RFC 7505, RFC 7672 §2.2) -----------------
    NULL_MX = "recipient domain has a null MX"
    NO_SUCH_DOMAIN = "recipient domain does not exist"
    NO_ADDRESS = "MX host has no address"
    DNS_TEMPORARY_FAILURE = "temporary DNS failure"
    TLSA_LOOKUP_FAILED = "TLSA lookup failed"
    CONNECTION_FAILED = "no answer from host"


class Severity(enum.Enum):
    """How a failure counts."""

    #: Soft (4.x.x, try the next MX host) while alternatives remain; hard
    #: (5.x.x, non-delivery report) once none is left (RFC 8689 §4.2.1 ¶3-4).
    SOFT_UNTIL_LAST = "soft until last"
    #: Permanent at once: no other host can help (null MX, no such domain).
    HARD = "hard"
    #: Always 4.x.x: retrying later may succeed; the queue's lifetime decides.
    TRANSIENT = "transient"


@attrs.frozen(slots=True)
class Code:
    """One row of the table: the codes and text for a :class:`Reason`."""

    reason: Reason
    status: EnhancedStatus  # class 5 for SOFT_UNTIL_LAST and HARD, class 4 for TRANSIENT
    reply_code: int
    text: str
    severity: Severity

    def reply(self, *, final: bool) -> Reply:
        """The reply to record: soft (451 4.x.x) unless ``final`` or the row is HARD."""
        if final or self.severity is not Severity.SOFT_UNTIL_LAST:
            return Reply(self.reply_code, self.text, self.status)
        soft = EnhancedStatus(4, self.status.subject, self.status.detail)
        return Reply(451, self.text, soft)


def _row(reason: Reason, status: str, reply_code: int, text: str, severity: Severity) -> Code:
    return Code(reason, EnhancedStatus.parse(status), reply_code, text, severity)


_S, _H, _T = Severity.SOFT_UNTIL_LAST, Severity.HARD, Severity.TRANSIENT

#: Reason -> Code.  Basic codes: RFC 8689 §7 (X.7.30: 550), RFC 5248 Table 1
#: (X.7.10: 523; X.4.3: 451; X.4.1: 451), RFC 7505 §4 (X.1.10: 556).
CODES: Mapping[Reason, Code] = MappingProxyType(
    {
        row.reason: row
        for row in (
            # RFC 8689 §4.2.1 ¶4: "REQUIRETLS not supported by server: 5.7.30"
            _row(Reason.REQUIRETLS_NOT_OFFERED, "5.7.30", 550, "REQUIRETLS support required", _S),
            # RFC 8689 §4.2.1 ¶4: "Unable to establish TLS-protected SMTP session: 5.7.10"
            _row(Reason.STARTTLS_NOT_OFFERED, "5.7.10", 523, "Encryption needed: no STARTTLS", _S),
            _row(Reason.TLS_FAILED, "5.7.10", 523, "Encryption needed: TLS failed", _S),
            _row(Reason.TLS_TOO_WEAK, "5.7.10", 523, "Encryption needed: TLS too weak", _S),
            # RFC 8689 §4.2.2 ¶2: a TLS-optional message still bounces here.
            _row(
                Reason.STARTTLS_REQUIRED_BY_SERVER,
                "5.7.10",
                523,
                "Encryption needed: server requires STARTTLS",
                _S,
            ),
            _row(
                Reason.CERTIFICATE_NOT_VERIFIED,
                "5.7.10",
                523,
                "Encryption needed: certificate not verified",
                _S,
            ),
            _row(
                Reason.CERTIFICATE_EXPIRED,
                "5.7.10",
                523,
                "Encryption needed: certificate expired",
                _S,
            ),
            _row(Reason.NAME_MISMATCH, "5.7.10", 523, "Encryption needed: certificate name", _S),
            _row(Reason.DANE_MISMATCH, "5.7.10", 523, "Encryption needed: DANE mismatch", _S),
            _row(
                Reason.MX_NOT_VALIDATED, "5.7.10", 523, "Encryption needed: MX not validated", _S
            ),
            _row(
                Reason.MTASTS_MISMATCH, "5.7.10", 523, "Encryption needed: MX not in MTA-STS", _S
            ),
            # Retrying later may find the policy (RFC 8461 §3.3 fetch failures).
            _row(Reason.MTASTS_UNAVAILABLE, "4.7.10", 451, "MTA-STS policy unavailable", _T),
            # RFC 7505 §4: null MX, basic code 556.
            _row(Reason.NULL_MX, "5.1.10", 556, "Recipient address has null MX", _H),
            _row(Reason.NO_SUCH_DOMAIN, "5.1.2", 550, "Bad destination system address", _H),
            _row(Reason.NO_ADDRESS, "5.4.4", 550, "Unable to route: MX host has no address", _S),
            _row(Reason.DNS_TEMPORARY_FAILURE, "4.4.3", 451, "Directory server failure", _T),
            # RFC 7672 §2.2: a failed TLSA look-up makes that host unusable for now.
            _row(Reason.TLSA_LOOKUP_FAILED, "4.4.3", 451, "Directory server failure: TLSA", _T),
            _row(Reason.CONNECTION_FAILED, "4.4.1", 451, "No answer from host", _T),
        )
    }
)


def code_for(reason: Reason) -> Code:
    """The :class:`Code` row of ``reason``."""
    return CODES[reason]
