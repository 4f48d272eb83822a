"""docs/differences.rst and the table of tests/differential/classes.py say
the same: every class with the RFC sections that decide it and a test that
exists, and no class on the page that the tests do not know."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .classes import DIFFERENCES

HERE = Path(__file__).resolve().parent
PAGE = HERE.parent.parent / "docs" / "differences.rst"


def rows() -> dict[str, str]:
    """Each list-table row of the page, by the class named in its first cell."""
    text = PAGE.read_text()
    found = {}
    for row in re.split(r"\n   \* - ", text)[1:]:
        m = re.match(r"``([a-z0-9-]+)`` \(", row)
        if m:
            found[m[1]] = " ".join(row.split("\n\n")[0].split())
    return found


def test_every_class_is_on_the_page_with_its_rfc_sections_and_test() -> None:
    table = rows()
    for difference in DIFFERENCES:
        row = table.get(difference.name)
        assert row is not None, f"{difference.name} is not on docs/differences.rst"
        assert f"({difference.kind.replace('-', ' ')})" in row, difference.name
        for rfc in re.findall(r"RFC \d+", difference.rfc):
            assert rfc in row, (difference.name, rfc)
        for section in re.findall(r"§[\d.]+\d", difference.rfc):
            assert section in row, (difference.name, section)
        assert f"``{difference.test}``" in row, difference.name


def test_the_page_names_no_unknown_class() -> None:
    assert set(rows()) == {d.name for d in DIFFERENCES}


def test_every_test_named_on_the_page_exists() -> None:
    named = set(re.findall(r"``(test_\w+\.py)::(test_\w+)``", PAGE.read_text()))
    assert named
    for file, name in sorted(named):
        tree = ast.parse((HERE / file).read_text())
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in functions, f"{file}::{name}"
