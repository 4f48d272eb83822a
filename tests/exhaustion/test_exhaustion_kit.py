"""The testing kit's scripted peers bound what they record.

A peer records every octet it receives so that a test can inspect it; a
misbehaving party on the other side (the code under test, or an attack)
must not make that record grow without end.  Past ``max_record`` octets
(``DEFAULT_MAX_RECORD`` by default) the record keeps exactly the first
``max_record``, says so (``truncated``, ``error``) and the peer closes the
connection.
"""

from __future__ import annotations

import contextlib
import socket
import tracemalloc

import pytest

from smtp_rtls.testing._servers import DEFAULT_MAX_RECORD
from smtp_rtls.testing.peers import ScriptedServer, SilentClient

from .exhaustion_proc import KiB, MiB, measured, read_reply, read_until_closed
from .test_exhaustion_client import ENDLESS_LINE, endless


def test_the_default_recording_limit_is_16_mib() -> None:
    assert 16 * MiB == DEFAULT_MAX_RECORD
    with ScriptedServer() as server:
        assert server.max_record == DEFAULT_MAX_RECORD
    assert SilentClient().max_record == DEFAULT_MAX_RECORD
    with pytest.raises(ValueError, match="max_record"):
        ScriptedServer(max_record=0)
    with pytest.raises(ValueError, match="max_record"):
        SilentClient(max_record=-1)


def test_a_scripted_server_cuts_off_a_client_past_its_recording_limit() -> None:
    limit = 1 * MiB
    tracemalloc.start()
    try:
        with (
            ScriptedServer(max_record=limit) as server,
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        ):
            assert read_reply(sock).startswith(b"220 ")
            block = b"x" * (64 * KiB)
            with contextlib.suppress(OSError):  # cut off on the way
                for _ in range(64 * MiB // len(block)):
                    sock.sendall(block)
            with contextlib.suppress(OSError):
                read_until_closed(sock)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (record,) = server.sessions
    assert record.truncated
    assert len(record.received) == limit
    assert record.received == b"x" * limit
    assert record.error == f"recording limit of {limit} octets reached"
    measured("ScriptedServer, 64 MiB sent, 1 MiB limit", "sync", peak)
    assert peak <= 8 * limit, peak


def test_a_scripted_server_records_a_bounded_number_of_events() -> None:
    limit = 128 * 50  # 50 events
    with (
        ScriptedServer(max_record=limit) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        assert read_reply(sock).startswith(b"220 ")
        with contextlib.suppress(OSError):
            sock.sendall(b"EHLO c.example\r\n" + b"RSET\r\n" * 200)
            read_until_closed(sock)
    (record,) = server.sessions
    assert record.truncated and len(record.events) == 50
    assert record.error == "recording limit of 50 events reached"


def test_a_scripted_client_cuts_off_an_endless_reply_past_its_recording_limit() -> None:
    limit = 1 * MiB
    with endless(ENDLESS_LINE) as server:
        tracemalloc.start()
        try:
            record = SilentClient(max_record=limit, timeout=10).run("127.0.0.1", server.port)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert record.truncated and not record.closed_by_server
    assert len(record.received) == limit
    assert record.received.startswith(b"220 xxx")
    assert record.error == f"recording limit of {limit} octets reached"
    assert server.sent < 32 * MiB
    measured("ScriptedClient, endless reply, 1 MiB limit", "sync", peak)
    assert peak <= 8 * limit, peak
