"""io._awaitable.awaitable: inspect.isawaitable's answer, remembered per
class only where the class decides it."""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import types
from collections.abc import Generator
from typing import Any

from smtp_rtls import Reply
from smtp_rtls.io import _awaitable, sync
from smtp_rtls.io import asyncio as smtp_asyncio
from smtp_rtls.io._awaitable import awaitable
from smtp_rtls.session.server import Handler, MessageWriter, SessionEnvelope


class _Writer:
    def write(self, data: bytes) -> None:
        pass


class _Future:
    def __await__(self) -> Generator[Any, None, None]:
        yield


def test_plain_results_and_awaitables() -> None:
    async def coro() -> None:
        pass

    running = coro()
    try:
        for value in (_Writer(), _Writer(), 42, "text", b"", _Future(), running):
            assert awaitable(value) is inspect.isawaitable(value)
        assert awaitable(_Future()) and awaitable(running)
        assert not awaitable(_Writer())
    finally:
        running.close()


def test_a_plain_generator_does_not_answer_for_a_generator_coroutine() -> None:
    def plain() -> Generator[None, None, None]:
        yield

    @types.coroutine
    def old_style() -> Generator[None, None, None]:
        yield

    # the same class, and yet one of them can be awaited (its code's flags)
    assert not awaitable(plain())
    assert not awaitable(plain())
    assert awaitable(old_style())


def test_a_class_registered_later_is_asked_again() -> None:
    class Later:
        pass

    assert not awaitable(Later())
    assert Later in _awaitable._PLAIN
    collections.abc.Awaitable.register(Later)
    assert inspect.isawaitable(Later())
    assert awaitable(Later())


def test_an_object_that_lies_about_its_class_is_not_remembered() -> None:
    class Proxy:
        def __init__(self, target: type) -> None:
            self._target = target

        @property  # type: ignore[misc]
        def __class__(self) -> type:
            return self._target

    assert not awaitable(Proxy(_Writer))
    # the same type, standing for an awaitable class this time
    assert awaitable(Proxy(_Future)) is inspect.isawaitable(Proxy(_Future)) is True


def test_the_memory_is_bounded() -> None:
    for i in range(_awaitable._PLAIN_MAX * 2):
        assert not awaitable(type(f"C{i}", (), {})())
    assert len(_awaitable._PLAIN) <= _awaitable._PLAIN_MAX


def test_the_asyncio_server_still_awaits_a_coroutine_writer() -> None:
    # end to end through the compiled or pure protocol: on_message returns a
    # coroutine, which the server must await before the content arrives
    got: list[bytes] = []

    class Writer(MessageWriter):
        def write(self, data: bytes) -> None:
            got.append(bytes(data))

        def close(self) -> Reply:
            return Reply(250, "kept")

    class Slow(Handler):
        async def on_message(self, envelope: SessionEnvelope) -> MessageWriter:  # type: ignore[override]
            await asyncio.sleep(0)
            return Writer()

    async def main() -> None:
        server = await smtp_asyncio.serve(Slow(), "127.0.0.1", 0, hostname="mx.test")
        port = server.port
        try:
            result = await asyncio.to_thread(_send_one, port)
        finally:
            await server.shutdown(5)
        assert result

    asyncio.run(asyncio.wait_for(main(), 30))
    assert b"".join(got).endswith(b"hello\r\n")


def _send_one(port: int) -> bool:
    with sync.connect("127.0.0.1", port, timeout=10) as client:
        return bool(client.send("a@example.org", ["b@example.net"], b"hello\r\n").accepted)
