"""SMTP TLS Reporting (RFC 8460) with blocking I/O: record results, send the daily reports.

:mod:`smtp_rtls.policy.tlsrpt` makes session results and reports without
I/O; this module keeps them on disk and delivers the reports:

* :class:`TLSRPTStore` is a state directory.  A sending MTA records the
  results of each delivery into it (:meth:`TLSRPTStore.record_delivery`,
  one line of JSON per session, one file per UTC day); once a day the
  previous day's reports are made from it (:meth:`TLSRPTStore.make_reports`),
  written out (:meth:`TLSRPTStore.write_report`), queued
  (:meth:`TLSRPTStore.queue`) and sent (:meth:`TLSRPTStore.send_due`).  A
  report that could not be delivered stays queued with its next attempt
  time, retried with exponential back-off for a day (§5.5,
  :class:`ReportRetry`), then moved aside, never dropped.
* :class:`ReportSender` delivers one report to the ``rua`` destinations of
  the policy domain's ``_smtp._tls`` record (§3): an HTTPS POST of the
  compressed report (:func:`post_report`, §5.4) or a mail
  (:func:`report_message`, §5.3) sent through
  :func:`smtp_rtls.io.sync.deliver` with ``TLS-Required: No`` (RFC 8689
  §3), so that a report about broken TLS still gets through.
* :class:`DKIMSigner` signs report mail with DKIM, as §3 requires (with the
  optional ``dkimpy``): pass it as the ``sign`` of :class:`ReportSender`.

The sessions that deliver reports are not recorded: RFC 8460 §3 says they
"SHOULD NOT" be in the next report.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from ..policy.tlsrpt import (
    Report,
    ReportSubmitter,
    SessionLog,
    SessionResult,
    aggregate,
    read_session_lines,
)
from ..session.delivery import DeliveryResult
from ._tlsrpt_send import (
    DKIM_SIGNED_HEADERS,
    DestinationResult,
    DKIMSigner,
    ReportOutcome,
    ReportSender,
    ReportStatus,
    iso,
    post_report,
    report_message,
    utc_now,
)

__all__ = [
    "DKIM_SIGNED_HEADERS",
    "DKIMSigner",
    "DestinationResult",
    "QueuedReport",
    "ReportOutcome",
    "ReportRetry",
    "ReportSender",
    "ReportStatus",
    "TLSRPTStore",
    "post_report",
    "report_message",
]

log = logging.getLogger(__name__)


# -- the state directory -----------------------------------------------------------------


@attrs.frozen(slots=True)
class ReportRetry:
    """When to try an undelivered report again (RFC 8460 §5.5).

    §5.5: "a sender SHOULD attempt redelivery for up to 24hrs after the
    initial attempt", "with exponential backoff".  The n-th failure waits
    ``first * factor ** (n - 1)`` seconds, at most ``maximum``; after
    ``give_up`` seconds from the first attempt the report is given up.
    Defaults: 10 minutes, doubling, at most 4 hours, for 24 hours.
    """

    first: float = 600.0
    factor: float = 2.0
    maximum: float = 4 * 3600.0
    give_up: float = 86400.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1 for the first)."""
        return float(min(self.maximum, self.first * self.factor ** max(0, failures - 1)))


@attrs.frozen(slots=True)
class QueuedReport:
    """A report waiting in ``outbox/`` (or done with, in ``done/`` and ``failed/``).

    ``attempts`` made so far, the ``first_attempt``, the ``next_attempt``,
    and what the last one said (``last_error``, ``destinations``).
    """

    report: Report
    next_attempt: datetime.datetime
    attempts: int = 0
    first_attempt: datetime.datetime | None = None
    last_error: str = ""
    destinations: tuple[DestinationResult, ...] = ()
    status: ReportStatus | None = None

    def to_json(self) -> str:
        """The entry as a JSON document (the report's own JSON inside, as a string)."""
        submitter = self.report.submitter
        return json.dumps(
            {
                "v": 1,
                "policy-domain": self.report.policy_domain,
                "day": self.report.day.isoformat(),
                "organization-name": submitter.organization_name,
                "contact-info": submitter.contact_info,
                "unique-id": submitter.unique_id,
                "report": self.report.body.decode("utf-8"),
                "attempts": self.attempts,
                "first-attempt": iso(self.first_attempt) if self.first_attempt else None,
                "next-attempt": iso(self.next_attempt),
                "status": self.status.value if self.status is not None else None,
                "last-error": self.last_error,
                "destinations": [
                    {"uri": d.uri, "accepted": d.accepted, "detail": d.detail}
                    for d in self.destinations
                ],
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> QueuedReport:
        """The entry of :meth:`to_json`; ValueError (KeyError, TypeError) for anything else."""
        data: dict[str, Any] = json.loads(text)
        if data.get("v") != 1:
            raise ValueError("not a version 1 queued report")
        submitter = ReportSubmitter(
            data["organization-name"], data["contact-info"], data.get("unique-id")
        )
        report = Report(
            data["policy-domain"],
            datetime.date.fromisoformat(data["day"]),
            submitter,
            data["report"].encode("utf-8"),
        )
        first = data.get("first-attempt")
        status = data.get("status")
        return cls(
            report,
            datetime.datetime.fromisoformat(data["next-attempt"]),
            int(data.get("attempts", 0)),
            datetime.datetime.fromisoformat(first) if first else None,
            str(data.get("last-error", "")),
            tuple(
                DestinationResult(str(d["uri"]), bool(d["accepted"]), str(d.get("detail", "")))
                for d in data.get("destinations", ())
            ),
            ReportStatus(status) if status else None,
        )


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path``: written beside it, flushed to disk, renamed over it."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


class TLSRPTStore:
    """A TLSRPT state directory: session results by day, reports, the delivery queue.

    ``directory`` holds::

        sessions/YYYY-MM-DD.jsonl   one SessionResult.to_json() line per session (UTC day)
        reports/NAME.json, NAME.json.gz   the reports made (RFC 8460 §5.1 names)
        outbox/NAME.json            reports waiting for delivery, with their next attempt
        done/NAME.json              reports delivered, or not wanted (no _smtp._tls record)
        failed/NAME.json            reports given up after a day of attempts (§5.5)

    Folders are made when first needed.  Results are appended, one
    ``write()`` per file per delivery, so several processes may record into
    one directory; a line cut short by a crash is skipped when read
    (:func:`~smtp_rtls.policy.tlsrpt.read_session_lines`).  ``retry`` is the
    :class:`ReportRetry` schedule; ``clock`` gives the current time.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        retry: ReportRetry | None = None,
        clock: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        """Nothing is read or made before the first call."""
        self.directory = Path(directory)
        self.retry = retry if retry is not None else ReportRetry()
        self.clock = clock

    def _folder(self, name: str) -> Path:
        folder = self.directory / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- session results --------------------------------------------------------------

    def sessions_file(self, day: datetime.date) -> Path:
        """The file of ``day``'s session results."""
        return self.directory / "sessions" / f"{day.isoformat()}.jsonl"

    def record(self, results: Iterable[SessionResult]) -> int:
        """Append ``results`` to their days' files; returns how many were written."""
        by_day: dict[datetime.date, list[str]] = {}
        for result in results:
            by_day.setdefault(result.when.date(), []).append(result.to_json() + "\n")
        if not by_day:
            return 0
        self._folder("sessions")
        for day, lines in by_day.items():
            data = "".join(lines).encode("ascii")
            fd = os.open(self.sessions_file(day), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        return sum(len(lines) for lines in by_day.values())

    def record_delivery(self, result: DeliveryResult) -> int:
        """Record the session results of one delivery (:meth:`DeliveryResult.tlsrpt_results
        <smtp_rtls.session.DeliveryResult.tlsrpt_results>`).

        Never raises: a result that cannot be recorded (a full disk, a
        bug) is logged, and the delivery it belongs to is not disturbed.
        """
        try:
            return self.record(result.tlsrpt_results())
        except Exception:
            log.exception("could not record TLSRPT session results in %s", self.directory)
            return 0

    def read(self, day: datetime.date) -> SessionLog:
        """``day``'s session results (none when nothing was recorded that day)."""
        path = self.sessions_file(day)
        try:
            with open(path, "rb") as file:
                return read_session_lines(file, source=str(path))
        except FileNotFoundError:
            return SessionLog(())

    # -- reports ----------------------------------------------------------------------

    def make_reports(self, day: datetime.date, submitter: ReportSubmitter) -> tuple[Report, ...]:
        """``day``'s reports (RFC 8460 §4.4), one per policy domain."""
        return aggregate(self.read(day).results, submitter, day=day)

    def write_report(self, report: Report) -> tuple[Path, Path]:
        """Write ``report`` to ``reports/`` as JSON and compressed (§5.1, §5.2): both paths."""
        folder = self._folder("reports")
        plain = folder / report.filename(compressed=False)
        compressed = folder / report.filename()
        _write_atomically(plain, report.body)
        _write_atomically(compressed, report.gzip())
        return plain, compressed

    def _entry_name(self, report: Report) -> str:
        return report.filename(compressed=False)

    def state_of(self, report: Report) -> tuple[str, QueuedReport] | None:
        """Where ``report`` is (``"outbox"``, ``"done"``, ``"failed"``) and its entry, or None."""
        name = self._entry_name(report)
        for folder in ("outbox", "done", "failed"):
            path = self.directory / folder / name
            try:
                return folder, QueuedReport.from_json(path.read_bytes())
            except FileNotFoundError:
                continue
        return None

    def queue(self, report: Report, now: datetime.datetime | None = None) -> bool:
        """Queue ``report`` for delivery now; False if it was queued or sent before.

        A report is known by its file name (policy domain, day, submitter):
        a day's report is queued once, whatever was recorded after.
        """
        if self.state_of(report) is not None:
            return False
        entry = QueuedReport(report, now if now is not None else self.clock())
        _write_atomically(
            self._folder("outbox") / self._entry_name(report), entry.to_json().encode()
        )
        return True

    def queued(self) -> list[QueuedReport]:
        """The reports in ``outbox/``, by next attempt; unreadable entries are logged."""
        entries: list[QueuedReport] = []
        folder = self.directory / "outbox"
        if not folder.is_dir():
            return entries
        for path in sorted(folder.glob("*.json")):
            try:
                entries.append(QueuedReport.from_json(path.read_bytes()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring the unreadable queued report %s: %s", path, exc)
        return sorted(entries, key=lambda e: e.next_attempt)

    def send_due(
        self,
        sender: ReportSender,
        *,
        now: datetime.datetime | None = None,
        everything: bool = False,
    ) -> list[ReportOutcome]:
        """Send the queued reports whose next attempt is due (all with ``everything``).

        A delivered or unwanted report moves to ``done/``; one that failed
        stays in ``outbox/`` with its next attempt after the back-off
        (§5.5), or moves to ``failed/`` once ``retry.give_up`` has passed
        since its first attempt, and a warning is logged.
        """
        if now is None:
            now = self.clock()
        outcomes: list[ReportOutcome] = []
        for entry in self.queued():
            if not everything and entry.next_attempt > now:
                continue
            outcome = sender.send(entry.report)
            outcomes.append(self._after(entry, outcome, now))
        return outcomes

    def _after(
        self, entry: QueuedReport, outcome: ReportOutcome, now: datetime.datetime
    ) -> ReportOutcome:
        """Move or update ``entry`` after ``outcome``; the outcome as the queue sees it."""
        first = entry.first_attempt or now
        attempts = entry.attempts + 1
        error = outcome.detail or "; ".join(
            f"{d.uri}: {d.detail}" for d in outcome.destinations if not d.accepted
        )
        updated = attrs.evolve(
            entry,
            attempts=attempts,
            first_attempt=first,
            last_error="" if outcome.status is ReportStatus.DELIVERED else error,
            destinations=outcome.destinations,
            status=outcome.status,
        )
        name = self._entry_name(entry.report)
        source = self.directory / "outbox" / name
        if outcome.status is ReportStatus.FAILED:
            give_up = first + datetime.timedelta(seconds=self.retry.give_up)
            # The last attempt falls on the give-up time, not after it.
            next_attempt = min(
                now + datetime.timedelta(seconds=self.retry.delay(attempts)), give_up
            )
            if now >= give_up:
                updated = attrs.evolve(updated, status=ReportStatus.GIVEN_UP)
                self._move(source, "failed", updated)
                log.warning(
                    "gave up on the TLSRPT report %s after %d attempts: %s",
                    entry.report.report_id,
                    attempts,
                    error,
                )
                return attrs.evolve(outcome, status=ReportStatus.GIVEN_UP, detail=error)
            updated = attrs.evolve(updated, next_attempt=next_attempt, status=ReportStatus.KEPT)
            _write_atomically(source, updated.to_json().encode())
            return attrs.evolve(
                outcome, status=ReportStatus.KEPT, detail=error, next_attempt=next_attempt
            )
        self._move(source, "done", updated)
        return outcome

    def _move(self, source: Path, folder: str, entry: QueuedReport) -> None:
        # The new place first, then the old one removed: a crash in between
        # leaves the report in both, and it is sent at most once more.
        _write_atomically(self._folder(folder) / source.name, entry.to_json().encode())
        source.unlink(missing_ok=True)
