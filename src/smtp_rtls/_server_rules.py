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
from ._reply import Reply
from ._state import TRANSACTION_STATES, State

__all__ = ["check_auth", "check_data", "check_mail", "check_rcpt", "reply", "sequence_reply"]


def reply(code: int, enhanced: str, text: str) -> Reply:
    """A reply the connection makes itself (always with an enhanced code)."""
    return Reply(code, text, enhanced)


def sequence_reply(verb: str, state: State) -> Reply:
    """The 503 for ``verb`` out of sequence in ``state`` (RFC 5321 §4.1.4)."""
    if verb == "DATA" and state is State.BDAT_MORE:
        return reply(503, "5.5.1", "DATA after BDAT in the same transaction (RFC 3030 §2)")
    if verb == "MAIL" and state in TRANSACTION_STATES:
        return reply(503, "5.5.1", "Nested MAIL command")
    if verb == "STARTTLS" and state in TRANSACTION_STATES:
        return reply(503, "5.5.1", "STARTTLS inside a mail transaction")
    if state is State.CONNECTED:
        return reply(503, "5.5.1", "Send EHLO/HELO first")
    return reply(503, "5.5.1", "Bad sequence of commands")


def _unsupported(what: str) -> Reply:
    # RFC 5321 §4.1.1.11: a parameter not recognised or not offered -> 555.
    # The keyword comes from the peer and may be hundreds of octets long
    # (a MAIL line may hold 1072): quote a bounded part of it, so the reply
    # stays within 512 octets (RFC 5321 §4.5.3.1.5).
    if len(what) > 64:
        what = what[:60] + "..."
    return reply(555, "5.5.4", f"Unsupported option: {what}")


def check_data(state: State, mail: MailFrom | None, *, lmtp: bool) -> Reply | None:
    """Refuse DATA with no accepted recipient, or in a BINARYMIME transaction."""
    if state is State.MAIL:
        if lmtp:
            # RFC 2033 §4.2: "If there were no successful RCPT commands in
            # the mail transaction, the DATA command MUST fail with a 503".
            return reply(503, "5.5.1", "No valid recipients")
        # RFC 5321 §3.3 / RFC 2920 §3.1: DATA with no valid recipient
        return reply(554, "5.5.1", "No valid recipients")
    if mail is not None and mail.body == "BINARYMIME":
        # RFC 3030 §3: DATA after BODY=BINARYMIME: 503, and the transaction
        # MUST be reset (the connection does it).
        return reply(503, "5.5.1", "BINARYMIME needs BDAT; transaction reset")
    return None


def check_mail(mail: MailFrom, keys: Set[str], config: ServerConfig) -> Reply | None:
    """Refuse MAIL parameters of extensions not in force, or a declared size too big."""
    if mail.requiretls and "REQUIRETLS" not in keys:
        # RFC 8689 §2: REQUIRETLS only on a TLS session that offered it;
        # on plaintext it is unrecognised (555 5.5.4, as Postfix answers).
        return _unsupported("REQUIRETLS")
    if mail.size is not None:
        if "SIZE" not in keys:
            return _unsupported("SIZE")
        limit = config.max_message_size
        if limit and mail.size > limit:
            # RFC 1870 §6.1: declared size over the fixed maximum
            return reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
    if mail.body is not None and mail.body != "7BIT":
        if mail.body not in keys:
            return _unsupported(f"BODY={mail.body}")
    elif mail.body == "7BIT" and "8BITMIME" not in keys:
        return _unsupported("BODY")
    if mail.smtputf8 and "SMTPUTF8" not in keys:
        return _unsupported("SMTPUTF8")
    if (mail.ret is not None or mail.envid is not None) and "DSN" not in keys:
        return _unsupported("RET/ENVID")
    if mail.auth is not None and "AUTH" not in keys:
        return _unsupported("AUTH")
    for keyword, _ in mail.extra:
        if not keys or keyword.upper() not in config.extra_mail_parameters:
            return _unsupported(keyword)
    return None


def check_rcpt(rcpt: RcptTo, keys: Set[str], config: ServerConfig, accepted: int) -> Reply | None:
    """Refuse RCPT parameters not in force, or a recipient over the limit."""
    if (rcpt.notify is not None or rcpt.orcpt is not None) and "DSN" not in keys:
        return _unsupported("NOTIFY/ORCPT")
    for keyword, _ in rcpt.extra:
        if not keys or keyword.upper() not in config.extra_rcpt_parameters:
            return _unsupported(keyword)
    if accepted >= config.max_recipients:
        # RFC 5321 §4.5.3.1.10: too many recipients is 452
        return reply(452, "4.5.3", "Too many recipients")
    return None


def check_auth(
    event: Auth, config: ServerConfig, *, tls: bool, extended: bool, authenticated: bool
) -> Reply | None:
    """Refuse AUTH when it is not offered, not yet allowed, or done already."""
    if not config.auth_mechanisms:
        return reply(502, "5.5.1", "AUTH not offered")
    if config.auth_requires_tls and not tls:
        # RFC 4954 §6: 538 Encryption required for requested mechanism
        return reply(538, "5.7.11", "Encryption required for AUTH")
    if not extended:
        return reply(503, "5.5.1", "Send EHLO first")
    if authenticated:
        # RFC 4954 §4: after a successful AUTH, no more AUTH commands
        return reply(503, "5.5.1", "Already authenticated")
    if event.mechanism not in {m.upper() for m in config.auth_mechanisms}:
        # RFC 4954 §4: unsupported mechanism -> 504
        return reply(504, "5.5.4", "Unrecognized authentication type")
    return None
