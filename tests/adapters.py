"""Run a server of each adapter kind in the background for a test, and stop it."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

from smtp_rtls.io import asyncio as aio
from smtp_rtls.io import sync
from smtp_rtls.io import trio as trio_io

# "uvloop" is the asyncio adapter on uvloop's event loop (smtp_rtls[uvloop]).
KINDS = ["sync", "asyncio", "uvloop", "trio"]


@contextmanager
def running(kind: str, handler: object, **kwargs: Any) -> Iterator[Any]:
    """A server of ``kind`` on 127.0.0.1, shut down on the way out (and, for
    asyncio, no task left behind; trio's nurseries guarantee the same)."""
    kwargs.setdefault("hostname", "mx.test.example")
    port = kwargs.pop("port_hint", 0)
    host = kwargs.pop("host", "127.0.0.1")
    if kind == "sync":
        server = sync.serve(handler, host, port, **kwargs)
        try:
            yield server
        finally:
            server.shutdown(deadline=5)
        return
    if kind == "trio":
        yield from _running_trio(handler, host, port, **kwargs)
        return
    if kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(
            aio.serve(handler, host, port, **kwargs), loop
        ).result(10)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.shutdown(deadline=5), loop).result(15)
            # after a graceful shutdown no session task is left on the loop
            left = asyncio.run_coroutine_threadsafe(_other_tasks(), loop).result(10)
            assert left == [], left
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _other_tasks() -> list[asyncio.Task[Any]]:
    """The tasks on this loop other than the caller, once they had a moment to end."""
    me = asyncio.current_task()
    for _ in range(50):
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left:
            return []
        await asyncio.sleep(0.02)
    return left


def _running_trio(handler: object, host: str, port: int, **kwargs: Any) -> Iterator[Any]:
    """A trio server in a thread of its own, shut down on the way out."""
    started = threading.Event()
    stop = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                functools.partial(trio_io.serve, handler, host, port, **kwargs)
            )
            box["server"] = server
            started.set()
            while not stop.is_set():
                await trio.sleep(0.02)
            await server.shutdown(deadline=5)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=lambda: box.setdefault("error", trio.run(main)))
    thread.start()
    try:
        assert started.wait(10), box
        yield box["server"]
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive()
