"""Basic indexing (``x[1, ::-2, None, ...]``) and ``take`` for embedding lookups."""

from __future__ import annotations

import numpy as np

from symexpr.dtypes import is_int
from symexpr.graph.basic import Apply, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops.convert import as_tensor
from symexpr.ops.reduction import normalize_axis


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _slice_len(s: tuple, n: int) -> int:
    return len(range(*slice(*s).indices(n)))


def normalize_index(index, ndim: int) -> tuple:
    """Turn a Python index into a canonical, hashable tuple.

    Entries are ``("int", i)``, ``("slice", start, stop, step)`` and
    ``("newaxis",)``; ``...`` is expanded and trailing full slices dropped.
    """
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
        elif _is_int(it):
            out.append(("int", int(it)))
        elif isinstance(it, slice):
            parts = (it.start, it.stop, it.step)
            for p in parts:
                if p is not None and not _is_int(p):
                    kind = "symbolic" if isinstance(p, Variable) else type(p).__name__
                    raise TypeError(f"getitem: slice bounds must be ints or None, got a {kind} bound in {it!r}")
            if it.step == 0:
                raise ValueError("getitem: slice step cannot be zero")
            out.append(("slice",) + tuple(None if p is None else int(p) for p in parts))
        elif isinstance(it, Variable):
            raise TypeError(f"getitem: symbolic indices are not supported ({it!r}); use se.take(x, indices, axis) to gather")
        else:
            raise TypeError(
                f"getitem: only ints, slices, None and ... are supported as indices, got {type(it).__name__}; "
                "use se.take(x, indices, axis) to gather with an index array"
            )
    while out and out[-1] == ("slice", None, None, None):
        out.pop()
    return tuple(out)


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
            if check and n is not None and not -n <= entry[1] < n:
                raise IndexError(f"getitem: index {entry[1]} is out of bounds for axis {axis} with size {n}")
        else:
            out.append(None if n is None else _slice_len(entry[1:], n))
        axis += 1
    return tuple(out) + tuple(shape[axis:])


class Subtensor(Op):
    """Basic (view) indexing with static ints, slices and new axes."""

    __props__ = ("idx",)

    def __init__(self, idx: tuple):
        self.idx = tuple(idx)

    def display_name(self):
        return f"Subtensor{{{_format_index(self.idx)}}}"

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        return Apply(self, [x], [TensorType(x.dtype, _index_shape(self.idx, x.shape, check=True))])

    def perform(self, node, inputs):
        return [np.asarray(inputs[0][tuple(_to_python(e) for e in self.idx)])]

    def infer_shape(self, node, input_shapes):
        return [_index_shape(self.idx, tuple(input_shapes[0]), check=False)]

    def pprint(self, node, args):
        return f"{args[0]}[{_format_index(self.idx)}]", 95


def _format_index(idx) -> str:
    parts = []
    for e in idx:
        if e[0] == "int":
            parts.append(str(e[1]))
        elif e[0] == "newaxis":
            parts.append("None")
        else:
            start, stop, step = ("" if v is None else str(v) for v in e[1:])
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
            raise ValueError(f"take: axis {self.axis} is out of bounds for {format_shape(x.shape)}")
        shape = x.shape[: self.axis] + indices.shape + x.shape[self.axis + 1 :]
        return Apply(self, [x, indices], [TensorType(x.dtype, shape)])

    def perform(self, node, inputs):
        return [np.take(inputs[0], inputs[1], axis=self.axis)]

    def infer_shape(self, node, input_shapes):
        x, idx = input_shapes
        return [tuple(x[: self.axis]) + tuple(idx) + tuple(x[self.axis + 1 :])]


def getitem(x, index) -> Variable:
    """``x[index]`` with ints, slices (any step), ``None`` and ``...``."""
    x = as_tensor(x)
    idx = normalize_index(index, x.ndim)
    if not idx:
        return x
    return Subtensor(idx)(x)


def take(x, indices, axis=0) -> Variable:
    """Gather ``x`` along ``axis`` at integer ``indices``, like ``numpy.take`` (e.g. embedding lookup)."""
    x = as_tensor(x)
    if x.ndim == 0:
        raise ValueError("take: cannot gather from a 0-d tensor")
    if not _is_int(axis):
        raise TypeError(f"take: axis must be an int, got {axis!r}")
    (axis,) = normalize_axis(axis, x.ndim, "take")
    return Take(axis)(x, indices)
