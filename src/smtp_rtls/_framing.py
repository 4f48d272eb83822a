"""Bytes framing: a bounded line buffer and the DATA / BDAT content readers.

Everything here works on whole chunks with C-speed ``bytes`` operations
(``find``, ``split``, ``translate``); no Python loop runs per line of content.
Every buffer is bounded: a line longer than its limit is discarded as it
arrives, and the content readers hold back at most four octets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, TypeAlias

from ._build import speedup
from ._errors import RemoteProtocolError

__all__ = ["BdatReader", "DataReader", "LineBuffer", "LineTooLong", "slice_of"]

# RFC 5321 §4.1.1.4: the mail data ends with "<CRLF>.<CRLF>"; the first CRLF
# ends the last line of content.  Nothing else ends it: "<LF>.<LF>" MUST NOT
# be treated as the end, and neither may any other variant (SMTP smuggling).
_END: Final = b"\r\n.\r\n"
_BARE_RE: Final = re.compile(rb"\r(?!\n)|(?<!\r)\n")

# The C functions of ``_speedups`` (src/smtp_rtls/_speedups.c), built only by
# the compiled build (setup.py, SMTP_RTLS_COMPILE=1); all None in the pure
# build, where bytes methods do the same work.  Module globals, not Final,
# so that tests can compare both paths in one process.
#
#: ``_speedups.scan_data``: DataReader's read of content with nothing or a
#: CR held, in one pass of C, where the bytes methods below make three.
ScanData: TypeAlias = Callable[
    [bytes | bytearray, int, bytes, bool, bool], tuple[bytes, bool, int, int, int, bool]
]
#: ``_speedups.first_bare``: the offset of the first bare CR or LF in
#: ``buf[:stop]``, or -1 (a memchr per line), for :func:`has_bare_line_ending`.
FirstBare: TypeAlias = Callable[[bytes | bytearray, int], int]
#: ``_speedups.find_crlf``: ``buf.find(b"\r\n", start)`` without the
#: method's argument parsing, for :meth:`LineBuffer.next_line`.
FindCRLF: TypeAlias = Callable[[bytes | bytearray, int], int]


scan_data: ScanData | None = speedup("scan_data")
first_bare: FirstBare | None = speedup("first_bare")
find_crlf: FindCRLF | None = speedup("find_crlf")


class LineTooLong(RemoteProtocolError):
    """More than the allowed octets arrived without a line end; ``head`` is
    the start of that line (the reader may need its verb)."""

    def __init__(self, msg: str, head: bytes = b"") -> None:
        super().__init__(msg)
        self.head = head


class LineBuffer:
    """Bytes in, CRLF-terminated lines out, never more than ``max_line`` held
    for a line (h11's ReceiveBuffer idea).

    When a line outgrows the limit, :meth:`next_line` raises LineTooLong once
    and then silently drops input up to and including the next line end, so
    the caller (the server answers 500) stays in step with the peer.  With
    ``lf_ends_line`` a bare LF also ends a line (the "normalise" setting).

    The buffer keeps a read position instead of deleting what was consumed:
    content readers look at :meth:`view` and :meth:`advance` past what they
    used, so a read holding many pipelined chunks is never copied once per
    chunk.  A read that arrives into an empty buffer is kept as it is, so
    message content passes to the DATA reader without a copy.

    ``_data`` is empty exactly when nothing is buffered (everything that
    consumes the last octet drops it), so the connection tests it in place
    of a ``len()`` that costs a Python call on every step.
    """

    def __init__(self, max_line: int, *, lf_ends_line: bool = False) -> None:
        self.max_line = max_line
        self.lf_ends_line = lf_ends_line
        self._data: bytes | bytearray = b""
        self._pos = 0
        self._scanned = 0  # no line end before this offset: never rescan
        self._discarding = False

    def __len__(self) -> int:
        return len(self._data) - self._pos

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._pos >= len(self._data):
            self._data = bytes(data)
            self._pos = self._scanned = 0
            return
        if isinstance(self._data, bytes):
            self._data = bytearray(memoryview(self._data)[self._pos :])
            self._scanned -= self._pos
            self._pos = 0
        elif self._pos > 4096 and self._pos * 2 > len(self._data):
            # compact now and then: amortised, never once per line or chunk
            del self._data[: self._pos]
            self._scanned -= self._pos
            self._pos = 0
        self._data += data

    def view(self) -> tuple[bytes | bytearray, int]:
        """The buffered bytes and the offset where the unread ones start."""
        return self._data, self._pos

    def advance(self, to: int) -> None:
        """Mark everything before offset ``to`` (of :meth:`view`) as read."""
        if to >= len(self._data):
            self._data = b""
            self._pos = self._scanned = 0
        else:
            self._pos = to
            self._scanned = max(self._scanned, to)

    def take_all(self) -> bytes:
        """Remove and return everything buffered."""
        data = slice_of(self._data, self._pos, len(self._data))
        self.advance(len(self._data))
        return data

    def _find_end(self, start: int) -> tuple[int, int]:
        data = self._data
        if self.lf_ends_line:
            i = data.find(b"\n", start)
            if i < 0:
                return -1, 0
            if i > self._pos and data[i - 1] == 0x0D:
                return i - 1, 2
            return i, 1
        return data.find(b"\r\n", start), 2

    def next_line(self) -> bytes | None:
        """The next line without its line end, or None until one is complete."""
        data, pos = self._data, self._pos
        if type(data) is bytes and not self._discarding and not self.lf_ends_line:
            # The usual case, in one step: a CRLF line within the limit in a
            # read kept as it arrived.
            start = pos if pos >= self._scanned else self._scanned - 1
            find = find_crlf  # (C in the compiled build: see above)
            i = data.find(b"\r\n", start) if find is None else find(data, start)
            if i >= 0 and i + 2 - pos <= self.max_line:
                if i + 2 >= len(data):
                    self._data = b""
                    self._pos = self._scanned = 0
                else:
                    self._pos = self._scanned = i + 2
                return data[pos:i]
        while True:
            data, pos = self._data, self._pos
            i, n = self._find_end(max(pos, self._scanned - 1))
            if i < 0:
                self._scanned = len(data)
                if self._discarding:
                    # keep a trailing CR: it may start the CRLF we wait for
                    keep = 1 if data.endswith(b"\r", pos) else 0
                    self.advance(len(data) - keep)
                    return None
                if len(data) - pos >= self.max_line:
                    self._discarding = True
                    head = slice_of(data, pos, pos + 16)
                    raise LineTooLong(f"line longer than {self.max_line} octets", head)
                return None
            line = slice_of(data, pos, i)
            self.advance(i + n)
            if self._discarding:
                self._discarding = False
                continue
            if i + n - pos > self.max_line:
                raise LineTooLong(f"line longer than {self.max_line} octets", line[:16])
            return line


def slice_of(data: bytes | bytearray, start: int, stop: int) -> bytes:
    """``bytes(data[start:stop])`` with one copy at most (none for a whole bytes)."""
    if isinstance(data, bytes):
        return data if start == 0 and stop == len(data) else data[start:stop]
    with memoryview(data) as view:
        return bytes(view[start:stop])


_LF_AT: Final = bytes(1 if i == 0x0A else 0 for i in range(256))
_CR_AT: Final = bytes(1 if i == 0x0D else 0 for i in range(256))


# Windows of this size bound the indicator copies has_bare_line_ending makes.
_WINDOW: Final = 16384


def has_bare_line_ending(data: bytes, stop: int | None = None) -> bool:
    """True when ``data[:stop]`` holds a CR not followed by LF, or an LF not
    after CR (a CR at ``stop - 1`` counts as bare).

    The compiled build asks :data:`first_bare` (C, a ``memchr`` per line).
    Here, shift-and-compare rather than counting ``b"\r\n"`` (a two-octet search,
    the slowest kind): with an LF right after every CR and nowhere else, the
    LF indicator string from the second octet on equals the CR indicator
    string.  Two ``translate`` passes and a ``memcmp`` per window; windows
    (overlapping by one octet) keep the copies small whatever the read size.
    """
    size = len(data) if stop is None else stop
    find = first_bare  # one look-up of the module's dict (not Final: see above)
    if find is not None:
        return find(data, size) >= 0
    # memchr: content without any line end costs next to nothing
    if data.find(b"\r", 0, size) < 0 and data.find(b"\n", 0, size) < 0:
        return False
    if data[:1] == b"\n" or data[size - 1] == 0x0D:
        return True
    if size == len(data) and size <= _WINDOW + 1:
        cr_at = data.translate(_CR_AT)
        return not data.translate(_LF_AT).startswith(memoryview(cr_at)[:-1], 1)
    for start in range(0, size - 1, _WINDOW):
        part = data[start : min(start + _WINDOW + 1, size)]
        cr_at = part.translate(_CR_AT)
        if not part.translate(_LF_AT).startswith(memoryview(cr_at)[:-1], 1):
            return True
    return False


def normalise_line_endings(data: bytes) -> bytes:
    """Rewrite every bare CR and bare LF of ``data`` as CRLF."""
    return _BARE_RE.sub(b"\r\n", data)


def _normalised(data: bytes) -> bytes:
    """:func:`normalise_line_endings` in three passes of ``replace`` rather
    than a regular expression's steps at every octet: the CRLF pairs (which
    cannot overlap) become LF, then every CR left (a bare one) becomes LF,
    then every LF becomes CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


# A line that starts with "." as it goes on the wire, after the first line.
_STUFFED: Final = b"\r\n."
# A piece of ``split(_STUFFED)`` that starts with CRLF (the end marker) or is
# empty (the end marker, then another stuffed line) sorts before this: when
# the least piece does not, no separator begins an end marker.
_NOT_AFTER: Final = b"\r\x0b"


def _split_limit(size: int) -> int:
    # Each piece costs an object and, in ``join``, a buffer record: about
    # 120 octets.  One stuffed line per 128 octets on average (text has about
    # one per thousand) keeps that below the size of the read; past it,
    # ``replace`` (no object per line) is the cheaper unstuffing.
    return (size >> 7) + 8


def _split_stuffed(data: bytes, limit: int) -> list[bytes]:
    """``data.split(b"\\r\\n.", limit)``, searching only from the first dot."""
    first = data.find(b".")  # memchr: base64 and the like have none
    if first < 0:
        return [data]
    at = data.find(_STUFFED, first - 2 if first > 1 else 0)
    if at < 0:
        return [data]
    if at <= len(data) >> 3:
        return data.split(_STUFFED, limit)
    # The first one late in the read (the end marker after dot-free
    # content, say): copying beats searching what memchr skipped.
    return [data[:at], *data[at + 3 :].split(_STUFFED, limit - 1)]


def _joined_pieces(pieces: list[bytes], lead_dot: bool) -> bytes:
    # split + join rather than replace: one search pass instead of two
    if lead_dot:
        pieces[0] = pieces[0][1:]
    return b"\r\n".join(pieces) if len(pieces) > 1 else pieces[0]


class DataReader:
    """Reads DATA content up to CRLF "." CRLF, undoing dot-stuffing.

    :meth:`feed` takes whatever arrived and returns ``(content, done, rest)``:
    the content that is certainly message data (unstuffed, RFC 5321 §4.5.2),
    whether the end was seen, and the bytes after the end (the next
    pipelined commands).  :meth:`feed_at` does the same from an offset of a
    larger buffer and returns where it stopped instead of a copy of the
    rest.  At most two octets that might begin the end marker (a CR, or "."
    / ".\\r" at a line start) are held back between calls.

    ``octets`` counts the content given out so far; ``first_bare`` is the
    offset in that content of the first bare CR or LF, or ``None``.  Once
    ``refused`` is set (the content is refused already, whatever follows),
    only the end is looked for: nothing more is given out or counted.
    """

    def __init__(self) -> None:
        self._held = b""
        self._line_start = True  # the content starts at the start of a line
        self.bare_line_ending = False
        self.first_bare: int | None = None
        self.octets = 0
        self.refused = False

    # Below this, a read costs more in Python steps than in passes over it,
    # and the general path has fewer steps (at least 3: shorter reads may
    # be "." or ".\r" at a line start, which only the general path holds).
    _whole_min = 4096

    def feed(self, data: bytes, *, normalise: bool = False) -> tuple[bytes, bool, bytes]:
        """Consume ``data``; see the class docstring."""
        content, done, stop = self.feed_at(data, 0, normalise=normalise)
        return content, done, data[stop:]

    def feed_at(
        self, data: bytes | bytearray, start: int, *, normalise: bool = False
    ) -> tuple[bytes, bool, int]:
        """Consume ``data[start:]``: ``(content, done, offset after what was used)``."""
        held, self._held = self._held, b""
        if held and len(data) - start >= 5:
            # Whether the end marker starts inside the held octets is decided
            # by the first few octets of the read; the read itself is then
            # searched alone, so the held octets never cost a copy of it.
            head = held + data[start : start + 5]
            if self._line_start and head[:3] == b".\r\n":
                return self._emit(b"", normalise), True, start + 3 - len(held)
            i = head.find(_END)
            if 0 <= i < len(held):
                return self._emit(head[: i + 2], normalise), True, start + i + 5 - len(held)
            if self._line_start and held[:1] == b".":
                # RFC 5321 §4.5.2: a dot that starts a line and is not the
                # end marker's is dropped; the read goes on mid-line, and
                # needs no copy to put the dot in front of it.
                held = held[1:]
                self._line_start = False
            return self._scan(data, start, held, normalise, line_start_checked=True)
        if not held:
            return self._scan(data, start, b"", normalise, line_start_checked=False)
        # fewer than five octets: join them (a copy of at most six), and give
        # the stop back as an offset of the caller's buffer
        content, done, stop = self._scan(
            held + data[start:], 0, b"", normalise, line_start_checked=False
        )
        return content, done, stop + start - len(held)

    def _scan(
        self,
        buf: bytes | bytearray,
        start: int,
        held: bytes,
        normalise: bool,
        *,
        line_start_checked: bool,
    ) -> tuple[bytes, bool, int]:
        # ``held`` (already known not to start the end marker) goes in front
        # of the content found in ``buf[start:]``.
        if not line_start_checked and self._line_start and buf[start : start + 3] == b".\r\n":
            # the end marker right at a line start: the content ends here
            return self._emit(b"", normalise), True, start + 3
        scan = scan_data  # one look-up of the module's dict (not Final: see above)
        if scan is not None and not self.refused:
            if not held:
                return self._scan_c(scan, buf, start, b"", normalise)
            if held == b"\r" and start < len(buf):
                # a read that ended on CR (one in about 80 for text): its LF,
                # or the proof that it was bare, is the first octet here
                crlf = buf[start] == 0x0A
                self._line_start = crlf
                if crlf:
                    return self._scan_c(scan, buf, start + 1, b"\r\n", normalise)
                return self._scan_c(scan, buf, start, held, normalise)
        if not start and not held and len(buf) >= self._whole_min and type(buf) is bytes:
            # the usual read: a whole received chunk, nothing held before it
            whole = self._scan_whole(buf, normalise)
            if whole is not None:
                return whole
        end = buf.find(_END, start)
        if end >= 0:
            return self._emit(_joined(held, buf, start, end + 2), normalise), True, end + 5
        # Hold back only what may still turn into the end marker, and never a
        # whole CRLF: a read that ends on CRLF is emitted in full and the next
        # read starts at a line start, where ".\r\n" is the end.  So the
        # usual read is passed on without a copy.
        size = len(buf)
        if not held and self._line_start and size - start < 3 and b".\r\n".startswith(buf[start:]):
            keep = size - start  # "." or ".\r" at a line start
        elif buf.endswith(b"\r\n.\r", start):
            keep = 2  # emit through the CRLF, hold ".\r"
        elif buf.endswith((b"\r\n.", b"\r"), start):
            keep = 1  # hold the "." after a CRLF, or a CR that may meet its LF
        else:
            keep = 0
        if keep:
            self._held = bytes(buf[size - keep :])
        return self._emit(_joined(held, buf, start, size - keep), normalise), False, size

    def _scan_c(
        self, scan: ScanData, buf: bytes | bytearray, start: int, head: bytes, normalise: bool
    ) -> tuple[bytes, bool, int]:
        """:meth:`_scan` of ``head`` (held: b"", a bare CR or a CRLF) and then
        ``buf[start:]`` by :data:`scan_data`, which also works out what
        :meth:`_emit` does: the state is kept here."""
        content, done, stop, keep, bare_at, self._line_start = scan(
            buf, start, head, self._line_start, normalise or not self.bare_line_ending
        )
        if head == b"\r":
            bare_at = 0  # RFC 5321 §2.3.8: the CR held back met no LF
        if keep:
            self._held = bytes(buf[stop - keep : stop])
        if bare_at >= 0:
            if not self.bare_line_ending:
                self.bare_line_ending = True
                self.first_bare = self.octets + bare_at
            if normalise:
                content = _normalised(content)
        self.octets += len(content)
        return content, done, stop

    def _scan_whole(self, data: bytes, normalise: bool) -> tuple[bytes, bool, int] | None:
        """:meth:`_scan` of a whole read, or None when the general path must decide.

        One ``split`` both unstuffs and finds the end marker: every "\\r\\n."
        of ``data`` separates two pieces (two cannot overlap), so
        "\\r\\n.\\r\\n" is there only where the piece after a separator starts
        with CRLF, or is empty with another separator after it.  The usual
        read has it nowhere, or only at its last separator.
        """
        if self.refused:
            return None  # only the end matters: one ``find`` is less work
        size = len(data)
        limit = _split_limit(size)
        pieces = _split_stuffed(data, limit)
        n = len(pieces)
        last = pieces[-1]
        if n > limit:
            return self._scan_dense(data, normalise, pieces)
        if n > 1:
            if n > 2 and min(pieces[1:-1]) < _NOT_AFTER:
                return None  # an end marker before the last separator
            if last[:2] == b"\r\n":
                # the end marker at the last separator: the content ends with
                # its CRLF, what follows its "." CRLF is the next command
                pieces[-1] = b""
                stop = size - len(last) - 1
                return self._emit(data, normalise, stop, pieces), True, stop + 3
        keep = 0
        if n > 1 and not last:
            keep = 1  # "\r\n." at the end: emit through the CRLF, hold "."
        elif n > 1 and last == b"\r":
            keep = 2  # "\r\n.\r": hold ".\r"
            pieces[-1] = b""
        elif last[-1] == 0x0D:
            keep = 1  # a CR that may meet its LF
            pieces[-1] = last[:-1]
        stop = size - keep
        if keep:
            self._held = data[stop:]
        return self._emit(data, normalise, stop, pieces), False, size

    def _scan_dense(
        self, data: bytes, normalise: bool, pieces: list[bytes]
    ) -> tuple[bytes, bool, int] | None:
        """:meth:`_scan_whole` once the split stopped at its limit: the pieces
        so far are kept, the unsplit rest is unstuffed with ``replace``."""
        rest = pieces.pop()
        if (
            len(rest) < 4  # what may be held back would reach into a separator
            or min(pieces[1:]) < _NOT_AFTER  # each of these has a separator after it
            or rest[:2] == b"\r\n"
            or _END in rest
        ):
            return None  # the end marker, or short: the general path decides
        if rest.endswith(b"\r\n.\r"):
            keep = 2
        elif rest.endswith((b"\r\n.", b"\r")):
            keep = 1
        else:
            keep = 0
        if keep:
            self._held = data[-keep:]
            rest = rest[:-keep]
        pieces.append(rest.replace(_STUFFED, b"\r\n"))
        size = len(data)
        return self._emit(data, normalise, size - keep, pieces), False, size

    def _emit(
        self,
        data: bytes,
        normalise: bool,
        stop: int | None = None,
        pieces: list[bytes] | None = None,
    ) -> bytes:
        """Give out ``data[:stop]`` unstuffed; ``pieces`` (with ``stop``) is that
        content already split at "\\r\\n."; without them, all of ``data``."""
        if stop is None:
            stop = len(data)
        if not stop:
            return b""
        line_start = self._line_start
        # Only a real CRLF starts a line, for the end marker and for
        # unstuffing alike: were a bare LF to count (even one that "normalise"
        # rewrites), LF "." CRLF across two reads would end the data.
        self._line_start = data.endswith(b"\r\n", 0, stop)
        if self.refused:
            return b""  # read only to find the real end (RFC 5321 §4.1.1.4)
        if normalise or not self.bare_line_ending:
            bare = has_bare_line_ending(data, stop)
        else:
            bare = False  # one was found before: where the next one falls does not matter
        if bare and not self.bare_line_ending:
            self.bare_line_ending = True
            # where the first one falls in the content given out (after
            # unstuffing): the first fault in content order decides the
            # reply (see ServerConnection), whatever the reads were
            m = _BARE_RE.search(data, 0, stop)
            assert m is not None
            before = data[: m.start()]
            if line_start and before[:1] == b".":
                before = before[1:]
            self.first_bare = self.octets + len(before.replace(b"\r\n.", b"\r\n"))
        # RFC 5321 §4.5.2: a line that starts with "." loses that first dot.
        lead_dot = line_start and data[:1] == b"."
        if pieces is not None:
            out = _joined_pieces(pieces, lead_dot)
        elif b"." in data:  # memchr: base64 and the like never pay for a search
            # ``replace``, not ``split``: the general path's content is often a
            # copy already; ``replace`` adds one more, the pieces about two.
            out = (data[1:] if lead_dot else data).replace(_STUFFED, b"\r\n")
        else:
            out = data
        if bare and normalise:
            out = _normalised(out)
        self.octets += len(out)
        return out


def _joined(head: bytes, buf: bytes | bytearray, start: int, stop: int) -> bytes:
    """``head + buf[start:stop]`` with one copy at most (none when it is ``buf``)."""
    if not head:
        return slice_of(buf, start, stop)
    with memoryview(buf) as view:
        return b"".join((head, view[start:stop]))


class BdatReader:
    """Reads exactly ``size`` octets of BDAT content (RFC 3030 §2): no dot
    processing, no end marker, binary-safe."""

    def __init__(self, size: int) -> None:
        self.remaining = size

    def feed(self, data: bytes) -> tuple[bytes, bool, bytes]:
        """Consume ``data``: ``(content, chunk_complete, rest)``."""
        content, done, stop = self.feed_at(data, 0)
        return content, done, data[stop:]

    def feed_at(self, data: bytes | bytearray, start: int) -> tuple[bytes, bool, int]:
        """Consume ``data[start:]``: ``(content, chunk_complete, offset after it)``."""
        stop = min(len(data), start + self.remaining)
        self.remaining -= stop - start
        return slice_of(data, start, stop), self.remaining == 0, stop
