"""ServerConfig: the extensions a server offers and every limit it keeps."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import attrs

from ._capabilities import Capabilities
from ._errors import LocalProtocolError

__all__ = ["ServerConfig"]

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
COMMAND_LINE = 512
# Octets the MAIL line may grow by, per offered extension.
MAIL_ALLOWANCE = {
    "REQUIRETLS": 11,  # RFC 8689 §2 item 5
    "SIZE": 26,  # RFC 1870 §3 item 5
    "SMTPUTF8": 10,  # RFC 6531 §3.1 item 5
    "BINARYMIME": 16,  # RFC 3030 §3 item 8
    "AUTH": 500,  # RFC 4954 §3 item 5 (the AUTH= parameter)
}
# RFC 3461 §5.4: with DSN, command lines of at least 1036 octets.
DSN_LINE = 1036


def _at_least(minimum: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or value < minimum:
            raise LocalProtocolError(f"{attribute.name} must be an integer >= {minimum}")

    return check


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _extension_lines(
    value: Iterable[tuple[str, Iterable[str]]],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((keyword, tuple(params)) for keyword, params in value)


def _upper_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset(k.upper() for k in value)


@attrs.frozen(slots=True)
class ServerConfig:
    """What a :class:`ServerConnection` offers and how much it will hold.

    The extensions listed in DESIGN.md are on by default; STARTTLS only when
    ``starttls=True`` (the application must be able to do the handshake).
    Offered extensions are filtered by state in the EHLO reply: STARTTLS
    only before TLS (RFC 3207 §4.2), REQUIRETLS only once TLS is active
    (RFC 8689 §2), AUTH only after TLS when ``auth_requires_tls``, SMTPUTF8
    only with 8BITMIME (RFC 6531 §3.1), BINARYMIME only with CHUNKING
    (RFC 3030 §3).

    Limits: ``max_message_size`` is the SIZE value (octets of content; ``0``
    offers SIZE without a limit); ``max_recipients`` per transaction (never
    below 100, RFC 5321 §4.5.3.1.8); ``max_command_line`` the base command line
    length, to which the MAIL allowances of the offered extensions are added;
    ``max_backlog`` the undecoded input held at once (pipelined commands and
    one network read).

    ``bare_line_endings``: what to do with a CR or LF that is not part of
    CRLF, in commands and in DATA content.  ``"reject"`` (the default) reads
    to the real end (CRLF, or CRLF "." CRLF) and answers ``500 5.5.2``;
    ``"normalise"`` accepts LF as a command line end and rewrites bare CR
    and LF in content to CRLF.  Neither ever treats them as the end of the
    data (RFC 5321 §4.1.1.4).
    """

    starttls: bool = False
    require_starttls: bool = False
    pipelining: bool = True
    eightbitmime: bool = True
    smtputf8: bool = True
    size: bool = True
    chunking: bool = True
    binarymime: bool = False
    dsn: bool = True
    enhancedstatuscodes: bool = True
    requiretls: bool = True
    auth_mechanisms: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    auth_requires_tls: bool = True
    lmtp: bool = False
    max_message_size: int = attrs.field(default=64 * 1024 * 1024, validator=_at_least(0))
    max_recipients: int = attrs.field(default=1000, validator=_at_least(100))
    max_command_line: int = attrs.field(default=COMMAND_LINE, validator=_at_least(COMMAND_LINE))
    max_backlog: int = attrs.field(default=256 * 1024, validator=_at_least(4096))
    bare_line_endings: Literal["reject", "normalise"] = "reject"
    extra_extensions: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(
        default=(), converter=_extension_lines
    )
    extra_mail_parameters: frozenset[str] = attrs.field(default=frozenset(), converter=_upper_set)
    extra_rcpt_parameters: frozenset[str] = attrs.field(default=frozenset(), converter=_upper_set)
    help_text: str = "See RFC 5321"

    def __attrs_post_init__(self) -> None:
        if self.bare_line_endings not in ("reject", "normalise"):
            raise LocalProtocolError("bare_line_endings must be 'reject' or 'normalise'")
        if self.require_starttls and not self.starttls:
            raise LocalProtocolError("require_starttls needs starttls=True")
        # The extension lines are validated once, here, not on every EHLO.
        Capabilities("localhost", "", self.extra_extensions)

    def offered(self, *, tls: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The extension lines of the EHLO reply, for a session with or without TLS."""
        lines: list[tuple[str, tuple[str, ...]]] = []
        if self.pipelining:
            lines.append(("PIPELINING", ()))
        if self.size:
            lines.append(("SIZE", (str(self.max_message_size),)))
        if self.eightbitmime:
            lines.append(("8BITMIME", ()))
            if self.smtputf8:
                lines.append(("SMTPUTF8", ()))
        if self.chunking:
            lines.append(("CHUNKING", ()))
            if self.binarymime:
                lines.append(("BINARYMIME", ()))
        if self.dsn:
            lines.append(("DSN", ()))
        if self.enhancedstatuscodes:
            lines.append(("ENHANCEDSTATUSCODES", ()))
        if self.auth_mechanisms and (tls or not self.auth_requires_tls):
            lines.append(("AUTH", tuple(m.upper() for m in self.auth_mechanisms)))
        if self.starttls and not tls:
            lines.append(("STARTTLS", ()))  # RFC 3207 §4.2: never after TLS
        if self.requiretls and tls:
            lines.append(("REQUIRETLS", ()))  # RFC 8689 §2: only on a TLS session
        lines.extend(self.extra_extensions)
        return tuple(lines)

    def mail_line_limit(self, offered: tuple[tuple[str, tuple[str, ...]], ...]) -> int:
        """The longest MAIL command line accepted with these extensions offered."""
        keys = {k.upper() for k, _ in offered}
        limit = self.max_command_line + sum(v for k, v in MAIL_ALLOWANCE.items() if k in keys)
        if "DSN" in keys:
            limit = max(limit + DSN_LINE - COMMAND_LINE, DSN_LINE)
        return limit

    def rcpt_line_limit(self, offered: tuple[tuple[str, tuple[str, ...]], ...]) -> int:
        """The longest RCPT command line accepted (longer with DSN, RFC 3461 §5.4)."""
        keys = {k.upper() for k, _ in offered}
        if "DSN" in keys:
            return self.max_command_line + DSN_LINE - COMMAND_LINE
        return self.max_command_line
