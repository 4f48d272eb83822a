"""Sphinx extension: draw the session state tables of ``smtp_rtls._state``.

``.. smtp-state-table:: smtp`` (or ``lmtp``) renders ``SMTP_TRANSITIONS``
(or ``LMTP_TRANSITIONS``) of ``smtp_rtls._state`` as a table of command x
state: each cell gives where the session goes after the command's reply, by
reply class (``2xx READY; 4xx, 5xx stay``; a class not named cannot answer
the command there), and an empty cell means the command is out of sequence
there (the server answers 503 by itself).  The table is read from the module
at build time, so the documentation cannot drift from the code.

A cell is read from either form of transition ``_state`` has used: a
``(on_positive, on_negative)`` pair, or a ``Step`` with ``replies`` (reply
class -> state, ``None`` for "stay") and ``on_command`` (the state entered as
soon as the command is read).

``.. smtp-state-list::`` lists every state of ``smtp_rtls._state.State`` with
the documentation the code gives it (a ``#:`` comment, or a trailing one).

``.. smtp-state-diagram:: smtp`` (or ``lmtp``) draws the same table as a
graph with ``sphinx.ext.graphviz``: the states are nodes, an edge is a
command (or named step) with the reply classes that lead along it, and a
dashed edge is a state entered as soon as the command is read
(``on_command``).  Replies that leave the state as it is (and EHLO, HELO,
LHLO or RSET leading back where they came from), the commands that never
move it (NOOP, HELP, VRFY, EXPN) and ``CLOSE`` (every state to ``CLOSED``)
are not drawn; the caption says so.  When the
``dot`` program is missing the DOT source is shown instead, so the build
still passes (``tests/lab/install.sh`` installs Debian's ``graphviz``).
"""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Mapping
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import ExtensionMetadata

from smtp_rtls import _state
from smtp_rtls._state import State

logger = logging.getLogger(__name__)

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
    # Every class is named, so that a class a cell leaves out visibly cannot
    # answer the command (``2xx, 4xx, 5xx READY``: no 3xx).
    targets = list(dict.fromkeys(replies.values()))
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


# -- the diagram ---------------------------------------------------------------

# Not drawn: the commands that never move the session (RFC 5321 §4.1.4: they
# may come at any time) and CLOSE, which leads from every state to CLOSED.
NOT_DRAWN = frozenset({"NOOP", "HELP", "VRFY", "EXPN", "CLOSE"})

# Self-loops not drawn: a greeting or RSET that leads back where it came from
# (READY to READY) says nothing a reader needs.
_RESETS = frozenset({"EHLO", "HELO", "LHLO", "RSET"})

# The states in which the peer's bytes are not command lines.
_NOT_COMMANDS = frozenset({State.DATA, State.BDAT, State.STARTTLS, State.AUTH})

DIAGRAM_CAPTION = (
    "The session as the code has it: generated from ``{name}`` when these pages "
    "are built.  An edge is a command (or a named step: ``GREETING``, ``TLS``, "
    "``EOM``) and the reply classes that lead along it; a dashed edge is taken "
    "as soon as the command is read (a BDAT chunk's octets follow its line).  "
    "Grey states read something other than commands.  Not drawn, to keep it "
    "readable: replies after which the state stays as it is (and EHLO, HELO or "
    "RSET that lead back where they came from); NOOP, HELP, VRFY and EXPN, "
    "which never move the session; and ``CLOSE`` (a ``421`` or the peer going "
    "away), which leads from every state to ``CLOSED``."
)


def _classes(classes: list[int], all_of_step: bool) -> str:
    if all_of_step and len(classes) > 1:
        return "any reply"
    return "/".join(f"{k}xx" for k in classes)


def _edge_label(verbs: Mapping[str, tuple[list[int], bool]]) -> str:
    # verbs with the same reply classes share a line: "EHLO, HELO, RSET 2xx"
    lines: dict[str, list[str]] = {}
    order = {v: i for i, v in enumerate(_VERB_ORDER)}
    for verb in sorted(verbs, key=lambda v: (order.get(v, len(order)), v)):
        classes, all_of_step = verbs[verb]
        lines.setdefault(_classes(classes, all_of_step), []).append(verb)
    return "\\n".join(f"{', '.join(vs)} {cls}".rstrip() for cls, vs in lines.items())


def diagram_dot(table: Table, name: str = "session") -> str:
    """The DOT source of the state diagram of one transition table."""
    # (from, to, on_command) -> verb -> (reply classes, every class of the step)
    edges: dict[tuple[State, State, bool], dict[str, tuple[list[int], bool]]] = {}
    for source, verbs in table.items():
        for verb, step in verbs.items():
            if verb in NOT_DRAWN or isinstance(step, tuple):
                continue
            if step.on_command is not None:
                # the replies are in the row of the state entered
                edges.setdefault((source, step.on_command, True), {})[verb] = ([], False)
                continue
            # every class the command can have leads the same way: "any reply"
            whole = len(set(step.replies.values())) == 1
            for klass, target in sorted(step.replies.items()):
                if target is None or (target is source and verb in _RESETS):
                    continue  # the state stays: nothing to draw
                to_target = edges.setdefault((source, target, False), {})
                to_target.setdefault(verb, ([], whole))[0].append(klass)
    lines = [
        f"digraph {name} {{",
        '   graph [rankdir=TB, nodesep=0.35, ranksep=0.45, fontname="Helvetica"];',
        '   node [shape=box, style="rounded", fontname="Helvetica", fontsize=11];',
        '   edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];',
    ]
    for state in table:
        attrs = [f'label="{state.name}"']
        if state in _NOT_COMMANDS:
            attrs.append('style="rounded,filled", fillcolor="#e8e8e8"')
        if state is State.GREETING:
            attrs.append("penwidth=2")
        if state is State.CLOSED:
            attrs.append("peripheries=2")
        lines.append(f"   {state.name} [{', '.join(attrs)}];")
    for (source, target, at_once), verbs in edges.items():
        label = _edge_label(verbs)
        if at_once:
            label = f"{label}\\n(when read)"
        style = ", style=dashed" if at_once else ""
        if target is State.CLOSED:
            style += ', color="#808080", fontcolor="#606060"'  # QUIT: the way out
        lines.append(f'   {source.name} -> {target.name} [label="{label}"{style}];')
    lines.append("}")
    return "\n".join(lines)


class StateDiagram(StateTable):
    """``.. smtp-state-diagram:: smtp|lmtp``"""

    def run(self) -> list[nodes.Node]:
        protocol = self.arguments[0].lower()
        tables = {"smtp": "SMTP_TRANSITIONS", "lmtp": "LMTP_TRANSITIONS"}
        if protocol not in tables:
            raise self.error(f"smtp-state-diagram: expected smtp or lmtp, not {protocol!r}")
        self.env.note_dependency(inspect.getfile(_state))
        name = tables[protocol]
        dot = diagram_dot(getattr(_state, name), f"{protocol}_session")
        caption = DIAGRAM_CAPTION.format(name=name)
        if shutil.which(self.config.graphviz_dot) is None:
            # No Graphviz here: show the source rather than fail the build.
            logger.info(
                "smtp-state-diagram: %r not found, showing the DOT source",
                self.config.graphviz_dot,
            )
            lines = [caption, "", ".. code-block:: text", ""]
            lines += [f"   {line}" for line in dot.splitlines()]
            return self._parse(lines)
        lines = [
            ".. graphviz::",
            f"   :caption: {caption}",
            f"   :alt: The {protocol.upper()} session states and the commands between them",
            "",
        ]
        lines += [f"   {line}" for line in dot.splitlines()]
        return self._parse(lines)


def setup(app: Sphinx) -> ExtensionMetadata:
    """Register the directives (and sphinx.ext.graphviz, for the diagram)."""
    app.setup_extension("sphinx.ext.graphviz")
    app.add_directive("smtp-state-table", StateTable)
    app.add_directive("smtp-state-list", StateList)
    app.add_directive("smtp-state-diagram", StateDiagram)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
