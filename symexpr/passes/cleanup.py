"""Cleanup passes: constant folding and merging equal constants.

Common-subexpression elimination of nodes needs no pass: nodes are
hash-consed, so equal subgraphs are already one object.  Dead code is never
visited: every traversal starts from the outputs.
"""

from __future__ import annotations

import numpy as np

from symexpr.graph.basic import Constant, Variable
from symexpr.graph.fgraph import FunctionGraph
from symexpr.rewriting import Pat, Rule

#: Do not fold a node whose result has more elements than this and than any of its inputs
#: (``broadcast_to`` of a scalar would otherwise bake a large array into the graph).
MAX_FOLD_GROWTH = 1 << 16


def _foldable(var: Variable) -> bool:
    node = var.owner
    return (
        node is not None
        and node.op.do_constant_folding
        and len(node.outputs) == 1
        and all(isinstance(v, Constant) for v in node.inputs)
    )


def _fold(node_out: Variable) -> Variable | None:
    node = node_out.owner
    values = [v.data for v in node.inputs]
    try:
        shape = tuple(node.op.infer_shape(node, [v.shape for v in values])[0])
    except Exception:
        return None
    size = int(np.prod(shape))
    if size > MAX_FOLD_GROWTH and size > max((v.size for v in values), default=0):
        return None
    with np.errstate(all="ignore"):
        try:
            (result,) = node.op.perform(node, values)
        except Exception:
            return None  # the error belongs to call time, where it names the node
    result = np.asarray(result)
    if result.dtype.name != node_out.dtype:
        return None
    return Constant(result)


constant_folding = Rule(
    "constant_folding",
    Pat.var(where=_foldable),
    lambda node_out, **_: _fold(node_out),
    "a node whose inputs are all constants -> its value (skipped when the value would be large)",
)


def merge_constants(fgraph: FunctionGraph) -> None:
    """Make equal constants that differ only in name one object (the first one seen)."""
    first: dict[tuple, Constant] = {}
    replacements = {}
    for var in fgraph.variables:
        if isinstance(var, Constant):
            key = (var.type, var.digest)
            keep = first.setdefault(key, var)
            if keep is not var:
                replacements[var] = keep
    if replacements:
        fgraph.replace_all(replacements, reason="merge_constants", pass_name="merge")
