"""Readers: how each side reads its peer's bytes in each state (h11's ``_readers``).

A connection picks its reader by state and never parses bytes itself:

* the server reads command lines (:func:`read_command_line`), SASL response
  lines in the AUTH state (:func:`read_sasl_line`), DATA content and BDAT
  chunks (:class:`ContentReader`);
* the client reads replies (:class:`ReplyReader`), with :class:`Reply`'s own
  line parser.

Readers answer with what they read, or with the :class:`Reply` that refuses
it; they never change a session's state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, TypeAlias

from ._build import speedup
from ._errors import RemoteProtocolError
from ._framing import BdatReader, DataReader, LineBuffer, LineTooLong
from ._reply import EnhancedStatus, Reply, parse_one_line, parse_reply_line
from ._slots import slot_filler

__all__ = [
    "CommandLine",
    "ContentReader",
    "ReplyReader",
    "read_command_line",
    "read_sasl_line",
]

# RFC 5321 §4.1.2: no production of a command line admits a control
# character (qtextSMTP and quoted-pairSMTP are %d32-126 only), and RFC 5321
# §2.3.8 admits CR and LF only together, as the line end.
_CONTROL: Final = re.compile(rb"[\x00-\x1f\x7f]")
_BARE: Final = re.compile(rb"[\r\n]")


#: One command line as read: its upper-cased verb, the decoded line
#: (non-UTF-8 octets kept as surrogates), its length with CRLF and the
#: argument after the verb (split once, here, for the parser).  A plain
#: tuple: one is made per command, and a NamedTuple's constructor is a
#: Python function.
CommandLine: TypeAlias = tuple[str, str, int, str]


#: ``_speedups.command_line`` (src/smtp_rtls/_speedups.c, the compiled build
#: only; None in the pure build): :func:`read_command_line`'s answer for a
#: line whose octets are all %d32-126, in one pass of C, or None for any
#: other.  A module global, not Final, so that tests can compare both paths
#: in one process (tests/test_readers_command_line.py).
CommandLineC: TypeAlias = Callable[[bytes], CommandLine | None]
command_line: CommandLineC | None = speedup("command_line")


LINE_TOO_LONG: Final = Reply(500, "Line too long", "5.5.2")
BARE_LINE_END: Final = Reply(500, "Bare CR or LF in command", "5.5.2")
CONTROL_CHARACTER: Final = Reply(500, "Control character in command", "5.5.2")
CHUNK_SIZE_UNKNOWN: Final = Reply(
    421, "Cannot find the end of the BDAT chunk, closing connection", "4.5.2"
)


def read_command_line(buf: LineBuffer, *, reject_bare: bool) -> CommandLine | Reply | None:
    """The next command line, the 500 that refuses it, or None (need data)."""
    try:
        raw = buf.next_line()
    except LineTooLong as exc:
        if exc.head[:5].upper() == b"BDAT ":
            # RFC 3030 §2: the chunk's octets follow this line, and its size
            # was in the part that could not be kept: close rather than read
            # them as commands.
            return CHUNK_SIZE_UNKNOWN
        # RFC 5321 §4.5.3.1.4 / §4.5.3.1.9: "500 Line too long"; the rest of
        # the line is discarded as it arrives.
        return LINE_TOO_LONG
    if raw is None:
        return None
    if command_line is not None:
        # The compiled build's C read of a line of printable ASCII (most
        # lines); it answers as the lines below do, or None for the rest.
        parsed = command_line(raw)
        if parsed is not None:
            return parsed
    line = raw.decode("utf-8", "surrogateescape")
    # A printable line has no control character (they are all category Cc),
    # nor an octet that is not UTF-8 (its escape is a surrogate, Cs): one
    # pass of str.isprintable over the usual line, a third of a regular
    # expression search; any other line is searched.
    if not line.isprintable() and _CONTROL.search(raw) is not None:
        if reject_bare and _BARE.search(raw) is not None:
            return BARE_LINE_END
        # RFC 5321 §4.1.4: a malformed command gets a 5xx and the session
        # goes on; the line is never passed on.
        return CONTROL_CHARACTER
    verb, _, arg = line.partition(" ")
    return verb.upper(), line, len(raw) + 2, arg


SASL_TOO_LONG: Final = Reply(500, "Authentication exchange line is too long", "5.5.6")

# Final aliases of names imported from modules mypyc does not compile, for
# the per-message paths (why: smtp_rtls._build).
_reply_from_lines: Final = Reply.from_lines
_parse_one_line: Final = parse_one_line
_make_reply: Final = slot_filler(Reply, "code", "lines", "enhanced", "command", "_wire")

# The usual one-line replies read so far, parsed, by their line: a server
# repeats its replies ("250 2.1.0 Ok" to every MAIL), and checking one costs
# more than building a Reply from its parts.  Bounded (emptied when full),
# so replies that differ every time (a queue id in each) cost a parse each,
# as without it.
_ONE_LINE: Final[dict[bytes, tuple[int, tuple[str], EnhancedStatus | None]]] = {}
_ONE_LINE_MAX: Final = 512


def is_positive(reply: Reply) -> bool:
    """``reply.is_positive``: a 2xx reply (RFC 5321 §4.2.1), for the client's
    compiled modules, where the property is a call into Python (its code
    is ``Reply``'s, an attrs class) and this is a slot read and two
    comparisons."""
    return 200 <= reply.code < 300


def reply_from_line(raw: bytes) -> Reply:
    """What :meth:`Reply.from_line` returns for ``bytes`` (it calls this): the
    usual one-line reply checked once per distinct line and built from the
    parts kept, here in the reader's module so that a compiled build makes
    it without a Python call; anything else through :meth:`Reply.from_lines`."""
    parsed = _ONE_LINE.get(raw)
    if parsed is None:
        parsed = _parse_one_line(raw)
        if parsed is None:
            return _reply_from_lines((raw,))
        if len(_ONE_LINE) >= _ONE_LINE_MAX:
            _ONE_LINE.clear()
        _ONE_LINE[raw] = parsed
    code, lines, enhanced = parsed
    # A new Reply each time (the client core sets its command), from parts
    # that are immutable and checked once: every rule of Reply's
    # __attrs_post_init__ holds (the code matched [2-5][0-5][0-9], the
    # enhanced class is the code's, the line is printable ASCII within
    # MAX_REPLY_LINE), so its slots are filled directly.
    reply: Reply = _make_reply(code, lines, enhanced, None, None)
    return reply


def read_sasl_line(buf: LineBuffer) -> str | Reply | None:
    """The next SASL response line (RFC 4954 §4), the reply that fails the
    AUTH exchange, or None (need data)."""
    try:
        raw = buf.next_line()
    except LineTooLong:
        # RFC 4954 §4 and §6: "500 5.5.6 Authentication Exchange line is too
        # long"; the exchange is over and the next line is a command again.
        return SASL_TOO_LONG
    if raw is None:
        return None
    if _CONTROL.search(raw) is not None or not raw.isascii():
        # base64 (or "*") only: RFC 4954 §4 "cannot BASE64 decode" -> 501
        return Reply(501, "Cannot decode AUTH response", "5.5.2")
    return raw.decode("ascii")


class ContentReader:
    """Reads one message's content (DATA, or a transaction's BDAT chunks)
    and finds its first fault.

    The faults of content are a bare CR or LF (``reject`` mode, RFC 5321
    §2.3.8) and the size limit (RFC 1870 §6.2).  Whatever the reads, the
    first fault in content order decides the reply, so any split of the
    same bytes gets the same answer.  Content after a fault is read (to find
    the real end) but never given out.
    """

    __slots__ = ("_bdat", "_data", "error", "limit", "normalise", "octets")

    def __init__(self, limit: int, *, normalise: bool) -> None:
        self.limit = limit
        self.normalise = normalise
        self.octets = 0  # content given out or counted, over all chunks
        self.error: Reply | None = None
        self._data: DataReader | None = None
        self._bdat: BdatReader | None = None

    def start_data(self) -> None:
        """The content that follows is DATA content."""
        self._data = DataReader()

    def start_chunk(self, size: int) -> None:
        """The next ``size`` octets are a BDAT chunk."""
        self._bdat = BdatReader(size)

    @property
    def chunk_left(self) -> int:
        """Octets of the current BDAT chunk not read yet."""
        return self._bdat.remaining if self._bdat is not None else 0

    def read(self, buf: LineBuffer) -> tuple[bytes, bool]:
        """Read from ``buf``: ``(content to give out, the end was reached)``."""
        data, start = buf.view()
        if self._data is not None:
            reader = self._data
            # refused: the rest is read only to find its end, not unstuffed
            # nor checked (the first fault decided the reply)
            reader.refused = self.error is not None
            content, done, stop = reader.feed_at(data, start, normalise=self.normalise)
            buf.advance(stop)
            if self.error is None:
                bare = None if self.normalise else reader.first_bare
                self._check(content, bare)
            if done:
                self._data = None
        else:
            assert self._bdat is not None
            content, done, stop = self._bdat.feed_at(data, start)
            buf.advance(stop)
            if self.error is None:
                self._check(content, None)
            if done:
                self._bdat = None
        return (content if self.error is None else b""), done

    def _check(self, content: bytes, bare_at: int | None) -> None:
        self.octets += len(content)
        over_at = self.limit if self.limit and self.octets > self.limit else None
        if over_at is not None and (bare_at is None or over_at < bare_at):
            # RFC 1870 §6.2 / RFC 5321 §4.5.3.1.10: answered after the real
            # end of data, so the session stays in step.
            self.error = Reply(552, "Message size exceeds fixed maximum", "5.3.4")
        elif bare_at is not None:
            # RFC 5321 §2.3.8 / §4.1.1.4: a bare CR or LF is no line end.
            self.error = Reply(500, "Bare CR or LF in message content is not allowed", "5.5.2")


class ReplyReader:
    """Reads replies line by line (RFC 5321 §4.2.1), bounded in lines and
    octets, with :meth:`Reply.from_lines` checking each complete reply."""

    __slots__ = ("_code", "_lines", "max_lines")

    def __init__(self, max_lines: int) -> None:
        self.max_lines = max_lines
        self._lines: list[bytes] = []
        self._code = b""

    @property
    def partial(self) -> bool:
        """Some lines of a reply were read, not its last one."""
        return bool(self._lines)

    def read(self, buf: LineBuffer) -> Reply | None:
        """The next complete reply, or None (need data)."""
        while True:
            try:
                line = buf.next_line()
            except LineTooLong:
                raise RemoteProtocolError("reply line too long (RFC 5321 §4.5.3.1.5)") from None
            if line is None:
                return None
            if not self._lines:
                if line[3:4] != b"-":
                    # a one-line reply, the usual case: checked once, there
                    return reply_from_line(line)
                code, is_last, _ = parse_reply_line(line)
                self._code = code
            else:
                # Reply.from_lines checks every line in full once the reply
                # is complete; here only what decides where the reply ends.
                # RFC 5321 §4.2.1: every line of a multi-line reply has the
                # same code; a change means a reply ended without its last line.
                if line[:3] != self._code:
                    raise RemoteProtocolError("reply code changes inside a multi-line reply")
                if len(self._lines) >= self.max_lines:
                    raise RemoteProtocolError(f"reply longer than {self.max_lines} lines")
                is_last = line[3:4] != b"-"
            self._lines.append(line)
            if is_last:
                lines, self._lines = self._lines, []
                return _reply_from_lines(lines)
