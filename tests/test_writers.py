"""The client's content writers: DATA transparency and BDAT framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls._framing import DataReader, normalise_line_endings
from smtp_rtls._writers import (
    DataWriter,
    TextWriter,
    bdat_chunk,
    canonical_content,
    is_canonical,
)


def write_all(chunks: list[bytes]) -> bytes:
    w = DataWriter()
    return b"".join(w.write(c) for c in chunks) + w.end()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


# Content made of the octets that matter to the framing, so hypothesis finds
# the boundary cases quickly.
content = st.lists(
    st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"a", b"\xff", b"\x00", b".\r\n"]), max_size=40
).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=200), max_size=8)


def test_dot_stuffing_at_the_start_of_every_line_rfc5321_4_5_2() -> None:
    assert write_all([b".one\r\ntwo\r\n.three\r\n"]) == b"..one\r\ntwo\r\n..three\r\n.\r\n"


def test_dot_stuffing_across_a_chunk_boundary_rfc5321_4_5_2() -> None:
    # the line starts in one chunk and its period comes in the next
    assert write_all([b"a\r\n", b".b\r\n"]) == b"a\r\n..b\r\n.\r\n"
    # the CRLF itself is split
    assert write_all([b"a\r", b"\n.b"]) == b"a\r\n..b\r\n.\r\n"


def test_a_lone_dot_line_in_the_content_never_ends_the_data_rfc5321_4_1_1_4() -> None:
    out = write_all([b"x\r\n.\r\ny\r\n"])
    assert out == b"x\r\n..\r\ny\r\n.\r\n"
    assert out.count(b"\r\n.\r\n") == 1


def test_bare_lf_and_bare_cr_become_crlf_rfc5321_2_3_8() -> None:
    assert write_all([b"a\nb\rc\r\n"]) == b"a\r\nb\r\nc\r\n.\r\n"
    # the smuggling shape: a bare LF "." bare LF never reaches the wire
    out = write_all([b"x\n.\ny"])
    assert out == b"x\r\n..\r\ny\r\n.\r\n"


def test_end_without_extra_crlf_when_content_ends_with_one_rfc5321_4_1_1_4() -> None:
    assert write_all([b"abc\r\n"]) == b"abc\r\n.\r\n"
    assert write_all([b"abc"]) == b"abc\r\n.\r\n"
    assert write_all([b"abc\r"]) == b"abc\r\n.\r\n"
    assert write_all([b"abc\n"]) == b"abc\r\n.\r\n"
    assert write_all([]) == b".\r\n"
    assert write_all([b""]) == b".\r\n"


def test_a_trailing_cr_is_held_until_the_next_chunk() -> None:
    w = DataWriter()
    assert w.write(b"abc\r") == b"abc"
    assert w.write(b"\n") == b"\r\n"
    assert w.end() == b".\r\n"
    assert w.octets == 5


@given(content, cuts)
def test_no_bare_cr_or_lf_is_ever_emitted(data: bytes, where: list[int]) -> None:
    out = write_all(split(data, where))
    crlf = out.count(b"\r\n")
    assert out.count(b"\r") == crlf
    assert out.count(b"\n") == crlf
    assert out.endswith(b"\r\n.\r\n") or out == b".\r\n"


@given(content, cuts, cuts)
def test_output_does_not_depend_on_how_the_content_is_split(
    data: bytes, a: list[int], b: list[int]
) -> None:
    assert write_all(split(data, a)) == write_all(split(data, b))


@given(content, cuts, cuts)
def test_the_server_reader_gets_the_content_back(
    data: bytes, where: list[int], read_cuts: list[int]
) -> None:
    """Round trip through the server's DataReader (a real part, not a mock):
    the content comes back with its line ends normalised, ending with CRLF."""
    wire = write_all(split(data, where))
    expected = normalise_line_endings(data)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    reader = DataReader()
    got = []
    done = False
    rest = b""
    for piece in split(wire, read_cuts):
        if done:
            assert piece == b""  # nothing may follow the end of data
            continue
        part, done, rest = reader.feed(piece)
        got.append(part)
    assert done
    assert rest == b""
    assert b"".join(got) == expected


def server_content(wire: bytes) -> bytes:
    """What the server's DataReader gives out for the DATA bytes ``wire``."""
    content, done, rest = DataReader().feed(wire)
    assert done and rest == b""
    return content


@given(content, cuts)
def test_bdat_text_is_what_data_delivers_rfc5321_2_3_8(data: bytes, where: list[int]) -> None:
    """TextWriter (message text sent with BDAT, RFC 3030) writes, for any split
    of the content, exactly what the server of a DATA transfer receives: line
    ends as CRLF, a final CRLF, and nothing else changed."""
    writer = TextWriter()
    pieces = [writer.write(c) for c in split(data, where)]
    text = b"".join(pieces) + writer.end()
    assert text == server_content(write_all([data]))
    assert is_canonical(text)
    assert canonical_content(data) == text


def test_text_writer_holds_a_trailing_cr_for_its_lf() -> None:
    writer = TextWriter()
    assert writer.write(b"a\r") == b"a"
    assert writer.write(b"\nb\n") == b"\r\nb\r\n"
    assert writer.end() == b""
    writer = TextWriter()
    assert writer.write(b"a\r") == b"a"
    assert writer.end() == b"\r\n"  # the CR was bare: it ends the last line


def test_canonical_content_copies_nothing_that_is_canonical() -> None:
    data = b"Subject: x\r\n\r\nbody\r\n"
    assert canonical_content(data) is data


@given(content)
def test_the_fast_canonical_check_agrees_with_counting(data: bytes) -> None:
    crlf = data.count(b"\r\n")
    assert is_canonical(data) == (data.count(b"\r") == crlf == data.count(b"\n"))


def test_bdat_chunk_is_exact_and_binary_safe_rfc3030_2() -> None:
    payload = b"\r\n.\r\n\x00\xff.\n\r"
    assert bdat_chunk(payload) == b"BDAT 10\r\n" + payload
    assert bdat_chunk(payload, last=True) == b"BDAT 10 LAST\r\n" + payload
    assert bdat_chunk(b"", last=True) == b"BDAT 0 LAST\r\n"


@given(st.binary(max_size=300), st.booleans())
def test_bdat_size_is_the_octet_count(payload: bytes, last: bool) -> None:
    out = bdat_chunk(payload, last=last)
    head, _, body = out.partition(b"\r\n")
    words = head.split(b" ")
    assert words[0] == b"BDAT"
    assert int(words[1]) == len(payload)
    assert (words[2:] == [b"LAST"]) is last
    assert body == payload


def test_bdat_chunk_takes_bytes_only() -> None:
    with pytest.raises(TypeError):
        bdat_chunk("text")  # type: ignore[arg-type]
