"""Message tags: REQUIRETLS, ``TLS-Required: No``, or neither (RFC 8689 §3, §4.1, §4.3, §6).

A message carries one of three tags (:class:`TLSTag`).  The MAIL FROM parameter
``REQUIRETLS`` wins; without it, the one ``TLS-Required`` header field of the
header section decides (RFC 8689 §4.1 ¶2)::

    requiretls-field = "TLS-Required:" [FWS] "No" CRLF      ; RFC 8689 §3

Only the header section is read (:func:`header_section`), so a
``TLS-Required:`` line in the body never counts and a large body is never
scanned.  Field names compare case-insensitively (RFC 5322 §1.2.2) and so does
the literal ``"No"`` (RFC 5234 §2.3).  Folded values are unfolded (RFC 5322
§2.2.3); white space around the value is ignored, and so is the obsolete white
space before the colon (``obs-optional``, RFC 5322 §4.5.8).

Line ends, as the wire core sees them: a line ends at CRLF, or at a bare LF
(so that a header section read from a file with LF line ends works).  A bare
CR ends nothing: it is a character of its line, as it is for the wire core,
where only CRLF ends a line.  A ``TLS-Required: No`` followed by a bare CR is
therefore a field whose value is not ``No`` (no tag), and the parser, the
remover and :func:`set_tls_required_no` all see the same fields, so two
instances are always two.

Receiver choice (RFC 8689 leaves it open): a field with any other value, or
more than one instance of the field (§3 forbids it), is *no tag at all*, so the
recipient domain's policy still applies.  The reason is logged at WARNING level
on this module's logger and returned in :class:`TLSRequiredField`.
"""

from __future__ import annotations

import enum
import logging
import re

import attrs

__all__ = [
    "Origination",
    "TLSRequiredField",
    "TLSTag",
    "TagConflictError",
    "expand",
    "header_section",
    "header_section_end",
    "message_tag",
    "originate",
    "parse_tls_required",
    "remove_tls_required",
    "reoriginate",
    "set_tls_required_no",
]

logger = logging.getLogger(__name__)


class TLSTag(enum.Enum):
    """How a message must travel (RFC 8689 §4.1)."""

    #: MAIL FROM carried REQUIRETLS: every hop must meet §4.2.1.
    REQUIRETLS = "REQUIRETLS"
    #: ``TLS-Required: No``: recipient TLS policy is ignored (§3, §4.2.2).
    TLS_OPTIONAL = "TLS-Required: No"
    #: Neither: the MTA's own policy applies.
    DEFAULT = "default"

    @property
    def mail_parameter(self) -> bool:
        """True when the onward MAIL FROM must carry ``REQUIRETLS``."""
        return self is TLSTag.REQUIRETLS


class TagConflictError(ValueError):
    """Both REQUIRETLS and ``TLS-Required: No`` were asked for one message.

    RFC 8689 §4.3: an originator either requires TLS (the MAIL parameter) or
    says it is not required (the header); a message never carries both.
    """


# The header section (RFC 5322 §2.1, §2.2): lines that are header fields,
# field-name = 1*ftext (printable US-ASCII except ":", %d33-57 / %d59-126) then
# ":" (with the obsolete white space before it, obs-optional, §4.5.8), each
# followed by its folded continuation lines, which start with WSP (§2.2.3).
# It ends at the first line that is neither: the empty line of §2.1, or any
# other line, which is taken as the start of the body, as Postfix does.
# Possessive quantifiers: a failed line costs one pass, never backtracking.
_HEADER_FIELDS = re.compile(rb"(?:[!-9;-~]++[ \t]*+:[^\n]*+\n?+(?:[ \t][^\n]*+\n?+)*+)*+")
# The content of one line: anything but a line end.  A CR not before LF is
# content (only CRLF, or LF, ends a line).
_TEXT = rb"(?:[^\r\n]|\r(?!\n))*+"
# One field instance and its folded continuation lines (RFC 5322 §2.2.3).
# obs-optional = field-name *WSP ":" unstructured CRLF (RFC 5322 §4.5.8).
_FIELD = re.compile(
    rb"^tls-required[ \t]*+:(?P<value>" + _TEXT + rb"(?:\r?\n[ \t]" + _TEXT + rb")*+)(?:\r?\n|\Z)",
    re.IGNORECASE | re.MULTILINE,
)
_UNFOLD = re.compile(rb"\r?\n(?=[ \t])")


def header_section(message: bytes) -> bytes:
    """The header section of ``message``, up to and including its last field's line end.

    It ends at the first line that is not a header field (``name:``) nor the
    continuation of one (RFC 5322 §2.2): normally the empty line that
    separates it from the body (§2.1), but also a line of body text in a
    message without that empty line, or a malformed line; everything from
    there on is body, as Postfix reads it.  So a header-only view (a
    REQUIRETLS report, RFC 8689 §5) never holds body text.  A message that
    starts with an empty line, or with a continuation line, has an empty
    header section.
    """
    return message[: header_section_end(message)]


def header_section_end(message: bytes | bytearray) -> int:
    """Where :func:`header_section` ends: the offset of the first line that
    is neither a field nor a continuation (or of the end of ``message``)."""
    match = _HEADER_FIELDS.match(message)
    assert match is not None  # the pattern matches the empty string
    return match.end()


@attrs.frozen(slots=True)
class TLSRequiredField:
    """What the ``TLS-Required`` field(s) of a header section say.

    ``values`` are the unfolded, stripped values of every instance, in order.
    ``tls_optional`` is True only for exactly one instance whose value is
    ``No`` (any case).  ``problem`` says why the field was ignored ("" when it
    was absent or valid).
    """

    values: tuple[str, ...]
    tls_optional: bool
    problem: str = ""

    @property
    def present(self) -> bool:
        """True when at least one instance was found."""
        return bool(self.values)


def parse_tls_required(message: bytes) -> TLSRequiredField:
    """Read the ``TLS-Required`` field of ``message`` (or of its header section).

    Only the header section is scanned (RFC 8689 §4.1 ¶2 speaks of the
    "message header").  An invalid value or duplicate instances give
    ``tls_optional=False`` with a ``problem`` and a WARNING log record.
    """
    head = header_section(message)
    values = tuple(
        _UNFOLD.sub(b"", m["value"]).strip(b" \t").decode("latin-1") for m in _FIELD.finditer(head)
    )
    if not values:
        return TLSRequiredField((), False)
    if len(values) > 1:
        # RFC 8689 §3: "More than one instance ... MUST NOT appear"; our choice is
        # to honour none of them, so the recipient's policy still protects it.
        problem = f"{len(values)} TLS-Required fields (RFC 8689 §3 allows one); ignored"
        logger.warning("TLS-Required ignored: %s", problem)
        return TLSRequiredField(values, False, problem)
    if values[0].lower() != "no":
        problem = f"TLS-Required value {values[0]!r} is not 'No' (RFC 8689 §3); ignored"
        logger.warning("TLS-Required ignored: %s", problem)
        return TLSRequiredField(values, False, problem)
    return TLSRequiredField(values, True)


def message_tag(requiretls_param: bool, header_section: bytes) -> TLSTag:
    """The tag of a received message (RFC 8689 §4.1).

    ``requiretls_param`` is whether MAIL FROM carried ``REQUIRETLS``; it wins
    and the header is then not even read (§4.1 ¶2: the field "MUST be
    ignored").  ``header_section`` may be the whole message: only its header
    section is scanned.
    """
    if requiretls_param:
        return TLSTag.REQUIRETLS
    if parse_tls_required(header_section).tls_optional:
        return TLSTag.TLS_OPTIONAL
    return TLSTag.DEFAULT


def _line_end(head: bytes) -> bytes:
    i = head.find(b"\n")
    return b"\r\n" if i <= 0 or head[i - 1 : i] == b"\r" else b"\n"


def _strip_fields(message: bytes) -> tuple[bytes, bytes, bytes]:
    """Split ``message`` into (header without TLS-Required fields, line end, rest)."""
    head = header_section(message)
    rest = message[len(head) :]
    return _FIELD.sub(b"", head), _line_end(head or rest or b"\r\n"), rest


def set_tls_required_no(message: bytes, *, requiretls: bool = False) -> bytes:
    """Return ``message`` with exactly one ``TLS-Required: No`` field, first in its header.

    For an originator that decides TLS is not required (RFC 8689 §4.3 ¶2:
    the sender "MUST include the TLS-Required header field").  Existing
    instances, valid or not, are removed so exactly one remains (§3).  The
    new field is one line, ``TLS-Required: No`` and a line end.  Pass
    ``requiretls=True`` when the message is also being sent with REQUIRETLS:
    that combination is refused with :class:`TagConflictError`.

    A message that starts with a continuation line (a line beginning with
    white space, which RFC 5322 §2.2.3 allows only after a field) is refused
    with :class:`ValueError`: any field put first would absorb that line and
    stop being ``No``, and nothing can be put before it without rewriting
    the message.
    """
    if requiretls:
        raise TagConflictError("a message sent with REQUIRETLS cannot also be 'TLS-Required: No'")
    head, eol, rest = _strip_fields(message)
    if not head and rest.startswith((b" ", b"\t")):
        # Only a message that starts with one gets here: after a field, a
        # line starting with WSP is that field's continuation (header_section).
        raise ValueError(
            "the message starts with a continuation line (RFC 5322 §2.2.3), which a "
            "TLS-Required field put first would absorb"
        )
    return b"TLS-Required: No" + eol + head + rest


def remove_tls_required(message: bytes) -> bytes:
    """Return ``message`` without any ``TLS-Required`` field (body untouched)."""
    head, _, rest = _strip_fields(message)
    return head + rest


@attrs.frozen(slots=True)
class Origination:
    """A message ready for its first hop: the bytes and whether MAIL FROM carries REQUIRETLS."""

    message: bytes
    requiretls: bool


def originate(message: bytes, tag: TLSTag) -> Origination:
    """Prepare a new message so that its tag is exactly ``tag`` (RFC 8689 §4.3).

    REQUIRETLS: the MAIL parameter, and no ``TLS-Required`` field (never both).
    TLS_OPTIONAL: exactly one ``TLS-Required: No`` field, no parameter
    (:class:`ValueError` for a message that starts with a continuation line,
    see :func:`set_tls_required_no`).
    DEFAULT: neither; a stray ``TLS-Required`` field is removed, since any
    valid one would turn the message into TLS_OPTIONAL.
    """
    if tag is TLSTag.TLS_OPTIONAL:
        return Origination(set_tls_required_no(message), False)
    return Origination(remove_tls_required(message), tag is TLSTag.REQUIRETLS)


def expand(tag: TLSTag, n: int) -> tuple[TLSTag, ...]:
    """The tags of the ``n`` copies of an aliased or expanded message.

    RFC 8689 §4.1 ¶3: "all instances of the message MUST be tagged in the same
    manner", so every copy gets ``tag``.
    """
    if n < 0:
        raise ValueError(f"number of copies must be >= 0, not {n}")
    return (tag,) * n


def reoriginate(tag: TLSTag, *, drop: bool = False, force_requiretls: bool = False) -> TLSTag:
    """The tag of a message a mediator originates from one tagged ``tag`` (RFC 8689 §6).

    By default the tag carries over, both REQUIRETLS and ``TLS-Required: No``
    (§6 ¶2, "to the extent feasible").  Overrides, each a deliberate choice of
    the mediator:

    - ``drop=True``: the new message is untagged.  For list expanders that
      accept that some recipients cannot be reached with REQUIRETLS; §6 ¶2
      names this limitation.
    - ``force_requiretls=True``: require TLS for every reoriginated message
      that is not ``TLS-Required: No`` (§6 ¶3, for forwarding to a known address).
    """
    if drop and force_requiretls:
        raise ValueError("drop and force_requiretls contradict each other")
    if drop:
        return TLSTag.DEFAULT
    if force_requiretls and tag is TLSTag.DEFAULT:
        return TLSTag.REQUIRETLS
    return tag
