"""Symbolic sizes: ``x.shape[i]`` as a graph value, and the size arguments of shape-making ops.

As in Theano, ``x.shape`` is symbolic: each entry is an int64 0-d variable
(a :class:`ShapeOf` node, or a constant where the static shape knows the
size).  Ops whose output shape depends on sizes given at run time
(``reshape``, ``broadcast_to``, ``full``, ``arange``, slicing with symbolic
bounds) take those sizes as extra int64 0-d inputs, the *size inputs*, and
keep the sizes known when the graph is built in their props.  They implement
the size protocol of :class:`~symexpr.graph.basic.Op`:
``size_positions(node)`` lists the size inputs and ``static_op(node, sizes)``
gives the equivalent op with those sizes written into its props, which
backends lower like any op of static shape.
"""

from __future__ import annotations

import math

import numpy as np

from symexpr.dtypes import is_int
from symexpr.graph.basic import Apply, Constant, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops.convert import as_tensor
from symexpr.ops.elemwise import cast, mul

INT64 = "int64"


class ShapeOf(Op):
    """``x.shape[axis]`` as an int64 0-d value."""

    __props__ = ("axis",)

    def __init__(self, axis: int):
        self.axis = int(axis)

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        if not 0 <= self.axis < x.ndim:
            raise ValueError(f"shape: axis {self.axis} is out of bounds for {format_shape(x.type.shape)}")
        return Apply(self, [x], [TensorType(INT64, ())])

    def perform(self, node, inputs):
        return [np.asarray(inputs[0].shape[self.axis], dtype=np.int64)]

    def infer_shape(self, node, input_shapes):
        return [()]

    def pprint(self, node, args):
        return f"{args[0]}.shape[{self.axis}]", 95


class Assert(Op):
    """``x``, after checking at run time that the 0-d ``condition`` holds (else ``ValueError(message)``).

    The condition is a size input: backends that plan memory from sizes check
    it when they plan.
    """

    __props__ = ("message",)

    def __init__(self, message: str):
        self.message = str(message)

    def make_node(self, x, condition) -> Apply:
        x, condition = as_tensor(x), as_tensor(condition)
        if condition.ndim != 0 or condition.dtype != "bool":
            raise TypeError(f"assert: condition must be a 0-d bool, got {condition.type}")
        return Apply(self, [x, condition], [x.type])

    def perform(self, node, inputs):
        if not bool(inputs[1]):
            raise ValueError(self.message)
        return [inputs[0]]

    def infer_shape(self, node, input_shapes):
        return [input_shapes[0]]

    def size_positions(self, node) -> tuple:
        return (1,)

    def static_op(self, node, sizes):
        if not bool(sizes[0]):
            raise ValueError(self.message)
        return Identity()

    def pprint(self, node, args):
        return f"assert({args[0]}, {args[1]})", 100


class Identity(Op):
    """``x`` unchanged (what a checked :class:`Assert` becomes once planned)."""

    def make_node(self, x) -> Apply:
        x = as_tensor(x)
        return Apply(self, [x], [x.type])

    def perform(self, node, inputs):
        return [inputs[0]]

    def infer_shape(self, node, input_shapes):
        return [input_shapes[0]]


def shape_of(x) -> tuple:
    """``x.shape``: a tuple of int64 0-d variables, constants where the static shape knows the size."""
    x = as_tensor(x)
    return tuple(
        Constant(np.asarray(d, dtype=np.int64)) if d is not None else ShapeOf(i)(x) for i, d in enumerate(x.type.shape)
    )


def size_of(x) -> Variable:
    """``x.size``: the number of elements as an int64 0-d variable (a constant when static)."""
    x = as_tensor(x)
    if None not in x.type.shape:
        return Constant(np.asarray(math.prod(x.type.shape), dtype=np.int64))
    total = None
    for d in shape_of(x):
        total = d if total is None else mul(total, d)
    return total


def static_int(value):
    """The int a size argument holds when it is known at build time (an int or a constant), else None."""
    if isinstance(value, Constant):
        if value.ndim == 0 and is_int(value.dtype):
            return int(value.data)
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    return None


def as_size(value, what: str) -> Variable | int:
    """A size argument as an int (known now) or an int64 0-d variable (known at run time).

    Raises
    ------
    TypeError
        If ``value`` is neither an int nor an integer 0-d variable.
    """
    known = static_int(value)
    if known is not None:
        return known
    if isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(value.dtype, np.integer):
        return int(value)
    if isinstance(value, Variable):
        if value.ndim != 0 or not is_int(value.dtype):
            raise TypeError(f"{what}: a symbolic size must be an integer 0-d variable, got {value.type}")
        if value.dtype != INT64:
            value = cast(value, INT64)
        return value
    raise TypeError(f"{what}: expected ints or integer 0-d variables, got {value!r}")


def split_sizes(values, what: str) -> tuple[tuple, list]:
    """``(static, symbolic)``: sizes known now (None in the slots of the others) and the symbolic ones in order.

    ``values`` is a sequence of ints and integer 0-d variables, or a single one of them.
    """
    if isinstance(values, Variable):
        if values.ndim == 0:
            values = (values,)
        else:
            raise TypeError(f"{what}: expected a tuple of sizes, got the {values.ndim}-d variable {values!r}")
    elif isinstance(values, (int, np.integer)):
        values = (values,)
    try:
        items = tuple(values)
    except TypeError:
        raise TypeError(f"{what}: expected a tuple of ints or integer 0-d variables, got {values!r}") from None
    static, symbolic = [], []
    for v in items:
        size = as_size(v, what)
        if isinstance(size, Variable):
            static.append(None)
            symbolic.append(size)
        else:
            static.append(size)
    return tuple(static), symbolic


def fill_sizes(static: tuple, sizes, what: str = "shape") -> tuple:
    """``static`` with its None slots filled, in order, from ``sizes``.

    A size computed in the graph must not be negative: only a literal -1 (in
    ``static``) asks ``reshape`` to infer a dimension, so a computed -1 is an
    error here rather than a silent request to infer.

    Raises
    ------
    ValueError
        Naming ``what`` (e.g. ``"reshape"``), the dimension and the value.
    """
    it = iter(sizes)
    out = []
    for axis, d in enumerate(static):
        if d is None:
            d = int(next(it))
            if d < 0:
                raise ValueError(
                    f"{what}: dimension {axis} of the shape was computed as {d} at run time; sizes computed "
                    "in the graph must be >= 0 (only a literal -1 asks reshape to infer a dimension)"
                )
        out.append(d)
    return tuple(out)


def assert_(x, condition, message: str) -> Variable:
    """``x``, checked at run time: raises ``ValueError(message)`` when the 0-d ``condition`` is false.

    A condition known when the graph is built is checked now.
    """
    condition = as_tensor(condition)
    if isinstance(condition, Constant):
        if not bool(condition.data):
            raise ValueError(message)
        return as_tensor(x)
    return Assert(message)(x, condition)
