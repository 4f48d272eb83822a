"""The server under attack, in a process of its own, so that its memory can
be read from /proc without the attacking client's in the count.

Run as ``python exhaustion_server.py KIND [options]``: it serves a
:class:`~smtp_rtls.handlers.Sink` through the real adapter ``KIND`` (one of
tests/adapters.py's KINDS) on 127.0.0.1, prints ``PORT <n>``, then answers
``active`` on stdin with the number of sessions in flight, and shuts down
gracefully when stdin closes.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for adapters

from adapters import KINDS, running
from smtp_rtls import ServerConfig
from smtp_rtls.handlers import Sink
from smtp_rtls.io.tls import server_context


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--max-message-size", type=int, default=64 * 1024 * 1024)
    parser.add_argument("--max-connections", type=int, default=100)
    parser.add_argument("--read-timeout", type=float, default=None)
    parser.add_argument("--tls", help="PEM file: the key and certificate chain (STARTTLS)")
    parser.add_argument(
        "--max-fds", type=int, default=None, help="the soft limit of file descriptors"
    )
    args = parser.parse_args()
    if args.max_fds is not None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.max_fds, hard))
    tls = server_context(args.tls) if args.tls else None
    config = ServerConfig(starttls=tls is not None, max_message_size=args.max_message_size)
    with running(
        args.kind,
        Sink(),
        config=config,
        tls=tls,
        max_connections=args.max_connections,
        read_timeout=args.read_timeout,
    ) as server:
        print(f"PORT {server.port}", flush=True)
        for line in sys.stdin:
            if line.strip() == "active":
                print(f"ACTIVE {server.active}", flush=True)


if __name__ == "__main__":
    main()
