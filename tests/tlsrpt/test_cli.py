"""``smtp-rtls tlsrpt report`` and the recording options, through ``smtp_rtls.cli.main``.

The commands run in the test process (their output captured), against
loopback peers: a UDP DNS server for ``--nameserver`` (the ``_smtp._tls``
record, the report domain's MX), an HTTPS report receiver, our own SMTP
servers.  The relay's recording is tested on the library (``Relay``'s
``on_result``); ``serve`` itself only for its usage error, in a subprocess.
"""

from __future__ import annotations

import datetime
import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from smtp_rtls.cli import main
from smtp_rtls.handlers import FileSpool, Relay
from smtp_rtls.io import sync
from smtp_rtls.io.tlsrpt import TLSRPTStore
from smtp_rtls.policy.tlsrpt import ResultType, read_session_lines

from .world import (
    DOMAIN,
    MESSAGE,
    MX,
    REPORTS,
    REPORTS_MX,
    TIMEOUTS,
    Certs,
    DNSServer,
    Recorder,
    fulfiller,
    session_day,
    today,
    validate,
)

ONE_DAY = datetime.timedelta(days=1)
WHO = ["--organization", "Sender Inc.", "--contact", "tlsrpt@sender.example"]


def zone(dns_server: DNSServer) -> None:
    dns_server.add(DOMAIN, "MX", f"10 {MX}.")
    dns_server.add(MX, "A", "127.0.0.1")
    dns_server.add(REPORTS, "MX", f"10 {REPORTS_MX}.")
    dns_server.add(REPORTS_MX, "A", "127.0.0.1")


def send(dns_server: DNSServer, certs: Certs, port: int, folder: Path, tmp_path: Path) -> int:
    message = tmp_path / "message.eml"
    message.write_bytes(MESSAGE)
    return main(
        [
            "send",
            "--from",
            "alice@sender.example",
            "--to",
            "bob@example.org",
            "--message",
            str(message),
            "--requiretls",
            "--nameserver",
            f"127.0.0.1:{dns_server.port}",
            "--trust-ad",
            "--mx-port",
            str(port),
            "--cafile",
            certs.cafile,
            "--timeout",
            "10",
            "--tlsrpt-dir",
            str(folder),
        ]
    )


def as_yesterday(folder: Path) -> None:
    """Move the recorded results to yesterday (a report covers a day that is over)."""
    store = TLSRPTStore(folder)
    day = session_day(folder)
    results = store.read(day).results
    store.sessions_file(day).unlink()
    store.record(attrs.evolve(r, when=r.when - (day - today()) - ONE_DAY) for r in results)


@pytest.fixture
def recorded(
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    """A state directory with yesterday's results of two real deliveries: one
    to a server with the right certificate, one to a server with an expired one."""
    zone(dns_server)
    folder = tmp_path / "state" / "tlsrpt"
    for kind, status in (("valid", 0), ("expired", 69)):
        server = smtp(certs.context(kind))
        assert send(dns_server, certs, server.port, folder, tmp_path) == status
    as_yesterday(folder)
    capsys.readouterr()
    return folder


# -- recording: send --tlsrpt-dir, the relay ---------------------------------------------------


def test_send_records_each_session_in_the_day_file(
    dns_server: DNSServer,
    certs: Certs,
    smtp: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    zone(dns_server)
    folder = tmp_path / "new" / "tlsrpt"  # made when missing
    server = smtp(certs.context("wrong-name"))
    assert send(dns_server, certs, server.port, folder, tmp_path) == 69
    assert "bob@example.org: failed" in capsys.readouterr().out
    (path,) = (folder / "sessions").glob("*.jsonl")
    (result,) = read_session_lines(path.read_text().splitlines()).results
    assert path.stem == str(result.when.date())  # the file of the session's (UTC) day
    assert result.result_type is ResultType.CERTIFICATE_HOST_MISMATCH
    assert (result.receiving_ip, result.sending_mta_ip, result.receiving_mx_helo) == (
        "127.0.0.1",
        "127.0.0.1",
        MX,
    )


def test_send_tlsrpt_dir_is_for_delivery_and_must_be_writable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(MESSAGE)
    base = ["send", "--from", "a@sender.example", "--to", "b@example.org", "--message"]
    assert main([*base, str(message), "--server", "127.0.0.1:1", "--tlsrpt-dir", "x"]) == 64
    assert "--tlsrpt-dir is for delivery to the MX hosts" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    status = main(
        [*base, str(message), "--nameserver", "127.0.0.1:9", "--tlsrpt-dir", str(blocker)]
    )
    assert status == 73
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tlsrpt-dir: cannot write to" in err


def test_the_relay_records_its_deliveries(
    dns_server: DNSServer, certs: Certs, smtp: Callable[..., Any], tmp_path: Path
) -> None:
    zone(dns_server)
    mx = smtp(certs.context("valid"))
    store = TLSRPTStore(tmp_path / "tlsrpt")
    relay = Relay(
        FileSpool(tmp_path / "spool"),
        local_hostname="relay.sender.example",
        deliver_options={
            "fulfil": fulfiller(dns_server, certs.cafile),
            "cafile": certs.cafile,
            "port": mx.port,
            "timeouts": TIMEOUTS,
        },
        on_result=store.record_delivery,
    )
    front = smtp(None, relay, hostname="relay.sender.example")
    client = sync.connect("127.0.0.1", front.port, local_hostname="client.test", timeout=10)
    with client:
        client.send("alice@sender.example", ["bob@example.org"], MESSAGE)
        client.quit()
    (attempt,) = relay.run_once()
    assert attempt.result.delivered
    (result,) = store.read(session_day(store.directory)).results
    assert result.successful and result.receiving_mx_helo == MX


def test_serve_tlsrpt_dir_needs_relay(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtp_rtls", "serve", "--tlsrpt-dir", "x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 64
    assert done.stderr == (
        "smtp-rtls serve: --tlsrpt-dir needs --relay (only the relay delivers onward)\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing made


# -- tlsrpt report -----------------------------------------------------------------------------


def test_report_writes_the_days_reports_and_says_where(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = session_day(recorded)
    assert main(["tlsrpt", "report", "--tlsrpt-dir", str(recorded), *WHO]) == 0  # yesterday
    if today() != day + ONE_DAY:
        pytest.skip("midnight (UTC) passed during the test: yesterday is another day")
    out = capsys.readouterr().out
    (line,) = out.splitlines()
    assert line.startswith(f"{DOMAIN} {day}: 1 successful, 1 failed: ")
    gz = Path(line.rsplit(": ", 1)[1])
    assert gz.parent == recorded / "reports" and gz.name.endswith(".json.gz")
    plain = gz.with_name(gz.name.removesuffix(".gz"))
    assert gzip.decompress(gz.read_bytes()) == plain.read_bytes()
    document = json.loads(plain.read_bytes())
    validate(document)
    assert document["organization-name"] == "Sender Inc."
    (detail,) = document["policies"][0]["failure-details"]
    assert detail["result-type"] == "certificate-expired"
    assert detail["receiving-mx-helo"] == MX and detail["sending-mta-ip"] == "127.0.0.1"
    assert not (recorded / "outbox").exists()  # nothing queued without --send


def test_report_json_and_state_dir(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, day = recorded.parent, session_day(recorded)
    args = ["tlsrpt", "report", "--state-dir", str(state), "--date", str(day), "--json"]
    assert main([*args, *WHO]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["day"] == str(day) and document["sessions"] == 2
    (report,) = document["reports"]
    assert (report["policy_domain"], report["successful"], report["failed"]) == (DOMAIN, 1, 1)
    assert report["report_id"] == f"{day:%Y%m%d}.{DOMAIN}@sender.example"
    assert Path(report["gzip"]).is_file() and document["deliveries"] == []


def test_a_day_without_results_says_so(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    day = str(session_day(recorded) - datetime.timedelta(days=3))
    assert main(["tlsrpt", "report", "--tlsrpt-dir", str(recorded), "--date", day, *WHO]) == 0
    assert capsys.readouterr().out == f"no session results for {day} in {recorded}\n"


def test_report_send_delivers_by_https_and_mail(
    recorded: Path,
    dns_server: DNSServer,
    certs: Certs,
    https: Callable[..., Any],
    smtp: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver = https(certs.context("receiver"))
    recorder = Recorder()
    mail = smtp(certs.context("reports-mx"), recorder, hostname=REPORTS_MX)
    rua = f"https://127.0.0.1:{receiver.port}/tlsrpt,mailto:tlsrpt@{REPORTS}"
    dns_server.add(f"_smtp._tls.{DOMAIN}", "TXT", f'"v=TLSRPTv1; rua={rua}"')
    day = session_day(recorded)
    status = main(
        [
            "tlsrpt",
            "report",
            "--tlsrpt-dir",
            str(recorded),
            "--date",
            str(day),
            *WHO,
            "--send",
            "--nameserver",
            f"127.0.0.1:{dns_server.port}",
            "--mx-port",
            str(mail.port),
            "--cafile",
            certs.cafile,
            "--timeout",
            "10",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"{DOMAIN} {day}: delivered to https://127.0.0.1:{receiver.port}/tlsrpt, " in out
    ((_, _, body),) = receiver.posts
    (report_json,) = (recorded / "reports").glob("*.json")
    assert gzip.decompress(body) == report_json.read_bytes()
    assert len(recorder.messages_kept) == 1
    assert (recorded / "done" / report_json.name).is_file()


def test_report_send_keeps_what_fails_and_a_later_run_delivers_it(
    recorded: Path,
    dns_server: DNSServer,
    certs: Certs,
    https: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver = https(certs.context("receiver"))
    receiver.post_status = 500
    dns_server.add(
        f"_smtp._tls.{DOMAIN}", "TXT", f'"v=TLSRPTv1; rua=https://127.0.0.1:{receiver.port}/"'
    )
    day = str(session_day(recorded))
    args = ["tlsrpt", "report", "--tlsrpt-dir", str(recorded), "--date", day, *WHO, "--send"]
    args += ["--nameserver", f"127.0.0.1:{dns_server.port}", "--cafile", certs.cafile]
    assert main([*args, "--json"]) == 75
    document = json.loads(capsys.readouterr().out)
    (delivery,) = document["deliveries"]
    assert delivery["status"] == "kept" and "HTTP 500" in delivery["detail"]
    assert document["reports"][0]["queued"] is True and document["exit_status"] == 75
    next_attempt = datetime.datetime.fromisoformat(delivery["next_attempt"])
    assert next_attempt > datetime.datetime.now(datetime.UTC)

    # not due: nothing is tried, and the line says when it will be
    assert main(args) == 0
    assert f"queued before, next attempt {delivery['next_attempt']}" in capsys.readouterr().out
    assert len(receiver.posts) == 1

    receiver.post_status = 200
    assert main([*args, "--retry-now"]) == 0
    assert "delivered to https://127.0.0.1" in capsys.readouterr().out
    assert len(receiver.posts) == 2
    assert list((recorded / "outbox").iterdir()) == []


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--date", "2026-02-30"], 64, "argument --date: not a date (YYYY-MM-DD): '2026-02-30'"),
        (["--date", "yesterday"], 64, "argument --date: not a date"),
        (["--date", "<today>"], 64, "the day is not over yet"),
        (["--send"], 64, "--send needs --organization"),
        (["--send", "--organization", "X"], 64, "--send needs --contact"),
        (["--organization", "X", "--contact", "nobody"], 64, "--contact: contact-info"),
        ([*WHO, "--unique-id", "a-b"], 64, "--unique-id: unique-id must be letters and digits"),
        (["--retry-now"], 64, "--retry-now is for delivering reports: add --send"),
    ],
)
def test_bad_input_is_one_line(
    recorded: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    message: str,
) -> None:
    args = [str(today()) if arg == "<today>" else arg for arg in args]
    assert main(["tlsrpt", "report", "--tlsrpt-dir", str(recorded), *args]) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err


def test_a_missing_directory_exits_66(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlsrpt", "report", "--tlsrpt-dir", str(tmp_path / "none")]) == 66
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"smtp-rtls tlsrpt: no TLSRPT state directory at {tmp_path / 'none'}")
    assert main(["tlsrpt", "report", "--state-dir", str(tmp_path)]) == 66
    assert f"{tmp_path / 'tlsrpt'}" in capsys.readouterr().err


def test_the_two_directory_options_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tlsrpt", "report", "--tlsrpt-dir", "a", "--state-dir", "b"]) == 64
    assert "not allowed with argument" in capsys.readouterr().err
