"""Small helpers shared by the rule modules: common patterns and type facts."""

from __future__ import annotations

import numpy as np

from symexpr.graph.basic import Constant, Variable
from symexpr.ops import scalar as ps
from symexpr.rewriting import Pat, Rule

X = Pat.var("x")
Y = Pat.var("y")


def const(name: str, value=None) -> Pat:
    return Pat.const(name, value)


def is_float(var: Variable) -> bool:
    return np.dtype(var.dtype).kind == "f"


def is_integer_or_bool(var: Variable) -> bool:
    return np.dtype(var.dtype).kind in "iub"


def keeps_type(out: Variable, x: Variable) -> bool:
    """``out`` has exactly ``x``'s type, so replacing ``out`` by ``x`` keeps dtype and shape."""
    return out.type == x.type


def positive_zero(c: Constant) -> bool:
    return not np.signbit(c.data).any()


def negative_zero(c: Constant) -> bool:
    return bool(np.signbit(c.data).all())


def scalar_value(c: Variable):
    """The single value of an all-equal constant, else ``None``."""
    if not isinstance(c, Constant) or c.data.size == 0:
        return None
    first = c.data.flat[0]
    return first.item() if (c.data == first).all() else None


_NONNEGATIVE_OPS = {ps.abs, ps.exp, ps.sqrt, ps.sigmoid, ps.relu, ps.isnan, ps.isinf, ps.isfinite}


def nonnegative(var: Variable) -> bool:
    """True when every value of ``var`` is >= 0 or NaN (a cheap, conservative check)."""
    from symexpr.ops.elemwise import Elemwise
    from symexpr.ops.nnet import Softmax

    if isinstance(var, Constant):
        return bool((var.data >= 0).all()) if var.data.dtype.kind != "b" else True
    if np.dtype(var.dtype).kind in "ub":
        return True
    node = var.owner
    if node is None:
        return False
    if isinstance(node.op, Softmax):
        return True
    if not isinstance(node.op, Elemwise) or node.op.scalar_op not in _NONNEGATIVE_OPS:
        return False
    # abs of a signed integer wraps at the minimum: abs(int8(-128)) == -128
    return not (node.op.scalar_op == ps.abs and np.dtype(var.dtype).kind == "i")


def negation_commutes_with_cast(var: Variable, dtype: str) -> bool:
    """``cast(-var, dtype) == -cast(var, dtype)`` for every value ``var`` can hold.

    ``-var`` is computed in ``var``'s own dtype, where it wraps: ``-int8(-128)`` is
    ``-128`` and ``-uint8(1)`` is ``255``, so ``a + (-b)`` equals ``a - b`` only when
    ``b`` is negated in the result dtype or the wrap cannot happen.  True when
    ``var`` already has ``dtype``, when both are floats (negation is exact and
    rounding is symmetric), and for a constant none of whose values wraps (a signed
    integer without the dtype's minimum, an unsigned one that is all zeros).
    ``-bool`` is not defined: False.
    """
    src, dst = np.dtype(var.dtype), np.dtype(dtype)
    if src == dst:
        return src.kind != "b"
    if src.kind == "f":
        return dst.kind == "f"
    if not isinstance(var, Constant) or dst.kind not in "iuf":
        return False
    if src.kind == "i":
        return not (var.data == np.iinfo(src).min).any()
    if src.kind == "u":
        return not var.data.any()
    return False


def rule_collector(rules: list):
    """A decorator ``@collect(name, pattern, doc)`` that appends ``Rule(name, pattern, fn, doc)`` to ``rules``."""

    def collect(name: str, pattern: Pat, doc: str):
        def wrap(build):
            rules.append(Rule(name, pattern, build, doc))
            return build

        return wrap

    return collect


def typed(out, node_out):
    """``out`` if it has exactly ``node_out``'s type, else ``None`` (the rule does not apply)."""
    return out if out is not None and out.type == node_out.type else None
