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

import attrs

from ._capabilities import Capabilities
from ._client_rules import ClientTransaction, SessionView, check_command
from ._commands import format_command
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Auth,
    AuthResponse,
    Bdat,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
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
from ._framing import LineBuffer
from ._reply import MAX_REPLY_LINE, Reply, parse_reply_line
from ._sentinels import NEED_DATA
from ._tls import TLSInfo
from ._writers import DataWriter

__all__ = ["ClientConnection"]

# RFC 2920 §3.1: "the commands RSET, MAIL FROM, SEND FROM, SOML FROM, SAML
# FROM, and RCPT TO can all appear anywhere in a pipelined command group";
# every other command ends a group.  The end of the message content may
# start a group ("The actual transfer of message content is explicitly
# allowed to be the first 'command' in a group"), so MAIL may follow it;
# RFC 3030 §4.2 lets BDAT chunks be pipelined, BDAT LAST ends the group.
_GROUP_CONTINUES = frozenset(["MAIL", "RCPT", "RSET", "EOM", "BDAT"])

_VERBS: dict[type[Event], str] = {
    Ehlo: "EHLO",
    Helo: "HELO",
    StartTLS: "STARTTLS",
    Auth: "AUTH",
    AuthResponse: "AUTH",
    MailFrom: "MAIL",
    RcptTo: "RCPT",
    Data: "DATA",
    Bdat: "BDAT",
    Rset: "RSET",
    Noop: "NOOP",
    Vrfy: "VRFY",
    Expn: "EXPN",
    Help: "HELP",
    Quit: "QUIT",
}

# RFC 5321 §4.2.1 puts no limit on the number of lines of a reply; this bound
# keeps a reply in memory small (each line is at most 512 octets, §4.5.3.1.5).
DEFAULT_MAX_REPLY_LINES = 100


@attrs.define(slots=True)
class _Pending:
    """A command awaiting its reply (or, for an LMTP end of data, replies)."""

    verb: str
    event: Event | None = None
    transaction: ClientTransaction | None = None
    ends_group: bool = True
    # LMTP: the end of data gets one reply per accepted recipient (RFC 2033
    # §4.2); the count is known only when the earlier replies are read.
    remaining: int | None = 1
    per_recipient: bool = False  # the replies are per-recipient delivery results


def _injection() -> RemoteProtocolError:
    # RFC 3207 §4 and the STARTTLS injection attacks (CVE-2011-0411, the 2021
    # "Why TLS is better without STARTTLS" client cases): bytes after the 220
    # and before the handshake were sent in plaintext, by the server or by a
    # man in the middle; read after TLS they would pass for protected replies.
    return RemoteProtocolError("plaintext data after the 220 reply to STARTTLS (injection)")


class ClientConnection:
    """The client side of one SMTP session.

    ``local_hostname`` is this client's name, kept for the application to put
    in :class:`Ehlo` / :class:`Helo` (events carry their own arguments).
    ``lmtp`` writes EHLO as LHLO and expects one reply per accepted recipient
    after the content (RFC 2033).  ``max_reply_lines`` bounds a multi-line
    reply.

    The session starts waiting for the server's greeting.  For implicit TLS
    (port 465, RFC 8314 §3) the caller does the handshake first and calls
    :meth:`start_tls` before any byte is received.
    """

    def __init__(
        self,
        local_hostname: str,
        *,
        lmtp: bool = False,
        max_reply_lines: int = DEFAULT_MAX_REPLY_LINES,
    ) -> None:
        if max_reply_lines < 1:
            raise ValueError("max_reply_lines must be at least 1")
        self.local_hostname = local_hostname
        self.lmtp = lmtp
        self.max_reply_lines = max_reply_lines
        # RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with CRLF.
        self._buffer = LineBuffer(MAX_REPLY_LINE)
        self._lines: list[bytes] = []
        self._code: bytes | None = None
        self._pending: deque[_Pending] = deque([_Pending("GREETING")])
        self._group_enders = 1  # pending entries that end a group (the greeting)
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._received_any = False
        self._refused = False  # greeted with 554: only QUIT
        self._closing = False  # a 421 was seen: the server is going away
        self._quit_sent = False
        self._closed = False
        self._caps: Capabilities | None = None
        self._hello: str | None = None  # "EHLO" / "LHLO" / "HELO" once accepted
        self._tls: TLSInfo | None = None
        self._tls_due = False  # 220 to STARTTLS read; start_tls() must come next
        self._authenticated = False
        self._auth_challenge = False  # a 334 was read: an AuthResponse is due
        self._txn: ClientTransaction | None = None
        self._content: str | None = None  # "DATA" after a 354, "BDAT" mid-chunk
        self._writer: DataWriter | None = None
        self._content_txn: ClientTransaction | None = None
        self._has_recipient = False  # the DATA transaction has an accepted RCPT
        self._bdat_left = 0

    # -- what the application may look at ----------------------------------

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
    def transaction(self) -> ClientTransaction | None:
        """The mail transaction in progress (as sent so far), if any."""
        return self._txn

    @property
    def pipelining(self) -> bool:
        """True when the server offered PIPELINING (RFC 2920)."""
        return self._caps is not None and "PIPELINING" in self._caps

    @property
    def closed(self) -> bool:
        """True when the session is over (QUIT answered or the peer closed)."""
        return self._closed

    # -- bytes in ----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Hand over bytes read from the server; ``b""`` means it closed."""
        if self._eof:
            raise LocalProtocolError("receive_data() after the peer closed the connection")
        if not data:
            self._eof = True
            return
        self._received_any = True
        self._buffer.feed(data)

    def next_event(self) -> Reply | ConnectionClosed | type[NEED_DATA]:
        """The next reply (with ``.command`` set), ConnectionClosed, or NEED_DATA.

        Raises RemoteProtocolError, and nothing else, when the server broke
        the protocol; the connection is then unusable.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next_event(self) -> Reply | ConnectionClosed | type[NEED_DATA]:
        while True:
            if self._tls_due and len(self._buffer):
                raise _injection()
            line = self._buffer.next_line()
            if line is None:
                if self._eof:
                    if self._lines or len(self._buffer):
                        raise RemoteProtocolError("connection closed in the middle of a reply")
                    self._closed = True
                    return ConnectionClosed()
                return NEED_DATA
            reply = self._read_line(line)
            if reply is not None:
                return self._on_reply(reply)

    def _read_line(self, line: bytes) -> Reply | None:
        if self._code is None:
            code, is_last, _ = parse_reply_line(line)
        else:
            # Reply.from_lines checks every line in full once the reply is
            # complete; here only what decides where the reply ends.
            code, is_last = line[:3], line[3:4] != b"-"
            # RFC 5321 §4.2.1: every line of a multi-line reply has the same
            # code; a change means a reply ended without its last line.
            if code != self._code:
                raise RemoteProtocolError("reply code changes inside a multi-line reply")
            if len(self._lines) >= self.max_reply_lines:
                raise RemoteProtocolError(f"reply longer than {self.max_reply_lines} lines")
        self._code = code
        self._lines.append(line)
        if not is_last:
            return None
        lines, self._lines, self._code = self._lines, [], None
        return Reply.from_lines(lines)

    # -- replies change the state ------------------------------------------

    def _on_reply(self, reply: Reply) -> Reply:
        if reply.code == 421:
            # RFC 5321 §3.8: 421 may come at any time; the server then closes.
            self._closing = True
        if not self._pending:
            if reply.code == 421:
                return reply
            raise RemoteProtocolError(f"reply {reply.code} with no command pending")
        head = self._pending[0]
        if head.remaining is None:
            # LMTP end of data: the RCPT replies are all in by now (DATA and
            # BDAT LAST end a group).  After a failed chunk the server has
            # dropped the transaction and answers a BDAT LAST once.
            # With no accepted recipient the server refuses the command once.
            txn = head.transaction
            accepted = len(txn.accepted) if txn is not None and not txn.bdat_failed else 0
            head.remaining = max(1, accepted)
            head.per_recipient = accepted > 0
        head.remaining -= 1
        if head.remaining <= 0:
            self._pending.popleft()
            self._group_enders -= head.ends_group
        verb = head.verb
        code = reply.code
        # RFC 5321 §4.3.2: 354 only answers DATA, 334 only AUTH (RFC 4954
        # §4); an intermediate reply to anything else would make the client
        # send what the server did not ask for.
        if reply.is_intermediate and not (
            (verb == "DATA" and code == 354) or (verb == "AUTH" and code == 334)
        ):
            raise RemoteProtocolError(f"{code} is not a reply to {verb}")
        handler = getattr(self, "_reply_" + verb.lower(), None)
        if handler is not None:
            handler(head, reply)
        # The reply was built by from_lines() just now and is not shared yet;
        # attrs.evolve() would validate every line of it a second time.
        object.__setattr__(reply, "command", verb)
        return reply

    def _reply_greeting(self, _head: _Pending, reply: Reply) -> None:
        if not reply.is_positive:
            # RFC 5321 §3.1: after a 554 greeting the client may only QUIT.
            self._refused = True

    def _reply_ehlo(self, _head: _Pending, reply: Reply) -> None:
        if not reply.is_positive:
            return  # a refused EHLO changes nothing (the client may try HELO)
        try:
            caps = Capabilities.from_reply(reply)
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"malformed EHLO reply: {exc}") from None
        self._accept_hello("LHLO" if self.lmtp else "EHLO", caps)

    _reply_lhlo = _reply_ehlo

    def _reply_helo(self, _head: _Pending, reply: Reply) -> None:
        if not reply.is_positive:
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
        self._hello = verb
        # RFC 5321 §4.1.4: an accepted EHLO/HELO resets the transaction.
        self._txn = None

    def _reply_starttls(self, _head: _Pending, reply: Reply) -> None:
        if reply.is_positive:
            self._tls_due = True
            if len(self._buffer):
                raise _injection()

    def _reply_auth(self, _head: _Pending, reply: Reply) -> None:
        self._auth_challenge = reply.code == 334
        if reply.is_positive:
            self._authenticated = True

    def _reply_mail(self, head: _Pending, reply: Reply) -> None:
        txn = head.transaction
        assert txn is not None
        txn.mail_reply = reply
        if not reply.is_positive and self._txn is txn:
            self._txn = None

    def _reply_rcpt(self, head: _Pending, reply: Reply) -> None:
        txn = head.transaction
        assert txn is not None and isinstance(head.event, RcptTo)
        txn.rcpt_replies.append((head.event, reply))

    def _reply_data(self, head: _Pending, reply: Reply) -> None:
        txn = head.transaction
        assert txn is not None
        if reply.is_positive:
            raise RemoteProtocolError(f"{reply.code} to DATA: expected 354 or a failure")
        if reply.code == 354:
            self._content = "DATA"
            self._content_txn = txn
            # every RCPT reply is in: DATA ended the group
            self._has_recipient = bool(txn.accepted)
            self._writer = DataWriter()
        else:
            txn.data_refused = True

    def _reply_bdat(self, head: _Pending, reply: Reply) -> None:
        txn = head.transaction
        assert txn is not None
        if not reply.is_positive and not head.per_recipient:
            # RFC 3030 §2: after a failed BDAT the client "MUST NOT send any
            # additional BDAT segments", and "The resulting state from a
            # failed BDAT command is indeterminate.  A RSET command MUST be
            # issued ...".  That holds for a failed BDAT LAST too: the server
            # may still hold the transaction the client thought was over.
            txn.bdat_failed = True
            if self._txn is None:
                self._txn = txn

    def _reply_quit(self, _head: _Pending, _reply: Reply) -> None:
        self._closing = True

    # -- events in, bytes out ----------------------------------------------

    def send(self, event: Event) -> bytes:
        """The bytes for ``event``; raises LocalProtocolError (and produces
        nothing) when the event is not allowed now."""
        if self._error is not None:
            raise LocalProtocolError("the connection is broken (the server broke the protocol)")
        if self._closed:
            raise LocalProtocolError("the session is over")
        if isinstance(event, MessageData):
            return self._send_content(event.data)
        if isinstance(event, EndOfMessage):
            return self._send_end()
        if isinstance(event, ConnectionClosed):
            self._closed = True
            return b""
        verb = _VERBS.get(type(event))
        if verb is None:
            raise LocalProtocolError(f"a client cannot send {type(event).__name__}")
        self._check_can_send(verb, event)
        check_command(verb, event, self._view())
        data = format_command(event, lmtp=self.lmtp)
        # Only now, with the bytes made, does the state move.
        self._after_send(verb, event)
        return data

    def _check_can_send(self, verb: str, event: Event) -> None:
        if self._quit_sent:
            raise LocalProtocolError("the session is over")
        if self._tls_due:
            # RFC 3207 §4: "After receiving a 220 response to a STARTTLS
            # command, the client MUST start the TLS negotiation before
            # giving any other SMTP commands."
            raise LocalProtocolError("STARTTLS accepted: call start_tls() first")
        if self._content is not None:
            raise LocalProtocolError("inside message content: send MessageData / EndOfMessage")
        if self._auth_challenge and not isinstance(event, AuthResponse):
            raise LocalProtocolError("a 334 challenge is waiting for an AuthResponse")
        if not self._auth_challenge and isinstance(event, AuthResponse):
            raise LocalProtocolError("AuthResponse only answers a 334 challenge")
        if self._pending:
            if not self.pipelining:
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
        if self._closing:
            raise LocalProtocolError("the server is closing the connection (421)")
        if self._refused:
            raise LocalProtocolError("the server refused the session: only QUIT (RFC 5321 §3.1)")
        txn = self._txn
        if txn is not None and txn.bdat_failed and verb != "RSET":
            # RFC 3030 §2: "A RSET command MUST be issued to clear the
            # transaction before additional commands may be sent."
            raise LocalProtocolError("a BDAT failed: RSET is the only next command")

    def _push(self, pending: _Pending) -> None:
        self._pending.append(pending)
        self._group_enders += pending.ends_group

    def _view(self) -> SessionView:
        return SessionView(
            self._caps, self._hello, self._tls, self._txn, self._authenticated, self.lmtp
        )

    def _after_send(self, verb: str, event: Event) -> None:
        txn = self._txn
        pending = _Pending(verb, event, txn)
        if verb in ("EHLO", "HELO"):
            if self.lmtp:
                pending.verb = "LHLO"
        elif verb == "AUTH":
            self._auth_challenge = False
        elif verb == "MAIL":
            assert isinstance(event, MailFrom)
            txn = self._txn = ClientTransaction(event)
            pending.transaction = txn
        elif verb == "RCPT":
            assert txn is not None
            txn.rcpts_sent += 1
        elif verb == "DATA":
            assert txn is not None
            txn.data_sent = True
            txn.data_refused = False
        elif verb == "BDAT":
            assert txn is not None and isinstance(event, Bdat)
            txn.bdat_sent = True
            if event.size:
                self._content = "BDAT"
                self._bdat_left = event.size
            if event.last:
                self._txn = None
        elif verb == "RSET":
            self._txn = None
        elif verb == "QUIT":
            self._quit_sent = True
        pending.ends_group = not (
            verb in _GROUP_CONTINUES and not (isinstance(event, Bdat) and event.last)
        )
        if verb == "BDAT" and self.lmtp and isinstance(event, Bdat) and event.last:
            pending.remaining = None
        self._push(pending)

    # -- content -------------------------------------------------------------

    def _send_content(self, data: bytes) -> bytes:
        if self._content == "BDAT":
            if len(data) > self._bdat_left:
                raise LocalProtocolError(
                    f"{len(data)} octets for a BDAT chunk with {self._bdat_left} left"
                )
            self._bdat_left -= len(data)
            if not self._bdat_left:
                self._content = None
            # RFC 3030 §2: the chunk is sent octet for octet (binary-safe).
            return data
        if self._content != "DATA":
            raise LocalProtocolError("MessageData outside message content")
        txn = self._content_txn
        assert txn is not None and self._writer is not None
        if not self._has_recipient:
            # RFC 2920 §3.1: DATA accepted but no recipient was: the content
            # goes nowhere; "the client SMTP should send a single dot".
            raise LocalProtocolError("no recipient was accepted: send EndOfMessage (a lone dot)")
        txn.content_started = True
        return self._writer.write(data)

    def _send_end(self) -> bytes:
        if self._content == "DATA":
            assert self._writer is not None
            txn = self._content_txn
            out = self._writer.end()
            self._content = None
            self._writer = None
            self._content_txn = None
            if self._txn is txn:
                self._txn = None
            self._push(
                _Pending("EOM", None, txn, ends_group=False, remaining=None if self.lmtp else 1)
            )
            return out
        if self._content == "BDAT":
            raise LocalProtocolError(f"{self._bdat_left} octets of the BDAT chunk are missing")
        txn = self._txn
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
        implicit = not self._received_any and list(self.pending) == ["GREETING"]
        if not (self._tls_due or implicit):
            raise LocalProtocolError("start_tls() only after a 220 reply to STARTTLS")
        if self._tls_due and len(self._buffer):
            self._error = _injection()
            raise self._error
        self._tls = info
        self._tls_due = False
        self._caps = None
        self._hello = None
        self._txn = None
        self._authenticated = False
