"""The server session as it was before its fast paths (issue 10), kept as
the reference the differential tests compare ServerSession with: every
event through the general path, one sub-generator per decision, the
TLS-Required tag from message_tag on the whole held head.

Not used by the library; only its ServerSession is (the other classes are
the library's own, imported from it so that values compare equal).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from typing import Any

import attrs

from smtp_rtls._config import ServerConfig
from smtp_rtls._errors import LocalProtocolError, RemoteProtocolError
from smtp_rtls._events import (
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
from smtp_rtls._events import StartTLS as StartTLSCommand
from smtp_rtls._reply import Reply
from smtp_rtls._sentinels import NEED_DATA, PAUSED
from smtp_rtls._server import ServerConnection
from smtp_rtls._state import _TIMEOUTS, State
from smtp_rtls._tls import TLSInfo
from smtp_rtls.policy.tags import header_section_end, message_tag
from smtp_rtls.session.server import (
    MAX_HEADER_SECTION,
    MAX_PENDING_REPLIES,
    Call,
    MessageWriter,
    Read,
    Request,
    SessionEnvelope,
    SessionInfo,
    StartTLS,
    Write,
)

logger = logging.getLogger("smtp_rtls.session.server")


class _Refuse(MessageWriter):
    def close(self) -> Reply:
        return Reply(451, "No message store is configured", "4.3.0")


_ERROR_REPLY = Reply(451, "Local error in processing", "4.3.0")

# States as module constants (an enum member looked up on its class costs
# about 70 ns); the RFC 5321 §4.5.3.2 timeouts are read from _state._TIMEOUTS.
_DATA = State.DATA
_BDAT = State.BDAT
_STARTTLS = State.STARTTLS


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
        self.info = SessionInfo(hostname, peer)
        #: The implicit TLS session (RFC 8314 §3), given before the greeting.
        self._implicit_tls = tls
        self._can_starttls = self.config.starttls if can_starttls is None else can_starttls
        self._out = bytearray()
        self._writer: object | None = None
        self._head = bytearray()  # the header section, until the message starts
        self._message_started = False
        self._identity: str | None = None

    @property
    def state(self) -> State:
        """The core's state (see :class:`~smtp_rtls.State`)."""
        return self.conn.state

    # -- the loop ----------------------------------------------------------------

    def run(self) -> Generator[Request, Any, None]:
        """The session, as requests to fulfil; see the module docstring."""
        yield from self._session()
        yield from self._abort_message()
        yield from self._call(self.handler, "on_close", self.info)

    def abort_calls(self) -> list[Call]:
        """What an adapter that ends a session early (a timeout, a lost
        connection) must still call: abort the open message, then on_close."""
        calls = []
        if self._writer is not None:
            calls.append(Call(self._writer, "abort", ()))
            self._writer = None
        calls.append(Call(self.handler, "on_close", (self.info,)))
        return calls

    def _session(self) -> Generator[Request, Any, None]:
        conn = self.conn
        if self._implicit_tls is not None:
            conn.start_tls(self._implicit_tls)
            self._update_info()
        greeting = yield from self._call(self.handler, "on_connect", self.info)
        greeting = _reply_or(greeting, Reply(554, "No service", "5.3.0"))
        if greeting.code not in (220, 554):
            logger.error("on_connect returned %s; refusing the session", greeting.code)
            greeting = Reply(554, "No service", "5.3.0")
        self._out += conn.send(greeting)
        while True:
            if len(self._out) > MAX_PENDING_REPLIES:
                yield from self._flush()
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                # A hint reply (421) may still go out before closing.
                if exc.reply is not None:
                    self._out += exc.reply.format()
                yield from self._flush()
                logger.info("session ended: %s", exc)
                return
            if event is NEED_DATA:
                out = self._out
                out += conn.data_to_send()
                if out:
                    # inline _flush: this runs once or twice per message
                    data = bytes(out)
                    out.clear()
                    yield Write(data)
                state = conn.state
                content = state is _DATA or state is _BDAT
                deadline = self.content_deadline if content else self.command_deadline
                conn.receive_data((yield Read(_TIMEOUTS[state], deadline)))
            elif event is PAUSED:
                yield from self._decide()
                if conn.state is _STARTTLS:
                    yield from self._flush()
                    info = yield StartTLS()
                    if info is None:
                        return  # the handshake failed: nothing more to say
                    conn.start_tls(info)
                    self._update_info()
            elif type(event) is MessageData:
                yield from self._content(event.data)
            elif isinstance(event, ConnectionClosed):
                self._out += conn.data_to_send()
                yield from self._flush()
                return
            else:
                assert isinstance(event, Event)
                yield from self._inform(event)

    def _flush(self) -> Generator[Request, Any, None]:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            yield Write(data)

    def _call(self, target: object, method: str, *args: Any) -> Generator[Request, Any, Any]:
        result = yield Call(target, method, args)
        if isinstance(result, BaseException):
            logger.error("%s.%s raised %r", type(target).__name__, method, result)
            return _ERROR_REPLY
        return result

    def _update_info(self) -> None:
        # Called after every decision; the info changes only at EHLO, TLS
        # and AUTH, so a new one is made only then.
        conn = self.conn
        info = self.info
        if (
            info.tls is not conn.tls
            or info.client_name != conn.client_name
            or info.authenticated != self._identity
        ):
            self.info = attrs.evolve(
                info, tls=conn.tls, client_name=conn.client_name, authenticated=self._identity
            )

    # -- decisions the application owns -------------------------------------------

    def _decide(self) -> Generator[Request, Any, None]:
        conn = self.conn
        pending = conn.pending
        handler = self.handler
        reply: Reply
        kind = type(pending)
        # The calls of every transaction first, each inline (one request,
        # no sub-generator): these run once or more per message.
        if kind is RcptTo:
            answer = yield Call(handler, "on_rcpt", (self.info, pending, conn.envelope))
            reply = _reply_or(answer) if type(answer) is not Reply else answer
        elif kind is MailFrom:
            answer = yield Call(handler, "on_mail", (self.info, pending))
            reply = _reply_or(answer) if type(answer) is not Reply else answer
        elif kind is Data:
            answer = yield Call(handler, "on_data_start", (self.info, conn.envelope))
            reply = _reply_or(answer) if type(answer) is not Reply else answer
        elif kind is EndOfMessage:
            assert isinstance(pending, EndOfMessage)
            yield from self._end_of_message(pending)
            return
        elif isinstance(pending, Ehlo | Helo):
            yield from self._abort_message()
            answer = yield from self._call(handler, "on_ehlo", self.info, pending)
            reply = _reply_or(answer, _ERROR_REPLY)
            if reply.is_positive:
                reply = Reply(reply.code, reply.lines[0])  # the core adds the offer
        elif isinstance(pending, StartTLSCommand):
            # RFC 3207 §4: 220, then the handshake; 454 when it cannot be done.
            if self._can_starttls:
                reply = Reply(220, "Ready to start TLS", "2.0.0")
            else:
                reply = Reply(454, "TLS not available due to temporary reason", "4.7.0")
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
            # A handler's reply the command cannot have (250 to DATA, 354 to
            # MAIL): the client gets a transient failure, never a broken session.
            logger.error("a handler's %s cannot answer %r: %s", reply.code, self.conn.pending, exc)
            self._out += self.conn.send(_ERROR_REPLY)

    # -- information events -------------------------------------------------------

    def _inform(self, event: Event) -> Generator[Request, Any, None]:
        if isinstance(event, MessageData):
            yield from self._content(event.data)
        elif isinstance(event, Rset | Quit):
            yield from self._abort_message()
            self._out += self.conn.data_to_send()
            if isinstance(event, Rset):
                yield from self._call(self.handler, "on_reset", self.info)
        elif isinstance(event, CommandRejected):
            self._out += self.conn.data_to_send()
            if self.conn.state not in (State.DATA, State.BDAT) and self.conn.envelope is None:
                # a refused end of data (552, 500) or chunk ended the transaction
                yield from self._abort_message()
        else:
            self._out += self.conn.data_to_send()

    def _content(self, data: bytes) -> Generator[Request, Any, None]:
        if self._message_started:
            if self._writer is not None:
                # inline _write: once per piece of content
                result = yield Call(self._writer, "write", (data,))
                if result is not None and isinstance(result, BaseException):
                    logger.error("message writer failed: %r", result)
                    self._writer = _Failed()
            return
        self._head += data
        if not _header_complete(self._head) and len(self._head) < MAX_HEADER_SECTION:
            return
        yield from self._start_message()

    def _start_message(self) -> Generator[Request, Any, None]:
        envelope = self.conn.envelope
        assert envelope is not None
        tag = message_tag(envelope.mail_from.requiretls, bytes(self._head))
        session_envelope = SessionEnvelope(envelope.mail_from, envelope.recipients, tag, self.info)
        self._message_started = True
        writer = yield from self._call(self.handler, "on_message", session_envelope)
        if writer is None:
            writer = _Refuse()
        elif isinstance(writer, Reply):  # on_message raised: see _call
            writer = _Failed()
        self._writer = writer
        head, self._head = bytes(self._head), bytearray()
        if head:
            yield from self._write(head)

    def _write(self, data: bytes) -> Generator[Request, Any, None]:
        if self._writer is None:
            return
        result = yield Call(self._writer, "write", (data,))
        if isinstance(result, BaseException):
            logger.error("message writer failed: %r", result)
            self._writer = _Failed()

    def _end_of_message(self, eom: EndOfMessage) -> Generator[Request, Any, None]:
        if not self._message_started:
            yield from self._start_message()  # a message shorter than its header
        writer, self._writer = self._writer, None
        self._message_started = False
        recipients = len(eom.envelope.recipients) if eom.envelope is not None else 1
        result = yield Call(writer, "close", ())
        if isinstance(result, BaseException):
            logger.error("message writer failed at the end: %r", result)
            result = _ERROR_REPLY
        replies = _replies_for(result, recipients if self.config.lmtp else 1)
        for reply in replies:
            self._send(reply)

    def _abort_message(self) -> Generator[Request, Any, None]:
        self._head.clear()
        self._message_started = False
        writer, self._writer = self._writer, None
        if writer is not None:
            result = yield Call(writer, "abort", ())
            if isinstance(result, BaseException):
                logger.error("message writer failed to abort: %r", result)


class _Failed(MessageWriter):
    def close(self) -> Reply:
        return _ERROR_REPLY


def _header_complete(head: bytes | bytearray) -> bool:
    # RFC 5322 §2.1, §2.2: the header section ends at the first line that is
    # neither a field nor a field's continuation: the empty line before the
    # body, or a line of body text in a message without one (how
    # header_section reads it, so the tag is decided by the same bytes).
    # Complete once such a line has arrived whole; until then, more fields
    # may follow.
    return head.find(b"\n", header_section_end(head)) >= 0


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
