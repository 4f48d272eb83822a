"""TLS helpers every adapter needs: a TLSInfo from an ``ssl`` object, and
server contexts.

The core learns about TLS only through :class:`~smtp_rtls.TLSInfo`; these
helpers build one from what the :mod:`ssl` module reports after a handshake,
the same way for a socket (``ssl.SSLSocket``), a memory BIO or asyncio's
transport (``ssl.SSLObject``).
"""

from __future__ import annotations

import ssl

from .._tls import TLSInfo
from .fulfil import peer_chain

__all__ = ["server_context", "tls_info"]


def tls_info(tls: ssl.SSLSocket | ssl.SSLObject, verified_name: str | None = None) -> TLSInfo:
    """What the handshake of ``tls`` gave: version, cipher, bits, the peer's
    chain (when it sent one) and ``verified_name`` (the name the handshake
    verified, when it verified one; None on a server or without checks)."""
    version = tls.version()
    cipher = tls.cipher()
    if version is None or cipher is None:
        raise ValueError("the TLS handshake has not completed")
    name, _protocol, bits = cipher
    chain = peer_chain(tls) if tls.getpeercert(binary_form=True) else ()
    return TLSInfo(version, name, bits, chain, verified_name)


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
