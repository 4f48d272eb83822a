"""Certificate chains for the DANE tests, made with ``cryptography`` (no files)."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


@attrs.frozen
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: Any

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)

    @property
    def spki(self) -> bytes:
        return self.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def tlsa(self, usage: int, selector: int, matching: int) -> str:
        """The TLSA presentation text that associates with this certificate."""
        content = self.der if selector == 0 else self.spki
        if matching == 1:
            content = hashlib.sha256(content).digest()
        elif matching == 2:
            content = hashlib.sha512(content).digest()
        return f"{usage} {selector} {matching} {content.hex()}"


def new_key(kind: str = "ec") -> Any:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def issue(
    subject: str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    names: tuple[str, ...] = (),
    key: Any = None,
    not_before: datetime.datetime = NOW - 30 * DAY,
    not_after: datetime.datetime = NOW + 30 * DAY,
    issuer_name: str | None = None,
) -> Issued:
    """A certificate for ``subject``; self-signed when ``issuer`` is None."""
    key = key if key is not None else new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer_key = issuer.key if issuer is not None else key
    if issuer_name is not None:
        issuer_dn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)])
    else:
        issuer_dn = issuer.cert.subject if issuer is not None else name
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_dn)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    algorithm = None if isinstance(signer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Issued(builder.sign(signer_key, algorithm), key)


# --- hostile certificates, edited in DER by hand (X.509: RFC 5280 §4.1) -----------------
#
# cryptography's builder refuses to make these, so they are written here: a few
# lines of DER (ITU-T X.690 §8, definite lengths only) are enough to take a
# certificate apart, change one element of its TBSCertificate and sign it again.


def der_tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def der_items(element: bytes) -> list[bytes]:
    """The child elements (whole TLVs) of a constructed DER element."""
    header = 2 if element[1] < 0x80 else 2 + (element[1] & 0x7F)
    content, items = element[header:], []
    while content:
        length = content[1]
        start = 2
        if length >= 0x80:
            start = 2 + (length & 0x7F)
            length = int.from_bytes(content[2:start], "big")
        items.append(content[: start + length])
        content = content[start + length :]
    return items


def der_oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER element."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return der_tlv(0x06, bytes(body))


SEQUENCE, BIT_STRING, INTEGER = 0x30, 0x03, 0x02
# TBSCertificate (RFC 5280 §4.1): [0] version, serial, signature, issuer,
# validity, subject, subjectPublicKeyInfo, [3] extensions.
VERSION, SIGNATURE, SPKI, EXTENSIONS = 0, 2, 6, 7


def rebuild(
    cert: Issued,
    signer: Issued,
    edit: Callable[[list[bytes]], list[bytes]],
    *,
    signature_algorithm: bytes | None = None,
) -> bytes:
    """``cert`` with its TBSCertificate elements passed through ``edit``, signed by ``signer``.

    ``signer`` must hold an EC key (ECDSA with SHA-256).  ``signature_algorithm``
    replaces the AlgorithmIdentifier in both places it appears.
    """
    tbs, algorithm, _ = der_items(cert.der)
    items = edit(der_items(tbs))
    if signature_algorithm is not None:
        items[SIGNATURE] = algorithm = signature_algorithm
    new_tbs = der_tlv(SEQUENCE, b"".join(items))
    signature = signer.key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    return der_tlv(SEQUENCE, new_tbs + algorithm + der_tlv(BIT_STRING, b"\x00" + signature))
