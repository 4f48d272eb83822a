"""ClientConnection: greeting, EHLO, refusals, STARTTLS, REQUIRETLS, AUTH, content."""

from __future__ import annotations

import base64

import pytest

from client_helpers import TLS, answer, ehlo, feed, greeted, ready, reply_event, secure, starttls
from smtp_rtls import (
    Auth,
    AuthResponse,
    Bdat,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Expn,
    Helo,
    LocalProtocolError,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    RequireTLSError,
    Rset,
    StartTLS,
    State,
    Vrfy,
)
from smtp_rtls._client import ClientConnection
from smtp_rtls._events import Event
from smtp_rtls._sasl import CANCEL, auth_login, auth_plain, login_response
from smtp_rtls._sentinels import NEED_DATA

ALL = ("PIPELINING", "SIZE 1000", "8BITMIME", "SMTPUTF8", "CHUNKING", "BINARYMIME", "DSN")
OK = Reply(250, "2.0.0 OK")


def assert_refused(
    conn: ClientConnection, event: Event, exc: type[Exception] = LocalProtocolError
) -> None:
    """``event`` is refused, no bytes exist and nothing moved."""
    before = (conn.pending, conn.capabilities, conn.transaction)
    with pytest.raises(exc):
        conn.send(event)
    assert (conn.pending, conn.capabilities, conn.transaction) == before


# -- greeting and hello --------------------------------------------------------


def test_the_greeting_is_the_first_reply() -> None:
    conn = ClientConnection("client.example")
    assert conn.pending == ("GREETING",)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"220 mx.example")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b" ESMTP\r\n")
    greeting = reply_event(conn)
    assert (greeting.code, greeting.lines, greeting.command) == (
        220,
        ("mx.example ESMTP",),
        "GREETING",
    )
    assert not conn.pending


def test_no_command_before_the_greeting_rfc5321_3_1() -> None:
    conn = ClientConnection("client.example")
    assert_refused(conn, Ehlo("client.example"))


def test_after_a_554_greeting_only_quit_rfc5321_3_1() -> None:
    conn = ClientConnection("client.example")
    feed(conn, b"554 5.3.2 go away\r\n")
    assert_refused(conn, Ehlo("client.example"))
    assert conn.send(Quit()) == b"QUIT\r\n"


def test_ehlo_reply_becomes_capabilities() -> None:
    conn = greeted()
    assert conn.capabilities is None
    reply = ehlo(conn, "PIPELINING", "SIZE 1000", "AUTH PLAIN LOGIN", "X-ODD thing")
    assert reply.command == "EHLO"
    caps = conn.capabilities
    assert caps is not None
    assert caps.domain == "mx.example"
    assert "PIPELINING" in caps and caps.size == 1000
    assert caps.auth_mechanisms == {"PLAIN", "LOGIN"}
    assert caps.params("X-ODD") == ("thing",)


def test_a_refused_ehlo_changes_nothing_and_helo_may_follow() -> None:
    conn = greeted()
    conn.send(Ehlo("client.example"))
    [reply] = answer(conn, Reply(502, "5.5.1 no EHLO here"))
    assert reply.command == "EHLO"
    assert conn.capabilities is None
    assert_refused(conn, MailFrom("a@example.org"))
    assert conn.send(Helo("client.example")) == b"HELO client.example\r\n"
    [reply] = answer(conn, Reply(250, "mx.example"))
    assert reply.command == "HELO"
    assert conn.send(MailFrom("a@example.org")) == b"MAIL FROM:<a@example.org>\r\n"


def test_helo_offers_no_extension_even_if_the_reply_lists_some_rfc5321_4_1_1_1() -> None:
    conn = greeted()
    conn.send(Helo("client.example"))
    answer(conn, Reply(250, ["mx.example", "SIZE 100", "PIPELINING"]))
    caps = conn.capabilities
    assert caps is not None and list(caps) == []
    assert_refused(conn, MailFrom("a@example.org", size=10))


def test_mail_needs_ehlo_or_helo_first_rfc5321_4_1_4() -> None:
    assert_refused(greeted(), MailFrom("a@example.org"))


def test_lmtp_sends_lhlo_and_has_no_helo_rfc2033_4_1() -> None:
    conn = greeted(lmtp=True)
    assert_refused(conn, Helo("client.example"))
    assert conn.send(Ehlo("client.example")) == b"LHLO client.example\r\n"
    [reply] = answer(conn, Reply(250, ["mx.example", "PIPELINING"]))
    assert reply.command == "LHLO"
    assert conn.capabilities is not None and "PIPELINING" in conn.capabilities


# -- reply framing -------------------------------------------------------------


def test_multiline_reply_split_anywhere() -> None:
    conn = greeted()
    conn.send(Noop())
    raw = b"250-first\r\n250-second\r\n250 last\r\n"
    for i in range(len(raw) - 1):
        conn.receive_data(raw[i : i + 1])
        assert conn.next_event() is NEED_DATA
    conn.receive_data(raw[-1:])
    reply = reply_event(conn)
    assert reply.lines == ("first", "second", "last")
    assert reply.command == "NOOP"


def test_a_code_change_inside_a_multiline_reply_is_a_remote_error_rfc5321_4_2_1() -> None:
    conn = greeted()
    conn.send(Noop())
    # caught at the line that changes, not when (if ever) the reply ends
    conn.receive_data(b"250-first\r\n251-other\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    # the connection stays broken: no desynchronised reading afterwards
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(Quit())


def test_after_a_remote_error_not_even_content_is_sent() -> None:
    conn = ready()
    transaction(conn)
    conn.send(Data())
    answer(conn, Reply(354, "go"))
    conn.receive_data(b"250 unasked\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(MessageData(b"x"))
    with pytest.raises(LocalProtocolError):
        conn.send(EndOfMessage())


def test_too_many_reply_lines() -> None:
    conn = greeted(max_reply_lines=3)
    conn.send(Noop())
    conn.receive_data(b"250-a\r\n250-b\r\n250-c\r\n")
    assert conn.next_event() is NEED_DATA  # three lines: within the limit
    conn.receive_data(b"250 d\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_a_reply_line_over_512_octets_is_refused_rfc5321_4_5_3_1_5() -> None:
    conn = greeted()
    conn.send(Noop())
    conn.receive_data(b"250 " + b"x" * 506 + b"\r\n")  # 512 with CRLF: fine
    assert reply_event(conn).code == 250
    conn.send(Noop())
    conn.receive_data(b"250 " + b"x" * 507 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_an_endless_line_is_refused_before_its_end() -> None:
    conn = greeted()
    conn.send(Noop())
    conn.receive_data(b"250 " + b"x" * 10_000)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_a_reply_with_no_command_pending_is_a_remote_error() -> None:
    conn = greeted()
    conn.receive_data(b"250 surprise\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_an_unsolicited_421_is_read_and_then_only_quit_rfc5321_3_8() -> None:
    conn = ready()
    [reply] = feed(conn, b"421 4.4.2 mx.example timeout\r\n")
    assert reply.code == 421 and reply.command is None
    assert_refused(conn, MailFrom("a@example.org"))
    assert conn.send(Quit()) == b"QUIT\r\n"


@pytest.mark.parametrize("raw", [b"354 go on\r\n", b"334 \r\n"])
def test_an_intermediate_reply_to_mail_is_a_remote_error(raw: bytes) -> None:
    conn = ready()
    conn.send(MailFrom("a@example.org"))
    conn.receive_data(raw)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_a_positive_completion_to_data_is_a_remote_error_rfc5321_4_3_2() -> None:
    conn = ready()
    conn.send(MailFrom("a@example.org"))
    answer(conn, OK)
    conn.send(RcptTo("b@example.net"))
    answer(conn, OK)
    conn.send(Data())
    conn.receive_data(b"250 sure\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_closed_in_the_middle_of_a_reply_is_a_remote_error() -> None:
    conn = greeted()
    conn.send(Noop())
    conn.receive_data(b"250-part\r\n")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_quit_then_close() -> None:
    conn = ready()
    assert conn.send(Quit()) == b"QUIT\r\n"
    assert_refused(conn, Noop())
    [reply] = feed(conn, b"221 2.0.0 bye\r\n")
    assert reply.command == "QUIT"
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.closed
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"more")


# -- refusing what was not offered -----------------------------------------------


@pytest.mark.parametrize(
    ("event", "needs"),
    [
        (MailFrom("a@example.org", size=10), "SIZE 1000"),
        (MailFrom("a@example.org", smtputf8=True), "SMTPUTF8"),
        (MailFrom("ä@example.org", smtputf8=True), "SMTPUTF8"),
        (MailFrom("a@example.org", body="8BITMIME"), "8BITMIME"),
        (MailFrom("a@example.org", body="7BIT"), "8BITMIME"),
        (MailFrom("a@example.org", ret="HDRS"), "DSN"),
        (MailFrom("a@example.org", envid="x1"), "DSN"),
        (MailFrom("a@example.org", auth="a@example.org"), "AUTH PLAIN"),
    ],
)
def test_mail_parameters_need_their_extension_rfc5321_4_1_1_11(
    event: MailFrom, needs: str
) -> None:
    others = [e for e in ALL if e.split()[0] != needs.split()[0]]
    assert_refused(ready(*others), event)
    conn = ready(*others, needs)
    assert conn.send(event).startswith(b"MAIL FROM:")


def test_binarymime_needs_binarymime_and_chunking_rfc3030_3() -> None:
    event = MailFrom("a@example.org", body="BINARYMIME")
    assert_refused(ready("8BITMIME", "CHUNKING"), event)
    assert_refused(ready("8BITMIME", "BINARYMIME"), event)
    assert b"BODY=BINARYMIME" in ready("8BITMIME", "CHUNKING", "BINARYMIME").send(event)


def test_declared_size_over_the_server_limit_is_refused_rfc1870_6() -> None:
    conn = ready("SIZE 1000")
    assert_refused(conn, MailFrom("a@example.org", size=1001))
    assert b"SIZE=1000" in conn.send(MailFrom("a@example.org", size=1000))
    # SIZE 0 (or no number) means no fixed limit (RFC 1870 §4)
    assert b"SIZE=99999999" in ready("SIZE 0").send(MailFrom("a@example.org", size=99999999))


def test_rcpt_dsn_parameters_need_dsn_rfc3461_4() -> None:
    for event in (
        RcptTo("b@example.net", notify="NEVER"),
        RcptTo("b@x.example", orcpt=("rfc822", "b@x.example")),
    ):
        conn = ready()
        conn.send(MailFrom("a@example.org"))
        answer(conn, OK)
        assert_refused(conn, event)
        conn = ready("DSN")
        conn.send(MailFrom("a@example.org"))
        answer(conn, OK)
        assert conn.send(event).startswith(b"RCPT TO:<b@")


def test_non_ascii_recipient_needs_an_smtputf8_transaction_rfc6531_3_4() -> None:
    conn = ready("SMTPUTF8", "8BITMIME")
    conn.send(MailFrom("a@example.org"))
    answer(conn, OK)
    assert_refused(conn, RcptTo("ü@example.net"))
    conn.send(Rset())
    answer(conn, OK)
    conn.send(MailFrom("a@example.org", smtputf8=True))
    answer(conn, OK)
    assert conn.send(RcptTo("ü@example.net")) == "RCPT TO:<ü@example.net>\r\n".encode()


def test_bdat_needs_chunking_rfc3030_2() -> None:
    conn = ready()
    conn.send(MailFrom("a@example.org"))
    answer(conn, OK)
    conn.send(RcptTo("b@example.net"))
    answer(conn, OK)
    assert_refused(conn, Bdat(3, last=True))


def test_mail_inside_an_open_transaction_is_refused_rfc5321_4_1_4() -> None:
    conn = ready()
    conn.send(MailFrom("a@example.org"))
    answer(conn, OK)
    assert_refused(conn, MailFrom("c@example.org"))
    conn.send(Rset())
    answer(conn, OK)
    assert conn.send(MailFrom("c@example.org"))


def test_an_accepted_ehlo_resets_the_transaction_rfc5321_4_1_4() -> None:
    conn = ready()
    conn.send(MailFrom("a@example.org"))
    answer(conn, OK)
    ehlo(conn)
    assert conn.transaction is None
    assert conn.send(MailFrom("c@example.org"))


def test_a_refused_mail_closes_the_transaction() -> None:
    conn = ready()
    conn.send(MailFrom("a@example.org"))
    answer(conn, Reply(550, "5.7.1 no"))
    assert_refused(conn, RcptTo("b@example.net"))
    assert conn.send(MailFrom("c@example.org"))


def test_rcpt_and_data_need_a_transaction() -> None:
    conn = ready()
    assert_refused(conn, RcptTo("b@example.net"))
    assert_refused(conn, Data())
    conn.send(MailFrom("a@example.org"))
    answer(conn, OK)
    assert_refused(conn, Data())  # no RCPT yet


def test_vrfy_expn_noop_help_are_plain_commands() -> None:
    conn = ready()
    assert conn.send(Vrfy("alice")) == b"VRFY alice\r\n"
    assert answer(conn, Reply(252, "2.1.5 maybe"))[0].command == "VRFY"
    assert conn.send(Expn("list")) == b"EXPN list\r\n"
    assert answer(conn, Reply(550, "5.5.1 no"))[0].command == "EXPN"


# -- STARTTLS -----------------------------------------------------------------------


def test_starttls_needs_the_offer() -> None:
    assert_refused(ready(), StartTLS())


def test_after_220_nothing_but_the_handshake_rfc3207_4() -> None:
    conn = ready("STARTTLS")
    conn.send(StartTLS())
    answer(conn, Reply(220, "go ahead"))
    assert_refused(conn, Noop())
    assert_refused(conn, Quit())
    conn.start_tls(TLS)
    assert conn.tls == TLS


def test_tls_forgets_the_capabilities_and_needs_a_new_ehlo_rfc3207_4_2() -> None:
    conn = ready("STARTTLS", "SIZE 1000", "PIPELINING")
    starttls(conn)
    assert conn.capabilities is None
    assert_refused(conn, MailFrom("a@example.org"))
    ehlo(conn, "SIZE 2000")
    caps = conn.capabilities
    assert caps is not None and caps.size == 2000 and "PIPELINING" not in caps


def test_a_second_starttls_is_refused_rfc3207_4_2() -> None:
    conn = ready("STARTTLS")
    starttls(conn)
    # even if a (broken) server offers STARTTLS again inside TLS
    ehlo(conn, "STARTTLS")
    assert_refused(conn, StartTLS())
    with pytest.raises(LocalProtocolError):
        conn.start_tls(TLS)


def test_start_tls_only_after_220_or_before_anything() -> None:
    conn = ready("STARTTLS")
    with pytest.raises(LocalProtocolError):
        conn.start_tls(TLS)
    conn.send(StartTLS())
    answer(conn, Reply(454, "4.7.0 TLS not available"))
    with pytest.raises(LocalProtocolError):
        conn.start_tls(TLS)
    # implicit TLS (RFC 8314 §3): the handshake comes before the greeting
    implicit = ClientConnection("client.example")
    implicit.start_tls(TLS)
    feed(implicit, b"220 mx.example ESMTP\r\n")
    assert implicit.tls == TLS


def test_injected_reply_in_the_same_chunk_as_220_rfc3207_4() -> None:
    """The client case of the STARTTLS injection attack: a fake reply behind
    the 220 would be read as the answer to the first command inside TLS."""
    conn = ready("STARTTLS")
    conn.send(StartTLS())
    conn.receive_data(b"220 go ahead\r\n250-fake\r\n250 AUTH PLAIN\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(Ehlo("client.example"))


def test_injected_bytes_after_the_220_are_refused_rfc3207_4() -> None:
    conn = ready("STARTTLS")
    conn.send(StartTLS())
    [reply] = feed(conn, b"220 go ahead\r\n")
    assert reply.command == "STARTTLS"
    conn.receive_data(b"250 fake\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.start_tls(TLS)
    assert conn.tls is None
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_injected_bytes_are_seen_by_next_event_too() -> None:
    conn = ready("STARTTLS")
    conn.send(StartTLS())
    feed(conn, b"220 go ahead\r\n")
    conn.receive_data(b"2")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


# -- REQUIRETLS (RFC 8689) ------------------------------------------------------------

RTLS_MAIL = MailFrom("alice@example.org", requiretls=True)


def test_requiretls_without_tls_is_refused_with_5_7_10_rfc8689_2() -> None:
    conn = ready("REQUIRETLS", "PIPELINING")  # a plaintext offer never counts
    with pytest.raises(RequireTLSError) as info:
        conn.send(RTLS_MAIL)
    assert info.value.reply is not None
    assert str(info.value.reply.enhanced) == "5.7.10"
    assert "5.7.10" in str(info.value)
    assert isinstance(info.value, LocalProtocolError)
    assert conn.pending == () and conn.transaction is None


def test_requiretls_seen_only_before_tls_does_not_count_rfc8689_4_2_1_step5() -> None:
    conn = ready("STARTTLS", "REQUIRETLS")
    starttls(conn)
    ehlo(conn, "PIPELINING")
    with pytest.raises(RequireTLSError) as info:
        conn.send(RTLS_MAIL)
    assert info.value.reply is not None
    assert str(info.value.reply.enhanced) == "5.7.30"
    assert info.value.reply.code == 550
    assert "5.7.30" in str(info.value)


def test_requiretls_after_tls_but_before_the_new_ehlo_is_5_7_30() -> None:
    conn = ready("STARTTLS", "REQUIRETLS")
    starttls(conn)
    with pytest.raises(RequireTLSError) as info:
        conn.send(RTLS_MAIL)
    assert info.value.reply is not None and str(info.value.reply.enhanced) == "5.7.30"


def test_helo_never_allows_requiretls_rfc8689_4_2_1_step3() -> None:
    conn = ready("STARTTLS")
    starttls(conn)
    conn.send(Helo("client.example"))
    answer(conn, Reply(250, ["mx.example", "REQUIRETLS"]))
    with pytest.raises(RequireTLSError) as info:
        conn.send(RTLS_MAIL)
    assert info.value.reply is not None and str(info.value.reply.enhanced) == "5.7.30"


def test_requiretls_goes_out_on_tls_with_the_post_tls_offer_rfc8689_4_2_1() -> None:
    conn = secure("REQUIRETLS")
    assert conn.send(RTLS_MAIL) == b"MAIL FROM:<alice@example.org> REQUIRETLS\r\n"
    assert conn.transaction is not None and conn.transaction.requiretls


def test_a_refused_ehlo_after_tls_keeps_requiretls_refused() -> None:
    conn = ready("STARTTLS", "REQUIRETLS")
    starttls(conn)
    conn.send(Ehlo("client.example"))
    answer(conn, Reply(554, "5.7.0 no"))
    with pytest.raises(RequireTLSError):
        conn.send(RTLS_MAIL)


# -- AUTH (RFC 4954) ------------------------------------------------------------------


def test_auth_plain_with_initial_response_rfc4954_4() -> None:
    conn = secure("AUTH PLAIN LOGIN")
    out = conn.send(auth_plain("alice", "s3cret"))
    assert out == b"AUTH PLAIN " + base64.b64encode(b"\0alice\0s3cret") + b"\r\n"
    [reply] = answer(conn, Reply(235, "2.7.0 Authentication successful"))
    assert reply.command == "AUTH"
    # RFC 4954 §4: after a successful AUTH another one gets 503
    assert_refused(conn, auth_plain("bob", "x"))


def test_auth_login_continuations_rfc4954_4() -> None:
    conn = secure("AUTH LOGIN")
    assert conn.send(auth_login()) == b"AUTH LOGIN\r\n"
    [challenge] = feed(conn, b"334 VXNlcm5hbWU6\r\n")
    assert challenge.command == "AUTH"
    assert_refused(conn, Noop())  # a 334 wants an answer, nothing else
    assert conn.send(login_response(challenge, "alice", "pw")) == b"YWxpY2U=\r\n"
    [challenge] = feed(conn, b"334 UGFzc3dvcmQ6\r\n")
    assert conn.send(login_response(challenge, "alice", "pw")) == b"cHc=\r\n"
    [done] = feed(conn, b"235 2.7.0 ok\r\n")
    assert done.code == 235 and done.command == "AUTH"
    assert_refused(conn, AuthResponse("eA=="))


def test_auth_cancel_with_star_rfc4954_4() -> None:
    conn = secure("AUTH PLAIN LOGIN")
    conn.send(auth_login())
    feed(conn, b"334 VXNlcm5hbWU6\r\n")
    assert conn.send(CANCEL) == b"*\r\n"
    [reply] = feed(conn, b"501 5.0.0 cancelled\r\n")
    assert reply.command == "AUTH"
    # after the cancel the session goes on, and AUTH may be tried again
    assert conn.send(auth_plain("a", "b")).startswith(b"AUTH PLAIN ")


def test_auth_needs_the_offer_and_the_mechanism_and_no_transaction_rfc4954_4() -> None:
    assert_refused(ready(), Auth("PLAIN", "AGEAYg=="))
    conn = ready("AUTH LOGIN")
    assert_refused(conn, Auth("PLAIN", "AGEAYg=="))
    conn.send(MailFrom("a@example.org"))
    answer(conn, OK)
    assert_refused(conn, auth_login())


def test_auth_response_only_after_334() -> None:
    assert_refused(ready("AUTH PLAIN"), AuthResponse("eA=="))


# -- content --------------------------------------------------------------------------


def transaction(conn: ClientConnection, accepted: int = 1, refused_rcpts: int = 0) -> None:
    conn.send(MailFrom("a@example.org"))
    answer(conn, OK)
    for i in range(accepted + refused_rcpts):
        conn.send(RcptTo(f"r{i}@example.net"))
        answer(conn, OK if i < accepted else Reply(550, "5.1.1 no such user"))


def test_data_content_and_end_rfc5321_4_1_1_4() -> None:
    conn = ready()
    transaction(conn)
    assert conn.send(Data()) == b"DATA\r\n"
    assert_refused(conn, MessageData(b"too early"))  # before the 354
    [go] = answer(conn, Reply(354, "go ahead"))
    assert go.command == "DATA"
    assert_refused(conn, Noop())  # a command now would be content
    out = conn.send(MessageData(b"Subject: x\n\n.hidden\n")) + conn.send(EndOfMessage())
    assert out == b"Subject: x\r\n\r\n..hidden\r\n.\r\n"
    [done] = answer(conn, Reply(250, "2.0.0 queued"))
    assert done.command == "EOM"
    assert conn.transaction is None
    assert conn.send(MailFrom("a@example.org"))


def test_data_before_an_accepted_rcpt_without_pipelining() -> None:
    conn = ready()
    transaction(conn, accepted=0, refused_rcpts=2)
    assert_refused(conn, Data())


def test_lmtp_one_reply_per_accepted_recipient_rfc2033_4_2() -> None:
    conn = greeted(lmtp=True)
    conn.send(Ehlo("client.example"))
    answer(conn, Reply(250, "mx.example"))
    transaction(conn, accepted=2, refused_rcpts=1)
    conn.send(Data())
    answer(conn, Reply(354, "go"))
    conn.send(MessageData(b"hi\r\n"))
    conn.send(EndOfMessage())
    assert conn.pending == ("EOM",)
    replies = answer(conn, Reply(250, "2.0.0 r0 ok"), Reply(452, "4.2.2 r1 full"))
    assert [(r.code, r.command) for r in replies] == [(250, "EOM"), (452, "EOM")]
    assert not conn.pending
    conn.send(Noop())
    assert answer(conn, OK)[0].command == "NOOP"


def test_lmtp_bdat_last_gets_one_reply_per_recipient_rfc2033_4_2() -> None:
    conn = greeted(lmtp=True)
    conn.send(Ehlo("client.example"))
    answer(conn, Reply(250, ["mx.example", "CHUNKING"]))
    transaction(conn, accepted=3)
    conn.send(Bdat(2))
    conn.send(MessageData(b"hi"))
    assert [r.command for r in answer(conn, OK)] == ["BDAT"]
    conn.send(Bdat(0, last=True))
    replies = answer(conn, OK, Reply(550, "5.2.1 r1 disabled"), OK)
    assert [(r.command, r.code) for r in replies] == [("BDAT", 250), ("BDAT", 550), ("BDAT", 250)]
    assert not conn.pending
    # one recipient's failure is a delivery result, not a failed chunk
    assert conn.transaction is None
    assert conn.send(MailFrom("a@example.org"))


def test_lmtp_bdat_last_without_a_recipient_is_refused_once() -> None:
    conn = greeted(lmtp=True)
    conn.send(Ehlo("client.example"))
    answer(conn, Reply(250, ["mx.example", "CHUNKING", "PIPELINING"]))
    conn.send(MailFrom("a@example.org"))
    conn.send(RcptTo("b@example.net"))
    conn.send(Bdat(0, last=True))
    answer(conn, OK, Reply(550, "5.1.1 no"), Reply(503, "5.5.1 no valid recipients"))
    # the server still holds the MAIL: the client must RSET (RFC 3030 §2)
    assert_refused(conn, MailFrom("a@example.org"))
    assert conn.send(Rset())


def test_lmtp_bdat_last_after_a_failed_chunk_gets_one_reply() -> None:
    """After a failed chunk the server dropped the transaction: the pipelined
    BDAT LAST is refused once, not once per recipient (no desync)."""
    conn = greeted(lmtp=True)
    conn.send(Ehlo("client.example"))
    answer(conn, Reply(250, ["mx.example", "CHUNKING", "PIPELINING"]))
    transaction(conn, accepted=2)
    conn.send(Bdat(1))
    conn.send(MessageData(b"x"))
    conn.send(Bdat(0, last=True))
    replies = answer(conn, Reply(452, "4.3.1 full"), Reply(503, "5.5.1 no transaction"))
    assert [(r.command, r.code) for r in replies] == [("BDAT", 452), ("BDAT", 503)]
    assert not conn.pending
    assert conn.send(Rset()) == b"RSET\r\n"
    assert [r.command for r in answer(conn, OK)] == ["RSET"]


def test_bdat_chunks_exact_and_binary_rfc3030_2() -> None:
    conn = ready("CHUNKING")
    transaction(conn)
    assert conn.send(Bdat(5)) == b"BDAT 5\r\n"
    assert_refused(conn, MessageData(b"123456"))  # more than the chunk
    assert conn.send(MessageData(b"\r\n.")) == b"\r\n."
    assert_refused(conn, Noop())  # two octets are still due
    with pytest.raises(LocalProtocolError):
        conn.send(EndOfMessage())
    assert conn.send(MessageData(b"\r\n")) == b"\r\n"
    [reply] = answer(conn, OK)
    assert reply.command == "BDAT"
    assert_refused(conn, Data())  # RFC 3030 §2: no DATA in a BDAT transaction
    assert conn.send(EndOfMessage()) == b"BDAT 0 LAST\r\n"
    assert answer(conn, OK)[0].command == "BDAT"
    assert conn.transaction is None


def test_no_rcpt_once_bdat_started() -> None:
    conn = ready("CHUNKING")
    transaction(conn)
    conn.send(Bdat(0))
    answer(conn, OK)
    assert_refused(conn, RcptTo("late@example.net"))


def test_after_a_failed_bdat_only_rset_rfc3030_2() -> None:
    conn = ready("CHUNKING")
    transaction(conn)
    conn.send(Bdat(1))
    conn.send(MessageData(b"x"))
    answer(conn, Reply(452, "4.3.1 disk full"))
    assert_refused(conn, Bdat(1, last=True))
    assert_refused(conn, Noop())
    assert conn.send(Rset()) == b"RSET\r\n"


def test_after_a_failed_bdat_last_rset_is_still_required_rfc3030_2() -> None:
    conn = ready("CHUNKING")
    transaction(conn)
    conn.send(Bdat(0, last=True))
    assert conn.transaction is None  # as far as the client can tell, the end
    answer(conn, Reply(503, "5.5.1 no valid recipients"))
    # the server may still hold the transaction: nothing but RSET (or QUIT)
    assert_refused(conn, MailFrom("c@example.org"))
    assert conn.send(Rset()) == b"RSET\r\n"
    answer(conn, OK)
    assert conn.send(MailFrom("c@example.org"))


def test_binarymime_goes_with_bdat_only_rfc3030_3() -> None:
    conn = ready("8BITMIME", "CHUNKING", "BINARYMIME")
    conn.send(MailFrom("a@example.org", body="BINARYMIME"))
    answer(conn, OK)
    conn.send(RcptTo("b@example.net"))
    answer(conn, OK)
    assert_refused(conn, Data())
    assert conn.send(Bdat(0, last=True)) == b"BDAT 0 LAST\r\n"


def test_content_outside_a_message_is_refused() -> None:
    conn = ready()
    assert_refused(conn, MessageData(b"x"))
    with pytest.raises(LocalProtocolError):
        conn.send(EndOfMessage())


# -- SASL helpers -------------------------------------------------------------------------


def test_sasl_plain_message_rfc4616_2() -> None:
    auth = auth_plain("alice", "pässword", authzid="admin")
    assert auth.mechanism == "PLAIN"
    assert auth.initial_response is not None
    assert base64.b64decode(auth.initial_response) == "admin\0alice\0pässword".encode()
    with pytest.raises(ValueError):
        auth_plain("al\0ice", "x")


def test_sasl_challenge_must_be_base64_rfc4954_4() -> None:
    with pytest.raises(RemoteProtocolError):
        login_response(Reply(334, "not base64!"), "a", "b")
    assert login_response(Reply(334, ""), "a", "pw") == AuthResponse("cHc=")


# -- odds and ends --------------------------------------------------------------------------


def test_a_malformed_ehlo_reply_is_a_remote_error() -> None:
    conn = greeted()
    conn.send(Ehlo("client.example"))
    conn.receive_data("250-mx.example\r\n250 SIZE ünicode\r\n".encode())
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_a_helo_reply_with_an_odd_name_still_counts() -> None:
    conn = greeted()
    conn.send(Helo("client.example"))
    answer(conn, Reply(250, "mx.ëxample hello"))
    assert conn.capabilities is not None and conn.capabilities.domain == "unknown"
    assert conn.send(MailFrom("a@example.org"))


def test_bdat_after_a_refused_data_is_refused_rfc3030_2() -> None:
    conn = ready("CHUNKING")
    transaction(conn)
    conn.send(Data())
    answer(conn, Reply(451, "4.3.0 try later"))
    assert_refused(conn, Bdat(0, last=True))
    assert conn.send(Data()) == b"DATA\r\n"  # DATA may be tried again


def test_what_a_client_cannot_send() -> None:
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.send(CommandRejected("MAIL", Reply(503, "no")))
    with pytest.raises(TypeError):
        conn.start_tls("TLSv1.3")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ClientConnection("client.example", max_reply_lines=0)
    # the application may declare the session over; nothing is sent after
    assert conn.send(ConnectionClosed()) == b""
    assert conn.closed
    assert_refused(conn, Noop())


# -- fixes found by review and fuzzing (issue 7) -----------------------------------


@pytest.mark.parametrize("raw", [b"250 2.0.0 go ahead\r\n", b"251 sure\r\n"])
def test_only_220_is_the_starttls_go_ahead_rfc3207_4(raw: bytes) -> None:
    conn = ready("STARTTLS")
    conn.send(StartTLS())
    conn.receive_data(raw)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    # no handshake is expected, and the connection is unusable (as in h11)
    with pytest.raises(LocalProtocolError):
        conn.start_tls(TLS)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


@pytest.mark.parametrize("raw", [b"334 \r\n", b"334\r\n"])
def test_an_empty_challenge_is_read_in_both_forms_rfc4954_4(raw: bytes) -> None:
    conn = secure("AUTH PLAIN")
    conn.send(Auth("PLAIN"))
    [challenge] = feed(conn, raw)
    assert (challenge.code, challenge.text, challenge.command) == (334, "", "AUTH")
    assert conn.send(AuthResponse("AGEAYg==")) == b"AGEAYg==\r\n"


def test_an_empty_challenge_is_written_with_its_space_rfc4954_4() -> None:
    assert Reply(334, "").format() == b"334 \r\n"
    assert Reply(250, "").format() == b"250\r\n"  # RFC 5321 §4.2: the text is optional


def test_unread_replies_are_bounded() -> None:
    conn = greeted(max_backlog=4096)
    conn.send(Noop())
    conn.receive_data(b"250-" + b"x" * 400 + b"\r\n")
    for _ in range(20):  # 20 x 406 octets, never read with next_event()
        conn.receive_data(b"250-" + b"x" * 400 + b"\r\n")
    assert len(conn._receive_buffer) <= 4096
    with pytest.raises(RemoteProtocolError, match="unread"):
        conn.next_event()
    with pytest.raises(ValueError):
        ClientConnection("client.example", max_backlog=100)


def test_vrfy_in_utf8_needs_smtputf8_offered_rfc6531_3_7_4_2() -> None:
    assert_refused(ready(), Vrfy("jöran"))
    assert_refused(ready(), Expn("list", smtputf8=True))
    conn = ready("SMTPUTF8")
    assert conn.send(Vrfy("jöran", smtputf8=True)) == "VRFY jöran SMTPUTF8\r\n".encode()


def test_the_client_reports_the_session_state() -> None:
    conn = ready("PIPELINING")
    assert conn.state is State.READY
    conn.send(MailFrom("a@example.org"))
    conn.send(RcptTo("b@example.net"))
    assert conn.state is State.READY  # the state moves with replies
    answer(conn, OK)
    assert conn.state is State.MAIL
    answer(conn, OK)
    assert conn.state is State.RCPT
    conn.send(Data())
    answer(conn, Reply(354, "go"))
    assert conn.state is State.DATA


def test_a_positive_reply_to_a_command_out_of_sequence_is_a_remote_error() -> None:
    conn = ready("PIPELINING")
    conn.send(MailFrom("a@example.org"))
    conn.send(RcptTo("b@example.net"))
    answer(conn, Reply(550, "5.1.8 no"))  # MAIL refused: RCPT is out of sequence
    conn.receive_data(b"250 2.1.5 ok\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_awaiting_names_the_oldest_command_without_a_reply_rfc2920_3_1() -> None:
    from smtp_rtls import Address

    conn = ClientConnection("client.example.org")
    assert conn.awaiting == "GREETING"
    conn.receive_data(b"220 mx.example.org ESMTP\r\n")
    assert conn.next_event() == Reply(220, "mx.example.org ESMTP")
    assert conn.awaiting is None
    conn.send(Ehlo("client.example.org"))
    assert conn.awaiting == "EHLO"
    conn.receive_data(b"250-mx.example.org\r\n250 PIPELINING\r\n")
    conn.next_event()
    conn.send(MailFrom(Address.parse("a@example.org")))
    conn.send(RcptTo(Address.parse("b@example.org")))
    assert conn.awaiting == "MAIL"
    assert conn.pending == ("MAIL", "RCPT")
    conn.receive_data(b"250 Ok\r\n")
    conn.next_event()
    assert conn.awaiting == "RCPT"
