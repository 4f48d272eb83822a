"""The conversation strategies of :mod:`smtp_rtls.testing.strategies`
(documented there): message contents, splits into reads, whole sessions."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import attrs
from hypothesis import strategies as st

from .. import (
    Bdat,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Expn,
    Help,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTLS,
    Vrfy,
)
from . import END_OF_DATA_LOOKALIKES
from ._grammar import (
    _NOTIFY,
    _ascii_text,
    _orcpts,
    envids,
    forward_paths,
    reverse_paths,
    utf8_chars,
)

__all__ = [
    "ClientSession",
    "chunkings",
    "client_sessions",
    "message_contents",
]

# -- message content -------------------------------------------------------------

# A second transaction, as a smuggler writes it after a look-alike.
_SMUGGLED = (
    b"MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<staff@victim.example>\r\nDATA\r\n"
    b"From: ceo@victim.example\r\n\r\nsmuggled\r\n.\r\n"
)


def _has_bare(data: bytes) -> bool:
    return re.search(rb"\r(?!\n)|(?<!\r)\n", data) is not None


@st.composite
def message_contents(
    draw: st.DrawFn,
    *,
    bare_line_endings: bool = True,
    eight_bit: bool = True,
    nul: bool = True,
    final_crlf: bool | None = None,
    max_lines: int = 12,
) -> bytes:
    """Message content as an application hands it to a client (RFC 5321
    §4.1.1.4, §4.5.2; RFC 5322 lines), built from lines that test a
    transport: header fields and text, empty lines, lines that start with a
    dot (``.``, ``..``, ``.x``: dot-stuffing, §4.5.2), the real end marker
    CRLF "." CRLF inside the content, 8-bit octets (UTF-8 and not, RFC 6152),
    NUL, bare CR and bare LF (§2.3.8), and the end-of-data look-alikes of
    SMTP smuggling (:data:`smtp_rtls.testing.END_OF_DATA_LOOKALIKES`), each
    followed by a whole second transaction.

    ``bare_line_endings=False`` draws no bare CR or LF (nor the look-alikes
    made of them), ``eight_bit=False`` only octets below 0x80,
    ``nul=False`` no NUL.  ``final_crlf`` forces the content to end with
    CRLF (``True``) or not (``False``); by default both are drawn, the
    empty content included.  ``max_lines`` bounds the number of pieces
    (lines, or a look-alike and its smuggled transaction) joined.
    """
    lookalikes = [
        v
        for v in END_OF_DATA_LOOKALIKES.values()
        if (bare_line_endings or not _has_bare(v)) and (nul or b"\x00" not in v)
    ]
    pieces: list[st.SearchStrategy[bytes]] = [
        _ascii_text().map(str.encode),
        st.builds(
            lambda n, v: f"{n}: {v}".encode(),
            st.sampled_from(["Subject", "From", "To", "X-Test", "TLS-Required"]),
            _ascii_text(),
        ),
        st.just(b""),
        st.sampled_from([b".", b"..", b".x", b"...", b". ", b".\t"]),
        st.just(b"\r\n.\r\n"),
        st.sampled_from(lookalikes).map(lambda v: v + _SMUGGLED),
    ]
    if eight_bit:
        pieces.append(st.text(utf8_chars(), min_size=1, max_size=10).map(str.encode))
        pieces.append(st.binary(min_size=1, max_size=10).map(lambda b: bytes(x | 0x80 for x in b)))
    if nul:
        pieces.append(st.sampled_from([b"\x00", b"a\x00b", b"\x00."]))
    if bare_line_endings:
        pieces.append(st.sampled_from([b"\r", b"\n", b"a\nb", b"a\rb", b"\n.", b"\r."]))
    lines = draw(st.lists(st.one_of(*pieces), max_size=max_lines))
    content = b"\r\n".join(lines)
    end = draw(st.booleans()) if final_crlf is None else final_crlf
    if end and not content.endswith(b"\r\n"):
        content += b"\r\n"
    elif not end:
        while content.endswith(b"\r\n"):
            content = content[:-2]
    if not bare_line_endings:
        assert not _has_bare(content), content
    return content


def chunkings(data: bytes, *, max_pieces: int = 4096) -> st.SearchStrategy[list[bytes]]:
    """Every way to split ``data`` into network reads: lists of non-empty
    pieces that join back to ``data`` (``b"".join(pieces) == data``), at
    most ``max_pieces`` of them.

    A read never comes empty (``receive_data(b"")`` means the peer closed),
    so the empty ``data`` has one split, ``[]``.  Draws cuts anywhere
    (inside CRLF, inside a command, inside the end-of-data marker), one
    octet per read when ``data`` has at most ``max_pieces`` octets, and
    shrinks towards a single read.
    """
    if max_pieces < 1:
        raise ValueError("max_pieces must be at least 1")
    n = len(data)
    if n <= 1 or max_pieces == 1:
        return st.just([data] if data else [])
    cuts = st.lists(st.integers(1, n - 1), unique=True, max_size=min(n - 1, max_pieces - 1))
    splits = [cuts.map(sorted)]
    if n <= max_pieces:
        splits.append(st.just(list(range(1, n))))
    return st.one_of(*splits).map(lambda c: _split(data, c))


def _split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- whole client sessions -------------------------------------------------------


@attrs.frozen
class ClientSession:
    """A whole client conversation, as :func:`client_sessions` draws it."""

    #: The groups of events, in order: each group is sent in one go, without
    #: waiting for a reply in between (RFC 2920 §3.1); the replies to a
    #: group are read before the next group is sent.  A group of one is a
    #: command sent on its own.  Content (:class:`~smtp_rtls.MessageData`)
    #: and :class:`~smtp_rtls.EndOfMessage` follow the DATA (after its
    #: ``354``) or the BDAT they belong to.
    groups: tuple[tuple[Event, ...], ...]
    #: The session starts TLS with STARTTLS, and sends EHLO again (RFC 3207
    #: §4.2), before any transaction.
    starttls: bool
    #: The content of each message the session completes, in order, as the
    #: application hands it over.
    messages: tuple[bytes, ...]

    @property
    def events(self) -> tuple[Event, ...]:
        """Every event of :attr:`groups`, in order."""
        return tuple(e for group in self.groups for e in group)


_ENDS_GROUP = (Ehlo, StartTLS, Data, Noop, Vrfy, Expn, Help, Quit)


@st.composite
def _session_mail(draw: st.DrawFn, tls: bool, content: bytes, bdat: bool) -> MailFrom:
    smtputf8 = draw(st.booleans())
    eight = any(b >= 0x80 for b in content)
    body = draw(st.sampled_from(["8BITMIME", None] if not eight else ["8BITMIME"]))
    if body is None and not bdat:
        body = draw(st.sampled_from([None, "7BIT"]))
    return MailFrom(
        draw(reverse_paths(utf8=smtputf8)),
        size=draw(st.sampled_from([None, len(content)])),
        body=body,
        smtputf8=smtputf8,
        requiretls=tls and draw(st.booleans()),
        ret=draw(st.sampled_from([None, "FULL", "HDRS"])),
        envid=draw(st.one_of(st.none(), envids())),
    )


@st.composite
def _session_rcpt(draw: st.DrawFn, utf8: bool) -> RcptTo:
    return RcptTo(
        draw(forward_paths(utf8=utf8)),
        notify=draw(st.one_of(st.none(), _NOTIFY)),
        orcpt=draw(st.one_of(st.none(), _orcpts())),
    )


@st.composite
def _transaction(draw: st.DrawFn, tls: bool) -> tuple[list[Event], bytes | None]:
    """One transaction's events, and its content when it completes."""
    kind = draw(st.sampled_from(["DATA", "BDAT", "RSET"]))
    bdat = kind == "BDAT"
    content = draw(message_contents(nul=False, bare_line_endings=not bdat, max_lines=6))
    mail = draw(_session_mail(tls, content, bdat))
    events: list[Event] = [mail]
    events += draw(st.lists(_session_rcpt(mail.smtputf8), min_size=1, max_size=2))
    if kind == "RSET":
        return [*events, Rset()], None
    if kind == "DATA":
        pieces = draw(chunkings(content, max_pieces=4))
        events += [Data(), *(MessageData(p) for p in pieces), EndOfMessage()]
        return events, content
    chunks = draw(chunkings(content, max_pieces=3))
    if not chunks:
        return [*events, Bdat(0, last=True)], content
    explicit_last = draw(st.booleans())
    for i, chunk in enumerate(chunks):
        events += [Bdat(len(chunk), last=explicit_last and i == len(chunks) - 1)]
        events.append(MessageData(chunk))
    if not explicit_last:
        events.append(EndOfMessage())  # BDAT 0 LAST
    return events, content


def _session_extra() -> st.SearchStrategy[Event]:
    return st.one_of(
        st.builds(Noop, _ascii_text()),
        st.builds(Help, _ascii_text()),
        st.builds(Rset),
        # RFC 6531 §3.7.4.2: a last word SMTPUTF8 is a parameter, not text
        st.builds(Vrfy, _ascii_text(min_size=1).filter(_no_smtputf8_word)),
        st.builds(Expn, _ascii_text(min_size=1).filter(_no_smtputf8_word)),
    )


def _no_smtputf8_word(text: str) -> bool:
    return text.rpartition(" ")[2].upper() != "SMTPUTF8"


@st.composite
def client_sessions(
    draw: st.DrawFn,
    *,
    starttls: bool | None = None,
    pipelining: bool = True,
    max_transactions: int = 2,
) -> ClientSession:
    """A whole valid client conversation (RFC 5321 §3, §4.1.4): EHLO; STARTTLS
    and EHLO again (RFC 3207 §4.2) when ``starttls`` (drawn by default);
    up to ``max_transactions`` transactions (MAIL with typed parameters, REQUIRETLS only after TLS,
    RFC 8689 §2; one or two RCPTs; content over DATA, or over BDAT chunks
    ending with ``BDAT ... LAST`` or ``BDAT 0 LAST``, RFC 3030 §2; or RSET
    instead of content), NOOP, HELP, RSET, VRFY and EXPN between them; QUIT.

    With ``pipelining`` the commands are grouped where RFC 2920 §3.1 allows
    (a group ends at EHLO, STARTTLS, DATA, NOOP, HELP, VRFY, EXPN, QUIT and
    BDAT LAST; content and the next transaction may follow the end of
    data), the cuts drawn too; without it every command waits for its reply.

    The conversation is written for a server with the default
    :class:`~smtp_rtls.ServerConfig` and ``starttls=True`` that accepts
    everything: it offers the extensions each command uses (PIPELINING,
    SIZE, 8BITMIME, SMTPUTF8, CHUNKING, DSN, STARTTLS, REQUIRETLS after TLS),
    and no such server refuses any of it.  ``BODY=8BITMIME`` comes with
    8-bit content; content has no NUL (RFC 6152 §3) and BDAT content no bare
    CR or LF.  ``Pair.play(session.groups)`` runs one through a
    :class:`smtp_rtls.testing.pair.Pair`.
    """
    tls = draw(st.booleans()) if starttls is None else starttls
    flat: list[Event] = [Ehlo("client.example")]
    if tls:
        flat += [StartTLS(), Ehlo("client.example")]
    messages: list[bytes] = []
    for _ in range(draw(st.integers(0, max_transactions))):
        flat += draw(st.lists(_session_extra(), max_size=1))
        events, content = draw(_transaction(tls))
        flat += events
        if content is not None:
            messages.append(content)
    flat += draw(st.lists(_session_extra(), max_size=1))
    flat.append(Quit())
    groups: list[tuple[Event, ...]] = []
    group: list[Event] = []
    last_chunk = False  # the content being sent is that of a BDAT LAST
    in_bdat = False  # the transaction sends its content with BDAT
    for i, event in enumerate(flat):
        group.append(event)
        if isinstance(event, Data | Bdat):
            in_bdat = isinstance(event, Bdat)
            last_chunk = isinstance(event, Bdat) and event.last
        following = flat[i + 1] if i + 1 < len(flat) else None
        if following is None:
            break
        if isinstance(following, MessageData | EndOfMessage) and not isinstance(event, Data):
            continue  # content goes with its BDAT, the end with the content
        # RFC 2920 §3.1 and RFC 3030 §4.2: these end a group; the end of the
        # data goes on (the reply to it comes in turn), BDAT LAST does not
        ends = isinstance(event, _ENDS_GROUP)
        ends = ends or (isinstance(event, Bdat) and event.last)
        ends = ends or (isinstance(event, MessageData) and last_chunk)
        ends = ends or (isinstance(event, EndOfMessage) and in_bdat)
        if ends or not pipelining or draw(st.booleans()):
            groups.append(tuple(group))
            group = []
    groups.append(tuple(group))
    return ClientSession(tuple(groups), tls, tuple(messages))
