"""Driving a ServerSession by hand, for the differential tests: every
request it makes, in a form two runs can be compared by."""

from __future__ import annotations

from typing import Any

from smtp_rtls import TLSInfo
from smtp_rtls.session.server import Call, Handler, Read, StartTLS, Write

#: The handler methods a session answers itself when the handler leaves them
#: as Handler's (their answers are Handler's, made without a call).
ANSWERED_INLINE = (
    "on_connect",
    "on_ehlo",
    "on_mail",
    "on_rcpt",
    "on_data_start",
    "on_reset",
    "on_close",
)


def comparable(request: Any) -> tuple[Any, ...]:
    """A request as a tuple; a call's target (each run's own handler and
    writers) compared by its type."""
    if isinstance(request, Read):
        return ("read", request.timeout, request.deadline)
    if isinstance(request, Write):
        return ("write", request.data)
    if isinstance(request, StartTLS):
        return ("starttls",)
    assert isinstance(request, Call)
    return ("call", type(request.target).__name__, request.method, request.args)


def without_inherited_calls(made: list[tuple[Any, ...]], handler: object) -> list[tuple[Any, ...]]:
    """``made`` (by a session that calls every method, as the reference
    does) less the calls of the :data:`ANSWERED_INLINE` methods ``handler``
    has from Handler unchanged."""
    inherited = {
        name for name in ANSWERED_INLINE if getattr(type(handler), name) is getattr(Handler, name)
    }
    name = type(handler).__name__
    return [r for r in made if not (r[0] == "call" and r[1] == name and r[2] in inherited)]


def play(session: Any, reads: list[bytes], tls: TLSInfo | None = None) -> list[tuple[Any, ...]]:
    """Run ``session`` on ``reads`` (then the end of the input), answering a
    handshake with ``tls`` (None: it failed) and calls as an adapter does
    (an exception raised is the result); its requests, in order."""
    steps = session.run()
    pending = list(reads)
    made: list[tuple[Any, ...]] = []
    result: Any = None
    for _ in range(100_000):
        try:
            request = steps.send(result)
        except StopIteration:
            return made
        made.append(comparable(request))
        if isinstance(request, Read):
            result = pending.pop(0) if pending else b""
        elif isinstance(request, Write):
            result = None
        elif isinstance(request, StartTLS):
            result = tls
        else:
            try:
                result = getattr(request.target, request.method)(*request.args)
            except Exception as exc:
                result = exc
    raise AssertionError("the session did not end")


def reads_of(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (any order, repeats allowed) into non-empty reads."""
    reads, start = [], 0
    for cut in [*sorted(cuts), len(data)]:
        if cut > start:
            reads.append(data[start:cut])
            start = cut
    return reads
