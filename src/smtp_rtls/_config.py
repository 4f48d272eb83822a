"""ServerConfig: the extensions a server offers and every limit it keeps."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import attrs

from ._capabilities import Capabilities
from ._errors import LocalProtocolError
from ._params import MAIL_PARAMETERS, RCPT_PARAMETERS
from ._reply import Reply

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

# The EHLO keywords offered() computes itself, and the option that controls
# each.  extra_extensions may not name them, whatever their case: a keyword
# offered there would be offered with and without TLS alike, and would count
# as offered when a MAIL parameter is checked.  That would let a config offer
# REQUIRETLS before TLS and accept MAIL FROM ... REQUIRETLS on a plaintext
# session (RFC 8689 §2), or offer STARTTLS after TLS (RFC 3207 §4.2).
MANAGED_EXTENSIONS = {
    "STARTTLS": "starttls=True (offered only before TLS, RFC 3207 §4.2)",
    "REQUIRETLS": "requiretls=True (offered only once TLS is active, RFC 8689 §2)",
    "PIPELINING": "pipelining",
    "SIZE": "size and max_message_size",
    "8BITMIME": "eightbitmime",
    "SMTPUTF8": "smtputf8",
    "CHUNKING": "chunking",
    "BINARYMIME": "binarymime",
    "DSN": "dsn",
    "ENHANCEDSTATUSCODES": "enhancedstatuscodes",
    "AUTH": "auth_mechanisms",
}
# The MAIL and RCPT parameters the core reads into typed event fields
# (MailFrom.requiretls, .size, ...; RcptTo.notify, .orcpt) and checks against
# what the EHLO reply offered: never "extra" parameters.
MANAGED_MAIL_PARAMETERS: dict[str, str] = {}
for _param in MAIL_PARAMETERS:
    MANAGED_MAIL_PARAMETERS[_param.keyword] = " and ".join(
        filter(None, [MANAGED_MAIL_PARAMETERS.get(_param.keyword), _param.option])
    )
MANAGED_RCPT_PARAMETERS = {p.keyword: p.option for p in RCPT_PARAMETERS}


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


def _refuse_managed(option: str, keywords: Iterable[str], managed: dict[str, str]) -> None:
    for keyword in keywords:
        use = managed.get(keyword.upper())
        if use is not None:
            raise ValueError(
                f"{option} cannot name {keyword!r}: the core manages "
                f"{keyword.upper()} itself; use {use}"
            )


@attrs.frozen(slots=True)
class ServerConfig:
    """What a :class:`ServerConnection` offers and how much it will hold.

    Every field is a keyword argument with a default; the config is frozen.
    ``ServerConfig()`` offers PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING,
    DSN, ENHANCEDSTATUSCODES and, once TLS is active, REQUIRETLS; STARTTLS
    only with ``starttls=True`` (the application must be able to do the
    handshake), AUTH only with ``auth_mechanisms``.

    The EHLO reply offers each extension only where its RFC allows it:
    STARTTLS only before TLS (RFC 3207 §4.2), REQUIRETLS only once TLS is
    active (RFC 8689 §2), AUTH only after TLS when :attr:`auth_requires_tls`,
    SMTPUTF8 only with 8BITMIME (RFC 6531 §3.1), BINARYMIME only with
    CHUNKING (RFC 3030 §3).  A MAIL or RCPT parameter of an extension the
    EHLO reply in force did not offer is refused with ``555 5.5.4``
    (RFC 5321 §4.1.1.11).  :meth:`offered` gives the lines for either case.

    The core computes these keywords itself, so the ``extra_*`` options
    cannot name them (any case): a ``ValueError`` at construction names the
    option to use instead.

    The other checks (a limit below its minimum, an unknown
    :attr:`bare_line_endings`, :attr:`require_starttls` without
    :attr:`starttls`, a malformed extension line) raise
    :class:`LocalProtocolError`.
    """

    #: Offer STARTTLS (RFC 3207), before TLS only (§4.2).  Default ``False``:
    #: turn it on only when the application can run the TLS handshake after
    #: its ``220`` to :class:`StartTLS` and then call
    #: :meth:`ServerConnection.start_tls`.
    starttls: bool = False
    #: Refuse every command but EHLO, HELO, LHLO, STARTTLS, NOOP and QUIT
    #: with ``530 5.7.0`` until TLS is active (RFC 3207 §4); also BDAT.
    #: Default ``False``; needs :attr:`starttls`.
    require_starttls: bool = False
    #: Offer PIPELINING (RFC 2920).  Default ``True``.  Pipelined commands
    #: are read in order either way; this only tells the client it may.
    pipelining: bool = True
    #: Offer 8BITMIME (RFC 6152): ``BODY=8BITMIME`` and ``BODY=7BIT``.
    #: Default ``True``.
    eightbitmime: bool = True
    #: Offer SMTPUTF8 (RFC 6531), only together with 8BITMIME (§3.1):
    #: UTF-8 addresses with the ``SMTPUTF8`` MAIL parameter.  Default ``True``.
    smtputf8: bool = True
    #: Offer SIZE (RFC 1870) with :attr:`max_message_size` as its value, and
    #: accept the ``SIZE=`` MAIL parameter.  Default ``True``.
    size: bool = True
    #: Offer CHUNKING (RFC 3030): the BDAT command.  Default ``True``.
    chunking: bool = True
    #: Offer BINARYMIME (RFC 3030 §3), only together with CHUNKING:
    #: ``BODY=BINARYMIME`` content, sent with BDAT only.  Default ``False``.
    binarymime: bool = False
    #: Offer DSN (RFC 3461): the ``RET=`` and ``ENVID=`` MAIL parameters and
    #: the ``NOTIFY=`` and ``ORCPT=`` RCPT parameters; MAIL and RCPT lines
    #: may then be 1036 octets long (§5.4).  Default ``True``.
    dsn: bool = True
    #: Offer ENHANCEDSTATUSCODES (RFC 2034).  Default ``True``.
    enhancedstatuscodes: bool = True
    #: Offer REQUIRETLS (RFC 8689 §2) once TLS is active, and accept
    #: ``MAIL FROM ... REQUIRETLS`` then; never before TLS, where the
    #: parameter gets ``555 5.5.4``.  Default ``True``.
    requiretls: bool = True
    #: The SASL mechanisms to offer with AUTH (RFC 4954), e.g.
    #: ``("PLAIN", "LOGIN")``; the application runs the exchange.  Default
    #: ``()``: AUTH is not offered and answers ``502 5.5.1``.
    auth_mechanisms: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    #: Offer AUTH only once TLS is active; before, AUTH answers
    #: ``538 5.7.11`` (RFC 4954 §6).  Default ``True``.
    auth_requires_tls: bool = True
    #: Speak LMTP (RFC 2033) instead of SMTP: LHLO instead of EHLO and HELO
    #: (§4.1), and one reply per accepted recipient after the content
    #: (§4.2).  Default ``False``.
    lmtp: bool = False
    #: The largest message accepted, in octets of content: the SIZE value
    #: (RFC 1870 §4).  A larger ``SIZE=`` in MAIL, or more content than
    #: this, gets ``552 5.3.4`` (§4, §6.1).  ``0`` offers SIZE with no
    #: fixed limit.  Default 64 MiB.
    max_message_size: int = attrs.field(default=64 * 1024 * 1024, validator=_at_least(0))
    #: Recipients accepted per transaction; the next gets ``452 4.5.3``
    #: (RFC 5321 §4.5.3.1.10).  At least 100 (§4.5.3.1.8); default 1000.
    max_recipients: int = attrs.field(default=1000, validator=_at_least(100))
    #: The longest command line, CRLF included, before the MAIL allowances
    #: of the offered extensions are added (RFC 1870 §3, RFC 6531 §3.1,
    #: RFC 3030 §3, RFC 4954 §3, RFC 8689 §2; with DSN, RFC 3461 §5.4,
    #: MAIL and RCPT lines of 1036).  A longer line gets ``500 5.5.2``.
    #: At least 512 (RFC 5321 §4.5.3.1.4), the default.
    max_command_line: int = attrs.field(default=COMMAND_LINE, validator=_at_least(COMMAND_LINE))
    #: The undecoded input held at once, in octets (pipelined commands and
    #: one network read); past it :meth:`ServerConnection.receive_data`
    #: drops the bytes and the connection fails with ``421 4.7.0``.  At
    #: least 4096; default 256 KiB.
    max_backlog: int = attrs.field(default=256 * 1024, validator=_at_least(4096))
    #: Refusals in a row (commands the connection or the application
    #: refused, with no accepted command between them) after which the
    #: session ends with ``421 4.7.0`` (RFC 5321 §3.8) instead of one more
    #: refusal, so junk costs its sender more than it costs the server
    #: (Postfix's ``smtpd_hard_error_limit`` habit).  ``0``: no limit.
    #: Default 20.
    max_errors: int = attrs.field(default=20, validator=_at_least(0))
    #: What to do with a CR or LF that is not part of CRLF, in commands and
    #: in DATA content.  ``"reject"`` (the default) reads to the real end
    #: (CRLF, or CRLF "." CRLF) and answers ``500 5.5.2``; ``"normalise"``
    #: accepts LF as a command line end and rewrites bare CR and LF in
    #: content to CRLF.  Neither ever takes them for the end of the data
    #: (RFC 5321 §4.1.1.4, §2.3.8).
    bare_line_endings: Literal["reject", "normalise"] = "reject"
    #: More EHLO lines, ``(keyword, params)`` pairs such as
    #: ``("X-EXAMPLE", ("a", "b"))``, offered after the core's own lines,
    #: with and without TLS alike.  Their commands and parameters are the
    #: application's to accept (see :attr:`extra_mail_parameters`).  The
    #: keywords the core offers itself (STARTTLS, REQUIRETLS, PIPELINING,
    #: SIZE, 8BITMIME, SMTPUTF8, CHUNKING, BINARYMIME, DSN,
    #: ENHANCEDSTATUSCODES, AUTH) are refused, whatever their case: each has
    #: its own option.  Default ``()``.
    extra_extensions: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(
        default=(), converter=_extension_lines
    )
    #: MAIL parameter keywords (any case) accepted after EHLO into
    #: :attr:`MailFrom.extra`; any other unknown parameter gets ``555
    #: 5.5.4`` (RFC 5321 §4.1.1.11).  The parameters the core reads itself
    #: (REQUIRETLS, SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH) are refused.
    #: Default: none.
    extra_mail_parameters: frozenset[str] = attrs.field(default=frozenset(), converter=_upper_set)
    #: RCPT parameter keywords (any case) accepted after EHLO into
    #: :attr:`RcptTo.extra`; NOTIFY and ORCPT are the core's (DSN) and are
    #: refused.  Default: none.
    extra_rcpt_parameters: frozenset[str] = attrs.field(default=frozenset(), converter=_upper_set)
    #: The text of the ``214`` reply to HELP (RFC 5321 §4.1.1.8).  Default
    #: ``"See RFC 5321"``.
    help_text: str = "See RFC 5321"

    def __attrs_post_init__(self) -> None:
        if self.bare_line_endings not in ("reject", "normalise"):
            raise LocalProtocolError("bare_line_endings must be 'reject' or 'normalise'")
        if self.require_starttls and not self.starttls:
            raise LocalProtocolError("require_starttls needs starttls=True")
        # The extension lines are validated once, here, not on every EHLO.
        Capabilities("localhost", "", self.extra_extensions)
        # RFC 5321 §4.1.1, §2.3.8: no CR, LF or NUL may reach the wire in a
        # text or name given here; refused now, not when a session sends it.
        Capabilities("localhost", "", [("AUTH", tuple(m.upper() for m in self.auth_mechanisms))])
        Reply(214, self.help_text)
        # RFC 8689 §2, RFC 3207 §4.2: what the core offers, and when, is
        # decided in offered() only; the extra_* options cannot override it.
        _refuse_managed(
            "extra_extensions", (k for k, _ in self.extra_extensions), MANAGED_EXTENSIONS
        )
        _refuse_managed(
            "extra_mail_parameters", self.extra_mail_parameters, MANAGED_MAIL_PARAMETERS
        )
        _refuse_managed(
            "extra_rcpt_parameters", self.extra_rcpt_parameters, MANAGED_RCPT_PARAMETERS
        )

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
