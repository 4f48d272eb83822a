"""A small world for the decision tests.

DNS and HTTPS answers come from tables (so the real MX, MTA-STS and DANE code
runs on them); TLS handshakes are real ``ssl`` handshakes between two
in-memory ``SSLObject`` ends, with certificates made by trustme.  The server
side is described by what an operator would publish and serve:

* ``dnssec``: whether the MX, address and TLSA answers are authentic;
* ``sts``: ``absent`` (no TXT record), ``enforce`` (lists the MX host),
  ``testing``, ``mode-none``, ``mismatch`` (enforce, lists another host) or
  ``fetch-fail`` (TXT record, but the HTTPS fetch fails);
* ``tlsa``: ``none``, ``EE`` (3 1 1 of the served certificate), ``TA``
  (2 0 1 of the trusted CA), ``unusable`` (1 1 1, PKIX-EE: unusable for
  SMTP, RFC 7672 §3.1.3), ``stale-EE`` (3 1 1 of some other key);
* ``cert``: ``valid`` (trusted CA, right name), ``untrusted`` (right name,
  unknown CA), ``wrong-name`` (trusted CA, another name) or ``no-starttls``;
* ``requiretls``: whether the post-TLS EHLO offers REQUIRETLS.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smtp_rtls._capabilities import Capabilities
from smtp_rtls._tls import TLSInfo
from smtp_rtls.io.fulfil import peer_chain
from smtp_rtls.policy.plan import Candidate, Handshake
from smtp_rtls.policy.requests import (
    DNSAnswer,
    DNSQuery,
    HTTPSRequest,
    HTTPSResponse,
    Request,
    Result,
)

DOMAIN = "example.org"
MX_HOST = "mx.example.org"


def spki(pem: bytes) -> bytes:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


class Certificates:
    """The CAs and the server certificates the rows can serve."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        self.rogue = trustme.CA()
        leaves = {
            "valid": (self.ca, self.ca.issue_cert(MX_HOST)),
            "untrusted": (self.rogue, self.rogue.issue_cert(MX_HOST)),
            "wrong-name": (self.ca, self.ca.issue_cert("other.example.net")),
        }
        self.server_contexts: dict[str, ssl.SSLContext] = {}
        self.leaf_pems: dict[str, bytes] = {}
        for name, (issuer, leaf) in leaves.items():
            path = folder / f"{name}.pem"
            # RFC 7672 §3.1.2: the server sends its trust anchor for DANE-TA.
            path.write_bytes(leaf.private_key_and_cert_chain_pem.bytes() + issuer.cert_pem.bytes())
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(path)
            self.server_contexts[name] = ctx
            self.leaf_pems[name] = leaf.cert_chain_pems[0].bytes()
        self.stale = trustme.CA().issue_cert(MX_HOST).cert_chain_pems[0].bytes()

    def tlsa(self, kind: str, cert: str) -> tuple[str, ...]:
        """TLSA presentation records of ``kind`` for a server serving ``cert``."""
        served = self.leaf_pems.get(cert, self.leaf_pems["valid"])
        if kind == "none":
            return ()
        if kind == "EE":
            return (f"3 1 1 {hashlib.sha256(spki(served)).hexdigest()}",)
        if kind == "stale-EE":
            return (f"3 1 1 {hashlib.sha256(spki(self.stale)).hexdigest()}",)
        if kind == "TA":
            return (f"2 0 1 {hashlib.sha256(der(self.ca.cert_pem.bytes())).hexdigest()}",)
        if kind == "unusable":
            return (f"1 1 1 {hashlib.sha256(spki(served)).hexdigest()}",)
        raise ValueError(kind)

    def handshake(self, hs: Handshake, cert: str) -> TLSInfo | None:
        """A real TLS handshake as the adapter would run it for ``hs``; None if it failed."""
        if cert == "no-starttls":
            return None
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if hs.verify:
            self.ca.configure_trust(client)
        else:
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
        if hs.minimum_version == "TLSv1.2":
            client.minimum_version = ssl.TLSVersion.TLSv1_2
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        c = client.wrap_bio(c_in, c_out, server_hostname=hs.server_name)
        s = self.server_contexts[cert].wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):
            done = True
            for end, out, peer in ((c, c_out, s_in), (s, s_out, c_in)):
                try:
                    end.do_handshake()
                except ssl.SSLWantReadError:
                    done = False
                except ssl.SSLError:
                    return None
                peer.write(out.read())
            if done:
                break
        else:  # pragma: no cover - a handshake needs two round trips
            raise AssertionError("handshake did not finish")
        name, _, bits = c.cipher() or ("", "", 0)
        return TLSInfo(
            c.version() or "",
            name,
            bits,
            peer_chain(c),
            hs.server_name if hs.verify else None,
        )


@attrs.frozen
class Server:
    """What one MX host serves."""

    cert: str = "valid"
    requiretls: bool = True

    def capabilities(self, tls: TLSInfo | None) -> Capabilities:
        if tls is None:
            return Capabilities(
                MX_HOST, entries=[] if self.cert == "no-starttls" else ["STARTTLS"]
            )
        return Capabilities(MX_HOST, entries=["PIPELINING", *(["REQUIRETLS"] * self.requiretls)])


_POLICIES = {
    "enforce": f"version: STSv1\r\nmode: enforce\r\nmx: {MX_HOST}\r\nmax_age: 86400\r\n",
    "testing": f"version: STSv1\r\nmode: testing\r\nmx: {MX_HOST}\r\nmax_age: 86400\r\n",
    "mode-none": "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n",
    "mismatch": "version: STSv1\r\nmode: enforce\r\nmx: *.example.net\r\nmax_age: 86400\r\n",
}


def answers(
    *,
    dnssec: bool,
    sts: str,
    tlsa: Sequence[str] = (),
    mx: Sequence[str] = (f"10 {MX_HOST}.",),
    hosts: Sequence[str] = (MX_HOST,),
    extra: dict[tuple[str, str], DNSAnswer] | None = None,
) -> Callable[[Request], Result]:
    """An ``answer`` function for :func:`run_lookup` built from tables."""
    table: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
        (DOMAIN, "MX"): ("NOERROR", tuple(mx)),
    }
    for i, host in enumerate(hosts):
        table[(host, "A")] = ("NOERROR", (f"192.0.2.{10 + i}",))
        table[(host, "AAAA")] = ("NOERROR", ())
        table[(f"_25._tcp.{host}", "TLSA")] = ("NOERROR", tuple(tlsa))
    if sts != "absent":
        table[(f"_mta-sts.{DOMAIN}", "TXT")] = ("NOERROR", ("v=STSv1; id=20261128",))
    extra = extra or {}

    def answer(request: Request) -> Result:
        if isinstance(request, HTTPSRequest):
            assert request.host == f"mta-sts.{DOMAIN}"
            if sts == "fetch-fail":
                return HTTPSResponse(request, error="connect")
            return HTTPSResponse(request, 200, "text/plain", _POLICIES[sts].encode())
        assert isinstance(request, DNSQuery)
        key = (request.name, request.rdtype)
        if key in extra:
            return extra[key]
        rcode, records = table.get(key, ("NXDOMAIN", ()))
        return DNSAnswer(request, rcode, records, authentic=dnssec)

    return answer


def attempt(
    certs: Certificates, candidate: Candidate, server: Server
) -> tuple[TLSInfo | None, Capabilities]:
    """Run the handshake the candidate asks for against ``server``."""
    tls = certs.handshake(candidate.handshake, server.cert)
    return tls, server.capabilities(tls)
