"""TLSInfo: what the adapter learned from a TLS handshake."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["TLSInfo"]


def _chain(value: Iterable[bytes]) -> tuple[bytes, ...]:
    if isinstance(value, bytes | bytearray):
        raise TypeError("peer_chain is a sequence of DER certificates, not one bytes value")
    items = tuple(value)
    for item in items:
        if not isinstance(item, bytes | bytearray):
            raise TypeError("peer_chain items must be DER-encoded bytes")
    return tuple(bytes(i) for i in items)


@attrs.frozen(slots=True)
class TLSInfo:
    """The facts of an established TLS session, as told by the I/O layer.

    The wire core never performs a handshake; it only knows a session is
    protected because the caller says so through ``start_tls(TLSInfo(...))``
    (:meth:`ServerConnection.start_tls`, :meth:`ClientConnection.start_tls`).
    """

    #: The negotiated protocol as :meth:`ssl.SSLSocket.version` names it:
    #: ``"TLSv1.2"``, ``"TLSv1.3"``, ...
    version: str = attrs.field(validator=attrs.validators.instance_of(str))
    #: The cipher suite name, as the first item of
    #: :meth:`ssl.SSLSocket.cipher` (``"TLS_AES_128_GCM_SHA256"``).
    cipher: str = attrs.field(validator=attrs.validators.instance_of(str))
    #: The cipher's secret bits (the third item of
    #: :meth:`ssl.SSLSocket.cipher`), e.g. ``128`` or ``256``.
    bits: int = attrs.field(validator=attrs.validators.instance_of(int))
    #: The peer's certificate chain as DER, leaf first: a sequence of
    #: ``bytes`` (one ``bytes`` value is refused).  Empty when the peer sent
    #: none or the adapter could not get it.
    peer_chain: tuple[bytes, ...] = attrs.field(default=(), converter=_chain)
    #: The name the peer's certificate was verified against (by PKIX or
    #: DANE); ``None`` when it was not verified.  RFC 8689 §4.2.1 step 4
    #: makes a verified server certificate a condition of REQUIRETLS.
    verified_name: str | None = attrs.field(default=None)

    @property
    def verified(self) -> bool:
        """True when the peer's certificate was verified against a name."""
        return self.verified_name is not None
