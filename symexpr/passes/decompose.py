"""Expand composite ops (softmax, layer_norm, gelu, ...) into primitive ops."""

from __future__ import annotations

from collections.abc import Callable

from symexpr.graph.basic import Op, Variable
from symexpr.graph.fgraph import FunctionGraph


def decompose(fgraph: FunctionGraph, keep: Callable[[Op], bool] | None = None) -> None:
    """Replace every node whose op has a decomposition by that decomposition.

    Parameters
    ----------
    fgraph : FunctionGraph
        Rewritten in place.
    keep : callable, optional
        ``keep(op)`` true leaves the op whole (a backend that implements it natively).

    One sweep in dependency order; a decomposition that contains further
    composites is expanded in the same sweep.
    """
    expanded: dict[int, Variable] = {}  # id(var) -> its fully expanded replacement
    alive: list[Variable] = []  # every key's variable, so no id is reused while the map lives

    def expand(outputs: list[Variable]) -> None:
        for node in _pending_nodes(outputs, expanded):
            inputs = [expanded.get(id(v), v) for v in node.inputs]
            rebuilt = node if all(a is b for a, b in zip(inputs, node.inputs)) else node.op.make_node(*inputs)
            parts = None if keep is not None and keep(rebuilt.op) else rebuilt.op.decompose(rebuilt)
            if parts is None:
                results = list(rebuilt.outputs)
            else:
                expand(parts)  # nesting depth of composites, not graph depth
                results = [expanded.get(id(v), v) for v in parts]
            alive.extend(parts or ())
            for old, new in zip(node.outputs, results):
                alive.extend((old, new))
                expanded[id(old)] = new
                expanded.setdefault(id(new), new)

    expand(list(fgraph.outputs))
    replacements = {v: expanded[id(v)] for v in fgraph.outputs if v.owner is not None and expanded[id(v)] is not v}
    fgraph.replace_all(replacements, reason="decompose")


def _pending_nodes(outputs, done: dict) -> list:
    """Apply nodes above ``outputs`` in dependency order, not descending into ``done`` variables."""
    order, seen = [], set()
    stack = [(v.owner, False) for v in reversed(outputs) if v.owner is not None and id(v) not in done]
    while stack:
        node, ready = stack.pop()
        if ready:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for v in reversed(node.inputs):
            if v.owner is not None and id(v) not in done and id(v.owner) not in seen:
                stack.append((v.owner, False))
    return order
