"""send_message in one write with BDAT (RFC 3030) against a real ServerConnection
in memory: the same outcome, and the same content stored, as with DATA."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from memory_net import Site, Wire, accept_all

from smtp_rtls import (
    Bdat,
    ClientConnection,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    MailFrom,
    RcptTo,
    Reply,
    ServerConfig,
)
from smtp_rtls.session import client as client_ops
from smtp_rtls.session.client import CHUNKING_MAX, SendResult
from smtp_rtls.session.requests import Read, Step, Write


def _run(steps: Step[SendResult], wire: Wire) -> tuple[SendResult, list[bytes]]:
    """Answer the operation's requests from the wire; also return its writes."""
    writes: list[bytes] = []
    result: object = None
    for _ in range(1000):
        try:
            request = steps.send(result)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value, writes
        if isinstance(request, Write):
            writes.append(request.data)
            for at in range(0, len(request.data), 65536):  # as a socket reads
                wire.write(request.data[at : at + 65536])
            result = None
        else:
            assert isinstance(request, Read)
            result = wire.read(request.max_bytes)
    raise AssertionError("the operation did not finish")


def _deciding(refused: set[str], eom_code: int) -> object:
    def decide(event: Event) -> Reply:
        if isinstance(event, RcptTo) and str(event.forward_path) in refused:
            return Reply(550, "no such user", "5.1.1")
        if isinstance(event, MailFrom) and "MAIL" in refused:
            return Reply(550, "not from you", "5.7.1")
        if isinstance(event, EndOfMessage):
            return Reply(eom_code, "end of message")
        return accept_all(event)

    return decide


def _session(site: Site) -> tuple[ClientConnection, Wire]:
    wire = Wire(site)
    conn = ClientConnection("client.example")
    conn.receive_data(wire.read(65536))
    assert isinstance(conn.next_event(), Reply)
    wire.write(conn.send(Ehlo("client.example")))
    conn.receive_data(wire.read(65536))
    assert isinstance(conn.next_event(), Reply)
    return conn, wire


def _send_twice(
    chunking: bool,
    config: ServerConfig,
    refused: set[str],
    eom_code: int,
    recipients: Sequence[str],
    content: bytes,
) -> tuple[list[tuple[object, ...]], bytes, list[Event], list[bytes]]:
    """The message, then a second one that every server accepts: the session
    must be back in step whatever became of the first."""
    site = Site("mx.example", None, config=config)
    site.decide = _deciding(refused, eom_code)  # type: ignore[assignment]
    conn, wire = _session(site)
    outcomes = []
    all_writes = []
    for rcpts, body in ((recipients, content), (["ok@example.net"], b"second\r\n")):
        site.decide = _deciding(refused if body is content else set(), eom_code)  # type: ignore[assignment]
        steps = client_ops.send_message(
            conn,
            MailFrom("a@example.org"),
            [RcptTo(r) for r in rcpts],
            body,
            chunking=chunking,
        )
        result, writes = _run(steps, wire)
        all_writes += writes
        outcomes.append(
            (
                result.mail.code,
                tuple(reply.code for _, reply in result.recipients),
                None if result.data is None else result.data.code,
                result.accepted,
            )
        )
    return outcomes, bytes(site.content), site.events, all_writes


_lines = st.lists(
    st.sampled_from([b"text", b".", b"..dots", b"\r", b"\n", b"\r\n", b".\r\n", b"x" * 100]),
    max_size=30,
).map(b"".join)


@given(
    content=_lines.filter(bool),
    recipients=st.lists(
        st.sampled_from(["b@example.net", "c@example.net"]), min_size=1, max_size=3
    ),
    refused=st.sets(st.sampled_from(["b@example.net", "c@example.net", "MAIL"])),
    eom_code=st.sampled_from([250, 452, 554]),
)
@example(content=b"a\nb\r.c", recipients=["b@example.net"], refused=set(), eom_code=250)
@example(content=b"x", recipients=["b@example.net"], refused={"b@example.net"}, eom_code=250)
@example(content=b"x", recipients=["b@example.net"], refused={"MAIL"}, eom_code=250)
@settings(max_examples=300, deadline=None)
def test_bdat_in_one_write_ends_as_data_does_rfc3030(
    content: bytes, recipients: list[str], refused: set[str], eom_code: int
) -> None:
    config = ServerConfig()
    chunked = _send_twice(True, config, refused, eom_code, recipients, content)
    plain = _send_twice(False, config, refused, eom_code, recipients, content)
    # the same replies, the same accepted recipients, the same octets stored
    assert chunked[:2] == plain[:2]
    # the first message took one write (MAIL, RCPT, BDAT LAST and the content)
    first = chunked[3][0]
    assert first.startswith(b"MAIL FROM:") and b"\r\nBDAT " in first and first.endswith(b"\r\n")
    assert not any(isinstance(e, Data) for e in chunked[2])
    assert b"\r\nDATA\r\n" in plain[3][0]


def test_a_refused_chunk_is_followed_by_rset_rfc3030_2() -> None:
    outcomes, stored, _, writes = _send_twice(
        True, ServerConfig(), {"b@example.net"}, 250, ["b@example.net"], b"lost\r\n"
    )
    assert outcomes[0][2] is None and outcomes[1][2] == 250
    # RFC 3030 §2: a failed BDAT leaves the transaction indeterminate: RSET first
    assert writes[1] == b"RSET\r\n"
    assert stored == b"second\r\n"


@pytest.mark.parametrize(
    ("config", "size", "chunking"),
    [
        (ServerConfig(chunking=False), 10, True),  # not offered
        (ServerConfig(pipelining=False), 10, True),  # one write needs PIPELINING
        (ServerConfig(), CHUNKING_MAX + 1, True),  # too large to risk for nothing
        (ServerConfig(), 10, False),  # the caller said no
    ],
)
def test_data_where_bdat_in_one_write_does_not_apply(
    config: ServerConfig, size: int, chunking: bool
) -> None:
    content = b"y" * (size - 2) + b"\r\n"
    _, stored, events, _ = _send_twice(chunking, config, set(), 250, ["b@example.net"], content)
    assert stored == content + b"second\r\n"
    transfers = [e for e in events if isinstance(e, Data | Bdat)]
    assert isinstance(transfers[0], Data)


def test_the_largest_message_sent_with_bdat() -> None:
    content = b"z" * (CHUNKING_MAX - 2) + b"\r\n"
    _, stored, events, _ = _send_twice(
        True, ServerConfig(), set(), 250, ["b@example.net"], content
    )
    assert stored == content + b"second\r\n"
    assert [e.size for e in events if isinstance(e, Bdat)] == [CHUNKING_MAX, 8]
