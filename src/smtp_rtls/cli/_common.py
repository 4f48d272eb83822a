"""What every command shares: exit codes (sysexits.h), errors, option parsing."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

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
    "env_default",
    "host_port",
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
