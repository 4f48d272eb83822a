"""The DATA and line readers against a one-line reference model, for any split."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from smtp_rtls._framing import DataReader, LineBuffer, LineTooLong, has_bare_line_ending

# Pieces that make every kind of trouble: bare CR and LF, dots at line starts,
# the end marker, and text.
PIECES = [b"\r", b"\n", b".", b"..", b"\r\n", b".\r\n", b"\r\n.\r\n", b"text", b"\0"]


def reference(stream: bytes) -> tuple[bytes, bytes] | None:
    """RFC 5321 §4.1.1.4 and §4.5.2 stated once: the data (which starts at a
    line start) ends at the first CRLF "." CRLF; a leading dot of a line is
    removed.  Returns (content, rest), or None when the end was not seen."""
    framed = b"\r\n" + stream
    end = framed.find(b"\r\n.\r\n")
    if end < 0:
        return None
    return framed[: end + 2].replace(b"\r\n.", b"\r\n")[2:], framed[end + 5 :]


def read_in_pieces(stream: bytes, cuts: list[int]) -> tuple[bytes, bool, bytes, bool]:
    reader = DataReader()
    content, rest, done = b"", b"", False
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(stream)), len(stream)]
    for start, stop in itertools.pairwise(bounds):
        piece = stream[start:stop]
        if done:
            rest += piece
            continue
        out, done, leftover = reader.feed(piece)
        content += out
        rest += leftover
        assert len(reader._held) <= 2  # nothing accumulates between reads
    return content, done, rest, reader.bare_line_ending


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=16).map(b"".join),
    st.lists(st.integers(0, 80), max_size=8),
)
def test_data_reader_matches_the_reference_for_any_split_rfc5321_4_1_1_4(
    stream: bytes, cuts: list[int]
) -> None:
    content, done, rest, bare = read_in_pieces(stream + b"Q", cuts)
    expected = reference(stream + b"Q")
    if expected is None:
        assert not done
    else:
        assert done
        assert (content, rest) == expected
        assert bare == has_bare_line_ending(expected[0])


@given(st.binary(max_size=64), st.integers(1, 4))
def test_has_bare_line_ending_is_the_counting_definition(data: bytes, repeat: int) -> None:
    data = data * repeat
    crlf = data.count(b"\r\n")
    assert has_bare_line_ending(data) == (data.count(b"\r") != crlf or data.count(b"\n") != crlf)


def test_has_bare_line_ending_across_its_internal_windows() -> None:
    clean = b"x" * 16383 + b"\r\n" + b"y" * 20000 + b"\r\n"
    assert not has_bare_line_ending(clean)
    for at in (16382, 16383, 16384, 16385, 32767, 32768):
        assert has_bare_line_ending(clean[:at] + b"\n" + clean[at:])
        assert has_bare_line_ending(clean[:at] + b"\r" + clean[at:])


def test_line_buffer_discards_an_overlong_line_and_resynchronises() -> None:
    buf = LineBuffer(16)
    buf.feed(b"a" * 20)
    with pytest.raises(LineTooLong):
        buf.next_line()
    buf.feed(b"b" * 1000 + b"\r")
    assert buf.next_line() is None
    assert len(buf) <= 1  # only a CR that may start the awaited CRLF
    buf.feed(b"\nNOOP\r\n")
    assert buf.next_line() == b"NOOP"
