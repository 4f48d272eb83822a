"""The compiled modules' module-level names are Final (or type aliases).

mypyc compiles a module's ``Final`` names to C statics and looks every other
module-level name up in the module's dict at each use: 74 such look-ups a
message made up about a tenth of the compiled server's protocol work
(bench/README.md, "hot paths").  A constant added without ``Final`` would
quietly bring them back; this test says which one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from smtp_rtls._build import COMPILED

SRC = Path(__file__).resolve().parent.parent / "src" / "smtp_rtls"

# Rebound on purpose: tests compare the C functions of the compiled build
# with the Python they stand in for, in one process, by setting these to
# None (tests/test_framing_fast.py, tests/test_readers_command_line.py,
# tests/session/test_session_fast_paths.py).
NOT_FINAL = {
    ("_framing", "scan_data"),
    ("_framing", "first_bare"),
    ("_framing", "find_crlf"),
    ("_readers", "command_line"),
    ("session.server", "header_end_c"),
}


def _annotation_head(node: ast.expr) -> str:
    # "Final" for Final and Final[...], "TypeAlias" for a type alias
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _bound(target: ast.expr) -> list[str]:
    # the names an assignment binds (not ``table[key] = ...``: that binds none)
    if isinstance(target, ast.Name):
        return [] if target.id == "__all__" else [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _bound(element)]
    return []


def unmarked_names(source: str, module: str) -> list[str]:
    """The module-level names that ``source`` (of ``module``) binds by
    assignment and marks neither Final nor TypeAlias."""
    tree = ast.parse(source)
    names = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names.extend(name for target in node.targets for name in _bound(target))
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and _annotation_head(node.annotation) not in ("Final", "TypeAlias")
        ):
            names.append(node.target.id)
    return [name for name in names if (module, name) not in NOT_FINAL]


@pytest.mark.parametrize("module", COMPILED)
def test_module_level_names_of_compiled_modules_are_final(module: str) -> None:
    source = (SRC / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8")
    assert unmarked_names(source, module) == []


def test_the_check_sees_a_plain_constant() -> None:
    # the check itself: a plain assignment, a tuple unpacking and an
    # annotated non-Final name are reported; Final and TypeAlias are not,
    # nor the one name rebound on purpose
    source = (
        "from typing import Final, TypeAlias\n"
        "__all__ = ['A']\n"
        "A = 1\n"
        "b, c = 2, 3\n"
        "D: dict[str, int] = {}\n"
        "E: Final = 4\n"
        "F: Final[dict[str, int]] = {}\n"
        "G: TypeAlias = int | str\n"
        "scan_data = None\n"
        "F['x'] = 5\n"
    )
    assert unmarked_names(source, "probe") == ["A", "b", "c", "D", "scan_data"]
    assert unmarked_names(source, "_framing") == ["A", "b", "c", "D"]
