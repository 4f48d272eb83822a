"""smtp_rtls.testing.pair and the smtp_pair fixture: the linked pair checks
what it promises, and says so when a side breaks it."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from smtp_rtls import (
    Bdat,
    Data,
    Ehlo,
    EndOfMessage,
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    ServerConfig,
    StartTLS,
)
from smtp_rtls.testing.pair import Pair
from smtp_rtls.testing.peers import LoopbackCA, ScriptedServer


def test_the_fixture_is_a_greeted_pair(smtp_pair: Pair) -> None:
    assert [r.command for r in smtp_pair.client_events] == ["GREETING"]
    [ehlo] = smtp_pair(Ehlo("client.example"))
    assert ehlo.code == 250 and "STARTTLS" in (smtp_pair.client.capabilities or ())
    smtp_pair(Quit())
    assert smtp_pair.server_closed
    assert smtp_pair.transcript_text().splitlines()[:2] == [
        "S: 220 mx.example ESMTP",
        "C: EHLO client.example",
    ]


def test_a_pipelined_group_and_its_message_rfc2920_3_1(smtp_pair: Pair) -> None:
    smtp_pair(Ehlo("client.example"))
    replies = smtp_pair(MailFrom("a@example.org"), RcptTo("b@example.net"), Data())
    assert [r.command for r in replies] == ["MAIL", "RCPT", "DATA"]
    # the end of data and the next transaction in one group
    smtp_pair(MessageData(b"x\n"), EndOfMessage(), MailFrom("c@example.org"))
    [message] = smtp_pair.messages
    assert message.content == b"x\r\n" and not message.tls  # bare LF sent as CRLF
    assert message.envelope is not None and str(message.envelope.mail_from.reverse_path) == (
        "a@example.org"
    )


def test_a_split_that_loses_bytes_is_caught() -> None:
    pair = Pair(to_server=lambda b: [b[:-1]])
    pair.greet()
    with pytest.raises(AssertionError, match="to_server lost or added bytes"):
        pair(Ehlo("client.example"))


def test_the_pair_plays_starttls_on_both_sides_rfc3207_4_2(smtp_pair: Pair) -> None:
    smtp_pair(Ehlo("client.example"))
    smtp_pair(StartTLS())
    assert smtp_pair.client.tls is not None and smtp_pair.server.tls is not None
    smtp_pair(Ehlo("client.example"))
    assert "REQUIRETLS" in (smtp_pair.client.capabilities or ())


def test_a_refused_message_is_not_a_received_one_rfc1870_6_2() -> None:
    pair = Pair(ServerConfig(starttls=True, max_message_size=10))
    pair.greet()
    pair(Ehlo("client.example"))
    pair(MailFrom("a@example.org"), RcptTo("b@example.net"), Data())
    [eom] = pair(MessageData(b"more than ten octets\r\n"), EndOfMessage())
    assert (eom.code, str(eom.enhanced)) == (552, "5.3.4") and pair.messages == []


def test_stop_cuts_a_tls_session_in_progress_at_once(smtp_test_ca: LoopbackCA) -> None:
    peer = ScriptedServer(ca=smtp_test_ca, timeout=30)
    with socket.create_connection(("127.0.0.1", peer.port), timeout=5) as raw:
        raw.sendall(b"EHLO c.example\r\n")
        seen = b""
        while not seen.endswith(b"250 STARTTLS\r\n"):
            chunk = raw.recv(4096)
            assert chunk, seen
            seen += chunk
        raw.sendall(b"STARTTLS\r\n")
        assert raw.recv(4096).startswith(b"220 ")
        with smtp_test_ca.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"EHLO c.example\r\n")
            assert b"REQUIRETLS" in tls.recv(4096)
            # the peer now waits for a command, for up to 30 s
            start = time.monotonic()
            peer.stop()
            assert time.monotonic() - start < 5
            with pytest.raises((ssl.SSLError, OSError, AssertionError)):
                assert tls.recv(4096) != b""
    [session] = peer.sessions
    assert session.tls is not None and session.encrypted == b"EHLO c.example\r\n"


def test_a_message_over_data_and_one_over_bdat_in_one_group_rfc3030_4_2(smtp_pair: Pair) -> None:
    """The end of a DATA message, then a whole BDAT transaction, pipelined:
    each message is checked against its own content (tests/pair.py, which
    kept one content buffer for both, got this wrong)."""
    smtp_pair(Ehlo("client.example"))
    smtp_pair(MailFrom("a@example.org"), RcptTo("b@example.net"), Data())
    replies = smtp_pair(
        MessageData(b"one\r\n"),
        EndOfMessage(),
        MailFrom("a@example.org"),
        RcptTo("b@example.net"),
        Bdat(3, last=True),
        MessageData(b"two"),
    )
    assert [r.command for r in replies] == ["EOM", "MAIL", "RCPT", "BDAT"]
    assert [m.content for m in smtp_pair.messages] == [b"one\r\n", b"two"]
