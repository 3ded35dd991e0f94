"""Shape operations: reshape, transpose, expand_dims, squeeze, broadcast_to, concatenate, stack."""

from __future__ import annotations

import math

import numpy as np

from symexpr.dtypes import promote
from symexpr.graph.basic import Apply, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops.convert import as_tensor
from symexpr.ops.elemwise import broadcast_static
from symexpr.ops.reduction import normalize_axis


def _int_tuple(value, what: str) -> tuple:
    items = value if isinstance(value, (tuple, list)) else (value,)
    out = []
    for v in items:
        if isinstance(v, Variable):
            raise TypeError(f"{what}: symbolic sizes are not supported, got {v!r}; pass ints")
        if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{what}: expected ints, got {value!r}")
        out.append(int(v))
    return tuple(out)


def _resolve_reshape(in_shape: tuple, target: tuple, what: str) -> tuple:
    """Output shape of a reshape; ``None`` where it depends on unknown input dims."""
    if target.count(-1) > 1:
        raise ValueError(f"{what}: can only specify one unknown dimension (-1), got {target}")
    if any(d < -1 for d in target):
        raise ValueError(f"{what}: invalid dimension in {target}")
    if any(d is None for d in in_shape):
        return tuple(None if d == -1 else d for d in target)
    size = math.prod(in_shape)
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if known == 0 or size % known:
            raise ValueError(f"{what}: cannot reshape {format_shape(in_shape)} (size {size}) into {target}")
        return tuple(size // known if d == -1 else d for d in target)
    if known != size:
        raise ValueError(f"{what}: cannot reshape {format_shape(in_shape)} (size {size}) into {format_shape(target)}")
    return target


def _axes_text(axes: tuple) -> str:
    return str(axes[0]) if len(axes) == 1 else str(axes)


class Reshape(Op):
    """``numpy.reshape`` to a static target shape (one entry may be -1)."""

    __props__ = ("shape",)

    def __init__(self, shape: tuple):
        self.shape = tuple(shape)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        out = _resolve_reshape(x.shape, self.shape, "reshape")
        return Apply(self, [x], [TensorType(x.dtype, out)])

    def perform(self, node, inputs):
        return [np.reshape(inputs[0], self.shape)]

    def pprint(self, node, args):
        return f"reshape({args[0]}, {self.shape})", 100

    def infer_shape(self, node, input_shapes):
        return [_resolve_reshape(tuple(input_shapes[0]), self.shape, "reshape")]


class Transpose(Op):
    """Permute axes: output axis ``i`` is input axis ``axes[i]``."""

    __props__ = ("axes",)

    def __init__(self, axes: tuple):
        self.axes = tuple(axes)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        if sorted(self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {self.axes} are not a permutation of the {x.ndim} axes of {format_shape(x.shape)}")
        return Apply(self, [x], [TensorType(x.dtype, tuple(x.shape[a] for a in self.axes))])

    def perform(self, node, inputs):
        return [np.transpose(inputs[0], self.axes)]

    def infer_shape(self, node, input_shapes):
        return [tuple(input_shapes[0][a] for a in self.axes)]

    def pprint(self, node, args):
        if len(self.axes) == 2:
            return f"{args[0]}.T", 95
        return f"transpose({args[0]}, {self.axes})", 100


class ExpandDims(Op):
    """Insert size-1 axes at positions ``axes`` of the output."""

    __props__ = ("axes",)

    def __init__(self, axes: tuple):
        self.axes = tuple(axes)

    def _shape(self, shape):
        out = list(shape)
        for a in self.axes:
            out.insert(a, 1)
        return tuple(out)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        return Apply(self, [x], [TensorType(x.dtype, self._shape(x.shape))])

    def perform(self, node, inputs):
        return [np.expand_dims(inputs[0], self.axes)]

    def pprint(self, node, args):
        return f"expand_dims({args[0]}, axis={_axes_text(self.axes)})", 100

    def infer_shape(self, node, input_shapes):
        return [self._shape(input_shapes[0])]


class Squeeze(Op):
    """Remove the size-1 axes ``axes``."""

    __props__ = ("axes",)

    def __init__(self, axes: tuple):
        self.axes = tuple(axes)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        for a in self.axes:
            if x.shape[a] not in (1, None):
                raise ValueError(f"squeeze: axis {a} of {format_shape(x.shape)} has size {x.shape[a]}, not 1")
        shape = tuple(d for i, d in enumerate(x.shape) if i not in self.axes)
        return Apply(self, [x], [TensorType(x.dtype, shape)])

    def perform(self, node, inputs):
        return [np.squeeze(inputs[0], self.axes)]

    def pprint(self, node, args):
        return f"squeeze({args[0]}, axis={_axes_text(self.axes)})", 100

    def infer_shape(self, node, input_shapes):
        return [tuple(d for i, d in enumerate(input_shapes[0]) if i not in self.axes)]


class BroadcastTo(Op):
    """``numpy.broadcast_to`` a static shape."""

    __props__ = ("shape",)

    def __init__(self, shape: tuple):
        self.shape = tuple(shape)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        if x.ndim > len(self.shape):
            raise ValueError(f"broadcast_to: cannot broadcast {format_shape(x.shape)} to the lower-rank {format_shape(self.shape)}")
        for got, want in zip(x.shape[::-1], self.shape[::-1]):
            if got not in (None, 1, want):
                raise ValueError(f"broadcast_to: cannot broadcast {format_shape(x.shape)} to {format_shape(self.shape)}")
        return Apply(self, [x], [TensorType(x.dtype, self.shape)])

    def perform(self, node, inputs):
        return [np.broadcast_to(inputs[0], self.shape)]

    def pprint(self, node, args):
        return f"broadcast_to({args[0]}, {self.shape})", 100

    def infer_shape(self, node, input_shapes):
        return [self.shape]


class Concatenate(Op):
    """``numpy.concatenate`` along ``axis``; dtypes promote like NumPy."""

    __props__ = ("axis",)

    def __init__(self, axis: int):
        self.axis = int(axis)

    def make_node(self, *tensors) -> Apply:
        tensors = [as_tensor(t) for t in tensors]
        if not tensors:
            raise ValueError("concatenate: need at least one tensor")
        ndim = tensors[0].ndim
        if ndim == 0:
            raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
        shapes = [t.shape for t in tensors]
        if any(t.ndim != ndim for t in tensors):
            raise ValueError(f"concatenate: all tensors need the same rank, got shapes {', '.join(map(format_shape, shapes))}")
        if not 0 <= self.axis < ndim:
            raise ValueError(f"concatenate: axis {self.axis} is out of bounds for rank {ndim}")
        out = []
        for i in range(ndim):
            dims = [s[i] for s in shapes]
            if i == self.axis:
                out.append(None if None in dims else sum(dims))
                continue
            known = {d for d in dims if d is not None}
            if len(known) > 1:
                raise ValueError(
                    f"concatenate: shapes {', '.join(map(format_shape, shapes))} differ in dimension {i}, "
                    f"which is not the concatenation axis {self.axis}"
                )
            out.append(known.pop() if known else None)
        dtype = promote(*[t.dtype for t in tensors])
        return Apply(self, tensors, [TensorType(dtype, tuple(out))])

    def perform(self, node, inputs):
        return [np.concatenate(inputs, axis=self.axis, dtype=node.outputs[0].dtype)]

    def pprint(self, node, args):
        return f"concatenate([{', '.join(args)}], axis={self.axis})", 100

    def infer_shape(self, node, input_shapes):
        out = list(input_shapes[0])
        for s in input_shapes[1:]:
            if any(a != b for i, (a, b) in enumerate(zip(out, s)) if i != self.axis):
                raise ValueError(
                    f"concatenate: shapes {', '.join(map(format_shape, map(tuple, input_shapes)))} differ "
                    f"outside the concatenation axis {self.axis}"
                )
        out[self.axis] = sum(s[self.axis] for s in input_shapes)
        return [tuple(out)]


def reshape(x, shape) -> Variable:
    """Reshape to ``shape`` (ints; at most one -1, inferred), like ``numpy.reshape``."""
    x = as_tensor(x)
    return Reshape(_int_tuple(shape, "reshape: shape"))(x)


def transpose(x, axes=None) -> Variable:
    """Permute axes (reverse them when ``axes`` is None), like ``numpy.transpose``."""
    x = as_tensor(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    else:
        axes = _int_tuple(axes, "transpose: axes")
        if len(axes) != x.ndim:
            raise ValueError(f"transpose: axes {axes} do not match a tensor of rank {x.ndim}")
        axes = tuple(a % x.ndim if -x.ndim <= a < x.ndim else a for a in axes)
    if axes == tuple(range(x.ndim)):
        return x
    return Transpose(axes)(x)


def expand_dims(x, axis) -> Variable:
    """Insert size-1 axes at ``axis`` (int or tuple, positions in the result)."""
    x = as_tensor(x)
    axes = _int_tuple(axis, "expand_dims: axis")
    return ExpandDims(normalize_axis(axes, x.ndim + len(axes), "expand_dims"))(x)


def squeeze(x, axis=None) -> Variable:
    """Remove size-1 axes.

    With ``axis=None`` only the axes statically known to be 1 are removed (the
    rank of a symbolic tensor cannot depend on runtime sizes).
    """
    x = as_tensor(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = normalize_axis(axis, x.ndim, "squeeze")
    if not axes:
        return x
    return Squeeze(axes)(x)


def broadcast_to(x, shape) -> Variable:
    """Broadcast to a static ``shape``, like ``numpy.broadcast_to``."""
    x = as_tensor(x)
    shape = _int_tuple(shape, "broadcast_to: shape")
    if any(d < 0 for d in shape):
        raise ValueError(f"broadcast_to: shape must be non-negative, got {shape}")
    broadcast_static([x.shape, shape], "broadcast_to")
    return BroadcastTo(shape)(x)


def concatenate(tensors, axis=0) -> Variable:
    """Join tensors along an existing axis, like ``numpy.concatenate``."""
    if isinstance(tensors, Variable) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"concatenate: expected a list or tuple of tensors, got {type(tensors).__name__}")
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: need at least one tensor")
    ndim = tensors[0].ndim
    if ndim == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
    (axis,) = normalize_axis(_int_tuple(axis, "concatenate: axis"), ndim, "concatenate")
    return Concatenate(axis)(*tensors)


def stack(tensors, axis=0) -> Variable:
    """Join tensors of one shape along a new axis, like ``numpy.stack``."""
    if isinstance(tensors, Variable) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"stack: expected a list or tuple of tensors, got {type(tensors).__name__}")
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: need at least one tensor")
    shapes = [t.shape for t in tensors]
    if any(t.ndim != tensors[0].ndim for t in tensors):
        raise ValueError(f"stack: all tensors need the same shape, got {', '.join(map(format_shape, shapes))}")
    (axis,) = normalize_axis(_int_tuple(axis, "stack: axis"), tensors[0].ndim + 1, "stack")
    return Concatenate(axis)(*[ExpandDims((axis,))(t) for t in tensors])
