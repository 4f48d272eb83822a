"""Runs the shapes of ``shapes.py`` under callgrind, one marked region per run.

    valgrind --tool=callgrind --instr-atstart=no \\
        --dump-after=getpgrp --dump-after=getppid \\
        python tests/linearity/worker.py --instrument [--read N] [--steps 3] [SHAPE ...]

(measure.py runs it so and reads the dumps).

Each measured run is bracketed by ``os.getpgrp()`` and ``os.getppid()``:
two C library calls Python makes only when asked, after each of which
callgrind writes a dump.  Every dump after a getppid() then holds the
instructions of exactly one run (plus the same few thousand of the bracket
each time, measured by empty runs).
The labels of the runs, in dump order, are printed as one JSON line.

Set-up (the connection, the reads) happens before the bracket, and each
shape runs once unmeasured first: the regex caches, the interpreter's
specialised instructions and the allocator's arenas are warm by the time a
measured run starts.  The cyclic garbage collector is off inside the
bracket: how often it runs depends on everything else the process holds,
which is not the parser's work.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections import Counter

import shapes

BASELINE = "(bracket)"
# Each shape's input comes in 64 reads at its largest size (256 octets to
# 16 KiB): a slow sender's segments rather than an adapter's 64 KiB, and
# many reads at every size, so that work repeated per read over what
# earlier reads left (a buffer copied or searched again) grows with the
# input, and the first read (which takes the buffer's fast path) weighs
# little.
READS = 64


def measured(run: object) -> Counter[str]:
    """Call ``run`` inside the bracket callgrind watches."""
    gc.collect()
    gc.disable()
    os.getpgrp()  # callgrind: --dump-after=getpgrp
    seen = run()  # type: ignore[operator]
    os.getppid()  # callgrind: --dump-after=getppid
    gc.enable()
    return seen


def start_instrumentation() -> None:
    """Have callgrind instrument from now on (it runs ``--instr-atstart=no``).

    The interpreter's start and the imports are most of the process's
    instructions (``import smtp_rtls`` alone is about a billion: its regular
    expressions are compiled) and, uninstrumented, run several times faster.
    callgrind reads the command while this process runs code, hence the
    busy wait for callgrind_control's answer.
    """
    proc = subprocess.Popen(
        ["callgrind_control", "--instr=on", str(os.getpid())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise SystemExit("callgrind_control did not answer in 120 s")
    if proc.returncode:
        raise SystemExit(f"callgrind_control failed ({proc.returncode})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read", type=int, default=0, help="octets per read (0: see READS)")
    parser.add_argument(
        "--steps", type=int, default=3, help="sizes: the shape's test_size and 4x smaller ones"
    )
    parser.add_argument(
        "--instrument", action="store_true", help="start callgrind's instrumentation first"
    )
    parser.add_argument("names", nargs="*", help="shapes to run (default: all)")
    args = parser.parse_args()
    if args.instrument:
        start_instrumentation()
    chosen = [shapes.shape(n) for n in args.names] if args.names else shapes.SHAPES
    labels: list[list[object]] = []

    def empty() -> Counter[str]:
        return Counter()

    for _ in range(2):
        measured(empty)
        labels.append([BASELINE, "", 0, 0])
    for shape in chosen:
        sizes = [shape.test_size >> 2 * i for i in reversed(range(args.steps))]
        read = args.read or shape.test_size // READS
        warm = shape.prepare(sizes[0], read)
        warm.check(warm.run())
        for size in sizes:
            case = shape.prepare(size, read)
            case.check(measured(case.run))
            labels.append([shape.name, shape.side, size, case.octets])
    print(json.dumps(labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
