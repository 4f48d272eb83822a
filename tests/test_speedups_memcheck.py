"""The C functions of the compiled build (``src/smtp_rtls/_speedups.c``)
under valgrind's memcheck: no read outside the buffer they are given, for
any short input, start or stop, head and flags.

Short inputs are where an off-by-one would read past the end (the end
marker and its beginnings at the last one to three octets), and a read of
one octet too far is invisible on a ``bytes`` (it ends with a NUL of its
own).  So every input is copied into a ctypes array, which is allocated
with exactly its size when Python's allocator is plain ``malloc``
(``PYTHONMALLOC=malloc``), and memcheck sees any octet read beyond it.  A
control run reads one octet too far on purpose, to show that this setup
catches it.  Without valgrind (Debian package ``valgrind``) the tests fail,
never skip; in the pure build, which has no C scan, they are skipped.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from memcheck_helpers import memcheck

pytestmark = pytest.mark.compiled_only(reason="the C scan, _speedups.c")

# Every input of 17-21 octets over the alphabet that matters to the scan
# ("\r", "\n", ".", "x") would be too many under valgrind; a fixed seed picks
# a few thousand, each scanned from every start with every head and flag.
DRIVER = textwrap.dedent(
    """
    import ctypes, importlib.util, random, sys

    spec = importlib.util.spec_from_file_location("smtp_rtls._speedups", sys.argv[1])
    speedups = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speedups)
    scan = speedups.scan_data

    def exact(data):
        # ctypes keeps arrays of more than 16 octets in a block of their own
        return (ctypes.c_char * len(data)).from_buffer_copy(data)

    if sys.argv[2] == "control":
        buf = exact(b"x" * 20)
        # one octet past the array: memcheck must report it
        print(ctypes.string_at(ctypes.addressof(buf), 21)[-1])
        raise SystemExit(0)

    rng = random.Random(8689)
    calls = 0
    for _ in range(int(sys.argv[3])):
        size = rng.randrange(17, 22)
        data = bytes(rng.choice(b"\\r\\n.x") for _ in range(size))
        buf = exact(data)
        for start in range(size + 1):
            for head in (b"", b"\\r", b"\\r\\n"):
                for line_start, find_bare in ((False, True), (True, True), (True, False)):
                    out = scan(buf, start, head, line_start, find_bare)
                    content, done, stop, keep, bare_at, _ = out
                    assert start <= stop <= size and 0 <= keep <= 2, (data, start, head)
                    assert -1 <= bare_at < len(content) + 1, (data, start, head)
                    calls += 1
        for stop in range(size + 1):
            at = speedups.first_bare(buf, stop)
            assert -1 <= at < stop, (data, stop)
            at = speedups.find_crlf(buf, stop)
            assert at == data.find(b"\\r\\n", stop), (data, stop)
            calls += 1
        # a header section over the octets its scan tells apart
        head = bytes(rng.choice(b"\\r\\n :x\\t") for _ in range(size))
        assert 0 <= speedups.header_end(exact(head)) <= size, head
        # command_line takes bytes only (no exact array): what memcheck
        # sees here is a write past the strings it makes
        line = bytes(rng.choice(b"aA :\x7f\x1f") for _ in range(rng.randrange(0, 22)))
        got = speedups.command_line(line)
        assert got is None or got[1] == line.decode() and got[2] == len(line) + 2, line
        calls += 1
    print(calls)
    """
)


def _memcheck(tmp_path: Path, mode: str, inputs: int = 0) -> subprocess.CompletedProcess[str]:
    from smtp_rtls import _speedups

    return memcheck(tmp_path, DRIVER, str(_speedups.__file__), mode, str(inputs))


def test_memcheck_catches_a_read_one_octet_past_the_buffer(tmp_path: Path) -> None:
    done = _memcheck(tmp_path, "control")
    assert done.returncode == 99, done.stderr[-2000:]
    assert "Invalid read" in done.stderr


def test_the_c_functions_read_only_inside_their_buffer(tmp_path: Path) -> None:
    done = _memcheck(tmp_path, "scan", inputs=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    # every call was made: 1500 inputs, (size + 1) starts, 3 heads, 3 flag
    # pairs for the scan; (size + 1) stops for each search; a command line
    assert int(done.stdout.split()[-1]) >= 1500 * 18 * 10
