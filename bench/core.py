"""Benchmark of the wire core's server side: commands/s, DATA receive MB/s, memory.

Run ``python bench/core.py`` (about a minute) or ``python bench/core.py --quick``.
What it measures, and why, is in bench/README.md.  Every number is the best of
several repetitions measured with :func:`time.perf_counter`; the "floor" of a
DATA measurement is the least work any DATA reader must do on the same reads in
the same run: one ``bytes.find(b"\\r\\n.\\r\\n")`` and one
``bytes.replace(b"\\r\\n.", b"\\r\\n")`` per read.
"""

from __future__ import annotations

import argparse
import base64
import gc
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator

from benchutil import KiB, MiB, best_of, machine, timestamp
from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    Data,
    Ehlo,
    EndOfMessage,
    MailFrom,
    MessageData,
    RcptTo,
    Reply,
    ServerConfig,
    ServerConnection,
)
from smtp_rtls._framing import DataReader

# The typical socket read: what a server's recv() loop asks for at a time.
CHUNK = 64 * KiB

OK = Reply(250, "OK", enhanced="2.0.0")
GO_AHEAD = Reply(354, "End data with <CR><LF>.<CR><LF>")


# -- input -------------------------------------------------------------------------


def _line_block() -> bytes:
    """One read of plausible mail text: 78-column lines, every 10th dot-stuffed.

    It starts at a line start (with a letter, so the block can follow itself)
    and ends in the middle of a line.
    """
    lines: list[bytes] = []
    i = 0
    while sum(len(x) for x in lines) < CHUNK:
        text = f"line {i:06d} " + "lorem ipsum dolor sit amet " * 3
        text = text[:76]
        # RFC 5321 §4.5.2: a content line starting with "." goes on the wire as ".."
        lines.append((".." + text[2:] if i % 10 == 9 else text).encode() + b"\r\n")
        i += 1
    return b"".join(lines)[:CHUNK]


# Two alignments of the reads, because the reader's work differs: a read that
# ends on a line end may be the start of CRLF "." CRLF, so its last two octets
# are held back and joined to the next read; one that ends mid-line is not.
MID_LINE = _line_block()
LINE_END = MID_LINE[: MID_LINE.rindex(b"\r\n") + 2]
BLOCKS = {"mid-line": MID_LINE, "line end": LINE_END}
assert not MID_LINE.endswith((b"\r", b"\r\n", b"\r\n.")) and LINE_END.endswith(b"\r\n")


def data_reads(size: int, block: bytes) -> Iterator[bytes]:
    """The DATA content of a ``size``-octet message as reads of ``block``, then
    the end marker.  The reads are the one pre-built block, so the message as
    a whole never exists in memory."""
    full, tail = divmod(size, len(block))
    for _ in range(full):
        yield block
    # the last read carries the rest of the content and the end of data
    yield block[:tail] + b"\r\n.\r\n"


# -- the application: trivial, it only answers and counts -------------------------


def ready_server() -> ServerConnection:
    """A server past its greeting and EHLO, with no limit on the message size."""
    conn = ServerConnection("mx.example.org", ServerConfig(max_message_size=0))
    conn.send(Reply(220, "mx.example.org ESMTP"))
    conn.receive_data(b"EHLO client.example.org\r\n")
    event = conn.next_event()
    assert isinstance(event, Ehlo), event
    conn.send(Reply(250, "Hello"))
    return conn


def open_data(conn: ServerConnection) -> None:
    """MAIL, RCPT and DATA, answered so that content is expected next."""
    conn.receive_data(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    for kind, reply in ((MailFrom, OK), (RcptTo, OK), (Data, GO_AHEAD)):
        event = conn.next_event()
        assert isinstance(event, kind), event
        conn.send(reply)
    conn.data_to_send()


def receive_message(conn: ServerConnection, reads: Iterator[bytes]) -> int:
    """Feed the reads; return the content octets the application got."""
    got = 0
    for read in reads:
        conn.receive_data(read)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if type(event) is MessageData:
                got += len(event.data)
            elif type(event) is EndOfMessage:
                conn.send(OK)
                return got
            else:
                raise AssertionError(f"unexpected {event!r}")
    raise AssertionError("no EndOfMessage")


def floor_message(reads: Iterator[bytes]) -> int:
    """The floor: the two bytes operations any DATA reader needs, per read."""
    got = 0
    for read in reads:
        end = read.find(b"\r\n.\r\n")
        if end >= 0:
            read = read[: end + 2]
        got += len(read.replace(b"\r\n.", b"\r\n"))
    return got


def expected_octets(size: int, block: bytes) -> int:
    """The unstuffed content length, computed on the whole message at once."""
    if size <= 2 * MiB:
        wire = b"".join(data_reads(size, block))
        return len(wire[: wire.index(b"\r\n.\r\n") + 2].replace(b"\r\n.", b"\r\n"))
    # a block starts with a letter, so no "\r\n." spans two reads
    full, tail = divmod(size, len(block))
    per_block = len(block.replace(b"\r\n.", b"\r\n"))
    return full * per_block + len((block[:tail] + b"\r\n").replace(b"\r\n.", b"\r\n"))


# -- measurements --------------------------------------------------------------------


def batch_for(size: int) -> int:
    """How many messages one timing covers: small ones in batches, so that the
    clock's resolution and one-off costs do not decide the result."""
    return max(1, min(1000, MiB // size))


def best_of_pair(repeats: int, size: int, block: bytes) -> tuple[float, float]:
    """Best of ``repeats`` for ours and for the floor, run alternately so that a
    burst of load from other work on the machine hits both alike."""
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(repeats):
        gc.collect()
        ours.append(time_ours(size, block))
        gc.collect()
        floor.append(time_floor(size, block))
    return min(ours), min(floor)


def time_ours(size: int, block: bytes) -> float:
    """Seconds per message, from its first content read to its EndOfMessage."""
    conn = ready_server()
    expected = expected_octets(size, block)
    elapsed = 0.0
    for _ in range(batch_for(size)):
        open_data(conn)  # not timed: the command exchange is measured apart
        reads = data_reads(size, block)
        start = time.perf_counter()
        got = receive_message(conn, reads)
        elapsed += time.perf_counter() - start
        assert got == expected, (got, expected)
    return elapsed / batch_for(size)


def time_floor(size: int, block: bytes) -> float:
    """Seconds per message for the floor on the same reads."""
    expected = expected_octets(size, block)
    elapsed = 0.0
    for _ in range(batch_for(size)):
        reads = data_reads(size, block)
        start = time.perf_counter()
        got = floor_message(reads)
        elapsed += time.perf_counter() - start
        assert got == expected, (got, expected)
    return elapsed / batch_for(size)


def commands_per_second(repeats: int, groups: int) -> float:
    """Pipelined MAIL / RCPT / RSET groups, fed in CHUNK-sized reads."""
    group = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nRSET\r\n"
    stream = group * groups
    reads = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]

    def run() -> float:
        conn = ready_server()
        commands = 0
        start = time.perf_counter()
        for read in reads:
            conn.receive_data(read)
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                commands += 1
                if event is PAUSED:
                    raise AssertionError("a reply is owed and was not sent")
                if type(event) is MailFrom or type(event) is RcptTo:
                    conn.send(OK)
            conn.data_to_send()
        elapsed = time.perf_counter() - start
        assert commands == 3 * groups, commands
        return elapsed

    return 3 * groups / best_of(repeats, run)


def memory_growth(size: int, block: bytes) -> tuple[int, int]:
    """Peak traced memory growth while receiving a ``size``-octet message, and
    what is still held at its end (both in octets; the input is excluded: the
    reads are the one block made before tracing starts, except the last)."""
    conn = ready_server()
    open_data(conn)
    reads = data_reads(size, block)
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    receive_message(conn, reads)
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base, now - base


# -- the DATA reader alone, per read -------------------------------------------------


def _lines_content(size: int) -> bytes:
    """bench/messages.py's content: 76-octet lines, every tenth dot-stuffed."""
    lines = [(b".." if i % 10 == 9 else b"") + b"y" * 74 + b"\r\n" for i in range(size // 76 + 2)]
    return b"".join(lines)[:size]


def _text_content(size: int) -> bytes:
    """Prose wrapped at 72 columns: full stops everywhere, "..." now and then,
    and about one line in twelve starting with a (stuffed) dot."""
    rng = random.Random(1)
    words = [
        "the", "of", "and", "to", "in", "is", "that", "it", "was", "for", "on", "are",
        "with", "as", "be", "at", "by", "this", "have", "from", "or", "had", "not", "but",
        "what", "all", "were", "when", "we", "there", "can", "an", "your", "which", "their",
        "said", "if", "do", "will", "each", "about", "how", "up", "out", "them", "then",
        "she", "many", "some", "so", "these", "would", "other", "into",
    ]  # fmt: skip
    lines: list[bytes] = []
    total = 0
    while total < size:
        line = ""
        while len(line) < 66:
            word = rng.choice(words) + ("." if rng.random() < 0.12 else "")
            line += ("..." if rng.random() < 0.03 else word) + " "
        if rng.random() < 0.08:
            line = "." + line  # RFC 5321 §4.5.2: stuffed on the wire
        raw = ("." + line if line.startswith(".") else line).encode() + b"\r\n"
        lines.append(raw)
        total += len(raw)
    return b"".join(lines)[:size]


def _base64_content(size: int) -> bytes:
    """An attachment: 76-column base64 lines, no dot at all."""
    raw = random.Random(2).randbytes(size * 3 // 4 + 128)
    return base64.encodebytes(raw).replace(b"\n", b"\r\n")[:size]


CONTENTS: dict[str, Callable[[int], bytes]] = {
    "lines": _lines_content,
    "text": _text_content,
    "base64": _base64_content,
}


def reader_us_per_64k(repeats: int, read: bytes) -> float:
    """CPU microseconds :meth:`DataReader.feed` spends per 64 KiB of ``read``
    (process time: the machine is shared, wall time would count others' work)."""
    number = max(1, (4 * MiB) // len(read))

    def run() -> float:
        start = time.process_time()
        for _ in range(number):
            DataReader().feed(read)
        return time.process_time() - start

    return best_of(repeats, run) / number * 1e6 * CHUNK / len(read)


def reader_table(repeats: int) -> None:
    """The DATA reader alone on reads of each content, beside the floor's two
    bytes operations on the same read."""
    print("DataReader.feed alone, CPU us per 64 KiB (MB/s); floor = find + replace")
    print(f"{'content':>8} {'read':>7} {'no end':>15} {'with the end':>15} {'floor':>15}")
    for name, make in CONTENTS.items():
        for size, label in ((CHUNK, "64 KiB"), (MiB, "1 MiB")):
            read = make(size)
            ended = read[: read.rindex(b"\r\n") + 2] + b".\r\nQUIT\r\n"
            cells = [reader_us_per_64k(repeats, read), reader_us_per_64k(repeats, ended)]
            number = max(1, (4 * MiB) // size)

            def floor(read: bytes = read, number: int = number) -> float:
                start = time.process_time()
                for _ in range(number):
                    read.find(b"\r\n.\r\n")
                    read.replace(b"\r\n.", b"\r\n")
                return time.process_time() - start

            cells.append(best_of(repeats, floor) / number * 1e6 * CHUNK / size)
            text = " ".join(f"{us:7.1f} ({CHUNK / us:5.0f})" for us in cells)
            print(f"{name:>8} {label:>7} {text}")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 8 MiB not 50")
    parser.add_argument("--reader", action="store_true", help="only the DataReader table")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    big = 8 * MiB if args.quick else 50 * MiB
    now = timestamp()
    print(f"smtp_rtls bench/core.py  {now}")
    print(f"machine: {machine()}")
    print(f"read size: {CHUNK // KiB} KiB; best of {repeats}\n")
    reader_table(repeats)
    if args.reader:
        return 0

    cps = commands_per_second(repeats, 2000 if args.quick else 10000)
    print(f"pipelined MAIL/RCPT/RSET: {cps:,.0f} commands/s\n")

    header = f"{'message':>8} {'reads end':>10} {'ours MB/s':>10} {'floor MB/s':>11}"
    print(f"{header} {'ours/floor':>11}  target")
    failed = False
    for size, label in ((KiB, "1 KiB"), (MiB, "1 MiB"), (big, f"{big // MiB} MiB")):
        for where, block in BLOCKS.items():
            ours, floor = best_of_pair(repeats, size, block)
            ratio = ours / floor
            target = "<= 2x" if size >= MiB else "-"
            ok = "" if size < MiB or ratio <= 2.0 else "  MISSED"
            failed |= bool(ok)
            print(
                f"{label:>8} {where:>10} {size / ours / 1e6:>10.1f} {size / floor / 1e6:>11.1f}"
                f" {ratio:>10.2f}x  {target}{ok}"
            )

    limit = 4 * CHUNK
    print(f"\nmemory while receiving {big // MiB} MiB (target: peak growth < 4x the read size)")
    for where, block in BLOCKS.items():
        peak, held = memory_growth(big, block)
        verdict = "ok" if peak < limit else "MISSED"
        print(
            f"  reads end {where:>8}: peak growth {peak / KiB:.0f} KiB"
            f" = {peak / CHUNK:.2f}x the read size ({verdict});"
            f" held after the message {held / KiB:.1f} KiB"
        )
        failed |= peak >= limit
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
