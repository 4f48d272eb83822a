"""Objects of the core's frozen classes made from fields checked already.

The core makes an object per command and per reply (events, replies, views,
results) from fields its parser or its rules have checked.  The classes'
``__init__`` would check them again, so :func:`slot_filler` makes them
without it: allocated as ``object.__new__`` does, each slot filled as its
own ``__set__`` would fill it.  In the compiled build that is one call of
the C module ``_fill`` per object; otherwise a Python function making the
same calls.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def slot_filler(cls: type[T], *names: str) -> Callable[..., T]:
    """A function of ``len(names)`` positional arguments that returns an
    object of ``cls`` whose slot ``names[i]`` holds argument ``i``, made
    without ``cls.__init__`` (and its checks): only for fields the caller
    has checked.  Slots not named are left unset.

    Raises :exc:`TypeError` if a name is not a writable slot of ``cls``, and
    :exc:`ValueError` if a name is given twice."""
    try:
        from ._fill import Filler
    except ImportError:
        return _python_filler(cls, names)
    filler: Callable[..., T] = Filler(cls, names)
    return filler


def _python_filler(cls: type[T], names: tuple[str, ...]) -> Callable[..., T]:
    # The same function written out for this class (as attrs writes its
    # __init__): one Python call per object, no loop over the slots.  First
    # the checks of _fill.c, so that both builds refuse the same classes.
    if cls.__itemsize__:
        raise TypeError(f"{cls.__name__} has items of variable size")
    setters: dict[str, Any] = {"new": object.__new__, "cls": cls}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"slot names are str, not {type(name).__name__}")
        descr = getattr(cls, name)
        if type(descr) is not types.MemberDescriptorType:
            raise TypeError(f"{cls.__name__}.{name} is not a slot")
        owner = descr.__objclass__
        if name not in _declared_slots(owner):
            # a member of a C type (read-only, or not an object reference)
            raise TypeError(f"{cls.__name__}.{name} is not a writable slot")
        if not issubclass(cls, owner):
            raise TypeError(f"{cls.__name__}.{name} is not a slot of {cls.__name__}")
        setters[f"set{i}"] = descr.__set__
    if len(set(names)) != len(names):
        raise ValueError(f"a slot named twice in {names!r}")
    params = "".join(f"v{i}, " for i in range(len(names))) + "/" if names else ""
    if cls.__setattr__ is object.__setattr__ and not any(n.startswith("__") for n in names):
        # Not frozen: a plain assignment, which the interpreter specialises
        # for slots, costs less than calling the slot's __set__.
        fills = [f"    obj.{name} = v{i}\n" for i, name in enumerate(names)]
    else:
        fills = [f"    set{i}(obj, v{i})\n" for i in range(len(names))]
    source = "".join(
        [f"def fill({params}):\n", "    obj = new(cls)\n", *fills, "    return obj\n"]
    )
    # made above from indices and slot names, which are identifiers
    # (__slots__ admits nothing else)
    exec(source, setters)
    fill: Callable[..., T] = setters["fill"]
    fill.__qualname__ = fill.__name__ = f"fill_{cls.__name__}"
    return fill


def _declared_slots(owner: type) -> set[str]:
    # the names of the members __slots__ made in owner, private ones mangled
    slots = owner.__dict__.get("__slots__", ())
    if isinstance(slots, str):
        slots = (slots,)
    prefix = "_" + owner.__name__.lstrip("_")
    return {
        prefix + slot if slot.startswith("__") and not slot.endswith("__") else slot
        for slot in slots
    }
