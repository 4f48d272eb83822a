"""Sphinx extension: link every name to where users import it from.

The API reference documents each public name at its public path
(``smtp_rtls.MailFrom``, ``smtp_rtls.policy.Verdict``), with
``.. currentmodule::`` and ``autoclass`` entries in ``api.rst``.  The objects
keep their real ``__module__`` (``smtp_rtls._events``), so autodoc still reads
the ``#:`` comments of their fields and viewcode still finds their source; but
the annotations autodoc renders name that real path.  Two
``missing-reference`` handlers make those references resolve:

* ``package.submodule.Name`` goes to the entry of ``package.Name`` when
  ``package`` is one of ``_PUBLIC_PACKAGES`` and both paths are the same
  object (``smtp_rtls._events.Event`` -> ``smtp_rtls.Event``,
  ``smtp_rtls.policy.verdict.check`` -> ``smtp_rtls.policy.check``).
* A standard-library name (``collections.abc.Generator``, ``ssl.SSLSocket``)
  links to docs.python.org when it exists in an imported standard-library
  module.  The build is offline, so there is no intersphinx inventory.

Any other unresolved reference still fails the nitpicky build.
"""

from __future__ import annotations

import sys
from types import ModuleType

from docutils import nodes
from docutils.nodes import Element, Node
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.typing import ExtensionMetadata

# The packages whose ``__all__`` names are documented at the package level,
# the most specific first.
_PUBLIC_PACKAGES = ("smtp_rtls.policy", "smtp_rtls")

_PYTHON_DOCS = "https://docs.python.org/3/library/"


def _public_alias(target: str) -> str | None:
    """``package.submodule.Name[.attr]`` as ``package.Name[.attr]``, when
    ``package`` is documented at the package level and both name the same
    object."""
    for package in _PUBLIC_PACKAGES:
        if not target.startswith(package + "."):
            continue
        rest = target.removeprefix(package + ".").split(".")
        top = sys.modules.get(package)
        submodule = sys.modules.get(f"{package}.{rest[0]}")
        if len(rest) < 2 or top is None or submodule is None:
            continue
        name = rest[1]
        if name in getattr(top, "__all__", ()) and getattr(submodule, name, None) is getattr(
            top, name
        ):
            return ".".join((package, name, *rest[2:]))
    return None


def _link_alias(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element
) -> Node | None:
    if node.get("refdomain") != "py":
        return None
    alias = _public_alias(node.get("reftarget", ""))
    if alias is None:
        return None
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], alias, node, contnode
    )


def _stdlib_module(target: str) -> tuple[ModuleType, list[str]] | None:
    """The longest imported standard-library module ``target`` starts with,
    and the attribute path after it."""
    parts = target.split(".")
    if parts[0] not in sys.stdlib_module_names:
        return None
    for i in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None:
            return module, parts[i:]
    return None


def _link_stdlib(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element
) -> Node | None:
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    found = _stdlib_module(target)
    if found is None:
        return None
    module, attributes = found
    value: object = module
    for attribute in attributes:
        if not hasattr(value, attribute):
            return None  # not a real name: leave the warning
        value = getattr(value, attribute)
    page = module.__name__.lower()
    anchor = target if attributes else f"module-{module.__name__}"
    reference = nodes.reference(
        "", "", internal=False, refuri=f"{_PYTHON_DOCS}{page}.html#{anchor}", reftitle=target
    )
    reference += contnode
    return reference


def setup(app: Sphinx) -> ExtensionMetadata:
    app.connect("missing-reference", _link_alias)
    app.connect("missing-reference", _link_stdlib)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
