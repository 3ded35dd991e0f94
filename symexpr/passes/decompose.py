"""Expand composite ops (softmax, layer_norm, gelu, ...) into primitive ops."""

from __future__ import annotations

from collections.abc import Callable

from symexpr.graph.basic import Op
from symexpr.graph.fgraph import FunctionGraph


def decompose(fgraph: FunctionGraph, keep: Callable[[Op], bool] | None = None) -> None:
    """Replace every node whose op has a decomposition by that decomposition.

    Parameters
    ----------
    fgraph : FunctionGraph
        Rewritten in place.
    keep : callable, optional
        ``keep(op)`` true leaves the op whole (a backend that implements it natively).

    Decompositions may contain further composites; the pass repeats until none is left.
    """
    while True:
        replacements = {}
        for node in fgraph.toposort():
            if keep is not None and keep(node.op):
                continue
            outs = node.op.decompose(node)
            if outs is not None:
                replacements.update(zip(node.outputs, outs))
        if not replacements:
            return
        fgraph.replace_all(replacements, reason="decompose")
