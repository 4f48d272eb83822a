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
    protected because the caller says so through ``start_tls(TLSInfo(...))``.

    ``version`` is the negotiated protocol as :meth:`ssl.SSLSocket.version`
    names it (``"TLSv1.2"``, ``"TLSv1.3"``); ``cipher`` the cipher suite name;
    ``bits`` its secret bits; ``peer_chain`` the peer's certificate chain as
    DER, leaf first (empty when the peer sent none or the adapter could not
    get it); ``verified_name`` the name the certificate was verified against
    (PKIX or DANE), ``None`` when it was not verified.
    """

    version: str = attrs.field(validator=attrs.validators.instance_of(str))
    cipher: str = attrs.field(validator=attrs.validators.instance_of(str))
    bits: int = attrs.field(validator=attrs.validators.instance_of(int))
    peer_chain: tuple[bytes, ...] = attrs.field(default=(), converter=_chain)
    verified_name: str | None = attrs.field(default=None)

    @property
    def verified(self) -> bool:
        """True when the peer's certificate was verified against a name."""
        return self.verified_name is not None
