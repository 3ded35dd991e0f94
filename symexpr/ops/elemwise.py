"""Elementwise operations with NumPy broadcasting."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from symexpr.dtypes import canonical_dtype, float_result, is_int, is_python_scalar
from symexpr.graph.basic import Apply, Op, Variable
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops import scalar as ps
from symexpr.ops.convert import as_operands, as_tensor


def broadcast_static(shapes, what: str) -> tuple:
    """NumPy broadcasting of static shapes (``None`` = unknown), raising at build time.

    A ``None`` next to a known ``k > 1`` becomes ``k``: the only sizes that
    broadcast are 1 and ``k``, and either way the result has ``k``.
    """
    ranked = [s for s in shapes if len(s)]  # 0-d operands add no dimension
    if ranked and all(s.__class__ is tuple and s == ranked[0] for s in ranked):  # e.g. x * 2: one shape
        return tuple(1 if d == 1 else d for d in ranked[0])
    ndim = max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(-ndim, 0):
        dims = [s[axis] for s in shapes if len(s) >= -axis]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ValueError(
                f"{what}: shapes {', '.join(format_shape(s) for s in shapes)} cannot be broadcast together "
                f"(dimension {axis} has sizes {', '.join(str(d) for d in sorted(known))})"
            )
        if known:
            result.append(known.pop())
        elif any(d is None for d in dims):
            result.append(None)
        else:
            result.append(1)
    return tuple(result)


def broadcast_concrete(shapes) -> tuple:
    return tuple(np.broadcast_shapes(*shapes))


@lru_cache(maxsize=4096)
def _output_type(scalar_op: ps.ScalarOp, input_types: tuple) -> TensorType:
    """The type of ``scalar_op`` applied elementwise to operands of ``input_types`` (raises as make_node does)."""
    shape = broadcast_static([t.shape for t in input_types], scalar_op.name)
    return TensorType(scalar_op.out_dtype(*[t.dtype for t in input_types]), shape)


class Elemwise(Op):
    """A :class:`~symexpr.ops.scalar.ScalarOp` applied element by element, with broadcasting."""

    __props__ = ("scalar_op",)

    def __init__(self, scalar_op: ps.ScalarOp):
        self.scalar_op = scalar_op

    def display_name(self) -> str:
        op = self.scalar_op
        name = "".join(part.capitalize() for part in op.name.split("_"))
        if op.params:
            name += "{" + ", ".join(f"{k}={v}" for k, v in op.params) + "}"
        return name

    def make_node(self, *inputs) -> Apply:
        op = self.scalar_op
        if len(inputs) != op.nin:
            raise TypeError(f"{op.name}: expected {op.nin} operand(s), got {len(inputs)}")
        inputs = [as_tensor(v) for v in inputs]
        return Apply(self, inputs, [_output_type(op, tuple(v.type for v in inputs))])

    def perform(self, node, inputs):
        out = np.asarray(self.scalar_op.impl(*inputs))
        return [out]

    def infer_shape(self, node, input_shapes):
        return [broadcast_concrete(input_shapes)]

    def decompose(self, node):
        build = _DECOMPOSITIONS.get((self.scalar_op.name, self.scalar_op.params))
        if build is None:
            return None
        return [cast(build(*node.inputs), node.outputs[0].dtype)]

    def pprint(self, node, args):
        op = self.scalar_op
        if op.symbol is not None and op.nin == 2:
            return f"{args[0]} {op.symbol} {args[1]}", op.precedence
        if op.symbol is not None and op.nin == 1:
            return f"{op.symbol}{args[0]}", op.precedence
        params = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in op.params]
        return f"{op.name}({', '.join(list(args) + params)})", 100


@lru_cache(maxsize=1024)
def _elemwise(scalar_op: ps.ScalarOp) -> Elemwise:
    """``Elemwise(scalar_op)``, one instance per scalar op: node hash-consing then compares ops by identity."""
    return Elemwise(scalar_op)


def _apply(scalar_op: ps.ScalarOp, *operands) -> Variable:
    inputs = as_operands(operands, scalar_op.name, ufunc=getattr(scalar_op, "ufunc", None))
    return _elemwise(scalar_op)(*inputs)


def _binary(scalar_op: ps.ScalarOp, doc: str):
    def fn(a, b):
        return _apply(scalar_op, a, b)

    fn.__name__ = scalar_op.name
    fn.__doc__ = f"{doc}, elementwise with NumPy broadcasting and NEP 50 promotion."
    return fn


def _comparison(scalar_op: ps.ScalarOp, doc: str):
    def fn(a, b):
        try:
            a, b = as_operands([a, b], scalar_op.name, ufunc=scalar_op.ufunc)
        except OverflowError:
            return _compare_out_of_range(scalar_op, a, b)
        return _elemwise(scalar_op)(a, b)

    fn.__name__ = scalar_op.name
    fn.__doc__ = f"{doc}, elementwise; returns bool."
    return fn


_MIRRORED = {"lt": ps.greater, "le": ps.greater_equal, "gt": ps.less, "ge": ps.less_equal, "eq": ps.equal, "neq": ps.not_equal}
# NumPy 2 compares an integer array with a Python int outside its range exactly;
# the answer equals a comparison with the range's end: x < 300 is x <= 255 for uint8.
_ABOVE_MAX = {"lt": ps.less_equal, "le": ps.less_equal, "gt": ps.greater, "ge": ps.greater, "eq": ps.greater, "neq": ps.less_equal}
_BELOW_MIN = {"lt": ps.less, "le": ps.less, "gt": ps.greater_equal, "ge": ps.greater_equal, "eq": ps.less, "neq": ps.greater_equal}


def _compare_out_of_range(scalar_op, a, b) -> Variable:
    scalar_left = is_python_scalar(a)
    value, x = (a, as_tensor(b)) if scalar_left else (b, as_tensor(a))
    if not is_int(x.dtype) or not _is_python_int(value):
        as_operands([a, b], scalar_op.name, ufunc=scalar_op.ufunc)  # re-raise NumPy's OverflowError
    name = _MIRRORED[scalar_op.name].name if scalar_left else scalar_op.name
    info = np.iinfo(x.dtype)
    op, bound = (_ABOVE_MAX[name], info.max) if value > info.max else (_BELOW_MIN[name], info.min)
    return _elemwise(op)(x, as_tensor(np.asarray(bound, dtype=x.dtype)))


def _unary(scalar_op: ps.ScalarOp, doc: str):
    def fn(x):
        return _apply(scalar_op, x)

    fn.__name__ = scalar_op.name
    fn.__doc__ = f"{doc}, elementwise."
    return fn


add = _binary(ps.add, "``a + b``")
sub = _binary(ps.sub, "``a - b``")
mul = _binary(ps.mul, "``a * b``")
true_div = _binary(ps.true_div, "``a / b``")
floor_div = _binary(ps.floor_div, "``a // b`` (NumPy's floor division: rounds toward -inf)")
mod = _binary(ps.mod, "``a % b`` (NumPy's remainder: takes the sign of ``b``)")
power = _binary(ps.power, "``a ** b``")
maximum = _binary(ps.maximum, "Larger of ``a`` and ``b`` (NaN propagates)")
minimum = _binary(ps.minimum, "Smaller of ``a`` and ``b`` (NaN propagates)")
bitwise_and = _binary(ps.bitwise_and, "``a & b`` (logical on bool, bitwise on integers)")
bitwise_or = _binary(ps.bitwise_or, "``a | b`` (logical on bool, bitwise on integers)")
bitwise_xor = _binary(ps.bitwise_xor, "``a ^ b`` (logical on bool, bitwise on integers)")
less = _comparison(ps.less, "``a < b``")
less_equal = _comparison(ps.less_equal, "``a <= b``")
greater = _comparison(ps.greater, "``a > b``")
greater_equal = _comparison(ps.greater_equal, "``a >= b``")
equal = _comparison(ps.equal, "``a == b``")
not_equal = _comparison(ps.not_equal, "``a != b``")

neg = _unary(ps.neg, "``-x``")
invert = _unary(ps.invert, "``~x`` (logical not on bool, bitwise not on integers)")
abs = _unary(ps.abs, "``|x|`` (integers wrap: ``abs(int8(-128)) == -128``)")
exp = _unary(ps.exp, "``e ** x``")
log = _unary(ps.log, "Natural logarithm")
log1p = _unary(ps.log1p, "``log(1 + x)``, accurate for small ``x``")
expm1 = _unary(ps.expm1, "``exp(x) - 1``, accurate for small ``x``")
sqrt = _unary(ps.sqrt, "Square root")
rsqrt = _unary(ps.rsqrt, "``1 / sqrt(x)``")
sin = _unary(ps.sin, "Sine")
cos = _unary(ps.cos, "Cosine")
tanh = _unary(ps.tanh, "Hyperbolic tangent")
sigmoid = _unary(ps.sigmoid, "Logistic sigmoid ``1 / (1 + exp(-x))``, computed stably")
erf = _unary(ps.erf, "Gauss error function")
relu = _unary(ps.relu, "``maximum(x, 0)``")
silu = _unary(ps.silu, "``x * sigmoid(x)`` (also called swish)")
sign = _unary(ps.sign, "Sign: -1, 0 or 1 (NaN stays NaN)")
floor = _unary(ps.floor, "Round toward -inf")
ceil = _unary(ps.ceil, "Round toward +inf")
round = _unary(ps.round, "Round half to even, like ``numpy.round``")
isnan = _unary(ps.isnan, "True where ``x`` is NaN")
isinf = _unary(ps.isinf, "True where ``x`` is +inf or -inf")
isfinite = _unary(ps.isfinite, "True where ``x`` is neither NaN nor infinite")


def gelu(x, approximate: str = "none") -> Variable:
    """Gaussian error linear unit.

    Parameters
    ----------
    x : tensor_like
    approximate : {"none", "tanh"}
        ``"none"``: ``0.5 x (1 + erf(x / sqrt 2))``; ``"tanh"``: the tanh approximation
        ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
    """
    if approximate == "none":
        return _apply(ps.gelu_erf, x)
    if approximate == "tanh":
        return _apply(ps.gelu_tanh, x)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def _is_python_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, (bool, np.generic))


def clip(x, a_min=None, a_max=None) -> Variable:
    """Limit ``x`` to ``[a_min, a_max]`` like ``numpy.clip``; either bound may be ``None`` (both: ``x``)."""
    x = as_tensor(x)
    if is_int(x.dtype):
        # NumPy ignores an integer bound beyond the dtype's range on the side where it cannot bite.
        info = np.iinfo(x.dtype)
        if _is_python_int(a_min) and a_min < info.min:
            a_min = None
        if _is_python_int(a_max) and a_max > info.max:
            a_max = None
    if a_min is None and a_max is None:
        return x
    if a_min is None:
        return minimum(x, a_max)
    if a_max is None:
        return maximum(x, a_min)
    return _apply(ps.clip, x, a_min, a_max)


def where(condition, x, y) -> Variable:
    """``x`` where ``condition`` is true (nonzero), else ``y``, with broadcasting.

    The result dtype promotes ``x`` and ``y``; Python scalars among them are weak.
    """
    cond = as_tensor(condition)
    x, y = as_operands([x, y], "where", wrap=True)  # NumPy's where casts a Python int unsafely
    return _elemwise(ps.where)(cond, x, y)


def cast(x, dtype) -> Variable:
    """Convert ``x`` to ``dtype`` like ``ndarray.astype`` (float to int truncates toward 0)."""
    x = as_tensor(x)
    dtype = canonical_dtype(dtype, "cast: dtype")
    if x.dtype == dtype:
        return x
    return _elemwise(ps.Cast(dtype))(x)


# -- decompositions of the composite scalar ops into primitives -----------------------------
def _in_float_work(build):
    """``build`` applied as ``FloatFunction.impl`` computes: float16 (and ints) in at least float32."""

    def apply(x):
        out = float_result(x.dtype)
        work = canonical_dtype(np.promote_types(out, np.float32))
        return cast(build(cast(x, work)), out)

    return apply


def _sigmoid_parts(x):
    # The same stable two-branch form as the reference: exp(-|x|) never overflows,
    # and e / (1 + e) keeps the tail for large negative x.
    e = exp(-abs(x))
    return where(x >= 0, 1 / (1 + e), e / (1 + e))


def _gelu_parts(approximate):
    def build(x):
        if approximate == "tanh":
            return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * (x * x * x))))
        return 0.5 * x * (1 + erf(x * 0.7071067811865476))

    return build


#: ``(scalar op name, params) -> builder`` of the same function from primitive ops.
_DECOMPOSITIONS = {
    (ps.sigmoid.name, ps.sigmoid.params): _in_float_work(_sigmoid_parts),
    (ps.silu.name, ps.silu.params): _in_float_work(lambda x: x * sigmoid(x)),
    (ps.rsqrt.name, ps.rsqrt.params): _in_float_work(lambda x: 1 / sqrt(x)),
    (ps.gelu_erf.name, ps.gelu_erf.params): _in_float_work(_gelu_parts("none")),
    (ps.gelu_tanh.name, ps.gelu_tanh.params): _in_float_work(_gelu_parts("tanh")),
    (ps.relu.name, ps.relu.params): lambda x: maximum(x, 0),
    (ps.clip.name, ps.clip.params): lambda x, lo, hi: minimum(maximum(x, lo), hi),
}
