"""TLS helpers every adapter needs: a TLSInfo from an ``ssl`` object, and
server and client contexts.

The core learns about TLS only through :class:`~smtp_rtls.TLSInfo`; these
helpers build one from what the :mod:`ssl` module reports after a handshake,
the same way for a socket (``ssl.SSLSocket``), a memory BIO or asyncio's
transport (``ssl.SSLObject``); build the client context a delivery plan's
handshake asks for; and name why a client handshake failed.
"""

from __future__ import annotations

import ssl

from .._tls import TLSInfo
from ..policy.plan import Handshake, HandshakeFailure
from ..session.requests import TLSFailed
from .fulfil import peer_chain

__all__ = ["client_context", "server_context", "tls_failure", "tls_info"]


def server_context(
    certfile: str, keyfile: str | None = None, *, minimum_version: str = "TLSv1.2"
) -> ssl.SSLContext:
    """A server context for STARTTLS or implicit TLS (RFC 8314 §3).

    TLS 1.2 at least by default: RFC 8689 §4.2.1 ¶2 (through RFC 7525)
    asks a REQUIRETLS sender for TLS 1.2 or newer, so an older session is
    useless for REQUIRETLS mail.  Client certificates are not asked for.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion[minimum_version.replace(".", "_")]
    context.load_cert_chain(certfile, keyfile)
    return context


_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
# OpenSSL's X509_V_ERR_* numbers, as SSLCertVerificationError.verify_code.
_FAILURES = {
    62: HandshakeFailure.NAME_MISMATCH,  # X509_V_ERR_HOSTNAME_MISMATCH
    10: HandshakeFailure.EXPIRED,  # X509_V_ERR_CERT_HAS_EXPIRED
    2: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
    18: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: HandshakeFailure.UNTRUSTED,  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
}


def client_context(handshake: Handshake, cafile: str | None = None) -> ssl.SSLContext:
    """The client :class:`ssl.SSLContext` that ``handshake`` asks for.

    ``verify``: ``CERT_REQUIRED`` and ``check_hostname`` against ``cafile``
    (default: the system store); otherwise ``CERT_NONE``, no name check (DANE
    decides from the chain afterwards, RFC 7672 §3.1; opportunistic TLS takes
    any certificate, RFC 7435).  ``minimum_version`` when set (RFC 8689
    §4.2.1 ¶2).  Wrap with ``server_hostname=handshake.server_name``: SNI is
    always sent (RFC 7672 §8.1).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if handshake.verify:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        if cafile is not None:
            context.load_verify_locations(cafile=cafile)
        else:
            context.load_default_certs()
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if handshake.minimum_version is not None:
        context.minimum_version = _VERSIONS[handshake.minimum_version]
    return context


def tls_info(sslobj: ssl.SSLSocket | ssl.SSLObject, verified_name: str | None = None) -> TLSInfo:
    """The :class:`~smtp_rtls.TLSInfo` of an established session.

    ``verified_name`` is the name the handshake verified (the Handshake's
    ``server_name`` when ``verify`` was set), None otherwise (and always on a
    server).  The chain is
    the whole one the peer sent (:func:`~smtp_rtls.io.fulfil.peer_chain`).
    """
    name, _, bits = sslobj.cipher() or ("", "", 0)
    return TLSInfo(sslobj.version() or "", name, bits, peer_chain(sslobj), verified_name)


def tls_failure(exc: BaseException) -> TLSFailed:
    """The :class:`~smtp_rtls.session.requests.TLSFailed` for an exception of a handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        kind = _FAILURES.get(exc.verify_code, HandshakeFailure.OTHER)
        return TLSFailed(kind, exc.verify_message or str(exc))
    return TLSFailed(HandshakeFailure.OTHER, f"{type(exc).__name__}: {exc}")
