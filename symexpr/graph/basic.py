"""The graph object model: :class:`Variable`, :class:`Constant`, :class:`Apply` and :class:`Op`.

Nodes are immutable and hash-consed.  Building ``op(a, b)`` twice returns the
*same* :class:`Apply` object, and equal constants (same name, dtype, shape and
bytes) are the same :class:`Constant`, so two structurally equal subgraphs are
one object and ``a is b`` is structural equality, checked in O(1).  Input
variables (``se.matrix("x")``) are unique: two inputs with the same name are two
different variables.
"""

from __future__ import annotations

import hashlib
import threading
import weakref

import numpy as np

from symexpr.graph.type import TensorType, format_shape

_intern_lock = threading.Lock()


class Variable:
    """A symbolic tensor: the output of an :class:`Apply`, an input, or a :class:`Constant`.

    Parameters
    ----------
    type : TensorType
        Dtype and static shape.
    owner : Apply or None
        The node that computes this variable; ``None`` for inputs and constants.
    index : int or None
        Position of this variable in ``owner.outputs``.
    name : str or None
        Display name.

    Variables behave like NumPy arrays: arithmetic, comparisons, ``@``,
    indexing, ``.T``, ``.sum()``, ``.reshape()`` and friends build new graph nodes,
    and ``.eval()`` computes a value.  Those methods belong to higher layers
    and are added to this class with :func:`extend_variable`: the operators by
    :mod:`symexpr.ops.variable`, ``eval`` by :mod:`symexpr.compile.evaluate`.
    """

    __slots__ = ("type", "owner", "index", "name", "__weakref__")
    __hash__ = object.__hash__  # identity: nodes are hash-consed

    def __init__(self, type: TensorType, owner: "Apply | None" = None, index: int | None = None, name=None):
        if not isinstance(type, TensorType):
            raise TypeError(f"Variable: type must be a TensorType, got {type!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Variable: name must be a str or None, got {name!r}")
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "owner", owner)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "name", name)

    def __setattr__(self, attr, value):
        # Nodes are shared by every structurally equal expression, so only the
        # display name may change.  It is shared too: naming ``x * 3`` names
        # every ``x * 3``.
        if attr != "name":
            raise AttributeError(f"Variable.{attr} is immutable; build a new variable instead")
        if value is not None and not isinstance(value, str):
            raise TypeError(f"Variable: name must be a str or None, got {value!r}")
        object.__setattr__(self, attr, value)

    # -- NumPy-style attributes -------------------------------------------------
    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.ndim

    def __repr__(self):
        label = self.name or (self.owner.op.display_name() if self.owner is not None else "Variable")
        return f"<{label}: {self.type}>"

    def __bool__(self):
        raise TypeError(
            "the truth value of a symbolic variable is unknown until the function runs; "
            "use se.where(cond, a, b) or compare inside the graph"
        )

    def __iter__(self):
        raise TypeError("a symbolic variable cannot be iterated; index it with x[i] instead")

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d variable")
        if self.type.shape[0] is None:
            raise TypeError("len(): the first dimension is not known until the function runs")
        return self.type.shape[0]


#: Attributes that :func:`extend_variable` may not replace: the graph layer's own.
_CORE_ATTRIBUTES = frozenset(vars(Variable)) | {"__init__", "__new__", "__setattr__", "__class__"}
#: What Python puts in every class's namespace; never copied.
_CLASS_BOOKKEEPING = frozenset(vars(type("_Empty", (), {}))) | {"__slots__"}
#: Which mixin added each extension attribute.
_extensions: dict[str, type] = {}


def extend_variable(mixin: type) -> None:
    """Add the methods and class attributes of ``mixin`` to :class:`Variable` (and so to every subclass).

    This is how layers above the graph give variables their API without this
    module importing them: the op library adds the NumPy-style operators
    (:mod:`symexpr.ops.variable`), the compiler adds ``eval``
    (:mod:`symexpr.compile.evaluate`).  ``mixin`` is a plain class with
    ``__slots__ = ()`` whose methods do not use ``super()``.

    Raises
    ------
    ValueError
        If ``mixin`` would replace an attribute the graph layer defines, or one
        another mixin added (re-installing the same mixin is allowed).
    """
    members = {k: v for k, v in vars(mixin).items() if k not in _CLASS_BOOKKEEPING}
    if "__eq__" in members and members.get("__hash__") is None:
        members.pop("__hash__", None)  # Python's implicit __hash__ = None beside __eq__: keep identity hashing
    for name in members:
        if name in _CORE_ATTRIBUTES:
            raise ValueError(f"extend_variable: {mixin.__name__}.{name} would replace Variable.{name}")
        owner = _extensions.get(name)
        if owner is not None and (owner.__module__, owner.__qualname__) != (mixin.__module__, mixin.__qualname__):
            raise ValueError(f"extend_variable: {mixin.__name__}.{name} would replace {owner.__name__}.{name}")
    for name, value in members.items():
        setattr(Variable, name, value)
        _extensions[name] = mixin


class Constant(Variable):
    """A variable with a fixed value, stored as a read-only NumPy array.

    Equal constants (same name, dtype, shape and bytes) are interned to one object.
    """

    __slots__ = ("data", "digest")
    _interned: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()

    def __new__(cls, data, name=None):
        array = np.asarray(data)
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        ttype = TensorType(array.dtype, array.shape)
        # Backed by an immutable bytes object, so even setflags(write=True) fails.
        raw = np.ascontiguousarray(array).tobytes()
        array = np.frombuffer(raw, dtype=array.dtype).reshape(ttype.shape)
        digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
        key = (name, ttype, digest)
        with _intern_lock:
            found = cls._interned.get(key)
            if found is not None:
                return found
            self = object.__new__(cls)
            Variable.__init__(self, ttype, None, None, name)
            object.__setattr__(self, "data", array)
            object.__setattr__(self, "digest", digest)
            cls._interned[key] = self
        return self

    def __init__(self, data, name=None):  # all the work happens in __new__
        pass

    def __setattr__(self, name, value):
        raise AttributeError(
            f"Constant.{name} is immutable (a constant's name is part of its identity: "
            "pass name= to se.constant)"
        )

    def __repr__(self):
        return f"<Constant {self.name or _short_value(self.data)}: {self.type}>"


def _short_value(data: np.ndarray) -> str:
    if data.ndim == 0:
        return str(data[()])
    if data.size <= 4:
        return np.array2string(data, separator=", ", max_line_width=10**6).replace("\n", "")
    return f"{{{format_shape(data.shape)}}}"


class Apply:
    """One application of an :class:`Op` to input variables.

    ``Apply(op, inputs, output_types)`` is hash-consed: the same op applied to
    the same input objects returns the existing node.  Nodes are immutable;
    rewrites build new nodes rather than editing old ones.
    """

    __slots__ = ("op", "inputs", "outputs", "__weakref__")
    _interned: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()

    def __new__(cls, op: "Op", inputs, output_types):
        inputs = tuple(inputs)
        for var in inputs:
            if not isinstance(var, Variable):
                i = next(i for i, v in enumerate(inputs) if v is var)
                raise TypeError(f"{op}: input {i} must be a Variable, got {type(var).__name__}")
        key = (op, tuple(map(id, inputs)))
        with _intern_lock:
            found = cls._interned.get(key)
            if found is not None:
                return found
            self = object.__new__(cls)
            object.__setattr__(self, "op", op)
            object.__setattr__(self, "inputs", inputs)
            object.__setattr__(self, "outputs", tuple([Variable(t, self, i) for i, t in enumerate(output_types)]))
            cls._interned[key] = self
        return self

    def __setattr__(self, name, value):
        raise AttributeError("Apply nodes are immutable; build a new node instead")

    @property
    def out(self) -> Variable:
        """The single output of a one-output node."""
        (out,) = self.outputs
        return out

    def __repr__(self):
        return f"<Apply {self.op.display_name()}>"


class _OpMeta(type):
    def __call__(cls, *args, **kwargs):
        op = super().__call__(*args, **kwargs)
        object.__setattr__(op, "_frozen", True)
        object.__setattr__(op, "_hash", hash((type(op), op.props())))
        return op


class Op(metaclass=_OpMeta):
    """Base class of every operation.

    Subclasses name their parameters in ``__props__``; the parameters give the
    op's equality, hash and printed form.  Ops are immutable once constructed.

    A subclass implements

    - ``make_node(*inputs) -> Apply``: checks types and infers output dtypes and
      static shapes, raising at graph-build time on bad input;
    - ``perform(node, inputs) -> list``: the NumPy reference implementation;
    - ``infer_shape(node, input_shapes) -> list``: the concrete output shapes for
      concrete input shapes (used by backends to plan memory);
    - optionally ``decompose(node) -> list``: the same computation in simpler
      ops, for backends that do not implement the op natively;
    - for an op whose output shape depends on the *values* of some inputs
      (``reshape`` to symbolic sizes, ``arange``...): ``size_positions(node)``,
      the positions of those *size inputs*, and ``static_op(node, sizes)``, an
      equivalent op with the sizes' values written into its props that takes
      the other inputs only (its ``infer_shape`` then works from shapes alone).
    """

    __props__: tuple = ()
    #: Whether the constant-folding pass may evaluate this op.
    do_constant_folding = True
    _frozen = False  # set on each instance once its constructor returns

    def props(self) -> tuple:
        return tuple([getattr(self, p) for p in self.__props__])

    def __setattr__(self, name, value):
        if self._frozen:
            raise AttributeError(f"{type(self).__name__} is immutable")
        object.__setattr__(self, name, value)

    def __eq__(self, other):
        return type(self) is type(other) and self.props() == other.props()

    def __hash__(self):
        return self._hash

    def display_name(self) -> str:
        """Name used by printers, e.g. ``Sum{axis=(0,)}``."""
        params = ", ".join(f"{p}={_prop_text(getattr(self, p))}" for p in self.__props__)
        return f"{type(self).__name__}{{{params}}}" if params else type(self).__name__

    def __str__(self):
        return self.display_name()

    __repr__ = __str__

    def __call__(self, *inputs):
        node = self.make_node(*inputs)
        return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)

    def make_node(self, *inputs) -> Apply:
        raise NotImplementedError

    def perform(self, node: Apply, inputs: list) -> list:
        raise NotImplementedError(f"{self} has no reference implementation")

    def infer_shape(self, node: Apply, input_shapes: list) -> list:
        raise NotImplementedError(f"{self} has no shape inference")

    def decompose(self, node: Apply):
        """Outputs of ``node`` rebuilt from simpler ops, or ``None`` if primitive."""
        return None

    def size_positions(self, node: Apply) -> tuple:
        """Positions of the inputs whose values (not only shapes) decide the output shape."""
        return ()

    def static_op(self, node: Apply, sizes: list) -> "Op":
        """This op with the values ``sizes`` of the size inputs built in (see the class docstring)."""
        raise NotImplementedError(f"{self} has no size inputs")

    def pprint(self, node: Apply, args: list) -> tuple[str, int]:
        """Infix text for ``node`` given its inputs' texts: ``(text, precedence)``.

        The default is function-call syntax, which binds tightest.
        """
        params = [f"{p}={_prop_text(getattr(self, p))}" for p in self.__props__]
        name = "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(type(self).__name__))
        return f"{name}({', '.join(list(args) + params)})", 100


def _prop_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return str(value)
