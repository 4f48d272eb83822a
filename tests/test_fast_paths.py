"""The core's fast paths decide exactly as the general code they shortcut.

Each fast path handles the common shape of an input in fewer steps and
leaves everything else to the general code; these properties compare the
two on valid inputs and on near misses, so a fast path that accepts more, or
splits differently, fails here.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtp_rtls._commands import (
    _MAIL_RE,
    _RCPT_RE,
    CommandSyntaxError,
    _rcpt_to,
    _rcpt_to_general,
    _split_plain_path,
)

# The characters that decide the shape of a MAIL / RCPT argument, and some
# that case-folding or Unicode could confuse (the long s folds to "S", the
# Kelvin sign to "K").
_PIECES = [
    "FROM:", "TO:", "from:", "To:", " ", "<", ">", '"', "[", "]", "\\", "@", ".",
    "a", "b", "=", "SIZE=10", "NOTIFY=NEVER", "\n", "ſ", "K", "é", "-",
    "alice@example.org", "[127.0.0.1]", "Postmaster",
]  # fmt: skip
_noise = st.lists(st.sampled_from(_PIECES), max_size=6).map("".join)
_local = st.sampled_from(["alice", "a.b", '"a b"', '"a>b"', '"a> b"', "a..b", ".a", "é", "a\\b"])
_domain = st.sampled_from(["example.org", "[127.0.0.1]", "[a> b]", "-x.org", "é.org", "x", ""])
# Mostly near the usual shape (head, path, parameters), with noise anywhere.
_shaped = st.tuples(
    st.sampled_from(["TO:", "to:", "FROM:", "From:", "TO: ", "ſTO:"]),
    _noise,
    st.sampled_from(["<", ""]),
    _local,
    st.sampled_from(["@", ""]),
    _domain,
    st.sampled_from([">", ""]),
    st.sampled_from(["", " ", " NOTIFY=NEVER", "x", " SIZE=10 BODY=8BITMIME"]),
    _noise,
).map("".join)
arguments = st.one_of(_shaped, st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))


@settings(max_examples=2000)
@given(arguments, st.sampled_from([("FROM:", _MAIL_RE), ("TO:", _RCPT_RE)]))
@example('TO:<"a> b"@example.org>', ("TO:", _RCPT_RE))
def test_the_plain_path_split_agrees_with_the_regex_rfc5321_4_1_2(
    arg: str, head_and_regex: tuple[str, object]
) -> None:
    head, regex = head_and_regex
    split = _split_plain_path(arg, head)
    if split is None:
        return  # the regex decides alone
    m = regex.fullmatch(arg)  # type: ignore[attr-defined]
    assert m is not None, arg
    assert split == (m[1], m[2] or "")


def _outcome(parse: object, arg: str, utf8: bool) -> object:
    try:
        return parse(arg, utf8=utf8)  # type: ignore[operator]
    except CommandSyntaxError as exc:
        return ("refused", exc.reply)


@settings(max_examples=2000)
@given(arguments, st.booleans())
@example("TO:<alice@example.org>", False)
def test_rcpt_without_parameters_parses_as_the_general_path_does(arg: str, utf8: bool) -> None:
    assert _outcome(_rcpt_to, arg, utf8) == _outcome(_rcpt_to_general, arg, utf8)


# Reply lines near the usual shape: a code, a separator, maybe an enhanced
# status, text with the characters that send a line down the general path.
_REPLY_PIECES = [
    "250", "354", "550", "199", "560", "25", "2500", " ", "-", "\t", "\x00", "\x7f",
    "2.1.0", "5.7.30", "4.0.0", "2.1000.0", "5.1.1.1", "Ok", "é", "x", "\r", "٣",
]  # fmt: skip
_reply_lines = st.one_of(
    st.tuples(
        st.sampled_from(["250", "354", "550", "421", "199", "2x0"]),
        st.sampled_from([" ", "", "-", "\t"]),
        st.sampled_from(["", "2.1.0", "5.7.30", "4.4.1", "2.1.0 ", "5.7.1x", "٢.0.0"]),
        st.lists(st.sampled_from(_REPLY_PIECES), max_size=6).map("".join),
    ).map("".join),
    st.lists(st.sampled_from(_REPLY_PIECES), max_size=10).map("".join),
).map(lambda s: s.encode("utf-8", "surrogateescape"))


def _reply_outcome(build: object, raw: bytes | bytearray) -> object:
    try:
        reply = build(raw)  # type: ignore[operator]
    except Exception as exc:  # the type and the text are compared
        return (type(exc), str(exc))
    return (reply, reply.code, reply.lines, reply.enhanced, reply.command, reply.format())


@settings(max_examples=2000)
@given(st.one_of(_reply_lines, st.binary(max_size=20), st.just(b"250 " + b"x" * 506)))
@example(b"250 " + b"x" * 507)
@example(b"250 2.1.0")
@example(b"550 2.7.1 wrong class")
def test_a_one_line_reply_parses_as_the_general_path_does_rfc5321_4_2(raw: bytes) -> None:
    from smtp_rtls import Reply
    from smtp_rtls._readers import _ONE_LINE

    general = _reply_outcome(lambda r: Reply.from_lines([r]), raw)
    _ONE_LINE.pop(raw, None)
    # the first parse of a line, then the parts kept from it
    assert _reply_outcome(Reply.from_line, raw) == general
    assert _reply_outcome(Reply.from_line, raw) == general
    # a bytearray (never kept) too
    line = bytearray(raw)
    assert _reply_outcome(Reply.from_line, line) == _reply_outcome(
        lambda r: Reply.from_lines([r]), line
    )


def test_a_kept_reply_line_gives_a_new_reply_each_time() -> None:
    # The client core sets each reply's command (ClientConnection._on_reply):
    # a reply shared between two commands would change under the first one.
    from client_helpers import ready, reply_event
    from smtp_rtls import MailFrom, Reply, Rset

    conn = ready()
    conn.send(MailFrom("a@b.example"))
    conn.receive_data(b"250 2.0.0 Ok\r\n")
    mail_reply = reply_event(conn)
    conn.send(Rset())
    conn.receive_data(b"250 2.0.0 Ok\r\n")
    rset_reply = reply_event(conn)
    assert mail_reply == Reply(250, "Ok", "2.0.0", command="MAIL")
    assert mail_reply is not rset_reply
    assert (mail_reply.command, rset_reply.command) == ("MAIL", "RSET")


def test_the_kept_reply_lines_are_bounded() -> None:
    from smtp_rtls import Reply
    from smtp_rtls._readers import _ONE_LINE, _ONE_LINE_MAX

    for i in range(_ONE_LINE_MAX + 100):
        # a queue id in each: every line differs
        reply = Reply.from_line(b"250 2.0.0 Ok: queued as %d" % i)
        assert reply.lines == (f"Ok: queued as {i}",)
        assert len(_ONE_LINE) <= _ONE_LINE_MAX
