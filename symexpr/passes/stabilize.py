"""Stabilisation and recognition of hand-written composites.

These rules change values, always toward the exact result: ``log(1 + x)``
becomes ``log1p(x)``, a hand-written softmax becomes the stable
:class:`~symexpr.ops.nnet.Softmax`.  Recognising composites also lets later
passes (SmoothQuant, INT8, attention fusion) and backends see them whole.
They match float dtypes only.
"""

from __future__ import annotations

import numpy as np

from symexpr.ops import elemwise as ew
from symexpr.ops import nnet
from symexpr.ops import scalar as ps
from symexpr.ops.reduction import Reduce
from symexpr.passes.patterns import X, const, keeps_type, nonnegative, rule_collector, scalar_value, typed
from symexpr.rewriting import Pat, Rule

RULES: list[Rule] = []


_rule = rule_collector(RULES)


def _reduce(kind: str, inner: Pat, name: str | None = None) -> Pat:
    return Pat(Reduce, [inner], name=name, where=lambda v: v.owner.op.kind == kind)



@_rule("log_softmax", Pat(ps.log, [Pat(nnet.Softmax, [X], name="sm")]), "log(softmax(x)) -> log_softmax(x)")
def _log_softmax(node_out, x, sm):
    return typed(nnet.LogSoftmax(sm.owner.op.axis)(x), node_out)


@_rule("log1p", Pat(ps.log, [Pat(ps.add, [X, const("one", 1)], dtype="f")]), "log(x + 1) -> log1p(x)")
def _log1p(node_out, x, one):
    return typed(ew.log1p(x), node_out)


@_rule("expm1", Pat(ps.add, [Pat(ps.exp, [X]), const("minus_one", -1)], dtype="f"), "exp(x) + (-1) -> expm1(x)")
def _expm1(node_out, x, minus_one):
    return typed(ew.expm1(x), node_out)


@_rule("expm1_sub", Pat(ps.sub, [Pat(ps.exp, [X]), const("one", 1)], dtype="f"), "exp(x) - 1 -> expm1(x)")
def _expm1_sub(node_out, x, one):
    return typed(ew.expm1(x), node_out)


@_rule("logsumexp", Pat(ps.log, [_reduce("sum", Pat(ps.exp, [X], dtype="f"), name="s")]), "log(sum(exp(x))) -> logsumexp(x)")
def _logsumexp(node_out, x, s):
    op = s.owner.op
    return typed(nnet.logsumexp(x, axis=op.axis, keepdims=op.keepdims), node_out)


def minus(a: Pat, b: Pat, name: str | None = None) -> Pat:
    """``a - b`` in either form: ``sub(a, b)`` or canonical ``add(a, neg(b))``."""
    return Pat.any_of(Pat(ps.sub, [a, b]), Pat(ps.add, [a, Pat(ps.neg, [b])]), name=name)


def square(a: Pat) -> Pat:
    """``a * a`` or ``a ** 2``."""
    return Pat.any_of(Pat(ps.mul, [a, a]), Pat(ps.power, [a, Pat.const("two", 2)]))


def inv_sqrt_times(a: Pat, inside: Pat) -> Pat:
    """``a * rsqrt(inside)`` or ``a / sqrt(inside)``."""
    return Pat.any_of(Pat(ps.mul, [a, Pat(ps.rsqrt, [inside])]), Pat(ps.true_div, [a, Pat(ps.sqrt, [inside])]))


def _softmax_builder(node_out, x, e, s, m=None, **_):
    sum_op = s.owner.op
    if not sum_op.keepdims or (m is not None and m.owner.op.axis != sum_op.axis):
        return None
    return typed(nnet.softmax(x, axis=sum_op.axis), node_out)


_MAX = Pat(Reduce, [X], name="m", where=lambda v: v.owner.op.kind == "max" and v.owner.op.keepdims)
_E = Pat(ps.exp, [minus(X, _MAX)], name="e", dtype="f")
RULES.append(Rule(
    "softmax_stable",
    Pat(ps.true_div, [_E, _reduce("sum", _E, name="s")]),
    _softmax_builder,
    "exp(x - max(x)) / sum(exp(x - max(x))) -> softmax(x)",
))
RULES.append(Rule(
    "softmax_naive",
    Pat(ps.true_div, [Pat(ps.exp, [X], name="e", dtype="f"), _reduce("sum", Pat(ps.exp, [X]), name="s")]),
    _softmax_builder,
    "exp(x) / sum(exp(x), keepdims=True) -> softmax(x) (stable: no overflow for large x)",
))


@_rule("silu", Pat(ps.mul, [X, Pat(ps.sigmoid, [X])], dtype="f"), "x * sigmoid(x) -> silu(x)")
def _silu(node_out, x):
    return typed(ew.silu(x), node_out)


def _is(value):
    def check(v):
        got = scalar_value(v)
        return got is not None and np.isclose(got, value, rtol=1e-6, atol=0)

    return check


def _gelu_erf_pattern():
    inner = Pat(ps.erf, [Pat(ps.mul, [X, Pat.var("k", where=_is(0.7071067811865476))])])
    one_plus = Pat(ps.add, [inner, Pat.var("one", where=_is(1.0))])
    half_x = Pat(ps.mul, [X, Pat.var("half", where=_is(0.5))])
    return Pat(ps.mul, [half_x, one_plus], dtype="f")


@_rule("gelu_erf", _gelu_erf_pattern(), "0.5 * x * (1 + erf(x * 0.7071...)) -> gelu(x)")
def _gelu_erf(node_out, x, k, one, half):
    return typed(ew.gelu(x), node_out)


def _gelu_tanh_pattern():
    cube = Pat(ps.mul, [Pat(ps.mul, [X, X]), X])
    inner = Pat(ps.add, [X, Pat(ps.mul, [cube, Pat.var("c", where=_is(0.044715))])])
    t = Pat(ps.tanh, [Pat(ps.mul, [inner, Pat.var("k", where=_is(0.7978845608028654))])])
    one_plus = Pat(ps.add, [t, Pat.var("one", where=_is(1.0))])
    half_x = Pat(ps.mul, [X, Pat.var("half", where=_is(0.5))])
    return Pat(ps.mul, [half_x, one_plus], dtype="f")


@_rule("gelu_tanh", _gelu_tanh_pattern(),
       "0.5 * x * (1 + tanh(0.79788... * (x + 0.044715 * x*x*x))) -> gelu(x, 'tanh') "
       "(same formula, other rounding order: float32 results within 2.4e-7 absolute; "
       "relative error grows where 1 + tanh(...) cancels, x < -1)")
def _gelu_tanh(node_out, x, c, k, one, half):
    return typed(ew.gelu(x, approximate="tanh"), node_out)


def _last_axis_mean(inner: Pat, name: str) -> Pat:
    return Pat(Reduce, [inner], name=name,
               where=lambda v: v.owner.op.kind == "mean" and v.owner.op.keepdims and v.owner.op.axis == (v.owner.inputs[0].ndim - 1,))


def _eps_value(eps):
    value = scalar_value(eps)
    if value is None or eps.ndim > 0 and eps.type.shape != (1,) * eps.ndim:
        return None
    return float(value)


_EPS = Pat.const("eps")


@_rule("rms_norm", inv_sqrt_times(X, Pat(ps.add, [_last_axis_mean(square(X), "ms"), _EPS]), ),
       "x / sqrt(mean(x*x, -1, keepdims) + eps) -> rms_norm(x, eps)")
def _rms_norm(node_out, x, ms, eps, **_):
    value = _eps_value(eps)
    return None if value is None or not node_out.dtype.startswith("float") else typed(nnet.rms_norm(x, eps=value), node_out)


def _layer_norm_pattern():
    centered = minus(X, _last_axis_mean(X, "mu"), name="xc")
    var = _last_axis_mean(square(centered), "var")
    return inv_sqrt_times(centered, Pat(ps.add, [var, _EPS]))


@_rule("layer_norm", _layer_norm_pattern(), "(x - mean) / sqrt(mean((x - mean)**2) + eps) -> layer_norm(x, eps)")
def _layer_norm(node_out, x, mu, xc, var, eps, **_):
    value = _eps_value(eps)
    return None if value is None or not node_out.dtype.startswith("float") else typed(nnet.layer_norm(x, eps=value), node_out)


def _last_dim_vector(v, x) -> bool:
    return v.ndim == 1 and (v.type.shape[0] in (None, x.type.shape[-1]) or x.type.shape[-1] is None)


_PLAIN_LN = Pat(nnet.LayerNorm, [X], name="ln", where=lambda v: not v.owner.op.has_weight and not v.owner.op.has_bias)


@_rule("layer_norm_affine", Pat.any_of(
    Pat(ps.add, [Pat(ps.mul, [_PLAIN_LN, Pat.var("w")]), Pat.var("b")]),
    Pat(ps.mul, [_PLAIN_LN, Pat.var("w")]),
), "layer_norm(x) * w + b -> layer_norm(x, w, b) for 1-d w, b over the last axis")
def _layer_norm_affine(node_out, x, ln, w, b=None):
    if not _last_dim_vector(w, x) or (b is not None and not _last_dim_vector(b, x)):
        return None
    return typed(nnet.layer_norm(x, w, b, eps=ln.owner.op.eps), node_out)


@_rule("rms_norm_weight", Pat(ps.mul, [Pat(nnet.RMSNorm, [X], name="rms", where=lambda v: not v.owner.op.has_weight), Pat.var("w")]),
       "rms_norm(x) * w -> rms_norm(x, w) for a 1-d w over the last axis")
def _rms_norm_weight(node_out, x, rms, w):
    if not _last_dim_vector(w, x):
        return None
    return typed(nnet.rms_norm(x, w, eps=rms.owner.op.eps), node_out)


def _last_axis_var(inner: Pat, name: str) -> Pat:
    from symexpr.ops.reduction import Var

    return Pat(Var, [inner], name=name,
               where=lambda v: v.owner.op.keepdims and v.owner.op.ddof == 0 and v.owner.op.axis == (v.owner.inputs[0].ndim - 1,))


@_rule("layer_norm_var", inv_sqrt_times(minus(X, _last_axis_mean(X, "mu"), name="xc"), Pat(ps.add, [_last_axis_var(X, "var"), _EPS])),
       "(x - mean(x)) / sqrt(var(x) + eps) over the last axis -> layer_norm(x, eps)")
def _layer_norm_var(node_out, x, mu, xc, var, eps, **_):
    value = _eps_value(eps)
    return None if value is None or not node_out.dtype.startswith("float") else typed(nnet.layer_norm(x, eps=value), node_out)


_M = Pat(Reduce, [X], name="m", where=lambda v: v.owner.op.kind == "max" and v.owner.op.keepdims)


@_rule("logsumexp_shifted", Pat(ps.add, [
    Pat(ps.log, [_reduce("sum", Pat(ps.exp, [minus(X, _M)], dtype="f"), name="s")]), _M,
]), "log(sum(exp(x - max(x)), keepdims=True)) + max(x) -> logsumexp(x, keepdims=True)")
def _logsumexp_shifted(node_out, x, m, s, **_):
    op = s.owner.op
    if not op.keepdims or m.owner.op.axis != op.axis:
        return None
    return typed(nnet.logsumexp(x, axis=op.axis, keepdims=True), node_out)


@_rule("log_exp", Pat(ps.log, [Pat(ps.exp, [X], dtype="f")]),
       "log(exp(x)) -> x for floats: the exact value (log(exp(x)) rounds twice and overflows for large x)")
def _log_exp(node_out, x):
    return x if keeps_type(node_out, x) else None


@_rule("exp_log", Pat(ps.exp, [Pat(ps.log, [X], dtype="f")]), "exp(log(x)) -> x for floats known to be >= 0: the exact value (the original is within ~9 ulp)")
def _exp_log(node_out, x):
    return x if keeps_type(node_out, x) and nonnegative(x) else None
