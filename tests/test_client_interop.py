"""ClientConnection against a real SMTP server (aiosmtpd) on loopback, over real
sockets and a real STARTTLS handshake (ssl module, trustme certificates).

aiosmtpd offers STARTTLS but not REQUIRETLS, which is exactly the downgrade
case RFC 8689 §4.2.1 step 5 is about; it also checks that the content the
client writes (dot-stuffed, CRLF-normalised) is what an independent server
implementation reads back.  The npm ``smtp-server`` (a lab peer) offers
REQUIRETLS after STARTTLS: the positive case, against a third party.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from aiosmtpd.controller import Controller

from interop.client import ClientSession
from smtp_rtls import (
    Data,
    Ehlo,
    EndOfMessage,
    MailFrom,
    MessageData,
    RcptTo,
    RequireTLSError,
)
from smtp_rtls.io import asyncio as aio
from smtp_rtls.io import sync
from smtp_rtls.io import trio as trio_io


class Recorder:
    """An aiosmtpd handler that keeps what it was given."""

    def __init__(self) -> None:
        self.mails: list[str] = []
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.mails.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Queued"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[tuple[int, Recorder]]:
    """aiosmtpd with STARTTLS on 127.0.0.1, started and stopped by the test."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, tls_context=server_ctx, ready_timeout=10
    )
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


CONTENT = (
    b"From: alice@example.org\r\nSubject: interop\r\n\r\n"
    b".a line with a leading dot\r\n"
    b"a bare LF here\nand a bare CR here\rthen\r\n"
    b".\r\n"
    b"..two dots\r\n"
    b"the end without a line end"
)


@pytest.mark.interop("aiosmtpd", "ClientConnection: STARTTLS transaction")
def test_a_transaction_over_starttls_with_a_real_server(
    server: tuple[int, Recorder], ca: trustme.CA
) -> None:
    port, recorder = server
    s = ClientSession(port)
    assert s.reply().command == "GREETING"
    s.send(Ehlo("client.example"))
    assert s.reply().command == "EHLO"
    caps = s.conn.capabilities
    assert caps is not None and "STARTTLS" in caps
    s.starttls(trusting(ca), "localhost")
    assert s.conn.capabilities is None  # RFC 3207 §4.2
    s.send(Ehlo("client.example"))
    s.reply()
    caps = s.conn.capabilities
    assert caps is not None and "STARTTLS" not in caps
    s.send(MailFrom("alice@example.org"))
    assert s.reply().code == 250
    s.send(RcptTo("bob@example.net"))
    assert s.reply().code == 250
    s.send(RcptTo("nobody@example.net"))
    refused = s.reply()
    assert (refused.code, refused.command) == (550, "RCPT")
    s.send(Data())
    assert s.reply().code == 354
    # in odd pieces, including one that ends with the CR of a CRLF
    for a, b in ((0, 10), (10, 47), (47, 80), (80, len(CONTENT))):
        s.send(MessageData(CONTENT[a:b]))
    s.send(EndOfMessage())
    done = s.reply()
    assert (done.code, done.command) == (250, "EOM")
    s.close()
    [(sender, rcpts, content)] = recorder.messages
    assert sender == "alice@example.org"
    assert rcpts == ["bob@example.net"]
    expected = (
        b"From: alice@example.org\r\nSubject: interop\r\n\r\n"
        b".a line with a leading dot\r\n"
        b"a bare LF here\r\nand a bare CR here\r\nthen\r\n"
        b".\r\n"
        b"..two dots\r\n"
        b"the end without a line end\r\n"
    )
    assert content == expected


@pytest.mark.interop("aiosmtpd", "ClientConnection: 5.7.30 without REQUIRETLS")
def test_requiretls_refused_against_a_server_that_does_not_offer_it_rfc8689_4_2_1(
    server: tuple[int, Recorder], ca: trustme.CA
) -> None:
    port, recorder = server
    s = ClientSession(port)
    s.reply()
    s.send(Ehlo("client.example"))
    s.reply()
    with pytest.raises(RequireTLSError) as plain:
        s.send(MailFrom("alice@example.org", requiretls=True))
    assert plain.value.reply is not None and str(plain.value.reply.enhanced) == "5.7.10"
    s.starttls(trusting(ca), "localhost")
    s.send(Ehlo("client.example"))
    s.reply()
    with pytest.raises(RequireTLSError) as tls:
        s.send(MailFrom("alice@example.org", requiretls=True))
    assert tls.value.reply is not None and str(tls.value.reply.enhanced) == "5.7.30"
    # RFC 8689 §4.2.1 ¶3: QUIT; the server never saw a MAIL command
    s.close()
    assert recorder.mails == []


# -- a third-party server with REQUIRETLS: npm smtp-server (a lab peer) -------------------

NODE_MODULES = Path(
    os.environ.get(
        "SMTP_RTLS_NODE_MODULES", Path(__file__).parent / "lab" / "node" / "node_modules"
    )
)
SINK = Path(__file__).parent / "peers" / "requiretls_sink.js"


@pytest.fixture
def node_sink(ca: trustme.CA, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """smtp-server on 127.0.0.1 with STARTTLS and REQUIRETLS; stopped by the test."""
    if shutil.which("node") is None or not (NODE_MODULES / "smtp-server").is_dir():
        # A missing peer is a broken set-up, not a reason to pass quietly.
        pytest.fail(
            "needs node and the npm smtp-server module: run tests/lab/node-peers.sh "
            "(scripts/test.sh does) or set SMTP_RTLS_NODE_MODULES"
        )
    cert = ca.issue_cert("localhost", "127.0.0.1")
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    out = tmp_path / "received.jsonl"
    port = free_port()
    proc = subprocess.Popen(
        ["node", str(SINK), str(port), str(key_file), str(cert_file), str(out)],
        env=dict(os.environ, NODE_PATH=str(NODE_MODULES)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "listening", or EOF if node died
        assert line.strip() == "listening", proc.stderr.read() if proc.stderr else line
        yield port, out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.interop("smtp-server", "ClientConnection: REQUIRETLS transaction")
@pytest.mark.lab
def test_requiretls_transaction_with_a_third_party_server_rfc8689_4_2_1(
    node_sink: tuple[int, Path], ca: trustme.CA
) -> None:
    port, out = node_sink
    s = ClientSession(port)
    s.reply()
    s.send(Ehlo("client.example"))
    s.reply()
    caps = s.conn.capabilities
    assert caps is not None and "REQUIRETLS" not in caps  # never before TLS
    with pytest.raises(RequireTLSError):
        s.send(MailFrom("alice@example.org", requiretls=True))
    s.starttls(trusting(ca), "localhost")
    s.send(Ehlo("client.example"))
    s.reply()
    caps = s.conn.capabilities
    assert caps is not None and "REQUIRETLS" in caps
    s.send(MailFrom("alice@example.org", requiretls=True))
    assert s.reply().code == 250
    s.send(RcptTo("bob@example.net"))
    assert s.reply().code == 250
    s.send(Data())
    assert s.reply().code == 354
    s.send(MessageData(b"Subject: rtls\r\n\r\n.dot\r\nend"), EndOfMessage())
    done = s.reply()
    assert (done.code, done.command) == (250, "EOM")
    s.close()
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["requireTLS"] is True and record["tls"] is True
    assert record["from"] == "alice@example.org" and record["to"] == ["bob@example.net"]
    assert record["body"] == "Subject: rtls\r\n\r\n.dot\r\nend\r\n"


@pytest.mark.interop("smtp-server", "connect() (sync, asyncio, trio): REQUIRETLS submission")
@pytest.mark.lab
@pytest.mark.parametrize("kind", ["sync", "asyncio", "trio"])
def test_connect_sends_requiretls_to_a_third_party_server_rfc8689_4_2_1(
    node_sink: tuple[int, Path], ca: trustme.CA, kind: str
) -> None:
    port, out = node_sink
    message = b"Subject: rtls\r\n\r\n.dot\r\nend\r\n"

    async def send_async(module: Any) -> None:
        client = await module.connect("127.0.0.1", port, server_hostname="localhost", timeout=10)
        async with client:
            await client.starttls(trusting(ca))
            result = await client.send(
                "alice@example.org", ["bob@example.net"], message, requiretls=True
            )
            assert result.data is not None and result.data.code == 250
            await client.quit()

    if kind == "sync":
        with sync.connect("127.0.0.1", port, server_hostname="localhost", timeout=10) as client:
            client.starttls(trusting(ca))
            result = client.send(
                "alice@example.org", ["bob@example.net"], message, requiretls=True
            )
            assert result.data is not None and result.data.code == 250
            client.quit()
    elif kind == "asyncio":
        asyncio.run(send_async(aio))
    else:
        trio.run(send_async, trio_io)
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["requireTLS"] is True and record["tls"] is True
    assert record["body"] == message.decode()
