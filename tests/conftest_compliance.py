"""The compliance matrix: interop tests say which peer and feature they prove
(``@pytest.mark.interop("Postfix 3.11", "REQUIRETLS relay")``), and the run
writes what passed to docs/_generated/compliance.json, which the docs render
(docs/_ext/compliance.py).  The matrix is never typed by hand."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

OUT = Path(__file__).resolve().parent.parent / "docs" / "_generated" / "compliance.json"
_results: dict[tuple[str, str], list[str]] = {}


def _package(name: str) -> Callable[[], str]:
    return lambda: metadata.version(name)


def _swaks() -> str:
    swaks = shutil.which("swaks")
    if swaks is None:
        return "not installed"
    out = subprocess.run([swaks, "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.split()[2] if out.stdout.count(" ") >= 2 else out.stdout.strip()


def _npm(name: str) -> Callable[[], str]:
    def version() -> str:
        path = Path(__file__).parent / "lab" / "node" / "node_modules" / name / "package.json"
        return str(json.loads(path.read_text())["version"]) if path.exists() else "not installed"

    return version


# where tests/lab/postfix311-fetch.sh unpacks Postfix 3.11 (the same default)
_PF311 = Path(
    os.environ.get("LAB_PF311_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "smtp_rtls"
    / "postfix311"
)


def _postconf(postconf: Path) -> str:
    # the fetch script relocates 3.11 with patchelf, so it runs as it is
    if not postconf.exists():
        return "not installed"
    out = subprocess.run(
        [str(postconf), "-dh", "mail_version"], capture_output=True, text=True, timeout=10
    )
    return out.stdout.strip() or "unknown"


VERSIONS: dict[str, Callable[[], str]] = {
    "smtplib": platform.python_version,
    "aiosmtplib": _package("aiosmtplib"),
    "aiosmtpd": _package("aiosmtpd"),
    "swaks": _swaks,
    "nodemailer": _npm("nodemailer"),
    "smtp-server": _npm("smtp-server"),
    "Postfix 3.7": lambda: _postconf(Path("/usr/sbin/postconf")),
    "Postfix 3.11": lambda: _postconf(_PF311 / "root" / "usr" / "sbin" / "postconf"),
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line(
        "markers", "interop(peer, feature): a test that proves `feature` with `peer`"
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record the outcome of each marked test (setup failures and skips too)."""
    marks = [m for m in getattr(report, "interop_marks", [])]
    if not marks or (report.when != "call" and report.passed):
        return
    outcome = "pass" if report.passed else ("skip" if report.skipped else "fail")
    for peer, feature in marks:
        _results.setdefault((peer, feature), []).append(outcome)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """Carry the item's interop marks over to its report."""
    outcome = yield
    report = outcome.get_result()
    report.interop_marks = [tuple(m.args) for m in item.iter_markers("interop")]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the matrix of what this run proved (only when it ran interop tests)."""
    if not _results:
        return
    rows = []
    for (peer, feature), outcomes in sorted(_results.items()):
        status = "fail" if "fail" in outcomes else ("pass" if "pass" in outcomes else "skip")
        rows.append({"peer": peer, "feature": feature, "status": status, "tests": len(outcomes)})
    versions = {}
    for peer in sorted({r["peer"] for r in rows}):
        try:
            versions[peer] = VERSIONS[peer]() if peer in VERSIONS else "?"
        except Exception as exc:  # a version we cannot read is no reason to fail the run
            versions[peer] = f"unknown ({type(exc).__name__})"
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"versions": versions, "rows": rows}, indent=1) + "\n")
