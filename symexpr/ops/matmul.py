"""Matrix product with NumPy's batched ``matmul`` semantics."""

from __future__ import annotations

import numpy as np

from symexpr.dtypes import canonical_dtype
from symexpr.graph.basic import Apply, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops.convert import as_operands
from symexpr.ops.elemwise import broadcast_concrete, broadcast_static


def _matmul_shape(a: tuple, b: tuple, static: bool) -> tuple:
    what = f"matmul: {format_shape(a)} @ {format_shape(b)}"
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"{what}: operands must have at least one dimension")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    k1, k2 = a2[-1], b2[-2]
    if k1 is not None and k2 is not None and k1 != k2:
        raise ValueError(f"{what}: inner dimensions {k1} and {k2} differ")
    if static:
        batch = broadcast_static([a2[:-2], b2[:-2]], what)
    else:
        batch = broadcast_concrete([a2[:-2], b2[:-2]])
    rows = () if len(a) == 1 else (a2[-2],)
    cols = () if len(b) == 1 else (b2[-1],)
    return tuple(batch) + rows + cols


class MatMul(Op):
    """``numpy.matmul``: 1-D operands are promoted to matrices, batch dims broadcast."""

    def make_node(self, a, b) -> Apply:
        a, b = as_operands([a, b], "matmul")
        shape = _matmul_shape(a.type.shape, b.type.shape, static=True)
        try:
            dtype = canonical_dtype(np.matmul.resolve_dtypes((np.dtype(a.dtype), np.dtype(b.dtype), None))[2])
        except TypeError as exc:
            raise TypeError(f"matmul: not defined for operand dtypes {a.dtype}, {b.dtype} ({exc})") from None
        return Apply(self, [a, b], [TensorType(dtype, shape)])

    def perform(self, node, inputs):
        return [np.asarray(np.matmul(*inputs))]

    def infer_shape(self, node, input_shapes):
        return [_matmul_shape(*input_shapes, static=False)]

    def pprint(self, node, args):
        return f"{args[0]} @ {args[1]}", 70


def matmul(a, b) -> Variable:
    """Matrix product ``a @ b`` with NumPy's batched semantics.

    Raises ``ValueError`` at build time when static inner dimensions differ,
    e.g. ``matmul: (3, 4) @ (5, 4): inner dimensions 4 and 5 differ``.
    """
    return MatMul()(a, b)
