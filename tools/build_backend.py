"""The PEP 517 build backend: setuptools, asking for more when
``SMTP_RTLS_COMPILE=1`` wants the I/O-free core compiled with mypyc (see
``setup.py`` and docs/performance.rst): mypy, whose mypyc compiles it, and
smtp_rtls's own dependencies, whose types mypyc reads while it compiles."""

from __future__ import annotations

import os
import tomllib
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the rest of the backend, unchanged)

# mypyc ships with mypy; its generated C needs no mypy at run time.
_COMPILER = ["mypy>=1.10"]


def _compiling() -> bool:
    return os.environ.get("SMTP_RTLS_COMPILE", "") == "1"


# The extras whose types mypy needs too: it follows the compiled modules'
# imports into smtp_rtls.policy, whose DANE module imports cryptography.
_TYPED_EXTRAS = ("dane",)


def _dependencies() -> list[str]:
    with open("pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *(r for name in _TYPED_EXTRAS for r in extras[name])]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' build requirements; for a compiled build, mypy and the
    dependencies too."""
    if not _compiling():
        return list(_setuptools.get_requires_for_build_wheel(config_settings))
    # setuptools runs setup.py to find its requirements, before mypy is
    # installed: setup.py leaves the compiled modules out for that run.
    os.environ["SMTP_RTLS_FINDING_REQUIRES"] = "1"
    try:
        own = _setuptools.get_requires_for_build_wheel(config_settings)
    finally:
        del os.environ["SMTP_RTLS_FINDING_REQUIRES"]
    return [*own, *_COMPILER, *_dependencies()]
