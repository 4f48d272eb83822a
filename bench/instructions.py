"""Instructions per message, counted by valgrind's callgrind: the comparison of
two trees that the host's noise does not move.

    .venv/bin/python bench/instructions.py                    # this tree, about 7 minutes
    PYTHONPATH=build/compiled .venv/bin/python bench/instructions.py   # the compiled build

Each loop runs in process (with no system call in it, but for
``client-socket``'s) under ``valgrind --tool=callgrind`` for N and for 2N
messages (or connections); the difference over
N is the count per message, start-up and import cancelled out.  Each count
is the least of three runs (a run can pick up a few hundred thousand
instructions of import-time work that the others do not), with
``PYTHONHASHSEED=0``.  The loops:

* ``client``: ``smtp_rtls.io.sync.Client.send()`` of a 1 KiB message in one
  session, on ``bench/client.py``'s in-memory socket (the client's own
  work: core, session operation, adapter);
* ``client-socket``: the same client on a real socket over loopback, to
  the suite's raw responder in a process of its own that callgrind does not
  follow (what the client process runs between its system calls: the
  socket's methods are C functions here, where the in-memory socket's are
  Python, which makes a loop compiled from Python pay a call into the
  interpreter for each);
* ``session``: the server session and core of ``bench/messages.py``, one
  pipelined 1 KiB message per unit (MAIL, RCPT and DATA in one read, the
  content in the next), with the library's Sink;
* ``asyncio``: the same reads given to the asyncio adapter's protocol
  through a stand-in transport (the adapter, session and core; no event
  loop iteration, no kernel);
* ``asyncio-connection``: a connection per message through that protocol,
  as the suite's load generator makes them (EHLO, then MAIL, RCPT and DATA
  in one read, the content, QUIT; the connection made and lost).

Counts are repeatable for one build on one machine; compare trees by
running both here, not against figures from another machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOOPS = ("client", "client-socket", "session", "asyncio", "asyncio-connection")


def _send_messages(sender: Any, n: int) -> None:
    """``n`` messages of 1 KiB through a blocking client, then QUIT."""
    import client as bench_client

    body = bench_client.BLOCK[: bench_client.KiB] + b"\r\n"
    for _ in range(n):
        if not sender.send("sender@bench.test", ["rcpt@bench.test"], body).accepted:
            raise RuntimeError("a message was refused")
    sender.quit()


def run_client(n: int) -> None:
    """``n`` messages of 1 KiB through the blocking client, one session."""
    import client as bench_client

    _send_messages(bench_client.fake_client(), n)


def run_client_socket(n: int) -> None:
    """``n`` messages of 1 KiB through the blocking client to the raw
    responder, one session on a loopback socket."""
    from smtp_rtls.io import sync
    from suite.procs import ServerProcess

    with ServerProcess("raw") as server:
        server.start()
        _send_messages(
            sync.connect("127.0.0.1", server.port, local_hostname="client.bench.test"), n
        )


def run_session(n: int) -> None:
    """``n`` pipelined 1 KiB messages through the server session."""
    import messages

    messages.session("pipelined", n)  # (it checks that the Sink stored n)


class _Transport(asyncio.Transport):
    """What the asyncio protocol asks of its transport, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4000) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _asyncio_server() -> tuple[Any, Any]:
    """The asyncio adapter's server (not listening) and its Sink."""
    from smtp_rtls.handlers import Sink
    from smtp_rtls.io import asyncio as adapter
    from smtp_rtls.io._common import serve_settings

    sink = Sink()
    settings = serve_settings(
        sink,
        hostname="mx.example.org",
        config=None,
        tls=None,
        implicit_tls=False,
        max_connections=100,
        read_timeout=None,
    )
    return adapter.Server(settings), sink


def run_asyncio(n: int) -> None:
    """``n`` pipelined 1 KiB messages through the asyncio adapter's protocol."""
    import messages
    from smtp_rtls.io import asyncio as adapter

    async def main() -> None:
        server, sink = _asyncio_server()
        protocol = adapter._SessionProtocol(server)
        protocol.connection_made(_Transport())
        protocol.data_received(messages.EHLO)
        for _ in range(n):
            protocol.data_received(messages.MAIL + messages.RCPT + messages.DATA)
            protocol.data_received(messages.CONTENT)
        protocol.data_received(messages.QUIT)
        if sink.messages != n:
            raise RuntimeError(f"the sink stored {sink.messages} of {n} messages")

    asyncio.run(main())


def run_asyncio_connection(n: int) -> None:
    """``n`` connections of one pipelined 1 KiB message each, asyncio adapter."""
    import messages
    from smtp_rtls.io import asyncio as adapter

    envelope = messages.MAIL + messages.RCPT + messages.DATA

    async def main() -> None:
        server, sink = _asyncio_server()
        for _ in range(n):
            protocol = adapter._SessionProtocol(server)
            transport = _Transport()
            protocol.connection_made(transport)
            protocol.data_received(messages.EHLO)
            protocol.data_received(envelope)
            protocol.data_received(messages.CONTENT)
            protocol.data_received(messages.QUIT)
            if not transport.closing:
                raise RuntimeError("the session did not close its connection after QUIT")
            protocol.connection_lost(None)
        if sink.messages != n:
            raise RuntimeError(f"the sink stored {sink.messages} of {n} messages")

    asyncio.run(main())


def _count(loop: str, n: int, valgrind: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--run",
                loop,
                str(n),
            ],
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{loop} under callgrind failed: {done.stderr[-2000:]}")
    return int(found.group(1))


def per_message(loop: str, n: int, valgrind: str) -> int:
    """Instructions per message of ``loop``: (least of 3 at 2n - least of 3 at n) / n."""
    # once outside valgrind, so that every counted run finds its .pyc files
    subprocess.run([sys.executable, __file__, "--run", loop, "3"], check=True, timeout=600)
    low = min(_count(loop, n, valgrind) for _ in range(3))
    high = min(_count(loop, 2 * n, valgrind) for _ in range(3))
    return (high - low) // n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=2, metavar=("LOOP", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=list(LOOPS))
    parser.add_argument("-n", type=int, default=300, help="messages in the shorter run")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.run:
        loop, count = args.run
        runs = {
            "client": run_client,
            "client-socket": run_client_socket,
            "session": run_session,
            "asyncio": run_asyncio,
            "asyncio-connection": run_asyncio_connection,
        }
        runs[loop](int(count))
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (Debian package valgrind)", file=sys.stderr)
        return 2
    from benchutil import machine, timestamp

    print(f"smtp_rtls bench/instructions.py  {timestamp()}")
    print(f"machine: {machine()}")
    for loop in args.loops:
        print(f"{loop:18s} {per_message(loop, args.n, valgrind):>9,} instructions per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
