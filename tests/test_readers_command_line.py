"""The compiled build's C read of a command line (``_speedups.command_line``)
gives what the Python path of :func:`read_command_line` gives, for any line.

The C function answers only for lines whose octets are all %d32-126 and
returns None for every other, which the Python path then reads (and
refuses, for a control character: RFC 5321 §4.1.2).  A line it answered
wrongly would change the verb the core dispatches on or the argument it
parses; one it answered that holds a control character would let that
character through.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_rtls import _readers
from smtp_rtls._framing import LineBuffer
from smtp_rtls._reply import Reply

pytestmark = pytest.mark.compiled_only(reason="the C read, _speedups.c")

# The octets that decide the answer: letters of both cases (the verb is
# upper-cased), the space (the split), the ends of %d32-126, control
# characters, DEL and UTF-8.
_OCTETS = st.sampled_from(
    [*b"MAILmail FROM:<a@b.example>", 0x20, 0x7E, 0x1F, 0x7F, 0x00, 0x09, 0x0D, 0xC3, 0xA9, 0xFF]
)
_LINES = st.lists(_OCTETS, max_size=40).map(bytes)


def _read(raw: bytes, reject_bare: bool = False) -> tuple[str, str, int, str] | Reply | None:
    buf = LineBuffer(1000)
    buf.feed(raw + b"\r\n")
    return _readers.read_command_line(buf, reject_bare=reject_bare)


def _python_path(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(_readers, "command_line", None)
        return _read(raw)


def test_the_compiled_build_has_the_c_read() -> None:
    assert _readers.command_line is not None


@settings(max_examples=3000, deadline=None)
@given(_LINES)
def test_the_c_read_answers_as_the_python_path(raw: bytes) -> None:
    command_line = _readers.command_line
    assert command_line is not None
    answer = command_line(raw)
    printable = all(0x20 <= octet <= 0x7E for octet in raw)
    assert (answer is not None) == printable
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_readers, "command_line", None)
        python = _read(raw)
    if answer is not None:
        assert answer == python
        assert all(type(part) is str for part in (answer[0], answer[1], answer[3]))
    assert _read(raw) == python  # read_command_line with the C read


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"DATA", ("DATA", "DATA", 6, "")),
        (b"quit", ("QUIT", "quit", 6, "")),
        (b"mail FROM:<a@b> SIZE=1", ("MAIL", "mail FROM:<a@b> SIZE=1", 24, "FROM:<a@b> SIZE=1")),
        (b"RCPT  TO:<a@b>", ("RCPT", "RCPT  TO:<a@b>", 16, " TO:<a@b>")),
        (b"", ("", "", 2, "")),
        (b" NOOP", ("", " NOOP", 7, "NOOP")),
        (b"NOOP ", ("NOOP", "NOOP ", 7, "")),
    ],
)
def test_lines_of_printable_ascii(
    raw: bytes, expected: tuple[str, str, int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    command_line = _readers.command_line
    assert command_line is not None
    assert command_line(raw) == expected == _python_path(raw, monkeypatch)


@pytest.mark.parametrize("raw", [b"NOOP\x00", b"NOOP\tx", b"NOOP \x7f", b"MAIL FROM:<\xc3\xa9@b>"])
def test_other_lines_are_left_to_the_python_path_rfc5321_4_1_2(raw: bytes) -> None:
    command_line = _readers.command_line
    assert command_line is not None
    assert command_line(raw) is None
    answer = _read(raw)
    if raw.isascii():
        # a control character or DEL: refused, never passed on
        assert answer is _readers.CONTROL_CHARACTER
    else:
        assert isinstance(answer, tuple) and answer[1] == raw.decode()


def test_the_c_read_takes_bytes_only() -> None:
    command_line = _readers.command_line
    assert command_line is not None
    with pytest.raises(TypeError):
        command_line(bytearray(b"NOOP"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        command_line()  # type: ignore[call-arg]
