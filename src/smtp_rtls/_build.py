"""Which modules a compiled build of smtp_rtls compiles.

``setup.py`` reads :data:`COMPILED` from this file (without importing the
package) and compiles those with mypyc; it also builds the modules of
:data:`WRITTEN_IN_C`.  :func:`compiled_modules` says which of them this
installation runs compiled.
"""

from __future__ import annotations

import importlib
from typing import Any

# The core's hot modules and the session drivers, by name under smtp_rtls.
# Not here: _abnf (constants only); the modules of attrs classes (_events,
# _reply, _capabilities, session._types, session._client_types), which mypyc
# does not compile, and of the classes applications subclass
# (session._types); the adapters, whose time is mostly the event loop's and
# the kernel's, except for the asyncio server's connection, which fulfils
# every request of its session (io._asyncio_protocol), and the adapters'
# check of a handler's result (io._awaitable); compiling the blocking
# client's loop the same way saved nothing (bench/README.md, "Hot paths").
COMPILED = (
    "_address",
    "_client",
    "_client_rules",
    "_commands",
    "_framing",
    "_params",
    "_readers",
    "_server",
    "_server_rules",
    "_state",
    "_writers",
    "io._asyncio_protocol",
    "io._awaitable",
    "session.client",
    "session.server",
)


# Module-level names in the modules of COMPILED are Final (or TypeAlias):
# mypyc compiles a Final name to a C static, and looks any other
# module-level name up in the module's dict at each use.  For the same
# reason, the per-message paths use Final aliases (``_Reply: Final =
# Reply``) of the names they import from modules mypyc does not compile
# (the attrs events, Reply, the session's requests, the sentinels).  Both
# together took the compiled server from 74 dict look-ups per message to 5
# (bench/README.md, "Hot paths"); tests/test_build_constants.py keeps the
# first rule.

# Modules with no Python source, built from src/smtp_rtls/NAME.c; the code
# that uses one falls back to pure Python when it is absent.
WRITTEN_IN_C = ("_speedups", "_fill")


def compiled_modules() -> list[str]:
    """The modules of :data:`COMPILED` and :data:`WRITTEN_IN_C` that this
    installation runs as extension modules (none in the default, pure-Python
    build)."""
    out = []
    for name in COMPILED:
        module = importlib.import_module(f"smtp_rtls.{name}")
        if not (module.__file__ or "").endswith(".py"):
            out.append(name)
    for name in WRITTEN_IN_C:
        try:
            importlib.import_module(f"smtp_rtls.{name}")
        except ImportError:
            continue
        out.append(name)
    return out


def speedup(name: str) -> Any:
    """The C function ``name`` of ``_speedups`` in a compiled build; None in
    the pure build, where the module is not built.  The modules that use
    one keep it in a module global of their own (not Final), so that tests
    can set it to None and compare it with the Python it stands in for."""
    try:
        from . import _speedups
    except ImportError:
        return None
    return getattr(_speedups, name)


def describe() -> str:
    """``pure``, or how much of the core this installation runs compiled
    (for reports: the pytest header, the benchmarks)."""
    compiled = compiled_modules()
    if not compiled:
        return "pure"
    total = len(COMPILED) + len(WRITTEN_IN_C)
    return f"compiled ({len(compiled)} of {total} modules: mypyc, and C)"
