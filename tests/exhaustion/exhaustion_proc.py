"""Start the server under attack in a process of its own and read its memory.

Memory is the kernel's count for that process: ``VmRSS`` (resident now) and
``VmHWM`` (the peak resident since the last reset), from
``/proc/<pid>/status``.  :meth:`ServerProcess.reset_peak` writes ``5`` to
``/proc/<pid>/clear_refs`` (Linux >= 4.0), so that the peak measured covers
one attack only.  Byte bounds are asserted on :meth:`ServerProcess.peak_growth`:
the peak during the attack minus what the process held before it.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

MiB = 1024 * 1024
KiB = 1024

_SCRIPT = Path(__file__).resolve().parent / "exhaustion_server.py"


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024  # the kernel counts kB
    return out


class ServerProcess:
    """A running ``exhaustion_server.py``; stop it with :meth:`stop`."""

    def __init__(self, kind: str, **options: object) -> None:
        self.kind = kind
        argv = [sys.executable, str(_SCRIPT), kind]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.pid = self._proc.pid
        line = self._line(30.0)
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the server process did not start: {line!r}")
        self.port = int(line.split()[1])
        self._baseline = 0

    def _line(self, timeout: float) -> str:
        assert self._proc.stdout is not None
        # poll, not select: this process may hold descriptors above 1024
        poller = select.poll()
        poller.register(self._proc.stdout, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return ""
        return self._proc.stdout.readline()

    def active(self) -> int:
        """Sessions in flight, as the server counts them."""
        assert self._proc.stdin is not None
        self._proc.stdin.write("active\n")
        self._proc.stdin.flush()
        line = self._line(10.0)
        assert line.startswith("ACTIVE "), line
        return int(line.split()[1])

    def wait_active(self, count: int, timeout: float = 15.0) -> int:
        """Poll until ``count`` sessions are in flight (``timeout``: a safety
        bound only); return the last count seen."""
        end = time.monotonic() + timeout
        seen = self.active()
        while seen != count and time.monotonic() < end:
            time.sleep(0.01)
            seen = self.active()
        return seen

    def fds(self) -> int:
        """File descriptors the process holds (its sockets among them)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def wait_fds(self, count: int, timeout: float = 15.0) -> int:
        """Poll until the process holds ``count`` descriptors (``timeout``: a
        safety bound only); return the last count seen."""
        end = time.monotonic() + timeout
        seen = self.fds()
        while seen != count and time.monotonic() < end:
            time.sleep(0.05)
            seen = self.fds()
        return seen

    @property
    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return _status(self.pid)["VmRSS"]

    def reset_peak(self) -> None:
        """Start measuring an attack: reset the peak and note the baseline."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self._baseline = self.rss

    def peak_growth(self) -> int:
        """The peak resident memory since :meth:`reset_peak`, minus what it was then."""
        return _status(self.pid)["VmHWM"] - self._baseline

    def growth(self) -> int:
        """Resident memory now, minus the baseline of :meth:`reset_peak`."""
        return self.rss - self._baseline

    def stop(self) -> None:
        """Close stdin (graceful shutdown); kill after 30 seconds."""
        with contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


@contextlib.contextmanager
def server_process(kind: str, **options: object) -> Iterator[ServerProcess]:
    """A :class:`ServerProcess`, stopped on the way out."""
    proc = ServerProcess(kind, **options)
    try:
        yield proc
    finally:
        proc.stop()


def measured(attack: str, kind: str, octets: int) -> None:
    """Print a measurement (shown with ``pytest -s``: the numbers of the
    table in docs/security.rst)."""
    print(f"\n[memory] {attack} ({kind}): {octets} B = {octets / MiB:.2f} MiB")


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    """A loopback connection to ``port`` whose greeting was read."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    greeting = read_reply(sock)
    assert greeting.startswith(b"220 "), greeting
    return sock


def read_reply(sock: socket.socket, limit: int = 64 * KiB) -> bytes:
    """One reply (all its lines), read a byte at a time so that nothing
    after it is consumed; ``limit`` bounds it."""
    out = bytearray()
    while len(out) < limit:
        byte = sock.recv(1)
        if not byte:
            break
        out += byte
        if out.endswith(b"\r\n"):
            before = out.rfind(b"\r\n", 0, len(out) - 2)
            start = before + 2 if before >= 0 else 0
            if out[start + 3 : start + 4] == b" ":
                break
    return bytes(out)


def read_until_closed(sock: socket.socket, limit: int = 64 * MiB) -> bytes:
    """Everything the server sends until it closes (a reset counts as a
    close), at most ``limit`` octets."""
    out = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while len(out) < limit:
            data = sock.recv(65536)
            if not data:
                break
            out += data
    return bytes(out)
