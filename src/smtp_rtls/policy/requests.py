"""The I/O the policy module asks for, as plain data.

The policy module never touches the network.  Its look-ups are generators that
*yield* a request (:class:`DNSQuery` or :class:`HTTPSRequest`) and are *sent*
the matching result (:class:`DNSAnswer` or :class:`HTTPSResponse`); their
return value is the policy answer.  A driver in ``smtp_rtls.io`` fulfils the
requests with blocking, asyncio or trio I/O, so the same decision code serves
all three, and tests can answer requests from tables.

A driver may also answer a request by sending a result that records a failure
(``DNSAnswer(rcode="SERVFAIL", ...)``, ``HTTPSResponse(error="timeout", ...)``):
the policy code never sees an exception from the I/O layer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import TypeAlias, TypeVar

import attrs

__all__ = [
    "DNSAnswer",
    "DNSQuery",
    "HTTPSRequest",
    "HTTPSResponse",
    "Lookup",
    "Request",
    "Result",
    "run_lookup",
]


@attrs.frozen(slots=True)
class DNSQuery:
    """Ask for the RRset ``rdtype`` at ``name`` (absolute, no trailing dot needed).

    The driver sends the query with the DO bit and reports the AD bit of the
    answer; whether that bit means anything is the configuration's decision
    (an AD bit from an untrusted resolver counts for nothing).
    """

    name: str
    rdtype: str  # "MX", "A", "AAAA", "TXT", "TLSA", "CNAME"


def _str_tuple(records: Iterable[str]) -> tuple[str, ...]:
    # A typed converter: with the bare ``tuple`` mypy cannot infer the
    # element type of DNSAnswer's ``records`` argument.
    return tuple(records)


@attrs.frozen(slots=True)
class DNSAnswer:
    """The result of a :class:`DNSQuery`.

    ``rcode`` is the DNS response code name (``"NOERROR"``, ``"NXDOMAIN"``,
    ``"SERVFAIL"``, ...) or ``"TIMEOUT"`` when no server answered.
    ``records`` are the answer RRset's records in presentation format
    (``"10 mx.example.org."`` for MX, the unquoted, concatenated strings for
    TXT, ``"3 1 1 ab12..."`` for TLSA).  ``authentic`` is True only when the
    answer came with AD=1 from a resolver the configuration trusts (with a
    validating resolver that covers every CNAME on the way).
    ``canonical_name`` is the owner name of the records when the resolver
    followed CNAMEs to reach them, ``""`` otherwise (RFC 7672 §2.2.3 uses it).
    """

    query: DNSQuery
    rcode: str
    records: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    authentic: bool = False
    canonical_name: str = ""


@attrs.frozen(slots=True)
class HTTPSRequest:
    """Fetch ``https://{host}{path}`` with PKIX validation of ``host``.

    The driver must not follow redirects, must stop reading after
    ``max_bytes`` (reporting ``error="too large"``) and give up after
    ``timeout`` seconds (RFC 8461 §3.3).
    """

    host: str
    path: str
    max_bytes: int = 65536
    timeout: float = 60.0


@attrs.frozen(slots=True)
class HTTPSResponse:
    """The result of an :class:`HTTPSRequest`.

    ``error`` is ``None`` when an HTTP response arrived over a validated TLS
    session; otherwise a short reason (``"timeout"``, ``"certificate"``,
    ``"connect"``, ``"too large"``) and the other fields are empty.
    """

    request: HTTPSRequest
    status: int = 0
    content_type: str = ""
    body: bytes = b""
    error: str | None = None


Request: TypeAlias = DNSQuery | HTTPSRequest
Result: TypeAlias = DNSAnswer | HTTPSResponse
T = TypeVar("T")
#: A policy look-up: yields requests, is sent their results, returns a T.
Lookup: TypeAlias = Generator[Request, Result, T]


def run_lookup(lookup: Lookup[T], answer: Callable[[Request], Result]) -> T:
    """Drive ``lookup`` to completion, answering each request with ``answer``.

    This is the whole of a blocking driver; ``answer`` may be a table in a
    test or real I/O in ``smtp_rtls.io``.
    """
    try:
        request = next(lookup)
        while True:
            request = lookup.send(answer(request))
    except StopIteration as stop:
        result: T = stop.value
        return result
