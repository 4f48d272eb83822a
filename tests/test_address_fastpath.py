"""The fast paths of Address.parse, check_domain and parse_params against the
general code they short-cut: the same value, or the same error (type, message
and ``too_long``), for every input.

A fast path only ever accepts; whatever it does not take goes to the general
code, which alone refuses.  What must hold is that anything a fast path
accepts, the general code accepts with the same value.  The inputs are valid
paths of every shape (RFC 5321 §4.1.2 and §4.1.3, RFC 6531 §3.3), paths near
the limits of RFC 5321 §4.5.3.1, and texts one to three mutations away from
them: the near misses a fast path is most likely to let through.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_rtls import Address, _address
from smtp_rtls._address import _check_domain_general, check_domain
from smtp_rtls._params import _parse_params_general, format_params, parse_params
from smtp_rtls.testing import strategies as sst

# Characters that change what a path or a parameter list is: the grammar's
# delimiters, controls, non-ASCII of two, three and four octets, C1 controls
# and spaces, lone surrogates (invalid UTF-8 as the server decodes it, with
# surrogateescape), and non-ASCII whose case mappings are ASCII.
_TRICKY = [
    *'.-@<>"\\ []:,;=+_!#~',
    "\x00",
    "\t",
    "\r",
    "\n",
    "\x1f",
    "\x7f",
    "\x80",
    "\x85",
    "\xa0",
    "é",
    "ü",
    "\u3000",
    "用",
    "\U0001f600",
    "\udcff",
    "\ud800",
    "İ",
    "\u212a",  # KELVIN SIGN, lower() is "k"
    "ſ",  # LATIN SMALL LETTER LONG S, upper() is "S"
]
# The delimiters on their own too: a hyphen or a dot in the wrong place is the
# likeliest near miss.
_tricky_chars = st.one_of(st.sampled_from(".-@= "), st.sampled_from(_TRICKY), st.characters())
# Pieces that cross a limit when put in a label or a local part: 63 octets is
# the most a DNS label holds, 64 the most a local part holds (§4.5.3.1.1).
_LONG_PIECES = ["a" * 63, "a" * 64, "-" + "a" * 62, "a" * 62 + "-", "é" * 32, "用" * 21 + "a"]

Outcome = tuple[object, ...]


def _outcome(call: Callable[[], object]) -> Outcome:
    """What ``call`` gives: its value, or its error's type, message and too_long."""
    try:
        value = call()
    except Exception as exc:
        return ("error", type(exc), str(exc), getattr(exc, "too_long", None))
    if isinstance(value, Address):
        return ("address", type(value), value.local_part, value.domain)
    return ("value", value)


def _parse_general(text: str, utf8: bool, null: bool, postmaster: bool) -> Address:
    """Address._parse_general with the general check_domain too: the oracle holds
    no fast path at all, so a fault of the domain's fast path shows here as well."""
    fast_check = _address.check_domain
    _address.check_domain = lambda domain, *, utf8=True: _check_domain_general(domain, utf8)
    try:
        return Address._parse_general(text, utf8, null, postmaster)
    finally:
        _address.check_domain = fast_check


def _octets(char: str, octets: int) -> str:
    """Text of exactly ``octets`` octets of UTF-8: ``char`` as often as it fits, then "a"s."""
    size = len(char.encode())
    return char * (octets // size) + "a" * (octets % size)


# -- inputs: addresses ------------------------------------------------------------
#
# A path is drawn as a local part, a domain and the brackets around them, and
# at most one of the three is spoilt, in one of the ways the grammar or the
# limits refuse: a near miss, which a too generous fast path would take.

_LETDIG = string.ascii_letters + string.digits
# UTF8-non-ascii of two, three and four octets, a C1 control and a no-break
# space (both in the grammar), and letters whose case mappings are ASCII
_NON_ASCII = ["é", "ü", "用", "\U0001f600", "\x80", "\xa0", "İ", "\u212a", "ſ"]
_SURROGATES = ["\udcff", "\ud800"]
_let_dig = st.one_of(st.sampled_from(_LETDIG), st.sampled_from(_NON_ASCII))
_atext = st.one_of(st.sampled_from(sst.ATEXT), st.sampled_from(_NON_ASCII))


@st.composite
def _inserted(draw: st.DrawFn, text: str, chars: st.SearchStrategy[str]) -> str:
    i = draw(st.integers(0, len(text)))
    return text[:i] + draw(chars) + text[i:]


_label = st.one_of(
    _let_dig,
    st.builds(
        lambda a, m, b: a + m + b, _let_dig, st.text(st.one_of(_let_dig, st.just("-"))), _let_dig
    ),
)


@st.composite
def _long_domains(draw: st.DrawFn, *, octets: st.SearchStrategy[int] | None = None) -> str:
    """Domains of labels of 62 to 64 octets, ASCII or not, a few octets either side
    of 255 in all (§4.5.3.1.2) unless ``octets`` says how long."""
    target = draw(octets if octets is not None else st.integers(250, 260))
    label = draw(st.integers(62, 64))
    char = draw(st.sampled_from(["a", "a", "é", "用"]))
    labels = []
    left = target
    while left > 0:
        size = min(label, left)
        labels.append(_octets(char, size))
        left -= size + 1
    return ".".join(labels) or "a"


@st.composite
def _ipv4_literals(draw: st.DrawFn, *, spoilt: bool) -> str:
    """Dotted quads (RFC 5321 §4.1.3) and, ``spoilt``, near misses: a Snum over 255
    or of four digits, an empty one, three or five of them."""
    parts = [str(n) for n in draw(st.lists(st.integers(0, 255), min_size=4, max_size=4))]
    if draw(st.booleans()):
        i = draw(st.integers(0, 3))
        parts[i] = parts[i].zfill(draw(st.integers(1, 3)))  # leading zeros: still 1*3DIGIT
    if spoilt:
        how = draw(st.sampled_from(["snum", "three", "five"]))
        if how == "snum":
            bad = st.sampled_from(["256", "300", "999", "0255", "1234", "", "2555", "+1", " 1"])
            parts[draw(st.integers(0, 3))] = draw(bad)
        elif how == "three":
            parts.pop()
        else:
            parts.append("1")
    return "[" + ".".join(parts) + "]"


_DOMAIN_FAULTS = ["hyphen", "empty", "dot", "char", "surrogate", "long", "literal", "ipv6"]
_DOMAIN_FAULTS += ["too long"]


@st.composite
def _domain_parts(draw: st.DrawFn, fault: str | None = None) -> str:
    """Domains and address literals; with a ``fault`` of _DOMAIN_FAULTS, a near miss."""
    if fault is None:
        return draw(
            st.one_of(
                st.lists(_label, min_size=1, max_size=4).map(".".join),
                sst.domains(),
                _ipv4_literals(spoilt=False),
                sst.address_literals(),
                _long_domains(octets=st.integers(200, 255)),
            )
        )
    if fault == "literal":
        return draw(_ipv4_literals(spoilt=True))
    if fault == "ipv6":
        return draw(
            st.sampled_from(["[IPv6:fe80::1%eth0]", "[IPv6:1::2::3]", "[IPv6:1.2.3.4]", "[x:]"])
        )
    if fault == "too long":
        return draw(_long_domains(octets=st.integers(256, 260)))
    labels = draw(st.lists(_label, min_size=1, max_size=4))
    i = draw(st.integers(0, len(labels) - 1))
    if fault == "hyphen":
        labels[i] = draw(st.sampled_from(["-" + labels[i], labels[i] + "-", "-"]))
    elif fault == "empty":
        labels.insert(i, "")
    elif fault == "char":
        labels[i] = draw(_inserted(labels[i], _tricky_chars))
    elif fault == "surrogate":
        labels[i] = draw(_inserted(labels[i], st.sampled_from(_SURROGATES)))
    elif fault == "long":
        labels[i] = draw(st.sampled_from(_LONG_PIECES))
    domain = ".".join(labels)
    if fault == "dot":
        domain = draw(st.sampled_from(["." + domain, domain + "."]))
    return domain


_LOCAL_FAULTS = ["dot", "char", "surrogate", "too long", "quote"]


@st.composite
def _local_parts(draw: st.DrawFn, fault: str | None = None) -> str:
    """Local parts as written (a Dot-string, or quoted); with a ``fault`` of
    _LOCAL_FAULTS, a near miss."""
    atoms = draw(st.lists(st.text(_atext, min_size=1, max_size=8), min_size=1, max_size=4))
    if fault is None:
        return draw(
            st.one_of(
                st.just(".".join(atoms)),
                st.sampled_from(['"John Doe"', '"abc"', r'"a\"b"', "Postmaster", "a"]),
                st.builds(_octets, st.sampled_from(["a", "é"]), st.integers(60, 64)),
            )
        )
    local = ".".join(atoms)
    if fault == "dot":
        i = draw(st.integers(0, len(atoms)))
        return ".".join([*atoms[:i], "", *atoms[i:]])  # at the start, the end or doubled
    if fault == "char":
        return draw(_inserted(local, _tricky_chars))
    if fault == "surrogate":
        return draw(_inserted(local, st.sampled_from(_SURROGATES)))
    if fault == "too long":
        # 65 octets, or 33 characters of two octets: 66 octets in 33 characters
        return draw(st.sampled_from(["a" * 65, "é" * 33, "a" * 63 + "é", "用" * 22]))
    return draw(st.sampled_from(['"' + local, local + '"', '"a"b"', '"a\\"']))


_WRAPS = [("<", ">"), ("", ""), ("<", ">"), ("", "")]
_BAD_WRAPS = [
    ("<", ""),
    ("", ">"),
    ("<<", ">>"),
    (" <", ">"),
    ("<", "> "),
    ("<", ">\n"),
    ("<@relay.example:", ">"),
    ("<@a.example,@b-c.example:", ">"),
    ("<@:", ">"),
]


# One fault at a time, each about as likely as the others, and the ones a fast
# path is likeliest to miss (a hyphen at a label's end, a local part of more
# octets than characters) more likely still.
_FAULTS: list[tuple[str, str | None]] = [("nothing", None)] * 4 + [("brackets", None)] * 2
_FAULTS += [("local part", f) for f in [*_LOCAL_FAULTS, "too long"]]
_FAULTS += [("domain", f) for f in [*_DOMAIN_FAULTS, "hyphen", "hyphen", "dot"]]


@st.composite
def _paths(draw: st.DrawFn) -> str:
    """``<local@domain>`` or ``local@domain``, with at most one fault."""
    where, fault = draw(st.sampled_from(_FAULTS))
    local = draw(_local_parts(fault if where == "local part" else None))
    domain = draw(_domain_parts(fault if where == "domain" else None))
    before, after = draw(st.sampled_from(_BAD_WRAPS if where == "brackets" else _WRAPS))
    return f"{before}{local}@{domain}{after}"


@st.composite
def _near_limits(draw: st.DrawFn) -> str:
    """Mailboxes whose path is a few octets either side of 256 (§4.5.3.1.3), with
    local parts of up to 64 octets, ASCII or not."""
    char = draw(st.sampled_from(["a", "é", "用", "\U0001f600"]))
    local = _octets(char, draw(st.integers(58, 64)))
    bracketed = draw(st.booleans())
    path = draw(st.integers(250, 259))  # "<" local "@" domain ">"
    domain = draw(_long_domains(octets=st.just(path - len(local.encode()) - 3)))
    return f"<{local}@{domain}>" if bracketed else f"{local}@{domain}"


def _valid_looking() -> st.SearchStrategy[str]:
    """Paths and bare mailboxes of every shape: the texts the mutations start from."""
    return st.one_of(
        sst.addresses(utf8=True).map(Address.path),
        sst.addresses(utf8=True).map(str),
        sst.reverse_paths(utf8=True).map(Address.path),
        sst.forward_paths(utf8=True).map(Address.path),
        st.sampled_from(["", "<>", "<Postmaster>", "postmaster", "<POSTMASTER>"]),
        st.builds(lambda d, a: f"<@{d}:{a}>", sst.domains(), sst.addresses(utf8=True)),
    )


@st.composite
def _mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """``base`` after one to three edits, most of them next to a delimiter."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        spots = [i for i, c in enumerate(text) if c in '.@<>-[]:"= ']
        spots += [i + 1 for i in spots] + [0, len(text)]
        i = draw(st.one_of(st.sampled_from(spots), st.integers(0, len(text))))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "double", "cut", "long"]))
        if edit == "insert":
            text = text[:i] + draw(_tricky_chars) + text[i:]
        elif edit == "delete":
            text = text[:i] + text[i + 1 :]
        elif edit == "replace":
            text = text[:i] + draw(_tricky_chars) + text[i + 1 :]
        elif edit == "double":
            text = text[:i] + text[i : i + 1] + text[i:]
        elif edit == "cut":
            text = text[:i] if draw(st.booleans()) else text[i:]
        else:
            text = text[:i] + draw(st.sampled_from(_LONG_PIECES)) + text[i:]
    return text


_ADDRESS_ALPHABET = st.one_of(
    st.sampled_from(["a", "b", "Z", "0", "9", "-", ".", *_TRICKY]), st.characters()
)


def _path_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        _paths(),
        _paths(),
        _paths(),
        _near_limits(),
        _valid_looking(),
        _mutated(_valid_looking()),
        st.text(_ADDRESS_ALPHABET, max_size=40).map(lambda t: f"<{t}>"),
    )


def _domain_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        _domain_parts(),
        st.sampled_from(_DOMAIN_FAULTS).flatmap(_domain_parts),
        _long_domains(),
        _mutated(_domain_parts()),
        st.text(_ADDRESS_ALPHABET, max_size=30),
    )


# -- inputs: parameters -------------------------------------------------------------


@st.composite
def _param_lists(draw: st.DrawFn) -> str:
    """Parameter lists, some with a keyword given twice in another case."""
    params = draw(sst.esmtp_params(utf8=True))
    if params and draw(st.booleans()):
        keyword, value = draw(st.sampled_from(params))
        params.append((draw(st.sampled_from([keyword, keyword.lower()])), value))
    return format_params(params)


_PARAM_ALPHABET = st.one_of(
    st.sampled_from(["A", "z", "1", "-", "=", " ", *_TRICKY]), st.characters()
)


def _param_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        _param_lists(), _mutated(_param_lists()), st.text(_PARAM_ALPHABET, max_size=30)
    )


# -- Address.parse ----------------------------------------------------------------


def _parse_both_ways(
    text: str, utf8: bool, null: bool, postmaster: bool
) -> tuple[Outcome, Outcome]:
    """What Address.parse gives, and what the general path gives."""
    # First with the most permissive flags: an answer kept from that call
    # (_address._KNOWN) must still be the general path's for these flags.
    _outcome(lambda: Address.parse(text, utf8=True, null=True, postmaster=True))
    fast = _outcome(lambda: Address.parse(text, utf8=utf8, null=null, postmaster=postmaster))
    general = _outcome(lambda: _parse_general(text, utf8, null, postmaster))
    return fast, general


@settings(max_examples=1000, deadline=None)
@given(_path_texts(), st.booleans(), st.booleans(), st.booleans())
def test_parse_fast_path_agrees_with_the_general_path(
    text: str, utf8: bool, null: bool, postmaster: bool
) -> None:
    fast, general = _parse_both_ways(text, utf8, null, postmaster)
    assert fast == general


@settings(max_examples=1000, deadline=None)
@given(_paths(), st.booleans())
def test_parse_fast_path_agrees_with_the_general_path_on_near_misses(
    text: str, utf8: bool
) -> None:
    fast, general = _parse_both_ways(text, utf8, True, True)
    assert fast == general


def test_a_path_read_before_is_the_same_address() -> None:
    first = Address.parse("<kept@example.org>")
    assert Address.parse("<kept@example.org>") is first
    assert Address.parse("<kept@example.org>", utf8=False, null=False) is first


@pytest.mark.pure_only(
    reason="mypyc checks Address.parse's result by exact type, so the compiled build "
    "refuses subclasses of Address (tests/test_fill.py)"
)
def test_a_subclass_never_gets_the_kept_address() -> None:
    first = Address.parse("<kept@example.org>")

    class Mine(Address):
        pass

    mine = Mine.parse("<kept@example.org>")
    assert type(mine) is Mine
    assert (mine.local_part, mine.domain) == (first.local_part, first.domain)


def test_the_kept_paths_are_bounded() -> None:
    for i in range(_address._KNOWN_MAX + 10):
        Address.parse(f"<user{i}@example.org>")
    assert 0 < len(_address._KNOWN) <= _address._KNOWN_MAX


@pytest.mark.parametrize(
    "text",
    [
        "<alice@example.org>",
        "bob@example.net",
        "<first.last+tag@mail.sub-domain.example.co.uk>",
        "<postmaster@[192.0.2.1]>",
        "<jöran@bücher.example>",
        "<用户@例子.广告>",
        "<>",
        # 64 octets of local part and a path of 254 octets: the longest the
        # fast path takes (a bracketed path of 255 or 256 is the general's)
        f"<{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 59}>",
    ],
)
def test_common_shapes_take_the_fast_path(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = Address._parse_general(text, True, True, False)

    def general(cls: type[Address], *args: object) -> Address:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(Address, "_parse_general", classmethod(general))
    assert Address.parse(text, utf8=True, null=True, postmaster=False) == expected


@pytest.mark.parametrize(
    "text",
    [
        "<a@[IPv6:2001:db8::1]>",  # IPv6 literals are the general path's
        "<a@[tag:content]>",
        '<"John Doe"@example.com>',
        "<@relay.example:user@example.com>",
        "<Postmaster>",
        f"<{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 60}>",  # 255 octets
    ],
)
def test_other_shapes_take_the_general_path(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    general = Address._parse_general

    def counting(cls: type[Address], *args: Any) -> Address:
        calls.append(args)
        return general(*args)

    monkeypatch.setattr(Address, "_parse_general", classmethod(counting))
    Address.parse(text)
    assert calls


class _Str(str):
    """A str subclass: the fast paths leave it to the general code."""


@pytest.mark.parametrize(
    "value", [None, b"<a@b.example>", b"", 0, 1, ["<a@b.example>"], _Str("<a@b.example>")]
)
def test_anything_but_str_gets_what_the_general_path_gives(value: object) -> None:
    text: str = value  # type: ignore[assignment]
    fast = _outcome(lambda: Address.parse(text))
    assert fast == _outcome(lambda: _parse_general(text, True, True, True))
    assert _outcome(lambda: check_domain(text)) == _outcome(
        lambda: _check_domain_general(text, True)
    )
    assert _outcome(lambda: parse_params(text)) == _outcome(lambda: _parse_params_general(text))


# -- check_domain -------------------------------------------------------------------


@settings(max_examples=800, deadline=None)
@given(_domain_texts(), st.booleans())
def test_check_domain_fast_path_agrees_with_the_general_path(domain: str, utf8: bool) -> None:
    fast = _outcome(lambda: check_domain(domain, utf8=utf8))
    assert fast == _outcome(lambda: _check_domain_general(domain, utf8))


# -- parse_params -------------------------------------------------------------------


@settings(max_examples=800, deadline=None)
@given(_param_texts())
def test_parse_params_fast_path_agrees_with_the_general_path(text: str) -> None:
    assert _outcome(lambda: parse_params(text)) == _outcome(lambda: _parse_params_general(text))
