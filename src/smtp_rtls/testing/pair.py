"""A ClientConnection and a ServerConnection linked in memory (h11's
ConnectionPair idea), checking every step.

The client's bytes go to the server and the server's to the client, split
however the caller likes.  On the way the pair checks that what one side
sends comes out of the other unchanged: every command event the client
sends is the event the server reads, every reply the server application
sends is the reply the client reads (with ``.command`` naming the command
it answers), both sides are in the same :class:`~smtp_rtls.State` after
every reply, message content arrives as the client's writer meant it, and
no content of a REQUIRETLS transaction ever flows without TLS (RFC 8689
§2).  A broken check raises :class:`AssertionError`.  A transcript of both
directions is kept for failure messages and documentation.

No socket, thread or clock: a pair is as fast and as deterministic as the
core itself, which makes it the place for property tests::

    from smtp_rtls import Ehlo, Quit
    from smtp_rtls.testing.pair import Pair

    pair = Pair()
    pair.greet()
    pair(Ehlo("client.example"))
    pair(Quit())
    print(pair.transcript_text())
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import attrs

from .. import (
    NEED_DATA,
    PAUSED,
    Bdat,
    Capabilities,
    ClientConnection,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Envelope,
    Event,
    Helo,
    MailFrom,
    MessageData,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
    State,
    TLSInfo,
)
from .._commands import verb_of
from .._framing import normalise_line_endings

__all__ = ["TLS", "Decide", "Pair", "ReceivedMessage", "Splitter", "accept_all", "whole"]

#: The :class:`~smtp_rtls.TLSInfo` both sides are given after STARTTLS.
TLS = TLSInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", bits=256)

#: How bytes are split into reads on their way: bytes in, the reads out.
Splitter = Callable[[bytes], Sequence[bytes]]
#: The application's side of the server: given the event a reply is owed to
#: (:attr:`ServerConnection.pending <smtp_rtls.ServerConnection.pending>`),
#: the reply to send.
Decide = Callable[[Event], Reply]

_EHLO_OFFER = "the server's EHLO reply with its extension lines"

# The replies the server connection makes by itself for these commands.
_SELF_ANSWERED = {"RSET": 250, "NOOP": 250, "HELP": 214, "QUIT": 221}


def whole(data: bytes) -> list[bytes]:
    """No split: the bytes arrive in one read."""
    return [data]


def accept_all(event: Event) -> Reply:
    """A server application that says yes to everything: ``250`` (``220``
    to STARTTLS, ``354`` to DATA)."""
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "greets client.example")
    if isinstance(event, Data):
        return Reply(354, "End data with <CR><LF>.<CR><LF>")
    if isinstance(event, StartTLS):
        return Reply(220, "Ready to start TLS", "2.0.0")
    if isinstance(event, EndOfMessage):
        return Reply(250, "Queued", "2.0.0")
    return Reply(250, "OK", "2.0.0")


@attrs.frozen
class ReceivedMessage:
    """A message the server application accepted (a 2xx to its end)."""

    #: The transaction, as the server read it.
    envelope: Envelope | None
    #: The content as the server gave it out (dot-stuffing undone).
    content: bytes
    #: The session was TLS-protected when the message ended.
    tls: bool


def _check(condition: object, message: object) -> None:
    if not condition:
        raise AssertionError(message)


class Pair:
    """A client and a server talking through memory.

    ``config`` is the server's (default: ``ServerConfig(starttls=True)``, or
    with ``lmtp``); ``decide`` answers what the server owes a reply to
    (default :func:`accept_all`); ``to_server`` and ``to_client`` split the
    bytes of each direction into reads (default: one read per exchange); a
    STARTTLS answered ``220`` is followed by ``start_tls(tls)`` on both
    sides, as if the handshake had happened.
    """

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
        #: The client connection.
        self.client = ClientConnection("client.example", lmtp=config.lmtp)
        #: The server connection.
        self.server = ServerConnection("mx.example", config)
        self.decide = decide
        self.to_server = to_server
        self.to_client = to_client
        self.tls_info = tls
        #: Both directions, in order: ``("C", bytes)`` and ``("S", bytes)``.
        self.transcript: list[tuple[str, bytes]] = []
        #: The replies the client read, in order.
        self.client_events: list[Reply] = []
        #: The client read ConnectionClosed.
        self.client_closed = False
        #: The events the server read (not the PAUSED / NEED_DATA sentinels).
        self.server_events: list[Event] = []
        #: The server read ConnectionClosed.
        self.server_closed = False
        #: The messages the server application accepted, in order.
        self.messages: list[ReceivedMessage] = []
        # what each side must see next, in order
        self._commands: deque[Event] = deque()  # sent by the client
        # (verb, the reply, a self-made reply's code, or _EHLO_OFFER; and the
        # server's state right after it sent the reply)
        self._replies: deque[tuple[str, Reply | int | str, State]] = deque()
        # the client side: the content of the message being sent, whether it
        # goes over BDAT (octet for octet), and the messages it finished
        # sending, oldest first, until the server reads their end
        self._content = bytearray()
        self._content_raw = False
        self._sent_messages: deque[tuple[bytes, bool]] = deque()
        # the server side: the content read for the current message, and
        # whether its transaction uses BDAT
        self._received = bytearray()
        self._server_raw = False
        self._last_chunk = 0  # octets of a BDAT LAST chunk still to send
        self._ended: tuple[bytes, bool] | None = None  # the content at the last end
        self._eom_verb = "EOM"  # what the client calls the end-of-message reply
        self._c2s = b""  # bytes on their way to the server
        self._s2c = b""  # and to the client

    # -- driving ---------------------------------------------------------------

    def greet(self, reply: Reply | None = None) -> list[Reply]:
        """The server application sends its greeting (default ``220``);
        returns what the client read."""
        reply = reply if reply is not None else Reply(220, "mx.example ESMTP")
        out = self.server.send(reply)
        self._replies.append(("GREETING", reply, self.server.state))
        self._to_client(out)
        return self.exchange()

    def send(self, *events: Event) -> bytes:
        """The client sends ``events`` without exchanging; returns their bytes.

        Raises :class:`~smtp_rtls.LocalProtocolError` as the client does;
        then nothing of the refused event (nor of those after it) was produced.
        """
        out = b""
        for event in events:
            data = self.client.send(event)
            if isinstance(event, MailFrom) and event.requiretls:
                _check(self.client.tls is not None, "REQUIRETLS went out without TLS")
            out += data
            self._note_sent(event)
            if data:
                self.transcript.append(("C", data))
                self._c2s += data
        return out

    def exchange(self) -> list[Reply]:
        """Run both sides until neither has anything more to do; return the
        replies the client read in this exchange."""
        start = len(self.client_events)
        for _ in range(10_000):
            moved = self._run_server()
            moved = self._run_client() or moved
            if not moved:
                return self.client_events[start:]
        raise AssertionError("the pair did not settle")

    def __call__(self, *events: Event) -> list[Reply]:
        """Send ``events`` (one pipelined group) and exchange."""
        self.send(*events)
        return self.exchange()

    def play(self, groups: Sequence[Sequence[Event]]) -> list[Reply]:
        """Send each group of events in turn (one pipelined group each,
        such as the :attr:`~smtp_rtls.testing.strategies.ClientSession.groups`
        of a drawn session), exchanging after each; return every reply."""
        replies: list[Reply] = []
        for group in groups:
            replies += self(*group)
        return replies

    # -- reading -------------------------------------------------------------------

    def transcript_text(self) -> str:
        """The dialogue as ``C: ...`` / ``S: ...`` lines."""
        out = []
        for who, data in self.transcript:
            for line in data.decode("utf-8", "replace").split("\r\n")[:-1]:
                out.append(f"{who}: {line}".rstrip())
        return "\n".join(out)

    # -- plumbing ----------------------------------------------------------------

    def _note_sent(self, event: Event) -> None:
        if isinstance(event, MessageData):
            self._content += event.data
            if self._last_chunk:
                self._last_chunk -= len(event.data)
                if not self._last_chunk:
                    self._message_sent()
        elif isinstance(event, EndOfMessage):
            if self._content_raw:
                # in a BDAT transaction the client sends it as BDAT 0 LAST
                self._commands.append(Bdat(0, last=True))
            self._commands.append(event)
            self._message_sent()
        elif isinstance(event, ConnectionClosed):
            pass
        elif isinstance(event, Bdat):
            self._content_raw = True
            self._commands.append(event)
            if event.last:
                # BDAT LAST reads as Bdat then EndOfMessage on the server;
                # its chunk is the message's last content
                self._commands.append(EndOfMessage())
                self._last_chunk = event.size
                if not event.size:
                    self._message_sent()
        else:
            self._commands.append(event)

    def _message_sent(self) -> None:
        self._sent_messages.append((bytes(self._content), self._content_raw))
        self._content.clear()
        self._content_raw = False

    def _to_client(self, data: bytes) -> None:
        if data:
            self.transcript.append(("S", data))
            self._s2c += data

    def _run_server(self) -> bool:
        data, self._c2s = self._c2s, b""
        pieces = [p for p in self.to_server(data) if p] if data else []
        _check(b"".join(pieces) == data, "to_server lost or added bytes")
        pieces.append(b"")  # a final round with no new bytes drains the events
        for piece in pieces:
            if piece:
                self.server.receive_data(piece)
            self._drain_server()
        return bool(data)

    def _drain_server(self) -> None:
        for _ in range(100_000):
            event = self.server.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, ConnectionClosed):
                self.server_closed = True
                break
            if event is PAUSED:
                self._answer()
                continue
            _check(isinstance(event, Event), event)
            assert isinstance(event, Event)
            self.server_events.append(event)
            self._check_server_event(event)
            self._to_client(self.server.data_to_send())
        else:
            raise AssertionError("the server did not stop")

    def _answer(self) -> None:
        owed = self.server.pending
        _check(owed is not None, "PAUSED with nothing pending")
        assert owed is not None
        reply = self.decide(owed)
        verb = self._eom_verb if isinstance(owed, EndOfMessage) else self._verb(owed)
        out = self.server.send(reply)
        if verb in ("EHLO", "LHLO") and reply.is_positive:
            # the server connection adds its extension lines
            self._replies.append((verb, _EHLO_OFFER, self.server.state))
        elif verb == "HELO" and reply.is_positive:
            # and puts its name first (RFC 5321 §4.1.1.1)
            text = f"{self.server.hostname} {reply.lines[0]}".rstrip()
            self._replies.append((verb, Reply(reply.code, text), self.server.state))
        else:
            self._replies.append((verb, reply, self.server.state))
        if isinstance(owed, EndOfMessage) and reply.is_positive and self._ended is not None:
            content, tls = self._ended
            self.messages.append(ReceivedMessage(owed.envelope, content, tls))
            self._ended = None  # LMTP: one message, however many replies
        self._to_client(out)
        if isinstance(owed, StartTLS) and reply.code == 220:
            # the handshake: the server side is ready at once
            self.server.start_tls(self.tls_info)

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
            _check(
                not (envelope and envelope.requiretls and self.server.tls is None),
                "REQUIRETLS content on a plaintext session",
            )
            self._received += event.data
            return
        expected = self._commands.popleft() if self._commands else None
        if isinstance(event, CommandRejected):
            _check(expected is not None, event)
            assert expected is not None
            verb = self._eom_verb_now() if isinstance(expected, EndOfMessage) else None
            self._replies.append((verb or self._verb(expected), event.reply, self.server.state))
            if isinstance(expected, Bdat) and expected.last:
                # a refused BDAT LAST produces no EndOfMessage on the server
                if self._commands and isinstance(self._commands[0], EndOfMessage):
                    self._commands.popleft()
                self._end_of_message()
            elif isinstance(expected, EndOfMessage):
                self._end_of_message()  # the content was refused at its end
            return
        _check(event == expected, ("the server read", event, "the client sent", expected))
        if isinstance(event, Data | Bdat):
            self._server_raw = isinstance(event, Bdat)
        verb = self._verb(event)
        if verb in _SELF_ANSWERED:
            self._replies.append((verb, _SELF_ANSWERED[verb], self.server.state))
        if isinstance(event, EndOfMessage):
            self._eom_verb = self._eom_verb_now()
            self._check_content()

    def _eom_verb_now(self) -> str:
        return "BDAT" if self._server_raw else "EOM"

    def _check_content(self) -> None:
        _check(self._sent_messages, "the server read the end of a message nobody sent")
        sent, raw = self._sent_messages[0]
        if not raw:
            # RFC 5321 §2.3.8 and §4.1.1.4: over DATA, bare line endings
            # travel as CRLF and the content ends with a line end
            sent = normalise_line_endings(sent)
            if sent and not sent.endswith(b"\r\n"):
                sent += b"\r\n"
        _check(bytes(self._received) == sent, "the content changed on the way")
        self._ended = (bytes(self._received), self.server.tls is not None)
        self._end_of_message()

    def _end_of_message(self) -> None:
        if self._sent_messages:
            self._sent_messages.popleft()
        self._received.clear()
        self._server_raw = False

    def _run_client(self) -> bool:
        data, self._s2c = self._s2c, b""
        if not data:
            return False
        pieces = [p for p in self.to_client(data) if p]
        _check(b"".join(pieces) == data, "to_client lost or added bytes")
        for piece in pieces:
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
            _check(isinstance(event, Reply), event)
            assert isinstance(event, Reply)
            self.client_events.append(event)
            _check(self._replies, ("a reply nobody sent", event))
            verb, expected, server_state = self._replies.popleft()
            _check(event.command == verb, (event, verb))
            # after every reply both sides are in the same state of the one
            # session table (the server's, as it was when it sent the reply)
            _check(self.client.state is server_state, (event, self.client.state, server_state))
            if expected == _EHLO_OFFER:
                offer = Capabilities.from_reply(event)
                _check(offer.entries == self.server.capabilities.entries, offer)
                _check(self.client.capabilities == offer, offer)
            elif isinstance(expected, int):
                _check(event.code == expected, (event, expected))
            else:
                _check(event == expected, (event, expected))
            if verb == "STARTTLS" and event.code == 220:
                self.client.start_tls(self.tls_info)
        raise AssertionError("the client did not stop")
