"""The client contenders: each sends messages to the sink until a deadline.

Every contender gets the same message (CRLF line ends, not dot-stuffed: the
client stuffs), the same envelope, the same EHLO name (so that none asks
DNS for its own name) and a 30 s timeout on every wait.  A run returns the
messages the server answered 250 to, the wall time and this process's CPU
time; the runner checks the count against the sink's.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .common import CLIENT_NAME, HOST, IO_TIMEOUT, RECIPIENT, SENDER

#: Bound on the messages of one run, beyond the deadline (a runaway guard).
MAX_MESSAGES = 1_000_000


@attrs.frozen
class ClientRun:
    """One timed run of one client."""

    messages: int
    elapsed: float
    cpu: float


# -- blocking clients --------------------------------------------------------------------


def _timed_sync(send_until: Callable[[float], int], duration: float) -> ClientRun:
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    messages = send_until(t0 + duration)
    return ClientRun(messages, time.perf_counter() - t0, time.process_time() - cpu0)


def smtplib_run(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """The standard library's ``smtplib.SMTP.sendmail``."""

    def send_until(deadline: float) -> int:
        n = 0
        if per_message:
            while time.perf_counter() < deadline and n < MAX_MESSAGES:
                with smtplib.SMTP(HOST, port, CLIENT_NAME, timeout=IO_TIMEOUT) as s:
                    _check_smtplib(s.sendmail(SENDER, [RECIPIENT], msg))
                n += 1
            return n
        with smtplib.SMTP(HOST, port, CLIENT_NAME, timeout=IO_TIMEOUT) as s:
            while time.perf_counter() < deadline and n < MAX_MESSAGES:
                _check_smtplib(s.sendmail(SENDER, [RECIPIENT], msg))
                n += 1
        return n

    return _timed_sync(send_until, duration)


def _check_smtplib(refused: dict[str, Any]) -> None:
    if refused:
        raise RuntimeError(f"smtplib: refused {refused}")


def ours_sync_run(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """Ours, blocking: ``smtp_rtls.io.sync.connect(...)`` then ``client.send(...)``."""
    from smtp_rtls.io import sync

    def connect() -> sync.Client:
        return sync.connect(HOST, port, local_hostname=CLIENT_NAME, timeout=IO_TIMEOUT)

    def send_until(deadline: float) -> int:
        n = 0
        if per_message:
            while time.perf_counter() < deadline and n < MAX_MESSAGES:
                client = connect()
                try:
                    _check_ours(client.send(SENDER, [RECIPIENT], msg))
                    client.quit()
                finally:
                    client.close()
                n += 1
            return n
        client = connect()
        try:
            while time.perf_counter() < deadline and n < MAX_MESSAGES:
                _check_ours(client.send(SENDER, [RECIPIENT], msg))
                n += 1
            client.quit()
        finally:
            client.close()
        return n

    return _timed_sync(send_until, duration)


def _check_ours(result: Any) -> None:
    if not result.accepted:
        raise RuntimeError(f"ours: not accepted: {result!r}")


# -- asynchronous clients -----------------------------------------------------------------


async def _timed_async(
    send_one: Callable[[], Awaitable[None]],
    session: Callable[[Callable[[], Awaitable[int]]], Awaitable[int]] | None,
    duration: float,
) -> ClientRun:
    """Send with ``send_one`` until the deadline; inside one ``session``
    when given (its argument is the loop to run), else each call is a whole
    connection."""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + duration

    async def loop() -> int:
        n = 0
        while time.perf_counter() < deadline and n < MAX_MESSAGES:
            await send_one()
            n += 1
        return n

    messages = await (session(loop) if session is not None else loop())
    return ClientRun(messages, time.perf_counter() - t0, time.process_time() - cpu0)


def ours_asyncio_run(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """Ours on asyncio: ``smtp_rtls.io.asyncio.connect`` (the default event loop)."""
    from smtp_rtls.io import asyncio as ours

    async def connect() -> ours.Client:
        return await ours.connect(HOST, port, local_hostname=CLIENT_NAME, timeout=IO_TIMEOUT)

    async def main() -> ClientRun:
        if per_message:

            async def one() -> None:
                client = await connect()
                try:
                    _check_ours(await client.send(SENDER, [RECIPIENT], msg))
                finally:
                    await client.quit()

            return await _timed_async(one, None, duration)
        client = await connect()

        async def send() -> None:
            _check_ours(await client.send(SENDER, [RECIPIENT], msg))

        async def session(loop: Callable[[], Awaitable[int]]) -> int:
            try:
                return await loop()
            finally:
                await client.quit()

        return await _timed_async(send, session, duration)

    return asyncio.run(main())


def ours_trio_run(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """Ours on trio: ``smtp_rtls.io.trio.connect``."""
    import trio

    from smtp_rtls.io import trio as ours

    async def connect() -> ours.Client:
        return await ours.connect(HOST, port, local_hostname=CLIENT_NAME, timeout=IO_TIMEOUT)

    async def main() -> ClientRun:
        if per_message:

            async def one() -> None:
                client = await connect()
                try:
                    _check_ours(await client.send(SENDER, [RECIPIENT], msg))
                finally:
                    await client.quit()

            return await _timed_async(one, None, duration)
        client = await connect()

        async def send() -> None:
            _check_ours(await client.send(SENDER, [RECIPIENT], msg))

        async def session(loop: Callable[[], Awaitable[int]]) -> int:
            try:
                return await loop()
            finally:
                await client.quit()

        return await _timed_async(send, session, duration)

    result: ClientRun = trio.run(main)
    return result


def aiosmtplib_run(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """aiosmtplib's ``SMTP.sendmail`` (the default event loop)."""
    import aiosmtplib

    def client() -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=HOST,
            port=port,
            local_hostname=CLIENT_NAME,
            timeout=IO_TIMEOUT,
            start_tls=False,
        )

    async def main() -> ClientRun:
        if per_message:

            async def one() -> None:
                async with client() as smtp:
                    _check_aiosmtplib(await smtp.sendmail(SENDER, [RECIPIENT], msg))

            return await _timed_async(one, None, duration)
        smtp = client()
        await smtp.connect()

        async def send() -> None:
            _check_aiosmtplib(await smtp.sendmail(SENDER, [RECIPIENT], msg))

        async def session(loop: Callable[[], Awaitable[int]]) -> int:
            try:
                return await loop()
            finally:
                await smtp.quit()

        return await _timed_async(send, session, duration)

    return asyncio.run(main())


def _check_aiosmtplib(result: tuple[dict[str, Any], str]) -> None:
    if result[0]:
        raise RuntimeError(f"aiosmtplib: refused {result[0]}")


def smtpproto_run(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """smtpproto's ``AsyncSMTPSession.send_message`` on asyncio (through AnyIO).

    It sends an ``EmailMessage`` only (it serialises the message for each
    send), so the message is parsed once before the clock starts.
    """
    from smtpproto.client import AsyncSMTPClient

    parsed = email.message_from_bytes(msg, policy=email.policy.SMTP)
    client = AsyncSMTPClient(
        HOST, port, connect_timeout=IO_TIMEOUT, timeout=IO_TIMEOUT, domain=CLIENT_NAME
    )

    async def main() -> ClientRun:
        if per_message:

            async def one() -> None:
                async with client.connect() as session:
                    await session.send_message(parsed, sender=SENDER, recipients=[RECIPIENT])

            return await _timed_async(one, None, duration)

        async def session(loop: Callable[[], Awaitable[int]]) -> int:
            async with client.connect() as smtp:
                holder.append(smtp)
                return await loop()

        holder: list[Any] = []

        async def send() -> None:
            await holder[0].send_message(parsed, sender=SENDER, recipients=[RECIPIENT])

        return await _timed_async(send, session, duration)

    return asyncio.run(main())


def smtpproto_available() -> str | None:
    """None when smtpproto imports, else why not."""
    try:
        import smtpproto.client  # noqa: F401
    except ImportError as exc:
        return f"smtpproto is not installed ({exc}); pip install smtpproto"
    return None


#: name -> the function that runs it
def raw_sync_run(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """The raw blocking client (:mod:`suite.rawclient`): the ceiling."""
    from .rawclient import raw_sync

    return raw_sync(port, msg, per_message, duration)


def raw_asyncio_run(port: int, msg: bytes, per_message: bool, duration: float) -> ClientRun:
    """The raw asyncio client (:mod:`suite.rawclient`): the ceiling."""
    from .rawclient import raw_asyncio

    return raw_asyncio(port, msg, per_message, duration)


CLIENTS: dict[str, Callable[[int, bytes, bool, float], ClientRun]] = {
    "smtplib": smtplib_run,
    "ours-sync": ours_sync_run,
    "raw-sync": raw_sync_run,
    "aiosmtplib": aiosmtplib_run,
    "ours-asyncio": ours_asyncio_run,
    "ours-trio": ours_trio_run,
    "raw-asyncio": raw_asyncio_run,
    "smtpproto": smtpproto_run,
}
#: The clients that are asynchronous (also reported against aiosmtplib).
ASYNC_CLIENTS = ("ours-asyncio", "ours-trio", "raw-asyncio", "smtpproto")
