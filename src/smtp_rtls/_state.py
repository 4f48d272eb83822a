"""The SMTP and LMTP session states, as tables.

Two rules, in the manner of h11's ``_state.py``:

1. Every legal command sequence is in this file.  A (state, verb) pair that
   is missing from :data:`SMTP_TRANSITIONS` (or :data:`LMTP_TRANSITIONS`) is
   out of sequence: the server answers ``503 5.5.1`` (RFC 5321 §4.1.4) and
   the state does not change.
2. The tables speak of commands and replies only, never of which side we
   are, so the client can ask the same questions as the server.

A transition is ``(on_positive, on_negative)``: where the session goes when
the command's reply is positive (2xx, or 3xx for DATA / AUTH / STARTTLS's
220), and where it goes otherwise.  ``None`` means "stay".  The documentation
draws its state diagrams from these tables, so they cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["LMTP_TRANSITIONS", "SMTP_TRANSITIONS", "State", "transitions_for"]


class State(enum.Enum):
    """Where an SMTP session is (the server's view; the client mirrors it)."""

    GREETING = "greeting"  # waiting for the server's 220 (or 554)
    CONNECTED = "connected"  # greeted; no EHLO/HELO yet (also right after TLS)
    READY = "ready"  # EHLO/HELO done, no mail transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one RCPT accepted
    DATA = "data"  # reading DATA content up to CRLF "." CRLF
    BDAT = "bdat"  # reading a BDAT chunk's octets
    BDAT_MORE = "bdat-more"  # a BDAT chunk accepted, more (up to LAST) expected
    STARTTLS = "starttls"  # 220 to STARTTLS sent; the TLS handshake is due
    AUTH = "auth"  # inside a SASL exchange (RFC 4954 §4)
    REFUSED = "refused"  # greeted with 554: only QUIT (RFC 5321 §3.1)
    CLOSED = "closed"  # QUIT answered, or the peer went away


Transition = tuple[State | None, State | None]
S = State
_STAY: Transition = (None, None)

# Commands allowed "at any time" (RFC 5321 §4.1.4): NOOP, HELP, EXPN, VRFY, RSET.
_ANYTIME: dict[str, Transition] = {
    "NOOP": _STAY,
    "HELP": _STAY,
    "VRFY": _STAY,
    "EXPN": _STAY,
    "QUIT": (S.CLOSED, S.CLOSED),
}


def _rset(to: State) -> dict[str, Transition]:
    # RFC 5321 §4.1.1.5: RSET aborts the transaction; the EHLO stays in force.
    return {"RSET": (to, to)}


def _hello(*verbs: str) -> dict[str, Transition]:
    # RFC 5321 §4.1.4: an accepted EHLO/HELO later in the session resets the
    # state as if RSET had been issued; a rejected one changes nothing.
    return {v: (S.READY, None) for v in verbs}


def _build(hello: tuple[str, ...]) -> Mapping[State, Mapping[str, Transition]]:
    table: dict[State, dict[str, Transition]] = {
        S.CONNECTED: {
            **_ANYTIME,
            **_rset(S.CONNECTED),
            **_hello(*hello),
            "STARTTLS": (S.STARTTLS, None),
        },
        S.READY: {
            **_ANYTIME,
            **_rset(S.READY),
            **_hello(*hello),
            "MAIL": (S.MAIL, None),
            "STARTTLS": (S.STARTTLS, None),
            "AUTH": (S.READY, None),  # 334 leads to AUTH: handled by the connection
        },
        S.MAIL: {
            **_ANYTIME,
            **_rset(S.READY),
            **_hello(*hello),
            "RCPT": (S.RCPT, None),
        },
        S.RCPT: {
            **_ANYTIME,
            **_rset(S.READY),
            **_hello(*hello),
            "RCPT": (S.RCPT, None),
            "DATA": (S.DATA, None),
            "BDAT": (S.BDAT, S.BDAT),  # the chunk is read whatever the outcome
        },
        # RFC 3030 §2: between chunks only BDAT continues the transaction;
        # DATA (and a new MAIL) is out of sequence; RSET discards the chunks.
        S.BDAT_MORE: {
            **_ANYTIME,
            **_rset(S.READY),
            **_hello(*hello),
            "BDAT": (S.BDAT, S.BDAT),
        },
        S.REFUSED: {"QUIT": (S.CLOSED, S.CLOSED)},
    }
    return MappingProxyType({k: MappingProxyType(v) for k, v in table.items()})


SMTP_TRANSITIONS = _build(("EHLO", "HELO"))
# RFC 2033 §4.1: LMTP uses LHLO and has no HELO or EHLO.
LMTP_TRANSITIONS = _build(("LHLO",))

#: States with an open mail transaction.
TRANSACTION_STATES = frozenset({S.MAIL, S.RCPT, S.DATA, S.BDAT, S.BDAT_MORE})


def transitions_for(lmtp: bool) -> Mapping[State, Mapping[str, Transition]]:
    """The table of the protocol in use."""
    return LMTP_TRANSITIONS if lmtp else SMTP_TRANSITIONS
