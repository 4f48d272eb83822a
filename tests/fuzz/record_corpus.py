"""Record the seed corpora of tests/fuzz/corpus from real SMTP sessions, on loopback only.

    .venv/bin/python tests/fuzz/record_corpus.py [--postfix]

Clients (smtplib, aiosmtplib, npm nodemailer, and the ``client`` harness's own
scripted client) talk to servers (aiosmtpd, smtp_rtls's LoopbackServer, npm
smtp-server, and with ``--postfix`` Debian's Postfix 3.7 started on 127.0.0.1
by tests/lab/postfix-up.sh, about 3 s) through a recording TCP relay on 127.0.0.1, in
plaintext (no STARTTLS, so that every octet is readable).  What the clients
sent seeds ``server`` and ``command`` (and ``data_reader``/``tls_required``
with the message content); what the servers replied seeds ``client``,
``reply`` and ``capabilities``.  Then the constructed seeds: the SMTP
smuggling end-of-data look-alikes (smtp_rtls.testing.END_OF_DATA_LOOKALIKES)
and STARTTLS injection vectors (RFC 3207 §4, CVE-2011-0411) for the wire
harnesses, and RFC examples for the policy parsers.

Files are written as ``corpus/<harness>/<name>``, overwriting those of the
same name; seeds found by fuzzing (``crash-*``, ``regression-*``) are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fuzz_client import App
from fuzz_common import CORPUS

from smtp_rtls.testing import END_OF_DATA_LOOKALIKES

LOOPBACK = "127.0.0.1"
TIMEOUT = 10.0
LAB = Path(__file__).parent.parent / "lab"
NODE_MODULES = LAB / "node" / "node_modules"
MESSAGE = (
    b"From: a@b.example\r\nTo: c@d.example\r\nSubject: corpus\r\n"
    b"Message-ID: <corpus@b.example>\r\n\r\nhello\r\n.dot line\r\n..two dots\r\nend\r\n"
)


# -- the recording relay ---------------------------------------------------------------


class Relay:
    """A TCP relay on 127.0.0.1 to ``backend``, one connection at a time,
    recording each session's octets in both directions."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.listener = socket.create_server((LOOPBACK, 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.sessions: list[tuple[bytes, bytes]] = []  # (client->server, server->client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with client, socket.create_connection((LOOPBACK, self.backend_port), TIMEOUT) as srv:
                self.sessions.append(self._pump(client, srv))

    def _pump(self, client: socket.socket, server: socket.socket) -> tuple[bytes, bytes]:
        import selectors

        up, down = bytearray(), bytearray()
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, (server, up))
        sel.register(server, selectors.EVENT_READ, (client, down))
        deadline = time.monotonic() + TIMEOUT
        open_ends = 2
        while open_ends and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                other, record = key.data
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(sock)
                    open_ends -= 1
                    with contextlib.suppress(OSError):
                        other.shutdown(socket.SHUT_WR)
                    continue
                record += data
                other.sendall(data)
        sel.close()
        return bytes(up), bytes(down)

    def wait_sessions(self, n: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while len(self.sessions) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(TIMEOUT)


# -- servers -------------------------------------------------------------------------------


@contextmanager
def aiosmtpd_server() -> Iterator[int]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    with socket.socket() as probe:  # aiosmtpd needs the port before it starts
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname=LOOPBACK, port=port, ready_timeout=TIMEOUT)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextmanager
def our_server() -> Iterator[int]:
    from smtp_rtls.testing.server import LoopbackServer

    with LoopbackServer() as server:
        yield server.port


NODE_SERVER = """
const { SMTPServer } = require('smtp-server');
const server = new SMTPServer({
  secure: false, authOptional: true, disabledCommands: ['AUTH', 'STARTTLS'],
  banner: 'node smtp-server', logger: false,
  onData(stream, session, cb) { stream.on('data', () => {}); stream.on('end', () => cb()); },
});
server.listen(0, '127.0.0.1', () => console.log(server.server.address().port));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
"""


def _node_env() -> dict[str, str]:
    return dict(os.environ, NODE_PATH=str(NODE_MODULES))


def _have_node(package: str) -> bool:
    return shutil.which("node") is not None and (NODE_MODULES / package).is_dir()


@contextmanager
def node_server() -> Iterator[int]:
    proc = subprocess.Popen(
        ["node", "-e", NODE_SERVER], env=_node_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


@contextmanager
def postfix_server() -> Iterator[int]:
    """Debian's Postfix 3.7 as the lab runs it (tests/lab/postfix-up.sh): a
    private instance on 127.0.0.1 in a fresh LAB_DIR, stopped by down.sh."""
    lab_dir = Path(tempfile.mkdtemp(prefix="smtp_rtls-postfix-fuzz-"))
    lab_dir.chmod(0o755)  # Postfix's delivery agents run unprivileged
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, LAB_DIR=str(lab_dir), LAB_SMTP_PORT=str(port), LAB_SUT_PORT="2597")
    try:
        subprocess.run(["bash", str(LAB / "postfix-up.sh")], env=env, timeout=120, check=True)
        yield port
    finally:
        subprocess.run(["bash", str(LAB / "down.sh"), "--purge"], env=env, timeout=60, check=False)
        shutil.rmtree(lab_dir, ignore_errors=True)


# -- clients -------------------------------------------------------------------------------


def smtplib_client(port: int) -> None:
    with smtplib.SMTP(LOOPBACK, port, local_hostname="smtplib.example", timeout=TIMEOUT) as s:
        s.ehlo()
        s.sendmail("a@b.example", ["c@example.test", "d@example.test"], MESSAGE)
        s.rset()
        s.noop()
        s.quit()


def aiosmtplib_client(port: int) -> None:
    import aiosmtplib

    async def run() -> None:
        client = aiosmtplib.SMTP(
            hostname=LOOPBACK, port=port, start_tls=False, local_hostname="aio.example"
        )
        await client.connect(timeout=TIMEOUT)
        await client.sendmail("a@b.example", ["c@example.test"], MESSAGE)
        await client.quit()

    asyncio.run(run())


NODE_CLIENT = """
const nodemailer = require('nodemailer');
const t = nodemailer.createTransport({ host: '127.0.0.1', port: Number(process.argv[1]),
  secure: false, ignoreTLS: true, name: 'node-client.test' });
t.sendMail({ from: 'node@client.test', to: 'c@example.test', subject: 'corpus',
  text: 'hello\\n.dot line\\n', messageId: '<corpus@node>', date: new Date(0) })
 .then(() => process.exit(0), e => { console.error(e.message); process.exit(1); });
"""


def nodemailer_client(port: int) -> None:
    subprocess.run(["node", "-e", NODE_CLIENT, str(port)], env=_node_env(), timeout=30, check=True)


def kit_client(make: Callable[[], object]) -> Callable[[int], None]:
    """A misbehaving client of smtp_rtls.testing.peers (its ``run``)."""

    def run(port: int) -> None:
        make().run(LOOPBACK, port)  # type: ignore[attr-defined]

    return run


def harness_client(knobs: int) -> Callable[[int], None]:
    """The ``client`` harness's own scripted client, over a real socket."""

    def run(port: int) -> None:
        app = App(knobs)
        with socket.create_connection((LOOPBACK, port), TIMEOUT) as sock:
            sock.settimeout(TIMEOUT)
            while not (app.closed or app.error is not None):
                data = sock.recv(65536)
                app.feed(data)
                if app.out:
                    sock.sendall(bytes(app.out))
                    app.out.clear()
                if not data:
                    break

    return run


# -- writing seeds -------------------------------------------------------------------------


def write(harness: str, name: str, data: bytes) -> None:
    folder = CORPUS / harness
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def replies(stream: bytes) -> Iterator[bytes]:
    group = b""
    for line in stream.split(b"\r\n")[:-1]:
        group += line + b"\r\n"
        if line[3:4] != b"-":
            yield group
            group = b""


def commands_and_content(stream: bytes) -> tuple[list[bytes], list[bytes]]:
    """The command lines of a client's stream, and its DATA contents (stuffed)."""
    commands, contents = [], []
    rest = stream
    while rest:
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        commands.append(line)
        if line.upper() == b"DATA":
            content, _end, rest = rest.partition(b"\r\n.\r\n")
            contents.append(content + b"\r\n")
    return commands, contents


def unstuff(content: bytes) -> bytes:
    if content.startswith(b"."):
        content = content[1:]
    return content.replace(b"\r\n.", b"\r\n")


def save_session(name: str, up: bytes, down: bytes) -> None:
    write("server", name, b"\x00" + up)  # default config, one read
    write("server", name + "-octets", b"\x01" + up)  # normalise config, one octet reads
    write("client", name, b"\x0e" + down)  # one read, DATA
    write("client", name + "-pipelined", b"\x4e" + down)
    if name.startswith("kit-smuggle"):
        return  # the wire seeds are what matters; the rest repeats the others
    commands, contents = commands_and_content(up)
    for i, line in enumerate(commands):
        digest = hashlib.sha256(line).hexdigest()[:8]
        write("command", f"{name}-{i}-{digest}", b"\x00" + line)
    for i, reply in enumerate(replies(down)):
        write("reply", f"{name}-{i}", reply)
        if reply.startswith(b"250-"):
            write("capabilities", name, reply)
    for i, content in enumerate(contents):
        body = unstuff(content)
        write(
            "data_reader",
            f"{name}-{i}",
            b"\x00\x07" + body + b"\xff\x00QUIT\r\n\xff\x00" + content,
        )
        write("tls_required", f"{name}-{i}", body)
        write("bdat_reader", f"{name}-{i}", b"\x07\x10" + body)


def record(
    servers: dict[str, Callable[[], object]], clients: dict[str, Callable[[int], None]]
) -> None:
    for server_name, make in servers.items():
        with make() as port:  # type: ignore[attr-defined]
            relay = Relay(port)
            try:
                for client_name, client in clients.items():
                    before = len(relay.sessions)
                    try:
                        client(relay.port)
                    except Exception as exc:  # a peer's refusal still makes a seed
                        print(f"  {client_name} -> {server_name}: {type(exc).__name__}: {exc}")
                    relay.wait_sessions(before + 1)
                    if len(relay.sessions) > before:
                        up, down = relay.sessions[before]
                        save_session(f"{client_name}-to-{server_name}", up, down)
                        sizes = f"{len(up)}/{len(down)} octets"
                        print(f"recorded {client_name} -> {server_name}: {sizes}")
            finally:
                relay.close()


# -- constructed seeds -----------------------------------------------------------------------


OPENING = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"


def constructed() -> None:
    for name, lookalike in END_OF_DATA_LOOKALIKES.items():
        slug = "smuggle-" + "".join(c if c.isalnum() else "_" for c in name)
        body = b"Subject: x\r\n\r\nhi" + lookalike + b"MAIL FROM:<evil@x.example>\r\n"
        smuggled = body + b"RCPT TO:<victim@d.example>\r\nDATA\r\nforged\r\n"
        # the server must read one message, whatever the look-alike
        write("server", slug, b"\x00" + OPENING + smuggled + b".\r\nQUIT\r\n")
        write("server", slug + "-normalise", b"\x01" + OPENING + smuggled + b".\r\nQUIT\r\n")
        write("data_reader", slug, b"\x00\x02" + smuggled + b"\xff\x00QUIT\r\n\xff\x00" + smuggled)
        write("data_reader", slug + "-n", b"\x01\x00" + smuggled + b"\xff\x00\xff\x00" + smuggled)
        write("bdat_reader", slug, b"\x02\x05" + smuggled + b"\xff\x00" + lookalike)
        write("pair", slug, bytes(8) + smuggled)
    # STARTTLS injection (RFC 3207 §4, CVE-2011-0411): commands pipelined
    # behind STARTTLS in the same read, and replies behind the 220
    write(
        "server",
        "starttls-inject",
        b"\x03EHLO c.example\r\nSTARTTLS\r\nMAIL FROM:<a@b.example>\r\n",
    )
    write("server", "starttls-inject-octets", b"\x06EHLO c.example\r\nSTARTTLS\r\nRSET\r\n")
    write(
        "client",
        "starttls-inject",
        b"\x1e220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n250 injected\r\n",
    )
    write(
        "client",
        "starttls-then-requiretls",
        b"\x1e220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n"
        b"250-mx\r\n250-REQUIRETLS\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n250 ok\r\n"
        b"354 go\r\n250 queued\r\n221 bye\r\n",
    )
    write(
        "client",
        "lmtp",
        b"\x0f220 mx LMTP\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n250 ok\r\n"
        b"354 go\r\n250 one\r\n452 two\r\n221 bye\r\n",
    )
    write(
        "client",
        "bdat",
        b"\x2e220 mx\r\n250-mx\r\n250 CHUNKING\r\n250 ok\r\n250 a\r\n250 b\r\n250 q\r\n221 b\r\n",
    )
    # RFC 8461 §3.1, §3.2 examples, and their edges
    write("mtasts_record", "rfc8461", b"v=STSv1; id=20160831085700Z;")
    write("mtasts_record", "ext", b"v=STSv1;id=a1;ext_x=v-1\x00v=spf1 -all\x00v=STSv1; id=b")
    policy = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    write("mtasts_policy", "rfc8461", b"\x00" + policy + b"max_age: 604800\r\n")
    write("mtasts_policy", "none-lf", b"\x00version: STSv1\nmode: none\nmax_age: 99999999999\n")
    cache = {
        "version": 1,
        "policies": {
            "example.com": {
                "mode": "enforce",
                "mx": ["mail.example.com", "*.example.net"],
                "max_age": 86400,
                "policy_id": "a1",
                "fetched_at": 1700000000.0,
            }
        },
    }
    write("mtasts_policy", "cache", b"\x01" + json.dumps(cache).encode())
    # TLSA (RFC 6698 §2.2 presentation, RFC 7672 §3.1 usages)
    digest = hashlib.sha256(b"spki").hexdigest()
    write("tlsa", "dane-ee", b"\x01\x00\x00\x00" + f"3 1 1 {digest}\n3 0 2 {digest * 2}".encode())
    write("tlsa", "dane-ta", b"\x00\x01\x00\x00" + f"2 0 1 {digest[:32]} {digest[32:]}".encode())
    write("tlsa", "unusable", b"\x00\x00" + b"1 1 1 00\n3 2 1 ab\n256 1 1 ab\n3 1 1 zz")
    # TLS-Required (RFC 8689 §3) shapes
    for name, head in {
        "no": b"TLS-Required: No\r\n",
        "folded": b"TLS-Required:\r\n No\r\n",
        "twice": b"TLS-Required: No\r\nTLS-Required: No\r\n",
        "obs-ws": b"tls-required \t: nO \r\n",
        "bare-cr": b"TLS-Required: No\rX: y\r\n",
        "lf": b"Subject: a\nTLS-Required: No\n",
        "continuation-first": b" folded\r\nTLS-Required: No\r\n",
    }.items():
        write(
            "tls_required",
            name,
            b"From: a@b.example\r\n" * (name != "continuation-first")
            + head
            + b"\r\nTLS-Required: No\r\n",
        )
    write("dsn", "seed", bytes(range(64)) + MESSAGE)
    write("pair", "seed", bytes(range(256)))
    write("reply", "enhanced", b"550-5.7.1 no\r\n550 5.7.1 really\r\n")
    write(
        "command",
        "mail-params",
        b"\x00MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME REQUIRETLS ENVID=a+2Bb RET=HDRS",
    )
    write(
        "command",
        "rcpt-params",
        b'\x00RCPT TO:<"j d"@[IPv6:::1]> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b',
    )
    write("command", "utf8", "\x03RCPT TO:<jö@bücher.example>".encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postfix", action="store_true", help="also record a lab Postfix (postfix-up.sh)"
    )
    args = parser.parse_args()
    servers: dict[str, Callable[[], object]] = {
        "aiosmtpd": aiosmtpd_server,
        "smtp_rtls": our_server,
    }
    clients: dict[str, Callable[[int], None]] = {
        "smtplib": smtplib_client,
        "aiosmtplib": aiosmtplib_client,
        "harness": harness_client(0x0E),
        "harness-pipelined": harness_client(0x4E),
    }
    from smtp_rtls.testing.peers import SmugglingClient, StartTLSInjectionClient

    # STARTTLS with a MAIL FROM in the same write, recorded in plaintext
    # (no handshake): CVE-2011-0411
    clients["kit-inject"] = kit_client(lambda: StartTLSInjectionClient(handshake=False))
    for variant in END_OF_DATA_LOOKALIKES:
        slug = "".join(c if c.isalnum() else "_" for c in variant)
        clients[f"kit-smuggle-{slug}"] = kit_client(lambda v=variant: SmugglingClient(v))
    if _have_node("smtp-server"):
        servers["node"] = node_server
    if _have_node("nodemailer"):
        clients["nodemailer"] = nodemailer_client
    if args.postfix:
        servers["postfix"] = postfix_server
    record(servers, clients)
    constructed()
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    print(f"corpus: {total} octets")


if __name__ == "__main__":
    main()
