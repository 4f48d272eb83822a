"""What a client may send now: the refusal rules of :class:`ClientConnection`.

Each rule looks at a :class:`SessionView` (what the server offered, whether
TLS is active, the transaction as sent so far) and raises LocalProtocolError
when the command must not exist.  They run before a byte is made, so a
refused command leaves no trace on the wire.  Ordering rules (pipelined
groups, a reply still owed) stay in the connection, which owns the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

from ._capabilities import Capabilities
from ._errors import LocalProtocolError, RequireTLSError
from ._events import Auth, AuthResponse, Event, Expn, MailFrom, RcptTo, Vrfy
from ._params import MAIL_PARAMETERS, RCPT_PARAMETERS, Parameter, unoffered
from ._readers import is_positive
from ._reply import Reply
from ._slots import slot_filler
from ._tls import TLSInfo

__all__ = [
    "RULED_VERBS",
    "ClientTransaction",
    "SessionView",
    "accepted_rcpts",
    "all_rcpts_refused",
    "check_command",
    "check_requiretls",
    "mail_refused",
]


@attrs.define(slots=True, eq=False)
class ClientTransaction:
    """A mail transaction as the client sent it, and the replies so far."""

    mail: MailFrom
    mail_reply: Reply | None = None
    rcpts_sent: int = 0
    rcpt_replies: list[tuple[RcptTo, Reply]] = attrs.Factory(list)
    data_sent: bool = False
    data_refused: bool = False
    bdat_sent: bool = False
    bdat_failed: bool = False
    content_started: bool = False

    @property
    def requiretls(self) -> bool:
        """The transaction was opened with MAIL FROM ... REQUIRETLS."""
        return self.mail.requiretls

    @property
    def mail_refused(self) -> bool:
        """MAIL got a negative reply."""
        return mail_refused(self)

    @property
    def accepted(self) -> tuple[RcptTo, ...]:
        """The recipients the server accepted, in order (per-recipient results
        are in ``rcpt_replies``)."""
        return accepted_rcpts(self)

    @property
    def all_rcpts_refused(self) -> bool:
        """Every RCPT sent has a reply and none was positive."""
        return all_rcpts_refused(self)


# The three properties' rules as functions, which the core calls: an attrs
# class is a Python class even in a compiled build, and reading one of its
# properties from compiled code costs a Python attribute look-up and call.
def mail_refused(txn: ClientTransaction) -> bool:
    """``txn.mail_refused``."""
    reply = txn.mail_reply
    return reply is not None and not is_positive(reply)


def accepted_rcpts(txn: ClientTransaction) -> tuple[RcptTo, ...]:
    """``txn.accepted``."""
    if mail_refused(txn):
        return ()
    return tuple([r for r, reply in txn.rcpt_replies if is_positive(reply)])


def all_rcpts_refused(txn: ClientTransaction) -> bool:
    """``txn.all_rcpts_refused``."""
    return len(txn.rcpt_replies) == txn.rcpts_sent and not accepted_rcpts(txn)


# A transaction per message, made without ClientTransaction's __init__ (a
# Python call even in a compiled build): _slots.slot_filler, every field.
_make_transaction: Final = slot_filler(
    ClientTransaction, *(field.name for field in attrs.fields(ClientTransaction))
)


def new_transaction(mail: MailFrom) -> ClientTransaction:
    """``ClientTransaction(mail)``: the other fields at their defaults."""
    txn: ClientTransaction = _make_transaction(
        mail, None, 0, [], False, False, False, False, False
    )
    return txn


class SessionView:
    """The facts the rules look at, as the connection knows them at send time.

    Read-only by convention (the connection reuses a view while its facts
    hold).  A plain class, not attrs: one is made for most messages, and in
    the compiled build the rules read its fields directly.
    """

    __slots__ = ("authenticated", "caps", "hello", "lmtp", "tls", "txn")

    def __init__(
        self,
        caps: Capabilities | None,
        hello: str | None,
        tls: TLSInfo | None,
        txn: ClientTransaction | None,
        authenticated: bool,
        lmtp: bool,
    ) -> None:
        self.caps = caps
        self.hello = hello
        self.tls = tls
        self.txn = txn
        self.authenticated = authenticated
        self.lmtp = lmtp

    def __repr__(self) -> str:
        return (
            f"SessionView(caps={self.caps!r}, hello={self.hello!r}, tls={self.tls!r}, "
            f"txn={self.txn!r}, authenticated={self.authenticated!r}, lmtp={self.lmtp!r})"
        )


def _need(view: SessionView, keyword: str, what: str) -> Capabilities:
    caps = view.caps
    if caps is None or keyword not in caps:
        raise LocalProtocolError(f"{what} needs {keyword}, which the server did not offer")
    return caps


def _need_hello(view: SessionView) -> None:
    # RFC 5321 §4.1.4: the client MUST issue EHLO (or HELO) before MAIL.
    if view.hello is None:
        raise LocalProtocolError("send EHLO (or HELO) first")


def _check_helo(view: SessionView, _event: Event) -> None:
    if view.lmtp:
        # RFC 2033 §4.1: LMTP has LHLO, not HELO.
        raise LocalProtocolError("LMTP has no HELO: send Ehlo (LHLO)")


def _check_starttls(view: SessionView, _event: Event) -> None:
    if view.tls is not None:
        # RFC 3207 §4.2: "A client MUST NOT attempt to start a TLS session
        # if a TLS session is already active."
        raise LocalProtocolError("TLS is already active")
    _need(view, "STARTTLS", "STARTTLS")
    if view.txn is not None:
        raise LocalProtocolError("STARTTLS inside a mail transaction")


def _check_auth(view: SessionView, event: Event) -> None:
    if isinstance(event, AuthResponse):
        return
    assert isinstance(event, Auth)
    caps = _need(view, "AUTH", "AUTH")
    if event.mechanism.upper() not in caps.auth_mechanisms:
        raise LocalProtocolError(f"the server did not offer SASL {event.mechanism}")
    if view.authenticated:
        # RFC 4954 §4: after a successful AUTH, another one gets 503.
        raise LocalProtocolError("already authenticated")
    if view.txn is not None:
        # RFC 4954 §4: "The AUTH command is not permitted during a mail
        # transaction."
        raise LocalProtocolError("AUTH inside a mail transaction")


def _check_mail(view: SessionView, event: Event) -> None:
    assert isinstance(event, _MailFrom)
    if event.requiretls:
        check_requiretls(view)
    _need_hello(view)
    if view.txn is not None:
        raise LocalProtocolError("MAIL inside an open transaction: RSET first")
    _need_parameters(view, event, MAIL_PARAMETERS)
    if event.size is not None and view.caps is not None:
        limit = view.caps.size
        if limit and event.size > limit:
            # RFC 1870 §5: a message over the fixed maximum "will always
            # fail"; declaring one (§6) would only earn a 552: refused here.
            raise LocalProtocolError(f"SIZE={event.size} is over the server's {limit}")
    if event.body == "BINARYMIME":
        # RFC 3030 §3: a BINARYMIME body can only be sent with BDAT.
        _need(view, "CHUNKING", "BODY=BINARYMIME")


# The events whose parameters were all offered, by identity: id(event) ->
# (event, the Capabilities they were checked against).  Both are immutable,
# and a client sending message after message sends the same MAIL and RCPT
# events to a server whose offer is the same object (ClientConnection keeps
# Capabilities by reply), so each is checked once.  The event is kept so
# that its id cannot be reused while the entry lives.
_PARAMS_OFFERED: Final[dict[int, tuple[Event, Capabilities | None]]] = {}
_MAX_PARAMS_OFFERED: Final = 256

# Final aliases of names imported from modules mypyc does not compile, for
# the per-message paths (why: smtp_rtls._build).
_MailFrom: Final = MailFrom
_RcptTo: Final = RcptTo


def _need_parameters(view: SessionView, event: Event, table: tuple[Parameter, ...]) -> None:
    # The parameters whose extension the EHLO reply in force did not offer
    # (the same table the server refuses them by, with 555).
    caps = view.caps
    known = _PARAMS_OFFERED.get(id(event))
    if known is not None and known[0] is event and known[1] is caps:
        return
    param = unoffered(event, table, caps if caps is not None else ())
    if param is not None:
        raise LocalProtocolError(
            f"{param.keyword}= needs {param.extension}, which the server did not offer"
            f" ({param.rfc})"
        )
    if len(_PARAMS_OFFERED) >= _MAX_PARAMS_OFFERED:
        _PARAMS_OFFERED.clear()
    _PARAMS_OFFERED[id(event)] = (event, caps)


def check_requiretls(view: SessionView) -> None:
    """Raise RequireTLSError unless MAIL ... REQUIRETLS may go out now."""
    # RFC 8689 §2: REQUIRETLS "MUST only be specified in the context of
    # an SMTP session meeting the security requirements of REQUIRETLS";
    # §4.2.1 step 5: the EHLO response *after* TLS must list it.  The
    # capabilities are forgotten at start_tls(), so a keyword seen before
    # TLS can never count here.
    if view.tls is None:
        raise RequireTLSError(
            "REQUIRETLS needs a TLS session (5.7.10)",
            Reply(523, "Encryption Needed", "5.7.10"),
        )
    if view.hello == "HELO" or view.caps is None or "REQUIRETLS" not in view.caps:
        raise RequireTLSError(
            "the server did not offer REQUIRETLS after TLS (5.7.30)",
            Reply(550, "REQUIRETLS support required", "5.7.30"),
        )


def _open_txn(view: SessionView) -> ClientTransaction:
    txn = view.txn
    if txn is None or mail_refused(txn):
        raise LocalProtocolError("no mail transaction: send MAIL first")
    return txn


def _check_rcpt(view: SessionView, event: Event) -> None:
    assert isinstance(event, _RcptTo)
    txn = _open_txn(view)
    if txn.content_started or txn.bdat_sent:
        # the recipients are fixed once the content starts (RFC 5321 §3.3)
        raise LocalProtocolError("RCPT after the content has started")
    if not event.forward_path.is_ascii and not txn.mail.smtputf8:
        # RFC 6531 §3.4: UTF-8 addresses only in an SMTPUTF8 transaction.
        raise LocalProtocolError("a non-ASCII recipient needs MAIL ... SMTPUTF8")
    _need_parameters(view, event, RCPT_PARAMETERS)


def _content_start(view: SessionView, txn: ClientTransaction, what: str) -> None:
    if not txn.rcpts_sent:
        raise LocalProtocolError(f"{what} before any RCPT")
    # Without PIPELINING every RCPT has its reply before the next command, so
    # this is also "DATA before an accepted RCPT"; with PIPELINING, replies
    # still on their way leave the decision to the server (RFC 2920 §3.1).
    if all_rcpts_refused(txn):
        raise LocalProtocolError(f"{what}: every recipient was refused")


def _check_data(view: SessionView, _event: Event) -> None:
    txn = _open_txn(view)
    if txn.bdat_sent:
        # RFC 3030 §2: "DATA and BDAT commands cannot be used in the same
        # transaction."
        raise LocalProtocolError("DATA after BDAT in the same transaction")
    if txn.mail.body == "BINARYMIME":
        # RFC 3030 §3: a BINARYMIME body goes with BDAT only.
        raise LocalProtocolError("BODY=BINARYMIME needs BDAT, not DATA")
    _content_start(view, txn, "DATA")


def _check_bdat(view: SessionView, _event: Event) -> None:
    _need(view, "CHUNKING", "BDAT")
    txn = _open_txn(view)
    if txn.data_sent:
        raise LocalProtocolError("BDAT after DATA in the same transaction (RFC 3030 §2)")
    _content_start(view, txn, "BDAT")


def _check_vrfy_expn(view: SessionView, event: Event) -> None:
    assert isinstance(event, Vrfy | Expn)
    if event.smtputf8 or not event.text.isascii():
        # RFC 6531 §3.7.4.2: the UTF-8 string and the SMTPUTF8 parameter go
        # only to a server whose EHLO reply offered SMTPUTF8.
        _need(view, "SMTPUTF8", f"{type(event).__name__.upper()} in UTF-8")


_RULES: Final[dict[str, Callable[[SessionView, Event], None]]] = {
    "HELO": _check_helo,
    "STARTTLS": _check_starttls,
    "AUTH": _check_auth,
    "MAIL": _check_mail,
    "RCPT": _check_rcpt,
    "DATA": _check_data,
    "BDAT": _check_bdat,
    "VRFY": _check_vrfy_expn,
    "EXPN": _check_vrfy_expn,
}


#: The verbs :func:`check_command` has a rule for (for the others it does
#: nothing, and a caller need not build a SessionView).
RULED_VERBS: Final = frozenset(_RULES)


def check_command(verb: str, event: Event, view: SessionView) -> None:
    """Raise LocalProtocolError when ``event`` (a command) may not be sent."""
    rule = _RULES.get(verb)
    if rule is not None:
        rule(view, event)
