"""``smtp-rtls demo``: REQUIRETLS on real loopback sockets, shown.

Nothing to configure, no network beyond 127.0.0.1.  In a temporary folder
(removed at the end) the demo makes a throwaway certificate authority and a
server certificate for two MX host names, then:

1. starts a server (:func:`smtp_rtls.io.sync.serve`'s server, a Maildir in
   the folder) that offers REQUIRETLS after STARTTLS, and one that does not
   (``ServerConfig(requiretls=False)``);
2. shows that smtp_rtls's client will not write ``MAIL FROM ... REQUIRETLS``
   before TLS (5.7.10), then what a careless client would send: that line in
   plaintext, which the first server refuses with 555 (RFC 8689 §2);
3. delivers a REQUIRETLS message to each with :func:`smtp_rtls.io.sync.deliver`,
   the real client and the real policy; a fixed in-process table stands in
   for DNS (each domain's MX on 127.0.0.1, DNSSEC-authentic, so the plan
   demands PKIX against the demo CA);
4. prints each session's transcript as the server saw it on the wire (its
   socket is tapped: every byte read and written, the TLS version and
   cipher), the policy's verdict per recipient, the stored message with its
   ``Received`` line, and the non-delivery report with 5.7.30 for the
   second server.

``smtp-rtls demo --in-memory`` plays the older transcript of the Sans-IO
core alone (:mod:`smtp_rtls.cli._memory_demo`).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._config import ServerConfig
from .._errors import RequireTLSError
from .._events import MailFrom
from .._reply import Reply
from ..handlers import Maildir
from ..io import sync
from ..io._common import serve_settings
from ..policy.requests import DNSAnswer, DNSQuery, HTTPSResponse, Request, Result
from ..session import DEFAULT_TIMEOUTS, DeliveryResult
from ..session.server import MessageWriter, SessionEnvelope
from ._common import EX_SOFTWARE, CommandError

__all__ = ["add_parser", "run"]

Write = Callable[[str], object]

SENDER = "alice@example.org"
CLIENT_NAME = "client.example.org"
#: recipient domain -> (its MX host, whether that server offers REQUIRETLS)
DOMAINS = {"example.net": ("mx.example.net", True), "example.com": ("mx.example.com", False)}
MESSAGE = (
    "From: Alice <alice@example.org>\r\n"
    "To: {rcpt}\r\n"
    "Subject: REQUIRETLS demo\r\n"
    "Message-ID: <demo-{n}@example.org>\r\n"
    "Date: Thu, 01 Jan 2026 12:00:00 +0000\r\n"
    "\r\n"
    "This message travels only over TLS, to a verified server.\r\n"
    ".and this line starts with a dot.\r\n"
)
TIMEOUT = 10.0  # every wait of the demo: a failure must not hang


def add_parser(sub: Any) -> None:
    """Register ``demo``."""
    parser = sub.add_parser(
        "demo",
        help="run REQUIRETLS sessions on loopback and print what happened (no set-up needed)",
        description=(
            "Start two SMTP servers on 127.0.0.1 (one offers REQUIRETLS after STARTTLS, "
            "one does not), deliver a REQUIRETLS message to each under the policy, and "
            "print the sessions, the verdicts, the stored message and the bounce."
        ),
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="instead, play the Sans-IO core's transcript in memory (no sockets, no TLS)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    if getattr(args, "in_memory", False):
        from ._memory_demo import run as play

        play()
        return 0
    with tempfile.TemporaryDirectory(prefix="smtp-rtls-demo-") as folder:
        play_on_loopback(Path(folder), print)
    return 0


# -- the wire tap ----------------------------------------------------------------------


class Tap:
    """One server session's transcript: what the server read (``C:``) and
    wrote (``S:``), line by line, and notes on TLS."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = {"C:": "", "S:": ""}
        self._lock = threading.Lock()

    def data(self, prefix: str, data: bytes) -> None:
        """Record bytes that crossed, split into lines."""
        with self._lock:
            text = self._partial[prefix] + data.decode("utf-8", "replace")
            *whole, self._partial[prefix] = text.split("\r\n")
            self.lines.extend(f"{prefix} {line}" for line in whole)

    def note(self, text: str) -> None:
        """Record an event that is not bytes (a handshake)."""
        with self._lock:
            self.lines.append(f"   [{text}]")


class _TapSocket(socket.socket):
    """An accepted plaintext connection whose bytes go to ``tap`` too."""

    tap: Tap | None = None

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if self.tap is not None:
            self.tap.data("C:", data)
        return data

    def sendall(self, data: Any, flags: int = 0) -> None:
        super().sendall(data, flags)
        if self.tap is not None:
            self.tap.data("S:", bytes(data))


class _TapSSLSocket(ssl.SSLSocket):
    """The same connection after STARTTLS: the decrypted bytes go to ``tap``."""

    tap: Tap | None = None

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        data = super().recv(buflen, flags)
        if self.tap is not None:
            self.tap.data("C:", data)
        return data

    def sendall(self, data: Any, flags: int = 0) -> None:
        super().sendall(data, flags)
        if self.tap is not None:
            self.tap.data("S:", bytes(data))


class _TapContext(ssl.SSLContext):
    """A server TLS context that keeps a tapped connection tapped and notes
    the handshake's outcome (version, cipher, bits)."""

    sslsocket_class = _TapSSLSocket

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        tap = getattr(sock, "tap", None)
        try:
            tls = super().wrap_socket(sock, *args, **kwargs)
        except (OSError, ssl.SSLError) as exc:
            if tap is not None:
                tap.note(f"TLS handshake failed: {exc}")
            raise
        if isinstance(tls, _TapSSLSocket) and tap is not None:
            tls.tap = tap
            name, _, bits = tls.cipher() or ("?", "", 0)
            tap.note(f"TLS handshake done: {tls.version()} {name} ({bits} bits)")
        return tls


class _TapListener(socket.socket):
    """A listening socket whose every accepted connection is tapped; the
    transcripts are in ``taps``, one per connection, in order."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.taps: list[Tap] = []
        self.bind(("127.0.0.1", 0))
        self.listen()

    def accept(self) -> tuple[socket.socket, Any]:
        plain, peer = super().accept()
        tapped = _TapSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        tapped.tap = Tap()
        self.taps.append(tapped.tap)
        return tapped, peer


# -- the servers' handler --------------------------------------------------------------


class DemoMaildir(Maildir):
    """A :class:`~smtp_rtls.handlers.Maildir` whose end-of-data reply also
    names the message's RFC 8689 tag as the server saw it."""

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        """Maildir's writer, with the tag in its reply."""
        return _TaggedWriter(super().on_message(envelope), envelope)


class _TaggedWriter(MessageWriter):
    def __init__(self, inner: MessageWriter, envelope: SessionEnvelope) -> None:
        self.inner = inner
        self.tag = "REQUIRETLS" if envelope.requiretls else envelope.tag.name

    def write(self, data: bytes) -> Any:
        return self.inner.write(data)

    def close(self) -> Any:
        reply = self.inner.close()
        if isinstance(reply, Reply) and reply.code == 250:
            name = reply.text.removeprefix("Stored as ")
            return Reply(250, f"Queued ({self.tag}) as {name}", reply.enhanced)
        return reply

    def abort(self) -> Any:
        return self.inner.abort()


# -- certificates ----------------------------------------------------------------------


def make_certificates(folder: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``names``: returns the
    paths of the CA certificate, the server's chain and its key.  Uses the
    ``cryptography`` package when importable, else the ``openssl`` command."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return _openssl_certificates(folder, names)
    return _cryptography_certificates(folder, names)


def _cryptography_certificates(folder: Path, names: list[str]) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp-rtls demo CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, chain_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, chain_file, key_file


def _openssl_certificates(folder: Path, names: list[str]) -> tuple[Path, Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CommandError(
            "needs the 'cryptography' package or the 'openssl' command to make "
            "its test certificates",
            EX_SOFTWARE,
        )
    ca_file, ca_key = folder / "ca.pem", folder / "ca-key.pem"
    chain_file, key_file, csr = folder / "server.pem", folder / "key.pem", folder / "server.csr"
    ext = folder / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join('DNS:' + n for n in names)}\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def call(*argv: str | Path) -> None:
        subprocess.run(
            [openssl, *map(str, argv)], check=True, capture_output=True, timeout=TIMEOUT
        )

    call("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_file, "-days", "1",
         "-subj", "/CN=smtp-rtls demo CA",
         "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    call("req", *ec, "-keyout", key_file, "-out", csr, "-subj", f"/CN={names[0]}")
    call("x509", "-req", "-in", csr, "-CA", ca_file, "-CAkey", ca_key, "-CAcreateserial",
         "-out", chain_file, "-days", "1", "-extfile", ext)  # fmt: skip
    return ca_file, chain_file, key_file


# -- DNS from a table ------------------------------------------------------------------


class DNSTable:
    """Stands in for DNS: each demo domain has one MX on 127.0.0.1, every
    answer DNSSEC-authentic (AD=1); anything else does not exist, and no
    MTA-STS policy can be fetched.  ``asked`` lists the look-ups made."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[str, ...]] = {}
        for domain, (mx, _) in DOMAINS.items():
            self.records[(domain, "MX")] = (f"10 {mx}.",)
            self.records[(mx, "A")] = ("127.0.0.1",)
            self.records[(mx, "AAAA")] = ()
        self.asked: list[str] = []

    def __call__(self, request: Request) -> Result:
        """Answer one look-up of the policy."""
        if not isinstance(request, DNSQuery):
            self.asked.append(f"https://{request.host}{request.path} -> cannot connect")
            return HTTPSResponse(request, error="connect")
        key = (request.name.rstrip(".").lower(), request.rdtype)
        if key not in self.records:
            self.asked.append(f"{request.name} {request.rdtype} -> NXDOMAIN (AD)")
            return DNSAnswer(request, "NXDOMAIN", authentic=True)
        records = self.records[key]
        shown = ", ".join(records) or "no records"
        self.asked.append(f"{request.name} {request.rdtype} -> {shown} (AD)")
        return DNSAnswer(request, "NOERROR", records, authentic=True)


# -- the show --------------------------------------------------------------------------


def play_on_loopback(folder: Path, write: Write = print) -> None:
    """Run the whole demo in ``folder`` (which the caller removes), writing
    the report line by line with ``write``."""
    write("smtp-rtls demo: REQUIRETLS (RFC 8689) on real sockets, 127.0.0.1 only")
    write(f"  temporary folder: {folder} (removed at the end)")
    hosts = [mx for mx, _ in DOMAINS.values()]
    ca_file, chain_file, key_file = make_certificates(folder, hosts)
    write(f"  a throwaway CA signed a certificate for {', '.join(hosts)}")
    servers: dict[str, tuple[sync.Server, _TapListener, DemoMaildir]] = {}
    try:
        for domain, (mx, offers) in DOMAINS.items():
            servers[domain] = _start(folder / domain, mx, offers, chain_file, key_file)
        for domain, (mx, offers) in DOMAINS.items():
            server, listener, _ = servers[domain]
            what = "offers REQUIRETLS after STARTTLS" if offers else "does NOT offer REQUIRETLS"
            write(f"  server {mx} on 127.0.0.1:{server.port}: STARTTLS, {what}")
        write("  DNS: a fixed in-process answer table stands in for DNS (no resolver is asked)")
        write("")
        first = next(iter(DOMAINS))
        _careless(servers[first][0], servers[first][1], write)
        for n, (domain, (mx, _)) in enumerate(DOMAINS.items(), 1):
            server, listener, maildir = servers[domain]
            _deliver(n, domain, mx, server, listener, maildir, str(ca_file), write)
    finally:
        for server, listener, _ in servers.values():
            server.shutdown(deadline=5.0)
            listener.close()
    write("")
    write("Done: both servers stopped; the temporary folder is removed.")


def _start(
    path: Path, mx: str, requiretls: bool, chain_file: Path, key_file: Path
) -> tuple[sync.Server, _TapListener, DemoMaildir]:
    context = _TapContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(chain_file, key_file)
    maildir = DemoMaildir(path)
    # What sync.serve() does, with a listener that taps each connection.
    settings = serve_settings(
        maildir,
        hostname=mx,
        config=ServerConfig(starttls=True, requiretls=requiretls),
        tls=context,
        implicit_tls=False,
        max_connections=4,
        read_timeout=TIMEOUT,
    )
    listener = _TapListener()
    return sync.Server(settings, listener), listener, maildir


def _show(title: str, tap: Tap, write: Write) -> None:
    write(f"--- {title} (as the server saw it on the wire) ---")
    for line in tap.lines:
        write(f"  {line}")


def _wait_idle(server: sync.Server) -> None:
    # the client has its last reply; let the server's session finish writing
    end = time.monotonic() + TIMEOUT
    while server.active and time.monotonic() < end:
        time.sleep(0.01)


def _careless(server: sync.Server, listener: _TapListener, write: Write) -> None:
    write("== 0. Before TLS: MAIL FROM ... REQUIRETLS in plaintext ==")
    client = sync.connect("127.0.0.1", server.port, local_hostname=CLIENT_NAME, timeout=TIMEOUT)
    try:
        client.send(SENDER, ["bob@example.net"], b"Subject: x\r\n\r\nx\r\n", requiretls=True)
    except RequireTLSError as exc:
        refusal = str(exc.reply.format(), "utf-8").strip() if exc.reply else str(exc)
        write(f"smtp_rtls's client, asked for REQUIRETLS before TLS, refuses: {refusal}")
    finally:
        client.quit()
    _wait_idle(server)
    _show("session 0.1: smtp_rtls's client (no MAIL was written)", listener.taps[-1], write)
    write("A careless client (raw bytes written by this demo) sends the line anyway:")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            while True:
                line = reader.readline().decode("utf-8", "replace").rstrip("\r\n")
                if len(line) < 4 or line[3] != "-":
                    return line

        reply()
        sock.sendall(f"EHLO {CLIENT_NAME}\r\n".encode())
        reply()
        sock.sendall(f"MAIL FROM:<{SENDER}> REQUIRETLS\r\n".encode())
        refused = reply()
        sock.sendall(b"QUIT\r\n")
        reply()
        reader.close()
    _wait_idle(server)
    tap = listener.taps[-1]
    marked = []
    for line in tap.lines:
        if line.startswith("C: MAIL FROM:"):
            line += "   <- careless client: REQUIRETLS in plaintext"
        marked.append(line)
    tap.lines = marked
    _show("session 0.2: a careless client", tap, write)
    write(f"careless client (plaintext): MAIL FROM:<{SENDER}> REQUIRETLS -> {refused}")
    write("   (RFC 8689 §2: REQUIRETLS is neither offered nor accepted before TLS)")
    write("")


def _deliver(
    n: int,
    domain: str,
    mx: str,
    server: sync.Server,
    listener: _TapListener,
    maildir: DemoMaildir,
    cafile: str,
    write: Write,
) -> None:
    rcpt = f"bob@{domain}" if n == 1 else f"carol@{domain}"
    offers = DOMAINS[domain][1]
    title = "a server that offers REQUIRETLS" if offers else "a server without REQUIRETLS"
    write(f"== {n}. deliver() a REQUIRETLS message to {rcpt}: {title} ==")
    dns = DNSTable()
    seen = len(listener.taps)
    result = sync.deliver(
        MailFrom(SENDER, requiretls=True),
        [rcpt],
        MESSAGE.format(rcpt=rcpt, n=n).encode(),
        local_hostname=CLIENT_NAME,
        fulfil=dns,
        cafile=cafile,
        port=server.port,
        timeouts=dict.fromkeys(DEFAULT_TIMEOUTS, TIMEOUT),
    )
    _wait_idle(server)
    write("DNS look-ups of the policy (answered by the in-process table, not by DNS):")
    for line in dns.asked:
        write(f"  {line}")
    for i, tap in enumerate(listener.taps[seen:], 1):
        _show(f"session {n}.{i} with {mx}", tap, write)
    _verdicts(result, write)
    for path in maildir.delivered:
        write(f"--- the stored message: {path.parent.name}/{path.name} ---")
        for line in path.read_bytes().decode("utf-8", "replace").splitlines():
            write(f"  {line}")
    if result.bounce is not None:
        write(f"--- the non-delivery report to <{result.bounce.forward_path}> ---")
        for line in result.bounce.message.decode("utf-8", "replace").splitlines():
            write(f"  {line}")
    write("")


def _verdicts(result: DeliveryResult, write: Write) -> None:
    write("The policy's verdict per recipient:")
    for r in result.recipients:
        reply = str(r.reply.format(), "utf-8").strip() if r.reply else "-"
        write(f"  {r.recipient}: {r.status.name}  ({reply})")
        where = f"{r.host} [{r.address}]" if r.address else f"{r.host}"
        if r.security is not None:
            where += f", server authenticated by {r.security.name}"
        if r.tls_version:
            where += f", {r.tls_version} {r.tls_cipher}"
        write(f"    host: {where}")
        write(f"    MAIL FROM ... REQUIRETLS sent: {'yes' if r.requiretls else 'no'}")
        if r.reason is not None:
            write(f"    reason: {r.reason.value}")
        if r.policy:
            write(f"    policy: {r.policy}")
    for verdict in result.attempts:
        write(f"  host {verdict.host} was left with QUIT: {verdict.detail or verdict.reason}")
