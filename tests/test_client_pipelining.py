"""ClientConnection with PIPELINING (RFC 2920): groups, counting, per-recipient results."""

from __future__ import annotations

import pytest

from client_helpers import answer, feed, ready
from smtp_rtls import (
    Bdat,
    Data,
    Ehlo,
    EndOfMessage,
    Expn,
    Help,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    StartTLS,
    Vrfy,
)
from smtp_rtls._client import ClientConnection
from smtp_rtls._events import Event
from smtp_rtls._sasl import auth_plain

OK = Reply(250, "2.1.0 OK")


def pipelined(*extra: str) -> ClientConnection:
    return ready("PIPELINING", *extra)


def test_mail_rcpt_data_go_in_one_group_and_replies_are_counted_rfc2920_3_1() -> None:
    conn = pipelined()
    out = b"".join(
        conn.send(e)
        for e in (
            MailFrom("a@example.org"),
            RcptTo("b@example.net"),
            RcptTo("c@example.net"),
            RcptTo("d@example.net"),
            Data(),
        )
    )
    assert out == (
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
        b"RCPT TO:<c@example.net>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n"
    )
    assert conn.pending == ("MAIL", "RCPT", "RCPT", "RCPT", "DATA")
    # Texts that lie about what they answer: matching is by counting only
    # ("Matching on the basis of either the error code value or associated
    # text is expressly forbidden").
    replies = feed(
        conn,
        b"250 RCPT ok\r\n250-DATA\r\n250 fine\r\n550 5.1.1 MAIL refused\r\n250 ok\r\n354 go\r\n",
    )
    assert [(r.command, r.code) for r in replies] == [
        ("MAIL", 250),
        ("RCPT", 250),
        ("RCPT", 550),
        ("RCPT", 250),
        ("DATA", 354),
    ]
    txn = conn.transaction
    assert txn is not None
    assert [(str(r.forward_path), reply.code) for r, reply in txn.rcpt_replies] == [
        ("b@example.net", 250),
        ("c@example.net", 550),
        ("d@example.net", 250),
    ]
    assert [str(r.forward_path) for r in txn.accepted] == ["b@example.net", "d@example.net"]


@pytest.mark.parametrize(
    "ender",
    [Ehlo("client.example"), Noop(), Vrfy("a"), Expn("b"), Help(), Quit(), Data()],
    ids=lambda e: type(e).__name__,
)
def test_commands_that_end_a_group_rfc2920_3_1(ender: Event) -> None:
    conn = pipelined()
    conn.send(MailFrom("a@example.org"))
    conn.send(RcptTo("b@example.net"))
    conn.send(ender)
    with pytest.raises(LocalProtocolError):
        conn.send(Rset())
    assert conn.pending[-1] != "RSET"


def test_starttls_and_auth_end_a_group_rfc3207_4_rfc4954_4() -> None:
    conn = pipelined("STARTTLS")
    conn.send(StartTLS())
    with pytest.raises(LocalProtocolError):
        conn.send(Noop())
    conn = pipelined("AUTH PLAIN")
    conn.send(auth_plain("a", "b"))
    with pytest.raises(LocalProtocolError):
        conn.send(MailFrom("a@example.org"))


def test_rset_mail_rcpt_may_appear_anywhere_in_a_group_rfc2920_3_1() -> None:
    conn = pipelined()
    for event in (
        Rset(),
        MailFrom("a@example.org"),
        RcptTo("b@example.net"),
        Rset(),
        MailFrom("c@example.org"),
        RcptTo("d@example.net"),
    ):
        assert conn.send(event)
    assert conn.pending == ("RSET", "MAIL", "RCPT", "RSET", "MAIL", "RCPT")


def test_without_pipelining_one_command_at_a_time() -> None:
    conn = ready()
    conn.send(MailFrom("a@example.org"))
    with pytest.raises(LocalProtocolError):
        conn.send(RcptTo("b@example.net"))
    answer(conn, OK)
    assert conn.send(RcptTo("b@example.net"))


def test_a_new_transaction_may_follow_the_end_of_data_in_one_group_rfc2920_3_1() -> None:
    """ "a RSET/MAIL FROM sequence used to initiate a new message transaction
    can be placed in the same group as the final transfer of ... the previous
    message"."""
    conn = pipelined()
    conn.send(MailFrom("a@example.org"))
    conn.send(RcptTo("b@example.net"))
    conn.send(Data())
    answer(conn, OK, OK, Reply(354, "go"))
    out = (
        conn.send(MessageData(b"hi\r\n"))
        + conn.send(EndOfMessage())
        + conn.send(MailFrom("c@example.org"))
        + conn.send(RcptTo("d@example.net"))
        + conn.send(Data())
    )
    assert out.startswith(b"hi\r\n.\r\nMAIL FROM:<c@example.org>\r\n")
    assert conn.pending == ("EOM", "MAIL", "RCPT", "DATA")
    replies = answer(conn, Reply(250, "queued"), OK, OK, Reply(354, "go"))
    assert [r.command for r in replies] == ["EOM", "MAIL", "RCPT", "DATA"]


def test_data_accepted_with_no_recipient_gets_a_lone_dot_rfc2920_3_1() -> None:
    conn = pipelined()
    conn.send(MailFrom("a@example.org"))
    conn.send(RcptTo("b@example.net"))
    conn.send(RcptTo("c@example.net"))
    conn.send(Data())
    no = Reply(550, "5.1.1 unknown")
    replies = answer(conn, OK, no, no, Reply(354, "go ahead anyway"))
    assert replies[-1].command == "DATA"
    with pytest.raises(LocalProtocolError):
        conn.send(MessageData(b"Subject: secret\r\n"))
    assert conn.send(EndOfMessage()) == b".\r\n"
    [end] = answer(conn, Reply(554, "5.5.1 no valid recipients"))
    assert end.command == "EOM"


def test_data_refused_after_all_recipients_refused_then_rset_rfc2920_3_1() -> None:
    conn = pipelined()
    conn.send(MailFrom("a@example.org"))
    conn.send(RcptTo("b@example.net"))
    conn.send(Data())
    replies = answer(conn, OK, Reply(550, "5.1.1 no"), Reply(554, "5.5.1 no valid recipients"))
    assert [r.command for r in replies] == ["MAIL", "RCPT", "DATA"]
    # every recipient is known refused now: DATA again makes no sense
    with pytest.raises(LocalProtocolError):
        conn.send(Data())
    assert conn.send(Rset()) == b"RSET\r\n"


def test_a_refused_mail_in_a_group_is_counted_and_the_rest_answered() -> None:
    conn = pipelined()
    conn.send(MailFrom("a@example.org"))
    conn.send(RcptTo("b@example.net"))
    conn.send(Data())
    replies = answer(
        conn,
        Reply(550, "5.7.1 sender refused"),
        Reply(503, "5.5.1 need MAIL"),
        Reply(503, "5.5.1 need MAIL"),
    )
    assert [(r.command, r.code) for r in replies] == [("MAIL", 550), ("RCPT", 503), ("DATA", 503)]
    assert conn.transaction is None
    assert conn.send(MailFrom("a@example.org"))


def test_multiline_replies_in_a_group_are_not_confused_rfc2920_3_1() -> None:
    conn = pipelined()
    conn.send(MailFrom("a@example.org"))
    conn.send(RcptTo("b@example.net"))
    conn.send(RcptTo("c@example.net"))
    replies = feed(
        conn,
        b"250 ok\r\n550-5.1.1 no such user\r\n550-5.1.1 really\r\n550 5.1.1 none\r\n250 ok\r\n",
    )
    assert [(r.command, len(r.lines)) for r in replies] == [("MAIL", 1), ("RCPT", 3), ("RCPT", 1)]


def test_bdat_chunks_are_pipelined_and_bdat_last_ends_the_group_rfc3030_4_2() -> None:
    conn = pipelined("CHUNKING")
    out = conn.send(MailFrom("a@example.org")) + conn.send(RcptTo("b@example.net"))
    out += conn.send(Bdat(3)) + conn.send(MessageData(b"abc"))
    out += conn.send(Bdat(2, last=True)) + conn.send(MessageData(b"de"))
    assert out.endswith(b"BDAT 3\r\nabcBDAT 2 LAST\r\nde")
    with pytest.raises(LocalProtocolError):
        conn.send(MailFrom("c@example.org"))
    replies = answer(conn, OK, OK, OK, Reply(250, "2.0.0 queued"))
    assert [r.command for r in replies] == ["MAIL", "RCPT", "BDAT", "BDAT"]


def test_one_hundred_recipients_in_one_group() -> None:
    conn = pipelined()
    conn.send(MailFrom("a@example.org"))
    for i in range(100):
        conn.send(RcptTo(f"r{i}@example.net"))
    conn.send(Data())
    refusals = {7, 42, 99}
    replies = (
        [OK]
        + [Reply(550, "5.1.1 no") if i in refusals else OK for i in range(100)]
        + [Reply(354, "go")]
    )
    got = answer(conn, *replies)
    assert len(got) == 102
    txn = conn.transaction
    assert txn is not None
    assert len(txn.accepted) == 97
    assert {i for i, (_, r) in enumerate(txn.rcpt_replies) if r.code == 550} == refusals
