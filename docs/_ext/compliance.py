"""``.. compliance-matrix::``: the peer x feature table that the interop tests
wrote (docs/_generated/compliance.json, see tests/conftest_compliance.py).

Built after the test run (scripts/test.sh runs pytest, then sphinx-build);
without a run the page says so instead of showing a table nobody checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

DATA = Path(__file__).resolve().parent.parent / "_generated" / "compliance.json"
MARK = {"pass": "passed", "fail": "**FAILED**", "skip": "skipped"}


class ComplianceMatrix(SphinxDirective):
    """Render the matrix as a list-table."""

    def run(self) -> list[nodes.Node]:
        if not DATA.exists():
            para = nodes.paragraph(
                text="No interop run has written the matrix here yet: run the tests "
                "(bash scripts/test.sh), then build the docs."
            )
            return [para]
        self.env.note_dependency(str(DATA))
        data: dict[str, Any] = json.loads(DATA.read_text())
        lines = [".. list-table::", "   :header-rows: 1", "", "   * - peer (version)"]
        lines += ["     - feature", "     - result", "     - tests"]
        for row in data["rows"]:
            version = data["versions"].get(row["peer"], "?")
            lines += [
                f"   * - {row['peer']} ({version})",
                f"     - {row['feature']}",
                f"     - {MARK.get(row['status'], row['status'])}",
                f"     - {row['tests']}",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=str(DATA)), 0, container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive."""
    app.add_directive("compliance-matrix", ComplianceMatrix)
    return {"parallel_read_safe": True}
