"""Sphinx extension: draw the session state tables of ``smtp_rtls._state``.

``.. smtp-state-table:: smtp`` (or ``lmtp``) renders
:data:`smtp_rtls._state.SMTP_TRANSITIONS` (or ``LMTP_TRANSITIONS``) as a table
of command x state: each cell gives where the session goes on a positive
reply and on a negative one, and an empty cell means the command is out of
sequence there (the server answers 503 by itself).  The table is read from the
module at build time, so the documentation cannot drift from the code.

``.. smtp-state-list::`` lists every state of :class:`smtp_rtls._state.State`
with the comment the code gives it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import ExtensionMetadata

from smtp_rtls import _state
from smtp_rtls._state import State

# The order a session meets the commands in, so the table reads top to bottom.
_VERB_ORDER = (
    "EHLO",
    "HELO",
    "LHLO",
    "STARTTLS",
    "AUTH",
    "MAIL",
    "RCPT",
    "DATA",
    "BDAT",
    "RSET",
    "NOOP",
    "HELP",
    "VRFY",
    "EXPN",
    "QUIT",
)

Table = Mapping[State, Mapping[str, tuple[State | None, State | None]]]


def _name(state: State | None) -> str:
    return "stay" if state is None else f"``{state.name}``"


def _cell(transition: tuple[State | None, State | None] | None) -> str:
    if transition is None:
        return ""
    positive, negative = transition
    if positive == negative:
        return _name(positive)
    return f"{_name(positive)} / {_name(negative)}"


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
    # The comment after each member in _state.py is its documentation.
    comments: dict[State, str] = {}
    for line in inspect.getsource(State).splitlines():
        name, eq, rest = line.strip().partition(" = ")
        if eq and "#" in rest and name in State.__members__:
            comments[State[name]] = rest.split("#", 1)[1].strip()
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
            lines.append(f"``{state.name}``")
            lines.append(f"   {comments.get(state, '')}")
            lines.append("")
        return self._parse(lines)


def setup(app: Sphinx) -> ExtensionMetadata:
    """Register the directives."""
    app.add_directive("smtp-state-table", StateTable)
    app.add_directive("smtp-state-list", StateList)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
