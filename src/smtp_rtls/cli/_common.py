"""What every command shares: exit codes (sysexits.h), errors, option parsing."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = [
    "EX_CANTCREAT",
    "EX_DATAERR",
    "EX_NOINPUT",
    "EX_OK",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "CommandError",
    "Progress",
    "env_default",
    "host_port",
    "port_number",
    "positive_seconds",
    "with_progress",
]

# sysexits.h, the habit of mail software (sendmail, Postfix)
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75


class CommandError(Exception):
    """A failure the user can act on: printed as one line, with an exit status."""

    def __init__(self, message: str, status: int = EX_USAGE) -> None:
        super().__init__(message)
        self.status = status


def host_port(default_port: int) -> Callable[[str], tuple[str, int]]:
    """An argparse ``type`` for ``HOST:PORT`` (``[::1]:25`` for IPv6; the port
    may be left out)."""

    def parse(text: str) -> tuple[str, int]:
        host, sep, port = text.rpartition(":")
        if not sep or (host.count(":") and not host.startswith("[")):
            host, port = text, str(default_port)
        host = host.strip("[]")
        if not host:
            raise argparse.ArgumentTypeError(f"no host in {text!r}")
        try:
            number = int(port)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port number: {port!r}") from None
        if not 0 <= number <= 65535:
            raise argparse.ArgumentTypeError(f"port out of range: {number}")
        return host, number

    parse.__name__ = "HOST:PORT"
    return parse


def env_default(name: str, default: str | None = None) -> str | None:
    """The value of ``SMTP_RTLS_<NAME>`` (the environment habit), or ``default``."""
    return os.environ.get(f"SMTP_RTLS_{name}", default)


class Progress:
    """One line of progress on standard error, rewritten in place, only when
    standard error is a terminal (quiet and parseable otherwise)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown = False

    def show(self, text: str) -> None:
        """Replace the progress line with ``text``."""
        if self.enabled:
            self.stream.write(f"\r{text}\x1b[K")
            self.stream.flush()
            self._shown = True

    def done(self) -> None:
        """Clear the progress line."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def with_progress(
    content: bytes, progress: Progress, size: int = 1 << 20
) -> Callable[[], Iterator[bytes]]:
    """``content`` as a source of pieces (a fresh pass per call, as
    ``deliver()`` wants) that shows how much was handed over, when a person
    waits on it (a terminal, and more than one piece)."""

    def pieces() -> Iterator[bytes]:
        total = len(content)
        for start in range(0, total, size):
            yield content[start : start + size]
            if progress.enabled and total > size:
                done = min(start + size, total)
                progress.show(f"sending: {done >> 10} of {total >> 10} KiB")
        progress.done()

    return pieces


def port_number(text: str) -> int:
    """An argparse ``type`` for a TCP port, 1 to 65535."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {number}")
    return number


def positive_seconds(text: str) -> float:
    """An argparse ``type`` for a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value
