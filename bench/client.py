"""Benchmark of the wire core's client side: replies/s, DATA send MB/s, transactions/s.

Run ``python bench/client.py`` (about a minute) or ``python bench/client.py --quick``.
Every number is the best of several repetitions timed with
:func:`time.perf_counter`.  The "floor" of a DATA measurement is the least work
any DATA writer must do on the same chunks: one
``bytes.replace(b"\\r\\n.", b"\\r\\n..")`` per chunk (dot-stuffing, RFC 5321
§4.5.2), with no line-end normalisation and no state across chunks.

The linked-pair figures run a ClientConnection and a ServerConnection against
each other in memory, with a server application that accepts everything: they
measure both halves of the core together, nothing of the network.

The "blocking client, no kernel" figures run ``smtp_rtls.io.sync.Client``
(``send()``, and ``connect()``'s greeting and EHLO plus ``quit()`` for a
connection per message) on an in-memory socket that answers like the
suite's raw responder: the client's own work per message (the core, the
session operation, the adapter), without system calls or a server.
"""

from __future__ import annotations

import argparse
import gc
import smtplib
import sys
import time

from benchutil import KiB, MiB, best_of, machine, timestamp
from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    Reply,
    Rset,
    ServerConfig,
    ServerConnection,
    StartTLS,
    TLSInfo,
)
from smtp_rtls._client import ClientConnection
from smtp_rtls.io import sync
from smtp_rtls.session import client as client_ops

# What an application typically hands over at a time (one file read).
CHUNK = 64 * KiB

EHLO_REPLY = Reply(
    250,
    [
        "mx.example.org greets client.example.org",
        "PIPELINING",
        "SIZE 67108864",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "DSN",
        "ENHANCEDSTATUSCODES",
        "REQUIRETLS",
        "AUTH PLAIN LOGIN",
        "X-EXTENSION one two",
        "HELP",
    ],
).format()
assert EHLO_REPLY.count(b"\r\n") == 12


def _content_block() -> bytes:
    """One chunk of plausible mail text: 78-column lines, every 10th starting
    with a dot (so it gets stuffed); it ends in the middle of a line."""
    lines: list[bytes] = []
    i = 0
    while sum(len(x) for x in lines) < CHUNK:
        text = (f"line {i:06d} " + "lorem ipsum dolor sit amet " * 3)[:76]
        lines.append(("." + text[1:] if i % 10 == 9 else text).encode() + b"\r\n")
        i += 1
    return b"".join(lines)[:CHUNK]


BLOCK = _content_block()


def chunks(size: int) -> list[bytes]:
    full, tail = divmod(size, CHUNK)
    return [BLOCK] * full + ([BLOCK[:tail]] if tail else [])


# -- measurements --------------------------------------------------------------------


def ready_client(*extensions: str) -> ClientConnection:
    conn = ClientConnection("client.example.org")
    conn.receive_data(b"220 mx.example.org ESMTP\r\n")
    conn.next_event()
    conn.send(Ehlo("client.example.org"))
    conn.receive_data(Reply(250, ["mx.example.org", *extensions]).format())
    assert isinstance(conn.next_event(), Reply)
    return conn


def replies_per_second(repeats: int, n: int) -> float:
    """12-line replies read and matched: n pipelined RSETs, each answered with
    the 12-line EHLO reply text, fed in CHUNK-sized reads."""
    stream = EHLO_REPLY * n
    reads = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]

    def run() -> float:
        conn = ready_client("PIPELINING")
        for _ in range(n):
            conn.send(Rset())
        got = 0
        start = time.perf_counter()
        for read in reads:
            conn.receive_data(read)
            while conn.next_event() is not NEED_DATA:
                got += 1
        elapsed = time.perf_counter() - start
        assert got == n
        return elapsed

    return n / best_of(repeats, run)


def ehlo_round_trips(repeats: int, n: int) -> float:
    """send(Ehlo) + the 12-line reply + its Capabilities, one at a time."""

    def run() -> float:
        conn = ready_client()
        ehlo = Ehlo("client.example.org")
        start = time.perf_counter()
        for _ in range(n):
            conn.send(ehlo)
            conn.receive_data(EHLO_REPLY)
            conn.next_event()
        elapsed = time.perf_counter() - start
        assert conn.capabilities is not None and "REQUIRETLS" in conn.capabilities
        return elapsed

    return n / best_of(repeats, run)


def in_data() -> ClientConnection:
    conn = ready_client("PIPELINING")
    for event in (MailFrom("a@example.org"), RcptTo("b@example.net"), Data()):
        conn.send(event)
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    while conn.next_event() is not NEED_DATA:
        pass
    return conn


def time_send(size: int) -> float:
    """Seconds to write a ``size``-octet message: MessageData per chunk + end."""
    parts = chunks(size)
    batch = max(1, min(1000, MiB // size))
    elapsed = 0.0
    for _ in range(batch):
        conn = in_data()
        start = time.perf_counter()
        out = 0
        for part in parts:
            out += len(conn.send(MessageData(part)))
        out += len(conn.send(EndOfMessage()))
        elapsed += time.perf_counter() - start
        assert out > size
    return elapsed / batch


def time_floor(size: int) -> float:
    parts = chunks(size)
    batch = max(1, min(1000, MiB // size))
    elapsed = 0.0
    for _ in range(batch):
        start = time.perf_counter()
        out = 0
        for part in parts:
            out += len(part.replace(b"\r\n.", b"\r\n.."))
        elapsed += time.perf_counter() - start
        assert out >= size
    return elapsed / batch


def time_smtplib(size: int) -> float:
    """The peer: what the standard library's SMTP.data() does to a bytes
    message before writing it (dot-stuffing with one regular expression; it
    does not normalise line ends of bytes), on the whole message at once, as
    smtplib always works."""
    message = b"".join(chunks(size))
    batch = max(1, min(1000, MiB // size))
    elapsed = 0.0
    for _ in range(batch):
        start = time.perf_counter()
        out = smtplib._quote_periods(message)  # type: ignore[attr-defined]
        elapsed += time.perf_counter() - start
        assert len(out) >= size
    return elapsed / batch


def best_of_three(repeats: int, size: int) -> tuple[float, float, float]:
    """Ours, the floor and smtplib, in turn, so a burst of load hits all alike."""
    ours, floor, peer = [], [], []
    for _ in range(repeats):
        gc.collect()
        ours.append(time_send(size))
        gc.collect()
        floor.append(time_floor(size))
        gc.collect()
        peer.append(time_smtplib(size))
    return min(ours), min(floor), min(peer)


# -- the linked pair -----------------------------------------------------------------

TLS = TLSInfo(version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256", bits=128)
OK = Reply(250, "OK", enhanced="2.0.0")


def answer(event: object) -> Reply:
    if isinstance(event, Data):
        return Reply(354, "go ahead")
    if isinstance(event, StartTLS):
        return Reply(220, "go ahead", enhanced="2.0.0")
    if isinstance(event, Ehlo):
        return Reply(250, "hello")
    return OK


def relay(client: ClientConnection, server: ServerConnection, data: bytes) -> int:
    """Client bytes to the server, the server's answers back; return the
    number of replies the client read."""
    if data:
        server.receive_data(data)
    out = bytearray()
    while True:
        event = server.next_event()
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            break
        if event is PAUSED:
            owed = server.pending
            out += server.send(answer(owed))
            if isinstance(owed, StartTLS):
                server.start_tls(TLS)
        else:
            out += server.data_to_send()
    replies = 0
    if out:
        client.receive_data(bytes(out))
        while True:
            reply = client.next_event()
            if reply is NEED_DATA:
                break
            replies += 1
            assert isinstance(reply, Reply) and reply.code < 400, reply
            if reply.command == "STARTTLS":
                client.start_tls(TLS)
    return replies


def transaction(recipients: int, body: bytes) -> None:
    """One session: greeting, EHLO, STARTTLS, EHLO, MAIL ... REQUIRETLS, the
    recipients (pipelined), DATA, the content, QUIT."""
    server = ServerConnection("mx.example.org", ServerConfig(starttls=True))
    client = ClientConnection("client.example.org")
    client.receive_data(server.send(Reply(220, "mx.example.org ESMTP")))
    client.next_event()
    relay(client, server, client.send(Ehlo("client.example.org")))
    relay(client, server, client.send(StartTLS()))
    relay(client, server, client.send(Ehlo("client.example.org")))
    group = client.send(MailFrom("alice@example.org", requiretls=True))
    for i in range(recipients):
        group += client.send(RcptTo(f"rcpt{i}@example.net"))
    group += client.send(Data())
    assert relay(client, server, group) == recipients + 2
    content = client.send(MessageData(body)) + client.send(EndOfMessage())
    assert relay(client, server, content) == 1
    relay(client, server, client.send(Quit()))


def transactions_per_second(repeats: int, n: int, recipients: int) -> float:
    body = BLOCK[: 2 * KiB] + b"\r\n"

    def run() -> float:
        start = time.perf_counter()
        for _ in range(n):
            transaction(recipients, body)
        return time.perf_counter() - start

    return n / best_of(repeats, run)


# -- the blocking client on an in-memory socket --------------------------------------

_FAKE_EHLO = b"250-bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 67108864\r\n"


class FakeSocket:
    """Answers like bench/suite/raw.py: canned replies, the end of the
    content found with one search over the last octets."""

    def __init__(self) -> None:
        self.out = [b"220 bench.test ESMTP raw\r\n"]
        self.in_data = False
        self.tail = b""
        self.closed = False

    def settimeout(self, timeout: float | None) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        if self.in_data:
            self.tail = (self.tail + data[-5:])[-5:]
            if self.tail == b"\r\n.\r\n":
                self.in_data = False
                self.out.append(b"250 2.0.0 queued\r\n")
            return
        replies = []
        for line in data.split(b"\r\n")[:-1]:
            verb = line[:4].upper()
            if verb == b"EHLO":
                replies.append(_FAKE_EHLO)
            elif verb == b"DATA":
                replies.append(b"354 go ahead\r\n")
                self.in_data = True
                self.tail = b"\r\n"
            elif verb == b"QUIT":
                replies.append(b"221 2.0.0 bye\r\n")
            else:
                replies.append(b"250 2.0.0 OK\r\n")
        self.out.append(b"".join(replies))

    def recv(self, max_bytes: int) -> bytes:
        return self.out.pop(0)

    def shutdown(self, how: int) -> None:
        pass

    def fileno(self) -> int:
        return -1 if self.closed else 3

    def close(self) -> None:
        self.closed = True


def fake_client() -> sync.Client:
    """What sync.connect() does after the TCP connection, on a FakeSocket."""
    conn = ClientConnection("client.bench.test")
    timeouts = client_ops.uniform(30.0)
    client = sync.Client(
        FakeSocket(),  # type: ignore[arg-type]
        conn,
        server_hostname="bench.test",
        timeouts=timeouts,
    )
    client.greeting = client._run(client_ops.greet(conn, timeouts))
    client.ehlo()
    return client


def client_send_us(repeats: int, n: int, per_message: bool) -> float:
    """µs of client work per 1 KiB message sent with Client.send()."""
    body = BLOCK[:KiB] + b"\r\n"

    def run() -> float:
        start = time.perf_counter()
        if per_message:
            for _ in range(n):
                client = fake_client()
                assert client.send("sender@bench.test", ["rcpt@bench.test"], body).accepted
                client.quit()
        else:
            client = fake_client()
            for _ in range(n):
                assert client.send("sender@bench.test", ["rcpt@bench.test"], body).accepted
            client.quit()
        return time.perf_counter() - start

    return best_of(repeats, run) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 8 MiB not 50")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    big = 8 * MiB if args.quick else 50 * MiB
    scale = 1 if args.quick else 5
    now = timestamp()
    print(f"smtp_rtls bench/client.py  {now}")
    print(f"machine: {machine()}")
    print(f"content chunk: {CHUNK // KiB} KiB; best of {repeats}\n")

    rps = replies_per_second(repeats, 2000 * scale)
    ehlo = ehlo_round_trips(repeats, 1000 * scale)
    print(f"12-line replies read (pipelined):   {rps:>10,.0f} replies/s")
    print(f"EHLO sent + 12-line reply + caps:   {ehlo:>10,.0f} round trips/s\n")

    print(
        f"{'message':>10} {'ours MB/s':>11} {'floor MB/s':>11} {'smtplib MB/s':>13}"
        f" {'ours/floor':>11} {'smtplib/ours':>13}  target"
    )
    failed = False
    for size, label in ((KiB, "1 KiB"), (MiB, "1 MiB"), (big, f"{big // MiB} MiB")):
        ours, floor, peer = best_of_three(repeats, size)
        ratio = ours / floor
        target = "<= 2x" if size >= MiB else "-"
        missed = "  MISSED" if size >= MiB and ratio > 2.0 else ""
        failed |= bool(missed)
        print(
            f"{label:>10} {size / ours / 1e6:>11.1f} {size / floor / 1e6:>11.1f}"
            f" {size / peer / 1e6:>13.1f} {ratio:>10.2f}x {peer / ours:>12.2f}x  {target}{missed}"
        )

    one = transactions_per_second(repeats, 200 * scale, 1)
    hundred = transactions_per_second(repeats, 20 * scale, 100)
    print("\nlinked pair, whole sessions (EHLO, STARTTLS, EHLO, MAIL REQUIRETLS, RCPT..., DATA")
    print("with 2 KiB of content, QUIT), client and server in one process:")
    print(f"  1 recipient:                 {one:>8,.0f} sessions/s")
    print(f"  100 recipients, pipelined:   {hundred:>8,.0f} sessions/s")

    session = client_send_us(repeats, 2000 * scale, per_message=False)
    per_connection = client_send_us(repeats, 1000 * scale, per_message=True)
    print("\nblocking client, no kernel (sync.Client on an in-memory socket), 1 KiB messages:")
    print(f"  one session:                 {session:>8.1f} µs per message")
    print(f"  a connection per message:    {per_connection:>8.1f} µs per message")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
