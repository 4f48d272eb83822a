"""The ``lab`` fixture: real DNSSEC (nsd + unbound) and an MTA-STS HTTPS host on loopback.

One lab per test session, in a fresh folder under pytest's temporary directory,
on free ports of the project's reserved ranges (DNS 5300-5399, HTTPS 4400-4499;
the shared lab's 5301/5302/4443 are avoided).  Ports may be pinned with
``LAB_NSD_PORT``, ``LAB_UNBOUND_PORT`` and ``LAB_HTTPS_PORT``.  The daemons are
started by ``tests/lab/dnssec-up.sh`` and ``mtasts-up.sh`` and always stopped by
``tests/lab/down.sh``, which signals exactly the PIDs the up scripts recorded.

When the lab's programs are missing the tests that use it fail (never skip):
run ``bash tests/lab/install.sh`` as root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from smtp_rtls.io.fulfil import SyncFulfiller

LAB_SCRIPTS = Path(__file__).parent / "lab"
LAB_PROGRAMS = ("nsd", "unbound", "ldns-keygen", "ldns-signzone", "openssl", "ss")
UP_TIMEOUT = 120


@attrs.frozen
class Lab:
    """A running lab: where its files are and which ports it listens on."""

    dir: Path
    nsd_port: int
    unbound_port: int
    https_port: int

    @property
    def ca(self) -> Path:
        """The lab CA certificate, trusted by clients of the lab's servers."""
        return self.dir / "pki" / "ca.crt"

    @property
    def sites(self) -> Path:
        """The MTA-STS host's sites file; re-read on every request."""
        return self.dir / "mta-sts" / "sites.json"

    def fulfiller(self, *, trusted: bool = True, cafile: str | None = None) -> SyncFulfiller:
        """A SyncFulfiller for the lab's unbound and MTA-STS host."""
        return SyncFulfiller(
            ["127.0.0.1"],
            port=self.unbound_port,
            trusted=trusted,
            timeout=5.0,
            https_port=self.https_port,
            cafile=str(self.ca) if cafile is None else cafile,
            https_address="127.0.0.1",
        )

    def read_sites(self) -> dict[str, dict[str, object]]:
        """The sites file as a dict."""
        sites: dict[str, dict[str, object]] = json.loads(self.sites.read_text())
        return sites

    def write_sites(self, sites: dict[str, dict[str, object]]) -> None:
        """Replace the sites file atomically (the server may read it at any time)."""
        temp = self.sites.with_suffix(".tmp")
        temp.write_text(json.dumps(sites))
        os.replace(temp, self.sites)


def _port_free(port: int) -> bool:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(family, kind) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    return False
    return True


def _pick_port(env: str, candidates: range, taken: set[int]) -> int:
    if os.environ.get(env):
        return int(os.environ[env])
    for port in candidates:
        if port not in taken and _port_free(port):
            return port
    raise RuntimeError(f"no free port for {env} in {candidates}")


def _run(script: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", str(LAB_SCRIPTS / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Start the DNSSEC + MTA-STS lab once per session and stop it at the end."""
    missing = [p for p in LAB_PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.fail(
            f"the lab needs {', '.join(missing)}: run `bash tests/lab/install.sh` as root",
            pytrace=False,
        )
    lab_dir = tmp_path_factory.mktemp("smtp_rtls-lab")
    # 5311+ and 4453+: clear of the shared lab's 5301/5302/4443.
    nsd = _pick_port("LAB_NSD_PORT", range(5311, 5400), set())
    unbound = _pick_port("LAB_UNBOUND_PORT", range(5312, 5400), {nsd})
    https = _pick_port("LAB_HTTPS_PORT", range(4453, 4500), set())
    env = dict(
        os.environ,
        LAB_DIR=str(lab_dir),
        LAB_NSD_PORT=str(nsd),
        LAB_UNBOUND_PORT=str(unbound),
        LAB_HTTPS_PORT=str(https),
    )
    try:
        _run("dnssec-up.sh", env)
        _run("mtasts-up.sh", env)
        yield Lab(lab_dir, nsd, unbound, https)
    finally:
        # Always, even when an up script failed half way: down.sh stops
        # exactly the PIDs recorded so far.
        subprocess.run(
            ["bash", str(LAB_SCRIPTS / "down.sh")],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
