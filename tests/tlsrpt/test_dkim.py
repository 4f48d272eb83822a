"""DKIM signatures on mailed reports (RFC 8460 §3, §5.3), checked with ``dkim.verify``.

§3: "Reports sent via SMTP MUST contain a valid DKIM [RFC6376] signature by
the reporting domain", without "l=", with a key record that declares
"s=tlsrpt".  The reports go into our own loopback server; the key is made in
the test and its TXT record handed to ``dkim.verify`` through ``dnsfunc``.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smtp_rtls.cli import main
from smtp_rtls.io.tlsrpt import DKIM_SIGNED_HEADERS, DKIMSigner, ReportStatus, report_message

from .test_cli import WHO, as_yesterday, send, zone
from .test_send_reports import NEXT_DAY, a_report, publish, sender
from .world import DOMAIN, REPORTS, REPORTS_MX, Certs, DNSServer, Recorder, session_day

dkim: Any = pytest.importorskip("dkim")
serialization: Any = pytest.importorskip("cryptography.hazmat.primitives.serialization")
rsa: Any = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")

SELECTOR = "tlsrpt2026"
SIGNING_DOMAIN = "sender.example"  # the domain of the submitter's contact address


def rsa_key() -> tuple[bytes, bytes]:
    """A new RSA key: the private key in PEM, the TXT record of its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; s=tlsrpt; p=" + base64.b64encode(spki)


@pytest.fixture
def recorded(
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    """A state directory with yesterday's result of one real delivery (as in test_cli)."""
    zone(dns_server)
    folder = tmp_path / "state" / "tlsrpt"
    server = smtp(certs.context("valid"))
    assert send(dns_server, certs, server.port, folder, tmp_path) == 0
    as_yesterday(folder)
    capsys.readouterr()
    return folder


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    return rsa_key()


def dns_for(record: bytes, domain: str = SIGNING_DOMAIN) -> Callable[..., bytes | None]:
    name = f"{SELECTOR}._domainkey.{domain}.".encode()

    def dnsfunc(queried: bytes, timeout: int = 5) -> bytes | None:
        return record if queried == name else None

    return dnsfunc


def signature_tags(message: bytes) -> dict[bytes, bytes]:
    head = message.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"DKIM-Signature:")
    field = head.split(b"\r\n")
    lines = [field[0]]
    for line in field[1:]:
        if not line[:1].isspace():
            break
        lines.append(line)
    value = b"".join(lines)[len(b"DKIM-Signature:") :]
    tags: dict[bytes, bytes] = dkim.util.parse_tag_value(value)
    return tags


def test_a_mailed_report_carries_a_dkim_signature_that_verifies(
    key: tuple[bytes, bytes], dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any]
) -> None:
    pem, record = key
    recorder = Recorder()
    server = smtp(certs.context("reports-mx"), recorder, hostname=REPORTS_MX)
    publish(dns_server, f"mailto:tlsrpt@{REPORTS}")
    send = sender(dns_server, certs, server.port)
    send.sign = DKIMSigner(SIGNING_DOMAIN, SELECTOR, pem)
    outcome = send.send(a_report())
    assert outcome.status is ReportStatus.DELIVERED, outcome
    ((_, content),) = recorder.messages_kept
    assert dkim.verify(content, dnsfunc=dns_for(record), tlsrpt="strict")
    tags = signature_tags(content)
    assert b"l" not in tags  # §3: no "l="
    assert tags[b"a"] == b"rsa-sha256" and tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == SIGNING_DOMAIN.encode() and tags[b"s"] == SELECTOR.encode()
    signed = {h.strip().lower() for h in tags[b"h"].split(b":")}
    # §5.3: TLS-Report-Domain and TLS-Report-Submitter "SHOULD be included"
    assert signed == {h.lower().encode() for h in DKIM_SIGNED_HEADERS}
    assert b"tls-report-domain" in signed and b"tls-report-submitter" in signed


def test_a_tampered_report_fails_verification(key: tuple[bytes, bytes]) -> None:
    pem, record = key
    message = DKIMSigner(SIGNING_DOMAIN, SELECTOR, pem)(
        report_message(a_report(), [f"tlsrpt@{REPORTS}"], date=NEXT_DAY)
    )
    assert dkim.verify(message, dnsfunc=dns_for(record), tlsrpt=True)
    body_at = message.index(b"\r\n\r\n") + 4
    tampered_body = message[:body_at] + message[body_at:].replace(b"aggregate", b"aggregated", 1)
    assert not dkim.verify(tampered_body, dnsfunc=dns_for(record), tlsrpt=True)
    tampered_head = message.replace(
        f"TLS-Report-Domain: {DOMAIN}".encode(), b"TLS-Report-Domain: other.example", 1
    )
    assert not dkim.verify(tampered_head, dnsfunc=dns_for(record), tlsrpt=True)
    # dkimpy, like a receiver, wants the message known as a report with an s=tlsrpt key
    assert not dkim.verify(message, dnsfunc=dns_for(record))
    # another key under the same selector: no
    _, other_record = rsa_key()
    assert not dkim.verify(message, dnsfunc=dns_for(other_record), tlsrpt=True)


def test_a_key_record_without_s_tlsrpt_is_refused_in_strict_mode(
    key: tuple[bytes, bytes],
) -> None:
    pem, record = key
    message = DKIMSigner(SIGNING_DOMAIN, SELECTOR, pem)(
        report_message(a_report(), [f"tlsrpt@{REPORTS}"], date=NEXT_DAY)
    )
    email_only = record.replace(b"s=tlsrpt", b"s=email")
    assert not dkim.verify(message, dnsfunc=dns_for(email_only), tlsrpt="strict")


def test_the_signer_refuses_what_cannot_sign_when_made() -> None:
    with pytest.raises(ValueError, match="PEM"):
        DKIMSigner(SIGNING_DOMAIN, SELECTOR, b"not a key")
    with pytest.raises(ValueError, match="CERTIFICATE"):
        DKIMSigner(
            SIGNING_DOMAIN,
            SELECTOR,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        )
    with pytest.raises(ValueError, match="From"):
        DKIMSigner(SIGNING_DOMAIN, SELECTOR, rsa_key()[0], headers=("Subject",))


def test_an_ed25519_key_signs_ed25519_sha256() -> None:
    pytest.importorskip("nacl")
    ed25519: Any = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    record = b"v=DKIM1; k=ed25519; s=tlsrpt; p=" + base64.b64encode(raw)
    signer = DKIMSigner(SIGNING_DOMAIN, SELECTOR, pem)
    assert signer.algorithm == b"ed25519-sha256"
    message = signer(report_message(a_report(), [f"tlsrpt@{REPORTS}"], date=NEXT_DAY))
    assert dkim.verify(message, dnsfunc=dns_for(record), tlsrpt="strict")


def test_without_dkimpy_the_signer_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, key: tuple[bytes, bytes]
) -> None:
    monkeypatch.setitem(sys.modules, "dkim", None)  # import dkim raises ImportError
    with pytest.raises(ImportError, match=r"smtp_rtls\[tlsrpt\]"):
        DKIMSigner(SIGNING_DOMAIN, SELECTOR, key[0])


# -- the command line ----------------------------------------------------------------------


def report_args(recorded: Path, dns_server: DNSServer, certs: Certs, port: int) -> list[str]:
    return [
        "tlsrpt",
        "report",
        "--tlsrpt-dir",
        str(recorded),
        "--date",
        str(session_day(recorded)),
        *WHO,
        "--send",
        "--nameserver",
        f"127.0.0.1:{dns_server.port}",
        "--mx-port",
        str(port),
        "--cafile",
        certs.cafile,
        "--timeout",
        "10",
    ]


def test_report_send_signs_mail_with_dkim_key_and_selector(
    recorded: Path,
    key: tuple[bytes, bytes],
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pem, record = key
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem)
    recorder = Recorder()
    mail = smtp(certs.context("reports-mx"), recorder, hostname=REPORTS_MX)
    dns_server.add(f"_smtp._tls.{DOMAIN}", "TXT", f'"v=TLSRPTv1; rua=mailto:tlsrpt@{REPORTS}"')
    args = report_args(recorded, dns_server, certs, mail.port)
    status = main([*args, "--dkim-key", str(key_file), "--dkim-selector", SELECTOR])
    captured = capsys.readouterr()
    assert status == 0, captured
    day = session_day(recorded)
    assert f"{DOMAIN} {day}: delivered to mailto:tlsrpt@{REPORTS}" in captured.out
    assert captured.err == ""  # signed: no warning
    ((_, content),) = recorder.messages_kept
    assert dkim.verify(content, dnsfunc=dns_for(record), tlsrpt="strict")
    assert b"l" not in signature_tags(content)


def test_report_send_dkim_domain_overrides_the_submitter_domain(
    recorded: Path,
    key: tuple[bytes, bytes],
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    tmp_path: Path,
) -> None:
    pem, record = key
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem)
    recorder = Recorder()
    mail = smtp(certs.context("reports-mx"), recorder, hostname=REPORTS_MX)
    dns_server.add(f"_smtp._tls.{DOMAIN}", "TXT", f'"v=TLSRPTv1; rua=mailto:tlsrpt@{REPORTS}"')
    args = report_args(recorded, dns_server, certs, mail.port)
    args += ["--dkim-key", str(key_file), "--dkim-selector", SELECTOR]
    assert main([*args, "--dkim-domain", "mail.sender.example"]) == 0
    ((_, content),) = recorder.messages_kept
    assert signature_tags(content)[b"d"] == b"mail.sender.example"
    assert dkim.verify(content, dnsfunc=dns_for(record, "mail.sender.example"), tlsrpt=True)


def test_report_send_without_a_key_warns_once_and_mails_unsigned(
    recorded: Path,
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder = Recorder()
    mail = smtp(certs.context("reports-mx"), recorder, hostname=REPORTS_MX)
    rua = f"mailto:tlsrpt@{REPORTS},mailto:other@{REPORTS}"
    dns_server.add(f"_smtp._tls.{DOMAIN}", "TXT", f'"v=TLSRPTv1; rua={rua}"')
    assert main(report_args(recorded, dns_server, certs, mail.port)) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RFC 8460 §3" in err and "without a DKIM signature" in err
    assert len(recorder.messages_kept) == 2  # two mails, one warning
    assert all(b"DKIM-Signature" not in content for _, content in recorder.messages_kept)


def test_a_missing_dkim_key_file_is_one_line_with_status_66(
    recorded: Path, dns_server: DNSServer, certs: Certs, tmp_path: Path, capsys: Any
) -> None:
    args = report_args(recorded, dns_server, certs, 25)
    missing = tmp_path / "nowhere.pem"
    assert main([*args, "--dkim-key", str(missing), "--dkim-selector", SELECTOR]) == 66
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and str(missing) in captured.err
    assert captured.out == ""  # nothing was made or sent


@pytest.mark.parametrize(
    ("extra", "status", "words"),
    [
        (["--dkim-selector", SELECTOR], 64, "--dkim-selector needs --dkim-key"),
        (["--dkim-domain", "sender.example"], 64, "--dkim-domain needs --dkim-key"),
        (["--dkim-key", "x.pem"], 64, "--dkim-key needs --dkim-selector"),
    ],
)
def test_dkim_options_are_checked(
    recorded: Path,
    dns_server: DNSServer,
    certs: Certs,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    status: int,
    words: str,
) -> None:
    assert main([*report_args(recorded, dns_server, certs, 25), *extra]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_dkim_options_need_send(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["tlsrpt", "report", "--tlsrpt-dir", str(recorded), "--dkim-selector", SELECTOR]
    assert main(args) == 64
    assert "--dkim-selector is for delivering reports: add --send" in capsys.readouterr().err


def test_a_bad_key_is_status_65_and_no_dkimpy_is_69(
    recorded: Path,
    dns_server: DNSServer,
    certs: Certs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"nonsense")
    args = [*report_args(recorded, dns_server, certs, 25), "--dkim-selector", SELECTOR]
    assert main([*args, "--dkim-key", str(bad)]) == 65
    assert capsys.readouterr().err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "dkim", None)
    assert main([*args, "--dkim-key", str(bad)]) == 69
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dkimpy" in err
