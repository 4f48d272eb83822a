"""Command lines <-> command events (RFC 5321 §4.1.1, §4.1.2).

Parsing is role-free: it turns one command line into an event, or raises
:class:`CommandSyntaxError` carrying the reply the server should give.  What
is *allowed* (which extension is offered, which state we are in) is the
server's business, not this module's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from ._address import Address, AddressError
from ._errors import LocalProtocolError
from ._events import (
    Auth,
    AuthResponse,
    Bdat,
    Data,
    Ehlo,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTLS,
    Vrfy,
)
from ._params import (
    MAIL_PARAMETERS,
    ParamError,
    format_params,
    parse_params,
    xtext_decode,
    xtext_encode,
)
from ._reply import Reply
from ._slots import slot_filler

__all__ = [
    "CommandSyntaxError",
    "format_command",
    "parse_bdat_size",
    "parse_command",
    "parse_split_command",
    "verb_of",
]

# Verbs this library parses.  TURN, ETRN, SEND, SOML and SAML are known but
# not implemented (502, RFC 5321 §4.2.4).
KNOWN_VERBS: Final = frozenset(
    [
        "EHLO",
        "HELO",
        "LHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY",
        "EXPN",
        "HELP",
        "STARTTLS",
        "AUTH",
    ]
)
UNIMPLEMENTED_VERBS: Final = frozenset(["TURN", "ETRN", "SEND", "SOML", "SAML", "ATRN"])

# The path ends at the first ">" outside a quoted local part and outside an
# address literal: qtextSMTP and dcontent admit ">" (RFC 5321 §4.1.2, §4.1.3),
# as in <"a>b"@example.com> and <a@[tag:x>y]>.
_PATH: Final = r'(<(?:[^>"\[]|"(?:[^"\\]|\\.)*"|\[[^\]]*\])*>)'
_MAIL_RE: Final = re.compile(rf"FROM: ?{_PATH}(?: (.*))?", re.IGNORECASE | re.DOTALL)
_RCPT_RE: Final = re.compile(rf"TO: ?{_PATH}(?: (.*))?", re.IGNORECASE | re.DOTALL)
_SIZE_RE: Final = re.compile(r"[0-9]{1,20}")


# The one map from command event to verb, for both roles (AuthResponse lines
# belong to the AUTH command, RFC 4954 §4).
_VERB_OF: Final[dict[type[Event], str]] = {
    Ehlo: "EHLO",
    Helo: "HELO",
    StartTLS: "STARTTLS",
    Auth: "AUTH",
    AuthResponse: "AUTH",
    MailFrom: "MAIL",
    RcptTo: "RCPT",
    Data: "DATA",
    Bdat: "BDAT",
    Rset: "RSET",
    Noop: "NOOP",
    Vrfy: "VRFY",
    Expn: "EXPN",
    Help: "HELP",
    Quit: "QUIT",
}


def verb_of(event: Event, *, lmtp: bool = False) -> str:
    """The verb of a command event (``Ehlo`` is LHLO in LMTP, RFC 2033 §4.1).

    Raises LocalProtocolError for events that are not commands.
    """
    verb = _VERB_OF.get(type(event))
    if verb is None:
        raise LocalProtocolError(f"{type(event).__name__} is not a command")
    return "LHLO" if lmtp and verb == "EHLO" else verb


_DIGITS: Final = re.compile(r"0*([0-9]+)")

# The events' constructors for parts parsed here: every field was checked
# by the parser already, so the slots are filled directly, without the
# events' __init__ and its checks (a Python call, and the checks made twice).
_make_mail_from: Final = slot_filler(
    MailFrom,
    "reverse_path",
    "size",
    "body",
    "smtputf8",
    "requiretls",
    "ret",
    "envid",
    "auth",
    "extra",
)
_make_rcpt_to: Final[
    Callable[
        [Address, str | None, tuple[str, str] | None, tuple[tuple[str, str | None], ...]], RcptTo
    ]
] = slot_filler(RcptTo, "forward_path", "notify", "orcpt", "extra")


def _mail_from_parsed(
    reverse_path: Address, extra: list[tuple[str, str | None]], kw: dict[str, Any]
) -> MailFrom:
    # (see _mail_from: ENVID and AUTH are never among the fields parsed here)
    get = kw.get
    event: MailFrom = _make_mail_from(
        reverse_path,
        get("size"),
        get("body"),
        get("smtputf8", False),
        get("requiretls", False),
        get("ret"),
        None,
        None,
        tuple(extra),
    )
    return event


def parse_bdat_size(arg: str) -> tuple[int | None, bool] | None:
    """The chunk size and LAST flag of a BDAT argument (RFC 3030 §2:
    ``chunk-size = 1*DIGIT``, any number of digits).

    Returns ``(size, last)`` where size is None when it has more than 18
    significant digits (beyond any limit, but still a size: the octets are
    there), ``(size, False)`` with a trailing word other than LAST marked by
    the caller as a syntax error, or None when no size can be read at all.
    """
    head, _, tail = arg.partition(" ")
    m = _DIGITS.fullmatch(head)
    if m is None or not head.isascii():
        return None
    digits = m[1]
    size = int(digits) if len(digits) <= 18 else None
    return size, tail.upper() == "LAST"


class CommandSyntaxError(LocalProtocolError):
    """A command line that cannot become an event; ``reply`` says why."""

    reply: Reply

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text, reply)
        self.reply = reply


def _reject(code: int, enhanced: str, text: str) -> CommandSyntaxError:
    return CommandSyntaxError(Reply(code, text, enhanced))


def split_verb(line: str) -> tuple[str, str]:
    """Split a command line (no CRLF) into its upper-cased verb and argument."""
    verb, _, arg = line.partition(" ")
    return verb.upper(), arg


def _address(text: str, *, reverse: bool, utf8: bool) -> Address:
    try:
        return Address.parse(text, utf8=utf8, null=reverse, postmaster=not reverse)
    except AddressError as exc:
        if exc.too_long:
            raise _reject(501, "5.5.4", "Path too long") from None
        if not utf8 and not text.isascii():
            # RFC 6531 §3.5 / X.6.7: non-ASCII address without SMTPUTF8
            code = 550 if reverse else 553
            raise _reject(code, "5.6.7", "Non-ASCII address needs SMTPUTF8") from None
        raise _reject(501, "5.1.7" if reverse else "5.1.3", f"Bad address syntax: {exc}") from None


def _path_and_params(
    pattern: re.Pattern[str], arg: str, syntax: str
) -> tuple[str, list[tuple[str, str | None]]]:
    """The path text and the parsed parameters of a MAIL or RCPT argument."""
    split = _split_plain_path(arg, "FROM:" if pattern is _MAIL_RE else "TO:")
    if split is None:
        m = pattern.fullmatch(arg)
        if m is None:
            raise _reject(501, "5.5.4", f"Syntax: {syntax}")
        split = m[1], m[2] or ""
    try:
        return split[0], parse_params(split[1])
    except ParamError as exc:
        raise _reject(501, "5.5.4", str(exc)) from None


def _split_plain_path(arg: str, head: str) -> tuple[str, str] | None:
    """The usual argument, ``FROM:<a@b> params``, split without the regex.

    Only for a path with no quote and no address literal, where the first
    ">" ends it; None for anything else, which the regex then decides.  What
    this accepts the regex accepts, split the same way.
    """
    n = len(head)
    prefix = arg[:n]
    if not prefix.isascii() or prefix.upper() != head:
        return None
    start = n + 1 if arg[n : n + 1] == " " else n
    if arg[start : start + 1] != "<":
        return None
    end = arg.find(">", start)
    if end < 0:
        return None
    path = arg[start : end + 1]
    if '"' in path or "[" in path:
        return None
    tail = arg[end + 1 :]
    if not tail:
        return path, ""
    if tail[0] != " ":
        return None
    return path, tail[1:]


def _mail_from(arg: str) -> MailFrom:
    path, params = _path_and_params(_MAIL_RE, arg, "MAIL FROM:<address> [parameters]")
    kw: dict[str, object] = {}
    extra: list[tuple[str, str | None]] = []
    for key, value in params:
        if key in ("SMTPUTF8", "REQUIRETLS"):
            # RFC 6531 §3.4 and RFC 8689 §2 item 4: these take no value.
            if value is not None:
                raise _reject(501, "5.5.4", f"{key} takes no value")
            kw[key.lower()] = True
        elif key == "SIZE":
            if value is None or not _SIZE_RE.fullmatch(value):
                raise _reject(501, "5.5.4", "SIZE needs a number (RFC 1870 §3)")
            kw["size"] = int(value)
        elif key == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME", "BINARYMIME"):
                raise _reject(501, "5.5.4", "BODY must be 7BIT, 8BITMIME or BINARYMIME")
            kw["body"] = value.upper()
        elif key == "RET":
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise _reject(501, "5.5.4", "RET must be FULL or HDRS (RFC 3461 §4.3)")
            kw["ret"] = value.upper()
        elif key in ("ENVID", "AUTH"):
            if value is None:
                raise _reject(501, "5.5.4", f"{key} needs a value")
            try:
                kw[key.lower()] = value if value == "<>" and key == "AUTH" else xtext_decode(value)
            except ParamError as exc:
                raise _reject(501, "5.5.4", str(exc)) from None
        else:
            extra.append((key, value))
    utf8 = bool(kw.get("smtputf8"))
    reverse_path = _address(path, reverse=True, utf8=utf8)
    if "envid" not in kw and "auth" not in kw:
        # Every rule MailFrom's constructor checks was checked above (the
        # path by Address.parse with the SMTPUTF8 flag, each value by its
        # branch); only ENVID and AUTH keep rules for the constructor.
        return _mail_from_parsed(reverse_path, extra, kw)
    try:
        return MailFrom(reverse_path, extra=extra, **kw)  # type: ignore[arg-type]
    except LocalProtocolError as error:
        # (not ``exc``: mypyc gives a name one type per function, and ``exc``
        # is a ParamError above)
        raise _reject(501, "5.5.4", str(error)) from None


def _rcpt_to(arg: str, *, utf8: bool) -> RcptTo:
    split = _split_plain_path(arg, "TO:")
    if split is not None and not split[1]:
        # The usual RCPT: a plain path and no parameter, so nothing but the
        # address to check; a bad one takes the general path for its reply.
        try:
            forward = Address.parse(split[0], utf8=utf8, null=False, postmaster=True)
        except AddressError:
            pass
        else:
            return _make_rcpt_to(forward, None, None, ())
    return _rcpt_to_general(arg, utf8=utf8)


def _rcpt_to_general(arg: str, *, utf8: bool) -> RcptTo:
    path, params = _path_and_params(_RCPT_RE, arg, "RCPT TO:<address> [parameters]")
    kw: dict[str, object] = {}
    extra: list[tuple[str, str | None]] = []
    for key, value in params:
        if key == "NOTIFY":
            if value is None:
                raise _reject(501, "5.5.4", "NOTIFY needs a value (RFC 3461 §4.1)")
            kw["notify"] = value
        elif key == "ORCPT":
            addr_type, semi, original = (value or "").partition(";")
            if not semi:
                raise _reject(501, "5.5.4", "ORCPT is addr-type;xtext (RFC 3461 §4.2)")
            try:
                kw["orcpt"] = (addr_type, xtext_decode(original))
            except ParamError as exc:
                raise _reject(501, "5.5.4", str(exc)) from None
        else:
            extra.append((key, value))
    forward_path = _address(path, reverse=False, utf8=utf8)
    if not kw:
        # The path was checked by Address.parse, the extra keywords are
        # none of the typed ones: nothing is left for the constructor.
        return _make_rcpt_to(forward_path, None, None, tuple(extra))
    try:
        return RcptTo(forward_path, extra=extra, **kw)  # type: ignore[arg-type]
    except LocalProtocolError as error:
        # (not ``exc``: mypyc gives a name one type per function, and ``exc``
        # is a ParamError above)
        raise _reject(501, "5.5.4", str(error)) from None


# -- the server's lane: the usual MAIL and RCPT, parsed and checked at once --------


def mail_lane_keys(keys: frozenset[str]) -> dict[str, tuple[str, object]]:
    """What :func:`parse_mail_lane` may accept after an EHLO offering ``keys``.

    The typed MAIL parameters whose extension is offered (RFC 5321
    §4.1.1.11), as the upper-cased words they are written as, each with the
    MailFrom field and value it sets (``"BODY=8BITMIME"``, RFC 6152 §2;
    ``"REQUIRETLS"``, RFC 8689 §2), and ``"SIZE="`` for SIZE's numbers.
    ENVID and AUTH are left to the general parser.
    """
    words: dict[str, tuple[str, object]] = {}
    for param in MAIL_PARAMETERS:
        if param.extension not in keys or param.keyword in ("ENVID", "AUTH"):
            continue
        if param.keyword == "SIZE":
            words["SIZE="] = ("size", None)
        elif param.values:
            for value in param.values:
                words[f"{param.keyword}={value}"] = (param.field, value)
        elif param.keyword == "RET":
            for value in ("FULL", "HDRS"):
                words[f"RET={value}"] = ("ret", value)
        else:
            words[param.keyword] = (param.field, True)  # SMTPUTF8, REQUIRETLS
    return words


def parse_mail_lane(
    arg: str, allowed: dict[str, tuple[str, object]], size_limit: int
) -> MailFrom | None:
    """The usual MAIL argument (``FROM:<a@b> SIZE=n BODY=8BITMIME``), parsed
    and checked in one pass: the :class:`MailFrom` the general parser would
    make and the server's rules would accept, or None for everything else.

    ``allowed`` is :func:`mail_lane_keys` of the offer in force and
    ``size_limit`` the server's maximum message size (0: none).  None never
    means refused: the general parser and :func:`check_mail` then decide,
    with their replies; tests/test_fast_paths.py checks that both agree.
    """
    if not arg.startswith("FROM:<") or not arg.isascii():
        return None
    end = arg.find(">", 6)
    path = arg[5 : end + 1]
    if end < 0 or '"' in path or "[" in path:
        return None
    fields: dict[str, object] = {}
    if end + 1 < len(arg):
        if arg[end + 1] != " ":
            return None
        # No syntax check of the list first (RFC 5321 §4.1.2): each word
        # must be one of ``allowed``, which are well-formed parameters, or
        # SIZE= and 1*20DIGIT, so a malformed list (an empty word, a tab,
        # a stray "=") fails the loop and takes the general path.
        for word in arg[end + 2 :].upper().split(" "):
            hit = allowed.get(word)
            if hit is None or hit[1] is None:  # (the bare "SIZE=" is a marker)
                digits = word[5:]
                # RFC 1870 §3: size-value = 1*20DIGIT
                if word[:5] != "SIZE=" or "SIZE=" not in allowed:
                    return None
                if not digits.isdigit() or len(digits) > 20:
                    return None
                size = int(digits)
                if size_limit and size > size_limit:
                    return None  # RFC 1870 §6.1: the general path's 552
                hit = ("size", size)
            field, value = hit
            if field in fields:
                return None  # a keyword given twice: the general parser's 501
            fields[field] = value
    try:
        reverse_path = Address.parse(path, utf8="smtputf8" in fields, null=True, postmaster=False)
    except AddressError:
        return None
    return _mail_from_parsed(reverse_path, [], fields)


def parse_rcpt_lane(arg: str, *, utf8: bool) -> RcptTo | None:
    """The usual RCPT argument (``TO:<a@b>``, no parameter): the
    :class:`RcptTo` the general parser would make, or None for anything
    else (the general parser then decides, with its reply)."""
    if not arg.startswith("TO:<") or arg.find(">", 4) != len(arg) - 1:
        return None
    path = arg[3:]
    if '"' in path or "[" in path:
        return None
    try:
        forward = Address.parse(path, utf8=utf8, null=False, postmaster=True)
    except AddressError:
        return None
    return _make_rcpt_to(forward, None, None, ())


def _no_argument(verb: str, arg: str, event: Event) -> Event:
    if arg:
        raise _reject(501, "5.5.4", f"{verb} takes no argument")
    return event


def _utf8_allowed(verb: str, utf8: bool, smtputf8: bool) -> bool:
    if verb == "MAIL" or verb == "RCPT":
        # The address decides, with its own reply: RFC 6531 §3.5 answers a
        # non-ASCII address outside an SMTPUTF8 transaction with 550 (MAIL)
        # or 553 (RCPT), 5.6.7, not with 500.
        return True
    # RFC 6531 §3.7.4.2: with SMTPUTF8 offered, VRFY and EXPN take a string
    # that "may include Non-ASCII characters".
    return smtputf8 and verb in ("VRFY", "EXPN")


def _string_and_smtputf8(verb: str, arg: str, smtputf8: bool) -> tuple[str, bool]:
    # RFC 6531 §3.7.4.2: vrfy = "VRFY" SP String [ SP "SMTPUTF8" ]
    if not arg:
        raise _reject(501, "5.5.4", f"Syntax: {verb} string")
    head, sep, last = arg.rpartition(" ")
    if smtputf8 and sep and head and last.upper() == "SMTPUTF8":
        return head, True
    return arg, False


def parse_command(line: str, *, utf8: bool = False, smtputf8: bool = False) -> Event:
    """Turn one command line (decoded, without CRLF) into a command event.

    ``utf8`` admits UTF-8 addresses in RCPT (the transaction used SMTPUTF8);
    ``smtputf8`` (the server offered SMTPUTF8) admits UTF-8 strings and the
    SMTPUTF8 parameter in VRFY and EXPN (RFC 6531 §3.7.4.2).  Raises
    CommandSyntaxError with the reply for unknown verbs (500), unimplemented
    ones (502) and bad arguments (501).
    """
    verb, arg = split_verb(line)
    return parse_split_command(verb, arg, line, utf8=utf8, smtputf8=smtputf8)


def parse_split_command(
    verb: str, arg: str, line: str, *, utf8: bool = False, smtputf8: bool = False
) -> Event:
    """:func:`parse_command` for a line already split by :func:`split_verb`
    (the server's reader splits every line once)."""
    if verb in UNIMPLEMENTED_VERBS:
        raise _reject(502, "5.5.1", f"{verb} not implemented")
    if verb not in KNOWN_VERBS:
        raise _reject(500, "5.5.2", "Command unrecognized")
    if not line.isascii() and not _utf8_allowed(verb, utf8, smtputf8):
        raise _reject(500, "5.5.2", "Non-ASCII characters in command")
    try:
        # the commands of every transaction first
        if verb == "RCPT":
            return _rcpt_to(arg, utf8=utf8)
        if verb == "MAIL":
            return _mail_from(arg)
        if verb in ("EHLO", "HELO", "LHLO"):
            if not arg:
                raise _reject(501, "5.5.4", f"Syntax: {verb} hostname")
            return Helo(arg) if verb == "HELO" else Ehlo(arg)
        if verb == "DATA":
            return _no_argument(verb, arg, Data())
        if verb == "BDAT":
            parsed = parse_bdat_size(arg)
            tail = arg.partition(" ")[2]
            if parsed is None or parsed[0] is None or (tail and not parsed[1]):
                raise _reject(501, "5.5.4", "Syntax: BDAT size [LAST] (RFC 3030 §2)")
            return Bdat(parsed[0], last=parsed[1])
        if verb == "RSET":
            return _no_argument(verb, arg, Rset())
        if verb == "QUIT":
            return _no_argument(verb, arg, Quit())
        if verb == "STARTTLS":
            # RFC 3207 §4: "501 Syntax error (no parameters allowed)"
            return _no_argument(verb, arg, StartTLS())
        if verb == "NOOP":
            return Noop(arg)
        if verb == "HELP":
            return Help(arg)
        if verb in ("VRFY", "EXPN"):
            text, with_utf8 = _string_and_smtputf8(verb, arg, smtputf8)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise _reject(500, "5.5.2", "Invalid UTF-8 in command") from None
            kind = Vrfy if verb == "VRFY" else Expn
            return kind(text, smtputf8=with_utf8)
        # AUTH (RFC 4954 §4): AUTH mechanism [initial-response]
        words = arg.split(" ")
        if not arg or len(words) > 2:
            raise _reject(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
        return Auth(words[0].upper(), words[1] if len(words) == 2 else None)
    except CommandSyntaxError:
        raise
    except LocalProtocolError as exc:
        raise _reject(501, "5.5.4", str(exc)) from None


def format_command(event: Event, *, lmtp: bool = False) -> bytes:
    """The command line for ``event``, CRLF-terminated.

    ``lmtp`` writes ``Ehlo`` as LHLO (RFC 2033 §4.1).  Raises
    LocalProtocolError for events that are not commands.
    """
    if isinstance(event, Ehlo):
        line = f"{'LHLO' if lmtp else 'EHLO'} {event.domain}"
    elif isinstance(event, Helo):
        line = f"HELO {event.domain}"
    elif isinstance(event, MailFrom):
        params: list[tuple[str, str | None]] = []
        if event.size is not None:
            params.append(("SIZE", str(event.size)))
        if event.body is not None:
            params.append(("BODY", event.body))
        if event.smtputf8:
            params.append(("SMTPUTF8", None))
        if event.requiretls:
            params.append(("REQUIRETLS", None))
        if event.ret is not None:
            params.append(("RET", event.ret))
        if event.envid is not None:
            params.append(("ENVID", xtext_encode(event.envid)))
        if event.auth is not None:
            params.append(("AUTH", "<>" if event.auth == "<>" else xtext_encode(event.auth)))
        params.extend(event.extra)
        line = " ".join(
            filter(None, [f"MAIL FROM:{event.reverse_path.path()}", format_params(params)])
        )
    elif isinstance(event, RcptTo):
        params = []
        if event.notify is not None:
            params.append(("NOTIFY", ",".join(event.notify)))
        if event.orcpt is not None:
            params.append(("ORCPT", f"{event.orcpt[0]};{xtext_encode(event.orcpt[1])}"))
        params.extend(event.extra)
        line = " ".join(
            filter(None, [f"RCPT TO:{event.forward_path.path()}", format_params(params)])
        )
    elif isinstance(event, Bdat):
        line = f"BDAT {event.size}" + (" LAST" if event.last else "")
    elif isinstance(event, Auth):
        line = " ".join(filter(None, ["AUTH", event.mechanism, event.initial_response]))
    elif isinstance(event, AuthResponse):
        line = event.data
    elif isinstance(event, Noop | Help | Vrfy | Expn):
        verb = verb_of(event)
        text = event.topic if isinstance(event, Help) else event.text
        line = f"{verb} {text}" if text else verb
        if isinstance(event, Vrfy | Expn) and event.smtputf8:
            line += " SMTPUTF8"
    else:
        line = verb_of(event)  # DATA, RSET, QUIT, STARTTLS; raises for the rest
    return line.encode("utf-8") + b"\r\n"
