"""The server's lanes decide exactly as its general path.

``ServerConnection`` reads the usual EHLO (HELO, LHLO), MAIL, RCPT, DATA, RSET
and QUIT of a session through a lane (``_server._LANES``): one step that makes the
general path's checks and returns the same event, or hands the command to
the general path.  These tests run every input through a connection with
its lanes and one without, and require the same events, the same octets
on the wire and the same failure, so a lane that accepts what the general
path refuses (or parses it differently) fails here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtp_rtls import ServerConfig
from smtp_rtls._commands import mail_lane_keys, parse_mail_lane, parse_split_command
from smtp_rtls._server_rules import check_mail
from test_server_fuzz import CONFIGS, FRAGMENTS, Session, _by_content, _split

# Near misses of the lanes' shapes: every branch where a lane must give up.
LANE_FRAGMENTS = [
    b"MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME\r\n",
    b"MAIL FROM:<a@b.example> SIZE=99999999999\r\n",  # over the limit: 552
    b"MAIL FROM:<a@b.example> SIZE=123456789012345678901\r\n",  # 21 digits
    b"MAIL FROM:<a@b.example> SIZE=\r\n",
    b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2\r\n",  # twice: 501
    b"MAIL FROM:<a@b.example> size=1 body=7bit\r\n",
    b"MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n",
    b"MAIL FROM:<a@b.example> BODY=8BITMIME BODY=7BIT\r\n",
    b"MAIL FROM:<a@b.example> RET=HDRS ENVID=x\r\n",
    b"MAIL FROM:<a@b.example> RET=FULL\r\n",
    b"MAIL FROM:<a@b.example> RET\r\n",
    b"MAIL FROM:<a@b.example> REQUIRETLS\r\n",
    b"MAIL FROM:<a@b.example> REQUIRETLS=1\r\n",
    b"MAIL FROM:<a@b.example> SMTPUTF8 SMTPUTF8\r\n",
    b"MAIL FROM:<a@b.example> X-FOO=1\r\n",
    b"MAIL FROM:<a@b.example>  SIZE=1\r\n",
    b"MAIL FROM:<a@b.example>x\r\n",
    b"MAIL FROM:<>\r\n",
    b"MAIL FROM:<Postmaster>\r\n",
    b"MAIL FROM: <a@b.example>\r\n",
    b"mail from:<a@b.example>\r\n",
    b'MAIL FROM:<"a b"@b.example>\r\n',
    b"MAIL FROM:<a@[127.0.0.1]>\r\n",
    b"MAIL FROM:<a@b.example\r\n",
    b"MAIL FROM:<a@-b.example>\r\n",
    b"MAIL FROM:<\xc3\xa9@b.example> SMTPUTF8\r\n",
    b"RCPT TO:<c@d.example>\r\n",
    b"RCPT TO:<c@d.example> \r\n",
    b"RCPT TO:<c@d.example>>\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"RCPT TO:<>\r\n",
    b"RCPT TO: <c@d.example>\r\n",
    b"rcpt to:<c@d.example>\r\n",
    b"RCPT TO:<c@[127.0.0.1]>\r\n",
    b"RCPT TO:<\xc3\xa9@d.example>\r\n",
    b"DATA\r\n",
    b"DATA x\r\n",
    b"data\r\n",
    b"RSET\r\n",
    b"RSET x\r\n",
    b"QUIT\r\n",
    b"QUIT x\r\n",
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"LHLO client.example\r\n",
    b"ehlo [127.0.0.1]\r\n",
    b"EHLO\r\n",
    b"EHLO \r\n",
    b"EHLO a b\r\n",
    b"HELO \xc3\xa9.example\r\n",
    b"EHLO " + b"x" * 600 + b"\r\n",
    b"STARTTLS\r\n",
    b"hello\r\n.\r\n",
]

_CONFIGS = [
    *CONFIGS,
    ServerConfig(max_message_size=0, requiretls=True, starttls=True, smtputf8=True),
    ServerConfig(max_recipients=100, eightbitmime=False, dsn=True),
]


def _play(config: ServerConfig, pieces: list[bytes], lanes: bool) -> Session:
    session = Session(config, _by_content)
    if not lanes:
        session.conn._lanes = {}
    for piece in pieces:
        session.feed(piece)
    session.feed(b"")
    return session


def _observed(session: Session) -> tuple[object, ...]:
    # what a peer and an application see: events, reply bytes, error, closing
    return (session.events, bytes(session.out), str(session.error), session.closed)


def _both(config: ServerConfig, data: bytes, cuts: list[int]) -> tuple[Session, Session]:
    """The same reads played with the lanes and with the general path only."""
    pieces = _split(data, cuts)
    return _play(config, pieces, True), _play(config, pieces, False)


_inputs = st.lists(st.sampled_from(LANE_FRAGMENTS + FRAGMENTS), max_size=40).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_CONFIGS),
    st.sampled_from([b"EHLO client.example\r\n", b"HELO client.example\r\n", b""]),
    _inputs,
    st.lists(st.integers(0, 3000), max_size=5),
)
@example(
    ServerConfig(),
    b"EHLO client.example\r\n",
    b"MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
    b"hello\r\n.\r\nRSET\r\nQUIT\r\n",
    [],
)
def test_lanes_and_general_path_agree_rfc5321_4_1_1(
    config: ServerConfig, hello: bytes, data: bytes, cuts: list[int]
) -> None:
    fast, general = _both(config, hello + data, cuts)
    assert _observed(fast) == _observed(general)


@pytest.mark.parametrize("config", _CONFIGS, ids=range(len(_CONFIGS)))
@pytest.mark.parametrize("line", LANE_FRAGMENTS, ids=lambda b: b[:40].decode("latin-1"))
def test_each_near_miss_is_decided_as_by_the_general_path(
    config: ServerConfig, line: bytes
) -> None:
    opening = b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
    for before in (b"EHLO client.example\r\n", opening):
        fast, general = _both(config, before + line + b"QUIT\r\n", [])
        assert _observed(fast) == _observed(general)


def test_the_usual_transaction_takes_the_lanes() -> None:
    # Without this, the tests above would pass with lanes that never apply.
    session = Session(ServerConfig(), _by_content)
    taken: list[str] = []
    conn = session.conn

    def recording(verb: str, lane: Callable[..., object]) -> Callable[..., object]:
        def run(*args: object) -> object:
            event = lane(*args)
            if event is not None:
                taken.append(verb)
            return event

        return run

    conn._lanes = {verb: recording(verb, lane) for verb, lane in conn._lanes.items()}
    session.feed(
        b"EHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME\r\n"
        b"RCPT TO:<c@d.example>\r\nDATA\r\nhello\r\n.\r\nMAIL FROM:<a@b.example>\r\n"
        b"RSET\r\nQUIT\r\n"
    )
    assert taken == ["EHLO", "MAIL", "RCPT", "DATA", "MAIL", "RSET", "QUIT"]
    assert session.closed or session.events[-1].__class__.__name__ == "Quit"


def test_the_recipient_limit_is_the_general_path_s_rfc5321_4_5_3_1_10() -> None:
    config = ServerConfig(max_recipients=100)
    rcpts = b"".join(b"RCPT TO:<c%d@d.example>\r\n" % i for i in range(102))
    fast, general = _both(config, b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n" + rcpts, [])
    assert _observed(fast) == _observed(general)
    assert b"452 4.5.3" in fast.out


_MAIL_HEADS = [
    "FROM:<a@b.example>", "FROM:<>", "FROM:<Postmaster>", "FROM: <a@b.example>",
    "from:<a@b.example>", "FROM:<a@b.example", 'FROM:<"a b"@b.example>', "FROM:<a@[1.2.3.4]>",
    "FROM:<é@b.example>", "FROM:<a@b.example>x", "FROM:<a>",
]  # fmt: skip
_MAIL_PARAMS = [
    "SIZE=", "SIZE=10", "size=0010", "SIZE=99999999999999999999", "SIZE=999999999999999999999",
    "SIZE=1x", "SIZE=\u00b2", "BODY=7BIT", "body=8bitmime", "BODY=BINARYMIME", "BODY=",
    "BODY=8BITMIMEX", "SMTPUTF8", "SMTPUTF8=", "REQUIRETLS", "requiretls", "REQUIRETLS=YES",
    "RET=FULL", "RET=hdrs", "RET", "RET=X", "ENVID=x", "AUTH=<>", "X=1", "=", "ſIZE=1", "",
]  # fmt: skip
_mail_args = st.builds(
    lambda head, params, sep: head + "".join(sep + p for p in params),
    st.sampled_from(_MAIL_HEADS),
    st.lists(st.sampled_from(_MAIL_PARAMS), max_size=4),
    st.sampled_from([" ", " ", " ", "  ", ""]),
)
_OFFERED = ["SIZE", "8BITMIME", "BINARYMIME", "SMTPUTF8", "REQUIRETLS", "DSN", "AUTH", "CHUNKING"]


@settings(max_examples=3000, deadline=None)
@given(
    _mail_args,
    st.frozensets(st.sampled_from(_OFFERED)),
    st.sampled_from([0, 5, 10, 64 * 1024 * 1024]),
)
def test_the_mail_lane_accepts_only_what_the_general_path_accepts_rfc5321_4_1_1_2(
    arg: str, offered: frozenset[str], limit: int
) -> None:
    config = ServerConfig(max_message_size=limit)
    event = parse_mail_lane(arg, mail_lane_keys(offered), limit)
    if event is None:
        return  # the general path decides alone
    general = parse_split_command("MAIL", arg, "MAIL " + arg, smtputf8="SMTPUTF8" in offered)
    assert general == event
    assert check_mail(general, offered, config) is None
