"""The DATA reader's fast paths against plain references, for any bytes in any reads.

DataReader reads a whole received chunk with one ``split`` that both unstuffs
and rules out the end marker, and checks bare line ends with two
``translate`` passes; anything unusual goes to the general path (one
``find`` of the end marker).  These properties compare both paths with a
reference written line by line and octet by octet, which shares no code
with them: the end of data (RFC 5321 §4.1.1.4, the SMTP smuggling rule),
dot-unstuffing (§4.5.2) and bare CR / LF (§2.3.8), including where the first
bare one falls in the content given out.
"""

from __future__ import annotations

import contextlib
import itertools

import hypothesis.strategies as st
import pytest
from hypothesis import example, given, settings

from smtp_rtls import _framing
from smtp_rtls._build import compiled_modules
from smtp_rtls._framing import (
    DataReader,
    LineBuffer,
    LineTooLong,
    _normalised,
    _split_stuffed,
    has_bare_line_ending,
    normalise_line_endings,
)

# -- the references: one octet or one line at a time, no bytes search ------------


def reference_lines(stream: bytes) -> tuple[list[bytes], bool, bytes]:
    """The content lines (as on the wire, CRLF included), whether the end was
    seen, and the bytes after it.  Only CR LF ends a line; a line that is
    exactly "." CRLF ends the data (RFC 5321 §4.1.1.4)."""
    lines: list[bytes] = []
    line = bytearray()
    for i, octet in enumerate(stream):
        line.append(octet)
        if octet == 0x0A and len(line) >= 2 and line[-2] == 0x0D:
            if line == b".\r\n":
                return lines, True, stream[i + 1 :]
            lines.append(bytes(line))
            line = bytearray()
    return lines, False, b""


def reference_unstuff(lines: list[bytes]) -> bytes:
    """RFC 5321 §4.5.2: a line starting with "." loses that dot."""
    return b"".join(line[1:] if line[:1] == b"." else line for line in lines)


def reference_first_bare(content: bytes) -> int | None:
    """The offset of the first CR not followed by LF or LF not after CR."""
    for i, octet in enumerate(content):
        if octet == 0x0D and content[i + 1 : i + 2] != b"\n":
            return i
        if octet == 0x0A and (i == 0 or content[i - 1] != 0x0D):
            return i
    return None


def reference_normalise(content: bytes) -> bytes:
    """Every bare CR and bare LF rewritten as CRLF, octet by octet."""
    out = bytearray()
    for i, octet in enumerate(content):
        if octet == 0x0D:
            out += b"\r\n" if content[i + 1 : i + 2] != b"\n" else b"\r"
        elif octet == 0x0A:
            out += b"\n" if i and content[i - 1] == 0x0D else b"\r\n"
        else:
            out.append(octet)
    return bytes(out)


# -- the readers under test --------------------------------------------------------


class GeneralReader(DataReader):
    """A DataReader that never takes the whole-read fast path."""

    def _scan_whole(self, data: bytes, normalise: bool) -> tuple[bytes, bool, int] | None:
        return None


class FastReader(DataReader):
    """A DataReader that tries the whole-read fast path on reads of any size."""

    _whole_min = 3


# A compiled DataReader (the compiled build) cannot be subclassed: there the
# default reader stands in for the others, whose fast path then runs on
# reads of 4 KiB and more only.
COMPILED_CORE = bool(compiled_modules())
READERS: tuple[type[DataReader], ...] = (
    (DataReader,) if COMPILED_CORE else (DataReader, FastReader, GeneralReader)
)
FAST: type[DataReader] = DataReader if COMPILED_CORE else FastReader


def read_in_pieces(
    reader: DataReader, stream: bytes, cuts: list[int], normalise: bool
) -> tuple[bytes, bool, bytes, list[bytes]]:
    """Feed ``stream`` cut at ``cuts``; (content, done, rest, each read's content)."""
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(stream)), len(stream)]
    given_out: list[bytes] = []
    done, rest = False, b""
    for start, stop in itertools.pairwise(bounds):
        piece = stream[start:stop]
        if done:
            rest += piece
            continue
        out, done, leftover = reader.feed(piece, normalise=normalise)
        assert type(out) is bytes
        given_out.append(out)
        rest += leftover
        assert len(reader._held) <= 2  # nothing accumulates between reads
    return b"".join(given_out), done, rest, given_out


# Pieces that make every kind of trouble: bare CR and LF, dots at line starts,
# the end marker and its look-alikes, controls that sort before CR LF, text.
PIECES = [
    b"\r", b"\n", b".", b"..", b"\r\n", b".\r\n", b"\r\n.\r\n", b"\r\n.", b"\r\n..",
    b"\n.\n", b"\r.\r", b"\t", b"\0", b"\x0b", b"text", b"y" * 40, b"\xff",
]  # fmt: skip
streams = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    st.binary(max_size=200),
    # many stuffed lines: more than the split is allowed, so replace takes over
    st.tuples(
        st.integers(0, 60).map(lambda n: b"..s\r\n" * n),
        st.lists(st.sampled_from(PIECES), max_size=8).map(b"".join),
    ).map(b"".join),
)
cuts = st.lists(st.integers(0, 320), max_size=8)


@settings(max_examples=4000, deadline=None)
@given(streams, cuts, st.booleans())
@example(b"..s\r\n" * 20, [], False)
@example(b"a\r\n.\r\r\n.\r\n", [], False)
@example(b"a\r\n.\t\r\n.\r\nQUIT\r\n", [], False)
@example(b"x\r\n.\r\n.\r\n", [], False)
@example(b"\r\n.\r\n", [], False)
def test_data_reader_matches_the_line_by_line_reference_rfc5321_4_1_1_4_and_4_5_2(
    stream: bytes, cuts: list[int], normalise: bool
) -> None:
    # the end always comes (here or earlier), so what is given out is exact
    stream += b"\r\n.\r\nQ"
    lines, ended, after = reference_lines(stream)
    assert ended
    content = reference_unstuff(lines)
    first_bare = reference_first_bare(content)
    for reader in (kind() for kind in READERS):
        got, done, rest, _ = read_in_pieces(reader, stream, cuts, normalise)
        assert (got, done, rest) == (
            reference_normalise(content) if normalise else content,
            True,
            after,
        )
        assert reader.bare_line_ending == (first_bare is not None)
        if not normalise:
            assert reader.first_bare == first_bare


@pytest.mark.pure_only(reason="FastReader and GeneralReader subclass DataReader")
@settings(max_examples=3000, deadline=None)
@given(streams, cuts, st.booleans())
def test_fast_and_general_paths_give_out_the_same_reads(
    stream: bytes, cuts: list[int], normalise: bool
) -> None:
    """Read for read, not only in total: same content, same end, same state."""
    fast, general = FastReader(), GeneralReader()
    a = read_in_pieces(fast, stream, cuts, normalise)
    b = read_in_pieces(general, stream, cuts, normalise)
    assert a == b
    assert (fast.bare_line_ending, fast.first_bare, fast.octets, fast._held) == (
        general.bare_line_ending,
        general.first_bare,
        general.octets,
        general._held,
    )


@settings(max_examples=1000, deadline=None)
@given(streams, st.integers(0, 40), st.booleans())
def test_feed_at_an_offset_of_a_bytearray_agrees_with_feed(
    stream: bytes, prefix: int, normalise: bool
) -> None:
    """What ContentReader does: the content read from the middle of a buffer."""
    buf = bytearray(b"Q" * prefix + stream)
    content, done, stop = DataReader().feed_at(buf, prefix, normalise=normalise)
    expected, expected_done, rest = FAST().feed(stream, normalise=normalise)
    assert (content, done, bytes(buf[stop:])) == (expected, expected_done, rest)


@settings(max_examples=2000, deadline=None)
@given(streams, cuts, st.integers(0, 8))
def test_a_refused_reader_still_finds_the_same_end_rfc5321_4_1_1_4(
    stream: bytes, cuts: list[int], refuse_at: int
) -> None:
    """Content refused from some read on is only searched for its end: the
    end and the bytes after it are the same as when it is read in full."""
    stream += b"\r\n.\r\nQ"
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(stream)), len(stream)]
    full, refused = FAST(), FAST()
    for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
        refused.refused = i >= refuse_at
        a, b = full.feed(stream[start:stop]), refused.feed(stream[start:stop])
        assert a[1:] == b[1:]
        assert b[0] == (b"" if i >= refuse_at else a[0])
        if a[1]:
            break


# Reads of several KiB, so that the default reader takes its fast path.
LONG = [b"y" * 1500, b"z" * 3000, b"..\r\n" * 40, b"a\r\n.b\r\n" * 30]
big_streams = st.lists(st.sampled_from(PIECES + LONG), min_size=3, max_size=30).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(big_streams, st.lists(st.integers(0, 40000), max_size=6), st.booleans())
def test_large_reads_match_the_reference_rfc5321_4_1_1_4_and_4_5_2(
    stream: bytes, cuts: list[int], normalise: bool
) -> None:
    stream += b"\r\n.\r\nQUIT\r\n"
    lines, _, after = reference_lines(stream)
    content = reference_unstuff(lines)
    reader = DataReader()
    got, done, rest, _ = read_in_pieces(reader, stream, cuts, normalise)
    assert (got, done, rest) == (
        reference_normalise(content) if normalise else content,
        True,
        after,
    )
    if not normalise:
        assert reader.first_bare == reference_first_bare(content)


def test_a_large_read_of_text_with_its_end_rfc5321_4_1_1_4() -> None:
    body = b"".join(
        (b".." if i % 7 == 0 else b"") + b"line %d. a. b.\r\n" % i for i in range(20000)
    )
    stream = body + b".\r\nQUIT\r\n"
    lines, _, after = reference_lines(stream)
    for reader in (kind() for kind in READERS):
        for cut in ([], [65536], [len(body) - 1], [len(body) + 1], [len(body) + 2]):
            got, done, rest, _ = read_in_pieces(reader.__class__(), stream, cut, False)
            assert (got, done, rest) == (reference_unstuff(lines), True, after)


def test_a_bare_lf_anywhere_in_a_large_read_is_found_rfc5321_2_3_8() -> None:
    clean = b"".join(b"..y\r\n" if i % 5 == 0 else b"yyyyyyy\r\n" for i in range(20000))
    for at in (0, 1, 65535, 65536, 65537, 70000, len(clean) - 3):
        for bare in (b"\n", b"\r"):
            stream = clean[:at] + bare + clean[at:] + b".\r\n"
            lines, _, _ = reference_lines(stream)
            content = reference_unstuff(lines)
            reader = DataReader()
            got, done, _, _ = read_in_pieces(reader, stream, [65536, 70000], False)
            assert (got, done, reader.first_bare) == (content, True, reference_first_bare(content))


# -- the one-pass scan in C (the compiled build) ----------------------------------

needs_c = pytest.mark.compiled_only(reason="the C scan, _speedups.c")


def both_paths(
    stream: bytes, cuts: list[int], normalise: bool
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """The same reads through DataReader with the C scan and without it:
    everything given out, and the reader's state at the end."""

    def run() -> tuple[object, ...]:
        reader = DataReader()
        out = read_in_pieces(reader, stream, cuts, normalise)
        state = (reader.bare_line_ending, reader.first_bare, reader.octets, reader._held)
        return (*out, state, reader._line_start)

    with_c = run()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_framing, "scan_data", None)
        without = run()
    return with_c, without


@needs_c
@settings(max_examples=3000, deadline=None)
@given(st.one_of(streams, big_streams), st.lists(st.integers(0, 40000), max_size=8), st.booleans())
@example(b".\r", [], False)
@example(b"\r\n.\r", [2], False)
@example(b"a\n.\r\n.\r\n", [], False)
@example(b"\n", [], False)
@example(b".\r\r\n", [], True)
def test_the_c_scan_gives_out_what_the_python_path_does_read_for_read(
    stream: bytes, cuts: list[int], normalise: bool
) -> None:
    with_c, without = both_paths(stream, cuts, normalise)
    assert with_c == without


@needs_c
def test_the_c_scan_reads_from_an_offset_of_a_bytearray() -> None:
    assert _framing.scan_data is not None
    buf = bytearray(b"MAIL..." + b"..a\r\nb\rc\r\n.\r\nQUIT\r\n")
    # the content from offset 7, unstuffed; the end marker ends at 20; the
    # bare CR is at 5 of what is given out
    assert _framing.scan_data(buf, 7, b"", True, True) == (b".a\r\nb\rc\r\n", True, 20, 0, 5, True)
    # what may begin the end marker is held: ".\r" after a CRLF
    assert _framing.scan_data(b"x\r\n.\r", 0, b"", True, True) == (b"x\r\n", False, 5, 2, -1, True)
    # the held octets go in front: a CRLF (the next line starts here), or a
    # bare CR; bare_at counts them (the bare LF after the CRLF is at 3)
    assert _framing.scan_data(b"a\nb\r\n", 0, b"\r\n", True, True) == (
        b"\r\na\nb\r\n",
        False,
        5,
        0,
        3,
        True,
    )
    assert _framing.scan_data(b"..\r\n", 0, b"\r", False, False) == (
        b"\r..\r\n",
        False,
        4,
        0,
        -1,
        True,
    )
    # a whole bytes read that needs no change is given out as it is, no copy
    whole = b"abc\r\n" * 1000
    assert _framing.scan_data(whole, 0, b"", True, True)[0] is whole


@needs_c
def test_the_c_scan_refuses_what_is_not_a_buffer_or_out_of_range() -> None:
    scan = _framing.scan_data
    assert scan is not None
    with pytest.raises(TypeError):
        scan("text", 0, b"", True, True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scan(b"x", 0, True, True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="head"):
        scan(b"x", 0, b"\r\n.", True, True)
    for start in (-1, 2):
        with pytest.raises(ValueError, match="outside the buffer"):
            scan(b"x", start, b"", True, True)


@needs_c
def test_a_bytearray_is_not_held_by_the_c_scan() -> None:
    """The buffer export ends with the call: the server's buffer can grow."""
    assert _framing.scan_data is not None
    buf = bytearray(b"abc\r\n")
    _framing.scan_data(buf, 0, b"", True, True)
    buf += b"more"  # BufferError if an export were still open
    assert buf.endswith(b"more")


# -- the building blocks -----------------------------------------------------------


@settings(max_examples=2000)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map(b"".join), st.integers(1, 40))
def test_split_stuffed_is_split(data: bytes, limit: int) -> None:
    assert _split_stuffed(data, limit) == data.split(b"\r\n.", limit)


@settings(max_examples=2000)
@given(
    st.one_of(streams, st.lists(st.sampled_from([b"\r", b"\n", b"x"]), max_size=12).map(b"".join))
)
def test_normalised_is_the_regular_expression_and_the_reference_rfc5321_2_3_8(
    data: bytes,
) -> None:
    assert _normalised(data) == normalise_line_endings(data) == reference_normalise(data)


@given(st.binary(max_size=64), st.integers(1, 4), st.integers(0, 300))
def test_has_bare_line_ending_up_to_a_stop_is_the_counting_definition(
    data: bytes, repeat: int, stop: int
) -> None:
    data = data * repeat
    part = data[:stop]
    crlf = part.count(b"\r\n")
    expected = part.count(b"\r") != crlf or part.count(b"\n") != crlf
    assert has_bare_line_ending(data, min(stop, len(data))) == expected


@needs_c
@settings(max_examples=3000)
@given(
    st.one_of(
        st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"x", b"."]), max_size=30).map(b"".join),
        st.binary(max_size=64),
    ),
    st.integers(0, 200),
)
@example(b"\r\n\n", 3)
@example(b"a\r", 2)
@example(b"a\r\n", 2)
def test_the_c_search_finds_the_first_bare_line_ending_rfc5321_2_3_8(
    data: bytes, stop: int
) -> None:
    # RFC 5321 §2.3.8: CR and LF only together; a CR at the stop has no LF
    stop = min(stop, len(data))
    m = _framing._BARE_RE.search(data, 0, stop)
    assert _framing.first_bare is not None
    assert _framing.first_bare(data, stop) == (m.start() if m else -1)
    assert _framing.first_bare(bytearray(data), stop) == (m.start() if m else -1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_framing, "first_bare", None)
        pure = has_bare_line_ending(data, stop)
    assert has_bare_line_ending(data, stop) is pure is (m is not None)


@needs_c
def test_the_c_search_refuses_what_is_not_a_buffer_or_out_of_range() -> None:
    find = _framing.first_bare
    assert find is not None
    with pytest.raises(TypeError):
        find("text", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        find(b"x")  # type: ignore[call-arg]
    for stop in (-1, 2):
        with pytest.raises(ValueError, match="outside the buffer"):
            find(b"x", stop)


@needs_c
@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"x"]), max_size=30).map(b"".join),
        st.binary(max_size=64),
    ),
    st.integers(0, 70),
)
@example(b"\r", 0)
@example(b"x\r", 1)
@example(b"\r\n", 1)
def test_the_c_line_end_search_is_bytes_find_rfc5321_2_3_8(data: bytes, start: int) -> None:
    # only CR LF ends a line; one that begins before start is not found
    find = _framing.find_crlf
    assert find is not None
    assert find(data, start) == data.find(b"\r\n", start)
    assert find(bytearray(data), start) == data.find(b"\r\n", start)


@needs_c
def test_the_c_line_end_search_refuses_what_is_not_a_buffer_or_a_negative_start() -> None:
    find = _framing.find_crlf
    assert find is not None
    with pytest.raises(TypeError):
        find("text\r\n", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        find(b"x")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="negative"):
        find(b"x\r\n", -1)


_READS = st.lists(
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"NOOP", b" x"]), max_size=12).map(b"".join),
    max_size=8,
)


@needs_c
@settings(max_examples=500, deadline=None)
@given(_READS, st.sampled_from([4, 8, 1000]))
def test_line_buffer_gives_the_same_lines_with_the_c_search(
    reads: list[bytes], max_line: int
) -> None:
    def lines(find: object) -> list[bytes | str]:
        out: list[bytes | str] = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_framing, "find_crlf", find)
            buf = LineBuffer(max_line)
            for data in reads:
                buf.feed(data)
                # bounded: each line consumes input, and a read holds at most 48
                for _ in range(len(data) + 1):
                    try:
                        line = buf.next_line()
                    except LineTooLong:
                        out.append("too long")
                        continue
                    if line is None:
                        break
                    out.append(line)
        return out

    assert lines(_framing.find_crlf) == lines(None)


def test_has_bare_line_ending_across_its_64k_windows() -> None:
    clean = b"x" * 65535 + b"\r\n" + b"y" * 70000 + b"\r\n"
    assert not has_bare_line_ending(clean)
    for at in (65534, 65535, 65536, 65537, 131071, 131072, 131073):
        assert has_bare_line_ending(clean[:at] + b"\n" + clean[at:])
        assert has_bare_line_ending(clean[:at] + b"\r" + clean[at:])
        if clean[at - 1] != 0x0D:  # not inside the existing CRLF
            assert not has_bare_line_ending(clean[:at] + b"\r\n" + clean[at:])


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("feed"), st.binary(min_size=1, max_size=40)),
            st.tuples(st.just("line"), st.just(b"")),
            st.tuples(st.just("advance"), st.integers(0, 60).map(lambda n: bytes(n))),
            st.tuples(st.just("take"), st.just(b"")),
        ),
        max_size=40,
    ),
    st.sampled_from([8, 16, 1000]),
    st.booleans(),
)
def test_line_buffer_data_is_empty_exactly_when_nothing_is_buffered(
    ops: list[tuple[str, bytes]], max_line: int, lf_ends_line: bool
) -> None:
    # ServerConnection tests buf._data for emptiness instead of len(buf).
    buf = LineBuffer(max_line, lf_ends_line=lf_ends_line)
    for op, arg in ops:
        if op == "feed":
            buf.feed(arg.replace(b"x", b"\r\n"))
        elif op == "line":
            with contextlib.suppress(LineTooLong):
                buf.next_line()
        elif op == "advance":
            data, pos = buf.view()
            buf.advance(min(len(data), pos + len(arg)))
        else:
            buf.take_all()
        assert bool(buf._data) == (len(buf) > 0)
