"""The load generator: raw asyncio Protocol code, no SMTP library.

Each connection is a callback state machine (no coroutine per reply):
every complete reply moves it on and writes the next command, so the
generator costs as little as an SMTP client can.  A reply is complete on
its line whose fourth octet is a space; each is checked against the code
the step expects, and any other ends the run with an error.

* lock-step: MAIL, wait; RCPT, wait; DATA, wait for 354; content, wait;
* pipelined (RFC 2920): MAIL, RCPT and DATA in one write, wait for the
  three replies, then the content;
* a session sends messages until the run's deadline, then QUITs; with a
  connection per message, each connection greets, EHLOs (STARTTLS and EHLO
  again when asked), sends one message and QUITs, and its slot opens the
  next one until the deadline.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import cast

import attrs

from .common import CLIENT_NAME, HOST, IO_TIMEOUT, RECIPIENT, SENDER, SERVER_NAME

_EHLO = f"EHLO {CLIENT_NAME}\r\n".encode()
_MAIL = f"MAIL FROM:<{SENDER}>\r\n".encode()
_RCPT = f"RCPT TO:<{RECIPIENT}>\r\n".encode()
_DATA = b"DATA\r\n"
_ENVELOPE = _MAIL + _RCPT + _DATA
_STARTTLS = b"STARTTLS\r\n"
_QUIT = b"QUIT\r\n"

# The steps of a connection, each with the reply code it waits for.
GREETING, EHLO, STARTTLS, MAIL, RCPT, DATA, ENVELOPE, CONTENT, QUIT, DONE = range(10)
_EXPECT = {
    GREETING: 220,
    EHLO: 250,
    STARTTLS: 220,
    MAIL: 250,
    RCPT: 250,
    DATA: 354,
    CONTENT: 250,
    QUIT: 221,
}
_NAMES = ("greeting", "EHLO", "STARTTLS", "MAIL", "RCPT", "DATA", "envelope", "content", "QUIT")


@attrs.define
class Job:
    """One timed run's parameters and what its connections counted."""

    content: bytes
    pipelined: bool
    per_message: bool
    tls: ssl.SSLContext | None
    deadline: float
    #: Messages answered 250 after their content.
    messages: int = 0
    errors: list[str] = attrs.Factory(list)
    live: set[LoadProtocol] = attrs.Factory(set)


class LoadProtocol(asyncio.Protocol):
    """One client connection of the load generator."""

    def __init__(self, job: Job, done: asyncio.Future[None]) -> None:
        self.job = job
        self.done = done
        self.loop = done.get_loop()
        self.transport: asyncio.Transport | None = None
        self.step = GREETING
        self.tls_on = False
        self.buf = b""
        # pipelined envelope: replies still awaited in the group
        self.left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Wait for the greeting."""
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance()
        self.transport = cast(asyncio.Transport, transport)
        self.job.live.add(self)

    def data_received(self, data: bytes) -> None:
        """Act on every complete reply."""
        buf = self.buf + data if self.buf else data
        start = 0
        # bounded by the data: every pass consumes a line
        while True:
            eol = buf.find(b"\r\n", start)
            if eol < 0:
                break
            line = buf[start:eol]
            start = eol + 2
            if line[3:4] == b"-":
                continue
            self._reply(line)
            if self.step == DONE or self.step == STARTTLS + 100:
                # finished, or handing the connection to the TLS layer
                self.buf = b""
                return
        self.buf = buf[start:]

    def _reply(self, line: bytes) -> None:
        """One complete reply: check its code, write what comes next."""
        step = self.step
        code = int(line[:3]) if line[:3].isdigit() else 0
        if step == ENVELOPE:
            self.left -= 1
            expect = 354 if self.left == 0 else 250
        else:
            expect = _EXPECT[step]
        if code != expect:
            self._fail(f"{_NAMES[step]}: expected {expect}, got {line[:200]!r}")
            return
        transport = self.transport
        assert transport is not None
        if step == CONTENT:
            self.job.messages += 1
            if self.job.per_message:
                self.step = QUIT
                transport.write(_QUIT)
            else:
                self._transaction()
        elif step == ENVELOPE:
            if self.left == 0:
                self.step = CONTENT
                transport.write(self.job.content)
        elif step == MAIL:
            self.step = RCPT
            transport.write(_RCPT)
        elif step == RCPT:
            self.step = DATA
            transport.write(_DATA)
        elif step == DATA:
            self.step = CONTENT
            transport.write(self.job.content)
        elif step == EHLO:
            if self.job.tls is not None and not self.tls_on:
                self.step = STARTTLS
                transport.write(_STARTTLS)
            else:
                self._transaction()
        elif step == GREETING:
            self.step = EHLO
            transport.write(_EHLO)
        elif step == STARTTLS:
            self.step = STARTTLS + 100  # no more replies on the plain transport
            self.loop.create_task(self._upgrade())
        elif step == QUIT:
            self.step = DONE
            transport.close()
            self._finish()

    def _transaction(self) -> None:
        """The next message, or QUIT once the run's deadline has passed
        (a connection per message always sends exactly one)."""
        transport = self.transport
        assert transport is not None
        job = self.job
        if not job.per_message and self.loop.time() >= job.deadline:
            self.step = QUIT
            transport.write(_QUIT)
        elif job.pipelined:
            self.step = ENVELOPE
            self.left = 3
            transport.write(_ENVELOPE)
        else:
            self.step = MAIL
            transport.write(_MAIL)

    async def _upgrade(self) -> None:
        """The client side of the handshake, then EHLO again (RFC 3207 §4.2)."""
        transport = self.transport
        assert transport is not None and self.job.tls is not None
        try:
            new = await self.loop.start_tls(
                transport,
                self,
                self.job.tls,
                server_hostname=SERVER_NAME,
                ssl_handshake_timeout=IO_TIMEOUT,
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self._fail(f"TLS handshake: {exc!r}")
            return
        self.transport = cast(asyncio.Transport, new)
        self.tls_on = True
        self.step = EHLO
        self.transport.write(_EHLO)

    def _fail(self, why: str) -> None:
        """Record the error and cut the connection."""
        if len(self.job.errors) < 20:
            self.job.errors.append(why)
        self.step = DONE
        if self.transport is not None:
            self.transport.abort()
        self._finish()

    def _finish(self) -> None:
        self.job.live.discard(self)
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """A connection lost before QUIT's 221 is an error."""
        if self.step != DONE and self.step != STARTTLS + 100:
            self._fail(f"connection lost at {_NAMES[self.step]}: {exc!r}")
        elif self.step == DONE:
            self._finish()


@attrs.frozen
class LoadResult:
    """What one timed run of the load generator saw."""

    messages: int
    elapsed: float
    #: The load generator's own CPU seconds over the run.
    cpu: float
    errors: tuple[str, ...]


async def run_load(
    port: int,
    *,
    content: bytes,
    connections: int,
    pipelined: bool,
    per_message: bool,
    tls: ssl.SSLContext | None,
    duration: float,
) -> LoadResult:
    """Drive the server on ``port`` for ``duration`` seconds with
    ``connections`` concurrent connections; every connection ends cleanly
    (QUIT) after the deadline.  The whole run is bounded by ``duration`` +
    :data:`IO_TIMEOUT`: past that, what is left is aborted and reported."""
    loop = asyncio.get_running_loop()
    job = Job(content, pipelined, per_message, tls, loop.time() + duration)

    async def connection() -> None:
        done: asyncio.Future[None] = loop.create_future()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: LoadProtocol(job, done), HOST, port), IO_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            if len(job.errors) < 20:
                job.errors.append(f"connect: {exc!r}")
            return
        await done

    async def slot() -> None:
        if not per_message:
            await connection()
            return
        # bounded by the deadline (and by the failure of any connection)
        while loop.time() < job.deadline and not job.errors:
            await connection()

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    tasks = [loop.create_task(slot()) for _ in range(connections)]
    _done, pending = await asyncio.wait(tasks, timeout=duration + IO_TIMEOUT)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if pending:
        job.errors.append(
            f"stalled: {len(pending)} of {connections} connections unfinished "
            f"{IO_TIMEOUT:.0f} s after the deadline"
        )
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=5)
    for proto in list(job.live):
        if proto.transport is not None:
            proto.transport.abort()
    return LoadResult(job.messages, elapsed, cpu, tuple(job.errors))


def run_load_sync(
    port: int,
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
    **kwargs: object,
) -> LoadResult:
    """:func:`run_load` on a fresh event loop (uvloop's when given)."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run_load(port, **kwargs))  # type: ignore[arg-type]
