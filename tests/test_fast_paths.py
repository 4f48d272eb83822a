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
