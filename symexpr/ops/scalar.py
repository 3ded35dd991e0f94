"""Scalar operations: the per-element programs that elementwise ops apply.

A :class:`ScalarOp` says what one element of an elementwise op computes.  The
:class:`~symexpr.ops.elemwise.Elemwise` op lifts it over arrays with NumPy
broadcasting, and fused kernels (a later pass) hold programs of them.  Each has

- ``impl(*arrays)``: the NumPy reference, returning exactly NumPy's dtype;
- ``out_dtype(*dtypes)``: that dtype, found by running ``impl`` on one-element
  arrays, so inference agrees with NumPy by construction;
and the tensor-level decompositions of the composite ones (``sigmoid``,
``gelu``, ``clip``, ...) into primitives live in :mod:`symexpr.ops.elemwise`.

Functions without a NumPy counterpart (``sigmoid``, ``erf``, ``gelu``, ``silu``,
``rsqrt``) compute float16 in float32 and round once; integer and bool inputs
first convert to the float type NumPy's ``exp`` would give them.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from symexpr.dtypes import canonical_dtype, float_result


class ScalarOp:
    """Base class: immutable, equal by type and ``params``."""

    nin = 1
    #: Infix symbol for printers (``None`` for function-call syntax).
    symbol: str | None = None
    #: Binding strength for printers: higher binds tighter.
    precedence = 100
    commutative = False
    associative = False

    def __init__(self, name: str, nin: int | None = None, **params):
        self.name = name
        if nin is not None:
            self.nin = nin
        self.params = tuple(sorted(params.items()))
        self._hash = hash((type(self), name, self.params))

    def __eq__(self, other):
        return type(self) is type(other) and self.name == other.name and self.params == other.params

    def __hash__(self):
        return self._hash

    def __repr__(self):
        if self.params:
            return f"{self.name}{{{', '.join(f'{k}={v}' for k, v in self.params)}}}"
        return self.name

    def impl(self, *arrays):
        raise NotImplementedError

    def out_dtype(self, *dtypes: str) -> str:
        """The result dtype for these input dtypes (``TypeError`` if NumPy has none)."""
        return _probe_dtype(self, tuple(dtypes))


@lru_cache(maxsize=4096)
def _probe_dtype(op: ScalarOp, dtypes: tuple) -> str:
    probes = [np.ones((1,), dtype=d) for d in dtypes]
    with np.errstate(all="ignore"):
        try:
            result = op.impl(*probes)
        except (TypeError, np.exceptions.DTypePromotionError) as exc:
            raise TypeError(f"{op.name}: not defined for operand dtypes {', '.join(dtypes)} ({exc})") from None
    return canonical_dtype(np.asarray(result).dtype)


class UfuncOp(ScalarOp):
    """A scalar op that is exactly a NumPy ufunc (or a function with ufunc semantics)."""

    def __init__(self, name, ufunc, symbol=None, precedence=100, commutative=False, associative=False, nin=None):
        super().__init__(name, nin=nin or ufunc.nin)
        self.ufunc = ufunc
        self.symbol = symbol
        self.precedence = precedence
        self.commutative = commutative
        self.associative = associative

    def impl(self, *arrays):
        return self.ufunc(*arrays)


class FloatFunction(ScalarOp):
    """A float function without a NumPy ufunc, computed in at least float32."""

    def __init__(self, name, compute, **params):
        super().__init__(name, nin=1, **params)
        self._compute = compute

    def impl(self, x):
        out_dtype = float_result(x.dtype.name)
        work = np.promote_types(out_dtype, np.float32)
        return np.asarray(self._compute(np.asarray(x, dtype=work))).astype(out_dtype, copy=False)


def _erf(x):
    erf = np.frompyfunc(math.erf, 1, 1)
    return np.asarray(erf(x.astype(np.float64)), dtype=np.float64)


def _sigmoid(x):
    # exp of a non-positive number never overflows; the two branches agree at 0.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


_SQRT_HALF = 0.7071067811865476
_SQRT_2_OVER_PI = 0.7978845608028654


def _gelu_erf(x):
    return 0.5 * x * (1 + _erf(x * _SQRT_HALF).astype(x.dtype))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


class Cast(ScalarOp):
    """Conversion to ``dtype`` with NumPy's ``astype`` (unsafe casting) semantics."""

    def __init__(self, dtype):
        super().__init__("cast", nin=1, dtype=canonical_dtype(dtype))
        self.dtype = dict(self.params)["dtype"]

    def impl(self, x):
        return np.asarray(x).astype(self.dtype)


class Identity(ScalarOp):
    """The value itself: the body of a fused reduction that reads its input as is."""

    def __init__(self):
        super().__init__("identity", nin=1)

    def impl(self, x):
        return x


class Relu(ScalarOp):
    def __init__(self):
        super().__init__("relu", nin=1)

    def impl(self, x):
        return np.maximum(x, np.zeros((), dtype=x.dtype))


class Clip(ScalarOp):
    """``minimum(maximum(x, lo), hi)``, NumPy's ``clip``; NaN in ``x`` propagates."""

    def __init__(self):
        super().__init__("clip", nin=3)

    def impl(self, x, lo, hi):
        return np.clip(x, lo, hi)


class Where(ScalarOp):
    """``where(cond, a, b)``: ``a`` where ``cond`` is true (nonzero), else ``b``."""

    def __init__(self):
        super().__init__("where", nin=3)

    def impl(self, cond, a, b):
        return np.where(cond, a, b)


def _binary(name, ufunc, symbol=None, precedence=100, commutative=False, associative=False):
    return UfuncOp(name, ufunc, symbol, precedence, commutative, associative)


# Precedences follow Python: comparisons 30 < | 40 < ^ 45 < & 50 < + - 60 < * / // % @ 70 < unary 80 < ** 90.
add = _binary("add", np.add, "+", 60, commutative=True, associative=True)
sub = _binary("sub", np.subtract, "-", 60)
mul = _binary("mul", np.multiply, "*", 70, commutative=True, associative=True)
true_div = _binary("true_div", np.true_divide, "/", 70)
floor_div = _binary("floor_div", np.floor_divide, "//", 70)
mod = _binary("mod", np.remainder, "%", 70)
power = _binary("pow", np.power, "**", 90)
maximum = _binary("maximum", np.maximum, commutative=True, associative=True)
minimum = _binary("minimum", np.minimum, commutative=True, associative=True)
less = _binary("lt", np.less, "<", 30)
less_equal = _binary("le", np.less_equal, "<=", 30)
greater = _binary("gt", np.greater, ">", 30)
greater_equal = _binary("ge", np.greater_equal, ">=", 30)
equal = _binary("eq", np.equal, "==", 30, commutative=True)
not_equal = _binary("neq", np.not_equal, "!=", 30, commutative=True)
bitwise_and = _binary("and", np.bitwise_and, "&", 50, commutative=True, associative=True)
bitwise_or = _binary("or", np.bitwise_or, "|", 40, commutative=True, associative=True)
bitwise_xor = _binary("xor", np.bitwise_xor, "^", 45, commutative=True, associative=True)

neg = UfuncOp("neg", np.negative, "-", 80)
invert = UfuncOp("invert", np.invert, "~", 80)
abs = UfuncOp("abs", np.absolute)
exp = UfuncOp("exp", np.exp)
log = UfuncOp("log", np.log)
log1p = UfuncOp("log1p", np.log1p)
expm1 = UfuncOp("expm1", np.expm1)
sqrt = UfuncOp("sqrt", np.sqrt)
sin = UfuncOp("sin", np.sin)
cos = UfuncOp("cos", np.cos)
tanh = UfuncOp("tanh", np.tanh)
sign = UfuncOp("sign", np.sign)
floor = UfuncOp("floor", np.floor)
ceil = UfuncOp("ceil", np.ceil)
round = UfuncOp("round", np.round, nin=1)  # np.round keeps integer dtypes; np.rint would not
isnan = UfuncOp("isnan", np.isnan)
isinf = UfuncOp("isinf", np.isinf)
isfinite = UfuncOp("isfinite", np.isfinite)

sigmoid = FloatFunction("sigmoid", _sigmoid)
erf = FloatFunction("erf", _erf)
rsqrt = FloatFunction("rsqrt", lambda x: 1 / np.sqrt(x))
silu = FloatFunction("silu", lambda x: x * _sigmoid(x))
gelu_erf = FloatFunction("gelu", _gelu_erf, approximate="none")
gelu_tanh = FloatFunction("gelu", _gelu_tanh, approximate="tanh")
relu = Relu()
identity = Identity()
clip = Clip()
where = Where()
