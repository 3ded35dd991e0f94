"""Shape operations: reshape, transpose, swapaxes, expand_dims, squeeze, broadcast_to, concatenate, stack, split."""

from __future__ import annotations

import math

import numpy as np

from symexpr.dtypes import promote
from symexpr.graph.basic import Apply, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops.convert import as_tensor
from symexpr.ops.elemwise import broadcast_static, equal, floor_div, mod
from symexpr.ops.indexing import getitem
from symexpr.ops.reduction import normalize_axis
from symexpr.ops.sizes import INT64, as_size, assert_, fill_sizes, shape_of, split_sizes, static_int


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
    """Output shape of a reshape; ``None`` where it depends on sizes not known yet.

    ``target`` entries are ints, -1 (inferred) or None (a symbolic size).
    """
    if target.count(-1) > 1:
        raise ValueError(f"{what}: can only specify one unknown dimension (-1), got {format_shape(target)}")
    if any(d is not None and d < -1 for d in target):
        raise ValueError(f"{what}: invalid dimension in {format_shape(target)}")
    if any(d is None for d in in_shape) or None in target:
        return tuple(None if d in (-1, None) else d for d in target)
    size = math.prod(in_shape)
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if known == 0 or size % known:
            raise ValueError(f"{what}: cannot reshape {format_shape(in_shape)} (size {size}) into {format_shape(target)}")
        return tuple(size // known if d == -1 else d for d in target)
    if known != size:
        raise ValueError(f"{what}: cannot reshape {format_shape(in_shape)} (size {size}) into {format_shape(target)}")
    return target


def _sizes_text(static: tuple, args) -> str:
    """``(a, 12, b)``: the static sizes with the symbolic ones' texts in their slots."""
    it = iter(args)
    parts = [next(it) if d is None else str(d) for d in static]
    return f"({', '.join(parts)}{',' if len(parts) == 1 else ''})"


def _check_size_inputs(static: tuple, sizes, what: str) -> list:
    sizes = [as_tensor(v) for v in sizes]
    if len(sizes) != static.count(None):
        raise TypeError(f"{what}: {static.count(None)} symbolic sizes expected, got {len(sizes)}")
    for v in sizes:
        if v.ndim != 0 or v.dtype != INT64:
            raise TypeError(f"{what}: symbolic sizes must be int64 0-d variables, got {v.type}")
    return sizes


def _axes_text(axes: tuple) -> str:
    return str(axes[0]) if len(axes) == 1 else str(axes)


class Reshape(Op):
    """``numpy.reshape``: target sizes are ints, one -1 (inferred), or None, taken from a size input.

    ``Reshape((None, None, 12, 32))(x, b, n)`` reshapes ``x`` to ``(b, n, 12, 32)``
    where ``b`` and ``n`` are int64 0-d variables (the size inputs, in order).
    """

    __props__ = ("shape",)

    def __init__(self, shape: tuple):
        self.shape = tuple(shape)

    def make_node(self, x, *sizes) -> Apply:
        x = as_tensor(x)
        sizes = _check_size_inputs(self.shape, sizes, "reshape")
        out = _resolve_reshape(x.type.shape, self.shape, "reshape")
        return Apply(self, [x, *sizes], [TensorType(x.dtype, out)])

    def perform(self, node, inputs):
        return [np.reshape(inputs[0], fill_sizes(self.shape, inputs[1:], "reshape"))]

    def pprint(self, node, args):
        return f"reshape({args[0]}, {_sizes_text(self.shape, args[1:])})", 100

    def infer_shape(self, node, input_shapes):
        return [_resolve_reshape(tuple(input_shapes[0]), self.shape, "reshape")]

    def size_positions(self, node) -> tuple:
        return tuple(range(1, len(node.inputs)))

    def static_op(self, node, sizes):
        return Reshape(fill_sizes(self.shape, sizes, "reshape"))


class Transpose(Op):
    """Permute axes: output axis ``i`` is input axis ``axes[i]``."""

    __props__ = ("axes",)

    def __init__(self, axes: tuple):
        self.axes = tuple(axes)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        if sorted(self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {self.axes} are not a permutation of the {x.ndim} axes of {format_shape(x.type.shape)}")
        return Apply(self, [x], [TensorType(x.dtype, tuple(x.type.shape[a] for a in self.axes))])

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
        return Apply(self, [x], [TensorType(x.dtype, self._shape(x.type.shape))])

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
            if x.type.shape[a] not in (1, None):
                raise ValueError(f"squeeze: axis {a} of {format_shape(x.type.shape)} has size {x.type.shape[a]}, not 1")
        shape = tuple(d for i, d in enumerate(x.type.shape) if i not in self.axes)
        return Apply(self, [x], [TensorType(x.dtype, shape)])

    def perform(self, node, inputs):
        return [np.squeeze(inputs[0], self.axes)]

    def pprint(self, node, args):
        return f"squeeze({args[0]}, axis={_axes_text(self.axes)})", 100

    def infer_shape(self, node, input_shapes):
        return [tuple(d for i, d in enumerate(input_shapes[0]) if i not in self.axes)]


class BroadcastTo(Op):
    """``numpy.broadcast_to``: target sizes are ints or None, taken in order from the size inputs."""

    __props__ = ("shape",)

    def __init__(self, shape: tuple):
        self.shape = tuple(shape)

    def make_node(self, x, *sizes) -> Apply:
        x = as_tensor(x)
        sizes = _check_size_inputs(self.shape, sizes, "broadcast_to")
        if x.ndim > len(self.shape):
            raise ValueError(f"broadcast_to: cannot broadcast {format_shape(x.type.shape)} to the lower-rank {format_shape(self.shape)}")
        lead = len(self.shape) - x.ndim
        out = list(self.shape)
        for i, (got, want) in enumerate(zip(x.type.shape, self.shape[lead:])):
            if want is None:
                out[lead + i] = got if got not in (None, 1) else None  # a size other than 1 must match
            elif got not in (None, 1, want):
                raise ValueError(f"broadcast_to: cannot broadcast {format_shape(x.type.shape)} to {format_shape(self.shape)}")
        return Apply(self, [x, *sizes], [TensorType(x.dtype, tuple(out))])

    def perform(self, node, inputs):
        return [np.broadcast_to(inputs[0], fill_sizes(self.shape, inputs[1:], "broadcast_to"))]

    def pprint(self, node, args):
        return f"broadcast_to({args[0]}, {_sizes_text(self.shape, args[1:])})", 100

    def infer_shape(self, node, input_shapes):
        if None in self.shape:
            raise ValueError("broadcast_to: symbolic sizes are resolved by static_op first")
        broadcast_static([tuple(input_shapes[0]), self.shape], "broadcast_to")
        return [self.shape]

    def size_positions(self, node) -> tuple:
        return tuple(range(1, len(node.inputs)))

    def static_op(self, node, sizes):
        return BroadcastTo(fill_sizes(self.shape, sizes, "broadcast_to"))


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
        shapes = [t.type.shape for t in tensors]
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
    """Reshape to ``shape``, like ``numpy.reshape``.

    Parameters
    ----------
    x : tensor
    shape : tuple
        Ints (at most one -1, inferred) and int 0-d variables known at run time,
        e.g. ``(x.shape[0], x.shape[1], 12, 32)`` or ``(x.shape[0], -1)``.
    """
    x = as_tensor(x)
    static, symbolic = split_sizes(shape, "reshape: shape")
    return Reshape(static)(x, *symbolic)


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
        axes = tuple(i for i, d in enumerate(x.type.shape) if d == 1)
    else:
        axes = normalize_axis(axis, x.ndim, "squeeze")
    if not axes:
        return x
    return Squeeze(axes)(x)


def broadcast_to(x, shape) -> Variable:
    """Broadcast to ``shape`` (ints and int 0-d variables known at run time), like ``numpy.broadcast_to``."""
    x = as_tensor(x)
    static, symbolic = split_sizes(shape, "broadcast_to: shape")
    if any(d is not None and d < 0 for d in static):
        raise ValueError(f"broadcast_to: shape must be non-negative, got {format_shape(static)}")
    broadcast_static([x.type.shape, static], "broadcast_to")
    return BroadcastTo(static)(x, *symbolic)


def swapaxes(x, axis1, axis2) -> Variable:
    """Interchange two axes, like ``numpy.swapaxes``."""
    x = as_tensor(x)
    (a,) = normalize_axis(_int_tuple(axis1, "swapaxes: axis1"), x.ndim, "swapaxes")
    (b,) = normalize_axis(_int_tuple(axis2, "swapaxes: axis2"), x.ndim, "swapaxes")
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return transpose(x, tuple(axes))


def split(x, indices_or_sections, axis=0) -> list:
    """Split into a list of views along ``axis``, like ``numpy.split``.

    Parameters
    ----------
    x : tensor
    indices_or_sections : int, int 0-d variable, or sequence of them
        A number of equal parts (the axis must divide evenly: checked when the
        graph is built if its size is known, else at run time), or the
        sorted positions where the parts start.
    axis : int
    """
    x = as_tensor(x)
    if x.ndim == 0:
        raise ValueError("split: cannot split a 0-d tensor")
    (axis,) = normalize_axis(_int_tuple(axis, "split: axis"), x.ndim, "split")
    n = shape_of(x)[axis]
    if isinstance(indices_or_sections, (list, tuple)):
        bounds = [as_size(v, "split: indices") for v in indices_or_sections]
        starts, stops = [0, *bounds], [*bounds, None]
    else:
        sections = as_size(indices_or_sections, "split: sections")
        if isinstance(sections, int) and sections <= 0:
            raise ValueError(f"split: the number of sections must be positive, got {sections}")
        known = static_int(n)
        if isinstance(sections, int) and known is not None:
            if known % sections:
                raise ValueError(f"split: axis {axis} of size {known} does not divide into {sections} equal sections")
            part = known // sections
            starts = [k * part for k in range(sections)]
        else:
            if not isinstance(sections, int):
                raise TypeError("split: a symbolic number of sections would give a list of unknown length; pass an int")
            ok = equal(mod(n, sections), 0)
            x = assert_(x, ok, f"split: axis {axis} does not divide into {sections} equal sections")
            part = floor_div(n, sections)
            starts = [0, part][:sections] + [part * k for k in range(2, sections)]
        stops = [*starts[1:], None]
    index = [slice(None)] * axis
    return [getitem(x, (*index, slice(start, stop))) for start, stop in zip(starts, stops)]


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
    shapes = [t.type.shape for t in tensors]
    if any(t.ndim != tensors[0].ndim for t in tensors):
        raise ValueError(f"stack: all tensors need the same shape, got {', '.join(map(format_shape, shapes))}")
    (axis,) = normalize_axis(_int_tuple(axis, "stack: axis"), tensors[0].ndim + 1, "stack")
    return Concatenate(axis)(*[ExpandDims((axis,))(t) for t in tensors])
