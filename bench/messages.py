"""Protocol work per 1 KiB message, no event loop: the core beside two references.

    python bench/messages.py [--quick] [--profile SCENARIO | --profile-session SCENARIO]

The reads a load generator sends are built once and fed to a server with no
sockets and no event loop, so what is timed is the protocol work alone:
parsing, checks, events, the application's answers and the reply bytes.
Three servers take the same reads, timed alternately in each repetition:

* **responder**: the least an SMTP server can do: canned reply bytes chosen
  by the first letters of a line, the end of DATA found with one
  ``bytes.find``, the content unstuffed with one ``bytes.replace``.  No
  checks, no events.
* **toy core**: a minimal Sans-IO core: it splits lines, builds an event
  object per command with its argument parsed (the path between angle
  brackets), asks a trivial application for a reply object and formats the
  reply's bytes.  It checks nothing either; it is the cost of the
  Sans-IO shape itself.
* **ours**: :class:`smtp_rtls.ServerConnection` with every check, behind an
  application that answers 250 / 354 and counts the content octets.
* **ours + session**: what ``serve()`` runs per connection: a
  :class:`~smtp_rtls.session.server.ServerSession` with the
  :class:`~smtp_rtls.handlers.Sink` handler, its requests fulfilled by a
  plain loop (reads from the list, writes dropped, handler calls made).

Scenarios (each message is MAIL, one RCPT, DATA, 1 KiB of content, the end):

* **pipelined**: RFC 2920 groups: MAIL, RCPT and DATA in one read, the
  content and its end in the next; many messages per connection.
* **lock-step**: one command per read, the content and its end in one read.
* **connection**: a connection per message: greeting, EHLO, the lock-step
  message and QUIT, with a new server object each time.

The result is microseconds per message and the ratio ``ours / toy core``
(issue 10's target: at most 2x in each scenario).  Ratios are taken within
a repetition and reported as median (min-max).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable

from benchutil import machine, timestamp
from smtp_rtls import (
    NEED_DATA,
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
)
from smtp_rtls.handlers import Sink
from smtp_rtls.session.server import Call, Read, ServerSession

GREETING = Reply(220, "mx.example.org ESMTP")
HELLO = Reply(250, "mx.example.org")
OK = Reply(250, "OK", enhanced="2.0.0")
GO_AHEAD = Reply(354, "End data with <CR><LF>.<CR><LF>")
BYE = Reply(221, "Bye", enhanced="2.0.0")


def _content(size: int = 1024) -> bytes:
    """About ``size`` octets of 78-column text, every tenth line dot-stuffed."""
    lines = []
    total = i = 0
    while total < size:
        line = (b".." if i % 10 == 9 else b"") + b"y" * 74 + b"\r\n"
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)


CONTENT = _content() + b".\r\n"
EHLO = b"EHLO client.example.org\r\n"
MAIL = b"MAIL FROM:<alice@example.org> SIZE=1100 BODY=8BITMIME\r\n"
RCPT = b"RCPT TO:<bob@example.net>\r\n"
DATA = b"DATA\r\n"
QUIT = b"QUIT\r\n"

SCENARIOS: dict[str, list[bytes]] = {
    "pipelined": [MAIL + RCPT + DATA, CONTENT],
    "lock-step": [MAIL, RCPT, DATA, CONTENT],
    "connection": [EHLO, MAIL, RCPT, DATA, CONTENT, QUIT],
}


# -- ours ---------------------------------------------------------------------------

CONFIG = ServerConfig()


def _ours_session(conn: ServerConnection, reads: list[bytes]) -> int:
    got = 0
    for read in reads:
        conn.receive_data(read)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            kind = type(event)
            if kind is ConnectionClosed:
                break
            if kind is MessageData:
                got += len(event.data)  # type: ignore[union-attr]
            elif kind is MailFrom or kind is RcptTo:
                conn.send(OK)
            elif kind is Data:
                conn.send(GO_AHEAD)
            elif kind is EndOfMessage:
                conn.send(OK)
            elif kind is Ehlo:
                conn.send(HELLO)
            elif kind is Quit or kind is Rset:
                pass  # the connection answers these itself
            else:
                raise AssertionError(f"unexpected {event!r}")
        conn.data_to_send()
    return got


def ours(scenario: str, n: int) -> int:
    """Run ``n`` messages through ServerConnection; return the content octets."""
    reads = SCENARIOS[scenario]
    got = 0
    if scenario == "connection":
        for _ in range(n):
            conn = ServerConnection("mx.example.org", CONFIG)
            conn.send(GREETING)
            got += _ours_session(conn, reads)
        return got
    conn = ServerConnection("mx.example.org", CONFIG)
    conn.send(GREETING)
    _ours_session(conn, [EHLO])
    for _ in range(n):
        got += _ours_session(conn, reads)
    return got


# -- ours, with the session layer and a handler -----------------------------------


def _run_session(sink: Sink, reads: list[bytes], until_closed: bool) -> None:
    # What an adapter's loop does (smtp_rtls.io.sync's _Stream.drive), less
    # the sockets: the requests by frequency, a handler's exception as the
    # result.
    session = ServerSession(sink, "mx.example.org", CONFIG)
    send = session.run().send
    result: object = None
    feed = iter(reads)
    try:
        while True:
            request = send(result)
            kind = type(request)
            if kind is Call:
                try:
                    result = getattr(request.target, request.method)(*request.args)  # type: ignore[union-attr]
                except Exception as exc:
                    result = exc
            elif kind is Read:
                result = next(feed, b"")
            else:
                result = None
    except StopIteration:
        pass


def session(scenario: str, n: int) -> int:
    """Run ``n`` messages through ServerSession + Sink; return the content octets."""
    reads = SCENARIOS[scenario]
    sink = Sink()
    if scenario == "connection":
        for _ in range(n):
            _run_session(sink, reads, True)
    else:
        # one session: the greeting and EHLO, then n messages, then the end
        _run_session(sink, [EHLO, *(reads * n)], False)
    assert sink.messages == n, (sink.messages, n)
    return sink.octets


# -- the responder ----------------------------------------------------------------

_CANNED = {
    b"EH": b"250-mx.example.org\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n",
    b"MA": b"250 2.1.0 OK\r\n",
    b"RC": b"250 2.1.5 OK\r\n",
    b"DA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"QU": b"221 2.0.0 Bye\r\n",
}


def responder(scenario: str, n: int) -> int:
    """The least an SMTP server does with the same reads."""
    reads = SCENARIOS[scenario]
    got = 0
    for _ in range(n):
        out = []
        in_data = False
        for read in reads:
            if in_data:
                end = read.find(b"\r\n.\r\n")
                got += len(read[: end + 2].replace(b"\r\n..", b"\r\n."))
                out.append(b"250 2.0.0 OK\r\n")
                in_data = False
                continue
            for line in read.split(b"\r\n")[:-1]:
                out.append(_CANNED[line[:2]])
                in_data = line == b"DATA"
        b"".join(out)
    return got


# -- the toy Sans-IO core ---------------------------------------------------------


class _Command:
    __slots__ = ("arg", "verb")

    def __init__(self, verb: str, arg: str) -> None:
        self.verb = verb
        self.arg = arg


class _ToyReply:
    __slots__ = ("code", "text")

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text

    def format(self) -> bytes:
        return f"{self.code} {self.text}\r\n".encode()


class ToyCore:
    """Lines to event objects, reply objects to bytes; no checks at all."""

    def __init__(self) -> None:
        self.buf = b""
        self.in_data = False
        self.out: list[bytes] = []

    def receive_data(self, data: bytes) -> None:
        self.buf += data

    def next_event(self) -> object:
        if self.in_data:
            end = self.buf.find(b"\r\n.\r\n")
            if end < 0:
                return None
            content = self.buf[: end + 2].replace(b"\r\n..", b"\r\n.")
            self.buf = self.buf[end + 5 :]
            self.in_data = False
            return content
        end = self.buf.find(b"\r\n")
        if end < 0:
            return None
        line = self.buf[:end].decode("ascii")
        self.buf = self.buf[end + 2 :]
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb in ("MAIL", "RCPT"):
            start = arg.find("<")
            arg = arg[start + 1 : arg.find(">", start)]
        elif verb == "DATA":
            self.in_data = True
        return _Command(verb, arg)

    def send(self, reply: _ToyReply) -> None:
        self.out.append(reply.format())


_TOY_REPLIES = {
    "EHLO": _ToyReply(250, "mx.example.org"),
    "MAIL": _ToyReply(250, "2.1.0 OK"),
    "RCPT": _ToyReply(250, "2.1.5 OK"),
    "DATA": _ToyReply(354, "End data with <CR><LF>.<CR><LF>"),
    "QUIT": _ToyReply(221, "2.0.0 Bye"),
}
_TOY_END = _ToyReply(250, "2.0.0 OK")


def toy(scenario: str, n: int) -> int:
    """Run ``n`` messages through the toy core."""
    reads = SCENARIOS[scenario]
    got = 0
    core = ToyCore()
    for _ in range(n):
        if scenario == "connection":
            core = ToyCore()
        for read in reads:
            core.receive_data(read)
            while (event := core.next_event()) is not None:
                if type(event) is bytes:
                    got += len(event)
                    core.send(_TOY_END)
                else:
                    core.send(_TOY_REPLIES[event.verb])  # type: ignore[attr-defined]
            b"".join(core.out)
            core.out.clear()
    return got


# -- timing -----------------------------------------------------------------------

CONTENDERS: dict[str, Callable[[str, int], int]] = {
    "responder": responder,
    "toy core": toy,
    "ours": ours,
    "ours + session": session,
}


def measure(scenario: str, n: int, repeats: int) -> dict[str, list[float]]:
    """Microseconds per message for each contender, alternating, per repetition."""
    expected = responder(scenario, 1)
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for r in range(repeats):
        names = list(CONTENDERS)
        # rotate the order so that no contender always runs first (after a pause)
        names = names[r % len(names) :] + names[: r % len(names)]
        for name in names:
            start = time.perf_counter()
            got = CONTENDERS[name](scenario, n)
            elapsed = time.perf_counter() - start
            assert got == expected * n, (name, got, expected * n)
            times[name].append(elapsed / n * 1e6)
    return times


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and repeats")
    parser.add_argument("--profile", choices=sorted(SCENARIOS), help="cProfile ours and exit")
    parser.add_argument(
        "--profile-session",
        choices=sorted(SCENARIOS),
        help="cProfile ours + session (ServerSession with the Sink) and exit",
    )
    args = parser.parse_args()
    n = 2000 if args.quick else 10000
    repeats = 5 if args.quick else 11
    if args.profile or args.profile_session:
        profile = cProfile.Profile()
        if args.profile:
            profile.runcall(ours, args.profile, n)
        else:
            profile.runcall(session, args.profile_session, n)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return 0
    print(f"smtp_rtls bench/messages.py  {timestamp()}")
    print(f"machine: {machine()}")
    print(f"{n} messages of 1 KiB per run, {repeats} alternated repetitions\n")
    print(
        "| scenario | responder µs | toy core µs | ours µs | ours + session µs"
        " | ours / toy | (ours + session) / toy | target: ours <= 2x toy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    missed = False
    for scenario in SCENARIOS:
        times = measure(scenario, n, repeats)
        toy_times = times["toy core"]
        ratios = [o / t for o, t in zip(times["ours"], toy_times, strict=True)]
        with_session = [o / t for o, t in zip(times["ours + session"], toy_times, strict=True)]
        met = statistics.median(ratios) <= 2.0
        missed |= not met
        print(
            f"| {scenario} | {_spread(times['responder'])} | {_spread(toy_times)}"
            f" | {_spread(times['ours'])} | {_spread(times['ours + session'])}"
            f" | {_spread(ratios)}x | {_spread(with_session)}x | {'met' if met else 'missed'} |"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
