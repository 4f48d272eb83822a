"""The events: one class per protocol element, used by both roles.

What a client passes to ``ClientConnection.send()`` is exactly what the server
gets back from ``ServerConnection.next_event()``.  Every event validates in
its constructor, so an ill-formed command (a CR or LF smuggled in a field, a
bad path, a parameter that breaks the grammar) cannot exist, and ``send()``
never has to guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import attrs

from . import _abnf
from ._address import Address, to_address
from ._errors import LocalProtocolError
from ._params import MAIL_PARAMETERS, RCPT_PARAMETERS, xtext_encode
from ._reply import Reply

__all__ = [
    "Auth",
    "AuthResponse",
    "Bdat",
    "CommandRejected",
    "ConnectionClosed",
    "Data",
    "Ehlo",
    "EndOfMessage",
    "Envelope",
    "Event",
    "Expn",
    "Helo",
    "Help",
    "MailFrom",
    "MessageData",
    "Noop",
    "Quit",
    "RcptTo",
    "Rset",
    "StartTLS",
    "Vrfy",
]

# RFC 1870 §4: size-value = 1*20DIGIT
MAX_SIZE_VALUE = 10**20 - 1
# RFC 3030 §2 sets no bound on chunk-size; this library reads at most 18
# digits (see _commands.py), so a larger chunk could not be read back.
MAX_CHUNK_SIZE = 10**18 - 1


# Any C0 control or DEL in a field could end a command line early on the wire.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be str, not {value!r}")
    if _CONTROL_RE.search(value):
        raise LocalProtocolError(f"control character in {attribute.name}: {value!r}")


def _non_empty(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    _no_control(_inst, attribute, value)
    if not value:
        raise LocalProtocolError(f"{attribute.name} cannot be empty")


def _token(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    _no_control(_inst, attribute, value)
    if not value or " " in value:
        raise LocalProtocolError(f"{attribute.name} must be one non-empty word: {value!r}")


def _opt_upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class Event:
    """Base class of all events (a marker, for type hints)."""

    __slots__ = ()


@attrs.frozen(slots=True)
class Ehlo(Event):
    """``EHLO domain`` (RFC 5321 §4.1.1.1); also LHLO in LMTP mode (RFC 2033 §4.1)."""

    #: The client's name for itself, as sent: a domain or an address literal
    #: (``"[192.0.2.1]"``).  One word, never empty.
    domain: str = attrs.field(validator=_token)


@attrs.frozen(slots=True)
class Helo(Event):
    """``HELO domain``: no service extensions (RFC 5321 §4.1.1.1)."""

    #: The client's name for itself, as sent (one word, never empty).
    domain: str = attrs.field(validator=_token)


@attrs.frozen(slots=True)
class StartTLS(Event):
    """``STARTTLS`` (RFC 3207 §4); it takes no parameters."""


@attrs.frozen(slots=True)
class Auth(Event):
    """``AUTH mechanism [initial-response]`` (RFC 4954 §4)."""

    # RFC 4422 §3.1: mechanism names are upper-case; the server upper-cases
    # what it reads, so the event does too and both sides compare equal.
    #: The SASL mechanism (``"PLAIN"``, ``"LOGIN"``, ``"SCRAM-SHA-256"``, ...):
    #: upper-case letters, digits, ``-`` and ``_`` (RFC 4422 §3.1); given in
    #: any case, kept upper-cased.
    mechanism: str = attrs.field(validator=_token, converter=_opt_upper)
    #: The initial response as sent: base64 text, ``"="`` for an empty
    #: response, or ``None`` when there was none.
    initial_response: str | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if not _abnf.re_keyword.fullmatch(self.mechanism.replace("_", "-")):
            raise LocalProtocolError(f"bad SASL mechanism name {self.mechanism!r}")
        # RFC 4954 §4: an empty initial response is sent as "="; "" would
        # vanish from the command line and mean "no initial response".
        if self.initial_response is not None and not re.fullmatch(
            r"[A-Za-z0-9+/]+={0,2}|=", self.initial_response
        ):
            raise LocalProtocolError("initial response must be base64 (or '=')")


@attrs.frozen(slots=True)
class AuthResponse(Event):
    """One client line inside a SASL exchange (RFC 4954 §4): base64, or ``"*"``
    to cancel."""

    #: The response as sent: base64 text (``""`` for an empty response), or
    #: ``"*"``, which cancels the exchange (the server answers 501).
    data: str = attrs.field(validator=_no_control)

    def __attrs_post_init__(self) -> None:
        if self.data != "*" and not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", self.data):
            raise LocalProtocolError("a SASL response is base64 or '*'")


Body = Literal["7BIT", "8BITMIME", "BINARYMIME"]
_BODIES = ("7BIT", "8BITMIME", "BINARYMIME")


def _extra(value: Iterable[tuple[str, str | None]]) -> tuple[tuple[str, str | None], ...]:
    out = []
    for keyword, val in value:
        if not isinstance(keyword, str) or not _abnf.re_keyword.fullmatch(keyword):
            raise LocalProtocolError(f"bad parameter keyword {keyword!r}")
        if val is not None and (not isinstance(val, str) or not _abnf.re_value.fullmatch(val)):
            raise LocalProtocolError(f"bad value for parameter {keyword}: {val!r}")
        # Keywords are case-insensitive (RFC 5321 §2.4) and parsed upper-cased:
        # one spelling, so that a sent and a received event compare equal.
        out.append((keyword.upper(), val))
    return tuple(out)


_MAIL_KEYWORDS = {p.keyword for p in MAIL_PARAMETERS}
_RCPT_KEYWORDS = {p.keyword for p in RCPT_PARAMETERS}


@attrs.frozen(slots=True)
class MailFrom(Event):
    """``MAIL FROM:<reverse-path> [parameters]`` (RFC 5321 §4.1.1.2).

    The parameters of the extensions the library knows are typed fields:
    :attr:`size` (RFC 1870), :attr:`body` (RFC 6152, RFC 3030),
    :attr:`smtputf8` (RFC 6531), :attr:`requiretls` (RFC 8689 §2),
    :attr:`ret` and :attr:`envid` (RFC 3461), :attr:`auth` (RFC 4954 §5).
    Any other parameter is kept as sent in :attr:`extra`.  A parameter is
    only accepted (by the server) or sent (by the client) when the EHLO reply
    in force offered its extension.
    """

    #: The reverse path: an :class:`Address` or its text (``"a@example.org"``,
    #: ``"<a@example.org>"``); ``""``, ``"<>"`` or :meth:`Address.null` for
    #: the null reverse path of a bounce (RFC 5321 §4.5.5).  Never
    #: ``<Postmaster>``; non-ASCII only with :attr:`smtputf8`.
    reverse_path: Address = attrs.field(converter=to_address)
    #: ``SIZE=``: the declared message size in octets, ``0`` to
    #: ``10**20 - 1`` (RFC 1870 §4: 1 to 20 digits), or ``None`` for no
    #: SIZE parameter.
    size: int | None = attrs.field(default=None, kw_only=True)
    #: ``BODY=``: ``None`` (no BODY parameter), ``"7BIT"``, ``"8BITMIME"``
    #: (RFC 6152 §2) or ``"BINARYMIME"`` (RFC 3030 §3, only with CHUNKING and
    #: BINARYMIME offered); given in any case, kept upper-cased.
    body: Body | None = attrs.field(default=None, kw_only=True, converter=_opt_upper)
    #: ``SMTPUTF8``: the message and its envelope may carry UTF-8
    #: (RFC 6531 §3.4); required for a non-ASCII reverse path.
    smtputf8: bool = attrs.field(default=False, kw_only=True)
    #: ``REQUIRETLS`` (RFC 8689 §2): the message must travel only over TLS,
    #: hop by hop.  The server refuses it (555 5.5.4) unless its EHLO reply
    #: offered REQUIRETLS, which it does only once TLS is active; the client
    #: refuses to send it (:class:`RequireTLSError`) unless TLS is active and
    #: the EHLO reply after TLS offered REQUIRETLS.
    requiretls: bool = attrs.field(default=False, kw_only=True)
    #: ``RET=`` (RFC 3461 §4.3): ``None`` (no RET parameter), ``"FULL"``
    #: (return the whole message in a failure report) or ``"HDRS"`` (the
    #: headers only); given in any case, kept upper-cased.
    ret: Literal["FULL", "HDRS"] | None = attrs.field(
        default=None, kw_only=True, converter=_opt_upper
    )
    #: ``ENVID=`` (RFC 3461 §4.4): the envelope identifier, xtext-decoded
    #: (at most 100 characters once encoded), or ``None``.
    envid: str | None = attrs.field(default=None, kw_only=True)
    #: ``AUTH=`` (RFC 4954 §5): the identity that submitted the message,
    #: xtext-decoded; ``"<>"`` for the empty identity (never ``""``); or
    #: ``None`` for no AUTH parameter.
    auth: str | None = attrs.field(default=None, kw_only=True)
    #: Every other parameter, in order, as ``(KEYWORD, value)`` pairs:
    #: the keyword upper-cased, the value as sent, ``None`` for a parameter
    #: without ``=``.  The keywords of the typed fields above (SIZE, BODY,
    #: SMTPUTF8, REQUIRETLS, RET, ENVID, AUTH) are refused here.  A server
    #: accepts only those in :attr:`ServerConfig.extra_mail_parameters`.
    extra: tuple[tuple[str, str | None], ...] = attrs.field(
        default=(), kw_only=True, converter=_extra
    )

    def __attrs_post_init__(self) -> None:
        if self.reverse_path.is_postmaster:
            raise LocalProtocolError("<Postmaster> is a forward path only")
        if self.size is not None and (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 <= self.size <= MAX_SIZE_VALUE
        ):
            # RFC 1870 §4: size-value = 1*20DIGIT
            raise LocalProtocolError(
                f"SIZE must be an integer of 1 to 20 digits, not {self.size!r}"
            )
        if self.body is not None and self.body not in _BODIES:
            raise LocalProtocolError(f"BODY must be one of {_BODIES}, not {self.body!r}")
        if self.ret is not None and self.ret not in ("FULL", "HDRS"):
            raise LocalProtocolError(f"RET must be FULL or HDRS, not {self.ret!r}")
        if self.envid is not None:
            _no_control(self, attrs.fields(MailFrom).envid, self.envid)
            # esmtp-value = 1*(...) (RFC 5321 §4.1.2): "ENVID=" is no parameter
            if not self.envid:
                raise LocalProtocolError("ENVID cannot be empty")
            # RFC 3461 §4.4: the ENVID value is at most 100 characters.
            if len(xtext_encode(self.envid)) > 100:
                raise LocalProtocolError("ENVID longer than 100 characters (RFC 3461 §4.4)")
        if self.auth is not None:
            _no_control(self, attrs.fields(MailFrom).auth, self.auth)
            if not self.auth:
                # RFC 4954 §5: the empty identity is written "<>", never "AUTH="
                raise LocalProtocolError('AUTH cannot be empty (use "<>")')
        for keyword, _ in self.extra:
            if keyword.upper() in _MAIL_KEYWORDS:
                raise LocalProtocolError(f"{keyword} is a typed field, not an extra parameter")
        if not self.reverse_path.is_ascii and not self.smtputf8:
            raise LocalProtocolError("a non-ASCII reverse path needs smtputf8=True (RFC 6531)")


Notify = Literal["NEVER", "SUCCESS", "FAILURE", "DELAY"]


def _notify(value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return tuple(v.upper() for v in value)


@attrs.frozen(slots=True)
class RcptTo(Event):
    """``RCPT TO:<forward-path> [parameters]`` (RFC 5321 §4.1.1.3).

    :attr:`notify` and :attr:`orcpt` are the DSN parameters (RFC 3461 §4.1,
    §4.2), accepted or sent only when DSN was offered.  Other parameters are
    kept in :attr:`extra`.
    """

    #: The recipient: an :class:`Address` or its text; ``"<Postmaster>"``
    #: (RFC 5321 §4.1.1.3) is allowed, the null path is not.
    forward_path: Address = attrs.field(converter=to_address)
    #: ``NOTIFY=`` (RFC 3461 §4.1): ``None`` (no NOTIFY parameter),
    #: ``("NEVER",)``, or one or more of ``"SUCCESS"``, ``"FAILURE"`` and
    #: ``"DELAY"``, each at most once.  Given as a sequence or as the
    #: comma-separated text (``"SUCCESS,FAILURE"``), in any case; kept as a
    #: tuple of upper-cased values.
    notify: tuple[str, ...] | None = attrs.field(default=None, kw_only=True, converter=_notify)
    #: ``ORCPT=`` (RFC 3461 §4.2): ``(addr_type, original_address)``, e.g.
    #: ``("rfc822", "bob@example.org")``, the address xtext-decoded; or
    #: ``None``.
    orcpt: tuple[str, str] | None = attrs.field(default=None, kw_only=True)
    #: Every other parameter, as in :attr:`MailFrom.extra`; NOTIFY and ORCPT
    #: are refused here.  A server accepts only those in
    #: :attr:`ServerConfig.extra_rcpt_parameters`.
    extra: tuple[tuple[str, str | None], ...] = attrs.field(
        default=(), kw_only=True, converter=_extra
    )

    def __attrs_post_init__(self) -> None:
        if self.forward_path.is_null:
            raise LocalProtocolError("the null path is not a forward path")
        if self.notify is not None:
            values = set(self.notify)
            # RFC 3461 §4.1: "NEVER" or a comma-separated list of the others.
            if (
                not values
                or not values <= {"NEVER", "SUCCESS", "FAILURE", "DELAY"}
                or ("NEVER" in values and len(values) > 1)
                or len(values) != len(self.notify)
            ):
                raise LocalProtocolError(f"bad NOTIFY value {self.notify!r}")
        if self.orcpt is not None:
            addr_type, original = self.orcpt
            if not _abnf.re_keyword.fullmatch(addr_type):
                raise LocalProtocolError(f"bad ORCPT address type {addr_type!r}")
            _no_control(self, attrs.fields(RcptTo).orcpt, original)
        for keyword, _ in self.extra:
            if keyword.upper() in _RCPT_KEYWORDS:
                raise LocalProtocolError(f"{keyword} is a typed field, not an extra parameter")


@attrs.frozen(slots=True)
class Data(Event):
    """``DATA`` (RFC 5321 §4.1.1.4)."""


@attrs.frozen(slots=True)
class Bdat(Event):
    """``BDAT size [LAST]`` (RFC 3030 §2): the next ``size`` octets are content."""

    #: The chunk size in octets, ``0`` to ``10**18 - 1``.
    size: int
    #: True for ``BDAT size LAST``, the transaction's last chunk.
    last: bool = False

    def __attrs_post_init__(self) -> None:
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 <= self.size <= MAX_CHUNK_SIZE
        ):
            raise LocalProtocolError(f"BDAT size must be 0 to {MAX_CHUNK_SIZE}: {self.size!r}")


@attrs.frozen(slots=True)
class MessageData(Event):
    """A piece of message content, with SMTP's transparency undone.

    On the server side it is what the client meant (dot-stuffing removed);
    on the client side it is what the application wants delivered.
    """

    #: The octets of the content, as the application means them (no
    #: dot-stuffing).
    data: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))


@attrs.frozen(slots=True)
class Envelope:
    """The transaction a message belongs to: the accepted MAIL and RCPTs."""

    #: The accepted MAIL command, with its REQUIRETLS tag.
    mail_from: MailFrom
    #: The accepted RCPT commands, in the order they were accepted.
    recipients: tuple[RcptTo, ...]

    @property
    def requiretls(self) -> bool:
        """The message must be handled per RFC 8689 (§4.1 ¶1 tagging)."""
        return self.mail_from.requiretls


@attrs.frozen(slots=True)
class EndOfMessage(Event):
    """The end of the message content (``.`` after DATA, or BDAT LAST).

    On the server side ``envelope`` is the transaction the message belongs
    to, with the REQUIRETLS tag (RFC 8689 §4.1); it is ignored by ``==``.
    """

    #: The transaction, on the server side; ``None`` when the client sends
    #: the event.
    envelope: Envelope | None = attrs.field(default=None, eq=False)


@attrs.frozen(slots=True)
class Rset(Event):
    """``RSET`` (RFC 5321 §4.1.1.5)."""


@attrs.frozen(slots=True)
class Noop(Event):
    """``NOOP [string]`` (RFC 5321 §4.1.1.9)."""

    #: The argument, ignored by the server; ``""`` for none.
    text: str = attrs.field(default="", validator=_no_control)


@attrs.frozen(slots=True)
class Vrfy(Event):
    """``VRFY string`` (RFC 5321 §4.1.1.6)."""

    # RFC 5321 §4.1.1.6: the argument is required ("VRFY" alone is a 501)
    #: The user or mailbox to verify (never empty; UTF-8 only when the
    #: server offered SMTPUTF8, RFC 6531 §3.7.4.2).
    text: str = attrs.field(validator=_non_empty)
    #: The ``SMTPUTF8`` parameter (RFC 6531 §3.7.4.2): the client accepts
    #: UTF-8 in the reply.  Default ``False``.
    smtputf8: bool = False


@attrs.frozen(slots=True)
class Expn(Event):
    """``EXPN string`` (RFC 5321 §4.1.1.7)."""

    #: The mailing list to expand (never empty; UTF-8 only when the server
    #: offered SMTPUTF8, RFC 6531 §3.7.4.2).
    text: str = attrs.field(validator=_non_empty)
    #: The ``SMTPUTF8`` parameter (RFC 6531 §3.7.4.2): the client accepts
    #: UTF-8 in the reply.  Default ``False``.
    smtputf8: bool = False


@attrs.frozen(slots=True)
class Help(Event):
    """``HELP [string]`` (RFC 5321 §4.1.1.8)."""

    #: The topic asked about; ``""`` for none.
    topic: str = attrs.field(default="", validator=_no_control)


@attrs.frozen(slots=True)
class Quit(Event):
    """``QUIT`` (RFC 5321 §4.1.1.10)."""


@attrs.frozen(slots=True)
class CommandRejected(Event):
    """The server connection answered a command by itself.

    The application only needs to log it; the reply is already queued in
    :meth:`ServerConnection.data_to_send`.
    """

    #: The verb, upper-cased (``"MAIL"``, ``"STARTTLS"``, ...); ``""`` when
    #: none could be read.
    command: str = attrs.field(validator=_no_control)
    #: The reply sent: 500/501/502/503/504/530/552/554/555 and friends.
    reply: Reply = attrs.field(validator=attrs.validators.instance_of(Reply))


@attrs.frozen(slots=True)
class ConnectionClosed(Event):
    """The peer closed the connection, or the session ended with QUIT."""
