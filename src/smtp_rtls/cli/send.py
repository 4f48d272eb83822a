"""``smtp-rtls send``: (being written)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CommandError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register ``send``."""
    parser = sub.add_parser("send", help="(not available yet)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Not available yet."""
    raise CommandError("send is not available yet")
