"""Blocking fulfilment of the policy module's DNS and HTTPS requests.

:class:`SyncFulfiller` answers :class:`~smtp_rtls.policy.requests.DNSQuery`
with dnspython's stub resolver and
:class:`~smtp_rtls.policy.requests.HTTPSRequest` with :mod:`http.client` over
:mod:`ssl`; pass it to :func:`~smtp_rtls.policy.requests.run_lookup`.  It
makes no policy decision: it reports what the network said, and turns every
exception into a failure result (``rcode="SERVFAIL"``, ``error="timeout"``...).
The MTA-STS policy host's addresses come from the same configured resolver
as every other look-up, never from the system's ``getaddrinfo``.
:class:`~smtp_rtls.io.asyncio.AsyncFulfiller` is the same on asyncio
and trio; the helpers below the class are the core both share.

:func:`peer_chain` gets the certificate chain a TLS peer sent, for DANE.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from ..policy.requests import DNSAnswer, DNSQuery, HTTPSRequest, HTTPSResponse, Request, Result

__all__ = ["SyncFulfiller", "peer_chain"]

_DER = 2  # _ssl.ENCODING_DER, not exported by the ssl module
_CHUNK = 16384


class SyncFulfiller:
    """Answer policy requests with blocking DNS and HTTPS.

    ``nameservers`` (and ``port``) are the recursive resolvers to ask, with the
    DO bit and an EDNS buffer of 1232 octets.  Their AD bit is reported as
    ``authentic`` only when ``trusted`` is True: only the configuration can
    know whether the path to the resolver is safe (RFC 7672 §2.1.3, RFC 4035
    §4.9.3), e.g. a validating resolver on the same host.

    HTTPS is verified with PKIX against ``cafile`` (or the default store), SNI
    and the Host header being the request's host, whose addresses are looked
    up through ``nameservers`` as well (:meth:`addresses`).  ``https_address``
    makes the TCP connection go to that address instead of the host's (a test
    hook; the names used by TLS and HTTP stay the same); ``https_port`` is the
    port.
    """

    def __init__(
        self,
        nameservers: list[str],
        port: int = 53,
        trusted: bool = False,
        timeout: float = 5.0,
        https_port: int = 443,
        cafile: str | None = None,
        https_address: str | None = None,
    ) -> None:
        """Configure the resolver and the HTTPS client (nothing is contacted yet)."""
        self.trusted = trusted
        self.https_port = https_port
        self.https_address = https_address
        self.resolver = dns.resolver.Resolver(configure=False)
        _configure(self.resolver, nameservers, port, timeout)
        self.context = ssl.create_default_context(cafile=cafile)

    def __call__(self, request: Request) -> Result:
        """Fulfil one request; never raises for network trouble."""
        if isinstance(request, DNSQuery):
            return self.dns(request)
        return self.https(request)

    def dns(self, query: DNSQuery) -> DNSAnswer:
        """Resolve ``query`` (CNAMEs followed by the resolver)."""
        qname = dns.name.from_text(query.name)
        try:
            answer = self.resolver.resolve(qname, query.rdtype, raise_on_no_answer=False)
        except dns.exception.DNSException as exc:
            return _dns_failure(query, qname, exc, self.trusted)
        return _dns_answer(query, qname, answer, self.trusted)

    def addresses(self, host: str) -> list[str]:
        """The addresses to reach ``host`` at, through the configured resolver.

        ``https_address`` when set; otherwise the AAAA then the A records
        (RFC 6724 §10.3: IPv6 first, as ``getaddrinfo`` would order them).
        The system resolver is never asked: it may not be the one this
        fulfiller was configured with.
        """
        if self.https_address is not None:
            return [self.https_address]
        return [
            address
            for rdtype in _ADDRESS_TYPES
            for address in _addresses_of(self.dns(DNSQuery(host, rdtype)))
        ]

    def https(self, request: HTTPSRequest) -> HTTPSResponse:
        """GET ``https://{host}{path}``: no redirects, a size cap, a deadline."""
        deadline = time.monotonic() + request.timeout
        addresses = self.addresses(request.host)
        if not addresses:
            return HTTPSResponse(request, error=f"connect: no address for {request.host}")
        conn = _PinnedHTTPSConnection(
            request.host, addresses, self.https_port, request.timeout, self.context
        )
        try:
            conn.request(
                "GET",
                request.path,
                headers={"Host": request.host, "Connection": "close", "Accept": "text/plain"},
            )
            # http.client never follows redirects: a 3xx is reported as is.
            response = conn.getresponse()
            body = bytearray()
            while len(body) <= request.max_bytes:
                if time.monotonic() > deadline:
                    return HTTPSResponse(request, error="timeout")
                chunk = response.read(min(_CHUNK, request.max_bytes + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
            if len(body) > request.max_bytes:
                return HTTPSResponse(request, error="too large")
            return HTTPSResponse(
                request,
                status=response.status,
                content_type=response.getheader("Content-Type", ""),
                body=bytes(body),
            )
        except ssl.SSLCertVerificationError:
            return HTTPSResponse(request, error="certificate")
        except TimeoutError:
            return HTTPSResponse(request, error="timeout")
        except ssl.SSLError as exc:
            return HTTPSResponse(request, error=f"tls: {exc.reason or exc}")
        except (http.client.HTTPException, ValueError) as exc:
            return HTTPSResponse(request, error=f"http: {type(exc).__name__}")
        except OSError as exc:
            return HTTPSResponse(request, error=f"connect: {exc.strerror or exc}")
        finally:
            conn.close()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS for ``host`` (SNI, Host, certificate name) over TCP to one of ``addresses``."""

    def __init__(
        self,
        host: str,
        addresses: list[str],
        port: int,
        timeout: float,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = addresses
        self._context = context

    def connect(self) -> None:
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        start = time.monotonic()
        error: OSError = OSError("no address")
        for i, address in enumerate(self._addresses):
            left = None if timeout is None else max(timeout - (time.monotonic() - start), 0.01)
            try:
                sock = socket.create_connection(
                    (address, self.port), _attempt_timeout(left, len(self._addresses) - i)
                )
                break
            except OSError as exc:
                error = exc
        else:
            raise error
        try:
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


#: The address records of a host, in the order they are tried (RFC 6724 §10.3).
_ADDRESS_TYPES = ("AAAA", "A")


def _attempt_timeout(timeout: float | None, left: int) -> float | None:
    """How long one of ``left`` connection attempts may take out of ``timeout``.

    ``timeout`` is the time left; each attempt gets an equal share of it, so
    an unreachable first address cannot use up the whole deadline of RFC
    8461 §3.3 (a crude, sequential form of RFC 8305's "Happy Eyeballs"), and
    the last attempt gets all that is left.
    """
    return None if timeout is None else timeout / left


def _configure(
    resolver: dns.resolver.BaseResolver, nameservers: list[str], port: int, timeout: float
) -> None:
    """The stub resolver both fulfillers use: only ``nameservers``, DO bit, EDNS 1232."""
    resolver.nameservers = list(nameservers)
    resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    resolver.use_edns(0, dns.flags.DO, 1232)
    # RFC 6840 §5.7: AD=1 in the query asks for the AD bit in the answer.
    resolver.flags = dns.flags.RD | dns.flags.AD


def _authentic(response: dns.message.Message | None, trusted: bool) -> bool:
    # RFC 4035 §4.9.3: the AD bit means something only from a trusted resolver.
    return trusted and response is not None and bool(response.flags & dns.flags.AD)


def _dns_answer(
    query: DNSQuery, qname: dns.name.Name, answer: dns.resolver.Answer, trusted: bool
) -> DNSAnswer:
    """The DNSAnswer of a NOERROR answer (with records or without: NODATA)."""
    records = tuple(_presentation(rdata) for rdata in answer.rrset or ())
    canonical = answer.canonical_name
    return DNSAnswer(
        query,
        "NOERROR",
        records,
        authentic=_authentic(answer.response, trusted),
        canonical_name="" if canonical == qname else canonical.to_text(omit_final_dot=True),
    )


def _dns_failure(
    query: DNSQuery, qname: dns.name.Name, exc: dns.exception.DNSException, trusted: bool
) -> DNSAnswer:
    """The DNSAnswer recording why the resolver gave no records."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        response = exc.responses().get(qname)  # type: ignore[no-untyped-call]
        return DNSAnswer(query, "NXDOMAIN", authentic=_authentic(response, trusted))
    if isinstance(exc, dns.resolver.LifetimeTimeout):
        return DNSAnswer(query, "TIMEOUT")
    # NoNameservers (every server said SERVFAIL/REFUSED...), YXDOMAIN,
    # malformed answers: the data could not be had now.
    return DNSAnswer(query, "SERVFAIL")


def _addresses_of(answer: DNSAnswer) -> tuple[str, ...]:
    return answer.records if answer.rcode == "NOERROR" else ()


def _presentation(rdata: object) -> str:
    """The record as DNSAnswer wants it; TXT strings are concatenated (RFC 8461 §3.1)."""
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        return b"".join(strings).decode("utf-8", errors="replace")
    address = getattr(rdata, "address", None)
    if address is not None:
        return str(address)
    return str(rdata.to_text())  # type: ignore[attr-defined]


def peer_chain(tls: ssl.SSLSocket | ssl.SSLObject) -> tuple[bytes, ...]:
    """The DER certificates the peer sent, leaf first (see policy.dane's docstring).

    Python 3.13 has ``get_unverified_chain()`` in public; 3.10-3.12 have the
    same OpenSSL call on the private ``_sslobj``.  Where neither exists, only
    the leaf is returned (enough for DANE-EE and for DANE-TA records of
    matching type Full).  Works with or without certificate verification.
    """
    getter = getattr(tls, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        chain = getter() or []
        ders = tuple(c if isinstance(c, bytes) else c.public_bytes(_DER) for c in chain)
        if ders:
            return ders
    leaf = tls.getpeercert(binary_form=True)
    return (leaf,) if leaf else ()
