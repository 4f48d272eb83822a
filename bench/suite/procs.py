"""Server subprocesses: start one pinned to a CPU, ask it for its counts, stop it."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import attrs

SERVERS_PY = Path(__file__).resolve().parent / "servers.py"


@attrs.frozen
class Stats:
    """What a server said about itself at one moment."""

    messages: int
    cpu: float
    anomalies: int


class ServerError(RuntimeError):
    """A server did not start, did not answer, or died."""


class ServerProcess:
    """One server of :mod:`suite.servers`, in a process pinned to ``cpu``."""

    def __init__(
        self,
        kind: str,
        *,
        tls: tuple[str, str] | None = None,
        cpu: int | None = None,
        uvloop: bool = False,
        maildir: str | None = None,
        chunking: bool = False,
    ) -> None:
        self.kind = kind
        self.chunking = chunking
        self.maildir = maildir
        self.tls = tls
        self.cpu = cpu
        self.uvloop = uvloop
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        # the server's stderr goes to a file: a pipe nobody reads could fill
        # and block the server in the middle of a timed run
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._final_stderr = ""
        #: Set when the process needed SIGTERM or SIGKILL to stop.
        self.forced_stop = ""

    @property
    def label(self) -> str:
        """``asyncio`` or ``asyncio+tls``."""
        return self.kind + ("+tls" if self.tls else "")

    def command(self) -> list[str]:
        """The command line, ``taskset -c CPU`` first when pinned."""
        cmd = [sys.executable, str(SERVERS_PY), self.kind, "0"]
        if self.tls:
            cmd += ["--tls", *self.tls]
        if self.uvloop:
            cmd.append("--uvloop")
        if self.maildir:
            cmd += ["--maildir", self.maildir]
        if self.chunking:
            cmd.append("--chunking")
        if self.cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        return cmd

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait for its ``READY <port>``."""
        # The parent may be pinned to another CPU; without taskset the child
        # pins itself (the affinity is inherited, then replaced).
        preexec = None
        if self.cpu is not None and not shutil.which("taskset"):
            cpu = self.cpu

            def preexec() -> None:
                os.sched_setaffinity(0, {cpu})

        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            preexec_fn=preexec,
        )
        line = self._readline(timeout)
        if not line.startswith("READY "):
            self.stop()
            raise ServerError(f"{self.label} did not start: {line!r}; {self.stderr_text()}")
        self.port = int(line.split()[1])

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def stats(self, timeout: float = 10.0) -> Stats:
        """Ask for the message count and CPU time."""
        if self.proc is None or self.proc.stdin is None or not self.alive():
            raise ServerError(f"{self.label} is not running; {self.stderr_text()}")
        try:
            self.proc.stdin.write(b"STATS\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise ServerError(f"{self.label}: {exc}") from exc
        line = self._readline(timeout)
        parts = line.split()
        if len(parts) != 4 or parts[0] != "STATS":
            raise ServerError(f"{self.label} answered {line!r}; {self.stderr_text()}")
        return Stats(int(parts[1]), float(parts[2]), int(parts[3]))

    def _readline(self, timeout: float) -> str:
        """One line of the server's stdout, within ``timeout`` seconds."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            # bounded by the deadline
            while b"\n" not in self._buf:
                left = end - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise ServerError(f"{self.label}: no answer in {timeout} s")
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise ServerError(f"{self.label} exited; {self.stderr_text()}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace")

    def stderr_text(self, limit: int = 4000) -> str:
        """What the server wrote to stderr so far (the last ``limit`` characters)."""
        if self._stderr.closed:
            return self._final_stderr[-limit:]
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        self._stderr.seek(0, os.SEEK_END)
        return text[-limit:]

    def anomaly_kinds(self) -> dict[str, int]:
        """What the server's log said went wrong, by kind (after :meth:`stop`)."""
        for line in reversed(self.stderr_text(200_000).splitlines()):
            if line.startswith("ANOMALIES "):
                return dict(json.loads(line[len("ANOMALIES ") :]))
        return {}

    def stop(self, timeout: float = 10.0) -> None:
        """End of input (a graceful stop), then SIGTERM, then SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.forced_stop = f"did not stop within {timeout} s of end of input: SIGTERM"
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.forced_stop += ", then SIGKILL"
                    proc.kill()
                    proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def close(self) -> None:
        """Stop, keep what it wrote to stderr, and drop the file."""
        try:
            self.stop()
        finally:
            if not self._stderr.closed:
                self._final_stderr = self.stderr_text(200_000)
                self._stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
