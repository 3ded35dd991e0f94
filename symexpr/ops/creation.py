"""Tensors made from sizes: ``arange``, ``full``, ``zeros``, ``ones`` and their ``_like`` forms."""

from __future__ import annotations

import math

import numpy as np

from symexpr.dtypes import canonical_dtype, is_int
from symexpr.graph.basic import Apply, Constant, Op, Variable
from symexpr.graph.type import TensorType
from symexpr.ops.convert import as_tensor, constant
from symexpr.ops.elemwise import cast
from symexpr.ops.shape import broadcast_to
from symexpr.ops.sizes import shape_of, static_int


def _arange_length(start, stop, step) -> int:
    return max(0, math.ceil((stop - start) / step))


class ARange(Op):
    """``numpy.arange(start, stop, step)`` of ``dtype``; each bound is a prop, or None and taken from an input.

    Bounds keep the values they were given (Python ints or floats; int64 or
    float64 inputs): as in NumPy, the length comes from them, and only the
    values are converted to ``dtype`` (``arange(300, dtype="int8")`` has 300
    elements that wrap).  The bounds given as inputs are size inputs: they
    decide the output's length.
    """

    __props__ = ("dtype", "start", "stop", "step")

    def __init__(self, dtype: str, start=None, stop=None, step=None):
        self.dtype = canonical_dtype(dtype)
        self.start, self.stop, self.step = start, stop, step

    def _bounds(self, values) -> tuple:
        it = iter(values)
        return tuple(next(it).item() if b is None else b for b in (self.start, self.stop, self.step))

    def make_node(self, *bounds) -> Apply:
        bounds = [as_tensor(b) for b in bounds]
        want = sum(b is None for b in (self.start, self.stop, self.step))
        if len(bounds) != want:
            raise TypeError(f"arange: {want} symbolic bounds expected, got {len(bounds)}")
        for b in bounds:
            if b.ndim != 0 or b.dtype not in ("int64", "float64"):
                raise TypeError(f"arange: symbolic bounds must be 0-d int64 or float64, got {b.type}")
        length = None if bounds else _arange_length(self.start, self.stop, self.step)
        return Apply(self, bounds, [TensorType(self.dtype, (length,))])

    def perform(self, node, inputs):
        start, stop, step = self._bounds(np.asarray(v) for v in inputs)
        if step == 0:
            raise ValueError("arange: step cannot be zero")
        return [np.arange(start, stop, step, dtype=self.dtype)]

    def infer_shape(self, node, input_shapes):
        return [(_arange_length(self.start, self.stop, self.step),)]

    def size_positions(self, node) -> tuple:
        return tuple(range(len(node.inputs)))

    def static_op(self, node, sizes):
        start, stop, step = self._bounds(np.asarray(v) for v in sizes)
        if step == 0:
            raise ValueError("arange: step cannot be zero")
        return ARange(self.dtype, start, stop, step)

    def pprint(self, node, args):
        it = iter(args)
        parts = [next(it) if b is None else repr(b) for b in (self.start, self.stop, self.step)]
        return f"arange({', '.join(parts)})", 100


def arange(start, stop=None, step=1, dtype=None) -> Variable:
    """Evenly spaced values in ``[start, stop)``, like ``numpy.arange``; bounds may be 0-d variables.

    ``arange(n)`` counts from 0.  The dtype is int64 when every bound is an
    integer, else float64, unless ``dtype`` is given.
    """
    if stop is None:
        start, stop = 0, start
    bounds = (start, stop, step)
    for name, b in zip(("start", "stop", "step"), bounds):
        if isinstance(b, Variable) and b.ndim != 0:
            raise TypeError(f"arange: {name} must be a scalar, got {b.type}")
        if not isinstance(b, (Variable, int, float, np.integer, np.floating)) or isinstance(b, bool):
            raise TypeError(f"arange: {name} must be a number or a 0-d variable, got {b!r}")
    if dtype is None:
        integral = all(is_int(b.dtype) if isinstance(b, Variable) else isinstance(b, (int, np.integer)) for b in bounds)
        dtype = "int64" if integral else "float64"
    dtype = canonical_dtype(dtype, "arange: dtype")
    if not isinstance(step, Variable) and step == 0 or static_int(step) == 0:
        raise ValueError("arange: step cannot be zero")
    props, inputs = [], []
    for b in bounds:
        if isinstance(b, Variable) and not isinstance(b, Constant):
            wide = "int64" if is_int(b.dtype) else "float64"
            props.append(None)
            inputs.append(b if b.dtype == wide else cast(b, wide))
        else:
            props.append(np.asarray(b.data if isinstance(b, Variable) else b).item())
    return ARange(dtype, *props)(*inputs)


def full(shape, fill_value, dtype=None) -> Variable:
    """A tensor of ``shape`` (ints and int 0-d variables) filled with ``fill_value``, like ``numpy.full``."""
    value = as_tensor(fill_value) if isinstance(fill_value, Variable) else constant(fill_value, dtype=dtype)
    if value.ndim != 0:
        raise ValueError(f"full: fill_value must be a scalar, got {value.type}")
    if dtype is not None and value.dtype != canonical_dtype(dtype):
        value = cast(value, dtype)
    return broadcast_to(value, shape)


def zeros(shape, dtype="float64") -> Variable:
    """A tensor of zeros of ``shape`` (ints and int 0-d variables), like ``numpy.zeros``."""
    return full(shape, 0, dtype)


def ones(shape, dtype="float64") -> Variable:
    """A tensor of ones of ``shape`` (ints and int 0-d variables), like ``numpy.ones``."""
    return full(shape, 1, dtype)


def full_like(x, fill_value, dtype=None) -> Variable:
    """A tensor of ``x``'s shape filled with ``fill_value`` (``x``'s dtype by default)."""
    x = as_tensor(x)
    return full(shape_of(x), fill_value, dtype or x.dtype)


def zeros_like(x, dtype=None) -> Variable:
    """Zeros of ``x``'s shape and dtype (or ``dtype``)."""
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None) -> Variable:
    """Ones of ``x``'s shape and dtype (or ``dtype``)."""
    return full_like(x, 1, dtype)
