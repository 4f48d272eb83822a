"""slot_filler (src/smtp_rtls/_slots.py) and its C form (src/smtp_rtls/_fill.c).

The core makes its per-command objects with fillers instead of the classes'
constructors: each filler the core holds must make exactly what the
constructor makes, and a filler must refuse anything that is not a writable
slot of its class, since the C form writes object references at the offsets
it finds then.  The tests run against whichever form the build has; those
marked ``compiled_only`` check the C form itself (its memory, under memcheck).
"""

from __future__ import annotations

import gc
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
from hypothesis import given

from client_helpers import ready
from memcheck_helpers import memcheck
from smtp_rtls import _address, _commands, _readers, _server
from smtp_rtls._address import Address
from smtp_rtls._build import compiled_modules
from smtp_rtls._client_rules import ClientTransaction
from smtp_rtls._events import (
    EndOfMessage,
    Envelope,
    MailFrom,
    MessageData,
    RcptTo,
    Rset,
)
from smtp_rtls._reply import EnhancedStatus, Reply
from smtp_rtls._slots import _python_filler, slot_filler
from smtp_rtls.session import client as session_client
from smtp_rtls.session import server as session_server
from smtp_rtls.session._client_types import SendResult
from smtp_rtls.session._types import Call, SessionEnvelope, SessionInfo
from smtp_rtls.session._types import Read as ServerRead
from smtp_rtls.session._types import Write as ServerWrite
from smtp_rtls.session.requests import Write

COMPILED = "_fill" in compiled_modules()


@attrs.frozen(slots=True)
class Pair:
    left: Any
    right: Any


@attrs.frozen(slots=True)
class Triple(Pair):
    # a subclass adds a slot after its base's: the offsets differ per class
    third: Any


@attrs.define(slots=True)
class Mutable:
    # not frozen: the Python form assigns instead of calling __set__
    left: Any
    right: Any = None


class Plain:
    __slots__ = ("a", "b")
    c = 1

    @property
    def d(self) -> int:
        return 2


class Unrelated:
    __slots__ = ("x",)


class Borrower:
    # a slot descriptor of another class, stored on this one: writing at its
    # offset would write outside a Borrower
    __slots__ = ()
    x = Unrelated.__dict__["x"]


def test_the_build_uses_the_c_form_when_compiled() -> None:
    filler = slot_filler(Pair, "left", "right")
    assert (type(filler).__name__ == "Filler") is COMPILED


# Both forms, whichever the build uses: the Python one runs in either build.
FORMS = [
    pytest.param("python", id="python"),
    pytest.param("c", id="c", marks=pytest.mark.compiled_only(reason="the C form, _fill.c")),
]


def filler_of(form: str, cls: type[Any], *names: Any) -> Any:
    if form == "c":
        from smtp_rtls._fill import Filler

        return Filler(cls, names)
    return _python_filler(cls, names)


# -- what the fillers make ---------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@given(st.lists(st.integers() | st.text() | st.none(), min_size=3, max_size=3))
def test_a_filler_makes_what_the_constructor_makes(form: str, values: list[Any]) -> None:
    triple = filler_of(form, Triple, "left", "right", "third")(*values)
    assert type(triple) is Triple
    assert triple == Triple(*values)
    assert hash(triple) == hash(Triple(*values))
    assert (triple.left, triple.right, triple.third) == tuple(values)


@pytest.mark.parametrize("form", FORMS)
def test_a_filler_of_a_mutable_class_makes_what_the_constructor_makes(form: str) -> None:
    made = filler_of(form, Mutable, "right", "left")(2, 1)
    assert type(made) is Mutable and made == Mutable(1, 2)
    made.left = 3  # still an ordinary object of its class
    assert made == Mutable(3, 2)


@pytest.mark.parametrize("form", FORMS)
def test_names_may_come_in_any_order(form: str) -> None:
    assert filler_of(form, Pair, "right", "left")(1, 2) == Pair(2, 1)


@pytest.mark.parametrize("form", FORMS)
def test_a_slot_not_named_is_left_unset(form: str) -> None:
    pair = filler_of(form, Pair, "left")(1)
    assert pair.left == 1
    with pytest.raises(AttributeError):
        pair.right  # noqa: B018 - the read is the test


@pytest.mark.parametrize("form", FORMS)
def test_no_names_make_an_object_with_every_slot_unset(form: str) -> None:
    plain = filler_of(form, Plain)()
    assert type(plain) is Plain
    with pytest.raises(AttributeError):
        plain.a  # noqa: B018 - the read is the test


@pytest.mark.parametrize("form", FORMS)
def test_the_objects_hold_their_values_and_release_them(form: str) -> None:
    value = object()
    before = sys.getrefcount(value)
    make = filler_of(form, Pair, "left", "right")
    pairs = [make(value, value) for _ in range(100)]
    assert sys.getrefcount(value) == before + 200
    assert all(gc.is_tracked(pair) for pair in pairs)  # cycles through them are found
    del pairs
    assert sys.getrefcount(value) == before


@pytest.mark.parametrize("form", FORMS)
def test_a_cycle_through_a_filled_object_is_collected(form: str) -> None:
    make = filler_of(form, Pair, "left", "right")
    box: list[Any] = []
    pair = make(box, None)
    box.append(pair)
    collected = []
    marker = object.__new__(type("Marker", (), {"__del__": lambda self: collected.append(1)}))
    box.append(marker)
    del box, pair, marker
    gc.collect()
    assert collected == [1]


# -- what a filler refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "names", "error"),
    [
        (Plain, ("c",), TypeError),  # a class attribute
        (Plain, ("d",), TypeError),  # a property
        (Plain, ("nope",), AttributeError),
        (Plain, (1,), TypeError),
        (Borrower, ("x",), TypeError),  # another class's slot
        (slice, ("start",), TypeError),  # read-only members of a C type
        (Plain, ("a", "a"), ValueError),
    ],
)
@pytest.mark.parametrize("form", FORMS)
def test_a_filler_refuses_what_is_not_a_writable_slot(
    form: str, cls: type, names: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        filler_of(form, cls, *names)


@pytest.mark.parametrize("form", FORMS)
def test_a_class_of_variable_size_is_refused(form: str) -> None:
    class Number(int):
        __slots__ = ()

    with pytest.raises(TypeError):
        filler_of(form, Number)


@pytest.mark.parametrize("form", FORMS)
def test_a_filler_takes_exactly_its_arguments_by_position(form: str) -> None:
    make = filler_of(form, Pair, "left", "right")
    with pytest.raises(TypeError):
        make(1)
    with pytest.raises(TypeError):
        make(1, 2, 3)
    with pytest.raises(TypeError):
        make(1, right=2)


@pytest.mark.compiled_only(reason="the C form, _fill.c")
def test_the_c_filler_checks_its_own_arguments() -> None:
    from smtp_rtls._fill import Filler

    with pytest.raises(TypeError):
        Filler("Pair", ("left",))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Filler(Pair, ["left"])  # type: ignore[arg-type]
    filler = Filler(Pair, ("left", "right"))
    assert filler.cls is Pair
    assert repr(filler) == f"<Filler of {Pair.__name__}, 2 slots>"
    assert Pair in gc.get_referents(filler)


# -- the core's fillers, against the constructors --------------------------------


def test_the_core_fillers_make_what_the_constructors_make() -> None:
    mail = MailFrom("a@example.org")
    rcpt = RcptTo("b@example.org")
    reply = Reply(250, "OK", "2.0.0")
    envelope = Envelope(mail, (rcpt,))
    info = SessionInfo("mx.example.org", ("127.0.0.1", 25), None, "client", None, {})
    cases: list[tuple[Any, Any]] = [
        (_address._make_address("a", "example.org"), Address("a", "example.org")),
        (
            _commands._make_mail_from(
                Address("a", "example.org"), 10, "8BITMIME", True, True, "HDRS", None, None, ()
            ),
            MailFrom(
                "a@example.org",
                size=10,
                body="8BITMIME",
                smtputf8=True,
                requiretls=True,
                ret="HDRS",
            ),
        ),
        (
            _commands._make_rcpt_to(Address("b", "example.org"), None, None, (("X-Y", "1"),)),
            RcptTo("b@example.org", extra=[("X-Y", "1")]),
        ),
        (_server._make_envelope(mail, (rcpt,)), envelope),
        (_server._message_data(b"data"), MessageData(b"data")),
        (_server._end_of_message(envelope), EndOfMessage(envelope)),
        (
            _readers._make_reply(250, ("OK",), EnhancedStatus(2, 0, 0), None, None),
            reply,
        ),
        (session_client._write_request(b"x", 5.0), Write(b"x", 5.0)),
        (
            session_client._send_result(reply, ((rcpt, reply),), reply),
            SendResult(reply, ((rcpt, reply),), reply),
        ),
        (
            session_server._make_session_envelope(mail, (rcpt,), None, info),
            SessionEnvelope(mail, (rcpt,), None, info),
        ),
        (
            session_server._session_info(
                "mx.example.org", ("127.0.0.1", 25), None, "client", None, {}
            ),
            info,
        ),
    ]
    for made, built in cases:
        assert type(made) is type(built)
        for field in attrs.fields(type(built)):
            assert getattr(made, field.name) == getattr(built, field.name), (built, field.name)
        assert made == built


@pytest.mark.parametrize(
    ("made", "built"),
    [
        (session_server._call(1, "on_mail", (2, 3)), Call(1, "on_mail", (2, 3))),
        (session_server._write(b"250 OK\r\n"), ServerWrite(b"250 OK\r\n")),
        (session_server._read(300.0, 600.0), ServerRead(300.0, 600.0)),
    ],
)
def test_the_server_requests_are_what_the_constructors_make(made: Any, built: Any) -> None:
    # (Call compares by identity: field by field)
    assert type(made) is type(built)
    assert _fields(made) == _fields(built)


def test_a_transaction_is_what_its_constructor_makes() -> None:
    conn = ready("PIPELINING")
    transactions = []
    for sender in ("a@example.org", "b@example.org"):
        mail = MailFrom(sender)
        conn.send(mail)
        txn = conn.transaction
        assert txn is not None and type(txn) is ClientTransaction
        assert _fields(txn) == _fields(ClientTransaction(mail))
        conn.send(RcptTo("c@example.org"))
        conn.receive_data(b"250 OK\r\n250 OK\r\n")
        assert conn.next_event().code == 250 and conn.next_event().code == 250
        conn.send(Rset())
        conn.receive_data(b"250 OK\r\n")
        conn.next_event()
        transactions.append(txn)
    # each has a list of its own
    first, second = transactions
    assert len(first.rcpt_replies) == len(second.rcpt_replies) == 1
    assert first.rcpt_replies is not second.rcpt_replies


def _fields(obj: Any) -> dict[str, Any]:
    return {field.name: getattr(obj, field.name) for field in attrs.fields(type(obj))}


@pytest.mark.pure_only(
    reason="mypyc checks Address.parse's result by exact type, so the compiled build "
    "refuses subclasses of Address (as before fillers)"
)
def test_an_address_subclass_gets_its_own_filler() -> None:
    class Local(Address):
        pass

    parsed = Local.parse("<a@example.org>")
    assert type(parsed) is Local
    assert (parsed.local_part, parsed.domain) == ("a", "example.org")
    assert type(Address.parse("<a@example.org>")) is Address


# -- the C form under memcheck -------------------------------------------------------

DRIVER = textwrap.dedent(
    """
    import gc, importlib.util, sys

    spec = importlib.util.spec_from_file_location("smtp_rtls._fill", sys.argv[1])
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)

    class Base:
        __slots__ = ("a", "b", "__weakref__")

    class Wide(Base):
        __slots__ = tuple(f"s{i}" for i in range(40))

    class Both(Wide):
        __slots__ = ("z",)

    made = 0
    for cls, names in (
        (Base, ("a", "b")),
        (Wide, ("a", *Wide.__slots__, "b")),
        (Both, ("z", "s39", "a")),
        (Both, ()),
    ):
        filler = fill.Filler(cls, names)
        for i in range(200):
            values = [object() for _ in names]
            obj = filler(*values)
            assert all(getattr(obj, n) is v for n, v in zip(names, values))
            del obj
            made += 1
        try:
            filler(*names, None)
        except TypeError:
            pass
        else:
            raise AssertionError("a wrong count of arguments was taken")
        del filler
        gc.collect()
    print(made)
    """
)


@pytest.mark.compiled_only(reason="the C form, _fill.c")
def test_the_c_filler_writes_only_inside_its_objects(tmp_path: Path) -> None:
    # Each object is its own malloc block with PYTHONMALLOC=malloc, so a slot
    # written at a wrong offset past the object is an invalid write.
    from smtp_rtls import _fill

    done = memcheck(tmp_path, DRIVER, str(_fill.__file__))
    assert done.returncode == 0, done.stderr[-4000:]
    assert int(done.stdout.split()[-1]) == 800
