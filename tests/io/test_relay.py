"""Relay over loopback with real parts: smtplib (STARTTLS + REQUIRETLS) -> serve()
with the Relay handler -> the relay worker -> deliver() -> serve() with a Maildir.

DNS answers come from a table (authentic, so the MX names count as validated,
RFC 8689 §4.2.1 step 2) and every domain's MX is 127.0.0.1; the deliver
function is wrapped to pick each domain's port.  Every server and thread a
test starts is stopped by that test (fixtures included), and every wait is
bounded.
"""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme

from smtp_rtls import MailFrom, Reply
from smtp_rtls.handlers import FileSpool, Maildir, Relay, Spool
from smtp_rtls.handlers import spool as spool_module
from smtp_rtls.handlers.relay import RetrySchedule
from smtp_rtls.handlers.spool import QueuedMessage, QueuedRecipient, RecipientState
from smtp_rtls.io import sync
from smtp_rtls.io.tls import server_context
from smtp_rtls.policy.requests import DNSAnswer, DNSQuery, HTTPSResponse, Request, Result
from smtp_rtls.policy.tags import TLSTag
from smtp_rtls.session import DEFAULT_TIMEOUTS, DeliveryResult, DeliveryStatus
from smtp_rtls.session.server import MessageWriter, SessionEnvelope, SessionInfo

RELAY = "relay.test.example"
MXS = {"example.net": "mx.example.net", "sender.example": "mx.sender.example"}
TIMEOUTS = {k: 10.0 for k in DEFAULT_TIMEOUTS}  # a failing test must not hang for minutes
RETRY = RetrySchedule(first=60.0, factor=2.0, maximum=3600.0)
DAY = 86400.0
MESSAGE = (
    b"From: alice@sender.example\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: the secret plans\r\n"
    b"Message-ID: <plans.1@sender.example>\r\n"
    b"\r\n"
    b".a line that starts with a dot\r\n"
    b"caf\xc3\xa9\r\n"
)


def table(request: Request) -> Result:
    """Authentic DNS: each domain's one MX on 127.0.0.1, no TLSA, no MTA-STS."""
    if not isinstance(request, DNSQuery):
        return HTTPSResponse(request, error="connect")
    records: dict[tuple[str, str], tuple[str, ...]] = {}
    for domain, mx in MXS.items():
        records[(domain, "MX")] = (f"10 {mx}.",)
        records[(mx, "A")] = ("127.0.0.1",)
        records[(mx, "AAAA")] = ()
    key = (request.name, request.rdtype)
    if key not in records:
        return DNSAnswer(request, "NXDOMAIN", authentic=True)
    return DNSAnswer(request, "NOERROR", records[key], authentic=True)


class Mailbox(Maildir):
    """A Maildir that records envelopes and can refuse recipients with ``refuse``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.envelopes: list[SessionEnvelope] = []
        self.refuse: Reply | None = None

    def on_rcpt(self, session: SessionInfo, event: Any, envelope: Any) -> Reply:
        return self.refuse or Reply(250, "OK", "2.1.5")

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        self.envelopes.append(envelope)
        return super().on_message(envelope)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext, str]:
    """(server context, client context, CA file): one certificate for every name."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("relay-pki")
    cert = ca.issue_cert(RELAY, *MXS.values(), "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    cafile = str(folder / "ca.pem")
    ca.cert_pem.write_to_path(cafile)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server_context(str(folder / "server.pem")), client, cafile


class World:
    """The relay's server, the recipient's MX and the sender's MX, on loopback."""

    def __init__(self, stack: ExitStack, tmp: Path, pki: Any) -> None:
        self.stack = stack
        self.tmp = tmp
        self.tls, self.client_tls, self.cafile = pki
        self.mx = Mailbox(tmp / "bob")
        self.sender_mx = Mailbox(tmp / "alice")
        self.ports: dict[str, int] = {}
        for domain, box in (("example.net", self.mx), ("sender.example", self.sender_mx)):
            self.ports[domain] = self.serve(box, MXS[domain]).port
        self.spool = FileSpool(tmp / "spool")
        self.relay = self.new_relay(self.spool)
        self.server = self.serve(self.relay, RELAY)

    def serve(self, handler: object, hostname: str) -> sync.Server:
        server = sync.serve(handler, "127.0.0.1", 0, hostname=hostname, tls=self.tls)
        self.stack.callback(server.shutdown, 5)
        return server

    def deliver(self, *args: Any, **kwargs: Any) -> DeliveryResult:
        """sync.deliver to the domain's port (args: mail_from, rcpts, content, domain)."""
        return sync.deliver(*args, port=self.ports[args[3]], **kwargs)

    def new_relay(self, spool: Spool) -> Relay:
        options = {"fulfil": table, "cafile": self.cafile, "timeouts": TIMEOUTS}
        return Relay(
            spool,
            local_hostname=RELAY,
            deliver=self.deliver,
            deliver_options=options,
            retry=RETRY,
        )

    def send(
        self,
        message: bytes = MESSAGE,
        *,
        sender: str = "alice@sender.example",
        options: tuple[str, ...] = ("REQUIRETLS",),
        starttls: bool = True,
    ) -> None:
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=10) as client:
            client.ehlo("client.example")
            if starttls:
                client.starttls(context=self.client_tls)
                client.ehlo("client.example")
            client.sendmail(sender, ["bob@example.net"], message, list(options))

    def queue_files(self) -> list[str]:
        return sorted(p.name for p in (self.tmp / "spool" / "queue").iterdir())


@pytest.fixture
def world(tmp_path: Path, pki: Any) -> Iterator[World]:
    with ExitStack() as stack:
        yield World(stack, tmp_path, pki)


def stored(box: Mailbox) -> bytes:
    [path] = box.delivered
    return path.read_bytes()


# -- the whole path ---------------------------------------------------------------------


def test_requiretls_message_is_relayed_byte_exact_with_requiretls_rfc8689_4_1(
    world: World,
) -> None:
    world.send()
    # RFC 5321 §6.1: the 250 came after the entry was on disk
    [entry] = world.spool.entries()
    assert entry.tag is TLSTag.REQUIRETLS and entry.received is not None
    assert entry.received.tls_version in ("TLSv1.2", "TLSv1.3")
    assert len(world.queue_files()) == 2 and not world.mx.delivered

    [attempt] = world.relay.run_once()
    (r,) = attempt.result.recipients
    assert r.status is DeliveryStatus.DELIVERED and r.requiretls, r
    [envelope] = world.mx.envelopes
    assert envelope.tag is TLSTag.REQUIRETLS and envelope.mail_from.requiretls
    data = stored(world.mx)
    # the message itself, byte for byte, after the two hops' trace fields
    head, message = data[: data.index(MESSAGE)], data[data.index(MESSAGE) :]
    assert message == MESSAGE
    assert head.startswith(
        b"Return-Path: <alice@sender.example>\r\nReceived: from " + RELAY.encode()
    )
    assert head.count(b"Received: ") == 2  # RFC 5321 §4.4: the relay added its own
    mx_received = head.split(b"Received: ")[1]
    assert b"with ESMTPS (TLSv1." in mx_received and b" REQUIRETLS" in mx_received
    assert b"by relay.test.example with ESMTPS" in head
    assert world.spool.entries() == [] and world.queue_files() == []


def test_tls_required_no_is_kept_rfc8689_4_1(world: World) -> None:
    message = b"TLS-Required: No\r\nSubject: not secret\r\n\r\nhello\r\n"
    world.send(message, options=(), starttls=False)
    [entry] = world.spool.entries()
    assert entry.tag is TLSTag.TLS_OPTIONAL
    world.relay.run_once()
    [envelope] = world.mx.envelopes
    assert envelope.tag is TLSTag.TLS_OPTIONAL and not envelope.mail_from.requiretls
    assert stored(world.mx).endswith(b"\r\n" + message)


def test_deferred_recipient_is_retried_after_the_back_off_rfc5321_4_5_4_1(
    world: World,
) -> None:
    world.mx.refuse = Reply(451, "Try again later", "4.3.0")
    world.send()
    now = time.time()
    [attempt] = world.relay.run_once(now)
    assert attempt.result.recipients[0].status is DeliveryStatus.DEFERRED
    [entry] = world.spool.entries()
    (rcpt,) = entry.recipients
    assert rcpt.state is RecipientState.PENDING and rcpt.attempts == 1
    assert rcpt.next_attempt == pytest.approx(now + RETRY.first)
    assert rcpt.last_reply is not None and rcpt.last_reply.code == 451

    assert world.relay.run_once(now + RETRY.first / 2) == []  # not due yet
    world.mx.refuse = None
    [attempt] = world.relay.run_once(now + RETRY.first)
    assert attempt.result.recipients[0].status is DeliveryStatus.DELIVERED
    assert stored(world.mx).endswith(MESSAGE)
    assert world.spool.entries() == [] and not world.sender_mx.delivered


def test_permanent_failure_sends_a_redacted_dsn_with_requiretls_rfc8689_5(
    world: World,
) -> None:
    world.mx.refuse = Reply(550, "No such user", "5.1.1")
    world.send()
    attempts = world.relay.run_once()
    # the delivery, then the report to the sender's domain in the same pass
    assert [a.domain for a in attempts] == ["example.net", "sender.example"]
    assert attempts[1].result.recipients[0].status is DeliveryStatus.DELIVERED
    [envelope] = world.sender_mx.envelopes
    assert envelope.mail_from.reverse_path.is_null  # RFC 5321 §4.5.5
    # §5 ¶1: a report about a REQUIRETLS message carries REQUIRETLS
    assert envelope.tag is TLSTag.REQUIRETLS and envelope.mail_from.requiretls
    report = stored(world.sender_mx)
    assert b"multipart/report; report-type=delivery-status" in report
    assert b"Status: 5.1.1" in report and b"Final-Recipient: rfc822; bob@example.net" in report
    # §5 ¶3: headers only; redacted, as it may travel without REQUIRETLS
    assert b"Message-ID: <plans.1@sender.example>" in report
    assert b"the secret plans" not in report and b"caf\xc3\xa9" not in report
    assert world.spool.entries() == [] and not world.mx.delivered


def test_expiry_gives_up_and_bounces_after_five_days_rfc5321_4_5_4_1(world: World) -> None:
    world.mx.refuse = Reply(451, "Mailbox busy", "4.2.1")
    world.send(options=())  # untagged: the report returns the headers (RET unset)
    start = time.time()
    world.relay.run_once(start)
    [entry] = world.spool.entries()
    assert entry.recipients[0].attempts == 1
    # the retries never pass the give-up time
    later = start + 5 * DAY - 10
    world.relay.run_once(later)
    [entry] = world.spool.entries()
    assert entry.recipients[0].next_attempt == pytest.approx(entry.arrival + 5 * DAY)
    attempts = world.relay.run_once(entry.arrival + 5 * DAY)
    assert [a.domain for a in attempts] == ["example.net", "sender.example"]
    report = stored(world.sender_mx)
    assert b"Action: failed" in report and b"Status: 4.2.1" in report
    assert b"Diagnostic-Code: smtp; 451 4.2.1 Mailbox busy" in report
    assert b"Subject: the secret plans" in report  # not REQUIRETLS: headers returned
    [envelope] = world.sender_mx.envelopes
    assert envelope.tag is TLSTag.DEFAULT and envelope.mail_from.reverse_path.is_null
    assert world.spool.entries() == []


def test_no_report_for_a_null_reverse_path_rfc5321_4_5_5(world: World) -> None:
    world.mx.refuse = Reply(550, "No such user", "5.1.1")
    world.send(sender="", options=())
    attempts = world.relay.run_once()
    assert [a.domain for a in attempts] == ["example.net"]
    assert attempts[0].result.bounce is None
    assert world.spool.entries() == [] and not world.sender_mx.delivered


def test_the_spool_survives_a_restart(world: World) -> None:
    world.send()
    world.server.shutdown(5)  # the first relay process "ends" with the entry queued
    relay = world.new_relay(FileSpool(world.tmp / "spool"))
    [attempt] = relay.run_once()
    assert attempt.result.recipients[0].status is DeliveryStatus.DELIVERED
    [envelope] = world.mx.envelopes
    assert envelope.tag is TLSTag.REQUIRETLS
    assert stored(world.mx).endswith(MESSAGE)


def test_the_background_worker_delivers_and_stops(world: World) -> None:
    world.relay.start(interval=0.05)
    try:
        world.send()
        deadline = time.monotonic() + 15
        while not world.mx.delivered and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        world.relay.stop(timeout=15)
    assert world.relay._thread is None
    assert stored(world.mx).endswith(MESSAGE)
    with pytest.raises(RuntimeError):
        world.relay.start()
        world.relay.start()
    world.relay.stop(timeout=15)


# -- never a partial file -----------------------------------------------------------------


def _wait_idle(server: sync.Server) -> None:
    deadline = time.monotonic() + 10
    while server.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active == 0


def test_an_aborted_transaction_leaves_no_file(world: World) -> None:
    with socket.create_connection(("127.0.0.1", world.server.port), timeout=10) as peer:
        stream = peer.makefile("rb")
        assert stream.readline().startswith(b"220 ")
        peer.sendall(b"EHLO client.example\r\n")
        while not stream.readline().startswith(b"250 "):
            pass
        peer.sendall(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n")
        for _ in range(3):
            stream.readline()
        peer.sendall(b"Subject: cut short\r\n\r\nhalf a messa")
        # the header section arrived, so the spool has a file in tmp/
        tmp = world.tmp / "spool" / "tmp"
        deadline = time.monotonic() + 10
        while not any(tmp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(tmp.iterdir())
        stream.close()
    _wait_idle(world.server)
    spool = world.tmp / "spool"
    assert list((spool / "tmp").iterdir()) == [] and world.queue_files() == []


def test_a_failed_commit_answers_451_and_leaves_no_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, tmp: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module, "_write_durably", broken)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        world.send()
    assert refused.value.smtp_code == 451  # RFC 5321 §4.2.5: the client keeps it
    _wait_idle(world.server)
    spool = world.tmp / "spool"
    assert list((spool / "tmp").iterdir()) == [] and world.queue_files() == []


# -- the spool alone ---------------------------------------------------------------------


def _entry(now: float = 1000.0) -> QueuedMessage:
    return QueuedMessage(
        MailFrom("alice@sender.example", ret="HDRS", envid="E1"),
        (
            QueuedRecipient("bob@example.net", ("FAILURE",), ("rfc822", "bob@example.net")),
            QueuedRecipient("carol@example.org", next_attempt=now + 60),
        ),
        TLSTag.REQUIRETLS,
        now,
    )


def test_file_spool_round_trip_and_due(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path)
    entry = spool.add(_entry(), b"Subject: x\r\n\r\nbody\r\n")
    assert entry.id and spool.get(entry.id) == entry
    data = json.loads((tmp_path / "queue" / f"{entry.id}.json").read_bytes())
    assert list(data["domains"]) == ["example.net", "example.org"]
    assert data["tag"] == "REQUIRETLS"
    assert [m.id for m in spool.due(1000.0)] == [entry.id]
    assert b"".join(spool.content(entry.id)()) == b"Subject: x\r\n\r\nbody\r\n"
    done = tuple(attrs.evolve(r, state=RecipientState.DELIVERED) for r in entry.recipients)
    spool.update(QueuedMessage(entry.mail_from, done, entry.tag, entry.arrival, id=entry.id))
    assert spool.due(10**10) == []
    spool.remove(entry.id)
    assert list((tmp_path / "queue").iterdir()) == []


def test_a_damaged_entry_is_set_aside_not_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = FileSpool(tmp_path)
    entry = spool.add(_entry(), b"Subject: x\r\n\r\nbody\r\n")
    (tmp_path / "queue" / f"{entry.id}.json").write_bytes(b'{"version": 1, "trunc')
    with caplog.at_level(logging.WARNING, logger="smtp_rtls.handlers.spool"):
        assert spool.due(10**10) == []
    assert "set aside" in caplog.text
    assert sorted(p.name for p in (tmp_path / "damaged").iterdir()) == [
        f"{entry.id}.json",
        f"{entry.id}.msg",
    ]


def test_what_a_crash_leaves_is_sorted_out_on_opening(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path)
    kept = spool.add(_entry(), b"kept")
    finished = spool.add(_entry(), b"done")
    done = tuple(attrs.evolve(r, state=RecipientState.DELIVERED) for r in finished.recipients)
    spool.update(QueuedMessage(finished.mail_from, done, finished.tag, 0.0, id=finished.id))
    # a crash inside remove(): the content went, the envelope did not
    (tmp_path / "queue" / f"{finished.id}.msg").unlink()
    # a crash inside a commit, between its two renames (no 250 was sent)
    (tmp_path / "queue" / "orphan.msg").write_bytes(b"half committed")
    # a crash while a transaction was being written
    (tmp_path / "tmp" / "partial.msg").write_bytes(b"partial")
    reopened = FileSpool(tmp_path)
    assert [m.id for m in reopened.entries()] == [kept.id]
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [p.name for p in (tmp_path / "damaged").iterdir()] == ["orphan.msg"]


def test_retry_schedule_backs_off_exponentially_up_to_the_maximum() -> None:
    schedule = RetrySchedule()
    assert schedule.delay(1) == 30 * 60  # RFC 5321 §4.5.4.1: at least 30 minutes
    assert [schedule.delay(n) for n in (2, 3, 4, 5)] == [3600, 7200, 14400, 14400]
    assert schedule.give_up == 5 * DAY
