"""What the asyncio and trio delivery runners share: driving a session with awaited answers.

:func:`run_session_async` is :func:`~smtp_rtls.session.requests.run_session`
for an ``answer`` that is awaited; :func:`fulfil_policy` calls the
``fulfil`` a caller passed, awaiting it when it is a coroutine function
(an :class:`~smtp_rtls.io.asyncio.AsyncFulfiller`), so a plain table
serves in tests.  Neither looks at what a request means.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

from ..policy.requests import Request, Result
from ..session.requests import SessionRequest, SessionResult, Step

__all__ = ["Fulfil", "fulfil_policy", "run_session_async"]

T = TypeVar("T")

#: Answers DNS and HTTPS requests; awaited when it returns an awaitable.
Fulfil: TypeAlias = Callable[[Request], Result | Awaitable[Result]]


async def fulfil_policy(fulfil: Fulfil, request: Request) -> Result:
    """``fulfil(request)``, awaited if need be."""
    result = fulfil(request)
    if inspect.isawaitable(result):
        return await result
    return result


async def run_session_async(
    driver: Step[T], answer: Callable[[SessionRequest], Awaitable[SessionResult]]
) -> T:
    """Drive ``driver`` to completion, awaiting ``answer`` for each request."""
    try:
        request = next(driver)
        while True:
            request = driver.send(await answer(request))
    except StopIteration as stop:
        result: T = stop.value
        return result
