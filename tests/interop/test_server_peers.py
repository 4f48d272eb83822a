"""ServerConnection against real clients: smtplib and aiosmtplib, over loopback,
with a real TLS handshake after STARTTLS."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme

from adapters import KINDS, running
from interop.serve import LoopbackServer
from smtp_rtls import CommandRejected, MailFrom, ServerConfig
from smtp_rtls.handlers import Sink
from smtp_rtls.policy.tags import TLSTag

MESSAGE = (
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: interop\r\n\r\n"
    b"first line\r\n.a line that starts with a dot\r\n..two dots\r\nlast line\r\n"
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.test", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def server(server_context: ssl.SSLContext) -> Iterator[LoopbackServer]:
    with LoopbackServer(server_context) as srv:
        yield srv


@pytest.mark.interop("smtplib", "ServerConnection: REQUIRETLS refused on plaintext (555)")
def test_smtplib_plaintext_requiretls_is_refused_rfc8689_2(server: LoopbackServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        code, _ = client.ehlo("client.test")
        assert code == 250
        assert client.has_extn("starttls")
        assert not client.has_extn("requiretls")  # RFC 8689 §2: not before TLS
        code, text = client.mail("alice@example.org", ["REQUIRETLS"])
        assert code == 555 and text.startswith(b"5.5.4")
        code, _ = client.rcpt("bob@example.net")
        assert code == 503  # no transaction was opened
    session = server.sessions[0]
    assert session.error is None
    assert not any(isinstance(e, MailFrom) for e in session.events)
    assert any(isinstance(e, CommandRejected) and e.reply.code == 555 for e in session.events)


@pytest.mark.interop("smtplib", "ServerConnection: STARTTLS, REQUIRETLS tagged message")
def test_smtplib_starttls_then_requiretls_delivers_tagged(
    server: LoopbackServer, client_context: ssl.SSLContext
) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.ehlo("client.test")
        client.starttls(context=client_context)
        client.ehlo("client.test")
        assert client.has_extn("requiretls")
        assert not client.has_extn("starttls")  # RFC 3207 §4.2
        refused = client.sendmail(
            "alice@example.org", ["bob@example.net"], MESSAGE, mail_options=["REQUIRETLS"]
        )
        assert refused == {}
    session = server.sessions[0]
    assert session.error is None
    ((eom, content),) = session.messages
    assert eom.envelope is not None and eom.envelope.requiretls
    assert content == MESSAGE  # smtplib's dot-stuffing undone exactly


@pytest.mark.interop("smtplib", "ServerConnection: SIZE, 8BITMIME, large message")
def test_smtplib_large_message_with_size_and_8bitmime(
    server: LoopbackServer, client_context: ssl.SSLContext
) -> None:
    body = (b"0123456789" * 99 + b"\r\n") * 5000  # about 5 MB
    message = b"Subject: big\r\n\r\n" + body + "ünïcode\r\n".encode()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=20) as client:
        client.starttls(context=client_context)
        client.sendmail(
            "alice@example.org",
            ["bob@example.net"],
            message,
            mail_options=["BODY=8BITMIME"],  # smtplib adds SIZE= itself
        )
    ((eom, content),) = server.sessions[0].messages
    assert content == message
    assert eom.envelope is not None and eom.envelope.mail_from.size == len(message)


@pytest.mark.interop("smtplib", "ServerConnection: SMTPUTF8 addresses")
def test_smtplib_smtputf8_addresses(server: LoopbackServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail(
            "älice@exämple.org",
            ["bøb@example.net"],
            b"Subject: x\r\n\r\nhi\r\n",
            mail_options=["SMTPUTF8"],
        )
    ((eom, _),) = server.sessions[0].messages
    assert eom.envelope is not None
    assert eom.envelope.mail_from.smtputf8
    assert str(eom.envelope.recipients[0].forward_path) == "bøb@example.net"


@pytest.mark.interop("smtplib", "ServerConnection: 552 over SIZE")
def test_smtplib_oversized_message_is_552(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    config = ServerConfig(starttls=True, max_message_size=10_000)
    with LoopbackServer(server_context, config) as server:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            assert client.ehlo()[0] == 250
            assert client.ehlo_resp is not None and b"SIZE 10000" in client.ehlo_resp
            big = b"x" * 20_000 + b"\r\n"
            # declared too big: refused at MAIL (RFC 1870 §6.1)
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("a@example.org", ["b@example.net"], big)
            assert refused.value.smtp_code == 552
            # undeclared: refused after the real end of data (RFC 1870 §6.2)
            assert client.mail("a@example.org")[0] == 250
            assert client.rcpt("b@example.net")[0] == 250
            code, text = client.data(big)
            assert (code, text[:5]) == (552, b"5.3.4")
            assert client.noop()[0] == 250  # still in step after the refusal
        assert not server.sessions[0].messages


@pytest.mark.interop("aiosmtplib", "ServerConnection: STARTTLS, REQUIRETLS tagged message")
def test_aiosmtplib_starttls_requiretls(
    server: LoopbackServer, client_context: ssl.SSLContext
) -> None:
    async def run() -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=server.port,
            timeout=10,
            start_tls=False,
            tls_context=client_context,
        )
        await client.connect()
        await client.ehlo()
        assert not client.supports_extension("requiretls")
        await client.starttls(server_hostname="mx.test")
        await client.ehlo()
        assert client.supports_extension("requiretls")
        errors, _ = await client.sendmail(
            "alice@example.org",
            ["bob@example.net", "carol@example.net"],
            MESSAGE,
            mail_options=["REQUIRETLS"],
        )
        assert errors == {}
        await client.quit()

    asyncio.run(run())
    ((eom, content),) = server.sessions[0].messages
    assert eom.envelope is not None and eom.envelope.requiretls
    assert len(eom.envelope.recipients) == 2
    assert content == MESSAGE


# -- a third-party REQUIRETLS client: npm nodemailer --------------------------------------

NODE_MODULES = Path(__file__).parent.parent / "lab" / "node" / "node_modules"
SENDER = Path(__file__).parent.parent / "peers" / "requiretls_send.js"


def nodemailer_send(
    port: int, ca: trustme.CA, folder: Path, *, requiretls: bool
) -> dict[str, Any]:
    if shutil.which("node") is None or not (NODE_MODULES / "nodemailer").is_dir():
        # a missing peer is a broken set-up, not a reason to pass quietly
        pytest.fail("needs node and nodemailer: run tests/lab/node-peers.sh")
    cafile = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    done = subprocess.run(
        [
            "node",
            str(SENDER),
            str(port),
            str(cafile),
            "mx.test",
            "bob@example.net",
            "1" if requiretls else "0",
        ],
        env=dict(os.environ, NODE_PATH=str(NODE_MODULES)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.interop("nodemailer", "ServerConnection: REQUIRETLS from a REQUIRETLS client")
@pytest.mark.lab
def test_nodemailer_requiretls_to_our_server_rfc8689_2(
    server: LoopbackServer, ca: trustme.CA, tmp_path: Path
) -> None:
    result = nodemailer_send(server.port, ca, tmp_path, requiretls=True)
    assert result["ok"], result
    session = server.sessions[0]
    assert session.error is None
    mails = [e for e in session.events if isinstance(e, MailFrom)]
    assert len(mails) == 1 and mails[0].requiretls  # sent only after STARTTLS
    ((eom, content),) = session.messages
    assert eom.envelope is not None and eom.envelope.requiretls
    assert b"\r\n.dot line\r\n" in content  # nodemailer's dot-stuffing undone


@pytest.mark.interop("nodemailer", "ServerConnection without REQUIRETLS: the client refuses it")
@pytest.mark.lab
def test_nodemailer_refuses_a_server_without_requiretls_rfc8689_4_2_1(
    server_context: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    config = ServerConfig(starttls=True, requiretls=False)
    with LoopbackServer(server_context, config) as server:
        result = nodemailer_send(server.port, ca, tmp_path, requiretls=True)
    assert not result["ok"] and result["code"] == "EREQUIRETLS", result
    assert not any(isinstance(e, MailFrom) for s in server.sessions for e in s.events)


@pytest.mark.interop("nodemailer", "serve() (sync, asyncio, trio): REQUIRETLS")
@pytest.mark.lab
@pytest.mark.parametrize("kind", KINDS)
def test_nodemailer_requiretls_to_each_adapter_rfc8689_2(
    kind: str, server_context: ssl.SSLContext, ca: trustme.CA, tmp_path: Path
) -> None:
    sink = Sink()
    with running(kind, sink, tls=server_context, hostname="mx.test") as srv:
        result = nodemailer_send(srv.port, ca, tmp_path, requiretls=True)
    assert result["ok"], result
    [envelope] = sink.envelopes
    assert envelope.tag is TLSTag.REQUIRETLS and envelope.session.tls is not None
