"""CPU time per octet of reading adversarial input, at 1 KiB, 64 KiB and 1 MiB.

    python bench/linearity.py [--quick] [--read OCTETS] [--only TEXT]

Issue 11 asks for reading whose cost is linear in the input.  Each shape of
``tests/linearity/shapes.py`` (one endless line, many short lines, CRs,
long local parts, many parameters, DATA and BDAT content on the server;
multi-line replies, an endless reply line, many replies on the client) is
fed to a connection already in the state it needs, in reads of 64 KiB (what
the adapters ask ``recv()`` for), and timed with ``time.process_time()``,
best of 5 (2 with ``--quick``); runs at 1 KiB are timed in batches.  The
set-up (the connection, the input) is not timed.

The table gives nanoseconds per octet at each size, and the ratios of the
1 MiB figure to the 1 KiB and the 64 KiB ones: about 1 or below when reading
is linear (below: a fixed cost per input weighs less in a larger one),
about 16 for 1 MiB / 64 KiB when it is quadratic.  The test of the same
shapes is tests/test_linearity.py, which counts instructions (under
callgrind) instead of timing.  It measures and reports; it does not fail.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

from benchutil import KiB, MiB, machine, timestamp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "linearity"))
import shapes  # the test's shapes: the bench times the same input

SIZES = (1 * KiB, 64 * KiB, 1 * MiB)
# Runs at small sizes are timed together, this many octets a timing at least.
BATCH_OCTETS = 256 * KiB


def time_per_octet(shape: shapes.Shape, size: int, read: int, repeats: int) -> float:
    """The best CPU nanoseconds per octet of reading ``size`` octets of ``shape``."""
    batch = max(1, BATCH_OCTETS // size)
    best = float("inf")
    for _ in range(repeats):
        cases = [shape.prepare(size, read) for _ in range(batch)]
        gc.collect()
        start = time.process_time()
        seen = [case.run() for case in cases]
        elapsed = time.process_time() - start
        for case, got in zip(cases, seen, strict=True):
            case.check(got)
        best = min(best, elapsed / sum(case.octets for case in cases))
    return best * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="best of 2 instead of 5")
    parser.add_argument("--read", type=int, default=shapes.READ, help="octets per read")
    parser.add_argument("--only", default="", help="shapes whose name contains this text")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    chosen = [s for s in shapes.SHAPES if args.only.lower() in s.name.lower()]
    print(f"{timestamp()}; {machine()}")
    print(f"reads of {args.read} octets, best of {repeats}, CPU time (process_time)\n")
    head = "| shape | side | ns/octet 1 KiB | 64 KiB | 1 MiB | 1 MiB / 1 KiB | 1 MiB / 64 KiB |"
    print(head)
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for shape in chosen:
        ns = [time_per_octet(shape, size, args.read, repeats) for size in SIZES]
        worst = max(worst, ns[2] / ns[1])
        print(
            f"| {shape.name} | {shape.side} | {ns[0]:,.1f} | {ns[1]:,.1f} | {ns[2]:,.1f} "
            f"| {ns[2] / ns[0]:.2f} | {ns[2] / ns[1]:.2f} |",
            flush=True,
        )
    print(f"\nlargest 1 MiB / 64 KiB: {worst:.2f} (linear: about 1; quadratic: about 16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
