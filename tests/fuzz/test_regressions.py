"""Bugs the atheris harnesses found, each a named test of the behaviour
that was wrong.  The crashing inputs themselves are in
corpus/<harness>/regression-*, where test_fuzz_corpus.py replays them
through their harness's oracle with the rest of the corpus."""

from __future__ import annotations

import datetime

import pytest

from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    LocalProtocolError,
    MessageData,
    Reply,
    ServerConnection,
)
from smtp_rtls.policy.dsn import RecipientStatus, build_dsn
from smtp_rtls.policy.tags import TLSTag

_OPENING = b"EHLO a.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"


def _in_data() -> ServerConnection:
    conn = ServerConnection("mx.example")
    conn.send(Reply(220, "mx.example"))
    conn.receive_data(_OPENING)
    for _ in range(20):
        event = conn.next_event()
        if event is NEED_DATA:
            return conn
        if event is PAUSED:
            pending = conn.pending
            conn.send(Reply(354, "go") if isinstance(pending, Data) else Reply(250, "ok"))
    raise AssertionError("DATA was not reached")


def test_no_reply_to_the_end_of_data_before_end_of_message_is_read_rfc5321_4_1_1_4() -> None:
    # Found by fuzz_server (read size 64): content and "." CRLF in one read
    # queue EndOfMessage behind the last MessageData, and the connection
    # already owed the reply to it: pending named an event the application
    # had not read, and send() took a 250 for a message it never saw end.
    conn = _in_data()
    conn.receive_data(b"hello\r\n.\r\n")
    assert conn.next_event() == MessageData(b"hello\r\n")
    assert conn.pending is None
    with pytest.raises(LocalProtocolError):
        conn.send(Reply(250, "queued"))
    end = conn.next_event()
    assert isinstance(end, EndOfMessage)
    assert conn.pending is end
    assert conn.next_event() is PAUSED
    assert conn.send(Reply(250, "queued")) == b"250 queued\r\n"


@pytest.mark.parametrize("address", ["\r\rx@d.example", "x@d.example\n", "\r\n--b\r\n"])
def test_dsn_refuses_line_ends_around_a_recipient_rfc5322_2_3(address: str) -> None:
    # Found by fuzz_dsn: the status fields strip the address before checking
    # it, but the human-readable part quoted it as given, so CRs or LFs
    # around it became bare line ends (RFC 5322 §2.3) or lines of their own
    # in the report (a MIME boundary line, RFC 2046 §5.1.1).
    with pytest.raises(ValueError, match="control character"):
        build_dsn(
            reporting_mta="mx.example",
            original_reverse_path="a@b.example",
            original=b"Subject: x\r\n\r\nbody\r\n",
            tag=TLSTag.DEFAULT,
            recipients=[RecipientStatus(address, "5.1.1")],
            date=datetime.datetime(2026, 12, 5, tzinfo=datetime.UTC),
        )
