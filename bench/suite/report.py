"""The suite's report: a markdown page (stdout and bench/suite-results.md) and the plots."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from .clients import ASYNC_CLIENTS

#: How the tables name the contenders.
SERVER_NAMES = {
    "raw": "raw",
    "asyncio": "ours asyncio",
    "uvloop": "ours uvloop",
    "trio": "ours trio",
    "threads": "ours threads",
    "aiosmtpd": "aiosmtpd",
}
CLIENT_NAMES = {
    "smtplib": "smtplib",
    "ours-sync": "ours blocking",
    "raw-sync": "raw blocking",
    "aiosmtplib": "aiosmtplib",
    "ours-asyncio": "ours asyncio",
    "ours-trio": "ours trio",
    "raw-asyncio": "raw asyncio",
    "smtpproto": "smtpproto",
}
SERVER_TARGETS = {"asyncio": 0.7, "trio": 0.5, "threads": 0.5}
#: Our blocking client against smtplib: per message per connection, or in one session.
SYNC_CLIENT_TARGET = {"session": 2.0, "permsg": 1.0}
ASYNC_CLIENT_TARGET = 3.0


def _ok(x: Any) -> bool:
    return isinstance(x, int | float) and not math.isnan(x)


def ratio_cell(s: dict[str, float], failed: int = 0, runs: int = 0) -> str:
    """``0.81 (0.75–0.85)``; the failed runs, if any, said next to it."""
    text = f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})" if _ok(s["median"]) else "failed"
    if failed:
        text += f" ⚠ {failed}/{runs} runs failed"
    return text


def verdict(s: dict[str, float], target: float) -> str:
    """met / missed on the median; n/a without a sound run."""
    if not _ok(s["median"]):
        return "n/a"
    return "met" if s["median"] >= target else "**missed**"


def _num(x: Any, digits: int = 0) -> str:
    return f"{x:,.{digits}f}" if _ok(x) else "–"


def header(results: dict[str, Any]) -> list[str]:
    """Date, machine, versions, method."""
    m = results["machine"]
    v = results["versions"]
    s = results["settings"]
    pins = results["pinning"]
    la0 = ", ".join(f"{x:.2f}" for x in m["loadavg_start"])
    la1 = ", ".join(f"{x:.2f}" for x in m.get("loadavg_end", ()))
    pinned = (
        f"Servers pinned to CPU {pins['servers']}, the load generator and the clients "
        f"to CPU {pins['load generator and clients']} (`taskset` / `sched_setaffinity`)"
        if pins["servers"] is not None
        else "Nothing pinned (one CPU)"
    )
    return [
        f"## Suite results, {results['date']} ({results['mode']} run)",
        "",
        f"* Machine: `{m['uname']}`, nproc {m['nproc']}; load average {la0} at the start, "
        f"{la1} at the end" + (f"; {m['idle']}" if "idle" in m else "") + ".",
        f"* Python: `{m['python']}`.",
        f"* smtp_rtls {v['smtp_rtls']} at {results['source']}, "
        f"{results.get('build', 'pure')} build; aiosmtpd {v['aiosmtpd']}, "
        f"aiosmtplib {v['aiosmtplib']}, uvloop {v['uvloop']}, trio {v['trio']}, "
        f"smtpproto {v['smtpproto']}.",
        f"* Method: {s['repetitions']} repetitions; in each, every contender runs "
        f"{s['duration']} s"
        + (f" (a client {s['client_duration']} s)" if "client_duration" in s else "")
        + f" after one {s['warmup']} s warm-up per scenario, in an order "
        "that rotates from one repetition to the next; ratios are taken within a repetition "
        f"and given as median (min–max).  {pinned}.  The load generator runs on "
        f"{results['load_generator_loop']}.  The whole run took "
        f"{results.get('duration_s', 0):.0f} s.",
        "",
    ]


def server_tables(servers: list[dict[str, Any]]) -> list[str]:
    """Throughput ratios with the targets, then CPU per message."""
    if not servers:
        return []
    kinds = list(servers[0]["summary"])
    others = [k for k in kinds if k != "raw"]
    targets = [k for k in SERVER_TARGETS if k in kinds]
    lines = [
        "### Servers: throughput as a fraction of the raw responder (higher is better)",
        "",
        "| scenario | raw msgs/s | "
        + " | ".join(SERVER_NAMES[k] for k in others)
        + " | "
        + " | ".join(f"{SERVER_NAMES[k]} ≥ {SERVER_TARGETS[k]}" for k in targets)
        + " |",
        "|" + "---|" * (2 + len(others) + len(targets)),
    ]
    for sc in servers:
        summ = sc["summary"]
        raw = summ["raw"]
        row = [sc["label"], _num(raw["rate"]["median"])]
        if raw["failed"]:
            row[1] += f" ⚠ {raw['failed']}/{raw['runs']} runs failed"
        row += [ratio_cell(summ[k]["ratio"], summ[k]["failed"], summ[k]["runs"]) for k in others]
        row += [verdict(summ[k]["ratio"], SERVER_TARGETS[k]) for k in targets]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "### Servers: CPU µs per message (lower is better), and raw's over theirs",
        "",
        "Server CPU is the whole process's (`time.process_time()` before and after a run), "
        "divided by the messages.  *busy* is CPU over wall time: the raw responder below "
        "100 % means it was waiting for the load generator (or the other CPU's work), so the "
        "throughput ratios above are then kinder than the CPU ratios.",
        "",
        "| scenario | raw | "
        + " | ".join(SERVER_NAMES[k] for k in others)
        + " | raw busy | load generator busy |",
        "|" + "---|" * (4 + len(others)),
    ]
    for sc in servers:
        summ = sc["summary"]
        row = [sc["label"], _num(summ["raw"]["server_cpu_us"]["median"])]
        for k in others:
            cell = _num(summ[k]["server_cpu_us"]["median"])
            if _ok(summ[k]["cpu_ratio"]["median"]):
                cell += f" ({summ[k]['cpu_ratio']['median']:.2f})"
            row.append(cell)
        busy = summ["raw"]["server_busy"]["median"]
        lg = summ["raw"]["loadgen_busy"]["median"]
        row += [
            f"{100 * busy:.0f} %" if _ok(busy) else "–",
            f"{100 * lg:.0f} %" if _ok(lg) else "–",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def client_tables(clients: list[dict[str, Any]]) -> list[str]:
    """Ratios against smtplib and aiosmtplib, with the targets; client CPU."""
    if not clients:
        return []
    names = list(clients[0]["summary"])
    others = [n for n in names if n != "smtplib"]
    asyncs = [n for n in ASYNC_CLIENTS if n in names]
    lines = [
        "### Clients: throughput against smtplib (higher is better)",
        "",
        "One connection at a time, to the raw responder as the sink (on uvloop when "
        'installed, pinned to the servers\' CPU).  In the cases marked "CHUNKING offered" '
        "the sink also offers CHUNKING (RFC 3030), as Postfix and Exim do: our clients then "
        "send a message of up to 256 KiB in one write with BDAT; smtplib, aiosmtplib and "
        "smtpproto do not use BDAT.",
        "",
        "| case | smtplib msgs/s | "
        + " | ".join(CLIENT_NAMES[n] for n in others)
        + " | ours blocking target |",
        "|" + "---|" * (3 + len(others)),
    ]
    for case in clients:
        summ = case["summary"]
        kind = "permsg" if case["case"]["per_message"] else "session"
        row = [case["label"], _num(summ["smtplib"]["rate"]["median"])]
        row += [
            ratio_cell(summ[n]["vs_smtplib"], summ[n]["failed"], summ[n]["runs"]) for n in others
        ]
        target = SYNC_CLIENT_TARGET[kind]
        sync = summ.get("ours-sync")
        row.append(f"≥ {target}x: {verdict(sync['vs_smtplib'], target)}" if sync else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    if "aiosmtplib" in names and asyncs:
        lines += [
            "",
            "### Asynchronous clients against aiosmtplib (higher is better)",
            "",
            "| case | aiosmtplib msgs/s | "
            + " | ".join(CLIENT_NAMES[n] for n in asyncs)
            + f" | ours asyncio ≥ {ASYNC_CLIENT_TARGET}x |",
            "|" + "---|" * (3 + len(asyncs)),
        ]
        for case in clients:
            summ = case["summary"]
            row = [case["label"], _num(summ["aiosmtplib"]["rate"]["median"])]
            row += [
                ratio_cell(summ[n]["vs_aiosmtplib"], summ[n]["failed"], summ[n]["runs"])
                for n in asyncs
            ]
            ours = summ.get("ours-asyncio")
            row.append(verdict(ours["vs_aiosmtplib"], ASYNC_CLIENT_TARGET) if ours else "n/a")
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "### Clients: client CPU µs per message (lower is better)",
        "",
        "| case | " + " | ".join(CLIENT_NAMES[n] for n in names) + " |",
        "|" + "---|" * (1 + len(names)),
    ]
    for case in clients:
        summ = case["summary"]
        row = [case["label"]] + [_num(summ[n]["client_cpu_us"]["median"]) for n in names]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def _failure_groups(results: dict[str, Any]) -> list[str]:
    """Failed timed runs grouped by part, contender and first error, so that
    one broken contender is one line, not one per run."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    totals: dict[tuple[str, str], int] = {}
    for part in ("servers", "clients"):
        for sc in results[part]:
            for run in sc["runs"]:
                totals[part, run["kind"]] = totals.get((part, run["kind"]), 0) + 1
                if run["ok"]:
                    continue
                first = run["errors"][0] if run["errors"] else "failed"
                g = groups.setdefault(
                    (part, run["kind"], re.sub(r"\d+", "N", first)),
                    {"runs": 0, "scenarios": [], "example": run["errors"][:3]},
                )
                g["runs"] += 1
                if sc["label"] not in g["scenarios"]:
                    g["scenarios"].append(sc["label"])
    lines = []
    for (part, kind, _), g in groups.items():
        every = len(g["scenarios"]) == len(results[part])
        where = "in every scenario" if every else "; ".join(g["scenarios"])
        example = "; ".join(g["example"])
        lines.append(
            f"* {part}, **{kind}**: {g['runs']} of {totals[part, kind]} timed runs failed "
            f"({where}): `{example}`"
        )
    failed_kinds = {(part, kind) for part, kind, _ in groups}
    for w in results.get("warmups", []):
        # a warm-up failure is news only when the timed runs went well
        if (w["part"], w["kind"]) not in failed_kinds:
            lines.append(
                f"* {w['part']}, {w['kind']}, warm-up of {w['scenario']}: "
                f"`{'; '.join(w['errors'][:3])}`"
            )
    return lines


def notes_section(results: dict[str, Any]) -> list[str]:
    """Failed runs, count mismatches, what the servers logged, other notes."""
    lines = _failure_groups(results)
    for label, kinds in sorted(results.get("anomalies", {}).items()):
        for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
            lines.append(f"* server {label} logged {count} times: `{kind}`")
    lines += [f"* {note}" for note in results["notes"]]
    if not lines:
        return []
    return ["### Notes: failures, mismatches, what the servers logged", "", *lines, ""]


def markdown(results: dict[str, Any]) -> str:
    """The whole page."""
    lines = header(results)
    lines += server_tables(results["servers"])
    lines += client_tables(results["clients"])
    lines += notes_section(results)
    return "\n".join(lines)


# -- plots ---------------------------------------------------------------------------------


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    """bench/suite-servers.png and bench/suite-clients.png (matplotlib, Agg);
    none when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    if results["servers"]:
        path = out / "suite-servers.png"
        _plot_servers(plt, results, path)
        written.append(path)
    if results["clients"]:
        path = out / "suite-clients.png"
        _plot_clients(plt, results, path)
        written.append(path)
    return written


def _bars(
    ax: Any,
    groups: list[str],
    series: list[tuple[str, list[dict[str, float]]]],
) -> None:
    """Horizontal grouped bars, one group per row label, with min–max whiskers."""
    height = 0.8 / max(1, len(series))
    for j, (name, values) in enumerate(series):
        ys = [i + (j - (len(series) - 1) / 2) * height for i in range(len(groups))]
        med = [v["median"] if _ok(v["median"]) else 0.0 for v in values]
        lo = [m - v["min"] if _ok(v["min"]) else 0.0 for m, v in zip(med, values, strict=True)]
        hi = [v["max"] - m if _ok(v["max"]) else 0.0 for m, v in zip(med, values, strict=True)]
        ax.barh(ys, med, height=height, xerr=[lo, hi], label=name, capsize=2)
        for y, v in zip(ys, values, strict=True):
            if not _ok(v["median"]):
                # no sound run: say so where the bar would be
                ax.text(0.01, y, f"{name}: failed", va="center", fontsize=7, color="tab:red")
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels(groups, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def _title(results: dict[str, Any], what: str) -> str:
    m = results["machine"]
    return f"{what}\n{results['date']}, {m['uname']}, nproc {m['nproc']} ({results['mode']} run)"


def _plot_servers(plt: Any, results: dict[str, Any], path: Path) -> None:
    servers = results["servers"]
    kinds = [k for k in servers[0]["summary"] if k != "raw"]
    groups = [sc["label"] for sc in servers]
    series = [(SERVER_NAMES[k], [sc["summary"][k]["ratio"] for sc in servers]) for k in kinds]
    fig, ax = plt.subplots(figsize=(11, 1.0 + 0.55 * len(groups) * max(1, len(kinds)) / 3))
    _bars(ax, groups, series)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.axvline(0.7, color="tab:red", linestyle="--", linewidth=1, label="asyncio target 0.7")
    ax.axvline(
        0.5, color="tab:orange", linestyle=":", linewidth=1, label="trio/threads target 0.5"
    )
    ax.set_xlabel("throughput / raw responder's in the same repetition (median, min–max)")
    ax.set_title(_title(results, "SMTP servers against the raw asyncio responder (1.0)"))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_clients(plt: Any, results: dict[str, Any], path: Path) -> None:
    clients = results["clients"]
    names = list(clients[0]["summary"])
    groups = [c["label"] for c in clients]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    vs_std = [n for n in names if n != "smtplib"]
    _bars(
        axes[0],
        groups,
        [(CLIENT_NAMES[n], [c["summary"][n]["vs_smtplib"] for c in clients]) for n in vs_std],
    )
    axes[0].axvline(1.0, color="black", linewidth=1)
    axes[0].axvline(2.0, color="tab:red", linestyle="--", linewidth=1, label="blocking target 2x")
    axes[0].set_xlabel("throughput / smtplib's (median, min–max)")
    axes[0].legend(fontsize=8, loc="lower right")
    asyncs = [n for n in ASYNC_CLIENTS if n in names]
    if "aiosmtplib" in names and asyncs:
        _bars(
            axes[1],
            groups,
            [
                (CLIENT_NAMES[n], [c["summary"][n]["vs_aiosmtplib"] for c in clients])
                for n in asyncs
            ],
        )
        axes[1].axvline(1.0, color="black", linewidth=1)
        axes[1].axvline(
            3.0, color="tab:red", linestyle="--", linewidth=1, label="asyncio target 3x"
        )
        axes[1].set_xlabel("throughput / aiosmtplib's (median, min–max)")
        axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(_title(results, "SMTP clients against smtplib and aiosmtplib"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
