"""A minimal blocking loop that runs a ServerConnection on a loopback socket.

Test scaffolding only (the library's adapters come later): one thread, one
connection at a time, real TLS through the ssl module after STARTTLS, and a
hard deadline on every wait so a broken peer cannot hang the suite.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from types import TracebackType

import attrs

from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MessageData,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
    TLSInfo,
)


@attrs.define
class Received:
    """What one session delivered: every event, and the messages with their envelopes."""

    events: list[Event] = attrs.field(factory=list)
    messages: list[tuple[EndOfMessage, bytes]] = attrs.field(factory=list)
    error: BaseException | None = None


def default_decide(event: Event) -> Reply:
    """Accept everything."""
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "hello")
    if isinstance(event, StartTLS):
        return Reply(220, "Ready to start TLS", "2.0.0")
    if isinstance(event, Data):
        return Reply(354, "go ahead")
    return Reply(250, "OK", "2.0.0")


class LoopbackServer:
    """Serve sessions on 127.0.0.1 in a thread until closed."""

    def __init__(
        self,
        context: ssl.SSLContext | None,
        config: ServerConfig | None = None,
        decide: Callable[[Event], Reply] = default_decide,
        timeout: float = 10.0,
    ) -> None:
        self.context = context
        self.config = config or ServerConfig(starttls=context is not None)
        self.decide = decide
        self.timeout = timeout
        self.sessions: list[Received] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(self.timeout)
        self._listener.close()
        assert not self._thread.is_alive(), "server thread did not stop"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            received = Received()
            self.sessions.append(received)
            try:
                self._serve(sock, received)
            except BaseException as exc:  # recorded for the test to inspect
                received.error = exc
            finally:
                sock.close()

    def _serve(self, sock: socket.socket, received: Received) -> None:
        sock.settimeout(self.timeout)
        conn = ServerConnection("mx.test", self.config)
        sock.sendall(conn.send(Reply(220, "mx.test ESMTP smtp_rtls test server")))
        content = bytearray()
        for _ in range(10_000):  # bounded: no session in the tests is this long
            event = conn.next_event()
            if event is NEED_DATA:
                sock.sendall(conn.data_to_send())
                data = sock.recv(65536)
                conn.receive_data(data)
                continue
            if event is PAUSED:
                pending = conn.pending
                assert pending is not None
                reply = self.decide(pending)
                sock.sendall(conn.send(reply))
                if isinstance(pending, StartTLS) and reply.code == 220:
                    assert self.context is not None
                    sock = self.context.wrap_socket(sock, server_side=True)
                    cipher = sock.cipher()
                    assert cipher is not None
                    conn.start_tls(TLSInfo(sock.version() or "", cipher[0], cipher[2]))
                continue
            assert isinstance(event, Event)
            received.events.append(event)
            if isinstance(event, MessageData):
                content += event.data
            elif isinstance(event, EndOfMessage):
                received.messages.append((event, bytes(content)))
                content.clear()
            elif isinstance(event, ConnectionClosed):
                sock.sendall(conn.data_to_send())
                return
        raise AssertionError("session did not end")
