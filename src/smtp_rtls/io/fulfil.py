"""Blocking fulfilment of the policy module's DNS and HTTPS requests.

:class:`SyncFulfiller` answers :class:`~smtp_rtls.policy.requests.DNSQuery`
with dnspython's stub resolver and
:class:`~smtp_rtls.policy.requests.HTTPSRequest` with :mod:`http.client` over
:mod:`ssl`; pass it to :func:`~smtp_rtls.policy.requests.run_lookup`.  It
makes no policy decision: it reports what the network said, and turns every
exception into a failure result (``rcode="SERVFAIL"``, ``error="timeout"``...).

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
    and the Host header being the request's host.  ``https_address`` makes the
    TCP connection go to that address instead of the host's (a test hook; the
    names used by TLS and HTTP stay the same); ``https_port`` is the port.
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
        self.resolver.nameservers = list(nameservers)
        self.resolver.port = port
        self.resolver.lifetime = timeout
        self.resolver.timeout = timeout
        self.resolver.use_edns(0, dns.flags.DO, 1232)
        # RFC 6840 §5.7: AD=1 in the query asks for the AD bit in the answer.
        self.resolver.flags = dns.flags.RD | dns.flags.AD
        self.context = ssl.create_default_context(cafile=cafile)

    def __call__(self, request: Request) -> Result:
        """Fulfil one request; never raises for network trouble."""
        if isinstance(request, DNSQuery):
            return self.dns(request)
        return self.https(request)

    def _authentic(self, response: dns.message.Message | None) -> bool:
        return self.trusted and response is not None and bool(response.flags & dns.flags.AD)

    def dns(self, query: DNSQuery) -> DNSAnswer:
        """Resolve ``query`` (CNAMEs followed by the resolver)."""
        qname = dns.name.from_text(query.name)
        try:
            answer = self.resolver.resolve(qname, query.rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            response = exc.responses().get(qname)  # type: ignore[no-untyped-call]
            return DNSAnswer(query, "NXDOMAIN", authentic=self._authentic(response))
        except dns.resolver.LifetimeTimeout:
            return DNSAnswer(query, "TIMEOUT")
        except dns.exception.DNSException:
            # NoNameservers (every server said SERVFAIL/REFUSED...), YXDOMAIN,
            # malformed answers: the data could not be had now.
            return DNSAnswer(query, "SERVFAIL")
        records = tuple(_presentation(rdata) for rdata in answer.rrset or ())
        canonical = answer.canonical_name
        return DNSAnswer(
            query,
            "NOERROR",
            records,
            authentic=self._authentic(answer.response),
            canonical_name="" if canonical == qname else canonical.to_text(omit_final_dot=True),
        )

    def https(self, request: HTTPSRequest) -> HTTPSResponse:
        """GET ``https://{host}{path}``: no redirects, a size cap, a deadline."""
        deadline = time.monotonic() + request.timeout
        address = self.https_address or request.host
        conn = _PinnedHTTPSConnection(
            request.host, (address, self.https_port), request.timeout, self.context
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
    """HTTPS for ``host`` (SNI, Host, certificate name) over TCP to ``address``."""

    def __init__(
        self, host: str, address: tuple[str, int], timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, address[1], timeout=timeout, context=context)
        self._address = address
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection(self._address, self.timeout)
        try:
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


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
