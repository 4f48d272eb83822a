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
with 50 pipelined connections.  The setting is one for both CPUs: this is a
diagnostic, not a way to run the suite (bench/README.md, "Wake-ups").
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvloop

from benchutil import machine, timestamp
from suite import clients
from suite.clients import ClientRun
from suite.common import message, wire_content
from suite.loadgen import run_load_sync
from suite.procs import ServerProcess
from suite.rawclient import raw_sync

HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
#: The kernel's default for guest_halt_poll_ns (drivers/cpuidle/haltpoll).
POLL_NS = 200_000
MODES = ("as configured", f"halt-poll {POLL_NS // 1000} µs")

ClientFn = Callable[[int, bytes, bool, float], ClientRun]
CLIENTS: dict[str, ClientFn] = {
    "smtplib": clients.smtplib_run,
    "ours blocking": clients.ours_sync_run,
    "raw blocking": raw_sync,
}
#: (label, connections): the servers' scenarios, pipelined, 1 KiB, one session each.
SERVER_CASES = (("1 conn", 1), ("50 conns", 50))
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


def client_rates(port: int, msg: bytes, duration: float, rep: int) -> dict[str, float]:
    """msgs/s of each client, in an order that rotates with ``rep``."""
    names = list(CLIENTS)
    got = {}
    for name in names[rep % len(names) :] + names[: rep % len(names)]:
        run = CLIENTS[name](port, msg, False, duration)
        got[name] = run.messages / run.elapsed
    return got


def server_rate(kind: str, cpu: int | None, connections: int, duration: float) -> float:
    """msgs/s the server stored under the suite's load generator."""
    load: dict[str, object] = {
        "content": wire_content(message(1024)),
        "connections": connections,
        "pipelined": True,
        "per_message": False,
        "tls": None,
    }
    with ServerProcess(kind, cpu=cpu) as server:
        server.start()
        run_load_sync(server.port, loop_factory=uvloop.new_event_loop, duration=0.3, **load)
        before = server.stats().messages
        result = run_load_sync(
            server.port, loop_factory=uvloop.new_event_loop, duration=duration, **load
        )
        return (server.stats().messages - before) / result.elapsed


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
    servers = ("raw", *ours)
    if not HALT_POLL.exists() or not os.access(HALT_POLL, os.W_OK):
        print(f"{HALT_POLL} is missing or not writable (not a haltpoll guest, or not root)")
        return 2
    # a SIGTERM unwinds too, so that halt_polling() puts the setting back
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    allowed = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (allowed[0], allowed[1]) if len(allowed) > 1 else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    msg = message(1024)
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
                    got = client_rates(sink.port, msg, args.duration, rep)
                for name, rate in got.items():
                    record(mode, f"client {name}", rate, got["smtplib"])
                for label, connections in SERVER_CASES:
                    kinds = servers[rep % len(servers) :] + servers[: rep % len(servers)]
                    srv = {
                        k: server_rate(k, server_cpu, connections, args.duration) for k in kinds
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
