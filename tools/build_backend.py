"""The PEP 517 build backend: setuptools, asking for mypy as well when
``SMTP_RTLS_COMPILE=1`` wants the I/O-free core compiled with mypyc (see
``setup.py`` and docs/performance.rst)."""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the rest of the backend, unchanged)

# mypyc ships with mypy; its generated C needs no mypy at run time.
_COMPILER = ["mypy>=1.10"]


def _compiling() -> bool:
    return os.environ.get("SMTP_RTLS_COMPILE", "") == "1"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' build requirements, and mypy for a compiled build."""
    if not _compiling():
        return list(_setuptools.get_requires_for_build_wheel(config_settings))
    # setuptools runs setup.py to find its requirements, before mypy is
    # installed: setup.py leaves the compiled modules out for that run.
    os.environ["SMTP_RTLS_FINDING_REQUIRES"] = "1"
    try:
        return [*_setuptools.get_requires_for_build_wheel(config_settings), *_COMPILER]
    finally:
        del os.environ["SMTP_RTLS_FINDING_REQUIRES"]
