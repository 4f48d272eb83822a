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
from collections.abc import Callable
from typing import Final

import attrs

from . import _abnf
from ._errors import LocalProtocolError
from ._slots import slot_filler

__all__ = ["Address", "AddressError"]

# RFC 5321 §4.5.3.1.1-3
MAX_LOCAL_PART: Final = 64
MAX_DOMAIN: Final = 255
MAX_PATH: Final = 256

_ADL_RE: Final = re.compile(rf"@{_abnf.DOMAIN}(?:,@{_abnf.DOMAIN})*:")
_ADDRESS_LITERAL_RE: Final = re.compile(_abnf.ADDRESS_LITERAL)
_IPV6_CHARS_RE: Final = re.compile(r"[0-9A-Fa-f:.]+")
_IPV4_CHARS_RE: Final = re.compile(r"[0-9.]+")
_GENERAL_LITERAL_RE: Final = re.compile(r"([A-Za-z0-9-]*[A-Za-z0-9]):([\x21-\x5a\x5e-\x7e]+)")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_QUOTE_RE: Final = re.compile(r'(["\\])')
_UNQUOTE_RE: Final = re.compile(r"\\(.)")

# The fast path of Address.parse.  Most paths are a Dot-string at a Domain
# (RFC 5321 §4.1.2), ASCII or with RFC 6531 UTF-8, or at an IPv4 address
# literal (§4.1.3): one regex without backtracking reads those, where the
# general code needs a dozen steps.  Whatever it does not match, or does not
# match within the limits, goes to the general code, which alone gives the
# errors: the fast path only has to be right about what it accepts.
#
# The limits (§4.5.3.1): the local part, the text before the first "@" (a
# Dot-string holds none), within 64 octets; the text within _FAST_PATH_MAX
# octets, which keeps the path within 256 bare (two brackets added) or
# bracketed, and so the domain, shorter than the text, within 255.
_FAST_PATH_RE: Final = re.compile(
    rf"(<)?({_abnf.DOT_STRING_U_FAST})@({_abnf.DOMAIN_U_FAST}|{_abnf.IPV4_ADDRESS_LITERAL})(?(1)>)"
)
_FAST_PATH_MAX: Final = MAX_PATH - 2
_FAST_DOMAIN_RE: Final = re.compile(_abnf.DOMAIN_U_FAST)


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
        if not _IPV6_CHARS_RE.fullmatch(inner[5:]):
            raise AddressError(f"bad IPv6 address literal {literal!r}")
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            raise AddressError(f"bad IPv6 address literal {literal!r}") from None
        return
    if _IPV4_CHARS_RE.fullmatch(inner):
        parts = inner.split(".")
        # Snum = 1*3DIGIT, 0 through 255, and exactly four of them
        if len(parts) != 4 or not all(p and len(p) <= 3 and int(p) <= 255 for p in parts):
            raise AddressError(f"bad IPv4 address literal {literal!r}")
        return
    if not _GENERAL_LITERAL_RE.fullmatch(inner):
        raise AddressError(f"bad address literal {literal!r}")


def check_domain(domain: str, *, utf8: bool = True) -> None:
    """Raise AddressError unless ``domain`` is a Domain or address-literal."""
    # The common case, a Domain (RFC 5321 §4.1.2, RFC 6531 §3.3 with UTF-8)
    # within 255 octets (§4.5.3.1.2), in one regex; anything else, and every
    # error, takes the general path.
    if type(domain) is str and _FAST_DOMAIN_RE.fullmatch(domain):
        if domain.isascii():
            if len(domain) <= MAX_DOMAIN:
                return
        elif utf8 and len(domain.encode()) <= MAX_DOMAIN:
            return
    _check_domain_general(domain, utf8)


def _check_domain_general(domain: str, utf8: bool) -> None:
    if domain.startswith("["):
        if not _ADDRESS_LITERAL_RE.fullmatch(domain):
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
    return '"' + _QUOTE_RE.sub(r"\\\1", local) + '"'


def _unquote_local(text: str) -> str:
    if text.startswith('"'):
        return _UNQUOTE_RE.sub(r"\1", text[1:-1])
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
        # An empty local part is the quoted string "" (RFC 5321 §4.1.2:
        # Quoted-string = DQUOTE *QcontentSMTP DQUOTE), valid if unusual.
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
        return _trusted_address(cls, local_part, domain)

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
        # The common shapes (see _FAST_PATH_RE), and the null path of every
        # bounce; the type test keeps str subclasses, and anything that is no
        # str, to the general path.
        if type(text) is str:
            if cls is _Address:
                known = _KNOWN.get(text)
                if known is not None:
                    return known
            m = _FAST_PATH_RE.fullmatch(text)
            if m is None:
                if null and text in ("", "<>"):
                    return cls.null()
            else:
                _, local_part, domain = m.groups()
                if text.isascii():
                    fits = len(local_part) <= MAX_LOCAL_PART and len(text) <= _FAST_PATH_MAX
                    if fits and cls is _Address:
                        # what the flags would change is not ASCII, and
                        # not of this shape: the answer is the text's alone
                        address = _make_address(local_part, domain)
                        if len(_KNOWN) >= _KNOWN_MAX:
                            _KNOWN.clear()
                        _KNOWN[text] = address
                        return address
                else:
                    # RFC 6531 §3.3: UTF-8 only with SMTPUTF8; the grammar has
                    # no surrogate, so the text has a UTF-8 form to count
                    fits = (
                        utf8
                        and len(local_part.encode()) <= MAX_LOCAL_PART
                        and len(text.encode()) <= _FAST_PATH_MAX
                    )
                if fits:
                    return _trusted_address(cls, local_part, domain)
        return cls._parse_general(text, utf8, null, postmaster)

    @classmethod
    def _parse_general(cls, text: str, utf8: bool, null: bool, postmaster: bool) -> Address:
        """:meth:`parse` for every input: the grammar step by step.

        The fast path of :meth:`parse` must agree with it on every text
        (tests/test_address_fastpath.py checks that).
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
        # (an empty local part is "", RFC 5321 §4.1.2's Quoted-string with
        # no Qcontent: valid)
        local_part = _unquote_local(local_text)
        address = cls._trusted(local_part, domain)
        if not bracketed and _utf8_len(address.path()) > MAX_PATH:
            raise AddressError("path longer than 256 octets", too_long=True)
        return address


# Addresses the parser has validated are made without __init__ and its
# checks (_slots.slot_filler): Address's own filler, and one per subclass.
_Address: Final = Address
_make_address: Final[Callable[[str, str], Address]] = slot_filler(Address, "local_part", "domain")
_FILLERS: Final[dict[type[Address], Callable[[str, str], Address]]] = {}

# ASCII paths that the fast path accepted, and their Address (immutable, so
# shared): a server reads the same senders and recipients over and over
# (its own users', a relay's next hops), and the pattern costs about 4,000
# instructions per path in the compiled build, the look-up a few hundred.
# Only the text decides these answers (the flags of parse() concern the
# null path, Postmaster and non-ASCII text); bounded, emptied when full.
_KNOWN: Final[dict[str, Address]] = {}
_KNOWN_MAX: Final = 1024


def _trusted_address(cls: type[Address], local_part: str, domain: str) -> Address:
    """:meth:`Address._trusted`, for the parser's fast path as well."""
    if cls is _Address:
        return _make_address(local_part, domain)
    filler = _FILLERS.get(cls)
    if filler is None:
        filler = _FILLERS[cls] = slot_filler(cls, "local_part", "domain")
    return filler(local_part, domain)


def to_address(value: Address | str) -> Address:
    """Converter for event fields: accept an Address or a path / mailbox text."""
    if isinstance(value, Address):
        return value
    if isinstance(value, str):
        return Address.parse(value)
    raise TypeError(f"expected an Address or str, not {value!r}")
