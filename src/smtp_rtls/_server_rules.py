"""What the server answers by itself: the refusal rules of :class:`ServerConnection`.

Each rule looks at a command event and at what the session has in force
(the extensions offered, TLS, the EHLO, the transaction) and returns the
reply that refuses it, or ``None`` when the command goes to the
application.  Keeping them here leaves the connection with the bookkeeping
of state and bytes only.
"""

from __future__ import annotations

from collections.abc import Set

from ._config import ServerConfig
from ._events import Auth, MailFrom, RcptTo
from ._params import MAIL_PARAMETERS, RCPT_PARAMETERS, unoffered
from ._reply import Reply
from ._state import TRANSACTION_STATES, State

__all__ = ["check_auth", "check_data", "check_mail", "check_rcpt", "sequence_reply"]


def sequence_reply(verb: str, state: State) -> Reply:
    """The 503 for ``verb`` out of sequence in ``state`` (RFC 5321 §4.1.4)."""
    if verb == "DATA" and state is State.BDAT_MORE:
        return Reply(503, "DATA after BDAT in the same transaction (RFC 3030 §2)", "5.5.1")
    if verb == "MAIL" and state in TRANSACTION_STATES:
        return Reply(503, "Nested MAIL command", "5.5.1")
    if verb == "STARTTLS" and state in TRANSACTION_STATES:
        return Reply(503, "STARTTLS inside a mail transaction", "5.5.1")
    if state is State.CONNECTED:
        return Reply(503, "Send EHLO/HELO first", "5.5.1")
    return Reply(503, "Bad sequence of commands", "5.5.1")


def _unsupported(what: str) -> Reply:
    # RFC 5321 §4.1.1.11: a parameter not recognised or not offered -> 555.
    # The keyword comes from the peer and may be hundreds of octets long
    # (a MAIL line may hold 1072): quote a bounded part of it, so the reply
    # stays within 512 octets (RFC 5321 §4.5.3.1.5).
    if len(what) > 64:
        what = what[:60] + "..."
    return Reply(555, f"Unsupported option: {what}", "5.5.4")


def check_data(state: State, mail: MailFrom | None, *, lmtp: bool) -> Reply | None:
    """Refuse DATA with no accepted recipient, or in a BINARYMIME transaction."""
    if state is State.MAIL:
        if lmtp:
            # RFC 2033 §4.2: "If there were no successful RCPT commands in
            # the mail transaction, the DATA command MUST fail with a 503".
            return Reply(503, "No valid recipients", "5.5.1")
        # RFC 5321 §3.3 / RFC 2920 §3.1: DATA with no valid recipient
        return Reply(554, "No valid recipients", "5.5.1")
    if mail is not None and mail.body == "BINARYMIME":
        # RFC 3030 §3: DATA after BODY=BINARYMIME: 503, and the transaction
        # MUST be reset (the connection does it).
        return Reply(503, "BINARYMIME needs BDAT; transaction reset", "5.5.1")
    return None


def check_mail(mail: MailFrom, keys: Set[str], config: ServerConfig) -> Reply | None:
    """Refuse MAIL parameters of extensions not in force, or a declared size too big."""
    # RFC 8689 §2: REQUIRETLS only on a TLS session that offered it; on
    # plaintext it is unrecognised (555 5.5.4, as Postfix answers).  The same
    # for every parameter whose extension was not offered (the table).
    param = unoffered(mail, MAIL_PARAMETERS, keys)
    if param is not None:
        return _unsupported(param.keyword if not param.values else f"BODY={mail.body}")
    limit = config.max_message_size
    if mail.size is not None and limit and mail.size > limit:
        # RFC 1870 §6.1: declared size over the fixed maximum
        return Reply(552, "Message size exceeds fixed maximum message size", "5.3.4")
    for keyword, _ in mail.extra:
        if not keys or keyword.upper() not in config.extra_mail_parameters:
            return _unsupported(keyword)
    return None


def check_rcpt(rcpt: RcptTo, keys: Set[str], config: ServerConfig, accepted: int) -> Reply | None:
    """Refuse RCPT parameters not in force, or a recipient over the limit."""
    # The usual RCPT has no parameter at all: nothing to look up.
    if rcpt.notify is not None or rcpt.orcpt is not None or rcpt.extra:
        param = unoffered(rcpt, RCPT_PARAMETERS, keys)
        if param is not None:
            return _unsupported(param.keyword)
        for keyword, _ in rcpt.extra:
            if not keys or keyword.upper() not in config.extra_rcpt_parameters:
                return _unsupported(keyword)
    if accepted >= config.max_recipients:
        # RFC 5321 §4.5.3.1.10: too many recipients is 452
        return Reply(452, "Too many recipients", "4.5.3")
    return None


def check_auth(
    event: Auth, config: ServerConfig, *, tls: bool, extended: bool, authenticated: bool
) -> Reply | None:
    """Refuse AUTH when it is not offered, not yet allowed, or done already."""
    if not config.auth_mechanisms:
        return Reply(502, "AUTH not offered", "5.5.1")
    if config.auth_requires_tls and not tls:
        # RFC 4954 §6: 538 Encryption required for requested mechanism
        return Reply(538, "Encryption required for AUTH", "5.7.11")
    if not extended:
        return Reply(503, "Send EHLO first", "5.5.1")
    if authenticated:
        # RFC 4954 §4: after a successful AUTH, no more AUTH commands
        return Reply(503, "Already authenticated", "5.5.1")
    if event.mechanism not in {m.upper() for m in config.auth_mechanisms}:
        # RFC 4954 §4: unsupported mechanism -> 504
        return Reply(504, "Unrecognized authentication type", "5.5.4")
    return None
