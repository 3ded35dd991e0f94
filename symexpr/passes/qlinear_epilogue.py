"""Epilogue fusion for int8 linears: the elementwise work on a ``QLinear``'s result joins its kernel.

After W8A8 insertion a linear layer reads ``Fused{gelu(i0 + i1)}(qlinear(...), b)``
or ``Fused{i2 + (i0 + i1)}(qlinear(...), b, residual)``: the int8 kernel
writes its float32 result and a second kernel reads it back.  When that
elementwise node is the result's only use, it becomes the ``QLinear``'s
``epilogue`` program (its other operands become extra inputs), which the
kernel applies to each output tile while it is in cache.

The rewrite is exact: the program is the same, evaluated on the same values
in the same order.  A result that is also a graph output, or read by anything
else, is left alone; so is an elementwise node whose result is not float32.
"""

from __future__ import annotations

from symexpr.graph.fgraph import FunctionGraph
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.fused import Fused
from symexpr.ops.quant import QLinear
from symexpr.passes.fusion import program_of

#: Most instructions an epilogue program takes (a longer program stays a separate kernel).
MAX_EPILOGUE_INSTRUCTIONS = 64


def _fusable_consumer(fgraph: FunctionGraph, var):
    """The elementwise node that is ``var``'s only use (not a graph output either), or None."""
    uses = fgraph.clients.get(var, [])
    if not uses or any(node == "output" for node, _ in uses):
        return None
    node = uses[0][0]
    if any(other is not node for other, _ in uses):
        return None
    if not isinstance(node.op, (Elemwise, Fused)) or node.outputs[0].dtype != "float32":
        return None
    return node


def _composed(op: QLinear, n_old_extras: int, consumer, position: set):
    """The epilogue ``op.epilogue`` then ``consumer``'s program, whose inputs at ``position`` are the product."""
    first = list(op.epilogue)
    result = ("tmp", len(first) - 1) if first else ("in", 0)
    others = [i for i in range(len(consumer.inputs)) if i not in position]
    renumber = {i: ("in", 1 + n_old_extras + k) for k, i in enumerate(others)}
    renumber.update({i: result for i in position})

    def mapped(ref):
        if ref[0] == "in":
            return renumber[ref[1]]
        if ref[0] == "tmp":
            return ("tmp", ref[1] + len(first))
        return ref

    second = [(scalar_op, tuple(mapped(a) for a in args)) for scalar_op, args in program_of(consumer.op)]
    return tuple(first + second), [consumer.inputs[i] for i in others]


def fuse_qlinear_epilogues(fgraph: FunctionGraph) -> None:
    """Make the elementwise node that alone reads a scaled ``QLinear``'s result part of its epilogue (repeatedly)."""
    while True:
        replacements = {}
        for node in fgraph.toposort():
            op = node.op
            if not isinstance(op, QLinear) or not op.scaled:
                continue
            product = node.outputs[0]
            consumer = _fusable_consumer(fgraph, product)
            if consumer is None or consumer.outputs[0] in replacements:
                continue
            position = {i for i, v in enumerate(consumer.inputs) if v is product}
            old_extras = list(node.inputs[op.n_standard:])
            program, new_extras = _composed(op, len(old_extras), consumer, position)
            if len(program) > MAX_EPILOGUE_INSTRUCTIONS:
                continue
            fused = QLinear(op.weight_bits, True, op.has_bias, program)
            replacement = fused(*node.inputs[: op.n_standard], *old_extras, *new_extras)
            if replacement.type.shape == consumer.outputs[0].type.shape:
                replacements[consumer.outputs[0]] = replacement
        if not replacements:
            return
        fgraph.replace_all(replacements, reason="qlinear_epilogue", pass_name="fuse_qlinear_epilogues")
