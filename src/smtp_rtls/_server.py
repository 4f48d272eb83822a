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
"""

from __future__ import annotations

from collections import deque

import attrs

from ._capabilities import Capabilities
from ._commands import CommandSyntaxError, parse_command, split_verb
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
    Expn,
    Helo,
    Help,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTLS,
    Vrfy,
)
from ._framing import BdatReader, DataReader, LineBuffer, LineTooLong
from ._reply import Reply
from ._sentinels import NEED_DATA, PAUSED
from ._server_rules import (
    check_auth,
    check_mail,
    check_rcpt,
    sequence_reply,
)
from ._server_rules import reply as _r
from ._state import State, transitions_for
from ._tls import TLSInfo

__all__ = ["ServerConnection"]

NextEvent = Event | type[NEED_DATA] | type[PAUSED]

# RFC 3207 §4: with STARTTLS required, only these may precede it.
_BEFORE_TLS_OK = frozenset({"EHLO", "HELO", "LHLO", "STARTTLS", "NOOP", "QUIT"})


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
        self._table = transitions_for(self.config.lmtp)
        # What is offered depends only on TLS (the config is frozen): work it
        # out once for each case rather than for every MAIL and RCPT.
        self._offers = {tls: _Offer(self.config, tls) for tls in (False, True)}
        # The line buffer holds the longest command line any state allows.
        self._line_max = max(max(o.mail_limit, o.rcpt_limit) for o in self._offers.values())
        self._in = LineBuffer(
            self._line_max, lf_ends_line=self.config.bare_line_endings == "normalise"
        )
        self._out = bytearray()
        self._ready: deque[Event] = deque()
        self.state = State.GREETING
        self._pending: Event | None = None
        self._owed = 0  # replies owed to _pending (LMTP: one per recipient)
        self._tls: TLSInfo | None = None
        self._tls_refused = False
        self._peer_closed = False
        self._error: RemoteProtocolError | None = None
        # the state to return to after a BDAT chunk read only to be discarded
        self._discard_to: State | None = None
        self._reset_session()

    # -- public state ----------------------------------------------------------

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
        return Capabilities(self.hostname, "", self._offer.lines)

    @property
    def envelope(self) -> Envelope | None:
        """The open transaction: the accepted MAIL and RCPTs so far."""
        if self._mail is None:
            return None
        return Envelope(self._mail, tuple(self._rcpts))

    @property
    def pending(self) -> Event | None:
        """The event the application owes a reply to, if any."""
        return self._pending

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
        if self.state is State.STARTTLS:
            # RFC 3207 §4: after the 220 the client MUST start the handshake
            # before anything else.  Plaintext bytes here were either
            # pipelined behind STARTTLS or injected by a man in the middle
            # (CVE-2011-0411): they are never parsed (see _starttls_injection).
            self._starttls_injection()
            return
        if len(self._in) + len(data) > self.config.max_backlog:
            self._fail(
                f"more than {self.config.max_backlog} octets of unprocessed input",
                _r(421, "4.7.0", "Too much unprocessed input, closing connection"),
            )
            return
        self._in.feed(data)

    def next_event(self) -> NextEvent:
        """The next event, NEED_DATA, or PAUSED (a reply is owed).

        Raises only RemoteProtocolError, whatever the peer sent.
        """
        if self._error is not None:
            raise self._error
        if self._ready:
            return self._ready.popleft()
        if self._pending is not None or self.state is State.GREETING:
            return PAUSED
        if self.state is State.CLOSED:
            return ConnectionClosed()
        if self.state is State.STARTTLS:
            if len(self._in):
                self._starttls_injection()
                raise self._error  # type: ignore[misc]
            return ConnectionClosed() if self._peer_closed else NEED_DATA
        try:
            if self.state in (State.DATA, State.BDAT):
                event = self._read_content()
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
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, reply: Reply) -> bytes:
        """Send the application's reply to the pending event; return all
        bytes to write (replies made earlier by the connection come first).

        Raises LocalProtocolError when no reply is owed, or when the reply
        does not fit the command (e.g. 250 to DATA, 354 to MAIL).
        """
        if not isinstance(reply, Reply):
            raise LocalProtocolError(f"a server sends Reply objects, not {type(reply).__name__}")
        if self.state is State.GREETING:
            self._send_greeting(reply)
            return self.data_to_send()
        pending = self._pending
        if pending is None:
            raise LocalProtocolError("no reply is owed now (next_event() did not return PAUSED)")
        positive = reply.is_positive
        if isinstance(pending, Ehlo | Helo):
            if positive:
                reply = self._hello_reply(pending, reply)
        elif isinstance(pending, Data):
            if reply.code != 354 and not (reply.is_transient or reply.is_permanent):
                raise LocalProtocolError("DATA is answered with 354 or a 4xx/5xx reply")
            positive = reply.code == 354
        elif isinstance(pending, StartTLS):
            if reply.code != 220 and not (reply.is_transient or reply.is_permanent):
                raise LocalProtocolError("STARTTLS is answered with 220 or 4xx/5xx (RFC 3207 §4)")
            positive = reply.code == 220
        elif isinstance(pending, Auth | AuthResponse):
            if reply.is_intermediate and reply.code != 334:
                raise LocalProtocolError("AUTH continues only with 334 (RFC 4954 §4)")
        elif reply.is_intermediate:
            raise LocalProtocolError(f"{type(pending).__name__} cannot be answered with 3xx")
        self._out += reply.format()
        self._owed -= 1
        if self._owed <= 0:
            self._pending = None
            self._after_reply(pending, reply, positive)
        return self.data_to_send()

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
            raise LocalProtocolError("start_tls() needs a TLSInfo")
        if self.state is State.GREETING and self._tls is None and not len(self._in):
            # Implicit TLS (RFC 8314 §3, port 465): the session is protected
            # from its first byte; the greeting comes after the handshake.
            self._tls = info
            self._tls_refused = not acceptable
            return
        if self.state is not State.STARTTLS:
            raise LocalProtocolError(
                "start_tls() is only legal after a 220 reply to STARTTLS, or before the "
                "greeting (implicit TLS)"
            )
        if len(self._in):
            self._starttls_injection()
        self._tls = info
        self._tls_refused = not acceptable
        self._reset_session()
        self.state = State.CONNECTED

    # -- internals: session bookkeeping ------------------------------------------

    def _reset_session(self) -> None:
        self._hello_name: str | None = None
        self._extended = False
        self._authenticated = False
        self._reset_transaction()

    def _reset_transaction(self) -> None:
        self._mail: MailFrom | None = None
        self._rcpts: list[RcptTo] = []
        self._reader: DataReader | BdatReader | None = None
        self._octets = 0
        self._content_error: Reply | None = None
        self._chunk: Bdat | None = None

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
        self._in.take_all()
        # No reply hint: the peer expects a TLS handshake now, so the only
        # sensible answer is to close the connection.
        self._fail("plaintext data after STARTTLS (command injection refused, RFC 3207 §4)")

    def _reject(self, verb: str, reply: Reply) -> CommandRejected:
        self._out += reply.format()
        return CommandRejected(verb, reply)

    def _send_greeting(self, reply: Reply) -> None:
        # RFC 5321 §3.1 / §4.2: the greeting is 220, or 554 to refuse.
        if reply.code == 220:
            self.state = State.CONNECTED
        elif reply.code == 554:
            self.state = State.REFUSED
        else:
            raise LocalProtocolError("the greeting is 220 or 554 (RFC 5321 §3.1)")
        self._out += reply.format()

    def _hello_reply(self, hello: Ehlo | Helo, reply: Reply) -> Reply:
        if len(reply.lines) != 1:
            raise LocalProtocolError("give a one-line greeting text; extensions are added")
        if isinstance(hello, Helo):
            return Reply(reply.code, f"{self.hostname} {reply.lines[0]}".rstrip())
        caps = Capabilities(self.hostname, reply.lines[0], self.capabilities.entries)
        return attrs.evolve(caps.to_reply(), code=reply.code)

    def _after_reply(self, event: Event, reply: Reply, positive: bool) -> None:
        if isinstance(event, EndOfMessage) or (isinstance(event, Bdat) and not positive):
            # the transaction ends with the end-of-message reply, whatever it
            # is; a failed BDAT chunk fails the transaction (RFC 3030 §2)
            self._reset_transaction()
            self.state = State.READY
            return
        if isinstance(event, Bdat):
            self.state = State.BDAT_MORE
            return
        if isinstance(event, Auth | AuthResponse):
            if reply.code == 334:
                self.state = State.AUTH
            else:
                self._authenticated = reply.code == 235
                self.state = State.READY
            return
        on_positive, on_negative = self._table[self.state][_verb_of(event, self.config.lmtp)]
        target = on_positive if positive else on_negative
        if isinstance(event, Ehlo | Helo) and positive:
            self._reset_transaction()
            self._hello_name = event.domain
            self._extended = isinstance(event, Ehlo)
        elif isinstance(event, MailFrom) and positive:
            self._mail = event
        elif isinstance(event, RcptTo) and positive:
            self._rcpts.append(event)
        elif isinstance(event, Data) and positive:
            self._reader = DataReader()
        if target is not None:
            self.state = target

    # -- internals: reading commands -------------------------------------------

    def _read_command(self) -> NextEvent:
        try:
            raw = self._in.next_line()
        except LineTooLong:
            # RFC 5321 §4.5.3.1.4 / §4.5.3.1.9: "500 Line too long"; the rest
            # of the line is discarded as it arrives.
            return self._reject("", _r(500, "5.5.2", "Line too long"))
        if raw is None:
            if self._peer_closed:
                self.state = State.CLOSED
                return ConnectionClosed()
            return NEED_DATA
        if self.config.bare_line_endings == "reject" and (b"\r" in raw or b"\n" in raw):
            # RFC 5321 §2.3.8: CR and LF only ever appear together, as CRLF.
            return self._reject("", _r(500, "5.5.2", "Bare CR or LF in command"))
        if b"\r" in raw or b"\0" in raw:
            return self._reject("", _r(500, "5.5.2", "Control character in command"))
        line = raw.decode("utf-8", "surrogateescape")
        if self.state is State.AUTH:
            return self._auth_response(line)
        verb, _arg = split_verb(line)
        return self._command(verb, line, len(raw) + 2)

    def _auth_response(self, line: str) -> NextEvent:
        self.state = State.READY
        if line == "*":
            # RFC 4954 §4: a "*" cancels; the server MUST reject the AUTH
            # command with a 501 reply.
            return self._reject("AUTH", _r(501, "5.0.0", "Authentication cancelled"))
        try:
            event = AuthResponse(line)
        except LocalProtocolError:
            return self._reject("AUTH", _r(501, "5.5.2", "Cannot decode AUTH response"))
        self.state = State.AUTH
        return self._decision(event)

    def _decision(self, event: Event) -> Event:
        self._pending = event
        self._owed = 1
        return event

    def _command(self, verb: str, line: str, length: int) -> NextEvent:
        state = self.state
        if state is State.REFUSED:
            if verb == "QUIT":
                return self._quit()
            # RFC 5321 §3.1: after a 554 greeting, 503 to all but QUIT
            return self._reject(verb, _r(503, "5.5.1", "No service: only QUIT is accepted"))
        if self._tls_refused and verb != "QUIT":
            # RFC 3207 §4.1: unsatisfactory TLS: 554 to every command but QUIT
            return self._reject(verb, _r(554, "5.7.0", "TLS session not acceptable"))
        if self.config.require_starttls and self._tls is None and verb not in _BEFORE_TLS_OK:
            if verb == "BDAT":
                return self._discard_bdat(
                    line, _r(530, "5.7.0", "Must issue a STARTTLS command first")
                )
            # RFC 3207 §4: "530 Must issue a STARTTLS command first"
            return self._reject(verb, _r(530, "5.7.0", "Must issue a STARTTLS command first"))
        if verb == "BDAT":
            return self._bdat(line, length)
        allowed = self._table[state]
        if verb not in allowed and verb in ("EHLO", "HELO", "LHLO"):
            # the other protocol's greeting (LHLO in SMTP, EHLO/HELO in LMTP)
            return self._reject(
                verb, _r(500, "5.5.1", f"{verb} is not a command of this protocol")
            )
        limit = self._limit_for(verb)
        if length > limit:
            return self._reject(verb, _r(500, "5.5.2", "Line too long"))
        try:
            event = parse_command(line, utf8=self._mail is not None and self._mail.smtputf8)
        except CommandSyntaxError as exc:
            if exc.reply.code in (500, 502) or verb in allowed:
                return self._reject(verb, exc.reply)
            event = None
        if verb not in allowed:
            return self._reject(verb, sequence_reply(verb, self.state))
        assert event is not None
        return self._dispatch(verb, event)

    @property
    def _offer(self) -> _Offer:
        return self._offers[self._tls is not None]

    def _limit_for(self, verb: str) -> int:
        if verb == "MAIL":
            return self._offer.mail_limit
        if verb == "RCPT":
            return self._offer.rcpt_limit
        if verb == "AUTH" and self.config.auth_mechanisms:
            # RFC 4954 §4: the initial response may make the line longer
            return self._offer.mail_limit
        return self.config.max_command_line

    def _dispatch(self, verb: str, event: Event) -> NextEvent:
        if isinstance(event, Quit):
            return self._quit()
        if isinstance(event, Rset):
            self._reset_transaction()
            self.state = State.READY if self._hello_name is not None else State.CONNECTED
            self._out += _r(250, "2.0.0", "OK").format()
            return event
        if isinstance(event, Noop):
            self._out += _r(250, "2.0.0", "OK").format()
            return event
        if isinstance(event, Help):
            self._out += _r(214, "2.0.0", self.config.help_text).format()
            return event
        if isinstance(event, StartTLS):
            if not self.config.starttls:
                return self._reject(verb, _r(502, "5.5.1", "STARTTLS not offered"))
            if self._tls is not None:
                # RFC 3207 §4.2: no second TLS session
                return self._reject(verb, _r(503, "5.5.1", "TLS already active"))
            return self._decision(event)
        refusal: Reply | None = None
        if isinstance(event, Auth):
            refusal = check_auth(
                event,
                self.config,
                tls=self._tls is not None,
                extended=self._extended,
                authenticated=self._authenticated,
            )
        elif isinstance(event, MailFrom):
            refusal = check_mail(event, self._offered_keys(), self.config)
        elif isinstance(event, RcptTo):
            refusal = check_rcpt(event, self._offered_keys(), self.config, len(self._rcpts))
        if refusal is not None:
            return self._reject(verb, refusal)
        if isinstance(event, Data) and self._mail is not None and self._mail.body == "BINARYMIME":
            # RFC 3030 §3: DATA after BODY=BINARYMIME: 503, and the
            # transaction MUST be reset.
            self._reset_transaction()
            self.state = State.READY
            return self._reject(verb, _r(503, "5.5.1", "BINARYMIME needs BDAT; transaction reset"))
        return self._decision(event)  # EHLO, HELO, DATA, VRFY, EXPN

    def _quit(self) -> Quit:
        self.state = State.CLOSED
        self._out += _r(221, "2.0.0", f"{self.hostname} closing connection").format()
        return Quit()

    def _offered_keys(self) -> frozenset[str]:
        # HELO opens no service extensions (RFC 5321 §4.1.1.1)
        return self._offer.keys if self._extended else frozenset()

    # -- internals: BDAT ---------------------------------------------------------

    def _bdat(self, line: str, length: int) -> NextEvent:
        if length > self.config.max_command_line:
            # The chunk size cannot be trusted from a line we did not read.
            return self._reject("BDAT", _r(500, "5.5.2", "Line too long"))
        try:
            event = parse_command(line)
        except CommandSyntaxError as exc:
            # Without a size we cannot find the chunk's end: the octets that
            # follow will be read as commands, and most will be refused.
            return self._reject("BDAT", exc.reply)
        assert isinstance(event, Bdat)
        if "CHUNKING" not in self._offered_keys():
            return self._discard_bdat(line, _r(502, "5.5.1", "CHUNKING not offered"))
        if self.state not in (State.RCPT, State.BDAT_MORE):
            # RFC 3030 §2: BDAT without a transaction (or after a failed
            # chunk, or after LAST): read and discard the octets, then 503.
            return self._discard_bdat(line, sequence_reply("BDAT", self.state))
        self._chunk = event
        self._reader = BdatReader(event.size)
        self.state = State.BDAT
        return event

    def _discard_bdat(self, line: str, reply: Reply) -> NextEvent:
        try:
            event = parse_command(line)
        except CommandSyntaxError as exc:
            return self._reject("BDAT", exc.reply)
        assert isinstance(event, Bdat)
        self._chunk = event
        self._reader = BdatReader(event.size)
        self._content_error = reply
        self._discard_to = self.state
        self.state = State.BDAT
        return self._read_content()

    # -- internals: reading content ----------------------------------------------

    def _read_content(self) -> NextEvent:
        reader = self._reader
        assert reader is not None
        data = self._in.take_all()
        if not data:
            if self._peer_closed:
                self._fail("connection closed inside message content")
                raise self._error  # type: ignore[misc]
            if isinstance(reader, BdatReader) and reader.remaining == 0:
                return self._end_of_content()
            return NEED_DATA
        if isinstance(reader, DataReader):
            normalise = self.config.bare_line_endings == "normalise"
            content, done, rest = reader.feed(data, normalise=normalise)
            if reader.bare_line_ending and not normalise and self._content_error is None:
                # RFC 5321 §2.3.8 / §4.1.1.4: a bare CR or LF is no line end.
                self._content_error = _r(
                    500, "5.5.2", "Bare CR or LF in message content is not allowed"
                )
        else:
            content, done, rest = reader.feed(data)
        self._in.unread(rest)
        event: NextEvent = NEED_DATA
        if content and self._content_error is None:
            self._octets += len(content)
            limit = self.config.max_message_size
            if limit and self._octets > limit:
                # RFC 1870 §6.2 / RFC 5321 §4.5.3.1.10: answered after the
                # real end of data, so the session stays in step.
                self._content_error = _r(552, "5.3.4", "Message size exceeds fixed maximum")
            else:
                event = MessageData(content)
        if done:
            if isinstance(event, MessageData):
                after = self._end_of_content()
                if after is not PAUSED:
                    self._ready.append(after)  # type: ignore[arg-type]
                return event
            return self._end_of_content()
        if event is NEED_DATA:
            return self._read_content() if len(self._in) else NEED_DATA
        return event

    def _end_of_content(self) -> NextEvent:
        error = self._content_error
        chunk = self._chunk
        is_bdat = isinstance(self._reader, BdatReader)
        last = chunk is not None and chunk.last
        self._reader = None
        if error is not None:
            discarding, self._discard_to = self._discard_to, None
            if discarding is not None:
                # a chunk read only to be thrown away: the session state is
                # what it was before the BDAT command
                self.state = discarding
                self._chunk = None
                self._content_error = None
                return self._reject("BDAT", error)
            self._reset_transaction()
            self.state = State.READY
            return self._reject("BDAT" if is_bdat else "DATA", error)
        if is_bdat and not last:
            self._chunk = None
            self.state = State.BDAT
            assert chunk is not None
            self._pending = chunk
            self._owed = 1
            # the reply to a non-LAST chunk is owed now (RFC 3030 §2: a 250
            # per chunk, sent once its octets are read)
            return PAUSED
        envelope = self.envelope
        self.state = State.BDAT if is_bdat else State.DATA
        eom = EndOfMessage(envelope)
        self._pending = eom
        # RFC 2033 §4.2: LMTP answers the end of data once per recipient
        self._owed = len(self._rcpts) if self.config.lmtp else 1
        return eom


class _Offer:
    """The EHLO offer of a config with or without TLS, and what follows from it."""

    __slots__ = ("keys", "lines", "mail_limit", "rcpt_limit")

    def __init__(self, config: ServerConfig, tls: bool) -> None:
        self.lines = config.offered(tls=tls)
        self.keys = frozenset(k.upper() for k, _ in self.lines)
        self.mail_limit = config.mail_line_limit(self.lines)
        self.rcpt_limit = config.rcpt_line_limit(self.lines)


def _verb_of(event: Event, lmtp: bool) -> str:
    if isinstance(event, Ehlo):
        return "LHLO" if lmtp else "EHLO"
    names = {
        Helo: "HELO",
        MailFrom: "MAIL",
        RcptTo: "RCPT",
        Data: "DATA",
        Bdat: "BDAT",
        StartTLS: "STARTTLS",
        Vrfy: "VRFY",
        Expn: "EXPN",
        Auth: "AUTH",
        AuthResponse: "AUTH",
    }
    return names[type(event)]
