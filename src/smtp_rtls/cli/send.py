"""``smtp-rtls send``: submit one message to a server, or deliver it under the policy.

Two modes, over the library's two ways to send (docs/sending.rst):

* ``--server HOST:PORT``: submission through ``connect()`` of the chosen
  adapter: STARTTLS when offered (or ``--implicit-tls``), the certificate
  verified against ``--cafile`` or the system store, ``AUTH`` with
  ``--auth``, then one transaction; ``--requiretls`` puts REQUIRETLS on MAIL
  FROM, which the core refuses unless the server offered it after TLS.
* no ``--server``: ``deliver()`` once per recipient domain, to its MX hosts,
  under the RFC 8689 policy (DNSSEC-validated MX and DANE with
  ``--trust-ad``, MTA-STS); a non-delivery report is shown, never sent.
  ``--tlsrpt-dir DIR`` records each session's SMTP TLS Reporting result
  (RFC 8460) there, for ``smtp-rtls tlsrpt report``.

Each recipient's outcome is printed (or one JSON document, ``--json``), and
the exit status says what the caller should do: 0 delivered, 75 try again
later, 69 failed for good, 64 bad arguments (sysexits.h, as sendmail does).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Generator, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

import attrs

from .._address import Address
from .._errors import LocalProtocolError, ProtocolError, RequireTLSError
from .._events import MailFrom, RcptTo
from .._reply import Reply
from .._tls import TLSInfo
from ..policy.dsn import Bounce
from ..policy.tags import TagConflictError, set_tls_required_no
from ..session.client import SendResult
from ..session.delivery import DEFAULT_TIMEOUTS, DeliveryResult, DeliveryStatus, RecipientResult
from ..session.requests import Read, Write
from ._common import (
    EX_CANTCREAT,
    EX_NOINPUT,
    EX_OK,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    CommandError,
    Progress,
    env_default,
    host_port,
    port_number,
    positive_seconds,
    with_progress,
)

__all__ = ["add_parser", "run"]

_T = TypeVar("_T")

#: How long ``connect()`` waits for the TCP connection when no ``--timeout``
#: is given (every reply keeps RFC 5321 §4.5.3.2's own wait).
_CONNECT_TIMEOUT = 30.0


# -- the command line ------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """Register ``send``."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "send",
        help="send one message: submit it to a server, or deliver it to the MX hosts",
        description=(
            "Send the message read from standard input (or --message FILE). With --server, "
            "submit it there (STARTTLS when offered); without, deliver it to each recipient "
            "domain's MX hosts under the RFC 8689 policy (MTA-STS, DANE)."
        ),
    )
    envelope = parser.add_argument_group("the message")
    envelope.add_argument(
        "--from",
        dest="mail_from",
        required=True,
        metavar="ADDR",
        help="the reverse path (MAIL FROM); '' or '<>' for the null path",
    )
    envelope.add_argument(
        "--to",
        dest="recipients",
        action="append",
        required=True,
        metavar="ADDR",
        help="a recipient (RCPT TO); repeat for more",
    )
    envelope.add_argument(
        "--message", metavar="FILE", help="read the message from FILE instead of standard input"
    )
    tags = envelope.add_mutually_exclusive_group()
    tags.add_argument(
        "--requiretls",
        action="store_true",
        help="send with MAIL FROM ... REQUIRETLS (RFC 8689): TLS on every hop",
    )
    tags.add_argument(
        "--tls-optional",
        action="store_true",
        help="add a 'TLS-Required: No' header field (RFC 8689 §3)",
    )

    submit = parser.add_argument_group("submission (--server)")
    submit.add_argument(
        "--server",
        type=host_port(587),
        metavar="HOST:PORT",
        help="submit through this server (port 587 if left out)",
    )
    submit.add_argument(
        "--server-name",
        metavar="NAME",
        help="the name the server's certificate must hold, and the SNI "
        "(default: the --server host), for a server reached by address",
    )
    submit.add_argument(
        "--implicit-tls",
        action="store_true",
        help="TLS from the first byte (RFC 8314, port 465) instead of STARTTLS",
    )
    submit.add_argument(
        "--auth",
        metavar="USER",
        help="AUTH as USER; the password comes from SMTP_RTLS_PASSWORD or a prompt",
    )

    mx = parser.add_argument_group("delivery to the MX hosts (no --server)")
    mx.add_argument(
        "--nameserver",
        type=host_port(53),
        metavar="HOST:PORT",
        help="the recursive resolver to ask (default: SMTP_RTLS_NAMESERVER, else the system's)",
    )
    mx.add_argument(
        "--trust-ad",
        action="store_true",
        help="trust the resolver's AD bit (a local validating resolver): "
        "enables DANE and DNSSEC-validated MX",
    )
    mx.add_argument(
        "--mx-port",
        type=port_number,
        metavar="N",
        help="contact the MX hosts on port N instead of 25",
    )
    mx.add_argument(
        "--mta-sts-port",
        type=port_number,
        metavar="N",
        help="fetch MTA-STS policies on port N instead of 443",
    )
    mx.add_argument(
        "--tlsrpt-dir",
        metavar="DIR",
        help="record each session's SMTP TLS Reporting result (RFC 8460) in DIR, "
        "for smtp-rtls tlsrpt report",
    )

    common = parser.add_argument_group("both modes")
    common.add_argument(
        "--io",
        choices=("threads", "asyncio", "trio"),
        default="threads",
        help="the I/O adapter (default: threads)",
    )
    common.add_argument(
        "--cafile",
        metavar="FILE",
        help="trust these CA certificates instead of the system's (default: SMTP_RTLS_CAFILE)",
    )
    common.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="cap every wait for a server (default: RFC 5321's)",
    )
    common.add_argument(
        "--json", action="store_true", help="print one JSON document instead of lines"
    )
    common.add_argument(
        "--verbose",
        action="store_true",
        help="show the SMTP transcript (--server) or the hosts tried, on standard error",
    )
    parser.set_defaults(run=run)


# -- what the command works on ---------------------------------------------------------


@attrs.frozen
class Job:
    """One message to send, checked: the envelope, the content and the settings."""

    mail_from: MailFrom
    recipients: tuple[RcptTo, ...]
    content: bytes
    local_hostname: str
    cafile: str | None
    timeout: float | None
    verbose: bool


@attrs.frozen
class Outcome:
    """What became of every recipient, and the reports that would go back."""

    recipients: tuple[RecipientResult, ...]
    #: (domain, report) for each domain whose delivery produced a bounce.
    bounces: tuple[tuple[str, Bounce], ...] = ()

    @property
    def exit_status(self) -> int:
        """69 when any recipient failed for good, else 75 when any was
        deferred, else 0: a failure needs the user; a deferral a retry."""
        statuses = {r.status for r in self.recipients}
        if DeliveryStatus.FAILED in statuses:
            return EX_UNAVAILABLE
        if DeliveryStatus.DEFERRED in statuses:
            return EX_TEMPFAIL
        return EX_OK


def run(args: argparse.Namespace) -> int:
    """Send the message; print each recipient's outcome; return the exit status."""
    _check_options(args)
    job = _job(args)
    outcome = _submit(args, job) if args.server is not None else _deliver(args, job)
    if args.json:
        print(json.dumps(_document(args, job, outcome), indent=2))
    else:
        _print_lines(outcome, sys.stdout)
    return outcome.exit_status


def _check_options(args: argparse.Namespace) -> None:
    """Options that make sense in one mode only are refused in the other."""
    if args.server is None:
        for flag, value in (("--implicit-tls", args.implicit_tls), ("--auth", args.auth)):
            if value:
                raise CommandError(f"{flag} needs --server (it is about submission)")
    else:
        for flag, value in (
            ("--nameserver", args.nameserver),
            ("--trust-ad", args.trust_ad),
            ("--mx-port", args.mx_port),
            ("--mta-sts-port", args.mta_sts_port),
            ("--tlsrpt-dir", args.tlsrpt_dir),
        ):
            if value:
                raise CommandError(f"{flag} is for delivery to the MX hosts: drop --server")


def _job(args: argparse.Namespace) -> Job:
    """Parse the envelope and read the content; bad input is a CommandError."""
    try:
        mail_from = MailFrom(args.mail_from, requiretls=args.requiretls)
    except LocalProtocolError as exc:
        raise CommandError(f"--from {args.mail_from!r}: {exc}") from None
    recipients = []
    for text in args.recipients:
        try:
            rcpt = RcptTo(text)
        except LocalProtocolError as exc:
            raise CommandError(f"--to {text!r}: {exc}") from None
        if args.server is None and not rcpt.forward_path.domain:
            raise CommandError(f"--to {text!r}: no domain to deliver to")
        recipients.append(rcpt)
    content = _read_message(args.message)
    if args.tls_optional:
        try:
            content = set_tls_required_no(content)
        except (ValueError, TagConflictError) as exc:
            raise CommandError(f"--tls-optional: {exc}", EX_USAGE) from None
    cafile = args.cafile if args.cafile is not None else env_default("CAFILE")
    return Job(
        mail_from,
        tuple(recipients),
        content,
        socket.getfqdn(),
        cafile,
        args.timeout,
        args.verbose,
    )


def _read_message(path: str | None) -> bytes:
    """The message, its line ends made CRLF (RFC 5321 §2.3.8) so that the
    header analysis of the tag sees what the wire will carry."""
    try:
        if path is None:
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as file:
                data = file.read()
    except OSError as exc:
        where = "standard input" if path is None else path
        raise CommandError(
            f"cannot read the message from {where}: {exc.strerror or exc}", EX_NOINPUT
        ) from None
    return re.sub(rb"\r?\n", b"\r\n", data)


def _tls_context(cafile: str | None) -> ssl.SSLContext:
    """The verifying client context (PKIX, host name checked)."""
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CommandError(f"cannot use the CA file {cafile}: {reason}", EX_NOINPUT) from None


# -- submission: --server --------------------------------------------------------------


def _submit(args: argparse.Namespace, job: Job) -> Outcome:
    """Submit through ``--server`` with the chosen adapter."""
    host, port = args.server
    context = _tls_context(job.cafile)
    # Asked before connecting, so that the server does not time out while
    # the user types; never echoed, never printed.
    password = _password(args.auth) if args.auth else None
    submission = _Submission(args, job, host, port, context, password)
    try:
        if args.io == "threads":
            return submission.run_sync()
        if args.io == "asyncio":
            from ..io import asyncio as aio

            return asyncio.run(submission.run_async(aio.connect))
        trio, trio_io = _import_trio()
        return trio.run(submission.run_async, trio_io.connect)  # type: ignore[no-any-return]
    except CommandError:
        raise
    except Exception as exc:  # trio's exception groups are Exceptions too
        raise _failure(exc, host, port, job) from None


def _import_trio() -> tuple[Any, Any]:
    try:
        import trio

        from ..io import trio as trio_io
    except ImportError:
        raise CommandError(
            "--io trio needs trio: pip install 'smtp_rtls[trio]'", EX_UNAVAILABLE
        ) from None
    return trio, trio_io


def _password(user: str) -> str:
    password = env_default("PASSWORD")
    if password is not None:
        return password
    try:
        # getpass falls back to standard input without a terminal, and
        # standard input may be the message: refuse that instead.
        with open("/dev/tty", "rb"):
            pass
    except OSError:
        raise CommandError(
            "--auth: no terminal to ask the password on; set SMTP_RTLS_PASSWORD"
        ) from None
    return getpass.getpass(f"password for {user}: ")


class _Submission:
    """One submission, written once for the blocking client and once for
    the asynchronous ones (asyncio and trio share ``AsyncClientBase``)."""

    def __init__(
        self,
        args: argparse.Namespace,
        job: Job,
        host: str,
        port: int,
        context: ssl.SSLContext,
        password: str | None,
    ) -> None:
        self.args = args
        self.job = job
        self.host = host
        self.port = port
        self.context = context
        self.password = password
        self.transcript = _Transcript(sys.stderr) if job.verbose else None

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "local_hostname": self.job.local_hostname,
            "tls_context": self.context,
            "implicit_tls": self.args.implicit_tls,
            "timeout": self.job.timeout,
            "server_hostname": self.args.server_name,
        }

    def run_sync(self) -> Outcome:
        from ..io import sync

        client = sync.connect(self.host, self.port, **self._connect_kwargs())
        with client:
            self._watch(client, lambda run: lambda steps: run(self._wrap(steps)))
            if client.conn.tls is None and self._want_starttls(client.conn):
                self._started(client.starttls(self.context))
            self._before_mail(client.conn)
            if self.password is not None:
                self._check_auth(client.login(self.args.auth, self.password))
            result = client.send(
                self.job.mail_from,
                list(self.job.recipients),
                with_progress(self.job.content, Progress())(),
                requiretls=self.args.requiretls,
            )
            client.quit()
        return self._outcome(result, client.conn.tls)

    async def run_async(self, connect: Callable[..., Awaitable[Any]]) -> Outcome:
        client = await connect(self.host, self.port, **self._connect_kwargs())
        async with client:

            def wrap(run: Any) -> Any:
                async def traced(steps: Any) -> Any:
                    return await run(self._wrap(steps))

                return traced

            self._watch(client, wrap)
            if client.conn.tls is None and self._want_starttls(client.conn):
                self._started(await client.starttls(self.context))
            self._before_mail(client.conn)
            if self.password is not None:
                self._check_auth(await client.login(self.args.auth, self.password))
            result = await client.send(
                self.job.mail_from,
                list(self.job.recipients),
                with_progress(self.job.content, Progress())(),
                requiretls=self.args.requiretls,
            )
            await client.quit()
        return self._outcome(result, client.conn.tls)

    # -- the steps both share ---------------------------------------------------------

    def _watch(self, client: Any, wrap: Callable[[Any], Any]) -> None:
        """With --verbose, show what connect() already did, then every later
        byte: each client operation is a generator of Write/Read requests
        that ``_run`` answers, so wrapping ``_run`` sees the whole wire."""
        if self.transcript is None:
            return
        if client.conn.tls is not None:
            self._started(client.conn.tls)
        self.transcript.replayed(client.greeting, client.conn)
        client._run = wrap(client._run)

    def _wrap(self, steps: Generator[Any, Any, _T]) -> Generator[Any, Any, _T]:
        assert self.transcript is not None
        return self.transcript.wrap(steps)

    def _started(self, tls: TLSInfo) -> None:
        if self.transcript is not None:
            self.transcript.note(
                f"TLS {tls.version} {tls.cipher}, certificate verified for "
                f"{tls.verified_name or self.host}"
            )

    def _want_starttls(self, conn: Any) -> bool:
        caps = conn.capabilities
        return caps is not None and "STARTTLS" in caps

    def _before_mail(self, conn: Any) -> None:
        """Refuse, before any password or envelope is written, what this
        session could only do in cleartext."""
        if conn.tls is not None:
            return
        where = f"{self.host}:{self.port}"
        if self.args.requiretls:
            raise CommandError(
                f"5.7.10 {where} offers no STARTTLS, so the message cannot be sent with "
                "REQUIRETLS (RFC 8689 §4.2.1); use --implicit-tls if it listens for TLS, "
                "or a server that offers STARTTLS",
                EX_UNAVAILABLE,
            )
        if self.password is not None:
            raise CommandError(
                f"{where} offers no STARTTLS: the password will not be sent in cleartext; "
                "use --implicit-tls (port 465) or a server that offers STARTTLS",
                EX_UNAVAILABLE,
            )

    def _check_auth(self, reply: Reply) -> None:
        if reply.code == 235:
            return
        status = EX_TEMPFAIL if reply.code // 100 == 4 else EX_UNAVAILABLE
        raise CommandError(
            f"authentication as {self.args.auth} refused: {_reply_text(reply)}", status
        )

    def _outcome(self, result: SendResult, tls: TLSInfo | None) -> Outcome:
        """One RecipientResult per recipient, as deliver() reports them, so
        that both modes print (and --json) the same way."""
        replies = [reply for _, reply in result.recipients]
        out = []
        for i, rcpt in enumerate(self.job.recipients):
            reply: Reply | None
            if not result.mail.is_positive:
                reply = result.mail
            elif i < len(replies) and not replies[i].is_positive:
                reply = replies[i]
            else:
                # None: DATA was refused, and SendResult does not keep that
                # reply; the message was not sent, so it is still the sender's.
                reply = result.data
            out.append(
                RecipientResult(
                    str(rcpt.forward_path),
                    _status_of(reply),
                    reply,
                    host=self.host,
                    tls_version=tls.version if tls else None,
                    tls_cipher=tls.cipher if tls else None,
                    policy="submission",
                    requiretls=self.args.requiretls,
                )
            )
        return Outcome(tuple(out))


def _status_of(reply: Reply | None) -> DeliveryStatus:
    if reply is None or reply.code // 100 == 4:
        return DeliveryStatus.DEFERRED
    if reply.is_positive:
        return DeliveryStatus.DELIVERED
    return DeliveryStatus.FAILED


def _failure(exc: BaseException, host: str, port: int, job: Job) -> BaseException:
    """The one-line CommandError for what went wrong with the server, or
    ``exc`` itself when it is not about the server (a bug: main() says so)."""
    exc = _root(exc)
    where = f"{host}:{port}"
    if isinstance(exc, RequireTLSError):
        code = exc.reply.enhanced if exc.reply is not None else "5.7.30"
        return CommandError(
            f"{code} {where} does not offer REQUIRETLS after STARTTLS (RFC 8689 §4.2.1), "
            "so the message was not sent; submit it through a server that supports "
            "REQUIRETLS, or send it without --requiretls",
            EX_UNAVAILABLE,
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CommandError(_certificate_advice(exc, host, job.cafile), EX_UNAVAILABLE)
    if isinstance(exc, ssl.SSLError):
        return CommandError(
            f"TLS handshake with {where} failed: {exc.reason or exc}; check that the port "
            "speaks TLS the way you asked (--implicit-tls for 465, STARTTLS otherwise)",
            EX_UNAVAILABLE,
        )
    if isinstance(exc, socket.gaierror):
        return CommandError(f"cannot find {host}: {exc.strerror}", EX_UNAVAILABLE)
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "TooSlowError":
        return CommandError(f"{where} did not answer in time", EX_TEMPFAIL)
    if isinstance(exc, ConnectionRefusedError):
        return CommandError(f"cannot connect to {where}: connection refused", EX_TEMPFAIL)
    if isinstance(exc, ConnectionError) and str(exc).startswith(("greeting ", "STARTTLS ")):
        # connect() and starttls() report a refusal with the server's reply
        temporary = re.match(r"(greeting|STARTTLS refused:) 4", str(exc)) is not None
        return CommandError(
            f"{where} refused: {exc}", EX_TEMPFAIL if temporary else EX_UNAVAILABLE
        )
    if isinstance(exc, OSError):
        return CommandError(f"connection to {where} failed: {exc.strerror or exc}", EX_TEMPFAIL)
    if isinstance(exc, LocalProtocolError):
        # the core refused a command the session does not allow (AUTH not
        # offered, SMTPUTF8 not offered...) before writing it
        return CommandError(f"cannot send through {where}: {exc}", EX_UNAVAILABLE)
    if isinstance(exc, ProtocolError):
        return CommandError(f"{where} broke the SMTP protocol: {exc}", EX_UNAVAILABLE)
    return exc


def _root(exc: BaseException) -> BaseException:
    """The error that matters: trio wraps it (BrokenResourceError from an
    ssl error, exception groups from nurseries)."""
    while True:
        if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        elif type(exc).__module__.startswith("trio") and exc.__cause__ is not None:
            exc = exc.__cause__
        else:
            return exc


def _certificate_advice(exc: ssl.SSLCertVerificationError, host: str, cafile: str | None) -> str:
    """Which check failed, and what the user can do about it."""
    message = exc.verify_message or str(exc)
    code = exc.verify_code
    if code == 62 or "mismatch" in message.lower():  # X509_V_ERR_HOSTNAME_MISMATCH
        advice = f"connect by a name the certificate holds (--server NAME:PORT), not {host!r}"
    elif code in (9, 10):  # not yet valid, expired
        advice = "the server's certificate must be renewed (or the clocks checked)"
    elif code in (2, 18, 19, 20, 21):  # no issuer, self-signed, untrusted chain
        store = f"{cafile}" if cafile else "the system store"
        advice = f"its issuer is not in {store}: pass the issuing CA with --cafile FILE"
    else:
        advice = "check the server's certificate chain, or pass its CA with --cafile FILE"
    return f"the certificate of {host} failed verification ({message}): {advice}"


class _Transcript:
    """The SMTP transcript on standard error: ``C:`` what we sent, ``S:`` what
    the server said.  AUTH arguments and SASL responses are redacted; the
    message content is summarised by its size."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.in_auth = False  # between AUTH and its final (non-334) reply
        self.content: int | None = None  # octets of content written, after a 354
        self.verb = ""  # the last command written, to place the TLS handshake
        self._partial = b""

    def note(self, text: str) -> None:
        print(f"-- {text}", file=self.out)

    def replayed(self, greeting: Reply | None, conn: Any) -> None:
        """The greeting and the first EHLO, done inside connect() before the
        transcript could watch: rebuilt from what the core parsed."""
        if greeting is not None:
            self._lines("S", greeting.format())
        print(f"C: EHLO {conn.hostname}", file=self.out)
        if conn.capabilities is not None:
            self._lines("S", conn.capabilities.to_reply().format())

    def _lines(self, who: str, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            print(f"{who}: {line}", file=self.out)

    def wrap(self, steps: Generator[Any, Any, _T]) -> Generator[Any, Any, _T]:
        """``steps``, with every write and every read shown."""
        result: Any = None
        while True:
            try:
                request = steps.send(result)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if isinstance(request, Write):
                self.sent(request.data)
            result = yield request
            if isinstance(request, Read) and isinstance(result, bytes):
                self.received(result)

    def sent(self, data: bytes) -> None:
        if self.content is not None:
            if data == b".\r\n":
                print(f"C: [{self.content} octets of content]\nC: .", file=self.out)
                self.content = None
            else:
                self.content += len(data)
            return
        if data[:5].upper() == b"BDAT ":
            head, _, chunk = data.partition(b"\r\n")
            self._lines("C", head)
            print(f"C: [{len(chunk)} octets of content]", file=self.out)
            return
        for line in data.decode("utf-8", "replace").split("\r\n"):
            if not line:
                continue
            words = line.split()
            if words and words[0].upper() == "AUTH":
                self.in_auth = True
                if len(words) > 2:  # an initial response (RFC 4954 §4)
                    line = f"{words[0]} {words[1]} [redacted]"
            elif self.in_auth:
                line = "[redacted]"
            self.verb = words[0].upper() if words else ""
            print(f"C: {line}", file=self.out)

    def received(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\r\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            print(f"S: {line}", file=self.out)
            if line[3:4] != "-":  # the last line of a reply
                self.in_auth = self.in_auth and line.startswith("334")
                if line.startswith("354"):
                    self.content = 0
                if line.startswith("220") and self.verb == "STARTTLS":
                    # starttls() sends EHLO inside TLS before returning
                    self.note("TLS handshake; what follows is encrypted")


# -- delivery to the MX hosts ----------------------------------------------------------


def _deliver(args: argparse.Namespace, job: Job) -> Outcome:
    """deliver() once per recipient domain, with the chosen adapter."""
    # pieces that show how much was handed over, on a terminal (each host
    # tried reads the content again)
    source = with_progress(job.content, Progress())
    groups = _by_domain(job.recipients)
    nameserver = _nameserver(args)
    options: dict[str, Any] = {
        "local_hostname": job.local_hostname,
        "cafile": job.cafile,
        "port": args.mx_port,
        # None: the message's own tag (REQUIRETLS on MAIL FROM, or the
        # TLS-Required header field) decides.
        "requiretls": None,
    }
    if job.timeout is not None:
        options["timeouts"] = {k: min(v, job.timeout) for k, v in DEFAULT_TIMEOUTS.items()}
    fulfiller_options: dict[str, Any] = {
        "port": nameserver[1],
        "trusted": args.trust_ad,
        "https_port": args.mta_sts_port or 443,
        "cafile": job.cafile,
    }
    _tls_context(job.cafile)  # an unreadable CA file is said once, up front
    store = _tlsrpt_store(args.tlsrpt_dir) if args.tlsrpt_dir else None
    results: list[tuple[str, DeliveryResult]] = []
    if args.io == "threads":
        from ..io import sync
        from ..io.fulfil import SyncFulfiller

        fulfil = SyncFulfiller([nameserver[0]], **fulfiller_options)
        for domain, rcpts in groups.items():
            results.append(
                (
                    domain,
                    sync.deliver(job.mail_from, rcpts, source, domain, fulfil=fulfil, **options),
                )
            )
    else:
        from ..io._fulfil_async import AsyncFulfiller

        afulfil = AsyncFulfiller([nameserver[0]], **fulfiller_options)

        async def all_domains(deliver: Callable[..., Awaitable[DeliveryResult]]) -> None:
            # one domain after the other: the output follows the order given
            for domain, rcpts in groups.items():
                results.append(
                    (
                        domain,
                        await deliver(
                            job.mail_from, rcpts, source, domain, fulfil=afulfil, **options
                        ),
                    )
                )

        if args.io == "asyncio":
            from ..io import asyncio as aio

            asyncio.run(all_domains(aio.deliver))
        else:
            trio, trio_io = _import_trio()
            trio.run(all_domains, trio_io.deliver)
    if store is not None:
        for _, result in results:
            store.record_delivery(result)
    if job.verbose:
        for domain, result in results:
            _print_attempts(domain, result, sys.stderr)
    return Outcome(
        tuple(r for _, result in results for r in result.recipients),
        tuple((domain, result.bounce) for domain, result in results if result.bounce),
    )


def _tlsrpt_store(path: str) -> Any:
    """The TLSRPT state directory, made and checked writable before anything is sent."""
    from ..io.tlsrpt import TLSRPTStore

    folder = Path(path)
    probe = folder / f".probe.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CommandError(
            f"--tlsrpt-dir: cannot write to {path}: {exc.strerror or exc}", EX_CANTCREAT
        ) from None
    return TLSRPTStore(folder)


def _by_domain(recipients: Sequence[RcptTo]) -> dict[str, list[RcptTo]]:
    """Recipients grouped by domain, in the order first seen (domains are
    case-insensitive, RFC 5321 §2.4)."""
    groups: dict[str, list[RcptTo]] = {}
    for rcpt in recipients:
        address = rcpt.forward_path
        assert isinstance(address, Address)
        groups.setdefault(address.domain.lower(), []).append(rcpt)
    return groups


def _nameserver(args: argparse.Namespace) -> tuple[str, int]:
    """--nameserver, else SMTP_RTLS_NAMESERVER, else the system's first resolver."""
    if args.nameserver is not None:
        return args.nameserver  # type: ignore[no-any-return]
    text = env_default("NAMESERVER")
    if text:
        try:
            return host_port(53)(text)
        except argparse.ArgumentTypeError as exc:
            raise CommandError(f"SMTP_RTLS_NAMESERVER: {exc}") from None
    import dns.resolver

    try:
        nameservers = dns.resolver.Resolver().nameservers
    except dns.resolver.NoResolverConfiguration:
        nameservers = []
    if not nameservers:
        raise CommandError(
            "no name server configured: pass --nameserver HOST:PORT", EX_UNAVAILABLE
        )
    return str(nameservers[0]), 53


def _print_attempts(domain: str, result: DeliveryResult, out: TextIO) -> None:
    """--verbose without --server: the hosts tried before the last, and why they were left."""
    for verdict in result.attempts:
        why = verdict.reason.value if verdict.reason else verdict.action.name.lower()
        detail = f" ({verdict.detail})" if verdict.detail else ""
        print(f"-- {domain}: {verdict.host or '-'}: {why}{detail}", file=out)
    final = result.verdict
    reason = final.reason.value if final.reason else final.action.name.lower()
    print(f"-- {domain}: {final.host or '-'}: {reason}", file=out)


# -- the report ------------------------------------------------------------------------


def _reply_text(reply: Reply) -> str:
    return reply.format().decode("utf-8", "replace").replace("\r\n", " ").strip()


def _print_lines(outcome: Outcome, out: TextIO) -> None:
    """One line per recipient; one per report that would be sent back."""
    for r in outcome.recipients:
        enhanced = str(r.enhanced) if r.enhanced is not None else "-"
        host = r.host or "-"
        if r.address:
            host += f" [{r.address}]"
        why = _reply_text(r.reply) if r.reply is not None else "DATA refused"
        if r.reason is not None:
            why += f" ({r.reason.value})"
        print(
            f"{r.recipient}: {r.status.value} {enhanced} host {host} "
            f"TLS {r.tls_version or 'none'} REQUIRETLS {'yes' if r.requiretls else 'no'}: {why}",
            file=out,
        )
    for domain, bounce in outcome.bounces:
        print(
            f"bounce ({domain}): a non-delivery report would go to "
            f"<{bounce.forward_path}> (not sent)",
            file=out,
        )


def _reply_json(reply: Reply | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {
        "code": reply.code,
        "enhanced": str(reply.enhanced) if reply.enhanced is not None else None,
        "text": reply.text,
    }


def _document(args: argparse.Namespace, job: Job, outcome: Outcome) -> dict[str, Any]:
    """The --json document (its schema is in docs/cli-send.rst)."""
    server = f"{args.server[0]}:{args.server[1]}" if args.server else None
    return {
        "mode": "server" if args.server else "mx",
        "server": server,
        "from": str(job.mail_from.reverse_path),
        "requiretls": args.requiretls,
        "tls_optional": args.tls_optional,
        "exit_status": outcome.exit_status,
        "recipients": [
            {
                "recipient": r.recipient,
                "status": r.status.value,
                "enhanced": str(r.enhanced) if r.enhanced is not None else None,
                "reply": _reply_json(r.reply),
                "reason": r.reason.name if r.reason is not None else None,
                "host": r.host,
                "address": r.address,
                "tls_version": r.tls_version,
                "tls_cipher": r.tls_cipher,
                "security": r.security.value if r.security is not None else None,
                "policy": r.policy,
                "requiretls": r.requiretls,
            }
            for r in outcome.recipients
        ],
        "bounces": [
            {
                "domain": domain,
                "to": bounce.forward_path,
                "tag": bounce.tag.name,
                "text": bounce.message.decode("utf-8", "replace"),
                "redacted_text": (
                    bounce.redacted.decode("utf-8", "replace")
                    if bounce.redacted is not None
                    else None
                ),
            }
            for domain, bounce in outcome.bounces
        ],
    }
