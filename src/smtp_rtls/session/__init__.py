"""smtp_rtls.session: pure step machines that ask for I/O and are handed the results.

:class:`Delivery` delivers one message to the recipients of one domain under
RFC 8689 (plan, connect, STARTTLS, verdict, transaction, report).  Its
requests and their results are in :mod:`smtp_rtls.session.requests`; a
runner in ``smtp_rtls.io`` answers them (``smtp_rtls.io._deliver_sync`` for
blocking sockets).
"""

from ..policy.requests import DNSAnswer, DNSQuery, HTTPSRequest, HTTPSResponse
from .delivery import (
    DEFAULT_TIMEOUTS,
    Delivery,
    DeliveryResult,
    DeliveryStatus,
    RecipientResult,
    SessionAttempt,
)
from .requests import (
    Broken,
    Close,
    Connect,
    Connected,
    ConnectFailed,
    Read,
    SessionRequest,
    SessionResult,
    StartTLS,
    Step,
    TLSFailed,
    Write,
    run_session,
)
from .server import Handler, MessageWriter, ServerSession, SessionEnvelope, SessionInfo

__all__ = [
    "DEFAULT_TIMEOUTS",
    "Broken",
    "Close",
    "Connect",
    "ConnectFailed",
    "Connected",
    "DNSAnswer",
    "DNSQuery",
    "Delivery",
    "DeliveryResult",
    "DeliveryStatus",
    "HTTPSRequest",
    "HTTPSResponse",
    "Handler",
    "MessageWriter",
    "Read",
    "RecipientResult",
    "ServerSession",
    "SessionAttempt",
    "SessionEnvelope",
    "SessionInfo",
    "SessionRequest",
    "SessionResult",
    "StartTLS",
    "Step",
    "TLSFailed",
    "Write",
    "run_session",
]
