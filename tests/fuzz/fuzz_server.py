"""Harness ``server``: bytes from a client into a ServerConnection.

Input: byte 0 picks the server config (bits 0-2), the read size (bits 3-5)
and how the application decides (bits 6-7); the rest is what the client
sends, fed in reads of that size, then the connection closes.  The
application answers every PAUSED as a simple one would (250 / 354 / 220 /
334 / 252, or a refusal), and runs the "handshake" after its 220 to STARTTLS.

ORACLE:

* ``next_event()`` raises nothing but RemoteProtocolError (src/smtp_rtls/
  _errors.py: "next_event() never raises anything else, whatever bytes
  arrive"), never one that says "internal error", and raises it again on
  every later call;
* a valid reply to the pending event is always accepted by ``send()``;
* bounded buffers: the undecoded input never exceeds ``max_backlog``; after
  NEED_DATA at most one partial line is held (the line limit, RFC 5321
  §4.5.3.1.4, or the SASL line limit, RFC 4954 §4); the DATA reader holds
  at most 4 octets;
* consistent state: PAUSED exactly when a reply is owed (``pending``),
  content events only between Data/Bdat and the end of the message, each
  CommandRejected a 4xx/5xx, and after the peer closed the session ends
  (ConnectionClosed or RemoteProtocolError) within a bounded number of steps;
* everything written is a sequence of well-formed replies (RFC 5321 §4.2).
"""

from __future__ import annotations

import sys

import atheris
from fuzz_common import READ_SIZES, check_reply_stream, main, reads

with atheris.instrument_imports(include=["smtp_rtls"]):
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
        MessageData,
        RcptTo,
        RemoteProtocolError,
        Reply,
        ServerConfig,
        ServerConnection,
        StartTLS,
        TLSInfo,
        Vrfy,
    )
    from smtp_rtls._framing import DataReader
    from smtp_rtls._server import SASL_LINE

TLS = TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128)

CONFIGS = (
    ServerConfig(),
    ServerConfig(bare_line_endings="normalise"),
    ServerConfig(lmtp=True),
    ServerConfig(starttls=True, require_starttls=True, max_backlog=4096),
    ServerConfig(
        starttls=True,
        auth_mechanisms=("PLAIN", "LOGIN"),  # type: ignore[arg-type]
        auth_requires_tls=False,
        binarymime=True,
        max_message_size=1000,
    ),
    ServerConfig(pipelining=False, chunking=False, dsn=False, size=False, max_recipients=100),
    ServerConfig(max_errors=0, starttls=True),
    ServerConfig(starttls=True, max_errors=3, max_message_size=64),
)

# At most this many steps of next_event() per octet fed (plus a constant):
# every event consumes input or answers one.
_STEPS = 64


def reply_for(event: Event, positive: bool) -> Reply:
    """What a simple application answers to each decision it owns."""
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "hello") if positive else Reply(550, "no", "5.7.1")
    if isinstance(event, Data):
        return Reply(354, "go ahead") if positive else Reply(554, "no", "5.5.1")
    if isinstance(event, StartTLS):
        return Reply(220, "ready") if positive else Reply(454, "no TLS now", "4.7.0")
    if isinstance(event, Auth):
        return Reply(334, "") if positive else Reply(535, "no", "5.7.8")
    if isinstance(event, AuthResponse):
        return Reply(235, "ok", "2.7.0") if positive else Reply(535, "no", "5.7.8")
    if isinstance(event, Vrfy | Expn):
        return Reply(252, "maybe", "2.0.0") if positive else Reply(550, "no", "5.1.1")
    return Reply(250, "OK", "2.0.0") if positive else Reply(550, "no", "5.1.1")


class Session:
    """A ServerConnection and its simple application, checking the oracle."""

    def __init__(self, config: ServerConfig, mode: int) -> None:
        self.conn = ServerConnection("mx.example", config)
        self.config = config
        self.mode = mode
        self.decisions = 0
        self.out = bytearray(self.conn.send(Reply(220, "mx.example ESMTP")))
        self.error: RemoteProtocolError | None = None
        self.closed = False
        self.in_content = False

    def decide(self, event: Event) -> bool:
        self.decisions += 1
        if self.mode == 1:
            return self.decisions % 2 == 0
        if self.mode == 2:
            return self.decisions % 3 != 0
        if self.mode == 3:
            return not isinstance(event, RcptTo) or self.decisions % 2 == 0
        return True

    def check_bounds(self) -> None:
        conn = self.conn
        assert len(conn._receive_buffer) <= self.config.max_backlog
        content = conn._content
        reader = content._data if content is not None else None
        if isinstance(reader, DataReader):
            assert len(reader._held) <= 4, reader._held

    def feed(self, data: bytes) -> None:
        if self.error is not None or self.closed:
            return
        self.conn.receive_data(data)
        self.check_bounds()
        self.drain(len(data))

    def drain(self, fed: int) -> None:
        for _ in range(_STEPS * (fed + len(self.conn._receive_buffer)) + 1000):
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                assert "internal error" not in str(exc), exc
                self.error = exc
                self.out += self.conn.data_to_send()
                try:
                    self.conn.next_event()
                except RemoteProtocolError:
                    return
                raise AssertionError("next_event() went on after RemoteProtocolError") from None
            self.check_bounds()
            if event is NEED_DATA:
                assert self.conn.pending is None
                held = len(self.conn._receive_buffer)
                assert held <= max(self.conn._receive_buffer.max_line, SASL_LINE), held
                self.out += self.conn.data_to_send()
                return
            if event is PAUSED:
                self.answer()
                continue
            assert isinstance(event, Event), event
            self.check_event(event)
            self.out += self.conn.data_to_send()
            if isinstance(event, ConnectionClosed):
                self.closed = True
                return
        raise AssertionError("next_event() did not settle")

    def check_event(self, event: Event) -> None:
        if isinstance(event, MessageData):
            assert self.in_content, event
        elif isinstance(event, Data | Bdat):
            self.in_content = True
        elif isinstance(event, EndOfMessage):
            assert self.in_content, event
            self.in_content = False
        elif isinstance(event, CommandRejected):
            assert event.reply.code >= 400, event
            if event.command in ("DATA", "BDAT") or event.command is None:
                self.in_content = False
        if self.conn.pending is not None:
            # the event a reply is owed to is the one just returned
            assert self.conn.pending is event, (self.conn.pending, event)

    def answer(self) -> None:
        pending = self.conn.pending
        assert pending is not None, "PAUSED with nothing pending"
        positive = self.decide(pending)
        reply = reply_for(pending, positive)
        self.out += self.conn.send(reply)
        for _ in range(1000):  # LMTP: one reply per accepted recipient
            if self.conn.pending is not pending:
                break
            self.out += self.conn.send(reply)
        else:
            raise AssertionError("the end of data owes more replies than recipients")
        if isinstance(pending, EndOfMessage | Data) and not (
            isinstance(pending, Data) and positive
        ):
            self.in_content = False
        if isinstance(pending, StartTLS) and positive:
            self.conn.start_tls(TLS)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    knobs, stream = data[0], data[1:]
    session = Session(CONFIGS[knobs & 7], knobs >> 6)
    for piece in reads(stream, READ_SIZES[(knobs >> 3) & 7]):
        session.feed(piece)
    session.feed(b"")
    # the peer closed: the session is over, one way or the other
    assert session.closed or session.error is not None
    check_reply_stream(bytes(session.out))


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
