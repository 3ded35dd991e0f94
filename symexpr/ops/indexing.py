"""Basic indexing (``x[1, ::-2, None, ...]``) and ``take`` for embedding lookups."""

from __future__ import annotations

import numpy as np

from symexpr.dtypes import is_int
from symexpr.graph.basic import Apply, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops.convert import as_tensor
from symexpr.ops.reduction import normalize_axis
from symexpr.ops.sizes import as_size, static_int


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _slice_len(s: tuple, n: int) -> int:
    return len(range(*slice(*s).indices(n)))


def normalize_index(index, ndim: int) -> tuple[tuple, list]:
    """Turn a Python index into a canonical, hashable tuple and its symbolic bounds.

    Entries are ``("int", i)``, ``("slice", start, stop, step)`` and
    ``("newaxis",)``; ``...`` is expanded and trailing full slices dropped.  An
    int index or slice bound given as an integer 0-d variable appears as
    ``("size", k)``, ``k`` its position in the returned list of symbolic
    bounds (int64 variables).  Steps must be ints.
    """
    symbolic = []

    def bound(value, what):
        size = as_size(value, f"getitem: {what}")
        if isinstance(size, Variable):
            symbolic.append(size)
            return ("size", len(symbolic) - 1)
        return size

    items = index if isinstance(index, tuple) else (index,)
    n_ellipsis = sum(1 for it in items if it is Ellipsis)
    if n_ellipsis > 1:
        raise IndexError("getitem: an index can only have a single ellipsis ('...')")
    consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
    if consumed > ndim:
        raise IndexError(f"getitem: too many indices: the tensor has rank {ndim} but {consumed} were indexed")
    out = []
    for it in items:
        if it is Ellipsis:
            out.extend([("slice", None, None, None)] * (ndim - consumed))
        elif it is None:
            out.append(("newaxis",))
        elif _is_int(it) or _is_index_scalar(it):
            out.append(("int", bound(it, "index")))
        elif isinstance(it, slice):
            if it.step is not None and not _is_int(static_int(it.step)):
                raise TypeError(f"getitem: a slice step must be an int (its sign decides the shape), got {it.step!r}")
            step = None if it.step is None else static_int(it.step)
            if step == 0:
                raise ValueError("getitem: slice step cannot be zero")
            for p in (it.start, it.stop):
                if p is not None and not (_is_int(p) or _is_index_scalar(p)):
                    raise TypeError(f"getitem: slice bounds must be ints, integer 0-d variables or None, got {p!r} in {it!r}")
            start = None if it.start is None else bound(it.start, "slice start")
            stop = None if it.stop is None else bound(it.stop, "slice stop")
            out.append(("slice", start, stop, step))
        elif isinstance(it, Variable):
            raise TypeError(
                f"getitem: only integer 0-d variables can index ({it!r}); use se.take(x, indices, axis) to gather with an index array"
            )
        else:
            raise TypeError(
                f"getitem: only ints, slices, None and ... are supported as indices, got {type(it).__name__}; "
                "use se.take(x, indices, axis) to gather with an index array"
            )
    while out and out[-1] == ("slice", None, None, None):
        out.pop()
    return tuple(out), symbolic


def _is_index_scalar(value) -> bool:
    return isinstance(value, Variable) and value.ndim == 0 and is_int(value.dtype)


def _is_symbolic(bound) -> bool:
    return isinstance(bound, tuple)


def _fill_index(idx: tuple, sizes) -> tuple:
    """``idx`` with each ``("size", k)`` replaced by ``int(sizes[k])``."""

    def value(b):
        return int(sizes[b[1]]) if _is_symbolic(b) else b

    return tuple((e[0], *map(value, e[1:])) if e[0] != "newaxis" else e for e in idx)


def _to_python(entry):
    if entry[0] == "int":
        return entry[1]
    if entry[0] == "slice":
        return slice(*entry[1:])
    return None


def _index_shape(idx: tuple, shape: tuple, check: bool) -> tuple:
    out = []
    axis = 0
    for entry in idx:
        if entry[0] == "newaxis":
            out.append(1)
            continue
        n = shape[axis]
        if entry[0] == "int":
            if check and n is not None and not _is_symbolic(entry[1]) and not -n <= entry[1] < n:
                raise IndexError(f"getitem: index {entry[1]} is out of bounds for axis {axis} with size {n}")
        elif n is None or any(_is_symbolic(b) for b in entry[1:]):
            out.append(None)
        else:
            out.append(_slice_len(entry[1:], n))
        axis += 1
    return tuple(out) + tuple(shape[axis:])


class Subtensor(Op):
    """Basic (view) indexing with ints, slices and new axes.

    Int indices and slice bounds written ``("size", k)`` in ``idx`` are taken at
    run time from input ``1 + k`` (an int64 0-d variable).
    """

    __props__ = ("idx",)

    def __init__(self, idx: tuple):
        self.idx = tuple(idx)

    def display_name(self):
        return f"Subtensor{{{_format_index(self.idx)}}}"

    def make_node(self, x, *bounds) -> Apply:
        x = as_tensor(x)
        bounds = [as_tensor(b) for b in bounds]
        for b in bounds:
            if b.ndim != 0 or b.dtype != "int64":
                raise TypeError(f"getitem: symbolic bounds must be int64 0-d variables, got {b.type}")
        return Apply(self, [x, *bounds], [TensorType(x.dtype, _index_shape(self.idx, x.type.shape, check=True))])

    def perform(self, node, inputs):
        idx = _fill_index(self.idx, inputs[1:])
        return [np.asarray(inputs[0][tuple(_to_python(e) for e in idx)])]

    def infer_shape(self, node, input_shapes):
        return [_index_shape(self.idx, tuple(input_shapes[0]), check=False)]

    def size_positions(self, node) -> tuple:
        return tuple(range(1, len(node.inputs)))

    def static_op(self, node, sizes):
        return Subtensor(_fill_index(self.idx, sizes))

    def pprint(self, node, args):
        return f"{args[0]}[{_format_index(self.idx, args[1:])}]", 95


def _format_index(idx, args=None) -> str:
    def text(b):
        if _is_symbolic(b):
            return args[b[1]] if args is not None else f"${b[1]}"
        return "" if b is None else str(b)

    parts = []
    for e in idx:
        if e[0] == "int":
            parts.append(text(e[1]))
        elif e[0] == "newaxis":
            parts.append("None")
        else:
            start, stop, step = (text(v) for v in e[1:])
            parts.append(f"{start}:{stop}" + (f":{step}" if step else ""))
    return ", ".join(parts) if parts else "..."


class Take(Op):
    """``numpy.take(x, indices, axis)``: gather along one axis (negative indices wrap)."""

    __props__ = ("axis",)

    def __init__(self, axis: int):
        self.axis = int(axis)

    def make_node(self, x, indices) -> Apply:
        x, indices = as_tensor(x), as_tensor(indices)
        if not is_int(indices.dtype):
            raise TypeError(f"take: indices must have an integer dtype, got {indices.dtype}")
        if not 0 <= self.axis < x.ndim:
            raise ValueError(f"take: axis {self.axis} is out of bounds for {format_shape(x.type.shape)}")
        shape = x.type.shape[: self.axis] + indices.type.shape + x.type.shape[self.axis + 1 :]
        return Apply(self, [x, indices], [TensorType(x.dtype, shape)])

    def perform(self, node, inputs):
        return [np.take(inputs[0], inputs[1], axis=self.axis)]

    def infer_shape(self, node, input_shapes):
        x, idx = input_shapes
        return [tuple(x[: self.axis]) + tuple(idx) + tuple(x[self.axis + 1 :])]


def getitem(x, index) -> Variable:
    """``x[index]`` with ints, slices (any int step), ``None`` and ``...``; indices and bounds may be int 0-d variables."""
    x = as_tensor(x)
    idx, bounds = normalize_index(index, x.ndim)
    if not idx:
        return x
    return Subtensor(idx)(x, *bounds)


def take(x, indices, axis=0) -> Variable:
    """Gather ``x`` along ``axis`` at integer ``indices``, like ``numpy.take`` (e.g. embedding lookup)."""
    x = as_tensor(x)
    if x.ndim == 0:
        raise ValueError("take: cannot gather from a 0-d tensor")
    if not _is_int(axis):
        raise TypeError(f"take: axis must be an int, got {axis!r}")
    (axis,) = normalize_axis(axis, x.ndim, "take")
    return Take(axis)(x, indices)
