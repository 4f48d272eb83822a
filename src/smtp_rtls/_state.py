"""The SMTP and LMTP session, as one state machine held in tables.

Both roles drive these tables and set their state nowhere else, in the
manner of h11's ``_state.py``:

* The server looks up ``(state, verb)`` when it reads a command: a pair that
  is missing is out of sequence (``503 5.5.1``, RFC 5321 §4.1.4) and the
  state does not change.  When it sends the reply, the reply's class (2 to
  5) picks the next state.
* The client looks up the same pair when it reads the reply, so after every
  reply both sides are in the same state.  A reply class the table does not
  list for the command (a 3xx to EHLO, a 2xx to DATA) is a protocol error on
  either side.

Besides the command verbs, a few steps of the session are named as verbs
too: ``GREETING`` (the server's first reply), ``EOM`` (the end of DATA
content, answered like a command), ``TLS`` (the handshake after STARTTLS's
220, or implicit TLS before the greeting; class 2 when the session is
acceptable, 5 when it is not), and ``CLOSE`` (a 421, or the peer went away).
The documentation draws its state diagrams from :data:`SMTP_TRANSITIONS`,
so the diagram and the code cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

import attrs

from ._errors import LocalProtocolError

__all__ = [
    "LMTP_TRANSITIONS",
    "REPLY_TIMEOUTS",
    "SMTP_TRANSITIONS",
    "State",
    "Step",
    "next_state",
    "transitions_for",
]


class State(enum.Enum):
    """Where an SMTP (or LMTP) session is; both roles report the same value.

    Each member's :attr:`timeout` is what RFC 5321 §4.5.3.2 gives the side
    that waits in that state, in seconds.
    """

    #: waiting for the server's 220 (or 554); the client waits 5 minutes
    #: for it (§4.5.3.2.1).
    GREETING = "greeting"
    #: greeted, no EHLO/HELO yet (also right after TLS starts).
    CONNECTED = "connected"
    #: EHLO/HELO accepted, no mail transaction.
    READY = "ready"
    #: MAIL accepted, no recipient accepted yet.
    MAIL = "mail"
    #: at least one RCPT accepted.
    RCPT = "rcpt"
    #: reading DATA content up to CRLF "." CRLF; the client waits 3 minutes
    #: per data block (§4.5.3.2.5) and 10 minutes for the reply to the end
    #: (§4.5.3.2.6, see :data:`REPLY_TIMEOUTS`).
    DATA = "data"
    #: reading the octets of a BDAT chunk (RFC 3030 §2).
    BDAT = "bdat"
    #: a BDAT chunk accepted; more chunks (up to LAST) expected.
    BDAT_MORE = "bdat-more"
    #: 220 to STARTTLS sent; the TLS handshake is due (RFC 3207 §4).
    STARTTLS = "starttls"
    #: inside a SASL exchange: a 334 challenge awaits its response
    #: (RFC 4954 §4).
    AUTH = "auth"
    #: greeted with 554 (or 4xx): only QUIT is accepted (RFC 5321 §3.1).
    REFUSED = "refused"
    #: TLS started but gave too little security: only QUIT is accepted,
    #: every other command gets 554 (RFC 3207 §4.1).  The client cannot
    #: know it: from its side the session is :attr:`CONNECTED`.
    TLS_REFUSED = "tls-refused"
    #: QUIT answered, a 421 sent, or the peer went away.
    CLOSED = "closed"

    # Members are singletons compared by identity: hash them the same way.
    # Enum's own __hash__ is a Python function, and the connections look a
    # state up in a dict or set several times per command.
    __hash__ = object.__hash__

    @property
    def timeout(self) -> float:
        """RFC 5321 §4.5.3.2's wait, in seconds, for a side in this state.

        The server waits 5 minutes for the next command (§4.5.3.2.7) in
        every command state; inside content it waits as long as the
        client's data-block timeout (3 minutes, §4.5.3.2.5).
        """
        return _TIMEOUTS[self]


_TIMEOUTS: Final[dict[State, float]] = {s: 300.0 for s in State}
_TIMEOUTS[State.DATA] = 180.0
_TIMEOUTS[State.BDAT] = 180.0
_TIMEOUTS[State.CLOSED] = 0.0


def read_wait(timeout: float, deadline: float, since_write: float, cap: float | None) -> float:
    """How long a server may wait for a read (:meth:`Read.wait
    <smtp_rtls.session.server.Read.wait>`, which the adapters call here
    directly, without the method's frame): ``timeout`` (or ``cap``, the
    adapter's ``read_timeout``, in its place), cut to what is left of
    ``deadline`` ``since_write`` seconds after the last reply.  Raises
    TimeoutError when nothing is left."""
    left = deadline - since_write
    if left <= 0:
        raise TimeoutError("the peer took too long over one command or the content")
    wait = timeout if cap is None else cap
    return wait if wait < left else left


#: RFC 5321 §4.5.3.2: how long a client waits for the reply to each command
#: (by the name :attr:`Reply.command` gives it), in seconds; any other
#: command: 5 minutes.  ``EOM`` and the last BDAT chunk wait for the
#: "DATA termination" (10 minutes: the server may be delivering).
REPLY_TIMEOUTS: Final[Mapping[str, float]] = MappingProxyType(
    {"GREETING": 300.0, "MAIL": 300.0, "RCPT": 300.0, "DATA": 120.0, "EOM": 600.0, "BDAT": 600.0}
)


@attrs.frozen
class Step:
    """What a command (or named step) does in one state.

    ``on_command`` is the state entered as soon as the command is read,
    before any reply (a BDAT chunk's octets follow its command line);
    ``replies`` maps each reply class this command can have (2 to 5) to the
    state after it, ``None`` meaning "stay".  A class that is missing
    cannot answer this command.
    """

    replies: Mapping[int, State | None]
    on_command: State | None = None


S: Final = State
_ALL: Final = (2, 4, 5)


def _step(on: Mapping[int, State | None], on_command: State | None = None) -> Step:
    return Step(MappingProxyType(dict(on)), on_command)


def _stay(classes: Iterable[int] = _ALL) -> Step:
    return _step(dict.fromkeys(classes))


# RFC 5321 §4.1.1.10: QUIT's 221 ends the session; a refused QUIT (one
# with an argument) does not.
_QUIT: Final = _step({2: S.CLOSED, 4: None, 5: None})


# RFC 5321 §4.1.4: NOOP, HELP, EXPN, VRFY and RSET may come at any time.
def _anytime(rset_to: State) -> dict[str, Step]:
    return {
        "NOOP": _stay(),
        "HELP": _stay(),
        "VRFY": _stay(),
        "EXPN": _stay(),
        # RFC 5321 §4.1.1.5: RSET aborts the transaction; the EHLO stays.
        "RSET": _step({2: rset_to, 4: None, 5: None}),
        "QUIT": _QUIT,
    }


def _hello(verbs: tuple[str, ...]) -> dict[str, Step]:
    # RFC 5321 §4.1.4: an accepted EHLO/HELO later in the session resets the
    # state as if RSET had been issued; a refused one changes nothing.
    return {v: _step({2: S.READY, 4: None, 5: None}) for v in verbs}


def _bdat(verbs: dict[str, Step]) -> dict[str, Step]:
    # RFC 3030 §2: the chunk's octets follow the command line, so the
    # command enters BDAT at once; the reply comes once they are read.
    verbs["BDAT"] = _step({}, on_command=S.BDAT)
    verbs["BDAT LAST"] = _step({}, on_command=S.BDAT)
    return verbs


_STARTTLS: Final = _step({2: S.STARTTLS, 4: None, 5: None})
# RFC 4954 §4: 334 continues the exchange, 235 ends it, anything else fails it.
_AUTH: Final = _step({2: S.READY, 3: S.AUTH, 4: None, 5: None})


def _build(hello: tuple[str, ...]) -> Mapping[State, Mapping[str, Step]]:
    table: dict[State, dict[str, Step]] = {
        S.GREETING: {
            # RFC 5321 §3.1: 220, or 554 after which only QUIT is accepted
            # (a 4xx greeting, 421 in practice, is a refusal too).
            "GREETING": _step({2: S.CONNECTED, 4: S.REFUSED, 5: S.REFUSED}),
            # RFC 8314 §3: implicit TLS starts before the greeting.
            "TLS": _step({2: S.GREETING, 5: S.TLS_REFUSED}),
        },
        S.CONNECTED: {
            **_anytime(S.CONNECTED),
            **_hello(hello),
            "STARTTLS": _STARTTLS,
        },
        S.READY: {
            **_anytime(S.READY),
            **_hello(hello),
            "STARTTLS": _STARTTLS,
            "AUTH": _AUTH,
            "MAIL": _step({2: S.MAIL, 4: None, 5: None}),
        },
        S.MAIL: {
            **_anytime(S.READY),
            **_hello(hello),
            "RCPT": _step({2: S.RCPT, 4: None, 5: None}),
            # RFC 2920 §3.1: DATA pipelined behind recipients that were all
            # refused is in sequence; the server refuses it ("no valid
            # recipients", RFC 5321 §3.3) and a client given a 354 anyway
            # sends a lone dot.
            "DATA": _step({3: S.DATA, 4: None, 5: None}),
        },
        S.RCPT: _bdat(
            {
                **_anytime(S.READY),
                **_hello(hello),
                "RCPT": _step({2: S.RCPT, 4: None, 5: None}),
                "DATA": _step({3: S.DATA, 4: None, 5: None}),
            }
        ),
        # RFC 5321 §4.1.1.4: the transaction ends with the reply to the end
        # of data, whatever it is.
        S.DATA: {"EOM": _step(dict.fromkeys(_ALL, S.READY))},
        # RFC 3030 §2: a failed chunk fails the transaction; LAST ends it.
        S.BDAT: {
            "BDAT": _step({2: S.BDAT_MORE, 4: S.READY, 5: S.READY}),
            "BDAT LAST": _step(dict.fromkeys(_ALL, S.READY)),
        },
        # RFC 3030 §2: between chunks only BDAT continues the transaction;
        # DATA (and a new MAIL) is out of sequence; RSET discards the chunks.
        S.BDAT_MORE: _bdat({**_anytime(S.READY), **_hello(hello)}),
        # RFC 3207 §4.2: after the handshake the session starts afresh.
        S.STARTTLS: {"TLS": _step({2: S.CONNECTED, 5: S.TLS_REFUSED})},
        S.AUTH: {"AUTH": _step({2: S.READY, 3: S.AUTH, 4: S.READY, 5: S.READY})},
        S.REFUSED: {"QUIT": _QUIT},
        S.TLS_REFUSED: {
            "QUIT": _QUIT,
            # implicit TLS that is not acceptable: the greeting is still owed
            "GREETING": _step({2: S.TLS_REFUSED, 4: S.REFUSED, 5: S.REFUSED}),
        },
        S.CLOSED: {},
    }
    # RFC 5321 §3.8: a 421 may come in any state; the session is then over,
    # as it is when the peer goes away.
    for verbs in table.values():
        verbs["CLOSE"] = _step(dict.fromkeys(_ALL, S.CLOSED))
    return MappingProxyType({k: MappingProxyType(v) for k, v in table.items()})


#: The SMTP session: ``SMTP_TRANSITIONS[state][verb]`` is the :class:`Step`.
SMTP_TRANSITIONS: Final = _build(("EHLO", "HELO"))
#: RFC 2033 §4.1: LMTP uses LHLO and has no HELO or EHLO.
LMTP_TRANSITIONS: Final = _build(("LHLO",))

#: States with an open mail transaction.
TRANSACTION_STATES: Final = frozenset({S.MAIL, S.RCPT, S.DATA, S.BDAT, S.BDAT_MORE})

#: Reply codes a class must be exactly, for the commands that name one:
#: RFC 3207 §4 (220 to STARTTLS), RFC 5321 §4.3.2 (354 to DATA), RFC 4954 §4
#: (334 to AUTH), RFC 5321 §3.1 (220 greeting).
EXACT_CODES: Final[Mapping[tuple[str, int], int]] = MappingProxyType(
    {("STARTTLS", 2): 220, ("DATA", 3): 354, ("AUTH", 3): 334, ("GREETING", 2): 220}
)

_EXACT_VERBS: Final = frozenset(verb for verb, _ in EXACT_CODES)


def transitions_for(lmtp: bool) -> Mapping[State, Mapping[str, Step]]:
    """The table of the protocol in use."""
    return LMTP_TRANSITIONS if lmtp else SMTP_TRANSITIONS


def next_state(
    table: Mapping[State, Mapping[str, Step]], state: State, verb: str, code: int
) -> State:
    """The state after the reply ``code`` to ``verb`` in ``state``.

    Raises LocalProtocolError (the caller re-raises it as the error of its
    role) when the code cannot answer this command: the class is not in the
    table, or is not the exact code the command requires.  A command that
    is not in the table for ``state`` was out of sequence: only a failure
    (4xx, 5xx) can answer it, and the state stays.
    """
    step = table[state].get(verb)
    if step is not None and step.on_command is not None:
        state = step.on_command
        step = table[state].get(verb)
    klass = code // 100
    if step is None:
        if klass in (4, 5):
            return state
        raise LocalProtocolError(f"{code} cannot answer {verb} in state {state.name}")
    if klass not in step.replies:
        raise LocalProtocolError(f"{code} cannot answer {verb}")
    if verb in _EXACT_VERBS:
        exact = EXACT_CODES.get((verb, klass))
        if exact is not None and code != exact:
            raise LocalProtocolError(f"{verb} is answered with {exact}, not {code}")
    target = step.replies[klass]
    return state if target is None else target
