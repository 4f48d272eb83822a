"""DANE for SMTP (RFC 7672 on RFC 6698): TLSA records, their usability, matching."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .requests import Lookup

__all__ = ["DaneOutcome", "TLSARecord", "TLSAResult", "dane_verify", "lookup_tlsa"]


@attrs.frozen(slots=True)
class TLSARecord:
    """One TLSA record (RFC 6698 §2.1): usage, selector, matching type, data."""

    usage: int
    selector: int
    matching_type: int
    data: bytes

    @classmethod
    def parse(cls, presentation: str) -> TLSARecord:
        """Parse ``"3 1 1 ab12..."`` (RFC 6698 §2.2)."""
        raise NotImplementedError


@attrs.frozen(slots=True)
class TLSAResult:
    """The TLSA RRset of ``host`` and the records of it usable for SMTP."""

    host: str
    records: tuple[TLSARecord, ...]
    dnssec: bool
    usable: tuple[TLSARecord, ...]
    temporary_failure: bool = False
    reason: str = ""


@attrs.frozen(slots=True)
class DaneOutcome:
    """Whether a peer's chain matched a usable TLSA record, and which."""

    ok: bool
    reason: str
    matched: TLSARecord | None = None


def lookup_tlsa(mx_host: str, port: int = 25) -> Lookup[TLSAResult]:
    """Look up ``_<port>._tcp.<mx_host>`` TLSA."""
    raise NotImplementedError
    yield


def dane_verify(
    records: Sequence[TLSARecord], peer_chain: Sequence[bytes], names: Sequence[str]
) -> DaneOutcome:
    """Match ``peer_chain`` (DER, leaf first) against ``records``."""
    raise NotImplementedError
