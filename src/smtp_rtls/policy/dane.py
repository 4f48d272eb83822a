"""DANE for SMTP (RFC 7672 on RFC 6698): TLSA records, their usability, matching.

:func:`lookup_tlsa` asks for ``_25._tcp.<mx host>`` TLSA and says what the
RRset means for the connection (RFC 7672 §2.2): a secure set with usable
records demands authenticated TLS, a secure set of only unusable records
demands TLS without authentication, anything insecure leaves the host to
opportunistic TLS, and a failed look-up makes the host unusable.

:func:`dane_verify` matches the peer's certificate chain against the usable
records after the handshake; it needs the ``cryptography`` package (the
``dane`` extra), imported only when a certificate has to be parsed.

Where the chain comes from (the DANE-TA decision)
--------------------------------------------------
DANE-EE(3) needs the leaf only, which every Python gives
(``SSLSocket.getpeercert(binary_form=True)``).  DANE-TA(2) needs the issuer
certificates the server sent (RFC 7672 §3.1.2: the server MUST send the TA
certificate).  The public ``SSLSocket.get_unverified_chain()`` exists from
Python 3.13; on 3.10-3.12 the same OpenSSL call is reachable as the private
``SSLSocket._sslobj.get_unverified_chain()``.  The adapters take the chain
through :func:`smtp_rtls.io.fulfil.peer_chain`, which uses the public method,
then the private one, and falls back to the leaf alone.  With the leaf alone,
DANE-TA still works when the TLSA record itself carries the trust anchor
(matching type Full(0): ``2 0 0`` a whole certificate, ``2 1 0`` a bare key),
because the leaf's signature is checked against that key; with digest records
(``2 0 1``, ``2 1 1``, ...) and no chain the match fails closed, with a reason
that says the chain was missing.

A chain that cannot be evaluated is a failed match
------------------------------------------------------
The chain comes from whoever answered the connection, a man in the middle
included.  Whatever ``cryptography`` cannot parse or evaluate in it (a
malformed or invalid-version certificate, an unsupported key or signature
algorithm, a duplicate extension, ...) makes that record fail to match,
with the error in the reason: :func:`dane_verify` never raises for the
chain's content, and :func:`~smtp_rtls.policy.verdict.check` turns the
failed match into TRY_NEXT (RFC 7672 §2.1.1: a server that fails DANE
authentication is not used).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .mx import normalize_name, wildcard_match
from .requests import DNSAnswer, DNSQuery, Lookup

if TYPE_CHECKING:
    from cryptography import x509

__all__ = [
    "DANE_EE",
    "DANE_TA",
    "DaneOutcome",
    "TLSARecord",
    "TLSAResult",
    "dane_verify",
    "lookup_tlsa",
    "usable_records",
]

# RFC 7218 names for the numbers of RFC 6698 §2.1.
PKIX_TA, PKIX_EE, DANE_TA, DANE_EE = 0, 1, 2, 3
SELECTOR_CERT, SELECTOR_SPKI = 0, 1
MATCH_FULL, MATCH_SHA256, MATCH_SHA512 = 0, 1, 2
_DIGEST_LENGTH = {MATCH_SHA256: 32, MATCH_SHA512: 64}
_TEMPORARY_RCODES = frozenset({"SERVFAIL", "TIMEOUT", "REFUSED"})


@attrs.frozen(slots=True)
class TLSARecord:
    """One TLSA record (RFC 6698 §2.1): usage, selector, matching type, data."""

    usage: int
    selector: int
    matching_type: int
    data: bytes

    @classmethod
    def parse(cls, presentation: str) -> TLSARecord:
        """Parse ``"3 1 1 ab12..."`` (RFC 6698 §2.2); raise ValueError when malformed.

        The association data is hex and may contain spaces (RFC 6698 §2.2).
        """
        fields = presentation.split()
        if len(fields) < 4:
            raise ValueError(f"TLSA record needs 4 fields: {presentation!r}")
        numbers = []
        for text in fields[:3]:
            if not text.isdigit() or int(text) > 255:
                raise ValueError(f"TLSA field is not an 8-bit number: {text!r}")
            numbers.append(int(text))
        try:
            data = bytes.fromhex("".join(fields[3:]))
        except ValueError:
            raise ValueError(f"TLSA association data is not hex: {presentation!r}") from None
        if not data:
            raise ValueError("TLSA association data is empty")
        return cls(numbers[0], numbers[1], numbers[2], data)

    @property
    def usable(self) -> bool:
        """Usable for SMTP per RFC 7672 §3.1: DANE-TA/DANE-EE, known selector and matching."""
        if self.usage not in (DANE_TA, DANE_EE):
            # RFC 7672 §3.1.3: PKIX-TA(0)/PKIX-EE(1) MAY be treated as unusable;
            # they add nothing for MTA-to-MTA SMTP.
            return False
        if self.selector not in (SELECTOR_CERT, SELECTOR_SPKI):
            return False
        if self.matching_type == MATCH_FULL:
            return True
        # A digest of the wrong length can never match (RFC 6698 §2.1.3).
        return _DIGEST_LENGTH.get(self.matching_type) == len(self.data)

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.matching_type} {self.data.hex()}"


def usable_records(records: Sequence[TLSARecord]) -> tuple[TLSARecord, ...]:
    """The records of ``records`` an SMTP client can use (RFC 7672 §3.1)."""
    return tuple(r for r in records if r.usable)


@attrs.frozen(slots=True)
class TLSAResult:
    """The TLSA RRset of ``host`` and the records of it usable for SMTP.

    ``usable`` is empty unless the RRset is secure (``dnssec``): insecure TLSA
    records authenticate nothing (RFC 7672 §2.2).  ``temporary_failure`` means
    the look-up failed; RFC 7672 §2.1.2 then forbids delivery via this host.
    """

    host: str
    records: tuple[TLSARecord, ...]
    dnssec: bool
    usable: tuple[TLSARecord, ...]
    temporary_failure: bool = False
    reason: str = ""

    @property
    def authentication_required(self) -> bool:
        """A secure set with a usable record: TLS, authenticated by these records."""
        return self.dnssec and bool(self.usable)

    @property
    def unusable_set(self) -> bool:
        """A secure, non-empty set with no usable record.

        RFC 7672 §2.2: TLS is still mandatory, but without authentication.
        """
        return self.dnssec and bool(self.records) and not self.usable

    @property
    def tls_required(self) -> bool:
        """Any secure TLSA record commits the host to STARTTLS (RFC 7672 §2.2.3)."""
        return self.dnssec and bool(self.records)


def lookup_tlsa(mx_host: str, port: int = 25) -> Lookup[TLSAResult]:
    """Look up ``_<port>._tcp.<mx_host>`` TLSA (RFC 7672 §2.2.3).

    Only meaningful when the MX host itself was found securely (secure MX
    and address records, RFC 7672 §2.2.1, §2.2.2); the caller decides that.
    """
    host = normalize_name(mx_host)
    answer = yield DNSQuery(f"_{port}._tcp.{host}", "TLSA")
    assert isinstance(answer, DNSAnswer)
    secure = answer.authentic
    if answer.rcode == "NXDOMAIN" or (answer.rcode == "NOERROR" and not answer.records):
        # RFC 7672 §2.1.1: a secure or insecure denial is an answer, not an error.
        return TLSAResult(host, (), secure, (), reason="no TLSA records")
    if answer.rcode != "NOERROR":
        # RFC 7672 §2.1.2: a failed TLSA look-up makes the server unreachable.
        return TLSAResult(
            host, (), secure, (), temporary_failure=True, reason=f"TLSA lookup: {answer.rcode}"
        )
    try:
        records = tuple(TLSARecord.parse(r) for r in answer.records)
    except ValueError as exc:
        if not secure:
            return TLSAResult(host, (), False, (), reason=f"insecure, malformed TLSA: {exc}")
        # RFC 7672 §2.1.2 counts "malformed replies" among look-up failures.
        return TLSAResult(host, (), True, (), temporary_failure=True, reason=str(exc))
    if not secure:
        return TLSAResult(host, records, False, (), reason="insecure TLSA records")
    usable = usable_records(records)
    reason = "usable TLSA records" if usable else "only unusable TLSA records"
    return TLSAResult(host, records, True, usable, reason=reason)


@attrs.frozen(slots=True)
class DaneOutcome:
    """Whether a peer's chain matched a usable TLSA record, and which."""

    ok: bool
    reason: str
    matched: TLSARecord | None = None


def _crypto() -> Any:
    try:
        from cryptography import x509 as x509_module
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "DANE needs the 'cryptography' package: pip install smtp_rtls[dane]"
        ) from None
    return x509_module


def _chain_errors() -> tuple[type[Exception], ...]:
    """What ``cryptography`` raises on a certificate it cannot parse or evaluate.

    None of its own exceptions derives from ValueError.  Looked up only when
    something was raised, so DANE-EE with selector Cert(0) still needs no
    ``cryptography`` at all.
    """
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.x509 import (
            DuplicateExtension,
            InvalidVersion,
            UnsupportedGeneralNameType,
        )
    except ImportError:
        return (ValueError, TypeError)
    return (
        ValueError,
        TypeError,
        UnsupportedAlgorithm,
        DuplicateExtension,
        InvalidVersion,
        UnsupportedGeneralNameType,
    )


def _load(der: bytes) -> x509.Certificate:
    cert: x509.Certificate = _crypto().load_der_x509_certificate(der)
    return cert


def _spki(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _selected(record: TLSARecord, der: bytes) -> bytes:
    # RFC 6698 §2.1.2: selector 0 = the whole certificate, 1 = its SPKI.
    return der if record.selector == SELECTOR_CERT else _spki(_load(der))


def _associated(record: TLSARecord, der: bytes) -> bool:
    """RFC 6698 §2.1.3: compare the selected content, whole or as a digest."""
    content = _selected(record, der)
    if record.matching_type == MATCH_SHA256:
        content = hashlib.sha256(content).digest()
    elif record.matching_type == MATCH_SHA512:
        content = hashlib.sha512(content).digest()
    return content == record.data


def _signed_by(child: x509.Certificate, public_key: Any) -> bool:
    """True when ``public_key`` made ``child``'s signature."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

    try:
        signature, data = child.signature, child.tbs_certificate_bytes
        # Raises UnsupportedAlgorithm for a signature algorithm it does not know:
        # a signature that cannot be checked was not made by this key.
        hash_algorithm = child.signature_hash_algorithm
        if isinstance(public_key, rsa.RSAPublicKey) and hash_algorithm is not None:
            pad = child.signature_algorithm_parameters
            if not isinstance(pad, padding.PSS | padding.PKCS1v15):
                pad = padding.PKCS1v15()
            public_key.verify(signature, data, pad, hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    except _chain_errors():
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    x509m = _crypto()
    try:
        constraints = cert.extensions.get_extension_for_class(x509m.BasicConstraints).value
    except x509m.ExtensionNotFound:
        return False
    return bool(constraints.ca)


def _within_validity(cert: x509.Certificate, now: datetime.datetime) -> bool:
    if hasattr(cert, "not_valid_before_utc"):
        return bool(cert.not_valid_before_utc <= now <= cert.not_valid_after_utc)
    # cryptography < 42 has only the naive UTC datetimes.
    utc = datetime.UTC
    before = cert.not_valid_before.replace(tzinfo=utc)
    after = cert.not_valid_after.replace(tzinfo=utc)
    return bool(before <= now <= after)


def _presented_names(cert: x509.Certificate) -> list[str]:
    """DNS-IDs, or the CN-ID only when there is no DNS-ID (RFC 7672 §3.2.3)."""
    x509m = _crypto()
    try:
        san = cert.extensions.get_extension_for_class(x509m.SubjectAlternativeName).value
        dns_ids: list[str] = san.get_values_for_type(x509m.DNSName)
    except x509m.ExtensionNotFound:
        dns_ids = []
    if dns_ids:
        return dns_ids
    common = cert.subject.get_attributes_for_oid(x509m.NameOID.COMMON_NAME)
    return [str(a.value) for a in common]


def _name_matches(cert: x509.Certificate, names: Sequence[str]) -> str | None:
    for presented in _presented_names(cert):
        for reference in names:
            if wildcard_match(presented, reference):
                return normalize_name(reference)
    return None


def _chain_to(chain: Sequence[x509.Certificate], top: int, now: datetime.datetime) -> str | None:
    """Check chain[0..top] links by signature and CA flag; an error text or None."""
    for i in range(top):
        child, issuer = chain[i], chain[i + 1]
        if child.issuer != issuer.subject or not _signed_by(child, issuer.public_key()):
            return f"certificate {i} is not signed by certificate {i + 1}"
        if not _is_ca(issuer):
            return f"certificate {i + 1} is not a CA"
        if not _within_validity(child, now):
            return f"certificate {i} is outside its validity period"
    return None


def _verify_ta(
    record: TLSARecord, ders: Sequence[bytes], names: Sequence[str], now: datetime.datetime
) -> tuple[bool, str]:
    """DANE-TA(2): RFC 7672 §3.1.2 and the name checks of §3.2.2."""
    chain = [_load(d) for d in ders]
    problem = "no certificate in the chain matches the DANE-TA record"
    top: int | None = None
    # RFC 7672 §3.1.2: the TA is an issuer the server sends in its chain,
    # anywhere above the leaf (often the last certificate, a self-signed root).
    for i in range(1, len(chain)):
        if _associated(record, ders[i]):
            found = _chain_to(chain, i, now)
            if found is None:
                top = i
                break
            problem = found
    if top is None and record.matching_type == MATCH_FULL:
        # The record itself carries the TA (2 0 0: a certificate, 2 1 0: a
        # key): usable even when the chain holds only the leaf (see above).
        top = _verify_against_record_ta(record, chain, now)
        if top is None:
            problem = "the chain does not lead to the trust anchor in the TLSA record"
    elif top is None and len(chain) == 1:
        problem = "only the leaf certificate is available; DANE-TA needs the issuer chain"
    if top is None:
        return False, problem
    # RFC 7672 §3.2.2: DANE-TA requires a name check against the reference
    # identifiers (TLSA base domain, and the next-hop domain for a secure MX).
    matched = _name_matches(chain[0], names)
    if matched is None:
        return False, f"leaf certificate names match none of {list(names)}"
    return True, f"DANE-TA matched, name {matched}"


def _verify_against_record_ta(
    record: TLSARecord, chain: Sequence[x509.Certificate], now: datetime.datetime
) -> int | None:
    """With a Full(0) DANE-TA record, the index of the first chain cert the TA signed."""
    if record.selector == SELECTOR_CERT:
        try:
            anchor = _load(record.data)
        except ValueError:
            return None
        key: Any = anchor.public_key()
        subject = anchor.subject
    else:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        try:
            key = load_der_public_key(record.data)
        except (ValueError, TypeError):
            return None
        subject = None
    for i, cert in enumerate(chain):
        if subject is not None and cert.issuer != subject:
            continue
        if _signed_by(cert, key) and _within_validity(cert, now):
            return i if _chain_to(chain, i, now) is None else None
    return None


def dane_verify(
    records: Sequence[TLSARecord],
    peer_chain: Sequence[bytes],
    names: Sequence[str],
    *,
    now: datetime.datetime | None = None,
) -> DaneOutcome:
    """Match ``peer_chain`` (DER, leaf first) against the usable ``records``.

    ``names`` are the reference identifiers for DANE-TA name checks: the TLSA
    base domain (the MX host) first, and the next-hop domain when the MX
    records were secure or the MX was implicit (RFC 7672 §3.2.2).
    DANE-EE(3) checks the leaf alone, ignoring its names and its dates
    (RFC 7672 §3.1.1, §3.2.1).  DANE-TA(2) checks signatures and validity
    dates from the leaf up to the TA at ``now`` (default: the current time).
    Unusable records are skipped.  The first matching record wins.  A chain
    that cannot be parsed or evaluated fails to match, with the reason; it
    never raises.
    """
    usable = usable_records(records)
    if not usable:
        return DaneOutcome(False, "no usable TLSA records")
    if not peer_chain:
        return DaneOutcome(False, "the peer presented no certificate")
    when = now if now is not None else datetime.datetime.now(datetime.UTC)
    reasons = []
    for record in usable:
        try:
            if record.usage == DANE_EE:
                # RFC 7672 §3.1.1: the leaf alone; names and expiry MUST be ignored.
                if _associated(record, peer_chain[0]):
                    return DaneOutcome(True, "DANE-EE matched the leaf certificate", record)
                reasons.append(
                    f"{record.usage} {record.selector} {record.matching_type}: no match"
                )
                continue
            ok, why = _verify_ta(record, peer_chain, names, when)
        except _chain_errors() as exc:
            # The chain is the peer's, maybe a man in the middle's: what cannot
            # be evaluated is a failed match, never an exception (module docstring).
            ok, why = False, f"bad certificate: {type(exc).__name__}: {exc}"
        if ok:
            return DaneOutcome(True, why, record)
        reasons.append(f"{record.usage} {record.selector} {record.matching_type}: {why}")
    return DaneOutcome(False, "; ".join(reasons))
