"""Wake-ups: what an idle CPU's halt costs each contender, clients and servers.

usage (as root):
    .venv/bin/python bench/wakeups.py [--reps N] [--duration S] [--servers LIST]

A client sending 1 KiB messages in one session sleeps twice per message,
waiting for a reply, and a server with one connection sleeps between reads.
In a virtual machine whose idle CPUs halt at once (the ``haltpoll`` cpuidle
driver with ``guest_halt_poll_ns`` 0, as on the hosts of bench/README.md's
runs; ``benchutil.idle_policy()`` prints it), each of those sleeps is a trip
through the hypervisor, and the code that runs after it starts with cold
caches.  This script runs the same contenders twice, alternated: with the
machine as configured, and with the guest polling for 200 µs before it
halts (``guest_halt_poll_ns`` 200000, the kernel's own default), then
restores the setting.  It prints msgs/s and the ratios the suite reports:
the blocking clients against smtplib (to the raw responder), and our servers
(``--servers``, asyncio by default) against the raw responder with one and
with 50 pipelined connections.  Each run is the suite's own
(``suite.runner.measure_client`` and ``measure_server``), checked against
what the server stored.  The setting is one for both CPUs: this is a
diagnostic, not a way to run the suite (bench/README.md, "Wake-ups").
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvloop

from benchutil import KiB, machine, timestamp
from suite.common import message, wire_content
from suite.procs import ServerProcess
from suite.runner import ClientCase, Scenario, measure_client, measure_server, rotated

HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
#: The kernel's default for guest_halt_poll_ns (drivers/cpuidle/haltpoll).
POLL_NS = 200_000
MODES = ("as configured", f"halt-poll {POLL_NS // 1000} µs")

#: The suite's names of the clients (suite.clients.CLIENTS), and how this
#: script prints them.
CLIENTS = {"smtplib": "smtplib", "ours-sync": "ours blocking", "raw-sync": "raw blocking"}
CLIENT_CASE = ClientCase(KiB, per_message=False)
#: (label, scenario): 1 KiB, pipelined, one session per connection.
SERVER_CASES = (
    ("1 conn", Scenario(KiB, 1, True, False, False)),
    ("50 conns", Scenario(KiB, 50, True, False, False)),
)
#: Our servers that --servers may name (the raw responder always runs).
OUR_SERVERS = ("asyncio", "uvloop", "trio", "threads")


@contextmanager
def halt_polling(ns: int | None) -> Iterator[None]:
    """Set guest_halt_poll_ns to ``ns`` while the block runs (None: leave it)."""
    if ns is None:
        yield
        return
    old = HALT_POLL.read_text().strip()
    HALT_POLL.write_text(str(ns))
    try:
        yield
    finally:
        HALT_POLL.write_text(old)


def checked_rate(result: dict[str, Any], what: str) -> float:
    """msgs/s of a run the suite's checks passed; exits on any other."""
    if not result["ok"]:
        sys.exit(f"{what}: {'; '.join(result['errors']) or 'no message completed'}")
    return float(result["rate"])


def client_rates(sink: ServerProcess, msg: bytes, duration: float, rep: int) -> dict[str, float]:
    """msgs/s of each client, in an order that rotates with ``rep``."""
    return {
        name: checked_rate(measure_client(name, sink, msg, CLIENT_CASE, duration), name)
        for name in rotated(list(CLIENTS), rep)
    }


def server_rate(kind: str, cpu: int | None, scenario: Scenario, duration: float) -> float:
    """msgs/s the server stored under the suite's load generator (after a warm-up)."""
    content = wire_content(message(scenario.size))
    with ServerProcess(kind, cpu=cpu) as server:
        server.start()
        measure_server(server, scenario, content, 0.3, None, uvloop.new_event_loop)
        result = measure_server(server, scenario, content, duration, None, uvloop.new_event_loop)
        return checked_rate(result, f"{kind}, {scenario.label}")


def line(mode: str, what: str, rates: list[float], ratios: list[float]) -> str:
    """One row: median msgs/s, and the ratio's median (min-max)."""
    return (
        f"{mode:<18} {what:<24} {statistics.median(rates):>9,.0f}  "
        f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
    )


def main() -> int:
    """Run both modes, alternated; print msgs/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--duration", type=float, default=1.5, help="seconds per contender (default 1.5)"
    )
    parser.add_argument(
        "--servers",
        default="asyncio",
        help=f"our servers to run, comma-separated, of {', '.join(OUR_SERVERS)} (default asyncio)",
    )
    args = parser.parse_args()
    ours = args.servers.split(",")
    unknown = [name for name in ours if name not in OUR_SERVERS]
    if unknown:
        parser.error(f"unknown server {', '.join(unknown)}: choose from {', '.join(OUR_SERVERS)}")
    servers = ["raw", *ours]
    if not HALT_POLL.exists() or not os.access(HALT_POLL, os.W_OK):
        print(f"{HALT_POLL} is missing or not writable (not a haltpoll guest, or not root)")
        return 2
    # a SIGTERM unwinds too, so that halt_polling() puts the setting back
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    allowed = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (allowed[0], allowed[1]) if len(allowed) > 1 else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    msg = message(KiB)
    rates: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}

    def record(mode: str, what: str, rate: float, reference: float) -> None:
        rates.setdefault((mode, what), []).append(rate)
        ratios.setdefault((mode, what), []).append(rate / reference)

    print(f"smtp_rtls bench/wakeups.py  {timestamp()}")
    print(f"machine: {machine()}")
    print(f"{args.reps} repetitions, {args.duration} s per contender, 1 KiB messages\n")
    for rep in range(args.reps):
        for mode in MODES if rep % 2 == 0 else MODES[::-1]:
            with halt_polling(POLL_NS if mode != MODES[0] else None):
                with ServerProcess("raw", cpu=server_cpu, uvloop=True) as sink:
                    sink.start()
                    got = client_rates(sink, msg, args.duration, rep)
                for name, rate in got.items():
                    record(mode, f"client {CLIENTS[name]}", rate, got["smtplib"])
                for label, scenario in SERVER_CASES:
                    srv = {
                        kind: server_rate(kind, server_cpu, scenario, args.duration)
                        for kind in rotated(servers, rep)
                    }
                    for kind in servers:
                        record(mode, f"server {kind}, {label}", srv[kind], srv["raw"])
    print(
        f"{'CPUs':<18} {'contender':<24} {'msgs/s':>9}  ratio (clients: x smtplib; servers: x raw)"
    )
    for mode in MODES:
        for mode_, what in rates:
            if mode_ == mode:
                print(line(mode, what, rates[(mode, what)], ratios[(mode, what)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
