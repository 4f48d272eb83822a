"""Address: a parsed SMTP path (RFC 5321 §4.1.2), with RFC 6531 UTF-8 forms.

::

    Reverse-path = Path / "<>"
    Forward-path = Path
    Path         = "<" [ A-d-l ":" ] Mailbox ">"
    Mailbox      = Local-part "@" ( Domain / address-literal )
    Local-part   = Dot-string / Quoted-string

Source routes (``A-d-l``) are accepted and dropped (RFC 5321 §4.1.2 and
Appendix C: "SHOULD NOT be used", servers "MUST accept" and may ignore them).
The local part keeps its case (RFC 5321 §2.4); it is stored unquoted and
quoted again on output only when it is not a Dot-string.
"""

from __future__ import annotations

import ipaddress
import re

import attrs

from . import _abnf
from ._errors import LocalProtocolError

__all__ = ["Address", "AddressError"]

# RFC 5321 §4.5.3.1.1-3
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256

_ADL_RE = re.compile(rf"@{_abnf.DOMAIN}(?:,@{_abnf.DOMAIN})*:")
_GENERAL_LITERAL_RE = re.compile(r"([A-Za-z0-9-]*[A-Za-z0-9]):([\x21-\x5a\x5e-\x7e]+)")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class AddressError(LocalProtocolError):
    """An address that breaks the grammar or a length limit.

    ``too_long`` tells a length violation (reply "501 Path too long",
    RFC 5321 §4.5.3.1.9) from a syntax error.
    """

    def __init__(self, msg: str, *, too_long: bool = False) -> None:
        super().__init__(msg)
        self.too_long = too_long


def _utf8_len(s: str) -> int:
    # ASCII text is one octet a character: no need to encode it
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def _check_address_literal(literal: str) -> None:
    inner = literal[1:-1]
    if inner[:5].lower() == "ipv6:":
        # RFC 5321 §4.1.3 IPv6-addr is hex, colons and a dotted quad: no zone
        # ID ("%eth0"), which ipaddress would accept
        if not re.fullmatch(r"[0-9A-Fa-f:.]+", inner[5:]):
            raise AddressError(f"bad IPv6 address literal {literal!r}")
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            raise AddressError(f"bad IPv6 address literal {literal!r}") from None
        return
    if re.fullmatch(r"[0-9.]+", inner):
        parts = inner.split(".")
        # Snum = 1*3DIGIT, 0 through 255, and exactly four of them
        if len(parts) != 4 or not all(p and len(p) <= 3 and int(p) <= 255 for p in parts):
            raise AddressError(f"bad IPv4 address literal {literal!r}")
        return
    if not _GENERAL_LITERAL_RE.fullmatch(inner):
        raise AddressError(f"bad address literal {literal!r}")


def check_domain(domain: str, *, utf8: bool = True) -> None:
    """Raise AddressError unless ``domain`` is a Domain or address-literal."""
    if domain.startswith("["):
        if not re.fullmatch(_abnf.ADDRESS_LITERAL, domain):
            raise AddressError(f"bad address literal {domain!r}")
        _check_address_literal(domain)
        return
    pattern = _abnf.re_domain_u if utf8 else _abnf.re_domain
    if not pattern.fullmatch(domain):
        raise AddressError(f"bad domain {domain!r}")
    if _utf8_len(domain) > MAX_DOMAIN:
        raise AddressError("domain longer than 255 octets", too_long=True)


def _quote_local(local: str) -> str:
    if _abnf.re_dot_string_u.fullmatch(local):
        return local
    return '"' + re.sub(r'(["\\])', r"\\\1", local) + '"'


def _unquote_local(text: str) -> str:
    if text.startswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


@attrs.frozen(slots=True)
class Address:
    """A mailbox (``local_part@domain``), the null path, or ``<Postmaster>``.

    ``Address.null()`` is the null reverse path ``<>`` (both fields empty);
    the special recipient ``<Postmaster>`` (RFC 5321 §4.1.1.3) has an empty
    domain.  ``str(address)`` is the mailbox; :meth:`path` adds the brackets.
    """

    local_part: str = ""
    domain: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.local_part and not self.domain:
            return
        if not self.domain:
            if self.local_part.lower() != "postmaster":
                raise AddressError("an address needs a domain (only <Postmaster> has none)")
            return
        if _CONTROL_RE.search(self.local_part) or _CONTROL_RE.search(self.domain):
            raise AddressError("control character in address")
        if not self.local_part:
            raise AddressError("empty local part")
        check_domain(self.domain)
        quoted = _quote_local(self.local_part)
        if quoted.startswith('"') and not _abnf.re_quoted_string_u.fullmatch(quoted):
            raise AddressError(f"local part cannot be written in SMTP: {self.local_part!r}")
        if _utf8_len(quoted) > MAX_LOCAL_PART:
            raise AddressError("local part longer than 64 octets", too_long=True)
        if _utf8_len(self.path()) > MAX_PATH:
            raise AddressError("path longer than 256 octets", too_long=True)

    @classmethod
    def _trusted(cls, local_part: str, domain: str) -> Address:
        """An Address from parts :meth:`parse` has already validated.

        Only the parser uses it: its grammar and length checks imply every
        check of ``__attrs_post_init__``, so running them again would only
        repeat them (RFC 5321 §4.1.2 and §4.5.3.1 are kept once, there).
        """
        self = object.__new__(cls)
        object.__setattr__(self, "local_part", local_part)
        object.__setattr__(self, "domain", domain)
        return self

    @classmethod
    def null(cls) -> Address:
        """The null reverse path ``<>`` (RFC 5321 §4.5.5)."""
        return cls._trusted("", "")

    @property
    def is_null(self) -> bool:
        """True for ``<>``."""
        return not self.local_part and not self.domain

    @property
    def is_postmaster(self) -> bool:
        """True for the domain-less ``<Postmaster>`` recipient."""
        return not self.domain and self.local_part.lower() == "postmaster"

    @property
    def is_ascii(self) -> bool:
        """False when the address needs SMTPUTF8 (RFC 6531)."""
        return (self.local_part + self.domain).isascii()

    def __str__(self) -> str:
        if self.is_null:
            return ""
        if not self.domain:
            return self.local_part
        return f"{_quote_local(self.local_part)}@{self.domain}"

    def path(self) -> str:
        """The path as it appears on the wire: ``<local@domain>`` or ``<>``."""
        return f"<{self}>"

    @classmethod
    def parse(
        cls, text: str, *, utf8: bool = True, null: bool = True, postmaster: bool = True
    ) -> Address:
        """Parse a path (``<a@b>``) or a bare mailbox (``a@b``).

        ``utf8`` admits RFC 6531 forms, ``null`` admits ``<>`` (reverse paths),
        ``postmaster`` admits ``<Postmaster>`` (forward paths).  Raises
        AddressError (a LocalProtocolError) on anything else.
        """
        if text in ("", "<>"):
            if not null:
                raise AddressError("the null path is not allowed here")
            return cls.null()
        bracketed = text.startswith("<")
        if bracketed:
            if not text.endswith(">"):
                raise AddressError(f"unterminated path {text!r}")
            if _utf8_len(text) > MAX_PATH:
                raise AddressError("path longer than 256 octets", too_long=True)
            inner = text[1:-1]
            m = _ADL_RE.match(inner)
            if m:
                inner = inner[m.end() :]  # source route: accepted and dropped
        else:
            inner = text
        if postmaster and inner.lower() == "postmaster":
            return cls._trusted(inner, "")
        if not utf8 and not inner.isascii():
            raise AddressError("non-ASCII address without SMTPUTF8")
        local_re = _abnf.re_quoted_string_u if inner.startswith('"') else _abnf.re_dot_string_u
        m = local_re.match(inner)
        if m is None or inner[m.end() : m.end() + 1] != "@":
            raise AddressError(f"bad mailbox {text!r}")
        local_text = inner[: m.end()]
        if _utf8_len(local_text) > MAX_LOCAL_PART:
            raise AddressError("local part longer than 64 octets", too_long=True)
        domain = inner[m.end() + 1 :]
        check_domain(domain, utf8=utf8)
        # What the grammar above leaves to __attrs_post_init__, checked here
        # in its order so that the errors are the same: the grammar admits
        # no control character, and the local part, written back with
        # _quote_local, is never longer than as given (only needless quotes
        # and backslashes go), so its own limit and, for a bracketed path,
        # the path's limit are kept already.
        local_part = _unquote_local(local_text)
        if not local_part:
            raise AddressError("empty local part")
        address = cls._trusted(local_part, domain)
        if not bracketed and _utf8_len(address.path()) > MAX_PATH:
            raise AddressError("path longer than 256 octets", too_long=True)
        return address


def to_address(value: Address | str) -> Address:
    """Converter for event fields: accept an Address or a path / mailbox text."""
    if isinstance(value, Address):
        return value
    if isinstance(value, str):
        return Address.parse(value)
    raise TypeError(f"expected an Address or str, not {value!r}")
