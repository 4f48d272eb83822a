"""Sphinx extension: draw the session state tables of ``smtp_rtls._state``.

``.. smtp-state-table:: smtp`` (or ``lmtp``) renders ``SMTP_TRANSITIONS``
(or ``LMTP_TRANSITIONS``) of ``smtp_rtls._state`` as a table of command x
state: each cell gives where the session goes after the command's reply, by
reply class when the classes differ (``2xx READY; 4xx, 5xx stay``), and an
empty cell means the command is out of sequence there (the server answers 503
by itself).  The table is read from the module at build time, so the
documentation cannot drift from the code.

A cell is read from either form of transition ``_state`` has used: a
``(on_positive, on_negative)`` pair, or a ``Step`` with ``replies`` (reply
class -> state, ``None`` for "stay") and ``on_command`` (the state entered as
soon as the command is read).

``.. smtp-state-list::`` lists every state of ``smtp_rtls._state.State`` with
the documentation the code gives it (a ``#:`` comment, or a trailing one).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import ExtensionMetadata

from smtp_rtls import _state
from smtp_rtls._state import State

# The order a session meets the commands in, so the table reads top to bottom.
_VERB_ORDER = (
    "GREETING",
    "EHLO",
    "HELO",
    "LHLO",
    "STARTTLS",
    "TLS",
    "AUTH",
    "MAIL",
    "RCPT",
    "DATA",
    "EOM",
    "BDAT",
    "BDAT LAST",
    "RSET",
    "NOOP",
    "HELP",
    "VRFY",
    "EXPN",
    "QUIT",
    "CLOSE",
)

# state -> verb -> transition (a pair or a Step, see the module docstring)
Table = Mapping[State, Mapping[str, Any]]


def _name(state: State | None) -> str:
    return "stay" if state is None else f"``{state.name}``"


def _by_class(replies: Mapping[int, State | None]) -> str:
    targets = list(dict.fromkeys(replies.values()))
    if len(targets) == 1:
        return _name(targets[0])
    parts = []
    for target in targets:
        classes = ", ".join(f"{k}xx" for k in sorted(replies) if replies[k] == target)
        parts.append(f"{classes} {_name(target)}")
    return "; ".join(parts)


def _cell(transition: Any) -> str:
    if transition is None:
        return ""
    if isinstance(transition, tuple):
        positive, negative = transition
        if positive == negative:
            return _name(positive)
        return f"{_name(positive)} / {_name(negative)}"
    cell = _by_class(transition.replies) if transition.replies else ""
    if transition.on_command is not None:
        at_once = f"{_name(transition.on_command)} at once"
        cell = f"{at_once}, then {cell}" if cell else at_once
    return cell


def table_rst(table: Table) -> list[str]:
    """The ``list-table`` source for one transition table."""
    states = list(table)
    verbs = [v for v in _VERB_ORDER if any(v in table[s] for s in states)]
    verbs += sorted({v for s in states for v in table[s]} - set(verbs))
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :stub-columns: 1",
        "",
        "   * - command",
    ]
    lines += [f"     - ``{s.name}``" for s in states]
    for verb in verbs:
        lines.append(f"   * - {verb}")
        lines += [f"     - {_cell(table[s].get(verb))}" for s in states]
    return lines


def _state_comments() -> dict[State, str]:
    # A member's "#:" comment in _state.py is its documentation; failing
    # that, the comment after it on the same line.
    analyzer = ModuleAnalyzer.for_module(_state.__name__)
    attr_docs = analyzer.find_attr_docs()
    comments: dict[State, str] = {}
    for state in State:
        doc = attr_docs.get(("State", state.name))
        if doc:
            comments[state] = " ".join(line.strip() for line in doc if line.strip())
    for line in inspect.getsource(State).splitlines():
        name, eq, rest = line.strip().partition(" = ")
        if eq and "#" in rest and name in State.__members__:
            comments.setdefault(State[name], rest.split("#", 1)[1].lstrip(":").strip())
    return comments


class StateTable(SphinxDirective):
    """``.. smtp-state-table:: smtp|lmtp``"""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        protocol = self.arguments[0].lower()
        tables = {"smtp": _state.SMTP_TRANSITIONS, "lmtp": _state.LMTP_TRANSITIONS}
        if protocol not in tables:
            raise self.error(f"smtp-state-table: expected smtp or lmtp, not {protocol!r}")
        self.env.note_dependency(inspect.getfile(_state))
        return self._parse(table_rst(tables[protocol]))

    def _parse(self, lines: list[str]) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="smtp_rtls._state"), 0, container)
        return list(container.children)


class StateList(StateTable):
    """``.. smtp-state-list::``"""

    required_arguments = 0

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(inspect.getfile(_state))
        comments = _state_comments()
        lines = []
        for state in State:
            # each state links to its entry in the API reference
            lines.append(f":attr:`~smtp_rtls.State.{state.name}`")
            lines.append(f"   {comments.get(state, '')}")
            lines.append("")
        # The comments are written inside the State class: parse them as if
        # there, so that their references (:attr:`CONNECTED`) resolve.
        context = self.env.ref_context
        saved = {key: context.get(key) for key in ("py:module", "py:class")}
        context.update({"py:module": "smtp_rtls", "py:class": "State"})
        try:
            return self._parse(lines)
        finally:
            for key, value in saved.items():
                if value is None:
                    context.pop(key, None)
                else:
                    context[key] = value


def setup(app: Sphinx) -> ExtensionMetadata:
    """Register the directives."""
    app.add_directive("smtp-state-table", StateTable)
    app.add_directive("smtp-state-list", StateList)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
