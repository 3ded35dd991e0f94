"""Infix text of graphs, the formatting core that :func:`symexpr.pprint` and rewrite records share.

This sits in the graph layer so that :class:`~symexpr.graph.fgraph.RewriteRecord`
and the op library (``Fused`` display names) can format expressions without
importing :mod:`symexpr.printing`, which sits above the compiler.  Each op
formats itself through :meth:`~symexpr.graph.basic.Op.pprint`; this module only
assembles the pieces.  Every traversal is iterative.
"""

from __future__ import annotations

from symexpr.graph.basic import Constant, Variable, _short_value
from symexpr.graph.traversal import toposort
from symexpr.graph.type import format_shape

#: Precedence of an atom (a name, a literal, function-call syntax): never parenthesised.
ATOM = 100
#: Precedence of the comparison operators, which Python chains.
COMPARISON = 30


def wrap(text: str, prec: int, need: int) -> str:
    """``text`` in parentheses when its precedence ``prec`` is below ``need``."""
    return f"({text})" if prec < need else text


def wrap_operands(prec: int, parts: list[tuple[str, int]]) -> list[str]:
    """Operand texts of an operator of precedence ``prec``, parenthesised where Python needs it.

    ``parts`` are the operands' ``(text, precedence)``.  Binary operators are
    left-associative except ``**``; comparisons do not chain.
    """
    if prec >= ATOM:  # function-call syntax: arguments never need parentheses
        return [t for t, _ in parts]
    args = []
    for i, (t, p) in enumerate(parts):
        need = prec
        if len(parts) == 2 and prec == COMPARISON:
            need = prec + 1  # Python chains comparisons: (a < b) < c must keep its parentheses
        elif len(parts) == 2:
            right_assoc = prec == 90  # **
            need = prec + (1 if (i == 1) != right_assoc else 0)
        args.append(wrap(t, p, need))
    return args


def root_label(var: Variable) -> str:
    """How an input or a constant prints: its name, a short value, or ``<input>``."""
    if var.name:
        return var.name
    if isinstance(var, Constant):
        if var.data.size <= 4:
            return _short_value(var.data)
        return f"Constant{{{format_shape(var.data.shape)}}}"
    return "<input>"


def node_infix(node, parts: list[tuple[str, int]]) -> tuple[str, int]:
    """Infix text of a node from its inputs' ``(text, precedence)`` pairs."""
    _, prec = node.op.pprint(node, ["_"] * len(parts))
    return node.op.pprint(node, wrap_operands(prec, parts))


def infix_text(outputs: list[Variable], max_shared_len: int = 40) -> str:
    """Infix text of the graph computing ``outputs``, one line per output.

    A subexpression used more than once whose text is longer than
    ``max_shared_len`` is printed once as ``t1 = ...`` and named after.
    Unnamed inputs print as ``<input>``.
    """
    order = toposort(outputs)
    uses: dict[int, int] = {}
    for node in order:
        for var in node.inputs:
            uses[id(var)] = uses.get(id(var), 0) + 1
    texts: dict[int, tuple[str, int]] = {}
    bindings: list[str] = []

    def text_of(var: Variable) -> tuple[str, int]:
        if id(var) in texts:
            return texts[id(var)]
        label = root_label(var)
        return label, 80 if label.startswith("-") else ATOM

    for node in order:
        parts = [text_of(v) for v in node.inputs]
        for var in node.outputs:
            text, prec = node_infix(node, parts)
            if len(node.outputs) > 1:
                text, prec = f"{wrap(text, prec, ATOM)}[{var.index}]", ATOM
            if uses.get(id(var), 0) > 1 and len(text) > max_shared_len:
                name = f"t{len(bindings) + 1}"
                bindings.append(f"{name} = {text}")
                text, prec = name, ATOM
            texts[id(var)] = (text, prec)
    lines = bindings + [text_of(v)[0] for v in outputs]
    return "\n".join(lines)
