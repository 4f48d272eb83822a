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
    "statetables",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# attrs generates __init__ signatures and annotations that refer to private
# helpers; nitpicky cross-references would fail on those, so stay lenient there.
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["ref.python"]
