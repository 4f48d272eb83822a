"""ClientTransaction's derived answers, which the client core reads through
module functions (``_client_rules``) rather than the attrs properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls import MailFrom, RcptTo, Reply
from smtp_rtls._client_rules import (
    accepted_rcpts,
    all_rcpts_refused,
    mail_refused,
    new_transaction,
)
from smtp_rtls._readers import is_positive

# every code a Reply takes: [2-5][0-5][0-9]
codes = st.builds(
    lambda a, b, c: a * 100 + b * 10 + c, st.integers(2, 5), st.integers(0, 5), st.integers(0, 9)
)


@given(codes)
def test_is_positive_is_2xx(code: int) -> None:
    reply = Reply(code, "text")
    assert is_positive(reply) is reply.is_positive is (200 <= code < 300)


@given(st.none() | codes, st.lists(codes, max_size=5), st.integers(0, 5))
def test_properties_and_functions_agree_with_the_rules(
    mail_code: int | None, rcpt_codes: list[int], unanswered: int
) -> None:
    txn = new_transaction(MailFrom("a@example.org"))
    if mail_code is not None:
        txn.mail_reply = Reply(mail_code, "mail")
    rcpts = [RcptTo(f"r{i}@example.net") for i in range(len(rcpt_codes))]
    txn.rcpt_replies.extend((r, Reply(c, "rcpt")) for r, c in zip(rcpts, rcpt_codes, strict=True))
    txn.rcpts_sent = len(rcpt_codes) + unanswered

    refused = mail_code is not None and not 200 <= mail_code < 300
    expected = (
        () if refused else tuple(r for r, c in zip(rcpts, rcpt_codes, strict=True) if c < 300)
    )
    none_left = unanswered == 0 and not expected

    assert mail_refused(txn) is txn.mail_refused is refused
    assert accepted_rcpts(txn) == txn.accepted == expected
    assert all_rcpts_refused(txn) is txn.all_rcpts_refused is none_left
