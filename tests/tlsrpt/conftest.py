"""Fixtures of the TLSRPT tests: certificates, and loopback servers stopped at the end."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from smtp_rtls.io import sync

from .world import Certs, DNSServer, HTTPSServer, Recorder, smtp_server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("tlsrpt-certs"))


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    server = DNSServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def https() -> Iterator[Callable[[ssl.SSLContext], HTTPSServer]]:
    started: list[HTTPSServer] = []

    def start(context: ssl.SSLContext) -> HTTPSServer:
        server = HTTPSServer(context)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp() -> Iterator[Callable[..., sync.Server]]:
    started: list[sync.Server] = []

    def start(
        context: ssl.SSLContext | None, handler: Recorder | None = None, **kwargs: Any
    ) -> sync.Server:
        server = smtp_server(context, handler, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown(deadline=5)
