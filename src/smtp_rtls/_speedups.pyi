"""Types of the C module ``_speedups.c`` (built by the compiled build only)."""

def scan_data(
    buf: bytes | bytearray, start: int, head: bytes, line_start: bool, find_bare: bool, /
) -> tuple[bytes, bool, int, int, int, bool]:
    """DataReader's read of ``head`` and ``buf[start:]``, in one pass."""

def first_bare(buf: bytes | bytearray, stop: int, /) -> int:
    """The offset of the first bare CR or LF in ``buf[:stop]``, or -1."""

def find_crlf(buf: bytes | bytearray, start: int, /) -> int:
    """``buf.find(b"\\r\\n", start)`` for ``start >= 0``."""

def command_line(raw: bytes, /) -> tuple[str, str, int, str] | None:
    """read_command_line's answer for a line of printable ASCII, or None."""

def header_end(buf: bytes | bytearray, /) -> int:
    """``policy.tags.header_section_end(buf)``."""
