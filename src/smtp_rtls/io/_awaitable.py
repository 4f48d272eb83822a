"""Whether a handler's result must be awaited: ``inspect.isawaitable``'s
answer, remembered per type for the results that are not.

The adapters ask it for every handler call that returns something other
than None or a Reply: once per message for the writer that
``on_message`` returns.  ``inspect.isawaitable`` answers a writer that is
not awaitable only after an ``isinstance`` against the ``Awaitable`` ABC,
a Python call and an ABC check per message (about 3 % of the compiled
asyncio server's instructions per message, ``bench/instructions.py``).
What that ABC check says depends only on the object's class and on the
ABC registry, so the answer is kept per class with the registry's
version (``abc.get_cache_token()``): a class registered as ``Awaitable``
later is asked again.  Generators are always asked (a generator-based
coroutine is one by its code's flags, not its class), as is an object
whose ``__class__`` is not its type (a proxy).
"""

from __future__ import annotations

import abc
import inspect
import types
from typing import Any, Final

__all__ = ["awaitable"]

# class -> the registry's version when the class was found not awaitable
_PLAIN: Final[dict[type, object]] = {}
_PLAIN_MAX: Final = 256


def awaitable(result: Any) -> bool:
    """``inspect.isawaitable(result)``, remembered for classes whose
    instances are not."""
    kind = type(result)
    token = _PLAIN.get(kind)
    if token is not None and token == abc.get_cache_token():
        return False
    if inspect.isawaitable(result):
        return True
    if kind is not types.GeneratorType and result.__class__ is kind:
        if len(_PLAIN) >= _PLAIN_MAX:
            _PLAIN.clear()
        _PLAIN[kind] = abc.get_cache_token()
    return False
