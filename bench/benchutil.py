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
        f"smtp_rtls {build()}; {idle_policy()}"
    )


def idle_policy() -> str:
    """How an idle CPU waits here, which sets what a wake-up costs.

    In a virtual machine whose CPUs halt as soon as they are idle (the
    ``haltpoll`` driver with ``guest_halt_poll_ns`` 0, as on the hosts of
    these runs), every wake-up is a trip through the hypervisor, and code
    run right after one finds cold caches: a client or server that sleeps
    between messages pays that per reply (bench/README.md, "Wake-ups").
    """
    base = "/sys/devices/system/cpu/cpuidle/current_driver"
    try:
        with open(base) as f:
            driver = f.read().strip()
    except OSError:
        return "cpuidle: unknown"
    if driver != "haltpoll":
        return f"cpuidle: {driver}"
    try:
        with open("/sys/module/haltpoll/parameters/guest_halt_poll_ns") as f:
            poll_ns = f.read().strip()
    except OSError:
        return "cpuidle: haltpoll"
    return f"cpuidle: haltpoll, guest_halt_poll_ns {poll_ns}"


def build() -> str:
    """Which build of smtp_rtls runs: ``pure`` or the compiled core
    (``SMTP_RTLS_COMPILE=1``, see docs/performance.rst)."""
    from smtp_rtls._build import describe

    return describe()


def timestamp() -> str:
    """Now, in UTC, to the minute."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
