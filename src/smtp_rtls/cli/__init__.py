"""The ``smtp-rtls`` command line (``python -m smtp_rtls``).

One module per command (``demo``, ``serve``, ``send``, ``check``, ``tlsrpt``), each with
``add_parser(subparsers)`` and ``run(args) -> int``; the shared pieces
(exit codes, ``HOST:PORT`` parsing, clear errors instead of tracebacks) are
in ``_common``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from ._common import EX_SOFTWARE, EX_USAGE, CommandError

__all__ = ["main"]

COMMANDS = ("demo", "serve", "send", "check", "tlsrpt")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the command line
    (argparse would print the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)  # main() turns it into EX_USAGE


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command's sub-parser."""
    parser = _Parser(
        prog="smtp-rtls",
        description="SMTP with RFC 8689 REQUIRETLS: receive, send and check mail delivery.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for name in COMMANDS:
        module = importlib.import_module(f".{name}", __name__)
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (never a traceback for
    what a user can get wrong: bad arguments, files, ports, peers)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return EX_USAGE if exc.code not in (0, None) else 0
    try:
        return int(args.run(args))
    except CommandError as exc:
        print(f"smtp-rtls {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head): nothing to say
        return 0
    except Exception as exc:  # a bug: say so in one line, with what to report
        print(
            f"smtp-rtls {args.command}: internal error: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EX_SOFTWARE
