"""The pytest plugin of smtp_rtls: fixtures for testing an MTA.

Registered through the ``pytest11`` entry point (name ``smtp_rtls``) when
smtp_rtls is installed, so the fixtures are there in every test session;
``-p no:smtp_rtls`` turns it off.  Importing it costs nothing: each
fixture imports what it needs when it runs, so a project without the
``testing`` extra's dependencies still starts pytest.

``smtp_pair``
    a :class:`~smtp_rtls.testing.pair.Pair`: a client and a server
    connection linked in memory, greeted already.
``smtp_server``
    a :class:`~smtp_rtls.testing.server.LoopbackServer`: smtp_rtls's real
    server on 127.0.0.1, STARTTLS with a certificate from ``smtp_test_ca``,
    REQUIRETLS after TLS, recording messages and envelopes.  Stopped after
    the test.
``misbehaving_server``
    one of the :data:`~smtp_rtls.testing.peers.SERVERS`, chosen by indirect
    parametrization with its name (or ``(name, options)``), started with
    ``smtp_test_ca`` and stopped after the test.
``make_misbehaving_server``
    the same as a factory, ``make_misbehaving_server(name, **options)``,
    for several in one test; each is stopped after the test.
``smtp_test_ca``
    the session's :class:`~smtp_rtls.testing.peers.LoopbackCA`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._pki import LoopbackCA
    from .pair import Pair
    from .peers import ScriptedServer
    from .server import LoopbackServer

__all__ = [
    "make_misbehaving_server",
    "misbehaving_server",
    "smtp_pair",
    "smtp_server",
    "smtp_test_ca",
]


@pytest.fixture(scope="session")
def smtp_test_ca() -> Iterator[LoopbackCA]:
    """A throwaway CA for the session; its certificates name
    ``mx.test.example``, ``localhost``, ``127.0.0.1`` and ``::1``."""
    from ._pki import LoopbackCA

    with LoopbackCA() as ca:
        yield ca


@pytest.fixture
def smtp_pair() -> Pair:
    """A client and a server connection linked in memory, the ``220``
    greeting already read by the client."""
    from .pair import Pair

    pair = Pair()
    pair.greet()
    return pair


@pytest.fixture
def smtp_server(smtp_test_ca: LoopbackCA) -> Iterator[LoopbackServer]:
    """smtp_rtls's server on 127.0.0.1 with STARTTLS, recording every message."""
    from .server import LoopbackServer

    server = LoopbackServer(ca=smtp_test_ca)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_misbehaving_server(
    smtp_test_ca: LoopbackCA,
) -> Iterator[Callable[..., ScriptedServer]]:
    """``make(name, **options)`` starts the misbehaving server ``name``
    (a key of :data:`~smtp_rtls.testing.peers.SERVERS`); all are stopped
    after the test."""
    from .peers import SERVERS

    started: list[ScriptedServer] = []

    def make(name: str, **options: Any) -> ScriptedServer:
        if name not in SERVERS:
            raise LookupError(f"no misbehaving server {name!r}: one of {sorted(SERVERS)}")
        options.setdefault("ca", smtp_test_ca)
        server = SERVERS[name](**options)
        started.append(server)
        return server

    try:
        yield make
    finally:
        errors = []
        for server in started:
            try:
                server.stop()
            except RuntimeError as exc:  # pragma: no cover - a thread that hangs
                errors.append(exc)
        if errors:  # pragma: no cover
            raise errors[0]


@pytest.fixture
def misbehaving_server(
    request: pytest.FixtureRequest, make_misbehaving_server: Callable[..., ScriptedServer]
) -> ScriptedServer:
    """The misbehaving server named by the indirect parameter: a name, or
    ``(name, options)``::

        @pytest.mark.parametrize("misbehaving_server", ["strip-starttls"], indirect=True)
        def test_it(misbehaving_server): ...
    """
    param = getattr(request, "param", None)
    if param is None:
        raise pytest.UsageError(
            "misbehaving_server needs a name: parametrize it indirectly"
            " (@pytest.mark.parametrize('misbehaving_server', [...], indirect=True)),"
            " or use make_misbehaving_server"
        )
    if isinstance(param, str):
        return make_misbehaving_server(param)
    name, options = param
    return make_misbehaving_server(name, **options)
