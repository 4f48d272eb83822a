"""Receive a message over loopback: smtp_rtls's ServerConnection beside aiosmtpd.

    python bench/server_peers.py [--quick]

One raw-socket sender writes the same dot-stuffed message to two servers on
127.0.0.1 and times DATA: from the 354 to the 250 after the final dot.

* ours: a ServerConnection in a plain blocking loop (one thread, 64 KiB
  reads), whose application only counts the content octets;
* aiosmtpd: its Controller (asyncio) with a handler that returns 250.

Both include the sockets and the kernel, so the ratio says what a user gets
end to end, not what the parser costs alone (bench/core.py measures that).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller

from benchutil import MiB, machine, timestamp
from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    Ehlo,
    MessageData,
    Reply,
    ServerConfig,
    ServerConnection,
)


def message(size: int) -> bytes:
    """``size`` octets of 78-column lines, every tenth one dot-stuffed."""
    lines = []
    total = 0
    i = 0
    while total < size:
        line = (b".." if i % 10 == 0 else b"") + b"x" * 74 + b"\r\n"
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)


def serve_ours(listener: socket.socket, stop: threading.Event) -> None:
    """Serve sessions until ``stop``; the application counts content octets."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            continue
        with sock:
            conn = ServerConnection("bench.test", ServerConfig(max_message_size=0))
            sock.sendall(conn.send(Reply(220, "bench.test ESMTP")))
            octets = 0
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    sock.sendall(conn.data_to_send())
                    conn.receive_data(sock.recv(65536))
                elif event is PAUSED:
                    pending = conn.pending
                    code = 354 if isinstance(pending, Data) else 250
                    reply = Reply(code, "hi") if isinstance(pending, Ehlo) else Reply(code, "ok")
                    sock.sendall(conn.send(reply))
                elif isinstance(event, MessageData):
                    octets += len(event.data)
                elif isinstance(event, ConnectionClosed):
                    sock.sendall(conn.data_to_send())
                    break


class Sink:
    """aiosmtpd handler: accept and drop."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def read_reply(sock: socket.socket) -> bytes:
    data = b""
    while True:
        data += sock.recv(65536)
        lines = data.split(b"\r\n")
        if len(lines) > 1 and all(len(ln) >= 4 for ln in lines[:-1]) and lines[-2][3:4] == b" ":
            return data


def time_data(port: int, body: bytes) -> float:
    """Seconds from the 354 to the reply after the final dot."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        read_reply(sock)
        sock.sendall(b"EHLO bench.client\r\n")
        read_reply(sock)
        sock.sendall(b"MAIL FROM:<a@example.org>\r\n")
        read_reply(sock)
        sock.sendall(b"RCPT TO:<b@example.net>\r\n")
        read_reply(sock)
        sock.sendall(b"DATA\r\n")
        assert read_reply(sock).startswith(b"354")
        start = time.perf_counter()
        sock.sendall(body + b".\r\n")
        reply = read_reply(sock)
        elapsed = time.perf_counter() - start
        assert reply.startswith(b"250"), reply
        sock.sendall(b"QUIT\r\n")
        read_reply(sock)
    return elapsed


def best(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller messages")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    sizes = (MiB, 8 * MiB) if args.quick else (MiB, 32 * MiB)
    now = timestamp()
    print(f"smtp_rtls bench/server_peers.py  {now}")
    print(f"machine: {machine()}; best of {repeats}")

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    ours_thread = threading.Thread(target=serve_ours, args=(listener, stop), daemon=True)
    ours_thread.start()
    with socket.socket() as probe:  # aiosmtpd's Controller needs a port number up front
        probe.bind(("127.0.0.1", 0))
        peer_port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=peer_port, data_size_limit=None)
    controller.start()
    try:
        ours_port = listener.getsockname()[1]
        print(f"\n{'message':>10} {'ours MB/s':>10} {'aiosmtpd MB/s':>14} {'aiosmtpd/ours':>14}")
        for size in sizes:
            body = message(size)
            ours = peer = float("inf")
            for _ in range(repeats):  # in turn, so a burst of load hits both alike
                ours = min(ours, time_data(ours_port, body))
                peer = min(peer, time_data(peer_port, body))
            print(
                f"{size // MiB:>6} MiB {size / ours / 1e6:>10.1f} {size / peer / 1e6:>14.1f}"
                f" {peer / ours:>13.2f}x"
            )
    finally:
        controller.stop()
        stop.set()
        ours_thread.join(10)
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
