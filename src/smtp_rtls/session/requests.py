"""The I/O a session driver asks for, as plain data.

A driver (:class:`~smtp_rtls.session.Delivery`) is a generator: it *yields*
one of the requests below and is *sent* its result, exactly as the policy
look-ups do (:mod:`smtp_rtls.policy.requests`, whose :class:`~smtp_rtls.policy.DNSQuery` and
:class:`~smtp_rtls.policy.HTTPSRequest` pass through unchanged).  A runner in ``smtp_rtls.io``
answers each request with real sockets and :mod:`ssl`; a test answers them
in memory.  A runner holds at most one connection at a time and makes no
protocol or policy decision: every request says exactly what to do, with its
own timeout.

======================= ===================================================
request                 result sent back
======================= ===================================================
:class:`Connect`        :class:`Connected`, or :class:`ConnectFailed`
:class:`Write`          ``None``, or :class:`Broken`
:class:`Read`           ``bytes`` (``b""``: the peer closed), or :class:`Broken`
:class:`StartTLS`       :class:`~smtp_rtls.TLSInfo`, or :class:`TLSFailed`
:class:`Close`          ``None`` (never fails)
``DNSQuery``            ``DNSAnswer``
``HTTPSRequest``        ``HTTPSResponse``
======================= ===================================================

Like the policy's, these results record failures instead of raising them:
a driver never sees an exception from the I/O layer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeAlias, TypeVar

import attrs

from .._tls import TLSInfo
from ..policy.plan import Handshake, HandshakeFailure
from ..policy.requests import DNSAnswer, DNSQuery, HTTPSRequest, HTTPSResponse

__all__ = [
    "Broken",
    "Close",
    "Connect",
    "ConnectFailed",
    "Connected",
    "Read",
    "SessionRequest",
    "SessionResult",
    "StartTLS",
    "Step",
    "TLSFailed",
    "Write",
    "run_session",
]


@attrs.frozen(slots=True)
class Connect:
    """Open a TCP connection to ``address`` (an IP address) on ``port``.

    ``host`` is the MX host name the address belongs to, for logs; the
    runner must not resolve it.  Any previous connection was closed first.
    """

    host: str
    address: str
    port: int
    timeout: float


@attrs.frozen(slots=True)
class Connected:
    """The result of :class:`Connect`: the connection is open.

    ``local_address`` is our end of it (the IP address the socket is bound
    to), when the runner knows it: SMTP TLS Reporting names the sending MTA
    by it (RFC 8460 §4.4 "sending-mta-ip").
    """

    local_address: str | None = None


@attrs.frozen(slots=True)
class ConnectFailed:
    """The result of :class:`Connect`: refused, unreachable, timed out (``detail`` says)."""

    detail: str


@attrs.frozen(slots=True)
class Write:
    """Write all of ``data`` to the connection (through TLS once it is up)."""

    data: bytes
    timeout: float


@attrs.frozen(slots=True)
class Read:
    """Read what is available, at most ``max_bytes``; wait up to ``timeout`` for it.

    The result is the bytes, ``b""`` when the peer closed the connection, or
    :class:`Broken` (a timeout, a reset).
    """

    timeout: float
    max_bytes: int = 65536


@attrs.frozen(slots=True)
class Broken:
    """The result of :class:`Write` or :class:`Read` when the connection failed."""

    detail: str


@attrs.frozen(slots=True)
class StartTLS:
    """Run the client side of a TLS handshake over the open connection.

    Exactly as ``handshake`` says (see :class:`~smtp_rtls.policy.Handshake`):
    ``server_name`` as SNI always; with ``verify``, PKIX verification of the
    chain and of ``server_name``; without it, no verification at all; the
    ``minimum_version`` if set.  The result is the :class:`~smtp_rtls.TLSInfo`
    (with ``peer_chain``, and ``verified_name=server_name`` when verified), or
    :class:`TLSFailed`.  After a failure the driver only asks to :class:`Close`.
    """

    handshake: Handshake
    timeout: float


@attrs.frozen(slots=True)
class TLSFailed:
    """The result of :class:`StartTLS` when the handshake failed.

    ``kind`` tells the certificate failures apart (only the TLS library can:
    with :mod:`ssl`, ``SSLCertVerificationError.verify_code`` 62 is a name
    mismatch, 10 an expired certificate, 2, 18, 19, 20 and 21 an untrusted
    chain); anything else is ``HandshakeFailure.OTHER``.
    """

    kind: HandshakeFailure
    detail: str = ""


@attrs.frozen(slots=True)
class Close:
    """Close the connection (TLS or not), without waiting for the peer."""


SessionRequest: TypeAlias = Connect | Write | Read | StartTLS | Close | DNSQuery | HTTPSRequest
SessionResult: TypeAlias = (
    Connected
    | ConnectFailed
    | bytes
    | Broken
    | TLSInfo
    | TLSFailed
    | DNSAnswer
    | HTTPSResponse
    | None
)
T = TypeVar("T")
#: A session driver: yields requests, is sent their results, returns a T.
Step: TypeAlias = Generator[SessionRequest, SessionResult, T]


def run_session(driver: Step[T], answer: Callable[[SessionRequest], SessionResult]) -> T:
    """Drive ``driver`` to completion, answering each request with ``answer``.

    The whole of a blocking runner is an ``answer`` function.
    """
    try:
        request = next(driver)
        while True:
            request = driver.send(answer(request))
    except StopIteration as stop:
        result: T = stop.value
        return result
