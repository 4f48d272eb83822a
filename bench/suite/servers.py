"""One server of the suite in a process of its own.

    python bench/suite/servers.py KIND PORT [--tls CERT KEY] [--uvloop]

KIND is ``raw`` (the raw responder), ``asyncio``, ``uvloop``, ``trio``,
``threads`` (our three adapters' ``serve()`` with the library's counting
:class:`~smtp_rtls.handlers.Sink`) or ``aiosmtpd``.  PORT 0 picks a free one.
With ``--tls`` STARTTLS is offered with that certificate chain and key.
With ``--maildir DIR`` the messages are stored in that Maildir instead
(ours: :class:`~smtp_rtls.handlers.Maildir`; aiosmtpd: its ``Mailbox``), for
``bench/memory.py``.
``--uvloop`` runs the raw responder on uvloop (the client benchmarks' sink).

The control channel is standard input and output, so that the parent needs
no second socket and the control costs nothing while a run is timed:

* the server prints ``READY <port>`` once it listens;
* each line ``STATS`` on stdin is answered ``STATS <messages> <cpu seconds>
  <anomalies>``: the messages the server has stored, ``time.process_time()``
  (every thread of the process), and how many log records said something
  went wrong (a session cut short, a failed handshake, an error);
* end of input stops the server gracefully and ends the process; the last
  line on stderr is then ``ANOMALIES {json}``: those log records by kind.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # run as a script: make ``suite`` importable (bench/ on the path)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from suite.common import HOST, SERVER_NAME
from suite.raw import Counter, serve_raw

KINDS = ("raw", "asyncio", "uvloop", "trio", "threads", "aiosmtpd")
#: The graceful stop's deadline, seconds; the parent kills after more.
STOP_DEADLINE = 3.0
#: High enough that the suite measures the server, not its connection limit
#: (the default, 100, could refuse a connection of the connection-per-message
#: runs while the previous one is still closing).
MAX_CONNECTIONS = 1000


class AnomalyLog(logging.Handler):
    """Counts the log records that say something went wrong and copies the
    first few to stderr (which the parent keeps and reports)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        #: "logger: message template" -> how many times (the kinds, not the peers).
        self.kinds: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        """Count; show the first 20."""
        self.count += 1
        text = " / ".join(str(record.msg).split("\n"))[:160]
        kind = f"{record.levelname} {record.name}: {text}"
        if record.exc_info and record.exc_info[1] is not None:
            # the exception is what tells one failure from another
            exc = record.exc_info[1]
            kind += f" [{type(exc).__name__}: {str(exc)[:120]}"
            tb = traceback.extract_tb(record.exc_info[2])
            if tb:
                where = "/".join(Path(tb[-1].filename).parts[-3:])
                kind += f" at {where}:{tb[-1].lineno}"
            kind += "]"
        self.kinds[kind] += 1
        if self.count <= 20:
            sys.stderr.write(f"[{record.levelname} {record.name}] {record.getMessage()}\n")
            if record.exc_info:
                traceback.print_exception(*record.exc_info, limit=6, file=sys.stderr)
            sys.stderr.flush()

    def summary(self) -> None:
        """One ``ANOMALIES {json}`` line on stderr, for the parent's report."""
        sys.stderr.write(f"ANOMALIES {json.dumps(dict(self.kinds))}\n")
        sys.stderr.flush()


def install_anomaly_log() -> AnomalyLog:
    """Ours logs a session cut short or a failed handshake at INFO (nothing
    on the normal path); everyone else's WARNING and above count too."""
    log = AnomalyLog()
    ours = logging.getLogger("smtp_rtls")
    ours.setLevel(logging.INFO)
    ours.addHandler(log)
    ours.propagate = False
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    root.addHandler(log)
    return log


def control(count: Callable[[], int], anomalies: AnomalyLog, stop: Callable[[], None]) -> None:
    """Answer ``STATS`` lines until end of input, then call ``stop``."""
    stdin = sys.stdin.buffer
    # bounded by the parent: it closes stdin at the end
    while True:
        line = stdin.readline()
        if not line:
            break
        if line.strip() == b"STATS":
            out = f"STATS {count()} {time.process_time():.6f} {anomalies.count}\n"
            sys.stdout.write(out)
            sys.stdout.flush()
    stop()


def ready(port: int) -> None:
    """Tell the parent the port."""
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


def start_control(
    count: Callable[[], int], anomalies: AnomalyLog, stop: Callable[[], None]
) -> None:
    """The control loop in a daemon thread (blocked in read(): no CPU, no GIL)."""
    threading.Thread(target=control, args=(count, anomalies, stop), daemon=True).start()


def _our_handler(maildir: str | None) -> tuple[Any, Callable[[], int]]:
    """Our counting sink, or a Maildir store; and how to count its messages."""
    from smtp_rtls.handlers import Maildir, Sink

    if maildir is None:
        sink = Sink()
        return sink, lambda: sink.messages
    store = Maildir(maildir)
    return store, lambda: len(store.delivered)


async def _asyncio_main(
    kind: str,
    port: int,
    tls: ssl.SSLContext | None,
    log: AnomalyLog,
    maildir: str | None = None,
    chunking: bool = False,
) -> None:
    """raw, asyncio, uvloop or aiosmtpd: serve on the running loop until stopped."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    count: Callable[[], int]
    closer: Callable[[], Any]
    if kind == "raw":
        counter = Counter()
        server = await serve_raw(counter, HOST, port, tls, chunking)
        count = lambda: counter.messages  # noqa: E731
        real_port = server.sockets[0].getsockname()[1]

        async def closer() -> None:
            server.close()
            await asyncio.wait_for(server.wait_closed(), STOP_DEADLINE)

    elif kind == "aiosmtpd":
        from aiosmtpd.smtp import SMTP

        handler: AiosmtpdCounter | AiosmtpdMaildir = (
            AiosmtpdCounter() if maildir is None else AiosmtpdMaildir(maildir)
        )
        asrv = await loop.create_server(
            lambda: SMTP(
                handler,
                hostname=SERVER_NAME,
                tls_context=tls,
                require_starttls=False,
                # ours take 64 MiB by default; aiosmtpd's 32 MiB would refuse
                # bench/memory.py's 50 MiB message
                data_size_limit=64 * 1024 * 1024,
            ),
            HOST,
            port,
        )
        count = lambda: handler.messages  # noqa: E731
        real_port = asrv.sockets[0].getsockname()[1]

        async def closer() -> None:
            asrv.close()
            await asyncio.wait_for(asrv.wait_closed(), STOP_DEADLINE)

    else:  # asyncio and uvloop: our adapter
        from smtp_rtls.io import asyncio as ours

        handler_, count = _our_handler(maildir)
        osrv = await ours.serve(
            handler_, HOST, port, hostname=SERVER_NAME, tls=tls, max_connections=MAX_CONNECTIONS
        )
        real_port = osrv.port

        async def closer() -> None:
            await osrv.shutdown(STOP_DEADLINE)

    ready(real_port)

    def stop() -> None:
        loop.call_soon_threadsafe(stopped.set)

    start_control(count, log, stop)
    await stopped.wait()
    await closer()


class AiosmtpdCounter:
    """aiosmtpd handler: count each message, keep nothing."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        """Count and accept."""
        self.messages += 1
        return "250 2.0.0 OK"


class AiosmtpdMaildir:
    """aiosmtpd's own Maildir handler (``Mailbox``), counted."""

    def __init__(self, path: str) -> None:
        from aiosmtpd.handlers import Mailbox

        self.mailbox = Mailbox(path)
        self.messages = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        """Store through ``Mailbox``, count."""
        reply: str = await self.mailbox.handle_DATA(server, session, envelope)
        self.messages += 1
        return reply


def _trio_main(
    port: int, tls: ssl.SSLContext | None, log: AnomalyLog, maildir: str | None = None
) -> None:
    """Our trio adapter, until end of input."""
    import trio

    from smtp_rtls.io import trio as ours

    handler, count = _our_handler(maildir)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: ours.serve(
                    handler,
                    HOST,
                    port,
                    hostname=SERVER_NAME,
                    tls=tls,
                    max_connections=MAX_CONNECTIONS,
                    task_status=task_status,
                )
            )
            token = trio.lowlevel.current_trio_token()
            ready(server.port)

            def stop() -> None:
                trio.from_thread.run(server.shutdown, STOP_DEADLINE, trio_token=token)

            start_control(count, log, stop)

    trio.run(main)


def _threads_main(
    port: int, tls: ssl.SSLContext | None, log: AnomalyLog, maildir: str | None = None
) -> None:
    """Our blocking adapter (a thread per connection), until end of input."""
    from smtp_rtls.io import sync as ours

    handler, count = _our_handler(maildir)
    with ours.serve(
        handler, HOST, port, hostname=SERVER_NAME, tls=tls, max_connections=MAX_CONNECTIONS
    ) as server:
        ready(server.port)
        control(count, log, lambda: server.shutdown(STOP_DEADLINE))


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and serve until end of input."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("port", type=int)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--uvloop", action="store_true", help="the raw responder on uvloop")
    parser.add_argument("--maildir", metavar="DIR", help="store into this Maildir (not raw)")
    parser.add_argument(
        "--chunking", action="store_true", help="the raw responder offers CHUNKING (RFC 3030)"
    )
    args = parser.parse_args(argv)
    if args.maildir and args.kind == "raw":
        parser.error("the raw responder stores nothing: --maildir needs another KIND")
    if args.chunking and args.kind != "raw":
        parser.error("--chunking is an option of the raw responder")
    tls = None
    if args.tls:
        from smtp_rtls.io.tls import server_context

        tls = server_context(args.tls[0], args.tls[1])
    log = install_anomaly_log()
    if args.kind == "trio":
        _trio_main(args.port, tls, log, args.maildir)
    elif args.kind == "threads":
        _threads_main(args.port, tls, log, args.maildir)
    elif args.kind == "uvloop" or (args.kind == "raw" and args.uvloop):
        import uvloop

        kind = "asyncio" if args.kind == "uvloop" else "raw"
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_asyncio_main(kind, args.port, tls, log, args.maildir, args.chunking))
    else:
        asyncio.run(_asyncio_main(args.kind, args.port, tls, log, args.maildir, args.chunking))
    log.summary()
    return 0


if __name__ == "__main__":
    # stdout carries the control channel only; exit without waiting for
    # daemon threads (the control thread may still sit in read()).
    code = main()
    sys.stdout.flush()
    os._exit(code)
