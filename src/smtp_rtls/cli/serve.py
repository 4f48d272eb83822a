"""``smtp-rtls serve``: a receiving SMTP (or LMTP) server on the command line.

Everything a user can get wrong is checked in the parent process before any
socket is bound or any worker started (certificate, key, Maildir, state
directory, password file, option combinations), and reported in one line
with a ``sysexits.h`` status; see ``docs/cli-serve.rst`` for the statuses.

Three layers, top to bottom:

* :func:`run` prepares a :class:`_Setup` (handler, TLS context, settings);
* :func:`_serve_here` runs it in this process on the chosen adapter until
  SIGINT or SIGTERM, then shuts down with a deadline;
* with ``--workers N``, :func:`_supervise` forks N processes that each run
  :func:`_serve_here` on the same port (``SO_REUSEPORT``), reports ready once
  all are, restarts one that dies, and stops them all on a signal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import hmac
import ipaddress
import logging
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import attrs

from .._config import ServerConfig
from .._errors import ProtocolError
from .._events import Auth, AuthResponse, Ehlo, Expn, Helo, MailFrom, RcptTo, Vrfy
from .._reply import Reply
from .._server import ServerConnection
from ..handlers import FileSpool, Maildir, PasswordAuth, Relay, Sink
from ..io.tls import server_context
from ..policy.tags import TLSTag
from ..session.server import Handler, MessageWriter, SessionEnvelope, SessionInfo
from ._common import (
    EX_CANTCREAT,
    EX_DATAERR,
    EX_NOINPUT,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    CommandError,
    host_port,
)

__all__ = ["add_parser", "run"]

DEFAULT_PORT = 2525
#: Seconds the sessions in flight get to finish after SIGINT / SIGTERM.
SHUTDOWN_DEADLINE = 30.0
#: Seconds a worker gets to bind its sockets and say it is ready.
READY_TIMEOUT = 60.0
#: More restarts than this in a minute means the workers cannot run: stop.
MAX_RESTARTS_PER_MINUTE = 5

log = logging.getLogger("smtp_rtls.cli.serve")


def add_parser(sub: Any) -> None:
    """Register ``serve``."""
    parser = sub.add_parser(
        "serve",
        help="receive mail into a Maildir (or discard it, or relay it), with STARTTLS",
        description=(
            "Receive mail over SMTP (or LMTP) with STARTTLS and RFC 8689 REQUIRETLS. "
            "Stops gracefully on SIGINT or SIGTERM."
        ),
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=host_port(DEFAULT_PORT),
        action="append",
        help=f"address to listen on, repeatable (default 127.0.0.1:{DEFAULT_PORT})",
    )
    parser.add_argument(
        "--io",
        choices=("asyncio", "uvloop", "trio", "threads"),
        default="asyncio",
        help=(
            "the I/O adapter (default asyncio; uvloop: the asyncio adapter on uvloop's "
            "event loop, which needs the uvloop extra)"
        ),
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="processes sharing the port with SO_REUSEPORT (default 1)",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="certificate chain (PEM)")
    parser.add_argument(
        "--tls-key", metavar="FILE", help="private key (PEM; default: in --tls-cert)"
    )
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--maildir",
        metavar="DIR",
        default="maildir",
        help="where to store mail (default ./maildir)",
    )
    store.add_argument("--sink", action="store_true", help="accept every message and discard it")
    store.add_argument(
        "--relay", action="store_true", help="queue in the state directory and deliver onward"
    )
    parser.add_argument("--hostname", metavar="NAME", help="the server's name (default: FQDN)")
    parser.add_argument(
        "--require-starttls",
        action="store_true",
        help="refuse mail transactions before STARTTLS (RFC 3207 §4)",
    )
    parser.add_argument(
        "--max-size",
        type=_size,
        default=64 * 1024 * 1024,
        metavar="N",
        help="largest message in octets, K/M/G suffixes allowed (default 64M; 0: no limit)",
    )
    parser.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033)")
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default="smtp-rtls-state",
        help="the self-signed certificate and the relay spool (default ./smtp-rtls-state)",
    )
    parser.add_argument(
        "--tlsrpt-dir",
        metavar="DIR",
        help="with --relay: record SMTP TLS Reporting results (RFC 8460) in DIR "
        "(default STATE-DIR/tlsrpt)",
    )
    parser.add_argument(
        "--auth-file",
        metavar="FILE",
        help="user:password lines (plain text, for tests); offers AUTH PLAIN/LOGIN after TLS",
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="log the library's details too"
    )
    parser.set_defaults(run=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    scale = units.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale != 1 else text
    try:
        value = int(digits) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


# -- what the parent prepares ------------------------------------------------------------


@attrs.frozen
class _Setup:
    """Everything a serving process needs, checked before anything is bound."""

    listen: tuple[tuple[str, int], ...]
    io: str
    handler: Handler
    relay: Relay | None
    hostname: str
    config: ServerConfig
    tls: ssl.SSLContext | None


def run(args: argparse.Namespace) -> int:
    """Prepare, then serve in this process or supervise ``--workers``."""
    _configure_logging(args.verbose)
    setup = _prepare(args)
    if args.workers == 1:
        _serve_here(setup, _print_ready(setup), reuse_port=False)
        return 0
    return _supervise(setup, args.workers)


def _configure_logging(verbose: bool) -> None:
    # The session and message lines always; the library's own (TLS handshake
    # failures, sessions cut short, relay attempts) with --verbose.
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(
        "%(asctime)s smtp-rtls[%(process)d] %(message)s", "%Y-%m-%dT%H:%M:%SZ"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    log.setLevel(logging.INFO)


def _prepare(args: argparse.Namespace) -> _Setup:
    if args.io == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            raise CommandError(
                "--io trio needs trio (pip install 'smtp_rtls[trio]')", EX_UNAVAILABLE
            ) from None
    _loop_factory(args.io)  # a missing uvloop is refused before anything starts
    if args.relay and args.workers > 1:
        # A FileSpool is one process's (it cleans up tmp/ when opened).
        raise CommandError("--relay works with one process only: drop --workers")
    if args.tlsrpt_dir and not args.relay:
        raise CommandError("--tlsrpt-dir needs --relay (only the relay delivers onward)")
    hostname = args.hostname or socket.getfqdn()
    try:
        # RFC 5321 §4.1.1.1, §2.3.8: it goes into every greeting and EHLO
        # reply; refused before a certificate is made for it or a port opened
        ServerConnection(hostname)
    except ProtocolError as exc:
        raise CommandError(f"--hostname {hostname!r}: {exc}") from None
    state_dir = Path(args.state_dir)
    tls = _tls_context(args, state_dir, hostname)
    passwords = _read_passwords(args.auth_file) if args.auth_file else None
    if tls is None and (args.require_starttls or passwords is not None):
        option = "--require-starttls" if args.require_starttls else "--auth-file"
        raise CommandError(f"{option} needs TLS, and no certificate is available")
    try:
        config = ServerConfig(
            starttls=tls is not None,
            require_starttls=args.require_starttls,
            lmtp=args.lmtp,
            max_message_size=args.max_size,
            auth_mechanisms=("PLAIN", "LOGIN") if passwords is not None else (),
        )
    except (ProtocolError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    relay: Relay | None = None
    store: Handler
    if args.sink:
        store = _make(Sink, passwords)
    elif args.relay:
        spool = _writable(state_dir / "spool", lambda path: FileSpool(path))
        # RFC 8460: every session of an onward delivery is recorded for the
        # daily TLS reports (smtp-rtls tlsrpt report).
        tlsrpt_dir = Path(args.tlsrpt_dir) if args.tlsrpt_dir else state_dir / "tlsrpt"
        tlsrpt = _writable(tlsrpt_dir, _tlsrpt_store)
        relay = _make(
            Relay, passwords, spool, local_hostname=hostname, on_result=tlsrpt.record_delivery
        )
        store = relay
        if passwords is None:
            log.warning(
                "relaying for anyone who connects (an open relay): "
                "give --auth-file before listening beyond this machine"
            )
    else:
        store = _writable(Path(args.maildir), lambda path: _make(Maildir, passwords, path))
    listen = tuple(args.listen or [("127.0.0.1", DEFAULT_PORT)])
    return _Setup(listen, args.io, _Logged(store), relay, hostname, config, tls)


def _writable(path: Path, make: Callable[[Path], Any]) -> Any:
    """``make(path)``, and a probe file written into it: a directory that
    cannot take mail must stop the start, not fail every message with 451."""
    try:
        made = make(path)
        probe = (path / "tmp" if (path / "tmp").is_dir() else path) / f".probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CommandError(
            f"cannot write to {path}: {exc.strerror or exc}", EX_CANTCREAT
        ) from None
    return made


def _tlsrpt_store(path: Path) -> Any:
    from ..io.tlsrpt import TLSRPTStore

    path.mkdir(parents=True, exist_ok=True)
    return TLSRPTStore(path)


def _cannot_write(path: Path, exc: OSError) -> CommandError:
    return CommandError(f"cannot write to {path}: {exc.strerror or exc}", EX_CANTCREAT)


# -- TLS: the given certificate or a self-signed one ------------------------------------


def _tls_context(
    args: argparse.Namespace, state_dir: Path, hostname: str
) -> ssl.SSLContext | None:
    if args.tls_key and not args.tls_cert:
        raise CommandError("--tls-key needs --tls-cert")
    if args.tls_cert:
        cert, key = args.tls_cert, args.tls_key
    else:
        made = _self_signed(state_dir / "tls", hostname)
        if made is None:
            print(
                "smtp-rtls serve: neither the cryptography package nor the openssl command "
                "is available to make a certificate: serving without STARTTLS",
                file=sys.stderr,
                flush=True,
            )
            return None
        cert, key = (str(p) for p in made)
    try:
        return server_context(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        names = cert if key is None else f"{cert} / {key}"
        raise CommandError(f"cannot load the certificate {names}: {reason}", EX_NOINPUT) from None


def _self_signed(folder: Path, hostname: str) -> tuple[Path, Path] | None:
    """The certificate and key in ``folder``, made once (with ``cryptography``,
    else ``openssl``) and reused; None when neither is available."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _make_with_cryptography(cert, key, hostname):
            if shutil.which("openssl") is None:
                return None
            _make_with_openssl(cert, key, hostname)
    except OSError as exc:
        raise CommandError(
            f"cannot write to {folder}: {exc.strerror or exc}", EX_CANTCREAT
        ) from None
    log.info("made a self-signed certificate for %s in %s", hostname, folder)
    return cert, key


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # Written aside then renamed, the key before the certificate: a reader
    # that finds both finds both whole (cert.pem is the "done" mark).
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(tmp, path)


def _make_with_cryptography(cert_path: Path, key_path: Path, hostname: str) -> bool:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    alts: list[x509.GeneralName] = []
    for value in _names(hostname):
        try:
            alts.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            alts.append(x509.DNSName(value))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alts), critical=False)
        # a trust anchor of its own, so a client can load it as its cafile
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return True


def _names(hostname: str) -> list[str]:
    # The server's name, and the loopback names a local client connects by:
    # the certificate is self-signed, for trying things out on this machine.
    names = [hostname]
    for local in ("localhost", "127.0.0.1", "::1"):
        if local not in names:
            names.append(local)
    return names


def _make_with_openssl(cert_path: Path, key_path: Path, hostname: str) -> None:
    entries = []
    for value in _names(hostname):
        try:
            entries.append(f"IP:{ipaddress.ip_address(value).exploded}")
        except ValueError:
            entries.append(f"DNS:{value}")
    tmp_cert = cert_path.with_name(f".{cert_path.name}.{os.getpid()}")
    tmp_key = key_path.with_name(f".{key_path.name}.{os.getpid()}")
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "3650", "-subj", f"/CN={hostname[:64]}",
        "-addext", "subjectAltName=" + ",".join(entries),
        "-keyout", str(tmp_key), "-out", str(tmp_cert),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise CommandError("openssl took too long to make a certificate", EX_SOFTWARE) from None
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        raise CommandError(f"openssl could not make a certificate: {last}", EX_SOFTWARE)
    os.chmod(tmp_key, 0o600)
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)


# -- the handler: passwords, and the log lines ------------------------------------------


def _read_passwords(path: str) -> dict[str, str]:
    """``user:password`` lines; blank lines and ``#`` comments skipped.  The
    password is everything after the first colon."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CommandError(f"cannot read {path}: {reason}", EX_NOINPUT) from None
    passwords: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user:
            raise CommandError(f"{path}:{number}: not a user:password line", EX_DATAERR)
        passwords[user] = password
    if not passwords:
        raise CommandError(f"{path}: no user:password line", EX_DATAERR)
    return passwords


class _FilePasswords(PasswordAuth):
    """PasswordAuth against the ``--auth-file`` table (set on the class by
    :func:`_make`); a relay with it relays for authenticated clients only."""

    passwords: ClassVar[dict[str, str]] = {}
    require_auth: ClassVar[bool] = False

    def check_password(self, username: str, password: str) -> bool:
        """Constant-time comparison, so timing tells nothing of the password."""
        expected = self.passwords.get(username)
        return expected is not None and hmac.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8")
        )

    def on_mail(self, session: SessionInfo, event: MailFrom) -> Any:
        """Refuse a relay transaction before AUTH (RFC 4954 §6: 530 5.7.0)."""
        if self.require_auth and session.authenticated is None:
            return Reply(530, "Authentication required", "5.7.0")
        return super().on_mail(session, event)


def _make(base: type[Any], passwords: dict[str, str] | None, *args: Any, **kwargs: Any) -> Any:
    """``base(*args, **kwargs)``, with :class:`_FilePasswords` mixed in when
    there are passwords (the mixin's methods come first in the MRO)."""
    if passwords is None:
        return base(*args, **kwargs)
    mixed = type(
        f"{base.__name__}WithPasswords",
        (_FilePasswords, base),
        {"passwords": passwords, "require_auth": base is Relay},
    )
    return mixed(*args, **kwargs)


_MESSAGES = "smtp_rtls.cli.messages"
_STARTED = "smtp_rtls.cli.started"
_TAGS = {TLSTag.REQUIRETLS: "REQUIRETLS", TLSTag.TLS_OPTIONAL: "TLS-Required:No"}


class _Logged(Handler):
    """The chosen handler, unchanged, plus one log line per session (at its
    end) and per message (at its end of data or abort).  Delegation rather
    than a subclass so that the same wrapper fits Maildir, Sink and Relay,
    with or without the password mixin.  Every wrapped handler here is
    synchronous, so results pass through as they are."""

    def __init__(self, inner: Handler) -> None:
        self.inner = inner

    def on_connect(self, session: SessionInfo) -> Any:
        """Start the session's clock and counters."""
        session.data[_STARTED] = time.monotonic()
        session.data[_MESSAGES] = 0
        return self.inner.on_connect(session)

    def on_ehlo(self, session: SessionInfo, event: Ehlo | Helo) -> Any:
        """Delegated."""
        return self.inner.on_ehlo(session, event)

    def on_mail(self, session: SessionInfo, event: MailFrom) -> Any:
        """Delegated."""
        return self.inner.on_mail(session, event)

    def on_rcpt(self, session: SessionInfo, event: RcptTo, envelope: Any) -> Any:
        """Delegated."""
        return self.inner.on_rcpt(session, event, envelope)

    def on_data_start(self, session: SessionInfo, envelope: Any) -> Any:
        """Delegated."""
        return self.inner.on_data_start(session, envelope)

    def on_message(self, envelope: SessionEnvelope) -> Any:
        """The inner writer, wrapped to log the message's outcome."""
        return _LoggedWriter(self.inner.on_message(envelope), envelope)

    def on_auth(self, session: SessionInfo, event: Auth | AuthResponse) -> Any:
        """Delegated."""
        return self.inner.on_auth(session, event)

    def on_vrfy(self, session: SessionInfo, event: Vrfy | Expn) -> Any:
        """Delegated."""
        return self.inner.on_vrfy(session, event)

    def on_reset(self, session: SessionInfo) -> Any:
        """Delegated."""
        return self.inner.on_reset(session)

    def on_close(self, session: SessionInfo) -> Any:
        """Log the session line, then let the inner handler know."""
        seconds = time.monotonic() - session.data.get(_STARTED, time.monotonic())
        log.info(
            "session %s",
            _fields(
                peer=_peer(session),
                tls=session.tls.version if session.tls else "no",
                helo=session.client_name or "-",
                auth=session.authenticated or "-",
                messages=session.data.get(_MESSAGES, 0),
                seconds=f"{seconds:.3f}",
            ),
        )
        return self.inner.on_close(session)


class _LoggedWriter(MessageWriter):
    def __init__(self, inner: MessageWriter, envelope: SessionEnvelope) -> None:
        self.inner = inner
        self.envelope = envelope
        self.octets = 0

    def write(self, data: bytes) -> Any:
        self.octets += len(data)
        return self.inner.write(data)

    def close(self) -> Any:
        result = self.inner.close()
        replies = result if isinstance(result, Sequence) else [result]
        self._log(" / ".join(_reply_text(r) for r in replies))
        return result

    def abort(self) -> Any:
        self._log("aborted")
        return self.inner.abort()

    def _log(self, result: str) -> None:
        envelope = self.envelope
        session = envelope.session
        session.data[_MESSAGES] = session.data.get(_MESSAGES, 0) + 1
        log.info(
            "message %s",
            _fields(
                peer=_peer(session),
                tls=session.tls.version if session.tls else "no",
                tag=_TAGS.get(envelope.tag, "-"),
                mail_from=envelope.mail_from.reverse_path.path(),
                rcpts=len(envelope.recipients),
                octets=self.octets,
                result=result,
            ),
        )


def _reply_text(reply: object) -> str:
    if isinstance(reply, Reply):
        status = f" {reply.enhanced}" if reply.enhanced is not None else ""
        return f"{reply.code}{status} {' '.join(reply.lines)}"
    return repr(reply)


def _peer(session: SessionInfo) -> str:
    if session.peer is None:
        return "-"
    host, port = session.peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _fields(**fields: object) -> str:
    """``key=value`` pairs; a value with a space, a quote or nothing is
    quoted (``"..."``, inner quotes and backslashes escaped)."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "\\=') or not text.isprintable():
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
            text = text.encode("ascii", "backslashreplace").decode("ascii")
        parts.append(f"{key.replace('_', '-')}={text}")
    return " ".join(parts)


# -- serving in this process ------------------------------------------------------------

Ready = Callable[[list[tuple[str, int]]], None]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _print_ready(setup: _Setup) -> Ready:
    def ready(addresses: list[tuple[str, int]]) -> None:
        tls = "on" if setup.tls is not None else "off"
        for host, port in addresses:
            print(f"listening on {_address(host, port)} ({setup.io}, tls {tls})", flush=True)

    return ready


def _listen_error(exc: OSError, host: str, port: int) -> CommandError:
    reason = (
        "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
    )
    return CommandError(f"cannot listen on {_address(host, port)}: {reason}", EX_UNAVAILABLE)


def _serve_here(setup: _Setup, ready: Ready, *, reuse_port: bool) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    if setup.relay is not None:
        setup.relay.start()
    try:
        if setup.io == "threads":
            _serve_threads(setup, ready, reuse_port)
        elif setup.io in ("asyncio", "uvloop"):
            with asyncio.Runner(loop_factory=_loop_factory(setup.io)) as runner:
                runner.run(_serve_asyncio(setup, ready, reuse_port))
        else:
            import trio

            trio.run(_serve_trio, setup, ready, reuse_port)
    finally:
        # The loops put the default handlers back as they end: a second
        # SIGTERM now (an impatient supervisor) must not turn a clean stop
        # into a kill.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        if setup.relay is not None:
            setup.relay.stop()


def _loop_factory(io: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop for ``--io uvloop``; the standard one otherwise."""
    if io != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        raise CommandError(
            "--io uvloop: uvloop is not installed (pip install 'smtp_rtls[uvloop]')",
            EX_UNAVAILABLE,
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _options(setup: _Setup, reuse_port: bool) -> dict[str, Any]:
    return {
        "hostname": setup.hostname,
        "config": setup.config,
        "tls": setup.tls,
        "reuse_port": reuse_port,
    }


def _serve_threads(setup: _Setup, ready: Ready, reuse_port: bool) -> None:
    from ..io import sync

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    servers: list[sync.Server] = []
    try:
        for host, port in setup.listen:
            try:
                servers.append(
                    sync.serve(setup.handler, host, port, **_options(setup, reuse_port))
                )
            except OSError as exc:
                raise _listen_error(exc, host, port) from None
        ready([s.address for s in servers])
        while not stop.wait(0.5):  # a timeout, so that signals are seen promptly
            pass
    finally:
        # one deadline for all: shut the listeners in parallel threads
        stoppers = [
            threading.Thread(target=s.shutdown, args=(SHUTDOWN_DEADLINE,)) for s in servers
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()


async def _serve_asyncio(setup: _Setup, ready: Ready, reuse_port: bool) -> None:
    from ..io import asyncio as asyncio_io

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    servers: list[asyncio_io.Server] = []
    try:
        for host, port in setup.listen:
            try:
                server = await asyncio_io.serve(
                    setup.handler, host, port, **_options(setup, reuse_port)
                )
            except OSError as exc:
                raise _listen_error(exc, host, port) from None
            servers.append(server)
        ready([s.address for s in servers])
        await stop.wait()
    finally:
        await asyncio.gather(*(s.shutdown(SHUTDOWN_DEADLINE) for s in servers))


async def _serve_trio(setup: _Setup, ready: Ready, reuse_port: bool) -> None:
    import trio

    from ..io import trio as trio_io

    failure: CommandError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            servers: list[trio_io.Server] = []
            for host, port in setup.listen:
                serve = functools.partial(
                    trio_io.serve, setup.handler, host, port, **_options(setup, reuse_port)
                )
                try:
                    servers.append(await nursery.start(serve))
                except BaseException as exc:  # an OSError, maybe in a group
                    error = _oserror_in(exc)
                    if error is None:
                        raise
                    # Raised after the nursery, so that it is not wrapped in a group.
                    failure = _listen_error(error, host, port)
                    break
            if failure is None:
                ready([s.address for s in servers])
                async for _ in signals:
                    break
            for server in servers:
                nursery.start_soon(server.shutdown, SHUTDOWN_DEADLINE)
    if failure is not None:
        raise failure


def _oserror_in(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _oserror_in(exc.exceptions[0])
    return None


# -- more than one process --------------------------------------------------------------


@attrs.define
class _Worker:
    pid: int
    ready_fd: int
    started: float


def _supervise(setup: _Setup, count: int) -> int:
    """Start ``count`` workers on the same ports, print the ready lines once
    all listen, restart one that dies, stop them all on SIGINT / SIGTERM."""
    signals = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    # Blocked, then taken with sigtimedwait: no handler can run in the middle
    # of a fork or of the bookkeeping below.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    workers: dict[int, _Worker] = {}
    try:
        placeholders, listen = _reserve(setup.listen)
        setup = attrs.evolve(setup, listen=tuple(listen))
        try:
            for _ in range(count):
                worker = _fork(setup, old_mask, placeholders)
                workers[worker.pid] = worker
                addresses = _await_ready(worker)
        finally:
            for sock in placeholders:
                sock.close()
        _print_ready(setup)(addresses)
        log.info("workers %s", _fields(count=count, pids=",".join(map(str, workers))))
        restarts: list[float] = []
        while True:
            info = signal.sigtimedwait(signals, 1.0)
            if info is not None and info.si_signo in (signal.SIGINT, signal.SIGTERM):
                break
            for pid, status in _reap(workers):
                log.warning("worker %s", _fields(pid=pid, exit=status, action="restarting"))
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60] + [now]
                if len(restarts) > MAX_RESTARTS_PER_MINUTE:
                    raise CommandError("workers keep dying: stopping", EX_SOFTWARE)
                worker = _fork(setup, old_mask, [])
                workers[worker.pid] = worker
                _await_ready(worker)
        return 0
    finally:
        _stop_all(workers)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _reserve(
    listen: Sequence[tuple[str, int]],
) -> tuple[list[socket.socket], list[tuple[str, int]]]:
    """Check every address is free, and choose the port where 0 was asked.

    ``SO_REUSEPORT`` would let a worker share a port that another server of
    the same user already holds; a bind without it fails there, so each
    address is tried that way first.  For port 0 the chosen port is held (with
    ``SO_REUSEPORT``, not listening) until the workers have it.
    """
    held: list[socket.socket] = []
    chosen: list[tuple[str, int]] = []
    try:
        for host, port in listen:
            try:
                family, type_, proto, _name, address = socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )[0]
                sock = socket.socket(family, type_, proto)
            except OSError as exc:
                raise _listen_error(exc, host, port) from None
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if port == 0:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(address)
            except OSError as exc:
                sock.close()
                raise _listen_error(exc, host, port) from None
            if port == 0:
                held.append(sock)
                port = sock.getsockname()[1]
            else:
                sock.close()
            chosen.append((host, port))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held, chosen


def _fork(
    setup: _Setup, mask: set[int | signal.Signals], placeholders: list[socket.socket]
) -> _Worker:
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the worker: never returns, whatever happens
        status = EX_SOFTWARE
        try:
            os.close(read_fd)
            for sock in placeholders:
                sock.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            status = _worker_main(setup, write_fd)
        finally:
            os._exit(status)
    os.close(write_fd)
    return _Worker(pid, read_fd, time.monotonic())


def _worker_main(setup: _Setup, ready_fd: int) -> int:
    """Serve with ``SO_REUSEPORT``; tell the parent "ready" or the error on
    ``ready_fd``.  Returns the exit status (the caller uses ``os._exit``:
    nothing of the parent's must run twice)."""

    def tell(line: str) -> None:
        # The parent stops reading once the worker is ready: later news
        # (an error at shutdown) goes to the log instead.
        try:
            os.write(ready_fd, f"{line}\n".encode())
        except OSError:
            log.error("%s", line)

    def ready(addresses: list[tuple[str, int]]) -> None:
        tell("ready " + " ".join(f"{host},{port}" for host, port in addresses))

    status = 0
    try:
        _serve_here(setup, ready, reuse_port=True)
    except CommandError as exc:
        tell(f"error {exc.status} {exc}")
        status = exc.status
    except BaseException as exc:  # a worker must always end in os._exit
        tell(f"error {EX_SOFTWARE} internal error: {type(exc).__name__}: {exc}")
        status = EX_SOFTWARE
    finally:
        os.close(ready_fd)
        sys.stdout.flush()
        sys.stderr.flush()
    return status


def _await_ready(worker: _Worker) -> list[tuple[str, int]]:
    """Wait (bounded) for the worker's first line: its addresses, or its error."""
    data = b""
    end = time.monotonic() + READY_TIMEOUT
    try:
        while b"\n" not in data:
            left = end - time.monotonic()
            if left <= 0:
                raise CommandError("a worker did not start in time", EX_SOFTWARE)
            if select.select([worker.ready_fd], [], [], left)[0]:
                chunk = os.read(worker.ready_fd, 4096)
                if not chunk:
                    raise CommandError("a worker ended before it was ready", EX_SOFTWARE)
                data += chunk
    finally:
        os.close(worker.ready_fd)
    kind, _, rest = data.decode(errors="replace").partition(" ")
    if kind == "error":
        status, _, message = rest.strip().partition(" ")
        raise CommandError(message, int(status))
    addresses = []
    for item in rest.split():
        host, _, port = item.rpartition(",")
        addresses.append((host, int(port)))
    return addresses


def _reap(workers: dict[int, _Worker]) -> list[tuple[int, int]]:
    """The workers that ended, removed from ``workers``, with their statuses."""
    ended = []
    for pid in list(workers):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            del workers[pid]
            ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


def _stop_all(workers: dict[int, _Worker]) -> None:
    """SIGTERM to each worker (each finishes its sessions within the
    deadline), SIGKILL to what is left after it, and reap them all."""
    for pid in workers:
        with _suppress_gone():
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + SHUTDOWN_DEADLINE + 10
    while workers and time.monotonic() < end:
        _reap(workers)
        time.sleep(0.05)
    for pid in list(workers):
        with _suppress_gone():
            os.kill(pid, signal.SIGKILL)
        with _suppress_gone():
            os.waitpid(pid, 0)
        del workers[pid]


def _suppress_gone() -> contextlib.suppress:
    return contextlib.suppress(ProcessLookupError, ChildProcessError)
