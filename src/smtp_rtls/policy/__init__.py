"""smtp_rtls.policy: REQUIRETLS delivery decisions, without I/O.

Message tags (RFC 8689 §3, §4.1), DNSSEC-aware MX resolution, MTA-STS
(RFC 8461), DANE (RFC 7672), the per-domain delivery plan and its verdicts,
and non-delivery reports (RFC 3464, RFC 8689 §5).  Look-ups are generators
that yield :mod:`~smtp_rtls.policy.requests` objects and are sent the results.
"""

from .codes import CODES, Code, Reason, Severity, code_for
from .dsn import Bounce, RecipientStatus, build_dsn
from .plan import (
    Action,
    Candidate,
    DeliveryPlan,
    Handshake,
    HandshakeFailure,
    PolicyConfig,
    RequireTLSLevel,
    RequireTLSParam,
    Security,
    Verdict,
    plan_delivery,
)
from .requests import DNSAnswer, DNSQuery, HTTPSRequest, HTTPSResponse, run_lookup
from .tags import (
    Origination,
    TagConflictError,
    TLSRequiredField,
    TLSTag,
    expand,
    header_section,
    header_section_end,
    message_tag,
    originate,
    parse_tls_required,
    remove_tls_required,
    reoriginate,
    set_tls_required_no,
)
from .verdict import (
    check,
    connection_failed,
    final_verdict,
    handshake_failed,
    server_requires_starttls,
    tls_too_weak,
)

__all__ = [
    "CODES",
    "Action",
    "Bounce",
    "Candidate",
    "Code",
    "DNSAnswer",
    "DNSQuery",
    "DeliveryPlan",
    "HTTPSRequest",
    "HTTPSResponse",
    "Handshake",
    "HandshakeFailure",
    "Origination",
    "PolicyConfig",
    "Reason",
    "RecipientStatus",
    "RequireTLSLevel",
    "RequireTLSParam",
    "Security",
    "Severity",
    "TLSRequiredField",
    "TLSTag",
    "TagConflictError",
    "Verdict",
    "build_dsn",
    "check",
    "code_for",
    "connection_failed",
    "expand",
    "final_verdict",
    "handshake_failed",
    "header_section",
    "header_section_end",
    "message_tag",
    "originate",
    "parse_tls_required",
    "plan_delivery",
    "remove_tls_required",
    "reoriginate",
    "run_lookup",
    "server_requires_starttls",
    "set_tls_required_no",
    "tls_too_weak",
]
