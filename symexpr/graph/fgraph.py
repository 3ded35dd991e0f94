"""FunctionGraph: the working copy of a user's graph that passes rewrite."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from symexpr.graph.basic import Apply, Constant, Variable
from symexpr.graph.text import infix_text
from symexpr.graph.traversal import graph_inputs, toposort


@dataclass(frozen=True)
class RewriteRecord:
    """One change: ``rule`` (of pass ``pass_name``) replaced ``before`` with ``after``."""

    pass_name: str
    rule: str
    before: Variable
    after: Variable

    def __str__(self):
        before, after = infix_text([self.before]), infix_text([self.after])
        return f"{self.pass_name}: {self.rule}: {_short(before)} -> {_short(after)}"


def _short(text: str, limit: int = 120) -> str:
    text = text.replace("\n", "; ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FunctionGraph:
    """A graph from fixed ``inputs`` to ``outputs`` that passes rewrite.

    Nodes are immutable and hash-consed, so the user's graph is never modified:
    :meth:`replace` rebuilds the consumers of the replaced variable and moves
    the outputs to the new graph.  Derived views (:meth:`toposort`,
    :attr:`clients`) are recomputed lazily after a change.

    Parameters
    ----------
    inputs : list of Variable
        Ownerless, non-constant variables: the function's arguments.
    outputs : list of Variable
        What the function returns.
    """

    def __init__(self, inputs: Iterable[Variable], outputs: Iterable[Variable]):
        self.inputs = tuple(inputs)
        self.outputs = list(outputs)
        for i, var in enumerate(self.inputs):
            if not isinstance(var, Variable) or var.owner is not None or isinstance(var, Constant):
                raise TypeError(f"FunctionGraph: input {i} must be an input variable, got {var!r}")
        #: Every change made by passes, in order (:class:`RewriteRecord`).
        self.history: list[RewriteRecord] = []
        #: What passes leave for later passes and for reports, by topic (e.g. ``"quant"``).
        self.annotations: dict = {}
        self._order: list[Apply] | None = None
        self._clients: dict | None = None

    # -- derived views ------------------------------------------------------------
    def toposort(self) -> list[Apply]:
        """Apply nodes in dependency order."""
        if self._order is None:
            self._order = toposort(self.outputs)
        return self._order

    @property
    def apply_nodes(self) -> list[Apply]:
        return self.toposort()

    @property
    def variables(self) -> list[Variable]:
        """Every variable in the graph: inputs, constants and node outputs."""
        seen: dict[int, Variable] = {id(v): v for v in self.inputs}
        for node in self.toposort():
            for var in (*node.inputs, *node.outputs):
                seen.setdefault(id(var), var)
        for var in self.outputs:
            seen.setdefault(id(var), var)
        return list(seen.values())

    @property
    def clients(self) -> dict[Variable, list]:
        """Maps each variable to its uses: ``(apply, input_index)`` or ``("output", i)``."""
        if self._clients is None:
            clients: dict[Variable, list] = {var: [] for var in self.inputs}
            for node in self.toposort():
                for i, var in enumerate(node.inputs):
                    clients.setdefault(var, []).append((node, i))
                for var in node.outputs:
                    clients.setdefault(var, [])
            for i, var in enumerate(self.outputs):
                clients.setdefault(var, []).append(("output", i))
            self._clients = clients
        return self._clients

    def _changed(self):
        self._order = None
        self._clients = None

    # -- side outputs -------------------------------------------------------------
    def add_side_outputs(self, name: str, variables: Iterable[Variable]) -> None:
        """Append outputs a pass wants observed on every call, not returned to the caller.

        They are recorded under ``annotations["side_outputs"][name]`` as the
        positions they take in :attr:`outputs`; a compiled function keeps each
        call's values of them (``Function.side_outputs``).  Adding ``name``
        again replaces the earlier ones' record (their outputs stay).
        """
        variables = list(variables)
        record = self.annotations.setdefault("side_outputs", {})
        start = len(self.outputs)
        self.outputs.extend(variables)
        record[name] = list(range(start, start + len(variables)))
        self._changed()

    # -- rewriting ----------------------------------------------------------------
    def set_outputs(self, outputs: list[Variable]) -> None:
        """Point the graph at new outputs of the same types (used by rewrite drivers)."""
        outputs = list(outputs)
        if len(outputs) != len(self.outputs):
            raise ValueError(f"set_outputs: expected {len(self.outputs)} outputs, got {len(outputs)}")
        for old, new in zip(self.outputs, outputs):
            if not old.type.is_compatible(new.type):
                raise TypeError(f"set_outputs: cannot replace output {old!r} of type {old.type} with {new.type}")
        self.outputs = outputs
        self._changed()

    def replace(self, old: Variable, new: Variable, reason: str = "") -> None:
        """Make every use of ``old`` use ``new`` instead.

        Raises
        ------
        TypeError
            If ``new`` has another dtype or rank than ``old``, or a static
            dimension that contradicts ``old``'s.
        """
        self.replace_all({old: new}, reason=reason)

    def replace_all(self, replacements: Mapping[Variable, Variable], reason: str = "", pass_name: str = "") -> None:
        """Apply several replacements in one rebuild of the graph.

        Every use of a replaced variable in the current graph is rewired; the
        replacement itself is taken as it is, so ``replace(x, cast(x))`` inserts
        the cast rather than a cycle.  (If the replacement's subgraph also occurs
        in the graph, that occurrence is rewired like any other use.)
        """
        mapping: dict[int, Variable] = {}
        for old, new in replacements.items():
            if not isinstance(new, Variable):
                raise TypeError(f"replace: the replacement must be a Variable, got {type(new).__name__}")
            if not old.type.is_compatible(new.type):
                raise TypeError(f"replace: cannot replace {old!r} of type {old.type} with {new!r} of type {new.type}")
            if old is not new:
                mapping[id(old)] = new
        if not mapping:
            return
        allowed = {id(v) for v in self.inputs}
        for new in mapping.values():
            for var in graph_inputs([new]):
                if id(var) not in allowed and not isinstance(var, Constant):
                    raise ValueError(f"replace: the replacement {new!r} depends on {var!r}, which is not an input of this graph")
        for old, new in replacements.items():
            if old is not new:
                self.history.append(RewriteRecord(pass_name or reason or "replace", reason or "replace", old, new))
        for node in self.toposort():
            inputs = [mapping.get(id(var), var) for var in node.inputs]
            if all(a is b for a, b in zip(inputs, node.inputs)):
                continue
            rebuilt = node.op.make_node(*inputs)
            for old_out, new_out in zip(node.outputs, rebuilt.outputs):
                mapping.setdefault(id(old_out), new_out)
        self.outputs = [mapping.get(id(var), var) for var in self.outputs]
        self._changed()

    def __repr__(self):
        return f"FunctionGraph({list(self.inputs)} -> {self.outputs})"
