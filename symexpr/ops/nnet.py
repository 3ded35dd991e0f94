"""Neural-network ops: softmax, log_softmax, logsumexp, layer_norm, rms_norm.

Each is one op, so passes can match it whole and backends can implement it
with a fused kernel, and each carries :meth:`~symexpr.graph.basic.Op.decompose`,
its definition in primitive ops.  The reference computes float16 in float32
and rounds once.  Integer inputs become the float type NumPy's ``exp`` gives.
"""

from __future__ import annotations

import numpy as np

from symexpr.dtypes import float_result, promote
from symexpr.graph.basic import Apply, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops import elemwise as ew
from symexpr.ops import reduction as red
from symexpr.ops.convert import as_tensor


def _work_dtype(out_dtype: str) -> str:
    """The dtype the reference computes in: float16 is widened to float32."""
    return promote(out_dtype, "float32")


def _row_max(x, axes):
    """Max over ``axes`` (kept); -inf for an empty axis."""
    return np.max(x, axis=axes, keepdims=True, initial=-np.inf)


def _symbolic_row_max(x, axes):
    return red.Reduce("max", axes, keepdims=True, initial=-np.inf)(x)


def _symbolic_input(node):
    """The first input cast to the work dtype, for a decomposition computed like ``perform``."""
    return ew.cast(node.inputs[0], _work_dtype(node.outputs[0].dtype))


class _AxisOp(Op):
    """Shared plumbing for softmax-like ops over ``axis``."""

    __props__ = ("axis",)
    keeps_shape = True

    def __init__(self, axis: tuple):
        self.axis = tuple(axis)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        red.check_axes(self.axis, x.ndim, type(self).__name__.lower())
        return Apply(self, [x], [TensorType(float_result(x.dtype), self._shape(x.type.shape))])

    def _shape(self, shape):
        return tuple(shape)

    def infer_shape(self, node, input_shapes):
        return [self._shape(tuple(input_shapes[0]))]

    def perform(self, node, inputs):
        out = node.outputs[0].dtype
        x = inputs[0].astype(_work_dtype(out))
        with np.errstate(all="ignore"):
            return [np.asarray(self._compute(x)).astype(out, copy=False)]

    def display_name(self):
        params = [f"axis={_axis_text(self.axis)}"] + [f"{p}=True" for p in self.__props__[1:] if getattr(self, p)]
        return f"{type(self).__name__}{{{', '.join(params)}}}"

    def pprint(self, node, args):
        name = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "LogSumExp": "logsumexp"}[type(self).__name__]
        keep = ", keepdims=True" if getattr(self, "keepdims", False) else ""
        return f"{name}({args[0]}, axis={_axis_text(self.axis)}{keep})", 100


def _axis_text(axis):
    return str(axis[0]) if len(axis) == 1 else str(axis)


class Softmax(_AxisOp):
    """``exp(x - max) / sum(exp(x - max))`` over ``axis``.

    As in scipy and PyTorch, a row that is all -inf, or holds +inf or NaN, gives NaN.
    """

    def _compute(self, x):
        e = np.exp(x - _row_max(x, self.axis))
        return e / np.sum(e, axis=self.axis, keepdims=True)

    def decompose(self, node):
        x = _symbolic_input(node)
        e = ew.exp(x - _symbolic_row_max(x, self.axis))
        return [ew.cast(e / red.sum(e, axis=self.axis, keepdims=True), node.outputs[0].dtype)]


class LogSoftmax(_AxisOp):
    """``x - max - log(sum(exp(x - max)))`` over ``axis`` (NaN rows as for :class:`Softmax`)."""

    def _compute(self, x):
        shifted = x - _row_max(x, self.axis)
        return shifted - np.log(np.sum(np.exp(shifted), axis=self.axis, keepdims=True))

    def decompose(self, node):
        x = _symbolic_input(node)
        shifted = x - _symbolic_row_max(x, self.axis)
        out = shifted - ew.log(red.sum(ew.exp(shifted), axis=self.axis, keepdims=True))
        return [ew.cast(out, node.outputs[0].dtype)]


class LogSumExp(_AxisOp):
    """``log(sum(exp(x)))`` over ``axis``, computed stably; all -inf gives -inf."""

    __props__ = ("axis", "keepdims")

    def __init__(self, axis: tuple, keepdims: bool = False):
        super().__init__(axis)
        self.keepdims = bool(keepdims)

    def _shape(self, shape):
        return red.reduced_shape(tuple(shape), self.axis, self.keepdims)

    def _compute(self, x):
        m = _row_max(x, self.axis)
        m = np.where(np.isfinite(m), m, 0)  # as scipy: all -inf gives -inf, +inf gives +inf
        out = np.log(np.sum(np.exp(x - m), axis=self.axis, keepdims=True)) + m
        return out if self.keepdims else np.squeeze(out, self.axis)

    def decompose(self, node):
        x = _symbolic_input(node)
        m = _symbolic_row_max(x, self.axis)
        m = ew.where(ew.isfinite(m), m, 0)
        out = ew.log(red.sum(ew.exp(x - m), axis=self.axis, keepdims=True)) + m
        if not self.keepdims and self.axis:
            from symexpr.ops.shape import Squeeze

            out = Squeeze(self.axis)(out)
        return [ew.cast(out, node.outputs[0].dtype)]


class LayerNorm(Op):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last axis (biased variance).

    Inputs are ``x`` and then ``weight`` and ``bias`` when present.
    """

    __props__ = ("eps", "has_weight", "has_bias")

    def __init__(self, eps: float, has_weight: bool, has_bias: bool):
        self.eps = float(eps)
        self.has_weight = bool(has_weight)
        self.has_bias = bool(has_bias)

    def make_node(self, x, *params) -> Apply:
        names = [n for n, present in (("weight", self.has_weight), ("bias", self.has_bias)) if present]
        return _norm_node(self, "layer_norm", x, params, names)

    def infer_shape(self, node, input_shapes):
        return [_norm_shape(type(self).__name__, input_shapes)]

    def _affine(self, params):
        it = iter(params)
        weight = next(it) if self.has_weight else None
        bias = next(it) if self.has_bias else None
        return weight, bias

    def perform(self, node, inputs):
        out = node.outputs[0].dtype
        x, *params = (a.astype(_work_dtype(out)) for a in inputs)
        weight, bias = self._affine(params)
        with np.errstate(all="ignore"):
            mu = np.mean(x, axis=-1, keepdims=True)
            centered = x - mu
            var = np.mean(centered * centered, axis=-1, keepdims=True)
            y = centered / np.sqrt(var + np.asarray(self.eps, x.dtype))
            if weight is not None:
                y = y * weight
            if bias is not None:
                y = y + bias
        return [y.astype(out, copy=False)]

    def decompose(self, node):
        out = node.outputs[0].dtype
        x, *params = (ew.cast(v, _work_dtype(out)) for v in node.inputs)
        weight, bias = self._affine(params)
        centered = x - red.mean(x, axis=-1, keepdims=True)
        var = red.mean(centered * centered, axis=-1, keepdims=True)
        y = centered * ew.rsqrt(var + self.eps)
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        return [ew.cast(y, out)]

    def display_name(self):
        return f"LayerNorm{{eps={self.eps!r}}}"

    def pprint(self, node, args):
        return f"layer_norm({', '.join(args)}, eps={self.eps!r})", 100


class RMSNorm(Op):
    """``x / sqrt(mean(x**2) + eps) * weight`` over the last axis."""

    __props__ = ("eps", "has_weight")

    def __init__(self, eps: float, has_weight: bool):
        self.eps = float(eps)
        self.has_weight = bool(has_weight)

    def make_node(self, x, *params) -> Apply:
        return _norm_node(self, "rms_norm", x, params, ["weight"] if self.has_weight else [])

    def infer_shape(self, node, input_shapes):
        return [_norm_shape(type(self).__name__, input_shapes)]

    def perform(self, node, inputs):
        out = node.outputs[0].dtype
        x, *params = (a.astype(_work_dtype(out)) for a in inputs)
        with np.errstate(all="ignore"):
            y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.asarray(self.eps, x.dtype))
            if params:
                y = y * params[0]
        return [y.astype(out, copy=False)]

    def decompose(self, node):
        out = node.outputs[0].dtype
        x, *params = (ew.cast(v, _work_dtype(out)) for v in node.inputs)
        y = x * ew.rsqrt(red.mean(x * x, axis=-1, keepdims=True) + self.eps)
        if params:
            y = y * params[0]
        return [ew.cast(y, out)]

    def display_name(self):
        return f"RMSNorm{{eps={self.eps!r}}}"

    def pprint(self, node, args):
        return f"rms_norm({', '.join(args)}, eps={self.eps!r})", 100


def _norm_shape(what, input_shapes) -> tuple:
    """The output shape (that of x), checking that each parameter fits the last axis at run time."""
    x = tuple(input_shapes[0])
    for p in input_shapes[1:]:
        if tuple(p) not in ((x[-1],), (1,)):
            raise ValueError(f"{what}: a parameter has shape {format_shape(tuple(p))} but the last axis of x has size {x[-1]}")
    return x


def _norm_node(op, what, x, params, names) -> Apply:
    x = as_tensor(x)
    params = [as_tensor(p) for p in params]
    if len(params) != len(names):
        raise TypeError(f"{what}: expected {len(names)} parameter tensor(s) ({', '.join(names) or 'none'}), got {len(params)}")
    if x.ndim == 0:
        raise ValueError(f"{what}: x must have at least one dimension, got a 0-d tensor")
    d = x.type.shape[-1]
    for name, p in zip(names, params):
        if p.ndim != 1:
            raise ValueError(f"{what}: {name} must be 1-d over the last axis of x, got shape {format_shape(p.type.shape)}")
        if p.type.shape[0] is not None and d is not None and p.type.shape[0] not in (d, 1):
            raise ValueError(
                f"{what}: {name} has shape {format_shape(p.type.shape)} but the last axis of x has size {d}"
            )
    dtype = float_result(promote(x.dtype, *[p.dtype for p in params]))
    return Apply(op, [x, *params], [TensorType(dtype, x.type.shape)])


def _axes(x, axis, what):
    return red.normalize_axis(axis, x.ndim, what)


def softmax(x, axis=-1) -> Variable:
    """Softmax over ``axis`` (int, tuple or None for all), computed stably."""
    x = as_tensor(x)
    return Softmax(_axes(x, axis, "softmax"))(x)


def log_softmax(x, axis=-1) -> Variable:
    """``log(softmax(x))`` over ``axis``, computed stably."""
    x = as_tensor(x)
    return LogSoftmax(_axes(x, axis, "log_softmax"))(x)


def logsumexp(x, axis=None, keepdims=False) -> Variable:
    """``log(sum(exp(x), axis))`` computed stably, like ``scipy.special.logsumexp``."""
    x = as_tensor(x)
    return LogSumExp(_axes(x, axis, "logsumexp"), keepdims)(x)


def layer_norm(x, weight=None, bias=None, eps=1e-5) -> Variable:
    """Layer normalisation over the last axis: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    Parameters
    ----------
    x : tensor_like
        Input, normalised over its last axis.
    weight, bias : tensor_like, optional
        1-d scale and shift over the last axis.
    eps : float
        Added to the (biased) variance.
    """
    _check_eps(eps, "layer_norm")
    params = [p for p in (weight, bias) if p is not None]
    return LayerNorm(eps, weight is not None, bias is not None)(x, *params)


def rms_norm(x, weight=None, eps=1e-6) -> Variable:
    """RMS normalisation over the last axis: ``x / sqrt(mean(x**2) + eps) * weight``."""
    _check_eps(eps, "rms_norm")
    params = [weight] if weight is not None else []
    return RMSNorm(eps, weight is not None)(x, *params)


def _check_eps(eps, what):
    if not isinstance(eps, (int, float, np.floating, np.integer)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"{what}: eps must be a non-negative number, got {eps!r}")
