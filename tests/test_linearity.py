"""Issue 11: the cost of reading is linear in the input, for adversarial shapes.

Wall-clock time is not asserted here (bench/linearity.py measures it); the
work is the number of instructions callgrind counts while a connection reads
one input (tests/linearity/: the shapes, the worker that runs them under
valgrind, the parser of its dumps).  Instruction counts are deterministic,
and they see the C code Python runs for us: a buffer searched or copied
again on every read, a regular expression that backtracks.

Each shape is read at three sizes, L/16, L/4 and L (L from 8 KiB for the
shapes densest in events to 1 MiB for content), in 64 reads at L.  The
statistic is the marginal work per octet: (W(L) - W(L/4)) / (3L/4) against
(W(L/4) - W(L/16)) / (3L/16), which leaves out what does not grow with the
input (the set-up, the first read).  Linear reading keeps the two equal
(measured: within 7 %); a quadratic part that is a ninth of the marginal
work at L/4 makes the second 1.3x the first, and the test fails.

Without valgrind (Debian package ``valgrind``) the tests fail, never skip.
"""

from __future__ import annotations

import concurrent.futures

import pytest

from linearity import measure, shapes

# The per-octet work is the same bytes operations in both builds (the compiled
# core changes the cost per call, not per octet), and SLACK is calibrated on
# the pure one: the compiled core reads a BDAT chunk in under one instruction
# an octet.
pytestmark = pytest.mark.pure_only(reason="instruction counts calibrated on the pure build")

# The largest growth of the marginal work per octet from L/4 to L that is
# still linear reading.  Counts are exact, so the margin is for other
# Python builds (3.11 on Debian, 3.12+), not for noise.
GROWTH = 1.3
# Instructions an octet under which work is no work at all (a shape whose
# reading stops at its first error does not grow).
SLACK = 1.0

Work = dict[tuple[str, int], tuple[int, int]]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    """Every shape's instruction counts: two valgrind processes, half the
    shapes each (about 15 s each on a free core)."""
    halves = [shapes.SHAPE_NAMES[0::2], shapes.SHAPE_NAMES[1::2]]
    dirs = [tmp_path_factory.mktemp("callgrind") for _ in halves]
    with concurrent.futures.ThreadPoolExecutor(len(halves)) as pool:
        parts = list(pool.map(measure.callgrind_work, dirs, halves))
    merged: Work = {}
    for part in parts:
        merged.update(part)
    return merged


def _marginals(work: Work, shape: shapes.Shape) -> tuple[float, float, str]:
    sizes = [shape.test_size >> 4, shape.test_size >> 2, shape.test_size]
    (w0, o0), (w1, o1), (w2, o2) = (work[shape.name, s] for s in sizes)
    m1 = (w1 - w0) / (o1 - o0)
    m2 = (w2 - w1) / (o2 - o1)
    table = ", ".join(
        f"{s} octets: {w / o:.1f}"
        for s, (w, o) in zip(sizes, ((w0, o0), (w1, o1), (w2, o2)), strict=True)
    )
    return m1, m2, f"instructions an octet at {table}; marginal {m1:.1f} then {m2:.1f}"


@pytest.mark.parametrize("name", shapes.SHAPE_NAMES)
def test_reading_cost_is_linear_in_the_input(work: Work, name: str) -> None:
    shape = shapes.shape(name)
    m1, m2, numbers = _marginals(work, shape)
    if shape.reads_all:
        # the measurement saw the runs at all: reading an octet is work
        assert m1 >= SLACK, f"{name}: no work measured? {numbers}"
    assert m2 <= GROWTH * m1 + SLACK, f"{name} is super-linear: {numbers}"


def test_measured_runs_are_the_shapes_runs(work: Work) -> None:
    # The dumps are matched to the runs by their order: every run of every
    # shape has one, and the work grows with the input where it is read.
    for shape in shapes.SHAPES:
        sizes = [shape.test_size >> 4, shape.test_size >> 2, shape.test_size]
        counts = [work[shape.name, s][0] for s in sizes]
        if shape.reads_all:
            assert counts[0] < counts[1] < counts[2], (shape.name, counts)
