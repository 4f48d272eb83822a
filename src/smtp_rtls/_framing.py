"""Bytes framing: a bounded line buffer and the DATA / BDAT content readers.

Everything here works on whole chunks with C-speed ``bytes`` operations
(``find``, ``replace``, ``count``); no Python loop runs per line of content.
Every buffer is bounded: a line longer than its limit is discarded as it
arrives, and the content readers hold back at most four octets.
"""

from __future__ import annotations

import re

from ._errors import RemoteProtocolError

__all__ = ["BdatReader", "DataReader", "LineBuffer", "LineTooLong", "slice_of"]

# RFC 5321 §4.1.1.4: the mail data ends with "<CRLF>.<CRLF>"; the first CRLF
# ends the last line of content.  Nothing else ends it: "<LF>.<LF>" MUST NOT
# be treated as the end, and neither may any other variant (SMTP smuggling).
_END = b"\r\n.\r\n"
_BARE_RE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


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
            i = data.find(b"\r\n", pos if pos >= self._scanned else self._scanned - 1)
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


_LF_AT = bytes(1 if i == 0x0A else 0 for i in range(256))
_CR_AT = bytes(1 if i == 0x0D else 0 for i in range(256))


# Windows of this size bound the indicator copies has_bare_line_ending makes.
_WINDOW = 16384


def has_bare_line_ending(data: bytes) -> bool:
    """True when ``data`` holds a CR not followed by LF, or an LF not after CR.

    Shift-and-compare rather than counting ``b"\r\n"`` (a two-octet search,
    the slowest kind): with an LF right after every CR and nowhere else, the
    LF indicator string from the second octet on equals the CR indicator
    string.  Two ``translate`` passes and a ``memcmp`` per window; windows
    (overlapping by one octet) keep the copies small whatever the read size.
    """
    if b"\r" not in data and b"\n" not in data:
        return False
    if data[:1] == b"\n" or data[-1:] == b"\r":
        return True
    size = len(data)
    for start in range(0, size - 1, _WINDOW):
        part = data if size <= _WINDOW + 1 else data[start : start + _WINDOW + 1]
        cr_at = part.translate(_CR_AT)
        if not part.translate(_LF_AT).startswith(memoryview(cr_at)[:-1], 1):
            return True
    return False


def normalise_line_endings(data: bytes) -> bytes:
    """Rewrite every bare CR and bare LF of ``data`` as CRLF."""
    return _BARE_RE.sub(b"\r\n", data)


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
    offset in that content of the first bare CR or LF, or ``None``.
    """

    def __init__(self) -> None:
        self._held = b""
        self._line_start = True  # the content starts at the start of a line
        self.bare_line_ending = False
        self.first_bare: int | None = None
        self.octets = 0

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

    def _emit(self, seg: bytes, normalise: bool) -> bytes:
        if not seg:
            return seg
        bare = has_bare_line_ending(seg)
        line_start = self._line_start
        if bare and not self.bare_line_ending:
            self.bare_line_ending = True
            # where the first one falls in the content given out (after
            # unstuffing): the first fault in content order decides the
            # reply (see ServerConnection), whatever the reads were
            m = _BARE_RE.search(seg)
            assert m is not None
            before = seg[: m.start()]
            if line_start and before[:1] == b".":
                before = before[1:]
            self.first_bare = self.octets + len(before.replace(b"\r\n.", b"\r\n"))
        # Only a real CRLF starts a line, for the end marker and for
        # unstuffing alike: were a bare LF to count (even one that "normalise"
        # rewrites), LF "." CRLF across two reads would end the data.
        line_start_next = seg.endswith(b"\r\n")
        # RFC 5321 §4.5.2: a line that starts with "." loses that first dot.
        if line_start and seg[:1] == b".":
            seg = seg[1:]
        out = seg.replace(b"\r\n.", b"\r\n")
        if bare and normalise:
            out = normalise_line_endings(out)
        self._line_start = line_start_next
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
