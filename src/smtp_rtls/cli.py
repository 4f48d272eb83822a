"""The ``smtp-rtls`` command line (``python -m smtp_rtls``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="smtp-rtls", description="SMTP with RFC 8689 REQUIRETLS, Sans-IO."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="play a REQUIRETLS session in memory and print the transcript")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        run()
    return 0
