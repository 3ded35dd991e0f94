"""Canonicalisation: arithmetic identities and normal forms.

Each rule is exact (bit for bit) for every dtype it matches; where an identity
fails for some dtype or value (``x + 0.0`` turns ``-0.0`` into ``0.0``,
``x - x`` is NaN for infinite ``x``) the rule does not match that dtype.
"""

from __future__ import annotations

import numpy as np

from symexpr.graph.basic import Constant
from symexpr.ops import elemwise as ew
from symexpr.ops import scalar as ps
from symexpr.ops.reduction import Reduce
from symexpr.ops.shape import Reshape, Transpose
from symexpr.passes.patterns import (
    X,
    Y,
    const,
    is_float,
    is_integer_or_bool,
    keeps_type,
    negation_commutes_with_cast,
    negative_zero,
    positive_zero,
    rule_collector,
    typed,
)
from symexpr.rewriting import Pat, Rule

RULES: list[Rule] = []


_rule = rule_collector(RULES)


@_rule("mul_one", Pat(ps.mul, [X, const("c", 1)]), "x * 1 -> x (exact for every dtype)")
def _mul_one(node_out, x, c):
    return x if keeps_type(node_out, x) else None


@_rule("add_zero", Pat(ps.add, [X, const("c", 0)]), "x + 0 -> x; for float x only x + (-0.0), since any other zero turns -0.0 into 0.0")
def _add_zero(node_out, x, c):
    if not keeps_type(node_out, x) or (is_float(node_out) and not negative_zero(c)):
        return None
    return x


@_rule("sub_zero", Pat(ps.sub, [X, const("c", 0)]), "x - 0 -> x; for floats only x - (+0.0)")
def _sub_zero(node_out, x, c):
    if not keeps_type(node_out, x) or (is_float(c) and not positive_zero(c)):
        return None
    return x


@_rule("div_one", Pat(ps.true_div, [X, const("c", 1)]), "x / 1 -> x (floats; integer division gives float)")
def _div_one(node_out, x, c):
    return x if keeps_type(node_out, x) else None


@_rule("pow_one", Pat(ps.power, [X, const("c", 1)]), "x ** 1 -> x")
def _pow_one(node_out, x, c):
    return x if keeps_type(node_out, x) else None


@_rule("pow_scalar_exponent", Pat(ps.power, [X, Pat.const("c")], dtype=("float32", "float64")),
       "x ** c for a 0-d constant c of -1, 0.5, 1 or 2 and a float32/float64 result -> 1/x, sqrt(x), x, x*x "
       "(x converted to the result dtype): what NumPy's power computes for a scalar exponent "
       "(sqrt, unlike C's pow, gives NaN for -inf and -0.0 for -0.0)")
def _pow_scalar_exponent(node_out, x, c):
    if c.ndim != 0:
        return None  # NumPy's fast path needs a broadcast (stride-0) exponent; an array of 0.5 gives C's pow
    dtype = node_out.dtype
    value = c.data.astype(dtype).item()
    if value not in (-1.0, 0.5, 1.0, 2.0):
        return None
    cx = x if x.dtype == dtype else ew.cast(x, dtype)
    if value == 0.5:
        out = ew.sqrt(cx)
    elif value == -1.0:
        out = ew.true_div(Constant(np.ones((), dtype=dtype)), cx)
    elif value == 2.0:
        out = ew.mul(cx, cx)
    else:
        out = cx
    return typed(out, node_out)


@_rule("neg_neg", Pat(ps.neg, [Pat(ps.neg, [X])]), "-(-x) -> x (integers wrap both ways)")
def _neg_neg(node_out, x):
    return x


@_rule("invert_invert", Pat(ps.invert, [Pat(ps.invert, [X])]), "~~x -> x (bool and integers)")
def _invert_invert(node_out, x):
    return x


@_rule("sub_self", Pat(ps.sub, [X, X]), "x - x -> 0 for integers (for floats inf - inf is NaN)")
def _sub_self(node_out, x):
    if not is_integer_or_bool(x) or not keeps_type(node_out, x):
        return None
    return x * 0


@_rule("sub_to_add_neg", Pat(ps.sub, [X, Y], where=lambda v: v.dtype != "bool"),
       "a - b -> a + (-b) when b has the result dtype or both are floats (-b wraps in b's dtype: "
       "-uint8(1) is 255, -int8(-128) is -128, so a wider a - b keeps its form)")
def _sub_to_add_neg(node_out, x, y):
    if isinstance(y, Constant) or y.dtype == "bool":
        return None  # constants: sub_const folds them; -bool is not defined
    if not negation_commutes_with_cast(y, node_out.dtype):
        return None
    return typed(x + ew.neg(y), node_out)


@_rule("sub_const", Pat(ps.sub, [X, Pat.const("c")]),
       "a - c -> a + (-c) with -c folded in the result dtype (c converted first, as a - c does: exact, "
       "also for a dtype's minimum and unsigned c)")
def _sub_const(node_out, x, c):
    dtype = np.dtype(node_out.dtype)
    if dtype.kind not in "iuf":
        return None
    with np.errstate(all="ignore"):
        neg = np.negative(c.data.astype(dtype))  # integers wrap, as the subtraction does
    return typed(x + Constant(neg), node_out)


@_rule("constant_to_right", Pat((ps.add, ps.mul, ps.maximum, ps.minimum), [Pat.const("c"), X], commutative=False),
       "c op x -> x op c for commutative ops, so later rules see constants on the right; "
       "not for a float max/min with a zero constant (maximum(0.0, -0.0) keeps its first argument)")
def _constant_to_right(node_out, c, x):
    if isinstance(x, Constant):
        return None
    if node_out.owner.op.scalar_op in (ps.maximum, ps.minimum) and is_float(node_out) and (c.data == 0).any():
        return None
    return ew.Elemwise(node_out.owner.op.scalar_op)(x, c)


def _gather(op):
    @_rule(f"gather_{op.name}_constants", Pat(op, [Pat(op, [X, Pat.const("c1")]), Pat.const("c2")], commutative=False),
           f"(x {op.symbol} c1) {op.symbol} c2 -> x {op.symbol} (c1 {op.symbol} c2) for integers, "
           f"c1 {op.symbol} c2 folded in x's dtype (wrapping arithmetic is associative)")
    def build(node_out, x, c1, c2):
        if not (is_integer_or_bool(node_out) and is_integer_or_bool(x)) or node_out.dtype != x.dtype:
            return None
        dtype = node_out.dtype  # fold where the graph computes: int8(100) + int16(32767) must not wrap in int16
        with np.errstate(all="ignore"):
            folded = Constant(np.asarray(op.impl(c1.data.astype(dtype), c2.data.astype(dtype))).astype(dtype))
        return typed(ew.Elemwise(op)(x, folded), node_out)


_gather(ps.add)
_gather(ps.mul)


@_rule("transpose_transpose", Pat(Transpose, [Pat(Transpose, [X])]), "transpose(transpose(x)) -> one transpose (or x)")
def _transpose_transpose(node_out, x):
    outer, inner = node_out.owner.op.axes, node_out.owner.inputs[0].owner.op.axes
    axes = tuple(inner[a] for a in outer)
    return x if axes == tuple(range(x.ndim)) else Transpose(axes)(x)


@_rule("reshape_reshape", Pat(Reshape, [Pat(Reshape, [X])]), "reshape(reshape(x)) -> reshape(x)")
def _reshape_reshape(node_out, x):
    out = Reshape(node_out.owner.op.shape)(x, *node_out.owner.inputs[1:])
    # The rebuilt reshape must know every size the matched one knew: reshape(reshape(x, (0,)), (-1,))
    # is statically (0,), reshape(x, (-1,)) of an x of unknown size is not.
    kept = all(n is None or o == n for o, n in zip(out.type.shape, node_out.type.shape))
    return out if out.type.is_compatible(node_out.type) and kept else None


@_rule("reshape_noop", Pat(Reshape, [X]), "reshape(x, x.shape) -> x when the shape is static")
def _reshape_noop(node_out, x):
    return x if None not in x.type.shape and node_out.type.shape == x.type.shape else None


def _lossless(src: str, dst: str) -> bool:
    """Every value of ``src`` is exactly a value of ``dst``.

    Stricter than NumPy's "safe" casting, which allows int64 -> float64 (2**53 + 1 is lost).
    """
    s, d = np.dtype(src), np.dtype(dst)
    if s.kind in "iu" and d.kind == "f":
        info = np.iinfo(s)
        return max(info.max.bit_length(), (-info.min).bit_length() - 1 if info.min else 0) <= np.finfo(d).nmant + 1
    return bool(np.can_cast(s, d, "safe"))


@_rule("cast_cast", Pat(ps.Cast, [Pat(ps.Cast, [X])]), "cast(cast(x, a), b) -> cast(x, b) when x -> a is lossless")
def _cast_cast(node_out, x):
    middle = node_out.owner.inputs[0]
    if not _lossless(x.dtype, middle.dtype):
        return None
    return ew.cast(x, node_out.dtype)


@_rule("sum_of_sum", Pat(Reduce, [Pat(Reduce, [X])]), "sum(sum(x, a), b) -> sum(x, a+b) for integers (exact)")
def _sum_of_sum(node_out, x):
    outer, inner = node_out.owner.op, node_out.owner.inputs[0].owner.op
    if outer.kind != "sum" or inner.kind != "sum" or inner.keepdims or outer.keepdims:
        return None
    if not is_integer_or_bool(x) or node_out.dtype != node_out.owner.inputs[0].dtype:
        return None
    kept = [a for a in range(x.ndim) if a not in inner.axis]
    axes = tuple(sorted(set(inner.axis) | {kept[a] for a in outer.axis}))
    out = Reduce("sum", axes)(x)
    return out if out.type == node_out.type else None
