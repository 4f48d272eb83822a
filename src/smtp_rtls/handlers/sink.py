"""Sink: accepts every message and keeps nothing but counts (for benchmarks
and tests; never for mail that matters)."""

from __future__ import annotations

import collections
import threading

from .._reply import Reply
from ..session.server import Handler, MessageWriter, SessionEnvelope

__all__ = ["Sink"]


class Sink(Handler):
    """Accept everything, store nothing, count messages and octets.

    Safe to share between threads; ``messages`` and ``octets`` count the
    messages accepted (answered 250) and their content.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages = 0
        self.octets = 0
        # The last 1000 envelopes: a deque drops the oldest in constant time
        # (deleting a list's first item moves the other 999, per message).
        self._envelopes: collections.deque[SessionEnvelope] = collections.deque(maxlen=1000)

    @property
    def envelopes(self) -> list[SessionEnvelope]:
        """The envelopes of the messages accepted, oldest first (the last 1000)."""
        with self._lock:
            return list(self._envelopes)

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        """A writer that counts the content and drops it."""
        return _Counter(self, envelope)

    def _done(self, envelope: SessionEnvelope, octets: int) -> None:
        with self._lock:
            self.messages += 1
            self.octets += octets
            self._envelopes.append(envelope)


class _Counter(MessageWriter):
    def __init__(self, sink: Sink, envelope: SessionEnvelope) -> None:
        self.sink = sink
        self.envelope = envelope
        self.octets = 0

    def write(self, data: bytes) -> None:
        self.octets += len(data)

    def close(self) -> Reply:
        octets = self.octets
        self.sink._done(self.envelope, octets)
        reply = _ACCEPTED.get(octets)
        if reply is None:
            reply = Reply(250, f"Accepted {octets} octets (discarded)", "2.0.0")
            if len(_ACCEPTED) >= 1024:
                _ACCEPTED.clear()
            _ACCEPTED[octets] = reply
        return reply


# The replies made so far, by size: a reply is immutable and formats itself
# once, and a sink's messages (a benchmark's, a test's) are often the same
# size.  Bounded: emptied when full.
_ACCEPTED: dict[int, Reply] = {}
