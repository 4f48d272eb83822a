"""Hypothesis strategies for SMTP: addresses, commands, replies, content, sessions.

Each strategy says what it draws and by which grammar: RFC 5321 §4.1.2
(paths and parameters), §4.1.3 (address literals), §4.2 (replies) and
§4.5.3.1 (size limits); RFC 6531 §3.3 (UTF-8 forms); RFC 3461 §4 (DSN
parameters, xtext); RFC 3463 §2 (enhanced status codes); RFC 2920 §3.1
(pipelined groups); RFC 3030 §2 (BDAT).

Unless a strategy says otherwise, what it draws is valid by construction,
within the grammar and the limits it names, so a test can assert
``parse(format(x)) == x`` on it.  The strategies whose name says so
(:func:`command_lines` and :func:`reply_lines` with ``valid=False``) draw the
malformed input a peer may send instead, each refused by construction.

These are the strategies smtp_rtls's own tests use::

    from hypothesis import given
    from smtp_rtls import Address
    from smtp_rtls.testing import strategies as sst

    @given(sst.addresses(utf8=True))
    def test_paths_read_back(address):
        assert Address.parse(address.path()) == address

Only commands that the core's parser reads back with its default arguments
are drawn by :func:`commands`, except RCPT with a UTF-8 path, which the
server reads only in a transaction that declared SMTPUTF8:
:func:`rcpt_tos` draws those with ``utf8=True``.
"""

from __future__ import annotations

from ._conversation import ClientSession, chunkings, client_sessions, message_contents
from ._grammar import ATEXT as _ATEXT
from ._grammar import (
    address_literals,
    addresses,
    auths,
    bdats,
    capabilities,
    command_events,
    command_lines,
    commands,
    domains,
    ehlo_keywords,
    enhanced_statuses,
    envids,
    esmtp_keywords,
    esmtp_params,
    esmtp_values,
    forward_paths,
    local_parts,
    mail_froms,
    rcpt_tos,
    replies,
    reply_codes,
    reply_lines,
    reverse_paths,
    utf8_chars,
    xtext_strings,
)

__all__ = [
    "ATEXT",
    "ClientSession",
    "address_literals",
    "addresses",
    "auths",
    "bdats",
    "capabilities",
    "chunkings",
    "client_sessions",
    "command_events",
    "command_lines",
    "commands",
    "domains",
    "ehlo_keywords",
    "enhanced_statuses",
    "envids",
    "esmtp_keywords",
    "esmtp_params",
    "esmtp_values",
    "forward_paths",
    "local_parts",
    "mail_froms",
    "message_contents",
    "rcpt_tos",
    "replies",
    "reply_codes",
    "reply_lines",
    "reverse_paths",
    "utf8_chars",
    "xtext_strings",
]

#: RFC 5322 §3.2.3 ``atext``: the characters of a Dot-string atom.
ATEXT: str = _ATEXT
