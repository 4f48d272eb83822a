"""Instruction counts of the shapes' runs, from callgrind (see ``worker.py``).

:func:`callgrind_work` runs ``worker.py`` (or another script that calls
``worker.main()``) under ``valgrind --tool=callgrind`` and returns the
instructions each measured run executed, less the bracket's own.  Counts of
executed instructions are deterministic for a given input and hash seed,
and they include what C code does on Python's behalf (``bytes.find``, a
copy, a regular expression), which counters of Python calls or opcodes
would miss.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("worker.py")
TIMEOUT = 600
_TOTALS = re.compile(rb"^totals: (\d+)", re.MULTILINE)
_AFTER_RUN = b"\ndesc: Trigger: --dump-after=getppid\n"


def valgrind() -> str:
    """The valgrind program; AssertionError (a failure, not a skip) without it
    or without its callgrind_control."""
    path = shutil.which("valgrind")
    if path is None or shutil.which("callgrind_control") is None:
        raise AssertionError("valgrind is not installed: apt-get install valgrind (Debian)")
    return path


def callgrind_work(
    out_dir: Path, names: list[str], *, script: Path = WORKER, args: tuple[str, ...] = ()
) -> dict[tuple[str, int], tuple[int, int]]:
    """``{(shape, size): (instructions, octets)}`` for the shapes ``names``."""
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    cmd = [
        valgrind(),
        "--tool=callgrind",
        # start-up and imports uninstrumented: see worker.start_instrumentation
        "--instr-atstart=no",
        # a dump as each of the bracket's calls returns: the one after
        # getppid() holds the run's instructions alone
        "--dump-after=getpgrp",
        "--dump-after=getppid",
        "--dump-instr=no",
        "--dump-line=no",
        f"--callgrind-out-file={out_dir}/cg.out",
        "--log-file=" + str(out_dir / "valgrind.log"),
        sys.executable,
        str(script),
        "--instrument",
        *args,
        *names,
    ]
    done = subprocess.run(cmd, capture_output=True, env=env, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise AssertionError(
            f"worker failed ({done.returncode}):\n{done.stderr.decode(errors='replace')[-3000:]}"
        )
    labels = json.loads(done.stdout.decode().strip().splitlines()[-1])
    dumps = sorted(out_dir.glob("cg.out.*"), key=lambda p: int(p.suffix[1:]))
    totals = []
    for dump in dumps:
        text = dump.read_bytes()
        if _AFTER_RUN in text:
            m = _TOTALS.search(text)
            assert m is not None, dump
            totals.append(int(m[1]))
    # Only the bracket calls getppid() (not the interpreter's start-up), so
    # the last of these dumps are the runs', in order.
    assert len(totals) >= len(labels), (len(totals), len(labels))
    totals = totals[len(totals) - len(labels) :]
    bracket = min(t for (name, *_), t in zip(labels, totals, strict=True) if name == "(bracket)")
    work = {}
    for (name, _side, size, octets), total in zip(labels, totals, strict=True):
        if name != "(bracket)":
            work[name, size] = (total - bracket, octets)
    return work
