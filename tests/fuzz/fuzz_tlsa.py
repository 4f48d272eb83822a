"""Harness ``tlsa``: TLSA records and peer certificates into DANE
(smtp_rtls.policy.dane, RFC 6698 §2, RFC 7672 §3).

Input (FuzzedDataProvider): TLSA presentation texts, whether the peer
chain is a real certificate (made once, at import) or fuzzed DER, and the
reference names.

ORACLE:

* ``TLSARecord.parse`` raises nothing but ValueError; a parsed record has
  8-bit fields and non-empty data, and ``parse(str(record)) == record``;
* ``usable`` never raises, and is True only for DANE-TA(2)/DANE-EE(3) with
  a known selector and a digest of the right length (RFC 7672 §3.1);
* ``dane_verify`` never raises whatever the chain (documented: "A chain
  that cannot be parsed or evaluated fails to match ... it never raises");
* a DANE-EE(3) record of the leaf's own SPKI or certificate digest always
  matches, whatever the names and the dates (RFC 7672 §3.1.1).
"""

from __future__ import annotations

import datetime
import hashlib
import sys

import atheris
from fuzz_common import main

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls.policy.dane import TLSARecord, dane_verify

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _leaf() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.example")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cert.public_bytes(serialization.Encoding.DER), spki


LEAF, SPKI = _leaf()
NOW = datetime.datetime(2026, 12, 5, tzinfo=datetime.UTC)


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    real_leaf = fdp.ConsumeBool()
    ta = fdp.ConsumeBool()
    names = [fdp.ConsumeUnicodeNoSurrogates(40) for _ in range(fdp.ConsumeIntInRange(0, 2))]
    der = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2000))
    records = []
    for text in fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()).split("\n")[:8]:
        try:
            record = TLSARecord.parse(text)
        except ValueError:
            continue
        assert all(0 <= n <= 255 for n in (record.usage, record.selector, record.matching_type))
        assert record.data and TLSARecord.parse(str(record)) == record, (text, record)
        if record.usable:
            assert record.usage in (2, 3) and record.selector in (0, 1), record
            assert record.matching_type == 0 or len(record.data) in (32, 64), record
        records.append(record)
    if ta:
        # the real certificate as a DANE-TA(2) trust anchor: the fuzzed DER
        # is then checked as a certificate issued by it (RFC 7672 §3.1.2)
        records.append(TLSARecord(2, 0, 1, hashlib.sha256(LEAF).digest()))
    chain = [LEAF, der] if real_leaf else [der, LEAF]
    outcome = dane_verify(records, chain, names, now=NOW)
    assert isinstance(outcome.reason, str) and outcome.ok == (outcome.matched is not None)
    if real_leaf:
        for selected, selector in ((SPKI, 1), (LEAF, 0)):
            own = TLSARecord(3, selector, 1, hashlib.sha256(selected).digest())
            assert dane_verify([*records, own], chain, names, now=NOW).ok, outcome


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
