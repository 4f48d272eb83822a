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
        self._scanned = 0  # no line end before this offset: never rescan
        self._discarding = False

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of the buffer (a content reader's leftover)."""
        if data:
            self._buf[:0] = data
            self._scanned = 0

    def take_all(self) -> bytes:
        """Remove and return everything buffered."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        return data

    def take(self, n: int) -> bytes:
        """Remove and return at most ``n`` octets from the front."""
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


def has_bare_line_ending(data: bytes) -> bool:
    """True when ``data`` holds a CR not followed by LF, or an LF not after CR."""
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def normalise_line_endings(data: bytes) -> bytes:
    """Rewrite every bare CR and bare LF of ``data`` as CRLF."""
    return _BARE_RE.sub(b"\r\n", data)


class DataReader:
    """Reads DATA content up to CRLF "." CRLF, undoing dot-stuffing.

    :meth:`feed` takes whatever arrived and returns ``(content, done, rest)``:
    the content that is certainly message data (unstuffed, RFC 5321 §4.5.2),
    whether the end was seen, and the bytes after the end (the next
    pipelined commands).  Up to four octets that might begin the end marker
    are held back between calls.
    """

    def __init__(self) -> None:
        self._held = b""
        self._line_start = True  # the content starts at the start of a line
        self.bare_line_ending = False
        self.octets = 0

    def feed(self, data: bytes, *, normalise: bool = False) -> tuple[bytes, bool, bytes]:
        """Consume ``data``; see the class docstring."""
        buf = self._held + data if self._held else data
        self._held = b""
        done = False
        rest = b""
        if self._line_start and buf[:3] == b".\r\n":
            # the end marker right at a line start: the content ends here
            return self._emit(b"", normalise), True, buf[3:]
        end = buf.find(_END)
        if end >= 0:
            seg = buf[: end + 2]
            rest = buf[end + 5 :]
            done = True
        else:
            keep = 0
            for k in (4, 3, 2, 1):
                if buf.endswith(_END[:k]):
                    keep = k
                    break
            if self._line_start and len(buf) < 3 and b".\r\n".startswith(buf):
                keep = len(buf)
            if keep:
                self._held = buf[-keep:]
                seg = buf[:-keep]
            else:
                seg = buf
        return self._emit(seg, normalise), done, rest

    def _emit(self, seg: bytes, normalise: bool) -> bytes:
        if not seg:
            return seg
        if has_bare_line_ending(seg):
            self.bare_line_ending = True
            if normalise:
                seg = normalise_line_endings(seg)
        # RFC 5321 §4.5.2: a line that starts with "." loses that first dot.
        if self._line_start and seg[:1] == b".":
            seg = seg[1:]
        out = seg.replace(b"\r\n.", b"\r\n")
        if seg:
            self._line_start = seg.endswith(b"\r\n")
        self.octets += len(out)
        return out


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
