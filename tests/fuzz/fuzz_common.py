"""What the atheris harnesses of tests/fuzz share: running one as a fuzzer,
splitting input into reads, and the check that output is well-formed replies.

Every harness is a module ``fuzz_<name>.py`` with ``TestOneInput(data)``
and a docstring that states its ORACLE; ``python tests/fuzz/fuzz_<name>.py
[libFuzzer flags] [corpus dirs]`` fuzzes it.  An oracle is broken by an
exception escaping ``TestOneInput``: an ``AssertionError`` from a check, or
an exception type the code under test does not document.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import atheris

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"

#: Read sizes a harness picks from with three bits of its first byte: one
#: octet at a time up to everything at once.
READ_SIZES = (1, 2, 3, 7, 64, 512, 4096, 1 << 30)


def reads(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in reads of ``size`` octets (the last may be shorter)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the offsets ``cuts`` (taken modulo its length + 1)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def check_reply_stream(out: bytes) -> None:
    """``out`` is a whole number of well-formed SMTP replies (RFC 5321 §4.2):
    CRLF-ended lines, each ``code[-| ]text`` and at most 512 octets
    (§4.5.3.1.5), grouped into replies that :meth:`Reply.from_lines` reads."""
    from smtp_rtls import Reply

    if not out:
        return
    assert out.endswith(b"\r\n"), out[-40:]
    group: list[bytes] = []
    for line in out[:-2].split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line, line
        group.append(line)
        if line[3:4] != b"-":
            Reply.from_lines(group)  # raises RemoteProtocolError when malformed
            group = []
    assert not group, group


def main(test_one_input: Callable[[bytes], None], argv: list[str] | None = None) -> None:
    """Fuzz ``test_one_input`` with libFuzzer flags and corpus dirs from ``argv``."""
    # Dropped fields and entries are logged as warnings: millions of them,
    # in the fuzzing process only (the in-process replay keeps the tests'
    # logging as it is, which other tests assert on).
    logging.getLogger("smtp_rtls").setLevel(logging.CRITICAL)
    atheris.Setup(sys.argv if argv is None else argv, test_one_input)
    atheris.Fuzz()
