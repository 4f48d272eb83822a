"""``smtp-rtls demo``: a REQUIRETLS session, shown.

(A placeholder for the real-socket demo: today it plays the in-memory
transcript of the core.)
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register ``demo``."""
    parser = sub.add_parser(
        "demo", help="play a REQUIRETLS session and print what happened (no set-up needed)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    from ._memory_demo import run as play

    play()
    return 0
