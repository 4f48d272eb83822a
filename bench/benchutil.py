"""What every benchmark script here shares: sizes, best-of timing, the machine line."""

from __future__ import annotations

import datetime
import gc
import os
import platform
from collections.abc import Callable

KiB = 1024
MiB = 1024 * KiB


def best_of(repeats: int, run: Callable[[], float]) -> float:
    """The smallest of ``repeats`` timings (the least disturbed by other work)."""
    times = []
    for _ in range(repeats):
        gc.collect()
        times.append(run())
    return min(times)


def machine() -> str:
    """The machine and smtp_rtls's build, for the record next to the numbers."""
    u = platform.uname()
    return (
        f"{u.system} {u.release} {u.machine}; nproc {os.cpu_count()}; "
        f"Python {platform.python_version()} ({platform.python_implementation()}); "
        f"smtp_rtls {build()}"
    )


def build() -> str:
    """Which build of smtp_rtls runs: ``pure`` or the compiled core
    (``SMTP_RTLS_COMPILE=1``, see docs/performance.rst)."""
    from smtp_rtls._build import describe

    return describe()


def timestamp() -> str:
    """Now, in UTC, to the minute."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
