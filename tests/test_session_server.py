"""ServerSession without any I/O: the requests it makes and what the handler
sees, driven by a script of client bytes."""

from __future__ import annotations

from typing import Any

import pytest

from smtp_rtls import Envelope, RcptTo, Reply, ServerConfig, TLSInfo
from smtp_rtls.handlers import Sink
from smtp_rtls.policy.tags import TLSTag
from smtp_rtls.session.server import (
    MAX_HEADER_SECTION,
    Call,
    Handler,
    MessageWriter,
    Read,
    ServerSession,
    SessionEnvelope,
    SessionInfo,
    StartTLS,
    Write,
)

TLS = TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)


def play(session: ServerSession, *reads: bytes, tls: TLSInfo | None = TLS) -> tuple[bytes, list]:
    """Run the session: each Read gets the next of ``reads`` (then b"");
    return everything written and every request made."""
    steps = session.run()
    pending = list(reads)
    out = bytearray()
    requests: list[Any] = []
    result: Any = None
    for _ in range(10_000):
        try:
            request = steps.send(result)
        except StopIteration:
            return bytes(out), requests
        requests.append(request)
        if isinstance(request, Read):
            result = pending.pop(0) if pending else b""
        elif isinstance(request, Write):
            out += request.data
            result = None
        elif isinstance(request, StartTLS):
            result = tls
        elif isinstance(request, Call):
            try:
                result = getattr(request.target, request.method)(*request.args)
            except Exception as exc:
                result = exc
    raise AssertionError("the session did not end")


def codes(out: bytes) -> list[int]:
    return [int(line[:3]) for line in out.split(b"\r\n") if line[3:4] == b" "]


OPEN = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"


def test_a_whole_session_with_the_default_handler_keeps_the_message_with_the_sender() -> None:
    # no on_message: 451, the sender keeps the message (nothing is lost)
    session = ServerSession(Handler(), "mx.example")
    out, _ = play(session, OPEN, b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert codes(out) == [220, 250, 250, 250, 354, 451, 221]


def test_replies_to_a_pipelined_group_go_out_in_one_write_rfc2920_3_2() -> None:
    session = ServerSession(Sink(), "mx.example")
    _, requests = play(session, OPEN)
    writes = [r for r in requests if isinstance(r, Write)]
    # the greeting, then EHLO alone (it ends a group), then MAIL+RCPT+DATA at once
    assert [codes(w.data) for w in writes] == [[220], [250, 250, 250, 354]]


def test_reads_carry_the_state_timeout_and_a_deadline_rfc5321_4_5_3_2() -> None:
    session = ServerSession(Sink(), "mx.example", command_deadline=42, content_deadline=99)
    _, requests = play(session, OPEN, b"partial content")
    reads = [r for r in requests if isinstance(r, Read)]
    assert (reads[0].timeout, reads[0].deadline) == (300, 42)
    assert (reads[-1].timeout, reads[-1].deadline) == (180, 99)  # inside DATA


def test_the_tag_is_known_when_on_message_is_called_rfc8689_4_1() -> None:
    sink = Sink()
    session = ServerSession(sink, "mx.example")
    play(session, OPEN, b"Subject: x\r\nTLS-Required: ", b"No\r\n\r\nbody\r\n.\r\n")
    [envelope] = sink.envelopes
    assert envelope.tag is TLSTag.TLS_OPTIONAL
    assert sink.octets == len(b"Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n")


def test_requiretls_from_mail_wins_and_the_session_info_has_tls_rfc8689_4_1() -> None:
    sink = Sink()
    session = ServerSession(sink, "mx.example", ServerConfig(starttls=True))
    play(
        session,
        b"EHLO c.example\r\nSTARTTLS\r\n",
        b"EHLO c.example\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\nRCPT TO:<c@d.example>\r\n"
        b"DATA\r\nTLS-Required: No\r\n\r\nx\r\n.\r\n",
    )
    [envelope] = sink.envelopes
    assert envelope.tag is TLSTag.REQUIRETLS and envelope.requiretls
    assert envelope.session.tls == TLS and envelope.session.client_name == "c.example"


def test_the_header_section_held_is_bounded() -> None:
    # a "header" that never ends: the message starts after MAX_HEADER_SECTION
    starts: list[int] = []

    class Recorder(Sink):
        def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
            starts.append(len(session._head))
            return super().on_message(envelope)

    session = ServerSession(Recorder(), "mx.example", ServerConfig(max_message_size=0))
    line = b"X-Long: " + b"y" * 990 + b"\r\n"
    play(session, OPEN, *[line] * (MAX_HEADER_SECTION // len(line) + 5), b".\r\n")
    assert starts and MAX_HEADER_SECTION <= starts[0] < MAX_HEADER_SECTION + len(line)


class Broken(Handler):
    def on_mail(self, session: SessionInfo, event: Any) -> Reply:
        raise RuntimeError("database down")

    def on_rcpt(self, session: SessionInfo, event: RcptTo, envelope: Envelope) -> Any:
        return "not a reply"

    def on_data_start(self, session: SessionInfo, envelope: Envelope) -> Reply:
        return Reply(250, "a reply DATA cannot have")


def test_a_failing_handler_gets_451_and_the_session_goes_on(caplog: Any) -> None:
    session = ServerSession(Broken(), "mx.example")
    out, _ = play(session, b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nNOOP\r\nQUIT\r\n")
    assert codes(out) == [220, 250, 451, 250, 221]
    assert "database down" in caplog.text


class Lmtp(Handler):
    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        class W(MessageWriter):
            def close(self) -> list[Reply]:
                return [
                    Reply(250, "ok", "2.0.0")
                    if r.forward_path.local_part != "full"
                    else Reply(452, "mailbox full", "4.2.2")
                    for r in envelope.recipients
                ]

        return W()


def test_lmtp_one_reply_per_recipient_rfc2033_4_2() -> None:
    session = ServerSession(Lmtp(), "mx.example", ServerConfig(lmtp=True))
    out, _ = play(
        session,
        b"LHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
        b"RCPT TO:<full@d.example>\r\nDATA\r\nx\r\n.\r\n",
    )
    assert codes(out)[-2:] == [250, 452]


def test_rset_aborts_the_message_and_calls_on_reset() -> None:
    calls: list[str] = []

    class H(Handler):
        def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
            class W(MessageWriter):
                def abort(self) -> None:
                    calls.append("abort")

            return W()

        def on_reset(self, session: SessionInfo) -> None:
            calls.append("reset")

        def on_close(self, session: SessionInfo) -> None:
            calls.append("close")

    session = ServerSession(H(), "mx.example", ServerConfig(binarymime=True))
    play(
        session,
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
        b"BDAT 10\r\nS: x\r\n\r\nab",
        b"RSET\r\n",
    )
    assert calls == ["abort", "reset", "close"]


def test_a_failed_handshake_ends_the_session_rfc3207_4() -> None:
    session = ServerSession(Sink(), "mx.example", ServerConfig(starttls=True))
    out, requests = play(session, b"EHLO c.example\r\nSTARTTLS\r\n", tls=None)
    assert codes(out) == [220, 250, 220]
    # nothing after the handshake: no read, no write (Sink's on_close is
    # Handler's, which the session does not call)
    assert isinstance(requests[-1], StartTLS)


def test_starttls_without_a_context_is_454_rfc3207_4() -> None:
    session = ServerSession(Sink(), "mx.example", ServerConfig(starttls=True), can_starttls=False)
    out, _ = play(session, b"EHLO c.example\r\nSTARTTLS\r\nQUIT\r\n")
    assert codes(out) == [220, 250, 454, 221]


@pytest.mark.parametrize("greeting", [Reply(554, "go away", "5.7.1"), Reply(250, "wrong")])
def test_on_connect_may_refuse_the_session_rfc5321_3_1(greeting: Reply) -> None:
    class H(Handler):
        def on_connect(self, session: SessionInfo) -> Reply:
            return greeting

    out, _ = play(ServerSession(H(), "mx.example"), b"EHLO c.example\r\nQUIT\r\n")
    assert codes(out) == [554, 503, 221]


def test_a_message_without_an_empty_line_starts_at_its_first_body_line_rfc5322_2_1() -> None:
    # The header section ends at the first line that is not a field (the
    # same reading as header_section, which the tag is taken from): the
    # message goes to the handler then, not after MAX_HEADER_SECTION.
    starts: list[int] = []

    class Recorder(Sink):
        def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
            starts.append(len(session._head))
            return super().on_message(envelope)

    session = ServerSession(Recorder(), "mx.example", ServerConfig(max_message_size=0))
    first = b"Subject: x\r\nno colon on this line\r\n"
    rest = [b"y" * 998 + b"\r\n"] * 300
    play(session, OPEN, b"Subject: x\r\nno colon", b" on this line\r\n", *rest, b".\r\n")
    assert starts == [len(first)]
    assert session.handler.octets == len(first) + 300 * 1000  # type: ignore[attr-defined]


def test_a_field_cut_by_a_read_keeps_the_header_section_open_rfc8689_4_1() -> None:
    # "TLS-Requ" with its colon still to come could be the field that tags
    # the message: nothing may start before that line is whole.
    sink = Sink()
    session = ServerSession(sink, "mx.example")
    play(session, OPEN, b"Subject: x\r\nTLS-Requ", b"ired: No\r\n", b"body\r\n.\r\n")
    [envelope] = sink.envelopes
    assert envelope.tag is TLSTag.TLS_OPTIONAL
