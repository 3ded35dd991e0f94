"""Hypothesis strategies that draw random, well-typed symexpr graphs with input values.

Every example is a :class:`GraphCase`: symbolic inputs, one or two outputs and an
array for each input.  The graph is built from the public op library one op at
a time, and every op is chosen so that it type-checks at build time *and* runs
on the drawn arrays: the builder evaluates each new node with the op's NumPy
reference implementation as it goes, and an op that fails to build or to run is
dropped and another one drawn (this stays inside the strategy; hypothesis sees
no rejections from it).

::

    from hypothesis import given
    from symexpr.testing import graphs

    @given(graphs(max_ops=6))
    def test_my_backend(case):
        expected = case.function("numpy")(*case.values)
        got = case.function("my_backend")(*case.values)
        ...

The op families (``FAMILIES``) and the op names in each can both be used in
``graphs(ops=...)``.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass

import numpy as np
from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import symexpr as se
from symexpr.dtypes import canonical_dtype
from symexpr.graph.basic import Constant, Variable
from symexpr.graph.traversal import graph_inputs, toposort
from symexpr.graph.type import TensorType

__all__ = [
    "FAMILIES",
    "GraphCase",
    "arrays_for",
    "cases_for",
    "elements_for",
    "graphs",
    "graphs_containing",
]

#: The op families :func:`graphs` draws from, and the op names in each.
#: ``graphs(ops=...)`` takes family names, op names or both; an op name enables
#: that op in every family that has it (``"add"``: ``x + y`` and ``x + 2.0``).
FAMILIES: dict[str, tuple[str, ...]] = {
    # exp(x), log(x), ... (log, log1p, sqrt and rsqrt are sometimes applied to abs(x))
    "unary": (
        "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "tanh", "sigmoid", "silu", "gelu", "erf",
        "sin", "cos", "abs", "neg", "relu", "sign", "floor", "ceil", "round",
    ),
    # x + y with NumPy broadcasting; y is another subexpression, a new input or a constant array
    "binary": ("add", "sub", "mul", "true_div", "maximum", "minimum"),
    # x + 2.0, 1 - x, x ** 2, maximum(x, 0.0): a weak Python scalar on either side
    "scalar": ("add", "sub", "mul", "true_div", "maximum", "minimum", "power"),
    # where(x < y, x, 0.0), or the bool comparison itself
    "compare": ("less", "less_equal", "greater", "greater_equal", "equal", "not_equal"),
    # sum/mean/... over None, an int or a tuple of axes, with or without keepdims
    "reduce": ("sum", "mean", "max", "min", "prod", "var"),
    "shape": ("reshape", "transpose", "expand_dims", "squeeze", "broadcast_to", "concatenate", "getitem"),
    # 2-D, batched and 1-D operands with matching inner dimensions
    "matmul": ("matmul",),
    "nnet": ("softmax", "log_softmax", "logsumexp", "layer_norm", "rms_norm"),
    # float <-> float; int and bool to anything (never float -> int: NaN and overflow are undefined)
    "cast": ("cast",),
}

_FLOAT_DTYPES = ("float16", "float32", "float64")
_ELEMENTS = ("finite", "any")
#: Largest intermediate (in elements) the builder keeps; bigger results are dropped.
_MAX_SIZE = 4096
#: Smallest rank each op applies to (others: any rank).
_MIN_RANK = {"transpose": 2, "squeeze": 1, "concatenate": 1, "matmul": 1, "layer_norm": 1, "rms_norm": 1}
#: Errors that mean "this op does not apply here": symexpr's build-time checks and NumPy's runtime ones.
_INAPPLICABLE = (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError, FloatingPointError)


# -- values ----------------------------------------------------------------------------


def elements_for(dtype, elements: str = "finite") -> st.SearchStrategy:
    """The element strategy for one dtype.

    ``"finite"``: floats in [-4, 4] (no subnormals), integers in [-4, 4] clipped to the
    dtype's range, booleans.  ``"any"``: floats also include NaN, +-inf, -0.0, subnormals
    and the whole range of the dtype; integers cover the whole range of the dtype.
    """
    dtype = canonical_dtype(dtype)
    if elements not in _ELEMENTS:
        raise ValueError(f"elements: expected 'finite' or 'any', got {elements!r}")
    kind = np.dtype(dtype).kind
    if kind == "b":
        return st.booleans()
    if kind in "iu":
        info = np.iinfo(dtype)
        if elements == "any":
            return st.integers(int(info.min), int(info.max))
        return st.integers(max(int(info.min), -4), min(int(info.max), 4))
    width = np.dtype(dtype).itemsize * 8
    moderate = st.floats(-4, 4, width=width, allow_subnormal=False)
    if elements == "finite":
        return moderate
    special = st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0])
    return st.one_of(moderate, special, st.floats(width=width))


def _arrays(dtype, shape, elements):
    return hnp.arrays(np.dtype(dtype), tuple(shape), elements=elements_for(dtype, elements))


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array)  # own copy
    array.flags.writeable = False
    return array


def arrays_for(variable, elements: str = "finite", max_side: int = 5, min_side: int = 0) -> st.SearchStrategy:
    """Arrays that are valid values of ``variable`` (a Variable or a TensorType).

    The dtype is the variable's; each static dimension is kept, and each ``None``
    dimension is drawn from ``[min_side, max_side]``.  ``elements`` is ``"finite"``
    or ``"any"`` as for :func:`elements_for`.
    """
    ttype = variable.type if isinstance(variable, Variable) else variable
    if not isinstance(ttype, TensorType):
        raise TypeError(f"arrays_for: expected a Variable or a TensorType, got {type(variable).__name__}")
    _check_sides(min_side, max_side)
    elements_for(ttype.dtype, elements)  # validate now, not at draw time
    dims = [st.just(d) if d is not None else st.integers(min_side, max_side) for d in ttype.shape]
    return st.tuples(*dims).flatmap(lambda shape: _arrays(ttype.dtype, shape, elements))


# -- GraphCase --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GraphCase:
    """A drawn graph with an array for each input.

    Attributes
    ----------
    inputs : tuple of Variable
        The function's arguments, in call order (named ``x0``, ``x1``, ...).  An input
        may be unused by the outputs.
    outputs : tuple of Variable
        One or two outputs.
    values : tuple of numpy.ndarray
        One read-only array per input.
    template_output : Variable or None
        For :func:`graphs_containing`: the variable the template returned (an
        ancestor of an output).
    """

    inputs: tuple
    outputs: tuple
    values: tuple
    template_output: Variable | None = None

    def function(self, backend: str = "numpy", passes="none"):
        """Compile the graph: ``se.function(inputs, outputs, backend, passes)`` (a list of outputs)."""
        return se.function(list(self.inputs), list(self.outputs), backend=backend, passes=passes)

    def run(self, backend: str = "numpy", passes="none") -> list:
        """Compile and call on :attr:`values`: the list of output arrays."""
        return self.function(backend, passes)(*self.values)

    def __repr__(self):
        lines = ["GraphCase("]
        lines.append("  inputs:")
        for var, value in zip(self.inputs, self.values):
            lines.append(f"    {var.name}: {var.type} = {_array_text(value)}")
        lines.append("  outputs:")
        for line in se.pprint(list(self.outputs)).splitlines():
            lines.append(f"    {line}")
        types = ", ".join(str(v.type) for v in self.outputs)
        lines.append(f"  output types: {types}")
        if self.template_output is not None:
            lines.append(f"  template output: {se.pprint(self.template_output)}")
        lines.append(")")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        # Hypothesis (and IPython) pretty-print through this hook; without it they
        # would list the dataclass fields instead of the readable form.
        lines = repr(self).splitlines()
        printer.text(lines[0])
        for line in lines[1:]:
            printer.break_()  # a new line at the printer's current indentation
            printer.text(line)


def _array_text(value: np.ndarray) -> str:
    """Exact, copy-pasteable text of an input array."""
    if value.size == 0:
        return f"np.zeros({value.shape}, dtype={value.dtype.name!r})"
    body = np.array2string(
        value, separator=", ", floatmode="unique", threshold=300, max_line_width=10**6
    ).replace("\n", "")
    return f"np.array({body}, dtype={value.dtype.name!r})"


# -- configuration ----------------------------------------------------------------------


def _check_sides(min_side, max_side):
    for name, v in (("min_side", min_side), ("max_side", max_side)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if min_side > max_side:
        raise ValueError(f"min_side ({min_side}) must not exceed max_side ({max_side})")


def _resolve_ops(ops) -> dict[str, tuple[str, ...]]:
    if ops is None:
        return dict(FAMILIES)
    if isinstance(ops, str):
        ops = (ops,)
    names = set()
    for name in ops:
        if not isinstance(name, str):
            raise TypeError(f"ops: expected family or op names, got {name!r}")
        names.add("compare" if name == "where" else name)
    known = set(FAMILIES) | {op for variants in FAMILIES.values() for op in variants}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(
            f"ops: unknown name(s) {', '.join(map(repr, unknown))}; families are {', '.join(FAMILIES)} "
            f"and ops are {', '.join(sorted(known - set(FAMILIES)))}"
        )
    enabled = {}
    for family, variants in FAMILIES.items():
        chosen = variants if family in names else tuple(v for v in variants if v in names)
        if chosen:
            enabled[family] = chosen
    return enabled


@dataclass(frozen=True)
class _Config:
    max_ops: int
    dtypes: tuple
    families: dict
    max_dims: int
    max_side: int
    min_side: int
    min_inputs: int
    max_inputs: int
    elements: str


def _config(max_ops, dtypes, ops, max_dims, max_side, min_side, min_inputs, max_inputs, elements) -> _Config:
    for name, v in (("max_ops", max_ops), ("max_dims", max_dims), ("min_inputs", min_inputs), ("max_inputs", max_inputs)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if max_inputs < 1 or min_inputs > max_inputs:
        raise ValueError(f"need 1 <= max_inputs and min_inputs <= max_inputs, got {min_inputs}, {max_inputs}")
    _check_sides(min_side, max_side)
    if isinstance(dtypes, str):
        dtypes = (dtypes,)
    dtypes = tuple(dict.fromkeys(canonical_dtype(d, "dtypes") for d in dtypes))
    if not dtypes:
        raise ValueError("dtypes: give at least one dtype")
    if elements not in _ELEMENTS:
        raise ValueError(f"elements: expected 'finite' or 'any', got {elements!r}")
    return _Config(max_ops, dtypes, _resolve_ops(ops), max_dims, max_side, min_side, min_inputs, max_inputs, elements)


# -- the builder ------------------------------------------------------------------------


class _Inapplicable(Exception):
    """The drawn op does not apply to the drawn operands."""


def _is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def _is_int(dtype) -> bool:
    return np.dtype(dtype).kind in "iu"


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def _broadcastable(a: tuple, b: tuple) -> bool:
    return all(x == y or x == 1 or y == 1 for x, y in zip(a[::-1], b[::-1]))


def _matmul_ok(a: tuple, b: tuple) -> bool:
    if not a or not b:
        return False
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    return a2[-1] == b2[-2] and _broadcastable(a2[:-2], b2[:-2])


class _Builder:
    """Grows a graph op by op, keeping the value of every variable for the drawn inputs."""

    def __init__(self, draw, cfg: _Config):
        self.draw = draw
        self.cfg = cfg
        self.inputs: list[Variable] = []
        self.values: list[np.ndarray] = []
        self.pool: list[Variable] = []  # inputs and built variables, in creation order
        self.built: list[Variable] = []  # variables made by ops
        self.env: dict[int, tuple] = {}  # id(var) -> (var, value); holding var keeps the id unique
        self.max_rank = max(cfg.max_dims, 1) + 1
        self.family_names = tuple(cfg.families)

    # -- drawing helpers
    def choose(self, seq):
        seq = list(seq)
        return seq[self.draw(st.integers(0, len(seq) - 1))]

    def chance(self, one_in: int) -> bool:
        """True about once in ``one_in`` draws (shrinks toward False)."""
        return self.draw(st.integers(0, one_in - 1)) == one_in - 1

    def side(self) -> int:
        lo = max(self.cfg.min_side, 1)
        if self.cfg.min_side == 0 and self.chance(12):
            return 0
        if lo == 1 and self.chance(4):  # size-1 axes broadcast and squeeze: make them common
            return 1
        return self.draw(st.integers(lo, max(lo, self.cfg.max_side)))

    def shape(self, rank: int) -> tuple:
        return tuple(self.side() for _ in range(rank))

    def value(self, var: Variable) -> np.ndarray:
        if isinstance(var, Constant):
            return var.data
        return self.env[id(var)][1]

    def cshape(self, var: Variable) -> tuple:
        """The concrete shape of ``var`` for the drawn inputs."""
        return self.value(var).shape

    # -- making operands
    def new_input(self, shape: tuple, dtype: str, static=None) -> Variable:
        if static is None:
            static = tuple(d if self.draw(st.booleans()) else None for d in shape)
        var = se.tensor(f"x{len(self.inputs)}", dtype=dtype, shape=static)
        value = _readonly(self.draw(_arrays(dtype, shape, self.cfg.elements)))
        self.inputs.append(var)
        self.values.append(value)
        self.env[id(var)] = (var, value)
        self.pool.append(var)
        return var

    def random_input(self) -> Variable:
        rank = self.draw(st.integers(0, self.cfg.max_dims))
        return self.new_input(self.shape(rank), self.choose(self.cfg.dtypes))

    def can_add_input(self) -> bool:
        return len(self.inputs) < self.cfg.max_inputs

    def constant(self, shape: tuple, dtype: str) -> Variable:
        return se.constant(self.draw(_arrays(dtype, shape, self.cfg.elements)))

    def operand(self, shape: tuple, dtype: str | None = None, allow_input: bool = True) -> Variable:
        """A new input (while the input budget lasts) or a constant of ``shape``."""
        dtype = dtype or self.choose(self.cfg.dtypes)
        if allow_input and self.can_add_input() and self.draw(st.booleans()):
            return self.new_input(shape, dtype)
        return self.constant(shape, dtype)

    def broadcast_shape(self, shape: tuple) -> tuple:
        """A shape that broadcasts with ``shape``."""
        drop = self.draw(st.integers(0, len(shape)))
        dims = [1 if self.chance(4) else d for d in shape[drop:]]
        if drop == 0 and len(shape) < self.max_rank and self.chance(5):
            dims.insert(0, self.draw(st.integers(1, max(1, self.cfg.max_side))))
        return tuple(dims)

    def broadcast_partner(self, x: Variable) -> Variable:
        """Another operand that broadcasts with ``x`` at run time."""
        how = self.draw(st.integers(0, 3))
        if how == 0:
            shape = self.cshape(x)
            found = [v for v in self.pool if v is not x and _broadcastable(self.cshape(v), shape)]
            if found:
                return self.choose(found)
        if how == 3:
            return x
        return self.operand(self.broadcast_shape(self.cshape(x)))

    def scalar(self, dtype: str, nonzero: bool = False):
        """A weak Python scalar suited to ``dtype``."""
        if _is_float(dtype):
            choices = [1.0, 0.0, 2.0, -1.0, 0.5, 3.0, -2.5, 1, 2, 0, 1e-3]
            if self.cfg.elements == "any":
                choices += [float("nan"), float("inf"), float("-inf"), -0.0]
        elif dtype == "bool":
            choices = [True, False, 1, 2]
        elif np.dtype(dtype).kind == "u":
            choices = [1, 0, 2, 3]
        else:
            choices = [1, 0, 2, -1, 3, -3]
        if nonzero:
            choices = [c for c in choices if c != 0]
        return self.choose(choices)

    # -- evaluation
    def evaluate(self, var: Variable) -> None:
        """Compute the value of every new node under ``var`` (raising if one fails to run)."""
        for node in toposort([var]):
            if id(node.outputs[0]) in self.env:
                continue
            inputs = [self.value(v) for v in node.inputs]
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results = node.op.perform(node, inputs)
            for out, result in zip(node.outputs, results):
                result = np.asarray(result)
                if result.size > _MAX_SIZE:
                    raise _Inapplicable("too large")
                self.env[id(out)] = (out, result)

    def add(self, var: Variable) -> None:
        if all(v is not var for v in self.pool):
            self.pool.append(var)
        if var.owner is not None and all(v is not var for v in self.built):
            self.built.append(var)

    def try_build(self, make) -> Variable | None:
        """``make()``, evaluated; ``None`` if it does not apply here."""
        try:
            out = make()
            if not isinstance(out, Variable):
                raise _Inapplicable("not a variable")
            if out.ndim > self.max_rank:
                raise _Inapplicable("rank too large")
            self.evaluate(out)
        except (_Inapplicable, *_INAPPLICABLE):
            return None
        return out

    def fits(self, variant: str, var: Variable) -> bool:
        """Whether ``variant`` can apply to ``var`` at all (so targets are drawn among those)."""
        need = _MIN_RANK.get(variant, 0)
        if var.ndim < need:
            return False
        if variant == "squeeze":
            return 1 in self.cshape(var)
        if variant == "expand_dims":
            return var.ndim < self.max_rank
        return True

    def pick_target(self, variant: str) -> Variable:
        """An existing variable ``variant`` fits, most often the latest (the draw shrinks toward it)."""
        candidates = [v for v in self.pool if self.fits(variant, v)]
        if not candidates:
            raise _Inapplicable(f"nothing {variant} applies to")
        if self.draw(st.integers(0, 2)) < 2:
            return candidates[-1]
        back = self.draw(st.integers(0, len(candidates) - 1))
        return candidates[len(candidates) - 1 - back]

    def step(self, target: Variable | None = None, attempts: int = 8) -> Variable | None:
        """Apply one random op (to ``target``, or to a drawn variable); ``None`` if none applied."""
        for round_ in range(2):
            for _ in range(attempts):
                family = self.choose(self.family_names)
                variant = self.choose(self.cfg.families[family])
                if target is not None and not self.fits(variant, target):
                    continue
                build = getattr(self, "_" + family)
                out = self.try_build(
                    lambda build=build, variant=variant: build(
                        target if target is not None else self.pick_target(variant), variant
                    )
                )
                if out is None or out.owner is None or any(v is out for v in self.pool):
                    continue  # did not apply, or gave back an existing variable (x.squeeze() of no 1s, ...)
                self.add(out)
                return out
            if round_ or target is not None or not self.can_add_input():
                break
            # Nothing applied to what exists (say, only 0-d tensors for matmul): add an input of rank >= 1.
            rank = self.draw(st.integers(1, max(1, self.cfg.max_dims)))
            self.new_input(self.shape(rank), self.choose(self.cfg.dtypes))
        return None

    # -- op families: each returns the new variable, or raises if it does not apply
    def _unary(self, x, name):
        if x.dtype == "bool" and name in ("neg", "sign"):
            raise _Inapplicable(name)
        arg = x
        if name in ("log", "log1p", "sqrt", "rsqrt") and self.draw(st.booleans()):
            arg = se.abs(x)
        if name == "gelu":
            return se.gelu(arg, approximate=self.choose(["none", "tanh"]))
        return getattr(se, name)(arg)

    def _binary(self, x, name):
        y = self.broadcast_partner(x)
        a, b = (x, y) if self.draw(st.booleans()) else (y, x)
        return getattr(se, name)(a, b)

    def _scalar(self, x, name):
        reflected = self.draw(st.booleans())
        if name == "power":
            if reflected:  # s ** x
                if not _is_float(x.dtype):
                    raise _Inapplicable("integer power with a tensor exponent")
                return se.power(self.choose([2.0, 0.5, 3.0, 1.0]), x)
            exponents = [2, 3, 0.5, -1.0, 0, 1] if _is_float(x.dtype) else [2, 0, 1, 3]
            return se.power(x, self.choose(exponents))
        s = self.scalar(x.dtype, nonzero=name == "true_div" and not reflected)
        fn = getattr(se, name)
        return fn(s, x) if reflected else fn(x, s)

    def _compare(self, x, name):
        other = self.scalar(x.dtype) if self.draw(st.booleans()) else self.broadcast_partner(x)
        a, b = (x, other) if self.draw(st.booleans()) else (other, x)
        cond = getattr(se, name)(a, b)
        form = self.draw(st.integers(0, 4))
        if form == 4:
            return cond
        alternative = other if self.draw(st.booleans()) else self.scalar(x.dtype)
        return se.where(cond, x, alternative) if form < 2 else se.where(cond, alternative, x)

    def draw_axis(self, ndim: int, allow_tuple: bool = True):
        if ndim == 0:
            return None
        form = self.draw(st.integers(0, 3 if allow_tuple else 2))
        if form in (0, 1):
            return self.draw(st.integers(-ndim, ndim - 1))
        if form == 2:
            return None
        axes = self.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        return tuple(a - ndim if self.chance(4) else a for a in axes)

    def _reduce(self, x, name):
        axis = self.draw_axis(x.ndim)
        keepdims = self.draw(st.booleans())
        if name == "var":
            return se.var(x, axis=axis, keepdims=keepdims, ddof=self.draw(st.integers(0, 1)))
        return getattr(se, name)(x, axis=axis, keepdims=keepdims)

    def _shape(self, x, name):
        return getattr(self, "_shape_" + name)(x)

    def _shape_reshape(self, x):
        shape = self.cshape(x)
        size = math.prod(shape)
        if size == 0:
            rank = self.draw(st.integers(1, self.max_rank))
            target = [self.draw(st.integers(1, max(1, self.cfg.max_side))) for _ in range(rank)]
            target[self.draw(st.integers(0, rank - 1))] = 0
            return se.reshape(x, tuple(target))
        rank = self.draw(st.integers(0 if size == 1 else 1, self.max_rank))
        target = [1] * rank
        for p in _prime_factors(size):
            target[self.draw(st.integers(0, rank - 1))] *= p
        if rank and self.draw(st.booleans()):
            target[self.draw(st.integers(0, rank - 1))] = -1
        return se.reshape(x, tuple(target))

    def _shape_transpose(self, x):
        if x.ndim < 2:
            raise _Inapplicable("transpose of rank < 2")
        if self.chance(4):
            return x.T
        perm = list(self.draw(st.permutations(range(x.ndim))))
        if perm == sorted(perm):
            perm.reverse()
        return se.transpose(x, tuple(p - x.ndim if self.chance(4) else p for p in perm))

    def _shape_expand_dims(self, x):
        n = 2 if x.ndim + 2 <= self.max_rank and self.chance(4) else 1
        if x.ndim + n > self.max_rank:
            raise _Inapplicable("rank too large")
        out_rank = x.ndim + n
        axes = self.draw(st.lists(st.integers(-out_rank, out_rank - 1), min_size=n, max_size=n, unique_by=lambda a: a % out_rank))
        return se.expand_dims(x, axes[0] if n == 1 else tuple(axes))

    def _shape_squeeze(self, x):
        ones = [i for i, d in enumerate(self.cshape(x)) if d == 1]
        if not ones:
            raise _Inapplicable("no size-1 axis")
        if all(x.type.shape[i] == 1 for i in ones) and self.chance(4):
            return se.squeeze(x)
        axes = self.draw(st.lists(st.sampled_from(ones), min_size=1, max_size=len(ones), unique=True))
        return se.squeeze(x, axes[0] if len(axes) == 1 else tuple(axes))

    def _shape_broadcast_to(self, x):
        shape = list(self.cshape(x))
        for i, d in enumerate(shape):
            if d == 1 and self.draw(st.booleans()):
                shape[i] = self.draw(st.integers(1, max(1, self.cfg.max_side)))
        if len(shape) < self.max_rank and self.draw(st.booleans()):
            shape.insert(0, self.draw(st.integers(1, max(1, self.cfg.max_side))))
        return se.broadcast_to(x, tuple(shape))

    def _shape_concatenate(self, x):
        if x.ndim == 0:
            raise _Inapplicable("concatenate of a 0-d tensor")
        axis = self.draw(st.integers(-x.ndim, x.ndim - 1))
        ax = axis % x.ndim
        shape = self.cshape(x)

        def fits(v):
            s = self.cshape(v)
            return v.ndim == x.ndim and all(a == b for i, (a, b) in enumerate(zip(s, shape)) if i != ax)

        parts = [x]
        for _ in range(self.draw(st.integers(1, 2))):
            how = self.draw(st.integers(0, 2))
            found = [v for v in self.pool if fits(v)]
            if how == 0 and found:
                parts.append(self.choose(found))
            elif how == 1:
                parts.append(x)
            else:
                part_shape = list(shape)
                part_shape[ax] = self.side()
                parts.append(self.operand(tuple(part_shape)))
        position = self.draw(st.integers(0, len(parts) - 1))
        parts[0], parts[position] = parts[position], parts[0]
        return se.concatenate(parts, axis=axis)

    def _shape_getitem(self, x):
        shape = self.cshape(x)
        index = []
        for d in shape[: self.draw(st.integers(0, x.ndim))]:
            kind = self.draw(st.integers(0, 2))
            if kind == 1 and d > 0:
                index.append(self.draw(st.integers(-d, d - 1)))
            elif kind == 2:
                index.append(slice(None))
            else:
                bound = st.one_of(st.none(), st.integers(-d - 1, d + 1))
                step = self.choose([None, 1, 2, -1, -2, 3])
                index.append(slice(self.draw(bound), self.draw(bound), step))
        if self.chance(4):  # index the trailing axes instead
            index = [Ellipsis] + index
        if self.chance(4) or not index:
            index.insert(self.draw(st.integers(0, len(index))), None)
        return x[tuple(index)]

    def _matmul(self, x, name):
        if x.ndim == 0:
            raise _Inapplicable("matmul of a 0-d tensor")
        shape = self.cshape(x)
        left = self.draw(st.booleans())  # x @ y, else y @ x
        how = self.draw(st.integers(0, 2))
        if how == 0:
            found = [v for v in self.pool if _matmul_ok(*((shape, self.cshape(v)) if left else (self.cshape(v), shape)))]
            if found:
                y = self.choose(found)
                return se.matmul(x, y) if left else se.matmul(y, x)
        if how == 1 and x.ndim >= 2:  # x @ x^T or x^T @ x
            axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
            y = se.transpose(x, axes)
            return se.matmul(x, y) if left else se.matmul(y, x)
        k = shape[-1] if left or x.ndim == 1 else shape[-2]
        form = self.draw(st.integers(0, 2))
        if form == 0:
            y_shape = (k,)
        else:
            m = self.side()
            y_shape = (k, m) if left else (m, k)
            if form == 2 and len(y_shape) < self.max_rank:
                batch = shape[:-2]
                y_shape = (self.choose([1, batch[-1]]) if batch else self.side(),) + y_shape
        y = self.operand(y_shape)
        return se.matmul(x, y) if left else se.matmul(y, x)

    def param_vector(self, d: int, dtype: str) -> Variable | None:
        """A weight or bias for a norm over a last axis of size ``d``, or None."""
        how = self.draw(st.integers(0, 3))
        if how == 0:
            return None
        if how == 1:
            found = [v for v in self.pool if v.ndim == 1 and self.cshape(v)[0] in (d, 1)]
            if found:
                return self.choose(found)
        return self.operand((1,) if how == 3 else (d,), dtype)

    def _nnet(self, x, name):
        if name in ("softmax", "log_softmax"):
            return getattr(se, name)(x, axis=self.draw_axis(x.ndim))
        if name == "logsumexp":
            return se.logsumexp(x, axis=self.draw_axis(x.ndim), keepdims=self.draw(st.booleans()))
        if x.ndim == 0:
            raise _Inapplicable("norm of a 0-d tensor")
        d = self.cshape(x)[-1]
        dtype = x.dtype if x.dtype in self.cfg.dtypes else self.choose(self.cfg.dtypes)
        eps = self.choose([1e-5, 1e-6, 0.1])
        weight = self.param_vector(d, dtype)
        if name == "rms_norm":
            return se.rms_norm(x, weight, eps=eps)
        return se.layer_norm(x, weight, self.param_vector(d, dtype), eps=eps)

    def _cast(self, x, name):
        targets = {"float32", "float64"} | {d for d in self.cfg.dtypes if _is_float(d)}
        if not _is_float(x.dtype):
            targets |= set(self.cfg.dtypes)
        elif "bool" in self.cfg.dtypes:
            targets.add("bool")
        targets.discard(x.dtype)
        return se.cast(x, self.choose(sorted(targets)))

    # -- finishing
    def outputs(self) -> tuple:
        if not self.built:
            return (self.pool[-1],)
        last = self.built[-1]
        earlier = [v for v in self.built[:-1] if v is not last]
        if earlier and self.chance(3):
            return (last, self.choose(earlier))
        return (last,)

    def case(self, outputs, template_output=None) -> GraphCase:
        return GraphCase(tuple(self.inputs), tuple(outputs), tuple(self.values), template_output)


# -- public strategies ------------------------------------------------------------------


_GRAPHS_DEFAULTS = {
    "max_ops": 8, "dtypes": ("float32", "float64"), "ops": None, "max_dims": 3, "max_side": 5, "min_inputs": 1,
    "max_inputs": 3, "elements": "finite", "min_side": 0,
}


def graphs(
    max_ops: int = 8,
    dtypes=("float32", "float64"),
    ops=None,
    max_dims: int = 3,
    max_side: int = 5,
    min_inputs: int = 1,
    max_inputs: int = 3,
    elements: str = "finite",
    min_side: int = 0,
) -> st.SearchStrategy:
    """Random well-typed graphs with matching input arrays, as :class:`GraphCase`.

    Parameters
    ----------
    max_ops : int
        The graph applies between 1 and ``max_ops`` random ops (an op family can
        add a helper node, such as the comparison under a ``where``).
    dtypes : str or sequence of str
        Dtypes of the inputs (and of constants and new operands).  Ops follow NumPy's
        promotion, so other dtypes appear downstream: comparisons give bool,
        ``mean`` of integers float64, ``exp`` of int8 float16, and ``cast`` always
        may go to float32/float64.  Integer and bool inputs only get the ops NumPy
        defines for them (no ``-`` of bools, no integer power with a tensor exponent).
    ops : None or sequence of str
        Restrict the ops: family names from :data:`FAMILIES` (``"unary"``,
        ``"binary"``, ``"scalar"``, ``"compare"`` (alias ``"where"``), ``"reduce"``,
        ``"shape"``, ``"matmul"``, ``"nnet"``, ``"cast"``) and/or op names inside them
        (``"exp"``, ``"reshape"``, ``"softmax"``...).  ``None``: all.
    max_dims : int
        Largest input rank; intermediate ranks may reach ``max(max_dims, 1) + 1``.
    max_side, min_side : int
        Input dimension sizes.  With ``min_side=0`` about one dimension in twelve is 0.
    min_inputs, max_inputs : int
        The graph starts from ``min_inputs..max_inputs`` inputs of random rank and dtype;
        every static dimension is known or ``None`` at random.  Later ops may add
        inputs while fewer than ``max_inputs`` exist, else they use constants.
    elements : {"finite", "any"}
        Input (and constant) values: ``"finite"`` draws floats in [-4, 4] and small
        integers; ``"any"`` adds NaN, +-inf, -0.0, subnormals and the full range.

    Notes
    -----
    Even with ``"finite"`` inputs, outputs may hold NaN or inf from an op's domain
    (``log``/``sqrt`` of a negative, ``x / 0``, ``mean`` or ``var`` over an empty
    axis, overflow of ``exp`` or ``prod``); no op raises.  The outputs are the last
    built variable and sometimes also an earlier one.
    """
    cfg = _config(max_ops, dtypes, ops, max_dims, max_side, min_side, min_inputs, max_inputs, elements)
    if not cfg.families:
        raise ValueError("graphs: ops enables no op")
    given = {
        "max_ops": max_ops, "dtypes": dtypes, "ops": ops, "max_dims": max_dims, "max_side": max_side,
        "min_inputs": min_inputs, "max_inputs": max_inputs, "elements": elements, "min_side": min_side,
    }
    return _graphs(_Shown(_call_text(given, _GRAPHS_DEFAULTS), cfg=cfg))


class _Shown:
    """A strategy's arguments, shown in hypothesis's messages as the user's call wrote them."""

    def __init__(self, text: str, **values):
        self.text = text
        self.__dict__.update(values)

    def __repr__(self):
        return self.text


def _call_text(values: dict, defaults: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items() if k not in defaults or defaults[k] != v)


def _describe(fn) -> str:
    try:
        from hypothesis.internal.reflection import get_pretty_function_description

        return get_pretty_function_description(fn)
    except Exception:  # noqa: BLE001 - an internal helper of hypothesis: fall back to the name
        return getattr(fn, "__qualname__", None) or repr(fn)


def _named(name: str):
    """``st.composite``, with the strategy shown as ``name(...)`` rather than the private function's name."""

    def decorate(fn):
        fn.__name__ = fn.__qualname__ = name
        return st.composite(fn)

    return decorate


@_named("graphs")
def _graphs(draw, shown: _Shown) -> GraphCase:
    cfg = shown.cfg
    b = _Builder(draw, cfg)
    for _ in range(draw(st.integers(cfg.min_inputs, cfg.max_inputs))):
        b.random_input()
    # The larger of two draws: deeper graphs more often, still shrinking toward one op.
    lo = min(1, cfg.max_ops)
    for _ in range(max(draw(st.integers(lo, cfg.max_ops)), draw(st.integers(lo, cfg.max_ops)))):
        b.step()
    return b.case(b.outputs())


def _n_positional(template) -> int:
    try:
        params = inspect.signature(template).parameters.values()
    except (TypeError, ValueError):
        raise TypeError("graphs_containing: cannot read the template's signature; pass n_args=") from None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        raise TypeError("graphs_containing: the template takes *args; pass n_args= to say how many")
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)


def _per_arg(value, k: int, what: str, single) -> list:
    """Broadcast a per-argument option: ``single(value)`` says whether it is one shared value."""
    if value is None or single(value):
        return [value] * k
    value = list(value)
    if len(value) != k:
        raise ValueError(f"graphs_containing: {what} has {len(value)} entries but the template takes {k} argument(s)")
    return value


def _is_shape_pattern(value) -> bool:
    return isinstance(value, tuple) and all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in value)


@dataclass(frozen=True)
class _ArgSpec:
    dtypes: tuple
    shape: tuple | None  # concrete-size pattern, None = any
    min_dims: int

    def accepts(self, var: Variable, cshape: tuple) -> bool:
        if var.dtype not in self.dtypes or var.ndim < self.min_dims:
            return False
        if self.shape is None:
            return True
        return len(cshape) == len(self.shape) and all(p is None or p == d for p, d in zip(self.shape, cshape))


def graphs_containing(
    template,
    *,
    dtypes=("float32", "float64"),
    shapes=None,
    min_dims=0,
    max_ops_after: int = 2,
    n_args: int | None = None,
    **graph_kwargs,
) -> st.SearchStrategy:
    """Random graphs (as :func:`graphs`) that contain ``template``'s result somewhere inside.

    Parameters
    ----------
    template : callable
        ``template(*variables) -> Variable``, e.g. ``lambda x: x * 1``,
        ``lambda x: se.log(se.softmax(x))`` or ``lambda x, y: x - x + y``.  It takes
        ``k`` symbolic arguments, ``k`` being its number of positional parameters
        without defaults (or ``n_args``).
    dtypes : str or sequence of str
        The dtypes of the template's arguments, and of the surrounding graph's inputs.
    shapes : None, tuple, or sequence of (tuple or None)
        Run-time shapes the arguments must have: a tuple of ints and ``None`` (``None``:
        any size) fixes the rank and the given sizes.  One tuple applies to every
        argument; a sequence of ``k`` entries gives one per argument.
    min_dims : int or sequence of int
        Smallest rank of the arguments (e.g. 1 for a template calling ``se.softmax``).
    max_ops_after : int
        Up to this many random ops are applied on top of the template's result.
    n_args : int, optional
        The number of arguments, when the template's signature does not tell it.
    **graph_kwargs
        ``max_ops``, ``ops``, ``max_dims``, ``max_side``, ``min_side``, ``min_inputs``,
        ``max_inputs`` and ``elements`` as for :func:`graphs`.

    How a graph is drawn: first a random graph of ``0..max_ops`` ops, as
    :func:`graphs` draws it.  Then each argument of the template is a variable of
    that graph whose dtype, rank and shape fit (an input or an intermediate
    result), the same variable as an earlier argument, or a fresh input (which may
    exceed ``max_inputs``).  If the template raises ``ValueError``/``TypeError``
    (say, shapes that do not broadcast) or its result cannot run on the drawn
    values, other arguments are drawn, ending with fresh inputs of one shared
    shape; if that fails too the example is rejected.  Then up to
    ``max_ops_after`` ops are applied to the result, and the last of them is the
    first output (a second output is sometimes an earlier variable).  The
    template's result is :attr:`GraphCase.template_output`; it is always an
    ancestor of the first output.
    """
    if not callable(template):
        raise TypeError(f"graphs_containing: template must be callable, got {type(template).__name__}")
    k = _n_positional(template) if n_args is None else n_args
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"graphs_containing: n_args must be a non-negative int, got {k!r}")
    if not isinstance(max_ops_after, int) or max_ops_after < 0:
        raise ValueError(f"graphs_containing: max_ops_after must be a non-negative int, got {max_ops_after!r}")
    unknown = set(graph_kwargs) - {"max_ops", "ops", "max_dims", "max_side", "min_side", "min_inputs", "max_inputs", "elements"}
    if unknown:
        raise TypeError(f"graphs_containing: unexpected keyword argument(s) {', '.join(sorted(unknown))}")
    kwargs = {**_GRAPHS_DEFAULTS, **graph_kwargs, "dtypes": dtypes}
    cfg = _config(**kwargs)
    shapes_list = _per_arg(shapes, k, "shapes", _is_shape_pattern)
    dims_list = _per_arg(min_dims, k, "min_dims", lambda v: isinstance(v, int))
    specs = []
    for shape, md in zip(shapes_list, dims_list):
        if shape is not None and not _is_shape_pattern(shape):
            raise TypeError(f"graphs_containing: a shape must be a tuple of ints and None, got {shape!r}")
        if not isinstance(md, int) or md < 0:
            raise ValueError(f"graphs_containing: min_dims must be non-negative ints, got {md!r}")
        specs.append(_ArgSpec(cfg.dtypes, shape, md))
    given = dict(shapes=shapes, min_dims=min_dims, max_ops_after=max_ops_after, n_args=n_args, **kwargs)
    options = _call_text(given, {**_GRAPHS_DEFAULTS, "shapes": None, "min_dims": 0, "max_ops_after": 2, "n_args": None})
    text = _describe(template) + (f", {options}" if options else "")
    return _graphs_containing(_Shown(text, template=template, specs=tuple(specs), max_ops_after=max_ops_after, cfg=cfg))


def _fresh_arg(b: _Builder, spec: _ArgSpec, like: tuple | None = None, min_rank: int = 0) -> Variable:
    if spec.shape is not None:
        shape = tuple(b.side() if p is None else p for p in spec.shape)
    elif like is not None and len(like) >= spec.min_dims:
        shape = like
    else:
        lo = max(spec.min_dims, min(min_rank, b.cfg.max_dims))
        rank = b.draw(st.integers(lo, max(lo, b.cfg.max_dims)))
        shape = b.shape(rank)
    return b.new_input(shape, b.choose(spec.dtypes))


def _template_args(b: _Builder, specs, attempt: int) -> list:
    """Arguments for the template; from attempt 4 on, fresh inputs of one shape and rising rank."""
    args: list[Variable] = []
    for spec in specs:
        like = b.cshape(args[0]) if args else None
        if attempt >= 4:
            args.append(_fresh_arg(b, spec, like, min_rank=attempt - 4))
            continue
        how = b.draw(st.integers(0, 3))
        found = [v for v in b.pool if spec.accepts(v, b.cshape(v))]
        same = [v for v in args if spec.accepts(v, b.cshape(v))]
        if how <= 1 and found:
            args.append(b.choose(found))
        elif how == 2 and same:
            args.append(b.choose(same))
        else:
            args.append(_fresh_arg(b, spec, like if b.draw(st.booleans()) else None))
    return args


@_named("graphs_containing")
def _graphs_containing(draw, shown: _Shown) -> GraphCase:
    template, specs, max_ops_after, cfg = shown.template, shown.specs, shown.max_ops_after, shown.cfg
    b = _Builder(draw, cfg)
    for _ in range(draw(st.integers(cfg.min_inputs, cfg.max_inputs))):
        b.random_input()
    for _ in range(max(draw(st.integers(0, cfg.max_ops)), draw(st.integers(0, cfg.max_ops)))):
        b.step()
    result = None
    for attempt in range(8):
        args = _template_args(b, specs, attempt)
        try:
            out = template(*args)
        except (ValueError, TypeError, IndexError, OverflowError):
            continue
        if not isinstance(out, Variable):
            raise TypeError(f"graphs_containing: the template must return a Variable, got {type(out).__name__}")
        try:
            b.evaluate(out)
        except (_Inapplicable, *_INAPPLICABLE):
            continue
        result = out
        break
    if result is None:
        reject()
    if isinstance(result, Constant):
        raise TypeError("graphs_containing: the template returned a constant, which depends on none of its arguments")
    b.add(result)
    last = result
    for _ in range(max(draw(st.integers(0, max_ops_after)), draw(st.integers(0, max_ops_after)))):
        out = b.step(target=last)
        if out is not None:
            last = out
    outputs = [last]
    earlier = [v for v in b.built if v is not last]
    if earlier and b.chance(3):
        outputs.append(b.choose(earlier))
    return b.case(outputs, template_output=result)


# -- graphs given by the user ---------------------------------------------------------------


def cases_for(outputs, inputs=None, elements: str = "finite", max_side: int = 5, min_side: int = 0) -> st.SearchStrategy:
    """:class:`GraphCase` examples of a fixed graph: only the input values are drawn.

    Parameters
    ----------
    outputs : Variable or sequence of Variable
    inputs : sequence of Variable, optional
        The arguments in call order (default: the non-constant inputs the outputs
        depend on, in first-use order).
    elements, max_side, min_side
        As for :func:`arrays_for`.  Unknown (``None``) dimensions are drawn either all
        equal or independently; values whose shapes do not fit the graph at run time
        are rejected.
    """
    out_list = [outputs] if isinstance(outputs, Variable) else list(outputs)
    if not out_list or not all(isinstance(v, Variable) for v in out_list):
        raise TypeError("cases_for: outputs must be a Variable or a non-empty sequence of Variables")
    if inputs is None:
        inputs = [v for v in graph_inputs(out_list) if not isinstance(v, Constant)]
    inputs = list(inputs)
    _check_sides(min_side, max_side)
    for v in inputs:
        elements_for(v.dtype, elements)
    function = se.function(inputs, out_list, backend="numpy", passes="none")  # checks the graph once, up front

    @st.composite
    def draw_case(draw):
        shared = draw(st.booleans())
        size = draw(st.integers(min_side, max_side))
        values = []
        for var in inputs:
            shape = tuple(
                d if d is not None else (size if shared else draw(st.integers(min_side, max_side))) for d in var.type.shape
            )
            values.append(_readonly(draw(_arrays(var.dtype, shape, elements))))
        try:
            function(*values)
        except _INAPPLICABLE:
            reject()
        return GraphCase(tuple(inputs), tuple(out_list), tuple(values))

    return draw_case()
