"""``smtp-rtls check`` as a user runs it: a subprocess against the DNSSEC + MTA-STS lab.

The lab (``lab`` fixture, tests/lab) has no SMTP server at its MX addresses
(127.0.0.1 and ::1), so each test that probes starts our own server
(:func:`smtp_rtls.io.sync.serve` with a Sink and the lab certificate of
``mx.example.test``) on a free loopback port and passes ``--mx-port``; host
names, SNI and certificate checks stay those of the lab's MX.  Every server
a test starts is stopped by that test, and every subprocess has a timeout.

The lab's domains, for a REQUIRETLS message (RFC 8689 §4.2.1):

* example.test: signed, TLSA 3 1 1 and 2 1 1, MTA-STS ``enforce``.  With
  ``--trust-ad`` DANE applies; without, the MX is not DNSSEC-secure and the
  MTA-STS policy validates it (PKIX against the lab CA).
* unsigned.test: insecure delegation, MTA-STS ``testing`` only: nothing
  validates the MX name (step 2), so FAIL 5.7.10, exit 1.
* bogus.test: ``mx.bogus.test A`` was changed after signing: the resolver
  answers SERVFAIL, a temporary DNS failure (RFC 7672 §2.1.2), exit 75.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest_lab import Lab
from smtp_rtls import ServerConfig
from smtp_rtls.handlers.sink import Sink
from smtp_rtls.io.sync import Server, serve
from smtp_rtls.io.tls import server_context

RUN_TIMEOUT = 60


def check(*args: str) -> subprocess.CompletedProcess[str]:
    """``smtp-rtls check ARGS`` in a subprocess, with no SMTP_RTLS_* from our environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_RTLS_")}
    return subprocess.run(
        [sys.executable, "-m", "smtp_rtls", "check", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
        check=False,
    )


def lab_args(lab: Lab, *extra: str) -> list[str]:
    return [
        "--nameserver",
        f"127.0.0.1:{lab.unbound_port}",
        "--cafile",
        str(lab.ca),
        "--mta-sts-port",
        str(lab.https_port),
        *extra,
    ]


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.stderr == "", done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def mx(lab: Lab) -> Iterator[Callable[..., Server]]:
    """Start an MX for the lab's ``mx.example.test`` on a free loopback port."""
    started: list[Server] = []

    def start(*, requiretls: bool = True) -> Server:
        tls = server_context(str(lab.dir / "pki" / "server.chain.pem"))
        config = ServerConfig(starttls=True, requiretls=requiretls)
        server = serve(
            Sink(),
            "127.0.0.1",
            0,
            hostname="mx.example.test",
            config=config,
            tls=tls,
            read_timeout=10,
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown(deadline=5)


@pytest.mark.lab
def test_dane_domain_is_ready_rfc7672(lab: Lab, mx: Callable[..., Server]) -> None:
    server = mx()
    done = check(
        "example.test", "--json", "--trust-ad", "--mx-port", str(server.port), *lab_args(lab)
    )
    got = report(done)
    assert done.returncode == 0 and got["ready"] and got["exit_status"] == 0
    assert got["mx"]["dnssec"] and got["resolver"]["trust_ad"]
    (host,) = got["hosts"]
    assert host["name"] == "mx.example.test" and host["addresses_dnssec"]
    assert host["tlsa"]["status"] == "usable"
    assert {r["record"][:5] for r in host["tlsa"]["records"]} == {"3 1 1", "2 1 1"}
    assert host["candidate"]["security"] == "dane"
    assert host["candidate"]["requiretls"] == "required"
    probe = host["probe"]
    assert probe["address"] == "127.0.0.1" and probe["port"] == server.port
    assert probe["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert probe["authentication"]["rule"] == "dane" and probe["authentication"]["ok"]
    assert probe["requiretls_offered"] is True
    assert got["verdict"]["action"] == "proceed" and got["verdict"]["requiretls"]
    assert got["verdict"]["host"] == "mx.example.test"


@pytest.mark.lab
def test_mta_sts_enforce_domain_is_ready_rfc8461(lab: Lab, mx: Callable[..., Server]) -> None:
    """Without --trust-ad nothing is DNSSEC-secure: the enforce policy validates the MX
    name (RFC 8689 §4.2.1 step 2) and PKIX against the lab CA authenticates it."""
    server = mx()
    got = report(
        done := check("example.test", "--json", "--mx-port", str(server.port), *lab_args(lab))
    )
    assert done.returncode == 0 and got["ready"]
    assert not got["mx"]["dnssec"]
    sts = got["mta_sts"]
    assert sts["policy"]["mode"] == "enforce" and sts["validates_mx"]
    assert sts["policy"]["mx"] == ["mx.example.test"] and sts["record"]["id"]
    (host,) = got["hosts"]
    assert host["candidate"]["security"] == "pkix"
    assert host["tlsa"]["status"] == "insecure"
    assert host["probe"]["authentication"] == {
        "rule": "pkix",
        "ok": True,
        "detail": "chain trusted, names mx.example.test",
    }
    assert got["verdict"]["action"] == "proceed" and got["verdict"]["requiretls"]


@pytest.mark.lab
def test_unsigned_domain_without_enforce_policy_is_not_ready_rfc8689_4_2_1(lab: Lab) -> None:
    """An insecure MX answer and only a ``testing`` policy: nothing validates the MX
    name, so a REQUIRETLS message would fail (5.7.10) without even connecting."""
    got = report(done := check("unsigned.test", "--json", "--trust-ad", *lab_args(lab)))
    assert done.returncode == 1 and not got["ready"]
    assert not got["mx"]["dnssec"]
    assert got["mta_sts"]["policy"]["mode"] == "testing" and not got["mta_sts"]["validates_mx"]
    (host,) = got["hosts"]
    assert host["candidate"] is None and host["probe"] is None
    assert (
        host["skipped"]["reason"] == "MX host not validated by DNSSEC or an MTA-STS enforce policy"
    )
    verdict = got["verdict"]
    assert verdict["action"] == "fail" and verdict["status"] == "5.7.10"


@pytest.mark.lab
def test_bogus_dnssec_is_temporarily_unknown_rfc7672_2_1_2(lab: Lab) -> None:
    """A bogus address record reaches us as SERVFAIL: a temporary failure, never
    "insecure" (RFC 7672 §2.1.1); a delivery would defer, so exit 75."""
    got = report(done := check("bogus.test", "--json", "--trust-ad", *lab_args(lab)))
    assert done.returncode == 75 and got["exit_status"] == 75 and not got["ready"]
    assert got["mx"]["dnssec"]
    (host,) = got["hosts"]
    assert host["candidate"] is None and "SERVFAIL" in host["addresses_error"]
    assert host["skipped"]["status"] == "4.4.3"
    assert got["verdict"]["action"] == "defer" and got["verdict"]["status"] == "4.4.3"


@pytest.mark.lab
def test_mx_without_requiretls_is_not_ready_5_7_30_rfc8689_4_2_1(
    lab: Lab, mx: Callable[..., Server]
) -> None:
    server = mx(requiretls=False)
    done = check(
        "example.test", "--json", "--trust-ad", "--mx-port", str(server.port), *lab_args(lab)
    )
    got = report(done)
    assert done.returncode == 1 and not got["ready"]
    (host,) = got["hosts"]
    probe = host["probe"]
    assert probe["tls"] is not None and probe["authentication"]["ok"]
    assert probe["requiretls_offered"] is False
    assert probe["verdict"]["action"] == "try next" and probe["verdict"]["status"] == "5.7.30"
    verdict = got["verdict"]
    assert verdict["action"] == "fail" and verdict["status"] == "5.7.30"
    assert verdict["reason"] == "REQUIRETLS not offered after TLS"


@pytest.mark.lab
def test_no_probe_decides_from_the_plan(lab: Lab) -> None:
    got = report(
        done := check("example.test", "--json", "--trust-ad", "--no-probe", *lab_args(lab))
    )
    assert done.returncode == 0 and got["ready"] and not got["probed"]
    (host,) = got["hosts"]
    assert host["candidate"]["security"] == "dane" and host["probe"] is None
    assert got["verdict"] is None


@pytest.mark.lab
def test_text_report_is_an_aligned_table(lab: Lab, mx: Callable[..., Server]) -> None:
    server = mx()
    done = check("example.test", "--trust-ad", "--mx-port", str(server.port), *lab_args(lab))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "REQUIRETLS readiness of example.test: READY (exit 0)"
    heading = next(line for line in lines if line.lstrip().startswith("HOST  "))
    row = lines[lines.index(heading) + 1]
    assert row.split()[:2] == ["mx.example.test", "dane"] and row.split()[-1] == "pass"
    # columns line up: every cell of the row starts where its heading does
    for title in ("PLAN", "TLS", "CERTIFICATE", "REQUIRETLS", "VERDICT"):
        assert row[heading.index(title) - 1] == " " and row[heading.index(title)] != " "


# -- errors a user can make: one line, no traceback ------------------------------------


@pytest.mark.parametrize(
    "domain", ["bob@example.test", "exa mple.test", "bad-.test", "a..b.test", "[127.0.0.1]"]
)
def test_bad_domain_is_one_line(domain: str) -> None:
    done = check(domain, "--nameserver", "127.0.0.1:9")
    assert done.returncode == 64 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("smtp-rtls check: ")
    assert "Traceback" not in done.stderr


def test_unreachable_nameserver_is_one_line_tempfail() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens there now: the query is refused at once (ICMP) or times out
    done = check("example.test", "--nameserver", f"127.0.0.1:{port}")
    assert done.returncode == 75 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"smtp-rtls check: nameserver 127.0.0.1:{port} unreachable: ")


def test_missing_cafile_is_one_line(tmp_path: Any) -> None:
    done = check("example.test", "--cafile", str(tmp_path / "nope.pem"))
    assert done.returncode == 66 and done.stderr.count("\n") == 1
