"""Capabilities: the service extensions of an EHLO reply (RFC 5321 §4.1.1.1).

::

    ehlo-ok-rsp  = ( "250" SP Domain [ SP ehlo-greet ] CRLF )
                 / ( "250-" Domain [ SP ehlo-greet ] CRLF
                     *( "250-" ehlo-line CRLF )
                     "250" SP ehlo-line CRLF )
    ehlo-line    = ehlo-keyword *( SP ehlo-param )
    ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    ehlo-param   = 1*(%d33-126)

Keywords compare case-insensitively (§2.4).  Lines are kept as they were sent,
so an unknown extension (or a peer's odd spelling) round-trips untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

import attrs

from ._errors import LocalProtocolError
from ._reply import Reply

__all__ = ["Capabilities"]

_PARAM_RE = re.compile(r"[\x21-\x7e]+")


def _to_entries(
    value: Iterable[tuple[str, Sequence[str]] | str],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out = []
    for item in value:
        if isinstance(item, str):
            keyword, *params = item.split(" ")
        else:
            keyword, params = item[0], list(item[1])
        if not keyword or not _PARAM_RE.fullmatch(keyword):
            raise LocalProtocolError(f"bad EHLO keyword {keyword!r}")
        for p in params:
            if not isinstance(p, str) or not _PARAM_RE.fullmatch(p):
                raise LocalProtocolError(f"bad EHLO parameter {p!r} for {keyword}")
        out.append((keyword, tuple(params)))
    return tuple(out)


@attrs.frozen(slots=True)
class Capabilities:
    """What a server offers: its domain, greeting text and extension lines.

    Look-ups (``"SIZE" in caps``, :meth:`params`) ignore case; iterating
    gives the keywords, upper-cased.
    """

    #: The server's name, the first word of the EHLO reply (no spaces).
    domain: str
    #: The rest of the first line of the EHLO reply; ``""`` for none.
    greeting: str = ""
    #: The extension lines as ``(keyword, params)`` pairs, in the order
    #: offered, kept as sent: ``(("SIZE", ("1000000",)), ("PIPELINING", ()))``.
    #: Also accepted as text lines (``"SIZE 1000000"``).  Keywords and
    #: parameters are printable ASCII without spaces.
    entries: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(
        default=(), converter=_to_entries
    )

    def __attrs_post_init__(self) -> None:
        if not self.domain or not _PARAM_RE.fullmatch(self.domain):
            raise LocalProtocolError(f"bad EHLO domain {self.domain!r}")
        # The greeting is free text on the first line; Reply's own checks refuse
        # control characters (a list, so that a "\n" is refused, not split).
        Reply(250, [f"{self.domain} {self.greeting}"])

    # -- look-ups ----------------------------------------------------------

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and self.params(keyword) is not None

    def __iter__(self) -> Iterator[str]:
        """The keywords, upper-cased, in the order offered."""
        return (k.upper() for k, _ in self.entries)

    def params(self, keyword: str) -> tuple[str, ...] | None:
        """The parameters of ``keyword``, or ``None`` when it was not offered."""
        key = keyword.upper()
        for k, p in self.entries:
            if k.upper() == key:
                return p
        return None

    @property
    def size(self) -> int | None:
        """The SIZE limit in octets (RFC 1870 §4); 0 means "no fixed limit".

        ``None`` when SIZE was not offered, or its parameter is not a number.
        """
        p = self.params("SIZE")
        if p is None:
            return None
        if not p:
            return 0
        return int(p[0]) if p[0].isdigit() else None

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """The SASL mechanisms listed with AUTH (RFC 4954 §3), upper-cased."""
        return frozenset(m.upper() for m in self.params("AUTH") or ())

    # -- wire format -------------------------------------------------------

    def to_reply(self) -> Reply:
        """The 250 reply that offers these capabilities."""
        first = f"{self.domain} {self.greeting}" if self.greeting else self.domain
        return Reply(250, [first, *(" ".join((k, *p)) for k, p in self.entries)])

    @classmethod
    def from_reply(cls, reply: Reply) -> Capabilities:
        """Read the capabilities out of a positive EHLO/LHLO reply."""
        if not reply.is_positive:
            raise LocalProtocolError(f"not a positive EHLO reply: {reply.code}")
        lines = list(reply.lines)
        if reply.enhanced is not None:
            # A server that puts enhanced codes on EHLO lines is unusual but
            # legal; the keyword lines then started with the code.
            lines = [str(reply.enhanced) + (" " + ln if ln else "") for ln in lines]
        domain, _, greeting = lines[0].partition(" ")
        entries = []
        for line in lines[1:]:
            words = line.split()
            if words:
                entries.append((words[0], tuple(words[1:])))
        return cls(domain or "unknown", greeting, entries)
