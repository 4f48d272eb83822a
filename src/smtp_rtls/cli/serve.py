"""``smtp-rtls serve``: (being written)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CommandError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register ``serve``."""
    parser = sub.add_parser("serve", help="(not available yet)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Not available yet."""
    raise CommandError("serve is not available yet")
