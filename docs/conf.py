"""Sphinx configuration for the smtp_rtls documentation."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE / "_ext"))

project = "smtp_rtls"
author = "smtp_rtls developers"
copyright = "2026, smtp_rtls developers"
release = "0.1.0.dev0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinx.ext.graphviz",
    "statetables",
    "publicnames",
    "compliance",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Every field and enum member is listed, documented or not, so that references
# to it resolve.  Note: these defaults override a directive's own member list
# (":members: a, b"); document a few names of a module with separate entries.
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
# Every cross-reference must resolve (scripts/test.sh also passes -n).  Public
# names are documented where users import them (see _ext/publicnames.py, which
# also links standard-library names); the few targets below have no entry on
# purpose.
nitpicky = True
nitpick_ignore = [
    # The type variable of the Lookup alias (the look-up's return type).
    ("py:class", "smtp_rtls.policy.requests.T"),
    ("py:obj", "smtp_rtls.policy.requests.T"),
    # the adapters' private shared bases (their methods are documented on
    # each adapter's Server and Client)
    ("py:class", "smtp_rtls.io._common.AsyncClientBase"),
    ("py:class", "smtp_rtls.io._common.ServerBase"),
    ("py:class", "smtp_rtls.io._common.ServeSettings"),
    ("py:class", "ServeSettings"),
    # the relay's deliver function type (a Callable alias)
    ("py:class", "DeliverFunction"),
    # trio's own types (trio is an optional extra; its docs are not linked)
    ("py:class", "trio.abc.Stream"),
    ("py:class", "trio.SocketStream"),
    # the same for a session driver's result type
    ("py:class", "smtp_rtls.session.requests.T"),
    ("py:obj", "smtp_rtls.session.requests.T"),
]
# The state diagrams (docs/_ext/statetables.py) are drawn by Graphviz's dot
# (Debian: graphviz, installed by tests/lab/install.sh) as SVG.
graphviz_output_format = "svg"
html_theme = "alabaster"
exclude_patterns = ["_build"]
