"""The README's main job: the demo runs and shows the RFC 8689 rules at work."""

from __future__ import annotations

import subprocess
import sys

from smtp_rtls.cli._memory_demo import run


def transcript() -> list[str]:
    lines: list[str] = []
    run(lines.append)
    return lines


def test_demo_shows_requiretls_only_after_tls_and_a_tagged_message() -> None:
    lines = transcript()
    first, second = "\n".join(lines).split("== 2.")
    starttls_at = first.index("C: STARTTLS")
    # RFC 8689 §2: REQUIRETLS offered after STARTTLS, never before
    assert "S: 250 REQUIRETLS" in first[starttls_at:]
    offered_before = [ln for ln in first[:starttls_at].splitlines() if ln.startswith("S: 250")]
    assert offered_before and not any("REQUIRETLS" in ln for ln in offered_before)
    assert "client refuses MAIL ... REQUIRETLS: 523 5.7.10" in first
    assert "S: 555 5.5.4 Unsupported option: REQUIRETLS" in first
    assert "server: end of message, envelope requiretls=True" in first
    assert "S: 250 2.0.0 Queued (REQUIRETLS)" in first
    assert "C: ..and this one starts with a dot." in first  # dot-stuffed on the wire
    # the downgrade: no REQUIRETLS after TLS -> 5.7.30 and no MAIL written
    assert "client refuses MAIL ... REQUIRETLS: 550 5.7.30" in second
    assert "C: MAIL" not in second


def test_demo_command_line_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtp_rtls", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Queued (REQUIRETLS)" in done.stdout
