"""``smtp-rtls serve``, run as a real process on loopback.

Every test starts its servers through :func:`server` (or :func:`run_to_end`),
which stops them in ``finally`` (SIGTERM, then SIGKILL) with bounded waits.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_rtls.cli import main
from smtp_rtls.cli import serve as serve_cli

IOS = ["asyncio", "uvloop", "trio", "threads"]
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "smtp_rtls", "serve", *args]


def read_line(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    """The next line of the server's stdout, waiting at most ``timeout``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    end = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line from the server in {timeout}s: {data!r}")
        byte = os.read(fd, 1)
        if not byte:
            raise AssertionError(f"the server ended: {data!r} {stop(proc)}")
        data += byte
    return data.decode()


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal the server, wait (bounded), kill if need be; (status, stderr)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return proc.returncode, err.decode()


@contextlib.contextmanager
def server(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A running ``serve`` on a free loopback port, in ``tmp_path``."""
    port = free_port()
    proc = subprocess.Popen(
        command("--listen", f"127.0.0.1:{port}", "--hostname", "localhost", *args),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)


def tls_client(tmp_path: Path) -> ssl.SSLContext:
    # The generated certificate is its own trust anchor: verify against it.
    return ssl.create_default_context(cafile=tmp_path / "smtp-rtls-state" / "tls" / "cert.pem")


def send(port: int, context: ssl.SSLContext | None, *, requiretls: bool = False) -> None:
    with smtplib.SMTP("localhost", port, timeout=20) as client:
        client.ehlo("client.test")
        if context is not None:
            client.starttls(context=context)
            client.ehlo("client.test")
        options = ["REQUIRETLS"] if requiretls else []
        client.sendmail("a@example.org", ["b@example.org"], MESSAGE, mail_options=options)


def stored(maildir: Path) -> list[Path]:
    return sorted((maildir / "new").iterdir()) if (maildir / "new").is_dir() else []


@pytest.mark.parametrize("io", IOS)
def test_receives_over_starttls_into_the_maildir(tmp_path: Path, io: str) -> None:
    with server(tmp_path, "--io", io) as (proc, port):
        line = read_line(proc)
        assert line == f"listening on 127.0.0.1:{port} ({io}, tls on)\n"
        send(port, tls_client(tmp_path), requiretls=True)
        files = stored(tmp_path / "maildir")
        assert len(files) == 1
        content = files[0].read_bytes()
        assert b"REQUIRETLS" in content.split(b"\r\n\r\n")[0]  # the Received field
        assert content.endswith(MESSAGE)
        status, err = stop(proc)
    assert status == 0
    message = [x for x in err.splitlines() if " message " in x]
    session = [x for x in err.splitlines() if " session " in x]
    assert len(message) == 1 and len(session) == 1
    assert "tls=TLSv1.3" in message[0] and "tag=REQUIRETLS" in message[0]
    assert 'result="250 2.0.0 Stored as' in message[0]
    assert "peer=127.0.0.1:" in session[0] and "messages=1" in session[0]


def test_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    cert = tmp_path / "smtp-rtls-state" / "tls" / "cert.pem"
    for _ in range(2):
        with server(tmp_path) as (proc, _port):
            read_line(proc)
            first = cert.read_bytes()
            assert stop(proc)[0] == 0
    assert cert.read_bytes() == first
    assert (cert.parent / "key.pem").stat().st_mode & 0o077 == 0


def test_sink_accepts_and_discards(tmp_path: Path) -> None:
    with server(tmp_path, "--sink", "--io", "threads") as (proc, port):
        read_line(proc)
        send(port, tls_client(tmp_path))
        status, err = stop(proc)
    assert status == 0
    assert not (tmp_path / "maildir").exists()
    assert "(discarded)" in err


def test_auth_file_offers_login_after_tls(tmp_path: Path) -> None:
    (tmp_path / "users").write_text("# for tests\nalice:s3cret:x\n")
    with server(tmp_path, "--auth-file", "users") as (proc, port):
        read_line(proc)
        with smtplib.SMTP("localhost", port, timeout=20) as client:
            client.ehlo()
            assert not client.has_extn("auth")  # RFC 4954 §4: not before TLS
            client.starttls(context=tls_client(tmp_path))
            client.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong")
            assert client.login("alice", "s3cret:x")[0] == 235
        status, err = stop(proc)
    assert status == 0
    assert "auth=alice" in err


def test_relay_needs_authentication_and_queues(tmp_path: Path) -> None:
    (tmp_path / "users").write_text("alice:pw\n")
    with server(tmp_path, "--relay", "--auth-file", "users") as (proc, port):
        read_line(proc)
        with smtplib.SMTP("localhost", port, timeout=20) as client:
            client.starttls(context=tls_client(tmp_path))
            client.ehlo()
            assert client.mail("a@example.org")[0] == 530
            client.login("alice", "pw")
            client.sendmail("a@example.org", ["b@example.invalid"], MESSAGE)
        assert list((tmp_path / "smtp-rtls-state" / "spool" / "queue").iterdir())
        status, _err = stop(proc)
    assert status == 0


@pytest.mark.parametrize("io", IOS)
def test_sigterm_lets_the_session_in_flight_finish(tmp_path: Path, io: str) -> None:
    with server(tmp_path, "--io", io) as (proc, port):
        read_line(proc)
        with smtplib.SMTP("localhost", port, timeout=20) as client:
            client.starttls(context=tls_client(tmp_path))
            client.ehlo()
            client.mail("a@example.org")
            client.rcpt("b@example.org")
            client.putcmd("data")
            assert client.getreply()[0] == 354
            client.send(MESSAGE[:20])
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert proc.poll() is None  # still finishing the session
            client.send(MESSAGE[20:] + b".\r\n")
            assert client.getreply()[0] == 250
            # a new connection is no longer accepted
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # no second signal: the first one alone must bring it to exit 0
        assert proc.wait(timeout=40) == 0
    assert len(stored(tmp_path / "maildir")) == 1


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(x) for x in path.read_text().split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    with server(tmp_path, "--workers", "2", "--io", "threads") as (proc, port):
        assert read_line(proc) == f"listening on 127.0.0.1:{port} (threads, tls on)\n"
        workers = _children(proc.pid)
        assert len(workers) == 2
        try:
            # SO_REUSEPORT spreads connections by a hash of the addresses:
            # 40 connections from 40 source ports reach both (1 - 2**-39).
            for _ in range(40):
                send(port, None)
            names = [p.name for p in stored(tmp_path / "maildir")]
            pids = {int(n.split(".P")[1].split("Q")[0]) for n in names}
            assert len(names) == 40
            assert pids == workers
            status, _err = stop(proc)
            assert status == 0
            end = time.monotonic() + 10
            while any(_alive(p) for p in workers) and time.monotonic() < end:
                time.sleep(0.05)
            assert not any(_alive(p) for p in workers)
        finally:
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_is_one_line_and_status_69(tmp_path: Path, workers: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            command("--listen", f"127.0.0.1:{port}", "--workers", workers),
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
        )
    lines = [x for x in done.stderr.decode().splitlines() if "self-signed" not in x]
    assert done.returncode == 69
    assert lines == [f"smtp-rtls serve: cannot listen on 127.0.0.1:{port}: {_IN_USE}"]
    assert done.stdout == b""


_IN_USE = "address already in use"


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        (["--tls-cert", "missing.pem"], 66, "cannot load the certificate missing.pem"),
        (["--tls-key", "k.pem"], 64, "--tls-key needs --tls-cert"),
        (["--maildir", "afile/maildir"], 73, "cannot write to afile/maildir"),
        (["--auth-file", "missing"], 66, "cannot read missing"),
        (["--auth-file", "afile"], 65, "afile:1: not a user:password line"),
        (["--relay", "--workers", "2"], 64, "--relay works with one process only"),
        (["--sink", "--relay"], 64, ""),
    ],
)
def test_clear_errors(tmp_path: Path, args: list[str], status: int, words: str) -> None:
    (tmp_path / "afile").write_text("no colon here\n")
    done = subprocess.run(command(*args), cwd=tmp_path, capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == status, err
    assert "Traceback" not in err
    assert words in err


@pytest.mark.skipif(subprocess.run(["which", "openssl"]).returncode != 0, reason="no openssl")
def test_openssl_fallback_makes_a_usable_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    serve_cli._make_with_openssl(cert, key, "mx.example.test")
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    assert key.stat().st_mode & 0o077 == 0


def test_io_uvloop_without_uvloop_is_one_line_and_status_69(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes "import uvloop" raise ImportError, as on a
    # machine without the uvloop extra; nothing may start listening.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.chdir(tmp_path)
    status = main(["serve", "--io", "uvloop", "--sink", "--listen", "127.0.0.1:0"])
    err = capsys.readouterr().err
    assert status == 69
    assert err.strip().splitlines()[-1] == (
        "smtp-rtls serve: --io uvloop: uvloop is not installed (pip install 'smtp_rtls[uvloop]')"
    )
