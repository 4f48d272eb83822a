"""``smtp-rtls send``, run as a subprocess against loopback servers.

Submission (``--server``) goes to our own server (``smtp_rtls.io.sync.serve``,
trustme certificates) started in the test process, on each ``--io``, and to
aiosmtpd once; delivery to the MX hosts uses the DNSSEC + MTA-STS lab
(``lab`` fixture).  Every server a test starts is stopped by that test, and
every command runs under a timeout.
"""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller

from conftest_lab import Lab
from smtp_rtls import Envelope, RcptTo, Reply, ServerConfig
from smtp_rtls.handlers import Sink
from smtp_rtls.io import sync
from smtp_rtls.io.tls import server_context
from smtp_rtls.policy.tags import TLSTag
from smtp_rtls.session.server import MessageWriter, SessionEnvelope, SessionInfo

MESSAGE = b"From: alice@sender.example\r\nSubject: hi\r\n\r\nHello.\r\n"
IOS = ["threads", "asyncio", "trio"]
TIMEOUT = 60  # seconds for one command; loopback answers in well under one


class Capture(Sink):
    """A Sink that keeps the content too (to check the header the CLI adds)."""

    def __init__(self) -> None:
        super().__init__()
        self.contents: list[bytes] = []

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        counter = super().on_message(envelope)
        sink = self

        class Writer(MessageWriter):
            def __init__(self) -> None:
                self.data = bytearray()

            def write(self, data: bytes) -> None:
                self.data += data
                counter.write(data)

            def close(self) -> Reply:
                sink.contents.append(bytes(self.data))
                return counter.close()  # type: ignore[no-any-return]

        return Writer()


class RefuseRcpt(Sink):
    """Refuses every recipient with ``reply``."""

    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self.reply = reply

    def on_rcpt(self, session: SessionInfo, event: RcptTo, envelope: Envelope) -> Reply:
        return self.reply


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(server.pem, ca.pem) for a server named 127.0.0.1 and localhost."""
    folder = tmp_path_factory.mktemp("send-pki")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "server.pem")
    )
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return str(folder / "server.pem"), str(folder / "ca.pem")


@pytest.fixture
def serve(pki: tuple[str, str]) -> Iterator[Any]:
    """Start a server with a handler (STARTTLS, REQUIRETLS after it unless
    told); every server started is shut down when the test ends."""
    started: list[sync.Server] = []

    def start(handler: object, **config: Any) -> sync.Server:
        server = sync.serve(
            handler,
            "127.0.0.1",
            0,
            tls=server_context(pki[0]),
            config=ServerConfig(starttls=True, **config),
            hostname="mx.test",
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown(5)


def send(*args: str, message: bytes = MESSAGE, env: dict[str, str] | None = None) -> Any:
    """Run ``smtp-rtls send`` with ``args``; the message on standard input."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_RTLS_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "smtp_rtls", "send", *args],
        input=message,
        capture_output=True,
        timeout=TIMEOUT,
        env=environ,
        check=False,
    )


def submit(server: sync.Server, cafile: str, *args: str, **kw: Any) -> Any:
    return send(
        "--from",
        "alice@sender.example",
        "--to",
        "bob@example.org",
        "--server",
        f"127.0.0.1:{server.port}",
        "--cafile",
        cafile,
        "--timeout",
        "10",
        *args,
        **kw,
    )


# -- submission ------------------------------------------------------------------------


@pytest.mark.parametrize("io", IOS)
def test_submission_is_delivered(serve: Any, pki: tuple[str, str], io: str) -> None:
    sink = Sink()
    done = submit(serve(sink), pki[1], "--io", io)
    assert done.returncode == 0, done.stderr
    line = done.stdout.decode()
    assert "bob@example.org: delivered 2.0.0" in line and "TLS TLSv1." in line
    assert "REQUIRETLS no" in line
    [envelope] = sink.envelopes
    assert envelope.tag is TLSTag.DEFAULT and envelope.session.tls is not None


@pytest.mark.parametrize("io", IOS)
def test_requiretls_is_delivered_and_tagged_rfc8689_4_1(
    serve: Any, pki: tuple[str, str], io: str
) -> None:
    sink = Sink()
    done = submit(serve(sink), pki[1], "--io", io, "--requiretls", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["mode"] == "server" and document["exit_status"] == 0
    [rcpt] = document["recipients"]
    assert rcpt["status"] == "delivered" and rcpt["enhanced"] == "2.0.0"
    assert rcpt["requiretls"] is True and rcpt["tls_version"].startswith("TLSv1.")
    assert rcpt["reply"]["code"] == 250
    [envelope] = sink.envelopes
    assert envelope.tag is TLSTag.REQUIRETLS


@pytest.mark.parametrize("io", IOS)
def test_requiretls_to_a_server_without_it_is_refused_with_5_7_30(
    serve: Any, pki: tuple[str, str], io: str
) -> None:
    sink = Sink()
    done = submit(serve(sink, requiretls=False), pki[1], "--io", io, "--requiretls")
    assert done.returncode == 69
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "5.7.30" in err and "without --requiretls" in err
    assert sink.envelopes == []  # not one byte of the envelope went out


@pytest.mark.parametrize("io", IOS)
def test_a_451_defers_with_exit_75(serve: Any, pki: tuple[str, str], io: str) -> None:
    handler = RefuseRcpt(Reply(451, "Try later", "4.3.0"))
    done = submit(serve(handler), pki[1], "--io", io)
    assert done.returncode == 75, done.stderr
    assert "bob@example.org: deferred 4.3.0" in done.stdout.decode()


@pytest.mark.parametrize("io", IOS)
def test_a_550_fails_with_exit_69(serve: Any, pki: tuple[str, str], io: str) -> None:
    handler = RefuseRcpt(Reply(550, "No such user", "5.1.1"))
    done = submit(serve(handler), pki[1], "--io", io, "--json")
    assert done.returncode == 69, done.stderr
    [rcpt] = json.loads(done.stdout)["recipients"]
    assert rcpt["status"] == "failed" and rcpt["enhanced"] == "5.1.1"


def test_tls_optional_adds_the_header_field_rfc8689_3(serve: Any, pki: tuple[str, str]) -> None:
    handler = Capture()
    done = submit(serve(handler), pki[1], "--tls-optional")
    assert done.returncode == 0, done.stderr
    [content] = handler.contents
    assert content.startswith(b"TLS-Required: No\r\n")
    [envelope] = handler.envelopes
    assert envelope.tag is TLSTag.TLS_OPTIONAL


def test_message_from_a_file_and_several_recipients(
    serve: Any, pki: tuple[str, str], tmp_path: Path
) -> None:
    handler = Capture()
    path = tmp_path / "message.eml"
    path.write_bytes(b"Subject: from a file\n\n.leading dot\n")  # bare LF on purpose
    done = submit(
        serve(handler), pki[1], "--to", "carol@example.net", "--message", str(path), message=b""
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().count(": delivered ") == 2
    assert handler.contents == [b"Subject: from a file\r\n\r\n.leading dot\r\n"]


def test_verbose_shows_the_transcript_with_auth_redacted(serve: Any, pki: tuple[str, str]) -> None:
    from smtp_rtls.handlers import PasswordAuth

    class Submission(PasswordAuth, Sink):
        def check_password(self, username: str, password: str) -> bool:
            return (username, password) == ("alice", "s3cret-pw")

    server = serve(Submission(), auth_mechanisms=("PLAIN", "LOGIN"))
    done = submit(
        server,
        pki[1],
        "--auth",
        "alice",
        "--verbose",
        "--requiretls",
        env={"SMTP_RTLS_PASSWORD": "s3cret-pw"},
    )
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert "S: 220 mx.test" in err and "C: STARTTLS" in err
    assert "C: AUTH PLAIN [redacted]" in err and "S: 235" in err
    assert "C: MAIL FROM:<alice@sender.example> REQUIRETLS" in err
    assert "s3cret" not in err and "czNjcmV0" not in err  # nor its base64
    assert "s3cret" not in done.stdout.decode()


def test_a_wrong_password_fails_with_exit_69(serve: Any, pki: tuple[str, str]) -> None:
    from smtp_rtls.handlers import PasswordAuth

    class Submission(PasswordAuth, Sink):
        def check_password(self, username: str, password: str) -> bool:
            return False

    server = serve(Submission(), auth_mechanisms=("PLAIN",))
    done = submit(server, pki[1], "--auth", "alice", env={"SMTP_RTLS_PASSWORD": "nope"})
    assert done.returncode == 69
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "authentication as alice refused: 535" in err
    assert "nope" not in err


def test_an_untrusted_certificate_says_what_to_do(serve: Any, pki: tuple[str, str]) -> None:
    server = serve(Sink())
    done = send(
        "--from",
        "a@sender.example",
        "--to",
        "b@example.org",
        "--server",
        f"127.0.0.1:{server.port}",
    )  # system store: trustme unknown
    assert done.returncode == 69
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "failed verification" in err and "--cafile" in err


def test_a_wrong_name_says_what_to_do(serve: Any, pki: tuple[str, str], tmp_path: Path) -> None:
    """A certificate from the trusted CA, but for another name."""
    ca = trustme.CA()
    other = tmp_path / "other.pem"
    ca.issue_cert("other.example").private_key_and_cert_chain_pem.write_to_path(str(other))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = sync.serve(
        Sink(),
        "127.0.0.1",
        0,
        tls=server_context(str(other)),
        config=ServerConfig(starttls=True),
        hostname="mx.test",
    )
    try:
        done = send(
            "--from",
            "a@sender.example",
            "--to",
            "b@example.org",
            "--server",
            f"127.0.0.1:{server.port}",
            "--cafile",
            str(tmp_path / "ca.pem"),
        )
    finally:
        server.shutdown(5)
    assert done.returncode == 69
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "failed verification" in err
    assert "a name the certificate holds" in err


def test_an_unreachable_server_defers_with_exit_75() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        done = send(
            "--from",
            "a@sender.example",
            "--to",
            "b@example.org",
            "--server",
            f"127.0.0.1:{port}",
            "--timeout",
            "5",
        )
    assert done.returncode == 75
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "refused" in err and "Traceback" not in err


@pytest.mark.interop("aiosmtpd", "smtp-rtls send --server")
def test_against_aiosmtpd(tmp_path: Path) -> None:
    class Collect:
        def __init__(self) -> None:
            self.envelopes: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.envelopes.append(envelope)
            return "250 2.0.0 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    collect = Collect()
    controller = Controller(collect, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        plain = send(
            "--from",
            "a@sender.example",
            "--to",
            "b@example.org",
            "--server",
            f"127.0.0.1:{port}",
            "--timeout",
            "10",
        )
        # no STARTTLS, so no REQUIRETLS (RFC 8689 §4.2.1): refused before MAIL
        required = send(
            "--from",
            "a@sender.example",
            "--to",
            "b@example.org",
            "--server",
            f"127.0.0.1:{port}",
            "--timeout",
            "10",
            "--requiretls",
        )
    finally:
        controller.stop()
    assert plain.returncode == 0, plain.stderr
    assert "TLS none REQUIRETLS no" in plain.stdout.decode()
    [envelope] = collect.envelopes
    assert envelope.original_content == MESSAGE
    assert required.returncode == 69 and "5.7.10" in required.stderr.decode()


# -- bad arguments and files -----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--to", "b@example.org"],  # no --from
        ["--from", "a@sender.example"],  # no --to
        ["--from", "a@sender.example", "--to", "not-an-address"],
        ["--from", "bad address", "--to", "b@example.org"],
        ["--from", "a@x.example", "--to", "b@example.org", "--requiretls", "--tls-optional"],
        ["--from", "a@x.example", "--to", "b@example.org", "--server", "h:99999"],
        ["--from", "a@x.example", "--to", "b@example.org", "--io", "gevent"],
        ["--from", "a@x.example", "--to", "b@example.org", "--implicit-tls"],
        ["--from", "a@x.example", "--to", "b@example.org", "--auth", "alice"],
        ["--from", "a@x.example", "--to", "b@example.org", "--server", "h:25", "--trust-ad"],
        ["--from", "a@x.example", "--to", "b@example.org", "--server", "h:25", "--mx-port", "25"],
        ["--from", "a@x.example", "--to", "b@example.org", "--mta-sts-port", "0"],
    ],
)
def test_bad_arguments_exit_64_with_one_line(args: list[str]) -> None:
    done = send(*args)
    assert done.returncode == 64
    err = done.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("smtp-rtls send: "), err
    assert done.stdout == b""


def test_an_unreadable_message_file_exits_66(tmp_path: Path) -> None:
    done = send(
        "--from",
        "a@x.example",
        "--to",
        "b@example.org",
        "--server",
        "127.0.0.1:1",
        "--message",
        str(tmp_path / "missing.eml"),
    )
    assert done.returncode == 66
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "missing.eml" in err


def test_an_unreadable_cafile_exits_66(tmp_path: Path) -> None:
    done = send(
        "--from",
        "a@x.example",
        "--to",
        "b@example.org",
        "--server",
        "127.0.0.1:1",
        "--cafile",
        str(tmp_path / "missing.pem"),
    )
    assert done.returncode == 66
    assert done.stderr.decode().count("\n") == 1


# -- delivery to the MX hosts, in the lab ---------------------------------------------


def lab_send(lab: Lab, port: int, *args: str, io: str = "threads") -> Any:
    return send(
        "--from",
        "alice@sender.example",
        "--to",
        "bob@example.test",
        "--nameserver",
        f"127.0.0.1:{lab.unbound_port}",
        "--mx-port",
        str(port),
        "--mta-sts-port",
        str(lab.https_port),
        "--cafile",
        str(lab.ca),
        "--timeout",
        "10",
        "--io",
        io,
        "--json",
        *args,
    )


@pytest.mark.lab
@pytest.mark.parametrize(
    ("trust", "security", "io"),
    [
        (True, "dane", "threads"),
        (False, "pkix", "threads"),
        (True, "dane", "asyncio"),
        (False, "pkix", "trio"),
    ],
)
def test_lab_example_test_is_delivered_with_requiretls(
    lab: Lab, trust: bool, security: str, io: str
) -> None:
    """example.test: signed, TLSA 3 1 1 + 2 1 1, MTA-STS enforce.  With
    --trust-ad DANE applies; without, the MTA-STS policy (fetched on
    --mta-sts-port) validates the MX and PKIX against the lab CA."""
    sink = Sink()
    server = sync.serve(
        sink,
        "127.0.0.1",
        0,
        tls=server_context(str(lab.dir / "pki" / "server.chain.pem")),
        hostname="mx.example.test",
    )
    try:
        done = lab_send(
            lab, server.port, "--requiretls", *(["--trust-ad"] if trust else []), io=io
        )
    finally:
        server.shutdown(5)
    assert done.returncode == 0, (done.stdout, done.stderr)
    document = json.loads(done.stdout)
    assert document["mode"] == "mx"
    [rcpt] = document["recipients"]
    assert rcpt["status"] == "delivered" and rcpt["host"] == "mx.example.test"
    assert rcpt["security"] == security and rcpt["requiretls"] is True
    [envelope] = sink.envelopes
    assert envelope.tag is TLSTag.REQUIRETLS


@pytest.mark.lab
def test_lab_a_refusal_shows_the_bounce_without_sending_it(lab: Lab) -> None:
    handler = RefuseRcpt(Reply(550, "No such user", "5.1.1"))
    server = sync.serve(
        handler,
        "127.0.0.1",
        0,
        tls=server_context(str(lab.dir / "pki" / "server.chain.pem")),
        hostname="mx.example.test",
    )
    try:
        done = lab_send(lab, server.port, "--requiretls", "--trust-ad")
        lines = lab_send(lab, server.port, "--trust-ad")
    finally:
        server.shutdown(5)
    assert done.returncode == 69, done.stderr
    document = json.loads(done.stdout)
    [rcpt] = document["recipients"]
    assert rcpt["status"] == "failed" and rcpt["enhanced"] == "5.1.1"
    [bounce] = document["bounces"]
    assert bounce["to"] == "alice@sender.example" and bounce["domain"] == "example.test"
    assert "bob@example.test" in bounce["text"] and bounce["tag"] == "REQUIRETLS"
    assert lines.returncode == 69
    assert json.loads(lines.stdout)["bounces"][0]["tag"] == "DEFAULT"


@pytest.mark.interop("Postfix 3.11", "smtp-rtls send --server: REQUIRETLS submission")
@pytest.mark.lab
def test_send_requiretls_to_postfix311(postfix311: Any) -> None:
    """The command against a real MTA: STARTTLS verified against the lab CA
    (the certificate names mx.example.test), REQUIRETLS, and Postfix records it."""
    before = len(postfix311.delivered())
    done = send(
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.test",
        "--server",
        f"127.0.0.1:{postfix311.port}",
        "--server-name",
        "mx.example.test",
        "--cafile",
        str(postfix311.ca),
        "--requiretls",
        message=b"Subject: cli\r\nMessage-ID: <cli-1@example.org>\r\n\r\nbody\r\n",
        env={"SMTP_RTLS_NOTHING": "1"},
    )
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 60
    while len(postfix311.delivered()) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    stored = postfix311.delivered()[-1]
    assert b"Message-ID: <cli-1@example.org>" in stored
    assert b"Require-TLS-ESMTP: yes" in stored


def test_progress_only_on_a_terminal(serve: Any, pki: tuple[str, str]) -> None:
    """A large message shows how much was sent when standard error is a
    terminal, and nothing of the kind when it is not (parseable output)."""
    sink = Sink()
    server = serve(sink)
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 3000  # 3 MiB
    quiet = submit(server, pki[1], message=big)
    assert quiet.returncode == 0 and b"sending:" not in quiet.stderr
    leader, follower = pty.openpty()
    try:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_RTLS_")}
        done = subprocess.run(
            [
                sys.executable, "-m", "smtp_rtls", "send", "--from", "a@sender.example",
                "--to", "b@example.org", "--server", f"127.0.0.1:{server.port}",
                "--cafile", pki[1], "--timeout", "10",
            ],
            input=big, stdout=subprocess.PIPE, stderr=follower, timeout=TIMEOUT,
            env=environ, check=False,
        )  # fmt: skip
        os.close(follower)
        seen = b""
        while select.select([leader], [], [], 0.5)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    total = len(big) >> 10
    assert f"sending: {total} of {total} KiB".encode() in seen
    assert sink.messages == 2
