"""ServerSession's fast paths (issue 10) against the general path.

* The session as it was before them (``reference_server``: every event
  through the general path) and ServerSession make the same requests, in
  the same order, with the same bytes, for any script of commands and
  content cut into any reads, and any handler behaviour (refusals,
  exceptions, wrong answers).
* ``_message_tag`` (the TLS-Required tag without parsing a header section
  that cannot hold the field) agrees with ``message_tag`` (RFC 8689 §4.1).
* The shared replies (Sink's, the default greeting and EHLO reply) are the
  replies they stand for.
* A plain handler and the same handler written with coroutines give the
  same replies and store the same messages through every adapter.
* The blocking adapter's session threads, kept a moment for the next
  connection, serve every connection, and shutdown() still ends them all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import smtplib
import socket
import threading
import time
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reference_server import ServerSession as ReferenceSession
from session_driver import play, reads_of

from adapters import KINDS, running
from smtp_rtls import Ehlo, Reply, ServerConfig, TLSInfo
from smtp_rtls.handlers import Sink
from smtp_rtls.handlers.sink import _ACCEPTED
from smtp_rtls.io import sync
from smtp_rtls.policy.tags import header_section_end, message_tag
from smtp_rtls.session._types import _GREETINGS, _HELLOS
from smtp_rtls.session.server import (
    Handler,
    MessageWriter,
    ServerSession,
    SessionEnvelope,
    SessionInfo,
    _header_end,
    _lf_from,
    _message_tag,
)

TLS = TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)

# -- the whole session against the reference -------------------------------------------

# What a handler method may do: its default, a refusal, an exception, an
# answer that is no Reply, a reply the command cannot have.
BEHAVIOURS = ["default", "refuse", "raise", "junk", "wrong"]
METHODS = ["on_connect", "on_ehlo", "on_mail", "on_rcpt", "on_data_start", "on_message"]
WRITER = ["ok", "raise_write", "raise_close", "junk_close", "list_close", "int_close"]

_REFUSALS = {
    "on_connect": Reply(554, "go away", "5.7.1"),
    "on_ehlo": Reply(550, "not you", "5.7.1"),
    "on_mail": Reply(550, "no sender", "5.1.8"),
    "on_rcpt": Reply(550, "no such user", "5.1.1"),
    "on_data_start": Reply(554, "no data", "5.3.0"),
}
_WRONG = {
    "on_connect": Reply(250, "wrong"),
    "on_ehlo": Reply(250, "two\nlines", "2.0.0"),
    "on_mail": Reply(354, "go ahead"),
    "on_rcpt": Reply(220, "hello"),
    "on_data_start": Reply(250, "OK"),
}


class _Writer(MessageWriter):
    def __init__(self, mode: str, log: list[Any]) -> None:
        self.mode = mode
        self.log = log

    def write(self, data: bytes) -> None:
        self.log.append(("write", data))
        if self.mode == "raise_write":
            raise OSError("disk full")

    def close(self) -> Any:
        self.log.append(("close",))
        if self.mode == "raise_close":
            raise OSError("disk full")
        if self.mode == "junk_close":
            return "stored"
        if self.mode == "list_close":
            return [Reply(250, "one", "2.0.0"), Reply(452, "two", "4.2.2")]
        if self.mode == "int_close":
            return 42
        return Reply(250, "Stored", "2.0.0")

    def abort(self) -> None:
        self.log.append(("abort",))


class Scripted(Handler):
    """A handler whose every method does what ``behaviour`` says, and logs."""

    def __init__(self, behaviour: dict[str, str], writer: str) -> None:
        self.behaviour = behaviour
        self.writer = writer
        self.log: list[Any] = []

    def _answer(self, method: str, default: Any) -> Any:
        mode = self.behaviour.get(method, "default")
        if mode == "refuse" and method in _REFUSALS:
            return _REFUSALS[method]
        if mode == "raise":
            raise RuntimeError(f"{method} failed")
        if mode == "junk":
            return ("not", "a reply")
        if mode == "wrong" and method in _WRONG:
            return _WRONG[method]
        return default

    def on_connect(self, session: SessionInfo) -> Any:
        self.log.append(("connect", session))
        return self._answer("on_connect", super().on_connect(session))

    def on_ehlo(self, session: SessionInfo, event: Any) -> Any:
        self.log.append(("ehlo", session, event))
        return self._answer("on_ehlo", super().on_ehlo(session, event))

    def on_mail(self, session: SessionInfo, event: Any) -> Any:
        self.log.append(("mail", session, event))
        return self._answer("on_mail", super().on_mail(session, event))

    def on_rcpt(self, session: SessionInfo, event: Any, envelope: Any) -> Any:
        self.log.append(("rcpt", session, event, envelope))
        return self._answer("on_rcpt", super().on_rcpt(session, event, envelope))

    def on_data_start(self, session: SessionInfo, envelope: Any) -> Any:
        self.log.append(("data", session, envelope))
        return self._answer("on_data_start", super().on_data_start(session, envelope))

    def on_message(self, envelope: SessionEnvelope) -> Any:
        self.log.append(("message", envelope))
        mode = self.behaviour.get("on_message", "default")
        if mode == "refuse":
            return None  # no writer: the session refuses the message
        if mode == "raise":
            raise RuntimeError("on_message failed")
        if mode in ("junk", "wrong"):
            return Reply(250, "a reply, not a writer")
        return _Writer(self.writer, self.log)

    def on_auth(self, session: SessionInfo, event: Any) -> Any:
        self.log.append(("auth", session, event))
        return Reply(235, "OK", "2.7.0"), "bob"

    def on_reset(self, session: SessionInfo) -> None:
        self.log.append(("reset", session))

    def on_close(self, session: SessionInfo) -> None:
        self.log.append(("close-session", session))


CONTENT = [
    b"Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n.\r\n",
    b"tls-required:   NO  \r\nSubject: y\r\n\r\n..dot\r\n.\r\n",
    b"TLS-Required: No\r\nTLS-Required: No\r\n\r\nx\r\n.\r\n",
    b"TLS-Required: maybe\r\n\r\nx\r\n.\r\n",
    b"From: a\r\n folded\r\nTLS-Required:\r\n No\r\n\r\n.\r\n",
    b"no header at all\r\n.\r\n",
    b"X-A: 1\r\nX-B: 2\r\n",  # a header section still open
    b".\r\n",
    b"\r\n.\r\n",
    b"Subject: lf only\nTLS-Required: No\n\nbody\n.\r\n",
]
COMMANDS = [
    b"EHLO c.example\r\n",
    b"HELO c.example\r\n",
    b"LHLO c.example\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<a@b.example> REQUIRETLS\r\n",
    b"MAIL FROM:<> BODY=8BITMIME SIZE=100\r\n",
    b"RCPT TO:<c@d.example>\r\n",
    b"RCPT TO:<e@f.example> NOTIFY=NEVER\r\n",
    b"RCPT TO:<bad\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\nhello",
    b"BDAT 12 LAST\r\nS: x\r\n\r\nab\r\n",
    b"BDAT 0 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"HELP\r\n",
    b"VRFY someone\r\n",
    b"EXPN list\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN AGJvYgBwdw==\r\n",
    b"QUIT\r\n",
    b"FOO bar\r\n",
    b"MAIL FROM:<a@b.example>\n",
    b"x" * 1100 + b"\r\n",
]
PIECES = st.lists(
    st.one_of(st.sampled_from(COMMANDS), st.sampled_from(CONTENT)), min_size=0, max_size=14
)


@st.composite
def scripts(draw: st.DrawFn) -> list[bytes]:
    """Commands and content, opened with EHLO most times, cut into reads."""
    pieces = draw(PIECES)
    if draw(st.booleans()):
        pieces = [b"EHLO c.example\r\n", *pieces]
    data = b"".join(pieces)
    return reads_of(data, draw(st.lists(st.integers(0, len(data)), max_size=6)))


CONFIGS = [
    ServerConfig(),
    ServerConfig(starttls=True),
    ServerConfig(lmtp=True),
    ServerConfig(binarymime=True, auth_mechanisms=("PLAIN",), auth_requires_tls=False),
    ServerConfig(pipelining=False, chunking=False),
    ServerConfig(max_message_size=40),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reads=scripts(),
    config=st.sampled_from(CONFIGS),
    behaviour=st.dictionaries(st.sampled_from(METHODS), st.sampled_from(BEHAVIOURS)),
    writer=st.sampled_from(WRITER),
    implicit_tls=st.booleans(),
    tls_ok=st.booleans(),
)
@example(
    reads=[b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", CONTENT[0], b"QUIT\r\n"],
    config=ServerConfig(),
    behaviour={},
    writer="ok",
    implicit_tls=False,
    tls_ok=True,
)
def test_the_session_makes_the_requests_the_reference_makes(
    reads: list[bytes],
    config: ServerConfig,
    behaviour: dict[str, str],
    writer: str,
    implicit_tls: bool,
    tls_ok: bool,
) -> None:
    runs = []
    for session_class in (ServerSession, ReferenceSession):
        handler = Scripted(behaviour, writer)
        session = session_class(
            handler,
            "mx.example",
            config,
            peer=("192.0.2.1", 2525),
            tls=TLS if implicit_tls else None,
        )
        runs.append((play(session, reads, TLS if tls_ok else None), handler.log))
    (made, log), (expected, expected_log) = runs
    assert made == expected
    assert log == expected_log


_LONG_FIELD = b"X-Long: " + b"y" * 990 + b"\r\n"
_NEVER_ENDING = _LONG_FIELD * 300  # more than MAX_HEADER_SECTION, no end in sight


@pytest.mark.parametrize(
    "content",
    [
        # the whole header section in the first piece, or not, or never
        [b"TLS-Required: No\r\n\r\n" + b"z" * 70000 + b"\r\n.\r\n"],
        [b"TLS-Required: No\r\nX: 1", b"\r\n\r\nbody\r\n.\r\n"],
        [_NEVER_ENDING + b"TLS-Required: No\r\n\r\n.\r\n"],
        [_NEVER_ENDING[:50000], _NEVER_ENDING[50000:], b"\r\n.\r\n"],
        [b"TLS-Required: No\r\n", b".\r\n"],
    ],
)
@pytest.mark.parametrize("writer", ["ok", "raise_write"])
def test_large_and_cut_header_sections_go_as_the_reference_sends_them(
    content: list[bytes], writer: str
) -> None:
    # in reads of 60000 octets at most, as an adapter gives them (the
    # core's input limit, ServerConfig.max_backlog, counts each)
    pieces = [piece[i : i + 60000] for piece in content for i in range(0, len(piece), 60000)]
    reads = [OPEN_DATA, *pieces, b"QUIT\r\n"]
    config = ServerConfig(max_message_size=0)
    made = play(ServerSession(Scripted({}, writer), "mx.example", config), reads, TLS)
    expected = play(ReferenceSession(Scripted({}, writer), "mx.example", config), reads, TLS)
    assert made == expected
    assert any(r[:3] == ("call", "Scripted", "on_message") for r in made)


OPEN_DATA = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"


# -- the TLS-Required tag -------------------------------------------------------------

FIELD_NAMES = st.sampled_from(
    [
        b"TLS-Required",
        b"tls-required",
        b"TLS-REQUIRED",
        b"Tls-Required ",
        b"Subject",
        b"X-TLS-Required",
    ]
)
FIELD_VALUES = st.sampled_from([b" No", b"no", b"  NO  ", b" Yes", b"", b" No\r\n folded", b" x"])
LINES = st.one_of(
    st.tuples(FIELD_NAMES, FIELD_VALUES).map(lambda f: f[0] + b":" + f[1] + b"\r\n"),
    st.sampled_from([b"\r\n", b"\n", b" continued\r\n", b"body text\r\n", b"TLS-Required No\r\n"]),
    st.binary(max_size=20),
)


@settings(max_examples=500, deadline=None)
@given(requiretls=st.booleans(), lines=st.lists(LINES, max_size=8))
@example(requiretls=False, lines=[b"TLS-Required: No\r\n", b"\r\n"])
@example(requiretls=False, lines=[b"tls-required: no\r\n"])
@example(requiretls=False, lines=[b"Subject: x\r\n", b"\r\n", b"TLS-Required: No\r\n"])
def test_the_tag_fast_path_agrees_with_message_tag_rfc8689_4_1(
    requiretls: bool, lines: list[bytes]
) -> None:
    head = b"".join(lines)
    assert _message_tag(requiretls, head, header_section_end(head)) is message_tag(
        requiretls, head
    )
    # the session finds the end with the same pattern, without the call
    # (or, compiled, with _speedups.header_end)
    assert _header_end(head) == header_section_end(head)
    assert _header_end(bytearray(head)) == header_section_end(head)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.sampled_from([b"\n", b"\r\n", b"x", b"\r"]), max_size=10).map(b"".join), st.data()
)
def test_a_line_is_whole_when_an_lf_follows_the_header_end(
    data: bytes, draw: st.DataObject
) -> None:
    # what the session asks before it decides the message's tag (RFC 8689 §4.1)
    end = draw.draw(st.integers(0, len(data) + 1))
    assert _lf_from(data, end) is (data.find(b"\n", end) >= 0)
    assert _lf_from(bytearray(data), end) is (data.find(b"\n", end) >= 0)


HEADER_OCTETS = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"Subject", b"x", b"!", b"9", b";", b"~"]
)
HEADER_ODD_OCTETS = st.sampled_from([b"\x7f", b"\x00", b"\x80", b"\xff", b"TLS-Required: No"])


@pytest.mark.compiled_only(reason="the C scan, _speedups.c")
@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.lists(st.one_of(HEADER_OCTETS, HEADER_ODD_OCTETS), max_size=30).map(b"".join),
        st.binary(max_size=40),
    )
)
@example(b"Subject: x")
@example(b"Subject : x\r\n continued\r\n\tmore\r\n\r\nbody")
@example(b"a:\nb:")
@example(b" x: y\r\n")
def test_the_c_header_end_is_the_pattern_s_rfc5322_2_2(data: bytes) -> None:
    from smtp_rtls.session import server

    assert server.header_end_c is not None
    assert server.header_end_c(data) == header_section_end(data)
    assert server.header_end_c(bytearray(data)) == header_section_end(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(server, "header_end_c", None)
        assert _header_end(data) == header_section_end(data)


# -- the session's own SessionInfo and SessionEnvelope ---------------------------------


class _Recording(Handler):
    """Keeps what the session hands it: the infos and the envelopes."""

    def __init__(self) -> None:
        self.infos: list[SessionInfo] = []
        self.envelopes: list[SessionEnvelope] = []

    def on_ehlo(self, session: SessionInfo, command: Any) -> Reply:
        self.infos.append(session)
        return super().on_ehlo(session, command)

    def on_mail(self, session: SessionInfo, command: Any) -> Reply:
        self.infos.append(session)
        return super().on_mail(session, command)

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        self.envelopes.append(envelope)
        return MessageWriter()


def test_the_session_makes_infos_and_envelopes_the_classes_would() -> None:
    # ServerSession fills their slots directly (no attrs __init__): every
    # field must be set, to what the classes' own constructors would set,
    # and a field added to either class must not be left out.
    handler = _Recording()
    session = ServerSession(handler, "mx.example", peer=("192.0.2.7", 2525))
    play(
        session,
        [
            b"EHLO c.example\r\n",
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
            b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        ],
    )
    first, after_ehlo = handler.infos
    assert (first.hostname, first.peer, first.client_name) == (
        "mx.example",
        ("192.0.2.7", 2525),
        None,
    )
    assert after_ehlo.client_name == "c.example"
    assert after_ehlo.data is first.data  # one scratch dict per session
    for info in handler.infos:
        values = {f.name: getattr(info, f.name) for f in attrs.fields(SessionInfo)}
        assert info == SessionInfo(**values)
    (envelope,) = handler.envelopes
    assert envelope.session is after_ehlo
    values = {f.name: getattr(envelope, f.name) for f in attrs.fields(SessionEnvelope)}
    assert envelope == SessionEnvelope(**values)
    assert str(envelope.mail_from.reverse_path) == "a@example.org"
    assert [str(r.forward_path) for r in envelope.recipients] == ["b@example.net"]


# -- the shared replies ----------------------------------------------------------------


def test_the_shared_replies_are_the_replies_they_stand_for() -> None:
    session = SessionInfo("mx.example")
    handler = Handler()
    for _ in range(2):  # made, then found
        assert handler.on_connect(session) == Reply(220, "mx.example ESMTP")
        assert handler.on_ehlo(session, Ehlo("c.example")) == Reply(250, "Hello c.example")
    assert _GREETINGS["mx.example"] == Reply(220, "mx.example ESMTP")
    assert _HELLOS["c.example"] == Reply(250, "Hello c.example")
    sink = Sink()
    for size in (0, 5, 5, 1024):
        writer = sink.on_message(None)  # type: ignore[arg-type]
        writer.write(b"x" * size)
        assert writer.close() == Reply(250, f"Accepted {size} octets (discarded)", "2.0.0")
    assert _ACCEPTED[5] == Reply(250, "Accepted 5 octets (discarded)", "2.0.0")
    assert sink.messages == 4 and sink.octets == 1034


def test_the_shared_reply_caches_stay_bounded() -> None:
    handler = Handler()
    session = SessionInfo("mx.example")
    for i in range(3000):
        handler.on_ehlo(session, Ehlo(f"c{i}.example"))
    assert len(_HELLOS) <= 1024
    sink = Sink()
    for i in range(3000):
        writer = sink.on_message(None)  # type: ignore[arg-type]
        writer.write(b"x" * i)
        writer.close()
    assert len(_ACCEPTED) <= 1024


# -- plain and asynchronous handlers through every adapter -----------------------------


class PlainStore(Handler):
    """Refuses one recipient, keeps every message it accepts."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, tuple[str, ...], str, bytes]] = []

    def on_rcpt(self, session: SessionInfo, event: Any, envelope: Any) -> Reply:
        if event.forward_path.local_part == "nobody":
            return Reply(550, "No such user", "5.1.1")
        return super().on_rcpt(session, event, envelope)

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        return _Keeper(self, envelope)


class _Keeper(MessageWriter):
    def __init__(self, store: Any, envelope: SessionEnvelope) -> None:
        self.store = store
        self.envelope = envelope
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> Reply:
        envelope = self.envelope
        self.store.stored.append(
            (
                str(envelope.mail_from.reverse_path),
                tuple(str(r.forward_path) for r in envelope.recipients),
                envelope.tag.value,
                bytes(self.data),
            )
        )
        return Reply(250, f"Kept {len(self.data)} octets", "2.0.0")


class AsyncStore(PlainStore):
    """The same handler, every method a coroutine function."""

    async def on_connect(self, session: SessionInfo) -> Any:  # type: ignore[override]
        await asyncio.sleep(0) if _in_asyncio() else None
        return super().on_connect(session)

    async def on_ehlo(self, session: SessionInfo, event: Any) -> Any:  # type: ignore[override]
        return super().on_ehlo(session, event)

    async def on_mail(self, session: SessionInfo, event: Any) -> Any:  # type: ignore[override]
        return super().on_mail(session, event)

    async def on_rcpt(self, session: SessionInfo, event: Any, envelope: Any) -> Any:  # type: ignore[override]
        return super().on_rcpt(session, event, envelope)

    async def on_data_start(self, session: SessionInfo, envelope: Any) -> Any:  # type: ignore[override]
        return super().on_data_start(session, envelope)

    async def on_message(self, envelope: SessionEnvelope) -> Any:  # type: ignore[override]
        return _AsyncKeeper(self, envelope)

    async def on_close(self, session: SessionInfo) -> None:  # type: ignore[override]
        return None


class _AsyncKeeper(_Keeper):
    async def write(self, data: bytes) -> None:  # type: ignore[override]
        super().write(data)

    async def close(self) -> Reply:  # type: ignore[override]
        return super().close()


def _in_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


MESSAGES = [
    (
        "a@b.example",
        ["c@d.example", "nobody@d.example"],
        b"Subject: one\r\nTLS-Required: No\r\n\r\nbody\r\n.dot\r\n",
    ),
    ("e@f.example", ["g@h.example"], b"Subject: two\r\n\r\n" + b"y" * 5000 + b"\r\n"),
]


def _send_all(port: int) -> list[Any]:
    answers: list[Any] = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        answers.append(client.ehlo("client.example")[0])
        for sender, recipients, content in MESSAGES:
            try:
                refused = client.sendmail(sender, recipients, content)
            except smtplib.SMTPException as exc:
                answers.append(repr(exc))
            else:
                answers.append(sorted(refused.items()))
        # pipelined, as RFC 2920 lets a client send them
        client.send(b"RSET\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<nobody@d.example>\r\n")
        answers.append([client.getreply()[0] for _ in range(3)])
    return answers


@pytest.mark.parametrize("kind", KINDS)
def test_a_plain_and_an_async_handler_answer_and_store_alike(kind: str) -> None:
    if kind == "sync":
        handlers: list[PlainStore] = [PlainStore()]  # the blocking adapter takes plain ones
    else:
        handlers = [PlainStore(), AsyncStore()]
    results = []
    for handler in handlers:
        with running(kind, handler) as server:
            answers = _send_all(server.port)
        results.append((answers, handler.stored))
    answers, stored = results[0]
    assert answers[0] == 250
    assert len(stored) == 2 and stored[0][1] == ("c@d.example",)
    assert stored[0][2] == "TLS-Required: No" and stored[1][2] == "default"
    assert answers[-1] == [250, 250, 550]
    for other in results[1:]:
        assert other == results[0]


# -- the blocking adapter's session threads, kept for the next connection --------------


def _one_message(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@b.example", ["c@d.example"], b"Subject: x\r\n\r\nbody\r\n")


def test_the_blocking_server_runs_one_connection_after_another_on_one_thread() -> None:
    before = threading.active_count()
    sink = Sink()
    server = sync.serve(sink, "127.0.0.1", 0, hostname="mx.test.example")
    try:
        for _ in range(5):
            _one_message(server.port)
            _wait_until(lambda: server.active == 0)
        # the accepting thread and one session thread, not one per connection
        assert len(server._threads) == 1
        assert threading.active_count() <= before + 2
    finally:
        server.shutdown(deadline=5)
    # shutdown() ends the waiting threads: none is left behind
    assert threading.active_count() == before
    assert sink.messages == 5


def test_a_connection_handed_over_as_the_wait_runs_out_is_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # connections that come just as a session thread stops waiting for one
    monkeypatch.setattr(sync, "_IDLE_WAIT", 0.02)
    sink = Sink()
    with sync.serve(sink, "127.0.0.1", 0, hostname="mx.test.example") as server:
        for i in range(30):
            _one_message(server.port)
            time.sleep((i % 4) * 0.01)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: _one_message(server.port), range(24)))
        _wait_until(lambda: server.active == 0)
    assert sink.messages == 54


def test_shutdown_closes_the_sessions_left_after_the_deadline_in_every_thread() -> None:
    sink = Sink()
    server = sync.serve(sink, "127.0.0.1", 0, hostname="mx.test.example")
    peers = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    try:
        for peer in peers:
            assert peer.recv(512).startswith(b"220 ")
        _wait_until(lambda: server.active == 3)
        start = time.monotonic()
        server.shutdown(deadline=0.2)
        assert time.monotonic() - start < 5
        assert server.active == 0 and not server._threads
        for peer in peers:
            assert peer.recv(512) == b""  # closed by the server
    finally:
        for peer in peers:
            peer.close()


def _wait_until(condition: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)
