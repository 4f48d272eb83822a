"""Step-by-step client operations, without I/O: read a reply, run a command,
authenticate, send one message.

Each operation is a generator of the same requests as
:class:`~smtp_rtls.session.Delivery` (:class:`~smtp_rtls.session.requests.Write`
and :class:`~smtp_rtls.session.requests.Read`), so the ``connect()`` client
of every adapter runs the same code; the adapters only answer the requests.
A failure of the connection raises :class:`ConnectionError`; a server that
breaks the protocol raises :class:`~smtp_rtls.RemoteProtocolError`; a
command the session does not allow raises
:class:`~smtp_rtls.LocalProtocolError` before any byte is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import attrs

from .._client import ClientConnection
from .._events import (
    Bdat,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    MailFrom,
    MessageData,
    RcptTo,
    Rset,
    StartTLS,
)
from .._readers import is_positive
from .._reply import Reply
from .._sasl import auth_login, auth_plain, login_response
from .._sentinels import NEED_DATA
from .._slots import slot_filler
from .._state import REPLY_TIMEOUTS, State
from .._writers import canonical_content
from ._client_types import SendResult, _Uniform
from .requests import Broken, Read, Step, Write

__all__ = [
    "CHUNKING_MAX",
    "SendResult",
    "authenticate",
    "command",
    "greet",
    "read_reply",
    "send_message",
    "starttls",
    "uniform",
]

_WRITE_TIMEOUT: Final = 180.0  # RFC 5321 §4.5.3.2.5: a data block, 3 minutes
#: The key of the write timeout in a timeouts mapping (absent from
#: REPLY_TIMEOUTS: _WRITE_TIMEOUT; a ``timeout=`` given to connect() is
#: every wait, this one too).
_WRITE: Final = "WRITE"

# Read requests by timeout: immutable, and a session waits with a handful
# of values, so each is made once instead of once per read.
_READS: Final[dict[float, Read]] = {}
_MAX_READS: Final = 64


def _read_request(timeout: float) -> Read:
    request = _READS.get(timeout)
    if request is None:
        if len(_READS) >= _MAX_READS:
            _READS.clear()
        request = _READS[timeout] = Read(timeout)
    return request


# Events without fields, made once: the connection keeps the command line
# it formatted for an event it saw before (by identity).
_DATA: Final = Data()
_END: Final = EndOfMessage()
_RSET: Final = Rset()

# Final aliases of names imported from modules mypyc does not compile, for
# the per-message paths (why: smtp_rtls._build).
_Reply: Final = Reply
_ConnectionClosed: Final = ConnectionClosed
_NEED_DATA: Final = NEED_DATA
_Broken: Final = Broken

# Made for every message: their slots are filled directly, as the core makes
# its events (_slots.slot_filler), without the frozen classes' __init__ (a
# Python call even in a compiled build, and an object.__setattr__ per
# field).  Neither class checks its fields.
_write_request: Final[Callable[[bytes, float], Write]] = slot_filler(Write, "data", "timeout")
_send_result: Final[
    Callable[[Reply, tuple[tuple[RcptTo, Reply], ...], Reply | None], SendResult]
] = slot_filler(SendResult, "mail", "recipients", "data")


def read_reply(
    conn: ClientConnection, timeouts: Mapping[str, float] = REPLY_TIMEOUTS
) -> Step[Reply]:
    """The next reply (RFC 5321 §4.5.3.2 waits per command by default)."""
    while True:
        event = conn.next_event()
        if isinstance(event, _Reply):
            return event
        if isinstance(event, _ConnectionClosed):
            raise ConnectionError("the server closed the connection")
        assert event is _NEED_DATA
        data = yield _read_request(timeouts.get(conn.awaiting or "", 300.0))
        if isinstance(data, _Broken):
            raise ConnectionError(data.detail)
        assert isinstance(data, bytes)
        conn.receive_data(data)


def _read_replies(
    conn: ClientConnection, count: int, timeouts: Mapping[str, float]
) -> Step[list[Reply]]:
    """The next ``count`` replies: :func:`read_reply` ``count`` times, in one
    loop (the replies to a pipelined group usually come in one read)."""
    replies: list[Reply] = []
    while len(replies) < count:
        event = conn.next_event()
        if isinstance(event, _Reply):
            replies.append(event)
            continue
        if isinstance(event, _ConnectionClosed):
            raise ConnectionError("the server closed the connection")
        assert event is _NEED_DATA
        data = yield _read_request(timeouts.get(conn.awaiting or "", 300.0))
        if isinstance(data, _Broken):
            raise ConnectionError(data.detail)
        assert isinstance(data, bytes)
        conn.receive_data(data)
    return replies


def greet(conn: ClientConnection, timeouts: Mapping[str, float] = REPLY_TIMEOUTS) -> Step[Reply]:
    """Read the greeting; raise ConnectionError unless it is 220 (RFC 5321
    §3.1: a 554, or a 421, refuses the session)."""
    greeting = yield from read_reply(conn, timeouts)
    if greeting.code != 220:
        raise ConnectionError(f"greeting {greeting.code} {greeting.text}")
    return greeting


def starttls(
    conn: ClientConnection, timeouts: Mapping[str, float] = REPLY_TIMEOUTS
) -> Step[Reply]:
    """STARTTLS; raise ConnectionError unless the server answers 220 (RFC
    3207 §4: then, and only then, the handshake starts)."""
    reply = yield from command(conn, StartTLS(), timeouts)
    if reply.code != 220:
        raise ConnectionError(f"STARTTLS refused: {reply.code} {reply.text}")
    return reply


def _write(data: bytes, timeout: float = _WRITE_TIMEOUT) -> Step[None]:
    result = yield _write_request(data, timeout)
    if isinstance(result, Broken):
        raise ConnectionError(result.detail)


def command(
    conn: ClientConnection, event: Event, timeouts: Mapping[str, float] = REPLY_TIMEOUTS
) -> Step[Reply]:
    """Send one command and return its reply."""
    yield from _write(conn.send(event), timeouts.get(_WRITE, _WRITE_TIMEOUT))
    return (yield from read_reply(conn, timeouts))


def authenticate(
    conn: ClientConnection,
    username: str,
    password: str,
    mechanism: str | None = None,
    timeouts: Mapping[str, float] = REPLY_TIMEOUTS,
) -> Step[Reply]:
    """AUTH PLAIN or LOGIN (RFC 4954): PLAIN when offered, unless told.

    Returns the final reply (235 on success).  The core refuses AUTH that
    was not offered, or inside a transaction, before any byte is written.
    """
    caps = conn.capabilities
    offered = caps.auth_mechanisms if caps is not None else frozenset()
    if mechanism is None:
        mechanism = "PLAIN" if "PLAIN" in offered or "LOGIN" not in offered else "LOGIN"
    if mechanism.upper() == "PLAIN":
        return (yield from command(conn, auth_plain(username, password), timeouts))
    if mechanism.upper() != "LOGIN":
        raise ValueError(f"only PLAIN and LOGIN are built in, not {mechanism}")
    reply = yield from command(conn, auth_login(), timeouts)
    for _ in range(2):  # "Username:", then "Password:"
        if reply.code != 334:
            return reply
        reply = yield from command(conn, login_response(reply, username, password), timeouts)
    return reply


def send_message(
    conn: ClientConnection,
    mail: MailFrom,
    recipients: Sequence[RcptTo],
    content: bytes | Iterable[bytes],
    timeouts: Mapping[str, float] = REPLY_TIMEOUTS,
    *,
    chunking: bool = True,
) -> Step[SendResult]:
    """One transaction: MAIL, RCPT..., DATA (or BDAT), the content, the end.

    With PIPELINING (RFC 2920), MAIL, RCPT and DATA go in one write.  When
    the server also offers CHUNKING and ``content`` is one ``bytes`` of at
    most :data:`CHUNKING_MAX` octets, the whole message goes in one write
    instead: MAIL, RCPT, ``BDAT <size> LAST`` and the content (RFC 3030
    §4.2), one round trip where DATA takes two.  The content is sent as
    DATA would deliver it (line ends made CRLF, a final CRLF); ``chunking``
    False keeps to DATA.  BINARYMIME content always goes with BDAT.
    REQUIRETLS goes out only if ``mail`` asks for it, and the core refuses
    it without TLS and the post-TLS offer (RFC 8689 §2).

    A transaction the server left open (MAIL accepted but no recipient, or
    DATA refused, or a BDAT chunk refused) is reset with RSET before this
    returns, so the next message can start with MAIL.
    """
    if not recipients:
        raise ValueError("a message needs at least one recipient")
    result = yield from _send(conn, mail, recipients, content, timeouts, chunking)
    if conn.transaction is not None and conn.state is not State.CLOSED and not conn.closed:
        # RFC 5321 §4.1.1.5 (RFC 3030 §2 after a failed BDAT: "A RSET
        # command MUST be issued to clear the transaction before additional
        # commands may be sent"); a MAIL now would be refused as nested.
        yield from command(conn, _RSET, timeouts)
    return result


def _send(
    conn: ClientConnection,
    mail: MailFrom,
    recipients: Sequence[RcptTo],
    content: bytes | Iterable[bytes],
    timeouts: Mapping[str, float],
    chunking: bool,
) -> Step[SendResult]:
    bdat = mail.body == "BINARYMIME"
    if conn.pipelining and not bdat:
        if (
            chunking
            and type(content) is bytes
            and 0 < len(content) <= CHUNKING_MAX
            and conn.chunking
        ):
            body = canonical_content(content)
            return (yield from _send_chunked(conn, mail, recipients, body, timeouts))
        return (yield from _send_pipelined(conn, mail, recipients, content, timeouts))
    wt = timeouts.get(_WRITE, _WRITE_TIMEOUT)
    chunks = [content] if isinstance(content, bytes) else content
    if conn.pipelining:
        # BDAT (BINARYMIME): RFC 2920 §3.1, MAIL and RCPT grouped; the
        # content follows once their replies are in (with DATA, see
        # _send_pipelined)
        lines = [conn.send(mail), *(conn.send(rcpt) for rcpt in recipients)]
        yield from _write(b"".join(lines), wt)
        got = yield from _read_replies(conn, len(lines), timeouts)
        mail_reply = got[0]
        replies = list(zip(recipients, got[1:], strict=True))
        go = None
    else:
        mail_reply = yield from command(conn, mail, timeouts)
        replies = []
        go = None
        if is_positive(mail_reply):
            for rcpt in recipients:
                replies.append((rcpt, (yield from command(conn, rcpt, timeouts))))
            if any(is_positive(r) for _, r in replies) and not bdat:
                go = yield from command(conn, _DATA, timeouts)
    result = _send_result(mail_reply, tuple(replies), None)
    accepted = is_positive(mail_reply) and any(is_positive(r) for _, r in replies)
    if bdat:
        if not accepted:
            return result
        body = b"".join(chunks)
        yield from _write(conn.send(Bdat(len(body), last=True)) + conn.send(MessageData(body)), wt)
        return attrs.evolve(result, data=(yield from _last_reply(conn, timeouts)))
    if go is None or go.code != 354:
        return result
    if not accepted:
        # RFC 2920 §3.1: DATA accepted though no recipient was: a lone dot
        yield from _write(conn.send(_END), wt)
        yield from read_reply(conn, timeouts)
        return result
    yield from _write_content(conn, chunks, wt)
    return _send_result(result.mail, result.recipients, (yield from _last_reply(conn, timeouts)))


def _send_pipelined(
    conn: ClientConnection,
    mail: MailFrom,
    recipients: Sequence[RcptTo],
    content: bytes | Iterable[bytes],
    timeouts: Mapping[str, float],
) -> Step[SendResult]:
    """send_message with PIPELINING and DATA, the usual case, in fewer
    steps: the same writes, the same reads, the same result."""
    wt = timeouts.get(_WRITE, _WRITE_TIMEOUT)
    # RFC 2920 §3.1: MAIL and RCPT may be grouped, DATA ends the group.
    # (conn.send at each call, not a bound method kept: a compiled build
    # then calls the method directly, without Python's call protocol)
    lines = [conn.send(mail)]
    for rcpt in recipients:
        lines.append(conn.send(rcpt))
    lines.append(conn.send(_DATA))
    # (the Write requests yielded here, not through _write: a generator
    # less per write on the path every message takes)
    written = yield _write_request(b"".join(lines), wt)
    if isinstance(written, _Broken):
        raise ConnectionError(written.detail)
    got = yield from _read_replies(conn, len(lines), timeouts)
    mail_reply = got[0]
    rcpt_replies = got[1:-1]
    pairs = tuple(zip(recipients, rcpt_replies, strict=True))
    go = got[-1]
    if go.code != 354:
        return _send_result(mail_reply, pairs, None)
    if not (is_positive(mail_reply) and any(is_positive(r) for r in rcpt_replies)):
        # RFC 2920 §3.1: DATA accepted though no recipient was: a lone dot
        yield from _write(conn.send(_END), wt)
        yield from read_reply(conn, timeouts)
        return _send_result(mail_reply, pairs, None)
    if type(content) is bytes and content:
        # the whole content at once: its bytes and the end's in one call
        held, end = conn._send_content_end(content)
        # the end of data joins a small content (see _write_content)
        written = yield _write_request(held + end if len(held) <= _JOIN_END else held, wt)
        if isinstance(written, _Broken):
            raise ConnectionError(written.detail)
        if len(held) > _JOIN_END:
            yield from _write(end, wt)
    else:
        yield from _write_content(conn, [content] if isinstance(content, bytes) else content, wt)
    return _send_result(mail_reply, pairs, (yield from _last_reply(conn, timeouts)))


#: The largest message :func:`send_message` sends in the same write as its
#: MAIL and RCPT commands (``BDAT <size> LAST``): a server that refuses every
#: recipient has received the content for nothing, a waste worth one round
#: trip only for a small message.
CHUNKING_MAX: Final = 256 * 1024


def _send_chunked(
    conn: ClientConnection,
    mail: MailFrom,
    recipients: Sequence[RcptTo],
    body: bytes,
    timeouts: Mapping[str, float],
) -> Step[SendResult]:
    """send_message in one write: MAIL, RCPT..., BDAT LAST and the content."""
    wt = timeouts.get(_WRITE, _WRITE_TIMEOUT)
    # RFC 3030 §4.2: BDAT may be pipelined, and BDAT LAST ends the group
    # (RFC 2920 §3.1); the server reads and drops the chunk it refuses
    # (RFC 3030 §2), so the stream stays in step whatever the replies.
    lines = [conn.send(mail)]
    for rcpt in recipients:
        lines.append(conn.send(rcpt))
    lines.append(conn.send(Bdat(len(body), last=True)))
    lines.append(conn.send(MessageData(body)))
    if len(body) <= _JOIN_END:
        written = yield _write_request(b"".join(lines), wt)
    else:
        # a large body goes out as it is, not copied to join the commands
        written = yield _write_request(b"".join(lines[:-1]), wt)
        if not isinstance(written, Broken):
            written = yield _write_request(body, wt)
    if isinstance(written, Broken):
        raise ConnectionError(written.detail)
    got = yield from _read_replies(conn, len(recipients) + 1, timeouts)
    mail_reply = got[0]
    pairs = tuple(zip(recipients, got[1:], strict=True))
    end = yield from _last_reply(conn, timeouts)
    # (a refused chunk leaves the transaction to reset: send_message does)
    if not (is_positive(mail_reply) and any(is_positive(r) for _, r in pairs)):
        # the content went nowhere, as when DATA is not sent (SendResult)
        return _send_result(mail_reply, pairs, None)
    return _send_result(mail_reply, pairs, end)


def _write_content(conn: ClientConnection, chunks: Iterable[bytes], wt: float) -> Step[None]:
    # The end of data goes out with the last chunk when that one is small:
    # one write (one system call, one segment) instead of two, for the cost
    # of copying at most _JOIN_END octets.
    held = b""
    for chunk in chunks:
        if chunk:
            if held:
                yield from _write(held, wt)
            held = conn.send(MessageData(chunk))
    end = conn.send(_END)
    if len(held) > _JOIN_END:
        yield from _write(held, wt)
        held = b""
    yield from _write(held + end, wt)


#: The largest last chunk of content copied to join the end of data to it.
_JOIN_END: Final = 64 * 1024


def _last_reply(conn: ClientConnection, timeouts: Mapping[str, float]) -> Step[Reply]:
    # LMTP answers once per accepted recipient (RFC 2033 §4.2); the first
    # failure, or the last reply, stands for the message here.
    reply = yield from read_reply(conn, timeouts)
    while conn.awaiting is not None:  # conn.pending, without building the tuple
        more = yield from read_reply(conn, timeouts)
        if is_positive(reply):
            reply = more
    return reply


def uniform(timeout: float) -> Mapping[str, float]:
    """Timeouts that are ``timeout`` for every wait (a ``timeout=`` argument)."""
    return _Uniform(timeout)
