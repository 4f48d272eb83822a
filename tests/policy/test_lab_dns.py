"""MX, MTA-STS and DANE against real peers on loopback (the ``lab`` fixture).

unbound validates the lab's zones from the ``test.`` trust anchor: example.test
is signed, unsigned.test is an insecure delegation, bogus.test has a tampered
``mx.bogus.test A``, expired.test has only expired signatures.  The MTA-STS
host is a real HTTPS server with the lab CA's certificate.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest_lab import Lab
from smtp_rtls.io.fulfil import peer_chain
from smtp_rtls.io.stscache import FileSTSCache
from smtp_rtls.policy.dane import TLSARecord, dane_verify, lookup_tlsa
from smtp_rtls.policy.mtasts import fetch_policy
from smtp_rtls.policy.mx import MXHost, resolve_addresses, resolve_mx
from smtp_rtls.policy.requests import (
    DNSQuery,
    HTTPSRequest,
    Request,
    Result,
    run_lookup,
)

pytestmark = pytest.mark.lab


# --- MX and the AD bit -----------------------------------------------------------------


def test_signed_zone_mx_is_dnssec_through_trusted_resolver(lab: Lab) -> None:
    result = run_lookup(resolve_mx("example.test"), lab.fulfiller())
    assert result.hosts == (MXHost("mx.example.test", 10),)
    assert result.dnssec


def test_ad_bit_of_untrusted_resolver_counts_for_nothing_rfc7672_2_1_3(lab: Lab) -> None:
    result = run_lookup(resolve_mx("example.test"), lab.fulfiller(trusted=False))
    assert result.hosts == (MXHost("mx.example.test", 10),)
    assert not result.dnssec


def test_unsigned_zone_is_insecure(lab: Lab) -> None:
    result = run_lookup(resolve_mx("unsigned.test"), lab.fulfiller())
    assert result.hosts == (MXHost("mx.unsigned.test", 10),) and not result.dnssec


def test_expired_signatures_are_a_temporary_failure_rfc7672_2_1_2(lab: Lab) -> None:
    result = run_lookup(resolve_mx("expired.test"), lab.fulfiller())
    assert result.temporary_failure and result.hosts == ()


def test_authenticated_nxdomain_is_permanent(lab: Lab) -> None:
    result = run_lookup(resolve_mx("nope.example.test"), lab.fulfiller())
    assert result.permanent_failure and not result.null_mx and result.dnssec


def test_secure_addresses_of_mx_host_rfc7672_2_2_2(lab: Lab) -> None:
    result = run_lookup(resolve_addresses("mx.example.test"), lab.fulfiller())
    assert set(result.addresses) == {"127.0.0.1", "::1"} and result.dnssec
    insecure = run_lookup(resolve_addresses("mx.unsigned.test"), lab.fulfiller())
    assert insecure.addresses and not insecure.dnssec


def test_bogus_address_record_fails_the_host_rfc7672_2_1_2(lab: Lab) -> None:
    """The A RRset of mx.bogus.test was changed after signing: SERVFAIL from unbound."""
    result = run_lookup(resolve_addresses("mx.bogus.test"), lab.fulfiller())
    assert result.temporary_failure and not result.dnssec
    assert result.addresses == ()  # the AAAA answer alone must not let DANE be skipped


# --- TLSA -----------------------------------------------------------------------------------


def _spki_sha256(pem: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def test_secure_tlsa_records(lab: Lab) -> None:
    result = run_lookup(lookup_tlsa("mx.example.test"), lab.fulfiller())
    assert result.dnssec and result.authentication_required
    assert {str(r) for r in result.usable} == {
        f"3 1 1 {_spki_sha256(lab.dir / 'pki' / 'server.crt')}",
        f"2 1 1 {_spki_sha256(lab.ca)}",
    }


def test_insecure_tlsa_records_are_unusable_rfc7672_2_2(lab: Lab) -> None:
    result = run_lookup(lookup_tlsa("mx.unsigned.test"), lab.fulfiller())
    assert result.records and not result.dnssec
    assert result.usable == () and not result.tls_required


def test_missing_tlsa_is_an_answer(lab: Lab) -> None:
    result = run_lookup(lookup_tlsa("mx.example.test", port=587), lab.fulfiller())
    assert result.records == () and not result.temporary_failure and result.dnssec


# --- MTA-STS from the real HTTPS host --------------------------------------------------------


def test_policy_fetched_over_https_rfc8461_3_3(lab: Lab) -> None:
    outcome = run_lookup(fetch_policy("example.test"), lab.fulfiller())
    assert outcome.policy is not None, outcome.error
    assert outcome.policy.mode == "enforce"
    assert outcome.policy.matches("mx.example.test")
    assert not outcome.policy.matches("mx.unsigned.test")
    assert outcome.record is not None and outcome.policy.policy_id == outcome.record.id


def test_redirect_from_real_server_is_refused_rfc8461_3_3(lab: Lab) -> None:
    outcome = run_lookup(fetch_policy("bogus.test"), lab.fulfiller())
    assert outcome.policy is None and "301" in outcome.error


@pytest.fixture
def restore_sites(lab: Lab) -> Iterator[dict[str, dict[str, object]]]:
    original = lab.read_sites()
    yield {k: dict(v) for k, v in original.items()}
    lab.write_sites(original)


def test_wrong_content_type_from_real_server_is_refused_rfc8461_3_2(
    lab: Lab, restore_sites: dict[str, dict[str, object]]
) -> None:
    restore_sites["mta-sts.example.test"]["content_type"] = "text/html; charset=utf-8"
    lab.write_sites(restore_sites)
    outcome = run_lookup(fetch_policy("example.test"), lab.fulfiller())
    assert outcome.policy is None and "text/html" in outcome.error


def test_oversized_policy_from_real_server_is_refused(
    lab: Lab, restore_sites: dict[str, dict[str, object]]
) -> None:
    body = str(restore_sites["mta-sts.example.test"]["body"])
    restore_sites["mta-sts.example.test"]["body"] = body + "x: " + "y" * 70000 + "\n"
    lab.write_sites(restore_sites)
    outcome = run_lookup(fetch_policy("example.test"), lab.fulfiller())
    assert outcome.policy is None and "too large" in outcome.error


def test_untrusted_certificate_is_a_fetch_failure_rfc8461_3_3(lab: Lab, tmp_path: Path) -> None:
    import trustme

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    outcome = run_lookup(fetch_policy("example.test"), lab.fulfiller(cafile=str(other_ca)))
    assert outcome.policy is None and "certificate" in outcome.error


def test_cache_skips_https_while_txt_id_is_unchanged(lab: Lab, tmp_path: Path) -> None:
    fulfil = lab.fulfiller()
    seen: list[Request] = []

    def counting(request: Request) -> Result:
        seen.append(request)
        return fulfil(request)

    cache = FileSTSCache(tmp_path / "sts.json")
    first = run_lookup(cache.discover("example.test", 1000.0), counting)
    second = run_lookup(
        FileSTSCache(tmp_path / "sts.json").discover("example.test", 2000.0), counting
    )
    assert first.policy is not None and second.policy == first.policy and second.from_cache
    assert sum(isinstance(r, HTTPSRequest) for r in seen) == 1
    assert sum(isinstance(r, DNSQuery) for r in seen) == 2


# --- DANE with a real TLS handshake ---------------------------------------------------------


def _handshake_chain(lab: Lab) -> tuple[bytes, ...]:
    """Connect to a loopback TLS server using the lab's server chain; return peer_chain()."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # server.chain.pem = key + leaf + CA: the TA goes on the wire (RFC 7672 §3.1.2).
    server_ctx.load_cert_chain(str(lab.dir / "pki" / "server.chain.pem"))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)  # wait for the client to close
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        # DANE decides after the handshake, so no PKIX check here.
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname="mx.example.test") as tls,
        ):
            chain = peer_chain(tls)
    finally:
        thread.join(10)
        listener.close()
    assert not errors, errors
    return chain


def test_peer_chain_holds_leaf_and_ta(lab: Lab) -> None:
    chain = _handshake_chain(lab)
    assert len(chain) == 2
    assert chain[1] == ssl.PEM_cert_to_DER_cert(lab.ca.read_text())


@pytest.mark.parametrize("usage", [3, 2])
def test_dane_matches_lab_certificates_after_handshake(lab: Lab, usage: int) -> None:
    tlsa = run_lookup(lookup_tlsa("mx.example.test"), lab.fulfiller())
    records = [r for r in tlsa.usable if r.usage == usage]
    outcome = dane_verify(records, _handshake_chain(lab), ["mx.example.test", "example.test"])
    assert outcome.ok, outcome.reason
    assert outcome.matched == records[0]


def test_dane_ta_name_check_against_real_certificate_rfc7672_3_2_2(lab: Lab) -> None:
    tlsa = run_lookup(lookup_tlsa("mx.example.test"), lab.fulfiller())
    ta = [r for r in tlsa.usable if r.usage == 2]
    outcome = dane_verify(ta, _handshake_chain(lab), ["mx.elsewhere.test"])
    assert not outcome.ok and "names" in outcome.reason


def test_leaf_only_dane_ta_needs_full_ta_record(lab: Lab) -> None:
    """The decision of policy.dane's docstring, with the lab's real certificates."""
    leaf = _handshake_chain(lab)[:1]
    tlsa = run_lookup(lookup_tlsa("mx.example.test"), lab.fulfiller())
    digest_ta = [r for r in tlsa.usable if r.usage == 2]
    outcome = dane_verify(digest_ta, leaf, ["mx.example.test"])
    assert not outcome.ok and "only the leaf" in outcome.reason
    full_ta = TLSARecord(2, 0, 0, ssl.PEM_cert_to_DER_cert(lab.ca.read_text()))
    assert dane_verify([full_ta], leaf, ["mx.example.test"]).ok
