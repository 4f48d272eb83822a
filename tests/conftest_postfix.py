"""Fixtures for real Postfix peers: Debian 12's 3.7 and 3.11 (REQUIRETLS), on loopback.

``postfix37`` and ``postfix311`` are session-scoped private instances (their own
config, queue, log and Maildir in one fresh folder, world-traversable because
Postfix's delivery agents run as unprivileged users), started by
``tests/lab/postfix-up.sh`` on free ports of the SMTP range 2500-2599 and always
stopped by ``tests/lab/down.sh``, which signals exactly the master PIDs the up
script recorded.  Postfix 3.11 comes from Debian sid, unpacked once into a cache
by ``tests/lab/postfix311-fetch.sh`` (about 5 s cold, a no-op when cached).

Each instance accepts mail for ``example.test`` into one Maildir and relays mail
for ``sut.test`` to ``[127.0.0.1]:sut_port``, where a test runs the project's
server.  When Postfix is missing the tests fail (never skip): run
``bash tests/lab/install.sh`` as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

LAB_SCRIPTS = Path(__file__).parent / "lab"
UP_TIMEOUT = 120
# clear of the shared lab's 2525/2535 (smtpd) and 2590/2591 (SUT)
SMTPD_PORTS = range(2540, 2580)
SUT_PORTS = range(2580, 2600)


@attrs.frozen
class Postfix:
    """A running private Postfix instance."""

    name: str
    lab_dir: Path
    sbin: Path
    port: int
    sut_port: int

    @property
    def base(self) -> Path:
        """The instance's folder: etc, queue, data, mail, maillog."""
        return self.lab_dir / "postfix" / self.name

    @property
    def config(self) -> Path:
        """The config_directory (main.cf, master.cf)."""
        return self.base / "etc"

    @property
    def maildir(self) -> Path:
        """The Maildir every example.test recipient's mail lands in."""
        return self.base / "mail" / "example.test"

    @property
    def maillog(self) -> Path:
        """Postfix's own log file."""
        return self.base / "maillog"

    @property
    def ca(self) -> Path:
        """The lab CA: Postfix's server certificate is signed by it."""
        return self.lab_dir / "pki" / "ca.crt"

    @property
    def sut_cert(self) -> tuple[Path, Path]:
        """Certificate and key for the server under test (Postfix verifies them)."""
        return self.lab_dir / "pki" / "sut.crt", self.lab_dir / "pki" / "sut.key"

    def log(self) -> str:
        """The maillog so far."""
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def delivered(self) -> list[bytes]:
        """The messages in the Maildir, oldest first."""
        new = self.maildir / "new"
        if not new.is_dir():
            return []
        files = sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        return [p.read_bytes() for p in files]

    def postcmd(self, *args: str) -> str:
        """Run one of the instance's own tools (postqueue, postsuper, ...) on its config."""
        tool, *rest = args
        done = subprocess.run(
            [str(self.sbin / tool), "-c", str(self.config), *rest],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout + done.stderr

    def flush(self) -> None:
        """Attempt delivery of every queued message now (no waiting for a queue run)."""
        self.postcmd("postqueue", "-f")

    def queue_empty(self) -> bool:
        """Nothing queued (active, incoming, deferred, hold)."""
        return "Mail queue is empty" in self.postcmd("postqueue", "-p")

    def delete_queue(self) -> None:
        """Delete every queued message, so none reaches a later test's server."""
        self.postcmd("postsuper", "-d", "ALL")

    def log_size(self) -> int:
        """Where the maillog ends now: pass it to ``wait_log`` to see only what follows."""
        return len(self.log())

    def wait_log(self, needle: str, since: int = 0, timeout: float = 60.0) -> str:
        """The maillog from ``since`` once it contains ``needle``, flushing the queue while
        waiting (so no test waits for a queue run)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()[since:]
            if needle in text:
                return text
            self.flush()
            time.sleep(0.5)
        raise AssertionError(f"{needle!r} not in {self.maillog} after {timeout} s:\n{self.log()}")


def _port_free(port: int) -> bool:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _pick_port(candidates: range, taken: set[int]) -> int:
    for port in candidates:
        if port not in taken and _port_free(port):
            taken.add(port)
            return port
    raise RuntimeError(f"no free port in {candidates}")


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", *args], env=env, capture_output=True, text=True, timeout=UP_TIMEOUT, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    return done.stdout


@attrs.define
class _PostfixLab:
    dir: Path
    env: dict[str, str]
    taken: set[int] = attrs.field(factory=set)


@pytest.fixture(scope="session")
def _postfix_lab() -> Iterator[_PostfixLab]:
    """One folder for both instances; every master recorded in it is stopped at the end."""
    for need in ("openssl", "ss"):
        if shutil.which(need) is None:
            pytest.fail(f"needs {need}: run `bash tests/lab/install.sh` as root", pytrace=False)
    # Not under pytest's basetemp (mode 0700): virtual(8) delivers as nobody and
    # must reach the Maildir.
    lab_dir = Path(tempfile.mkdtemp(prefix="smtp_rtls-postfix-"))
    lab_dir.chmod(0o755)
    env = dict(os.environ, LAB_DIR=str(lab_dir))
    try:
        yield _PostfixLab(lab_dir, env)
    finally:
        subprocess.run(
            ["bash", str(LAB_SCRIPTS / "down.sh"), "--purge"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(lab_dir, ignore_errors=True)


def _start(lab: _PostfixLab, name: str, sbin: Path, reqtls: bool) -> Iterator[Postfix]:
    port = _pick_port(SMTPD_PORTS, lab.taken)
    sut_port = _pick_port(SUT_PORTS, lab.taken)
    prefix = "LAB_RT_" if reqtls else "LAB_"
    env = dict(lab.env, **{f"{prefix}SMTP_PORT": str(port), f"{prefix}SUT_PORT": str(sut_port)})
    instance = Postfix(name, lab.dir, sbin, port, sut_port)
    try:
        _run([str(LAB_SCRIPTS / "postfix-up.sh"), *(["--reqtls"] if reqtls else [])], env)
        yield instance
    finally:
        if instance.config.is_dir():
            instance.delete_queue()


@pytest.fixture(scope="session")
def postfix37(_postfix_lab: _PostfixLab) -> Iterator[Postfix]:
    """Debian 12's Postfix 3.7 (no REQUIRETLS), as server and as relay to the SUT."""
    if not Path("/usr/sbin/postfix").exists():
        pytest.fail(
            "needs Debian's postfix package: run `bash tests/lab/install.sh` as root",
            pytrace=False,
        )
    yield from _start(_postfix_lab, "stock", Path("/usr/sbin"), reqtls=False)


@pytest.fixture(scope="session")
def postfix311(_postfix_lab: _PostfixLab) -> Iterator[Postfix]:
    """Postfix 3.11 from Debian sid, REQUIRETLS on; relays with smtp_requiretls_policy=enforce."""
    if not Path("/usr/sbin/postfix").exists() or shutil.which("patchelf") is None:
        pytest.fail(
            "needs Debian's postfix package (its user and group) and patchelf: "
            "run `bash tests/lab/install.sh` as root",
            pytrace=False,
        )
    root = Path(_run([str(LAB_SCRIPTS / "postfix311-fetch.sh")], _postfix_lab.env).strip())
    yield from _start(_postfix_lab, "reqtls", root / "usr" / "sbin", reqtls=True)
