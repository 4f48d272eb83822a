"""What a connection costs once (issue 10): the paths made inline for it.

* ServerSession makes the calls of a connection's start and end (on_connect,
  EHLO / HELO and on_ehlo, QUIT, the end of the connection, on_close)
  inline, without _call, _decide, _inform and _flush.  Against the session
  as it was before (``reference_server``): the same requests with the same
  bytes, the same handler calls, and the same log records, whatever each of
  those handler methods does (a reply, a refusal, an exception, junk, a
  multi-line EHLO reply), for any opening and closing of a session cut
  into any reads.
* The asyncio adapter reads the loop's clock once per read: over a real
  socket, a session gets the bytes the reference session makes for the
  same input, and a peer that goes silent is still cut off after
  ``read_timeout`` (RFC 5321 §4.5.3.2), with its on_close called.
* Sink keeps the last 1000 envelopes, oldest first, as a list.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reference_server import ServerSession as ReferenceSession
from session_driver import play, reads_of, without_inherited_calls

from smtp_rtls import Reply, ServerConfig
from smtp_rtls.handlers import Sink
from smtp_rtls.io import asyncio as aio
from smtp_rtls.session.server import (
    Handler,
    MessageWriter,
    ServerSession,
    SessionEnvelope,
    SessionInfo,
)

# What each once-per-connection method may do.
MODES = ["default", "refuse", "raise", "junk", "multiline", "none"]


class Once(Handler):
    """A handler whose on_connect, on_ehlo and on_close do what ``modes`` say."""

    def __init__(self, modes: dict[str, str]) -> None:
        self.modes = modes
        self.log: list[Any] = []

    def _answer(self, method: str, default: Any, refusal: Reply) -> Any:
        mode = self.modes.get(method, "default")
        if mode == "refuse":
            return refusal
        if mode == "raise":
            raise RuntimeError(f"{method} failed")
        if mode == "junk":
            return ("not", "a reply")
        if mode == "multiline":
            return Reply(default.code, "first\nsecond", "2.0.0")
        if mode == "none":
            return None
        return default

    def on_connect(self, session: SessionInfo) -> Any:
        self.log.append(("connect", session))
        return self._answer("on_connect", super().on_connect(session), Reply(554, "go away"))

    def on_ehlo(self, session: SessionInfo, event: Any) -> Any:
        self.log.append(("ehlo", session, event))
        return self._answer(
            "on_ehlo", super().on_ehlo(session, event), Reply(550, "not you", "5.7.1")
        )

    def on_message(self, envelope: SessionEnvelope) -> Any:
        self.log.append(("message", envelope))
        return _Writer(self.log)

    def on_close(self, session: SessionInfo) -> Any:
        self.log.append(("close-session", session))
        mode = self.modes.get("on_close", "default")
        if mode == "raise":
            raise RuntimeError("on_close failed")
        return "ignored" if mode == "junk" else None


class _Writer(MessageWriter):
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def write(self, data: bytes) -> None:
        self.log.append(("write", data))

    def abort(self) -> None:
        self.log.append(("abort",))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelname, record.getMessage()))


def _run(
    session_class: Any, modes: dict[str, str], reads: list[bytes], config: ServerConfig
) -> Any:
    # both sessions log to "smtp_rtls.session.server"
    records = _Records()
    log = logging.getLogger("smtp_rtls.session.server")
    log.addHandler(records)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    try:
        handler = Once(modes)
        session = session_class(handler, "mx.example", config, peer=("192.0.2.1", 2525))
        made = play(session, reads)
    finally:
        log.removeHandler(records)
        log.setLevel(old_level)
    return made, handler.log, records.records


OPENINGS = [
    b"EHLO c.example\r\n",
    b"HELO c.example\r\n",
    b"LHLO c.example\r\n",
    b"EHLO [192.0.2.7]\r\n",
    b"EHLO\r\n",  # no domain: the core's 501
    b"NOOP\r\n",
]
MIDDLES = [
    b"",
    b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
    b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
    b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: open\r\n\r\nbo",
    b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nX-A: 1\r\n",
    b"EHLO again.example\r\n",
    b"RSET\r\n",
    # a chunk that is not the last: the message is open when QUIT comes
    b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 12\r\nS: x\r\n\r\nab\r\n",
]
ENDINGS = [b"QUIT\r\n", b"QUIT\r\nNOOP\r\n", b"", b"QUIT extra\r\n"]
CONFIGS = [ServerConfig(), ServerConfig(lmtp=True), ServerConfig(pipelining=False)]


@st.composite
def sessions(draw: st.DrawFn) -> list[bytes]:
    """An opening, what comes between, an ending, cut into reads."""
    data = (
        draw(st.sampled_from(OPENINGS))
        + b"".join(draw(st.lists(st.sampled_from(MIDDLES), max_size=3)))
        + draw(st.sampled_from(ENDINGS))
    )
    return reads_of(data, draw(st.lists(st.integers(0, len(data)), max_size=4)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reads=sessions(),
    modes=st.dictionaries(
        st.sampled_from(["on_connect", "on_ehlo", "on_close"]), st.sampled_from(MODES)
    ),
    config=st.sampled_from(CONFIGS),
)
@example(reads=[b"EHLO c.example\r\nQUIT\r\n"], modes={}, config=ServerConfig())
@example(reads=[b"EHLO c\r\n", MIDDLES[-1], b"QUIT\r\n"], modes={}, config=ServerConfig())
@example(reads=[b"EHLO c\r\n", MIDDLES[-1], b"EHLO d\r\n"], modes={}, config=ServerConfig())
@example(reads=[b"EHLO c\r\nQUIT\r\n"], modes={"on_ehlo": "multiline"}, config=ServerConfig())
@example(
    reads=[b"QUIT\r\n"], modes={"on_connect": "raise", "on_close": "raise"}, config=CONFIGS[0]
)
@example(reads=[b"HELO c\r\nQUIT\r\n"], modes={"on_ehlo": "raise"}, config=ServerConfig())
@example(reads=[b"EHLO c\r\n"], modes={"on_ehlo": "junk", "on_connect": "junk"}, config=CONFIGS[0])
def test_a_connection_opens_and_ends_as_the_reference_session_does(
    reads: list[bytes], modes: dict[str, str], config: ServerConfig
) -> None:
    got = _run(ServerSession, modes, reads, config)
    expected = _run(ReferenceSession, modes, reads, config)
    # the requests, with their bytes (less the calls of the methods Once
    # leaves as Handler's, which the session answers itself)
    assert got[0] == without_inherited_calls(expected[0], Once({}))
    assert got[1] == expected[1]  # the handler's calls, with their arguments
    assert got[2] == expected[2]  # the log records, level and text


# -- the asyncio adapter over a real socket -------------------------------------------


def _reference(reads: list[bytes]) -> tuple[bytes, list[int]]:
    """What the reference session writes for ``reads``, and how much of it
    is written before each read."""
    made = play(ReferenceSession(Sink(), "mx.test.example", ServerConfig()), reads)
    out, marks = b"", []
    for request in made:
        if request[0] == "write":
            out += request[1]
        elif request[0] == "read":
            marks.append(len(out))
    return out, marks


def _dialogue(port: int, script: list[bytes]) -> bytes:
    # lock-step: each piece once the replies before it have come, so that
    # the server reads the pieces the reference session was given
    _, marks = _reference(script)
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for piece, mark in zip(script, marks, strict=False):
            while len(got) < mark:
                chunk = sock.recv(65536)
                if not chunk:
                    return got
                got += chunk
            sock.sendall(piece)
        while chunk := sock.recv(65536):
            got += chunk
    return got


SCRIPTS = [
    [b"EHLO c.example\r\n", b"QUIT\r\n"],
    [
        b"EHLO c.example\r\n",
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
        b"Subject: t\r\n\r\n..dot\r\nbody\r\n.\r\n",
        b"QUIT\r\n",
    ],
    [b"HELO c.example\r\n", b"RSET\r\n", b"EHLO again.example\r\n", b"QUIT\r\n"],
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_asyncio_server_sends_what_the_reference_session_makes(script: list[bytes]) -> None:
    async def main() -> bytes:
        sink = Sink()
        server = await aio.serve(sink, "127.0.0.1", 0, hostname="mx.test.example")
        try:
            return await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, _dialogue, server.port, script),
                10,
            )
        finally:
            await server.shutdown(5)

    assert asyncio.run(main()) == _reference(script)[0]


class _Closes(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.closed: asyncio.Event | None = None

    def on_close(self, session: SessionInfo) -> None:
        assert self.closed is not None
        self.closed.set()


@pytest.mark.parametrize("after", [b"", b"EHLO c.example\r\n", b"EHLO c\r\nMAIL FROM:<a@b>\r\n"])
def test_a_silent_peer_is_cut_off_after_the_read_timeout_rfc5321_4_5_3_2(after: bytes) -> None:
    async def main() -> bytes:
        handler = _Closes()
        handler.closed = asyncio.Event()
        server = await aio.serve(handler, "127.0.0.1", 0, read_timeout=0.2)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            if after:
                writer.write(after)
            got = await asyncio.wait_for(reader.read(), 5)  # to the server's close
            await asyncio.wait_for(handler.closed.wait(), 5)
            writer.close()
            return got
        finally:
            await server.shutdown(5)

    got = asyncio.run(main())
    assert got.startswith(b"220 ")
    assert got.count(b"\r\n") >= 1 + after.count(b"\r\n")


# -- Sink ------------------------------------------------------------------------------


def test_the_sink_keeps_the_last_thousand_envelopes_oldest_first() -> None:
    sink = Sink()
    assert sink.envelopes == []
    config = ServerConfig()
    for n in range(1005):
        reads = [
            b"EHLO c\r\n",
            f"MAIL FROM:<n{n}@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n".encode(),
            b"x\r\n.\r\nQUIT\r\n",
        ]
        play(ServerSession(sink, "mx.example", config), reads)
    kept = sink.envelopes
    assert isinstance(kept, list) and len(kept) == 1000
    assert [str(e.mail_from.reverse_path) for e in kept] == [
        f"n{n}@b.example" for n in range(5, 1005)
    ]
    assert sink.messages == 1005
