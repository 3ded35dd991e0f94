"""Lowering of :class:`~symexpr.ops.quant.QuantizeRows`: one row kernel with three phases.

Per row: (0) evaluate the expression and fold ``max |x|``; (1) store the row's
scale; (2) evaluate the expression again (the row's inputs are in cache) and
store ``int8(clip(round(x / scale), -127, 127))``.  The arithmetic is the
scalar ops the unfused quantizer is built from, so both give the same bits.
"""

from __future__ import annotations

import numpy as np

from symexpr.kernel.ir import Accumulator
from symexpr.kernel.lower import Unsupported, lowers
from symexpr.kernel.lowerings import RowPasses
from symexpr.ops import scalar as ps
from symexpr.ops.quant import SCALE_FLOOR, QuantizeRows, qmax


@lowers(QuantizeRows)
def _quantize_rows(ctx, node):
    q_var, scale_var = node.outputs
    full = tuple(ctx.shape(q_var))
    if full[-1] == 0:
        raise Unsupported("rows of length 0")  # the host step reports NumPy's error
    views = [ctx.view(v) for v in node.inputs]
    dtypes = [v.dtype for v in node.inputs]
    shaped = next((v for v in node.inputs if tuple(ctx.shape(v)) == full), None)
    if shaped is None:
        raise Unsupported("no input has the full shape")
    rows = RowPasses(ctx, node, shaped, (len(full) - 1,), "float32")
    q_out, scale_out = ctx.allocate(q_var), ctx.allocate(scale_var)
    loads = [rows.access(v) for v in views]
    program = node.op.program

    def expression(b):
        return b.cast(b.inline(program, [("load", i) for i in range(len(loads))]), "float32")

    b = rows.builder(dtypes)
    x = expression(b)
    rows.phase(b, loads, [Accumulator("max", "float32", b.add(ps.abs, x))])

    def scale(b):
        floor = b.const(np.float32(SCALE_FLOOR), "float32")
        return b.add(ps.true_div, b.add(ps.maximum, ("acc", 0, 0), floor), b.const(qmax(8), "float32"))

    b = rows.builder([])
    rows.phase(b, [], (), [(rows.access(scale_out, inner=False), scale(b))], inner=False)

    b = rows.builder(dtypes)
    x = expression(b)
    limit = qmax(8)
    v = b.add(ps.round, b.add(ps.true_div, x, scale(b)))
    v = b.add(ps.clip, v, b.const(-limit, "float32"), b.const(limit, "float32"))
    rows.phase(b, loads, (), [(rows.access(q_out), b.cast(v, "int8"))])
    rows.emit()
