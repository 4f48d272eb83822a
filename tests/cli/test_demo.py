"""``smtp-rtls demo``: REQUIRETLS on real loopback sockets, run as a user runs it.

The demo runs in a subprocess with ``TMPDIR`` pointed at a folder of the
test's own, so that what it leaves behind (nothing) can be checked, and so
that a server or thread left running would keep the process from exiting
(the timeout would then fail the test).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("demo-tmpdir")
    done = subprocess.run(
        [sys.executable, "-m", "smtp_rtls", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert done.returncode == 0, done.stderr
    assert not done.stderr, done.stderr
    return done.stdout, tmp


def session(out: str, title: str) -> list[str]:
    """The wire lines of the session whose header starts with ``title``."""
    block = out.split(f"--- {title}", 1)[1].split("\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if not line.startswith("  "):
            break
        lines.append(line.strip())
    return lines


def test_the_demo_leaves_no_temporary_folder(demo: tuple[str, Path]) -> None:
    out, tmp = demo
    assert str(tmp) in out  # it did use TMPDIR
    assert list(tmp.iterdir()) == []


def test_it_says_dns_is_a_table_and_nothing_leaves_loopback(demo: tuple[str, Path]) -> None:
    out, _ = demo
    assert "in-process answer table stands in for DNS" in out
    assert "127.0.0.1" in out
    assert "Done: both servers stopped" in out


def test_rfc8689_s2_the_first_server_offers_requiretls_only_after_starttls(
    demo: tuple[str, Path],
) -> None:
    out, _ = demo
    lines = session(out, "session 1.1 with mx.example.net")
    at = lines.index("C: STARTTLS")
    assert not any("REQUIRETLS" in ln for ln in lines[:at])
    assert any(re.match(r"\[TLS handshake done: TLSv1\.[23] \S+", ln) for ln in lines[at:])
    assert "S: 250 REQUIRETLS" in lines[at:]
    assert "C: MAIL FROM:<alice@example.org> REQUIRETLS" in lines[at:]
    assert any(ln.startswith("S: 250 2.0.0 Queued (REQUIRETLS)") for ln in lines)
    assert "C: ..and this line starts with a dot." in lines  # dot-stuffed on the wire


def test_the_second_server_does_not_offer_it_and_no_mail_is_sent(
    demo: tuple[str, Path],
) -> None:
    out, _ = demo
    lines = session(out, "session 2.1 with mx.example.com")
    at = lines.index("C: STARTTLS")
    assert any(ln.startswith("[TLS handshake done") for ln in lines[at:])
    assert lines.count("C: EHLO client.example.org") == 2
    assert not any("REQUIRETLS" in ln for ln in lines)
    assert not any(ln.startswith("C: MAIL") for ln in lines)
    assert "C: QUIT" in lines


def test_the_verdicts_the_stored_message_and_its_received_line(demo: tuple[str, Path]) -> None:
    out, _ = demo
    assert re.search(r"bob@example\.net: DELIVERED .*\n.*authenticated by PKIX, TLSv1\.[23]", out)
    stored = out.split("--- the stored message:", 1)[1]
    received = re.search(r"Received: from client\.example\.org \(\[127\.0\.0\.1\]\)\n(.*)", stored)
    assert received is not None
    assert re.search(r"by mx\.example\.net with ESMTPS \(TLSv1\.[23]:.*\) REQUIRETLS", received[1])
    assert ".and this line starts with a dot." in stored  # stored unstuffed


def test_rfc8689_s4_2_1_the_downgrade_bounces_with_5_7_30(demo: tuple[str, Path]) -> None:
    out, _ = demo
    assert "carol@example.com: FAILED  (550 5.7.30 REQUIRETLS support required)" in out
    bounce = out.split("--- the non-delivery report to <alice@example.org> ---", 1)[1]
    assert "Content-Type: multipart/report; report-type=delivery-status" in bounce
    assert "Final-Recipient: rfc822; carol@example.com" in bounce
    assert "Status: 5.7.30" in bounce
    assert "Subject: REQUIRETLS demo" in bounce  # the returned header section


def test_the_careless_client_line_is_labelled_and_refused_555(demo: tuple[str, Path]) -> None:
    out, _ = demo
    assert (
        "careless client (plaintext): MAIL FROM:<alice@example.org> REQUIRETLS"
        " -> 555 5.5.4 Unsupported option: REQUIRETLS" in out
    )
    lines = session(out, "session 0.2: a careless client")
    assert "C: STARTTLS" not in lines
    mail = next(ln for ln in lines if ln.startswith("C: MAIL FROM"))
    assert "careless client" in mail
    assert lines[lines.index(mail) + 1].startswith("S: 555 5.5.4")


def test_rfc8689_s2_our_own_client_writes_no_requiretls_before_tls(
    demo: tuple[str, Path],
) -> None:
    out, _ = demo
    assert "smtp_rtls's client, asked for REQUIRETLS before TLS, refuses: 523 5.7.10" in out
    lines = session(out, "session 0.1: smtp_rtls's client")
    assert lines[1] == "C: EHLO client.example.org"
    assert not any(ln.startswith("C: MAIL") for ln in lines)


def test_in_memory_keeps_the_old_transcript() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtp_rtls", "demo", "--in-memory"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "client refuses MAIL ... REQUIRETLS: 550 5.7.30" in done.stdout
