"""Builds smtp_rtls; everything but the optional compiled core is in pyproject.toml.

With ``SMTP_RTLS_COMPILE=1`` in the environment, the modules of the I/O-free
core named in ``src/smtp_rtls/_build.py`` are compiled with mypyc
(type-checked Python to C extension modules, the way black and mypy ship
themselves), about twice as fast per command (bench/README.md), and the one
modules written in C, ``_speedups.c`` (DataReader's one-pass scan of message
content) and ``_fill.c`` (the core's objects made in one call), are built.  Without it,
the default, smtp_rtls is pure Python and behaves the same: the test command
runs the suite against both builds.  A compiled build needs a C compiler and
the Python headers; do not combine it with an editable install
(``pip install -e``), where the compiled modules would shadow the source
being edited.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from setuptools import Extension, setup


def _build_names(constant: str) -> list[str]:
    # read, not imported: the package's own imports are not installed yet
    tree = ast.parse(Path("src/smtp_rtls/_build.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == constant:
            return list(ast.literal_eval(node.value))
    raise RuntimeError(f"src/smtp_rtls/_build.py has no {constant}")


def _ext_modules() -> list[object]:
    if os.environ.get("SMTP_RTLS_COMPILE", "") != "1":
        return []
    if os.environ.get("SMTP_RTLS_FINDING_REQUIRES"):
        return []  # tools/build_backend.py asks for mypy first
    from mypyc.build import mypycify

    paths = [f"src/smtp_rtls/{name.replace('.', '/')}.py" for name in _build_names("COMPILED")]
    # and the modules written in C (_build.WRITTEN_IN_C)
    written_in_c = [
        Extension(f"smtp_rtls.{name}", [f"src/smtp_rtls/{name}.c"], extra_compile_args=["-O2"])
        for name in _build_names("WRITTEN_IN_C")
    ]
    return [*mypycify(paths, opt_level="3"), *written_in_c]


setup(ext_modules=_ext_modules())
