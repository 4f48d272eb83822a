"""The hypothesis strategies of the project's tests: those of the public kit.

The real code is :mod:`smtp_rtls.testing.strategies` (what users of the
``testing`` extra get); this module keeps ``import strategies as sst``
working for the tests (the tests folder is on ``sys.path``).
"""

from __future__ import annotations

from smtp_rtls.testing.strategies import (
    ATEXT,
    ClientSession,
    address_literals,
    addresses,
    auths,
    bdats,
    capabilities,
    chunkings,
    client_sessions,
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
    message_contents,
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
