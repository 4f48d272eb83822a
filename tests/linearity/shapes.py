"""Adversarial input shapes for the cost-is-linear checks (issue 11).

Each :class:`Shape` builds, for a size in octets, a connection already in
the state the input needs (past the greeting and EHLO; for some, inside a
transaction or DATA) and the input itself, cut into reads; running the case
feeds the reads the way an adapter does (``receive_data``, then
``next_event`` until NEED_DATA, an application answering every decision
with a fixed reply) and counts what came out.  Only the run is measured:
everything :meth:`Shape.prepare` does is set-up.

The same cases serve ``bench/linearity.py`` (CPU time per octet) and
``tests/test_linearity.py`` (instruction counts under callgrind, through
``worker.py``); :meth:`Case.check` makes sure a run did consume all its
input the intended way, so that no shape is "linear" because the
connection stopped reading early.

Some shapes raise a limit above its default (``max_errors=0``, a huge
``max_recipients`` or ``max_reply_lines``): with the default the
connection would stop or refuse early, which is cheap; what is measured is
the work of reading when a configuration lets the input go on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    Bdat,
    ClientConnection,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    MailFrom,
    Noop,
    RcptTo,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
)

KiB = 1024
MiB = 1024 * KiB
#: What the adapters ask recv() for at a time.
READ = 64 * KiB

OK = Reply(250, "OK", "2.0.0")
_ANSWERS: dict[type, Reply] = {
    Ehlo: Reply(250, "Hello"),
    type(None): Reply(220, "mx.example.org ESMTP"),
    MailFrom: OK,
    RcptTo: OK,
    Data: Reply(354, "Go ahead"),
    Bdat: OK,
    EndOfMessage: OK,
}

# Refusals must not end the session (RFC 5321 §4.1.4 lets a server go on
# after a 5xx; max_errors=0 turns the 421 cut-off off), nor may recipients
# run out, so that every octet of the input is read.
LOOSE = ServerConfig(max_errors=0, max_recipients=10**9)
NORMALISE = ServerConfig(max_errors=0, bare_line_endings="normalise")
DOMAIN = b"example.org"


def _mail_limit(config: ServerConfig) -> int:
    return config.mail_line_limit(config.offered(tls=False))


def _rcpt_limit(config: ServerConfig) -> int:
    return config.rcpt_line_limit(config.offered(tls=False))


def _pad(head: bytes, filler: bytes, tail: bytes, length: int) -> bytes:
    """``head + filler * k + tail`` as close to ``length`` octets as fits."""
    k = (length - len(head) - len(tail)) // len(filler)
    line = head + filler * k + tail
    assert len(line) <= length, (line[:40], length)
    return line


def reads_of(data: bytes, read: int) -> list[bytes]:
    """``data`` cut into reads of ``read`` octets."""
    return [data[i : i + read] for i in range(0, len(data), read)]


# -- the two sides, driven as an adapter drives them ------------------------------


def drive_server(conn: ServerConnection, reads: list[bytes]) -> Counter[str]:
    """Feed ``reads``; count the events (refusals by reply code)."""
    seen: Counter[str] = Counter()
    for read in reads:
        conn.receive_data(read)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:
                # a decision's reply is owed (for a BDAT chunk, once its
                # octets are read): the application gives its fixed answer
                conn.send(_ANSWERS[type(conn.pending)])
                continue
            kind = type(event)
            if kind is CommandRejected:
                assert isinstance(event, CommandRejected)
                seen[f"rejected {event.reply.code}"] += 1
            else:
                seen[kind.__name__] += 1
            if kind is ConnectionClosed:
                return seen
        conn.data_to_send()
    return seen


def drive_client(conn: ClientConnection, reads: list[bytes]) -> Counter[str]:
    """Feed ``reads``; count the replies by command, and a protocol error
    (after which an adapter closes: the rest is not fed)."""
    seen: Counter[str] = Counter()
    for read in reads:
        conn.receive_data(read)
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError:
                seen["error"] += 1
                return seen
            if event is NEED_DATA:
                break
            if isinstance(event, Reply):
                seen[f"reply {event.command}"] += 1
            else:
                seen[type(event).__name__] += 1
    return seen


# -- connections in the state a shape needs -----------------------------------------


def server_at(stage: str, config: ServerConfig) -> ServerConnection:
    """A server past EHLO; with ``stage`` "mail" after an accepted MAIL,
    "rcpt" after an accepted RCPT, "data" after the 354."""
    conn = ServerConnection("mx.example.org", config)
    setup = b"EHLO client.example.net\r\n"
    if stage in ("mail", "rcpt", "data"):
        setup += b"MAIL FROM:<a@example.org>\r\n"
    if stage in ("rcpt", "data"):
        setup += b"RCPT TO:<b@example.net>\r\n"
    if stage == "data":
        setup += b"DATA\r\n"
    seen = drive_server(conn, [setup])
    assert sum(seen.values()) == setup.count(b"\r\n"), seen
    return conn


def client_waiting(verb: str, max_reply_lines: int, rcpts: int = 0) -> ClientConnection:
    """A client past the greeting and EHLO that sent ``verb`` ("NOOP",
    "EHLO", or "MAIL" then ``rcpts`` pipelined RCPTs) and waits for replies."""
    conn = ClientConnection("client.example.net", max_reply_lines=max_reply_lines)
    conn.receive_data(b"220 mx.example.org ESMTP\r\n")
    assert isinstance(conn.next_event(), Reply)
    conn.send(Ehlo("client.example.net"))
    if verb == "EHLO":
        return conn
    conn.receive_data(b"250-mx.example.org\r\n250 PIPELINING\r\n")
    assert isinstance(conn.next_event(), Reply)
    if verb == "NOOP":
        conn.send(Noop())
    else:
        conn.send(MailFrom("<a@example.org>"))
        rcpt = RcptTo("<b@example.net>")
        for _ in range(rcpts):
            conn.send(rcpt)
    return conn


# -- the shapes ----------------------------------------------------------------------

#: What a shape builds for a size: the input, how to make the connection
#: that reads it, and the counts of :func:`drive_server` /
#: :func:`drive_client` that show it was all read.
Built = tuple[bytes, Callable[[], object], dict[str, int]]
Build = Callable[[int], Built]


@dataclass
class Case:
    """One prepared run: :attr:`run` is what is measured."""

    run: Callable[[], Counter[str]]
    octets: int
    expected: dict[str, int]

    def check(self, seen: Counter[str]) -> None:
        """Raise AssertionError unless the run read its input as intended."""
        got = {k: seen[k] for k in self.expected}
        if got != self.expected:
            raise AssertionError(f"expected {self.expected}, got {dict(seen)}")


@dataclass
class Shape:
    """An input shape: ``build(size)`` gives the input, the connection and
    what reading it must produce."""

    name: str
    side: str  # "server" or "client"
    build: Build
    #: The largest input tests/test_linearity.py gives it under callgrind:
    #: shapes dense in events cost thousands of instructions an octet there,
    #: content shapes tens, so each gets what fits the test's time budget.
    test_size: int = 64 * KiB
    #: False when reading stops early by design (a client closes on the
    #: first protocol error): then the work does not grow with the input.
    reads_all: bool = True

    def prepare(self, size: int, read: int = READ) -> Case:
        """The input of about ``size`` octets, on a fresh connection."""
        data, make, expected = self.build(size)
        conn = make()
        reads = reads_of(data, read)
        if self.side == "server":
            assert isinstance(conn, ServerConnection)
            return Case(lambda: drive_server(conn, reads), len(data), expected)
        assert isinstance(conn, ClientConnection)
        return Case(lambda: drive_client(conn, reads), len(data), expected)


def _server(stage: str, config: ServerConfig) -> Callable[[], object]:
    return lambda: server_at(stage, config)


def _repeat(unit: bytes, size: int) -> tuple[bytes, int]:
    n = max(1, size // len(unit))
    return unit * n, n


def _lines(stage: str, config: ServerConfig, unit: bytes, outcome: str) -> Build:
    def build(size: int) -> Built:
        data, n = _repeat(unit, size)
        return data, _server(stage, config), {outcome: n}

    return build


def _endless(head: bytes, filler: bytes) -> Build:
    def build(size: int) -> Built:
        data = head + filler * max(0, (size - len(head)) // len(filler))
        # RFC 5321 §4.5.3.1.4: one "500 Line too long" once the line is
        # past the buffer's limit, and the rest discarded
        too_long = int(len(data) >= LINE_LIMIT)
        return data, _server("ehlo", LOOSE), {"rejected 500": too_long}

    return build


def _content(filler: bytes, config: ServerConfig, outcome: str) -> Build:
    def build(size: int) -> Built:
        body, _ = _repeat(filler, size - 5)
        return body + b"\r\n.\r\n", _server("data", config), {outcome: 1}

    return build


def _bdat_large(size: int) -> Built:
    head = b"BDAT %d LAST\r\n" % size
    n = max(0, size - len(head))
    data = b"BDAT %d LAST\r\n" % n + b"x" * n
    return data, _server("rcpt", LOOSE), {"Bdat": 1, "EndOfMessage": 1}


def _client(
    verb: str,
    head: bytes,
    unit: bytes,
    tail: bytes,
    outcome: str,
    *,
    lines: bool = True,
) -> Build:
    def build(size: int) -> Built:
        body, n = _repeat(unit, size - len(head) - len(tail))
        data = head + body + tail
        # RFC 5321 §4.2.1 sets no limit on a reply's lines: the client's
        # bound is raised so that the whole reply is read
        max_lines = n + 10 if lines else 100
        return data, lambda: client_waiting(verb, max_lines), {outcome: 1}

    return build


def _client_replies(size: int) -> Built:
    # MAIL and n - 1 pipelined RCPTs (RFC 2920), then their n replies
    data, n = _repeat(b"250 OK\r\n", size)
    return data, lambda: client_waiting("MAIL", 100, n - 1), {"reply RCPT": n - 1}


MAIL_LIMIT = _mail_limit(LOOSE)
RCPT_LIMIT = _rcpt_limit(LOOSE)
COMMAND_LIMIT = LOOSE.max_command_line
LOCAL64 = b"l" * 64
# RFC 5321 §4.5.3.1.1: a local part is at most 64 octets; past that the
# path gets "501 Path too long" after it was read.
LONG_LOCAL = _pad(b"MAIL FROM:<", b"a", b"@" + DOMAIN + b">\r\n", MAIL_LIMIT)
LONG_QUOTED = _pad(b'MAIL FROM:<"', b"\\a", b'"@' + DOMAIN + b">\r\n", MAIL_LIMIT)
LONG_DOTS = _pad(b"RCPT TO:<", b"a.", b"a@" + DOMAIN + b">\r\n", RCPT_LIMIT)
# the longest line any state reads (the buffer's limit)
LINE_LIMIT = max(MAIL_LIMIT, RCPT_LIMIT)


def _params_line(head: bytes, length: int) -> bytes:
    """``head`` and distinct unknown parameters (a repeated keyword would be
    a 501 before the list is read), ``length`` octets at most."""
    line, i = head, 0
    while len(line) + len(b" X%d=1" % i) + 2 <= length:
        line += b" X%d=1" % i
        i += 1
    return line + b"\r\n"


# RFC 5321 §4.1.1.11: an unknown parameter is "555", after the line is parsed
MAIL_PARAMS = _params_line(b"MAIL FROM:<a@" + DOMAIN + b">", MAIL_LIMIT)
RCPT_PARAMS = _params_line(b"RCPT TO:<b@" + DOMAIN + b">", RCPT_LIMIT)
CR_LINE = _pad(b"NOOP ", b"\r", b"\r\n", COMMAND_LIMIT)

# Test sizes by cost under callgrind (instructions an octet, measured):
# thousands for shapes dense in events, hundreds for long command lines,
# tens for content and for input that is discarded.
DENSE = 16 * KiB
LINES = 64 * KiB
BULK = 1 * MiB

SHAPES: list[Shape] = [
    Shape("endless command line", "server", _endless(b"NOOP ", b"x"), BULK),
    Shape("endless CRs, no LF", "server", _endless(b"", b"\r"), BULK),
    Shape("pipelined NOOPs", "server", _lines("ehlo", LOOSE, b"NOOP\r\n", "Noop"), DENSE),
    # the most events an octet: each empty line is a "500" (RFC 5321 §4.1.4)
    Shape(
        "empty command lines",
        "server",
        _lines("ehlo", LOOSE, b"\r\n", "rejected 500"),
        DENSE // 2,
    ),
    Shape("CRs in command lines", "server", _lines("ehlo", LOOSE, CR_LINE, "rejected 500"), BULK),
    Shape("MAIL, long local part", "server", _lines("ehlo", LOOSE, LONG_LOCAL, "rejected 501")),
    Shape("MAIL, long quoted local", "server", _lines("ehlo", LOOSE, LONG_QUOTED, "rejected 501")),
    Shape("RCPT, long dot-string", "server", _lines("mail", LOOSE, LONG_DOTS, "rejected 501")),
    Shape(
        "MAIL+RSET, 64-octet local",
        "server",
        _lines(
            "ehlo",
            LOOSE,
            b"MAIL FROM:<" + LOCAL64 + b"@" + DOMAIN + b">\r\nRSET\r\n",
            "MailFrom",
        ),
    ),
    # accepted recipients accumulate in the transaction
    Shape(
        "RCPTs, 64-octet local",
        "server",
        _lines("mail", LOOSE, b"RCPT TO:<" + LOCAL64 + b"@" + DOMAIN + b">\r\n", "RcptTo"),
    ),
    Shape("MAIL, many parameters", "server", _lines("ehlo", LOOSE, MAIL_PARAMS, "rejected 555")),
    Shape("RCPT, many parameters", "server", _lines("mail", LOOSE, RCPT_PARAMS, "rejected 555")),
    # RFC 5321 §2.3.8: bare CR / LF in content: refused after the real end
    Shape("DATA, CRs", "server", _content(b"\r", LOOSE, "rejected 500"), BULK),
    Shape("DATA, CRs, normalise", "server", _content(b"\r", NORMALISE, "EndOfMessage")),
    Shape("DATA, bare LFs", "server", _content(b"\n", LOOSE, "rejected 500"), BULK),
    Shape("DATA, LF . LF, normalise", "server", _content(b"\n.\n", NORMALISE, "EndOfMessage")),
    Shape("DATA, CRLF . CR", "server", _content(b"\r\n.\r", LOOSE, "rejected 500"), BULK),
    Shape("DATA, dot-stuffed lines", "server", _content(b"..\r\n", LOOSE, "EndOfMessage"), BULK),
    Shape("DATA, empty lines", "server", _content(b"\r\n", LOOSE, "EndOfMessage"), BULK),
    Shape("BDAT, 1-octet chunks", "server", _lines("rcpt", LOOSE, b"BDAT 1\r\nx", "Bdat"), DENSE),
    Shape("BDAT, one chunk", "server", _bdat_large, BULK),
    # a reply's lines accumulate until its last line (RFC 5321 §4.2.1)
    Shape(
        "reply, short continuations",
        "client",
        _client("NOOP", b"", b"250-\r\n", b"250 OK\r\n", "reply NOOP"),
        DENSE,
    ),
    Shape(
        "reply, long continuations",
        "client",
        _client("NOOP", b"", b"250-" + b"x" * 506 + b"\r\n", b"250 OK\r\n", "reply NOOP"),
    ),
    Shape(
        "EHLO reply, many keywords",
        "client",
        _client("EHLO", b"250-mx.example.org\r\n", b"250-X-K\r\n", b"250 OK\r\n", "reply EHLO"),
        DENSE,
    ),
    Shape(
        "endless reply line",
        "client",
        _client("NOOP", b"250 ", b"x", b"", "error", lines=False),
        BULK,
        reads_all=False,
    ),
    # replies to pipelined commands (RFC 2920), matched to them in order
    Shape("many replies (RCPTs)", "client", _client_replies, DENSE),
]

SHAPE_NAMES = [s.name for s in SHAPES]


def shape(name: str) -> Shape:
    """The shape called ``name``."""
    for s in SHAPES:
        if s.name == name:
            return s
    raise KeyError(name)
