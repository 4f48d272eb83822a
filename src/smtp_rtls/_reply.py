"""Reply and EnhancedStatus: SMTP replies and RFC 3463 enhanced status codes.

A reply is formatted and parsed per RFC 5321 §4.2 and §4.2.1 (multi-line replies
repeat the code, with ``-`` on every line but the last).  When an enhanced status
code is present it leads the text of every line (RFC 2034 §4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = ["EnhancedStatus", "Reply"]

# RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including the code and CRLF.
MAX_REPLY_LINE = 512

# RFC 3463 §2: status-code = class "." subject "." detail;
# class = "2" / "4" / "5"; subject = 1*3digit; detail = 1*3digit
_ENHANCED_RE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")
# RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39
_CODE_RE = re.compile(rb"[2-5][0-5][0-9]")
# Anything below SP and DEL may never reach the wire inside a field: a CR or LF
# in a reply text would let an application's data forge a second reply.
# RFC 5321 §4.2 textstring = 1*(%d09 / %d32-126): HT is the one control allowed.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _check_text(value: str, what: str) -> None:
    if _CONTROL_RE.search(value):
        raise LocalProtocolError(f"control character in {what}: {value!r}")


@attrs.frozen(slots=True, order=True)
class EnhancedStatus:
    """An enhanced mail system status code, ``class.subject.detail`` (RFC 3463 §2).

    ``EnhancedStatus(5, 7, 30)`` prints as ``5.7.30``; :meth:`parse` reads that
    text back.  Instances order and compare as tuples.
    """

    #: The class: ``2`` (success), ``4`` (persistent transient failure) or
    #: ``5`` (permanent failure); it must agree with the first digit of the
    #: reply code it goes with.
    klass: int
    #: The subject, ``0`` to ``999`` (RFC 3463 §2: 0 other, 1 addressing,
    #: 2 mailbox, 3 mail system, 4 network and routing, 5 mail delivery
    #: protocol, 6 message content, 7 security or policy).
    subject: int
    #: The detail, ``0`` to ``999`` (its meaning depends on the subject;
    #: RFC 3463 §3, RFC 5248).
    detail: int

    def __attrs_post_init__(self) -> None:
        if self.klass not in (2, 4, 5):
            raise LocalProtocolError(f"enhanced status class must be 2, 4 or 5, not {self.klass}")
        for name, value in (("subject", self.subject), ("detail", self.detail)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 999:
                raise LocalProtocolError(f"enhanced status {name} out of range: {value!r}")

    @classmethod
    def parse(cls, text: str) -> EnhancedStatus:
        """Parse ``"5.7.30"``; raise LocalProtocolError when it is not one."""
        m = _ENHANCED_RE.fullmatch(text)
        if m is None:
            raise LocalProtocolError(f"not an enhanced status code: {text!r}")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


# Enhanced codes given as text, parsed: an application writes the same
# few ("2.0.0", "2.1.5") on every reply, and an EnhancedStatus is immutable.
# Bounded: only texts that parsed are kept, and there are few of those.
_PARSED_ENHANCED: dict[str, EnhancedStatus] = {}


def _to_enhanced(value: EnhancedStatus | str | None) -> EnhancedStatus | None:
    if value is None or isinstance(value, EnhancedStatus):
        return value
    if isinstance(value, str):
        status = _PARSED_ENHANCED.get(value)
        if status is None:
            status = EnhancedStatus.parse(value)
            if len(_PARSED_ENHANCED) < 4096:
                _PARSED_ENHANCED[value] = status
        return status
    raise TypeError(f"enhanced must be an EnhancedStatus, a str or None, not {value!r}")


def _to_lines(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        lines: tuple[str, ...] = tuple(value.split("\n")) if "\n" in value else (value,)
        # A str with embedded newlines is the caller's multi-line text; CR is
        # never a separator and is refused below.
    else:
        lines = tuple(value)
    if not lines:
        lines = ("",)
    for line in lines:
        if not isinstance(line, str):
            raise TypeError(f"reply lines must be str, not {line!r}")
    return lines


@attrs.frozen(slots=True)
class Reply:
    """An SMTP reply: a three-digit ``code``, an optional ``enhanced`` status and
    one or more text ``lines`` (RFC 5321 §4.2).

    ``Reply(250, "OK", enhanced="2.1.0")`` formats as ``250 2.1.0 OK``.  A text
    with ``"\\n"`` in it, or a sequence of strings, makes a multi-line reply.

    Every line fits in 512 octets with its code and CRLF
    (RFC 5321 §4.5.3.1.5), and no line holds a control character but HT.
    """

    #: The three-digit reply code: ``200`` to ``559``, first digit 2 to 5,
    #: second 0 to 5 (RFC 5321 §4.2).
    code: int
    #: The text lines, at least one (``("",)`` for no text).  Given as one
    #: ``str`` (split at ``"\n"``) or as a sequence of ``str``.
    lines: tuple[str, ...] = attrs.field(default=("",), converter=_to_lines)
    #: The enhanced status code (RFC 2034, RFC 3463), written at the start of
    #: every line; given as an :class:`EnhancedStatus` or its text
    #: (``"2.1.0"``); ``None`` for none.  Its class must match the first
    #: digit of :attr:`code`.
    enhanced: EnhancedStatus | None = attrs.field(default=None, converter=_to_enhanced)
    #: Filled in by :class:`ClientConnection` with the command the reply
    #: answers: ``"GREETING"``, ``"EHLO"``, ``"LHLO"``, ``"HELO"``,
    #: ``"STARTTLS"``, ``"AUTH"``, ``"MAIL"``, ``"RCPT"``, ``"DATA"`` (the
    #: 354), ``"EOM"`` (the reply after the content), ``"BDAT"``,
    #: ``"RSET"``, ``"NOOP"``, ``"VRFY"``, ``"EXPN"``, ``"HELP"``,
    #: ``"QUIT"``; ``None`` otherwise.  Not part of the wire format, and
    #: ignored by ``==``.
    command: str | None = attrs.field(default=None, eq=False, kw_only=True)
    # The wire form, made by the first format() and kept: a reply is
    # immutable, and one sent many times (250 OK) is formatted once.
    _wire: bytes | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        code = self.code
        if (
            (type(code) is not int and (not isinstance(code, int) or isinstance(code, bool)))
            # RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39
            or not 200 <= code <= 559
            or code % 100 > 59
        ):
            raise LocalProtocolError(f"not an SMTP reply code: {self.code!r}")
        if self.enhanced is not None and self.enhanced.klass != self.code // 100:
            raise LocalProtocolError(
                f"enhanced status {self.enhanced} does not match reply code {self.code}"
            )
        if self.command is not None:
            _check_text(self.command, "command")
        prefix = 4 + (len(str(self.enhanced)) + 1 if self.enhanced is not None else 0)
        for line in self.lines:
            if line.isascii() and line.isprintable():
                # the usual text: no control character at all, one octet
                # per character
                if prefix + len(line) + 2 > MAX_REPLY_LINE:
                    raise LocalProtocolError(
                        f"reply line longer than {MAX_REPLY_LINE} octets (RFC 5321 §4.5.3.1.5)"
                    )
                continue
            _check_text(line, "reply text")
            try:
                # surrogateescape keeps a peer's raw non-UTF-8 octets; any
                # other lone surrogate has no wire form at all
                octets = len(line.encode("utf-8", "surrogateescape"))
            except UnicodeEncodeError:
                raise LocalProtocolError(f"reply text cannot be encoded: {line!r}") from None
            if prefix + octets + 2 > MAX_REPLY_LINE:
                raise LocalProtocolError(
                    f"reply line longer than {MAX_REPLY_LINE} octets (RFC 5321 §4.5.3.1.5)"
                )

    # -- convenience -------------------------------------------------------

    @property
    def text(self) -> str:
        """All text lines joined with ``"\\n"``."""
        return "\n".join(self.lines)

    @property
    def is_positive(self) -> bool:
        """2xx: the command was accepted."""
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3xx: more is expected (354 after DATA, 334 during AUTH)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: try again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: do not try again as is."""
        return self.code >= 500

    # -- wire format -------------------------------------------------------

    def format(self) -> bytes:
        """The reply as it goes on the wire, CRLF-terminated lines."""
        wire = self._wire
        if wire is None:
            wire = self._format()
            object.__setattr__(self, "_wire", wire)
        return wire

    def _format(self) -> bytes:
        code = str(self.code)
        status = f"{self.enhanced} " if self.enhanced is not None else ""
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            text = f"{status}{line}"
            if i == last and not text and self.code != 334:
                # RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF; but RFC
                # 4954 §4 writes an empty challenge "334" SP CRLF, and some
                # clients wait for that space.
                out.append(f"{code}\r\n")
            else:
                out.append(f"{code}{sep}{text}\r\n")
        return "".join(out).encode("utf-8", "surrogateescape")

    @classmethod
    def parse(cls, data: bytes) -> Reply:
        """Parse one complete reply (all its lines, CRLF-terminated).

        Raises RemoteProtocolError when ``data`` is not exactly one reply.
        """
        if not data.endswith(b"\r\n"):
            raise RemoteProtocolError("reply does not end with CRLF")
        raw_lines = data[:-2].split(b"\r\n")
        return cls.from_lines(raw_lines)

    @classmethod
    def from_line(cls, raw: bytes) -> Reply:
        """:meth:`from_lines` for a one-line reply, each check done once.

        The usual reply (``250 2.1.0 Ok``: ASCII, printable, not too long)
        is checked in one pass, once per distinct line (the last 512 are
        kept), and built without the constructor's checks, which that pass
        already made; anything else takes :meth:`from_lines`, with the same
        result and the same errors.  Each call returns a new Reply.
        """
        if cls is not Reply or type(raw) is not bytes:
            # (a bytearray is never kept: it can change after the call)
            return cls.from_lines((raw,))
        # The client core's reader builds them (and, in a compiled build,
        # without a Python call); imported here because _readers imports
        # this module.
        from ._readers import reply_from_line

        return reply_from_line(raw)

    @classmethod
    def from_lines(cls, raw_lines: Sequence[bytes]) -> Reply:
        """Build a reply from its wire lines, without their CRLF."""
        if not raw_lines:
            raise RemoteProtocolError("empty reply")
        code: bytes | None = None
        texts: list[str] = []
        last = len(raw_lines) - 1
        for i, raw in enumerate(raw_lines):
            this_code, is_last, text = parse_reply_line(raw)
            if code is None:
                code = this_code
            elif this_code != code:
                raise RemoteProtocolError("reply code changes inside a multi-line reply")
            if is_last != (i == last):
                raise RemoteProtocolError("multi-line reply continuation markers out of order")
            texts.append(text)
        assert code is not None
        icode = int(code)
        enhanced: EnhancedStatus | None = None
        # RFC 2034 §4 puts the status code at the start of each line; take it
        # as the reply's enhanced status only when every line agrees.
        candidates = [_ENHANCED_RE.match(t) for t in texts]
        if all(m is not None for m in candidates):
            first = candidates[0]
            assert first is not None
            tokens = {m[0] for m in candidates if m is not None}
            token = first[0]
            if (
                len(tokens) == 1
                and int(token[0]) == icode // 100
                and all(t == token or t[len(token)] == " " for t in texts)
            ):
                enhanced = EnhancedStatus.parse(token)
                texts = [t[len(token) + 1 :] for t in texts]
        try:
            return cls(icode, tuple(texts), enhanced)
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"malformed reply: {exc}") from None


def parse_one_line(raw: bytes) -> tuple[int, tuple[str], EnhancedStatus | None] | None:
    """The code, lines and enhanced status of the usual one-line reply
    (ASCII, printable, within the limit), checked in one pass; None for
    anything else, which Reply.from_lines reads with every check (for
    :func:`smtp_rtls._readers.reply_from_line`)."""
    # RFC 5321 §4.5.3.1.5 (the line limit), §4.2 (Reply-code [ SP
    # textstring ]: the code's digits, a space or nothing after them)
    if len(raw) + 2 > MAX_REPLY_LINE or raw[3:4] not in (b" ", b"") or not raw.isascii():
        return None
    text = raw[4:].decode("ascii")
    # isprintable(): no control character, not even HT (which from_lines allows)
    if not text.isprintable() or not _CODE_RE.fullmatch(raw, 0, 3):
        return None
    code = int(raw[:3])
    enhanced = None
    m = _ENHANCED_RE.match(text)
    if m is not None:
        # RFC 2034 §4, as from_lines reads it: the status, of the
        # code's class, then a space or the end of the line
        token = m[0]
        ends = len(text) == len(token) or text[len(token)] == " "
        if ends and int(token[0]) == code // 100:
            enhanced = _to_enhanced(token)
            text = text[len(token) + 1 :]
    return code, (text,), enhanced


def parse_reply_line(raw: bytes) -> tuple[bytes, bool, str]:
    """Split one reply line (no CRLF) into (code, is_last_line, text).

    RFC 5321 §4.2: ``Reply-code [ SP textstring ]`` for the last line,
    ``Reply-code "-" [ textstring ]`` for the others.
    """
    if len(raw) + 2 > MAX_REPLY_LINE:
        raise RemoteProtocolError("reply line too long (RFC 5321 §4.5.3.1.5)")
    code = raw[:3]
    if not _CODE_RE.fullmatch(code):
        raise RemoteProtocolError(f"bad reply code in {raw[:20]!r}")
    sep = raw[3:4]
    if sep == b"-":
        is_last = False
    elif sep in (b" ", b""):
        is_last = True
    else:
        raise RemoteProtocolError(f"bad reply line {raw[:20]!r}")
    text = raw[4:].decode("utf-8", "surrogateescape")
    if _CONTROL_RE.search(text):
        raise RemoteProtocolError("control character in reply text")
    return code, is_last, text
