"""Delivery, the pure RFC 8689 delivery driver, against real servers in memory.

Each test builds a small world: DNS and MTA-STS answers from the tables of
``tests/policy/plan_world.py``, and at each MX address a real
:class:`ServerConnection` with a real ``ssl`` server end (``memory_net``).
The driver's requests are answered by :class:`MemoryNet`; what the servers
saw (every command, every content byte, in plaintext or TLS) is then checked.
"""

from __future__ import annotations

import datetime
import random
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from memory_net import MemoryNet, Site, accept_all

from policy.plan_world import DOMAIN, MX_HOST, Certificates, answers
from smtp_rtls import (
    Bdat,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    Reply,
    Rset,
    ServerConfig,
    StartTLS,
)
from smtp_rtls.policy.codes import Reason
from smtp_rtls.policy.plan import Action, PolicyConfig, Security
from smtp_rtls.policy.tags import TLSTag
from smtp_rtls.session import (
    Close,
    Connect,
    Delivery,
    DeliveryResult,
    DeliveryStatus,
    Read,
    Write,
    run_session,
)

MX2 = "mx2.example.org"
A1, A2 = "192.0.2.10", "192.0.2.11"  # plan_world's addresses of the first and second host
NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
MESSAGE = (
    b"From: alice@sender.example\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: the secret plan\r\n"
    b"Message-ID: <1@sender.example>\r\n"
    b"\r\n"
    b"Meet at dawn.\r\n"
    b".a line with a dot\r\n"
)
UNTAGGED = MESSAGE
OPTIONAL = b"TLS-Required: No\r\n" + MESSAGE
DELIVERED, DEFERRED, FAILED = (
    DeliveryStatus.DELIVERED,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.FAILED,
)


class World:
    """Certificates and server contexts for mx.example.org and mx2.example.org."""

    def __init__(self, folder: Path) -> None:
        self.certs = Certificates(folder)
        self.cafile = folder / "ca.pem"
        self.certs.ca.cert_pem.write_to_path(str(self.cafile))
        self.contexts = dict(self.certs.server_contexts)
        ca = self.certs.ca
        past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
        self._add("expired", ca.issue_cert(MX_HOST, not_before=past, not_after=past), folder)
        self._add("mx2-valid", ca.issue_cert(MX2), folder)
        # A server whose handshake always fails: TLS 1.2 only, and it demands a
        # client certificate the client never has.
        broken = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        broken.load_cert_chain(folder / "valid.pem")
        broken.maximum_version = ssl.TLSVersion.TLSv1_2
        broken.verify_mode = ssl.CERT_REQUIRED
        broken.load_verify_locations(cafile=str(self.cafile))
        self.contexts["broken"] = broken

    def _add(self, name: str, leaf: object, folder: Path) -> None:
        path = folder / f"{name}.pem"
        leaf.private_key_and_cert_chain_pem.write_to_path(str(path))  # type: ignore[attr-defined]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(path)
        self.contexts[name] = ctx

    def site(self, cert: str = "valid", name: str = MX_HOST, **kwargs: object) -> Site:
        return Site(name, self.contexts.get(cert), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("delivery-certs"))


def run(
    world: World,
    sites: dict[str, Site],
    *,
    dnssec: bool = True,
    sts: str = "absent",
    tlsa: tuple[str, ...] = (),
    two_hosts: bool = False,
    mail_from: str | MailFrom = "alice@sender.example",
    recipients: tuple[str | RcptTo, ...] = ("bob@example.org",),
    content: bytes = MESSAGE,
    requiretls: bool = True,
    **kwargs: object,
) -> tuple[DeliveryResult, MemoryNet]:
    mx = (f"10 {MX_HOST}.", f"20 {MX2}.") if two_hosts else (f"10 {MX_HOST}.",)
    hosts = (MX_HOST, MX2) if two_hosts else (MX_HOST,)
    lookup = answers(dnssec=dnssec, sts=sts, tlsa=tlsa, mx=mx, hosts=hosts)
    net = MemoryNet(sites, lookup, world.cafile)
    delivery = Delivery(
        mail_from,
        recipients,
        content,
        local_hostname="client.sender.example",
        requiretls=requiretls,
        config=PolicyConfig(rng=random.Random(1)),
        clock=lambda: NOW,
        **kwargs,  # type: ignore[arg-type]
    )
    result = run_session(delivery.run(), net)
    # Every connection the driver opened, it closed.
    assert sum(isinstance(r, Connect) for r in net.log) >= net.closes
    assert net.wire is None
    return result, net


def sent(site: Site, kind: type[Event]) -> list[Event]:
    return [e for e in site.events if isinstance(e, kind)]


def assert_nothing_sent(*sites: Site) -> None:
    """No MAIL, no content: not one message byte left (RFC 8689 §4.2.1 ¶3)."""
    for site in sites:
        assert not sent(site, MailFrom), site.events
        assert not site.content
        assert b"Meet at dawn" not in site.plaintext_from_client
        assert b"secret plan" not in site.plaintext_from_client


def only(result: DeliveryResult) -> object:
    (r,) = result.recipients
    return r


# -- delivered ---------------------------------------------------------------------------


def test_rfc8689_s4_2_1_pkix_under_dnssec_delivers_with_requiretls(world: World) -> None:
    site = world.site()
    result, _ = run(world, {A1: site})
    r = result.recipients[0]
    assert r.status is DELIVERED and r.requiretls
    assert r.security is Security.PKIX and r.host == MX_HOST and r.address == A1
    assert r.tls_version in ("TLSv1.2", "TLSv1.3") and r.tls_cipher
    assert r.reply is not None and r.reply.code == 250
    (mail,) = sent(site, MailFrom)
    assert isinstance(mail, MailFrom) and mail.requiretls
    # The core undid the dot-stuffing: the server got the message as it was.
    assert bytes(site.content) == MESSAGE
    assert sent(site, Quit)
    assert result.bounce is None
    assert result.verdict.action is Action.PROCEED


def test_rfc8461_mta_sts_enforce_validates_an_insecure_mx(world: World) -> None:
    result, _ = run(world, {A1: world.site()}, dnssec=False, sts="enforce")
    r = result.recipients[0]
    assert r.status is DELIVERED and r.requiretls and r.security is Security.PKIX
    assert "MTA-STS" in r.policy


def test_rfc7672_dane_ee_accepts_an_untrusted_certificate(world: World) -> None:
    tlsa = world.certs.tlsa("EE", "untrusted")
    result, _ = run(world, {A1: world.site("untrusted")}, tlsa=tlsa)
    r = result.recipients[0]
    assert r.status is DELIVERED and r.requiretls and r.security is Security.DANE


def test_rfc7672_dane_ta_with_the_served_chain(world: World) -> None:
    result, _ = run(world, {A1: world.site()}, tlsa=world.certs.tlsa("TA", "valid"))
    assert result.recipients[0].status is DELIVERED
    assert result.recipients[0].security is Security.DANE


def test_content_as_a_callable_is_read_again_for_each_use(world: World) -> None:
    calls = []

    def content() -> Iterator[bytes]:
        calls.append(1)
        yield MESSAGE[:10]
        yield b""
        yield MESSAGE[10:]

    site = world.site()
    result, _ = run(world, {A1: site}, content=content)  # type: ignore[arg-type]
    assert result.recipients[0].status is DELIVERED
    assert bytes(site.content) == MESSAGE
    assert len(calls) == 2  # once for the tag, once for the session


def test_rfc3030_bdat_when_asked_and_offered(world: World) -> None:
    site = world.site()
    result, _ = run(world, {A1: site}, bdat=True)
    assert result.recipients[0].status is DELIVERED
    chunks = sent(site, Bdat)
    assert chunks and isinstance(chunks[-1], Bdat) and chunks[-1].last
    assert bytes(site.content) == MESSAGE


def test_rfc3030_bdat_sends_text_as_data_would_rfc5321_2_3_8(world: World) -> None:
    # bare LF and bare CR, a CRLF split across chunks, no final line end: with
    # BDAT nothing rewrites the content on the way, so the client must
    chunks = [b"Subject: x\n\nline one\r", b"\nline two\rline", b" three"]
    stored = []
    for bdat in (False, True):
        site = world.site()
        result, _ = run(world, {A1: site}, bdat=bdat, content=lambda: iter(chunks))  # type: ignore[arg-type]
        assert result.recipients[0].status is DELIVERED
        assert bool(sent(site, Bdat)) is bdat
        stored.append(bytes(site.content))
    assert stored[0] == stored[1] == b"Subject: x\r\n\r\nline one\r\nline two\r\nline three\r\n"


def _group(net: MemoryNet) -> bytes:
    """The write that carried MAIL FROM."""
    return next(r.data for r in net.log if isinstance(r, Write) and r.data.startswith(b"MAIL"))


def test_rfc3030_s4_2_small_message_goes_with_its_envelope_in_one_write(world: World) -> None:
    site = world.site()
    recipients = ("bob@example.org", "carol@example.org")
    result, net = run(world, {A1: site}, bdat=True, recipients=recipients)
    assert [r.status for r in result.recipients] == [DELIVERED, DELIVERED]
    # MAIL, both RCPTs, BDAT LAST and the whole content: one write, one round
    # trip, the content as DATA would have delivered it
    group = _group(net)
    assert group.count(b"RCPT TO") == 2
    assert f"BDAT {len(MESSAGE)} LAST\r\n".encode() + MESSAGE in group
    assert group.endswith(MESSAGE)
    assert [c.last for c in sent(site, Bdat)] == [True]
    assert bytes(site.content) == MESSAGE
    assert not sent(site, Rset)
    assert all(r.reply is not None and r.reply.code == 250 for r in result.recipients)


def test_rfc3030_s2_one_write_with_some_recipients_refused(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, RcptTo) and event.forward_path.local_part == "nobody":
            return Reply(550, "no such user", "5.1.1")
        if isinstance(event, RcptTo) and event.forward_path.local_part == "later":
            return Reply(450, "busy", "4.2.1")
        return accept_all(event)

    site = world.site(decide=decide)
    recipients = ("nobody@example.org", "bob@example.org", "later@example.org")
    result, net = run(world, {A1: site}, bdat=True, recipients=recipients)
    assert [r.status for r in result.recipients] == [FAILED, DELIVERED, DEFERRED]
    assert [r.reply.code for r in result.recipients if r.reply] == [550, 250, 450]
    assert b"BDAT" in _group(net)
    assert bytes(site.content) == MESSAGE


def test_rfc3030_s2_one_write_no_recipient_accepted_drops_the_chunk_and_resets(
    world: World,
) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, RcptTo):
            return Reply(550, "no", "5.1.1")
        return accept_all(event)

    site = world.site(decide=decide)
    result, net = run(world, {A1: site}, bdat=True)
    assert result.recipients[0].status is FAILED
    assert result.recipients[0].reply is not None and result.recipients[0].reply.code == 550
    assert b"BDAT" in _group(net)
    # the server read and dropped the chunk (RFC 3030 §2): nothing stored;
    # "A RSET command MUST be issued" before QUIT
    assert not site.content
    kinds = [type(e) for e in site.events]
    assert kinds.index(Rset) < kinds.index(Quit)


def test_rfc3030_s2_one_write_content_refused_fails_and_resets(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, EndOfMessage):
            return Reply(554, "content rejected", "5.7.1")
        return accept_all(event)

    site = world.site(decide=decide)
    result, _ = run(world, {A1: site}, bdat=True)
    r = only(result)
    assert r.status is FAILED and r.reply is not None and r.reply.code == 554  # type: ignore[attr-defined]
    assert sent(site, Rset)


def test_rfc3030_s3_binarymime_goes_in_one_write_octet_for_octet(world: World) -> None:
    # BINARYMIME content is not text: no line end is rewritten, none added
    content = b"Subject: bin\r\n\r\n\x00\xff\rbare\nend"
    site = world.site(config=ServerConfig(starttls=True, binarymime=True))
    mail = MailFrom("alice@sender.example", body="BINARYMIME")
    result, net = run(world, {A1: site}, mail_from=mail, content=content)
    assert only(result).status is DELIVERED  # type: ignore[attr-defined]
    assert _group(net).endswith(f"BDAT {len(content)} LAST\r\n".encode() + content)
    assert bytes(site.content) == content


def test_rfc3207_s4_no_one_write_in_plaintext(world: World) -> None:
    # a plaintext session (no STARTTLS offered, an untagged message): the
    # server may answer MAIL with 530, so the content waits for the replies
    site = world.site(config=ServerConfig(starttls=False))
    result, net = run(world, {A1: site}, bdat=True, content=UNTAGGED, requiretls=False)
    assert only(result).status is DELIVERED  # type: ignore[attr-defined]
    assert b"BDAT" not in _group(net)
    assert sent(site, Bdat) and bytes(site.content) == UNTAGGED


def test_rfc3030_large_or_unpipelined_content_goes_in_chunks_after_the_replies(
    world: World,
) -> None:
    # over CHUNKING_MAX (256 KiB) in all, in pieces the server takes one by one
    pieces = [MESSAGE] + [b"x" * 76 + b"\r\n"] * 3500
    big = b"".join(pieces)
    site = world.site()
    parts = [b"".join(pieces[i : i + 1000]) for i in range(0, len(pieces), 1000)]
    result, net = run(world, {A1: site}, bdat=True, content=lambda: iter(parts))  # type: ignore[arg-type]
    assert only(result).status is DELIVERED  # type: ignore[attr-defined]
    assert b"BDAT" not in _group(net) and bytes(site.content) == big
    site = world.site(config=ServerConfig(starttls=True, pipelining=False))
    result, net = run(world, {A1: site}, bdat=True)
    assert only(result).status is DELIVERED  # type: ignore[attr-defined]
    assert b"BDAT" not in _group(net) and bytes(site.content) == MESSAGE


def test_without_pipelining_one_command_at_a_time(world: World) -> None:
    config = ServerConfig(starttls=True, pipelining=False)
    site = world.site(config=config)
    result, net = run(world, {A1: site}, recipients=("bob@example.org", "carol@example.org"))
    assert [r.status for r in result.recipients] == [DELIVERED, DELIVERED]
    # One command per write once TLS is up: MAIL, RCPT, RCPT, DATA ...
    writes = [r.data for r in net.log if isinstance(r, Write)]
    assert any(w.startswith(b"MAIL FROM") and b"RCPT" not in w for w in writes)


def test_rfc2920_pipelining_sends_the_envelope_in_one_write(world: World) -> None:
    result, net = run(
        world, {A1: world.site()}, recipients=("bob@example.org", "carol@example.org")
    )
    assert [r.status for r in result.recipients] == [DELIVERED, DELIVERED]
    writes = [r.data for r in net.log if isinstance(r, Write)]
    group = next(w for w in writes if w.startswith(b"MAIL FROM"))
    assert group.count(b"RCPT TO") == 2 and group.endswith(b"DATA\r\n")


# -- policy failures: QUIT, next host, 5.7.x, and not one byte -----------------------------


def test_rfc8689_s4_2_1_step5_requiretls_not_offered_tries_next_then_fails_5_7_30(
    world: World,
) -> None:
    no_rtls = ServerConfig(starttls=True, requiretls=False)
    first = world.site(config=no_rtls)
    second = world.site("mx2-valid", name=MX2, config=no_rtls)
    result, _ = run(world, {A1: first, A2: second}, two_hosts=True)
    r = result.recipients[0]
    assert r.status is FAILED and r.reason is Reason.REQUIRETLS_NOT_OFFERED
    assert r.reply is not None and str(r.reply.enhanced) == "5.7.30" and r.reply.code == 550
    assert result.verdict.action is Action.FAIL
    assert [v.host for v in result.attempts] == [MX_HOST, MX2]
    # RFC 8689 §4.2.1 ¶3: QUIT at each host, and nothing of the message.
    for site in (first, second):
        assert sent(site, StartTLS) and sent(site, Quit)
    assert_nothing_sent(first, second)
    # RFC 8689 §5: the report, headers only, tagged REQUIRETLS, redacted without it.
    bounce = result.bounce
    assert bounce is not None and bounce.tag is TLSTag.REQUIRETLS
    assert bounce.forward_path == "alice@sender.example"
    assert b"Status: 5.7.30" in bounce.message
    assert b"Subject: the secret plan" in bounce.message
    assert b"Meet at dawn" not in bounce.message
    assert bounce.redacted is not None and b"secret plan" not in bounce.redacted
    assert b"Message-ID: <1@sender.example>" in bounce.redacted


@pytest.mark.parametrize(
    ("cert", "reason"),
    [
        ("wrong-name", Reason.NAME_MISMATCH),
        ("expired", Reason.CERTIFICATE_EXPIRED),
        ("untrusted", Reason.CERTIFICATE_NOT_VERIFIED),
    ],
)
def test_rfc8689_s4_2_1_step4_certificate_failures_reported_as_such(
    world: World, cert: str, reason: Reason
) -> None:
    site = world.site(cert)
    result, net = run(world, {A1: site})
    r = result.recipients[0]
    assert r.status is FAILED and r.reason is reason, r
    assert r.reply is not None and str(r.reply.enhanced) == "5.7.10"
    assert result.attempts[0].reason is reason
    assert_nothing_sent(site)
    # A failed handshake leaves no plaintext session to QUIT: the driver closes.
    assert isinstance(net.log[-1], Close)
    assert result.bounce is not None and b"Status: 5.7.10" in result.bounce.message


def test_rfc8689_s4_2_1_starttls_not_offered(world: World) -> None:
    site = world.site(config=ServerConfig(starttls=False))
    result, _ = run(world, {A1: site})
    r = result.recipients[0]
    assert r.status is FAILED and r.reason is Reason.STARTTLS_NOT_OFFERED
    assert sent(site, Quit)
    assert_nothing_sent(site)


def test_rfc3207_s4_454_to_starttls_is_a_tls_failure(world: World) -> None:
    def refuse_tls(event: Event) -> Reply:
        if isinstance(event, StartTLS):
            return Reply(454, "TLS not available due to temporary reason", "4.7.0")
        return accept_all(event)

    site = world.site(decide=refuse_tls)
    result, _ = run(world, {A1: site})
    r = result.recipients[0]
    assert r.status is FAILED and r.reason is Reason.TLS_FAILED
    assert sent(site, Quit)
    assert_nothing_sent(site)


def test_rfc8689_s4_2_1_step2_unvalidated_mx_is_never_contacted(world: World) -> None:
    site = world.site()
    result, net = run(world, {A1: site}, dnssec=False)
    assert result.recipients[0].reason is Reason.MX_NOT_VALIDATED
    assert result.recipients[0].status is FAILED
    assert site.connections == 0 and not any(isinstance(r, Connect) for r in net.log)


# -- routing -------------------------------------------------------------------------------


def test_rfc5321_s5_first_mx_unreachable_second_delivers(world: World) -> None:
    second = world.site("mx2-valid", name=MX2)
    result, net = run(world, {A2: second}, two_hosts=True)
    r = result.recipients[0]
    assert r.status is DELIVERED and r.host == MX2 and r.address == A2
    connects = [r.address for r in net.log if isinstance(r, Connect)]
    assert connects == [A1, A2]
    assert result.attempts[0].reason is Reason.CONNECTION_FAILED


def test_no_host_reachable_defers_4_4_1(world: World) -> None:
    result, _ = run(world, {}, two_hosts=True)
    r = result.recipients[0]
    assert r.status is DEFERRED and r.reason is Reason.CONNECTION_FAILED
    assert r.reply is not None and str(r.reply.enhanced) == "4.4.1"
    assert result.bounce is None


def test_rfc5321_s3_1_554_greeting_quits_and_tries_next(world: World) -> None:
    first = world.site(greeting=Reply(554, "no service here"))
    second = world.site("mx2-valid", name=MX2)
    result, _ = run(world, {A1: first, A2: second}, two_hosts=True)
    assert result.recipients[0].status is DELIVERED and result.recipients[0].host == MX2
    assert sent(first, Quit)


# -- refusals after PROCEED ------------------------------------------------------------------


def test_per_recipient_4xx_defers_and_5xx_fails(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, RcptTo):
            local = event.forward_path.local_part
            if local == "later":
                return Reply(450, "mailbox busy", "4.2.1")
            if local == "nobody":
                return Reply(550, "no such user", "5.1.1")
        return accept_all(event)

    site = world.site(decide=decide)
    recipients = ("bob@example.org", "later@example.org", "nobody@example.org")
    result, _ = run(world, {A1: site}, recipients=recipients)
    assert [r.status for r in result.recipients] == [DELIVERED, DEFERRED, FAILED]
    assert str(result.recipients[2].enhanced) == "5.1.1"
    assert result.recipients[2].reason is None  # the server's reply, not the policy's
    assert bytes(site.content) == MESSAGE
    bounce = result.bounce
    assert bounce is not None
    assert b"nobody@example.org" in bounce.message and b"later@example.org" not in bounce.message
    assert b"Remote-MTA: dns; mx.example.org" in bounce.message


def test_mail_refused_applies_to_every_recipient(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, MailFrom):
            return Reply(451, "try later", "4.3.0")
        return accept_all(event)

    site = world.site(decide=decide)
    result, _ = run(world, {A1: site}, recipients=("a@example.org", "b@example.org"))
    assert [r.status for r in result.recipients] == [DEFERRED, DEFERRED]
    assert not site.content
    # RFC 2920 §3.1: the pipelined DATA was refused by the server, no content went.
    assert sent(site, Quit)


def test_end_of_data_refusal_applies_to_accepted_recipients(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, EndOfMessage):
            return Reply(554, "content rejected", "5.7.1")
        if isinstance(event, RcptTo) and event.forward_path.local_part == "later":
            return Reply(450, "busy", "4.2.1")
        return accept_all(event)

    result, _ = run(
        world,
        {A1: world.site(decide=decide)},
        recipients=("bob@example.org", "later@example.org"),
    )
    assert [r.status for r in result.recipients] == [FAILED, DEFERRED]


def test_rfc2920_all_rcpts_refused_sends_no_content(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, RcptTo):
            return Reply(550, "no", "5.1.1")
        return accept_all(event)

    site = world.site(decide=decide)
    result, _ = run(world, {A1: site})
    assert result.recipients[0].status is FAILED
    assert not site.content and not sent(site, MessageData)


# -- untagged and TLS-optional messages ----------------------------------------------------


def test_rfc7435_untagged_message_falls_back_to_plaintext_after_failed_handshake(
    world: World,
) -> None:
    site = world.site("broken")
    result, _ = run(world, {A1: site}, dnssec=False, requiretls=False, content=UNTAGGED)
    r = result.recipients[0]
    assert r.status is DELIVERED and r.security is Security.OPPORTUNISTIC
    assert r.tls_version is None and not r.requiretls
    assert site.connections == 2  # the failed handshake, then plaintext
    assert len(sent(site, StartTLS)) == 1
    assert bytes(site.content) == UNTAGGED


def test_untagged_message_without_starttls_goes_in_plaintext(world: World) -> None:
    site = world.site(config=ServerConfig(starttls=False))
    result, _ = run(world, {A1: site}, dnssec=False, requiretls=False, content=UNTAGGED)
    assert result.recipients[0].status is DELIVERED
    mail = sent(site, MailFrom)[0]
    assert isinstance(mail, MailFrom) and not mail.requiretls


def _no_tls_but_required(event: Event) -> Reply:
    if isinstance(event, StartTLS):
        return Reply(454, "TLS not available", "4.7.0")
    return accept_all(event)


def test_rfc8689_s4_2_2_530_fails_a_tls_optional_message(world: World) -> None:
    config = ServerConfig(starttls=True, require_starttls=True)
    site = world.site(config=config, decide=_no_tls_but_required)
    result, _ = run(world, {A1: site}, requiretls=False, content=OPTIONAL)
    r = result.recipients[0]
    assert r.status is FAILED and r.reason is Reason.STARTTLS_REQUIRED_BY_SERVER
    assert r.reply is not None and str(r.reply.enhanced) == "5.7.10"
    assert sent(site, Quit)
    assert not site.content
    assert result.bounce is not None
    assert b"TLS-Required: No" in result.bounce.message


def test_rfc3207_530_defers_an_untagged_message(world: World) -> None:
    config = ServerConfig(starttls=True, require_starttls=True)
    site = world.site(config=config, decide=_no_tls_but_required)
    result, _ = run(world, {A1: site}, dnssec=False, requiretls=False, content=UNTAGGED)
    r = result.recipients[0]
    assert r.status is DEFERRED and r.reason is Reason.STARTTLS_REQUIRED_BY_SERVER
    assert not site.content


def test_rfc8689_s5_a_requiretls_bounce_goes_where_requiretls_is_not_offered(
    world: World,
) -> None:
    # A report (null reverse path) of a REQUIRETLS message is never dropped for
    # lack of REQUIRETLS (RFC 8689 §5 ¶3): planned as an untagged message.
    site = world.site(config=ServerConfig(starttls=True, requiretls=False))
    result, _ = run(world, {A1: site}, mail_from="<>")
    r = result.recipients[0]
    assert r.status is DELIVERED and not r.requiretls and r.tls_version is not None


def test_rfc5321_s4_5_5_null_reverse_path_gets_no_report(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, RcptTo):
            return Reply(550, "no such user", "5.1.1")
        return accept_all(event)

    result, _ = run(world, {A1: world.site(decide=decide)}, mail_from="<>")
    assert result.recipients[0].status is FAILED
    assert result.bounce is None


# -- requests and validation ---------------------------------------------------------------


def test_reads_carry_rfc5321_timeouts(world: World) -> None:
    _, net = run(world, {A1: world.site()})
    timeouts = {r.timeout for r in net.log if isinstance(r, Read)}
    assert {300.0, 120.0, 600.0} <= timeouts  # greeting/MAIL/RCPT, DATA, end of data


def test_timeouts_can_be_overridden(world: World) -> None:
    _, net = run(world, {A1: world.site()}, timeouts={"GREETING": 7.0})
    assert next(r for r in net.log if isinstance(r, Read)).timeout == 7.0


def test_recipients_must_share_the_domain() -> None:
    with pytest.raises(ValueError, match=r"example\.org"):
        Delivery("a@b.example", ["x@example.org", "y@other.example"], b"", local_hostname="c")
    with pytest.raises(ValueError):
        Delivery("a@b.example", [], b"", local_hostname="c")
    d = Delivery("a@b.example", ["x@EXAMPLE.org"], b"", local_hostname="c")
    assert d.domain == "example.org" and d.tag is TLSTag.DEFAULT


def test_tag_from_the_header_and_the_parameter() -> None:
    d = Delivery("a@b.example", ["x@example.org"], OPTIONAL, local_hostname="c")
    assert d.tag is TLSTag.TLS_OPTIONAL
    # RFC 8689 §4.1: the MAIL parameter wins over the header field.
    d = Delivery(
        MailFrom("a@b.example", requiretls=True), ["x@example.org"], OPTIONAL, local_hostname="c"
    )
    assert d.tag is TLSTag.REQUIRETLS
    assert DOMAIN == "example.org"


def test_rfc5321_s3_8_421_during_the_transaction_defers(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, EndOfMessage):
            return Reply(421, "shutting down", "4.3.2")
        return accept_all(event)

    result, _ = run(world, {A1: world.site(decide=decide)})
    r = result.recipients[0]
    assert r.status is DEFERRED and r.reply is not None and r.reply.code == 421


def test_rfc5321_s3_2_helo_when_ehlo_is_not_recognised_and_tls_not_needed(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, Ehlo):
            return Reply(502, "command not implemented", "5.5.1")
        return accept_all(event)

    site = world.site(config=ServerConfig(starttls=False), decide=decide)
    result, _ = run(world, {A1: site}, dnssec=False, requiretls=False, content=UNTAGGED)
    assert result.recipients[0].status is DELIVERED
    assert sent(site, Helo)


def test_rfc8689_s4_2_1_step3_no_helo_fallback_for_requiretls(world: World) -> None:
    def decide(event: Event) -> Reply:
        if isinstance(event, Ehlo):
            return Reply(502, "command not implemented", "5.5.1")
        return accept_all(event)

    site = world.site(decide=decide)
    result, _ = run(world, {A1: site})
    assert result.recipients[0].status is DEFERRED  # EHLO refused: the host gave no session
    assert not sent(site, Helo)
    assert_nothing_sent(site)
