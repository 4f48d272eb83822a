"""ServerConnection, rule by rule.  Each test names the RFC section it keeps."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    Auth,
    AuthResponse,
    Bdat,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Expn,
    Helo,
    Help,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    Rset,
    ServerConfig,
    ServerConnection,
    StartTLS,
    State,
    TLSInfo,
    Vrfy,
)
from smtp_rtls._framing import LineBuffer
from smtp_rtls._readers import BARE_LINE_END, CONTROL_CHARACTER, read_command_line

TLS = TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128)
Decide = Callable[[Event], Reply]


def accept_all(event: Event) -> Reply:
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "hello")
    if isinstance(event, Data):
        return Reply(354, "go ahead")
    if isinstance(event, StartTLS):
        return Reply(220, "Ready to start TLS", "2.0.0")
    if isinstance(event, Auth | AuthResponse):
        return Reply(235, "Authenticated", "2.7.0")
    return Reply(250, "OK", "2.0.0")


class Session:
    """A ServerConnection with an application that answers by a rule."""

    def __init__(self, config: ServerConfig | None = None, decide: Decide = accept_all) -> None:
        self.conn = ServerConnection("mx.example.net", config or ServerConfig(starttls=True))
        self.decide = decide
        self.greeting = self.conn.send(Reply(220, "mx.example.net ESMTP"))
        self.out = b""
        self.events: list[Event] = []

    def feed(self, data: bytes) -> list[Event]:
        """Give ``data``; run to NEED_DATA; return the new events."""
        self.conn.receive_data(data)
        new: list[Event] = []
        for _ in range(100_000):
            event = self.conn.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:
                pending = self.conn.pending
                assert pending is not None
                self.out += self.conn.send(self.decide(pending))
                continue
            assert isinstance(event, Event)
            new.append(event)
            if isinstance(event, ConnectionClosed):
                break
        self.out += self.conn.data_to_send()
        self.events += new
        return new

    def replies(self) -> list[Reply]:
        """Parse and clear the output so far."""
        lines = self.out.split(b"\r\n")[:-1]
        self.out = b""
        replies, group = [], []
        for line in lines:
            group.append(line)
            if line[3:4] != b"-":
                replies.append(Reply.from_lines(group))
                group = []
        return replies

    def codes(self) -> list[int]:
        return [r.code for r in self.replies()]

    def tls(self, *, ehlo: bool = True) -> None:
        self.feed(b"EHLO c.example\r\nSTARTTLS\r\n")
        self.conn.start_tls(TLS)
        if ehlo:
            self.feed(b"EHLO c.example\r\n")
        self.replies()


def merged(events: list[Event]) -> list[Event]:
    """Events with consecutive MessageData joined (their split follows the reads)."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, MessageData) and out and isinstance(out[-1], MessageData):
            out[-1] = MessageData(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def rejected(events: list[Event]) -> list[CommandRejected]:
    return [e for e in events if isinstance(e, CommandRejected)]


# -- greeting and EHLO ---------------------------------------------------------


def test_greeting_is_the_applications_and_must_be_220_or_554() -> None:
    conn = ServerConnection("mx.example.net")
    assert conn.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        conn.send(Reply(250, "not a greeting"))
    assert conn.send(Reply(220, "hi")) == b"220 hi\r\n"


def test_554_greeting_then_only_quit_rfc5321_3_1() -> None:
    conn = ServerConnection("mx.example.net")
    conn.send(Reply(554, "no service"))
    conn.receive_data(b"EHLO c.example\r\nQUIT\r\n")
    first = conn.next_event()
    assert isinstance(first, CommandRejected) and first.reply.code == 503
    assert isinstance(conn.next_event(), Quit)
    assert conn.data_to_send().startswith(b"503 5.5.1")


def test_ehlo_reply_lists_configured_extensions_before_tls_rfc3207_4_2() -> None:
    s = Session(ServerConfig(starttls=True, auth_mechanisms=("PLAIN",)))
    s.feed(b"EHLO c.example\r\n")
    (reply,) = s.replies()
    lines = reply.lines
    assert lines[0] == "mx.example.net hello"
    keywords = {ln.split()[0] for ln in lines[1:]}
    assert {"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "CHUNKING", "DSN"} <= keywords
    assert "STARTTLS" in keywords
    # RFC 8689 §2: REQUIRETLS only on a TLS session; AUTH waits for TLS here
    assert "REQUIRETLS" not in keywords and "AUTH" not in keywords


def test_after_tls_ehlo_offers_requiretls_and_not_starttls_rfc8689_2_rfc3207_4_2() -> None:
    s = Session(ServerConfig(starttls=True, auth_mechanisms=("PLAIN",)))
    s.feed(b"EHLO c.example\r\nSTARTTLS\r\n")
    s.conn.start_tls(TLS)
    s.replies()
    s.feed(b"EHLO c.example\r\n")
    (reply,) = s.replies()
    keywords = {ln.split()[0] for ln in reply.lines[1:]}
    assert "REQUIRETLS" in keywords and "AUTH" in keywords
    assert "STARTTLS" not in keywords


def test_smtputf8_offered_only_with_8bitmime_rfc6531_3_1() -> None:
    s = Session(ServerConfig(eightbitmime=False))
    s.feed(b"EHLO c.example\r\n")
    (reply,) = s.replies()
    assert not any(ln.startswith(("SMTPUTF8", "8BITMIME")) for ln in reply.lines)


def test_helo_has_no_extensions_and_refuses_parameters_rfc5321_4_1_1_1() -> None:
    s = Session()
    s.feed(b"HELO c.example\r\nMAIL FROM:<a@b.example> SIZE=10\r\n")
    replies = s.replies()
    assert replies[0].lines == ("mx.example.net hello",)
    assert replies[1].code == 555


def test_mail_before_ehlo_is_503_rfc5321_4_1_4() -> None:
    s = Session()
    events = s.feed(b"MAIL FROM:<a@b.example>\r\n")
    assert rejected(events)[0].reply.code == 503
    assert not any(isinstance(e, MailFrom) for e in events)


def test_second_ehlo_resets_transaction_rfc5321_4_1_4() -> None:
    s = Session()
    s.feed(
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nEHLO c.example\r\nRCPT TO:<x@y.example>\r\n"
    )
    assert s.codes() == [250, 250, 250, 503]


def test_rejected_ehlo_changes_nothing() -> None:
    def refuse_second_ehlo(event: Event) -> Reply:
        if isinstance(event, Ehlo) and event.domain == "bad.example":
            return Reply(550, "go away", "5.7.1")
        return accept_all(event)

    s = Session(decide=refuse_second_ehlo)
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nEHLO bad.example\r\n")
    s.feed(b"RCPT TO:<x@y.example>\r\n")
    assert s.codes() == [250, 250, 550, 250]


# -- syntax and unknown commands --------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"FOO bar", 500),  # RFC 5321 §4.2.4: unrecognised
        (b"TURN", 502),  # RFC 5321 §4.2.4: not implemented
        (b"MAIL FROM:bad", 501),  # §4.1.4: syntax error, no state change
        (b"MAIL FROM:<a@b.example> SIZE=x", 501),
        (b"MAIL FROM:<a@b.example> FOO=1", 555),  # §4.1.1.11: unknown parameter
        (b"MAIL FROM:<a@b.example> BODY=BINARYMIME", 555),  # not offered by default
        (b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", 501),  # duplicate keyword
        (b"STARTTLS now", 501),  # RFC 3207 §4: no parameters
    ],
)
def test_syntax_and_parameter_errors(line: bytes, code: int) -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\n")
    s.replies()
    events = s.feed(line + b"\r\n" + b"MAIL FROM:<ok@b.example>\r\n")
    assert s.codes() == [code, 250]
    assert isinstance(events[-1], MailFrom)  # no state change after the error


def test_unimplemented_auth_mechanism_is_504_rfc4954_4() -> None:
    s = Session(ServerConfig(auth_mechanisms=("PLAIN",), auth_requires_tls=False))
    s.feed(b"EHLO c.example\r\nAUTH CRAM-MD5\r\n")
    assert s.codes() == [250, 504]


def test_auth_needs_tls_when_configured_rfc4954_6() -> None:
    s = Session(ServerConfig(starttls=True, auth_mechanisms=("PLAIN",)))
    s.feed(b"EHLO c.example\r\nAUTH PLAIN AGFAYgBj\r\n")
    assert s.codes() == [250, 538]


def test_auth_exchange_and_cancel_rfc4954_4() -> None:
    def challenge(event: Event) -> Reply:
        if isinstance(event, Auth):
            return Reply(334, "")
        return accept_all(event)

    s = Session(ServerConfig(auth_mechanisms=("LOGIN",), auth_requires_tls=False), challenge)
    events = s.feed(b"EHLO c.example\r\nAUTH LOGIN\r\n*\r\n")
    # RFC 4954 §4: "*" cancels and the server MUST reply 501
    assert s.codes() == [250, 334, 501]
    assert rejected(events)[0].command == "AUTH"
    events = s.feed(b"AUTH LOGIN\r\ndXNlcg==\r\nAUTH LOGIN\r\n")
    assert AuthResponse("dXNlcg==") in events
    # authenticated by the 235; a second AUTH is refused (RFC 4954 §4)
    assert s.codes() == [334, 235, 503]


# -- limits -------------------------------------------------------------------------------


def test_line_too_long_is_500_and_stays_in_step_rfc5321_4_5_3_1_4() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\n")
    s.replies()
    events = s.feed(b"NOOP " + b"x" * 3000 + b"\r\nNOOP\r\n")
    assert s.codes() == [500, 250]
    assert isinstance(events[-1], Noop)


def _mail_line(total: int, requiretls: bool = True) -> bytes:
    head = b"MAIL FROM:<a@b.example>" + (b" REQUIRETLS" if requiretls else b"") + b" XPAD="
    return head + b"p" * (total - len(head) - 2) + b"\r\n"


def test_mail_line_grows_by_offered_extension_allowances_rfc8689_2_item5() -> None:
    # 512 + REQUIRETLS 11 + SIZE 26 + SMTPUTF8 10 = 559 octets with CRLF (DSN off)
    s = Session(ServerConfig(starttls=True, dsn=False, extra_mail_parameters={"XPAD"}))
    s.tls()
    s.feed(_mail_line(559) + b"RSET\r\n" + _mail_line(560) + b"NOOP " + b"y" * 520 + b"\r\n")
    # the longest MAIL passes; one octet more is too long; other commands keep 512
    assert s.codes() == [250, 250, 500, 500]


def test_mail_line_limit_without_tls_has_no_requiretls_allowance() -> None:
    s = Session(ServerConfig(starttls=True, dsn=False, extra_mail_parameters={"XPAD"}))
    s.feed(b"EHLO c.example\r\n")
    s.replies()
    s.feed(_mail_line(548, False) + b"RSET\r\n" + _mail_line(549, False))
    assert s.codes() == [250, 250, 500]


def test_dsn_raises_command_lines_to_1036_rfc3461_5_4() -> None:
    s = Session(ServerConfig(extra_mail_parameters={"XPAD"}, extra_rcpt_parameters={"XPAD"}))
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n")
    s.replies()
    head = b"RCPT TO:<x@y.example> XPAD="
    s.feed(head + b"q" * (1036 - len(head) - 2) + b"\r\n")
    assert s.codes() == [250]


def test_recipient_limit_is_452_and_never_below_100_rfc5321_4_5_3_1_8() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConfig(max_recipients=99)
    s = Session(ServerConfig(max_recipients=100))
    rcpts = b"".join(b"RCPT TO:<r%d@y.example>\r\n" % i for i in range(101))
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n" + rcpts)
    replies = s.replies()
    assert [r.code for r in replies[2:]] == [250] * 100 + [452]
    assert str(replies[-1].enhanced) == "4.5.3"


def test_declared_size_over_limit_is_552_rfc1870_6_1() -> None:
    s = Session(ServerConfig(max_message_size=1000))
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=1001\r\nRCPT TO:<x@y.example>\r\n")
    replies = s.replies()
    assert [r.code for r in replies] == [250, 552, 503]
    assert str(replies[1].enhanced) == "5.3.4"


def test_message_over_size_answered_after_real_end_of_data_rfc1870_6_2() -> None:
    s = Session(ServerConfig(max_message_size=1000))
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
    s.replies()
    events = s.feed((b"z" * 70 + b"\r\n") * 40)
    assert not s.out  # nothing answered before the end of data
    events += s.feed(b".\r\nNOOP\r\n")
    replies = s.replies()
    assert [r.code for r in replies] == [552, 250]
    assert str(replies[0].enhanced) == "5.3.4"
    assert not any(isinstance(e, EndOfMessage) for e in events)
    assert isinstance(events[-1], Noop)  # still in step with the client


def test_backlog_bound_raises_remote_protocol_error() -> None:
    s = Session(ServerConfig(max_backlog=4096))
    s.conn.receive_data(b"NOOP\r\n" * 600)  # 3600 octets: fine
    with pytest.raises(RemoteProtocolError) as info:
        s.conn.receive_data(b"NOOP\r\n" * 200)
        s.conn.next_event()
    assert len(s.conn._receive_buffer) <= 4096
    # the error suggests the reply to send before closing
    assert info.value.reply is not None and info.value.reply.code == 421


# -- transactions, DATA -------------------------------------------------------------------


def test_full_transaction_events_and_envelope_rfc8689_4_1() -> None:
    s = Session()
    s.tls()
    events = s.feed(
        b"MAIL FROM:<a@b.example> REQUIRETLS\r\nRCPT TO:<x@y.example>\r\nDATA\r\n"
        b"Subject: t\r\n\r\n..hidden dot\r\n.\r\n"
    )
    kinds = [type(e) for e in events]
    assert kinds == [MailFrom, RcptTo, Data, MessageData, EndOfMessage]
    eom = events[-1]
    assert isinstance(eom, EndOfMessage) and eom.envelope is not None
    assert eom.envelope.requiretls is True  # RFC 8689 §4.1 ¶1: tagged
    assert events[3] == MessageData(b"Subject: t\r\n\r\n.hidden dot\r\n")
    assert s.codes() == [250, 250, 354, 250]


def test_untagged_message_has_requiretls_false() -> None:
    s = Session()
    s.tls()
    events = s.feed(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\nhi\r\n.\r\n")
    eom = events[-1]
    assert isinstance(eom, EndOfMessage) and eom.envelope is not None
    assert eom.envelope.requiretls is False


def test_data_without_accepted_recipient_is_refused_rfc2920_3_2() -> None:
    def refuse_rcpt(event: Event) -> Reply:
        return Reply(550, "no", "5.1.1") if isinstance(event, RcptTo) else accept_all(event)

    s = Session(decide=refuse_rcpt)
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
    assert s.codes() == [250, 250, 550, 554]


def test_rset_discards_the_transaction_rfc5321_4_1_1_5() -> None:
    s = Session()
    events = s.feed(
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nRCPT TO:<x@y.example>\r\n"
    )
    assert Rset() in events
    assert s.codes() == [250, 250, 250, 503]


def test_nested_mail_is_503_rfc5321_4_1_4() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<c@d.example>\r\n")
    assert s.codes() == [250, 250, 503]


def test_vrfy_is_the_applications_decision() -> None:
    s = Session(decide=lambda e: Reply(252, "Cannot VRFY", "2.5.0"))
    events = s.feed(b"VRFY bob\r\n")
    assert events == [Vrfy("bob")]
    assert s.codes() == [252]


def test_smtputf8_address_needs_the_parameter_rfc6531_3_5() -> None:
    s = Session()
    s.feed("EHLO c.example\r\nMAIL FROM:<ü@b.example>\r\n".encode())
    s.feed("MAIL FROM:<ü@b.example> SMTPUTF8\r\nRCPT TO:<ö@y.example>\r\n".encode())
    assert s.codes() == [250, 550, 250, 250]


# -- pipelining -----------------------------------------------------------------------------


def test_pipelined_replies_in_order_however_split_rfc2920_3_2() -> None:
    stream = (
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n"
        b"FOO\r\nRCPT TO:<z@y.example>\r\nDATA\r\nbody\r\n.\r\nRSET\r\nQUIT\r\n"
    )
    whole = Session()
    whole.feed(stream)
    expected = whole.out
    for step in (1, 2, 3, 7, 64):
        s = Session()
        for i in range(0, len(stream), step):
            s.feed(stream[i : i + step])
        assert s.out == expected
        assert merged(s.events) == merged(whole.events)


# -- STARTTLS (RFC 3207) ----------------------------------------------------------------


def test_starttls_injection_is_refused_rfc3207_4() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\n")
    with pytest.raises(RemoteProtocolError):
        s.feed(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
    assert not any(isinstance(e, MailFrom) for e in s.events)


def test_bytes_after_220_before_handshake_are_refused_rfc3207_4() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\nSTARTTLS\r\n")
    s.conn.receive_data(b"RCPT TO:<x@y.example>\r\n")
    with pytest.raises(RemoteProtocolError):
        s.conn.next_event()


def test_tls_forgets_everything_and_needs_new_ehlo_rfc3207_4_2() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\nSTARTTLS\r\n")
    s.conn.start_tls(TLS)
    assert s.conn.client_name is None and s.conn.tls is TLS
    s.replies()
    s.feed(b"MAIL FROM:<a@b.example>\r\nEHLO c.example\r\nSTARTTLS\r\n")
    replies = s.replies()
    assert [r.code for r in replies] == [503, 250, 503]  # second STARTTLS refused


def test_starttls_not_offered_is_502() -> None:
    s = Session(ServerConfig(starttls=False))
    s.feed(b"EHLO c.example\r\nSTARTTLS\r\n")
    assert s.codes() == [250, 502]


def test_require_starttls_gives_530_rfc3207_4() -> None:
    s = Session(ServerConfig(starttls=True, require_starttls=True))
    s.feed(b"EHLO c.example\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nVRFY x\r\n")
    replies = s.replies()
    assert [r.code for r in replies] == [250, 250, 530, 530]
    assert str(replies[2].enhanced) == "5.7.0"
    s.feed(b"STARTTLS\r\n")
    s.conn.start_tls(TLS)
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n")
    assert s.codes()[-1] == 250


def test_unacceptable_tls_gives_554_to_all_but_quit_rfc3207_4_1() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\nSTARTTLS\r\n")
    s.conn.start_tls(TLS, acceptable=False)
    s.replies()
    events = s.feed(b"EHLO c.example\r\nNOOP\r\nQUIT\r\n")
    assert s.codes() == [554, 554, 221]
    assert isinstance(events[-1], ConnectionClosed) or Quit() in events


def test_start_tls_only_after_220() -> None:
    s = Session()
    with pytest.raises(LocalProtocolError):
        s.conn.start_tls(TLS)
    s.feed(b"EHLO c.example\r\n")
    refuse = Session(decide=lambda e: Reply(454, "TLS not available", "4.7.0"))
    refuse.feed(b"EHLO c.example\r\nSTARTTLS\r\nNOOP\r\n")
    assert refuse.codes() == [454, 454, 250]
    with pytest.raises(LocalProtocolError):
        refuse.conn.start_tls(TLS)


# -- REQUIRETLS (RFC 8689) ----------------------------------------------------------------


def test_requiretls_on_plaintext_is_555_and_opens_no_transaction_rfc8689_2() -> None:
    s = Session()
    events = s.feed(
        b"EHLO c.example\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\nRCPT TO:<x@y.example>\r\n"
    )
    replies = s.replies()
    assert [r.code for r in replies] == [250, 555, 503]
    assert str(replies[1].enhanced) == "5.5.4"
    assert not any(isinstance(e, MailFrom) for e in events)


@pytest.mark.parametrize("keyword", [b"REQUIRETLS", b"requiretls", b"RequireTls"])
def test_requiretls_keyword_case_insensitive_on_tls_rfc5321_2_4(keyword: bytes) -> None:
    s = Session()
    s.tls()
    events = s.feed(b"MAIL FROM:<a@b.example> " + keyword + b"\r\n")
    assert isinstance(events[0], MailFrom) and events[0].requiretls
    assert s.codes() == [250]


def test_requiretls_with_value_is_refused_rfc8689_2_item4() -> None:
    s = Session()
    s.tls()
    events = s.feed(b"MAIL FROM:<a@b.example> REQUIRETLS=YES\r\nRCPT TO:<x@y.example>\r\n")
    assert s.codes() == [501, 503]
    assert not any(isinstance(e, MailFrom) for e in events)


def test_requiretls_after_helo_on_tls_is_555() -> None:
    # HELO opens no service extensions, so REQUIRETLS is not in force
    s = Session()
    s.tls(ehlo=False)
    s.feed(b"HELO c.example\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\n")
    assert s.codes() == [250, 555]


def test_requiretls_disabled_in_config_is_never_offered() -> None:
    s = Session(ServerConfig(starttls=True, requiretls=False))
    s.tls()
    s.feed(b"MAIL FROM:<a@b.example> REQUIRETLS\r\n")
    assert s.codes() == [555]


def test_requiretls_tag_on_bdat_last_rfc8689_4_1_rfc3030_2() -> None:
    s = Session()
    s.tls()
    events = s.feed(
        b"MAIL FROM:<a@b.example> REQUIRETLS\r\nRCPT TO:<x@y.example>\r\n"
        b"BDAT 6\r\nhello\nBDAT 3 LAST\r\nabc"
    )
    kinds = [type(e) for e in events]
    assert kinds == [MailFrom, RcptTo, Bdat, MessageData, Bdat, MessageData, EndOfMessage]
    eom = events[-1]
    assert isinstance(eom, EndOfMessage) and eom.envelope is not None
    assert eom.envelope.requiretls
    assert b"".join(e.data for e in events if isinstance(e, MessageData)) == b"hello\nabc"
    assert s.codes() == [250, 250, 250, 250]


# -- BDAT / CHUNKING (RFC 3030) -------------------------------------------------------------


def test_bdat_without_transaction_is_read_and_discarded_rfc3030_2() -> None:
    s = Session()
    events = s.feed(b"EHLO c.example\r\nBDAT 10\r\nNOOP\r\nxxxxNOOP\r\n")
    assert s.codes() == [250, 503, 250]
    assert events[-1] == Noop()
    assert not any(isinstance(e, MessageData) for e in events)


def test_bdat_after_last_is_503_rfc3030_2() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n")
    s.feed(b"BDAT 1 LAST\r\nzBDAT 1\r\nq")
    assert s.codes() == [250, 250, 250, 250, 503]


def test_data_after_bdat_is_503_rfc3030_2() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n")
    s.feed(b"BDAT 2\r\nabDATA\r\nRSET\r\nNOOP\r\n")
    assert s.codes() == [250, 250, 250, 250, 503, 250, 250]


def test_failed_chunk_fails_transaction_and_following_chunks_are_discarded_rfc3030_2() -> None:
    def refuse_chunk(event: Event) -> Reply:
        if isinstance(event, Bdat):
            return Reply(452, "no room", "4.3.1")
        return accept_all(event)

    s = Session(decide=refuse_chunk)
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n")
    events = s.feed(b"BDAT 3\r\nabcBDAT 3 LAST\r\ndefNOOP\r\n")
    assert s.codes() == [250, 250, 250, 452, 503, 250]
    assert not any(isinstance(e, EndOfMessage) for e in events)


def test_rset_between_chunks_discards_them_rfc3030_2() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n")
    s.feed(b"BDAT 3\r\nabcRSET\r\nBDAT 1 LAST\r\nx")
    assert s.codes() == [250, 250, 250, 250, 250, 503]
    assert s.conn.envelope is None


def test_bdat_zero_last_ends_message() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n")
    events = s.feed(b"BDAT 4\r\nabcdBDAT 0 LAST\r\n")
    assert isinstance(events[-1], EndOfMessage)
    assert s.codes() == [250, 250, 250, 250, 250]


def test_binarymime_data_is_503_and_resets_rfc3030_3() -> None:
    s = Session(ServerConfig(binarymime=True))
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\n")
    s.feed(b"RCPT TO:<x@y.example>\r\nDATA\r\nRCPT TO:<x@y.example>\r\n")
    assert s.codes() == [250, 250, 250, 503, 503]


def test_bdat_without_chunking_is_read_then_refused() -> None:
    s = Session(ServerConfig(chunking=False))
    events = s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\n")
    events += s.feed(b"BDAT 9\r\nQUIT\r\nXXXNOOP\r\n")
    assert s.codes() == [250, 250, 250, 502, 250]
    assert Quit() not in events  # the chunk's octets are never commands


# -- bare CR / LF -----------------------------------------------------------------------------


def test_bare_lf_in_data_refused_at_real_end_rfc5321_4_1_1_4() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n")
    s.replies()
    events = s.feed(b"line one\nline two\r\n.\r\nNOOP\r\n")
    replies = s.replies()
    assert [r.code for r in replies] == [500, 250]
    assert str(replies[0].enhanced) == "5.5.2"
    assert not any(isinstance(e, EndOfMessage) for e in events)


def test_bare_lf_normalised_when_configured() -> None:
    s = Session(ServerConfig(bare_line_endings="normalise"))
    s.feed(b"EHLO c.example\nMAIL FROM:<a@b.example>\nRCPT TO:<x@y.example>\nDATA\n")
    events = s.feed(b"one\ntwo\r\n\n.\n\r\n.\r\n")
    data = b"".join(e.data for e in events if isinstance(e, MessageData))
    # LF "." LF did not end the message (RFC 5321 §4.1.1.4): it became content,
    # with CRLF line ends; the dot after a bare LF was no line start, so it stays
    assert data == b"one\r\ntwo\r\n\r\n.\r\n\r\n"
    assert isinstance(events[-1], EndOfMessage)


def test_bare_lf_in_command_is_refused_by_default() -> None:
    s = Session()
    events = s.feed(b"EHLO c.example\nMAIL FROM:<a@b.example>\r\n")
    assert s.codes() == [500]
    assert not any(isinstance(e, Ehlo | MailFrom) for e in events)


# -- LMTP (RFC 2033) -----------------------------------------------------------------------------


def test_lmtp_one_reply_per_recipient_rfc2033_4_2() -> None:
    s = Session(ServerConfig(lmtp=True, starttls=True))
    s.feed(b"LHLO c.example\r\nMAIL FROM:<a@b.example>\r\n")
    s.feed(b"RCPT TO:<x@y.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\nhi\r\n.\r\n")
    assert s.codes() == [250, 250, 250, 250, 354, 250, 250]


def test_lmtp_refuses_ehlo_and_smtp_refuses_lhlo_rfc2033_4_1() -> None:
    lmtp = Session(ServerConfig(lmtp=True))
    lmtp.feed(b"EHLO c.example\r\nHELO c.example\r\n")
    assert lmtp.codes() == [500, 500]
    smtp = Session()
    smtp.feed(b"LHLO c.example\r\n")
    assert smtp.codes() == [500]


def test_lmtp_requiretls_after_tls_rfc8689_2_item7() -> None:
    s = Session(ServerConfig(lmtp=True, starttls=True))
    s.feed(b"LHLO c.example\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\nSTARTTLS\r\n")
    assert s.codes() == [250, 555, 220]
    s.conn.start_tls(TLS)
    events = s.feed(b"LHLO c.example\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\n")
    replies = s.replies()
    assert "REQUIRETLS" in replies[0].lines
    assert isinstance(events[-1], MailFrom) and events[-1].requiretls


# -- the reply contract ----------------------------------------------------------------------


def test_reply_that_does_not_fit_the_command_is_local_error() -> None:
    s = Session(decide=lambda e: Reply(250, "OK"))
    s.conn.receive_data(
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n"
    )
    for _ in range(3):
        assert s.conn.next_event() is not PAUSED
        assert s.conn.next_event() is PAUSED
        s.conn.send(Reply(250, "ok"))
    assert isinstance(s.conn.next_event(), Data)
    with pytest.raises(LocalProtocolError):
        s.conn.send(Reply(250, "DATA needs 354"))


def test_send_without_pending_decision_is_local_error() -> None:
    s = Session()
    with pytest.raises(LocalProtocolError):
        s.conn.send(Reply(250, "unasked"))


def test_quit_then_closed_and_peer_close_mid_data_is_remote_error() -> None:
    s = Session()
    events = s.feed(b"QUIT\r\n")
    assert events[0] == Quit()
    assert isinstance(s.conn.next_event(), ConnectionClosed)
    t = Session()
    t.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@y.example>\r\nDATA\r\npart")
    t.conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        for _ in range(5):
            t.conn.next_event()


def test_implicit_tls_before_greeting_offers_requiretls_rfc8314_3() -> None:
    conn = ServerConnection("mx.example.net", ServerConfig(starttls=True))
    conn.start_tls(TLS)  # port 465: the handshake comes first
    conn.send(Reply(220, "mx.example.net ESMTP"))
    conn.receive_data(b"EHLO c.example\r\n")
    assert isinstance(conn.next_event(), Ehlo)
    caps = Reply.parse(conn.send(Reply(250, "hello")))
    keywords = {ln.split()[0] for ln in caps.lines[1:]}
    assert "REQUIRETLS" in keywords and "STARTTLS" not in keywords
    with pytest.raises(LocalProtocolError):
        conn.start_tls(TLS)  # no second TLS session


def test_expn_is_the_applications_decision_rfc5321_4_1_1_7() -> None:
    s = Session(decide=lambda e: Reply(550, "Access denied", "5.7.1"))
    events = s.feed(b"EXPN staff\r\n")
    assert events == [Expn("staff")]
    assert s.codes() == [550]


def test_help_is_answered_214_by_the_connection_rfc5321_4_1_1_8() -> None:
    s = Session(ServerConfig(help_text="See the fine manual"))
    events = s.feed(b"HELP MAIL\r\n")
    assert events == [Help("MAIL")]
    (reply,) = s.replies()
    assert (reply.code, reply.text) == (214, "See the fine manual")


@pytest.mark.parametrize("body", [b"7BIT", b"8BITMIME"])
def test_body_parameter_needs_8bitmime_offered_rfc6152_2(body: bytes) -> None:
    s = Session(ServerConfig(eightbitmime=False))
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=" + body + b"\r\n")
    assert s.codes() == [250, 555]
    on = Session()
    on.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example> BODY=" + body + b"\r\n")
    assert on.codes() == [250, 250]


@pytest.mark.parametrize(
    "line",
    [
        b"MAIL FROM:<a@b.example> RET=HDRS",
        b"MAIL FROM:<a@b.example> ENVID=abc",
        b"RCPT TO:<x@y.example> NOTIFY=NEVER",
        b"RCPT TO:<x@y.example> ORCPT=rfc822;x@y.example",
    ],
)
def test_dsn_parameters_need_dsn_offered_rfc3461_4(line: bytes) -> None:
    opening = b"EHLO c.example\r\n" + (
        b"MAIL FROM:<a@b.example>\r\n" if line[:4] == b"RCPT" else b""
    )
    s = Session(ServerConfig(dsn=False))
    s.feed(opening + line + b"\r\n")
    assert s.codes()[-1] == 555
    on = Session()
    on.feed(opening + line + b"\r\n")
    assert on.codes()[-1] == 250


# -- fixes found by review and fuzzing (issue 7) -----------------------------------


def _in_transaction(config: ServerConfig | None = None) -> Session:
    s = Session(config or ServerConfig(starttls=True))
    s.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    s.replies()
    return s


@pytest.mark.parametrize(
    "line",
    [b"NO\tOP", b"\x1b[2JRSET", b"VRFY \x7f", b"MAIL\x0bFROM:<a@b.example>", b"HELP \x01"],
)
def test_a_control_character_in_a_command_gets_500_and_the_session_goes_on_rfc5321_4_1_4(
    line: bytes,
) -> None:
    s = Session()
    events = s.feed(line + b"\r\nNOOP\r\n")
    assert [type(e) for e in events] == [CommandRejected, Noop]
    assert s.codes() == [500, 250]


@pytest.mark.parametrize("octet", [*range(0x20), 0x7F])
@pytest.mark.parametrize("at", ["start", "middle", "end"])
def test_every_control_octet_anywhere_in_a_line_is_refused_rfc5321_4_1_2(
    octet: int, at: str
) -> None:
    # The reader tries str.isprintable before its regular expression: every
    # control character must still be found, next to UTF-8 text or not.
    text = "MAIL FROM:<a@b.example> X=é"
    cut = {"start": 0, "middle": 4, "end": len(text)}[at]
    line = (text[:cut] + chr(octet) + text[cut:]).encode()
    buf = LineBuffer(2048)
    buf.feed(line + b"\r\n")
    assert read_command_line(buf, reject_bare=True) in (CONTROL_CHARACTER, BARE_LINE_END)


@pytest.mark.parametrize(
    "line",
    [
        "MAIL FROM:<a@b.example> X=\u00a0",  # a no-break space: not printable, no control
        "MAIL FROM:<a@b.example> X=\u2028",  # a line separator (Zl), no control
        "VRFY \u200b",  # a zero-width space (Cf)
    ],
)
def test_a_line_that_is_not_printable_without_a_control_octet_is_read(line: str) -> None:
    buf = LineBuffer(2048)
    buf.feed(line.encode() + b"\r\n")
    got = read_command_line(buf, reject_bare=True)
    assert isinstance(got, tuple) and got[1] == line


def test_an_octet_that_is_not_utf8_is_kept_escaped_not_refused() -> None:
    buf = LineBuffer(2048)
    buf.feed(b"VRFY a\xff\r\n")
    got = read_command_line(buf, reject_bare=True)
    assert isinstance(got, tuple) and got[1] == "VRFY a\udcff"


@pytest.mark.parametrize(
    ("greeting", "tls_ok", "code"), [(554, True, 503), (220, False, 554), (220, True, 530)]
)
def test_a_refused_bdat_is_read_and_discarded_never_parsed_rfc3030_2(
    greeting: int, tls_ok: bool, code: int
) -> None:
    config = ServerConfig(starttls=True, require_starttls=code == 530)
    conn = ServerConnection("mx.example.net", config)
    conn.send(Reply(greeting, "hello"))
    if not tls_ok:
        conn.receive_data(b"STARTTLS\r\n")
        assert isinstance(conn.next_event(), StartTLS)
        conn.send(Reply(220, "go"))
        conn.start_tls(TLS, acceptable=False)
    # the chunk's 12 octets look like a command: they must not be one
    conn.receive_data(b"BDAT 12\r\nQUIT\r\nQUIT\r\nRSET\r\n")
    events = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
    assert [type(e) for e in events] == [CommandRejected, CommandRejected]
    assert [e.reply.code for e in events] == [code, code]
    assert conn.state is not State.CLOSED


def test_lmtp_data_with_no_accepted_rcpt_is_503_rfc2033_4_2() -> None:
    s = Session(
        ServerConfig(lmtp=True),
        lambda e: Reply(550, "no such user", "5.1.1") if isinstance(e, RcptTo) else accept_all(e),
    )
    s.feed(b"LHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    assert s.codes()[-1] == 503
    # in SMTP the same is "554 no valid recipients" (RFC 5321 §3.3)
    t = Session(
        ServerConfig(),
        lambda e: Reply(550, "no such user", "5.1.1") if isinstance(e, RcptTo) else accept_all(e),
    )
    t.feed(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    assert t.codes()[-1] == 554


def test_a_sasl_line_over_the_limit_fails_auth_with_500_5_5_6_rfc4954_4() -> None:
    config = ServerConfig(auth_mechanisms=("PLAIN",), auth_requires_tls=False)
    s = Session(config, lambda e: Reply(334, "") if isinstance(e, Auth) else accept_all(e))
    s.feed(b"EHLO c.example\r\nAUTH PLAIN\r\n")
    assert s.conn.state is State.AUTH
    s.replies()
    events = s.feed(b"A" * 20000 + b"\r\nNOOP\r\n")
    assert [type(e) for e in events] == [CommandRejected, Noop]
    [too_long, ok] = s.replies()
    assert (too_long.code, str(too_long.enhanced)) == (500, "5.5.6")
    assert ok.code == 250  # the next line was a command again
    assert s.conn.state is State.READY


def test_a_sasl_line_of_12288_octets_is_read_rfc4954_4() -> None:
    config = ServerConfig(auth_mechanisms=("PLAIN",), auth_requires_tls=False)
    s = Session(config, lambda e: Reply(334, "") if isinstance(e, Auth) else accept_all(e))
    s.feed(b"EHLO c.example\r\nAUTH PLAIN\r\n")
    [event] = s.feed(b"A" * 12284 + b"\r\n")
    assert isinstance(event, AuthResponse)


def test_vrfy_and_expn_take_utf8_and_the_smtputf8_parameter_rfc6531_3_7_4_2() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\n")
    events = s.feed("VRFY jöran SMTPUTF8\r\nEXPN liste-ü\r\n".encode())
    assert events == [Vrfy("jöran", smtputf8=True), Expn("liste-ü")]
    # without SMTPUTF8 offered, UTF-8 is refused as before
    t = Session(ServerConfig(smtputf8=False))
    t.feed(b"EHLO c.example\r\n")
    t.replies()
    [event] = t.feed("VRFY jöran\r\n".encode())
    assert isinstance(event, CommandRejected) and event.reply.code == 500


def test_an_unknown_long_parameter_gets_a_bounded_555_rfc5321_4_1_1_11() -> None:
    s = Session()
    s.feed(b"EHLO c.example\r\n")
    s.replies()
    [event] = s.feed(b"MAIL FROM:<a@b.example> " + b"K" * 600 + b"=1\r\n")
    assert isinstance(event, CommandRejected) and event.reply.code == 555
    assert len(event.reply.format()) <= 512  # RFC 5321 §4.5.3.1.5


@pytest.mark.parametrize("size", [b"0" * 30 + b"5", b"05"])
def test_a_bdat_size_with_leading_zeros_is_a_size_rfc3030_2(size: bytes) -> None:
    s = _in_transaction()
    events = s.feed(b"BDAT " + size + b" LAST\r\nabcde")
    assert merged(events)[:2] == [Bdat(5, last=True), MessageData(b"abcde")]


def test_a_bdat_size_beyond_any_limit_is_refused_and_its_octets_never_parsed_rfc3030_2() -> None:
    s = _in_transaction()
    events = s.feed(b"BDAT 99999999999999999999999\r\nQUIT\r\nNOOP\r\n")
    assert events == []  # still reading (and dropping) the chunk
    assert s.codes() == []
    assert s.conn.state is State.BDAT


@pytest.mark.parametrize("arg", [b"", b" x", b" -1", b" " + b"9" * 2000])
def test_a_bdat_without_a_readable_size_closes_with_421_rfc3030_2(arg: bytes) -> None:
    s = _in_transaction(ServerConfig(max_command_line=1024))
    events = s.feed(b"BDAT" + arg + b"\r\nQUIT\r\n")
    assert [type(e) for e in events] == [CommandRejected, ConnectionClosed]
    assert s.codes() == [421]
    assert s.conn.state is State.CLOSED


@pytest.mark.parametrize(
    ("pending", "line", "reply"),
    [
        ("EHLO", b"EHLO c.example", Reply(354, "no")),
        ("HELO", b"HELO c.example", Reply(334, "")),
        ("MAIL", b"MAIL FROM:<a@b.example>", Reply(354, "no")),
        ("VRFY", b"VRFY joe", Reply(354, "no")),
        ("STARTTLS", b"STARTTLS", Reply(250, "not 220")),
        ("STARTTLS", b"STARTTLS", Reply(354, "no")),
    ],
)
def test_a_reply_class_the_command_cannot_have_is_refused_rfc5321_4_3_2(
    pending: str, line: bytes, reply: Reply
) -> None:
    s = Session()
    if pending not in ("EHLO", "HELO", "STARTTLS"):
        s.feed(b"EHLO c.example\r\n")
    s.conn.receive_data(line + b"\r\n")
    assert s.conn.next_event() is not PAUSED
    assert s.conn.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        s.conn.send(reply)
    assert s.conn.pending is not None  # still owed: nothing was sent


def test_junk_ends_with_421_after_the_error_limit() -> None:
    # 64 KiB of empty lines would queue 1 MiB of 500 replies: the limit stops it
    s = Session(ServerConfig(max_errors=20))
    events = s.feed(b"\r\n" * 32768)
    codes = s.codes()
    assert codes == [500] * 19 + [421]
    assert isinstance(events[-1], ConnectionClosed) and s.conn.state is State.CLOSED
    assert len(events) == 21


def test_an_accepted_command_resets_the_error_count() -> None:
    s = Session(ServerConfig(max_errors=3))
    s.feed(b"FOO\r\nFOO\r\nEHLO c.example\r\nFOO\r\nFOO\r\nFOO\r\n")
    assert [r.code for r in s.replies()] == [500, 500, 250, 500, 500, 421]
