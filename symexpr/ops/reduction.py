"""Reductions: sum, prod, max, min, mean, var, argmax, argmin."""

from __future__ import annotations

import functools

import numpy as np

from symexpr.dtypes import canonical_dtype
from symexpr.graph.basic import Apply, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops.convert import as_tensor


def normalize_axis(axis, ndim: int, what: str) -> tuple:
    """Axes as a sorted tuple of non-negative ints; ``None`` means every axis."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if not isinstance(a, (int, np.integer)) or isinstance(a, (bool, np.bool_)):
            raise TypeError(f"{what}: axis must be an int, a tuple of ints or None, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{what}: axis {a} is out of bounds for a tensor of rank {ndim}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: axis {axis!r} repeats an axis")
    return tuple(sorted(out))


def check_axes(axis: tuple, ndim: int, what: str) -> None:
    """Validate an op's normalised axes: sorted, distinct, within ``[0, ndim)``."""
    if any(not 0 <= a < ndim for a in axis) or list(axis) != sorted(set(axis)):
        raise ValueError(
            f"{what}: axis {axis} must be sorted, distinct and within [0, {ndim}) (the functions normalise negative axes)"
        )


def reduced_shape(shape: tuple, axes: tuple, keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


_HAS_NO_IDENTITY = ("max", "min", "argmax", "argmin")


def _check_nonempty(kind, x, axes):
    if kind in _HAS_NO_IDENTITY and any(x.type.shape[a] == 0 for a in axes):
        raise ValueError(f"{kind}: cannot reduce {format_shape(x.type.shape)} over an empty axis (no identity)")


def _numpy_reduce(x, kind: str, axis: tuple, keepdims: bool, initial):
    kwargs = {} if initial is None else {"initial": initial}
    return getattr(np, kind)(x, axis=axis, keepdims=keepdims, **kwargs)


@functools.lru_cache(maxsize=1024)
def _reduce_dtype(kind: str, axis: tuple, keepdims: bool, initial, ndim: int, dtype: str) -> str:
    """The dtype of ``numpy.<kind>`` over an array of rank ``ndim`` and ``dtype`` (probed once per combination)."""
    with np.errstate(all="ignore"):
        probe = _numpy_reduce(np.ones((1,) * ndim, dtype=dtype), kind, axis, keepdims, initial)
    return canonical_dtype(np.asarray(probe).dtype)


@functools.lru_cache(maxsize=1024)
def _var_dtype(axis: tuple, ndim: int, dtype: str) -> str:
    """The dtype of ``numpy.var`` over ``axis`` of an array of rank ``ndim`` and ``dtype`` (probed once per combination)."""
    with np.errstate(all="ignore"):
        probe = np.var(np.ones((1,) * ndim, dtype=dtype), axis=axis)
    return canonical_dtype(np.asarray(probe).dtype)


class Reduce(Op):
    """``numpy.<kind>(x, axis, keepdims=...)`` for kind in sum, prod, max, min, mean.

    ``initial`` (max and min only) is NumPy's ``initial=``: the value of an
    empty reduction, e.g. ``-inf`` for a max that must accept empty axes.
    """

    __props__ = ("kind", "axis", "keepdims", "initial")
    KINDS = ("sum", "prod", "max", "min", "mean")

    def __init__(self, kind: str, axis: tuple, keepdims: bool = False, initial: float | None = None):
        if kind not in self.KINDS:
            raise ValueError(f"Reduce: kind must be one of {self.KINDS}, got {kind!r}")
        if initial is not None and kind not in ("max", "min"):
            raise ValueError(f"Reduce: initial is only supported for max and min, not {kind!r}")
        self.kind = kind
        self.axis = tuple(axis)
        self.keepdims = bool(keepdims)
        self.initial = None if initial is None else float(initial)

    def _extra(self):
        return (", keepdims=True" if self.keepdims else "") + ("" if self.initial is None else f", initial={self.initial}")

    def display_name(self):
        return f"{self.kind.capitalize()}{{axis={self.axis}{self._extra()}}}"

    def _fn(self, x):
        return _numpy_reduce(x, self.kind, self.axis, self.keepdims, self.initial)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        check_axes(self.axis, x.ndim, self.kind)
        if self.initial is None:
            _check_nonempty(self.kind, x, self.axis)
        dtype = _reduce_dtype(self.kind, self.axis, self.keepdims, self.initial, x.ndim, x.dtype)
        return Apply(self, [x], [TensorType(dtype, reduced_shape(x.type.shape, self.axis, self.keepdims))])

    def perform(self, node, inputs):
        return [np.asarray(self._fn(inputs[0]))]

    def infer_shape(self, node, input_shapes):
        return [reduced_shape(input_shapes[0], self.axis, self.keepdims)]

    def pprint(self, node, args):
        return f"{self.kind}({args[0]}, axis={self.axis}{self._extra()})", 100


class Var(Op):
    """``numpy.var(x, axis, ddof=..., keepdims=...)``: the mean squared deviation."""

    __props__ = ("axis", "keepdims", "ddof")

    def __init__(self, axis: tuple, keepdims: bool = False, ddof: int = 0):
        self.axis = tuple(axis)
        self.keepdims = bool(keepdims)
        self.ddof = int(ddof)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        check_axes(self.axis, x.ndim, "var")
        dtype = _var_dtype(self.axis, x.ndim, x.dtype)
        return Apply(self, [x], [TensorType(dtype, reduced_shape(x.type.shape, self.axis, self.keepdims))])

    def perform(self, node, inputs):
        return [np.asarray(np.var(inputs[0], axis=self.axis, ddof=self.ddof, keepdims=self.keepdims))]

    def infer_shape(self, node, input_shapes):
        return [reduced_shape(input_shapes[0], self.axis, self.keepdims)]

    def display_name(self):
        extra = (", keepdims=True" if self.keepdims else "") + (f", ddof={self.ddof}" if self.ddof else "")
        return f"Var{{axis={self.axis}{extra}}}"

    def pprint(self, node, args):
        extra = (", keepdims=True" if self.keepdims else "") + (f", ddof={self.ddof}" if self.ddof else "")
        return f"var({args[0]}, axis={self.axis}{extra})", 100


class ArgReduce(Op):
    """``numpy.argmax``/``argmin``: int64 index of the first extreme value (NaN counts as extreme)."""

    __props__ = ("kind", "axis", "keepdims")

    def __init__(self, kind: str, axis: int | None, keepdims: bool = False):
        if kind not in ("argmax", "argmin"):
            raise ValueError(f"ArgReduce: kind must be 'argmax' or 'argmin', got {kind!r}")
        self.kind = kind
        self.axis = axis
        self.keepdims = bool(keepdims)

    def display_name(self):
        return f"{self.kind.capitalize()}{{axis={self.axis}{', keepdims=True' if self.keepdims else ''}}}"

    def _axes(self, ndim):
        return tuple(range(ndim)) if self.axis is None else (self.axis,)

    def _shape(self, shape):
        if self.axis is None:
            return (1,) * len(shape) if self.keepdims else ()
        return reduced_shape(tuple(shape), (self.axis,), self.keepdims)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        _check_nonempty(self.kind, x, self._axes(x.ndim))
        return Apply(self, [x], [TensorType("int64", self._shape(x.type.shape))])

    def perform(self, node, inputs):
        fn = getattr(np, self.kind)
        return [np.asarray(fn(inputs[0], axis=self.axis, keepdims=self.keepdims), dtype=np.int64)]

    def infer_shape(self, node, input_shapes):
        return [self._shape(input_shapes[0])]

    def pprint(self, node, args):
        return f"{self.kind}({args[0]}, axis={self.axis}{', keepdims=True' if self.keepdims else ''})", 100


def _reduce(kind, x, axis, keepdims) -> Variable:
    x = as_tensor(x)
    return Reduce(kind, normalize_axis(axis, x.ndim, kind), keepdims)(x)


def sum(x, axis=None, keepdims=False) -> Variable:
    """Sum over ``axis`` (int, tuple or None for all), like ``numpy.sum`` (small ints accumulate in int64)."""
    return _reduce("sum", x, axis, keepdims)


def prod(x, axis=None, keepdims=False) -> Variable:
    """Product over ``axis``, like ``numpy.prod``."""
    return _reduce("prod", x, axis, keepdims)


def max(x, axis=None, keepdims=False) -> Variable:
    """Maximum over ``axis``, like ``numpy.max`` (NaN propagates)."""
    return _reduce("max", x, axis, keepdims)


def min(x, axis=None, keepdims=False) -> Variable:
    """Minimum over ``axis``, like ``numpy.min`` (NaN propagates)."""
    return _reduce("min", x, axis, keepdims)


def mean(x, axis=None, keepdims=False) -> Variable:
    """Arithmetic mean over ``axis``, like ``numpy.mean`` (integers give float64)."""
    return _reduce("mean", x, axis, keepdims)


def var(x, axis=None, keepdims=False, ddof=0) -> Variable:
    """Variance over ``axis``, like ``numpy.var``."""
    x = as_tensor(x)
    if not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise ValueError(f"var: ddof must be a non-negative int, got {ddof!r}")
    return Var(normalize_axis(axis, x.ndim, "var"), keepdims, ddof)(x)


def _arg(kind, x, axis, keepdims) -> Variable:
    x = as_tensor(x)
    if axis is not None:
        if isinstance(axis, (tuple, list)):
            raise TypeError(f"{kind}: axis must be an int or None, got {axis!r}")
        (axis,) = normalize_axis(axis, x.ndim, kind)
    return ArgReduce(kind, axis, keepdims)(x)


def argmax(x, axis=None, keepdims=False) -> Variable:
    """Index of the maximum along ``axis`` (flattened when None), like ``numpy.argmax``."""
    return _arg("argmax", x, axis, keepdims)


def argmin(x, axis=None, keepdims=False) -> Variable:
    """Index of the minimum along ``axis`` (flattened when None), like ``numpy.argmin``."""
    return _arg("argmin", x, axis, keepdims)
