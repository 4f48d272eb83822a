"""A ClientConnection and a ServerConnection linked in memory (h11's
ConnectionPair idea).

The client's bytes go to the server and the server's to the client, split
however the caller likes; the pair checks on the way that what one side
sends comes out of the other unchanged: every command event the client
sends is the event the server reads, every reply the server application
sends is the reply the client reads, with ``.command`` naming the command
it answers.  A transcript of both directions is kept for the docs and for
failure messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from smtp_rtls import (
    Bdat,
    Capabilities,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MailFrom,
    MessageData,
    Reply,
    ServerConfig,
    StartTLS,
    State,
    TLSInfo,
)
from smtp_rtls._client import ClientConnection
from smtp_rtls._commands import verb_of
from smtp_rtls._framing import normalise_line_endings
from smtp_rtls._sentinels import NEED_DATA, PAUSED
from smtp_rtls._server import ServerConnection

TLS = TLSInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", bits=256)

Splitter = Callable[[bytes], list[bytes]]
# The application's side of the server: given the event a reply is owed to,
# the reply to send.
Decide = Callable[[Event], Reply]

EHLO_OFFER = "the server's EHLO reply with its extension lines"

# The replies the server connection makes by itself for these commands.
_SELF_ANSWERED = {"RSET": 250, "NOOP": 250, "HELP": 214, "QUIT": 221}


def whole(data: bytes) -> list[bytes]:
    """No split: the bytes arrive in one piece."""
    return [data]


def accept_all(event: Event) -> Reply:
    """A server application that says yes to everything."""
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "greets client.example")
    if isinstance(event, Data):
        return Reply(354, "End data with <CR><LF>.<CR><LF>")
    if isinstance(event, StartTLS):
        return Reply(220, "Ready to start TLS", "2.0.0")
    if isinstance(event, EndOfMessage):
        return Reply(250, "Queued", "2.0.0")
    return Reply(250, "OK", "2.0.0")


class Pair:
    """A client and a server talking through memory."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        decide: Decide = accept_all,
        to_server: Splitter = whole,
        to_client: Splitter = whole,
        lmtp: bool = False,
        tls: TLSInfo = TLS,
    ) -> None:
        config = config if config is not None else ServerConfig(starttls=True, lmtp=lmtp)
        self.client = ClientConnection("client.example", lmtp=config.lmtp)
        self.server = ServerConnection("mx.example", config)
        self.decide = decide
        self.to_server = to_server
        self.to_client = to_client
        self.tls_info = tls
        self.transcript: list[tuple[str, bytes]] = []
        self.client_events: list[Reply] = []
        self.client_closed = False  # the client read ConnectionClosed
        self.server_events: list[Event] = []
        # what each side must see next, in order
        self._commands: deque[Event] = deque()  # sent by the client
        # (verb, the reply, a self-made reply's code, or EHLO_OFFER; and the
        # server's state right after it sent the reply)
        self._replies: deque[tuple[str, Reply | int | str, State]] = deque()
        self._content = bytearray()  # content sent for the current message
        self._content_raw = False  # BDAT content: octet for octet
        self._received = bytearray()
        self.server_closed = False
        self._eom_verb = "EOM"  # what the client calls the end-of-message reply
        self._c2s = b""  # bytes on their way to the server
        self._s2c = b""  # and to the client

    # -- driving ---------------------------------------------------------------

    def greet(self, reply: Reply | None = None) -> list[Reply]:
        """The server application sends its greeting."""
        reply = reply if reply is not None else Reply(220, "mx.example ESMTP")
        out = self.server.send(reply)
        self._replies.append(("GREETING", reply, self.server.state))
        self._to_client(out)
        return self.exchange()

    def send(self, *events: Event) -> bytes:
        """The client sends ``events`` (without exchanging); returns the bytes.

        Raises LocalProtocolError as the client does; then nothing of the
        refused event (nor of those after it) was produced.
        """
        out = b""
        for event in events:
            data = self.client.send(event)
            if isinstance(event, MailFrom) and event.requiretls:
                assert self.client.tls is not None  # RFC 8689 §2
            out += data
            self._note_sent(event)
            if data:
                self.transcript.append(("C", data))
                self._to_server(data)
        return out

    def exchange(self) -> list[Reply]:
        """Run both sides until neither has anything more to do; return the
        client's events of this exchange."""
        start = len(self.client_events)
        for _ in range(10_000):
            moved = self._run_server()
            moved = self._run_client() or moved
            if not moved:
                return self.client_events[start:]
        raise AssertionError("the pair did not settle")

    def __call__(self, *events: Event) -> list[Reply]:
        """Send ``events`` and exchange."""
        self.send(*events)
        return self.exchange()

    # -- plumbing ----------------------------------------------------------------

    def _note_sent(self, event: Event) -> None:
        if isinstance(event, MessageData):
            self._content += event.data
        elif isinstance(event, EndOfMessage):
            if self._content_raw:
                # in a BDAT transaction the client sends it as BDAT 0 LAST
                self._commands.append(Bdat(0, last=True))
            self._commands.append(event)
        elif isinstance(event, ConnectionClosed):
            pass
        else:
            if isinstance(event, Bdat):
                self._content_raw = True
                if not event.last:
                    self._commands.append(event)
                    return
                # BDAT LAST reads as Bdat then EndOfMessage on the server
                self._commands.append(event)
                self._commands.append(EndOfMessage())
                return
            self._commands.append(event)

    def _to_server(self, data: bytes) -> None:
        self._c2s += data

    def _to_client(self, data: bytes) -> None:
        if data:
            self.transcript.append(("S", data))
            self._s2c += data

    def _run_server(self) -> bool:
        data, self._c2s = self._c2s, b""
        moved = bool(data)
        pieces = [p for p in self.to_server(data) if p] if data else []
        pieces.append(b"")  # a final round with no new bytes drains the events
        for piece in pieces:
            if piece:
                self.server.receive_data(piece)
            self._drain_server()
        return moved

    def _drain_server(self) -> None:
        for _ in range(100_000):
            event = self.server.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, ConnectionClosed):
                self.server_closed = True
                break
            if event is PAUSED:
                owed = self.server.pending
                assert owed is not None
                reply = self.decide(owed)
                verb = self._eom_verb if isinstance(owed, EndOfMessage) else self._verb(owed)
                out = self.server.send(reply)
                if verb in ("EHLO", "LHLO") and reply.is_positive:
                    # the server connection adds its extension lines
                    self._replies.append((verb, EHLO_OFFER, self.server.state))
                elif verb == "HELO" and reply.is_positive:
                    # and puts its name first (RFC 5321 §4.1.1.1)
                    text = f"{self.server.hostname} {reply.lines[0]}".rstrip()
                    self._replies.append((verb, Reply(reply.code, text), self.server.state))
                else:
                    self._replies.append((verb, reply, self.server.state))
                self._to_client(out)
                if isinstance(owed, StartTLS) and reply.code == 220:
                    # the handshake: the server side is ready at once
                    self.server.start_tls(self.tls_info)
                continue
            assert not isinstance(event, type), event
            self.server_events.append(event)
            self._check_server_event(event)
            self._to_client(self.server.data_to_send())
        else:
            raise AssertionError("the server did not stop")

    def _verb(self, event: Event) -> str:
        if isinstance(event, EndOfMessage):
            return "EOM"
        if isinstance(event, Ehlo) and self.client.lmtp:
            return "LHLO"
        return verb_of(event)

    def _check_server_event(self, event: Event) -> None:
        if isinstance(event, MessageData):
            # RFC 8689 §2: no content of a REQUIRETLS message in plaintext
            envelope = self.server.envelope
            assert not (envelope and envelope.requiretls and self.server.tls is None)
            self._received += event.data
            return
        expected = self._commands.popleft() if self._commands else None
        if isinstance(event, CommandRejected):
            assert expected is not None, event
            self._replies.append((self._verb(expected), event.reply, self.server.state))
            if isinstance(expected, Bdat) and expected.last:
                # a refused BDAT LAST produces no EndOfMessage on the server
                if self._commands and isinstance(self._commands[0], EndOfMessage):
                    self._commands.popleft()
                self._end_of_message()
            return
        assert event == expected, (event, expected)
        verb = self._verb(event)
        if verb in _SELF_ANSWERED:
            self._replies.append((verb, _SELF_ANSWERED[verb], self.server.state))
        if isinstance(event, EndOfMessage):
            self._eom_verb = "BDAT" if self._content_raw else "EOM"
            self._check_content()

    def _check_content(self) -> None:
        sent = bytes(self._content)
        if not self._content_raw:
            sent = normalise_line_endings(sent)
            if sent and not sent.endswith(b"\r\n"):
                sent += b"\r\n"
        assert bytes(self._received) == sent, "the content changed on the way"
        self._end_of_message()

    def _end_of_message(self) -> None:
        self._content.clear()
        self._received.clear()
        self._content_raw = False

    def _run_client(self) -> bool:
        data, self._s2c = self._s2c, b""
        if not data:
            return False
        for piece in [p for p in self.to_client(data) if p]:
            self.client.receive_data(piece)
            self._drain_client()
        return True

    def _drain_client(self) -> None:
        for _ in range(100_000):
            event = self.client.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, ConnectionClosed):
                self.client_closed = True
                return
            assert isinstance(event, Reply)
            self.client_events.append(event)
            verb, expected, server_state = self._replies.popleft()
            assert event.command == verb, (event, verb)
            # after every reply both sides are in the same state of the one
            # session table (the server's, as it was when it sent the reply)
            assert self.client.state is server_state, (event, self.client.state, server_state)
            if expected == EHLO_OFFER:
                offer = Capabilities.from_reply(event)
                assert offer.entries == self.server.capabilities.entries
                assert self.client.capabilities == offer
            elif isinstance(expected, int):
                assert event.code == expected, (event, expected)
            else:
                assert event == expected, (event, expected)
            if verb == "STARTTLS" and event.code == 220:
                self.client.start_tls(self.tls_info)
        raise AssertionError("the client did not stop")

    # -- reading -------------------------------------------------------------------

    def transcript_text(self) -> str:
        """The dialogue as ``C: ...`` / ``S: ...`` lines."""
        out = []
        for who, data in self.transcript:
            for line in data.decode("utf-8", "replace").split("\r\n")[:-1]:
                out.append(f"{who}: {line}".rstrip())
        return "\n".join(out)
