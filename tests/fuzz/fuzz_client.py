"""Harness ``client``: replies from a server into a ClientConnection.

Input: byte 0 picks LMTP (bit 0), the read size (bits 1-3), STARTTLS when
offered (bit 4), BDAT instead of DATA (bit 5) and pipelining when offered
(bit 6); the rest is what the server sends, fed in reads of that size, then
the connection closes.  A simple client application sends, whenever no reply
is outstanding (or a pipelined group when PIPELINING is offered), the next
command of an ordinary session: EHLO (HELO if refused), STARTTLS, MAIL
(REQUIRETLS when offered after TLS), two RCPTs, DATA or BDAT, the content,
the end, a second message, QUIT.

ORACLE:

* ``next_event()`` raises nothing but RemoteProtocolError (ClientConnection
  docstring), and once it did, raises it again on every later call;
* ``send()`` refuses with LocalProtocolError only, and then atomically: the
  state and the outstanding commands are as before;
* every Reply read has ``.command`` naming the oldest command outstanding
  before it was read (RFC 5321 §4.2: replies come in order, RFC 2920 §3.1);
* bounded buffers: the unread input never exceeds ``max_backlog``, and after
  NEED_DATA at most one partial reply line (512 octets, RFC 5321
  §4.5.3.1.5) is held;
* after the peer closed, the session ends (ConnectionClosed or
  RemoteProtocolError) within a bounded number of steps.
"""

from __future__ import annotations

import sys

import atheris
from fuzz_common import READ_SIZES, main, reads

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls import (
        NEED_DATA,
        AuthResponse,
        Bdat,
        ClientConnection,
        ConnectionClosed,
        Data,
        Ehlo,
        EndOfMessage,
        Event,
        Helo,
        LocalProtocolError,
        MailFrom,
        MessageData,
        Quit,
        RcptTo,
        RemoteProtocolError,
        Reply,
        Rset,
        StartTLS,
        State,
        TLSInfo,
    )
    from smtp_rtls._reply import MAX_REPLY_LINE

TLS = TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128)
CONTENT = b"Subject: hi\r\n\r\n.dot\r\nline\r\n"


class App:
    """The client application: the next step of an ordinary session."""

    def __init__(self, knobs: int) -> None:
        self.client = ClientConnection("client.example", lmtp=bool(knobs & 1))
        self.starttls = bool(knobs & 16)
        self.bdat = bool(knobs & 32)
        self.pipeline = bool(knobs & 64)
        self.error: RemoteProtocolError | None = None
        self.closed = False
        self.messages = 0
        self.rcpts = 0
        self.ehlo_refused = False
        self.tried_tls = False
        self.actions = 0
        self.out = bytearray()

    def send(self, *events: Event) -> bool:
        """Send ``events``; False (and nothing sent) when the client refused."""
        for event in events:
            client = self.client
            before = (client.state, client.pending, client.tls, client.capabilities)
            try:
                self.out += client.send(event)
            except LocalProtocolError:
                after = (client.state, client.pending, client.tls, client.capabilities)
                assert after == before, (event, before, after)
                return False
        return True

    def act(self) -> None:
        client = self.client
        self.actions += 1
        if self.actions > 60 or client.closed or self.error is not None:
            return
        state = client.state
        caps = client.capabilities
        if state is State.STARTTLS:
            client.start_tls(TLS)
            return
        if client.pending:
            return
        if state in (State.REFUSED, State.CLOSED, State.GREETING):
            if state is not State.GREETING:
                self.send(Quit())
            return
        if state is State.CONNECTED:
            if self.ehlo_refused:
                self.send(Helo("client.example"))
            else:
                self.ehlo_refused = True  # until a reply says otherwise
                self.send(Ehlo("client.example"))
            return
        if state is State.AUTH:
            self.send(AuthResponse("*"))
            return
        if state is State.READY:
            self.ehlo_refused = False
            if self.starttls and not self.tried_tls and caps and "STARTTLS" in caps:
                self.tried_tls = True
                self.send(StartTLS())
            elif self.messages < 2:
                self.messages += 1
                self.rcpts = 0
                requiretls = client.tls is not None and caps is not None and "REQUIRETLS" in caps
                mail = MailFrom("a@b.example", requiretls=requiretls)
                if self.pipeline and client.pipelining:
                    self.rcpts = 2
                    last = [] if self.bdat else [Data()]
                    if not self.send(mail, RcptTo("c@d.example"), RcptTo("e@d.example"), *last):
                        self.send(Quit())
                elif not self.send(mail):
                    self.send(Quit())
            else:
                self.send(Quit())
            return
        if state in (State.MAIL, State.RCPT):
            txn = client.transaction
            if txn is not None and txn.bdat_failed:
                self.send(Rset())
            elif self.rcpts < 2:
                self.rcpts += 1
                self.send(RcptTo(f"r{self.rcpts}@d.example"))
            elif txn is not None and (txn.data_sent or txn.bdat_sent):
                self.send(Rset())
            elif self.bdat:
                if not self.send(Bdat(len(CONTENT), last=True), MessageData(CONTENT)):
                    self.send(Rset())
            elif not self.send(Data()):
                self.send(Rset())
            return
        if state is State.DATA:
            if not self.send(MessageData(CONTENT)):
                pass  # no recipient accepted: the lone dot (RFC 2920 §3.1)
            self.send(EndOfMessage())
            return
        if state is State.BDAT_MORE:
            self.send(EndOfMessage())
            return
        self.send(Quit())

    def feed(self, data: bytes) -> None:
        if self.error is not None or self.closed:
            return
        client = self.client
        client.receive_data(data)
        assert len(client._receive_buffer) <= client.max_backlog
        for _ in range(4 * len(data) + 1000):
            outstanding = client.pending
            try:
                event = client.next_event()
            except RemoteProtocolError as exc:
                self.error = exc
                try:
                    client.next_event()
                except RemoteProtocolError:
                    return
                raise AssertionError("next_event() went on after RemoteProtocolError") from None
            if event is NEED_DATA:
                assert len(client._receive_buffer) <= MAX_REPLY_LINE
                self.act()
                return
            if isinstance(event, ConnectionClosed):
                self.closed = True
                return
            assert isinstance(event, Reply), event
            if outstanding:
                assert event.command == outstanding[0], (event, outstanding)
            else:
                assert event.code == 421, event  # RFC 5321 §3.8: at any time
            self.act()
        raise AssertionError("next_event() did not settle")


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    knobs, stream = data[0], data[1:]
    app = App(knobs)
    for piece in reads(stream, READ_SIZES[(knobs >> 1) & 7]):
        app.feed(piece)
    app.feed(b"")
    assert app.closed or app.error is not None


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
