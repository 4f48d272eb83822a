"""ClientConnection: the client side of an SMTP (or LMTP) session, Sans-IO.

Events in, bytes out (:meth:`ClientConnection.send`); bytes in, replies out
(:meth:`ClientConnection.receive_data`, :meth:`ClientConnection.next_event`).
The connection never does I/O and never guesses: whatever the server did not
advertise, or the session state forbids, is refused with LocalProtocolError
*before* any byte exists; whatever the server sends that breaks the protocol
is a RemoteProtocolError, never a desynchronised session.

Replies are matched to commands by counting, in the order the commands were
sent (RFC 2920 §3.1), and every :class:`Reply` event carries the command it
answers in ``.command``: ``"GREETING"``, ``"EHLO"`` (``"LHLO"`` in LMTP
mode), ``"HELO"``, ``"STARTTLS"``, ``"AUTH"`` (also for the replies to
:class:`AuthResponse` lines), ``"MAIL"``, ``"RCPT"``, ``"DATA"`` (the 354),
``"EOM"`` (the reply to the end of the DATA content; in LMTP one per
accepted recipient, RFC 2033 §4.2), ``"BDAT"``, ``"RSET"``, ``"NOOP"``,
``"VRFY"``, ``"EXPN"``, ``"HELP"``, ``"QUIT"``.  An unsolicited ``421``
(RFC 5321 §3.8) is the one reply with ``command=None``.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from ._capabilities import Capabilities
from ._client_rules import (
    _RULES,
    ClientTransaction,
    SessionView,
    accepted_rcpts,
    new_transaction,
)
from ._commands import _VERB_OF, format_command, verb_of
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    AuthResponse,
    Bdat,
    ConnectionClosed,
    EndOfMessage,
    Event,
    MailFrom,
    MessageData,
    RcptTo,
)
from ._framing import LineBuffer
from ._readers import ReplyReader, is_positive
from ._reply import MAX_REPLY_LINE, Reply
from ._sentinels import NEED_DATA
from ._state import State, next_state, transitions_for
from ._tls import TLSInfo
from ._writers import DataWriter

__all__ = ["ClientConnection"]

# RFC 2920 §3.1: "the commands RSET, MAIL FROM, SEND FROM, SOML FROM, SAML
# FROM, and RCPT TO can all appear anywhere in a pipelined command group";
# every other command ends a group.  The end of the message content may
# start a group ("The actual transfer of message content is explicitly
# allowed to be the first 'command' in a group"), so MAIL may follow it;
# RFC 3030 §4.2 lets BDAT chunks be pipelined, BDAT LAST ends the group.
_GROUP_CONTINUES: Final = frozenset(["MAIL", "RCPT", "RSET", "EOM", "BDAT"])

# RFC 5321 §4.2.1 puts no limit on the number of lines of a reply; this bound
# keeps a reply in memory small (each line is at most 512 octets, §4.5.3.1.5).
DEFAULT_MAX_REPLY_LINES: Final = 100
# The same bound as the server's: replies handed to receive_data() and not
# yet read with next_event() (RFC 2920 §3.1 lets a server answer a whole
# group at once; nothing lets it send without end).
DEFAULT_MAX_BACKLOG: Final = 256 * 1024

# The capabilities read from positive EHLO replies, by the reply's text:
# Capabilities is immutable, and a client that opens a connection per
# message reads the same reply from the same server every time.  Only
# replies that parsed are kept, and at most _MAX_CAPS of them.
_CAPS_CACHE: Final[dict[tuple[object, tuple[str, ...]], Capabilities]] = {}
_MAX_CAPS: Final = 64

# The formatted command lines, by the identity of their (immutable) event:
# a client sending message after message, on one connection or on one
# connection per message, sends the same MAIL, RCPT and DATA events again.
# id(event) -> (event, lmtp, bytes): the event is kept, so that its id
# cannot be reused by another object while the entry lives.  Shared by
# every connection (a lookup checks the event is the very one).
_FORMATTED: Final[dict[int, tuple[Event, bool, bytes]]] = {}
_MAX_FORMATTED: Final = 256
# The commands whose lines are kept: never AUTH, whose events carry
# credentials that must not outlive the application's own references.
_REMEMBERED: Final = frozenset(["EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"])


# next_state() by its arguments (the table by ``lmtp``): a pure function of
# them, asked four times per message.  Only answers are kept, never
# refusals, so every refused reply goes through next_state() and its error.
_NEXT_STATES: Final[dict[tuple[bool, State, str, int], State]] = {}
_MAX_NEXT_STATES: Final = 4096

# Final aliases of names imported from modules mypyc does not compile, for
# the per-message paths (why: smtp_rtls._build).
_NEED_DATA: Final = NEED_DATA
_AuthResponse: Final = AuthResponse
_MailFrom: Final = MailFrom
_Bdat: Final = Bdat
_RcptTo: Final = RcptTo


class _Pending:
    """A command awaiting its reply (or, for an LMTP end of data, replies)."""

    # A plain class, not attrs: one is made per command sent, and the
    # generated __init__ with its post-init hook cost twice this one.
    __slots__ = (
        "ends_group",
        "event",
        "per_recipient",
        "remaining",
        "table_verb",
        "transaction",
        "verb",
    )

    def __init__(
        self,
        verb: str,
        event: Event | None = None,
        transaction: ClientTransaction | None = None,
        ends_group: bool = True,
        remaining: int | None = 1,
        per_recipient: bool = False,
        table_verb: str = "",
    ) -> None:
        self.verb = verb
        self.event = event
        self.transaction = transaction
        self.ends_group = ends_group
        # LMTP: the end of data gets one reply per accepted recipient (RFC
        # 2033 §4.2); the count is known only when the earlier replies are read.
        self.remaining = remaining
        self.per_recipient = per_recipient  # the replies are per-recipient results
        # the verb in the session table ("BDAT LAST" for LAST)
        self.table_verb = table_verb or verb

    def __repr__(self) -> str:
        return f"_Pending({self.verb!r}, remaining={self.remaining!r})"


def _injection() -> RemoteProtocolError:
    # RFC 3207 §4 and the STARTTLS injection attacks (CVE-2011-0411, the 2021
    # "Why TLS is better without STARTTLS" client cases): bytes after the 220
    # and before the handshake were sent in plaintext, by the server or by a
    # man in the middle; read after TLS they would pass for protected replies.
    return RemoteProtocolError("plaintext data after the 220 reply to STARTTLS (injection)")


class ClientConnection:
    """The client side of one SMTP session.

    ``hostname`` is this client's name, kept for the application to put in
    :class:`Ehlo` / :class:`Helo` (events carry their own arguments).
    ``lmtp`` writes EHLO as LHLO and expects one reply per accepted recipient
    after the content (RFC 2033).  ``max_reply_lines`` bounds a multi-line
    reply, ``max_backlog`` the received bytes not yet read as replies.

    The session starts waiting for the server's greeting.  For implicit TLS
    (port 465, RFC 8314 §3) the caller does the handshake first and calls
    :meth:`start_tls` before any byte is received.
    """

    def __init__(
        self,
        hostname: str,
        *,
        lmtp: bool = False,
        max_reply_lines: int = DEFAULT_MAX_REPLY_LINES,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
    ) -> None:
        if max_reply_lines < 1:
            raise ValueError("max_reply_lines must be at least 1")
        if max_backlog < MAX_REPLY_LINE:
            raise ValueError(f"max_backlog must be at least {MAX_REPLY_LINE}")
        #: This client's name, for the application's EHLO / HELO.
        self.hostname = hostname
        #: Speak LMTP (RFC 2033): LHLO, and one reply per recipient.
        self.lmtp = lmtp
        self.max_reply_lines = max_reply_lines
        self.max_backlog = max_backlog
        self._table = transitions_for(lmtp)
        self._table_lmtp = lmtp  # which table, for _NEXT_STATES
        self._state = State.GREETING
        # RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with CRLF.
        self._receive_buffer = LineBuffer(MAX_REPLY_LINE)
        self._reader = ReplyReader(max_reply_lines)
        self._pending: deque[_Pending] = deque([_Pending("GREETING")])
        self._group_enders = 1  # pending entries that end a group (the greeting)
        self._peer_closed = False
        self._finished = False  # ConnectionClosed was read or sent
        self._error: RemoteProtocolError | None = None
        self._quit_sent = False
        self._caps: Capabilities | None = None
        # "PIPELINING" in self._caps, decided once per EHLO: every send asks.
        self._pipelining = False
        self._chunking = False
        self._hello: str | None = None  # "EHLO" / "LHLO" / "HELO" once accepted
        self._tls: TLSInfo | None = None
        self._authenticated = False
        self._transaction: ClientTransaction | None = None
        # Writing content: a DataWriter after a 354, or the octets of a BDAT
        # chunk still to send.
        self._writer: DataWriter | None = None
        self._writer_transaction: ClientTransaction | None = None
        self._lone_dot = False  # 354 with no recipient accepted (RFC 2920 §3.1)
        self._bdat_left = 0
        # The last SessionView built, reused while its facts hold.
        self._last_view: SessionView | None = None
        self._other_view: SessionView | None = None  # the one before it
        self._formatted = _FORMATTED

    # -- what the application may look at ----------------------------------

    @property
    def local_hostname(self) -> str:
        """The former name of :attr:`hostname`."""
        return self.hostname

    @property
    def state(self) -> State:
        """Where the session is, as of the last reply read (the same
        :class:`State` the server reports once it sent that reply)."""
        return self._state

    @property
    def capabilities(self) -> Capabilities | None:
        """What the last accepted EHLO offered (``None`` before one, and
        again after :meth:`start_tls`; a HELO offers no extension)."""
        return self._caps

    @property
    def tls(self) -> TLSInfo | None:
        """The TLS session the caller reported, or ``None`` in plaintext."""
        return self._tls

    @property
    def pending(self) -> tuple[str, ...]:
        """The commands awaiting a reply, oldest first (their verbs)."""
        return tuple(p.verb for p in self._pending)

    @property
    def awaiting(self) -> str | None:
        """The verb of the oldest command awaiting a reply (``pending[0]``
        without building the tuple), or None."""
        return self._pending[0].verb if self._pending else None

    @property
    def transaction(self) -> ClientTransaction | None:
        """The mail transaction in progress (as sent so far), if any."""
        return self._transaction

    @property
    def pipelining(self) -> bool:
        """True when the server offered PIPELINING (RFC 2920)."""
        return self._pipelining

    @property
    def chunking(self) -> bool:
        """True when the server offered CHUNKING (RFC 3030), BDAT."""
        return self._chunking

    @property
    def closed(self) -> bool:
        """True when the session is over (the peer closed, or the
        application sent :class:`ConnectionClosed`)."""
        return self._finished

    # -- bytes in ----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Hand over bytes read from the server; ``b""`` means it closed.

        The bytes not yet read as replies are bounded by ``max_backlog``:
        past it they are dropped and ``next_event()`` raises
        RemoteProtocolError.
        """
        if self._peer_closed:
            raise LocalProtocolError("receive_data() after the peer closed the connection")
        if not data:
            self._peer_closed = True
            return
        if len(self._receive_buffer) + len(data) > self.max_backlog:
            if self._error is None:
                self._error = RemoteProtocolError(
                    f"more than {self.max_backlog} octets of unread replies"
                )
            return
        self._receive_buffer.feed(data)

    def next_event(self) -> Reply | ConnectionClosed | type[NEED_DATA]:
        """The next reply (with ``.command`` set), ConnectionClosed, or NEED_DATA.

        Raises RemoteProtocolError, and nothing else, when the server broke
        the protocol; the connection is then unusable (every later call
        raises it again).
        """
        if self._error is not None:
            raise self._error
        try:
            # (the body of the former _next_event, inline: one call less
            # per reply; try costs nothing until something is raised)
            buf = self._receive_buffer
            # buf._data is empty exactly when nothing is buffered (LineBuffer);
            # then the reader has nothing to read (the first call for each
            # group of replies, before any of them arrived).
            if not buf._data:
                return _NEED_DATA if not self._peer_closed else self._closed_event()
            if self._state is State.STARTTLS:
                raise _injection()
            reply = self._reader.read(buf)
            if reply is not None:
                return self._on_reply(reply)
            if not self._peer_closed:
                return _NEED_DATA
            return self._closed_event()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _closed_event(self) -> ConnectionClosed:
        if self._reader.partial or len(self._receive_buffer):
            raise RemoteProtocolError("connection closed in the middle of a reply")
        self._finished = True
        self._state = next_state(self._table, self._state, "CLOSE", 421)
        return ConnectionClosed()

    # -- replies change the state ------------------------------------------

    def _on_reply(self, reply: Reply) -> Reply:
        if not self._pending:
            if reply.code == 421:
                # RFC 5321 §3.8: 421 may come at any time; the server then closes.
                self._state = next_state(self._table, self._state, "CLOSE", 421)
                return reply
            raise RemoteProtocolError(f"reply {reply.code} with no command pending")
        head = self._pending[0]
        if head.remaining is None:
            # LMTP end of data: the RCPT replies are all in by now (DATA and
            # BDAT LAST end a group).  After a failed chunk the server has
            # dropped the transaction and answers a BDAT LAST once.
            # With no accepted recipient the server refuses the command once.
            txn = head.transaction
            accepted = len(accepted_rcpts(txn)) if txn is not None and not txn.bdat_failed else 0
            head.remaining = max(1, accepted)
            head.per_recipient = accepted > 0
        head.remaining -= 1
        verb = head.verb
        # RFC 5321 §4.2 / §4.3.2: the session table says which replies can
        # answer this command (354 only DATA, 334 only AUTH, 220 the
        # STARTTLS go-ahead, RFC 3207 §4) and where the session goes.
        key = (self._table_lmtp, self._state, head.table_verb, reply.code)
        state = _NEXT_STATES.get(key)
        if state is None:
            try:
                state = next_state(self._table, self._state, head.table_verb, reply.code)
            except LocalProtocolError as exc:
                raise RemoteProtocolError(f"{exc} (reply to {verb})") from None
            if len(_NEXT_STATES) >= _MAX_NEXT_STATES:
                _NEXT_STATES.clear()
            _NEXT_STATES[key] = state
        if head.remaining <= 0:
            self._pending.popleft()
            self._group_enders -= head.ends_group
            before, self._state = self._state, state
            handler = _REPLY_HANDLERS.get(verb)
            if handler is not None:
                handler(self, head, reply, before)
        else:
            # LMTP: more replies to come for this end of data; the server is
            # inside the content state the command entered (a BDAT chunk)
            step = self._table[self._state].get(head.table_verb)
            if step is not None and step.on_command is not None:
                self._state = step.on_command
        if reply.code == 421:
            # RFC 5321 §3.8: the server is closing the connection.
            self._state = next_state(self._table, self._state, "CLOSE", 421)
        # The reply was built by from_lines() just now and is not shared yet;
        # attrs.evolve() would validate every line of it a second time.
        object.__setattr__(reply, "command", verb)
        return reply

    def _reply_ehlo(self, _head: _Pending, reply: Reply, _before: State) -> None:
        if not is_positive(reply):
            return  # a refused EHLO changes nothing (the client may try HELO)
        key = (reply.enhanced, reply.lines)
        caps = _CAPS_CACHE.get(key)
        if caps is None:
            try:
                caps = Capabilities.from_reply(reply)
            except LocalProtocolError as exc:
                raise RemoteProtocolError(f"malformed EHLO reply: {exc}") from None
            if len(_CAPS_CACHE) >= _MAX_CAPS:
                _CAPS_CACHE.clear()
            _CAPS_CACHE[key] = caps
        self._accept_hello("LHLO" if self.lmtp else "EHLO", caps)

    def _reply_helo(self, _head: _Pending, reply: Reply, _before: State) -> None:
        if not is_positive(reply):
            return
        # RFC 5321 §4.1.1.1: HELO negotiates no extension, whatever lines the
        # reply carries; in particular never REQUIRETLS (RFC 8689 §4.2.1 step 3).
        domain = reply.lines[0].split(" ", 1)[0]
        try:
            caps = Capabilities(domain or "unknown")
        except LocalProtocolError:
            caps = Capabilities("unknown")
        self._accept_hello("HELO", caps)

    def _accept_hello(self, verb: str, caps: Capabilities) -> None:
        self._caps = caps
        self._pipelining = "PIPELINING" in caps
        self._chunking = "CHUNKING" in caps
        self._hello = verb
        # RFC 5321 §4.1.4: an accepted EHLO/HELO resets the transaction.
        self._transaction = None

    def _reply_starttls(self, _head: _Pending, reply: Reply, _before: State) -> None:
        if is_positive(reply) and len(self._receive_buffer):
            raise _injection()

    def _reply_auth(self, _head: _Pending, reply: Reply, _before: State) -> None:
        if is_positive(reply):
            self._authenticated = True

    def _reply_mail(self, head: _Pending, reply: Reply, _before: State) -> None:
        txn = head.transaction
        assert txn is not None
        txn.mail_reply = reply
        if not is_positive(reply) and self._transaction is txn:
            self._transaction = None

    def _reply_rcpt(self, head: _Pending, reply: Reply, _before: State) -> None:
        txn = head.transaction
        assert txn is not None and isinstance(head.event, _RcptTo)
        txn.rcpt_replies.append((head.event, reply))

    def _reply_data(self, head: _Pending, reply: Reply, before: State) -> None:
        txn = head.transaction
        assert txn is not None
        if reply.code == 354:
            self._writer = DataWriter()
            self._writer_transaction = txn
            # RFC 2920 §3.1: DATA accepted though no recipient was (every
            # RCPT reply is in: DATA ended the group).
            self._lone_dot = before is State.MAIL
        else:
            txn.data_refused = True

    def _reply_bdat(self, head: _Pending, reply: Reply, _before: State) -> None:
        txn = head.transaction
        assert txn is not None
        if not is_positive(reply) and not head.per_recipient:
            # RFC 3030 §2: after a failed BDAT the client "MUST NOT send any
            # additional BDAT segments", and "The resulting state from a
            # failed BDAT command is indeterminate.  A RSET command MUST be
            # issued ...".  That holds for a failed BDAT LAST too: the server
            # may still hold the transaction the client thought was over.
            txn.bdat_failed = True
            if self._transaction is None:
                self._transaction = txn

    # -- events in, bytes out ----------------------------------------------

    def send(self, event: Event) -> bytes:
        """The bytes for ``event``; raises LocalProtocolError (and produces
        nothing) when the event is not allowed now."""
        if self._error is not None:
            raise LocalProtocolError("the connection is broken (the server broke the protocol)")
        if self._finished:
            raise LocalProtocolError("the session is over")
        # A command event first: its verb by its type (what verb_of() looks
        # up), one dictionary look-up instead of a chain of isinstance().
        verb = _VERB_OF.get(type(event))
        if verb is None:
            if isinstance(event, MessageData):
                return self._send_content(event.data)
            if isinstance(event, EndOfMessage):
                return self._send_end()
            if isinstance(event, ConnectionClosed):
                self._finished = True
                return b""
            if not isinstance(event, Event):
                raise TypeError(f"a client sends events, not {type(event).__name__}")
            try:
                verb = verb_of(event)
            except LocalProtocolError:
                raise LocalProtocolError(f"a client cannot send {type(event).__name__}") from None
        self._check_can_send(verb, event)
        rule = _RULES.get(verb)
        if rule is not None:
            rule(self._view(), event)
        lmtp = self.lmtp
        if verb in _REMEMBERED:
            known = self._formatted.get(id(event))
            if known is not None and known[0] is event and known[1] is lmtp:
                data = known[2]
            else:
                data = format_command(event, lmtp=lmtp)
                if len(self._formatted) >= _MAX_FORMATTED:
                    self._formatted.clear()
                self._formatted[id(event)] = (event, lmtp, data)
        else:
            data = format_command(event, lmtp=lmtp)
        # Only now, with the bytes made, is the command on its way.
        self._after_send(verb, event)
        return data

    def _send_content_end(self, data: bytes) -> tuple[bytes, bytes]:
        """``send(MessageData(data))`` then ``send(EndOfMessage())``, the two
        results apart, for the operations of :mod:`smtp_rtls.session.client`
        (the whole content of a message at once): the same checks, without
        the two events."""
        if self._error is not None or self._finished or self._writer is None or not data:
            # the general path: its errors, BDAT, and no content at all
            return self.send(MessageData(data)), self.send(EndOfMessage())
        if type(data) is not bytes:
            MessageData(data)  # raises what the event would (a TypeError)
        return self._send_content(data), self._send_end()

    def _check_can_send(self, verb: str, event: Event) -> None:
        state = self._state
        if self._quit_sent:
            raise LocalProtocolError("the session is over")
        if state is State.STARTTLS:
            # RFC 3207 §4: "After receiving a 220 response to a STARTTLS
            # command, the client MUST start the TLS negotiation before
            # giving any other SMTP commands."
            raise LocalProtocolError("STARTTLS accepted: call start_tls() first")
        if self._writer is not None or self._bdat_left:
            raise LocalProtocolError("inside message content: send MessageData / EndOfMessage")
        if isinstance(event, _AuthResponse) != (state is State.AUTH):
            if state is State.AUTH:
                raise LocalProtocolError("a 334 challenge is waiting for an AuthResponse")
            raise LocalProtocolError("AuthResponse only answers a 334 challenge")
        if self._pending:
            if not self._pipelining:
                raise LocalProtocolError(
                    f"{self._pending[0].verb} has no reply yet and the server did not"
                    " offer PIPELINING"
                )
            if self._group_enders:
                blocker = next(p for p in self._pending if p.ends_group)
                # RFC 2920 §3.1: EHLO, DATA, VRFY, EXPN, NOOP, QUIT (and the
                # commands of other extensions) end a group.
                raise LocalProtocolError(f"{blocker.verb} ends a pipelined group: wait for it")
        if verb == "QUIT":
            return
        if state is State.CLOSED:
            raise LocalProtocolError("the server is closing the connection (421)")
        if state is State.REFUSED:
            raise LocalProtocolError("the server refused the session: only QUIT (RFC 5321 §3.1)")
        txn = self._transaction
        if txn is not None and txn.bdat_failed and verb != "RSET":
            # RFC 3030 §2: "A RSET command MUST be issued to clear the
            # transaction before additional commands may be sent."
            raise LocalProtocolError("a BDAT failed: RSET is the only next command")

    def _push(self, pending: _Pending) -> None:
        self._pending.append(pending)
        self._group_enders += pending.ends_group

    def _view(self) -> SessionView:
        # The last view, or the one before it, while its facts hold: each
        # message goes from no transaction (MAIL) to its transaction (RCPT,
        # DATA) and back, so two views serve them all.  A SessionView is
        # immutable (a ClientTransaction changes in place, and the rules
        # read it as it is now).
        last, other = self._last_view, self._other_view
        for view in (last, other):
            if (
                view is not None
                and view.txn is self._transaction
                and view.caps is self._caps
                and view.hello is self._hello
                and view.tls is self._tls
                and view.authenticated is self._authenticated
                and view.lmtp is self.lmtp
            ):
                if view is other:
                    self._last_view, self._other_view = other, last
                return view
        view = SessionView(
            self._caps, self._hello, self._tls, self._transaction, self._authenticated, self.lmtp
        )
        self._last_view, self._other_view = view, last
        return view

    def _after_send(self, verb: str, event: Event) -> None:
        txn = self._transaction
        pending = _Pending(verb, event, txn)
        if verb == "EHLO" and self.lmtp:
            pending.verb = pending.table_verb = "LHLO"
        elif verb == "MAIL":
            assert isinstance(event, _MailFrom)
            txn = self._transaction = new_transaction(event)
            pending.transaction = txn
        elif verb == "RCPT":
            assert txn is not None
            txn.rcpts_sent += 1
        elif verb == "DATA":
            assert txn is not None
            txn.data_sent = True
            txn.data_refused = False
        elif verb == "BDAT":
            assert txn is not None and isinstance(event, _Bdat)
            txn.bdat_sent = True
            self._bdat_left = event.size
            if event.last:
                pending.table_verb = "BDAT LAST"
                self._transaction = None
                if self.lmtp:
                    pending.remaining = None
        elif verb == "RSET":
            self._transaction = None
        elif verb == "QUIT":
            self._quit_sent = True
        pending.ends_group = not (
            verb in _GROUP_CONTINUES and not (isinstance(event, _Bdat) and event.last)
        )
        self._pending.append(pending)
        self._group_enders += pending.ends_group

    # -- content -------------------------------------------------------------

    def _send_content(self, data: bytes) -> bytes:
        if self._bdat_left:
            if len(data) > self._bdat_left:
                raise LocalProtocolError(
                    f"{len(data)} octets for a BDAT chunk with {self._bdat_left} left"
                )
            self._bdat_left -= len(data)
            # RFC 3030 §2: the chunk is sent octet for octet (binary-safe).
            return data
        writer = self._writer
        if writer is None:
            raise LocalProtocolError("MessageData outside message content")
        txn = self._writer_transaction
        assert txn is not None
        if self._lone_dot:
            # RFC 2920 §3.1: DATA accepted but no recipient was: the content
            # goes nowhere; "the client SMTP should send a single dot".
            raise LocalProtocolError("no recipient was accepted: send EndOfMessage (a lone dot)")
        txn.content_started = True
        return writer.write(data)

    def _send_end(self) -> bytes:
        writer = self._writer
        if writer is not None:
            txn = self._writer_transaction
            out = writer.end()
            self._writer = None
            self._writer_transaction = None
            if self._transaction is txn:
                self._transaction = None
            self._push(
                _Pending("EOM", None, txn, ends_group=False, remaining=None if self.lmtp else 1)
            )
            return out
        if self._bdat_left:
            raise LocalProtocolError(f"{self._bdat_left} octets of the BDAT chunk are missing")
        txn = self._transaction
        if txn is not None and txn.bdat_sent:
            # The BDAT equivalent of the end of data: an empty last chunk.
            return self.send(Bdat(0, last=True))
        raise LocalProtocolError("EndOfMessage outside message content")

    # -- TLS -------------------------------------------------------------------

    def start_tls(self, info: TLSInfo) -> None:
        """Tell the connection the TLS handshake succeeded.

        Allowed right after the 220 reply to STARTTLS, or before anything
        was received (implicit TLS, RFC 8314 §3).  RFC 3207 §4.2: the client
        "MUST discard any knowledge obtained from the server" before TLS,
        so the capabilities are forgotten and EHLO must be sent again.
        """
        if not isinstance(info, TLSInfo):
            raise TypeError("start_tls() takes a TLSInfo")
        if self._tls is not None:
            raise LocalProtocolError("TLS is already active (RFC 3207 §4.2)")
        implicit = (
            self._state is State.GREETING
            and not len(self._receive_buffer)
            and not self._reader.partial
        )
        if not (self._state is State.STARTTLS or implicit):
            raise LocalProtocolError("start_tls() only after a 220 reply to STARTTLS")
        if len(self._receive_buffer):
            self._error = _injection()
            raise self._error
        self._tls = info
        self._state = next_state(self._table, self._state, "TLS", 200)
        self._caps = None
        self._pipelining = False
        self._chunking = False
        self._hello = None
        self._transaction = None
        self._authenticated = False


# The reply handlers by the verb of the command answered (a dictionary look-up
# per reply, not a string built and a getattr()).
_REPLY_HANDLERS: Final = {
    "EHLO": ClientConnection._reply_ehlo,
    "LHLO": ClientConnection._reply_ehlo,
    "HELO": ClientConnection._reply_helo,
    "STARTTLS": ClientConnection._reply_starttls,
    "AUTH": ClientConnection._reply_auth,
    "MAIL": ClientConnection._reply_mail,
    "RCPT": ClientConnection._reply_rcpt,
    "DATA": ClientConnection._reply_data,
    "BDAT": ClientConnection._reply_bdat,
}
