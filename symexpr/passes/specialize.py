"""Specialisation: cheaper forms of the same computation.

Exact unless the rule says otherwise: ``x ** 3`` and ``x ** 4`` as products
differ from ``pow`` by at most 2 ulp for floats (exact for integers).
"""

from __future__ import annotations

import numpy as np

from symexpr.graph.basic import Constant
from symexpr.ops import elemwise as ew
from symexpr.ops import scalar as ps
from symexpr.passes.patterns import X, Y, const, is_float, negation_commutes_with_cast, rule_collector, typed
from symexpr.rewriting import Pat, Rule

RULES: list[Rule] = []


_rule = rule_collector(RULES)



@_rule("pow_two", Pat(ps.power, [X, const("c", 2)]), "x ** 2 -> x * x (exact: both are the rounded square)")
def _pow_two(node_out, x, c):
    return typed(x * x, node_out)


@_rule("pow_small_int", Pat(ps.power, [X, Pat.const("c")]), "x ** 3 -> (x*x)*x, x ** 4 -> (x*x)*(x*x): exact for integers, <= 2 ulp for floats")
def _pow_small_int(node_out, x, c):
    value = c.data.item() if c.data.size == 1 else None
    if value == 3:
        return typed(x * x * x, node_out)
    if value == 4:
        sq = x * x
        return typed(sq * sq, node_out)
    return None


@_rule("div_by_power_of_two", Pat(ps.true_div, [X, Pat.const("c")], dtype="f"),
       "x / c -> x * (1/c) when c is a power of two and 1/c is a normal float (exact)")
def _div_by_power_of_two(node_out, x, c):
    data = c.data
    if data.dtype.kind != "f" or not np.isfinite(data).all() or (data == 0).any():
        return None
    mantissa, _ = np.frexp(data)
    inverse = (1 / data.astype(np.float64)).astype(data.dtype)
    info = np.finfo(data.dtype)
    if not (np.abs(mantissa) == 0.5).all() or not (np.abs(inverse) >= info.tiny).all() or not np.isfinite(inverse).all():
        return None
    return typed(x * Constant(inverse), node_out)


@_rule("rsqrt", Pat(ps.true_div, [const("one", 1), Pat(ps.sqrt, [X])], dtype=("float32", "float64")),
       "1 / sqrt(x) -> rsqrt(x) (float32/float64: rsqrt is 1/sqrt in the same precision)")
def _rsqrt(node_out, x, one):
    return typed(ew.rsqrt(x), node_out)


@_rule("add_neg_to_sub", Pat(ps.add, [X, Pat(ps.neg, [Y])]),
       "a + (-b) -> a - b (undoes the canonical form) when b has the result dtype or both are floats "
       "(-b wraps in b's dtype: float64 x + (-uint8(1)) adds 255)")
def _add_neg_to_sub(node_out, x, y):
    if not negation_commutes_with_cast(y, node_out.dtype):
        return None
    return typed(x - y, node_out)


@_rule("mul_minus_one", Pat(ps.mul, [X, const("c", -1)]), "x * -1 -> -x (exact; integers wrap the same way)")
def _mul_minus_one(node_out, x, c):
    if not is_float(x) and np.dtype(x.dtype).kind != "i":
        return None
    return typed(ew.neg(x), node_out)
