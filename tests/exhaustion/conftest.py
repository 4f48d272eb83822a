"""The servers under attack: one process per adapter kind, shared by the
tests of this directory and stopped at the end of the run.

Every attacked server runs with the same settings (:data:`SETTINGS`), the
ones the attacks need: a 10 MiB message limit, a short read timeout (the
idle timeout, the handshake timeout and the write timeout) and room for
thousands of connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from smtp_rtls.testing.peers import LoopbackCA

from .exhaustion_proc import MiB, ServerProcess

#: The read timeout (seconds) of the attacked servers: each wait for the
#: peer, the TLS handshake, and (with this change) a write the peer does
#: not read.  Short, so that the tests that wait for it stay short.
READ_TIMEOUT = 2.0
#: The message size limit of the attacked servers (the SIZE value).
MESSAGE_LIMIT = 10 * MiB
#: Sessions in flight the attacked servers allow.
MAX_CONNECTIONS = 2000

SETTINGS = {
    "read_timeout": READ_TIMEOUT,
    "max_message_size": MESSAGE_LIMIT,
    "max_connections": MAX_CONNECTIONS,
}


@pytest.fixture(scope="session")
def attacked() -> Iterator[Callable[..., ServerProcess]]:
    """``attacked(kind, **settings)``: the server process of that adapter
    kind with :data:`SETTINGS` (``settings`` replace some), started on first
    use, STARTTLS offered with a certificate of a loopback CA.  Each use
    waits until no session of an earlier test is in flight."""
    started: dict[tuple[str, str], ServerProcess] = {}
    ca = LoopbackCA(("mx.test.example", "localhost", "127.0.0.1"))
    pem = ca.certificate_file("valid")

    def get(kind: str, **settings: float) -> ServerProcess:
        options = {**SETTINGS, **settings}
        key = (kind, repr(sorted(options.items())))
        if key not in started:
            started[key] = ServerProcess(kind, tls=pem, **options)
        proc = started[key]
        assert proc.wait_active(0) == 0, "a session of an earlier test is still in flight"
        return proc

    try:
        yield get
    finally:
        for proc in started.values():
            proc.stop()
        ca.close()
