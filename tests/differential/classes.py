"""The known classes of disagreement between smtp_rtls and its peers.

Each :class:`Difference` names one way smtp_rtls and aiosmtpd or smtplib
read the same input differently, the RFC section that decides who is right,
and the test that pins it; docs/differences.rst presents the same table
(tests/differential/test_docs.py keeps the two in step).

A disagreement is *explained* when the input shows the fault a class is
about.  The faults are found by a small reader of the RFC grammar written
here, apart from smtp_rtls's parser (:func:`path_faults`,
:func:`mail_line_faults`): a disagreement no class explains fails the test
that saw it, as does a fault this reader cannot find in an input smtp_rtls
refused.
"""

from __future__ import annotations

import ipaddress
import re

import attrs

__all__ = [
    "DIFFERENCES",
    "Difference",
    "by_name",
    "documented",
    "mail_line_faults",
    "path_faults",
    "split_line",
    "value_classes",
]


@attrs.frozen
class Difference:
    """One documented class of disagreement."""

    name: str
    #: ``"aiosmtpd"`` or ``"smtplib"``
    peer: str
    #: ``"peer-accepts"``: the peer takes what smtp_rtls refuses;
    #: ``"peer-refuses"``: the reverse; ``"value"``: both take it and read
    #: different values
    kind: str
    #: the RFC section that decides, and so who is right
    rfc: str
    #: an input that shows it
    example: str
    #: the test that pins it (``module::function``)
    test: str


_T_PATHS = "test_paths.py::test_aiosmtpd_path_examples"
_T_LINES = "test_commands.py::test_aiosmtpd_mail_rcpt_examples"
_T_HELLO = "test_commands.py::test_aiosmtpd_ehlo_helo_examples"
_T_PARAMS = "test_params.py::test_aiosmtpd_param_examples"
_T_DATA = "test_data.py::test_aiosmtpd_data_examples"
_T_REPLIES = "test_replies.py::test_smtplib_reply_examples"
_T_EHLO = "test_replies.py::test_smtplib_ehlo_examples"
_T_QUOTE = "test_smtplib_client.py::test_smtplib_quoteaddr_examples"

_A, _S = "aiosmtpd", "smtplib"
_TAKES, _REFUSES, _DIFFERS = "peer-accepts", "peer-refuses", "value"

# fmt: off
DIFFERENCES = (
    # -- paths: aiosmtpd's _getaddr reads them with the stdlib's RFC 5322
    # -- header parser (get_angle_addr, get_addr_spec)
    Difference("no-angle-brackets", _A, _TAKES, "RFC 5321 §4.1.2",
               "MAIL FROM:a@b.example", _T_PATHS),
    Difference("null-forward-path", _A, _TAKES, "RFC 5321 §4.1.1.3",
               "RCPT TO:<>", _T_LINES),
    Difference("postmaster-reverse-path", _A, _TAKES, "RFC 5321 §4.1.1.2, §4.1.1.3",
               "MAIL FROM:<Postmaster>", _T_LINES),
    Difference("no-domain", _A, _TAKES, "RFC 5321 §4.1.2",
               "MAIL FROM:<alice>", _T_PATHS),
    Difference("local-part-grammar", _A, _TAKES, "RFC 5321 §4.1.2",
               "MAIL FROM:<a..b@example.org>", _T_PATHS),
    Difference("domain-grammar", _A, _TAKES, "RFC 5321 §4.1.2",
               "MAIL FROM:<a@b_c.example>", _T_PATHS),
    Difference("address-literal", _A, _TAKES, "RFC 5321 §4.1.3",
               "MAIL FROM:<a@[999.1.1.1]>", _T_PATHS),
    Difference("path-length", _A, _TAKES, "RFC 5321 §4.5.3.1.1-§4.5.3.1.3",
               "a local part of 65 octets", _T_PATHS),
    Difference("utf8-without-smtputf8", _A, _TAKES, "RFC 6531 §3.4",
               "MAIL FROM:<jö@b.example> without SMTPUTF8", _T_LINES),
    Difference("encoded-word", _A, _DIFFERS, "RFC 2047 §5 (3)",
               "MAIL FROM:<=?utf-8?q?x?=@b.example>", _T_PATHS),
    Difference("requoting", _A, _DIFFERS, "RFC 5321 §4.1.2",
               'MAIL FROM:<"a."@b.example>', _T_PATHS),
    # -- the rest of a command line
    Difference("whitespace", _A, _TAKES, "RFC 5321 §4.1.1.1, §4.1.1.2, §4.1.2",
               "MAIL FROM:<a@b.example>  SIZE=10", _T_LINES),
    Difference("comment-after-path", _A, _TAKES, "RFC 5321 §4.1.2",
               "MAIL FROM:<a@b.example> (comment)", _T_LINES),
    Difference("line-length", _A, _TAKES, "RFC 5321 §4.5.3.1.4",
               "a RCPT line of 514 octets", _T_LINES),
    Difference("hello-argument", _A, _TAKES, "RFC 5321 §4.1.1.1",
               "EHLO client example", _T_HELLO),
    # -- parameters: aiosmtpd upper-cases the text, splits it at white space
    # -- and checks each keyword with str.isalnum()
    Difference("repeated-parameter", _A, _TAKES, "RFC 3461 §4",
               "MAIL FROM:<a@b.example> SIZE=1 SIZE=2", _T_LINES),
    Difference("size-value", _A, _TAKES, "RFC 1870 §3",
               "SIZE=000000000000000000001", _T_LINES),
    Difference("param-keyword", _A, _REFUSES, "RFC 5321 §4.1.2",
               "X-FOO=1", _T_PARAMS),
    Difference("param-value-grammar", _A, _TAKES, "RFC 5321 §4.1.2",
               "X=a=b", _T_PARAMS),
    Difference("param-value-case", _A, _DIFFERS, "RFC 5321 §2.4, RFC 3461 §4.2",
               "ORCPT=rfc822;Alice@example.org", _T_PARAMS),
    Difference("unicode-whitespace", _A, _REFUSES, "RFC 6531 §3.3",
               "X=a\u00a0b", _T_PARAMS),
    # -- message content
    Difference("bare-line-endings", _A, _TAKES, "RFC 5321 §2.3.8",
               "a\\nb (a bare LF in the content)", _T_DATA),
    Difference("text-line-length", _A, _REFUSES, "RFC 5321 §4.5.3.1, §4.5.3.1.6",
               "a text line of 1002 octets", _T_DATA),
    # -- replies: smtplib's getreply
    Difference("reply-grammar", _S, _TAKES, "RFC 5321 §4.2, §4.2.1, §4.5.3.1.5",
               "250_OK", _T_REPLIES),
    Difference("reply-text-whitespace", _S, _DIFFERS, "RFC 5321 §4.2",
               "250 OK  (two trailing spaces)", _T_REPLIES),
    Difference("enhanced-status", _S, _DIFFERS, "RFC 2034 §4, RFC 3463 §2",
               "250 2.1.0 Sender OK", _T_REPLIES),
    # -- EHLO replies: smtplib's ehlo (esmtp_features)
    Difference("ehlo-old-auth", _S, _DIFFERS, "RFC 4954 §3",
               "250-AUTH=LOGIN", _T_EHLO),
    Difference("ehlo-keyword-grammar", _S, _DIFFERS, "RFC 5321 §4.1.1.1",
               "250 X_FOO bar", _T_EHLO),
    Difference("ehlo-repeated-keyword", _S, _DIFFERS, "RFC 5321 §4.1.1.1",
               "250-SIZE 1000 then 250 SIZE 2000", _T_EHLO),
    # -- what smtplib writes: quoteaddr
    Difference("quoteaddr", _S, _TAKES, "RFC 5321 §4.1.2",
               "SMTP.mail('Alice <a@b.example>')", _T_QUOTE),
)
# fmt: on


def by_name(name: str) -> Difference:
    """The class called ``name``."""
    for difference in DIFFERENCES:
        if difference.name == name:
            return difference
    raise KeyError(name)


def documented(names: set[str]) -> set[str]:
    """``names``, each checked to be a class of :data:`DIFFERENCES`."""
    for name in names:
        by_name(name)
    return names


# -- RFC 5321 §4.1.2 and §4.1.3, read apart from smtp_rtls ---------------------
#
# Written from the ABNF, not from smtp_rtls's own pieces: a fault of those
# would otherwise hide here as well.

_ALPHA_DIGIT = "A-Za-z0-9"
_ATEXT = _ALPHA_DIGIT + re.escape("!#$%&'*+-/=?^_`{|}~")
# RFC 6531 §3.3: UTF8-non-ascii, any code point from U+0080 but surrogates
_UTF8 = "\u0080-\ud7ff\ue000-\U0010ffff"
_ATOM = f"[{_ATEXT}]+"
_ATOM_U = f"[{_ATEXT}{_UTF8}]+"
_LABEL = f"[{_ALPHA_DIGIT}]([{_ALPHA_DIGIT}-]*[{_ALPHA_DIGIT}])?"
_LABEL_U = f"[{_ALPHA_DIGIT}{_UTF8}]([{_ALPHA_DIGIT}{_UTF8}-]*[{_ALPHA_DIGIT}{_UTF8}])?"
_SNUM = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[0-9]{1,2}|0[0-9]{2})"
_ADL = re.compile(rf"@{_LABEL}(\.{_LABEL})*(,@{_LABEL}(\.{_LABEL})*)*:")
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")


def _dot_string(text: str, utf8: bool) -> bool:
    atom = _ATOM_U if utf8 else _ATOM
    return re.fullmatch(rf"{atom}(\.{atom})*", text) is not None


def _quoted_content(text: str, utf8: bool) -> bool:
    # QcontentSMTP = qtextSMTP / quoted-pairSMTP (+ UTF8-non-ascii, RFC 6531 §3.3)
    qtext = r"\x20\x21\x23-\x5b\x5d-\x7e" + (_UTF8 if utf8 else "")
    return re.fullmatch(rf"([{qtext}]|\\[\x20-\x7e])*", text) is not None


def _domain(text: str, utf8: bool) -> bool:
    label = _LABEL_U if utf8 else _LABEL
    return re.fullmatch(rf"{label}(\.{label})*", text) is not None


def _address_literal(text: str) -> bool:
    inner = text[1:-1]
    if re.fullmatch(rf"{_SNUM}(\.{_SNUM}){{3}}", inner):
        return True
    if inner[:5].lower() == "ipv6:":
        v6 = inner[5:]
        if not re.fullmatch(r"[0-9A-Fa-f:.]+", v6):
            return False
        try:
            ipaddress.IPv6Address(v6)
        except ValueError:
            return False
        return True
    # General-address-literal = Standardized-tag ":" 1*dcontent; the tags
    # IPv6 and dotted quads are taken above, so "IPv6:junk" is no literal
    m = re.fullmatch(r"([A-Za-z0-9-]*[A-Za-z0-9]):([\x21-\x5a\x5e-\x7e]+)", inner)
    return m is not None and m[1].lower() != "ipv6"


def _split_mailbox(inner: str) -> tuple[str, str | None]:
    """Local part (as written) and domain of ``local@domain``; the domain is
    None when no "@" follows the local part."""
    if inner.startswith('"'):
        i = 1
        while i < len(inner):
            if inner[i] == "\\":
                i += 2
                continue
            if inner[i] == '"':
                break
            i += 1
        end = i + 1
        local = inner[:end]
        rest = inner[end:]
        return (local, rest[1:]) if rest.startswith("@") else (inner, None)
    local, at, domain = inner.partition("@")
    return (local, domain) if at else (inner, None)


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def path_faults(text: str, *, reverse: bool, utf8: bool) -> set[str]:
    """The faults of a path as RFC 5321 §4.1.2-§4.1.3 and RFC 6531 §3.3-3.4
    see them, by class name; empty for a valid path.

    ``reverse``: a MAIL FROM path (``<>`` allowed, ``<Postmaster>`` not);
    ``utf8``: the transaction declared SMTPUTF8.
    """
    faults: set[str] = set()
    if text != text.strip(" "):
        # §4.1.1.2: "spaces are not permitted on either side of the colon";
        # smtp_rtls takes one there, and one after the path, as aiosmtpd
        # takes any number (see "whitespace")
        faults.add("whitespace")
        text = text.strip(" ")
    if text == "<>":
        return faults if reverse else faults | {"null-forward-path"}
    if not (text.startswith("<") and text.endswith(">")) or len(text) < 2:
        faults.add("no-angle-brackets")
        inner = text.removeprefix("<")
    else:
        inner = text[1:-1]
        if _octets(text) > 256:  # §4.5.3.1.3
            faults.add("path-length")
    m = _ADL.match(inner)
    if m:
        inner = inner[m.end() :]
    if inner.lower() == "postmaster":
        return faults | ({"postmaster-reverse-path"} if reverse else set())
    if any("\ud800" <= c <= "\udfff" for c in inner):
        # undecodable octets: not UTF8-non-ascii (RFC 6531 §3.3, RFC 3629 §4)
        faults.add("local-part-grammar")
    if not utf8 and not inner.isascii():
        faults.add("utf8-without-smtputf8")
    local, domain = _split_mailbox(inner)
    if domain is None:
        faults.add("no-domain")
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        ok = _quoted_content(local[1:-1], utf8=True)
    else:
        ok = _dot_string(local, utf8=True)
    if not ok:
        faults.add("local-part-grammar")
    if _octets(local) > 64:  # §4.5.3.1.1
        faults.add("path-length")
    if domain is not None:
        if domain.startswith("["):
            if not (domain.endswith("]") and _address_literal(domain)):
                faults.add("address-literal")
        elif not _domain(domain, utf8=True):
            faults.add("domain-grammar")
        elif _octets(domain) > 255:  # §4.5.3.1.2
            faults.add("path-length")
    return faults


def value_classes(text: str) -> set[str]:
    """The value classes a path that both sides accept may fall in."""
    found = set()
    inner = text.strip("<>")
    local, _ = _split_mailbox(inner)
    if _ENCODED_WORD.search(local):
        found.add("encoded-word")
    if local.startswith('"') and not _dot_string(local[1:-1], utf8=True):
        found.add("requoting")
    return found


# -- MAIL and RCPT lines --------------------------------------------------------

_PATH_END = re.compile(r'<(?:[^>"\[]|"(?:[^"\\]|\\.)*"|\[[^\]]*\])*>')
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(rf"[\x21-\x3c\x3e-\x7e{_UTF8}]+")
#: Parameters whose values RFC 1870 §3 and RFC 6152 §2 define, with what
#: aiosmtpd and smtp_rtls both offer (SIZE, 8BITMIME, SMTPUTF8).
_SIZE_VALUE = re.compile(r"[0-9]{1,20}")


def split_line(line: bytes, *, reverse: bool) -> tuple[str, str, set[str]]:
    """A MAIL (``reverse``) or RCPT line's path text, its parameter text
    and the faults of its spacing (RFC 5321 §4.1.1.2: ``"MAIL FROM:"
    Reverse-path [SP Mail-parameters] CRLF``, no space by the colon)."""
    faults: set[str] = set()
    text = line.removesuffix(b"\r\n").decode("utf-8", "surrogateescape")
    if "\t" in text or "  " in text or text.endswith(" "):
        faults.add("whitespace")
    _, _, arg = text.partition(" ")
    head = "FROM:" if reverse else "TO:"
    arg = arg.lstrip(" \t")
    if arg[: len(head)].upper() != head:
        return "", "", faults | {"whitespace"}  # what else a peer could take
    arg = arg[len(head) :]
    if arg[:1] in (" ", "\t"):
        faults.add("whitespace")
        arg = arg.lstrip(" \t")
    m = _PATH_END.match(arg)
    if m is not None:
        params = arg[m.end() :]
        if params and params[0] not in " \t":
            faults.add("whitespace")  # no SP between the path and the parameters
        return m[0], params, faults
    path, _, params = arg.partition(" ")
    return path, params, faults


def mail_line_faults(line: bytes, *, reverse: bool, utf8: bool = False) -> set[str]:
    """The faults of a MAIL (``reverse``) or RCPT line, CRLF included, by
    class name: its spacing's (:func:`split_line`), its path's
    (:func:`path_faults`) and its parameters' (§4.1.2, RFC 1870 §3,
    RFC 3461 §4, RFC 6531 §3.4).

    ``utf8`` is the SMTPUTF8 of the transaction for a RCPT line (a MAIL
    line declares its own).
    """
    path, params, faults = split_line(line, reverse=reverse)
    # §4.5.3.1.4: 512 octets with the CRLF, RFC 1870 §3 adds 26 for SIZE and
    # RFC 6531 §3.4 10 for SMTPUTF8 to MAIL (both offered here)
    if len(line) > (512 + 26 + 10 if reverse else 512):
        faults.add("line-length")
    if params.lstrip(" \t").startswith("("):
        # aiosmtpd's get_angle_addr reads RFC 5322 CFWS after the ">": a
        # comment there (even an unclosed one) is dropped, where RFC 5321
        # §4.1.2 has only SP and esmtp-params
        faults.add("comment-after-path")
    words = params.split()
    declared = any(w.upper() == "SMTPUTF8" for w in words)
    faults |= path_faults(path, reverse=reverse, utf8=utf8 or (reverse and declared))
    seen: set[str] = set()
    for word in words:
        keyword, eq, value = word.partition("=")
        key = keyword.upper()
        if key in seen:
            faults.add("repeated-parameter")
        seen.add(key)
        if not _KEYWORD.fullmatch(keyword) or (eq and not _VALUE.fullmatch(value)):
            continue  # both sides refuse a malformed parameter
        if key == "SIZE" and eq and not _SIZE_VALUE.fullmatch(value):
            faults.add("size-value")
    return faults
