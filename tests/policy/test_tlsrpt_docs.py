"""docs/tlsrpt.rst's console examples run as doctests, so the operator's page stays true."""

from __future__ import annotations

import doctest
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_tlsrpt_page_examples_print_what_the_page_shows() -> None:
    """RFC 8460 §3 (the record), §4.4 (the report), §5.1 (its name), §5.2 (gzip)."""
    result = doctest.testfile(
        str(DOCS / "tlsrpt.rst"), module_relative=False, optionflags=doctest.ELLIPSIS
    )
    assert result.attempted >= 15
    assert result.failed == 0
