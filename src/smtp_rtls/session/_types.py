"""The types a server session shares with its adapters and handlers.

:class:`Read`, :class:`Write`, :class:`StartTLS` and :class:`Call` are the
requests :meth:`ServerSession.run <smtp_rtls.session.server.ServerSession.run>`
yields; :class:`Handler`, :class:`MessageWriter`, :class:`SessionInfo` and
:class:`SessionEnvelope` are what an application sees.  They live here, apart
from the session's driver, so that a compiled build (``setup.py``,
``SMTP_RTLS_COMPILE=1``) can compile the driver while these stay Python
classes an application subclasses; ``smtp_rtls.session.server`` is where
they are documented and imported from.
"""

from __future__ import annotations

from typing import Any

import attrs

from .._events import Auth, AuthResponse, Ehlo, Envelope, Expn, Helo, MailFrom, RcptTo, Vrfy
from .._reply import Reply
from .._state import read_wait
from .._tls import TLSInfo
from ..policy.tags import TLSTag

__all__ = [
    "Call",
    "Handler",
    "MessageWriter",
    "Read",
    "SessionEnvelope",
    "SessionInfo",
    "StartTLS",
    "Write",
]

# Documented as smtp_rtls.session.server's own (see the module docstring).
_MODULE = "smtp_rtls.session.server"

# -- the requests an adapter fulfils ------------------------------------------------


# The requests are made several times per message: plain slotted classes
# (attrs.define), which cost a third of frozen ones to make.  Treat them as
# read-only.


@attrs.define(slots=True)
class Read:
    """Read from the peer; the result is the bytes (``b""``: it closed).

    ``timeout`` bounds this one wait; ``deadline`` bounds the time since the
    session last wrote (its last reply), so that a peer trickling a byte
    every few minutes cannot hold a command, or the content, for ever.  The
    adapter closes the connection when either runs out.
    """

    __module__ = _MODULE

    timeout: float
    deadline: float

    def wait(self, since_write: float, cap: float | None = None) -> float:
        """How long the adapter may wait for this read, ``since_write``
        seconds after the session last wrote; ``cap`` (the adapter's
        ``read_timeout``) replaces ``timeout``.  Raises TimeoutError when the
        deadline has passed: the adapter then closes the connection."""
        return read_wait(self.timeout, self.deadline, since_write, cap)


@attrs.define(slots=True)
class Write:
    """Write ``data`` to the peer; the result is None."""

    __module__ = _MODULE

    data: bytes


@attrs.define(slots=True, eq=False)
class StartTLS:
    """Run the server side of the TLS handshake; the result is the
    :class:`~smtp_rtls.TLSInfo`, or None when it failed."""

    __module__ = _MODULE


@attrs.define(slots=True, eq=False)
class Call:
    """Call ``target.method(*args)`` (awaiting it when it is awaitable); the
    result is its return value, or the exception it raised."""

    __module__ = _MODULE

    target: object
    method: str
    args: tuple[Any, ...] = ()


Request = Read | Write | StartTLS | Call


# -- what the handler sees -------------------------------------------------------------


@attrs.frozen(slots=True)
class SessionInfo:
    """What is known of the session when a handler method is called."""

    __module__ = _MODULE

    #: The server's host name (the EHLO reply's first word).
    hostname: str
    #: The peer's address as the adapter reported it (host, port), or None.
    peer: tuple[str, int] | None = None
    #: The TLS session, once STARTTLS (or implicit TLS) succeeded.
    tls: TLSInfo | None = None
    #: The argument of the client's accepted EHLO / HELO / LHLO.
    client_name: str | None = None
    #: The identity a successful AUTH established (what ``on_auth`` returned
    #: with its 235), or None.
    authenticated: str | None = None
    #: Scratch space for the handler, one per session (a SASL exchange in
    #: progress, counters): the same dict through the whole session.
    data: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(slots=True)
class SessionEnvelope:
    """A message's transaction as the handler receives it.

    ``tag`` is the message's RFC 8689 §4.1 tag: ``REQUIRETLS`` when MAIL
    FROM carried the parameter, ``TLS_OPTIONAL`` for a ``TLS-Required: No``
    header field (one, in the header section), else ``DEFAULT``.  A relay
    must forward the message with the same tag.
    """

    __module__ = _MODULE

    mail_from: MailFrom
    recipients: tuple[RcptTo, ...]
    tag: TLSTag
    session: SessionInfo

    @property
    def requiretls(self) -> bool:
        """The message must travel with REQUIRETLS (RFC 8689 §4.1)."""
        return self.tag is TLSTag.REQUIRETLS


# The default handler's replies, made (and formatted) once: a reply is
# immutable, and these go out once per message.
_ACCEPTED = Reply(250, "Message accepted", "2.0.0")
_SENDER_OK = Reply(250, "Sender OK", "2.1.0")
_RECIPIENT_OK = Reply(250, "Recipient OK", "2.1.5")
_GO_AHEAD = Reply(354, "End data with <CR><LF>.<CR><LF>")
_NO_STORE = Reply(451, "No message store is configured", "4.3.0")
# The default greetings and EHLO replies made so far, by host name: a
# server has one name or a few, and its clients say the same name each
# time; one Reply (checked and formatted) per connection otherwise.
# Bounded: emptied when full.
_GREETINGS: dict[str, Reply] = {}
_HELLOS: dict[str, Reply] = {}


class MessageWriter:
    """Where a message's content goes, as returned by ``Handler.on_message``.

    The session calls :meth:`write` with each piece of content (dot-stuffing
    undone), then :meth:`close` at the end of the data, whose reply goes to
    the client (``250`` means the message is the server's responsibility
    now, RFC 5321 §6.1: store it durably first), or :meth:`abort` when the
    transaction ends without the message (RSET, an error, the peer gone).
    Each method may be a coroutine function in an asynchronous adapter.
    """

    __module__ = _MODULE

    def write(self, data: bytes) -> Any:
        """Take one piece of content."""

    def close(self) -> Any:
        """The end of the message: a :class:`~smtp_rtls.Reply`, or in LMTP one
        per recipient (a sequence; a single reply answers for all)."""
        return _ACCEPTED

    def abort(self) -> Any:
        """The transaction ended without the message: drop what was written."""


class Handler:
    """The application's side of a server session: subclass and override.

    Every method is optional, and each may be a coroutine function when the
    handler runs under an asynchronous adapter.  Each gets the
    :class:`SessionInfo` (or the :class:`SessionEnvelope`, which holds it)
    and returns the :class:`~smtp_rtls.Reply` to send; the core has already
    refused whatever the protocol forbids, so a handler only decides policy.
    The defaults accept every envelope and refuse the message itself with
    ``451 4.3.0`` (nothing is lost: the sender keeps it) until
    :meth:`on_message` is given; ``smtp_rtls.handlers`` has ready ones.

    The session answers with these defaults itself, without a call through
    the adapter, wherever a handler leaves a method as it is here.  Which
    methods a handler overrides (in its class or on the instance) is read
    once, when a session starts.
    """

    __module__ = _MODULE

    def on_connect(self, session: SessionInfo) -> Any:
        """The greeting: ``220``, or ``554`` to refuse the session (RFC 5321 §3.1)."""
        greeting = _GREETINGS.get(session.hostname)
        if greeting is None:
            greeting = Reply(220, f"{session.hostname} ESMTP")
            if len(_GREETINGS) >= 64:
                _GREETINGS.clear()
            _GREETINGS[session.hostname] = greeting
        return greeting

    def on_ehlo(self, session: SessionInfo, event: Ehlo | Helo) -> Any:
        """The reply to EHLO / HELO / LHLO (extension lines are added for you)."""
        domain = event.domain
        reply = _HELLOS.get(domain)
        if reply is None:
            reply = Reply(250, f"Hello {domain}")
            if len(_HELLOS) >= 1024:
                _HELLOS.clear()
            _HELLOS[domain] = reply
        return reply

    def on_mail(self, session: SessionInfo, event: MailFrom) -> Any:
        """Accept or refuse the reverse path (RFC 5321 §4.1.1.2)."""
        return _SENDER_OK

    def on_rcpt(self, session: SessionInfo, event: RcptTo, envelope: Envelope) -> Any:
        """Accept or refuse one recipient (RFC 5321 §4.1.1.3)."""
        return _RECIPIENT_OK

    def on_data_start(self, session: SessionInfo, envelope: Envelope) -> Any:
        """The reply to DATA: ``354``, or a refusal (not called for BDAT)."""
        return _GO_AHEAD

    def on_message(self, envelope: SessionEnvelope) -> Any:
        """Where the content of this message goes: a :class:`MessageWriter`.

        Called once the header section has arrived (so that ``envelope.tag``
        is known), before the rest of the content.
        """
        return _Refuse()

    def on_auth(self, session: SessionInfo, event: Auth | AuthResponse) -> Any:
        """One step of a SASL exchange (RFC 4954): ``334`` with a challenge,
        ``235`` (return ``(Reply, identity)`` to name who authenticated), or
        a failure.  The default refuses every mechanism."""
        return Reply(535, "Authentication credentials invalid", "5.7.8")

    def on_vrfy(self, session: SessionInfo, event: Vrfy | Expn) -> Any:
        """VRFY / EXPN: by default ``252``, which reveals nothing (RFC 5321 §3.5.3)."""
        return Reply(252, "Cannot VRFY user, but will accept message", "2.5.0")

    def on_reset(self, session: SessionInfo) -> Any:
        """The transaction was reset (RSET, a new EHLO, STARTTLS); nothing to return."""

    def on_close(self, session: SessionInfo) -> Any:
        """The session is over; nothing to return."""


class _Refuse(MessageWriter):
    def close(self) -> Reply:
        return _NO_STORE


_ERROR_REPLY = Reply(451, "Local error in processing", "4.3.0")


class _Failed(MessageWriter):
    def close(self) -> Reply:
        return _ERROR_REPLY
