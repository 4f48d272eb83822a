"""ServerSession: one server session run by a handler, without I/O.

The session turns the core's events into calls on a handler object and the
handler's answers into replies.  It does no I/O and calls nothing itself:
:meth:`ServerSession.run` is a generator that yields small requests and is
sent their results, in the manner of the policy's look-ups.  An adapter
(``smtp_rtls.io.sync``, ``.asyncio``, ``.trio``) runs that loop:

* :class:`Read`: read from the peer; send back the bytes (``b""`` when the
  peer closed).  ``timeout`` is RFC 5321 §4.5.3.2's for the state.
* :class:`Write`: write ``data`` to the peer; send back None.  Replies to a
  pipelined group come as one write (RFC 2920 §3.2: the server may answer a
  group at once).
* :class:`StartTLS`: run the TLS handshake as a server now; send back the
  :class:`~smtp_rtls.TLSInfo`, or None when it failed (the session ends).
* :class:`Call`: call ``getattr(target, method)(*args)``, await it when the
  result is awaitable, and send back what it returned (or the exception it
  raised, as the result: the session answers ``451`` and goes on).

The session ends when the generator returns; the adapter then closes the
connection.  No protocol decision is left to the adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final, cast

from .._build import speedup
from .._config import ServerConfig
from .._errors import LocalProtocolError, RemoteProtocolError
from .._events import (
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
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    Rset,
    Vrfy,
)
from .._events import StartTLS as StartTLSCommand
from .._readers import is_positive
from .._reply import Reply
from .._sentinels import NEED_DATA, PAUSED
from .._server import ServerConnection
from .._slots import slot_filler
from .._state import _TIMEOUTS, State
from .._tls import TLSInfo
from ..policy.tags import _HEADER_FIELDS, TLSTag, message_tag
from . import _types
from ._types import (
    Call,
    Handler,
    MessageWriter,
    Read,
    Request,
    SessionEnvelope,
    SessionInfo,
    StartTLS,
    Write,
    _Failed,
    _Refuse,
)

__all__ = [
    "Call",
    "Handler",
    "MessageWriter",
    "Read",
    "ServerSession",
    "SessionEnvelope",
    "SessionInfo",
    "StartTLS",
    "Write",
]

logger: Final = logging.getLogger(__name__)

#: How much of a message's start the session holds to find the end of its
#: header section, where a ``TLS-Required`` field must be (RFC 8689 §4.1).
MAX_HEADER_SECTION: Final = 256 * 1024
#: The replies held for one write at most: a pipelined group's replies go
#: out together (RFC 2920 §3.2) up to this many octets, then as they come,
#: so that a peer that sends commands and never reads the replies makes
#: the write wait (and the session stop reading) instead of the replies
#: piling up; an EHLO reply is some 17 times its command.
MAX_PENDING_REPLIES: Final = 64 * 1024


_NO_SERVICE: Final = Reply(554, "No service", "5.3.0")
# RFC 3207 §4: 220, then the handshake; 454 when it cannot be done.
_TLS_READY: Final = Reply(220, "Ready to start TLS", "2.0.0")
_TLS_UNAVAILABLE: Final = Reply(454, "TLS not available due to temporary reason", "4.7.0")

# The events of the commands whose decision run makes when the event comes
# (the PAUSED that would follow adds nothing).  Exact types, as run checks
# them.
_SAID: Final = frozenset({MailFrom, RcptTo, Data, EndOfMessage, Ehlo, Helo})

# States as module constants (an enum member looked up on its class costs
# about 70 ns); the RFC 5321 §4.5.3.2 timeouts are read from _state._TIMEOUTS.
_DATA: Final = State.DATA
_BDAT: Final = State.BDAT
_STARTTLS: Final = State.STARTTLS

# Final aliases of names imported from modules mypyc does not compile, for
# the per-message paths (why: smtp_rtls._build).
_NEED_DATA: Final = NEED_DATA
_PAUSED: Final = PAUSED
_MessageData: Final = MessageData
_MailFrom: Final = MailFrom
_RcptTo: Final = RcptTo
_Data: Final = Data
_EndOfMessage: Final = EndOfMessage
_Reply: Final = Reply
# header_section_end()'s pattern, matched here: the function is Python
_header_fields: Final = _HEADER_FIELDS.match
_REQUIRETLS_TAG: Final = TLSTag.REQUIRETLS
_DEFAULT_TAG: Final = TLSTag.DEFAULT
# ... and for the paths each connection takes (greeting, EHLO, QUIT).
_Handler: Final = Handler
_Ehlo: Final = Ehlo
_Helo: Final = Helo
_Quit: Final = Quit
_StartTLS: Final = StartTLS
# Handler's answers, for the methods a handler leaves as Handler's.
_SENDER_OK: Final = _types._SENDER_OK
_RECIPIENT_OK: Final = _types._RECIPIENT_OK
_GO_AHEAD: Final = _types._GO_AHEAD
_ERROR_REPLY: Final = _types._ERROR_REPLY

# The requests, made several times per message (a Call per handler method):
# their __init__ is a Python call even in a compiled build, a filler is not
# (_slots.slot_filler).
_call: Final[Callable[[object, str, tuple[Any, ...]], Call]] = slot_filler(
    Call, "target", "method", "args"
)
_write: Final[Callable[[bytes], Write]] = slot_filler(Write, "data")
_read: Final[Callable[[float, float], Read]] = slot_filler(Read, "timeout", "deadline")
# A message's SessionEnvelope and the session's SessionInfo hold what the
# session has already (the core checked the envelope): their slots are
# filled directly, as the core makes its events.
_make_session_envelope: Final = slot_filler(
    SessionEnvelope, "mail_from", "recipients", "tag", "session"
)
_session_info: Final[
    Callable[
        [str, tuple[str, int] | None, TLSInfo | None, str | None, str | None, dict[str, Any]],
        SessionInfo,
    ]
] = slot_filler(SessionInfo, "hostname", "peer", "tls", "client_name", "authenticated", "data")


# -- the driver ------------------------------------------------------------------------


class ServerSession:
    """One server session: the core connection, a handler, and the rules
    between them.  Run :meth:`run` in an adapter."""

    def __init__(
        self,
        handler: object,
        hostname: str,
        config: ServerConfig | None = None,
        *,
        peer: tuple[str, int] | None = None,
        tls: TLSInfo | None = None,
        can_starttls: bool | None = None,
        command_deadline: float = 600.0,
        content_deadline: float = 3600.0,
    ) -> None:
        self.handler = handler
        #: Seconds a command may take from the last reply to its end (a slow
        #: peer's trickle included); RFC 5321 §4.5.3.2 bounds each wait only.
        self.command_deadline = command_deadline
        #: Seconds the message content may take, from the 354 to its end.
        self.content_deadline = content_deadline
        self.config = config if config is not None else ServerConfig()
        self.conn = ServerConnection(hostname, self.config)
        self.info = _session_info(hostname, peer, None, None, None, {})
        #: The implicit TLS session (RFC 8314 §3), given before the greeting.
        self._implicit_tls = tls
        self._can_starttls = self.config.starttls if can_starttls is None else can_starttls
        self._out = bytearray()
        self._writer: object | None = None
        self._head = bytearray()  # the header section, until the message starts
        self._message_started = False
        self._identity: str | None = None
        # The handler's methods it left as Handler's, read once: the
        # session makes their answers itself (they are constants, or depend
        # on the event only) instead of asking the adapter for a call,
        # which costs a request and a round trip through the adapter's loop
        # each; a message makes three such calls with the ready handlers.
        # For MAIL, RCPT and DATA it uses the constants Handler's methods
        # return (calling the methods cost about 0.7 us more per message);
        # tests/session/test_inherited_answers.py holds the two to the same
        # bytes.
        self._own_mail = _overrides(handler, "on_mail")
        self._own_rcpt = _overrides(handler, "on_rcpt")
        self._own_data_start = _overrides(handler, "on_data_start")
        self._own_connect = _overrides(handler, "on_connect")
        self._own_ehlo = _overrides(handler, "on_ehlo")
        self._own_reset = _overrides(handler, "on_reset")
        self._own_close = _overrides(handler, "on_close")

    @property
    def state(self) -> State:
        """The core's state (see :class:`~smtp_rtls.State`)."""
        return self.conn.state

    # -- the loop ----------------------------------------------------------------

    def run(self) -> Generator[Request, Any, None]:
        """The session, as requests to fulfil; see the module docstring."""
        # One generator runs the loop, and the events of every message are
        # handled inline: each sub-generator made and each level of
        # ``yield from`` costs on every request, and a message makes about
        # ten.  The rarer events go through the methods below.
        conn = self.conn
        handler = self.handler
        out = self._out
        if self._implicit_tls is not None:
            conn.start_tls(self._implicit_tls)
            self._update_info()
        # The calls made once per connection (on_connect, on_ehlo, on_close)
        # are inline too, as _call would make them: a connection per
        # message is common (RFC 5321 §3.1 to §4.1.1.10: greeting, EHLO,
        # one transaction, QUIT), and there they cost as much as a message.
        if self._own_connect:
            greeting = yield _call(handler, "on_connect", (self.info,))
        else:
            greeting = _Handler.on_connect(cast(Handler, handler), self.info)
        if type(greeting) is not _Reply:
            greeting = _reply_or(_logged(handler, "on_connect", greeting), _NO_SERVICE)
        if greeting.code not in (220, 554):
            logger.error("on_connect returned %s; refusing the session", greeting.code)
            greeting = _NO_SERVICE
        out += conn.send(greeting)
        next_event = conn.next_event
        # The Read for each state, made once (again if a deadline was
        # changed): a session reads in a few states, twice or more per
        # message.  A request is read-only, so one may be yielded again.
        reads: dict[State, Read] = {}
        while True:
            if len(out) > MAX_PENDING_REPLIES:
                yield from self._flush()
            try:
                event = next_event()
            except RemoteProtocolError as exc:
                # A hint reply (421) may still go out before closing.
                if exc.reply is not None:
                    out += exc.reply.format()
                yield from self._flush()
                logger.info("session ended: %s", exc)
                break
            if event is _NEED_DATA:
                out += conn.data_to_send()
                if out:
                    data = bytes(out)
                    out.clear()
                    yield _write(data)
                state = conn.state
                content = state is _DATA or state is _BDAT
                deadline = self.content_deadline if content else self.command_deadline
                read = reads.get(state)
                if read is None or read.deadline != deadline:
                    read = reads[state] = _read(_TIMEOUTS[state], deadline)
                conn.receive_data((yield read))
                continue
            if event is _PAUSED:
                pending = conn.pending
            else:
                if type(event) is _MessageData:
                    if self._message_started:
                        writer = self._writer
                        if writer is not None:
                            # once per piece of content
                            result = yield _call(writer, "write", (event.data,))
                            if result is not None and isinstance(result, BaseException):
                                logger.error("message writer failed: %r", result)
                                self._writer = _Failed()
                        continue
                    # held until the header section is complete (RFC 8689
                    # §4.1: the tag depends on its TLS-Required field).
                    # RFC 5322 §2.1, §2.2: it ends at the first line that is
                    # neither a field nor a continuation (the empty line, or
                    # body text in a message without one), complete once
                    # that line has arrived whole: a LF after
                    # header_section_end(), as header_section reads it, so
                    # the tag is decided by the same bytes.
                    data = event.data
                    head = self._head
                    if not head and type(data) is bytes:
                        # The usual start: the whole header section in the
                        # first piece, read where it is, not copied twice.
                        end = _header_end(data)
                        if _lf_from(data, end) or len(data) >= MAX_HEADER_SECTION:
                            yield from self._start_message(end, data)
                        else:
                            head += data
                        continue
                    head += data
                    end = _header_end(head)
                    if _lf_from(head, end) or len(head) >= MAX_HEADER_SECTION:
                        yield from self._start_message(end)
                    continue
                if type(event) not in _SAID:
                    if type(event) is _Quit:
                        # the 221 is the core's
                        yield from self._abort_message()
                        out += conn.data_to_send()
                        continue
                    if isinstance(event, ConnectionClosed):
                        out += conn.data_to_send()
                        if out:
                            data = bytes(out)
                            out.clear()
                            yield _write(data)
                        break
                    assert isinstance(event, Event)
                    yield from self._inform(event)
                    continue
                # A command that awaits its decision: made now, as at the
                # PAUSED that would come next (nothing happens between);
                # the reply's send returns any bytes the core made first.
                pending = conn.pending
                if pending is not event:  # pragma: no cover - owed later: PAUSED
                    continue
            kind = type(pending)
            # The decisions of every transaction inline (one request each);
            # the others, and STARTTLS, in _decide.
            if kind is _RcptTo:
                if self._own_rcpt:
                    answer = yield _call(handler, "on_rcpt", (self.info, pending, conn.envelope))
                else:
                    answer = _RECIPIENT_OK
            elif kind is _MailFrom:
                if self._own_mail:
                    answer = yield _call(handler, "on_mail", (self.info, pending))
                else:
                    answer = _SENDER_OK
            elif kind is _Data:
                if self._own_data_start:
                    answer = yield _call(handler, "on_data_start", (self.info, conn.envelope))
                else:
                    answer = _GO_AHEAD
            elif kind is _EndOfMessage:
                assert isinstance(pending, _EndOfMessage)
                if not self._message_started:
                    yield from self._end_of_message(pending)
                    continue
                writer, self._writer = self._writer, None
                self._message_started = False
                answer = yield _call(writer, "close", ())
                if type(answer) is not _Reply or self.config.lmtp:
                    self._ended(answer, pending)
                    continue
                # the usual end: one reply (what _ended makes of it)
            elif kind is _Ehlo or kind is _Helo:
                # a new session (RFC 5321 §4.1.4): any transaction ends
                yield from self._abort_message()
                if self._own_ehlo:
                    answer = yield _call(handler, "on_ehlo", (self.info, pending))
                else:
                    hello = cast("Ehlo | Helo", pending)
                    answer = _Handler.on_ehlo(cast(Handler, handler), self.info, hello)
                if type(answer) is not _Reply:
                    answer = _reply_or(_logged(handler, "on_ehlo", answer), _ERROR_REPLY)
                self._send(_hello_reply(answer))
                self._update_info()
                continue
            else:
                yield from self._decide(pending)
                if conn.state is _STARTTLS:
                    yield from self._flush()
                    info = yield _StartTLS()
                    if info is None:
                        break  # the handshake failed: nothing more to say
                    conn.start_tls(info)
                    self._update_info()
                continue
            # MAIL, RCPT, DATA and the end of data change nothing of the
            # SessionInfo: no _update_info here.
            reply = answer if type(answer) is _Reply else _reply_or(answer)
            try:
                out += conn.send(reply)
            except LocalProtocolError as exc:
                self._refused(reply, exc)
        yield from self._abort_message()
        if self._own_close:
            _logged(handler, "on_close", (yield _call(handler, "on_close", (self.info,))))

    def abort_calls(self) -> list[Call]:
        """What an adapter that ends a session early (a timeout, a lost
        connection) must still call: abort the open message, then on_close."""
        calls = []
        if self._writer is not None:
            calls.append(_call(self._writer, "abort", ()))
            self._writer = None
        calls.append(_call(self.handler, "on_close", (self.info,)))
        return calls

    def _flush(self) -> Generator[Request, Any, None]:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            yield _write(data)

    def _call(self, target: object, method: str, *args: Any) -> Generator[Request, Any, Any]:
        return _logged(target, method, (yield _call(target, method, args)))

    def _update_info(self) -> None:
        # Called after the decisions that may change the info (EHLO, AUTH)
        # and after TLS starts; a new one is made only when it changed.
        conn = self.conn
        info = self.info
        tls = conn.tls
        client_name = conn.client_name
        identity = self._identity
        if (
            info.tls is not tls
            or info.client_name != client_name
            or info.authenticated != identity
        ):
            # attrs.evolve, without its look-ups: the same fields, the same dict
            self.info = _session_info(
                info.hostname, info.peer, tls, client_name, identity, info.data
            )

    # -- decisions the application owns -------------------------------------------

    def _decide(self, pending: Event | None) -> Generator[Request, Any, None]:
        # The decisions outside a transaction's MAIL, RCPT, DATA and end of
        # data (those are made inline in run).
        handler = self.handler
        reply: Reply
        if isinstance(pending, StartTLSCommand):
            # RFC 3207 §4: 220, then the handshake; 454 when it cannot be done.
            reply = _TLS_READY if self._can_starttls else _TLS_UNAVAILABLE
        elif isinstance(pending, Auth | AuthResponse):
            answer = yield from self._call(handler, "on_auth", self.info, pending)
            if isinstance(answer, tuple) and len(answer) == 2:
                answer, identity = answer
                if isinstance(answer, Reply) and answer.code == 235:
                    self._identity = str(identity)
            reply = _reply_or(answer)
        elif isinstance(pending, Vrfy | Expn):
            reply = _reply_or((yield from self._call(handler, "on_vrfy", self.info, pending)))
        elif isinstance(pending, Bdat):
            # a non-LAST chunk was read and handed on: RFC 3030 §2's 250
            reply = Reply(250, f"{pending.size} octets received", "2.0.0")
        else:  # pragma: no cover - every decision event is handled above
            raise AssertionError(f"no decision for {pending!r}")
        self._send(reply)
        self._update_info()

    def _send(self, reply: Reply) -> None:
        try:
            self._out += self.conn.send(reply)
        except LocalProtocolError as exc:
            self._refused(reply, exc)

    def _refused(self, reply: Reply, exc: LocalProtocolError) -> None:
        # A handler's reply the command cannot have (250 to DATA, 354 to
        # MAIL): the client gets a transient failure, never a broken session.
        logger.error("a handler's %s cannot answer %r: %s", reply.code, self.conn.pending, exc)
        self._out += self.conn.send(_ERROR_REPLY)

    # -- information events -------------------------------------------------------

    def _inform(self, event: Event) -> Generator[Request, Any, None]:
        # The events run does not handle inline (content and QUIT are).
        if isinstance(event, Rset):
            yield from self._abort_message()
            self._out += self.conn.data_to_send()
            if self._own_reset:
                yield from self._call(self.handler, "on_reset", self.info)
        elif isinstance(event, CommandRejected):
            self._out += self.conn.data_to_send()
            if self.conn.state not in (State.DATA, State.BDAT) and self.conn.envelope is None:
                # a refused end of data (552, 500) or chunk ended the transaction
                yield from self._abort_message()
        else:
            self._out += self.conn.data_to_send()

    def _start_message(
        self, end: int | None = None, first: bytes | None = None
    ) -> Generator[Request, Any, None]:
        # ``first``: the first piece of content, when it holds the whole
        # header section (nothing is held then); ``end``: where that
        # section ends, when known.
        envelope = self.conn.envelope
        assert envelope is not None
        head = bytes(self._head) if first is None else first
        mail_from = envelope.mail_from
        if end is None:
            end = _header_end(head)
        tag = _message_tag(mail_from.requiretls, head, end)
        session_envelope: SessionEnvelope = _make_session_envelope(
            mail_from, envelope.recipients, tag, self.info
        )
        self._message_started = True
        # _call and _write inline: once per message
        handler = self.handler
        writer = yield _call(handler, "on_message", (session_envelope,))
        if writer is None:
            writer = _Refuse()
        elif isinstance(writer, (_Reply, BaseException)):
            if isinstance(writer, BaseException):
                logger.error("%s.on_message raised %r", type(handler).__name__, writer)
            writer = _Failed()
        self._writer = writer
        self._head = bytearray()
        if head:
            result = yield _call(writer, "write", (head,))
            if result is not None and isinstance(result, BaseException):
                logger.error("message writer failed: %r", result)
                self._writer = _Failed()

    def _write(self, data: bytes) -> Generator[Request, Any, None]:
        if self._writer is None:
            return
        result = yield _call(self._writer, "write", (data,))
        if result is not None and isinstance(result, BaseException):
            logger.error("message writer failed: %r", result)
            self._writer = _Failed()

    def _end_of_message(self, eom: EndOfMessage) -> Generator[Request, Any, None]:
        # What run does inline for a message whose header section was seen.
        if not self._message_started:
            yield from self._start_message()  # a message shorter than its header
        writer, self._writer = self._writer, None
        self._message_started = False
        result = yield _call(writer, "close", ())
        self._ended(result, eom)

    def _ended(self, result: object, eom: EndOfMessage) -> None:
        # The replies to the end of data, from what the writer's close gave.
        if isinstance(result, BaseException):
            logger.error("message writer failed at the end: %r", result)
            result = _ERROR_REPLY
        recipients = len(eom.envelope.recipients) if eom.envelope is not None else 1
        for reply in _replies_for(result, recipients if self.config.lmtp else 1):
            self._send(reply)

    def _abort_message(self) -> Generator[Request, Any, None]:
        self._head.clear()
        self._message_started = False
        writer, self._writer = self._writer, None
        if writer is not None:
            result = yield _call(writer, "abort", ())
            if isinstance(result, BaseException):
                logger.error("message writer failed to abort: %r", result)


def _overrides(handler: object, name: str) -> bool:
    # False for a method the handler has from Handler, unchanged (neither
    # overridden in its class nor replaced on the instance).  A handler
    # whose look-up raises is called as before: the adapter's call turns
    # what it raises into the call's result (451), not a failed session.
    try:
        method = getattr(handler, name, None)
    except Exception:
        return True
    return getattr(method, "__func__", None) is not getattr(_Handler, name)


#: ``_speedups.header_end`` (the compiled build only; None in the pure
#: build): header_section_end() in one pass of C, where the pattern costs
#: about 4,000 instructions on a short header section.  Not Final, so that
#: tests compare both in one process (tests/session/test_session_fast_paths.py).
header_end_c: Callable[[bytes | bytearray], int] | None = speedup("header_end")


def _header_end(data: bytes | bytearray) -> int:
    """policy.tags.header_section_end(data), without a Python call (a
    message each)."""
    find = header_end_c
    if find is not None:
        return find(data)
    match = _header_fields(data)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _lf_from(data: bytes | bytearray, end: int) -> bool:
    """``data.find(b"\\n", end) >= 0``: whether the line at ``end`` has come
    whole.  A piece of content usually ends with its LF, which answers
    without the search (bytes.find's argument parsing costs more than the
    search of a header section)."""
    size = len(data)
    return end < size and (data[size - 1] == 0x0A or data.find(b"\n", end) >= 0)


def _message_tag(requiretls: bool, head: bytes, end: int) -> TLSTag:
    """message_tag(requiretls, head), given ``end`` = header_section_end(head).

    RFC 8689 §4.1: the tag is TLS_OPTIONAL only for a ``TLS-Required``
    field in the header section; a section without the field's name in
    it (most messages) cannot have one, and is not parsed.
    """
    if requiretls:
        return _REQUIRETLS_TAG
    # bytes.lower() folds ASCII only, as the field pattern's IGNORECASE does
    # for bytes
    if end == 0 or head[:end].lower().find(b"tls-required") < 0:
        return _DEFAULT_TAG
    return message_tag(False, head)


def _hello_reply(reply: Reply) -> Reply:
    # A positive reply to EHLO is one line the core completes with the
    # offer (RFC 5321 §4.1.1.1): the handler's first line, nothing more.
    if is_positive(reply) and (
        len(reply.lines) != 1 or reply.enhanced is not None or reply.command is not None
    ):
        return Reply(reply.code, reply.lines[0])
    return reply


def _logged(target: object, method: str, result: object) -> object:
    # A handler call's result as the adapter gave it: an exception it
    # raised is logged and answered with 451 (nothing is lost: the sender
    # keeps the message), anything else is passed on.
    if isinstance(result, BaseException):
        logger.error("%s.%s raised %r", type(target).__name__, method, result)
        return _ERROR_REPLY
    return result


def _reply_or(value: object, default: Reply = _ERROR_REPLY) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, BaseException):
        # a Call's result: what the handler raised (see _call)
        logger.error("a handler raised %r", value)
        return _ERROR_REPLY
    logger.error("a handler returned %r, not a Reply", value)
    return default


def _replies_for(result: object, count: int) -> Sequence[Reply]:
    if isinstance(result, Reply):
        return [result] * count
    if (
        isinstance(result, list | tuple)
        and len(result) == count
        and all(isinstance(r, Reply) for r in result)
    ):
        return list(result)
    logger.error("a message writer returned %r, not %d replies", result, count)
    return [_ERROR_REPLY] * count
