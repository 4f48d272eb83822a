"""A well-behaved server for tests: smtp_rtls's blocking adapter on 127.0.0.1,
STARTTLS with a certificate from a test CA, every message recorded.

It is what the ``smtp_server`` fixture of :mod:`smtp_rtls.testing.plugin`
starts: point the client under test at :attr:`LoopbackServer.port`, trust
:attr:`LoopbackServer.cafile`, and look at :attr:`LoopbackServer.messages`
afterwards::

    from smtp_rtls.io import sync
    from smtp_rtls.testing.server import LoopbackServer

    with LoopbackServer() as server:
        with sync.connect("127.0.0.1", server.port, local_hostname="c.example") as client:
            client.starttls(server.client_context())
            client.send("a@example.org", ["b@example.net"], b"Hi\\r\\n", requiretls=True)
            client.quit()
    assert server.messages[0].envelope.requiretls
"""

from __future__ import annotations

import ssl
import threading
from types import TracebackType
from typing import Any

import attrs

from .. import Reply, ServerConfig
from ..io import sync
from ..session.server import Handler, MessageWriter, SessionEnvelope, SessionInfo
from ._pki import LoopbackCA

__all__ = ["LoopbackServer", "RecordedMessage", "RecordingHandler"]


@attrs.frozen
class RecordedMessage:
    """A message a :class:`RecordingHandler` accepted."""

    #: Its transaction: reverse path, recipients, RFC 8689 tag, the session
    #: (peer, TLS, client name).
    envelope: SessionEnvelope
    #: Its content, as the server read it (dot-stuffing undone).
    content: bytes


class RecordingHandler(Handler):
    """A handler that accepts every envelope and message and records them.

    Safe to share between sessions (threads).  :attr:`messages` are the
    messages accepted, :attr:`aborted` counts the transactions that ended
    without their message (RSET, the peer gone mid-DATA), :attr:`sessions`
    the sessions that ended.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The messages accepted, oldest first.
        self.messages: list[RecordedMessage] = []
        #: Transactions whose content started and never ended.
        self.aborted = 0
        #: The sessions that ended, as :meth:`on_close` saw them.
        self.sessions: list[SessionInfo] = []

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        """A writer that keeps the content and records the message at its end."""
        return _Recorder(self, envelope)

    def on_close(self, session: SessionInfo) -> None:
        """Record the session."""
        with self._lock:
            self.sessions.append(session)

    def _done(self, message: RecordedMessage | None) -> None:
        with self._lock:
            if message is None:
                self.aborted += 1
            else:
                self.messages.append(message)


class _Recorder(MessageWriter):
    def __init__(self, handler: RecordingHandler, envelope: SessionEnvelope) -> None:
        self.handler = handler
        self.envelope = envelope
        self.content = bytearray()

    def write(self, data: bytes) -> None:
        self.content += data

    def close(self) -> Reply:
        self.handler._done(RecordedMessage(self.envelope, bytes(self.content)))
        return Reply(250, f"Recorded {len(self.content)} octets", "2.0.0")

    def abort(self) -> None:
        self.handler._done(None)


class LoopbackServer:
    """:func:`smtp_rtls.io.sync.serve` on ``host`` (127.0.0.1), a free port.

    STARTTLS (or, with ``implicit_tls``, TLS from the first byte) with a
    certificate of ``ca`` (a new :class:`~smtp_rtls.testing.peers.LoopbackCA`
    by default, closed with the server) for ``hostname``, ``localhost`` and
    the loopback addresses; REQUIRETLS after TLS.  ``config`` and
    ``read_timeout`` go to ``serve()``; ``handler`` defaults to a new
    :class:`RecordingHandler`.  Started by the constructor; stopped by
    :meth:`stop` or the end of a ``with`` block.
    """

    def __init__(
        self,
        *,
        ca: LoopbackCA | None = None,
        hostname: str = "mx.test.example",
        config: ServerConfig | None = None,
        handler: Handler | None = None,
        implicit_tls: bool = False,
        read_timeout: float | None = 10.0,
        host: str = "127.0.0.1",
    ) -> None:
        self._own_ca = ca is None
        #: The CA the server's certificate comes from.
        self.ca = ca if ca is not None else LoopbackCA((hostname, "localhost", "127.0.0.1", "::1"))
        #: The name the server gives itself (and its certificate carries).
        self.hostname = hostname
        #: The handler every session runs (a :class:`RecordingHandler` by default).
        self.handler: Handler = handler if handler is not None else RecordingHandler()
        #: The address it listens on.
        self.host = host
        names = (hostname, "localhost", "127.0.0.1", "::1")
        self._server = sync.serve(
            self.handler,
            host,
            0,
            hostname=hostname,
            config=config,
            tls=self.ca.server_context("valid", names),
            implicit_tls=implicit_tls,
            read_timeout=read_timeout,
        )
        #: The port it listens on.
        self.port: int = self._server.port
        self._stopped = False

    @property
    def cafile(self) -> str:
        """The CA certificate (PEM file) to trust."""
        return self.ca.cafile

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the server's CA."""
        return self.ca.client_context()

    @property
    def messages(self) -> list[RecordedMessage]:
        """The messages received (a :class:`RecordingHandler`'s), oldest first."""
        if not isinstance(self.handler, RecordingHandler):
            raise TypeError("the server runs a handler of yours: ask it")
        with self.handler._lock:
            return list(self.handler.messages)

    @property
    def envelopes(self) -> list[SessionEnvelope]:
        """The envelopes of :attr:`messages`."""
        return [m.envelope for m in self.messages]

    def connect(self, **options: Any) -> sync.Client:
        """:func:`smtp_rtls.io.sync.connect` to this server (``options`` go
        to it; ``local_hostname`` defaults to ``client.test.example`` and
        ``timeout`` to 10 seconds)."""
        options.setdefault("local_hostname", "client.test.example")
        options.setdefault("timeout", 10.0)
        return sync.connect(self.host, self.port, **options)

    def stop(self, deadline: float = 5.0) -> None:
        """Stop the server: the sessions in flight get ``deadline`` seconds."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._server.shutdown(deadline)
        finally:
            if self._own_ca:
                self.ca.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
