"""Scripted SMTP peers on loopback that misbehave in named, documented ways.

**Servers** (for testing a client: yours, or smtp_rtls's
:func:`~smtp_rtls.io.sync.deliver` and :func:`~smtp_rtls.io.sync.connect`)
listen on 127.0.0.1 and speak through a real
:class:`~smtp_rtls.ServerConnection`, with real TLS from a
:class:`LoopbackCA`, except where their name says otherwise:

=============================  =====================================================
name                           misbehaviour
=============================  =====================================================
``honest``                     none: the control (accepts everything)
``strip-starttls``             STARTTLS is removed from the EHLO reply, as a man in
                               the middle does (RFC 3207 §7 "downgrade")
``starttls-454``               offers STARTTLS, answers it ``454 4.7.0``
``certificate-wrong-name``     presents a certificate for another name
``certificate-expired``        presents an expired certificate
``certificate-self-signed``    presents a self-signed certificate
``certificate-untrusted``      presents a certificate from a CA nobody trusts
``no-requiretls-after-tls``    REQUIRETLS is removed from the EHLO reply after TLS
``requiretls-before-tls``      lists REQUIRETLS in the plaintext EHLO reply (and
                               no STARTTLS)
``inject-after-starttls``      sends a reply after its ``220`` to STARTTLS, in the
                               same write, before the handshake (response injection)
``trickle``                    sends every reply one octet at a time, slowly
``silent``                     accepts the connection and never says a word
``silent-after-data``          takes the whole message and never answers its end
``close-mid-data``             closes the connection while the content arrives
=============================  =====================================================

Each records what it received (:attr:`ScriptedServer.sessions`): the raw
octets before and after TLS, the events, the content and the messages it
accepted, so that a test can assert that not one octet of a message arrived.
Build one by name with :data:`SERVERS`.

**Clients** (for testing a server: yours, or smtp_rtls's ``serve()``) connect
to a host and port, do their one thing and record every octet the server
sent back, in a :class:`ClientRecord`: :class:`StartTLSInjectionClient`,
:class:`SmugglingClient` (one per
:data:`~smtp_rtls.testing.END_OF_DATA_LOOKALIKES` variant),
:class:`TrickleClient`, :class:`SilentClient` and
:class:`CloseMidDataClient`; by name in :data:`CLIENTS`.

Every wait is bounded (``timeout``, 10 seconds by default), and a server's
:meth:`~ScriptedServer.stop` joins every thread it started.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..policy.requests import DNSAnswer, DNSQuery, HTTPSResponse, Request, Result
from ._clients import (
    ClientRecord,
    CloseMidDataClient,
    ScriptedClient,
    SilentClient,
    SmugglingClient,
    StartTLSInjectionClient,
    TrickleClient,
)
from ._pki import CERTIFICATE_KINDS as _KINDS
from ._pki import LoopbackCA
from ._servers import (
    DEFAULT_MAX_RECORD,
    BadCertificateServer,
    CloseMidDataServer,
    InjectAfterStartTLSServer,
    NoRequireTLSAfterTLSServer,
    RefuseStartTLSServer,
    RequireTLSBeforeTLSServer,
    ScriptedServer,
    ServerSessionRecord,
    SilentServer,
    StripStartTLSServer,
    TrickleServer,
)

__all__ = [
    "CERTIFICATE_KINDS",
    "CLIENTS",
    "DEFAULT_MAX_RECORD",
    "SERVERS",
    "BadCertificateServer",
    "ClientRecord",
    "CloseMidDataClient",
    "CloseMidDataServer",
    "InjectAfterStartTLSServer",
    "LoopbackCA",
    "NoRequireTLSAfterTLSServer",
    "RefuseStartTLSServer",
    "RequireTLSBeforeTLSServer",
    "ScriptedClient",
    "ScriptedServer",
    "ServerSessionRecord",
    "SilentClient",
    "SilentServer",
    "SmugglingClient",
    "StartTLSInjectionClient",
    "StripStartTLSServer",
    "TrickleClient",
    "TrickleServer",
    "loopback_dns",
]

#: The kinds of server certificate :meth:`LoopbackCA.server_context` makes:
#: ``"valid"`` (issued by the CA for the names asked for), ``"wrong-name"``
#: (issued by the CA for ``wrong-name.invalid`` only), ``"expired"`` (issued
#: by the CA for the names, valid in 2020 only), ``"self-signed"`` (signed by
#: its own key, for the names), ``"untrusted"`` (for the names, issued by
#: another CA that nobody trusts).
CERTIFICATE_KINDS: tuple[str, ...] = _KINDS


def _certificate(kind: str) -> Callable[..., ScriptedServer]:
    def make(**options: Any) -> ScriptedServer:
        return BadCertificateServer(kind, **options)

    make.__doc__ = f"A :class:`BadCertificateServer` presenting a {kind} certificate."
    return make


def _silent(stage: str) -> Callable[..., ScriptedServer]:
    def make(**options: Any) -> ScriptedServer:
        return SilentServer(stage=stage, **options)

    return make


#: The misbehaving servers by name: ``SERVERS[name](**options)`` starts one
#: (the options are the class's: ``ca``, ``hostname``, ``timeout``, ...).
SERVERS: Mapping[str, Callable[..., ScriptedServer]] = MappingProxyType(
    {
        "honest": ScriptedServer,
        "strip-starttls": StripStartTLSServer,
        "starttls-454": RefuseStartTLSServer,
        "certificate-wrong-name": _certificate("wrong-name"),
        "certificate-expired": _certificate("expired"),
        "certificate-self-signed": _certificate("self-signed"),
        "certificate-untrusted": _certificate("untrusted"),
        "no-requiretls-after-tls": NoRequireTLSAfterTLSServer,
        "requiretls-before-tls": RequireTLSBeforeTLSServer,
        "inject-after-starttls": InjectAfterStartTLSServer,
        "trickle": TrickleServer,
        "silent": _silent("connect"),
        "silent-after-data": _silent("end-of-data"),
        "close-mid-data": CloseMidDataServer,
    }
)


def loopback_dns(
    domain: str,
    mx: str = "mx.test.example",
    *,
    address: str = "127.0.0.1",
    authentic: bool = True,
) -> Callable[[Request], Result]:
    """DNS from a table, for :func:`smtp_rtls.io.sync.deliver`'s ``fulfil``:
    ``domain`` has one MX, ``mx``, at ``address``; no AAAA, no TLSA, no
    MTA-STS (every HTTPS fetch fails).  ``authentic`` is the AD bit of every
    answer: with it the MX is DNSSEC-validated and a REQUIRETLS delivery
    verifies the certificate by PKIX against ``mx`` (RFC 8689 §4.2.1).
    Pass the peer's ``port`` and ``cafile`` to ``deliver()`` too.
    """
    family = "AAAA" if ":" in address else "A"
    records = {
        (domain, "MX"): (f"10 {mx}.",),
        (mx, family): (address,),
        (mx, "AAAA" if family == "A" else "A"): (),
    }

    def answer(request: Request) -> Result:
        if not isinstance(request, DNSQuery):
            return HTTPSResponse(request, error="connect")
        key = (request.name.rstrip("."), request.rdtype)
        if key not in records:
            return DNSAnswer(request, "NXDOMAIN", authentic=authentic)
        return DNSAnswer(request, "NOERROR", records[key], authentic=authentic)

    return answer


#: The misbehaving clients by name: ``CLIENTS[name](**options).run(host, port)``.
CLIENTS: Mapping[str, Callable[..., ScriptedClient]] = MappingProxyType(
    {
        "inject-after-starttls": StartTLSInjectionClient,
        "smuggle": SmugglingClient,
        "trickle": TrickleClient,
        "silent": SilentClient,
        "close-mid-data": CloseMidDataClient,
    }
)
