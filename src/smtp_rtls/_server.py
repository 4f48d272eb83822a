"""ServerConnection: the receiving side of SMTP (and LMTP), without I/O.

Bytes go in with :meth:`ServerConnection.receive_data`, events come out of
:meth:`ServerConnection.next_event`, replies go in with
:meth:`ServerConnection.send` and come back as bytes to write.  The
connection answers by itself whatever the protocol decides (syntax, sequence,
limits, STARTTLS rules, REQUIRETLS on plaintext) and reports each such answer
as a :class:`CommandRejected` event; every decision that belongs to the
application (EHLO, MAIL, RCPT, DATA/BDAT, end of message, VRFY, EXPN, AUTH)
is an event, after which ``next_event()`` returns :data:`PAUSED` until the
application has sent its reply.

The connection is glue: the session's states and transitions are the tables
of ``_state``, reading is ``_readers`` (chosen by state), the refusal rules
are ``_server_rules``, and every reply goes out through one method.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final, TypeAlias

import attrs

from ._capabilities import Capabilities
from ._commands import (
    CommandSyntaxError,
    mail_lane_keys,
    parse_bdat_size,
    parse_mail_lane,
    parse_rcpt_lane,
    parse_split_command,
)
from ._config import ServerConfig
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Auth,
    AuthResponse,
    Bdat,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Envelope,
    Event,
    Helo,
    Help,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTLS,
)
from ._framing import BdatReader, LineBuffer
from ._readers import (
    CommandLine,
    ContentReader,
    read_command_line,
    read_sasl_line,
)
from ._reply import MAX_REPLY_LINE, Reply
from ._sentinels import NEED_DATA, PAUSED
from ._server_rules import check_auth, check_data, check_mail, check_rcpt, sequence_reply
from ._slots import slot_filler
from ._state import TRANSACTION_STATES, State, next_state, transitions_for
from ._tls import TLSInfo

__all__ = ["ServerConnection"]

NextEvent: TypeAlias = Event | type[NEED_DATA] | type[PAUSED]

# For events made of parts checked already (MessageData holds bytes the
# readers cut; an Envelope, the accepted commands): attrs' __init__ would
# check them again (_slots.slot_filler).
_make_envelope: Final[Callable[[MailFrom, tuple[RcptTo, ...]], Envelope]] = slot_filler(
    Envelope, "mail_from", "recipients"
)
_message_data: Final[Callable[[bytes], MessageData]] = slot_filler(MessageData, "data")
_end_of_message: Final[Callable[[Envelope | None], EndOfMessage]] = slot_filler(
    EndOfMessage, "envelope"
)

# Final aliases of names imported from modules mypyc does not compile, for
# the per-message paths (why: smtp_rtls._build).
_MailFrom: Final = MailFrom
_RcptTo: Final = RcptTo
_Reply: Final = Reply
_NEED_DATA: Final = NEED_DATA
_PAUSED: Final = PAUSED


# The states as module constants: an enum member looked up on its class
# (``State.DATA``) costs about 70 ns, and the hot paths look up several
# per command.
_AUTH: Final = State.AUTH
_BDAT: Final = State.BDAT
_CLOSED: Final = State.CLOSED
_DATA: Final = State.DATA
_GREETING: Final = State.GREETING
_RCPT: Final = State.RCPT
_REFUSED: Final = State.REFUSED
_STARTTLS: Final = State.STARTTLS
_TLS_REFUSED: Final = State.TLS_REFUSED

# The states where the next input is a command line (see next_event).
_COMMAND_STATES: Final = frozenset(State) - {_STARTTLS, _DATA, _BDAT, _AUTH, _CLOSED}
# RFC 3207 §4: with STARTTLS required, only these may precede it.
_BEFORE_TLS_OK: Final = frozenset({"EHLO", "HELO", "LHLO", "STARTTLS", "NOOP", "QUIT"})
_HELLO_VERBS: Final = frozenset({"EHLO", "HELO", "LHLO"})
SASL_LINE: Final = 12288
# The connection's own answer to RSET and NOOP, made (and formatted) once.
_OK: Final = Reply(250, "OK", "2.0.0")
# What a BDAT chunk that can never end is discarded as: "forever".
_ENDLESS: Final = 1 << 128


class ServerConnection:
    """One SMTP (or LMTP) session, seen from the server.

    ``hostname`` is the server's name for the EHLO reply's first line.  The
    application sends the greeting itself, as its first :meth:`send`
    (``Reply(220, ...)``, or ``Reply(554, ...)`` to refuse the session, after
    which only QUIT is accepted, RFC 5321 §3.1).

    For a positive EHLO (or LHLO) reply the application gives only the
    greeting text, ``Reply(250, "Hello")``; the connection writes the
    extension lines of :attr:`capabilities` after it.
    """

    def __init__(self, hostname: str, config: ServerConfig | None = None) -> None:
        self.hostname = hostname
        self.config = config if config is not None else ServerConfig()
        profile = _profile(self.config, hostname)
        self._profile = profile
        self._table = profile.table
        self._row = profile.table[_GREETING]
        self._offer = profile.offers[False]
        self._line_max = profile.line_max
        self._normalise = profile.normalise
        self._targets = profile.targets
        # The lanes (see _LANES) serve only sessions where no gate stands
        # before the usual commands: RFC 3207 §4's "530 Must issue a
        # STARTTLS command first" is the general path's.
        self._lanes_open = not self.config.require_starttls
        self._lanes = _LANES
        self._max_backlog = self.config.max_backlog
        self._receive_buffer = LineBuffer(self._line_max, lf_ends_line=self._normalise)
        self._out = bytearray()
        self._ready: deque[Event] = deque()
        self._state = _GREETING
        # The greeting is the first reply owed (RFC 5321 §3.1).
        self._pending: Event | None = None
        self._pending_verb: str | None = "GREETING"
        self._owed = 1  # replies owed to the pending verb (LMTP: one per recipient)
        self._tls: TLSInfo | None = None
        self._peer_closed = False
        self._error: RemoteProtocolError | None = None
        self._errors = 0  # refusals since the last accepted command
        # A refused BDAT chunk read outside a transaction, to be discarded
        # before its reply (RFC 3030 §2).
        self._discard: BdatReader | None = None
        self._discard_reply: Reply | None = None
        self._reset_session()

    # -- public state ----------------------------------------------------------

    @property
    def state(self) -> State:
        """Where the session is (the same :class:`State` the client reports)."""
        return self._state

    @property
    def tls(self) -> TLSInfo | None:
        """The TLS session, once :meth:`start_tls` was called."""
        return self._tls

    @property
    def client_name(self) -> str | None:
        """The argument of the client's accepted EHLO/HELO/LHLO, if any."""
        return self._hello_name

    @property
    def extended(self) -> bool:
        """True after an accepted EHLO/LHLO (service extensions in force)."""
        return self._extended

    @property
    def capabilities(self) -> Capabilities:
        """What the EHLO reply offers now (it depends on whether TLS is on)."""
        return self._offer.capabilities

    @property
    def envelope(self) -> Envelope | None:
        """The open transaction: the accepted MAIL and RCPTs so far."""
        mail = self._mail
        if mail is None:
            return None
        return _make_envelope(mail, tuple(self._rcpts))

    @property
    def pending(self) -> Event | None:
        """The event the application owes a reply to, if any."""
        # Not before the application has read it: an EndOfMessage queued
        # behind the content's last MessageData is owed only once returned.
        return self._pending if not self._ready else None

    # -- input -------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Give the connection bytes from the peer; ``b""`` means it closed.

        The undecoded input is bounded by ``config.max_backlog``: past it the
        bytes are dropped and ``next_event()`` raises RemoteProtocolError.
        Call ``next_event()`` until it returns NEED_DATA before reading more.
        """
        if self._peer_closed:
            raise LocalProtocolError("receive_data() after the peer closed the connection")
        if not data:
            self._peer_closed = True
            return
        if self._state is _STARTTLS:
            # RFC 3207 §4: after the 220 the client MUST start the handshake
            # before anything else.  Plaintext bytes here were either
            # pipelined behind STARTTLS or injected by a man in the middle
            # (CVE-2011-0411): they are never parsed (see _starttls_injection).
            self._starttls_injection()
            return
        buf = self._receive_buffer
        # (buf._data is empty exactly when nothing is buffered: see LineBuffer)
        if (len(buf) if buf._data else 0) + len(data) > self._max_backlog:
            self._fail(
                f"more than {self.config.max_backlog} octets of unprocessed input",
                Reply(421, "Too much unprocessed input, closing connection", "4.7.0"),
            )
            return
        self._receive_buffer.feed(data)

    def next_event(self) -> NextEvent:
        """The next event, NEED_DATA, or PAUSED (a reply is owed).

        Raises only RemoteProtocolError, whatever the peer sent; after that
        the connection is unusable (every later call raises it again).
        """
        if self._error is not None:
            raise self._error
        if self._ready:
            return self._ready.popleft()
        if self._owed:
            return _PAUSED
        state = self._state
        if state is _CLOSED:
            return ConnectionClosed()
        try:
            if state in _COMMAND_STATES and self._discard is None:
                event = self._read_command()
            elif state is _STARTTLS:
                event = self._read_nothing()
            elif self._discard is not None:
                event = self._read_discard()
            elif state is _DATA or state is _BDAT:
                event = self._read_content()
            elif state is _AUTH:
                event = self._read_sasl()
            else:
                event = self._read_command()
        except LocalProtocolError as exc:  # pragma: no cover - a bug, reported as such
            self._fail(f"internal error on peer input: {exc}")
            raise self._error from exc  # type: ignore[misc]
        if self._error is not None:
            raise self._error
        return event

    # -- output ------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes of replies made so far (own and the application's), in order."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, reply: Reply) -> bytes:
        """Send the application's reply to the pending event (or the
        greeting); return all bytes to write (replies made earlier by the
        connection come first).

        Raises LocalProtocolError when no reply is owed, or when the reply
        cannot answer the command: a class the session table does not list
        for it (250 to DATA, 354 to MAIL, 334 to EHLO), or not the exact code
        it requires (220 to STARTTLS, RFC 3207 §4).
        """
        if type(reply) is not _Reply and not isinstance(reply, _Reply):
            raise TypeError(f"a server sends Reply objects, not {type(reply).__name__}")
        verb = self._pending_verb
        if verb is None or self._ready:
            # RFC 5321 §4.1.1.4: the reply to the end of data comes after the
            # whole content; with the end queued behind content not read yet,
            # a reply now would accept a message the application never saw end.
            raise LocalProtocolError("no reply is owed now (next_event() did not return PAUSED)")
        code = reply.code
        target = self._targets.get((self._state, verb, code))
        if target is None:
            target = self._checked_target(verb, code)
        pending = self._pending
        positive = 200 <= code < 300
        if positive and verb in _HELLO_VERBS:
            assert isinstance(pending, Ehlo | Helo)
            wire = self._hello_reply(pending, reply)
        else:
            wire = reply._wire or reply.format()
        self._owed -= 1
        if self._owed <= 0:
            self._pending = None
            self._pending_verb = None
            if positive or code == 354:
                if verb == "RCPT":
                    self._errors = 0
                    self._rcpts.append(pending)  # type: ignore[arg-type]
                else:
                    self._after_reply(verb, pending)
            self._enter(target)
        if self._out:
            self._out += wire
            return self.data_to_send()
        return wire

    def start_tls(self, info: TLSInfo, *, acceptable: bool = True) -> None:
        """Tell the connection the TLS handshake after STARTTLS succeeded (or,
        before the greeting, that the session uses implicit TLS).

        RFC 3207 §4.2: the server discards all knowledge obtained from the
        client before TLS (the EHLO argument, the transaction, buffered
        input) and the client must send EHLO again.  With
        ``acceptable=False`` (the handshake gave too little security for
        this server), every command but QUIT is answered ``554 5.7.0``
        (RFC 3207 §4.1).
        """
        if not isinstance(info, TLSInfo):
            raise TypeError("start_tls() takes a TLSInfo")
        # Implicit TLS (RFC 8314 §3, port 465): the session is protected
        # from its first byte; the greeting comes after the handshake.
        implicit = self._state is _GREETING and self._tls is None and not len(self._receive_buffer)
        if not implicit and self._state is not _STARTTLS:
            raise LocalProtocolError(
                "start_tls() is only legal after a 220 reply to STARTTLS, or before the "
                "greeting (implicit TLS)"
            )
        if len(self._receive_buffer):
            self._starttls_injection()
        self._tls = info
        self._offer = self._profile.offers[True]
        self._lanes_open = True
        self._reset_session()
        self._enter(next_state(self._table, self._state, "TLS", 200 if acceptable else 500))

    # -- internals: session bookkeeping ------------------------------------------

    def _reset_session(self) -> None:
        self._hello_name: str | None = None
        self._extended = False
        self._authenticated = False
        self._reset_transaction()

    def _reset_transaction(self) -> None:
        self._mail: MailFrom | None = None
        self._rcpts: list[RcptTo] = []
        self._content: ContentReader | None = None
        self._chunk: Bdat | None = None

    def _enter(self, state: State) -> None:
        # The one place the state changes; a mail transaction is open only
        # in TRANSACTION_STATES (one cut short by QUIT or a closed connection
        # stays visible in ``envelope``).
        if state not in TRANSACTION_STATES and state is not _CLOSED and self._mail:
            self._reset_transaction()
        # RFC 4954 §4: SASL lines "can be much longer than normal SMTP
        # commands"; 12288 octets is deemed enough for deployed mechanisms.
        self._receive_buffer.max_line = SASL_LINE if state is _AUTH else self._line_max
        self._state = state
        self._row = self._table[state]

    def _fail(self, msg: str, reply: Reply | None = None) -> None:
        # ``reply`` is what the application may send before closing (h11's
        # error_status_hint); the connection itself sends nothing more.
        if self._error is None:
            self._error = RemoteProtocolError(msg, reply)

    def _starttls_injection(self) -> None:
        # RFC 2920 §3.2 item 9 says a server must not flush its input buffer,
        # but RFC 3207 §4 makes STARTTLS the last command of a group and
        # RFC 3207 §4.2 has the server forget everything from before TLS.
        # Executing these bytes inside the TLS session would credit plaintext
        # (possibly a MITM's) to the protected session; dropping them quietly
        # would hide the attack.  So the connection fails loudly instead.
        self._receive_buffer.take_all()
        # No reply hint: the peer expects a TLS handshake now, so the only
        # sensible answer is to close the connection.
        self._fail("plaintext data after STARTTLS (command injection refused, RFC 3207 §4)")

    def _checked_target(self, verb: str, code: int) -> State:
        # The state a reply leads to, once the reply was found legal for
        # the verb in this state; remembered for the profile, so that each
        # (state, verb, code) is checked once per configuration.
        if verb == "GREETING" and code != 220 and code != 554:
            raise LocalProtocolError("the greeting is 220 or 554 (RFC 5321 §3.1)")
        try:
            target = next_state(self._table, self._state, verb, code)
        except LocalProtocolError as exc:
            raise LocalProtocolError(f"{exc} (RFC 5321 §4.2, §4.3.2)") from None
        self._targets[(self._state, verb, code)] = target
        return target

    def _answer(self, verb: str, reply: Reply) -> None:
        """A reply the connection makes itself; the table moves the state."""
        # (its bytes as kept, when they are: format() is a Python method)
        self._out += reply._wire or reply.format()
        code = reply.code
        target = self._targets.get((self._state, verb, code))
        self._enter(target if target is not None else self._checked_target(verb, code))

    def _reject(self, verb: str, reply: Reply, command: str | None = None) -> CommandRejected:
        command = command if command is not None else verb
        self._errors += 1
        limit = self.config.max_errors
        if limit and self._errors >= limit:
            # Junk must cost the sender more than it costs us: past the limit
            # (Postfix's smtpd_hard_error_limit habit) the session ends with
            # 421 (RFC 5321 §3.8) instead of one more refusal.
            reply = Reply(421, "Too many errors, closing connection", "4.7.0")
            verb = "CLOSE"
        self._answer(verb, reply)
        return CommandRejected(command, reply)

    def _close(self, command: str, reply: Reply) -> CommandRejected:
        self._answer("CLOSE", reply)
        return CommandRejected(command, reply)

    def _decision(self, verb: str, event: Event) -> Event:
        self._pending = event
        self._pending_verb = verb
        self._owed = 1
        return event

    def _hello_reply(self, hello: Ehlo | Helo, reply: Reply) -> bytes:
        if len(reply.lines) != 1:
            raise LocalProtocolError("give a one-line greeting text; extensions are added")
        if type(hello) is Helo:
            return Reply(reply.code, f"{self.hostname} {reply.lines[0]}".rstrip()).format()
        return self._offer.hello_reply(reply)

    def _after_reply(self, verb: str, event: Event | None) -> None:
        # What a positive (or 354) reply leaves in force; the state is the
        # table's.  ``verb`` is the pending verb, which names the event's class.
        self._errors = 0
        if verb == "MAIL":
            assert isinstance(event, _MailFrom)
            self._mail = event
        elif verb == "RCPT":
            assert isinstance(event, _RcptTo)
            self._rcpts.append(event)
        elif verb == "DATA":
            self._content = ContentReader(self.config.max_message_size, normalise=self._normalise)
            self._content.start_data()
        elif verb in _HELLO_VERBS:
            assert isinstance(event, Ehlo | Helo)
            self._hello_name = event.domain
            self._extended = verb != "HELO"
        elif verb == "AUTH":
            self._authenticated = True

    # -- internals: reading commands -------------------------------------------

    def _read_nothing(self) -> NextEvent:
        # STARTTLS answered with 220: only the handshake may come now.
        if len(self._receive_buffer):
            self._starttls_injection()
            raise self._error  # type: ignore[misc]
        return ConnectionClosed() if self._peer_closed else NEED_DATA

    def _read_command(self) -> NextEvent:
        buf = self._receive_buffer
        if not buf._data and not self._peer_closed:
            # the usual call after the last command of a read
            return _NEED_DATA
        got = read_command_line(buf, reject_bare=not self._normalise)
        if got is None:
            if self._peer_closed:
                self._enter(_CLOSED)
                return ConnectionClosed()
            return _NEED_DATA
        if isinstance(got, _Reply):
            if got.code == 421:
                return self._close("BDAT", got)
            return self._reject("", got)
        return self._command(got)

    def _read_sasl(self) -> NextEvent:
        got = read_sasl_line(self._receive_buffer)
        if got is None:
            if self._peer_closed:
                self._enter(_CLOSED)
                return ConnectionClosed()
            return _NEED_DATA
        if isinstance(got, _Reply):
            return self._reject("AUTH", got)
        if got == "*":
            # RFC 4954 §4: a "*" cancels; the server MUST reject the AUTH
            # command with a 501 reply.
            return self._reject("AUTH", Reply(501, "Authentication cancelled", "5.0.0"))
        try:
            event = AuthResponse(got)
        except LocalProtocolError:
            return self._reject("AUTH", Reply(501, "Cannot decode AUTH response", "5.5.2"))
        return self._decision("AUTH", event)

    def _command(self, got: CommandLine) -> NextEvent:
        verb, line, length, arg = got
        if self._lanes_open:
            lane = self._lanes.get(verb)
            if lane is not None:
                event = lane(self, arg, line, length)
                if event is not None:
                    return event
        if verb == "BDAT":
            return self._bdat(line)
        state = self._state
        if verb != "QUIT" and (state is _REFUSED or state is _TLS_REFUSED):
            if state is _REFUSED:
                # RFC 5321 §3.1: after a 554 greeting, 503 to all but QUIT
                return self._reject(verb, Reply(503, "No service: only QUIT is accepted", "5.5.1"))
            if state is _TLS_REFUSED:
                # RFC 3207 §4.1: unsatisfactory TLS: 554 to every command but QUIT
                return self._reject(verb, Reply(554, "TLS session not acceptable", "5.7.0"))
        if self.config.require_starttls and self._tls is None and verb not in _BEFORE_TLS_OK:
            # RFC 3207 §4: "530 Must issue a STARTTLS command first"
            return self._reject(verb, Reply(530, "Must issue a STARTTLS command first", "5.7.0"))
        step = self._row.get(verb)
        if step is None and verb in _HELLO_VERBS:
            # the other protocol's greeting (LHLO in SMTP, EHLO/HELO in LMTP)
            return self._reject(
                verb, Reply(500, f"{verb} is not a command of this protocol", "5.5.1")
            )
        if length > self._offer.limits.get(verb, self.config.max_command_line):
            return self._reject(verb, Reply(500, "Line too long", "5.5.2"))
        mail = self._mail
        try:
            event = parse_split_command(
                verb,
                arg,
                line,
                utf8=mail is not None and mail.smtputf8,
                smtputf8=self._extended and self._offer.smtputf8,
            )
        except CommandSyntaxError as exc:
            if exc.reply.code in (500, 502) or step is not None:
                return self._reject(verb, exc.reply)
            event = None
        if step is None:
            return self._reject(verb, sequence_reply(verb, state))
        assert event is not None
        return self._dispatch(verb, event)

    def _dispatch(self, verb: str, event: Event) -> NextEvent:
        # The parser makes exactly these classes: ``type() is`` picks the
        # branch without a chain of isinstance() calls, the likeliest first.
        kind = type(event)
        refusal: Reply | None = None
        if kind is MailFrom:
            assert isinstance(event, MailFrom)
            refusal = check_mail(event, self._offered_keys(), self.config)
        elif kind is RcptTo:
            assert isinstance(event, RcptTo)
            refusal = check_rcpt(event, self._offered_keys(), self.config, len(self._rcpts))
        elif kind is Data:
            refusal = check_data(self._state, self._mail, lmtp=self.config.lmtp)
            if refusal is not None and refusal.code == 503 and self._state is _RCPT:
                # RFC 3030 §3: DATA after BODY=BINARYMIME: 503, and the
                # transaction MUST be reset (as RSET would).
                self._enter(next_state(self._table, self._state, "RSET", 250))
        elif kind is Rset or kind is Noop:
            self._answer(verb, _OK)
            return event
        elif kind is Quit:
            self._answer(verb, self._profile.quit)
            return event
        elif kind is Help:
            self._answer(verb, Reply(214, self.config.help_text, "2.0.0"))
            return event
        elif kind is StartTLS:
            if not self.config.starttls:
                refusal = Reply(502, "STARTTLS not offered", "5.5.1")
            elif self._tls is not None:
                # RFC 3207 §4.2: no second TLS session
                refusal = Reply(503, "TLS already active", "5.5.1")
        elif kind is Auth:
            assert isinstance(event, Auth)
            refusal = check_auth(
                event,
                self.config,
                tls=self._tls is not None,
                extended=self._extended,
                authenticated=self._authenticated,
            )
        if refusal is not None:
            return self._reject(verb, refusal)
        # the line's verb: the event's own (LHLO only in LMTP, whose table
        # alone has it)
        return self._decision(verb, event)

    def _offered_keys(self) -> frozenset[str]:
        # HELO opens no service extensions (RFC 5321 §4.1.1.1)
        return self._offer.keys if self._extended else frozenset()

    # -- internals: BDAT ---------------------------------------------------------

    def _bdat(self, line: str) -> NextEvent:
        # RFC 3030 §2: whatever the answer, the chunk's octets follow the
        # command line and are never read as commands: a refused chunk is
        # read and discarded before its reply.
        parsed = parse_bdat_size(line[5:]) if line[4:5] == " " else None
        if parsed is None:
            # Without a size the chunk's end cannot be found: close rather
            # than read its octets as commands.
            return self._close(
                "BDAT", Reply(421, "Cannot find the end of the BDAT chunk, closing", "4.5.2")
            )
        size, last = parsed
        state = self._state
        refusal: Reply | None = None
        if state is _REFUSED:
            refusal = Reply(503, "No service: only QUIT is accepted", "5.5.1")
        elif state is _TLS_REFUSED:
            refusal = Reply(554, "TLS session not acceptable", "5.7.0")
        elif self.config.require_starttls and self._tls is None:
            refusal = Reply(530, "Must issue a STARTTLS command first", "5.7.0")
        elif not line.isascii() or (line[5:].partition(" ")[2] and not last):
            refusal = Reply(501, "Syntax: BDAT size [LAST] (RFC 3030 §2)", "5.5.4")
        elif "CHUNKING" not in self._offered_keys():
            refusal = Reply(502, "CHUNKING not offered", "5.5.1")
        elif "BDAT" not in self._table[state]:
            # RFC 3030 §2: BDAT without a transaction (or after a failed
            # chunk, or after LAST)
            refusal = sequence_reply("BDAT", state)
        elif size is None or (
            self.config.max_message_size
            and size > self.config.max_message_size - self._octets_so_far()
        ):
            refusal = Reply(552, "Message size exceeds fixed maximum", "5.3.4")
        octets = _ENDLESS if size is None else size
        verb = "BDAT LAST" if last else "BDAT"
        step = self._table[state].get(verb)
        if step is None or step.on_command is None:
            # outside a transaction: discard, answer, and the state stays
            assert refusal is not None
            self._discard = BdatReader(octets)
            self._discard_reply = refusal
            return self._read_discard()
        self._enter(step.on_command)
        if self._content is None:
            self._content = ContentReader(self.config.max_message_size, normalise=self._normalise)
        if refusal is not None and self._content.error is None:
            self._content.error = refusal
        self._content.start_chunk(octets)
        if refusal is not None or size is None:
            self._chunk = None
            return self._read_content()
        self._chunk = chunk = Bdat(size, last=last)
        return chunk

    def _octets_so_far(self) -> int:
        return self._content.octets if self._content is not None else 0

    def _read_discard(self) -> NextEvent:
        reader = self._discard
        assert reader is not None
        data, start = self._receive_buffer.view()
        _content, done, stop = reader.feed_at(data, start)
        self._receive_buffer.advance(stop)
        if done:
            reply = self._discard_reply
            assert reply is not None
            self._discard = self._discard_reply = None
            return self._reject("BDAT", reply)
        if self._peer_closed:
            self._fail("connection closed inside a BDAT chunk")
            raise self._error  # type: ignore[misc]
        return _NEED_DATA

    # -- internals: reading content ----------------------------------------------

    def _read_content(self) -> NextEvent:
        content = self._content
        assert content is not None
        bdat = self._state is _BDAT
        while True:
            if not self._receive_buffer._data and not (bdat and content.chunk_left == 0):
                if self._peer_closed:
                    self._fail("connection closed inside message content")
                    raise self._error  # type: ignore[misc]
                return _NEED_DATA
            data, done = content.read(self._receive_buffer)
            if done:
                end = self._end_of_chunk() if bdat else self._end_of_data()
                if data:
                    if end is not _PAUSED:
                        self._ready.append(end)  # type: ignore[arg-type]
                    return _message_data(data)
                return end
            if data:
                return _message_data(data)

    def _end_of_data(self) -> NextEvent:
        content = self._content
        assert content is not None
        if content.error is not None:
            # the transaction ends with this reply (RFC 5321 §4.1.1.4)
            return self._reject("EOM", content.error, command="DATA")
        return self._end_of_message("EOM")

    def _end_of_chunk(self) -> NextEvent:
        content = self._content
        chunk = self._chunk
        assert content is not None
        if content.error is not None or chunk is None:
            # RFC 3030 §2: a failed chunk fails the transaction.
            verb = "BDAT LAST" if chunk is not None and chunk.last else "BDAT"
            error = content.error
            assert error is not None
            return self._reject(verb, error, command="BDAT")
        if chunk.last:
            return self._end_of_message("BDAT LAST")
        # the reply to a non-LAST chunk is owed now (RFC 3030 §2: a 250 per
        # chunk, sent once its octets are read)
        self._decision("BDAT", chunk)
        return _PAUSED

    def _end_of_message(self, verb: str) -> EndOfMessage:
        mail = self._mail
        envelope = _make_envelope(mail, tuple(self._rcpts)) if mail is not None else None
        eom = _end_of_message(envelope)
        self._decision(verb, eom)
        # RFC 2033 §4.2: LMTP answers the end of data once per recipient
        self._owed = len(self._rcpts) if self.config.lmtp else 1
        return eom


class _Offer:
    """The EHLO offer of a config with or without TLS, and what follows from
    it: built once per configuration and hostname, not per connection, EHLO
    or MAIL."""

    __slots__ = (
        "_replies",
        "_tails",
        "capabilities",
        "keys",
        "lane_keys",
        "limits",
        "mail_limit",
        "rcpt_limit",
        "smtputf8",
    )

    def __init__(self, config: ServerConfig, hostname: str, tls: bool) -> None:
        lines = config.offered(tls=tls)
        self.capabilities = Capabilities(hostname, "", lines)
        self.keys = frozenset(k.upper() for k, _ in lines)
        self.lane_keys = mail_lane_keys(self.keys)
        self.smtputf8 = "SMTPUTF8" in self.keys
        self.mail_limit = config.mail_line_limit(lines)
        self.rcpt_limit = config.rcpt_line_limit(lines)
        # The longest line each verb may have; any other verb has
        # config.max_command_line.
        self.limits = {"MAIL": self.mail_limit, "RCPT": self.rcpt_limit}
        if config.auth_mechanisms:
            # RFC 4954 §4: the initial response may make the line longer
            self.limits["AUTH"] = self.mail_limit
        # The extension lines of the EHLO reply, formatted (and so checked,
        # by Reply) once per reply code: only the first line, which carries
        # the application's greeting text, changes from one EHLO to the next.
        self._tails: dict[int, bytes] = {}
        # Whole EHLO replies by (code, greeting text): an application
        # usually greets every client alike, so most connections find theirs.
        self._replies: dict[tuple[int, str], bytes] = {}

    def hello_reply(self, reply: Reply) -> bytes:
        """The EHLO reply's bytes: the application's greeting text, then the offer."""
        greeting = reply.lines[0]
        key = (reply.code, greeting)
        wire = self._replies.get(key)
        if wire is None:
            if len(self._replies) >= _MAX_HELLO_REPLIES:
                self._replies.clear()
            wire = self._replies[key] = self._hello_reply(reply, greeting)
        return wire

    def _hello_reply(self, reply: Reply, greeting: str) -> bytes:
        domain = self.capabilities.domain
        first = f"{domain} {greeting}" if greeting else domain
        code = reply.code
        tail = self._tails.get(code)
        if tail is None:
            # the whole reply with an empty greeting, less its first line
            whole = attrs.evolve(self.capabilities.to_reply(), code=code).format()
            tail = self._tails[code] = whole[whole.index(b"\r\n") + 2 :]
        # The greeting text was checked by its Reply and the domain by the
        # reply above; what is left to check is the length of the line they
        # make together (RFC 5321 §4.5.3.1.5).
        head = first.encode("utf-8", "surrogateescape")
        if len(head) + 6 > MAX_REPLY_LINE:
            raise LocalProtocolError(
                f"reply line longer than {MAX_REPLY_LINE} octets (RFC 5321 §4.5.3.1.5)"
            )
        return b"%d%s%s\r\n%s" % (code, b"-" if tail else b" ", head, tail)


_MAX_HELLO_REPLIES: Final = 256


class _Profile:
    """Everything a connection needs that depends only on its configuration
    and hostname: the table, both offers, the replies the connection makes
    itself.  Built once and shared by every connection with the same two."""

    __slots__ = ("config", "line_max", "normalise", "offers", "quit", "table", "targets")

    def __init__(self, config: ServerConfig, hostname: str) -> None:
        self.config = config
        # Plain dicts: looked up several times per command.
        self.table = {state: dict(row) for state, row in transitions_for(config.lmtp).items()}
        self.offers = {tls: _Offer(config, hostname, tls) for tls in (False, True)}
        # The receive buffer holds the longest command line any state allows
        # (a MAIL or RCPT line with every allowance); in the AUTH state, a
        # SASL line (see ServerConnection._enter).
        self.line_max = max(max(o.mail_limit, o.rcpt_limit) for o in self.offers.values())
        self.normalise = config.bare_line_endings == "normalise"
        self.quit = Reply(221, f"{hostname} closing connection", "2.0.0")
        self.quit.format()
        # (state, verb, reply code) -> the state after that reply, for the
        # combinations found legal so far (see _checked_target).
        self.targets: dict[tuple[State, str, int], State] = {}


# Profiles by (id(config), hostname); the entry keeps its config alive, so
# the id cannot be reused while the entry exists.  Bounded: a server has a
# handful of configurations, and a program that makes many just rebuilds.
_PROFILES: Final[dict[tuple[int, str], _Profile]] = {}
_MAX_PROFILES: Final = 64


def _profile(config: ServerConfig, hostname: str) -> _Profile:
    key = (id(config), hostname)
    profile = _PROFILES.get(key)
    if profile is None or profile.config is not config:
        profile = _Profile(config, hostname)
        if len(_PROFILES) >= _MAX_PROFILES:
            _PROFILES.clear()
        _PROFILES[key] = profile
    return profile


# -- the lanes: the usual commands of a transaction in one step ---------------------
#
# Each lane takes (connection, argument, line, length) for one verb and
# returns the event the general path (_command, parse_split_command,
# _dispatch and the rules) would return for the usual shape of that
# command in the usual state, having made the same checks, or None for
# anything else, which the general path then decides with its reply.  So a
# lane never refuses: it only saves the general path's steps where nothing
# is refused.  tests/test_fast_paths.py runs sessions through both and
# compares every event and every octet.

_DATA_EVENT: Final = Data()
_NO_PARAMETERS: Final[dict[str, tuple[str, object]]] = {}
_RSET_EVENT: Final = Rset()
_QUIT_EVENT: Final = Quit()


def _lane_mail(conn: ServerConnection, arg: str, line: str, length: int) -> Event | None:
    offer = conn._offer
    if (
        length > offer.mail_limit
        or "MAIL" not in conn._row
        or not line.isascii()  # RFC 6531 §3.5: the general path decides
    ):
        return None
    # HELO opens no service extension (RFC 5321 §4.1.1.1): no parameter
    allowed = offer.lane_keys if conn._extended else _NO_PARAMETERS
    event = parse_mail_lane(arg, allowed, conn.config.max_message_size)
    if event is None:
        return None
    conn._pending = event
    conn._pending_verb = "MAIL"
    conn._owed = 1
    return event


def _lane_rcpt(conn: ServerConnection, arg: str, line: str, length: int) -> Event | None:
    mail = conn._mail
    if (
        length > conn._offer.rcpt_limit
        or "RCPT" not in conn._row
        or not line.isascii()
        or mail is None
        # RFC 5321 §4.5.3.1.10: the 452 is the general path's
        or len(conn._rcpts) >= conn.config.max_recipients
    ):
        return None
    event = parse_rcpt_lane(arg, utf8=mail.smtputf8)
    if event is None:
        return None
    conn._pending = event
    conn._pending_verb = "RCPT"
    conn._owed = 1
    return event


def _lane_data(conn: ServerConnection, arg: str, line: str, length: int) -> Event | None:
    mail = conn._mail
    if (
        arg
        or conn._state is not _RCPT  # RFC 5321 §3.3: no recipient yet: 554
        or mail is None
        or mail.body == "BINARYMIME"  # RFC 3030 §3: 503
        or length > conn.config.max_command_line
    ):
        return None
    conn._pending = _DATA_EVENT
    conn._pending_verb = "DATA"
    conn._owed = 1
    return _DATA_EVENT


def _lane_rset(conn: ServerConnection, arg: str, line: str, length: int) -> Event | None:
    if arg or length > conn.config.max_command_line or "RSET" not in conn._row:
        return None
    conn._answer("RSET", _OK)
    return _RSET_EVENT


def _lane_quit(conn: ServerConnection, arg: str, line: str, length: int) -> Event | None:
    if arg or length > conn.config.max_command_line or "QUIT" not in conn._row:
        return None
    conn._answer("QUIT", conn._profile.quit)
    return _QUIT_EVENT


def _hello_lane(verb: str, kind: type[Ehlo] | type[Helo]) -> Lane:
    make = slot_filler(kind, "domain")

    def lane(conn: ServerConnection, arg: str, line: str, length: int) -> Event | None:
        # What Ehlo/Helo's constructor checks (one word, no control
        # character: read_command_line refused those already) and
        # parse_split_command's ASCII rule (RFC 6531 §3.7.1 leaves EHLO ASCII).
        if (
            not arg
            or " " in arg
            or not line.isascii()
            or length > conn.config.max_command_line
            or verb not in conn._row  # the other protocol's greeting: 500
        ):
            return None
        event: Ehlo | Helo = make(arg)
        conn._pending = event
        conn._pending_verb = verb
        conn._owed = 1
        return event

    return lane


Lane: TypeAlias = Callable[[ServerConnection, str, str, int], Event | None]

_LANES: Final[dict[str, Lane]] = {
    "EHLO": _hello_lane("EHLO", Ehlo),
    "LHLO": _hello_lane("LHLO", Ehlo),
    "HELO": _hello_lane("HELO", Helo),
    "MAIL": _lane_mail,
    "RCPT": _lane_rcpt,
    "DATA": _lane_data,
    "RSET": _lane_rset,
    "QUIT": _lane_quit,
}
