"""SMTP smuggling and STARTTLS command injection, against the ServerConnection.

Smuggling (RFC 5321 §4.1.1.4, §2.3.8; the 2023 "SMTP smuggling" class): only
CRLF "." CRLF ends the mail data.  A sender that ends a message with a
variant (LF "." LF, CR "." CR, ...) that some other server on the path takes
as the end can hide a second transaction inside the first message.  Here
every variant must leave the message open until the real end, whatever the
``bare_line_endings`` setting and however the bytes are split.

STARTTLS injection (RFC 3207 §4 and §4.2, CVE-2011-0411): plaintext bytes
that follow STARTTLS, in the same read or before the handshake, must never
be executed as commands of the protected session.
"""

from __future__ import annotations

import re
from typing import TypeVar

import pytest

from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    CommandRejected,
    ConnectionClosed,
    Ehlo,
    EndOfMessage,
    Event,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
    TLSInfo,
)
from smtp_rtls._framing import normalise_line_endings

E = TypeVar("E", bound=Event)
TLS = TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)

OPEN = b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
BODY = b"Subject: hello\r\n\r\nfirst line"
SMUGGLED = (
    b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\nDATA\r\n"
    b"From: ceo@b.example\r\n\r\nsend money\r\n.\r\n"
)
# after the real end: a command that is only legal outside a transaction
# proves where the session is
TAIL = b"RCPT TO:<after@y.example>\r\nQUIT\r\n"

# The end-of-data look-alikes, each put where the real end would be.
VARIANTS = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "LF.CR": b"\n.\r",
    "CR.LF": b"\r.\n",
    "CRLF.CRCRLF": b"\r\n.\r\r\n",
    "CRLF.LFCRLF": b"\r\n.\n\r\n",
    "CRLFCR.CRLF": b"\r\n\r.\r\n",
    "NUL before dot": b"\r\n\x00.\r\n",
    "space before dot": b"\r\n .\r\n",
    "dot space": b"\r\n. \r\n",
    "dot tab": b"\r\n.\t\r\n",
    "dot NUL": b"\r\n.\x00\r\n",
}
BARE = {name for name, v in VARIANTS.items() if re.search(rb"\r(?!\n)|(?<!\r)\n", v)}


class App:
    """A server application that accepts everything; it records the events."""

    def __init__(self, config: ServerConfig) -> None:
        self.conn = ServerConnection("mx.example", config)
        self.out = bytearray(self.conn.send(Reply(220, "mx.example ESMTP")))
        self.events: list[Event] = []

    def feed(self, *reads: bytes) -> None:
        for data in reads:
            self.conn.receive_data(data)
            self.drain()

    def drain(self) -> None:
        for _ in range(10_000):
            event = self.conn.next_event()
            if event is NEED_DATA:
                return
            if event is PAUSED:
                pending = self.conn.pending
                reply = {
                    "Data": Reply(354, "go ahead"),
                    "StartTLS": Reply(220, "2.0.0 ready"),
                    "Ehlo": Reply(250, "hello"),
                }.get(type(pending).__name__, Reply(250, "OK", "2.0.0"))
                self.out += self.conn.send(reply)
                while self.conn.pending is pending:  # LMTP: a reply per recipient
                    self.out += self.conn.send(reply)
                continue
            assert isinstance(event, Event)
            self.events.append(event)
            self.out += self.conn.data_to_send()
            if isinstance(event, ConnectionClosed):
                return
        raise AssertionError("next_event() did not settle")

    @property
    def content(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, MessageData))

    def of(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]


def _run(variant: bytes, how: str, mode: str, *, lmtp: bool = False) -> App:
    app = App(ServerConfig(bare_line_endings=mode, lmtp=lmtp))  # type: ignore[arg-type]
    app.feed(OPEN.replace(b"EHLO", b"LHLO") if lmtp else OPEN)
    data = BODY + variant + SMUGGLED + TAIL
    if how == "one read":
        app.feed(data)
    elif how == "octet by octet":
        app.feed(*(data[i : i + 1] for i in range(len(data))))
    else:
        # a read that ends inside the variant (after its first octet) or right after it
        cut = len(BODY) + (1 if how == "read ends inside the variant" else len(variant))
        app.feed(data[:cut], data[cut:])
    return app


def _assert_not_smuggled(app: App) -> None:
    # the smuggled MAIL never became a command
    mails = app.of(MailFrom)
    assert mails == [MailFrom("<a@b.example>")]
    assert b"evil" not in app.out
    # the session left the transaction at the real end: RCPT now is out of sequence
    rejected = app.of(CommandRejected)
    assert (rejected[-1].command, rejected[-1].reply.code) == ("RCPT", 503)
    assert app.of(Quit) == [Quit()]


HOWS = [
    "one read",
    "octet by octet",
    "read ends inside the variant",
    "read ends after the variant",
]


def _normalise_cases() -> list[object]:
    cases: list[object] = []
    for name in sorted(BARE):
        for how in HOWS:
            cases.append(pytest.param(name, how, id=f"{name}-{how}"))
    return cases


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("name", sorted(BARE))
def test_bare_line_ending_variant_is_refused_at_the_real_end_rfc5321_4_1_1_4(
    name: str, how: str
) -> None:
    app = _run(VARIANTS[name], how, "reject")
    _assert_not_smuggled(app)
    # no message was accepted; the reply came after the real end (the
    # documented 500 5.5.2 of bare_line_endings="reject", RFC 5321 §2.3.8)
    assert app.of(EndOfMessage) == []
    data_rejections = [e for e in app.of(CommandRejected) if e.command == "DATA"]
    assert len(data_rejections) == 1
    reply = data_rejections[0].reply
    assert (reply.code, str(reply.enhanced)) == (500, "5.5.2")
    # ... and it is the first reply after the 354: nothing in between
    after_354 = bytes(app.out).split(b"354 go ahead\r\n", 1)[1]
    assert after_354.startswith(reply.format())


def _lines(content: bytes) -> list[bytes]:
    assert content.endswith(b"\r\n")
    return content[:-2].split(b"\r\n")


@pytest.mark.parametrize(("name", "how"), _normalise_cases())
def test_bare_line_ending_variant_is_normalised_into_one_message_rfc5321_4_1_1_4(
    name: str, how: str
) -> None:
    app = _run(VARIANTS[name], how, "normalise")
    _assert_not_smuggled(app)
    assert len(app.of(EndOfMessage)) == 1
    content = app.content
    # every line ending is CRLF now
    assert content.count(b"\r") == content.count(b"\n") == content.count(b"\r\n")
    # the whole rest, smuggled commands included, is content of this message
    raw = normalise_line_endings(BODY + VARIANTS[name] + SMUGGLED)
    expected = _lines(raw[: -len(b".\r\n")])
    got = _lines(content)
    assert len(got) == len(expected)
    for line, want in zip(got, expected, strict=True):
        if want == b".":
            # a lone "." that was no end: kept, or its dot taken as stuffing
            assert line in (b".", b""), (line, want)
        else:
            # RFC 5321 §4.5.2: a leading dot of a line with more on it is stuffing
            assert line == (want[1:] if want.startswith(b".") else want)
    assert b"\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\nDATA\r\n" in content


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("mode", ["reject", "normalise"])
@pytest.mark.parametrize("name", sorted(set(VARIANTS) - BARE))
def test_look_alike_without_bare_line_ending_is_content_rfc5321_4_1_1_4(
    name: str, mode: str, how: str
) -> None:
    app = _run(VARIANTS[name], how, mode)
    _assert_not_smuggled(app)
    assert len(app.of(EndOfMessage)) == 1
    content = app.content
    assert content.startswith(BODY + b"\r\n")
    # the look-alike line is content: its leading dot, if any, is stuffing
    line = VARIANTS[name][2:-2]
    assert b"\r\n" + (line[1:] if line.startswith(b".") else line) + b"\r\n" in content
    assert content.endswith(b"\r\nsend money\r\n")


def _lmtp_cases() -> list[object]:
    return [
        pytest.param(
            name,
            mode,
            how,
            id=f"{name}-{mode}-{how}",
        )
        for name in sorted(VARIANTS)
        for mode in ("reject", "normalise")
        for how in ("one read", "octet by octet")
    ]


@pytest.mark.parametrize(("name", "mode", "how"), _lmtp_cases())
def test_no_variant_ends_the_data_in_lmtp_either_rfc2033_4_2(
    name: str, mode: str, how: str
) -> None:
    app = _run(VARIANTS[name], how, mode, lmtp=True)
    _assert_not_smuggled(app)
    ends = len(app.of(EndOfMessage))
    refusals = [e for e in app.of(CommandRejected) if e.command == "DATA"]
    # one message: accepted once, or refused once at the real end
    assert ends + len(refusals) == 1


@pytest.mark.parametrize("mode", ["reject", "normalise"])
@pytest.mark.parametrize("cut", range(6))
def test_control_the_real_end_split_anywhere_does_end_rfc5321_4_1_1_4(mode: str, cut: int) -> None:
    # the harness can tell an end: CRLF "." CRLF split at any point is the
    # real end, and the MAIL after it is a (pipelined) command of its own
    app = App(ServerConfig(bare_line_endings=mode))  # type: ignore[arg-type]
    app.feed(OPEN)
    data = BODY + b"\r\n.\r\nMAIL FROM:<next@x.example>\r\nQUIT\r\n"
    app.feed(data[: len(BODY) + cut], data[len(BODY) + cut :])
    assert app.content == BODY + b"\r\n"
    assert len(app.of(EndOfMessage)) == 1
    assert app.of(MailFrom)[-1] == MailFrom("<next@x.example>")


@pytest.mark.parametrize("mode", ["reject", "normalise"])
def test_bare_cr_in_a_command_line_is_no_line_end_rfc5321_2_3_8(mode: str) -> None:
    app = App(ServerConfig(bare_line_endings=mode))  # type: ignore[arg-type]
    app.feed(b"EHLO client.example\r\nRSET\rMAIL FROM:<evil@x.example>\r\nQUIT\r\n")
    assert app.of(MailFrom) == []
    rejected = app.of(CommandRejected)
    assert [(e.reply.code, str(e.reply.enhanced)) for e in rejected] == [(500, "5.5.2")]


def test_bare_lf_in_a_command_line_is_refused_when_rejecting_rfc5321_2_3_8() -> None:
    app = App(ServerConfig(bare_line_endings="reject"))
    app.feed(b"EHLO client.example\r\nRSET\nMAIL FROM:<evil@x.example>\r\nQUIT\r\n")
    assert app.of(MailFrom) == []
    rejected = app.of(CommandRejected)
    assert [(e.reply.code, str(e.reply.enhanced)) for e in rejected] == [(500, "5.5.2")]


# -- STARTTLS injection (RFC 3207 §4, CVE-2011-0411) ---------------------------------------


INJECTED = b"MAIL FROM:<x@y.example>\r\n"


def _tls_app() -> App:
    app = App(ServerConfig(starttls=True))
    app.feed(b"EHLO client.example\r\n")
    return app


def _assert_refused(app: App) -> None:
    with pytest.raises(RemoteProtocolError):
        app.conn.next_event()
    # and it stays refused: the injected command is never executed
    with pytest.raises(RemoteProtocolError):
        app.conn.next_event()
    assert app.of(MailFrom) == []
    assert app.out.endswith(b"220 2.0.0 ready\r\n")


def test_command_after_starttls_in_the_same_read_is_never_executed_rfc3207_4() -> None:
    app = _tls_app()
    app.conn.receive_data(b"STARTTLS\r\n" + INJECTED)
    with pytest.raises(RemoteProtocolError):
        app.drain()
    assert app.of(StartTLS) == [StartTLS()]
    _assert_refused(app)


def test_command_in_a_second_read_before_start_tls_is_never_executed_rfc3207_4() -> None:
    app = _tls_app()
    app.feed(b"STARTTLS\r\n")
    assert app.out.endswith(b"220 2.0.0 ready\r\n")
    app.conn.receive_data(INJECTED)
    _assert_refused(app)


def test_injection_split_across_two_reads_before_start_tls_rfc3207_4() -> None:
    app = _tls_app()
    app.conn.receive_data(b"STARTTLS\r\nMAIL FR")
    with pytest.raises(RemoteProtocolError):
        app.drain()
    app.conn.receive_data(b"OM:<x@y.example>\r\n")
    _assert_refused(app)


def test_buffered_plaintext_at_start_tls_is_refused_not_carried_over_rfc3207_4_2() -> None:
    # the application answers 220 and starts the handshake at once, before
    # asking for the next event: the pipelined plaintext is still refused
    app = _tls_app()
    app.conn.receive_data(b"STARTTLS\r\n" + INJECTED)
    event = app.conn.next_event()
    assert event == StartTLS()
    app.out += app.conn.send(Reply(220, "2.0.0 ready"))
    app.conn.start_tls(TLS)
    _assert_refused(app)


def _clean_tls() -> App:
    app = _tls_app()
    app.feed(b"STARTTLS\r\n")
    app.conn.start_tls(TLS)
    return app


def test_after_start_tls_the_session_is_forgotten_rfc3207_4_2() -> None:
    app = _clean_tls()
    assert app.conn.client_name is None
    assert not app.conn.extended
    assert app.conn.envelope is None
    assert len(app.conn._receive_buffer) == 0
    app.feed(b"RCPT TO:<c@d.example>\r\nMAIL FROM:<a@b.example>\r\n")
    rejected = app.of(CommandRejected)[-2:]
    assert [(e.command, e.reply.code) for e in rejected] == [("RCPT", 503), ("MAIL", 503)]
    assert app.of(MailFrom) == []


def test_after_start_tls_a_new_ehlo_opens_the_session_rfc3207_4_2() -> None:
    app = _clean_tls()
    app.feed(b"EHLO again.example\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\n")
    assert app.of(Ehlo)[-1] == Ehlo("again.example")
    assert app.of(MailFrom) == [MailFrom("<a@b.example>", requiretls=True)]
    ehlo_reply = bytes(app.out).rsplit(b"250-mx.example hello\r\n", 1)[1]
    assert b"STARTTLS" not in ehlo_reply  # RFC 3207 §4.2: not offered again
    assert b"REQUIRETLS" in ehlo_reply  # RFC 8689 §2: offered on TLS only


def test_second_starttls_is_refused_rfc3207_4_2() -> None:
    app = _clean_tls()
    app.feed(b"EHLO again.example\r\nSTARTTLS\r\n")
    rejected = app.of(CommandRejected)
    assert (rejected[-1].command, rejected[-1].reply.code) == ("STARTTLS", 503)
    assert app.of(StartTLS) == [StartTLS()]


def test_start_tls_without_a_220_is_a_local_error() -> None:
    app = _tls_app()
    with pytest.raises(LocalProtocolError):
        app.conn.start_tls(TLS)
    assert app.conn.tls is None


def test_refused_starttls_keeps_the_plaintext_session() -> None:
    # a 454 leaves the session as it was; what follows is parsed normally
    app = App(ServerConfig(starttls=True))
    app.feed(b"EHLO client.example\r\n")
    app.conn.receive_data(b"STARTTLS\r\n")
    assert app.conn.next_event() == StartTLS()
    app.out += app.conn.send(Reply(454, "TLS not available", "4.7.0"))
    app.feed(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    assert app.of(MailFrom) == [MailFrom("<a@b.example>")]
    assert app.of(RcptTo) == [RcptTo("<c@d.example>")]
