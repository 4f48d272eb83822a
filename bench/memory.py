"""Peak memory of a whole server while it receives one large message.

    python bench/memory.py [--size MIB] [--kinds asyncio,trio,...] [--quick]

Each server of the suite (``bench/suite/servers.py``: our asyncio, uvloop,
trio and threaded servers, and aiosmtpd) runs in a process of its own, once
with a sink that keeps nothing and once storing into a Maildir on disk.  A
client in this process sends one 1 KiB message first (so that every import,
buffer and cache a first message needs exists), then the kernel's peak-RSS
mark of the server is reset (``/proc/PID/clear_refs``, "5"), then one message
of ``--size`` MiB goes through in 256 KiB writes.  The figure is the server's
``VmHWM`` after the message minus its ``VmRSS`` before: how much memory the
message cost at its worst, as the kernel counts it (Python's allocator, the
event loop's buffers, the socket layer's copies, the store).

Targets (issue 10): at most 0.25x the message size through the Maildir
store, at most 2 MiB through the sink.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import MiB, machine, timestamp
from suite.common import CLIENT_NAME, HOST, IO_TIMEOUT, RECIPIENT, SENDER, message, wire_content
from suite.procs import ServerProcess

KINDS = ("asyncio", "uvloop", "trio", "threads", "aiosmtpd")
STORES = ("sink", "maildir")
#: The client's write size: what a fast sender hands the kernel at a time.
WRITE = 256 * 1024


def _status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid``, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak(pid: int) -> None:
    """Set the peak-RSS mark to the current RSS (Linux 4.0 and later)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Client:
    """A minimal blocking SMTP client: enough to send one message, checking
    every reply code (a benchmark that counted refused messages would lie)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.expect(b"220")
        self.command(f"EHLO {CLIENT_NAME}", b"250")

    def expect(self, code: bytes) -> None:
        """Read one whole (maybe multi-line) reply; it must start with ``code``."""
        while True:
            # bounded by the socket timeout and the reply's end
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise RuntimeError("server closed the connection")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\r\n")
            if not line.startswith(code):
                raise RuntimeError(f"expected {code!r}, got {line!r}")
            if line[3:4] != b"-":
                return

    def command(self, line: str, code: bytes) -> None:
        """Send ``line``, expect ``code``."""
        self.sock.sendall(line.encode() + b"\r\n")
        self.expect(code)

    def send(self, wire: bytes) -> None:
        """One transaction with the already dot-stuffed ``wire`` content."""
        self.command(f"MAIL FROM:<{SENDER}>", b"250")
        self.command(f"RCPT TO:<{RECIPIENT}>", b"250")
        self.command("DATA", b"354")
        view = memoryview(wire)
        for i in range(0, len(view), WRITE):
            self.sock.sendall(view[i : i + WRITE])
        self.expect(b"250")

    def close(self) -> None:
        """QUIT and close."""
        try:
            self.command("QUIT", b"221")
        finally:
            self.sock.close()


def measure(kind: str, store: str, size: int) -> dict[str, object]:
    """One server, one store: the peak growth for one ``size`` message."""
    with tempfile.TemporaryDirectory() as tmp:
        maildir = str(Path(tmp) / "Maildir") if store == "maildir" else None
        with ServerProcess(kind, maildir=maildir) as server:
            server.start()
            assert server.proc is not None
            pid = server.proc.pid
            small = wire_content(message(1024))
            big = wire_content(message(size))
            client = Client(server.port)
            client.send(small)
            time.sleep(0.2)  # let the first message's garbage go
            before = _status(pid)["VmRSS"]
            _reset_peak(pid)
            client.send(big)
            after = _status(pid)
            client.close()
            stored = server.stats().messages
            if stored != 2:
                raise RuntimeError(f"{kind}/{store}: stored {stored} messages, not 2")
    growth = max(0, after["VmHWM"] - before)
    return {"kind": kind, "store": store, "size": size, "growth": growth}


def main(argv: list[str] | None = None) -> int:
    """Measure every server with every store; print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=50, help="message size, MiB (default 50)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated servers")
    parser.add_argument("--quick", action="store_true", help="a 10 MiB message")
    args = parser.parse_args(argv)
    size = (10 if args.quick else args.size) * MiB
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown server kinds: {', '.join(sorted(unknown))}")
    print(f"# Peak memory growth receiving one {size // MiB} MiB message")
    print(f"\n{timestamp()}; {machine()}\n")
    print("| server | sink: growth | sink vs 2 MiB | Maildir: growth | Maildir / size |")
    print("| --- | --- | --- | --- | --- |")
    for kind in kinds:
        cells = []
        for store in STORES:
            r = measure(kind, store, size)
            growth = int(r["growth"])  # type: ignore[call-overload]
            if store == "sink":
                cells += [f"{growth / MiB:.2f} MiB", "met" if growth <= 2 * MiB else "missed"]
            else:
                cells += [f"{growth / MiB:.2f} MiB", f"{growth / size:.3f}x"]
        print(f"| {kind} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
