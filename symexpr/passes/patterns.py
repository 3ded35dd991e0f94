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
    return isinstance(node.op, Elemwise) and node.op.scalar_op in _NONNEGATIVE_OPS


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
