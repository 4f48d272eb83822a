"""A client and a server linked in memory, driven by hypothesis.

Any sequence of client operations either goes through, with both sides
agreeing on the state, or is refused on the sending side with
LocalProtocolError before a byte exists.  The bytes are split at random in
both directions and the server application decides at random.  Checked at
every step: no message content ever flows on a plaintext session for a
REQUIRETLS transaction, every command gets exactly one reply, the buffers
stay bounded, and the server never has to refuse what the client sent
(except what pipelining cannot know in advance).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from smtp_rtls import (
    Auth,
    AuthResponse,
    Bdat,
    CommandRejected,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    Reply,
    RequireTLSError,
    Rset,
    ServerConfig,
    StartTLS,
    Vrfy,
)
from smtp_rtls._sasl import CANCEL, auth_login, auth_plain, encode_response
from smtp_rtls.testing.pair import Pair

MAIN_JOB_TRANSCRIPT = """\
S: 220 mx.example ESMTP
C: EHLO client.example
S: 250-mx.example greets client.example
S: 250-PIPELINING
S: 250-SIZE 67108864
S: 250-8BITMIME
S: 250-SMTPUTF8
S: 250-CHUNKING
S: 250-DSN
S: 250-ENHANCEDSTATUSCODES
S: 250 STARTTLS
C: STARTTLS
S: 220 2.0.0 Ready to start TLS
C: EHLO client.example
S: 250-mx.example greets client.example
S: 250-PIPELINING
S: 250-SIZE 67108864
S: 250-8BITMIME
S: 250-SMTPUTF8
S: 250-CHUNKING
S: 250-DSN
S: 250-ENHANCEDSTATUSCODES
S: 250 REQUIRETLS
C: MAIL FROM:<alice@example.org> REQUIRETLS
C: RCPT TO:<bob@example.net>
C: DATA
S: 250 2.0.0 OK
S: 250 2.0.0 OK
S: 354 End data with <CR><LF>.<CR><LF>
C: Subject: hello
C:
C: ..a line that starts with a dot
C: .
S: 250 2.0.0 Queued
C: QUIT
S: 221 2.0.0 mx.example closing connection"""


def test_a_whole_requiretls_transaction_through_the_pair_rfc8689_4_2_1() -> None:
    """The main job: EHLO, STARTTLS, EHLO, MAIL ... REQUIRETLS, RCPT, DATA, QUIT."""
    pair = Pair()
    pair.greet()
    pair(Ehlo("client.example"))
    pair(StartTLS())
    assert pair.client.tls is not None and pair.server.tls is not None
    pair(Ehlo("client.example"))
    replies = pair(
        MailFrom("alice@example.org", requiretls=True), RcptTo("bob@example.net"), Data()
    )
    assert [(r.command, r.code) for r in replies] == [("MAIL", 250), ("RCPT", 250), ("DATA", 354)]
    pair(MessageData(b"Subject: hello\n\n.a line that starts with a dot\n"), EndOfMessage())
    [eom] = [e for e in pair.server_events if isinstance(e, EndOfMessage)]
    assert eom.envelope is not None and eom.envelope.requiretls
    pair(Quit())
    assert pair.transcript_text() == MAIN_JOB_TRANSCRIPT


@pytest.mark.parametrize(
    ("config", "code"),
    [
        # a server (or a man in the middle) that strips REQUIRETLS after TLS
        (ServerConfig(starttls=True, requiretls=False), "5.7.30"),
        # STARTTLS stripped: the session stays in plaintext
        (ServerConfig(starttls=False), "5.7.10"),
    ],
)
def test_the_downgrade_is_refused_before_any_byte_rfc8689_4_2_1(
    config: ServerConfig, code: str
) -> None:
    pair = Pair(config)
    pair.greet()
    pair(Ehlo("client.example"))
    if config.starttls:
        pair(StartTLS())
        pair(Ehlo("client.example"))
    with pytest.raises(RequireTLSError) as info:
        pair.send(MailFrom("alice@example.org", requiretls=True))
    assert info.value.reply is not None and str(info.value.reply.enhanced) == code
    # RFC 8689 §4.2.1 ¶3: the client issues QUIT; no MAIL ever went out
    pair(Quit())
    assert "MAIL" not in pair.transcript_text()
    assert pair.transcript_text().endswith("C: QUIT\nS: 221 2.0.0 mx.example closing connection")


def test_lmtp_pair_one_reply_per_recipient_rfc2033_4_2() -> None:
    pair = Pair(ServerConfig(lmtp=True))
    pair.greet()
    [lhlo] = pair(Ehlo("client.example"))
    assert lhlo.command == "LHLO"
    pair(MailFrom("a@example.org"), RcptTo("b@example.net"), RcptTo("c@example.net"), Data())
    replies = pair(MessageData(b"hi\r\n"), EndOfMessage())
    assert [r.command for r in replies] == ["EOM", "EOM"]


RECIPIENTS = ["bob@example.net", "carol@example.net", "dave@example.com"]
content = st.lists(
    st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"x", b"\xc3\xa9", b".\r\n", b"\r\n.\r\n"]),
    max_size=12,
).map(b"".join)


class LinkedPair(RuleBasedStateMachine):
    """The state machine over a linked client/server pair."""

    def __init__(self) -> None:
        super().__init__()
        self.data: Any = None
        self.pair: Pair | None = None
        self.seen_server_events = 0
        self.cancels = 0  # AUTH exchanges the client cancelled with "*"
        self.cancelled = 0  # and the server's 501 answers to them

    # -- random parts the pair asks for ---------------------------------------

    def split(self, data: bytes) -> list[bytes]:
        cuts = self.data.draw(st.lists(st.integers(0, len(data)), max_size=4), label="cuts")
        points = [0, *sorted(set(cuts)), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(points)]

    def decide(self, event: Event) -> Reply:
        yes = self.data.draw(st.integers(0, 9), label=f"decide {type(event).__name__}") < 8
        if isinstance(event, Ehlo | Helo):
            return Reply(250, "hello") if yes else Reply(550, "go away", "5.7.1")
        if isinstance(event, StartTLS):
            return Reply(220, "go ahead", "2.0.0") if yes else Reply(454, "no TLS", "4.7.0")
        if isinstance(event, Data):
            return Reply(354, "go ahead") if yes else Reply(554, "no", "5.3.0")
        if isinstance(event, Vrfy):
            return Reply(252, "cannot verify", "2.1.5")
        if isinstance(event, Auth | AuthResponse):
            if isinstance(event, Auth) and event.initial_response is None:
                return Reply(334, "VXNlcm5hbWU6")  # RFC 4954 §4: a challenge
            if self.data.draw(st.booleans(), label="another challenge"):
                return Reply(334, "UGFzc3dvcmQ6")
            return Reply(235, "ok", "2.7.0") if yes else Reply(535, "no", "5.7.8")
        if yes:
            return Reply(250, "OK", "2.0.0")
        return (
            Reply(550, "refused", "5.7.1")
            if self.data.draw(st.booleans())
            else Reply(451, "later", "4.3.0")
        )

    # -- set-up ------------------------------------------------------------------

    @initialize(
        data=st.data(),
        pipelining=st.booleans(),
        chunking=st.booleans(),
        requiretls=st.booleans(),
        starttls=st.booleans(),
        opening=st.sampled_from(["none", "ehlo", "tls", "tls"]),
        lmtp=st.booleans(),
    )
    def setup(
        self,
        data: Any,
        pipelining: bool,
        chunking: bool,
        requiretls: bool,
        starttls: bool,
        opening: str,
        lmtp: bool,
    ) -> None:
        self.data = data
        config = ServerConfig(
            starttls=starttls,
            pipelining=pipelining,
            chunking=chunking,
            requiretls=requiretls,
            lmtp=lmtp,
            auth_mechanisms=("PLAIN", "LOGIN"),  # offered after TLS only
        )
        self.pair = Pair(config, decide=self.decide, to_server=self.split, to_client=self.split)
        self.pair.greet()
        # Most sessions open the usual way, so the steps reach transactions.
        if opening != "none" and self.attempt(Ehlo("client.example")):
            self.exchange_all()
            if opening == "tls" and self.attempt(StartTLS()):
                self.exchange_all()
                if self.attempt(Ehlo("client.example")):
                    self.exchange_all()

    @property
    def p(self) -> Pair:
        assert self.pair is not None
        return self.pair

    def attempt(self, *events: Event) -> bool:
        """Send ``events`` one by one until one is refused; True if all went."""
        client = self.p.client
        for event in events:
            before = (client.pending, client.capabilities, client.transaction, client.tls)
            wire = self.p._c2s
            try:
                self.p.send(event)
            except RequireTLSError as exc:
                assert isinstance(event, MailFrom) and event.requiretls
                assert exc.reply is not None
                # RFC 8689 §4.2.1: 5.7.10 without TLS, 5.7.30 when TLS is up
                # but its EHLO did not offer REQUIRETLS
                expected = "5.7.10" if client.tls is None else "5.7.30"
                assert str(exc.reply.enhanced) == expected
                refused = True
            except LocalProtocolError:
                refused = True
            else:
                refused = False
                if isinstance(event, MailFrom) and event.requiretls:
                    caps = client.capabilities
                    assert client.tls is not None
                    assert caps is not None and "REQUIRETLS" in caps
            if refused:
                # no bytes, and nothing moved
                assert self.p._c2s == wire
                assert (client.pending, client.capabilities, client.transaction, client.tls) == (
                    before
                )
                return False
        return True

    def maybe_exchange(self) -> None:
        if self.data.draw(st.booleans(), label="exchange now"):
            self.exchange_all()

    def exchange_all(self) -> None:
        self.p.exchange()
        self.check_settled()

    # -- client operations -------------------------------------------------------

    @rule(data=st.data())
    def ehlo(self, data: Any) -> None:
        self.data = data
        self.attempt(Ehlo("client.example"))
        self.maybe_exchange()

    @rule(data=st.data())
    def helo(self, data: Any) -> None:
        self.data = data
        self.attempt(Helo("client.example"))
        self.maybe_exchange()

    @rule(data=st.data())
    def starttls(self, data: Any) -> None:
        self.data = data
        if self.attempt(StartTLS()):
            self.exchange_all()

    @rule(data=st.data(), requiretls=st.booleans(), size=st.none() | st.integers(0, 10**9))
    def mail(self, data: Any, requiretls: bool, size: int | None) -> None:
        self.data = data
        self.attempt(MailFrom("alice@example.org", requiretls=requiretls, size=size))
        self.maybe_exchange()

    @rule(data=st.data(), who=st.sampled_from(RECIPIENTS))
    def rcpt(self, data: Any, who: str) -> None:
        self.data = data
        self.attempt(RcptTo(who))
        self.maybe_exchange()

    @rule(data=st.data())
    def data_command(self, data: Any) -> None:
        self.data = data
        self.attempt(Data())
        self.maybe_exchange()

    @rule(data=st.data(), body=content)
    def message_data(self, data: Any, body: bytes) -> None:
        self.data = data
        self.attempt(MessageData(body))

    @rule(data=st.data())
    def end_of_message(self, data: Any) -> None:
        self.data = data
        self.attempt(EndOfMessage())
        self.maybe_exchange()

    @rule(data=st.data(), chunk=st.binary(max_size=20), last=st.booleans())
    def bdat(self, data: Any, chunk: bytes, last: bool) -> None:
        self.data = data
        if self.attempt(Bdat(len(chunk), last=last)) and chunk:
            assert self.attempt(MessageData(chunk))
        self.maybe_exchange()

    @rule(data=st.data(), verb=st.sampled_from([Rset(), Noop(), Vrfy("postmaster"), Quit()]))
    def other(self, data: Any, verb: Event) -> None:
        self.data = data
        self.attempt(verb)
        self.maybe_exchange()

    @rule(data=st.data(), plain=st.booleans())
    def auth(self, data: Any, plain: bool) -> None:
        self.data = data
        self.attempt(auth_plain("alice", "s3cret") if plain else auth_login())
        self.maybe_exchange()

    @rule(data=st.data(), cancel=st.booleans())
    def auth_response(self, data: Any, cancel: bool) -> None:
        self.data = data
        if self.attempt(CANCEL if cancel else encode_response(b"alice")) and cancel:
            self.cancels += 1
        self.maybe_exchange()

    @rule(data=st.data())
    def exchange(self, data: Any) -> None:
        self.data = data
        self.exchange_all()

    @rule(
        data=st.data(),
        requiretls=st.booleans(),
        bdat=st.booleans(),
        body=content,
        rcpts=st.integers(1, 3),
    )
    def transaction(
        self, data: Any, requiretls: bool, bdat: bool, body: bytes, rcpts: int
    ) -> None:
        """A whole transaction, as a delivery driver would run it."""
        self.data = data
        mail = MailFrom("alice@example.org", requiretls=requiretls)
        if not self.attempt(mail, *(RcptTo(r) for r in RECIPIENTS[:rcpts])):
            return
        if bdat:
            if self.attempt(Bdat(len(body), last=True)) and body:
                self.attempt(MessageData(body))
            self.exchange_all()
            return
        if not self.attempt(Data()):
            return
        self.exchange_all()
        # refused when DATA was (no 354), or when no recipient was accepted
        # (then the end is a lone dot, RFC 2920 §3.1)
        if body:
            self.attempt(MessageData(body))
        self.attempt(EndOfMessage())
        self.exchange_all()

    # -- invariants ----------------------------------------------------------------

    def check_settled(self) -> None:
        """After an exchange both sides are quiet: every command was answered
        once, and they agree on TLS and on the transaction."""
        client, server = self.p.client, self.p.server
        assert client.pending == (), client.pending
        assert not self.p._replies, self.p._replies
        assert (client.tls is None) == (server.tls is None)
        # the greeting in force: none, HELO (no extensions) or EHLO
        assert (client.capabilities is None) == (server.client_name is None)
        assert client.pipelining == (server.extended and server.config.pipelining)
        txn = client.transaction
        envelope = server.envelope
        if txn is None:
            assert envelope is None
        elif not txn.bdat_failed:
            # a failed BDAT leaves the state "indeterminate" (RFC 3030 §2):
            # the client waits for RSET, the server already forgot
            assert envelope is not None
            assert envelope.mail_from == txn.mail
            assert envelope.recipients == txn.accepted

    @invariant()
    def requiretls_content_only_on_tls(self) -> None:
        """RFC 8689 §2: no byte of a REQUIRETLS message on a plaintext session."""
        if self.pair is None:
            return
        events = self.p.server_events[self.seen_server_events :]
        self.seen_server_events = len(self.p.server_events)
        pipelining = self.p.server.config.pipelining
        for event in events:
            if isinstance(event, MailFrom) and event.requiretls:
                assert self.p.server.tls is not None
            if isinstance(event, EndOfMessage) and event.envelope is not None:
                tagged = "REQUIRETLS" if event.envelope.requiretls else "plain"
                hypothesis.event(f"{tagged} message ended on the server")
            if isinstance(event, CommandRejected) and event.command == "AUTH":
                # RFC 4954 §4: the server answers a "*" with 501, by itself
                assert event.reply.code == 501, event
                self.cancelled += 1
                assert self.cancelled <= self.cancels
                continue
            if isinstance(event, CommandRejected):
                # the client only sends what it may; pipelining alone can
                # outrun a refusal (RCPT after a refused MAIL, DATA after
                # refused RCPTs, BDAT after a failed chunk)
                assert pipelining, event
                assert event.command in ("RCPT", "DATA", "BDAT"), event
                assert event.reply.code in (503, 554), event
                hypothesis.event(f"pipelined {event.command} refused by the server")

    @invariant()
    def buffers_bounded(self) -> None:
        if self.pair is None:
            return
        assert len(self.p.client._receive_buffer) <= 512
        assert len(self.p.server._receive_buffer) <= self.p.server.config.max_backlog


# PAIR_EXAMPLES / PAIR_STEPS make longer campaigns (e.g. 5000 / 80) without
# slowing the default run.
LinkedPair.TestCase.settings = settings(
    max_examples=int(os.environ.get("PAIR_EXAMPLES", "150")),
    stateful_step_count=int(os.environ.get("PAIR_STEPS", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLinkedPair = LinkedPair.TestCase
