"""The documentation's examples run, and print what the documentation says.

docs/server-tutorial.rst includes docs/examples/*.py and the transcript
docs/examples/event_sequence.txt verbatim, so these tests are what keeps the
tutorial true; the console examples of docs/client-model.rst run as doctests.
The socket example is run as a real process on 127.0.0.1 and driven by the
standard library's smtplib through a real TLS handshake.
"""

from __future__ import annotations

import doctest
import re
import smtplib
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs"
EXAMPLES = DOCS / "examples"
TIMEOUT = 20


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )


def test_event_sequence_prints_the_transcript_the_tutorial_shows() -> None:
    out = run_example("event_sequence.py").stdout
    assert out == (EXAMPLES / "event_sequence.txt").read_text()


def test_event_sequence_refuses_requiretls_before_tls_and_tags_both_messages() -> None:
    """RFC 8689 §2: REQUIRETLS is offered only after STARTTLS, refused on
    plaintext (555) with no transaction opened; §4.1: the end of message, after
    DATA and after BDAT LAST alike, carries the REQUIRETLS tag."""
    lines = run_example("event_sequence.py").stdout.splitlines()
    handshake = lines.index("   -- TLS handshake --")
    before, after = lines[:handshake], lines[handshake:]
    assert "S: 250 STARTTLS" in before and "S: 250 REQUIRETLS" not in before
    assert "S: 555 5.5.4 Unsupported option: REQUIRETLS" in before
    assert "S: 503 5.5.1 Bad sequence of commands" in before
    assert "S: 250 REQUIRETLS" in after and "S: 250 STARTTLS" not in after
    assert after.count("S: 250 2.0.0 Queued with REQUIRETLS") == 2
    assert "   event MessageData(data=b'Subject: hello\\r\\n')" in after
    # RFC 5321 §4.5.2: the stuffed dot is removed
    assert any(".a line that starts with a dot" in x and "..a" not in x for x in after[1:])


def test_the_client_model_examples_print_what_the_page_shows() -> None:
    """docs/client-model.rst's console examples run as doctests: the client's
    state moves with the replies it reads, never with send() (RFC 2920 §3.1),
    and MAIL ... REQUIRETLS on plaintext is RequireTLSError 5.7.10 (RFC 8689
    §4.2.1)."""
    result = doctest.testfile(str(DOCS / "client-model.rst"), module_relative=False)
    assert result.attempted > 10
    assert result.failed == 0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(tmp_path: Path, ca: trustme.CA) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """blocking_server.py on a free loopback port, for two connections."""
    cert = ca.issue_cert("localhost", "127.0.0.1")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "blocking_server.py"),
            *("--cert", str(pem), "--key", str(pem), "--port", "0"),
            *("--timeout", "10", "--connections", "2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("listening on 127.0.0.1 "), first
        yield int(first.split()[-1]), proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return out


def inject_after_starttls(port: int) -> bytes:
    """Send STARTTLS and a command in one write: the command must never run."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.recv(1024)  # greeting
        s.sendall(b"EHLO attacker.example\r\n")
        ehlo_reply = b""
        while not ehlo_reply.endswith(b"250 STARTTLS\r\n"):
            chunk = s.recv(4096)
            assert chunk, ehlo_reply  # bounded: the server must not close here
            ehlo_reply += chunk
        s.sendall(b"STARTTLS\r\nMAIL FROM:<mallory@example.org>\r\n")
        received = b""
        while chunk := s.recv(4096):
            received += chunk
        return received


def test_blocking_server_with_smtplib_starttls_requiretls_data_and_bdat(
    server: tuple[int, subprocess.Popen[str]], ca: trustme.CA
) -> None:
    port, proc = server
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.has_extn("starttls") and not smtp.has_extn("requiretls")
        # RFC 8689 §2: on plaintext the parameter is refused
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("alice@example.org", ["bob@example.net"], "x", ["REQUIRETLS"])
        assert refused.value.smtp_code == 555
        smtp.starttls(context=client_context)
        smtp.ehlo("client.example.org")
        assert smtp.has_extn("requiretls") and not smtp.has_extn("starttls")
        text = b"Subject: over DATA\r\n\r\n.a line that starts with a dot\r\n"
        # smtplib dot-stuffs the last line; the server undoes it (RFC 5321 §4.5.2)
        smtp.sendmail("alice@example.org", ["bob@example.net"], text, ["REQUIRETLS"])
        assert smtp.mail("alice@example.org", ["REQUIRETLS"])[0] == 250
        assert smtp.rcpt("bob@example.net")[0] == 250
        body = b"Subject: over BDAT\r\n\r\nHi\r\n"
        smtp.send(b"BDAT %d LAST\r\n%s" % (len(body), body))
        assert smtp.getreply() == (250, b"2.0.0 Queued")
    assert inject_after_starttls(port) == b"220 2.0.0 Ready to start TLS\r\n"
    out = finish(proc)
    messages = [line for line in out.splitlines() if line.startswith("  requiretls=")]
    assert messages == [
        f"  requiretls=True, {len(text)} octets: {text!r}",
        f"  requiretls=True, {len(body)} octets: {body!r}",
    ]
    assert "protocol error: plaintext data after STARTTLS" in out
    assert "mallory" not in out


def test_every_test_named_in_the_conformance_table_exists() -> None:
    """docs/conformance.rst names the test of each RFC section; a renamed or
    removed test must not leave the table pointing at nothing."""
    text = (DOCS / "conformance.rst").read_text()
    named = set(re.findall(r"``((?:\w+/)?test_\w+\.py)::(test_\w+)``", text))
    assert len(named) > 100
    missing = []
    for file, name in sorted(named):
        path = TESTS / file
        source = path.read_text() if path.exists() else ""
        if not re.search(rf"^(async )?def {name}\(", source, re.MULTILINE):
            missing.append(f"{file}::{name}")
    assert missing == []


# -- docs/receiving.rst: the adapters' examples, run as real processes ------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on 127.0.0.1:"), (
        line,
        proc.stderr.read() if proc.stderr else "",
    )
    return proc, int(line.rsplit(":", 1)[1])


def _finish(proc: subprocess.Popen[str]) -> str:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait(5)
    assert proc.returncode == 0, err
    return out


def test_receive_sync_example_stores_the_message(tmp_path: Path) -> None:
    proc, port = _start(
        [str(EXAMPLES / "receive_sync.py"), str(tmp_path / "mail"), str(_free_port())]
    )
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            client.sendmail(
                "alice@example.org", ["bob@example.net"], b"Subject: hi\r\n\r\nhello\r\n"
            )
    finally:
        out = _finish(proc)
    [stored] = (tmp_path / "mail" / "new").iterdir()
    assert out.split() == ["stored:", stored.name]
    assert stored.read_bytes().endswith(b"Subject: hi\r\n\r\nhello\r\n")


def test_receive_asyncio_example_refuses_a_foreign_domain(tmp_path: Path) -> None:
    proc, port = _start([str(EXAMPLES / "receive_asyncio.py"), str(_free_port())])
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            refused = client.sendmail(
                "alice@example.org",
                ["bob@example.net", "eve@example.com"],
                b"Subject: hi\r\n\r\nx",
            )
    finally:
        out = _finish(proc)
    assert refused == {"eve@example.com": (550, b"5.1.2 No such domain here")}
    assert "accepted: alice@example.org -> bob@example.net" in out
    assert "tag: DEFAULT" in out


def test_send_requiretls_example_submits_a_tagged_message(tmp_path: Path) -> None:
    # docs/sending.rst: the example against our own submission server
    from smtp_rtls import ServerConfig
    from smtp_rtls.handlers import PasswordAuth, Sink
    from smtp_rtls.io import sync
    from smtp_rtls.io.tls import server_context
    from smtp_rtls.policy.tags import TLSTag

    class Submission(PasswordAuth, Sink):
        def check_password(self, username: str, password: str) -> bool:
            return (username, password) == ("alice", "pw")

    ca = trustme.CA()
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    handler = Submission()
    config = ServerConfig(starttls=True, auth_mechanisms=("PLAIN",))
    tls = server_context(str(tmp_path / "server.pem"))
    with sync.serve(handler, "127.0.0.1", 0, tls=tls, config=config, hostname="mx") as server:
        out = run_example(
            "send_requiretls.py",
            "127.0.0.1",
            str(server.port),
            str(tmp_path / "ca.pem"),
            "alice",
            "pw",
        ).stdout
    assert out.splitlines() == ["TLS: TLSv1.3", "AUTH: 235", "accepted: bob@example.net"]
    assert handler.envelopes[0].tag is TLSTag.REQUIRETLS


def test_receive_trio_example_counts_the_message() -> None:
    message = b"Subject: hi\r\n\r\nx\r\n"
    proc, port = _start([str(EXAMPLES / "receive_trio.py"), str(_free_port())])
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            client.sendmail("alice@example.org", ["bob@example.net"], message)
    finally:
        out = _finish(proc)
    assert out.splitlines()[-1] == f"messages: 1 octets: {len(message)}"
