"""``smtp-rtls tlsrpt``: SMTP TLS Reporting (RFC 8460) from the recorded session results.

``smtp-rtls send --tlsrpt-dir DIR`` and ``smtp-rtls serve --relay`` record
one session result per delivery session in a state directory
(:class:`~smtp_rtls.io.tlsrpt.TLSRPTStore`).  ``smtp-rtls tlsrpt report``
turns one UTC day of them (default: yesterday) into the daily reports, one
per policy domain (§4), and writes them into the directory as JSON and
compressed (§5.1, §5.2).  With ``--send`` it also queues them and delivers
what is due, to the destinations each policy domain publishes in its
``_smtp._tls`` record (§3): by HTTPS POST (§5.4) or by mail (§5.3); a report
that cannot be delivered is kept with its next attempt (§5.5), and the next
run with ``--send`` tries it again.  Mail is DKIM signed (§3 requires it)
with ``--dkim-key`` and ``--dkim-selector`` (the optional ``dkimpy``);
without them it goes unsigned, after a warning: receivers ignore it.

Exit status: 0 done, 64 bad arguments, 65 a DKIM key that cannot sign, 66
no state directory or DKIM key file, 69 a report given up after a day of
attempts or no dkimpy for --dkim-key, 73 the directory cannot be written, 75 a
report not delivered this time (kept for its next attempt).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..policy.tlsrpt import Report, ReportSubmitter, aggregate
from ._common import (
    EX_CANTCREAT,
    EX_DATAERR,
    EX_NOINPUT,
    EX_OK,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    CommandError,
    env_default,
    host_port,
    port_number,
    positive_seconds,
)

__all__ = ["add_parser", "run"]

#: serve's default state directory; the relay records into its ``tlsrpt``.
DEFAULT_STATE_DIR = "smtp-rtls-state"

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day(text: str) -> datetime.date:
    """An argparse ``type`` for ``YYYY-MM-DD``."""
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def add_parser(sub: Any) -> None:
    """Register ``tlsrpt`` and its ``report`` action."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "tlsrpt",
        help="SMTP TLS Reporting (RFC 8460): make and send the daily reports",
        description="SMTP TLS Reporting (RFC 8460) from the session results that "
        "'send --tlsrpt-dir' and 'serve --relay' record.",
    )
    actions = parser.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=type(parser)
    )
    report = actions.add_parser(
        "report",
        help="make (and with --send, deliver) the reports of one UTC day",
        description=(
            "Make the reports of one UTC day (default: yesterday), one per policy domain, "
            "and write them into the state directory as JSON and gzip. With --send, queue "
            "them and deliver the due ones to the destinations each domain publishes in "
            "its _smtp._tls record; a report not delivered is kept and retried by the "
            "next run with --send."
        ),
    )
    where = report.add_mutually_exclusive_group()
    where.add_argument(
        "--tlsrpt-dir", metavar="DIR", help="the TLSRPT state directory (as given to send)"
    )
    where.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"serve's state directory: its tlsrpt folder (default ./{DEFAULT_STATE_DIR})",
    )
    report.add_argument(
        "--date", type=_day, metavar="YYYY-MM-DD", help="the UTC day (default: yesterday)"
    )
    who = report.add_argument_group("the submitter (RFC 8460 §4.4)")
    who.add_argument(
        "--organization", metavar="NAME", help="organization-name (needed with --send)"
    )
    who.add_argument(
        "--contact",
        metavar="ADDR",
        help="contact-info, an email address whose domain is the submitter (needed with --send)",
    )
    who.add_argument(
        "--unique-id", metavar="ID", help="letters and digits naming this machine (§5.1)"
    )
    sending = report.add_argument_group("delivery (--send)")
    sending.add_argument(
        "--send", action="store_true", help="queue the reports and deliver the due ones"
    )
    sending.add_argument(
        "--retry-now",
        action="store_true",
        help="try every queued report now, without waiting for its back-off",
    )
    sending.add_argument(
        "--nameserver",
        type=host_port(53),
        metavar="HOST:PORT",
        help="the resolver to ask (default: SMTP_RTLS_NAMESERVER, else the system's)",
    )
    sending.add_argument(
        "--mx-port", type=port_number, metavar="N", help="mail reports to port N instead of 25"
    )
    sending.add_argument(
        "--cafile",
        metavar="FILE",
        help="trust these CA certificates for HTTPS and SMTP (default: SMTP_RTLS_CAFILE)",
    )
    sending.add_argument(
        "--timeout", type=positive_seconds, metavar="SECONDS", help="cap every wait for a server"
    )
    sending.add_argument(
        "--hostname", metavar="NAME", help="the EHLO name for mail (default: the FQDN)"
    )
    signing = report.add_argument_group("DKIM signing of mailed reports (RFC 8460 §3)")
    signing.add_argument(
        "--dkim-key",
        metavar="FILE",
        help="sign report mail with this private key (RSA PEM, or Ed25519); needs dkimpy",
    )
    signing.add_argument(
        "--dkim-selector",
        metavar="SEL",
        help="the selector of the key (its TXT record SEL._domainkey.DOMAIN has s=tlsrpt)",
    )
    signing.add_argument(
        "--dkim-domain",
        metavar="D",
        help="the signing domain (default: the domain of --contact, the submitter)",
    )
    report.add_argument(
        "--json", action="store_true", help="print one JSON document instead of lines"
    )
    report.set_defaults(run=run)


# -- the command -------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Make the day's reports, write them, and with ``--send`` deliver what is due."""
    _check_options(args)
    from ..io.tlsrpt import TLSRPTStore

    # The DKIM key is read before anything is written: a bad one stops the run.
    sign = _signer(args) if args.send else None

    folder = _directory(args)
    store = TLSRPTStore(folder)
    day = args.date if args.date is not None else _yesterday()
    if day >= datetime.datetime.now(datetime.UTC).date():
        raise CommandError(
            f"--date {day}: the day is not over yet (UTC); a report covers a whole day "
            "(RFC 8460 §4.1)"
        )
    submitter = _submitter(args)
    log = store.read(day)
    reports = aggregate(log.results, submitter, day=day)
    written: list[tuple[Report, Path, Path]] = []
    for report in reports:
        try:
            plain, compressed = store.write_report(report)
        except OSError as exc:
            raise CommandError(
                f"cannot write the report into {folder}: {exc.strerror or exc}", EX_CANTCREAT
            ) from None
        written.append((report, plain, compressed))
    document: dict[str, Any] = {
        "day": day.isoformat(),
        "directory": str(folder),
        "sessions": len(log.results),
        "damaged_lines": len(log.damaged),
        "reports": [_report_json(r, plain, gz) for r, plain, gz in written],
        "deliveries": [],
        "exit_status": EX_OK,
    }
    out = sys.stdout
    if not args.json:
        _print_reports(day, folder, written, out)
    if not args.send:
        if args.json:
            print(json.dumps(document, indent=2), file=out)
        return EX_OK
    assert sign is not None
    status = _send(args, store, [r for r, _, _ in written], document, out, sign)
    document["exit_status"] = status
    if args.json:
        print(json.dumps(document, indent=2), file=out)
    return status


def _check_options(args: argparse.Namespace) -> None:
    if args.send:
        for flag, value in (("--organization", args.organization), ("--contact", args.contact)):
            if not value:
                raise CommandError(
                    f"--send needs {flag}: a report names who sends it (RFC 8460 §4.4)"
                )
        if bool(args.dkim_key) != bool(args.dkim_selector):
            given, missing = (
                ("--dkim-key", "--dkim-selector")
                if args.dkim_key
                else ("--dkim-selector", "--dkim-key")
            )
            raise CommandError(f"{given} needs {missing}")
        if args.dkim_domain and not args.dkim_key:
            raise CommandError("--dkim-domain needs --dkim-key and --dkim-selector")
        return
    for flag, value in (
        ("--retry-now", args.retry_now),
        ("--nameserver", args.nameserver),
        ("--mx-port", args.mx_port),
        ("--cafile", args.cafile),
        ("--timeout", args.timeout),
        ("--hostname", args.hostname),
        ("--dkim-key", args.dkim_key),
        ("--dkim-selector", args.dkim_selector),
        ("--dkim-domain", args.dkim_domain),
    ):
        if value:
            raise CommandError(f"{flag} is for delivering reports: add --send")


def _yesterday() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1)


def _directory(args: argparse.Namespace) -> Path:
    """--tlsrpt-dir, or the tlsrpt folder of --state-dir (serve's default)."""
    if args.tlsrpt_dir:
        folder = Path(args.tlsrpt_dir)
    else:
        folder = Path(args.state_dir or DEFAULT_STATE_DIR) / "tlsrpt"
    if not folder.is_dir():
        raise CommandError(
            f"no TLSRPT state directory at {folder}: session results are recorded by "
            "'smtp-rtls send --tlsrpt-dir DIR' and 'smtp-rtls serve --relay'",
            EX_NOINPUT,
        )
    return folder


def _submitter(args: argparse.Namespace) -> ReportSubmitter:
    """--organization and --contact; without --send, this machine's name stands in."""
    name = socket.getfqdn()
    organization = args.organization or name
    contact = args.contact or f"postmaster@{name}"
    try:
        return ReportSubmitter(organization, contact, args.unique_id)
    except ValueError as exc:
        flag = "--unique-id" if "unique-id" in str(exc) else "--contact"
        if not args.contact and flag == "--contact":
            flag = "--contact (this machine's name is no domain name: give it)"
        raise CommandError(f"{flag}: {exc}") from None


def _counts(report: Report) -> tuple[int, int]:
    successes = failures = 0
    for policy in report.document()["policies"]:
        successes += policy["summary"]["total-successful-session-count"]
        failures += policy["summary"]["total-failure-session-count"]
    return successes, failures


def _report_json(report: Report, plain: Path, compressed: Path) -> dict[str, Any]:
    successes, failures = _counts(report)
    return {
        "policy_domain": report.policy_domain,
        "day": report.day.isoformat(),
        "report_id": report.report_id,
        "json": str(plain),
        "gzip": str(compressed),
        "successful": successes,
        "failed": failures,
    }


def _print_reports(
    day: datetime.date, folder: Path, written: list[tuple[Report, Path, Path]], out: TextIO
) -> None:
    if not written:
        print(f"no session results for {day} in {folder}", file=out)
    for report, _, compressed in written:
        successes, failures = _counts(report)
        print(
            f"{report.policy_domain} {report.day}: {successes} successful, {failures} failed: "
            f"{compressed}",
            file=out,
        )


# -- --send --------------------------------------------------------------------------------


def _send(
    args: argparse.Namespace,
    store: Any,
    reports: list[Report],
    document: dict[str, Any],
    out: TextIO,
    sign: Callable[[bytes], bytes],
) -> int:
    """Queue the day's reports, deliver the due ones; the exit status of this run."""
    from ..io.fulfil import SyncFulfiller
    from ..io.tlsrpt import ReportSender, ReportStatus
    from ..session.delivery import DEFAULT_TIMEOUTS
    from .send import _nameserver, _tls_context

    cafile = args.cafile if args.cafile is not None else env_default("CAFILE")
    _tls_context(cafile)  # an unreadable CA file is said once, up front
    nameserver = _nameserver(args)
    timeout = args.timeout
    fulfil = SyncFulfiller(
        [nameserver[0]],
        port=nameserver[1],
        cafile=cafile,
        timeout=min(timeout, 5.0) if timeout else 5.0,
    )
    sender = ReportSender(
        fulfil,
        local_hostname=args.hostname or socket.getfqdn(),
        cafile=cafile,
        mx_port=args.mx_port,
        timeouts={k: min(v, timeout) for k, v in DEFAULT_TIMEOUTS.items()} if timeout else None,
        timeout=timeout or 60.0,
        sign=sign,
    )
    queued = set()
    try:
        for report in reports:
            if store.queue(report):
                queued.add(report.report_id)
        outcomes = store.send_due(sender, everything=args.retry_now)
    except OSError as exc:
        raise CommandError(
            f"cannot write into {store.directory}: {exc.strerror or exc}", EX_CANTCREAT
        ) from None
    tried = {o.report.report_id for o in outcomes}
    for entry in document["reports"]:
        entry["queued"] = entry["report_id"] in queued
    if not args.json:
        for report in reports:
            if report.report_id not in queued and report.report_id not in tried:
                print(_earlier(store, report), file=out)
    status = EX_OK
    for outcome in outcomes:
        if outcome.status is ReportStatus.GIVEN_UP:
            status = EX_UNAVAILABLE
        elif outcome.status is ReportStatus.KEPT and status == EX_OK:
            status = EX_TEMPFAIL
        document["deliveries"].append(
            {
                "policy_domain": outcome.report.policy_domain,
                "day": outcome.report.day.isoformat(),
                "report_id": outcome.report.report_id,
                "status": outcome.status.value,
                "next_attempt": _iso(outcome.next_attempt) if outcome.next_attempt else None,
                "detail": outcome.detail,
                "destinations": [
                    {"uri": d.uri, "accepted": d.accepted, "detail": d.detail}
                    for d in outcome.destinations
                ],
            }
        )
        if not args.json:
            print(_outcome_line(outcome), file=out)
    return status


def _signer(args: argparse.Namespace) -> Callable[[bytes], bytes]:
    """The ``sign`` hook: a DKIM signer with --dkim-key, else one that warns once, unsigned."""
    from ..io.tlsrpt import DKIMSigner

    if not args.dkim_key:
        warned = False

        def unsigned(message: bytes) -> bytes:
            nonlocal warned
            if not warned:
                warned = True
                print(
                    "smtp-rtls tlsrpt: warning: mailing reports without a DKIM signature "
                    "(no --dkim-key): receivers must ignore them (RFC 8460 §3)",
                    file=sys.stderr,
                )
            return message

        return unsigned
    try:
        key = Path(args.dkim_key).read_bytes()
    except OSError as exc:
        raise CommandError(
            f"--dkim-key {args.dkim_key}: {exc.strerror or exc}", EX_NOINPUT
        ) from None
    domain = args.dkim_domain or args.contact.rpartition("@")[2]
    try:
        return DKIMSigner(domain, args.dkim_selector, key)
    except ImportError as exc:
        raise CommandError(f"--dkim-key: {exc}", EX_UNAVAILABLE) from None
    except ValueError as exc:
        raise CommandError(f"--dkim-key {args.dkim_key}: {exc}", EX_DATAERR) from None


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _earlier(store: Any, report: Report) -> str:
    """What an earlier run did with ``report`` (it is queued once)."""
    where = store.state_of(report)
    what = f"{report.policy_domain} {report.day}"
    if where is None:  # pragma: no cover - queue() just said it is known
        return f"{what}: queued before"
    folder, entry = where
    if folder == "outbox":
        return f"{what}: queued before, next attempt {_iso(entry.next_attempt)}"
    if folder == "failed":
        return f"{what}: given up before ({entry.last_error})"
    return f"{what}: {entry.status.value if entry.status else 'done'} before"


def _outcome_line(outcome: Any) -> str:
    from ..io.tlsrpt import ReportStatus as statuses

    what = f"{outcome.report.policy_domain} {outcome.report.day}"
    accepted = [d.uri for d in outcome.destinations if d.accepted]
    if outcome.status is statuses.DELIVERED:
        return f"{what}: delivered to {', '.join(accepted)}"
    if outcome.status is statuses.NOT_WANTED:
        return f"{what}: not sent, the domain wants no reports: {outcome.detail}"
    if outcome.status is statuses.KEPT:
        return (
            f"{what}: not delivered, kept; next attempt {_iso(outcome.next_attempt)}: "
            f"{outcome.detail}"
        )
    return f"{what}: given up after a day of attempts: {outcome.detail}"
