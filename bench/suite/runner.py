"""The suite's matrix, its repetitions, and ``main()``.

Servers: for each scenario, a short warm-up of every server, then R
repetitions; inside a repetition every server is timed once, in an order
that rotates from one repetition to the next, and its throughput is divided
by the raw responder's of the same repetition.  Clients: the same, against
the raw responder as the sink, divided by smtplib's (and aiosmtplib's).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from benchutil import build, idle_policy

from . import clients as client_mod
from . import report
from .common import (
    KiB,
    MiB,
    client_tls_context,
    make_certificate,
    message,
    size_label,
    summary,
    wire_content,
)
from .loadgen import LoadResult, run_load_sync
from .procs import ServerError, ServerProcess

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent

SERVER_KINDS = ("raw", "asyncio", "uvloop", "trio", "threads", "aiosmtpd")
#: The targets of issue 10 for the servers: kind -> least fraction of the raw responder.
SERVER_TARGETS = {"asyncio": 0.7, "trio": 0.5, "threads": 0.5}


@attrs.frozen
class Scenario:
    """One server scenario."""

    size: int
    connections: int
    pipelined: bool
    per_message: bool
    tls: bool

    @property
    def id(self) -> str:
        """A short stable name, for the JSON file."""
        return (
            f"{size_label(self.size).replace(' ', '')}-c{self.connections}-"
            f"{'pipe' if self.pipelined else 'lock'}-{'permsg' if self.per_message else 'session'}"
            f"{'-starttls' if self.tls else ''}"
        )

    @property
    def label(self) -> str:
        """What a reader of the table needs."""
        conns = f"{self.connections} conn" + ("s" if self.connections > 1 else "")
        return ", ".join(
            [
                size_label(self.size),
                conns,
                "pipelined" if self.pipelined else "lock-step",
                "conn/msg" if self.per_message else "session",
            ]
            + (["STARTTLS"] if self.tls else [])
        )


def _s(
    size: int, conns: int, pipe: bool, per_message: bool = False, tls: bool = False
) -> Scenario:
    return Scenario(size, conns, pipe, per_message, tls)


FULL_SCENARIOS = (
    _s(KiB, 1, False),
    _s(KiB, 1, True),
    _s(KiB, 50, False),
    _s(KiB, 50, True),
    _s(MiB, 1, False),
    _s(MiB, 50, True),
    _s(KiB, 1, False, per_message=True),
    _s(KiB, 50, True, per_message=True),
    _s(KiB, 1, False, tls=True),
    _s(MiB, 1, False, tls=True),
    _s(KiB, 1, False, per_message=True, tls=True),
    _s(KiB, 50, True, per_message=True, tls=True),
)
QUICK_SCENARIOS = (
    _s(KiB, 1, False),
    _s(KiB, 50, True),
    _s(MiB, 1, False),
    _s(KiB, 50, True, per_message=True),
    _s(KiB, 1, False, tls=True),
    _s(KiB, 1, False, per_message=True, tls=True),
)


@attrs.frozen
class ClientCase:
    """One client scenario (one connection at a time, lock-step as each client does it)."""

    size: int
    per_message: bool
    #: The sink offers CHUNKING (RFC 3030), as Postfix and Exim do: a client
    #: may then send a small message with BDAT in one write.
    chunking: bool = False

    @property
    def id(self) -> str:
        """A short stable name."""
        how = "permsg" if self.per_message else "session"
        return f"{size_label(self.size).replace(' ', '')}-{how}" + "-chunking" * self.chunking

    @property
    def label(self) -> str:
        """What a reader of the table needs."""
        return (
            f"{size_label(self.size)}, "
            + ("a connection per message" if self.per_message else "one session")
            + (", CHUNKING offered" if self.chunking else "")
        )


CLIENT_CASES = (
    ClientCase(KiB, False),
    ClientCase(MiB, False),
    ClientCase(KiB, True),
    ClientCase(KiB, False, chunking=True),
    ClientCase(KiB, True, chunking=True),
)


@attrs.frozen
class Settings:
    """How long and how often."""

    quick: bool
    repetitions: int
    duration: float
    warmup: float
    #: A client's run: shorter than a server's (each sends thousands of
    #: small messages in it), so that the whole suite stays under 10 minutes
    #: with eight clients in five cases.
    client_duration: float


FULL = Settings(quick=False, repetitions=5, duration=1.0, warmup=0.2, client_duration=0.75)
QUICK = Settings(quick=True, repetitions=2, duration=0.5, warmup=0.1, client_duration=0.5)


def log(text: str) -> None:
    """Progress, on stderr (stdout gets the table)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def rotated(items: Sequence[str], rep: int) -> list[str]:
    """``items`` rotated by ``rep``: each contender takes each place in turn."""
    k = rep % len(items)
    return [*items[k:], *items[:k]]


# -- servers ---------------------------------------------------------------------------


class ServerPool:
    """The server processes, started on first use, kept until :meth:`close`."""

    def __init__(self, cpu: int | None, certs: tuple[str, str], notes: list[str]) -> None:
        self.cpu = cpu
        self.certs = certs
        self.notes = notes
        self.procs: dict[tuple[str, bool], ServerProcess] = {}
        self.anomalies: dict[str, dict[str, int]] = {}

    def get(self, kind: str, tls: bool) -> ServerProcess:
        """The running server of that kind (restarted, with a note, if it died)."""
        key = (kind, tls)
        proc = self.procs.get(key)
        if proc is not None and not proc.alive():
            self.notes.append(
                f"server {proc.label} died (exit {proc.proc.returncode if proc.proc else '?'}) "
                f"and was restarted; its stderr: {proc.stderr_text(800)!r}"
            )
            self._retire(key)
            proc = None
        if proc is None:
            proc = ServerProcess(kind, tls=self.certs if tls else None, cpu=self.cpu)
            self.procs[key] = proc
            proc.start()
        return proc

    def _retire(self, key: tuple[str, bool]) -> None:
        proc = self.procs.pop(key)
        proc.close()
        kinds = proc.anomaly_kinds()
        if kinds:
            merged = self.anomalies.setdefault(proc.label, {})
            for k, v in kinds.items():
                merged[k] = merged.get(k, 0) + v
        if proc.forced_stop:
            self.notes.append(f"server {proc.label} {proc.forced_stop}")

    def close(self) -> None:
        """Stop every server (each one even if another fails to stop)."""
        for key in list(self.procs):
            try:
                self._retire(key)
            except Exception as exc:  # keep stopping the others
                self.notes.append(f"stopping {key}: {exc!r}")


def measure_server(
    proc: ServerProcess,
    scenario: Scenario,
    content: bytes,
    duration: float,
    tls_client: Any,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> dict[str, Any]:
    """One timed run against one server, checked against the server's own count."""
    before = proc.stats()
    result: LoadResult = run_load_sync(
        proc.port,
        loop_factory=loop_factory,
        content=content,
        connections=scenario.connections,
        pipelined=scenario.pipelined,
        per_message=scenario.per_message,
        tls=tls_client if scenario.tls else None,
        duration=duration,
    )
    # let the server finish closing what the last QUITs left (its CPU counts)
    time.sleep(0.05)
    after = proc.stats()
    stored = after.messages - before.messages
    cpu = after.cpu - before.cpu
    n = result.messages
    errors = list(result.errors)
    if stored != n:
        errors.append(f"count mismatch: the server stored {stored}, the load generator saw {n}")
    if n == 0 and not errors:
        errors.append("no message completed")
    return {
        "messages": n,
        "elapsed": result.elapsed,
        "rate": n / result.elapsed if result.elapsed > 0 else 0.0,
        "server_stored": stored,
        "server_cpu": cpu,
        "server_cpu_us": 1e6 * cpu / n if n else None,
        "server_busy": cpu / result.elapsed if result.elapsed > 0 else None,
        "loadgen_cpu_us": 1e6 * result.cpu / n if n else None,
        "loadgen_busy": result.cpu / result.elapsed if result.elapsed > 0 else None,
        "anomalies": after.anomalies - before.anomalies,
        "errors": errors,
        "ok": not errors,
    }


def run_servers(
    settings: Settings,
    scenarios: Sequence[Scenario],
    kinds: Sequence[str],
    pool: ServerPool,
    tls_client: Any,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
    warmups: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every scenario: warm-up, then the alternating repetitions; failed
    warm-ups are added to ``warmups``."""
    out = []
    for i, scenario in enumerate(scenarios, 1):
        content = wire_content(message(scenario.size))
        log(f"[servers {i}/{len(scenarios)}] {scenario.label}")
        runs: list[dict[str, Any]] = []
        for kind in kinds:
            try:
                proc = pool.get(kind, scenario.tls)
                warm = measure_server(
                    proc, scenario, content, settings.warmup, tls_client, loop_factory
                )
                errors = warm["errors"]
            except ServerError as exc:
                errors = [str(exc)]
            if errors:
                warmups.append(
                    {"part": "servers", "scenario": scenario.label, "kind": kind, "errors": errors}
                )
        for rep in range(settings.repetitions):
            for kind in rotated(kinds, rep):
                try:
                    proc = pool.get(kind, scenario.tls)
                    run = measure_server(
                        proc, scenario, content, settings.duration, tls_client, loop_factory
                    )
                except ServerError as exc:
                    run = {"ok": False, "errors": [str(exc)], "messages": 0}
                run.update(rep=rep, kind=kind)
                runs.append(run)
                flag = "" if run["ok"] else f"  FAILED: {run['errors'][:2]}"
                rate = run.get("rate", 0.0)
                log(f"    rep {rep} {kind:9} {rate:9.0f} msgs/s{flag}")
        out.append(
            {
                "id": scenario.id,
                "label": scenario.label,
                "scenario": attrs.asdict(scenario),
                "runs": runs,
                "summary": summarise_servers(runs, kinds),
            }
        )
    return out


def _pairwise(
    runs: list[dict[str, Any]], kind: str, ref: str, key: str, invert: bool = False
) -> list[float]:
    """``key`` of ``kind`` over ``key`` of ``ref``, repetition by repetition
    (only repetitions where both runs are sound)."""
    by_rep: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        by_rep.setdefault(run["rep"], {})[run["kind"]] = run
    out = []
    for rep in sorted(by_rep):
        a, b = by_rep[rep].get(kind), by_rep[rep].get(ref)
        if a and b and a["ok"] and b["ok"] and a.get(key) and b.get(key):
            out.append(b[key] / a[key] if invert else a[key] / b[key])
    return out


def summarise_servers(runs: list[dict[str, Any]], kinds: Sequence[str]) -> dict[str, Any]:
    """Per server: throughput and CPU, and both as fractions of the raw responder."""
    out = {}
    for kind in kinds:
        mine = [r for r in runs if r["kind"] == kind]
        ok = [r for r in mine if r["ok"]]
        out[kind] = {
            "rate": summary([r["rate"] for r in ok]),
            "server_cpu_us": summary([r["server_cpu_us"] for r in ok]),
            "server_busy": summary([r["server_busy"] for r in ok]),
            "loadgen_busy": summary([r["loadgen_busy"] for r in ok]),
            "ratio": summary(_pairwise(runs, kind, "raw", "rate")),
            # raw's CPU per message over this server's: 1.0 is as cheap as raw
            "cpu_ratio": summary(_pairwise(runs, kind, "raw", "server_cpu_us", invert=True)),
            "failed": len(mine) - len(ok),
            "runs": len(mine),
            "anomalies": sum(r.get("anomalies", 0) for r in mine),
        }
    return out


# -- clients ---------------------------------------------------------------------------


def run_clients(
    settings: Settings,
    cases: Sequence[ClientCase],
    names: Sequence[str],
    sinks: Mapping[bool, ServerProcess],
    warmups: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every client case: warm-up, then the alternating repetitions; ``sinks``
    by whether they offer CHUNKING."""
    out = []
    for i, case in enumerate(cases, 1):
        sink = sinks[case.chunking]
        msg = message(case.size)
        log(f"[clients {i}/{len(cases)}] {case.label}")
        for name in names:
            warm = measure_client(name, sink, msg, case, settings.warmup)
            if warm["errors"]:
                warmups.append(
                    {
                        "part": "clients",
                        "scenario": case.label,
                        "kind": name,
                        "errors": warm["errors"],
                    }
                )
        runs = []
        for rep in range(settings.repetitions):
            for name in rotated(names, rep):
                run = measure_client(name, sink, msg, case, settings.client_duration)
                run.update(rep=rep, kind=name)
                runs.append(run)
                flag = "" if run["ok"] else f"  FAILED: {run['errors'][:2]}"
                log(f"    rep {rep} {name:12} {run.get('rate', 0.0):9.0f} msgs/s{flag}")
        summ = {}
        for name in names:
            mine = [r for r in runs if r["kind"] == name]
            ok = [r for r in mine if r["ok"]]
            summ[name] = {
                "rate": summary([r["rate"] for r in ok]),
                "client_cpu_us": summary([r["client_cpu_us"] for r in ok]),
                "vs_smtplib": summary(_pairwise(runs, name, "smtplib", "rate")),
                "vs_aiosmtplib": summary(_pairwise(runs, name, "aiosmtplib", "rate")),
                "failed": len(mine) - len(ok),
                "runs": len(mine),
            }
        out.append(
            {
                "id": case.id,
                "label": case.label,
                "case": attrs.asdict(case),
                "runs": runs,
                "summary": summ,
            }
        )
    return out


def measure_client(
    name: str, sink: ServerProcess, msg: bytes, case: ClientCase, duration: float
) -> dict[str, Any]:
    """One timed run of one client, checked against the sink's count."""
    fn = client_mod.CLIENTS[name]
    try:
        before = sink.stats()
    except ServerError as exc:
        return {"ok": False, "errors": [f"sink: {exc}"], "messages": 0, "rate": 0.0}
    errors: list[str] = []
    try:
        result = fn(sink.port, msg, case.per_message, duration)
        n, elapsed, cpu = result.messages, result.elapsed, result.cpu
    except Exception as exc:  # a client's failure is a result, not the end of the suite
        errors.append(f"{type(exc).__name__}: {exc}")
        n, elapsed, cpu = 0, 0.0, 0.0
    time.sleep(0.02)
    after = sink.stats()
    stored = after.messages - before.messages
    if not errors and stored != n:
        errors.append(f"count mismatch: the sink stored {stored}, the client counted {n}")
    return {
        "messages": n,
        "elapsed": elapsed,
        "rate": n / elapsed if elapsed > 0 else 0.0,
        "client_cpu_us": 1e6 * cpu / n if n else None,
        "sink_stored": stored,
        "errors": errors,
        "ok": not errors and n > 0,
    }


# -- the whole suite ---------------------------------------------------------------------


def versions() -> dict[str, str]:
    """The versions of the contenders, for the record."""
    from importlib import metadata

    out = {}
    for dist in ("smtp_rtls", "aiosmtpd", "aiosmtplib", "uvloop", "trio", "smtpproto"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def source_state() -> str:
    """The commit and whether src/ differs from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        # --no-optional-locks: status must not refresh (write) the index
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}" + (" with uncommitted changes in src/" if dirty else "")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    u = platform.uname()
    return {
        "uname": f"{u.system} {u.release} {u.machine}",
        "nproc": os.cpu_count(),
        "python": sys.version.replace("\n", " "),
        "loadavg_start": os.getloadavg(),
        "idle": idle_policy(),
    }


def pin() -> tuple[int | None, int | None]:
    """Pin this process (the load generator and the clients) to the second
    allowed CPU; the servers get the first.  None, None on one CPU."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    os.sched_setaffinity(0, {allowed[1]})
    return allowed[0], allowed[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; print the table; write the results and the plots."""
    parser = argparse.ArgumentParser(description="The SMTP benchmark suite (issue 10).")
    parser.add_argument("--quick", action="store_true", help="fewer scenarios, shorter runs")
    parser.add_argument("--only", choices=("servers", "clients"), help="run one half of the suite")
    parser.add_argument(
        "--out", type=Path, default=BENCH, help="where to write suite-results.* and the plots"
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    started = time.monotonic()
    notes: list[str] = []
    server_cpu, client_cpu = pin()
    if server_cpu is None:
        notes.append("one CPU only: servers and load generator were not pinned apart")

    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        notes.append("uvloop is not installed: no uvloop server, load generator on asyncio")
    kinds = [k for k in SERVER_KINDS if k != "uvloop" or loop_factory is not None]
    names = list(client_mod.CLIENTS)
    why = client_mod.smtpproto_available()
    if why:
        notes.append(f"smtpproto skipped: {why}")
        names.remove("smtpproto")

    scenarios = QUICK_SCENARIOS if settings.quick else FULL_SCENARIOS
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if settings.quick else "full",
        "settings": attrs.asdict(settings),
        "machine": machine(),
        "versions": versions(),
        "source": source_state(),
        "build": build(),
        "pinning": {"servers": server_cpu, "load generator and clients": client_cpu},
        "load_generator_loop": "uvloop" if loop_factory else "asyncio",
        "servers": [],
        "clients": [],
        "notes": notes,
        "warmups": [],
        "anomalies": {},
    }
    warmups: list[dict[str, Any]] = results["warmups"]
    with tempfile.TemporaryDirectory(prefix="smtp-bench-") as tmp:
        chain, key, ca = make_certificate(Path(tmp))
        tls_client = client_tls_context(ca)
        if args.only != "clients":
            pool = ServerPool(server_cpu, (chain, key), notes)
            try:
                results["servers"] = run_servers(
                    settings, scenarios, kinds, pool, tls_client, loop_factory, warmups
                )
            finally:
                pool.close()
                results["anomalies"] = pool.anomalies
        if args.only != "servers":
            sinks = {
                chunking: ServerProcess(
                    "raw", cpu=server_cpu, uvloop=loop_factory is not None, chunking=chunking
                )
                for chunking in (False, True)
            }
            try:
                for sink in sinks.values():
                    sink.start()
                results["clients"] = run_clients(settings, CLIENT_CASES, names, sinks, warmups)
            finally:
                for sink in sinks.values():
                    sink.close()
                    if sink.forced_stop:
                        notes.append(f"sink {sink.forced_stop}")
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["duration_s"] = time.monotonic() - started

    args.out.mkdir(parents=True, exist_ok=True)
    text = report.markdown(results)
    print(text)
    (args.out / "suite-results.md").write_text(text)
    (args.out / "suite-results.json").write_text(json.dumps(results, indent=1, default=str))
    written = report.plots(results, args.out)
    log(
        f"wrote {args.out / 'suite-results.md'}, suite-results.json"
        + "".join(f", {p.name}" for p in written)
        + f" in {results['duration_s']:.0f} s"
    )
    return 0
