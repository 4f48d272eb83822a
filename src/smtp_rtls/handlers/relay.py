"""Relay: accept mail into a spool, deliver it onward under RFC 8689, bounce what fails.

The server side (:class:`Relay` as a :class:`~smtp_rtls.session.Handler`)
writes each message into a :class:`~smtp_rtls.handlers.spool.Spool` and
answers ``250`` only once the spool has it durably (RFC 5321 §6.1).  Its own
``Received`` field goes first (RFC 5321 §4.4: a relay MUST add one); the
content is otherwise relayed byte for byte, so a ``TLS-Required: No`` field
travels on unchanged.

The delivery side (:meth:`~smtp_rtls.handlers.Relay.run_once`, or
:meth:`~smtp_rtls.handlers.Relay.start` for a background thread) takes the
due entries, and for each recipient domain calls the deliver function
(:func:`smtp_rtls.io.sync.deliver` by default) with the message's tag, so
a REQUIRETLS message leaves only with REQUIRETLS and a ``TLS-Required: No``
one stays TLS-optional (RFC 8689 §4.1, §4.2).
Per recipient:

- delivered: done;
- deferred: tried again after an exponential back-off
  (:class:`~smtp_rtls.handlers.relay.RetrySchedule`, RFC 5321 §4.5.4.1),
  until the give-up time (5 days by default), when it fails with a report;
- failed: the report (:attr:`DeliveryResult.bounce`, or one built here on
  expiry) is queued in the same spool, to the reverse path, from the null
  reverse path (RFC 5321 §4.5.5), and delivered like any message.  A message
  whose reverse path is null gets no report (RFC 5321 §4.5.5).

A report about a REQUIRETLS message is tagged REQUIRETLS and carries
REQUIRETLS where the return path offers it (RFC 8689 §5 ¶1, ¶3).  Which
variant of it is queued is explained at :func:`report_content`.

The relay accepts every recipient the handler's ``on_rcpt`` accepts, which
by default is all: subclass it (or mix in
:class:`~smtp_rtls.handlers.PasswordAuth`) so as not to be an open relay.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from .._events import MailFrom
from .._reply import EnhancedStatus, Reply
from ..policy.dsn import Bounce, RecipientStatus, build_dsn
from ..session.delivery import DeliveryResult, DeliveryStatus
from ..session.server import Handler, MessageWriter, SessionEnvelope
from .maildir import received_field
from .spool import QueuedMessage, QueuedRecipient, ReceivedInfo, RecipientState, Spool, SpoolWriter

__all__ = ["Attempt", "Relay", "RetrySchedule", "report_content"]

logger = logging.getLogger(__name__)

DeliverFunction = Callable[..., DeliveryResult]

# RFC 3463 §3.5: X.4.7 "Delivery time expired".
_EXPIRED = EnhancedStatus(4, 4, 7)


@attrs.frozen(slots=True)
class RetrySchedule:
    """When to try a deferred recipient again, and when to give up (RFC 5321 §4.5.4.1).

    The n-th deferral waits ``first * factor ** (n - 1)`` seconds, at most
    ``maximum``.  §4.5.4.1: "the retry interval SHOULD be at least 30
    minutes" and "the give-up time generally needs to be at least 4-5 days":
    the defaults are 30 minutes, doubling, at most 4 hours, giving up after 5
    days.
    """

    first: float = 30 * 60.0
    factor: float = 2.0
    maximum: float = 4 * 3600.0
    give_up: float = 5 * 86400.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th deferral (1 for the first)."""
        return float(min(self.maximum, self.first * self.factor ** max(0, attempts - 1)))


@attrs.frozen(slots=True)
class Attempt:
    """One delivery made by :meth:`~smtp_rtls.handlers.Relay.run_once`: the
    entry, the domain, the outcome."""

    message_id: str
    domain: str
    result: DeliveryResult


def report_content(bounce: Bounce) -> bytes:
    """The report to queue for ``bounce``: the variant that may travel either way.

    RFC 8689 §5: a report about a REQUIRETLS message carries REQUIRETLS where
    the next hop offers it, and is sent without it elsewhere (¶3), where only
    a redacted report is safe (¶1 "unless redacted", ¶4).  Which of the two a
    delivery will be is known only after the next hop's EHLO, but the deliver
    function takes the content before; so the queued report is the one safe
    without REQUIRETLS (:meth:`Bounce.message_for` ``(False)``: the redacted
    one, when there is one).  It still asks for REQUIRETLS where offered.
    """
    return bounce.message_for(False)


def _queued(envelope: SessionEnvelope, now: float) -> QueuedMessage:
    session = envelope.session
    tls = session.tls
    mail = envelope.mail_from
    # Only what travels on: AUTH= is this hop's (RFC 4954 §5), REQUIRETLS is
    # the tag, unknown parameters were this server's to accept.
    mail_from = MailFrom(
        mail.reverse_path,
        size=mail.size,
        body=mail.body,
        smtputf8=mail.smtputf8,
        ret=mail.ret,
        envid=mail.envid,
    )
    recipients = tuple(
        QueuedRecipient(str(r.forward_path), r.notify, r.orcpt, next_attempt=now)
        for r in envelope.recipients
    )
    received = ReceivedInfo(
        session.hostname,
        session.peer[0] if session.peer else None,
        session.client_name,
        session.authenticated,
        tls.version if tls else None,
        tls.cipher if tls else None,
        tls.bits if tls else None,
    )
    return QueuedMessage(mail_from, recipients, envelope.tag, now, received)


class _RelayWriter(MessageWriter):
    """Content into the spool; 250 only once it is durable."""

    def __init__(self, writer: SpoolWriter, trace: bytes) -> None:
        self.writer = writer
        self.writer.write(trace)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> Reply:
        try:
            message = self.writer.commit()
        except Exception as exc:
            logger.error("could not queue a message: %r", exc)
            # RFC 5321 §4.2.5: the client keeps the message and retries.
            return Reply(451, "Local error: the message could not be queued", "4.3.0")
        logger.info("queued %s for %d recipient(s)", message.id, len(message.recipients))
        return Reply(250, f"Queued as {message.id}", "2.0.0")

    def abort(self) -> None:
        self.writer.abort()


class Relay(Handler):
    """A relay: queue into ``spool``, deliver onward, retry, bounce.

    ``local_hostname`` is this MTA's name: the EHLO argument of outgoing
    sessions and the Reporting-MTA of reports.  ``deliver`` is called as
    ``deliver(mail_from, recipients, content, domain, local_hostname=...,
    tag=..., arrival_date=..., **deliver_options)`` and returns a
    :class:`~smtp_rtls.session.DeliveryResult` (default
    :func:`smtp_rtls.io.sync.deliver`; ``deliver_options`` such as
    ``fulfil``, ``cafile``, ``port``, ``timeouts``, ``config``, ``redact``
    go to it).  ``retry`` is the :class:`~smtp_rtls.handlers.relay.RetrySchedule`; ``clock`` gives
    seconds since the epoch.  ``on_result`` is called with the
    :class:`~smtp_rtls.session.DeliveryResult` of every delivery made (for
    instance :meth:`smtp_rtls.io.tlsrpt.TLSRPTStore.record_delivery`, to
    record SMTP TLS Reporting results, RFC 8460); what it raises is logged
    and does not disturb the queue.
    """

    def __init__(
        self,
        spool: Spool,
        *,
        local_hostname: str,
        deliver: DeliverFunction | None = None,
        deliver_options: Mapping[str, Any] | None = None,
        retry: RetrySchedule | None = None,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[DeliveryResult], object] | None = None,
    ) -> None:
        if deliver is None:
            from ..io.sync import deliver as sync_deliver

            deliver = sync_deliver
        self.spool = spool
        self.local_hostname = local_hostname
        self.deliver = deliver
        self.deliver_options: dict[str, Any] = dict(deliver_options or {})
        self.retry = retry if retry is not None else RetrySchedule()
        self.clock = clock
        self.on_result = on_result
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the server side ---------------------------------------------------------

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        """A writer into the spool, this hop's Received field first (RFC 5321 §4.4)."""
        now = self.clock()
        writer = self.spool.begin(_queued(envelope, now))
        try:
            return _RelayWriter(
                writer,
                received_field(envelope, datetime.datetime.fromtimestamp(now, datetime.UTC)),
            )
        except BaseException:
            writer.abort()
            raise

    # -- the delivery side -------------------------------------------------------

    def run_once(self, now: float | None = None) -> list[Attempt]:
        """Deliver every entry due at ``now`` (default: the clock), once.

        Reports queued on the way are tried in the same pass.  Returns the
        deliveries made, in order.
        """
        if now is None:
            now = self.clock()
        attempts: list[Attempt] = []
        with self._run_lock:
            for message in self.spool.due(now):
                reports = self._process(message, now, attempts)
                for report in reports:
                    self._process(report, now, attempts)
        return attempts

    def start(self, interval: float = 30.0) -> None:
        """Run :meth:`run_once` every ``interval`` seconds in a background thread."""
        if self._thread is not None:
            raise RuntimeError("the delivery worker is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="smtp-rtls-relay", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the background worker, letting a delivery in progress finish
        (up to ``timeout`` seconds; a delivery is bounded by its own timeouts)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.error("the relay worker did not stop within %s s", timeout)

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                # A spool failure must not end the worker: the entries are
                # still there, and the next pass tries again.
                logger.exception("relay pass failed")
            self._stop.wait(interval)

    def _process(
        self, message: QueuedMessage, now: float, attempts: list[Attempt]
    ) -> list[QueuedMessage]:
        """Deliver ``message``'s due recipients, record the outcome; the reports queued."""
        content = self.spool.content(message.id)
        recipients = list(message.recipients)
        bounces: list[Bounce] = []
        expired: list[QueuedRecipient] = []
        for domain in message.by_domain():
            due = [i for i, r in enumerate(recipients) if r.domain == domain and r.due(now)]
            if not due:
                continue
            result = self._deliver(message, domain, [recipients[i] for i in due], content)
            if result is not None:
                attempts.append(Attempt(message.id, domain, result))
                self._observe(result)
                if result.bounce is not None:
                    bounces.append(result.bounce)
            for i in due:
                new, gave_up = self._outcome(message, recipients[i], result, due.index(i), now)
                recipients[i] = new
                if gave_up:
                    expired.append(new)
        if expired:
            bounce = self._expiry_report(message, expired, content, now)
            if bounce is not None:
                bounces.append(bounce)
        # The reports first, then the entry: a crash in between sends a
        # failure twice at worst, never not at all.
        reports = [self._queue_report(b, now) for b in bounces]
        message = attrs.evolve(message, recipients=tuple(recipients))
        self.spool.update(message)
        if message.finished:
            self.spool.remove(message.id)
        return reports

    def _deliver(
        self,
        message: QueuedMessage,
        domain: str,
        due: list[QueuedRecipient],
        content: Callable[[], Iterable[bytes]],
    ) -> DeliveryResult | None:
        try:
            return self.deliver(
                message.mail_from,
                [r.rcpt_to() for r in due],
                content,
                domain,
                local_hostname=self.local_hostname,
                # RFC 8689 §4.1: the tag travels with the message.
                tag=message.tag,
                arrival_date=datetime.datetime.fromtimestamp(message.arrival, datetime.UTC),
                **self.deliver_options,
            )
        except Exception:
            # A bug or a local failure is nobody's fault but ours: defer, so
            # the message is not lost and the give-up time still applies.
            logger.exception("delivering %s to %s failed", message.id, domain)
            return None

    def _observe(self, result: DeliveryResult) -> None:
        if self.on_result is None:
            return
        try:
            self.on_result(result)
        except Exception:
            logger.exception("the relay's on_result failed")

    def _outcome(
        self,
        message: QueuedMessage,
        rcpt: QueuedRecipient,
        result: DeliveryResult | None,
        index: int,
        now: float,
    ) -> tuple[QueuedRecipient, bool]:
        """``rcpt`` after this attempt, and whether it was just given up on."""
        reply: Reply | None
        if result is None:
            status, reply = DeliveryStatus.DEFERRED, Reply(451, "Local error", "4.3.0")
        else:
            outcome = result.recipients[index]
            status, reply = outcome.status, outcome.reply
        if status is DeliveryStatus.DELIVERED:
            return attrs.evolve(rcpt, state=RecipientState.DELIVERED, last_reply=reply), False
        if status is DeliveryStatus.FAILED:
            # Its report came with the result (none for <>, RFC 5321 §4.5.5).
            return attrs.evolve(rcpt, state=RecipientState.FAILED, last_reply=reply), False
        attempts = rcpt.attempts + 1
        give_up = message.arrival + self.retry.give_up
        if now >= give_up:
            # RFC 5321 §4.5.4.1: give up, and report the failure.
            logger.warning("giving up on <%s> for %s", rcpt.forward_path, message.id)
            last = reply or Reply(451, "Delivery time expired", str(_EXPIRED))
            failed = attrs.evolve(
                rcpt, state=RecipientState.FAILED, attempts=attempts, last_reply=last
            )
            return failed, True
        # The last retry falls on the give-up time, not after it.
        next_attempt = min(now + self.retry.delay(attempts), give_up)
        deferred = attrs.evolve(
            rcpt, attempts=attempts, next_attempt=next_attempt, last_reply=reply
        )
        return deferred, False

    def _expiry_report(
        self,
        message: QueuedMessage,
        expired: list[QueuedRecipient],
        content: Callable[[], Iterable[bytes]],
        now: float,
    ) -> Bounce | None:
        """The report for recipients given up on (RFC 5321 §4.5.4.1, RFC 3464)."""
        date = datetime.datetime.fromtimestamp(now, datetime.UTC)
        statuses = [
            RecipientStatus(
                r.forward_path,
                # RFC 3463 §3.5: the code of the actual problem where there is
                # one, else X.4.7 "Delivery time expired".
                (r.last_reply.enhanced if r.last_reply else None) or _EXPIRED,
                "failed",
                original_recipient=";".join(r.orcpt) if r.orcpt else None,
                diagnostic=r.last_reply,
                last_attempt=date,
                notify=r.notify,
            )
            for r in expired
        ]
        options = self.deliver_options
        return build_dsn(
            reporting_mta=self.local_hostname,
            original_reverse_path=str(message.mail_from.reverse_path),
            original=b"".join(content()),
            tag=message.tag,
            recipients=statuses,
            date=date,
            ret=message.mail_from.ret,
            envid=message.mail_from.envid,
            arrival_date=datetime.datetime.fromtimestamp(message.arrival, datetime.UTC),
            redact=bool(options.get("redact", False)),
            without_requiretls=options.get("without_requiretls", "redacted"),
        )

    def _queue_report(self, bounce: Bounce, now: float) -> QueuedMessage:
        """Queue a report: from <> (RFC 5321 §4.5.5) to the failed message's sender."""
        report = QueuedMessage(
            MailFrom(""),
            (QueuedRecipient(bounce.forward_path, next_attempt=now),),
            bounce.tag,
            now,
            ReceivedInfo(self.local_hostname),
        )
        writer = self.spool.begin(report)
        try:
            writer.write(report_content(bounce))
        except BaseException:
            writer.abort()
            raise
        queued = writer.commit()
        logger.info("queued report %s to <%s>", queued.id, bounce.forward_path)
        return queued
