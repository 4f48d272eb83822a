"""The asynchronous adapters' handler calls after a session ended early
(``io._common.call_awaiting``): what the session still owes the handler
(abort the open message, ``on_close``) is called and, when the handler
wrote it as a coroutine function, awaited; what it raises is the result,
never an error that would stop the adapter's clean-up."""

from __future__ import annotations

import asyncio

import pytest
import trio

from smtp_rtls.io._common import call_awaiting
from smtp_rtls.session.server import Call


class _Writer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def abort(self) -> str:
        self.calls.append("abort")
        return "plain"

    async def close(self, why: str) -> str:
        await asyncio.sleep(0) if _running_asyncio() else await trio.sleep(0)
        self.calls.append(f"close {why}")
        return "awaited"

    def broken(self) -> None:
        raise ValueError("broken at once")

    async def broken_later(self) -> None:
        raise ValueError("broken when awaited")


def _running_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _both(writer: _Writer) -> list[object]:
    return [
        await call_awaiting(Call(writer, "abort", ())),
        await call_awaiting(Call(writer, "close", ("now",))),
    ]


def test_plain_and_awaitable_results_on_asyncio() -> None:
    writer = _Writer()
    assert asyncio.run(_both(writer)) == ["plain", "awaited"]
    assert writer.calls == ["abort", "close now"]


def test_plain_and_awaitable_results_on_trio() -> None:
    writer = _Writer()
    assert trio.run(_both, writer) == ["plain", "awaited"]
    assert writer.calls == ["abort", "close now"]


@pytest.mark.parametrize("method", ["broken", "broken_later", "missing"])
def test_what_a_call_raises_is_its_result(method: str) -> None:
    result = asyncio.run(call_awaiting(Call(_Writer(), method, ())))
    expected = AttributeError if method == "missing" else ValueError
    assert isinstance(result, expected)
