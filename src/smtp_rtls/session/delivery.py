"""Delivery: one message to the recipients of one domain, under RFC 8689, without I/O.

:meth:`Delivery.run` is a generator (see :mod:`smtp_rtls.session.requests`).
It plans the delivery (:func:`~smtp_rtls.policy.plan.plan_delivery`), then
for each candidate MX host, in order, and each of its addresses:

1. connects and reads the greeting (a 4xx or 554 greeting: QUIT, next
   address; RFC 5321 §3.1, §5.1);
2. EHLO (HELO only where STARTTLS and REQUIRETLS are not needed, RFC 5321
   §3.2);
3. STARTTLS when offered, the handshake as the candidate's
   :class:`~smtp_rtls.policy.Handshake` says, EHLO again (RFC 3207 §4.2);
4. asks the policy (:func:`~smtp_rtls.policy.verdict.check`,
   :func:`~smtp_rtls.policy.verdict.handshake_failed`) whether the session
   may carry the message; if not, QUIT and the next host (RFC 8689 §4.2.1 ¶3);
   a candidate that allows plaintext is retried once without STARTTLS after a
   failed handshake (RFC 7435 opportunistic security);
5. MAIL FROM (with REQUIRETLS when the verdict says so), the RCPTs
   (pipelined when offered, RFC 2920), DATA or BDAT, the content (with
   ``bdat``, under TLS and PIPELINING, a small message goes in the
   envelope's write as one ``BDAT LAST`` chunk, RFC 3030 §4.2);
   a ``530`` to MAIL on a plaintext session means the server insists on
   STARTTLS: QUIT, next host (RFC 3207 §4);
6. QUIT.

Once a session proceeded, the server's replies decide per recipient: 2xx
delivered, 4xx deferred, 5xx failed (a refusal of MAIL, DATA or the content
applies to every recipient concerned).  When no host carried the message,
:func:`~smtp_rtls.policy.verdict.final_verdict` decides for all of them.
Failed recipients get a non-delivery report
(:func:`~smtp_rtls.policy.dsn.build_dsn`, RFC 8689 §5) in
:attr:`DeliveryResult.bounce`.  Every session that reached the policy's
decision is kept in :attr:`DeliveryResult.sessions` (the addresses, the
server's name, TLS, the verdict; a failed handshake before its plaintext
retry included), which :meth:`DeliveryResult.tlsrpt_results` turns into
SMTP TLS Reporting results (RFC 8460).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal

import attrs

from .._address import Address
from .._capabilities import Capabilities
from .._client import ClientConnection
from .._errors import LocalProtocolError, RemoteProtocolError
from .._events import (
    Bdat,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    Rset,
)
from .._events import StartTLS as StartTLSCommand
from .._reply import EnhancedStatus, Reply
from .._sentinels import NEED_DATA
from .._state import REPLY_TIMEOUTS
from .._tls import TLSInfo
from .._writers import canonical_chunks
from ..policy.codes import Reason
from ..policy.dsn import Bounce, RecipientStatus, build_dsn
from ..policy.plan import (
    Action,
    Candidate,
    DeliveryPlan,
    PolicyConfig,
    RequireTLSParam,
    Security,
    Verdict,
    plan_delivery,
)
from ..policy.tags import TLSTag, header_section, message_tag
from ..policy.tlsrpt import SessionResult as TLSRPTResult
from ..policy.tlsrpt import session_result
from ..policy.verdict import (
    check,
    connection_failed,
    final_verdict,
    handshake_failed,
    server_requires_starttls,
)
from .client import CHUNKING_MAX
from .requests import (
    Broken,
    Close,
    Connect,
    Connected,
    ConnectFailed,
    Read,
    StartTLS,
    Step,
    TLSFailed,
    Write,
)

__all__ = [
    "DEFAULT_TIMEOUTS",
    "Delivery",
    "DeliveryResult",
    "DeliveryStatus",
    "RecipientResult",
    "SessionAttempt",
]

Content = bytes | Callable[[], Iterable[bytes]]

#: The waits a :class:`Delivery` asks for, in seconds, by what is awaited:
#: the reply to a command (RFC 5321 §4.5.3.2: ``"GREETING"`` 5 min, ``"MAIL"``
#: 5 min, ``"RCPT"`` 5 min, ``"DATA"`` 2 min, ``"EOM"`` 10 min; ``"BDAT"``
#: as the end of data), ``"REPLY"`` for any other command (EHLO, STARTTLS,
#: QUIT: the RFC gives none, 5 min as for MAIL), ``"WRITE"`` a data block
#: (§4.5.3.2.5, 3 min), ``"CONNECT"`` (none in the RFC; 30 s, as Postfix's
#: ``smtp_connect_timeout``) and ``"TLS"`` the handshake (5 min, as Postfix's
#: ``smtp_starttls_timeout``).
DEFAULT_TIMEOUTS: Mapping[str, float] = {
    **REPLY_TIMEOUTS,
    "REPLY": 300.0,
    "WRITE": 180.0,
    "CONNECT": 30.0,
    "TLS": 300.0,
}


class DeliveryStatus(enum.Enum):
    """What became of one recipient."""

    #: A server accepted responsibility for the message (2xx after the content).
    DELIVERED = "delivered"
    #: Not delivered yet; keep it queued and try again later (4xx).
    DEFERRED = "deferred"
    #: Never to be delivered as is; a non-delivery report is due (5xx).
    FAILED = "failed"


@attrs.frozen(slots=True)
class RecipientResult:
    """The outcome for one recipient.

    ``reply`` is the server's reply that decided (``reason`` is then None), or
    the policy's verdict reply (``reason`` says why).  ``host`` and
    ``address`` name the MX host concerned, ``tls_version`` and
    ``tls_cipher`` the TLS session (None in plaintext), ``security`` how the
    server was to be authenticated (the candidate's
    :class:`~smtp_rtls.policy.Security`), ``policy`` why that applied, and
    ``requiretls`` whether MAIL FROM carried REQUIRETLS.
    """

    recipient: str
    status: DeliveryStatus
    reply: Reply | None = None
    reason: Reason | None = None
    host: str | None = None
    address: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    security: Security | None = None
    policy: str = ""
    requiretls: bool = False

    @property
    def enhanced(self) -> EnhancedStatus | None:
        """The reply's enhanced status code, if it had one."""
        return self.reply.enhanced if self.reply is not None else None


@attrs.frozen(slots=True)
class SessionAttempt:
    """One SMTP session of a delivery that got as far as the policy's decision.

    ``host`` is the MX host and ``address`` the IP address connected to;
    ``local_address`` our end of the connection (when the runner says, see
    :class:`~smtp_rtls.session.requests.Connected`); ``server_name`` the first word of
    the server's greeting (RFC 5321 §4.2: its domain), else of its EHLO
    reply; ``tls`` the TLS session, None when the session stayed in
    plaintext or the handshake failed.  ``verdict`` is how the session
    ended for the policy: a TRY_NEXT (a failed handshake, a certificate or
    DANE failure, no STARTTLS, no REQUIRETLS, a ``530`` to MAIL), or the
    PROCEED of the session that carried the transaction.  ``when`` is the
    driver's clock at the connection.  ``plaintext_retry`` marks the session
    opened again without STARTTLS after a failed handshake, for a candidate
    that allows plaintext (RFC 7435); the failed handshake is the session
    before it.

    Sessions that never reached a decision (no connection, a refused
    greeting or EHLO, a connection broken before the verdict) are not
    recorded: RFC 8460 §4.3.4 does not ask to report them.
    """

    host: str
    address: str
    verdict: Verdict
    when: datetime.datetime
    local_address: str | None = None
    server_name: str | None = None
    tls: TLSInfo | None = None
    plaintext_retry: bool = False


@attrs.frozen(slots=True)
class DeliveryResult:
    """What :meth:`Delivery.run` returns.

    ``recipients`` in the order given; ``bounce`` the non-delivery report for
    the failed ones (None when none failed, the sender is null, or no
    recipient wants one); ``verdict`` the PROCEED verdict of the host that
    took the message, or the final one; ``attempts`` the TRY_NEXT verdicts of
    the hosts tried before (``plan.skipped`` holds those never tried).
    ``sessions`` records every session that reached a decision, in order
    (:class:`SessionAttempt`: addresses, server name, TLS, verdict);
    ``when`` is the driver's clock when the delivery began.
    :meth:`tlsrpt_results` turns them into SMTP TLS Reporting results.
    """

    recipients: tuple[RecipientResult, ...]
    bounce: Bounce | None
    plan: DeliveryPlan
    verdict: Verdict
    attempts: tuple[Verdict, ...] = ()
    sessions: tuple[SessionAttempt, ...] = ()
    when: datetime.datetime | None = None

    def tlsrpt_results(self) -> tuple[TLSRPTResult, ...]:
        """The RFC 8460 session results of this delivery, to record for the daily reports.

        One for each host the plan ruled out that RFC 8460 counts (an MX
        host the MTA-STS policy does not list, a failed TLSA look-up), and
        one for each recorded session, with its addresses and the server's
        name (§4.4), by :func:`~smtp_rtls.policy.tlsrpt.session_result`.  A
        plaintext retry after a failed handshake is left out: the failed
        handshake is what counts (§4.3).  Sessions with nothing to report
        (§4.3.4) are left out too.
        """
        results: list[TLSRPTResult] = []
        when = self.when if self.when is not None else next((s.when for s in self.sessions), None)
        if when is not None:
            for verdict in self.plan.skipped:
                result = session_result(self.plan, verdict, when=when)
                if result is not None:
                    results.append(result)
        for attempt in self.sessions:
            if attempt.plaintext_retry:
                continue
            result = session_result(
                self.plan,
                attempt.verdict,
                when=attempt.when,
                tls=attempt.tls is not None,
                receiving_ip=attempt.address,
                sending_mta_ip=attempt.local_address,
                receiving_mx_helo=attempt.server_name,
            )
            if result is not None:
                results.append(result)
        return tuple(results)

    def with_status(self, status: DeliveryStatus) -> tuple[RecipientResult, ...]:
        """The recipients whose outcome is ``status``."""
        return tuple(r for r in self.recipients if r.status is status)

    @property
    def delivered(self) -> tuple[RecipientResult, ...]:
        """The recipients a server accepted."""
        return self.with_status(DeliveryStatus.DELIVERED)

    @property
    def deferred(self) -> tuple[RecipientResult, ...]:
        """The recipients to try again later."""
        return self.with_status(DeliveryStatus.DEFERRED)

    @property
    def failed(self) -> tuple[RecipientResult, ...]:
        """The recipients that failed for good."""
        return self.with_status(DeliveryStatus.FAILED)


class _Broken(Exception):
    """The session cannot go on: closed, reset, timed out, 421, or garbage."""

    def __init__(self, detail: str, reply: Reply | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reply = reply


@attrs.frozen(slots=True)
class _Unreachable:
    """This address gave no usable session; try the host's next address."""

    detail: str


@attrs.frozen(slots=True)
class _Plaintext:
    """The handshake failed on a candidate that allows plaintext: reconnect without it."""

    verdict: Verdict


def _status_of(reply: Reply) -> DeliveryStatus:
    if reply.is_positive:
        return DeliveryStatus.DELIVERED
    return DeliveryStatus.DEFERRED if reply.is_transient else DeliveryStatus.FAILED


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _server_name(greeting: Reply, caps: Capabilities | None) -> str | None:
    """The name a server announced: its greeting's first word (RFC 5321 §4.2
    ``Greeting``: the domain or address literal), else its EHLO reply's."""
    words = greeting.lines[0].split() if greeting.lines else []
    name = words[0] if words else (caps.domain if caps is not None else "")
    # Printable and bounded: it goes into a report (RFC 8460 §4.4).
    return name[:255] if name and name.isprintable() else None


class Delivery:
    """Deliver one message to recipients of one domain under RFC 8689 (no I/O).

    ``mail_from`` is the reverse path (a :class:`~smtp_rtls.MailFrom` keeps
    its SIZE, BODY, SMTPUTF8, RET and ENVID parameters; its ``requiretls`` is
    the message's REQUIRETLS tag and is set on each session as the policy
    says).  ``recipients`` (``str`` or :class:`~smtp_rtls.RcptTo`, keeping
    NOTIFY and ORCPT) must all be in ``domain`` (default: the first one's).
    ``content`` is the message, CRLF or not, as ``bytes`` or as a zero-argument
    callable returning a fresh iterable of ``bytes`` chunks on every call (it
    is read once per session that sends it, and for the tag and the report).

    ``tag`` defaults to :func:`~smtp_rtls.policy.tags.message_tag` of the
    REQUIRETLS parameter (``requiretls``, else ``mail_from.requiretls``) and
    the content's header section.  ``config`` is the
    :class:`~smtp_rtls.policy.PolicyConfig`; ``port`` the SMTP port to connect
    to (default ``config.port``).  ``timeouts`` override
    :data:`DEFAULT_TIMEOUTS` entries.  ``bdat``: send the content with BDAT
    (RFC 3030) where CHUNKING is offered (message text made canonical first,
    as DATA would deliver it: CRLF line ends, a final CRLF); under TLS with
    PIPELINING, a message of at most
    :data:`~smtp_rtls.session.client.CHUNKING_MAX` octets then goes in the
    envelope's write, one round trip for MAIL, RCPT and content.  ``clock``
    gives the report's date (and ``now`` for an MTA-STS cache);
    ``arrival_date`` and ``dsn_options`` (``redact``,
    ``without_requiretls``) go to :func:`~smtp_rtls.policy.dsn.build_dsn`.
    """

    def __init__(
        self,
        mail_from: str | Address | MailFrom,
        recipients: Sequence[str | Address | RcptTo],
        content: Content,
        domain: str | None = None,
        *,
        local_hostname: str,
        requiretls: bool | None = None,
        tag: TLSTag | None = None,
        config: PolicyConfig | None = None,
        port: int | None = None,
        timeouts: Mapping[str, float] | None = None,
        bdat: bool = False,
        clock: Callable[[], datetime.datetime] = _utc_now,
        arrival_date: datetime.datetime | None = None,
        redact: bool = False,
        without_requiretls: Literal["redacted", "headers"] = "redacted",
    ) -> None:
        """Check the envelope; nothing is looked up or sent before :meth:`run`."""
        self.mail_from = mail_from if isinstance(mail_from, MailFrom) else MailFrom(mail_from)
        self.recipients = tuple(r if isinstance(r, RcptTo) else RcptTo(r) for r in recipients)
        if not self.recipients:
            raise ValueError("a delivery needs at least one recipient")
        domains = {r.forward_path.domain.lower().rstrip(".") for r in self.recipients}
        if domain is None:
            domain = self.recipients[0].forward_path.domain
        self.domain = domain.lower().rstrip(".")
        if not self.domain or domains != {self.domain}:
            raise ValueError(f"every recipient must be in {self.domain!r}, not {sorted(domains)}")
        self._source = content
        # RFC 5321 §4.1.1.1, §2.3.8: the EHLO argument, checked before any
        # connection (LocalProtocolError), not after a host's greeting
        Ehlo(local_hostname)
        self.local_hostname = local_hostname
        if requiretls is None:
            requiretls = self.mail_from.requiretls
        # RFC 8689 §4.1: the MAIL parameter wins over the header field.
        self.tag = tag if tag is not None else message_tag(requiretls, self._head())
        self.config = config if config is not None else PolicyConfig()
        self.port = port if port is not None else self.config.port
        self.timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
        self.bdat = bdat
        self.clock = clock
        self.arrival_date = arrival_date
        self.redact = redact
        self.without_requiretls: Literal["redacted", "headers"] = without_requiretls
        self._sessions: list[SessionAttempt] = []

    # -- content ---------------------------------------------------------------

    def chunks(self) -> Iterator[bytes]:
        """A fresh pass over the content, empty chunks left out."""
        source = [self._source] if isinstance(self._source, bytes) else self._source()
        return (bytes(c) for c in source if c)

    def _head(self) -> bytes:
        """Enough of the content to hold its whole header section."""
        buffer = bytearray()
        for chunk in self.chunks():
            buffer += chunk
            # RFC 5322 §2.1: an empty line ends the header section (an earlier
            # non-header line may end it too; header_section() finds that).
            if b"\n\r\n" in buffer or b"\n\n" in buffer:
                break
        return header_section(bytes(buffer))

    # -- the whole delivery ------------------------------------------------------

    def run(self) -> Step[DeliveryResult]:
        """Deliver: yields requests, is sent their results, returns the outcome."""
        started = self.clock()
        self._sessions = []
        now = started.timestamp() if self.config.sts_cache is not None else None
        plan = yield from plan_delivery(
            self.domain,
            self.tag,
            config=self.config,
            bounce=self.mail_from.reverse_path.is_null,
            now=now,
        )
        attempts: list[Verdict] = []
        for candidate in plan.candidates:
            outcome = yield from self._try_host(candidate)
            if isinstance(outcome, Verdict):
                attempts.append(outcome)
                continue
            verdict, results = outcome
            return self._result(plan, verdict, attempts, results, started)
        verdict = final_verdict(plan, attempts)
        status = (
            DeliveryStatus.FAILED if verdict.action is Action.FAIL else DeliveryStatus.DEFERRED
        )
        results = [
            RecipientResult(
                str(r.forward_path),
                status,
                verdict.reply,
                verdict.reason,
                host=verdict.host,
                policy=verdict.detail,
            )
            for r in self.recipients
        ]
        return self._result(plan, verdict, attempts, results, started)

    def _result(
        self,
        plan: DeliveryPlan,
        verdict: Verdict,
        attempts: Sequence[Verdict],
        results: Sequence[RecipientResult],
        started: datetime.datetime,
    ) -> DeliveryResult:
        return DeliveryResult(
            tuple(results),
            self._bounce(results),
            plan,
            verdict,
            tuple(attempts),
            tuple(self._sessions),
            started,
        )

    def _try_host(
        self, candidate: Candidate
    ) -> Step[Verdict | tuple[Verdict, list[RecipientResult]]]:
        """Each address of ``candidate`` until one gives a session that decided."""
        detail = "no address"
        for address in candidate.addresses:
            outcome = yield from self._session(candidate, address, starttls=True)
            if isinstance(outcome, _Plaintext):
                # RFC 7435 §3: opportunistic TLS falls back to cleartext; the
                # failed handshake left the connection unusable, so reconnect
                # and do not offer STARTTLS again.
                outcome = yield from self._session(candidate, address, starttls=False)
            if isinstance(outcome, _Plaintext):  # pragma: no cover - no STARTTLS the 2nd time
                return outcome.verdict
            if isinstance(outcome, _Unreachable):
                detail = f"{address}: {outcome.detail}"
                continue
            return outcome
        return connection_failed(candidate, detail)

    # -- one session -------------------------------------------------------------

    def _session(
        self, candidate: Candidate, address: str, *, starttls: bool
    ) -> Step[Verdict | _Unreachable | _Plaintext | tuple[Verdict, list[RecipientResult]]]:
        connected = yield Connect(candidate.host, address, self.port, self.timeouts["CONNECT"])
        if isinstance(connected, ConnectFailed):
            return _Unreachable(connected.detail)
        when = self.clock()
        local = connected.local_address if isinstance(connected, Connected) else None
        conn = ClientConnection(self.local_hostname)
        greeting: Reply | None = None

        def record(verdict: Verdict, tls: TLSInfo | None) -> None:
            # RFC 8460 §4.4: the session as a report describes it.
            name = _server_name(greeting, conn.capabilities) if greeting is not None else None
            self._sessions.append(
                SessionAttempt(
                    candidate.host,
                    address,
                    verdict,
                    when,
                    local,
                    name,
                    tls,
                    plaintext_retry=not starttls,
                )
            )

        try:
            greeting = yield from self._reply(conn)
            if not greeting.is_positive:
                # RFC 5321 §3.1: a 554 (or 4xx) greeting; only QUIT is allowed.
                yield from self._quit(conn)
                return _Unreachable(f"greeting {greeting.code} {greeting.text}")
            handshake = candidate.handshake
            # RFC 5321 §3.2: HELO offers no STARTTLS (RFC 3207 §4) and no
            # REQUIRETLS (RFC 8689 §4.2.1 step 3): only where neither is needed.
            caps = yield from self._hello(conn, helo=not handshake.required)
            if caps is None:
                yield from self._quit(conn)
                return _Unreachable("EHLO refused")
            tls: TLSInfo | None = None
            if starttls and "STARTTLS" in caps:
                yield Write(conn.send(StartTLSCommand()), self.timeouts["WRITE"])
                reply = yield from self._reply(conn)
                if reply.code == 220:
                    result = yield StartTLS(handshake, self.timeouts["TLS"])
                    if isinstance(result, TLSFailed):
                        # No QUIT: the TLS layer is broken and a plaintext QUIT
                        # now would be read as TLS garbage; closing is the QUIT.
                        yield Close()
                        verdict = handshake_failed(candidate, result.kind, result.detail)
                        # Recorded before any plaintext retry: RFC 8460 §4.3
                        # reports the failed handshake, not what came after.
                        record(verdict, None)
                        if not handshake.required:
                            return _Plaintext(verdict)
                        return verdict
                    assert isinstance(result, TLSInfo)
                    conn.start_tls(result)
                    tls = result
                    # RFC 3207 §4.2: forget what was learned; EHLO again.
                    helo = candidate.requiretls is not RequireTLSParam.REQUIRED
                    caps = yield from self._hello(conn, helo=helo)
                # A 454 (RFC 3207 §4) leaves a plaintext session; check() decides.
            verdict = check(candidate, tls, caps)
            if verdict.action is not Action.PROCEED:
                # RFC 8689 §4.2.1 ¶3: QUIT, then the next MX host.
                yield from self._quit(conn)
                record(verdict, tls)
                return verdict
            if conn.capabilities is None:
                yield from self._quit(conn)
                return _Unreachable("EHLO after STARTTLS refused")
        except _Broken as exc:
            yield Close()
            return _Unreachable(exc.detail)
        outcome = yield from self._transaction(conn, candidate, address, verdict)
        # A 530 to MAIL ends the session with a verdict of its own.
        record(outcome if isinstance(outcome, Verdict) else outcome[0], tls)
        return outcome

    def _reply_timeout(self, conn: ClientConnection) -> float:
        verb = conn.pending[0] if conn.pending else "REPLY"
        return self.timeouts.get(verb, self.timeouts["REPLY"])

    def _reply(self, conn: ClientConnection) -> Step[Reply]:
        """The next reply; raises _Broken when the session ended instead."""
        while True:  # bounded: the core limits a reply's lines and the unread backlog
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                raise _Broken(f"protocol error: {exc}") from None
            if isinstance(event, Reply):
                if event.code == 421:
                    # RFC 5321 §3.8: the server is closing the session.
                    raise _Broken(f"server closing: 421 {event.text}", event)
                return event
            if isinstance(event, ConnectionClosed):
                raise _Broken("connection closed by the server")
            assert event is NEED_DATA
            data = yield Read(self._reply_timeout(conn))
            if isinstance(data, Broken):
                raise _Broken(data.detail)
            assert isinstance(data, bytes)
            conn.receive_data(data)

    def _send(self, conn: ClientConnection, *events: Event) -> Step[None]:
        """Write ``events`` in one piece (RFC 2920: a pipelined group is one write)."""
        data = b"".join(conn.send(e) for e in events)
        result = yield Write(data, self.timeouts["WRITE"])
        if isinstance(result, Broken):
            raise _Broken(result.detail)

    def _hello(self, conn: ClientConnection, *, helo: bool) -> Step[Capabilities | None]:
        yield from self._send(conn, Ehlo(self.local_hostname))
        reply = yield from self._reply(conn)
        if reply.is_positive:
            return conn.capabilities
        # RFC 5321 §3.2: HELO only when EHLO was not recognised (500, 502).
        if not helo or reply.code not in (500, 502):
            return None
        yield from self._send(conn, Helo(self.local_hostname))
        reply = yield from self._reply(conn)
        return conn.capabilities if reply.is_positive else None

    def _quit(self, conn: ClientConnection) -> Step[None]:
        """QUIT, wait for its reply if the server gives one, and close."""
        try:
            yield from self._send(conn, Quit())
            yield from self._reply(conn)
        except (_Broken, LocalProtocolError):
            pass  # the session is over either way
        yield Close()

    # -- the mail transaction ----------------------------------------------------

    def _mail_for(self, caps: Capabilities, requiretls: bool) -> MailFrom:
        """MAIL FROM for this session: REQUIRETLS as the verdict says; DSN and
        SIZE parameters dropped where not offered (RFC 3461 §6.2, RFC 1870)."""
        mail = attrs.evolve(self.mail_from, requiretls=requiretls)
        if "DSN" not in caps:
            mail = attrs.evolve(mail, ret=None, envid=None)
        if "SIZE" not in caps:
            mail = attrs.evolve(mail, size=None)
        return mail

    def _rcpts_for(self, caps: Capabilities) -> list[RcptTo]:
        if "DSN" in caps:
            return list(self.recipients)
        return [attrs.evolve(r, notify=None, orcpt=None) for r in self.recipients]

    def _transaction(
        self, conn: ClientConnection, candidate: Candidate, address: str, verdict: Verdict
    ) -> Step[Verdict | tuple[Verdict, list[RecipientResult]]]:
        """MAIL, RCPT, DATA or BDAT, the content, QUIT; the replies decide per recipient."""
        tls = conn.tls
        caps = conn.capabilities
        assert caps is not None

        def result(rcpt: RcptTo, reply: Reply) -> RecipientResult:
            return RecipientResult(
                str(rcpt.forward_path),
                _status_of(reply),
                reply,
                host=candidate.host,
                address=address,
                tls_version=tls.version if tls else None,
                tls_cipher=tls.cipher if tls else None,
                security=candidate.security,
                policy=candidate.why,
                requiretls=verdict.requiretls,
            )

        mail = self._mail_for(caps, verdict.requiretls)
        rcpts = self._rcpts_for(caps)
        # RFC 3030 §3: BINARYMIME content can only go with BDAT.
        bdat = "CHUNKING" in caps and (self.bdat or mail.body == "BINARYMIME")
        text = mail.body != "BINARYMIME"
        # With PIPELINING too, a message of at most CHUNKING_MAX octets goes
        # with its envelope: MAIL, the RCPTs, BDAT LAST and the content in
        # one write (RFC 3030 §4.2, RFC 2920 §3.1), one round trip where
        # chunks after the RCPT replies take two.  Only under TLS: on a
        # plaintext session the server may still answer MAIL with 530
        # (RFC 3207 §4), and the content must not have crossed in clear to
        # a server that asked for TLS first.
        single = self._single_chunk(text) if bdat and conn.pipelining and tls is not None else None
        outcome: dict[int, Reply] = {}
        try:
            try:
                mail_reply, rcpt_replies, data_reply = yield from self._envelope(
                    conn, mail, rcpts, data=conn.pipelining and not bdat, content=single
                )
            except LocalProtocolError as exc:
                # The message needs what this server did not offer (SMTPUTF8,
                # 8BITMIME, ...): the command was refused before any byte
                # existed, and nothing was written.
                yield Close()
                reply = Reply(554, f"Cannot be sent to this server: {exc}", "5.6.3")
                return verdict, [result(r, reply) for r in self.recipients]
            if mail_reply.code == 530 and tls is None:
                # RFC 3207 §4: "530 Must issue a STARTTLS command first".
                # RFC 8689 §4.2.2 ¶2: even a TLS-optional message then bounces
                # once no host is left.
                yield from self._lone_dot(conn, data_reply)
                yield from self._quit(conn)
                return server_requires_starttls(candidate, mail_reply)
            for i in range(len(rcpts)):
                outcome[i] = mail_reply if not mail_reply.is_positive else rcpt_replies[i]
            accepted = [i for i in range(len(rcpts)) if outcome[i].is_positive]
            if single is not None:
                # The content went with the envelope; the server dropped it
                # if no recipient was accepted (RFC 3030 §2).
                assert data_reply is not None
                if not data_reply.is_positive:
                    yield from self._reset(conn)
                for i in accepted:
                    outcome[i] = data_reply
            elif accepted:
                end = yield from self._content(conn, data_reply, bdat=bdat, text=text)
                for i in accepted:
                    outcome[i] = end
            else:
                yield from self._lone_dot(conn, data_reply)
            yield from self._quit(conn)
        except _Broken as exc:
            yield Close()
            # RFC 5321 §6.1: a message whose end-of-data reply never came may
            # have been delivered; deferring risks a duplicate, never a loss.
            broken = exc.reply or Reply(451, f"Connection broken: {exc.detail}", "4.4.2")
            for i in range(len(self.recipients)):
                if i not in outcome or outcome[i].is_positive:
                    outcome[i] = broken
        return verdict, [result(r, outcome[i]) for i, r in enumerate(self.recipients)]

    def _envelope(
        self,
        conn: ClientConnection,
        mail: MailFrom,
        rcpts: Sequence[RcptTo],
        *,
        data: bool,
        content: bytes | None = None,
    ) -> Step[tuple[Reply, list[Reply], Reply | None]]:
        """MAIL and the RCPTs (and DATA when ``data``, or ``content`` as one
        BDAT LAST chunk): the replies to each, the last one DATA's or BDAT's.

        With PIPELINING the whole group is one write (RFC 2920 §3.1: DATA or
        BDAT may end it); without, one command at a time, stopping at a
        refused MAIL (``content`` then must be None).
        """
        if conn.pipelining:
            last: list[Event] = []
            if content is not None:
                last = [Bdat(len(content), last=True), MessageData(content)]
            elif data:
                last = [Data()]
            yield from self._send(conn, mail, *rcpts, *last)
            mail_reply = yield from self._reply(conn)
            replies = []
            for _ in rcpts:
                replies.append((yield from self._reply(conn)))
            data_reply = (yield from self._reply(conn)) if last else None
            return mail_reply, replies, data_reply
        assert content is None
        yield from self._send(conn, mail)
        mail_reply = yield from self._reply(conn)
        replies = []
        if mail_reply.is_positive:
            for rcpt in rcpts:
                yield from self._send(conn, rcpt)
                replies.append((yield from self._reply(conn)))
        return mail_reply, replies, None

    def _lone_dot(self, conn: ClientConnection, data_reply: Reply | None) -> Step[None]:
        """RFC 2920 §3.1: a 354 to a pipelined DATA with no recipient accepted
        gets "a single dot" and no content."""
        if data_reply is not None and data_reply.code == 354:
            yield from self._send(conn, EndOfMessage())
            yield from self._reply(conn)

    def _content(
        self, conn: ClientConnection, data_reply: Reply | None, *, bdat: bool, text: bool
    ) -> Step[Reply]:
        """Send the content; the reply that decides for the accepted recipients.
        ``text``: the body is message text (not BINARYMIME)."""
        if bdat:
            return (yield from self._chunks(conn, text))
        if data_reply is None:
            yield from self._send(conn, Data())
            data_reply = yield from self._reply(conn)
        if data_reply.code != 354:
            return data_reply
        # The core dot-stuffs and normalises line ends (RFC 5321 §4.5.2).
        for chunk in self.chunks():
            yield from self._send(conn, MessageData(chunk))
        yield from self._send(conn, EndOfMessage())
        return (yield from self._reply(conn))

    def _bdat_chunks(self, text: bool) -> Iterator[bytes]:
        """The content as BDAT carries it: message text made canonical
        (RFC 5321 §2.3.8, as DATA would deliver it), BINARYMIME as it is."""
        return canonical_chunks(self.chunks()) if text else self.chunks()

    def _single_chunk(self, text: bool) -> bytes | None:
        """The whole content as one BDAT chunk (message text made canonical,
        as DATA would deliver it), or None when empty or over CHUNKING_MAX."""
        body = bytearray()
        for chunk in self._bdat_chunks(text):
            body += chunk
            if len(body) > CHUNKING_MAX:
                return None
        return bytes(body) if body else None

    def _reset(self, conn: ClientConnection) -> Step[None]:
        """RFC 3030 §2: after a refused chunk, "A RSET command MUST be issued"."""
        yield from self._send(conn, Rset())
        yield from self._reply(conn)

    def _chunks(self, conn: ClientConnection, text: bool) -> Step[Reply]:
        """RFC 3030 §2: the content in BDAT chunks, the last one marked LAST;
        message text made canonical on the way, as DATA would deliver it."""
        chunks = self._bdat_chunks(text)
        chunk = next(chunks, None)
        if chunk is None:
            yield from self._send(conn, Bdat(0, last=True))
            return (yield from self._reply(conn))
        while True:  # bounded by the content
            following = next(chunks, None)
            yield from self._send(
                conn, Bdat(len(chunk), last=following is None), MessageData(chunk)
            )
            reply = yield from self._reply(conn)
            if not reply.is_positive:
                # RFC 3030 §2: no more chunks, and RSET
                yield from self._reset(conn)
                return reply
            if following is None:
                return reply
            chunk = following

    # -- the report --------------------------------------------------------------

    def _bounce(self, results: Sequence[RecipientResult]) -> Bounce | None:
        """RFC 3464 report for the failed recipients, as RFC 8689 §5 wants it."""
        failed = [
            (rcpt, res)
            for rcpt, res in zip(self.recipients, results, strict=True)
            if res.status is DeliveryStatus.FAILED
        ]
        if not failed:
            return None
        now = self.clock()
        statuses = [
            RecipientStatus(
                res.recipient,
                res.enhanced or EnhancedStatus(5, 0, 0),
                "failed",
                original_recipient=";".join(rcpt.orcpt) if rcpt.orcpt else None,
                # Remote-MTA names the server only when its reply decided.
                remote_mta=res.host if res.reason is None else None,
                diagnostic=res.reply,
                last_attempt=now,
                notify=rcpt.notify,
            )
            for rcpt, res in failed
        ]
        return build_dsn(
            reporting_mta=self.local_hostname,
            original_reverse_path=str(self.mail_from.reverse_path),
            original=b"".join(self.chunks()),
            tag=self.tag,
            recipients=statuses,
            date=now,
            ret=self.mail_from.ret,
            envid=self.mail_from.envid,
            arrival_date=self.arrival_date,
            redact=self.redact,
            without_requiretls=self.without_requiretls,
        )
