"""Handler methods left as Handler's are answered by the session itself (issue 10).

A handler that does not override ``on_connect``, ``on_ehlo``, ``on_mail``,
``on_rcpt``, ``on_data_start``, ``on_reset`` or ``on_close`` gets Handler's
answer for it without a :class:`Call` through the adapter (a request and a
trip through the adapter's loop each; the ready handlers override none of
the three a message needs).  What the peer sees must not change:

* for any script, a handler that inherits them and one that overrides each
  with ``super()`` (so that every call is made) write the same bytes and
  store the same messages; only the second makes those calls;
* a method replaced on the instance, and a handler not derived from
  Handler, are still called;
* under every adapter, over real sockets, a ready handler (Sink) answers
  as Handler's methods do.
"""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from session_driver import ANSWERED_INLINE, play, reads_of

from adapters import KINDS, running
from smtp_rtls import Envelope, Reply, ServerConfig
from smtp_rtls.handlers import Sink
from smtp_rtls.session.server import (
    Handler,
    MessageWriter,
    ServerSession,
    SessionEnvelope,
    SessionInfo,
)


class _Keep(MessageWriter):
    def __init__(self, kept: list[bytes]) -> None:
        self.kept = kept
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> Reply:
        self.kept.append(b"".join(self.parts))
        return Reply(250, "kept", "2.0.0")


class Inherits(Handler):
    """Overrides on_message only, as Sink, Maildir and Relay do."""

    def __init__(self) -> None:
        self.kept: list[bytes] = []

    def on_message(self, envelope: SessionEnvelope) -> Any:
        return _Keep(self.kept)


class Overrides(Inherits):
    """The same answers, from overrides: the session must call each."""

    def on_connect(self, session: SessionInfo) -> Any:
        return super().on_connect(session)

    def on_ehlo(self, session: SessionInfo, event: Any) -> Any:
        return super().on_ehlo(session, event)

    def on_mail(self, session: SessionInfo, event: Any) -> Any:
        return super().on_mail(session, event)

    def on_rcpt(self, session: SessionInfo, event: Any, envelope: Envelope) -> Any:
        return super().on_rcpt(session, event, envelope)

    def on_data_start(self, session: SessionInfo, envelope: Envelope) -> Any:
        return super().on_data_start(session, envelope)

    def on_reset(self, session: SessionInfo) -> Any:
        return super().on_reset(session)

    def on_close(self, session: SessionInfo) -> Any:
        return super().on_close(session)


def _writes(made: list[tuple[Any, ...]]) -> bytes:
    return b"".join(r[1] for r in made if r[0] == "write")


def _calls(made: list[tuple[Any, ...]]) -> list[str]:
    return [r[2] for r in made if r[0] == "call"]


SESSION = [
    b"EHLO c.example\r\n",
    b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@d.example>\r\nDATA\r\n",
    b"Subject: x\r\n\r\n..dot\r\n.\r\n",
    b"RSET\r\nHELO again.example\r\nQUIT\r\n",
]


def test_inherited_methods_are_answered_without_a_call() -> None:
    inherits, overrides = Inherits(), Overrides()
    made = play(ServerSession(inherits, "mx.example"), SESSION)
    made_with_calls = play(ServerSession(overrides, "mx.example"), SESSION)
    assert _writes(made) == _writes(made_with_calls)
    assert inherits.kept == overrides.kept == [b"Subject: x\r\n\r\n.dot\r\n"]
    # on_message and the writer's calls only
    assert set(_calls(made)) == {"on_message", "write", "close"}
    assert {"on_connect", "on_ehlo", "on_mail", "on_rcpt", "on_data_start", "on_reset"} <= set(
        _calls(made_with_calls)
    )
    assert _calls(made_with_calls)[-1] == "on_close"


COMMANDS = [
    b"EHLO c.example\r\n",
    b"HELO c.example\r\n",
    b"LHLO c.example\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<> BODY=8BITMIME REQUIRETLS\r\n",
    b"RCPT TO:<c@d.example>\r\n",
    b"RCPT TO:<bad\r\n",
    b"DATA\r\n",
    b"Subject: y\r\nTLS-Required: No\r\n\r\nbody\r\n.\r\n",
    b"BDAT 5 LAST\r\nhello",
    b"BDAT 3\r\nabc",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"FOO\r\n",
]
CONFIGS = [ServerConfig(), ServerConfig(lmtp=True), ServerConfig(pipelining=False)]


@st.composite
def scripts(draw: st.DrawFn) -> list[bytes]:
    data = b"".join(draw(st.lists(st.sampled_from(COMMANDS), max_size=12)))
    return reads_of(data, draw(st.lists(st.integers(0, len(data)), max_size=5)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reads=scripts(), config=st.sampled_from(CONFIGS))
def test_the_peer_sees_the_same_session_either_way(
    reads: list[bytes], config: ServerConfig
) -> None:
    inherits, overrides = Inherits(), Overrides()
    made = play(ServerSession(inherits, "mx.example", config), reads)
    made_with_calls = play(ServerSession(overrides, "mx.example", config), reads)
    assert _writes(made) == _writes(made_with_calls)
    assert [r for r in made if r[0] == "read"] == [r for r in made_with_calls if r[0] == "read"]
    assert inherits.kept == overrides.kept
    assert not set(_calls(made)) & set(ANSWERED_INLINE)


def test_a_method_replaced_on_the_instance_is_called() -> None:
    handler = Inherits()
    refusal = Reply(550, "not from you", "5.7.1")
    handler.on_mail = lambda session, event: refusal  # type: ignore[method-assign]
    made = play(ServerSession(handler, "mx.example"), [SESSION[0], SESSION[1], b"QUIT\r\n"])
    assert b"550 5.7.1 not from you\r\n" in _writes(made)
    assert "on_mail" in _calls(made)


class Duck:
    """A handler not derived from Handler: every method is its own."""

    def __init__(self) -> None:
        self.called: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("on_"):
            raise AttributeError(name)

        def method(*args: Any) -> Any:
            self.called.append(name)
            if name == "on_message":
                return None
            return getattr(Handler(), name)(*args)

        return method


def test_a_handler_not_derived_from_handler_is_called_for_every_method() -> None:
    duck = Duck()
    made = play(ServerSession(duck, "mx.example"), SESSION)
    assert duck.called[:5] == ["on_connect", "on_ehlo", "on_mail", "on_rcpt", "on_rcpt"]
    assert {"on_data_start", "on_message", "on_reset", "on_close"} <= set(duck.called)
    # Handler's answers: the same bytes as a handler that inherits them,
    # less the message, which Duck does not take (no writer: 451)
    codes = [int(line[:3]) for line in _writes(made).split(b"\r\n") if line[3:4] == b" "]
    assert codes == [220, 250, 250, 250, 250, 354, 451, 250, 250, 221]


class Broken(Inherits):
    """A handler whose on_mail cannot even be looked up."""

    def __getattribute__(self, name: str) -> Any:
        if name == "on_mail":
            raise KeyError(name)
        return super().__getattribute__(name)


def test_a_method_whose_look_up_raises_is_answered_451_not_a_failed_session() -> None:
    # as before the session read which methods a handler overrides: the
    # look-up happens in the adapter's call, whose exception is the result
    made = play(ServerSession(Broken(), "mx.example"), [SESSION[0], SESSION[1], b"QUIT\r\n"])
    codes = [int(line[:3]) for line in _writes(made).split(b"\r\n") if line[3:4] == b" "]
    # MAIL 451; the RCPTs and DATA after it 503 (no transaction); QUIT 221
    assert codes == [220, 250, 451, 503, 503, 503, 221]


@pytest.mark.parametrize("kind", KINDS)
def test_every_adapter_answers_as_handler_does_with_a_ready_handler(kind: str) -> None:
    sink = Sink()
    with running(kind, sink) as server, smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
        code, lines = c.ehlo("c.example")
        assert (code, lines.split(b"\n")[0]) == (250, b"mx.test.example Hello c.example")
        assert c.mail("a@b.example") == (250, b"2.1.0 Sender OK")
        assert c.rcpt("c@d.example") == (250, b"2.1.5 Recipient OK")
        assert c.data(b"Subject: t\r\n\r\nbody\r\n")[0] == 250
        assert c.rset() == (250, b"2.0.0 OK")
    assert sink.messages == 1
