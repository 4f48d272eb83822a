"""Bytes framing: a bounded line buffer and the DATA / BDAT content readers.

Everything here works on whole chunks with C-speed ``bytes`` operations
(``find``, ``replace``, ``count``); no Python loop runs per line of content.
Every buffer is bounded: a line longer than its limit is discarded as it
arrives, and the content readers hold back at most four octets.
"""

from __future__ import annotations

import re

from ._errors import RemoteProtocolError

__all__ = ["BdatReader", "DataReader", "LineBuffer", "LineTooLong"]

# RFC 5321 §4.1.1.4: the mail data ends with "<CRLF>.<CRLF>"; the first CRLF
# ends the last line of content.  Nothing else ends it: "<LF>.<LF>" MUST NOT
# be treated as the end, and neither may any other variant (SMTP smuggling).
_END = b"\r\n.\r\n"
_BARE_RE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


class LineTooLong(RemoteProtocolError):
    """More than the allowed octets arrived without a line end."""


class LineBuffer:
    """Bytes in, CRLF-terminated lines out, never more than ``max_line`` held
    for a line.

    When a line outgrows the limit, :meth:`next_line` raises LineTooLong once
    and then silently drops input up to and including the next line end, so
    the caller (the server answers 500) stays in step with the peer.  With
    ``lf_ends_line`` a bare LF also ends a line (the "normalise" setting).
    """

    def __init__(self, max_line: int, *, lf_ends_line: bool = False) -> None:
        self.max_line = max_line
        self.lf_ends_line = lf_ends_line
        self._buf = bytearray()
        # A read that arrives into an empty buffer is kept as it is, so that
        # message content passes from receive_data() to the DATA reader
        # without being copied twice; line reading moves it into _buf.
        self._whole: bytes | None = None
        self._scanned = 0  # no line end before this offset: never rescan
        self._discarding = False

    def __len__(self) -> int:
        return len(self._buf) + (len(self._whole) if self._whole is not None else 0)

    def _settle(self) -> None:
        if self._whole is not None:
            self._buf += self._whole
            self._whole = None

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if not self._buf and self._whole is None:
            self._whole = bytes(data)
        else:
            self._settle()
            self._buf += data

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of the buffer (a content reader's leftover)."""
        if data:
            self._settle()
            self._buf[:0] = data
            self._scanned = 0

    def take_all(self) -> bytes:
        """Remove and return everything buffered."""
        if self._whole is not None and not self._buf:
            data, self._whole = self._whole, None
            return data
        self._settle()
        data = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        return data

    def take(self, n: int) -> bytes:
        """Remove and return at most ``n`` octets from the front."""
        self._settle()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._scanned = 0
        return data

    def _find_end(self) -> tuple[int, int]:
        start = max(0, self._scanned - 1)
        if self.lf_ends_line:
            i = self._buf.find(b"\n", start)
            if i < 0:
                return -1, 0
            if i > 0 and self._buf[i - 1] == 0x0D:
                return i - 1, 2
            return i, 1
        i = self._buf.find(b"\r\n", start)
        return i, 2

    def next_line(self) -> bytes | None:
        """The next line without its line end, or None until one is complete."""
        self._settle()
        while True:
            i, n = self._find_end()
            if i < 0:
                self._scanned = len(self._buf)
                if self._discarding:
                    # keep a trailing CR: it may start the CRLF we wait for
                    keep = 1 if self._buf.endswith(b"\r") else 0
                    del self._buf[: len(self._buf) - keep]
                    self._scanned = 0
                    return None
                if len(self._buf) >= self.max_line:
                    self._discarding = True
                    raise LineTooLong(f"line longer than {self.max_line} octets")
                return None
            line = bytes(self._buf[:i])
            del self._buf[: i + n]
            self._scanned = 0
            if self._discarding:
                self._discarding = False
                continue
            if i + n > self.max_line:
                raise LineTooLong(f"line longer than {self.max_line} octets")
            return line


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
    pipelined commands).  At most two octets that might begin the end marker
    (a CR, or "." / ".\\r" at a line start) are held back between calls.
    """

    def __init__(self) -> None:
        self._held = b""
        self._line_start = True  # the content starts at the start of a line
        self.bare_line_ending = False
        self.octets = 0

    def feed(self, data: bytes, *, normalise: bool = False) -> tuple[bytes, bool, bytes]:
        """Consume ``data``; see the class docstring."""
        held, self._held = self._held, b""
        if held and len(data) >= 5:
            # Whether the end marker starts inside the held octets is decided
            # by the first few octets of the read; the read itself is then
            # searched alone, so the held octets never cost a copy of it.
            head = held + data[:5]
            if self._line_start and head[:3] == b".\r\n":
                return self._emit(b"", normalise), True, data[3 - len(held) :]
            i = head.find(_END)
            if 0 <= i < len(held):
                return self._emit(head[: i + 2], normalise), True, data[i + 5 - len(held) :]
            return self._scan(data, held, normalise, line_start_checked=True)
        return self._scan(held + data if held else data, b"", normalise, line_start_checked=False)

    def _scan(
        self, buf: bytes, held: bytes, normalise: bool, *, line_start_checked: bool
    ) -> tuple[bytes, bool, bytes]:
        # ``held`` (already known not to start the end marker) goes in front
        # of the content found in ``buf``.
        if not line_start_checked and self._line_start and buf[:3] == b".\r\n":
            # the end marker right at a line start: the content ends here
            return self._emit(b"", normalise), True, buf[3:]
        end = buf.find(_END)
        if end >= 0:
            return self._emit(_joined(held, buf, end + 2), normalise), True, buf[end + 5 :]
        # Hold back only what may still turn into the end marker, and never a
        # whole CRLF: a read that ends on CRLF is emitted in full and the next
        # read starts at a line start, where ".\r\n" is the end.  So the
        # usual read is passed on without a copy.
        if not held and self._line_start and len(buf) < 3 and b".\r\n".startswith(buf):
            keep = len(buf)  # "." or ".\r" at a line start
        elif buf.endswith(b"\r\n.\r"):
            keep = 2  # emit through the CRLF, hold ".\r"
        elif buf.endswith((b"\r\n.", b"\r")):
            keep = 1  # hold the "." after a CRLF, or a CR that may meet its LF
        else:
            keep = 0
        if keep:
            self._held = buf[-keep:]
        return self._emit(_joined(held, buf, len(buf) - keep), normalise), False, b""

    def _emit(self, seg: bytes, normalise: bool) -> bytes:
        if not seg:
            return seg
        bare = has_bare_line_ending(seg)
        self.bare_line_ending = self.bare_line_ending or bare
        # Only a real CRLF starts a line, for the end marker and for
        # unstuffing alike: were a bare LF to count (even one that "normalise"
        # rewrites), LF "." CRLF across two reads would end the data.
        line_start_next = seg.endswith(b"\r\n")
        # RFC 5321 §4.5.2: a line that starts with "." loses that first dot.
        if self._line_start and seg[:1] == b".":
            seg = seg[1:]
        out = seg.replace(b"\r\n.", b"\r\n")
        if bare and normalise:
            out = normalise_line_endings(out)
        self._line_start = line_start_next
        self.octets += len(out)
        return out


def _joined(head: bytes, buf: bytes, stop: int) -> bytes:
    """``head + buf[:stop]`` with one copy at most (none when it is ``buf``)."""
    if not head:
        return buf if stop == len(buf) else buf[:stop]
    return b"".join((head, memoryview(buf)[:stop]))


class BdatReader:
    """Reads exactly ``size`` octets of BDAT content (RFC 3030 §2): no dot
    processing, no end marker, binary-safe."""

    def __init__(self, size: int) -> None:
        self.remaining = size

    def feed(self, data: bytes) -> tuple[bytes, bool, bytes]:
        """Consume ``data``: ``(content, chunk_complete, rest)``."""
        n = self.remaining
        if len(data) <= n:
            self.remaining -= len(data)
            return data, self.remaining == 0, b""
        self.remaining = 0
        return data[:n], True, data[n:]
